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

// checkNewName vets a name the kernel hands in for a new entry.
func checkNewName(name string) syscall.Errno {
	if len(name) > backing.NameMax {
		return syscall.ENAMETOOLONG
	}
	if !backing.ValidName(name) {
		return syscall.EINVAL
	}
	return 0
}

// Create creates and opens a regular file.
func (n *node) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	v := n.v
	if errno := v.mutable(); errno != 0 {
		return nil, nil, 0, errno
	}
	if errno := checkNewName(name); errno != 0 {
		return nil, nil, 0, errno
	}
	dirfd, dst, errno := n.openDirStat()
	if errno != 0 {
		return nil, nil, 0, errno
	}
	defer unix.Close(dirfd)
	if v.checks() {
		if errno := mayCreate(callerOf(ctx), dst.Mode, v.spec.UID, v.spec.GID); errno != 0 {
			return nil, nil, 0, errno
		}
	}
	bflags := int(flags)&openPassFlags | unix.O_NOFOLLOW | unix.O_CLOEXEC

	// quota: a new file is one inode, and its directory may grow.
	cr, hint, errno := n.reserveCreate(dirfd, quota.KindFile, 0, name)
	if errno == syscall.EDQUOT && flags&unix.O_EXCL == 0 {
		// No room for a new file; an existing one opens without any.
		if _, err := backing.Lstat(dirfd, name); err == nil {
			return n.openExisting(ctx, dirfd, dst.Mode, name, flags, bflags, hint, out)
		}
	}
	if errno != 0 {
		return nil, nil, 0, errno
	}
	fd, err := unix.Openat(dirfd, name, bflags|unix.O_CREAT|unix.O_EXCL, storedPerm(unix.S_IFREG, mode))
	if err == unix.EEXIST && flags&unix.O_EXCL == 0 {
		v.cancelCreate(&cr, dirfd)
		return n.openExisting(ctx, dirfd, dst.Mode, name, flags, bflags, hint, out)
	}
	if err != nil {
		v.cancelCreate(&cr, dirfd)
		return nil, nil, 0, toErrno(err)
	}
	st, errno := v.adopt(fd, unix.S_IFREG, mode)
	if errno != 0 {
		unix.Close(fd)
		unix.Unlinkat(dirfd, name, 0)
		v.cancelCreate(&cr, dirfd)
		return nil, nil, 0, errno
	}
	v.commitCreate(&cr, &st, dirfd)
	ch, c := n.child(ctx, dst.Mode, &st, out)
	f, errno := c.newHandle(fd, bflags, &st, hint, false)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	n.entryAdded(name)
	return ch, f, v.directWrite(bflags), 0
}

// openExisting opens a file that CREATE found already there (made through
// another view or on storage since the kernel's lookup).
func (n *node) openExisting(ctx context.Context, dirfd int, dirMode uint32, name string, flags uint32, bflags int, hint string, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	fd, err := unix.Openat(dirfd, name, bflags, 0)
	if err != nil {
		return nil, nil, 0, toErrno(err)
	}
	st, err := backing.Fstat(fd)
	if err != nil {
		unix.Close(fd)
		return nil, nil, 0, toErrno(err)
	}
	// The kernel checked the directory only: the file is checked here,
	// whoever checks permissions otherwise.
	if errno := n.v.may(callerOf(ctx), st.Mode, openMask(flags)); errno != 0 {
		unix.Close(fd)
		return nil, nil, 0, errno
	}
	ch, c := n.child(ctx, dirMode, &st, out)
	fh, fuseFlags, errno := c.finishOpen(ctx, fd, &st, bflags, flags&unix.O_TRUNC != 0, hint)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	return ch, fh, fuseFlags, 0
}

// adopt gives a freshly created entry to the storage owner and sets its
// mode bits as asked (undoing the daemon's umask), less the set-id bits a
// view never stores (storedPerm); a directory gets S_ISGID only by
// inheriting it, as mkdir(2) does. fd is any descriptor of the entry.
func (v *view) adopt(fd int, typ, mode uint32) (backing.Stat, syscall.Errno) {
	if err := backing.Chown(fd, int(v.fs.opts.StorageUID), int(v.fs.opts.StorageGID)); err != nil {
		return backing.Stat{}, toErrno(err)
	}
	st, err := backing.Fstat(fd)
	if err != nil {
		return backing.Stat{}, toErrno(err)
	}
	if st.Type() != typ {
		return backing.Stat{}, syscall.EIO
	}
	if typ == unix.S_IFLNK {
		return st, 0
	}
	want := storedPerm(typ, mode)
	if typ == unix.S_IFDIR {
		want = mode&(0o777|unix.S_ISVTX) | st.Mode&unix.S_ISGID
	}
	if st.Mode&07777 == want {
		return st, 0
	}
	if err := unix.Fchmod(fd, want); err != nil {
		if err != unix.EBADF {
			return backing.Stat{}, toErrno(err)
		}
		// O_PATH descriptor: chmod the file it refers to (checked above
		// not to be a symlink).
		if err := unix.Chmod(backing.ProcPath(fd), want); err != nil {
			return backing.Stat{}, toErrno(err)
		}
	}
	st, err = backing.Fstat(fd)
	return st, toErrno(err)
}

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return n.createEntry(ctx, name, unix.S_IFDIR, mode, 0, "", out)
}

// Mknod makes regular files, FIFOs and sockets. Device nodes are refused.
func (n *node) Mknod(ctx context.Context, name string, mode, rdev uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	typ := mode & unix.S_IFMT
	switch typ {
	case 0:
		typ = unix.S_IFREG
	case unix.S_IFREG, unix.S_IFIFO, unix.S_IFSOCK:
	case unix.S_IFCHR, unix.S_IFBLK:
		if errno := n.v.mutable(); errno != 0 {
			return nil, errno
		}
		if n.v.checks() {
			// vfs_mknod checks the directory before CAP_MKNOD.
			dirfd, dst, errno := n.openDirStat()
			if errno != 0 {
				return nil, errno
			}
			unix.Close(dirfd)
			if errno := mayCreate(callerOf(ctx), dst.Mode, n.v.spec.UID, n.v.spec.GID); errno != 0 {
				return nil, errno
			}
		}
		return nil, syscall.EPERM
	default:
		return nil, syscall.EINVAL
	}
	return n.createEntry(ctx, name, typ, mode&07777, rdev, "", out)
}

// Symlink stores a symlink with its target as given; it is never followed
// by the daemon.
func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return n.createEntry(ctx, name, unix.S_IFLNK, 0o777, 0, target, out)
}

// createEntry is Mkdir, Mknod and Symlink.
func (n *node) createEntry(ctx context.Context, name string, typ, mode, rdev uint32, target string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	v := n.v
	if errno := v.mutable(); errno != 0 {
		return nil, errno
	}
	if errno := checkNewName(name); errno != 0 {
		return nil, errno
	}
	dirfd, dst, errno := n.openDirStat()
	if errno != 0 {
		return nil, errno
	}
	defer unix.Close(dirfd)
	if v.checks() {
		if errno := mayCreate(callerOf(ctx), dst.Mode, v.spec.UID, v.spec.GID); errno != 0 {
			return nil, errno
		}
	}

	bytes := int64(0)
	if typ == unix.S_IFLNK {
		bytes = int64(len(target))
	}
	// quota: a new entry is one inode; a symlink also counts its target,
	// a directory its own size; the parent directory may grow.
	cr, _, errno := n.reserveCreate(dirfd, quota.KindOf(typ), bytes, name)
	if errno != 0 {
		return nil, errno
	}
	st, errno := v.makeEntry(dirfd, name, typ, mode, rdev, target)
	if errno != 0 {
		v.cancelCreate(&cr, dirfd)
		return nil, errno
	}
	v.commitCreate(&cr, &st, dirfd)
	ch, _ := n.child(ctx, dst.Mode, &st, out)
	n.entryAdded(name)
	return ch, 0
}

// makeEntry creates the entry on storage and adopts it; on failure the
// entry is removed again.
func (v *view) makeEntry(dirfd int, name string, typ, mode, rdev uint32, target string) (backing.Stat, syscall.Errno) {
	var err error
	switch typ {
	case unix.S_IFDIR:
		err = unix.Mkdirat(dirfd, name, mode&07777)
	case unix.S_IFLNK:
		err = unix.Symlinkat(target, dirfd, name)
	default:
		err = unix.Mknodat(dirfd, name, typ|storedPerm(typ, mode), int(rdev))
	}
	if err != nil {
		return backing.Stat{}, toErrno(err)
	}
	fd, err := unix.Openat(dirfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	errno := toErrno(err)
	var st backing.Stat
	if errno == 0 {
		st, errno = v.adopt(fd, typ, mode)
		unix.Close(fd)
	}
	if errno != 0 {
		flags := 0
		if typ == unix.S_IFDIR {
			flags = unix.AT_REMOVEDIR
		}
		unix.Unlinkat(dirfd, name, flags)
		return backing.Stat{}, errno
	}
	return st, 0
}

// Tmpfile is open(O_TMPFILE): a file in no directory until it is linked.
func (n *node) Tmpfile(ctx context.Context, flags, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	v := n.v
	if errno := v.mutable(); errno != 0 {
		return nil, nil, 0, errno
	}
	dirfd, dst, errno := n.openDirStat()
	if errno != 0 {
		return nil, nil, 0, errno
	}
	defer unix.Close(dirfd)
	if v.checks() {
		if errno := mayCreate(callerOf(ctx), dst.Mode, v.spec.UID, v.spec.GID); errno != 0 {
			return nil, nil, 0, errno
		}
	}
	bflags := int(flags)&(openPassFlags|unix.O_EXCL) | unix.O_CLOEXEC
	// quota: a new file is one inode.
	ir, errno := v.reserveInode(quota.KindFile, 0, "")
	if errno != 0 {
		return nil, nil, 0, errno
	}
	fd, err := unix.Openat(dirfd, ".", bflags|unix.O_TMPFILE, storedPerm(unix.S_IFREG, mode))
	if err != nil {
		ir.Cancel()
		return nil, nil, 0, toErrno(err)
	}
	st, errno := v.adopt(fd, unix.S_IFREG, mode)
	if errno != 0 {
		unix.Close(fd)
		ir.Cancel()
		return nil, nil, 0, errno
	}
	ir.Commit(v.q.key(st.Dev, st.Ino), st.Size)
	c, attr := v.newNode(&st)
	ch := n.NewInode(ctx, c, attr)
	v.fillAttr(&st, &out.Attr)
	f, errno := c.newHandle(fd, bflags&^unix.O_EXCL, &st, "", true)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	return ch, f, v.directWrite(bflags), 0
}

// Link makes a hard link inside the same view (EXDEV otherwise).
func (n *node) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	t, ok := target.(*node)
	if !ok || t.v != n.v {
		return nil, syscall.EXDEV
	}
	if errno := n.v.mutable(); errno != 0 {
		return nil, errno
	}
	if errno := checkNewName(name); errno != 0 {
		return nil, errno
	}
	dirfd, dst, errno := n.openDirStat()
	if errno != 0 {
		return nil, errno
	}
	defer unix.Close(dirfd)
	tfd, tst, errno := t.openSelf()
	if errno != 0 {
		return nil, errno
	}
	defer unix.Close(tfd)
	if n.v.checks() {
		c, v := callerOf(ctx), n.v
		if errno := mayLink(c, tst.Mode, v.spec.UID, v.spec.GID); errno != 0 {
			return nil, errno
		}
		if errno := mayCreate(c, dst.Mode, v.spec.UID, v.spec.GID); errno != 0 {
			return nil, errno
		}
	}
	// quota: a link adds no bytes of its own (each inode counts once, and
	// links across views, so across folders and scopes, are refused
	// above), but its directory may grow.
	dr, errno := n.reserveDir(dirfd, true)
	if errno != 0 {
		return nil, errno
	}
	err := unix.Linkat(tfd, "", dirfd, name, unix.AT_EMPTY_PATH)
	n.v.settleDirs(&dr, dirfd)
	if err != nil {
		return nil, toErrno(err)
	}
	st, err := backing.Lstat(dirfd, name)
	if err != nil {
		return nil, toErrno(err)
	}
	ch, _ := n.child(ctx, dst.Mode, &st, out)
	n.entryAdded(name)
	return ch, 0
}

// Unlink removes a non-directory: wd, or rw with RWCanDelete.
func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	return n.remove(ctx, name, 0)
}

// Rmdir removes an empty directory: wd, or rw with RWCanDelete.
func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	return n.remove(ctx, name, unix.AT_REMOVEDIR)
}

func (n *node) remove(ctx context.Context, name string, flags int) syscall.Errno {
	v := n.v
	// A ro view answers EROFS first; the view's delete right comes after
	// the permission bits, as it did after the kernel's own checks.
	if errno := v.mutable(); errno != 0 {
		return errno
	}
	dirfd, dst, errno := n.openDirStat()
	if errno != 0 {
		return errno
	}
	defer unix.Close(dirfd)
	if v.checks() {
		// Every entry of a view shows the view's owner.
		if errno := mayDelete(callerOf(ctx), dst.Mode, v.spec.UID, v.spec.GID, v.spec.UID); errno != 0 {
			return errno
		}
	}
	if errno := v.deletable(); errno != 0 {
		return errno
	}
	victim, errno := n.openVictim(dirfd, name)
	if errno != 0 {
		return errno
	}
	defer victim.close()
	// quota: removing the last link releases the object's bytes and
	// inode; the directory's size is settled after (it may shrink).
	dr, errno := n.reserveDir(dirfd, false)
	if errno != 0 {
		return errno
	}
	defer v.settleDirs(&dr, dirfd)
	rm, errno := v.prepareRemoveVictim(victim)
	if errno != 0 {
		return errno
	}
	err := unix.Unlinkat(dirfd, name, flags)
	rm.Done(err == nil && victim.lastLinkGone())
	if err == nil {
		n.entryChanged(name)
	}
	return toErrno(err)
}

// victim is an entry about to be removed or replaced, held by an O_PATH
// descriptor so that its link count can be read after the removal.
type victim struct {
	fd   int
	st   backing.Stat
	key  quota.InodeKey
	hint string
}

// openVictim opens the entry name of the directory dirfd (of node n)
// without following a symlink.
func (n *node) openVictim(dirfd int, name string) (*victim, syscall.Errno) {
	fd, err := unix.Openat(dirfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, toErrno(err)
	}
	st, err := backing.Fstat(fd)
	if err != nil {
		unix.Close(fd)
		return nil, toErrno(err)
	}
	vi := &victim{fd: fd, st: st, key: n.v.q.key(st.Dev, st.Ino)}
	if n.v.q.on() {
		if comps, errno := n.relPath(); errno == 0 {
			vi.hint = n.v.q.hint(comps, name)
		}
	}
	return vi, 0
}

// lastLinkGone tells, after a successful removal of one of its names,
// whether the object has no name left: a directory never has another; a
// file when its link count is now 0 (or, where the count cannot be read
// any more, was 1 before).
func (vi *victim) lastLinkGone() bool {
	if vi.st.Type() == unix.S_IFDIR {
		return true
	}
	st, err := backing.Fstat(vi.fd)
	if err != nil {
		return vi.st.Nlink <= 1
	}
	return st.Nlink == 0
}

func (vi *victim) close() { unix.Close(vi.fd) }

// Rename moves an entry inside the view (EXDEV across views). Replacing an
// existing entry deletes it, so it needs the delete right; RENAME_EXCHANGE
// loses nothing and needs only write access.
func (n *node) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	np, ok := newParent.(*node)
	if !ok || np.v != n.v {
		return syscall.EXDEV
	}
	v := n.v
	if errno := v.mutable(); errno != 0 {
		return errno
	}
	if errno := checkNewName(newName); errno != 0 {
		return errno
	}
	if flags&^uint32(unix.RENAME_NOREPLACE|unix.RENAME_EXCHANGE) != 0 {
		return syscall.EINVAL
	}
	sdir, sst, errno := n.openDirStat()
	if errno != 0 {
		return errno
	}
	defer unix.Close(sdir)
	ddir, dst := sdir, sst
	if np != n {
		if ddir, dst, errno = np.openDirStat(); errno != 0 {
			return errno
		}
		defer unix.Close(ddir)
	}
	if v.checks() {
		if errno := v.mayRename(callerOf(ctx), &sst, &dst, sdir, name, ddir, newName, np != n, flags); errno != 0 {
			return errno
		}
	}

	exchange := flags&unix.RENAME_EXCHANGE != 0
	noReplace := flags&unix.RENAME_NOREPLACE != 0
	var vi *victim
	if !exchange && !noReplace {
		if st, err := backing.Lstat(ddir, newName); err == nil {
			src, serr := backing.Lstat(sdir, name)
			if serr != nil {
				return toErrno(serr)
			}
			if src.Dev == st.Dev && src.Ino == st.Ino {
				// Two links of one file: rename does nothing.
				return toErrno(unix.Renameat2(sdir, name, ddir, newName, uint(flags)))
			}
			if !v.canDelete() {
				return syscall.EPERM
			}
			if vi, errno = np.openVictim(ddir, newName); errno != 0 && errno != syscall.ENOENT {
				return errno
			}
		}
	}
	// quota: the destination directory may grow (unless two entries
	// are exchanged), the source may shrink.
	dr, errno := n.reserveRename(np, sdir, ddir, !exchange)
	if errno != 0 {
		if vi != nil {
			vi.close()
		}
		return errno
	}
	defer v.settleDirs(&dr, sdir, ddir)
	var rm quota.Removal
	if vi != nil {
		defer vi.close()
		// quota: replacing an entry removes one of its links.
		if rm, errno = v.prepareRemoveVictim(vi); errno != 0 {
			return errno
		}
	}
	bflags := uint(flags)
	if !exchange && !v.canDelete() {
		// Without the delete right, never replace: a racing creation of
		// newName makes the rename fail instead of deleting it.
		bflags |= unix.RENAME_NOREPLACE
	}
	err := unix.Renameat2(sdir, name, ddir, newName, bflags)
	if err == unix.EINVAL && bflags != uint(flags) {
		// The backing file system has no RENAME_NOREPLACE; the check
		// above stands in for it.
		err = unix.Renameat2(sdir, name, ddir, newName, uint(flags))
	}
	if vi != nil {
		rm.Done(err == nil && vi.lastLinkGone())
	}
	if err == unix.EEXIST && !noReplace {
		return syscall.EPERM
	}
	if err == nil {
		n.entryChanged(name)
		np.entryAdded(newName)
	}
	return toErrno(err)
}

// OpendirHandle opens a directory for reading.
func (n *node) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if n.v.removed.Load() {
		return nil, 0, errClosed
	}
	fd, st, errno := n.openStat(unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if errno != 0 {
		return nil, 0, errno
	}
	if n.v.checks() {
		if errno := n.v.may(callerOf(ctx), st.Mode, mayRead); errno != 0 {
			unix.Close(fd)
			return nil, 0, errno
		}
	}
	return &dirStream{n: n, fd: fd, dev: st.Dev}, 0, 0
}

// mayRename is vfs_rename's permission part (perm.go): the source as
// removed from its directory, the target as removed (an entry there) or
// created, and a directory moving to another directory needs w on itself
// (its ".." changes), as does an exchanged one.
func (v *view) mayRename(c prober, sst, dst *backing.Stat, sdir int, name string, ddir int, newName string, moves bool, flags uint32) syscall.Errno {
	uid, gid := v.spec.UID, v.spec.GID
	if errno := mayDelete(c, sst.Mode, uid, gid, uid); errno != 0 {
		return errno
	}
	src, err := backing.Lstat(sdir, name)
	if err != nil {
		return toErrno(err)
	}
	tgt, terr := backing.Lstat(ddir, newName)
	if terr == nil {
		if errno := mayDelete(c, dst.Mode, uid, gid, uid); errno != 0 {
			return errno
		}
	} else if errno := mayCreate(c, dst.Mode, uid, gid); errno != 0 {
		return errno
	}
	if moves {
		if src.Type() == unix.S_IFDIR && !permits(c, src.Mode, uid, gid, mayWrite) {
			return syscall.EACCES
		}
		if flags&unix.RENAME_EXCHANGE != 0 && terr == nil && tgt.Type() == unix.S_IFDIR && !permits(c, tgt.Mode, uid, gid, mayWrite) {
			return syscall.EACCES
		}
	}
	return 0
}
