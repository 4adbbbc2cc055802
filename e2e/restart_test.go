package e2e

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/e2e/oci"
	"github.com/vfolder/vfolder/mountd"
)

// Restarts of vfolderd under running containers: each restart replaces
// the dead view of the previous FUSE connection at every key of a live
// session instead of stacking one more mount there, and the containers'
// folders come back live through propagation.

// rsCheckKeys checks the host side of a session: every key directory
// holds exactly one mount, a live FUSE view (no placeholder, no dead view
// below it), and nothing is left parked. It returns the keys it saw.
func rsCheckKeys(t *testing.T, sessDir, sid string, round string) map[string]bool {
	t.Helper()
	mi, err := mountInfosUnder(sessDir)
	if err != nil {
		t.Fatal(err)
	}
	byKey := map[string][]mountd.MountInfo{}
	for _, m := range mi {
		if strings.Contains(m.Point, "/.parked") {
			t.Errorf("%s: a view is left parked: %s", round, m.Point)
		}
		if filepath.Dir(m.Point) == filepath.Join(sessDir, sid) {
			k := filepath.Base(m.Point)
			byKey[k] = append(byKey[k], m)
		}
	}
	keys := map[string]bool{}
	for k, ms := range byKey {
		keys[k] = true
		if len(ms) != 1 {
			var desc []string
			for _, m := range ms {
				desc = append(desc, m.FSType+" "+m.Source+" "+m.Dev)
			}
			t.Errorf("%s: key %s holds %d mounts; want one: %v", round, k, len(ms), desc)
		}
		top := ms[len(ms)-1]
		if !strings.HasPrefix(top.FSType, "fuse") {
			t.Errorf("%s: key %s: top mount is %s %s; want the FUSE view", round, k, top.FSType, top.Source)
		}
		var st unix.Statx_t
		err := unix.Statx(unix.AT_FDCWD, top.Point, unix.AT_STATX_FORCE_SYNC, unix.STATX_INO, &st)
		if errors.Is(err, unix.ENOTCONN) || errors.Is(err, unix.ECONNABORTED) {
			t.Errorf("%s: key %s is dead: %v", round, k, err)
		}
	}
	return keys
}

// rsCheckContainer checks the container side of target: its topmost
// mount is the live view the host holds at key (same device), and no
// placeholder or dead view is on top of it. It returns how many mounts
// are stacked at target.
func rsCheckContainer(t *testing.T, pid int, target, sessDir, sid, key, round string) int {
	t.Helper()
	mi, err := mountd.ReadMountInfo(pid)
	if err != nil {
		t.Fatal(err)
	}
	var at []mountd.MountInfo
	for _, m := range mi {
		if m.Point == target {
			at = append(at, m) // later lines are mounted on top
		}
	}
	host, err := mountInfosUnder(filepath.Join(sessDir, sid, key))
	if err != nil {
		t.Fatal(err)
	}
	if len(at) == 0 || len(host) == 0 {
		t.Errorf("%s: %s in pid %d: %d mounts; host key %s: %d mounts", round, target, pid, len(at), key, len(host))
		return len(at)
	}
	if top, h := at[len(at)-1], host[len(host)-1]; top.Dev != h.Dev {
		t.Errorf("%s: top mount at %s in pid %d is %s %s; want the host's live view %s", round, target, pid, top.FSType, top.Dev, h.Dev)
	}
	return len(at)
}

// rsCheckNamespace checks the daemon's FUSE mount point after a restart:
// every mount at or below it answers (no dead one of an earlier run) and
// no two are stacked at one point.
func rsCheckNamespace(t *testing.T, mnt, round string) {
	t.Helper()
	mi, err := mountInfosUnder(mnt)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, m := range mi {
		seen[m.Point]++
		if seen[m.Point] == 2 {
			t.Errorf("%s: mounts stacked at %s", round, m.Point)
		}
		var st unix.Statx_t
		err := unix.Statx(unix.AT_FDCWD, m.Point, unix.AT_STATX_FORCE_SYNC, unix.STATX_INO, &st)
		if errors.Is(err, unix.ENOTCONN) || errors.Is(err, unix.ECONNABORTED) {
			t.Errorf("%s: %s is dead: %v", round, m.Point, err)
		}
	}
}

func TestRestartReplacesDeadViews(t *testing.T) {
	for _, rt := range ctrRuntimes {
		t.Run(rt, func(t *testing.T) { testRestartReplaces(t, rt) })
	}
}

func testRestartReplaces(t *testing.T, rt string) {
	oci.Require(t, rt)
	RequireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	d, sessDir := mdStartDaemon(t)
	const sid = "sess-restart"
	u := []string{"--user", mdUser}
	var data, ref, late, hot api.Folder
	d.JSON(&data, append([]string{"create", "data", "local"}, u...)...)
	d.JSON(&ref, append([]string{"create", "ref", "local", "--permission", "ro"}, u...)...)
	d.JSON(&late, append([]string{"create", "late", "local"}, u...)...)
	d.JSON(&hot, append([]string{"create", "hot", "local"}, u...)...)
	mdWriteMarker(t, ref, "marker", "read-only")
	mdWriteMarker(t, late, "marker", "late")
	mdWriteMarker(t, hot, "marker", "hot")

	var s api.Session
	d.JSON(&s, append([]string{"mount", "publish", sid, "data", "ref", "--uid", "1000", "--gid", "1000", "--reserve", "late"}, u...)...)
	c := ctrStart(t, ctx, rt, oci.SpecOptions{UID: 1000, GID: 1000, Mounts: mdOCI(s)})
	pid, err := c.Pid(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Through the placeholder, and injected into the running container.
	d.JSON(&s, append([]string{"mount", "publish", sid, "late", "--uid", "1000", "--gid", "1000"}, u...)...)
	d.JSON(&s, append([]string{"mount", "publish", sid, "hot", "--uid", "1000", "--gid", "1000"}, u...)...)
	d.OK("mount", "attach", sid, "--pid", strconv.Itoa(pid))
	ctrRun(t, ctx, c, 1000, ctrSh("echo hi > /home/work/data/x && cat /home/work/late/marker /home/work/hot/marker")...)
	// Before any restart each key holds the placeholder publish puts
	// there first and the view on it.
	lateKey := ""
	for _, m := range s.Mounts {
		if m.Target == "/home/work/late" {
			lateKey = filepath.Base(m.HostPath)
		}
	}

	containers := []*oci.Container{c}
	for round := 1; round <= 3; round++ {
		name := fmt.Sprintf("restart %d", round)
		if round == 2 {
			d.mdSignal(t, syscall.SIGTERM)
			d.mdWaitLog(t, "refusing to stop")
			d.mdSignal(t, syscall.SIGTERM)
			if err := d.mdWaitExit(t, 60*time.Second); err != nil {
				t.Fatalf("forced stop exited with %v; log:\n%s", err, d.Log())
			}
		} else {
			d.Kill()
		}
		d.Start()
		keys := rsCheckKeys(t, sessDir, sid, name)
		rsCheckNamespace(t, d.MountPoint, name)
		for _, k := range []string{"data", "ref", lateKey, "hot"} {
			if !keys[k] {
				t.Errorf("%s: key %s missing from the mount table (%v)", name, k, keys)
			}
		}
		for i, ct := range containers {
			w := fmt.Sprintf("r%dc%d", round, i)
			if got := mdWaitWorks(t, ctx, ct, 1000, "cat /home/work/data/x"); got != "hi\n" {
				t.Errorf("%s: container %d reads %q", name, i, got)
			}
			ctrRun(t, ctx, ct, 1000, ctrSh("echo "+w+" > /home/work/data/"+w)...)
			if got := ctrReadHost(t, filepath.Join(data.Path, w)); got != w+"\n" {
				t.Errorf("%s: container %d's write reached the volume as %q", name, i, got)
			}
			if out := ctrFails(t, ctx, ct, 1000, ctrSh("echo no > /home/work/ref/z")...); !strings.Contains(out, "Read-only file system") {
				t.Errorf("%s: container %d: ro folder: %q", name, i, out)
			}
			for tgt, want := range map[string]string{"/home/work/ref/marker": "read-only", "/home/work/late/marker": "late", "/home/work/hot/marker": "hot"} {
				if i > 0 && tgt == "/home/work/hot/marker" {
					continue // attached to the first container only
				}
				if got := mdWaitWorks(t, ctx, ct, 1000, "cat "+tgt); got != want {
					t.Errorf("%s: container %d: %s = %q; want %q", name, i, tgt, got, want)
				}
			}
			cpid, err := ct.Pid(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for tgt, key := range map[string]string{"/home/work/data": "data", "/home/work/ref": "ref", "/home/work/late": lateKey} {
				n := rsCheckContainer(t, cpid, tgt, sessDir, sid, key, name)
				t.Logf("%s: container %d: %d mounts at %s", name, i, n, tgt)
			}
		}
		if round == 1 {
			// A container started now binds the view of this run: the
			// next restarts must reach it too.
			s2, err := d.Client().Session(ctx, sid)
			if err != nil {
				t.Fatal(err)
			}
			containers = append(containers, ctrStart(t, ctx, rt, oci.SpecOptions{UID: 1000, GID: 1000, Mounts: mdOCI(s2)}))
		}
	}
	rsCheckContainer(t, pid, "/home/work/hot", sessDir, sid, "hot", "after the restarts")
	for _, ct := range containers {
		if err := ct.Stop(); err != nil {
			t.Fatal(err)
		}
	}
	mdUnpublish(t, d, sid, 4)
	if left := mdMountsBelow(sessDir); len(left) > 0 {
		t.Errorf("mounts left below %s after unpublish: %v", sessDir, left)
	}
}

// rsBuildUpgrade builds vfolderd again as a "new version" (its version
// string set at link time) into a directory of the test.
func rsBuildUpgrade(t *testing.T, ver string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = "/usr/local/go/bin/go"
	}
	out := filepath.Join(t.TempDir(), "vfolderd")
	cmd := exec.Command(goBin, "build", "-ldflags", "-X main.version="+ver, "-o", out, "./cmd/vfolderd")
	cmd.Dir = moduleRoot()
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the new vfolderd: %v\n%s", err, b)
	}
	return out
}

// TestRestartUpgradeLiveSessions is the upgrade procedure of the README:
// with a session published and its container running, the binary is
// replaced and the daemon restarted by one SIGTERM (force_stop, as a
// service manager's restart sends it). The new version serves the same
// session: the container reads what it wrote before and writes again, and
// every key holds the new view alone.
func TestRestartUpgradeLiveSessions(t *testing.T) {
	oci.Require(t, oci.Runc)
	RequireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	newBin := rsBuildUpgrade(t, "e2e-upgraded")
	sessDir := mdSessionsDir(t)
	d := StartDaemon(t, DaemonOptions{ExtraArgs: []string{"--sessions-dir", sessDir, "--force-stop"}})
	t.Cleanup(func() {
		if d.PID() == 0 {
			return
		}
		c := api.NewClient(d.Socket)
		defer c.CloseIdleConnections()
		ss, _ := c.Sessions(context.Background())
		for _, s := range ss {
			if r, err := c.Unpublish(context.Background(), s.ID); err != nil || len(r.Problems) > 0 {
				t.Errorf("unpublishing %s at the end: %+v, %v", s.ID, r, err)
			}
		}
	})
	const sid = "sess-upgrade"
	u := []string{"--user", mdUser}
	var data, ref api.Folder
	d.JSON(&data, append([]string{"create", "data", "local"}, u...)...)
	d.JSON(&ref, append([]string{"create", "ref", "local", "--permission", "ro"}, u...)...)
	mdWriteMarker(t, ref, "marker", "read-only")
	var s api.Session
	d.JSON(&s, append([]string{"mount", "publish", sid, "data", "ref", "--uid", "1000", "--gid", "1000"}, u...)...)
	c := ctrStart(t, ctx, oci.Runc, oci.SpecOptions{UID: 1000, GID: 1000, Mounts: mdOCI(s)})
	ctrRun(t, ctx, c, 1000, ctrSh("echo before > /home/work/data/before")...)
	h, err := d.Client().Health(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if h.Version == "e2e-upgraded" {
		t.Fatalf("the first daemon already reports the new version")
	}

	// The upgrade: new binary in place, one SIGTERM, start.
	d.mdSignal(t, syscall.SIGTERM)
	if err := d.mdWaitExit(t, 60*time.Second); err != nil {
		t.Fatalf("stop with force_stop exited with %v; log:\n%s", err, d.Log())
	}
	d.Bin = newBin
	d.Start()
	if h, err := d.Client().Health(ctx); err != nil || h.Version != "e2e-upgraded" {
		t.Fatalf("after the upgrade: health %+v, %v; want version e2e-upgraded", h, err)
	}
	list, err := d.Client().Sessions(ctx)
	if err != nil || len(list) != 1 || list[0].ID != sid || len(list[0].Mounts) != len(s.Mounts) {
		t.Fatalf("sessions after the upgrade: %+v, %v", list, err)
	}
	if got := mdWaitWorks(t, ctx, c, 1000, "cat /home/work/data/before"); got != "before\n" {
		t.Errorf("data written before the upgrade reads %q", got)
	}
	ctrRun(t, ctx, c, 1000, ctrSh("echo after > /home/work/data/after")...)
	if got := ctrReadHost(t, filepath.Join(data.Path, "after")); got != "after\n" {
		t.Errorf("write after the upgrade reached the volume as %q", got)
	}
	if got := mdWaitWorks(t, ctx, c, 1000, "cat /home/work/ref/marker"); got != "read-only" {
		t.Errorf("ro folder after the upgrade reads %q", got)
	}
	if out := ctrFails(t, ctx, c, 1000, ctrSh("echo no > /home/work/ref/z")...); !strings.Contains(out, "Read-only file system") {
		t.Errorf("ro folder after the upgrade: %q", out)
	}
	rsCheckKeys(t, sessDir, sid, "after the upgrade")
	rsCheckNamespace(t, d.MountPoint, "after the upgrade")
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	mdUnpublish(t, d, sid, len(s.Mounts))
}
