package api

// SSH keys for the SFTP endpoint (see README "SFTP"):
//
//	GET    /v1/users/{user}/ssh-keys            -> []SSHKey
//	POST   /v1/users/{user}/ssh-keys  AddSSHKeyRequest -> SSHKey (201)
//	DELETE /v1/users/{user}/ssh-keys/{key-id}   -> SSHKey (the removed one)
//
// {user} is a UUID (dashed or 32-hex). {key-id} is the key's ID: the hex
// form of its SHA-256 fingerprint (a fingerprint's base64 may hold '/').
// A key (a fingerprint) belongs to at most one user: adding a key that is
// registered already answers 409. The SSH login name of a user is the
// user's UUID.

import "time"

// SSHKey is a registered public key.
type SSHKey struct {
	// ID is the hex form of the SHA-256 fingerprint.
	ID string `json:"id"`
	// Fingerprint is what `ssh-keygen -l` prints: "SHA256:<base64>".
	Fingerprint string `json:"fingerprint"`
	User        string `json:"user"`
	Type        string `json:"type"`
	// Key is the public key in authorized_keys form ("<type> <base64>").
	Key       string    `json:"key"`
	Comment   string    `json:"comment,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// AddSSHKeyRequest registers one public key given in authorized_keys form
// (one line; "<type> <base64> [comment]", without options). Comment, when
// set, replaces the line's own comment.
type AddSSHKeyRequest struct {
	Key     string `json:"key"`
	Comment string `json:"comment,omitempty"`
}
