package quota

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/meta"
)

// Helpers shared by the tests: a badger database, scopes, and simFS, which
// drives the ledger around real backing operations the way package fs
// does (dir fds and *at calls).

func openDB(tb testing.TB, dir string) *badger.DB {
	tb.Helper()
	db, err := badger.Open(badger.DefaultOptions(dir).
		WithLogger(nil).
		WithSyncWrites(false). // as vfolderd opens it (meta.OpenBadger).
		WithMemTableSize(8 << 20).
		WithBlockCacheSize(1 << 20).
		WithValueLogFileSize(16 << 20).
		WithNumCompactors(2).
		WithDetectConflicts(true))
	if err != nil {
		tb.Fatalf("open badger: %v", err)
	}
	return db
}

func testScope(tb testing.TB, n int) ScopeKey {
	tb.Helper()
	id, err := meta.UserScope("0123456789abcdef0123456789abcd" + string(rune('a'+n%6)) + string(rune('0'+n%10)))
	if err != nil {
		tb.Fatal(err)
	}
	return ScopeKey{Volume: "vol1", ID: id}
}

func testLog(tb testing.TB) zerolog.Logger {
	if os.Getenv("QUOTA_TEST_LOG") != "" {
		return zerolog.New(zerolog.NewTestWriter(tb)).Level(zerolog.DebugLevel)
	}
	return zerolog.Nop()
}

func openMgr(tb testing.TB, db *badger.DB, opts Options) *Manager {
	tb.Helper()
	m, err := Open(db, testLog(tb), opts)
	if err != nil {
		tb.Fatalf("quota.Open: %v", err)
	}
	return m
}

// newLedger opens a database and a Manager in a temp dir, both closed at
// cleanup.
func newLedger(tb testing.TB) (*Manager, *badger.DB) {
	tb.Helper()
	db := openDB(tb, tb.TempDir())
	m := openMgr(tb, db, Options{})
	tb.Cleanup(func() {
		m.Close()
		db.Close()
	})
	return m, db
}

// folderOpener serves Options.OpenFolder from a volume directory.
func folderOpener(vol string) func(ScopeKey, string) (*os.File, error) {
	return func(_ ScopeKey, id string) (*os.File, error) {
		return os.Open(filepath.Join(vol, id))
	}
}

// simFS performs file operations on one folder and keeps the ledger in
// step, as the FUSE layer does.
type simFS struct {
	m       *Manager
	s       ScopeKey
	folder  string
	rootFd  int
	rootDev uint64
}

func newSimFS(tb testing.TB, m *Manager, s ScopeKey, dir, folder string) *simFS {
	tb.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		tb.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		tb.Fatal(err)
	}
	x := &simFS{m: m, s: s, folder: folder, rootFd: fd, rootDev: st.Dev}
	tb.Cleanup(x.close)
	return x
}

func (x *simFS) close() {
	if x.rootFd >= 0 {
		unix.Close(x.rootFd)
		x.rootFd = -1
	}
}

func (x *simFS) key(st *unix.Stat_t) InodeKey { return MakeKey(x.rootDev, st.Dev, st.Ino) }

func (x *simFS) parent(rel string) (int, string, error) {
	p, n := splitHint(rel)
	fd, err := openat2(x.rootFd, p, unix.O_PATH|unix.O_DIRECTORY)
	return fd, n, err
}

// dirRef names the parent directory of rel (open as pfd) for the ledger.
func (x *simFS) dirRef(pfd int, rel string) (DirRef, error) {
	var st unix.Stat_t
	if err := unix.Fstat(pfd, &st); err != nil {
		return DirRef{}, err
	}
	p, _ := splitHint(rel)
	size := func() int64 { return dsize(pfd) }
	if p == "." {
		return DirRef{Key: x.key(&st), Root: true, Size: size}, nil
	}
	return DirRef{Key: x.key(&st), Hint: p, Size: size}, nil
}

// dsize is a directory's st_size, -1 when fstat fails.
func dsize(fd int) int64 { return fsize(fd) }

// reserveCreate is ReserveCreate for a new entry rel.
func (x *simFS) reserveCreate(kind Kind, bytes int64, rel string) (Create, int, string, error) {
	pfd, name, err := x.parent(rel)
	if err != nil {
		return Create{}, -1, "", err
	}
	d, err := x.dirRef(pfd, rel)
	if err != nil {
		unix.Close(pfd)
		return Create{}, -1, "", err
	}
	c, err := x.m.ReserveCreate(x.s, x.folder, kind, bytes, d)
	if err != nil {
		unix.Close(pfd)
		return Create{}, -1, "", err
	}
	return c, pfd, name, nil
}

// handle is an open file with a write hold.
type handle struct {
	fd  int
	key InodeKey
	rel string
}

func (x *simFS) create(rel string) (*handle, error) {
	r, pfd, name, err := x.reserveCreate(KindFile, 0, rel)
	if err != nil {
		return nil, err
	}
	defer unix.Close(pfd)
	fd, err := unix.Openat(pfd, name, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		r.Cancel(dsize(pfd))
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		r.Cancel(dsize(pfd))
		unix.Close(fd)
		return nil, err
	}
	k := x.key(&st)
	r.Commit(k, st.Size, dsize(pfd))
	if err := x.m.OpenForWrite(x.s, x.folder, k, st.Size, rel); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &handle{fd: fd, key: k, rel: rel}, nil
}

func (x *simFS) open(rel string) (*handle, error) {
	pfd, name, err := x.parent(rel)
	if err != nil {
		return nil, err
	}
	defer unix.Close(pfd)
	fd, err := unix.Openat(pfd, name, unix.O_RDWR|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, err
	}
	k := x.key(&st)
	if err := x.m.OpenForWrite(x.s, x.folder, k, st.Size, rel); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &handle{fd: fd, key: k, rel: rel}, nil
}

func fsize(fd int) int64 {
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil {
		return -1
	}
	return st.Size
}

// write writes data at off, cut short by the quota.
func (x *simFS) write(h *handle, off int64, data []byte) (int, error) {
	g, r, err := x.m.Reserve(x.s, x.folder, h.key, off, off+int64(len(data)))
	if err != nil {
		return 0, err
	}
	n, werr := unix.Pwrite(h.fd, data[:g-off], off)
	r.Done(fsize(h.fd))
	return n, werr
}

func (x *simFS) truncate(h *handle, size int64) error {
	r, err := x.m.ReserveExact(x.s, x.folder, h.key, size)
	if err != nil {
		return err
	}
	terr := unix.Ftruncate(h.fd, size)
	r.Done(fsize(h.fd))
	return terr
}

func (x *simFS) release(h *handle) {
	x.m.CloseForWrite(x.s, x.folder, h.key)
	unix.Close(h.fd)
}

// unlink removes a name (file or symlink).
func (x *simFS) unlink(rel string) error { return x.remove(rel, 0) }

func (x *simFS) rmdir(rel string) error { return x.remove(rel, unix.AT_REMOVEDIR) }

// remove is unlinkat with the ledger's PrepareRemove/Done around it; a
// directory's removal always ends it, a file's only with its last link.
func (x *simFS) remove(rel string, flags int) error {
	pfd, name, err := x.parent(rel)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	d, err := x.dirRef(pfd, rel)
	if err != nil {
		return err
	}
	dr, err := x.m.ReserveDir(x.s, x.folder, d, false)
	if err != nil {
		return err
	}
	rm, err := x.m.PrepareRemove(x.s, x.folder, x.key(&st), rel)
	if err != nil {
		dr.Done(dsize(pfd))
		return err
	}
	err = unix.Unlinkat(pfd, name, flags)
	rm.Done(err == nil && (flags&unix.AT_REMOVEDIR != 0 || st.Nlink == 1))
	dr.Done(dsize(pfd))
	return err
}

func (x *simFS) mkdir(rel string) error {
	r, pfd, name, err := x.reserveCreate(KindDir, 0, rel)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if err := unix.Mkdirat(pfd, name, 0o755); err != nil {
		r.Cancel(dsize(pfd))
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		r.Cancel(dsize(pfd))
		return err
	}
	r.Commit(x.key(&st), st.Size, dsize(pfd))
	return nil
}

func (x *simFS) symlink(target, rel string) error {
	r, pfd, name, err := x.reserveCreate(KindSymlink, int64(len(target)), rel)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if err := unix.Symlinkat(target, pfd, name); err != nil {
		r.Cancel(dsize(pfd))
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		r.Cancel(dsize(pfd))
		return err
	}
	r.Commit(x.key(&st), st.Size, dsize(pfd))
	return nil
}

func (x *simFS) link(oldRel, newRel string) error {
	opfd, oname, err := x.parent(oldRel)
	if err != nil {
		return err
	}
	defer unix.Close(opfd)
	npfd, nname, err := x.parent(newRel)
	if err != nil {
		return err
	}
	defer unix.Close(npfd)
	d, err := x.dirRef(npfd, newRel)
	if err != nil {
		return err
	}
	dr, err := x.m.ReserveDir(x.s, x.folder, d, true)
	if err != nil {
		return err
	}
	err = unix.Linkat(opfd, oname, npfd, nname, 0)
	dr.Done(dsize(npfd))
	return err
}

func (x *simFS) rename(oldRel, newRel string) error {
	opfd, oname, err := x.parent(oldRel)
	if err != nil {
		return err
	}
	defer unix.Close(opfd)
	npfd, nname, err := x.parent(newRel)
	if err != nil {
		return err
	}
	defer unix.Close(npfd)
	from, err := x.dirRef(opfd, oldRel)
	if err != nil {
		return err
	}
	to, err := x.dirRef(npfd, newRel)
	if err != nil {
		return err
	}
	dr, err := x.m.ReserveRename(x.s, x.folder, from, to, true)
	if err != nil {
		return err
	}
	err = unix.Renameat2(opfd, oname, npfd, nname, unix.RENAME_NOREPLACE)
	dr.Done(dsize(opfd), dsize(npfd))
	return err
}

// setxattr sets a user.* attribute of rel (a file or directory; "." for
// the folder root) through the ledger, as fs does.
func (x *simFS) setxattr(rel, name string, value []byte) error {
	grow := func(p string) (int64, error) {
		old, err := unix.Getxattr(p, name, nil)
		if errors.Is(err, unix.ENODATA) {
			old, err = -1, nil
		}
		return XattrGrowth(name, len(value), old), err
	}
	return x.xattrOp(rel, grow, func(p string) error { return unix.Setxattr(p, name, value, 0) })
}

func (x *simFS) removexattr(rel, name string) error {
	none := func(string) (int64, error) { return 0, nil }
	return x.xattrOp(rel, none, func(p string) error { return unix.Removexattr(p, name) })
}

func (x *simFS) xattrOp(rel string, grow func(path string) (int64, error), op func(path string) error) error {
	fd, err := openat2(x.rootFd, rel, unix.O_PATH)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	kind, hint := KindOf(st.Mode), rel
	if rel == "." {
		kind, hint = KindRoot, ""
	}
	p := "/proc/self/fd/" + strconv.Itoa(fd)
	current := func() int64 {
		n, err := UserXattrBytes(fd)
		if err != nil {
			return -1
		}
		return n
	}
	r, err := x.m.ReserveXattr(x.s, x.folder, x.key(&st), kind, st.Size, hint, func() (int64, error) { return grow(p) }, current)
	if err != nil {
		return err
	}
	err = op(p)
	total, terr := UserXattrBytes(fd)
	if terr != nil {
		total = -1
	}
	r.Done(total)
	return err
}

// truth is what is really on storage below a folder directory, as the
// ledger counts it: file, directory (the root included) and symlink
// sizes plus user.* xattrs; every object but the root is an inode.
type truth struct {
	bytes, inodes int64
	sizes         map[InodeKey]int64 // charge of every object
}

// xattrTruth sums the user.* xattrs of a path (not following a symlink)
// with the xattr tool's own walk of names, independently of the ledger's.
func xattrTruth(tb testing.TB, p string) int64 {
	tb.Helper()
	buf := make([]byte, 1<<20)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTSUP) {
			return 0
		}
		tb.Fatal(err)
	}
	var sum int64
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if !strings.HasPrefix(name, "user.") {
			continue
		}
		v := make([]byte, 1<<16)
		vn, err := unix.Lgetxattr(p, name, v)
		if err != nil {
			if errors.Is(err, unix.ENODATA) || errors.Is(err, unix.ENOENT) {
				continue
			}
			tb.Fatal(err)
		}
		sum += int64(len(name) + vn)
	}
	return sum
}

func diskTruth(tb testing.TB, dir string) truth {
	tb.Helper()
	var rst unix.Stat_t
	if err := unix.Lstat(dir, &rst); err != nil {
		tb.Fatal(err)
	}
	t := truth{sizes: map[InodeKey]int64{}}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			if errors.Is(err, unix.ENOENT) {
				return nil
			}
			return err
		}
		k := MakeKey(rst.Dev, st.Dev, st.Ino)
		if _, ok := t.sizes[k]; ok {
			return nil
		}
		kind := KindOf(st.Mode)
		c := chargeOf(kind, st.Size)
		if kindHasXattrs(kind) {
			c += xattrTruth(tb, p)
		}
		t.sizes[k] = c
		t.bytes += c
		if p != dir {
			t.inodes++
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return t
}

// sizeOf is the st_size of a path (a directory's charge), not following a
// symlink.
func sizeOf(tb testing.TB, p string) int64 {
	tb.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		tb.Fatal(err)
	}
	return st.Size
}

// records returns the persisted inode records of a folder.
func records(tb testing.TB, m *Manager, s ScopeKey, folder string) map[InodeKey]int64 {
	tb.Helper()
	out := map[InodeKey]int64{}
	prefix := cat(prefInode, encScope(s), encFolder(folder))
	err := m.db.View(func(txn *badger.Txn) error {
		opt := badger.DefaultIteratorOptions
		opt.Prefix = prefix
		it := txn.NewIterator(opt)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			p, err := parseKey(prefInode, it.Item().Key())
			if err != nil {
				return err
			}
			if err := it.Item().Value(func(v []byte) error {
				_, size, x, err := decInode(v)
				out[p.Ino] = size + x
				return err
			}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// assertConsistent checks, after a Flush and with no operation in flight,
// that every persisted folder counter equals the sum of its records, that
// memory agrees with the store, and that scope totals are folder sums.
func assertConsistent(tb testing.TB, m *Manager) {
	tb.Helper()
	if err := m.Flush(); err != nil {
		tb.Fatalf("flush: %v", err)
	}
	for _, s := range m.Scopes() {
		sc, _ := m.lookup(s, false)
		var sumU, sumC int64
		sc.mu.Lock()
		folders := make([]*folder, 0, len(sc.folders))
		for _, f := range sc.folders {
			folders = append(folders, f)
			sumU += f.used
			sumC += f.count
		}
		if sumU != sc.used || sumC != sc.count {
			tb.Errorf("scope %s: totals %d/%d, folder sums %d/%d", s, sc.used, sc.count, sumU, sumC)
		}
		sc.mu.Unlock()
		for _, f := range folders {
			cb, cc, sb, sn, err := m.persistedFolder(sc, f)
			if err != nil {
				tb.Fatal(err)
			}
			if cb != sb || cc != sn {
				tb.Errorf("folder %s: persisted counter %d bytes/%d inodes, records sum %d/%d", f.id, cb, cc, sb, sn)
			}
			sc.mu.Lock()
			if f.used != cb || f.count != cc || f.pUsed != cb || f.pCount != cc {
				tb.Errorf("folder %s: memory %d/%d (p %d/%d), store %d/%d", f.id, f.used, f.count, f.pUsed, f.pCount, cb, cc)
			}
			sc.mu.Unlock()
		}
	}
}

// waitFor polls cond for up to 10s.
func waitUntil(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
