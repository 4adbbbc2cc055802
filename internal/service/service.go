// Package service is vfolderd's business logic: the folder lifecycle,
// quota scopes and policies, the views of the FUSE namespace, project
// membership and published sessions, over a meta.Store and the opened
// volumes. The API server (internal/server) is a thin HTTP layer over it.
//
// # Folder lifecycle and crash safety
//
//	create:  record "performing" -> mkdir on the volume -> "ready"
//	trash:   ready|error -> delete-pending (nothing changes on disk)
//	restore: delete-pending -> ready
//	purge:   delete-pending|delete-error -> delete-ongoing -> remove tree ->
//	         record deleted (on failure: delete-error, retryable); the API
//	         answers at delete-ongoing and the removal runs in the
//	         background (StartPurge, clone.go)
//	clone:   record "cloning" -> mkdir -> copy in the background ->
//	         "ready" (clone.go)
//
// The record is always written before the directory is touched, so a
// crash (SIGKILL at any point) leaves a record that says what was going
// on. Recover, run once at start before serving, finishes the job:
//
//   - performing: the directory exists -> ready; it does not -> the
//     record is deleted (the create never completed, the name is free);
//   - delete-ongoing or delete-complete: the removal is resumed in the
//     background (volume.RemoveFolder tolerates a half-removed tree), then
//     the record is deleted;
//   - cloning: the unfinished copy is rolled back (clone.go).
//
// Status changes are made inside Store.UpdateFolder callbacks that check
// the current status, so two concurrent calls (trash and purge, two
// purges) never both proceed.
//
// # Errors
//
// Methods return errors wrapping the meta sentinels (ErrInvalid,
// ErrNotFound, ErrExists, ErrConflict, ErrLimitExceeded), ErrForbidden or
// ErrUnavailable;
// anything else is an internal failure. Code maps an error to its API code
// and is the only place that does.
//
// # Views
//
// Once StartViews has handed it the mounted FUSE namespace (package fs),
// the service keeps the views in step with the folders and memberships
// (views.go): every live folder shows under its owner (users/<uuid>/ or
// projects/<uuid>/) at its permission, and the folders of a user's
// projects show under users/<uuid>/ too (reach); create, rename, trash,
// restore, purge and membership changes (members.go) update that at
// once. Session views come from the views API (kept in memory only) and
// from published sessions (sessions.go).
//
// # Sessions
//
// Publish, Unpublish and Attach (sessions.go) make folders available to
// containers: session views plus host mounts under the sessions directory
// (Mounts, package mountd), recorded as meta.Session so that StartSessions
// can publish them again after a restart. A folder that a session view
// shows, or that a session record mounts, cannot be trashed or purged.
//
// # Quota
//
// With Options.Quota (the quota ledger, package quota) the service keeps
// the ledger's limits equal to the stored ones, drops purged folders from
// it and runs reconcile checks (quota.go); usage figures are the ledger's
// counters. Without it limits are only stored and usage reads as zero.
//
// # Volumes
//
// AttachVolume tells a volume from a missing mount and never initialises
// a volume the store knows; a volume that cannot be attached stays
// unavailable (its folders show status error, get no views, and cannot
// be created) until WatchVolumes attaches it (volumes.go).
//
// # Cluster mode
//
// Over a store that several nodes share (meta/etcdstore), FollowStore
// keeps the node in step with the changes made through the others (views,
// memberships, limits, purges), and Options.Cluster (package cluster)
// keeps folders mounted on any live node out of the trash, keeps
// recovery off what a live node is doing, and shares volume records
// (cluster.go).
//
// # Plug points
//
// Usage figures come from a UsageSource: the ledger when Options.Quota is
// set, else Options.Usage, else NoUsage (zero). MountedBy (the method) names
// the sessions that have a folder mounted: those with a session view of
// it, those whose records mount it (meta.Store.SessionsUsingFolder), plus
// what the MountedBy option reports; trash and purge refuse such folders.
// ScopeChanged, when set, is told about every limit change, also one made
// through another node. Cluster is the other nodes (nil on a node of its
// own); ClusterQuota the quota across them (clusterquota.go: limits,
// figures, purges and checks are the cluster's). Mounts is the host side of sessions (NewMounts over package
// mountd; fakes in tests).
//
// All methods are safe for concurrent use once the volumes are attached.
package service

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/vfolder/vfolder/api"
	vfs "github.com/vfolder/vfolder/fs"
	"github.com/vfolder/vfolder/internal/statedisk"
	"github.com/vfolder/vfolder/internal/volume"
	"github.com/vfolder/vfolder/meta"
	"github.com/vfolder/vfolder/quota"
)

// ErrUnavailable: the daemon is shutting down or a volume is not
// configured on this node.
var ErrUnavailable = errors.New("unavailable")

// UsageSource reports current usage figures. With Options.Quota set the
// ledger is the source.
type UsageSource interface {
	ScopeUsage(volume string, id meta.ScopeID) (bytes, inodes int64)
	FolderUsage(folderID string) (bytes, inodes int64)
}

// NoUsage reports zero usage for everything (a service without a ledger).
type NoUsage struct{}

func (NoUsage) ScopeUsage(string, meta.ScopeID) (int64, int64) { return 0, 0 }
func (NoUsage) FolderUsage(string) (int64, int64)              { return 0, 0 }

// Options configure a Service.
type Options struct {
	// StorageUID/StorageGID own every directory the service creates.
	StorageUID, StorageGID int
	// AutoCreateScopes creates the owner's quota scope on the folder's
	// volume when the first folder is created there.
	AutoCreateScopes bool
	// DefaultScopeLimit is the limit of an auto-created scope when the
	// owner's policy has no MaxQuotaScopeSize; 0 = none.
	DefaultScopeLimit int64
	// Quota is the quota ledger (a *quota.Manager): it gets every limit,
	// supplies the usage figures and runs checks. nil means none.
	Quota Ledger
	// Usage supplies usage figures when Quota is nil; nil means NoUsage.
	Usage UsageSource
	// MountedBy returns the ids of live sessions that have the folder
	// mounted besides those with a session view of it (which the service
	// knows itself); nil means "no others". It is called with the
	// service's view lock held and must not call back into the service.
	MountedBy func(folderID string) []string
	// ViewUID/ViewGID is the owner standing views show, and the default of
	// session views.
	ViewUID, ViewGID uint32
	// MountPoint is where the FUSE namespace is mounted (for View.Path).
	MountPoint string
	// ScopeChanged is called after a scope was created or its limits
	// changed (and, with Quota, after the ledger took them), also through
	// another node; nil means nobody listens.
	ScopeChanged func(meta.QuotaScope)
	// Cluster coordinates mounts, trash and volume records with the other
	// nodes (cluster.go); nil on a node of its own.
	Cluster Cluster
	// ClusterQuota is the cluster's side of the quota (clusterquota.go):
	// limits, usage, purges and checks are the cluster's; nil on a node of
	// its own.
	ClusterQuota ClusterQuota
	Log          zerolog.Logger
}

type attached struct {
	rec meta.Volume
	vol *volume.Volume
}

// Service is the folder lifecycle over a store and the attached volumes.
type Service struct {
	store meta.Store
	opts  Options
	log   zerolog.Logger

	mu      sync.RWMutex
	vols    map[string]*attached
	unavail map[string]*unavailableVol // configured but not attached (volumes.go)
	// owed: a quota check of every scope is owed (unclean start); a
	// volume attached late gets its scopes checked (volumes.go).
	owed bool

	// base is cancelled by Close; purges run under it, not under the
	// request's context, so a client going away never interrupts one.
	base   context.Context
	cancel context.CancelFunc
	bg     sync.WaitGroup
	// checks is cancelled by StopChecks and Close: quota checks run
	// under it (quota.go).
	checks     context.Context
	stopChecks context.CancelFunc

	// viewMu guards the fields below and serialises view changes with
	// the checks they depend on (see views.go).
	viewMu    sync.Mutex
	views     Views                              // nil until StartViews
	standing  map[keyDir]map[string]vfs.ViewSpec // standing views by key directory and name
	sessions  map[viewPlace]vfs.ViewSpec         // session views
	published map[viewPlace]bool                 // session views that belong to published sessions

	// pubMu guards the fields below and serialises publish, unpublish,
	// attach and reconcile (see sessions.go); it is taken before viewMu,
	// never after.
	pubMu     sync.Mutex
	newMounts func() (Mounts, error)       // nil: sessions are not available
	mounts    Mounts                       // made by newMounts on first need
	slots     map[string]map[string]string // session -> reserved key -> target

	// limitMu serialises limit changes: store, then ledger (quota.go).
	limitMu sync.Mutex
	// checkMu guards checking: running checks per scope.
	checkMu  sync.Mutex
	checking map[quota.ScopeKey]int

	ops sync.Map // folder id -> *folderOp: clones and purges running (clone.go)
	// act lists the running checks and purges (activity.go).
	act activities
}

// New returns a service over store. Attach volumes, then Recover, before
// serving requests.
func New(store meta.Store, opts Options) *Service {
	switch {
	case opts.Quota != nil:
		opts.Usage = ledgerUsage{opts.Quota}
	case opts.Usage == nil:
		opts.Usage = NoUsage{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	checks, stopChecks := context.WithCancel(ctx)
	return &Service{store: store, opts: opts, log: opts.Log, vols: map[string]*attached{}, unavail: map[string]*unavailableVol{}, base: ctx, cancel: cancel,
		checks: checks, stopChecks: stopChecks,
		standing: map[keyDir]map[string]vfs.ViewSpec{}, sessions: map[viewPlace]vfs.ViewSpec{},
		published: map[viewPlace]bool{}, slots: map[string]map[string]string{}, checking: map[quota.ScopeKey]int{}}
}

// folderAttached is the volume of an existing folder: one that is not
// configured (any more) makes the folder unavailable, not unknown.
func (s *Service) folderAttached(f meta.Folder) (*attached, error) {
	a, err := s.attachedVolume(f.Volume)
	if errors.Is(err, ErrUnavailable) {
		return nil, fmt.Errorf("folder %q: %w", f.Name, err)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: folder %q is on volume %q, which is not configured on this node", ErrUnavailable, f.Name, f.Volume)
	}
	return a, nil
}

// folderVolume is folderAttached's volume.
func (s *Service) folderVolume(f meta.Folder) (*volume.Volume, error) {
	a, err := s.folderAttached(f)
	if err != nil {
		return nil, err
	}
	return a.vol, nil
}

// Wait blocks until background work (purges resumed by Recover) is done.
func (s *Service) Wait() { s.bg.Wait() }

// Close stops background purges (they resume at the next start), waits
// for them and closes the volumes. The store is the caller's to close.
func (s *Service) Close() {
	s.cancel()
	s.bg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, a := range s.vols {
		a.vol.Close()
		delete(s.vols, name)
	}
}

// Recover finishes what a crash interrupted (see the package comment).
// Purges are resumed in the background; Close stops them. Folders on a
// volume that is not attached are recovered when it is (volumes.go).
func (s *Service) Recover(ctx context.Context) error {
	return s.recoverOn(ctx, "")
}

// recoverOn is Recover for the folders of one volume ("" for all).
func (s *Service) recoverOn(ctx context.Context, volName string) error {
	all, err := s.store.ListFolders(ctx, meta.FolderFilter{IncludeDeleted: true, Volume: volName})
	if err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	type purge struct {
		f       meta.Folder
		release func()
	}
	var purges []purge
	defer func() {
		for _, p := range purges {
			p.release()
		}
	}()
	for _, f := range all {
		if !unfinished(f.Status) {
			continue
		}
		vol, err := s.folderVolume(f)
		if err != nil {
			s.log.Warn().Err(err).Str("folder", f.ID).Str("volume", f.Volume).Str("status", string(f.Status)).
				Msg("folder left unfinished on a volume that is not attached; leaving it until the volume is")
			continue
		}
		// In a cluster, only what no live node is doing (cluster.go).
		f, release, ok, err := s.takeOver(ctx, f)
		if err != nil {
			return fmt.Errorf("recover folder %s: %w", f.ID, err)
		}
		if !ok {
			continue
		}
		if f.Status == meta.StatusCloning {
			// An unfinished clone is rolled back (clone.go).
			err := s.recoverClone(ctx, f)
			release()
			if err != nil {
				return fmt.Errorf("recover folder %s: roll back the unfinished clone: %w", f.ID, err)
			}
			continue
		}
		if f.Status != meta.StatusPerforming {
			purges = append(purges, purge{f, release})
			continue
		}
		ok, err = vol.FolderExists(f.Owner, f.ID)
		if err != nil {
			release()
			return fmt.Errorf("recover folder %s: %w", f.ID, err)
		}
		if ok {
			_, err = s.store.UpdateFolder(ctx, f.ID, func(x *meta.Folder) error {
				if x.Status != meta.StatusPerforming {
					return errSkip
				}
				x.Status = meta.StatusReady
				return nil
			})
			s.log.Info().Str("folder", f.ID).Str("name", f.Name).Msg("creation finished after a restart")
		} else {
			err = s.store.DeleteFolder(ctx, f.ID)
			s.log.Info().Str("folder", f.ID).Str("name", f.Name).Msg("dropped the record of a creation that never reached the volume")
		}
		release()
		if err != nil && !errors.Is(err, errSkip) && !errors.Is(err, meta.ErrNotFound) {
			return fmt.Errorf("recover folder %s: %w", f.ID, err)
		}
	}
	if len(purges) > 0 {
		todo := purges
		purges = nil // released by the goroutine
		s.bg.Add(1)
		go func() {
			defer s.bg.Done()
			for _, p := range todo {
				s.log.Info().Str("folder", p.f.ID).Str("name", p.f.Name).Msg("resuming an interrupted purge")
				if err := s.finishPurge(p.f); err != nil {
					s.log.Error().Err(err).Str("folder", p.f.ID).Msg("resumed purge failed")
				}
				p.release()
			}
		}()
	}
	return nil
}

// unfinished tells the statuses of a create or purge that recovery
// finishes.
func unfinished(st meta.Status) bool {
	return st == meta.StatusPerforming || st == meta.StatusDeleteOngoing || st == meta.StatusDeleteComplete ||
		st == meta.StatusCloning
}

// takeOver takes the fence of an unfinished folder for recovery and reads
// it again; ok is false when a live node holds the fence (it is doing the
// job) or the folder is finished meanwhile. On a node of its own it
// returns f as it is.
func (s *Service) takeOver(ctx context.Context, f meta.Folder) (meta.Folder, func(), bool, error) {
	if s.opts.Cluster == nil {
		return f, noRelease, true, nil
	}
	_, release, err := s.opts.Cluster.Fence(ctx, f, "recovered")
	if errors.Is(err, meta.ErrConflict) {
		s.log.Debug().Err(err).Str("folder", f.ID).Msg("recovery leaves the folder to the node that holds it")
		return f, nil, false, nil
	}
	if err != nil {
		return f, nil, false, err
	}
	cur, err := s.store.GetFolder(ctx, f.ID)
	if err != nil || !unfinished(cur.Status) {
		release()
		if errors.Is(err, meta.ErrNotFound) {
			err = nil
		}
		return f, nil, false, err
	}
	return cur, release, true, nil
}

// errSkip aborts an UpdateFolder callback without it being an error.
var errSkip = errors.New("skip")

// toAPI is the API's view of a folder. A folder on an unavailable volume
// shows status error (when live) and the reason.
func (s *Service) toAPI(f meta.Folder) api.Folder {
	out := api.Folder{Folder: f}
	s.mu.RLock()
	a, u := s.vols[f.Volume], s.unavail[f.Volume]
	s.mu.RUnlock()
	switch {
	case a != nil:
		out.Path = a.vol.FolderPath(f.Owner, f.ID)
	case u != nil:
		out.Path = filepath.Join(u.rec.Path, meta.FolderRelPath(f.Owner, f.ID))
		if f.Status == meta.StatusReady || f.Status == meta.StatusMounted {
			out.Status = meta.StatusError
		}
		out.StatusReason = u.err().Error()
	}
	out.Progress = s.progressOf(f.ID, out.Status)
	return out
}

func checkOwner(what string, id meta.ScopeID) error {
	if !id.Valid() {
		return fmt.Errorf("%w: %s must be user:<uuid> or project:<uuid>", meta.ErrInvalid, what)
	}
	return nil
}

// checkDotName applies the automount rule: a name starting with '.' is
// mounted into every session of its user, so only users own such folders;
// a project may own ".local" (mounted per user as a subfolder).
func checkDotName(owner meta.ScopeID, name string) error {
	if meta.IsAutomount(name) && owner.Kind == meta.KindProject && name != ".local" {
		return fmt.Errorf("%w: folder name %q: a project may own no dot-folder other than \".local\" (dot-folders are mounted into every session of their user)", meta.ErrInvalid, name)
	}
	return nil
}

// CreateFolder creates a folder (see the package comment for the order of
// steps).
func (s *Service) CreateFolder(ctx context.Context, req api.CreateFolderRequest) (api.Folder, error) {
	if err := meta.ValidateName(req.Name); err != nil {
		return api.Folder{}, err
	}
	if err := checkOwner("owner", req.Owner); err != nil {
		return api.Folder{}, err
	}
	if err := checkDotName(req.Owner, req.Name); err != nil {
		return api.Folder{}, err
	}
	if req.UsageMode == "" {
		req.UsageMode = meta.ModeGeneral
	}
	if !req.UsageMode.Valid() {
		return api.Folder{}, fmt.Errorf("%w: usage_mode %q is not one of general, model, data", meta.ErrInvalid, req.UsageMode)
	}
	if req.Permission == "" {
		req.Permission = meta.PermRW
	}
	if !req.Permission.Valid() {
		return api.Folder{}, fmt.Errorf("%w: permission %q is not one of ro, rw, wd", meta.ErrInvalid, req.Permission)
	}
	if req.Cloneable && req.UsageMode != meta.ModeModel {
		return api.Folder{}, fmt.Errorf("%w: only folders with usage_mode \"model\" can be cloneable", meta.ErrInvalid)
	}
	if req.Volume == "" {
		return api.Folder{}, fmt.Errorf("%w: volume is empty", meta.ErrInvalid)
	}
	a, err := s.attachedVolume(req.Volume)
	if err != nil {
		return api.Folder{}, err
	}
	if err := s.CheckVolumePerm(ctx, req.Volume, VolCreate, req.Owner); err != nil {
		return api.Folder{}, err
	}
	id, err := s.newFolderID(ctx, a, req)
	if err != nil {
		return api.Folder{}, err
	}
	policy, err := s.store.GetPolicy(ctx, req.Owner)
	if err != nil {
		return api.Folder{}, err
	}
	if err := s.ensureScope(ctx, req.Volume, req.Owner, policy); err != nil {
		return api.Folder{}, err
	}
	f := meta.Folder{
		ID:         id,
		Name:       req.Name,
		Owner:      req.Owner,
		Volume:     req.Volume,
		UsageMode:  req.UsageMode,
		Permission: req.Permission,
		Cloneable:  req.Cloneable,
		Status:     meta.StatusPerforming,
	}
	// In a cluster the fence keeps recovery on other nodes away from the
	// folder until it is ready (cluster.go).
	_, release, err := s.fence(ctx, f, "created")
	if err != nil {
		return api.Folder{}, err
	}
	defer release()
	if err := s.store.CreateFolder(ctx, f, policy.MaxFolderCount); err != nil {
		return api.Folder{}, err
	}
	// From here on a client going away must not leave a half-made folder.
	ctx = context.WithoutCancel(ctx)
	if err := s.makeFolderDir(ctx, a, f, "create"); err != nil {
		return api.Folder{}, fmt.Errorf("create folder %q: %w", f.Name, err)
	}
	f, err = s.store.UpdateFolder(ctx, f.ID, func(x *meta.Folder) error {
		x.Status = meta.StatusReady
		return nil
	})
	if err != nil {
		return api.Folder{}, fmt.Errorf("create folder %q: the directory exists but the record stays %q until the next start: %w", req.Name, meta.StatusPerforming, err)
	}
	s.log.Info().Str("folder", f.ID).Str("name", f.Name).Str("owner", f.Owner.String()).Str("volume", f.Volume).Msg("folder created")
	s.syncOwner(ctx, f.Owner)
	return s.toAPI(f), nil
}

// makeFolderDir makes the directory of a folder whose record was just
// stored and charges its root, for a create or a clone (what names it in
// the logs). If the directory cannot be made, the record is taken back,
// and so is a directory this call made before failing (never one that was
// there already: that is not ours); the error is returned as it came.
func (s *Service) makeFolderDir(ctx context.Context, a *attached, f meta.Folder, what string) error {
	if err := a.vol.CreateFolder(f.Owner, f.ID, s.opts.StorageUID, s.opts.StorageGID); err != nil {
		if !errors.Is(err, os.ErrExist) {
			if rerr := a.vol.RemoveFolder(ctx, f.Owner, f.ID, nil); rerr != nil {
				s.log.Error().Err(rerr).Str("folder", f.ID).Msgf("cannot remove the directory of a failed %s", what)
			}
		}
		if derr := s.store.DeleteFolder(ctx, f.ID); derr != nil {
			s.log.Error().Err(derr).Str("folder", f.ID).Msgf("cannot drop the record of a failed %s; the next start will", what)
		}
		return err
	}
	if s.opts.Quota != nil {
		// The new root's size is charged once, here (on every other node
		// of a cluster it is adopted at first contact).
		if err := s.opts.Quota.RecordRoot(scopeKey(f.Volume, f.Owner), f.ID); err != nil {
			s.log.Warn().Err(err).Str("folder", f.ID).Msg("cannot record the new folder root in the ledger; the next check will")
		}
	}
	return nil
}

// ensureScope makes sure the owner has a quota scope on the volume,
// creating it when AutoCreateScopes is set.
//
// The ledger holds the scope's limit before it returns: a new scope's
// limit is enforced from the folder's first byte, and a limit an earlier
// call stored but could not hand to the ledger is handed over now.
func (s *Service) ensureScope(ctx context.Context, vol string, owner meta.ScopeID, p meta.Policy) error {
	sc, err := s.store.GetScope(ctx, vol, owner)
	if err == nil {
		return s.syncLimit(ctx, sc)
	}
	if !errors.Is(err, meta.ErrNotFound) {
		return err
	}
	if !s.opts.AutoCreateScopes {
		return fmt.Errorf("%w: %s has no quota scope on volume %q; set its quota first", meta.ErrNotFound, owner, vol)
	}
	limit := p.MaxQuotaScopeSize
	if limit == 0 {
		limit = s.opts.DefaultScopeLimit
	}
	s.limitMu.Lock()
	defer s.limitMu.Unlock()
	err = s.store.CreateScope(ctx, meta.QuotaScope{Volume: vol, ID: owner, LimitBytes: limit})
	if err != nil && !errors.Is(err, meta.ErrExists) { // ErrExists: created concurrently
		return err
	}
	sc, err = s.store.GetScope(ctx, vol, owner)
	if err != nil {
		return err
	}
	if err := s.limitChanged(sc); err != nil {
		return err
	}
	s.log.Info().Str("scope", owner.String()).Str("volume", vol).Int64("limit_bytes", sc.LimitBytes).Msg("quota scope created")
	return nil
}

// resolve finds a folder by id (32-hex or dashed) or by name; a name needs
// the owner. An id with a non-zero owner must belong to that owner.
func (s *Service) resolve(ctx context.Context, ref string, owner meta.ScopeID) (meta.Folder, error) {
	if ref == "" {
		return meta.Folder{}, fmt.Errorf("%w: folder reference is empty", meta.ErrInvalid)
	}
	if !owner.IsZero() {
		if err := checkOwner("owner", owner); err != nil {
			return meta.Folder{}, err
		}
	}
	id, idErr := meta.ParseUUID(ref)
	if idErr == nil {
		f, err := s.store.GetFolder(ctx, id)
		switch {
		case err == nil && (owner.IsZero() || f.Owner == owner):
			return f, nil
		case err != nil && !errors.Is(err, meta.ErrNotFound):
			return meta.Folder{}, err
		}
		if owner.IsZero() {
			return meta.Folder{}, fmt.Errorf("%w: no folder has id %s", meta.ErrNotFound, id)
		}
	} else if owner.IsZero() {
		return meta.Folder{}, fmt.Errorf("%w: %q is not a folder id; a folder name needs the owner (user:<uuid> or project:<uuid>)", meta.ErrInvalid, ref)
	}
	f, err := s.store.FolderByName(ctx, owner, ref)
	if errors.Is(err, meta.ErrNotFound) {
		return meta.Folder{}, fmt.Errorf("%w: %s has no folder named %q", meta.ErrNotFound, owner, ref)
	}
	return f, err
}

// Folder returns one folder.
func (s *Service) Folder(ctx context.Context, ref string, owner meta.ScopeID) (api.Folder, error) {
	f, err := s.resolve(ctx, ref, owner)
	if err != nil {
		return api.Folder{}, err
	}
	out := s.toAPI(f)
	s.showMounted(&out)
	return out, nil
}

// ListFilter selects folders for ListFolders.
type ListFilter struct {
	Owner  meta.ScopeID // zero: every owner
	Volume string       // "": every volume
	// Deleted is api.DeletedExclude, api.DeletedInclude or api.DeletedOnly.
	Deleted string
}

// ListFolders lists folders, ordered by owner, then name.
func (s *Service) ListFolders(ctx context.Context, lf ListFilter) ([]api.Folder, error) {
	var filter meta.FolderFilter
	switch lf.Deleted {
	case api.DeletedExclude:
	case api.DeletedInclude:
		filter.IncludeDeleted = true
	case api.DeletedOnly:
		filter.OnlyDeleted = true
	default:
		return nil, fmt.Errorf("%w: deleted=%q is not one of \"\", include, only", meta.ErrInvalid, lf.Deleted)
	}
	if !lf.Owner.IsZero() {
		if err := checkOwner("owner", lf.Owner); err != nil {
			return nil, err
		}
		owner := lf.Owner
		filter.Owner = &owner
	}
	if lf.Volume != "" {
		if _, err := s.store.GetVolume(ctx, lf.Volume); err != nil {
			return nil, err
		}
		filter.Volume = lf.Volume
	}
	fs, err := s.store.ListFolders(ctx, filter)
	if err != nil {
		return nil, err
	}
	out := make([]api.Folder, len(fs))
	for i, f := range fs {
		out[i] = s.toAPI(f)
	}
	s.markMounted(ctx, out)
	return out, nil
}

// Rename renames a live folder.
func (s *Service) Rename(ctx context.Context, ref string, owner meta.ScopeID, newName string) (api.Folder, error) {
	if err := meta.ValidateName(newName); err != nil {
		return api.Folder{}, err
	}
	f, err := s.resolve(ctx, ref, owner)
	if err != nil {
		return api.Folder{}, err
	}
	if err := checkDotName(f.Owner, newName); err != nil {
		return api.Folder{}, err
	}
	old := f.Name
	f, err = s.store.UpdateFolder(ctx, f.ID, func(x *meta.Folder) error {
		switch x.Status {
		case meta.StatusReady, meta.StatusMounted, meta.StatusError:
		default:
			return fmt.Errorf("%w: folder %q is %s; only a live folder can be renamed (restore it from the trash first)", meta.ErrConflict, x.Name, x.Status)
		}
		x.Name = newName
		return nil
	})
	if err != nil {
		return api.Folder{}, err
	}
	s.log.Info().Str("folder", f.ID).Str("from", old).Str("to", newName).Msg("folder renamed")
	s.syncOwner(ctx, f.Owner)
	return s.toAPI(f), nil
}

// checkNotMounted refuses a folder that live sessions have mounted.
// viewMu is held. When the store cannot tell, the folder counts as
// mounted.
func (s *Service) checkNotMounted(f meta.Folder, action string) error {
	sess, err := s.mountedByLocked(f.ID)
	if err != nil {
		return fmt.Errorf("folder %q cannot be %s: cannot tell which sessions mount it: %w", f.Name, action, err)
	}
	if len(sess) > 0 {
		return fmt.Errorf("%w: folder %q is mounted by session(s) %s; it cannot be %s until they end", meta.ErrConflict, f.Name, strings.Join(sess, ", "), action)
	}
	return nil
}

// Trash moves a folder to the trash (delete-pending). Nothing changes on
// the volume; Restore undoes it.
func (s *Service) Trash(ctx context.Context, ref string, owner meta.ScopeID) (api.Folder, error) {
	f, err := s.resolve(ctx, ref, owner)
	if err != nil {
		return api.Folder{}, err
	}
	// The mount check, the status change and the view update are one step
	// under viewMu: no session view can appear in between.
	s.viewMu.Lock()
	defer s.viewMu.Unlock()
	if err := s.checkNotMounted(f, "trashed"); err != nil {
		return api.Folder{}, err
	}
	// In a cluster, mounts on the other nodes (cluster.go).
	check, release, err := s.fence(ctx, f, "trashed")
	if err != nil {
		return api.Folder{}, err
	}
	defer release()
	var was meta.Status
	f, err = s.store.UpdateFolder(ctx, f.ID, func(x *meta.Folder) error {
		was = x.Status
		switch x.Status {
		case meta.StatusReady, meta.StatusError:
			x.Status = meta.StatusDeletePending
			return nil
		case meta.StatusDeletePending:
			return fmt.Errorf("%w: folder %q is already in the trash", meta.ErrConflict, x.Name)
		}
		return fmt.Errorf("%w: folder %q is %s and cannot be trashed now", meta.ErrConflict, x.Name, x.Status)
	})
	if err != nil {
		return api.Folder{}, err
	}
	// The status is written: a client going away must not undo it.
	if err := check(context.WithoutCancel(ctx)); err != nil {
		s.undoStatus(f, meta.StatusDeletePending, was)
		return api.Folder{}, err
	}
	s.log.Info().Str("folder", f.ID).Str("name", f.Name).Msg("folder trashed")
	s.syncOwnerLocked(ctx, f.Owner)
	return s.toAPI(f), nil
}

// Restore takes a folder out of the trash.
func (s *Service) Restore(ctx context.Context, ref string, owner meta.ScopeID) (api.Folder, error) {
	f, err := s.resolve(ctx, ref, owner)
	if err != nil {
		return api.Folder{}, err
	}
	f, err = s.store.UpdateFolder(ctx, f.ID, func(x *meta.Folder) error {
		if x.Status != meta.StatusDeletePending {
			return fmt.Errorf("%w: folder %q is %s, not in the trash; nothing to restore", meta.ErrConflict, x.Name, x.Status)
		}
		x.Status = meta.StatusReady
		return nil
	})
	if err != nil {
		return api.Folder{}, err
	}
	s.log.Info().Str("folder", f.ID).Str("name", f.Name).Msg("folder restored")
	s.syncOwner(ctx, f.Owner)
	return s.toAPI(f), nil
}

// Purge deletes a trashed folder for good: its tree and its record.
// confirm must equal the folder's exact name. The returned folder has
// status delete-complete; its record is gone. On failure the folder is
// left in delete-error and the purge can be retried.
func (s *Service) Purge(ctx context.Context, ref string, owner meta.ScopeID, confirm string) (api.Folder, error) {
	f, err := s.resolve(ctx, ref, owner)
	if err != nil {
		return api.Folder{}, err
	}
	if f.Status != meta.StatusDeletePending && f.Status != meta.StatusDeleteError {
		return api.Folder{}, fmt.Errorf("%w: folder %q is %s; only a folder in the trash can be purged (trash it first)", meta.ErrConflict, f.Name, f.Status)
	}
	if confirm != f.Name {
		return api.Folder{}, fmt.Errorf("%w: the confirmation %q does not match the folder name %q exactly; nothing was purged", meta.ErrConflict, confirm, f.Name)
	}
	if _, err := s.folderVolume(f); err != nil {
		return api.Folder{}, err
	}
	f, release, err := s.startPurge(ctx, f)
	if err != nil {
		return api.Folder{}, err
	}
	out := s.toAPI(f)
	err = s.finishPurge(f)
	release()
	s.syncOwner(ctx, f.Owner)
	if err != nil {
		return api.Folder{}, err
	}
	out.Status = meta.StatusDeleteComplete
	return out, nil
}

// startPurge checks that no session has the folder mounted and marks it
// delete-ongoing, under viewMu (see Trash). In a cluster it returns with
// the folder's fence held until release is called, after the purge.
func (s *Service) startPurge(ctx context.Context, f meta.Folder) (meta.Folder, func(), error) {
	s.viewMu.Lock()
	defer s.viewMu.Unlock()
	if err := s.checkNotMounted(f, "purged"); err != nil {
		return meta.Folder{}, nil, err
	}
	check, release, err := s.fence(ctx, f, "purged")
	if err != nil {
		return meta.Folder{}, nil, err
	}
	var was meta.Status
	f, err = s.store.UpdateFolder(ctx, f.ID, func(x *meta.Folder) error {
		was = x.Status
		if x.Status != meta.StatusDeletePending && x.Status != meta.StatusDeleteError {
			return fmt.Errorf("%w: folder %q is %s; only a folder in the trash can be purged", meta.ErrConflict, x.Name, x.Status)
		}
		x.Status = meta.StatusDeleteOngoing
		return nil
	})
	if err == nil {
		if err = check(context.WithoutCancel(ctx)); err != nil {
			s.undoStatus(f, meta.StatusDeleteOngoing, was)
		}
	}
	if err != nil {
		release()
		return meta.Folder{}, nil, err
	}
	return f, release, nil
}

// finishPurge removes the tree of a delete-ongoing folder and its record.
// It runs under the service's context: only Close interrupts it, leaving
// the folder delete-ongoing for the next start.
func (s *Service) finishPurge(f meta.Folder) error {
	ctx := s.base
	vol, err := s.folderVolume(f)
	if err != nil {
		return err
	}
	start := time.Now()
	op, _ := s.purgeOp(f) // progress shown on the folder (clone.go)
	defer s.ops.Delete(f.ID)
	act, actID := s.startActivity(ActivityPurge, f.Volume, f.Owner.String(), f.ID)
	defer s.endActivity(actID)
	var removed int64
	err = vol.RemoveFolder(ctx, f.Owner, f.ID, func(n int64) {
		removed = n
		op.removed.Store(n)
		act.progress(n, 0)
		s.log.Debug().Str("folder", f.ID).Int64("removed", n).Msg("purging")
	})
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%w: purge of folder %q interrupted by shutdown; it resumes at the next start", ErrUnavailable, f.Name)
		}
		// Record the failure; a background context so that it is written
		// even while shutting down.
		_, uerr := s.store.UpdateFolder(context.Background(), f.ID, func(x *meta.Folder) error {
			x.Status = meta.StatusDeleteError
			return nil
		})
		if uerr != nil {
			s.log.Error().Err(uerr).Str("folder", f.ID).Msg("cannot mark the folder delete-error")
		}
		return fmt.Errorf("purge folder %q: %w (status is now %s; purge again to retry)", f.Name, err, meta.StatusDeleteError)
	}
	// The tree is gone: its usage goes from the ledger (and the cluster's
	// figure) before the record, so that a crash in between drops it when
	// the purge resumes.
	if err := s.clusterDropFolder(ctx, f); err != nil {
		return fmt.Errorf("purge folder %q: the tree is gone but the cluster still counts its usage: %w (the purge resumes at the next start, or when a node leaves the cluster)", f.Name, err)
	}
	s.dropFolder(f)
	if err := s.store.DeleteFolder(context.Background(), f.ID); err != nil && !errors.Is(err, meta.ErrNotFound) {
		return fmt.Errorf("purge folder %q: the tree is gone but the record stays: %w", f.Name, err)
	}
	s.dropShares(ctx, f)
	s.log.Info().Str("folder", f.ID).Str("name", f.Name).Int64("entries", removed).
		Dur("took", time.Since(start)).Msg("folder purged")
	return nil
}

// FolderUsage reports one folder's usage.
func (s *Service) FolderUsage(ctx context.Context, ref string, owner meta.ScopeID) (api.FolderUsage, error) {
	f, err := s.resolve(ctx, ref, owner)
	if err != nil {
		return api.FolderUsage{}, err
	}
	b, i, err := s.folderUsage(ctx, f)
	if err != nil {
		return api.FolderUsage{}, err
	}
	return api.FolderUsage{FolderID: f.ID, UsedBytes: b, UsedInodes: i, AsOf: time.Now().UTC()}, nil
}

// scopeVolume checks a quota scope reference and returns its volume.
func (s *Service) scopeVolume(vol string, id meta.ScopeID) (*attached, error) {
	if err := checkOwner("quota scope id", id); err != nil {
		return nil, err
	}
	return s.attachedVolume(vol)
}

// errNoScope says that id has no quota scope on vol.
func errNoScope(vol string, id meta.ScopeID) error {
	return fmt.Errorf("%w: %s has no quota scope on volume %q", meta.ErrNotFound, id, vol)
}

func (s *Service) withUsage(ctx context.Context, sc meta.QuotaScope) api.QuotaScope {
	b, i := s.scopeUsage(ctx, sc.Volume, sc.ID)
	return api.QuotaScope{QuotaScope: sc, UsedBytes: b, UsedInodes: i, Checking: s.Checking(sc.Volume, sc.ID)}
}

// QuotaScope returns a scope with its usage.
func (s *Service) QuotaScope(ctx context.Context, vol string, id meta.ScopeID) (api.QuotaScope, error) {
	if _, err := s.scopeVolume(vol, id); err != nil {
		return api.QuotaScope{}, err
	}
	sc, err := s.store.GetScope(ctx, vol, id)
	if errors.Is(err, meta.ErrNotFound) {
		return api.QuotaScope{}, errNoScope(vol, id)
	}
	if err != nil {
		return api.QuotaScope{}, err
	}
	return s.withUsage(ctx, sc), nil
}

// SetQuota sets a scope's limits (nil fields are kept; 0 removes a
// limit), creating the scope when it does not exist yet.
func (s *Service) SetQuota(ctx context.Context, vol string, id meta.ScopeID, req api.SetQuotaRequest) (api.QuotaScope, error) {
	if _, err := s.scopeVolume(vol, id); err != nil {
		return api.QuotaScope{}, err
	}
	if req.LimitBytes != nil && *req.LimitBytes < 0 {
		return api.QuotaScope{}, fmt.Errorf("%w: limit_bytes %d is negative", meta.ErrInvalid, *req.LimitBytes)
	}
	if req.LimitInodes != nil && *req.LimitInodes < 0 {
		return api.QuotaScope{}, fmt.Errorf("%w: limit_inodes %d is negative", meta.ErrInvalid, *req.LimitInodes)
	}
	apply := func(q *meta.QuotaScope) error {
		if req.LimitBytes != nil {
			q.LimitBytes = *req.LimitBytes
		}
		if req.LimitInodes != nil {
			q.LimitInodes = *req.LimitInodes
		}
		return nil
	}
	s.limitMu.Lock()
	defer s.limitMu.Unlock()
	sc, err := s.store.UpdateScope(ctx, vol, id, apply)
	if errors.Is(err, meta.ErrNotFound) {
		sc = meta.QuotaScope{Volume: vol, ID: id}
		_ = apply(&sc)
		err = s.store.CreateScope(ctx, sc)
		if errors.Is(err, meta.ErrExists) { // created concurrently: update it
			_, err = s.store.UpdateScope(ctx, vol, id, apply)
		}
		if err == nil {
			sc, err = s.store.GetScope(ctx, vol, id)
		}
	}
	if err != nil {
		return api.QuotaScope{}, err
	}
	if err := s.limitChanged(sc); err != nil {
		return api.QuotaScope{}, err
	}
	s.log.Info().Str("scope", id.String()).Str("volume", vol).Int64("limit_bytes", sc.LimitBytes).
		Int64("limit_inodes", sc.LimitInodes).Msg("quota set")
	return s.withUsage(ctx, sc), nil
}

// UnsetQuota removes a scope's limits (both set to 0).
func (s *Service) UnsetQuota(ctx context.Context, vol string, id meta.ScopeID) (api.QuotaScope, error) {
	if _, err := s.scopeVolume(vol, id); err != nil {
		return api.QuotaScope{}, err
	}
	s.limitMu.Lock()
	defer s.limitMu.Unlock()
	sc, err := s.store.UpdateScope(ctx, vol, id, func(q *meta.QuotaScope) error {
		q.LimitBytes, q.LimitInodes = 0, 0
		return nil
	})
	if errors.Is(err, meta.ErrNotFound) {
		return api.QuotaScope{}, errNoScope(vol, id)
	}
	if err != nil {
		return api.QuotaScope{}, err
	}
	if err := s.limitChanged(sc); err != nil {
		return api.QuotaScope{}, err
	}
	s.log.Info().Str("scope", id.String()).Str("volume", vol).Msg("quota removed")
	return s.withUsage(ctx, sc), nil
}

// Policy returns an owner's resource policy (zero when none is set).
func (s *Service) Policy(ctx context.Context, owner meta.ScopeID) (meta.Policy, error) {
	if err := checkOwner("policy owner", owner); err != nil {
		return meta.Policy{}, err
	}
	return s.store.GetPolicy(ctx, owner)
}

// SetPolicy replaces an owner's resource policy.
func (s *Service) SetPolicy(ctx context.Context, owner meta.ScopeID, p meta.Policy) (meta.Policy, error) {
	if err := checkOwner("policy owner", owner); err != nil {
		return meta.Policy{}, err
	}
	if p.MaxFolderCount < 0 {
		return meta.Policy{}, fmt.Errorf("%w: max_vfolder_count %d is negative", meta.ErrInvalid, p.MaxFolderCount)
	}
	if p.MaxQuotaScopeSize < 0 {
		return meta.Policy{}, fmt.Errorf("%w: max_quota_scope_size %d is negative", meta.ErrInvalid, p.MaxQuotaScopeSize)
	}
	if err := checkPolicyVolumes(p); err != nil {
		return meta.Policy{}, err
	}
	if err := s.store.SetPolicy(ctx, owner, p); err != nil {
		return meta.Policy{}, err
	}
	s.log.Info().Str("owner", owner.String()).Int("max_vfolder_count", p.MaxFolderCount).
		Int64("max_quota_scope_size", p.MaxQuotaScopeSize).Interface("allowed_volume_perms", p.Volumes).Msg("policy set")
	return s.store.GetPolicy(ctx, owner)
}

// Code maps an error of this package (or of the store) to its API error
// code. It is the one place where that mapping lives.
func Code(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, statedisk.ErrFull), errors.Is(err, quota.ErrStoreFull):
		return api.CodeStateFull
	case errors.Is(err, ErrUnavailable), errors.Is(err, meta.ErrClosed), errors.Is(err, meta.ErrLocked),
		errors.Is(err, meta.ErrUnavailable):
		return api.CodeUnavailable
	case errors.Is(err, ErrForbidden):
		return api.CodeForbidden
	case errors.Is(err, meta.ErrInvalid):
		return api.CodeInvalid
	case errors.Is(err, meta.ErrNotFound):
		return api.CodeNotFound
	case errors.Is(err, meta.ErrExists):
		return api.CodeExists
	case errors.Is(err, meta.ErrConflict):
		return api.CodeConflict
	case errors.Is(err, meta.ErrLimitExceeded):
		return api.CodeLimitExceeded
	}
	return api.CodeInternal
}
