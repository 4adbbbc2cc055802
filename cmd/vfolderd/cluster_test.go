package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/internal/config"
	"github.com/vfolder/vfolder/internal/testutil/etcdtest"
)

// TestClusterFlags checks the cluster options through flags, environment
// and file, and that a bad one is refused naming it.
func TestClusterFlags(t *testing.T) {
	dir := t.TempDir()
	vol := filepath.Join(dir, "vol")
	if err := os.Mkdir(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "vfolderd.toml")
	text := fmt.Sprintf("state_dir = %q\n[volumes.a]\npath = %q\n[cluster]\nprefix = \"/from-file/\"\nnode_id = \"file-node\"\nlease_ttl = 20\n",
		filepath.Join(dir, "state"), vol)
	if err := os.WriteFile(cfgPath, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("VFOLDER_CONFIG", cfgPath)
	t.Setenv("VFOLDER_ETCD_ENDPOINTS", "http://10.0.0.1:2379,http://10.0.0.2:2379")
	t.Setenv("VFOLDER_NODE_ID", "env-node")

	var got *config.Config
	app := newApp(func(_ context.Context, cfg *config.Config) error { got = cfg; return nil })
	if err := app.Run([]string{"vfolderd", "--node-id", "gpu-3", "--etcd-timeout", "2s", "--lease-ttl", "4s"}); err != nil {
		t.Fatal(err)
	}
	c := got.Cluster
	if !c.Enabled() || strings.Join(c.EtcdEndpoints, " ") != "http://10.0.0.1:2379 http://10.0.0.2:2379" {
		t.Errorf("endpoints = %q", c.EtcdEndpoints)
	}
	if c.Node() != "gpu-3" || c.KeyPrefix() != "/from-file/" || c.Timeout() != 2*time.Second || c.TTL() != 4*time.Second {
		t.Errorf("node %q prefix %q timeout %v ttl %v", c.Node(), c.KeyPrefix(), c.Timeout(), c.TTL())
	}
	if err := app.Run([]string{"vfolderd", "--etcd-endpoints", "http://h:1", "--etcd-endpoints", "http://i:2"}); err != nil {
		t.Fatal(err)
	}
	if c := got.Cluster; strings.Join(c.EtcdEndpoints, " ") != "http://h:1 http://i:2" || c.Node() != "env-node" || c.TTL() != 20*time.Second {
		t.Errorf("repeated --etcd-endpoints: %q, node %q, ttl %v", c.EtcdEndpoints, c.Node(), c.TTL())
	}
	for _, args := range [][]string{
		{"--lease-ttl", "soon"},
		{"--node-id", "a/b"},
		{"--etcd-cert", "/nonexistent.pem"},
		{"--etcd-endpoints", "ftp://x:1"},
	} {
		err := newApp(func(context.Context, *config.Config) error { return nil }).Run(append([]string{"vfolderd"}, args...))
		if !errors.Is(err, config.ErrInvalid) {
			t.Errorf("%v: %v; want a configuration error", args, err)
		}
	}
}

// TestDaemonClusterUnreachable: a node whose etcd does not answer exits
// 1 within its request bound, saying so, and touches nothing.
func TestDaemonClusterUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	s := newSetup(t, fmt.Sprintf("[cluster]\netcd_endpoints = [\"http://%s\"]\nrequest_timeout = \"1s\"\nnode_id = \"n1\"\n", addr))
	start := time.Now()
	d := startDaemon(t, s.cfg)
	code := d.wait(t, 60*time.Second)
	if code != 1 || !strings.Contains(d.stderr.String(), "cluster store unreachable") {
		t.Errorf("exit %d, stderr %q; want 1 and \"cluster store unreachable\"", code, d.stderr)
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("giving up took %v with a 1s bound", took)
	}
	if _, err := os.Lstat(s.socket); !os.IsNotExist(err) {
		t.Errorf("a refused start created the socket: %v", err)
	}
	if _, err := os.Stat(filepath.Join(s.vol, "version.txt")); !os.IsNotExist(err) {
		t.Errorf("a refused start initialised the volume: %v", err)
	}
}

// TestDaemonClusterNodes: two daemons on one etcd (without FUSE) see each
// other in GET /v1/nodes, share folders, keep their ledgers in
// state_dir/ledger and not state_dir/meta; a stopped one shows stopped.
func TestDaemonClusterNodes(t *testing.T) {
	srv := etcdtest.Start(t)
	shared := t.TempDir()
	conf := func(id string) string {
		return fmt.Sprintf("fuse = false\n[cluster]\netcd_endpoints = [%q]\nnode_id = %q\nlease_ttl = 2\n", srv.Endpoint(), id)
	}
	a, b := newSetup(t, conf("a")), newSetup(t, conf("b"))
	for _, s := range []setup{a, b} {
		text, err := os.ReadFile(s.cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(s.cfg, []byte(strings.Replace(string(text), s.vol, shared, 1)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	da := startDaemon(t, a.cfg)
	waitHealthy(t, da, a.socket)
	db := startDaemon(t, b.cfg)
	waitHealthy(t, db, b.socket)

	ca, cb := api.NewClient(a.socket), api.NewClient(b.socket)
	defer ca.CloseIdleConnections()
	defer cb.CloseIdleConnections()
	ctx := context.Background()
	owner := api.CreateFolderRequest{Name: "data", Volume: "local"}
	if err := json.Unmarshal([]byte(`"user:2b1a7c4e5d3f4a8e9c0b1f2e3d4c5b6a"`), &owner.Owner); err != nil {
		t.Fatal(err)
	}
	f, err := ca.CreateFolder(ctx, owner)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := cb.Folder(ctx, f.ID, owner.Owner); err != nil || got.Name != "data" {
		t.Errorf("node b reads %+v, %v", got, err)
	}
	if _, err := cb.CreateFolder(ctx, owner); err == nil || !strings.Contains(err.Error(), "already") {
		t.Errorf("the same name through b: %v", err)
	}
	ns, err := cb.Nodes(ctx)
	if err != nil || len(ns) != 2 || ns[0].ID != "a" || ns[0].Status != api.NodeAlive || !ns[1].Self {
		t.Fatalf("nodes seen by b: %+v, %v", ns, err)
	}
	// A third daemon that takes node id "a" (another state directory):
	// refused once a's lease has had its time to run out.
	dup := newSetup(t, conf("a"))
	d := startDaemon(t, dup.cfg)
	if code := d.wait(t, 60*time.Second); code != 1 || !strings.Contains(d.stderr.String(), `node id "a" is in use by a live vfolderd`) {
		t.Errorf("a second daemon with node id a: exit %d, stderr %q", code, d.stderr)
	}
	for _, s := range []setup{a, b} {
		if _, err := os.Stat(filepath.Join(s.state, "ledger")); err != nil {
			t.Errorf("%s: no ledger database: %v", s.state, err)
		}
		if _, err := os.Stat(filepath.Join(s.state, "meta")); !os.IsNotExist(err) {
			t.Errorf("%s: a metadata database in cluster mode: %v", s.state, err)
		}
	}
	if err := da.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := da.wait(t, 60*time.Second); code != 0 {
		t.Errorf("node a exited %d:\n%s", code, da.stderr)
	}
	ns, err = cb.Nodes(ctx)
	if err != nil || ns[0].Status != api.NodeStopped {
		t.Errorf("after a stopped: %+v, %v", ns, err)
	}
	if err := db.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := db.wait(t, 60*time.Second); code != 0 {
		t.Errorf("node b exited %d:\n%s", code, db.stderr)
	}
}

// TestDaemonNodeListAlone: without a cluster, GET /v1/nodes lists this
// node alone.
func TestDaemonNodeListAlone(t *testing.T) {
	s := newSetup(t, "")
	d := startDaemon(t, s.cfg)
	waitHealthy(t, d, s.socket)
	c := api.NewClient(s.socket)
	defer c.CloseIdleConnections()
	ns, err := c.Nodes(context.Background())
	host, _ := os.Hostname()
	if err != nil || len(ns) != 1 || !ns[0].Self || ns[0].Status != api.NodeAlive || ns[0].ID != host || ns[0].Hostname != host {
		t.Errorf("nodes = %+v, %v; want this node alone, alive, named after the host %q", ns, err, host)
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := d.wait(t, 60*time.Second); code != 0 {
		t.Errorf("exit %d:\n%s", code, d.stderr)
	}
}
