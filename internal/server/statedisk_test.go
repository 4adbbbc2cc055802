package server

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/internal/statedisk"
	"github.com/vfolder/vfolder/meta"
)

// While the state disk is short, requests that change metadata get 507
// state-disk-full with the guard's message; reads and unpublish go on.
func TestStateDiskFullRefusesChanges(t *testing.T) {
	var full atomic.Bool
	gate := func() error {
		if full.Load() {
			return &statedisk.FullError{Dir: "/var/lib/vfolder", Avail: 1 << 20, Reserve: 64 << 20}
		}
		return nil
	}
	ts := startWith(t, "", -1, meta.NewMemory(), nil, func(o *Options) { o.StateDisk = gate })
	owner := "user:2b1a7c4e5d3f4a8e9c0b1f2e3d4c5b6a"
	create := map[string]any{"name": "a", "volume": "local", "owner": owner}
	if code, body := ts.call(t, "POST", "/v1/folders", create); code != http.StatusCreated {
		t.Fatalf("create with room: %d %s", code, body)
	}
	full.Store(true)
	code, body := ts.call(t, "POST", "/v1/folders", map[string]any{"name": "b", "volume": "local", "owner": owner})
	var e api.Error
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatal(err)
	}
	if code != http.StatusInsufficientStorage || e.Code != api.CodeStateFull || !strings.Contains(e.Message, "state disk full: /var/lib/vfolder") {
		t.Errorf("create while full: %d %+v; want 507 state-disk-full with the guard's message", code, e)
	}
	if code, body := ts.call(t, "PUT", "/v1/quota-scopes/local/"+owner, map[string]any{"limit_bytes": 5}); code != http.StatusInsufficientStorage {
		t.Errorf("set quota while full: %d %s; want 507", code, body)
	}
	if code, body := ts.call(t, "GET", "/v1/folders?owner="+owner, nil); code != http.StatusOK {
		t.Errorf("list while full: %d %s", code, body)
	}
	if code, _ := ts.call(t, "POST", "/v1/sessions/s1/unpublish", nil); code == http.StatusInsufficientStorage {
		t.Errorf("unpublish refused while full")
	}
	full.Store(false)
	if code, body := ts.call(t, "POST", "/v1/folders", map[string]any{"name": "b", "volume": "local", "owner": owner}); code != http.StatusCreated {
		t.Errorf("create once space returned: %d %s", code, body)
	}
}
