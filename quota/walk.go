package quota

import (
	"context"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

const resolveFlags = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

func openat2(dirfd int, name string, flags uint64) (int, error) {
	how := unix.OpenHow{Flags: flags | unix.O_CLOEXEC | unix.O_NOFOLLOW, Resolve: resolveFlags}
	for {
		fd, err := unix.Openat2(dirfd, name, &how)
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		return fd, err
	}
}

// openDir opens a directory below dirfd (never through a symlink).
func openDir(dirfd int, rel string) (int, error) {
	return openat2(dirfd, rel, unix.O_RDONLY|unix.O_DIRECTORY)
}

// rootOf opens a private descriptor of a folder root (own offset for
// getdents) and returns it with the root's device.
func rootOf(dir *os.File) (int, uint64, error) {
	if dir == nil {
		return -1, 0, fmt.Errorf("%w: nil folder directory", ErrInvalid)
	}
	raw, err := dir.SyscallConn()
	if err != nil {
		return -1, 0, err
	}
	fd := -1
	var oerr error
	if cerr := raw.Control(func(d uintptr) { fd, oerr = openDir(int(d), ".") }); cerr != nil {
		return -1, 0, cerr
	}
	if oerr != nil {
		return -1, 0, fmt.Errorf("open folder root: %w", oerr)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, 0, fmt.Errorf("stat folder root: %w", err)
	}
	return fd, st.Dev, nil
}

// statAt lstat()s the object at the relative path rel below root without
// following any symlink: the parent is opened with openat2 beneath root,
// the last component is looked at with fstatat AT_SYMLINK_NOFOLLOW.
func statAt(root int, parent, name string, st *unix.Stat_t) error {
	if parent == "" {
		parent = "."
	}
	pfd, err := openat2(root, parent, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	for {
		err = unix.Fstatat(pfd, name, st, unix.AT_SYMLINK_NOFOLLOW)
		if err != unix.EINTR {
			return err
		}
	}
}

// statHint is statAt for a hint path.
func statHint(root int, hint string, st *unix.Stat_t) error {
	if !validHint(hint) {
		return unix.ENOENT
	}
	p, n := splitHint(hint)
	return statAt(root, p, n, st)
}

func isGone(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR)
}

// walker visits every object below a directory, depth first, through
// directory descriptors only. Objects that vanish while it runs are
// skipped; any other error marks the walk incomplete.
type walker struct {
	ctx        context.Context
	buf        []byte
	n          int
	fn         func(dirfd int, parent, name string, st *unix.Stat_t) error
	errs       []string
	incomplete bool
}

// newWalker makes a walker calling fn for every object, with the
// descriptor of its directory (valid during the call only).
func newWalker(ctx context.Context, fn func(dirfd int, parent, name string, st *unix.Stat_t) error) *walker {
	return &walker{ctx: ctx, buf: make([]byte, 64<<10), fn: fn}
}

func (w *walker) fail(rel string, err error) {
	w.incomplete = true
	if len(w.errs) < 20 {
		w.errs = append(w.errs, fmt.Sprintf("%s: %v", rel, err))
	}
}

func join(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "/" + name
}

// run walks the tree below the directory fd (which it does not close).
// The walk starts from the first entry even when fd was read before (a Check walks one root twice).
func (w *walker) run(fd int) error {
	if _, err := unix.Seek(fd, 0, 0); err != nil {
		return fmt.Errorf("quota: rewind folder root: %w", err)
	}
	return w.dir(fd, "")
}

func (w *walker) dir(fd int, rel string) error {
	names, err := readNames(fd, w.buf)
	if err != nil {
		w.fail(rel, err)
	}
	for _, name := range names {
		w.n++
		if w.n&255 == 0 {
			if err := w.ctx.Err(); err != nil {
				return err
			}
		}
		var st unix.Stat_t
		if err := fstatat(fd, name, &st); err != nil {
			if !isGone(err) {
				w.fail(join(rel, name), err)
			}
			continue
		}
		if err := w.fn(fd, rel, name, &st); err != nil {
			return err
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			continue
		}
		cfd, err := openDir(fd, name)
		if err != nil {
			if !isGone(err) {
				w.fail(join(rel, name), err)
			}
			continue
		}
		err = w.dir(cfd, join(rel, name))
		unix.Close(cfd)
		if err != nil {
			return err
		}
	}
	return nil
}

func fstatat(fd int, name string, st *unix.Stat_t) error {
	for {
		err := unix.Fstatat(fd, name, st, unix.AT_SYMLINK_NOFOLLOW)
		if err != unix.EINTR {
			return err
		}
	}
}

// readNames reads every entry name of a directory with getdents.
func readNames(fd int, buf []byte) ([]string, error) {
	var names []string
	for {
		n, err := unix.Getdents(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return names, err
		}
		if n <= 0 {
			return names, nil
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
}

// object is what the ledger charges for one object on storage.
type object struct {
	st   unix.Stat_t
	kind Kind
	data int64 // chargeOf(kind, st_size)
	x    int64 // user.* xattr bytes
}

func (o *object) total() int64 { return o.data + o.x }

// inspectAt looks at the object name in the directory parent below root
// (parent "" or "." for root itself's entries) without following a
// symlink: it opens the object itself (O_PATH), so that its stat and its
// xattrs are those of one object even while names change.
func inspectAt(root int, parent, name string, o *object) error {
	if parent == "" {
		parent = "."
	}
	pfd, err := openat2(root, parent, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	fd, err := openat2(pfd, name, unix.O_PATH)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return inspectFd(fd, o)
}

// inspectHint is inspectAt for a hint path.
func inspectHint(root int, hint string, o *object) error {
	if !validHint(hint) {
		return unix.ENOENT
	}
	p, n := splitHint(hint)
	return inspectAt(root, p, n, o)
}

// inspectFd fills o from a descriptor of the object.
func inspectFd(fd int, o *object) error {
	if err := unix.Fstat(fd, &o.st); err != nil {
		return err
	}
	o.kind = KindOf(o.st.Mode)
	o.data = chargeOf(o.kind, o.st.Size)
	o.x = 0
	if kindHasXattrs(o.kind) {
		x, err := UserXattrBytes(fd)
		if err != nil {
			return err
		}
		o.x = x
	}
	return nil
}
