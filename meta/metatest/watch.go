package metatest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/vfolder/vfolder/meta"
)

// WatchingStore is a store that is also a meta.Watcher.
type WatchingStore interface {
	meta.Store
	meta.Watcher
}

// eventWait is how long the suite waits for an event before it calls it
// missing: a failure detector, not a latency target (benchmarks measure
// latency).
const eventWait = 15 * time.Second

// RunWatcherSuite checks the meta.Watcher contract. open must return two
// stores on one new, empty backing (two nodes of one cluster): the suite
// writes through the first and watches through the second.
func RunWatcherSuite(t *testing.T, open func(t *testing.T) (writer meta.Store, watcher WatchingStore)) {
	t.Run("Events", func(t *testing.T) { testWatchEvents(t, open) })
	t.Run("FromSnapshot", func(t *testing.T) { testWatchFromSnapshot(t, open) })
	t.Run("Ends", func(t *testing.T) { testWatchEnds(t, open) })
	t.Run("Shares", func(t *testing.T) { testWatchShares(t, open) })
}

// nextEvent returns the next event of ch, failing t if none comes.
func nextEvent(t *testing.T, ch <-chan meta.Event, what string) meta.Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatalf("%s: the event channel closed", what)
		}
		if ev.Kind == meta.EventResync {
			t.Fatalf("%s: resync: %v", what, ev.Err)
		}
		return ev
	case <-time.After(eventWait):
		t.Fatalf("%s: no event within %v", what, eventWait)
	}
	panic("unreachable")
}

// describe renders the kind, deletion and identity of an event.
func describe(ev meta.Event) string {
	id := ""
	switch ev.Kind {
	case meta.EventVolume:
		id = ev.Volume.Name
	case meta.EventScope:
		id = ev.Scope.Volume + "/" + ev.Scope.ID.String()
	case meta.EventFolder:
		id = ev.Folder.ID
	case meta.EventPolicy:
		id = ev.Policy.Owner.String()
	case meta.EventMembership:
		id = ev.Membership.Project + "/" + ev.Membership.User
	case meta.EventSession:
		id = ev.Session.ID
	}
	if ev.Deleted {
		return fmt.Sprintf("%s %s deleted", ev.Kind, id)
	}
	return fmt.Sprintf("%s %s", ev.Kind, id)
}

// testWatchEvents makes one change of every kind through the writer and
// checks that the watcher reports each, in order, with the record as the
// change left it (or as it was, for a removal), and nothing else.
func testWatchEvents(t *testing.T, open func(t *testing.T) (meta.Store, WatchingStore)) {
	w, r := open(t)
	ctx := t.Context()
	snap, err := r.Load(ctx)
	wantNoErr(t, "Load", err)
	if snap.Rev <= 0 {
		t.Errorf("Load of an empty store: revision %d, want > 0", snap.Rev)
	}
	ch := r.Watch(ctx, snap.Rev)

	a := NewFolder(User(1), "v", "a")
	b := NewFolder(User(1), "v", "b")
	p, u := Project(1).UUID, User(1).UUID
	type change struct {
		do    func() error
		want  string
		check func(ev meta.Event) error
	}
	changes := []change{
		{func() error { return w.PutVolume(ctx, meta.Volume{Name: "v", Path: "/vfroot/v", MountAllowed: true}) },
			"volume v", func(ev meta.Event) error {
				if ev.Volume.Path != "/vfroot/v" || !ev.Volume.MountAllowed {
					return fmt.Errorf("volume %+v", *ev.Volume)
				}
				return nil
			}},
		{func() error { return w.CreateScope(ctx, meta.QuotaScope{Volume: "v", ID: User(1), LimitBytes: 10}) },
			"scope v/" + User(1).String(), func(ev meta.Event) error {
				if ev.Scope.LimitBytes != 10 {
					return fmt.Errorf("scope %+v", *ev.Scope)
				}
				return nil
			}},
		{func() error {
			_, err := w.UpdateScope(ctx, "v", User(1), func(q *meta.QuotaScope) error { q.LimitBytes = 20; return nil })
			return err
		}, "scope v/" + User(1).String(), func(ev meta.Event) error {
			if ev.Scope.LimitBytes != 20 {
				return fmt.Errorf("scope limit %d after the update, want 20", ev.Scope.LimitBytes)
			}
			return nil
		}},
		{func() error { return w.CreateFolder(ctx, a, 0) }, "folder " + a.ID, nil},
		{func() error { return w.CreateFolder(ctx, b, 0) }, "folder " + b.ID, func(ev meta.Event) error {
			if ev.Folder.Name != "b" || ev.Folder.Owner != User(1) || ev.Folder.Status != meta.StatusReady {
				return fmt.Errorf("folder %+v", *ev.Folder)
			}
			return nil
		}},
		{func() error {
			_, err := w.UpdateFolder(ctx, b.ID, func(f *meta.Folder) error { f.Name = "b2"; return nil })
			return err
		}, "folder " + b.ID, func(ev meta.Event) error {
			if ev.Folder.Name != "b2" {
				return fmt.Errorf("renamed folder is named %q", ev.Folder.Name)
			}
			return nil
		}},
		{func() error {
			_, err := w.UpdateFolder(ctx, b.ID, func(f *meta.Folder) error { f.Status = meta.StatusDeletePending; return nil })
			return err
		}, "folder " + b.ID, func(ev meta.Event) error {
			if ev.Folder.Status != meta.StatusDeletePending || ev.Folder.Name != "b2" {
				return fmt.Errorf("trashed folder %+v", *ev.Folder)
			}
			return nil
		}},
		{func() error { return w.DeleteFolder(ctx, a.ID) }, "folder " + a.ID + " deleted", func(ev meta.Event) error {
			// A removal names at least the record; a store that still has
			// the old value gives all of it.
			if ev.Folder.Name != "" && (ev.Folder.Name != "a" || ev.Folder.Owner != User(1)) {
				return fmt.Errorf("deleted folder %+v", *ev.Folder)
			}
			return nil
		}},
		{func() error { return w.SetPolicy(ctx, User(1), meta.Policy{MaxFolderCount: 3}) }, "policy " + User(1).String(),
			func(ev meta.Event) error {
				if ev.Policy.Policy.MaxFolderCount != 3 {
					return fmt.Errorf("policy %+v", *ev.Policy)
				}
				return nil
			}},
		{func() error { return w.SetPolicy(ctx, User(1), meta.Policy{}) }, "policy " + User(1).String() + " deleted", nil},
		{func() error {
			return w.SetMembership(ctx, meta.Membership{Project: p, User: u, Permission: meta.PermRO})
		},
			"membership " + p + "/" + u, func(ev meta.Event) error {
				if ev.Membership.Permission != meta.PermRO {
					return fmt.Errorf("membership %+v", *ev.Membership)
				}
				return nil
			}},
		{func() error { return w.RemoveMembership(ctx, p, u) }, "membership " + p + "/" + u + " deleted", nil},
		{func() error { return w.PutSession(ctx, NewSession("s1", User(1), Mount(b.ID, "b"))) }, "session s1",
			func(ev meta.Event) error {
				if len(ev.Session.Mounts) != 1 || ev.Session.Mounts[0].FolderID != b.ID {
					return fmt.Errorf("session %+v", *ev.Session)
				}
				return nil
			}},
		{func() error { return w.DeleteSession(ctx, "s1") }, "session s1 deleted", nil},
		// A last marker: the event after the session's removal must be
		// this one, so nothing else came in between.
		{func() error { return w.PutVolume(ctx, meta.Volume{Name: "end", Path: "/end"}) }, "volume end", nil},
	}
	last := snap.Rev
	var slowest time.Duration
	for i, c := range changes {
		wantNoErr(t, fmt.Sprintf("change %d (%s)", i, c.want), c.do())
		done := time.Now()
		ev := nextEvent(t, ch, c.want)
		if took := time.Since(done); took > slowest {
			slowest = took
		}
		if got := describe(ev); got != c.want {
			t.Fatalf("change %d: event %q, want %q", i, got, c.want)
		}
		if ev.Rev <= last {
			t.Errorf("change %d (%s): revision %d, not after %d", i, c.want, ev.Rev, last)
		}
		last = ev.Rev
		if c.check != nil {
			if err := c.check(ev); err != nil {
				t.Errorf("change %d (%s): %v", i, c.want, err)
			}
		}
	}
	t.Logf("slowest event arrived %v after its change returned", slowest)
}

// testWatchFromSnapshot: a snapshot and the events after its revision add
// up to the store's state: changes made before Load are in the snapshot
// and not in the stream, changes made after it (also before Watch is
// called) are in the stream.
func testWatchFromSnapshot(t *testing.T, open func(t *testing.T) (meta.Store, WatchingStore)) {
	w, r := open(t)
	ctx := t.Context()
	before := mustCreate(t, ctx, w, NewFolder(User(1), "v", "before"), 0)
	wantNoErr(t, "SetMembership", w.SetMembership(ctx, meta.Membership{Project: Project(1).UUID, User: User(1).UUID}))
	wantNoErr(t, "PutSession", w.PutSession(ctx, NewSession("s", User(1), Mount(before.ID, "x"))))
	wantNoErr(t, "SetPolicy", w.SetPolicy(ctx, User(1), meta.Policy{MaxFolderCount: 5}))
	snap, err := r.Load(ctx)
	wantNoErr(t, "Load", err)
	if len(snap.Folders) != 1 || snap.Folders[0].ID != before.ID || len(snap.Memberships) != 1 || len(snap.Sessions) != 1 ||
		len(snap.Policies) != 1 || snap.Policies[0].Owner != User(1) || snap.Policies[0].Policy.MaxFolderCount != 5 {
		t.Fatalf("snapshot %+v does not hold what was written", snap)
	}
	after := mustCreate(t, ctx, w, NewFolder(User(1), "v", "after"), 0)
	_, err = w.UpdateFolder(ctx, before.ID, func(f *meta.Folder) error { f.Name = "renamed"; return nil })
	wantNoErr(t, "rename", err)
	ch := r.Watch(ctx, snap.Rev)
	for _, want := range []string{"folder " + after.ID, "folder " + before.ID} {
		if got := describe(nextEvent(t, ch, want)); got != want {
			t.Fatalf("event %q, want %q", got, want)
		}
	}
	// Applying nothing more, the snapshot plus the two events is the state.
	now, err := r.Load(ctx)
	wantNoErr(t, "Load", err)
	if len(now.Folders) != 2 || now.Rev <= snap.Rev {
		t.Errorf("second snapshot %+v", now)
	}
	// Watching from the newest snapshot delivers only what follows.
	ch2 := r.Watch(ctx, now.Rev)
	wantNoErr(t, "DeleteFolder", w.DeleteFolder(ctx, after.ID))
	if got, want := describe(nextEvent(t, ch2, "delete")), "folder "+after.ID+" deleted"; got != want {
		t.Errorf("event %q, want %q", got, want)
	}
	ev := nextEvent(t, ch, "delete on the first stream")
	if ev.Folder.ID != after.ID || (ev.Folder.Name != "" && ev.Folder.Name != "after") {
		t.Errorf("a deleted folder's event carries %+v, want its id (and the record as it was)", *ev.Folder)
	}
	// Snapshots encode alike, whoever loads them.
	ws, ok := w.(WatchingStore)
	if ok {
		mine, err := ws.Load(ctx)
		wantNoErr(t, "Load through the writer", err)
		theirs, err := r.Load(ctx)
		wantNoErr(t, "Load through the watcher", err)
		mine.Rev, theirs.Rev = 0, 0
		a, _ := json.Marshal(mine)
		b, _ := json.Marshal(theirs)
		if string(a) != string(b) {
			t.Errorf("the two stores load different snapshots:\n%s\n%s", a, b)
		}
	}
}

// testWatchEnds: a stream ends (its channel closes) when its context ends
// and when the store is closed; Watch on a closed store returns a closed
// channel.
func testWatchEnds(t *testing.T, open func(t *testing.T) (meta.Store, WatchingStore)) {
	_, r := open(t)
	ctx, cancel := context.WithCancel(t.Context())
	ch := r.Watch(ctx, 0)
	cancel()
	drain(t, ch, "after its context ended")
	ch = r.Watch(t.Context(), 0)
	wantNoErr(t, "Close", r.Close())
	drain(t, ch, "after the store closed")
	drain(t, r.Watch(t.Context(), 0), "of a closed store")
	_, err := r.Load(t.Context())
	if !errors.Is(err, meta.ErrClosed) {
		t.Errorf("Load after Close: %v, want ErrClosed", err)
	}
}

// drain waits for ch to close; it may deliver a resync first, nothing
// else.
func drain(t *testing.T, ch <-chan meta.Event, what string) {
	t.Helper()
	timeout := time.After(eventWait)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				return
			}
			if ev.Kind != meta.EventResync {
				t.Errorf("stream %s delivered %s", what, describe(ev))
			}
		case <-timeout:
			t.Fatalf("stream %s did not end within %v", what, eventWait)
		}
	}
}
