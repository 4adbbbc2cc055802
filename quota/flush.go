package quota

import (
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// The commit loop is the only writer of inode records, dirty marks,
// intents and folder counters. Each round takes a snapshot of every queued
// change under the scopes' locks and writes it in as few transactions as
// the batch size allows. Every transaction writes the records it changes
// together with the folder counters adjusted by exactly the difference
// those records make, so the persisted counters always equal the sum of
// the persisted records, whatever instant the process dies at.

func (m *Manager) nextRound() *round {
	m.roundMu.Lock()
	defer m.roundMu.Unlock()
	return m.round
}

func (m *Manager) loop() {
	defer close(m.loopDone)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-m.stop:
			m.finish()
			return
		case fn := <-m.reqs:
			fn()
			continue
		case <-m.kick:
		case <-m.hurry:
		}
		if m.urgent.Load() == 0 {
			// Let changes gather unless somebody waits.
			timer.Reset(m.opts.FlushInterval)
			select {
			case <-timer.C:
			case <-m.hurry:
				timer.Stop()
			case <-m.stop:
				timer.Stop()
				m.finish()
				return
			}
		}
		if err := m.flushRound(); err != nil {
			m.log.Error().Err(err).Msg("quota: ledger write failed; retrying")
			select {
			case <-time.After(50 * time.Millisecond):
			case <-m.stop:
				m.finish()
				return
			}
		}
	}
}

// finish runs the final rounds at Close and fails every later wait.
func (m *Manager) finish() {
	m.undeferring.Add(1)
	m.undefer()
	var err error
	for range 3 {
		if err = m.flushRound(); err == nil && !m.hasDirty() {
			break
		}
	}
	if err != nil {
		m.closeErr = fmt.Errorf("quota: final ledger write: %w", err)
	}
	m.roundMu.Lock()
	rd := m.round
	rd.err = ErrClosed
	close(rd.done)
	m.round = &round{done: make(chan struct{}), err: ErrClosed}
	close(m.round.done)
	m.roundMu.Unlock()
}

func (m *Manager) hasDirty() bool {
	m.dirtyMu.Lock()
	defer m.dirtyMu.Unlock()
	return len(m.dirtyScopes) > 0
}

// Flush writes every change made so far and waits until it is durable.
func (m *Manager) Flush() error {
	if m.closed.Load() {
		return ErrClosed
	}
	m.urgent.Add(1)
	defer m.urgent.Add(-1)
	m.undeferring.Add(1)
	defer m.undeferring.Add(-1)
	m.undefer()
	// The round that is current now has not taken its snapshot yet (the
	// loop swaps it out before snapshotting), so it includes every change
	// made before this call.
	rd := m.nextRound()
	m.poke()
	<-rd.done
	if rd.err != nil {
		return rd.err
	}
	return m.sync()
}

func (m *Manager) poke() {
	select {
	case m.hurry <- struct{}{}:
	default:
	}
}

func (m *Manager) flushRound() error {
	m.roundMu.Lock()
	rd := m.round
	m.round = &round{done: make(chan struct{})}
	m.roundMu.Unlock()
	err := m.flush()
	rd.err = err
	close(rd.done)
	return err
}

// flushAll is used before the loop runs (Open).
func (m *Manager) flushAll() error {
	for range 3 {
		if err := m.flush(); err != nil {
			return err
		}
		if !m.hasDirty() {
			return nil
		}
	}
	return nil
}

// entry is the snapshot of one inode for a commit.
type entry struct {
	sc      *scope
	in      *inode
	exists  bool
	kind    Kind
	size    int64 // the whole charge
	x       int64 // its xattr part
	mark    bool
	hint    string
	intents []uint64
	ops     uint64 // the inode's operation counter at the snapshot
	// persisted state before the commit
	pExists bool
	pKind   Kind
	pSize   int64
	pX      int64
	pMark   bool
	pHint   string
	// cluster: adoption committed with this record (cluster.go)
	adB, adN int64
}

type itEntry struct {
	sc   *scope
	it   *intent
	want bool
}

type corrEntry struct {
	f      *folder
	du, dc int64
}

func (m *Manager) flush() error {
	m.dirtyMu.Lock()
	scopes := m.dirtyScopes
	m.dirtyScopes = nil
	m.dirtyMu.Unlock()
	if len(scopes) == 0 {
		return nil
	}
	var ents []entry
	var its []itEntry
	var corr []corrEntry
	for _, sc := range scopes {
		sc.mu.Lock()
		sc.queued = false
		for _, in := range sc.dirty {
			in.queued = false
			if in.f.dropped {
				continue
			}
			if !in.needsFlush() && in.slot == 0 {
				if in.evictable() {
					sc.evict(in)
				}
				continue
			}
			e := entry{sc: sc, in: in, exists: in.exists, kind: in.kind, size: in.charged, x: in.xch,
				mark: in.markWanted(), hint: in.hint, intents: in.intents, ops: in.ops,
				pExists: in.pExists, pKind: in.pKind, pSize: in.pSize, pX: in.pX, pMark: in.pMark, pHint: in.pHint}
			if !e.mark {
				e.hint = ""
			}
			in.intents = nil
			in.flushing = true
			in.fMark = e.mark
			if c := in.cl; c != nil {
				// cluster: the adoption goes with the record (cluster.go)
				e.adB, e.adN = c.padB, c.padN
				c.fadB, c.fadN, c.padB, c.padN = c.fadB+c.padB, c.fadN+c.padN, 0, 0
			}
			ents = append(ents, e)
		}
		clear(sc.dirty)
		sc.dirty = sc.dirty[:0]
		for _, it := range sc.intentQ {
			it.queued = false
			if !it.f.dropped && it.want != it.persist {
				its = append(its, itEntry{sc: sc, it: it, want: it.want})
			}
		}
		clear(sc.intentQ)
		sc.intentQ = sc.intentQ[:0]
		for _, f := range sc.dirtyF {
			f.corrQueued = false
			if !f.dropped && (f.corrUsed != 0 || f.corrCount != 0) {
				corr = append(corr, corrEntry{f: f, du: f.corrUsed, dc: f.corrCount})
				f.corrUsed, f.corrCount = 0, 0
			}
		}
		clear(sc.dirtyF)
		sc.dirtyF = sc.dirtyF[:0]
		sc.mu.Unlock()
	}
	// Intents and corrections ride with the first chunk.
	for i := 0; i < len(ents) || i == 0; i += m.opts.MaxBatch {
		chunk := ents[i:min(i+m.opts.MaxBatch, len(ents))]
		var cits []itEntry
		var ccorr []corrEntry
		if i == 0 {
			cits, ccorr = its, corr
		}
		if len(chunk) == 0 && len(cits) == 0 && len(ccorr) == 0 {
			break
		}
		n, err := m.commitChunk(chunk, cits, ccorr)
		if err != nil {
			if n > 0 {
				cits, ccorr = nil, nil
			}
			m.requeue(ents[i+n:], cits, ccorr)
			m.settleRound(ents[:i+n], false)
			return err
		}
	}
	if h := m.roundHook; h != nil {
		h(false)
	}
	m.settleRound(ents, true)
	if h := m.roundHook; h != nil {
		h(true)
	}
	return nil
}

// settleRound clears the mark-table slots of the inodes of a round once
// all of it is committed (ok), and evicts what became idle. A slot is
// cleared only then, not with its own inode's chunk: a directory's slot
// stands for the entries created in it (recovery scans a marked
// directory for objects without a record), whose records may be in a
// later chunk of the same round. For the same reason a slot whose mark is
// not in the store is kept when an operation used the inode after the
// round's snapshot: that operation relied on the slot, and what it
// created is in a later round. Such a slot, and after a failed round
// every slot, stays, and its inode is queued again.
func (m *Manager) settleRound(ents []entry, ok bool) {
	var cur *scope
	for i := range ents {
		e := &ents[i]
		if cur != e.sc {
			if cur != nil {
				cur.mu.Unlock()
			}
			cur = e.sc
			cur.mu.Lock()
		}
		in := e.in
		if ok && (in.ops == e.ops || in.storeMarked()) {
			cur.settleSlot(in)
		}
		if in.evictable() {
			cur.evict(in)
		} else if !in.queued && (in.needsFlush() || in.slot > 0) {
			cur.touch(in)
		}
	}
	if cur != nil {
		cur.mu.Unlock()
	}
}

// commitChunk writes ents in one transaction, splitting it when badger
// finds it too big, applies the new persisted state in memory and returns
// how many entries were committed. its and corr go with the first part.
func (m *Manager) commitChunk(ents []entry, its []itEntry, corr []corrEntry) (int, error) {
	t := time.Now()
	err := m.writeChunk(ents, its, corr)
	if err == nil {
		m.observeCommit(time.Since(t), len(ents))
	}
	if errors.Is(err, badger.ErrTxnTooBig) && len(ents) > 1 {
		h := len(ents) / 2
		n, err := m.commitChunk(ents[:h], its, corr)
		if err != nil {
			return n, err
		}
		n2, err := m.commitChunk(ents[h:], nil, nil)
		return h + n2, err
	}
	if err != nil {
		return 0, err
	}
	m.apply(ents, its, corr)
	return len(ents), nil
}

type fdelta struct{ du, dc, ab, an int64 }

func (m *Manager) writeChunk(ents []entry, its []itEntry, corr []corrEntry) error {
	txn := m.db.NewTransaction(true)
	defer txn.Discard()
	deltas := map[*folder]*fdelta{}
	fd := func(f *folder) *fdelta {
		d := deltas[f]
		if d == nil {
			d = &fdelta{}
			deltas[f] = d
		}
		return d
	}
	for i := range ents {
		e := &ents[i]
		f := e.in.f
		sEnc, fEnc := e.sc.enc, f.enc
		if e.exists {
			if !e.pExists || e.kind != e.pKind || e.size != e.pSize || e.x != e.pX {
				if err := txn.Set(keyInodeIn(prefInode, sEnc, fEnc, e.in.key), encInode(e.kind, e.size-e.x, e.x)); err != nil {
					return err
				}
			}
		} else if e.pExists {
			if err := txn.Delete(keyInodeIn(prefInode, sEnc, fEnc, e.in.key)); err != nil {
				return err
			}
		}
		if e.mark {
			if !e.pMark || e.hint != e.pHint {
				if err := txn.Set(keyInodeIn(prefDirty, sEnc, fEnc, e.in.key), encMark(e.hint)); err != nil {
					return err
				}
			}
		} else if e.pMark {
			if err := txn.Delete(keyInodeIn(prefDirty, sEnc, fEnc, e.in.key)); err != nil {
				return err
			}
		}
		for _, id := range e.intents {
			if err := txn.Delete(keyIntent(sEnc, fEnc, id)); err != nil {
				return err
			}
		}
		var now, was int64
		if e.exists {
			now = e.size
		}
		if e.pExists {
			was = e.pSize
		}
		if dc := inodesOf(e.exists, e.kind) - inodesOf(e.pExists, e.pKind); now != was || dc != 0 {
			d := fd(f)
			d.du += now - was
			d.dc += dc
		}
		if e.adB != 0 || e.adN != 0 {
			d := fd(f)
			d.ab += e.adB
			d.an += e.adN
		}
	}
	for _, x := range its {
		k := keyIntent(x.sc.enc, x.it.f.enc, x.it.id)
		var err error
		if x.want {
			err = txn.Set(k, encIntent(x.it.kind, x.it.bytes, x.it.hint))
		} else {
			err = txn.Delete(k)
		}
		if err != nil {
			return err
		}
	}
	for _, c := range corr {
		d := fd(c.f)
		d.du += c.du
		d.dc += c.dc
		if c.f.sc.cl != nil {
			// cluster: counter corrections are observations (cluster.go)
			d.ab += c.du
			d.an += c.dc
		}
	}
	for f, d := range deltas {
		// pUsed and pCount are only written by this goroutine.
		if d.du != 0 || d.dc != 0 || (d.ab == 0 && d.an == 0) {
			if err := txn.Set(keyFolder(f.sc.enc, f.enc), encCounter(f.pUsed+d.du, f.pCount+d.dc)); err != nil {
				return err
			}
		}
		if d.ab != 0 || d.an != 0 {
			// cluster: pAdB/pAdN are only written by this goroutine too.
			fc := f.clf()
			if err := txn.Set(cat(prefAdopt, f.sc.enc, f.enc), encPair(fc.pAdB+d.ab, fc.pAdN+d.an)); err != nil {
				return err
			}
		}
	}
	return txn.Commit()
}

// apply records a committed chunk as the persisted state (settleRound
// then clears slots and evicts).
func (m *Manager) apply(ents []entry, its []itEntry, corr []corrEntry) {
	deltas := map[*folder]fdelta{}
	for i := range ents {
		e := &ents[i]
		var now, was int64
		if e.exists {
			now = e.size
		}
		if e.pExists {
			was = e.pSize
		}
		d := deltas[e.in.f]
		d.du += now - was
		d.dc += inodesOf(e.exists, e.kind) - inodesOf(e.pExists, e.pKind)
		d.ab += e.adB
		d.an += e.adN
		deltas[e.in.f] = d
	}
	for _, c := range corr {
		d := deltas[c.f]
		d.du += c.du
		d.dc += c.dc
		if c.f.sc.cl != nil {
			d.ab += c.du
			d.an += c.dc
		}
		deltas[c.f] = d
	}
	lock := func(sc *scope, cur **scope) {
		if *cur != sc {
			if *cur != nil {
				(*cur).mu.Unlock()
			}
			sc.mu.Lock()
			*cur = sc
		}
	}
	var cur *scope
	for i := range ents {
		e := &ents[i]
		lock(e.sc, &cur)
		in := e.in
		in.pExists, in.pKind, in.pSize, in.pX, in.pMark, in.pHint = e.exists, e.kind, e.size, e.x, e.mark, e.hint
		in.flushing = false
		if c := in.cl; c != nil {
			// cluster: the adoption is committed (cluster.go)
			c.fadB -= e.adB
			c.fadN -= e.adN
			e.sc.clTidy(in)
		}
	}
	for _, x := range its {
		lock(x.sc, &cur)
		x.it.persist = x.want
	}
	for f, d := range deltas {
		lock(f.sc, &cur)
		f.pUsed += d.du
		f.pCount += d.dc
		if d.ab != 0 || d.an != 0 {
			fc := f.clf()
			fc.pAdB += d.ab
			fc.pAdN += d.an
		}
	}
	if cur != nil {
		cur.mu.Unlock()
	}
}

// requeue puts back what a failed commit did not write.
func (m *Manager) requeue(ents []entry, its []itEntry, corr []corrEntry) {
	for i := range ents {
		e := &ents[i]
		e.sc.mu.Lock()
		e.in.flushing = false
		if c := e.in.cl; c != nil {
			// cluster: the adoption waits for the next commit (cluster.go)
			c.fadB, c.fadN = c.fadB-e.adB, c.fadN-e.adN
			c.padB, c.padN = c.padB+e.adB, c.padN+e.adN
		}
		e.in.intents = append(e.intents, e.in.intents...)
		e.sc.touch(e.in)
		e.sc.mu.Unlock()
	}
	for _, x := range its {
		x.sc.mu.Lock()
		x.sc.queueIntent(x.it)
		x.sc.mu.Unlock()
	}
	for _, c := range corr {
		sc := c.f.sc
		sc.mu.Lock()
		c.f.corrUsed += c.du
		c.f.corrCount += c.dc
		sc.queueFolder(c.f)
		sc.mu.Unlock()
	}
}

func (sc *scope) queueFolder(f *folder) {
	if !f.corrQueued {
		f.corrQueued = true
		sc.dirtyF = append(sc.dirtyF, f)
	}
	sc.enqueue()
}

// DropFolder removes a folder and every record of it from the ledger, for
// when the folder is purged from storage. It fails with ErrBusy while any
// of its files is held or has an operation in flight.
func (m *Manager) DropFolder(s ScopeKey, folderID string) error {
	if m.closed.Load() {
		return ErrClosed
	}
	sc, err := m.lookup(s, false)
	if err != nil || sc == nil {
		return err
	}
	sc.mu.Lock()
	f := sc.folders[folderID]
	if f == nil {
		sc.mu.Unlock()
		return nil
	}
	for _, in := range f.inodes {
		if in.writers > 0 || in.outstanding > 0 || in.pins > 0 || in.excl {
			sc.mu.Unlock()
			return fmt.Errorf("quota: drop folder %s: %w", folderID, ErrBusy)
		}
	}
	f.dropped = true
	delete(sc.folders, folderID)
	sc.used -= f.used
	sc.count -= f.count
	if sc.cl != nil && f.cl != nil {
		// cluster: the folder's unsettled changes go with it (cluster.go)
		sc.cl.adB -= f.cl.adB
		sc.cl.adN -= f.cl.adN
		sc.cl.sOwnB -= f.cl.sOwnB
		sc.cl.sOwnN -= f.cl.sOwnN
	}
	sc.mu.Unlock()
	m.mu.Lock()
	if m.folderIdx[folderID] == f {
		delete(m.folderIdx, folderID)
	}
	m.mu.Unlock()
	errc := make(chan error, 1)
	select {
	case m.reqs <- func() { errc <- m.dropPersisted(sc, f) }:
		return <-errc
	case <-m.loopDone:
		return ErrClosed
	}
}

// dropPersisted deletes a dropped folder's keys in chunks, keeping its
// counter equal to the records that remain. Runs in the commit loop.
func (m *Manager) dropPersisted(sc *scope, f *folder) error {
	for _, p := range []string{prefIntent, prefDirty, prefInode, prefAdopt, prefSettled} { // cluster: q/ga, q/gs (cluster.go)
		prefix := cat(p, sc.enc, f.enc)
		for {
			var keys [][]byte
			var du, dc int64
			err := m.db.View(func(txn *badger.Txn) error {
				opt := badger.DefaultIteratorOptions
				opt.Prefix = prefix
				opt.PrefetchValues = p == prefInode
				it := txn.NewIterator(opt)
				defer it.Close()
				for it.Rewind(); it.Valid() && len(keys) < m.opts.MaxBatch; it.Next() {
					item := it.Item()
					keys = append(keys, item.KeyCopy(nil))
					if p == prefInode {
						_ = item.Value(func(v []byte) error {
							if kind, size, x, err := decInode(v); err == nil {
								du += size + x
								dc += kind.inodes()
							} else {
								dc++
							}
							return nil
						})
					}
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("quota: drop folder %s: %w", f.id, err)
			}
			if len(keys) == 0 {
				break
			}
			txn := m.db.NewTransaction(true)
			for _, k := range keys {
				if err := txn.Delete(k); err != nil {
					txn.Discard()
					return fmt.Errorf("quota: drop folder %s: %w", f.id, err)
				}
			}
			if p == prefInode {
				if err := txn.Set(keyFolder(sc.enc, f.enc), encCounter(f.pUsed-du, f.pCount-dc)); err != nil {
					txn.Discard()
					return fmt.Errorf("quota: drop folder %s: %w", f.id, err)
				}
			}
			if err := txn.Commit(); err != nil {
				return fmt.Errorf("quota: drop folder %s: %w", f.id, err)
			}
			f.pUsed -= du
			f.pCount -= dc
		}
	}
	if err := m.db.Update(func(txn *badger.Txn) error { return txn.Delete(keyFolder(sc.enc, f.enc)) }); err != nil {
		return fmt.Errorf("quota: drop folder %s: %w", f.id, err)
	}
	return m.sync()
}
