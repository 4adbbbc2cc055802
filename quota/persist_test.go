package quota

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// abandon stops a Manager the way a dying process leaves it: the clean
// shutdown marker is never written and holds stay marked.
func abandon(m *Manager) {
	m.closed.Store(true)
	close(m.stop)
	<-m.loopDone
}

func TestCloseReopenKeepsUsage(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, dir)
	m := openMgr(t, db, Options{})
	s1, s2 := testScope(t, 1), testScope(t, 2)
	m.SetLimit(s1, 1<<20, 100)
	m.SetLimit(s2, 5000, 0)
	sizes := map[InodeKey]int64{}
	for i := range 30 {
		s, f := s1, "a"
		if i%3 == 1 {
			f = "b"
		}
		if i%3 == 2 {
			s, f = s2, "c"
		}
		k := ino(uint64(i + 1))
		createFile(t, m, s, f, k)
		if err := m.OpenForWrite(s, f, k, 0, "x"); err != nil {
			t.Fatal(err)
		}
		var sz int64
		write(t, m, s, f, k, &sz, 0, int64(100*i))
		sizes[k] = sz
		if i%5 != 0 {
			m.CloseForWrite(s, f, k) // some stay open across Close
		}
	}
	r, _ := m.ReserveInode(s1, "a", KindSymlink, 9, "l")
	r.Commit(ino(1000), 9)
	r, _ = m.ReserveInode(s2, "c", KindDir, 0, "d")
	r.Commit(ino(1001), 0)
	want := map[ScopeKey]Usage{s1: m.Usage(s1), s2: m.Usage(s2)}
	wantF := map[string]Usage{"a": m.FolderUsage("a"), "b": m.FolderUsage("b"), "c": m.FolderUsage("c")}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.Reserve(s1, "a", ino(1), 0, 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("reserve after close: %v", err)
	}
	db.Close()

	db = openDB(t, dir)
	defer db.Close()
	m = openMgr(t, db, Options{})
	defer m.Close()
	if m.WasUnclean() {
		t.Fatal("clean shutdown reported as unclean")
	}
	for s, u := range want {
		if got := m.Usage(s); got != u {
			t.Errorf("scope %s: usage %+v, want %+v", s, got, u)
		}
	}
	for f, u := range wantF {
		if got := m.FolderUsage(f); got != u {
			t.Errorf("folder %s: usage %+v, want %+v", f, got, u)
		}
	}
	if len(m.Scopes()) != 2 {
		t.Fatalf("scopes %v", m.Scopes())
	}
	assertConsistent(t, m)
	// Loaded records keep working.
	m.Forget(s1, "a", ino(4))
	u := m.Usage(s1)
	if u.Used != want[s1].Used-sizes[ino(4)] || u.UsedInodes != want[s1].UsedInodes-1 {
		t.Fatalf("after forget: %+v (was %+v, file %d)", u, want[s1], sizes[ino(4)])
	}
	assertConsistent(t, m)
}

func TestUncleanShutdownFlag(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, dir)
	defer db.Close()
	m := openMgr(t, db, Options{})
	if m.WasUnclean() {
		t.Fatal("fresh database reported unclean")
	}
	abandon(m)
	m = openMgr(t, db, Options{})
	if !m.WasUnclean() {
		t.Fatal("abandoned manager not reported unclean")
	}
	m.Close()
	m = openMgr(t, db, Options{})
	if m.WasUnclean() {
		t.Fatal("clean close reported unclean")
	}
	m.Close()
}

// TestRecoveryRestatsDirtyInodes leaves files in the states a crash can
// leave them in and checks that Open settles each to its real size.
func TestRecoveryRestatsDirtyInodes(t *testing.T) {
	base := t.TempDir()
	vol := filepath.Join(base, "vol")
	for _, f := range []string{"f1", "f2", "gone"} {
		if err := os.MkdirAll(filepath.Join(vol, f, "sub"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	db := openDB(t, filepath.Join(base, "db"))
	defer db.Close()
	m := openMgr(t, db, Options{})
	s := testScope(t, 3)
	x := newSimFS(t, m, s, filepath.Join(vol, "f1"), "f1")
	y := newSimFS(t, m, s, filepath.Join(vol, "gone"), "gone")

	grown, _ := x.create("sub/grown")
	x.write(grown, 0, make([]byte, 100))
	renamed, _ := x.create("renamed")
	x.write(renamed, 0, make([]byte, 50))
	unlinked, _ := x.create("unlinked")
	x.write(unlinked, 0, make([]byte, 70))
	settled, _ := x.create("settled")
	x.write(settled, 0, make([]byte, 30))
	x.release(settled)
	lost, _ := y.create("sub/lost")
	y.write(lost, 0, make([]byte, 40))
	if err := m.Flush(); err != nil {
		t.Fatal(err)
	}
	// What happens between a grant and its commit, then the crash:
	// a write lands, a file moves, a file is removed, a folder is purged.
	unix.Pwrite(grown.fd, make([]byte, 1000), 100)
	unix.Ftruncate(renamed.fd, 5)
	if err := os.Rename(filepath.Join(vol, "f1", "renamed"), filepath.Join(vol, "f1", "sub", "moved")); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(vol, "f1", "unlinked"))
	os.RemoveAll(filepath.Join(vol, "gone"))
	abandon(m)
	for _, h := range []*handle{grown, renamed, unlinked, lost} {
		unix.Close(h.fd)
	}

	m = openMgr(t, db, Options{OpenFolder: folderOpener(vol)})
	defer m.Close()
	if !m.WasUnclean() {
		t.Fatal("not unclean")
	}
	tr := diskTruth(t, filepath.Join(vol, "f1"))
	dirs := sizeOf(t, filepath.Join(vol, "f1")) + sizeOf(t, filepath.Join(vol, "f1", "sub"))
	if u := m.FolderUsage("f1"); u.Used != tr.bytes || tr.bytes != 1100+5+30+dirs {
		t.Fatalf("f1 after recovery: %d bytes, disk %d", u.Used, tr.bytes)
	}
	// The purged folder's dirty file is released; what is left (the
	// directory the file was made in, recorded then) goes with DropFolder.
	gone := records(t, m, s, "gone")
	var left int64
	for _, b := range gone {
		left += b
	}
	if _, ok := gone[lost.key]; ok || len(gone) != 1 || m.FolderUsage("gone").Used != left {
		t.Fatalf("purged folder after recovery: %+v, records %v, lost file %v", m.FolderUsage("gone"), gone, lost.key)
	}
	recs := records(t, m, s, "f1")
	for k, size := range recs {
		if d, ok := tr.sizes[k]; !ok || d != size {
			t.Errorf("record %v: %d bytes, disk %d (present %v)", k, size, d, ok)
		}
	}
	assertConsistent(t, m)
}

// TestRecoveryWithoutFolderAccess: when the folder cannot be opened at
// Open, dirty inodes stay marked and a Check settles them.
func TestRecoveryWithoutFolderAccess(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "f1")
	os.MkdirAll(dir, 0o755)
	db := openDB(t, filepath.Join(base, "db"))
	defer db.Close()
	m := openMgr(t, db, Options{})
	s := testScope(t, 4)
	x := newSimFS(t, m, s, dir, "f1")
	h, _ := x.create("a")
	x.write(h, 0, make([]byte, 10))
	m.Flush()
	unix.Pwrite(h.fd, make([]byte, 90), 10)
	abandon(m)
	unix.Close(h.fd)

	unavailable := func(ScopeKey, string) (*os.File, error) { return nil, errors.New("volume not mounted") }
	m = openMgr(t, db, Options{OpenFolder: unavailable})
	defer func() { m.Close() }()
	rootSize := sizeOf(t, dir)
	if u := m.FolderUsage("f1"); u.Used != 10+rootSize {
		t.Fatalf("unverified inode keeps its last charge: %d", u.Used)
	}
	m.Close()
	// Still marked after a clean close.
	m = openMgr(t, db, Options{})
	root, _ := os.Open(dir)
	defer root.Close()
	rep, err := m.Check(context.Background(), s, []FolderRoot{{FolderID: "f1", Dir: root}}, CheckOptions{Repair: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Counts[ProblemSize] != 1 || rep.Repaired != 1 {
		t.Fatalf("report %+v", rep)
	}
	if u := m.FolderUsage("f1"); u.Used != 100+rootSize {
		t.Fatalf("after check: %d", u.Used)
	}
	assertConsistent(t, m)
	sc, _ := m.lookup(s, false)
	waitUntil(t, "mark removal", func() bool {
		m.Flush()
		sc.mu.Lock()
		defer sc.mu.Unlock()
		return len(sc.folders["f1"].inodes) == 0
	})
}

func TestDropFolder(t *testing.T) {
	m, _ := newLedger(t)
	m.opts.MaxBatch = 7 // several transactions
	s := testScope(t, 5)
	for i := range 40 {
		createFile(t, m, s, "doomed", ino(uint64(i)))
		var sz int64
		write(t, m, s, "doomed", ino(uint64(i)), &sz, 0, 10)
	}
	createFile(t, m, s, "kept", ino(100))
	m.OpenForWrite(s, "doomed", ino(3), 10, "")
	if err := m.DropFolder(s, "doomed"); !errors.Is(err, ErrBusy) {
		t.Fatalf("drop with an open file: %v", err)
	}
	m.CloseForWrite(s, "doomed", ino(3))
	if err := m.DropFolder(s, "doomed"); err != nil {
		t.Fatal(err)
	}
	mustUsage(t, m, s, 0, 1)
	if u := m.FolderUsage("doomed"); u != (Usage{}) {
		t.Fatalf("dropped folder usage %+v", u)
	}
	if recs := records(t, m, s, "doomed"); len(recs) != 0 {
		t.Fatalf("%d records left", len(recs))
	}
	assertConsistent(t, m)
}

// TestRecoveryIntentOverStaleRecord: an empty file is removed (no durable
// mark: it has no bytes), a symlink gets its inode number, and the process
// dies before either is committed. The store then holds the file's stale
// record and the symlink's intent; recovery must charge the symlink.
func TestRecoveryIntentOverStaleRecord(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "f1")
	os.MkdirAll(dir, 0o755)
	target := "some/where/else"
	if err := os.Symlink(target, filepath.Join(dir, "s")); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	unix.Lstat(filepath.Join(dir, "s"), &st)
	var rst unix.Stat_t
	unix.Lstat(dir, &rst)
	k := MakeKey(rst.Dev, st.Dev, st.Ino)

	db := openDB(t, filepath.Join(base, "db"))
	defer db.Close()
	m := openMgr(t, db, Options{})
	s := testScope(t, 6)
	createFile(t, m, s, "f1", k) // the removed file's record, still stored
	if _, err := m.ReserveInode(s, "f1", KindSymlink, int64(len(target)), "s"); err != nil {
		t.Fatal(err)
	}
	m.Flush()
	abandon(m)

	m = openMgr(t, db, Options{OpenFolder: folderOpener(base)})
	defer m.Close()
	if u := m.FolderUsage("f1"); u.Used != int64(len(target)) || u.UsedInodes != 1 {
		t.Fatalf("after recovery %+v, want %d bytes 1 inode", u, len(target))
	}
	assertConsistent(t, m)
	if recs := records(t, m, s, "f1"); recs[k] != int64(len(target)) {
		t.Fatalf("records %v", recs)
	}
}

// TestHeldFileSizeDeferred: once the store holds the dirty mark of a file
// open for writing, its growth is not committed write by write; the
// in-memory usage stays exact, and the size reaches the store at its
// release, at a Flush, at Close, or through recovery after a crash.
func TestHeldFileSizeDeferred(t *testing.T) {
	base := t.TempDir()
	vol := filepath.Join(base, "vol")
	if err := os.MkdirAll(filepath.Join(vol, "f"), 0o755); err != nil {
		t.Fatal(err)
	}
	db := openDB(t, filepath.Join(base, "db"))
	defer db.Close()
	m := openMgr(t, db, Options{})
	s := testScope(t, 4)
	if err := m.SetLimit(s, 1<<30, 0); err != nil {
		t.Fatal(err)
	}
	x := newSimFS(t, m, s, filepath.Join(vol, "f"), "f")
	h, err := x.create("a")
	if err != nil {
		t.Fatal(err)
	}
	block := make([]byte, 4096)
	x.write(h, 0, block)
	if err := m.Flush(); err != nil { // the mark and the first size are stored
		t.Fatal(err)
	}
	if got := records(t, m, s, "f")[h.key]; got != 4096 {
		t.Fatalf("record after Flush: %d, want 4096", got)
	}
	before := m.FolderUsage("f").Used
	for i := int64(1); i < 64; i++ {
		if n, err := x.write(h, i*4096, block); err != nil || n != 4096 {
			t.Fatalf("write %d: %d, %v", i, n, err)
		}
		if got := m.FolderUsage("f").Used; got != before+i*4096 {
			t.Fatalf("usage after write %d: %d, want %d", i, got, before+i*4096)
		}
	}
	time.Sleep(20 * m.opts.FlushInterval) // many commit rounds
	if got := records(t, m, s, "f")[h.key]; got != 4096 {
		t.Fatalf("record while held: %d, want the deferred 4096", got)
	}
	// A Flush writes every change, deferred sizes included.
	if err := m.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := records(t, m, s, "f")[h.key]; got != 64*4096 {
		t.Fatalf("record after Flush: %d, want %d", got, 64*4096)
	}
	assertConsistent(t, m)

	// Grow it further and die: recovery sets the record to the disk.
	for i := int64(64); i < 100; i++ {
		x.write(h, i*4096, block)
	}
	time.Sleep(20 * m.opts.FlushInterval)
	if got := records(t, m, s, "f")[h.key]; got != 64*4096 {
		t.Fatalf("record before the crash: %d, want the deferred %d", got, 64*4096)
	}
	abandon(m)
	unix.Close(h.fd)
	m = openMgr(t, db, Options{OpenFolder: folderOpener(vol)})
	tr := diskTruth(t, filepath.Join(vol, "f"))
	if u := m.FolderUsage("f"); u.Used != tr.bytes || tr.sizes[h.key] != 100*4096 {
		t.Fatalf("after recovery: %d bytes, disk %d (file %d)", u.Used, tr.bytes, tr.sizes[h.key])
	}
	if got := records(t, m, s, "f")[h.key]; got != 100*4096 {
		t.Fatalf("record after recovery: %d, want %d", got, 100*4096)
	}
	assertConsistent(t, m)

	// Held across a clean Close, without a way to look at the folder at
	// the next Open: the final commit wrote the size.
	x = newSimFS(t, m, s, filepath.Join(vol, "f"), "f")
	h2, err := x.create("b")
	if err != nil {
		t.Fatal(err)
	}
	x.write(h2, 0, block)
	if err := m.Flush(); err != nil {
		t.Fatal(err)
	}
	for i := int64(1); i < 10; i++ {
		x.write(h2, i*4096, block)
	}
	time.Sleep(20 * m.opts.FlushInterval)
	want := m.FolderUsage("f")
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	unix.Close(h2.fd)
	m = openMgr(t, db, Options{})
	defer m.Close()
	if got := m.FolderUsage("f"); got != want {
		t.Fatalf("after a clean Close with a file held: %+v, want %+v", got, want)
	}
	if got := records(t, m, s, "f")[h2.key]; got != 10*4096 {
		t.Fatalf("record after Close: %d, want %d", got, 10*4096)
	}
}
