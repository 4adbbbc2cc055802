package quota

import (
	"errors"
	"fmt"
	"math"
	"os"
	"syscall"
	"time"

	"github.com/vfolder/vfolder/meta"
)

// Sentinel errors. Callers test them with errors.Is.
var (
	// ErrExceeded: the byte or inode limit of the scope leaves no room for
	// the operation. The file system answers EDQUOT.
	ErrExceeded = errors.New("quota exceeded")
	// ErrStoreFull: the disk of the ledger's store is short of space
	// (SetStoreSpace): growth, or every ledger write, is refused until it
	// has room again. The file system answers ENOSPC.
	ErrStoreFull = errors.New("the state disk is full")
	// ErrClosed: the Manager has been closed.
	ErrClosed = errors.New("quota manager is closed")
	// ErrInvalid: a malformed argument (negative size, bad scope or folder id).
	ErrInvalid = errors.New("invalid argument")
	// ErrBusy: the folder still has files open for writing or operations
	// in flight.
	ErrBusy = errors.New("in use")
)

// StoreSpace is how short of space the disk of the ledger's store is
// (see Manager.SetStoreSpace).
type StoreSpace int32

const (
	// SpaceOK: every operation is served.
	SpaceOK StoreSpace = iota
	// SpaceShort: growth is refused (writes past a file's charged size,
	// size increases, creates); overwrites, shrinks and removals go on.
	SpaceShort
	// SpaceCritical: every operation that writes a ledger record is
	// refused too (opens for writing, any size change, creates and
	// removals); writes within the charged size of files already open go
	// on, and so do releases.
	SpaceCritical
)

// ScopeKey names a quota scope: one owner on one volume.
type ScopeKey struct {
	Volume string
	ID     meta.ScopeID
}

func (s ScopeKey) String() string { return s.Volume + "/" + s.ID.String() }

func (s ScopeKey) validate() error {
	if s.Volume == "" || len(s.Volume) > maxIDLen {
		return fmt.Errorf("%w: volume name %q must be 1..%d bytes", ErrInvalid, s.Volume, maxIDLen)
	}
	if !s.ID.Valid() {
		return fmt.Errorf("%w: quota scope id %q is not user:<uuid> or project:<uuid>", ErrInvalid, s.ID.String())
	}
	return nil
}

func validFolderID(id string) error {
	if id == "" || len(id) > maxIDLen {
		return fmt.Errorf("%w: folder id %q must be 1..%d bytes", ErrInvalid, id, maxIDLen)
	}
	return nil
}

// maxIDLen bounds volume names and folder ids (they are length-prefixed
// with one byte in the store's keys).
const maxIDLen = 255

// InodeKey is the identity of a backing object: its device and inode
// number. Use MakeKey to build it so that the device part survives a
// remount of the volume.
type InodeKey struct{ Dev, Ino uint64 }

// MakeKey builds the key of an object from its stat. rootDev is the st_dev
// of the folder's root directory. An object on the same device as its
// folder root (the normal case) gets Dev 0, so that keys stay valid when
// the volume is mounted again under a different device number (NFS does
// that after a reboot); an object on another device (a mount inside the
// folder) keeps its raw st_dev.
func MakeKey(rootDev, dev, ino uint64) InodeKey {
	if dev == rootDev {
		dev = 0
	}
	return InodeKey{Dev: dev, Ino: ino}
}

// Kind is the type of a backing object as the ledger counts it.
type Kind uint8

const (
	KindFile    Kind = 1 // regular file: charged its logical size
	KindDir     Kind = 2 // directory: charged its st_size
	KindSymlink Kind = 3 // symbolic link: charged the length of its target
	KindOther   Kind = 4 // device node, fifo, socket: one inode, no bytes
	// KindRoot is a folder's root directory: charged its st_size like a
	// directory, but not counted as an inode (the folder itself is not
	// one of its objects).
	KindRoot Kind = 5
)

func (k Kind) String() string {
	switch k {
	case KindFile:
		return "file"
	case KindDir:
		return "dir"
	case KindSymlink:
		return "symlink"
	case KindOther:
		return "other"
	case KindRoot:
		return "root"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

func (k Kind) valid() bool { return k >= KindFile && k <= KindRoot }

// inodes is how many inodes an object of this kind counts: one, except a
// folder root.
func (k Kind) inodes() int64 {
	if k == KindRoot {
		return 0
	}
	return 1
}

// KindOf maps a st_mode to a Kind.
func KindOf(mode uint32) Kind {
	switch mode & syscall.S_IFMT {
	case syscall.S_IFREG:
		return KindFile
	case syscall.S_IFDIR:
		return KindDir
	case syscall.S_IFLNK:
		return KindSymlink
	}
	return KindOther
}

// chargeOf is what an object of this kind and st_size is charged for its
// data (user.* extended attributes come on top, see inode.xattr).
func chargeOf(k Kind, size int64) int64 {
	switch k {
	case KindFile, KindDir, KindSymlink, KindRoot:
		return max(size, 0)
	}
	return 0
}

// Usage is a scope's (or a folder's) usage and its scope's limits.
// A limit of 0 means unlimited.
type Usage struct {
	Used        int64 // bytes charged, including grants of operations in flight
	Limit       int64
	UsedInodes  int64
	LimitInodes int64
}

// Free is how many more bytes may be charged: math.MaxInt64 when there is
// no limit, 0 when usage is at or above the limit.
func (u Usage) Free() int64 {
	if u.Limit <= 0 {
		return math.MaxInt64
	}
	if u.Used >= u.Limit {
		return 0
	}
	return u.Limit - u.Used
}

// FreeInodes is like Free for the inode limit.
func (u Usage) FreeInodes() int64 {
	if u.LimitInodes <= 0 {
		return math.MaxInt64
	}
	if u.UsedInodes >= u.LimitInodes {
		return 0
	}
	return u.LimitInodes - u.UsedInodes
}

// Options configure a Manager. The zero value works.
type Options struct {
	// OpenFolder opens the root directory of a folder on storage. Crash
	// recovery uses it to look at the inodes that were open for writing
	// when the previous process died. The error must wrap fs.ErrNotExist
	// only when the folder is really gone; any error keeps the inodes for
	// a later Check. Nil means recovery leaves every such inode to Check.
	OpenFolder func(s ScopeKey, folderID string) (*os.File, error)
	// FlushInterval is how long changes may gather before they are
	// written (default 2ms). Operations that wait for durability do not
	// wait for it.
	FlushInterval time.Duration
	// MaxBatch is the number of inode records written per transaction
	// (default 1000).
	MaxBatch int
	// MarkFile is the file of the mark table (see marks.go); default
	// "quota.marks" in the database directory, none (in memory) for an
	// in-memory database.
	MarkFile string
	// Grants, when set, puts the ledger in cluster mode: room in a scope
	// is the node's grant from a cluster-wide quota (package quota/grants)
	// and the node charges changes against the sizes it observes (see
	// "Beyond one node" and cluster.go). Nil: one node.
	Grants Grants
	// DirGrowth is the room reserved for the growth of a directory by one
	// entry and for a new directory's initial size (default DirGrowth).
	DirGrowth int64
}

func (o *Options) fill() {
	if o.FlushInterval <= 0 {
		o.FlushInterval = 2 * time.Millisecond
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 1000
	}
	if o.DirGrowth <= 0 {
		o.DirGrowth = DirGrowth
	}
}
