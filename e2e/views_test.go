package e2e

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vfolder/vfolder/api"
)

// viewOwner is the view uid/gid vfolderd shows by default.
const viewOwner = 1000

// countMountsAt counts the mounts at exactly p.
func countMountsAt(p string) int {
	n := 0
	for _, m := range mountsUnder(p) {
		if m == p {
			n++
		}
	}
	return n
}

func statOwner(t *testing.T, p string) (uid, gid uint32) {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		t.Fatalf("stat %s: %v", p, err)
	}
	return st.Uid, st.Gid
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("read %s: %v", p, err)
	}
	return string(b)
}

func gone(t *testing.T, p, what string) {
	t.Helper()
	if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s: %s still there (%v)", what, p, err)
	}
}

// findView returns the view at ns/key/name in vs.
func findView(vs []api.View, ns, key, name string) (api.View, bool) {
	for _, v := range vs {
		if v.Namespace == ns && v.Key == key && v.Name == name {
			return v, true
		}
	}
	return api.View{}, false
}

// TestViewsThroughDaemon drives the FUSE views of a real vfolderd through
// the CLI: standing views follow the folders, a ro session view refuses
// writes and pins its folder, and the mount survives SIGTERM (gone) and
// SIGKILL (replaced at the next start, views rebuilt).
func TestViewsThroughDaemon(t *testing.T) {
	d := StartDaemon(t, DaemonOptions{})
	if n := countMountsAt(d.MountPoint); n != 1 {
		t.Fatalf("%d mounts at %s after start; want 1", n, d.MountPoint)
	}
	var f api.Folder
	d.JSON(&f, "create", "data", "local", "--user", userUUID)
	var pf api.Folder
	d.JSON(&pf, "create", "models", "local", "--project", projectUUID, "--permission", "ro")

	// Write through the user's standing view.
	view := filepath.Join(d.MountPoint, "users", userUUID, "data")
	if err := os.WriteFile(filepath.Join(view, "hello.txt"), []byte("hi"), 0o644); err != nil {
		t.Fatalf("write through %s: %v", view, err)
	}
	if err := os.Mkdir(filepath.Join(view, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	onVolume := filepath.Join(f.Path, "hello.txt")
	if got := readFile(t, onVolume); got != "hi" {
		t.Errorf("on the volume: %q", got)
	}
	if uid, gid := statOwner(t, onVolume); uid != StorageID || gid != StorageID {
		t.Errorf("on the volume the file is owned by %d:%d; want %d:%d", uid, gid, StorageID, StorageID)
	}
	if uid, gid := statOwner(t, filepath.Join(f.Path, "sub")); uid != StorageID || gid != StorageID {
		t.Errorf("on the volume the directory is owned by %d:%d; want the storage id", uid, gid)
	}
	if uid, gid := statOwner(t, filepath.Join(view, "hello.txt")); uid != viewOwner || gid != viewOwner {
		t.Errorf("in the view the file is owned by %d:%d; want %d:%d", uid, gid, viewOwner, viewOwner)
	}
	// The project folder shows under projects/, read-only.
	pview := filepath.Join(d.MountPoint, "projects", projectHex, "models")
	if err := os.WriteFile(filepath.Join(pview, "x"), nil, 0o644); !errors.Is(err, syscall.EROFS) {
		t.Errorf("write into the ro project view: %v; want EROFS", err)
	}

	var vs []api.View
	d.JSON(&vs, "view", "list")
	if v, ok := findView(vs, "users", userUUID, "data"); !ok || v.Path != view || v.FolderID != f.ID || v.Mode != "rw" || v.UID != viewOwner {
		t.Errorf("view list: users view %+v (found %v) in %+v", v, ok, vs)
	}
	if v, ok := findView(vs, "projects", projectHex, "models"); !ok || v.Mode != "ro" || v.FolderID != pf.ID {
		t.Errorf("view list: projects view %+v (found %v)", v, ok)
	}

	// A ro session view of the folder: reads work, writes get EROFS.
	var sv api.View
	d.JSON(&sv, "view", "add", "sess-1", "work", "data", "--user", userUUID, "--mode", "ro")
	sessView := filepath.Join(d.MountPoint, "sessions", "sess-1", "work")
	if sv.Path != sessView || sv.Mode != "ro" || sv.FolderID != f.ID {
		t.Errorf("view add: %+v", sv)
	}
	if got := readFile(t, filepath.Join(sessView, "hello.txt")); got != "hi" {
		t.Errorf("read through the session view: %q", got)
	}
	if err := os.WriteFile(filepath.Join(sessView, "hello.txt"), []byte("no"), 0o644); !errors.Is(err, syscall.EROFS) {
		t.Errorf("write through the ro session view: %v; want EROFS", err)
	}
	if err := os.Mkdir(filepath.Join(sessView, "new"), 0o755); !errors.Is(err, syscall.EROFS) {
		t.Errorf("mkdir in the ro session view: %v; want EROFS", err)
	}
	// Adding it again is fine; more than the folder's permission is not.
	d.OK("view", "add", "sess-1", "work", f.ID, "--mode", "ro")
	if r := d.CLI("view", "add", "sess-2", "work", f.ID, "--mode", "wd"); r.Code != 1 || !strings.Contains(r.Stderr, "exceeds the permission") {
		t.Errorf("wd view of an rw folder: %s", r)
	}
	// A subpath view.
	d.OK("view", "add", "sess-2", "sub", f.ID, "--subpath", "sub", "--uid", "2000", "--gid", "2000")
	if uid, _ := statOwner(t, filepath.Join(d.MountPoint, "sessions", "sess-2", "sub")); uid != 2000 {
		t.Errorf("subpath view shows uid %d; want 2000", uid)
	}

	// The folder cannot be trashed while sessions have views of it.
	r := d.CLI("delete", "data", "--user", userUUID)
	if r.Code != 1 || !strings.Contains(r.Stderr, "sess-1") || !strings.Contains(r.Stderr, "sess-2") {
		t.Errorf("trash with session views: %s", r)
	}
	d.OK("view", "remove", "sess-1", "work")
	d.OK("view", "remove", "sess-2", "sub")
	gone(t, sessView, "removed session view")
	d.OK("delete", "data", "--user", userUUID)
	gone(t, view, "users/ view of a trashed folder")
	d.OK("restore", "data", "--user", userUUID)
	if got := readFile(t, filepath.Join(view, "hello.txt")); got != "hi" {
		t.Errorf("after restore: %q", got)
	}

	// Rename moves the users/ view.
	d.OK("rename", "data", "renamed", "--user", userUUID)
	gone(t, view, "users/ view under the old name")
	view = filepath.Join(d.MountPoint, "users", userUUID, "renamed")
	if got := readFile(t, filepath.Join(view, "hello.txt")); got != "hi" {
		t.Errorf("after rename: %q", got)
	}

	// SIGTERM unmounts; the next start rebuilds the views.
	d.Stop()
	if n := countMountsAt(d.MountPoint); n != 0 {
		t.Fatalf("%d mounts left at %s after SIGTERM", n, d.MountPoint)
	}
	d.Start()
	if got := readFile(t, filepath.Join(view, "hello.txt")); got != "hi" {
		t.Errorf("after a restart: %q", got)
	}

	// SIGKILL leaves a dead mount; the next start replaces it.
	d.Kill()
	if n := countMountsAt(d.MountPoint); n != 1 {
		t.Fatalf("%d mounts at %s after SIGKILL; want the dead one", n, d.MountPoint)
	}
	var st syscall.Stat_t
	err := syscall.Stat(d.MountPoint, &st)
	for deadline := time.Now().Add(10 * time.Second); !errors.Is(err, syscall.ENOTCONN) && time.Now().Before(deadline); err = syscall.Stat(d.MountPoint, &st) {
		time.Sleep(20 * time.Millisecond)
	}
	if !errors.Is(err, syscall.ENOTCONN) {
		t.Errorf("stat of the dead mount: %v; want ENOTCONN", err)
	}
	d.Start()
	if n := countMountsAt(d.MountPoint); n != 1 {
		t.Errorf("%d mounts at %s after the restart; want 1 (the stale one replaced)", n, d.MountPoint)
	}
	if !strings.Contains(d.Log(), "stale FUSE mount") {
		t.Errorf("the log does not mention the replaced stale mount")
	}
	if got := readFile(t, filepath.Join(view, "hello.txt")); got != "hi" {
		t.Errorf("after SIGKILL and restart: %q", got)
	}
	if _, err := os.Stat(pview); err != nil {
		t.Errorf("projects/ view after SIGKILL and restart: %v", err)
	}
	d.JSON(&vs, "view", "list")
	if _, ok := findView(vs, "users", userUUID, "renamed"); !ok {
		t.Errorf("view list after the restart: %+v", vs)
	}
	// Writing works again through the new mount.
	if err := os.WriteFile(filepath.Join(view, "after.txt"), []byte("ok"), 0o644); err != nil {
		t.Errorf("write after restart: %v", err)
	}
	if got := readFile(t, filepath.Join(f.Path, "after.txt")); got != "ok" {
		t.Errorf("on the volume after restart: %q", got)
	}
}

// TestViewsCLIWithoutFUSE: with --no-fuse the daemon serves folders but
// answers every view call with a clear error.
func TestViewsCLIWithoutFUSE(t *testing.T) {
	d := StartDaemon(t, DaemonOptions{ExtraArgs: []string{"--no-fuse"}})
	if n := countMountsAt(d.MountPoint); n != 0 {
		t.Errorf("%d mounts at %s with --no-fuse", n, d.MountPoint)
	}
	var f api.Folder
	d.JSON(&f, "create", "data", "local", "--user", userUUID)
	for _, args := range [][]string{{"view", "list"}, {"view", "add", "s", "n", f.ID}, {"view", "remove", "s", "n"}} {
		if r := d.CLI(args...); r.Code != 1 || !strings.Contains(r.Stderr, "fuse = false") {
			t.Errorf("%s", r)
		}
	}
	d.OK("delete", f.ID)
}
