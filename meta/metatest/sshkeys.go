package metatest

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/vfolder/vfolder/meta"
)

// SSHKey returns a well-formed key record number n of user (the store
// checks the form only, so the key text need not be a real key).
func SSHKey(n int, user meta.ScopeID) meta.SSHKey {
	sum := sha256.Sum256(fmt.Appendf(nil, "key-%d", n))
	return meta.SSHKey{
		Fingerprint: "SHA256:" + base64.RawStdEncoding.EncodeToString(sum[:]),
		User:        user.UUID,
		Type:        "ssh-ed25519",
		Key:         "ssh-ed25519 " + base64.StdEncoding.EncodeToString(sum[:]),
		Comment:     fmt.Sprintf("key %d", n),
		CreatedAt:   time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	}
}

func fingerprints(ks []meta.SSHKey) []string {
	out := []string{}
	for _, k := range ks {
		out = append(out, k.Fingerprint)
	}
	return out
}

func testSSHKeys(t *testing.T, ctx context.Context, s meta.Store) {
	u1, u2 := User(1), User(2)
	ks, err := s.ListSSHKeys(ctx, u1.UUID)
	wantNoErr(t, "ListSSHKeys of a user without keys", err)
	if ks == nil || len(ks) != 0 {
		t.Fatalf("ListSSHKeys of a user without keys = %#v, want an empty list", ks)
	}
	var mine []meta.SSHKey
	for n := range 3 {
		k := SSHKey(n, u1)
		wantNoErr(t, "PutSSHKey", s.PutSSHKey(ctx, k))
		mine = append(mine, k)
	}
	other := SSHKey(10, u2)
	wantNoErr(t, "PutSSHKey of another user", s.PutSSHKey(ctx, other))

	// A fingerprint belongs to one user: registering it again, for the
	// same user or another, is ErrExists and changes nothing.
	wantErr(t, "PutSSHKey again", s.PutSSHKey(ctx, mine[0]), meta.ErrExists)
	dup := mine[1]
	dup.User = u2.UUID
	wantErr(t, "PutSSHKey of another user's fingerprint", s.PutSSHKey(ctx, dup), meta.ErrExists)

	got, err := s.GetSSHKey(ctx, mine[1].Fingerprint)
	wantNoErr(t, "GetSSHKey", err)
	if got.User != u1.UUID || got.Key != mine[1].Key || got.Comment != mine[1].Comment || got.Type != mine[1].Type || !got.CreatedAt.Equal(mine[1].CreatedAt) {
		t.Errorf("GetSSHKey = %+v, want %+v", got, mine[1])
	}
	meta.SortSSHKeys(mine)
	// Dashed and bare user ids name the same user.
	dashed := u1.UUID[:8] + "-" + u1.UUID[8:12] + "-" + u1.UUID[12:16] + "-" + u1.UUID[16:20] + "-" + u1.UUID[20:]
	ks, err = s.ListSSHKeys(ctx, dashed)
	wantNoErr(t, "ListSSHKeys", err)
	if fmt.Sprint(fingerprints(ks)) != fmt.Sprint(fingerprints(mine)) {
		t.Errorf("ListSSHKeys = %v, want %v", fingerprints(ks), fingerprints(mine))
	}

	// Deleting needs the owner: another user's id is ErrNotFound.
	_, err = s.DeleteSSHKey(ctx, u2.UUID, mine[0].Fingerprint)
	wantErr(t, "DeleteSSHKey by another user", err, meta.ErrNotFound)
	del, err := s.DeleteSSHKey(ctx, u1.UUID, mine[0].Fingerprint)
	wantNoErr(t, "DeleteSSHKey", err)
	if del.Fingerprint != mine[0].Fingerprint || del.User != u1.UUID {
		t.Errorf("DeleteSSHKey returned %+v", del)
	}
	_, err = s.GetSSHKey(ctx, mine[0].Fingerprint)
	wantErr(t, "GetSSHKey after delete", err, meta.ErrNotFound)
	_, err = s.DeleteSSHKey(ctx, u1.UUID, mine[0].Fingerprint)
	wantErr(t, "DeleteSSHKey twice", err, meta.ErrNotFound)
	ks, err = s.ListSSHKeys(ctx, u1.UUID)
	wantNoErr(t, "ListSSHKeys after delete", err)
	if len(ks) != 2 {
		t.Errorf("ListSSHKeys after delete = %v, want 2 keys", fingerprints(ks))
	}
	// A deleted fingerprint can be registered again, by anyone.
	again := mine[0]
	again.User = u2.UUID
	wantNoErr(t, "PutSSHKey of a deleted fingerprint", s.PutSSHKey(ctx, again))
	ks, err = s.ListSSHKeys(ctx, u2.UUID)
	wantNoErr(t, "ListSSHKeys of user 2", err)
	if len(ks) != 2 {
		t.Errorf("ListSSHKeys of user 2 = %v, want 2 keys", fingerprints(ks))
	}

	// Copies: changing a returned record changes nothing stored.
	ks[0].Comment = "changed"
	ks2, _ := s.ListSSHKeys(ctx, u2.UUID)
	if ks2[0].Comment == "changed" {
		t.Error("ListSSHKeys returned the stored record, not a copy")
	}
}

func testSSHKeyValidation(t *testing.T, ctx context.Context, s meta.Store) {
	good := SSHKey(1, User(1))
	bad := map[string]func(k *meta.SSHKey){
		"no fingerprint":         func(k *meta.SSHKey) { k.Fingerprint = "" },
		"md5 fingerprint":        func(k *meta.SSHKey) { k.Fingerprint = "MD5:aa:bb" },
		"short fingerprint":      func(k *meta.SSHKey) { k.Fingerprint = "SHA256:abc" },
		"dashed user":            func(k *meta.SSHKey) { k.User = "00000000-0000-0000-0000-000000001001" },
		"no user":                func(k *meta.SSHKey) { k.User = "" },
		"no type":                func(k *meta.SSHKey) { k.Type = "" },
		"key of another type":    func(k *meta.SSHKey) { k.Key = "ssh-rsa AAAA" },
		"key with a newline":     func(k *meta.SSHKey) { k.Key += "\nssh-ed25519 AAAA" },
		"comment with a control": func(k *meta.SSHKey) { k.Comment = "a\x00b" },
	}
	for name, mut := range bad {
		k := good
		mut(&k)
		if err := s.PutSSHKey(ctx, k); !errors.Is(err, meta.ErrInvalid) {
			t.Errorf("PutSSHKey with %s: %v, want ErrInvalid", name, err)
		}
	}
	if _, err := s.ListSSHKeys(ctx, "nobody"); !errors.Is(err, meta.ErrInvalid) {
		t.Errorf("ListSSHKeys of a malformed user: %v, want ErrInvalid", err)
	}
	if _, err := s.GetSSHKey(ctx, "SHA256:"); !errors.Is(err, meta.ErrInvalid) {
		t.Errorf("GetSSHKey of a malformed fingerprint: %v, want ErrInvalid", err)
	}
	if _, err := s.DeleteSSHKey(ctx, User(1).UUID, "nope"); !errors.Is(err, meta.ErrInvalid) {
		t.Errorf("DeleteSSHKey of a malformed fingerprint: %v, want ErrInvalid", err)
	}
	ks, err := s.ListSSHKeys(ctx, User(1).UUID)
	wantNoErr(t, "ListSSHKeys", err)
	if len(ks) != 0 {
		t.Errorf("refused keys were stored: %v", fingerprints(ks))
	}
}

// testRaceSSHKeys registers one fingerprint for many users at once:
// exactly one wins.
func testRaceSSHKeys(t *testing.T, ctx context.Context, s meta.Store) {
	errs := race(Races, func(i int) error { return s.PutSSHKey(ctx, SSHKey(7, User(i))) })
	if ok, matched := tally(t, errs, meta.ErrExists); ok != 1 || matched != Races-1 {
		t.Fatalf("racing PutSSHKey of one fingerprint: %d succeeded, %d ErrExists, want 1 and %d", ok, matched, Races-1)
	}
	k, err := s.GetSSHKey(ctx, SSHKey(7, User(0)).Fingerprint)
	wantNoErr(t, "GetSSHKey", err)
	ks, err := s.ListSSHKeys(ctx, k.User)
	wantNoErr(t, "ListSSHKeys of the winner", err)
	if len(ks) != 1 {
		t.Errorf("the winner lists %d keys, want 1", len(ks))
	}
}

// testSSHKeysClosed: after Close every key method fails with ErrClosed.
func testSSHKeysClosed(t *testing.T, ctx context.Context, s meta.Store) {
	k := SSHKey(1, User(1))
	wantNoErr(t, "PutSSHKey", s.PutSSHKey(ctx, k))
	wantNoErr(t, "Close", s.Close())
	wantErr(t, "PutSSHKey after Close", s.PutSSHKey(ctx, SSHKey(2, User(1))), meta.ErrClosed)
	_, err := s.GetSSHKey(ctx, k.Fingerprint)
	wantErr(t, "GetSSHKey after Close", err, meta.ErrClosed)
	_, err = s.ListSSHKeys(ctx, k.User)
	wantErr(t, "ListSSHKeys after Close", err, meta.ErrClosed)
	_, err = s.DeleteSSHKey(ctx, k.User, k.Fingerprint)
	wantErr(t, "DeleteSSHKey after Close", err, meta.ErrClosed)
}
