package fs

import (
	"bytes"
	"errors"
	"fmt"
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
	f, dir, ops := tracedMount(t, nil)
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

// TestFsNegativeNotified: with negative entries kept (here for an hour,
// so that only a notification can make a name appear), a name created
// through one view is seen at once by every other view of the folder
// that looked it up before and was told it does not exist: in the same
// session superblock, in another session's superblock, in the node-wide
// one (users/), and in a view of a subpath; for every way to make a name
// (create, mkdir, mknod, symlink, link, rename, O_TMPFILE and linkat),
// through the first and through the second session's superblock. A name
// made on storage stays hidden behind the negative entry.
func TestFsNegativeNotified(t *testing.T) {
	f, dir, ops := tracedMount(t, func(o *Options) { o.Tuning.NegativeTimeout = time.Hour })
	a := testFolder(t, dir, 1, "a")
	b := a
	b.Name, b.Mode = "b", meta.PermRO
	c := a
	c.Key, c.Name = "s2", "c"
	u := a
	u.Namespace, u.Key, u.Name, u.Mode = NSUsers, strings.Repeat("7", 32), "u", meta.PermRO
	sub := a
	sub.Name, sub.Subpath, sub.Mode = "sub", "d", meta.PermRO
	back := filepath.Join(dir, "vol", a.FolderRel)
	if err := os.MkdirAll(filepath.Join(back, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(back, "d", "src"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, s := range []ViewSpec{a, b, c, u, sub} {
		if err := f.AddView(s); err != nil {
			t.Fatal(err)
		}
	}
	mnt := f.MountPoint()
	// dirs are the directory d as each view shows it.
	dirs := map[string]string{
		"a":   filepath.Join(mnt, "sessions", "s1", "a", "d"),
		"b":   filepath.Join(mnt, "sessions", "s1", "b", "d"),
		"c":   filepath.Join(mnt, "sessions", "s2", "c", "d"),
		"u":   filepath.Join(mnt, "users", u.Key, "u", "d"),
		"sub": filepath.Join(mnt, "sessions", "s1", "sub"),
	}
	views := []string{"a", "b", "c", "u", "sub"}
	lstat := func(p string) error {
		var st unix.Stat_t
		return unix.Lstat(p, &st)
	}
	missing := func(name string) {
		t.Helper()
		for _, v := range views {
			if err := lstat(filepath.Join(dirs[v], name)); !errors.Is(err, syscall.ENOENT) {
				t.Fatalf("%s/%s before it is made: %v, want ENOENT", v, name, err)
			}
		}
	}

	// The negative entries are kept: looking the missing names up again
	// does not reach the daemon, and a name made on storage stays hidden.
	missing("onstorage")
	// Only the lookups of the missing name count: the walk through the
	// synthetic levels (root-only, so not kept) looks up their names
	// again every time.
	before := ops.countLookups("onstorage")
	for i := 0; i < 5; i++ {
		missing("onstorage")
	}
	// (25 without negative entries; the kernel may drop unused entries
	// under memory pressure or drop_caches, which costs a few.)
	if n := ops.countLookups("onstorage") - before; n > 5 {
		t.Errorf("%d lookups of names the views were told are missing, want (nearly) none: negative entries kept", n)
	}
	if err := os.WriteFile(filepath.Join(back, "d", "onstorage"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	hidden := 0
	for _, v := range views {
		if err := lstat(filepath.Join(dirs[v], "onstorage")); errors.Is(err, syscall.ENOENT) {
			hidden++
		}
	}
	t.Logf("a name made on storage is hidden in %d of %d views (kept negative entries)", hidden, len(views))

	makers := []struct {
		kind string
		make func(dir, name string) error
	}{
		{"create", func(dir, name string) error { return os.WriteFile(filepath.Join(dir, name), []byte("y"), 0o644) }},
		{"mkdir", func(dir, name string) error { return os.Mkdir(filepath.Join(dir, name), 0o755) }},
		{"mknod", func(dir, name string) error { return unix.Mkfifo(filepath.Join(dir, name), 0o644) }},
		{"symlink", func(dir, name string) error { return os.Symlink("src", filepath.Join(dir, name)) }},
		{"link", func(dir, name string) error { return os.Link(filepath.Join(dir, "src"), filepath.Join(dir, name)) }},
		{"rename", func(dir, name string) error {
			tmp := filepath.Join(dir, name+".tmp")
			if err := os.WriteFile(tmp, []byte("z"), 0o644); err != nil {
				return err
			}
			return os.Rename(tmp, filepath.Join(dir, name))
		}},
		{"tmpfile", func(dir, name string) error {
			fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			return unix.Linkat(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", fd), unix.AT_FDCWD, filepath.Join(dir, name), unix.AT_SYMLINK_FOLLOW)
		}},
	}
	for _, through := range []string{"a", "c"} {
		for _, m := range makers {
			name := m.kind + "-via-" + through
			missing(name)
			if err := m.make(dirs[through], name); err != nil {
				t.Fatalf("%s %s through %s: %v", m.kind, name, through, err)
			}
			for _, v := range views {
				if err := lstat(filepath.Join(dirs[v], name)); err != nil {
					t.Errorf("%s/%s after a %s through %s: %v, want it there at once", v, name, m.kind, through, err)
				}
			}
		}
	}
}

// TestFsNegativeTimeout: a name made on storage behind the daemon (or
// by another node) appears in a view that was told it is missing once
// the negative entry expires: after at most the negative timeout (one
// second by default), and at once with negative entries off. A second
// FS over the same volume with state of its own stands for another
// node's daemon: what it creates is not notified to the first, and
// appears within the same bound.
func TestFsNegativeTimeout(t *testing.T) {
	for _, tc := range []struct {
		name string
		neg  time.Duration
		want time.Duration // how long the name may stay hidden
	}{
		{"default", 0, negativeTimeout},
		{"off", -1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, dir, ops := tracedMount(t, func(o *Options) { o.Tuning.NegativeTimeout = tc.neg })
			a := testFolder(t, dir, 1, "a")
			if err := f.AddView(a); err != nil {
				t.Fatal(err)
			}
			// The other node: a second mount of the same volume.
			mnt2 := filepath.Join(dir, "mnt2")
			if err := os.Mkdir(mnt2, 0o755); err != nil {
				t.Fatal(err)
			}
			f2, err := Mount(Options{MountPoint: mnt2, StorageUID: 1100, StorageGID: 1100, Logger: zerolog.Nop()})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f2.Close() })
			a2 := a
			a2.Name = "other-node"
			if err := f2.AddView(a2); err != nil {
				t.Fatal(err)
			}
			va := filepath.Join(f.MountPoint(), "sessions", "s1", "a")
			vo := filepath.Join(mnt2, "sessions", "s1", "other-node")
			back := filepath.Join(dir, "vol", a.FolderRel)
			if _, err := os.Stat(va); err != nil {
				t.Fatal(err)
			}

			for _, w := range []struct {
				by   string
				make func(name string) error
			}{
				{"storage", func(name string) error { return os.WriteFile(filepath.Join(back, name), nil, 0o644) }},
				{"other node", func(name string) error { return os.WriteFile(filepath.Join(vo, name), nil, 0o644) }},
			} {
				name := "m-" + strings.ReplaceAll(w.by, " ", "-")
				p := filepath.Join(va, name)
				before := ops.countLookups(name)
				looked := time.Now()
				for i := 0; i < 10; i++ {
					if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
						t.Fatalf("%s before it is made: %v", p, err)
					}
				}
				n := ops.countLookups(name) - before
				// The kernel may drop unused entries under memory
				// pressure or drop_caches: allow for a few.
				if tc.want > 0 && n > 3 {
					t.Errorf("10 stats of a missing name: %d lookups, want 1 (negative entry kept)", n)
				}
				if tc.want == 0 && n < 10 {
					t.Errorf("10 stats of a missing name: %d lookups, want 10 (no negative entries)", n)
				}
				if err := w.make(name); err != nil {
					t.Fatal(err)
				}
				made := time.Now()
				for {
					_, err := os.Lstat(p)
					if err == nil {
						break
					}
					if !errors.Is(err, os.ErrNotExist) {
						t.Fatal(err)
					}
					if tc.want == 0 {
						t.Fatalf("made by %s: %s hidden with negative entries off", w.by, p)
					}
					if time.Since(looked) > tc.want+500*time.Millisecond {
						t.Fatalf("made by %s: %s still hidden %v after the negative lookup, bound %v", w.by, p, time.Since(looked), tc.want)
					}
					time.Sleep(10 * time.Millisecond)
				}
				t.Logf("made by %s: visible %v after it was made, %v after the negative lookup", w.by, time.Since(made).Round(time.Millisecond), time.Since(looked).Round(time.Millisecond))
			}
		})
	}
}
