package etcdstore

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/vfolder/vfolder/meta"
)

// SetMembership creates or replaces a membership: the record under the
// project and its copy under the user, in one transaction.
func (s *Store) SetMembership(ctx context.Context, m meta.Membership) error {
	if err := meta.CheckMembership(m); err != nil {
		return err
	}
	val, err := encode(m)
	if err != nil {
		return err
	}
	return s.update(ctx, "set membership", func(t *txn) error {
		t.put(s.memberKey(m.Project, m.User), val)
		t.put(s.memberOfKey(m.User, m.Project), val)
		return nil
	})
}

func parseMemberArg(what, u string) (string, error) {
	h, err := meta.ParseUUID(u)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	return h, nil
}

// RemoveMembership removes a membership; meta.ErrNotFound if there is none.
func (s *Store) RemoveMembership(ctx context.Context, project, user string) error {
	project, err := parseMemberArg("project", project)
	if err != nil {
		return err
	}
	user, err = parseMemberArg("user", user)
	if err != nil {
		return err
	}
	mk := s.memberKey(project, user)
	return s.update(ctx, "remove membership", func(t *txn) error {
		if err := t.get(mk); err != nil {
			return err
		}
		if t.kv(mk) == nil {
			return fmt.Errorf("%w: user %s is not a member of project %s", meta.ErrNotFound, user, project)
		}
		t.del(mk)
		t.del(s.memberOfKey(user, project))
		return nil
	})
}

// ListMembers returns the memberships of a project, ordered by user: one
// range read.
func (s *Store) ListMembers(ctx context.Context, project string) ([]meta.Membership, error) {
	project, err := parseMemberArg("project", project)
	if err != nil {
		return nil, err
	}
	return s.memberships(ctx, "list members", s.pfx+"member/"+project+"/")
}

// ProjectsOf returns the memberships of a user, ordered by project: one
// range read of the copies kept under the user.
func (s *Store) ProjectsOf(ctx context.Context, user string) ([]meta.Membership, error) {
	user, err := parseMemberArg("user", user)
	if err != nil {
		return nil, err
	}
	return s.memberships(ctx, "list projects of a user", s.pfx+"memberof/"+user+"/")
}

func (s *Store) memberships(ctx context.Context, what, prefix string) ([]meta.Membership, error) {
	var out []meta.Membership
	err := s.read(ctx, what, func(ctx context.Context) error {
		kvs, _, err := s.scan(ctx, prefix, 0, false)
		if err != nil {
			return err
		}
		out, err = decodeAll[meta.Membership](kvs)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// indexSession writes the folder index changes of a session going from
// the folders old (if hadOld) to the folders now (if hasNow); both sorted.
// Only entries that change are touched (see the package comment).
func (s *Store) indexSession(t *txn, id string, old []string, hadOld bool, now []string, hasNow bool) error {
	oldBulk := hadOld && len(old) > maxIndexedFolders
	newBulk := hasNow && len(now) > maxIndexedFolders
	has := func(set []string, f string) bool { _, ok := slices.BinarySearch(set, f); return ok }
	if hadOld {
		switch {
		case oldBulk && !newBulk:
			t.del(s.sessBulkKey(id))
		case !oldBulk:
			for _, f := range old {
				if !hasNow || newBulk || !has(now, f) {
					t.del(s.sessFolderKey(f, id))
				}
			}
		}
	}
	if !hasNow {
		return nil
	}
	if newBulk {
		val, err := encode(now)
		if err != nil {
			return err
		}
		t.put(s.sessBulkKey(id), val)
		return nil
	}
	for _, f := range now {
		if !hadOld || oldBulk || !has(old, f) {
			t.put(s.sessFolderKey(f, id), "")
		}
	}
	return nil
}

// PutSession creates or replaces a session record and, in the same
// transaction, its folder index entries.
func (s *Store) PutSession(ctx context.Context, sess meta.Session) error {
	if err := meta.ValidateSession(sess); err != nil {
		return err
	}
	sk := s.sessionKey(sess.ID)
	return s.update(ctx, "put session "+sess.ID, func(t *txn) error {
		if err := t.get(sk); err != nil {
			return err
		}
		var oldp *meta.Session
		var oldFolders []string
		if kv := t.kv(sk); kv != nil {
			old, err := decode[meta.Session](kv.Key, kv.Value)
			if err != nil {
				return err
			}
			oldp, oldFolders = &old, meta.SessionFolders(old)
		}
		rec, err := meta.PrepareSession(sess, oldp)
		if err != nil {
			return err
		}
		val, err := encode(rec)
		if err != nil {
			return err
		}
		if err := s.indexSession(t, rec.ID, oldFolders, oldp != nil, meta.SessionFolders(rec), true); err != nil {
			return err
		}
		t.put(sk, val)
		return nil
	})
}

func decodeSession(key, val []byte) (meta.Session, error) {
	sess, err := decode[meta.Session](key, val)
	if err == nil && sess.Mounts == nil {
		sess.Mounts = []meta.SessionMount{}
	}
	return sess, err
}

// GetSession returns a session; meta.ErrNotFound if there is none.
func (s *Store) GetSession(ctx context.Context, id string) (meta.Session, error) {
	if err := meta.ValidateSessionID(id); err != nil {
		return meta.Session{}, err
	}
	var sess meta.Session
	err := s.read(ctx, "get session", func(ctx context.Context) error {
		kv, err := s.getOne(ctx, s.sessionKey(id))
		if err != nil {
			return err
		}
		if kv == nil {
			return fmt.Errorf("%w: session %s", meta.ErrNotFound, id)
		}
		sess, err = decodeSession(kv.Key, kv.Value)
		return err
	})
	if err != nil {
		return meta.Session{}, err
	}
	return sess, nil
}

// ListSessions returns every session, ordered by id.
func (s *Store) ListSessions(ctx context.Context) ([]meta.Session, error) {
	out := []meta.Session{}
	err := s.read(ctx, "list sessions", func(ctx context.Context) error {
		kvs, _, err := s.scan(ctx, s.spfx+"session/", 0, false)
		if err != nil {
			return err
		}
		for _, kv := range kvs {
			sess, err := decodeSession(kv.Key, kv.Value)
			if err != nil {
				return err
			}
			out = append(out, sess)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b meta.Session) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// DeleteSession removes a session and, in the same transaction, its
// folder index entries.
func (s *Store) DeleteSession(ctx context.Context, id string) error {
	if err := meta.ValidateSessionID(id); err != nil {
		return err
	}
	sk := s.sessionKey(id)
	return s.update(ctx, "delete session "+id, func(t *txn) error {
		if err := t.get(sk); err != nil {
			return err
		}
		kv := t.kv(sk)
		if kv == nil {
			return fmt.Errorf("%w: session %s", meta.ErrNotFound, id)
		}
		old, err := decode[meta.Session](kv.Key, kv.Value)
		if err != nil {
			return err
		}
		if err := s.indexSession(t, id, meta.SessionFolders(old), true, nil, false); err != nil {
			return err
		}
		t.del(sk)
		return nil
	})
}

// SessionsUsingFolder returns the ids of the sessions mounting a folder:
// the folder's index keys and the bulk index entries that name it, read at
// one revision.
func (s *Store) SessionsUsingFolder(ctx context.Context, folderID string) ([]string, error) {
	folderID, err := meta.ParseFolderID(folderID)
	if err != nil {
		return nil, err
	}
	out := []string{}
	err = s.read(ctx, "list sessions using a folder", func(ctx context.Context) error {
		prefix := s.spfx + "sessfolder/" + folderID + "/"
		kvs, rev, err := s.scan(ctx, prefix, 0, true)
		if err != nil {
			return err
		}
		for _, kv := range kvs {
			out = append(out, strings.TrimPrefix(string(kv.Key), prefix))
		}
		bulk, _, err := s.scan(ctx, s.spfx+"sessbulk/", rev, false)
		if err != nil {
			return err
		}
		for _, kv := range bulk {
			folders, err := decode[[]string](kv.Key, kv.Value)
			if err != nil {
				return err
			}
			if _, ok := slices.BinarySearch(folders, folderID); ok {
				out = append(out, strings.TrimPrefix(string(kv.Key), s.spfx+"sessbulk/"))
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}
