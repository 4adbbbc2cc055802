package service

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/internal/volume"
	"github.com/vfolder/vfolder/meta"
)

// missingEnv has volume "local" initialised with one folder of alice, and
// a second service over the same store for the restart.
type missingEnv struct {
	store  *meta.Memory
	vol    string
	folder api.Folder
}

func newMissingEnv(t *testing.T) missingEnv {
	t.Helper()
	store := meta.NewMemory()
	t.Cleanup(func() { store.Close() })
	vol := t.TempDir()
	e := startService(t, store, vol, testOptions(nil))
	f := e.create(t, "data", alice)
	e.svc.Close()
	return missingEnv{store: store, vol: vol, folder: f}
}

// restart starts a service over the same store with volume "local" at
// path (and another, empty volume "other"); the attach error of "local" is
// returned.
func (m missingEnv) restart(t *testing.T, path string, requireMount bool) (*Service, error) {
	t.Helper()
	svc := New(m.store, testOptions(nil))
	t.Cleanup(svc.Close)
	ctx := context.Background()
	if err := svc.AttachVolume(ctx, meta.Volume{Name: "other", Path: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	err := svc.AttachVolume(ctx, meta.Volume{Name: "local", Path: path, RequireMount: requireMount})
	if rerr := svc.Recover(ctx); rerr != nil {
		t.Fatal(rerr)
	}
	return svc, err
}

// checkUnavailable checks what a service shows while "local" is missing.
func checkUnavailable(t *testing.T, svc *Service, m missingEnv, path, reason string) {
	t.Helper()
	ctx := context.Background()
	vs, err := svc.Volumes(ctx)
	if err != nil || len(vs) != 2 {
		t.Fatalf("Volumes = %+v, %v", vs, err)
	}
	if vs[0].Name != "local" || vs[0].Status != api.VolumeUnavailable || !strings.Contains(vs[0].Reason, reason) {
		t.Errorf("local = %+v; want unavailable because %q", vs[0], reason)
	}
	if vs[1].Name != "other" || vs[1].Status != api.VolumeReady {
		t.Errorf("other = %+v; want ready", vs[1])
	}
	f, err := svc.Folder(ctx, m.folder.ID, meta.ScopeID{})
	if err != nil {
		t.Fatal(err)
	}
	if f.Status != meta.StatusError || !strings.Contains(f.StatusReason, path) || !strings.Contains(f.StatusReason, reason) {
		t.Errorf("folder on the missing volume: status %q, reason %q; want error naming %s and %q", f.Status, f.StatusReason, path, reason)
	}
	if stored, _ := m.store.GetFolder(ctx, m.folder.ID); stored.Status != meta.StatusReady {
		t.Errorf("stored status changed to %q; the error status is shown, not stored", stored.Status)
	}
	_, err = svc.CreateFolder(ctx, api.CreateFolderRequest{Name: "new", Volume: "local", Owner: alice})
	if !errors.Is(err, ErrUnavailable) || Code(err) != api.CodeUnavailable || !strings.Contains(err.Error(), path) {
		t.Errorf("create on the missing volume = %v; want ErrUnavailable naming %s", err, path)
	}
	if _, err := svc.CreateFolder(ctx, api.CreateFolderRequest{Name: "new", Volume: "other", Owner: alice}); err != nil {
		t.Errorf("create on the other volume: %v", err)
	}
}

func TestMissingVolumeIsNotInitialised(t *testing.T) {
	m := newMissingEnv(t)
	// The mount is gone: the same path is now an empty directory.
	under := t.TempDir()
	svc, err := m.restart(t, under, false)
	if !errors.Is(err, volume.ErrMissing) || !strings.Contains(err.Error(), under) {
		t.Fatalf("attach of an empty directory where a known volume was = %v; want ErrMissing naming %s", err, under)
	}
	if ents, _ := os.ReadDir(under); len(ents) != 0 {
		t.Errorf("written into the directory under the missing mount: %v", ents)
	}
	checkUnavailable(t, svc, m, under, "no version.txt")
	if ents, _ := os.ReadDir(under); len(ents) != 0 {
		t.Errorf("written into the directory under the missing mount: %v", ents)
	}

}

func TestUnavailableVolumeComesBack(t *testing.T) {
	m := newMissingEnv(t)
	// The volume's directory is moved away and an empty one put in its
	// place: what a missing mount looks like.
	real := m.vol + ".real"
	if err := os.Rename(m.vol, real); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(m.vol, 0o755); err != nil {
		t.Fatal(err)
	}
	svc, err := m.restart(t, m.vol, false)
	if !errors.Is(err, volume.ErrMissing) {
		t.Fatalf("attach = %v; want ErrMissing", err)
	}
	checkUnavailable(t, svc, m, m.vol, "no version.txt")

	svc.WatchVolumes(20 * time.Millisecond)
	// Back: the real directory takes its place again.
	if err := os.Remove(m.vol); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(real, m.vol); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		f, err := svc.Folder(context.Background(), m.folder.ID, meta.ScopeID{})
		if err == nil && f.Status == meta.StatusReady && f.StatusReason == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("folder after the volume came back: %+v, %v; want ready", f, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	vs, _ := svc.Volumes(context.Background())
	if vs[0].Status != api.VolumeReady || vs[0].Reason != "" {
		t.Errorf("local after it came back = %+v; want ready", vs[0])
	}
	if _, err := svc.CreateFolder(context.Background(), api.CreateFolderRequest{Name: "later", Volume: "local", Owner: alice}); err != nil {
		t.Errorf("create after the volume came back: %v", err)
	}
}

// A version.txt left on the directory under the mount (as an older
// daemon wrote it) is not enough: the store's folders must be there.
func TestVolumeWithoutItsFoldersIsMissing(t *testing.T) {
	m := newMissingEnv(t)
	under := t.TempDir()
	if err := os.WriteFile(filepath.Join(under, "version.txt"), []byte("3"), 0o644); err != nil {
		t.Fatal(err)
	}
	svc, err := m.restart(t, under, false)
	if !errors.Is(err, volume.ErrMissing) || !strings.Contains(err.Error(), m.folder.ID) {
		t.Fatalf("attach = %v; want ErrMissing naming a known folder", err)
	}
	checkUnavailable(t, svc, m, under, "none of the folders")
	if err := ProbeVolume(context.Background(), m.store, meta.Volume{Name: "local", Path: under}); !errors.Is(err, volume.ErrMissing) {
		t.Errorf("ProbeVolume = %v; want ErrMissing", err)
	}
	if err := ProbeVolume(context.Background(), m.store, meta.Volume{Name: "local", Path: m.vol}); err != nil {
		t.Errorf("ProbeVolume of the real volume = %v", err)
	}
}

func TestRequireMount(t *testing.T) {
	m := newMissingEnv(t)
	svc, err := m.restart(t, m.vol, true)
	if !errors.Is(err, volume.ErrMissing) || !strings.Contains(err.Error(), "not a mount point") {
		t.Fatalf("attach of a plain directory with require_mount = %v; want ErrMissing", err)
	}
	checkUnavailable(t, svc, m, m.vol, "not a mount point")
}

// A brand-new volume (unknown to the store, empty) is initialised; a
// known volume's name on another empty directory is not.
func TestNewVolumeIsInitialised(t *testing.T) {
	store := meta.NewMemory()
	defer store.Close()
	svc := New(store, Options{StorageUID: os.Geteuid(), StorageGID: os.Getegid(), Log: zerolog.Nop()})
	defer svc.Close()
	ctx := context.Background()
	dir := t.TempDir()
	if err := svc.AttachVolume(ctx, meta.Volume{Name: "fresh", Path: dir}); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "version.txt")); err != nil || string(b) != "3" {
		t.Errorf("version.txt = %q, %v", b, err)
	}
	other := t.TempDir()
	err := svc.AttachVolume(ctx, meta.Volume{Name: "fresh", Path: other})
	if !errors.Is(err, volume.ErrMissing) {
		t.Errorf("attach of a known volume at an empty directory = %v; want ErrMissing", err)
	}
	if _, err := os.Stat(filepath.Join(other, "version.txt")); !os.IsNotExist(err) {
		t.Errorf("version.txt written into %s: %v", other, err)
	}
	// The volume stays attached at its first path.
	if vs, _ := svc.Volumes(ctx); len(vs) != 1 || vs[0].Status != api.VolumeReady || vs[0].Path != dir {
		t.Errorf("Volumes = %+v", vs)
	}
}
