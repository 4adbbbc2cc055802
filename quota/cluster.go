package quota

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"sort"

	"github.com/dgraph-io/badger/v4"
	"golang.org/x/sys/unix"
)

// Cluster mode: what a Manager does for a cluster quota client (package
// quota/grants). The design is in doc.go ("Beyond one node"); everything
// of it lives in this file, except the hooks marked "cluster:" in
// manager.go, ledger.go, flush.go, recover.go and check.go.

// Grants is the cluster's side of a Manager's room, set in Options.Grants.
// With it, room in a scope is the node's grant minus what the node has
// charged and not yet settled; without it (one node) nothing of this file
// runs.
type Grants interface {
	// Room is called, with no lock of the Manager held, when an operation
	// in scope s needs more than the node holds (see Need). It asks the
	// cluster and returns true once the node's room covers the need;
	// false when no more can be had now (the scope is nearly full: a write
	// is then cut short to what the node holds) or its bounded wait is
	// over. The caller computes room again; other writers of the node may
	// have used it meanwhile, so after true it may ask again.
	Room(s ScopeKey, need Need) bool
	// Notify tells that scope s has work for the cluster: holds to
	// register, or room below the low mark of its view. It may be called
	// with a scope's lock held: it must not block and must not call the
	// Manager.
	Notify(s ScopeKey)
}

// Need is what an operation waiting in Grants.Room needs.
type Need struct {
	// Bytes, Inodes: the room the operation needs in all (not only what is
	// missing).
	Bytes, Inodes int64
	// Exact: all or nothing (truncate, fallocate, creates). Otherwise the
	// operation takes what it can get (a write is cut short), so the
	// client waits for room as long as other nodes hold any.
	Exact bool
	// Hold: the operation's inode has a write hold not yet registered.
	Hold bool
}

// ClusterView is what the cluster client knows of a scope and of this
// node's share of it.
type ClusterView struct {
	Rev                    int64 // store revision the view is from; older views are ignored
	Limit, LimitInodes     int64 // the scope's limits (0: none)
	Settled, SettledInodes int64 // the scope's settled usage, all nodes
	Grant, GrantInodes     int64 // this node's grant: growth it may make beyond what it settled
	// Low, LowInodes: when the room left falls below them the Manager
	// calls Notify, so that the client asks for more before it runs out.
	Low, LowInodes int64
}

// Registration states of a write hold (clInode.reg).
const (
	regNone    uint8 = iota
	regPending       // waiting for the client to take it
	regFlight        // the client is registering it
	regDone          // registered in the cluster
)

// maxRemoved bounds the removal credits kept one by one between
// settlements; beyond it a removal is settled with its folder's other
// changes, without the check against registered holds.
const maxRemoved = 100000

// maxJournal bounds the inodes a scope journals for a cluster check.
const maxJournal = 20000

// clScope is a scope's cluster state (sc.mu).
type clScope struct {
	known bool // the client has given a view: until then there is no room
	v     ClusterView
	// own accounting: what the node's own operations changed is
	// used - adopted; of it, sOwn has been settled.
	adB, adN     int64
	sOwnB, sOwnN int64
	seq          uint64 // last settlement applied
	// growth: own increases not yet settled (grow since the last snapshot,
	// snap taken by snapshots whose settlement is not done). Room and the
	// figure shown count these, not the net unsettled change: an own
	// shrink frees room only once settled, since the cluster may withhold
	// it (another node holds the file).
	growB, growN int64
	snapB, snapN int64
	growInit     bool
	grownB       int64 // all own growth since Open (the client's write rate)
	grownN       int64
	pending      *pendingSettle
	regQ         []*inode             // holds to register
	regs         map[*inode]struct{}  // inodes with a registration state
	removed      []RemovedCredit      // own removals of unregistered inodes
	nextID       uint64               // RemovedCredit ids
	observing    bool                 // changes now are learned from storage, not made
	jEpoch       uint32               // cluster check journal, 0: off
	journal      map[*inode]struct{}  // inodes touched since the journal started
	jOverflow    map[string]bool      // folders with more touched inodes than kept
	folderSet    map[string]FolderSet // the cluster's settled figure per folder
}

// FolderSet is a folder's settled figure in the cluster.
type FolderSet struct{ Bytes, Inodes int64 }

// clFolder is a folder's cluster state (sc.mu).
type clFolder struct {
	adB, adN     int64 // adopted, in memory (including what is not committed)
	pAdB, pAdN   int64 // adopted, as committed
	sOwnB, sOwnN int64 // settled own figure
}

// clInode is an inode's cluster state (sc.mu); present while the inode
// has a registration, adoption not yet committed, or a journal entry.
type clInode struct {
	reg            uint8
	view           int64  // the charge the cluster accounts for this node (last settled or registered)
	padB, padN     int64  // adoption not yet taken by a commit
	fadB, fadN     int64  // adoption in the commit in flight
	jEpoch         uint32 // journaled by this check
	jBaseB, jBaseN int64  // the settled figure before the first change in it
}

func (sc *scope) clScopeInit() {
	sc.cl = &clScope{regs: map[*inode]struct{}{}, folderSet: map[string]FolderSet{}}
}

func (f *folder) clf() *clFolder {
	if f.cl == nil {
		f.cl = &clFolder{}
	}
	return f.cl
}

func (in *inode) cli() *clInode {
	if in.cl == nil {
		in.cl = &clInode{}
	}
	return in.cl
}

func (c *clInode) adopting() bool {
	return c != nil && (c.padB != 0 || c.padN != 0 || c.fadB != 0 || c.fadN != 0)
}

// clTidy drops an inode's cluster state once nothing of it is left.
func (sc *scope) clTidy(in *inode) {
	c := in.cl
	if c == nil || c.reg != regNone || c.adopting() {
		return
	}
	if sc.cl != nil && c.jEpoch != 0 && c.jEpoch == sc.cl.jEpoch {
		return
	}
	in.cl = nil
}

// unsettled is what the node's own operations changed in the scope and
// have not been settled.
func (sc *scope) unsettled() (int64, int64) {
	c := sc.cl
	return sc.used - c.adB - c.sOwnB, sc.count - c.adN - c.sOwnN
}

func (f *folder) unsettled() (int64, int64) {
	if f.cl == nil {
		return f.used, f.count
	}
	return f.used - f.cl.adB - f.cl.sOwnB, f.count - f.cl.adN - f.cl.sOwnN
}

// clGrow counts an own increase (db, dn > 0) not yet settled.
func (sc *scope) clGrow(db, dn int64) {
	c := sc.cl
	if c.observing {
		return
	}
	if db > 0 {
		c.growB += db
		c.grownB += db
	}
	if dn > 0 {
		c.growN += dn
		c.grownN += dn
	}
}

// clTransfer takes back growth counted twice: an inode reservation
// counted when reserved and again when its record was made.
func (sc *scope) clTransfer(db, dn int64) {
	sc.cl.growB -= db
	sc.cl.growN -= dn
}

// unsettledGrowth is what room and the figure shown count.
func (sc *scope) unsettledGrowth() (int64, int64) {
	c := sc.cl
	return c.growB + c.snapB, c.growN + c.snapN
}

// clusterAvail is avail in cluster mode: the node's grant minus the growth
// it charged and has not settled. No room before the client's first view,
// none while the client has frozen grants (its lease is not confirmed).
func (sc *scope) clusterAvail() int64 {
	c := sc.cl
	if !c.known {
		return 0
	}
	if c.v.Limit <= 0 {
		return math.MaxInt64
	}
	if sc.m.clFrozen.Load() {
		return 0
	}
	u, _ := sc.unsettledGrowth()
	r := c.v.Grant - u
	if r < c.v.Low {
		sc.m.opts.Grants.Notify(sc.key)
	}
	return max(r, 0)
}

func (sc *scope) clusterAvailInodes() int64 {
	c := sc.cl
	if !c.known {
		return 0
	}
	if c.v.LimitInodes <= 0 {
		return math.MaxInt64
	}
	if sc.m.clFrozen.Load() {
		return 0
	}
	_, u := sc.unsettledGrowth()
	r := c.v.GrantInodes - u
	if r < c.v.LowInodes {
		sc.m.opts.Grants.Notify(sc.key)
	}
	return max(r, 0)
}

var errNoHold = fmt.Errorf("%w: the cluster has not registered the file's write hold", ErrExceeded)

// maxAsks bounds how often one operation asks for room while other
// writers of the node use what it got.
const maxAsks = 64

// clusterRoom prepares growth of in up to end in cluster mode: in a scope
// with a limit the inode's write hold must be registered (a survivor must
// find every file a dead node may have grown), and the node must hold the
// room. When either is missing it asks the client, outside the lock, as
// long as the client makes progress. It returns the inode's charge
// afterwards. sc.mu is held.
func (sc *scope) clusterRoom(in *inode, end int64, exact bool) (int64, error) {
	more := true
	for asks := 0; ; asks++ {
		cur := in.chargeNow()
		if end <= cur {
			return cur, nil
		}
		c := sc.cl
		limited := !c.known || c.v.Limit > 0
		hold := limited && (in.cl == nil || in.cl.reg != regDone)
		if hold && (in.cl == nil || in.cl.reg == regNone) {
			sc.clusterHold(in)
		}
		a := sc.avail()
		short := end-cur > a
		if !hold && !short {
			return cur, nil
		}
		if !more || asks >= maxAsks {
			if hold {
				return cur, errNoHold
			}
			return cur, nil
		}
		in.pins++
		sc.mu.Unlock()
		more = sc.m.opts.Grants.Room(sc.key, Need{Bytes: end - cur, Exact: exact, Hold: hold})
		sc.mu.Lock()
		in.pins--
	}
}

// clusterNeed is the room check of a create or a directory change in
// cluster mode: inodes new inodes (0 or 1) and bytes of growth must fit
// the node's grants, else it asks the client for more (sc.mu is released
// meanwhile: callers keep what they looked up held or pinned).
func (sc *scope) clusterNeed(f *folder, bytes, inodes int64) error {
	more := true
	for asks := 0; ; asks++ {
		if f.dropped {
			return fmt.Errorf("%w: folder %s was dropped", ErrInvalid, f.id)
		}
		ri, rb := sc.clusterAvailInodes(), sc.avail()
		if ri >= inodes && rb >= bytes {
			return nil
		}
		if !more || asks >= maxAsks {
			if ri < inodes {
				return errNoInodes
			}
			return errNoBytes
		}
		sc.mu.Unlock()
		more = sc.m.opts.Grants.Room(sc.key, Need{Bytes: bytes, Inodes: inodes, Exact: true})
		sc.mu.Lock()
	}
}

// clusterHold asks the client to register the node's write hold of in.
func (sc *scope) clusterHold(in *inode) {
	ic := in.cli()
	if ic.reg != regNone {
		return
	}
	ic.reg = regPending
	ic.view = in.charged
	sc.cl.regs[in] = struct{}{}
	sc.cl.regQ = append(sc.cl.regQ, in)
	sc.m.opts.Grants.Notify(sc.key)
}

// clusterOpen is OpenForWrite in cluster mode, before the hold is counted:
// the size the caller observed is the inode's size from now on, and what
// that changes is adopted (another node's doing), not charged to this
// node. That is the first-touch rule: a node charges growth against the
// size it saw when it took its hold.
func (sc *scope) clusterOpen(in *inode, size int64) {
	if !in.exists || (in.outstanding == 0 && (in.kind != KindFile || in.size != size)) {
		sc.observe(in, func() {
			in.ops++
			sc.setExists(in, true, KindFile, size)
		})
	}
}

// observe runs fn, a change the node learned from storage rather than made
// (a size another node left, a check's repair, an object found gone), and
// counts what it changed as adopted: the cluster figure does not move. An
// adoption on an inode that carries a dirty mark is made durable before
// observe returns (sc.mu may be released), so that recovery never takes
// an adopted size for the node's own growth.
func (sc *scope) observe(in *inode, fn func()) {
	if sc.cl == nil {
		fn()
		return
	}
	f := in.f
	b0, n0 := f.used, f.count
	sc.cl.observing = true
	fn()
	sc.cl.observing = false
	sc.adopt(in, f.used-b0, f.count-n0)
	if in.cl.adopting() && in.markWanted() {
		if err := sc.waitAdopted(in); err != nil {
			sc.m.log.Warn().Err(err).Uint64("ino", in.key.Ino).Msg("quota: adoption not yet durable")
		}
	}
}

func (sc *scope) adopt(in *inode, db, dn int64) {
	if db == 0 && dn == 0 {
		return
	}
	fc := in.f.clf()
	fc.adB += db
	fc.adN += dn
	sc.cl.adB += db
	sc.cl.adN += dn
	ic := in.cli()
	ic.padB += db
	ic.padN += dn
	if ic.reg != regNone {
		ic.view += db
	}
}

// adoptFolder adopts a folder counter correction (Check's audit).
func (sc *scope) adoptFolder(f *folder, db, dn int64) {
	if sc.cl == nil {
		return
	}
	fc := f.clf()
	fc.adB += db
	fc.adN += dn
	sc.cl.adB += db
	sc.cl.adN += dn
}

// waitAdopted waits until in's adoption is committed (sc.mu is released
// while waiting).
func (sc *scope) waitAdopted(in *inode) error {
	return sc.waitFor(func() bool { return !in.cl.adopting() }, func() { sc.touch(in) })
}

// clRemove records an own removal of in (about to lose its record) for
// settlement: a registered inode settles through its registration; any
// other one as a removal credit, checked against registrations of other
// nodes when it is settled.
func (sc *scope) clRemove(in *inode) {
	c := sc.cl
	if c.observing || !in.exists {
		return
	}
	if in.cl != nil && in.cl.reg != regNone {
		return
	}
	if len(c.removed) >= maxRemoved {
		return
	}
	c.nextID++
	c.removed = append(c.removed, RemovedCredit{id: c.nextID, Folder: in.f.id, Ino: in.key, Bytes: -in.charged, Inodes: -1, Ops: in.ops + 1})
}

// clChange follows an own change of in: db bytes (in.charged already
// changed), dn inodes (in.exists not yet changed). It counts growth and,
// while a cluster check journals, notes the first change of each inode
// with the figure the node had settled for it just before (its base).
func (sc *scope) clChange(in *inode, db, dn int64) {
	c := sc.cl
	if c.observing {
		return
	}
	sc.clGrow(db, dn)
	if c.jEpoch == 0 || in.f.dropped || (in.cl != nil && in.cl.jEpoch == c.jEpoch) {
		return
	}
	sc.clJournalAdd(in, in.charged-db, inodesOf(in.exists, in.kind))
}

func (sc *scope) clJournalAdd(in *inode, baseB, baseN int64) {
	c := sc.cl
	if len(c.journal) >= maxJournal {
		c.jOverflow[in.f.id] = true
		return
	}
	ic := in.cli()
	if ic.reg == regPending || ic.reg == regFlight {
		// Its changes wait for the registration: the cluster holds the view.
		baseB = ic.view
	}
	ic.jEpoch, ic.jBaseB, ic.jBaseN = c.jEpoch, baseB, baseN
	c.journal[in] = struct{}{}
}

// Usage in cluster mode: the cluster's settled figure plus the growth this
// node has not settled yet (its shrinks, and other nodes' changes, show
// once settled, within a second).
func (sc *scope) clusterUsage() Usage {
	c := sc.cl
	ub, un := sc.unsettledGrowth()
	if !c.known {
		sc.m.opts.Grants.Notify(sc.key)
	}
	return Usage{Used: max(c.v.Settled+ub, 0), Limit: c.v.Limit, UsedInodes: max(c.v.SettledInodes+un, 0), LimitInodes: c.v.LimitInodes}
}

func (sc *scope) clusterFolderUsage(f *folder) Usage {
	c := sc.cl
	ub, un := f.unsettled()
	fs := c.folderSet[f.id]
	return Usage{Used: max(fs.Bytes+ub, 0), Limit: c.v.Limit, UsedInodes: max(fs.Inodes+un, 0), LimitInodes: c.v.LimitInodes}
}

// ---- calls of the cluster client ----

func (m *Manager) clScope(s ScopeKey) (*scope, error) {
	if m.opts.Grants == nil {
		return nil, fmt.Errorf("%w: the ledger is not in cluster mode", ErrInvalid)
	}
	if m.closed.Load() {
		return nil, ErrClosed
	}
	return m.lookup(s, true)
}

// Clustered reports whether the ledger runs in cluster mode (Options.Grants
// set): callers then pass what they see of objects another node may have
// changed (DirRef.Size, ReserveXattr's current, PrepareRemoveSize).
func (m *Manager) Clustered() bool { return m.opts.Grants != nil }

// FreezeGrants stops (true) or restarts growth beyond nothing in every
// scope with a limit: the client freezes grants while its lease is not
// confirmed, since the others may then take its grants back.
func (m *Manager) FreezeGrants(frozen bool) { m.clFrozen.Store(frozen) }

// ClusterScopes lists the scopes with something to settle or register.
func (m *Manager) ClusterScopes() []ScopeKey {
	var out []ScopeKey
	for _, s := range m.Scopes() {
		sc, _ := m.lookup(s, false)
		if sc == nil || sc.cl == nil {
			continue
		}
		sc.mu.Lock()
		ub, un := sc.unsettled()
		c := sc.cl
		if ub != 0 || un != 0 || len(c.regs) > 0 || len(c.removed) > 0 || c.pending != nil {
			out = append(out, s)
		}
		sc.mu.Unlock()
	}
	return out
}

// SetView gives the Manager the client's view of a scope (limits, settled
// figures, this node's grant). A view older than the last one is ignored.
// folders, when not nil, are the settled figures of the scope's folders
// that changed.
func (m *Manager) SetView(s ScopeKey, v ClusterView, folders map[string]FolderSet) error {
	sc, err := m.clScope(s)
	if err != nil {
		return err
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	sc.setViewLocked(v, folders)
	return nil
}

func (sc *scope) setViewLocked(v ClusterView, folders map[string]FolderSet) {
	c := sc.cl
	if c.known && v.Rev <= c.v.Rev {
		// Not newer: the same revision may come again through the watch,
		// and the grant in it may be one a Withhold has cut since.
		return
	}
	c.v, c.known = v, true
	for id, fs := range folders {
		c.folderSet[id] = fs
	}
}

// FolderUnsettled returns what the node changed in a folder and has not
// settled (net).
func (m *Manager) FolderUnsettled(s ScopeKey, folderID string) (int64, int64) {
	sc, _ := m.lookup(s, false)
	if sc == nil || sc.cl == nil {
		return 0, 0
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	f := sc.folders[folderID]
	if f == nil {
		return 0, 0
	}
	return f.unsettled()
}

// Grown returns the node's own growth in scope s since Open (bytes,
// inodes): the client sizes its grant requests by its rate.
func (m *Manager) Grown(s ScopeKey) (int64, int64) {
	sc, _ := m.lookup(s, false)
	if sc == nil || sc.cl == nil {
		return 0, 0
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return sc.cl.grownB, sc.cl.grownN
}

// Withhold takes up to bytes and inodes of the node's room out of its
// grant in the view and returns what it took: room the client gives back
// to the cluster, which the node can no longer spend meanwhile.
func (m *Manager) Withhold(s ScopeKey, bytes, inodes int64) (int64, int64) {
	sc, _ := m.lookup(s, false)
	if sc == nil || sc.cl == nil {
		return 0, 0
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	c := sc.cl
	if !c.known {
		return 0, 0
	}
	ub, un := sc.unsettledGrowth()
	b := min(bytes, max(c.v.Grant-ub, 0))
	n := min(inodes, max(c.v.GrantInodes-un, 0))
	c.v.Grant -= b
	c.v.GrantInodes -= n
	return b, n
}

// View returns the Manager's view of a scope and the node's unsettled
// growth (what its room and figure count).
func (m *Manager) View(s ScopeKey) (v ClusterView, known bool, ub, un int64) {
	sc, _ := m.lookup(s, false)
	if sc == nil || sc.cl == nil {
		return ClusterView{}, false, 0, 0
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	ub, un = sc.unsettledGrowth()
	return sc.cl.v, sc.cl.known, ub, un
}

// HoldRef is a write hold the client registers in the cluster.
type HoldRef struct {
	Folder string
	Ino    InodeKey
	Hint   string // path in the folder, "" if unknown
	View   int64  // the charge the node accounts for the inode at registration
	in     *inode
}

// TakeHolds returns up to n holds waiting for registration; the client
// reports each batch with HoldsDone.
func (m *Manager) TakeHolds(s ScopeKey, n int) []HoldRef {
	sc, _ := m.lookup(s, false)
	if sc == nil || sc.cl == nil {
		return nil
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	c := sc.cl
	var out []HoldRef
	i := 0
	for ; i < len(c.regQ) && len(out) < n; i++ {
		in := c.regQ[i]
		if in.cl == nil || in.cl.reg != regPending || in.f.dropped {
			continue
		}
		in.cl.reg = regFlight
		out = append(out, HoldRef{Folder: in.f.id, Ino: in.key, Hint: in.hint, View: in.cl.view, in: in})
	}
	c.regQ = append(c.regQ[:0], c.regQ[i:]...)
	return out
}

// HoldsDone reports the registration of holds taken with TakeHolds: ok,
// they are registered; else they wait for the next try.
func (m *Manager) HoldsDone(s ScopeKey, refs []HoldRef, ok bool) {
	sc, _ := m.lookup(s, false)
	if sc == nil || sc.cl == nil {
		return
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	for _, r := range refs {
		in := r.in
		if in.cl == nil || in.cl.reg != regFlight {
			continue
		}
		if ok {
			in.cl.reg = regDone
		} else {
			in.cl.reg = regPending
			sc.cl.regQ = append(sc.cl.regQ, in)
		}
	}
}

// Quiet reports whether the node has left an inode alone since a
// snapshot: no hold, no operation in flight, and its operation counter
// still ops. The client checks it after looking at the inode on storage,
// so that what it saw holds no change of this node it has not settled
// (a change in flight is visible as a hold: PrepareRemove and
// OpenForWrite take one before the storage call).
func (m *Manager) Quiet(s ScopeKey, folderID string, ino InodeKey, ops uint64) bool {
	sc, _ := m.lookup(s, false)
	if sc == nil {
		return true
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	f := sc.folders[folderID]
	if f == nil {
		return true
	}
	in := f.inodes[ino]
	if in == nil {
		return true // not in memory: idle since before any snapshot that named it
	}
	return in.writers == 0 && in.outstanding == 0 && in.ops == ops
}

// Idle reports whether the node has nothing unsettled on an inode: no
// hold, no operation in flight, no registration, no removal credit.
func (m *Manager) Idle(s ScopeKey, folderID string, ino InodeKey) bool {
	sc, _ := m.lookup(s, false)
	if sc == nil || sc.cl == nil {
		return true
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	for _, r := range sc.cl.removed {
		if r.Folder == folderID && r.Ino == ino {
			return false
		}
	}
	f := sc.folders[folderID]
	if f == nil {
		return true
	}
	in := f.inodes[ino]
	return in == nil || (in.writers == 0 && in.outstanding == 0 && (in.cl == nil || in.cl.reg == regNone))
}

// PendingHolds reports whether holds wait for registration or are being
// registered.
func (m *Manager) PendingHolds(s ScopeKey) bool {
	sc, _ := m.lookup(s, false)
	if sc == nil || sc.cl == nil {
		return false
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	for in := range sc.cl.regs {
		if in.cl != nil && (in.cl.reg == regPending || in.cl.reg == regFlight) {
			return true
		}
	}
	return false
}

// FolderDelta is a change of a folder's figure.
type FolderDelta struct {
	Folder        string
	Bytes, Inodes int64
}

// HoldDelta is a registered hold in a settlement.
type HoldDelta struct {
	Folder string
	Ino    InodeKey
	Hint   string
	View   int64  // what the cluster accounts for this node now (its registration's view)
	Bytes  int64  // charge now minus View: what this settlement adds
	Exists bool   // the inode has a record
	Held   bool   // held for writing or an operation in flight: the registration stays
	Close  bool   // set by the client: the registration ends with this settlement
	Ops    uint64 // the inode's operation counter at the snapshot (see Quiet)
	in     *inode
}

// RemovedCredit is an own removal of an inode the node had not registered.
type RemovedCredit struct {
	id            uint64
	Folder        string
	Ino           InodeKey
	Bytes, Inodes int64  // negative
	Ops           uint64 // the inode's operation counter after the removal (see Quiet)
}

// JournalEntry is an inode changed while a cluster check journals, with
// the figure the cluster held for it before the change (see StartJournal).
type JournalEntry struct {
	Folder        string
	Ino           InodeKey
	Bytes, Inodes int64
}

// Unsettled is what the node has not settled in a scope.
type Unsettled struct {
	Seq     uint64        // the last settlement applied
	Loose   []FolderDelta // per folder, what is not in Holds or Removed
	Holds   []HoldDelta   // registered holds with a change, or no longer held
	Removed []RemovedCredit
	Bytes   int64 // the node's whole unsettled change (holds waiting for registration included)
	Inodes  int64
	// Growth, GrowthInodes: the growth in this snapshot and earlier ones
	// not yet settled; what settling it takes off the node's grant.
	Growth, GrowthInodes int64
}

// Unsettled takes a snapshot of what the node has not settled in s.
// Changes of holds still waiting for registration stay out of it until
// they are registered.
func (m *Manager) Unsettled(s ScopeKey) (Unsettled, error) {
	sc, err := m.clScope(s)
	if err != nil {
		return Unsettled{}, err
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return sc.unsettledLocked(), nil
}

func (sc *scope) unsettledLocked() Unsettled {
	c := sc.cl
	u := Unsettled{Seq: c.seq}
	u.Bytes, u.Inodes = sc.unsettled()
	// This snapshot's growth stays in room until its last batch is applied.
	c.snapB, c.snapN, c.growB, c.growN = c.snapB+c.growB, c.snapN+c.growN, 0, 0
	u.Growth, u.GrowthInodes = c.snapB, c.snapN
	held := map[*folder][2]int64{}
	for in := range c.regs {
		if in.f.dropped || in.cl == nil {
			delete(c.regs, in)
			continue
		}
		d := in.charged - in.cl.view
		if in.cl.reg != regDone {
			x := held[in.f]
			x[0] += d
			held[in.f] = x
			continue
		}
		h := in.writers > 0 || in.outstanding > 0
		if d == 0 && h {
			continue
		}
		x := held[in.f]
		x[0] += d
		held[in.f] = x
		u.Holds = append(u.Holds, HoldDelta{Folder: in.f.id, Ino: in.key, Hint: in.hint, View: in.cl.view, Bytes: d, Exists: in.exists, Held: h, Ops: in.ops, in: in})
	}
	for _, r := range c.removed {
		f := sc.folders[r.Folder]
		if f == nil {
			continue
		}
		x := held[f]
		x[0] += r.Bytes
		x[1] += r.Inodes
		held[f] = x
		u.Removed = append(u.Removed, r)
	}
	for id, f := range sc.folders {
		if f.dropped {
			continue
		}
		b, n := f.unsettled()
		x := held[f]
		b -= x[0]
		n -= x[1]
		if b != 0 || n != 0 {
			u.Loose = append(u.Loose, FolderDelta{Folder: id, Bytes: b, Inodes: n})
		}
	}
	sort.Slice(u.Loose, func(i, j int) bool { return u.Loose[i].Folder < u.Loose[j].Folder })
	return u
}

// Batch is one settlement transaction's share of an Unsettled.
type Batch struct {
	Seq uint64
	// Last: the last batch of its Unsettled; once applied, the growth of
	// the snapshot no longer counts in room.
	Last    bool
	Loose   []FolderDelta
	Holds   []HoldDelta
	Removed []RemovedCredit
}

// Folders sums the batch per folder: what it settles.
func (b *Batch) Folders() []FolderDelta {
	sum := map[string]*FolderDelta{}
	var out []FolderDelta
	add := func(id string, db, dn int64) {
		d := sum[id]
		if d == nil {
			out = append(out, FolderDelta{Folder: id})
			d = &out[len(out)-1]
			sum[id] = d
		}
		d.Bytes += db
		d.Inodes += dn
	}
	for _, d := range b.Loose {
		add(d.Folder, d.Bytes, d.Inodes)
	}
	for _, h := range b.Holds {
		add(h.Folder, h.Bytes, 0)
	}
	for _, r := range b.Removed {
		add(r.Folder, r.Bytes, r.Inodes)
	}
	res := make([]FolderDelta, len(out))
	copy(res, out)
	sort.Slice(res, func(i, j int) bool { return res[i].Folder < res[j].Folder })
	return res
}

// Persisted settlement state, in the same database under "q/g":
//
//	q/ga/<scope><folder>   adoption committed with the folder's records: bytes, inodes
//	q/gs/<scope><folder>   settled own figure of the folder: JSON settledState
//	q/gp/<scope>           a settlement sent and not yet known applied: JSON pendingSettle
const (
	prefAdopt   = "q/ga/"
	prefSettled = "q/gs/"
	prefPending = "q/gp/"
)

type settledState struct {
	Seq    uint64 `json:"seq"`
	Bytes  int64  `json:"b"`
	Inodes int64  `json:"i"`
}

type pendingSettle struct {
	Seq     uint64        `json:"seq"`
	Folders []FolderDelta `json:"f"`
}

// PrepareSettle makes the batch's intent durable, together with every
// ledger change made so far (a Flush), before the client sends it: after a
// crash ResolvePending applies it or drops it by the sequence number the
// cluster holds for this node.
func (m *Manager) PrepareSettle(s ScopeKey, b *Batch) error {
	sc, err := m.clScope(s)
	if err != nil {
		return err
	}
	p := &pendingSettle{Seq: b.Seq, Folders: b.Folders()}
	v, err := json.Marshal(p)
	if err != nil {
		return err
	}
	if err := m.db.Update(func(txn *badger.Txn) error { return txn.Set(cat(prefPending, sc.enc, nil), v) }); err != nil {
		return fmt.Errorf("quota: store pending settlement: %w", err)
	}
	sc.mu.Lock()
	sc.cl.pending = p
	sc.mu.Unlock()
	return m.Flush()
}

// ApplySettle records that the cluster applied the batch (its sequence
// number is the node's in the cluster now) and gives the view that
// resulted. A hold marked Close ends its registration unless the inode is
// held again; then it is registered anew.
func (m *Manager) ApplySettle(s ScopeKey, b *Batch, v ClusterView, folders map[string]FolderSet) error {
	sc, err := m.clScope(s)
	if err != nil {
		return err
	}
	sc.mu.Lock()
	c := sc.cl
	sums := b.Folders()
	type rec struct {
		enc []byte
		st  settledState
	}
	var recs []rec
	for _, d := range sums {
		f := sc.folders[d.Folder]
		if f == nil || f.dropped {
			continue
		}
		fc := f.clf()
		fc.sOwnB += d.Bytes
		fc.sOwnN += d.Inodes
		c.sOwnB += d.Bytes
		c.sOwnN += d.Inodes
		recs = append(recs, rec{f.enc, settledState{Seq: b.Seq, Bytes: fc.sOwnB, Inodes: fc.sOwnN}})
	}
	for _, h := range b.Holds {
		in := h.in
		if in == nil || in.cl == nil {
			continue
		}
		in.cl.view += h.Bytes
		if h.Close {
			if in.writers > 0 || in.outstanding > 0 {
				in.cl.reg = regNone
				sc.clusterHold(in)
			} else {
				in.cl.reg = regNone
				delete(c.regs, in)
				sc.clTidy(in)
				if in.evictable() {
					sc.touch(in)
				}
			}
		}
	}
	if len(b.Removed) > 0 {
		done := map[uint64]bool{}
		for _, r := range b.Removed {
			done[r.id] = true
		}
		keep := c.removed[:0]
		for _, r := range c.removed {
			if !done[r.id] {
				keep = append(keep, r)
			}
		}
		c.removed = keep
	}
	c.seq = max(c.seq, b.Seq)
	c.pending = nil
	if b.Last {
		c.snapB, c.snapN = 0, 0
	}
	sc.setViewLocked(v, folders)
	sc.mu.Unlock()
	err = m.db.Update(func(txn *badger.Txn) error {
		for _, r := range recs {
			val, _ := json.Marshal(r.st)
			if err := txn.Set(cat(prefSettled, sc.enc, r.enc), val); err != nil {
				return err
			}
		}
		return txn.Delete(cat(prefPending, sc.enc, nil))
	})
	if err != nil {
		return fmt.Errorf("quota: store settled figures: %w", err)
	}
	return nil
}

// Pending returns the sequence number of a settlement prepared and not
// known applied (0: none).
func (m *Manager) Pending(s ScopeKey) uint64 {
	sc, _ := m.lookup(s, false)
	if sc == nil || sc.cl == nil {
		return 0
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.cl.pending == nil {
		return 0
	}
	return sc.cl.pending.Seq
}

// ResolvePending settles the fate of a prepared settlement once the client
// knows the node's sequence number in the cluster (seq): applied when seq
// reached it, else dropped. It also makes seq the node's last one.
func (m *Manager) ResolvePending(s ScopeKey, seq uint64) error {
	sc, err := m.clScope(s)
	if err != nil {
		return err
	}
	sc.mu.Lock()
	c := sc.cl
	defer func() {
		if !c.growInit {
			// After a restart the growth the ledger recovered is unsettled:
			// as much of it as the net change counts in room.
			sc.mu.Lock()
			ub, un := sc.unsettled()
			c.growB, c.growN, c.growInit = max(ub, 0), max(un, 0), true
			sc.mu.Unlock()
		}
	}()
	p := c.pending
	if p == nil {
		c.seq = max(c.seq, seq)
		sc.mu.Unlock()
		return nil
	}
	b := &Batch{Seq: p.Seq, Loose: p.Folders}
	if p.Seq > seq {
		c.pending = nil
		c.seq = max(c.seq, seq)
		sc.mu.Unlock()
		return m.db.Update(func(txn *badger.Txn) error { return txn.Delete(cat(prefPending, sc.enc, nil)) })
	}
	v := c.v
	sc.mu.Unlock()
	return m.ApplySettle(s, b, v, nil)
}

// RestoreHold tells a restarted node about a registration its previous
// run left in the cluster, with the view the cluster accounts for it.
// The next settlement settles what changed since and ends it.
func (m *Manager) RestoreHold(s ScopeKey, folderID string, ino InodeKey, view int64) error {
	sc, in, err := m.enterInode(s, folderID, ino, false)
	if err != nil {
		return err
	}
	defer sc.mu.Unlock()
	if sc.cl == nil {
		return fmt.Errorf("%w: the ledger is not in cluster mode", ErrInvalid)
	}
	ic := in.cli()
	ic.reg = regDone
	ic.view = view
	sc.cl.regs[in] = struct{}{}
	return nil
}

// Disown tells a restarted node that a survivor settled, while it was
// gone, what it had changed in an inode since view: the node's change
// since view counts as settled. Call it before the node settles anything.
func (m *Manager) Disown(s ScopeKey, folderID string, ino InodeKey, view int64) error {
	sc, in, err := m.enterInode(s, folderID, ino, false)
	if err != nil {
		return err
	}
	if sc.cl == nil {
		sc.mu.Unlock()
		return fmt.Errorf("%w: the ledger is not in cluster mode", ErrInvalid)
	}
	d := in.charged - view
	f := in.f
	fc := f.clf()
	fc.sOwnB += d
	sc.cl.sOwnB += d
	if in.cl != nil && in.cl.reg != regNone {
		in.cl.reg = regNone
		delete(sc.cl.regs, in)
		if in.writers > 0 {
			sc.clusterHold(in)
		}
		sc.clTidy(in)
	}
	st := settledState{Seq: sc.cl.seq, Bytes: fc.sOwnB, Inodes: fc.sOwnN}
	sc.after(in)
	sc.mu.Unlock()
	val, _ := json.Marshal(st)
	return m.db.Update(func(txn *badger.Txn) error { return txn.Set(cat(prefSettled, sc.enc, f.enc), val) })
}

// StartJournal starts a cluster check's journal in scope s and returns,
// taken at the same instant, what the node has not settled: once the
// client has settled all of it (and settles nothing more of the scope
// until StopJournal), the cluster's figure of every inode the journal
// does not name is what the node last settled for it, and the journal
// names every inode the node changed since, with that figure (its base).
// Holds still waiting for registration are named at once: their changes
// are not in the snapshot. epoch != 0 names the check; a second call
// starts the journal again.
func (m *Manager) StartJournal(s ScopeKey, epoch uint32) (Unsettled, error) {
	sc, err := m.clScope(s)
	if err != nil {
		return Unsettled{}, err
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	c := sc.cl
	sc.stopJournalLocked()
	u := sc.unsettledLocked()
	c.jEpoch = epoch
	c.journal = map[*inode]struct{}{}
	c.jOverflow = map[string]bool{}
	for in := range c.regs {
		if in.cl != nil && (in.cl.reg == regPending || in.cl.reg == regFlight) && !in.f.dropped {
			sc.clJournalAdd(in, in.cl.view, inodesOf(in.exists, in.kind))
		}
	}
	return u, nil
}

// Journal returns the journal of the running check: the inodes changed
// since StartJournal with their bases, and the folders with more changed
// inodes than the journal keeps.
func (m *Manager) Journal(s ScopeKey) (entries []JournalEntry, overflow []string) {
	sc, _ := m.lookup(s, false)
	if sc == nil || sc.cl == nil {
		return nil, nil
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	c := sc.cl
	for in := range c.journal {
		entries = append(entries, JournalEntry{Folder: in.f.id, Ino: in.key, Bytes: in.cl.jBaseB, Inodes: in.cl.jBaseN})
	}
	for id := range c.jOverflow {
		overflow = append(overflow, id)
	}
	return entries, overflow
}

// StopJournal ends the journal StartJournal began.
func (m *Manager) StopJournal(s ScopeKey) {
	sc, _ := m.lookup(s, false)
	if sc == nil || sc.cl == nil {
		return
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	sc.stopJournalLocked()
}

func (sc *scope) stopJournalLocked() {
	c := sc.cl
	j := c.journal
	c.jEpoch, c.journal, c.jOverflow = 0, nil, nil
	for in := range j {
		if in.cl != nil {
			in.cl.jEpoch = 0
		}
		sc.clTidy(in)
		sc.after(in)
	}
}

// loadCluster reads the persisted cluster state (Open, before recovery).
func (m *Manager) loadCluster() error {
	folderOf := func(s ScopeKey, id string) (*scope, *folder) {
		sc := m.scopeLocked(s)
		f := sc.folders[id]
		if f == nil {
			f = sc.newFolder(id)
			m.folderIdx[id] = f
		}
		return sc, f
	}
	return m.db.View(func(txn *badger.Txn) error {
		each := func(prefix string, fn func(rest []byte, v []byte) error) error {
			opt := badger.DefaultIteratorOptions
			opt.Prefix = []byte(prefix)
			it := txn.NewIterator(opt)
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				item := it.Item()
				v, err := item.ValueCopy(nil)
				if err != nil {
					return err
				}
				if err := fn(item.Key()[len(prefix):], v); err != nil {
					m.log.Warn().Err(err).Str("key", fmt.Sprintf("%q", item.Key())).Msg("quota: skipping unreadable cluster record")
				}
			}
			return nil
		}
		scopeFolder := func(rest []byte) (ScopeKey, string, error) {
			s, rest, err := decScope(rest)
			if err != nil {
				return s, "", err
			}
			id, rest, err := decFolder(rest)
			if err == nil && len(rest) != 0 {
				err = fmt.Errorf("%w: trailing bytes", errCorrupt)
			}
			return s, id, err
		}
		err := each(prefAdopt, func(rest, v []byte) error {
			s, id, err := scopeFolder(rest)
			if err != nil {
				return err
			}
			b, n, err := decPair(v)
			if err != nil {
				return err
			}
			sc, f := folderOf(s, id)
			fc := f.clf()
			fc.adB, fc.adN, fc.pAdB, fc.pAdN = b, n, b, n
			sc.cl.adB += b
			sc.cl.adN += n
			return nil
		})
		if err != nil {
			return err
		}
		err = each(prefSettled, func(rest, v []byte) error {
			s, id, err := scopeFolder(rest)
			if err != nil {
				return err
			}
			var st settledState
			if err := json.Unmarshal(v, &st); err != nil {
				return err
			}
			sc, f := folderOf(s, id)
			fc := f.clf()
			fc.sOwnB, fc.sOwnN = st.Bytes, st.Inodes
			sc.cl.sOwnB += st.Bytes
			sc.cl.sOwnN += st.Inodes
			sc.cl.seq = max(sc.cl.seq, st.Seq)
			return nil
		})
		if err != nil {
			return err
		}
		return each(prefPending, func(rest, v []byte) error {
			s, tail, err := decScope(rest)
			if err != nil {
				return err
			}
			if len(tail) != 0 {
				return fmt.Errorf("%w: trailing bytes", errCorrupt)
			}
			var p pendingSettle
			if err := json.Unmarshal(v, &p); err != nil {
				return err
			}
			sc := m.scopeLocked(s)
			sc.cl.pending = &p
			return nil
		})
	})
}

// PrepareRemoveSize is PrepareRemove with the victim's kind and size as
// the caller observed them (its fstat before the removal). In cluster
// mode a victim the ledger does not know, or knows with another size while
// no hold of this node is on it, is first adopted at that size, so that
// the removal credits the size at removal: removals are charged against
// the size they remove, whoever made it. xattrs, when not nil, reads the
// victim's user.* attribute bytes (UserXattrBytes); it is called only
// when the victim is adopted, with the scope locked. Without a cluster it
// is PrepareRemove.
func (m *Manager) PrepareRemoveSize(s ScopeKey, folderID string, ino InodeKey, kind Kind, size int64, xattrs func() int64, hint string) (Removal, error) {
	if m.opts.Grants != nil && kind.valid() && size >= 0 {
		sc, in, err := m.enterInode(s, folderID, ino, false)
		if err != nil {
			return Removal{}, err
		}
		if in.outstanding == 0 && in.writers == 0 && (!in.exists || in.kind != kind || (kind != KindOther && in.size != size)) {
			sc.observe(in, func() {
				in.ops++
				sc.setExists(in, true, kind, size)
				if xattrs != nil {
					in.xattr = max(xattrs(), 0)
					sc.recharge(in)
				}
			})
		}
		sc.after(in)
		sc.mu.Unlock()
	}
	return m.PrepareRemove(s, folderID, ino, hint)
}

// ---- storage helpers for the cluster client ----

// StatInode looks an inode up below a folder root: by its path hint
// first, else by a walk of the folder. charge is what the ledger charges
// for it (chargeOf its kind and size, plus its user.* xattr bytes; the
// folder root is KindRoot). found is false when a complete walk did not
// find it; err when it could not be looked for.
func StatInode(root *os.File, hint string, ino InodeKey) (kind Kind, charge int64, found bool, err error) {
	fd, rootDev, err := rootOf(root)
	if err != nil {
		return 0, 0, false, err
	}
	defer unix.Close(fd)
	var o object
	if err := inspectFd(fd, &o); err != nil {
		return 0, 0, false, err
	}
	if MakeKey(rootDev, o.st.Dev, o.st.Ino) == ino {
		return KindRoot, o.total(), true, nil
	}
	if hint != "" && inspectHint(fd, hint, &o) == nil && MakeKey(rootDev, o.st.Dev, o.st.Ino) == ino {
		return o.kind, o.total(), true, nil
	}
	var hit *object
	var herr error
	errFound := errors.New("found")
	w := newWalker(context.Background(), func(dirfd int, parent, name string, s *unix.Stat_t) error {
		if MakeKey(rootDev, s.Dev, s.Ino) == ino {
			var c object
			if herr = inspectAt(fd, parent, name, &c); herr == nil {
				hit = &c
			}
			return errFound
		}
		return nil
	})
	werr := w.run(fd)
	if hit != nil {
		return hit.kind, hit.total(), true, nil
	}
	if herr != nil && !isGone(herr) {
		return 0, 0, false, herr
	}
	if werr != nil && !errors.Is(werr, errFound) {
		return 0, 0, false, werr
	}
	if w.incomplete || herr != nil {
		return 0, 0, false, fmt.Errorf("quota: folder walk incomplete: %v", w.errs)
	}
	return 0, 0, false, nil
}

// WalkEntry is one object a WalkFolder found.
type WalkEntry struct {
	Path          string
	Ino           InodeKey
	Kind          Kind
	Bytes, Inodes int64 // what the object is charged: chargeOf(kind, size) + user.* xattr bytes; 1 (0 for the root)
}

// WalkFolder visits the folder root and every object below it once (hard
// links once), through directory descriptors only, as Check does, with
// what the ledger charges for each. complete is false when some directory
// or object could not be read.
func WalkFolder(ctx context.Context, root *os.File, fn func(WalkEntry) error) (complete bool, err error) {
	fd, rootDev, err := rootOf(root)
	if err != nil {
		return false, err
	}
	defer unix.Close(fd)
	var ro object
	if err := inspectFd(fd, &ro); err != nil {
		return false, err
	}
	if err := fn(WalkEntry{Ino: MakeKey(rootDev, ro.st.Dev, ro.st.Ino), Kind: KindRoot, Bytes: ro.total()}); err != nil {
		return false, err
	}
	multi := map[InodeKey]struct{}{}
	xfail := false
	w := newWalker(ctx, func(dirfd int, parent, name string, st *unix.Stat_t) error {
		k := MakeKey(rootDev, st.Dev, st.Ino)
		kind := KindOf(st.Mode)
		if kind != KindDir && st.Nlink > 1 {
			if _, dup := multi[k]; dup {
				return nil
			}
			multi[k] = struct{}{}
		}
		bytes := chargeOf(kind, st.Size)
		if kindHasXattrs(kind) {
			x, err := xattrBytesAt(dirfd, name)
			if err != nil {
				if !isGone(err) {
					xfail = true
				}
				return nil
			}
			bytes += x
		}
		return fn(WalkEntry{Path: join(parent, name), Ino: k, Kind: kind, Bytes: bytes, Inodes: 1})
	})
	werr := w.run(fd)
	return werr == nil && !w.incomplete && !xfail, werr
}
