package server

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/meta"
)

// unreachableStore is a store whose cluster goes away once down is set:
// folder reads and writes then fail as a networked store's do.
type unreachableStore struct {
	*meta.Memory
	down *atomic.Bool
}

func (s unreachableStore) ListFolders(ctx context.Context, f meta.FolderFilter) ([]meta.Folder, error) {
	if !s.down.Load() {
		return s.Memory.ListFolders(ctx, f)
	}
	return nil, fmt.Errorf("%w: list folders: etcd at http://127.0.0.1:1 did not answer within 5s", meta.ErrUnavailable)
}

func (s unreachableStore) CreateFolder(ctx context.Context, f meta.Folder, max int) error {
	if !s.down.Load() {
		return s.Memory.CreateFolder(ctx, f, max)
	}
	return fmt.Errorf("%w: create folder: etcd at http://127.0.0.1:1 did not answer within 5s; the change may or may not have been applied", meta.ErrUnavailable)
}

// TestClusterStoreUnreachable: a store call that fails with
// meta.ErrUnavailable is a 503 "unavailable" whose message says the
// cluster store is unreachable.
func TestClusterStoreUnreachable(t *testing.T) {
	down := new(atomic.Bool)
	ts := startWith(t, "", -1, unreachableStore{meta.NewMemory(), down}, nil)
	down.Store(true) // after the volume was attached
	for _, c := range []struct {
		method, path string
		body         any
	}{
		{"GET", "/v1/folders?owner=" + alice, nil},
		{"POST", "/v1/folders", api.CreateFolderRequest{Name: "data", Volume: "local", Owner: mustScope(t, alice)}},
	} {
		e := ts.fail(t, c.method, c.path, c.body, 503, api.CodeUnavailable)
		if !strings.Contains(e.Message, "cluster store unreachable") {
			t.Errorf("%s %s: message %q does not say the cluster store is unreachable", c.method, c.path, e.Message)
		}
	}
}
