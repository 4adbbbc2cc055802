package e2e

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/e2e/oci"
)

// The sessions API end to end: vfolderd publishes folders for a session,
// real runc containers bind them from the publish answer's "oci" mounts,
// and the daemon is restarted under a running container.

// mdSessionsDir makes a sessions directory for a daemon, outside the
// daemon's own directory, and checks at the end (after the daemon is
// stopped: registered before StartDaemon) that nothing is mounted below
// it. The directory's own bind stays when the daemon was last killed
// rather than stopped; it is detached here (TestSessionsDirAfterCrash
// checks that a clean stop releases it).
func mdSessionsDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(newDir(t), "sessions")
	t.Cleanup(func() {
		if left := mdMountsBelow(dir); len(left) > 0 {
			t.Errorf("mounts left below %s: %v", dir, left)
		}
		for _, m := range mountsUnder(dir) {
			_ = syscall.Unmount(m, syscall.MNT_DETACH)
		}
	})
	return dir
}

// mdMountsBelow lists the mounts strictly below dir.
func mdMountsBelow(dir string) []string {
	var out []string
	for _, m := range mountsUnder(dir) {
		if m != dir {
			out = append(out, m)
		}
	}
	return out
}

// mdUnpublish unpublishes a session through the CLI and checks that it
// removed n mounts and reported no problem.
func mdUnpublish(t *testing.T, d *Daemon, sid string, n int) {
	t.Helper()
	var res api.UnpublishResult
	d.JSON(&res, "mount", "unpublish", sid)
	if len(res.Removed) != n || len(res.Problems) != 0 {
		t.Errorf("unpublish %s = %+v; want %d mounts removed, no problem", sid, res, n)
	}
}

// mdStartDaemon starts vfolderd with its own sessions directory and, in
// cleanup, unpublishes every session before the daemon is stopped.
func mdStartDaemon(t *testing.T) (*Daemon, string) {
	t.Helper()
	sess := mdSessionsDir(t)
	d := StartDaemon(t, DaemonOptions{ExtraArgs: []string{"--sessions-dir", sess}})
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
	return d, sess
}

// mdOCI turns a publish answer into the container's bind mounts.
func mdOCI(s api.Session) []oci.Mount {
	var out []oci.Mount
	for _, m := range s.Mounts {
		out = append(out, oci.Mount{Destination: m.OCI.Destination, Type: m.OCI.Type, Source: m.OCI.Source, Options: m.OCI.Options})
	}
	for _, r := range s.Reserved {
		if r.OCI != nil {
			out = append(out, oci.Mount{Destination: r.OCI.Destination, Type: r.OCI.Type, Source: r.OCI.Source, Options: r.OCI.Options})
		}
	}
	return out
}

func mdTargets(s api.Session) map[string]string {
	out := map[string]string{}
	for _, m := range s.Mounts {
		out[m.Target] = m.Name + " " + string(m.Mode)
	}
	return out
}

// mdWriteMarker writes a file straight into a folder on the volume, owned
// by the storage uid like everything there.
func mdWriteMarker(t *testing.T, f api.Folder, name, content string) {
	t.Helper()
	p := filepath.Join(f.Path, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, StorageID, StorageID); err != nil {
		t.Fatal(err)
	}
}

// mdSignal sends sig to the running daemon.
func (d *Daemon) mdSignal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	d.mu.Lock()
	cmd := d.cmd
	d.mu.Unlock()
	if cmd == nil {
		t.Fatal("daemon not running")
	}
	if err := cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// mdWaitExit waits for the daemon to exit and returns its wait error.
func (d *Daemon) mdWaitExit(t *testing.T, within time.Duration) error {
	t.Helper()
	d.mu.Lock()
	done := d.done
	d.mu.Unlock()
	select {
	case <-done:
	case <-time.After(within):
		t.Fatalf("vfolderd did not exit within %v; log:\n%s", within, d.Log())
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.cmd = nil
	return d.waitErr
}

// mdWaitLog waits until the daemon's log contains s.
func (d *Daemon) mdWaitLog(t *testing.T, s string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(d.Log(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("vfolderd never logged %q; log:\n%s", s, d.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// mdWaitWorks runs script in c until it succeeds (a restarted daemon
// serves at once, but the container's first access may race the
// reconcile of the last mount).
func mdWaitWorks(t *testing.T, ctx context.Context, c *oci.Container, uid int, script string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err := c.Exec(ctx, uid, uid, "sh", "-c", script)
		if err == nil {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("in the container %q keeps failing: %v\n%s", script, err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

const mdUser = "6a1e0d2c3b4f4e5d8c7b6a5f4e3d2c1b"

func TestMountdContainer(t *testing.T) {
	oci.Require(t, oci.Runc)
	RequireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	d, sessDir := mdStartDaemon(t)
	const sid = "sess-e2e"
	u := []string{"--user", mdUser}

	var data, ref, ws, local, late, hot api.Folder
	d.JSON(&data, append([]string{"create", "data", "local"}, u...)...)
	d.JSON(&ref, append([]string{"create", "ref", "local", "--permission", "ro"}, u...)...)
	d.JSON(&ws, append([]string{"create", "ws", "local"}, u...)...)
	d.JSON(&local, append([]string{"create", ".local", "local"}, u...)...)
	d.JSON(&late, append([]string{"create", "late", "local"}, u...)...)
	d.JSON(&hot, append([]string{"create", "hot", "local"}, u...)...)
	d.OK("quota-scope", "set", "local", mdUser, "64M", "-t", "user")
	mdWriteMarker(t, ref, "marker", "read-only")
	mdWriteMarker(t, late, "marker", "late")
	mdWriteMarker(t, hot, "marker", "hot")
	mdWriteMarker(t, local, "marker", "dot")

	var s api.Session
	pubArgs := append([]string{"mount", "publish", sid, "data", "ref", "ws=/workspace", "--uid", "1000", "--gid", "1000", "--reserve", "late"}, u...)
	d.JSON(&s, pubArgs...)
	want := map[string]string{"/home/work/data": "data rw", "/home/work/ref": "ref ro", "/workspace": "ws rw", "/home/work/.local": ".local rw"}
	if got := mdTargets(s); !reflect.DeepEqual(got, want) {
		t.Fatalf("published %v; want %v", got, want)
	}
	if len(s.Reserved) != 1 || s.Reserved[0].Target != "/home/work/late" || s.Reserved[0].OCI == nil {
		t.Fatalf("reserved %+v", s.Reserved)
	}
	for _, m := range s.Mounts {
		if !strings.HasPrefix(m.HostPath, sessDir+"/"+sid+"/") {
			t.Errorf("mount %s published at %s, outside %s", m.Name, m.HostPath, sessDir)
		}
	}
	// Publishing the same set again gives the same answer.
	var again api.Session
	d.JSON(&again, pubArgs...)
	if !reflect.DeepEqual(again.Mounts, s.Mounts) {
		t.Errorf("publishing again:\n%+v\nwant\n%+v", again.Mounts, s.Mounts)
	}

	c := ctrStart(t, ctx, oci.Runc, oci.SpecOptions{UID: 1000, GID: 1000, Mounts: mdOCI(s)})
	pid, err := c.Pid(ctx)
	if err != nil {
		t.Fatal(err)
	}

	// rw folder: writable by the container user, shown as 1000:1000,
	// stored as 1100:1100.
	ctrRun(t, ctx, c, 1000, ctrSh("echo hi > /home/work/data/x && mkdir /home/work/data/d")...)
	out := ctrRun(t, ctx, c, 1000, "ls", "-ln", "/home/work/data")
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 4 && (strings.HasSuffix(line, " x") || strings.HasSuffix(line, " d")) && (f[2] != "1000" || f[3] != "1000") {
			t.Errorf("ls -ln in the container: %q; want 1000 1000", line)
		}
	}
	if !strings.Contains(out, " x") || !strings.Contains(out, " d") {
		t.Errorf("ls -ln /home/work/data:\n%s", out)
	}
	for _, n := range []string{"x", "d"} {
		if uid, gid := ctrOwnerOf(t, filepath.Join(data.Path, n)); uid != StorageID || gid != StorageID {
			t.Errorf("%s on the volume owned by %d:%d; want %d:%d", n, uid, gid, StorageID, StorageID)
		}
	}
	if got := ctrReadHost(t, filepath.Join(data.Path, "x")); got != "hi\n" {
		t.Errorf("x on the volume: %q", got)
	}
	// ro folder.
	if got := ctrRun(t, ctx, c, 1000, "cat", "/home/work/ref/marker"); got != "read-only" {
		t.Errorf("ro marker: %q", got)
	}
	for _, uid := range []int{1000, 0} {
		if out := ctrFails(t, ctx, c, uid, ctrSh("echo no > /home/work/ref/y")...); !strings.Contains(out, "Read-only file system") {
			t.Errorf("write into the ro folder as %d: %q", uid, out)
		}
	}
	// /workspace.
	ctrRun(t, ctx, c, 1000, ctrSh("echo ws > /workspace/w")...)
	if got := ctrReadHost(t, filepath.Join(ws.Path, "w")); got != "ws\n" {
		t.Errorf("workspace on the volume: %q", got)
	}
	// The dot-folder came without being asked for.
	if got := ctrRun(t, ctx, c, 1000, "cat", "/home/work/.local/marker"); got != "dot" {
		t.Errorf(".local marker: %q", got)
	}
	ctrRun(t, ctx, c, 1000, ctrSh("echo cfg > /home/work/.local/cfg")...)
	if got := ctrReadHost(t, filepath.Join(local.Path, "cfg")); got != "cfg\n" {
		t.Errorf(".local on the volume: %q", got)
	}

	t.Run("df shows the quota", func(t *testing.T) {
		out := ctrRun(t, ctx, c, 1000, "df", "-k", "/home/work/data")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		f := strings.Fields(lines[len(lines)-1])
		if len(f) < 2 {
			t.Fatalf("df output %q", out)
		}
		total, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			t.Fatalf("df output %q: %v", out, err)
		}
		if total != 64<<10 {
			t.Errorf("df in the container shows %d KiB; want the quota, %d KiB", total, 64<<10)
		}
	})

	// Published after the container started, at a reserved target: it
	// appears inside through propagation.
	if out := ctrFails(t, ctx, c, 1000, "cat", "/home/work/late/marker"); out == "late" {
		t.Fatalf("late folder visible before it was published")
	}
	d.JSON(&s, append([]string{"mount", "publish", sid, "late", "--uid", "1000", "--gid", "1000"}, u...)...)
	if got := ctrRun(t, ctx, c, 1000, "cat", "/home/work/late/marker"); got != "late" {
		t.Errorf("late folder inside: %q", got)
	}
	ctrRun(t, ctx, c, 1000, ctrSh("echo lw > /home/work/late/w")...)
	// Published without a reservation: attach brings it in.
	d.JSON(&s, append([]string{"mount", "publish", sid, "hot", "--uid", "1000", "--gid", "1000"}, u...)...)
	ctrFails(t, ctx, c, 1000, "cat", "/home/work/hot/marker")
	d.OK("mount", "attach", sid, "--pid", strconv.Itoa(pid))
	if got := ctrRun(t, ctx, c, 1000, "cat", "/home/work/hot/marker"); got != "hot" {
		t.Errorf("attached folder inside: %q", got)
	}
	d.OK("mount", "attach", sid, "--pid", strconv.Itoa(pid)) // again: nothing to do

	// A mounted folder cannot be trashed; the error names the session.
	if r := d.CLI(append([]string{"delete", "data"}, u...)...); r.Code != 1 || !strings.Contains(r.Stderr, sid) {
		t.Errorf("trash of a mounted folder: %s", r)
	}

	// A second, privileged container of the same session (a cluster
	// session gets the same mounts) remounts its ro folder rw: the
	// daemon still refuses the write.
	var s2 api.Session
	d.JSON(&s2, pubArgs...)
	if !reflect.DeepEqual(s2.Mounts, s.Mounts) {
		t.Errorf("second container's publish:\n%+v\nwant\n%+v", s2.Mounts, s.Mounts)
	}
	p := ctrStart(t, ctx, oci.Runc, oci.SpecOptions{Privileged: true, Mounts: mdOCI(s2)})
	out, err = p.Exec(ctx, 0, 0, "mount", "-o", "remount,rw", "/home/work/ref")
	t.Logf("privileged remount,rw of the ro folder: err=%v %q", err, out)
	if out := ctrFails(t, ctx, p, 0, ctrSh("echo x > /home/work/ref/priv")...); !strings.Contains(out, "Read-only file system") {
		t.Errorf("privileged write into the ro folder: %q", out)
	}
	if _, err := os.Lstat(filepath.Join(ref.Path, "priv")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the privileged container wrote into the ro folder: %v", err)
	}
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}

	// Restarts under the running container: SIGTERM is refused while
	// the session is live, a second one stops; then SIGKILL. After each
	// start the container reads and writes its folders again.
	d.mdSignal(t, syscall.SIGTERM)
	d.mdWaitLog(t, "refusing to stop")
	if _, err := d.Client().Health(ctx); err != nil {
		t.Fatalf("vfolderd stopped on the first SIGTERM with a live session: %v", err)
	}
	d.mdSignal(t, syscall.SIGTERM)
	if err := d.mdWaitExit(t, 60*time.Second); err != nil {
		t.Fatalf("forced stop exited with %v; log:\n%s", err, d.Log())
	}
	if out, err := c.Exec(ctx, 1000, 1000, "cat", "/home/work/data/x"); err == nil {
		t.Errorf("the folder still worked with vfolderd stopped: %q", out)
	}
	checkAfterRestart := func(round string) {
		t.Helper()
		d.Start()
		if got := mdWaitWorks(t, ctx, c, 1000, "cat /home/work/data/x"); got != "hi\n" {
			t.Errorf("%s: data after the restart: %q", round, got)
		}
		ctrRun(t, ctx, c, 1000, ctrSh("echo "+round+" > /home/work/data/"+round)...)
		if got := ctrReadHost(t, filepath.Join(data.Path, round)); got != round+"\n" {
			t.Errorf("%s: write after the restart reached the volume as %q", round, got)
		}
		if out := ctrFails(t, ctx, c, 1000, ctrSh("echo no > /home/work/ref/z")...); !strings.Contains(out, "Read-only file system") {
			t.Errorf("%s: ro folder after the restart: %q", round, out)
		}
		for tgt, want := range map[string]string{"/home/work/ref/marker": "read-only", "/home/work/late/w": "lw\n", "/home/work/hot/marker": "hot", "/workspace/w": "ws\n", "/home/work/.local/cfg": "cfg\n"} {
			if got := mdWaitWorks(t, ctx, c, 1000, "cat "+tgt); got != want {
				t.Errorf("%s: %s after the restart: %q; want %q", round, tgt, got, want)
			}
		}
	}
	checkAfterRestart("sigterm")
	d.Kill()
	checkAfterRestart("sigkill")

	// The container ends, the session is unpublished: nothing stays
	// mounted below the sessions directory, and the folder can go.
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	mdUnpublish(t, d, sid, 6)
	if left := mdMountsBelow(sessDir); len(left) > 0 {
		t.Errorf("mounts left below %s after unpublish: %v", sessDir, left)
	}
	d.OK(append([]string{"delete", "data"}, u...)...)
	var list []api.Session
	d.JSON(&list, "mount", "list")
	if len(list) != 0 {
		t.Errorf("sessions after unpublish: %+v", list)
	}
}

// TestMountdPublishChecks runs the publish checks through the CLI against
// a real daemon (no container): refusals name the folder, change nothing,
// and an unpublish of a session nobody uses leaves nothing behind.
func TestMountdPublishChecks(t *testing.T) {
	d, sessDir := mdStartDaemon(t)
	u := []string{"--user", mdUser}
	var ro, other api.Folder
	d.JSON(&ro, append([]string{"create", "ref", "local", "--permission", "ro"}, u...)...)
	d.JSON(&other, "create", "theirs", "local", "--user", userUUID)
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"ref:rw"}, `folder "ref"`},
		{[]string{other.ID}, `folder "theirs"`},
		{[]string{"ref=/etc/ref"}, "system path"},
		{[]string{"nope"}, `"nope"`},
	} {
		r := d.CLI(append(append([]string{"mount", "publish", "s1"}, tc.args...), u...)...)
		if r.Code != 1 || !strings.Contains(r.Stderr, tc.msg) {
			t.Errorf("publish %v: %s; want exit 1 mentioning %q", tc.args, r, tc.msg)
		}
	}
	if r := d.CLI("mount", "list", "s1"); r.Code != 1 || !strings.Contains(r.Stderr, "no session s1") {
		t.Errorf("refused publishes left a session: %s", r)
	}
	if _, err := os.Stat(sessDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("refused publishes made the sessions directory: %v", err)
	}
	var s api.Session
	d.JSON(&s, append([]string{"mount", "publish", "s1", "ref"}, u...)...)
	if len(s.Mounts) != 1 || s.Mounts[0].Mode != "ro" || s.UID != viewOwner {
		t.Fatalf("publish = %+v", s)
	}
	// The host path is the view: readable, read-only.
	if err := os.WriteFile(filepath.Join(s.Mounts[0].HostPath, "x"), nil, 0o644); !errors.Is(err, syscall.EROFS) {
		t.Errorf("write through the published ro view: %v", err)
	}
	if n := len(mdMountsBelow(filepath.Join(sessDir, "s1"))); n != 2 { // placeholder + view
		t.Errorf("%d mounts for one published folder; want 2", n)
	}
	mdUnpublish(t, d, "s1", 1)
	if left := mdMountsBelow(sessDir); len(left) > 0 {
		t.Errorf("mounts left: %v", left)
	}
	mdUnpublish(t, d, "never-published", 0)
	// With no session left, a SIGTERM stops at once and releases the
	// sessions directory.
	d.Stop()
	if left := mountsUnder(sessDir); len(left) > 0 {
		t.Errorf("mounts left after a clean stop: %v", left)
	}
}
