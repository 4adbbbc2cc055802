package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vfolder/vfolder/api"
)

// Soak: stress-ng's file-system stressors and fio with verification run
// through a view of a real daemon whose scope has a limit, for a bounded
// time, and afterwards the ledger must match the disk exactly (quota-scope
// check), the daemon must still serve and must not have logged an error.
// It runs only when VFOLDER_SOAK is set to a duration (make soak; make
// check runs a short one).

const soakUser = "50a4c3b2a1f04e9d8c7b6a5f4e3d2c1b"

// soakStressors are stress-ng's file-system stressors that apply to a
// FUSE view, plus readahead. Left out: fsize (it takes the EDQUOT of a
// fallocate far past any limit for a failure), bind-mount, binderfs, chattr and inode-flags
// (ioctls a FUSE file system does not serve), dnotify/fanotify (host-wide
// notification set-ups), handle (views refuse file handles by design),
// lease (FUSE has no leases), ioprio, procfs and verity.
var soakStressors = []string{
	"access", "chdir", "chmod", "chown", "copy-file", "dentry", "dir", "dirdeep",
	"dirmany", "dup", "fallocate", "fcntl", "fiemap", "filename", "flock", "fpunch",
	"fstat", "getdent", "hdd", "io", "iomix", "link", "locka", "lockf",
	"lockofd", "mknod", "open", "readahead", "rename", "symlink", "sync-file", "touch", "utime",
	"xattr",
}

func soakDuration(t *testing.T) time.Duration {
	v := os.Getenv("VFOLDER_SOAK")
	if v == "" {
		t.Skip("soak test: set VFOLDER_SOAK to a duration (make soak)")
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 20*time.Second {
		t.Fatalf("VFOLDER_SOAK=%q: want a duration of at least 20s", v)
	}
	return d
}

func TestSoak(t *testing.T) {
	total := soakDuration(t)
	for _, tool := range []string{"stress-ng", "fio"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("soak test needs %s (contrib/install-deps.sh installs it): %v", tool, err)
		}
	}
	d := StartDaemon(t, DaemonOptions{})
	const limit = 768 << 20
	d.OK("create", "soak", "local", "--user", soakUser)
	d.OK("quota-scope", "set", "local", soakUser, fmt.Sprint(limit), "-t", "user")
	view := filepath.Join(d.MountPoint, "users", soakUser, "soak")
	if _, err := os.Stat(view); err != nil {
		t.Fatalf("view: %v", err)
	}

	// Phase 1: stress-ng, half of the time.
	stressDir := filepath.Join(view, "stress")
	if err := os.Mkdir(stressDir, 0o777); err != nil {
		t.Fatal(err)
	}
	stressTime := total / 2
	args := []string{"--temp-path", stressDir, "--timeout", fmt.Sprintf("%ds", int(stressTime.Seconds())),
		"--verify", "--metrics-brief"}
	// Small files (copy-file's smallest is 128 MB), so that the stressors
	// together stay well below the limit (their defaults are up to 1 GB a
	// worker).
	args = append(args, "--copy-file-bytes", "128M")
	for _, o := range []string{"dirdeep", "fallocate", "fiemap", "hdd", "iomix", "readahead", "sync-file"} {
		args = append(args, "--"+o+"-bytes", "16M")
	}
	for _, s := range soakStressors {
		args = append(args, "--"+s, "1")
	}
	out, code := soakRun(t, stressTime+2*time.Minute, "stress-ng", args...)
	// stress-ng exits 0 when every stressor passed, 3 when some could not
	// run here (not supported, no resources), 2 when a stressor failed
	// (a verification error among them), 1 on bad arguments.
	if code != 0 && code != 3 {
		t.Fatalf("stress-ng exited %d:\n%s", code, out)
	}
	if strings.Contains(out, "verification failed") || strings.Contains(out, "verify failed") {
		t.Fatalf("stress-ng reports verification failures:\n%s", out)
	}
	t.Logf("stress-ng (exit %d):\n%s", code, soakTail(out, 40))
	soakExact(t, d, "after stress-ng")

	// Phase 2: fio random writes with crc32c verification, until the
	// remaining time is used up; every block is read back and checked.
	fioDir := filepath.Join(view, "fio")
	if err := os.Mkdir(fioDir, 0o777); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(total / 3)
	for round := 0; round == 0 || time.Now().Before(deadline); round++ {
		out, code := soakRun(t, 5*time.Minute, "fio", "--name=verify", "--directory="+fioDir,
			"--ioengine=psync", "--rw=randwrite", "--bsrange=4k-256k", "--size=48m", "--numjobs=4",
			"--verify=crc32c", "--verify_fatal=1", "--do_verify=1", "--fallocate=none",
			fmt.Sprintf("--randseed=%d", 1000+round), "--group_reporting")
		if code != 0 {
			t.Fatalf("fio verify round %d exited %d:\n%s", round, code, out)
		}
		if !strings.Contains(out, "err= 0") {
			t.Fatalf("fio verify round %d reports errors:\n%s", round, out)
		}
	}
	soakExact(t, d, "after fio verify")

	// Phase 3: fill the scope with sequential writers: the writes that
	// cross the limit are cut short, the next get EDQUOT; usage ends at
	// exactly the limit and the ledger matches the disk.
	fillDir := filepath.Join(view, "fill")
	if err := os.Mkdir(fillDir, 0o777); err != nil {
		t.Fatal(err)
	}
	out, code = soakRun(t, 5*time.Minute, "fio", "--name=fill", "--directory="+fillDir,
		"--ioengine=psync", "--rw=write", "--bs=1m", fmt.Sprintf("--size=%d", limit), "--numjobs=4",
		"--fallocate=none", "--group_reporting")
	if code == 0 {
		t.Fatalf("fio wrote 4 x the limit without an error:\n%s", out)
	}
	if !strings.Contains(out, "Disk quota exceeded") {
		t.Fatalf("fio's fill failed, but not with EDQUOT:\n%s", out)
	}
	q := soakExact(t, d, "after the fill")
	if q.UsedBytes != limit {
		t.Errorf("after the fill usage is %d bytes; want exactly the limit %d", q.UsedBytes, int64(limit))
	}

	if err := d.exitErr(); err != nil {
		t.Fatalf("vfolderd exited: %v", err)
	}
	if log := d.Log(); strings.Contains(log, `"level":"error"`) || strings.Contains(log, "panic") {
		t.Errorf("vfolderd logged errors during the soak:\n%s", soakTail(log, 60))
	}
}

// soakExact runs quota-scope check: no differences between the ledger and
// the disk; it returns the scope's figures.
func soakExact(t *testing.T, d *Daemon, when string) api.QuotaScope {
	t.Helper()
	r := d.CLI("quota-scope", "check", "local", soakUser, "-t", "user")
	if r.Code != 0 {
		t.Fatalf("%s: quota-scope check found differences (exit %d):\n%s", when, r.Code, r)
	}
	q := dqScope(d, soakUser)
	t.Logf("%s: usage %d bytes, %d inodes", when, q.UsedBytes, q.UsedInodes)
	if q.UsedBytes > q.LimitBytes {
		t.Fatalf("%s: usage %d above the limit %d", when, q.UsedBytes, q.LimitBytes)
	}
	return q
}

// soakRun runs a tool with a deadline and returns its combined output and
// exit code (-1 when it could not run).
func soakRun(t *testing.T, timeout time.Duration, name string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Env = cleanEnv()
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s did not end within %v:\n%s", name, timeout, soakTail(out.String(), 40))
	}
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return out.String(), ee.ExitCode()
		}
		t.Fatalf("%s: %v", name, err)
	}
	return out.String(), 0
}

func soakTail(s string, lines int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}
