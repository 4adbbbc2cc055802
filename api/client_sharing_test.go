package api

import (
	"context"
	"net/http"
	"testing"

	"github.com/vfolder/vfolder/meta"
)

// TestClientSharingRequests checks the sharing calls' method, path, query
// and body.
func TestClientSharingRequests(t *testing.T) {
	var answer any
	d := startFake(t, func(w http.ResponseWriter, r *http.Request) {
		status := http.StatusOK
		if r.URL.Path == "/v1/invitations" {
			status = http.StatusCreated
		}
		writeJSON(w, status, answer)
	})
	c := NewClient(d.socket)
	ctx := context.Background()
	const bob = "3c2b8d5f6e4a5b9fad1c2a3f4e5d6c7b"
	inv := Invitation{Invitation: meta.Invitation{ID: "0123456789abcdef0123456789abcdef", State: meta.InvitePending}}
	owner := testUser
	sh := Share{Share: meta.Share{User: bob, Permission: meta.PermRO}, Owner: owner, Via: "invited"}

	runRequestCases(t, d, &answer, []requestCase{
		{"invite", inv, func() (any, error) {
			return c.Invite(ctx, InviteRequest{Folder: "data", User: testUser.UUID, Invitee: bob, Permission: meta.PermRO})
		}, recorded{Method: "POST", Path: "/v1/invitations",
			Body: `{"folder":"data","user":"` + testUser.UUID + `","invitee":"` + bob + `","permission":"ro"}`}},
		{"accept", inv, func() (any, error) { return c.SettleInvitation(ctx, inv.ID, "accept", bob) },
			recorded{Method: "POST", Path: "/v1/invitations/" + inv.ID + "/accept", Body: `{"user":"` + bob + `"}`}},
		{"cancel", inv, func() (any, error) { return c.SettleInvitation(ctx, inv.ID, "cancel", "") },
			recorded{Method: "POST", Path: "/v1/invitations/" + inv.ID + "/cancel", Body: `{}`}},
		{"invitations", []Invitation{inv}, func() (any, error) { return c.Invitations(ctx, bob) },
			recorded{Method: "GET", Path: "/v1/users/" + bob + "/invitations"}},
		{"reach", []ReachedFolder{{Folder: Folder{Folder: meta.Folder{Name: "data", Owner: owner}}, ViewName: "data", Via: "invited"}}, func() (any, error) { return c.Reach(ctx, bob) },
			recorded{Method: "GET", Path: "/v1/users/" + bob + "/reach"}},
		{"status", UserStatus{User: bob, Usage: []ScopeUsage{{Scope: owner, Volume: "local", UsedBytes: 5}}}, func() (any, error) { return c.UserStatus(ctx, bob) },
			recorded{Method: "GET", Path: "/v1/users/" + bob + "/status"}},
		{"leave", sh, func() (any, error) { return c.Leave(ctx, bob, "data@01234567") },
			recorded{Method: "POST", Path: "/v1/users/" + bob + "/leave", Body: `{"folder":"data@01234567"}`}},
		{"shares", []Share{sh}, func() (any, error) { return c.Shares(ctx, "data", owner) },
			recorded{Method: "GET", Path: "/v1/folders/data/shares", Ref: "data", Query: "owner=user%3A" + testUser.UUID}},
		{"share", sh, func() (any, error) {
			return c.SetShare(ctx, "data", owner, ShareRequest{User: bob, Permission: meta.PermRO})
		},
			recorded{Method: "POST", Path: "/v1/folders/data/shares", Ref: "data", Query: "owner=user%3A" + testUser.UUID, Body: `{"user":"` + bob + `","permission":"ro"}`}},
		{"unshare", sh, func() (any, error) { return c.Unshare(ctx, "data", owner, bob) },
			recorded{Method: "DELETE", Path: "/v1/folders/data/shares/" + bob, Query: "owner=user%3A" + testUser.UUID}},
	})

	expectRefused(t, d, map[string]func() error{
		"empty invitation": func() error { _, err := c.SettleInvitation(ctx, "", "accept", bob); return err },
		"empty user":       func() error { _, err := c.Reach(ctx, ""); return err },
		"dot user":         func() error { _, err := c.Invitations(ctx, ".."); return err },
		"empty unshare":    func() error { _, err := c.Unshare(ctx, "data", owner, ""); return err },
	})
}
