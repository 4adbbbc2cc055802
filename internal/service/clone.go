package service

// Clone and background purge: the two long operations on a folder, each
// running in the background with its progress on the folder (api.Folder
// Progress, kept in memory in s.ops while it runs).
//
// # Clone
//
//	check:   source ready and cloneable; volume allows clones; the
//	         caller's volume permission; measure the source (package
//	         clone); hold its bytes and inodes in the target scope
//	         (quota.Manager.HoldRoom), or refuse with the numbers
//	record:  new folder "cloning" -> mkdir its root -> answer the call
//	copy:    clone.Tree (background, under the service's context)
//	charge:  quota Check with Repair of the new folder: records every
//	         object of the copy as it is on storage, exactly; then the
//	         hold is released (the scope counts the copy twice meanwhile,
//	         never not at all, so concurrent writers cannot take its room)
//	done:    "cloning" -> "ready", views follow
//
// The copy's folder shows in no view and cannot be mounted, trashed or
// renamed while cloning (usable). A failed copy is rolled back: the tree
// is removed, the folder dropped from the ledger, the record deleted,
// then the hold released. A crash (or a shutdown) during the copy leaves
// the record "cloning": Recover rolls it back at the next start
// (rollBackClone), before anything is served, so a clone either finishes
// or leaves no trace; it is never "ready" half copied. The hold lives in
// memory only and goes with the process.
//
// The hold is what the source measured. A source written during the copy
// (it may stay mounted) can make the copy differ: entries that vanish are
// skipped, files that grew are copied as they are then, and new
// directories may be a little larger or smaller than the source's; the
// copy is charged as it is on storage, which may then differ from the
// hold by that much. A source purged during the copy fails the clone.
//
// Clones are refused in cluster mode (the room of a scope there is a
// node's grant, which a hold cannot take yet).
//
// # Background purge
//
// StartPurge marks the folder delete-ongoing (startPurge, as Purge does)
// and returns at once; finishPurge removes the tree in the background,
// counting the entries removed against the folder's inode count in the
// ledger (plus its root), then gives its usage back (DropFolder) and
// deletes the record. A shutdown or crash leaves it delete-ongoing, and
// Recover resumes it. Purge (synchronous) stays for callers that wait.

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/internal/clone"
	"github.com/vfolder/vfolder/meta"
	"github.com/vfolder/vfolder/quota"
)

// folderOp is a clone or purge running on a folder.
type folderOp struct {
	op         string
	source     string
	started    time.Time
	bytesTotal int64
	filesTotal int64
	ctr        clone.Counters // clone: what the copy made
	removed    atomic.Int64   // purge: entries removed
}

func (o *folderOp) progress() *api.Progress {
	p := &api.Progress{Op: o.op, Source: o.source, StartedAt: o.started, BytesTotal: o.bytesTotal, FilesTotal: o.filesTotal}
	switch o.op {
	case api.OpClone:
		p.BytesDone, p.FilesDone = o.ctr.BytesDone.Load(), o.ctr.ObjectsDone.Load()
	case api.OpPurge:
		p.FilesDone = o.removed.Load()
	}
	// A source written meanwhile may hold more than it did when measured.
	p.BytesTotal = max(p.BytesTotal, p.BytesDone)
	p.FilesTotal = max(p.FilesTotal, p.FilesDone)
	return p
}

// progressOf is the progress of what runs on a folder in status st, nil
// when nothing does. An operation shows only while the folder is in its
// status (cloning, delete-ongoing): it is registered before the status is
// written and ends after the next one is, so that a reader never sees a
// clone cloning without progress or ready with progress.
func (s *Service) progressOf(id string, st meta.Status) *api.Progress {
	v, ok := s.ops.Load(id)
	if !ok {
		return nil
	}
	o := v.(*folderOp)
	if (o.op == api.OpClone && st != meta.StatusCloning) || (o.op == api.OpPurge && st != meta.StatusDeleteOngoing) {
		return nil
	}
	return o.progress()
}

// usable reports whether a folder in this status may be shown in views
// and mounted: live, and not being copied into.
func usable(st meta.Status) bool {
	return st.Live() && st != meta.StatusCloning
}

// showMounted shows a ready folder that sessions mount as "mounted" (the
// status is not stored: it is what MountedBy says now).
func (s *Service) showMounted(f *api.Folder) {
	if f.Status == meta.StatusReady && len(s.MountedBy(f.ID)) > 0 {
		f.Status = meta.StatusMounted
	}
}

// markMounted is showMounted for a list, with one read of the stored
// sessions for all of it.
func (s *Service) markMounted(ctx context.Context, fs []api.Folder) {
	stored, err := s.store.ListSessions(ctx)
	if err != nil {
		s.log.Warn().Err(err).Msg("cannot read the sessions to tell mounted folders")
	}
	used := map[string]bool{}
	for _, rec := range stored {
		for _, m := range rec.Mounts {
			used[m.FolderID] = true
		}
	}
	s.viewMu.Lock()
	defer s.viewMu.Unlock()
	for _, sp := range s.sessions {
		used[sp.FolderID] = true
	}
	for i := range fs {
		f := &fs[i]
		if f.Status != meta.StatusReady {
			continue
		}
		if used[f.ID] || (s.opts.MountedBy != nil && len(s.opts.MountedBy(f.ID)) > 0) {
			f.Status = meta.StatusMounted
		}
	}
}

// holder is the part of the ledger that holds room (*quota.Manager).
type holder interface {
	HoldRoom(s quota.ScopeKey, bytes, inodes int64) (*quota.Hold, error)
}

// Clone starts a copy of a cloneable folder the caller reaches
// (clonesource.go) into a new folder named req.Name of caller (the
// source's owner when caller is zero) and returns
// the new folder, status cloning, at once (see the file comment).
func (s *Service) Clone(ctx context.Context, ref string, caller meta.ScopeID, req api.CloneRequest) (api.Folder, error) {
	if err := meta.ValidateName(req.Name); err != nil {
		return api.Folder{}, err
	}
	src, err := s.cloneSource(ctx, ref, caller)
	if err != nil {
		return api.Folder{}, err
	}
	owner := caller
	if owner.IsZero() {
		owner = src.Owner
	}
	if err := checkDotName(owner, req.Name); err != nil {
		return api.Folder{}, err
	}
	if src.Status != meta.StatusReady {
		return api.Folder{}, fmt.Errorf("%w: folder %q is %s; only a ready folder can be cloned", meta.ErrConflict, src.Name, src.Status)
	}
	if !src.Cloneable {
		return api.Folder{}, fmt.Errorf("%w: folder %q is not cloneable (only a folder created or updated as cloneable can be cloned)", ErrForbidden, src.Name)
	}
	if s.opts.Cluster != nil || s.opts.ClusterQuota != nil {
		return api.Folder{}, fmt.Errorf("%w: clone is not available in cluster mode", ErrUnavailable)
	}
	volName := req.Volume
	if volName == "" {
		volName = src.Volume
	}
	srcA, err := s.folderAttached(src)
	if err != nil {
		return api.Folder{}, err
	}
	dstA, err := s.attachedVolume(volName)
	if err != nil {
		return api.Folder{}, err
	}
	for _, a := range []*attached{srcA, dstA} {
		if !a.rec.CloneAllowed {
			return api.Folder{}, fmt.Errorf("%w: volume %q does not allow clones (clone_allowed is false)", ErrForbidden, a.rec.Name)
		}
	}
	if err := s.CheckVolumePerm(ctx, volName, VolClone, owner); err != nil {
		return api.Folder{}, err
	}
	if src.Volume != volName {
		if err := s.CheckVolumePerm(ctx, src.Volume, VolClone, owner); err != nil {
			return api.Folder{}, err
		}
	}
	policy, err := s.store.GetPolicy(ctx, owner)
	if err != nil {
		return api.Folder{}, err
	}
	if err := s.ensureScope(ctx, volName, owner, policy); err != nil {
		return api.Folder{}, err
	}

	// What the copy needs, and room for it held before anything is made.
	sdir, err := srcA.vol.OpenFolder(src.Owner, src.ID)
	if err != nil {
		return api.Folder{}, fmt.Errorf("clone folder %q: %w", src.Name, err)
	}
	tot, err := clone.Measure(ctx, sdir)
	sdir.Close()
	if err != nil {
		return api.Folder{}, fmt.Errorf("clone folder %q: measuring the source: %w", src.Name, err)
	}
	key := scopeKey(volName, owner)
	var hold *quota.Hold
	if h, ok := s.opts.Quota.(holder); ok && s.opts.Quota != nil {
		hold, err = h.HoldRoom(key, tot.Bytes, tot.Objects)
		if err != nil {
			if errors.Is(err, quota.ErrExceeded) {
				return api.Folder{}, fmt.Errorf("%w: cannot clone folder %q into %s on volume %q: the copy needs %d bytes and %d inodes: %v; nothing was copied",
					meta.ErrLimitExceeded, src.Name, owner, volName, tot.Bytes, tot.Objects, err)
			}
			return api.Folder{}, ledgerErr(err, "clone folder %q", src.Name)
		}
	}
	ok := false
	defer func() {
		if !ok {
			hold.Release()
		}
	}()

	f := meta.Folder{
		ID:         meta.NewFolderID(),
		Name:       req.Name,
		Owner:      owner,
		Volume:     volName,
		UsageMode:  src.UsageMode,
		Permission: src.Permission,
		Status:     meta.StatusCloning,
	}
	op := &folderOp{op: api.OpClone, source: src.ID, started: time.Now().UTC(), bytesTotal: tot.DataBytes, filesTotal: tot.Objects}
	s.ops.Store(f.ID, op)
	defer func() {
		if !ok {
			s.ops.Delete(f.ID)
		}
	}()
	if err := s.store.CreateFolder(ctx, f, policy.MaxFolderCount); err != nil {
		return api.Folder{}, err
	}
	ctx = context.WithoutCancel(ctx)
	if err := s.makeFolderDir(ctx, dstA, f, "clone"); err != nil {
		return api.Folder{}, fmt.Errorf("clone folder %q: %w", src.Name, err)
	}
	ok = true
	s.bg.Add(1)
	go s.runClone(f, src, srcA, dstA, hold, op)
	s.log.Info().Str("folder", f.ID).Str("name", f.Name).Str("source", src.ID).Str("owner", owner.String()).
		Str("volume", volName).Int64("bytes", tot.Bytes).Int64("objects", tot.Objects).Msg("clone started")
	return s.toAPI(f), nil
}

// runClone copies, charges and finishes a clone, or rolls it back.
func (s *Service) runClone(f, src meta.Folder, srcA, dstA *attached, hold *quota.Hold, op *folderOp) {
	defer s.bg.Done()
	defer s.ops.Delete(f.ID)
	start := time.Now()
	st, err := s.copyClone(f, src, srcA, dstA, op)
	if err == nil {
		// The copy is in the ledger: the hold can go.
		hold.Release()
		_, err = s.store.UpdateFolder(context.Background(), f.ID, func(x *meta.Folder) error {
			if x.Status != meta.StatusCloning {
				return fmt.Errorf("%w: folder %q is %s, not cloning", meta.ErrConflict, x.Name, x.Status)
			}
			x.Status = meta.StatusReady
			return nil
		})
		if err == nil {
			s.log.Info().Str("folder", f.ID).Str("name", f.Name).Int64("objects", st.Objects).Int64("bytes", st.Bytes).
				Int64("reflinked", st.Reflinked).Int64("links", st.Links).Int64("skipped", st.Skipped).
				Dur("took", time.Since(start)).Msg("clone finished")
			s.syncOwner(context.Background(), f.Owner)
			return
		}
	}
	if s.base.Err() != nil {
		s.log.Warn().Err(err).Str("folder", f.ID).Msg("clone interrupted by shutdown; it is rolled back at the next start")
		hold.Release()
		return
	}
	s.log.Error().Err(err).Str("folder", f.ID).Str("name", f.Name).Str("source", src.ID).Msg("clone failed; rolling it back")
	if rerr := s.rollBackClone(context.Background(), f, dstA); rerr != nil {
		s.log.Error().Err(rerr).Str("folder", f.ID).Msg("cannot roll the failed clone back; the next start will")
	}
	hold.Release()
}

// copyClone copies the source's tree into the new folder and records the
// copy in the ledger.
func (s *Service) copyClone(f, src meta.Folder, srcA, dstA *attached, op *folderOp) (clone.Stats, error) {
	ctx := s.base
	sdir, err := srcA.vol.OpenFolder(src.Owner, src.ID)
	if err != nil {
		return clone.Stats{}, err
	}
	defer sdir.Close()
	ddir, err := dstA.vol.OpenFolder(f.Owner, f.ID)
	if err != nil {
		return clone.Stats{}, err
	}
	defer ddir.Close()
	st, err := clone.Tree(ctx, sdir, ddir, clone.Options{UID: s.opts.StorageUID, GID: s.opts.StorageGID, Counters: &op.ctr})
	if err != nil {
		return st, err
	}
	// Entries that vanish during the copy are skipped (a live source is
	// written meanwhile); a source purged meanwhile would leave a partial
	// copy, so the source must still be there, ready.
	if cur, err := s.store.GetFolder(ctx, src.ID); err != nil || cur.Status != meta.StatusReady {
		if err == nil {
			err = fmt.Errorf("the source folder %q became %s during the copy", src.Name, cur.Status)
		}
		return st, fmt.Errorf("clone of %q: %w", src.Name, err)
	}
	if s.opts.Quota == nil {
		return st, nil
	}
	// Nobody else touches the copy (no view shows it), so one check
	// records it; a second one only if the first could not confirm
	// everything.
	key := scopeKey(f.Volume, f.Owner)
	for try := 0; ; try++ {
		rep, err := s.opts.Quota.Check(ctx, key, []quota.FolderRoot{{FolderID: f.ID, Dir: ddir}}, quota.CheckOptions{Repair: true})
		if err != nil {
			return st, ledgerErr(err, "record the clone in the quota ledger")
		}
		if len(rep.Folders) == 1 && !rep.Folders[0].Complete {
			return st, fmt.Errorf("record the clone in the quota ledger: the copy could not be read whole: %v", rep.Folders[0].Errors)
		}
		if rep.Busy == 0 {
			return st, nil
		}
		if try == 2 {
			return st, fmt.Errorf("record the clone in the quota ledger: %d objects stayed busy", rep.Busy)
		}
	}
}

// rollBackClone removes an unfinished clone: its tree, its ledger
// folder, its record.
func (s *Service) rollBackClone(ctx context.Context, f meta.Folder, a *attached) error {
	if err := a.vol.RemoveFolder(ctx, f.Owner, f.ID, nil); err != nil {
		return err
	}
	s.dropFolder(f)
	if err := s.store.DeleteFolder(ctx, f.ID); err != nil && !errors.Is(err, meta.ErrNotFound) {
		return err
	}
	s.log.Info().Str("folder", f.ID).Str("name", f.Name).Msg("unfinished clone rolled back")
	return nil
}

// recoverClone rolls back a clone a crash or shutdown interrupted.
func (s *Service) recoverClone(ctx context.Context, f meta.Folder) error {
	a, err := s.folderAttached(f)
	if err != nil {
		return err
	}
	return s.rollBackClone(ctx, f, a)
}

// StartPurge is Purge that returns as soon as the folder is
// delete-ongoing; the removal runs in the background with its progress
// on the folder, and the record goes when it is done (see the file
// comment).
func (s *Service) StartPurge(ctx context.Context, ref string, owner meta.ScopeID, confirm string) (api.Folder, error) {
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
	op, fresh := s.purgeOp(f) // before the status, see progressOf
	id := f.ID
	f, release, err := s.startPurge(ctx, f)
	if err != nil {
		if fresh {
			s.ops.CompareAndDelete(id, op)
		}
		return api.Folder{}, err
	}
	out := s.toAPI(f)
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		if err := s.finishPurge(f); err != nil {
			s.log.Error().Err(err).Str("folder", f.ID).Str("name", f.Name).Msg("purge failed")
		}
		release()
		s.syncOwner(context.Background(), f.Owner)
	}()
	return out, nil
}

// purgeOp registers the progress of a purge about to run on f, unless one
// is registered (fresh is false then); finishPurge ends it.
func (s *Service) purgeOp(f meta.Folder) (op *folderOp, fresh bool) {
	var files int64 = 1 // the root
	if s.opts.Quota != nil {
		files += s.opts.Quota.FolderUsage(f.ID).UsedInodes
	}
	op = &folderOp{op: api.OpPurge, started: time.Now().UTC(), filesTotal: files}
	v, loaded := s.ops.LoadOrStore(f.ID, op)
	return v.(*folderOp), !loaded
}
