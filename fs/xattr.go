package fs

import (
	"bytes"
	"context"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/internal/backing"
)

// xattrPrefix is the only namespace served (see the package comment).
const xattrPrefix = "user."

// xattrTarget opens the node for an xattr call and returns the path that
// reaches its file without following a symlink, and its stat, or
// ENODATA-class errors for symlinks (user.* attributes exist only on
// files and directories).
func (n *node) xattrTarget() (int, string, backing.Stat, syscall.Errno) {
	fd, st, errno := n.openSelf()
	if errno != 0 {
		return -1, "", st, errno
	}
	if st.Type() == unix.S_IFLNK {
		unix.Close(fd)
		return -1, "", st, syscall.ENODATA
	}
	return fd, backing.ProcPath(fd), st, 0
}

// Getxattr reads a user.* attribute; any other name has no value.
func (n *node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	if !strings.HasPrefix(attr, xattrPrefix) {
		return 0, syscall.ENODATA
	}
	fd, p, st, errno := n.xattrTarget()
	if errno != 0 {
		return 0, errno
	}
	defer unix.Close(fd)
	if n.v.checks() {
		if errno := xattrCheck(callerOf(ctx), st.Mode, n.v.spec.UID, n.v.spec.GID, mayRead); errno != 0 {
			return 0, errno
		}
	}
	sz, err := unix.Getxattr(p, attr, dest)
	if err == unix.ERANGE {
		// Tell the kernel the size it needs.
		if need, err2 := unix.Getxattr(p, attr, nil); err2 == nil {
			return uint32(need), syscall.ERANGE
		}
	}
	if err != nil {
		return 0, toErrno(err)
	}
	return uint32(sz), 0
}

// mutableXattrTarget checks that attr may be changed through this view
// (a writable view, the user. namespace, an object that can carry user.
// attributes) and opens its target like xattrTarget.
func (n *node) mutableXattrTarget(ctx context.Context, attr string) (int, string, backing.Stat, syscall.Errno) {
	if errno := n.v.mutable(); errno != 0 {
		return -1, "", backing.Stat{}, errno
	}
	if !strings.HasPrefix(attr, xattrPrefix) {
		return -1, "", backing.Stat{}, syscall.EOPNOTSUPP
	}
	fd, p, st, errno := n.xattrTarget()
	if errno == syscall.ENODATA {
		return -1, "", st, syscall.EPERM
	}
	if errno == 0 && n.v.checks() {
		if errno = xattrCheck(callerOf(ctx), st.Mode, n.v.spec.UID, n.v.spec.GID, mayWrite); errno != 0 {
			unix.Close(fd)
			return -1, "", st, errno
		}
	}
	return fd, p, st, errno
}

// Setxattr writes a user.* attribute; other namespaces are not supported.
// The attribute is charged to the scope: the growth is reserved first
// (EDQUOT, nothing written, when there is no room for it), the object's
// attribute bytes are settled after.
func (n *node) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	fd, p, st, errno := n.mutableXattrTarget(ctx, attr)
	if errno != 0 {
		return errno
	}
	defer unix.Close(fd)
	// quota: the attribute less the one it replaces.
	r, errno := n.reserveXattr(fd, &st, xattrGrowth(p, attr, len(data)))
	if errno != 0 {
		return errno
	}
	err := unix.Setxattr(p, attr, data, int(flags))
	n.v.settleXattr(&r, fd)
	return toErrno(err)
}

// Removexattr removes a user.* attribute.
func (n *node) Removexattr(ctx context.Context, attr string) syscall.Errno {
	fd, p, st, errno := n.mutableXattrTarget(ctx, attr)
	if errno != 0 {
		return errno
	}
	defer unix.Close(fd)
	// quota: releases the attribute's bytes; never needs room.
	r, errno := n.reserveXattr(fd, &st, noGrowth)
	if errno != 0 {
		return errno
	}
	err := unix.Removexattr(p, attr)
	n.v.settleXattr(&r, fd)
	return toErrno(err)
}

func noGrowth() (int64, error) { return 0, nil }

// Listxattr lists the user.* attributes only.
func (n *node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	fd, p, _, errno := n.xattrTarget()
	if errno == syscall.ENODATA {
		return 0, 0
	}
	if errno != 0 {
		return 0, errno
	}
	defer unix.Close(fd)
	var all []byte
	for size := 1024; ; size *= 4 {
		buf := make([]byte, size)
		sz, err := unix.Listxattr(p, buf)
		if err == unix.ERANGE && size < 1<<24 {
			continue
		}
		if err != nil {
			return 0, toErrno(err)
		}
		all = buf[:sz]
		break
	}
	var out []byte
	for _, name := range bytes.Split(all, []byte{0}) {
		if bytes.HasPrefix(name, []byte(xattrPrefix)) {
			out = append(out, name...)
			out = append(out, 0)
		}
	}
	if len(dest) == 0 {
		return uint32(len(out)), 0
	}
	if len(dest) < len(out) {
		return uint32(len(out)), syscall.ERANGE
	}
	return uint32(copy(dest, out)), 0
}
