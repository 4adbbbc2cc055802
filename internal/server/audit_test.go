package server

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/rs/zerolog"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/meta"
)

// readAudit decodes every line of the audit log at path.
func readAudit(t *testing.T, path string) []auditEntry {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []auditEntry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e auditEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("audit line %q is not JSON: %v", sc.Text(), err)
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func startAudited(t *testing.T) (*testServer, *AuditLog, string) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	al, err := OpenAudit(path, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { al.Close() })
	ts := startWith(t, dir, -1, meta.NewMemory(), nil, func(o *Options) { o.Audit = al })
	return ts, al, path
}

func TestAuditLog(t *testing.T) {
	ts, _, path := startAudited(t)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("audit log mode %v; want 0600", st.Mode().Perm())
	}

	var f api.Folder
	ts.ok(t, "POST", "/v1/folders", api.CreateFolderRequest{Name: "results", Volume: "local", Owner: mustScope(t, alice)}, &f, 201)
	var got api.Folder
	ts.ok(t, "GET", "/v1/folders/"+f.ID, nil, &got, 200) // a read: no line
	ts.ok(t, "POST", "/v1/folders/"+f.ID+"/trash", nil, &got, 200)
	ts.fail(t, "POST", "/v1/folders/"+f.ID+"/purge?owner="+alice, api.PurgeRequest{Confirm: "Results"}, 409, api.CodeConflict)
	// A body field outside the contract: refused, and its value is not
	// written anywhere.
	ts.fail(t, "POST", "/v1/folders", `{"name":"x","volume":"local","owner":"`+alice+`","token":"s3cr3t-value"}`, 400, api.CodeInvalid)
	ts.fail(t, "PUT", "/v1/nothing/here", nil, 404, api.CodeNotFound)

	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), "s3cr3t-value") {
		t.Errorf("a body field outside the audit fields was logged:\n%s", raw)
	}
	lines := readAudit(t, path)
	if len(lines) != 5 {
		t.Fatalf("%d audit lines; want 5 (no line for the GET):\n%s", len(lines), raw)
	}
	for _, e := range lines {
		if e.Transport != TransportSocket || e.UID == nil || e.GID == nil || e.PID == nil ||
			*e.UID != uint32(os.Geteuid()) || *e.GID != uint32(os.Getegid()) || *e.PID != int32(os.Getpid()) {
			t.Errorf("caller %s %s/%s/%s; want socket %d/%d/%d", e.Transport, ptr(e.UID), ptr(e.GID), ptr(e.PID), os.Geteuid(), os.Getegid(), os.Getpid())
		}
		if e.Admin != (os.Geteuid() == 0) || e.CertSubject != "" || e.Remote != "" || e.CallerError != "" {
			t.Errorf("socket caller line %+v", e)
		}
		if e.Time.IsZero() || e.DurationMS < 0 {
			t.Errorf("time %v, duration %v", e.Time, e.DurationMS)
		}
	}
	create, trash, purge, bad, unknown := lines[0], lines[1], lines[2], lines[3], lines[4]
	if create.Route != "POST /v1/folders" || create.Action != "folders.create" || create.Status != 201 || create.Code != "" ||
		create.Object["name"] != "results" || create.Object["volume"] != "local" || create.Object["owner"] != alice {
		t.Errorf("create line %+v", create)
	}
	if trash.Route != "POST /v1/folders/{ref}/trash" || trash.Action != "folders.trash" || trash.Status != 200 || trash.Object["ref"] != f.ID {
		t.Errorf("trash line %+v", trash)
	}
	if purge.Action != "folders.purge" || purge.Status != 409 || purge.Code != api.CodeConflict || !strings.Contains(purge.Error, "does not match") ||
		purge.Object["ref"] != f.ID || purge.Object["owner"] != alice {
		t.Errorf("refused purge line %+v", purge)
	}
	if _, ok := purge.Object["confirm"]; ok {
		t.Errorf("purge line keeps the confirmation, which is not an audit field: %+v", purge.Object)
	}
	if bad.Status != 400 || bad.Code != api.CodeInvalid || bad.Object["name"] != "x" {
		t.Errorf("invalid create line %+v", bad)
	}
	if _, ok := bad.Object["token"]; ok {
		t.Errorf("token kept: %+v", bad.Object)
	}
	if unknown.Route != "/v1/nothing/here" || unknown.Action != "unknown" || unknown.Status != 404 || unknown.Code != api.CodeNotFound {
		t.Errorf("unknown route line %+v", unknown)
	}
}

func TestAuditReopenAndWriteFailure(t *testing.T) {
	ts, al, path := startAudited(t)
	ts.ok(t, "PUT", "/v1/policies/"+alice, map[string]any{"max_vfolder_count": 3}, nil, 200)
	rotated := path + ".1"
	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	// Until the reopen, lines go to the renamed file.
	ts.ok(t, "PUT", "/v1/policies/"+alice, map[string]any{"max_vfolder_count": 4}, nil, 200)
	if err := al.Reopen(); err != nil {
		t.Fatal(err)
	}
	ts.ok(t, "PUT", "/v1/policies/"+alice, map[string]any{"max_vfolder_count": 5}, nil, 200)
	if n := len(readAudit(t, rotated)); n != 2 {
		t.Errorf("rotated file has %d lines; want 2", n)
	}
	if l := readAudit(t, path); len(l) != 1 || l[0].Action != "policies.set" || l[0].Object["owner"] != alice {
		t.Errorf("new file: %+v; want one policies.set line", l)
	}

	// A file that refuses writes: the request still succeeds.
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skipf("no /dev/full: %v", err)
	}
	al.mu.Lock()
	old := al.f
	al.f = full
	al.mu.Unlock()
	old.Close()
	ts.ok(t, "PUT", "/v1/policies/"+alice, map[string]any{"max_vfolder_count": 6}, nil, 200)
	if al.lastWarn.IsZero() {
		t.Error("the failed audit write was not logged")
	}
}

func TestAuditOpenRefusesNonRegular(t *testing.T) {
	dir := t.TempDir()
	if _, err := OpenAudit(dir, zerolog.Nop()); err == nil {
		t.Error("a directory was accepted as the audit log")
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(filepath.Join(dir, "target"), link); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenAudit(link, zerolog.Nop()); err == nil {
		t.Error("a symlink was followed to open the audit log")
	}
}

func TestActionOf(t *testing.T) {
	for route, want := range map[string]string{
		"POST /v1/folders":                             "folders.create",
		"POST /v1/folders/{ref}/trash":                 "folders.trash",
		"PUT /v1/quota-scopes/{volume}/{scope}":        "quota-scopes.set",
		"DELETE /v1/quota-scopes/{volume}/{scope}":     "quota-scopes.delete",
		"POST /v1/quota-scopes/{volume}/{scope}/check": "quota-scopes.check",
		"PUT /v1/projects/{project}/members/{user}":    "projects.members.set",
		"DELETE /v1/views/sessions/{session}/{name}":   "views.sessions.delete",
		"POST /v1/sessions/{session}/publish":          "sessions.publish",
		"GET /v1/health":                               "health.get",
	} {
		if got := actionOf(route); got != want {
			t.Errorf("actionOf(%q) = %q; want %q", route, got, want)
		}
	}
}

func TestRouteParams(t *testing.T) {
	got := routeParams("DELETE /v1/views/sessions/{session}/{name}", "/v1/views/sessions/s1/data")
	if len(got) != 2 || got["session"] != "s1" || got["name"] != "data" {
		t.Errorf("routeParams = %v", got)
	}
	if got := routeParams("GET /v1/files/{path...}", "/v1/files/a/b/c"); got["path"] != "a/b/c" {
		t.Errorf("wildcard: %v", got)
	}
	if got := routeParams("POST /v1/folders", "/v1/folders"); got != nil {
		t.Errorf("no params: %v", got)
	}
}

// TestAuditRefusedCaller checks that a read refused to a caller outside
// root and the admin group is logged, with that caller's uid and gid.
func TestAuditRefusedCaller(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a client as another uid")
	}
	base, err := os.MkdirTemp("", "vfolder-audit-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(base, "audit.log")
	al, err := OpenAudit(path, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { al.Close() })
	ts := startWith(t, base, -1, meta.NewMemory(), nil, func(o *Options) { o.Audit = al })
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
	// TestPeerIdentity's client mode: GET /v1/health on the socket.
	cmd := exec.Command(exe, "-test.run=^TestPeerIdentity$", "-test.count=1")
	cmd.Env = append(os.Environ(), "VFOLDER_TEST_CLIENT_SOCKET="+ts.socket)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}}
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "STATUS 403") {
		t.Fatalf("client: %v\n%s", err, out)
	}
	ts.ok(t, "GET", "/v1/health", nil, nil, 200) // allowed: no line
	lines := readAudit(t, path)
	if len(lines) != 1 {
		t.Fatalf("%d audit lines; want the refused read alone: %+v", len(lines), lines)
	}
	e := lines[0]
	if ptr(e.UID) != "65534" || ptr(e.GID) != "65534" || ptr(e.PID) != fmt.Sprint(cmd.Process.Pid) || e.Admin || e.Transport != TransportSocket ||
		e.Method != "GET" || e.Route != "GET /v1/health" ||
		e.Action != "health.get" || e.Status != 403 || e.Code != api.CodeForbidden || !strings.Contains(e.Error, "uid 65534") || e.Remote != "" {
		t.Errorf("refused read line %+v", e)
	}
}

// ptr prints what p points to, or "absent".
func ptr[T any](p *T) string {
	if p == nil {
		return "absent"
	}
	return fmt.Sprint(*p)
}
