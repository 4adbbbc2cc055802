package fs

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/meta"
	"github.com/vfolder/vfolder/quota"
)

// testMount mounts an FS over a volume in a temp dir; cleanup closes it and
// fails the test if a mount is left below the temp dir.
func testMount(t *testing.T) (*FS, string) {
	t.Helper()
	return testMountWith(t, nil)
}

// testMountWith is testMount with options changed by opt.
func testMountWith(t *testing.T, opt func(*Options)) (*FS, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount FUSE")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("needs /dev/fuse: %v", err)
	}
	dir := t.TempDir()
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	os.Mkdir(filepath.Join(dir, "vol"), 0o755)
	// Registered first, so it runs last: also after a failed Mount.
	t.Cleanup(func() {
		if left := mountsUnder(dir); len(left) > 0 {
			t.Errorf("mounts left: %v", left)
			for _, m := range left {
				unix.Unmount(m, unix.MNT_DETACH)
			}
		}
	})
	o := Options{MountPoint: mnt, StorageUID: 1100, StorageGID: 1100, Logger: zerolog.Nop()}
	o.Tuning.IoUring = testIoUring
	if opt != nil {
		opt(&o)
	}
	f, err := Mount(o)
	if err != nil {
		t.Fatalf("Mount: %v", err)
	}
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	if o.Tuning.IoUring && testIoUring {
		// The whole suite runs over io_uring: a mount that silently
		// kept reading /dev/fuse would test the wrong transport.
		if err := f.server.IoUringError(); err != nil {
			t.Fatalf("io_uring asked for but not in use: %v", err)
		}
		t.Cleanup(func() {
			if f.IoUringRequests() == 0 {
				t.Errorf("no request was served through io_uring")
			}
		})
	}
	return f, dir
}

func mountsUnder(dir string) []string {
	fh, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return []string{err.Error()}
	}
	defer fh.Close()
	var out []string
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && (fields[4] == dir || strings.HasPrefix(fields[4], dir+"/")) {
			out = append(out, fields[4])
		}
	}
	return out
}

func mountInfoLines(t *testing.T) []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(string(b), "\n")
}

// testFolder makes a folder directory and a spec for it.
func testFolder(t *testing.T, dir string, n int, name string) ViewSpec {
	t.Helper()
	scope := strings.Repeat("5", 32)
	id := fmt.Sprintf("%032x", n)
	rel := meta.FolderRelPath(meta.ScopeID{Kind: meta.KindUser, UUID: scope}, id)
	if err := os.MkdirAll(filepath.Join(dir, "vol", rel), 0o755); err != nil {
		t.Fatal(err)
	}
	return ViewSpec{
		Namespace: NSSessions, Key: "s1", Name: name,
		VolumeName: "vol", VolumePath: filepath.Join(dir, "vol"), FolderRel: rel,
		Mode: meta.PermWD, UID: 1000, GID: 1000,
		FolderID: id, Scope: meta.ScopeID{Kind: meta.KindUser, UUID: scope},
	}
}

func TestFsViewTable(t *testing.T) {
	f, dir := testMount(t)
	mnt := f.MountPoint()
	a := testFolder(t, dir, 1, "a")

	for _, top := range []string{"", "sessions", "users", "projects"} {
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(mnt, top), &st); err != nil {
			t.Fatal(err)
		}
		if st.Mode != syscall.S_IFDIR|0o700 || st.Uid != 0 || st.Gid != 0 {
			t.Errorf("%q: mode %o owner %d:%d, want dir 0700 root", top, st.Mode, st.Uid, st.Gid)
		}
	}
	// The mount is private: no shared peer group in its mountinfo line.
	for _, line := range mountInfoLines(t) {
		if fields := strings.Fields(line); len(fields) > 6 && fields[4] == mnt {
			if strings.Contains(line, " shared:") || !strings.Contains(line, " - fuse.vfolder vfolder ") {
				t.Errorf("mountinfo: %s", line)
			}
		}
	}
	viewPath := filepath.Join(mnt, "sessions", "s1", "a")
	if _, err := os.Stat(viewPath); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("view before AddView: %v", err)
	}
	if err := f.AddView(a); err != nil {
		t.Fatal(err)
	}
	if err := f.AddView(a); err != nil {
		t.Errorf("identical AddView: %v", err)
	}
	b := a
	b.Mode = meta.PermRO
	if err := f.AddView(b); !errors.Is(err, meta.ErrExists) {
		t.Errorf("different spec at the same place: %v, want ErrExists", err)
	}
	bad := a
	bad.Name = "x"
	bad.Subpath = "../.."
	if err := f.AddView(bad); !errors.Is(err, meta.ErrInvalid) {
		t.Errorf("subpath with ..: %v, want ErrInvalid", err)
	}
	missing := a
	missing.Name = "y"
	missing.Subpath = "nope"
	if err := f.AddView(missing); !errors.Is(err, meta.ErrNotFound) {
		t.Errorf("missing subpath: %v, want ErrNotFound", err)
	}
	// A subpath that is a symlink in the folder is not followed.
	os.Symlink("/etc", filepath.Join(dir, "vol", a.FolderRel, "link"))
	viaLink := a
	viaLink.Name = "z"
	viaLink.Subpath = "link"
	if err := f.AddView(viaLink); !errors.Is(err, meta.ErrInvalid) {
		t.Errorf("symlink subpath: %v, want ErrInvalid", err)
	}
	otherVolPath := a
	otherVolPath.Name = "w"
	otherVolPath.VolumePath = dir
	if err := f.AddView(otherVolPath); !errors.Is(err, meta.ErrInvalid) {
		t.Errorf("volume at a second path: %v, want ErrInvalid", err)
	}

	fi, err := os.Stat(viewPath)
	if err != nil || !fi.IsDir() {
		t.Fatalf("view after AddView: %v", err)
	}
	u := testFolder(t, dir, 2, "data")
	u.Namespace, u.Key = NSUsers, strings.Repeat("ab", 16)
	p := testFolder(t, dir, 3, "shared")
	p.Namespace, p.Key = NSProjects, strings.Repeat("cd", 16)
	for _, s := range []ViewSpec{p, u} {
		if err := f.AddView(s); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for _, s := range f.Views() {
		got = append(got, s.Namespace+"/"+s.Key+"/"+s.Name)
	}
	want := []string{"projects/" + p.Key + "/shared", "sessions/s1/a", "users/" + u.Key + "/data"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("Views = %q, want %q", got, want)
	}
	ents, _ := os.ReadDir(filepath.Join(mnt, "sessions"))
	if len(ents) != 1 || ents[0].Name() != "s1" {
		t.Errorf("sessions lists %v", ents)
	}

	if err := f.RemoveView("sessions", "s1", "nope"); !errors.Is(err, meta.ErrNotFound) {
		t.Errorf("RemoveView absent: %v", err)
	}
	if err := f.RemoveView("sessions", "s1", "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(viewPath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("view after RemoveView: %v", err)
	}
	if _, err := os.Stat(filepath.Join(mnt, "sessions", "s1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("empty key dir after RemoveView: %v", err)
	}
	// The place is free again, with another mode.
	if err := f.AddView(b); err != nil {
		t.Fatalf("AddView after RemoveView: %v", err)
	}
	if err := os.WriteFile(filepath.Join(viewPath, "f"), nil, 0o644); !errors.Is(err, syscall.EROFS) {
		t.Errorf("write into the re-added ro view: %v, want EROFS", err)
	}
	// Changes to the synthetic levels are refused.
	if err := os.Mkdir(filepath.Join(mnt, "sessions", "new"), 0o755); !errors.Is(err, syscall.EPERM) {
		t.Errorf("mkdir in sessions: %v", err)
	}
	if err := os.Remove(viewPath); !errors.Is(err, syscall.EPERM) {
		t.Errorf("rmdir of a view: %v", err)
	}
	if err := os.Rename(viewPath, filepath.Join(mnt, "sessions", "s1", "b")); !errors.Is(err, syscall.EPERM) {
		t.Errorf("rename of a view: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.AddView(a); !errors.Is(err, ErrClosed) {
		t.Errorf("AddView after Close: %v", err)
	}
}

// testLedger opens a quota ledger on a badger database in a temp dir; it
// is closed at cleanup (after a mount registered later is closed).
func testLedger(t *testing.T) *quota.Manager {
	t.Helper()
	db, err := meta.OpenBadger(t.TempDir(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	m, err := quota.Open(db.DB(), zerolog.Nop(), quota.Options{})
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("quota Close: %v", err)
		}
		db.Close()
	})
	return m
}

// TestFsQuotaHook proves that growth on an rw view passes the daemon's
// quota ledger (no passthrough, no writeback) and that its answers are
// enforced: writes are cut short, truncate and fallocate fail with
// EDQUOT, and statfs shows the scope.
func TestFsQuotaHook(t *testing.T) {
	m := testLedger(t)
	f, dir := testMountWith(t, func(o *Options) { o.Quota = m })
	s := testFolder(t, dir, 1, "q")
	s.Mode = meta.PermRW
	s.RWCanDelete = true
	sk := quota.ScopeKey{Volume: s.VolumeName, ID: s.Scope}
	if err := f.AddView(s); err != nil {
		t.Fatal(err)
	}
	noIDs := s
	noIDs.Name, noIDs.FolderID = "noids", ""
	if err := f.AddView(noIDs); !errors.Is(err, meta.ErrInvalid) {
		t.Errorf("rw view without a folder id under a quota: %v, want ErrInvalid", err)
	}
	view := filepath.Join(f.MountPoint(), "sessions", "s1", "q")
	back := filepath.Join(dir, "vol", s.FolderRel)
	// Directories are charged their size (the folder root included): the
	// figures below are the files' and symlinks' bytes on top of that.
	dirs := func() int64 {
		n := int64(0)
		for _, d := range []string{back, filepath.Join(back, "d")} {
			if st, err := os.Lstat(d); err == nil {
				n += st.Size()
			}
		}
		return n
	}
	used := func() (int64, int64) {
		u := m.Usage(sk)
		if fu := m.FolderUsage(s.FolderID); fu.Used != u.Used || fu.UsedInodes != u.UsedInodes {
			t.Errorf("folder usage %+v, scope usage %+v (one folder)", fu, u)
		}
		return u.Used - dirs(), u.UsedInodes
	}
	// limit sets the scope's limit to bytes more than the directories.
	limit := func(bytes int64) {
		t.Helper()
		if err := m.SetLimit(sk, dirs()+bytes, 0); err != nil {
			t.Fatal(err)
		}
	}

	fd, err := unix.Open(filepath.Join(view, "f"), unix.O_CREAT|unix.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	limit(1000)
	if n, err := unix.Write(fd, make([]byte, 600)); n != 600 || err != nil {
		t.Fatalf("write 600: %d %v", n, err)
	}
	if b, i := used(); b != 600 || i != 1 {
		t.Errorf("after create+write: %d bytes %d inodes, want 600 bytes 1 inode", b, i)
	}
	// Rewriting inside the file grows nothing.
	if n, err := unix.Pwrite(fd, make([]byte, 600), 0); n != 600 || err != nil {
		t.Fatalf("rewrite: %d %v", n, err)
	}
	// 400 bytes are left: a 600-byte append is cut to 400, the next fails.
	if n, err := unix.Pwrite(fd, make([]byte, 600), 600); n != 400 || err != nil {
		t.Errorf("append over the limit: %d %v, want 400 nil", n, err)
	}
	if _, err := unix.Pwrite(fd, []byte("x"), 1000); err != unix.EDQUOT {
		t.Errorf("write at the limit: %v, want EDQUOT", err)
	}
	if err := unix.Ftruncate(fd, 2000); err != unix.EDQUOT {
		t.Errorf("truncate up: %v, want EDQUOT", err)
	}
	if err := unix.Fallocate(fd, 0, 0, 4096); err != unix.EDQUOT {
		t.Errorf("fallocate: %v, want EDQUOT", err)
	}
	if err := unix.Fallocate(fd, unix.FALLOC_FL_KEEP_SIZE, 0, 1000); err != nil {
		t.Errorf("fallocate KEEP_SIZE inside the file (no logical growth): %v", err)
	}
	if err := unix.Fallocate(fd, unix.FALLOC_FL_KEEP_SIZE, 0, 4096); err != unix.EOPNOTSUPP {
		t.Errorf("fallocate KEEP_SIZE past the end: %v, want EOPNOTSUPP (space the quota does not count)", err)
	}
	if st, err := os.Stat(filepath.Join(back, "f")); err != nil || st.Size() != 1000 {
		t.Errorf("backing size %v %v, want 1000", st.Size(), err)
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(view, &sfs); err != nil {
		t.Fatal(err)
	}
	if sfs.Blocks != uint64(dirs()+1000)/uint64(sfs.Frsize) || sfs.Bfree != 0 || sfs.Bavail != 0 {
		t.Errorf("statfs at the limit: blocks %d free %d avail %d of %d bytes", sfs.Blocks, sfs.Bfree, sfs.Bavail, sfs.Frsize)
	}
	// Shrinking gives bytes back; then growth works again.
	if err := unix.Ftruncate(fd, 100); err != nil {
		t.Fatal(err)
	}
	if b, _ := used(); b != 100 {
		t.Errorf("after truncate to 100: %d bytes", b)
	}
	if err := unix.Ftruncate(fd, 300); err != nil {
		t.Errorf("truncate up within the limit: %v", err)
	}
	// Creates need room for their directory's growth too.
	if err := os.Symlink("0123456789", filepath.Join(view, "l")); err != unix.EDQUOT && !errors.Is(err, unix.EDQUOT) {
		t.Fatalf("symlink without room for the directory's growth: %v", err)
	}
	limit(1 << 20)
	if err := os.Symlink("0123456789", filepath.Join(view, "l")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(view, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if b, i := used(); b != 310 || i != 3 {
		t.Errorf("after symlink+mkdir: %d bytes %d inodes, want 310 bytes 3 inodes", b, i)
	}
	unix.Close(fd)
	if err := os.Remove(filepath.Join(view, "l")); err != nil {
		t.Fatal(err)
	}
	if b, i := used(); b != 300 || i != 2 {
		t.Errorf("after unlink of the symlink: %d bytes %d inodes, want 300 bytes 2 inodes", b, i)
	}
	// copy_file_range into the file is cut to the limit too.
	src, err := os.OpenFile(filepath.Join(view, "src"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	limit(350)
	if _, err := src.Write(make([]byte, 40)); err != nil {
		t.Fatal(err)
	}
	dst, err := unix.Open(filepath.Join(view, "f"), unix.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dst)
	offIn, offOut := int64(0), int64(300)
	if n, err := unix.CopyFileRange(int(src.Fd()), &offIn, dst, &offOut, 40, 0); n != 10 || err != nil {
		t.Errorf("copy_file_range past the limit: %d %v, want 10", n, err)
	}
	if b, _ := used(); b != 350 {
		t.Errorf("after copy_file_range: %d bytes, want 350", b)
	}
	// A hard link counts once; unlinking one name releases nothing, the
	// last one everything (once no handle holds the file open for
	// writing: the kernel sends the release after close returns).
	src.Close()
	waitUsage(t, m, sk, dirs()+350, 3)
	limit(1 << 20)
	if err := os.Link(filepath.Join(view, "src"), filepath.Join(view, "src2")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(view, "src")); err != nil {
		t.Fatal(err)
	}
	if b, i := used(); b != 350 || i != 3 {
		t.Errorf("after unlinking one of two links: %d bytes %d inodes, want 350, 3", b, i)
	}
	if err := os.Remove(filepath.Join(view, "src2")); err != nil {
		t.Fatal(err)
	}
	if b, i := used(); b != 310 || i != 2 {
		t.Errorf("after unlinking the last link: %d bytes %d inodes, want 310, 2", b, i)
	}
	// A file unlinked while open for writing keeps its charge until the
	// last handle is closed.
	h, err := os.Create(filepath.Join(view, "open"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Write(make([]byte, 30)); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(view, "open")); err != nil {
		t.Fatal(err)
	}
	if b, i := used(); b != 340 || i != 3 {
		t.Errorf("unlinked but open: %d bytes %d inodes, want 340, 3", b, i)
	}
	h.Close()
	waitUsage(t, m, sk, dirs()+310, 2)

	// An O_TMPFILE file counts while it is open and goes with its last
	// handle when it was never linked.
	tfd, err := unix.Open(view, unix.O_TMPFILE|unix.O_RDWR, 0o600)
	if err != nil {
		t.Fatalf("O_TMPFILE: %v", err)
	}
	if n, err := unix.Write(tfd, make([]byte, 25)); n != 25 || err != nil {
		t.Fatalf("write to the tmpfile: %d %v", n, err)
	}
	if b, i := used(); b != 335 || i != 3 {
		t.Errorf("with an open tmpfile: %d bytes %d inodes, want 335, 3", b, i)
	}
	unix.Close(tfd)
	waitUsage(t, m, sk, dirs()+310, 2)
}

// TestFsQuotaSubpath: a view of a subpath charges the same inodes as a
// view of the whole folder (keys are relative to the folder root), with
// path hints relative to the folder root.
func TestFsQuotaSubpath(t *testing.T) {
	m := testLedger(t)
	f, dir := testMountWith(t, func(o *Options) { o.Quota = m })
	whole := testFolder(t, dir, 1, "whole")
	if err := os.MkdirAll(filepath.Join(dir, "vol", whole.FolderRel, "sub", "deeper"), 0o755); err != nil {
		t.Fatal(err)
	}
	sub := whole
	sub.Name, sub.Subpath = "sub", "sub/deeper"
	for _, s := range []ViewSpec{whole, sub} {
		if err := f.AddView(s); err != nil {
			t.Fatal(err)
		}
	}
	if got := f.sessions["s1"].views[place{NSSessions, "s1", "sub"}].q.hint([]string{"a"}, "b"); got != "sub/deeper/a/b" {
		t.Errorf("hint in the subpath view: %q", got)
	}
	sk := quota.ScopeKey{Volume: whole.VolumeName, ID: whole.Scope}
	vs := filepath.Join(f.MountPoint(), "sessions", "s1", "sub")
	vw := filepath.Join(f.MountPoint(), "sessions", "s1", "whole")
	if err := os.WriteFile(filepath.Join(vs, "x"), make([]byte, 77), 0o644); err != nil {
		t.Fatal(err)
	}
	// The subpath view's root is a directory of the folder, not its root:
	// charged its size and counted as an inode, like the file.
	deeper := filepath.Join(dir, "vol", whole.FolderRel, "sub", "deeper")
	st, err := os.Stat(deeper)
	if err != nil {
		t.Fatal(err)
	}
	waitUsage(t, m, sk, 77+st.Size(), 2)
	if err := os.Remove(filepath.Join(vw, "sub", "deeper", "x")); err != nil {
		t.Fatal(err)
	}
	if st, err = os.Stat(deeper); err != nil {
		t.Fatal(err)
	}
	waitUsage(t, m, sk, st.Size(), 1)
}

// waitUsage waits up to 5s for the scope's usage to reach bytes and inodes
// (handles are released asynchronously after close).
func waitUsage(t *testing.T, m *quota.Manager, sk quota.ScopeKey, bytes, inodes int64) {
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

// TestFsInodeMapped covers the second numbering scheme: a file system
// mounted inside a folder has another device, so its inodes are mapped.
func TestFsInodeMapped(t *testing.T) {
	f, dir := testMount(t)
	a := testFolder(t, dir, 1, "a")
	sub := filepath.Join(dir, "vol", a.FolderRel, "sub")
	os.Mkdir(sub, 0o755)
	if err := unix.Mount("tmpfs", sub, "tmpfs", 0, "size=16m"); err != nil {
		t.Skipf("tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(sub, unix.MNT_DETACH) })
	b := a
	b.Name = "b"
	for _, s := range []ViewSpec{a, b} {
		if err := f.AddView(s); err != nil {
			t.Fatal(err)
		}
	}
	va := filepath.Join(f.MountPoint(), "sessions", "s1", "a")
	vb := filepath.Join(f.MountPoint(), "sessions", "s1", "b")
	if err := os.WriteFile(filepath.Join(va, "sub", "x"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(va, "sub", "x"), filepath.Join(va, "sub", "y")); err != nil {
		t.Fatal(err)
	}
	var x, y, bx unix.Stat_t
	unix.Lstat(filepath.Join(va, "sub", "x"), &x)
	unix.Lstat(filepath.Join(va, "sub", "y"), &y)
	unix.Lstat(filepath.Join(vb, "sub", "x"), &bx)
	if x.Ino != y.Ino || x.Ino&mappedBit == 0 {
		t.Errorf("mapped hard links: %x %x", x.Ino, y.Ino)
	}
	if bx.Ino == x.Ino {
		t.Errorf("two views share mapped ino %x", x.Ino)
	}
	var host unix.Stat_t
	unix.Lstat(filepath.Join(sub, "x"), &host)
	if host.Uid != 1100 || x.Uid != 1000 {
		t.Errorf("owners: storage %d, view %d", host.Uid, x.Uid)
	}
	ents, err := os.ReadDir(filepath.Join(va, "sub"))
	if err != nil || len(ents) != 2 {
		t.Fatalf("readdir: %v %v", ents, err)
	}
	dfd, err := unix.Open(filepath.Join(va, "sub"), unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dfd)
	buf := make([]byte, 4096)
	n, _ := unix.Getdents(dfd, buf)
	found := 0
	for off := 0; off < n; {
		de := buf[off:]
		ino := *(*uint64)(unsafe.Pointer(&de[0]))
		reclen := int(*(*uint16)(unsafe.Pointer(&de[16])))
		name := strings.TrimRight(string(de[19:reclen]), "\x00")
		if name == "x" || name == "y" {
			found++
			if ino != x.Ino {
				t.Errorf("d_ino of %s %x, st_ino %x", name, ino, x.Ino)
			}
		}
		off += reclen
	}
	if found != 2 {
		t.Errorf("getdents found %d of x, y", found)
	}
}
