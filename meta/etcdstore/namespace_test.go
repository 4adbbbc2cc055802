package etcdstore_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/vfolder/vfolder/internal/testutil/etcdtest"
	"github.com/vfolder/vfolder/meta"
	"github.com/vfolder/vfolder/meta/etcdstore"
	"github.com/vfolder/vfolder/meta/metatest"
)

// openNS opens a store on srv under prefix whose sessions live in
// namespace ns.
func openNS(t testing.TB, srv *etcdtest.Server, prefix, ns string) *etcdstore.Store {
	t.Helper()
	s, err := etcdstore.Open(context.Background(), etcdstore.Options{
		Endpoints: srv.Endpoints(), Prefix: prefix, SessionNamespace: ns, Log: testLogger(t),
	})
	if err != nil {
		t.Fatalf("Open(%s, namespace %s): %v", prefix, ns, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestSessionNamespaceConformance: a store with a session namespace keeps
// the whole contract, the watcher's included, when every session call goes
// through one namespace.
func TestSessionNamespaceConformance(t *testing.T) {
	srv := etcdtest.Start(t)
	t.Run("store", func(t *testing.T) {
		metatest.RunStoreSuite(t, func(t *testing.T) meta.Store { return openNS(t, srv, newPrefix(), "node-1") })
	})
	t.Run("watcher", func(t *testing.T) {
		metatest.RunWatcherSuite(t, func(t *testing.T) (meta.Store, metatest.WatchingStore) {
			p := newPrefix()
			return openNS(t, srv, p, "node-1"), openNS(t, srv, p, "node-1")
		})
	})
}

// TestSessionNamespacesApart: two nodes on one prefix share folders and
// see only their own sessions, in every call, in Load and in Watch; a
// store without a namespace is apart from both.
func TestSessionNamespacesApart(t *testing.T) {
	srv := etcdtest.Start(t)
	ctx := context.Background()
	p := newPrefix()
	a, b, plain := openNS(t, srv, p, "a"), openNS(t, srv, p, "b"), open(t, srv, p, 0)

	f := metatest.NewFolder(metatest.User(1), "vol", "data")
	if err := a.CreateFolder(ctx, f, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := b.GetFolder(ctx, f.ID); err != nil {
		t.Fatalf("folders are shared: b cannot read a's folder: %v", err)
	}
	sess := func(id string) meta.Session {
		return meta.Session{ID: id, User: metatest.User(1).UUID, UID: 1000, GID: 1000,
			Mounts: []meta.SessionMount{{FolderID: f.ID, Name: "data", Target: "/home/work/data", Mode: meta.PermRW}}}
	}
	// One session id on two nodes (a cluster session) and one of a's own.
	for _, w := range []struct {
		s  *etcdstore.Store
		id string
	}{{a, "s1"}, {a, "only-a"}, {b, "s1"}, {plain, "plain"}} {
		if err := w.s.PutSession(ctx, sess(w.id)); err != nil {
			t.Fatal(err)
		}
	}
	ids := func(s *etcdstore.Store) []string {
		t.Helper()
		ss, err := s.ListSessions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, x := range ss {
			out = append(out, x.ID)
		}
		return out
	}
	for _, c := range []struct {
		name string
		s    *etcdstore.Store
		want []string
	}{{"a", a, []string{"only-a", "s1"}}, {"b", b, []string{"s1"}}, {"plain", plain, []string{"plain"}}} {
		if got := ids(c.s); !slices.Equal(got, c.want) {
			t.Errorf("%s lists sessions %q; want %q", c.name, got, c.want)
		}
		using, err := c.s.SessionsUsingFolder(ctx, f.ID)
		if err != nil || !slices.Equal(using, c.want) {
			t.Errorf("%s: SessionsUsingFolder = %q, %v; want %q", c.name, using, err, c.want)
		}
		snap, err := c.s.Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var loaded []string
		for _, x := range snap.Sessions {
			loaded = append(loaded, x.ID)
		}
		if !slices.Equal(loaded, c.want) || len(snap.Folders) != 1 {
			t.Errorf("%s: Load has sessions %q and %d folders; want %q and 1", c.name, loaded, len(snap.Folders), c.want)
		}
		if err := c.s.Verify(ctx); err != nil {
			t.Errorf("%s: Verify: %v", c.name, err)
		}
	}

	// b's watch sees its own session change, not a's, nor the plain one.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	snap, err := b.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ch := b.Watch(wctx, snap.Rev)
	if err := a.DeleteSession(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	if err := plain.DeleteSession(ctx, "plain"); err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteSession(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	ev := nextOf(t, ch, "b's watch")
	if ev.Kind != meta.EventSession || !ev.Deleted || ev.Session.ID != "s1" {
		t.Fatalf("first event of b's watch = %+v; want the removal of its own s1", ev)
	}
	if _, err := b.GetSession(ctx, "only-a"); !errors.Is(err, meta.ErrNotFound) {
		t.Errorf("b reads a's session: %v", err)
	}
	if got := ids(a); !slices.Equal(got, []string{"only-a"}) {
		t.Errorf("a lists %q after deleting s1; want only-a", got)
	}

	if _, err := etcdstore.Open(ctx, etcdstore.Options{Endpoints: srv.Endpoints(), Prefix: p, SessionNamespace: "x/y"}); !errors.Is(err, meta.ErrInvalid) {
		t.Errorf("Open with namespace x/y = %v; want ErrInvalid", err)
	}
}
