package service

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/meta"
)

// TestCloneFromReach: a user clones what they reach but do not own (a
// project's cloneable folder as a member, an invited cloneable folder) by
// the name they see or by id; the copy is theirs. A folder they do not
// reach is refused, and a reachable folder that is not cloneable too.
func TestCloneFromReach(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	pm, err := e.svc.CreateFolder(ctx, api.CreateFolderRequest{Name: "pmodel", Volume: "local", Owner: project,
		UsageMode: meta.ModeModel, Cloneable: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pm.Path, "w.bin"), []byte("project weights"), 0o640); err != nil {
		t.Fatal(err)
	}
	pplain := e.createAs(t, "pplain", project, meta.PermRW)
	if _, err := e.svc.SetMember(ctx, project.UUID, bob.UUID, meta.PermRO); err != nil {
		t.Fatal(err)
	}
	am := e.model(t, "amodel", true)
	if err := os.WriteFile(filepath.Join(am.Path, "a.bin"), []byte("alice"), 0o640); err != nil {
		t.Fatal(err)
	}

	// A non-member reaches nothing of the project: by id forbidden, by
	// name not found.
	_, err = e.svc.Clone(ctx, pm.ID, carol, api.CloneRequest{Name: "x"})
	wantCode(t, err, api.CodeForbidden)
	if err != nil && !strings.Contains(err.Error(), "may not clone") {
		t.Errorf("refusal: %v", err)
	}
	_, err = e.svc.Clone(ctx, "pmodel", carol, api.CloneRequest{Name: "x"})
	wantCode(t, err, api.CodeNotFound)
	// A member clones by the name they see and by id; not the plain one.
	_, err = e.svc.Clone(ctx, "pplain", bob, api.CloneRequest{Name: "x"})
	wantCode(t, err, api.CodeForbidden)
	_, err = e.svc.Clone(ctx, pplain.ID, bob, api.CloneRequest{Name: "x"})
	wantCode(t, err, api.CodeForbidden)
	c1, err := e.svc.Clone(ctx, "pmodel", bob, api.CloneRequest{Name: "mine"})
	if err != nil {
		t.Fatal(err)
	}
	c2, err := e.svc.Clone(ctx, pm.ID, bob, api.CloneRequest{Name: "mine2"})
	if err != nil {
		t.Fatal(err)
	}
	// An invitee: refused before accepting, then by the view name.
	inv := e.invite(t, am.ID, carol, meta.PermRO)
	_, err = e.svc.Clone(ctx, am.ID, carol, api.CloneRequest{Name: "x"})
	wantCode(t, err, api.CodeForbidden)
	if _, err := e.svc.SettleInvitation(ctx, inv.ID, carol.UUID, meta.InviteAccepted); err != nil {
		t.Fatal(err)
	}
	c3, err := e.svc.Clone(ctx, "amodel", carol, api.CloneRequest{Name: "acopy"})
	if err != nil {
		t.Fatal(err)
	}
	e.svc.Wait()
	for _, c := range []struct {
		f     api.Folder
		owner meta.ScopeID
		file  string
		data  string
	}{{c1, bob, "w.bin", "project weights"}, {c2, bob, "w.bin", "project weights"}, {c3, carol, "a.bin", "alice"}} {
		got, err := e.svc.Folder(ctx, c.f.ID, c.owner)
		if err != nil || got.Status != meta.StatusReady || got.Owner != c.owner {
			t.Fatalf("clone %s: %+v, %v", c.f.Name, got, err)
		}
		if b, err := os.ReadFile(filepath.Join(got.Path, c.file)); err != nil || string(b) != c.data {
			t.Errorf("clone %s: %q, %v", c.f.Name, b, err)
		}
	}
	// Removed from the project, the member reaches it no more.
	if _, err := e.svc.RemoveMember(ctx, project.UUID, bob.UUID); err != nil {
		t.Fatal(err)
	}
	_, err = e.svc.Clone(ctx, pm.ID, bob, api.CloneRequest{Name: "x"})
	wantCode(t, err, api.CodeForbidden)
	// A project caller still clones its own folders by name.
	if _, err := e.svc.Clone(ctx, "pmodel", project, api.CloneRequest{Name: "pcopy"}); err != nil {
		t.Fatal(err)
	}
	e.svc.Wait()
}
