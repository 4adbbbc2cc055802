package e2e

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/api"
)

// Users of the daemon quota tests (32-hex UUIDs of their own).
const (
	dqUser   = "5e4d3c2b1a0f4e9d8c7b6a5f4e3d2c1b"
	dqPolicy = "7c6b5a4f3e2d4c1b9a8f7e6d5c4b3a29"
	dqMiB    = int64(1 << 20)
)

// dqScope is `quota-scope get --json`.
func dqScope(d *Daemon, user string) api.QuotaScope {
	d.t.Helper()
	var q api.QuotaScope
	d.JSON(&q, "quota-scope", "get", "local", user, "-t", "user")
	return q
}

// dqCheck runs `quota-scope check --json` and decodes the report whatever
// the exit code.
func dqCheck(t *testing.T, d *Daemon, args ...string) (int, api.QuotaCheck) {
	t.Helper()
	r := d.CLI(append([]string{"--json", "quota-scope", "check", "local", dqUser, "-t", "user"}, args...)...)
	var rep api.QuotaCheck
	if err := json.Unmarshal([]byte(r.Stdout), &rep); err != nil {
		t.Fatalf("check printed no report: %v\n%s", err, r)
	}
	return r.Code, rep
}

// dqDD runs dd with the given operands and returns its stderr and error.
func dqDD(t *testing.T, operands ...string) (string, error) {
	t.Helper()
	var errb bytes.Buffer
	cmd := exec.Command("dd", operands...)
	cmd.Stderr = &errb
	cmd.Env = cleanEnv()
	err := cmd.Run()
	return errb.String(), err
}

func dqSize(t *testing.T, p string) int64 {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// dqDF returns the size and available bytes df reports for p.
func dqDF(t *testing.T, p string) (size, avail int64) {
	t.Helper()
	out, err := exec.Command("df", "-B1", "--output=size,avail", p).CombinedOutput()
	if err != nil {
		t.Fatalf("df -B1 %s: %v\n%s", p, err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	f := strings.Fields(lines[len(lines)-1])
	if len(f) != 2 {
		t.Fatalf("df output %q", out)
	}
	size, err1 := strconv.ParseInt(f[0], 10, 64)
	avail, err2 := strconv.ParseInt(f[1], 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("df output %q", out)
	}
	return size, avail
}

// dqWaitChecked waits until no check of the scope runs and returns it.
func dqWaitChecked(t *testing.T, d *Daemon, user string) api.QuotaScope {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		q := dqScope(d, user)
		if !q.Checking {
			return q
		}
		if time.Now().After(deadline) {
			t.Fatalf("the quota check of %s still runs after 60s", user)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestDaemonQuota drives the quota through the real daemon and CLI: the
// limit in statfs/df, a dd cut at exactly the limit, usage figures from
// the ledger equal to what is on the volume, a lowered limit, files
// written behind the daemon found and repaired by check, and SIGKILLs of
// the daemon in the middle of a dd.
func TestDaemonQuota(t *testing.T) {
	d := StartDaemon(t, DaemonOptions{})
	var f api.Folder
	d.JSON(&f, "create", "data", "local", "--user", dqUser)
	view := filepath.Join(d.MountPoint, "users", dqUser, "data")
	d.OK("quota-scope", "set", "local", dqUser, "100MiB", "-t", "user")
	const limit = 100 * dqMiB

	// statfs in the view reports the scope's limit.
	var sfs unix.Statfs_t
	if err := unix.Statfs(view, &sfs); err != nil {
		t.Fatal(err)
	}
	if got := int64(sfs.Blocks) * sfs.Frsize; got != limit {
		t.Errorf("statfs of the view: %d blocks of %d = %d bytes; want the limit %d", sfs.Blocks, sfs.Frsize, got, limit)
	}
	// A new folder holds its root directory, charged at its creation.
	root := dqSize(t, f.Path)
	if size, avail := dqDF(t, view); size != limit || avail != limit-root {
		t.Errorf("df -B1 on the view: size %d, avail %d; want %d, %d", size, avail, limit, limit-root)
	}

	// dd of 200 MiB stops at exactly the limit, with EDQUOT.
	stderr, err := dqDD(t, "if=/dev/zero", "of="+filepath.Join(view, "big"), "bs=1M", "count=200")
	if err == nil || !strings.Contains(stderr, "Disk quota exceeded") {
		t.Errorf("dd of 200 MiB under a 100 MiB quota: %v, %q; want it to fail with \"Disk quota exceeded\"", err, stderr)
	}
	// The folder root is charged its size: the file gets the rest.
	if got := dqSize(t, filepath.Join(f.Path, "big")); got != limit-root {
		t.Errorf("big on the volume has %d bytes; want exactly %d (the limit less the folder root's %d)", got, limit-root, root)
	}
	q := dqScope(d, dqUser)
	if tr := qMustWalk(t, f.Path); q.UsedBytes != limit || tr.bytes != limit || q.UsedInodes != tr.inodes {
		t.Errorf("quota-scope get: used %d bytes, %d inodes; volume %d bytes, %d inodes; want %d", q.UsedBytes, q.UsedInodes, tr.bytes, tr.inodes, limit)
	}
	if q.LimitBytes != limit {
		t.Errorf("limit %d", q.LimitBytes)
	}
	var u api.FolderUsage
	d.JSON(&u, "usage", f.ID)
	if u.UsedBytes != limit || u.UsedInodes != 1 {
		t.Errorf("vfolder usage = %+v; want %d bytes, 1 inode", u, limit)
	}
	if r := d.OK("usage", "data", "--user", dqUser); !strings.Contains(r.Stdout, strconv.FormatInt(limit, 10)) {
		t.Errorf("vfolder usage printed %q", r.Stdout)
	}
	if _, avail := dqDF(t, view); avail != 0 {
		t.Errorf("df avail at the limit = %d; want 0", avail)
	}

	// A limit below the usage: growth fails, overwriting and removing work.
	d.OK("quota-scope", "set", "local", dqUser, "50M", "-t", "user")
	if size, _ := dqDF(t, view); size != 50*dqMiB {
		t.Errorf("df size after lowering the limit = %d; want %d", size, 50*dqMiB)
	}
	if stderr, err := dqDD(t, "if=/dev/zero", "of="+filepath.Join(view, "big"), "bs=1", "count=1", "oflag=append", "conv=notrunc"); err == nil || !strings.Contains(stderr, "Disk quota exceeded") {
		t.Errorf("appending above the limit: %v, %q; want EDQUOT", err, stderr)
	}
	if stderr, err := dqDD(t, "if=/dev/zero", "of="+filepath.Join(view, "other"), "bs=4k", "count=1"); err == nil || !strings.Contains(stderr, "Disk quota exceeded") {
		t.Errorf("a new file above the limit: %v, %q; want EDQUOT", err, stderr)
	}
	if stderr, err := dqDD(t, "if=/dev/zero", "of="+filepath.Join(view, "big"), "bs=1M", "count=1", "conv=notrunc"); err != nil {
		t.Errorf("overwriting inside the file above the limit: %v, %s", err, stderr)
	}
	if err := os.Remove(filepath.Join(view, "big")); err != nil {
		t.Fatalf("rm above the limit: %v", err)
	}
	q = dqScope(d, dqUser)
	if tr := qMustWalk(t, f.Path); q.UsedBytes != tr.bytes || q.UsedInodes != tr.inodes || q.UsedBytes > root {
		t.Errorf("after rm: used %d bytes, %d inodes; volume %d, %d", q.UsedBytes, q.UsedInodes, tr.bytes, tr.inodes)
	}
	if stderr, err := dqDD(t, "if=/dev/zero", "of="+filepath.Join(view, "ten"), "bs=1M", "count=10"); err != nil {
		t.Fatalf("writing 10 MiB under the lowered limit: %v, %s", err, stderr)
	}

	// Files written into the backing folder behind the daemon: check
	// finds them (exit 1) and --repair takes them in.
	if err := os.WriteFile(filepath.Join(f.Path, "direct1"), make([]byte, 12345), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(f.Path, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.Path, "sub", "direct2"), make([]byte, 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	truth := qMustWalk(t, f.Path)
	code, rep := dqCheck(t, d)
	if code != 1 || !rep.Drift || rep.Repaired || rep.UnknownFiles != 3 || len(rep.Folders) != 1 {
		t.Errorf("check with files written behind the daemon: exit %d, %+v; want exit 1, 3 unknown", code, rep)
	} else if fr := rep.Folders[0]; fr.DiskBytes != truth.bytes || fr.LedgerBytes != 10*dqMiB+root || fr.Name != "data" ||
		fr.DiskDirBytes != root+dqSize(t, filepath.Join(f.Path, "sub")) {
		t.Errorf("check folder row = %+v; want ledger %d, disk %d", fr, 10*dqMiB+root, truth.bytes)
	}
	if r := d.CLI("quota-scope", "check", "local", dqUser, "-t", "user"); r.Code != 1 || !strings.Contains(r.Stdout, "LEDGER BYTES") ||
		!strings.Contains(r.Stdout, "direct1") || !strings.Contains(r.Stderr, "--repair") || !strings.Contains(r.Stdout, "disk bytes in directories") {
		t.Errorf("check as a table: %s", r)
	}
	if q := dqScope(d, dqUser); q.UsedBytes != 10*dqMiB+root {
		t.Errorf("a check without repair changed the usage to %d", q.UsedBytes)
	}
	code, rep = dqCheck(t, d, "--repair")
	if code != 0 || !rep.Repaired || rep.UsedBytes != truth.bytes {
		t.Errorf("check --repair: exit %d, %+v", code, rep)
	}
	if q := dqScope(d, dqUser); q.UsedBytes != truth.bytes || q.UsedInodes != truth.inodes {
		t.Errorf("after repair: used %d bytes, %d inodes; the volume holds %d, %d", q.UsedBytes, q.UsedInodes, truth.bytes, truth.inodes)
	}
	if code, rep := dqCheck(t, d); code != 0 || rep.Drift {
		t.Errorf("check after repair: exit %d, %+v", code, rep)
	}
	if !strings.Contains(d.Log(), "quota check finished") {
		t.Errorf("the daemon did not log the check")
	}

	// SIGKILL in the middle of a dd, five times: after each restart the
	// usage equals what the volume holds, to the byte.
	d.OK("quota-scope", "set", "local", dqUser, "2G", "-t", "user")
	for round := 0; round < 5; round++ {
		name := "crash" + strconv.Itoa(round)
		cmd := exec.Command("dd", "if=/dev/zero", "of="+filepath.Join(view, name), "bs=64k", "count=20000")
		cmd.Env = cleanEnv()
		var ddErr bytes.Buffer
		cmd.Stderr = &ddErr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		ddDone := make(chan error, 1)
		go func() { ddDone <- cmd.Wait() }()
		back := filepath.Join(f.Path, name)
		want := int64(2+round) * dqMiB
		deadline := time.Now().Add(30 * time.Second)
		for {
			fi, err := os.Lstat(back)
			if err == nil && fi.Size() >= want {
				break
			}
			if time.Now().After(deadline) {
				_ = cmd.Process.Kill()
				<-ddDone
				t.Fatalf("round %d: dd did not write %d bytes within 30s (%s)", round, want, ddErr.String())
			}
			time.Sleep(5 * time.Millisecond)
		}
		d.Kill()
		select {
		case err := <-ddDone:
			if err == nil {
				t.Errorf("round %d: dd finished although the daemon was killed", round)
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Signal(syscall.SIGKILL)
			<-ddDone
			t.Errorf("round %d: dd still ran 30s after the daemon was killed", round)
		}
		d.Start()
		truth := qMustWalk(t, f.Path)
		q := dqScope(d, dqUser)
		if q.UsedBytes != truth.bytes {
			t.Errorf("round %d: after SIGKILL and restart quota-scope get says %d bytes; the volume holds %d", round, q.UsedBytes, truth.bytes)
		}
		t.Logf("round %d: killed at %d bytes of %s; usage after restart %d bytes (volume %d), %d inodes", round, dqSize(t, back), name, q.UsedBytes, truth.bytes, q.UsedInodes)
		q = dqWaitChecked(t, d, dqUser)
		if q.UsedBytes != truth.bytes || q.UsedInodes != truth.inodes {
			t.Errorf("round %d: after the recovery check: %d bytes, %d inodes; the volume holds %d, %d", round, q.UsedBytes, q.UsedInodes, truth.bytes, truth.inodes)
		}
	}
	if !strings.Contains(d.Log(), "did not stop cleanly") {
		t.Errorf("the daemon did not say it checks the quota after a crash")
	}
	if code, rep := dqCheck(t, d); code != 0 || rep.Drift {
		t.Errorf("check after the crashes: exit %d, %+v", code, rep)
	}
	// A clean stop and start keep the figures and owe no check.
	before := dqScope(d, dqUser)
	d.Stop()
	d.Start()
	if q := dqScope(d, dqUser); q.UsedBytes != before.UsedBytes || q.UsedInodes != before.UsedInodes || q.Checking || q.LimitBytes != 2<<30 {
		t.Errorf("after a clean restart: %+v; before %+v", q, before)
	}
	if _, err := os.Lstat(filepath.Join(d.StateDir, "quota-check-pending")); err == nil {
		t.Errorf("a recovery check is still owed after a clean restart")
	}
}

// TestDaemonQuotaPolicyScope: a scope made by the first folder under a
// policy's max_quota_scope_size is enforced from the first byte, and a
// purge gives its usage back.
func TestDaemonQuotaPolicyScope(t *testing.T) {
	d := StartDaemon(t, DaemonOptions{})
	d.OK("policy", "set", "--user", dqPolicy, "--max-quota-scope-size", "1MiB")
	var f api.Folder
	d.JSON(&f, "create", "small", "local", "--user", dqPolicy)
	view := filepath.Join(d.MountPoint, "users", dqPolicy, "small")
	stderr, err := dqDD(t, "if=/dev/zero", "of="+filepath.Join(view, "f"), "bs=3000", "count=1000")
	if err == nil || !strings.Contains(stderr, "Disk quota exceeded") {
		t.Errorf("dd of 3 MB under a 1 MiB policy scope: %v, %q; want EDQUOT", err, stderr)
	}
	if got, root := dqSize(t, filepath.Join(f.Path, "f")), dqSize(t, f.Path); got != dqMiB-root {
		t.Errorf("f has %d bytes; want exactly %d (a write cut short at the limit, less the folder root's %d)", got, dqMiB-root, root)
	}
	q := dqScope(d, dqPolicy)
	if q.LimitBytes != dqMiB || q.UsedBytes != dqMiB {
		t.Errorf("scope = %+v; want limit and usage %d", q, dqMiB)
	}
	d.OK("delete", f.ID)
	if q := dqScope(d, dqPolicy); q.UsedBytes != dqMiB {
		t.Errorf("usage with the folder in the trash = %d; want %d", q.UsedBytes, dqMiB)
	}
	d.OK("purge", f.ID, "--confirm", "small", "--wait")
	if q := dqScope(d, dqPolicy); q.UsedBytes != 0 || q.UsedInodes != 0 {
		t.Errorf("usage after purge = %d bytes, %d inodes; want 0", q.UsedBytes, q.UsedInodes)
	}
}

// TestDaemonQuotaBadLimits: the CLI refuses bad limits before calling the
// daemon, and the daemon refuses them from any client; nothing changes.
func TestDaemonQuotaBadLimits(t *testing.T) {
	d := StartDaemon(t, DaemonOptions{})
	d.OK("quota-scope", "set", "local", dqUser, "1G", "-t", "user")
	for _, tc := range []struct{ limit, msg string }{
		{"-5G", "negative"},
		{"1.5", "not a whole number of bytes"},
		{"99999999999P", "too large"},
		{"12XB", `unknown unit "XB"`},
		{"abc", "not a number"},
	} {
		r := d.CLI("quota-scope", "set", "local", dqUser, tc.limit, "-t", "user")
		if r.Code != 1 || !strings.Contains(r.Stderr, tc.msg) {
			t.Errorf("quota-scope set %s: %s; want exit 1 saying %q", tc.limit, r, tc.msg)
		}
	}
	c := d.Client()
	for _, body := range []string{`{"limit_bytes":-5}`, `{"limit_bytes":1.5}`, `{"limit_bytes":112589990684151774822400}`, `{"limit_bytes":"12XB"}`, `{"limit_bytes":"abc"}`} {
		req, err := http.NewRequest("PUT", "http://vfolderd/v1/quota-scopes/local/user:"+dqUser, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.HTTP.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e api.Error
		_ = json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != 400 || e.Code != api.CodeInvalid || !strings.Contains(e.Message, "limit_bytes") {
			t.Errorf("PUT %s: %d %+v; want 400 naming limit_bytes", body, resp.StatusCode, e)
		}
	}
	if q := dqScope(d, dqUser); q.LimitBytes != 1<<30 {
		t.Errorf("refused limits changed the scope: %+v", q)
	}
}
