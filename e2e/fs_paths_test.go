package e2e

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	vfs "github.com/vfolder/vfolder/fs"
	"github.com/vfolder/vfolder/meta"
)

// TestFsEscape: symlinks are stored as given and never followed by the
// daemon, and a subpath cannot leave its folder.
func TestFsEscape(t *testing.T) {
	e := fsSetup(t)
	rel := e.folder(t)
	other := e.folder(t)
	back := filepath.Join(e.volume, rel)
	os.WriteFile(filepath.Join(e.volume, other, "secret"), []byte("other folder"), 0o644)
	s := e.spec(rel, "esc", meta.PermWD)
	v := e.add(t, s)

	// ../../../../<other> from the folder reaches the other folder on
	// storage; from the view in the mount it leads nowhere.
	toOther := "../../../../" + other
	for name, target := range map[string]string{"etc": "/etc", "other": toOther} {
		if err := os.Symlink(target, filepath.Join(v, name)); err != nil {
			t.Fatal(err)
		}
		if got, err := os.Readlink(filepath.Join(v, name)); err != nil || got != target {
			t.Errorf("readlink %s: %q %v", name, got, err)
		}
		if got, err := os.Readlink(filepath.Join(back, name)); err != nil || got != target {
			t.Errorf("stored %s: %q %v", name, got, err)
		}
	}
	if _, err := os.ReadFile(filepath.Join(v, "other", "secret")); err == nil {
		t.Errorf("read the other folder through a relative symlink")
	}

	// A directory the kernel holds open is replaced on storage by a
	// symlink out of the folder. Everything the daemon resolves below it
	// must fail instead of following the symlink.
	if err := os.Mkdir(filepath.Join(v, "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	dfd, err := unix.Open(filepath.Join(v, "dir"), unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dfd)
	if err := os.Rename(filepath.Join(back, "dir"), filepath.Join(back, "dir.old")); err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{filepath.Join(e.volume, other), toOther} {
		os.Remove(filepath.Join(back, "dir"))
		if err := os.Symlink(target, filepath.Join(back, "dir")); err != nil {
			t.Fatal(err)
		}
		if fd, err := unix.Openat(dfd, "secret", unix.O_RDONLY, 0); err == nil {
			b := make([]byte, 64)
			n, _ := unix.Read(fd, b)
			unix.Close(fd)
			t.Errorf("opened secret below a symlinked parent: %q", b[:n])
		} else if err != unix.ENOTDIR && err != unix.ELOOP {
			// The daemon's refusal: the parent is no directory to it.
			t.Errorf("open below a symlinked parent: %v, want ENOTDIR or ELOOP", err)
		}
		if err := unix.Mkdirat(dfd, "planted", 0o755); err == nil {
			t.Errorf("mkdir below a symlinked parent succeeded")
		}
		if fd, err := unix.Openat(dfd, "planted-file", unix.O_CREAT|unix.O_WRONLY, 0o644); err == nil {
			unix.Close(fd)
			t.Errorf("create below a symlinked parent succeeded")
		}
		if err := unix.Symlinkat("x", dfd, "planted-link"); err == nil {
			t.Errorf("symlink below a symlinked parent succeeded")
		}
		ents, _ := os.ReadDir(filepath.Join(e.volume, other))
		if len(ents) != 1 { // secret
			t.Errorf("other folder now holds %d entries", len(ents))
		}
	}

	// The same with the symlink one level further up: resolving
	// "dir2/sub" crosses it, which RESOLVE_NO_SYMLINKS refuses.
	os.MkdirAll(filepath.Join(v, "dir2", "sub"), 0o755)
	os.MkdirAll(filepath.Join(e.volume, other, "sub"), 0o755)
	os.WriteFile(filepath.Join(e.volume, other, "sub", "secret2"), []byte("other folder"), 0o644)
	sfd, err := unix.Open(filepath.Join(v, "dir2", "sub"), unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(sfd)
	os.Rename(filepath.Join(back, "dir2"), filepath.Join(back, "dir2.old"))
	if err := os.Symlink(filepath.Join(e.volume, other), filepath.Join(back, "dir2")); err != nil {
		t.Fatal(err)
	}
	if fd, err := unix.Openat(sfd, "secret2", unix.O_RDONLY, 0); err == nil {
		unix.Close(fd)
		t.Errorf("opened a file below a symlinked ancestor")
	} else if err != unix.ELOOP {
		t.Errorf("open below a symlinked ancestor: %v, want ELOOP", err)
	}
	if err := unix.Mkdirat(sfd, "planted", 0o755); err != unix.ELOOP {
		t.Errorf("mkdir below a symlinked ancestor: %v, want ELOOP", err)
	}
	if _, err := os.Stat(filepath.Join(e.volume, other, "sub", "planted")); err == nil {
		t.Errorf("planted a directory in the other folder")
	}

	// Subpaths: ".." and absolute paths are refused, a symlinked subpath
	// is not followed.
	for _, sub := range []string{"..", "a/../..", "/etc", "../" + filepath.Base(other)} {
		bad := e.spec(rel, "sub", meta.PermRW)
		bad.Subpath = sub
		if err := e.fs.AddView(bad); !errors.Is(err, meta.ErrInvalid) {
			t.Errorf("AddView subpath %q: %v, want ErrInvalid", sub, err)
		}
	}
	bad := e.spec(rel, "sub", meta.PermRW)
	bad.Subpath = "other"
	if err := e.fs.AddView(bad); !errors.Is(err, meta.ErrInvalid) {
		t.Errorf("AddView with a symlink subpath: %v, want ErrInvalid", err)
	}
	os.MkdirAll(filepath.Join(back, "real", "sub"), 0o755)
	os.WriteFile(filepath.Join(back, "real", "sub", "x"), []byte("x"), 0o644)
	good := e.spec(rel, "sub", meta.PermRO)
	good.Subpath = "real/sub"
	if b, err := os.ReadFile(filepath.Join(e.add(t, good), "x")); err != nil || string(b) != "x" {
		t.Errorf("subpath view: %q %v", b, err)
	}
}

// TestFsNames: 255-byte names work, 256-byte names get ENAMETOOLONG, and
// a tree deeper than 4096 bytes works through the daemon.
func TestFsNames(t *testing.T) {
	e := fsSetup(t)
	rel := e.folder(t)
	v := e.add(t, e.spec(rel, "names", meta.PermWD))
	n255 := strings.Repeat("n", 255)
	n256 := strings.Repeat("n", 256)
	if err := os.WriteFile(filepath.Join(v, n255), []byte("ok"), 0o644); err != nil {
		t.Errorf("255-byte name: %v", err)
	}
	if err := os.Mkdir(filepath.Join(v, "d"+n255[1:]), 0o755); err != nil {
		t.Errorf("255-byte dir: %v", err)
	}
	for what, err := range map[string]error{
		"create":  fsOpenClose(filepath.Join(v, n256), unix.O_CREAT|unix.O_WRONLY),
		"mkdir":   unix.Mkdir(filepath.Join(v, n256), 0o755),
		"symlink": unix.Symlink("x", filepath.Join(v, n256)),
		"stat":    unix.Stat(filepath.Join(v, n256), &unix.Stat_t{}),
		"rename":  unix.Rename(filepath.Join(v, n255), filepath.Join(v, n256)),
	} {
		if err != unix.ENAMETOOLONG {
			t.Errorf("%s with a 256-byte name: %v, want ENAMETOOLONG", what, err)
		}
	}

	// Descend with directory descriptors: 30 levels of 200-byte names.
	name := strings.Repeat("p", 200)
	cur, err := unix.Open(v, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	const depth = 30
	for i := 0; i < depth; i++ {
		if err := unix.Mkdirat(cur, name, 0o755); err != nil {
			t.Fatalf("mkdir at depth %d: %v", i, err)
		}
		next, err := unix.Openat(cur, name, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		unix.Close(cur)
		if err != nil {
			t.Fatalf("open at depth %d: %v", i, err)
		}
		cur = next
	}
	defer unix.Close(cur)
	fd, err := unix.Openat(cur, "leaf", unix.O_CREAT|unix.O_RDWR, 0o644)
	if err != nil {
		t.Fatalf("create at %d bytes: %v", depth*201, err)
	}
	unix.Write(fd, []byte("deep data"))
	unix.Close(fd)
	// Drop the kernel's cached attributes and read everything back
	// through lookups the daemon resolves again.
	if err := unix.Fchmodat(cur, "leaf", 0o600, 0); err != nil {
		t.Errorf("chmod deep: %v", err)
	}
	var st unix.Stat_t
	if err := unix.Fstatat(cur, "leaf", &st, unix.AT_SYMLINK_NOFOLLOW); err != nil || st.Size != 9 || st.Uid != 1000 {
		t.Errorf("stat deep: %+v %v", st, err)
	}
	if err := unix.Setxattr(fsProc(cur), "user.deep", []byte("1"), 0); err != nil {
		t.Errorf("setxattr on a deep directory: %v", err)
	}
	fd, err = unix.Openat(cur, "leaf", unix.O_RDONLY, 0)
	if err != nil {
		t.Fatalf("reopen deep: %v", err)
	}
	buf := make([]byte, 32)
	nr, _ := unix.Read(fd, buf)
	unix.Close(fd)
	if string(buf[:nr]) != "deep data" {
		t.Errorf("read deep: %q", buf[:nr])
	}
	// On storage: the same file, storage-owned, more than 4096 bytes deep.
	bfd, err := unix.Open(filepath.Join(e.volume, rel), unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < depth; i++ {
		next, err := unix.Openat(bfd, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
		unix.Close(bfd)
		if err != nil {
			t.Fatal(err)
		}
		bfd = next
	}
	defer unix.Close(bfd)
	if err := unix.Fstatat(bfd, "leaf", &st, unix.AT_SYMLINK_NOFOLLOW); err != nil ||
		st.Uid != fsStorageUID || st.Mode&0o777 != 0o600 || st.Size != 9 {
		t.Errorf("storage leaf: uid %d mode %o size %d %v", st.Uid, st.Mode&0o777, st.Size, err)
	}
	// Rename and unlink at depth.
	if err := unix.Renameat(cur, "leaf", cur, "leaf2"); err != nil {
		t.Errorf("rename deep: %v", err)
	}
	if err := unix.Unlinkat(cur, "leaf2", 0); err != nil {
		t.Errorf("unlink deep: %v", err)
	}
}

// fsProc names an open descriptor through /proc for path-based calls.
func fsProc(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// TestFsInodes: hard links share st_ino inside a view; two views of one
// folder never share inode numbers; numbers are stable across lookups.
func TestFsInodes(t *testing.T) {
	e := fsSetup(t)
	rel := e.folder(t)
	va := e.add(t, e.spec(rel, "ia", meta.PermWD))
	vb := e.add(t, e.spec(rel, "ib", meta.PermWD))
	os.WriteFile(filepath.Join(va, "x"), []byte("x"), 0o644)
	if err := os.Link(filepath.Join(va, "x"), filepath.Join(va, "y")); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Join(va, "sub"), 0o755)
	if err := os.Link(filepath.Join(va, "x"), filepath.Join(va, "sub", "z")); err != nil {
		t.Fatal(err)
	}
	ax, ay, az := fsLstat(t, filepath.Join(va, "x")), fsLstat(t, filepath.Join(va, "y")), fsLstat(t, filepath.Join(va, "sub", "z"))
	if ax.Ino != ay.Ino || ax.Ino != az.Ino || ax.Nlink != 3 {
		t.Errorf("hard links: ino %d %d %d nlink %d", ax.Ino, ay.Ino, az.Ino, ax.Nlink)
	}
	bx := fsLstat(t, filepath.Join(vb, "x"))
	if bx.Ino == ax.Ino {
		t.Errorf("two views share ino %d", ax.Ino)
	}
	// Across both views only the three links of x in one view share a
	// number.
	type where struct{ view, rel string }
	seen := map[uint64]where{}
	links := map[string]bool{"x": true, "y": true, "sub/z": true}
	for _, v := range []string{va, vb} {
		filepath.Walk(v, func(p string, fi os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			ino := fi.Sys().(*syscall.Stat_t).Ino
			r, _ := filepath.Rel(v, p)
			if prev, ok := seen[ino]; ok && !(prev.view == v && links[prev.rel] && links[r]) {
				t.Errorf("ino %d shared by %v and %s", ino, prev, p)
			}
			seen[ino] = where{v, r}
			return nil
		})
	}
	// readdir d_ino matches st_ino.
	dfd, err := unix.Open(va, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dfd)
	buf := make([]byte, 8192)
	n, _ := unix.Getdents(dfd, buf)
	checked := 0
	for off := 0; off < n; {
		ino := binary.LittleEndian.Uint64(buf[off:])
		reclen := int(binary.LittleEndian.Uint16(buf[off+16:]))
		nameb := buf[off+19 : off+reclen]
		name := string(nameb[:bytes.IndexByte(nameb, 0)])
		off += reclen
		if name == "." || name == ".." {
			continue
		}
		checked++
		if st := fsLstat(t, filepath.Join(va, name)); st.Ino != ino {
			t.Errorf("%s: d_ino %d, st_ino %d", name, ino, st.Ino)
		}
	}
	if checked != 3 {
		t.Errorf("getdents gave %d entries, want 3", checked)
	}
	// Remove and re-add a view: the same files keep their numbers only
	// within one view's life, but never collide with the other view.
	if err := e.fs.RemoveView(vfs.NSSessions, "sess-1", "ia"); err != nil {
		t.Fatal(err)
	}
	va2 := e.add(t, e.spec(rel, "ia", meta.PermWD))
	if st := fsLstat(t, filepath.Join(va2, "x")); st.Ino == bx.Ino {
		t.Errorf("re-added view shares ino with view b")
	}
}
