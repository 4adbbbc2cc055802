package sftpd

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/pkg/sftp"
	"github.com/rs/zerolog"
	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/internal/service"
	"github.com/vfolder/vfolder/meta"
)

// handlers serve one SFTP session of one user.
type handlers struct {
	s    *Server
	user string // canonical 32-hex
	pub  ssh.PublicKey
	log  zerolog.Logger
}

func (h *handlers) sftpHandlers() sftp.Handlers {
	return sftp.Handlers{FileGet: h, FilePut: h, FileCmd: h, FileList: h}
}

// ctx bounds the metadata calls of one request.
func (h *handlers) ctx(r *sftp.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), h.s.opts.RequestTimeout)
}

// checkKey refuses a session whose key was removed since the login.
func (h *handlers) checkKey(ctx context.Context) error {
	_, _, err := h.s.svc.CheckSSHLogin(ctx, h.user, h.pub)
	if errors.Is(err, service.ErrKeyRefused) {
		return newErr(codeDenied, err, "the key of this login is no longer registered for user %s", h.user)
	}
	return err
}

func (h *handlers) reach(ctx context.Context) ([]service.Reached, error) {
	rs, err := h.s.svc.Reach(ctx, h.user)
	if err != nil {
		return nil, h.fail(ctx, opList, loc{p: "/"}, err)
	}
	return rs, nil
}

// volPerm checks the volume permission p for the user and, for a
// project's folder, the project.
func (h *handlers) volPerm(ctx context.Context, l loc, p service.VolumePerm) error {
	who := []meta.ScopeID{{Kind: meta.KindUser, UUID: h.user}}
	if o := l.r.Folder.Owner; o.Kind == meta.KindProject {
		who = append(who, o)
	}
	return h.s.svc.CheckVolumePerm(ctx, l.r.Folder.Volume, p, who...)
}

// prepare locates the request's path (or target) and checks what every
// request of kind what needs: a live key for opens, the volume
// permission, and that the top level is not changed.
func (h *handlers) prepare(ctx context.Context, p string, what op, open bool) (loc, error) {
	if open {
		if err := h.checkKey(ctx); err != nil {
			return loc{}, err
		}
	}
	l, err := h.locate(ctx, p)
	if err != nil {
		if _, rel := split(cleanPath(p)); rel == "" && what != opRead && what != opList {
			// A new entry at the top level: refused as a change of "/".
			top := loc{p: cleanPath(p), top: true}
			return top, h.fail(ctx, what, top, unix.EROFS)
		}
		return loc{}, err
	}
	if l.top {
		if what == opRead || what == opList {
			return l, nil
		}
		return l, h.fail(ctx, what, l, unix.EROFS)
	}
	if l.rel == "" && what == opDelete {
		return l, h.fail(ctx, what, l, unix.EBUSY)
	}
	var perm service.VolumePerm
	switch what {
	case opRead:
		perm = service.VolDownload
	case opWrite, opDelete:
		perm = service.VolUpload
		if l.r.Perm == meta.PermRO {
			return l, h.fail(ctx, what, l, unix.EROFS)
		}
	default:
		return l, nil
	}
	if err := h.volPerm(ctx, l, perm); err != nil {
		return l, h.fail(ctx, what, l, err)
	}
	return l, nil
}

func (h *handlers) done(r *sftp.Request, l loc, err error) {
	if err != nil {
		h.log.Debug().Str("method", r.Method).Str("path", cleanPath(r.Filepath)).Str("target", r.Target).Err(err).Msg("sftp request refused")
	}
}

// ---- FileReader, FileWriter ----

// Fileread opens a regular file for reading.
func (h *handlers) Fileread(r *sftp.Request) (_ io.ReaderAt, err error) {
	ctx, cancel := h.ctx(r)
	defer cancel()
	var l loc
	defer func() { h.done(r, l, err) }()
	if l, err = h.prepare(ctx, r.Filepath, opRead, true); err != nil {
		return nil, err
	}
	if l.top {
		return nil, h.fail(ctx, opRead, l, unix.EISDIR)
	}
	f, err := h.open(l, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, h.fail(ctx, opRead, l, err)
	}
	if err := regular(f); err != nil {
		f.Close()
		return nil, h.fail(ctx, opRead, l, err)
	}
	return f, nil
}

// Filewrite opens a file for writing (the client's open flags: create,
// truncate, exclusive).
func (h *handlers) Filewrite(r *sftp.Request) (io.WriterAt, error) {
	return h.openFile(r)
}

// OpenFile opens a file for reading and writing.
func (h *handlers) OpenFile(r *sftp.Request) (sftp.WriterAtReaderAt, error) {
	return h.openFile(r)
}

func (h *handlers) openFile(r *sftp.Request) (_ *file, err error) {
	ctx, cancel := h.ctx(r)
	defer cancel()
	var l loc
	defer func() { h.done(r, l, err) }()
	pf := r.Pflags()
	if l, err = h.prepare(ctx, r.Filepath, opWrite, true); err != nil {
		return nil, err
	}
	if l.top || l.rel == "" {
		return nil, h.fail(ctx, opWrite, l, unix.EISDIR)
	}
	if pf.Read {
		if err := h.volPerm(ctx, l, service.VolDownload); err != nil {
			return nil, h.fail(ctx, opRead, l, err)
		}
	}
	flags := unix.O_WRONLY
	if pf.Read {
		flags = unix.O_RDWR
	}
	if pf.Creat {
		flags |= unix.O_CREAT
	}
	if pf.Trunc {
		flags |= unix.O_TRUNC
	}
	if pf.Excl {
		flags |= unix.O_EXCL
	}
	// Append is not passed on: SFTP writes carry their offsets.
	mode := uint32(0o644)
	if r.AttrFlags().Permissions {
		mode = r.Attributes().Mode & 0o777
	}
	f, err := h.open(l, flags|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY, mode)
	if err != nil {
		return nil, h.fail(ctx, opWrite, l, err)
	}
	if err := regular(f); err != nil {
		f.Close()
		return nil, h.fail(ctx, opWrite, l, err)
	}
	return &file{f: f, h: h, l: l}, nil
}

// regular refuses anything but a regular file (a FIFO or a device would
// block or reach outside the folder).
func regular(f *os.File) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	switch {
	case st.IsDir():
		return unix.EISDIR
	case !st.Mode().IsRegular():
		return unix.EACCES
	}
	return nil
}

// file is an open file of a session; its errors are mapped for the
// client.
type file struct {
	f *os.File
	h *handlers
	l loc

	mu       sync.Mutex
	reported bool
}

func (w *file) ReadAt(p []byte, off int64) (int, error) {
	n, err := w.f.ReadAt(p, off)
	if err != nil && err != io.EOF {
		err = w.h.fail(context.Background(), opRead, w.l, err)
	}
	return n, err
}

// WriteAt writes at off. A write the quota cuts short returns what was
// written and the EDQUOT of the rest.
func (w *file) WriteAt(p []byte, off int64) (int, error) {
	n, err := w.f.WriteAt(p, off)
	if err != nil {
		ctx, cancel := context.WithTimeout(context.Background(), w.h.s.opts.RequestTimeout)
		defer cancel()
		err = w.h.fail(ctx, opWrite, w.l, err)
		w.mu.Lock()
		if !w.reported {
			w.reported = true
			w.h.log.Info().Str("path", w.l.p).Int64("offset", off+int64(n)).Err(err).Msg("sftp write refused")
		}
		w.mu.Unlock()
	}
	return n, err
}

func (w *file) Close() error {
	if err := w.f.Close(); err != nil {
		return w.h.fail(context.Background(), opWrite, w.l, err)
	}
	return nil
}

// ---- FileCmder ----

// Filecmd runs Setstat, Rename, Rmdir, Mkdir, Link, Symlink and Remove.
func (h *handlers) Filecmd(r *sftp.Request) (err error) {
	ctx, cancel := h.ctx(r)
	defer cancel()
	var l loc
	defer func() { h.done(r, l, err) }()
	switch r.Method {
	case "Setstat":
		if l, err = h.prepare(ctx, r.Filepath, opWrite, false); err != nil {
			return err
		}
		return h.fail(ctx, opWrite, l, h.setstat(l, r))
	case "Mkdir":
		if l, err = h.prepare(ctx, r.Filepath, opWrite, false); err != nil {
			return err
		}
		if l.rel == "" {
			return h.fail(ctx, opWrite, l, unix.EEXIST)
		}
		mode := uint32(0o755)
		if r.AttrFlags().Permissions {
			mode = r.Attributes().Mode & 0o777
		}
		return h.fail(ctx, opWrite, l, h.atParent(l, func(pfd int, name string) error { return unix.Mkdirat(pfd, name, mode) }))
	case "Remove", "Rmdir":
		if l, err = h.prepare(ctx, r.Filepath, opDelete, false); err != nil {
			return err
		}
		flags := 0
		if r.Method == "Rmdir" {
			flags = unix.AT_REMOVEDIR
		}
		return h.fail(ctx, opDelete, l, h.atParent(l, func(pfd int, name string) error { return unix.Unlinkat(pfd, name, flags) }))
	case "Rename":
		return h.rename(ctx, r, unix.RENAME_NOREPLACE)
	case "Link":
		return h.link(ctx, r)
	case "Symlink":
		l.p = cleanPath(r.Target)
		return newErr(codeUnsupported, unix.ENOTSUP, "%s: creating symbolic links over SFTP is not supported", l.p)
	}
	return newErr(codeUnsupported, unix.ENOTSUP, "%s: %s is not supported", cleanPath(r.Filepath), r.Method)
}

// PosixRename renames, replacing an existing target (the
// posix-rename@openssh.com extension).
func (h *handlers) PosixRename(r *sftp.Request) error {
	ctx, cancel := h.ctx(r)
	defer cancel()
	return h.rename(ctx, r, 0)
}

func (h *handlers) rename(ctx context.Context, r *sftp.Request, flags uint) (err error) {
	var from, to loc
	defer func() { h.done(r, from, err) }()
	// Renaming removes the old name: a delete, as the views count it
	// (rw without delete may rename only onto a new name).
	what := opWrite
	if flags == 0 {
		what = opDelete
	}
	if from, err = h.prepare(ctx, r.Filepath, opDelete, false); err != nil {
		return err
	}
	if to, err = h.prepare(ctx, r.Target, what, false); err != nil {
		return err
	}
	if from.r.Folder.ID != to.r.Folder.ID {
		return h.fail(ctx, opWrite, from, unix.EXDEV)
	}
	err = h.atParent(from, func(ofd int, oname string) error {
		return h.atParent(to, func(nfd int, nname string) error {
			return unix.Renameat2(ofd, oname, nfd, nname, flags)
		})
	})
	if errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENOTEMPTY) {
		return h.fail(ctx, what, to, err)
	}
	if errors.Is(err, unix.EPERM) && flags == 0 {
		return h.fail(ctx, opDelete, to, err)
	}
	return h.fail(ctx, opWrite, from, err)
}

func (h *handlers) link(ctx context.Context, r *sftp.Request) (err error) {
	var from, to loc
	defer func() { h.done(r, from, err) }()
	if from, err = h.prepare(ctx, r.Filepath, opWrite, false); err != nil {
		return err
	}
	if to, err = h.prepare(ctx, r.Target, opWrite, false); err != nil {
		return err
	}
	if from.r.Folder.ID != to.r.Folder.ID {
		return h.fail(ctx, opWrite, to, unix.EXDEV)
	}
	// pkg/sftp gives the new link as Target and the existing file as
	// Filepath.
	return h.fail(ctx, opWrite, to, h.atParent(from, func(ofd int, oname string) error {
		return h.atParent(to, func(nfd int, nname string) error {
			return unix.Linkat(ofd, oname, nfd, nname, 0)
		})
	}))
}

// atParent runs fn with the parent directory of l and l's name in it.
func (h *handlers) atParent(l loc, fn func(pfd int, name string) error) error {
	pfd, name, err := h.parent(l)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	return fn(pfd, name)
}

// setstat applies size, mode, owner and times through a descriptor of
// the target (never through a symbolic link).
func (h *handlers) setstat(l loc, r *sftp.Request) error {
	af, a := r.AttrFlags(), r.Attributes()
	if !af.Size && !af.Permissions && !af.UidGid && !af.Acmodtime {
		return nil
	}
	flags := unix.O_RDONLY
	if af.Size {
		flags = unix.O_WRONLY
	}
	f, err := h.open(l, flags|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if errors.Is(err, unix.EISDIR) && af.Size {
		return unix.EISDIR
	}
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if !st.IsDir() && !st.Mode().IsRegular() {
		return unix.EACCES
	}
	fd := int(f.Fd())
	if af.Size {
		if err := unix.Ftruncate(fd, int64(a.Size)); err != nil {
			return err
		}
	}
	if af.Permissions {
		if err := unix.Fchmod(fd, a.Mode&0o777); err != nil {
			return err
		}
	}
	if af.UidGid {
		if err := unix.Fchown(fd, int(a.UID), int(a.GID)); err != nil {
			return err
		}
	}
	if af.Acmodtime {
		tv := []unix.Timeval{unix.NsecToTimeval(int64(a.Atime) * 1e9), unix.NsecToTimeval(int64(a.Mtime) * 1e9)}
		if err := unix.Futimes(fd, tv); err != nil {
			return err
		}
	}
	return nil
}

// StatVFS reports the folder's view of its quota (what df shows in a
// container).
func (h *handlers) StatVFS(r *sftp.Request) (_ *sftp.StatVFS, err error) {
	ctx, cancel := h.ctx(r)
	defer cancel()
	var l loc
	defer func() { h.done(r, l, err) }()
	if l, err = h.prepare(ctx, r.Filepath, opList, false); err != nil {
		return nil, err
	}
	if l.top {
		return nil, newErr(codeUnsupported, unix.ENOTSUP, "/: df needs a folder: df /<folder>")
	}
	f, err := h.open(l, unix.O_PATH, 0)
	if err != nil {
		return nil, h.fail(ctx, opList, l, err)
	}
	defer f.Close()
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil {
		return nil, h.fail(ctx, opList, l, err)
	}
	return &sftp.StatVFS{
		Bsize: uint64(st.Bsize), Frsize: uint64(st.Frsize), Blocks: st.Blocks, Bfree: st.Bfree, Bavail: st.Bavail,
		Files: st.Files, Ffree: st.Ffree, Favail: st.Ffree, Fsid: uint64(uint32(st.Fsid.Val[0]))<<32 | uint64(uint32(st.Fsid.Val[1])),
		Flag: uint64(st.Flags), Namemax: uint64(st.Namelen),
	}, nil
}

// ---- FileLister ----

// Filelist answers List, Stat and Readlink.
func (h *handlers) Filelist(r *sftp.Request) (_ sftp.ListerAt, err error) {
	ctx, cancel := h.ctx(r)
	defer cancel()
	var l loc
	defer func() { h.done(r, l, err) }()
	switch r.Method {
	case "List":
		if l, err = h.prepare(ctx, r.Filepath, opList, true); err != nil {
			return nil, err
		}
		if l.top {
			return h.listTop(ctx)
		}
		f, err := h.open(l, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
		if err != nil {
			return nil, h.fail(ctx, opList, l, err)
		}
		return &dirLister{f: f}, nil
	case "Stat":
		if l, err = h.prepare(ctx, r.Filepath, opList, false); err != nil {
			return nil, err
		}
		fi, err := h.stat(ctx, l, true)
		if err != nil {
			return nil, err
		}
		return listerOf(fi), nil
	case "Readlink":
		if l, err = h.prepare(ctx, r.Filepath, opList, false); err != nil {
			return nil, err
		}
		target, err := h.readlink(l)
		if err != nil {
			return nil, h.fail(ctx, opList, l, err)
		}
		return listerOf(&info{name: target, mode: fs.ModeSymlink | 0o777}), nil
	}
	return nil, newErr(codeUnsupported, unix.ENOTSUP, "%s: %s is not supported", cleanPath(r.Filepath), r.Method)
}

// Lstat describes the entry itself, a symbolic link included.
func (h *handlers) Lstat(r *sftp.Request) (_ sftp.ListerAt, err error) {
	ctx, cancel := h.ctx(r)
	defer cancel()
	var l loc
	defer func() { h.done(r, l, err) }()
	if l, err = h.prepare(ctx, r.Filepath, opList, false); err != nil {
		return nil, err
	}
	fi, err := h.stat(ctx, l, false)
	if err != nil {
		return nil, err
	}
	return listerOf(fi), nil
}

// Readlink reads a symbolic link (never following it).
func (h *handlers) Readlink(p string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), h.s.opts.RequestTimeout)
	defer cancel()
	l, err := h.prepare(ctx, p, opList, false)
	if err != nil {
		return "", err
	}
	target, err := h.readlink(l)
	if err != nil {
		err = h.fail(ctx, opList, l, err)
		h.log.Debug().Str("method", "Readlink").Str("path", l.p).Err(err).Msg("sftp request refused")
	}
	return target, err
}

// RealPath cleans p: every path is absolute from the virtual "/".
func (h *handlers) RealPath(p string) (string, error) { return cleanPath(p), nil }

func (h *handlers) readlink(l loc) (string, error) {
	if l.top || l.rel == "" {
		return "", unix.EINVAL
	}
	var target string
	err := h.atParent(l, func(pfd int, name string) error {
		buf := make([]byte, unix.PathMax)
		n, err := unix.Readlinkat(pfd, name, buf)
		if err != nil {
			return err
		}
		target = string(buf[:n])
		return nil
	})
	return target, err
}

// stat describes l; with follow a symbolic link is described as itself
// too (links are never followed), so that clients see what it is.
func (h *handlers) stat(ctx context.Context, l loc, follow bool) (os.FileInfo, error) {
	if l.top {
		return &info{name: "/", mode: fs.ModeDir | 0o555, mtime: time.Now()}, nil
	}
	var f *os.File
	var err error
	if l.rel == "" {
		f, err = h.open(l, unix.O_PATH, 0)
	} else {
		err = h.atParent(l, func(pfd int, name string) error {
			// O_PATH|O_NOFOLLOW opens a final link itself; the parent was
			// resolved without links.
			how := unix.OpenHow{Flags: unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC, Resolve: resolve &^ unix.RESOLVE_NO_SYMLINKS}
			fd, err := unix.Openat2(pfd, name, &how)
			if err != nil {
				return err
			}
			f = os.NewFile(uintptr(fd), name)
			return nil
		})
	}
	if err != nil {
		return nil, h.fail(ctx, opList, l, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, h.fail(ctx, opList, l, err)
	}
	if l.rel == "" {
		return renamed{fi, l.r.Name}, nil
	}
	return fi, nil
}

// listTop lists "/": one directory per folder the user reaches.
func (h *handlers) listTop(ctx context.Context) (sftp.ListerAt, error) {
	rs, err := h.reach(ctx)
	if err != nil {
		return nil, err
	}
	out := make(listerAt, 0, len(rs))
	for _, r := range rs {
		mode := fs.ModeDir | 0o755
		if r.Perm == meta.PermRO {
			mode = fs.ModeDir | 0o555
		}
		out = append(out, &info{name: r.Name, mode: mode, mtime: r.Folder.CreatedAt})
	}
	return out, nil
}

// ---- listers and file infos ----

type listerAt []os.FileInfo

func listerOf(fi os.FileInfo) listerAt { return listerAt{fi} }

func (l listerAt) ListAt(ls []os.FileInfo, off int64) (int, error) {
	if off >= int64(len(l)) {
		return 0, io.EOF
	}
	n := copy(ls, l[off:])
	if n < len(ls) || off+int64(n) >= int64(len(l)) {
		return n, io.EOF
	}
	return n, nil
}

// dirLister streams a directory: entries are read as the client asks for
// them (memory bounded by one reply), described with lstat (fstatat on
// the directory's descriptor, never following links).
type dirLister struct {
	f   *os.File
	mu  sync.Mutex
	off int64
	eof bool
}

func (d *dirLister) ListAt(ls []os.FileInfo, off int64) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if off != d.off {
		// Clients read a listing in order; anything else starts over.
		if _, err := d.f.Seek(0, io.SeekStart); err != nil {
			return 0, err
		}
		d.off, d.eof = 0, false
		for d.off < off {
			skip, err := d.f.Readdirnames(int(min(off-d.off, 1024)))
			d.off += int64(len(skip))
			if err != nil {
				return 0, io.EOF
			}
		}
	}
	if d.eof {
		return 0, io.EOF
	}
	got, err := d.f.Readdir(len(ls))
	n := copy(ls, got)
	d.off += int64(n)
	if err == io.EOF || n < len(ls) {
		d.eof = true
		return n, io.EOF
	}
	if err != nil {
		var errno syscall.Errno
		if errors.As(err, &errno) && errno == unix.ENOENT {
			return n, nil // an entry removed while listing
		}
		return n, err
	}
	return n, nil
}

func (d *dirLister) Close() error { return d.f.Close() }

// info is a synthetic FileInfo (the top level, readlink answers).
type info struct {
	name  string
	mode  fs.FileMode
	mtime time.Time
}

func (i *info) Name() string       { return i.name }
func (i *info) Size() int64        { return 0 }
func (i *info) Mode() fs.FileMode  { return i.mode }
func (i *info) ModTime() time.Time { return i.mtime }
func (i *info) IsDir() bool        { return i.mode.IsDir() }
func (i *info) Sys() any           { return nil }

// renamed is a FileInfo under another name (a folder root shows by its
// folder name).
type renamed struct {
	os.FileInfo
	name string
}

func (r renamed) Name() string { return r.name }
