package service

import (
	"context"
	"strings"
	"testing"

	"github.com/vfolder/vfolder/api"
	vfs "github.com/vfolder/vfolder/fs"
	"github.com/vfolder/vfolder/meta"
)

var project2 = meta.ScopeID{Kind: meta.KindProject, UUID: "5e4dafb7806c7dbacf3e4c5b6a7f8e9d"}

func (e *env) createAs(t *testing.T, name string, owner meta.ScopeID, perm meta.Permission) api.Folder {
	t.Helper()
	f, err := e.svc.CreateFolder(context.Background(), api.CreateFolderRequest{Name: name, Volume: "local", Owner: owner, Permission: perm})
	if err != nil {
		t.Fatalf("create %q: %v", name, err)
	}
	return f
}

// TestMembershipViews: a member reaches the project's folders under
// users/<member>/ at once, at the membership's permission or the
// folder's, with the naming rule for clashes.
func TestMembershipViews(t *testing.T) {
	e, fv := newViewEnv(t)
	ctx := context.Background()
	u := "users/" + alice.UUID + "/"
	p := "projects/" + project.UUID + "/"
	q := "projects/" + project2.UUID + "/"
	p8, q8 := project.UUID[:8], project2.UUID[:8]

	e.createAs(t, "data", alice, meta.PermRW)
	e.createAs(t, "shared", alice, meta.PermRW)
	e.createAs(t, "shared", project, meta.PermRW)
	e.createAs(t, "models", project, meta.PermRO)
	e.createAs(t, ".local", project, meta.PermRW)
	e.createAs(t, "models", project2, meta.PermRW)
	base := []string{u + "data rw", u + "shared rw", p + ".local rw", p + "models ro", p + "shared rw", q + "models rw"}
	wantPlaces(t, fv, base...)

	// Membership: the project's folders appear under the member; the
	// owned "shared" keeps its name; .local is not shown.
	if m, err := e.svc.SetMember(ctx, meta.DashedUUID(project.UUID), alice.UUID, ""); err != nil || m.Project != project.UUID || m.User != alice.UUID {
		t.Fatalf("SetMember = %+v, %v", m, err)
	}
	wantPlaces(t, fv, append(base, u+"models ro", u+"shared@"+p8+" rw")...)

	// A second project with "models": both become suffixed; the override
	// gives ro on everything of project2.
	if _, err := e.svc.SetMember(ctx, project2.UUID, alice.UUID, meta.PermRO); err != nil {
		t.Fatal(err)
	}
	wantPlaces(t, fv, append(base, u+"models@"+p8+" ro", u+"models@"+q8+" ro", u+"shared@"+p8+" rw")...)

	// Changing the permission updates the view at once.
	if _, err := e.svc.SetMember(ctx, project.UUID, alice.UUID, meta.PermWD); err != nil {
		t.Fatal(err)
	}
	wantPlaces(t, fv, append(base, u+"models@"+p8+" wd", u+"models@"+q8+" ro", u+"shared@"+p8+" wd")...)

	// A folder created in the project shows at once for the member;
	// renaming it away from the clash gives it the plain name.
	f := e.createAs(t, "new", project, meta.PermRW)
	if _, err := e.svc.Rename(ctx, f.ID, project, "fresh"); err != nil {
		t.Fatal(err)
	}
	wantPlaces(t, fv, append(base, p+"fresh rw", u+"fresh wd", u+"models@"+p8+" wd", u+"models@"+q8+" ro", u+"shared@"+p8+" wd")...)
	if _, err := e.svc.Trash(ctx, f.ID, project); err != nil {
		t.Fatal(err)
	}

	// Removing a membership takes its folders away at once; the other
	// project's "models" gets its plain name back.
	m, err := e.svc.RemoveMember(ctx, project.UUID, alice.UUID)
	if err != nil || m.Permission != meta.PermWD {
		t.Fatalf("RemoveMember = %+v, %v", m, err)
	}
	wantPlaces(t, fv, append(base, u+"models ro")...)
	if _, err := e.svc.RemoveMember(ctx, project.UUID, alice.UUID); Code(err) != api.CodeNotFound {
		t.Errorf("removing twice: %v", err)
	}
	ms, err := e.svc.Members(ctx, project2.UUID)
	if err != nil || len(ms) != 1 || ms[0].User != alice.UUID || ms[0].Permission != meta.PermRO {
		t.Errorf("Members = %+v, %v", ms, err)
	}
	if ms, err := e.svc.Members(ctx, project.UUID); err != nil || ms == nil || len(ms) != 0 {
		t.Errorf("Members of a project without members = %#v, %v; want an empty list", ms, err)
	}

	// A restart builds the same views from the store.
	fv2 := newFakeViews()
	if err := e.svc.StartViews(ctx, fv2); err != nil {
		t.Fatal(err)
	}
	wantPlaces(t, fv2, append(base, u+"models ro")...)
}

func TestMemberInput(t *testing.T) {
	e, fv := newViewEnv(t)
	ctx := context.Background()
	fv.takeOps()
	for _, tc := range []struct {
		p, u string
		perm meta.Permission
		want string
	}{
		{"nope", alice.UUID, "", "project"},
		{project.UUID, "bob", "", "user"},
		{project.UUID, alice.UUID, "rwx", "permission"},
		{"", alice.UUID, "", "project"},
	} {
		_, err := e.svc.SetMember(ctx, tc.p, tc.u, tc.perm)
		if Code(err) != api.CodeInvalid || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("SetMember(%q, %q, %q) = %v; want invalid mentioning %q", tc.p, tc.u, tc.perm, err, tc.want)
		}
	}
	if _, err := e.svc.Members(ctx, "x"); Code(err) != api.CodeInvalid {
		t.Errorf("Members(x) = %v", err)
	}
	if _, err := e.svc.RemoveMember(ctx, project.UUID, "x"); Code(err) != api.CodeInvalid {
		t.Errorf("RemoveMember(bad user) = %v", err)
	}
	if ops := fv.takeOps(); len(ops) != 0 {
		t.Errorf("refused calls changed views: %v", ops)
	}
}

// TestReachNames checks the naming rule's corner cases directly.
func TestReachNames(t *testing.T) {
	mk := func(id byte, name string, owner meta.ScopeID, perm meta.Permission) meta.Folder {
		return meta.Folder{ID: strings.Repeat(string(id), 32), Name: name, Owner: owner, Permission: perm, Status: meta.StatusReady}
	}
	p8 := project.UUID[:8]
	owned := []meta.Folder{mk('1', "data", alice, meta.PermRW), mk('2', "data@"+p8, alice, meta.PermRO)}
	shared := []memberFolders{
		{m: meta.Membership{Project: project.UUID, User: alice.UUID}, folders: []meta.Folder{
			mk('3', "data", project, meta.PermRO), mk('4', "only", project, meta.PermRW), mk('5', ".local", project, meta.PermRW),
			mk('6', "misowned", bob, meta.PermRW)}},
	}
	got := map[string]string{}
	for _, e := range reach(alice.UUID, owned, shared) {
		got[e.name] = e.folder.ID[:1] + string(e.mode)
	}
	want := map[string]string{"data": "1rw", "data@" + p8: "2ro", "data@" + project.UUID: "3ro", "only": "4rw"}
	if len(got) != len(want) {
		t.Errorf("reach = %v; want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("reach[%q] = %q; want %q (all: %v)", k, got[k], v, got)
		}
	}
	// The membership's permission replaces the folder's.
	shared[0].m.Permission = meta.PermWD
	for _, e := range reach(alice.UUID, nil, shared) {
		if e.mode != meta.PermWD || e.ns != vfs.NSUsers || e.key != alice.UUID {
			t.Errorf("with an override: %+v", e)
		}
	}
}
