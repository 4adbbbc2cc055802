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
