package fs

import (
	"context"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/internal/backing"
	"github.com/vfolder/vfolder/quota"
)

// Open opens a regular file. ro views refuse write access and O_TRUNC.
func (n *node) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	v := n.v
	if v.removed.Load() {
		return nil, 0, errClosed
	}
	trunc := flags&unix.O_TRUNC != 0
	write := int(flags)&unix.O_ACCMODE != unix.O_RDONLY || trunc
	if write && v.readOnly() {
		if v.checks() && !trunc {
			// As on a read-only bind mount, permission comes before
			// EROFS (O_TRUNC asks for the write first).
			fd, st, errno := n.openSelf()
			if errno != 0 {
				return nil, 0, errno
			}
			unix.Close(fd)
			if errno := v.may(callerOf(ctx), st.Mode, openMask(flags)); errno != 0 {
				return nil, 0, errno
			}
		}
		return nil, 0, syscall.EROFS
	}
	bflags := int(flags)&openPassFlags | unix.O_NOFOLLOW
	fd, st, errno := n.openStat(bflags, 0)
	if errno != 0 {
		return nil, 0, errno
	}
	if v.checks() {
		if errno := v.may(callerOf(ctx), st.Mode, openMask(flags)); errno != 0 {
			unix.Close(fd)
			return nil, 0, errno
		}
	}
	hint := ""
	if bflags&unix.O_ACCMODE != unix.O_RDONLY || trunc {
		hint = n.hintSelf()
	}
	return n.finishOpen(ctx, fd, &st, bflags, trunc, hint)
}

// hintSelf is the node's path in its folder for the quota ledger ("" when
// there is no ledger or the node has no path).
func (n *node) hintSelf() string {
	if !n.v.q.on() {
		return ""
	}
	comps, errno := n.relPath()
	if errno != 0 {
		return ""
	}
	return n.v.q.hint(comps, "")
}

// finishOpen turns an open backing descriptor (st is its fstat) into a
// handle: O_TRUNC, the page-cache decision, registration with the node. fd
// is closed on failure.
func (n *node) finishOpen(ctx context.Context, fd int, st *backing.Stat, bflags int, trunc bool, hint string) (gofs.FileHandle, uint32, syscall.Errno) {
	if st.Type() != unix.S_IFREG {
		unix.Close(fd)
		return nil, 0, syscall.EINVAL
	}
	f, errno := n.newHandle(fd, bflags, st, hint, false)
	if errno != 0 {
		return nil, 0, errno
	}
	if trunc {
		if errno := n.truncateOpen(ctx, f, st, hint); errno != 0 {
			f.Release(ctx)
			return nil, 0, errno
		}
	}
	fuseFlags := n.v.directWrite(bflags)
	if n.keepCache(st) && !n.v.fs.opts.Tuning.NoKeepCache {
		fuseFlags |= fuse.FOPEN_KEEP_CACHE
	}
	return f, fuseFlags, 0
}

// directWrite is FOPEN_DIRECT_IO for a write-only open of a rw or wd view,
// else 0. Such a handle cannot read or mmap, so the page cache gains
// nothing from its writes; without it write(2) is one copy into the
// daemon's request instead of a copy into 4 KiB page-cache pages plus
// the copy out of them. Every write still reaches the daemon (and the
// quota hook) as a WRITE of at most MaxWrite bytes, EDQUOT still fails
// write(2). Readers of other handles of the inode see the new bytes: the
// kernel invalidates what they cached.
func (v *view) directWrite(bflags int) uint32 {
	if bflags&unix.O_ACCMODE != unix.O_WRONLY || v.readOnly() || v.fs.opts.Tuning.NoDirectWrite {
		return 0
	}
	return fuse.FOPEN_DIRECT_IO
}

// truncateOpen empties a file opened with O_TRUNC and refreshes st.
func (n *node) truncateOpen(ctx context.Context, f *file, st *backing.Stat, hint string) syscall.Errno {
	wfd, held := f.fd, f.held
	if !f.writable() {
		var err error
		if wfd, err = unix.Open(backing.ProcPath(f.fd), unix.O_WRONLY|unix.O_CLOEXEC, 0); err != nil {
			return toErrno(err)
		}
		defer unix.Close(wfd)
		held = false
	}
	mode := n.killPrivs(wfd, st.Mode)
	if f.oi != nil {
		f.sp.Lock()
		f.oi.mode = mode
		f.sp.Unlock()
	}
	f.changed.Store(true)
	if errno := n.v.resize(wfd, 0, held, hint); errno != 0 {
		return errno
	}
	s, err := backing.Fstat(f.fd)
	if err != nil {
		return toErrno(err)
	}
	*st = s
	return 0
}

// Setattr changes mode, size and times. Set-id bits are never stored on
// anything but a directory's S_ISGID (storedPerm). chown keeps the storage
// owner: it succeeds without changing the owner anyone sees (unless the
// view refuses chown to another owner, RefuseChown), and acts on storage
// as a chown to the storage owner does: ctime, and the set-id bits of a
// regular file cleared.
func (n *node) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	v := n.v
	// Every SETATTR is a change request, also one that carries no
	// attribute (chown(-1, -1)): a read-only view refuses them all;
	// truncate(2) checks write permission first.
	if errno := v.mutable(); errno != 0 {
		if _, ok := in.GetSize(); ok && errno == syscall.EROFS && v.checks() {
			if fd, st, e := n.openSelf(); e == 0 {
				unix.Close(fd)
				if st.Type() == unix.S_IFREG && in.Valid&fuse.FATTR_FH == 0 {
					if e := v.may(callerOf(ctx), st.Mode, mayWrite); e != 0 {
						return e
					}
				}
			}
		}
		return errno
	}
	uid, setUID := in.GetUID()
	gid, setGID := in.GetGID()
	fd, st, errno := n.openSelf()
	if errno != 0 {
		return errno
	}
	defer unix.Close(fd)
	mode, setMode := in.GetMode()
	if v.checks() {
		c := callerOf(ctx)
		if mode, errno = setattrCheck(c, st.Mode, v.spec.UID, v.spec.GID, in); errno != 0 {
			return errno
		}
		if _, ok := in.GetSize(); ok && in.Valid&fuse.FATTR_FH != 0 {
			// ftruncate(2) needs a handle open for writing; a size
			// through any other handle is checked as truncate(2).
			if f, isFile := fh.(*file); !isFile || !f.writable() {
				if errno := v.may(c, st.Mode, mayWrite); errno != 0 {
					return errno
				}
			}
		}
	}
	if v.spec.RefuseChown && (setUID && uid != v.spec.UID || setGID && gid != v.spec.GID) {
		return syscall.EPERM
	}
	isLink := st.Type() == unix.S_IFLNK

	// A request with no attribute at all is chown(-1, -1), which also
	// changes the ctime and drops set-id bits.
	chown := setUID || setGID || in.Valid&^(fuse.FATTR_FH|fuse.FATTR_LOCKOWNER) == 0
	if chown {
		// The owner stays the storage owner: a chown to it changes the
		// ctime and drops set-id bits as a real chown does, on every
		// backing file system.
		if err := backing.Chown(fd, int(v.fs.opts.StorageUID), int(v.fs.opts.StorageGID)); err != nil {
			return toErrno(err)
		}
	}
	size, setSize := in.GetSize()
	if setMode {
		if isLink {
			return syscall.EOPNOTSUPP
		}
		if err := unix.Chmod(backing.ProcPath(fd), storedPerm(st.Type(), mode)); err != nil {
			return toErrno(err)
		}
	} else if chown || setSize || in.Valid&fuse.FATTR_KILL_SUIDGID != 0 {
		// chown and truncate clear set-id bits of a regular file,
		// whoever asks (killPrivs).
		n.killPrivs(fd, st.Mode)
	}

	if setSize {
		if st.Type() != unix.S_IFREG {
			if st.Type() == unix.S_IFDIR {
				return syscall.EISDIR
			}
			return syscall.EINVAL
		}
		if errno := n.truncate(fh, fd, int64(size)); errno != 0 {
			return errno
		}
	}

	if in.Valid&(fuse.FATTR_ATIME|fuse.FATTR_MTIME) != 0 {
		ts := [2]unix.Timespec{
			setTime(in, fuse.FATTR_ATIME, fuse.FATTR_ATIME_NOW, in.Atime, in.Atimensec),
			setTime(in, fuse.FATTR_MTIME, fuse.FATTR_MTIME_NOW, in.Mtime, in.Mtimensec),
		}
		if err := backing.Utimes(fd, ts); err != nil {
			return toErrno(err)
		}
	}

	after, err := backing.Fstat(fd)
	if err != nil {
		return toErrno(err)
	}
	if after.Mode != st.Mode && after.Type() == unix.S_IFREG {
		v.fs.locks.setMode(&after)
	}
	v.fillAttr(&after, &out.Attr)
	n.setStamp(&after)
	n.attrsChanged()
	if after.Type() == unix.S_IFDIR && allSearch(st.Mode) && !allSearch(after.Mode) {
		// The entries below were cached for long: a walk through them
		// must come back to the daemon now.
		n.dropChildEntries()
	}
	return 0
}

// truncate sets the size through the caller's handle when it is open for
// writing, else through a descriptor opened for the purpose.
func (n *node) truncate(fh gofs.FileHandle, pathFd int, size int64) syscall.Errno {
	if f, ok := fh.(*file); ok && f.writable() {
		return n.v.resize(f.fd, size, f.held, "")
	}
	wfd, err := unix.Open(backing.ProcPath(pathFd), unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return toErrno(err)
	}
	defer unix.Close(wfd)
	return n.v.resize(wfd, size, false, n.hintSelf())
}

// resize sets the size of the regular file open for writing at fd. held
// tells that a handle of the caller holds the inode in the quota ledger;
// otherwise resize holds it for the call (hint is the file's path in its
// folder).
func (v *view) resize(fd int, size int64, held bool, hint string) syscall.Errno {
	if size < 0 {
		return syscall.EINVAL
	}
	id, err := backing.Fstat(fd)
	if err != nil {
		return toErrno(err)
	}
	sp := v.fs.locks.of(id.Dev, id.Ino)
	sp.Lock()
	defer sp.Unlock()
	st, err := backing.Fstat(fd)
	if err != nil {
		return toErrno(err)
	}
	k := v.q.key(st.Dev, st.Ino)
	if !held {
		if errno := v.openWrite(k, st.Size, hint); errno != 0 {
			return errno
		}
		defer v.closeWrite(k)
	}
	var r quota.Reservation
	if size != st.Size {
		// quota: truncate to size: growth all or nothing, shrinking
		// always passes.
		var errno syscall.Errno
		if r, errno = v.reserveSize(k, size); errno != 0 {
			return errno
		}
	}
	// The size is set also when it does not change: that updates mtime
	// and ctime, as truncate(2) does.
	err = unix.Ftruncate(fd, size)
	after := size
	if err != nil {
		after = st.Size
	}
	r.Done(after)
	if oi := sp.open[devIno{st.Dev, st.Ino}]; oi != nil {
		oi.size = after
	}
	return toErrno(err)
}

func setTime(in *fuse.SetAttrIn, set, now uint32, sec uint64, nsec uint32) unix.Timespec {
	switch {
	case in.Valid&set == 0:
		return unix.Timespec{Nsec: unix.UTIME_OMIT}
	case in.Valid&now != 0:
		return unix.Timespec{Nsec: unix.UTIME_NOW}
	}
	return unix.Timespec{Sec: int64(sec), Nsec: int64(nsec)}
}

// CopyFileRange copies between two open files of this mount.
func (n *node) CopyFileRange(ctx context.Context, fhIn gofs.FileHandle, offIn uint64, out *gofs.Inode,
	fhOut gofs.FileHandle, offOut uint64, length uint64, flags uint64) (uint32, syscall.Errno) {
	fi, ok1 := fhIn.(*file)
	fo, ok2 := fhOut.(*file)
	if !ok1 || !ok2 {
		return 0, syscall.EXDEV
	}
	v := fo.n.v
	if errno := v.mutable(); errno != 0 {
		return 0, errno
	}
	length = min(length, 1<<30)
	if length == 0 {
		return 0, 0
	}
	oi := fo.oi
	if oi == nil {
		return 0, syscall.EBADF
	}
	if int64(offOut) < 0 || int64(offIn) < 0 {
		return 0, syscall.EINVAL
	}
	fo.sp.Lock()
	defer fo.sp.Unlock()
	oi.mode = fo.n.killPrivs(fo.fd, oi.mode)
	end := int64(offOut) + int64(length)
	var r quota.Reservation
	if end > oi.size {
		// quota: copying past the end grows the destination up to end;
		// it may be cut short to the grant.
		granted, rr, errno := v.reserveWrite(fo.key, int64(offOut), end)
		if errno != 0 {
			return 0, errno
		}
		r = rr
		if granted < end {
			cut := granted - int64(offOut)
			if fo.flags&unix.O_DIRECT != 0 {
				cut = directCut(fo.fd, cut)
			}
			if cut <= 0 {
				r.Done(oi.size)
				quotaRefused(v.q.scope)
				return 0, syscall.EDQUOT
			}
			length = uint64(cut)
		}
	}
	oi2, oo := int64(offIn), int64(offOut)
	fo.changed.Store(true)
	c, err := unix.CopyFileRange(fi.fd, &oi2, fo.fd, &oo, int(length), int(flags))
	oi.size = fo.sizeAfter(oi.size, int64(offOut), int64(max(c, 0)), err != nil)
	r.Done(oi.size)
	if err != nil {
		return 0, toErrno(err)
	}
	return uint32(c), 0
}
