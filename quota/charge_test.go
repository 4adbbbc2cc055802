package quota

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"golang.org/x/sys/unix"
)

// xattrsWork reports whether the file system of dir stores user.* xattrs
// (tmpfs before 6.6 and some overlay setups do not).
func xattrsWork(t *testing.T, dir string) bool {
	t.Helper()
	p := filepath.Join(dir, ".xattr-probe")
	mkfile(t, p, 0)
	defer os.Remove(p)
	return unix.Setxattr(p, "user.probe", []byte("x"), 0) == nil
}

// TestDirGrowthBounded is the long-name hard-link attack at the ledger:
// links with 200-byte names are added until the scope refuses. The
// directory's real size never exceeds what the scope was charged, usage
// never exceeds the limit, and the ledger matches the disk to the byte.
func TestDirGrowthBounded(t *testing.T) {
	dir := t.TempDir()
	m, _ := newLedger(t)
	s := testScope(t, 1)
	const limit = 64 << 10
	if err := m.SetLimit(s, limit, 0); err != nil {
		t.Fatal(err)
	}
	x := newSimFS(t, m, s, dir, "f1")
	h, err := x.create("target")
	if err != nil {
		t.Fatal(err)
	}
	x.release(h)
	if err := x.mkdir("d"); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("n", 200)
	var refused error
	for i := 0; i < 10000; i++ {
		err := x.link("target", fmt.Sprintf("d/%s%04d", long, i))
		if u := m.Usage(s).Used; u > limit {
			t.Fatalf("after %d links usage %d > limit %d", i, u, limit)
		}
		if err != nil {
			refused = err
			break
		}
	}
	if !errors.Is(refused, ErrExceeded) {
		t.Fatalf("links never refused for room: %v", refused)
	}
	tr := diskTruth(t, dir)
	if u := m.FolderUsage("f1"); u.Used != tr.bytes || u.UsedInodes != tr.inodes {
		t.Fatalf("ledger %+v, disk %d bytes %d inodes", u, tr.bytes, tr.inodes)
	}
	if tr.bytes > limit {
		t.Fatalf("the folder holds %d bytes over a %d limit", tr.bytes, limit)
	}
	if d := sizeOf(t, filepath.Join(dir, "d")); d < limit/2 {
		t.Fatalf("the directory grew to %d bytes only; the limit stopped something else", d)
	}
	// Removing needs no room, at or over the limit.
	if err := m.SetLimit(s, 1, 0); err != nil {
		t.Fatal(err)
	}
	if err := x.unlink(fmt.Sprintf("d/%s%04d", long, 0)); err != nil {
		t.Fatal(err)
	}
	if err := x.rename("target", "d/t2"); !errors.Is(err, ErrExceeded) {
		t.Fatalf("rename into a directory over the limit: %v", err)
	}
	tr = diskTruth(t, dir)
	if u := m.FolderUsage("f1"); u.Used != tr.bytes {
		t.Fatalf("after unlink: ledger %d, disk %d", u.Used, tr.bytes)
	}
	assertConsistent(t, m)
}

// TestCreateNeedsRoomForDirectory: creates, mkdir and symlinks reserve
// the growth of their directory (and mkdir the new directory's size), all
// or nothing.
func TestCreateNeedsRoomForDirectory(t *testing.T) {
	dir := t.TempDir()
	m, _ := newLedger(t)
	s := testScope(t, 2)
	x := newSimFS(t, m, s, dir, "f1")
	if err := x.mkdir("d"); err != nil {
		t.Fatal(err)
	}
	used := m.Usage(s).Used
	if want := sizeOf(t, dir) + sizeOf(t, filepath.Join(dir, "d")); used != want {
		t.Fatalf("usage %d after mkdir, want root+d = %d", used, want)
	}
	// Room for a file's directory growth but not for a directory's own
	// size too.
	if err := m.SetLimit(s, used+DirGrowth, 0); err != nil {
		t.Fatal(err)
	}
	if err := x.mkdir("d/e"); !errors.Is(err, ErrExceeded) {
		t.Fatalf("mkdir without room for the new directory: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "d", "e")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("refused mkdir made something: %v", err)
	}
	h, err := x.create("d/f")
	if err != nil {
		t.Fatal(err)
	}
	x.release(h)
	if err := m.SetLimit(s, m.Usage(s).Used+DirGrowth-1, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := x.create("d/g"); !errors.Is(err, ErrExceeded) {
		t.Fatalf("create without room for the directory's growth: %v", err)
	}
	if err := x.symlink("t", "d/l"); !errors.Is(err, ErrExceeded) {
		t.Fatalf("symlink without room for the directory's growth: %v", err)
	}
	if u := m.Usage(s); u.Used != diskTruth(t, dir).bytes || u.UsedInodes != 2 {
		t.Fatalf("usage %+v, disk %+v", u, diskTruth(t, dir))
	}
	assertConsistent(t, m)
}

// TestXattrCharges: setting, replacing and removing user.* attributes
// charges exactly sum(len(name)+len(value)), refuses growth past the
// limit, and a file's attributes go with its last link.
func TestXattrCharges(t *testing.T) {
	dir := t.TempDir()
	if !xattrsWork(t, dir) {
		t.Skip("the test directory's file system has no user xattrs")
	}
	m, _ := newLedger(t)
	s := testScope(t, 3)
	x := newSimFS(t, m, s, dir, "f1")
	h, err := x.create("a")
	if err != nil {
		t.Fatal(err)
	}
	x.release(h)
	base := m.Usage(s).Used
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	check := func(want int64) {
		t.Helper()
		if u := m.Usage(s).Used; u != base+want {
			t.Fatalf("usage %d, want %d + %d of xattrs", u, base, want)
		}
		if tr := diskTruth(t, dir); tr.bytes != base+want {
			t.Fatalf("disk %d, want %d", tr.bytes, base+want)
		}
	}
	must(x.setxattr("a", "user.one", make([]byte, 100)))
	check(8 + 100)
	must(x.setxattr("a", "user.one", make([]byte, 30))) // replace: the difference
	check(8 + 30)
	must(x.setxattr("a", "user.two", make([]byte, 500)))
	check(8 + 30 + 8 + 500)
	must(x.setxattr(".", "user.root", make([]byte, 10))) // the folder root
	check(8 + 30 + 8 + 500 + 9 + 10)
	must(x.removexattr("a", "user.two"))
	check(8 + 30 + 9 + 10)
	if err := x.removexattr("a", "user.two"); !errors.Is(err, unix.ENODATA) {
		t.Fatalf("removing a missing attribute: %v", err)
	}
	check(8 + 30 + 9 + 10)

	if err := m.SetLimit(s, m.Usage(s).Used+50, 0); err != nil {
		t.Fatal(err)
	}
	if err := x.setxattr("a", "user.big", make([]byte, 100)); !errors.Is(err, ErrExceeded) {
		t.Fatalf("xattr past the limit: %v", err)
	}
	if _, err := unix.Getxattr(filepath.Join(dir, "a"), "user.big", nil); !errors.Is(err, unix.ENODATA) {
		t.Fatalf("refused xattr was stored: %v", err)
	}
	must(x.setxattr("a", "user.one", make([]byte, 70))) // +40 fits
	check(8 + 70 + 9 + 10)
	// Shrinking and removing work over a lowered limit.
	if err := m.SetLimit(s, 1, 0); err != nil {
		t.Fatal(err)
	}
	must(x.setxattr("a", "user.one", nil))
	check(8 + 9 + 10)
	must(x.unlink("a"))
	base = m.Usage(s).Used - (9 + 10)
	check(9 + 10)
	assertConsistent(t, m)
}

// TestDirHoldSerialises: a second change of a directory waits for the
// first one's Done, so each settles to the size it reports.
func TestDirHoldSerialises(t *testing.T) {
	m, _ := newLedger(t)
	s := testScope(t, 4)
	d := DirRef{Key: ino(7), Hint: "d"}
	r1, err := m.ReserveDir(s, "f", d, true)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan DirReservation)
	go func() {
		r2, err := m.ReserveDir(s, "f", d, true)
		if err != nil {
			t.Error(err)
		}
		got <- r2
	}()
	select {
	case <-got:
		t.Fatal("a second reservation of a held directory did not wait")
	case <-time.After(50 * time.Millisecond):
	}
	r1.Done(8192)
	r2 := <-got
	mustUsage(t, m, s, 8192+DirGrowth, 1)
	r2.Done(12288)
	mustUsage(t, m, s, 12288, 1)
	// Renames in opposite directions between two directories, many at
	// once: all of them end.
	a, b := DirRef{Key: ino(8), Hint: "a"}, DirRef{Key: ino(9), Hint: "b"}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				from, to := a, b
				if i%2 == 1 {
					from, to = b, a
				}
				r, err := m.ReserveRename(s, "f", from, to, true)
				if err != nil {
					t.Error(err)
					return
				}
				r.Done(4096, 4096)
			}
		}()
	}
	wg.Wait()
	mustUsage(t, m, s, 12288+4096+4096, 3)
	assertConsistent(t, m)
}

// TestFolderRootCharged: the root is charged its size (and xattrs) but is
// not an inode; its record is made by the first change through the
// ledger, or by a check, without being reported as drift.
func TestFolderRootCharged(t *testing.T) {
	dir := t.TempDir()
	m, _ := newLedger(t)
	s := testScope(t, 5)
	root := openRoot(t, dir, "f1")
	rep, err := m.Check(context.Background(), s, []FolderRoot{root}, CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rs := sizeOf(t, dir)
	if rep.Drift() || rep.Folders[0].DiskBytes != rs || rep.Folders[0].DiskDirBytes != rs || rep.Folders[0].LedgerBytes != rs {
		t.Fatalf("check of an untouched folder: %+v %+v", rep, rep.Folders)
	}
	if u := m.FolderUsage("f1"); u.Used != rs || u.UsedInodes != 0 {
		t.Fatalf("usage %+v, want the root's %d bytes and no inode", u, rs)
	}
	assertConsistent(t, m)
}

// TestCheckXattrDrift: xattrs changed behind the ledger's back are found
// (ProblemXattr) and repaired; the report splits the disk's bytes.
func TestCheckXattrDrift(t *testing.T) {
	dir := t.TempDir()
	if !xattrsWork(t, dir) {
		t.Skip("the test directory's file system has no user xattrs")
	}
	m, _ := newLedger(t)
	s := testScope(t, 6)
	x := newSimFS(t, m, s, dir, "f1")
	h, _ := x.create("a")
	x.write(h, 0, make([]byte, 10))
	x.release(h)
	if err := x.mkdir("d"); err != nil {
		t.Fatal(err)
	}
	if err := x.setxattr("d", "user.k", make([]byte, 20)); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(filepath.Join(dir, "a"), "user.behind", make([]byte, 33), 0); err != nil {
		t.Fatal(err)
	}
	if err := unix.Lsetxattr(filepath.Join(dir, "d"), "user.k", make([]byte, 5), 0); err != nil {
		t.Fatal(err)
	}
	// A symlink's target must not be read through: an attribute there is
	// not the folder's.
	outside := t.TempDir()
	mkfile(t, filepath.Join(outside, "o"), 0)
	if err := unix.Setxattr(filepath.Join(outside, "o"), "user.out", make([]byte, 999), 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "o"), filepath.Join(dir, "sl")); err != nil {
		t.Fatal(err)
	}
	root := openRoot(t, dir, "f1")
	rep, err := m.Check(context.Background(), s, []FolderRoot{root}, CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Counts[ProblemXattr] != 2 || rep.Counts[ProblemUnknown] != 1 || len(rep.Findings) != 3 {
		t.Fatalf("findings %+v", rep.Findings)
	}
	fr := rep.Folders[0]
	tr := diskTruth(t, dir)
	wantX := int64(len("user.behind") + 33 + len("user.k") + 5)
	if fr.DiskBytes != tr.bytes || fr.DiskXattrBytes != wantX || fr.DiskDirBytes != sizeOf(t, dir)+sizeOf(t, filepath.Join(dir, "d")) {
		t.Fatalf("folder report %+v, disk %d, xattrs %d", fr, tr.bytes, wantX)
	}
	if _, err := m.Check(context.Background(), s, []FolderRoot{root}, CheckOptions{Repair: true}); err != nil {
		t.Fatal(err)
	}
	if u := m.FolderUsage("f1"); u.Used != tr.bytes {
		t.Fatalf("after repair %d, disk %d", u.Used, tr.bytes)
	}
	if rep, err := m.Check(context.Background(), s, []FolderRoot{root}, CheckOptions{}); err != nil || rep.Drift() {
		t.Fatalf("second check: %v %+v", err, rep)
	}
	assertConsistent(t, m)
}

// TestOldFormatIsChecked: a ledger written before directories and xattrs
// were charged opens as unclean, so the daemon checks it.
func TestOldFormatIsChecked(t *testing.T) {
	base := t.TempDir()
	db := openDB(t, base)
	defer db.Close()
	m := openMgr(t, db, Options{})
	if m.WasUnclean() {
		t.Fatal("a new ledger is unclean")
	}
	m.Close()
	m = openMgr(t, db, Options{})
	if m.WasUnclean() {
		t.Fatal("a clean reopen is unclean")
	}
	m.Close()
	if err := db.Update(func(txn *badger.Txn) error { return txn.Delete([]byte(keyFormat)) }); err != nil {
		t.Fatal(err)
	}
	m = openMgr(t, db, Options{})
	if !m.WasUnclean() {
		t.Fatal("a ledger of format 1 is not checked")
	}
	m.Close()
	m = openMgr(t, db, Options{})
	defer m.Close()
	if m.WasUnclean() {
		t.Fatal("the format was not recorded")
	}
}

// TestDirSlotOutlivesRoundWithNewEntries: a directory's mark-table slot
// stands for the entries created in it until their records are written.
// An entry made while a commit round is in flight (after its snapshot)
// is written by the next round, so the round in flight must not clear
// the directory's slot, even though the directory is idle again when the
// round ends: a crash right then would lose the entry.
func TestDirSlotOutlivesRoundWithNewEntries(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, t.TempDir())
	m := openMgr(t, db, Options{FlushInterval: time.Hour})
	t.Cleanup(func() {
		m.Close()
		db.Close()
	})
	s := testScope(t, 7)
	x := newSimFS(t, m, s, dir, "f1")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(x.mkdir("d"))
	must(m.Flush())
	must(x.symlink("t", "d/a")) // d gets a slot
	pk := InodeKey{Ino: inoOf(t, filepath.Join(dir, "d"))}
	var (
		ran, checked bool
		bk           InodeKey
		slot         int32
		persisted    bool
		herr         error
	)
	m.roundHook = func(settled bool) {
		switch {
		case !settled && !ran:
			// After the round's snapshot and commit: a new entry in d.
			ran = true
			if herr = x.symlink("t2", "d/b"); herr == nil {
				bk = InodeKey{Ino: inoOf(t, filepath.Join(dir, "d", "b"))}
			}
		case settled && ran && !checked:
			checked = true
			sc, _ := m.lookup(s, false)
			sc.mu.Lock()
			f := sc.folders["f1"]
			if in := f.inodes[pk]; in != nil {
				slot = in.slot
			}
			if in := f.inodes[bk]; in == nil || in.pExists {
				persisted = true
			}
			sc.mu.Unlock()
		}
	}
	must(m.Flush())
	must(herr)
	if !checked {
		t.Fatal("the round did not run the hook")
	}
	if slot == 0 && !persisted {
		t.Fatal("the directory's slot was cleared while the record of an entry made in it was not written")
	}
}

// inoOf is the inode number of a path (not following a symlink).
func inoOf(t *testing.T, p string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}
