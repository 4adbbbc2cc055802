package e2e

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/e2e/oci"
	vfs "github.com/vfolder/vfolder/fs"
	"github.com/vfolder/vfolder/meta"
	"github.com/vfolder/vfolder/mountd"
)

// A container that holds CAP_DAC_READ_SEARCH (uid 1000, no user
// namespace) tries to leave its views with open_by_handle_at(2): forged
// FUSE handles for node 1 (the FUSE root, generation 0), for guessed
// synthetic directories, and for the real nodeids and generations of
// nodes of other views (another user's folder, the standing rw view of a
// folder the session has read-only, another session's view) that the
// test learns on the host while the kernel has them cached. The helper
// (e2e/fhattack) is built statically and copied into the rootfs.

var (
	fhOnce sync.Once
	fhBin  string
	fhErr  error
)

// fhHelper builds e2e/fhattack once per test run.
func fhHelper(t *testing.T) string {
	t.Helper()
	fhOnce.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			goBin = "/usr/local/go/bin/go"
		}
		fhBin = filepath.Join(binDir, "fhattack")
		cmd := exec.Command(goBin, "build", "-o", fhBin, "./e2e/fhattack")
		cmd.Dir = moduleRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			fhErr = fmt.Errorf("building e2e/fhattack: %v\n%s", err, out)
		}
	})
	if fhErr != nil {
		t.Fatal(fhErr)
	}
	return fhBin
}

// fhTarget is a node to forge a handle for.
type fhTarget struct {
	name   string
	nodeID uint64
	gen    uint32
}

func (x fhTarget) arg() string { return fmt.Sprintf("%s=%d:%d", x.name, x.nodeID, x.gen) }

// fhLearn opens path (kept open until the test ends, so the kernel keeps
// the node cached) and learns its FUSE handle with name_to_handle_at: a
// plain handle, or an AT_HANDLE_FID one where the superblock refuses to
// export handles.
func fhLearn(t *testing.T, name, path string) fhTarget {
	t.Helper()
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	fh, _, err := unix.NameToHandleAt(unix.AT_FDCWD, path, 0)
	if err != nil {
		fh, _, err = unix.NameToHandleAt(unix.AT_FDCWD, path, 0x200 /* AT_HANDLE_FID */)
	}
	if err != nil {
		t.Fatalf("name_to_handle_at %s: %v", path, err)
	}
	b := fh.Bytes()
	if fh.Type() != 0x81 || len(b) != 12 {
		t.Fatalf("handle of %s: type %#x, %d bytes; want FUSE's 0x81, 12 bytes", path, fh.Type(), len(b))
	}
	return fhTarget{
		name:   name,
		nodeID: uint64(binary.NativeEndian.Uint32(b[0:]))<<32 | uint64(binary.NativeEndian.Uint32(b[4:])),
		gen:    binary.NativeEndian.Uint32(b[8:]),
	}
}

// fhResult is one line of the helper's output (see e2e/fhattack).
type fhResult struct {
	Target   string   `json:"target"`
	NodeID   uint64   `json:"nodeid"`
	Gen      uint32   `json:"gen"`
	OpenErr  string   `json:"open_err"`
	Kind     string   `json:"kind"`
	Entries  []string `json:"entries"`
	Data     string   `json:"data"`
	Wrote    bool     `json:"wrote"`
	Err      string   `json:"err"`
	How      string   `json:"learned"`
	PlainErr string   `json:"plain_err"`
}

// fhContainer starts a runc container running as uid 1000 with
// CAP_DAC_READ_SEARCH on top of the usual capabilities, the helper at
// /bin/fhattack and the given mounts, and checks that the capability is
// in force.
func fhContainer(t *testing.T, ctx context.Context, mounts []oci.Mount) *oci.Container {
	t.Helper()
	helper := fhHelper(t)
	bundle := t.TempDir()
	rootfs := filepath.Join(bundle, "rootfs")
	if err := oci.BuildRootfs(rootfs); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(helper)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin", "fhattack"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := oci.Spec(bundle, oci.SpecOptions{Args: []string{"sleep", "300"}, UID: 1000, GID: 1000,
		Caps: []string{"CAP_DAC_READ_SEARCH"}, Mounts: mounts}); err != nil {
		t.Fatal(err)
	}
	c, err := oci.Run(ctx, t, oci.Runc, bundle, oci.ContainerID(t))
	if err != nil {
		t.Fatal(err)
	}
	out := ctrRun(t, ctx, c, 1000, "grep", "CapEff", "/proc/self/status")
	f := strings.Fields(out)
	eff, err := strconv.ParseUint(f[len(f)-1], 16, 64)
	if err != nil || eff&(1<<unix.CAP_DAC_READ_SEARCH) == 0 {
		t.Skipf("the container process does not hold CAP_DAC_READ_SEARCH (%q): this host's bounding set lacks it", out)
	}
	if out := ctrRun(t, ctx, c, 1000, "id", "-u"); strings.TrimSpace(out) != "1000" {
		t.Fatalf("container process uid %q", out)
	}
	return c
}

// fhAttack runs the helper in c through the view at mount and returns
// how it learned the handle format and the outcome per target.
func fhAttack(t *testing.T, ctx context.Context, c *oci.Container, mount string, targets []fhTarget) (fhResult, []fhResult) {
	t.Helper()
	args := []string{"fhattack", "-mount", mount, "-write"}
	for _, x := range targets {
		args = append(args, x.arg())
	}
	out := ctrRun(t, ctx, c, 1000, args...)
	var learned fhResult
	var res []fhResult
	sc := bufio.NewScanner(strings.NewReader(out))
	for i := 0; sc.Scan(); i++ {
		var r fhResult
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("helper output %q: %v", sc.Text(), err)
		}
		if i == 0 {
			learned = r
		} else {
			res = append(res, r)
		}
	}
	if len(res) != len(targets) {
		t.Fatalf("helper answered %d of %d targets:\n%s", len(res), len(targets), out)
	}
	t.Logf("handle format learned: %s (plain name_to_handle_at: %q)", learned.How, learned.PlainErr)
	return learned, res
}

// fhGuesses are handles of nodeids 2..12 with generation 0: where the
// synthetic directories of a namespace would be.
func fhGuesses() []fhTarget {
	var out []fhTarget
	for id := uint64(2); id <= 12; id++ {
		out = append(out, fhTarget{name: fmt.Sprintf("guess nodeid %d", id), nodeID: id})
	}
	return out
}

// fhNoTrace fails if the helper left a trace on the volume.
func fhNoTrace(t *testing.T, vol string) {
	t.Helper()
	filepath.WalkDir(vol, func(p string, de fs.DirEntry, err error) error {
		if err == nil && de.Name() == "fhattack-was-here" {
			t.Errorf("the container created %s", p)
		}
		if err == nil && de.Type().IsRegular() {
			if b, _ := os.ReadFile(p); strings.HasPrefix(string(b), "fhattack-was-here") {
				t.Errorf("the container overwrote %s", p)
			}
		}
		return nil
	})
}

const fhVictim = "0f1e2d3c4b5a49687766554433221100"

// TestContainerFileHandles: with the daemon as it runs (the kernel
// decodes no handle of a view's superblock, and each session has a
// superblock of its own), every forged handle fails.
func TestContainerFileHandles(t *testing.T) {
	oci.Require(t, oci.Runc)
	RequireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	d, _ := mdStartDaemon(t)
	a, v := []string{"--user", mdUser}, []string{"--user", fhVictim}
	var data, scratch, secret api.Folder
	d.JSON(&data, append([]string{"create", "data", "local"}, a...)...)
	d.JSON(&scratch, append([]string{"create", "scratch", "local"}, a...)...)
	d.JSON(&secret, append([]string{"create", "secret", "local"}, v...)...)
	mdWriteMarker(t, data, "ro.txt", "original")
	mdWriteMarker(t, secret, "s.txt", "victim-secret")
	var atk, vic api.Session
	d.JSON(&atk, append([]string{"mount", "publish", "atk", "data:ro", "scratch", "--uid", "1000", "--gid", "1000"}, a...)...)
	d.JSON(&vic, append([]string{"mount", "publish", "vic", "secret", "--uid", "1001", "--gid", "1001"}, v...)...)
	if len(atk.Mounts) != 2 || len(vic.Mounts) != 1 {
		t.Fatalf("published %+v and %+v", atk.Mounts, vic.Mounts)
	}
	mnt := d.MountPoint
	vicView := filepath.Join(mnt, "sessions", "vic", vic.Mounts[0].Name)
	targets := append([]fhTarget{{name: "node 1", nodeID: 1}},
		fhLearn(t, "users/", filepath.Join(mnt, "users")),
		fhLearn(t, "sessions/", filepath.Join(mnt, "sessions")),
		fhLearn(t, "victim's folder", filepath.Join(mnt, "users", fhVictim, "secret")),
		fhLearn(t, "victim's file", filepath.Join(mnt, "users", fhVictim, "secret", "s.txt")),
		fhLearn(t, "own rw standing view of the ro folder", filepath.Join(mnt, "users", mdUser, "data")),
		fhLearn(t, "ro file through the rw standing view", filepath.Join(mnt, "users", mdUser, "data", "ro.txt")),
		fhLearn(t, "victim's session root", filepath.Join(mnt, "sessions", "vic")),
		fhLearn(t, "victim's session view", vicView),
		fhLearn(t, "victim's session file", filepath.Join(vicView, "s.txt")),
	)
	targets = append(targets, fhGuesses()...)

	c := fhContainer(t, ctx, mdOCI(atk))
	if got := ctrRun(t, ctx, c, 1000, "cat", "/home/work/data/ro.txt"); got != "original" {
		t.Fatalf("the session's own ro view reads %q", got)
	}
	_, res := fhAttack(t, ctx, c, "/home/work/scratch", targets)
	for _, r := range res {
		if r.OpenErr == "" {
			t.Errorf("%s (nodeid %d, generation %d) opened through a session view: %s %q %q wrote=%v",
				r.Target, r.NodeID, r.Gen, r.Kind, r.Entries, r.Data, r.Wrote)
			continue
		}
		t.Logf("%s (nodeid %d, generation %d): %s", r.Target, r.NodeID, r.Gen, r.OpenErr)
	}
	if got := ctrReadHost(t, filepath.Join(data.Path, "ro.txt")); got != "original" {
		t.Errorf("the file the session has read-only now holds %q", got)
	}
	if got := ctrReadHost(t, filepath.Join(secret.Path, "s.txt")); got != "victim-secret" {
		t.Errorf("the victim's file now holds %q", got)
	}
	fhNoTrace(t, d.Volumes["local"])
}

// TestContainerFileHandlesSessionSuperblock: the per-session superblocks
// alone, with export support left as go-fuse negotiates it
// (Tuning.ExportSupport), as on a kernel without FUSE_NO_EXPORT_SUPPORT:
// the forged handle of node 1 opens only the session's own root, which
// lists that session's views, and nothing of other views opens.
func TestContainerFileHandlesSessionSuperblock(t *testing.T) {
	oci.Require(t, oci.Runc)
	RequireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := newDir(t)
	vol, mnt := filepath.Join(dir, "vol"), filepath.Join(dir, "mnt")
	for _, p := range []string{vol, mnt} {
		if err := os.Mkdir(p, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(vol, "version.txt"), []byte("3"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := vfs.Mount(vfs.Options{MountPoint: mnt, StorageUID: StorageID, StorageGID: StorageID,
		Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
		Tuning: vfs.Tuning{ExportSupport: true}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	folder := func(owner, id string, files map[string]string) (rel string, scope meta.ScopeID) {
		scope = meta.ScopeID{Kind: meta.KindUser, UUID: owner}
		rel = meta.FolderRelPath(scope, id)
		p := filepath.Join(vol, rel)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		for n, c := range files {
			if err := os.WriteFile(filepath.Join(p, n), []byte(c), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return rel, scope
	}
	dataRel, aScope := folder(mdUser, strings.Repeat("1", 32), map[string]string{"ro.txt": "original"})
	scratchRel, _ := folder(mdUser, strings.Repeat("2", 32), nil)
	secretRel, vScope := folder(fhVictim, strings.Repeat("3", 32), map[string]string{"s.txt": "victim-secret"})
	spec := func(ns, key, name, rel string, scope meta.ScopeID, mode meta.Permission, uid uint32) vfs.ViewSpec {
		return vfs.ViewSpec{Namespace: ns, Key: key, Name: name, VolumeName: "local", VolumePath: vol,
			FolderRel: rel, Mode: mode, UID: uid, GID: uid, RWCanDelete: true,
			FolderID: strings.ReplaceAll(rel[33:], "/", ""), Scope: scope}
	}
	for _, sp := range []vfs.ViewSpec{
		spec(vfs.NSUsers, mdUser, "data", dataRel, aScope, meta.PermRW, 1000),
		spec(vfs.NSUsers, fhVictim, "secret", secretRel, vScope, meta.PermRW, 1000),
		spec(vfs.NSSessions, "atk", "data", dataRel, aScope, meta.PermRO, 1000),
		spec(vfs.NSSessions, "atk", "scratch", scratchRel, aScope, meta.PermRW, 1000),
		spec(vfs.NSSessions, "vic", "secret", secretRel, vScope, meta.PermRW, 1001),
	} {
		if err := f.AddView(sp); err != nil {
			t.Fatal(err)
		}
	}
	pub, err := mountd.NewPublisher(filepath.Join(dir, "sessions"), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := pub.Close(); err != nil {
			t.Errorf("publisher Close: %v", err)
		}
	})
	var mounts []oci.Mount
	for _, m := range []struct {
		name, target string
		ro           bool
	}{{"data", "/home/work/data", true}, {"scratch", "/home/work/scratch", false}} {
		hp, err := pub.Publish("atk", m.name, filepath.Join(mnt, "sessions", "atk", m.name), m.ro)
		if err != nil {
			t.Fatal(err)
		}
		mounts = append(mounts, oci.Mount(mountd.OCIMount(hp, m.target, m.ro)))
	}
	targets := append([]fhTarget{{name: "node 1", nodeID: 1}},
		fhLearn(t, "users/", filepath.Join(mnt, "users")),
		fhLearn(t, "victim's folder", filepath.Join(mnt, "users", fhVictim, "secret")),
		fhLearn(t, "victim's file", filepath.Join(mnt, "users", fhVictim, "secret", "s.txt")),
		fhLearn(t, "own rw standing view of the ro folder", filepath.Join(mnt, "users", mdUser, "data")),
		fhLearn(t, "ro file through the rw standing view", filepath.Join(mnt, "users", mdUser, "data", "ro.txt")),
		fhLearn(t, "victim's session view", filepath.Join(mnt, "sessions", "vic", "secret")),
		fhLearn(t, "victim's session file", filepath.Join(mnt, "sessions", "vic", "secret", "s.txt")),
	)
	targets = append(targets, fhGuesses()...)

	c := fhContainer(t, ctx, mounts)
	learned, res := fhAttack(t, ctx, c, "/home/work/scratch", targets)
	if learned.How != "plain" {
		t.Errorf("with export support the helper learned the handle format by %q; want plain name_to_handle_at", learned.How)
	}
	for _, r := range res {
		switch {
		case r.Target == "node 1":
			// The session superblock's root: that session's views.
			if r.OpenErr != "" || r.Kind != "dir" || !slices.Equal(r.Entries, []string{"data", "scratch"}) || r.Wrote {
				t.Errorf("node 1 through a session view: %+v; want the session's root listing data and scratch, nothing written", r)
			}
		case r.OpenErr == "":
			t.Errorf("%s (nodeid %d, generation %d) opened through a session view: %s %q %q wrote=%v",
				r.Target, r.NodeID, r.Gen, r.Kind, r.Entries, r.Data, r.Wrote)
		default:
			t.Logf("%s (nodeid %d, generation %d): %s", r.Target, r.NodeID, r.Gen, r.OpenErr)
		}
	}
	if b, err := os.ReadFile(filepath.Join(vol, dataRel, "ro.txt")); err != nil || string(b) != "original" {
		t.Errorf("the file the session has read-only: %q %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(vol, secretRel, "s.txt")); err != nil || string(b) != "victim-secret" {
		t.Errorf("the victim's file: %q %v", b, err)
	}
	fhNoTrace(t, vol)
}
