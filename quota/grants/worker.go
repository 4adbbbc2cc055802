package grants

import (
	"context"
	"errors"
	"fmt"
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
	fig  figure
	rev  int64
	gone bool // the key was deleted at rev
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
			w.folders[id] = figCache{rev: rev, gone: true}
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
