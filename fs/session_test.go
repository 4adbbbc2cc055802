package fs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/internal/backing"
	"github.com/vfolder/vfolder/meta"
	"github.com/vfolder/vfolder/quota"
)

// TestFsSessionSuperblocks: each session's views live in a superblock of
// their own, mounted on sessions/<sid> with the first view and detached
// with the last; the paths stay <mnt>/sessions/<sid>/<name>; Views lists
// them all; the key directory goes with the superblock.
func TestFsSessionSuperblocks(t *testing.T) {
	f, dir := testMount(t)
	mnt := f.MountPoint()
	a := testFolder(t, dir, 1, "a")
	b := a
	b.Name = "b"
	other := a
	other.Key = "s2"
	user := a
	user.Namespace, user.Key = NSUsers, strings.Repeat("7", 32)
	for _, s := range []ViewSpec{a, b, other, user} {
		if err := f.AddView(s); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(mnt, "sessions", "s1", "a", "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	devOf := func(p string) uint64 {
		t.Helper()
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			t.Fatal(err)
		}
		return st.Dev
	}
	devs := map[string]uint64{}
	for _, p := range []string{"", "sessions/s1", "sessions/s1/a", "sessions/s1/b", "sessions/s2", "sessions/s2/a", "users/" + user.Key + "/a"} {
		devs[p] = devOf(filepath.Join(mnt, p))
	}
	if devs["sessions/s1"] == devs[""] || devs["sessions/s2"] == devs[""] || devs["sessions/s1"] == devs["sessions/s2"] {
		t.Errorf("sessions share a superblock with each other or with the node-wide one: %v", devs)
	}
	if devs["sessions/s1/a"] != devs["sessions/s1"] || devs["sessions/s1/b"] != devs["sessions/s1"] || devs["users/"+user.Key+"/a"] != devs[""] {
		t.Errorf("views are not in their superblocks: %v", devs)
	}
	names, err := os.ReadDir(filepath.Join(mnt, "sessions", "s1"))
	if err != nil || len(names) != 2 {
		t.Errorf("session root lists %v %v; want its two views", names, err)
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(mnt, "sessions", "s1"), &st); err != nil || st.Mode != unix.S_IFDIR|0o700 || st.Uid != 0 {
		t.Errorf("session root: mode %o uid %d %v; want a root-only directory", st.Mode, st.Uid, err)
	}
	if got := len(f.Views()); got != 4 {
		t.Errorf("Views lists %d views; want 4", got)
	}
	if err := f.AddView(b); err != nil {
		t.Errorf("identical AddView in a session superblock: %v", err)
	}
	b2 := b
	b2.Mode = meta.PermRO
	if err := f.AddView(b2); !errors.Is(err, meta.ErrExists) {
		t.Errorf("another view at a taken session place: %v", err)
	}
	// A failed first view leaves no superblock behind.
	bad := a
	bad.Key, bad.FolderRel = "s3", a.FolderRel[:len(a.FolderRel)-1]+"0"
	if err := f.AddView(bad); !errors.Is(err, meta.ErrNotFound) {
		t.Errorf("view of a missing folder: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(mnt, "sessions", "s3")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("sessions/s3 after a failed first view: %v", err)
	}
	// Its superblock, retired, ends by itself (nothing refers to it).
	retiredOf := func(sid string) (n int) {
		f.sessMu.Lock()
		defer f.sessMu.Unlock()
		for s := range f.retired {
			if s.session == sid {
				n++
			}
		}
		return n
	}
	for deadline := time.Now().Add(10 * time.Second); retiredOf("s3") > 0 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if n := retiredOf("s3"); n != 0 {
		t.Errorf("the superblock of the failed session s3 did not end (%d retired)", n)
	}

	// The last view of s1 goes: its superblock with it, once the open
	// file is closed; the file keeps working until then.
	fd, err := unix.Open(filepath.Join(mnt, "sessions", "s1", "a", "f"), unix.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"a", "b"} {
		if err := f.RemoveView(NSSessions, "s1", n); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.RemoveView(NSSessions, "s1", "a"); !errors.Is(err, meta.ErrNotFound) {
		t.Errorf("removing a view of a session that has none: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(mnt, "sessions", "s1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("sessions/s1 after its last view: %v", err)
	}
	for _, m := range mountsUnder(dir) {
		if m == filepath.Join(mnt, "sessions", "s1") {
			t.Errorf("the superblock of s1 is still mounted")
		}
	}
	buf := make([]byte, 1)
	if n, err := unix.Pread(fd, buf, 0); n != 1 || err != nil {
		t.Errorf("read of a file open in a retired superblock: %d %v", n, err)
	}
	retired := retiredOf("s1")
	if retired != 1 {
		t.Errorf("%d retired superblocks while a file is open; want 1", retired)
	}
	unix.Close(fd)
	deadline := time.Now().Add(10 * time.Second)
	for retired > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		retired = retiredOf("s1")
	}
	if retired != 0 {
		t.Errorf("the retired superblock did not end once nothing referred to it")
	}
	// The session comes back: a new superblock at the same path.
	if err := f.AddView(a); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(mnt, "sessions", "s1", "a", "f")); err != nil || string(got) != "x" {
		t.Errorf("view of a session made again: %q %v", got, err)
	}
}

// TestFsSharedSizeLocks: two superblocks writing one backing file share
// its size lock and its state (one openInode), and the ledger counts the
// file once, to the byte, under concurrent writers in both.
func TestFsSharedSizeLocks(t *testing.T) {
	m := testLedger(t)
	f, dir := testMountWith(t, func(o *Options) { o.Quota = m })
	a := testFolder(t, dir, 1, "a")
	a.Mode = meta.PermRW
	u := a
	u.Namespace, u.Key = NSUsers, strings.Repeat("7", 32)
	for _, s := range []ViewSpec{a, u} {
		if err := f.AddView(s); err != nil {
			t.Fatal(err)
		}
	}
	sk := quota.ScopeKey{Volume: a.VolumeName, ID: a.Scope}
	if err := m.SetLimit(sk, 1<<30, 0); err != nil {
		t.Fatal(err)
	}
	if sess := f.sessions["s1"]; sess == nil || sess.locks != f.locks || sess.peers != f.peers {
		t.Fatalf("the session superblock does not share the node-wide one's locks and peers")
	}
	paths := []string{
		filepath.Join(f.MountPoint(), "sessions", "s1", "a", "f"),
		filepath.Join(f.MountPoint(), "users", u.Key, "a", "f"),
	}
	fds := make([]int, len(paths))
	for i, p := range paths {
		fd, err := unix.Open(p, unix.O_WRONLY|unix.O_CREAT|unix.O_CLOEXEC, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		fds[i] = fd
	}
	st, err := backing.Lstat(unix.AT_FDCWD, filepath.Join(dir, "vol", a.FolderRel, "f"))
	if err != nil {
		t.Fatal(err)
	}
	sp := f.locks.of(st.Dev, st.Ino)
	sp.Lock()
	oi := sp.open[devIno{st.Dev, st.Ino}]
	refs := 0
	if oi != nil {
		refs = oi.refs
	}
	sp.Unlock()
	if refs != 2 {
		t.Errorf("the file open for writing in two superblocks has %d handles in its openInode; want 2", refs)
	}
	const chunk, chunks = 4096, 64
	var wg sync.WaitGroup
	for w, fd := range fds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, chunk)
			for i := w; i < chunks; i += len(fds) {
				if n, err := unix.Pwrite(fd, buf, int64(i*chunk)); n != chunk || err != nil {
					t.Errorf("writer %d chunk %d: %d %v", w, i, n, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, fd := range fds {
		unix.Close(fd)
	}
	waitUsage(t, m, sk, chunk*chunks+rootBytes(t, dir, a), 1)
}
