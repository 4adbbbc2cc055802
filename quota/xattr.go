package quota

import (
	"bytes"
	"errors"
	"strconv"

	"golang.org/x/sys/unix"
)

// User extended attributes are charged sum(len(name)+len(value)) over an
// object's "user." attributes, the only namespace a view lets users set.
// Only sizes are needed, so the values are never copied: listxattr, then
// getxattr with an empty buffer per name (which returns the value's
// length). That is also why these are plain x/sys/unix calls and not
// github.com/pkg/xattr, whose Get returns the value itself.
//
// Objects are reached through descriptors only: UserXattrBytes through
// /proc/self/fd/N of a descriptor of the object (an O_PATH one will do;
// the magic link is followed to the object, which must not be a symlink),
// xattrBytesAt through /proc/self/fd/N/<name> of its directory with the
// l*xattr calls, which do not follow a symlink in the last component.

const userPrefix = "user."

// UserXattrBytes is what the user.* extended attributes of the object
// open as fd (a regular file or a directory) are charged.
func UserXattrBytes(fd int) (int64, error) {
	return userXattrBytes("/proc/self/fd/"+strconv.Itoa(fd), false)
}

// xattrBytesAt is UserXattrBytes for the entry name of the directory dirfd,
// without following a symlink.
func xattrBytesAt(dirfd int, name string) (int64, error) {
	return userXattrBytes("/proc/self/fd/"+strconv.Itoa(dirfd)+"/"+name, true)
}

// kindHasXattrs: user.* attributes exist only on regular files and
// directories (the kernel refuses them elsewhere).
func kindHasXattrs(k Kind) bool {
	return k == KindFile || k == KindDir || k == KindRoot
}

func userXattrBytes(path string, nofollow bool) (int64, error) {
	list, get := unix.Listxattr, unix.Getxattr
	if nofollow {
		list, get = unix.Llistxattr, unix.Lgetxattr
	}
	var stack [1024]byte
	buf := stack[:]
	var n int
	for {
		var err error
		n, err = list(path, buf)
		if err == nil {
			break
		}
		switch {
		case errors.Is(err, unix.ERANGE):
			need, err := list(path, nil)
			if err != nil {
				return 0, noXattrs(err)
			}
			buf = make([]byte, need+256)
		case errors.Is(err, unix.EINTR):
		default:
			return 0, noXattrs(err)
		}
	}
	var sum int64
	for names := buf[:n]; len(names) > 0; {
		name, rest, _ := bytes.Cut(names, []byte{0})
		names = rest
		if !bytes.HasPrefix(name, []byte(userPrefix)) {
			continue
		}
		vn, err := get(path, string(name), nil)
		if errors.Is(err, unix.ENODATA) {
			continue // removed since the list
		}
		if err != nil {
			return 0, err
		}
		sum += int64(len(name) + vn)
	}
	return sum, nil
}

// noXattrs turns "this file system has no xattrs" into none.
func noXattrs(err error) error {
	if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) {
		return nil
	}
	return err
}
