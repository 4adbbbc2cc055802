package service

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/meta"
)

func newSSHKey(t testing.TB) (ssh.PublicKey, string) {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return sp, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp))) + " alice@laptop\n"
}

func TestSSHKeys(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	pub, line := newSSHKey(t)
	other, _ := newSSHKey(t)
	dashed := "00000000-0000-4000-8000-00000000a11c"
	k, err := e.svc.AddSSHKey(ctx, dashed, api.AddSSHKeyRequest{Key: line})
	if err != nil {
		t.Fatal(err)
	}
	if k.User != strings.ReplaceAll(dashed, "-", "") || k.Fingerprint != ssh.FingerprintSHA256(pub) || k.Comment != "alice@laptop" || k.Type != "ssh-ed25519" || len(k.ID) != 64 {
		t.Errorf("added %+v", k)
	}
	// One key, one user.
	_, err = e.svc.AddSSHKey(ctx, alice.UUID, api.AddSSHKeyRequest{Key: line})
	wantCode(t, err, api.CodeExists)

	u, rec, err := e.svc.CheckSSHLogin(ctx, strings.ToUpper(dashed), pub)
	if err != nil || u != k.User || rec.Fingerprint != k.Fingerprint {
		t.Errorf("CheckSSHLogin = %q, %+v, %v", u, rec, err)
	}
	for name, try := range map[string]func() error{
		"another key":    func() error { _, _, err := e.svc.CheckSSHLogin(ctx, dashed, other); return err },
		"another user":   func() error { _, _, err := e.svc.CheckSSHLogin(ctx, alice.UUID, pub); return err },
		"not a uuid":     func() error { _, _, err := e.svc.CheckSSHLogin(ctx, "root", pub); return err },
		"empty username": func() error { _, _, err := e.svc.CheckSSHLogin(ctx, "", pub); return err },
	} {
		if err := try(); !errors.Is(err, ErrKeyRefused) {
			t.Errorf("login with %s: %v, want ErrKeyRefused", name, err)
		}
	}

	ks, err := e.svc.SSHKeys(ctx, dashed)
	if err != nil || len(ks) != 1 || ks[0] != k {
		t.Errorf("SSHKeys = %+v, %v", ks, err)
	}
	// Removal by fingerprint or by id; then the login is refused.
	_, err = e.svc.RemoveSSHKey(ctx, alice.UUID, k.ID)
	wantCode(t, err, api.CodeNotFound)
	_, err = e.svc.RemoveSSHKey(ctx, dashed, "nonsense")
	wantCode(t, err, api.CodeInvalid)
	if _, err := e.svc.RemoveSSHKey(ctx, dashed, k.Fingerprint); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.svc.CheckSSHLogin(ctx, dashed, pub); !errors.Is(err, ErrKeyRefused) {
		t.Errorf("login after removal: %v", err)
	}
	if _, err := e.svc.AddSSHKey(ctx, dashed, api.AddSSHKeyRequest{Key: line, Comment: "work"}); err != nil {
		t.Fatal(err)
	}
	got, err := e.svc.RemoveSSHKey(ctx, dashed, k.ID)
	if err != nil || got.Comment != "work" {
		t.Errorf("RemoveSSHKey by id = %+v, %v", got, err)
	}
}

func TestParseSSHKeyRefuses(t *testing.T) {
	_, line := newSSHKey(t)
	_, line2 := newSSHKey(t)
	u := alice.UUID
	for name, text := range map[string]string{
		"empty":        "  \n",
		"garbage":      "hello world",
		"two keys":     line + line2,
		"options":      `command="/bin/sh" ` + line,
		"private key":  "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
		"huge":         strings.Repeat("a", meta.MaxSSHKeyLen+1),
		"bad base64":   "ssh-ed25519 AAAA%%%% x",
		"control char": strings.TrimSpace(line) + "\x00evil",
	} {
		if _, err := ParseSSHKey(u, text, ""); !errors.Is(err, meta.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	// Comments and surrounding blank lines are fine.
	if k, err := ParseSSHKey(u, "\n# my key\n"+line+"\n", ""); err != nil || k.Comment != "alice@laptop" {
		t.Errorf("a key after a comment line: %+v, %v", k, err)
	}
}

// FuzzParseSSHKey: whatever the text, the parser never panics, and what it
// accepts is a well-formed record whose key parses back to the same
// fingerprint.
func FuzzParseSSHKey(f *testing.F) {
	_, line := newSSHKey(f)
	f.Add(line)
	f.Add(`from="10.0.0.1" ` + line)
	f.Add("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC x")
	f.Add("ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTY=")
	f.Add("")
	f.Add("\x00\xff")
	f.Fuzz(func(t *testing.T, text string) {
		k, err := ParseSSHKey(alice.UUID, text, "")
		if err != nil {
			if !errors.Is(err, meta.ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if err := meta.CheckSSHKey(k); err != nil {
			t.Fatalf("accepted a record the store refuses: %v", err)
		}
		pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(k.Key))
		if err != nil || ssh.FingerprintSHA256(pub) != k.Fingerprint {
			t.Fatalf("stored key %q does not parse back to %s: %v", k.Key, k.Fingerprint, err)
		}
	})
}
