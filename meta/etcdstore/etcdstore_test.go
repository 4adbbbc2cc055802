package etcdstore_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/vfolder/vfolder/internal/testutil/etcdtest"
	"github.com/vfolder/vfolder/meta"
	"github.com/vfolder/vfolder/meta/etcdstore"
	"github.com/vfolder/vfolder/meta/metatest"
)

// prefixes hands every store of a test binary its own key prefix, so that
// the stores of one etcd server start empty and stay independent.
var prefixes atomic.Int64

func newPrefix() string { return fmt.Sprintf("/test-%d/", prefixes.Add(1)) }

func testLogger(t testing.TB) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
}

// open opens a store on srv under prefix. The conformance suite races 16
// goroutines on one key on a shared, loaded machine: the request bound is
// generous there; the fault tests set their own.
func open(t testing.TB, srv *etcdtest.Server, prefix string, timeout time.Duration) *etcdstore.Store {
	t.Helper()
	if timeout == 0 {
		timeout = 60 * time.Second
	}
	s, err := etcdstore.Open(context.Background(), etcdstore.Options{
		Endpoints:      srv.Endpoints(),
		Prefix:         prefix,
		RequestTimeout: timeout,
		Log:            testLogger(t),
	})
	if err != nil {
		t.Fatalf("Open(%s, %s): %v", srv.Endpoint(), prefix, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestEtcdStore(t *testing.T) {
	srv := etcdtest.Start(t)
	metatest.RunStoreSuite(t, func(t *testing.T) meta.Store { return open(t, srv, newPrefix(), 0) })
}

// TestEtcdPersistence runs the persistence suite with "a directory" being
// a prefix on one etcd server: a reopened store is a new client on the
// same keys.
func TestEtcdPersistence(t *testing.T) {
	srv := etcdtest.Start(t)
	metatest.RunPersistenceSuite(t, func(t *testing.T, dir string) meta.Store {
		sum := sha256.Sum256([]byte(dir))
		return open(t, srv, "/persist-"+hex.EncodeToString(sum[:8])+"/", 0)
	})
}
