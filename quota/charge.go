package quota

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Directories and user.* extended attributes hold bytes on the volume as
// file data does, so they are charged (see "What is counted" in the
// package comment). This file holds the calls that charge them:
//
//   - ReserveCreate: a new object and the growth of the directory it is
//     made in, together;
//   - ReserveDir, ReserveRename: the directories a link, unlink, rmdir or
//     rename changes;
//   - ReserveXattr: a change of an object's user.* attributes.
//
// Each holds the inodes it changes exclusively (inode.excl) from the
// reservation to Done, so that at most one such operation per inode is in
// flight through the daemon and Done can settle the charge to the exact
// figure the operation reports (the directory's st_size, the sum of the
// attributes) rather than to the highest of several overlapping reports.
// The kernel already serialises these operations per directory and per
// inode (the parent's i_rwsem, the inode's for setxattr), so the hold
// rarely waits: only when two views, or two FUSE superblocks, change the
// same backing directory at once.
//
// While held, an inode carries a dirty mark (markWanted), stored in the
// mark table before the operation acts, so that a crash at any point is
// followed by a look at the object (recover.go): a directory's size and
// xattrs are read again and its entries without a record are recorded,
// which makes the bytes and inodes of creates in flight exact too.
//
// Cost. The reservation is made on every operation, also while the scope
// is far from its limit: skipping it there would need a second way to
// keep concurrent growth under the limit, and it is cheap: a lock and a
// map lookup (a read of the directory's record when it was evicted),
// the mark-table slot once per directory per commit round (the slot
// stays until the round that settles it), and an fstat of the directory
// after the operation. A directory whose size did not change writes no
// record.

// DirGrowth is the room an entry added to a directory is reserved, and
// also the room reserved for a new directory's initial size: three 4 KiB
// blocks. One new entry grows a directory by at most that on the file
// systems the daemon is meant for: ext4 by up to three blocks (a leaf
// split plus index blocks of a three-level htree), xfs by one directory
// block (4 KiB by default; st_size counts the data blocks only), tmpfs by
// 20 bytes, btrfs by twice the name's length. The charge settles to the
// real st_size after the operation, whatever it is; a file system whose
// directories grow by larger steps (64 KiB blocks) can cross the limit by
// the difference, once per operation in flight; Options.DirGrowth sets
// another bound.
const DirGrowth = 3 * 4096

// DirRef names a directory a namespace operation changes.
type DirRef struct {
	Key InodeKey
	// Root: the directory is the folder's root (charged, not counted as
	// an inode; see KindRoot).
	Root bool
	// Hint is its path relative to the folder root ("" for the root); see
	// OpenForWrite.
	Hint string
	// Size, when not nil, reads the directory's st_size now (-1 when it
	// cannot). It is called only in cluster mode, with the scope locked,
	// before an operation when none of this node is in flight on the
	// directory: another node may have made or grown it, and the ledger
	// adopts what it sees (the cluster figure does not move) so that the
	// operation charges only its own growth.
	Size func() int64
}

func (d DirRef) kind() Kind {
	if d.Root {
		return KindRoot
	}
	return KindDir
}

// DirReservation holds one or two directories changed by an operation.
// End it with Done. The zero DirReservation is valid and Done on it does
// nothing.
type DirReservation struct {
	sc  *scope
	ins [2]*inode
}

// Create is a new object and the growth of its directory, reserved by
// ReserveCreate. End it with Commit or Cancel. The zero Create does
// nothing.
type Create struct {
	ir InodeReservation
	dr DirReservation
}

// ReserveCreate is called before create, mkdir, mknod and symlink: it
// checks the inode limit and reserves, all or nothing, the bytes of the
// new object (for a symlink bytes = len(target); for a directory its
// initial size, DirGrowth; else none) and the growth of the directory it
// is made in (DirGrowth). It fails with an error wrapping ErrExceeded when
// the scope lacks room for either.
//
// The directory carries a durable dirty mark until Commit or Cancel: after
// a crash, recovery records every entry of a marked directory that the
// ledger does not know, so the new object's bytes and inode are exact
// across a crash without a create intent.
func (m *Manager) ReserveCreate(s ScopeKey, folderID string, kind Kind, bytes int64, dir DirRef) (Create, error) {
	if !kind.valid() || kind == KindRoot || bytes < 0 {
		return Create{}, fmt.Errorf("%w: bad kind or size", ErrInvalid)
	}
	switch kind {
	case KindSymlink:
	case KindDir:
		bytes = m.opts.DirGrowth
	default:
		bytes = 0
	}
	var c Create
	dirs := [2]dirWant{{ref: dir, grow: true}}
	err := m.reserveDirs(s, folderID, dirs[:1], bytes, 1, func(sc *scope, f *folder) (func(), error) {
		if sc.cl == nil && sc.limitInodes > 0 && sc.count >= sc.limitInodes {
			return nil, errNoInodes // (cluster: reserveDirs checked the node's grants)
		}
		sc.count++
		f.count++
		f.creating++
		sc.used += bytes
		f.used += bytes
		if sc.cl != nil {
			sc.clGrow(bytes, 1) // cluster: Commit transfers it to the record (cluster.go)
		}
		c.ir = InodeReservation{sc: sc, f: f, kind: kind, bytes: bytes}
		return c.ir.cancelLocked, nil
	}, &c.dr)
	if err != nil {
		return Create{}, err
	}
	return c, nil
}

// Commit records the new object (as InodeReservation.Commit: ino and its
// st_size) and then settles the directory to dirSize, its st_size after
// the operation (-1 when unknown: it stays charged at the grant until its
// next operation or a Check). The new object's record is queued before
// the directory's mark can go, which keeps the crash argument above.
func (c *Create) Commit(ino InodeKey, size, dirSize int64) {
	c.ir.Commit(ino, size)
	c.dr.Done(dirSize)
}

// Cancel gives the reservation back (the create failed or opened an
// existing object) and settles the directory to dirSize.
func (c *Create) Cancel(dirSize int64) {
	c.ir.Cancel()
	c.dr.Done(dirSize)
}

// ReserveDir is called before an operation that adds an entry to the
// directory d (link; grow true: DirGrowth is reserved, all or nothing) or
// removes one (unlink, rmdir; grow false: no room is needed). Done
// settles the directory's charge to its st_size after the operation.
func (m *Manager) ReserveDir(s ScopeKey, folderID string, d DirRef, grow bool) (DirReservation, error) {
	var r DirReservation
	dirs := [2]dirWant{{ref: d, grow: grow}}
	err := m.reserveDirs(s, folderID, dirs[:1], 0, 0, nil, &r)
	return r, err
}

// ReserveRename is ReserveDir for a rename from the directory from into
// the directory to (the same one or another): to may grow (grow false for
// RENAME_EXCHANGE, which adds no entry), from only loses an entry. Pass
// the two sizes to Done in that order.
func (m *Manager) ReserveRename(s ScopeKey, folderID string, from, to DirRef, grow bool) (DirReservation, error) {
	var r DirReservation
	dirs := [2]dirWant{{ref: from}, {ref: to, grow: grow}}
	n := 2
	if from.Key == to.Key {
		dirs[0].grow, n = grow, 1
	}
	err := m.reserveDirs(s, folderID, dirs[:n], 0, 0, nil, &r)
	return r, err
}

type dirWant struct {
	ref  DirRef
	grow bool
}

// reserveDirs holds the directories exclusively, records the ones the
// ledger does not know (a folder root on its first change, a directory
// made behind the daemon's back: from size 0, settled by Done), checks
// that the scope has room for extra bytes plus the growth asked for, runs
// also (a new object's reservation of extra bytes, under the same lock;
// it returns how to undo it) and reserves.
func (m *Manager) reserveDirs(s ScopeKey, folderID string, dirs []dirWant, extra, inodes int64, also func(*scope, *folder) (func(), error), r *DirReservation) error {
	sc, f, err := m.enter(s, folderID, false)
	if err != nil {
		return err
	}
	var ins [2]*inode
	unpin := func() {
		for _, in := range ins {
			if in != nil {
				in.pins--
				sc.after(in)
			}
		}
	}
	for i, d := range dirs {
		// getInode may drop the lock: the inodes already looked up stay
		// pinned (in memory) meanwhile.
		in, err := sc.getInode(f, d.ref.Key)
		if err != nil {
			unpin()
			sc.mu.Unlock()
			return err
		}
		in.pins++
		ins[i] = in
	}
	sc.hold(ins[:len(dirs)])
	unpin()
	growth := extra
	var fresh [2]bool
	for i, d := range dirs {
		in := ins[i]
		k := d.ref.kind()
		if sc.cl != nil && d.ref.Size != nil && in.outstanding == 0 {
			// cluster: adopt the size another node left (cluster.go)
			if size := d.ref.Size(); size >= 0 && (!in.exists || in.kind != k || in.size != size) {
				sc.observe(in, func() {
					in.ops++
					sc.setExists(in, true, k, size)
				})
			}
		}
		if !in.exists || in.kind != k {
			in.ops++
			sc.setExists(in, true, k, 0)
			fresh[i] = true
		}
		if validHint(d.ref.Hint) {
			in.hint = d.ref.Hint
		}
		if d.grow {
			growth += m.opts.DirGrowth
		}
	}
	reserved := false
	// abort undoes everything: a directory recorded here (from size 0,
	// below its real size) is forgotten again rather than left charged
	// too little.
	abort := func(err error) error {
		for i, in := range ins[:len(dirs)] {
			if reserved {
				sc.done(in, in.size, false)
			}
			sc.unhold(in)
			if fresh[i] {
				in.ops++
				sc.setExists(in, false, 0, 0)
			}
			sc.after(in)
		}
		sc.mu.Unlock()
		return err
	}
	if (growth > 0 || inodes > 0) && m.space.Load() != int32(SpaceOK) {
		return abort(errStoreShort) // growth and new records wait for the state disk
	}
	if sc.cl != nil && (growth > 0 || inodes > 0) {
		// cluster: the node's grants, asked for more when short (cluster.go)
		if err := sc.clusterNeed(f, growth, inodes); err != nil {
			return abort(err)
		}
	}
	if growth > sc.avail() {
		return abort(errNoBytes)
	}
	undo := func() {}
	if also != nil {
		u, err := also(sc, f)
		if err != nil {
			return abort(err)
		}
		undo = u
	}
	for i, d := range dirs {
		in := ins[i]
		in.ops++
		if in.outstanding == 0 {
			in.hi, in.rep, in.unknown = 0, -1, false
		}
		in.outstanding++
		g := in.size
		if d.grow {
			g += m.opts.DirGrowth
		}
		in.hi = max(in.hi, g)
		sc.recharge(in)
	}
	reserved = true
	for i := range dirs {
		if in := ins[i]; !in.markReady() {
			if err := sc.waitMark(in); err != nil {
				undo()
				return abort(err)
			}
		}
	}
	for i := range dirs {
		sc.after(ins[i])
	}
	sc.mu.Unlock()
	*r = DirReservation{sc: sc, ins: ins}
	return nil
}

// Done ends the operation and reports the directories' st_size after it,
// in the order they were reserved (ReserveRename: from, then to); -1, or
// a size left out, when unknown.
func (r *DirReservation) Done(sizes ...int64) {
	sc := r.sc
	if sc == nil {
		return
	}
	r.sc = nil
	sc.mu.Lock()
	for i, in := range r.ins {
		if in == nil {
			continue
		}
		size := int64(-1)
		if i < len(sizes) {
			size = sizes[i]
		}
		sc.done(in, size, false)
		sc.unhold(in)
		sc.after(in)
	}
	sc.mu.Unlock()
}

// XattrReservation is a change of one object's user.* attributes in
// flight, returned by ReserveXattr. End it with Done.
type XattrReservation struct {
	sc *scope
	in *inode
}

// ReserveXattr is called before setxattr and removexattr of a user.*
// attribute of the object ino, of the given kind (KindFile, KindDir, or
// KindRoot for the folder root) and current st_size, at path hint. Once
// the inode is held, growth is called (without the scope's lock) for what
// the change can add: for setxattr len(name)+len(value) less what the
// attribute it replaces costs now, for removexattr 0. That growth is
// reserved all or nothing (an error wrapping ErrExceeded when the scope
// lacks room), so shrinking and removing always pass. An error of growth
// is returned as it is. An object the ledger does not know is recorded
// with size. Done settles the charge to the attributes' real sum after
// the change.
//
// current, when not nil, reads the object's user.* attribute bytes now
// (UserXattrBytes, -1 when it cannot): in cluster mode, an object the
// node's ledger does not know, or knows with another size, is first
// adopted at size and those bytes (another node may have made it), so
// that the change charges only its own growth. It is called with the
// scope locked.
func (m *Manager) ReserveXattr(s ScopeKey, folderID string, ino InodeKey, kind Kind, size int64, hint string, growth func() (int64, error), current func() int64) (XattrReservation, error) {
	if !kind.valid() || size < 0 {
		return XattrReservation{}, fmt.Errorf("%w: bad kind or size", ErrInvalid)
	}
	sc, in, err := m.enterInode(s, folderID, ino, false)
	if err != nil {
		return XattrReservation{}, err
	}
	sc.hold([]*inode{in})
	fresh := false
	if sc.cl != nil && current != nil && in.outstanding == 0 && in.writers == 0 &&
		(!in.exists || in.kind != kind || (kind != KindOther && in.size != size)) {
		// cluster: adopt what another node made (cluster.go)
		if x := current(); x >= 0 {
			sc.observe(in, func() {
				in.ops++
				sc.setExists(in, true, kind, size)
				in.xattr = x
				sc.recharge(in)
			})
		}
	}
	if !in.exists || (in.kind != kind && in.outstanding == 0) {
		// First contact: the attributes it may already have are counted
		// by Done (or, if this fails, by the next change or a Check).
		in.ops++
		sc.setExists(in, true, kind, size)
		fresh = true
	}
	if validHint(hint) {
		in.hint = hint
	}
	abort := func(err error) (XattrReservation, error) {
		in.xhi = 0
		sc.unhold(in)
		if fresh {
			in.ops++
			sc.setExists(in, false, 0, 0)
		}
		sc.recharge(in)
		sc.after(in)
		sc.mu.Unlock()
		return XattrReservation{}, err
	}
	// Held, the inode stays in memory and no other change of its
	// attributes goes through the daemon while growth looks at them.
	sc.mu.Unlock()
	grow, err := growth()
	sc.mu.Lock()
	if err != nil {
		return abort(err)
	}
	if grow < 0 {
		grow = 0
	}
	if sc.cl != nil && grow > 0 && m.space.Load() == int32(SpaceOK) {
		// cluster: the node's grant, asked for more when short (cluster.go)
		if err := sc.clusterNeed(in.f, grow, 0); err != nil {
			return abort(err)
		}
	}
	if grow > sc.avail() {
		return abort(sc.noRoom())
	}
	in.ops++
	in.xhi = in.xattr + grow
	sc.recharge(in)
	if !in.markReady() {
		if err := sc.waitMark(in); err != nil {
			return abort(err)
		}
	}
	sc.after(in)
	sc.mu.Unlock()
	return XattrReservation{sc: sc, in: in}, nil
}

// XattrGrowth is what setting the attribute name to a value of n bytes
// can add to an object's charge, given the size of its current value (-1
// when it has none).
func XattrGrowth(name string, n, old int) int64 {
	g := int64(len(name) + n)
	if old >= 0 {
		g -= int64(len(name) + old)
	}
	return max(g, 0)
}

// Done ends the change and reports the object's user.* attribute bytes
// after it (UserXattrBytes), or -1 when unknown: the charge then stays at
// the grant until the next change or a Check.
func (r *XattrReservation) Done(total int64) {
	in := r.in
	if in == nil {
		return
	}
	r.in = nil
	sc := r.sc
	sc.mu.Lock()
	in.ops++
	if total >= 0 {
		in.xattr = total
	} else {
		in.xattr = max(in.xattr, in.xhi)
	}
	in.xhi = 0
	sc.unhold(in)
	sc.recharge(in)
	sc.after(in)
	sc.mu.Unlock()
}

// hold waits until none of ins (nil entries aside) is held by another
// directory or xattr operation, then holds them all. sc.mu is held; it is
// released while waiting, with the inodes pinned so that they stay in
// memory. All are taken at once, never one after the other, so two
// operations holding two directories each cannot deadlock.
func (sc *scope) hold(ins []*inode) {
	for {
		var busy *inode
		for _, in := range ins {
			if in != nil && in.excl {
				busy = in
				break
			}
		}
		if busy == nil {
			break
		}
		if busy.wake == nil {
			busy.wake = make(chan struct{})
		}
		ch := busy.wake
		for _, in := range ins {
			if in != nil {
				in.pins++
			}
		}
		sc.mu.Unlock()
		<-ch
		sc.mu.Lock()
		for _, in := range ins {
			if in != nil {
				in.pins--
			}
		}
	}
	for _, in := range ins {
		if in != nil {
			in.excl = true
		}
	}
}

// unhold releases what hold took and wakes the waiters.
func (sc *scope) unhold(in *inode) {
	in.excl = false
	if in.wake != nil {
		close(in.wake)
		in.wake = nil
	}
}

// RecordRoot records the root of a folder just made (its st_size and
// user.* xattr bytes, as KindRoot) unless the ledger knows it already. The
// daemon that makes a folder calls it, so that the root is charged once:
// on one node a root is otherwise recorded at its first contact, but in
// cluster mode every other node adopts the root at first contact (it may
// have been charged by the node that made it), and only this call
// charges it. Like a Check's first contact it needs no room: a folder
// made in a full scope still gets its root.
func (m *Manager) RecordRoot(s ScopeKey, folderID string) error {
	if m.opts.OpenFolder == nil {
		return nil
	}
	root, err := m.opts.OpenFolder(s, folderID)
	if err != nil {
		return err
	}
	defer root.Close()
	fd, rootDev, err := rootOf(root)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var o object
	if err := inspectFd(fd, &o); err != nil {
		return err
	}
	sc, f, err := m.enter(s, folderID, false)
	if err != nil {
		return err
	}
	sc.mu.Unlock()
	return m.firstContact(sc, f, MakeKey(rootDev, o.st.Dev, o.st.Ino), &o)
}
