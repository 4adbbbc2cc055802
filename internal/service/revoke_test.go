package service

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/meta"
	"github.com/vfolder/vfolder/mountd"
)

func (f *fakeMounts) Withdraw(sid, key string) error {
	if err := mountd.ValidateKey(key); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.stacks[sid], key)
	f.ops = append(f.ops, "withdraw "+sid+"/"+key)
	return nil
}

func hasPlace(fv *fakeViews, p string) bool { return slices.Contains(fv.places(), p) }

// TestPublishRevokes: after an unshare the invited folder leaves the
// invitee's standing view at once but stays in the running session until
// its next publish, which takes it out (host side, view, record) and says
// so; a membership lowered below a mount's mode revokes that mount on the
// next publish too, even one that adds nothing.
func TestPublishRevokes(t *testing.T) {
	e, fv, fm := newSessionEnv(t)
	ctx := context.Background()
	data := e.createAs(t, "data", alice, meta.PermRW)
	e.createAs(t, "own", bob, meta.PermRW)
	e.createAs(t, "more", bob, meta.PermRW)
	proj := e.createAs(t, "pdata", project, meta.PermRW)
	if _, err := e.svc.SetMember(ctx, project.UUID, bob.UUID, meta.PermRW); err != nil {
		t.Fatal(err)
	}
	inv := e.invite(t, data.ID, bob, meta.PermRW)
	if _, err := e.svc.SettleInvitation(ctx, inv.ID, bob.UUID, meta.InviteAccepted); err != nil {
		t.Fatal(err)
	}
	no := false
	s := e.publish(t, "s1", api.PublishRequest{User: bob.UUID, Automount: &no, Mounts: []api.MountRequest{
		{Folder: data.ID, Mode: meta.PermRW}, {Folder: "own"}, {Folder: "pdata", Mode: meta.PermRW}}})
	if len(s.Mounts) != 3 || len(s.Revoked) != 0 {
		t.Fatalf("publish: %+v", s)
	}
	fm.takeOps()

	if _, err := e.svc.Unshare(ctx, data.ID, meta.ScopeID{}, bob.UUID); err != nil {
		t.Fatal(err)
	}
	// The standing view goes at once; the session keeps its mount.
	if hasPlace(fv, "users/"+bob.UUID+"/data rw") {
		t.Errorf("the standing view of the unshared folder is still there: %v", fv.places())
	}
	if !hasPlace(fv, "sessions/s1/data rw") || fm.top("s1", "data") == "" {
		t.Fatalf("the session lost the mount before its next publish: %v", fv.places())
	}
	if got, err := e.svc.Session(ctx, "s1"); err != nil || len(got.Mounts) != 3 {
		t.Fatalf("session before the next publish: %+v, %v", got, err)
	}

	// The next publish (of another folder) takes it out and says so.
	s = e.publish(t, "s1", api.PublishRequest{User: bob.UUID, Automount: &no, Mounts: []api.MountRequest{{Folder: "more"}}})
	if len(s.Revoked) != 1 || s.Revoked[0].FolderID != data.ID || s.Revoked[0].Name != "data" || s.Revoked[0].Target != "/home/work/data" ||
		s.Revoked[0].Mode != meta.PermRW || !strings.Contains(s.Revoked[0].Reason, "no longer reaches folder \"data\"") {
		t.Errorf("revoked: %+v", s.Revoked)
	}
	var names []string
	for _, m := range s.Mounts {
		names = append(names, m.Name)
	}
	if strings.Join(names, " ") != "own pdata more" {
		t.Errorf("mounts after the revocation: %v", names)
	}
	if hasPlace(fv, "sessions/s1/data rw") || fm.top("s1", "data") != "" {
		t.Errorf("the revoked mount is still there: views %v, host %q", fv.places(), fm.top("s1", "data"))
	}
	if ops := fm.takeOps(); len(ops) == 0 || ops[0] != "withdraw s1/data" {
		t.Errorf("host operations: %v; want the withdraw first", ops)
	}
	rec, err := e.store.GetSession(ctx, "s1")
	if err != nil || len(rec.Mounts) != 3 || slices.ContainsFunc(rec.Mounts, func(m meta.SessionMount) bool { return m.FolderID == data.ID }) {
		t.Errorf("record after the revocation: %+v, %v", rec, err)
	}
	// Not in use by a session any more: the owner may trash it.
	if _, err := e.svc.Trash(ctx, data.ID, alice); err != nil {
		t.Errorf("trash of the folder after the revocation: %v", err)
	}

	// A membership lowered to ro: the rw mount of the project folder goes
	// on the next publish, even one that adds nothing.
	if _, err := e.svc.SetMember(ctx, project.UUID, bob.UUID, meta.PermRO); err != nil {
		t.Fatal(err)
	}
	s = e.publish(t, "s1", api.PublishRequest{User: bob.UUID, Automount: &no, Mounts: []api.MountRequest{{Folder: "more"}}})
	if len(s.Revoked) != 1 || s.Revoked[0].FolderID != proj.ID || !strings.Contains(s.Revoked[0].Reason, "now has ro on folder \"pdata\"") {
		t.Errorf("revoked after lowering the membership: %+v", s.Revoked)
	}
	if len(s.Mounts) != 2 || hasPlace(fv, "sessions/s1/pdata rw") {
		t.Errorf("after lowering the membership: mounts %+v, views %v", s.Mounts, fv.places())
	}
	// It may be published again at ro.
	s = e.publish(t, "s1", api.PublishRequest{User: bob.UUID, Automount: &no, Mounts: []api.MountRequest{{Folder: "pdata", Mode: meta.PermRO}}})
	if len(s.Revoked) != 0 || len(s.Mounts) != 3 || !hasPlace(fv, "sessions/s1/pdata ro") {
		t.Errorf("pdata again at ro: %+v, views %v", s, fv.places())
	}
	// Nothing else changed: a publish revokes nothing.
	s = e.publish(t, "s1", api.PublishRequest{User: bob.UUID, Automount: &no})
	if len(s.Revoked) != 0 || len(s.Mounts) != 3 {
		t.Errorf("a publish with nothing to revoke: %+v", s)
	}
	// The volume's mount permission taken from the user: every mount goes.
	if _, err := e.svc.SetPolicy(ctx, bob, meta.Policy{Volumes: map[string][]string{"local": {string(VolCreate)}}}); err != nil {
		t.Fatal(err)
	}
	s = e.publish(t, "s1", api.PublishRequest{User: bob.UUID, Automount: &no})
	if len(s.Revoked) != 3 || len(s.Mounts) != 0 || !strings.Contains(s.Revoked[0].Reason, string(VolMount)) {
		t.Errorf("after the mount permission was taken: %+v", s)
	}
	for _, p := range fv.places() {
		if strings.HasPrefix(p, "sessions/s1/") {
			t.Errorf("a session view is left: %s", p)
		}
	}
	if _, err := e.svc.Unpublish(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
}

// TestRevocationStandsWhenPublishIsRefused: the revocation a publish
// makes first stays even when the rest of the request is refused.
func TestRevocationStandsWhenPublishIsRefused(t *testing.T) {
	e, fv, fm := newSessionEnv(t)
	ctx := context.Background()
	data := e.createAs(t, "data", alice, meta.PermRW)
	e.createAs(t, "own", bob, meta.PermRW)
	inv := e.invite(t, data.ID, bob, meta.PermRO)
	if _, err := e.svc.SettleInvitation(ctx, inv.ID, bob.UUID, meta.InviteAccepted); err != nil {
		t.Fatal(err)
	}
	no := false
	e.publish(t, "s1", api.PublishRequest{User: bob.UUID, Automount: &no, Mounts: []api.MountRequest{{Folder: "data"}, {Folder: "own"}}})
	if _, err := e.svc.Leave(ctx, bob.UUID, "data"); err != nil {
		t.Fatal(err)
	}
	_, err := e.svc.Publish(ctx, "s1", api.PublishRequest{User: bob.UUID, Automount: &no, Mounts: []api.MountRequest{{Folder: "nosuch"}}})
	wantCode(t, err, api.CodeNotFound)
	got, err := e.svc.Session(ctx, "s1")
	if err != nil || len(got.Mounts) != 1 || got.Mounts[0].Name != "own" {
		t.Errorf("session after a refused publish: %+v, %v", got, err)
	}
	if hasPlace(fv, "sessions/s1/data ro") || fm.top("s1", "data") != "" {
		t.Errorf("the revoked mount is still there: %v", fv.places())
	}
	if _, err := e.svc.Unpublish(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
}
