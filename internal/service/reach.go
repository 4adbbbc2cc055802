package service

// The exported answer to "which folders can this user reach, how, and at
// which permission": the same computation (reach in views.go) that fills
// users/<uuid>/ and that publish checks, so that the API, the file API and
// the views can never disagree.

import (
	"context"
	"fmt"

	"github.com/vfolder/vfolder/meta"
)

// How a user reaches a folder.
const (
	ViaOwner   = "owner"   // the user owns it
	ViaProject = "project" // a folder of a project the user is a member of, at the membership's default
	ViaShared  = "shared"  // a project folder with a per-folder permission for the user
	ViaInvited = "invited" // another user's folder, through an accepted invitation
)

// Reached is one folder a user reaches: its name in users/<uuid>/, how it
// is reached and the effective permission there.
type Reached struct {
	Folder meta.Folder
	Name   string
	Via    string
	Perm   meta.Permission
}

// Reach lists the live folders user reaches, ordered by their name in
// users/<uuid>/.
func (s *Service) Reach(ctx context.Context, user string) ([]Reached, error) {
	u, err := meta.ParseUUID(user)
	if err != nil {
		return nil, fmt.Errorf("user: %w", err)
	}
	r, err := s.userReach(ctx, u)
	if err != nil {
		return nil, err
	}
	out := make([]Reached, 0, len(r))
	for _, e := range r {
		out = append(out, Reached{Folder: e.folder, Name: e.name, Via: e.via, Perm: e.mode})
	}
	return out, nil
}
