package meta

import (
	"context"
	"encoding/json"

	"strings"

	"github.com/dgraph-io/badger/v4"
)

// SSH key layout (beside the keys listed in badger.go):
//
//	m/sshkey/<key-id>            SSHKey (JSON); key-id is SSHKeyID(fingerprint)
//	m/sshkeyof/<user>/<key-id>   empty: index of a user's keys
//
// Both are written and removed in one transaction.
const (
	prefixSSHKey   = "m/sshkey/"
	prefixSSHKeyOf = "m/sshkeyof/"
)

func sshKeyKey(id string) []byte { return []byte(prefixSSHKey + id) }

func sshKeyOfKey(user, id string) []byte { return []byte(prefixSSHKeyOf + user + "/" + id) }

// PutSSHKey registers a key; ErrExists if its fingerprint is registered.
func (b *Badger) PutSSHKey(ctx context.Context, k SSHKey) error {
	if err := CheckSSHKey(k); err != nil {
		return err
	}
	id, _ := SSHKeyID(k.Fingerprint)
	return b.update(ctx, func(txn *badger.Txn) error {
		var old SSHKey
		ok, err := getJSON(txn, sshKeyKey(id), &old)
		if err != nil {
			return err
		}
		if ok {
			return errorf(ErrExists, "ssh key %s is registered for user %s", k.Fingerprint, old.User)
		}
		if err := setJSON(txn, sshKeyKey(id), k); err != nil {
			return err
		}
		return txn.Set(sshKeyOfKey(k.User, id), nil)
	})
}

// GetSSHKey returns the key of that fingerprint.
func (b *Badger) GetSSHKey(ctx context.Context, fingerprint string) (SSHKey, error) {
	id, err := SSHKeyID(fingerprint)
	if err != nil {
		return SSHKey{}, err
	}
	var k SSHKey
	err = b.view(ctx, func(txn *badger.Txn) error {
		ok, err := getJSON(txn, sshKeyKey(id), &k)
		if err == nil && !ok {
			err = errorf(ErrNotFound, "ssh key %s", fingerprint)
		}
		return err
	})
	if err != nil {
		return SSHKey{}, err
	}
	return k, nil
}

// ListSSHKeys returns a user's keys ordered by fingerprint: a prefix scan
// of the user index and one read per key.
func (b *Badger) ListSSHKeys(ctx context.Context, user string) ([]SSHKey, error) {
	u, err := ParseUUID(user)
	if err != nil {
		return nil, errorf(ErrInvalid, "user %q", user)
	}
	out := []SSHKey{}
	err = b.view(ctx, func(txn *badger.Txn) error {
		prefix := prefixSSHKeyOf + u + "/"
		return scanKeys(txn, []byte(prefix), func(key []byte) error {
			id := strings.TrimPrefix(string(key), prefix)
			var k SSHKey
			ok, err := getJSON(txn, sshKeyKey(id), &k)
			if err != nil {
				return err
			}
			if !ok || k.User != u {
				return errorf(ErrCorrupt, "ssh key index %q points to a missing key", key)
			}
			out = append(out, k)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	SortSSHKeys(out)
	return out, nil
}

// DeleteSSHKey removes the user's key of that fingerprint.
func (b *Badger) DeleteSSHKey(ctx context.Context, user, fingerprint string) (SSHKey, error) {
	u, id, err := ParseSSHKeyArgs(user, fingerprint)
	if err != nil {
		return SSHKey{}, err
	}
	var k SSHKey
	err = b.update(ctx, func(txn *badger.Txn) error {
		ok, err := getJSON(txn, sshKeyKey(id), &k)
		if err != nil {
			return err
		}
		if !ok || k.User != u {
			return errorf(ErrNotFound, "user %s has no ssh key %s", u, fingerprint)
		}
		if err := txn.Delete(sshKeyKey(id)); err != nil {
			return err
		}
		return txn.Delete(sshKeyOfKey(u, id))
	})
	if err != nil {
		return SSHKey{}, err
	}
	return k, nil
}

// verifySSHKeys checks that every key record is well-formed and stored
// under its own id, and that the user index holds exactly one entry per
// key (part of Verify).
func verifySSHKeys(txn *badger.Txn) error {
	want := map[string]bool{} // "<user>/<id>"
	err := scan(txn, []byte(prefixSSHKey), func(key, val []byte) error {
		var k SSHKey
		if err := json.Unmarshal(val, &k); err != nil {
			return errorf(ErrCorrupt, "key %q: %v", key, err)
		}
		if err := CheckSSHKey(k); err != nil {
			return errorf(ErrCorrupt, "key %q: %v", key, err)
		}
		id, _ := SSHKeyID(k.Fingerprint)
		if string(key) != prefixSSHKey+id {
			return errorf(ErrCorrupt, "ssh key %s stored under %q", k.Fingerprint, key)
		}
		want[k.User+"/"+id] = true
		return nil
	})
	if err != nil {
		return err
	}
	seen := 0
	err = scanKeys(txn, []byte(prefixSSHKeyOf), func(key []byte) error {
		if !want[strings.TrimPrefix(string(key), prefixSSHKeyOf)] {
			return errorf(ErrCorrupt, "ssh key index %q has no key", key)
		}
		seen++
		return nil
	})
	if err != nil {
		return err
	}
	if seen != len(want) {
		return errorf(ErrCorrupt, "%d ssh key index entries for %d keys", seen, len(want))
	}
	return nil
}
