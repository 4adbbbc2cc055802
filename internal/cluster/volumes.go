package cluster

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/vfolder/vfolder/meta"
)

// ShareVolume records this node's configuration of volume v in store (the
// metadata store on the same etcd), under the etcd mutex P n/lock/volumes
// (see the package comment): a missing record is written, an equal one
// accepted, a different one replaced only while no other node is alive;
// otherwise it fails with an error wrapping meta.ErrConflict that names
// the differing settings and the live nodes.
func (c *Cluster) ShareVolume(ctx context.Context, store meta.Store, v meta.Volume) error {
	c.mu.Lock()
	sess := c.sess
	c.mu.Unlock()
	if sess == nil {
		return fmt.Errorf("%w: cluster: the node has left the cluster", meta.ErrUnavailable)
	}
	mu := concurrency.NewMutex(sess, c.n+"lock/volumes")
	lctx, cancel := c.call(ctx)
	err := mu.Lock(lctx)
	cancel()
	if err != nil {
		return c.fail(lctx, "lock the volume records", err)
	}
	defer func() {
		uctx, cancel := c.call(context.Background())
		defer cancel()
		if err := mu.Unlock(uctx); err != nil {
			// The lock key is under the lease: it goes with it at worst.
			c.log.Warn().Err(err).Msg("cannot unlock the volume records")
		}
	}()
	stored, err := store.GetVolume(ctx, v.Name)
	switch {
	case errors.Is(err, meta.ErrNotFound):
		return store.PutVolume(ctx, v)
	case err != nil:
		return err
	case stored == v:
		return nil
	}
	diff := volumeDiff(stored, v)
	others, err := c.otherAlive(ctx)
	if err != nil {
		return err
	}
	if len(others) > 0 {
		return fmt.Errorf("%w: volume %q: this node's configuration (%s) differs from the cluster's record (%s), which the live node(s) %s serve; give [volumes.%s] the same settings on every node (the record changes when a node starts with new settings while no other node is alive)",
			meta.ErrConflict, v.Name, strings.Join(diff.mine, ", "), strings.Join(diff.theirs, ", "), strings.Join(others, ", "), v.Name)
	}
	if err := store.PutVolume(ctx, v); err != nil {
		return err
	}
	c.log.Warn().Str("volume", v.Name).Strs("now", diff.mine).Strs("was", diff.theirs).
		Msg("volume record replaced with this node's configuration (no other node is alive)")
	return nil
}

// VolumeDiff describes how two records of one volume differ, as
// "setting=value" strings of each ("" when they are equal).
func VolumeDiff(a, b meta.Volume) string {
	d := volumeDiff(a, b)
	if len(d.mine) == 0 {
		return ""
	}
	return strings.Join(d.mine, ", ") + " instead of " + strings.Join(d.theirs, ", ")
}

type diff struct{ theirs, mine []string }

func volumeDiff(stored, mine meta.Volume) diff {
	var d diff
	add := func(name string, a, b any) {
		if fmt.Sprint(a) != fmt.Sprint(b) {
			d.theirs = append(d.theirs, fmt.Sprintf("%s=%v", name, a))
			d.mine = append(d.mine, fmt.Sprintf("%s=%v", name, b))
		}
	}
	chown := func(c meta.ChownPolicy) meta.ChownPolicy {
		if c == "" {
			return meta.ChownIgnore
		}
		return c
	}
	add("path", stored.Path, mine.Path)
	add("rw_can_delete", stored.RWCanDelete, mine.RWCanDelete)
	add("mount_allowed", stored.MountAllowed, mine.MountAllowed)
	add("clone_allowed", stored.CloneAllowed, mine.CloneAllowed)
	add("chown", chown(stored.Chown), chown(mine.Chown))
	add("require_mount", stored.RequireMount, mine.RequireMount)
	return d
}

// otherAlive lists the alive nodes other than this one.
func (c *Cluster) otherAlive(ctx context.Context) ([]string, error) {
	tctx, cancel := c.call(ctx)
	defer cancel()
	resp, err := c.cli.Get(tctx, c.n+"alive/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, c.fail(tctx, "list the live nodes", err)
	}
	var out []string
	for _, kv := range resp.Kvs {
		if id := strings.TrimPrefix(string(kv.Key), c.n+"alive/"); id != c.o.Node {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out, nil
}
