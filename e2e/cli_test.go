package e2e

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/meta"
)

const (
	userUUID    = "0123456789abcdef0123456789abcdef"
	projectUUID = "fedcba98-7654-3210-fedc-ba9876543210"
	projectHex  = "fedcba9876543210fedcba9876543210"
)

// checkFolderDir checks that f's directory is where the v3 layout puts it
// and is owned by the storage uid/gid.
func checkFolderDir(t *testing.T, volRoot string, f api.Folder) {
	t.Helper()
	want := filepath.Join(volRoot, f.Owner.Hex(), f.ID[0:2], f.ID[2:4], f.ID[4:])
	if f.Path != want {
		t.Errorf("folder %q: API path %q, want %q", f.Name, f.Path, want)
	}
	fi, err := os.Lstat(want)
	if err != nil {
		t.Fatalf("folder %q: %v", f.Name, err)
	}
	if !fi.IsDir() {
		t.Fatalf("folder %q: %s is not a directory", f.Name, want)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != StorageID || st.Gid != StorageID {
		t.Errorf("folder %q: %s is owned by %d:%d, want %d:%d", f.Name, want, st.Uid, st.Gid, StorageID, StorageID)
	}
}

func listAll(d *Daemon) []api.Folder {
	var fs []api.Folder
	d.JSON(&fs, "list", "--all")
	return fs
}

func TestCLIWorkflow(t *testing.T) {
	d := StartDaemon(t, DaemonOptions{})
	vol := d.Volumes["local"]

	// volume list and its alias
	var vols []api.Volume
	d.JSON(&vols, "volume", "list")
	if len(vols) != 1 || vols[0].Name != "local" || vols[0].Path != vol {
		t.Fatalf("volume list: %+v", vols)
	}
	if r := d.OK("list-hosts"); !strings.Contains(r.Stdout, "local") || !strings.Contains(r.Stdout, vol) {
		t.Errorf("list-hosts printed %q", r.Stdout)
	}

	// create a user folder and a project folder
	var uf, pf api.Folder
	d.JSON(&uf, "create", "data", "local", "--user", userUUID)
	d.JSON(&pf, "create", "shared", "local", "--project", projectUUID, "--permission", "ro", "--mode", "data")
	if uf.Name != "data" || uf.Owner.String() != "user:"+userUUID || uf.Status != meta.StatusReady {
		t.Errorf("created user folder %+v", uf)
	}
	if pf.Owner.String() != "project:"+projectHex || pf.Permission != meta.PermRO || pf.UsageMode != meta.ModeData {
		t.Errorf("created project folder %+v", pf)
	}
	checkFolderDir(t, vol, uf)
	checkFolderDir(t, vol, pf)
	if b, err := os.ReadFile(filepath.Join(vol, "version.txt")); err != nil || strings.TrimSpace(string(b)) != "3" {
		t.Errorf("version.txt: %q, %v; want \"3\"", b, err)
	}

	// list: all, by owner, table
	if fs := listAll(d); len(fs) != 2 {
		t.Errorf("list --all: %d folders, want 2", len(fs))
	}
	var fs []api.Folder
	d.JSON(&fs, "list", "--project", projectUUID)
	if len(fs) != 1 || fs[0].ID != pf.ID {
		t.Errorf("list --project: %+v", fs)
	}
	if r := d.OK("list"); !strings.Contains(r.Stdout, "NAME") || !strings.Contains(r.Stdout, "shared") || !strings.Contains(r.Stdout, "data") {
		t.Errorf("list printed %q", r.Stdout)
	}

	// info by name and by id
	var got api.Folder
	d.JSON(&got, "info", "data", "--user", userUUID)
	if got.ID != uf.ID {
		t.Errorf("info by name: %+v", got)
	}
	d.JSON(&got, "info", pf.ID)
	if got.Name != "shared" {
		t.Errorf("info by id: %+v", got)
	}

	// rename
	d.OK("rename", uf.ID, "data2")
	d.JSON(&got, "info", "data2", "--user", userUUID)
	if got.ID != uf.ID {
		t.Errorf("after rename: %+v", got)
	}
	if r := d.CLI("info", "data", "--user", userUUID); r.Code != 1 {
		t.Errorf("the old name still resolves: %s", r)
	}

	// delete (trash): says it can be restored, the directory stays
	r := d.OK("delete", uf.ID)
	if !strings.Contains(r.Stdout, "restore") {
		t.Errorf("delete printed %q", r.Stdout)
	}
	d.JSON(&fs, "list")
	if len(fs) != 1 || fs[0].ID != pf.ID {
		t.Errorf("list after delete: %+v", fs)
	}
	d.JSON(&fs, "list", "--trash")
	if len(fs) != 1 || fs[0].ID != uf.ID || fs[0].Status != meta.StatusDeletePending {
		t.Errorf("list --trash: %+v", fs)
	}
	checkFolderDir(t, vol, uf)

	// restore
	d.OK("restore", uf.ID)
	d.JSON(&got, "info", uf.ID)
	if got.Status != meta.StatusReady {
		t.Errorf("after restore: %+v", got)
	}

	// purge: refused for a live folder and for a wrong name, then done
	if r := d.CLI("purge", uf.ID, "--confirm", "data2"); r.Code != 1 {
		t.Errorf("purging a live folder: %s", r)
	}
	d.OK("delete", "data2", "--user", userUUID)
	before := Tree(t, vol)
	if r := d.CLI("purge", uf.ID, "--confirm", "data"); r.Code != 1 || !strings.HasPrefix(r.Stderr, "vfolder: ") {
		t.Errorf("purge with a wrong name: %s", r)
	}
	if diff := DiffTrees(before, Tree(t, vol)); diff != "" {
		t.Errorf("a refused purge changed the volume:\n%s", diff)
	}
	checkFolderDir(t, vol, uf)
	d.OK("purge", uf.ID, "--confirm", "data2", "--wait")
	if _, err := os.Lstat(uf.Path); !os.IsNotExist(err) {
		t.Errorf("after purge %s: %v, want it gone", uf.Path, err)
	}
	if _, err := os.Lstat(filepath.Join(vol, uf.Owner.Hex(), uf.ID[0:2])); !os.IsNotExist(err) {
		t.Errorf("after purge the empty parent %s/%s is still there (%v)", uf.Owner.Hex(), uf.ID[0:2], err)
	}
	if fs := listAll(d); len(fs) != 1 || fs[0].ID != pf.ID {
		t.Errorf("list --all after purge: %+v", fs)
	}
	// a purged name can be used again
	var again api.Folder
	d.JSON(&again, "create", "data2", "local", "--user", userUUID)
	checkFolderDir(t, vol, again)

	// usage
	var u api.FolderUsage
	d.JSON(&u, "usage", again.ID)
	if root := dqSize(t, again.Path); u.UsedBytes != root || u.UsedInodes != 0 {
		t.Errorf("usage of a new folder: %+v; want its root directory's %d bytes, no inode", u, root)
	}

	// quota scopes
	var s api.QuotaScope
	d.JSON(&s, "quota-scope", "set", "local", userUUID, "10G", "-t", "user")
	if s.LimitBytes != 10<<30 {
		t.Errorf("after set 10G: %+v", s)
	}
	d.JSON(&s, "quota-scope", "get", "local", "user:"+userUUID)
	if s.LimitBytes != 10<<30 || s.ID.String() != "user:"+userUUID || s.Volume != "local" {
		t.Errorf("get after set 10G: %+v", s)
	}
	d.OK("quota-scope", "set", "local", projectUUID, "500MiB", "-t", "project")
	r = d.OK("quota-scope", "get", "local", projectUUID, "-t", "project")
	for _, want := range []string{"500 MiB", "524288000", "free", "used %"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("quota-scope get printed %q, missing %q", r.Stdout, want)
		}
	}
	d.JSON(&s, "quota-scope", "unset", "local", userUUID, "-t", "user")
	if s.LimitBytes != 0 {
		t.Errorf("after unset: %+v", s)
	}
	d.JSON(&s, "quota-scope", "get", "local", userUUID, "-t", "user")
	if s.LimitBytes != 0 {
		t.Errorf("get after unset: %+v", s)
	}
}

func TestCLIBadInput(t *testing.T) {
	d := StartDaemon(t, DaemonOptions{})
	vol := d.Volumes["local"]
	var taken, trashed api.Folder
	d.JSON(&taken, "create", "taken", "local", "--user", userUUID)
	d.JSON(&trashed, "create", "bin", "local", "--user", userUUID)
	d.OK("delete", trashed.ID)
	d.OK("quota-scope", "set", "local", userUUID, "1G", "-t", "user")

	cases := []struct {
		name string
		args []string
		want []string // the message contains one of these (case-insensitive)
	}{
		{"name of 65 chars", []string{"create", strings.Repeat("x", 65), "local", "--user", userUUID}, []string{"64", "65", "long"}},
		{"dotdot", []string{"create", "..", "local", "--user", userUUID}, []string{`".."`, "not allowed"}},
		{"slash", []string{"create", "a/b", "local", "--user", userUUID}, []string{"a/b", "'/'"}},
		{"reserved", []string{"create", ".ssh", "local", "--user", userUUID}, []string{"reserved", ".ssh"}},
		{"duplicate", []string{"create", "taken", "local", "--user", userUUID}, []string{"taken", "exists"}},
		{"duplicate of a trashed name", []string{"create", "bin", "local", "--user", userUUID}, []string{"bin", "exists"}},
		{"unknown volume", []string{"create", "new", "nas9", "--user", userUUID}, []string{"nas9"}},
		{"unknown id", []string{"info", "99999999999999999999999999999999"}, []string{"not found", "9999"}},
		{"unknown name", []string{"delete", "ghost", "--user", userUUID}, []string{"not found", "ghost"}},
		{"rename to a name held by a trashed folder", []string{"rename", taken.ID, "bin"}, []string{"bin", "exists"}},
		{"rename of a trashed folder", []string{"rename", trashed.ID, "fresh"}, []string{"trash"}},
		{"rename to a bad name", []string{"rename", taken.ID, "a/b"}, []string{"a/b", "'/'"}},
		{"negative size", []string{"quota-scope", "set", "local", userUUID, "-5G", "-t", "user"}, []string{"negative"}},
		{"fractional bytes", []string{"quota-scope", "set", "local", userUUID, "1.5", "-t", "user"}, []string{"whole number of bytes"}},
		{"unknown unit", []string{"quota-scope", "set", "local", userUUID, "12XB", "-t", "user"}, []string{"unknown unit"}},
		{"quota on unknown volume", []string{"quota-scope", "set", "nas9", userUUID, "1G", "-t", "user"}, []string{"nas9"}},
		{"purge with a wrong name", []string{"purge", trashed.ID, "--confirm", "bim"}, []string{"confirm", "match", "name"}},
		{"purge of a live folder", []string{"purge", taken.ID, "--confirm", "taken"}, []string{"trash", "delete"}},
		{"restore of a live folder", []string{"restore", taken.ID}, []string{"trash", "not", "ready"}},
	}
	var beforeFolders []api.Folder
	d.JSON(&beforeFolders, "list", "--all")
	var beforeScope api.QuotaScope
	d.JSON(&beforeScope, "quota-scope", "get", "local", "user:"+userUUID)
	beforeTree := Tree(t, vol)

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := d.CLI(tc.args...)
			if r.Code != 1 {
				t.Errorf("exit %d, want 1: %s", r.Code, r)
			}
			if !strings.HasPrefix(r.Stderr, "vfolder: ") || len(strings.TrimSpace(r.Stderr)) <= len("vfolder:") {
				t.Errorf("stderr %q is not a \"vfolder: <message>\" line", r.Stderr)
			}
			low := strings.ToLower(r.Stderr)
			found := false
			for _, w := range tc.want {
				found = found || strings.Contains(low, strings.ToLower(w))
			}
			if !found {
				t.Errorf("message %q mentions none of %q", r.Stderr, tc.want)
			}
			if r.Stdout != "" {
				t.Errorf("a failed command printed to stdout: %q", r.Stdout)
			}
		})
	}

	var afterFolders []api.Folder
	d.JSON(&afterFolders, "list", "--all")
	if !sameFolders(beforeFolders, afterFolders) {
		t.Errorf("refused commands changed the folders:\nbefore %+v\nafter  %+v", beforeFolders, afterFolders)
	}
	var afterScope api.QuotaScope
	d.JSON(&afterScope, "quota-scope", "get", "local", "user:"+userUUID)
	if afterScope.LimitBytes != beforeScope.LimitBytes || afterScope.LimitInodes != beforeScope.LimitInodes {
		t.Errorf("refused commands changed the quota scope: %+v -> %+v", beforeScope, afterScope)
	}
	if diff := DiffTrees(beforeTree, Tree(t, vol)); diff != "" {
		t.Errorf("refused commands changed the volume:\n%s", diff)
	}
}

// sameFolders compares two listings by id, ignoring order.
func sameFolders(a, b []api.Folder) bool {
	m := func(fs []api.Folder) map[string]api.Folder {
		out := map[string]api.Folder{}
		for _, f := range fs {
			out[f.ID] = f
		}
		return out
	}
	return len(a) == len(b) && reflect.DeepEqual(m(a), m(b))
}

func TestCLISecondDaemonRefused(t *testing.T) {
	d := StartDaemon(t, DaemonOptions{})
	var f api.Folder
	d.JSON(&f, "create", "keep", "local", "--user", userUUID)

	code, out := d.RunSecond()
	if code == 0 {
		t.Errorf("a second vfolderd on the same state directory exited 0; output:\n%s", out)
	}
	low := strings.ToLower(out)
	if !strings.Contains(low, "state dir") || !strings.Contains(low, "in use") {
		t.Errorf("the second vfolderd's message does not say the state directory is in use:\n%s", out)
	}
	// The first one still serves.
	var got api.Folder
	d.JSON(&got, "info", f.ID)
	if got.Name != "keep" {
		t.Errorf("first daemon after the second one failed: %+v", got)
	}
	d.JSON(&f, "create", "more", "local", "--user", userUUID)
}
