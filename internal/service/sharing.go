package service

// Sharing: invitations of a user's folder to other users, per-folder
// permissions of project members, and the decisions reach and publish
// take from them.
//
// # Rules
//
//   - Only a user's own, live folder that is not a dot-folder can be
//     offered (Invite); project folders are shared per folder instead
//     (SetShare). Nobody invites themselves, and an invitation never
//     grants more than the owner's permission on the folder (the folder's
//     Permission); the volume must allow invite-others for the owner
//     (CheckVolumePerm).
//   - An accepted invitation is a meta.Share of a user's folder: the
//     folder shows in the invitee's users/<uuid>/ at invitedPerm (the
//     share's permission, capped by the folder's, so lowering the folder's
//     permission lowers every invitee's at once) and publish mounts it at
//     no more than that. Its bytes are the owner's: the view writes into
//     the owner's folder, charged to the owner's scope.
//   - A share of a project folder sets one member's permission on that one
//     folder. Precedence (projectPerm): the per-folder share, else the
//     membership's permission, else the folder's. A share only counts
//     while the user is a member: without the membership the folder is
//     not reached at all.
//   - Revocation (Unshare by the owner, Leave by the invitee, a removed
//     share of a project folder) changes the user's users/<uuid>/ at once
//     and every publish from then on. A session already running keeps the
//     mount it was given until its next publish, which takes the mount out
//     of the session (revoke.go), or until it is unpublished.
//   - A purged folder's shares and invitations go with it (dropShares,
//     after the record); a share whose folder record is gone is ignored.
//
// Who may call what is the caller's (the manager's) business, as for every
// other route of the local API: the user arguments say on whose behalf a
// call is made, and the service checks that they are the party the
// action belongs to (the invitee accepts, the inviter cancels).

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/vfolder/vfolder/api"
	vfs "github.com/vfolder/vfolder/fs"
	"github.com/vfolder/vfolder/meta"
)

// grant is a share a user holds, with its folder.
type grant struct {
	share  meta.Share
	folder meta.Folder
}

func (g grant) sharePtr(ok bool) *meta.Share {
	if !ok {
		return nil
	}
	return &g.share
}

// projectPerm is a member's permission on a project folder: the
// per-folder share, else the membership's permission, else the folder's.
func projectPerm(f meta.Folder, m meta.Membership, sh *meta.Share) meta.Permission {
	switch {
	case sh != nil && sh.Permission.Valid():
		return sh.Permission
	case m.Permission.Valid():
		return m.Permission
	}
	return f.Permission
}

// invitedPerm is an invitee's permission on a user's folder: the share's,
// never above the folder's.
func invitedPerm(f meta.Folder, sh meta.Share) meta.Permission {
	return sh.Permission.Min(f.Permission)
}

// invitable reports whether a folder is of the kind invitations are for:
// a user's folder that is not a dot-folder.
func invitable(f meta.Folder) bool {
	return f.Owner.Kind == meta.KindUser && !meta.IsAutomount(f.Name)
}

// grantsOf reads the shares user holds with their folders; shares whose
// folder record is gone are left out.
func (s *Service) grantsOf(ctx context.Context, user string) (map[string]grant, error) {
	shares, err := s.store.SharesOf(ctx, user)
	if err != nil {
		return nil, err
	}
	out := make(map[string]grant, len(shares))
	for _, sh := range shares {
		f, err := s.store.GetFolder(ctx, sh.Folder)
		if errors.Is(err, meta.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out[sh.Folder] = grant{share: sh, folder: f}
	}
	return out, nil
}

// sortedGrants returns grants by folder id, so that reach does not depend
// on map order.
func sortedGrants(grants map[string]grant) []grant {
	out := make([]grant, 0, len(grants))
	for _, g := range grants {
		out = append(out, g)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].folder.ID < out[j].folder.ID })
	return out
}

// withSharers adds to keys the users/<uuid>/ of every user holding a share
// of one of owner's folders.
func (s *Service) withSharers(ctx context.Context, owner meta.ScopeID, keys []keyDir) ([]keyDir, error) {
	fs, err := s.store.ListFolders(ctx, meta.FolderFilter{Owner: &owner, IncludeDeleted: true})
	if err != nil {
		return nil, err
	}
	seen := map[keyDir]bool{}
	for _, k := range keys {
		seen[k] = true
	}
	for _, f := range fs {
		shares, err := s.store.ListShares(ctx, f.ID)
		if err != nil {
			return nil, err
		}
		for _, sh := range shares {
			if k := (keyDir{vfs.NSUsers, sh.User}); !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
	}
	return keys, nil
}

// sharerKeys are the users/<uuid>/ of every user holding any share: the
// key directories rebuildStanding adds to those of the owners and members.
func (s *Service) sharerKeys(ctx context.Context) ([]keyDir, error) {
	shares, err := s.store.AllShares(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]keyDir, 0, len(shares))
	for _, sh := range shares {
		out = append(out, keyDir{vfs.NSUsers, sh.User})
	}
	return out, nil
}

// dropShares removes a purged folder's shares and invitations and takes
// the folder out of its sharers' views. Failures are logged: the purge has
// succeeded, and a share of a folder without a record is ignored anyway.
func (s *Service) dropShares(ctx context.Context, f meta.Folder) {
	ctx = context.WithoutCancel(ctx)
	shares, err := s.store.ListShares(ctx, f.ID)
	if err != nil {
		s.log.Error().Err(err).Str("folder", f.ID).Msg("cannot list the shares of a purged folder")
	}
	if err := s.store.DeleteFolderShares(ctx, f.ID); err != nil {
		s.log.Error().Err(err).Str("folder", f.ID).Msg("cannot remove the shares and invitations of a purged folder")
	}
	for _, sh := range shares {
		s.syncMemberViews(ctx, sh.User)
	}
}

func parseUser(what, u string) (string, error) {
	h, err := meta.ParseUUID(u)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	return h, nil
}

// Invite offers a user's folder to another user (see the file comment).
func (s *Service) Invite(ctx context.Context, req api.InviteRequest) (api.Invitation, error) {
	invitee, err := parseUser("invitee", req.Invitee)
	if err != nil {
		return api.Invitation{}, err
	}
	if !req.Permission.Valid() {
		return api.Invitation{}, fmt.Errorf("%w: permission %q is none of ro, rw, wd", meta.ErrInvalid, req.Permission)
	}
	var owner meta.ScopeID
	if req.User != "" {
		if owner, err = meta.UserScope(req.User); err != nil {
			return api.Invitation{}, fmt.Errorf("inviter: %w", err)
		}
	}
	f, err := s.resolve(ctx, req.Folder, owner)
	if err != nil {
		return api.Invitation{}, err
	}
	if f.Owner.Kind != meta.KindUser {
		return api.Invitation{}, fmt.Errorf("%w: folder %q belongs to %s: project folders cannot be invited; give a member a permission on it with share", ErrForbidden, f.Name, f.Owner)
	}
	if meta.IsAutomount(f.Name) {
		return api.Invitation{}, fmt.Errorf("%w: folder %q is a dot-folder (mounted into every session of its owner); dot-folders cannot be invited", ErrForbidden, f.Name)
	}
	if !f.Status.Live() {
		return api.Invitation{}, fmt.Errorf("%w: folder %q is %s; only a live folder can be invited", meta.ErrConflict, f.Name, f.Status)
	}
	if invitee == f.Owner.UUID {
		return api.Invitation{}, fmt.Errorf("%w: user %s owns folder %q; a user cannot invite themselves", meta.ErrInvalid, invitee, f.Name)
	}
	if req.Permission.Rank() > f.Permission.Rank() {
		return api.Invitation{}, fmt.Errorf("%w: permission %s exceeds the owner's permission on folder %q (%s); invite at %s or less", ErrForbidden, req.Permission, f.Name, f.Permission, f.Permission)
	}
	if err := s.CheckVolumePerm(ctx, f.Volume, VolInvite, f.Owner); err != nil {
		return api.Invitation{}, err
	}
	inv := meta.Invitation{ID: meta.NewInvitationID(), Folder: f.ID, Inviter: f.Owner.UUID, Invitee: invitee, Permission: req.Permission, State: meta.InvitePending}
	if err := s.store.CreateInvitation(ctx, inv); err != nil {
		return api.Invitation{}, err
	}
	inv, err = s.store.GetInvitation(ctx, inv.ID)
	if err != nil {
		return api.Invitation{}, err
	}
	s.log.Info().Str("invitation", inv.ID).Str("folder", f.ID).Str("inviter", inv.Inviter).Str("invitee", invitee).
		Str("permission", string(inv.Permission)).Msg("invitation sent")
	return api.Invitation{Invitation: inv, FolderName: f.Name, Direction: api.DirOutgoing}, nil
}

// toInvitation adds the folder's name and the direction seen from user
// ("" for none).
func (s *Service) toInvitation(ctx context.Context, inv meta.Invitation, user string) api.Invitation {
	out := api.Invitation{Invitation: inv}
	if f, err := s.store.GetFolder(ctx, inv.Folder); err == nil {
		out.FolderName = f.Name
	}
	switch user {
	case inv.Invitee:
		out.Direction = api.DirIncoming
	case inv.Inviter:
		out.Direction = api.DirOutgoing
	}
	return out
}

// Invitations lists the invitations user sent or received, every state,
// oldest first.
func (s *Service) Invitations(ctx context.Context, user string) ([]api.Invitation, error) {
	u, err := parseUser("user", user)
	if err != nil {
		return nil, err
	}
	is, err := s.store.ListInvitations(ctx, u)
	if err != nil {
		return nil, err
	}
	out := make([]api.Invitation, 0, len(is))
	for _, inv := range is {
		out = append(out, s.toInvitation(ctx, inv, u))
	}
	return out, nil
}

// SettleInvitation accepts, rejects or cancels an invitation on behalf of
// user ("" for no check): accept and reject belong to the invitee, cancel
// to the inviter. Accepting needs the folder to be live still.
func (s *Service) SettleInvitation(ctx context.Context, id, user string, state meta.InvitationState) (api.Invitation, error) {
	inv, err := s.store.GetInvitation(ctx, id)
	if err != nil {
		return api.Invitation{}, err
	}
	u := ""
	if user != "" {
		if u, err = parseUser("user", user); err != nil {
			return api.Invitation{}, err
		}
	}
	switch state {
	case meta.InviteAccepted, meta.InviteRejected:
		if u != "" && u != inv.Invitee {
			return api.Invitation{}, fmt.Errorf("%w: invitation %s is for user %s; only the invitee can accept or reject it", ErrForbidden, inv.ID, inv.Invitee)
		}
	case meta.InviteCanceled:
		if u != "" && u != inv.Inviter {
			return api.Invitation{}, fmt.Errorf("%w: invitation %s was sent by user %s; only the inviter can cancel it", ErrForbidden, inv.ID, inv.Inviter)
		}
	default:
		return api.Invitation{}, fmt.Errorf("%w: cannot settle an invitation as %q", meta.ErrInvalid, state)
	}
	if inv.State != meta.InvitePending {
		return api.Invitation{}, fmt.Errorf("%w: invitation %s is %s already", meta.ErrConflict, inv.ID, inv.State)
	}
	if state == meta.InviteAccepted {
		f, err := s.store.GetFolder(ctx, inv.Folder)
		if errors.Is(err, meta.ErrNotFound) {
			return api.Invitation{}, fmt.Errorf("%w: the folder of invitation %s is gone", meta.ErrNotFound, inv.ID)
		}
		if err != nil {
			return api.Invitation{}, err
		}
		if !f.Status.Live() {
			return api.Invitation{}, fmt.Errorf("%w: folder %q is %s; it can be accepted once it is restored", meta.ErrConflict, f.Name, f.Status)
		}
	}
	inv, err = s.store.SettleInvitation(ctx, inv.ID, state)
	if err != nil {
		return api.Invitation{}, err
	}
	s.log.Info().Str("invitation", inv.ID).Str("folder", inv.Folder).Str("invitee", inv.Invitee).Str("state", string(state)).Msg("invitation settled")
	if state == meta.InviteAccepted {
		s.syncMemberViews(ctx, inv.Invitee)
	}
	return s.toInvitation(ctx, inv, u), nil
}

// toShare renders a share with its folder.
func toShare(sh meta.Share, f meta.Folder) api.Share {
	via := ViaInvited
	if f.Owner.Kind == meta.KindProject {
		via = ViaShared
	}
	return api.Share{Share: sh, FolderName: f.Name, Owner: f.Owner, Via: via}
}

// Shares lists the shares of a folder, by user.
func (s *Service) Shares(ctx context.Context, ref string, owner meta.ScopeID) ([]api.Share, error) {
	f, err := s.resolve(ctx, ref, owner)
	if err != nil {
		return nil, err
	}
	shares, err := s.store.ListShares(ctx, f.ID)
	if err != nil {
		return nil, err
	}
	out := make([]api.Share, 0, len(shares))
	for _, sh := range shares {
		out = append(out, toShare(sh, f))
	}
	return out, nil
}

// SetShare sets user's permission on one folder: on a project folder for
// a member of the project (it beats the membership's default); on a
// user's folder it changes what an accepted invitation granted, at most
// the owner's permission.
func (s *Service) SetShare(ctx context.Context, ref string, owner meta.ScopeID, req api.ShareRequest) (api.Share, error) {
	u, err := parseUser("user", req.User)
	if err != nil {
		return api.Share{}, err
	}
	if !req.Permission.Valid() {
		return api.Share{}, fmt.Errorf("%w: permission %q is none of ro, rw, wd", meta.ErrInvalid, req.Permission)
	}
	f, err := s.resolve(ctx, ref, owner)
	if err != nil {
		return api.Share{}, err
	}
	if meta.IsAutomount(f.Name) {
		return api.Share{}, fmt.Errorf("%w: folder %q is a dot-folder; dot-folders cannot be shared", ErrForbidden, f.Name)
	}
	if !f.Status.Live() {
		return api.Share{}, fmt.Errorf("%w: folder %q is %s; only a live folder can be shared", meta.ErrConflict, f.Name, f.Status)
	}
	switch f.Owner.Kind {
	case meta.KindProject:
		ms, err := s.store.ProjectsOf(ctx, u)
		if err != nil {
			return api.Share{}, err
		}
		member := false
		for _, m := range ms {
			member = member || m.Project == f.Owner.UUID
		}
		if !member {
			return api.Share{}, fmt.Errorf("%w: user %s is not a member of project %s; add them to the project first (member add)", ErrForbidden, u, f.Owner.UUID)
		}
	default:
		if u == f.Owner.UUID {
			return api.Share{}, fmt.Errorf("%w: user %s owns folder %q; an owner's permission is the folder's own (update the folder instead)", meta.ErrInvalid, u, f.Name)
		}
		if _, err := s.store.GetShare(ctx, f.ID, u); errors.Is(err, meta.ErrNotFound) {
			return api.Share{}, fmt.Errorf("%w: user %s has not accepted an invitation to folder %q; invite them first", meta.ErrNotFound, u, f.Name)
		} else if err != nil {
			return api.Share{}, err
		}
		if req.Permission.Rank() > f.Permission.Rank() {
			return api.Share{}, fmt.Errorf("%w: permission %s exceeds the owner's permission on folder %q (%s); grant %s or less", ErrForbidden, req.Permission, f.Name, f.Permission, f.Permission)
		}
	}
	if err := s.store.PutShare(ctx, meta.Share{Folder: f.ID, User: u, Permission: req.Permission}); err != nil {
		return api.Share{}, err
	}
	sh, err := s.store.GetShare(ctx, f.ID, u)
	if err != nil {
		return api.Share{}, err
	}
	s.log.Info().Str("folder", f.ID).Str("user", u).Str("permission", string(req.Permission)).Msg("share set")
	s.syncMemberViews(ctx, u)
	return toShare(sh, f), nil
}

// Unshare takes user's share of a folder away (the owner revokes an
// invitee, or an admin removes a member's per-folder permission, after
// which the membership's default applies again).
func (s *Service) Unshare(ctx context.Context, ref string, owner meta.ScopeID, user string) (api.Share, error) {
	u, err := parseUser("user", user)
	if err != nil {
		return api.Share{}, err
	}
	f, err := s.resolve(ctx, ref, owner)
	if err != nil {
		return api.Share{}, err
	}
	return s.removeShare(ctx, f, u)
}

func (s *Service) removeShare(ctx context.Context, f meta.Folder, u string) (api.Share, error) {
	sh, err := s.store.GetShare(ctx, f.ID, u)
	if errors.Is(err, meta.ErrNotFound) {
		return api.Share{}, fmt.Errorf("%w: user %s has no share of folder %q", meta.ErrNotFound, u, f.Name)
	}
	if err != nil {
		return api.Share{}, err
	}
	if err := s.store.RemoveShare(ctx, f.ID, u); err != nil {
		if errors.Is(err, meta.ErrNotFound) {
			return api.Share{}, fmt.Errorf("%w: user %s has no share of folder %q", meta.ErrNotFound, u, f.Name)
		}
		return api.Share{}, err
	}
	s.log.Info().Str("folder", f.ID).Str("user", u).Msg("share removed")
	s.syncMemberViews(ctx, u)
	return toShare(sh, f), nil
}

// Leave gives up an invited folder on behalf of the invitee: ref is the
// folder's id or its name in users/<user>/.
func (s *Service) Leave(ctx context.Context, user, ref string) (api.Share, error) {
	u, err := parseUser("user", user)
	if err != nil {
		return api.Share{}, err
	}
	if ref == "" {
		return api.Share{}, fmt.Errorf("%w: folder is empty: give the folder's id or its name in the user's folders", meta.ErrInvalid)
	}
	var f meta.Folder
	if id, idErr := meta.ParseUUID(ref); idErr == nil {
		if f, err = s.store.GetFolder(ctx, id); err != nil {
			return api.Share{}, err
		}
	} else {
		r, err := s.Reach(ctx, u)
		if err != nil {
			return api.Share{}, err
		}
		found := false
		for _, e := range r {
			if e.Name == ref {
				f, found = e.Folder, true
			}
		}
		if !found {
			return api.Share{}, fmt.Errorf("%w: user %s reaches no folder named %q", meta.ErrNotFound, u, ref)
		}
	}
	if f.Owner.Kind != meta.KindUser || f.Owner.UUID == u {
		return api.Share{}, fmt.Errorf("%w: folder %q is not a folder user %s was invited to (only invited folders can be left)", meta.ErrInvalid, f.Name, u)
	}
	return s.removeShare(ctx, f, u)
}

// UserStatus returns the Data page counters of a user (api.UserStatus).
func (s *Service) UserStatus(ctx context.Context, user string) (api.UserStatus, error) {
	u, err := parseUser("user", user)
	if err != nil {
		return api.UserStatus{}, err
	}
	owner := meta.ScopeID{Kind: meta.KindUser, UUID: u}
	own, err := s.store.ListFolders(ctx, meta.FolderFilter{Owner: &owner, IncludeDeleted: true})
	if err != nil {
		return api.UserStatus{}, err
	}
	p, err := s.store.GetPolicy(ctx, owner)
	if err != nil {
		return api.UserStatus{}, err
	}
	st := api.UserStatus{User: u, FoldersCreated: len(own), MaxFolders: p.MaxFolderCount, Usage: []api.ScopeUsage{}}
	r, err := s.Reach(ctx, u)
	if err != nil {
		return api.UserStatus{}, err
	}
	for _, e := range r {
		switch e.Via {
		case ViaProject, ViaShared:
			st.ProjectFolders++
		case ViaInvited:
			st.InvitedFolders++
		}
	}
	scopes := []meta.ScopeID{owner}
	ms, err := s.store.ProjectsOf(ctx, u)
	if err != nil {
		return api.UserStatus{}, err
	}
	for _, m := range ms {
		scopes = append(scopes, meta.ScopeID{Kind: meta.KindProject, UUID: m.Project})
	}
	for _, sc := range scopes {
		for _, vol := range s.volumeNames() {
			su := api.ScopeUsage{Scope: sc, Volume: vol}
			q, err := s.store.GetScope(ctx, vol, sc)
			switch {
			case err == nil:
				su.LimitBytes = q.LimitBytes
			case !errors.Is(err, meta.ErrNotFound):
				return api.UserStatus{}, err
			}
			su.UsedBytes, _ = s.scopeUsage(ctx, vol, sc)
			st.Usage = append(st.Usage, su)
		}
	}
	return st, nil
}

// ReachedFolders is Reach as the API shows it: every folder user can
// reach, with how and at which permission, ordered by view name.
func (s *Service) ReachedFolders(ctx context.Context, user string) ([]api.ReachedFolder, error) {
	r, err := s.Reach(ctx, user)
	if err != nil {
		return nil, err
	}
	out := make([]api.ReachedFolder, 0, len(r))
	for _, e := range r {
		out = append(out, api.ReachedFolder{Folder: s.toAPI(e.Folder), ViewName: e.Name, Via: e.Via, EffectivePermission: e.Perm})
	}
	return out, nil
}
