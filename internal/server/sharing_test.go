package server

import (
	"context"
	"testing"

	"github.com/vfolder/vfolder/api"
	vfs "github.com/vfolder/vfolder/fs"
	"github.com/vfolder/vfolder/meta"
)

// TestSharingRoutes: the sharing routes and their status codes.
func TestSharingRoutes(t *testing.T) {
	ts := start(t, "", -1)
	if err := ts.svc.StartViews(context.Background(), &memViews{views: map[string]vfs.ViewSpec{}}); err != nil {
		t.Fatal(err)
	}
	const bob = "3c2b8d5f6e4a5b9fad1c2a3f4e5d6c7b"
	a := mustScope(t, alice)
	var f, dot, pf api.Folder
	ts.ok(t, "POST", "/v1/folders", api.CreateFolderRequest{Name: "data", Volume: "local", Owner: a}, &f, 201)
	ts.ok(t, "POST", "/v1/folders", api.CreateFolderRequest{Name: ".cache", Volume: "local", Owner: a}, &dot, 201)
	ts.ok(t, "POST", "/v1/folders", api.CreateFolderRequest{Name: "p", Volume: "local", Owner: mustScope(t, project)}, &pf, 201)

	ts.fail(t, "POST", "/v1/invitations", api.InviteRequest{Folder: dot.ID, Invitee: bob, Permission: meta.PermRO}, 403, api.CodeForbidden)
	ts.fail(t, "POST", "/v1/invitations", api.InviteRequest{Folder: f.ID, Invitee: a.UUID, Permission: meta.PermRO}, 400, api.CodeInvalid)
	ts.fail(t, "POST", "/v1/invitations", api.InviteRequest{Folder: f.ID, Invitee: bob, Permission: meta.PermWD}, 403, api.CodeForbidden)
	ts.fail(t, "POST", "/v1/invitations", map[string]any{"folder": f.ID, "bogus": 1}, 400, api.CodeInvalid)
	var inv api.Invitation
	ts.ok(t, "POST", "/v1/invitations", api.InviteRequest{Folder: "data", User: a.UUID, Invitee: bob, Permission: meta.PermRO}, &inv, 201)
	ts.fail(t, "POST", "/v1/invitations", api.InviteRequest{Folder: f.ID, Invitee: bob, Permission: meta.PermRO}, 409, api.CodeExists)
	var is []api.Invitation
	ts.ok(t, "GET", "/v1/users/"+bob+"/invitations", nil, &is, 200)
	if len(is) != 1 || is[0].ID != inv.ID || is[0].Direction != api.DirIncoming {
		t.Errorf("invitations = %+v", is)
	}
	ts.fail(t, "POST", "/v1/invitations/"+inv.ID+"/maybe", nil, 400, api.CodeInvalid)
	ts.fail(t, "POST", "/v1/invitations/"+inv.ID+"/accept", api.InvitationActionRequest{User: a.UUID}, 403, api.CodeForbidden)
	ts.ok(t, "POST", "/v1/invitations/"+inv.ID+"/accept", api.InvitationActionRequest{User: bob}, &inv, 200)
	ts.fail(t, "POST", "/v1/invitations/"+inv.ID+"/cancel", nil, 409, api.CodeConflict)
	ts.fail(t, "POST", "/v1/invitations/"+meta.NewInvitationID()+"/accept", nil, 404, api.CodeNotFound)

	var reached []api.ReachedFolder
	ts.ok(t, "GET", "/v1/users/"+bob+"/reach", nil, &reached, 200)
	if len(reached) != 1 || reached[0].ID != f.ID || reached[0].Via != "invited" || reached[0].EffectivePermission != meta.PermRO || reached[0].Path == "" {
		t.Errorf("reach = %+v", reached)
	}
	var st api.UserStatus
	ts.ok(t, "GET", "/v1/users/"+bob+"/status", nil, &st, 200)
	if st.InvitedFolders != 1 {
		t.Errorf("status = %+v", st)
	}
	ts.fail(t, "GET", "/v1/users/nobody/status", nil, 400, api.CodeInvalid)

	var sh api.Share
	ts.ok(t, "POST", "/v1/folders/data/shares?owner="+alice, api.ShareRequest{User: bob, Permission: meta.PermRW}, &sh, 200)
	var ss []api.Share
	ts.ok(t, "GET", "/v1/folders/"+f.ID+"/shares", nil, &ss, 200)
	if len(ss) != 1 || ss[0].User != bob || ss[0].Permission != meta.PermRW || ss[0].Via != "invited" {
		t.Errorf("shares = %+v", ss)
	}
	ts.fail(t, "POST", "/v1/folders/"+pf.ID+"/shares", api.ShareRequest{User: bob, Permission: meta.PermRO}, 403, api.CodeForbidden)
	ts.ok(t, "POST", "/v1/users/"+bob+"/leave", api.LeaveRequest{Folder: f.ID}, &sh, 200)
	ts.fail(t, "DELETE", "/v1/folders/"+f.ID+"/shares/"+bob, nil, 404, api.CodeNotFound)
}
