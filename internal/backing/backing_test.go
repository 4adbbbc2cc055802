package backing

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestBackingChunk(t *testing.T) {
	long := strings.Repeat("n", 255)
	var comps []string
	for i := 0; i < 40; i++ {
		comps = append(comps, long)
	}
	chunks := chunk(comps)
	if strings.Join(chunks, "/") != strings.Join(comps, "/") {
		t.Fatal("chunks do not join back to the path")
	}
	for _, c := range chunks {
		if len(c) > ChunkMax {
			t.Errorf("chunk of %d bytes > %d", len(c), ChunkMax)
		}
		if strings.HasPrefix(c, "/") || strings.HasSuffix(c, "/") {
			t.Errorf("chunk %q.. has a leading or trailing slash", c[:10])
		}
	}
	if len(chunks) < 3 {
		t.Errorf("got %d chunks for a %d-byte path", len(chunks), len(strings.Join(comps, "/")))
	}
	if got := chunk([]string{"a", "b"}); len(got) != 1 || got[0] != "a/b" {
		t.Errorf("chunk(a, b) = %q", got)
	}
}

func openRoot(t *testing.T) (string, int) {
	t.Helper()
	dir := t.TempDir()
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return dir, fd
}

// TestBackingOpenDeep resolves a path of about 8 KiB: beyond PATH_MAX.
func TestBackingOpenDeep(t *testing.T) {
	_, root := openRoot(t)
	name := strings.Repeat("d", 250)
	var comps []string
	cur, err := unix.Dup(root)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 32; i++ {
		if err := unix.Mkdirat(cur, name, 0o755); err != nil {
			t.Fatal(err)
		}
		next, err := unix.Openat(cur, name, unix.O_PATH|unix.O_DIRECTORY, 0)
		if err != nil {
			t.Fatal(err)
		}
		unix.Close(cur)
		cur = next
		comps = append(comps, name)
	}
	fd, err := unix.Openat(cur, "leaf", unix.O_CREAT|unix.O_WRONLY, 0o644)
	unix.Close(cur)
	if err != nil {
		t.Fatal(err)
	}
	unix.Write(fd, []byte("deep"))
	unix.Close(fd)

	if total := len(strings.Join(comps, "/")); total < 8000 {
		t.Fatalf("path only %d bytes", total)
	}
	fd, err = Open(root, append(comps, "leaf"), unix.O_RDONLY, 0)
	if err != nil {
		t.Fatalf("Open deep: %v", err)
	}
	buf := make([]byte, 16)
	n, _ := unix.Read(fd, buf)
	unix.Close(fd)
	if string(buf[:n]) != "deep" {
		t.Errorf("read %q", buf[:n])
	}
	dfd, err := OpenDir(root, comps)
	if err != nil {
		t.Fatalf("OpenDir deep: %v", err)
	}
	st, err := Lstat(dfd, "leaf")
	unix.Close(dfd)
	if err != nil || st.Size != 4 || st.Type() != unix.S_IFREG {
		t.Errorf("Lstat leaf: %+v %v", st, err)
	}
}

// TestBackingNoSymlinks: a symlink anywhere on the way, or a trailing one
// without O_PATH|O_NOFOLLOW, is never followed; ".." cannot climb out.
func TestBackingNoSymlinks(t *testing.T) {
	dir, root := openRoot(t)
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "secret"), []byte("x"), 0o644)
	os.Mkdir(filepath.Join(dir, "sub"), 0o755)
	os.Symlink(outside, filepath.Join(dir, "abs"))
	os.Symlink("sub", filepath.Join(dir, "rel"))
	os.WriteFile(filepath.Join(dir, "sub", "f"), []byte("y"), 0o644)

	for _, comps := range [][]string{{"abs", "secret"}, {"rel", "f"}} {
		if fd, err := Open(root, comps, unix.O_RDONLY, 0); err != unix.ELOOP {
			unix.Close(fd)
			t.Errorf("Open(%q) = %v, want ELOOP", comps, err)
		}
	}
	if fd, err := Open(root, []string{"abs"}, unix.O_RDONLY, 0); err != unix.ELOOP {
		unix.Close(fd)
		t.Errorf("Open(abs) = %v, want ELOOP", err)
	}
	if fd, err := Openat2(root, "../x", unix.O_PATH, 0); err != unix.EXDEV {
		unix.Close(fd)
		t.Errorf("Openat2(../x) = %v, want EXDEV", err)
	}
	fd, err := OpenPath(root, []string{"abs"})
	if err != nil {
		t.Fatalf("OpenPath(abs): %v", err)
	}
	defer unix.Close(fd)
	st, err := Fstat(fd)
	if err != nil || st.Type() != unix.S_IFLNK {
		t.Errorf("OpenPath(abs) gives %o, %v; want the symlink itself", st.Mode, err)
	}
	target, err := Readlink(fd)
	if err != nil || string(target) != outside {
		t.Errorf("Readlink = %q, %v", target, err)
	}
}

func TestBackingSplitRel(t *testing.T) {
	cases := map[string]bool{"": true, "a/b": true, "./a//b/": true, "../a": false, "a/..": false, "/a": false, "a/\x00": false}
	for in, ok := range cases {
		if _, got := SplitRel(in); got != ok {
			t.Errorf("SplitRel(%q) ok = %v, want %v", in, got, ok)
		}
	}
}

func FuzzBackingSplitRel(f *testing.F) {
	for _, s := range []string{"", "a/b", "../a", "a/../b", "/x", "./.", "a//b", strings.Repeat("z", 300)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		comps, ok := SplitRel(p)
		if !ok {
			return
		}
		if strings.HasPrefix(p, "/") {
			t.Fatalf("accepted absolute %q", p)
		}
		for _, c := range comps {
			if !ValidName(c) {
				t.Fatalf("SplitRel(%q) gave %q", p, c)
			}
		}
		// Chunking keeps every byte and the bound.
		if len(comps) > 0 {
			ch := chunk(comps)
			if strings.Join(ch, "/") != strings.Join(comps, "/") {
				t.Fatalf("chunk changed %q", p)
			}
			for _, c := range ch {
				if len(c) > ChunkMax {
					t.Fatalf("chunk of %d bytes", len(c))
				}
			}
		}
	})
}
