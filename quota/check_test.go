package quota

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

func mkfile(t *testing.T, p string, n int) {
	t.Helper()
	if err := os.WriteFile(p, make([]byte, n), 0o644); err != nil {
		t.Fatal(err)
	}
}

func openRoot(t *testing.T, dir, id string) FolderRoot {
	t.Helper()
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return FolderRoot{FolderID: id, Dir: f}
}

func TestCheckFindsAndRepairsDrift(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "f1")
	outside := filepath.Join(base, "outside")
	os.MkdirAll(dir, 0o755)
	os.MkdirAll(outside, 0o755)
	mkfile(t, filepath.Join(outside, "big"), 1<<20)
	m, _ := newLedger(t)
	s := testScope(t, 1)
	x := newSimFS(t, m, s, dir, "f1")

	// Through the ledger.
	a, _ := x.create("a")
	x.write(a, 0, make([]byte, 100))
	x.release(a)
	b, _ := x.create("b")
	x.write(b, 0, make([]byte, 200))
	x.release(b)
	if err := x.mkdir("d"); err != nil {
		t.Fatal(err)
	}
	c, _ := x.create("d/c")
	x.write(c, 0, make([]byte, 50))
	x.release(c)
	if err := x.symlink("target123", "l"); err != nil {
		t.Fatal(err)
	}
	if err := x.link("a", "d/a2"); err != nil {
		t.Fatal(err)
	}
	// Another folder the check is not given.
	other := t.TempDir()
	y := newSimFS(t, m, s, other, "f2")
	if err := y.mkdir("z"); err != nil {
		t.Fatal(err)
	}
	if tr := diskTruth(t, dir); m.FolderUsage("f1").Used != tr.bytes || m.FolderUsage("f1").UsedInodes != tr.inodes {
		t.Fatalf("ledger %+v, disk %+v", m.FolderUsage("f1"), tr)
	}

	// Behind its back.
	mkfile(t, filepath.Join(dir, "new"), 300)
	fa, _ := os.OpenFile(filepath.Join(dir, "a"), os.O_WRONLY|os.O_APPEND, 0)
	fa.Write(make([]byte, 25))
	fa.Close()
	os.Mkdir(filepath.Join(dir, "nd"), 0o755)
	mkfile(t, filepath.Join(dir, "nd", "x"), 10)
	os.Link(filepath.Join(dir, "nd", "x"), filepath.Join(dir, "nd", "y"))
	os.Symlink(outside, filepath.Join(dir, "out")) // never followed
	os.Remove(filepath.Join(dir, "b"))             // last: its inode number is not reused

	before := m.FolderUsage("f1")
	var progress []Progress
	root := openRoot(t, dir, "f1")
	rep, err := m.Check(context.Background(), s, []FolderRoot{root}, CheckOptions{
		Progress: func(p Progress) { progress = append(progress, p) },
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[Problem]int{ProblemUnknown: 4, ProblemGone: 1, ProblemSize: 1}
	for p, n := range want {
		if rep.Counts[p] != n {
			t.Errorf("%s: %d findings, want %d", p, rep.Counts[p], n)
		}
	}
	if rep.Repaired != 0 || len(rep.Findings) != 6 || !rep.Drift() {
		t.Fatalf("report %+v", rep)
	}
	for _, f := range rep.Findings {
		switch f.Problem {
		case ProblemGone:
			if f.LedgerBytes != 200 {
				t.Errorf("gone finding %+v", f)
			}
		case ProblemSize:
			if f.Path != "a" && f.Path != "d/a2" || f.LedgerBytes != 100 || f.DiskBytes != 125 {
				t.Errorf("size finding %+v", f)
			}
		}
	}
	tr := diskTruth(t, dir)
	fr := rep.Folders[0]
	if fr.DiskBytes != tr.bytes || fr.DiskInodes != tr.inodes || !fr.Complete || fr.LedgerBytes != before.Used {
		t.Fatalf("folder report %+v, disk %+v, ledger before %+v", fr, tr, before)
	}
	if len(rep.Unchecked) != 1 || rep.Unchecked[0] != "f2" {
		t.Fatalf("unchecked %v", rep.Unchecked)
	}
	if len(progress) == 0 || !progress[len(progress)-1].Done {
		t.Fatalf("progress %+v", progress)
	}
	if m.FolderUsage("f1") != before {
		t.Fatal("a check without repair changed the ledger")
	}

	rep, err = m.Check(context.Background(), s, []FolderRoot{root}, CheckOptions{Repair: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Repaired != 6 {
		t.Fatalf("repaired %d: %+v", rep.Repaired, rep.Findings)
	}
	if u := m.FolderUsage("f1"); u.Used != tr.bytes || u.UsedInodes != tr.inodes {
		t.Fatalf("after repair %+v, disk %+v", u, tr)
	}
	dirs := sizeOf(t, dir) + sizeOf(t, filepath.Join(dir, "d")) + sizeOf(t, filepath.Join(dir, "nd"))
	if tr.bytes != 125+50+9+300+10+int64(len(outside))+dirs {
		t.Fatalf("disk truth %d: a symlink was followed or a link counted twice", tr.bytes)
	}
	rep, err = m.Check(context.Background(), s, []FolderRoot{root}, CheckOptions{})
	if err != nil || rep.Drift() {
		t.Fatalf("second check: %v %+v", err, rep)
	}
	assertConsistent(t, m)
	recs := records(t, m, s, "f1")
	for k, d := range tr.sizes {
		if recs[k] != d {
			t.Errorf("inode %v: record %d, disk %d", k, recs[k], d)
		}
	}
	if len(recs) != len(tr.sizes) {
		t.Errorf("%d records, %d objects", len(recs), len(tr.sizes))
	}
}

func TestCheckRepairsCorruptCounter(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "f1")
	os.MkdirAll(dir, 0o755)
	db := openDB(t, filepath.Join(base, "db"))
	defer db.Close()
	m := openMgr(t, db, Options{})
	s := testScope(t, 2)
	x := newSimFS(t, m, s, dir, "f1")
	h, _ := x.create("a")
	x.write(h, 0, make([]byte, 77))
	x.release(h)
	m.Close()
	err := db.Update(func(txn *badger.Txn) error {
		return txn.Set(keyFolder(encScope(s), encFolder("f1")), encCounter(5000, 9))
	})
	if err != nil {
		t.Fatal(err)
	}
	m = openMgr(t, db, Options{})
	defer m.Close()
	if u := m.FolderUsage("f1"); u.Used != 5000 {
		t.Fatalf("corrupt counter not loaded: %+v", u)
	}
	rep, err := m.Check(context.Background(), s, []FolderRoot{openRoot(t, dir, "f1")}, CheckOptions{Repair: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Counts[ProblemCounter] != 1 || rep.Repaired != 1 {
		t.Fatalf("report %+v", rep)
	}
	want := 77 + sizeOf(t, dir) // the file and the folder root
	if u := m.FolderUsage("f1"); u.Used != want || u.UsedInodes != 1 || m.Usage(s).Used != want {
		t.Fatalf("after repair %+v", u)
	}
	assertConsistent(t, m)
}

// TestCheckOnlineWithWriters runs repairing checks while writers create,
// grow, shrink and remove files; none of their changes may be taken for
// drift, and the ledger must be exact once they stop.
func TestCheckOnlineWithWriters(t *testing.T) {
	dir := t.TempDir()
	m, _ := newLedger(t)
	s := testScope(t, 3)
	m.SetLimit(s, 8<<20, 0)
	x := newSimFS(t, m, s, dir, "f1")
	for w := range 4 {
		if err := x.mkdir(fmt.Sprint("w", w)); err != nil {
			t.Fatal(err)
		}
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	var ops atomic.Int64
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 3))
			open := map[string]*handle{}
			buf := make([]byte, 32<<10)
			defer func() {
				for _, h := range open {
					x.release(h)
				}
			}()
			for !stop.Load() || ops.Load() < 400 {
				name := fmt.Sprintf("w%d/n%d", w, rng.IntN(10))
				h := open[name]
				switch op := rng.IntN(10); {
				case op < 5:
					if h == nil {
						var err error
						if h, err = x.open(name); errors.Is(err, os.ErrNotExist) {
							h, err = x.create(name)
						}
						if err != nil {
							t.Error(err)
							return
						}
						open[name] = h
					}
					if _, err := x.write(h, rng.Int64N(64<<10), buf[:1+rng.IntN(len(buf)-1)]); err != nil && !errors.Is(err, ErrExceeded) {
						t.Error(err)
					}
				case op < 7:
					if h != nil {
						x.truncate(h, rng.Int64N(32<<10))
					}
				case op < 8:
					if h != nil {
						x.release(h)
						delete(open, name)
					}
				default:
					if h != nil {
						x.release(h)
						delete(open, name)
					}
					if err := x.unlink(name); err != nil && !errors.Is(err, os.ErrNotExist) {
						t.Error(err)
					}
				}
				ops.Add(1)
			}
		}()
	}
	root := openRoot(t, dir, "f1")
	for range 5 {
		rep, err := m.Check(context.Background(), s, []FolderRoot{root}, CheckOptions{Repair: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range rep.Findings {
			if f.Problem != ProblemChanged {
				t.Errorf("online check took a change in flight for drift: %+v", f)
			}
		}
	}
	stop.Store(true)
	wg.Wait()
	tr := diskTruth(t, dir)
	if u := m.FolderUsage("f1"); u.Used != tr.bytes || u.UsedInodes != tr.inodes {
		t.Fatalf("ledger %+v, disk %d bytes %d inodes", u, tr.bytes, tr.inodes)
	}
	rep, err := m.Check(context.Background(), s, []FolderRoot{root}, CheckOptions{})
	if err != nil || rep.Drift() {
		t.Fatalf("final check: %v %+v", err, rep)
	}
	assertConsistent(t, m)
}

func TestCheckCancelled(t *testing.T) {
	dir := t.TempDir()
	for i := range 600 {
		mkfile(t, filepath.Join(dir, fmt.Sprint(i)), 0)
	}
	m, _ := newLedger(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := m.Check(ctx, testScope(t, 4), []FolderRoot{openRoot(t, dir, "f1")}, CheckOptions{Repair: true})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled check: %v", err)
	}
}

// TestCheckGoneBeforeCommit: an object recorded in memory but not yet
// committed, then removed behind the ledger's back, is found gone by the
// next Check (not only after a commit).
func TestCheckGoneBeforeCommit(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, t.TempDir())
	m := openMgr(t, db, Options{FlushInterval: time.Hour})
	t.Cleanup(func() {
		m.Close()
		db.Close()
	})
	s := testScope(t, 1)
	p := filepath.Join(dir, "x")
	mkfile(t, p, 123)
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	var root syscall.Stat_t
	if err := syscall.Stat(dir, &root); err != nil {
		t.Fatal(err)
	}
	r, err := m.ReserveInode(s, "f1", KindFile, 0, "x")
	if err != nil {
		t.Fatal(err)
	}
	r.Commit(MakeKey(root.Dev, st.Dev, st.Ino), st.Size)
	if u := m.FolderUsage("f1"); u.Used != 123 || u.UsedInodes != 1 {
		t.Fatalf("usage %+v", u)
	}
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	rep, err := m.Check(context.Background(), s, []FolderRoot{openRoot(t, dir, "f1")}, CheckOptions{Repair: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Counts[ProblemGone] != 1 || rep.Repaired != 1 {
		t.Errorf("check found %v, repaired %d; want 1 gone, repaired", rep.Counts, rep.Repaired)
	}
	// Left: the folder root, recorded by the check (its first contact).
	if u := m.FolderUsage("f1"); u.Used != sizeOf(t, dir) || u.UsedInodes != 0 {
		t.Errorf("usage after repair %+v", u)
	}
}

// TestCheckReusedNumberInFlight: a file's removal is in flight (its
// record still there) while a create in flight made a new, empty object
// that took the same inode number. The check sees the new object under
// the old record's number and must leave it to the operations instead
// of taking the difference for drift.
func TestCheckReusedNumberInFlight(t *testing.T) {
	dir := t.TempDir()
	m, _ := newLedger(t)
	s := testScope(t, 5)
	mkfile(t, filepath.Join(dir, "new"), 0) // the new object on storage
	var root, st syscall.Stat_t
	if err := syscall.Stat(dir, &root); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Lstat(filepath.Join(dir, "new"), &st); err != nil {
		t.Fatal(err)
	}
	k := MakeKey(root.Dev, st.Dev, st.Ino)
	// The old object at that number, 500 bytes, with its removal in
	// flight; a create in flight in the folder.
	r, err := m.ReserveInode(s, "f1", KindFile, 0, "old")
	if err != nil {
		t.Fatal(err)
	}
	r.Commit(k, 500)
	rm, err := m.PrepareRemove(s, "f1", k, "old")
	if err != nil {
		t.Fatal(err)
	}
	c, err := m.ReserveInode(s, "f1", KindFile, 0, "new")
	if err != nil {
		t.Fatal(err)
	}
	rep, err := m.Check(context.Background(), s, []FolderRoot{openRoot(t, dir, "f1")}, CheckOptions{Repair: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range rep.Findings {
		if f.Problem != ProblemChanged {
			t.Errorf("check took a change in flight for drift: %+v", f)
		}
	}
	if rep.Busy == 0 {
		t.Errorf("check did not count the object as busy: %+v", rep)
	}
	// The operations end: the create commits the new object, the old
	// one's removal finds its number taken and leaves the new record.
	c.Commit(k, 0)
	rm.Done(true)
	if u := m.FolderUsage("f1"); u.Used != 0+sizeOf(t, dir) || u.UsedInodes != 1 {
		t.Errorf("usage %+v after the operations", u)
	}
}
