package grants

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vfolder/vfolder/quota"
)

// The cluster check compares a scope's cluster figure with storage in one
// walk, with writers on any node going on. It freezes the scope's settled
// figures for its duration and learns which inodes changed meanwhile:
//
//  1. The checker puts r/<scope> (phase 1) under its lease. Every live
//     node settles everything it has not settled and, at the instant of
//     that snapshot, starts a journal of the scope (quota.Manager.
//     StartJournal); then it settles nothing more of the scope until the
//     check ends (it still writes, inside grants it may still ask for),
//     and answers r/<scope>/a/<node> (phase 1).
//  2. When every live node has answered, the checker walks the folders.
//  3. It sets phase 2; every node answers again with its journal: each
//     inode it changed since its snapshot, with the figure the cluster
//     held for it before (its base).
//  4. The settled figures cannot have moved since phase 1. A folder's
//     settled figure is the figure of the inodes nobody changed plus the
//     bases of the journaled ones plus the hold records' figures (Base +
//     sum of C) of the other registered ones (a hold is in flight: its
//     figure is the one the cluster keeps for it); the walk gives the
//     truth of the first kind, which did not change while walked. The correction is
//     walk(unchanged) - (settled - bases - holds), applied in one
//     transaction that checks the folder figures did not move.
//
// A folder whose walk was incomplete, whose journal overflowed, or whose
// journals disagree on an inode is reported Busy and left alone. A node
// that does not answer within the wait makes the check fail with ErrBusy;
// dead nodes are taken over first. While a check runs, other nodes see
// the scope's figure as of its start (each node still counts its own
// growth at once).

// FolderCheck is one folder's result.
type FolderCheck struct {
	FolderID string
	// Settled figure of the cluster at the check's revision, and what it
	// should be by the walk.
	Settled, SettledInodes int64
	Truth, TruthInodes     int64
	// Busy: not compared (Reason says why).
	Busy      bool
	Reason    string
	Corrected bool
}

// Diff is how far the settled figure is from the truth.
func (f FolderCheck) Diff() (bytes, inodes int64) {
	return f.Truth - f.Settled, f.TruthInodes - f.SettledInodes
}

// CheckReport is the result of Check.
type CheckReport struct {
	Scope    quota.ScopeKey
	Folders  []FolderCheck
	Revision int64
	Repaired bool
}

// Drift reports whether a compared folder differs from storage.
func (r *CheckReport) Drift() bool {
	for _, f := range r.Folders {
		if b, n := f.Diff(); !f.Busy && (b != 0 || n != 0) {
			return true
		}
	}
	return false
}

func (c *Client) checkLoop() {
	defer c.wg.Done()
	ctx := c.ctx
	prefix := c.k.checks()
	var rev int64
	for ctx.Err() == nil {
		resp, err := c.get(ctx, prefix, clientv3.WithPrefix())
		if err != nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(500 * time.Millisecond):
			}
			continue
		}
		for _, kv := range resp.Kvs {
			c.followCheckKey(string(kv.Key), kv.Value, false)
		}
		rev = resp.Header.Revision
		break
	}
	for ctx.Err() == nil {
		wch := c.cli.Watch(clientv3.WithRequireLeader(ctx), prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
		for resp := range wch {
			if resp.Err() != nil {
				break
			}
			for _, ev := range resp.Events {
				c.followCheckKey(string(ev.Kv.Key), ev.Kv.Value, ev.Type == clientv3.EventTypeDelete)
			}
			rev = resp.Header.Revision
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// followCheckKey tells the scope's worker about a check record.
func (c *Client) followCheckKey(key string, val []byte, deleted bool) {
	rest := strings.TrimPrefix(key, c.k.checks())
	if strings.Count(rest, "/") != 1 {
		return // an answer
	}
	s, err := parseScopeKey(rest)
	if err != nil {
		return
	}
	if deleted {
		c.worker(s).setCheck(0, 0)
		return
	}
	cr, err := decode[checkRec](val)
	if err != nil {
		return
	}
	c.worker(s).setCheck(cr.Epoch, cr.Phase)
}

// Check compares the cluster figure of scope s with storage: the given
// folders are walked once (see the comment above). With repair the
// figures of the compared folders are corrected.
func (c *Client) Check(ctx context.Context, s quota.ScopeKey, folders []quota.FolderRoot, repair bool) (*CheckReport, error) {
	select {
	case <-c.started:
	default:
		return nil, ErrClosed
	}
	k := c.k
	sk := scopeKey(s)
	rep := &CheckReport{Scope: s}
	// Dead nodes first: their holds are settled from storage.
	if rec, _, err := c.getRecord(ctx, k.record(sk)); err != nil {
		return nil, err
	} else if rec != nil {
		for n := range rec.Nodes {
			if n == c.cfg.Node {
				continue
			}
			nr, err := c.get(ctx, k.node(n), clientv3.WithKeysOnly())
			if err != nil {
				return nil, err
			}
			if len(nr.Kvs) == 0 {
				if err := c.takeoverScope(ctx, n, s); err != nil && err != errAlive {
					return nil, fmt.Errorf("settle dead node %s: %w", n, err)
				}
			}
		}
	}
	epoch := rand.Uint32() | 1
	ckey := k.check(sk)
	lease := clientv3.LeaseID(c.lease.Load())
	tr, err := c.txnFull(ctx, []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(ckey), "=", 0)},
		[]clientv3.Op{clientv3.OpPut(ckey, encode(checkRec{Epoch: epoch, Phase: 1, By: c.cfg.Node}), clientv3.WithLease(lease))}, nil)
	if err != nil {
		return nil, err
	}
	if !tr.Succeeded {
		return nil, fmt.Errorf("%w: another check of %s runs", ErrBusy, s)
	}
	defer func() {
		cctx, cancel := c.callCtx(context.Background())
		defer cancel()
		c.cli.Txn(cctx).Then(clientv3.OpDelete(ckey), clientv3.OpDelete(k.answers(sk), clientv3.WithPrefix())).Commit()
	}()
	live1, err := c.waitAnswers(ctx, sk, epoch, 1, nil)
	if err != nil {
		return nil, err
	}
	// The walk.
	type obj struct{ bytes, inodes int64 }
	walked := make([]map[quota.InodeKey]obj, len(folders))
	complete := make([]bool, len(folders))
	for i, fr := range folders {
		walked[i] = map[quota.InodeKey]obj{}
		ok, err := quota.WalkFolder(ctx, fr.Dir, func(e quota.WalkEntry) error {
			walked[i][e.Ino] = obj{e.Bytes, e.Inodes}
			return nil
		})
		if err != nil && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		complete[i] = ok && err == nil
	}
	if _, err := c.txn(ctx, clientv3.Compare(clientv3.CreateRevision(ckey), ">", 0),
		clientv3.OpPut(ckey, encode(checkRec{Epoch: epoch, Phase: 2, By: c.cfg.Node}), clientv3.WithLease(lease))); err != nil {
		return nil, err
	}
	if _, err := c.waitAnswers(ctx, sk, epoch, 2, live1); err != nil {
		return nil, err
	}
	// One revision: the scope's keys and the answers.
	sresp, err := c.get(ctx, k.scope(sk), clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	R := sresp.Header.Revision
	aresp, err := c.get(ctx, k.answers(sk), clientv3.WithPrefix(), clientv3.WithRev(R))
	if err != nil {
		return nil, err
	}
	rep.Revision = R
	figs := map[string]figCache{}
	holds := map[string]map[quota.InodeKey]int64{} // folder -> inode -> figure
	for _, kv := range sresp.Kvs {
		key := string(kv.Key)
		switch {
		case k.isFolder(sk, key):
			if f, err := decode[figure](kv.Value); err == nil {
				figs[k.folderOf(sk, key)] = figCache{fig: *f, rev: kv.ModRevision}
			}
		case k.isHold(sk, key):
			hr, err := decode[holdRec](kv.Value)
			if err != nil {
				continue
			}
			folder, ino, err := k.holdOf(sk, key)
			if err != nil {
				continue
			}
			if holds[folder] == nil {
				holds[folder] = map[quota.InodeKey]int64{}
			}
			holds[folder][ino] = hr.Base + hr.sumC()
		}
	}
	type base struct {
		bytes, inodes int64
		conflict      bool
	}
	journal := map[string]map[quota.InodeKey]*base{}
	overflow := map[string]bool{}
	for _, kv := range aresp.Kvs {
		a, err := decode[answer](kv.Value)
		if err != nil || a.Epoch != epoch {
			continue
		}
		for _, f := range a.Overflow {
			overflow[f] = true
		}
		for _, e := range a.Journal {
			if journal[e.Folder] == nil {
				journal[e.Folder] = map[quota.InodeKey]*base{}
			}
			ino := quota.InodeKey{Dev: e.Dev, Ino: e.Ino}
			if old := journal[e.Folder][ino]; old != nil {
				if old.bytes != e.Bytes || old.inodes != e.Inodes {
					old.conflict = true
				}
				continue
			}
			journal[e.Folder][ino] = &base{bytes: e.Bytes, inodes: e.Inodes}
		}
	}
	deltas := map[string]figure{}
	for i, fr := range folders {
		id := fr.FolderID
		fc := FolderCheck{FolderID: id, Settled: figs[id].fig.Bytes, SettledInodes: figs[id].fig.Inodes}
		switch {
		case !complete[i]:
			fc.Busy, fc.Reason = true, "walk incomplete"
		case overflow[id]:
			fc.Busy, fc.Reason = true, "too many changes during the check"
		}
		// The settled figure of the inodes nobody changed, and the walk's.
		restB, restN := fc.Settled, fc.SettledInodes
		var walkB, walkN int64
		// An inode's settled figure: its journal base when a node changed
		// it (that is what the frozen figure holds for the inode number,
		// even when a new file took the number of a removed one), else its
		// hold record's.
		for ino, j := range journal[id] {
			if j.conflict {
				fc.Busy, fc.Reason = true, fmt.Sprintf("nodes disagree on inode %s", inoKey(ino))
			}
			restB -= j.bytes
			restN -= j.inodes
		}
		for ino, fig := range holds[id] {
			if journal[id][ino] == nil {
				restB -= fig
			}
		}
		for ino, o := range walked[i] {
			j := journal[id][ino]
			if _, ok := holds[id][ino]; !ok && j == nil {
				walkB += o.bytes
			}
			if j == nil {
				walkN += o.inodes
			}
		}
		fc.Truth, fc.TruthInodes = fc.Settled+walkB-restB, fc.SettledInodes+walkN-restN

		if fc.Busy {
			fc.Truth, fc.TruthInodes = fc.Settled, fc.SettledInodes
		} else if db, dn := fc.Diff(); db != 0 || dn != 0 {
			deltas[id] = figure{Bytes: db, Inodes: dn}
			fc.Corrected = repair
		}
		rep.Folders = append(rep.Folders, fc)
	}
	sort.Slice(rep.Folders, func(i, j int) bool { return rep.Folders[i].FolderID < rep.Folders[j].FolderID })
	if !repair || len(deltas) == 0 {
		return rep, nil
	}
	revs := map[string]int64{}
	for f := range deltas {
		revs[f] = figs[f].rev
	}
	if err := c.applyCorrections(ctx, sk, deltas, revs); err != nil {
		for i := range rep.Folders {
			rep.Folders[i].Corrected = false
		}
		return rep, err
	}
	rep.Repaired = true
	return rep, nil
}

// applyCorrections adds per-folder corrections to the scope's figures in
// one transaction, provided the folders' figures are still those of the
// check's revision (revs).
func (c *Client) applyCorrections(ctx context.Context, sk string, deltas map[string]figure, revs map[string]int64) error {
	k := c.k
	rkey := k.record(sk)
	for attempt := 0; attempt < 16; attempt++ {
		resp, err := c.get(ctx, k.scope(sk), clientv3.WithPrefix())
		if err != nil {
			return err
		}
		var rec *record
		var rev int64
		figs := map[string]figCache{}
		for _, kv := range resp.Kvs {
			key := string(kv.Key)
			switch {
			case k.isRecord(sk, key):
				if rec, err = decode[record](kv.Value); err != nil {
					return err
				}
				rev = kv.ModRevision
			case k.isFolder(sk, key):
				if f, err := decode[figure](kv.Value); err == nil {
					figs[k.folderOf(sk, key)] = figCache{fig: *f, rev: kv.ModRevision}
				}
			}
		}
		if rec == nil {
			rec = &record{}
		}
		nr := rec.clone()
		cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(rkey), "=", rev)}
		var ops []clientv3.Op
		for f, d := range deltas {
			if nr.Dropped[f] {
				continue
			}
			fc := figs[f]
			if fc.rev != revs[f] {
				return fmt.Errorf("%w: the figure of folder %s moved during the check", ErrBusy, f)
			}
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k.folder(sk, f)), "=", fc.rev))
			fig := figure{Bytes: fc.fig.Bytes + d.Bytes, Inodes: fc.fig.Inodes + d.Inodes}
			ops = append(ops, clientv3.OpPut(k.folder(sk, f), encode(fig)))
			nr.Settled += d.Bytes
			nr.SettledInodes += d.Inodes
		}
		ops = append(ops, clientv3.OpPut(rkey, encode(nr)))
		tr, err := c.txnFull(ctx, cmps, ops, nil)
		if err != nil {
			return err
		}
		if tr.Succeeded {
			return nil
		}
	}
	return errConflict
}

// waitAnswers waits until every live node answered the check's phase. The
// nodes alive at phase 1 (before) must still be there.
func (c *Client) waitAnswers(ctx context.Context, sk string, epoch uint32, phase int, before map[string]bool) (map[string]bool, error) {
	deadline := time.Now().Add(2*c.cfg.Wait + c.cfg.LeaseTTL)
	for {
		nresp, err := c.get(ctx, c.k.nodes(), clientv3.WithPrefix(), clientv3.WithKeysOnly())
		if err != nil {
			return nil, err
		}
		live := map[string]bool{}
		for _, kv := range nresp.Kvs {
			live[c.k.nodeOf(string(kv.Key))] = true
		}
		for n := range before {
			if !live[n] {
				return nil, fmt.Errorf("%w: node %s went away during the check", ErrBusy, n)
			}
		}
		aresp, err := c.get(ctx, c.k.answers(sk), clientv3.WithPrefix())
		if err != nil {
			return nil, err
		}
		done := map[string]bool{}
		for _, kv := range aresp.Kvs {
			if a, err := decode[answer](kv.Value); err == nil && a.Epoch == epoch && a.Phase >= phase {
				done[c.k.answerNode(sk, string(kv.Key))] = true
			}
		}
		var missing []string
		for n := range live {
			if !done[n] {
				missing = append(missing, n)
			}
		}
		if len(missing) == 0 {
			return live, nil
		}
		if time.Now().After(deadline) {
			sort.Strings(missing)
			return nil, fmt.Errorf("%w: nodes %v did not answer", ErrBusy, missing)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
