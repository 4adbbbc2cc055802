package service

// Cluster quota: with Options.ClusterQuota (package quota/grants) one
// quota per scope holds across the nodes, and the figures, limits, purges
// and checks the API deals with are the cluster's:
//
//   - limits: every limit the ledger gets (applyLimit: at start, on every
//     change through this node, on every change another node made, which
//     arrives through the store's watcher) also goes to the cluster. A
//     change that arrives through the watcher is applied as the store
//     holds it then, not as the event says: two nodes that set one scope's
//     limit at once must not leave the cluster with the older one.
//   - usage: `quota-scope get` and `usage` read the cluster-wide figure
//     (settled usage of every node plus this node's unsettled changes); a
//     folder this node never wrote shows too.
//   - purge: the purging node drops the folder's figure from the cluster
//     before the record goes (a failure leaves the purge to resume); every
//     node drops it from its own ledger (dropFolder, also through the
//     watcher).
//   - check: one walk of the scope's folders corrects the cluster figure
//     (grants' cluster check), with writers on every node going on. The
//     node's own ledger is not compared with storage: files written
//     through other nodes are not in it, and a local repair would charge
//     them to this node.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/meta"
	"github.com/vfolder/vfolder/quota"
	"github.com/vfolder/vfolder/quota/grants"
)

// ClusterQuota is the cluster's side of the quota; *grants.Client
// implements it. nil on a node of its own.
type ClusterQuota interface {
	// SetLimit sets a scope's limits in the cluster (idempotent).
	SetLimit(ctx context.Context, s quota.ScopeKey, bytes, inodes int64) error
	// DropFolder removes a purged folder's figure from the cluster.
	DropFolder(ctx context.Context, s quota.ScopeKey, folderID string) error
	// Usage and FolderUsage read the cluster-wide figures.
	Usage(ctx context.Context, s quota.ScopeKey) (quota.Usage, error)
	FolderUsage(ctx context.Context, s quota.ScopeKey, folderID string) (quota.Usage, error)
	// Check compares the cluster figure of the folders with storage in
	// one walk and, with repair, corrects it.
	Check(ctx context.Context, s quota.ScopeKey, folders []quota.FolderRoot, repair bool) (*grants.CheckReport, error)
}

var _ ClusterQuota = (*grants.Client)(nil)

// clusterCallBound bounds the cluster calls made outside a request (limits
// applied at start and through the watcher); each call to etcd has its
// own, shorter, bound.
const clusterCallBound = 30 * time.Second

// clusterLimit hands a scope's limits to the cluster quota. limitMu is
// held.
func (s *Service) clusterLimit(sc meta.QuotaScope) error {
	cq := s.opts.ClusterQuota
	if cq == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(s.base, clusterCallBound)
	defer cancel()
	if err := cq.SetLimit(ctx, scopeKey(sc.Volume, sc.ID), sc.LimitBytes, sc.LimitInodes); err != nil {
		return fmt.Errorf("%w: quota scope %s on volume %q: the limit is stored but the cluster does not enforce it yet: %v",
			meta.ErrUnavailable, sc.ID, sc.Volume, err)
	}
	return nil
}

// currentScope is the store's record of a scope as it is now, for a limit
// change that arrived through the watcher: zero limits when it is gone.
func (s *Service) currentScope(ctx context.Context, sc meta.QuotaScope) (meta.QuotaScope, error) {
	cur, err := s.store.GetScope(ctx, sc.Volume, sc.ID)
	if errors.Is(err, meta.ErrNotFound) {
		sc.LimitBytes, sc.LimitInodes = 0, 0
		return sc, nil
	}
	return cur, err
}

// clusterDropFolder removes a purged folder's figure from the cluster.
func (s *Service) clusterDropFolder(ctx context.Context, f meta.Folder) error {
	cq := s.opts.ClusterQuota
	if cq == nil {
		return nil
	}
	return cq.DropFolder(ctx, scopeKey(f.Volume, f.Owner), f.ID)
}

// scopeUsage is the usage `quota-scope get` shows: the cluster's figure
// in cluster mode, the ledger's counters otherwise. When the cluster
// cannot be read the ledger's view of it (current within a second while
// etcd answered) is shown.
func (s *Service) scopeUsage(ctx context.Context, vol string, id meta.ScopeID) (int64, int64) {
	if cq := s.opts.ClusterQuota; cq != nil {
		u, err := cq.Usage(ctx, scopeKey(vol, id))
		if err == nil {
			return u.Used, u.UsedInodes
		}
		s.log.Debug().Err(err).Str("scope", id.String()).Msg("cluster usage unreadable; showing this node's view of it")
	}
	return s.opts.Usage.ScopeUsage(vol, id)
}

// folderUsage is a folder's usage, the cluster's in cluster mode.
func (s *Service) folderUsage(ctx context.Context, f meta.Folder) (int64, int64, error) {
	if cq := s.opts.ClusterQuota; cq != nil {
		u, err := cq.FolderUsage(ctx, scopeKey(f.Volume, f.Owner), f.ID)
		if err != nil {
			return 0, 0, fmt.Errorf("%w: usage of folder %q: %v", meta.ErrUnavailable, f.Name, err)
		}
		return u.Used, u.UsedInodes, nil
	}
	b, i := s.opts.Usage.FolderUsage(f.ID)
	return b, i, nil
}

// checkBusyRetries is how often a cluster check refused because another
// one of the scope runs is tried again, after checkBusyWait (a variable
// for tests).
const checkBusyRetries = 5

var checkBusyWait = 2 * time.Second

// checkCluster is CheckQuota in cluster mode: the folders are walked once
// by the cluster check, which compares and corrects the cluster figure.
// A check refused because another node checks the scope is tried again a
// few times.
func (s *Service) checkCluster(ctx context.Context, a *attached, k quota.ScopeKey, folders []meta.Folder, repair bool, out api.QuotaCheck) (api.QuotaCheck, error) {
	log := s.log.With().Str("scope", k.ID.String()).Str("volume", k.Volume).Bool("repair", repair).Logger()
	var roots []quota.FolderRoot
	byID := map[string]int{}
	defer func() {
		for _, r := range roots {
			r.Dir.Close()
		}
	}()
	for _, f := range folders {
		if !checkable(f.Status) {
			continue
		}
		fr := api.QuotaCheckFolder{FolderID: f.ID, Name: f.Name, Complete: true}
		dir, err := a.vol.OpenFolder(f.Owner, f.ID)
		if err != nil {
			fr.Errors = append(fr.Errors, fmt.Sprintf("cannot open the folder directory: %v", err))
			fr.Complete = false
			out.Complete = false
			log.Warn().Err(err).Str("folder", f.ID).Msg("quota check: folder directory cannot be opened")
		} else {
			roots = append(roots, quota.FolderRoot{FolderID: f.ID, Dir: dir})
		}
		byID[f.ID] = len(out.Folders)
		out.Folders = append(out.Folders, fr)
	}
	log.Info().Int("folders", len(roots)).Msg("cluster quota check started")
	var rep *grants.CheckReport
	var err error
	for try := 0; ; try++ {
		rep, err = s.opts.ClusterQuota.Check(ctx, k, roots, repair)
		if !errors.Is(err, grants.ErrBusy) || try >= checkBusyRetries || ctx.Err() != nil {
			break
		}
		log.Info().Err(err).Msg("cluster quota check busy; trying again")
		select {
		case <-ctx.Done():
		case <-time.After(checkBusyWait):
		}
	}
	if err != nil {
		if ctx.Err() != nil && s.checks.Err() != nil {
			return api.QuotaCheck{}, fmt.Errorf("%w: the quota check of %s on %q was interrupted by shutdown", ErrUnavailable, k.ID, k.Volume)
		}
		if rep == nil || len(rep.Folders) == 0 {
			return api.QuotaCheck{}, fmt.Errorf("%w: cluster quota check of %s on %q: %v", meta.ErrUnavailable, k.ID, k.Volume, err)
		}
		// Compared but not corrected: report what was found.
		log.Warn().Err(err).Msg("cluster quota check: corrections not applied")
		out.Complete = false
	}
	drift, fixed := 0, 0
	for _, fc := range rep.Folders {
		i, ok := byID[fc.FolderID]
		if !ok {
			continue
		}
		fr := &out.Folders[i]
		fr.LedgerBytes, fr.LedgerInodes = fc.Settled, fc.SettledInodes
		fr.DiskBytes, fr.DiskInodes = fc.Truth, fc.TruthInodes
		if fc.Busy {
			fr.Errors = append(fr.Errors, "not compared: "+fc.Reason)
			fr.Complete = false
			out.Complete = false
			out.Busy++
			continue
		}
		if db, dn := fc.Diff(); db != 0 || dn != 0 {
			log.Info().Str("folder", fc.FolderID).Int64("settled_bytes", fc.Settled).Int64("disk_bytes", fc.Truth).
				Int64("settled_inodes", fc.SettledInodes).Int64("disk_inodes", fc.TruthInodes).Bool("corrected", fc.Corrected).
				Msg("cluster quota check: a folder's figure differs from storage")
			drift++
			fr.Other++
			out.Counts[api.ProblemCounter]++
			if fc.Corrected {
				fixed++
				out.RepairedCount++
			}
			addFinding(&out, api.QuotaFinding{FolderID: fc.FolderID, Problem: api.ProblemCounter,
				LedgerBytes: fc.Settled, DiskBytes: fc.Truth, LedgerInodes: fc.SettledInodes, DiskInodes: fc.TruthInodes,
				Repaired: fc.Corrected})
		}
	}
	out.Drift = drift > 0
	out.Repaired = out.Drift && repair && fixed >= drift
	out.UsedBytes, out.UsedInodes = s.scopeUsage(ctx, k.Volume, k.ID)
	took := time.Since(out.StartedAt)
	out.Seconds = took.Seconds()
	ev := log.Info()
	if out.Drift && !out.Repaired {
		ev = log.Warn()
	}
	ev.Int("folders", len(out.Folders)).Bool("drift", out.Drift).Bool("repaired", out.Repaired).Int("busy", out.Busy).
		Bool("complete", out.Complete).Int64("used_bytes", out.UsedBytes).Dur("took", took.Round(time.Millisecond)).
		Msg("cluster quota check finished")
	return out, nil
}
