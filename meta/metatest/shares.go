package metatest

// Conformance checks of shares and invitations (meta/shares.go).

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vfolder/vfolder/meta"
)

func runShareSuite(su suite, t *testing.T) {
	su.run(t, "Shares", testShares)
	su.run(t, "ShareValidation", testShareValidation)
	su.run(t, "Invitations", testInvitations)
	su.run(t, "InvitationValidation", testInvitationValidation)
	su.run(t, "DeleteFolderShares", testDeleteFolderShares)
	su.run(t, "RaceInvitations", testRaceInvitations)
	su.run(t, "ShareCopies", testShareCopies)
}

func shareList(t *testing.T, what string, got []meta.Share, want ...meta.Share) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d shares %v, want %d %v", what, len(got), got, len(want), want)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Folder != w.Folder || g.User != w.User || g.Permission != w.Permission {
			t.Errorf("%s[%d] = %s/%s %s, want %s/%s %s", what, i, g.Folder, g.User, g.Permission, w.Folder, w.User, w.Permission)
		}
		if g.CreatedAt.IsZero() || g.UpdatedAt.IsZero() {
			t.Errorf("%s[%d]: times not set: %v %v", what, i, g.CreatedAt, g.UpdatedAt)
		}
	}
}

func testShares(t *testing.T, ctx context.Context, s meta.Store) {
	u1, u2, u3 := User(1).UUID, User(2).UUID, User(3).UUID
	fa := mustCreate(t, ctx, s, NewFolder(Project(1), "v", "a"), 0)
	fb := mustCreate(t, ctx, s, NewFolder(User(1), "v", "b"), 0)

	got, err := s.ListShares(ctx, fa.ID)
	wantNoErr(t, "ListShares(empty)", err)
	shareList(t, "ListShares(empty)", got)
	got, err = s.SharesOf(ctx, u2)
	wantNoErr(t, "SharesOf(empty)", err)
	shareList(t, "SharesOf(empty)", got)
	_, err = s.GetShare(ctx, fa.ID, u2)
	wantErr(t, "GetShare(absent)", err, meta.ErrNotFound)
	wantErr(t, "RemoveShare(absent)", s.RemoveShare(ctx, fa.ID, u2), meta.ErrNotFound)
	wantErr(t, "PutShare(no folder)", s.PutShare(ctx, meta.Share{Folder: meta.NewFolderID(), User: u2, Permission: meta.PermRO}), meta.ErrNotFound)

	a3 := meta.Share{Folder: fa.ID, User: u3, Permission: meta.PermWD}
	a2 := meta.Share{Folder: fa.ID, User: u2, Permission: meta.PermRO}
	b2 := meta.Share{Folder: fb.ID, User: u2, Permission: meta.PermRW}
	for _, sh := range []meta.Share{a3, b2, a2} {
		wantNoErr(t, "PutShare", s.PutShare(ctx, sh))
	}
	got, err = s.ListShares(ctx, fa.ID)
	wantNoErr(t, "ListShares", err)
	shareList(t, "ListShares(a)", got, a2, a3)
	got, err = s.SharesOf(ctx, u2)
	wantNoErr(t, "SharesOf", err)
	want := []meta.Share{a2, b2}
	meta.SortShares(want)
	shareList(t, "SharesOf(u2)", got, want...)

	// Replace keeps CreatedAt; arguments in any UUID form.
	first, err := s.GetShare(ctx, strings.ToUpper(fa.ID), u2)
	wantNoErr(t, "GetShare(upper)", err)
	time.Sleep(2 * time.Millisecond)
	a2.Permission = meta.PermRW
	wantNoErr(t, "PutShare(replace)", s.PutShare(ctx, a2))
	again, err := s.GetShare(ctx, fa.ID, u2)
	wantNoErr(t, "GetShare", err)
	if again.Permission != meta.PermRW || !again.CreatedAt.Equal(first.CreatedAt) || !again.UpdatedAt.After(first.UpdatedAt) {
		t.Errorf("replaced share %+v; first %+v: want rw, same CreatedAt, later UpdatedAt", again, first)
	}
	got, err = s.SharesOf(ctx, u2)
	wantNoErr(t, "SharesOf", err)
	want = []meta.Share{a2, b2}
	meta.SortShares(want)
	shareList(t, "SharesOf(u2) after replace", got, want...)

	all, err := s.AllShares(ctx)
	wantNoErr(t, "AllShares", err)
	want = []meta.Share{a2, a3, b2}
	meta.SortShares(want)
	shareList(t, "AllShares", all, want...)

	wantNoErr(t, "RemoveShare", s.RemoveShare(ctx, dashed(fa.ID), u2))
	_, err = s.GetShare(ctx, fa.ID, u2)
	wantErr(t, "GetShare(removed)", err, meta.ErrNotFound)
	got, err = s.SharesOf(ctx, u2)
	wantNoErr(t, "SharesOf", err)
	shareList(t, "SharesOf(u2) after remove", got, b2)
	got, err = s.ListShares(ctx, fa.ID)
	wantNoErr(t, "ListShares", err)
	shareList(t, "ListShares(a) after remove", got, a3)
	_ = u1
}

// dashed renders a 32-hex id in the 8-4-4-4-12 form.
func dashed(h string) string {
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func testShareValidation(t *testing.T, ctx context.Context, s meta.Store) {
	f := mustCreate(t, ctx, s, NewFolder(Project(1), "v", "a"), 0)
	u := User(2).UUID
	for _, sh := range []meta.Share{
		{Folder: f.ID, User: u},
		{Folder: f.ID, User: u, Permission: "rwx"},
		{Folder: strings.ToUpper(f.ID), User: u, Permission: meta.PermRO},
		{Folder: f.ID, User: "nope", Permission: meta.PermRO},
		{Folder: "", User: u, Permission: meta.PermRO},
	} {
		wantErr(t, "PutShare(bad)", s.PutShare(ctx, sh), meta.ErrInvalid)
	}
	_, err := s.GetShare(ctx, "x", u)
	wantErr(t, "GetShare(bad folder)", err, meta.ErrInvalid)
	_, err = s.SharesOf(ctx, "x")
	wantErr(t, "SharesOf(bad)", err, meta.ErrInvalid)
	_, err = s.ListShares(ctx, "x")
	wantErr(t, "ListShares(bad)", err, meta.ErrInvalid)
	wantErr(t, "RemoveShare(bad)", s.RemoveShare(ctx, f.ID, "x"), meta.ErrInvalid)
	wantErr(t, "DeleteFolderShares(bad)", s.DeleteFolderShares(ctx, "x"), meta.ErrInvalid)
	got, err := s.ListShares(ctx, f.ID)
	wantNoErr(t, "ListShares", err)
	shareList(t, "ListShares after refused puts", got)
}

func newInvitation(folder, inviter, invitee string, p meta.Permission) meta.Invitation {
	return meta.Invitation{ID: meta.NewInvitationID(), Folder: folder, Inviter: inviter, Invitee: invitee, Permission: p, State: meta.InvitePending}
}

func invitationIDs(is []meta.Invitation) string {
	var b strings.Builder
	for _, i := range is {
		b.WriteString(i.ID[:6] + ":" + string(i.State) + " ")
	}
	return b.String()
}

func testInvitations(t *testing.T, ctx context.Context, s meta.Store) {
	u1, u2, u3 := User(1).UUID, User(2).UUID, User(3).UUID
	f := mustCreate(t, ctx, s, NewFolder(User(1), "v", "data"), 0)
	g := mustCreate(t, ctx, s, NewFolder(User(1), "v", "more"), 0)

	is, err := s.ListInvitations(ctx, u1)
	wantNoErr(t, "ListInvitations(empty)", err)
	if len(is) != 0 {
		t.Fatalf("ListInvitations(empty) = %v", is)
	}
	_, err = s.GetInvitation(ctx, meta.NewInvitationID())
	wantErr(t, "GetInvitation(absent)", err, meta.ErrNotFound)
	_, err = s.SettleInvitation(ctx, meta.NewInvitationID(), meta.InviteAccepted)
	wantErr(t, "SettleInvitation(absent)", err, meta.ErrNotFound)
	wantErr(t, "CreateInvitation(no folder)", s.CreateInvitation(ctx, newInvitation(meta.NewFolderID(), u1, u2, meta.PermRO)), meta.ErrNotFound)

	i12 := newInvitation(f.ID, u1, u2, meta.PermRW)
	wantNoErr(t, "CreateInvitation", s.CreateInvitation(ctx, i12))
	wantErr(t, "CreateInvitation(same id)", s.CreateInvitation(ctx, meta.Invitation{ID: i12.ID, Folder: g.ID, Inviter: u1, Invitee: u3, Permission: meta.PermRO, State: meta.InvitePending}), meta.ErrExists)
	wantErr(t, "CreateInvitation(second pending)", s.CreateInvitation(ctx, newInvitation(f.ID, u1, u2, meta.PermRO)), meta.ErrExists)
	time.Sleep(2 * time.Millisecond)
	i13 := newInvitation(f.ID, u1, u3, meta.PermRO)
	wantNoErr(t, "CreateInvitation(u3)", s.CreateInvitation(ctx, i13))

	got, err := s.GetInvitation(ctx, dashed(i12.ID))
	wantNoErr(t, "GetInvitation", err)
	if got.Folder != f.ID || got.Inviter != u1 || got.Invitee != u2 || got.Permission != meta.PermRW || got.State != meta.InvitePending || got.CreatedAt.IsZero() {
		t.Errorf("GetInvitation = %+v", got)
	}
	is, err = s.ListInvitations(ctx, u1)
	wantNoErr(t, "ListInvitations(u1)", err)
	if len(is) != 2 || is[0].ID != i12.ID || is[1].ID != i13.ID {
		t.Errorf("ListInvitations(u1) = %s; want %s then %s", invitationIDs(is), i12.ID[:6], i13.ID[:6])
	}
	is, err = s.ListInvitations(ctx, u2)
	wantNoErr(t, "ListInvitations(u2)", err)
	if len(is) != 1 || is[0].ID != i12.ID {
		t.Errorf("ListInvitations(u2) = %s", invitationIDs(is))
	}

	// Accept: the share comes in the same call.
	acc, err := s.SettleInvitation(ctx, i12.ID, meta.InviteAccepted)
	wantNoErr(t, "SettleInvitation(accept)", err)
	if acc.State != meta.InviteAccepted {
		t.Errorf("accepted invitation is %s", acc.State)
	}
	sh, err := s.GetShare(ctx, f.ID, u2)
	wantNoErr(t, "GetShare after accept", err)
	if sh.Permission != meta.PermRW {
		t.Errorf("share after accept: %+v", sh)
	}
	_, err = s.SettleInvitation(ctx, i12.ID, meta.InviteRejected)
	wantErr(t, "SettleInvitation(settled)", err, meta.ErrConflict)
	// A share held: no new invitation.
	wantErr(t, "CreateInvitation(share held)", s.CreateInvitation(ctx, newInvitation(f.ID, u1, u2, meta.PermRO)), meta.ErrExists)

	// Reject, then a new invitation is allowed.
	_, err = s.SettleInvitation(ctx, i13.ID, meta.InvitePending)
	wantErr(t, "SettleInvitation(pending)", err, meta.ErrInvalid)
	_, err = s.SettleInvitation(ctx, i13.ID, "maybe")
	wantErr(t, "SettleInvitation(unknown)", err, meta.ErrInvalid)
	rej, err := s.SettleInvitation(ctx, i13.ID, meta.InviteRejected)
	wantNoErr(t, "SettleInvitation(reject)", err)
	if rej.State != meta.InviteRejected {
		t.Errorf("rejected invitation is %s", rej.State)
	}
	if _, err := s.GetShare(ctx, f.ID, u3); !errors.Is(err, meta.ErrNotFound) {
		t.Errorf("share after reject: %v", err)
	}
	again := newInvitation(f.ID, u1, u3, meta.PermRO)
	wantNoErr(t, "CreateInvitation(after reject)", s.CreateInvitation(ctx, again))
	canc, err := s.SettleInvitation(ctx, again.ID, meta.InviteCanceled)
	wantNoErr(t, "SettleInvitation(cancel)", err)
	if canc.State != meta.InviteCanceled {
		t.Errorf("canceled invitation is %s", canc.State)
	}
	is, err = s.ListInvitations(ctx, u3)
	wantNoErr(t, "ListInvitations(u3)", err)
	if len(is) != 2 || is[0].State != meta.InviteRejected || is[1].State != meta.InviteCanceled {
		t.Errorf("ListInvitations(u3) = %s", invitationIDs(is))
	}

	// Accepting when the invitee got a share meanwhile.
	i3g := newInvitation(g.ID, u1, u3, meta.PermRO)
	wantNoErr(t, "CreateInvitation(g)", s.CreateInvitation(ctx, i3g))
	wantNoErr(t, "PutShare(g)", s.PutShare(ctx, meta.Share{Folder: g.ID, User: u3, Permission: meta.PermRW}))
	_, err = s.SettleInvitation(ctx, i3g.ID, meta.InviteAccepted)
	wantErr(t, "SettleInvitation(share held)", err, meta.ErrExists)
	still, err := s.GetInvitation(ctx, i3g.ID)
	wantNoErr(t, "GetInvitation", err)
	if still.State != meta.InvitePending {
		t.Errorf("a refused accept changed the invitation: %s", still.State)
	}
	// The folder goes: accepting fails, nothing changes.
	wantNoErr(t, "RemoveShare(g)", s.RemoveShare(ctx, g.ID, u3))
	wantNoErr(t, "DeleteFolder(g)", s.DeleteFolder(ctx, g.ID))
	_, err = s.SettleInvitation(ctx, i3g.ID, meta.InviteAccepted)
	wantErr(t, "SettleInvitation(folder gone)", err, meta.ErrNotFound)
	if _, err := s.GetShare(ctx, g.ID, u3); !errors.Is(err, meta.ErrNotFound) {
		t.Errorf("share of a gone folder: %v", err)
	}
}

func testInvitationValidation(t *testing.T, ctx context.Context, s meta.Store) {
	f := mustCreate(t, ctx, s, NewFolder(User(1), "v", "data"), 0)
	u1, u2 := User(1).UUID, User(2).UUID
	ok := newInvitation(f.ID, u1, u2, meta.PermRO)
	for name, mod := range map[string]func(*meta.Invitation){
		"id":         func(i *meta.Invitation) { i.ID = "x" },
		"upper id":   func(i *meta.Invitation) { i.ID = strings.ToUpper(i.ID) },
		"folder":     func(i *meta.Invitation) { i.Folder = "x" },
		"inviter":    func(i *meta.Invitation) { i.Inviter = "" },
		"invitee":    func(i *meta.Invitation) { i.Invitee = "x" },
		"permission": func(i *meta.Invitation) { i.Permission = "all" },
		"state":      func(i *meta.Invitation) { i.State = meta.InviteAccepted },
		"no state":   func(i *meta.Invitation) { i.State = "" },
	} {
		inv := ok
		mod(&inv)
		wantErr(t, "CreateInvitation(bad "+name+")", s.CreateInvitation(ctx, inv), meta.ErrInvalid)
	}
	_, err := s.GetInvitation(ctx, "x")
	wantErr(t, "GetInvitation(bad)", err, meta.ErrInvalid)
	_, err = s.ListInvitations(ctx, "x")
	wantErr(t, "ListInvitations(bad)", err, meta.ErrInvalid)
	_, err = s.SettleInvitation(ctx, "x", meta.InviteAccepted)
	wantErr(t, "SettleInvitation(bad)", err, meta.ErrInvalid)
	is, err := s.ListInvitations(ctx, u1)
	wantNoErr(t, "ListInvitations", err)
	if len(is) != 0 {
		t.Errorf("refused invitations were stored: %s", invitationIDs(is))
	}
}

func testDeleteFolderShares(t *testing.T, ctx context.Context, s meta.Store) {
	u1, u2, u3 := User(1).UUID, User(2).UUID, User(3).UUID
	f := mustCreate(t, ctx, s, NewFolder(User(1), "v", "data"), 0)
	keep := mustCreate(t, ctx, s, NewFolder(User(1), "v", "keep"), 0)
	wantNoErr(t, "DeleteFolderShares(none)", s.DeleteFolderShares(ctx, f.ID))
	acc := newInvitation(f.ID, u1, u2, meta.PermRO)
	pend := newInvitation(f.ID, u1, u3, meta.PermRO)
	other := newInvitation(keep.ID, u1, u3, meta.PermRO)
	for _, inv := range []meta.Invitation{acc, pend, other} {
		wantNoErr(t, "CreateInvitation", s.CreateInvitation(ctx, inv))
	}
	_, err := s.SettleInvitation(ctx, acc.ID, meta.InviteAccepted)
	wantNoErr(t, "accept", err)
	wantNoErr(t, "PutShare(keep)", s.PutShare(ctx, meta.Share{Folder: keep.ID, User: u2, Permission: meta.PermRO}))

	wantNoErr(t, "DeleteFolder", s.DeleteFolder(ctx, f.ID))
	wantNoErr(t, "DeleteFolderShares", s.DeleteFolderShares(ctx, dashed(f.ID)))
	got, err := s.ListShares(ctx, f.ID)
	wantNoErr(t, "ListShares", err)
	shareList(t, "ListShares(deleted folder)", got)
	got, err = s.SharesOf(ctx, u2)
	wantNoErr(t, "SharesOf", err)
	shareList(t, "SharesOf(u2)", got, meta.Share{Folder: keep.ID, User: u2, Permission: meta.PermRO})
	for _, id := range []string{acc.ID, pend.ID} {
		if _, err := s.GetInvitation(ctx, id); !errors.Is(err, meta.ErrNotFound) {
			t.Errorf("invitation %s of the deleted folder: %v", id, err)
		}
	}
	is, err := s.ListInvitations(ctx, u3)
	wantNoErr(t, "ListInvitations", err)
	if len(is) != 1 || is[0].ID != other.ID {
		t.Errorf("ListInvitations(u3) = %s; want only %s", invitationIDs(is), other.ID[:6])
	}
	// The same invitee can be invited to the folder of the same name again.
	f2 := mustCreate(t, ctx, s, NewFolder(User(1), "v", "data"), 0)
	wantNoErr(t, "CreateInvitation(new folder)", s.CreateInvitation(ctx, newInvitation(f2.ID, u1, u3, meta.PermRO)))
}

// testRaceInvitations: of many concurrent invitations of one folder to one
// invitee exactly one is created; of concurrent settles of one invitation
// exactly one wins.
func testRaceInvitations(t *testing.T, ctx context.Context, s meta.Store) {
	u1, u2 := User(1).UUID, User(2).UUID
	f := mustCreate(t, ctx, s, NewFolder(User(1), "v", "data"), 0)
	var wg sync.WaitGroup
	var mu sync.Mutex
	created, settled := 0, 0
	ids := make([]string, Races)
	for i := range Races {
		wg.Add(1)
		go func() {
			defer wg.Done()
			inv := newInvitation(f.ID, u1, u2, meta.PermRO)
			ids[i] = inv.ID
			err := s.CreateInvitation(ctx, inv)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				created++
			case !errors.Is(err, meta.ErrExists):
				t.Errorf("CreateInvitation race: %v", err)
			}
		}()
	}
	wg.Wait()
	if created != 1 {
		t.Fatalf("%d of %d concurrent invitations created, want 1", created, Races)
	}
	is, err := s.ListInvitations(ctx, u2)
	wantNoErr(t, "ListInvitations", err)
	if len(is) != 1 {
		t.Fatalf("ListInvitations = %s", invitationIDs(is))
	}
	for i := range Races {
		wg.Add(1)
		go func() {
			defer wg.Done()
			state := meta.InviteAccepted
			if i%2 == 1 {
				state = meta.InviteRejected
			}
			_, err := s.SettleInvitation(ctx, is[0].ID, state)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				settled++
			case !errors.Is(err, meta.ErrConflict):
				t.Errorf("SettleInvitation race: %v", err)
			}
		}()
	}
	wg.Wait()
	if settled != 1 {
		t.Fatalf("%d of %d concurrent settles won, want 1", settled, Races)
	}
	final, err := s.GetInvitation(ctx, is[0].ID)
	wantNoErr(t, "GetInvitation", err)
	_, shareErr := s.GetShare(ctx, f.ID, u2)
	if (final.State == meta.InviteAccepted) != (shareErr == nil) {
		t.Errorf("invitation %s but GetShare: %v", final.State, shareErr)
	}
}

func testShareCopies(t *testing.T, ctx context.Context, s meta.Store) {
	f := mustCreate(t, ctx, s, NewFolder(User(1), "v", "data"), 0)
	u2 := User(2).UUID
	wantNoErr(t, "PutShare", s.PutShare(ctx, meta.Share{Folder: f.ID, User: u2, Permission: meta.PermRO}))
	got, err := s.SharesOf(ctx, u2)
	wantNoErr(t, "SharesOf", err)
	got[0].Permission = meta.PermWD
	again, err := s.GetShare(ctx, f.ID, u2)
	wantNoErr(t, "GetShare", err)
	if again.Permission != meta.PermRO {
		t.Errorf("a returned share aliases the store: %s", again.Permission)
	}
}

// testWatchShares: a share and an invitation through the writer reach the
// watcher as events of their own (an accept as the invitation and the
// share, at one revision), a removal carries the share, and Load holds
// both kinds.
func testWatchShares(t *testing.T, open func(t *testing.T) (meta.Store, WatchingStore)) {
	w, r := open(t)
	ctx := t.Context()
	f := NewFolder(User(1), "v", "data")
	wantNoErr(t, "CreateFolder", w.CreateFolder(ctx, f, 0))
	snap, err := r.Load(ctx)
	wantNoErr(t, "Load", err)
	ch := r.Watch(ctx, snap.Rev)
	u2 := User(2).UUID

	inv := newInvitation(f.ID, User(1).UUID, u2, meta.PermRW)
	wantNoErr(t, "CreateInvitation", w.CreateInvitation(ctx, inv))
	ev := nextEvent(t, ch, "invitation created")
	if ev.Kind != meta.EventInvitation || ev.Invitation.ID != inv.ID || ev.Invitation.State != meta.InvitePending {
		t.Fatalf("after CreateInvitation: %+v", ev)
	}
	_, err = w.SettleInvitation(ctx, inv.ID, meta.InviteAccepted)
	wantNoErr(t, "accept", err)
	got := map[meta.EventKind]meta.Event{}
	for range 2 {
		ev := nextEvent(t, ch, "accept")
		got[ev.Kind] = ev
	}
	shEv, invEv := got[meta.EventShare], got[meta.EventInvitation]
	if shEv.Share == nil || shEv.Share.User != u2 || shEv.Share.Permission != meta.PermRW || shEv.Deleted {
		t.Errorf("share event of the accept: %+v", shEv)
	}
	if invEv.Invitation == nil || invEv.Invitation.State != meta.InviteAccepted || invEv.Rev != shEv.Rev {
		t.Errorf("invitation event of the accept: %+v (share at rev %d)", invEv, shEv.Rev)
	}
	loaded, err := r.Load(ctx)
	wantNoErr(t, "Load", err)
	if len(loaded.Shares) != 1 || loaded.Shares[0].User != u2 || len(loaded.Invitations) != 1 || loaded.Invitations[0].State != meta.InviteAccepted {
		t.Errorf("Load: shares %+v, invitations %+v", loaded.Shares, loaded.Invitations)
	}
	wantNoErr(t, "RemoveShare", w.RemoveShare(ctx, f.ID, u2))
	ev = nextEvent(t, ch, "share removed")
	if ev.Kind != meta.EventShare || !ev.Deleted || ev.Share.Folder != f.ID || ev.Share.User != u2 {
		t.Errorf("after RemoveShare: %+v", ev)
	}
}
