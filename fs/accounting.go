package fs

import (
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/internal/backing"
)

// usage is an amount of a quota scope: logical bytes (sizes of regular
// files, lengths of symlink targets) and inodes.
type usage struct {
	bytes  int64
	inodes int64
}

// accounting is the quota hook. Every operation that can grow a scope's
// usage calls it at exactly one place, marked "quota:" in the code:
//
//	write past EOF, writev      file.write        (bytes; may be cut short)
//	truncate/setattr size up    view.resize       (bytes; all or nothing)
//	open/create with O_TRUNC    view.resize       (shrink only)
//	fallocate                   file.Allocate     (bytes; all or nothing)
//	copy_file_range             node.CopyFileRange (bytes; may be cut short)
//	create                      node.Create       (one inode)
//	O_TMPFILE                   node.Tmpfile      (one inode)
//	mkdir, mknod, symlink       node.createEntry  (one inode; a symlink also
//	                                               its target length)
//	link                        node.Link         (nothing: an inode counts once)
//
// and release on unlink, rmdir, rename over an entry, and shrinking.
//
// Contract: reserve is called before the operation with the most it can
// add; it returns what may be added (granted.bytes <= want.bytes when
// partial, else granted == want) or an errno (EDQUOT) that fails the
// operation untouched. Every successful reserve is followed by exactly one
// commit with what the operation really added (used <= granted); the rest
// goes back. release reports usage freed. Size changes of one backing inode
// are serialised (sizeLocks) while reserve..commit runs, so the size the
// operation starts from is exact. Implementations must be safe for
// concurrent use and must not call back into the file system.
type accounting interface {
	reserve(v *view, want usage, partial bool) (granted usage, errno syscall.Errno)
	commit(v *view, granted, used usage)
	release(v *view, freed usage)
}

// noAccounting grants everything and records nothing.
type noAccounting struct{}

func (noAccounting) reserve(v *view, want usage, partial bool) (usage, syscall.Errno) {
	return want, 0
}
func (noAccounting) commit(v *view, granted, used usage) {}
func (noAccounting) release(v *view, freed usage)        {}

// sizeLocks serialise size changes of backing inodes: a fixed set of
// read-write locks striped by (device, inode), shared by every view. A
// size-changing operation holds the stripe exclusively from its stat to
// its commit; a write inside the file holds it shared. An operation never
// holds two stripes.
type sizeLocks [1024]sync.RWMutex

func (s *sizeLocks) of(dev, ino uint64) *sync.RWMutex {
	h := mix64(dev*0x9E3779B97F4A7C15 ^ ino)
	return &s[h%uint64(len(s))]
}

// entryUsage is what an entry counts for in its scope when it goes away:
// its logical size and one inode, if this was its last link.
func entryUsage(st *backing.Stat) usage {
	if st.Nlink > 1 && st.Type() != unix.S_IFDIR {
		return usage{}
	}
	u := usage{inodes: 1}
	switch st.Type() {
	case unix.S_IFREG, unix.S_IFLNK:
		u.bytes = st.Size
	}
	return u
}

// resize sets the size of the regular file open for writing at fd, with
// the quota hook: growth is all or nothing, shrinking releases. The size
// lock is the one of the file fd refers to.
func (v *view) resize(fd int, size int64) syscall.Errno {
	if size < 0 {
		return syscall.EINVAL
	}
	id, err := backing.Fstat(fd)
	if err != nil {
		return toErrno(err)
	}
	lk := v.fs.locks.of(id.Dev, id.Ino)
	lk.Lock()
	defer lk.Unlock()
	st, err := backing.Fstat(fd)
	if err != nil {
		return toErrno(err)
	}
	old := st.Size
	if size <= old {
		if err := unix.Ftruncate(fd, size); err != nil {
			return toErrno(err)
		}
		if size < old {
			v.fs.acct.release(v, usage{bytes: old - size})
		}
		return 0
	}
	// quota: truncate up grows the file by size-old bytes.
	want := usage{bytes: size - old}
	granted, errno := v.fs.acct.reserve(v, want, false)
	if errno != 0 {
		return errno
	}
	if err := unix.Ftruncate(fd, size); err != nil {
		v.fs.acct.commit(v, granted, usage{})
		return toErrno(err)
	}
	v.fs.acct.commit(v, granted, want)
	return 0
}
