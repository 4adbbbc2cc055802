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
// reaches its file without following a symlink, or ENODATA-class errors
// for symlinks (user.* attributes exist only on files and directories).
func (n *node) xattrTarget() (int, string, syscall.Errno) {
	fd, st, errno := n.openSelf()
	if errno != 0 {
		return -1, "", errno
	}
	if st.Type() == unix.S_IFLNK {
		unix.Close(fd)
		return -1, "", syscall.ENODATA
	}
	return fd, backing.ProcPath(fd), 0
}

// Getxattr reads a user.* attribute; any other name has no value.
func (n *node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	if !strings.HasPrefix(attr, xattrPrefix) {
		return 0, syscall.ENODATA
	}
	fd, p, errno := n.xattrTarget()
	if errno != 0 {
		return 0, errno
	}
	defer unix.Close(fd)
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
func (n *node) mutableXattrTarget(attr string) (int, string, syscall.Errno) {
	if errno := n.v.mutable(); errno != 0 {
		return -1, "", errno
	}
	if !strings.HasPrefix(attr, xattrPrefix) {
		return -1, "", syscall.EOPNOTSUPP
	}
	fd, p, errno := n.xattrTarget()
	if errno == syscall.ENODATA {
		return -1, "", syscall.EPERM
	}
	return fd, p, errno
}

// Setxattr writes a user.* attribute; other namespaces are not supported.
func (n *node) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	fd, p, errno := n.mutableXattrTarget(attr)
	if errno != 0 {
		return errno
	}
	defer unix.Close(fd)
	return toErrno(unix.Setxattr(p, attr, data, int(flags)))
}

// Removexattr removes a user.* attribute.
func (n *node) Removexattr(ctx context.Context, attr string) syscall.Errno {
	fd, p, errno := n.mutableXattrTarget(attr)
	if errno != 0 {
		return errno
	}
	defer unix.Close(fd)
	return toErrno(unix.Removexattr(p, attr))
}

// Listxattr lists the user.* attributes only.
func (n *node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	fd, p, errno := n.xattrTarget()
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
