package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	vfs "github.com/vfolder/vfolder/fs"
	"github.com/vfolder/vfolder/meta"
)

// TestFsMmapShared: a shared writable mapping of a file in an rw view
// reaches storage; a ro view cannot be mapped for writing. The mappings are
// touched by a child process (fsHelper).
func TestFsMmapShared(t *testing.T) {
	e := fsSetup(t)
	rel := e.folder(t)
	v := e.add(t, e.spec(rel, "mm", meta.PermRW))
	p := filepath.Join(v, "m")
	if err := os.WriteFile(p, bytes.Repeat([]byte{'.'}, 8192), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := fsHelper(t, "mmap-write", p); err != nil || out != "ok" {
		t.Fatalf("mmap write: %q %v", out, err)
	}
	b, _ := os.ReadFile(filepath.Join(e.volume, rel, "m"))
	if !bytes.Equal(b[4096:4108], []byte("mapped write")) {
		t.Errorf("storage holds %q", b[4096:4108])
	}
	if out, err := fsHelper(t, "mmap-read", p); err != nil || !strings.HasPrefix(out, "....") {
		t.Errorf("mmap read: %q %v", out, err)
	}
	ro := e.add(t, e.spec(rel, "mm-ro", meta.PermRO))
	if out, err := fsHelper(t, "mmap-write", filepath.Join(ro, "m")); err != nil || out == "ok" {
		t.Errorf("writable shared mapping of a ro view: %q %v", out, err)
	}
}

// TestFsHelperProcess is no test of its own: fsHelper runs the test binary
// as a child with VFOLDER_FS_HELPER set to touch memory mappings of files
// in a mount. A goroutine of the serving process that faults on such a
// mapping can stall the Go runtime's stop-the-world and with it the FUSE
// server, so mappings are only touched from another process.
func TestFsHelperProcess(t *testing.T) {
	mode := os.Getenv("VFOLDER_FS_HELPER")
	if mode == "" {
		t.Skip("runs only as the child process of fsHelper")
	}
	p := os.Getenv("VFOLDER_FS_HELPER_PATH")
	result := func(s string) { fmt.Printf("RESULT:%s:END\n", s) }
	switch mode {
	case "mmap-write":
		fd, err := unix.Open(p, unix.O_RDWR, 0)
		if err != nil {
			result("open: " + err.Error())
			return
		}
		mem, err := unix.Mmap(fd, 0, 8192, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		if err != nil {
			result("mmap: " + err.Error())
			return
		}
		copy(mem[4096:], "mapped write")
		if err := unix.Msync(mem, unix.MS_SYNC); err != nil {
			result("msync: " + err.Error())
			return
		}
		unix.Munmap(mem)
		unix.Close(fd)
		result("ok")
	case "mmap-read":
		fd, err := unix.Open(p, unix.O_RDONLY, 0)
		if err != nil {
			result("open: " + err.Error())
			return
		}
		mem, err := unix.Mmap(fd, 0, 5, unix.PROT_READ, unix.MAP_SHARED)
		if err != nil {
			result("mmap: " + err.Error())
			return
		}
		result(string(mem))
		unix.Munmap(mem)
		unix.Close(fd)
	default:
		result("unknown helper " + mode)
	}
}

// fsHelper runs TestFsHelperProcess in a child and returns its result.
func fsHelper(t *testing.T, mode, path string) (string, error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestFsHelperProcess$", "-test.count=1")
	cmd.Dir = "/"
	cmd.Env = append(os.Environ(), "VFOLDER_FS_HELPER="+mode, "VFOLDER_FS_HELPER_PATH="+path)
	out, err := cmd.CombinedOutput()
	s := string(out)
	i := strings.Index(s, "RESULT:")
	j := strings.Index(s, ":END")
	if i < 0 || j < i {
		return s, fmt.Errorf("helper gave no result (%v)", err)
	}
	return s[i+len("RESULT:") : j], err
}

// TestFsCrossView: what one view writes, another view of the folder reads
// at its next open, also when it had the old data cached; locks taken in
// one view are seen in the other.
func TestFsCrossView(t *testing.T) {
	e := fsSetup(t)
	rel := e.folder(t)
	a := e.add(t, e.spec(rel, "a", meta.PermRW))
	b := e.add(t, e.spec(rel, "b", meta.PermRO))
	pa, pb := filepath.Join(a, "f"), filepath.Join(b, "f")
	for i, want := range []string{"first version", "second, longer version", "third"} {
		if err := os.WriteFile(pa, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(pb)
		if err != nil || string(got) != want {
			t.Errorf("round %d: view b reads %q %v, want %q", i, got, err, want)
		}
	}
	// Storage written behind the daemon's back is seen at the next open.
	os.WriteFile(filepath.Join(e.volume, rel, "f"), []byte("from another node"), 0o644)
	if got, _ := os.ReadFile(pb); string(got) != "from another node" {
		t.Errorf("after a change on storage view b reads %q", got)
	}

	fa, err := os.Open(pa)
	if err != nil {
		t.Fatal(err)
	}
	defer fa.Close()
	fb, err := os.Open(pb)
	if err != nil {
		t.Fatal(err)
	}
	defer fb.Close()
	if err := unix.Flock(int(fa.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(fb.Fd()), unix.LOCK_SH|unix.LOCK_NB); err != unix.EWOULDBLOCK {
		t.Errorf("flock through view b while view a holds it: %v, want EWOULDBLOCK", err)
	}
	unix.Flock(int(fa.Fd()), unix.LOCK_UN)
	if err := unix.Flock(int(fb.Fd()), unix.LOCK_SH|unix.LOCK_NB); err != nil {
		t.Errorf("flock after release: %v", err)
	}
}

// TestFsRemovedView: a removed view refuses new work at once; open
// descriptors keep working until closed.
func TestFsRemovedView(t *testing.T) {
	e := fsSetup(t)
	rel := e.folder(t)
	v := e.add(t, e.spec(rel, "gone", meta.PermWD))
	os.Mkdir(filepath.Join(v, "d"), 0o755)
	os.WriteFile(filepath.Join(v, "d", "f"), []byte("data"), 0o644)
	dfd, err := unix.Open(filepath.Join(v, "d"), unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dfd)
	ffd, err := unix.Open(filepath.Join(v, "d", "f"), unix.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ffd)
	if err := e.fs.RemoveView(vfs.NSSessions, "sess-1", "gone"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(v); !os.IsNotExist(err) {
		t.Errorf("stat of the removed view: %v", err)
	}
	if fd, err := unix.Openat(dfd, "new", unix.O_CREAT|unix.O_WRONLY, 0o644); err == nil {
		unix.Close(fd)
		t.Errorf("created a file in a removed view")
	}
	if err := unix.Mkdirat(dfd, "newdir", 0o755); err == nil {
		t.Errorf("made a directory in a removed view")
	}
	buf := make([]byte, 4)
	if n, err := unix.Pread(ffd, buf, 0); err != nil || string(buf[:n]) != "data" {
		t.Errorf("read an open file of a removed view: %q %v", buf[:n], err)
	}
	if _, err := os.Stat(filepath.Join(e.volume, rel, "d", "new")); err == nil {
		t.Errorf("the removed view created a file on storage")
	}
}
