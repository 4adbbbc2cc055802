// Package backing holds the primitives vfolder uses to touch files on a
// storage volume without ever following a symlink or leaving a directory.
//
// # Rules
//
//   - A path is never joined onto a host path. It is a list of components
//     resolved below a directory file descriptor with
//     openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS): ".." that climbs out,
//     absolute symlinks, relative symlinks and magic links all fail (EXDEV
//     or ELOOP) instead of being followed.
//   - The kernel refuses paths of PATH_MAX (4096) bytes or more. Open
//     resolves longer paths in chunks of at most ChunkMax bytes, each chunk
//     opened O_PATH|O_DIRECTORY below the previous one, so a tree deeper than
//     4096 bytes still works.
//   - The final component is handled with *at calls that do not follow
//     symlinks (AT_SYMLINK_NOFOLLOW, O_NOFOLLOW, AT_EMPTY_PATH on an O_PATH
//     descriptor). Operations that have no such form (chmod, truncate and
//     xattrs of a file known only by an O_PATH descriptor) go through
//     ProcPath, the /proc/self/fd magic link of that descriptor, after the
//     caller has checked with Fstat that it is not a symlink.
//
// Errors are the raw syscall.Errno values, unwrapped, so callers can map them
// to FUSE replies directly.
package backing

import (
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// ChunkMax is the longest relative path handed to one openat2 call. It is
// below PATH_MAX (4096, including the terminating NUL) with room to spare.
const ChunkMax = 4000

// NameMax is the longest name of one directory entry.
const NameMax = 255

// Resolve is the resolve mask of every openat2 call of this package.
const Resolve = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS

// Openat2 opens path (which must not be empty and at most ChunkMax bytes)
// below dirfd with the package's resolve rules. O_CLOEXEC is always added.
func Openat2(dirfd int, path string, flags int, mode uint32) (int, error) {
	how := unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC),
		Resolve: Resolve,
	}
	if flags&(unix.O_CREAT|unix.O_TMPFILE) != 0 {
		how.Mode = uint64(mode & 07777)
	}
	for {
		fd, err := unix.Openat2(dirfd, path, &how)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return -1, err
		}
		return fd, nil
	}
}

// Open resolves the components below dirfd and opens the result with flags.
// An empty list opens dirfd's own directory ("."). Components must be
// single names (ValidName); they are not checked here again.
func Open(dirfd int, comps []string, flags int, mode uint32) (int, error) {
	if len(comps) == 0 {
		return Openat2(dirfd, ".", flags, mode)
	}
	chunks := chunk(comps)
	cur := dirfd
	for i, c := range chunks {
		last := i == len(chunks)-1
		fl := unix.O_PATH | unix.O_DIRECTORY
		if last {
			fl = flags
		}
		fd, err := Openat2(cur, c, fl, mode)
		if cur != dirfd {
			unix.Close(cur)
		}
		if err != nil {
			return -1, err
		}
		cur = fd
	}
	return cur, nil
}

// OpenDir opens the directory named by comps below dirfd as an O_PATH
// descriptor.
func OpenDir(dirfd int, comps []string) (int, error) {
	return Open(dirfd, comps, unix.O_PATH|unix.O_DIRECTORY, 0)
}

// OpenPath opens the entry named by comps below dirfd as an O_PATH
// descriptor without following a final symlink: for a symlink the
// descriptor refers to the link itself.
func OpenPath(dirfd int, comps []string) (int, error) {
	return Open(dirfd, comps, unix.O_PATH|unix.O_NOFOLLOW, 0)
}

// chunk joins components into slash-separated chunks of at most ChunkMax
// bytes. A single component is never longer than NameMax, so every chunk
// holds at least one.
func chunk(comps []string) []string {
	var out []string
	var b strings.Builder
	for _, c := range comps {
		if b.Len() > 0 && b.Len()+1+len(c) > ChunkMax {
			out = append(out, b.String())
			b.Reset()
		}
		if b.Len() > 0 {
			b.WriteByte('/')
		}
		b.WriteString(c)
	}
	if b.Len() > 0 {
		out = append(out, b.String())
	}
	return out
}

// ValidName reports whether s can name one directory entry: 1..NameMax
// bytes, no '/', no NUL, not "." or "..".
func ValidName(s string) bool {
	if s == "" || len(s) > NameMax || s == "." || s == ".." {
		return false
	}
	return strings.IndexByte(s, '/') < 0 && strings.IndexByte(s, 0) < 0
}

// SplitRel splits a relative slash-separated path into components. Empty
// components and "." are dropped; an absolute path, a ".." component or a
// component that is not a ValidName makes ok false. An empty path (or one
// made only of "." and slashes) gives no components and ok true.
func SplitRel(p string) (comps []string, ok bool) {
	if strings.HasPrefix(p, "/") || strings.IndexByte(p, 0) >= 0 {
		return nil, false
	}
	for _, c := range strings.Split(p, "/") {
		switch c {
		case "", ".":
			continue
		case "..":
			return nil, false
		}
		if !ValidName(c) {
			return nil, false
		}
		comps = append(comps, c)
	}
	return comps, true
}

// ProcPath is the /proc/self/fd magic link of fd. Path-based system calls
// that follow it act on the file fd refers to; callers use it only for
// descriptors they have checked are not symlinks.
func ProcPath(fd int) string {
	return "/proc/self/fd/" + strconv.Itoa(fd)
}

// Stat is what vfolder needs from statx(2).
type Stat struct {
	Dev, Ino uint64
	Mode     uint32
	Nlink    uint32
	Size     int64
	Blocks   int64
	Blksize  uint32
	Rdev     uint64
	Atime    unix.Timespec
	Mtime    unix.Timespec
	Ctime    unix.Timespec
	Btime    unix.Timespec
	HasBtime bool
	Uid, Gid uint32
}

// Type is the file type bits of Mode.
func (s *Stat) Type() uint32 { return s.Mode & unix.S_IFMT }

const statxMask = unix.STATX_BASIC_STATS | unix.STATX_BTIME

// Lstat stats name in dirfd without following a final symlink. An empty
// name stats dirfd itself.
func Lstat(dirfd int, name string) (Stat, error) {
	flags := unix.AT_SYMLINK_NOFOLLOW
	if name == "" {
		flags |= unix.AT_EMPTY_PATH
	}
	return statx(dirfd, name, flags)
}

// Fstat stats the file fd refers to (any descriptor, O_PATH included).
func Fstat(fd int) (Stat, error) {
	return statx(fd, "", unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW)
}

func statx(dirfd int, name string, flags int) (Stat, error) {
	var x unix.Statx_t
	for {
		err := unix.Statx(dirfd, name, flags, statxMask, &x)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return Stat{}, err
		}
		break
	}
	st := Stat{
		Dev:     unix.Mkdev(x.Dev_major, x.Dev_minor),
		Ino:     x.Ino,
		Mode:    uint32(x.Mode),
		Nlink:   x.Nlink,
		Size:    int64(x.Size),
		Blocks:  int64(x.Blocks),
		Blksize: x.Blksize,
		Rdev:    unix.Mkdev(x.Rdev_major, x.Rdev_minor),
		Atime:   unix.Timespec{Sec: x.Atime.Sec, Nsec: int64(x.Atime.Nsec)},
		Mtime:   unix.Timespec{Sec: x.Mtime.Sec, Nsec: int64(x.Mtime.Nsec)},
		Ctime:   unix.Timespec{Sec: x.Ctime.Sec, Nsec: int64(x.Ctime.Nsec)},
		Uid:     x.Uid,
		Gid:     x.Gid,
	}
	if x.Mask&unix.STATX_BTIME != 0 {
		st.HasBtime = true
		st.Btime = unix.Timespec{Sec: x.Btime.Sec, Nsec: int64(x.Btime.Nsec)}
	}
	return st, nil
}

// Readlink reads the target of the symlink that the O_PATH descriptor fd
// refers to.
func Readlink(fd int) ([]byte, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(fd, "", buf)
		if err != nil {
			return nil, err
		}
		if n < size {
			return buf[:n], nil
		}
		if size > 1<<20 {
			return nil, syscall.ENAMETOOLONG
		}
	}
}

// Utimes sets the times of the file the O_PATH descriptor fd refers to
// (a symlink included) without following it. ts holds atime and mtime;
// unix.UTIME_OMIT and unix.UTIME_NOW work as in utimensat(2).
func Utimes(fd int, ts [2]unix.Timespec) error {
	return unix.UtimesNanoAt(fd, "", ts[:], unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW)
}

// Chown sets the owner of the file the O_PATH descriptor fd refers to,
// without following a symlink.
func Chown(fd int, uid, gid int) error {
	return unix.Fchownat(fd, "", uid, gid, unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW)
}
