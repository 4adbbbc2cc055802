package etcdstore_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vfolder/vfolder/internal/testutil/etcdtest"
	"github.com/vfolder/vfolder/meta"
	"github.com/vfolder/vfolder/meta/etcdstore"
	"github.com/vfolder/vfolder/meta/metatest"
)

// TestWatcher runs the watcher suite with two stores (two clients, as two
// nodes have) on one prefix.
func TestWatcher(t *testing.T) {
	srv := etcdtest.Start(t)
	metatest.RunWatcherSuite(t, func(t *testing.T) (meta.Store, metatest.WatchingStore) {
		p := newPrefix()
		return open(t, srv, p, 0), open(t, srv, p, 0)
	})
}

// nextOf returns the next event of ch (a resync included), failing t if
// none comes or the channel closes.
func nextOf(t *testing.T, ch <-chan meta.Event, what string) meta.Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatalf("%s: the channel closed", what)
		}
		return ev
	case <-time.After(15 * time.Second):
		t.Fatalf("%s: nothing within 15s", what)
	}
	panic("unreachable")
}

func wantClosed(t *testing.T, ch <-chan meta.Event, what string) {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if ok {
			t.Fatalf("%s: got %+v after the resync, want the channel closed", what, ev)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("%s: the channel did not close after the resync", what)
	}
}

// TestWatchRemovalCarriesRecord: the event of a removal carries the record
// as it was (etcd's previous value of the key), for every kind.
func TestWatchRemovalCarriesRecord(t *testing.T) {
	srv := etcdtest.Start(t)
	p := newPrefix()
	w, r := open(t, srv, p, 0), open(t, srv, p, 0)
	ctx := t.Context()
	f := metatest.NewFolder(metatest.User(1), "v", "gone")
	if err := w.CreateFolder(ctx, f, 0); err != nil {
		t.Fatal(err)
	}
	m := meta.Membership{Project: metatest.Project(1).UUID, User: metatest.User(1).UUID, Permission: meta.PermWD}
	if err := w.SetMembership(ctx, m); err != nil {
		t.Fatal(err)
	}
	if err := w.SetPolicy(ctx, metatest.User(1), meta.Policy{MaxFolderCount: 7}); err != nil {
		t.Fatal(err)
	}
	if err := w.PutSession(ctx, metatest.NewSession("s", metatest.User(1), metatest.Mount(f.ID, "x"))); err != nil {
		t.Fatal(err)
	}
	snap, err := r.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ch := r.Watch(ctx, snap.Rev)
	if err := w.DeleteFolder(ctx, f.ID); err != nil {
		t.Fatal(err)
	}
	if err := w.RemoveMembership(ctx, m.Project, m.User); err != nil {
		t.Fatal(err)
	}
	if err := w.SetPolicy(ctx, metatest.User(1), meta.Policy{}); err != nil {
		t.Fatal(err)
	}
	if err := w.DeleteSession(ctx, "s"); err != nil {
		t.Fatal(err)
	}
	if ev := nextOf(t, ch, "folder"); !ev.Deleted || ev.Folder == nil || ev.Folder.Name != "gone" || ev.Folder.Owner != f.Owner {
		t.Errorf("folder removal: %+v", ev)
	}
	if ev := nextOf(t, ch, "membership"); !ev.Deleted || ev.Membership == nil || *ev.Membership != m {
		t.Errorf("membership removal: %+v", ev)
	}
	if ev := nextOf(t, ch, "policy"); !ev.Deleted || ev.Policy == nil || ev.Policy.Policy.MaxFolderCount != 7 {
		t.Errorf("policy removal: %+v", ev)
	}
	if ev := nextOf(t, ch, "session"); !ev.Deleted || ev.Session == nil || len(ev.Session.Mounts) != 1 {
		t.Errorf("session removal: %+v", ev)
	}
}

// TestWatchResyncAfterCompaction: watching from a revision that etcd has
// compacted away starts with a resync (and ends there); a new snapshot
// and a watch from it work.
func TestWatchResyncAfterCompaction(t *testing.T) {
	srv := etcdtest.Start(t)
	p := newPrefix()
	w, r := open(t, srv, p, 0), open(t, srv, p, 0)
	ctx := t.Context()
	snap, err := r.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var last meta.Folder
	for i := range 5 {
		last = metatest.NewFolder(metatest.User(1), "v", strings.Repeat("x", i+1))
		if err := w.CreateFolder(ctx, last, 0); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := w.Client().Get(ctx, "compact-probe")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Client().Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	ch := r.Watch(ctx, snap.Rev)
	ev := nextOf(t, ch, "watch from a compacted revision")
	if ev.Kind != meta.EventResync || ev.Err == nil || !strings.Contains(ev.Err.Error(), "compacted") {
		t.Fatalf("watch from a compacted revision: %+v, want a resync saying so", ev)
	}
	wantClosed(t, ch, "compacted")

	snap, err = r.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Folders) != 5 {
		t.Errorf("new snapshot has %d folders, want 5", len(snap.Folders))
	}
	ch = r.Watch(ctx, snap.Rev)
	if err := w.DeleteFolder(ctx, last.ID); err != nil {
		t.Fatal(err)
	}
	if ev := nextOf(t, ch, "after the reload"); ev.Kind != meta.EventFolder || !ev.Deleted || ev.Folder.ID != last.ID {
		t.Errorf("after the reload: %+v", ev)
	}
}

// TestWatchResyncAfterRestart: a live stream ends with a resync wrapping
// ErrUnavailable when etcd stops (cleanly or killed); once etcd runs
// again, a new snapshot and watch deliver the changes made after it.
func TestWatchResyncAfterRestart(t *testing.T) {
	srv := etcdtest.Start(t)
	p := newPrefix()
	w, r := open(t, srv, p, 3*time.Second), open(t, srv, p, 3*time.Second)
	ctx := t.Context()
	for _, how := range []string{"stop", "kill"} {
		snap, err := loadRetrying(ctx, r)
		if err != nil {
			t.Fatalf("%s: Load: %v", how, err)
		}
		ch := r.Watch(ctx, snap.Rev)
		f := metatest.NewFolder(metatest.User(1), "v", how)
		if err := w.CreateFolder(ctx, f, 0); err != nil {
			t.Fatal(err)
		}
		if ev := nextOf(t, ch, how+": before"); ev.Kind != meta.EventFolder || ev.Folder.ID != f.ID {
			t.Fatalf("%s: first event %+v", how, ev)
		}
		if how == "stop" {
			srv.Stop()
		} else {
			srv.Kill()
		}
		ev := nextOf(t, ch, how+": etcd gone")
		if ev.Kind != meta.EventResync || !errors.Is(ev.Err, meta.ErrUnavailable) {
			t.Fatalf("%s: event %+v, want a resync wrapping ErrUnavailable", how, ev)
		}
		wantClosed(t, ch, how)
		if _, err := r.Load(ctx); !errors.Is(err, meta.ErrUnavailable) {
			t.Errorf("%s: Load while etcd is down: %v, want ErrUnavailable", how, err)
		}
		if err := srv.Restart(); err != nil {
			t.Fatal(err)
		}
		snap, err = loadRetrying(ctx, r)
		if err != nil {
			t.Fatalf("%s: Load after restart: %v", how, err)
		}
		ch = r.Watch(ctx, snap.Rev)
		g := metatest.NewFolder(metatest.User(2), "v", how)
		if err := createRetrying(ctx, w, g); err != nil {
			t.Fatal(err)
		}
		if ev := nextOf(t, ch, how+": after restart"); ev.Kind != meta.EventFolder || ev.Folder.ID != g.ID {
			t.Fatalf("%s: event after restart %+v", how, ev)
		}
	}
}

// loadRetrying loads a snapshot, retrying while etcd comes back.
func loadRetrying(ctx context.Context, s *etcdstore.Store) (meta.Snapshot, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		snap, err := s.Load(ctx)
		if err == nil || !errors.Is(err, meta.ErrUnavailable) || time.Now().After(deadline) {
			return snap, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func createRetrying(ctx context.Context, s *etcdstore.Store, f meta.Folder) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := s.CreateFolder(ctx, f, 0)
		if err == nil || !errors.Is(err, meta.ErrUnavailable) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}
