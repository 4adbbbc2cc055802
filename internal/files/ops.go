package files

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/internal/service"
	"github.com/vfolder/vfolder/meta"
)

// errNoRoom marks EDQUOT/ENOSPC from the view: the handler turns it into a
// QuotaError with the ledger's figures.
var errNoRoom = errors.New("no room in the quota scope")

// beneath is how every path below a view's root is resolved: never above
// the root, never through a symlink, never onto another mount.
const beneath = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_XDEV

// openAt opens rel (cleaned, relative) below dirfd.
func openAt(dirfd int, rel string, flags int, mode uint32) (int, error) {
	for {
		fd, err := unix.Openat2(dirfd, rel, &unix.OpenHow{
			Flags:   uint64(flags | unix.O_CLOEXEC | unix.O_NOFOLLOW),
			Mode:    uint64(mode),
			Resolve: beneath,
		})
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		return fd, err
	}
}

// fsErr turns an errno of op on p into an error wrapping the API's
// sentinels.
func fsErr(op, p string, err error) error {
	var en unix.Errno
	if !errors.As(err, &en) {
		return fmt.Errorf("%s %s: %w", op, p, err)
	}
	switch en {
	case unix.ENOENT:
		return fmt.Errorf("%w: %s %s: no such file or directory", meta.ErrNotFound, op, p)
	case unix.EEXIST:
		return fmt.Errorf("%w: %s %s: it exists already", meta.ErrExists, op, p)
	case unix.ENOTEMPTY:
		return fmt.Errorf("%w: %s %s: the directory is not empty (remove it recursively)", meta.ErrConflict, op, p)
	case unix.EROFS:
		return fmt.Errorf("%w: %s %s: the folder is read-only here", service.ErrForbidden, op, p)
	case unix.EPERM, unix.EACCES:
		return fmt.Errorf("%w: %s %s: not permitted in this folder (%v)", service.ErrForbidden, op, p, en)
	case unix.EDQUOT, unix.ENOSPC:
		return fmt.Errorf("%w: %s %s", errNoRoom, op, p)
	case unix.ELOOP:
		return fmt.Errorf("%w: %s %s: a symlink is in the way (the file API follows none)", meta.ErrInvalid, op, p)
	case unix.EXDEV:
		return fmt.Errorf("%w: %s %s: crosses a mount or a folder", meta.ErrInvalid, op, p)
	case unix.ENOTDIR, unix.EISDIR, unix.EINVAL, unix.ENAMETOOLONG, unix.EBUSY:
		return fmt.Errorf("%w: %s %s: %v", meta.ErrInvalid, op, p, en)
	}
	return fmt.Errorf("%s %s: %w", op, p, err)
}

// fileType names a stat mode's type.
func fileType(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return api.FileRegular
	case unix.S_IFDIR:
		return api.FileDir
	case unix.S_IFLNK:
		return api.FileSymlink
	}
	return api.FileOther
}

func entryOf(name string, st *unix.Stat_t) api.FileEntry {
	return api.FileEntry{
		Name:  name,
		Type:  fileType(st.Mode),
		Size:  st.Size,
		Mtime: time.Unix(st.Mtim.Sec, st.Mtim.Nsec).UTC(),
		Mode:  fmt.Sprintf("%04o", st.Mode&0o7777),
	}
}

// lstatAt stats name in dirfd without following a symlink; a symlink's
// target is filled in.
func lstatAt(dirfd int, name string) (api.FileEntry, *unix.Stat_t, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return api.FileEntry{}, nil, err
	}
	e := entryOf(name, &st)
	if e.Type == api.FileSymlink {
		buf := make([]byte, 4096)
		if n, err := unix.Readlinkat(dirfd, name, buf); err == nil {
			e.Target = string(buf[:n])
		}
	}
	return e, &st, nil
}

// openParent opens the directory holding clean (not the root) and
// returns it with the last element.
func openParent(root int, clean string) (int, string, error) {
	dir, base, err := splitPath(clean)
	if err != nil {
		return -1, "", err
	}
	fd, err := openAt(root, dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return -1, "", fsErr("open", "/"+dir, err)
	}
	return fd, base, nil
}

// stat stats clean below root.
func stat(root int, clean string) (api.FileEntry, error) {
	if clean == "." {
		var st unix.Stat_t
		if err := unix.Fstat(root, &st); err != nil {
			return api.FileEntry{}, fsErr("stat", "/", err)
		}
		return entryOf("/", &st), nil
	}
	pfd, base, err := openParent(root, clean)
	if err != nil {
		return api.FileEntry{}, err
	}
	defer unix.Close(pfd)
	e, _, err := lstatAt(pfd, base)
	if err != nil {
		return api.FileEntry{}, fsErr("stat", "/"+clean, err)
	}
	return e, nil
}

// listBatch is how many names one getdents round reads: memory stays
// bounded by it whatever the directory's size.
const listBatch = 1024

// list calls emit for every entry of directory clean, batch after batch
// (flush after each), in directory order. StagingDir is left out at the
// root.
func list(ctx context.Context, root int, clean string, emit func(api.FileEntry) error, flush func()) error {
	fd, err := openAt(root, clean, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return fsErr("list", "/"+strings.TrimPrefix(clean, "."), err)
	}
	d := os.NewFile(uintptr(fd), clean)
	defer d.Close()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		names, err := d.Readdirnames(listBatch)
		for _, n := range names {
			if clean == "." && n == StagingDir {
				continue
			}
			e, _, serr := lstatAt(fd, n)
			if errors.Is(serr, unix.ENOENT) {
				continue // removed meanwhile
			}
			if serr != nil {
				return fsErr("stat", n, serr)
			}
			if err := emit(e); err != nil {
				return err
			}
		}
		flush()
		if errors.Is(err, io.EOF) || (err == nil && len(names) == 0) {
			return nil
		}
		if err != nil {
			return fsErr("list", clean, err)
		}
	}
}

// mkdir creates directory clean (with its missing parents when parents
// is set; then an existing directory is fine, as with mkdir -p).
func mkdir(root int, clean string, parents bool) error {
	if clean == "." {
		if parents {
			return nil
		}
		return fmt.Errorf("%w: mkdir /: the folder's root exists", meta.ErrExists)
	}
	if !parents {
		pfd, base, err := openParent(root, clean)
		if err != nil {
			return err
		}
		defer unix.Close(pfd)
		if err := unix.Mkdirat(pfd, base, 0o755); err != nil {
			return fsErr("mkdir", "/"+clean, err)
		}
		return nil
	}
	cur, err := unix.Dup(root)
	if err != nil {
		return err
	}
	defer func() { unix.Close(cur) }()
	done := ""
	for _, e := range strings.Split(clean, "/") {
		done += "/" + e
		if err := unix.Mkdirat(cur, e, 0o755); err != nil && err != unix.EEXIST {
			return fsErr("mkdir", done, err)
		}
		next, err := openAt(cur, e, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			return fsErr("mkdir", done, err)
		}
		unix.Close(cur)
		cur = next
	}
	return nil
}

// move renames from to to, both below root. Without overwrite an
// existing target is refused.
func move(root int, from, to string, overwrite bool) error {
	ffd, fbase, err := openParent(root, from)
	if err != nil {
		return err
	}
	defer unix.Close(ffd)
	tfd, tbase, err := openParent(root, to)
	if err != nil {
		return err
	}
	defer unix.Close(tfd)
	return renameAt(ffd, fbase, tfd, tbase, overwrite, "/"+from+" -> /"+to)
}

// renameAt renames, refusing an existing target unless overwrite.
func renameAt(ffd int, fbase string, tfd int, tbase string, overwrite bool, what string) error {
	var flags uint
	if !overwrite {
		flags = unix.RENAME_NOREPLACE
	}
	err := unix.Renameat2(ffd, fbase, tfd, tbase, flags)
	if err == unix.EINVAL && !overwrite {
		// No RENAME_NOREPLACE below: check, then rename.
		var st unix.Stat_t
		if serr := unix.Fstatat(tfd, tbase, &st, unix.AT_SYMLINK_NOFOLLOW); serr == nil {
			err = unix.EEXIST
		} else {
			err = unix.Renameat(ffd, fbase, tfd, tbase)
		}
	}
	if err != nil {
		return fsErr("move", what, err)
	}
	return nil
}

// remove removes clean: a file, a symlink or an empty directory.
func remove(root int, clean string) error {
	pfd, base, err := openParent(root, clean)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fsErr("remove", "/"+clean, err)
	}
	flags := 0
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		flags = unix.AT_REMOVEDIR
	}
	if err := unix.Unlinkat(pfd, base, flags); err != nil {
		return fsErr("remove", "/"+clean, err)
	}
	return nil
}

// progress counts what a removal did.
type progress interface{ add(entries, bytes int64) }

// removeAll removes name in dirfd with everything below it, directory by
// directory through fds (one per level, a batch of names at a time).
func removeAll(ctx context.Context, dirfd int, name, shown string, p progress) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if err == unix.ENOENT {
			return nil
		}
		return fsErr("remove", shown, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		if err := unix.Unlinkat(dirfd, name, 0); err != nil && err != unix.ENOENT {
			return fsErr("remove", shown, err)
		}
		var b int64
		if st.Mode&unix.S_IFMT == unix.S_IFREG {
			b = st.Size
		}
		p.add(1, b)
		return nil
	}
	fd, err := openAt(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return fsErr("remove", shown, err)
	}
	d := os.NewFile(uintptr(fd), shown)
	defer d.Close()
	for {
		names, err := d.Readdirnames(listBatch)
		for _, n := range names {
			if err := removeAll(ctx, fd, n, shown+"/"+n, p); err != nil {
				return err
			}
		}
		if len(names) == 0 || errors.Is(err, io.EOF) {
			// Entries removed while reading may have shifted the
			// directory's offsets: read again from the start until
			// it is empty.
			if _, serr := d.Seek(0, io.SeekStart); serr != nil {
				return fsErr("remove", shown, serr)
			}
			again, _ := d.Readdirnames(1)
			if len(again) == 0 {
				break
			}
			if _, serr := d.Seek(0, io.SeekStart); serr != nil {
				return fsErr("remove", shown, serr)
			}
			continue
		}
		if err != nil {
			return fsErr("remove", shown, err)
		}
	}
	if err := unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR); err != nil && err != unix.ENOENT {
		return fsErr("remove", shown, err)
	}
	p.add(1, 0)
	return nil
}
