package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vfolder/vfolder/meta"
)

// Defaults of Options.
const (
	DefaultLeaseTTL       = 10 * time.Second
	DefaultRequestTimeout = 5 * time.Second
)

// Options configure Join.
type Options struct {
	// Client is the etcd client (the metadata store's); the Cluster does
	// not close it.
	Client *clientv3.Client
	// Prefix is the metadata store's key prefix P; the keys of this
	// package live under P "n/".
	Prefix string
	// Node is this node's id (see config.ValidateNodeID).
	Node string
	// Hostname, Version and StateDir describe the node in its record.
	// StateDir is also part of the instance identity (see the package
	// comment).
	Hostname, Version, StateDir string
	// LeaseTTL is the node's lease (whole seconds, default 10 s).
	LeaseTTL time.Duration
	// RequestTimeout bounds each call to etcd (default 5 s).
	RequestTimeout time.Duration
	Log            zerolog.Logger
}

// Node statuses.
const (
	// StatusAlive: the node's lease is alive.
	StatusAlive = "alive"
	// StatusStopped: the node stopped cleanly.
	StatusStopped = "stopped"
	// StatusExpired: the node's lease expired without a clean stop
	// (killed, crashed, cut off from etcd).
	StatusExpired = "expired"
)

// Node is one node as the registry knows it.
type Node struct {
	ID        string
	Hostname  string
	Version   string
	StateDir  string
	StartedAt time.Time
	// StoppedAt is set when the node stopped cleanly.
	StoppedAt time.Time
	// Status is StatusAlive, StatusStopped or StatusExpired.
	Status string
	// Self is true for the node that answers.
	Self bool
	// Sessions are the sessions the node holds folders for (its claims),
	// ordered by id. Only an alive node has any.
	Sessions []NodeSession
}

// NodeSession is one session of a node and the folders it mounts.
type NodeSession struct {
	ID      string
	Folders []string // folder ids, ordered
}

// nodeRecord is the value of P n/node/<id> and of P n/alive/<id>.
type nodeRecord struct {
	ID        string    `json:"id"`
	Hostname  string    `json:"hostname"`
	Version   string    `json:"version"`
	StateDir  string    `json:"state_dir"`
	Machine   string    `json:"machine_id,omitempty"`
	Boot      string    `json:"boot_id,omitempty"`
	PID       int       `json:"pid"`
	Lease     int64     `json:"lease"`
	StartedAt time.Time `json:"started_at"`
	StoppedAt time.Time `json:"stopped_at,omitzero"`
}

// sameInstance reports whether two records are of one instance: one
// machine, one boot, one state directory.
func (r nodeRecord) sameInstance(o nodeRecord) bool {
	return r.Machine == o.Machine && r.Boot == o.Boot && r.StateDir == o.StateDir && r.Boot != ""
}

// fenceRecord is the value of P n/fence/<folder>.
type fenceRecord struct {
	Node   string    `json:"node"`
	Action string    `json:"action"`
	Since  time.Time `json:"since"`
}

// claimRecord is the value of P n/claim/<folder>/<node>/<session>.
type claimRecord struct {
	Since time.Time `json:"since"`
}

// claimKey names one claim of this node.
type claimKey struct{ folder, session string }

// Cluster is this node's membership. See the package comment.
type Cluster struct {
	o        Options
	cli      *clientv3.Client
	n        string // P + "n/"
	self     nodeRecord
	log      zerolog.Logger
	ttl      int64 // seconds
	timeout  time.Duration
	endpoint string

	ctx    context.Context // ends with Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	sess     *concurrency.Session
	previous *concurrency.Session // the lease of the earlier process taken over at Join, kept alive until ReleasePrevious
	gen      int                  // bumped with every new lease
	claims   map[claimKey]bool
	closed   bool

	departed chan struct{}
}

// Join registers the node (its record, and its alive key under a new
// lease, taking over what an earlier process of this instance left) and
// starts keeping the lease alive and watching the other nodes.
func Join(ctx context.Context, o Options) (*Cluster, error) {
	if o.Client == nil || o.Node == "" {
		return nil, fmt.Errorf("%w: cluster: the etcd client and the node id are required", meta.ErrInvalid)
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = DefaultLeaseTTL
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	if o.Prefix == "" {
		o.Prefix = "/vfolder/"
	}
	if !strings.HasSuffix(o.Prefix, "/") {
		o.Prefix += "/"
	}
	ttl := int64(o.LeaseTTL / time.Second)
	if ttl < 1 {
		ttl = 1
	}
	c := &Cluster{
		o:        o,
		cli:      o.Client,
		n:        o.Prefix + "n/",
		log:      o.Log.With().Str("component", "cluster").Str("node", o.Node).Logger(),
		ttl:      ttl,
		timeout:  o.RequestTimeout,
		endpoint: strings.Join(o.Client.Endpoints(), ","),
		claims:   map[claimKey]bool{},
		departed: make(chan struct{}, 1),
		self: nodeRecord{
			ID: o.Node, Hostname: o.Hostname, Version: o.Version, StateDir: o.StateDir,
			Machine: readID("/etc/machine-id"), Boot: readID("/proc/sys/kernel/random/boot_id"),
			PID: os.Getpid(), StartedAt: time.Now().UTC().Truncate(time.Millisecond),
		},
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	if err := c.register(ctx, true); err != nil {
		c.cancel()
		return nil, err
	}
	c.wg.Add(2)
	go c.keepLease()
	go c.watchNodes()
	c.log.Info().Int64("lease_ttl_s", c.ttl).Msg("joined the cluster")
	return c, nil
}

// readID reads a one-line id file ("" if it cannot).
func readID(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// NodeID is this node's id.
func (c *Cluster) NodeID() string { return c.o.Node }

// call bounds one request to etcd.
func (c *Cluster) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.timeout)
}

// fail turns an error of the etcd client into this package's: an error
// wrapping meta.ErrUnavailable when etcd did not answer in time or cannot
// serve.
func (c *Cluster) fail(ctx context.Context, what string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, meta.ErrUnavailable) || errors.Is(err, meta.ErrConflict) || errors.Is(err, meta.ErrInvalid) {
		return err
	}
	code := codes.Unknown
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		code = ee.Code()
	} else if st, ok := status.FromError(err); ok {
		code = st.Code()
	}
	if errors.Is(err, rpctypes.ErrLeaseNotFound) || errors.Is(err, rpctypes.ErrGRPCLeaseNotFound) {
		return fmt.Errorf("%w: %s: the node's lease in etcd at %s has expired; the node is registering again", meta.ErrUnavailable, what, c.endpoint)
	}
	if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || code == codes.Unavailable || code == codes.DeadlineExceeded ||
		errors.Is(err, rpctypes.ErrNoSpace) || errors.Is(err, rpctypes.ErrGRPCNoSpace) {
		return fmt.Errorf("%w: %s: etcd at %s did not answer within %v: %v", meta.ErrUnavailable, what, c.endpoint, c.timeout, err)
	}
	return fmt.Errorf("cluster: %s: %w", what, err)
}

func (c *Cluster) nodeKey(id string) string  { return c.n + "node/" + id }
func (c *Cluster) aliveKey(id string) string { return c.n + "alive/" + id }
func (c *Cluster) fenceKey(folder string) string {
	return c.n + "fence/" + folder
}
func (c *Cluster) claimPrefix(folder string) string { return c.n + "claim/" + folder + "/" }
func (c *Cluster) claimKey(folder, session string) string {
	return c.claimPrefix(folder) + c.o.Node + "/" + session
}

func encode(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic("cluster: encode: " + err.Error()) // plain structs of strings and times
	}
	return string(b)
}

// lease returns the current lease and its generation.
func (c *Cluster) lease() (clientv3.LeaseID, int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.sess == nil {
		return 0, 0, fmt.Errorf("%w: cluster: the node has left the cluster", meta.ErrUnavailable)
	}
	return c.sess.Lease(), c.gen, nil
}

// register grants a new lease, puts the node's record and its alive key
// under it (see the package comment on taking over) and, after a lost
// lease, puts back the node's claims. first is true at Join.
func (c *Cluster) register(ctx context.Context, first bool) error {
	gctx, cancel := c.call(ctx)
	lg, err := c.cli.Grant(gctx, c.ttl)
	cancel()
	if err != nil {
		return c.fail(gctx, "grant the node's lease", err)
	}
	ok := false
	defer func() {
		if !ok {
			rctx, cancel := c.call(context.Background())
			_, _ = c.cli.Revoke(rctx, lg.ID)
			cancel()
		}
	}()
	rec := c.self
	rec.Lease = int64(lg.ID)
	rec.StoppedAt = time.Time{}
	alive := c.aliveKey(c.o.Node)
	waited := false
	// over is the alive key of an earlier process of this instance (or of
	// this process under a lease it lost) being taken over: the new
	// record replaces it, while its lease and the claims under it stay
	// until the claims are taken again (see the package comment).
	var over *mvccpb.KeyValue
	var previous clientv3.LeaseID
	for attempt := 0; ; attempt++ {
		guard := clientv3.Compare(clientv3.CreateRevision(alive), "=", 0)
		if over != nil {
			guard = clientv3.Compare(clientv3.ModRevision(alive), "=", over.ModRevision)
		}
		tctx, cancel := c.call(ctx)
		resp, err := c.cli.Txn(tctx).
			If(guard).
			Then(clientv3.OpPut(alive, encode(rec), clientv3.WithLease(lg.ID)), clientv3.OpPut(c.nodeKey(c.o.Node), encode(rec))).
			Else(clientv3.OpGet(alive)).
			Commit()
		cancel()
		if err != nil {
			return c.fail(tctx, "register the node", err)
		}
		if resp.Succeeded {
			break
		}
		over = nil
		var other nodeRecord
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) == 1 {
			_ = json.Unmarshal(kvs[0].Value, &other)
		}
		switch {
		case attempt > 3:
			return fmt.Errorf("%w: cluster: node id %q: its alive key keeps coming back", meta.ErrConflict, c.o.Node)
		case len(kvs) == 1 && other.Lease != 0 && rec.sameInstance(other):
			over, previous = kvs[0], clientv3.LeaseID(kvs[0].Lease)
			c.log.Info().Int("previous_pid", other.PID).Time("previous_start", other.StartedAt).
				Msg("taking over the registration an earlier run of this node left")
		case !waited:
			// Another instance: perhaps one that just died. Wait for
			// its lease to run out.
			waited = true
			c.log.Warn().Str("host", other.Hostname).Str("state_dir", other.StateDir).Dur("wait", time.Duration(c.ttl+1)*time.Second).
				Msg("node id is registered by another vfolderd; waiting for its lease to expire")
			if err := c.waitGone(ctx, alive, time.Duration(c.ttl+1)*time.Second); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%w: cluster: node id %q is in use by a live vfolderd on host %q (state directory %s, pid %d, since %s); give each node its own node_id (--node-id)",
				meta.ErrConflict, c.o.Node, other.Hostname, other.StateDir, other.PID, other.StartedAt.Local().Format(time.RFC3339))
		}
	}
	sess, err := concurrency.NewSession(c.cli, concurrency.WithLease(lg.ID), concurrency.WithContext(c.ctx))
	if err != nil {
		return c.fail(ctx, "keep the node's lease alive", err)
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		sess.Orphan()
		return fmt.Errorf("%w: cluster: closed", meta.ErrUnavailable)
	}
	c.sess = sess
	c.gen++
	var keys []claimKey
	for k := range c.claims {
		keys = append(keys, k)
	}
	c.mu.Unlock()
	ok = true
	if first {
		if previous != 0 {
			// The earlier process's operations died with it: recovery
			// must be able to take their folders over. Its claims stay
			// alive until ReleasePrevious.
			c.dropFences(ctx, previous)
			prev, err := concurrency.NewSession(c.cli, concurrency.WithLease(previous), concurrency.WithContext(c.ctx))
			if err != nil {
				c.log.Warn().Err(err).Msg("cannot keep the earlier run's lease alive; its claims run out by themselves")
			} else {
				c.mu.Lock()
				c.previous = prev
				c.mu.Unlock()
			}
		}
		return nil
	}
	if len(keys) > 0 {
		c.reclaim(ctx, lg.ID, keys)
	}
	if previous != 0 {
		c.revoke(ctx, previous)
	}
	return nil
}

// revoke ends a lease of an earlier registration of this node.
func (c *Cluster) revoke(ctx context.Context, lease clientv3.LeaseID) {
	rctx, cancel := c.call(ctx)
	defer cancel()
	if _, err := c.cli.Revoke(rctx, lease); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		c.log.Warn().Err(c.fail(rctx, "revoke an earlier lease of this node", err)).
			Msg("the earlier lease of this node runs out by itself")
	}
}

// dropFences removes the fences held under lease.
func (c *Cluster) dropFences(ctx context.Context, lease clientv3.LeaseID) {
	gctx, cancel := c.call(ctx)
	resp, err := c.cli.Get(gctx, c.n+"fence/", clientv3.WithPrefix())
	cancel()
	if err != nil {
		c.log.Warn().Err(c.fail(gctx, "list fences", err)).Msg("the fences of the earlier run of this node go with its lease")
		return
	}
	for _, kv := range resp.Kvs {
		if clientv3.LeaseID(kv.Lease) == lease {
			c.tryDropFence(clientv3.Compare(clientv3.CreateRevision(string(kv.Key)), "=", kv.CreateRevision), string(kv.Key))
		}
	}
}

// ReleasePrevious ends the lease an earlier process of this node left
// (taken over at Join): the claims of its sessions that this process did
// not claim again go with it. The daemon calls it once its sessions are
// reconciled; Close does it too.
func (c *Cluster) ReleasePrevious() {
	c.mu.Lock()
	prev := c.previous
	c.previous = nil
	c.mu.Unlock()
	if prev != nil {
		prev.Orphan()
		c.revoke(c.ctx, prev.Lease())
	}
}

// waitGone waits until key is deleted, at most d.
func (c *Cluster) waitGone(ctx context.Context, key string, d time.Duration) error {
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for wctx.Err() == nil {
		gctx, gcancel := c.call(wctx)
		resp, err := c.cli.Get(gctx, key)
		gcancel()
		if err == nil && len(resp.Kvs) == 0 {
			return nil
		}
		select {
		case <-wctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return nil
}

// reclaim puts back the claims of the node after its lease was lost, and
// reports folders that are no longer live.
func (c *Cluster) reclaim(ctx context.Context, lease clientv3.LeaseID, keys []claimKey) {
	val := encode(claimRecord{Since: time.Now().UTC()})
	for len(keys) > 0 {
		n := min(len(keys), 100)
		ops := make([]clientv3.Op, 0, n)
		for _, k := range keys[:n] {
			ops = append(ops, clientv3.OpPut(c.claimKey(k.folder, k.session), val, clientv3.WithLease(lease)))
		}
		tctx, cancel := c.call(ctx)
		_, err := c.cli.Txn(tctx).Then(ops...).Commit()
		cancel()
		if err != nil {
			c.log.Error().Err(c.fail(tctx, "put back the node's claims", err)).Int("claims", n).
				Msg("cannot put back the claims of the sessions of this node; their folders can be trashed elsewhere until the next publish")
		}
		keys = keys[n:]
	}
	c.log.Warn().Msg("the node's lease had expired: registered again and put back the claims of its sessions; folders trashed elsewhere meanwhile were not protected")
}

// keepLease registers the node again whenever its lease is lost, until
// Close.
func (c *Cluster) keepLease() {
	defer c.wg.Done()
	for {
		c.mu.Lock()
		sess := c.sess
		c.mu.Unlock()
		select {
		case <-c.ctx.Done():
			return
		case <-sess.Done():
		}
		if c.ctx.Err() != nil {
			return
		}
		c.log.Warn().Msg("the node's lease is lost (etcd did not answer for the lease TTL): its sessions do not keep their folders from the trash until it is registered again")
		backoff := 200 * time.Millisecond
		for c.ctx.Err() == nil {
			err := c.register(c.ctx, false)
			if err == nil {
				c.log.Warn().Msg("the node is registered again under a new lease")
				c.signalDeparted()
				break
			}
			c.log.Debug().Err(err).Msg("registering the node again")
			select {
			case <-c.ctx.Done():
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 2*time.Second)
		}
	}
}

// Departed signals (coalesced) that a node left the cluster: its alive key
// was deleted (a clean stop or an expired lease), or this node could not
// follow the others for a while. Recovery of what a dead node left runs
// on it.
func (c *Cluster) Departed() <-chan struct{} { return c.departed }

func (c *Cluster) signalDeparted() {
	select {
	case c.departed <- struct{}{}:
	default:
	}
}

// watchNodes follows the alive keys and signals Departed when one goes.
func (c *Cluster) watchNodes() {
	defer c.wg.Done()
	for c.ctx.Err() == nil {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(c.ctx))
		wch := c.cli.Watch(wctx, c.n+"alive/", clientv3.WithPrefix(), clientv3.WithFilterPut())
		for wr := range wch {
			if wr.Err() != nil || wr.Canceled {
				break
			}
			for _, ev := range wr.Events {
				c.log.Info().Str("departed", strings.TrimPrefix(string(ev.Kv.Key), c.n+"alive/")).Msg("a node left the cluster")
				c.signalDeparted()
			}
		}
		cancel()
		if c.ctx.Err() != nil {
			return
		}
		// Departures may have been missed: recovery looks anyway.
		c.signalDeparted()
		select {
		case <-c.ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// Close leaves the cluster: the node's record says it stopped, and its
// lease is revoked, so its alive key, claims and fences go at once.
// Without etcd the lease runs out by itself. Closing again is a no-op.
func (c *Cluster) Close() error {
	c.ReleasePrevious()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	sess := c.sess
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
	if sess == nil {
		return nil
	}
	sess.Orphan()
	rec := c.self
	rec.Lease = int64(sess.Lease())
	rec.StoppedAt = time.Now().UTC().Truncate(time.Millisecond)
	ctx, cancel := c.call(context.Background())
	defer cancel()
	var errs []error
	if _, err := c.cli.Put(ctx, c.nodeKey(c.o.Node), encode(rec)); err != nil {
		errs = append(errs, c.fail(ctx, "record the node's stop", err))
	}
	if _, err := c.cli.Revoke(ctx, sess.Lease()); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		errs = append(errs, c.fail(ctx, "revoke the node's lease", err))
	}
	if len(errs) > 0 {
		return fmt.Errorf("leaving the cluster (the lease runs out by itself): %w", errors.Join(errs...))
	}
	c.log.Info().Msg("left the cluster")
	return nil
}
