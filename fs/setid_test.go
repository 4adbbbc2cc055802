package fs

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/meta"
)

// Tests of the mode and ownership rules: set-id bits and chown.

// statOf lstat-s p or fails the test.
func statOf(t *testing.T, p string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatalf("lstat %s: %v", p, err)
	}
	return st
}

// wantPerm checks the permission bits of p on storage and in the view:
// the view shows what is stored.
func wantPerm(t *testing.T, back, view, name string, want uint32) {
	t.Helper()
	st := statOf(t, filepath.Join(back, name))
	if st.Mode&0o7777 != want {
		t.Errorf("%s stored with mode %o, want %o", name, st.Mode&0o7777, want)
	}
	if vst := statOf(t, filepath.Join(view, name)); vst.Mode != st.Mode {
		t.Errorf("%s shown with mode %o, stored %o", name, vst.Mode, st.Mode)
	}
}

// TestFsSetID: no set-user-ID bit and no set-group-ID bit on anything but
// a directory is stored through a view, however it is asked for (create,
// mknod, O_TMPFILE, chmod), and a regular file changed through a view
// loses the bits it got behind the daemon's back, whoever changes it (the
// test runs as root).
func TestFsSetID(t *testing.T) {
	f, dir := testMount(t)
	s := testFolder(t, dir, 1, "s")
	if err := f.AddView(s); err != nil {
		t.Fatal(err)
	}
	view := filepath.Join(f.MountPoint(), "sessions", "s1", "s")
	back := filepath.Join(dir, "vol", s.FolderRel)
	in := func(name string) string { return filepath.Join(view, name) }

	fd, err := unix.Open(in("created"), unix.O_CREAT|unix.O_WRONLY|unix.O_EXCL, 0o6755)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	wantPerm(t, back, view, "created", 0o755)

	if err := unix.Mknod(in("mknod"), unix.S_IFREG|0o4755, 0); err != nil {
		t.Fatal(err)
	}
	wantPerm(t, back, view, "mknod", 0o755)
	if err := unix.Mkfifo(in("fifo"), 0o6644); err != nil {
		t.Fatal(err)
	}
	wantPerm(t, back, view, "fifo", 0o644)

	tfd, err := unix.Open(view, unix.O_TMPFILE|unix.O_WRONLY, 0o6711)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(tfd), unix.AT_FDCWD, in("tmpfile"), unix.AT_SYMLINK_FOLLOW); err != nil {
		t.Fatal(err)
	}
	unix.Close(tfd)
	wantPerm(t, back, view, "tmpfile", 0o711)

	// chmod, as cp -p, tar and rsync do after copying: it succeeds, the
	// set-id bits are not stored.
	for _, m := range []uint32{0o6755, 0o4711, 0o2755, 0o2644, 0o7777} {
		if err := unix.Chmod(in("created"), m); err != nil {
			t.Fatalf("chmod %o: %v", m, err)
		}
		wantPerm(t, back, view, "created", m&^0o6000)
	}

	// Directories: S_ISGID is kept (it only passes the storage gid on),
	// S_ISUID is not; mkdir gives S_ISGID only by inheritance.
	if err := unix.Mkdir(in("d"), 0o2755); err != nil {
		t.Fatal(err)
	}
	wantPerm(t, back, view, "d", 0o755)
	if err := unix.Chmod(in("d"), 0o6775); err != nil {
		t.Fatal(err)
	}
	wantPerm(t, back, view, "d", 0o2775)
	if err := unix.Mkdir(in("d/sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	wantPerm(t, back, view, "d/sub", 0o2755)
	if fd, err := unix.Open(in("d/f"), unix.O_CREAT|unix.O_WRONLY, 0o2755); err != nil {
		t.Fatal(err)
	} else {
		unix.Close(fd)
	}
	wantPerm(t, back, view, "d/f", 0o755)
	if st := statOf(t, filepath.Join(back, "d/f")); st.Gid != 1100 {
		t.Errorf("file in a set-group-ID directory has gid %d, want the storage gid", st.Gid)
	}

	// Files given set-id bits on storage: every change through the view
	// clears both, also set-group-ID without group execute.
	changes := []struct {
		name string
		do   func(p string) error
	}{
		{"write", func(p string) error {
			fd, err := unix.Open(p, unix.O_WRONLY, 0)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			_, err = unix.Pwrite(fd, []byte("x"), 0)
			return err
		}},
		{"append", func(p string) error {
			fd, err := unix.Open(p, unix.O_WRONLY|unix.O_APPEND, 0)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			_, err = unix.Write(fd, []byte("x"))
			return err
		}},
		{"truncate", func(p string) error { return unix.Truncate(p, 1) }},
		{"O_TRUNC", func(p string) error {
			fd, err := unix.Open(p, unix.O_WRONLY|unix.O_TRUNC, 0)
			if err == nil {
				unix.Close(fd)
			}
			return err
		}},
		{"fallocate", func(p string) error {
			fd, err := unix.Open(p, unix.O_WRONLY, 0)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			return unix.Fallocate(fd, 0, 0, 4096)
		}},
		{"copy_file_range", func(p string) error {
			src, err := unix.Open(in("created"), unix.O_RDONLY, 0)
			if err != nil {
				return err
			}
			defer unix.Close(src)
			dst, err := unix.Open(p, unix.O_WRONLY, 0)
			if err != nil {
				return err
			}
			defer unix.Close(dst)
			_, err = unix.CopyFileRange(src, nil, dst, nil, 1, 0)
			return err
		}},
		{"chown", func(p string) error { return unix.Chown(p, 1000, 1000) }},
		{"chown -1", func(p string) error { return unix.Chown(p, -1, -1) }},
	}
	if err := os.WriteFile(in("created"), []byte("0123456789"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range changes {
		for _, m := range []uint32{0o4755, 0o2755, 0o2644, 0o6711} {
			name := "behind-" + c.name + "-" + strconv.FormatUint(uint64(m), 8)
			p := filepath.Join(back, name)
			if err := os.WriteFile(p, []byte("abc"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(p, 1100, 1100); err != nil {
				t.Fatal(err)
			}
			if err := unix.Chmod(p, m); err != nil {
				t.Fatal(err)
			}
			// The view shows what is stored.
			if vst := statOf(t, in(name)); vst.Mode&0o7777 != m {
				t.Errorf("%s: shown with mode %o, stored %o", name, vst.Mode&0o7777, m)
			}
			if err := c.do(in(name)); err != nil {
				t.Errorf("%s on a %o file: %v", c.name, m, err)
				continue
			}
			if st := statOf(t, p); st.Mode&0o7777 != m&^0o6000 {
				t.Errorf("after %s through the view a %o file is %o on storage, want %o", c.name, m, st.Mode&0o7777, m&^0o6000)
			}
		}
	}
}

// TestFsChown: chown and chgrp in rw and wd views succeed by default and
// keep the storage owner (the view shows its own), changing the ctime as
// a chown does; a view with RefuseChown answers EPERM unless the owner
// is the view's own; a ro view answers EROFS.
func TestFsChown(t *testing.T) {
	f, dir := testMount(t)
	s := testFolder(t, dir, 1, "wd")
	rw := s
	rw.Name, rw.Mode = "rw", meta.PermRW
	refuse := s
	refuse.Name, refuse.RefuseChown = "refuse", true
	ro := s
	ro.Name, ro.Mode = "ro", meta.PermRO
	for _, sp := range []ViewSpec{s, rw, refuse, ro} {
		if err := f.AddView(sp); err != nil {
			t.Fatal(err)
		}
	}
	view := func(name string) string { return filepath.Join(f.MountPoint(), "sessions", "s1", name) }
	back := filepath.Join(dir, "vol", s.FolderRel)
	if err := os.WriteFile(filepath.Join(view("wd"), "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(view("wd"), "d"), 0o775); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(view("wd"), "d"), 0o775|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("f", filepath.Join(view("wd"), "l")); err != nil {
		t.Fatal(err)
	}

	for _, v := range []string{"wd", "rw"} {
		for _, name := range []string{"f", "d", "l"} {
			p := filepath.Join(view(v), name)
			before := statOf(t, filepath.Join(back, name))
			time.Sleep(20 * time.Millisecond) // past the kernel's timestamp granularity
			for _, id := range [][2]int{{0, 0}, {2000, 3000}, {-1, 4000}, {5000, -1}, {1000, 1000}, {-1, -1}} {
				if err := unix.Lchown(p, id[0], id[1]); err != nil {
					t.Errorf("%s view: lchown %s %d:%d: %v", v, name, id[0], id[1], err)
				}
				if st := statOf(t, p); st.Uid != 1000 || st.Gid != 1000 {
					t.Errorf("%s view: %s shown owned by %d:%d after chown %d:%d, want the view's 1000:1000", v, name, st.Uid, st.Gid, id[0], id[1])
				}
			}
			after := statOf(t, filepath.Join(back, name))
			if after.Uid != 1100 || after.Gid != 1100 {
				t.Errorf("%s view: %s stored owned by %d:%d after chown, want 1100:1100", v, name, after.Uid, after.Gid)
			}
			if after.Ctim == before.Ctim {
				t.Errorf("%s view: chown %s left the ctime as it was", v, name)
			}
			if after.Mode != before.Mode {
				t.Errorf("%s view: chown %s changed the mode %o -> %o", v, name, before.Mode, after.Mode)
			}
		}
	}
	// A file whose owner is not the storage owner (made behind the
	// daemon) gets it: ownership on storage stays unified.
	if err := unix.Chown(filepath.Join(back, "f"), 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := unix.Chown(filepath.Join(view("wd"), "f"), 0, 0); err != nil {
		t.Fatal(err)
	}
	if st := statOf(t, filepath.Join(back, "f")); st.Uid != 1100 || st.Gid != 1100 {
		t.Errorf("chown of a root-owned file through a view: stored owned by %d:%d, want 1100:1100", st.Uid, st.Gid)
	}

	// RefuseChown: another owner is EPERM, the view's own works.
	rp := filepath.Join(view("refuse"), "f")
	for _, id := range [][2]int{{0, 0}, {2000, -1}, {-1, 2000}} {
		if err := unix.Chown(rp, id[0], id[1]); err != unix.EPERM {
			t.Errorf("refusing view: chown %d:%d = %v, want EPERM", id[0], id[1], err)
		}
	}
	if err := unix.Chown(rp, 1000, 1000); err != nil {
		t.Errorf("refusing view: chown to the view's owner: %v", err)
	}
	// ro: EROFS, whatever the owner.
	for _, id := range [][2]int{{0, 0}, {1000, 1000}} {
		if err := unix.Chown(filepath.Join(view("ro"), "f"), id[0], id[1]); err != unix.EROFS {
			t.Errorf("ro view: chown %d:%d = %v, want EROFS", id[0], id[1], err)
		}
	}
}
