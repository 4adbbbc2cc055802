package fs

import (
	"context"
	"sync"
	"sync/atomic"
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
//
// The kernel may know millions of nodes, so a node is kept small: 32 bytes
// besides go-fuse's Inode (160 in all, one allocation size class). What
// only some nodes need lives in nodeExt.
type node struct {
	gofs.Inode
	v   *view
	ino uint64 // backing inode number
	// stamp is a digest of what the daemon last reported to the kernel
	// about the file's data (stampOf); Open keeps the page cache only if
	// it still holds.
	stamp atomic.Uint64
	// ext is set for nodes on another device than the view root (at
	// creation) and for nodes that had open handles.
	ext atomic.Pointer[nodeExt]
}

// nodeExt is the rarely needed part of a node.
type nodeExt struct {
	dev uint64 // backing device; never changes

	mu sync.Mutex
	// files are the open handles of the node, used by operations on a
	// node that has no path any more (unlinked but open, O_TMPFILE).
	files map[*file]struct{}
}

// dev is the backing device of the node.
func (n *node) dev() uint64 {
	if e := n.ext.Load(); e != nil {
		return e.dev
	}
	return n.v.dev
}

// extra returns the node's nodeExt, making it on first use.
func (n *node) extra() *nodeExt {
	if e := n.ext.Load(); e != nil {
		return e
	}
	// A node without ext is on the view's device (see newNode).
	n.ext.CompareAndSwap(nil, &nodeExt{dev: n.v.dev})
	return n.ext.Load()
}

// isRoot reports whether n is its view's root.
func (n *node) isRoot() bool { return n == n.v.root }

// stampOf digests the parts of a stat that tell a version of a file's
// data: size, mtime and ctime (splitmix64 chaining; a collision, which
// would keep a stale page cache, has a chance of 2^-64 per open).
func stampOf(st *backing.Stat) uint64 {
	h := mix64(uint64(st.Size) + 0x9E3779B97F4A7C15)
	h = mix64(h ^ uint64(st.Mtime.Sec))
	h = mix64(h ^ uint64(st.Mtime.Nsec))
	h = mix64(h ^ uint64(st.Ctime.Sec))
	return mix64(h ^ uint64(st.Ctime.Nsec))
}

// maxDepth bounds the walk up the tree (a safety net against a cycle).
const maxDepth = 1 << 16

// relPath returns the node's path below its view root as components (none
// for the root). A node that is in no directory any more gives ENOENT.
func (n *node) relPath() ([]string, syscall.Errno) {
	if n.isRoot() {
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

// openStat resolves the node below the view root, opens it with flags
// and returns the fstat of the opened object. The
// object must still be the node's: a path that now names another object,
// or nothing (changed on storage, or through another view, while the
// kernel kept its entry) gives ESTALE, on which the kernel looks the path
// up again (LOOKUP_REVAL) and finds what is there now. A node without a
// path (unlinked) gives ENOENT.
func (n *node) openStat(flags int, mode uint32) (int, backing.Stat, syscall.Errno) {
	comps, errno := n.relPath()
	if errno != 0 {
		return -1, backing.Stat{}, errno
	}
	fd := -1
	errno = n.v.withRoot(func(rootFd int) syscall.Errno {
		var err error
		fd, err = backing.Open(rootFd, comps, flags, mode)
		return toErrno(err)
	})
	switch {
	case errno == 0:
	case n.isRoot():
		return -1, backing.Stat{}, errno
	case errno == syscall.ENOENT:
		// The path the kernel still has an entry for leads nowhere
		// now. (A path through a symlink keeps its ELOOP or ENOTDIR:
		// the refusal to follow it.)
		return -1, backing.Stat{}, syscall.ESTALE
	default:
		return -1, backing.Stat{}, errno
	}
	st, err := backing.Fstat(fd)
	if err != nil {
		unix.Close(fd)
		return -1, backing.Stat{}, toErrno(err)
	}
	if !n.isRoot() && (st.Ino != n.ino || st.Dev != n.dev()) {
		unix.Close(fd)
		return -1, backing.Stat{}, syscall.ESTALE
	}
	return fd, st, 0
}

// openDirStat opens the node, which must be a directory, as an O_PATH
// descriptor for *at calls on its entries, and returns its fstat (the
// mode the permission checks and entry timeouts use).
func (n *node) openDirStat() (int, backing.Stat, syscall.Errno) {
	return n.openStat(unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
}

// openSelf opens the node itself as an O_PATH descriptor that does not
// follow a symlink, and stats it. A node without a path (or whose path
// names another object now) falls back to one of its open handles
// (reopened as O_PATH through /proc).
func (n *node) openSelf() (int, backing.Stat, syscall.Errno) {
	fd, st, errno := n.openStat(unix.O_PATH|unix.O_NOFOLLOW, 0)
	if (errno == syscall.ENOENT || errno == syscall.ESTALE) && !n.isRoot() {
		if hfd, herrno := n.reopenHandle(unix.O_PATH); herrno == 0 {
			fd, errno = hfd, 0
			var err error
			if st, err = backing.Fstat(fd); err != nil {
				unix.Close(fd)
				return -1, backing.Stat{}, toErrno(err)
			}
		}
	}
	if errno != 0 {
		return -1, backing.Stat{}, errno
	}
	if st.Type() != n.Mode()&unix.S_IFMT {
		// The name now holds a different kind of file than this node.
		unix.Close(fd)
		return -1, backing.Stat{}, syscall.ESTALE
	}
	return fd, st, 0
}

// reopenHandle opens the file of one of the node's open handles again.
func (n *node) reopenHandle(flags int) (int, syscall.Errno) {
	e := n.ext.Load()
	if e == nil {
		return -1, syscall.ENOENT
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for f := range e.files {
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
//
// dirMode is n's st_mode, which sets the entry's timeout
// (FS.entryTimeout).
func (n *node) child(ctx context.Context, dirMode uint32, st *backing.Stat, out *fuse.EntryOut) (*gofs.Inode, *node) {
	c, attr := n.v.newNode(st)
	ch := n.NewInode(ctx, c, attr)
	n.v.fillAttr(st, &out.Attr)
	out.SetEntryTimeout(n.v.fs.entryTimeout(dirMode))
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

func (n *node) setStamp(st *backing.Stat) { n.stamp.Store(stampOf(st)) }

// keepCache reports whether the kernel's cached data of the file is still
// valid for st, and records st as reported.
func (n *node) keepCache(st *backing.Stat) bool {
	s := stampOf(st)
	return n.stamp.Swap(s) == s
}

func (n *node) addFile(f *file) {
	e := n.extra()
	e.mu.Lock()
	if e.files == nil {
		e.files = map[*file]struct{}{}
	}
	e.files[f] = struct{}{}
	e.mu.Unlock()
}

func (n *node) removeFile(f *file) {
	e := n.extra()
	e.mu.Lock()
	delete(e.files, f)
	e.mu.Unlock()
}

// Lookup finds a child by name. The caller needs search permission on
// the directory (perm.go). A name that does not exist is answered as a
// negative entry the kernel keeps for the FS's negative timeout
// (coherence.go tells it of names made through other views), unless the
// directory does not let every class search it.
func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if n.v.removed.Load() {
		return nil, syscall.ENOENT
	}
	dirfd, dst, errno := n.openDirStat()
	if errno != 0 {
		return nil, errno
	}
	defer unix.Close(dirfd)
	if n.v.checks() {
		if errno := n.v.may(callerOf(ctx), dst.Mode, mayExec); errno != 0 {
			return nil, errno
		}
	}
	if len(name) > backing.NameMax {
		return nil, syscall.ENAMETOOLONG
	}
	st, err := backing.Lstat(dirfd, name)
	if err != nil {
		errno := toErrno(err)
		if errno == syscall.ENOENT {
			out.SetEntryTimeout(n.v.fs.negEntryTimeout(dst.Mode))
		}
		return nil, errno
	}
	ch, _ := n.child(ctx, dst.Mode, &st, out)
	return ch, 0
}

// Access answers access(2), faccessat(2) and chdir(2) (perm.go).
func (n *node) Access(ctx context.Context, mask uint32) syscall.Errno {
	fd, st, errno := n.openSelf()
	if errno != 0 {
		return errno
	}
	unix.Close(fd)
	return n.v.accessCheck(ctx, &st, mask)
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
	if n.isRoot() && n.v.removed.Load() {
		n.v.closeRoot()
	}
}
