package service

// This file keeps the FUSE namespace (package fs) in step with the folders.
//
// Standing views (users/<uuid>/<name>, projects/<uuid>/<name>) are a
// projection of the store, computed per key directory: projects/<p>/
// holds the project's live folders; users/<u>/ holds what reach says the
// user reaches (owned folders, the folders of the user's projects and the
// folders shared with the user, with the naming rule for clashes; see
// sharing.go). After every change of a folder the
// service recomputes the key directories that depend on its owner (the
// owner's, for a project every member's, and every sharer's), and after
// a membership or share change the user's (syncOwner, syncKeysLocked),
// then applies the
// difference: removals first, then additions. At start it rebuilds all of
// them (StartViews). The store stays the truth: a view that cannot be
// made (the folder's directory is missing, say) is logged and the folder
// operation still succeeds; the next start tries again. A folder still
// being created (performing) gets no view yet: its directory may not be
// there, and a change of another folder of the same owner, computed
// meanwhile, must not take that for a failure.
//
// Session views (sessions/<session>/<name>) come from two places: the
// views API (AddSessionView, kept in memory only) and published sessions
// (sessions.go, persisted as session records and rebuilt at start). A
// view of a published session cannot be removed through the views API:
// unpublish removes it. A folder with session views, or mounted by a
// session record, cannot be trashed or purged: MountedBy names the
// sessions.
//
// viewMu serialises every change of the views and the checks that depend
// on them: adding a session view (or publishing) checks that the folder
// is live, and trashing checks that no session has it, each under viewMu
// together with the change, so that a view of a trashed folder can never
// appear.

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
// views: its key directory, its name there and its mode.
type reachEntry struct {
	ns, key, name string
	mode          meta.Permission
	folder        meta.Folder
	// via is how the user reaches the folder (ViaOwner, ViaProject,
	// ViaShared, ViaInvited); set for users/<uuid>/ entries.
	via string
}

// memberFolders are the folders of one project a user is a member of.
type memberFolders struct {
	m       meta.Membership
	folders []meta.Folder
}

// projectTag is the suffix that tells a project folder apart from a
// folder of the same name the user reaches otherwise.
func projectTag(project string, full bool) string {
	if full {
		return "@" + project
	}
	return "@" + project[:8]
}

// reach decides which folders one user reaches through users/<uuid>/,
// under which names and at which permission. It is the one answer to
// "which folders can this user use", also for publishing.
//
//   - Folders the user owns show by their name, at the folder's
//     permission.
//   - Folders of every project the user is a member of show at the
//     membership's permission when it is set, else at the folder's
//     permission. A project's ".local" is left out (it is mounted per
//     user by publish, as a subfolder).
//   - Names: an owned folder keeps its plain name. A project folder keeps
//     its plain name unless another reached folder (owned, or of another
//     project) has it; then it shows as "<name>@<project hex[:8]>", or
//     "<name>@<project hex>" if that is taken too. A project folder whose
//     every candidate name is taken is left out.
//
// Only live folders are reached. The result is sorted by name.
func reach(user string, owned []meta.Folder, shared []memberFolders) []reachEntry {
	return reachWith(user, owned, shared, nil)
}

// reachWith is reach with the shares the user holds (sharing.go): a share
// of a project folder sets the member's permission on that one folder
// (projectPerm); a share of another user's folder (an accepted
// invitation) adds that folder at the share's permission, capped by the
// folder's (invitedPerm), named like a project folder but tagged with its
// owner's uuid on a clash. grants maps folder ids to the user's shares.
func reachWith(user string, owned []meta.Folder, shared []memberFolders, grants map[string]grant) []reachEntry {
	var out []reachEntry
	taken := map[string]bool{}
	for _, f := range owned {
		if !f.Status.Live() || f.Owner.Kind != meta.KindUser || f.Owner.UUID != user {
			continue
		}
		out = append(out, reachEntry{ns: vfs.NSUsers, key: user, name: f.Name, mode: f.Permission, folder: f, via: ViaOwner})
		taken[f.Name] = true
	}
	count := map[string]int{}
	var cands []reachEntry
	for _, mf := range shared {
		for _, f := range mf.folders {
			if !f.Status.Live() || f.Owner.Kind != meta.KindProject || f.Owner.UUID != mf.m.Project || meta.IsAutomount(f.Name) {
				continue
			}
			g, ok := grants[f.ID]
			via := ViaProject
			if ok {
				via = ViaShared
			}
			mode := projectPerm(f, mf.m, g.sharePtr(ok))
			cands = append(cands, reachEntry{ns: vfs.NSUsers, key: user, name: f.Name, mode: mode, folder: f, via: via})
			count[f.Name]++
		}
	}
	for _, g := range sortedGrants(grants) {
		f := g.folder
		if !invitable(f) || f.Owner.UUID == user || !f.Status.Live() {
			continue
		}
		cands = append(cands, reachEntry{ns: vfs.NSUsers, key: user, name: f.Name, mode: invitedPerm(f, g.share), folder: f, via: ViaInvited})
		count[f.Name]++
	}
	plain := map[string]bool{}
	for _, c := range cands {
		if !taken[c.name] && count[c.name] == 1 {
			plain[c.name] = true
		}
	}
	for name := range plain {
		taken[name] = true
	}
	// Suffixed names in a fixed order, so that the outcome does not depend
	// on the order memberships come in.
	sort.Slice(cands, func(i, j int) bool {
		if cands[i].name != cands[j].name {
			return cands[i].name < cands[j].name
		}
		return cands[i].folder.Owner.UUID < cands[j].folder.Owner.UUID
	})
	for _, c := range cands {
		if plain[c.name] {
			out = append(out, c)
			continue
		}
		placed := false
		for _, full := range []bool{false, true} {
			n := c.name + projectTag(c.folder.Owner.UUID, full)
			if !taken[n] && vfs.ValidateEntryName(n) == nil {
				c.name, placed, taken[n] = n, true, true
				break
			}
		}
		if placed {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// reachProject is what projects/<uuid>/ shows: every live folder of the
// project by its name, at the folder's permission.
func reachProject(project string, folders []meta.Folder) []reachEntry {
	var out []reachEntry
	for _, f := range folders {
		if f.Status.Live() && f.Owner.Kind == meta.KindProject && f.Owner.UUID == project {
			out = append(out, reachEntry{ns: vfs.NSProjects, key: project, name: f.Name, mode: f.Permission, folder: f})
		}
	}
	return out
}

// keyDir names one key directory of the standing views.
type keyDir struct{ ns, key string }

func (k keyDir) String() string { return k.ns + "/" + k.key }

// liveFolders lists an owner's live folders.
func (s *Service) liveFolders(ctx context.Context, owner meta.ScopeID) ([]meta.Folder, error) {
	return s.store.ListFolders(ctx, meta.FolderFilter{Owner: &owner})
}

// userReach computes reach for one user from the store.
func (s *Service) userReach(ctx context.Context, user string) ([]reachEntry, error) {
	grants, err := s.grantsOf(ctx, user)
	if err != nil {
		return nil, err
	}
	owner := meta.ScopeID{Kind: meta.KindUser, UUID: user}
	owned, err := s.liveFolders(ctx, owner)
	if err != nil {
		return nil, err
	}
	ms, err := s.store.ProjectsOf(ctx, user)
	if err != nil {
		return nil, err
	}
	shared := make([]memberFolders, 0, len(ms))
	for _, m := range ms {
		fs, err := s.liveFolders(ctx, meta.ScopeID{Kind: meta.KindProject, UUID: m.Project})
		if err != nil {
			return nil, err
		}
		shared = append(shared, memberFolders{m: m, folders: fs})
	}
	return reachWith(user, owned, shared, grants), nil
}

// wantKey computes the standing views one key directory should hold.
func (s *Service) wantKey(ctx context.Context, k keyDir) ([]vfs.ViewSpec, error) {
	var entries []reachEntry
	switch k.ns {
	case vfs.NSUsers:
		r, err := s.userReach(ctx, k.key)
		if err != nil {
			return nil, err
		}
		entries = r
	case vfs.NSProjects:
		fs, err := s.liveFolders(ctx, meta.ScopeID{Kind: meta.KindProject, UUID: k.key})
		if err != nil {
			return nil, err
		}
		entries = reachProject(k.key, fs)
	}
	out := make([]vfs.ViewSpec, 0, len(entries))
	for _, e := range entries {
		if e.folder.Status == meta.StatusPerforming || e.folder.Status == meta.StatusCloning {
			// Being created: its directory may not be there yet.
			// The create adds the view once the folder is ready;
			// until then it only keeps its name taken (reach).
			continue
		}
		sp, err := s.standingSpec(e)
		if down := (*volumeDownError)(nil); errors.As(err, &down) {
			continue // its volume is not attached: no view until it is
		}
		if err != nil && s.opts.Cluster != nil && errors.Is(err, ErrUnavailable) {
			// A volume other nodes serve and this one does not.
			s.log.Debug().Err(err).Str("folder", e.folder.ID).Msg("folder on a volume this node does not serve")
			continue
		}
		if err != nil {
			s.log.Warn().Err(err).Str("folder", e.folder.ID).Str("view", k.String()+"/"+e.name).Msg("folder left out of the views")
			continue
		}
		out = append(out, sp)
	}
	return out, nil
}

// standingSpec is the view of one reach entry.
func (s *Service) standingSpec(e reachEntry) (vfs.ViewSpec, error) {
	a, err := s.folderAttached(e.folder)
	if err != nil {
		return vfs.ViewSpec{}, err
	}
	return viewSpec(a, viewPlace{e.ns, e.key, e.name}, e.folder, "", e.mode, s.opts.ViewUID, s.opts.ViewGID), nil
}

// viewSpec is the view at pl of folder f (on a), showing subpath at mode
// as owned by uid:gid.
func viewSpec(a *attached, pl viewPlace, f meta.Folder, subpath string, mode meta.Permission, uid, gid uint32) vfs.ViewSpec {
	return vfs.ViewSpec{
		Namespace:   pl.ns,
		Key:         pl.key,
		Name:        pl.name,
		VolumeName:  a.rec.Name,
		VolumePath:  a.rec.Path,
		FolderRel:   meta.FolderRelPath(f.Owner, f.ID),
		Subpath:     subpath,
		Mode:        mode,
		UID:         uid,
		GID:         gid,
		RWCanDelete: a.rec.RWCanDelete,
		RefuseChown: a.rec.Chown == meta.ChownRefuse,
		FolderID:    f.ID,
		Scope:       f.Owner,
	}
}

// viewsOn reports whether the service has the FUSE namespace.
func (s *Service) viewsOn() bool {
	s.viewMu.Lock()
	defer s.viewMu.Unlock()
	return s.views != nil
}

// viewOwner is the uid:gid a session view shows: the request's, else the
// configured view uid/gid.
func (s *Service) viewOwner(reqUID, reqGID *uint32) (uid, gid uint32, err error) {
	uid, gid = s.opts.ViewUID, s.opts.ViewGID
	if reqUID != nil {
		uid = *reqUID
	}
	if reqGID != nil {
		gid = *reqGID
	}
	if uid == ^uint32(0) || gid == ^uint32(0) {
		return 0, 0, fmt.Errorf("%w: uid/gid %d cannot own a view (it means \"no id\")", meta.ErrInvalid, ^uint32(0))
	}
	return uid, gid, nil
}

// errNotLive refuses to mount a folder that is not live.
func errNotLive(f meta.Folder) error {
	if f.Status == meta.StatusCloning {
		return fmt.Errorf("%w: folder %q is being cloned into; it can be mounted once it is ready", meta.ErrConflict, f.Name)
	}
	return fmt.Errorf("%w: folder %q is %s; a folder in the trash cannot be mounted (restore it first)", meta.ErrConflict, f.Name, f.Status)
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
	keys := map[keyDir]bool{}
	for _, f := range all {
		switch f.Owner.Kind {
		case meta.KindUser:
			keys[keyDir{vfs.NSUsers, f.Owner.UUID}] = true
		case meta.KindProject:
			if keys[keyDir{vfs.NSProjects, f.Owner.UUID}] {
				continue
			}
			keys[keyDir{vfs.NSProjects, f.Owner.UUID}] = true
			ms, err := s.store.ListMembers(ctx, f.Owner.UUID)
			if err != nil {
				return fmt.Errorf("list members for the views: %w", err)
			}
			for _, m := range ms {
				keys[keyDir{vfs.NSUsers, m.User}] = true
			}
		}
	}
	sharers, err := s.sharerKeys(ctx)
	if err != nil {
		return fmt.Errorf("list shares for the views: %w", err)
	}
	for _, k := range sharers {
		keys[k] = true
	}
	want := map[viewPlace]vfs.ViewSpec{}
	for k := range keys {
		specs, err := s.wantKey(ctx, k)
		if err != nil {
			return fmt.Errorf("views of %s: %w", k, err)
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
	s.standing = map[keyDir]map[string]vfs.ViewSpec{}
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
		s.keepStanding(sp)
	}
	s.log.Info().Int("views", len(want)-failed).Int("added", added).Int("failed", failed).Msg("standing views built")
	return nil
}

func (s *Service) keepStanding(sp vfs.ViewSpec) {
	k := keyDir{sp.Namespace, sp.Key}
	m := s.standing[k]
	if m == nil {
		m = map[string]vfs.ViewSpec{}
		s.standing[k] = m
	}
	m[sp.Name] = sp
}

func (p viewPlace) String() string { return p.ns + "/" + p.key + "/" + p.name }

// ownerKeys are the key directories whose views depend on the folders of
// owner: the owner's own, for a project every member's, and the users/
// of everyone holding a share of one of owner's folders (withSharers: one
// store read per folder of the owner).
func (s *Service) ownerKeys(ctx context.Context, owner meta.ScopeID) ([]keyDir, error) {
	switch owner.Kind {
	case meta.KindUser:
		return s.withSharers(ctx, owner, []keyDir{{vfs.NSUsers, owner.UUID}})
	case meta.KindProject:
		ms, err := s.store.ListMembers(ctx, owner.UUID)
		if err != nil {
			return nil, err
		}
		keys := []keyDir{{vfs.NSProjects, owner.UUID}}
		for _, m := range ms {
			keys = append(keys, keyDir{vfs.NSUsers, m.User})
		}
		return s.withSharers(ctx, owner, keys)
	}
	return nil, nil
}

// syncOwner makes the standing views that depend on owner's folders match
// the store: after a create, rename, trash, restore or purge of one of
// them. Failures are logged: the folder operation that called it has
// already succeeded.
func (s *Service) syncOwner(ctx context.Context, owner meta.ScopeID) {
	s.viewMu.Lock()
	defer s.viewMu.Unlock()
	s.syncOwnerLocked(ctx, owner)
}

// syncOwnerLocked is syncOwner with viewMu held.
func (s *Service) syncOwnerLocked(ctx context.Context, owner meta.ScopeID) {
	if s.views == nil {
		return
	}
	ctx = context.WithoutCancel(ctx)
	keys, err := s.ownerKeys(ctx, owner)
	if err != nil {
		s.log.Error().Err(err).Str("owner", owner.String()).Msg("cannot read the members to update the views")
		return
	}
	s.syncKeysLocked(ctx, keys...)
}

// syncKeysLocked recomputes key directories and applies them. viewMu is
// held.
func (s *Service) syncKeysLocked(ctx context.Context, keys ...keyDir) {
	if s.views == nil {
		return
	}
	for _, k := range keys {
		want, err := s.wantKey(ctx, k)
		if err != nil {
			s.log.Error().Err(err).Str("views", k.String()).Msg("cannot compute the views")
			continue
		}
		s.applyKey(k, want)
	}
}

// applyKey replaces the standing views of one key directory with want:
// removals first, so that a rename frees the old name before the new one
// appears. viewMu is held.
func (s *Service) applyKey(k keyDir, want []vfs.ViewSpec) {
	byName := make(map[string]vfs.ViewSpec, len(want))
	for _, w := range want {
		byName[w.Name] = w
	}
	have := s.standing[k]
	kept := map[string]vfs.ViewSpec{}
	names := make([]string, 0, len(have))
	for n := range have {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		h := have[n]
		if w, ok := byName[n]; ok && w == h {
			kept[n] = h
			continue
		}
		if err := s.views.RemoveView(h.Namespace, h.Key, h.Name); err != nil && !errors.Is(err, meta.ErrNotFound) {
			s.log.Error().Err(err).Str("view", placeOf(h).String()).Msg("cannot remove a folder's view")
			kept[n] = h
			continue
		}
		s.log.Debug().Str("view", placeOf(h).String()).Str("folder", h.FolderID).Msg("view removed")
	}
	sort.Slice(want, func(i, j int) bool { return want[i].Name < want[j].Name })
	for _, w := range want {
		if _, ok := kept[w.Name]; ok {
			continue
		}
		if err := s.views.AddView(w); err != nil {
			s.log.Error().Err(err).Str("view", placeOf(w).String()).Str("folder", w.FolderID).Msg("cannot add a folder's view")
			continue
		}
		kept[w.Name] = w
		s.log.Debug().Str("view", placeOf(w).String()).Str("folder", w.FolderID).Msg("view added")
	}
	if len(kept) == 0 {
		delete(s.standing, k)
	} else {
		s.standing[k] = kept
	}
}

// MountedBy returns the sessions that have the folder mounted, sorted:
// those with a session view of it, the published sessions whose records
// mount it (meta.Store.SessionsUsingFolder), and those the MountedBy
// option reports. A store error is logged and leaves the published
// sessions out; trash and purge check with mountedByLocked, which fails
// instead.
func (s *Service) MountedBy(folderID string) []string {
	s.viewMu.Lock()
	defer s.viewMu.Unlock()
	ids, err := s.mountedByLocked(folderID)
	if err != nil {
		s.log.Error().Err(err).Str("folder", folderID).Msg("cannot read the sessions that mount a folder")
	}
	return ids
}

func (s *Service) mountedByLocked(folderID string) ([]string, error) {
	set := map[string]bool{}
	for pl, sp := range s.sessions {
		if sp.FolderID == folderID {
			set[pl.key] = true
		}
	}
	stored, err := s.store.SessionsUsingFolder(s.base, folderID)
	for _, id := range stored {
		set[id] = true
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
	return out, err
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
	if !s.viewsOn() {
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
	uid, gid, err := s.viewOwner(req.UID, req.GID)
	if err != nil {
		return api.View{}, false, err
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
	// In a cluster, claim the folder first: a trash through another node
	// then either sees the claim or is seen by the read below.
	if err := s.claimLocked(ctx, f, req.Session); err != nil {
		return api.View{}, false, err
	}
	added := false
	defer func() {
		if !added {
			s.releaseClaimsLocked(ctx)
		}
	}()
	// Read the record again under viewMu: a trash that ran since the
	// resolve must win.
	f, err = s.store.GetFolder(ctx, f.ID)
	if errors.Is(err, meta.ErrNotFound) {
		return api.View{}, false, fmt.Errorf("%w: folder %q is gone", meta.ErrNotFound, req.Folder)
	}
	if err != nil {
		return api.View{}, false, err
	}
	if !usable(f.Status) {
		return api.View{}, false, errNotLive(f)
	}
	mode := req.Mode
	if mode == "" {
		mode = f.Permission
	}
	if mode.Rank() > f.Permission.Rank() {
		return api.View{}, false, fmt.Errorf("%w: mode %s exceeds the permission of folder %q (%s); ask for %s or less", ErrForbidden, mode, f.Name, f.Permission, f.Permission)
	}
	a, err := s.mountableVolume(f)
	if err != nil {
		return api.View{}, false, err
	}
	pl := viewPlace{vfs.NSSessions, req.Session, req.Name}
	spec := viewSpec(a, pl, f, subpath, mode, uid, gid)
	if old, ok := s.sessions[pl]; ok {
		if old == spec {
			added = true // the view holds the claim
			return s.toView(old), false, nil
		}
		return api.View{}, false, fmt.Errorf("%w: session %s already has a view named %q (folder %s, subpath %q, mode %s, uid:gid %d:%d); remove it first",
			meta.ErrExists, pl.key, pl.name, old.FolderID, old.Subpath, old.Mode, old.UID, old.GID)
	}
	if err := s.views.AddView(spec); err != nil {
		return api.View{}, false, viewError(err)
	}
	s.sessions[pl] = spec
	added = true
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
	if s.published[pl] {
		return api.View{}, fmt.Errorf("%w: view %q belongs to the published session %s; unpublish the session instead", meta.ErrConflict, name, session)
	}
	if err := s.views.RemoveView(pl.ns, pl.key, pl.name); err != nil && !errors.Is(err, meta.ErrNotFound) {
		return api.View{}, viewError(err)
	}
	delete(s.sessions, pl)
	s.releaseClaimsLocked(ctx)
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
