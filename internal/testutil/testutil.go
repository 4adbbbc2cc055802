// Package testutil holds small helpers that tests of several packages
// share. It is imported by tests (and test-support packages such as
// e2e/oci) only, never by the daemon or the CLI.
package testutil

import (
	"bytes"
	"sync"
	"testing"

	"github.com/rs/zerolog"

	"github.com/vfolder/vfolder/meta"
	"github.com/vfolder/vfolder/quota"
)

// OpenLedger opens the badger store in dir and the quota ledger in its
// database, as vfolderd does (without crash recovery looking at volumes);
// it fails t when either cannot be opened. The caller closes the ledger,
// then the store.
func OpenLedger(t testing.TB, dir string) (*meta.Badger, *quota.Manager) {
	t.Helper()
	store, err := meta.OpenBadger(dir, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ledger, err := quota.Open(store.DB(), zerolog.Nop(), quota.Options{})
	if err != nil {
		store.Close()
		t.Fatal(err)
	}
	return store, ledger
}

// SyncBuffer is a bytes.Buffer that may be written by one goroutine (a
// logger, a child process's output) while another reads it. The zero
// value is ready to use.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
