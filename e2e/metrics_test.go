package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vfolder/vfolder/api"
)

// The metrics endpoint and the audit log of a real daemon, driven by the
// CLI and by I/O through real views.

const obsUser = "3f2e1d0c9b8a4f7e8d6c5b4a39281706"

// obsFreeAddr returns a loopback address with a port nothing listens on.
func obsFreeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// obsScrape fetches /metrics and returns every sample by
// `name{label="value",...}` (labels sorted by name, as exposed).
func obsScrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %d %v\n%s", resp.StatusCode, err, body)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("sample %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// obsKey builds a sample key from a name and label pairs.
func obsKey(name string, labels ...string) string {
	if len(labels) == 0 {
		return name
	}
	type kv struct{ k, v string }
	var kvs []kv
	for i := 0; i+1 < len(labels); i += 2 {
		kvs = append(kvs, kv{labels[i], labels[i+1]})
	}
	sort.Slice(kvs, func(i, j int) bool { return kvs[i].k < kvs[j].k })
	var b strings.Builder
	b.WriteString(name + "{")
	for i, x := range kvs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(x.k + `="` + x.v + `"`)
	}
	b.WriteString("}")
	return b.String()
}

// obsGet returns a sample, failing the test when it is absent.
func obsGet(t *testing.T, m map[string]float64, name string, labels ...string) float64 {
	t.Helper()
	k := obsKey(name, labels...)
	v, ok := m[k]
	if !ok {
		var near []string
		for s := range m {
			if strings.HasPrefix(s, name) {
				near = append(near, s)
			}
		}
		sort.Strings(near)
		t.Fatalf("no sample %s; samples of %s: %v", k, name, near)
	}
	return v
}

// TestMetricsEndpoint scrapes a real daemon's /metrics while a folder is
// written through its view: used bytes rise by exactly what was written,
// free bytes follow, an EDQUOT is counted for its scope and as a WRITE
// error, the FUSE CREATE and WRITE counters rise, ledger commits are
// timed, and the sessions gauge follows publish and unpublish.
func TestMetricsEndpoint(t *testing.T) {
	addr := obsFreeAddr(t)
	sess := mdSessionsDir(t)
	d := StartDaemon(t, DaemonOptions{ExtraArgs: []string{"--sessions-dir", sess, "--metrics-listen", addr}})
	scope := "user:" + obsUser
	sl := []string{"volume", "local", "scope", scope}

	m := obsScrape(t, addr)
	if !strings.Contains(strings.Join(keys(m), "\n"), `vfolder_build_info{goversion="go`) {
		t.Errorf("no vfolder_build_info with the Go version")
	}
	if got := obsGet(t, m, "vfolder_sessions"); got != 0 {
		t.Errorf("sessions before any publish = %v", got)
	}

	var f api.Folder
	d.JSON(&f, "create", "data", "local", "--user", obsUser)
	const limit = 4 << 20
	d.OK("quota-scope", "set", "local", obsUser, strconv.Itoa(limit), "-t", "user")
	view := filepath.Join(d.MountPoint, "users", obsUser, "data")
	fuse := func(m map[string]float64, op string) float64 {
		return obsGet(t, m, "vfolder_fuse_request_duration_seconds_count", "op", op)
	}
	m0 := obsScrape(t, addr)
	if got := obsGet(t, m0, "vfolder_quota_limit_bytes", sl...); got != limit {
		t.Errorf("limit bytes = %v; want %d", got, limit)
	}
	creates0 := m0[obsKey("vfolder_fuse_request_duration_seconds_count", "op", "create")]

	// A new empty file: the create is counted; its directory's growth, if
	// any, is charged now, so that what follows is the data alone.
	p := filepath.Join(view, "payload")
	fh, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	m1 := obsScrape(t, addr)
	if got := fuse(m1, "create") - creates0; got < 1 {
		t.Errorf("CREATE requests rose by %v after a create; want >= 1", got)
	}
	used1 := obsGet(t, m1, "vfolder_quota_used_bytes", sl...)
	writes1 := fuse(m1, "write")

	const n = 3*(1<<20) + 12345 // several WRITE requests (1 MiB each at most)
	if w, err := fh.Write(bytes.Repeat([]byte{'v'}, n)); w != n || err != nil {
		t.Fatalf("write %d bytes: %d %v", n, w, err)
	}
	if err := fh.Close(); err != nil {
		t.Fatal(err)
	}
	m2 := obsScrape(t, addr)
	used2 := obsGet(t, m2, "vfolder_quota_used_bytes", sl...)
	if used2-used1 != n {
		t.Errorf("used bytes rose by %v after writing %d bytes (%v -> %v); want exactly %d", used2-used1, n, used1, used2, n)
	}
	if got := obsGet(t, m2, "vfolder_quota_free_bytes", sl...); got != limit-used2 {
		t.Errorf("free bytes = %v; want limit - used = %v", got, limit-used2)
	}
	if got := fuse(m2, "write") - writes1; got < 4 {
		t.Errorf("WRITE requests rose by %v for %d bytes; want >= 4", got, n)
	}
	var q api.QuotaScope
	d.JSON(&q, "quota-scope", "get", "local", obsUser, "-t", "user")
	if float64(q.UsedBytes) != used2 {
		t.Errorf("quota-scope get says %d bytes used, the metric %v", q.UsedBytes, used2)
	}
	if got := obsGet(t, m2, "vfolder_quota_used_inodes", sl...); got != float64(q.UsedInodes) {
		t.Errorf("used inodes = %v; quota-scope get says %d", got, q.UsedInodes)
	}
	if got := obsGet(t, m2, "vfolder_ledger_commit_duration_seconds_count"); got < 1 {
		t.Errorf("ledger commits observed = %v; want >= 1", got)
	}

	// Fill the scope: the write that crosses the limit is cut short, the
	// next one gets EDQUOT, which is counted.
	if got := obsGet(t, m2, "vfolder_quota_edquot_total", sl...); got != 0 {
		t.Errorf("EDQUOT count before any refusal = %v", got)
	}
	edquotWrites := m2[obsKey("vfolder_fuse_request_errors_total", "errno", "EDQUOT", "op", "write")]
	g, err := os.OpenFile(filepath.Join(view, "filler"), os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	var werr error
	for i := 0; i < 8 && werr == nil; i++ {
		_, werr = g.Write(make([]byte, 1<<20))
	}
	if !errors.Is(werr, syscall.EDQUOT) {
		t.Fatalf("filling the scope ended with %v; want EDQUOT", werr)
	}
	m3 := obsScrape(t, addr)
	if got := obsGet(t, m3, "vfolder_quota_edquot_total", sl...); got < 1 {
		t.Errorf("EDQUOT count after a refused write = %v; want >= 1", got)
	}
	if got := obsGet(t, m3, "vfolder_fuse_request_errors_total", "errno", "EDQUOT", "op", "write") - edquotWrites; got < 1 {
		t.Errorf("WRITE errors EDQUOT rose by %v; want >= 1", got)
	}
	if got := obsGet(t, m3, "vfolder_quota_free_bytes", sl...); got != 0 {
		t.Errorf("free bytes of a full scope = %v", got)
	}
	g.Close()

	// Sessions and their views.
	views0 := obsGet(t, m3, "vfolder_views", "namespace", "sessions")
	var s api.Session
	d.JSON(&s, "mount", "publish", "obs-job", "--user", obsUser, "data")
	m4 := obsScrape(t, addr)
	if got := obsGet(t, m4, "vfolder_sessions"); got != 1 {
		t.Errorf("sessions after a publish = %v; want 1", got)
	}
	if got := obsGet(t, m4, "vfolder_views", "namespace", "sessions") - views0; got != float64(len(s.Mounts)) {
		t.Errorf("session views rose by %v; the session has %d mounts", got, len(s.Mounts))
	}
	mdUnpublish(t, d, "obs-job", len(s.Mounts))
	m5 := obsScrape(t, addr)
	if got := obsGet(t, m5, "vfolder_sessions"); got != 0 {
		t.Errorf("sessions after the unpublish = %v; want 0", got)
	}
	if got := obsGet(t, m5, "vfolder_views", "namespace", "sessions"); got != views0 {
		t.Errorf("session views after the unpublish = %v; want %v", got, views0)
	}
	if got := obsGet(t, m5, "vfolder_quota_checks_running"); got != 0 {
		t.Errorf("checks running = %v", got)
	}
}

func keys(m map[string]float64) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// obsAuditLine is one line of the audit log.
type obsAuditLine struct {
	Time     time.Time      `json:"time"`
	UID      uint32         `json:"uid"`
	GID      uint32         `json:"gid"`
	PID      int            `json:"pid"`
	Method   string         `json:"method"`
	Route    string         `json:"route"`
	Action   string         `json:"action"`
	Object   map[string]any `json:"object"`
	Status   int            `json:"status"`
	Code     string         `json:"code"`
	Error    string         `json:"error"`
	Duration float64        `json:"duration_ms"`
}

func obsReadAudit(t *testing.T, path string) []obsAuditLine {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []obsAuditLine
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l obsAuditLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		out = append(out, l)
	}
	return out
}

// obsCLI runs the CLI and returns its exit code and pid.
func obsCLI(t *testing.T, d *Daemon, args ...string) (int, int) {
	t.Helper()
	cmd := exec.Command(d.CLIBin, append([]string{"--socket", d.Socket}, args...)...)
	cmd.Env = cleanEnv()
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("vfolder %v: %v\n%s", args, err, out)
	}
	return code, cmd.Process.Pid
}

// TestAuditLogCLI checks that changes made by the CLI are in the audit
// log with the CLI process's uid, gid and pid and their outcome, that a
// refused change shows its error code, that reads are not logged, and
// that SIGHUP makes the daemon reopen the log after it was rotated.
func TestAuditLogCLI(t *testing.T) {
	logDir := newDir(t)
	path := filepath.Join(logDir, "audit.log")
	d := StartDaemon(t, DaemonOptions{ExtraArgs: []string{"--audit-log", path}})
	st, err := os.Stat(path)
	if err != nil {
		t.Fatalf("the audit log was not created: %v", err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("audit log mode %v; want 0600", st.Mode().Perm())
	}

	code, createPID := obsCLI(t, d, "create", "audited", "local", "--user", obsUser)
	if code != 0 {
		t.Fatalf("create exited %d", code)
	}
	if code, _ := obsCLI(t, d, "list", "--user", obsUser); code != 0 {
		t.Fatalf("list exited %d", code)
	}
	code, trashPID := obsCLI(t, d, "trash", "audited", "--user", obsUser)
	if code != 0 {
		t.Fatalf("trash exited %d", code)
	}
	code, purgePID := obsCLI(t, d, "purge", "audited", "--user", obsUser, "--confirm", "Audited")
	if code != 1 {
		t.Fatalf("purge with a wrong confirmation exited %d; want 1", code)
	}

	lines := obsReadAudit(t, path)
	byPID := map[int]obsAuditLine{}
	for _, l := range lines {
		if l.Method == http.MethodGet || l.Method == http.MethodHead {
			t.Errorf("a read was logged: %+v", l)
		}
		if _, dup := byPID[l.PID]; dup {
			t.Errorf("two lines for pid %d", l.PID)
		}
		byPID[l.PID] = l
	}
	uid, gid := uint32(os.Geteuid()), uint32(os.Getegid())
	check := func(what string, pid int, action string, status int, code string) obsAuditLine {
		t.Helper()
		l, ok := byPID[pid]
		if !ok {
			t.Fatalf("no audit line for the %s (pid %d) in:\n%+v", what, pid, lines)
		}
		if l.UID != uid || l.GID != gid || l.Action != action || l.Status != status || l.Code != code || l.Time.IsZero() {
			t.Errorf("%s line %+v; want uid %d gid %d action %s status %d code %q", what, l, uid, gid, action, status, code)
		}
		return l
	}
	c := check("create", createPID, "folders.create", 201, "")
	if c.Object["name"] != "audited" || c.Object["volume"] != "local" || c.Object["owner"] != "user:"+obsUser {
		t.Errorf("create object %v", c.Object)
	}
	tr := check("trash", trashPID, "folders.trash", 200, "")
	if tr.Object["ref"] != "audited" {
		t.Errorf("trash object %v", tr.Object)
	}
	p := check("refused purge", purgePID, "folders.purge", 409, api.CodeConflict)
	if !strings.Contains(p.Error, "does not match") {
		t.Errorf("refused purge error %q", p.Error)
	}
	if _, ok := p.Object["confirm"]; ok {
		t.Errorf("the purge confirmation was logged: %v", p.Object)
	}

	// logrotate: move the file away, SIGHUP, the next line goes to a new
	// file at the same path.
	rotated := path + ".1"
	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(d.PID(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new audit log 10s after SIGHUP\n%s", d.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	code, restorePID := obsCLI(t, d, "restore", "audited", "--user", obsUser)
	if code != 0 {
		t.Fatalf("restore exited %d", code)
	}
	after := obsReadAudit(t, path)
	if len(after) != 1 || after[0].PID != restorePID || after[0].Action != "folders.restore" || after[0].Status != 200 {
		t.Errorf("the reopened log holds %+v; want the restore alone", after)
	}
	if n := len(obsReadAudit(t, rotated)); n != len(lines) {
		t.Errorf("the rotated file has %d lines; want %d", n, len(lines))
	}
}
