package service

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/internal/cluster"
	"github.com/vfolder/vfolder/internal/testutil/etcdtest"
	"github.com/vfolder/vfolder/meta"
	"github.com/vfolder/vfolder/meta/etcdstore"
	"github.com/vfolder/vfolder/quota"
)

var clusterPrefixes atomic.Int64

func newClusterPrefix() string { return fmt.Sprintf("/svc-cluster-%d/", clusterPrefixes.Add(1)) }

// limitLedger is a Ledger that records limits and dropped folders.
type limitLedger struct {
	mu      sync.Mutex
	limits  map[quota.ScopeKey][2]int64
	dropped []string
}

func newLimitLedger() *limitLedger { return &limitLedger{limits: map[quota.ScopeKey][2]int64{}} }

func (l *limitLedger) SetLimit(s quota.ScopeKey, bytes, inodes int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.limits[s] = [2]int64{bytes, inodes}
	return nil
}

func (l *limitLedger) Usage(s quota.ScopeKey) quota.Usage {
	l.mu.Lock()
	defer l.mu.Unlock()
	x := l.limits[s]
	return quota.Usage{Limit: x[0], LimitInodes: x[1]}
}

func (l *limitLedger) FolderUsage(string) quota.Usage { return quota.Usage{} }

func (l *limitLedger) RecordRoot(quota.ScopeKey, string) error { return nil }

func (l *limitLedger) DropFolder(_ quota.ScopeKey, id string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.dropped = append(l.dropped, id)
	return nil
}

func (l *limitLedger) Check(context.Context, quota.ScopeKey, []quota.FolderRoot, quota.CheckOptions) (*quota.Report, error) {
	return &quota.Report{}, nil
}

func (l *limitLedger) Scopes() []quota.ScopeKey {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []quota.ScopeKey
	for k := range l.limits {
		out = append(out, k)
	}
	return out
}

func (l *limitLedger) Folders(quota.ScopeKey) []string { return nil }

func (l *limitLedger) limit(vol string, id meta.ScopeID) int64 {
	return l.Usage(quota.ScopeKey{Volume: vol, ID: id}).Limit
}

func (l *limitLedger) wasDropped(id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Contains(l.dropped, id)
}

// clusterNode is one node of a service-level cluster test: its own store
// client (with its session namespace), membership, fake views, fake host
// mounts and ledger, over a volume directory all nodes share.
type clusterNode struct {
	id     string
	svc    *Service
	store  *etcdstore.Store
	cl     *cluster.Cluster
	fv     *fakeViews
	fm     *fakeMounts
	ledger *limitLedger
}

func startClusterNode(t testing.TB, srv *etcdtest.Server, prefix, id, vol string) *clusterNode {
	t.Helper()
	n, err := tryClusterNode(t, srv, prefix, id, vol, meta.Volume{Name: "local", Path: vol, RWCanDelete: true, MountAllowed: true, CloneAllowed: true})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func tryClusterNode(t testing.TB, srv *etcdtest.Server, prefix, id, vol string, v meta.Volume) (*clusterNode, error) {
	t.Helper()
	ctx := context.Background()
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	st, err := etcdstore.Open(ctx, etcdstore.Options{Endpoints: srv.Endpoints(), Prefix: prefix, SessionNamespace: id,
		RequestTimeout: 30 * time.Second, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	cl, err := cluster.Join(ctx, cluster.Options{Client: st.Client(), Prefix: prefix, Node: id, Hostname: id, Version: "test",
		StateDir: "/state/" + id, LeaseTTL: 2 * time.Second, RequestTimeout: 30 * time.Second, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	n := &clusterNode{id: id, store: st, cl: cl, fv: newFakeViews(), fm: newFakeMounts("/run/vfolder/" + id), ledger: newLimitLedger()}
	n.svc = New(st, testOptions(n.ledger, withViews, func(o *Options) { o.Cluster = cl; o.Log = log }))
	t.Cleanup(func() {
		n.svc.Close()
		cl.Close()
		st.Close()
	})
	if err := n.svc.AttachVolume(ctx, v); err != nil {
		return nil, err
	}
	if err := n.svc.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if err := n.svc.StartQuota(ctx); err != nil {
		t.Fatal(err)
	}
	if err := n.svc.StartViews(ctx, n.fv); err != nil {
		t.Fatal(err)
	}
	if err := n.svc.StartSessions(ctx, func() (Mounts, error) { return n.fm, nil }, false); err != nil {
		t.Fatal(err)
	}
	n.svc.FollowStore(st)
	return n, nil
}

// hasPlace reports whether the node's views hold place ("ns/key/name").
func (n *clusterNode) hasPlace(place string) bool {
	for _, p := range n.fv.places() {
		if strings.HasPrefix(p, place+" ") {
			return true
		}
	}
	return false
}

// eventually waits up to d for cond; it returns how long that took.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Since(start)
}

// within is the propagation bound of the acceptance; a loaded
// machine gets more room here, the e2e test holds the 1 s.
const within = 5 * time.Second

func TestClusterViewsFollow(t *testing.T) {
	srv := etcdtest.Start(t)
	p, vol := newClusterPrefix(), t.TempDir()
	a := startClusterNode(t, srv, p, "a", vol)
	b := startClusterNode(t, srv, p, "b", vol)
	ctx := context.Background()
	place := func(owner meta.ScopeID, name string) string { return "users/" + owner.UUID + "/" + name }

	f, err := a.svc.CreateFolder(ctx, api.CreateFolderRequest{Name: "data", Volume: "local", Owner: alice})
	if err != nil {
		t.Fatal(err)
	}
	d := eventually(t, within, "create through a seen by b", func() bool { return b.hasPlace(place(alice, "data")) })
	t.Logf("create propagated in %v", d)
	if _, err := b.svc.CreateFolder(ctx, api.CreateFolderRequest{Name: "data", Volume: "local", Owner: alice}); !errors.Is(err, meta.ErrExists) {
		t.Errorf("the same name through b: %v; want ErrExists", err)
	}
	if _, err := b.svc.Rename(ctx, f.ID, meta.ScopeID{}, "renamed"); err != nil {
		t.Fatal(err)
	}
	eventually(t, within, "rename through b seen by a", func() bool {
		return a.hasPlace(place(alice, "renamed")) && !a.hasPlace(place(alice, "data"))
	})
	if _, err := a.svc.Trash(ctx, f.ID, meta.ScopeID{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, within, "trash through a seen by b", func() bool { return !b.hasPlace(place(alice, "renamed")) })
	if _, err := b.svc.Restore(ctx, f.ID, meta.ScopeID{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, within, "restore through b seen by a", func() bool { return a.hasPlace(place(alice, "renamed")) })

	// Membership and its permission.
	pf, err := a.svc.CreateFolder(ctx, api.CreateFolderRequest{Name: "shared", Volume: "local", Owner: project, Permission: meta.PermRW})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.svc.SetMember(ctx, project.UUID, bob.UUID, meta.PermRO); err != nil {
		t.Fatal(err)
	}
	eventually(t, within, "membership through a seen by b", func() bool {
		return slices.Contains(b.fv.places(), place(bob, "shared")+" ro")
	})
	if _, err := b.svc.SetMember(ctx, project.UUID, bob.UUID, meta.PermWD); err != nil {
		t.Fatal(err)
	}
	eventually(t, within, "permission change through b seen by a", func() bool {
		return slices.Contains(a.fv.places(), place(bob, "shared")+" wd")
	})
	if _, err := a.svc.RemoveMember(ctx, project.UUID, bob.UUID); err != nil {
		t.Fatal(err)
	}
	eventually(t, within, "removal seen by b", func() bool { return !b.hasPlace(place(bob, "shared")) })

	// Limits reach the other node's ledger; a purge drops its entries.
	limit := int64(5 << 20)
	if _, err := a.svc.SetQuota(ctx, "local", alice, api.SetQuotaRequest{LimitBytes: &limit}); err != nil {
		t.Fatal(err)
	}
	eventually(t, within, "limit through a in b's ledger", func() bool { return b.ledger.limit("local", alice) == limit })
	if _, err := b.svc.Trash(ctx, pf.ID, meta.ScopeID{}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.svc.Purge(ctx, pf.ID, meta.ScopeID{}, "shared"); err != nil {
		t.Fatal(err)
	}
	eventually(t, within, "purge through b dropped from a's ledger", func() bool { return a.ledger.wasDropped(pf.ID) })
	eventually(t, within, "purge through b seen by a", func() bool { return !a.hasPlace("projects/" + project.UUID + "/shared") })
}

func TestClusterTrashOfFolderMountedElsewhere(t *testing.T) {
	srv := etcdtest.Start(t)
	p, vol := newClusterPrefix(), t.TempDir()
	a := startClusterNode(t, srv, p, "a", vol)
	b := startClusterNode(t, srv, p, "b", vol)
	ctx := context.Background()
	f, err := a.svc.CreateFolder(ctx, api.CreateFolderRequest{Name: "work", Volume: "local", Owner: alice})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, within, "b sees the folder", func() bool { return b.hasPlace("users/" + alice.UUID + "/work") })
	if _, err := b.svc.Publish(ctx, "job-1", api.PublishRequest{User: alice.UUID, Mounts: []api.MountRequest{{Folder: "work"}}}); err != nil {
		t.Fatal(err)
	}
	_, err = a.svc.Trash(ctx, f.ID, meta.ScopeID{})
	wantCode(t, err, api.CodeConflict)
	if err == nil || !strings.Contains(err.Error(), "session job-1 on node b") {
		t.Fatalf("trash through a: %v; want a refusal naming session job-1 on node b", err)
	}
	// A session view through the views API counts too.
	if _, err := b.svc.Unpublish(ctx, "job-1"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.svc.AddSessionView(ctx, api.CreateViewRequest{Session: "debug", Name: "w", Folder: f.ID}); err != nil {
		t.Fatal(err)
	}
	_, err = a.svc.Trash(ctx, f.ID, meta.ScopeID{})
	if err == nil || !strings.Contains(err.Error(), "session debug on node b") {
		t.Fatalf("trash with a session view on b: %v", err)
	}
	if _, err := b.svc.RemoveSessionView(ctx, "debug", "w"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.svc.Trash(ctx, f.ID, meta.ScopeID{}); err != nil {
		t.Fatalf("trash after the session ended: %v", err)
	}
	// And a trashed folder cannot be published on b.
	_, err = b.svc.Publish(ctx, "job-2", api.PublishRequest{User: alice.UUID, Mounts: []api.MountRequest{{Folder: f.ID}}})
	wantCode(t, err, api.CodeConflict)
	ns, err := a.cl.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range ns {
		if len(n.Sessions) > 0 {
			t.Errorf("node %s still holds sessions %+v after every session ended", n.ID, n.Sessions)
		}
	}
}

// TestClusterTrashRacesPublish races a trash through node a against a
// publish of the same folder through node b, round after round: the
// folder must never end up trashed while b's session mounts it.
func TestClusterTrashRacesPublish(t *testing.T) {
	srv := etcdtest.Start(t)
	p, vol := newClusterPrefix(), t.TempDir()
	a := startClusterNode(t, srv, p, "a", vol)
	b := startClusterNode(t, srv, p, "b", vol)
	ctx := context.Background()
	rounds := 30
	if testing.Short() {
		rounds = 8
	}
	var trashed, published int
	for i := range rounds {
		name := fmt.Sprintf("race-%d", i)
		f, err := a.svc.CreateFolder(ctx, api.CreateFolderRequest{Name: name, Volume: "local", Owner: alice})
		if err != nil {
			t.Fatal(err)
		}
		sid := fmt.Sprintf("s-%d", i)
		var wg sync.WaitGroup
		var trashErr, pubErr error
		wg.Add(2)
		// A publish does more reads before its claim than a trash before
		// its fence: a varying head start lets either win.
		delay := time.Duration(rand.IntN(12000)) * time.Microsecond
		go func() {
			defer wg.Done()
			time.Sleep(delay)
			_, trashErr = a.svc.Trash(ctx, f.ID, meta.ScopeID{})
		}()
		go func() {
			defer wg.Done()
			_, pubErr = b.svc.Publish(ctx, sid, api.PublishRequest{User: alice.UUID, Mounts: []api.MountRequest{{Folder: f.ID}}})
		}()
		wg.Wait()
		for _, err := range []error{trashErr, pubErr} {
			if err != nil && Code(err) != api.CodeConflict {
				t.Fatalf("round %d: %v", i, err)
			}
		}
		cur, err := a.store.GetFolder(ctx, f.ID)
		if err != nil {
			t.Fatal(err)
		}
		using, err := b.store.SessionsUsingFolder(ctx, f.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !cur.Status.Live() && len(using) > 0 {
			t.Errorf("round %d: folder is %s while session(s) %v on b mount it (trash: %v, publish: %v)", i, cur.Status, using, trashErr, pubErr)
		}
		if trashErr == nil {
			trashed++
		}
		if pubErr == nil {
			published++
			if _, err := b.svc.Unpublish(ctx, sid); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Logf("%d rounds: trash won %d, publish won %d", rounds, trashed, published)
	if trashed+published < rounds {
		t.Errorf("%d rounds where both lost", rounds-trashed-published)
	}
}

// TestClusterSession: one session id published on two nodes gets the
// same mounts (names, targets, modes) on both; each node keeps its own
// record and only it counts for stopping that node.
func TestClusterSession(t *testing.T) {
	srv := etcdtest.Start(t)
	p, vol := newClusterPrefix(), t.TempDir()
	a := startClusterNode(t, srv, p, "a", vol)
	b := startClusterNode(t, srv, p, "b", vol)
	ctx := context.Background()
	for _, name := range []string{"data", "code", ".bashrc-dir"} {
		if _, err := a.svc.CreateFolder(ctx, api.CreateFolderRequest{Name: name, Volume: "local", Owner: alice}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, within, "b sees the folders", func() bool { return b.hasPlace("users/" + alice.UUID + "/code") })
	req := api.PublishRequest{User: alice.UUID, Mounts: []api.MountRequest{{Folder: "data", Mode: meta.PermRO}, {Folder: "code", Target: "/workspace"}}}
	sa, err := a.svc.Publish(ctx, "cluster-1", req)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := b.svc.Publish(ctx, "cluster-1", req)
	if err != nil {
		t.Fatal(err)
	}
	norm := func(s api.Session) string {
		var out []string
		for _, m := range s.Mounts {
			out = append(out, fmt.Sprintf("%s %s %s %s %s %s", m.Name, m.FolderID, m.Subpath, m.Target, m.Mode,
				strings.TrimPrefix(m.HostPath, "/run/vfolder/a")))
		}
		slices.Sort(out)
		return strings.Join(out, "\n")
	}
	nb := strings.ReplaceAll(norm(sb), "/run/vfolder/b", "")
	if na := norm(sa); na != nb || len(sa.Mounts) != 3 {
		t.Errorf("mounts on a:\n%s\nmounts on b:\n%s\nwant the same three", na, nb)
	}
	ids, err := a.svc.LiveSessions(ctx)
	if err != nil || !slices.Equal(ids, []string{"cluster-1"}) {
		t.Errorf("a's live sessions = %v, %v", ids, err)
	}
	if _, err := b.svc.Unpublish(ctx, "cluster-1"); err != nil {
		t.Fatal(err)
	}
	if ids, _ := a.svc.LiveSessions(ctx); len(ids) != 1 {
		t.Errorf("unpublishing on b took a's session too: %v", ids)
	}
	ns, err := b.cl.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range ns {
		switch {
		case n.ID == "a" && (len(n.Sessions) != 1 || len(n.Sessions[0].Folders) != 3):
			t.Errorf("node a holds %+v; want cluster-1 with 3 folders", n.Sessions)
		case n.ID == "b" && len(n.Sessions) != 0:
			t.Errorf("node b holds %+v after unpublishing", n.Sessions)
		}
	}
}

func TestClusterVolumeConflict(t *testing.T) {
	srv := etcdtest.Start(t)
	p, vol := newClusterPrefix(), t.TempDir()
	startClusterNode(t, srv, p, "a", vol)
	_, err := tryClusterNode(t, srv, p, "b", vol, meta.Volume{Name: "local", Path: vol, RWCanDelete: false, MountAllowed: true, CloneAllowed: true})
	if !errors.Is(err, meta.ErrConflict) || !strings.Contains(err.Error(), "rw_can_delete=false") || !strings.Contains(err.Error(), "live node(s) a") {
		t.Fatalf("a second node with another rw_can_delete: %v", err)
	}
}

// TestClusterRecoversWhatADeadNodeLeft: a create that a node left
// "performing" (its directory made, the node gone) is finished by a
// survivor when that node leaves; one whose node is alive is left alone.
func TestClusterRecoversWhatADeadNodeLeft(t *testing.T) {
	srv := etcdtest.Start(t)
	p, vol := newClusterPrefix(), t.TempDir()
	a := startClusterNode(t, srv, p, "a", vol)
	b := startClusterNode(t, srv, p, "b", vol)
	ctx := context.Background()
	va, err := a.svc.folderVolume(meta.Folder{Volume: "local"})
	if err != nil {
		t.Fatal(err)
	}
	left := metaFolder("left", meta.StatusPerforming)
	busy := metaFolder("busy", meta.StatusPerforming)
	for _, f := range []meta.Folder{left, busy} {
		if err := a.store.CreateFolder(ctx, f, 0); err != nil {
			t.Fatal(err)
		}
		if err := va.CreateFolder(f.Owner, f.ID, os.Geteuid(), os.Getegid()); err != nil {
			t.Fatal(err)
		}
	}
	// b is working on "busy" (it holds the fence).
	_, release, err := b.cl.Fence(ctx, busy, "created")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	// A third node leaves: a and b look at what is unfinished.
	c := startClusterNode(t, srv, p, "c", vol)
	if err := c.cl.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "the left-over create finished", func() bool {
		f, err := a.store.GetFolder(ctx, left.ID)
		return err == nil && f.Status == meta.StatusReady
	})
	eventually(t, within, "its view on both nodes", func() bool {
		return a.hasPlace("users/"+alice.UUID+"/left") && b.hasPlace("users/"+alice.UUID+"/left")
	})
	if f, _ := a.store.GetFolder(ctx, busy.ID); f.Status != meta.StatusPerforming {
		t.Errorf("a folder a live node works on was recovered: %s", f.Status)
	}
	if !slices.Contains(layoutDirs(t, vol), filepath.Join(vol, meta.FolderRelPath(busy.Owner, busy.ID))) {
		t.Error("the directory of the busy folder went")
	}
}

func metaFolder(name string, st meta.Status) meta.Folder {
	return meta.Folder{ID: meta.NewFolderID(), Name: name, Owner: alice, Volume: "local", UsageMode: meta.ModeGeneral,
		Permission: meta.PermRW, Status: st}
}

// BenchmarkClusterPropagation measures how long a folder created through
// one node takes to appear in another node's views (ns/op is that delay;
// both nodes share one etcd on loopback).
func BenchmarkClusterPropagation(b *testing.B) {
	srv := etcdtest.Start(b)
	p, vol := newClusterPrefix(), b.TempDir()
	x := startClusterNode(b, srv, p, "x", vol)
	y := startClusterNode(b, srv, p, "y", vol)
	ctx := context.Background()
	var total time.Duration
	for i := 0; b.Loop(); i++ {
		name := fmt.Sprintf("f-%d", i)
		if _, err := x.svc.CreateFolder(ctx, api.CreateFolderRequest{Name: name, Volume: "local", Owner: alice}); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		for !y.hasPlace("users/" + alice.UUID + "/" + name) {
			time.Sleep(100 * time.Microsecond)
		}
		total += time.Since(start)
	}
	b.ReportMetric(float64(total.Microseconds())/float64(b.N)/1000, "ms-after-create")
}

// listFails is a store whose session list cannot be read once fail is set
// (a cluster store out of reach).
type listFails struct {
	meta.Store
	fail atomic.Bool
}

func (l *listFails) ListSessions(ctx context.Context) ([]meta.Session, error) {
	if l.fail.Load() {
		return nil, fmt.Errorf("%w: etcd did not answer", meta.ErrUnavailable)
	}
	return l.Store.ListSessions(ctx)
}

// TestLiveSessionsWithoutStore: when the records cannot be read, the
// published sessions the daemon serves still count (a stop is refused for
// them); with none, the error says why.
func TestLiveSessionsWithoutStore(t *testing.T) {
	store := &listFails{Store: meta.NewMemory()}
	vol := t.TempDir()
	e := startService(t, store, vol, testOptions(nil, withViews))
	t.Cleanup(e.svc.Close)
	ctx := context.Background()
	fv, fm := newFakeViews(), newFakeMounts("/run/vfolder/sessions")
	if err := e.svc.StartViews(ctx, fv); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.StartSessions(ctx, func() (Mounts, error) { return fm, nil }, false); err != nil {
		t.Fatal(err)
	}
	store.fail.Store(true)
	if _, err := e.svc.LiveSessions(ctx); !errors.Is(err, meta.ErrUnavailable) {
		t.Errorf("no session, no store: %v", err)
	}
	store.fail.Store(false)
	e.create(t, "data", alice)
	if _, err := e.svc.Publish(ctx, "job-9", api.PublishRequest{User: alice.UUID, Mounts: []api.MountRequest{{Folder: "data"}}}); err != nil {
		t.Fatal(err)
	}
	store.fail.Store(true)
	if ids, err := e.svc.LiveSessions(ctx); err != nil || !slices.Equal(ids, []string{"job-9"}) {
		t.Errorf("LiveSessions without the store = %v, %v; want job-9 from the views served", ids, err)
	}
	store.fail.Store(false)
}
