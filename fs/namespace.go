package fs

import (
	"context"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// dirNode is a synthetic directory: the mount root, a top directory
// (sessions, users, projects), a key directory, or the root of a session
// superblock (which holds that session's views). Its children are kept in
// the go-fuse tree (persistent inodes), so go-fuse's default Lookup and
// Readdir serve it. Every change from the file system side is refused.
type dirNode struct {
	gofs.Inode
	fs *FS
}

// synthMode is the mode of every synthetic directory: root only.
const synthMode = syscall.S_IFDIR | 0o700

// topInos numbers the top directories.
var topInos = map[string]uint64{NSSessions: 2, NSUsers: 3, NSProjects: 4}

func dirStable(ino uint64) gofs.StableAttr {
	return gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: ino}
}

// OnAdd builds the three top directories below the node-wide root.
func (d *dirNode) OnAdd(ctx context.Context) {
	if !d.IsRoot() || d.fs.session != "" {
		return
	}
	for _, ns := range namespaces {
		top := &dirNode{fs: d.fs}
		ch := d.NewPersistentInode(ctx, top, dirStable(topInos[ns]))
		d.AddChild(ns, ch, false)
		d.fs.tops[ns] = top
	}
}

// Lookup finds a child: a top directory, a key directory or a view root.
// Unless the kernel checks permissions, the caller needs search permission
// on the synthetic directory (root only), and the entry is not cached
// (every walk comes back here), except for the top directories and the
// key directories of sessions: a session superblock is mounted on each of
// those, and the kernel detaches what is mounted on an entry whose
// revalidation fails, so these are never refused, and kept for long.
func (d *dirNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	f := d.fs
	mounts := f.session == "" && (d == f.root || d == f.tops[NSSessions])
	if !mounts && !f.opts.Tuning.KernelPermissions && !permits(callerOf(ctx), synthMode, 0, 0, mayExec) {
		return nil, syscall.EACCES
	}
	ch := d.GetChild(name)
	if ch == nil {
		return nil, syscall.ENOENT
	}
	if ga, ok := ch.Operations().(gofs.NodeGetattrer); ok {
		var a fuse.AttrOut
		if errno := ga.Getattr(ctx, nil, &a); errno != 0 {
			return nil, errno
		}
		out.Attr = a.Attr
	}
	if mounts {
		out.SetEntryTimeout(timeout(f.opts.Tuning.EntryTimeout, entryTimeout))
	} else {
		out.SetEntryTimeout(f.entryTimeout(synthMode))
	}
	return ch, 0
}

// Access answers access(2) and chdir(2): root only.
func (d *dirNode) Access(ctx context.Context, mask uint32) syscall.Errno {
	c := callerOf(ctx)
	c.access = true
	if !permits(c, synthMode, 0, 0, mask) {
		return syscall.EACCES
	}
	return 0
}

// Opendir lets root (or a caller with CAP_DAC_READ_SEARCH) list it.
func (d *dirNode) Opendir(ctx context.Context) syscall.Errno {
	if !d.fs.opts.Tuning.KernelPermissions && !permits(callerOf(ctx), synthMode, 0, 0, mayRead) {
		return syscall.EACCES
	}
	return 0
}

func (d *dirNode) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	d.fill(&out.Attr)
	return 0
}

func (d *dirNode) fill(a *fuse.Attr) {
	a.Mode = synthMode
	a.Nlink = 2
	a.Uid, a.Gid = 0, 0
	a.Size = 4096
	a.Blksize = 4096
	t := d.fs.started
	a.Atime, a.Mtime, a.Ctime = uint64(t.Unix()), uint64(t.Unix()), uint64(t.Unix())
	a.Atimensec, a.Mtimensec, a.Ctimensec = uint32(t.Nanosecond()), uint32(t.Nanosecond()), uint32(t.Nanosecond())
}

func (d *dirNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	*out = fuse.StatfsOut{Bsize: 4096, Frsize: 4096, NameLen: 255}
	return 0
}

func (d *dirNode) Setattr(ctx context.Context, f gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return syscall.EPERM
}

func (d *dirNode) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EPERM
}

func (d *dirNode) Mknod(ctx context.Context, name string, mode, dev uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EPERM
}

func (d *dirNode) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.EPERM
}

func (d *dirNode) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EPERM
}

func (d *dirNode) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EPERM
}

func (d *dirNode) Unlink(ctx context.Context, name string) syscall.Errno { return syscall.EPERM }

func (d *dirNode) Rmdir(ctx context.Context, name string) syscall.Errno { return syscall.EPERM }

func (d *dirNode) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	return syscall.EPERM
}

func (d *dirNode) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	return syscall.EPERM
}

func (d *dirNode) Removexattr(ctx context.Context, attr string) syscall.Errno {
	return syscall.EPERM
}

func (d *dirNode) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	return 0, syscall.ENODATA
}
