package fs

import (
	"context"
	"errors"
	"io/fs"
	"syscall"

	"github.com/vfolder/vfolder/meta"
)

// errClosed is the errno of new work on a removed view or a closed FS.
const errClosed = syscall.ESTALE

// toErrno maps any error to the errno of a FUSE reply. It unwraps: a
// syscall.Errno anywhere in the chain wins, then the well-known sentinels;
// everything else is EIO. nil is 0.
func toErrno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, meta.ErrNotFound):
		return syscall.ENOENT
	case errors.Is(err, fs.ErrExist), errors.Is(err, meta.ErrExists):
		return syscall.EEXIST
	case errors.Is(err, fs.ErrPermission):
		return syscall.EACCES
	case errors.Is(err, fs.ErrInvalid), errors.Is(err, meta.ErrInvalid):
		return syscall.EINVAL
	case errors.Is(err, meta.ErrLimitExceeded):
		return syscall.EDQUOT
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return syscall.EINTR
	case errors.Is(err, fs.ErrClosed), errors.Is(err, ErrClosed):
		return errClosed
	}
	return syscall.EIO
}
