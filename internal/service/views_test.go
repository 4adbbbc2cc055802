package service

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/api"
	vfs "github.com/vfolder/vfolder/fs"
	"github.com/vfolder/vfolder/meta"
)

// fakeViews keeps views in a map with the contract of fs.FS: identical
// adds succeed, a different spec at a taken place is ErrExists, a missing
// folder directory (or subpath) is ErrNotFound, removing nothing is
// ErrNotFound. It checks specs with the validators package fs exports.
type fakeViews struct {
	mu    sync.Mutex
	views map[viewPlace]vfs.ViewSpec
	ops   []string // "add ns/key/name", "rm ns/key/name"
}

func newFakeViews() *fakeViews { return &fakeViews{views: map[viewPlace]vfs.ViewSpec{}} }

func (f *fakeViews) AddView(sp vfs.ViewSpec) error {
	if err := vfs.ValidateKey(sp.Namespace, sp.Key); err != nil {
		return err
	}
	if err := vfs.ValidateEntryName(sp.Name); err != nil {
		return err
	}
	if _, err := vfs.SplitSubpath(sp.Subpath); err != nil {
		return err
	}
	if !sp.Mode.Valid() {
		return fmt.Errorf("%w: mode %q", meta.ErrInvalid, sp.Mode)
	}
	dir := filepath.Join(sp.VolumePath, sp.FolderRel, sp.Subpath)
	if st, err := os.Lstat(dir); err != nil {
		return fmt.Errorf("%w: %v", meta.ErrNotFound, err)
	} else if !st.IsDir() {
		return fmt.Errorf("%w: %s is not a directory", meta.ErrInvalid, dir)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	pl := placeOf(sp)
	if old, ok := f.views[pl]; ok {
		if old == sp {
			return nil
		}
		return fmt.Errorf("%w: another view is at %s", meta.ErrExists, pl)
	}
	f.views[pl] = sp
	f.ops = append(f.ops, "add "+pl.String())
	return nil
}

func (f *fakeViews) RemoveView(ns, key, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	pl := viewPlace{ns, key, name}
	if _, ok := f.views[pl]; !ok {
		return fmt.Errorf("%w: no view at %s", meta.ErrNotFound, pl)
	}
	delete(f.views, pl)
	f.ops = append(f.ops, "rm "+pl.String())
	return nil
}

func (f *fakeViews) Views() []vfs.ViewSpec {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]vfs.ViewSpec, 0, len(f.views))
	for _, v := range f.views {
		out = append(out, v)
	}
	return out
}

// places lists the views as "ns/key/name mode", sorted.
func (f *fakeViews) places() []string {
	var out []string
	for _, v := range f.Views() {
		out = append(out, placeOf(v).String()+" "+string(v.Mode))
	}
	sort.Strings(out)
	return out
}

func (f *fakeViews) takeOps() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	o := f.ops
	f.ops = nil
	return o
}

func withViews(o *Options) {
	o.ViewUID, o.ViewGID = 1000, 1001
	o.MountPoint = "/run/vfolder/mnt"
}

// newViewEnv is newEnv with views started on a fake.
func newViewEnv(t *testing.T, mutate ...func(*Options)) (*env, *fakeViews) {
	t.Helper()
	e := newEnv(t, append([]func(*Options){withViews}, mutate...)...)
	fv := newFakeViews()
	if err := e.svc.StartViews(context.Background(), fv); err != nil {
		t.Fatal(err)
	}
	return e, fv
}

func wantPlaces(t *testing.T, fv *fakeViews, want ...string) {
	t.Helper()
	got := fv.places()
	sort.Strings(want)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("views:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func TestStandingViewsFollowFolders(t *testing.T) {
	e, fv := newViewEnv(t)
	ctx := context.Background()
	u := "users/" + alice.UUID + "/"
	p := "projects/" + project.UUID + "/"

	f := e.create(t, "data", alice)
	ro, err := e.svc.CreateFolder(ctx, api.CreateFolderRequest{Name: "models", Volume: "local", Owner: project, Permission: meta.PermRO})
	if err != nil {
		t.Fatal(err)
	}
	wantPlaces(t, fv, u+"data rw", p+"models ro")
	sp := fv.views[viewPlace{vfs.NSUsers, alice.UUID, "data"}]
	want := vfs.ViewSpec{Namespace: vfs.NSUsers, Key: alice.UUID, Name: "data", VolumeName: "local", VolumePath: e.vol,
		FolderRel: meta.FolderRelPath(alice, f.ID), Mode: meta.PermRW, UID: 1000, GID: 1001, RWCanDelete: true, FolderID: f.ID, Scope: alice}
	if sp != want {
		t.Errorf("spec = %+v\nwant   %+v", sp, want)
	}
	fv.takeOps()

	if _, err := e.svc.Rename(ctx, "data", alice, "data2"); err != nil {
		t.Fatal(err)
	}
	if ops := fv.takeOps(); strings.Join(ops, ",") != "rm "+u+"data,add "+u+"data2" {
		t.Errorf("rename made %v; want the old view removed, then the new one added", ops)
	}
	if _, err := e.svc.Trash(ctx, f.ID, alice); err != nil {
		t.Fatal(err)
	}
	wantPlaces(t, fv, p+"models ro")
	if _, err := e.svc.Restore(ctx, f.ID, alice); err != nil {
		t.Fatal(err)
	}
	wantPlaces(t, fv, u+"data2 rw", p+"models ro")
	if _, err := e.svc.Trash(ctx, ro.ID, project); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Purge(ctx, ro.ID, project, "models"); err != nil {
		t.Fatal(err)
	}
	wantPlaces(t, fv, u+"data2 rw")
	// A failed folder operation changes no view.
	fv.takeOps()
	if _, err := e.svc.Rename(ctx, "data2", alice, ".bashrc"); err == nil {
		t.Fatal("rename to a reserved name succeeded")
	}
	if ops := fv.takeOps(); len(ops) != 0 {
		t.Errorf("failed rename changed views: %v", ops)
	}
}

func TestStartViewsRebuilds(t *testing.T) {
	e := newEnv(t, withViews)
	ctx := context.Background()
	e.create(t, "a", alice)
	b := e.create(t, "b", alice)
	e.create(t, "c", project)
	if _, err := e.svc.Trash(ctx, b.ID, alice); err != nil {
		t.Fatal(err)
	}
	gone := e.create(t, "gone", bob)
	// A folder whose directory vanished from the volume is logged and
	// left out, not fatal.
	if err := os.Remove(gone.Path); err != nil {
		t.Fatal(err)
	}
	fv := newFakeViews()
	// A standing view that matches no folder is removed; session views
	// are not touched.
	stale := vfs.ViewSpec{Namespace: vfs.NSUsers, Key: bob.UUID, Name: "old", VolumeName: "local", VolumePath: e.vol,
		FolderRel: meta.FolderRelPath(alice, b.ID), Mode: meta.PermRW}
	sess := stale
	sess.Namespace, sess.Key = vfs.NSSessions, "s1"
	for _, sp := range []vfs.ViewSpec{stale, sess} {
		if err := fv.AddView(sp); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.svc.StartViews(ctx, fv); err != nil {
		t.Fatal(err)
	}
	wantPlaces(t, fv, "users/"+alice.UUID+"/a rw", "projects/"+project.UUID+"/c rw", "sessions/s1/old rw")
	if err := e.svc.SyncViews(ctx); err != nil {
		t.Fatal(err)
	}
	wantPlaces(t, fv, "users/"+alice.UUID+"/a rw", "projects/"+project.UUID+"/c rw", "sessions/s1/old rw")
}

func TestReach(t *testing.T) {
	f := meta.Folder{ID: strings.Repeat("a", 32), Name: "x", Owner: alice, Permission: meta.PermWD, Status: meta.StatusReady}
	if r := reach(alice.UUID, []meta.Folder{f}, nil); len(r) != 1 || r[0].ns != vfs.NSUsers || r[0].key != alice.UUID || r[0].name != "x" || r[0].mode != meta.PermWD {
		t.Errorf("reach(user folder) = %+v", r)
	}
	if r := reach(bob.UUID, []meta.Folder{f}, nil); len(r) != 0 {
		t.Errorf("reach of another user's folder = %+v", r)
	}
	f.Owner = project
	if r := reachProject(project.UUID, []meta.Folder{f}); len(r) != 1 || r[0].ns != vfs.NSProjects || r[0].key != project.UUID || r[0].mode != meta.PermWD {
		t.Errorf("reachProject = %+v", r)
	}
	for _, st := range []meta.Status{meta.StatusDeletePending, meta.StatusDeleteOngoing, meta.StatusDeleteComplete, meta.StatusDeleteError} {
		f.Status = st
		if r := reachProject(project.UUID, []meta.Folder{f}); len(r) != 0 {
			t.Errorf("reachProject(%s folder) = %+v; want none", st, r)
		}
		g := f
		g.Owner = alice
		if r := reach(alice.UUID, []meta.Folder{g}, []memberFolders{{m: meta.Membership{Project: project.UUID, User: alice.UUID}, folders: []meta.Folder{f}}}); len(r) != 0 {
			t.Errorf("reach(%s folders) = %+v; want none", st, r)
		}
	}
}

func TestSessionViews(t *testing.T) {
	e, fv := newViewEnv(t)
	ctx := context.Background()
	f := e.create(t, "data", alice)
	if err := os.MkdirAll(filepath.Join(f.Path, "sub", "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.Path, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ro, err := e.svc.CreateFolder(ctx, api.CreateFolderRequest{Name: "ref", Volume: "local", Owner: project, Permission: meta.PermRO})
	if err != nil {
		t.Fatal(err)
	}
	owner := alice
	req := api.CreateViewRequest{Session: "sess-1", Name: "work", Folder: "data", Owner: &owner, Subpath: "sub/dir/"}

	v, created, err := e.svc.AddSessionView(ctx, req)
	if err != nil || !created {
		t.Fatalf("AddSessionView = %+v, %v, %v", v, created, err)
	}
	want := api.View{Namespace: "sessions", Key: "sess-1", Name: "work", FolderID: f.ID, Volume: "local", Subpath: "sub/dir",
		Mode: meta.PermRW, UID: 1000, GID: 1001, Path: "/run/vfolder/mnt/sessions/sess-1/work"}
	if v != want {
		t.Errorf("view = %+v\nwant   %+v", v, want)
	}
	// The same request again (also by id, subpath spelled differently)
	// changes nothing.
	again := api.CreateViewRequest{Session: "sess-1", Name: "work", Folder: meta.DashedUUID(f.ID), Subpath: "./sub/dir", Mode: meta.PermRW}
	if v2, created, err := e.svc.AddSessionView(ctx, again); err != nil || created || v2 != v {
		t.Errorf("repeat = %+v, %v, %v; want the same view, not created", v2, created, err)
	}
	uid, gid := uint32(0), uint32(0)
	root := api.CreateViewRequest{Session: "sess-2", Name: "root", Folder: f.ID, Mode: meta.PermRO, UID: &uid, GID: &gid}
	if v3, _, err := e.svc.AddSessionView(ctx, root); err != nil || v3.UID != 0 || v3.GID != 0 || v3.Mode != meta.PermRO {
		t.Errorf("explicit uid 0 = %+v, %v", v3, err)
	}
	// The project folder's permission is ro: the default mode is ro.
	if v4, _, err := e.svc.AddSessionView(ctx, api.CreateViewRequest{Session: "sess-2", Name: "ref", Folder: ro.ID}); err != nil || v4.Mode != meta.PermRO {
		t.Errorf("default mode = %+v, %v; want ro", v4, err)
	}

	bad := func(name, code, msg string, r api.CreateViewRequest) {
		t.Helper()
		fv.takeOps()
		_, _, err := e.svc.AddSessionView(ctx, r)
		if Code(err) != code || !strings.Contains(fmt.Sprint(err), msg) {
			t.Errorf("%s: %v (code %q); want code %q mentioning %q", name, err, Code(err), code, msg)
		}
		if ops := fv.takeOps(); len(ops) != 0 {
			t.Errorf("%s: a refused add changed views: %v", name, ops)
		}
	}
	base := func(mut func(*api.CreateViewRequest)) api.CreateViewRequest {
		r := api.CreateViewRequest{Session: "sess-3", Name: "x", Folder: f.ID}
		mut(&r)
		return r
	}
	bad("mode above permission", api.CodeForbidden, "exceeds the permission", api.CreateViewRequest{Session: "s", Name: "x", Folder: ro.ID, Mode: meta.PermRW})
	bad("wd on rw folder", api.CodeForbidden, "mode wd exceeds", base(func(r *api.CreateViewRequest) { r.Mode = meta.PermWD }))
	bad("other view at the place", api.CodeExists, "already has a view", base(func(r *api.CreateViewRequest) { r.Session, r.Name, r.Mode = "sess-1", "work", meta.PermRO }))
	bad("unknown mode", api.CodeInvalid, "mode", base(func(r *api.CreateViewRequest) { r.Mode = "rwx" }))
	bad("bad session", api.CodeInvalid, "session id", base(func(r *api.CreateViewRequest) { r.Session = "a/b" }))
	bad("empty session", api.CodeInvalid, "session id", base(func(r *api.CreateViewRequest) { r.Session = "" }))
	bad("bad name", api.CodeInvalid, "view name", base(func(r *api.CreateViewRequest) { r.Name = ".." }))
	bad("escaping subpath", api.CodeInvalid, "subpath", base(func(r *api.CreateViewRequest) { r.Subpath = "../x" }))
	bad("absolute subpath", api.CodeInvalid, "subpath", base(func(r *api.CreateViewRequest) { r.Subpath = "/etc" }))
	bad("missing subpath", api.CodeNotFound, "", base(func(r *api.CreateViewRequest) { r.Subpath = "nope" }))
	bad("file subpath", api.CodeInvalid, "", base(func(r *api.CreateViewRequest) { r.Subpath = "file" }))
	bad("uid -1", api.CodeInvalid, "uid/gid", base(func(r *api.CreateViewRequest) { m := ^uint32(0); r.UID = &m }))
	bad("empty folder", api.CodeInvalid, "folder is empty", base(func(r *api.CreateViewRequest) { r.Folder = "" }))
	bad("name without owner", api.CodeInvalid, "needs the owner", base(func(r *api.CreateViewRequest) { r.Folder = "data" }))
	bad("unknown folder", api.CodeNotFound, "", base(func(r *api.CreateViewRequest) { r.Folder = strings.Repeat("f", 32) }))

	// Trash is refused while a session has a view, naming the sessions.
	_, err = e.svc.Trash(ctx, f.ID, alice)
	wantCode(t, err, api.CodeConflict)
	if err == nil || !strings.Contains(err.Error(), "sess-1, sess-2") {
		t.Errorf("trash error %v does not name sess-1 and sess-2", err)
	}
	if got := e.svc.MountedBy(f.ID); strings.Join(got, ",") != "sess-1,sess-2" {
		t.Errorf("MountedBy = %v", got)
	}

	list, err := e.svc.ListViews(ctx, vfs.NSSessions, "sess-2")
	if err != nil || len(list) != 2 || list[0].Name != "ref" || list[1].Name != "root" {
		t.Errorf("ListViews(sessions, sess-2) = %+v, %v", list, err)
	}
	all, err := e.svc.ListViews(ctx, "", "")
	if err != nil || len(all) != 5 || all[0].Namespace != "projects" || all[4].Namespace != "users" {
		t.Errorf("ListViews() = %+v, %v", all, err)
	}
	if _, err := e.svc.ListViews(ctx, "", "sess-1"); Code(err) != api.CodeInvalid {
		t.Errorf("key without namespace: %v", err)
	}
	if _, err := e.svc.ListViews(ctx, "homes", ""); Code(err) != api.CodeInvalid {
		t.Errorf("unknown namespace: %v", err)
	}
	if _, err := e.svc.ListViews(ctx, vfs.NSUsers, "bob"); Code(err) != api.CodeInvalid {
		t.Errorf("bad users key: %v", err)
	}

	for _, pl := range [][2]string{{"sess-1", "work"}, {"sess-2", "root"}} {
		rv, err := e.svc.RemoveSessionView(ctx, pl[0], pl[1])
		if err != nil || rv.Key != pl[0] || rv.Name != pl[1] || rv.FolderID != f.ID {
			t.Errorf("RemoveSessionView(%v) = %+v, %v", pl, rv, err)
		}
	}
	if _, err := e.svc.RemoveSessionView(ctx, "sess-1", "work"); Code(err) != api.CodeNotFound {
		t.Errorf("removing twice: %v", err)
	}
	if _, err := e.svc.RemoveSessionView(ctx, "../x", "work"); Code(err) != api.CodeInvalid {
		t.Errorf("bad session id: %v", err)
	}
	if got := e.svc.MountedBy(f.ID); len(got) != 0 {
		t.Errorf("MountedBy after removal = %v", got)
	}
	if _, err := e.svc.Trash(ctx, f.ID, alice); err != nil {
		t.Fatalf("trash after the views are gone: %v", err)
	}
	// A folder in the trash cannot get a session view.
	_, _, err = e.svc.AddSessionView(ctx, api.CreateViewRequest{Session: "s", Name: "x", Folder: f.ID, Mode: meta.PermRO})
	if Code(err) != api.CodeConflict || !strings.Contains(err.Error(), "trash") {
		t.Errorf("view of a trashed folder: %v", err)
	}
}

// TestMountedByCombines checks that trash and purge name the sessions of
// session views and those the MountedBy option reports.
func TestMountedByCombines(t *testing.T) {
	var mu sync.Mutex
	external := map[string][]string{}
	e, _ := newViewEnv(t, func(o *Options) {
		o.MountedBy = func(id string) []string {
			mu.Lock()
			defer mu.Unlock()
			return external[id]
		}
	})
	ctx := context.Background()
	f := e.create(t, "busy", alice)
	if _, _, err := e.svc.AddSessionView(ctx, api.CreateViewRequest{Session: "zz-view", Name: "x", Folder: f.ID}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	external[f.ID] = []string{"aa-runtime", "zz-view"}
	mu.Unlock()
	_, err := e.svc.Trash(ctx, f.ID, alice)
	if Code(err) != api.CodeConflict || !strings.Contains(err.Error(), "session(s) aa-runtime, zz-view;") {
		t.Errorf("trash: %v", err)
	}
	if _, err := e.svc.RemoveSessionView(ctx, "zz-view", "x"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	delete(external, f.ID)
	mu.Unlock()
	if _, err := e.svc.Trash(ctx, f.ID, alice); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	external[f.ID] = []string{"late"}
	mu.Unlock()
	_, err = e.svc.Purge(ctx, f.ID, alice, "busy")
	if Code(err) != api.CodeConflict || !strings.Contains(err.Error(), "session(s) late;") || !strings.Contains(err.Error(), "purged") {
		t.Errorf("purge: %v", err)
	}
}

// TestTrashRacesSessionView runs trash and view adds of one folder at the
// same time: either the trash wins (the add is refused) or the view wins
// (the trash is refused); never both.
func TestTrashRacesSessionView(t *testing.T) {
	e, _ := newViewEnv(t)
	ctx := context.Background()
	for i := 0; i < 30; i++ {
		f := e.create(t, fmt.Sprintf("f%d", i), alice)
		raceTrash(t, e.svc, i, f, "add", func() error {
			_, _, err := e.svc.AddSessionView(ctx, api.CreateViewRequest{Session: fmt.Sprintf("s%d", i), Name: "x", Folder: f.ID})
			return err
		})
	}
}

// raceTrash runs mount and a trash of f (owned by alice) at the same time
// and fails the test unless exactly one of them succeeds.
func raceTrash(t *testing.T, svc *Service, round int, f api.Folder, what string, mount func() error) {
	t.Helper()
	var wg sync.WaitGroup
	var mountErr, trashErr error
	wg.Add(2)
	go func() {
		defer wg.Done()
		mountErr = mount()
	}()
	go func() {
		defer wg.Done()
		_, trashErr = svc.Trash(context.Background(), f.ID, alice)
	}()
	wg.Wait()
	if (mountErr == nil) == (trashErr == nil) {
		t.Fatalf("round %d: %s %v, trash %v; want exactly one to succeed", round, what, mountErr, trashErr)
	}
}

func TestViewsDisabled(t *testing.T) {
	e := newEnv(t, withViews)
	ctx := context.Background()
	f := e.create(t, "data", alice)
	_, _, err := e.svc.AddSessionView(ctx, api.CreateViewRequest{Session: "s", Name: "x", Folder: f.ID})
	if Code(err) != api.CodeUnavailable || !strings.Contains(err.Error(), "fuse = false") {
		t.Errorf("add without views: %v", err)
	}
	if _, err := e.svc.ListViews(ctx, "", ""); Code(err) != api.CodeUnavailable {
		t.Errorf("list without views: %v", err)
	}
	if _, err := e.svc.RemoveSessionView(ctx, "s", "x"); Code(err) != api.CodeUnavailable {
		t.Errorf("remove without views: %v", err)
	}
	if err := e.svc.SyncViews(ctx); Code(err) != api.CodeUnavailable {
		t.Errorf("sync without views: %v", err)
	}
	// Folder operations work as before.
	if _, err := e.svc.Rename(ctx, f.ID, alice, "d2"); err != nil {
		t.Error(err)
	}
	if _, err := e.svc.Trash(ctx, f.ID, alice); err != nil {
		t.Error(err)
	}
}

func TestVolumeMountNotAllowed(t *testing.T) {
	e, _ := newViewEnv(t)
	ctx := context.Background()
	f := e.create(t, "data", alice)
	if err := e.svc.AttachVolume(ctx, meta.Volume{Name: "local", Path: e.vol, RWCanDelete: true, MountAllowed: false}); err != nil {
		t.Fatal(err)
	}
	_, _, err := e.svc.AddSessionView(ctx, api.CreateViewRequest{Session: "s", Name: "x", Folder: f.ID})
	if Code(err) != api.CodeForbidden || !strings.Contains(err.Error(), "mount_allowed") {
		t.Errorf("add on a volume without mounts: %v", err)
	}
}

// TestViewsOnFUSE drives a real fs.FS through the service (root and
// /dev/fuse needed).
func TestViewsOnFUSE(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount FUSE")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("needs /dev/fuse: %v", err)
	}
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(o *Options) {
		o.StorageUID, o.StorageGID = 1100, 1100
		o.ViewUID, o.ViewGID = 1000, 1000
		o.MountPoint = mnt
	})
	ctx := context.Background()
	f := e.create(t, "data", alice)
	fsys, err := vfs.Mount(vfs.Options{MountPoint: mnt, StorageUID: 1100, StorageGID: 1100, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := fsys.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		var st unix.Statfs_t
		if err := unix.Statfs(mnt, &st); err == nil && st.Type == 0x65735546 { // FUSE_SUPER_MAGIC
			t.Errorf("FUSE still mounted at %s", mnt)
			unix.Unmount(mnt, unix.MNT_DETACH)
		}
	})
	if err := e.svc.StartViews(ctx, fsys); err != nil {
		t.Fatal(err)
	}
	userView := filepath.Join(mnt, "users", alice.UUID, "data")
	if err := os.WriteFile(filepath.Join(userView, "hello"), []byte("hi"), 0o644); err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(f.Path, "hello"), &st); err != nil || st.Uid != 1100 {
		t.Errorf("file on storage: uid %d, %v; want 1100", st.Uid, err)
	}
	if err := syscall.Stat(filepath.Join(userView, "hello"), &st); err != nil || st.Uid != 1000 {
		t.Errorf("file in the view: uid %d, %v; want 1000", st.Uid, err)
	}
	if err := os.Mkdir(filepath.Join(userView, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc", filepath.Join(f.Path, "link")); err != nil {
		t.Fatal(err)
	}

	v, _, err := e.svc.AddSessionView(ctx, api.CreateViewRequest{Session: "s1", Name: "ro", Folder: f.ID, Subpath: "sub", Mode: meta.PermRO})
	if err != nil {
		t.Fatal(err)
	}
	if v.Path != filepath.Join(mnt, "sessions", "s1", "ro") {
		t.Errorf("view path %q", v.Path)
	}
	err = os.WriteFile(filepath.Join(v.Path, "x"), nil, 0o644)
	if !errors.Is(err, syscall.EROFS) {
		t.Errorf("write in a ro view: %v; want EROFS", err)
	}
	if _, _, err := e.svc.AddSessionView(ctx, api.CreateViewRequest{Session: "s1", Name: "l", Folder: f.ID, Subpath: "link"}); Code(err) != api.CodeInvalid {
		t.Errorf("subpath through a symlink: %v; want invalid", err)
	}
	if _, _, err := e.svc.AddSessionView(ctx, api.CreateViewRequest{Session: "s1", Name: "m", Folder: f.ID, Subpath: "missing"}); Code(err) != api.CodeNotFound {
		t.Errorf("missing subpath: %v; want not-found", err)
	}

	if _, err := e.svc.Rename(ctx, f.ID, alice, "renamed"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(userView); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("old users/ view after rename: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(mnt, "users", alice.UUID, "renamed", "hello")); err != nil || string(b) != "hi" {
		t.Errorf("renamed view: %q, %v", b, err)
	}
	if _, err := e.svc.RemoveSessionView(ctx, "s1", "ro"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(v.Path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("removed session view still there: %v", err)
	}
	if _, err := e.svc.Trash(ctx, f.ID, alice); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(mnt, "users", alice.UUID)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("users/ key of a user without live folders: %v", err)
	}
}
