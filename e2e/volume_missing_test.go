package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/meta"
)

const mvUser = "8a7b6c5d4e3f4a2b9c1d0e2f3a4b5c6d"

// bindVolume bind-mounts src on dst (a volume's mount, as NFS would be);
// it returns mount and unmount functions, and unmounts in t.Cleanup.
func bindVolume(t *testing.T, src, dst string) (mount, unmount func()) {
	t.Helper()
	mounted := false
	mount = func() {
		t.Helper()
		if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
			t.Fatalf("bind %s on %s: %v", src, dst, err)
		}
		mounted = true
	}
	unmount = func() {
		t.Helper()
		if err := unix.Unmount(dst, 0); err != nil {
			t.Fatalf("unmount %s: %v", dst, err)
		}
		mounted = false
	}
	t.Cleanup(func() {
		if mounted {
			if err := unix.Unmount(dst, unix.MNT_DETACH); err != nil {
				t.Errorf("unmount %s: %v", dst, err)
			}
		}
	})
	return mount, unmount
}

// TestMissingVolumeMount restarts the daemon while a volume's mount is
// missing: nothing is written on the directory below it, the volume's
// folders show status error and have no views, creating a folder there
// is refused, the other volume works; once the mount is back, the folders
// are ready and their views appear without a restart. With require_mount
// the same holds by the mount check alone.
func TestMissingVolumeMount(t *testing.T) {
	RequireRoot(t)
	base := newDir(t)
	failOnMountsLeft(t, base)
	real := filepath.Join(base, "real")
	local := filepath.Join(base, "vol", "local")
	for _, p := range []string{real, local} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mount, unmount := bindVolume(t, real, local)
	mount()
	d := StartDaemon(t, DaemonOptions{Volumes: map[string]string{"local": local, "other": filepath.Join(base, "vol", "other")}})
	var f api.Folder
	d.JSON(&f, "create", "data", "local", "--user", mvUser)
	view := filepath.Join(d.MountPoint, "users", mvUser, "data")
	if err := os.WriteFile(filepath.Join(view, "file"), []byte("on the real volume\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	d.Stop()
	unmount()
	d.Start()
	if ents, err := os.ReadDir(local); err != nil || len(ents) != 0 {
		t.Fatalf("the directory under the missing mount holds %v (%v); want nothing written", ents, err)
	}
	var vs []api.Volume
	d.JSON(&vs, "volume", "list")
	if len(vs) != 2 || vs[0].Name != "local" || vs[0].Status != api.VolumeUnavailable || !strings.Contains(vs[0].Reason, local) {
		t.Errorf("volume list = %+v; want local unavailable naming %s", vs, local)
	}
	var got api.Folder
	d.JSON(&got, "info", f.ID)
	if got.Status != meta.StatusError || !strings.Contains(got.StatusReason, local) {
		t.Errorf("folder on the missing volume: status %q, reason %q; want error naming %s", got.Status, got.StatusReason, local)
	}
	if _, err := os.Lstat(view); !os.IsNotExist(err) {
		t.Errorf("the folder's view exists while its volume is missing: %v", err)
	}
	r := d.CLI("create", "new", "local", "--user", mvUser)
	if r.Code != 1 || !strings.Contains(r.Stderr, "unavailable") || !strings.Contains(r.Stderr, local) {
		t.Errorf("create on the missing volume: %s; want exit 1 naming the volume's path", r)
	}
	if ents, _ := os.ReadDir(local); len(ents) != 0 {
		t.Fatalf("written under the missing mount: %v", ents)
	}
	d.OK("create", "elsewhere", "other", "--user", mvUser)
	if err := os.WriteFile(filepath.Join(d.MountPoint, "users", mvUser, "elsewhere", "x"), []byte("x"), 0o644); err != nil {
		t.Errorf("writing on the other volume: %v", err)
	}

	mount()
	waitReady := func() {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			var now api.Folder
			d.JSON(&now, "info", f.ID)
			b, err := os.ReadFile(filepath.Join(view, "file"))
			if now.Status == meta.StatusReady && err == nil && string(b) == "on the real volume\n" {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("15 s after the mount came back: status %q (%s), view file %q, %v", now.Status, now.StatusReason, b, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitReady()
	d.OK("create", "new", "local", "--user", mvUser)

	// require_mount: the mount check alone tells the volume is missing.
	d.Stop()
	unmount()
	d.volConfig = map[string]string{"local": "require_mount = true"}
	if err := os.WriteFile(d.ConfigPath, []byte(d.configText()), 0o600); err != nil {
		t.Fatal(err)
	}
	d.Start()
	d.JSON(&vs, "volume", "list")
	if vs[0].Status != api.VolumeUnavailable || !strings.Contains(vs[0].Reason, "not a mount point") {
		t.Errorf("with require_mount: local = %+v; want unavailable, not a mount point", vs[0])
	}
	mount()
	waitReady()
}
