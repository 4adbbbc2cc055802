package service

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/internal/volume"
	"github.com/vfolder/vfolder/meta"
	"github.com/vfolder/vfolder/quota"
)

// Volumes: attached and unavailable.
//
// A configured volume is attached when its directory is there and is the
// volume: AttachVolume opens it and checks, in order, that the path exists,
// that it is a mount point when the volume requires one (require_mount),
// that it carries version.txt "3", and that it holds at least one of the
// folders the store knows on it. version.txt is written only on a
// brand-new volume: an empty directory the store does not know (no volume
// record and no folder on it). A volume the store knows that shows no
// version.txt, or none of its folders, is taken for a missing mount, never
// for an empty volume: writing there would hide what is written once the
// real file system is mounted again.
//
// A volume that cannot be attached is unavailable, with the reason: it is
// listed with status "unavailable", its live folders show status "error"
// and the reason, get no views, and creating a folder on it, purging or
// publishing one of its folders fail with ErrUnavailable naming the
// volume, its path and the reason. The daemon serves the other volumes.
// WatchVolumes tries again every few seconds; once a volume attaches, its
// quota limits are handed to the ledger, interrupted creates and purges
// are finished, its views appear, and, after an unclean start, its quota
// scopes are checked, all without a restart.

// unavailableVol is a configured volume that is not attached.
type unavailableVol struct {
	rec    meta.Volume
	reason string
}

func (u *unavailableVol) err() error { return &volumeDownError{u.rec.Name, u.rec.Path, u.reason} }

// volumeDownError is the error of an operation that needs an unavailable
// volume; it matches ErrUnavailable.
type volumeDownError struct{ name, path, reason string }

func (e *volumeDownError) Error() string {
	return fmt.Sprintf("volume %q (%s) is unavailable: %s", e.name, e.path, e.reason)
}

func (e *volumeDownError) Is(target error) bool { return target == ErrUnavailable }

// maxProbe bounds how many known folders AttachVolume looks for.
const maxProbe = 64

// AttachVolume opens a configured volume, checks it (see above), writes
// version.txt on a brand-new one and records it in the store. A volume
// that cannot be attached is kept as unavailable with the reason, and the
// error (naming the volume and its path) is returned; WatchVolumes tries
// it again.
func (s *Service) AttachVolume(ctx context.Context, v meta.Volume) error {
	vol, err := s.openVolume(ctx, v)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		if s.vols[v.Name] == nil {
			s.unavail[v.Name] = &unavailableVol{rec: v, reason: err.Error()}
		}
		return fmt.Errorf("volume %q: %w", v.Name, err)
	}
	if old := s.vols[v.Name]; old != nil {
		old.vol.Close()
	}
	s.vols[v.Name] = &attached{rec: v, vol: vol}
	delete(s.unavail, v.Name)
	return nil
}

func (s *Service) openVolume(ctx context.Context, v meta.Volume) (*volume.Volume, error) {
	vol, err := openChecked(ctx, s.store, v, s.opts.StorageUID, s.opts.StorageGID, true)
	if err != nil {
		return nil, err
	}
	if err := s.shareVolume(ctx, v); err != nil {
		vol.Close()
		return nil, err
	}
	return vol, nil
}

// ProbeVolume tells whether a configured volume is there, by the checks
// AttachVolume makes (see above), without writing anything: a volume
// without version.txt counts as missing. The daemon asks it before the
// quota ledger's crash recovery looks at folders on the volume, so that a
// missing mount never makes their files look deleted.
func ProbeVolume(ctx context.Context, store meta.Store, v meta.Volume) error {
	vol, err := openChecked(ctx, store, v, -1, -1, false)
	if err != nil {
		return err
	}
	return vol.Close()
}

// openChecked opens and checks a volume; with init, version.txt is written
// on a brand-new one (owned by uid:gid).
func openChecked(ctx context.Context, store meta.Store, v meta.Volume, uid, gid int, init bool) (*volume.Volume, error) {
	_, err := store.GetVolume(ctx, v.Name)
	known := err == nil || !init
	if err != nil && !errors.Is(err, meta.ErrNotFound) {
		return nil, err
	}
	probe, err := probeFolders(ctx, store, v.Name)
	if err != nil {
		return nil, err
	}
	known = known || len(probe) > 0
	vol, err := volume.Open(v.Path)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			vol.Close()
		}
	}()
	if v.RequireMount {
		if err := vol.RequireMountPoint(); err != nil {
			return nil, err
		}
	}
	if err := vol.EnsureVersion(uid, gid, known); err != nil {
		return nil, err
	}
	if len(probe) > 0 {
		found := false
		for _, f := range probe {
			if found, err = vol.FolderExists(f.Owner, f.ID); err != nil || found {
				break
			}
		}
		if err != nil {
			return nil, err
		}
		if !found {
			return nil, fmt.Errorf("%w: %s holds none of the folders the store knows on this volume (%s among them): it is probably not the volume's file system", volume.ErrMissing, v.Path, probe[0].ID)
		}
	}
	ok = true
	return vol, nil
}

// probeFolders lists up to maxProbe folders of a volume whose directory
// must exist (not those being created or purged).
func probeFolders(ctx context.Context, store meta.Store, vol string) ([]meta.Folder, error) {
	all, err := store.ListFolders(ctx, meta.FolderFilter{Volume: vol, IncludeDeleted: true})
	if err != nil {
		return nil, err
	}
	var out []meta.Folder
	for _, f := range all {
		switch f.Status {
		case meta.StatusReady, meta.StatusMounted, meta.StatusError, meta.StatusDeletePending, meta.StatusDeleteError:
			out = append(out, f)
		}
		if len(out) == maxProbe {
			break
		}
	}
	return out, nil
}

func (s *Service) attachedVolume(name string) (*attached, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if a := s.vols[name]; a != nil {
		return a, nil
	}
	if u := s.unavail[name]; u != nil {
		return nil, u.err()
	}
	return nil, fmt.Errorf("%w: volume %q is not configured", meta.ErrNotFound, name)
}

// VolumePath returns the path of an attached volume; false while the
// volume is unavailable or not configured (its directory must not be
// taken for the volume: a missing mount leaves an empty directory).
func (s *Service) VolumePath(name string) (string, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if a := s.vols[name]; a != nil {
		return a.vol.Path(), true
	}
	return "", false
}

// Volumes lists the configured volumes, by name, attached or not.
func (s *Service) Volumes(ctx context.Context) ([]api.Volume, error) {
	s.mu.RLock()
	out := make([]api.Volume, 0, len(s.vols)+len(s.unavail))
	var ready []*attached
	for _, a := range s.vols {
		out = append(out, api.Volume{Volume: a.rec, Status: api.VolumeReady})
		ready = append(ready, a)
	}
	for _, u := range s.unavail {
		out = append(out, api.Volume{Volume: u.rec, Status: api.VolumeUnavailable, Reason: u.reason})
	}
	s.mu.RUnlock()
	// statfs outside the lock: a slow network file system delays only
	// this call (volspace.go).
	for i, a := range ready {
		out[i].VolumeSpace = s.volumeSpace(a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// WatchVolumes tries to attach every unavailable volume every interval
// until Close, and brings each one that attaches into service (see
// above).
func (s *Service) WatchVolumes(interval time.Duration) {
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-s.base.Done():
				return
			case <-t.C:
			}
			s.mu.RLock()
			var todo []meta.Volume
			for _, u := range s.unavail {
				todo = append(todo, u.rec)
			}
			s.mu.RUnlock()
			for _, v := range todo {
				s.retryAttach(v)
			}
		}
	}()
}

// retryAttach attaches an unavailable volume and brings it into service.
func (s *Service) retryAttach(v meta.Volume) {
	ctx := s.base
	s.mu.RLock()
	before := s.unavail[v.Name]
	s.mu.RUnlock()
	if before == nil {
		return
	}
	if err := s.AttachVolume(ctx, v); err != nil {
		s.mu.RLock()
		after := s.unavail[v.Name]
		s.mu.RUnlock()
		if after != nil && after.reason != before.reason {
			s.log.Warn().Err(err).Str("volume", v.Name).Str("path", v.Path).Msg("volume still unavailable")
		}
		return
	}
	s.log.Warn().Str("volume", v.Name).Str("path", v.Path).Msg("volume is back: attached; its folders are served again")
	if err := s.startQuotaOn(ctx, v.Name); err != nil {
		s.log.Error().Err(err).Str("volume", v.Name).Msg("cannot hand the volume's quota limits to the ledger; the next limit change or restart does")
	}
	if err := s.recoverOn(ctx, v.Name); err != nil {
		s.log.Error().Err(err).Str("volume", v.Name).Msg("cannot finish the creates and purges left on the volume")
	}
	if s.viewsOn() {
		if err := s.SyncViews(ctx); err != nil {
			s.log.Error().Err(err).Str("volume", v.Name).Msg("cannot build the views of the volume's folders")
		}
	}
	s.mu.RLock()
	owed := s.owed
	s.mu.RUnlock()
	if owed {
		s.checkVolume(v.Name)
	}
}

// startQuotaOn hands the stored limits of a volume's scopes to the ledger
// (StartQuota for a volume attached late).
func (s *Service) startQuotaOn(ctx context.Context, vol string) error {
	if s.opts.Quota == nil {
		return nil
	}
	s.limitMu.Lock()
	defer s.limitMu.Unlock()
	scopes, err := s.store.ListScopes(ctx, vol)
	if err != nil {
		return fmt.Errorf("quota: list the scopes of volume %q: %w", vol, err)
	}
	for _, sc := range scopes {
		if err := s.applyLimit(sc); err != nil {
			return err
		}
	}
	return nil
}

// checkVolume checks every quota scope of a volume attached after an
// unclean start, with repair, in the background.
func (s *Service) checkVolume(vol string) {
	if s.opts.Quota == nil {
		return
	}
	seen := map[quota.ScopeKey]bool{}
	var keys []quota.ScopeKey
	if scopes, err := s.store.ListScopes(s.checks, vol); err == nil {
		for _, sc := range scopes {
			k := scopeKey(sc.Volume, sc.ID)
			seen[k] = true
			keys = append(keys, k)
		}
	}
	for _, k := range s.opts.Quota.Scopes() {
		if k.Volume == vol && !seen[k] {
			keys = append(keys, k)
		}
	}
	for _, k := range keys {
		s.beginCheck(k)
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		for _, k := range keys {
			if s.checks.Err() == nil {
				if _, err := s.CheckQuota(s.checks, k.Volume, k.ID, true); err != nil && !errors.Is(err, meta.ErrNotFound) {
					s.log.Error().Err(err).Str("scope", k.String()).Msg("quota recovery check failed")
				}
			}
			s.endCheck(k)
		}
	}()
}

// anyUnavailable reports whether a configured volume is not attached.
func (s *Service) anyUnavailable() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.unavail) > 0
}

// VolumeRetryInterval is how often the daemon tries the unavailable
// volumes again (WatchVolumes).
const VolumeRetryInterval = 3 * time.Second
