package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/internal/files"
	"github.com/vfolder/vfolder/internal/service"
	"github.com/vfolder/vfolder/meta"
)

// TestFilesGate: a peer the API refuses gets through to the file routes
// with a bearer token, and nowhere else; the token is checked there.
func TestFilesGate(t *testing.T) {
	dir := t.TempDir()
	store := meta.NewMemory()
	svc := service.New(store, service.Options{StorageUID: os.Geteuid(), StorageGID: os.Getegid(), AutoCreateScopes: true, Log: zerolog.Nop()})
	t.Cleanup(func() {
		svc.Close()
		store.Close()
	})
	fa, err := files.New(svc, files.Options{KeyFile: filepath.Join(dir, "token.key"), RecordDir: filepath.Join(dir, "uploads"), Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fa.Close)
	h := New(svc, Options{AdminGID: -1, Files: fa, Log: zerolog.Nop()}).Handler()
	admin := context.WithValue(context.Background(), peerKey{}, peer{uid: 0, allowed: true})
	user := context.WithValue(context.Background(), peerKey{}, peer{uid: 1000, gid: 1000, pid: 1})
	tcp := context.WithValue(context.Background(), peerKey{}, peer{err: errors.New("not a unix socket connection")})

	call := func(ctx context.Context, method, path, token string, body any) (int, api.Error, []byte) {
		t.Helper()
		var rd *bytes.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		} else {
			rd = bytes.NewReader(nil)
		}
		r := httptest.NewRequest(method, "http://vfolderd"+path, rd).WithContext(ctx)
		if token != "" {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		var e api.Error
		_ = json.Unmarshal(w.Body.Bytes(), &e)
		return w.Code, e, w.Body.Bytes()
	}

	const u = "0123456789abcdef0123456789abcdef"
	code, _, body := call(admin, "POST", "/v1/tokens", "", api.TokenRequest{User: u, Perm: meta.PermRO})
	var tok api.Token
	if code != http.StatusCreated || json.Unmarshal(body, &tok) != nil || tok.Token == "" || tok.Perm != meta.PermRO {
		t.Fatalf("admin issues a token: %d %s", code, body)
	}
	for _, tc := range []struct {
		name         string
		ctx          context.Context
		method, path string
		token        string
		status       int
		code         string
	}{
		{"user, no token, file route", user, "GET", "/v1/files/data/list", "", 403, api.CodeForbidden},
		{"user, token, other route", user, "GET", "/v1/folders", tok.Token, 403, api.CodeForbidden},
		{"user, token, token route", user, "POST", "/v1/tokens", tok.Token, 403, api.CodeForbidden},
		{"user, bad token, file route", user, "GET", "/v1/files/data/list", "x.y.z", 401, api.CodeUnauthorized},
		{"user, token, file route", user, "GET", "/v1/files/data/list", tok.Token, 404, api.CodeNotFound},
		{"tcp, token, file route", tcp, "GET", "/v1/files/data/stat", tok.Token, 404, api.CodeNotFound},
		{"tcp, no token", tcp, "GET", "/v1/files/data/stat", "", 403, api.CodeForbidden},
		{"admin with a token acts as the user", admin, "POST", "/v1/tokens", tok.Token, 403, api.CodeForbidden},
		{"admin, unknown folder", admin, "GET", "/v1/files/0123456789abcdef0123456789abcdef/list", "", 404, api.CodeNotFound},
		{"user, token, job of nobody", user, "GET", "/v1/file-jobs/abc", tok.Token, 404, api.CodeNotFound},
		{"user, token, upload of a folder not reached", user, "HEAD", "/v1/uploads/" + u + "-" + u, tok.Token, 404, ""},
	} {
		code, e, body := call(tc.ctx, tc.method, tc.path, tc.token, nil)
		if code != tc.status || (tc.code != "" && e.Code != tc.code) {
			t.Errorf("%s: %d %s; want %d %s", tc.name, code, body, tc.status, tc.code)
		}
	}
}
