package service

// SSH public keys of users, for the SFTP endpoint (package sftpd). Keys
// live in the metadata store, so every node of a cluster sees a key as
// soon as it is added and stops accepting it as soon as it is removed;
// nothing is cached: a login looks its key up in the store.
//
// Keys are parsed with golang.org/x/crypto/ssh.ParseAuthorizedKey: one
// key per call, in authorized_keys form without options (a key option
// such as command= or from= has no meaning for a file transfer login and
// is refused rather than silently dropped). Certificates are refused.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/meta"
)

// ErrKeyRefused is a login key that is not registered for the user.
var ErrKeyRefused = errors.New("ssh key not registered for this user")

// ParseSSHKey parses one public key in authorized_keys form and returns
// the record to store for user (canonical 32-hex). comment, when not
// empty, replaces the line's comment. Errors wrap meta.ErrInvalid.
func ParseSSHKey(user, text, comment string) (meta.SSHKey, error) {
	in := []byte(strings.TrimSpace(text))
	if len(in) == 0 {
		return meta.SSHKey{}, fmt.Errorf("%w: no public key given", meta.ErrInvalid)
	}
	if len(in) > meta.MaxSSHKeyLen {
		return meta.SSHKey{}, fmt.Errorf("%w: the key is %d bytes, more than %d", meta.ErrInvalid, len(in), meta.MaxSSHKeyLen)
	}
	pub, cmt, opts, rest, err := ssh.ParseAuthorizedKey(in)
	if err != nil {
		return meta.SSHKey{}, fmt.Errorf("%w: not a public key in authorized_keys form (\"ssh-ed25519 AAAA... comment\"): %v", meta.ErrInvalid, err)
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return meta.SSHKey{}, fmt.Errorf("%w: more than one key given: add one key at a time", meta.ErrInvalid)
	}
	if len(opts) > 0 {
		return meta.SSHKey{}, fmt.Errorf("%w: key options (%s) are not supported: give the key alone", meta.ErrInvalid, strings.Join(opts, ","))
	}
	if _, ok := pub.(*ssh.Certificate); ok {
		return meta.SSHKey{}, fmt.Errorf("%w: certificates are not supported: give a plain public key", meta.ErrInvalid)
	}
	if comment != "" {
		cmt = comment
	}
	k := meta.SSHKey{
		Fingerprint: ssh.FingerprintSHA256(pub),
		User:        user,
		Type:        pub.Type(),
		Key:         strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub))),
		Comment:     cmt,
		CreatedAt:   time.Now().UTC().Truncate(time.Second),
	}
	if err := meta.CheckSSHKey(k); err != nil {
		return meta.SSHKey{}, err
	}
	return k, nil
}

func sshKeyOut(k meta.SSHKey) api.SSHKey {
	id, _ := meta.SSHKeyID(k.Fingerprint)
	return api.SSHKey{ID: id, Fingerprint: k.Fingerprint, User: k.User, Type: k.Type, Key: k.Key, Comment: k.Comment, CreatedAt: k.CreatedAt}
}

// AddSSHKey registers a public key for user.
func (s *Service) AddSSHKey(ctx context.Context, user string, req api.AddSSHKeyRequest) (api.SSHKey, error) {
	u, err := meta.ParseUUID(user)
	if err != nil {
		return api.SSHKey{}, fmt.Errorf("user: %w", err)
	}
	k, err := ParseSSHKey(u, req.Key, req.Comment)
	if err != nil {
		return api.SSHKey{}, err
	}
	if err := s.store.PutSSHKey(ctx, k); err != nil {
		return api.SSHKey{}, err
	}
	s.log.Info().Str("user", u).Str("fingerprint", k.Fingerprint).Msg("ssh key added")
	return sshKeyOut(k), nil
}

// SSHKeys lists a user's keys, ordered by fingerprint.
func (s *Service) SSHKeys(ctx context.Context, user string) ([]api.SSHKey, error) {
	ks, err := s.store.ListSSHKeys(ctx, user)
	if err != nil {
		return nil, err
	}
	out := make([]api.SSHKey, 0, len(ks))
	for _, k := range ks {
		out = append(out, sshKeyOut(k))
	}
	return out, nil
}

// RemoveSSHKey removes a user's key, named by its ID (the hex of the
// fingerprint's hash) or its fingerprint ("SHA256:...").
func (s *Service) RemoveSSHKey(ctx context.Context, user, key string) (api.SSHKey, error) {
	fp := key
	if !strings.HasPrefix(key, "SHA256:") {
		fp = ""
		if b, err := hex.DecodeString(key); err == nil && len(b) == 32 {
			fp = "SHA256:" + rawB64(b)
		}
		if fp == "" {
			return api.SSHKey{}, fmt.Errorf("%w: key %q: want its id (64 hex digits) or its fingerprint (SHA256:...)", meta.ErrInvalid, key)
		}
	}
	k, err := s.store.DeleteSSHKey(ctx, user, fp)
	if err != nil {
		return api.SSHKey{}, err
	}
	s.log.Info().Str("user", k.User).Str("fingerprint", k.Fingerprint).Msg("ssh key removed")
	return sshKeyOut(k), nil
}

// CheckSSHLogin tells whether pub is a key registered for user (a UUID,
// dashed or 32-hex): it returns the user's canonical id and the key's
// record, or an error wrapping ErrKeyRefused (or the store's error when
// the store cannot answer).
func (s *Service) CheckSSHLogin(ctx context.Context, user string, pub ssh.PublicKey) (string, meta.SSHKey, error) {
	u, err := meta.ParseUUID(user)
	if err != nil {
		return "", meta.SSHKey{}, fmt.Errorf("%w: login name %q is not a user UUID", ErrKeyRefused, user)
	}
	fp := ssh.FingerprintSHA256(pub)
	k, err := s.store.GetSSHKey(ctx, fp)
	if errors.Is(err, meta.ErrNotFound) {
		return "", meta.SSHKey{}, fmt.Errorf("%w: %s (user %s)", ErrKeyRefused, fp, u)
	}
	if err != nil {
		return "", meta.SSHKey{}, err
	}
	// Compare the whole key, not only its hash.
	if k.User != u || k.Key != strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub))) {
		return "", meta.SSHKey{}, fmt.Errorf("%w: %s (user %s)", ErrKeyRefused, fp, u)
	}
	return u, k, nil
}

func rawB64(b []byte) string { return base64.RawStdEncoding.EncodeToString(b) }
