package fs

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/internal/backing"
	"github.com/vfolder/vfolder/meta"
	"github.com/vfolder/vfolder/quota"
)

// Tests of the write path's quota rules: O_DIRECT at the limit, failed
// writes, fallocate KEEP_SIZE.

// directIOVolume makes the volume directory vol support O_DIRECT: it is
// left alone when its file system does (ext4, xfs...), else a small ext4
// on a loop file in the test's temp dir is mounted there, unmounted at
// cleanup (registered here, so it runs after the FUSE mount made later is
// closed). It skips the test when that cannot be done.
func directIOVolume(t *testing.T, vol string) {
	t.Helper()
	if directIOWorks(vol) {
		return
	}
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skipf("the temp dir's file system has no O_DIRECT and mkfs.ext4 is missing: %v", err)
	}
	img := filepath.Join(filepath.Dir(vol), "ext4.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 64<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", img).CombinedOutput(); err != nil {
		t.Skipf("mkfs.ext4: %v %s", err, out)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, vol).CombinedOutput(); err != nil {
		t.Skipf("the temp dir's file system has no O_DIRECT and a loop mount failed: %v %s", err, out)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(vol, 0); err != nil {
			t.Errorf("unmount the loop file system: %v", err)
			unix.Unmount(vol, unix.MNT_DETACH)
		}
	})
	if !directIOWorks(vol) {
		t.Skip("no O_DIRECT even on a loop ext4")
	}
}

func directIOWorks(dir string) bool {
	p := filepath.Join(dir, ".odirect-probe")
	defer os.Remove(p)
	fd, err := unix.Open(p, unix.O_CREAT|unix.O_WRONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	_, err = unix.Pwrite(fd, alignedBuf(4096), 0)
	return err == nil
}

// alignedBuf is n zero bytes at a 4096-aligned address, as direct I/O
// callers use.
func alignedBuf(n int) []byte {
	b := make([]byte, n+4096)
	off := (4096 - int(uintptr(unsafe.Pointer(&b[0]))%4096)) % 4096
	return b[off : off+n]
}

// markVolume writes the volume marker the ledger's check looks for.
func markVolume(t *testing.T, dir string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "vol", "version.txt"), []byte("3"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// checkNoDrift runs the ledger's check of the folder of s and fails on any
// difference between the ledger and storage.
func checkNoDrift(t *testing.T, m *quota.Manager, dir string, s ViewSpec) {
	t.Helper()
	root, err := OpenFolder(filepath.Join(dir, "vol"), s.FolderRel)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	for i := 0; ; i++ {
		rep, err := m.Check(context.Background(), quota.ScopeKey{Volume: s.VolumeName, ID: s.Scope},
			[]quota.FolderRoot{{FolderID: s.FolderID, Dir: root}}, quota.CheckOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Busy > 0 && i < 100 {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if rep.Drift() {
			t.Errorf("the ledger differs from storage: %+v", rep.Findings)
		}
		return
	}
}

// TestFsDirectWriteQuota: O_DIRECT writes through an rw view, with and
// without a limit. A write cut at the limit is cut to a multiple of the
// backing file's direct I/O alignment and succeeds (short count); the
// next one gets EDQUOT. A write the backing file refuses (unaligned, as
// natively) charges nothing. The ledger matches storage throughout.
func TestFsDirectWriteQuota(t *testing.T) {
	m := testLedger(t)
	f, dir := testMountWith(t, func(o *Options) {
		o.Quota = m
		directIOVolume(t, filepath.Join(filepath.Dir(o.MountPoint), "vol"))
	})
	markVolume(t, dir)
	s := testFolder(t, dir, 1, "q")
	s.Mode, s.RWCanDelete = meta.PermRW, true
	if err := f.AddView(s); err != nil {
		t.Fatal(err)
	}
	sk := quota.ScopeKey{Volume: s.VolumeName, ID: s.Scope}
	view := filepath.Join(f.MountPoint(), "sessions", "s1", "q")
	back := filepath.Join(dir, "vol", s.FolderRel)
	sizeOf := func(name string) int64 { return statOf(t, filepath.Join(back, name)).Size }

	// Natively, an unaligned O_DIRECT write past the end fails.
	nfd, err := unix.Open(filepath.Join(back, "native"), unix.O_CREAT|unix.O_RDWR|unix.O_DIRECT, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	_, nerr := unix.Pwrite(nfd, alignedBuf(100), 8192)
	unix.Close(nfd)
	os.Remove(filepath.Join(back, "native"))

	for _, limit := range []int64{0, 1 << 30} {
		if err := m.SetLimit(sk, limit, 0); err != nil {
			t.Fatal(err)
		}
		name := "failed" + strconv.Itoa(int(limit>>30))
		fd, err := unix.Open(filepath.Join(view, name), unix.O_CREAT|unix.O_RDWR|unix.O_DIRECT, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		_, err = unix.Pwrite(fd, alignedBuf(100), 8192)
		if nerr != nil && err != nerr {
			t.Errorf("limit %d: unaligned O_DIRECT write past the end: %v, natively %v", limit, err, nerr)
		}
		if nerr == nil && err != nil {
			t.Errorf("limit %d: unaligned O_DIRECT write past the end: %v, natively it works", limit, err)
		}
		want := int64(0)
		if err == nil {
			want = 8292
		}
		if got := sizeOf(name); got != want {
			t.Errorf("limit %d: size %d after the write, want %d", limit, got, want)
		}
		// The folder root is charged its size as a directory too.
		rb := rootBytes(t, dir, s)
		if u := m.Usage(sk); u.Used != want+rb {
			t.Errorf("limit %d: usage %d after a failed write to an empty file, want %d (+%d of the folder root)", limit, u.Used-rb, want, rb)
		}
		checkNoDrift(t, m, dir, s)
		// Later aligned writes, inside and past the end, are charged as
		// they are.
		if n, err := unix.Pwrite(fd, alignedBuf(4096), 0); n != 4096 || err != nil {
			t.Errorf("limit %d: aligned O_DIRECT write: %d %v", limit, n, err)
		}
		if n, err := unix.Pwrite(fd, alignedBuf(8192), 16384); n != 8192 || err != nil {
			t.Errorf("limit %d: aligned O_DIRECT append: %d %v", limit, n, err)
		}
		if got, u := sizeOf(name), m.Usage(sk).Used-rb; got != 24576 || u != 24576 {
			t.Errorf("limit %d: size %d usage %d, want 24576", limit, got, u)
		}
		unix.Close(fd)
		if err := os.Remove(filepath.Join(view, name)); err != nil {
			t.Fatal(err)
		}
		waitUsage(t, m, sk, rootBytes(t, dir, s), 0)
	}

	// 100,000 bytes of limit, of which the folder root holds rb: a 128 KiB
	// write is cut to the alignment.
	rb := rootBytes(t, dir, s)
	room := 100000 - rb
	if err := m.SetLimit(sk, 100000, 0); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(filepath.Join(view, "cut"), unix.O_CREAT|unix.O_RDWR|unix.O_DIRECT, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	var x unix.Statx_t
	align := int64(4096)
	if err := unix.Statx(unix.AT_FDCWD, filepath.Join(back, "cut"), 0, unix.STATX_DIOALIGN, &x); err == nil &&
		x.Mask&unix.STATX_DIOALIGN != 0 && x.Dio_offset_align > 0 {
		align = int64(x.Dio_offset_align)
	}
	cut := room - room%align
	if n, err := unix.Pwrite(fd, alignedBuf(131072), 0); int64(n) != cut || err != nil {
		t.Errorf("O_DIRECT write of 131072 bytes with %d of room: %d %v, want %d (alignment %d)", room, n, err, cut, align)
	}
	if n, err := unix.Pwrite(fd, alignedBuf(int(align)), cut); err != unix.EDQUOT {
		t.Errorf("O_DIRECT write after the cut: %d %v, want EDQUOT", n, err)
	}
	if got, u := sizeOf("cut"), m.Usage(sk).Used; got != cut || u != cut+rb {
		t.Errorf("after the cut: size %d usage %d, want %d and %d", got, u, cut, cut+rb)
	}
	checkNoDrift(t, m, dir, s)
	// The bytes below one alignment unit are left to buffered writes,
	// which fill the scope to exactly the limit.
	bfd, err := unix.Open(filepath.Join(view, "cut"), unix.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(bfd)
	if n, err := unix.Pwrite(bfd, make([]byte, 4096), cut); int64(n) != room-cut || err != nil {
		t.Errorf("buffered write of the rest: %d %v, want %d", n, err, room-cut)
	}
	if got, u := sizeOf("cut"), m.Usage(sk).Used; got != room || u != 100000 {
		t.Errorf("at the limit: size %d usage %d, want %d and 100000", got, u, room)
	}
	if _, err := unix.Pwrite(fd, alignedBuf(int(align)), 131072); err != unix.EDQUOT {
		t.Errorf("O_DIRECT write at the limit: %v, want EDQUOT", err)
	}

	// copy_file_range into an O_DIRECT file is cut the same way.
	if err := m.SetLimit(sk, 100000+100000, 0); err != nil {
		t.Fatal(err)
	}
	src, err := unix.Open(filepath.Join(view, "src"), unix.O_CREAT|unix.O_RDWR, 0o644)
	if err == nil {
		// The source takes room too: 2*align bytes of it.
		_, err = unix.Pwrite(src, make([]byte, 2*align), 0)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(src)
	dst, err := unix.Open(filepath.Join(view, "dst"), unix.O_CREAT|unix.O_RDWR|unix.O_DIRECT, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dst)
	room = 100000 - 2*align
	for off := int64(0); ; {
		offIn, offOut := int64(0), off
		n, err := unix.CopyFileRange(src, &offIn, dst, &offOut, int(2*align), 0)
		if err == unix.EDQUOT {
			break
		}
		if err != nil || n <= 0 || int64(n)%align != 0 {
			t.Fatalf("copy_file_range into an O_DIRECT file at %d: %d %v", off, n, err)
		}
		off += int64(n)
		if off > room {
			t.Fatalf("copied %d bytes with %d of room", off, room)
		}
	}
	if got := sizeOf("dst"); got != room-room%align {
		t.Errorf("copy_file_range stopped at %d, want %d", got, room-room%align)
	}
	checkNoDrift(t, m, dir, s)
}

// TestFsFallocateKeepSize: with the quota on, fallocate that would hold
// space past the end without growing the file (KEEP_SIZE, ZERO_RANGE
// with KEEP_SIZE) is refused with EOPNOTSUPP and allocates nothing;
// inside the file it works, and the modes that change the size are
// charged as before. Without a ledger nothing is refused. (The kernel's
// FUSE client forwards only KEEP_SIZE, PUNCH_HOLE and ZERO_RANGE;
// TestFsAllocateRanges calls the handle for the other modes.)
func TestFsFallocateKeepSize(t *testing.T) {
	m := testLedger(t)
	f, dir := testMountWith(t, func(o *Options) { o.Quota = m })
	markVolume(t, dir)
	s := testFolder(t, dir, 1, "q")
	s.Mode = meta.PermRW
	if err := f.AddView(s); err != nil {
		t.Fatal(err)
	}
	sk := quota.ScopeKey{Volume: s.VolumeName, ID: s.Scope}
	if err := m.SetLimit(sk, 1<<20, 0); err != nil {
		t.Fatal(err)
	}
	view := filepath.Join(f.MountPoint(), "sessions", "s1", "q")
	back := filepath.Join(dir, "vol", s.FolderRel)
	fd, err := unix.Open(filepath.Join(view, "f"), unix.O_CREAT|unix.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	blocks := func() int64 { return statOf(t, filepath.Join(back, "f")).Blocks }

	for _, c := range []struct {
		name      string
		mode      uint32
		off, size int64
	}{
		{"KEEP_SIZE past the end", unix.FALLOC_FL_KEEP_SIZE, 0, 48 << 20},
		{"KEEP_SIZE within the limit", unix.FALLOC_FL_KEEP_SIZE, 0, 4096},
		{"ZERO_RANGE|KEEP_SIZE", unix.FALLOC_FL_ZERO_RANGE | unix.FALLOC_FL_KEEP_SIZE, 0, 1 << 20},
	} {
		if err := unix.Fallocate(fd, c.mode, c.off, c.size); err != unix.EOPNOTSUPP {
			t.Errorf("%s on an empty file: %v, want EOPNOTSUPP", c.name, err)
		}
	}
	if b := blocks(); b != 0 {
		t.Errorf("refused allocations left %d blocks", b)
	}
	// Mode 0 grows the file: charged, all or nothing.
	if err := unix.Fallocate(fd, 0, 0, 64<<10); err != nil {
		t.Fatalf("fallocate 64 KiB: %v", err)
	}
	if err := unix.Fallocate(fd, 0, 0, 2<<20); err != unix.EDQUOT {
		t.Errorf("fallocate past the limit: %v, want EDQUOT", err)
	}
	rb := rootBytes(t, dir, s) // the folder root is charged its size
	waitUsage(t, m, sk, 64<<10+rb, 1)
	// Inside the file, KEEP_SIZE allocates nothing the size does not
	// count; straddling the end it is refused.
	if err := unix.Fallocate(fd, unix.FALLOC_FL_KEEP_SIZE, 4096, 8192); err != nil {
		t.Errorf("KEEP_SIZE inside the file: %v", err)
	}
	if err := unix.Fallocate(fd, unix.FALLOC_FL_ZERO_RANGE|unix.FALLOC_FL_KEEP_SIZE, 0, 4096); err != nil {
		t.Errorf("ZERO_RANGE|KEEP_SIZE inside the file: %v", err)
	}
	if err := unix.Fallocate(fd, unix.FALLOC_FL_KEEP_SIZE, 60<<10, 8192); err != unix.EOPNOTSUPP {
		t.Errorf("KEEP_SIZE across the end: %v, want EOPNOTSUPP", err)
	}
	// PUNCH_HOLE keeps working and changes no usage.
	if err := unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 0, 8192); err != nil {
		t.Errorf("PUNCH_HOLE: %v", err)
	}
	waitUsage(t, m, sk, 64<<10+rb, 1)
	// ZERO_RANGE past the end grows the file: charged.
	if err := unix.Fallocate(fd, unix.FALLOC_FL_ZERO_RANGE, 60<<10, 8192); err != nil {
		t.Errorf("ZERO_RANGE past the end: %v", err)
	}
	waitUsage(t, m, sk, 68<<10+rb, 1)
	st := statOf(t, filepath.Join(back, "f"))
	if st.Blocks*512 > st.Size+4096 {
		t.Errorf("%d bytes allocated for a %d-byte file", st.Blocks*512, st.Size)
	}
	checkNoDrift(t, m, dir, s)

	// Without a ledger there is nothing to get around.
	f2, dir2 := testMount(t)
	s2 := testFolder(t, dir2, 2, "free")
	if err := f2.AddView(s2); err != nil {
		t.Fatal(err)
	}
	fd2, err := unix.Open(filepath.Join(f2.MountPoint(), "sessions", "s1", "free", "f"), unix.O_CREAT|unix.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd2)
	if err := unix.Fallocate(fd2, unix.FALLOC_FL_KEEP_SIZE, 0, 1<<20); err != nil {
		t.Errorf("KEEP_SIZE without a ledger: %v", err)
	}
}

// TestFsAllocateRanges: the modes the kernel's FUSE client does not
// forward today (COLLAPSE_RANGE, INSERT_RANGE), called on a handle as
// go-fuse would: the ledger follows the size, all or nothing.
func TestFsAllocateRanges(t *testing.T) {
	h, m, sk := ledgerHandle(t, 1<<20)
	defer h.Release(context.Background())
	ctx := context.Background()
	if errno := h.Allocate(ctx, 0, 256<<10, 0); errno != 0 {
		t.Fatalf("fallocate 256 KiB: %v", errno)
	}
	if errno := h.Allocate(ctx, 0, 64<<10, unix.FALLOC_FL_COLLAPSE_RANGE); errno == syscall.EOPNOTSUPP || errno == syscall.EINVAL {
		t.Skipf("the temp dir's file system has no COLLAPSE_RANGE: %v", errno)
	} else if errno != 0 {
		t.Fatalf("COLLAPSE_RANGE: %v", errno)
	}
	if u := m.Usage(sk); u.Used != 192<<10 {
		t.Errorf("after COLLAPSE_RANGE of 64 KiB: usage %d, want %d", u.Used, 192<<10)
	}
	if errno := h.Allocate(ctx, 0, 128<<10, unix.FALLOC_FL_INSERT_RANGE); errno != 0 {
		t.Fatalf("INSERT_RANGE: %v", errno)
	}
	if u := m.Usage(sk); u.Used != 320<<10 {
		t.Errorf("after INSERT_RANGE of 128 KiB: usage %d, want %d", u.Used, 320<<10)
	}
	if errno := h.Allocate(ctx, 0, 1<<20, unix.FALLOC_FL_INSERT_RANGE); errno != syscall.EDQUOT {
		t.Errorf("INSERT_RANGE past the limit: %v, want EDQUOT", errno)
	}
	if errno := h.Allocate(ctx, 0, 4096, unix.FALLOC_FL_KEEP_SIZE); errno != 0 {
		t.Errorf("KEEP_SIZE inside the file: %v", errno)
	}
	if errno := h.Allocate(ctx, 320<<10, 4096, unix.FALLOC_FL_KEEP_SIZE); errno != syscall.EOPNOTSUPP {
		t.Errorf("KEEP_SIZE past the end: %v, want EOPNOTSUPP", errno)
	}
	after, err := backing.Fstat(h.fd)
	if err != nil {
		t.Fatal(err)
	}
	if u := m.Usage(sk); after.Size != 320<<10 || u.Used != after.Size {
		t.Errorf("size %d, usage %d; want both %d", after.Size, u.Used, 320<<10)
	}
}

// ledgerHandle opens a new file in a temporary directory through an rw
// view accounted in a scope with the given byte limit, as go-fuse would
// call it without a mount: the data path with the ledger on.
func ledgerHandle(t *testing.T, limit int64) (*file, *quota.Manager, quota.ScopeKey) {
	t.Helper()
	m := testLedger(t)
	dir := t.TempDir()
	var rootSt unix.Stat_t
	if err := unix.Stat(dir, &rootSt); err != nil {
		t.Fatal(err)
	}
	sk := quota.ScopeKey{Volume: "vol", ID: meta.ScopeID{Kind: meta.KindUser, UUID: strings.Repeat("5", 32)}}
	if err := m.SetLimit(sk, limit, 0); err != nil {
		t.Fatal(err)
	}
	v := &view{fs: &FS{log: zerolog.Nop(), locks: new(sizeLocks), peers: new(peerTable)}, spec: ViewSpec{Mode: meta.PermRW},
		q: quotaHook{m: m, scope: sk, folder: strings.Repeat("1", 32), rootDev: rootSt.Dev}}
	n := &node{v: v}
	fd, err := unix.Open(filepath.Join(dir, "f"), unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	st, err := backing.Fstat(fd)
	if err != nil {
		t.Fatal(err)
	}
	h, errno := n.newHandle(fd, unix.O_RDWR, &st, "f", false)
	if errno != 0 {
		t.Fatal(errno)
	}
	return h, m, sk
}
