package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/vfolder/vfolder/internal/testutil/etcdtest"
	"github.com/vfolder/vfolder/meta"
	"github.com/vfolder/vfolder/meta/etcdstore"
)

var prefixes atomic.Int64

func newPrefix() string { return fmt.Sprintf("/cluster-test-%d/", prefixes.Add(1)) }

// node is one node of a test: its metadata store (its own etcd client)
// and its membership.
type node struct {
	store *etcdstore.Store
	c     *Cluster
}

// join starts a node on srv under prefix.
func join(t *testing.T, srv *etcdtest.Server, prefix, id, stateDir string, ttl time.Duration) *node {
	t.Helper()
	n, err := tryJoin(t, srv, prefix, id, stateDir, ttl)
	if err != nil {
		t.Fatalf("join %s: %v", id, err)
	}
	return n
}

func tryJoin(t *testing.T, srv *etcdtest.Server, prefix, id, stateDir string, ttl time.Duration) (*node, error) {
	t.Helper()
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	st, err := etcdstore.Open(context.Background(), etcdstore.Options{Endpoints: srv.Endpoints(), Prefix: prefix, SessionNamespace: id,
		RequestTimeout: 20 * time.Second, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	c, err := Join(context.Background(), Options{Client: st.Client(), Prefix: prefix, Node: id, Hostname: "host-" + id,
		Version: "test", StateDir: stateDir, LeaseTTL: ttl, RequestTimeout: 20 * time.Second, Log: log})
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	return &node{store: st, c: c}, nil
}

// kill stops the node the way SIGKILL does: no more keepalives, nothing
// revoked.
func (n *node) kill() {
	n.c.mu.Lock()
	n.c.closed = true
	sess := n.c.sess
	n.c.mu.Unlock()
	n.c.cancel()
	n.c.wg.Wait()
	sess.Orphan()
}

func folder(name string) meta.Folder {
	return meta.Folder{ID: meta.NewFolderID(), Name: name}
}

func wantErr(t *testing.T, err error, sentinel error, parts ...string) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("error %v; want %v", err, sentinel)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not mention %q", err, p)
		}
	}
}

func statusOf(t *testing.T, n *node) map[string]Node {
	t.Helper()
	ns, err := n.c.Nodes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]Node{}
	for _, x := range ns {
		out[x.ID] = x
	}
	return out
}

// waitFor polls cond for up to d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestNodesAndSessions(t *testing.T) {
	srv := etcdtest.Start(t)
	p := newPrefix()
	ctx := context.Background()
	a := join(t, srv, p, "a", "/state/a", 2*time.Second)
	b := join(t, srv, p, "b", "/state/b", 2*time.Second)
	f1, f2 := folder("one"), folder("two")
	for _, c := range []struct {
		n    *node
		f    meta.Folder
		sess string
	}{{a, f1, "s1"}, {a, f2, "s1"}, {a, f1, "s2"}, {b, f1, "s1"}} {
		if err := c.n.c.Claim(ctx, c.f, c.sess); err != nil {
			t.Fatal(err)
		}
	}
	st := statusOf(t, b)
	if st["a"].Status != StatusAlive || st["b"].Status != StatusAlive || !st["b"].Self || st["a"].Self {
		t.Fatalf("nodes = %+v", st)
	}
	if st["a"].Hostname != "host-a" || st["a"].Version != "test" || st["a"].StartedAt.IsZero() {
		t.Errorf("node a = %+v", st["a"])
	}
	got := fmt.Sprint(st["a"].Sessions)
	if want := fmt.Sprint([]NodeSession{{"s1", sorted(f1.ID, f2.ID)}, {"s2", []string{f1.ID}}}); got != want {
		t.Errorf("sessions of a = %s; want %s", got, want)
	}
	if len(st["b"].Sessions) != 1 || st["b"].Sessions[0].ID != "s1" {
		t.Errorf("sessions of b = %+v", st["b"].Sessions)
	}

	// A clean stop: stopped, no sessions; a kill: expired once the lease
	// has run out, and the others are told.
	if err := b.c.Close(); err != nil {
		t.Fatal(err)
	}
	st = statusOf(t, a)
	if st["b"].Status != StatusStopped || st["b"].Sessions != nil || st["b"].StoppedAt.IsZero() {
		t.Errorf("b after Close = %+v", st["b"])
	}
	select {
	case <-a.c.Departed():
	case <-time.After(10 * time.Second):
		t.Error("a was not told that b left")
	}
	c := join(t, srv, p, "c", "/state/c", 2*time.Second)
	if err := c.c.Claim(ctx, f2, "s9"); err != nil {
		t.Fatal(err)
	}
	drain(a.c.Departed())
	c.kill()
	waitFor(t, 10*time.Second, "c expired", func() bool { return statusOf(t, a)["c"].Status == StatusExpired })
	if s := statusOf(t, a)["c"].Sessions; s != nil {
		t.Errorf("an expired node still shows sessions %+v", s)
	}
	select {
	case <-a.c.Departed():
	case <-time.After(10 * time.Second):
		t.Error("a was not told that c left")
	}
}

func sorted(a, b string) []string {
	if a > b {
		a, b = b, a
	}
	return []string{a, b}
}

func drain(ch <-chan struct{}) {
	select {
	case <-ch:
	default:
	}
}

// TestClaimsAndFences: a claim keeps a fence out and names its session and
// node; a fence keeps claims out and names its node; each goes when
// released, or with the lease of a node that died.
func TestClaimsAndFences(t *testing.T) {
	srv := etcdtest.Start(t)
	p := newPrefix()
	ctx := context.Background()
	a := join(t, srv, p, "a", "/state/a", 2*time.Second)
	b := join(t, srv, p, "b", "/state/b", 2*time.Second)
	f := folder("data")

	if err := a.c.Claim(ctx, f, "s1"); err != nil {
		t.Fatal(err)
	}
	if err := a.c.Claim(ctx, f, "s2"); err != nil {
		t.Fatal(err)
	}
	_, _, err := b.c.Fence(ctx, f, "trashed")
	wantErr(t, err, meta.ErrConflict, `folder "data" is mounted by session s1 on node a, session s2 on node a; it cannot be trashed`)

	// Releasing what is no longer held: s1 goes, s2 stays.
	a.c.Release(ctx, func(folder, sess string) bool { return sess == "s2" })
	if a.c.Claimed(f.ID, "s1") || !a.c.Claimed(f.ID, "s2") {
		t.Fatal("Release dropped the wrong claims")
	}
	_, _, err = b.c.Fence(ctx, f, "purged")
	wantErr(t, err, meta.ErrConflict, "session s2 on node a", "cannot be purged")
	a.c.Release(ctx, func(string, string) bool { return false })

	check, release, err := b.c.Fence(ctx, f, "trashed")
	if err != nil {
		t.Fatal(err)
	}
	wantErr(t, a.c.Claim(ctx, f, "s3"), meta.ErrConflict, `folder "data" is being trashed through node b`)
	_, _, err = a.c.Fence(ctx, f, "purged")
	wantErr(t, err, meta.ErrConflict, "being trashed through node b")
	_, _, err = b.c.Fence(ctx, f, "purged")
	wantErr(t, err, meta.ErrConflict, "being trashed through this node (b)")
	if err := check(ctx); err != nil {
		t.Errorf("check of a fence that stood: %v", err)
	}
	release()
	if err := a.c.Claim(ctx, f, "s3"); err != nil {
		t.Fatalf("claim after the fence went: %v", err)
	}

	// A fence of a node that dies goes with its lease.
	g := folder("other")
	if _, _, err := b.c.Fence(ctx, g, "purged"); err != nil {
		t.Fatal(err)
	}
	b.kill()
	waitFor(t, 10*time.Second, "the dead node's fence to go", func() bool { return a.c.Claim(ctx, g, "s4") == nil })
}

// TestLostFence: a fence lost with the node's lease is reported by check
// when a claim came in meanwhile, and not otherwise.
func TestLostFence(t *testing.T) {
	srv := etcdtest.Start(t)
	p := newPrefix()
	ctx := context.Background()
	a := join(t, srv, p, "a", "/state/a", 2*time.Second)
	b := join(t, srv, p, "b", "/state/b", 2*time.Second)
	revoke := func(n *node) {
		t.Helper()
		lease, _, err := n.c.lease()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.store.Client().Revoke(ctx, lease); err != nil {
			t.Fatal(err)
		}
	}

	f := folder("lost")
	check, release, err := b.c.Fence(ctx, f, "trashed")
	if err != nil {
		t.Fatal(err)
	}
	revoke(b)
	if err := a.c.Claim(ctx, f, "s1"); err != nil {
		t.Fatal(err)
	}
	wantErr(t, check(ctx), meta.ErrConflict, "session s1 on node a")
	release()

	g := folder("quiet")
	check, release, err = a.c.Fence(ctx, g, "trashed")
	if err != nil {
		t.Fatal(err)
	}
	revoke(a)
	if err := check(ctx); err != nil {
		t.Errorf("a lost fence without claims: %v", err)
	}
	release()

	// Both nodes register again by themselves, with their claims.
	waitFor(t, 15*time.Second, "re-registration", func() bool {
		st := statusOf(t, a)
		return st["a"].Status == StatusAlive && st["b"].Status == StatusAlive && len(st["a"].Sessions) == 1
	})
	_, _, err = b.c.Fence(ctx, f, "trashed")
	wantErr(t, err, meta.ErrConflict, "session s1 on node a")
}

// TestClaimRacesFence runs claims and fences of one folder against each
// other from two nodes, with a status key standing for the folder record:
// the fencing side writes it after a clean fence and checks; the claiming
// side reads it after its claim. A round where the status says trashed
// while a claim stands (neither side backed out) breaks the rule.
func TestClaimRacesFence(t *testing.T) {
	srv := etcdtest.Start(t)
	p := newPrefix()
	ctx := context.Background()
	a := join(t, srv, p, "a", "/state/a", 5*time.Second)
	b := join(t, srv, p, "b", "/state/b", 5*time.Second)
	cli := a.store.Client()
	rounds := 60
	if testing.Short() {
		rounds = 15
	}
	var trashed, mounted, both int
	for i := range rounds {
		f := folder(fmt.Sprintf("race-%d", i))
		status := p + "test-status/" + f.ID
		if _, err := cli.Put(ctx, status, "live"); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var didTrash, didMount bool
		wg.Add(2)
		go func() { // trash through b
			defer wg.Done()
			check, release, err := b.c.Fence(ctx, f, "trashed")
			if err != nil {
				return
			}
			defer release()
			if _, err := cli.Put(ctx, status, "trashed"); err != nil {
				t.Error(err)
				return
			}
			if err := check(ctx); err != nil {
				cli.Put(ctx, status, "live")
				return
			}
			didTrash = true
		}()
		go func() { // publish through a
			defer wg.Done()
			if err := a.c.Claim(ctx, f, "s"); err != nil {
				return
			}
			resp, err := cli.Get(ctx, status)
			if err != nil || string(resp.Kvs[0].Value) != "live" {
				a.c.Release(ctx, func(string, string) bool { return false })
				return
			}
			didMount = true
		}()
		wg.Wait()
		resp, err := cli.Get(ctx, status)
		if err != nil {
			t.Fatal(err)
		}
		final := string(resp.Kvs[0].Value)
		if didTrash {
			trashed++
		}
		if didMount {
			mounted++
		}
		if final == "trashed" && a.c.Claimed(f.ID, "s") {
			both++
			t.Errorf("round %d: the folder is trashed while a session on node a mounts it", i)
		}
		a.c.Release(ctx, func(string, string) bool { return false })
	}
	t.Logf("%d rounds: %d trashed, %d mounted, %d both", rounds, trashed, mounted, both)
}

func TestNodeIDInUse(t *testing.T) {
	srv := etcdtest.Start(t)
	p := newPrefix()
	ctx := context.Background()
	a := join(t, srv, p, "a", "/state/a", 2*time.Second)
	f := folder("held")
	if err := a.c.Claim(ctx, f, "s1"); err != nil {
		t.Fatal(err)
	}
	// Another instance with the same id: refused after waiting for the
	// lease (the first one keeps it alive).
	_, err := tryJoin(t, srv, p, "a", "/state/elsewhere", 2*time.Second)
	wantErr(t, err, meta.ErrConflict, `node id "a" is in use by a live vfolderd on host "host-a"`, "/state/a", "--node-id")

	// The same instance after a crash: taken over at once. The claims of
	// the dead process hold until the new one has claimed again what its
	// sessions still mount; its fences go at once.
	g := folder("dropped")
	if err := a.c.Claim(ctx, g, "s2"); err != nil {
		t.Fatal(err)
	}
	h := folder("fenced")
	if _, _, err := a.c.Fence(ctx, h, "purged"); err != nil {
		t.Fatal(err)
	}
	a.kill()
	start := time.Now()
	again := join(t, srv, p, "a", "/state/a", 2*time.Second)
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Errorf("taking over took %v", d)
	}
	other := join(t, srv, p, "b", "/state/b", 2*time.Second)
	_, _, err = other.c.Fence(ctx, g, "trashed")
	wantErr(t, err, meta.ErrConflict, "session s2 on node a")
	if _, release, err := other.c.Fence(ctx, h, "recovered"); err != nil {
		t.Errorf("the fence of the crashed process stayed: %v", err)
	} else {
		release()
	}
	if err := again.c.Claim(ctx, f, "s1"); err != nil { // s1 is reconciled, s2 is not
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second) // past the old lease's TTL: it is kept until released
	_, _, err = other.c.Fence(ctx, g, "trashed")
	wantErr(t, err, meta.ErrConflict, "session s2 on node a")
	again.c.ReleasePrevious()
	if _, release, err := other.c.Fence(ctx, g, "trashed"); err != nil {
		t.Errorf("the claim no session took again stayed: %v", err)
	} else {
		release()
	}
	_, _, err = other.c.Fence(ctx, f, "trashed")
	wantErr(t, err, meta.ErrConflict, "session s1 on node a")
	if st := statusOf(t, again)["a"]; st.Status != StatusAlive || !st.Self {
		t.Errorf("a after the restart = %+v", st)
	}
}

func TestShareVolume(t *testing.T) {
	srv := etcdtest.Start(t)
	p := newPrefix()
	ctx := context.Background()
	a := join(t, srv, p, "a", "/state/a", 2*time.Second)
	b := join(t, srv, p, "b", "/state/b", 2*time.Second)
	v := meta.Volume{Name: "nfs", Path: "/vfroot/nfs", RWCanDelete: true, MountAllowed: true, CloneAllowed: true, Chown: meta.ChownIgnore}
	if err := a.c.ShareVolume(ctx, a.store, v); err != nil {
		t.Fatal(err)
	}
	if err := b.c.ShareVolume(ctx, b.store, v); err != nil {
		t.Fatalf("the same configuration on a second node: %v", err)
	}
	w := v
	w.Path, w.RWCanDelete = "/mnt/nfs", false
	err := b.c.ShareVolume(ctx, b.store, w)
	wantErr(t, err, meta.ErrConflict, `volume "nfs"`, "path=/mnt/nfs, rw_can_delete=false", "path=/vfroot/nfs, rw_can_delete=true", "live node(s) a")
	if got, _ := b.store.GetVolume(ctx, "nfs"); got != v {
		t.Errorf("the record changed to %+v", got)
	}
	if err := a.c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.c.ShareVolume(ctx, b.store, w); err != nil {
		t.Fatalf("with no other node alive: %v", err)
	}
	if got, _ := b.store.GetVolume(ctx, "nfs"); got != w {
		t.Errorf("the record is %+v; want this node's %+v", got, w)
	}
	if d := VolumeDiff(v, w); d != "path=/mnt/nfs, rw_can_delete=false instead of path=/vfroot/nfs, rw_can_delete=true" {
		t.Errorf("VolumeDiff = %q", d)
	}
}

// TestUnreachable: with etcd stopped, claims and fences fail as
// unavailable within the request bound; the node registers again after
// etcd is back.
func TestUnreachable(t *testing.T) {
	srv := etcdtest.Start(t)
	p := newPrefix()
	ctx := context.Background()
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	st, err := etcdstore.Open(ctx, etcdstore.Options{Endpoints: srv.Endpoints(), Prefix: p, RequestTimeout: time.Second, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c, err := Join(ctx, Options{Client: st.Client(), Prefix: p, Node: "a", StateDir: "/state/a", LeaseTTL: 2 * time.Second, RequestTimeout: time.Second, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	srv.Stop()
	start := time.Now()
	wantErr(t, c.Claim(ctx, folder("x"), "s1"), meta.ErrUnavailable, "did not answer within 1s")
	_, _, err = c.Fence(ctx, folder("y"), "trashed")
	wantErr(t, err, meta.ErrUnavailable)
	if _, err := c.Nodes(ctx); !errors.Is(err, meta.ErrUnavailable) {
		t.Errorf("Nodes = %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("three calls took %v with a 1s bound", d)
	}
	time.Sleep(3 * time.Second) // past the lease TTL: the client gives the lease up
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the node alive again", func() bool {
		ns, err := c.Nodes(ctx)
		return err == nil && len(ns) == 1 && ns[0].Status == StatusAlive
	})
	if err := c.Claim(ctx, folder("z"), "s1"); err != nil {
		t.Errorf("claim after etcd is back: %v", err)
	}
}

// TestLeaseGone: while the node's lease is gone and before it registered
// again, claims fail as unavailable, not as an internal error.
func TestLeaseGone(t *testing.T) {
	srv := etcdtest.Start(t)
	p := newPrefix()
	ctx := context.Background()
	a := join(t, srv, p, "a", "/state/a", 2*time.Second)
	a.kill() // no re-registration from here on
	lease := a.c.sess.Lease()
	a.c.mu.Lock()
	a.c.closed = false // usable for the calls below, but nothing keeps it alive
	a.c.mu.Unlock()
	if _, err := a.store.Client().Revoke(ctx, lease); err != nil {
		t.Fatal(err)
	}
	wantErr(t, a.c.Claim(ctx, folder("x"), "s1"), meta.ErrUnavailable, "lease", "registering again")
}
