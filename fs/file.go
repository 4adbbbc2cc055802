package fs

import (
	"context"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/internal/backing"
)

// openPassFlags are the open flags handed on to the backing file.
// O_APPEND is not: the kernel computes the offset of every write, and a
// backing O_APPEND would make pwrite ignore it (and the quota hook miss the
// real growth). O_CREAT, O_EXCL and O_TRUNC are handled by the daemon.
const openPassFlags = unix.O_ACCMODE | unix.O_DIRECT | unix.O_SYNC | unix.O_DSYNC | unix.O_NOATIME

// file is an open regular file: a descriptor of the backing file. It never
// offers the kernel a passthrough descriptor.
type file struct {
	n        *node
	dev, ino uint64 // identity of the backing file, for the size lock
	flags    int

	// mu guards fd against Release while another node reopens it
	// (node.reopenHandle); go-fuse itself never runs an operation on a
	// handle concurrently with its Release.
	mu sync.RWMutex
	fd int
}

func newFile(n *node, fd int, flags int, st *backing.Stat) *file {
	return &file{n: n, fd: fd, flags: flags, dev: st.Dev, ino: st.Ino}
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

// write is the write path. A write that ends inside the file holds the
// size lock shared and grows nothing; a write past the end holds it
// exclusively around the quota hook.
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
	end := off + total
	n, v := f.n, f.n.v
	lk := v.fs.locks.of(f.dev, f.ino)

	lk.RLock()
	st, errno := f.stat()
	if errno != 0 {
		lk.RUnlock()
		return 0, errno
	}
	if end <= st.Size {
		n.killPrivs(ctx, f.fd, &st)
		w, errno := pwritev(f.fd, iov, off)
		lk.RUnlock()
		return w, errno
	}
	lk.RUnlock()

	lk.Lock()
	defer lk.Unlock()
	if st, errno = f.stat(); errno != 0 {
		return 0, errno
	}
	n.killPrivs(ctx, f.fd, &st)
	if end <= st.Size {
		return pwritev(f.fd, iov, off)
	}
	// quota: a write past the end grows the file by end-size bytes; it
	// may be cut short to what is granted.
	want := usage{bytes: end - st.Size}
	granted, errno := v.fs.acct.reserve(v, want, true)
	if errno != 0 {
		return 0, errno
	}
	allowed := total - (want.bytes - granted.bytes)
	if allowed <= 0 {
		v.fs.acct.commit(v, granted, usage{})
		return 0, syscall.EDQUOT
	}
	w, errno := pwritev(f.fd, cutIov(iov, allowed), off)
	v.fs.acct.commit(v, granted, usage{bytes: max(0, off+int64(w)-st.Size)})
	return w, errno
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

// killPrivs clears set-user-ID, and set-group-ID on a group-executable
// file, when a caller other than root changes the file's data: what the
// kernel leaves to the daemon under FUSE_HANDLE_KILLPRIV_V2.
func (n *node) killPrivs(ctx context.Context, fd int, st *backing.Stat) {
	if !needsKill(st) {
		return
	}
	if c, ok := fuse.FromContext(ctx); ok && c.Uid == 0 {
		return
	}
	n.clearPrivs(fd, st)
}

func needsKill(st *backing.Stat) bool {
	return st.Type() == unix.S_IFREG &&
		(st.Mode&unix.S_ISUID != 0 || st.Mode&(unix.S_ISGID|unix.S_IXGRP) == unix.S_ISGID|unix.S_IXGRP)
}

// clearPrivs drops the bits on the file fd refers to (any descriptor).
func (n *node) clearPrivs(fd int, st *backing.Stat) {
	mode := st.Mode & 07777 &^ unix.S_ISUID
	if st.Mode&unix.S_IXGRP != 0 {
		mode &^= unix.S_ISGID
	}
	if err := unix.Fchmod(fd, mode); err == unix.EBADF {
		err = unix.Chmod(backing.ProcPath(fd), mode)
		if err != nil {
			n.v.fs.log.Warn().Err(err).Msg("cannot clear set-id bits")
		}
	}
}

func (f *file) Flush(ctx context.Context) syscall.Errno {
	// Closing a duplicate flushes what the backing file system buffers
	// per close (NFS) without closing the handle.
	nfd, err := unix.Dup(f.fd)
	if err != nil {
		return toErrno(err)
	}
	return toErrno(unix.Close(nfd))
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
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fd < 0 {
		return syscall.EBADF
	}
	err := unix.Close(f.fd)
	f.fd = -1
	return toErrno(err)
}

func (f *file) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	n, err := unix.Seek(f.fd, int64(off), int(whence))
	return uint64(n), toErrno(err)
}

// Allocate is fallocate(2). Modes that can grow the logical size (plain,
// ZERO_RANGE without KEEP_SIZE, INSERT_RANGE) pass the quota hook.
func (f *file) Allocate(ctx context.Context, off, size uint64, mode uint32) syscall.Errno {
	v := f.n.v
	if errno := v.mutable(); errno != 0 {
		return errno
	}
	lk := v.fs.locks.of(f.dev, f.ino)
	lk.Lock()
	defer lk.Unlock()
	st, errno := f.stat()
	if errno != 0 {
		return errno
	}
	want := usage{}
	switch {
	case mode&(unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_COLLAPSE_RANGE) != 0:
	case mode&unix.FALLOC_FL_INSERT_RANGE != 0:
		want.bytes = int64(size)
	case mode&unix.FALLOC_FL_KEEP_SIZE == 0:
		want.bytes = max(0, int64(off+size)-st.Size)
	}
	granted := usage{}
	if want.bytes > 0 {
		// quota: fallocate grows the file to off+size (or by size for
		// INSERT_RANGE); all or nothing.
		if granted, errno = v.fs.acct.reserve(v, want, false); errno != 0 {
			return errno
		}
	}
	f.n.killPrivs(ctx, f.fd, &st)
	err := unix.Fallocate(f.fd, mode, int64(off), int64(size))
	after, serr := f.stat()
	delta := int64(0)
	if serr == 0 {
		delta = after.Size - st.Size
	}
	if want.bytes > 0 {
		v.fs.acct.commit(v, granted, usage{bytes: min(max(delta, 0), granted.bytes)})
	}
	if delta < 0 {
		v.fs.acct.release(v, usage{bytes: -delta})
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
