package service

import (
	"context"
	"testing"

	"github.com/vfolder/vfolder/api"
	vfs "github.com/vfolder/vfolder/fs"
	"github.com/vfolder/vfolder/meta"
)

// TestViewsChownPolicy: the volume's chown policy reaches every view of
// its folders (fs.ViewSpec.RefuseChown), standing and session views alike.
func TestViewsChownPolicy(t *testing.T) {
	for _, tc := range []struct {
		policy meta.ChownPolicy
		refuse bool
	}{{"", false}, {meta.ChownIgnore, false}, {meta.ChownRefuse, true}} {
		e, fv := newViewEnv(t)
		ctx := context.Background()
		if err := e.svc.AttachVolume(ctx, meta.Volume{Name: "local", Path: e.vol, RWCanDelete: true, MountAllowed: true, Chown: tc.policy}); err != nil {
			t.Fatal(err)
		}
		f := e.create(t, "data", alice)
		if _, _, err := e.svc.AddSessionView(ctx, api.CreateViewRequest{Session: "s", Name: "x", Folder: f.ID}); err != nil {
			t.Fatal(err)
		}
		for _, pl := range []viewPlace{{vfs.NSUsers, alice.UUID, "data"}, {vfs.NSSessions, "s", "x"}} {
			sp, ok := fv.views[pl]
			if !ok {
				t.Fatalf("chown %q: no view at %s", tc.policy, pl)
			}
			if sp.RefuseChown != tc.refuse {
				t.Errorf("chown %q: view %s has RefuseChown %v, want %v", tc.policy, pl, sp.RefuseChown, tc.refuse)
			}
		}
	}
}
