package e2e

import (
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/vfolder/vfolder/api"
)

// Project membership through the CLI and the FUSE views of a real
// vfolderd.

const memberProject = "9b8a7c6d5e4f40312a1b2c3d4e5f6a7b"

// memberLs lists a directory's names, sorted.
func memberLs(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatalf("ls %s: %v", dir, err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out
}

func TestMemberViews(t *testing.T) {
	d := StartDaemon(t, DaemonOptions{})
	p := []string{"--project", memberProject}
	var shared, models, own api.Folder
	d.JSON(&shared, append([]string{"create", "shared", "local", "--permission", "ro"}, p...)...)
	d.JSON(&models, append([]string{"create", "models", "local"}, p...)...)
	d.JSON(&own, "create", "models", "local", "--user", userUUID)
	d.OK(append([]string{"create", ".local", "local"}, p...)...)
	userDir := filepath.Join(d.MountPoint, "users", userUUID)
	if got := strings.Join(memberLs(t, userDir), " "); got != "models" {
		t.Fatalf("users/ before the membership: %q", got)
	}

	// Membership: the project's folders appear at once; the clash with
	// the user's own "models" is resolved by a suffix; .local stays out.
	r := d.OK("member", "add", "--project", memberProject, "--user", userUUID)
	if !strings.Contains(r.Stdout, "each folder's permission") {
		t.Errorf("member add printed %q", r.Stdout)
	}
	suffixed := "models@" + memberProject[:8]
	if got, want := strings.Join(memberLs(t, userDir), " "), "models "+suffixed+" shared"; got != want {
		t.Fatalf("users/ after member add: %q; want %q", got, want)
	}
	if err := os.WriteFile(filepath.Join(userDir, suffixed, "m"), []byte("x"), 0o644); err != nil {
		t.Errorf("write into the member's rw project folder: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(models.Path, "m")); err != nil || string(b) != "x" {
		t.Errorf("the project folder on the volume: %q, %v", b, err)
	}
	// The folder's own permission (ro) applies...
	if err := os.WriteFile(filepath.Join(userDir, "shared", "w"), nil, 0o644); !errors.Is(err, syscall.EROFS) {
		t.Errorf("write into a ro project folder: %v; want EROFS", err)
	}
	// ...until the membership says otherwise, at once.
	d.OK("member", "add", "--project", memberProject, "--user", userUUID, "--permission", "rw")
	if err := os.WriteFile(filepath.Join(userDir, "shared", "w"), nil, 0o644); err != nil {
		t.Errorf("write after the override: %v", err)
	}
	var ms []api.Membership
	d.JSON(&ms, "member", "list", "--project", memberProject)
	if len(ms) != 1 || ms[0].User != userUUID || ms[0].Permission != "rw" {
		t.Errorf("member list = %+v", ms)
	}
	// A project folder renamed away from the clash gets its plain name.
	d.OK(append([]string{"rename", "models", "weights"}, p...)...)
	if got, want := strings.Join(memberLs(t, userDir), " "), "models shared weights"; got != want {
		t.Errorf("users/ after the rename: %q; want %q", got, want)
	}
	// The views survive a restart.
	d.Stop()
	d.Start()
	if got, want := strings.Join(memberLs(t, userDir), " "), "models shared weights"; got != want {
		t.Errorf("users/ after a restart: %q; want %q", got, want)
	}
	// Removing the membership takes the folders away at once.
	d.OK("member", "remove", "--project", memberProject, "--user", userUUID)
	if got := strings.Join(memberLs(t, userDir), " "); got != "models" {
		t.Errorf("users/ after member remove: %q", got)
	}
	if r := d.CLI("member", "remove", "--project", memberProject, "--user", userUUID); r.Code != 1 || !strings.Contains(r.Stderr, "not a member") {
		t.Errorf("removing twice: %s", r)
	}
	if r := d.CLI("member", "add", "--project", memberProject, "--user", "bob"); r.Code != 1 {
		t.Errorf("bad user: %s", r)
	}
}

// TestMemberPublish: a member may publish the project's folders (at most
// at the membership's permission), a non-member may not, and the project's
// .local is mounted as the member's own subfolder, made on first use.
func TestMemberPublish(t *testing.T) {
	d, sessDir := mdStartDaemon(t)
	p := []string{"--project", memberProject}
	var models, local api.Folder
	d.JSON(&models, append([]string{"create", "models", "local"}, p...)...)
	d.JSON(&local, append([]string{"create", ".local", "local"}, p...)...)

	// Not a member yet: refused, naming the folder.
	r := d.CLI("mount", "publish", "s1", models.ID, "--user", userUUID)
	if r.Code != 1 || !strings.Contains(r.Stderr, `folder "models"`) {
		t.Errorf("publish by a non-member: %s", r)
	}
	d.OK("member", "add", "--project", memberProject, "--user", userUUID, "--permission", "ro")
	if r := d.CLI("mount", "publish", "s1", "models:rw", "--user", userUUID); r.Code != 1 || !strings.Contains(r.Stderr, "exceeds") {
		t.Errorf("publish above the membership's permission: %s", r)
	}
	var s api.Session
	d.JSON(&s, "mount", "publish", "s1", "models", "--user", userUUID)
	got := map[string]api.PublishedMount{}
	for _, m := range s.Mounts {
		got[m.Target] = m
	}
	if m := got["/home/work/models"]; m.Mode != "ro" || m.FolderID != models.ID {
		t.Errorf("models mount %+v", m)
	}
	lm, ok := got["/home/work/.local"]
	if !ok || lm.FolderID != local.ID || lm.Subpath != userUUID || lm.Mode != "ro" || len(s.Mounts) != 2 {
		t.Fatalf("mounts %+v; want models and the project .local as the user's subfolder", s.Mounts)
	}
	sub := filepath.Join(local.Path, userUUID)
	if uid, gid := statOwner(t, sub); uid != StorageID || gid != StorageID {
		t.Errorf("per-user subfolder owned by %d:%d", uid, gid)
	}
	if err := os.WriteFile(filepath.Join(sub, "mine"), []byte("m"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(lm.HostPath, "mine")); got != "m" {
		t.Errorf("the published .local shows %q", got)
	}
	if _, err := os.Stat(filepath.Join(lm.HostPath, userUUID)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the published .local shows the project folder, not the user's subfolder: %v", err)
	}
	// The membership is gone: the session keeps what it has, new
	// publishes are refused.
	d.OK("member", "remove", "--project", memberProject, "--user", userUUID)
	if r := d.CLI("mount", "publish", "s2", models.ID, "--user", userUUID); r.Code != 1 {
		t.Errorf("publish after the membership ended: %s", r)
	}
	mdUnpublish(t, d, "s1", 2)
	if left := mdMountsBelow(sessDir); len(left) > 0 {
		t.Errorf("mounts left below %s: %v", sessDir, left)
	}
}
