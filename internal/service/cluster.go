package service

// Cluster mode: the service's side of the other nodes.
//
// # Keeping in step (FollowStore)
//
// Every node changes the shared store (meta/etcdstore) on its own; the
// others learn of it through the store's meta.Watcher. FollowStore loads a
// snapshot, brings the node in step with it (resync: SyncViews rebuilds
// the standing views, StartQuota hands every limit to the ledger and drops
// ledger folders whose record is gone), then follows the changes from the
// snapshot's revision. Each change goes to the function a local call of
// the same kind uses:
//
//   - a folder created, renamed, trashed, restored or purged: syncOwner
//     (the owner's key directories, and every member's for a project); a
//     purge also drops the folder from this node's ledger (dropFolder);
//   - a membership set or removed: syncMemberViews of the member;
//   - a scope's limits: the ledger's SetLimit (applyLimit, under limitMu,
//     as SetQuota does);
//   - a policy: nothing (policies are read when a folder is created);
//   - a volume record that differs from this node's configuration: logged;
//   - sessions: nothing (each node's sessions are its own, see
//     etcdstore.Options.SessionNamespace).
//
// Changes that arrive together are coalesced (each owner, member and
// scope is synced once). A resync event (etcd compacted the revisions,
// lost its leader, the connection was lost) starts over with a new
// snapshot; while etcd cannot be reached the node keeps serving its views
// and I/O as they are, tries to load again every few seconds, and catches
// up once etcd answers. The node's own changes come back through the watch
// too; syncing them again finds nothing to do.
//
// # Mounts and the trash across nodes (Options.Cluster)
//
// Package cluster keeps a folder that a session on any live node mounts
// out of the trash (claims and fences; the argument is in its package
// comment). The service takes a claim before every session view or
// session record makes a folder mounted on this node (claimLocked, under
// viewMu, followed by the re-read of the folder record that the local
// checks already do), and releases the claims that no view and no record
// of this node hold any more (releaseClaimsLocked, under viewMu, after
// every removal). Trash and purge take the folder's fence after the local
// check, change the status, then check the fence (undoing the change when
// a claim slipped in after the node lost its lease). Creates hold the
// fence until the folder is ready and purges until its record is gone, and
// recovery (Recover at start, and again whenever a node leaves the
// cluster) takes the fence of each folder it finishes, so it never touches
// what a live node is doing.

import (
	"context"
	"errors"
	"fmt"
	"time"

	vfs "github.com/vfolder/vfolder/fs"
	"github.com/vfolder/vfolder/meta"
)

// Cluster is what the service asks of the other nodes; package cluster
// implements it. nil on a node of its own.
type Cluster interface {
	// Claim records, before a session view or a session record of this
	// node mounts folder f, that the session mounts it. It fails with
	// meta.ErrConflict while another operation (a trash through another
	// node) holds the folder's fence.
	Claim(ctx context.Context, f meta.Folder, session string) error
	// Release drops the claims that held says are not held any more.
	Release(ctx context.Context, held func(folderID, session string) bool)
	// Fence keeps new claims of f out while action is done to it, and
	// fails with meta.ErrConflict naming every session and its node that
	// mounts it. check tells after the status change whether a claim
	// slipped in (an error: undo the change); release ends the fence.
	Fence(ctx context.Context, f meta.Folder, action string) (check func(context.Context) error, release func(), err error)
	// ShareVolume records this node's configuration of a volume in the
	// shared store, refusing one that differs from what live nodes use.
	ShareVolume(ctx context.Context, store meta.Store, v meta.Volume) error
	// Departed signals that a node left the cluster.
	Departed() <-chan struct{}
}

// noCheck and noRelease are the fence of a node of its own.
func noCheck(context.Context) error { return nil }
func noRelease()                    {}

// fence takes the cluster fence of f (see Cluster.Fence); on a node of
// its own it does nothing.
func (s *Service) fence(ctx context.Context, f meta.Folder, action string) (func(context.Context) error, func(), error) {
	if s.opts.Cluster == nil {
		return noCheck, noRelease, nil
	}
	return s.opts.Cluster.Fence(ctx, f, action)
}

// claimLocked claims f for session on this node (see the file comment).
// viewMu is held; the caller reads the folder record afterwards.
func (s *Service) claimLocked(ctx context.Context, f meta.Folder, session string) error {
	if s.opts.Cluster == nil {
		return nil
	}
	return s.opts.Cluster.Claim(ctx, f, session)
}

// releaseClaims is releaseClaimsLocked taking viewMu.
func (s *Service) releaseClaims(ctx context.Context) {
	if s.opts.Cluster == nil {
		return
	}
	s.viewMu.Lock()
	defer s.viewMu.Unlock()
	s.releaseClaimsLocked(ctx)
}

// releaseClaimsLocked releases the claims that neither a session view
// nor a session record of this node holds. When the records cannot be
// read every claim stays (a claim too many only keeps a folder from the
// trash). viewMu is held.
func (s *Service) releaseClaimsLocked(ctx context.Context) {
	if s.opts.Cluster == nil {
		return
	}
	ctx = context.WithoutCancel(ctx)
	recs, err := s.store.ListSessions(ctx)
	if err != nil {
		s.log.Warn().Err(err).Msg("cannot read the session records; the claims of ended sessions stay until the next change")
		return
	}
	type pair struct{ folder, session string }
	held := map[pair]bool{}
	for pl, sp := range s.sessions {
		held[pair{sp.FolderID, pl.key}] = true
	}
	for _, r := range recs {
		for _, m := range r.Mounts {
			held[pair{m.FolderID, r.ID}] = true
		}
	}
	s.opts.Cluster.Release(ctx, func(folder, session string) bool { return held[pair{folder, session}] })
}

// undoStatus sets a folder's status back to was when it is still now (a
// trash or purge whose fence check failed).
func (s *Service) undoStatus(f meta.Folder, now, was meta.Status) {
	_, err := s.store.UpdateFolder(context.Background(), f.ID, func(x *meta.Folder) error {
		if x.Status != now {
			return errSkip
		}
		x.Status = was
		return nil
	})
	if err != nil && !errors.Is(err, errSkip) {
		s.log.Error().Err(err).Str("folder", f.ID).Str("status", string(now)).Str("was", string(was)).
			Msg("cannot undo the status change of a folder that a session claimed meanwhile")
	}
}

// shareVolume records the volume in the store: through the cluster, or
// on a node of its own by writing it when the record differs.
func (s *Service) shareVolume(ctx context.Context, v meta.Volume) error {
	if s.opts.Cluster != nil {
		return s.opts.Cluster.ShareVolume(ctx, s.store, v)
	}
	if stored, err := s.store.GetVolume(ctx, v.Name); err == nil && stored == v {
		return nil
	}
	return s.store.PutVolume(ctx, v)
}

// followRetry is how long FollowStore waits before loading again after
// the store could not be reached.
const followRetry = 2 * time.Second

// maxBatch bounds how many changes are coalesced into one sync.
const maxBatch = 1000

// FollowStore keeps this node in step with the changes made through the
// other nodes (see the file comment), in the background until Close. With
// Options.Cluster it also finishes, whenever a node leaves the cluster,
// what that node left unfinished (recoverOn).
func (s *Service) FollowStore(w meta.Watcher) {
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		s.follow(w)
	}()
}

func (s *Service) follow(w meta.Watcher) {
	ctx := s.base
	var departed <-chan struct{}
	if s.opts.Cluster != nil {
		departed = s.opts.Cluster.Departed()
	}
	down := false
	for ctx.Err() == nil {
		snap, err := w.Load(ctx)
		if err != nil {
			if errors.Is(err, meta.ErrClosed) || ctx.Err() != nil {
				return
			}
			if !down {
				s.log.Warn().Err(err).Msg("cannot follow the cluster's changes: views and I/O go on as they are; trying again")
				down = true
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(followRetry):
			}
			continue
		}
		if down {
			s.log.Warn().Msg("following the cluster's changes again")
			down = false
		}
		s.resync(ctx)
		events := w.Watch(ctx, snap.Rev)
	stream:
		for {
			select {
			case <-ctx.Done():
				return
			case <-departed:
				if err := s.recoverOn(ctx, ""); err != nil {
					s.log.Warn().Err(err).Msg("cannot finish what a departed node left; trying again when the next node leaves or at the next start")
				}
			case ev, ok := <-events:
				if !ok {
					break stream
				}
				batch := []meta.Event{ev}
			more:
				for len(batch) < maxBatch && batch[len(batch)-1].Kind != meta.EventResync {
					select {
					case next, ok := <-events:
						if !ok {
							break more // the next read sees the end
						}
						batch = append(batch, next)
					default:
						break more
					}
				}
				if !s.apply(ctx, batch) {
					break stream
				}
			}
		}
	}
}

// resync brings the node in step with the store: every standing view and
// every limit, and the ledger's folders.
func (s *Service) resync(ctx context.Context) {
	if s.viewsOn() {
		if err := s.SyncViews(ctx); err != nil {
			s.log.Error().Err(err).Msg("cannot rebuild the views from the cluster's records")
		}
	}
	if err := s.StartQuota(ctx); err != nil {
		s.log.Error().Err(err).Msg("cannot hand the cluster's limits to the ledger")
	}
}

// apply syncs what a batch of changes touched. It returns false after a
// resync event (the stream ends: load again).
func (s *Service) apply(ctx context.Context, batch []meta.Event) bool {
	owners := map[meta.ScopeID]bool{}
	users := map[string]bool{}
	var scopes []meta.Event
	all := false
	for _, ev := range batch {
		switch ev.Kind {
		case meta.EventResync:
			s.log.Info().Err(ev.Err).Int64("rev", ev.Rev).Msg("reloading the cluster's records")
			return false
		case meta.EventFolder:
			f := ev.Folder
			if f.Owner.IsZero() {
				all = true // only the id is known
				continue
			}
			owners[f.Owner] = true
			if ev.Deleted && f.Volume != "" {
				s.dropFolder(*f)
			}
		case meta.EventMembership:
			users[ev.Membership.User] = true
		case meta.EventShare:
			users[ev.Share.User] = true
		case meta.EventScope:
			scopes = append(scopes, ev)
		case meta.EventVolume:
			s.volumeEvent(*ev.Volume, ev.Deleted)
		}
	}
	for _, ev := range scopes {
		s.scopeEvent(*ev.Scope, ev.Deleted)
	}
	if !s.viewsOn() {
		return true
	}
	if all {
		if err := s.SyncViews(ctx); err != nil {
			s.log.Error().Err(err).Msg("cannot rebuild the views")
		}
		return true
	}
	s.viewMu.Lock()
	defer s.viewMu.Unlock()
	keys := map[keyDir]bool{}
	for owner := range owners {
		ks, err := s.ownerKeys(ctx, owner)
		if err != nil {
			s.log.Error().Err(err).Str("owner", owner.String()).Msg("cannot read the members to update the views")
			continue
		}
		for _, k := range ks {
			keys[k] = true
		}
	}
	for u := range users {
		keys[keyDir{vfs.NSUsers, u}] = true
	}
	for k := range keys {
		s.syncKeysLocked(ctx, k)
	}
	return true
}

// scopeEvent hands a scope's limits changed through another node to the
// ledger.
func (s *Service) scopeEvent(sc meta.QuotaScope, deleted bool) {
	if s.opts.Quota == nil {
		return
	}
	if _, err := s.attachedVolume(sc.Volume); err != nil {
		return // handed over when the volume attaches
	}
	if deleted {
		sc.LimitBytes, sc.LimitInodes = 0, 0
	}
	s.limitMu.Lock()
	defer s.limitMu.Unlock()
	if s.opts.ClusterQuota != nil {
		// The limit as the store holds it now (clusterquota.go).
		cur, err := s.currentScope(s.base, sc)
		if err != nil {
			s.log.Warn().Err(err).Str("scope", sc.ID.String()).Msg("cannot read a scope changed through another node; the next reload applies it")
			return
		}
		sc = cur
	}
	if s.ledgerHolds(sc) {
		return
	}
	if err := s.limitChanged(sc); err != nil {
		s.log.Error().Err(err).Str("scope", sc.ID.String()).Str("volume", sc.Volume).Msg("cannot apply a limit set through another node")
		return
	}
	s.log.Info().Str("scope", sc.ID.String()).Str("volume", sc.Volume).Int64("limit_bytes", sc.LimitBytes).
		Int64("limit_inodes", sc.LimitInodes).Msg("quota set through another node applied")
}

// volumeEvent reports a volume record that no longer matches this node's
// configuration.
func (s *Service) volumeEvent(v meta.Volume, deleted bool) {
	s.mu.RLock()
	a := s.vols[v.Name]
	s.mu.RUnlock()
	if a == nil {
		return
	}
	if deleted || a.rec != v {
		s.log.Warn().Str("volume", v.Name).Str("record", fmt.Sprintf("%+v", v)).Bool("deleted", deleted).
			Str("this_node", fmt.Sprintf("%+v", a.rec)).
			Msg("the cluster's record of a volume no longer matches this node's configuration; this node goes on with its own")
	}
}
