package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/internal/service"
	"github.com/vfolder/vfolder/meta"
)

const (
	alice   = "user:2b1a7c4e5d3f4a8e9c0b1f2e3d4c5b6a"
	project = "project:4d3c9e6a7f5b6cafbe2d3b4a5f6e7d8c"
)

type testServer struct {
	socket string
	vol    string
	client *http.Client
	svc    *service.Service
}

// start runs a server on a socket in dir (a fresh temp dir when empty).
func start(t *testing.T, dir string, adminGID int) *testServer {
	t.Helper()
	return startWith(t, dir, adminGID, meta.NewMemory(), nil)
}

// startWith is start over a given store and quota ledger (nil: none).
func startWith(t *testing.T, dir string, adminGID int, store meta.Store, ledger service.Ledger, mutate ...func(*Options)) *testServer {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	vol := filepath.Join(dir, "vol")
	if err := os.MkdirAll(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	svc := service.New(store, service.Options{StorageUID: os.Geteuid(), StorageGID: os.Getegid(), AutoCreateScopes: true, Quota: ledger, Log: zerolog.Nop()})
	ctx := context.Background()
	if err := svc.AttachVolume(ctx, meta.Volume{Name: "local", Path: vol, RWCanDelete: true, MountAllowed: true, CloneAllowed: true}); err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(dir, "run", "vfolderd.sock")
	l, err := Listen(socket, adminGID)
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{AdminGID: adminGID, Version: "test", Log: zerolog.Nop()}
	for _, m := range mutate {
		m(&opts)
	}
	srv := New(svc, opts)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	ts := &testServer{socket: socket, vol: vol, svc: svc, client: unixClient(socket)}
	t.Cleanup(func() {
		ts.client.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		svc.Close()
		store.Close()
	})
	return ts
}

func unixClient(socket string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}
}

// call sends a request; body is a string (sent as is) or a value (JSON).
func (ts *testServer) call(t *testing.T, method, path string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		js, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(js)
	}
	req, err := http.NewRequest(method, "http://vfolderd"+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := ts.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q", method, path, ct)
	}
	return resp.StatusCode, data
}

// ok calls and decodes a success response into out.
func (ts *testServer) ok(t *testing.T, method, path string, body, out any, want int) {
	t.Helper()
	status, data := ts.call(t, method, path, body)
	if status != want {
		t.Fatalf("%s %s = %d %s; want %d", method, path, status, data, want)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, data)
		}
	}
}

// fail calls and checks the error status and code.
func (ts *testServer) fail(t *testing.T, method, path string, body any, status int, code string) api.Error {
	t.Helper()
	got, data := ts.call(t, method, path, body)
	var e api.Error
	if err := json.Unmarshal(data, &e); err != nil {
		t.Fatalf("%s %s: error body %q is not JSON: %v", method, path, data, err)
	}
	if got != status || e.Code != code || e.Message == "" {
		t.Errorf("%s %s = %d %+v; want %d %q with a message", method, path, got, e, status, code)
	}
	return e
}

func TestHealthAndVolumes(t *testing.T) {
	ts := start(t, "", -1)
	var h api.Health
	ts.ok(t, "GET", "/v1/health", nil, &h, 200)
	if h.Status != "ok" || h.Version != "test" {
		t.Errorf("health = %+v", h)
	}
	var vs []api.Volume
	ts.ok(t, "GET", "/v1/volumes", nil, &vs, 200)
	if len(vs) != 1 || vs[0].Name != "local" || vs[0].Path != ts.vol {
		t.Errorf("volumes = %+v", vs)
	}
	st, err := os.Stat(ts.socket)
	if err != nil || st.Mode()&os.ModeSocket == 0 || st.Mode().Perm() != 0o660 {
		t.Errorf("socket mode %v, %v; want a 0660 socket", st.Mode(), err)
	}
}

func TestFolderLifecycle(t *testing.T) {
	ts := start(t, "", -1)
	var f api.Folder
	ts.ok(t, "POST", "/v1/folders", api.CreateFolderRequest{Name: "data set", Volume: "local", Owner: mustScope(t, alice)}, &f, 201)
	if f.Status != meta.StatusReady || f.Path == "" || f.Name != "data set" {
		t.Fatalf("created %+v", f)
	}
	if _, err := os.Stat(f.Path); err != nil {
		t.Fatalf("folder directory: %v", err)
	}
	var got api.Folder
	ts.ok(t, "GET", "/v1/folders/data%20set?owner="+alice, nil, &got, 200)
	if got.ID != f.ID {
		t.Errorf("by name: %s; want %s", got.ID, f.ID)
	}
	ts.ok(t, "GET", "/v1/folders/"+meta.DashedUUID(f.ID), nil, &got, 200)
	ts.ok(t, "POST", "/v1/folders/"+f.ID+"/rename", api.RenameRequest{NewName: "renamed"}, &got, 200)
	if got.Name != "renamed" {
		t.Errorf("rename: %+v", got)
	}
	var list []api.Folder
	ts.ok(t, "GET", "/v1/folders?owner="+alice, nil, &list, 200)
	if len(list) != 1 {
		t.Errorf("list = %d folders", len(list))
	}
	var u api.FolderUsage
	ts.ok(t, "GET", "/v1/folders/renamed/usage?owner="+alice, nil, &u, 200)
	if u.FolderID != f.ID || u.AsOf.IsZero() {
		t.Errorf("usage = %+v", u)
	}

	ts.fail(t, "POST", "/v1/folders/"+f.ID+"/purge", api.PurgeRequest{Confirm: "renamed"}, 409, api.CodeConflict)
	ts.ok(t, "POST", "/v1/folders/"+f.ID+"/trash", nil, &got, 200)
	if got.Status != meta.StatusDeletePending {
		t.Errorf("trash: %+v", got)
	}
	ts.ok(t, "GET", "/v1/folders?deleted=only", nil, &list, 200)
	if len(list) != 1 {
		t.Errorf("deleted=only: %d folders", len(list))
	}
	ts.ok(t, "POST", "/v1/folders/"+f.ID+"/restore", nil, &got, 200)
	ts.ok(t, "POST", "/v1/folders/"+f.ID+"/trash", nil, &got, 200)
	e := ts.fail(t, "POST", "/v1/folders/"+f.ID+"/purge", api.PurgeRequest{Confirm: "Renamed"}, 409, api.CodeConflict)
	if !strings.Contains(e.Message, "does not match") {
		t.Errorf("wrong-name purge message: %q", e.Message)
	}
	if _, err := os.Stat(f.Path); err != nil {
		t.Fatalf("a refused purge removed the directory: %v", err)
	}
	ts.ok(t, "POST", "/v1/folders/"+f.ID+"/purge", api.PurgeRequest{Confirm: "renamed"}, &got, 200)
	// The purge answers at once; the removal runs in the background.
	if got.Status != meta.StatusDeleteOngoing || got.Progress == nil || got.Progress.Op != api.OpPurge {
		t.Errorf("purge: %+v", got)
	}
	ts.svc.Wait()
	if _, err := os.Stat(f.Path); !os.IsNotExist(err) {
		t.Errorf("purged directory: %v", err)
	}
	ts.fail(t, "GET", "/v1/folders/"+f.ID, nil, 404, api.CodeNotFound)
}

func mustScope(t *testing.T, s string) meta.ScopeID {
	t.Helper()
	id, err := meta.ParseScopeID(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestBadInput(t *testing.T) {
	ts := start(t, "", -1)
	owner := mustScope(t, alice)
	create := func(name, volume string) api.CreateFolderRequest {
		return api.CreateFolderRequest{Name: name, Volume: volume, Owner: owner}
	}
	ts.ok(t, "POST", "/v1/folders", create("taken", "local"), nil, 201)
	for _, tc := range []struct {
		name         string
		method, path string
		body         any
		status       int
		code         string
	}{
		{"long name", "POST", "/v1/folders", create(strings.Repeat("n", 65), "local"), 400, api.CodeInvalid},
		{"dotdot", "POST", "/v1/folders", create("..", "local"), 400, api.CodeInvalid},
		{"slash", "POST", "/v1/folders", create("a/b", "local"), 400, api.CodeInvalid},
		{"reserved", "POST", "/v1/folders", create(".ssh", "local"), 400, api.CodeInvalid},
		{"duplicate", "POST", "/v1/folders", create("taken", "local"), 409, api.CodeExists},
		{"unknown volume", "POST", "/v1/folders", create("x", "nowhere"), 404, api.CodeNotFound},
		{"project dot-folder", "POST", "/v1/folders", api.CreateFolderRequest{Name: ".cache", Volume: "local", Owner: mustScope(t, project)}, 400, api.CodeInvalid},
		{"unknown field", "POST", "/v1/folders", `{"name":"x","volume":"local","owner":"` + alice + `","colour":"red"}`, 400, api.CodeInvalid},
		{"bad owner in body", "POST", "/v1/folders", `{"name":"x","volume":"local","owner":"group:1"}`, 400, api.CodeInvalid},
		{"trailing data", "POST", "/v1/folders", `{"name":"x","volume":"local","owner":"` + alice + `"} {}`, 400, api.CodeInvalid},
		{"not json", "POST", "/v1/folders", `name=x`, 400, api.CodeInvalid},
		{"empty body", "POST", "/v1/folders", "", 400, api.CodeInvalid},
		{"huge body", "POST", "/v1/folders", `{"name":"` + strings.Repeat("x", MaxBodyBytes) + `"}`, 400, api.CodeInvalid},
		{"unknown id", "GET", "/v1/folders/ffffffffffffffffffffffffffffffff", nil, 404, api.CodeNotFound},
		{"unknown name", "GET", "/v1/folders/nope?owner=" + alice, nil, 404, api.CodeNotFound},
		{"name without owner", "GET", "/v1/folders/taken", nil, 400, api.CodeInvalid},
		{"bad owner param", "GET", "/v1/folders/taken?owner=user:xyz", nil, 400, api.CodeInvalid},
		{"unknown param", "GET", "/v1/folders/taken?onwer=" + alice, nil, 400, api.CodeInvalid},
		{"repeated param", "GET", "/v1/folders?owner=" + alice + "&owner=" + alice, nil, 400, api.CodeInvalid},
		{"bad deleted", "GET", "/v1/folders?deleted=all", nil, 400, api.CodeInvalid},
		{"rename reserved", "POST", "/v1/folders/taken/rename?owner=" + alice, api.RenameRequest{NewName: ".bashrc"}, 400, api.CodeInvalid},
		{"rename no body", "POST", "/v1/folders/taken/rename?owner=" + alice, nil, 400, api.CodeInvalid},
		{"purge live", "POST", "/v1/folders/taken/purge?owner=" + alice, api.PurgeRequest{Confirm: "taken"}, 409, api.CodeConflict},
		{"restore live", "POST", "/v1/folders/taken/restore?owner=" + alice, nil, 409, api.CodeConflict},
		{"negative limit", "PUT", "/v1/quota-scopes/local/" + alice, `{"limit_bytes":-1}`, 400, api.CodeInvalid},
		{"limit not a number", "PUT", "/v1/quota-scopes/local/" + alice, `{"limit_bytes":"10G"}`, 400, api.CodeInvalid},
		{"scope unknown volume", "GET", "/v1/quota-scopes/nowhere/" + alice, nil, 404, api.CodeNotFound},
		{"bad scope id", "GET", "/v1/quota-scopes/local/user:nope", nil, 400, api.CodeInvalid},
		{"unset missing scope", "DELETE", "/v1/quota-scopes/local/" + project, nil, 404, api.CodeNotFound},
		{"negative policy", "PUT", "/v1/policies/" + alice, `{"max_vfolder_count":-2}`, 400, api.CodeInvalid},
		{"bad policy owner", "GET", "/v1/policies/alice", nil, 400, api.CodeInvalid},
		{"unknown path", "GET", "/v1/nothing", nil, 404, api.CodeNotFound},
		{"no version", "GET", "/health", nil, 404, api.CodeNotFound},
		{"wrong method", "DELETE", "/v1/folders", nil, 405, api.CodeInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts.fail(t, tc.method, tc.path, tc.body, tc.status, tc.code)
		})
	}
}

func TestQuotaAndPolicy(t *testing.T) {
	ts := start(t, "", -1)
	var q api.QuotaScope
	ts.ok(t, "PUT", "/v1/quota-scopes/local/"+alice, `{"limit_bytes":1073741824}`, &q, 200)
	if q.LimitBytes != 1<<30 || q.Volume != "local" || q.ID.String() != alice {
		t.Errorf("set quota = %+v", q)
	}
	ts.ok(t, "PUT", "/v1/quota-scopes/local/"+alice, `{"limit_inodes":10}`, &q, 200)
	if q.LimitBytes != 1<<30 || q.LimitInodes != 10 {
		t.Errorf("set inodes only = %+v", q)
	}
	ts.ok(t, "GET", "/v1/quota-scopes/local/"+alice, nil, &q, 200)
	ts.ok(t, "DELETE", "/v1/quota-scopes/local/"+alice, nil, &q, 200)
	if q.LimitBytes != 0 || q.LimitInodes != 0 {
		t.Errorf("unset = %+v", q)
	}

	var p api.Policy
	ts.ok(t, "GET", "/v1/policies/"+alice, nil, &p, 200)
	if !p.IsZero() {
		t.Errorf("default policy = %+v", p)
	}
	ts.ok(t, "PUT", "/v1/policies/"+alice, api.Policy{MaxFolderCount: 1}, &p, 200)
	if p.MaxFolderCount != 1 {
		t.Errorf("policy = %+v", p)
	}
	owner := mustScope(t, alice)
	ts.ok(t, "POST", "/v1/folders", api.CreateFolderRequest{Name: "one", Volume: "local", Owner: owner}, nil, 201)
	ts.fail(t, "POST", "/v1/folders", api.CreateFolderRequest{Name: "two", Volume: "local", Owner: owner}, 422, api.CodeLimitExceeded)
}

// TestAPIClient checks the contract end to end with the package api client.
func TestAPIClient(t *testing.T) {
	ts := start(t, "", -1)
	c := api.NewClient(ts.socket)
	defer c.CloseIdleConnections()
	ctx := context.Background()
	owner := mustScope(t, alice)
	f, err := c.CreateFolder(ctx, api.CreateFolderRequest{Name: "via-client", Volume: "local", Owner: owner})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.TrashFolder(ctx, "via-client", owner); err != nil {
		t.Fatal(err)
	}
	_, err = c.PurgeFolder(ctx, f.ID, owner, "wrong")
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Code != api.CodeConflict {
		t.Errorf("purge with the wrong name: %v", err)
	}
	if _, err := c.PurgeFolder(ctx, f.ID, owner, "via-client"); err != nil {
		t.Errorf("purge: %v", err)
	}
}

func TestListen(t *testing.T) {
	dir := t.TempDir()
	// A regular file is never replaced.
	file := filepath.Join(dir, "file.sock")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(file, -1); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("Listen over a regular file = %v", err)
	}
	// A stale socket (nobody listening) is replaced.
	stale := filepath.Join(dir, "stale.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	l2, err := Listen(stale, -1)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	defer l2.Close()
	// A live one is refused and left alone.
	if _, err := Listen(stale, -1); !errors.Is(err, ErrSocketInUse) {
		t.Errorf("Listen over a live socket = %v; want ErrSocketInUse", err)
	}
	c, err := net.Dial("unix", stale)
	if err != nil {
		t.Errorf("the live socket was disturbed: %v", err)
	} else {
		c.Close()
	}
	if os.Geteuid() == 0 {
		grp := filepath.Join(dir, "sub", "grp.sock")
		l3, err := Listen(grp, 4242)
		if err != nil {
			t.Fatal(err)
		}
		defer l3.Close()
		st, err := os.Stat(grp)
		if err != nil {
			t.Fatal(err)
		}
		if gid := st.Sys().(*syscall.Stat_t).Gid; gid != 4242 || st.Mode().Perm() != 0o660 {
			t.Errorf("socket gid %d mode %v; want 4242 and 0660", gid, st.Mode().Perm())
		}
		if pst, _ := os.Stat(filepath.Dir(grp)); pst == nil || pst.Mode().Perm() != 0o755 {
			t.Errorf("socket directory mode: %v", pst)
		}
	}
}

// TestPeerIdentity calls the API as other uids: a stranger gets 403, the
// admin group (primary or supplementary) is let in. It re-runs the test
// binary as those uids, so it needs root.
func TestPeerIdentity(t *testing.T) {
	if sock := os.Getenv("VFOLDER_TEST_CLIENT_SOCKET"); sock != "" {
		resp, err := unixClient(sock).Get("http://vfolderd/v1/health")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		fmt.Printf("STATUS %d %s\n", resp.StatusCode, bytes.TrimSpace(body))
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to run clients as other uids")
	}
	const adminGID = 4242
	// Not t.TempDir: its parents are 0700, out of reach of other uids.
	base, err := os.MkdirTemp("", "vfolder-server-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	ts := start(t, base, adminGID)
	// Let every uid connect so that the API's own check is what answers.
	if err := os.Chmod(ts.socket, 0o666); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(base, "server.test")
	data, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, data, 0o755); err != nil {
		t.Fatal(err)
	}
	run := func(cred *syscall.Credential) string {
		cmd := exec.Command(exe, "-test.run=^TestPeerIdentity$", "-test.count=1")
		cmd.Env = append(os.Environ(), "VFOLDER_TEST_CLIENT_SOCKET="+ts.socket)
		cmd.Dir = "/"
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("client as %+v: %v\n%s", cred, err, out)
		}
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(line, "STATUS ") {
				return line
			}
		}
		t.Fatalf("client as %+v printed no status:\n%s", cred, out)
		return ""
	}
	stranger := run(&syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}})
	if !strings.HasPrefix(stranger, "STATUS 403 ") || !strings.Contains(stranger, `"code":"forbidden"`) {
		t.Errorf("stranger got %q; want 403 forbidden", stranger)
	}
	if got := run(&syscall.Credential{Uid: 65534, Gid: adminGID, Groups: []uint32{}}); !strings.HasPrefix(got, "STATUS 200 ") {
		t.Errorf("admin group as primary gid got %q; want 200", got)
	}
	if got := run(&syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{100, adminGID}}); !strings.HasPrefix(got, "STATUS 200 ") {
		t.Errorf("admin group as supplementary gid got %q; want 200", got)
	}
}
