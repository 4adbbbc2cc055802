package fs

import (
	"context"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/internal/backing"
	"github.com/vfolder/vfolder/quota"
)

// openPassFlags are the open flags handed on to the backing file.
// O_APPEND is not: the kernel computes the offset of every write, and a
// backing O_APPEND would make pwrite ignore it (and the quota hook miss the
// real growth). O_CREAT, O_EXCL and O_TRUNC are handled by the daemon.
const openPassFlags = unix.O_ACCMODE | unix.O_DIRECT | unix.O_SYNC | unix.O_DSYNC | unix.O_NOATIME

// file is an open regular file: a descriptor of the backing file. On a ro
// view it is offered to the kernel for passthrough (PassthroughFd); on rw
// and wd views never.
type file struct {
	n        *node
	dev, ino uint64 // identity of the backing file, for the size lock
	flags    int
	key      quota.InodeKey
	sp       *stripe    // the size lock of the backing file
	oi       *openInode // the file's shared state; nil unless open for writing
	held     bool       // a quota write hold is taken (released at Release)
	tmp      bool       // made by O_TMPFILE

	// changed is set by every operation that changes the file's data or
	// size through the handle; Flush (or Release) tells the other views.
	changed atomic.Bool

	// mu guards fd against Release while another node reopens it
	// (node.reopenHandle); go-fuse itself never runs an operation on a
	// handle concurrently with its Release.
	mu sync.RWMutex
	fd int
}

// newHandle turns an open backing descriptor of n into a handle. A handle
// open for writing is registered with its stripe (the size the write path
// works from) and takes a quota write hold; hint is the file's path in
// its folder for the ledger ("" if none). On failure fd is closed.
func (n *node) newHandle(fd int, bflags int, st *backing.Stat, hint string, tmp bool) (*file, syscall.Errno) {
	v := n.v
	f := &file{n: n, fd: fd, flags: bflags, dev: st.Dev, ino: st.Ino, tmp: tmp}
	f.sp = v.fs.locks.of(st.Dev, st.Ino)
	if f.writable() {
		f.key = v.q.key(st.Dev, st.Ino)
		f.sp.Lock()
		cur, err := backing.Fstat(fd)
		if err != nil {
			f.sp.Unlock()
			unix.Close(fd)
			return nil, toErrno(err)
		}
		// quota: a handle open for writing holds the inode until Release,
		// so that a crash while it is open is followed by a re-stat.
		if errno := v.openWrite(f.key, cur.Size, hint); errno != 0 {
			f.sp.Unlock()
			unix.Close(fd)
			return nil, errno
		}
		f.oi = f.sp.acquire(&cur)
		f.sp.Unlock()
		f.held = v.q.on()
	}
	n.addFile(f)
	return f, 0
}

// PassthroughFd offers the backing descriptor of a handle of a ro view to
// the kernel, which then reads the backing file itself. go-fuse asks at
// Open, for the first handle of a FUSE inode that has none registered; the
// kernel keeps its own reference, and every later open of the inode reuses
// it (with that open's flags). The choice depends on the view only, never
// on the open: one FUSE inode cannot mix passthrough and daemon opens, and
// a ro view's inodes are never opened for writing. Handles of rw and wd
// views are never offered, so every write reaches the quota hook.
func (f *file) PassthroughFd() (int, bool) {
	if !f.n.v.readOnly() || f.writable() || f.n.v.fs.opts.Tuning.NoPassthrough {
		return -1, false
	}
	return f.fd, true
}

func (f *file) writable() bool { return f.flags&unix.O_ACCMODE != unix.O_RDONLY }

func (f *file) stat() (backing.Stat, syscall.Errno) {
	st, err := backing.Fstat(f.fd)
	return st, toErrno(err)
}

// reopen opens the handle's file again through /proc (O_PATH or another
// access mode).
func (f *file) reopen(flags int) (int, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.fd < 0 {
		return -1, syscall.EBADF
	}
	return unix.Open(backing.ProcPath(f.fd), flags|unix.O_CLOEXEC, 0)
}

func (f *file) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	return fuse.ReadResultFd(uintptr(f.fd), off, len(dest)), 0
}

func (f *file) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	return f.write(ctx, [][]byte{data}, off)
}

func (f *file) Writev(ctx context.Context, data [][]byte, off int64) (uint32, syscall.Errno) {
	return f.write(ctx, data, off)
}

// write is the write path. The file's size is known from the handle's
// openInode, so a write needs no fstat: one that ends within the file
// holds the size lock shared and only writes; one past the end holds it
// exclusively around the quota reservation, and is cut short to what the
// scope has room for (on an O_DIRECT handle, to a multiple of the file's
// direct I/O alignment: directCut). A write that fails or comes back
// short reports the size the file has then (fstat), never its offset.
func (f *file) write(ctx context.Context, iov [][]byte, off int64) (uint32, syscall.Errno) {
	if off < 0 {
		return 0, syscall.EINVAL
	}
	total := int64(0)
	for _, b := range iov {
		total += int64(len(b))
	}
	if total == 0 {
		return 0, 0
	}
	oi := f.oi
	if oi == nil {
		return 0, syscall.EBADF
	}
	end := off + total
	sp := f.sp
	if !f.changed.Load() {
		f.changed.Store(true)
	}

	sp.RLock()
	if end <= oi.size && !needsKill(oi.mode) {
		w, errno := pwritev(f.fd, iov, off)
		sp.RUnlock()
		return w, errno
	}
	sp.RUnlock()

	sp.Lock()
	defer sp.Unlock()
	oi.mode = f.n.killPrivs(f.fd, oi.mode)
	if end <= oi.size {
		return pwritev(f.fd, iov, off)
	}
	v := f.n.v
	// quota: a write past the end grows the file up to end; it may be
	// cut short to the grant.
	granted, r, errno := v.reserveWrite(f.key, off, end)
	if errno != 0 {
		return 0, errno
	}
	want := total
	if granted < end {
		want = granted - off
		if f.flags&unix.O_DIRECT != 0 {
			want = directCut(f.fd, want)
		}
		if want <= 0 {
			// Room for less than one aligned block: nothing is written.
			r.Done(oi.size)
			quotaRefused(v.q.scope)
			return 0, syscall.EDQUOT
		}
		iov = cutIov(iov, want)
	}
	w, errno := pwritev(f.fd, iov, off)
	oi.size = f.sizeAfter(oi.size, off, int64(w), errno != 0 || int64(w) < want)
	r.Done(oi.size)
	return w, errno
}

// sizeAfter is the file's size after a write of w bytes at off to a file
// of size before. A write that failed or came back short may have left
// the file at any size up to its end (an error half way, a file system
// that allocated before failing): the backing file is asked.
func (f *file) sizeAfter(before, off, w int64, doubt bool) int64 {
	if doubt {
		if st, err := backing.Fstat(f.fd); err == nil {
			return st.Size
		}
	}
	if w > 0 && off+w > before {
		return off + w
	}
	return before
}

// directCut is the length of a write cut to n bytes on an O_DIRECT
// descriptor: n rounded down to the file's direct I/O alignment, so that
// the backing write stays valid (an unaligned length fails with EINVAL
// and writes nothing) and the writer's next offset stays aligned. This
// is what a block file system does at its quota boundary: its quota
// counts blocks, so a direct write there ends short on a block boundary.
// The few bytes of room left below one alignment unit stay for buffered
// writes; a direct write finds no room (EDQUOT).
func directCut(fd int, n int64) int64 {
	a := int64(dioAlign(fd))
	return n - n%a
}

// dioAlign is the offset and length alignment direct I/O on the file
// needs: statx's STATX_DIOALIGN where the file system reports it, else
// the page size, a multiple of every logical block size in common use
// (512, 4096) and what page-based direct I/O paths need.
func dioAlign(fd int) uint32 {
	var x unix.Statx_t
	err := unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_DIOALIGN, &x)
	if err == nil && x.Mask&unix.STATX_DIOALIGN != 0 && x.Dio_offset_align > 0 {
		return x.Dio_offset_align
	}
	return uint32(unix.Getpagesize())
}

// pwritev writes all of iov at off, or fails.
func pwritev(fd int, iov [][]byte, off int64) (uint32, syscall.Errno) {
	done := int64(0)
	for len(iov) > 0 {
		n, err := unix.Pwritev(fd, iov, off+done)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			if done > 0 {
				return uint32(done), 0
			}
			return 0, toErrno(err)
		}
		if n == 0 {
			break
		}
		done += int64(n)
		iov = skipIov(iov, int64(n))
	}
	return uint32(done), 0
}

// cutIov keeps the first n bytes of iov.
func cutIov(iov [][]byte, n int64) [][]byte {
	var out [][]byte
	for _, b := range iov {
		if n <= 0 {
			break
		}
		if int64(len(b)) > n {
			b = b[:n]
		}
		out = append(out, b)
		n -= int64(len(b))
	}
	return out
}

// skipIov drops the first n bytes of iov.
func skipIov(iov [][]byte, n int64) [][]byte {
	for len(iov) > 0 && n >= int64(len(iov[0])) {
		n -= int64(len(iov[0]))
		iov = iov[1:]
	}
	if len(iov) > 0 && n > 0 {
		iov = append([][]byte{iov[0][n:]}, iov[1:]...)
	}
	return iov
}

func (f *file) Flush(ctx context.Context) syscall.Errno {
	// Closing a duplicate flushes what the backing file system buffers
	// per close (NFS) without closing the handle.
	nfd, err := unix.Dup(f.fd)
	if err != nil {
		return toErrno(err)
	}
	err = unix.Close(nfd)
	// close(2) waits for FLUSH: the other views learn of the change
	// before the writer's close returns (close-to-open).
	if f.changed.Swap(false) {
		f.n.attrsChanged()
	}
	return toErrno(err)
}

// fsyncFdatasync is FUSE_FSYNC_FDATASYNC in FsyncIn.FsyncFlags.
const fsyncFdatasync = 1

func (f *file) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	if flags&fsyncFdatasync != 0 {
		return toErrno(unix.Fdatasync(f.fd))
	}
	return toErrno(unix.Fsync(f.fd))
}

func (f *file) Release(ctx context.Context) syscall.Errno {
	f.n.removeFile(f)
	if f.changed.Swap(false) {
		// Changed after the last flush (through a shared mapping).
		f.n.attrsChanged()
	}
	if f.oi != nil {
		f.sp.Lock()
		f.sp.release(f.dev, f.ino, f.oi)
		f.sp.Unlock()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fd < 0 {
		return syscall.EBADF
	}
	if f.held {
		v := f.n.v
		gone := false
		if f.tmp {
			st, err := backing.Fstat(f.fd)
			gone = err == nil && st.Nlink == 0
		}
		if gone {
			// quota: an O_TMPFILE file never linked goes with its last
			// handle.
			rm, _ := v.prepareRemove(f.key, "")
			v.closeWrite(f.key)
			rm.Done(true)
		} else {
			v.closeWrite(f.key)
		}
	}
	err := unix.Close(f.fd)
	f.fd = -1
	return toErrno(err)
}

func (f *file) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	n, err := unix.Seek(f.fd, int64(off), int(whence))
	return uint64(n), toErrno(err)
}

// Allocate is fallocate(2). Modes that change the logical size (plain
// and ZERO_RANGE past the end, INSERT_RANGE, COLLAPSE_RANGE) pass the
// quota hook, all or nothing; PUNCH_HOLE and KEEP_SIZE within the file
// change no usage. With the quota on, a KEEP_SIZE allocation reaching
// past the end is refused (EOPNOTSUPP): it would hold disk space beyond
// the logical size, which is all the ledger counts. Refusing keeps usage
// equal to the sum of logical sizes; posix_fallocate never asks for
// KEEP_SIZE, and callers that do (fallocate -n, preallocating writers)
// treat EOPNOTSUPP as "no preallocation here" and write instead, which is
// charged.
func (f *file) Allocate(ctx context.Context, off, size uint64, mode uint32) syscall.Errno {
	v := f.n.v
	if errno := v.mutable(); errno != 0 {
		return errno
	}
	oi := f.oi
	if oi == nil {
		return syscall.EBADF
	}
	if int64(off) < 0 || int64(size) <= 0 || int64(off+size) < 0 {
		return syscall.EINVAL
	}
	f.sp.Lock()
	defer f.sp.Unlock()
	st, errno := f.stat()
	if errno != 0 {
		return errno
	}
	if mode&unix.FALLOC_FL_KEEP_SIZE != 0 && mode&unix.FALLOC_FL_PUNCH_HOLE == 0 &&
		int64(off+size) > st.Size && v.q.on() {
		// quota: space past the end outside the logical size is never
		// charged, so it is not handed out.
		return syscall.EOPNOTSUPP
	}
	newSize := st.Size
	switch {
	case mode&(unix.FALLOC_FL_KEEP_SIZE|unix.FALLOC_FL_PUNCH_HOLE) != 0:
	case mode&unix.FALLOC_FL_COLLAPSE_RANGE != 0:
		newSize = max(0, st.Size-int64(size))
	case mode&unix.FALLOC_FL_INSERT_RANGE != 0:
		newSize = st.Size + int64(size)
	default:
		newSize = max(st.Size, int64(off+size))
	}
	var r quota.Reservation
	if newSize != st.Size {
		// quota: fallocate changes the size to newSize; all or nothing.
		if r, errno = v.reserveSize(f.key, newSize); errno != 0 {
			return errno
		}
	}
	oi.mode = f.n.killPrivs(f.fd, st.Mode)
	f.changed.Store(true)
	err := unix.Fallocate(f.fd, mode, int64(off), int64(size))
	after, serr := f.stat()
	switch {
	case serr == 0:
		oi.size = after.Size
		r.Done(after.Size)
	default:
		if err == nil {
			oi.size = newSize
		}
		r.Done(-1)
	}
	return toErrno(err)
}

// Locks: fcntl locks are open-file-description locks on the backing
// descriptor, flock locks flock(2) on it.

func (f *file) Getlk(ctx context.Context, owner uint64, lk *fuse.FileLock, flags uint32, out *fuse.FileLock) syscall.Errno {
	flk := syscall.Flock_t{}
	lk.ToFlockT(&flk)
	errno := toErrno(syscall.FcntlFlock(uintptr(f.fd), unix.F_OFD_GETLK, &flk))
	out.FromFlockT(&flk)
	return errno
}

func (f *file) Setlk(ctx context.Context, owner uint64, lk *fuse.FileLock, flags uint32) syscall.Errno {
	return f.setLock(lk, flags, false)
}

func (f *file) Setlkw(ctx context.Context, owner uint64, lk *fuse.FileLock, flags uint32) syscall.Errno {
	return f.setLock(lk, flags, true)
}

func (f *file) setLock(lk *fuse.FileLock, flags uint32, wait bool) syscall.Errno {
	if flags&fuse.FUSE_LK_FLOCK != 0 {
		var op int
		switch lk.Typ {
		case syscall.F_RDLCK:
			op = syscall.LOCK_SH
		case syscall.F_WRLCK:
			op = syscall.LOCK_EX
		case syscall.F_UNLCK:
			op = syscall.LOCK_UN
		default:
			return syscall.EINVAL
		}
		if !wait {
			op |= syscall.LOCK_NB
		}
		return toErrno(syscall.Flock(f.fd, op))
	}
	flk := syscall.Flock_t{}
	lk.ToFlockT(&flk)
	cmd := unix.F_OFD_SETLK
	if wait {
		cmd = unix.F_OFD_SETLKW
	}
	return toErrno(syscall.FcntlFlock(uintptr(f.fd), cmd, &flk))
}
