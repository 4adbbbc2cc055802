package service

import (
	"context"
	"testing"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/internal/testutil/etcdtest"
	"github.com/vfolder/vfolder/meta"
)

// TestClusterSharesFollow: an invitation accepted, a share changed and a
// share revoked through one node change the invitee's users/<uuid>/ on
// the other, and so does a rename of the shared folder.
func TestClusterSharesFollow(t *testing.T) {
	srv := etcdtest.Start(t)
	p, vol := newClusterPrefix(), t.TempDir()
	a := startClusterNode(t, srv, p, "a", vol)
	b := startClusterNode(t, srv, p, "b", vol)
	ctx := context.Background()
	bobs := func(name, mode string) func() bool {
		return func() bool {
			for _, pl := range b.fv.places() {
				if pl == "users/"+bob.UUID+"/"+name+" "+mode {
					return true
				}
			}
			return false
		}
	}
	f, err := a.svc.CreateFolder(ctx, api.CreateFolderRequest{Name: "data", Volume: "local", Owner: alice, Permission: meta.PermRW})
	if err != nil {
		t.Fatal(err)
	}
	inv, err := a.svc.Invite(ctx, api.InviteRequest{Folder: f.ID, Invitee: bob.UUID, Permission: meta.PermRO})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.svc.SettleInvitation(ctx, inv.ID, bob.UUID, meta.InviteAccepted); err != nil {
		t.Fatal(err)
	}
	eventually(t, within, "accept through a seen by b", bobs("data", "ro"))
	if _, err := a.svc.SetShare(ctx, f.ID, meta.ScopeID{}, api.ShareRequest{User: bob.UUID, Permission: meta.PermRW}); err != nil {
		t.Fatal(err)
	}
	eventually(t, within, "share change through a seen by b", bobs("data", "rw"))
	if _, err := a.svc.Rename(ctx, f.ID, meta.ScopeID{}, "renamed"); err != nil {
		t.Fatal(err)
	}
	eventually(t, within, "rename through a seen by b", bobs("renamed", "rw"))
	if _, err := a.svc.Unshare(ctx, f.ID, meta.ScopeID{}, bob.UUID); err != nil {
		t.Fatal(err)
	}
	eventually(t, within, "unshare through a seen by b", func() bool { return !b.hasPlace("users/" + bob.UUID + "/renamed") })
}
