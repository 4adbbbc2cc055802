package service

// Quota: the service's side of the quota ledger (package quota).
//
// The store's scope records are the source of truth for limits; the ledger
// enforces them. StartQuota gives the ledger every limit before the file
// system is mounted, and every change (SetQuota, UnsetQuota, a scope made
// by CreateFolder) reaches the ledger before the call answers: the store is
// written first, then the ledger, both under limitMu so that two changes
// of one scope cannot reach them in different orders. A ledger that refuses
// (closed while shutting down, a failed write) fails the call; the stored
// limit is applied at the next start, and CreateFolder also re-applies a
// limit the ledger does not hold.
//
// Purge removes the tree, then drops the folder from the ledger
// (DropFolder), then deletes the record, so a crash between the steps
// resumes the purge (Recover) and drops it then. A drop refused because a
// file of the folder is still held open (ErrBusy) is retried in the
// background; StartQuota also drops ledger folders whose record is gone.
//
// CheckQuota walks a scope's folders one at a time (quota.Manager.Check),
// logging progress at info level every progressEvery, and reports per
// folder what the ledger held and what is on storage. StartQuotaRecovery
// runs it with repair on every scope, in the background, after an unclean
// shutdown; scopes stay usable meanwhile (Check runs online) and
// QuotaScope answers from the ledger with Checking set.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/meta"
	"github.com/vfolder/vfolder/quota"
)

// Ledger is the quota ledger as the service uses it; *quota.Manager
// implements it.
type Ledger interface {
	SetLimit(s quota.ScopeKey, bytes, inodes int64) error
	Usage(s quota.ScopeKey) quota.Usage
	FolderUsage(folderID string) quota.Usage
	DropFolder(s quota.ScopeKey, folderID string) error
	RecordRoot(s quota.ScopeKey, folderID string) error
	Check(ctx context.Context, s quota.ScopeKey, folders []quota.FolderRoot, o quota.CheckOptions) (*quota.Report, error)
	Scopes() []quota.ScopeKey
	Folders(s quota.ScopeKey) []string
}

var _ Ledger = (*quota.Manager)(nil)

// ledgerUsage is the UsageSource over a Ledger: O(1) counter reads.
type ledgerUsage struct{ l Ledger }

func (u ledgerUsage) ScopeUsage(vol string, id meta.ScopeID) (int64, int64) {
	x := u.l.Usage(quota.ScopeKey{Volume: vol, ID: id})
	return x.Used, x.UsedInodes
}

func (u ledgerUsage) FolderUsage(folderID string) (int64, int64) {
	x := u.l.FolderUsage(folderID)
	return x.Used, x.UsedInodes
}

// progressEvery is how often a running check logs its progress (a
// variable for tests).
var progressEvery = 5 * time.Second

// dropRetry is how often a refused DropFolder is tried again.
const dropRetry = 2 * time.Second

func scopeKey(vol string, id meta.ScopeID) quota.ScopeKey {
	return quota.ScopeKey{Volume: vol, ID: id}
}

// ledgerErr wraps an error of the ledger for the API: a closed ledger
// means the daemon is stopping.
func ledgerErr(err error, format string, args ...any) error {
	if errors.Is(err, quota.ErrClosed) {
		return fmt.Errorf("%w: %s: the quota ledger is closed (shutting down)", ErrUnavailable, fmt.Sprintf(format, args...))
	}
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), err)
}

// applyLimit hands a scope's stored limits to the ledger. limitMu is held
// (or the service is not serving yet).
func (s *Service) applyLimit(sc meta.QuotaScope) error {
	if s.opts.Quota == nil {
		return nil
	}
	if err := s.opts.Quota.SetLimit(scopeKey(sc.Volume, sc.ID), sc.LimitBytes, sc.LimitInodes); err != nil {
		return ledgerErr(err, "quota scope %s on volume %q: the limit is stored but not enforced yet (it is applied at the next start)", sc.ID, sc.Volume)
	}
	return s.clusterLimit(sc) // cluster: the limit that counts (clusterquota.go)
}

// limitChanged hands a scope's new limits to the ledger and then tells
// Options.ScopeChanged. limitMu is held.
func (s *Service) limitChanged(sc meta.QuotaScope) error {
	if err := s.applyLimit(sc); err != nil {
		return err
	}
	if s.opts.ScopeChanged != nil {
		s.opts.ScopeChanged(sc)
	}
	return nil
}

// ledgerHolds reports whether the ledger already enforces sc's limits.
func (s *Service) ledgerHolds(sc meta.QuotaScope) bool {
	if s.opts.Quota == nil {
		return true
	}
	u := s.opts.Quota.Usage(scopeKey(sc.Volume, sc.ID))
	return u.Limit == sc.LimitBytes && u.LimitInodes == sc.LimitInodes
}

// syncLimit makes the ledger hold the stored limits of a scope when it
// does not (a limit a failed call left unapplied).
func (s *Service) syncLimit(ctx context.Context, sc meta.QuotaScope) error {
	if s.ledgerHolds(sc) {
		return nil
	}
	s.limitMu.Lock()
	defer s.limitMu.Unlock()
	cur, err := s.store.GetScope(ctx, sc.Volume, sc.ID)
	if err != nil {
		return err
	}
	if s.ledgerHolds(cur) {
		return nil
	}
	return s.applyLimit(cur)
}

// StartQuota prepares the ledger before views are served: every scope's
// stored limits on the attached volumes are applied, a ledger limit of a
// scope without a record is removed, and ledger folders whose folder
// record is gone (a purge that crashed after deleting the record) are
// dropped. Without a ledger it does nothing.
func (s *Service) StartQuota(ctx context.Context) error {
	l := s.opts.Quota
	if l == nil {
		return nil
	}
	s.limitMu.Lock()
	defer s.limitMu.Unlock()
	known := map[quota.ScopeKey]bool{}
	applied := 0
	for _, v := range s.volumeNames() {
		scopes, err := s.store.ListScopes(ctx, v)
		if err != nil {
			return fmt.Errorf("quota: list the scopes of volume %q: %w", v, err)
		}
		for _, sc := range scopes {
			known[scopeKey(sc.Volume, sc.ID)] = true
			if err := s.applyLimit(sc); err != nil {
				return err
			}
			applied++
		}
	}
	for _, k := range l.Scopes() {
		if _, err := s.attachedVolume(k.Volume); err != nil {
			continue
		}
		if !known[k] {
			if u := l.Usage(k); u.Limit != 0 || u.LimitInodes != 0 {
				if err := l.SetLimit(k, 0, 0); err != nil {
					return ledgerErr(err, "quota scope %s: remove a limit the store does not have", k)
				}
			}
		}
		for _, id := range l.Folders(k) {
			_, err := s.store.GetFolder(ctx, id)
			switch {
			case err == nil:
				continue
			case !errors.Is(err, meta.ErrNotFound):
				return fmt.Errorf("quota: look up folder %s: %w", id, err)
			}
			if err := l.DropFolder(k, id); err != nil {
				s.log.Warn().Err(err).Str("scope", k.String()).Str("folder", id).Msg("cannot drop the quota entries of a purged folder; retrying in the background")
				s.retryDrop(k, id)
				continue
			}
			s.log.Info().Str("scope", k.String()).Str("folder", id).Msg("dropped the quota entries of a purged folder")
		}
	}
	s.log.Debug().Int("scopes", applied).Msg("quota limits applied")
	return nil
}

// volumeNames lists the attached volumes.
func (s *Service) volumeNames() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]string, 0, len(s.vols))
	for n := range s.vols {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// dropFolder removes a purged folder from the ledger; a refusal is retried
// in the background.
func (s *Service) dropFolder(f meta.Folder) {
	if s.opts.Quota == nil {
		return
	}
	k := scopeKey(f.Volume, f.Owner)
	err := s.opts.Quota.DropFolder(k, f.ID)
	if err == nil {
		return
	}
	if errors.Is(err, quota.ErrClosed) {
		// Shutting down: the next start drops it (StartQuota).
		s.log.Warn().Err(err).Str("folder", f.ID).Msg("purged folder left in the quota ledger until the next start")
		return
	}
	s.log.Warn().Err(err).Str("folder", f.ID).Msg("cannot drop the purged folder from the quota ledger yet; retrying in the background")
	s.retryDrop(k, f.ID)
}

// retryDrop tries DropFolder again every dropRetry until it works or the
// service closes.
func (s *Service) retryDrop(k quota.ScopeKey, id string) {
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		t := time.NewTicker(dropRetry)
		defer t.Stop()
		for {
			select {
			case <-s.base.Done():
				return
			case <-t.C:
			}
			err := s.opts.Quota.DropFolder(k, id)
			switch {
			case err == nil:
				s.log.Info().Str("scope", k.String()).Str("folder", id).Msg("purged folder dropped from the quota ledger")
				return
			case errors.Is(err, quota.ErrClosed):
				return
			case !errors.Is(err, quota.ErrBusy):
				s.log.Error().Err(err).Str("scope", k.String()).Str("folder", id).Msg("dropping a purged folder from the quota ledger failed; the next start tries again")
				return
			}
		}
	}()
}

// checkable reports whether a folder's directory is expected on storage
// and belongs in a check: not while it is being created or removed.
func checkable(st meta.Status) bool {
	switch st {
	case meta.StatusPerforming, meta.StatusDeleteOngoing, meta.StatusDeleteComplete, meta.StatusCloning:
		return false
	}
	return true
}

func (s *Service) beginCheck(k quota.ScopeKey) {
	s.checkMu.Lock()
	s.checking[k]++
	s.checkMu.Unlock()
}

func (s *Service) endCheck(k quota.ScopeKey) {
	s.checkMu.Lock()
	if s.checking[k]--; s.checking[k] <= 0 {
		delete(s.checking, k)
	}
	s.checkMu.Unlock()
}

// StopChecks interrupts running quota checks and makes new ones fail at
// once (with ErrUnavailable): the daemon calls it when it starts to stop,
// so that a long walk does not hold up the shutdown. Repairs made so far
// stay.
func (s *Service) StopChecks() { s.stopChecks() }

// Checking reports whether a check of the scope is running.
func (s *Service) Checking(vol string, id meta.ScopeID) bool {
	s.checkMu.Lock()
	defer s.checkMu.Unlock()
	return s.checking[scopeKey(vol, id)] > 0
}

// CheckQuota walks the scope's folders on the volume and compares them
// with the ledger; with repair it makes the ledger match (see
// api.QuotaCheck). It stops when ctx ends or the service closes,
// returning an error; repairs made until then stay.
func (s *Service) CheckQuota(ctx context.Context, vol string, id meta.ScopeID, repair bool) (api.QuotaCheck, error) {
	a, err := s.scopeVolume(vol, id)
	if err != nil {
		return api.QuotaCheck{}, err
	}
	l := s.opts.Quota
	if l == nil {
		return api.QuotaCheck{}, fmt.Errorf("%w: this daemon keeps no quota ledger", ErrUnavailable)
	}
	k := scopeKey(vol, id)
	owner := id
	folders, err := s.store.ListFolders(ctx, meta.FolderFilter{Owner: &owner, Volume: vol, IncludeDeleted: true})
	if err != nil {
		return api.QuotaCheck{}, err
	}
	ledgerFolders := l.Folders(k)
	if len(folders) == 0 && len(ledgerFolders) == 0 {
		if _, err := s.store.GetScope(ctx, vol, id); errors.Is(err, meta.ErrNotFound) {
			return api.QuotaCheck{}, fmt.Errorf("%w: %s has no quota scope and no folders on volume %q", meta.ErrNotFound, id, vol)
		} else if err != nil {
			return api.QuotaCheck{}, err
		}
	}
	// The caller, StopChecks or Close stop a check.
	if s.checks.Err() != nil {
		return api.QuotaCheck{}, fmt.Errorf("%w: vfolderd is stopping; no quota check now", ErrUnavailable)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(s.checks, cancel)
	defer stop()

	s.beginCheck(k)
	defer s.endCheck(k)
	act, actID := s.startActivity(ActivityCheck, vol, id.String(), "")
	defer s.endActivity(actID)
	start := time.Now()
	out := api.QuotaCheck{Volume: vol, Scope: id, Repair: repair, Complete: true, Counts: map[string]int{},
		Folders: []api.QuotaCheckFolder{}, Findings: []api.QuotaFinding{}, StartedAt: start.UTC()}
	log := s.log.With().Str("scope", id.String()).Str("volume", vol).Bool("repair", repair).Logger()
	if s.opts.ClusterQuota != nil {
		return s.checkCluster(ctx, a, k, folders, repair, out) // cluster: one walk corrects the cluster figure (clusterquota.go)
	}
	log.Info().Int("folders", len(folders)).Msg("quota check started")

	var total, walked int64 // entries and bytes walked in the folders done
	last := start
	drift := 0
	inRecords := map[string]bool{}
	for _, f := range folders {
		inRecords[f.ID] = true
		if !checkable(f.Status) {
			continue
		}
		fr := api.QuotaCheckFolder{FolderID: f.ID, Name: f.Name}
		dir, err := a.vol.OpenFolder(f.Owner, f.ID)
		if err != nil {
			fr.Errors = append(fr.Errors, fmt.Sprintf("cannot open the folder directory: %v", err))
			out.Complete = false
			out.Folders = append(out.Folders, fr)
			log.Warn().Err(err).Str("folder", f.ID).Msg("quota check: folder directory cannot be opened")
			continue
		}
		base, bbase := total, walked
		act.setFolder(f.ID)
		rep, err := l.Check(ctx, k, []quota.FolderRoot{{FolderID: f.ID, Dir: dir}}, quota.CheckOptions{
			Repair:      repair,
			MaxFindings: api.MaxFindings,
			Progress: func(p quota.Progress) {
				act.progress(base+p.Entries, bbase+p.Bytes)
				if p.Done {
					total, walked = base+p.Entries, bbase+p.Bytes
					return
				}
				if now := time.Now(); now.Sub(last) >= progressEvery {
					last = now
					log.Info().Str("folder", f.ID).Int64("entries", p.Entries).Int64("bytes", p.Bytes).
						Int64("entries_total", base+p.Entries).Dur("elapsed", now.Sub(start).Round(time.Second)).
						Msg("quota check in progress")
				}
			},
		})
		dir.Close()
		if rep != nil {
			for _, r := range rep.Folders {
				fr.LedgerBytes, fr.LedgerInodes = r.LedgerBytes, r.LedgerInodes
				fr.DiskBytes, fr.DiskInodes = r.DiskBytes, r.DiskInodes
				fr.DiskDirBytes, fr.DiskXattrBytes = r.DiskDirBytes, r.DiskXattrBytes
				fr.Complete = r.Complete
				fr.Errors = append(fr.Errors, r.Errors...)
			}
			for p, n := range rep.Counts {
				out.Counts[string(p)] += n
				switch p {
				case quota.ProblemUnknown:
					fr.Unknown += n
				case quota.ProblemGone:
					fr.Missing += n
				case quota.ProblemChanged:
				default:
					fr.Other += n
				}
				if p != quota.ProblemChanged {
					drift += n
				}
			}
			out.RepairedCount += rep.Repaired
			out.Busy += rep.Busy
			out.Truncated = out.Truncated || rep.Truncated
			for _, x := range rep.Findings {
				if !addFinding(&out, api.QuotaFinding{
					FolderID: x.FolderID, Path: x.Path, Problem: string(x.Problem),
					LedgerBytes: x.LedgerBytes, DiskBytes: x.DiskBytes,
					LedgerInodes: x.LedgerInodes, DiskInodes: x.DiskInodes, Repaired: x.Repaired,
				}) {
					break
				}
			}
		}
		if err != nil {
			if ctx.Err() != nil || s.checks.Err() != nil {
				log.Warn().Err(err).Msg("quota check interrupted")
				if s.checks.Err() != nil {
					return api.QuotaCheck{}, fmt.Errorf("%w: the quota check of %s on %q was interrupted by shutdown", ErrUnavailable, id, vol)
				}
				return api.QuotaCheck{}, fmt.Errorf("quota check of %s on %q interrupted: %w", id, vol, ctx.Err())
			}
			if errors.Is(err, quota.ErrClosed) {
				return api.QuotaCheck{}, ledgerErr(err, "quota check of %s on %q", id, vol)
			}
			fr.Errors = append(fr.Errors, err.Error())
			fr.Complete = false
			log.Warn().Err(err).Str("folder", f.ID).Msg("quota check of a folder failed")
		}
		if !fr.Complete {
			out.Complete = false
		}
		out.Folders = append(out.Folders, fr)
	}

	// Ledger folders of the scope without a folder record: left behind by
	// a purge that did not finish dropping them.
	for _, fid := range ledgerFolders {
		if inRecords[fid] {
			continue
		}
		_, err := s.store.GetFolder(ctx, fid)
		if err == nil || !errors.Is(err, meta.ErrNotFound) {
			continue // another owner's or volume's record, or unknown: not ours to judge
		}
		out.OrphanFolders = append(out.OrphanFolders, fid)
		out.Counts[api.ProblemOrphan]++
		drift++
		u := l.FolderUsage(fid)
		fnd := api.QuotaFinding{FolderID: fid, Problem: api.ProblemOrphan, LedgerBytes: u.Used, LedgerInodes: u.UsedInodes}
		if repair {
			if err := l.DropFolder(k, fid); err != nil {
				log.Warn().Err(err).Str("folder", fid).Msg("quota check: cannot drop the entries of a folder that no longer exists")
			} else {
				fnd.Repaired = true
				out.RepairedCount++
			}
		}
		addFinding(&out, fnd)
	}
	slices.Sort(out.OrphanFolders)

	out.UnknownFiles = out.Counts[api.ProblemUnknown]
	out.MissingEntries = out.Counts[api.ProblemGone]
	out.Drift = drift > 0
	out.Repaired = out.Drift && repair && out.RepairedCount >= drift
	u := l.Usage(k)
	out.UsedBytes, out.UsedInodes = u.Used, u.UsedInodes
	took := time.Since(start)
	out.Seconds = took.Seconds()
	ev := log.Info()
	if out.Drift && !out.Repaired {
		ev = log.Warn()
	}
	ev.Int("folders", len(out.Folders)).Int64("entries", total).Bool("drift", out.Drift).Bool("repaired", out.Repaired).
		Int("unknown", out.UnknownFiles).Int("missing", out.MissingEntries).Int("findings", drift).
		Int("busy", out.Busy).Bool("complete", out.Complete).Int64("used_bytes", out.UsedBytes).
		Dur("took", took.Round(time.Millisecond)).Msg("quota check finished")
	return out, nil
}

// addFinding appends f to the report's findings; when they are full
// (api.MaxFindings) it marks the report truncated and returns false.
func addFinding(out *api.QuotaCheck, f api.QuotaFinding) bool {
	if len(out.Findings) >= api.MaxFindings {
		out.Truncated = true
		return false
	}
	out.Findings = append(out.Findings, f)
	return true
}

// StartQuotaRecovery checks every scope with repair, one after the other,
// in the background: what the daemon does after an unclean shutdown (see
// quota.Manager.WasUnclean). The scopes are those recorded on the
// attached volumes and those the ledger knows there. Each scope is marked
// Checking from the start until its check ends, so QuotaScope tells a
// caller that the figures may still move; writes and reads go on
// meanwhile. done, if not nil, is called when every scope was checked
// (not when Close interrupted the run).
func (s *Service) StartQuotaRecovery(done func()) {
	if s.opts.Quota == nil {
		if done != nil {
			done()
		}
		return
	}
	// A volume that attaches later gets its scopes checked then
	// (volumes.go); until every volume was, the check stays owed.
	s.mu.Lock()
	s.owed = true
	s.mu.Unlock()
	var keys []quota.ScopeKey
	seen := map[quota.ScopeKey]bool{}
	add := func(k quota.ScopeKey) {
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	for _, v := range s.volumeNames() {
		scopes, err := s.store.ListScopes(s.checks, v)
		if err != nil {
			s.log.Error().Err(err).Str("volume", v).Msg("quota recovery: cannot list the scopes")
			continue
		}
		for _, sc := range scopes {
			add(scopeKey(sc.Volume, sc.ID))
		}
	}
	for _, k := range s.opts.Quota.Scopes() {
		if _, err := s.attachedVolume(k.Volume); err == nil {
			add(k)
		}
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
	for _, k := range keys {
		s.beginCheck(k) // until its own check ends
	}
	s.log.Warn().Int("scopes", len(keys)).Msg("the previous vfolderd did not stop cleanly: checking every quota scope against storage in the background")
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		complete := true
		for i, k := range keys {
			if s.checks.Err() != nil {
				for _, rest := range keys[i:] {
					s.endCheck(rest)
				}
				return
			}
			rep, err := s.CheckQuota(s.checks, k.Volume, k.ID, true)
			s.endCheck(k)
			switch {
			case errors.Is(err, meta.ErrNotFound):
			case err != nil:
				complete = false
				s.log.Error().Err(err).Str("scope", k.String()).Msg("quota recovery check failed")
			case !rep.Complete || rep.Busy > 0 || (rep.Drift && !rep.Repaired):
				complete = false
			}
		}
		if s.checks.Err() != nil {
			return
		}
		if s.anyUnavailable() {
			complete = false
		}
		s.log.Info().Int("scopes", len(keys)).Bool("complete", complete).Msg("quota recovery checks finished")
		if done != nil && complete {
			done()
		}
	}()
}
