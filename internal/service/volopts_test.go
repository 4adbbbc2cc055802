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

// standingMode is the mode of the standing view users|projects/<key>/<name>
// ("" when there is none).
func standingMode(fv *fakeViews, ns, key, name string) meta.Permission {
	for _, v := range fv.Views() {
		if v.Namespace == ns && v.Key == key && v.Name == name {
			return v.Mode
		}
	}
	return ""
}

func TestVolumePermissions(t *testing.T) {
	e, _, _ := newSessionEnv(t)
	ctx := context.Background()
	// No policy: everything allowed.
	e.createAs(t, "free", alice, meta.PermRW)
	if err := e.svc.CheckVolumePerm(ctx, "local", VolClone, alice, project); err != nil {
		t.Fatalf("no policy: %v", err)
	}

	// Unknown names are refused by the service, bad forms by the store.
	_, err := e.svc.SetPolicy(ctx, alice, meta.Policy{Volumes: map[string][]string{"local": {"fly"}}})
	wantCode(t, err, api.CodeInvalid)
	if err == nil || !strings.Contains(err.Error(), "fly") {
		t.Errorf("unknown permission refused with %v; want the name in the message", err)
	}

	// Only mount on local: create is refused, naming permission and volume.
	if _, err := e.svc.SetPolicy(ctx, alice, meta.Policy{Volumes: map[string][]string{"local": {string(VolMount)}}}); err != nil {
		t.Fatal(err)
	}
	_, err = e.svc.CreateFolder(ctx, api.CreateFolderRequest{Name: "no", Volume: "local", Owner: alice})
	wantCode(t, err, api.CodeForbidden)
	if err == nil || !strings.Contains(err.Error(), `"create-vfolder"`) || !strings.Contains(err.Error(), `"local"`) || !strings.Contains(err.Error(), alice.String()) {
		t.Errorf("create refused with %v; want the permission, the volume and the scope named", err)
	}
	if fs, _ := e.svc.ListFolders(ctx, ListFilter{Owner: alice}); len(fs) != 1 || len(layoutDirs(t, e.vol)) != 1 {
		t.Errorf("a refused create left something: %d records, dirs %v", len(fs), layoutDirs(t, e.vol))
	}
	// Mount is allowed: a publish works.
	e.publish(t, "s1", api.PublishRequest{User: alice.UUID, Mounts: []api.MountRequest{{Folder: "free"}}})

	// A volume the policy does not name allows nothing; an empty map
	// nothing anywhere.
	if err := e.svc.CheckVolumePerm(ctx, "other", VolMount, alice); Code(err) != api.CodeForbidden {
		t.Errorf("volume absent from the map: %v; want forbidden", err)
	}
	if _, err := e.svc.SetPolicy(ctx, alice, meta.Policy{Volumes: map[string][]string{}}); err != nil {
		t.Fatal(err)
	}
	_, err = e.svc.Publish(ctx, "s2", api.PublishRequest{User: alice.UUID, Mounts: []api.MountRequest{{Folder: "free"}}})
	wantCode(t, err, api.CodeForbidden)
	if err == nil || !strings.Contains(err.Error(), `"mount-in-session"`) {
		t.Errorf("publish refused with %v; want mount-in-session named", err)
	}
	if _, err := e.svc.Session(ctx, "s2"); Code(err) != api.CodeNotFound {
		t.Errorf("a refused publish left session s2: %v", err)
	}

	// A project folder needs the project's permission as well.
	if _, err := e.svc.SetPolicy(ctx, alice, meta.Policy{}); err != nil {
		t.Fatal(err)
	}
	shared := e.createAs(t, "shared", project, meta.PermRW)
	if _, err := e.svc.SetMember(ctx, project.UUID, alice.UUID, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.SetPolicy(ctx, project, meta.Policy{Volumes: map[string][]string{"local": {string(VolCreate)}}}); err != nil {
		t.Fatal(err)
	}
	_, err = e.svc.Publish(ctx, "s3", api.PublishRequest{User: alice.UUID, Mounts: []api.MountRequest{{Folder: shared.ID}}})
	wantCode(t, err, api.CodeForbidden)
	if err == nil || !strings.Contains(err.Error(), project.String()) {
		t.Errorf("publish of a project folder refused with %v; want the project named", err)
	}
	// The project may create there; back to nil, everything again.
	e.createAs(t, "shared2", project, meta.PermRW)
	if _, err := e.svc.SetPolicy(ctx, project, meta.Policy{}); err != nil {
		t.Fatal(err)
	}
	e.publish(t, "s3", api.PublishRequest{User: alice.UUID, Mounts: []api.MountRequest{{Folder: shared.ID}}})
}

func TestUpdateOptions(t *testing.T) {
	e, fv, _ := newSessionEnv(t)
	ctx := context.Background()
	f := e.createAs(t, "data", alice, meta.PermRW)
	if m := standingMode(fv, "users", alice.UUID, "data"); m != meta.PermRW {
		t.Fatalf("standing view mode %q before, want rw", m)
	}
	ro, model, yes, no, general := meta.PermRO, meta.ModeModel, true, false, meta.ModeGeneral

	_, err := e.svc.UpdateOptions(ctx, f.ID, meta.ScopeID{}, api.UpdateOptionsRequest{})
	wantCode(t, err, api.CodeInvalid)
	bad := meta.Permission("rx")
	_, err = e.svc.UpdateOptions(ctx, f.ID, meta.ScopeID{}, api.UpdateOptionsRequest{Permission: &bad})
	wantCode(t, err, api.CodeInvalid)
	// cloneable needs usage mode model.
	_, err = e.svc.UpdateOptions(ctx, f.ID, meta.ScopeID{}, api.UpdateOptionsRequest{Cloneable: &yes})
	wantCode(t, err, api.CodeInvalid)

	got, err := e.svc.UpdateOptions(ctx, "data", alice, api.UpdateOptionsRequest{Permission: &ro})
	if err != nil || got.Permission != meta.PermRO {
		t.Fatalf("set ro: %+v, %v", got, err)
	}
	if m := standingMode(fv, "users", alice.UUID, "data"); m != meta.PermRO {
		t.Errorf("standing view mode %q after set ro, want ro at once", m)
	}
	// A publish at rw now exceeds the folder permission.
	_, err = e.svc.Publish(ctx, "s1", api.PublishRequest{User: alice.UUID, Mounts: []api.MountRequest{{Folder: "data", Mode: meta.PermRW}}})
	wantCode(t, err, api.CodeForbidden)
	e.publish(t, "s1", api.PublishRequest{User: alice.UUID, Mounts: []api.MountRequest{{Folder: "data"}}})

	got, err = e.svc.UpdateOptions(ctx, f.ID, meta.ScopeID{}, api.UpdateOptionsRequest{UsageMode: &model, Cloneable: &yes})
	if err != nil || !got.Cloneable || got.UsageMode != meta.ModeModel || got.Permission != meta.PermRO {
		t.Fatalf("set model+cloneable: %+v, %v", got, err)
	}
	// Back to general while cloneable: refused, nothing changed.
	_, err = e.svc.UpdateOptions(ctx, f.ID, meta.ScopeID{}, api.UpdateOptionsRequest{UsageMode: &general})
	wantCode(t, err, api.CodeInvalid)
	if cur, _ := e.svc.Folder(ctx, f.ID, meta.ScopeID{}); cur.UsageMode != meta.ModeModel || !cur.Cloneable {
		t.Errorf("a refused update changed the folder: %+v", cur)
	}
	if got, err = e.svc.UpdateOptions(ctx, f.ID, meta.ScopeID{}, api.UpdateOptionsRequest{UsageMode: &general, Cloneable: &no}); err != nil || got.Cloneable {
		t.Fatalf("general+not cloneable: %+v, %v", got, err)
	}

	// Only live folders.
	g := e.createAs(t, "gone", alice, meta.PermRW)
	if _, err := e.svc.Trash(ctx, g.ID, meta.ScopeID{}); err != nil {
		t.Fatal(err)
	}
	_, err = e.svc.UpdateOptions(ctx, g.ID, meta.ScopeID{}, api.UpdateOptionsRequest{Permission: &ro})
	wantCode(t, err, api.CodeConflict)
}

func TestCreateWithID(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	const dashed = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
	const id = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
	f, err := e.svc.CreateFolder(ctx, api.CreateFolderRequest{Name: "adopted", Volume: "local", Owner: alice, ID: dashed})
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(e.vol, alice.UUID, id[0:2], id[2:4], id[4:])
	if f.ID != id || f.Path != want {
		t.Errorf("created %s at %s; want %s at %s", f.ID, f.Path, id, want)
	}
	if st, err := os.Stat(want); err != nil || !st.IsDir() {
		t.Errorf("layout directory: %v", err)
	}
	_, err = e.svc.CreateFolder(ctx, api.CreateFolderRequest{Name: "again", Volume: "local", Owner: bob, ID: id})
	wantCode(t, err, api.CodeExists)
	for _, bad := range []string{"xyz", "00000000000000000000000000000000", id + "0"} {
		_, err = e.svc.CreateFolder(ctx, api.CreateFolderRequest{Name: "bad", Volume: "local", Owner: alice, ID: bad})
		wantCode(t, err, api.CodeInvalid)
	}
	// A directory already on the volume is import's, not create's.
	const there = "1f1e2d3c4b5a69788796a5b4c3d2e1f0"
	dir := filepath.Join(e.vol, bob.UUID, there[0:2], there[2:4], there[4:])
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	_, err = e.svc.CreateFolder(ctx, api.CreateFolderRequest{Name: "there", Volume: "local", Owner: bob, ID: there})
	wantCode(t, err, api.CodeExists)
	if err == nil || !strings.Contains(err.Error(), "volume import") {
		t.Errorf("existing directory refused with %v; want a pointer to volume import", err)
	}
	if fs, _ := e.svc.ListFolders(ctx, ListFilter{Owner: bob}); len(fs) != 0 {
		t.Errorf("refused creates left records: %+v", fs)
	}
}

// mkFolder makes a folder directory of the layout with files of the
// given sizes and returns its path.
func mkFolder(t *testing.T, vol, scopeHex, id string, sizes ...int) string {
	t.Helper()
	dir := filepath.Join(vol, scopeHex, id[0:2], id[2:4], id[4:])
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i, n := range sizes {
		if err := os.WriteFile(filepath.Join(dir, "sub", "f"+string(rune('a'+i))), make([]byte, n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestImportVolume(t *testing.T) {
	e := newQuotaEnv(t, "", "")
	ctx := context.Background()
	const (
		id1 = "a1000000000000000000000000000001"
		id2 = "a2000000000000000000000000000002"
		id3 = "a3000000000000000000000000000003"
	)
	mkFolder(t, e.vol, alice.UUID, id1, 100, 2000)
	mkFolder(t, e.vol, alice.UUID, id2, 5)
	mkFolder(t, e.vol, project.UUID, id3, 70000)
	stray := filepath.Join(e.vol, alice.UUID, "a1", "stray.txt")
	if err := os.WriteFile(stray, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc", filepath.Join(e.vol, "ZZ")); err != nil {
		t.Fatal(err)
	}
	req := api.ImportRequest{Names: []api.ImportName{
		{FolderID: id1, Name: "one"},
		{FolderID: id3, Name: "shared", OwnerKind: "project"},
	}, OwnerKind: "user"}
	_, err := e.svc.ImportVolume(ctx, "local", req)
	wantCode(t, err, api.CodeInvalid)
	for _, want := range []string{alice.UUID + "/a1/stray.txt", "ZZ: a symlink"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("import refused with %v; want %q listed", err, want)
		}
	}
	if fs, _ := e.svc.ListFolders(ctx, ListFilter{Deleted: api.DeletedInclude}); len(fs) != 0 {
		t.Fatalf("a refused import registered %d folders", len(fs))
	}
	os.Remove(stray)
	os.Remove(filepath.Join(e.vol, "ZZ"))

	// Without any owner kind for alice's scope: refused.
	_, err = e.svc.ImportVolume(ctx, "local", api.ImportRequest{Names: req.Names})
	wantCode(t, err, api.CodeInvalid)
	if err == nil || !strings.Contains(err.Error(), "owner kind") {
		t.Errorf("import without a kind refused with %v", err)
	}

	rep, err := e.svc.ImportVolume(ctx, "local", req)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Imported) != 3 || len(rep.Skipped) != 0 || len(rep.Checks) != 2 {
		t.Fatalf("report: %d imported, %d skipped, %d checks", len(rep.Imported), len(rep.Skipped), len(rep.Checks))
	}
	names := map[string]api.ImportedFolder{}
	for _, f := range rep.Imported {
		names[f.ID] = f
	}
	if names[id1].Name != "one" || names[id2].Name != id2 || names[id3].Owner != project || names[id1].Owner != alice {
		t.Errorf("imported: %+v", rep.Imported)
	}
	// Usage: what the walk found is what the ledger holds, and a second
	// check finds nothing.
	for _, c := range rep.Checks {
		for _, cf := range c.Folders {
			if got := names[cf.FolderID]; got.UsedBytes != cf.DiskBytes {
				t.Errorf("folder %s: used %d, disk %d", cf.FolderID, got.UsedBytes, cf.DiskBytes)
			}
		}
	}
	if names[id3].UsedBytes < 70000 || names[id1].UsedBytes < 2100 {
		t.Errorf("usage too small: %+v", rep.Imported)
	}
	chk, err := e.svc.CheckQuota(ctx, "local", alice, false)
	if err != nil || chk.Drift {
		t.Errorf("check after import: drift %v, %v", chk.Drift, err)
	}
	f, err := e.svc.Folder(ctx, "shared", project)
	if err != nil || f.Status != meta.StatusReady {
		t.Errorf("imported project folder: %+v, %v", f, err)
	}

	if p, err := e.svc.ImportProgress("local"); err != nil || p.Running || p.Phase != api.ImportDone ||
		p.Folders != 3 || p.Registered != 3 || p.Scopes != 2 || p.Counted != 2 {
		t.Errorf("progress after the import: %+v, %v", p, err)
	}
	if _, err := e.svc.ImportProgress("other"); Code(err) != api.CodeNotFound {
		t.Errorf("progress of a volume never imported: %v", err)
	}
	// A rerun registers nothing.
	rep, err = e.svc.ImportVolume(ctx, "local", req)
	if err != nil || len(rep.Imported) != 0 || len(rep.Skipped) != 3 {
		t.Fatalf("rerun: %d imported, %d skipped, %v", len(rep.Imported), len(rep.Skipped), err)
	}
	for _, c := range rep.Checks {
		if c.Drift {
			t.Errorf("rerun check of %s found drift", c.Scope)
		}
	}
	// A names line for a folder not on the volume is a problem.
	_, err = e.svc.ImportVolume(ctx, "local", api.ImportRequest{Names: []api.ImportName{{FolderID: "b1000000000000000000000000000001", Name: "x"}}})
	wantCode(t, err, api.CodeInvalid)
	if p, _ := e.svc.ImportProgress("local"); p.Phase != api.ImportFailed || !strings.Contains(p.Error, "b1000000000000000000000000000001") {
		t.Errorf("progress after a refused import: %+v", p)
	}
}

func TestVolumeSpace(t *testing.T) {
	e := newEnv(t)
	vs, err := e.svc.Volumes(context.Background())
	if err != nil || len(vs) != 1 || vs[0].VolumeSpace == nil {
		t.Fatalf("Volumes = %+v, %v", vs, err)
	}
	sp := vs[0].VolumeSpace
	if sp.SpaceError != "" || sp.CapacityBytes <= 0 || sp.FreeBytes <= 0 || sp.UsedBytes+sp.FreeBytes > sp.CapacityBytes {
		t.Errorf("space of local: %+v", *sp)
	}
}

// TestImportOwnerKinds: an owner kind the names file does not give comes
// from what the store knows (folders, memberships); a names file that
// contradicts it is refused.
func TestImportOwnerKinds(t *testing.T) {
	e := newQuotaEnv(t, "", "")
	ctx := context.Background()
	e.create(t, "known", alice) // alice is known as a user by her folder
	if _, err := e.svc.SetMember(ctx, project.UUID, bob.UUID, ""); err != nil {
		t.Fatal(err)
	}
	const (
		idA = "e1000000000000000000000000000001"
		idP = "e2000000000000000000000000000002"
		idB = "e3000000000000000000000000000003"
	)
	mkFolder(t, e.vol, alice.UUID, idA, 10)
	mkFolder(t, e.vol, project.UUID, idP, 20)
	mkFolder(t, e.vol, bob.UUID, idB, 30)
	// bob is a member, hence a user: the names file saying project is refused.
	_, err := e.svc.ImportVolume(ctx, "local", api.ImportRequest{Names: []api.ImportName{{FolderID: idB, Name: "b", OwnerKind: "project"}}})
	wantCode(t, err, api.CodeInvalid)
	if err == nil || !strings.Contains(err.Error(), "knows "+bob.UUID+" as a user") {
		t.Errorf("contradicting kind refused with %v", err)
	}
	rep, err := e.svc.ImportVolume(ctx, "local", api.ImportRequest{})
	if err != nil {
		t.Fatal(err)
	}
	owners := map[string]meta.ScopeID{}
	for _, f := range rep.Imported {
		owners[f.ID] = f.Owner
	}
	if owners[idA] != alice || owners[idP] != project || owners[idB] != bob || len(rep.Skipped) != 1 {
		t.Errorf("owners %v, skipped %d", owners, len(rep.Skipped))
	}
}
