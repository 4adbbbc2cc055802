package server

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/internal/service"
	"github.com/vfolder/vfolder/internal/testutil"
	"github.com/vfolder/vfolder/meta"
)

// fuzzRoutes are the API routes a fuzzed request is sent to: method and
// a path in which each "%s" takes a fuzzed segment.
var fuzzRoutes = []struct{ method, path string }{
	{"POST", "/v1/folders"},
	{"GET", "/v1/folders/%s"},
	{"POST", "/v1/folders/%s/rename"},
	{"POST", "/v1/folders/%s/trash"},
	{"POST", "/v1/folders/%s/restore"},
	{"POST", "/v1/folders/%s/purge"},
	{"GET", "/v1/folders/%s/usage"},
	{"GET", "/v1/quota-scopes/%s/%s"},
	{"PUT", "/v1/quota-scopes/%s/%s"},
	{"DELETE", "/v1/quota-scopes/%s/%s"},
	{"POST", "/v1/quota-scopes/%s/%s/check"},
	{"GET", "/v1/policies/%s"},
	{"PUT", "/v1/policies/%s"},
	{"GET", "/v1/views"},
	{"POST", "/v1/views"},
	{"DELETE", "/v1/views/sessions/%s/%s"},
	{"GET", "/v1/projects/%s/members"},
	{"PUT", "/v1/projects/%s/members/%s"},
	{"DELETE", "/v1/projects/%s/members/%s"},
	{"GET", "/v1/sessions/%s"},
	{"POST", "/v1/sessions/%s/publish"},
	{"POST", "/v1/sessions/%s/attach"},
	{"POST", "/v1/sessions/%s/unpublish"},
	{"GET", "/v1/folders"},
	{"POST", "/v1/folders/%s/clone"},
}

// FuzzAPIRequest sends fuzzed path segments, query strings and bodies to
// every mutating and reading route of a server over a memory store. Every
// answer must be JSON; every refusal an api.Error with a code and a
// message and a 4xx status (a 5xx would be an internal failure, which a
// malformed request must never cause); no handler may panic.
func FuzzAPIRequest(f *testing.F) {
	seeds := []struct {
		route   uint8
		a, b, q string
		body    string
	}{
		{0, "", "", "", `{"name":"data","volume":"local","owner":"` + alice + `"}`},
		{0, "", "", "", `{"name":"../x","volume":"local","owner":"` + alice + `"}`},
		{0, "", "", "", `{"name":"a","volume":"local","owner":"user:zz","permission":"xx"}`},
		{2, "data", "", "owner=" + alice, `{"new_name":"other"}`},
		{5, "data", "", "owner=" + alice, `{"confirm":"data"}`},
		{8, "local", alice, "", `{"limit_bytes":1048576}`},
		{8, "local", alice, "", `{"limit_bytes":-1}`},
		{8, "local", alice, "", `{"limit_bytes":1e400}`},
		{12, alice, "", "", `{"max_vfolder_count":3}`},
		{14, "", "", "", `{"namespace":"sessions","key":"s1","name":"x","folder":"data","owner":"` + alice + `"}`},
		{17, "4d3c9e6a7f5b6cafbe2d3b4a5f6e7d8c", "2b1a7c4e5d3f4a8e9c0b1f2e3d4c5b6a", "", `{"permission":"rw"}`},
		{20, "sess-1", "", "", `{"user":"2b1a7c4e5d3f4a8e9c0b1f2e3d4c5b6a","mounts":[{"folder":"data"}]}`},
		{23, "", "", "owner=" + alice + "&deleted=only", ""},
		{1, "%00", "", "owner=x&owner=y", "\x00\xff"},
	}
	for _, s := range seeds {
		f.Add(s.route, s.a, s.b, s.q, []byte(s.body))
	}

	dir := f.TempDir()
	vol := filepath.Join(dir, "vol")
	if err := os.MkdirAll(vol, 0o755); err != nil {
		f.Fatal(err)
	}
	var logs testutil.SyncBuffer
	log := zerolog.New(&logs).Level(zerolog.ErrorLevel)
	store := meta.NewMemory()
	svc := service.New(store, service.Options{StorageUID: os.Geteuid(), StorageGID: os.Getegid(), AutoCreateScopes: true, Log: log})
	f.Cleanup(func() {
		svc.Close()
		store.Close()
	})
	if err := svc.AttachVolume(context.Background(), meta.Volume{Name: "local", Path: vol, RWCanDelete: true, MountAllowed: true, CloneAllowed: true}); err != nil {
		f.Fatal(err)
	}
	srv := New(svc, Options{AdminGID: -1, Version: "fuzz", Log: log})
	h := srv.Handler()
	root := context.WithValue(context.Background(), peerKey{}, peer{uid: 0, allowed: true})

	f.Fuzz(func(t *testing.T, route uint8, a, b, q string, body []byte) {
		r := fuzzRoutes[int(route)%len(fuzzRoutes)]
		p := r.path
		for _, seg := range []string{a, b} {
			p = strings.Replace(p, "%s", url.PathEscape(seg), 1)
		}
		target := "http://vfolderd" + p
		if q != "" {
			target += "?" + q
		}
		req, err := http.NewRequestWithContext(root, r.method, target, bytes.NewReader(body))
		if err != nil {
			return // not a request a client could send
		}
		rec := httptest.NewRecorder()
		done := make(chan struct{})
		go func() {
			defer close(done)
			h.ServeHTTP(rec, req)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%s %s with body %q: no answer after 10s; goroutines:\n%s", r.method, target, body, buf)
		}
		if strings.Contains(logs.String(), "panicked") {
			t.Fatalf("%s %s: handler panicked: %s", r.method, target, logs.String())
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Fatalf("%s %s: Content-Type %q", r.method, target, ct)
		}
		if !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("%s %s: body is not JSON: %q", r.method, target, rec.Body.Bytes())
		}
		if rec.Code < 400 {
			return
		}
		var e api.Error
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Code == "" || e.Message == "" {
			t.Fatalf("%s %s = %d: error body %q (%v) lacks a code or message", r.method, target, rec.Code, rec.Body.Bytes(), err)
		}
		if rec.Code >= 500 && e.Code != api.CodeUnavailable {
			t.Fatalf("%s %s with body %q = %d %+v: a request must never cause an internal failure", r.method, target, body, rec.Code, e)
		}
	})
}
