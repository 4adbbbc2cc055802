package quota

import (
	"fmt"
)

var (
	errNoBytes       = fmt.Errorf("%w: no bytes left in the quota scope", ErrExceeded)
	errNoInodes      = fmt.Errorf("%w: no inodes left in the quota scope", ErrExceeded)
	errStoreShort    = fmt.Errorf("%w: growth is refused until the state disk has room", ErrStoreFull)
	errStoreCritical = fmt.Errorf("%w: changes that write the ledger are refused until the state disk has room", ErrStoreFull)
)

// enter looks up (creating) the scope and folder and returns with the
// scope locked. release calls still work after Close.
func (m *Manager) enter(s ScopeKey, folderID string, release bool) (*scope, *folder, error) {
	if !release && m.closed.Load() {
		return nil, nil, ErrClosed
	}
	sc, err := m.lookup(s, true)
	if err != nil {
		return nil, nil, err
	}
	sc.mu.Lock()
	f, err := sc.folder(folderID)
	if err != nil {
		sc.mu.Unlock()
		return nil, nil, err
	}
	return sc, f, nil
}

// enterInode is enter plus getInode.
func (m *Manager) enterInode(s ScopeKey, folderID string, ino InodeKey, release bool) (*scope, *inode, error) {
	sc, f, err := m.enter(s, folderID, release)
	if err != nil {
		return nil, nil, err
	}
	in, err := sc.getInode(f, ino)
	if err != nil {
		sc.mu.Unlock()
		return nil, nil, err
	}
	return sc, in, nil
}

// Reservation is a grant of growth to one inode, returned by Reserve and
// ReserveExact. Call Done exactly once when the operation is over. The
// zero Reservation is valid and Done on it does nothing.
type Reservation struct {
	sc     *scope
	in     *inode
	sizeOp bool
}

// Reserve is the check-and-reserve step of a write of the bytes [off, end)
// to a regular file. It returns granted, the end up to which the write may
// go: end when the scope has room, less when the write would cross the
// limit (the write is cut short). When not even the byte at off fits it
// returns an error wrapping ErrExceeded and nothing is reserved. A write
// that ends within the inode's charged size is always granted in full.
//
// Until Done, the inode stays charged at least at granted. For a write
// within the charged size with the inode held by OpenForWrite, Reserve and
// Done take the scope's lock once each and do not allocate.
//
// A write that may grow the file first makes the inode's dirty mark
// survive the process (the mark table; once per hold, see the package
// comment).
func (m *Manager) Reserve(s ScopeKey, folderID string, ino InodeKey, off, end int64) (granted int64, r Reservation, err error) {
	if off < 0 || end < 0 {
		return 0, Reservation{}, fmt.Errorf("%w: negative offset or end", ErrInvalid)
	}
	if end <= off {
		return end, Reservation{}, nil
	}
	return m.reserve(s, folderID, ino, off, end, false)
}

// ReserveExact reserves a change of the file's size to exactly size, for
// truncate (either way) and fallocate: all or nothing. Growth that does
// not fit fails with an error wrapping ErrExceeded; shrinking always
// succeeds. Done settles the charge after the operation.
func (m *Manager) ReserveExact(s ScopeKey, folderID string, ino InodeKey, size int64) (Reservation, error) {
	if size < 0 {
		return Reservation{}, fmt.Errorf("%w: negative size", ErrInvalid)
	}
	_, r, err := m.reserve(s, folderID, ino, size, size, true)
	return r, err
}

func (m *Manager) reserve(s ScopeKey, folderID string, ino InodeKey, off, end int64, exact bool) (int64, Reservation, error) {
	sc, in, err := m.enterInode(s, folderID, ino, false)
	if err != nil {
		return 0, Reservation{}, err
	}
	if !in.exists {
		// A file the ledger does not know (created behind its back): it
		// is counted from now on, from size 0; Done settles its size.
		in.ops++
		sc.setExists(in, true, KindFile, 0)
	}
	cur := in.chargeNow()
	g := end
	if end > cur && sc.cl != nil && m.space.Load() == int32(SpaceOK) {
		// cluster: registration of the hold and room from the cluster,
		// asked for outside the lock (cluster.go); with the store's disk
		// short there is no room to ask for (avail is 0 below).
		if cur, err = sc.clusterRoom(in, end, exact); err != nil {
			sc.after(in)
			sc.mu.Unlock()
			return 0, Reservation{}, err
		}
	}
	if end > cur {
		a := sc.avail()
		if exact {
			if end-cur > a {
				sc.after(in)
				sc.mu.Unlock()
				return 0, Reservation{}, sc.noRoom()
			}
		} else {
			g = cur + min(end-cur, a)
			if g <= off {
				sc.after(in)
				sc.mu.Unlock()
				return 0, Reservation{}, sc.noRoom()
			}
		}
	} else if exact && end != in.size {
		// A shrink writes a record.
		if err := m.spaceErr(); err != nil {
			sc.after(in)
			sc.mu.Unlock()
			return 0, Reservation{}, err
		}
	}
	in.ops++
	if in.outstanding == 0 {
		in.hi, in.rep, in.unknown = 0, -1, false
	}
	in.outstanding++
	if g > in.hi {
		in.hi = g
	}
	sizeOp := exact || g > in.size
	if sizeOp {
		in.sizeOps++
	}
	sc.recharge(in)
	if sizeOp && !in.markReady() {
		if err := sc.waitMark(in); err != nil {
			// Nothing was done: report the size the file had before.
			sc.done(in, in.size, sizeOp)
			sc.mu.Unlock()
			return 0, Reservation{}, err
		}
	}
	sc.after(in)
	sc.mu.Unlock()
	return g, Reservation{sc: sc, in: in, sizeOp: sizeOp}, nil
}

// Done ends the operation and reports size, the inode's logical size
// after it (fstat of the backing file), or -1 when unknown.
//
// While other reservations of the inode are outstanding the inode stays
// charged at the maximum of the grants and reported sizes. When the last
// one is done the charge settles: to the reported size when the episode
// had a single operation, else to the highest size reported in it (a
// report may be stale when operations overlap, and the highest one is
// never below the real size, because the operation that changed the size
// last reported after its change). An episode that mixed a shrink with
// other operations may so stay charged a little high until the next
// operation settles it.
func (r *Reservation) Done(size int64) {
	in := r.in
	if in == nil {
		return
	}
	r.in = nil
	sc := r.sc
	sc.mu.Lock()
	sc.done(in, size, r.sizeOp)
	sc.mu.Unlock()
}

func (sc *scope) done(in *inode, size int64, sizeOp bool) {
	if in.outstanding <= 0 {
		sc.m.log.Error().Uint64("ino", in.key.Ino).Msg("quota: reservation done twice")
		return
	}
	in.ops++
	in.outstanding--
	if sizeOp {
		in.sizeOps--
	}
	if size < 0 {
		in.unknown = true
	} else if size > in.rep {
		in.rep = size
	}
	if in.outstanding == 0 {
		ns := in.rep
		if in.unknown {
			ns = max(in.size, in.hi, in.rep)
		}
		in.size = ns
		in.hi, in.rep, in.unknown = 0, -1, false
		if in.unlinked && in.writers == 0 {
			sc.remove(in)
		}
	}
	sc.recharge(in)
	sc.after(in)
}

// waitMark makes the inode's dirty mark survive the process: in the mark
// table, or, when the table cannot take it, by waiting for the commit that
// writes it to the store (sc.mu is then released while waiting).
func (sc *scope) waitMark(in *inode) error {
	if sc.cl != nil && in.cl.adopting() {
		// cluster: a mark must never outlive the adoption it follows (cluster.go)
		if err := sc.waitAdopted(in); err != nil {
			return err
		}
	}
	if sc.setSlot(in) {
		return nil
	}
	return sc.waitFor(func() bool { return in.markReady() }, func() { sc.touch(in) })
}

func (sc *scope) waitFor(ready func() bool, queue func()) error {
	m := sc.m
	for !ready() {
		if m.closed.Load() {
			return ErrClosed
		}
		queue()
		rd := m.nextRound()
		m.urgent.Add(1)
		select {
		case m.hurry <- struct{}{}:
		default:
		}
		sc.mu.Unlock()
		<-rd.done
		m.urgent.Add(-1)
		sc.mu.Lock()
		if rd.err != nil && !ready() {
			return fmt.Errorf("quota: ledger write failed: %w", rd.err)
		}
	}
	return nil
}

// SetSize reports the logical size of a regular file outside a
// reservation. With no reservation of the inode outstanding it sets the
// charge (and creates the record of a file the ledger did not know);
// otherwise it counts as one more report of the running episode. Prefer
// ReserveExact+Done around anything that changes the size: only that is
// crash-safe.
func (m *Manager) SetSize(s ScopeKey, folderID string, ino InodeKey, size int64) error {
	if size < 0 {
		return fmt.Errorf("%w: negative size", ErrInvalid)
	}
	sc, in, err := m.enterInode(s, folderID, ino, true)
	if err != nil {
		return err
	}
	in.ops++
	switch {
	case !in.exists:
		sc.setExists(in, true, KindFile, size)
	case in.outstanding > 0:
		in.rep = max(in.rep, size)
	default:
		in.size = size
	}
	sc.recharge(in)
	sc.after(in)
	sc.mu.Unlock()
	return nil
}

// OpenForWrite takes a write hold on a regular file: call it when a file
// is opened for writing (or before any size change), with the file's
// current size and its path relative to the folder root (a hint for crash
// recovery; "" if unknown). While any hold is taken the inode carries a
// durable dirty mark, so a crash at any instant is followed by a re-stat
// of the file. A file the ledger does not know is recorded with size.
// Holds nest; release each with CloseForWrite.
func (m *Manager) OpenForWrite(s ScopeKey, folderID string, ino InodeKey, size int64, hint string) error {
	if size < 0 {
		return fmt.Errorf("%w: negative size", ErrInvalid)
	}
	if err := m.spaceErr(); err != nil {
		return err // a hold writes a dirty mark
	}
	sc, in, err := m.enterInode(s, folderID, ino, false)
	if err != nil {
		return err
	}
	if sc.cl != nil {
		sc.clusterOpen(in, size) // cluster: the first-touch rule (cluster.go)
	} else if !in.exists || (in.kind != KindFile && in.outstanding == 0) {
		in.ops++
		sc.setExists(in, true, KindFile, size)
	}
	in.writers++
	if validHint(hint) {
		in.hint = hint
	}
	if sc.cl != nil {
		sc.clusterHold(in) // cluster: register the hold (cluster.go)
	}
	sc.after(in)
	sc.mu.Unlock()
	return nil
}

// CloseForWrite releases a hold taken by OpenForWrite. When the last hold
// goes the dirty mark is removed together with the final charge.
func (m *Manager) CloseForWrite(s ScopeKey, folderID string, ino InodeKey) {
	m.release(s, folderID, ino, false, 0)
}

// Removal is a removal in progress, returned by PrepareRemove. End it
// with Done.
type Removal struct {
	m      *Manager
	s      ScopeKey
	folder string
	ino    InodeKey
	gen    uint64
	ok     bool
}

// PrepareRemove is called before an unlink, rmdir or rename that may drop
// the last link of ino. It takes a hold and, when the inode carries bytes,
// makes its dirty mark survive the process (as Reserve does), so that the
// removal is exact across a crash. Always end it with Removal.Done.
func (m *Manager) PrepareRemove(s ScopeKey, folderID string, ino InodeKey, hint string) (Removal, error) {
	if err := m.spaceErr(); err != nil {
		return Removal{}, err
	}
	sc, in, err := m.enterInode(s, folderID, ino, false)
	if err != nil {
		return Removal{}, err
	}
	in.writers++
	if validHint(hint) {
		in.hint = hint
	}
	if in.exists && in.charged > 0 && !in.markReady() {
		if err := sc.waitMark(in); err != nil {
			in.writers--
			sc.after(in)
			sc.mu.Unlock()
			return Removal{}, err
		}
	}
	gen := in.gen
	sc.after(in)
	sc.mu.Unlock()
	return Removal{m: m, s: s, folder: folderID, ino: ino, gen: gen, ok: true}, nil
}

// Done ends the removal. lastLink tells that the object's last link is
// gone (st_nlink reached 0): its bytes and its inode are released, at once
// or, while the file is still held open for writing, when the last hold
// goes. After a failed removal pass false. If meanwhile a new object was
// created under the same inode number (Commit), the record is the new
// object's and stays.
func (r *Removal) Done(lastLink bool) {
	if !r.ok {
		return
	}
	r.ok = false
	r.m.release(r.s, r.folder, r.ino, lastLink, r.gen)
}

func (m *Manager) release(s ScopeKey, folderID string, ino InodeKey, lastLink bool, gen uint64) {
	sc, in, err := m.enterInode(s, folderID, ino, true)
	if err != nil {
		m.log.Error().Err(err).Str("scope", s.String()).Str("folder", folderID).Uint64("ino", ino.Ino).Msg("quota: release of a hold failed")
		return
	}
	if lastLink && in.exists && in.gen == gen {
		in.unlinked = true
		in.ops++
	}
	if in.writers > 0 {
		in.writers--
	} else {
		m.log.Error().Uint64("ino", ino.Ino).Msg("quota: hold released twice")
	}
	if in.unlinked && in.writers == 0 && in.outstanding == 0 {
		sc.remove(in)
	}
	sc.after(in)
	sc.mu.Unlock()
}

// Forget releases an object whose last link is gone, without the hold of
// PrepareRemove. It is not crash-exact (a crash between the removal and
// the next commit leaves the charge until a Check), and a create that
// reuses the inode number between the removal and Forget loses its record
// until a Check. Prefer PrepareRemove.
func (m *Manager) Forget(s ScopeKey, folderID string, ino InodeKey) {
	sc, in, err := m.enterInode(s, folderID, ino, true)
	if err != nil {
		m.log.Error().Err(err).Str("scope", s.String()).Uint64("ino", ino.Ino).Msg("quota: forget failed")
		return
	}
	if in.exists {
		in.ops++
		if in.writers > 0 || in.outstanding > 0 {
			in.unlinked = true
		} else {
			sc.remove(in)
		}
	}
	sc.after(in)
	sc.mu.Unlock()
}

// InodeReservation holds one inode (and, for a symlink, its bytes) of a
// scope for an object about to be created. End it with Commit or Cancel.
type InodeReservation struct {
	sc    *scope
	f     *folder
	kind  Kind
	bytes int64
	it    *intent
}

// ReserveInode checks the inode limit (and for a symlink the byte limit:
// bytes = len(target)) before an object is made, and holds the room until
// Commit or Cancel. It charges no directory: use it for objects made in
// none (O_TMPFILE), and ReserveCreate for creates in a directory. hint is the new object's path relative
// to the folder root; for a symlink with a hint, ReserveInode first makes
// a create intent durable, so that the symlink's bytes are exact across a
// crash.
func (m *Manager) ReserveInode(s ScopeKey, folderID string, kind Kind, bytes int64, hint string) (InodeReservation, error) {
	if !kind.valid() || bytes < 0 {
		return InodeReservation{}, fmt.Errorf("%w: bad kind or size", ErrInvalid)
	}
	if kind != KindSymlink {
		bytes = 0
	}
	sc, f, err := m.enter(s, folderID, false)
	if err != nil {
		return InodeReservation{}, err
	}
	defer sc.mu.Unlock()
	if m.space.Load() != int32(SpaceOK) {
		return InodeReservation{}, errStoreShort // a new record
	}
	if sc.cl != nil {
		// cluster: the node's inode grant (cluster.go)
		if err := sc.clusterNeed(f, bytes, 1); err != nil {
			return InodeReservation{}, err
		}
	} else if sc.limitInodes > 0 && sc.count >= sc.limitInodes {
		return InodeReservation{}, errNoInodes
	}
	if bytes > sc.avail() {
		return InodeReservation{}, errNoBytes
	}
	sc.count++
	f.count++
	f.creating++
	sc.used += bytes
	f.used += bytes
	if sc.cl != nil {
		sc.clGrow(bytes, 1) // cluster: growth not yet settled (cluster.go)
	}
	r := InodeReservation{sc: sc, f: f, kind: kind, bytes: bytes}
	if bytes > 0 && validHint(hint) {
		it := &intent{id: m.epoch<<32 | m.seq.Add(1), f: f, kind: kind, bytes: bytes, hint: hint, want: true}
		err := sc.waitFor(func() bool { return it.persist }, func() { sc.queueIntent(it) })
		if err != nil {
			r.it = it
			r.cancelLocked()
			return InodeReservation{}, err
		}
		r.it = it
	}
	if h := m.hook; h != nil {
		h(sc)
	}
	return r, nil
}

func (sc *scope) queueIntent(it *intent) {
	if !it.queued {
		it.queued = true
		sc.intentQ = append(sc.intentQ, it)
	}
	sc.enqueue()
}

// Commit records the new object: ino is its key, size its st_size (0 for
// a new file, the target length for a symlink). Call it only when the
// operation created a new inode; when it opened an existing file call
// Cancel.
func (r *InodeReservation) Commit(ino InodeKey, size int64) {
	sc := r.sc
	if sc == nil {
		return
	}
	r.sc = nil
	sc.mu.Lock()
	defer sc.mu.Unlock()
	// Look the inode up before giving the reservation back: getInode may
	// drop the lock, and until the record exists the object must still
	// count as a create in flight (see Check).
	in, err := sc.getInode(r.f, ino)
	sc.count--
	r.f.count--
	r.f.creating--
	sc.used -= r.bytes
	r.f.used -= r.bytes
	if err != nil {
		// The intent (if any) stays; recovery or Check records the object.
		sc.m.log.Error().Err(err).Uint64("ino", ino.Ino).Msg("quota: cannot record a new inode")
		return
	}
	in.ops++
	in.gen++
	in.xattr = 0 // a new object: none of the old one's xattrs
	sc.setExists(in, true, r.kind, max(size, 0))
	if sc.cl != nil {
		sc.clTransfer(r.bytes, 1) // cluster: the reservation became the record (cluster.go)
	}
	if r.it != nil {
		// Deleted in the same transaction that writes the record.
		r.it.want = false
		in.intents = append(in.intents, r.it.id)
	}
	sc.after(in)
}

// Cancel gives the reserved room back (the create failed or opened an
// existing object).
func (r *InodeReservation) Cancel() {
	sc := r.sc
	if sc == nil {
		return
	}
	sc.mu.Lock()
	r.cancelLocked()
	sc.mu.Unlock()
}

func (r *InodeReservation) cancelLocked() {
	sc := r.sc
	r.sc = nil
	sc.count--
	r.f.count--
	r.f.creating--
	sc.used -= r.bytes
	r.f.used -= r.bytes
	if r.it != nil {
		r.it.want = false
		sc.queueIntent(r.it)
	}
	if h := sc.m.hook; h != nil {
		h(sc)
	}
}
