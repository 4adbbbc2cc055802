package server

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/internal/cluster"
	"github.com/vfolder/vfolder/meta"
)

func TestNodes(t *testing.T) {
	started := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	nodes := []cluster.Node{
		{ID: "gpu-1", Hostname: "gpu-1.lan", Version: "1.2", Status: cluster.StatusAlive, Self: true, StartedAt: started,
			Sessions: []cluster.NodeSession{{ID: "job-7", Folders: []string{"0123456789abcdef0123456789abcdef"}}}},
		{ID: "gpu-2", Hostname: "gpu-2.lan", Version: "1.2", Status: cluster.StatusStopped, StartedAt: started, StoppedAt: started.Add(time.Hour)},
	}
	ts := startWith(t, "", -1, meta.NewMemory(), nil, func(o *Options) {
		o.Nodes = func(context.Context) ([]cluster.Node, error) { return nodes, nil }
	})
	var got []api.Node
	ts.ok(t, http.MethodGet, "/v1/nodes", nil, &got, http.StatusOK)
	want := []api.Node{
		{ID: "gpu-1", Hostname: "gpu-1.lan", Version: "1.2", Status: api.NodeAlive, Self: true, StartedAt: started,
			Sessions: []api.NodeSession{{ID: "job-7", Folders: []string{"0123456789abcdef0123456789abcdef"}}}},
		{ID: "gpu-2", Hostname: "gpu-2.lan", Version: "1.2", Status: api.NodeStopped, StartedAt: started, StoppedAt: started.Add(time.Hour),
			Sessions: []api.NodeSession{}},
	}
	if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
		t.Errorf("GET /v1/nodes = %+v\nwant %+v", got, want)
	}
	_, body := ts.call(t, http.MethodGet, "/v1/nodes", nil)
	if s := string(body); !contains(s, `"sessions":[]`) || contains(s, `"grants"`) || contains(s, `"stopped_at":"0001`) {
		t.Errorf("body %s: want empty session lists as [], no grants before cluster quota, no zero stop time", s)
	}
	ts.fail(t, http.MethodGet, "/v1/nodes?x=1", nil, http.StatusBadRequest, api.CodeInvalid)

	// Grants of the cluster quota, by node.
	g := api.NodeGrant{Volume: "local", Scope: meta.ScopeID{Kind: meta.KindUser, UUID: "2b1a7c4e5d3f4a8e9c0b1f2e3d4c5b6a"}, Bytes: 4 << 20, Inodes: 64}
	gts := startWith(t, "", -1, meta.NewMemory(), nil, func(o *Options) {
		o.Nodes = func(context.Context) ([]cluster.Node, error) { return nodes, nil }
		o.NodeGrants = func(context.Context) (map[string][]api.NodeGrant, error) {
			return map[string][]api.NodeGrant{"gpu-1": {g}}, nil
		}
	})
	gts.ok(t, http.MethodGet, "/v1/nodes", nil, &got, http.StatusOK)
	if len(got) != 2 || len(got[0].Grants) != 1 || got[0].Grants[0] != g || got[1].Grants != nil {
		t.Errorf("GET /v1/nodes with grants = %+v", got)
	}
	gts = startWith(t, "", -1, meta.NewMemory(), nil, func(o *Options) {
		o.Nodes = func(context.Context) ([]cluster.Node, error) { return nodes, nil }
		o.NodeGrants = func(context.Context) (map[string][]api.NodeGrant, error) {
			return nil, fmt.Errorf("%w: etcd did not answer", meta.ErrUnavailable)
		}
	})
	gts.fail(t, http.MethodGet, "/v1/nodes", nil, http.StatusServiceUnavailable, api.CodeUnavailable)

	// Through the client.
	c := api.NewClient(ts.socket)
	defer c.CloseIdleConnections()
	if ns, err := c.Nodes(context.Background()); err != nil || len(ns) != 2 || !ns[0].Self {
		t.Errorf("client Nodes = %+v, %v", ns, err)
	}

	// The store cannot be reached: 503.
	ts = startWith(t, "", -1, meta.NewMemory(), nil, func(o *Options) {
		o.Nodes = func(context.Context) ([]cluster.Node, error) {
			return nil, fmt.Errorf("%w: etcd at http://127.0.0.1:1 did not answer", meta.ErrUnavailable)
		}
	})
	e := ts.fail(t, http.MethodGet, "/v1/nodes", nil, http.StatusServiceUnavailable, api.CodeUnavailable)
	if !contains(e.Message, "cluster store unreachable") {
		t.Errorf("message %q", e.Message)
	}
	ts = start(t, "", -1)
	ts.fail(t, http.MethodGet, "/v1/nodes", nil, http.StatusServiceUnavailable, api.CodeUnavailable)
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
