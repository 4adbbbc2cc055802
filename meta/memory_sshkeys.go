package meta

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// PutSSHKey registers a key; ErrExists if its fingerprint is registered.
func (m *Memory) PutSSHKey(ctx context.Context, k SSHKey) error {
	if err := CheckSSHKey(k); err != nil {
		return err
	}
	id, _ := SSHKeyID(k.Fingerprint)
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	if old, ok := m.sshKeys[id]; ok {
		return fmt.Errorf("%w: ssh key %s is registered for user %s", ErrExists, k.Fingerprint, old.User)
	}
	if m.sshKeys == nil {
		m.sshKeys = map[string]SSHKey{}
	}
	m.sshKeys[id] = k
	return nil
}

// GetSSHKey returns the key of that fingerprint.
func (m *Memory) GetSSHKey(ctx context.Context, fingerprint string) (SSHKey, error) {
	id, err := SSHKeyID(fingerprint)
	if err != nil {
		return SSHKey{}, err
	}
	if err := m.rlock(); err != nil {
		return SSHKey{}, err
	}
	defer m.mu.RUnlock()
	k, ok := m.sshKeys[id]
	if !ok {
		return SSHKey{}, fmt.Errorf("%w: ssh key %s", ErrNotFound, fingerprint)
	}
	return k, nil
}

// ListSSHKeys returns a user's keys ordered by fingerprint.
func (m *Memory) ListSSHKeys(ctx context.Context, user string) ([]SSHKey, error) {
	u, err := ParseUUID(user)
	if err != nil {
		return nil, fmt.Errorf("%w: user %q", ErrInvalid, user)
	}
	if err := m.rlock(); err != nil {
		return nil, err
	}
	defer m.mu.RUnlock()
	out := []SSHKey{}
	for _, k := range m.sshKeys {
		if k.User == u {
			out = append(out, k)
		}
	}
	SortSSHKeys(out)
	return out, nil
}

// DeleteSSHKey removes the user's key of that fingerprint.
func (m *Memory) DeleteSSHKey(ctx context.Context, user, fingerprint string) (SSHKey, error) {
	u, id, err := ParseSSHKeyArgs(user, fingerprint)
	if err != nil {
		return SSHKey{}, err
	}
	if err := m.lock(); err != nil {
		return SSHKey{}, err
	}
	defer m.mu.Unlock()
	k, ok := m.sshKeys[id]
	if !ok || k.User != u {
		return SSHKey{}, fmt.Errorf("%w: user %s has no ssh key %s", ErrNotFound, u, fingerprint)
	}
	delete(m.sshKeys, id)
	return k, nil
}

// SortSSHKeys orders keys by fingerprint.
func SortSSHKeys(ks []SSHKey) {
	slices.SortFunc(ks, func(a, b SSHKey) int { return strings.Compare(a.Fingerprint, b.Fingerprint) })
}
