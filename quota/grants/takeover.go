package grants

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vfolder/vfolder/quota"
)

// Takeover: settling a dead node. A node whose lease expired (killed,
// powered off, partitioned) leaves in each scope it used a share (its
// grant and last settlement) and hold records of the inodes it had open
// for writing, each with the size the node last settled for it (its
// view). A node grows an inode only after the inode's hold is registered,
// so what it wrote and did not settle is in those inodes: a survivor
// looks at each on storage and settles size - view for the dead node; then
// the dead node's grant goes back to the pool, in the same transaction, and
// the survivor leaves a takeover record for the dead node's next run (which
// then counts those changes as settled, see worker.reconcileTakeover).
// What the dead node did outside registered holds and did not settle
// (removals of files it did not hold, directories, symlinks; at most one
// SettleInterval of them) is not seen by the survivor: its next run
// settles it, or the cluster check.
//
// Survivors find dead nodes by watching the node keys and, every few
// lease TTLs, by listing the memberships of nodes without a node key. One
// survivor claims a dead node under its own lease; every transaction of
// the takeover also checks that the dead node's key is still absent, so a
// node that comes back first makes the takeover fail harmlessly.

func (c *Client) deadLoop() {
	defer c.wg.Done()
	ctx := c.ctx
	wch := c.cli.Watch(clientv3.WithRequireLeader(ctx), c.k.nodes(), clientv3.WithPrefix(), clientv3.WithFilterPut())
	sweep := time.NewTicker(2 * c.cfg.LeaseTTL)
	defer sweep.Stop()
	first := time.After(time.Second)
	for {
		select {
		case <-ctx.Done():
			return
		case resp, ok := <-wch:
			if !ok {
				wch = c.cli.Watch(clientv3.WithRequireLeader(ctx), c.k.nodes(), clientv3.WithPrefix(), clientv3.WithFilterPut())
				continue
			}
			for _, ev := range resp.Events {
				if ev.Type == clientv3.EventTypeDelete {
					if n := c.k.nodeOf(string(ev.Kv.Key)); n != c.cfg.Node {
						c.takeoverNode(n)
					} else {
						c.lostLease()
					}
				}
			}
		case <-first:
			c.sweepDead()
		case <-sweep.C:
			c.sweepDead()
		}
	}
}

// sweepDead takes over nodes that have memberships but no node key.
func (c *Client) sweepDead() {
	resp, err := c.get(c.ctx, c.k.p+"m/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return
	}
	seen := map[string]bool{}
	for _, kv := range resp.Kvs {
		rest := c.k.nodeOfMember(string(kv.Key))
		n, _, ok := strings.Cut(rest, "/")
		if !ok || seen[n] {
			continue
		}
		seen[n] = true
		node := unescape(n)
		if node == c.cfg.Node {
			continue
		}
		nr, err := c.get(c.ctx, c.k.node(node), clientv3.WithKeysOnly())
		if err == nil && len(nr.Kvs) == 0 {
			c.takeoverNode(node)
		}
	}
}

// takeoverNode settles every scope of a dead node, if this node gets the
// claim.
func (c *Client) takeoverNode(dead string) {
	if c.frozen.Load() || c.closed.Load() {
		return
	}
	ctx := c.ctx
	claim := c.k.claim(dead)
	tr, err := c.txnFull(ctx, []clientv3.Cmp{
		clientv3.Compare(clientv3.CreateRevision(c.k.node(dead)), "=", 0),
		clientv3.Compare(clientv3.CreateRevision(claim), "=", 0),
	}, []clientv3.Op{clientv3.OpPut(claim, c.cfg.Node, clientv3.WithLease(clientv3.LeaseID(c.lease.Load())))}, nil)
	if err != nil || !tr.Succeeded {
		return
	}
	defer func() {
		cctx, cancel := c.callCtx(context.Background())
		c.cli.Delete(cctx, claim)
		cancel()
	}()
	resp, err := c.get(ctx, c.k.members(dead), clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return
	}
	for _, kv := range resp.Kvs {
		sk := c.k.memberScope(dead, string(kv.Key))
		s, err := parseScopeKey(sk)
		if err != nil {
			continue
		}
		if err := c.takeoverScope(ctx, dead, s); err != nil {
			c.log.Warn().Err(err).Str("dead", dead).Str("scope", s.String()).Msg("grants: settling a dead node's scope failed; retried at the next sweep")
			continue
		}
	}
}

// TakeOver settles a dead node's share of one scope now (the daemon's
// `node forget`, tests). It fails if the node is alive.
func (c *Client) TakeOver(ctx context.Context, dead string, s quota.ScopeKey) error {
	if dead == c.cfg.Node {
		return fmt.Errorf("%w: cannot take over this node", ErrInvalid)
	}
	return c.takeoverScope(ctx, dead, s)
}

var errAlive = errors.New("the node is alive")

func (c *Client) takeoverScope(ctx context.Context, dead string, s quota.ScopeKey) error {
	k := c.k
	sk := scopeKey(s)
	rkey := k.record(sk)
	for attempt := 0; attempt < 8; attempt++ {
		resp, err := c.get(ctx, k.scope(sk), clientv3.WithPrefix())
		if err != nil {
			return err
		}
		var rec *record
		var rev int64
		figs := map[string]figure{}
		type hold struct {
			key    string
			folder string
			ino    quota.InodeKey
			rec    *holdRec
			rev    int64
		}
		var holds []hold
		for _, kv := range resp.Kvs {
			key := string(kv.Key)
			switch {
			case k.isRecord(sk, key):
				if rec, err = decode[record](kv.Value); err != nil {
					return fmt.Errorf("grants: scope record %s: %w", key, err)
				}
				rev = kv.ModRevision
			case k.isFolder(sk, key):
				if f, err := decode[figure](kv.Value); err == nil {
					figs[k.folderOf(sk, key)] = *f
				}
			case k.isHold(sk, key):
				hr, err := decode[holdRec](kv.Value)
				if err != nil || hr.E[dead] == nil {
					continue
				}
				folder, ino, err := k.holdOf(sk, key)
				if err != nil {
					continue
				}
				holds = append(holds, hold{key, folder, ino, hr, kv.ModRevision})
			}
		}
		var sh *share
		if rec != nil {
			sh = rec.Nodes[dead]
		}
		if sh == nil && len(holds) == 0 {
			_, err := c.txnFull(ctx, []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(k.node(dead)), "=", 0)},
				[]clientv3.Op{clientv3.OpDelete(k.member(dead, sk))}, nil)
			return err
		}
		if rec == nil {
			rec = &record{}
		}
		nr := rec.clone()
		var seq uint64
		if sh != nil {
			seq = sh.Seq
		}
		// At most batchItems holds per transaction; the share goes (and the
		// grant back to the pool) with the last one.
		batch := holds
		last := true
		if len(batch) > batchItems {
			batch, last = batch[:batchItems], false
		}
		cmps := []clientv3.Cmp{
			clientv3.Compare(clientv3.CreateRevision(k.node(dead)), "=", 0),
			clientv3.Compare(clientv3.ModRevision(rkey), "=", rev),
		}
		var ops []clientv3.Op
		deltas := map[string]int64{}
		tk := takeover{By: c.cfg.Node, Seq: seq}
		for _, h := range batch {
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(h.key), "=", h.rev))
			e := h.rec.E[dead]
			size, found, err := c.inodeSize(s, h.folder, h.ino, h.rec.Hint)
			if err != nil {
				return fmt.Errorf("look at %s in folder %s: %w", inoKey(h.ino), h.folder, err)
			}
			if !found {
				ops = append(ops, clientv3.OpPut(k.tomb(sk, h.folder, h.ino), encode(tombRec{At: time.Now().UnixMilli()})))
			}
			hr := h.rec.clone()
			d := size - e.View
			app := d
			if d < 0 && hr.Contested {
				app = 0
				hr.E[dead].Held += d
			}
			hr.E[dead].C += app
			hr.E[dead].View = size
			hr.E[dead].Open = false
			deltas[h.folder] += app
			tk.Holds = append(tk.Holds, takeoverHold{Folder: h.folder, Dev: h.ino.Dev, Ino: h.ino.Ino, View: e.View})
			switch {
			case hr.openOthers(dead):
				ops = append(ops, clientv3.OpPut(h.key, encode(hr)))
			case hr.Contested || len(hr.E) > 1:
				deltas[h.folder] += size - (hr.Base + hr.sumC())
				ops = append(ops, clientv3.OpDelete(h.key))
			default:
				ops = append(ops, clientv3.OpDelete(h.key))
			}
		}
		var tot int64
		for f, d := range deltas {
			if nr.Dropped[f] || d == 0 {
				continue
			}
			fig := figs[f]
			fig.Bytes += d
			tot += d
			ops = append(ops, clientv3.OpPut(k.folder(sk, f), encode(fig)))
		}
		nr.Settled += tot
		if last {
			delete(nr.Nodes, dead)
			ops = append(ops, clientv3.OpDelete(k.member(dead, sk)))
		}
		ops = append(ops, clientv3.OpPut(rkey, encode(nr)))
		ops = append(ops, clientv3.OpPut(fmt.Sprintf("%s%d", k.takeoversIn(dead, sk), resp.Header.Revision), encode(tk)))
		c.log.Debug().Str("dead", dead).Int("holds", len(batch)).Bool("share", sh != nil).Msg("grants: taking over")
		tr, err := c.txnFull(ctx, cmps, ops, []clientv3.Op{clientv3.OpGet(k.node(dead), clientv3.WithKeysOnly())})
		if err != nil {
			return err
		}
		if !tr.Succeeded {
			if g := tr.Responses[0].GetResponseRange(); g != nil && len(g.Kvs) > 0 {
				return errAlive
			}
			continue
		}
		c.log.Info().Str("dead", dead).Str("scope", s.String()).Int("holds", len(batch)).Int64("settled", tot).Bool("last", last).
			Msg("grants: settled a dead node's holds from storage")
		if last {
			return nil
		}
		attempt = -1 // the next batch
	}
	return errConflict
}

// inodeSize is what storage holds for an inode now, for the client (the
// worker has its own, bound to its scope).
func (c *Client) inodeSize(s quota.ScopeKey, folder string, ino quota.InodeKey, hint string) (int64, bool, error) {
	w := &worker{c: c, s: s}
	return w.inodeSize(folder, ino, hint)
}
