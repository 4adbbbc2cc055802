package quota

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
)

func ino(n uint64) InodeKey { return InodeKey{Ino: n} }

// write reserves [off,end), "writes" up to the grant and reports the new
// size, like one FUSE write on a file of size *size.
func write(t *testing.T, m *Manager, s ScopeKey, f string, k InodeKey, size *int64, off, end int64) (int64, error) {
	t.Helper()
	g, r, err := m.Reserve(s, f, k, off, end)
	if err != nil {
		return 0, err
	}
	*size = max(*size, g)
	r.Done(*size)
	return g, nil
}

func mustUsage(t *testing.T, m *Manager, s ScopeKey, used, inodes int64) {
	t.Helper()
	u := m.Usage(s)
	if u.Used != used || u.UsedInodes != inodes {
		t.Fatalf("usage = %d bytes / %d inodes, want %d / %d", u.Used, u.UsedInodes, used, inodes)
	}
}

func createFile(t *testing.T, m *Manager, s ScopeKey, f string, k InodeKey) {
	t.Helper()
	r, err := m.ReserveInode(s, f, KindFile, 0, "")
	if err != nil {
		t.Fatalf("reserve inode: %v", err)
	}
	r.Commit(k, 0)
}

func TestReserveCutShort(t *testing.T) {
	m, _ := newLedger(t)
	s := testScope(t, 1)
	if err := m.SetLimit(s, 100, 0); err != nil {
		t.Fatal(err)
	}
	var a, b int64
	createFile(t, m, s, "f1", ino(1))
	createFile(t, m, s, "f1", ino(2))
	if g, err := write(t, m, s, "f1", ino(1), &a, 0, 60); err != nil || g != 60 {
		t.Fatalf("first write: granted %d, %v", g, err)
	}
	// Crosses the limit: cut short at the limit.
	if g, err := write(t, m, s, "f1", ino(2), &b, 0, 60); err != nil || g != 40 {
		t.Fatalf("second write: granted %d, %v; want 40", g, err)
	}
	mustUsage(t, m, s, 100, 2)
	// Nothing left: the next growing write fails.
	_, err := write(t, m, s, "f1", ino(2), &b, 40, 50)
	if !errors.Is(err, ErrExceeded) {
		t.Fatalf("write at the limit: %v, want ErrExceeded", err)
	}
	// Overwriting inside the file is always granted in full.
	if g, err := write(t, m, s, "f1", ino(1), &a, 10, 60); err != nil || g != 60 {
		t.Fatalf("overwrite: granted %d, %v", g, err)
	}
	// A write that starts within the file and crosses its end gets the
	// part inside.
	if g, err := write(t, m, s, "f1", ino(1), &a, 50, 80); err != nil || g != 60 {
		t.Fatalf("write across the end at the limit: granted %d, %v", g, err)
	}
	mustUsage(t, m, s, 100, 2)
	u := m.Usage(s)
	if u.Free() != 0 || u.Limit != 100 {
		t.Fatalf("usage %+v free %d", u, u.Free())
	}
	// A sparse write far beyond the room left gets nothing, not a hole.
	m.SetLimit(s, 150, 0)
	if _, err := write(t, m, s, "f1", ino(2), &b, 1000, 1010); !errors.Is(err, ErrExceeded) {
		t.Fatalf("sparse write beyond the limit: %v", err)
	}
	mustUsage(t, m, s, 100, 2)
	if g, err := write(t, m, s, "f1", ino(2), &b, 45, 1000); err != nil || g != 90 {
		t.Fatalf("write into the rest: granted %d, %v; want 90", g, err)
	}
	mustUsage(t, m, s, 150, 2)
	assertConsistent(t, m)
}

func TestReserveExactAllOrNothing(t *testing.T) {
	m, _ := newLedger(t)
	s := testScope(t, 2)
	m.SetLimit(s, 1000, 0)
	createFile(t, m, s, "f", ino(7))
	r, err := m.ReserveExact(s, "f", ino(7), 1001)
	if !errors.Is(err, ErrExceeded) {
		t.Fatalf("truncate beyond limit: %v", err)
	}
	r.Done(0) // zero Reservation: no-op
	r, err = m.ReserveExact(s, "f", ino(7), 1000)
	if err != nil {
		t.Fatal(err)
	}
	if u := m.Usage(s); u.Used != 1000 {
		t.Fatalf("while reserved: used %d", u.Used)
	}
	r.Done(1000)
	r.Done(5) // second Done on the same variable: no-op
	mustUsage(t, m, s, 1000, 1)
	// Shrinking always works, also over the limit.
	m.SetLimit(s, 10, 0)
	r, err = m.ReserveExact(s, "f", ino(7), 300)
	if err != nil {
		t.Fatal(err)
	}
	if u := m.Usage(s); u.Used != 1000 {
		t.Fatalf("shrink in flight must keep the old charge: %d", u.Used)
	}
	r.Done(300)
	mustUsage(t, m, s, 300, 1)
	assertConsistent(t, m)
}

func TestLowerLimitBelowUsage(t *testing.T) {
	m, _ := newLedger(t)
	s := testScope(t, 3)
	createFile(t, m, s, "f", ino(1))
	createFile(t, m, s, "f", ino(2))
	var a, b int64
	write(t, m, s, "f", ino(1), &a, 0, 500)
	write(t, m, s, "f", ino(2), &b, 0, 500)
	if err := m.SetLimit(s, 300, 0); err != nil {
		t.Fatal(err)
	}
	if u := m.Usage(s); u.Used != 1000 || u.Free() != 0 {
		t.Fatalf("usage %+v", u)
	}
	if _, err := write(t, m, s, "f", ino(1), &a, 500, 501); !errors.Is(err, ErrExceeded) {
		t.Fatalf("growth over a lowered limit: %v", err)
	}
	if _, err := m.ReserveInode(s, "f", KindSymlink, 5, ""); !errors.Is(err, ErrExceeded) {
		t.Fatalf("symlink over a lowered limit: %v", err)
	}
	// Writing inside, shrinking and deleting work.
	if g, err := write(t, m, s, "f", ino(1), &a, 0, 100); err != nil || g != 100 {
		t.Fatalf("overwrite: %d %v", g, err)
	}
	r, err := m.ReserveExact(s, "f", ino(1), 100)
	if err != nil {
		t.Fatal(err)
	}
	r.Done(100)
	m.Forget(s, "f", ino(2))
	mustUsage(t, m, s, 100, 1)
	// Under the limit again: growth up to it.
	if g, err := write(t, m, s, "f", ino(1), &a, 100, 1000); err != nil || g != 300 {
		t.Fatalf("growth after freeing: %d %v", g, err)
	}
	assertConsistent(t, m)
}

func TestSetLimitZeroIsUnlimited(t *testing.T) {
	m, _ := newLedger(t)
	s := testScope(t, 4)
	m.SetLimit(s, 10, 2)
	createFile(t, m, s, "f", ino(1))
	var a int64
	if g, _ := write(t, m, s, "f", ino(1), &a, 0, 20); g != 10 {
		t.Fatalf("granted %d", g)
	}
	if err := m.SetLimit(s, 0, 0); err != nil {
		t.Fatal(err)
	}
	if g, err := write(t, m, s, "f", ino(1), &a, 10, 1<<40); err != nil || g != 1<<40 {
		t.Fatalf("unlimited: %d %v", g, err)
	}
	for i := range 10 {
		createFile(t, m, s, "f", ino(uint64(100+i)))
	}
	if u := m.Usage(s); u.Limit != 0 || u.LimitInodes != 0 || u.UsedInodes != 11 || u.Free() <= 0 {
		t.Fatalf("usage %+v", u)
	}
	if err := m.SetLimit(s, -1, 0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("negative limit: %v", err)
	}
}

func TestInodeLimit(t *testing.T) {
	m, _ := newLedger(t)
	s := testScope(t, 5)
	m.SetLimit(s, 0, 3)
	createFile(t, m, s, "f", ino(1))
	r, err := m.ReserveInode(s, "f", KindDir, 0, "d")
	if err != nil {
		t.Fatal(err)
	}
	r.Commit(ino(2), 4096) // a directory is charged its size
	r, err = m.ReserveInode(s, "f", KindOther, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.ReserveInode(s, "f", KindFile, 0, ""); !errors.Is(err, ErrExceeded) {
		t.Fatalf("4th inode while 3rd is reserved: %v", err)
	}
	r.Cancel()
	r.Cancel() // idempotent
	r, err = m.ReserveInode(s, "f", KindSymlink, 12, "")
	if err != nil {
		t.Fatal(err)
	}
	r.Commit(ino(3), 12)
	mustUsage(t, m, s, 4096+12, 3)
	if _, err := m.ReserveInode(s, "f", KindFile, 0, ""); !errors.Is(err, ErrExceeded) {
		t.Fatalf("over the inode limit: %v", err)
	}
	// Committing an object the ledger has already recorded (Check got
	// there first) counts it once.
	m.SetLimit(s, 0, 0)
	r, err = m.ReserveInode(s, "f", KindSymlink, 12, "")
	if err != nil {
		t.Fatal(err)
	}
	mustUsage(t, m, s, 4096+24, 4)
	r.Commit(ino(3), 12)
	mustUsage(t, m, s, 4096+12, 3)
	m.Forget(s, "f", ino(2))
	mustUsage(t, m, s, 12, 2)
	m.Forget(s, "f", ino(2)) // already gone
	mustUsage(t, m, s, 12, 2)
	assertConsistent(t, m)
}

func TestSymlinkBytes(t *testing.T) {
	m, _ := newLedger(t)
	s := testScope(t, 6)
	m.SetLimit(s, 20, 0)
	r, err := m.ReserveInode(s, "f", KindSymlink, 15, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.ReserveInode(s, "f", KindSymlink, 6, ""); !errors.Is(err, ErrExceeded) {
		t.Fatalf("second symlink: %v", err)
	}
	r.Commit(ino(9), 15)
	mustUsage(t, m, s, 15, 1)
	if u := m.FolderUsage("f"); u.Used != 15 || u.UsedInodes != 1 || u.Limit != 20 {
		t.Fatalf("folder usage %+v", u)
	}
	m.Forget(s, "f", ino(9))
	mustUsage(t, m, s, 0, 0)
	assertConsistent(t, m)
}

func TestHardLinksCountedOnce(t *testing.T) {
	m, _ := newLedger(t)
	s := testScope(t, 7)
	createFile(t, m, s, "f", ino(1))
	// Two names, one inode: both opens hold the same record.
	m.OpenForWrite(s, "f", ino(1), 0, "a")
	m.OpenForWrite(s, "f", ino(1), 0, "b")
	var size int64
	write(t, m, s, "f", ino(1), &size, 0, 100)
	write(t, m, s, "f", ino(1), &size, 50, 150)
	mustUsage(t, m, s, 150, 1)
	m.CloseForWrite(s, "f", ino(1))
	m.CloseForWrite(s, "f", ino(1))
	// Removing one name keeps it, the last one releases it.
	rm, err := m.PrepareRemove(s, "f", ino(1), "a")
	if err != nil {
		t.Fatal(err)
	}
	rm.Done(false)
	mustUsage(t, m, s, 150, 1)
	rm, err = m.PrepareRemove(s, "f", ino(1), "b")
	if err != nil {
		t.Fatal(err)
	}
	rm.Done(true)
	rm.Done(true) // once only
	mustUsage(t, m, s, 0, 0)
	assertConsistent(t, m)
}

func TestUnlinkedWhileOpen(t *testing.T) {
	m, _ := newLedger(t)
	s := testScope(t, 8)
	createFile(t, m, s, "f", ino(1))
	m.OpenForWrite(s, "f", ino(1), 0, "x")
	var size int64
	write(t, m, s, "f", ino(1), &size, 0, 100)
	rm, _ := m.PrepareRemove(s, "f", ino(1), "x")
	rm.Done(true)
	// Still open for writing: its blocks are still used.
	mustUsage(t, m, s, 100, 1)
	write(t, m, s, "f", ino(1), &size, 100, 200)
	mustUsage(t, m, s, 200, 1)
	m.CloseForWrite(s, "f", ino(1))
	mustUsage(t, m, s, 0, 0)
	assertConsistent(t, m)
	if recs := records(t, m, s, "f"); len(recs) != 0 {
		t.Fatalf("records left: %v", recs)
	}
}

// TestRemovalRacesReusedInode: a create that gets the inode number of a
// file being removed must keep its record.
func TestRemovalRacesReusedInode(t *testing.T) {
	m, _ := newLedger(t)
	s := testScope(t, 13)
	createFile(t, m, s, "f", ino(5))
	var size int64
	write(t, m, s, "f", ino(5), &size, 0, 100)
	rm, err := m.PrepareRemove(s, "f", ino(5), "old")
	if err != nil {
		t.Fatal(err)
	}
	// unlink(2) frees the inode; another create reuses its number and
	// commits before the removal is done.
	r, _ := m.ReserveInode(s, "f", KindFile, 0, "new")
	r.Commit(ino(5), 0)
	rm.Done(true)
	mustUsage(t, m, s, 0, 1)
	write(t, m, s, "f", ino(5), new(int64), 0, 30)
	mustUsage(t, m, s, 30, 1)
	assertConsistent(t, m)
}

func TestOverlappingReservations(t *testing.T) {
	m, _ := newLedger(t)
	s := testScope(t, 9)
	m.SetLimit(s, 1000, 0)
	createFile(t, m, s, "f", ino(1))
	m.OpenForWrite(s, "f", ino(1), 0, "x")
	// Two writers on one file: the inode stays charged at the highest
	// outstanding grant until the last is done.
	g1, r1, _ := m.Reserve(s, "f", ino(1), 0, 300)
	g2, r2, _ := m.Reserve(s, "f", ino(1), 300, 600)
	if g1 != 300 || g2 != 600 {
		t.Fatalf("grants %d %d", g1, g2)
	}
	mustUsage(t, m, s, 600, 1)
	r2.Done(600)
	mustUsage(t, m, s, 600, 1)
	r1.Done(600)
	mustUsage(t, m, s, 600, 1)

	// A truncate and a write overlap; the write's size report is taken
	// before the truncate lands (stale). The charge never falls below
	// what is on disk, and the next lone operation settles it exactly.
	rt, _ := m.ReserveExact(s, "f", ino(1), 0)
	_, rw, _ := m.Reserve(s, "f", ino(1), 0, 10)
	rw.Done(600) // stale: saw the size before the truncate
	mustUsage(t, m, s, 600, 1)
	rt.Done(0)
	if u := m.Usage(s); u.Used < 0 || u.Used != 600 {
		t.Fatalf("after overlapping truncate: %d", u.Used)
	}
	_, r, _ := m.Reserve(s, "f", ino(1), 0, 1)
	r.Done(1)
	mustUsage(t, m, s, 1, 1)

	// The other order: the write lands after the truncate; its report is
	// the truth and must win over the truncate's.
	rt, _ = m.ReserveExact(s, "f", ino(1), 0)
	_, rw, _ = m.Reserve(s, "f", ino(1), 0, 50)
	rt.Done(0)
	rw.Done(50)
	mustUsage(t, m, s, 50, 1)

	// An unknown size report keeps the conservative charge.
	_, r, _ = m.Reserve(s, "f", ino(1), 0, 80)
	r.Done(-1)
	mustUsage(t, m, s, 80, 1)
	m.CloseForWrite(s, "f", ino(1))
	assertConsistent(t, m)
}

func TestEvictionAndReload(t *testing.T) {
	m, _ := newLedger(t)
	s := testScope(t, 10)
	for i := range 50 {
		createFile(t, m, s, "f", ino(uint64(i)))
		m.OpenForWrite(s, "f", ino(uint64(i)), 0, fmt.Sprint("n", i))
		var sz int64
		write(t, m, s, "f", ino(uint64(i)), &sz, 0, int64(i+1))
		m.CloseForWrite(s, "f", ino(uint64(i)))
	}
	assertConsistent(t, m)
	sc, _ := m.lookup(s, false)
	waitUntil(t, "eviction", func() bool {
		m.Flush()
		sc.mu.Lock()
		defer sc.mu.Unlock()
		return len(sc.folders["f"].inodes) == 0
	})
	mustUsage(t, m, s, 50*51/2, 50)
	// A cold inode is loaded with its record.
	g, r, err := m.Reserve(s, "f", ino(9), 0, 10)
	if err != nil || g != 10 {
		t.Fatal(g, err)
	}
	r.Done(10)
	m.Forget(s, "f", ino(20))
	mustUsage(t, m, s, 50*51/2-21, 49)
	assertConsistent(t, m)
}

func TestInvalidArguments(t *testing.T) {
	m, _ := newLedger(t)
	s := testScope(t, 11)
	if _, _, err := m.Reserve(s, "f", ino(1), -1, 5); !errors.Is(err, ErrInvalid) {
		t.Fatal(err)
	}
	if _, _, err := m.Reserve(ScopeKey{Volume: "v"}, "f", ino(1), 0, 5); !errors.Is(err, ErrInvalid) {
		t.Fatal(err)
	}
	if _, _, err := m.Reserve(s, "", ino(1), 0, 5); !errors.Is(err, ErrInvalid) {
		t.Fatal(err)
	}
	if _, err := m.ReserveInode(s, "f", Kind(9), 0, ""); !errors.Is(err, ErrInvalid) {
		t.Fatal(err)
	}
	if g, r, err := m.Reserve(s, "f", ino(1), 5, 5); err != nil || g != 5 || r.in != nil {
		t.Fatal(g, err)
	}
}

// TestConcurrentExactLimit runs 16 goroutines reserving random sizes on
// random inodes, truncating and removing, with the limit checked inside
// the scope's lock after every change.
func TestConcurrentExactLimit(t *testing.T) {
	m, _ := newLedger(t)
	s := testScope(t, 12)
	const limit = 1 << 20
	m.SetLimit(s, limit, 0)
	var violation atomic.Value
	m.hook = func(sc *scope) {
		if sc.used > limit || sc.used < 0 {
			violation.CompareAndSwap(nil, fmt.Sprintf("used %d with limit %d", sc.used, limit))
		}
		var sum int64
		for _, f := range sc.folders {
			sum += f.used
		}
		if sum != sc.used {
			violation.CompareAndSwap(nil, fmt.Sprintf("scope used %d, folders %d", sc.used, sum))
		}
	}
	const nInodes = 24
	type file struct {
		rw   sync.RWMutex // ops share it, removal takes it alone
		mu   sync.Mutex   // the "disk"
		size int64
	}
	files := make([]*file, nInodes)
	for i := range files {
		files[i] = &file{}
		createFile(t, m, s, fmt.Sprint("f", i%3), ino(uint64(i)))
		m.OpenForWrite(s, fmt.Sprint("f", i%3), ino(uint64(i)), 0, "")
	}
	ops := 3000
	if testing.Short() {
		ops = 500
	}
	var wg sync.WaitGroup
	var cut, exceeded atomic.Int64
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for range ops {
				i := rng.IntN(nInodes)
				fl, k, fid := files[i], ino(uint64(i)), fmt.Sprint("f", i%3)
				switch op := rng.IntN(20); {
				case op < 14: // write
					off := rng.Int64N(96 << 10)
					end := off + 1 + rng.Int64N(32<<10)
					fl.rw.RLock()
					g, r, err := m.Reserve(s, fid, k, off, end)
					if err != nil {
						fl.rw.RUnlock()
						if !errors.Is(err, ErrExceeded) {
							t.Error(err)
						}
						exceeded.Add(1)
						continue
					}
					if g < end {
						cut.Add(1)
					}
					fl.mu.Lock()
					fl.size = max(fl.size, g)
					sz := fl.size
					fl.mu.Unlock()
					r.Done(sz)
					fl.rw.RUnlock()
				case op < 18: // truncate
					n := rng.Int64N(64 << 10)
					fl.rw.RLock()
					r, err := m.ReserveExact(s, fid, k, n)
					if err != nil {
						fl.rw.RUnlock()
						continue
					}
					fl.mu.Lock()
					fl.size = n
					sz := fl.size
					fl.mu.Unlock()
					r.Done(sz)
					fl.rw.RUnlock()
				default: // remove and recreate
					fl.rw.Lock()
					m.CloseForWrite(s, fid, k)
					m.Forget(s, fid, k)
					fl.mu.Lock()
					fl.size = 0
					fl.mu.Unlock()
					r, err := m.ReserveInode(s, fid, KindFile, 0, "")
					if err != nil {
						t.Error(err)
					} else {
						r.Commit(k, 0)
					}
					m.OpenForWrite(s, fid, k, 0, "")
					fl.rw.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if v := violation.Load(); v != nil {
		t.Fatal(v)
	}
	if cut.Load() == 0 || exceeded.Load() == 0 {
		t.Fatalf("workload never reached the limit (cut %d, exceeded %d)", cut.Load(), exceeded.Load())
	}
	// Never charged below the real size.
	sc, _ := m.lookup(s, false)
	var sum int64
	sc.mu.Lock()
	for i, fl := range files {
		in := sc.folders[fmt.Sprint("f", i%3)].inodes[ino(uint64(i))]
		if in.charged < fl.size {
			t.Errorf("inode %d charged %d, real size %d", i, in.charged, fl.size)
		}
		sum += fl.size
	}
	sc.mu.Unlock()
	// A lone settle of each file (what the next write or close does)
	// makes the charge exact.
	for i, fl := range files {
		m.SetSize(s, fmt.Sprint("f", i%3), ino(uint64(i)), fl.size)
		m.CloseForWrite(s, fmt.Sprint("f", i%3), ino(uint64(i)))
	}
	mustUsage(t, m, s, sum, nInodes)
	m.hook = nil
	assertConsistent(t, m)
}
