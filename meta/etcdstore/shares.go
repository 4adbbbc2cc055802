package etcdstore

// Shares and invitations (see meta/shares.go). Keys, beside those of the
// package comment:
//
//	P m/share/<folder>/<user>        Share
//	P m/shareof/<user>/<folder>      the same Share, indexed by user
//	P m/inv/<id>                     Invitation
//	P m/invpend/<folder>/<invitee>   id of the pending invitation (plain text)
//
// A share is stored twice (like a membership) so that ListShares and
// SharesOf are one range read each; both copies change in one
// transaction. Every write that needs the folder reads the folder's
// record key and so joins its guard: a DeleteFolder that commits first
// breaks the guard, and the retry finds the folder gone (ErrNotFound).
// "share" and "inv" are record families (Load, Watch); "shareof" and
// "invpend" are indexes. ListInvitations scans every invitation (they are
// few: one per offer). DeleteFolderShares removes a folder's records in
// transactions of at most maxDeleteBatch keys each, until none is left;
// it is meant for a folder whose record is gone, to which nothing new can
// be added, so the batches cannot race with new records.

import (
	"context"
	"fmt"
	"strings"

	"github.com/vfolder/vfolder/meta"
)

const maxDeleteBatch = 40

func (s *Store) shareKey(folder, user string) string { return s.pfx + "share/" + folder + "/" + user }
func (s *Store) shareOfKey(user, folder string) string {
	return s.pfx + "shareof/" + user + "/" + folder
}
func (s *Store) invKey(id string) string { return s.pfx + "inv/" + id }
func (s *Store) invPendKey(folder, invitee string) string {
	return s.pfx + "invpend/" + folder + "/" + invitee
}

// needFolder reads the folder's record key in t (joining the guard) and
// fails with ErrNotFound when it is absent.
func (s *Store) needFolder(t *txn, folder string) error {
	if err := t.get(s.folderKey(folder)); err != nil {
		return err
	}
	if t.kv(s.folderKey(folder)) == nil {
		return fmt.Errorf("%w: no folder has id %s", meta.ErrNotFound, folder)
	}
	return nil
}

func (s *Store) putShare(t *txn, sh meta.Share) error {
	val, err := encode(sh)
	if err != nil {
		return err
	}
	t.put(s.shareKey(sh.Folder, sh.User), val)
	t.put(s.shareOfKey(sh.User, sh.Folder), val)
	return nil
}

// CreateInvitation stores a new pending invitation.
func (s *Store) CreateInvitation(ctx context.Context, inv meta.Invitation) error {
	inv, err := meta.PrepareInvitation(inv)
	if err != nil {
		return err
	}
	val, err := encode(inv)
	if err != nil {
		return err
	}
	ik, pk, sk := s.invKey(inv.ID), s.invPendKey(inv.Folder, inv.Invitee), s.shareKey(inv.Folder, inv.Invitee)
	return s.update(ctx, "create invitation", func(t *txn) error {
		if err := t.get(s.folderKey(inv.Folder), ik, pk, sk); err != nil {
			return err
		}
		if err := s.needFolder(t, inv.Folder); err != nil {
			return err
		}
		if t.kv(ik) != nil {
			return fmt.Errorf("%w: invitation id %s is taken", meta.ErrExists, inv.ID)
		}
		if kv := t.kv(pk); kv != nil {
			return fmt.Errorf("%w: invitation %s of folder %s to user %s is pending", meta.ErrExists, kv.Value, inv.Folder, inv.Invitee)
		}
		if t.kv(sk) != nil {
			return fmt.Errorf("%w: user %s holds a share of folder %s already", meta.ErrExists, inv.Invitee, inv.Folder)
		}
		t.put(ik, val)
		t.put(pk, inv.ID)
		return nil
	})
}

// GetInvitation returns an invitation.
func (s *Store) GetInvitation(ctx context.Context, id string) (meta.Invitation, error) {
	id, err := meta.ParseInvitationID(id)
	if err != nil {
		return meta.Invitation{}, err
	}
	var inv meta.Invitation
	err = s.read(ctx, "get invitation", func(ctx context.Context) error {
		kv, err := s.getOne(ctx, s.invKey(id))
		if err != nil {
			return err
		}
		if kv == nil {
			return fmt.Errorf("%w: no invitation has id %s", meta.ErrNotFound, id)
		}
		inv, err = decode[meta.Invitation](kv.Key, kv.Value)
		return err
	})
	if err != nil {
		return meta.Invitation{}, err
	}
	return inv, nil
}

// ListInvitations returns the invitations user sent or received.
func (s *Store) ListInvitations(ctx context.Context, user string) ([]meta.Invitation, error) {
	user, err := parseMemberArg("user", user)
	if err != nil {
		return nil, err
	}
	out := []meta.Invitation{}
	err = s.read(ctx, "list invitations", func(ctx context.Context) error {
		kvs, _, err := s.scan(ctx, s.pfx+"inv/", 0, false)
		if err != nil {
			return err
		}
		all, err := decodeAll[meta.Invitation](kvs)
		if err != nil {
			return err
		}
		for _, inv := range all {
			if meta.InvitationOf(inv, user) {
				out = append(out, inv)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	meta.SortInvitations(out)
	return out, nil
}

// SettleInvitation settles a pending invitation.
func (s *Store) SettleInvitation(ctx context.Context, id string, state meta.InvitationState) (meta.Invitation, error) {
	id, err := meta.ParseInvitationID(id)
	if err != nil {
		return meta.Invitation{}, err
	}
	var inv meta.Invitation
	ik := s.invKey(id)
	err = s.update(ctx, "settle invitation", func(t *txn) error {
		if err := t.get(ik); err != nil {
			return err
		}
		kv := t.kv(ik)
		if kv == nil {
			return fmt.Errorf("%w: no invitation has id %s", meta.ErrNotFound, id)
		}
		old, err := decode[meta.Invitation](kv.Key, kv.Value)
		if err != nil {
			return err
		}
		if inv, err = meta.SettleRecord(old, state); err != nil {
			return err
		}
		if state == meta.InviteAccepted {
			sk := s.shareKey(inv.Folder, inv.Invitee)
			if err := t.get(s.folderKey(inv.Folder), sk); err != nil {
				return err
			}
			if err := s.needFolder(t, inv.Folder); err != nil {
				return err
			}
			if t.kv(sk) != nil {
				return fmt.Errorf("%w: user %s holds a share of folder %s already", meta.ErrExists, inv.Invitee, inv.Folder)
			}
			sh, err := meta.PrepareShare(meta.Share{Folder: inv.Folder, User: inv.Invitee, Permission: inv.Permission}, nil)
			if err != nil {
				return err
			}
			if err := s.putShare(t, sh); err != nil {
				return err
			}
		}
		val, err := encode(inv)
		if err != nil {
			return err
		}
		t.put(ik, val)
		t.del(s.invPendKey(inv.Folder, inv.Invitee))
		return nil
	})
	if err != nil {
		return meta.Invitation{}, err
	}
	return inv, nil
}

// PutShare creates or replaces a share.
func (s *Store) PutShare(ctx context.Context, sh meta.Share) error {
	if _, err := meta.PrepareShare(sh, nil); err != nil {
		return err
	}
	sk := s.shareKey(sh.Folder, sh.User)
	return s.update(ctx, "put share", func(t *txn) error {
		if err := t.get(s.folderKey(sh.Folder), sk); err != nil {
			return err
		}
		if err := s.needFolder(t, sh.Folder); err != nil {
			return err
		}
		var oldp *meta.Share
		if kv := t.kv(sk); kv != nil {
			old, err := decode[meta.Share](kv.Key, kv.Value)
			if err != nil {
				return err
			}
			oldp = &old
		}
		rec, err := meta.PrepareShare(sh, oldp)
		if err != nil {
			return err
		}
		return s.putShare(t, rec)
	})
}

// GetShare returns the share of folder to user.
func (s *Store) GetShare(ctx context.Context, folder, user string) (meta.Share, error) {
	folder, user, err := meta.ParseShareArgs(folder, user)
	if err != nil {
		return meta.Share{}, err
	}
	var sh meta.Share
	err = s.read(ctx, "get share", func(ctx context.Context) error {
		kv, err := s.getOne(ctx, s.shareKey(folder, user))
		if err != nil {
			return err
		}
		if kv == nil {
			return fmt.Errorf("%w: user %s has no share of folder %s", meta.ErrNotFound, user, folder)
		}
		sh, err = decode[meta.Share](kv.Key, kv.Value)
		return err
	})
	if err != nil {
		return meta.Share{}, err
	}
	return sh, nil
}

// RemoveShare removes a share: the record and its copy, in one
// transaction.
func (s *Store) RemoveShare(ctx context.Context, folder, user string) error {
	folder, user, err := meta.ParseShareArgs(folder, user)
	if err != nil {
		return err
	}
	sk := s.shareKey(folder, user)
	return s.update(ctx, "remove share", func(t *txn) error {
		if err := t.get(sk); err != nil {
			return err
		}
		if t.kv(sk) == nil {
			return fmt.Errorf("%w: user %s has no share of folder %s", meta.ErrNotFound, user, folder)
		}
		t.del(sk)
		t.del(s.shareOfKey(user, folder))
		return nil
	})
}

// ListShares returns the shares of a folder, ordered by user: one range
// read.
func (s *Store) ListShares(ctx context.Context, folder string) ([]meta.Share, error) {
	folder, err := meta.ParseFolderID(folder)
	if err != nil {
		return nil, err
	}
	return s.shares(ctx, "list shares", s.pfx+"share/"+folder+"/")
}

// SharesOf returns the shares a user holds, ordered by folder: one range
// read of the copies kept under the user.
func (s *Store) SharesOf(ctx context.Context, user string) ([]meta.Share, error) {
	user, err := parseMemberArg("user", user)
	if err != nil {
		return nil, err
	}
	return s.shares(ctx, "list shares of a user", s.pfx+"shareof/"+user+"/")
}

func (s *Store) shares(ctx context.Context, what, prefix string) ([]meta.Share, error) {
	var out []meta.Share
	err := s.read(ctx, what, func(ctx context.Context) error {
		kvs, _, err := s.scan(ctx, prefix, 0, false)
		if err != nil {
			return err
		}
		out, err = decodeAll[meta.Share](kvs)
		return err
	})
	if err != nil {
		return nil, err
	}
	meta.SortShares(out)
	return out, nil
}

// DeleteFolderShares removes every share and invitation of a folder, in
// batches (see the file comment).
func (s *Store) DeleteFolderShares(ctx context.Context, folder string) error {
	folder, err := meta.ParseFolderID(folder)
	if err != nil {
		return err
	}
	for {
		var keys []string
		err := s.read(ctx, "list a folder's shares", func(ctx context.Context) error {
			shares, _, err := s.scan(ctx, s.pfx+"share/"+folder+"/", 0, false)
			if err != nil {
				return err
			}
			for _, kv := range shares {
				user := strings.TrimPrefix(string(kv.Key), s.pfx+"share/"+folder+"/")
				keys = append(keys, string(kv.Key), s.shareOfKey(user, folder))
			}
			pend, _, err := s.scan(ctx, s.pfx+"invpend/"+folder+"/", 0, true)
			if err != nil {
				return err
			}
			for _, kv := range pend {
				keys = append(keys, string(kv.Key))
			}
			invs, _, err := s.scan(ctx, s.pfx+"inv/", 0, false)
			if err != nil {
				return err
			}
			for _, kv := range invs {
				inv, err := decode[meta.Invitation](kv.Key, kv.Value)
				if err != nil {
					return err
				}
				if inv.Folder == folder {
					keys = append(keys, string(kv.Key))
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		if len(keys) == 0 {
			return nil
		}
		batch := keys[:min(len(keys), maxDeleteBatch)]
		err = s.update(ctx, "delete a folder's shares", func(t *txn) error {
			if err := t.get(batch...); err != nil {
				return err
			}
			for _, k := range batch {
				if t.kv(k) != nil {
					t.del(k)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
}

// verifyShares checks that every share has its copy under the user and
// the other way round, and that every pending index names a pending
// invitation of that folder and invitee.
func (s *Store) verifyShares(byFam map[string]map[string][]byte) error {
	for rest, val := range byFam["share"] {
		folder, user, _ := strings.Cut(rest, "/")
		sh, err := decode[meta.Share]([]byte(s.shareKey(folder, user)), val)
		if err != nil {
			return err
		}
		if sh.Folder != folder || sh.User != user {
			return corrupt("share stored under %q is of folder %s to %s", rest, sh.Folder, sh.User)
		}
		if string(byFam["shareof"][user+"/"+folder]) != string(val) {
			return corrupt("share %q has no equal copy under the user", rest)
		}
	}
	for rest := range byFam["shareof"] {
		user, folder, _ := strings.Cut(rest, "/")
		if _, ok := byFam["share"][folder+"/"+user]; !ok {
			return corrupt("user index %q points to a missing share", rest)
		}
	}
	for rest, id := range byFam["invpend"] {
		val, ok := byFam["inv"][string(id)]
		if !ok {
			return corrupt("pending index %q points to a missing invitation %s", rest, id)
		}
		inv, err := decode[meta.Invitation]([]byte(s.invKey(string(id))), val)
		if err != nil {
			return err
		}
		if inv.State != meta.InvitePending || inv.Folder+"/"+inv.Invitee != rest {
			return corrupt("pending index %q points to invitation %s (%s, folder %s to %s)", rest, id, inv.State, inv.Folder, inv.Invitee)
		}
	}
	return nil
}

// AllShares returns every share, ordered by folder, then user: one range
// read.
func (s *Store) AllShares(ctx context.Context) ([]meta.Share, error) {
	return s.shares(ctx, "list every share", s.pfx+"share/")
}
