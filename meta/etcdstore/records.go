package etcdstore

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/vfolder/vfolder/meta"
)

// PutVolume creates or replaces a volume record.
func (s *Store) PutVolume(ctx context.Context, v meta.Volume) error {
	if err := meta.CheckVolume(v); err != nil {
		return err
	}
	val, err := encode(v)
	if err != nil {
		return err
	}
	return s.update(ctx, "put volume "+v.Name, func(t *txn) error {
		t.put(s.volumeKey(v.Name), val)
		return nil
	})
}

// GetVolume returns the named volume.
func (s *Store) GetVolume(ctx context.Context, name string) (meta.Volume, error) {
	if strings.Contains(name, "/") { // no volume has such a name
		return meta.Volume{}, fmt.Errorf("%w: volume %q", meta.ErrNotFound, name)
	}
	var v meta.Volume
	err := s.read(ctx, "get volume", func(ctx context.Context) error {
		kv, err := s.getOne(ctx, s.volumeKey(name))
		if err != nil {
			return err
		}
		if kv == nil {
			return fmt.Errorf("%w: volume %q", meta.ErrNotFound, name)
		}
		v, err = decode[meta.Volume](kv.Key, kv.Value)
		return err
	})
	if err != nil {
		return meta.Volume{}, err
	}
	return v, nil
}

// ListVolumes returns all volumes ordered by name.
func (s *Store) ListVolumes(ctx context.Context) ([]meta.Volume, error) {
	var out []meta.Volume
	err := s.read(ctx, "list volumes", func(ctx context.Context) error {
		kvs, _, err := s.scan(ctx, s.pfx+"vol/", 0, false)
		if err != nil {
			return err
		}
		out, err = decodeAll[meta.Volume](kvs)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// CreateScope creates a quota scope; meta.ErrExists if it is there.
func (s *Store) CreateScope(ctx context.Context, sc meta.QuotaScope) error {
	sc, err := meta.PrepareScope(sc)
	if err != nil {
		return err
	}
	val, err := encode(sc)
	if err != nil {
		return err
	}
	return s.update(ctx, "create quota scope "+sc.ID.String(), func(t *txn) error {
		key := s.scopeKey(sc.Volume, sc.ID)
		if err := t.get(key); err != nil {
			return err
		}
		if t.kv(key) != nil {
			return fmt.Errorf("%w: quota scope %s on volume %q", meta.ErrExists, sc.ID, sc.Volume)
		}
		t.put(key, val)
		return nil
	})
}

// GetScope returns one quota scope.
func (s *Store) GetScope(ctx context.Context, volume string, id meta.ScopeID) (meta.QuotaScope, error) {
	if err := meta.CheckOwner(id); err != nil {
		return meta.QuotaScope{}, err
	}
	if strings.Contains(volume, "/") { // no volume has such a name
		return meta.QuotaScope{}, fmt.Errorf("%w: quota scope %s on volume %q", meta.ErrNotFound, id, volume)
	}
	var sc meta.QuotaScope
	err := s.read(ctx, "get quota scope", func(ctx context.Context) error {
		kv, err := s.getOne(ctx, s.scopeKey(volume, id))
		if err != nil {
			return err
		}
		if kv == nil {
			return fmt.Errorf("%w: quota scope %s on volume %q", meta.ErrNotFound, id, volume)
		}
		sc, err = decode[meta.QuotaScope](kv.Key, kv.Value)
		return err
	})
	if err != nil {
		return meta.QuotaScope{}, err
	}
	return sc, nil
}

// UpdateScope applies fn to a copy of the stored scope and stores the
// result if fn succeeds and the result is valid. fn runs again whenever a
// concurrent change wins (see the package comment).
func (s *Store) UpdateScope(ctx context.Context, volume string, id meta.ScopeID, fn func(*meta.QuotaScope) error) (meta.QuotaScope, error) {
	if err := meta.CheckOwner(id); err != nil {
		return meta.QuotaScope{}, err
	}
	var res meta.QuotaScope
	err := s.update(ctx, "update quota scope "+id.String(), func(t *txn) error {
		key := s.scopeKey(volume, id)
		if err := t.get(key); err != nil {
			return err
		}
		kv := t.kv(key)
		if kv == nil || strings.Contains(volume, "/") {
			return fmt.Errorf("%w: quota scope %s on volume %q", meta.ErrNotFound, id, volume)
		}
		old, err := decode[meta.QuotaScope](kv.Key, kv.Value)
		if err != nil {
			return err
		}
		sc := old
		if err := fn(&sc); err != nil {
			return err
		}
		if sc, err = meta.FinishScopeUpdate(old, sc); err != nil {
			return err
		}
		val, err := encode(sc)
		if err != nil {
			return err
		}
		t.put(key, val)
		res = sc
		return nil
	})
	if err != nil {
		return meta.QuotaScope{}, err
	}
	return res, nil
}

// ListScopes returns the scopes of one volume ordered by id, or of every
// volume (ordered by volume, then id) when volume is "".
func (s *Store) ListScopes(ctx context.Context, volume string) ([]meta.QuotaScope, error) {
	prefix := s.pfx + "scope/"
	if volume != "" {
		if strings.Contains(volume, "/") {
			return []meta.QuotaScope{}, nil
		}
		prefix += volume + "/"
	}
	var out []meta.QuotaScope
	err := s.read(ctx, "list quota scopes", func(ctx context.Context) error {
		kvs, _, err := s.scan(ctx, prefix, 0, false)
		if err != nil {
			return err
		}
		out, err = decodeAll[meta.QuotaScope](kvs)
		return err
	})
	if err != nil {
		return nil, err
	}
	meta.SortScopes(out)
	return out, nil
}

// count decodes a count key's value; absent is 0.
func count(kv *mvccpb.KeyValue) (int, error) {
	if kv == nil {
		return 0, nil
	}
	n, err := strconv.Atoi(string(kv.Value))
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%w: etcdstore: folder count %q is %q", meta.ErrCorrupt, kv.Key, kv.Value)
	}
	return n, nil
}

// setCount writes n to a count key, deleting it at 0.
func setCount(t *txn, key string, n int) {
	if n <= 0 {
		t.del(key)
		return
	}
	t.put(key, strconv.Itoa(n))
}

// CreateFolder stores a new folder (see meta.Store). The folder key, the
// owner's name key and count key are read and written in one
// compare-and-swap transaction.
func (s *Store) CreateFolder(ctx context.Context, f meta.Folder, maxCount int) error {
	f, err := meta.PrepareFolder(f, maxCount)
	if err != nil {
		return err
	}
	val, err := encode(f)
	if err != nil {
		return err
	}
	fk, nk, ck := s.folderKey(f.ID), s.nameKey(f.Owner, f.Name), s.countKey(f.Owner)
	return s.update(ctx, "create folder "+f.ID, func(t *txn) error {
		if err := t.get(fk, nk, ck); err != nil {
			return err
		}
		if t.kv(fk) != nil {
			return fmt.Errorf("%w: folder id %s", meta.ErrExists, f.ID)
		}
		if kv := t.kv(nk); kv != nil {
			return fmt.Errorf("%w: %s already has a folder named %q (id %s)", meta.ErrExists, f.Owner, f.Name, kv.Value)
		}
		n, err := count(t.kv(ck))
		if err != nil {
			return err
		}
		if maxCount > 0 && n >= maxCount {
			return fmt.Errorf("%w: %s has %d folders; the limit is %d", meta.ErrLimitExceeded, f.Owner, n, maxCount)
		}
		t.put(fk, val)
		t.put(nk, f.ID)
		setCount(t, ck, n+1)
		return nil
	})
}

// GetFolder returns a folder by id (32-hex or dashed, any case).
func (s *Store) GetFolder(ctx context.Context, id string) (meta.Folder, error) {
	id, err := meta.ParseFolderID(id)
	if err != nil {
		return meta.Folder{}, err
	}
	var f meta.Folder
	err = s.read(ctx, "get folder", func(ctx context.Context) error {
		kv, err := s.getOne(ctx, s.folderKey(id))
		if err != nil {
			return err
		}
		if kv == nil {
			return fmt.Errorf("%w: folder %s", meta.ErrNotFound, id)
		}
		f, err = decode[meta.Folder](kv.Key, kv.Value)
		return err
	})
	if err != nil {
		return meta.Folder{}, err
	}
	return f, nil
}

// FolderByName finds an owner's folder by name: the name key, then the
// folder record at the same revision.
func (s *Store) FolderByName(ctx context.Context, owner meta.ScopeID, name string) (meta.Folder, error) {
	if err := meta.CheckOwner(owner); err != nil {
		return meta.Folder{}, err
	}
	var f meta.Folder
	err := s.read(ctx, "find folder by name", func(ctx context.Context) error {
		resp, err := s.cli.Get(ctx, s.nameKey(owner, name))
		if err != nil {
			return err
		}
		if len(resp.Kvs) == 0 {
			return fmt.Errorf("%w: %s has no folder named %q", meta.ErrNotFound, owner, name)
		}
		id := string(resp.Kvs[0].Value)
		got, _, err := s.getKeys(ctx, []string{s.folderKey(id)}, resp.Header.Revision)
		if err != nil {
			return err
		}
		kv := got[s.folderKey(id)]
		if kv == nil {
			return fmt.Errorf("%w: etcdstore: name %q of %s points to missing folder %s", meta.ErrCorrupt, name, owner, id)
		}
		f, err = decode[meta.Folder](kv.Key, kv.Value)
		return err
	})
	if err != nil {
		return meta.Folder{}, err
	}
	return f, nil
}

// ListFolders returns the folders matching filter, ordered by owner, then
// name. With an owner it reads the owner's name keys and their folders at
// one revision; without, every folder record.
func (s *Store) ListFolders(ctx context.Context, filter meta.FolderFilter) ([]meta.Folder, error) {
	if err := filter.Check(); err != nil {
		return nil, err
	}
	out := []meta.Folder{}
	err := s.read(ctx, "list folders", func(ctx context.Context) error {
		var kvs []*mvccpb.KeyValue
		if filter.Owner == nil {
			var err error
			if kvs, _, err = s.scan(ctx, s.pfx+"folder/", 0, false); err != nil {
				return err
			}
		} else {
			names, rev, err := s.scan(ctx, s.pfx+"name/"+filter.Owner.String()+"/", 0, false)
			if err != nil {
				return err
			}
			keys := make([]string, len(names))
			for i, kv := range names {
				keys[i] = s.folderKey(string(kv.Value))
			}
			got, _, err := s.getKeys(ctx, keys, rev)
			if err != nil {
				return err
			}
			for i, k := range keys {
				if got[k] == nil {
					return fmt.Errorf("%w: etcdstore: name key %q points to missing folder %s", meta.ErrCorrupt, names[i].Key, names[i].Value)
				}
				kvs = append(kvs, got[k])
			}
		}
		for _, kv := range kvs {
			f, err := decode[meta.Folder](kv.Key, kv.Value)
			if err != nil {
				return err
			}
			if filter.Match(f) {
				out = append(out, f)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	meta.SortFolders(out)
	return out, nil
}

// UpdateFolder applies fn to a copy of the folder (see meta.Store). fn runs
// again whenever a concurrent change wins.
func (s *Store) UpdateFolder(ctx context.Context, id string, fn func(*meta.Folder) error) (meta.Folder, error) {
	id, err := meta.ParseFolderID(id)
	if err != nil {
		return meta.Folder{}, err
	}
	var res meta.Folder
	fk := s.folderKey(id)
	err = s.update(ctx, "update folder "+id, func(t *txn) error {
		if err := t.get(fk); err != nil {
			return err
		}
		kv := t.kv(fk)
		if kv == nil {
			return fmt.Errorf("%w: folder %s", meta.ErrNotFound, id)
		}
		old, err := decode[meta.Folder](kv.Key, kv.Value)
		if err != nil {
			return err
		}
		f := old
		if err := fn(&f); err != nil {
			return err
		}
		if f, err = meta.FinishFolderUpdate(old, f); err != nil {
			return err
		}
		if f.Name != old.Name {
			nk := s.nameKey(f.Owner, f.Name)
			if err := t.get(nk); err != nil {
				return err
			}
			if other := t.kv(nk); other != nil {
				return fmt.Errorf("%w: %s already has a folder named %q (id %s)", meta.ErrExists, f.Owner, f.Name, other.Value)
			}
			// The old name key needs no guard of its own: every change of
			// it also changes the folder key, which is guarded.
			t.del(s.nameKey(old.Owner, old.Name))
			t.put(nk, f.ID)
		}
		val, err := encode(f)
		if err != nil {
			return err
		}
		t.put(fk, val)
		res = f
		return nil
	})
	if err != nil {
		return meta.Folder{}, err
	}
	return res, nil
}

// DeleteFolder removes a folder record, its name key and one of its
// owner's count; its name is free again.
func (s *Store) DeleteFolder(ctx context.Context, id string) error {
	id, err := meta.ParseFolderID(id)
	if err != nil {
		return err
	}
	fk := s.folderKey(id)
	return s.update(ctx, "delete folder "+id, func(t *txn) error {
		if err := t.get(fk); err != nil {
			return err
		}
		kv := t.kv(fk)
		if kv == nil {
			return fmt.Errorf("%w: folder %s", meta.ErrNotFound, id)
		}
		f, err := decode[meta.Folder](kv.Key, kv.Value)
		if err != nil {
			return err
		}
		ck := s.countKey(f.Owner)
		if err := t.get(ck); err != nil {
			return err
		}
		n, err := count(t.kv(ck))
		if err != nil {
			return err
		}
		t.del(fk)
		t.del(s.nameKey(f.Owner, f.Name))
		setCount(t, ck, n-1)
		return nil
	})
}

// GetPolicy returns the owner's policy, or the zero Policy if none is set.
func (s *Store) GetPolicy(ctx context.Context, owner meta.ScopeID) (meta.Policy, error) {
	if err := meta.CheckOwner(owner); err != nil {
		return meta.Policy{}, err
	}
	var p meta.Policy
	err := s.read(ctx, "get policy", func(ctx context.Context) error {
		kv, err := s.getOne(ctx, s.policyKey(owner))
		if err != nil || kv == nil {
			return err
		}
		p, err = decode[meta.Policy](kv.Key, kv.Value)
		return err
	})
	if err != nil {
		return meta.Policy{}, err
	}
	return p, nil
}

// SetPolicy sets the owner's policy; the zero Policy removes it.
func (s *Store) SetPolicy(ctx context.Context, owner meta.ScopeID, p meta.Policy) error {
	if err := meta.CheckOwner(owner); err != nil {
		return err
	}
	if err := meta.CheckPolicy(p); err != nil {
		return err
	}
	p = meta.PreparePolicy(p)
	val, err := encode(p)
	if err != nil {
		return err
	}
	return s.update(ctx, "set policy of "+owner.String(), func(t *txn) error {
		if p.IsZero() {
			t.del(s.policyKey(owner))
		} else {
			t.put(s.policyKey(owner), val)
		}
		return nil
	})
}
