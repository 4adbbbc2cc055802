package fs

import (
	"context"
	"sync"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/internal/backing"
)

// dirStream reads a backing directory with getdents64. Entry offsets are
// the backing file system's own d_off cookies, so a seekdir to any offset
// handed out earlier resumes exactly there, as stable as the backing file
// system makes them. READDIRPLUS looks entries up through the open
// directory descriptor (Lookup below) instead of resolving the path again.
type dirStream struct {
	n   *node
	dev uint64 // device of the directory: entries are on it

	mu   sync.Mutex
	fd   int
	buf  []byte
	todo []byte
	err  syscall.Errno
}

func (d *dirStream) load() {
	if len(d.todo) > 0 || d.err != 0 {
		return
	}
	if d.buf == nil {
		d.buf = make([]byte, 32<<10)
	}
	n, err := unix.Getdents(d.fd, d.buf)
	if n < 0 {
		n = 0
	}
	d.todo = d.buf[:n]
	d.err = toErrno(err)
}

// Readdirent returns the next entry, nil at the end.
func (d *dirStream) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fd < 0 {
		return nil, syscall.EBADF
	}
	d.load()
	if d.err != 0 {
		err := d.err
		d.err = 0
		return nil, err
	}
	if len(d.todo) == 0 {
		return nil, 0
	}
	var de fuse.DirEntry
	k := de.Parse(d.todo)
	d.todo = d.todo[k:]
	switch de.Name {
	case ".":
		de.Ino = d.n.StableAttr().Ino
	default:
		de.Ino = d.n.v.peekIno(d.dev, de.Ino)
	}
	return &de, 0
}

// stat stats the open directory (which works after it was removed).
func (d *dirStream) stat() (backing.Stat, syscall.Errno) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fd < 0 {
		return backing.Stat{}, syscall.EBADF
	}
	st, err := backing.Fstat(d.fd)
	return st, toErrno(err)
}

// Seekdir moves to an offset handed out by Readdirent (0 = start).
func (d *dirStream) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := unix.Seek(d.fd, int64(off), unix.SEEK_SET); err != nil {
		return toErrno(err)
	}
	d.todo = nil
	d.err = 0
	return 0
}

// Lookup serves READDIRPLUS for a name just read.
func (d *dirStream) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	d.mu.Lock()
	fd := d.fd
	d.mu.Unlock()
	if fd < 0 || d.n.v.removed.Load() {
		return nil, syscall.ENOENT
	}
	st, err := backing.Lstat(fd, name)
	if err != nil {
		return nil, toErrno(err)
	}
	// The directory's mode now sets the entry's timeout.
	dst, err := backing.Fstat(fd)
	if err != nil {
		return nil, toErrno(err)
	}
	ch, _ := d.n.child(ctx, dst.Mode, &st, out)
	return ch, 0
}

func (d *dirStream) Fsyncdir(ctx context.Context, flags uint32) syscall.Errno {
	d.mu.Lock()
	defer d.mu.Unlock()
	return toErrno(unix.Fsync(d.fd))
}

func (d *dirStream) Releasedir(ctx context.Context, releaseFlags uint32) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fd >= 0 {
		unix.Close(d.fd)
		d.fd = -1
	}
}
