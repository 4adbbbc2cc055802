package e2e

// Quota acceptance through real mounts: fs.Mount with a quota.Manager on a
// badger database in a temp dir, views of folders of a few scopes, real
// system calls (and real dd and df processes) on the mount, and walks of
// the backing directories as the truth.

import (
	"context"
	"errors"
	"fmt"
	iofs "io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	vfs "github.com/vfolder/vfolder/fs"
	"github.com/vfolder/vfolder/meta"
	"github.com/vfolder/vfolder/quota"
)

const (
	qVolume = "vol"
	qMiB    = 1 << 20
	qLimit  = 100 * qMiB
)

// qScope is the id of test scope n.
func qScope(n int) meta.ScopeID {
	return meta.ScopeID{Kind: meta.KindUser, UUID: fmt.Sprintf("%032x", 0x5c0e0000+n)}
}

// qFolderOf is folder n of a scope: its id and directory below the volume.
type qFolderOf struct {
	scope meta.ScopeID
	id    string
	rel   string
}

func qFolderSpec(scope meta.ScopeID, n int) qFolderOf {
	id := fmt.Sprintf("%032x", 0xf01de7000+n)
	return qFolderOf{scope: scope, id: id, rel: meta.FolderRelPath(scope, id)}
}

func (f qFolderOf) key() quota.ScopeKey { return quota.ScopeKey{Volume: qVolume, ID: f.scope} }

// qLogger is quiet unless VFOLDER_QUOTA_DEBUG is set.
func qLogger(t testing.TB) zerolog.Logger {
	if os.Getenv("VFOLDER_QUOTA_DEBUG") == "" {
		return zerolog.Nop()
	}
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel)
}

// qOpenLedger opens the state database and the quota ledger on it, as
// vfolderd does, with crash recovery looking at folders of vol.
func qOpenLedger(state, vol string, log zerolog.Logger) (*meta.Badger, *quota.Manager, error) {
	db, err := meta.OpenBadger(state, log)
	if err != nil {
		return nil, nil, err
	}
	m, err := quota.Open(db.DB(), log, quota.Options{
		OpenFolder: vfs.QuotaFolderOpener(func(name string) (string, bool) { return vol, name == qVolume }),
	})
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return db, m, nil
}

// qMakeVolume makes a volume root (with version.txt) and a mount point
// below dir.
func qMakeVolume(dir string) (vol, mnt string, err error) {
	vol, mnt = filepath.Join(dir, "vol"), filepath.Join(dir, "mnt")
	for _, d := range []string{vol, mnt} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", "", err
		}
	}
	return vol, mnt, os.WriteFile(filepath.Join(vol, "version.txt"), []byte("3"), 0o644)
}

// qMakeFolder makes a folder directory, owned by the storage uid as a
// folder creation leaves it.
func qMakeFolder(vol string, f qFolderOf) error {
	p := filepath.Join(vol, f.rel)
	if err := os.MkdirAll(p, 0o755); err != nil {
		return err
	}
	return os.Chown(p, fsStorageUID, fsStorageGID)
}

// qViewSpec is a session view of a folder.
func qViewSpec(vol string, f qFolderOf, name string, mode meta.Permission) vfs.ViewSpec {
	return vfs.ViewSpec{
		Namespace: vfs.NSSessions, Key: "quota-sess", Name: name,
		VolumeName: qVolume, VolumePath: vol, FolderRel: f.rel,
		Mode: mode, UID: 1000, GID: 1000,
		FolderID: f.id, Scope: f.scope,
	}
}

// qEnv is one mounted file system with a quota ledger.
type qEnv struct {
	dir, vol, mnt string
	db            *meta.Badger
	m             *quota.Manager
	fs            *vfs.FS
}

// qSetup mounts a fresh file system with a fresh ledger. Cleanup closes
// the mount, then the ledger, and fails the test if a mount is left.
func qSetup(t *testing.T) *qEnv {
	t.Helper()
	RequireRoot(t)
	dir := t.TempDir()
	vol, mnt, err := qMakeVolume(dir)
	if err != nil {
		t.Fatal(err)
	}
	e := &qEnv{dir: dir, vol: vol, mnt: mnt}
	failOnMountsLeft(t, dir)
	log := qLogger(t)
	e.db, e.m, err = qOpenLedger(filepath.Join(dir, "state"), vol, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.m.Close(); err != nil {
			t.Errorf("quota Close: %v", err)
		}
		e.db.Close()
	})
	e.fs, err = vfs.Mount(vfs.Options{
		MountPoint: mnt, StorageUID: fsStorageUID, StorageGID: fsStorageGID,
		Logger: log, Quota: e.m,
	})
	if err != nil {
		t.Fatalf("Mount: %v", err)
	}
	t.Cleanup(func() {
		if err := e.fs.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return e
}

// folder makes folder n of scope and a view of it; it returns the
// folder and the view's path.
func (e *qEnv) folder(t *testing.T, scope meta.ScopeID, n int, mode meta.Permission) (qFolderOf, string) {
	t.Helper()
	f := qFolderSpec(scope, n)
	if err := qMakeFolder(e.vol, f); err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("v%d-%d", scope.UUID[len(scope.UUID)-1]-'0', n)
	if err := e.fs.AddView(qViewSpec(e.vol, f, name, mode)); err != nil {
		t.Fatal(err)
	}
	return f, filepath.Join(e.mnt, vfs.NSSessions, "quota-sess", name)
}

func (e *qEnv) back(f qFolderOf) string { return filepath.Join(e.vol, f.rel) }

// qTruth is what a folder holds on storage, as the ledger counts it.
type qTruth struct{ bytes, inodes int64 }

// qWalk walks a backing folder as the ledger counts it: sizes of regular
// files (each inode once), of directories (the root included) and symlink
// lengths, plus the user.* xattrs of files and directories; every object
// below the root is one inode.
func qWalk(root string) (qTruth, error) {
	var tr qTruth
	type id struct{ dev, ino uint64 }
	seen := map[id]bool{}
	err := filepath.WalkDir(root, func(p string, d iofs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		k := id{st.Dev, st.Ino}
		if seen[k] {
			return nil
		}
		seen[k] = true
		if p != root {
			tr.inodes++
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG, unix.S_IFDIR:
			x, err := qUserXattrs(p)
			if err != nil {
				return err
			}
			tr.bytes += st.Size + x
		case unix.S_IFLNK:
			tr.bytes += st.Size
		}
		return nil
	})
	return tr, err
}

// qUserXattrs sums len(name)+len(value) of the user.* attributes of p.
func qUserXattrs(p string) (int64, error) {
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if errors.Is(err, unix.ENOTSUP) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var sum int64
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if !strings.HasPrefix(name, "user.") {
			continue
		}
		vn, err := unix.Lgetxattr(p, name, nil)
		if err != nil {
			return 0, err
		}
		sum += int64(len(name) + vn)
	}
	return sum, nil
}

// qDirBytes is the st_size of the directory root and of the given
// directories below it: what the ledger charges for them.
func qDirBytes(t *testing.T, root string, sub ...string) int64 {
	t.Helper()
	var n int64
	for _, d := range append([]string{""}, sub...) {
		st, err := os.Lstat(filepath.Join(root, d))
		if err != nil {
			t.Fatal(err)
		}
		n += st.Size()
	}
	return n
}

func qMustWalk(t *testing.T, root string) qTruth {
	t.Helper()
	tr, err := qWalk(root)
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
	return tr
}

// qLoad is the concurrent write load: writers doing real system calls on
// files in view directories.
type qLoad struct {
	dirs    []string // writer i works in dirs[i%len(dirs)]
	writers int
	// churn adds shrinking, unlinking, renaming, user.* xattrs and hard
	// links with long names (directory growth) and runs until stop is
	// closed; without it the load only grows, and each writer ends when a
	// one-byte append fails with EDQUOT (no room is left anywhere).
	churn bool
	stop  chan struct{}
	// dead, when it returns true, means the daemon is gone: errors after
	// that are expected and end the writer.
	dead func() bool
	seed uint64

	mu     sync.Mutex
	errs   []string
	edquot atomic.Int64
	short  atomic.Int64
	ops    atomic.Int64
}

func (l *qLoad) fail(format string, a ...any) {
	l.mu.Lock()
	if len(l.errs) < 20 {
		l.errs = append(l.errs, fmt.Sprintf(format, a...))
	}
	l.mu.Unlock()
}

// run starts the writers and returns a function that waits for them.
func (l *qLoad) run() (wait func()) {
	var wg sync.WaitGroup
	for i := 0; i < l.writers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := &qWriter{l: l, id: i, dir: l.dirs[i%len(l.dirs)], rng: rand.New(rand.NewPCG(l.seed, uint64(i)))}
			w.run()
		}()
	}
	return wg.Wait
}

type qWriter struct {
	l     *qLoad
	id    int
	dir   string // the view directory
	own   string // the writer's own directory in it
	rng   *rand.Rand
	files []string
	subs  []string
	n     int
	buf   []byte
}

// result classifies the outcome of one call: true when the writer must
// stop (the daemon is gone).
func (w *qWriter) result(op string, n, want int, err error) (stop bool) {
	w.l.ops.Add(1)
	if err == nil && n < want {
		w.l.short.Add(1)
	}
	if err == nil {
		return false
	}
	if w.l.dead != nil && w.l.dead() {
		return true
	}
	if errors.Is(err, syscall.EDQUOT) {
		w.l.edquot.Add(1)
		return false
	}
	w.l.fail("writer %d: %s: %v", w.id, op, err)
	return true
}

// name is a new entry name, unique across loads (each has its own seed).
func (w *qWriter) name(prefix string) string {
	w.n++
	return fmt.Sprintf("%s%x.%d", prefix, w.l.seed&0xffffff, w.n)
}

// pick returns a file to work on: the folder's shared file, one of the
// writer's own files, or a new one.
func (w *qWriter) pick() string {
	switch r := w.rng.IntN(10); {
	case r < 2:
		return filepath.Join(w.dir, "shared")
	case len(w.files) < 3 || r == 2:
		p := filepath.Join(w.own, w.name("f"))
		if len(w.subs) > 0 && w.rng.IntN(2) == 0 {
			p = filepath.Join(w.subs[w.rng.IntN(len(w.subs))], w.name("f"))
		}
		w.files = append(w.files, p)
		return p
	}
	return w.files[w.rng.IntN(len(w.files))]
}

// open opens (creating) p. fd is -1 when it failed with EDQUOT (a new
// file needs room for its directory's growth) or the writer must stop.
func (w *qWriter) open(p string, flags int) (int, bool) {
	fd, err := unix.Open(p, flags|unix.O_CREAT|unix.O_CLOEXEC, 0o644)
	if err != nil {
		if errors.Is(err, syscall.EDQUOT) {
			// Not made: forget the name, so that making room does not
			// pick it.
			if i := slices.Index(w.files, p); i >= 0 {
				w.files = slices.Delete(w.files, i, i+1)
			}
		}
		return -1, w.result("open "+p, 0, 0, err)
	}
	return fd, false
}

// full tells whether the scope is full: a one-byte append to an existing
// file is refused (a new file needs room for its directory too, so it is
// refused earlier). It returns stop when the writer must stop anyway.
func (w *qWriter) full() (full, stop bool) {
	for _, p := range append([]string{filepath.Join(w.dir, "shared")}, w.files...) {
		fd, err := unix.Open(p, unix.O_WRONLY|unix.O_APPEND|unix.O_CLOEXEC, 0)
		if err != nil {
			continue // never made (its create was refused) or removed
		}
		n, err := unix.Write(fd, w.buf[:1])
		unix.Close(fd)
		if errors.Is(err, syscall.EDQUOT) {
			w.l.edquot.Add(1)
			return true, false
		}
		return false, w.result("probe append", n, 1, err)
	}
	return true, false // nothing to append to, and no room to make a file
}

func (w *qWriter) size(fd int) int64 {
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil {
		return 0
	}
	return st.Size
}

func (w *qWriter) stopped() bool {
	if w.l.stop == nil {
		return false
	}
	select {
	case <-w.l.stop:
		return true
	default:
		return false
	}
}

func (w *qWriter) run() {
	w.own = filepath.Join(w.dir, fmt.Sprintf("w%d", w.id))
	if err := os.Mkdir(w.own, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		w.result("mkdir", 0, 0, err)
		return
	}
	w.buf = make([]byte, 512<<10)
	for i := range w.buf {
		w.buf[i] = byte(i*7 + w.id)
	}
	for !w.stopped() {
		hitLimit, stop := w.step(-1)
		if stop {
			return
		}
		if hitLimit && w.l.churn {
			// Make room: shrink or remove one of the writer's files.
			if _, stop := w.step(10 + w.rng.IntN(3)); stop {
				return
			}
			continue
		}
		if hitLimit && !w.l.churn {
			// Is any room left at all?
			if full, stop := w.full(); full || stop {
				return
			}
		}
	}
}

// step does operation op (-1: a random one). hitLimit reports a short
// count or EDQUOT.
func (w *qWriter) step(op int) (hitLimit, stop bool) {
	ops := 10
	if w.l.churn {
		ops = 18
	}
	if op < 0 {
		op = w.rng.IntN(ops)
	}
	n := 1 + w.rng.IntN(len(w.buf))
	check := func(what string, got, want int, err error) (bool, bool) {
		return errors.Is(err, syscall.EDQUOT) || (err == nil && got < want), w.result(what, got, want, err)
	}
	switch op {
	case 0, 1: // append
		fd, stop := w.open(w.pick(), unix.O_WRONLY|unix.O_APPEND)
		if fd < 0 {
			return !stop, stop
		}
		defer unix.Close(fd)
		got, err := unix.Write(fd, w.buf[:n])
		return check("append", got, n, err)
	case 2: // overwrite inside the file
		p := w.pick()
		fd, stop := w.open(p, unix.O_RDWR)
		if fd < 0 {
			return !stop, stop
		}
		defer unix.Close(fd)
		size := w.size(fd)
		if size == 0 {
			return false, false
		}
		n = min(n, int(size))
		off := w.rng.Int64N(size - int64(n) + 1)
		got, err := unix.Pwrite(fd, w.buf[:n], off)
		if err == nil && got != n && (w.l.dead == nil || !w.l.dead()) {
			w.l.fail("writer %d: overwrite inside the file %s of %d bytes at %d: %d of %d bytes (size now %d)", w.id, p, size, off, got, n, w.size(fd))
		}
		return false, w.result("overwrite", got, n, err)
	case 3, 4: // pwrite past the end, leaving a hole
		fd, stop := w.open(w.pick(), unix.O_RDWR)
		if fd < 0 {
			return !stop, stop // EDQUOT: no room for a new file
		}
		defer unix.Close(fd)
		off := w.size(fd) + w.rng.Int64N(64<<10)
		got, err := unix.Pwrite(fd, w.buf[:n], off)
		return check("pwrite past EOF", got, n, err)
	case 5: // fallocate past the end
		fd, stop := w.open(w.pick(), unix.O_RDWR)
		if fd < 0 {
			return !stop, stop // EDQUOT: no room for a new file
		}
		defer unix.Close(fd)
		size := w.size(fd)
		off := max(0, size-w.rng.Int64N(8192))
		err := unix.Fallocate(fd, 0, off, int64(n))
		if err == unix.EOPNOTSUPP {
			return false, false
		}
		return check("fallocate", 0, 0, err)
	case 6: // truncate up through a handle
		fd, stop := w.open(w.pick(), unix.O_RDWR)
		if fd < 0 {
			return !stop, stop // EDQUOT: no room for a new file
		}
		defer unix.Close(fd)
		err := unix.Ftruncate(fd, w.size(fd)+int64(n))
		return check("ftruncate up", 0, 0, err)
	case 7: // truncate up by path
		p := w.pick()
		fd, stop := w.open(p, unix.O_RDONLY)
		if fd < 0 {
			return !stop, stop // EDQUOT: no room for a new file
		}
		size := w.size(fd)
		unix.Close(fd)
		err := unix.Truncate(p, size+int64(n))
		return check("truncate up", 0, 0, err)
	case 8: // copy_file_range past the end of another file
		if len(w.files) < 2 {
			return false, false
		}
		src, dst := w.files[w.rng.IntN(len(w.files))], w.files[w.rng.IntN(len(w.files))]
		if src == dst {
			return false, false
		}
		in, stop := w.open(src, unix.O_RDONLY)
		if in < 0 {
			return !stop, stop // EDQUOT: no room for a new file
		}
		defer unix.Close(in)
		out, stop := w.open(dst, unix.O_WRONLY)
		if out < 0 {
			return !stop, stop // EDQUOT: no room for a new file
		}
		defer unix.Close(out)
		ssize := w.size(in)
		if ssize == 0 {
			return false, false
		}
		offIn, offOut := int64(0), w.size(out)
		want := int(min(ssize, int64(n)))
		got, err := unix.CopyFileRange(in, &offIn, out, &offOut, want, 0)
		if err == unix.EXDEV || err == unix.EOPNOTSUPP {
			return false, false
		}
		return check("copy_file_range", got, want, err)
	case 9: // symlink or directory
		if w.rng.IntN(2) == 0 {
			d := filepath.Join(w.own, w.name("d"))
			err := unix.Mkdir(d, 0o755)
			if err == nil {
				w.subs = append(w.subs, d)
			}
			return check("mkdir", 0, 0, err)
		}
		target := strings.Repeat("t", 1+w.rng.IntN(300))
		err := unix.Symlink(target, filepath.Join(w.own, w.name("l")))
		return check("symlink", 0, 0, err)
	case 10, 11: // truncate down
		p := w.pick()
		if strings.HasSuffix(p, "shared") {
			return false, false
		}
		fd, stop := w.open(p, unix.O_RDWR)
		if fd < 0 {
			return !stop, stop // EDQUOT: no room for a new file
		}
		defer unix.Close(fd)
		size := w.size(fd)
		err := unix.Ftruncate(fd, size/(1+w.rng.Int64N(4)))
		return false, w.result("truncate down", 0, 0, err)
	case 12: // unlink
		if len(w.files) < 2 {
			return false, false
		}
		i := w.rng.IntN(len(w.files))
		p := w.files[i]
		w.files = append(w.files[:i], w.files[i+1:]...)
		err := unix.Unlink(p)
		if errors.Is(err, syscall.ENOENT) {
			return false, false // never created (its open failed)
		}
		return false, w.result("unlink", 0, 0, err)
	case 13: // rename a file (a stale path for the ledger's hints)
		if len(w.files) == 0 {
			return false, false
		}
		i := w.rng.IntN(len(w.files))
		np := filepath.Join(w.own, w.name("r"))
		err := unix.Rename(w.files[i], np)
		if errors.Is(err, syscall.ENOENT) {
			return false, false
		}
		if err == nil {
			w.files[i] = np
		}
		return false, w.result("rename", 0, 0, err)
	case 14: // rename a file over another one
		if len(w.files) < 2 {
			return false, false
		}
		i, j := w.rng.IntN(len(w.files)), w.rng.IntN(len(w.files))
		if i == j {
			return false, false
		}
		err := unix.Rename(w.files[i], w.files[j])
		if errors.Is(err, syscall.ENOENT) {
			return false, false
		}
		if err == nil {
			w.files = append(w.files[:i], w.files[i+1:]...)
		}
		return false, w.result("rename over", 0, 0, err)
	case 15, 16: // set or remove a user.* xattr of a file or directory
		p := w.own
		if len(w.files) > 0 && w.rng.IntN(3) > 0 {
			p = w.files[w.rng.IntN(len(w.files))]
		} else if len(w.subs) > 0 && w.rng.IntN(2) == 0 {
			p = w.subs[w.rng.IntN(len(w.subs))]
		}
		attr := fmt.Sprintf("user.q%d", w.rng.IntN(3))
		var err error
		if op == 15 {
			err = unix.Setxattr(p, attr, w.buf[:w.rng.IntN(3000)], 0)
		} else {
			err = unix.Removexattr(p, attr)
		}
		// ENOSPC, E2BIG: the file system's room for one inode's
		// attributes is full; ENOENT: a file whose open failed.
		if errors.Is(err, syscall.ENODATA) || errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.E2BIG) || errors.Is(err, syscall.ENOENT) {
			return false, false
		}
		return check("xattr", 0, 0, err)
	case 17: // a hard link with a long name: the directory grows
		if len(w.files) == 0 {
			return false, false
		}
		np := filepath.Join(w.own, w.name(strings.Repeat("L", 200)))
		err := unix.Link(w.files[w.rng.IntN(len(w.files))], np)
		if errors.Is(err, syscall.ENOENT) {
			return false, false
		}
		if err == nil {
			w.files = append(w.files, np)
		}
		return check("link", 0, 0, err)
	}
	return false, false
}

// TestQuotaConcurrentWriters: 8 writers grow files of two folders of one
// scope with a 100 MiB limit (appends, overwrites, pwrite past EOF,
// fallocate, truncate up by handle and by path, copy_file_range,
// symlinks) until no room is left. Sampled during the run, the bytes on
// storage never exceed the limit; at the end they equal it exactly, every
// failing call failed with EDQUOT, and the ledger equals the walk, per
// folder and for the scope.
func TestQuotaConcurrentWriters(t *testing.T) {
	e := qSetup(t)
	scope := qScope(1)
	f1, v1 := e.folder(t, scope, 1, meta.PermRW)
	f2, v2 := e.folder(t, scope, 2, meta.PermRW)
	sk := f1.key()
	if err := e.m.SetLimit(sk, qLimit, 0); err != nil {
		t.Fatal(err)
	}
	total := func() (int64, error) {
		a, err := qWalk(e.back(f1))
		if err != nil {
			return 0, err
		}
		b, err := qWalk(e.back(f2))
		return a.bytes + b.bytes, err
	}

	l := &qLoad{dirs: []string{v1, v2}, writers: 8, seed: uint64(time.Now().UnixNano())}
	done := make(chan struct{})
	var samples, maxSeen atomic.Int64
	var sampler sync.WaitGroup
	sampler.Add(1)
	go func() {
		defer sampler.Done()
		for {
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
			// The load only grows files, so a walk that is not atomic
			// never sums to more than storage held at its end.
			n, err := total()
			if err != nil {
				continue // a file appeared or went during the walk
			}
			samples.Add(1)
			if n > maxSeen.Load() {
				maxSeen.Store(n)
			}
		}
	}()
	wait := l.run()
	finished := make(chan struct{})
	go func() { wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(3 * time.Minute):
		t.Fatal("writers did not reach the limit within 3 minutes")
	}
	close(done)
	sampler.Wait()

	for _, e := range l.errs {
		t.Error(e)
	}
	if m := maxSeen.Load(); m > qLimit {
		t.Errorf("storage held %d bytes during the run, %d over the limit", m, m-qLimit)
	}
	if samples.Load() < 3 {
		t.Errorf("only %d samples taken during the run", samples.Load())
	}
	t1, t2 := qMustWalk(t, e.back(f1)), qMustWalk(t, e.back(f2))
	if got := t1.bytes + t2.bytes; got != qLimit {
		t.Errorf("at the end storage holds %d bytes, want exactly the limit %d", got, qLimit)
	}
	u := e.m.Usage(sk)
	if u.Used != t1.bytes+t2.bytes || u.UsedInodes != t1.inodes+t2.inodes {
		t.Errorf("ledger %d bytes %d inodes, storage %d bytes %d inodes", u.Used, u.UsedInodes, t1.bytes+t2.bytes, t1.inodes+t2.inodes)
	}
	for _, c := range []struct {
		f  qFolderOf
		tr qTruth
	}{{f1, t1}, {f2, t2}} {
		if fu := e.m.FolderUsage(c.f.id); fu.Used != c.tr.bytes || fu.UsedInodes != c.tr.inodes {
			t.Errorf("folder %s: ledger %d bytes %d inodes, storage %d bytes %d inodes", c.f.id, fu.Used, fu.UsedInodes, c.tr.bytes, c.tr.inodes)
		}
	}
	if l.edquot.Load() < int64(l.writers) {
		t.Errorf("%d EDQUOT answers for %d writers", l.edquot.Load(), l.writers)
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(v1, &sfs); err != nil {
		t.Fatal(err)
	}
	if sfs.Blocks*uint64(sfs.Frsize) != qLimit || sfs.Bfree != 0 || sfs.Bavail != 0 {
		t.Errorf("statfs of a full scope: %d blocks of %d, %d free, %d available", sfs.Blocks, sfs.Frsize, sfs.Bfree, sfs.Bavail)
	}
	t.Logf("%d operations, %d EDQUOT, %d short counts, %d samples (max %d bytes)", l.ops.Load(), l.edquot.Load(), l.short.Load(), samples.Load(), maxSeen.Load())
}

// TestQuotaDdAndDf: df in a view shows the scope's limit and free bytes;
// dd of 200 MiB into a scope with a 100 MiB limit stops at exactly the
// limit with "Disk quota exceeded". Without a limit, df shows the volume.
func TestQuotaDdAndDf(t *testing.T) {
	e := qSetup(t)
	f, view := e.folder(t, qScope(1), 1, meta.PermRW)
	_, free := e.folder(t, qScope(2), 1, meta.PermRW)
	if err := e.m.SetLimit(f.key(), qLimit, 0); err != nil {
		t.Fatal(err)
	}
	df := func(p string) (size, used, avail int64) {
		t.Helper()
		out, err := exec.Command("df", "-B1", "--output=size,used,avail", p).CombinedOutput()
		if err != nil {
			t.Fatalf("df %s: %v: %s", p, err, out)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		fields := strings.Fields(lines[len(lines)-1])
		if len(fields) != 3 {
			t.Fatalf("df output %q", out)
		}
		var v [3]int64
		for i, s := range fields {
			if v[i], err = strconv.ParseInt(s, 10, 64); err != nil {
				t.Fatalf("df output %q", out)
			}
		}
		return v[0], v[1], v[2]
	}
	if _, err := exec.LookPath("df"); err != nil {
		t.Skip("needs df")
	}
	if size, used, avail := df(view); size != qLimit || used != 0 || avail != qLimit {
		t.Errorf("df of an empty scope: size %d used %d avail %d, want %d 0 %d", size, used, avail, qLimit, qLimit)
	}
	if err := os.WriteFile(filepath.Join(view, "ten"), make([]byte, 10*qMiB), 0o644); err != nil {
		t.Fatal(err)
	}
	root := qDirBytes(t, e.back(f)) // the folder root counts too
	if size, used, avail := df(view); size != qLimit || used != 10*qMiB+root || avail != 90*qMiB-root {
		t.Errorf("df after 10 MiB: size %d used %d avail %d (root %d)", size, used, avail, root)
	}
	out, err := exec.Command("df", "-h", view).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "100M") {
		t.Errorf("df -h of the view shows no 100M: %v\n%s", err, out)
	}
	// Without a limit the view shows the volume's own figures.
	var vs, ws unix.Statfs_t
	if err := unix.Statfs(e.vol, &vs); err != nil {
		t.Fatal(err)
	}
	if err := unix.Statfs(free, &ws); err != nil {
		t.Fatal(err)
	}
	if vs.Blocks != ws.Blocks || vs.Files != ws.Files {
		t.Errorf("statfs without a limit: %d blocks %d files, the volume has %d, %d", ws.Blocks, ws.Files, vs.Blocks, vs.Files)
	}

	// An rw view without the delete right can still shrink.
	if err := os.Remove(filepath.Join(view, "ten")); !errors.Is(err, syscall.EPERM) {
		t.Errorf("rm in an rw view without the delete right: %v, want EPERM", err)
	}
	if err := os.Truncate(filepath.Join(view, "ten"), 0); err != nil {
		t.Fatal(err)
	}
	dd := exec.Command("dd", "if=/dev/zero", "of="+filepath.Join(view, "big"), "bs=1M", "count=200")
	out, err = dd.CombinedOutput()
	if err == nil {
		t.Errorf("dd of 200 MiB into a 100 MiB scope succeeded: %s", out)
	}
	if !strings.Contains(string(out), "Disk quota exceeded") {
		t.Errorf("dd did not report EDQUOT: %s", out)
	}
	st, err := os.Stat(filepath.Join(e.back(f), "big"))
	if err != nil || st.Size() != qLimit-root {
		t.Errorf("dd stored %v bytes (%v), want exactly %d (the limit less the folder root)", st.Size(), err, qLimit-root)
	}
	if size, used, avail := df(view); size != qLimit || used != qLimit || avail != 0 {
		t.Errorf("df of a full scope: size %d used %d avail %d", size, used, avail)
	}
}

// qCheck runs a Check of one folder and returns the report. Handles are
// released asynchronously after close(2) returns, and Check leaves what
// is still in use alone (Busy): it is run again until nothing is busy.
func qCheck(t *testing.T, e *qEnv, f qFolderOf, repair bool) *quota.Report {
	t.Helper()
	dir, err := vfs.OpenFolder(e.vol, f.rel)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	for i := 0; ; i++ {
		rep, err := e.m.Check(context.Background(), f.key(), []quota.FolderRoot{{FolderID: f.id, Dir: dir}}, quota.CheckOptions{Repair: repair})
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		if rep.Busy == 0 || i == 100 {
			return rep
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestQuotaCrossFolder: rename and link across folders of one scope and
// of two scopes get EXDEV; inside a folder a hard link counts once.
func TestQuotaCrossFolder(t *testing.T) {
	e := qSetup(t)
	a1, va1 := e.folder(t, qScope(1), 1, meta.PermWD)
	_, va2 := e.folder(t, qScope(1), 2, meta.PermWD)
	_, vb1 := e.folder(t, qScope(2), 1, meta.PermWD)
	if err := os.WriteFile(filepath.Join(va1, "x"), make([]byte, 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(va1, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, dst := range []string{va2, vb1} {
		for _, name := range []string{"x", "d"} {
			if err := unix.Rename(filepath.Join(va1, name), filepath.Join(dst, name)); err != unix.EXDEV {
				t.Errorf("rename %s to %s: %v, want EXDEV", name, dst, err)
			}
		}
		if err := unix.Link(filepath.Join(va1, "x"), filepath.Join(dst, "y")); err != unix.EXDEV {
			t.Errorf("link to %s: %v, want EXDEV", dst, err)
		}
		if err := unix.Renameat2(unix.AT_FDCWD, filepath.Join(va1, "x"), unix.AT_FDCWD, filepath.Join(dst, "x"), unix.RENAME_EXCHANGE); err != unix.EXDEV && err != unix.ENOENT {
			t.Errorf("rename exchange to %s: %v, want EXDEV", dst, err)
		}
	}
	if err := os.Link(filepath.Join(va1, "x"), filepath.Join(va1, "d", "x2")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(va1, "x"), filepath.Join(va1, "d", "x3")); err != nil {
		t.Fatal(err)
	}
	u := e.m.FolderUsage(a1.id)
	tr := qMustWalk(t, e.back(a1))
	if u.Used != 1000+qDirBytes(t, e.back(a1), "d") || u.Used != tr.bytes || u.UsedInodes != tr.inodes {
		t.Errorf("after link and rename: ledger %d bytes %d inodes, storage %+v", u.Used, u.UsedInodes, tr)
	}
	if u := e.m.Usage(quota.ScopeKey{Volume: qVolume, ID: qScope(2)}); u.Used != 0 || u.UsedInodes != 0 {
		t.Errorf("scope 2 charged %+v", u)
	}
}

// TestQuotaLowerLimit: a limit lowered below the usage blocks growth
// only: writes past EOF, truncate up, fallocate and symlinks get EDQUOT;
// overwriting, rm and truncate down work, and growth resumes below the
// limit.
func TestQuotaLowerLimit(t *testing.T) {
	e := qSetup(t)
	f, v := e.folder(t, qScope(1), 1, meta.PermWD)
	sk := f.key()
	if err := e.m.SetLimit(sk, 10*qMiB, 0); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(v, "f")
	if err := os.WriteFile(p, make([]byte, 8*qMiB), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := e.m.SetLimit(sk, 4*qMiB, 0); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(p, unix.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if _, err := unix.Pwrite(fd, []byte("x"), 8*qMiB); err != unix.EDQUOT {
		t.Errorf("append over a lowered limit: %v, want EDQUOT", err)
	}
	if err := unix.Ftruncate(fd, 9*qMiB); err != unix.EDQUOT {
		t.Errorf("truncate up: %v, want EDQUOT", err)
	}
	if err := unix.Fallocate(fd, 0, 0, 9*qMiB); err != unix.EDQUOT {
		t.Errorf("fallocate: %v, want EDQUOT", err)
	}
	if err := os.Symlink("target", filepath.Join(v, "l")); !errors.Is(err, syscall.EDQUOT) {
		t.Errorf("symlink: %v, want EDQUOT", err)
	}
	if n, err := unix.Pwrite(fd, make([]byte, qMiB), qMiB); n != qMiB || err != nil {
		t.Errorf("overwrite inside the file: %d %v", n, err)
	}
	// A directory takes room too (its own size and its parent's growth).
	if err := os.Mkdir(filepath.Join(v, "d"), 0o755); !errors.Is(err, syscall.EDQUOT) {
		t.Errorf("mkdir over the byte limit: %v, want EDQUOT", err)
	}
	if err := unix.Ftruncate(fd, 6*qMiB); err != nil {
		t.Errorf("truncate down: %v", err)
	}
	root := qDirBytes(t, e.back(f)) // the folder root is charged its size
	if u := e.m.Usage(sk); u.Used != 6*qMiB+root {
		t.Errorf("after truncate down: %d bytes", u.Used)
	}
	if _, err := unix.Pwrite(fd, []byte("x"), 6*qMiB); err != unix.EDQUOT {
		t.Errorf("append still over the limit: %v, want EDQUOT", err)
	}
	unix.Close(fd)
	if err := os.Remove(p); err != nil {
		t.Errorf("rm over the limit: %v", err)
	}
	waitQuota(t, e.m, sk, root, 0)
	// Below the limit again: a write is cut at exactly the limit, which
	// the folder root counts in.
	fd, err = unix.Open(filepath.Join(v, "g"), unix.O_CREAT|unix.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if n, err := unix.Write(fd, make([]byte, 5*qMiB)); int64(n) != 4*qMiB-root || err != nil {
		t.Errorf("write of 5 MiB under a 4 MiB limit: %d %v, want a short count of 4 MiB less the root's %d", n, err, root)
	}
	if _, err := unix.Write(fd, []byte("x")); err != unix.EDQUOT {
		t.Errorf("next write: %v, want EDQUOT", err)
	}
	if tr := qMustWalk(t, e.back(f)); tr.bytes != 4*qMiB {
		t.Errorf("storage holds %d bytes", tr.bytes)
	}
}

// waitQuota waits up to 5s for a scope's usage (handles are released
// after close returns).
func waitQuota(t *testing.T, m *quota.Manager, sk quota.ScopeKey, bytes, inodes int64) {
	t.Helper()
	var u quota.Usage
	for i := 0; i < 500; i++ {
		if u = m.Usage(sk); u.Used == bytes && u.UsedInodes == inodes {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("usage %d bytes %d inodes, want %d, %d", u.Used, u.UsedInodes, bytes, inodes)
}

// TestQuotaCheckRepair: files added, grown and removed behind the
// daemon's back are found by Check and fixed by Check with repair.
func TestQuotaCheckRepair(t *testing.T) {
	e := qSetup(t)
	f, v := e.folder(t, qScope(1), 1, meta.PermWD)
	for i, n := range []int{1000, 2000, 3000} {
		if err := os.WriteFile(filepath.Join(v, fmt.Sprintf("f%d", i)), make([]byte, n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if rep := qCheck(t, e, f, false); rep.Drift() {
		t.Errorf("drift after writes through the view: %+v", rep.Findings)
	}
	back := e.back(f)
	if err := os.WriteFile(filepath.Join(back, "added"), make([]byte, 12345), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("behind/the/back", filepath.Join(back, "link")); err != nil {
		t.Fatal(err)
	}
	fh, err := os.OpenFile(filepath.Join(back, "f0"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fh.Write(make([]byte, 500))
	fh.Close()
	if err := os.Remove(filepath.Join(back, "f2")); err != nil {
		t.Fatal(err)
	}
	before := e.m.FolderUsage(f.id)
	rep := qCheck(t, e, f, false)
	if !rep.Drift() || rep.Counts[quota.ProblemUnknown] != 2 || rep.Counts[quota.ProblemSize] != 1 || rep.Counts[quota.ProblemGone] != 1 {
		t.Errorf("check found %v (busy %d), want 2 unknown, 1 size, 1 gone: %+v", rep.Counts, rep.Busy, rep.Findings)
	}
	if after := e.m.FolderUsage(f.id); after != before {
		t.Errorf("a check without repair changed the usage: %+v -> %+v", before, after)
	}
	rep = qCheck(t, e, f, true)
	if rep.Repaired < 4 {
		t.Errorf("repair fixed %d findings: %v", rep.Repaired, rep.Counts)
	}
	tr := qMustWalk(t, back)
	if u := e.m.FolderUsage(f.id); u.Used != tr.bytes || u.UsedInodes != tr.inodes {
		t.Errorf("after repair: ledger %d bytes %d inodes, storage %+v", u.Used, u.UsedInodes, tr)
	}
	if rep := qCheck(t, e, f, false); rep.Drift() {
		t.Errorf("drift after repair: %v", rep.Counts)
	}

	// The folder opener the daemon hands to the ledger tells a removed
	// folder from a volume that is not there.
	open := vfs.QuotaFolderOpener(func(name string) (string, bool) { return e.vol, name == qVolume })
	if d, err := open(f.key(), f.id); err != nil {
		t.Errorf("open folder: %v", err)
	} else {
		d.Close()
	}
	gone := qFolderSpec(qScope(1), 99)
	if _, err := open(gone.key(), gone.id); !errors.Is(err, iofs.ErrNotExist) {
		t.Errorf("removed folder: %v, want ErrNotExist", err)
	}
	if _, err := vfs.OpenFolder(filepath.Join(e.dir, "nothing"), gone.rel); err == nil || errors.Is(err, iofs.ErrNotExist) {
		t.Errorf("folder of a missing volume: %v, want an error other than ErrNotExist", err)
	}
	if _, err := vfs.OpenFolder(e.dir, gone.rel); err == nil || errors.Is(err, iofs.ErrNotExist) {
		t.Errorf("folder of a directory without version.txt: %v, want an error other than ErrNotExist", err)
	}
	if _, err := open(quota.ScopeKey{Volume: "other", ID: f.scope}, f.id); err == nil || errors.Is(err, iofs.ErrNotExist) {
		t.Errorf("folder of an unknown volume: %v, want an error other than ErrNotExist", err)
	}
}

// TestQuotaInodeLimit: with an inode limit, creates beyond it get EDQUOT
// (files, directories, symlinks, fifos), statfs shows the inode limit,
// and removing an entry makes room again.
func TestQuotaInodeLimit(t *testing.T) {
	e := qSetup(t)
	f, v := e.folder(t, qScope(1), 1, meta.PermWD)
	sk := f.key()
	if err := e.m.SetLimit(sk, 0, 5); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(v, "a"), []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(v, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("a", filepath.Join(v, "d", "l")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(v, "p"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(v, "d", "b"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for what, err := range map[string]error{
		"create":  os.WriteFile(filepath.Join(v, "c"), nil, 0o644),
		"mkdir":   os.Mkdir(filepath.Join(v, "e"), 0o755),
		"symlink": os.Symlink("a", filepath.Join(v, "m")),
		"mkfifo":  unix.Mkfifo(filepath.Join(v, "q"), 0o644),
	} {
		if !errors.Is(err, syscall.EDQUOT) {
			t.Errorf("%s beyond the inode limit: %v, want EDQUOT", what, err)
		}
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(v, &sfs); err != nil {
		t.Fatal(err)
	}
	if sfs.Files != 5 || sfs.Ffree != 0 {
		t.Errorf("statfs: %d files, %d free; want 5, 0", sfs.Files, sfs.Ffree)
	}
	if u, want := e.m.Usage(sk), 2+qDirBytes(t, e.back(f), "d"); u.UsedInodes != 5 || u.Used != want {
		t.Errorf("usage %+v, want 5 inodes, %d bytes (2 of files and symlinks, the directories)", u, want)
	}
	if err := os.Remove(filepath.Join(v, "p")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(v, "c"), nil, 0o644); err != nil {
		t.Errorf("create after a removal: %v", err)
	}
	if tr := qMustWalk(t, e.back(f)); tr.inodes != 5 {
		t.Errorf("storage holds %d objects", tr.inodes)
	}
}

// TestQuotaWritesReachDaemon: every write on an rw view passes the
// daemon (no passthrough, no writeback cache): the ledger has counted each
// write's bytes by the time write(2) returns, before the file is closed.
func TestQuotaWritesReachDaemon(t *testing.T) {
	e := qSetup(t)
	f, v := e.folder(t, qScope(1), 1, meta.PermRW)
	fd, err := unix.Open(filepath.Join(v, "f"), unix.O_CREAT|unix.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	buf := make([]byte, 64<<10)
	root := qDirBytes(t, e.back(f)) // charged since the create
	for i := 1; i <= 32; i++ {
		if n, err := unix.Write(fd, buf); n != len(buf) || err != nil {
			t.Fatalf("write %d: %d %v", i, n, err)
		}
		if u := e.m.FolderUsage(f.id); u.Used != root+int64(i*len(buf)) {
			t.Fatalf("after write %d the ledger has %d bytes, want %d: the write did not pass the daemon", i, u.Used, root+int64(i*len(buf)))
		}
	}
	// And the limit is enforced on this open file at once.
	if err := e.m.SetLimit(f.key(), root+32*64<<10+100, 0); err != nil {
		t.Fatal(err)
	}
	if n, err := unix.Write(fd, buf); n != 100 || err != nil {
		t.Errorf("write at the limit: %d %v, want 100", n, err)
	}
	if _, err := unix.Write(fd, buf); err != unix.EDQUOT {
		t.Errorf("write beyond the limit: %v, want EDQUOT", err)
	}
}
