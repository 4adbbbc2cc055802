package quota

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The crash test runs a write workload in a child process (this test
// binary, selected by QUOTA_CRASH_DIR), kills it with SIGKILL at a random
// moment, reopens the ledger and compares it with the files on disk.

const crashEnv = "QUOTA_CRASH_DIR"

var crashFolders = []string{"f1", "f2"}

func TestCrashRecovery(t *testing.T) {
	iters := 20
	if testing.Short() {
		iters = 5
	}
	base := t.TempDir()
	vol := filepath.Join(base, "vol")
	for _, f := range crashFolders {
		if err := os.MkdirAll(filepath.Join(vol, f), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	for i := range iters {
		var stderr strings.Builder
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashEnv+"="+base, "QUOTA_CRASH_SEED="+strconv.Itoa(i))
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		pid := cmd.Process.Pid
		ready := make(chan bool, 1)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if sc.Text() == "ready" {
					ready <- true
					break
				}
			}
			for sc.Scan() {
			}
			ready <- false
		}()
		select {
		case ok := <-ready:
			if !ok {
				cmd.Wait()
				t.Fatalf("iteration %d: child ended before it was ready: %s", i, stderr.String())
			}
		case <-time.After(60 * time.Second):
			syscall.Kill(pid, syscall.SIGKILL)
			cmd.Wait()
			t.Fatalf("iteration %d: child not ready: %s", i, stderr.String())
		}
		time.Sleep(time.Duration(rng.IntN(250)) * time.Millisecond)
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		err = cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("iteration %d: child did not die by SIGKILL: %v; stderr: %s", i, err, stderr.String())
		}
		if strings.Contains(stderr.String(), "unexpected") {
			t.Fatalf("iteration %d: child reported: %s", i, stderr.String())
		}
		verifyAfterCrash(t, i, base, vol)
	}
}

func verifyAfterCrash(t *testing.T, iter int, base, vol string) {
	t.Helper()
	db := openDB(t, filepath.Join(base, "db"))
	defer db.Close()
	m := openMgr(t, db, Options{OpenFolder: folderOpener(vol)})
	defer m.Close()
	if !m.WasUnclean() {
		t.Fatalf("iteration %d: killed run not reported unclean", iter)
	}
	s := testScope(t, 1)
	// Bytes are exact right after recovery: per folder, per inode.
	var roots []FolderRoot
	var nonEmpty int
	for _, f := range crashFolders {
		tr := diskTruth(t, filepath.Join(vol, f))
		recs := records(t, m, s, f)
		if len(recs) == 0 {
			// Never changed through the ledger: its root is charged from
			// its first change (or check).
			tr = truth{sizes: map[InodeKey]int64{}}
		}
		if u := m.FolderUsage(f); u.Used != tr.bytes {
			t.Errorf("iteration %d: folder %s: ledger %d bytes, disk %d", iter, f, u.Used, tr.bytes)
		}
		for k, size := range recs {
			if d, ok := tr.sizes[k]; ok && d != size {
				t.Errorf("iteration %d: %s inode %v: record %d bytes, disk %d", iter, f, k, size, d)
			} else if !ok && size != 0 {
				t.Errorf("iteration %d: %s inode %v: record %d bytes, not on disk", iter, f, k, size)
			}
		}
		for k, d := range tr.sizes {
			if _, ok := recs[k]; !ok && d != 0 {
				t.Errorf("iteration %d: %s inode %v: %d bytes on disk, no record", iter, f, k, d)
			}
			if d > 0 {
				nonEmpty++
			}
		}
		dir, err := os.Open(filepath.Join(vol, f))
		if err != nil {
			t.Fatal(err)
		}
		defer dir.Close()
		roots = append(roots, FolderRoot{FolderID: f, Dir: dir})
	}
	if nonEmpty == 0 {
		t.Fatalf("iteration %d: workload left no data", iter)
	}
	if t.Failed() {
		t.FailNow()
	}
	assertConsistent(t, m)
	// Inode counts of creates and removals in flight at the kill are
	// settled by a Check; it must find nothing that carries bytes.
	rep, err := m.Check(context.Background(), s, roots, CheckOptions{Repair: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, fnd := range rep.Findings {
		inodeOnly := fnd.Problem == ProblemUnknown || fnd.Problem == ProblemGone || fnd.Problem == ProblemKind
		if !inodeOnly || fnd.LedgerBytes != 0 || fnd.DiskBytes != 0 {
			t.Errorf("iteration %d: check found %+v", iter, fnd)
		}
	}
	for _, f := range crashFolders {
		tr := diskTruth(t, filepath.Join(vol, f))
		if u := m.FolderUsage(f); u.Used != tr.bytes || u.UsedInodes != tr.inodes {
			t.Fatalf("iteration %d: folder %s after check: %d bytes %d inodes, disk %d / %d", iter, f, u.Used, u.UsedInodes, tr.bytes, tr.inodes)
		}
	}
	rep, err = m.Check(context.Background(), s, roots, CheckOptions{})
	if err != nil || rep.Drift() {
		t.Fatalf("iteration %d: second check: %v %+v", iter, err, rep)
	}
	assertConsistent(t, m)
	if t.Failed() {
		t.FailNow()
	}
}

// TestCrashChild is the workload of TestCrashRecovery; it runs only in
// the child process.
func TestCrashChild(t *testing.T) {
	base := os.Getenv(crashEnv)
	if base == "" {
		t.Skip("helper process of TestCrashRecovery")
	}
	seed, _ := strconv.Atoi(os.Getenv("QUOTA_CRASH_SEED"))
	vol := filepath.Join(base, "vol")
	db := openDB(t, filepath.Join(base, "db"))
	m := openMgr(t, db, Options{OpenFolder: folderOpener(vol)})
	s := testScope(t, 1)
	if err := m.SetLimit(s, 2<<20, 0); err != nil {
		t.Fatal(err)
	}
	var xs []*simFS
	for _, f := range crashFolders {
		xs = append(xs, newSimFS(t, m, s, filepath.Join(vol, f), f))
	}
	var ops atomic.Int64
	var once sync.Once
	for w := range 4 {
		go crashWorker(xs, w, uint64(seed), &ops)
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if ops.Load() >= 100 {
			once.Do(func() { fmt.Println("ready") })
		}
		time.Sleep(time.Millisecond)
	}
	fmt.Fprintln(os.Stderr, "unexpected: child was not killed")
	os.Exit(3)
}

func expected(err error) bool {
	return err == nil || errors.Is(err, ErrExceeded) || errors.Is(err, unix.ENOENT) ||
		errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENOTEMPTY) || errors.Is(err, unix.ENODATA) ||
		errors.Is(err, unix.ENOSPC) // a file system's xattr space of one inode is full
}

func crashWorker(xs []*simFS, w int, seed uint64, ops *atomic.Int64) {
	rng := rand.New(rand.NewPCG(seed, uint64(w)))
	x := xs[w%len(xs)]
	dir := fmt.Sprintf("w%d", w)
	check := func(what string, err error) {
		if !expected(err) {
			fmt.Fprintf(os.Stderr, "unexpected: worker %d: %s: %v\n", w, what, err)
		}
	}
	check("mkdir", x.mkdir(dir))
	open := map[string]*handle{}
	var orphans []*handle
	var shared *handle
	buf := make([]byte, 64<<10)
	get := func(name string) *handle {
		if h := open[name]; h != nil {
			return h
		}
		h, err := x.open(name)
		if errors.Is(err, unix.ENOENT) {
			h, err = x.create(name)
		}
		check("open "+name, err)
		if h != nil {
			open[name] = h
		}
		return h
	}
	for {
		name := fmt.Sprintf("%s/n%d", dir, rng.IntN(8))
		switch op := rng.IntN(100); {
		case op < 30:
			if h := get(name); h != nil {
				off := rng.Int64N(256 << 10)
				_, err := x.write(h, off, buf[:1+rng.IntN(len(buf)-1)])
				check("write", err)
			}
		case op < 38:
			if h := get(name); h != nil {
				check("truncate", x.truncate(h, rng.Int64N(300<<10)))
			}
		case op < 46:
			if h := open[name]; h != nil {
				x.release(h)
				delete(open, name)
			}
		case op < 56:
			if h := open[name]; h != nil {
				x.release(h)
				delete(open, name)
			}
			check("unlink", x.unlink(name))
		case op < 60: // unlink while open, keep writing to it
			if h := open[name]; h != nil {
				check("unlink open", x.unlink(name))
				delete(open, name)
				orphans = append(orphans, h)
			}
		case op < 64:
			if len(orphans) > 0 {
				h := orphans[0]
				_, err := x.write(h, rng.Int64N(64<<10), buf[:1+rng.IntN(4096)])
				check("orphan write", err)
				if rng.IntN(2) == 0 {
					x.release(h)
					orphans = orphans[1:]
				}
			}
		case op < 69: // long names: the directory grows by blocks
			check("link", x.link(name, fmt.Sprintf("%s/%s%d", dir, strings.Repeat("L", 180), rng.IntN(40))))
		case op < 73:
			check("unlink link", x.unlink(fmt.Sprintf("%s/%s%d", dir, strings.Repeat("L", 180), rng.IntN(40))))
		case op < 77:
			to := fmt.Sprintf("%s/n%d", dir, rng.IntN(8))
			if err := x.rename(name, to); err == nil {
				if h := open[name]; h != nil {
					delete(open, name)
					open[to] = h
				}
			} else {
				check("rename", err)
			}
		case op < 82:
			target := strings.Repeat("t", 1+rng.IntN(200))
			check("symlink", x.symlink(target, fmt.Sprintf("%s/s%d", dir, rng.IntN(4))))
		case op < 85:
			check("unlink symlink", x.unlink(fmt.Sprintf("%s/s%d", dir, rng.IntN(4))))
		case op < 88:
			check("mkdir", x.mkdir(fmt.Sprintf("%s/d%d", dir, rng.IntN(3))))
		case op < 90:
			check("rmdir", x.rmdir(fmt.Sprintf("%s/d%d", dir, rng.IntN(3))))
		case op < 93: // xattrs of a file, a directory or the folder root
			target := []string{name, fmt.Sprintf("%s/d%d", dir, rng.IntN(3)), dir, "."}[rng.IntN(4)]
			attr := fmt.Sprintf("user.a%d", rng.IntN(4))
			check("setxattr", x.setxattr(target, attr, buf[:rng.IntN(1500)]))
		case op < 95:
			target := []string{name, dir, "."}[rng.IntN(3)]
			check("removexattr", x.removexattr(target, fmt.Sprintf("user.a%d", rng.IntN(4))))
		default: // the file every worker writes at once
			x0 := xs[0]
			if shared == nil {
				h, err := x0.open("shared")
				if errors.Is(err, unix.ENOENT) {
					h, err = x0.create("shared")
					if errors.Is(err, unix.EEXIST) {
						h, err = x0.open("shared")
					}
				}
				check("open shared", err)
				shared = h
			}
			if shared != nil {
				if rng.IntN(4) == 0 {
					check("truncate shared", x0.truncate(shared, rng.Int64N(128<<10)))
				} else {
					_, err := x0.write(shared, rng.Int64N(128<<10), buf[:1+rng.IntN(len(buf)-1)])
					check("write shared", err)
				}
			}
		}
		ops.Add(1)
	}
}

// TestCrashMarkTable kills a process whose commit loop is stalled: the
// growth of a new file, the growth of a known one and the removal of a
// file with bytes are then covered by nothing but the mark table, and the
// next Open must still find the bytes exact.
func TestCrashMarkTable(t *testing.T) {
	base := t.TempDir()
	vol := filepath.Join(base, "vol")
	for _, f := range crashFolders {
		if err := os.MkdirAll(filepath.Join(vol, f), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// A clean first run leaves two files known to the ledger.
	func() {
		db := openDB(t, filepath.Join(base, "db"))
		defer db.Close()
		m := openMgr(t, db, Options{OpenFolder: folderOpener(vol)})
		x := newSimFS(t, m, testScope(t, 1), filepath.Join(vol, "f1"), "f1")
		for _, c := range []struct {
			name string
			n    int
		}{{"old", 5000}, {"gone", 3000}} {
			h, err := x.create(c.name)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := x.write(h, 0, make([]byte, c.n)); err != nil {
				t.Fatal(err)
			}
			x.release(h)
		}
		x.close()
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
	}()
	var stderr strings.Builder
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashStalledChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnv+"="+base)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die by SIGKILL: %v; stdout %q; stderr: %s", err, out, stderr.String())
	}
	if strings.TrimSpace(string(out)) != "ready" {
		t.Fatalf("child did not finish its work: stdout %q; stderr: %s", out, stderr.String())
	}
	f1 := filepath.Join(vol, "f1")
	if a, b := sizeOf(t, filepath.Join(f1, "old")), sizeOf(t, filepath.Join(f1, "new")); a != 9000 || b != 7000 {
		t.Fatalf("child left files of %d and %d bytes, want 9000 and 7000", a, b)
	}
	if _, err := os.Lstat(filepath.Join(f1, "nd", strings.Repeat("L", 200))); err != nil {
		t.Fatalf("child did not finish its work: %v", err)
	}
	verifyAfterCrash(t, 0, base, vol)
}

// TestCrashStalledChild is the child of TestCrashMarkTable: it stalls the
// commit loop, changes sizes, reports and kills itself.
func TestCrashStalledChild(t *testing.T) {
	base := os.Getenv(crashEnv)
	if base == "" {
		t.Skip("helper process of TestCrashMarkTable")
	}
	vol := filepath.Join(base, "vol")
	db := openDB(t, filepath.Join(base, "db"))
	m := openMgr(t, db, Options{OpenFolder: folderOpener(vol)})
	x := newSimFS(t, m, testScope(t, 1), filepath.Join(vol, "f1"), "f1")
	stalled := make(chan struct{})
	m.reqs <- func() { close(stalled); select {} }
	<-stalled
	must := func(err error) {
		if err != nil {
			fmt.Fprintln(os.Stderr, "unexpected:", err)
			os.Exit(3)
		}
	}
	h, err := x.create("new")
	must(err)
	_, err = x.write(h, 0, make([]byte, 7000))
	must(err)
	h2, err := x.open("old")
	must(err)
	_, err = x.write(h2, 5000, make([]byte, 4000))
	must(err)
	x.release(h2)
	must(x.unlink("gone"))
	// A new directory, the growth of a directory by a long name, a
	// symlink and xattrs: their records are made in memory only.
	must(x.mkdir("nd"))
	must(x.symlink(strings.Repeat("t", 100), "nd/sl"))
	must(x.link("old", "nd/"+strings.Repeat("L", 200)))
	probe := filepath.Join(base, "xattr-probe")
	must(os.WriteFile(probe, nil, 0o600))
	if unix.Setxattr(probe, "user.probe", nil, 0) == nil {
		must(x.setxattr("old", "user.a", make([]byte, 300)))
		must(x.setxattr("nd", "user.b", make([]byte, 50)))
		must(x.setxattr(".", "user.c", make([]byte, 20)))
	}
	fmt.Println("ready")
	os.Stdout.Sync()
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}
