package service

import (
	"context"
	"strings"
	"testing"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/meta"
)

var carol = meta.ScopeID{Kind: meta.KindUser, UUID: "6f5e4d3c2b1a40998877665544332211"}

func (e *env) invite(t *testing.T, folder string, invitee meta.ScopeID, perm meta.Permission) api.Invitation {
	t.Helper()
	inv, err := e.svc.Invite(context.Background(), api.InviteRequest{Folder: folder, Invitee: invitee.UUID, Permission: perm})
	if err != nil {
		t.Fatalf("invite %s to %s: %v", invitee, folder, err)
	}
	return inv
}

// TestInvitationViews: an accepted invitation shows the folder in the
// invitee's users/<uuid>/ at the invited permission, capped by the
// folder's; a clash gets the owner's tag; unshare and leave take it away
// at once; purge removes the records.
func TestInvitationViews(t *testing.T) {
	e, fv := newViewEnv(t)
	ctx := context.Background()
	a, b := "users/"+alice.UUID+"/", "users/"+bob.UUID+"/"
	data := e.createAs(t, "data", alice, meta.PermRW)
	e.createAs(t, "data", bob, meta.PermRW)
	base := []string{a + "data rw", b + "data rw"}
	wantPlaces(t, fv, base...)

	inv := e.invite(t, data.ID, bob, meta.PermRO)
	if inv.State != meta.InvitePending || inv.Inviter != alice.UUID || inv.FolderName != "data" || inv.Direction != api.DirOutgoing {
		t.Errorf("Invite = %+v", inv)
	}
	wantPlaces(t, fv, base...) // pending: nothing yet
	is, err := e.svc.Invitations(ctx, bob.UUID)
	if err != nil || len(is) != 1 || is[0].ID != inv.ID || is[0].Direction != api.DirIncoming {
		t.Fatalf("Invitations(bob) = %+v, %v", is, err)
	}
	if _, err := e.svc.SettleInvitation(ctx, inv.ID, alice.UUID, meta.InviteAccepted); Code(err) != api.CodeForbidden {
		t.Errorf("the inviter accepted: %v", err)
	}
	if _, err := e.svc.SettleInvitation(ctx, inv.ID, bob.UUID, meta.InviteAccepted); err != nil {
		t.Fatal(err)
	}
	a8 := alice.UUID[:8]
	wantPlaces(t, fv, append(base, b+"data@"+a8+" ro")...)
	r, err := e.svc.Reach(ctx, bob.UUID)
	if err != nil || len(r) != 2 || r[1].Via != ViaInvited || r[1].Perm != meta.PermRO || r[1].Name != "data@"+a8 || r[0].Via != ViaOwner {
		t.Errorf("Reach(bob) = %+v, %v", r, err)
	}

	// Raising the share is capped at the owner's permission.
	if _, err := e.svc.SetShare(ctx, data.ID, meta.ScopeID{}, api.ShareRequest{User: bob.UUID, Permission: meta.PermWD}); Code(err) != api.CodeForbidden ||
		!strings.Contains(err.Error(), "exceeds the owner's permission") {
		t.Errorf("share above the owner's: %v", err)
	}
	if _, err := e.svc.SetShare(ctx, data.ID, meta.ScopeID{}, api.ShareRequest{User: bob.UUID, Permission: meta.PermRW}); err != nil {
		t.Fatal(err)
	}
	wantPlaces(t, fv, append(base, b+"data@"+a8+" rw")...)
	// Lowering the folder's own permission lowers the invitee's at once
	// (the view follows through the owner's sync).
	if _, err := e.store.UpdateFolder(ctx, data.ID, func(f *meta.Folder) error { f.Permission = meta.PermRO; return nil }); err != nil {
		t.Fatal(err)
	}
	e.svc.syncOwner(ctx, alice)
	wantPlaces(t, fv, a+"data ro", b+"data rw", b+"data@"+a8+" ro")

	// A restart builds the invitee's view from the store.
	fv2 := newFakeViews()
	if err := e.svc.StartViews(ctx, fv2); err != nil {
		t.Fatal(err)
	}
	wantPlaces(t, fv2, a+"data ro", b+"data rw", b+"data@"+a8+" ro")

	// Unshare: gone at once; again is not found.
	if sh, err := e.svc.Unshare(ctx, "data", alice, bob.UUID); err != nil || sh.Via != ViaInvited {
		t.Fatalf("Unshare = %+v, %v", sh, err)
	}
	wantPlaces(t, fv2, a+"data ro", b+"data rw")
	if _, err := e.svc.Unshare(ctx, data.ID, meta.ScopeID{}, bob.UUID); Code(err) != api.CodeNotFound {
		t.Errorf("unshare twice: %v", err)
	}

	// Invite again, accept, leave by view name.
	inv2 := e.invite(t, data.ID, bob, meta.PermRO)
	if _, err := e.svc.SettleInvitation(ctx, inv2.ID, "", meta.InviteAccepted); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Leave(ctx, bob.UUID, "data"); Code(err) != api.CodeInvalid {
		t.Errorf("leaving one's own folder: %v", err)
	}
	if _, err := e.svc.Leave(ctx, bob.UUID, "data@"+a8); err != nil {
		t.Fatal(err)
	}
	wantPlaces(t, fv2, a+"data ro", b+"data rw")

	// Purge removes invitations and shares.
	inv3 := e.invite(t, data.ID, carol, meta.PermRO)
	if _, err := e.svc.SettleInvitation(ctx, inv3.ID, carol.UUID, meta.InviteAccepted); err != nil {
		t.Fatal(err)
	}
	e.invite(t, data.ID, bob, meta.PermRO)
	wantPlaces(t, fv2, a+"data ro", b+"data rw", "users/"+carol.UUID+"/data ro")
	if _, err := e.svc.Trash(ctx, data.ID, alice); err != nil {
		t.Fatal(err)
	}
	wantPlaces(t, fv2, b+"data rw")
	if _, err := e.svc.Purge(ctx, data.ID, alice, "data"); err != nil {
		t.Fatal(err)
	}
	for _, u := range []meta.ScopeID{alice, bob, carol} {
		if is, err := e.svc.Invitations(ctx, u.UUID); err != nil || len(is) != 0 {
			t.Errorf("invitations of %s after the purge: %+v, %v", u, is, err)
		}
		if sh, err := e.store.SharesOf(ctx, u.UUID); err != nil || len(sh) != 0 {
			t.Errorf("shares of %s after the purge: %+v, %v", u, sh, err)
		}
	}
}

// TestInviteRefusals: what cannot be invited, each with a clear message.
func TestInviteRefusals(t *testing.T) {
	e, _ := newViewEnv(t)
	ctx := context.Background()
	data := e.createAs(t, "data", alice, meta.PermRW)
	dot := e.createAs(t, ".cache", alice, meta.PermRW)
	proj := e.createAs(t, "shared", project, meta.PermRW)
	for _, tc := range []struct {
		name string
		req  api.InviteRequest
		code string
		msg  string
	}{
		{"dot-folder", api.InviteRequest{Folder: dot.ID, Invitee: bob.UUID, Permission: meta.PermRO}, api.CodeForbidden, "dot-folder"},
		{"project folder", api.InviteRequest{Folder: proj.ID, Invitee: bob.UUID, Permission: meta.PermRO}, api.CodeForbidden, "project folders cannot be invited"},
		{"oneself", api.InviteRequest{Folder: data.ID, Invitee: alice.UUID, Permission: meta.PermRO}, api.CodeInvalid, "cannot invite themselves"},
		{"above the owner", api.InviteRequest{Folder: data.ID, Invitee: bob.UUID, Permission: meta.PermWD}, api.CodeForbidden, "permission wd exceeds the owner's permission on folder \"data\" (rw)"},
		{"bad permission", api.InviteRequest{Folder: data.ID, Invitee: bob.UUID, Permission: "all"}, api.CodeInvalid, "permission"},
		{"bad invitee", api.InviteRequest{Folder: data.ID, Invitee: "bob", Permission: meta.PermRO}, api.CodeInvalid, "invitee"},
		{"not the owner", api.InviteRequest{Folder: data.ID, User: bob.UUID, Invitee: carol.UUID, Permission: meta.PermRO}, api.CodeNotFound, ""},
	} {
		_, err := e.svc.Invite(ctx, tc.req)
		if Code(err) != tc.code || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v; want %s mentioning %q", tc.name, err, tc.code, tc.msg)
		}
	}
	inv := e.invite(t, data.ID, bob, meta.PermRW)
	if _, err := e.svc.Invite(ctx, api.InviteRequest{Folder: data.ID, Invitee: bob.UUID, Permission: meta.PermRO}); Code(err) != api.CodeExists {
		t.Errorf("a second pending invitation: %v", err)
	}
	if _, err := e.svc.SettleInvitation(ctx, inv.ID, bob.UUID, meta.InviteCanceled); Code(err) != api.CodeForbidden {
		t.Errorf("the invitee canceled: %v", err)
	}
	got, err := e.svc.SettleInvitation(ctx, inv.ID, alice.UUID, meta.InviteCanceled)
	if err != nil || got.State != meta.InviteCanceled {
		t.Fatalf("cancel = %+v, %v", got, err)
	}
	if _, err := e.svc.SettleInvitation(ctx, inv.ID, bob.UUID, meta.InviteAccepted); Code(err) != api.CodeConflict {
		t.Errorf("accepting a canceled invitation: %v", err)
	}
	inv = e.invite(t, data.ID, bob, meta.PermRW)
	if got, err := e.svc.SettleInvitation(ctx, inv.ID, bob.UUID, meta.InviteRejected); err != nil || got.State != meta.InviteRejected {
		t.Errorf("reject = %+v, %v", got, err)
	}
	if r, _ := e.svc.Reach(ctx, bob.UUID); len(r) != 0 {
		t.Errorf("bob reaches %+v after a cancel and a reject", r)
	}
}

// TestProjectShares: a per-folder share beats the membership's default,
// needs a membership, and unshare gives the default back.
func TestProjectShares(t *testing.T) {
	e, fv := newViewEnv(t)
	ctx := context.Background()
	b := "users/" + bob.UUID + "/"
	p := "projects/" + project.UUID + "/"
	e.createAs(t, "shared", project, meta.PermRW)
	e.createAs(t, "other", project, meta.PermRW)
	if _, err := e.svc.SetShare(ctx, "shared", project, api.ShareRequest{User: bob.UUID, Permission: meta.PermRO}); Code(err) != api.CodeForbidden ||
		!strings.Contains(err.Error(), "not a member") {
		t.Errorf("share to a non-member: %v", err)
	}
	if _, err := e.svc.SetMember(ctx, project.UUID, bob.UUID, meta.PermWD); err != nil {
		t.Fatal(err)
	}
	base := []string{p + "other rw", p + "shared rw"}
	wantPlaces(t, fv, append(base, b+"other wd", b+"shared wd")...)
	sh, err := e.svc.SetShare(ctx, "shared", project, api.ShareRequest{User: bob.UUID, Permission: meta.PermRO})
	if err != nil || sh.Via != ViaShared || sh.Permission != meta.PermRO {
		t.Fatalf("SetShare = %+v, %v", sh, err)
	}
	wantPlaces(t, fv, append(base, b+"other wd", b+"shared ro")...)
	r, err := e.svc.Reach(ctx, bob.UUID)
	if err != nil || len(r) != 2 || r[0].Via != ViaProject || r[1].Via != ViaShared || r[1].Perm != meta.PermRO {
		t.Errorf("Reach = %+v, %v", r, err)
	}
	st, err := e.svc.UserStatus(ctx, bob.UUID)
	if err != nil || st.ProjectFolders != 2 || st.InvitedFolders != 0 || st.FoldersCreated != 0 || len(st.Usage) != 2 {
		t.Errorf("UserStatus = %+v, %v", st, err)
	}
	// The membership goes: the share counts for nothing.
	if _, err := e.svc.RemoveMember(ctx, project.UUID, bob.UUID); err != nil {
		t.Fatal(err)
	}
	wantPlaces(t, fv, base...)
	if _, err := e.svc.SetMember(ctx, project.UUID, bob.UUID, ""); err != nil {
		t.Fatal(err)
	}
	wantPlaces(t, fv, append(base, b+"other rw", b+"shared ro")...)
	if _, err := e.svc.Unshare(ctx, "shared", project, bob.UUID); err != nil {
		t.Fatal(err)
	}
	wantPlaces(t, fv, append(base, b+"other rw", b+"shared rw")...)
	if _, err := e.svc.Leave(ctx, bob.UUID, "shared"); Code(err) != api.CodeInvalid {
		t.Errorf("leave a project folder: %v", err)
	}
}

// TestPublishInvited: publish mounts an invited folder at no more than
// the granted permission; after unshare it cannot be mounted.
func TestPublishInvited(t *testing.T) {
	e, _, _ := newSessionEnv(t)
	ctx := context.Background()
	data := e.createAs(t, "data", alice, meta.PermWD)
	inv := e.invite(t, data.ID, bob, meta.PermRO)
	if _, err := e.svc.Publish(ctx, "s0", api.PublishRequest{User: bob.UUID, Mounts: []api.MountRequest{{Folder: data.ID}}}); Code(err) != api.CodeForbidden {
		t.Errorf("publish of a pending invitation: %v", err)
	}
	if _, err := e.svc.SettleInvitation(ctx, inv.ID, bob.UUID, meta.InviteAccepted); err != nil {
		t.Fatal(err)
	}
	_, err := e.svc.Publish(ctx, "s1", api.PublishRequest{User: bob.UUID, Mounts: []api.MountRequest{{Folder: "data", Mode: meta.PermRW}}})
	if Code(err) != api.CodeForbidden || !strings.Contains(err.Error(), "exceeds the permission") {
		t.Errorf("publish above the granted permission: %v", err)
	}
	s := e.publish(t, "s2", api.PublishRequest{User: bob.UUID, Mounts: []api.MountRequest{{Folder: data.ID}}})
	if len(s.Mounts) != 1 || s.Mounts[0].Mode != meta.PermRO || s.Mounts[0].FolderID != data.ID {
		t.Errorf("publish of an invited folder = %+v", s.Mounts)
	}
	if _, err := e.svc.Unshare(ctx, data.ID, meta.ScopeID{}, bob.UUID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Publish(ctx, "s3", api.PublishRequest{User: bob.UUID, Mounts: []api.MountRequest{{Folder: data.ID}}}); Code(err) != api.CodeForbidden {
		t.Errorf("publish after unshare: %v", err)
	}
}
