package sftpd

import (
	"context"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/internal/service"
)

// resolve is the resolve mask of every open: below the starting
// descriptor, no symbolic link anywhere, no crossing into another mount.
const resolve = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_XDEV

// openat2 opens name below dirfd under the resolve rules; O_CLOEXEC is
// always added.
func openat2(dirfd int, name string, flags int, mode uint32) (int, error) {
	how := unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC), Resolve: resolve}
	if flags&unix.O_CREAT != 0 {
		how.Mode = uint64(mode & 0o777)
	}
	for {
		fd, err := unix.Openat2(dirfd, name, &how)
		if err == unix.EINTR {
			continue
		}
		return fd, err
	}
}

// loc is a request path resolved against the user's reach.
type loc struct {
	p   string          // the cleaned SFTP path ("/name/rel")
	top bool            // "/" itself, the virtual directory of folders
	r   service.Reached // the folder (unless top)
	rel string          // the path inside the folder; "" for its root
}

// cleanPath turns any client path into a rooted, cleaned one: ".."
// never climbs above "/", and relative paths are relative to "/".
func cleanPath(p string) string { return path.Clean("/" + p) }

// split cuts a cleaned path into the folder name and the path inside it.
func split(p string) (name, rel string) {
	name, rel, _ = strings.Cut(strings.TrimPrefix(p, "/"), "/")
	return name, rel
}

// locate resolves p: the top directory, or a folder the user reaches now.
func (h *handlers) locate(ctx context.Context, p string) (loc, error) {
	p = cleanPath(p)
	if p == "/" {
		return loc{p: p, top: true}, nil
	}
	name, rel := split(p)
	rs, err := h.reach(ctx)
	if err != nil {
		return loc{}, err
	}
	for _, r := range rs {
		if r.Name == name {
			return loc{p: p, r: r, rel: rel}, nil
		}
	}
	return loc{}, newErr(codeNoSuchFile, unix.ENOENT, "%s: you reach no folder named %q", p, name)
}

// root opens the folder's view root as an O_PATH descriptor.
func (h *handlers) root(l loc) (int, error) {
	return openat2(int(h.s.mnt.Fd()), "users/"+h.user+"/"+l.r.Name, unix.O_PATH|unix.O_DIRECTORY, 0)
}

// open opens l's target inside its folder with flags.
func (h *handlers) open(l loc, flags int, mode uint32) (*os.File, error) {
	rfd, err := h.root(l)
	if err != nil {
		return nil, err
	}
	defer unix.Close(rfd)
	name := l.rel
	if name == "" {
		name = "."
	}
	fd, err := openat2(rfd, name, flags, mode)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), path.Base(l.p)), nil
}

// parent opens the directory holding l's target (O_PATH) and returns it
// with the target's name. The folder root has no parent here.
func (h *handlers) parent(l loc) (int, string, error) {
	if l.rel == "" {
		return -1, "", unix.EBUSY
	}
	rfd, err := h.root(l)
	if err != nil {
		return -1, "", err
	}
	dir := path.Dir(l.rel)
	if dir == "." {
		return rfd, l.rel, nil
	}
	defer unix.Close(rfd)
	pfd, err := openat2(rfd, dir, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return -1, "", err
	}
	return pfd, path.Base(l.rel), nil
}
