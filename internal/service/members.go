package service

// Project membership. The store keeps the records (meta.Membership); the
// service validates them and keeps users/<member>/ in step: every change
// recomputes the member's key directory at once (see reach in views.go).
// Memberships decide what publish lets a user mount (sessions.go); mounts
// a session already has are not revoked when a membership changes.

import (
	"context"
	"errors"
	"fmt"

	vfs "github.com/vfolder/vfolder/fs"
	"github.com/vfolder/vfolder/meta"
)

// parseMember checks a project and a user UUID (any form ParseUUID
// takes) and returns them as 32 lowercase hex digits.
func parseMember(project, user string) (string, string, error) {
	p, err := meta.ParseUUID(project)
	if err != nil {
		return "", "", fmt.Errorf("project: %w", err)
	}
	u, err := meta.ParseUUID(user)
	if err != nil {
		return "", "", fmt.Errorf("user: %w", err)
	}
	return p, u, nil
}

// Members lists the members of a project, ordered by user. A project
// without members (or unknown to the store) has an empty list.
func (s *Service) Members(ctx context.Context, project string) ([]meta.Membership, error) {
	p, err := meta.ParseUUID(project)
	if err != nil {
		return nil, fmt.Errorf("project: %w", err)
	}
	ms, err := s.store.ListMembers(ctx, p)
	if err != nil {
		return nil, err
	}
	if ms == nil {
		ms = []meta.Membership{}
	}
	return ms, nil
}

// SetMember makes user a member of project, or changes the permission of
// an existing membership. perm "" means each folder's own permission; a
// set perm applies to every folder of the project for this member.
func (s *Service) SetMember(ctx context.Context, project, user string, perm meta.Permission) (meta.Membership, error) {
	p, u, err := parseMember(project, user)
	if err != nil {
		return meta.Membership{}, err
	}
	if perm != "" && !perm.Valid() {
		return meta.Membership{}, fmt.Errorf("%w: permission %q is none of ro, rw, wd", meta.ErrInvalid, perm)
	}
	m := meta.Membership{Project: p, User: u, Permission: perm}
	if err := s.store.SetMembership(ctx, m); err != nil {
		return meta.Membership{}, err
	}
	s.log.Info().Str("project", p).Str("user", u).Str("permission", string(perm)).Msg("membership set")
	s.syncMemberViews(ctx, u)
	return m, nil
}

// RemoveMember ends a membership and returns it; meta.ErrNotFound if the
// user is not a member of the project.
func (s *Service) RemoveMember(ctx context.Context, project, user string) (meta.Membership, error) {
	p, u, err := parseMember(project, user)
	if err != nil {
		return meta.Membership{}, err
	}
	ms, err := s.store.ListMembers(ctx, p)
	if err != nil {
		return meta.Membership{}, err
	}
	var old *meta.Membership
	for i := range ms {
		if ms[i].User == u {
			old = &ms[i]
		}
	}
	if err := s.store.RemoveMembership(ctx, p, u); err != nil {
		if errors.Is(err, meta.ErrNotFound) {
			return meta.Membership{}, fmt.Errorf("%w: user %s is not a member of project %s", meta.ErrNotFound, u, p)
		}
		return meta.Membership{}, err
	}
	s.log.Info().Str("project", p).Str("user", u).Msg("membership removed")
	s.syncMemberViews(ctx, u)
	if old == nil { // removed concurrently with the listing
		old = &meta.Membership{Project: p, User: u}
	}
	return *old, nil
}

// syncMemberViews recomputes users/<user>/.
func (s *Service) syncMemberViews(ctx context.Context, user string) {
	s.viewMu.Lock()
	defer s.viewMu.Unlock()
	s.syncKeysLocked(context.WithoutCancel(ctx), keyDir{vfs.NSUsers, user})
}
