package volume

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/meta"
)

const (
	testUID = 1100
	testGID = 1100
)

var (
	owner   = meta.ScopeID{Kind: meta.KindUser, UUID: "2b1a7c4e5d3f4a8e9c0b1f2e3d4c5b6a"}
	folder1 = "0123456789abcdef0123456789abcdef"
	folder2 = "0123ffffffffffffffffffffffffffff" // same aa/bb as folder1
)

func openTemp(t *testing.T) (*Volume, string) {
	t.Helper()
	dir := t.TempDir()
	v, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return v, dir
}

func ownerOf(t *testing.T, p string) (uid, gid uint32, mode os.FileMode) {
	t.Helper()
	st, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	s := st.Sys().(*syscall.Stat_t)
	return s.Uid, s.Gid, st.Mode()
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (chown to the storage uid)")
	}
}

func TestEnsureVersion(t *testing.T) {
	requireRoot(t)
	v, dir := openTemp(t)
	if err := os.Mkdir(filepath.Join(dir, "lost+found"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := v.EnsureVersion(testUID, testGID, false); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "version.txt"))
	if err != nil || string(b) != "3" {
		t.Fatalf("version.txt = %q, %v", b, err)
	}
	if uid, gid, mode := ownerOf(t, filepath.Join(dir, "version.txt")); uid != testUID || gid != testGID || mode.Perm() != 0o644 {
		t.Errorf("version.txt owner %d:%d mode %v", uid, gid, mode)
	}
	if err := v.EnsureVersion(testUID, testGID, false); err != nil {
		t.Errorf("second EnsureVersion: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, versionTmpFile)); !os.IsNotExist(err) {
		t.Errorf("temporary file left behind: %v", err)
	}
	// A trailing newline written by hand is fine.
	if err := os.WriteFile(filepath.Join(dir, "version.txt"), []byte("3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := v.EnsureVersion(testUID, testGID, false); err != nil {
		t.Errorf("version \"3\\n\": %v", err)
	}
}

func TestEnsureVersionRefuses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(dir string) error
		want  error
		text  string
	}{
		{"other version", func(d string) error { return os.WriteFile(filepath.Join(d, "version.txt"), []byte("2"), 0o644) }, ErrLayout, `says "2"`},
		{"not empty", func(d string) error { return os.Mkdir(filepath.Join(d, "somedir"), 0o755) }, ErrLayout, `"somedir"`},
		{"symlink", func(d string) error {
			target := filepath.Join(d, "..", "elsewhere")
			if err := os.WriteFile(target, []byte("3"), 0o644); err != nil {
				return err
			}
			return os.Symlink(target, filepath.Join(d, "version.txt"))
		}, ErrUnsafe, "symlink"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			dir := filepath.Join(base, "vol")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := tc.setup(dir); err != nil {
				t.Fatal(err)
			}
			v, err := Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer v.Close()
			err = v.EnsureVersion(os.Geteuid(), os.Getegid(), false)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
				t.Errorf("EnsureVersion = %v; want %v mentioning %s", err, tc.want, tc.text)
			}
			if tc.name == "not empty" {
				if _, err := os.Stat(filepath.Join(dir, "version.txt")); !os.IsNotExist(err) {
					t.Errorf("version.txt written into a non-empty volume")
				}
			}
		})
	}
}

func TestCreateFolder(t *testing.T) {
	requireRoot(t)
	v, dir := openTemp(t)
	old := unix.Umask(0o077)
	defer unix.Umask(old)
	if err := v.CreateFolder(owner, folder1, testUID, testGID); err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(dir, owner.UUID, "01", "23", folder1[4:])
	if got := v.FolderPath(owner, folder1); got != want {
		t.Errorf("FolderPath = %q; want %q", got, want)
	}
	for _, p := range []string{filepath.Join(dir, owner.UUID), filepath.Join(dir, owner.UUID, "01"), filepath.Join(dir, owner.UUID, "01", "23"), want} {
		uid, gid, mode := ownerOf(t, p)
		if uid != testUID || gid != testGID || mode != os.ModeDir|0o755 {
			t.Errorf("%s: owner %d:%d mode %v; want %d:%d drwxr-xr-x", p, uid, gid, mode, testUID, testGID)
		}
	}
	if err := v.CreateFolder(owner, folder1, testUID, testGID); !errors.Is(err, os.ErrExist) {
		t.Errorf("second CreateFolder = %v; want ErrExist", err)
	}
	if err := v.CreateFolder(owner, folder2, testUID, testGID); err != nil {
		t.Errorf("sibling in the same aa/bb: %v", err)
	}
	if ok, err := v.FolderExists(owner, folder2); !ok || err != nil {
		t.Errorf("FolderExists = %v, %v", ok, err)
	}
	if ok, err := v.FolderExists(owner, "ffffffffffffffffffffffffffffffff"); ok || err != nil {
		t.Errorf("FolderExists(missing) = %v, %v", ok, err)
	}
	for _, bad := range []string{"", "0123", "0123456789ABCDEF0123456789ABCDEF", "../3456789abcdef0123456789abcdef0", "01234567-89ab-cdef-0123-456789abcdef"} {
		if err := v.CreateFolder(owner, bad, testUID, testGID); !errors.Is(err, ErrInvalid) {
			t.Errorf("CreateFolder(%q) = %v; want ErrInvalid", bad, err)
		}
	}
	if err := v.CreateFolder(meta.ScopeID{Kind: "group", UUID: owner.UUID}, folder1, 0, 0); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad owner: %v", err)
	}
}

func TestCreateFolderRefusesSymlinkedLevel(t *testing.T) {
	v, dir := openTemp(t)
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(dir, owner.UUID)); err != nil {
		t.Fatal(err)
	}
	err := v.CreateFolder(owner, folder1, os.Geteuid(), os.Getegid())
	if !errors.Is(err, ErrUnsafe) {
		t.Errorf("CreateFolder through a symlinked scope dir = %v; want ErrUnsafe", err)
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Errorf("created %d entries outside the volume", len(ents))
	}
	if _, err := v.OpenFolder(owner, folder1); !errors.Is(err, ErrUnsafe) && !errors.Is(err, os.ErrNotExist) {
		t.Errorf("OpenFolder = %v", err)
	}
}

// buildTree fills dir with files, subdirectories, read-only parts and
// symlinks pointing outside (at outside).
func buildTree(t *testing.T, dir, outside string) (entries int) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 5; i++ {
		sub := filepath.Join(dir, fmt.Sprintf("d%d", i))
		must(os.MkdirAll(filepath.Join(sub, "x", "y"), 0o755))
		entries += 3
		for j := 0; j < 20; j++ {
			must(os.WriteFile(filepath.Join(sub, "x", fmt.Sprintf("f%d", j)), []byte("data"), 0o644))
			entries++
		}
		must(os.WriteFile(filepath.Join(sub, "x", "y", "ro"), []byte("r"), 0o400))
		entries++
	}
	must(os.Symlink(outside, filepath.Join(dir, "link-dir")))
	must(os.Symlink(filepath.Join(outside, "keep"), filepath.Join(dir, "d0", "link-file")))
	must(os.Symlink("/", filepath.Join(dir, "d1", "x", "link-root")))
	must(unix.Mkfifo(filepath.Join(dir, "fifo"), 0o600))
	entries += 4
	// Read-only directories, and one without any permission.
	must(os.Chmod(filepath.Join(dir, "d2", "x"), 0o555))
	must(os.Chmod(filepath.Join(dir, "d3", "x", "y"), 0o000))
	must(os.Chmod(filepath.Join(dir, "d4"), 0o500))
	return entries
}

func newOutside(t *testing.T) string {
	t.Helper()
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "keep"), []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(outside, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	return outside
}

func checkOutside(t *testing.T, outside string) {
	t.Helper()
	if b, err := os.ReadFile(filepath.Join(outside, "keep")); err != nil || string(b) != "precious" {
		t.Errorf("file outside the folder damaged: %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(outside, "sub")); err != nil {
		t.Errorf("directory outside the folder damaged: %v", err)
	}
}

func openFdCount(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func TestRemoveFolder(t *testing.T) {
	v, dir := openTemp(t)
	uid, gid := os.Geteuid(), os.Getegid()
	if err := v.EnsureVersion(uid, gid, false); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{folder1, folder2} {
		if err := v.CreateFolder(owner, id, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	outside := newOutside(t)
	root := v.FolderPath(owner, folder1)
	entries := buildTree(t, root, outside)

	fds := openFdCount(t)
	var last int64
	var calls int
	err := v.RemoveFolder(context.Background(), owner, folder1, func(n int64) { last = n; calls++ })
	if err != nil {
		t.Fatal(err)
	}
	if got := openFdCount(t); got != fds {
		t.Errorf("open descriptors %d -> %d", fds, got)
	}
	if last != int64(entries)+1 || calls == 0 {
		t.Errorf("progress reported %d removed in %d calls; want %d", last, calls, entries+1)
	}
	if _, err := os.Lstat(root); !os.IsNotExist(err) {
		t.Errorf("folder still there: %v", err)
	}
	checkOutside(t, outside)
	// The sibling keeps scope/aa/bb alive.
	if ok, err := v.FolderExists(owner, folder2); !ok || err != nil {
		t.Fatalf("sibling folder damaged: %v %v", ok, err)
	}
	if err := v.RemoveFolder(context.Background(), owner, folder2, nil); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 || ents[0].Name() != "version.txt" {
		t.Errorf("volume after removing every folder holds %v; want only version.txt", ents)
	}
	// Removing a folder that is gone is fine.
	if err := v.RemoveFolder(context.Background(), owner, folder1, nil); err != nil {
		t.Errorf("RemoveFolder of a missing folder: %v", err)
	}
}

func TestRemoveFolderDeepTree(t *testing.T) {
	v, _ := openTemp(t)
	uid, gid := os.Geteuid(), os.Getegid()
	if err := v.CreateFolder(owner, folder1, uid, gid); err != nil {
		t.Fatal(err)
	}
	f, err := v.OpenFolder(owner, folder1)
	if err != nil {
		t.Fatal(err)
	}
	// 3000 levels of "dd": the path is far longer than PATH_MAX, so only
	// descriptor-relative calls can create or remove it.
	const depth = 3000
	cur, err := unix.Dup(int(f.Fd()))
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < depth; i++ {
		if err := unix.Mkdirat(cur, "dd", 0o755); err != nil {
			t.Fatal(err)
		}
		fd, err := unix.Openat(cur, "dd", unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if i%100 == 0 {
			fileFd, err := unix.Openat(fd, "f", unix.O_CREAT|unix.O_WRONLY, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			unix.Close(fileFd)
		}
		unix.Close(cur)
		cur = fd
	}
	unix.Close(cur)
	fds := openFdCount(t)
	var removed int64
	if err := v.RemoveFolder(context.Background(), owner, folder1, func(n int64) { removed = n }); err != nil {
		t.Fatal(err)
	}
	if want := int64(depth + depth/100 + 1); removed != want {
		t.Errorf("removed %d entries; want %d", removed, want)
	}
	if got := openFdCount(t); got != fds {
		t.Errorf("open descriptors %d -> %d", fds, got)
	}
	if ok, err := v.FolderExists(owner, folder1); ok || err != nil {
		t.Errorf("deep folder still there: %v %v", ok, err)
	}
}

func TestRemoveFolderResumes(t *testing.T) {
	v, dir := openTemp(t)
	uid, gid := os.Geteuid(), os.Getegid()
	if err := v.CreateFolder(owner, folder1, uid, gid); err != nil {
		t.Fatal(err)
	}
	root := v.FolderPath(owner, folder1)
	for i := 0; i < 3000; i++ {
		p := filepath.Join(root, fmt.Sprintf("d%d", i%30), fmt.Sprintf("f%d", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Interrupt the removal part-way, as a crash or shutdown would.
	ctx, cancel := context.WithCancel(context.Background())
	err := v.RemoveFolder(ctx, owner, folder1, func(n int64) {
		if n >= progressEvery {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted RemoveFolder = %v; want context.Canceled", err)
	}
	ents, err := os.ReadDir(root)
	if err != nil || len(ents) == 0 {
		t.Fatalf("the interrupted removal should leave part of the tree: %d entries, %v", len(ents), err)
	}
	// Also remove a piece by hand, as another process might have.
	if err := os.RemoveAll(filepath.Join(root, ents[0].Name())); err != nil {
		t.Fatal(err)
	}
	if err := v.RemoveFolder(context.Background(), owner, folder1, nil); err != nil {
		t.Fatalf("resumed RemoveFolder: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, owner.UUID)); !os.IsNotExist(err) {
		t.Errorf("scope directory not pruned: %v", err)
	}

	// A crash after the folder root went but before pruning: only the empty
	// aa/bb levels are left.
	if err := os.MkdirAll(filepath.Join(dir, owner.UUID, "01", "23"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := v.RemoveFolder(context.Background(), owner, folder1, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, owner.UUID)); !os.IsNotExist(err) {
		t.Errorf("empty levels not pruned: %v", err)
	}
}

func TestRemoveFolderRootIsSymlink(t *testing.T) {
	v, dir := openTemp(t)
	outside := newOutside(t)
	bb := filepath.Join(dir, owner.UUID, "01", "23")
	if err := os.MkdirAll(bb, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(bb, folder1[4:])); err != nil {
		t.Fatal(err)
	}
	if err := v.RemoveFolder(context.Background(), owner, folder1, nil); err != nil {
		t.Fatal(err)
	}
	checkOutside(t, outside)
	if _, err := os.Lstat(filepath.Join(bb, folder1[4:])); !os.IsNotExist(err) {
		t.Errorf("symlink not removed: %v", err)
	}
}

func TestRemoveFolderRefusesSymlinkedLevel(t *testing.T) {
	v, dir := openTemp(t)
	outside := t.TempDir()
	target := filepath.Join(outside, "01", "23", folder1[4:])
	if err := os.MkdirAll(target, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, owner.UUID)); err != nil {
		t.Fatal(err)
	}
	if err := v.RemoveFolder(context.Background(), owner, folder1, nil); !errors.Is(err, ErrUnsafe) {
		t.Errorf("RemoveFolder through a symlinked scope dir = %v; want ErrUnsafe", err)
	}
	if _, err := os.Stat(target); err != nil {
		t.Errorf("directory outside the volume removed: %v", err)
	}
}

func TestRemoveFolderStopsAtMountPoint(t *testing.T) {
	requireRoot(t)
	v, _ := openTemp(t)
	if err := v.CreateFolder(owner, folder1, 0, 0); err != nil {
		t.Fatal(err)
	}
	mnt := filepath.Join(v.FolderPath(owner, folder1), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
		}
	})
	if err := os.WriteFile(filepath.Join(mnt, "other-fs"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := v.RemoveFolder(context.Background(), owner, folder1, nil)
	if !errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(), "mount point") {
		t.Errorf("RemoveFolder over a mount point = %v; want ErrUnsafe", err)
	}
	if _, err := os.Stat(filepath.Join(mnt, "other-fs")); err != nil {
		t.Errorf("file on the other filesystem removed: %v", err)
	}
}

func TestRemoveFolderRefusesMountedRoot(t *testing.T) {
	requireRoot(t)
	v, _ := openTemp(t)
	if err := v.CreateFolder(owner, folder1, 0, 0); err != nil {
		t.Fatal(err)
	}
	root := v.FolderPath(owner, folder1)
	if err := unix.Mount("tmpfs", root, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(root, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", root, err)
		}
	})
	if err := os.WriteFile(filepath.Join(root, "other-fs"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := v.RemoveFolder(context.Background(), owner, folder1, nil)
	if !errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(), "mount point") {
		t.Errorf("RemoveFolder of a mounted folder root = %v; want ErrUnsafe", err)
	}
	if _, err := os.Stat(filepath.Join(root, "other-fs")); err != nil {
		t.Errorf("file on the mounted filesystem removed: %v", err)
	}
}

// TestRemoveFolderNotRoot removes a tree with read-only and inaccessible
// directories without CAP_DAC_OVERRIDE: as root it re-runs itself as the
// storage uid.
func TestRemoveFolderNotRoot(t *testing.T) {
	if dir := os.Getenv("VFOLDER_TEST_REMOVE_DIR"); dir != "" {
		v, err := Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer v.Close()
		if err := v.RemoveFolder(context.Background(), owner, folder1, nil); err != nil {
			t.Fatal(err)
		}
		return
	}
	uid, gid := os.Geteuid(), os.Getegid()
	if uid == 0 {
		uid, gid = testUID, testGID
	}
	// Not t.TempDir: its parents are 0700, out of reach of another uid.
	base, err := os.MkdirTemp("", "vfolder-volume-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	dir := filepath.Join(base, "vol")
	outside := filepath.Join(base, "outside")
	for _, d := range []string{dir, outside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "keep"), []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(outside, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	v, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if err := v.CreateFolder(owner, folder1, uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	root := v.FolderPath(owner, folder1)
	buildTree(t, root, outside)
	if os.Geteuid() != 0 {
		if err := v.RemoveFolder(context.Background(), owner, folder1, nil); err != nil {
			t.Fatal(err)
		}
	} else {
		// Hand the tree to the storage uid, then remove it as that uid.
		err := filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(p, uid, gid)
		})
		if err != nil {
			t.Fatal(err)
		}
		exe := filepath.Join(base, "volume.test")
		data, err := os.ReadFile(os.Args[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(exe, data, 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(exe, "-test.run=^TestRemoveFolderNotRoot$", "-test.count=1")
		cmd.Env = append(os.Environ(), "VFOLDER_TEST_REMOVE_DIR="+dir)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		cmd.Dir = "/"
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("removal as uid %d: %v\n%s", uid, err, out)
		}
	}
	checkOutside(t, outside)
	if _, err := os.Lstat(filepath.Join(dir, owner.UUID)); !os.IsNotExist(err) {
		t.Errorf("folder not removed: %v", err)
	}
}

func FuzzParseDirents(f *testing.F) {
	rec := func(name string, typ byte) []byte {
		n := 19 + len(name) + 1
		n = (n + 7) &^ 7
		b := make([]byte, n)
		b[16] = byte(n)
		b[18] = typ
		copy(b[19:], name)
		return b
	}
	f.Add(append(rec(".", unix.DT_DIR), rec("file", unix.DT_REG)...))
	f.Add(rec("x", 0))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, e := range parseDirents(b) {
			if e.name == "" || e.name == "." || e.name == ".." || strings.ContainsRune(e.name, 0) {
				t.Fatalf("bad entry %q", e.name)
			}
		}
	})
}

// A volume known as initialised that shows no version.txt is missing (its
// mount is gone): nothing is written into the directory.
func TestEnsureVersionKnownVolume(t *testing.T) {
	v, dir := openTemp(t)
	err := v.EnsureVersion(os.Geteuid(), os.Getegid(), true)
	if !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("EnsureVersion(known) on an empty directory = %v; want ErrMissing naming %s", err, dir)
	}
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) != 0 {
		t.Fatalf("the directory holds %v (%v); want nothing written", ents, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "version.txt"), []byte("3"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := v.EnsureVersion(os.Geteuid(), os.Getegid(), true); err != nil {
		t.Errorf("EnsureVersion(known) with version.txt: %v", err)
	}
}

func TestOpenMissing(t *testing.T) {
	p := filepath.Join(t.TempDir(), "nope")
	_, err := Open(p)
	if !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), p) {
		t.Errorf("Open(%s) = %v; want ErrMissing naming the path", p, err)
	}
}

func TestIsMountPoint(t *testing.T) {
	v, _ := openTemp(t)
	if ok, err := v.IsMountPoint(); err != nil || ok {
		t.Errorf("a plain directory: IsMountPoint = %v, %v; want false", ok, err)
	}
	if err := v.RequireMountPoint(); !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), "not a mount point") {
		t.Errorf("RequireMountPoint on a plain directory = %v; want ErrMissing", err)
	}
	root, err := Open("/")
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if ok, err := root.IsMountPoint(); err != nil || !ok {
		t.Errorf("/: IsMountPoint = %v, %v; want true", ok, err)
	}
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	if err := unix.Mount("vfolder-test", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmounting %s: %v", dir, err)
		}
	})
	m, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if ok, err := m.IsMountPoint(); err != nil || !ok {
		t.Errorf("a tmpfs mount: IsMountPoint = %v, %v; want true", ok, err)
	}
	if err := m.RequireMountPoint(); err != nil {
		t.Errorf("RequireMountPoint on a mount: %v", err)
	}
}
