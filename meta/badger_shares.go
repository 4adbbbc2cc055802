package meta

// Shares and invitations in badger. Keys, beside those of badger.go:
//
//	m/share/<folder>/<user>       Share (JSON)
//	m/shareof/<user>/<folder>     empty: index of the shares a user holds
//	m/inv/<id>                    Invitation (JSON)
//	m/invpend/<folder>/<invitee>  id of the pending invitation of folder to invitee
//
// Each index is written in the transaction that writes its record.
// ListInvitations scans every invitation (they are few: one per offer).

import (
	"context"
	"errors"
	"strings"

	"github.com/dgraph-io/badger/v4"
)

const (
	prefixShare   = "m/share/"
	prefixShareOf = "m/shareof/"
	prefixInv     = "m/inv/"
	prefixInvPend = "m/invpend/"
)

func shareKey(folder, user string) []byte   { return []byte(prefixShare + folder + "/" + user) }
func shareOfKey(user, folder string) []byte { return []byte(prefixShareOf + user + "/" + folder) }
func invKey(id string) []byte               { return []byte(prefixInv + id) }
func invPendKey(folder, invitee string) []byte {
	return []byte(prefixInvPend + folder + "/" + invitee)
}

// folderRecord fails with ErrNotFound when the folder has no record; the
// read joins the transaction's conflict set, so a concurrent DeleteFolder
// and this transaction cannot both commit.
func folderRecord(txn *badger.Txn, id string) error {
	if _, err := txn.Get(folderKey(id)); errors.Is(err, badger.ErrKeyNotFound) {
		return errorf(ErrNotFound, "no folder has id %s", id)
	} else if err != nil {
		return err
	}
	return nil
}

func getShare(txn *badger.Txn, folder, user string) (Share, bool, error) {
	var sh Share
	ok, err := getJSON(txn, shareKey(folder, user), &sh)
	return sh, ok, err
}

func putShare(txn *badger.Txn, sh Share) error {
	if err := setJSON(txn, shareKey(sh.Folder, sh.User), sh); err != nil {
		return err
	}
	return txn.Set(shareOfKey(sh.User, sh.Folder), nil)
}

// CreateInvitation stores a new pending invitation.
func (b *Badger) CreateInvitation(ctx context.Context, inv Invitation) error {
	inv, err := PrepareInvitation(inv)
	if err != nil {
		return err
	}
	return b.update(ctx, func(txn *badger.Txn) error {
		if err := folderRecord(txn, inv.Folder); err != nil {
			return err
		}
		if _, err := txn.Get(invKey(inv.ID)); err == nil {
			return errorf(ErrExists, "invitation id %s is taken", inv.ID)
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		if id, ok, err := getString(txn, invPendKey(inv.Folder, inv.Invitee)); err != nil {
			return err
		} else if ok {
			return errorf(ErrExists, "invitation %s of folder %s to user %s is pending", id, inv.Folder, inv.Invitee)
		}
		if _, ok, err := getShare(txn, inv.Folder, inv.Invitee); err != nil {
			return err
		} else if ok {
			return errorf(ErrExists, "user %s holds a share of folder %s already", inv.Invitee, inv.Folder)
		}
		if err := setJSON(txn, invKey(inv.ID), inv); err != nil {
			return err
		}
		return txn.Set(invPendKey(inv.Folder, inv.Invitee), []byte(inv.ID))
	})
}

// GetInvitation returns an invitation.
func (b *Badger) GetInvitation(ctx context.Context, id string) (Invitation, error) {
	id, err := ParseInvitationID(id)
	if err != nil {
		return Invitation{}, err
	}
	var inv Invitation
	err = b.view(ctx, func(txn *badger.Txn) error {
		ok, err := getJSON(txn, invKey(id), &inv)
		if err == nil && !ok {
			err = errorf(ErrNotFound, "no invitation has id %s", id)
		}
		return err
	})
	return inv, err
}

// ListInvitations returns the invitations user sent or received: a scan
// of every invitation.
func (b *Badger) ListInvitations(ctx context.Context, user string) ([]Invitation, error) {
	user, err := parseMemberArg("user", user)
	if err != nil {
		return nil, err
	}
	var out []Invitation
	err = b.view(ctx, func(txn *badger.Txn) (err error) {
		out, err = scanJSON(txn, []byte(prefixInv), func(inv Invitation) bool { return InvitationOf(inv, user) })
		return err
	})
	if err != nil {
		return nil, err
	}
	if out == nil {
		out = []Invitation{}
	}
	SortInvitations(out)
	return out, nil
}

// SettleInvitation settles a pending invitation.
func (b *Badger) SettleInvitation(ctx context.Context, id string, state InvitationState) (Invitation, error) {
	id, err := ParseInvitationID(id)
	if err != nil {
		return Invitation{}, err
	}
	var inv Invitation
	err = b.update(ctx, func(txn *badger.Txn) error {
		var old Invitation
		ok, err := getJSON(txn, invKey(id), &old)
		if err != nil {
			return err
		}
		if !ok {
			return errorf(ErrNotFound, "no invitation has id %s", id)
		}
		if inv, err = SettleRecord(old, state); err != nil {
			return err
		}
		if state == InviteAccepted {
			if err := folderRecord(txn, inv.Folder); err != nil {
				return err
			}
			if _, ok, err := getShare(txn, inv.Folder, inv.Invitee); err != nil {
				return err
			} else if ok {
				return errorf(ErrExists, "user %s holds a share of folder %s already", inv.Invitee, inv.Folder)
			}
			sh, err := PrepareShare(Share{Folder: inv.Folder, User: inv.Invitee, Permission: inv.Permission}, nil)
			if err != nil {
				return err
			}
			if err := putShare(txn, sh); err != nil {
				return err
			}
		}
		if err := setJSON(txn, invKey(id), inv); err != nil {
			return err
		}
		return txn.Delete(invPendKey(inv.Folder, inv.Invitee))
	})
	if err != nil {
		return Invitation{}, err
	}
	return inv, nil
}

// PutShare creates or replaces a share.
func (b *Badger) PutShare(ctx context.Context, sh Share) error {
	if err := checkShare(sh); err != nil {
		return err
	}
	return b.update(ctx, func(txn *badger.Txn) error {
		if err := folderRecord(txn, sh.Folder); err != nil {
			return err
		}
		old, ok, err := getShare(txn, sh.Folder, sh.User)
		if err != nil {
			return err
		}
		var oldp *Share
		if ok {
			oldp = &old
		}
		rec, err := PrepareShare(sh, oldp)
		if err != nil {
			return err
		}
		return putShare(txn, rec)
	})
}

// GetShare returns the share of folder to user.
func (b *Badger) GetShare(ctx context.Context, folder, user string) (Share, error) {
	folder, user, err := ParseShareArgs(folder, user)
	if err != nil {
		return Share{}, err
	}
	var sh Share
	err = b.view(ctx, func(txn *badger.Txn) error {
		var ok bool
		var err error
		sh, ok, err = getShare(txn, folder, user)
		if err == nil && !ok {
			err = errorf(ErrNotFound, "user %s has no share of folder %s", user, folder)
		}
		return err
	})
	return sh, err
}

// RemoveShare removes a share.
func (b *Badger) RemoveShare(ctx context.Context, folder, user string) error {
	folder, user, err := ParseShareArgs(folder, user)
	if err != nil {
		return err
	}
	return b.update(ctx, func(txn *badger.Txn) error {
		if _, err := txn.Get(shareKey(folder, user)); errors.Is(err, badger.ErrKeyNotFound) {
			return errorf(ErrNotFound, "user %s has no share of folder %s", user, folder)
		} else if err != nil {
			return err
		}
		if err := txn.Delete(shareKey(folder, user)); err != nil {
			return err
		}
		return txn.Delete(shareOfKey(user, folder))
	})
}

// ListShares returns the shares of a folder, ordered by user: one prefix
// scan.
func (b *Badger) ListShares(ctx context.Context, folder string) ([]Share, error) {
	folder, err := parseFolderID(folder)
	if err != nil {
		return nil, err
	}
	var out []Share
	err = b.view(ctx, func(txn *badger.Txn) (err error) {
		out, err = scanJSON[Share](txn, []byte(prefixShare+folder+"/"), nil)
		return err
	})
	if err != nil {
		return nil, err
	}
	if out == nil {
		out = []Share{}
	}
	SortShares(out)
	return out, nil
}

// SharesOf returns the shares a user holds, ordered by folder: a prefix
// scan of the user index and one read per share.
func (b *Badger) SharesOf(ctx context.Context, user string) ([]Share, error) {
	user, err := parseMemberArg("user", user)
	if err != nil {
		return nil, err
	}
	out := []Share{}
	err = b.view(ctx, func(txn *badger.Txn) error {
		prefix := prefixShareOf + user + "/"
		return scanKeys(txn, []byte(prefix), func(key []byte) error {
			folder := strings.TrimPrefix(string(key), prefix)
			sh, ok, err := getShare(txn, folder, user)
			if err != nil {
				return err
			}
			if !ok {
				return errorf(ErrCorrupt, "user index %q points to a missing share", key)
			}
			out = append(out, sh)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	SortShares(out)
	return out, nil
}

// DeleteFolderShares removes every share and invitation of a folder.
func (b *Badger) DeleteFolderShares(ctx context.Context, folder string) error {
	folder, err := parseFolderID(folder)
	if err != nil {
		return err
	}
	return b.update(ctx, func(txn *badger.Txn) error {
		shares, err := scanJSON[Share](txn, []byte(prefixShare+folder+"/"), nil)
		if err != nil {
			return err
		}
		for _, sh := range shares {
			if err := txn.Delete(shareKey(sh.Folder, sh.User)); err != nil {
				return err
			}
			if err := txn.Delete(shareOfKey(sh.User, sh.Folder)); err != nil {
				return err
			}
		}
		invs, err := scanJSON(txn, []byte(prefixInv), func(inv Invitation) bool { return inv.Folder == folder })
		if err != nil {
			return err
		}
		for _, inv := range invs {
			if err := txn.Delete(invKey(inv.ID)); err != nil {
				return err
			}
		}
		pend := []byte(prefixInvPend + folder + "/")
		var keys [][]byte
		if err := scanKeys(txn, pend, func(key []byte) error {
			keys = append(keys, append([]byte(nil), key...))
			return nil
		}); err != nil {
			return err
		}
		for _, k := range keys {
			if err := txn.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}

// AllShares returns every share, ordered by folder, then user: one prefix
// scan.
func (b *Badger) AllShares(ctx context.Context) ([]Share, error) {
	var out []Share
	err := b.view(ctx, func(txn *badger.Txn) (err error) {
		out, err = scanJSON[Share](txn, []byte(prefixShare), nil)
		return err
	})
	if err != nil {
		return nil, err
	}
	if out == nil {
		out = []Share{}
	}
	SortShares(out)
	return out, nil
}
