package fs

import (
	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/internal/backing"
)

// Set-user-ID and set-group-ID bits (see "Modes and ownership" in the
// package comment). Everything stored through a view belongs to the one
// storage uid/gid, the owner of every folder: a set-id executable stored
// there would run as that owner wherever the volume is mounted without
// nosuid. So a view never stores S_ISUID on anything, nor S_ISGID on
// anything but a directory, and a regular file changed through a view
// loses the bits it was given behind the daemon's back. The bits are
// dropped silently, as a nosuid mount ignores them: cp -p, tar and rsync
// chmod after copying and must not fail for it.
//
// S_ISGID on a directory only makes new entries inherit the directory's
// group (and new subdirectories the bit). Every entry made through a view
// is given the storage gid anyway, and the kernel drops S_ISGID from a
// file created in such a directory by a process outside its group, so the
// bit grants nothing; it is kept because tools set it on shared
// directories (chmod g+s, git's core.sharedRepository) and expect to see
// it.

// storedPerm is the permission bits a view stores for a new or chmod-ed
// object of type typ (S_IFREG, S_IFDIR...) asked for with mode.
func storedPerm(typ, mode uint32) uint32 {
	perm := mode & 0o7777 &^ unix.S_ISUID
	if typ != unix.S_IFDIR {
		perm &^= unix.S_ISGID
	}
	return perm
}

// needsKill reports whether a view must clear set-id bits of a file with
// st_mode mode before changing it: a regular file that has either.
func needsKill(mode uint32) bool {
	return mode&unix.S_IFMT == unix.S_IFREG && mode&(unix.S_ISUID|unix.S_ISGID) != 0
}

// killPrivs clears set-user-ID and set-group-ID of a regular file whose
// data, size or owner a view changes, whoever the caller: what the kernel
// leaves to the daemon under FUSE_HANDLE_KILLPRIV_V2, applied also to
// root, because a privileged caller in a container is not privileged on
// the storage. It returns the mode the file has afterwards.
func (n *node) killPrivs(fd int, mode uint32) uint32 {
	if !needsKill(mode) {
		return mode
	}
	return n.clearPrivs(fd, mode)
}

// clearPrivs drops both bits on the file fd refers to (any descriptor)
// and returns the new mode.
func (n *node) clearPrivs(fd int, mode uint32) uint32 {
	perm := mode & 0o7777 &^ (unix.S_ISUID | unix.S_ISGID)
	err := unix.Fchmod(fd, perm)
	if err == unix.EBADF {
		err = unix.Chmod(backing.ProcPath(fd), perm)
	}
	if err != nil {
		n.v.fs.log.Warn().Err(err).Msg("cannot clear set-id bits")
		return mode
	}
	return mode&unix.S_IFMT | perm
}
