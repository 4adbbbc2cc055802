package quota

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"
	"github.com/rs/zerolog"
)

// Manager keeps the usage of every quota scope. See the package comment.
type Manager struct {
	db      *badger.DB
	log     zerolog.Logger
	opts    Options
	unclean bool
	epoch   uint64
	seq     atomic.Uint64 // create intent ids within the epoch

	mu        sync.RWMutex // guards scopes and folderIdx; taken after a scope's mu, never before
	scopes    map[ScopeKey]*scope
	folderIdx map[string]*folder

	limitsMu sync.Mutex // serializes SetLimit

	clFrozen atomic.Bool // cluster: grants frozen while the lease is unconfirmed (cluster.go)

	marks *markTable // marks not yet in the store (see marks.go)

	space atomic.Int32 // a StoreSpace (SetStoreSpace)

	closed   atomic.Bool
	closeMu  sync.Mutex
	closeErr error

	// commit loop
	dirtyMu     sync.Mutex
	dirtyScopes []*scope
	kick        chan struct{} // something is queued
	hurry       chan struct{} // somebody waits for durability
	urgent      atomic.Int32
	// undeferring > 0: a Flush or the final commit wants every record
	// current, also the deferred sizes of files held open (sizeDeferred).
	undeferring atomic.Int32
	roundMu     sync.Mutex
	round       *round
	reqs        chan func()
	stop        chan struct{}
	loopDone    chan struct{}
	commitObs   atomic.Pointer[CommitObserver] // metrics (observe.go)

	// hook, when set (tests), runs with the scope's lock held after every
	// change of the scope's counters.
	hook func(sc *scope)
	// roundHook, when set (tests), runs in the commit loop after a
	// round's writes are committed, before (settled false) and after
	// (settled true) its slots are settled.
	roundHook func(settled bool)
}

// round is one commit of the commit loop; done is closed when its writes
// are durable (or failed with err).
type round struct {
	done chan struct{}
	err  error
}

type scope struct {
	m   *Manager
	key ScopeKey
	enc []byte

	checkMu sync.Mutex // one Check of the scope at a time

	mu          sync.Mutex
	limitBytes  int64
	limitInodes int64
	used        int64 // bytes charged in memory: records, grants in flight, pending creates
	count       int64 // inodes, likewise
	folders     map[string]*folder
	dirty       []*inode  // inodes to write or evict
	dirtyF      []*folder // folders with counter corrections
	intentQ     []*intent // create intents to write or delete
	queued      bool      // on m.dirtyScopes
	evictGen    uint64    // bumped on every eviction (see getInode)

	cl *clScope // cluster: state of cluster mode (cluster.go); nil on one node
}

type folder struct {
	id     string
	enc    []byte
	sc     *scope
	inodes map[InodeKey]*inode

	used, count   int64 // in memory, like scope.used
	pUsed, pCount int64 // the persisted counter record; changed only by the commit loop

	corrUsed, corrCount int64 // counter corrections (Check) for the next commit
	corrQueued          bool
	dropped             bool
	creating            int       // inode reservations not yet committed or cancelled
	stale               []*intent // intents of an earlier process recovery could not settle

	cl *clFolder // cluster: adoption and settled figures (cluster.go)
}

// inode is the in-memory state of one charged object. Present for every
// inode that is open for writing, has an operation in flight, changed
// since the last commit, or could not be verified after a crash; all
// others live only in the store and are loaded on demand.
type inode struct {
	key InodeKey
	f   *folder

	exists  bool  // has a charge record (counted as one inode)
	kind    Kind  // valid when exists
	size    int64 // settled size: the file's logical size (symlink: target length)
	charged int64 // bytes this inode adds to the counters right now

	// the current episode: from the first outstanding reservation until
	// the last one is done
	outstanding int32
	sizeOps     int32 // outstanding reservations that may change the size
	hi          int64 // highest grant in the episode
	rep         int64 // highest size reported in the episode, -1 none
	unknown     bool  // an operation of the episode reported no size

	writers    int32 // write holds (OpenForWrite, PrepareRemove)
	pins       int32 // Check keeps it in memory
	unverified bool  // dirty after a crash, size not yet confirmed
	unlinked   bool  // last link gone while still held: release when idle
	ops        uint64
	gen        uint64 // bumped when a new object takes this inode number (Commit)
	hint       string
	intents    []uint64 // create intents to delete with the next write of this record

	// user.* extended attributes and exclusive operations (charge.go)
	xattr int64         // settled: sum of len(name)+len(value) of its user.* attributes
	xhi   int64         // while an attribute change is in flight: xattr plus its grant
	xch   int64         // the part of charged that is xattrs
	excl  bool          // a directory or attribute change holds the inode
	wake  chan struct{} // closed when excl is released; nil without waiters

	queued, flushing bool
	fMark            bool  // mark value the in-flight commit writes
	slot             int32 // 1 + slot of a mark in the mark table, 0 none

	// persisted state, changed only by the commit loop
	pExists bool
	pKind   Kind
	pSize   int64 // the whole charge: data and xattrs
	pX      int64 // the xattr part of pSize
	pMark   bool
	pHint   string

	cl *clInode // cluster: registration, adoption, journal (cluster.go)
}

// loadRecord sets the in-memory and persisted state of an inode read from
// its record: kind, data bytes, xattr bytes.
func (in *inode) loadRecord(kind Kind, size, x int64) {
	in.exists, in.kind, in.size, in.xattr = true, kind, size, x
	in.charged, in.xch = size+x, x
	in.pExists, in.pKind, in.pSize, in.pX = true, kind, size+x, x
}

type intent struct {
	id      uint64
	f       *folder
	kind    Kind
	bytes   int64
	hint    string
	want    bool // the record should exist
	persist bool // the record exists in the store
	queued  bool
}

func (in *inode) markWanted() bool {
	return in.writers > 0 || in.sizeOps > 0 || in.unverified || in.excl
}

// markReady: a dirty mark is in the mark table, or the store holds one
// and no commit in flight removes it.
func (in *inode) markReady() bool {
	return in.slot > 0 || in.storeMarked()
}

func (in *inode) storeMarked() bool {
	return in.pMark && (!in.flushing || in.fMark)
}

func (in *inode) needsFlush() bool {
	if in.f.dropped {
		return false
	}
	if in.exists != in.pExists || len(in.intents) > 0 {
		return true
	}
	if in.exists && (in.xch != in.pX || in.kind != in.pKind) {
		return true
	}
	if in.exists && in.charged != in.pSize && !in.sizeDeferred() {
		return true
	}
	if in.cl != nil && (in.cl.padB != 0 || in.cl.padN != 0) {
		return true // cluster: an adoption to commit (cluster.go)
	}
	w := in.markWanted()
	return w != in.pMark || (w && in.hint != in.pHint)
}

// sizeDeferred: the record of a file held for writing need not follow its
// size while the store holds its dirty mark. Recovery sets the record of
// a marked inode to the file's size on storage whatever the record says,
// and the hold's release writes the final size in the transaction that
// removes the mark; so a stream of appends to an open file commits
// nothing between its first growth and its release. The in-memory
// charge, which every limit check uses, stays exact on every write.
// Cluster scopes commit every change (their settlements follow the
// records).
func (in *inode) sizeDeferred() bool {
	return in.writers > 0 && in.kind == KindFile && in.storeMarked() && in.f.sc.cl == nil &&
		in.f.sc.m.undeferring.Load() == 0
}

// undefer queues every record whose size was deferred, for a Flush or the
// final commit; m.undeferring is raised, so they count as changed until
// it is lowered again.
func (m *Manager) undefer() {
	m.mu.RLock()
	scopes := make([]*scope, 0, len(m.scopes))
	for _, sc := range m.scopes {
		scopes = append(scopes, sc)
	}
	m.mu.RUnlock()
	for _, sc := range scopes {
		sc.mu.Lock()
		for _, f := range sc.folders {
			for _, in := range f.inodes {
				if in.writers > 0 && in.needsFlush() {
					sc.touch(in)
				}
			}
		}
		sc.mu.Unlock()
	}
}

func (in *inode) idle() bool {
	return in.outstanding == 0 && in.writers == 0 && in.pins == 0 && !in.unverified && !in.excl
}

func (in *inode) evictable() bool {
	return in.idle() && !in.queued && !in.flushing && !in.pMark && in.slot == 0 && (in.f.dropped || !in.needsFlush()) &&
		in.cl == nil // cluster: state kept until settled (cluster.go)
}

// chargeNow is what the inode's data (file size, directory size, symlink
// target) should add to the counters; its xattrs come on top (xattrNow).
func (in *inode) chargeNow() int64 {
	if !in.exists {
		return 0
	}
	c := chargeOf(in.kind, in.size)
	if in.outstanding > 0 {
		c = max(c, in.hi, in.rep)
	}
	return c
}

// xattrNow is what the inode's user.* attributes should add to the
// counters: the settled figure, or the grant of a change in flight.
func (in *inode) xattrNow() int64 {
	if !in.exists {
		return 0
	}
	return max(in.xattr, in.xhi)
}

// recharge brings the counters in line with the inode's state.
func (sc *scope) recharge(in *inode) {
	x := in.xattrNow()
	c := in.chargeNow() + x
	in.xch = x
	if d := c - in.charged; d != 0 {
		in.charged = c
		in.f.used += d
		sc.used += d
		if sc.cl != nil {
			sc.clChange(in, d, 0) // cluster: growth not yet settled, check journal (cluster.go)
		}
	}
}

// inodesOf is how many inodes a record of this state counts.
func inodesOf(exists bool, kind Kind) int64 {
	if !exists {
		return 0
	}
	return kind.inodes()
}

// setExists creates or removes the inode's charge record in memory. A
// new object, or one of another kind under the same number, starts with
// no xattrs.
func (sc *scope) setExists(in *inode, exists bool, kind Kind, size int64) {
	if d := inodesOf(exists, kind) - inodesOf(in.exists, in.kind); d != 0 {
		in.f.count += d
		sc.count += d
		if sc.cl != nil {
			sc.clChange(in, 0, d) // cluster: growth not yet settled, check journal (cluster.go)
		}
	}
	if !exists || !in.exists || in.kind != kind {
		in.xattr = 0
	}
	in.exists = exists
	in.unlinked = false
	if exists {
		in.kind = kind
		in.size = size
		if kind == KindOther {
			in.size = 0
		}
	} else {
		in.size = 0
	}
	sc.recharge(in)
}

// remove drops the inode's charge (its last link is gone).
func (sc *scope) remove(in *inode) {
	if sc.cl != nil {
		sc.clRemove(in) // cluster: a removal credit to settle (cluster.go)
	}
	in.ops++
	sc.setExists(in, false, 0, 0)
}

// after queues the inode for the commit loop when it has something to
// write or can be evicted, and runs the test hook.
func (sc *scope) after(in *inode) {
	if in.needsFlush() || in.evictable() || in.slot > 0 {
		sc.touch(in)
	}
	if h := sc.m.hook; h != nil {
		h(sc)
	}
}

func (sc *scope) touch(in *inode) {
	if in.queued {
		return
	}
	in.queued = true
	sc.dirty = append(sc.dirty, in)
	sc.enqueue()
}

func (sc *scope) enqueue() {
	if sc.queued {
		return
	}
	sc.queued = true
	m := sc.m
	m.dirtyMu.Lock()
	m.dirtyScopes = append(m.dirtyScopes, sc)
	m.dirtyMu.Unlock()
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// avail is how many bytes may still be granted.
func (sc *scope) avail() int64 {
	if sc.m.space.Load() != int32(SpaceOK) {
		return 0 // the store's disk has no room for growth (noRoom)
	}
	if sc.cl != nil {
		return sc.clusterAvail() // cluster: the node's grant (cluster.go)
	}
	if sc.limitBytes <= 0 {
		return math.MaxInt64
	}
	if sc.used >= sc.limitBytes {
		return 0
	}
	return sc.limitBytes - sc.used
}

// noRoom is the error of growth that avail refused.
func (sc *scope) noRoom() error {
	if sc.m.space.Load() != int32(SpaceOK) {
		return errStoreShort
	}
	return errNoBytes
}

// SetStoreSpace tells the ledger how short of space its store's disk is
// (see StoreSpace); the daemon's state disk guard calls it on every
// change. Refused operations fail with ErrStoreFull and change nothing.
func (m *Manager) SetStoreSpace(s StoreSpace) { m.space.Store(int32(s)) }

// spaceErr refuses an operation that writes a ledger record while the
// store's disk is critically short.
func (m *Manager) spaceErr() error {
	if m.space.Load() == int32(SpaceCritical) {
		return errStoreCritical
	}
	return nil
}

// lookup returns the scope's state, creating it when create is set.
func (m *Manager) lookup(s ScopeKey, create bool) (*scope, error) {
	m.mu.RLock()
	sc := m.scopes[s]
	m.mu.RUnlock()
	if sc != nil || !create {
		return sc, nil
	}
	if err := s.validate(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.scopeLocked(s), nil
}

// scopeLocked returns or creates a scope; m.mu held exclusively.
func (m *Manager) scopeLocked(s ScopeKey) *scope {
	if sc := m.scopes[s]; sc != nil {
		return sc
	}
	sc := &scope{m: m, key: s, enc: encScope(s), folders: map[string]*folder{}}
	if m.opts.Grants != nil {
		sc.clScopeInit() // cluster mode (cluster.go)
	}
	m.scopes[s] = sc
	return sc
}

// folder returns the folder's state, creating it; sc.mu held.
func (sc *scope) folder(id string) (*folder, error) {
	if f := sc.folders[id]; f != nil {
		return f, nil
	}
	if err := validFolderID(id); err != nil {
		return nil, err
	}
	f := sc.newFolder(id)
	sc.m.mu.Lock()
	sc.m.folderIdx[id] = f
	sc.m.mu.Unlock()
	return f, nil
}

func (sc *scope) newFolder(id string) *folder {
	f := &folder{id: id, enc: encFolder(id), sc: sc, inodes: map[InodeKey]*inode{}}
	sc.folders[id] = f
	return f
}

// getInode returns the inode's in-memory state, loading its record from
// the store when it is not in memory. sc.mu is held; it is released while
// the store is read. An inode is evicted only after its latest state was
// committed, so a record read while the inode is absent is current unless
// an eviction happened meanwhile (evictGen), in which case it is read
// again.
func (sc *scope) getInode(f *folder, k InodeKey) (*inode, error) {
	for {
		if in := f.inodes[k]; in != nil {
			return in, nil
		}
		gen := sc.evictGen
		sc.mu.Unlock()
		kind, size, x, found, err := sc.m.readRecord(sc.enc, f.enc, k)
		sc.mu.Lock()
		if err != nil {
			return nil, err
		}
		if in := f.inodes[k]; in != nil {
			return in, nil
		}
		if sc.evictGen != gen {
			continue
		}
		in := &inode{key: k, f: f, rep: -1}
		if found {
			in.loadRecord(kind, size, x)
		}
		f.inodes[k] = in
		return in, nil
	}
}

func (sc *scope) evict(in *inode) {
	delete(in.f.inodes, in.key)
	sc.evictGen++
}

func (m *Manager) readRecord(sEnc, fEnc []byte, k InodeKey) (Kind, int64, int64, bool, error) {
	var kind Kind
	var size, x int64
	found := false
	err := m.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(keyInodeIn(prefInode, sEnc, fEnc, k))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			var derr error
			kind, size, x, derr = decInode(v)
			found = derr == nil
			if derr != nil {
				m.log.Warn().Err(derr).Uint64("ino", k.Ino).Msg("quota: ignoring unreadable inode record; run a check")
			}
			return nil
		})
	})
	if err != nil {
		return 0, 0, 0, false, fmt.Errorf("quota: read inode record: %w", err)
	}
	return kind, size, x, found, nil
}

// Open loads the ledger kept in db under "q/", settles what an earlier
// process left unsettled (see the package comment) and starts the commit
// loop. The Manager does not close db.
func Open(db *badger.DB, log zerolog.Logger, opts Options) (*Manager, error) {
	if db == nil {
		return nil, fmt.Errorf("%w: nil database", ErrInvalid)
	}
	opts.fill()
	m := &Manager{
		db:        db,
		log:       log.With().Str("component", "quota").Logger(),
		opts:      opts,
		scopes:    map[ScopeKey]*scope{},
		folderIdx: map[string]*folder{},
		kick:      make(chan struct{}, 1),
		hurry:     make(chan struct{}, 1),
		reqs:      make(chan func()),
		stop:      make(chan struct{}),
		loopDone:  make(chan struct{}),
		round:     &round{done: make(chan struct{})},
	}
	path := opts.MarkFile
	if path == "" && !db.Opts().InMemory {
		path = filepath.Join(db.Opts().Dir, defaultMarkFile)
	}
	marks, err := openMarkTable(path)
	if err != nil {
		return nil, err
	}
	m.marks = marks
	fail := func(err error) (*Manager, error) {
		marks.close()
		return nil, err
	}
	if err := m.openMarker(); err != nil {
		return fail(err)
	}
	// The unclean marker must be on disk before anything can change.
	if err := m.sync(); err != nil {
		return fail(err)
	}
	rec, err := m.load()
	if err != nil {
		return fail(err)
	}
	if opts.Grants != nil {
		// cluster: adoption and settled figures, before recovery changes
		// anything (cluster.go)
		if err := m.loadCluster(); err != nil {
			return fail(fmt.Errorf("quota: load cluster state: %w", err))
		}
	}
	m.recover(rec)
	if err := m.flushAll(); err != nil {
		return fail(fmt.Errorf("quota: write recovered ledger: %w", err))
	}
	if err := m.sync(); err != nil {
		return fail(err)
	}
	// What the table held is settled or marked in the store now.
	marks.clearAll()
	go m.loop()
	m.log.Debug().Bool("unclean", m.unclean).Uint64("epoch", m.epoch).Int("scopes", len(m.scopes)).Msg("quota ledger open")
	return m, nil
}

// sync flushes the database to disk. The commit loop's transactions are
// not synced one by one (unless the database was opened with SyncWrites):
// they are in the kernel's page cache when the commit returns, which a
// process's death cannot lose; what a power loss can lose is covered by
// the unclean marker, synced at Open. Limits, the markers and Flush are
// synced.
func (m *Manager) sync() error {
	if o := m.db.Opts(); o.InMemory || o.SyncWrites {
		return nil
	}
	if err := m.db.Sync(); err != nil {
		return fmt.Errorf("quota: sync ledger: %w", err)
	}
	return nil
}

// marker value: version, epoch, clean flag.
func (m *Manager) openMarker() error {
	return m.db.Update(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(keyOpen))
		switch {
		case errors.Is(err, badger.ErrKeyNotFound):
		case err != nil:
			return fmt.Errorf("quota: read open marker: %w", err)
		default:
			v, err := item.ValueCopy(nil)
			if err != nil {
				return fmt.Errorf("quota: read open marker: %w", err)
			}
			epoch, clean, derr := decMarker(v)
			if derr != nil {
				m.log.Warn().Err(derr).Msg("quota: unreadable open marker; treating the last shutdown as unclean")
				m.unclean = true
			} else {
				m.epoch = epoch
				m.unclean = !clean
			}
		}
		// A ledger written before the current format (the marker exists,
		// the format is older or missing) has directories and xattrs at
		// 0 bytes: the start counts as unclean, so the daemon checks and
		// repairs every scope.
		if m.epoch > 0 && !m.unclean {
			item, err := txn.Get([]byte(keyFormat))
			switch {
			case errors.Is(err, badger.ErrKeyNotFound):
				m.unclean = true
			case err != nil:
				return fmt.Errorf("quota: read ledger format: %w", err)
			default:
				v, err := item.ValueCopy(nil)
				if err != nil {
					return fmt.Errorf("quota: read ledger format: %w", err)
				}
				if len(v) != 1 || v[0] < formatVersion {
					m.unclean = true
				}
			}
			if m.unclean {
				m.log.Info().Int("format", formatVersion).Msg("quota: ledger of an older format; every scope will be checked")
			}
		}
		m.epoch++
		if err := txn.Set([]byte(keyFormat), []byte{formatVersion}); err != nil {
			return err
		}
		return txn.Set([]byte(keyOpen), encMarker(m.epoch, false))
	})
}

func encMarker(epoch uint64, clean bool) []byte {
	v := binary.AppendUvarint([]byte{recVersion}, epoch)
	if clean {
		return append(v, 1)
	}
	return append(v, 0)
}

func decMarker(v []byte) (uint64, bool, error) {
	if len(v) < 3 || v[0] != recVersion {
		return 0, false, errCorrupt
	}
	e, n := binary.Uvarint(v[1:])
	if n <= 0 || 1+n+1 != len(v) || v[1+n] > 1 {
		return 0, false, errCorrupt
	}
	return e, v[1+n] == 1, nil
}

// WasUnclean reports whether the previous process using this database did
// not Close the Manager (it crashed or was killed), or wrote the ledger in
// an older format (which did not charge directories and xattrs). Bytes
// are exact after recovery regardless; inode counts of objects removed in
// the last moments before the crash are not, so the daemon should run a
// Check with repair for each scope it uses.
func (m *Manager) WasUnclean() bool { return m.unclean }

// Close writes every pending change, marks the shutdown clean and stops
// the commit loop. Write holds still open stay marked dirty, so the next
// Open verifies those inodes. Calls after Close fail with ErrClosed (Done
// and the other release calls are accepted and kept in memory only).
func (m *Manager) Close() error {
	m.closeMu.Lock()
	defer m.closeMu.Unlock()
	if m.closed.Swap(true) {
		return m.closeErr
	}
	close(m.stop)
	<-m.loopDone
	if m.closeErr == nil {
		m.closeErr = m.db.Update(func(txn *badger.Txn) error {
			return txn.Set([]byte(keyOpen), encMarker(m.epoch, true))
		})
		if m.closeErr == nil {
			m.closeErr = m.sync()
		}
	}
	// Marks left in the table (a failed final write) stay for the next
	// Open to recover.
	if err := m.marks.close(); err != nil && m.closeErr == nil {
		m.closeErr = err
	}
	return m.closeErr
}

// SetLimit sets a scope's byte and inode limits (0 = unlimited). Lowering
// a limit below the usage blocks growth only.
func (m *Manager) SetLimit(s ScopeKey, bytes, inodes int64) error {
	if bytes < 0 || inodes < 0 {
		return fmt.Errorf("%w: negative limit", ErrInvalid)
	}
	if m.closed.Load() {
		return ErrClosed
	}
	sc, err := m.lookup(s, true)
	if err != nil {
		return err
	}
	m.limitsMu.Lock()
	defer m.limitsMu.Unlock()
	err = m.db.Update(func(txn *badger.Txn) error {
		k := keyLimits(sc.enc)
		if bytes == 0 && inodes == 0 {
			return txn.Delete(k)
		}
		return txn.Set(k, encLimits(bytes, inodes))
	})
	if err == nil {
		err = m.sync()
	}
	if err != nil {
		return fmt.Errorf("quota: store limits of %s: %w", s, err)
	}
	sc.mu.Lock()
	sc.limitBytes, sc.limitInodes = bytes, inodes
	sc.mu.Unlock()
	return nil
}

// Usage returns the scope's usage and limits. It takes one short lock.
func (m *Manager) Usage(s ScopeKey) Usage {
	sc, _ := m.lookup(s, false)
	if sc == nil && m.opts.Grants != nil {
		sc, _ = m.lookup(s, true) // cluster: the scope's figure is the cluster's (cluster.go)
	}
	if sc == nil {
		return Usage{}
	}
	sc.mu.Lock()
	u := Usage{Used: sc.used, Limit: sc.limitBytes, UsedInodes: sc.count, LimitInodes: sc.limitInodes}
	if sc.cl != nil {
		u = sc.clusterUsage() // cluster: the cluster-wide figure (cluster.go)
	}
	sc.mu.Unlock()
	return u
}

// FolderUsage returns one folder's usage; the limit fields are its scope's.
func (m *Manager) FolderUsage(folderID string) Usage {
	m.mu.RLock()
	f := m.folderIdx[folderID]
	m.mu.RUnlock()
	if f == nil {
		return Usage{}
	}
	sc := f.sc
	sc.mu.Lock()
	u := Usage{Used: f.used, Limit: sc.limitBytes, UsedInodes: f.count, LimitInodes: sc.limitInodes}
	if sc.cl != nil {
		u = sc.clusterFolderUsage(f) // cluster: the cluster-wide figure (cluster.go)
	}
	sc.mu.Unlock()
	return u
}

// Scopes lists the scopes the ledger knows.
func (m *Manager) Scopes() []ScopeKey {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]ScopeKey, 0, len(m.scopes))
	for k := range m.scopes {
		out = append(out, k)
	}
	return out
}

// Folders lists the folders of a scope the ledger knows.
func (m *Manager) Folders(s ScopeKey) []string {
	sc, _ := m.lookup(s, false)
	if sc == nil {
		return nil
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	out := make([]string, 0, len(sc.folders))
	for id, f := range sc.folders {
		if !f.dropped {
			out = append(out, id)
		}
	}
	return out
}
