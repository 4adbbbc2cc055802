package fs

import (
	"errors"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/internal/backing"
	"github.com/vfolder/vfolder/quota"
)

// Charging directories and xattrs (see accounting.go for the table and
// package quota for the rules). A namespace operation names the
// directories it changes to the ledger before it acts and reports their
// st_size after it, read with fstat from the directory descriptor the
// operation already has open; an xattr change reports the object's user.*
// attribute bytes after it. Without a ledger none of this costs a system
// call.

// dirRef names the directory node n, open as dirfd, for the ledger: its
// key, whether it is the folder root, its path in the folder, and how to
// read its size (used in cluster mode only).
func (n *node) dirRef(dirfd int) quota.DirRef {
	q := &n.v.q
	d := quota.DirRef{Key: q.key(n.dev(), n.ino), Root: n.isRoot() && q.prefix == ""}
	if q.m.Clustered() {
		d.Size = func() int64 { return dirSize(dirfd) }
	}
	if !d.Root {
		if comps, errno := n.relPath(); errno == 0 {
			d.Hint = q.hint(comps, "")
		}
	}
	return d
}

// dirSize is the st_size of an open directory, -1 when unknown.
func dirSize(dirfd int) int64 {
	st, err := backing.Fstat(dirfd)
	if err != nil {
		return -1
	}
	return st.Size
}

// reserveCreate holds room for a new entry name of the directory n: the
// object (kind, a symlink's target bytes) and n's growth. hint is the new
// object's path in the folder, for its write hold.
func (n *node) reserveCreate(dirfd int, kind quota.Kind, bytes int64, name string) (quota.Create, string, syscall.Errno) {
	v := n.v
	q := &v.q
	if !q.on() {
		return quota.Create{}, "", 0
	}
	d := n.dirRef(dirfd)
	hint := ""
	if d.Root {
		hint = q.hint(nil, name)
	} else if d.Hint != "" {
		hint = d.Hint + "/" + name
	}
	c, err := q.m.ReserveCreate(q.scope, q.folder, kind, bytes, d)
	return c, hint, q.errno(v, "create", err)
}

// commitCreate records the new object st made in the directory dirfd.
func (v *view) commitCreate(c *quota.Create, st *backing.Stat, dirfd int) {
	if v.q.on() {
		c.Commit(v.q.key(st.Dev, st.Ino), st.Size, dirSize(dirfd))
	}
}

// cancelCreate ends a create that made nothing.
func (v *view) cancelCreate(c *quota.Create, dirfd int) {
	if v.q.on() {
		c.Cancel(dirSize(dirfd))
	}
}

// reserveDir names the directory n to the ledger before an entry is
// added to it (grow) or removed from it.
func (n *node) reserveDir(dirfd int, grow bool) (quota.DirReservation, syscall.Errno) {
	v := n.v
	q := &v.q
	if !q.on() {
		return quota.DirReservation{}, 0
	}
	r, err := q.m.ReserveDir(q.scope, q.folder, n.dirRef(dirfd), grow)
	return r, q.errno(v, "directory", err)
}

// reserveRename names the directories of a rename from n (open as sdir)
// into np (open as ddir).
func (n *node) reserveRename(np *node, sdir, ddir int, grow bool) (quota.DirReservation, syscall.Errno) {
	v := n.v
	q := &v.q
	if !q.on() {
		return quota.DirReservation{}, 0
	}
	r, err := q.m.ReserveRename(q.scope, q.folder, n.dirRef(sdir), np.dirRef(ddir), grow)
	return r, q.errno(v, "rename", err)
}

// settleDirs reports the sizes of the directories of r (in the order they
// were reserved) after the operation.
func (v *view) settleDirs(r *quota.DirReservation, dirfds ...int) {
	if !v.q.on() {
		return
	}
	switch len(dirfds) {
	case 1:
		r.Done(dirSize(dirfds[0]))
	case 2:
		r.Done(dirSize(dirfds[0]), dirSize(dirfds[1]))
	}
}

// reserveXattr holds room for a change of a user.* attribute of the
// object st (open as fd) of node n: growth tells what the change can add
// (it runs once the ledger holds the inode).
func (n *node) reserveXattr(fd int, st *backing.Stat, growth func() (int64, error)) (quota.XattrReservation, syscall.Errno) {
	v := n.v
	q := &v.q
	if !q.on() {
		return quota.XattrReservation{}, 0
	}
	kind := quota.KindOf(st.Mode)
	hint := ""
	if n.isRoot() && q.prefix == "" {
		kind = quota.KindRoot
	} else if comps, errno := n.relPath(); errno == 0 {
		hint = q.hint(comps, "")
	}
	var current func() int64
	if q.m.Clustered() {
		current = func() int64 {
			n, err := quota.UserXattrBytes(fd)
			if err != nil {
				return -1
			}
			return n
		}
	}
	r, err := q.m.ReserveXattr(q.scope, q.folder, q.key(st.Dev, st.Ino), kind, st.Size, hint, growth, current)
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return r, errno // from growth: the backing file system's answer
	}
	return r, q.errno(v, "xattr", err)
}

// settleXattr reports the user.* attribute bytes of the object open as fd
// after the change.
func (v *view) settleXattr(r *quota.XattrReservation, fd int) {
	if !v.q.on() {
		return
	}
	total, err := quota.UserXattrBytes(fd)
	if err != nil {
		total = -1
	}
	r.Done(total)
}

// xattrGrowth is what setting attr of the object at path p (a
// /proc/self/fd path) to size bytes can add: the new attribute less the
// one it replaces.
func xattrGrowth(p, attr string, size int) func() (int64, error) {
	return func() (int64, error) {
		old, err := unix.Getxattr(p, attr, nil)
		switch {
		case errors.Is(err, unix.ENODATA):
			old = -1
		case err != nil:
			return 0, toErrno(err)
		}
		return quota.XattrGrowth(attr, size, old), nil
	}
}
