package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/rs/zerolog"

	vfs "github.com/vfolder/vfolder/fs"
	"github.com/vfolder/vfolder/meta"
)

// Shared helpers of the fs_*_test.go files. Everything is prefixed "fs"
// because package e2e is shared with other suites.

const (
	fsStorageUID = 1100
	fsStorageGID = 1100
)

// fsEnv is one mounted file system over one volume in a temp dir.
type fsEnv struct {
	dir    string // temp dir, world-traversable
	volume string // volume root
	mnt    string // mount point
	fs     *vfs.FS
	mu     sync.Mutex
	n      int // folders and binds made
}

// fsSetup mounts a fresh file system. Cleanup closes it and fails the
// test if any mount is left under the temp dir.
func fsSetup(t *testing.T) *fsEnv {
	t.Helper()
	RequireRoot(t)
	dir := t.TempDir()
	// Let non-root test processes traverse to bind mounts below dir.
	for d := dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	e := &fsEnv{dir: dir, volume: filepath.Join(dir, "vol"), mnt: filepath.Join(dir, "mnt")}
	for _, d := range []string{e.volume, e.mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(e.volume, "version.txt"), []byte("3"), 0o644); err != nil {
		t.Fatal(err)
	}
	lvl := zerolog.Disabled
	if os.Getenv("VFOLDER_FS_DEBUG") != "" {
		lvl = zerolog.DebugLevel
	}
	// Registered first, so it runs last: also after a failed Mount.
	failOnMountsLeft(t, dir)
	f, err := vfs.Mount(vfs.Options{
		MountPoint: e.mnt,
		StorageUID: fsStorageUID,
		StorageGID: fsStorageGID,
		Logger:     zerolog.New(zerolog.NewTestWriter(t)).Level(lvl),
		Debug:      os.Getenv("VFOLDER_FS_DEBUG") == "fuse",
	})
	if err != nil {
		t.Fatalf("Mount: %v", err)
	}
	e.fs = f
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return e
}

// folder makes a folder directory in the volume and returns its path
// relative to the volume root.
func (e *fsEnv) folder(t *testing.T) string {
	t.Helper()
	e.mu.Lock()
	e.n++
	n := e.n
	e.mu.Unlock()
	scope := fmt.Sprintf("%032x", 0xabc)
	id := fmt.Sprintf("%032x", 0x1000+n)
	rel := meta.FolderRelPath(meta.ScopeID{Kind: meta.KindUser, UUID: scope}, id)
	if err := os.MkdirAll(filepath.Join(e.volume, rel), 0o755); err != nil {
		t.Fatal(err)
	}
	// The folder root as a folder creation would leave it: storage owned.
	if err := os.Chown(filepath.Join(e.volume, rel), fsStorageUID, fsStorageGID); err != nil {
		t.Fatal(err)
	}
	return rel
}

// spec is a view spec for a folder, session namespace, owner 1000:1000.
func (e *fsEnv) spec(rel, name string, mode meta.Permission) vfs.ViewSpec {
	return vfs.ViewSpec{
		Namespace:  vfs.NSSessions,
		Key:        "sess-1",
		Name:       name,
		VolumeName: "vol",
		VolumePath: e.volume,
		FolderRel:  rel,
		Mode:       mode,
		UID:        1000,
		GID:        1000,
		FolderID:   strings.ReplaceAll(rel[33:], "/", ""),
		Scope:      meta.ScopeID{Kind: meta.KindUser, UUID: rel[:32]},
	}
}

// add adds a view and returns its path in the mount.
func (e *fsEnv) add(t *testing.T, s vfs.ViewSpec) string {
	t.Helper()
	if err := e.fs.AddView(s); err != nil {
		t.Fatalf("AddView(%s/%s/%s): %v", s.Namespace, s.Key, s.Name, err)
	}
	return filepath.Join(e.mnt, s.Namespace, s.Key, s.Name)
}

// bind bind-mounts src on a fresh directory below the temp dir, as mountd
// does for containers, and returns it. Cleanup unmounts it.
func (e *fsEnv) bind(t *testing.T, src string) string {
	t.Helper()
	e.mu.Lock()
	e.n++
	n := e.n
	e.mu.Unlock()
	dst := filepath.Join(e.dir, "bind"+strconv.Itoa(n))
	if err := os.Mkdir(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount(src, dst, "", syscall.MS_BIND, ""); err != nil {
		t.Fatalf("bind %s: %v", src, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dst, 0); err != nil {
			syscall.Unmount(dst, syscall.MNT_DETACH)
		}
	})
	return dst
}

// fsRunAs runs a shell script as uid:gid (no supplementary groups) and
// returns its combined output.
func fsRunAs(t *testing.T, uid, gid uint32, script string) (string, error) {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}},
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// fsLstat stats a path without following a symlink.
func fsLstat(t *testing.T, p string) syscall.Stat_t {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		t.Fatalf("lstat %s: %v", p, err)
	}
	return st
}
