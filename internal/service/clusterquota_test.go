package service

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/meta"
	"github.com/vfolder/vfolder/quota"
	"github.com/vfolder/vfolder/quota/grants"
)

// fakeClusterQuota records what the service asks of the cluster quota.
type fakeClusterQuota struct {
	mu      sync.Mutex
	limits  map[quota.ScopeKey]int64
	sets    int
	dropped []string
	dropErr error
	busy    int // Check answers ErrBusy that many times first
	checked [][]string
	settled int64 // a folder's figure in the cluster; the walk finds truth
	truth   int64
}

func newFakeCQ() *fakeClusterQuota {
	return &fakeClusterQuota{limits: map[quota.ScopeKey]int64{}, settled: 10, truth: 25}
}

func (f *fakeClusterQuota) SetLimit(_ context.Context, s quota.ScopeKey, bytes, _ int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.limits[s] = bytes
	f.sets++
	return nil
}

func (f *fakeClusterQuota) DropFolder(_ context.Context, _ quota.ScopeKey, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.dropErr != nil {
		return f.dropErr
	}
	f.dropped = append(f.dropped, id)
	return nil
}

func (f *fakeClusterQuota) Usage(context.Context, quota.ScopeKey) (quota.Usage, error) {
	return quota.Usage{Used: 123, UsedInodes: 4}, nil
}

func (f *fakeClusterQuota) FolderUsage(context.Context, quota.ScopeKey, string) (quota.Usage, error) {
	return quota.Usage{Used: 55, UsedInodes: 2}, nil
}

func (f *fakeClusterQuota) Check(_ context.Context, s quota.ScopeKey, folders []quota.FolderRoot, repair bool) (*grants.CheckReport, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.busy > 0 {
		f.busy--
		return nil, grants.ErrBusy
	}
	var ids []string
	rep := &grants.CheckReport{Scope: s}
	for _, fr := range folders {
		ids = append(ids, fr.FolderID)
		fc := grants.FolderCheck{FolderID: fr.FolderID, Settled: f.settled, SettledInodes: 1, Truth: f.truth, TruthInodes: 1}
		if f.settled != f.truth && repair {
			fc.Corrected = true
			f.settled = f.truth
			rep.Repaired = true
		}
		rep.Folders = append(rep.Folders, fc)
	}
	f.checked = append(f.checked, ids)
	return rep, nil
}

func (f *fakeClusterQuota) limit(s quota.ScopeKey) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.limits[s]
}

// TestClusterQuota: with a cluster quota the service hands every limit to
// it (a change seen through the watcher as the store holds it now), shows
// its figures, checks through its one walk and drops a purged folder's
// figure from it before the record goes.
func TestClusterQuota(t *testing.T) {
	cq := newFakeCQ()
	ledger := newLimitLedger()
	e := newEnv(t, func(o *Options) { o.Quota, o.ClusterQuota = ledger, cq })
	ctx := context.Background()
	k := quota.ScopeKey{Volume: "local", ID: alice}

	f := e.create(t, "a", alice)
	if cq.sets == 0 {
		t.Error("the scope made by the create did not reach the cluster quota")
	}
	lim := int64(1000)
	if _, err := e.svc.SetQuota(ctx, "local", alice, api.SetQuotaRequest{LimitBytes: &lim}); err != nil {
		t.Fatal(err)
	}
	if cq.limit(k) != 1000 {
		t.Errorf("cluster limit %d after SetQuota; want 1000", cq.limit(k))
	}
	// A late event of an older limit: applied as the store holds it now.
	if err := ledger.SetLimit(k, 7, 0); err != nil {
		t.Fatal(err)
	}
	e.svc.scopeEvent(meta.QuotaScope{Volume: "local", ID: alice, LimitBytes: 5}, false)
	if cq.limit(k) != 1000 || ledger.limit("local", alice) != 1000 {
		t.Errorf("after a stale limit event: cluster %d, ledger %d; want the stored 1000", cq.limit(k), ledger.limit("local", alice))
	}

	q, err := e.svc.QuotaScope(ctx, "local", alice)
	if err != nil || q.UsedBytes != 123 || q.UsedInodes != 4 {
		t.Errorf("QuotaScope = %+v, %v; want the cluster's 123 bytes, 4 inodes", q, err)
	}
	u, err := e.svc.FolderUsage(ctx, "a", alice)
	if err != nil || u.UsedBytes != 55 || u.UsedInodes != 2 {
		t.Errorf("FolderUsage = %+v, %v; want the cluster's 55 bytes, 2 inodes", u, err)
	}

	old := checkBusyWait
	checkBusyWait = 10 * time.Millisecond
	defer func() { checkBusyWait = old }()
	cq.busy = 2 // another node's check runs: tried again
	rep, err := e.svc.CheckQuota(ctx, "local", alice, false)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Drift || rep.Repaired || len(rep.Folders) != 1 || rep.Folders[0].LedgerBytes != 10 || rep.Folders[0].DiskBytes != 25 ||
		rep.Counts[api.ProblemCounter] != 1 || len(rep.Findings) != 1 {
		t.Errorf("check: %+v", rep)
	}
	if len(cq.checked) != 1 || len(cq.checked[0]) != 1 || cq.checked[0][0] != f.ID {
		t.Errorf("folders walked by the cluster check: %v", cq.checked)
	}
	if rep, err = e.svc.CheckQuota(ctx, "local", alice, true); err != nil || !rep.Repaired || rep.RepairedCount != 1 {
		t.Errorf("check --repair: %+v, %v", rep, err)
	}
	if rep, err = e.svc.CheckQuota(ctx, "local", alice, false); err != nil || rep.Drift {
		t.Errorf("check after the repair: %+v, %v", rep, err)
	}

	// Purge: the cluster's figure goes before the record; a failure
	// leaves the folder to be purged again.
	if _, err := e.svc.Trash(ctx, "a", alice); err != nil {
		t.Fatal(err)
	}
	cq.dropErr = grants.ErrUnreachable
	if _, err := e.svc.Purge(ctx, f.ID, alice, "a"); err == nil || !errors.Is(err, grants.ErrUnreachable) {
		t.Errorf("purge with the cluster figure not dropped: %v", err)
	}
	if _, err := e.store.GetFolder(ctx, f.ID); err != nil {
		t.Errorf("the record went although the cluster still counts the folder: %v", err)
	}
	cq.dropErr = nil
	if err := e.svc.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	e.svc.Wait()
	if _, err := e.store.GetFolder(ctx, f.ID); !errors.Is(err, meta.ErrNotFound) {
		t.Errorf("the purge did not resume: %v", err)
	}
	if len(cq.dropped) != 1 || cq.dropped[0] != f.ID || !ledger.wasDropped(f.ID) {
		t.Errorf("dropped: cluster %v, ledger %v", cq.dropped, ledger.dropped)
	}
}
