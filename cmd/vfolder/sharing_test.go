package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/meta"
)

const inviteeUUID = "abcdefabcdefabcdefabcdefabcdef01"

// sharingRoutes are the fake API's sharing routes: folders the user owns
// or reaches through a membership, and invitations kept in memory. f.mu
// is held (recording).
func (f *fakeAPI) sharingRoutes(mux *http.ServeMux) {
	invs := map[string]api.Invitation{}
	mux.HandleFunc("GET /v1/users/{user}/reach", func(w http.ResponseWriter, r *http.Request) {
		u := r.PathValue("user")
		out := []api.ReachedFolder{}
		for _, fo := range f.folders {
			if !fo.Status.Live() {
				continue
			}
			switch {
			case fo.Owner.Kind == meta.KindUser && fo.Owner.UUID == u:
				out = append(out, api.ReachedFolder{Folder: fo, ViewName: fo.Name, Via: "owner", EffectivePermission: fo.Permission})
			case fo.Owner.Kind == meta.KindProject:
				if _, ok := f.members[fo.Owner.UUID+"/"+u]; ok {
					out = append(out, api.ReachedFolder{Folder: fo, ViewName: fo.Name, Via: "project", EffectivePermission: fo.Permission})
				}
			}
		}
		for _, inv := range invs {
			if inv.Invitee == u && inv.State == meta.InviteAccepted {
				fo := f.folders[inv.Folder]
				out = append(out, api.ReachedFolder{Folder: fo, ViewName: fo.Name, Via: "invited", EffectivePermission: inv.Permission})
			}
		}
		reply(w, 200, out)
	})
	mux.HandleFunc("POST /v1/invitations", func(w http.ResponseWriter, r *http.Request) {
		var req api.InviteRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			fail(w, 400, api.CodeInvalid, "bad body: %v", err)
			return
		}
		fo, ok := f.folders[req.Folder]
		if !ok {
			for _, o := range f.folders {
				if o.Name == req.Folder && o.Owner.UUID == req.User {
					fo, ok = o, true
				}
			}
		}
		switch {
		case !ok:
			fail(w, 404, api.CodeNotFound, "no folder %q", req.Folder)
			return
		case req.Invitee == fo.Owner.UUID:
			fail(w, 400, api.CodeInvalid, "a user cannot invite themselves")
			return
		case req.Permission.Rank() > fo.Permission.Rank():
			fail(w, 403, api.CodeForbidden, "permission %s exceeds the owner's permission on folder %q (%s)", req.Permission, fo.Name, fo.Permission)
			return
		}
		inv := api.Invitation{Invitation: meta.Invitation{ID: meta.NewInvitationID(), Folder: fo.ID, Inviter: fo.Owner.UUID, Invitee: req.Invitee,
			Permission: req.Permission, State: meta.InvitePending, CreatedAt: time.Now()}, FolderName: fo.Name, Direction: api.DirOutgoing}
		invs[inv.ID] = inv
		reply(w, 201, inv)
	})
	mux.HandleFunc("GET /v1/users/{user}/invitations", func(w http.ResponseWriter, r *http.Request) {
		out := []api.Invitation{}
		for _, inv := range invs {
			switch r.PathValue("user") {
			case inv.Invitee:
				inv.Direction = api.DirIncoming
			case inv.Inviter:
				inv.Direction = api.DirOutgoing
			default:
				continue
			}
			out = append(out, inv)
		}
		reply(w, 200, out)
	})
	mux.HandleFunc("POST /v1/invitations/{id}/{action}", func(w http.ResponseWriter, r *http.Request) {
		var req api.InvitationActionRequest
		_ = json.NewDecoder(r.Body).Decode(&req)
		inv, ok := invs[r.PathValue("id")]
		if !ok {
			fail(w, 404, api.CodeNotFound, "no invitation has id %s", r.PathValue("id"))
			return
		}
		inv.State = map[string]meta.InvitationState{"accept": meta.InviteAccepted, "reject": meta.InviteRejected, "cancel": meta.InviteCanceled}[r.PathValue("action")]
		invs[inv.ID] = inv
		reply(w, 200, inv)
	})
	mux.HandleFunc("GET /v1/users/{user}/status", func(w http.ResponseWriter, r *http.Request) {
		reply(w, 200, api.UserStatus{User: r.PathValue("user"), FoldersCreated: 2, MaxFolders: 5, ProjectFolders: 1, InvitedFolders: 1,
			Usage: []api.ScopeUsage{{Scope: meta.ScopeID{Kind: meta.KindUser, UUID: r.PathValue("user")}, Volume: "local", UsedBytes: 2048, LimitBytes: 1 << 20}}})
	})
	mux.HandleFunc("POST /v1/folders/{ref}/shares", f.withFolder(func(w http.ResponseWriter, r *http.Request, fo api.Folder) {
		var req api.ShareRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			fail(w, 400, api.CodeInvalid, "bad body")
			return
		}
		reply(w, 200, api.Share{Share: meta.Share{Folder: fo.ID, User: req.User, Permission: req.Permission}, FolderName: fo.Name, Owner: fo.Owner, Via: "shared"})
	}))
	mux.HandleFunc("DELETE /v1/folders/{ref}/shares/{user}", f.withFolder(func(w http.ResponseWriter, r *http.Request, fo api.Folder) {
		reply(w, 200, api.Share{Share: meta.Share{Folder: fo.ID, User: r.PathValue("user"), Permission: meta.PermRO}, FolderName: fo.Name, Owner: fo.Owner, Via: "shared"})
	}))
}

func TestSharingCLI(t *testing.T) {
	f := startFakeAPI(t)
	data := createFolder(t, f, "data")
	proj := createFolderAs(t, f, "shared", "--project", projectUUID, "--permission", "rw")
	f.calls()

	r := mustOK(t, f.run(t, "--json", "invite", "data", "--user", userUUID, "--to", inviteeUUID, "--perm", "ro"))
	var inv api.Invitation
	if err := json.Unmarshal([]byte(r.stdout), &inv); err != nil || inv.ID == "" || inv.Folder != data.ID {
		t.Fatalf("invite --json printed %q (%v)", r.stdout, err)
	}
	if calls := f.calls(); len(calls) != 1 || calls[0] != "POST /v1/invitations" {
		t.Errorf("invite called %v", calls)
	}
	r = mustOK(t, f.run(t, "invitations", "--user", inviteeUUID))
	if !strings.Contains(r.stdout, inv.ID) || !strings.Contains(r.stdout, "incoming") || !strings.Contains(r.stdout, "pending") {
		t.Errorf("invitations printed %q", r.stdout)
	}
	var is []api.Invitation
	r = mustOK(t, f.run(t, "--json", "invitations", "--user", userUUID))
	if err := json.Unmarshal([]byte(r.stdout), &is); err != nil || len(is) != 1 || is[0].ID != inv.ID || is[0].Direction != api.DirOutgoing {
		t.Errorf("invitations --json printed %q (%v)", r.stdout, err)
	}
	f.calls()
	r = mustOK(t, f.run(t, "accept", inv.ID, "--user", inviteeUUID))
	if !strings.Contains(r.stdout, "accepted") {
		t.Errorf("accept printed %q", r.stdout)
	}
	if calls := f.calls(); len(calls) != 1 || calls[0] != "POST /v1/invitations/"+inv.ID+"/accept" {
		t.Errorf("accept called %v", calls)
	}

	// list --user: what the user reaches, with how and at which permission;
	// the JSON keeps every field of a folder.
	r = mustOK(t, f.run(t, "--json", "list", "--user", inviteeUUID))
	var rf []api.ReachedFolder
	if err := json.Unmarshal([]byte(r.stdout), &rf); err != nil || len(rf) != 1 || rf[0].ID != data.ID || rf[0].Via != "invited" || rf[0].EffectivePermission != meta.PermRO {
		t.Errorf("list --user --json printed %q (%v)", r.stdout, err)
	}
	var plain []api.Folder
	if err := json.Unmarshal([]byte(r.stdout), &plain); err != nil || plain[0].Name != "data" || plain[0].Owner.UUID != userUUID {
		t.Errorf("list --user --json does not read as folders: %q (%v)", r.stdout, err)
	}
	r = mustOK(t, f.run(t, "list", "--user", inviteeUUID))
	if !strings.Contains(r.stdout, "VIA") || !strings.Contains(r.stdout, "invited") {
		t.Errorf("list --user printed %q", r.stdout)
	}

	f.calls()
	r = mustOK(t, f.run(t, "share", "shared", "--project", projectUUID, "--user", inviteeUUID, "--perm", "ro"))
	if !strings.Contains(r.stdout, "has ro on folder \"shared\"") {
		t.Errorf("share printed %q", r.stdout)
	}
	r = mustOK(t, f.run(t, "unshare", proj.ID, "--user", inviteeUUID))
	if !strings.Contains(r.stdout, "Removed the share") {
		t.Errorf("unshare printed %q", r.stdout)
	}
	calls := f.calls()
	if len(calls) != 2 || calls[0] != "POST /v1/folders/shared/shares?owner=project%3A"+projectUUID || calls[1] != "DELETE /v1/folders/"+proj.ID+"/shares/"+inviteeUUID {
		t.Errorf("share/unshare called %v", calls)
	}

	r = mustOK(t, f.run(t, "status", "--user", userUUID))
	for _, want := range []string{"folders created:  2 / 5", "invited folders:  1", "user:" + userUUID, "1 MiB"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("status printed %q; want %q in it", r.stdout, want)
		}
	}

	runFailCases(t, f, []failCase{
		{"invite without to", []string{"invite", data.ID, "--perm", "ro"}, 2, "needs --to", true, false},
		{"invite without perm", []string{"invite", data.ID, "--to", inviteeUUID}, 2, "needs --perm", true, false},
		{"invite bad perm", []string{"invite", data.ID, "--to", inviteeUUID, "--perm", "all"}, 2, "--perm must be ro, rw or wd", true, false},
		{"invite name without owner", []string{"invite", "data", "--to", inviteeUUID, "--perm", "ro"}, 2, "add --user UUID (the owner)", true, false},
		{"invite oneself", []string{"invite", data.ID, "--to", userUUID, "--perm", "ro"}, 1, "cannot invite themselves", false, false},
		{"invite above", []string{"invite", data.ID, "--to", inviteeUUID, "--perm", "wd"}, 1, "exceeds the owner's permission", false, false},
		{"accept without user", []string{"accept", inv.ID}, 2, "needs --user", true, false},
		{"accept unknown", []string{"accept", meta.NewInvitationID(), "--user", inviteeUUID}, 1, "no invitation", false, false},
		{"share without perm", []string{"share", proj.ID, "--user", inviteeUUID}, 2, "needs --perm", true, false},
		{"unshare name without owner", []string{"unshare", "shared", "--user", inviteeUUID}, 2, "add --owner UUID or --project UUID", true, false},
		{"leave without user", []string{"leave", "data"}, 2, "needs --user", true, false},
		{"status without user", []string{"status"}, 2, "needs --user", true, false},
		{"invitations extra", []string{"invitations", "x", "--user", userUUID}, 2, "takes no arguments", true, false},
	})
}
