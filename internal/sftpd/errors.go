package sftpd

import (
	"context"
	"errors"
	"fmt"

	"github.com/pkg/sftp"
	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/internal/service"
	"github.com/vfolder/vfolder/meta"
)

// SFTP status codes a request can end with.
var (
	codeNoSuchFile  = sftp.ErrSSHFxNoSuchFile
	codeDenied      = sftp.ErrSSHFxPermissionDenied
	codeFailure     = sftp.ErrSSHFxFailure
	codeUnsupported = sftp.ErrSSHFxOpUnsupported
)

// opError is what a request ends with: pkg/sftp sends the SFTP code it
// finds by errors.As and Error() as the status message.
type opError struct {
	code  error // one of the code* values
	cause error // the errno or service error, for errors.Is
	msg   string
}

func (e *opError) Error() string   { return e.msg }
func (e *opError) Unwrap() []error { return []error{e.code, e.cause} }

func newErr(code error, cause error, format string, a ...any) error {
	return &opError{code: code, cause: cause, msg: fmt.Sprintf(format, a...)}
}

// op names what a request does, for the messages.
type op int

const (
	opRead op = iota
	opWrite
	opDelete // removes or replaces an entry
	opList
)

// fail turns an error of a request on l into the error the client gets.
func (h *handlers) fail(ctx context.Context, what op, l loc, err error) error {
	var oe *opError
	if err == nil || errors.As(err, &oe) {
		return err
	}
	var errno unix.Errno
	if !errors.As(err, &errno) {
		switch {
		case errors.Is(err, service.ErrForbidden):
			return newErr(codeDenied, err, "%s: %v", l.p, err)
		case errors.Is(err, meta.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
			return newErr(codeFailure, err, "%s: metadata unavailable, try again: %v", l.p, err)
		}
		h.log.Error().Err(err).Str("path", l.p).Msg("sftp request failed")
		return newErr(codeFailure, err, "%s: %v", l.p, err)
	}
	switch errno {
	case unix.ENOENT:
		return newErr(codeNoSuchFile, errno, "%s: no such file or directory", l.p)
	case unix.EROFS:
		if l.top {
			return newErr(codeDenied, errno, "%s: the top level lists your folders and cannot be changed (folders are made with 'vfolder create')", l.p)
		}
		return newErr(codeDenied, errno, "%s: folder %q is read-only for you (permission %s)", l.p, l.r.Name, l.r.Perm)
	case unix.EPERM:
		if what == opDelete && l.r.Perm == meta.PermRW {
			return newErr(codeDenied, errno, "%s: deleting and replacing are not allowed in folder %q with permission rw on this volume (it needs wd)", l.p, l.r.Name)
		}
		return newErr(codeDenied, errno, "%s: operation not permitted", l.p)
	case unix.EACCES:
		return newErr(codeDenied, errno, "%s: permission denied", l.p)
	case unix.ELOOP:
		return newErr(codeDenied, errno, "%s: is a symbolic link or passes through one; links on the volume are never followed", l.p)
	case unix.EBUSY:
		if l.rel == "" && !l.top {
			return newErr(codeDenied, errno, "%s: a folder's root cannot be removed, renamed or replaced here (use 'vfolder rename' or 'vfolder delete')", l.p)
		}
	case unix.EDQUOT:
		return newErr(codeFailure, errno, "%s: %s", l.p, h.quotaText(ctx, l))
	case unix.ENOSPC:
		return newErr(codeFailure, errno, "%s: no space left on the volume", l.p)
	case unix.EXDEV:
		return newErr(codeFailure, errno, "%s: cannot move or link between folders (copy the file instead)", l.p)
	case unix.EEXIST:
		return newErr(codeFailure, errno, "%s: already exists", l.p)
	case unix.ENOTEMPTY:
		return newErr(codeFailure, errno, "%s: directory not empty", l.p)
	case unix.EISDIR:
		return newErr(codeFailure, errno, "%s: is a directory", l.p)
	case unix.ENOTDIR:
		return newErr(codeFailure, errno, "%s: not a directory", l.p)
	case unix.ENAMETOOLONG:
		return newErr(codeFailure, errno, "%s: name too long", l.p)
	case unix.EINVAL:
		return newErr(codeFailure, errno, "%s: invalid argument", l.p)
	}
	return newErr(codeFailure, errno, "%s: %v", l.p, errno)
}

// quotaText describes the folder's quota scope for a refused growth.
func (h *handlers) quotaText(ctx context.Context, l loc) string {
	f := l.r.Folder
	q, err := h.s.svc.QuotaScope(ctx, f.Volume, f.Owner)
	if err != nil {
		return fmt.Sprintf("disk quota exceeded (quota scope %s on volume %s)", f.Owner, f.Volume)
	}
	return fmt.Sprintf("disk quota exceeded: quota scope %s on volume %s holds %d of its %d bytes", f.Owner, f.Volume, q.UsedBytes, q.LimitBytes)
}
