package fs

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/meta"
	"github.com/vfolder/vfolder/quota"
)

// rootBytes is what the folder root of spec is charged: its st_size.
func rootBytes(t *testing.T, dir string, spec ViewSpec) int64 {
	t.Helper()
	st, err := os.Lstat(filepath.Join(dir, "vol", spec.FolderRel))
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// walkTruth is what a folder directory holds as the ledger counts it,
// found by a walk independent of the ledger's own: each inode once,
// regular files, directories (the root included) and symlinks by st_size,
// plus the user.* xattrs of files and directories; every object but the
// root is one inode.
func walkTruth(t *testing.T, root string) (bytes, inodes int64) {
	t.Helper()
	seen := map[[2]uint64]bool{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		if k := [2]uint64{st.Dev, st.Ino}; seen[k] {
			return nil
		} else {
			seen[k] = true
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG, unix.S_IFDIR:
			bytes += st.Size + userXattrs(t, p)
		case unix.S_IFLNK:
			bytes += st.Size
		}
		if p != root {
			inodes++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return bytes, inodes
}

// userXattrs sums len(name)+len(value) of the user.* attributes of p.
func userXattrs(t *testing.T, p string) int64 {
	t.Helper()
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if errors.Is(err, unix.ENOTSUP) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if !strings.HasPrefix(name, "user.") {
			continue
		}
		vn, err := unix.Lgetxattr(p, name, nil)
		if err != nil {
			t.Fatal(err)
		}
		sum += int64(len(name) + vn)
	}
	return sum
}

// assertLedgerMatches compares the scope's usage (one folder) with a
// walk of the folder directory, to the byte, and runs a check that must
// find nothing.
func assertLedgerMatches(t *testing.T, m *quota.Manager, spec ViewSpec, back string) {
	t.Helper()
	sk := quota.ScopeKey{Volume: spec.VolumeName, ID: spec.Scope}
	b, i := walkTruth(t, back)
	var u quota.Usage
	// Handles are released asynchronously after close; nothing else moves.
	for range 200 {
		if u = m.Usage(sk); u.Used == b && u.UsedInodes == i {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if u.Used != b || u.UsedInodes != i {
		t.Fatalf("ledger %d bytes %d inodes, walk of the folder %d bytes %d inodes", u.Used, u.UsedInodes, b, i)
	}
	dir, err := os.Open(back)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	rep, err := m.Check(context.Background(), sk, []quota.FolderRoot{{FolderID: spec.FolderID, Dir: dir}}, quota.CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Drift() {
		t.Fatalf("check found drift: %+v", rep.Findings)
	}
}

// chargeOps runs n random namespace and xattr operations below view
// (through the FUSE mount), in directories d0..d2 and the view root: files
// written, long-named hard links, renames of files and directories (also
// over existing entries), mkdir, rmdir, symlinks, unlinks, truncates,
// user.* xattrs set, replaced and removed. Errors a file system may give
// for such a mix are accepted; anything else fails the test.
func chargeOps(t *testing.T, view string, seed uint64, n int, done *opCounts) {
	rng := rand.New(rand.NewPCG(seed, 7))
	dirs := []string{".", "d0", "d1", "d2", "d0/e"}
	long := strings.Repeat("L", 200)
	name := func() string {
		d := dirs[rng.IntN(len(dirs))]
		switch rng.IntN(4) {
		case 0:
			return filepath.Join(view, d, fmt.Sprintf("%s%d", long, rng.IntN(6)))
		case 1:
			return filepath.Join(view, d, fmt.Sprintf("s%d", rng.IntN(3)))
		}
		return filepath.Join(view, d, fmt.Sprintf("f%d", rng.IntN(6)))
	}
	ok := func(what string, err error) {
		if err == nil {
			done.add(strings.Fields(what)[0])
			return
		}
		// ESTALE: a name the other view just moved (the kernel's entry
		// for it is stale); ELOOP: a name the other view just made a
		// symlink, which the daemon does not follow.
		for _, e := range []error{unix.ENOENT, unix.EEXIST, unix.ENOTEMPTY, unix.ENODATA, unix.EISDIR, unix.ENOTDIR, unix.EINVAL, unix.EPERM, unix.ENOSPC, unix.E2BIG, unix.ESTALE, unix.ELOOP} {
			if errors.Is(err, e) {
				return
			}
		}
		if err != nil {
			t.Errorf("%s: %v", what, err)
		}
	}
	buf := make([]byte, 6000)
	// A directory of its own, removed at the end: at least one rmdir
	// that succeeds, whatever the random mix.
	tmp := filepath.Join(view, fmt.Sprintf("t%x", seed))
	ok("mkdir", os.Mkdir(tmp, 0o755))
	defer func() { ok("rmdir", unix.Rmdir(tmp)) }()
	for range n {
		switch op := rng.IntN(100); {
		case op < 20:
			p := name()
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o644)
			if err != nil {
				ok("create "+p, err)
				continue
			}
			_, err = f.WriteAt(buf[:rng.IntN(len(buf))], rng.Int64N(4000))
			ok("write "+p, err)
			if err := f.Close(); err != nil {
				t.Errorf("close %s: %v", p, err)
			}
		case op < 32:
			ok("link", os.Link(name(), name()))
		case op < 42:
			ok("unlink", os.Remove(name()))
		case op < 52:
			ok("rename", os.Rename(name(), name()))
		case op < 56:
			d := dirs[1+rng.IntN(len(dirs)-1)]
			if rng.IntN(2) == 0 {
				d = filepath.Join(dirs[rng.IntN(len(dirs))], fmt.Sprintf("x%d", rng.IntN(3)))
			}
			ok("mkdir", os.Mkdir(filepath.Join(view, d), 0o755))
		case op < 59:
			to := []string{"d1/moved", "d2", "d0/e2"}[rng.IntN(3)]
			ok("rename dir", os.Rename(filepath.Join(view, dirs[1+rng.IntN(len(dirs)-1)]), filepath.Join(view, to)))
			ok("rename dir back", os.Rename(filepath.Join(view, to), filepath.Join(view, dirs[1+rng.IntN(len(dirs)-1)])))
		case op < 62:
			d := dirs[1+rng.IntN(len(dirs)-1)]
			if rng.IntN(4) != 0 {
				d = filepath.Join(dirs[rng.IntN(len(dirs))], fmt.Sprintf("x%d", rng.IntN(3)))
			}
			ok("rmdir", unix.Rmdir(filepath.Join(view, d)))
		case op < 68:
			ok("symlink", os.Symlink(strings.Repeat("t", 1+rng.IntN(250)), name()))
		case op < 72:
			ok("truncate", os.Truncate(name(), rng.Int64N(8000)))
		case op < 90:
			var p string
			if rng.IntN(3) == 0 {
				p = filepath.Join(view, dirs[rng.IntN(len(dirs))])
			} else {
				p = name()
			}
			ok("setxattr "+p, unix.Setxattr(p, fmt.Sprintf("user.k%d", rng.IntN(3)), buf[:rng.IntN(2000)], 0))
		default:
			p := name()
			if rng.IntN(3) == 0 {
				p = filepath.Join(view, dirs[rng.IntN(len(dirs))])
			}
			ok("removexattr "+p, unix.Removexattr(p, fmt.Sprintf("user.k%d", rng.IntN(3))))
		}
	}
}

// opCounts counts the operations of chargeOps that succeeded, by kind.
type opCounts struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *opCounts) add(op string) {
	c.mu.Lock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[op]++
	c.mu.Unlock()
}

// check fails the test unless every kind of operation succeeded at least
// once: a workload that did nothing proves nothing.
func (c *opCounts) check(t *testing.T) {
	t.Helper()
	for _, op := range []string{"write", "link", "unlink", "rename", "mkdir", "rmdir", "symlink", "truncate", "setxattr", "removexattr"} {
		if c.n[op] == 0 {
			t.Errorf("no %s succeeded (%v)", op, c.n)
		}
	}
	t.Logf("operations done: %v", c.n)
}

// xattrsOn reports whether the file system of dir stores user xattrs.
func xattrsOn(dir string) bool {
	p := filepath.Join(dir, ".xattr-probe")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		return false
	}
	defer os.Remove(p)
	return unix.Setxattr(p, "user.p", nil, 0) == nil
}

// TestFsChargeMatchesWalk: after random create, link, rename, mkdir,
// rmdir, symlink and xattr workloads through a real mount, the ledger
// equals a walk of the folder to the byte: sequentially (checked every
// 50 operations), then with writers in two views of the folder at once.
func TestFsChargeMatchesWalk(t *testing.T) {
	m := testLedger(t)
	f, dir := testMountWith(t, func(o *Options) { o.Quota = m })
	if !xattrsOn(dir) {
		t.Skip("the test directory's file system has no user xattrs")
	}
	s := testFolder(t, dir, 1, "a")
	s.Mode = meta.PermWD
	other := s
	other.Namespace, other.Key = NSUsers, strings.Repeat("5", 32)
	for _, v := range []ViewSpec{s, other} {
		if err := f.AddView(v); err != nil {
			t.Fatal(err)
		}
	}
	back := filepath.Join(dir, "vol", s.FolderRel)
	view := filepath.Join(f.MountPoint(), "sessions", "s1", "a")
	view2 := filepath.Join(f.MountPoint(), "users", other.Key, "a")
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	var done opCounts
	for i := range 8 {
		chargeOps(t, view, seed+uint64(i), 50, &done)
		if t.Failed() {
			t.FailNow()
		}
		assertLedgerMatches(t, m, s, back)
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v := view
			if w%2 == 1 {
				v = view2
			}
			chargeOps(t, v, seed+100+uint64(w), 150, &done)
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	assertLedgerMatches(t, m, s, back)
	done.check(t)
}

// loopExt4 makes a private ext4 file system of size bytes (4 KiB blocks,
// ea_inode so that an xattr value may reach 64 KiB) on a loop device,
// mounted below a temp dir, and unmounts it at cleanup. It skips when
// loop devices or mkfs.ext4 are missing.
func loopExt4(t *testing.T, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for a loop mount")
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skipf("needs loop devices: %v", err)
	}
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		t.Skipf("needs mkfs.ext4: %v", err)
	}
	base := t.TempDir()
	img, mnt := filepath.Join(base, "img"), filepath.Join(base, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, size); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(mkfs, "-q", "-F", "-b", "4096", "-O", "ea_inode", img).CombinedOutput(); err != nil {
		t.Skipf("mkfs.ext4: %v: %s", err, out)
	}
	// mount(8) sets up the loop device and frees it at unmount.
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		t.Skipf("loop mount: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(mnt, 0); err != nil {
			t.Errorf("unmount the loop file system: %v", err)
			unix.Unmount(mnt, unix.MNT_DETACH)
		}
		if left := mountsUnder(base); len(left) > 0 {
			t.Errorf("mounts left: %v", left)
		}
	})
	return mnt
}

// volUsed is how many bytes the file system of dir has in use.
func volUsed(t *testing.T, dir string) int64 {
	t.Helper()
	unix.Sync()
	var s unix.Statfs_t
	if err := unix.Statfs(dir, &s); err != nil {
		t.Fatal(err)
	}
	return int64(s.Blocks-s.Bfree) * s.Bsize
}

// folderOn makes folder n of user (one hex digit) on the volume vol.
func folderOn(t *testing.T, vol string, n int, user, name string) ViewSpec {
	t.Helper()
	sc := meta.ScopeID{Kind: meta.KindUser, UUID: strings.Repeat(user, 32)}
	id := fmt.Sprintf("%032x", n)
	rel := meta.FolderRelPath(sc, id)
	if err := os.MkdirAll(filepath.Join(vol, rel), 0o755); err != nil {
		t.Fatal(err)
	}
	return ViewSpec{
		Namespace: NSSessions, Key: "s1", Name: name,
		VolumeName: "vol", VolumePath: vol, FolderRel: rel,
		Mode: meta.PermWD, UID: 1000, GID: 1000,
		FolderID: id, Scope: sc,
	}
}

// TestFsChargeAttacks reproduces the two ways an adversarial test filled
// a volume outside the quota: files carrying 64 KiB user.* xattrs, and a
// directory grown by hard links with long names. Under a 1 MiB quota on a
// private 96 MiB ext4 volume, both end in EDQUOT, the volume grows by at
// most the quota plus a stated slack, the ledger equals the disk, and
// another user's folder on the volume still takes writes.
//
// The slack is what the file system rounds up beyond what is charged,
// which the charge (logical sizes, like file sizes) does not count: for
// each file with an xattr stored in its own inode, the tail of the value's
// last block and one xattr block (4 KiB), plus the block bitmaps and
// inode-table blocks ext4 writes: 64 KiB here, for a few dozen files.
func TestFsChargeAttacks(t *testing.T) {
	vol := loopExt4(t, 96<<20)
	m := testLedger(t)
	f, _ := testMountWith(t, func(o *Options) { o.Quota = m })
	atk := folderOn(t, vol, 1, "a", "atk")
	vic := folderOn(t, vol, 2, "b", "vic")
	vic.Key = "s2"
	for _, v := range []ViewSpec{atk, vic} {
		if err := f.AddView(v); err != nil {
			t.Fatal(err)
		}
	}
	const limit = 1 << 20
	sk := quota.ScopeKey{Volume: atk.VolumeName, ID: atk.Scope}
	if err := m.SetLimit(sk, limit, 0); err != nil {
		t.Fatal(err)
	}
	view := filepath.Join(f.MountPoint(), "sessions", "s1", "atk")
	before := volUsed(t, vol)

	// Attack 1: 2,500 files with a 64 KiB user.* attribute each.
	value := make([]byte, 64<<10)
	var xerr error
	files := 0
	for i := range 2500 {
		p := filepath.Join(view, fmt.Sprintf("x%04d", i))
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			xerr = err
			break
		}
		files++
		// Distinct values: ext4 shares the inode of equal large values.
		binary.LittleEndian.PutUint64(value, uint64(i)+1)
		if err := unix.Setxattr(p, "user.fill", value, 0); err != nil {
			xerr = err
			break
		}
	}
	if !errors.Is(xerr, unix.EDQUOT) {
		t.Fatalf("xattr attack: stopped by %v after %d files, want EDQUOT", xerr, files)
	}
	if u := m.Usage(sk).Used; u > limit {
		t.Fatalf("usage %d over the %d limit", u, limit)
	}
	const slack = 64 << 10
	grown := volUsed(t, vol) - before
	if grown > limit+slack {
		t.Fatalf("xattr attack: the volume grew by %d bytes under a %d quota (slack %d)", grown, limit, slack)
	}
	t.Logf("xattr attack: %d files, the volume grew by %d bytes", files, grown)
	assertLedgerMatches(t, m, atk, filepath.Join(vol, atk.FolderRel))

	// Attack 2: hard links with 255-byte names in one directory, after
	// the xattrs are removed to make room.
	for i := range files {
		p := filepath.Join(view, fmt.Sprintf("x%04d", i))
		if err := unix.Removexattr(p, "user.fill"); err != nil && !errors.Is(err, unix.ENODATA) {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(view, "links"), 0o755); err != nil {
		t.Fatal(err)
	}
	var lerr error
	links := 0
	for i := 0; i < 100000; i++ {
		name := fmt.Sprintf("%05d%s", i, strings.Repeat("n", 250))
		if lerr = os.Link(filepath.Join(view, "x0000"), filepath.Join(view, "links", name)); lerr != nil {
			break
		}
		links++
	}
	if !errors.Is(lerr, unix.EDQUOT) {
		t.Fatalf("link attack: stopped by %v after %d links, want EDQUOT", lerr, links)
	}
	st, err := os.Stat(filepath.Join(vol, atk.FolderRel, "links"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() < limit/2 {
		t.Fatalf("the directory reached %d bytes only: the attack did not run", st.Size())
	}
	if u := m.Usage(sk).Used; u > limit {
		t.Fatalf("usage %d over the %d limit", u, limit)
	}
	if grown := volUsed(t, vol) - before; grown > limit+slack {
		t.Fatalf("link attack: the volume grew by %d bytes under a %d quota (slack %d)", grown, limit, slack)
	} else {
		t.Logf("link attack: %d links (a directory of %d bytes), the volume grew by %d bytes", links, st.Size(), grown)
	}
	assertLedgerMatches(t, m, atk, filepath.Join(vol, atk.FolderRel))

	// The other user is not starved.
	vp := filepath.Join(f.MountPoint(), "sessions", "s2", "vic", "data")
	if err := os.WriteFile(vp, make([]byte, 8<<20), 0o644); err != nil {
		t.Fatalf("another user's write: %v", err)
	}
	assertLedgerMatches(t, m, vic, filepath.Join(vol, vic.FolderRel))
}
