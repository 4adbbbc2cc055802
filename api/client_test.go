package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vfolder/vfolder/meta"
)

// recorded is one request as the fake daemon saw it.
type recorded struct {
	Method string
	Path   string // r.URL.EscapedPath()
	Ref    string // PathValue("ref") where the pattern has one
	Query  string
	Body   string
}

// fakeDaemon serves the API on a unix socket in a temp dir, records every
// request and answers with reply(r).
type fakeDaemon struct {
	t      *testing.T
	socket string
	mu     sync.Mutex
	reqs   []recorded
	reply  func(w http.ResponseWriter, r *http.Request)
}

func startFake(t *testing.T, reply func(w http.ResponseWriter, r *http.Request)) *fakeDaemon {
	t.Helper()
	d := &fakeDaemon{t: t, socket: filepath.Join(t.TempDir(), "d.sock"), reply: reply}
	ln, err := net.Listen("unix", d.socket)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	record := func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		d.mu.Lock()
		d.reqs = append(d.reqs, recorded{Method: r.Method, Path: r.URL.EscapedPath(), Ref: r.PathValue("ref"), Query: r.URL.RawQuery, Body: string(b)})
		d.mu.Unlock()
		d.reply(w, r)
	}
	mux.HandleFunc("/v1/folders/{ref}", record)
	mux.HandleFunc("/v1/folders/{ref}/{op}", record)
	mux.HandleFunc("/", record)
	srv := httptest.NewUnstartedServer(mux)
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return d
}

func (d *fakeDaemon) last() recorded {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.reqs) == 0 {
		d.t.Fatal("the fake daemon got no request")
	}
	return d.reqs[len(d.reqs)-1]
}

func (d *fakeDaemon) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.reqs)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// requestCase is one client call, the answer the fake daemon gives and the
// request it must see.
type requestCase struct {
	name   string
	answer any
	call   func() (any, error)
	want   recorded
}

// runRequestCases runs each case against d, whose reply writes *answer,
// and checks that the call decodes the answer and sent the wanted request.
func runRequestCases(t *testing.T, d *fakeDaemon, answer *any, cases []requestCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			*answer = tc.answer
			got, err := tc.call()
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !reflect.DeepEqual(got, tc.answer) {
				t.Errorf("decoded %#v, want %#v", got, tc.answer)
			}
			req := d.last()
			req.Body = strings.TrimSpace(req.Body)
			if req != tc.want {
				t.Errorf("request\n got %+v\nwant %+v", req, tc.want)
			}
		})
	}
}

// expectRefused checks that each call fails with CodeInvalid before it
// sends a request to d.
func expectRefused(t *testing.T, d *fakeDaemon, calls map[string]func() error) {
	t.Helper()
	n := d.count()
	for name, call := range calls {
		var ae *Error
		if err := call(); !errors.As(err, &ae) || ae.Code != CodeInvalid {
			t.Errorf("%s: got %v, want an *Error with code %q", name, err, CodeInvalid)
		}
	}
	if got := d.count(); got != n {
		t.Errorf("invalid arguments reached the daemon: %d requests, want %d", got, n)
	}
}

var (
	testUser, _    = meta.UserScope("0123456789abcdef0123456789abcdef")
	testProject, _ = meta.ProjectScope("fedcba98-7654-3210-fedc-ba9876543210")
)

func sampleFolder() Folder {
	return Folder{
		Folder: meta.Folder{ID: "aabbccddeeff00112233445566778899", Name: "data", Owner: testUser, Volume: "local",
			UsageMode: meta.ModeGeneral, Permission: meta.PermRW, Status: meta.StatusReady,
			CreatedAt: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC), UpdatedAt: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)},
		Path: "/vfroot/local/0123456789abcdef0123456789abcdef/aa/bb/ccddeeff00112233445566778899",
	}
}

// TestClientRequests checks that every method sends the documented method,
// path, query and body, and decodes the answer.
func TestClientRequests(t *testing.T) {
	folder := sampleFolder()
	scope := QuotaScope{QuotaScope: meta.QuotaScope{Volume: "local", ID: testUser, LimitBytes: 10 << 30}, UsedBytes: 123}
	policy := Policy{MaxFolderCount: 5, MaxQuotaScopeSize: 1 << 40}
	usage := FolderUsage{FolderID: folder.ID, UsedBytes: 42, UsedInodes: 3, AsOf: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)}
	vols := []Volume{{Volume: meta.Volume{Name: "local", Path: "/vfroot/local", MountAllowed: true}, Status: VolumeReady}}
	check := QuotaCheck{Volume: "local", Scope: testUser, Repair: true, Drift: true, Repaired: true, Complete: true,
		Folders:      []QuotaCheckFolder{{FolderID: folder.ID, Name: "data", LedgerBytes: 1, DiskBytes: 11, LedgerInodes: 1, DiskInodes: 2, Unknown: 1, Complete: true}},
		UnknownFiles: 1, Counts: map[string]int{ProblemUnknown: 1}, RepairedCount: 1,
		Findings:  []QuotaFinding{{FolderID: folder.ID, Path: "x", Problem: ProblemUnknown, DiskBytes: 10, Repaired: true}},
		UsedBytes: 11, UsedInodes: 2, StartedAt: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), Seconds: 1.5}

	var answer any
	d := startFake(t, func(w http.ResponseWriter, r *http.Request) {
		status := http.StatusOK
		if r.Method == http.MethodPost && r.URL.Path == "/v1/folders" {
			status = http.StatusCreated
		}
		writeJSON(w, status, answer)
	})
	c := NewClient(d.socket)
	ctx := context.Background()
	limit := int64(10 << 30)

	runRequestCases(t, d, &answer, []requestCase{
		{"health", Health{Status: "ok", Version: "1"}, func() (any, error) { return c.Health(ctx) },
			recorded{Method: "GET", Path: "/v1/health"}},
		{"volumes", vols, func() (any, error) { return c.Volumes(ctx) },
			recorded{Method: "GET", Path: "/v1/volumes"}},
		{"list all", []Folder{folder}, func() (any, error) { return c.ListFolders(ctx, ListFoldersOptions{}) },
			recorded{Method: "GET", Path: "/v1/folders"}},
		{"list filtered", []Folder{folder}, func() (any, error) {
			return c.ListFolders(ctx, ListFoldersOptions{Owner: testProject, Volume: "local", Deleted: DeletedOnly})
		}, recorded{Method: "GET", Path: "/v1/folders", Query: "deleted=only&owner=project%3Afedcba9876543210fedcba9876543210&volume=local"}},
		{"create", folder, func() (any, error) {
			return c.CreateFolder(ctx, CreateFolderRequest{Name: "data", Volume: "local", Owner: testUser, Permission: meta.PermRO})
		}, recorded{Method: "POST", Path: "/v1/folders",
			Body: `{"name":"data","volume":"local","owner":"user:0123456789abcdef0123456789abcdef","permission":"ro"}`}},
		{"get by id", folder, func() (any, error) { return c.Folder(ctx, folder.ID, meta.ScopeID{}) },
			recorded{Method: "GET", Path: "/v1/folders/" + folder.ID, Ref: folder.ID}},
		{"get by name", folder, func() (any, error) { return c.Folder(ctx, "data", testUser) },
			recorded{Method: "GET", Path: "/v1/folders/data", Ref: "data", Query: "owner=user%3A0123456789abcdef0123456789abcdef"}},
		{"rename", folder, func() (any, error) { return c.RenameFolder(ctx, folder.ID, meta.ScopeID{}, "new name") },
			recorded{Method: "POST", Path: "/v1/folders/" + folder.ID + "/rename", Ref: folder.ID, Body: `{"new_name":"new name"}`}},
		{"trash", folder, func() (any, error) { return c.TrashFolder(ctx, "data", testUser) },
			recorded{Method: "POST", Path: "/v1/folders/data/trash", Ref: "data", Query: "owner=user%3A0123456789abcdef0123456789abcdef"}},
		{"restore", folder, func() (any, error) { return c.RestoreFolder(ctx, folder.ID, meta.ScopeID{}) },
			recorded{Method: "POST", Path: "/v1/folders/" + folder.ID + "/restore", Ref: folder.ID}},
		{"purge", folder, func() (any, error) { return c.PurgeFolder(ctx, folder.ID, meta.ScopeID{}, "data") },
			recorded{Method: "POST", Path: "/v1/folders/" + folder.ID + "/purge", Ref: folder.ID, Body: `{"confirm":"data"}`}},
		{"usage", usage, func() (any, error) { return c.FolderUsage(ctx, folder.ID, meta.ScopeID{}) },
			recorded{Method: "GET", Path: "/v1/folders/" + folder.ID + "/usage", Ref: folder.ID}},
		{"quota get", scope, func() (any, error) { return c.QuotaScope(ctx, "local", testUser) },
			recorded{Method: "GET", Path: "/v1/quota-scopes/local/user:0123456789abcdef0123456789abcdef"}},
		{"quota set", scope, func() (any, error) {
			return c.SetQuotaScope(ctx, "local", testUser, SetQuotaRequest{LimitBytes: &limit})
		}, recorded{Method: "PUT", Path: "/v1/quota-scopes/local/user:0123456789abcdef0123456789abcdef", Body: `{"limit_bytes":10737418240}`}},
		{"quota unset", scope, func() (any, error) { return c.UnsetQuotaScope(ctx, "local", testUser) },
			recorded{Method: "DELETE", Path: "/v1/quota-scopes/local/user:0123456789abcdef0123456789abcdef"}},
		{"quota check", check, func() (any, error) {
			return c.CheckQuotaScope(ctx, "local", testUser, QuotaCheckRequest{Repair: true})
		}, recorded{Method: "POST", Path: "/v1/quota-scopes/local/user:0123456789abcdef0123456789abcdef/check", Body: `{"repair":true}`}},
		{"policy get", policy, func() (any, error) { return c.Policy(ctx, testProject) },
			recorded{Method: "GET", Path: "/v1/policies/project:fedcba9876543210fedcba9876543210"}},
		{"policy set", policy, func() (any, error) { return c.SetPolicy(ctx, testProject, policy) },
			recorded{Method: "PUT", Path: "/v1/policies/project:fedcba9876543210fedcba9876543210",
				Body: `{"max_vfolder_count":5,"max_quota_scope_size":1099511627776}`}},
	})
}

// TestClientEscapesRef checks that names with characters that mean
// something in a URL reach the daemon unchanged.
func TestClientEscapesRef(t *testing.T) {
	d := startFake(t, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, sampleFolder()) })
	c := NewClient(d.socket)
	for _, ref := range []string{"my data", "a?b", "c#d", "50%", "ünï cødé", "x+y", "semi;colon", ".hidden", "..."} {
		if _, err := c.Folder(context.Background(), ref, testUser); err != nil {
			t.Fatalf("Folder(%q): %v", ref, err)
		}
		if got := d.last().Ref; got != ref {
			t.Errorf("daemon saw ref %q, want %q", got, ref)
		}
	}
}

// TestClientRefusesUnsendableArgs checks arguments that cannot be put in a
// path are refused with CodeInvalid and no request is sent.
func TestClientRefusesUnsendableArgs(t *testing.T) {
	d := startFake(t, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, sampleFolder()) })
	c := NewClient(d.socket)
	ctx := context.Background()
	expectRefused(t, d, map[string]func() error{
		"empty ref":    func() error { _, err := c.Folder(ctx, "", testUser); return err },
		"dot ref":      func() error { _, err := c.TrashFolder(ctx, ".", testUser); return err },
		"dotdot ref":   func() error { _, err := c.PurgeFolder(ctx, "..", testUser, ".."); return err },
		"empty volume": func() error { _, err := c.QuotaScope(ctx, "", testUser); return err },
		"zero scope":   func() error { _, err := c.UnsetQuotaScope(ctx, "local", meta.ScopeID{}); return err },
		"zero owner":   func() error { _, err := c.Policy(ctx, meta.ScopeID{}); return err },
	})
	if n := d.count(); n != 0 {
		t.Errorf("the daemon got %d requests, want 0", n)
	}
}

func TestClientErrors(t *testing.T) {
	cases := []struct {
		name     string
		status   int
		body     string
		wantCode string
		wantMsg  string
	}{
		{"api error", 404, `{"code":"not-found","message":"folder \"x\" not found"}`, CodeNotFound, `folder "x" not found`},
		{"conflict", 409, `{"code":"conflict","message":"type the folder name to confirm"}`, CodeConflict, "type the folder name to confirm"},
		{"limit", 422, `{"code":"limit-exceeded","message":"too many folders"}`, CodeLimitExceeded, "too many folders"},
		{"message without code", 409, `{"message":"taken"}`, CodeConflict, "taken"},
		{"plain text", 500, "boom\n", CodeInternal, "vfolderd answered 500 Internal Server Error: boom"},
		{"empty body", 503, "", CodeUnavailable, "vfolderd answered 503 Service Unavailable"},
		{"json without message", 403, `{"code":"forbidden"}`, CodeForbidden, "vfolderd answered 403 Forbidden"},
		{"bad request text", 400, "nope", CodeInvalid, "vfolderd answered 400 Bad Request: nope"},
		{"redirect is not followed", 301, "", CodeInternal, "vfolderd answered 301 Moved Permanently"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := startFake(t, func(w http.ResponseWriter, r *http.Request) {
				if tc.status == 301 {
					w.Header().Set("Location", "/v1/elsewhere")
				}
				w.WriteHeader(tc.status)
				_, _ = io.WriteString(w, tc.body)
			})
			_, err := NewClient(d.socket).Volumes(context.Background())
			var ae *Error
			if !errors.As(err, &ae) {
				t.Fatalf("got %T %v, want *Error", err, err)
			}
			if ae.Code != tc.wantCode || ae.Message != tc.wantMsg {
				t.Errorf("got {%q %q}, want {%q %q}", ae.Code, ae.Message, tc.wantCode, tc.wantMsg)
			}
			if d.count() != 1 {
				t.Errorf("daemon got %d requests, want 1", d.count())
			}
		})
	}
}

func TestClientUnreachable(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.sock")

	// A socket file nobody listens on any more.
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()

	for _, sock := range []string{missing, stale} {
		_, err := NewClient(sock).Health(context.Background())
		if !errors.Is(err, ErrUnreachable) {
			t.Fatalf("%s: got %v, want ErrUnreachable", sock, err)
		}
		want := "cannot reach vfolderd at " + sock + ": is it running?"
		if err.Error() != want {
			t.Errorf("got %q, want %q", err.Error(), want)
		}
	}
}

func TestClientTimeout(t *testing.T) {
	release := make(chan struct{})
	d := startFake(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	c := NewClient(d.socket)
	c.Timeout = 50 * time.Millisecond
	_, err := c.Health(context.Background())
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "did not answer in time") {
		t.Fatalf("got %v, want a timeout error", err)
	}
}

func TestClientDaemonHangsUp(t *testing.T) {
	d := startFake(t, func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	})
	_, err := NewClient(d.socket).Volumes(context.Background())
	if err == nil || !strings.Contains(err.Error(), "closed the connection") {
		t.Fatalf("got %v, want a closed-connection error", err)
	}
}

func TestClientBadSuccessBody(t *testing.T) {
	d := startFake(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "not json") })
	_, err := NewClient(d.socket).Volumes(context.Background())
	if err == nil || !strings.Contains(err.Error(), "unreadable") {
		t.Fatalf("got %v, want an unreadable-response error", err)
	}
}
