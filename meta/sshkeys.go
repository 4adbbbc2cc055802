package meta

// SSH public keys registered for users (the SFTP endpoint's logins).
//
// A key is stored under its SHA-256 fingerprint, and a fingerprint
// belongs to at most one user: a login names the user (the SSH username)
// and presents a key, and the key must be that user's. The store keeps
// the key as its authorized_keys line; it checks the record's form only
// (the fingerprint's shape, the user id, sizes), not the key's
// cryptography: parsing keys is the service's job (golang.org/x/crypto/ssh
// stays out of meta).

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
	"unicode"
)

// Limits of an SSHKey record.
const (
	MaxSSHKeyLen     = 16 << 10 // the authorized_keys text of one key
	MaxSSHCommentLen = 256
)

// SSHKey is one public key registered for a user.
type SSHKey struct {
	// Fingerprint is "SHA256:" followed by the unpadded standard base64
	// of the SHA-256 of the key's wire form (what ssh-keygen -l prints).
	Fingerprint string `json:"fingerprint"`
	// User is the user's UUID (32 lowercase hex digits).
	User string `json:"user"`
	// Type is the key's algorithm ("ssh-ed25519", "ssh-rsa", ...).
	Type string `json:"type"`
	// Key is the key in authorized_keys form without options or comment:
	// "<type> <base64>".
	Key string `json:"key"`
	// Comment is the comment the key was registered with, if any.
	Comment   string    `json:"comment,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// SSHKeyID is the hex form of a fingerprint's hash, used in store keys
// (base64 may hold '/'). It fails with ErrInvalid for a malformed
// fingerprint.
func SSHKeyID(fingerprint string) (string, error) {
	b64, ok := strings.CutPrefix(fingerprint, "SHA256:")
	if !ok {
		return "", fmt.Errorf("%w: fingerprint %q: want SHA256:<base64>", ErrInvalid, fingerprint)
	}
	sum, err := base64.RawStdEncoding.Strict().DecodeString(b64)
	if err != nil || len(sum) != 32 {
		return "", fmt.Errorf("%w: fingerprint %q: want SHA256: and 43 base64 digits", ErrInvalid, fingerprint)
	}
	return hex.EncodeToString(sum), nil
}

// CheckSSHKey checks the form of a record (stores call it on every write).
func CheckSSHKey(k SSHKey) error {
	if _, err := SSHKeyID(k.Fingerprint); err != nil {
		return err
	}
	if u, err := ParseUUID(k.User); err != nil || u != k.User {
		return fmt.Errorf("%w: ssh key user %q: want 32 lowercase hex digits", ErrInvalid, k.User)
	}
	if k.Type == "" || len(k.Type) > 64 || strings.ContainsFunc(k.Type, func(r rune) bool { return r <= ' ' || r > '~' }) {
		return fmt.Errorf("%w: ssh key type %q", ErrInvalid, k.Type)
	}
	if !strings.HasPrefix(k.Key, k.Type+" ") || len(k.Key) > MaxSSHKeyLen || strings.ContainsAny(k.Key, "\r\n") {
		return fmt.Errorf("%w: ssh key of %s: want \"<type> <base64>\" of at most %d bytes", ErrInvalid, k.Fingerprint, MaxSSHKeyLen)
	}
	if len(k.Comment) > MaxSSHCommentLen || strings.ContainsFunc(k.Comment, unicode.IsControl) {
		return fmt.Errorf("%w: ssh key comment: at most %d characters, no control characters", ErrInvalid, MaxSSHCommentLen)
	}
	return nil
}

// ParseSSHKeyArgs checks the user and fingerprint arguments of the key
// methods; it returns the canonical user and the key id (SSHKeyID).
func ParseSSHKeyArgs(user, fingerprint string) (string, string, error) {
	u, err := ParseUUID(user)
	if err != nil {
		return "", "", fmt.Errorf("%w: user %q", ErrInvalid, user)
	}
	id, err := SSHKeyID(fingerprint)
	if err != nil {
		return "", "", err
	}
	return u, id, nil
}
