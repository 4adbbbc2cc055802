// Package clone copies one folder tree into another on the volumes, for
// the clone of a folder (vfolder clone). It knows nothing of the store or
// the quota ledger: Measure tells the caller what a copy will need, Tree
// makes it, and Counters let another goroutine watch the progress.
//
// # What is copied
//
// Regular files (their data, mode, times and user.* extended
// attributes), directories (mode, times, user.* attributes), symlinks
// (their target, as a link: never followed; dangling and absolute
// targets are copied as they are), fifos and sockets. A file with
// several hard links in the source is copied once and linked again at
// its other names, so the copy has the same links. Device nodes are
// skipped (counted in Stats.Skipped): a folder has no use for them and
// the copy must not make any. Set-user-ID and set-group-ID bits are
// never copied (no view can store them); the sticky bit is. Everything
// made is owned by Options.UID/GID (the storage owner).
//
// Data is reflinked (ioctl FICLONE) where the file system supports it,
// else copied with copy_file_range, else read and written in 1 MiB
// chunks; Options.NoReflink skips the first step.
//
// # Access rules
//
// Both trees are reached only through directory descriptors: every
// entry is opened with openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS) and
// O_NOFOLLOW below its parent's descriptor, and checked against the
// fstatat that listed it (same device and inode, same type), so a name
// swapped for a symlink or another object between the listing and the
// open fails the copy (ELOOP or ErrChanged) instead of leading it out of
// the folder. A directory on another device than the root (a mount
// inside the folder) is refused. A hard link is made from an O_PATH
// descriptor of the first copy (linkat AT_EMPTY_PATH), itself resolved
// beneath the target root. No host path is ever joined.
//
// # Errors and concurrency
//
// Tree stops at the first error and returns it wrapped with the entry's
// path in the folder; what it made so far stays for the caller to remove
// (the service removes the whole target folder). An entry that vanishes
// between its listing and its copy is skipped (a live source may be
// written meanwhile). Cancelling ctx stops the copy between entries and
// between data chunks. Counters are updated with atomics and may be read
// at any time; a Tree call itself is sequential.
package clone

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/internal/backing"
	"github.com/vfolder/vfolder/quota"
)

// ErrChanged: an entry changed between its listing and its open (another
// object now has its name).
var ErrChanged = errors.New("entry changed while being copied")

// ErrCrossDevice: a directory of the tree is on another file system.
var ErrCrossDevice = errors.New("directory on another file system inside the folder")

// Totals is what a tree holds, as the quota ledger charges it (see
// package quota, "What is counted"), without its root.
type Totals struct {
	// Bytes: file sizes (each inode once), symlink target lengths,
	// directory sizes and user.* attribute bytes.
	Bytes int64
	// Objects: files, directories, symlinks and other nodes, each inode
	// once (the inodes the copy will use).
	Objects int64
	// DataBytes: the sizes of the regular files, each inode once (what
	// the copy will move).
	DataBytes int64
	// Skipped: device nodes, which are not copied.
	Skipped int64
}

// Counters is the progress of a running Tree, safe to read concurrently.
type Counters struct {
	BytesDone   atomic.Int64 // file data copied (or reflinked)
	ObjectsDone atomic.Int64 // objects made (each inode once)
}

// Options tune Tree.
type Options struct {
	// UID, GID own every object the copy makes.
	UID, GID int
	// NoReflink skips FICLONE and copies the data.
	NoReflink bool
	// Counters, when set, is advanced as the copy goes.
	Counters *Counters
}

// Stats sums up a finished copy.
type Stats struct {
	Objects   int64 // objects made
	Links     int64 // extra hard links made
	Bytes     int64 // file data copied
	Reflinked int64 // files whose data was reflinked
	Streamed  int64 // files whose data was copied
	Skipped   int64 // device nodes left out
}

// dirFlags opens a directory for reading its entries and for *at calls.
const dirFlags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW

// rootOf duplicates the descriptor of f (a directory) and stats it.
func rootOf(f *os.File) (int, backing.Stat, error) {
	fd, err := backing.Openat2(int(f.Fd()), ".", dirFlags, 0)
	if err != nil {
		return -1, backing.Stat{}, err
	}
	st, err := backing.Fstat(fd)
	if err != nil {
		unix.Close(fd)
		return -1, backing.Stat{}, err
	}
	return fd, st, nil
}

func join(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "/" + name
}

// readNames lists a directory (sorted, so that copies are reproducible).
func readNames(fd int) ([]string, error) {
	d, err := backing.Openat2(fd, ".", dirFlags, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(d), "dir")
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	return names, nil
}

// gone reports an entry that vanished since it was listed.
func gone(err error) bool {
	return errors.Is(err, unix.ENOENT)
}

type inoKey struct{ dev, ino uint64 }

// openChild opens name below dirfd with flags and checks that it is the
// object st described.
func openChild(dirfd int, name string, flags int, st *backing.Stat) (int, error) {
	fd, err := backing.Openat2(dirfd, name, flags|unix.O_NOFOLLOW, 0)
	if err != nil {
		return -1, err
	}
	now, err := backing.Fstat(fd)
	if err != nil {
		unix.Close(fd)
		return -1, err
	}
	if now.Dev != st.Dev || now.Ino != st.Ino || now.Type() != st.Type() {
		unix.Close(fd)
		return -1, ErrChanged
	}
	return fd, nil
}

// Measure walks the tree below src (not following symlinks, not leaving
// its file system) and returns what a copy of it needs.
func Measure(ctx context.Context, src *os.File) (Totals, error) {
	fd, root, err := rootOf(src)
	if err != nil {
		return Totals{}, err
	}
	defer unix.Close(fd)
	var t Totals
	seen := map[inoKey]bool{}
	err = measureDir(ctx, fd, "", root.Dev, seen, &t)
	return t, err
}

func measureDir(ctx context.Context, dirfd int, rel string, dev uint64, seen map[inoKey]bool, t *Totals) error {
	names, err := readNames(dirfd)
	if err != nil {
		return fmt.Errorf("%s: %w", relName(rel), err)
	}
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		p := join(rel, name)
		st, err := backing.Lstat(dirfd, name)
		if gone(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		switch st.Type() {
		case unix.S_IFDIR:
			if st.Dev != dev {
				return fmt.Errorf("%s: %w", p, ErrCrossDevice)
			}
			cfd, err := openChild(dirfd, name, dirFlags, &st)
			if gone(err) {
				continue
			}
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			x, err := quota.UserXattrBytes(cfd)
			if err == nil {
				t.Bytes += st.Size + x
				t.Objects++
				err = measureDir(ctx, cfd, p, dev, seen, t)
			}
			unix.Close(cfd)
			if err != nil {
				return err
			}
		case unix.S_IFREG:
			if st.Nlink > 1 {
				k := inoKey{st.Dev, st.Ino}
				if seen[k] {
					continue
				}
				seen[k] = true
			}
			cfd, err := openChild(dirfd, name, unix.O_PATH, &st)
			if gone(err) {
				continue
			}
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			x, err := quota.UserXattrBytes(cfd)
			unix.Close(cfd)
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			t.Bytes += st.Size + x
			t.DataBytes += st.Size
			t.Objects++
		case unix.S_IFLNK:
			t.Bytes += st.Size
			t.Objects++
		case unix.S_IFIFO, unix.S_IFSOCK:
			t.Objects++
		default:
			t.Skipped++
		}
	}
	return nil
}

func relName(rel string) string {
	if rel == "" {
		return "the folder root"
	}
	return rel
}

// copier is one Tree call.
type copier struct {
	ctx     context.Context
	o       Options
	dstRoot int
	dev     uint64
	links   map[inoKey]string // source inode -> its first copy's path
	st      Stats
	buf     []byte
}

// Tree copies the tree below src into dst, an existing empty directory
// (the new folder's root): the entries, then the root's mode, times and
// user.* attributes. See the package comment.
func Tree(ctx context.Context, src, dst *os.File, o Options) (Stats, error) {
	sfd, sst, err := rootOf(src)
	if err != nil {
		return Stats{}, err
	}
	defer unix.Close(sfd)
	dfd, _, err := rootOf(dst)
	if err != nil {
		return Stats{}, err
	}
	defer unix.Close(dfd)
	c := &copier{ctx: ctx, o: o, dstRoot: dfd, dev: sst.Dev, links: map[inoKey]string{}}
	if err := c.dir(sfd, dfd, ""); err != nil {
		return c.st, err
	}
	if err := c.finishDir(sfd, dfd, &sst, ""); err != nil {
		return c.st, err
	}
	return c.st, nil
}

func (c *copier) made() {
	c.st.Objects++
	if c.o.Counters != nil {
		c.o.Counters.ObjectsDone.Add(1)
	}
}

func (c *copier) moved(n int64) {
	c.st.Bytes += n
	if c.o.Counters != nil {
		c.o.Counters.BytesDone.Add(n)
	}
}

// dir copies the entries of the source directory sfd into dfd.
func (c *copier) dir(sfd, dfd int, rel string) error {
	names, err := readNames(sfd)
	if err != nil {
		return fmt.Errorf("%s: %w", relName(rel), err)
	}
	for _, name := range names {
		if err := c.ctx.Err(); err != nil {
			return err
		}
		p := join(rel, name)
		st, err := backing.Lstat(sfd, name)
		if gone(err) {
			continue
		}
		if err == nil {
			err = c.entry(sfd, dfd, name, p, &st)
		}
		if gone(err) {
			continue // vanished between listing and copy
		}
		if err != nil {
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				return err
			}
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	return nil
}

// entry copies one entry; p is its path in the folder.
func (c *copier) entry(sfd, dfd int, name, p string, st *backing.Stat) error {
	switch st.Type() {
	case unix.S_IFDIR:
		if st.Dev != c.dev {
			return ErrCrossDevice
		}
		cs, err := openChild(sfd, name, dirFlags, st)
		if err != nil {
			return err
		}
		defer unix.Close(cs)
		if err := unix.Mkdirat(dfd, name, 0o700); err != nil {
			return err
		}
		cd, err := backing.Openat2(dfd, name, dirFlags, 0)
		if err != nil {
			return err
		}
		defer unix.Close(cd)
		if err := unix.Fchown(cd, c.o.UID, c.o.GID); err != nil {
			return err
		}
		c.made()
		if err := c.dir(cs, cd, p); err != nil {
			return err
		}
		return c.finishDir(cs, cd, st, p)
	case unix.S_IFREG:
		return c.file(sfd, dfd, name, p, st)
	case unix.S_IFLNK:
		cs, err := openChild(sfd, name, unix.O_PATH, st)
		if err != nil {
			return err
		}
		target, err := backing.Readlink(cs)
		unix.Close(cs)
		if err != nil {
			return err
		}
		if err := unix.Symlinkat(string(target), dfd, name); err != nil {
			return err
		}
		if err := unix.Fchownat(dfd, name, c.o.UID, c.o.GID, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
		c.made()
		return unix.UtimesNanoAt(dfd, name, []unix.Timespec{st.Atime, st.Mtime}, unix.AT_SYMLINK_NOFOLLOW)
	case unix.S_IFIFO, unix.S_IFSOCK:
		if err := unix.Mknodat(dfd, name, st.Type()|0o600, 0); err != nil {
			return err
		}
		fd, err := backing.Openat2(dfd, name, unix.O_PATH|unix.O_NOFOLLOW, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := backing.Chown(fd, c.o.UID, c.o.GID); err != nil {
			return err
		}
		if err := unix.Chmod(backing.ProcPath(fd), st.Mode&0o1777); err != nil {
			return err
		}
		c.made()
		return backing.Utimes(fd, [2]unix.Timespec{st.Atime, st.Mtime})
	default:
		c.st.Skipped++ // device nodes
		return nil
	}
}

// finishDir gives the copy of a directory its attributes once its
// entries are made (the times last: making entries changes them).
func (c *copier) finishDir(sfd, dfd int, st *backing.Stat, p string) error {
	if err := copyXattrs(sfd, dfd); err != nil {
		return fmt.Errorf("%s: user xattrs: %w", relName(p), err)
	}
	if err := unix.Fchmod(dfd, st.Mode&0o1777); err != nil {
		return fmt.Errorf("%s: %w", relName(p), err)
	}
	if err := unix.UtimesNanoAt(dfd, "", []unix.Timespec{st.Atime, st.Mtime}, unix.AT_EMPTY_PATH); err != nil {
		return fmt.Errorf("%s: %w", relName(p), err)
	}
	return nil
}

// file copies one regular file, or links it to the copy of an inode
// already copied.
func (c *copier) file(sfd, dfd int, name, p string, st *backing.Stat) error {
	k := inoKey{st.Dev, st.Ino}
	if st.Nlink > 1 {
		if first, ok := c.links[k]; ok {
			comps, _ := backing.SplitRel(first)
			fd, err := backing.OpenPath(c.dstRoot, comps)
			if err != nil {
				return fmt.Errorf("the copy of its hard link %s: %w", first, err)
			}
			defer unix.Close(fd)
			if err := unix.Linkat(fd, "", dfd, name, unix.AT_EMPTY_PATH); err != nil {
				if !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EPERM) {
					return err
				}
				// No CAP_DAC_READ_SEARCH: link through the magic link.
				if err := unix.Linkat(unix.AT_FDCWD, backing.ProcPath(fd), dfd, name, unix.AT_SYMLINK_FOLLOW); err != nil {
					return err
				}
			}
			c.st.Links++
			return nil
		}
	}
	cs, err := openChild(sfd, name, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY, st)
	if err != nil {
		return err
	}
	defer unix.Close(cs)
	cd, err := backing.Openat2(dfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	defer unix.Close(cd)
	if err := unix.Fchown(cd, c.o.UID, c.o.GID); err != nil {
		return err
	}
	c.made()
	if err := c.data(cs, cd); err != nil {
		return err
	}
	if err := copyXattrs(cs, cd); err != nil {
		return fmt.Errorf("user xattrs: %w", err)
	}
	if err := unix.Fchmod(cd, st.Mode&0o1777); err != nil {
		return err
	}
	if err := unix.UtimesNanoAt(cd, "", []unix.Timespec{st.Atime, st.Mtime}, unix.AT_EMPTY_PATH); err != nil {
		return err
	}
	if st.Nlink > 1 {
		c.links[k] = p // the copy has the source's layout
	}
	return nil
}

// fallback reports errors after which the next way of copying data is
// tried.
func fallback(err error) bool {
	return errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EXDEV) ||
		errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.ENOTTY) ||
		errors.Is(err, unix.EBADF) || errors.Is(err, unix.EPERM)
}

// chunk is how much data one copy step moves.
const chunk = 8 << 20

// data copies a file's data: reflink, else copy_file_range, else read
// and write.
func (c *copier) data(sfd, dfd int) error {
	if !c.o.NoReflink {
		err := unix.IoctlFileClone(dfd, sfd)
		if err == nil {
			st, err := backing.Fstat(dfd)
			if err != nil {
				return err
			}
			c.st.Reflinked++
			c.moved(st.Size)
			return nil
		}
		if !fallback(err) {
			return fmt.Errorf("reflink: %w", err)
		}
	}
	c.st.Streamed++
	first := true
	for {
		if err := c.ctx.Err(); err != nil {
			return err
		}
		n, err := unix.CopyFileRange(sfd, nil, dfd, nil, chunk, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			if first && fallback(err) {
				return c.stream(sfd, dfd)
			}
			return fmt.Errorf("copy_file_range: %w", err)
		}
		first = false
		if n == 0 {
			return nil
		}
		c.moved(int64(n))
	}
}

// stream copies the rest of a file by read and write.
func (c *copier) stream(sfd, dfd int) error {
	if c.buf == nil {
		c.buf = make([]byte, 1<<20)
	}
	for {
		if err := c.ctx.Err(); err != nil {
			return err
		}
		n, err := unix.Read(sfd, c.buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		if n == 0 {
			return nil
		}
		for w := 0; w < n; {
			m, err := unix.Write(dfd, c.buf[w:n])
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				return fmt.Errorf("write: %w", err)
			}
			w += m
		}
		c.moved(int64(n))
	}
}

// copyXattrs copies the user.* extended attributes of the object open as
// sfd to the one open as dfd (both regular files or directories opened
// for I/O).
func copyXattrs(sfd, dfd int) error {
	names, err := listXattrs(sfd)
	if err != nil || len(names) == 0 {
		return err
	}
	for _, n := range names {
		if !strings.HasPrefix(n, "user.") {
			continue
		}
		sz, err := unix.Fgetxattr(sfd, n, nil)
		if errors.Is(err, unix.ENODATA) {
			continue
		}
		if err != nil {
			return err
		}
		v := make([]byte, sz)
		sz, err = unix.Fgetxattr(sfd, n, v)
		if errors.Is(err, unix.ENODATA) {
			continue
		}
		if err != nil {
			return err
		}
		if err := unix.Fsetxattr(dfd, n, v[:sz], 0); err != nil {
			return err
		}
	}
	return nil
}

func listXattrs(fd int) ([]string, error) {
	buf := make([]byte, 1024)
	for {
		n, err := unix.Flistxattr(fd, buf)
		switch {
		case err == nil:
			var out []string
			for _, s := range strings.Split(string(buf[:n]), "\x00") {
				if s != "" {
					out = append(out, s)
				}
			}
			return out, nil
		case errors.Is(err, unix.ERANGE):
			need, err := unix.Flistxattr(fd, nil)
			if err != nil {
				return nil, err
			}
			buf = make([]byte, need+256)
		case errors.Is(err, unix.EINTR):
		case errors.Is(err, unix.ENOTSUP), errors.Is(err, unix.EOPNOTSUPP):
			return nil, nil
		default:
			return nil, err
		}
	}
}
