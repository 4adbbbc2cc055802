package fs

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/meta"
)

// TestFsCoherence: the kernel keeps entries long, and what one view
// changes is seen at once through the other views of the folder that
// have it cached: names created, removed and renamed, and the size and
// data of a file written and closed. Changes on storage behind the daemon
// are found through the stale entries the kernel still has.
func TestFsCoherence(t *testing.T) {
	f, dir := testMount(t)
	a := testFolder(t, dir, 1, "a")
	b := a
	b.Name, b.Mode = "b", meta.PermRO
	sub := a
	sub.Name, sub.Subpath = "sub", "d"
	back := filepath.Join(dir, "vol", a.FolderRel)
	if err := os.MkdirAll(filepath.Join(back, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, s := range []ViewSpec{a, b, sub} {
		if err := f.AddView(s); err != nil {
			t.Fatal(err)
		}
	}
	va := filepath.Join(f.MountPoint(), "sessions", "s1", "a")
	vb := filepath.Join(f.MountPoint(), "sessions", "s1", "b")
	vs := filepath.Join(f.MountPoint(), "sessions", "s1", "sub")

	stat := func(p string) (unix.Stat_t, error) {
		var st unix.Stat_t
		return st, unix.Lstat(p, &st)
	}
	mustWrite := func(p, data string) {
		t.Helper()
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// A file written through a is cached by b and by the subpath view.
	mustWrite(filepath.Join(va, "d", "f"), "one")
	for _, p := range []string{filepath.Join(vb, "d", "f"), filepath.Join(vs, "f")} {
		if got, err := os.ReadFile(p); err != nil || string(got) != "one" {
			t.Fatalf("%s: %q %v", p, got, err)
		}
	}

	// Rewritten longer through a: b sees the new size in stat at once
	// (its cached attributes were dropped), and the new data.
	mustWrite(filepath.Join(va, "d", "f"), "second version")
	for _, p := range []string{filepath.Join(vb, "d", "f"), filepath.Join(vs, "f")} {
		if st, err := stat(p); err != nil || st.Size != int64(len("second version")) {
			t.Errorf("%s after a rewrite through a: size %d %v", p, st.Size, err)
		}
		if got, err := os.ReadFile(p); err != nil || string(got) != "second version" {
			t.Errorf("%s after a rewrite through a: %q %v", p, got, err)
		}
	}

	// Renamed through a: the old name is gone from b at once, the new
	// one is there.
	if err := os.Rename(filepath.Join(va, "d", "f"), filepath.Join(va, "d", "g")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(vb, "d", "f"), filepath.Join(vs, "f")} {
		if _, err := stat(p); !errors.Is(err, syscall.ENOENT) {
			t.Errorf("%s after a rename through a: %v, want ENOENT", p, err)
		}
	}
	if got, err := os.ReadFile(filepath.Join(vb, "d", "g")); err != nil || string(got) != "second version" {
		t.Errorf("renamed file through b: %q %v", got, err)
	}

	// Removed through a: gone from b at once.
	if err := os.Remove(filepath.Join(va, "d", "g")); err != nil {
		t.Fatal(err)
	}
	if _, err := stat(filepath.Join(vb, "d", "g")); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("b after an unlink through a: %v, want ENOENT", err)
	}

	// Replaced on storage behind the daemon while b has the name cached:
	// b reaches the new file, with its own inode number.
	mustWrite(filepath.Join(va, "h"), "old")
	old, err := stat(filepath.Join(vb, "h"))
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(filepath.Join(back, "h.new"), "replaced on storage")
	if err := os.Rename(filepath.Join(back, "h.new"), filepath.Join(back, "h")); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(vb, "h")); err != nil || string(got) != "replaced on storage" {
		t.Errorf("b after a replace on storage: %q %v", got, err)
	}
	if st, err := stat(filepath.Join(vb, "h")); err != nil || st.Ino == old.Ino {
		t.Errorf("b after a replace on storage: ino %d (old %d) %v", st.Ino, old.Ino, err)
	}
	// Removed on storage while a has it cached: creating it again
	// through a works (the stale entry is looked up again).
	if _, err := stat(filepath.Join(va, "h")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(back, "h")); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(filepath.Join(va, "h"), unix.O_CREAT|unix.O_WRONLY, 0o644)
	if err != nil {
		t.Errorf("create over a name removed on storage: %v", err)
	} else {
		unix.Close(fd)
	}
	if _, err := os.Stat(filepath.Join(back, "h")); err != nil {
		t.Errorf("the file was not created on storage: %v", err)
	}
}

// TestFsPageCacheKept: a file read through an rw view and closed after
// more than a second is read again from the kernel's page cache: the
// entry (and with it the inode and its pages) outlives the attribute
// timeout, and the open keeps the cache because the file did not change.
// A change of the file drops it.
func TestFsPageCacheKept(t *testing.T) {
	ops := &opCounter{ops: map[string]int{}}
	f, dir := testMountWith(t, func(o *Options) {
		o.Debug = true
		o.Logger = zerolog.New(ops).Level(zerolog.DebugLevel)
	})
	s := testFolder(t, dir, 1, "rw")
	s.Mode = meta.PermRW
	if err := f.AddView(s); err != nil {
		t.Fatal(err)
	}
	back := filepath.Join(dir, "vol", s.FolderRel)
	data := bytes.Repeat([]byte("x"), 1<<20)
	if err := os.WriteFile(filepath.Join(back, "f"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(f.MountPoint(), "sessions", "s1", "rw", "f")
	fh, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("first read: %d %v", len(got), err)
	}
	time.Sleep(1200 * time.Millisecond) // past the attribute timeout
	fh.Close()
	before := ops.bytesRead()
	if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("second read: %d %v", len(got), err)
	}
	// The kernel may drop a stray clean page now and then; what counts
	// is that the file is not read again.
	t.Logf("second read: %d bytes; forgets %d", ops.bytesRead()-before, ops.count("FORGET")+ops.count("BATCH_FORGET"))
	if n := ops.bytesRead() - before; n > int64(len(data))/4 {
		t.Errorf("second read asked the daemon for %d of %d bytes, want (almost) none: page cache kept", n, len(data))
	}
	// Changed on storage: the next open drops the cache.
	data[0] = 'y'
	if err := os.WriteFile(filepath.Join(back, "f"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, data) {
		t.Errorf("read after a change on storage: %q... %v", got[:1], err)
	}
}

// TestFsPeerNotify: the kernel's cached entries and attributes of one
// view are dropped when another view of the folder changes the file or
// its name, before the attribute timeout would have done it: in the same
// superblock, and across superblocks (a session's and the node-wide
// one's users/ view, two sessions). statx asks only for the size, so
// nothing else (such as an atime a read made stale) makes the kernel ask
// the daemon.
func TestFsPeerNotify(t *testing.T) {
	for _, tc := range []struct{ name, ns, key string }{
		{"one superblock", NSSessions, "s1"},
		{"users view", NSUsers, strings.Repeat("7", 32)},
		{"another session", NSSessions, "s2"},
	} {
		t.Run(tc.name, func(t *testing.T) { testFsPeerNotify(t, tc.ns, tc.key) })
	}
}

// testFsPeerNotify changes files through the session view s1/a and looks
// at them through the view b at ns/key.
func testFsPeerNotify(t *testing.T, ns, key string) {
	f, dir := testMount(t)
	a := testFolder(t, dir, 1, "a")
	b := a
	b.Namespace, b.Key, b.Name, b.Mode = ns, key, "b", meta.PermRO
	for _, s := range []ViewSpec{a, b} {
		if err := f.AddView(s); err != nil {
			t.Fatal(err)
		}
	}
	va := filepath.Join(f.MountPoint(), "sessions", "s1", "a")
	vb := filepath.Join(f.MountPoint(), ns, key, "b")
	size := func(p string) (int64, error) {
		var stx unix.Statx_t
		err := unix.Statx(unix.AT_FDCWD, p, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_SIZE, &stx)
		return int64(stx.Size), err
	}
	if err := os.WriteFile(filepath.Join(va, "f"), []byte("one"), 0o644); err != nil {
		t.Fatal(err)
	}
	if n, err := size(filepath.Join(vb, "f")); err != nil || n != 3 {
		t.Fatalf("b/f: size %d %v", n, err)
	}
	start := time.Now()
	if err := os.WriteFile(filepath.Join(va, "f"), []byte("second version"), 0o644); err != nil {
		t.Fatal(err)
	}
	if n, err := size(filepath.Join(vb, "f")); err != nil || n != 14 {
		t.Errorf("b/f after a rewrite through a: size %d %v, want 14", n, err)
	}
	if err := os.Rename(filepath.Join(va, "f"), filepath.Join(va, "g")); err != nil {
		t.Fatal(err)
	}
	if _, err := size(filepath.Join(vb, "f")); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("b/f after a rename through a: %v, want ENOENT", err)
	}
	if n, err := size(filepath.Join(vb, "g")); err != nil || n != 14 {
		t.Fatalf("b/g: size %d %v", n, err)
	}
	if err := os.Remove(filepath.Join(va, "g")); err != nil {
		t.Fatal(err)
	}
	if _, err := size(filepath.Join(vb, "g")); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("b/g after an unlink through a: %v, want ENOENT", err)
	}
	if d := time.Since(start); d > attrTimeout/2 {
		t.Logf("took %v: the attribute timeout may have hidden a missing notification", d)
	}
}
