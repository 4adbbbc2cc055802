package fs

import (
	"context"
	"sync"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/internal/backing"
	"github.com/vfolder/vfolder/quota"
)

// node is every entry inside a view: files, directories, symlinks and
// special files alike. Its backing path is not stored: it is read from the
// go-fuse tree on each operation (relPath) and resolved below the view
// root, so renames never leave a stale path behind.
type node struct {
	gofs.Inode
	v        *view
	dev, ino uint64 // backing identity
	isRoot   bool   // the view root

	mu sync.Mutex
	// files are the open handles of this node, used by operations on a
	// node that has no path any more (unlinked but open, O_TMPFILE).
	files map[*file]struct{}
	// stamp is what the daemon last reported to the kernel about the
	// file's data; Open keeps the page cache only if it still holds.
	stamp stamp
}

// stamp identifies a version of a file's data.
type stamp struct {
	size         int64
	mtime, ctime unix.Timespec
}

func stampOf(st *backing.Stat) stamp {
	return stamp{size: st.Size, mtime: st.Mtime, ctime: st.Ctime}
}

// maxDepth bounds the walk up the tree (a safety net against a cycle).
const maxDepth = 1 << 16

// relPath returns the node's path below its view root as components (none
// for the root). A node that is in no directory any more gives ENOENT.
func (n *node) relPath() ([]string, syscall.Errno) {
	if n.isRoot {
		return nil, 0
	}
	root := n.v.root.EmbeddedInode()
	var rev []string
	cur := n.EmbeddedInode()
	for i := 0; cur != root; i++ {
		name, parent := cur.Parent()
		if parent == nil || i > maxDepth {
			return nil, syscall.ENOENT
		}
		rev = append(rev, name)
		cur = parent
	}
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	return rev, 0
}

// open resolves the node below the view root and opens it with flags.
func (n *node) open(flags int, mode uint32) (int, syscall.Errno) {
	comps, errno := n.relPath()
	if errno != 0 {
		return -1, errno
	}
	fd := -1
	errno = n.v.withRoot(func(rootFd int) syscall.Errno {
		var err error
		fd, err = backing.Open(rootFd, comps, flags, mode)
		return toErrno(err)
	})
	return fd, errno
}

// openDir opens the node, which must be a directory, as an O_PATH
// descriptor for *at calls on its entries.
func (n *node) openDir() (int, syscall.Errno) {
	return n.open(unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
}

// openSelf opens the node itself as an O_PATH descriptor that does not
// follow a symlink, and stats it. A node without a path falls back to one
// of its open handles (reopened as O_PATH through /proc).
func (n *node) openSelf() (int, backing.Stat, syscall.Errno) {
	fd, errno := n.open(unix.O_PATH|unix.O_NOFOLLOW, 0)
	if errno == syscall.ENOENT && !n.isRoot {
		fd, errno = n.reopenHandle(unix.O_PATH)
	}
	if errno != 0 {
		return -1, backing.Stat{}, errno
	}
	st, err := backing.Fstat(fd)
	if err != nil {
		unix.Close(fd)
		return -1, backing.Stat{}, toErrno(err)
	}
	if st.Type() != n.Mode()&unix.S_IFMT {
		// The name now holds a different kind of file than this node.
		unix.Close(fd)
		return -1, backing.Stat{}, syscall.ENOENT
	}
	return fd, st, 0
}

// reopenHandle opens the file of one of the node's open handles again.
func (n *node) reopenHandle(flags int) (int, syscall.Errno) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for f := range n.files {
		fd, err := f.reopen(flags)
		if err == nil {
			return fd, 0
		}
	}
	return -1, syscall.ENOENT
}

// child makes the node of a backing entry below n and fills the entry
// reply. go-fuse may still swap the returned node for one it already has
// with the same identity (hard links, racing lookups), except for CREATE,
// which always installs the new one.
func (n *node) child(ctx context.Context, st *backing.Stat, out *fuse.EntryOut) (*gofs.Inode, *node) {
	c, attr := n.v.newNode(st)
	ch := n.NewInode(ctx, c, attr)
	n.v.fillAttr(st, &out.Attr)
	c.setStamp(st)
	return ch, c
}

// fillAttr turns a backing stat into an attribute reply: the view's owner,
// the mode as stored.
func (v *view) fillAttr(st *backing.Stat, a *fuse.Attr) {
	a.Size = uint64(st.Size)
	a.Blocks = uint64(st.Blocks)
	a.Atime, a.Atimensec = uint64(st.Atime.Sec), uint32(st.Atime.Nsec)
	a.Mtime, a.Mtimensec = uint64(st.Mtime.Sec), uint32(st.Mtime.Nsec)
	a.Ctime, a.Ctimensec = uint64(st.Ctime.Sec), uint32(st.Ctime.Nsec)
	a.Mode = st.Mode
	a.Nlink = st.Nlink
	a.Uid = v.spec.UID
	a.Gid = v.spec.GID
	a.Rdev = uint32(st.Rdev)
	a.Blksize = st.Blksize
}

func (n *node) setStamp(st *backing.Stat) {
	n.mu.Lock()
	n.stamp = stampOf(st)
	n.mu.Unlock()
}

// keepCache reports whether the kernel's cached data of the file is still
// valid for st, and records st as reported.
func (n *node) keepCache(st *backing.Stat) bool {
	s := stampOf(st)
	n.mu.Lock()
	defer n.mu.Unlock()
	keep := n.stamp == s
	n.stamp = s
	return keep
}

func (n *node) addFile(f *file) {
	n.mu.Lock()
	if n.files == nil {
		n.files = map[*file]struct{}{}
	}
	n.files[f] = struct{}{}
	n.mu.Unlock()
}

func (n *node) removeFile(f *file) {
	n.mu.Lock()
	delete(n.files, f)
	n.mu.Unlock()
}

// Lookup finds a child by name.
func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if n.v.removed.Load() {
		return nil, syscall.ENOENT
	}
	if len(name) > backing.NameMax {
		return nil, syscall.ENAMETOOLONG
	}
	dirfd, errno := n.openDir()
	if errno != 0 {
		return nil, errno
	}
	defer unix.Close(dirfd)
	return n.lookupAt(ctx, dirfd, name, out)
}

// lookupAt looks name up in the open directory dirfd of node n.
func (n *node) lookupAt(ctx context.Context, dirfd int, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	st, err := backing.Lstat(dirfd, name)
	if err != nil {
		return nil, toErrno(err)
	}
	ch, _ := n.child(ctx, &st, out)
	return ch, 0
}

// Getattr reports the node's attributes, through an open handle when
// there is one (that works for unlinked files too).
func (n *node) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	var st backing.Stat
	switch h := fh.(type) {
	case *file:
		var errno syscall.Errno
		if st, errno = h.stat(); errno != 0 {
			return errno
		}
	case *dirStream:
		var errno syscall.Errno
		if st, errno = h.stat(); errno != 0 {
			return errno
		}
	default:
		fd, s, errno := n.openSelf()
		if errno != 0 {
			return errno
		}
		unix.Close(fd)
		st = s
	}
	n.v.fillAttr(&st, &out.Attr)
	n.setStamp(&st)
	return 0
}

// Statfs reports the backing file system of the view, or, when the
// view's quota scope has a limit, the scope: the byte limit as the size,
// the limit minus the usage as free (available is also capped by what the
// volume has left), in units of f_frsize; the inode limit likewise when
// one is set.
func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	var s unix.Statfs_t
	errno := n.v.withRoot(func(rootFd int) syscall.Errno {
		return toErrno(unix.Fstatfs(rootFd, &s))
	})
	if errno != 0 {
		return errno
	}
	out.Blocks = s.Blocks
	out.Bfree = s.Bfree
	out.Bavail = s.Bavail
	out.Files = s.Files
	out.Ffree = s.Ffree
	out.Bsize = uint32(s.Bsize)
	out.NameLen = uint32(min(s.Namelen, backing.NameMax))
	out.Frsize = uint32(s.Frsize)
	if u, ok := n.v.usage(); ok {
		scopeStatfs(u, out)
	}
	return 0
}

// scopeStatfs puts a scope's limits into a statfs reply that holds the
// volume's figures.
func scopeStatfs(u quota.Usage, out *fuse.StatfsOut) {
	if u.Limit > 0 {
		volAvail := out.Bavail
		if out.Frsize == 0 {
			out.Frsize = out.Bsize
		}
		if out.Frsize == 0 {
			// No block size from the volume: its figures mean nothing.
			out.Bsize, out.Frsize = 4096, 4096
			volAvail = ^uint64(0)
		}
		unit := uint64(out.Frsize)
		free := uint64(u.Free()) / unit
		out.Blocks = uint64(u.Limit) / unit
		out.Bfree = free
		out.Bavail = min(free, volAvail)
	}
	if u.LimitInodes > 0 {
		out.Files = uint64(u.LimitInodes)
		out.Ffree = uint64(u.FreeInodes())
	}
}

// Readlink returns a symlink's target as stored.
func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	fd, st, errno := n.openSelf()
	if errno != 0 {
		return nil, errno
	}
	defer unix.Close(fd)
	if st.Type() != unix.S_IFLNK {
		return nil, syscall.EINVAL
	}
	b, err := backing.Readlink(fd)
	return b, toErrno(err)
}

// OnForget runs when go-fuse drops the node. For a removed view's root
// that means no node of the view is left: its descriptor can go.
func (n *node) OnForget() {
	if n.isRoot && n.v.removed.Load() {
		n.v.closeRoot()
	}
}
