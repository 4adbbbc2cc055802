package grants

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vfolder/vfolder/quota"
)

// Sentinel errors. Callers test them with errors.Is.
var (
	// ErrUnreachable: the cluster store did not answer in time (down, no
	// quorum, partitioned).
	ErrUnreachable = errors.New("cluster store unreachable")
	// ErrClosed: the Client was closed or not started.
	ErrClosed = errors.New("grants client closed")
	// ErrBusy: another cluster check of the scope runs, or a node did not
	// answer one.
	ErrBusy = errors.New("cluster check busy")
	// ErrInvalid: a bad argument or configuration.
	ErrInvalid = errors.New("invalid argument")
)

// Config configures a Client. Client, Node and OpenFolder are required.
type Config struct {
	// Client is the etcd client; the caller owns it (and its TLS and
	// logger: give it a quiet zap logger).
	Client *clientv3.Client
	// Prefix of every key (default "/vfolder/quota/").
	Prefix string
	// Node is this node's id, unique in the cluster.
	Node string
	// Host is shown in the node's record.
	Host string
	// OpenFolder opens a folder's root directory on storage (as
	// quota.Options.OpenFolder); survivors and last closers stat files
	// through it. The error must wrap fs.ErrNotExist only when the folder
	// is gone.
	OpenFolder func(s quota.ScopeKey, folderID string) (*os.File, error)
	// LeaseTTL is the node's lease (default 10s). A node grows nothing
	// beyond what it settled once it cannot confirm its lease for
	// LeaseTTL minus a margin: an outage longer than that stops growth.
	LeaseTTL time.Duration
	// SettleInterval: how often a node settles what it wrote (default
	// 500ms).
	SettleInterval time.Duration
	// Wait bounds how long an operation waits for room or for a
	// registration before it gets EDQUOT (default 5s).
	Wait time.Duration
	// CallTimeout bounds one call to the store (default 2s).
	CallTimeout time.Duration
	// IdleReturn: a grant unused that long goes back to the pool
	// (default 10s).
	IdleReturn time.Duration
	// MinUnit, MaxUnit bound the size of a grant request (defaults 1 MiB,
	// 1 GiB); RefillPeriod is how long a request should last at the
	// node's write rate (default 1s).
	MinUnit, MaxUnit int64
	RefillPeriod     time.Duration
	// Log receives warnings (outages) and errors. Zero: none.
	Log zerolog.Logger
}

func (c *Config) fill() error {
	if c.Client == nil || c.Node == "" || c.OpenFolder == nil {
		return fmt.Errorf("%w: Client, Node and OpenFolder are required", ErrInvalid)
	}
	if c.Prefix == "" {
		c.Prefix = "/vfolder/quota/"
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = 10 * time.Second
	}
	if c.LeaseTTL < 2*time.Second {
		return fmt.Errorf("%w: lease TTL %v is below 2s", ErrInvalid, c.LeaseTTL)
	}
	if c.SettleInterval <= 0 {
		c.SettleInterval = 500 * time.Millisecond
	}
	if c.Wait <= 0 {
		c.Wait = 5 * time.Second
	}
	if c.CallTimeout <= 0 {
		c.CallTimeout = 2 * time.Second
	}
	if c.IdleReturn <= 0 {
		c.IdleReturn = 10 * time.Second
	}
	if c.MinUnit <= 0 {
		c.MinUnit = 1 << 20
	}
	if c.MaxUnit < c.MinUnit {
		c.MaxUnit = max(c.MinUnit, 1<<30)
	}
	if c.RefillPeriod <= 0 {
		c.RefillPeriod = time.Second
	}
	return nil
}

// Client is one node's side of the cluster quota. It implements
// quota.Grants. See the package comment.
type Client struct {
	cfg Config
	k   keys
	cli *clientv3.Client
	log zerolog.Logger

	m       atomic.Pointer[quota.Manager]
	started chan struct{}
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	mu      sync.Mutex // workers; never held while calling the Manager
	workers map[quota.ScopeKey]*worker
	early   map[quota.ScopeKey]bool // notified before Start

	lease      atomic.Int64 // clientv3.LeaseID
	validUntil atomic.Int64 // unix nanoseconds: the lease is surely alive until then
	frozen     atomic.Bool
	rejoining  atomic.Bool
	leaseNow   chan struct{} // wake the lease loop
	closed     atomic.Bool

	outageMu   sync.Mutex
	outageFrom time.Time // zero: no outage
	outageErr  error
}

// New checks the configuration and returns a Client to pass as
// quota.Options.Grants; Start binds it to the Manager.
func New(cfg Config) (*Client, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Client{
		cfg:      cfg,
		k:        keys{cfg.Prefix},
		cli:      cfg.Client,
		log:      cfg.Log.With().Str("component", "grants").Str("node", cfg.Node).Logger(),
		started:  make(chan struct{}),
		ctx:      ctx,
		cancel:   cancel,
		workers:  map[quota.ScopeKey]*worker{},
		early:    map[quota.ScopeKey]bool{},
		leaseNow: make(chan struct{}, 1),
	}
	c.frozen.Store(true)
	return c, nil
}

// Start registers the node under a lease, reconciles what an earlier run
// of this node left (settlements in flight, holds, what survivors settled
// for it) and starts serving the Manager, which must have been opened with
// this Client as its Grants.
func (c *Client) Start(ctx context.Context, m *quota.Manager) error {
	if m == nil {
		return fmt.Errorf("%w: nil manager", ErrInvalid)
	}
	if c.closed.Load() {
		return ErrClosed
	}
	c.m.Store(m)
	m.FreezeGrants(true)
	if err := c.joinLease(ctx); err != nil {
		return err
	}
	var scopes []string
	for _, p := range []string{c.k.members(c.cfg.Node), c.k.takeovers(c.cfg.Node)} {
		resp, err := c.cli.Get(ctx, p, clientv3.WithPrefix(), clientv3.WithKeysOnly())
		if err != nil {
			return fmt.Errorf("grants: read memberships: %w", c.wrap(err))
		}
		for _, kv := range resp.Kvs {
			rest := string(kv.Key[len(p):])
			if p == c.k.takeovers(c.cfg.Node) {
				// t/<node>/<vol>/<id>/<n>
				if i := lastSlash(rest); i > 0 {
					rest = rest[:i]
				}
			}
			scopes = append(scopes, rest)
		}
	}
	for _, sk := range scopes {
		s, err := parseScopeKey(sk)
		if err != nil {
			c.log.Warn().Err(err).Str("key", sk).Msg("grants: skipping unreadable scope key")
			continue
		}
		c.worker(s)
	}
	for _, s := range m.ClusterScopes() {
		c.worker(s)
	}
	c.mu.Lock()
	for s := range c.early {
		c.startWorkerLocked(s)
	}
	c.early = nil
	c.mu.Unlock()
	close(c.started)
	c.wg.Add(3)
	go c.leaseLoop()
	go c.deadLoop()
	go c.checkLoop()
	return nil
}

func lastSlash(s string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '/' {
			return i
		}
	}
	return -1
}

// Close settles what the node wrote, gives its grants back and revokes its
// lease. Holds still open stay registered for a survivor (or the node's
// next run) to settle.
func (c *Client) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	c.mu.Lock()
	ws := make([]*worker, 0, len(c.workers))
	for _, w := range c.workers {
		ws = append(ws, w)
	}
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.stop()
		}()
	}
	wg.Wait()
	c.cancel()
	c.wg.Wait()
	if id := clientv3.LeaseID(c.lease.Load()); id != 0 {
		ctx, cancel := context.WithTimeout(context.Background(), c.cfg.CallTimeout)
		_, err := c.cli.Revoke(ctx, id)
		cancel()
		if err != nil {
			return fmt.Errorf("grants: revoke lease: %w", c.wrap(err))
		}
	}
	return nil
}

// Room implements quota.Grants.
func (c *Client) Room(s quota.ScopeKey, need quota.Need) bool {
	deadline := time.Now().Add(c.cfg.Wait)
	select {
	case <-c.started:
	case <-c.ctx.Done():
		return false
	case <-time.After(c.cfg.Wait):
		return false
	}
	if c.closed.Load() {
		return false
	}
	w := c.worker(s)
	wt := &waiter{need: need, deadline: deadline, done: make(chan struct{})}
	w.addWaiter(wt)
	select {
	case <-wt.done:
		return wt.met
	case <-time.After(time.Until(deadline) + 100*time.Millisecond):
	case <-c.ctx.Done():
	}
	return false
}

// Notify implements quota.Grants: it only kicks the scope's worker.
func (c *Client) Notify(s quota.ScopeKey) {
	c.mu.Lock()
	if c.early != nil {
		c.early[s] = true
		c.mu.Unlock()
		return
	}
	w := c.workers[s]
	if w == nil && !c.closed.Load() {
		w = c.startWorkerLocked(s)
	}
	c.mu.Unlock()
	if w != nil {
		w.poke()
	}
}

func (c *Client) worker(s quota.ScopeKey) *worker {
	c.mu.Lock()
	defer c.mu.Unlock()
	if w := c.workers[s]; w != nil {
		return w
	}
	return c.startWorkerLocked(s)
}

func (c *Client) startWorkerLocked(s quota.ScopeKey) *worker {
	if w := c.workers[s]; w != nil {
		return w
	}
	w := newWorker(c, s)
	c.workers[s] = w
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		w.run()
	}()
	return w
}

// SetLimit sets a scope's limits in the cluster (0: none), the narrow
// call the daemon feeds from its metadata store. Lowering a limit below
// what is settled and granted blocks growth only: nodes give back what
// they do not use.
func (c *Client) SetLimit(ctx context.Context, s quota.ScopeKey, bytes, inodes int64) error {
	if bytes < 0 || inodes < 0 {
		return fmt.Errorf("%w: negative limit", ErrInvalid)
	}
	sk := scopeKey(s)
	key := c.k.record(sk)
	for {
		rec, rev, err := c.getRecord(ctx, key)
		if err != nil {
			return err
		}
		if rec == nil {
			rec = &record{}
		}
		if rec.Limit == bytes && rec.LimitInodes == inodes && rev != 0 {
			return nil
		}
		nr := rec.clone()
		nr.Limit, nr.LimitInodes = bytes, inodes
		if bytes < rec.Limit || inodes < rec.LimitInodes {
			nr.Recall++ // nodes give back what they do not use
		}
		resp, err := c.txn(ctx, clientv3.Compare(clientv3.ModRevision(key), "=", rev), clientv3.OpPut(key, encode(nr)))
		if err != nil {
			return err
		}
		if resp.Succeeded {
			if c.started != nil {
				c.Notify(s)
			}
			return nil
		}
	}
}

// DropFolder removes a purged folder's figure and registrations from the
// cluster figure: the scope's settled usage drops by the folder's, and
// later settlements of the folder are discarded. Every node drops the
// folder from its own ledger (quota.Manager.DropFolder).
func (c *Client) DropFolder(ctx context.Context, s quota.ScopeKey, folderID string) error {
	sk := scopeKey(s)
	rkey, fkey := c.k.record(sk), c.k.folder(sk, folderID)
	for {
		tr, err := c.txnFull(ctx, nil, []clientv3.Op{clientv3.OpGet(rkey), clientv3.OpGet(fkey)}, nil)
		if err != nil {
			return err
		}
		var rec *record
		var rev int64
		var fig figure
		var fexists bool
		if g := tr.Responses[0].GetResponseRange(); len(g.Kvs) == 1 {
			if rec, err = decode[record](g.Kvs[0].Value); err != nil {
				return fmt.Errorf("grants: scope record of %s: %w", s, err)
			}
			rev = g.Kvs[0].ModRevision
		}
		if g := tr.Responses[1].GetResponseRange(); len(g.Kvs) == 1 {
			if f, err := decode[figure](g.Kvs[0].Value); err == nil {
				fig, fexists = *f, true
			}
		}
		if rec == nil {
			rec = &record{}
		}
		nr := rec.clone()
		if nr.Dropped == nil {
			nr.Dropped = map[string]bool{}
		}
		nr.Dropped[folderID] = true
		nr.Settled -= fig.Bytes
		nr.SettledInodes -= fig.Inodes
		ops := []clientv3.Op{clientv3.OpPut(rkey, encode(nr)), clientv3.OpDelete(c.k.holdsIn(sk, folderID), clientv3.WithPrefix())}
		if fexists {
			ops = append(ops, clientv3.OpDelete(fkey))
		}
		put, err := c.txn(ctx, clientv3.Compare(clientv3.ModRevision(rkey), "=", rev), ops...)
		if err != nil {
			return err
		}
		if put.Succeeded {
			return nil
		}
	}
}

// Usage reads a scope's cluster-wide figure from the store: settled usage
// of all nodes plus this node's unsettled changes (what `quota-scope get`
// shows on any node; other nodes' changes show once settled).
func (c *Client) Usage(ctx context.Context, s quota.ScopeKey) (quota.Usage, error) {
	rec, _, err := c.getRecord(ctx, c.k.record(scopeKey(s)))
	if err != nil {
		return quota.Usage{}, err
	}
	if rec == nil {
		rec = &record{}
	}
	var ub, un int64
	if m := c.m.Load(); m != nil {
		_, _, ub, un = m.View(s)
	}
	return quota.Usage{Used: rec.Settled + ub, Limit: rec.Limit, UsedInodes: rec.SettledInodes + un, LimitInodes: rec.LimitInodes}, nil
}

// FolderUsage reads a folder's cluster-wide figure from the store plus
// this node's unsettled change of it (the `usage` of a folder on any node,
// also one this node never wrote to).
func (c *Client) FolderUsage(ctx context.Context, s quota.ScopeKey, folderID string) (quota.Usage, error) {
	sk := scopeKey(s)
	resp, err := c.get(ctx, c.k.folder(sk, folderID))
	if err != nil {
		return quota.Usage{}, err
	}
	var fig figure
	if len(resp.Kvs) == 1 {
		f, err := decode[figure](resp.Kvs[0].Value)
		if err != nil {
			return quota.Usage{}, fmt.Errorf("grants: folder figure %s: %w", folderID, err)
		}
		fig = *f
	}
	rec, _, err := c.getRecord(ctx, c.k.record(sk))
	if err != nil {
		return quota.Usage{}, err
	}
	if rec == nil {
		rec = &record{}
	}
	var ub, un int64
	if m := c.m.Load(); m != nil {
		ub, un = m.FolderUnsettled(s, folderID)
	}
	return quota.Usage{Used: max(fig.Bytes+ub, 0), Limit: rec.Limit, UsedInodes: max(fig.Inodes+un, 0), LimitInodes: rec.LimitInodes}, nil
}

// ScopeState is a scope's record as the store holds it.
type ScopeState struct {
	Limit, LimitInodes     int64
	Settled, SettledInodes int64
	Grants                 map[string]Grant
	Revision               int64
}

// Grant is one node's share of a scope.
type Grant struct {
	Bytes, Inodes int64
	Seq           uint64
}

// State reads a scope's record (for `vfolder node list`, tests, checks of
// the invariant).
func (c *Client) State(ctx context.Context, s quota.ScopeKey) (ScopeState, error) {
	rec, rev, err := c.getRecord(ctx, c.k.record(scopeKey(s)))
	if err != nil {
		return ScopeState{}, err
	}
	st := ScopeState{Grants: map[string]Grant{}, Revision: rev}
	if rec != nil {
		st.Limit, st.LimitInodes, st.Settled, st.SettledInodes = rec.Limit, rec.LimitInodes, rec.Settled, rec.SettledInodes
		for n, sh := range rec.Nodes {
			st.Grants[n] = Grant{Bytes: sh.Grant, Inodes: sh.GrantInodes, Seq: sh.Seq}
		}
	}
	return st, nil
}

// Stats are counters of the client.
type Stats struct {
	// Txns per scope: transactions this node sent on the scope's keys.
	Txns map[quota.ScopeKey]int64
	// Of them: hold registrations, grant requests (most also settle), and
	// those whose compare failed (and were sent again).
	Registrations, Asks, Conflicts map[quota.ScopeKey]int64
}

// Stats returns the client's counters.
func (c *Client) Stats() Stats {
	st := Stats{Txns: map[quota.ScopeKey]int64{}, Registrations: map[quota.ScopeKey]int64{}, Asks: map[quota.ScopeKey]int64{}, Conflicts: map[quota.ScopeKey]int64{}}
	c.mu.Lock()
	defer c.mu.Unlock()
	for s, w := range c.workers {
		st.Txns[s] = w.txns.Load()
		st.Registrations[s] = w.regs.Load()
		st.Asks[s] = w.asks.Load()
		st.Conflicts[s] = w.fails.Load()
	}
	return st
}

// ---- store calls ----

func (c *Client) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.cfg.CallTimeout)
}

func (c *Client) get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	cctx, cancel := c.callCtx(ctx)
	defer cancel()
	resp, err := c.cli.Get(cctx, key, opts...)
	c.noteCall(err)
	if err != nil {
		return nil, c.wrap(err)
	}
	return resp, nil
}

func (c *Client) getRecord(ctx context.Context, key string) (*record, int64, error) {
	resp, err := c.get(ctx, key)
	if err != nil {
		return nil, 0, err
	}
	if len(resp.Kvs) == 0 {
		return nil, 0, nil
	}
	rec, err := decode[record](resp.Kvs[0].Value)
	if err != nil {
		return nil, 0, fmt.Errorf("grants: scope record %s: %w", key, err)
	}
	return rec, resp.Kvs[0].ModRevision, nil
}

func (c *Client) txn(ctx context.Context, cmp clientv3.Cmp, ops ...clientv3.Op) (*clientv3.TxnResponse, error) {
	return c.txnFull(ctx, []clientv3.Cmp{cmp}, ops, nil)
}

func (c *Client) txnFull(ctx context.Context, cmps []clientv3.Cmp, ops, els []clientv3.Op) (*clientv3.TxnResponse, error) {
	cctx, cancel := c.callCtx(ctx)
	defer cancel()
	resp, err := c.cli.Txn(cctx).If(cmps...).Then(ops...).Else(els...).Commit()
	c.noteCall(err)
	if err != nil {
		return nil, c.wrap(err)
	}
	return resp, nil
}

// wrap marks errors of an unreachable store with ErrUnreachable.
func (c *Client) wrap(err error) error {
	if err == nil || errors.Is(err, ErrUnreachable) {
		return err
	}
	if errors.Is(err, context.Canceled) && c.ctx.Err() != nil {
		return fmt.Errorf("%w: %v", ErrClosed, err)
	}
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) && (ee == rpctypes.ErrCompacted || ee == rpctypes.ErrLeaseNotFound || ee == rpctypes.ErrDuplicateKey || ee == rpctypes.ErrTooManyOps) {
		return err
	}
	return fmt.Errorf("%w: %v", ErrUnreachable, err)
}

// noteCall keeps track of an outage, so that waits that end in EDQUOT can
// say why.
func (c *Client) noteCall(err error) {
	c.outageMu.Lock()
	defer c.outageMu.Unlock()
	if err == nil || !errors.Is(c.wrap(err), ErrUnreachable) {
		if !c.outageFrom.IsZero() {
			c.log.Info().Dur("after", time.Since(c.outageFrom)).Msg("grants: cluster store reachable again")
		}
		c.outageFrom, c.outageErr = time.Time{}, nil
		return
	}
	if c.outageFrom.IsZero() {
		c.outageFrom = time.Now()
		c.log.Warn().Err(err).Msg("grants: cluster store unreachable; writes go on inside held grants, growth beyond them waits")
	}
	c.outageErr = err
}

// outage returns the running outage, if any.
func (c *Client) outage() (time.Time, error) {
	c.outageMu.Lock()
	defer c.outageMu.Unlock()
	return c.outageFrom, c.outageErr
}

func (c *Client) manager() *quota.Manager { return c.m.Load() }
