package meta_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/vfolder/vfolder/meta"
	"github.com/vfolder/vfolder/meta/metatest"
)

// TestBadgerVerifySSHKeys: Verify notices a key whose user index entry is
// missing, and an index entry without its key.
func TestBadgerVerifySSHKeys(t *testing.T) {
	b := openBadger(t, t.TempDir())
	defer b.Close()
	ctx := context.Background()
	k := metatest.SSHKey(1, metatest.User(1))
	if err := b.PutSSHKey(ctx, k); err != nil {
		t.Fatal(err)
	}
	if err := b.Verify(ctx); err != nil {
		t.Fatalf("Verify of a sound store: %v", err)
	}
	id, _ := meta.SSHKeyID(k.Fingerprint)
	index := []byte("m/sshkeyof/" + k.User + "/" + id)
	if err := b.DB().Update(func(txn *badger.Txn) error { return txn.Delete(index) }); err != nil {
		t.Fatal(err)
	}
	if err := b.Verify(ctx); !errors.Is(err, meta.ErrCorrupt) || !strings.Contains(err.Error(), "ssh key") {
		t.Errorf("Verify without the index entry: %v", err)
	}
	err := b.DB().Update(func(txn *badger.Txn) error {
		if err := txn.Set(index, nil); err != nil {
			return err
		}
		return txn.Delete([]byte("m/sshkey/" + id))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Verify(ctx); !errors.Is(err, meta.ErrCorrupt) || !strings.Contains(err.Error(), "ssh key") {
		t.Errorf("Verify with an index entry and no key: %v", err)
	}
}
