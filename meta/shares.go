package meta

// Shares and invitations: the records that let a user reach a folder that
// is neither theirs nor reached through a project membership's default.
//
// # Model
//
//   - Share: user User holds Permission on folder Folder. There is at most
//     one per (folder, user). On a user's folder it is what an accepted
//     invitation grants ("invited"); on a project's folder it is a
//     per-folder permission of one member that replaces the membership's
//     default ("shared"). Which of the two a share is follows from the
//     folder's owner; the store does not care.
//   - Invitation: Inviter offers Folder to Invitee at Permission. It starts
//     pending and is settled once: accepted (which creates the invitee's
//     Share in the same transaction), rejected (by the invitee) or
//     canceled (by the inviter). Settled invitations are kept as history
//     until the folder's records go (DeleteFolderShares). At most one
//     invitation of one folder to one invitee is pending at a time, and
//     none is created while the invitee holds a share of the folder.
//
// # Store rules (every Store, checked by meta/metatest)
//
//   - CreateInvitation, SettleInvitation to accepted and PutShare need the
//     folder's record (ErrNotFound without it); the check and the write
//     are one transaction, so no share or invitation outlives the record
//     of its folder except through a crash between DeleteFolder and
//     DeleteFolderShares (callers read shares of a missing folder as
//     nothing).
//   - Ids in records are canonical (32 lowercase hex digits); arguments
//     take any form ParseUUID takes. A malformed record or argument is
//     ErrInvalid. Returned values are copies.
//   - The store checks what makes a record well-formed, not who may do
//     what (the inviter owns the folder, the invitee is not the inviter,
//     the permission is within the owner's): that is the service's job.

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// InvitationState is where an invitation is in its life.
type InvitationState string

const (
	InvitePending  InvitationState = "pending"
	InviteAccepted InvitationState = "accepted"
	InviteRejected InvitationState = "rejected"
	InviteCanceled InvitationState = "canceled"
)

// Valid reports whether st is a known state.
func (st InvitationState) Valid() bool {
	switch st {
	case InvitePending, InviteAccepted, InviteRejected, InviteCanceled:
		return true
	}
	return false
}

// Invitation is one user's offer of a folder to another user.
type Invitation struct {
	// ID is the invitation's UUID as 32 lowercase hex digits.
	ID string `json:"id"`
	// Folder is the folder's id.
	Folder string `json:"folder"`
	// Inviter and Invitee are user UUIDs (32 lowercase hex digits).
	Inviter    string          `json:"inviter"`
	Invitee    string          `json:"invitee"`
	Permission Permission      `json:"permission"`
	State      InvitationState `json:"state"`
	CreatedAt  time.Time       `json:"created_at"`
	UpdatedAt  time.Time       `json:"updated_at"`
}

// Share is one user's permission on one folder (see the file comment).
type Share struct {
	Folder     string     `json:"folder"`
	User       string     `json:"user"`
	Permission Permission `json:"permission"`
	CreatedAt  time.Time  `json:"created_at"`
	UpdatedAt  time.Time  `json:"updated_at"`
}

// NewInvitationID returns a fresh invitation id.
func NewInvitationID() string { return NewFolderID() }

func checkShare(sh Share) error {
	if !isHex32(sh.Folder) {
		return fmt.Errorf("%w: share: folder %q is not 32 lowercase hex digits", ErrInvalid, sh.Folder)
	}
	if !isHex32(sh.User) {
		return fmt.Errorf("%w: share: user %q is not 32 lowercase hex digits", ErrInvalid, sh.User)
	}
	if !sh.Permission.Valid() {
		return fmt.Errorf("%w: share of folder %s to %s: permission %q is none of ro, rw, wd", ErrInvalid, sh.Folder, sh.User, sh.Permission)
	}
	return nil
}

func checkInvitation(inv Invitation) error {
	if !isHex32(inv.ID) {
		return fmt.Errorf("%w: invitation: id %q is not 32 lowercase hex digits", ErrInvalid, inv.ID)
	}
	if !isHex32(inv.Folder) {
		return fmt.Errorf("%w: invitation %s: folder %q is not 32 lowercase hex digits", ErrInvalid, inv.ID, inv.Folder)
	}
	if !isHex32(inv.Inviter) || !isHex32(inv.Invitee) {
		return fmt.Errorf("%w: invitation %s: inviter %q and invitee %q must be 32 lowercase hex digits", ErrInvalid, inv.ID, inv.Inviter, inv.Invitee)
	}
	if !inv.Permission.Valid() {
		return fmt.Errorf("%w: invitation %s: permission %q is none of ro, rw, wd", ErrInvalid, inv.ID, inv.Permission)
	}
	if !inv.State.Valid() {
		return fmt.Errorf("%w: invitation %s: unknown state %q", ErrInvalid, inv.ID, inv.State)
	}
	return nil
}

// PrepareShare checks a share as PutShare requires and returns the record
// to store: CreatedAt kept from old when one is replaced (old != nil),
// else the caller's or now; UpdatedAt now; both in UTC.
func PrepareShare(sh Share, old *Share) (Share, error) {
	if err := checkShare(sh); err != nil {
		return Share{}, err
	}
	t := now()
	switch {
	case old != nil:
		sh.CreatedAt = old.CreatedAt
	case sh.CreatedAt.IsZero():
		sh.CreatedAt = t
	default:
		sh.CreatedAt = normTime(sh.CreatedAt)
	}
	sh.UpdatedAt = t
	return sh, nil
}

// PrepareInvitation checks a new invitation as CreateInvitation requires
// (a pending one) and returns the record to store (times as in
// PrepareShare).
func PrepareInvitation(inv Invitation) (Invitation, error) {
	if err := checkInvitation(inv); err != nil {
		return Invitation{}, err
	}
	if inv.State != InvitePending {
		return Invitation{}, fmt.Errorf("%w: invitation %s: a new invitation is pending, not %s", ErrInvalid, inv.ID, inv.State)
	}
	t := now()
	if inv.CreatedAt.IsZero() {
		inv.CreatedAt = t
	}
	inv.CreatedAt = normTime(inv.CreatedAt)
	inv.UpdatedAt = t
	return inv, nil
}

// SettleRecord checks that inv may go to state (it is pending and state
// is a settled state) and returns the record to store. ErrInvalid for a
// state that is not accepted, rejected or canceled; ErrConflict when the
// invitation is settled already.
func SettleRecord(inv Invitation, state InvitationState) (Invitation, error) {
	if !state.Valid() || state == InvitePending {
		return Invitation{}, fmt.Errorf("%w: invitation %s: cannot settle as %q (accepted, rejected or canceled)", ErrInvalid, inv.ID, state)
	}
	if inv.State != InvitePending {
		return Invitation{}, fmt.Errorf("%w: invitation %s is %s already", ErrConflict, inv.ID, inv.State)
	}
	inv.State = state
	inv.UpdatedAt = now()
	return inv, nil
}

// ParseShareArgs accepts a folder and a user id argument in any form
// ParseUUID takes and returns the canonical forms.
func ParseShareArgs(folder, user string) (string, string, error) {
	f, err := parseFolderID(folder)
	if err != nil {
		return "", "", err
	}
	u, err := ParseUUID(user)
	if err != nil {
		return "", "", fmt.Errorf("user: %w", err)
	}
	return f, u, nil
}

// ParseInvitationID accepts an invitation id argument in any form
// ParseUUID takes and returns the canonical form.
func ParseInvitationID(id string) (string, error) {
	h, err := ParseUUID(id)
	if err != nil {
		return "", fmt.Errorf("invitation: %w", err)
	}
	return h, nil
}

// SortShares orders shares by folder, then user.
func SortShares(ss []Share) {
	slices.SortFunc(ss, func(a, b Share) int {
		return cmp.Or(strings.Compare(a.Folder, b.Folder), strings.Compare(a.User, b.User))
	})
}

// SortInvitations orders invitations as ListInvitations returns them: by
// creation time, then id.
func SortInvitations(is []Invitation) {
	slices.SortFunc(is, func(a, b Invitation) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), strings.Compare(a.ID, b.ID))
	})
}

// InvitationOf reports whether user is the inviter or the invitee of inv.
func InvitationOf(inv Invitation, user string) bool {
	return inv.Inviter == user || inv.Invitee == user
}
