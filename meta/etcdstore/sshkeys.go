package etcdstore

// SSH keys (meta.SSHKey), stored twice like memberships so that a lookup
// by fingerprint and a user's list are one read each:
//
//	P m/sshkey/<key-id>            SSHKey (key-id: meta.SSHKeyID of the fingerprint)
//	P m/sshkeyof/<user>/<key-id>   the same SSHKey, indexed by user
//
// Both are written and removed in one transaction. Neither family is a
// record family of Load/Watch: keys are read at login, never cached.

import (
	"context"
	"fmt"

	"github.com/vfolder/vfolder/meta"
)

func (s *Store) sshKeyKey(id string) string { return s.pfx + "sshkey/" + id }

func (s *Store) sshKeyOfKey(user, id string) string { return s.pfx + "sshkeyof/" + user + "/" + id }

// PutSSHKey registers a key; meta.ErrExists if its fingerprint is
// registered.
func (s *Store) PutSSHKey(ctx context.Context, k meta.SSHKey) error {
	if err := meta.CheckSSHKey(k); err != nil {
		return err
	}
	id, _ := meta.SSHKeyID(k.Fingerprint)
	val, err := encode(k)
	if err != nil {
		return err
	}
	key := s.sshKeyKey(id)
	return s.update(ctx, "put ssh key", func(t *txn) error {
		if err := t.get(key); err != nil {
			return err
		}
		if kv := t.kv(key); kv != nil {
			old, err := decode[meta.SSHKey](kv.Key, kv.Value)
			if err != nil {
				return err
			}
			return fmt.Errorf("%w: ssh key %s is registered for user %s", meta.ErrExists, k.Fingerprint, old.User)
		}
		t.put(key, val)
		t.put(s.sshKeyOfKey(k.User, id), val)
		return nil
	})
}

// GetSSHKey returns the key of that fingerprint.
func (s *Store) GetSSHKey(ctx context.Context, fingerprint string) (meta.SSHKey, error) {
	id, err := meta.SSHKeyID(fingerprint)
	if err != nil {
		return meta.SSHKey{}, err
	}
	var k meta.SSHKey
	err = s.read(ctx, "get ssh key", func(ctx context.Context) error {
		kv, err := s.getOne(ctx, s.sshKeyKey(id))
		if err != nil {
			return err
		}
		if kv == nil {
			return fmt.Errorf("%w: ssh key %s", meta.ErrNotFound, fingerprint)
		}
		k, err = decode[meta.SSHKey](kv.Key, kv.Value)
		return err
	})
	if err != nil {
		return meta.SSHKey{}, err
	}
	return k, nil
}

// ListSSHKeys returns a user's keys ordered by fingerprint: one range
// read.
func (s *Store) ListSSHKeys(ctx context.Context, user string) ([]meta.SSHKey, error) {
	u, err := meta.ParseUUID(user)
	if err != nil {
		return nil, fmt.Errorf("%w: user %q", meta.ErrInvalid, user)
	}
	var out []meta.SSHKey
	err = s.read(ctx, "list ssh keys", func(ctx context.Context) error {
		kvs, _, err := s.scan(ctx, s.pfx+"sshkeyof/"+u+"/", 0, false)
		if err != nil {
			return err
		}
		out, err = decodeAll[meta.SSHKey](kvs)
		return err
	})
	if err != nil {
		return nil, err
	}
	meta.SortSSHKeys(out)
	return out, nil
}

// DeleteSSHKey removes the user's key of that fingerprint.
func (s *Store) DeleteSSHKey(ctx context.Context, user, fingerprint string) (meta.SSHKey, error) {
	u, id, err := meta.ParseSSHKeyArgs(user, fingerprint)
	if err != nil {
		return meta.SSHKey{}, err
	}
	key := s.sshKeyKey(id)
	var k meta.SSHKey
	err = s.update(ctx, "delete ssh key", func(t *txn) error {
		if err := t.get(key); err != nil {
			return err
		}
		kv := t.kv(key)
		if kv == nil {
			return fmt.Errorf("%w: user %s has no ssh key %s", meta.ErrNotFound, u, fingerprint)
		}
		var err error
		if k, err = decode[meta.SSHKey](kv.Key, kv.Value); err != nil {
			return err
		}
		if k.User != u {
			return fmt.Errorf("%w: user %s has no ssh key %s", meta.ErrNotFound, u, fingerprint)
		}
		t.del(key)
		t.del(s.sshKeyOfKey(u, id))
		return nil
	})
	if err != nil {
		return meta.SSHKey{}, err
	}
	return k, nil
}

// verifySSHKeys checks that every key is well-formed, stored under its own
// id, and has exactly its copy under its user (part of Verify).
func (s *Store) verifySSHKeys(byFam map[string]map[string][]byte) error {
	for id, val := range byFam["sshkey"] {
		k, err := decode[meta.SSHKey]([]byte(s.sshKeyKey(id)), val)
		if err != nil {
			return err
		}
		if err := meta.CheckSSHKey(k); err != nil {
			return corrupt("ssh key %q: %v", id, err)
		}
		if want, _ := meta.SSHKeyID(k.Fingerprint); want != id {
			return corrupt("ssh key %s stored under %q", k.Fingerprint, id)
		}
		if cp := byFam["sshkeyof"][k.User+"/"+id]; string(cp) != string(val) {
			return corrupt("the copy of ssh key %q under its user is %q", id, cp)
		}
	}
	if len(byFam["sshkeyof"]) != len(byFam["sshkey"]) {
		return corrupt("%d ssh key copies under users for %d keys", len(byFam["sshkeyof"]), len(byFam["sshkey"]))
	}
	return nil
}
