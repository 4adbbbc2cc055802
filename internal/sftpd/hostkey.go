package sftpd

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/crypto/ssh"
)

// LoadHostKey reads the host key at path (an OpenSSH or PEM private key,
// unencrypted, readable by its owner only), or, when there is no file,
// makes a new ed25519 key and writes it there (mode 0600, the parent
// created 0700 if missing). created tells which happened.
func LoadHostKey(path string) (signer ssh.Signer, created bool, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return generateHostKey(path)
	}
	if err != nil {
		return nil, false, fmt.Errorf("host key %s: %w", path, err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, false, fmt.Errorf("host key %s: %w", path, err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, false, fmt.Errorf("host key %s: mode %04o lets others read it: chmod 600 it", path, st.Mode().Perm())
	}
	signer, err = ssh.ParsePrivateKey(data)
	if err != nil {
		return nil, false, fmt.Errorf("host key %s: %w", path, err)
	}
	return signer, false, nil
}

func generateHostKey(path string) (ssh.Signer, bool, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, false, err
	}
	block, err := ssh.MarshalPrivateKey(priv, "vfolderd host key")
	if err != nil {
		return nil, false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, false, fmt.Errorf("host key %s: %w", path, err)
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) { // a start that died while writing
		_ = os.Remove(tmp)
		f, err = os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	}
	if err != nil {
		return nil, false, fmt.Errorf("host key %s: %w", path, err)
	}
	_, werr := f.Write(pem.EncodeToMemory(block))
	if serr := f.Sync(); werr == nil {
		werr = serr
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		// A link, not a rename: a key another start wrote meanwhile wins.
		werr = os.Link(tmp, path)
	}
	_ = os.Remove(tmp)
	if errors.Is(werr, fs.ErrExist) {
		return LoadHostKey(path)
	}
	if werr != nil {
		return nil, false, fmt.Errorf("host key %s: %w", path, werr)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, false, err
	}
	return signer, true, nil
}
