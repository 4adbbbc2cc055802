package e2e

// Folder options, volume capacity, volume permissions, create --id and
// volume import through a real vfolderd and the CLI.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/api"
)

const (
	voUser    = "5a4b3c2d1e0f49a8b7c6d5e4f3a2b1c0"
	voUser2   = "6b5c4d3e2f1a40b9c8d7e6f5a4b3c2d1"
	voProject = "7c6d5e4f3a2b41cad9e8f7a6b5c4d3e2"
)

// voStartDaemon starts vfolderd with a sessions directory and the given
// volumes (nil: the default "local"), unpublishing every session at the
// end as mdStartDaemon does.
func voStartDaemon(t *testing.T, vols map[string]string) *Daemon {
	t.Helper()
	sess := mdSessionsDir(t)
	d := StartDaemon(t, DaemonOptions{Volumes: vols, ExtraArgs: []string{"--sessions-dir", sess}})
	t.Cleanup(func() {
		if d.PID() == 0 {
			return
		}
		c := api.NewClient(d.Socket)
		defer c.CloseIdleConnections()
		ss, err := c.Sessions(context.Background())
		if err != nil {
			t.Errorf("listing sessions at the end: %v", err)
			return
		}
		for _, s := range ss {
			if r, err := c.Unpublish(context.Background(), s.ID); err != nil || len(r.Problems) > 0 {
				t.Errorf("unpublishing %s at the end: %+v, %v", s.ID, r, err)
			}
		}
	})
	return d
}

func TestVolOptsUpdateOptions(t *testing.T) {
	d := voStartDaemon(t, nil)
	var f api.Folder
	d.JSON(&f, "create", "data", "local", "--user", voUser)
	view := filepath.Join(d.MountPoint, "users", voUser, "data")
	if err := os.WriteFile(filepath.Join(view, "a"), []byte("rw"), 0o644); err != nil {
		t.Fatalf("write in the rw view: %v", err)
	}

	var g api.Folder
	d.JSON(&g, "update-options", "data", "--user", voUser, "--perm", "ro")
	if g.Permission != "ro" || g.ID != f.ID {
		t.Fatalf("update-options --perm ro answered %+v", g)
	}
	// The standing view refuses writes at once.
	if err := os.WriteFile(filepath.Join(view, "b"), []byte("x"), 0o644); !errors.Is(err, syscall.EROFS) {
		t.Errorf("write in the view after --perm ro: %v; want EROFS", err)
	}
	if err := os.Remove(filepath.Join(view, "a")); !errors.Is(err, syscall.EROFS) {
		t.Errorf("unlink in the view after --perm ro: %v; want EROFS", err)
	}
	if got := readFile(t, filepath.Join(view, "a")); got != "rw" {
		t.Errorf("the ro view reads %q", got)
	}
	// A publish at rw now exceeds the folder permission.
	if r := d.CLI("mount", "publish", "s1", "data:rw", "--user", voUser); r.Code != 1 || !strings.Contains(r.Stderr, "exceeds") {
		t.Errorf("publish at rw after --perm ro: %s", r)
	}
	var s api.Session
	d.JSON(&s, "mount", "publish", "s1", "data", "--user", voUser, "--no-automount")
	if len(s.Mounts) != 1 || s.Mounts[0].Mode != "ro" {
		t.Errorf("publish after --perm ro: %+v", s.Mounts)
	}

	// cloneable flips in info --json (model folders only).
	if r := d.CLI("update-options", f.ID, "--cloneable=true"); r.Code != 1 || !strings.Contains(r.Stderr, "model") {
		t.Errorf("cloneable on a general folder: %s", r)
	}
	d.OK("update-options", f.ID, "--usage-mode", "model", "--cloneable=true")
	var info api.Folder
	d.JSON(&info, "info", f.ID)
	if !info.Cloneable || info.UsageMode != "model" || info.Permission != "ro" {
		t.Errorf("info after cloneable=true: %+v", info)
	}
	d.OK("update-options", f.ID, "--cloneable", "false")
	d.JSON(&info, "info", f.ID)
	if info.Cloneable {
		t.Errorf("info after cloneable=false: %+v", info)
	}
	// Back to rw: writable again.
	d.OK("update-options", f.ID, "--perm", "rw")
	if err := os.WriteFile(filepath.Join(view, "c"), []byte("x"), 0o644); err != nil {
		t.Errorf("write after --perm rw: %v", err)
	}
	mdUnpublish(t, d, "s1", 1)

	// Usage errors exit 2; a folder in the trash exits 1.
	if r := d.CLI("update-options", f.ID); r.Code != 2 {
		t.Errorf("update-options without a change: %s", r)
	}
	if r := d.CLI("update-options", f.ID, "--perm", "rx"); r.Code != 2 {
		t.Errorf("update-options --perm rx: %s", r)
	}
	d.OK("delete", f.ID)
	if r := d.CLI("update-options", f.ID, "--perm", "ro"); r.Code != 1 || !strings.Contains(r.Stderr, "live") {
		t.Errorf("update-options of a trashed folder: %s", r)
	}
}

// dfFigures are df -B1's size, used and avail of path.
func dfFigures(t *testing.T, path string) (size, used, avail int64) {
	t.Helper()
	out, err := exec.Command("df", "-B1", "--output=size,used,avail", path).Output()
	if err != nil {
		t.Fatalf("df: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	f := strings.Fields(lines[len(lines)-1])
	if len(f) != 3 {
		t.Fatalf("df printed %q", out)
	}
	var n [3]int64
	for i := range n {
		if n[i], err = strconv.ParseInt(f[i], 10, 64); err != nil {
			t.Fatalf("df printed %q", out)
		}
	}
	return n[0], n[1], n[2]
}

func TestVolOptsVolumeSpace(t *testing.T) {
	d := StartDaemon(t, DaemonOptions{})
	path := d.Volumes["local"]
	// figures are statfs's and df -B1's: capacity, used, free bytes and
	// inode capacity, used, free.
	type figures [6]int64
	statfs := func() figures {
		var st unix.Statfs_t
		if err := unix.Statfs(path, &st); err != nil {
			t.Fatal(err)
		}
		bs := st.Frsize
		if bs == 0 {
			bs = st.Bsize
		}
		return figures{int64(st.Blocks) * bs, int64(st.Blocks-st.Bfree) * bs, int64(st.Bavail) * bs,
			int64(st.Files), int64(st.Files - st.Ffree), int64(st.Ffree)}
	}
	df := func() figures {
		size, used, avail := dfFigures(t, path)
		return figures{size, used, avail, -1, -1, -1}
	}
	// Other processes may write to the same file system meanwhile: the
	// daemon's figures must lie between what statfs and df say before
	// and after the call, give or take 1 MiB (64 inodes). That cannot
	// hide a wrong field: used and free differ by far more.
	s1, d1 := statfs(), df()
	var vs []api.Volume
	d.JSON(&vs, "volume", "list")
	d2, s2 := df(), statfs()
	if len(vs) != 1 || vs[0].VolumeSpace == nil {
		t.Fatalf("volume list: %+v", vs)
	}
	v := vs[0].VolumeSpace
	got := figures{v.CapacityBytes, v.UsedBytes, v.FreeBytes, v.CapacityInodes, v.UsedInodes, v.FreeInodes}
	names := []string{"capacity", "used", "free", "inode capacity", "used inodes", "free inodes"}
	for i := range got {
		lo, hi := min(s1[i], s2[i]), max(s1[i], s2[i])
		if i < 3 {
			lo, hi = min(lo, d1[i], d2[i]), max(hi, d1[i], d2[i])
		}
		tol := int64(1 << 20)
		if i >= 3 {
			tol = 64
		}
		if i == 0 || i == 3 {
			tol = 0 // capacity does not move
		}
		if got[i] < lo-tol || got[i] > hi+tol {
			t.Errorf("%s = %d; statfs and df -B1 say %d..%d (tolerance %d)", names[i], got[i], lo, hi, tol)
		}
	}
	if v.UsedBytes+v.FreeBytes > v.CapacityBytes {
		t.Errorf("figures do not add up: %+v", *v)
	}
	// The table shows the columns beside the switches.
	r := d.OK("volume", "list")
	if !strings.Contains(r.Stdout, "SIZE") || !strings.Contains(r.Stdout, "FREE") || !strings.Contains(r.Stdout, "MOUNT") {
		t.Errorf("volume list table:\n%s", r.Stdout)
	}
}

func TestVolOptsVolumePermissions(t *testing.T) {
	d := voStartDaemon(t, nil)
	u := []string{"--user", voUser}
	d.OK(append([]string{"policy", "set", "--volume-perms", "local=mount-in-session"}, u...)...)
	r := d.CLI(append([]string{"create", "data", "local"}, u...)...)
	if r.Code != 1 || !strings.Contains(r.Stderr, "create-vfolder") || !strings.Contains(r.Stderr, `"local"`) {
		t.Errorf("create without create-vfolder: %s", r)
	}
	var fs []api.Folder
	d.JSON(&fs, "list", "--user", voUser)
	if len(fs) != 0 {
		t.Errorf("a refused create left %+v", fs)
	}
	var p api.Policy
	d.JSON(&p, append([]string{"policy", "get"}, u...)...)
	if p.Volumes == nil || len(p.Volumes["local"]) != 1 {
		t.Errorf("policy get: %+v", p)
	}

	d.OK(append([]string{"policy", "set", "--volume-perms", "local=create-vfolder"}, u...)...)
	d.OK(append([]string{"create", "data", "local"}, u...)...)
	r = d.CLI("mount", "publish", "s1", "data", "--user", voUser)
	if r.Code != 1 || !strings.Contains(r.Stderr, "mount-in-session") || !strings.Contains(r.Stderr, `"local"`) {
		t.Errorf("publish without mount-in-session: %s", r)
	}
	var ss []api.Session
	d.JSON(&ss, "mount", "list")
	if len(ss) != 0 {
		t.Errorf("a refused publish left sessions %+v", ss)
	}
	// A volume not named allows nothing; --all-volumes allows everything.
	d.OK(append([]string{"policy", "set", "--volume-perms", "other=all"}, u...)...)
	if r := d.CLI("mount", "publish", "s1", "data", "--user", voUser); r.Code != 1 {
		t.Errorf("publish with local=create-vfolder other=all: %s", r)
	}
	d.OK(append([]string{"policy", "set", "--all-volumes"}, u...)...)
	d.OK("mount", "publish", "s1", "data", "--user", voUser)
	mdUnpublish(t, d, "s1", 1)
}

func TestVolOptsCreateID(t *testing.T) {
	d := StartDaemon(t, DaemonOptions{})
	const dashed = "c0ffee00-1234-4abc-8def-0123456789ab"
	const id = "c0ffee0012344abc8def0123456789ab"
	var f api.Folder
	d.JSON(&f, "create", "adopted", "local", "--user", voUser, "--id", dashed)
	want := filepath.Join(d.Volumes["local"], voUser, id[0:2], id[2:4], id[4:])
	if f.ID != id || f.Path != want {
		t.Errorf("created %s at %s; want %s at %s", f.ID, f.Path, id, want)
	}
	if st, err := os.Stat(want); err != nil || !st.IsDir() {
		t.Errorf("the layout directory: %v", err)
	}
	var info api.Folder
	d.JSON(&info, "info", dashed)
	if info.ID != id || info.Name != "adopted" {
		t.Errorf("info by the dashed id: %+v", info)
	}
	r := d.CLI("create", "other", "local", "--user", voUser2, "--id", id)
	if r.Code != 1 || !strings.Contains(r.Stderr, "taken") {
		t.Errorf("a duplicate id: %s", r)
	}
	if r := d.CLI("create", "bad", "local", "--user", voUser2, "--id", "not-a-uuid"); r.Code != 1 {
		t.Errorf("a malformed id: %s", r)
	}
	var fs []api.Folder
	d.JSON(&fs, "list", "--user", voUser2)
	if len(fs) != 0 {
		t.Errorf("refused creates left %+v", fs)
	}
}

// voSums maps every regular file and symlink below root to its content
// hash (symlinks: their target) and every entry to its mode, owner and
// mtime: two equal maps mean byte-identical storage.
func voSums(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for rel, e := range Tree(t, root) {
		p := filepath.Join(root, rel)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			t.Fatal(err)
		}
		sum := fmt.Sprintf("%v %d:%d mtime %d.%d ino %d nlink %d", e.Mode, e.UID, e.GID, st.Mtim.Sec, st.Mtim.Nsec, st.Ino, st.Nlink)
		switch {
		case e.Mode.IsRegular():
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			h := sha256.New()
			_, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			sum += " " + hex.EncodeToString(h.Sum(nil))
		case e.Mode&os.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			sum += " -> " + target
		}
		out[rel] = sum
	}
	return out
}

func voSameSums(t *testing.T, what string, before, after map[string]string) {
	t.Helper()
	var diffs []string
	for p, b := range before {
		if a, ok := after[p]; !ok {
			diffs = append(diffs, "removed "+p)
		} else if a != b {
			diffs = append(diffs, fmt.Sprintf("changed %s: %s -> %s", p, b, a))
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			diffs = append(diffs, "added "+p)
		}
	}
	if len(diffs) > 0 {
		t.Errorf("%s changed the volume:\n  %s", what, strings.Join(diffs, "\n  "))
	}
}

// duApparent is du --apparent-size -sb of dir.
func duApparent(t *testing.T, dir string) int64 {
	t.Helper()
	out, err := exec.Command("du", "--apparent-size", "-sb", dir).Output()
	if err != nil {
		t.Fatalf("du: %v", err)
	}
	n, err := strconv.ParseInt(strings.Fields(string(out))[0], 10, 64)
	if err != nil {
		t.Fatalf("du printed %q", out)
	}
	return n
}

// voLayoutFolder makes one folder of a layout-v3 volume by hand with a
// few files, a subdirectory, a symlink and a hard link.
func voLayoutFolder(t *testing.T, vol, scopeHex, id string, seed int) string {
	t.Helper()
	dir := filepath.Join(vol, scopeHex, id[0:2], id[2:4], id[4:])
	if err := os.MkdirAll(filepath.Join(dir, "deep", "er"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		data := make([]byte, 1000*(seed+1)*(i+1)+i)
		for j := range data {
			data[j] = byte(seed + i + j)
		}
		if err := os.WriteFile(filepath.Join(dir, "deep", fmt.Sprintf("f%d", i)), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "deep", "er", "big"), make([]byte, 3<<20+seed), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("deep/f0", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(dir, "deep", "f1"), filepath.Join(dir, "hard")); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestVolOptsImport(t *testing.T) {
	RequireRoot(t)
	old, err := os.MkdirTemp("", "vfe2e-old-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(old) })
	if err := os.WriteFile(filepath.Join(old, "version.txt"), []byte("3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ids := []string{"d1000000000040008000000000000001", "d2000000000040008000000000000002", "d3000000000040008000000000000003"}
	dirs := []string{
		voLayoutFolder(t, old, voUser, ids[0], 0),
		voLayoutFolder(t, old, voUser, ids[1], 1),
		voLayoutFolder(t, old, voProject, ids[2], 2),
	}
	stray := filepath.Join(old, voUser, "d1", "README")
	if err := os.WriteFile(stray, []byte("not a folder"), 0o644); err != nil {
		t.Fatal(err)
	}
	names := filepath.Join(t.TempDir(), "names")
	if err := os.WriteFile(names, []byte(fmt.Sprintf("# id name [kind]\n%s alpha\n%s shared project\n", ids[0], ids[2])), 0o644); err != nil {
		t.Fatal(err)
	}

	d := voStartDaemon(t, map[string]string{"local": filepath.Join(t.TempDir(), "local"), "old": old})
	before := voSums(t, old)

	// The stray entry: refused, listed, nothing registered or changed.
	r := d.CLI("volume", "import", "old", "--names", names, "--owner-kind", "user")
	if r.Code != 1 || !strings.Contains(r.Stderr, voUser+"/d1/README") || !strings.Contains(r.Stderr, "nothing was registered") {
		t.Errorf("import with a stray entry: %s", r)
	}
	var fs []api.Folder
	d.JSON(&fs, "list", "--volume", "old", "--all")
	if len(fs) != 0 {
		t.Fatalf("a refused import registered %+v", fs)
	}
	voSameSums(t, "a refused import", before, voSums(t, old))

	if err := os.Remove(stray); err != nil {
		t.Fatal(err)
	}
	before = voSums(t, old)
	var rep api.ImportReport
	d.JSON(&rep, "volume", "import", "old", "--names", names, "--owner-kind", "user")
	if len(rep.Imported) != 3 || len(rep.Skipped) != 0 {
		t.Fatalf("import: %+v", rep)
	}
	voSameSums(t, "the import", before, voSums(t, old))
	c := d.Client()
	prog, err := c.ImportProgress(context.Background(), "old")
	if err != nil || prog.Running || prog.Phase != api.ImportDone || prog.Registered != 3 || prog.Scopes != 2 || prog.Counted != 2 {
		t.Errorf("import progress after the import: %+v, %v", prog, err)
	}

	d.JSON(&fs, "list", "--volume", "old")
	got := map[string]api.Folder{}
	for _, f := range fs {
		got[f.ID] = f
	}
	want := map[string]string{ids[0]: "user:" + voUser + " alpha", ids[1]: "user:" + voUser + " " + ids[1], ids[2]: "project:" + voProject + " shared"}
	for id, w := range want {
		f, ok := got[id]
		if !ok || f.Owner.String()+" "+f.Name != w || f.Status != "ready" {
			t.Errorf("folder %s: %+v; want %s, ready", id, f, w)
		}
	}
	if len(fs) != 3 {
		t.Errorf("list shows %d folders on old", len(fs))
	}
	// Usage: what du --apparent-size counts (hard links once), and the
	// ledger check finds nothing to repair.
	for i, id := range ids {
		var u api.FolderUsage
		d.JSON(&u, "usage", id)
		if du := duApparent(t, dirs[i]); u.UsedBytes != du {
			t.Errorf("folder %s: usage %d; du --apparent-size says %d", id, u.UsedBytes, du)
		}
	}
	d.OK("quota-scope", "check", "old", "user:"+voUser)
	d.OK("quota-scope", "check", "old", "project:"+voProject)
	// The views show them.
	if got := memberLs(t, filepath.Join(d.MountPoint, "users", voUser)); strings.Join(got, " ") != "alpha "+ids[1] {
		t.Errorf("users/%s shows %v", voUser, got)
	}
	if b, err := os.ReadFile(filepath.Join(d.MountPoint, "projects", voProject, "shared", "deep", "f0")); err != nil || len(b) != 3000 {
		t.Errorf("reading an imported file through the view: %d bytes, %v", len(b), err)
	}

	// A rerun changes nothing.
	var again api.ImportReport
	d.JSON(&again, "volume", "import", "old", "--names", names, "--owner-kind", "user")
	if len(again.Imported) != 0 || len(again.Skipped) != 3 {
		t.Errorf("rerun: %d imported, %d skipped", len(again.Imported), len(again.Skipped))
	}
	for _, c := range again.Checks {
		if c.Drift {
			t.Errorf("rerun: the check of %s found drift", c.Scope)
		}
	}
	var after []api.Folder
	d.JSON(&after, "list", "--volume", "old")
	if len(after) != 3 {
		t.Errorf("after the rerun list shows %d folders", len(after))
	}
	voSameSums(t, "the rerun", before, voSums(t, old))
}
