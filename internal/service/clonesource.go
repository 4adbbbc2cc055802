package service

// Which folder a clone copies: the source is resolved among what the
// caller reaches, not only among what the caller owns.
//
//   - caller user:U — REF is looked up in U's own scope first (any
//     status, so that a trashed folder of U's is told apart from one U
//     does not reach), then among the folders U reaches (Reach: owned,
//     project, shared, invited) by the name U sees in users/<U>/ or by
//     folder id. This is how a user copies a project's model folder, or a
//     folder another user invited them to, into their own scope.
//   - caller project:P — REF is a folder of P (name or id), as before:
//     a project scope reaches no other folders, and the API carries no
//     acting user to check a membership against. A member who wants a
//     copy of a reachable folder in the project clones it into their own
//     scope first.
//   - no caller — REF must be a folder id; the copy gets the source's
//     owner (an operator's call).
//
// A folder the caller does not reach is refused: ErrForbidden when the
// id names an existing folder, ErrNotFound for an unknown name or id.
// The copy is always owned, held and charged in the caller's scope (see
// clone.go); the source's scope is only read.

import (
	"context"
	"errors"
	"fmt"

	"github.com/vfolder/vfolder/meta"
)

// cloneSource resolves the folder a clone by caller copies (see the file
// comment).
func (s *Service) cloneSource(ctx context.Context, ref string, caller meta.ScopeID) (meta.Folder, error) {
	f, err := s.resolve(ctx, ref, caller)
	if err == nil || caller.Kind != meta.KindUser || !errors.Is(err, meta.ErrNotFound) {
		return f, err
	}
	reached, rerr := s.Reach(ctx, caller.UUID)
	if rerr != nil {
		return meta.Folder{}, rerr
	}
	for _, r := range reached {
		if r.Name == ref {
			return r.Folder, nil
		}
	}
	id, idErr := meta.ParseUUID(ref)
	if idErr != nil {
		return meta.Folder{}, fmt.Errorf("%w: user %s reaches no folder named %q (neither their own, nor of a project they are a member of, nor shared with or invited to them)", meta.ErrNotFound, caller.UUID, ref)
	}
	for _, r := range reached {
		if r.Folder.ID == id {
			return r.Folder, nil
		}
	}
	other, gerr := s.store.GetFolder(ctx, id)
	switch {
	case errors.Is(gerr, meta.ErrNotFound):
		return meta.Folder{}, fmt.Errorf("%w: no folder has id %s", meta.ErrNotFound, id)
	case gerr != nil:
		return meta.Folder{}, gerr
	case !usable(other.Status) && s.reachableOwner(ctx, caller.UUID, other.Owner):
		// A project folder of the user's own project that is in the
		// trash (or being copied): say so rather than "forbidden".
		return other, nil
	}
	return meta.Folder{}, fmt.Errorf("%w: user %s may not clone folder %q (%s): it is neither theirs, nor of a project they are a member of, nor shared with or invited to them",
		ErrForbidden, caller.UUID, other.Name, other.ID)
}

// reachableOwner reports whether user is a member of project scope owner.
func (s *Service) reachableOwner(ctx context.Context, user string, owner meta.ScopeID) bool {
	if owner.Kind != meta.KindProject {
		return false
	}
	ms, err := s.store.ProjectsOf(ctx, user)
	if err != nil {
		return false
	}
	for _, m := range ms {
		if m.Project == owner.UUID {
			return true
		}
	}
	return false
}
