package e2e

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/vfolder/vfolder/api"
)

// Sharing through the CLI and the FUSE views of a real vfolderd:
// per-folder shares of a project folder, invitations of a user's folder,
// what each user reaches, and publish within the granted permission.

const (
	shProject = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
	shOwner   = "11111111222233334444555555555555" // owns "mine"
	shMember1 = "21111111222233334444555555555555" // member, ro by share
	shMember2 = "31111111222233334444555555555555" // member, the default
	shInvitee = "41111111222233334444555555555555" // invited to "mine" as rw
	shOther   = "51111111222233334444555555555555" // rejects, is canceled, accepts, leaves
)

// shReach is list --user U --json.
func shReach(t *testing.T, d *Daemon, user string) map[string]string {
	t.Helper()
	var fs []api.ReachedFolder
	d.JSON(&fs, "list", "--user", user)
	out := map[string]string{}
	for _, f := range fs {
		out[f.ViewName] = f.Via + " " + string(f.EffectivePermission)
	}
	return out
}

func shWant(t *testing.T, what string, got map[string]string, want map[string]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %v, want %v", what, got, want)
		return
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %v, want %v", what, got, want)
			return
		}
	}
}

// shFail runs the CLI, wants exit 1 and msg in stderr.
func shFail(t *testing.T, d *Daemon, msg string, args ...string) {
	t.Helper()
	r := d.CLI(args...)
	if r.Code != 1 || !strings.Contains(r.Stderr, msg) {
		t.Errorf("want exit 1 mentioning %q; got %s", msg, r)
	}
}

func shUsed(t *testing.T, d *Daemon, scope string) int64 {
	t.Helper()
	var s api.QuotaScope
	d.JSON(&s, "quota-scope", "get", "local", scope)
	return s.UsedBytes
}

func TestSharingViews(t *testing.T) {
	d, _ := mdStartDaemon(t)
	users := func(u string) string { return filepath.Join(d.MountPoint, "users", u) }

	// The admin's project folder, two members; the owner (an admin) gives
	// member 1 ro on it.
	var pdata api.Folder
	d.JSON(&pdata, "create", "pdata", "local", "--project", shProject, "--permission", "rw")
	d.OK("member", "add", "--project", shProject, "--user", shMember1)
	d.OK("member", "add", "--project", shProject, "--user", shMember2)
	r := d.OK("share", "pdata", "--project", shProject, "--user", shMember1, "--perm", "ro")
	if !strings.Contains(r.Stdout, "has ro on folder \"pdata\"") {
		t.Errorf("share printed %q", r.Stdout)
	}

	// A user invites another to a private folder as rw.
	var mine api.Folder
	d.JSON(&mine, "create", "mine", "local", "--user", shOwner, "--permission", "rw")
	d.OK("create", ".cache", "local", "--user", shOwner)
	var inv api.Invitation
	d.JSON(&inv, "invite", "mine", "--user", shOwner, "--to", shInvitee, "--perm", "rw")
	var incoming []api.Invitation
	d.JSON(&incoming, "invitations", "--user", shInvitee)
	if len(incoming) != 1 || incoming[0].ID != inv.ID || incoming[0].Direction != api.DirIncoming || incoming[0].State != "pending" {
		t.Fatalf("invitations of the invitee: %+v", incoming)
	}
	if got := memberLs(t, users(shInvitee)); len(got) != 0 {
		t.Errorf("users/ of the invitee before accepting: %v", got)
	}
	d.OK("accept", inv.ID, "--user", shInvitee)

	// Each user's users/ view shows exactly the expected folders.
	for u, want := range map[string]string{
		shMember1: "pdata", shMember2: "pdata", shInvitee: "mine", shOwner: ".cache mine",
	} {
		if got := strings.Join(memberLs(t, users(u)), " "); got != want {
			t.Errorf("users/%s: %q, want %q", u, got, want)
		}
	}
	shWant(t, "member 1 reaches", shReach(t, d, shMember1), map[string]string{"pdata": "shared ro"})
	shWant(t, "member 2 reaches", shReach(t, d, shMember2), map[string]string{"pdata": "project rw"})
	shWant(t, "the invitee reaches", shReach(t, d, shInvitee), map[string]string{"mine": "invited rw"})
	shWant(t, "the owner reaches", shReach(t, d, shOwner), map[string]string{"mine": "owner rw", ".cache": "owner rw"})

	// ...at the expected permissions.
	if err := os.WriteFile(filepath.Join(users(shMember1), "pdata", "w"), []byte("x"), 0o644); !errors.Is(err, syscall.EROFS) {
		t.Errorf("member 1 writes into the ro share: %v; want EROFS", err)
	}
	if err := os.WriteFile(filepath.Join(users(shMember2), "pdata", "w"), []byte("x"), 0o644); err != nil {
		t.Errorf("member 2 writes into the project folder: %v", err)
	}

	// The rw invitee's bytes land on the owner's scope, to the byte.
	p := filepath.Join(users(shInvitee), "mine", "from-invitee")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatalf("the invitee creates a file: %v", err)
	}
	before := shUsed(t, d, "user:"+shOwner)
	const n = 123457
	if err := os.WriteFile(p, make([]byte, n), 0o644); err != nil {
		t.Fatalf("the invitee writes: %v", err)
	}
	if after := shUsed(t, d, "user:"+shOwner); after-before != n {
		t.Errorf("the owner's scope grew by %d bytes (%d -> %d); want %d", after-before, before, after, n)
	}
	if r := d.CLI("--json", "quota-scope", "get", "local", "user:"+shInvitee); r.Code == 0 && !strings.Contains(r.Stdout, `"used_bytes": 0`) {
		t.Errorf("the invitee's own scope was charged: %s", r.Stdout)
	}
	if b, err := os.ReadFile(filepath.Join(mine.Path, "from-invitee")); err != nil || len(b) != n {
		t.Errorf("the file in the owner's folder on the volume: %d bytes, %v", len(b), err)
	}

	// status: the Data page counters.
	var st api.UserStatus
	d.JSON(&st, "status", "--user", shInvitee)
	if st.InvitedFolders != 1 || st.ProjectFolders != 0 || st.FoldersCreated != 0 {
		t.Errorf("status of the invitee: %+v", st)
	}
	d.JSON(&st, "status", "--user", shMember1)
	if st.ProjectFolders != 1 || st.InvitedFolders != 0 || len(st.Usage) != 2 {
		t.Errorf("status of member 1: %+v", st)
	}
	d.OK("policy", "set", "--user", shOwner, "--max-folders", "5")
	d.JSON(&st, "status", "--user", shOwner)
	if st.FoldersCreated != 2 || st.MaxFolders != 5 || len(st.Usage) != 1 || st.Usage[0].UsedBytes < n {
		t.Errorf("status of the owner: %+v", st)
	}
	if r := d.OK("status", "--user", shOwner); !strings.Contains(r.Stdout, "2 / 5") {
		t.Errorf("status printed %q", r.Stdout)
	}

	// Publish into the invitee's session: above the granted permission is
	// refused, at or below works.
	shFail(t, d, "exceeds the permission", "mount", "publish", "sh-1", "--user", shInvitee, "--no-automount", "mine:wd")
	var s api.Session
	d.JSON(&s, "mount", "publish", "sh-2", "--user", shInvitee, "--no-automount", "mine:rw")
	if len(s.Mounts) != 1 || s.Mounts[0].Mode != "rw" || s.Mounts[0].FolderID != mine.ID {
		t.Errorf("publish of the invited folder: %+v", s.Mounts)
	}
	mdUnpublish(t, d, "sh-2", 1)
	d.JSON(&s, "mount", "publish", "sh-3", "--user", shInvitee, "--no-automount", "mine:ro")
	mdUnpublish(t, d, "sh-3", 1)

	// unshare: the invited folder leaves the invitee's view at once; the
	// member's per-folder permission goes and the default applies again.
	d.OK("unshare", "mine", "--owner", shOwner, "--user", shInvitee)
	if got := memberLs(t, users(shInvitee)); len(got) != 0 {
		t.Errorf("users/ of the invitee after unshare: %v", got)
	}
	shWant(t, "the invitee reaches after unshare", shReach(t, d, shInvitee), map[string]string{})
	shFail(t, d, "may not mount", "mount", "publish", "sh-4", "--user", shInvitee, "--no-automount", mine.ID)
	d.OK("unshare", pdata.ID, "--user", shMember1)
	if err := os.WriteFile(filepath.Join(users(shMember1), "pdata", "w1"), []byte("x"), 0o644); err != nil {
		t.Errorf("member 1 writes after unshare (the membership's rw): %v", err)
	}
	shFail(t, d, "has no share", "unshare", pdata.ID, "--user", shMember1)
}

func TestInvitationRoundTrips(t *testing.T) {
	d := StartDaemon(t, DaemonOptions{})
	users := func(u string) string { return filepath.Join(d.MountPoint, "users", u) }
	var mine api.Folder
	d.JSON(&mine, "create", "mine", "local", "--user", shOwner, "--permission", "rw")
	d.OK("create", ".cache", "local", "--user", shOwner)
	var pdata api.Folder
	d.JSON(&pdata, "create", "pdata", "local", "--project", shProject)

	// Refusals: clear messages, exit 1, nothing stored.
	shFail(t, d, "dot-folder", "invite", ".cache", "--user", shOwner, "--to", shOther, "--perm", "ro")
	shFail(t, d, "cannot invite themselves", "invite", "mine", "--user", shOwner, "--to", shOwner, "--perm", "ro")
	shFail(t, d, `permission wd exceeds the owner's permission on folder "mine" (rw)`, "invite", "mine", "--user", shOwner, "--to", shOther, "--perm", "wd")
	shFail(t, d, "project folders cannot be invited", "invite", pdata.ID, "--to", shOther, "--perm", "ro")
	var none []api.Invitation
	d.JSON(&none, "invitations", "--user", shOwner)
	if len(none) != 0 {
		t.Fatalf("refused invitations were stored: %+v", none)
	}

	// reject
	var inv api.Invitation
	d.JSON(&inv, "invite", mine.ID, "--to", shOther, "--perm", "ro")
	shFail(t, d, "only the invitee", "reject", inv.ID, "--user", shOwner)
	d.OK("reject", inv.ID, "--user", shOther)
	shFail(t, d, "rejected already", "accept", inv.ID, "--user", shOther)
	if got := memberLs(t, users(shOther)); len(got) != 0 {
		t.Errorf("users/ after reject: %v", got)
	}
	// cancel
	d.JSON(&inv, "invite", mine.ID, "--to", shOther, "--perm", "ro")
	shFail(t, d, "is pending", "invite", mine.ID, "--to", shOther, "--perm", "ro")
	d.OK("cancel", inv.ID)
	shFail(t, d, "canceled already", "accept", inv.ID, "--user", shOther)
	// accept, then leave
	d.JSON(&inv, "invite", mine.ID, "--to", shOther, "--perm", "ro")
	d.OK("accept", inv.ID, "--user", shOther)
	if got := strings.Join(memberLs(t, users(shOther)), " "); got != "mine" {
		t.Errorf("users/ after accept: %q", got)
	}
	if err := os.WriteFile(filepath.Join(users(shOther), "mine", "w"), nil, 0o644); !errors.Is(err, syscall.EROFS) {
		t.Errorf("the ro invitee writes: %v; want EROFS", err)
	}
	// A change of the granted permission, at most the owner's.
	shFail(t, d, "exceeds the owner's permission", "share", mine.ID, "--user", shOther, "--perm", "wd")
	d.OK("share", mine.ID, "--user", shOther, "--perm", "rw")
	if err := os.WriteFile(filepath.Join(users(shOther), "mine", "w"), nil, 0o644); err != nil {
		t.Errorf("the invitee writes after the change to rw: %v", err)
	}
	d.OK("leave", "mine", "--user", shOther)
	if got := memberLs(t, users(shOther)); len(got) != 0 {
		t.Errorf("users/ after leave: %v", got)
	}
	shFail(t, d, "reaches no folder", "leave", "mine", "--user", shOther)

	var all []api.Invitation
	d.JSON(&all, "invitations", "--user", shOther)
	var states []string
	for _, i := range all {
		states = append(states, string(i.State))
	}
	if got := strings.Join(states, " "); got != "rejected canceled accepted" {
		t.Errorf("invitation states: %q", got)
	}

	// A purge takes the folder's invitations with it.
	d.JSON(&inv, "invite", mine.ID, "--to", shInvitee, "--perm", "ro")
	d.OK("delete", mine.ID)
	d.OK("purge", mine.ID, "--confirm", "mine")
	d.JSON(&all, "invitations", "--user", shOwner)
	if len(all) != 0 {
		t.Errorf("invitations after the purge: %+v", all)
	}
}

// TestSharingClusterInStep: an invitation accepted through one node, a
// change of the granted permission through another and a revocation
// through a third change the invitee's users/ view on every node.
func TestSharingClusterInStep(t *testing.T) {
	_, _, nodes := clStart(t, 2)
	n1, n2 := nodes[0], nodes[1]
	view := func(n *clNode) string { return filepath.Join(n.MountPoint, "users", shInvitee, "mine") }
	var mine api.Folder
	n1.JSON(&mine, "create", "mine", "local", "--user", shOwner, "--permission", "rw")
	var inv api.Invitation
	n1.JSON(&inv, "invite", mine.ID, "--to", shInvitee, "--perm", "ro")
	clChange(t, "accept through node2", []*clNode{n1, n2}, func() { n2.OK("accept", inv.ID, "--user", shInvitee) },
		func(n *clNode) bool { return clExists(view(n)) })
	if err := os.WriteFile(filepath.Join(view(n1), "w"), nil, 0o644); !errors.Is(err, syscall.EROFS) {
		t.Errorf("the ro invitee writes on node1: %v; want EROFS", err)
	}
	clChange(t, "share rw through node1", []*clNode{n2}, func() { n1.OK("share", mine.ID, "--user", shInvitee, "--perm", "rw") },
		func(n *clNode) bool { return os.WriteFile(filepath.Join(view(n), "w"), nil, 0o644) == nil })
	clChange(t, "unshare through node2", []*clNode{n1, n2}, func() { n2.OK("unshare", mine.ID, "--user", shInvitee) },
		func(n *clNode) bool { return !clExists(view(n)) })
}

// rvBind binds source at dest the way a container runtime binds an OCI
// mount ("rbind", "rslave"); the bind is taken away at the end.
func rvBind(t *testing.T, source, dest string) {
	t.Helper()
	if err := os.MkdirAll(dest, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount(source, dest, "", syscall.MS_BIND|syscall.MS_REC, ""); err != nil {
		t.Fatalf("bind %s at %s: %v", source, dest, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dest, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dest, err)
		}
	})
	if err := syscall.Mount("", dest, "", syscall.MS_SLAVE|syscall.MS_REC, ""); err != nil {
		t.Fatal(err)
	}
}

// TestRevokedOnNextPublish: after the owner unshares, the invited folder
// leaves the invitee's users/ view at once, while the invitee's running
// session keeps its mount until the session's next publish (of another
// folder), which takes it out of the session (view, host mounts, record)
// and says so. What a "container" sees: one that bound the reserved
// placeholder (the view arrived later) shows the empty placeholder again;
// one that bound the published view directly keeps its bind, but the
// view behind it is gone (nothing listed, nothing found).
func TestRevokedOnNextPublish(t *testing.T) {
	d, _ := mdStartDaemon(t)
	var mine, other api.Folder
	d.JSON(&mine, "create", "mine", "local", "--user", shOwner, "--permission", "rw")
	if err := os.WriteFile(filepath.Join(mine.Path, "marker"), []byte("shared"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(filepath.Join(mine.Path, "marker"), StorageID, StorageID); err != nil {
		t.Fatal(err)
	}
	d.JSON(&other, "create", "other", "local", "--user", shInvitee)
	var inv api.Invitation
	d.JSON(&inv, "invite", "mine", "--user", shOwner, "--to", shInvitee, "--perm", "rw")
	d.OK("accept", inv.ID, "--user", shInvitee)

	// A "container" started with the reserved target bound; the view is
	// published into it afterwards.
	var s api.Session
	d.JSON(&s, "mount", "publish", "rv", "--user", shInvitee, "--no-automount", "--reserve", "mine")
	if len(s.Reserved) != 1 || s.Reserved[0].HostPath == "" {
		t.Fatalf("reservation: %+v", s)
	}
	ctr := newDir(t)
	late, direct := filepath.Join(ctr, "late"), filepath.Join(ctr, "direct")
	rvBind(t, s.Reserved[0].HostPath, late)
	d.JSON(&s, "mount", "publish", "rv", "--user", shInvitee, "--no-automount", "mine:rw")
	if len(s.Mounts) != 1 || s.Mounts[0].FolderID != mine.ID || s.Mounts[0].Target != "/home/work/mine" {
		t.Fatalf("publish of the invited folder: %+v", s)
	}
	pub := s.Mounts[0]
	// A "container" started after the publish binds the view directly.
	rvBind(t, pub.HostPath, direct)
	view := filepath.Join(d.MountPoint, "sessions", "rv", pub.Name)
	for _, p := range []string{late, direct, view} {
		if b, err := os.ReadFile(filepath.Join(p, "marker")); err != nil || string(b) != "shared" {
			t.Fatalf("%s/marker before the unshare: %q, %v", p, b, err)
		}
	}

	d.OK("unshare", "mine", "--owner", shOwner, "--user", shInvitee)
	// The standing view goes at once; the session keeps the mount.
	if got := memberLs(t, filepath.Join(d.MountPoint, "users", shInvitee)); strings.Join(got, " ") != "other" {
		t.Errorf("users/ of the invitee after unshare: %v", got)
	}
	for _, p := range []string{late, direct, view} {
		if b, err := os.ReadFile(filepath.Join(p, "marker")); err != nil || string(b) != "shared" {
			t.Errorf("%s/marker before the next publish: %q, %v", p, b, err)
		}
	}

	// The next publish, of another folder, takes it out and says so.
	r := d.OK("mount", "publish", "rv", "--user", shInvitee, "--no-automount", "other")
	if !strings.Contains(r.Stdout, "Revoked "+pub.Name+" at /home/work/mine") || !strings.Contains(r.Stdout, "no longer reaches folder \"mine\"") {
		t.Errorf("publish did not report the revocation: %s", r)
	}
	d.JSON(&s, "mount", "list", "rv")
	if len(s.Mounts) != 1 || s.Mounts[0].FolderID != other.ID {
		t.Errorf("session after the revocation: %+v", s.Mounts)
	}
	// The session view is gone, and so is everything at its key on the host.
	if _, err := os.Lstat(view); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the revoked session view: %v; want ENOENT", err)
	}
	if left, err := mountInfosUnder(pub.HostPath); err != nil || len(left) != 0 {
		t.Errorf("mounts left at the revoked key %s: %+v, %v", pub.HostPath, left, err)
	}
	if _, err := os.Lstat(pub.HostPath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the revoked key directory: %v; want ENOENT", err)
	}
	// The "container" that bound the placeholder shows it empty again.
	if got := memberLs(t, late); len(got) != 0 {
		t.Errorf("the late-bound target after the revocation lists %v; want nothing", got)
	}
	// The one that bound the view keeps a bind to a view that is gone.
	_, rerr := os.ReadFile(filepath.Join(direct, "marker"))
	if !errors.Is(rerr, syscall.ENOENT) {
		t.Errorf("the directly bound target reads the revoked folder's file: %v; want ENOENT", rerr)
	}
	ents, lerr := os.ReadDir(direct)
	if !errors.Is(lerr, syscall.ESTALE) && (lerr != nil || len(ents) > 0) {
		t.Errorf("the directly bound target lists %d entries, %v; want ESTALE or nothing", len(ents), lerr)
	}
	t.Logf("the directly bound target after the revocation: read marker: %v; list: %d entries, %v", rerr, len(ents), lerr)
	// The owner's folder is no longer in use by a session: it can be trashed.
	d.OK("delete", mine.ID)
	mdUnpublish(t, d, "rv", 1)
}
