package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	vfs "github.com/vfolder/vfolder/fs"
	"github.com/vfolder/vfolder/meta"
	"github.com/vfolder/vfolder/quota"
)

// The daemon-kill test runs the mount and the quota ledger in a child
// process (this test binary, selected by qCrashEnv), drives the
// concurrent write load through the mount from the parent, kills the child
// with SIGKILL in the middle of it, detaches the dead mount and starts the
// child again on the same database. The restarted child recovers the
// ledger as vfolderd does (quota.Open, then Check with repair when the
// last run was unclean) and reports its usage, which must equal what the
// parent's walk of the backing folders finds, to the byte.

const qCrashEnv = "VFOLDER_QUOTA_CRASH_DIR"

// The crash test's scope and folders (two folders of one scope).
var (
	qCrashScope   = qScope(7)
	qCrashFolders = []qFolderOf{qFolderSpec(qCrashScope, 1), qFolderSpec(qCrashScope, 2)}
)

func qCrashView(i int) string { return fmt.Sprintf("crash%d", i) }

// qChildReport is what the child prints once it serves the mount.
type qChildReport struct {
	Unclean bool
	// Open is the usage right after quota.Open (recovery done), Checked
	// after the Check with repair that follows an unclean run.
	Open, Checked []quota.Usage // per folder, then the scope
	Findings      map[quota.Problem]int
	Err           string
}

// TestQuotaCrashChild is no test of its own: it is the daemon process of
// TestQuotaCrash.
func TestQuotaCrashChild(t *testing.T) {
	base := os.Getenv(qCrashEnv)
	if base == "" {
		t.Skip("runs only as the child process of TestQuotaCrash")
	}
	rep := qChildReport{}
	say := func() {
		b, _ := json.Marshal(rep)
		fmt.Printf("\nready %s\n", b)
	}
	vol := filepath.Join(base, "vol")
	db, m, err := qOpenLedger(filepath.Join(base, "state"), vol, qLogger(t))
	if err != nil {
		rep.Err = err.Error()
		say()
		return
	}
	usage := func() []quota.Usage {
		var out []quota.Usage
		for _, f := range qCrashFolders {
			out = append(out, m.FolderUsage(f.id))
		}
		return append(out, m.Usage(qCrashFolders[0].key()))
	}
	rep.Unclean = m.WasUnclean()
	rep.Open = usage()
	if rep.Unclean {
		// What vfolderd does after an unclean shutdown: a Check with
		// repair of every folder of the scopes it uses.
		var roots []quota.FolderRoot
		for _, f := range qCrashFolders {
			d, err := vfs.OpenFolder(vol, f.rel)
			if err != nil {
				rep.Err = err.Error()
				say()
				return
			}
			defer d.Close()
			roots = append(roots, quota.FolderRoot{FolderID: f.id, Dir: d})
		}
		r, err := m.Check(context.Background(), qCrashFolders[0].key(), roots, quota.CheckOptions{Repair: true})
		if err != nil {
			rep.Err = err.Error()
			say()
			return
		}
		rep.Findings = r.Counts
	}
	rep.Checked = usage()
	fsys, err := vfs.Mount(vfs.Options{
		MountPoint: filepath.Join(base, "mnt"), StorageUID: fsStorageUID, StorageGID: fsStorageGID,
		Logger: qLogger(t), Quota: m,
	})
	if err != nil {
		rep.Err = err.Error()
		say()
		return
	}
	for i, f := range qCrashFolders {
		if err := fsys.AddView(qViewSpec(vol, f, qCrashView(i), meta.PermWD)); err != nil {
			rep.Err = err.Error()
			say()
			return
		}
	}
	say()
	// Serve until the parent closes stdin (or kills this process).
	io.Copy(io.Discard, os.Stdin)
	if err := fsys.Close(); err != nil {
		t.Errorf("fs Close: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Errorf("quota Close: %v", err)
	}
	db.Close()
	fmt.Println("closed cleanly")
}

// qChild is one running child process.
type qChild struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	out    chan string // stdout lines after the report
	rep    qChildReport
	stderr strings.Builder
}

func qStartChild(t *testing.T, base string) *qChild {
	t.Helper()
	c := &qChild{out: make(chan string, 1024)}
	c.cmd = exec.Command(os.Args[0], "-test.run=^TestQuotaCrashChild$", "-test.count=1", "-test.v")
	c.cmd.Env = append(os.Environ(), qCrashEnv+"="+base)
	c.cmd.Stderr = &c.stderr
	var err error
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		reported := false
		for sc.Scan() {
			line := sc.Text()
			if !reported && strings.HasPrefix(line, "ready ") {
				reported = true
				ready <- strings.TrimPrefix(line, "ready ")
				continue
			}
			select {
			case c.out <- line:
			default:
			}
		}
		close(c.out)
		if !reported {
			close(ready)
		}
	}()
	select {
	case js, ok := <-ready:
		if !ok {
			c.cmd.Wait()
			t.Fatalf("child ended without a report: %s", c.stderr.String())
		}
		if err := json.Unmarshal([]byte(js), &c.rep); err != nil {
			c.kill()
			t.Fatalf("child report %q: %v", js, err)
		}
		if c.rep.Err != "" {
			c.kill()
			t.Fatalf("child failed: %s", c.rep.Err)
		}
	case <-time.After(60 * time.Second):
		c.kill()
		t.Fatalf("child not ready after 60s: %s", c.stderr.String())
	}
	return c
}

// kill sends SIGKILL to the child (by its PID) and reaps it.
func (c *qChild) kill() error {
	if err := syscall.Kill(c.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		return err
	}
	err := c.cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		return fmt.Errorf("child did not die by SIGKILL: %v", err)
	}
	return nil
}

// qDetachDead detaches the dead mount at mnt and, should its FUSE
// connection still be alive, aborts it through fusectl.
func qDetachDead(t *testing.T, mnt string) {
	t.Helper()
	mounts, err := mountTable()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mounts {
		if m.Point != mnt {
			continue
		}
		var maj, min uint32
		fmt.Sscanf(m.Dev, "%d:%d", &maj, &min)
		if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil {
			t.Fatalf("detach %s: %v", mnt, err)
		}
		abort := fmt.Sprintf("/sys/fs/fuse/connections/%d/abort", min)
		if _, err := os.Stat(abort); err == nil {
			os.WriteFile(abort, []byte("1"), 0)
		}
	}
	if left := mountsUnder(mnt); len(left) > 0 {
		t.Fatalf("mounts left at %s after detaching: %v", mnt, left)
	}
}

// TestQuotaCrash kills the daemon process 20 times in the middle of the
// concurrent write load and checks after each restart that the recovered
// usage equals what storage holds, to the byte, per folder and per scope.
func TestQuotaCrash(t *testing.T) {
	RequireRoot(t)
	iters := 20
	if testing.Short() {
		iters = 5
	}
	base := t.TempDir()
	vol, mnt, err := qMakeVolume(base)
	if err != nil {
		t.Fatal(err)
	}
	failOnMountsLeft(t, base)
	for _, f := range qCrashFolders {
		if err := qMakeFolder(vol, f); err != nil {
			t.Fatal(err)
		}
	}
	// The limit is set once, by a ledger opened for the purpose.
	db, m, err := qOpenLedger(filepath.Join(base, "state"), vol, qLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.SetLimit(qCrashFolders[0].key(), qLimit, 0); err != nil {
		t.Fatal(err)
	}
	m.Close()
	db.Close()

	views := make([]string, len(qCrashFolders))
	for i := range qCrashFolders {
		views[i] = filepath.Join(mnt, vfs.NSSessions, "quota-sess", qCrashView(i))
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	start := time.Now()
	var opsTotal, edquotTotal int64
	findings := map[quota.Problem]int{}
	for i := 0; ; i++ {
		c := qStartChild(t, base)
		if i > 0 && !c.rep.Unclean {
			t.Errorf("restart %d: the killed run is not reported unclean", i)
		}
		qVerifyRecovery(t, i, vol, c.rep)
		for p, n := range c.rep.Findings {
			findings[p] += n
		}
		if i == iters || t.Failed() {
			// The last start only verifies: shut the child down cleanly.
			c.stdin.Close()
			done := make(chan error, 1)
			go func() { done <- c.cmd.Wait() }()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("child exit: %v: %s", err, c.stderr.String())
				}
			case <-time.After(30 * time.Second):
				c.kill()
				t.Errorf("child did not exit after stdin closed")
			}
			clean := false
			for line := range c.out {
				clean = clean || line == "closed cleanly"
			}
			if !clean && !t.Failed() {
				t.Errorf("child did not report a clean shutdown: %s", c.stderr.String())
			}
			break
		}
		var dead atomic.Bool
		l := &qLoad{dirs: views, writers: 8, churn: true, stop: make(chan struct{}), dead: dead.Load, seed: rng.Uint64()}
		wait := l.run()
		time.Sleep(time.Duration(50+rng.IntN(350)) * time.Millisecond)
		dead.Store(true)
		if err := c.kill(); err != nil {
			t.Fatalf("iteration %d: %v", i, err)
		}
		close(l.stop)
		finished := make(chan struct{})
		go func() { wait(); close(finished) }()
		select {
		case <-finished:
		case <-time.After(30 * time.Second):
			t.Fatalf("iteration %d: writers still blocked 30s after the daemon died", i)
		}
		for _, e := range l.errs {
			t.Errorf("iteration %d: %s", i, e)
		}
		opsTotal += l.ops.Load()
		edquotTotal += l.edquot.Load()
		qDetachDead(t, mnt)
	}
	t.Logf("%d kills in %v, %d operations, %d EDQUOT; the checks after restarts found %v", iters, time.Since(start).Round(time.Millisecond), opsTotal, edquotTotal, findings)
}

// qVerifyRecovery compares the child's recovered usage with a walk of the
// backing folders.
func qVerifyRecovery(t *testing.T, iter int, vol string, rep qChildReport) {
	t.Helper()
	var scope qTruth
	for j, f := range qCrashFolders {
		tr := qMustWalk(t, filepath.Join(vol, f.rel))
		if iter == 0 {
			// Nothing was done yet: the empty folder roots are charged
			// from their first change through a view.
			tr = qTruth{}
		}
		scope.bytes += tr.bytes
		scope.inodes += tr.inodes
		if u := rep.Checked[j]; u.Used != tr.bytes || u.UsedInodes != tr.inodes {
			t.Errorf("restart %d: folder %d: recovered %d bytes %d inodes, storage %d bytes %d inodes (findings %v)",
				iter, j, u.Used, u.UsedInodes, tr.bytes, tr.inodes, rep.Findings)
		}
		if u := rep.Open[j]; u.Used != tr.bytes {
			// Bytes are exact right after recovery already; the Check
			// only settles inodes of empty objects.
			t.Errorf("restart %d: folder %d: %d bytes after recovery, %d after the check, storage %d", iter, j, u.Used, rep.Checked[j].Used, tr.bytes)
		}
	}
	if u := rep.Checked[len(qCrashFolders)]; u.Used != scope.bytes || u.UsedInodes != scope.inodes {
		t.Errorf("restart %d: scope: recovered %d bytes %d inodes, storage %+v", iter, u.Used, u.UsedInodes, scope)
	}
	if u := rep.Checked[len(qCrashFolders)]; u.Limit != qLimit {
		t.Errorf("restart %d: scope limit %d after recovery, want %d", iter, u.Limit, qLimit)
	}
	if scope.bytes > qLimit {
		t.Errorf("restart %d: storage holds %d bytes, over the %d limit", iter, scope.bytes, qLimit)
	}
}
