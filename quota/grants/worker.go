package grants

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vfolder/vfolder/quota"
)

// A worker serves one scope on this node: one goroutine, so that every
// transaction of the node on the scope's keys, and every view it gives
// the Manager, happens in one order. It keeps a cache of the scope's keys
// (record, folder figures, holds), fed by its own transactions and by a
// watch; a cache entry is only replaced by a newer revision.

const batchItems = 40 // folders, holds and removals per transaction (etcd allows 128 operations)

var (
	errTakenOver = errors.New("this node's share was taken over")
	errWatch     = errors.New("watch ended")
	errConflict  = errors.New("too many conflicting transactions")
)

type waiter struct {
	need     quota.Need
	deadline time.Time
	done     chan struct{}
	over     bool
	asked    bool // the worker asked the cluster since the waiter came
	met      bool // ended because the node's room covered it
}

type holdCache struct {
	rec    *holdRec // nil: absent
	rev    int64    // ModRevision; 0 when absent
	delRev int64    // revision of the delete that made it absent
}

type figCache struct {
	fig figure
	rev int64
}

type watchMsg struct {
	events []*clientv3.Event
	rev    int64
	err    error
}

type checkState struct {
	epoch uint32
	phase int
	t1    bool // settled everything at the journal's start: settles nothing more until the check ends
	sent  int  // phase answered
}

type worker struct {
	c       *Client
	s       quota.ScopeKey
	sk      string
	kick    chan struct{}
	events  chan watchMsg
	stopCh  chan struct{}
	stopped chan struct{}
	txns    atomic.Int64
	regs    atomic.Int64 // of txns: hold registrations
	asks    atomic.Int64 // of txns: asking for room (with or without settling)
	fails   atomic.Int64 // of txns: compare failed (retried)

	mu      sync.Mutex
	waiters []*waiter
	rejoin  bool
	chk     checkState // wanted by the check watcher
	stopReq bool

	// the worker goroutine only
	loaded     bool
	loadedOnce bool
	stale      bool
	rec        *record
	rev        int64
	seen       int64
	folders    map[string]figCache
	holds      map[string]*holdCache
	tombs      map[string]figCache // tombstone key -> (at in Bytes, rev)
	hadShare   bool
	rejoined   bool // reloading after the lease was renewed
	member     bool
	inflight   *quota.Batch
	lastSettle time.Time
	lastGrowth time.Time    // last growth seen, or demand for room
	demand     atomic.Int64 // unix nanoseconds of the last operation waiting for room
	applied    int64
	lastOwn    int64
	lastSample time.Time
	rate       float64
	rateN      float64
	appliedN   int64
	lastOwnN   int64
	wantSet    bool
	watchStop  context.CancelFunc
	check      checkState
	loggedWait time.Time
	lastSweep  time.Time
	protect    time.Time // room just handed to waiting operations is not given back before
}

func newWorker(c *Client, s quota.ScopeKey) *worker {
	return &worker{
		c:       c,
		s:       s,
		sk:      scopeKey(s),
		kick:    make(chan struct{}, 1),
		events:  make(chan watchMsg, 64),
		stopCh:  make(chan struct{}),
		stopped: make(chan struct{}),
		folders: map[string]figCache{},
		holds:   map[string]*holdCache{},
	}
}

func (w *worker) poke() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func (w *worker) addWaiter(wt *waiter) {
	w.demand.Store(time.Now().UnixNano())
	w.mu.Lock()
	w.waiters = append(w.waiters, wt)
	w.mu.Unlock()
	w.poke()
}

func (w *worker) reloadAfterRejoin() {
	w.mu.Lock()
	w.rejoin = true
	w.mu.Unlock()
	w.poke()
}

func (w *worker) setCheck(epoch uint32, phase int) {
	w.mu.Lock()
	w.chk.epoch, w.chk.phase = epoch, phase
	w.mu.Unlock()
	w.poke()
}

// stop settles what the node wrote, gives the grant back and ends the
// worker (Client.Close).
func (w *worker) stop() {
	w.mu.Lock()
	if w.stopReq {
		w.mu.Unlock()
		return
	}
	w.stopReq = true
	w.mu.Unlock()
	close(w.stopCh)
	select {
	case <-w.stopped:
	case <-time.After(2*w.c.cfg.CallTimeout + time.Second):
	}
}

func (w *worker) run() {
	defer close(w.stopped)
	tick := time.NewTicker(max(w.c.cfg.SettleInterval/2, 10*time.Millisecond))
	defer tick.Stop()
	defer func() {
		if w.watchStop != nil {
			w.watchStop()
		}
		w.endWaiters(true)
	}()
	for {
		w.step(false)
		var retry <-chan time.Time
		if w.hasWaiters() {
			retry = time.After(20 * time.Millisecond)
		}
		select {
		case <-w.stopCh:
			w.step(true)
			return
		case <-w.c.ctx.Done():
			return
		case <-w.kick:
		case msg := <-w.events:
			w.applyWatch(msg)
		drain:
			for {
				select {
				case msg := <-w.events:
					w.applyWatch(msg)
				default:
					break drain
				}
			}
		case <-tick.C:
		case <-retry:
		}
	}
}

func (w *worker) hasWaiters() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.waiters) > 0
}

func (w *worker) step(final bool) {
	m := w.c.manager()
	if m == nil {
		return
	}
	w.mu.Lock()
	if w.rejoin {
		w.rejoin, w.loaded, w.rejoined = false, false, true
	}
	chk := w.chk
	w.mu.Unlock()
	if w.c.frozen.Load() && !final {
		// No lease: nothing is sent, reconciled or grown until it is
		// confirmed or renewed (lease.go).
		w.endWaiters(false)
		return
	}
	if !w.loaded || w.stale {
		if err := w.load(); err != nil {
			if errors.Is(err, errTakenOver) {
				w.c.lostLease()
			}
			w.endWaiters(false)
			return
		}
	}
	if chk.epoch != w.check.epoch || chk.phase != w.check.phase {
		w.followCheck(chk)
	}
	if err := w.register(); err != nil && !errors.Is(err, ErrUnreachable) {
		w.c.log.Warn().Err(err).Str("scope", w.s.String()).Msg("grants: registering holds failed")
	}
	if !final && w.check.epoch == 0 && time.Since(w.lastSweep) > 4*w.c.cfg.SettleInterval {
		w.lastSweep = time.Now()
		w.sweep()
	}
	if err := w.settle(final); errors.Is(err, errTakenOver) {
		w.c.lostLease()
	} else if err != nil && !errors.Is(err, ErrUnreachable) {
		w.c.log.Warn().Err(err).Str("scope", w.s.String()).Msg("grants: settlement failed")
	}
	w.endWaiters(false)
}

// load reads the scope's keys, reconciles what an earlier run (or a
// survivor) left, gives the Manager its view and (re)starts the watch.
func (w *worker) load() error {
	c, m := w.c, w.c.manager()
	resp, err := c.get(c.ctx, c.k.scope(w.sk), clientv3.WithPrefix())
	if err != nil {
		return err
	}
	w.rec, w.rev = nil, 0
	w.folders = map[string]figCache{}
	w.holds = map[string]*holdCache{}
	w.tombs = map[string]figCache{}
	for _, kv := range resp.Kvs {
		w.absorb(kv, false)
	}
	w.seen = resp.Header.Revision
	me := c.cfg.Node
	var sh *share
	if w.rec != nil {
		sh = w.rec.Nodes[me]
	}
	switch {
	case sh != nil:
		if w.inflight != nil && sh.Seq >= w.inflight.Seq {
			if err := m.ApplySettle(w.s, w.inflight, w.view(w.seen), nil); err != nil {
				return err
			}
		} else if err := m.ResolvePending(w.s, sh.Seq); err != nil {
			return err
		}
		if !w.loadedOnce {
			for key, hc := range w.holds {
				if hc.rec == nil {
					continue
				}
				if e := hc.rec.E[me]; e != nil {
					folder, ino, err := c.k.holdOf(w.sk, key)
					if err == nil {
						err = m.RestoreHold(w.s, folder, ino, e.View)
					}
					if err != nil {
						c.log.Warn().Err(err).Str("key", key).Msg("grants: cannot restore a registered hold")
					}
				}
			}
		}
		w.hadShare, w.member = true, true
	case w.hadShare && !w.rejoined:
		// Our share is gone while we thought our lease alive: a survivor
		// took it. Reconcile only once the lease is renewed.
		return errTakenOver
	default:
		seq, err := w.reconcileTakeover()
		if err != nil {
			return err
		}
		if err := m.ResolvePending(w.s, seq); err != nil {
			return err
		}
		w.hadShare, w.member = false, false
	}
	w.rejoined = false
	w.inflight = nil
	w.loaded, w.loadedOnce, w.stale = true, true, false
	m.SetView(w.s, w.view(w.seen), w.figures(nil))
	w.startWatch()
	return nil
}

// reconcileTakeover applies what survivors settled for this node while it
// was gone (takeover.go) and returns the node's last settlement in the
// scope as they recorded it. The records are deleted first: a crash
// between the delete and the Manager's update leaves the node's changes
// counted twice (too high, never too low).
func (w *worker) reconcileTakeover() (uint64, error) {
	c, m := w.c, w.c.manager()
	prefix := c.k.takeoversIn(c.cfg.Node, w.sk)
	resp, err := c.get(c.ctx, prefix, clientv3.WithPrefix())
	if err != nil || len(resp.Kvs) == 0 {
		return 0, err
	}
	cmps := make([]clientv3.Cmp, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(string(kv.Key)), "=", kv.ModRevision))
	}
	tr, err := c.txnFull(c.ctx, cmps, []clientv3.Op{clientv3.OpDelete(prefix, clientv3.WithPrefix())}, nil)
	if err != nil {
		return 0, err
	}
	if !tr.Succeeded {
		return 0, errConflict
	}
	var seq uint64
	n := 0
	for _, kv := range resp.Kvs {
		tk, err := decode[takeover](kv.Value)
		if err != nil {
			c.log.Warn().Err(err).Str("key", string(kv.Key)).Msg("grants: unreadable takeover record")
			continue
		}
		seq = max(seq, tk.Seq)
		for _, h := range tk.Holds {
			if err := m.Disown(w.s, h.Folder, quota.InodeKey{Dev: h.Dev, Ino: h.Ino}, h.View); err != nil {
				c.log.Warn().Err(err).Str("folder", h.Folder).Msg("grants: cannot apply a survivor's settlement")
			}
			n++
		}
	}
	c.log.Info().Str("scope", w.s.String()).Int("holds", n).Msg("grants: a survivor settled this node's holds while it was gone")
	return seq, nil
}

// absorb puts a key read from the store into the cache (if newer).
// Returns the folder whose figure changed, if any.
func (w *worker) absorb(kv *mvccpb.KeyValue, deleted bool) string {
	k := w.c.k
	key := string(kv.Key)
	rev := kv.ModRevision
	switch {
	case k.isRecord(w.sk, key):
		if deleted {
			if rev > w.rev {
				w.rec, w.rev = nil, 0
			}
			return ""
		}
		if rev <= w.rev {
			return ""
		}
		rec, err := decode[record](kv.Value)
		if err != nil {
			w.c.log.Error().Err(err).Str("key", key).Msg("grants: unreadable scope record")
			return ""
		}
		w.rec, w.rev = rec, rev
	case k.isFolder(w.sk, key):
		id := k.folderOf(w.sk, key)
		old, ok := w.folders[id]
		if ok && rev <= old.rev {
			return ""
		}
		if deleted {
			w.folders[id] = figCache{rev: rev}
			return id
		}
		f, err := decode[figure](kv.Value)
		if err != nil {
			return ""
		}
		w.folders[id] = figCache{fig: *f, rev: rev}
		return id
	case k.isTomb(w.sk, key):
		if deleted {
			delete(w.tombs, key)
			return ""
		}
		if t, err := decode[tombRec](kv.Value); err == nil {
			w.tombs[key] = figCache{fig: figure{Bytes: t.At}, rev: rev}
		}
	case k.isHold(w.sk, key):
		hc := w.holds[key]
		if hc != nil && (rev <= hc.rev || rev <= hc.delRev) {
			return ""
		}
		if deleted {
			w.holds[key] = &holdCache{delRev: rev}
			return ""
		}
		hr, err := decode[holdRec](kv.Value)
		if err != nil {
			return ""
		}
		w.holds[key] = &holdCache{rec: hr, rev: rev}
	}
	return ""
}

func (w *worker) startWatch() {
	if w.watchStop != nil {
		w.watchStop()
	}
	ctx, cancel := context.WithCancel(w.c.ctx)
	w.watchStop = cancel
	wch := w.c.cli.Watch(clientv3.WithRequireLeader(ctx), w.c.k.scope(w.sk), clientv3.WithPrefix(), clientv3.WithRev(w.seen+1))
	go func() {
		for resp := range wch {
			msg := watchMsg{events: resp.Events, rev: resp.Header.Revision, err: resp.Err()}
			select {
			case w.events <- msg:
			case <-ctx.Done():
				return
			}
		}
		if ctx.Err() == nil {
			select {
			case w.events <- watchMsg{err: errWatch}:
			case <-ctx.Done():
			}
		}
	}()
}

func (w *worker) applyWatch(msg watchMsg) {
	if msg.err != nil {
		if !w.stale && w.c.ctx.Err() == nil {
			w.stale = true
		}
		return
	}
	if !w.loaded || w.stale {
		return
	}
	changed := map[string]bool{}
	for _, ev := range msg.events {
		if id := w.absorb(ev.Kv, ev.Type == clientv3.EventTypeDelete); id != "" {
			changed[id] = true
		}
	}
	if msg.rev > w.seen {
		w.seen = msg.rev
		w.c.manager().SetView(w.s, w.view(w.seen), w.figures(changed))
	}
}

// view is the Manager's view of the scope as the cache has it.
func (w *worker) view(rev int64) quota.ClusterView {
	v := quota.ClusterView{Rev: rev}
	r := w.rec
	if r == nil {
		return v
	}
	v.Limit, v.LimitInodes, v.Settled, v.SettledInodes = r.Limit, r.LimitInodes, r.Settled, r.SettledInodes
	if sh := r.Nodes[w.c.cfg.Node]; sh != nil {
		v.Grant, v.GrantInodes = sh.Grant, sh.GrantInodes
	}
	pb, pn := r.pool()
	if pb > 0 && !r.othersWant(w.c.cfg.Node, time.Now()) {
		v.Low = w.unit() / 4
	}
	if pn > 0 {
		v.LowInodes = w.unitN() / 4
	}
	return v
}

func (w *worker) figures(only map[string]bool) map[string]quota.FolderSet {
	out := map[string]quota.FolderSet{}
	for id, f := range w.folders {
		if only == nil || only[id] {
			out[id] = quota.FolderSet{Bytes: f.fig.Bytes, Inodes: f.fig.Inodes}
		}
	}
	return out
}

func (r *record) othersWant(me string, now time.Time) bool {
	for n, s := range r.Nodes {
		if n != me && (s.Want > 0 || s.WantInodes > 0) && s.WantUntil > now.UnixMilli() {
			return true
		}
	}
	return false
}

func (r *record) othersGrant(me string) (b, n int64) {
	for id, s := range r.Nodes {
		if id != me {
			b += s.Grant
			n += s.GrantInodes
		}
	}
	return
}

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
	answerRecall bool
	clearWant    bool
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
	for i, b := range batches {
		last := i == len(batches)-1
		bi := intent{}
		if last {
			bi = in
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

// inodeSize is what storage holds for an inode now (0 and !found: gone).
func (w *worker) inodeSize(folder string, ino quota.InodeKey, hint string) (size int64, found bool, err error) {
	root, err := w.c.cfg.OpenFolder(w.s, folder)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	defer root.Close()
	kind, size, found, err := quota.StatInode(root, hint, ino)
	if err != nil || !found {
		return 0, false, err
	}
	if kind == quota.KindFile || kind == quota.KindSymlink {
		return size, true, nil
	}
	return 0, true, nil
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
	// The grant shrinks by the growth the node used.
	if nr.Limit > 0 {
		sh.Grant = max(sh.Grant-ownB, 0)
	}
	if nr.LimitInodes > 0 {
		sh.GrantInodes = max(sh.GrantInodes-ownN, 0)
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

// endWaiters answers the operations waiting for room: those the node's
// room now covers, those that can get no more (the scope is full), and
// those whose wait is over (all of them when the worker stops).
func (w *worker) endWaiters(all bool) {
	m := w.c.manager()
	if m == nil {
		return
	}
	v, known, ub, un := m.View(w.s)
	pending := m.PendingHolds(w.s)
	now := time.Now()
	rec := w.rec
	me := w.c.cfg.Node
	frozen := w.c.frozen.Load()
	w.mu.Lock()
	defer w.mu.Unlock()
	keep := w.waiters[:0]
	for _, wt := range w.waiters {
		if wt.over {
			continue
		}
		end := all
		if !end && known && !frozen {
			roomB, roomN := v.Grant-ub, v.GrantInodes-un
			okB := v.Limit <= 0 || roomB >= wt.need.Bytes
			okN := v.LimitInodes <= 0 || roomN >= wt.need.Inodes
			okH := !wt.need.Hold || !pending
			end = okB && okN && okH
			wt.met = end
			if !end && okB == false && okN && okH && !wt.need.Exact && wt.asked && roomB > 0 && rec != nil {
				// A write takes what the node holds once it asked and the
				// pool cannot give the rest: it is cut short there.
				if pb, _ := rec.pool(); roomB+max(pb, 0) < wt.need.Bytes {
					end = true
				}
			}
			if !end && okH && rec != nil && !w.stale {
				pb, pn := rec.pool()
				ob, on := rec.othersGrant(me)
				if !okB {
					if wt.need.Exact {
						end = roomB+max(pb, 0)+ob < wt.need.Bytes
					} else {
						end = pb <= 0 && ob == 0
					}
				}
				if !okN {
					end = end || roomN+max(pn, 0)+on < wt.need.Inodes
				}
			}
		}
		if !end && now.After(wt.deadline) {
			end = true
			w.logWait(wt, frozen)
		}
		if end && !now.After(wt.deadline) {
			w.protect = now.Add(100 * time.Millisecond)
			w.demand.Store(now.UnixNano())
		}
		if end {
			if e := w.c.log.Debug(); e.Enabled() {
				var pb, ob int64
				if rec != nil {
					pb, _ = rec.pool()
					ob, _ = rec.othersGrant(me)
				}
				e.Str("scope", w.s.String()).Int64("need", wt.need.Bytes).Bool("exact", wt.need.Exact).Int64("grant", v.Grant).
					Int64("unsettled", ub).Int64("pool", pb).Int64("others", ob).Bool("late", now.After(wt.deadline)).Msg("grants: room wait over")
			}
			wt.over = true
			close(wt.done)
			continue
		}
		keep = append(keep, wt)
	}
	clear(w.waiters[len(keep):])
	w.waiters = keep
}

func (w *worker) logWait(wt *waiter, frozen bool) {
	now := time.Now()
	if now.Sub(w.loggedWait) < time.Second {
		return
	}
	w.loggedWait = now
	ev := w.c.log.Warn().Str("scope", w.s.String()).Int64("bytes", wt.need.Bytes).Dur("waited", w.c.cfg.Wait)
	if from, err := w.c.outage(); !from.IsZero() {
		ev.Err(err).Time("outage_since", from).Msg("quota: growth refused (EDQUOT) after waiting: cluster store unreachable")
		return
	}
	if frozen {
		ev.Msg("quota: growth refused (EDQUOT) after waiting: the node's lease is not confirmed")
		return
	}
	ev.Msg("quota: growth refused (EDQUOT) after waiting for room other nodes hold")
}

// answer tells the running cluster check that this node reached its
// phase, with its journal.
func (w *worker) answer() error {
	c, m := w.c, w.c.manager()
	entries, overflow := m.Journal(w.s)
	a := answer{Epoch: w.check.epoch, Phase: w.check.phase, Overflow: overflow}
	for _, j := range entries {
		a.Journal = append(a.Journal, journalEntry{Folder: j.Folder, Dev: j.Ino.Dev, Ino: j.Ino.Ino, Bytes: j.Bytes, Inodes: j.Inodes})
	}
	_, err := c.txnFull(c.ctx, nil, []clientv3.Op{clientv3.OpPut(c.k.answer(w.sk, c.cfg.Node), encode(a), clientv3.WithLease(clientv3.LeaseID(c.lease.Load())))}, nil)
	if err != nil {
		return err
	}
	w.check.sent = a.Phase
	return nil
}

// followCheck follows the cluster check of the scope: a new one makes the
// next settlement start the journal (settle.go), an ended one stops it.
func (w *worker) followCheck(chk checkState) {
	m := w.c.manager()
	if chk.epoch == 0 {
		if w.check.epoch != 0 {
			m.StopJournal(w.s)
			ctx, cancel := w.c.callCtx(w.c.ctx)
			w.c.cli.Delete(ctx, w.c.k.answer(w.sk, w.c.cfg.Node))
			cancel()
		}
		w.check = checkState{}
		return
	}
	if chk.epoch != w.check.epoch {
		w.check = checkState{epoch: chk.epoch}
	}
	w.check.phase = chk.phase
}

func (w *worker) String() string { return fmt.Sprintf("worker(%s)", w.s) }
