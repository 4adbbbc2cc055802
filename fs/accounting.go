package fs

import (
	"errors"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/internal/backing"
	"github.com/vfolder/vfolder/quota"
)

// quotaHook links a view to the quota ledger (package quota). Every
// operation that can grow a scope's usage calls it at exactly one place,
// marked "quota:" in the code, in the order package quota prescribes:
//
//	open for writing, create       node.newHandle     OpenForWrite; CloseForWrite
//	                                                  at Release
//	write past EOF, writev         file.write         Reserve(off, end) + Done;
//	                                                  cut short to the grant
//	copy_file_range past EOF       node.CopyFileRange Reserve + Done; cut short
//	truncate, setattr size,        node.resize        ReserveExact + Done (all or
//	O_TRUNC                                           nothing; shrinking passes)
//	fallocate changing the size    file.Allocate      ReserveExact + Done
//	create                         node.Create        ReserveCreate (the inode and
//	                                                  the parent's growth) +
//	                                                  Commit/Cancel(parent size)
//	mkdir, mknod, symlink          node.createEntry   ReserveCreate (a symlink also
//	                                                  its target, a directory its
//	                                                  own size)
//	O_TMPFILE                      node.Tmpfile       ReserveInode + Commit/Cancel
//	link                           node.Link          ReserveDir(parent, grow) +
//	                                                  Done(parent size); the inode
//	                                                  counts once
//	unlink, rmdir                  node.remove        ReserveDir(parent) around
//	                                                  PrepareRemoveSize (the
//	                                                  victim's fstat) + Done(last
//	                                                  link gone)
//	rename                         node.Rename        ReserveRename(from, to) +
//	                                                  Done(both sizes); over an
//	                                                  entry also PrepareRemoveSize
//	setxattr, removexattr (user.*) node.Setxattr,     ReserveXattr(growth: the new
//	                               node.Removexattr   attribute less the old) +
//	                                                  Done(UserXattrBytes)
//
// Directory sizes are read with fstat of the directory descriptor the
// operation has open, after it (charge.go). Writes that end within the
// file's size are not reported at all: they change no usage. A nil
// manager (Options.Quota unset) makes every call a no-op that grants
// everything and costs no system call; the zero values of
// quota.Reservation, quota.InodeReservation, quota.Create,
// quota.DirReservation, quota.XattrReservation and quota.Removal do
// nothing when ended.
type quotaHook struct {
	m       *quota.Manager
	scope   quota.ScopeKey
	folder  string
	rootDev uint64 // st_dev of the folder root, for quota.MakeKey
	prefix  string // the view's subpath inside the folder, "" or "a/b"
}

// on reports whether the view's usage is accounted.
func (q *quotaHook) on() bool { return q.m != nil }

// key is the ledger's identity of a backing object.
func (q *quotaHook) key(dev, ino uint64) quota.InodeKey {
	return quota.MakeKey(q.rootDev, dev, ino)
}

// hint joins the view's subpath, comps and name into a path relative to
// the folder root: the path hint crash recovery looks at first.
func (q *quotaHook) hint(comps []string, name string) string {
	if !q.on() {
		return ""
	}
	var b strings.Builder
	add := func(s string) {
		if s == "" {
			return
		}
		if b.Len() > 0 {
			b.WriteByte('/')
		}
		b.WriteString(s)
	}
	add(q.prefix)
	for _, c := range comps {
		add(c)
	}
	add(name)
	return b.String()
}

// errno maps an error of the ledger: EDQUOT when the scope has no room,
// ENOSPC when the daemon's state disk has none (the refusal is the
// operator's to lift, not the scope's: a full disk answers ENOSPC; the
// state disk guard logs it), EIO for anything else (a closed manager, a
// failed ledger write).
func (q *quotaHook) errno(v *view, op string, err error) syscall.Errno {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, quota.ErrExceeded):
		quotaRefused(q.scope)
		return syscall.EDQUOT
	case errors.Is(err, quota.ErrStoreFull):
		return syscall.ENOSPC
	case errors.Is(err, quota.ErrInvalid):
		v.fs.log.Warn().Err(err).Str("op", op).Str("folder", q.folder).Msg("quota call refused")
		return syscall.EINVAL
	}
	v.fs.log.Error().Err(err).Str("op", op).Str("folder", q.folder).Msg("quota ledger failed")
	return syscall.EIO
}

func (v *view) openWrite(k quota.InodeKey, size int64, hint string) syscall.Errno {
	q := &v.q
	if !q.on() {
		return 0
	}
	return q.errno(v, "open", q.m.OpenForWrite(q.scope, q.folder, k, size, hint))
}

func (v *view) closeWrite(k quota.InodeKey) {
	if q := &v.q; q.on() {
		q.m.CloseForWrite(q.scope, q.folder, k)
	}
}

// reserveWrite is the check-and-reserve step of a write of [off, end):
// granted is the end up to which the write may go.
func (v *view) reserveWrite(k quota.InodeKey, off, end int64) (int64, quota.Reservation, syscall.Errno) {
	q := &v.q
	if !q.on() {
		return end, quota.Reservation{}, 0
	}
	g, r, err := q.m.Reserve(q.scope, q.folder, k, off, end)
	if err != nil {
		return 0, quota.Reservation{}, q.errno(v, "write", err)
	}
	return g, r, 0
}

// reserveSize reserves a change of the file's size to exactly size.
func (v *view) reserveSize(k quota.InodeKey, size int64) (quota.Reservation, syscall.Errno) {
	q := &v.q
	if !q.on() {
		return quota.Reservation{}, 0
	}
	r, err := q.m.ReserveExact(q.scope, q.folder, k, size)
	return r, q.errno(v, "resize", err)
}

// reserveInode holds room for a new object (and a symlink's bytes).
func (v *view) reserveInode(kind quota.Kind, bytes int64, hint string) (quota.InodeReservation, syscall.Errno) {
	q := &v.q
	if !q.on() {
		return quota.InodeReservation{}, 0
	}
	r, err := q.m.ReserveInode(q.scope, q.folder, kind, bytes, hint)
	return r, q.errno(v, "create", err)
}

// prepareRemove precedes the removal of a link of k.
func (v *view) prepareRemove(k quota.InodeKey, hint string) (quota.Removal, syscall.Errno) {
	q := &v.q
	if !q.on() {
		return quota.Removal{}, 0
	}
	r, err := q.m.PrepareRemove(q.scope, q.folder, k, hint)
	return r, q.errno(v, "remove", err)
}

// prepareRemoveVictim precedes the removal of a link of vi, passing what
// fstat saw of it and a reader of its user xattrs: in cluster mode the
// ledger charges the removal against that size and those attributes
// (another node may have written the file), on one node it is
// PrepareRemove.
func (v *view) prepareRemoveVictim(vi *victim) (quota.Removal, syscall.Errno) {
	q := &v.q
	if !q.on() {
		return quota.Removal{}, 0
	}
	kind := statKind(vi.st.Type())
	var xattrs func() int64 // read only when a cluster node adopts the victim
	if q.m.Clustered() && (kind == quota.KindFile || kind == quota.KindDir) {
		// (only files and directories hold user.* attributes)
		xattrs = func() int64 {
			n, err := quota.UserXattrBytes(vi.fd)
			if err != nil {
				return 0 // a later check counts what could not be read
			}
			return n
		}
	}
	r, err := q.m.PrepareRemoveSize(q.scope, q.folder, vi.key, kind, vi.st.Size, xattrs, vi.hint)
	return r, q.errno(v, "remove", err)
}

// statKind is the ledger's kind of an st_mode file type.
func statKind(typ uint32) quota.Kind {
	switch typ {
	case unix.S_IFREG:
		return quota.KindFile
	case unix.S_IFDIR:
		return quota.KindDir
	case unix.S_IFLNK:
		return quota.KindSymlink
	}
	return quota.KindOther
}

// usage is the scope's usage and limits; ok is false without a manager.
func (v *view) usage() (quota.Usage, bool) {
	q := &v.q
	if !q.on() {
		return quota.Usage{}, false
	}
	return q.m.Usage(q.scope), true
}

// sizeLocks serialise size changes of backing inodes: a fixed set of
// read-write locks striped by (device, inode), shared by every view of
// every FS instance that shares them (Shared), so that two superblocks
// writing one backing file serialise their size changes and see one size. A
// size-changing operation holds its stripe exclusively from the moment it
// reads the size until the ledger has its report; a write inside the file
// holds it shared. An operation never holds two stripes.
//
// Each stripe also keeps the state of the backing files of its inodes that
// are open for writing (openInode), so the write path needs no fstat.
type sizeLocks [1024]stripe

type stripe struct {
	sync.RWMutex
	open map[devIno]*openInode // exclusive lock
}

// openInode is what the daemon knows of a backing regular file that has
// handles open for writing, in any view. Every size change made through
// the daemon happens under the stripe's exclusive lock and updates size;
// each open refreshes size and mode from fstat, so a change made on
// storage behind the daemon's back is picked up at the next open.
type openInode struct {
	size int64  // logical size: read under the stripe lock, written exclusively
	mode uint32 // st_mode, for clearing set-id bits on write; exclusively
	refs int    // handles; exclusively
}

func (s *sizeLocks) of(dev, ino uint64) *stripe {
	h := mix64(dev*0x9E3779B97F4A7C15 ^ ino)
	return &s[h%uint64(len(s))]
}

// acquire registers a handle open for writing of the file st describes;
// the stripe's exclusive lock is held.
func (s *stripe) acquire(st *backing.Stat) *openInode {
	k := devIno{st.Dev, st.Ino}
	oi := s.open[k]
	if oi == nil {
		if s.open == nil {
			s.open = map[devIno]*openInode{}
		}
		oi = &openInode{}
		s.open[k] = oi
	}
	oi.refs++
	oi.size, oi.mode = st.Size, st.Mode
	return oi
}

// release undoes acquire; the stripe's exclusive lock is held.
func (s *stripe) release(dev, ino uint64, oi *openInode) {
	oi.refs--
	if oi.refs <= 0 {
		delete(s.open, devIno{dev, ino})
	}
}

// setMode records a new st_mode of a file open for writing (after chmod).
func (s *sizeLocks) setMode(st *backing.Stat) {
	sp := s.of(st.Dev, st.Ino)
	sp.Lock()
	if oi := sp.open[devIno{st.Dev, st.Ino}]; oi != nil {
		oi.mode = st.Mode
	}
	sp.Unlock()
}
