package e2e

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/meta"
)

// fsMode is one column of the matrix.
type fsMode struct {
	name      string
	perm      meta.Permission
	canDelete bool
}

var fsModes = []fsMode{
	{"ro", meta.PermRO, false},
	{"rw", meta.PermRW, false},
	{"rw+delete", meta.PermRW, true},
	{"wd", meta.PermWD, false},
}

// fsPopulate fills a folder directly on storage, owned by the storage
// owner, as earlier sessions would have left it.
func fsPopulate(t *testing.T, dir string) {
	t.Helper()
	files := []string{"f", "t", "t2", "g", "r1", "r2", "n1", "x1", "x2", "u", "h", "w", "fa", "cp", "u2"}
	for _, name := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("hello"), 0o666); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"d", "e", "e3", "e4"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o777); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, "d", "inner"), []byte("in"), 0o666)
	if err := os.Symlink("f", filepath.Join(dir, "l")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(filepath.Join(dir, "f"), "user.keep", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil {
			os.Lchown(p, fsStorageUID, fsStorageGID)
			if fi.Mode()&os.ModeSymlink == 0 {
				// Undo the test process umask: modes as listed above.
				os.Chmod(p, fi.Mode().Perm()|0o066)
			}
		}
		return nil
	})
}

// fsOp is one mutating operation of the matrix and its errno per mode
// (missing = success).
type fsOp struct {
	name string
	do   func(v string) error
	want map[string]syscall.Errno
}

func fsOpenClose(p string, flags int) error {
	fd, err := unix.Open(p, flags|unix.O_CLOEXEC, 0o644)
	if err == nil {
		unix.Close(fd)
	}
	return err
}

// fsWithWritable opens p for writing and runs fn on the descriptor.
func fsWithWritable(p string, fn func(fd int) error) error {
	fd, err := unix.Open(p, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return fn(fd)
}

func fsOps() []fsOp {
	rofs := func(extra map[string]syscall.Errno) map[string]syscall.Errno {
		m := map[string]syscall.Errno{"ro": syscall.EROFS}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	noDelete := rofs(map[string]syscall.Errno{"rw": syscall.EPERM})
	ts := []unix.Timespec{{Sec: 42}, {Sec: 43}}
	return []fsOp{
		{"create", func(v string) error { return fsOpenClose(v+"/new", unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY) }, rofs(nil)},
		{"mkdir", func(v string) error { return unix.Mkdir(v+"/newdir", 0o755) }, rofs(nil)},
		{"mknod fifo", func(v string) error { return unix.Mknod(v+"/fifo", unix.S_IFIFO|0o644, 0) }, rofs(nil)},
		{"mknod socket", func(v string) error { return unix.Mknod(v+"/sock", unix.S_IFSOCK|0o644, 0) }, rofs(nil)},
		{"mknod chardev", func(v string) error { return unix.Mknod(v+"/chr", unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3))) },
			rofs(map[string]syscall.Errno{"rw": syscall.EPERM, "rw+delete": syscall.EPERM, "wd": syscall.EPERM})},
		{"symlink", func(v string) error { return unix.Symlink("f", v+"/newlink") }, rofs(nil)},
		{"link", func(v string) error { return unix.Link(v+"/h", v+"/h2") }, rofs(nil)},
		{"open O_WRONLY", func(v string) error { return fsOpenClose(v+"/f", unix.O_WRONLY) }, rofs(nil)},
		{"open O_RDWR", func(v string) error { return fsOpenClose(v+"/f", unix.O_RDWR) }, rofs(nil)},
		{"open O_RDONLY|O_TRUNC", func(v string) error { return fsOpenClose(v+"/t", unix.O_RDONLY|unix.O_TRUNC) }, rofs(nil)},
		{"open O_WRONLY|O_TRUNC", func(v string) error { return fsOpenClose(v+"/t", unix.O_WRONLY|unix.O_TRUNC) }, rofs(nil)},
		{"truncate", func(v string) error { return unix.Truncate(v+"/t2", 1) }, rofs(nil)},
		{"write", func(v string) error {
			return fsWithWritable(v+"/w", func(fd int) error { _, err := unix.Pwrite(fd, []byte("more"), 5); return err })
		}, rofs(nil)},
		{"fallocate", func(v string) error {
			return fsWithWritable(v+"/fa", func(fd int) error { return unix.Fallocate(fd, 0, 0, 8192) })
		}, rofs(nil)},
		{"copy_file_range", func(v string) error {
			src, err := unix.Open(v+"/f", unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				return err
			}
			defer unix.Close(src)
			return fsWithWritable(v+"/cp", func(fd int) error {
				off := int64(5)
				_, err := unix.CopyFileRange(src, nil, fd, &off, 5, 0)
				return err
			})
		}, rofs(nil)},
		{"chmod", func(v string) error { return unix.Chmod(v+"/f", 0o640) }, rofs(nil)},
		{"chown to view owner", func(v string) error { return unix.Chown(v+"/f", 1000, 1000) }, rofs(nil)},
		{"chown -1", func(v string) error { return unix.Chown(v+"/f", -1, -1) }, rofs(nil)},
		// Ownership is unified: chown to another owner is a successful
		// no-op (ViewSpec.RefuseChown unset).
		{"chown to root", func(v string) error { return unix.Chown(v+"/f", 0, -1) }, rofs(nil)},
		{"chgrp to other", func(v string) error { return unix.Chown(v+"/f", -1, 2000) }, rofs(nil)},
		{"utimens", func(v string) error { return unix.UtimesNano(v+"/f", ts) }, rofs(nil)},
		{"utimens symlink", func(v string) error { return unix.UtimesNanoAt(unix.AT_FDCWD, v+"/l", ts, unix.AT_SYMLINK_NOFOLLOW) }, rofs(nil)},
		{"setxattr user", func(v string) error { return unix.Setxattr(v+"/f", "user.new", []byte("1"), 0) }, rofs(nil)},
		{"removexattr user", func(v string) error { return unix.Removexattr(v+"/f", "user.keep") }, rofs(nil)},
		{"setxattr trusted", func(v string) error { return unix.Setxattr(v+"/f", "trusted.x", []byte("1"), 0) },
			rofs(map[string]syscall.Errno{"rw": syscall.EOPNOTSUPP, "rw+delete": syscall.EOPNOTSUPP, "wd": syscall.EOPNOTSUPP})},
		{"rename", func(v string) error { return unix.Rename(v+"/g", v+"/g-moved") }, rofs(nil)},
		{"rename into subdir", func(v string) error { return unix.Rename(v+"/n1", v+"/d/n1") }, rofs(nil)},
		{"rename over file", func(v string) error { return unix.Rename(v+"/r1", v+"/r2") }, noDelete},
		{"rename over empty dir", func(v string) error { return unix.Rename(v+"/e3", v+"/e4") }, noDelete},
		{"rename NOREPLACE", func(v string) error {
			return unix.Renameat2(unix.AT_FDCWD, v+"/d/inner", unix.AT_FDCWD, v+"/inner2", unix.RENAME_NOREPLACE)
		}, rofs(nil)},
		// The kernel answers EEXIST for an existing target before the
		// request reaches the file system, in every mode.
		{"rename NOREPLACE existing", func(v string) error {
			return unix.Renameat2(unix.AT_FDCWD, v+"/x1", unix.AT_FDCWD, v+"/x2", unix.RENAME_NOREPLACE)
		}, map[string]syscall.Errno{"ro": syscall.EEXIST, "rw": syscall.EEXIST, "rw+delete": syscall.EEXIST, "wd": syscall.EEXIST}},
		{"rename EXCHANGE", func(v string) error {
			return unix.Renameat2(unix.AT_FDCWD, v+"/x1", unix.AT_FDCWD, v+"/x2", unix.RENAME_EXCHANGE)
		}, rofs(nil)},
		{"unlink", func(v string) error { return unix.Unlink(v + "/u") }, noDelete},
		{"unlink symlink", func(v string) error { return unix.Unlink(v + "/l") }, noDelete},
		{"rmdir", func(v string) error { return unix.Rmdir(v + "/e") }, noDelete},
	}
}

// fsCheckReads asserts that reading works in every mode.
func fsCheckReads(t *testing.T, v string) {
	t.Helper()
	if b, err := os.ReadFile(v + "/f"); err != nil || string(b) != "hello" {
		t.Errorf("read f: %q %v", b, err)
	}
	if b, err := os.ReadFile(v + "/d/inner"); err != nil || string(b) != "in" {
		t.Errorf("read d/inner: %q %v", b, err)
	}
	if s, err := os.Readlink(v + "/l"); err != nil || s != "f" {
		t.Errorf("readlink l: %q %v", s, err)
	}
	ents, err := os.ReadDir(v)
	if err != nil || len(ents) != 20 {
		t.Errorf("readdir: %d entries, %v", len(ents), err)
	}
	buf := make([]byte, 16)
	if n, err := unix.Getxattr(v+"/f", "user.keep", buf); err != nil || string(buf[:n]) != "v" {
		t.Errorf("getxattr: %q %v", buf[:n], err)
	}
	if _, err := unix.Getxattr(v+"/f", "security.selinux", buf); err != unix.ENODATA {
		t.Errorf("getxattr security.*: %v, want ENODATA", err)
	}
	if n, err := unix.Listxattr(v+"/f", buf); err != nil || string(buf[:n]) != "user.keep\x00" {
		t.Errorf("listxattr: %q %v", buf[:n], err)
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(v, &sfs); err != nil || sfs.Blocks == 0 {
		t.Errorf("statfs: %+v %v", sfs, err)
	}
	fd, err := unix.Open(v+"/f", unix.O_RDONLY, 0)
	if err != nil {
		t.Fatalf("open ro: %v", err)
	}
	defer unix.Close(fd)
	if off, err := unix.Seek(fd, 0, unix.SEEK_DATA); err != nil || off != 0 {
		t.Errorf("SEEK_DATA: %d %v", off, err)
	}
	if err := unix.Flock(fd, unix.LOCK_SH); err != nil {
		t.Errorf("flock: %v", err)
	}
	lk := unix.Flock_t{Type: unix.F_RDLCK}
	if err := unix.FcntlFlock(uintptr(fd), unix.F_SETLK, &lk); err != nil {
		t.Errorf("fcntl read lock: %v", err)
	}
	if out, err := fsHelper(t, "mmap-read", v+"/f"); err != nil || out != "hello" {
		t.Errorf("mmap read: %q %v", out, err)
	}
}

// TestFsModes asserts the exact errno of every mutating operation in ro,
// rw (with and without the delete right) and wd views, run as root: the
// daemon enforces the mode whatever the caller may do.
func TestFsModes(t *testing.T) {
	e := fsSetup(t)
	for _, m := range fsModes {
		t.Run(m.name, func(t *testing.T) {
			rel := e.folder(t)
			back := filepath.Join(e.volume, rel)
			fsPopulate(t, back)
			s := e.spec(rel, "m-"+strings.ReplaceAll(m.name, "+", "-"), m.perm)
			s.RWCanDelete = m.canDelete
			v := e.add(t, s)
			fsCheckReads(t, v)
			for _, op := range fsOps() {
				err := op.do(v)
				want := op.want[m.name]
				var got syscall.Errno
				if err != nil && !errors.As(err, &got) {
					t.Errorf("%s: %v (not an errno)", op.name, err)
					continue
				}
				if got != want {
					t.Errorf("%s: errno %d (%v), want %d (%v)", op.name, got, err, want, want)
				}
			}
			// A ro view changed nothing on storage.
			if m.perm == meta.PermRO {
				if b, _ := os.ReadFile(filepath.Join(back, "t")); string(b) != "hello" {
					t.Errorf("ro view changed t on storage: %q", b)
				}
				names, _ := os.ReadDir(back)
				if len(names) != 20 {
					t.Errorf("ro view changed the folder: %d entries", len(names))
				}
			}
		})
	}
}

// TestFsModesUnprivileged runs the same rules as uid 1000 through a bind
// mount of the view, as a container would.
func TestFsModesUnprivileged(t *testing.T) {
	e := fsSetup(t)
	for _, m := range fsModes {
		t.Run(m.name, func(t *testing.T) {
			rel := e.folder(t)
			fsPopulate(t, filepath.Join(e.volume, rel))
			s := e.spec(rel, "u-"+strings.ReplaceAll(m.name, "+", "-"), m.perm)
			s.RWCanDelete = m.canDelete
			b := e.bind(t, e.add(t, s))
			out, err := fsRunAs(t, 1000, 1000, "cd "+b+" && cat f && echo new > mine")
			switch {
			case m.perm == meta.PermRO && (err == nil || !strings.Contains(out, "Read-only file system")):
				t.Errorf("ro write as uid 1000: %v %q", err, out)
			case m.perm != meta.PermRO && err != nil:
				t.Errorf("write as uid 1000: %v %q", err, out)
			}
			if !strings.HasPrefix(out, "hello") {
				t.Errorf("read as uid 1000: %q", out)
			}
			out, err = fsRunAs(t, 1000, 1000, "rm "+b+"/u2")
			switch {
			case m.perm == meta.PermRO && !strings.Contains(out, "Read-only file system"):
				t.Errorf("ro unlink: %v %q", err, out)
			case m.name == "rw" && !strings.Contains(out, "Operation not permitted"):
				t.Errorf("rw unlink without delete right: %v %q", err, out)
			case m.canDelete || m.perm == meta.PermWD:
				if err != nil {
					t.Errorf("unlink: %v %q", err, out)
				}
			}
		})
	}
}
