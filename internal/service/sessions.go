package service

// Published sessions: what a container runtime asks for through
// /v1/sessions (package api), built from session views (package fs) and
// host mounts (the Mounts interface; package mountd behind NewMounts).
//
// # Publish
//
// A publish request is checked completely before anything changes:
// every folder is resolved for the session's user (reach in views.go:
// owned folders and those of the user's projects, by id, by the name the
// user sees, or as "name/subpath"), the mode is defaulted to the user's
// permission and refused above it (ErrForbidden), the folder must be live
// and its volume must allow mounts, targets are resolved by
// mountd.ResolveTarget, automount folders are added, and
// mountd.CheckOverlap runs over the whole session (mounts it already has,
// new ones, reserved targets). Mounts are matched by target: a mount the
// session already has at that target must be the same (folder, subpath,
// mode), else ErrConflict; it is not published again. The steps that
// change things then run in this order:
//
//  0. in a session that exists, the mounts the user may no longer have
//     (unshared, left, membership removed or lowered, volume permission
//     taken) are taken out first: host side, view, record (revoke.go;
//     this stands even when the request is then refused);
//  1. missing per-user subfolders of project ".local" folders are made
//     on the volume (idempotent);
//  2. under viewMu, with the folders read again (a trash may have won):
//     the session record is written (meta.Store.PutSession) with every
//     mount, old and new. From here on trash and purge refuse the folders;
//  3. reserved targets get their placeholders (Mounts.Reserve);
//  4. per new mount: the session view sessions/<sid>/<name> (fs), a
//     placeholder at its key, then the view published on it.
//
// A crash after step 2 leaves a record whose mounts are not all there:
// reconcile (at the next start) creates the views and publishes them,
// which is what the runtime's retry would do too. A failure (not a
// crash) in steps 3-4 is rolled back: a new session is unpublished and
// its record deleted; a session that existed keeps its old mounts plus the
// new ones that were published completely, and its record is rewritten to
// say exactly that.
//
// # Reserved targets
//
// A reserved target gets the key slotKey(target) (the target's last
// component, "~", and 8 hex digits of its SHA-256), so a later publish at
// that target finds the placeholder by computing the key: no state is
// needed to match them, also after a restart. The targets of unfilled
// reservations are kept in memory only (a restarted daemon knows their
// keys, not their targets).
//
// # Unpublish
//
// Host mounts first (Mounts.Unpublish, which detaches everything under the
// session's directory), then the session views, then the record: until
// the mounts are gone the record keeps the folders from being trashed. It
// never refuses: everything that could not be removed is reported.
//
// # Reconcile
//
// StartSessions runs once at start, after the standing views. For every
// stored session it makes the views again and publishes each mount on its
// key. The views of the previous daemon were served by a FUSE connection
// that is gone: the mounts left on the keys answer ENOTCONN, and every
// container that bound one holds a copy of that dead mount. Detaching it
// on the host would not reach those copies (a container binds the topmost
// mount of the key, not the placeholder below it), so the new view is
// mounted on top of the dead one first (Mounts.Publish does that through
// mountd's Replace): the kernel propagates it onto every copy, and the
// container sees a working view at the same path. Then the dead mounts
// are taken away from under it on the host, so each key holds exactly
// the live view however often the daemon restarts. Inside a container
// the copy it started with stays below the live view (it is the
// container's own mount), with at most one dead copy per restart between
// them, until the container stops. A session whose folders
// are gone (record deleted, not live, volume not configured, directory
// missing) is reported and cleaned (unpublished, record deleted).
// Session directories without a record are leftovers and are removed.
//
// pubMu serialises publish, unpublish, attach and reconcile; it is taken
// before viewMu. Mount system calls run without viewMu.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/api"
	vfs "github.com/vfolder/vfolder/fs"
	"github.com/vfolder/vfolder/internal/backing"
	"github.com/vfolder/vfolder/meta"
	"github.com/vfolder/vfolder/mountd"
)

// Mounts publishes views on the host and into containers. NewMounts
// returns the implementation over package mountd; tests use fakes.
type Mounts interface {
	// Reserve puts a read-only placeholder at <root>/<sid>/<key> unless
	// something is mounted there, and returns that host path.
	Reserve(sid, key string) (string, error)
	// Publish mounts source (a view) at <root>/<sid>/<key> and returns
	// that host path; idempotent. A view whose FUSE connection is dead
	// is replaced by the new one (see the file comment).
	Publish(sid, key, source string, ro bool) (string, error)
	// Withdraw takes the mounts of one key of a session and its
	// directory away (a revoked mount, revoke.go); it does all it can
	// and reports the rest.
	Withdraw(sid, key string) error
	// Unpublish takes away every mount of a session and its directory;
	// it does all it can and reports the rest.
	Unpublish(sid string) error
	// Attach injects the mount at hostPath into the running container of
	// pid at target.
	Attach(pid int, hostPath, target string, ro bool) error
	// HostPath is <root>/<sid>/<key>.
	HostPath(sid, key string) string
	// Sessions lists the session directories under the root.
	Sessions() ([]string, error)
	// Placeholders lists the keys of a session whose topmost mount is a
	// placeholder (reserved, nothing published there).
	Placeholders(sid string) ([]string, error)
	// Close takes down what the Mounts made for itself. Only when no
	// session is left.
	Close() error
}

// checkSessionID applies the rules of every layer that uses a session id
// (meta, fs, mountd).
func checkSessionID(sid string) error {
	if err := meta.ValidateSessionID(sid); err != nil {
		return err
	}
	if err := vfs.ValidateSessionKey(sid); err != nil {
		return err
	}
	return mountd.ValidateSessionID(sid)
}

// slotKey is the key of a reserved target (see the file comment).
func slotKey(target string) string {
	sum := sha256.Sum256([]byte(target))
	base := path.Base(target)
	if len(base) > 200 {
		cut := 200
		for cut > 0 && !utf8.RuneStart(base[cut]) {
			cut--
		}
		base = base[:cut]
	}
	return base + "~" + hex.EncodeToString(sum[:4])
}

var slotKeyRE = regexp.MustCompile(`~[0-9a-f]{8}$`)

// StartSessions enables publishing: newMounts makes the host side when it
// is first needed (it binds the sessions directory, so a node that never
// publishes is left alone). It then reconciles the stored sessions (see
// the file comment). leftovers says that the sessions directory may hold
// session directories of an earlier run even if the store has no
// sessions. Problems with single sessions are logged, not returned.
func (s *Service) StartSessions(ctx context.Context, newMounts func() (Mounts, error), leftovers bool) error {
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	s.newMounts = newMounts
	if !s.viewsOn() {
		return errNoViews
	}
	recs, err := s.store.ListSessions(ctx)
	if err != nil {
		return fmt.Errorf("reconcile sessions: %w", err)
	}
	if len(recs) == 0 && !leftovers {
		return nil
	}
	m, err := s.mountsLocked()
	if err != nil {
		return fmt.Errorf("reconcile sessions: %w", err)
	}
	known := map[string]bool{}
	restored, cleaned := 0, 0
	for _, rec := range recs {
		known[rec.ID] = true
		if s.restoreSession(ctx, m, rec) {
			restored++
		} else {
			cleaned++
		}
	}
	dirs, err := m.Sessions()
	if err != nil {
		s.log.Error().Err(err).Msg("cannot list the session directories")
	}
	for _, sid := range dirs {
		if known[sid] {
			continue
		}
		s.log.Warn().Str("session", sid).Msg("removing a session directory that has no session record")
		if err := m.Unpublish(sid); err != nil {
			s.log.Error().Err(err).Str("session", sid).Msg("cannot remove a leftover session directory")
		}
	}
	s.log.Info().Int("restored", restored).Int("cleaned", cleaned).Msg("sessions reconciled")
	return nil
}

// mountsLocked returns the host side, making it on first use. pubMu is
// held.
func (s *Service) mountsLocked() (Mounts, error) {
	if s.mounts != nil {
		return s.mounts, nil
	}
	if s.newMounts == nil {
		return nil, fmt.Errorf("%w: sessions are not enabled on this node (vfolderd runs with fuse = false)", ErrUnavailable)
	}
	m, err := s.newMounts()
	if err != nil {
		return nil, fmt.Errorf("sessions directory: %w", err)
	}
	s.mounts = m
	return m, nil
}

// restoreSession re-creates one stored session's views and publishes
// them again; a session whose folders are gone is cleaned. It reports
// whether the session was kept. pubMu is held.
func (s *Service) restoreSession(ctx context.Context, m Mounts, rec meta.Session) bool {
	log := s.log.With().Str("session", rec.ID).Logger()
	clean := func(why string) bool {
		log.Warn().Str("reason", why).Msg("session mounts folders that are gone: cleaning it")
		for _, p := range s.dropSession(ctx, m, rec.ID) {
			log.Error().Str("problem", p).Msg("cleaning a session")
		}
		return false
	}
	if err := checkSessionID(rec.ID); err != nil {
		return clean(err.Error())
	}
	// In a cluster the session's folders are claimed before they are
	// read (cluster.go); a folder another node is trashing right now
	// makes the session unclean, like a trashed one.
	if err := s.claimSession(ctx, rec); err != nil {
		if errors.Is(err, meta.ErrConflict) {
			return clean(err.Error())
		}
		log.Error().Err(err).Msg("cannot claim the session's folders in the cluster; its mounts stay as they are")
		return true
	}
	specs := make([]vfs.ViewSpec, len(rec.Mounts))
	for i, sm := range rec.Mounts {
		f, err := s.store.GetFolder(ctx, sm.FolderID)
		switch {
		case errors.Is(err, meta.ErrNotFound):
			return clean(fmt.Sprintf("folder %s no longer exists", sm.FolderID))
		case err != nil:
			log.Error().Err(err).Str("folder", sm.FolderID).Msg("cannot read a folder of the session; its mounts stay as they are")
			return true
		case !usable(f.Status):
			return clean(fmt.Sprintf("folder %q (%s) is %s", f.Name, f.ID, f.Status))
		}
		sp, err := s.sessionSpec(rec.ID, sm.Name, f, sm.Subpath, sm.Mode, rec.UID, rec.GID)
		if err != nil {
			return clean(err.Error())
		}
		specs[i] = sp
	}
	changed := false
	for i, sp := range specs {
		sm := &rec.Mounts[i]
		if err := s.addPublishedView(sp); err != nil {
			if errors.Is(err, meta.ErrNotFound) {
				return clean(err.Error())
			}
			log.Error().Err(err).Str("mount", sm.Name).Msg("cannot make the session view; the mount stays broken")
			continue
		}
		hp, err := s.publishOne(m, rec.ID, sm.Name, sm.Mode)
		if err != nil {
			log.Error().Err(err).Str("mount", sm.Name).Msg("cannot publish the session view again; the mount stays broken")
			continue
		}
		if sm.HostPath != hp {
			sm.HostPath, changed = hp, true
		}
	}
	if changed {
		if err := s.store.PutSession(ctx, rec); err != nil {
			log.Error().Err(err).Msg("cannot record the session's new host paths")
		}
	}
	// Reservations survive as placeholders; their targets do not.
	if keys, err := m.Placeholders(rec.ID); err == nil {
		inRec := map[string]bool{}
		for _, sm := range rec.Mounts {
			inRec[sm.Name] = true
		}
		for _, k := range keys {
			if !inRec[k] && slotKeyRE.MatchString(k) {
				s.slot(rec.ID, k, "")
			}
		}
	}
	log.Info().Int("mounts", len(rec.Mounts)).Msg("session restored")
	return true
}

// claimSession claims every folder of a stored session (reconcile).
func (s *Service) claimSession(ctx context.Context, rec meta.Session) error {
	if s.opts.Cluster == nil {
		return nil
	}
	s.viewMu.Lock()
	defer s.viewMu.Unlock()
	for _, id := range meta.SessionFolders(rec) {
		f := meta.Folder{ID: id, Name: id}
		if cur, err := s.store.GetFolder(ctx, id); err == nil {
			f = cur
		}
		if err := s.claimLocked(ctx, f, rec.ID); err != nil {
			return err
		}
	}
	return nil
}

// slot records a reservation; target "" keeps a known target.
func (s *Service) slot(sid, key, target string) {
	m := s.slots[sid]
	if m == nil {
		m = map[string]string{}
		s.slots[sid] = m
	}
	if target != "" || m[key] == "" {
		m[key] = target
	}
}

// dropSession takes a session away completely: host mounts, views,
// reservations, record. It returns what it could not remove. pubMu is
// held.
func (s *Service) dropSession(ctx context.Context, m Mounts, sid string) []string {
	var problems []string
	if m != nil {
		if err := m.Unpublish(sid); err != nil {
			problems = append(problems, splitErrors(err)...)
		}
	}
	s.viewMu.Lock()
	for pl := range s.sessions {
		if pl.key != sid {
			continue
		}
		if s.views != nil {
			if err := s.views.RemoveView(pl.ns, pl.key, pl.name); err != nil && !errors.Is(err, meta.ErrNotFound) {
				problems = append(problems, fmt.Sprintf("view %s: %v", pl, err))
				continue
			}
		}
		delete(s.sessions, pl)
		delete(s.published, pl)
	}
	s.viewMu.Unlock()
	delete(s.slots, sid)
	if err := s.store.DeleteSession(context.WithoutCancel(ctx), sid); err != nil && !errors.Is(err, meta.ErrNotFound) {
		problems = append(problems, fmt.Sprintf("session record: %v", err))
	}
	s.releaseClaims(ctx)
	return problems
}

// splitErrors flattens errors.Join results into messages.
func splitErrors(err error) []string {
	var out []string
	var walk func(error)
	walk = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		out = append(out, e.Error())
	}
	walk(err)
	return out
}

// sessionSpec is the view of one session mount.
func (s *Service) sessionSpec(sid, name string, f meta.Folder, subpath string, mode meta.Permission, uid, gid uint32) (vfs.ViewSpec, error) {
	a, err := s.folderAttached(f)
	if err != nil {
		return vfs.ViewSpec{}, err
	}
	return viewSpec(a, viewPlace{vfs.NSSessions, sid, name}, f, subpath, mode, uid, gid), nil
}

// addPublishedView adds the view of a published mount; an identical one
// already there is fine.
func (s *Service) addPublishedView(sp vfs.ViewSpec) error {
	s.viewMu.Lock()
	defer s.viewMu.Unlock()
	if s.views == nil {
		return errNoViews
	}
	pl := placeOf(sp)
	if old, ok := s.sessions[pl]; ok && old != sp {
		return fmt.Errorf("%w: session %s already has a view named %q of folder %s", meta.ErrExists, pl.key, pl.name, old.FolderID)
	}
	if err := s.views.AddView(sp); err != nil {
		return viewError(err)
	}
	s.sessions[pl] = sp
	s.published[pl] = true
	return nil
}

// removePublishedView removes the view of a published mount.
func (s *Service) removePublishedView(sid, name string) {
	s.viewMu.Lock()
	defer s.viewMu.Unlock()
	pl := viewPlace{vfs.NSSessions, sid, name}
	if s.views != nil {
		if err := s.views.RemoveView(pl.ns, pl.key, pl.name); err != nil && !errors.Is(err, meta.ErrNotFound) {
			s.log.Error().Err(err).Str("view", pl.String()).Msg("cannot remove a session view")
			return
		}
	}
	delete(s.sessions, pl)
	delete(s.published, pl)
}

// viewSource is the host path of a session view.
func (s *Service) viewSource(sid, name string) string {
	return filepath.Join(s.opts.MountPoint, vfs.NSSessions, sid, name)
}

// publishOne reserves the key and publishes the session's view on it.
func (s *Service) publishOne(m Mounts, sid, name string, mode meta.Permission) (string, error) {
	if _, err := m.Reserve(sid, name); err != nil {
		return "", err
	}
	return m.Publish(sid, name, s.viewSource(sid, name), mode == meta.PermRO)
}

// planned is one new mount of a publish request.
type planned struct {
	meta.SessionMount
	folder meta.Folder
	// localSub is the per-user subfolder of a project ".local" to make
	// when missing ("" for other folders).
	localSub string
}

// access is what a user may do with one folder, and the name the user
// knows it by.
type access struct {
	folder meta.Folder
	name   string
	perm   meta.Permission
	// localSub: a project's ".local", mounted as this subfolder.
	localSub string
}

// userAccess collects what a user reaches: by display name, and the
// memberships by project.
type userAccess struct {
	user    string
	byName  map[string]access
	members map[string]meta.Membership
	reached []reachEntry
	// grants are the user's shares by folder id (sharing.go).
	grants map[string]grant
}

func (s *Service) userAccessOf(ctx context.Context, user string) (*userAccess, error) {
	r, err := s.userReach(ctx, user)
	if err != nil {
		return nil, err
	}
	ms, err := s.store.ProjectsOf(ctx, user)
	if err != nil {
		return nil, err
	}
	grants, err := s.grantsOf(ctx, user)
	if err != nil {
		return nil, err
	}
	ua := &userAccess{user: user, byName: map[string]access{}, members: map[string]meta.Membership{}, reached: r, grants: grants}
	for _, e := range r {
		ua.byName[e.name] = access{folder: e.folder, name: e.name, perm: e.mode}
	}
	for _, m := range ms {
		ua.members[m.Project] = m
	}
	return ua, nil
}

// forFolder says whether (and how) the user may use folder f.
func (ua *userAccess) forFolder(f meta.Folder) (access, bool) {
	switch f.Owner.Kind {
	case meta.KindUser:
		if f.Owner.UUID == ua.user {
			return access{folder: f, name: f.Name, perm: f.Permission}, true
		}
		g, ok := ua.grants[f.ID]
		if !ok || !invitable(f) {
			return access{}, false
		}
		a := access{folder: f, name: f.Name, perm: invitedPerm(f, g.share)}
		for _, e := range ua.reached {
			if e.folder.ID == f.ID {
				a.name = e.name
			}
		}
		return a, true
	case meta.KindProject:
		m, ok := ua.members[f.Owner.UUID]
		if !ok {
			return access{}, false
		}
		g, shared := ua.grants[f.ID]
		a := access{folder: f, name: f.Name, perm: projectPerm(f, m, g.sharePtr(shared))}
		if meta.IsAutomount(f.Name) {
			a.localSub = ua.user
			return a, true
		}
		for _, e := range ua.reached {
			if e.folder.ID == f.ID {
				a.name = e.name
			}
		}
		return a, true
	}
	return access{}, false
}

// resolveMount finds the folder of one mount request for the user:
// "<ref>[/<subpath>]" where ref is a folder id or a name the user sees.
func (s *Service) resolveMount(ctx context.Context, ua *userAccess, ref string) (access, string, error) {
	if ref == "" {
		return access{}, "", fmt.Errorf("%w: a mount has an empty folder: give a folder id or name", meta.ErrInvalid)
	}
	head, sub, _ := strings.Cut(ref, "/")
	if head == "" {
		return access{}, "", fmt.Errorf("%w: folder %q: a folder reference is an id or a name, optionally followed by /subpath", meta.ErrInvalid, ref)
	}
	comps, err := vfs.SplitSubpath(sub)
	if err != nil {
		return access{}, "", fmt.Errorf("folder %q: %w", ref, err)
	}
	sub = strings.Join(comps, "/")
	if a, ok := ua.byName[head]; ok {
		return a, sub, nil
	}
	id, idErr := meta.ParseUUID(head)
	if idErr != nil {
		return access{}, "", fmt.Errorf("%w: user %s has no folder named %q (neither their own, nor of a project they are a member of, nor shared with them)", meta.ErrNotFound, ua.user, head)
	}
	f, err := s.store.GetFolder(ctx, id)
	if errors.Is(err, meta.ErrNotFound) {
		return access{}, "", fmt.Errorf("%w: no folder has id %s", meta.ErrNotFound, id)
	}
	if err != nil {
		return access{}, "", err
	}
	a, ok := ua.forFolder(f)
	if !ok {
		return access{}, "", fmt.Errorf("%w: user %s may not mount folder %q (%s): it is neither theirs, nor of a project they are a member of, nor shared with them", ErrForbidden, ua.user, f.Name, f.ID)
	}
	if !usable(f.Status) {
		return access{}, "", errNotLive(f)
	}
	return a, sub, nil
}

// mountableVolume is the volume of a folder that is to be mounted in a
// session: it must be configured and allow mounts.
func (s *Service) mountableVolume(f meta.Folder) (*attached, error) {
	a, err := s.folderAttached(f)
	if err != nil {
		return nil, err
	}
	if !a.rec.MountAllowed {
		return nil, fmt.Errorf("%w: volume %q does not allow mounting its folders in sessions (mount_allowed = false); folder %q", ErrForbidden, f.Volume, f.Name)
	}
	return a, nil
}

// defaultTarget is where a folder known as name goes without a target.
func defaultTarget(name string) (string, error) {
	if meta.IsAutomount(name) {
		return mountd.AutomountTarget(name)
	}
	return mountd.ResolveTarget(name, mountd.WorkDir+"/"+name)
}

// sessionState is what publish needs to know of a session besides its
// record: the names in use and the reservations.
type sessionState struct {
	names map[string]bool   // names (keys) in use: mounts, views, reservations
	slots map[string]string // reserved key -> target ("" if unknown)
}

// Publish publishes folders for a session (see the file comment and
// api.PublishRequest).
func (s *Service) Publish(ctx context.Context, sid string, req api.PublishRequest) (api.Session, error) {
	if err := checkSessionID(sid); err != nil {
		return api.Session{}, err
	}
	user, err := meta.ParseUUID(req.User)
	if err != nil {
		return api.Session{}, fmt.Errorf("user: %w", err)
	}
	uid, gid, err := s.viewOwner(req.UID, req.GID)
	if err != nil {
		return api.Session{}, err
	}
	if len(req.Mounts)+len(req.Reserve) > meta.MaxSessionMounts {
		return api.Session{}, fmt.Errorf("%w: %d mounts and reservations; a session holds at most %d", meta.ErrInvalid, len(req.Mounts)+len(req.Reserve), meta.MaxSessionMounts)
	}
	automount := req.Automount == nil || *req.Automount
	ctx = context.WithoutCancel(ctx) // a client going away must not leave half a publish

	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	if !s.viewsOn() {
		return api.Session{}, errNoViews
	}
	if s.newMounts == nil {
		return api.Session{}, fmt.Errorf("%w: sessions are not enabled on this node", ErrUnavailable)
	}
	var old *meta.Session
	rec, err := s.store.GetSession(ctx, sid)
	switch {
	case err == nil:
		old = &rec
		if rec.User != user || rec.UID != uid || rec.GID != gid {
			return api.Session{}, fmt.Errorf("%w: session %s belongs to user %s as %d:%d; it cannot be published for user %s as %d:%d",
				meta.ErrConflict, sid, rec.User, rec.UID, rec.GID, user, uid, gid)
		}
	case errors.Is(err, meta.ErrNotFound):
		rec = meta.Session{ID: sid, User: user, UID: uid, GID: gid, Mounts: []meta.SessionMount{}}
	default:
		return api.Session{}, err
	}
	// Mounts the user may no longer have leave first (revoke.go).
	var revoked []api.RevokedMount
	if old != nil {
		if rec, revoked, err = s.revokeLocked(ctx, rec); err != nil {
			return api.Session{}, err
		}
		cur := rec
		old = &cur
	}

	// The host side exists once a session does; it is not made for a
	// request that is refused.
	st, err := s.sessionStateLocked(s.mounts, rec)
	if err != nil {
		return api.Session{}, err
	}
	news, newSlots, err := s.plan(ctx, rec, st, req, automount)
	if err != nil {
		return api.Session{}, err
	}
	if len(news) == 0 && len(newSlots) == 0 && old != nil {
		out := s.sessionAPI(s.mounts, rec)
		out.Revoked = revoked
		return out, nil
	}
	m, err := s.mountsLocked()
	if err != nil {
		return api.Session{}, err
	}
	for i := range news {
		news[i].HostPath = m.HostPath(sid, news[i].Name)
	}

	// 1. Per-user subfolders of project .local folders.
	for _, p := range news {
		if p.localSub != "" {
			if err := s.ensureSubfolder(p.folder, p.localSub); err != nil {
				return api.Session{}, err
			}
		}
	}
	// 2. The record, with the folders checked again under viewMu.
	next := rec
	next.Mounts = append(append([]meta.SessionMount{}, rec.Mounts...), mountsOf(news)...)
	if err := s.writeRecord(ctx, next, news); err != nil {
		return api.Session{}, err
	}
	fail := func(done int, err error) (api.Session, error) {
		s.rollback(ctx, m, sid, old, news, done)
		return api.Session{}, fmt.Errorf("publish session %s: %w", sid, err)
	}
	// 3. Reservations.
	for key, target := range newSlots {
		if _, err := m.Reserve(sid, key); err != nil {
			return fail(0, fmt.Errorf("reserve %s: %w", target, err))
		}
		s.slot(sid, key, target)
	}
	// 4. Views and their publication.
	for i, p := range news {
		sp, err := s.sessionSpec(sid, p.Name, p.folder, p.Subpath, p.Mode, uid, gid)
		if err == nil {
			err = s.addPublishedView(sp)
		}
		if err != nil {
			return fail(i, fmt.Errorf("view of folder %q: %w", p.folder.Name, err))
		}
		if _, err := s.publishOne(m, sid, p.Name, p.Mode); err != nil {
			s.removePublishedView(sid, p.Name)
			return fail(i, fmt.Errorf("folder %q at %s: %w", p.folder.Name, p.Target, err))
		}
		delete(s.slots[sid], p.Name) // a filled reservation
		s.log.Info().Str("session", sid).Str("name", p.Name).Str("folder", p.FolderID).Str("subpath", p.Subpath).
			Str("target", p.Target).Str("mode", string(p.Mode)).Msg("mount published")
	}
	cur, err := s.store.GetSession(ctx, sid)
	if err != nil {
		return api.Session{}, err
	}
	out := s.sessionAPI(m, cur)
	out.Revoked = revoked
	return out, nil
}

func mountsOf(ps []planned) []meta.SessionMount {
	out := make([]meta.SessionMount, len(ps))
	for i, p := range ps {
		out[i] = p.SessionMount
	}
	return out
}

// writeRecord checks that the new mounts' folders are still live and
// writes the record, both under viewMu (see Trash).
//
// In a cluster every new folder is claimed first, so that a trash through
// another node either sees the claim or is seen by the re-read
// (cluster.go); a refused publish releases the claims again.
func (s *Service) writeRecord(ctx context.Context, rec meta.Session, news []planned) (err error) {
	s.viewMu.Lock()
	defer s.viewMu.Unlock()
	defer func() {
		if err != nil {
			s.releaseClaimsLocked(ctx)
		}
	}()
	for _, p := range news {
		if err := s.claimLocked(ctx, p.folder, rec.ID); err != nil {
			return err
		}
	}
	for _, p := range news {
		f, err := s.store.GetFolder(ctx, p.FolderID)
		if errors.Is(err, meta.ErrNotFound) {
			return fmt.Errorf("%w: folder %q is gone", meta.ErrNotFound, p.folder.Name)
		}
		if err != nil {
			return err
		}
		if !usable(f.Status) {
			return errNotLive(f)
		}
	}
	return s.store.PutSession(ctx, rec)
}

// rollback undoes a failed publish: new mounts news[:done] are published
// (with views); news[done] and later are not. A new session goes
// completely; an existing one keeps its old mounts and news[:done].
func (s *Service) rollback(ctx context.Context, m Mounts, sid string, old *meta.Session, news []planned, done int) {
	if old == nil {
		for _, p := range s.dropSession(ctx, m, sid) {
			s.log.Error().Str("session", sid).Str("problem", p).Msg("rolling back a failed publish")
		}
		return
	}
	rec := *old
	rec.Mounts = append(append([]meta.SessionMount{}, old.Mounts...), mountsOf(news[:done])...)
	if err := s.store.PutSession(ctx, rec); err != nil {
		s.log.Error().Err(err).Str("session", sid).Msg("cannot restore the session record after a failed publish; the next start reconciles it")
	}
	s.releaseClaims(ctx)
}

// sessionStateLocked collects the names in use and the reservations of a
// session; m may be nil (no host side yet: no placeholders). pubMu is
// held.
func (s *Service) sessionStateLocked(m Mounts, rec meta.Session) (sessionState, error) {
	st := sessionState{names: map[string]bool{}, slots: map[string]string{}}
	for _, sm := range rec.Mounts {
		st.names[sm.Name] = true
	}
	s.viewMu.Lock()
	for pl := range s.sessions {
		if pl.key == rec.ID {
			st.names[pl.name] = true
		}
	}
	s.viewMu.Unlock()
	for k, t := range s.slots[rec.ID] {
		st.slots[k] = t
	}
	var keys []string
	if m != nil {
		var err error
		if keys, err = m.Placeholders(rec.ID); err != nil {
			return st, err
		}
	}
	for _, k := range keys {
		if !st.names[k] && slotKeyRE.MatchString(k) {
			if _, ok := st.slots[k]; !ok {
				st.slots[k] = ""
			}
		}
	}
	for k := range st.slots {
		st.names[k] = true
	}
	return st, nil
}

// plan checks a publish request against the session and returns the new
// mounts and the new reservations (key -> target). Nothing changes.
func (s *Service) plan(ctx context.Context, rec meta.Session, st sessionState, req api.PublishRequest, automount bool) ([]planned, map[string]string, error) {
	ua, err := s.userAccessOf(ctx, rec.User)
	if err != nil {
		return nil, nil, err
	}
	byTarget := map[string]meta.SessionMount{}
	for _, sm := range rec.Mounts {
		byTarget[sm.Target] = sm
	}
	var news []planned
	newTargets := map[string]bool{}
	newFolders := map[string]bool{}
	for _, sm := range rec.Mounts {
		newFolders[sm.FolderID] = true
	}
	// add checks one mount and appends it unless the session has it.
	add := func(a access, sub string, mr api.MountRequest) error {
		f := a.folder
		if a.localSub != "" {
			sub = path.Join(a.localSub, sub)
		}
		mode := mr.Mode
		if mode == "" {
			mode = a.perm
		}
		if !mode.Valid() {
			return fmt.Errorf("%w: mode %q of folder %q is none of ro, rw, wd", meta.ErrInvalid, mode, mr.Folder)
		}
		if mode.Rank() > a.perm.Rank() {
			return fmt.Errorf("%w: mode %s exceeds the permission user %s has on folder %q (%s); ask for %s or less", ErrForbidden, mode, ua.user, a.name, a.perm, a.perm)
		}
		if _, err := s.mountableVolume(f); err != nil {
			return err
		}
		if err := s.CheckVolumePerm(ctx, f.Volume, VolMount, folderScopes(ua.user, f)...); err != nil {
			return fmt.Errorf("folder %q: %w", a.name, err)
		}
		var target string
		if mr.Target == "" {
			target, err = defaultTarget(a.name)
		} else {
			target, err = mountd.ResolveTarget(a.name, mr.Target)
		}
		if err != nil {
			return fmt.Errorf("folder %q: %w", mr.Folder, err)
		}
		if have, ok := byTarget[target]; ok {
			if have.FolderID == f.ID && have.Subpath == sub && have.Mode == mode {
				return nil
			}
			return fmt.Errorf("%w: session %s already has folder %s (subpath %q, mode %s) at %s; folder %q (subpath %q, mode %s) cannot go there",
				meta.ErrConflict, rec.ID, have.FolderID, have.Subpath, have.Mode, target, a.name, sub, mode)
		}
		if newTargets[target] {
			return fmt.Errorf("%w: two mounts of the request have the target %s", mountd.ErrOverlap, target)
		}
		name := slotKey(target)
		if _, ok := st.slots[name]; !ok {
			name = uniqueName(a.name, st.names)
		}
		st.names[name] = true
		newTargets[target] = true
		newFolders[f.ID] = true
		news = append(news, planned{
			SessionMount: meta.SessionMount{FolderID: f.ID, Subpath: sub, Name: name, Target: target, Mode: mode},
			folder:       f,
			localSub:     a.localSub,
		})
		return nil
	}
	for _, mr := range req.Mounts {
		a, sub, err := s.resolveMount(ctx, ua, mr.Folder)
		if err != nil {
			return nil, nil, err
		}
		if err := add(a, sub, mr); err != nil {
			return nil, nil, err
		}
	}
	// Reservations.
	newSlots := map[string]string{}
	for _, t := range req.Reserve {
		if t == "" {
			return nil, nil, fmt.Errorf("%w: a reserved target is empty", meta.ErrInvalid)
		}
		target, err := mountd.ResolveTarget("", t)
		if err != nil {
			return nil, nil, fmt.Errorf("reserve: %w", err)
		}
		key := slotKey(target)
		if _, ok := byTarget[target]; ok || newTargets[target] {
			continue // already published there
		}
		if _, ok := st.slots[key]; ok {
			continue
		}
		if st.names[key] {
			return nil, nil, fmt.Errorf("%w: session %s already uses the name %q", meta.ErrExists, rec.ID, key)
		}
		newSlots[key] = target
	}
	// The whole session must be free of overlaps.
	base := s.overlapSet(rec, news, st, newSlots)
	if err := mountd.CheckOverlap(base); err != nil {
		return nil, nil, describeOverlap(err, base)
	}
	if automount {
		for _, a := range s.automounts(ctx, ua) {
			if newFolders[a.folder.ID] {
				continue
			}
			if _, err := s.mountableVolume(a.folder); err != nil {
				s.log.Debug().Str("folder", a.folder.ID).Msg("automount folder left out: its volume does not allow mounts")
				continue
			}
			target, err := defaultTarget(a.name)
			if err != nil {
				continue
			}
			if _, ok := byTarget[target]; ok || newTargets[target] {
				continue
			}
			cand := append(append([]mountd.Request{}, base...), mountd.Request{FolderID: a.folder.ID, Subpath: a.localSub, Target: target})
			if mountd.CheckOverlap(cand) != nil {
				s.log.Debug().Str("folder", a.folder.ID).Str("target", target).Msg("automount folder left out: it overlaps a requested mount")
				continue
			}
			n := len(news)
			if err := add(a, "", api.MountRequest{Folder: a.name}); err != nil {
				s.log.Debug().Err(err).Str("folder", a.folder.ID).Msg("automount folder left out")
				continue
			}
			if len(news) > n {
				base = append(base, mountd.Request{FolderID: a.folder.ID, Subpath: news[n].Subpath, Target: news[n].Target})
			}
		}
	}
	return news, newSlots, nil
}

// overlapSet is every mount and unfilled reservation of the session after
// the publish, for mountd.CheckOverlap.
func (s *Service) overlapSet(rec meta.Session, news []planned, st sessionState, newSlots map[string]string) []mountd.Request {
	var out []mountd.Request
	filled := map[string]bool{}
	for _, sm := range rec.Mounts {
		out = append(out, mountd.Request{FolderID: sm.FolderID, Subpath: sm.Subpath, Target: sm.Target})
	}
	for _, p := range news {
		out = append(out, mountd.Request{FolderID: p.FolderID, Subpath: p.Subpath, Target: p.Target})
		filled[p.Name] = true
	}
	slots := map[string]string{}
	for k, t := range st.slots {
		slots[k] = t
	}
	for k, t := range newSlots {
		slots[k] = t
	}
	for k, t := range slots {
		if t != "" && !filled[k] {
			out = append(out, mountd.Request{FolderID: "reserved:" + k, Target: t})
		}
	}
	return out
}

// describeOverlap names the mounts CheckOverlap refers to by index.
var overlapIdx = regexp.MustCompile(`mount (\d+)`)

func describeOverlap(err error, set []mountd.Request) error {
	msg := overlapIdx.ReplaceAllStringFunc(err.Error(), func(m string) string {
		var i int
		fmt.Sscanf(m, "mount %d", &i)
		if i < 0 || i >= len(set) {
			return m
		}
		r := set[i]
		src := r.FolderID
		if strings.HasPrefix(src, "reserved:") {
			return "the reservation at " + r.Target
		}
		if r.Subpath != "" {
			src += "/" + r.Subpath
		}
		return fmt.Sprintf("folder %s at %s", src, r.Target)
	})
	return fmt.Errorf("%w: %s", meta.ErrInvalid, strings.TrimPrefix(msg, meta.ErrInvalid.Error()+": "))
}

// uniqueName is name, or name-2, name-3... when it is taken.
func uniqueName(name string, taken map[string]bool) string {
	if !taken[name] {
		return name
	}
	for i := 2; ; i++ {
		n := fmt.Sprintf("%s-%d", name, i)
		if !taken[n] {
			return n
		}
	}
}

// automounts are the folders added to every session of the user: the
// user's live dot-folders, and, when the user owns no ".local", the
// ".local" of the first project (by id) the user is a member of that has
// one, as the per-user subfolder.
func (s *Service) automounts(ctx context.Context, ua *userAccess) []access {
	var out []access
	ownLocal := false
	for _, e := range ua.reached {
		if e.folder.Owner.Kind == meta.KindUser && meta.IsAutomount(e.folder.Name) {
			out = append(out, access{folder: e.folder, name: e.name, perm: e.mode})
			ownLocal = ownLocal || e.folder.Name == ".local"
		}
	}
	if ownLocal {
		return out
	}
	projects := make([]string, 0, len(ua.members))
	for p := range ua.members {
		projects = append(projects, p)
	}
	sort.Strings(projects)
	for _, p := range projects {
		f, err := s.store.FolderByName(ctx, meta.ScopeID{Kind: meta.KindProject, UUID: p}, ".local")
		if err != nil || !f.Status.Live() {
			continue
		}
		if a, ok := ua.forFolder(f); ok {
			out = append(out, a)
			break
		}
	}
	return out
}

// ensureSubfolder makes <folder>/<name> (0755, storage owner) when it is
// missing, through the volume's directory descriptors.
func (s *Service) ensureSubfolder(f meta.Folder, name string) error {
	vol, err := s.folderVolume(f)
	if err != nil {
		return err
	}
	dir, err := vol.OpenFolder(f.Owner, f.ID)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w: the directory of folder %q is missing on volume %q", meta.ErrNotFound, f.Name, f.Volume)
		}
		return err
	}
	defer dir.Close()
	dfd := int(dir.Fd())
	created := true
	if err := unix.Mkdirat(dfd, name, 0o755); err != nil {
		if !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("folder %q: make subfolder %s: %w", f.Name, name, err)
		}
		created = false
	}
	fd, err := backing.Openat2(dfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("%w: folder %q: %s is not a plain directory: %v", meta.ErrInvalid, f.Name, name, err)
	}
	defer unix.Close(fd)
	if created {
		if err := unix.Fchown(fd, s.opts.StorageUID, s.opts.StorageGID); err != nil {
			return fmt.Errorf("folder %q: subfolder %s: %w", f.Name, name, err)
		}
		if err := unix.Fchmod(fd, 0o755); err != nil {
			return fmt.Errorf("folder %q: subfolder %s: %w", f.Name, name, err)
		}
		s.log.Info().Str("folder", f.ID).Str("subfolder", name).Msg("per-user subfolder made")
	}
	return nil
}

// sessionAPI renders a session with its reservations.
func (s *Service) sessionAPI(m Mounts, rec meta.Session) api.Session {
	out := api.Session{ID: rec.ID, User: rec.User, UID: rec.UID, GID: rec.GID, Mounts: []api.PublishedMount{},
		CreatedAt: rec.CreatedAt, UpdatedAt: rec.UpdatedAt}
	for _, sm := range rec.Mounts {
		out.Mounts = append(out.Mounts, publishedOf(m, rec.ID, sm))
	}
	keys := make([]string, 0, len(s.slots[rec.ID]))
	for k := range s.slots[rec.ID] {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		t := s.slots[rec.ID][k]
		r := api.ReservedTarget{Name: k, Target: t}
		if m != nil {
			r.HostPath = m.HostPath(rec.ID, k)
		}
		if t != "" && r.HostPath != "" {
			o := ociOf(mountd.OCIMount(r.HostPath, t, false))
			r.OCI = &o
		}
		out.Reserved = append(out.Reserved, r)
	}
	return out
}

// hostPathOf is where a session mount is published: the recorded path,
// else the one m computes (m may be nil: "").
func hostPathOf(m Mounts, sid string, sm meta.SessionMount) string {
	if sm.HostPath == "" && m != nil {
		return m.HostPath(sid, sm.Name)
	}
	return sm.HostPath
}

func publishedOf(m Mounts, sid string, sm meta.SessionMount) api.PublishedMount {
	hp := hostPathOf(m, sid, sm)
	return api.PublishedMount{Name: sm.Name, FolderID: sm.FolderID, Subpath: sm.Subpath, Target: sm.Target, Mode: sm.Mode,
		HostPath: hp, OCI: ociOf(mountd.OCIMount(hp, sm.Target, sm.Mode == meta.PermRO))}
}

func ociOf(b mountd.OCIBind) api.OCIMount {
	return api.OCIMount{Destination: b.Destination, Type: b.Type, Source: b.Source, Options: b.Options}
}

// publishedSession reads the record of a published session.
func (s *Service) publishedSession(ctx context.Context, sid string) (meta.Session, error) {
	rec, err := s.store.GetSession(ctx, sid)
	if errors.Is(err, meta.ErrNotFound) {
		return meta.Session{}, fmt.Errorf("%w: no session %s is published", meta.ErrNotFound, sid)
	}
	return rec, err
}

// Session returns one published session.
func (s *Service) Session(ctx context.Context, sid string) (api.Session, error) {
	if err := checkSessionID(sid); err != nil {
		return api.Session{}, err
	}
	rec, err := s.publishedSession(ctx, sid)
	if err != nil {
		return api.Session{}, err
	}
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	return s.sessionAPI(s.mounts, rec), nil
}

// Sessions lists the published sessions, ordered by id.
func (s *Service) Sessions(ctx context.Context) ([]api.Session, error) {
	recs, err := s.store.ListSessions(ctx)
	if err != nil {
		return nil, err
	}
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	out := make([]api.Session, 0, len(recs))
	for _, rec := range recs {
		out = append(out, s.sessionAPI(s.mounts, rec))
	}
	return out, nil
}

// LiveSessions returns the ids of the stored sessions. When the store
// cannot be read (a cluster store out of reach), it returns the published
// sessions this daemon serves views of, and the error only when there are
// none: a stop must not take mounts away for want of the records.
func (s *Service) LiveSessions(ctx context.Context) ([]string, error) {
	recs, err := s.store.ListSessions(ctx)
	if err != nil {
		s.viewMu.Lock()
		set := map[string]bool{}
		for pl := range s.published {
			set[pl.key] = true
		}
		s.viewMu.Unlock()
		if len(set) == 0 {
			return nil, err
		}
		ids := make([]string, 0, len(set))
		for id := range set {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		return ids, nil
	}
	ids := make([]string, len(recs))
	for i, r := range recs {
		ids[i] = r.ID
	}
	return ids, nil
}

// Unpublish takes a session away (see the file comment). It never
// refuses a well-formed session id: what it could not remove is in
// Problems. An unknown session is not an error.
func (s *Service) Unpublish(ctx context.Context, sid string) (api.UnpublishResult, error) {
	if err := checkSessionID(sid); err != nil {
		return api.UnpublishResult{}, err
	}
	ctx = context.WithoutCancel(ctx)
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	res := api.UnpublishResult{Session: sid, Removed: []api.PublishedMount{}, Problems: []string{}}
	rec, err := s.store.GetSession(ctx, sid)
	switch {
	case err == nil:
		for _, sm := range rec.Mounts {
			res.Removed = append(res.Removed, publishedOf(s.mounts, sid, sm))
		}
	case !errors.Is(err, meta.ErrNotFound):
		res.Problems = append(res.Problems, fmt.Sprintf("session record: %v", err))
	}
	m := s.mounts
	if m == nil && err == nil {
		// A record but no host side yet (StartSessions failed to make
		// it): try now, so the mounts are found.
		var merr error
		if m, merr = s.mountsLocked(); merr != nil {
			res.Problems = append(res.Problems, fmt.Sprintf("host mounts not checked: %v", merr))
		}
	}
	res.Problems = append(res.Problems, s.dropSession(ctx, m, sid)...)
	if len(res.Problems) > 0 {
		s.log.Warn().Str("session", sid).Strs("problems", res.Problems).Msg("session unpublished with problems")
	} else {
		s.log.Info().Str("session", sid).Int("mounts", len(res.Removed)).Msg("session unpublished")
	}
	return res, nil
}

// Attach injects every mount of a session into the running container
// whose init process is pid; mounts already there are left alone.
func (s *Service) Attach(ctx context.Context, sid string, pid int) (api.Session, error) {
	if err := checkSessionID(sid); err != nil {
		return api.Session{}, err
	}
	if pid <= 0 {
		return api.Session{}, fmt.Errorf("%w: pid %d is not a process id", meta.ErrInvalid, pid)
	}
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	rec, err := s.publishedSession(ctx, sid)
	if err != nil {
		return api.Session{}, err
	}
	m, err := s.mountsLocked()
	if err != nil {
		return api.Session{}, err
	}
	var errs []error
	for _, sm := range rec.Mounts {
		if err := m.Attach(pid, hostPathOf(m, sid, sm), sm.Target, sm.Mode == meta.PermRO); err != nil {
			if errors.Is(err, os.ErrNotExist) && !errors.Is(err, meta.ErrNotFound) {
				err = fmt.Errorf("%w: %v", meta.ErrNotFound, err)
			}
			errs = append(errs, fmt.Errorf("%s at %s: %w", sm.Name, sm.Target, err))
			continue
		}
		s.log.Info().Str("session", sid).Int("pid", pid).Str("name", sm.Name).Str("target", sm.Target).Msg("mount attached")
	}
	if len(errs) > 0 {
		return api.Session{}, fmt.Errorf("attach session %s to pid %d: %w", sid, pid, errors.Join(errs...))
	}
	return s.sessionAPI(m, rec), nil
}

// CloseSessions releases the host side when no session is left (the
// sessions directory's own mount). With live sessions it leaves
// everything in place for the next start.
func (s *Service) CloseSessions(ctx context.Context) error {
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	if s.mounts == nil {
		return nil
	}
	recs, err := s.store.ListSessions(ctx)
	if err != nil || len(recs) > 0 {
		return err
	}
	err = s.mounts.Close()
	s.mounts = nil
	return err
}
