package server

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/meta"
)

// unreachableStore is a store whose cluster went away: folder reads and
// writes fail as a networked store's do.
type unreachableStore struct{ *meta.Memory }

func (unreachableStore) ListFolders(context.Context, meta.FolderFilter) ([]meta.Folder, error) {
	return nil, fmt.Errorf("%w: list folders: etcd at http://127.0.0.1:1 did not answer within 5s", meta.ErrUnavailable)
}

func (unreachableStore) CreateFolder(context.Context, meta.Folder, int) error {
	return fmt.Errorf("%w: create folder: etcd at http://127.0.0.1:1 did not answer within 5s; the change may or may not have been applied", meta.ErrUnavailable)
}

// TestClusterStoreUnreachable: a store call that fails with
// meta.ErrUnavailable is a 503 "unavailable" whose message says the
// cluster store is unreachable.
func TestClusterStoreUnreachable(t *testing.T) {
	ts := startWith(t, "", -1, unreachableStore{meta.NewMemory()}, nil)
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
