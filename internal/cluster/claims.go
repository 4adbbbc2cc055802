package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vfolder/vfolder/meta"
)

// Claim records that session (on this node) mounts folder f, before the
// mount is made; see the package comment for the order of steps. It fails
// with an error wrapping meta.ErrConflict while a node holds a fence on the
// folder (naming the node and what it does), and with meta.ErrUnavailable
// when etcd does not answer. The caller must read the folder record again
// after Claim returns and back out (Release) unless it is still live.
//
// Claim and Release of one folder and session must not run at the same
// time (the service serialises them).
func (c *Cluster) Claim(ctx context.Context, f meta.Folder, session string) error {
	k := claimKey{f.ID, session}
	for {
		lease, gen, err := c.lease()
		if err != nil {
			return err
		}
		c.mu.Lock()
		held := c.claims[k]
		c.mu.Unlock()
		if held {
			return nil
		}
		fence := c.fenceKey(f.ID)
		tctx, cancel := c.call(ctx)
		resp, err := c.cli.Txn(tctx).
			If(clientv3.Compare(clientv3.CreateRevision(fence), "=", 0)).
			Then(clientv3.OpPut(c.claimKey(f.ID, session), encode(claimRecord{Since: time.Now().UTC()}), clientv3.WithLease(lease))).
			Else(clientv3.OpGet(fence)).
			Commit()
		cancel()
		if err != nil {
			return c.fail(tctx, "claim folder "+f.ID, err)
		}
		if !resp.Succeeded {
			return c.fencedError(f, resp.Responses[0].GetResponseRange().Kvs)
		}
		c.mu.Lock()
		if c.gen == gen {
			c.claims[k] = true
			c.mu.Unlock()
			return nil
		}
		// The lease changed while the claim was written under the old
		// one: write it again under the new one.
		c.mu.Unlock()
	}
}

// fencedError says which node holds the fence of f.
func (c *Cluster) fencedError(f meta.Folder, kvs []*mvccpb.KeyValue) error {
	var fr fenceRecord
	if len(kvs) == 1 {
		_ = json.Unmarshal(kvs[0].Value, &fr)
	}
	who := "node " + fr.Node
	if fr.Node == c.o.Node {
		who = "this node (" + fr.Node + ")"
	}
	if fr.Node == "" {
		who = "another node"
	}
	action := fr.Action
	if action == "" {
		action = "changed"
	}
	return fmt.Errorf("%w: folder %q is being %s through %s; try again once that is done", meta.ErrConflict, f.Name, action, who)
}

// Release drops the claims of this node that held (called with a folder
// id and a session id) says are no longer held. Claims that cannot be
// removed now (etcd away) stay, and are tried again at the next Release:
// a claim too many keeps a folder from the trash, never the reverse.
func (c *Cluster) Release(ctx context.Context, held func(folderID, session string) bool) {
	c.mu.Lock()
	var drop []claimKey
	for k := range c.claims {
		if !held(k.folder, k.session) {
			drop = append(drop, k)
		}
	}
	c.mu.Unlock()
	for len(drop) > 0 {
		n := min(len(drop), 100)
		ops := make([]clientv3.Op, 0, n)
		for _, k := range drop[:n] {
			ops = append(ops, clientv3.OpDelete(c.claimKey(k.folder, k.session)))
		}
		tctx, cancel := c.call(ctx)
		_, err := c.cli.Txn(tctx).Then(ops...).Commit()
		cancel()
		if err != nil {
			c.log.Warn().Err(c.fail(tctx, "release claims", err)).Int("claims", n).
				Msg("cannot release claims of ended sessions yet; their folders stay protected until the next try")
			return
		}
		c.mu.Lock()
		for _, k := range drop[:n] {
			delete(c.claims, k)
		}
		c.mu.Unlock()
		drop = drop[n:]
	}
}

// Claimed reports whether this node holds a claim of the folder for the
// session.
func (c *Cluster) Claimed(folderID, session string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.claims[claimKey{folderID, session}]
}

// holders names the claims in kvs (keys below P n/claim/<folder>/).
func (c *Cluster) holders(folder string, kvs []*mvccpb.KeyValue) []string {
	var out []string
	for _, kv := range kvs {
		rest := strings.TrimPrefix(string(kv.Key), c.claimPrefix(folder))
		node, sess, ok := strings.Cut(rest, "/")
		if !ok {
			continue
		}
		out = append(out, fmt.Sprintf("session %s on node %s", sess, node))
	}
	sort.Strings(out)
	return out
}

func (c *Cluster) mountedError(f meta.Folder, holders []string, action string) error {
	return fmt.Errorf("%w: folder %q is mounted by %s; it cannot be %s until they end", meta.ErrConflict, f.Name, strings.Join(holders, ", "), action)
}

// Fence takes folder f out of reach of new claims while the caller does
// action to it ("trashed", "purged", "created", "recovered"): it writes
// the fence and reads the folder's claims in one transaction. Any claim
// makes it remove the fence again and fail with an error wrapping
// meta.ErrConflict that names every session and its node; a fence another
// operation holds fails likewise.
//
// After changing the folder's status the caller calls check, which
// returns nil when the fence stood all along, or when it was lost (the
// node's lease expired) but no claim appeared; else an error naming the
// claims, and the caller must undo its change. release removes the fence
// (retrying in the background while etcd is away).
func (c *Cluster) Fence(ctx context.Context, f meta.Folder, action string) (check func(context.Context) error, release func(), err error) {
	lease, _, err := c.lease()
	if err != nil {
		return nil, nil, err
	}
	key := c.fenceKey(f.ID)
	val := encode(fenceRecord{Node: c.o.Node, Action: action, Since: time.Now().UTC()})
	tctx, cancel := c.call(ctx)
	resp, err := c.cli.Txn(tctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, val, clientv3.WithLease(lease)), clientv3.OpGet(c.claimPrefix(f.ID), clientv3.WithPrefix(), clientv3.WithKeysOnly())).
		Else(clientv3.OpGet(key)).
		Commit()
	cancel()
	if err != nil {
		// The fence may have been written, the answer lost: remove it
		// (by its value, which no other fence has).
		c.dropFenceLater(clientv3.Compare(clientv3.Value(key), "=", val), key)
		return nil, nil, c.fail(tctx, "fence folder "+f.ID, err)
	}
	if !resp.Succeeded {
		return nil, nil, c.fencedError(f, resp.Responses[0].GetResponseRange().Kvs)
	}
	rev := resp.Header.Revision
	if claims := resp.Responses[1].GetResponseRange().Kvs; len(claims) > 0 {
		c.dropFence(key, rev)
		return nil, nil, c.mountedError(f, c.holders(f.ID, claims), action)
	}
	check = func(ctx context.Context) error {
		tctx, cancel := c.call(ctx)
		defer cancel()
		resp, err := c.cli.Txn(tctx).
			If(clientv3.Compare(clientv3.CreateRevision(key), "=", rev)).
			Else(clientv3.OpGet(c.claimPrefix(f.ID), clientv3.WithPrefix(), clientv3.WithKeysOnly())).
			Commit()
		if err != nil {
			return c.fail(tctx, "check the fence of folder "+f.ID, err)
		}
		if resp.Succeeded {
			return nil
		}
		if claims := resp.Responses[0].GetResponseRange().Kvs; len(claims) > 0 {
			c.log.Warn().Str("folder", f.ID).Msg("the fence of a folder was lost with the node's lease and a session claimed the folder meanwhile")
			return c.mountedError(f, c.holders(f.ID, claims), action)
		}
		return nil
	}
	release = func() { c.dropFence(key, rev) }
	return check, release, nil
}

// dropFence removes the fence key written at revision rev, retrying in the
// background while etcd does not answer.
func (c *Cluster) dropFence(key string, rev int64) {
	if !c.tryDropFence(clientv3.Compare(clientv3.CreateRevision(key), "=", rev), key) {
		c.dropFenceLater(clientv3.Compare(clientv3.CreateRevision(key), "=", rev), key)
	}
}

// tryDropFence removes the fence at key if cmp holds; it reports whether
// etcd answered.
func (c *Cluster) tryDropFence(cmp clientv3.Cmp, key string) bool {
	ctx, cancel := c.call(c.ctx)
	defer cancel()
	_, err := c.cli.Txn(ctx).If(cmp).Then(clientv3.OpDelete(key)).Commit()
	return err == nil
}

// dropFenceLater retries tryDropFence every second until etcd answers or
// the node leaves the cluster (its lease, and the fence with it, is
// revoked then).
func (c *Cluster) dropFenceLater(cmp clientv3.Cmp, key string) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.wg.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.wg.Done()
		for {
			select {
			case <-c.ctx.Done():
				return
			case <-time.After(time.Second):
			}
			if c.tryDropFence(cmp, key) {
				return
			}
		}
	}()
}

// Nodes lists every node the registry knows, with the sessions of the
// alive ones, read at one revision, ordered by id.
func (c *Cluster) Nodes(ctx context.Context) ([]Node, error) {
	tctx, cancel := c.call(ctx)
	defer cancel()
	resp, err := c.cli.Txn(tctx).Then(
		clientv3.OpGet(c.n+"node/", clientv3.WithPrefix()),
		clientv3.OpGet(c.n+"alive/", clientv3.WithPrefix()),
		clientv3.OpGet(c.n+"claim/", clientv3.WithPrefix(), clientv3.WithKeysOnly()),
	).Commit()
	if err != nil {
		return nil, c.fail(tctx, "list the nodes", err)
	}
	alive := map[string]nodeRecord{}
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		var r nodeRecord
		if json.Unmarshal(kv.Value, &r) == nil {
			alive[strings.TrimPrefix(string(kv.Key), c.n+"alive/")] = r
		}
	}
	// node -> session -> folders
	sessions := map[string]map[string][]string{}
	for _, kv := range resp.Responses[2].GetResponseRange().Kvs {
		parts := strings.Split(strings.TrimPrefix(string(kv.Key), c.n+"claim/"), "/")
		if len(parts) != 3 {
			continue
		}
		folder, node, sess := parts[0], parts[1], parts[2]
		if sessions[node] == nil {
			sessions[node] = map[string][]string{}
		}
		sessions[node][sess] = append(sessions[node][sess], folder)
	}
	var out []Node
	for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
		var r nodeRecord
		if err := json.Unmarshal(kv.Value, &r); err != nil {
			c.log.Warn().Err(err).Str("key", string(kv.Key)).Msg("unreadable node record")
			continue
		}
		n := Node{ID: r.ID, Hostname: r.Hostname, Version: r.Version, StateDir: r.StateDir,
			StartedAt: r.StartedAt, StoppedAt: r.StoppedAt, Self: r.ID == c.o.Node, Status: StatusExpired}
		if a, ok := alive[r.ID]; ok {
			// The alive key is of the running process.
			n.Status, n.Hostname, n.Version, n.StateDir, n.StartedAt, n.StoppedAt = StatusAlive, a.Hostname, a.Version, a.StateDir, a.StartedAt, time.Time{}
			ids := make([]string, 0, len(sessions[r.ID]))
			for id := range sessions[r.ID] {
				ids = append(ids, id)
			}
			sort.Strings(ids)
			for _, id := range ids {
				fs := sessions[r.ID][id]
				sort.Strings(fs)
				n.Sessions = append(n.Sessions, NodeSession{ID: id, Folders: fs})
			}
		} else if !r.StoppedAt.IsZero() {
			n.Status = StatusStopped
		}
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}
