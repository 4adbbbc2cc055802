package service

// Revocation on the next publish. A share removed (unshare, leave), a
// membership removed or lowered, a folder's permission lowered or a
// volume's mount permission taken away changes the user's standing views
// at once (views.go), but not the sessions already published: a running
// container keeps what it was given. The next publish into such a
// session catches up. Before it plans anything, Publish re-checks every
// mount the session record holds against the user's reach now (the same
// answer as users/<uuid>/ and publish itself: userAccess.forFolder) and
// the volume's mount permission (CheckVolumePerm VolMount), and takes out
// every mount whose folder the user no longer reaches, reaches at a
// permission below the mount's mode, or may no longer mount from its
// volume. In the order Unpublish uses, so that the record keeps the
// folder from being trashed until nothing shows it:
//
//  1. the host side of the mount (Mounts.Withdraw: the mounts stacked at
//     its key and the key directory; a view published on a reserved key
//     leaves every running container that bound the placeholder, which
//     then shows the empty read-only placeholder at the target);
//  2. the session view sessions/<sid>/<name> (fs.RemoveView): a container
//     that bound the view directly (published before it started) keeps
//     that bind, but the view behind it is gone: lookups answer ENOENT,
//     new opens (the directory itself included) and changes ESTALE;
//     files it already has open keep working until closed (fs package
//     comment);
//  3. the record, without those mounts.
//
// The publish answer lists them (api.Session.Revoked) with the reason.
// The revocation stands even when the rest of the request is then refused
// (the session shows what is left). A folder that cannot be read, or a
// volume permission that cannot be checked, fails the publish before
// anything changes. What cannot be detached on the host is logged and
// left for Unpublish, which takes everything under the session away; the
// view and the record go regardless, so the folder is no longer reachable
// through the session either way.

import (
	"context"
	"errors"
	"fmt"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/meta"
)

// revokedMount is a mount of a session the user may no longer have.
type revokedMount struct {
	meta.SessionMount
	reason string
}

// staleMounts says which mounts of rec the user no longer may have.
// Nothing changes.
func (s *Service) staleMounts(ctx context.Context, rec meta.Session) ([]revokedMount, error) {
	if len(rec.Mounts) == 0 {
		return nil, nil
	}
	ua, err := s.userAccessOf(ctx, rec.User)
	if err != nil {
		return nil, err
	}
	var out []revokedMount
	for _, sm := range rec.Mounts {
		f, err := s.store.GetFolder(ctx, sm.FolderID)
		if errors.Is(err, meta.ErrNotFound) {
			out = append(out, revokedMount{sm, fmt.Sprintf("folder %s no longer exists", sm.FolderID)})
			continue
		}
		if err != nil {
			return nil, err
		}
		a, ok := ua.forFolder(f)
		switch {
		case !ok:
			out = append(out, revokedMount{sm, fmt.Sprintf("user %s no longer reaches folder %q (%s): it is neither theirs, nor of a project they are a member of, nor shared with them",
				rec.User, f.Name, f.ID)})
			continue
		case sm.Mode.Rank() > a.perm.Rank():
			out = append(out, revokedMount{sm, fmt.Sprintf("user %s now has %s on folder %q (%s); the mount is %s",
				rec.User, a.perm, f.Name, f.ID, sm.Mode)})
			continue
		}
		if err := s.CheckVolumePerm(ctx, f.Volume, VolMount, folderScopes(rec.User, f)...); err != nil {
			if !errors.Is(err, ErrForbidden) {
				return nil, err
			}
			out = append(out, revokedMount{sm, fmt.Sprintf("folder %q (%s): %v", f.Name, f.ID, err)})
		}
	}
	return out, nil
}

// revokeLocked takes the mounts of rec the user no longer may have out of
// the session (see the file comment) and returns the record as it is
// then, and what was taken out. pubMu is held.
func (s *Service) revokeLocked(ctx context.Context, rec meta.Session) (meta.Session, []api.RevokedMount, error) {
	stale, err := s.staleMounts(ctx, rec)
	if err != nil || len(stale) == 0 {
		return rec, nil, err
	}
	m, merr := s.mountsLocked()
	if merr != nil {
		s.log.Error().Err(merr).Str("session", rec.ID).Msg("no host side to withdraw revoked mounts from; Unpublish will")
	}
	gone := map[string]bool{}
	out := make([]api.RevokedMount, 0, len(stale))
	for _, r := range stale {
		hp := hostPathOf(m, rec.ID, r.SessionMount)
		if m != nil {
			if err := m.Withdraw(rec.ID, r.Name); err != nil {
				s.log.Error().Err(err).Str("session", rec.ID).Str("name", r.Name).
					Msg("cannot take a revoked mount off the host entirely; Unpublish of the session will")
			}
		}
		s.removePublishedView(rec.ID, r.Name)
		gone[r.Name] = true
		out = append(out, api.RevokedMount{Name: r.Name, FolderID: r.FolderID, Subpath: r.Subpath, Target: r.Target,
			Mode: r.Mode, HostPath: hp, Reason: r.reason})
		s.log.Info().Str("session", rec.ID).Str("name", r.Name).Str("folder", r.FolderID).Str("target", r.Target).
			Str("mode", string(r.Mode)).Str("reason", r.reason).Msg("mount revoked")
	}
	next := rec
	next.Mounts = make([]meta.SessionMount, 0, len(rec.Mounts)-len(stale))
	for _, sm := range rec.Mounts {
		if !gone[sm.Name] {
			next.Mounts = append(next.Mounts, sm)
		}
	}
	if err := s.store.PutSession(ctx, next); err != nil {
		// The views are gone already; the record still names them, which
		// only keeps the folders from being trashed until the next
		// publish or Unpublish.
		return rec, out, fmt.Errorf("session %s: record the revoked mounts: %w", rec.ID, err)
	}
	s.releaseClaims(ctx)
	if cur, err := s.store.GetSession(ctx, rec.ID); err == nil {
		next = cur
	}
	return next, out, nil
}
