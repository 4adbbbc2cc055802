package service

// This file keeps the FUSE namespace (package fs) in step with the folders.
//
// Standing views (users/<uuid>/<name>, projects/<uuid>/<name>) are a
// projection of the store: after every change of a folder the service
// reads the folder's record again and makes its standing views match it
// (syncStanding); at start it rebuilds all of them (StartViews). The
// store stays the truth: a view that cannot be made (the folder's
// directory is missing, say) is logged and the folder operation still
// succeeds; the next start tries again.
//
// Session views (sessions/<session>/<name>) are added and removed through
// the API. They live in memory only: after a restart they are gone (the
// container runtime adds them again). A folder with session views cannot
// be trashed or purged: MountedBy names the sessions.
//
// viewMu serialises every change of the views and the checks that depend
// on them: adding a session view checks that the folder is live, and
// trashing checks that no session has a view, each under viewMu together
// with the change, so that a view of a trashed folder can never appear.

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/vfolder/vfolder/api"
	vfs "github.com/vfolder/vfolder/fs"
	"github.com/vfolder/vfolder/meta"
)

// ErrForbidden: the request asks for more than the caller may have (a
// view mode above the folder's permission, a mount on a volume that does
// not allow mounts).
var ErrForbidden = errors.New("forbidden")

// Views is the FUSE namespace the service keeps in sync. *fs.FS
// implements it. AddView of an identical spec again succeeds; a different
// spec at a taken place fails with meta.ErrExists; RemoveView of a place
// without a view fails with meta.ErrNotFound.
type Views interface {
	AddView(vfs.ViewSpec) error
	RemoveView(namespace, key, name string) error
	Views() []vfs.ViewSpec
}

// viewPlace is where a view lives in the namespace.
type viewPlace struct{ ns, key, name string }

func placeOf(v vfs.ViewSpec) viewPlace { return viewPlace{v.Namespace, v.Key, v.Name} }

// reachEntry is one place where a folder shows up among the standing
// views, and the mode it has there.
type reachEntry struct {
	ns, key string
	mode    meta.Permission
}

// reach decides who reaches a folder through the standing views, and at
// which permission: it is the one answer to "which folders can this user
// (or project) reach" behind users/<uuid>/ and projects/<uuid>/. Only live
// folders are reachable.
//
// It covers owned folders only, until project membership lands in the
// store: a user reaches the folders the user owns, at the folder's
// permission, and a project's folders show under projects/<uuid>/. Once
// membership (and invitations) are modelled, this is where a project
// folder is added under users/<member>/ for every member (at the folder's
// permission, capped by a per-user override) and a shared folder under
// its invitees.
func reach(f meta.Folder) []reachEntry {
	if !f.Status.Live() {
		return nil
	}
	switch f.Owner.Kind {
	case meta.KindUser:
		return []reachEntry{{ns: vfs.NSUsers, key: f.Owner.Hex(), mode: f.Permission}}
	case meta.KindProject:
		return []reachEntry{{ns: vfs.NSProjects, key: f.Owner.Hex(), mode: f.Permission}}
	}
	return nil
}

// standingSpecs are the standing views a folder should have.
func (s *Service) standingSpecs(f meta.Folder) ([]vfs.ViewSpec, error) {
	r := reach(f)
	if len(r) == 0 {
		return nil, nil
	}
	a, err := s.attachedVolume(f.Volume)
	if err != nil {
		return nil, fmt.Errorf("%w: folder %q is on volume %q, which is not configured on this node", ErrUnavailable, f.Name, f.Volume)
	}
	out := make([]vfs.ViewSpec, 0, len(r))
	for _, e := range r {
		out = append(out, vfs.ViewSpec{
			Namespace:   e.ns,
			Key:         e.key,
			Name:        f.Name,
			VolumeName:  a.rec.Name,
			VolumePath:  a.rec.Path,
			FolderRel:   meta.FolderRelPath(f.Owner, f.ID),
			Mode:        e.mode,
			UID:         s.opts.ViewUID,
			GID:         s.opts.ViewGID,
			RWCanDelete: a.rec.RWCanDelete,
			FolderID:    f.ID,
			Scope:       f.Owner,
		})
	}
	return out, nil
}

// StartViews hands the service the mounted FUSE namespace and builds every
// standing view from the store. Call it once, after Recover and before
// serving. Folders whose views cannot be made are logged, not fatal.
func (s *Service) StartViews(ctx context.Context, v Views) error {
	s.viewMu.Lock()
	defer s.viewMu.Unlock()
	s.views = v
	return s.rebuildStanding(ctx)
}

// SyncViews rebuilds every standing view from the store (what StartViews
// does at start). Session views are left alone.
func (s *Service) SyncViews(ctx context.Context) error {
	s.viewMu.Lock()
	defer s.viewMu.Unlock()
	if s.views == nil {
		return errNoViews
	}
	return s.rebuildStanding(ctx)
}

var errNoViews = fmt.Errorf("%w: FUSE views are disabled on this node (vfolderd runs with fuse = false)", ErrUnavailable)

// rebuildStanding makes the standing views match the store. viewMu is held.
func (s *Service) rebuildStanding(ctx context.Context) error {
	all, err := s.store.ListFolders(ctx, meta.FolderFilter{})
	if err != nil {
		return fmt.Errorf("list folders for the views: %w", err)
	}
	want := map[viewPlace]vfs.ViewSpec{}
	for _, f := range all {
		specs, err := s.standingSpecs(f)
		if err != nil {
			s.log.Warn().Err(err).Str("folder", f.ID).Msg("folder left out of the views")
			continue
		}
		for _, sp := range specs {
			want[placeOf(sp)] = sp
		}
	}
	have := map[viewPlace]vfs.ViewSpec{}
	for _, sp := range s.views.Views() {
		if sp.Namespace == vfs.NSUsers || sp.Namespace == vfs.NSProjects {
			have[placeOf(sp)] = sp
		}
	}
	for pl, sp := range have {
		if w, ok := want[pl]; !ok || w != sp {
			if err := s.views.RemoveView(pl.ns, pl.key, pl.name); err != nil && !errors.Is(err, meta.ErrNotFound) {
				s.log.Error().Err(err).Str("view", pl.String()).Msg("cannot remove a stale view")
				continue
			}
			delete(have, pl)
		}
	}
	s.standing = map[string][]vfs.ViewSpec{}
	added, failed := 0, 0
	for pl, sp := range want {
		if _, ok := have[pl]; !ok {
			if err := s.views.AddView(sp); err != nil {
				failed++
				s.log.Error().Err(err).Str("view", pl.String()).Str("folder", sp.FolderID).Msg("cannot add a folder's view")
				continue
			}
			added++
		}
		s.standing[sp.FolderID] = append(s.standing[sp.FolderID], sp)
	}
	s.log.Info().Int("views", len(want)-failed).Int("added", added).Int("failed", failed).Msg("standing views built")
	return nil
}

func (p viewPlace) String() string { return p.ns + "/" + p.key + "/" + p.name }

// syncStanding reads a folder's record and makes its standing views match
// it: a rename removes the old view and adds the new one, a trash or purge
// removes it, a create or restore adds it. Failures are logged: the folder
// operation that called it has already succeeded.
func (s *Service) syncStanding(ctx context.Context, id string) {
	s.viewMu.Lock()
	defer s.viewMu.Unlock()
	if s.views == nil {
		return
	}
	f, err := s.store.GetFolder(context.WithoutCancel(ctx), id)
	switch {
	case errors.Is(err, meta.ErrNotFound):
		s.applyStanding(id, nil)
	case err != nil:
		s.log.Error().Err(err).Str("folder", id).Msg("cannot read the folder to update its views")
	default:
		s.applyFolder(f)
	}
}

// applyFolder makes the standing views of f match f. viewMu is held.
func (s *Service) applyFolder(f meta.Folder) {
	if s.views == nil {
		return
	}
	want, err := s.standingSpecs(f)
	if err != nil {
		s.log.Warn().Err(err).Str("folder", f.ID).Msg("folder left out of the views")
	}
	s.applyStanding(f.ID, want)
}

// applyStanding replaces the standing views of one folder with want:
// removals first, so that a rename frees the old name before the new one
// appears. viewMu is held.
func (s *Service) applyStanding(id string, want []vfs.ViewSpec) {
	if s.views == nil {
		return
	}
	var kept []vfs.ViewSpec
	for _, h := range s.standing[id] {
		if containsSpec(want, h) {
			kept = append(kept, h)
			continue
		}
		if err := s.views.RemoveView(h.Namespace, h.Key, h.Name); err != nil && !errors.Is(err, meta.ErrNotFound) {
			s.log.Error().Err(err).Str("view", placeOf(h).String()).Str("folder", id).Msg("cannot remove a folder's view")
			kept = append(kept, h)
			continue
		}
		s.log.Debug().Str("view", placeOf(h).String()).Str("folder", id).Msg("view removed")
	}
	for _, w := range want {
		if containsSpec(kept, w) {
			continue
		}
		if err := s.views.AddView(w); err != nil {
			s.log.Error().Err(err).Str("view", placeOf(w).String()).Str("folder", id).Msg("cannot add a folder's view")
			continue
		}
		kept = append(kept, w)
		s.log.Debug().Str("view", placeOf(w).String()).Str("folder", id).Msg("view added")
	}
	if len(kept) == 0 {
		delete(s.standing, id)
	} else {
		s.standing[id] = kept
	}
}

func containsSpec(list []vfs.ViewSpec, v vfs.ViewSpec) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// MountedBy returns the sessions that have the folder mounted, sorted:
// those with a session view of it, and those the MountedBy option
// reports.
func (s *Service) MountedBy(folderID string) []string {
	s.viewMu.Lock()
	defer s.viewMu.Unlock()
	return s.mountedByLocked(folderID)
}

func (s *Service) mountedByLocked(folderID string) []string {
	set := map[string]bool{}
	for pl, sp := range s.sessions {
		if sp.FolderID == folderID {
			set[pl.key] = true
		}
	}
	if s.opts.MountedBy != nil {
		for _, id := range s.opts.MountedBy(folderID) {
			set[id] = true
		}
	}
	out := make([]string, 0, len(set))
	for id := range set {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// toView renders a spec as the API's View.
func (s *Service) toView(sp vfs.ViewSpec) api.View {
	return api.View{
		Namespace: sp.Namespace,
		Key:       sp.Key,
		Name:      sp.Name,
		FolderID:  sp.FolderID,
		Volume:    sp.VolumeName,
		Subpath:   sp.Subpath,
		Mode:      sp.Mode,
		UID:       sp.UID,
		GID:       sp.GID,
		Path:      filepath.Join(s.opts.MountPoint, sp.Namespace, sp.Key, sp.Name),
	}
}

// ListViews lists the views, sorted by namespace, key and name. namespace
// "" lists every namespace; key "" every key (a key needs a namespace).
func (s *Service) ListViews(ctx context.Context, namespace, key string) ([]api.View, error) {
	switch namespace {
	case "", vfs.NSSessions, vfs.NSUsers, vfs.NSProjects:
	default:
		return nil, fmt.Errorf("%w: namespace %q is none of %s, %s, %s", meta.ErrInvalid, namespace, vfs.NSSessions, vfs.NSUsers, vfs.NSProjects)
	}
	if key != "" {
		if namespace == "" {
			return nil, fmt.Errorf("%w: key %q needs a namespace", meta.ErrInvalid, key)
		}
		if err := vfs.ValidateKey(namespace, key); err != nil {
			return nil, err
		}
	}
	s.viewMu.Lock()
	views := s.views
	s.viewMu.Unlock()
	if views == nil {
		return nil, errNoViews
	}
	out := []api.View{}
	for _, sp := range views.Views() {
		if (namespace == "" || sp.Namespace == namespace) && (key == "" || sp.Key == key) {
			out = append(out, s.toView(sp))
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		if a.Key != b.Key {
			return a.Key < b.Key
		}
		return a.Name < b.Name
	})
	return out, nil
}

// AddSessionView adds a session view (see api.CreateViewRequest). created
// is false when the same view was there already (nothing changed).
func (s *Service) AddSessionView(ctx context.Context, req api.CreateViewRequest) (v api.View, created bool, err error) {
	s.viewMu.Lock()
	on := s.views != nil
	s.viewMu.Unlock()
	if !on {
		return api.View{}, false, errNoViews
	}
	if err := vfs.ValidateSessionKey(req.Session); err != nil {
		return api.View{}, false, err
	}
	if err := vfs.ValidateEntryName(req.Name); err != nil {
		return api.View{}, false, err
	}
	comps, err := vfs.SplitSubpath(req.Subpath)
	if err != nil {
		return api.View{}, false, err
	}
	subpath := strings.Join(comps, "/")
	if req.Mode != "" && !req.Mode.Valid() {
		return api.View{}, false, fmt.Errorf("%w: mode %q is none of ro, rw, wd", meta.ErrInvalid, req.Mode)
	}
	uid, gid := s.opts.ViewUID, s.opts.ViewGID
	if req.UID != nil {
		uid = *req.UID
	}
	if req.GID != nil {
		gid = *req.GID
	}
	if uid == ^uint32(0) || gid == ^uint32(0) {
		return api.View{}, false, fmt.Errorf("%w: uid/gid %d cannot own a view (it means \"no id\")", meta.ErrInvalid, ^uint32(0))
	}
	var owner meta.ScopeID
	if req.Owner != nil {
		owner = *req.Owner
	}
	if req.Folder == "" {
		return api.View{}, false, fmt.Errorf("%w: folder is empty: give a folder id, or a name with its owner", meta.ErrInvalid)
	}
	f, err := s.resolve(ctx, req.Folder, owner)
	if err != nil {
		return api.View{}, false, err
	}

	s.viewMu.Lock()
	defer s.viewMu.Unlock()
	if s.views == nil {
		return api.View{}, false, errNoViews
	}
	// Read the record again under viewMu: a trash that ran since the
	// resolve must win.
	f, err = s.store.GetFolder(ctx, f.ID)
	if errors.Is(err, meta.ErrNotFound) {
		return api.View{}, false, fmt.Errorf("%w: folder %q is gone", meta.ErrNotFound, req.Folder)
	}
	if err != nil {
		return api.View{}, false, err
	}
	if !f.Status.Live() {
		return api.View{}, false, fmt.Errorf("%w: folder %q is %s; a folder in the trash cannot be mounted (restore it first)", meta.ErrConflict, f.Name, f.Status)
	}
	mode := req.Mode
	if mode == "" {
		mode = f.Permission
	}
	if mode.Rank() > f.Permission.Rank() {
		return api.View{}, false, fmt.Errorf("%w: mode %s exceeds the permission of folder %q (%s); ask for %s or less", ErrForbidden, mode, f.Name, f.Permission, f.Permission)
	}
	a, err := s.attachedVolume(f.Volume)
	if err != nil {
		return api.View{}, false, fmt.Errorf("%w: folder %q is on volume %q, which is not configured on this node", ErrUnavailable, f.Name, f.Volume)
	}
	if !a.rec.MountAllowed {
		return api.View{}, false, fmt.Errorf("%w: volume %q does not allow mounting its folders in sessions (mount_allowed = false)", ErrForbidden, f.Volume)
	}
	spec := vfs.ViewSpec{
		Namespace:   vfs.NSSessions,
		Key:         req.Session,
		Name:        req.Name,
		VolumeName:  a.rec.Name,
		VolumePath:  a.rec.Path,
		FolderRel:   meta.FolderRelPath(f.Owner, f.ID),
		Subpath:     subpath,
		Mode:        mode,
		UID:         uid,
		GID:         gid,
		RWCanDelete: a.rec.RWCanDelete,
		FolderID:    f.ID,
		Scope:       f.Owner,
	}
	pl := placeOf(spec)
	if old, ok := s.sessions[pl]; ok {
		if old == spec {
			return s.toView(old), false, nil
		}
		return api.View{}, false, fmt.Errorf("%w: session %s already has a view named %q (folder %s, subpath %q, mode %s, uid:gid %d:%d); remove it first",
			meta.ErrExists, pl.key, pl.name, old.FolderID, old.Subpath, old.Mode, old.UID, old.GID)
	}
	if err := s.views.AddView(spec); err != nil {
		return api.View{}, false, viewError(err)
	}
	s.sessions[pl] = spec
	s.log.Info().Str("session", pl.key).Str("name", pl.name).Str("folder", f.ID).Str("subpath", subpath).
		Str("mode", string(mode)).Uint32("uid", uid).Uint32("gid", gid).Msg("session view added")
	return s.toView(spec), true, nil
}

// RemoveSessionView removes a session view and returns it.
func (s *Service) RemoveSessionView(ctx context.Context, session, name string) (api.View, error) {
	if err := vfs.ValidateSessionKey(session); err != nil {
		return api.View{}, err
	}
	if err := vfs.ValidateEntryName(name); err != nil {
		return api.View{}, err
	}
	s.viewMu.Lock()
	defer s.viewMu.Unlock()
	if s.views == nil {
		return api.View{}, errNoViews
	}
	pl := viewPlace{vfs.NSSessions, session, name}
	spec, ok := s.sessions[pl]
	if !ok {
		return api.View{}, fmt.Errorf("%w: session %s has no view named %q", meta.ErrNotFound, session, name)
	}
	if err := s.views.RemoveView(pl.ns, pl.key, pl.name); err != nil && !errors.Is(err, meta.ErrNotFound) {
		return api.View{}, viewError(err)
	}
	delete(s.sessions, pl)
	s.log.Info().Str("session", session).Str("name", name).Str("folder", spec.FolderID).Msg("session view removed")
	return s.toView(spec), nil
}

// viewError keeps the meta sentinels of fs errors and turns a closed file
// system into ErrUnavailable.
func viewError(err error) error {
	if errors.Is(err, vfs.ErrClosed) {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return err
}
