package grants

import (
	"errors"
	"io/fs"
	"math"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vfolder/vfolder/quota"
)

// Settlement: sizing of grant requests, the settlement round, its
// transactions, hold registration and the sweep.

// unit is the size of a grant request far from the limit: what the node
// writes in RefillPeriod at its current rate, within MinUnit..MaxUnit.
func (w *worker) unit() int64 {
	u := int64(w.rate * w.c.cfg.RefillPeriod.Seconds())
	return min(max(u, w.c.cfg.MinUnit), w.c.cfg.MaxUnit)
}

func (w *worker) unitN() int64 {
	u := int64(w.rateN * w.c.cfg.RefillPeriod.Seconds())
	return min(max(u, 64), 1<<16)
}

// sample updates the node's write rate (growth) in the scope.
func (w *worker) sample(now time.Time) {
	own, ownN := w.c.manager().Grown(w.s)
	if w.lastSample.IsZero() {
		w.lastSample, w.lastOwn, w.lastOwnN = now, own, ownN
		return
	}
	dt := now.Sub(w.lastSample).Seconds()
	if dt < 0.05 {
		return
	}
	r := float64(max(own-w.lastOwn, 0)) / dt
	rn := float64(max(ownN-w.lastOwnN, 0)) / dt
	w.rate = 0.5*w.rate + 0.5*r
	w.rateN = 0.5*w.rateN + 0.5*rn
	if own > w.lastOwn || ownN > w.lastOwnN {
		w.lastGrowth = now
	}
	w.lastSample, w.lastOwn, w.lastOwnN = now, own, ownN
}

// desired is how much to ask for: far from the limit a unit (what the
// node writes in RefillPeriod), never more than half the pool's fair
// share among active nodes, so requests shrink as the scope fills; when
// another node waits for room, only what is needed.
func (w *worker) desired(need, pool, unit int64, nr *record, inodes bool, now time.Time) int64 {
	if pool <= 0 {
		return 0
	}
	me := w.c.cfg.Node
	active := int64(1)
	for n, s := range nr.Nodes {
		if n != me && (s.Grant > 0 || s.GrantInodes > 0 || s.Want > 0 || s.WantInodes > 0) {
			active++
		}
	}
	var a int64
	if nr.othersWant(me, now) {
		a = need
	} else {
		a = max(need, min(unit, pool/(2*active)))
	}
	return min(max(a, 0), pool)
}

// intent is what one settlement round does besides settling.
type intent struct {
	needB, needN int64 // room waiters miss
	bg, bgN      bool  // background refill
	retB, retN   int64 // withheld room to give back
	noTake       bool  // only ask when all of needB can be had
	noTakeN      bool
	keepWant     bool // leave the share's Want as it is
	// growth of the round's snapshot, and what the round's earlier
	// batches applied of the node's own change
	growth, growthN int64
	prevB, prevN    int64
	answerRecall    bool
	clearWant       bool
}

func (w *worker) waiterNeeds() (b, n int64, any, cut bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, wt := range w.waiters {
		if wt.over {
			continue
		}
		any = true
		cut = cut || !wt.need.Exact
		b = max(b, wt.need.Bytes)
		n = max(n, wt.need.Inodes)
	}
	return
}

// settle is one round: settle what the node changed, ask for room, give
// idle room back, answer recalls and checks, as due.
func (w *worker) settle(final bool) error {
	c, m := w.c, w.c.manager()
	now := time.Now()
	chk := w.check.epoch != 0 && w.check.t1 && w.check.sent < w.check.phase
	if w.check.epoch != 0 && !w.check.t1 {
		// A cluster check begins: settle everything up to the journal's
		// start, in full, then nothing more until it ends.
		u, err := m.StartJournal(w.s, w.check.epoch)
		if err != nil {
			return err
		}
		if len(split(u)) > 0 {
			if err := w.transact(u, intent{}, now); err != nil {
				return err
			}
		}
		w.check.t1 = true
		chk = true
	}
	if chk {
		if err := w.answer(); err != nil {
			return err
		}
	}
	u, err := m.Unsettled(w.s)
	if err != nil {
		return err
	}
	if w.check.epoch != 0 {
		u.Loose, u.Holds, u.Removed = nil, nil, nil
	}
	v, _, ub, un := m.View(w.s)
	w.sample(now)
	rec := w.rec
	if rec == nil {
		rec = &record{}
	}
	me := c.cfg.Node
	sh := rec.Nodes[me]
	var grant, grantN int64
	var answered uint64
	if sh != nil {
		grant, grantN, answered = sh.Grant, sh.GrantInodes, sh.Answered
	}
	roomB, roomN := v.Grant-ub, v.GrantInodes-un
	wb, wn, waiting, cut := w.waiterNeeds()
	othersWant := rec.othersWant(me, now)
	pb, pn := rec.pool()
	// Refill in the background only for a node that writes now; an idle
	// one gives its room back.
	if d := w.demand.Load(); d != 0 && time.Unix(0, d).After(w.lastGrowth) {
		w.lastGrowth = time.Unix(0, d)
	}
	active := !w.lastGrowth.IsZero() && now.Sub(w.lastGrowth) < 2*c.cfg.RefillPeriod
	idle := !waiting && now.After(w.protect) && (w.lastGrowth.IsZero() || now.Sub(w.lastGrowth) > c.cfg.IdleReturn)
	var in intent
	if !final && rec.Limit > 0 {
		if waiting && wb > roomB {
			in.needB = wb - roomB
			// All-or-nothing operations take room only when they can have
			// all they need: partial room they cannot use would sit idle
			// while writers elsewhere give up.
			in.noTake = !cut && roomB+pb < wb
		} else if roomB < v.Low && pb > 0 && !othersWant && active {
			in.bg = true
		}
	}
	if !final && rec.LimitInodes > 0 {
		if waiting && wn > roomN {
			in.needN = wn - roomN
			in.noTakeN = roomN+pn < wn
		} else if roomN < v.LowInodes && pn > 0 && !othersWant && active {
			in.bgN = true
		}
	}
	in.answerRecall = othersWant && answered < rec.Recall && now.After(w.protect)
	ret := final || in.answerRecall || idle
	if ret && (grant > 0 || grantN > 0) {
		in.retB, in.retN = m.Withhold(w.s, math.MaxInt64, math.MaxInt64)
	}
	if rec.Limit <= 0 && grant > 0 {
		in.retB = grant // a grant is of no use without a limit
	}
	if rec.LimitInodes <= 0 && grantN > 0 {
		in.retN = grantN
	}
	in.clearWant = w.wantSet && in.needB <= 0 && in.needN <= 0
	if (in.needB > 0 || in.needN > 0) && w.wantSet && sh != nil && sh.WantUntil > now.Add(c.cfg.Wait/2).UnixMilli() &&
		(in.needB <= 0 || pb <= 0 || in.noTake && pb < in.needB) && (in.needN <= 0 || pn <= 0 || in.noTakeN && pn < in.needN) {
		// Waiting already, and nothing to take: the watch brings the news
		// (room given back) without rewriting the record.
		in.needB, in.needN = 0, 0
		in.clearWant = false
		in.keepWant = true
	}
	changes := len(u.Loose) > 0 || len(u.Holds) > 0 || len(u.Removed) > 0
	due := changes && (final || now.Sub(w.lastSettle) >= c.cfg.SettleInterval || in.needB > 0 || in.needN > 0 || in.answerRecall)
	act := due || in.needB > 0 || in.needN > 0 || in.bg || in.bgN || in.retB > 0 || in.retN > 0 || in.answerRecall || in.clearWant
	if !act {
		return nil
	}
	if !due {
		u.Loose, u.Holds, u.Removed = nil, nil, nil
	}
	if e := c.log.Debug(); e.Enabled() {
		e.Bool("due", due).Int64("needB", in.needB).Bool("bg", in.bg).Int64("retB", in.retB).Bool("recall", in.answerRecall).Bool("clearWant", in.clearWant).
			Int64("grant", grant).Int64("room", roomB).Int64("low", v.Low).Int64("pool", pb).Msg("grants: round")
	}
	err = w.transact(u, in, now)
	if err == nil && (in.needB > 0 || in.needN > 0 || in.keepWant) {
		w.mu.Lock()
		for _, wt := range w.waiters {
			wt.asked = true
		}
		w.mu.Unlock()
	}
	return err
}

// split cuts an Unsettled into batches of at most batchItems items.
func split(u quota.Unsettled) []*quota.Batch {
	var out []*quota.Batch
	cur := &quota.Batch{}
	n := 0
	next := func() {
		if n >= batchItems {
			out = append(out, cur)
			cur, n = &quota.Batch{}, 0
		}
	}
	for _, d := range u.Loose {
		next()
		cur.Loose = append(cur.Loose, d)
		n++
	}
	for _, h := range u.Holds {
		next()
		cur.Holds = append(cur.Holds, h)
		n++
	}
	for _, r := range u.Removed {
		next()
		cur.Removed = append(cur.Removed, r)
		n++
	}
	if n > 0 {
		out = append(out, cur)
	}
	return out
}

func (w *worker) transact(u quota.Unsettled, in intent, now time.Time) error {
	c, m := w.c, w.c.manager()
	batches := split(u)
	if len(batches) == 0 {
		batches = []*quota.Batch{nil}
	}
	in.growth, in.growthN = u.Growth, u.GrowthInodes
	var prevB, prevN int64
	for i, b := range batches {
		last := i == len(batches)-1
		bi := intent{}
		if last {
			bi = in
			bi.prevB, bi.prevN = prevB, prevN
		} else {
			bi.retB, bi.retN = in.retB, in.retN
			in.retB, in.retN = 0, 0
		}
		if b != nil {
			b.Seq, b.Last = w.seq()+1, last
			if err := m.PrepareSettle(w.s, b); err != nil {
				return err
			}
		}
		done := false
		for attempt := 0; attempt < 8 && !done; attempt++ {
			p, err := w.plan(b, bi, u, last, now)
			if err != nil {
				return err
			}
			resp, err := c.txnFull(c.ctx, p.cmps, p.ops, p.els)
			w.txns.Add(1)
			if last && (bi.needB > 0 || bi.needN > 0 || bi.bg || bi.bgN) {
				w.asks.Add(1)
			}
			if err != nil {
				if b != nil {
					w.inflight = b
				}
				w.stale = true
				return err
			}
			if !resp.Succeeded {
				w.fails.Add(1)
				before := w.rev
				w.absorbElse(resp, p)
				if e := c.log.Debug(); e.Enabled() {
					e.Int64("rev", before).Int64("now", w.rev).Int("cmps", len(p.cmps)).Int("attempt", attempt).Bool("batch", b != nil).Msg("grants: settlement conflict")
				}
				continue
			}
			if err := w.commit(p, resp.Header.Revision, now); err != nil {
				return err
			}
			prevB += p.ownB
			prevN += p.ownN
			done = true
		}
		if !done {
			return errConflict
		}
	}
	return nil
}

func (w *worker) seq() uint64 {
	if w.rec != nil {
		if sh := w.rec.Nodes[w.c.cfg.Node]; sh != nil {
			return sh.Seq
		}
	}
	return 0
}

// plan is one transaction: its compares, operations and what it changes.
type plan struct {
	b         *quota.Batch
	rec       *record
	cmps      []clientv3.Cmp
	ops       []clientv3.Op
	els       []clientv3.Op
	holds     map[string]*holdRec // new hold records; nil: deleted
	folders   map[string]figure   // new folder figures
	ownB      int64               // the node's own change this transaction applies
	ownN      int64
	newMember bool
}

func (w *worker) holdRecFor(p *plan, key string) (*holdRec, bool) {
	if hr, ok := p.holds[key]; ok {
		return hr, hr != nil
	}
	hc := w.holds[key]
	if hc == nil || hc.rec == nil {
		return nil, false
	}
	hr := hc.rec.clone()
	p.holds[key] = hr
	return hr, true
}

func (w *worker) cmpHold(p *plan, key string, seen map[string]bool) {
	if seen[key] {
		return
	}
	seen[key] = true
	var rev int64
	if hc := w.holds[key]; hc != nil {
		rev = hc.rev
	}
	p.cmps = append(p.cmps, clientv3.Compare(clientv3.ModRevision(key), "=", rev))
	p.els = append(p.els, clientv3.OpGet(key))
}

// inodeSize is what the ledger charges for an inode as storage holds it
// now (0 and !found: gone).
func (w *worker) inodeSize(folder string, ino quota.InodeKey, hint string) (size int64, found bool, err error) {
	root, err := w.c.cfg.OpenFolder(w.s, folder)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	defer root.Close()
	_, charge, found, err := quota.StatInode(root, hint, ino)
	if err != nil || !found {
		return 0, false, err
	}
	// What the ledger charges: data (files, symlinks, directories) and
	// user.* xattr bytes.
	return charge, true, nil
}

var errNotQuiet = errors.New("the inode changed on this node since the snapshot")

// resolve ends a contested hold record whose last open entry closes:
// the inode's figure becomes what storage holds. Returns the correction.
// What storage shows must hold no change of this node it has not
// settled (Quiet); a file found gone leaves a tombstone in p.
func (w *worker) resolve(p *plan, hr *holdRec, folder string, ino quota.InodeKey, hint string, ops uint64) (int64, error) {
	if hr.Hint != "" {
		hint = hr.Hint
	}
	size, found, err := w.inodeSize(folder, ino, hint)
	if err != nil {
		return 0, err
	}
	if !w.c.manager().Quiet(w.s, folder, ino, ops) {
		return 0, errNotQuiet
	}
	if !found {
		p.ops = append(p.ops, clientv3.OpPut(w.c.k.tomb(w.sk, folder, ino), encode(tombRec{At: time.Now().UnixMilli()})))
	}
	return size - (hr.Base + hr.sumC()), nil
}

func (w *worker) plan(b *quota.Batch, in intent, u quota.Unsettled, last bool, now time.Time) (*plan, error) {
	c := w.c
	me := c.cfg.Node
	k := c.k
	p := &plan{b: b, holds: map[string]*holdRec{}, folders: map[string]figure{}}
	if w.rec != nil {
		p.rec = w.rec.clone()
	} else {
		p.rec = &record{Nodes: map[string]*share{}}
	}
	nr := p.rec
	if nr.Nodes == nil {
		nr.Nodes = map[string]*share{}
	}
	sh := nr.Nodes[me]
	if sh == nil {
		if w.hadShare {
			// A survivor took this node's share: reload and reconcile first.
			w.stale = true
			return nil, errTakenOver
		}
		sh = &share{}
		nr.Nodes[me] = sh
		p.newMember = !w.member
	}
	rkey := k.record(w.sk)
	p.cmps = append(p.cmps, clientv3.Compare(clientv3.ModRevision(rkey), "=", w.rev))
	p.els = append(p.els, clientv3.OpGet(rkey))
	seen := map[string]bool{}
	type fd struct{ b, n int64 }
	deltas := map[string]*fd{}
	add := func(f string, db, dn int64) {
		d := deltas[f]
		if d == nil {
			d = &fd{}
			deltas[f] = d
		}
		d.b += db
		d.n += dn
	}
	var ownB, ownN int64 // the node's changes in the batch that reach the figure
	if b != nil {
		for i := range b.Holds {
			h := &b.Holds[i]
			h.Close = !h.Held
			key := k.hold(w.sk, h.Folder, h.Ino)
			w.cmpHold(p, key, seen)
			hr, ok := w.holdRecFor(p, key)
			var e *holdEntry
			if ok {
				e = hr.E[me]
			}
			if e == nil {
				// The registration is gone (a survivor settled it, or the
				// folder was dropped): the change is settled as a plain one.
				add(h.Folder, h.Bytes, 0)
				ownB += h.Bytes
				h.Close = true
				continue
			}
			app, held := h.Bytes, int64(0)
			if h.Bytes < 0 && hr.Contested {
				app, held = 0, h.Bytes
			}
			e.View += h.Bytes
			e.C += app
			e.Held += held
			ownB += app
			add(h.Folder, app, 0)
			if !h.Held {
				switch {
				case hr.openOthers(me):
					e.Open = false
				case hr.Contested || len(hr.E) > 1:
					corr, err := w.resolve(p, hr, h.Folder, h.Ino, h.Hint, h.Ops)
					if err != nil {
						// Left for a later try: the entry stays, closed.
						if !errors.Is(err, errNotQuiet) {
							c.log.Warn().Err(err).Str("folder", h.Folder).Msg("grants: cannot look at a contested file; its figure is settled later")
						}
						e.Open = false
						break
					}
					add(h.Folder, corr, 0)
					p.holds[key] = nil
				default:
					p.holds[key] = nil
				}
			}
		}
		for _, r := range b.Removed {
			key := k.hold(w.sk, r.Folder, r.Ino)
			w.cmpHold(p, key, seen)
			hr, ok := w.holdRecFor(p, key)
			if !ok {
				tk := k.tomb(w.sk, r.Folder, r.Ino)
				if _, dead := w.tombs[tk]; dead {
					// A figure set from storage already saw the file gone.
					add(r.Folder, 0, r.Inodes)
					ownN += r.Inodes
					continue
				}
				p.cmps = append(p.cmps, clientv3.Compare(clientv3.CreateRevision(tk), "=", 0))
				p.els = append(p.els, clientv3.OpGet(tk))
				add(r.Folder, r.Bytes, r.Inodes)
				ownB += r.Bytes
				ownN += r.Inodes
				continue
			}
			// Another node holds (or held) the inode: the credit waits for
			// its last close, which sets the figure from storage.
			hr.Contested = true
			e := hr.E[me]
			if e == nil {
				e = &holdEntry{}
				hr.E[me] = e
			}
			e.Held += r.Bytes
			add(r.Folder, 0, r.Inodes)
			ownN += r.Inodes
			open := false
			for _, x := range hr.E {
				open = open || x.Open
			}
			if !open {
				corr, err := w.resolve(p, hr, r.Folder, r.Ino, "", r.Ops)
				if err == nil {
					add(r.Folder, corr, 0)
					p.holds[key] = nil
				}
			}
		}
		for _, d := range b.Loose {
			add(d.Folder, d.Bytes, d.Inodes)
			ownB += d.Bytes
			ownN += d.Inodes
		}
	}
	var totB, totN int64
	for f, d := range deltas {
		if nr.Dropped[f] {
			// Discarded: the folder's figure is gone. The node counts it
			// as settled, and its grant is not charged for it.
			continue
		}
		if d.b == 0 && d.n == 0 {
			continue
		}
		old := w.folders[f].fig
		p.folders[f] = figure{Bytes: old.Bytes + d.b, Inodes: old.Inodes + d.n}
		// The figure written is the cached one plus the delta: it must not
		// have moved, and a conflict must bring it back with the record
		// (the record alone would let a retry write a stale figure).
		p.cmps = append(p.cmps, w.folderCmp(f))
		p.els = append(p.els, clientv3.OpGet(k.folder(w.sk, f)))
		totB += d.b
		totN += d.n
	}
	for f := range deltas {
		if nr.Dropped[f] {
			d := deltas[f]
			ownB -= d.b
			ownN -= d.n
		}
	}
	nr.Settled += totB
	nr.SettledInodes += totN
	p.ownB, p.ownN = ownB, ownN
	// The grant shrinks by the growth the node used. What the node freed
	// (its settled shrinks) goes back to the pool: the node keeps it only
	// as far as the pool is not over the limit (a lowered one).
	if nr.Limit > 0 {
		sh.Grant = max(sh.Grant-ownB, 0)
		if last && b != nil {
			if freed := in.growth - (in.prevB + ownB); freed > 0 {
				sh.Grant = max(sh.Grant-freed, 0)
				pb, _ := nr.pool()
				sh.Grant += min(freed, max(pb, 0))
			}
		}
	}
	if nr.LimitInodes > 0 {
		sh.GrantInodes = max(sh.GrantInodes-ownN, 0)
		if last && b != nil {
			if freed := in.growthN - (in.prevN + ownN); freed > 0 {
				sh.GrantInodes = max(sh.GrantInodes-freed, 0)
				_, pn := nr.pool()
				sh.GrantInodes += min(freed, max(pn, 0))
			}
		}
	}
	sh.Grant = max(sh.Grant-in.retB, 0)
	sh.GrantInodes = max(sh.GrantInodes-in.retN, 0)
	if b != nil {
		sh.Seq = b.Seq
	}
	if last {
		pb, pn := nr.pool()
		if nr.Limit > 0 && (in.needB > 0 || in.bg) && !(in.noTake && pb < in.needB) {
			a := w.desired(in.needB, pb, w.unit(), nr, false, now)
			sh.Grant += a
			in.needB -= a
		}
		if nr.LimitInodes > 0 && (in.needN > 0 || in.bgN) && !(in.noTakeN && pn < in.needN) {
			a := w.desired(in.needN, pn, w.unitN(), nr, true, now)
			sh.GrantInodes += a
			in.needN -= a
		}
		switch {
		case in.keepWant:
		case in.needB > 0 || in.needN > 0:
			if sh.Want == 0 && sh.WantInodes == 0 {
				nr.Recall++
			}
			sh.Want, sh.WantInodes = max(in.needB, 0), max(in.needN, 0)
			sh.WantUntil = now.Add(c.cfg.Wait).UnixMilli()
		default:
			sh.Want, sh.WantInodes, sh.WantUntil = 0, 0, 0
		}
		if in.answerRecall {
			sh.Answered = nr.Recall
		}
	}
	p.ops = append(p.ops, clientv3.OpPut(rkey, encode(nr)))
	for f, fig := range p.folders {
		p.ops = append(p.ops, clientv3.OpPut(k.folder(w.sk, f), encode(fig)))
	}
	for key, hr := range p.holds {
		if hr == nil {
			p.ops = append(p.ops, clientv3.OpDelete(key))
		} else {
			p.ops = append(p.ops, clientv3.OpPut(key, encode(hr)))
		}
	}
	if p.newMember {
		p.ops = append(p.ops, clientv3.OpPut(k.member(me, w.sk), ""))
	}
	return p, nil
}

// absorbElse takes the current values a failed transaction returned.
// folderCmp compares a folder figure's key with the cache's revision of
// it (0: absent).
func (w *worker) folderCmp(f string) clientv3.Cmp {
	var rev int64
	if fc, ok := w.folders[f]; ok && !fc.gone {
		rev = fc.rev
	}
	return clientv3.Compare(clientv3.ModRevision(w.c.k.folder(w.sk, f)), "=", rev)
}

func (w *worker) absorbElse(resp *clientv3.TxnResponse, p *plan) {
	for i, r := range resp.Responses {
		g := r.GetResponseRange()
		if g == nil {
			continue
		}
		if len(g.Kvs) == 0 {
			// Absent now: drop what the cache believed.
			key := ""
			if i < len(p.els) {
				key = string(p.els[i].KeyBytes())
			}
			switch {
			case key == w.c.k.record(w.sk):
				w.rec, w.rev = nil, 0
			case key != "" && w.c.k.isHold(w.sk, key):
				w.holds[key] = &holdCache{delRev: resp.Header.Revision}
			case key != "" && w.c.k.isFolder(w.sk, key):
				w.folders[w.c.k.folderOf(w.sk, key)] = figCache{rev: resp.Header.Revision, gone: true}
			}
			continue
		}
		for _, kv := range g.Kvs {
			w.absorb(kv, false)
		}
	}
}

func (w *worker) commit(p *plan, rev int64, now time.Time) error {
	m := w.c.manager()
	w.rec, w.rev = p.rec, rev
	changed := map[string]bool{}
	for f, fig := range p.folders {
		w.folders[f] = figCache{fig: fig, rev: rev}
		changed[f] = true
	}
	for key, hr := range p.holds {
		if hr == nil {
			w.holds[key] = &holdCache{delRev: rev}
		} else {
			w.holds[key] = &holdCache{rec: hr, rev: rev}
		}
	}
	sh := p.rec.Nodes[w.c.cfg.Node]
	w.hadShare = true
	w.member = w.member || p.newMember
	w.wantSet = sh.Want > 0 || sh.WantInodes > 0
	w.seen = max(w.seen, rev)
	if p.b != nil {
		var b, n int64
		for _, d := range p.b.Folders() {
			b += d.Bytes
			n += d.Inodes
		}
		w.applied += b
		w.appliedN += n
		w.lastSettle = now
		w.inflight = nil
		return m.ApplySettle(w.s, p.b, w.view(rev), w.figures(changed))
	}
	return m.SetView(w.s, w.view(rev), w.figures(changed))
}

// sweep finishes hold records left without an open entry (a last close
// that could not look at the file, or saw this node busy with it) and
// drops expired tombstones. A record is finished by the first node that
// has nothing unsettled on the inode.
func (w *worker) sweep() {
	c, m := w.c, w.c.manager()
	k := c.k
	n := 0
	for key, hc := range w.holds {
		if hc.rec == nil || len(hc.rec.E) == 0 || n >= 8 {
			continue
		}
		open := false
		for _, e := range hc.rec.E {
			open = open || e.Open
		}
		if open {
			continue
		}
		folder, ino, err := k.holdOf(w.sk, key)
		if err != nil || !m.Idle(w.s, folder, ino) {
			continue
		}
		n++
		p := &plan{holds: map[string]*holdRec{}}
		size, found, err := w.inodeSize(folder, ino, hc.rec.Hint)
		if err != nil || !m.Idle(w.s, folder, ino) {
			continue
		}
		corr := size - (hc.rec.Base + hc.rec.sumC())
		if !found {
			p.ops = append(p.ops, clientv3.OpPut(k.tomb(w.sk, folder, ino), encode(tombRec{At: time.Now().UnixMilli()})))
		}
		nr := &record{Nodes: map[string]*share{}}
		if w.rec != nil {
			nr = w.rec.clone()
		}
		rkey := k.record(w.sk)
		cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(rkey), "=", w.rev), clientv3.Compare(clientv3.ModRevision(key), "=", hc.rev)}
		ops := append(p.ops, clientv3.OpDelete(key))
		if corr != 0 && !nr.Dropped[folder] {
			cmps = append(cmps, w.folderCmp(folder))
			fig := w.folders[folder].fig
			fig.Bytes += corr
			nr.Settled += corr
			ops = append(ops, clientv3.OpPut(k.folder(w.sk, folder), encode(fig)), clientv3.OpPut(rkey, encode(nr)))
		}
		resp, err := c.txnFull(c.ctx, cmps, ops, nil)
		w.txns.Add(1)
		if err != nil || !resp.Succeeded {
			continue // the watch brings the news; tried again later
		}
		c.log.Debug().Str("scope", w.s.String()).Str("folder", folder).Int64("correction", corr).Msg("grants: finished a hold record left without open entries")
	}
	var old []string
	for key, t := range w.tombs {
		if time.Since(time.UnixMilli(t.fig.Bytes)) > tombLife && len(old) < batchItems {
			old = append(old, key)
		}
	}
	if len(old) > 0 {
		var cmps []clientv3.Cmp
		var ops []clientv3.Op
		for _, key := range old {
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(key), "=", w.tombs[key].rev))
			ops = append(ops, clientv3.OpDelete(key))
		}
		c.txnFull(c.ctx, cmps, ops, nil)
		w.txns.Add(1)
	}
}

// register registers the write holds the Manager queued: each in its
// inode's hold record, with the size the node accounts for the inode.
func (w *worker) register() error {
	c, m := w.c, w.c.manager()
	me := c.cfg.Node
	for {
		refs := m.TakeHolds(w.s, batchItems)
		if len(refs) == 0 {
			return nil
		}
		ok := false
		for attempt := 0; attempt < 8 && !ok; attempt++ {
			var cmps []clientv3.Cmp
			var ops, els []clientv3.Op
			recs := map[string]*holdRec{}
			for _, r := range refs {
				key := c.k.hold(w.sk, r.Folder, r.Ino)
				var rev int64
				var hr *holdRec
				if hc := w.holds[key]; hc != nil && hc.rec != nil {
					rev, hr = hc.rev, hc.rec.clone()
				} else {
					hr = &holdRec{Base: r.View, E: map[string]*holdEntry{}}
					if hc != nil {
						rev = hc.rev
					}
				}
				e := hr.E[me]
				if e == nil {
					if len(hr.E) > 0 {
						hr.Contested = true
					}
					e = &holdEntry{}
					hr.E[me] = e
				}
				e.View, e.Open = r.View, true
				if hr.Hint == "" {
					hr.Hint = r.Hint
				}
				recs[key] = hr
				cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(key), "=", rev))
				ops = append(ops, clientv3.OpPut(key, encode(hr)))
				if tk := c.k.tomb(w.sk, r.Folder, r.Ino); w.tombs[tk].rev != 0 {
					ops = append(ops, clientv3.OpDelete(tk)) // a new file took the number
				}
				els = append(els, clientv3.OpGet(key))
			}
			resp, err := c.txnFull(c.ctx, cmps, ops, els)
			w.txns.Add(1)
			w.regs.Add(1)
			if err != nil {
				m.HoldsDone(w.s, refs, false)
				return err
			}
			if !resp.Succeeded {
				w.absorbElse(resp, &plan{els: els})
				continue
			}
			for key, hr := range recs {
				w.holds[key] = &holdCache{rec: hr, rev: resp.Header.Revision}
			}
			w.seen = max(w.seen, resp.Header.Revision)
			m.HoldsDone(w.s, refs, true)
			ok = true
		}
		if !ok {
			m.HoldsDone(w.s, refs, false)
			return errConflict
		}
	}
}
