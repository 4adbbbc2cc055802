package service

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/internal/volume"
	"github.com/vfolder/vfolder/meta"
)

func (e *env) model(t *testing.T, name string, cloneable bool) api.Folder {
	t.Helper()
	f, err := e.svc.CreateFolder(context.Background(), api.CreateFolderRequest{Name: name, Volume: "local", Owner: alice,
		UsageMode: meta.ModeModel, Cloneable: cloneable})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestCloneRules: only a ready, cloneable folder on a volume that allows
// clones; the copy is a new folder of the caller, cloning until copied.
func TestCloneRules(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	src := e.model(t, "weights", true)
	if err := os.WriteFile(filepath.Join(src.Path, "w.bin"), []byte("0123456789"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("w.bin", filepath.Join(src.Path, "latest")); err != nil {
		t.Fatal(err)
	}
	plain := e.model(t, "plain", false)
	_, err := e.svc.Clone(ctx, plain.ID, alice, api.CloneRequest{Name: "x"})
	wantCode(t, err, api.CodeForbidden)
	_, err = e.svc.Clone(ctx, src.ID, alice, api.CloneRequest{Name: "plain"})
	wantCode(t, err, api.CodeExists)
	_, err = e.svc.Clone(ctx, src.ID, alice, api.CloneRequest{Name: "a/b"})
	wantCode(t, err, api.CodeInvalid)
	_, err = e.svc.Clone(ctx, src.ID, alice, api.CloneRequest{Name: "x", Volume: "nowhere"})
	wantCode(t, err, api.CodeNotFound)

	cp, err := e.svc.Clone(ctx, "weights", alice, api.CloneRequest{Name: "copy"})
	if err != nil {
		t.Fatal(err)
	}
	if cp.Status != meta.StatusCloning || cp.Owner != alice || cp.UsageMode != meta.ModeModel {
		t.Errorf("clone answered %+v", cp.Folder)
	}
	// Not mountable, not trashable while cloning (it may be done already
	// on a fast machine: then both work, which is not what is tested).
	if _, err := e.svc.Trash(ctx, cp.ID, alice); err == nil {
		if got, _ := e.svc.Folder(ctx, cp.ID, alice); got.Status != meta.StatusDeletePending {
			t.Errorf("trash of a cloning folder: %+v", got.Folder)
		}
		t.Skip("the clone finished before it could be tried while cloning")
	} else {
		wantCode(t, err, api.CodeConflict)
	}
	e.svc.Wait()
	got, err := e.svc.Folder(ctx, cp.ID, alice)
	if err != nil || got.Status != meta.StatusReady || got.Progress != nil {
		t.Fatalf("after the copy: %+v, %v", got, err)
	}
	if b, err := os.ReadFile(filepath.Join(got.Path, "w.bin")); err != nil || string(b) != "0123456789" {
		t.Errorf("copied file: %q, %v", b, err)
	}
	if l, err := os.Readlink(filepath.Join(got.Path, "latest")); err != nil || l != "w.bin" {
		t.Errorf("copied symlink: %q, %v", l, err)
	}
	// A trashed source cannot be cloned.
	if _, err := e.svc.Trash(ctx, src.ID, alice); err != nil {
		t.Fatal(err)
	}
	_, err = e.svc.Clone(ctx, src.ID, alice, api.CloneRequest{Name: "y"})
	wantCode(t, err, api.CodeConflict)
}

// TestCloneRefusedByVolume: a volume with clone_allowed false refuses.
func TestCloneRefusedByVolume(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	other := t.TempDir()
	if err := e.svc.AttachVolume(ctx, meta.Volume{Name: "noclone", Path: other, MountAllowed: true}); err != nil {
		t.Fatal(err)
	}
	src := e.model(t, "m", true)
	_, err := e.svc.Clone(ctx, src.ID, alice, api.CloneRequest{Name: "x", Volume: "noclone"})
	wantCode(t, err, api.CodeForbidden)
	if fs, _ := e.svc.ListFolders(ctx, ListFilter{Owner: alice, Deleted: api.DeletedInclude}); len(fs) != 1 {
		t.Errorf("folders after a refused clone: %d", len(fs))
	}
}

// TestRecoverRollsBackAClone: a clone a crash interrupted (record
// cloning, part of the tree copied) leaves nothing after Recover.
func TestRecoverRollsBackAClone(t *testing.T) {
	store, dir := meta.NewMemory(), t.TempDir()
	defer store.Close()
	ctx := context.Background()
	f := meta.Folder{ID: meta.NewFolderID(), Name: "half", Owner: alice, Volume: "local", UsageMode: meta.ModeModel,
		Permission: meta.PermRW, Status: meta.StatusCloning}
	if err := store.PutVolume(ctx, meta.Volume{Name: "local", Path: dir, CloneAllowed: true}); err != nil {
		t.Fatal(err)
	}
	if err := store.CreateFolder(ctx, f, 0); err != nil {
		t.Fatal(err)
	}
	v, err := volume.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.EnsureVersion(os.Geteuid(), os.Getegid(), false); err != nil {
		t.Fatal(err)
	}
	if err := v.CreateFolder(alice, f.ID, os.Geteuid(), os.Getegid()); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(v.FolderPath(alice, f.ID), "a", "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	v.Close()
	e := startService(t, store, dir, testOptions(nil))
	defer e.svc.Close()
	if _, err := store.GetFolder(ctx, f.ID); !errors.Is(err, meta.ErrNotFound) {
		t.Errorf("the record of the interrupted clone: %v; want it gone", err)
	}
	if dirs := layoutDirs(t, dir); len(dirs) != 0 {
		t.Errorf("directories left by the interrupted clone: %v", dirs)
	}
}

// TestStartPurgeAnswersAtOnce: the answer says delete-ongoing; the folder
// goes in the background.
func TestStartPurgeAnswersAtOnce(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	f := e.create(t, "gone", alice)
	if _, err := e.svc.Trash(ctx, f.ID, alice); err != nil {
		t.Fatal(err)
	}
	_, err := e.svc.StartPurge(ctx, f.ID, alice, "wrong")
	wantCode(t, err, api.CodeConflict)
	p, err := e.svc.StartPurge(ctx, f.ID, alice, "gone")
	if err != nil {
		t.Fatal(err)
	}
	if p.Status != meta.StatusDeleteOngoing || p.Progress == nil || p.Progress.Op != api.OpPurge || p.Progress.FilesTotal < 1 {
		t.Errorf("purge answered %+v, progress %+v", p.Folder, p.Progress)
	}
	e.svc.Wait()
	if _, err := e.svc.Folder(ctx, f.ID, alice); Code(err) != api.CodeNotFound {
		t.Errorf("after the purge: %v", err)
	}
	if exists(f.Path) {
		t.Errorf("the purged directory is still there")
	}
}

// TestMountedShown: a ready folder that sessions mount shows "mounted" in
// info and list; the stored status stays ready.
func TestMountedShown(t *testing.T) {
	var busy string
	e := newEnv(t, func(o *Options) {
		o.MountedBy = func(id string) []string {
			if id == busy {
				return []string{"job-1"}
			}
			return nil
		}
	})
	ctx := context.Background()
	a := e.create(t, "a", alice)
	e.create(t, "b", alice)
	busy = a.ID
	if got, err := e.svc.Folder(ctx, a.ID, alice); err != nil || got.Status != meta.StatusMounted {
		t.Errorf("info of a mounted folder: %+v, %v", got.Folder, err)
	}
	fs, err := e.svc.ListFolders(ctx, ListFilter{Owner: alice})
	if err != nil || len(fs) != 2 {
		t.Fatalf("list: %v, %v", fs, err)
	}
	for _, f := range fs {
		want := meta.StatusReady
		if f.ID == a.ID {
			want = meta.StatusMounted
		}
		if f.Status != want {
			t.Errorf("list shows %s as %s; want %s", f.Name, f.Status, want)
		}
	}
	if st, _ := e.store.GetFolder(ctx, a.ID); st.Status != meta.StatusReady {
		t.Errorf("stored status %s; want ready", st.Status)
	}
}
