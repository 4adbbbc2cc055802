package e2e

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/e2e/oci"
	"github.com/vfolder/vfolder/mountd"
)

// Real containers (runc, and crun when installed) get views published by
// mountd. The sources are plain temp directories standing in for the
// FUSE views: what is tested here is the mount machinery.

var ctrRuntimes = []string{oci.Runc, oci.Crun}

// newPublisher returns a Publisher rooted in a temp dir. Its cleanup runs
// after the containers' (registered later) and fails the test if any
// mount is left at or below the root.
func ctrNewPublisher(t *testing.T) *mountd.Publisher {
	t.Helper()
	p, err := mountd.NewPublisher(filepath.Join(t.TempDir(), "sessions"), zerolog.Nop())
	if errors.Is(err, mountd.ErrUnsupported) {
		t.Skipf("kernel: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("publisher Close: %v", err)
		}
		if left := ctrMountsUnder(t, p.Root()); len(left) > 0 {
			for i := len(left) - 1; i >= 0; i-- {
				unix.Unmount(left[i].Point, unix.MNT_DETACH)
			}
			t.Errorf("mounts left under %s: %+v", p.Root(), left)
		}
	})
	return p
}

func ctrMountsUnder(t *testing.T, dir string) []mountd.MountInfo {
	t.Helper()
	mi, err := mountInfosUnder(dir)
	if err != nil {
		t.Fatal(err)
	}
	return mi
}

// source makes a temp dir with a marker file, owned by uid:gid.
func ctrSource(t *testing.T, marker string, uid, gid int) string {
	t.Helper()
	d := t.TempDir()
	if err := os.WriteFile(filepath.Join(d, "marker"), []byte(marker), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{d, filepath.Join(d, "marker")} {
		if err := os.Chown(p, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

func ctrBind(hostPath, target string, ro bool) oci.Mount {
	return oci.Mount(mountd.OCIMount(hostPath, target, ro))
}

func ctrTarget(t *testing.T, name, tgt string) string {
	t.Helper()
	p, err := mountd.ResolveTarget(name, tgt)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// start builds a busybox bundle and runs `sleep 300` in it.
func ctrStart(t *testing.T, ctx context.Context, rt string, o oci.SpecOptions) *oci.Container {
	t.Helper()
	bundle := t.TempDir()
	if err := oci.BuildRootfs(filepath.Join(bundle, "rootfs")); err != nil {
		t.Fatal(err)
	}
	o.Args = []string{"sleep", "300"}
	if err := oci.Spec(bundle, o); err != nil {
		t.Fatal(err)
	}
	c, err := oci.Run(ctx, t, rt, bundle, oci.ContainerID(t))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// run execs a command in c that must succeed.
func ctrRun(t *testing.T, ctx context.Context, c *oci.Container, uid int, args ...string) string {
	t.Helper()
	out, err := c.Exec(ctx, uid, uid, args...)
	if err != nil {
		t.Fatalf("exec %q as %d: %v\n%s", args, uid, err, out)
	}
	return out
}

// fails execs a command in c that must fail and returns its output.
func ctrFails(t *testing.T, ctx context.Context, c *oci.Container, uid int, args ...string) string {
	t.Helper()
	out, err := c.Exec(ctx, uid, uid, args...)
	var ee *exec.ExitError
	if err == nil {
		t.Fatalf("exec %q as %d succeeded; want a failure\n%s", args, uid, out)
	} else if !errors.As(err, &ee) {
		t.Fatalf("exec %q: %v\n%s", args, err, out)
	}
	return out
}

func ctrSh(script string) []string { return []string{"sh", "-c", script} }

func ctrReadHost(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func ctrOwnerOf(t *testing.T, p string) (uint32, uint32) {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return st.Uid, st.Gid
}

// topIn is the topmost mount at point in pid's mount namespace.
func ctrTopIn(t *testing.T, pid int, point string) *mountd.MountInfo {
	t.Helper()
	mi, err := mountd.ReadMountInfo(pid)
	if err != nil {
		t.Fatal(err)
	}
	var top *mountd.MountInfo
	for i := range mi {
		if mi[i].Point == point {
			top = &mi[i] // later lines are mounted on top
		}
	}
	return top
}

func TestContainerMounts(t *testing.T) {
	for _, rt := range ctrRuntimes {
		t.Run(rt, func(t *testing.T) {
			oci.Require(t, rt)
			testContainerMounts(t, rt)
		})
	}
}

func testContainerMounts(t *testing.T, rt string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p := ctrNewPublisher(t)
	const sid = "sess1"

	srcData := ctrSource(t, "data", 1000, 1000)
	srcRO := ctrSource(t, "read-only", 0, 0)
	srcWS := ctrSource(t, "workspace", 1000, 1000)
	srcLate := ctrSource(t, "late", 1000, 1000)
	srcLateRO := ctrSource(t, "late-ro", 0, 0)
	srcAtt := ctrSource(t, "attached", 1000, 1000)

	hpData, err := p.Publish(sid, "data", srcData, false)
	if err != nil {
		t.Fatal(err)
	}
	hpRO, err := p.Publish(sid, "ro", srcRO, true)
	if err != nil {
		t.Fatal(err)
	}
	hpWS, err := p.Publish(sid, "ws", srcWS, false)
	if err != nil {
		t.Fatal(err)
	}
	hpLate, err := p.Reserve(sid, "late")
	if err != nil {
		t.Fatal(err)
	}
	hpLateRO, err := p.Reserve(sid, "late-ro")
	if err != nil {
		t.Fatal(err)
	}
	tData, tRO, tWS := ctrTarget(t, "data", ""), ctrTarget(t, "ro", ""), ctrTarget(t, "ws", "/workspace")
	tLate, tLateRO := ctrTarget(t, "late", ""), ctrTarget(t, "late-ro", "")

	c := ctrStart(t, ctx, rt, oci.SpecOptions{
		UID: 1000, GID: 1000,
		Mounts: []oci.Mount{
			ctrBind(hpData, tData, false),
			ctrBind(hpRO, tRO, true),
			ctrBind(hpWS, tWS, false),
			ctrBind(hpLate, tLate, false),
			ctrBind(hpLateRO, tLateRO, true),
		},
	})

	// rw view at /home/work/data, written by uid 1000.
	ctrRun(t, ctx, c, 1000, ctrSh("echo hi > /home/work/data/x")...)
	if got := ctrReadHost(t, filepath.Join(srcData, "x")); got != "hi\n" {
		t.Fatalf("source got %q", got)
	}
	if uid, gid := ctrOwnerOf(t, filepath.Join(srcData, "x")); uid != 1000 || gid != 1000 {
		t.Fatalf("file written in the container is owned by %d:%d", uid, gid)
	}
	// ro view: readable, EROFS on write.
	if out := ctrRun(t, ctx, c, 1000, "cat", "/home/work/ro/marker"); out != "read-only" {
		t.Fatalf("cat ro marker: %q", out)
	}
	if out := ctrFails(t, ctx, c, 1000, ctrSh("echo hi > /home/work/ro/x")...); !strings.Contains(out, "Read-only file system") {
		t.Fatalf("write into ro view: %q; want Read-only file system", out)
	}
	if out := ctrFails(t, ctx, c, 0, ctrSh("echo hi > /home/work/ro/x")...); !strings.Contains(out, "Read-only file system") {
		t.Fatalf("write into ro view as container root: %q; want Read-only file system", out)
	}
	// /workspace.
	ctrRun(t, ctx, c, 1000, ctrSh("echo ws > /workspace/y")...)
	if got := ctrReadHost(t, filepath.Join(srcWS, "y")); got != "ws\n" {
		t.Fatalf("workspace source got %q", got)
	}

	// Reserved keys: empty and read-only until something is published.
	if out := ctrFails(t, ctx, c, 0, ctrSh("echo no > /home/work/late/x")...); !strings.Contains(out, "Read-only file system") {
		t.Fatalf("write into the placeholder: %q", out)
	}
	ctrFails(t, ctx, c, 1000, "cat", "/home/work/late/marker")
	// Published after the container started: it shows up inside.
	if _, err := p.Publish(sid, "late", srcLate, false); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Publish(sid, "late-ro", srcLateRO, true); err != nil {
		t.Fatal(err)
	}
	if out := ctrRun(t, ctx, c, 1000, "cat", "/home/work/late/marker"); out != "late" {
		t.Fatalf("late view inside: %q", out)
	}
	ctrRun(t, ctx, c, 1000, ctrSh("echo late-write > /home/work/late/w")...)
	if got := ctrReadHost(t, filepath.Join(srcLate, "w")); got != "late-write\n" {
		t.Fatalf("late source got %q", got)
	}
	if out := ctrRun(t, ctx, c, 1000, "cat", "/home/work/late-ro/marker"); out != "late-ro" {
		t.Fatalf("late ro view inside: %q", out)
	}
	if out := ctrFails(t, ctx, c, 0, ctrSh("echo hi > /home/work/late-ro/x")...); !strings.Contains(out, "Read-only file system") {
		t.Fatalf("write into late ro view: %q", out)
	}
	pid, err := c.Pid(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if top := ctrTopIn(t, pid, tLate); top == nil || top.Shared() || !top.Slave() {
		t.Fatalf("late view inside the container: %+v (want a slave, not shared)", top)
	}

	// Attach: no reservation, any target, after start.
	hpAtt, err := p.Publish(sid, "att", srcAtt, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := mountd.Attach(pid, hpAtt, "/mnt/attached", false); err != nil {
		t.Fatal(err)
	}
	if err := mountd.Attach(pid, hpAtt, "/srv/attached-ro", true); err != nil {
		t.Fatal(err)
	}
	if out := ctrRun(t, ctx, c, 1000, "cat", "/mnt/attached/marker"); out != "attached" {
		t.Fatalf("attached view inside: %q", out)
	}
	ctrRun(t, ctx, c, 1000, ctrSh("echo att > /mnt/attached/z")...)
	if got := ctrReadHost(t, filepath.Join(srcAtt, "z")); got != "att\n" {
		t.Fatalf("attached source got %q", got)
	}
	if out := ctrFails(t, ctx, c, 0, ctrSh("echo hi > /srv/attached-ro/x")...); !strings.Contains(out, "Read-only file system") {
		t.Fatalf("write into ro attach: %q", out)
	}
	if top := ctrTopIn(t, pid, "/mnt/attached"); top == nil || top.Shared() || !top.Slave() {
		t.Fatalf("attached mount inside: %+v", top)
	}
	for _, tg := range []string{"/mnt/attached", "/srv/attached-ro"} {
		if err := mountd.Detach(pid, tg); err != nil {
			t.Fatal(err)
		}
	}
	ctrFails(t, ctx, c, 1000, "cat", "/mnt/attached/marker")
	ctrFails(t, ctx, c, 1000, "cat", "/srv/attached-ro/marker")

	// Stop the container, then Unpublish: nothing may stay mounted.
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := p.Unpublish(sid); err != nil {
		t.Fatal(err)
	}
	if left := ctrMountsUnder(t, p.SessionDir(sid)); len(left) > 0 {
		t.Fatalf("mounts left after Unpublish: %+v", left)
	}
	if _, err := os.Stat(p.SessionDir(sid)); !os.IsNotExist(err) {
		t.Fatalf("session dir left: %v", err)
	}
	for src, want := range map[string]string{srcData: "data", srcRO: "read-only", srcLate: "late", srcAtt: "attached"} {
		if got := ctrReadHost(t, filepath.Join(src, "marker")); got != want {
			t.Fatalf("source %s damaged: %q", src, got)
		}
	}
}

// TestContainerUnpublishWhileRunning records what Unpublish does to a
// live container: views published on reserved keys leave it; a view the
// container bound directly stays until Detach (or the container's end).
func TestContainerUnpublishWhileRunning(t *testing.T) {
	oci.Require(t, oci.Runc)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p := ctrNewPublisher(t)
	const sid = "sess2"
	srcDirect, srcLate := ctrSource(t, "direct", 0, 0), ctrSource(t, "late", 0, 0)
	hpDirect, err := p.Publish(sid, "direct", srcDirect, false)
	if err != nil {
		t.Fatal(err)
	}
	hpLate, err := p.Reserve(sid, "late")
	if err != nil {
		t.Fatal(err)
	}
	c := ctrStart(t, ctx, oci.Runc, oci.SpecOptions{Mounts: []oci.Mount{
		ctrBind(hpDirect, "/home/work/direct", false),
		ctrBind(hpLate, "/home/work/late", false),
	}})
	if _, err := p.Publish(sid, "late", srcLate, false); err != nil {
		t.Fatal(err)
	}
	ctrRun(t, ctx, c, 0, "cat", "/home/work/late/marker")
	if err := p.Unpublish(sid); err != nil {
		t.Fatal(err)
	}
	ctrFails(t, ctx, c, 0, "cat", "/home/work/late/marker")
	if out := ctrRun(t, ctx, c, 0, "cat", "/home/work/direct/marker"); out != "direct" {
		t.Fatalf("directly bound view: %q", out)
	}
	pid, err := c.Pid(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := mountd.Detach(pid, "/home/work/direct"); err != nil {
		t.Fatal(err)
	}
	ctrFails(t, ctx, c, 0, "cat", "/home/work/direct/marker")
}

// TestContainerPrivilegedRemount: a privileged container (all
// capabilities) tries to make its ro view writable. The bind flag cannot
// stop it; the daemon's own EROFS on ro views is the guarantee, tested
// with the FUSE views. Here the outcome is recorded, and what must hold
// regardless is checked: the host's copy stays read-only, and nothing is
// left mounted afterwards. The source is a tmpfs of the test's own, so
// that a superblock remount inside cannot touch a host filesystem.
func TestContainerPrivilegedRemount(t *testing.T) {
	oci.Require(t, oci.Runc)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p := ctrNewPublisher(t)
	src := t.TempDir()
	if err := unix.Mount("vfolder-e2e", src, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(src, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", src, err)
		}
	})
	if err := os.WriteFile(filepath.Join(src, "marker"), []byte("ro"), 0o644); err != nil {
		t.Fatal(err)
	}
	hp, err := p.Publish("sess3", "ro", src, true)
	if err != nil {
		t.Fatal(err)
	}
	c := ctrStart(t, ctx, oci.Runc, oci.SpecOptions{Privileged: true, Mounts: []oci.Mount{ctrBind(hp, "/home/work/ro", true)}})
	if out := ctrFails(t, ctx, c, 0, ctrSh("echo x > /home/work/ro/before")...); !strings.Contains(out, "Read-only file system") {
		t.Fatalf("write before remount: %q", out)
	}
	out, err := c.Exec(ctx, 0, 0, "mount", "-o", "remount,rw", "/home/work/ro")
	t.Logf("privileged `mount -o remount,rw` on the ro view: err=%v output=%q", err, out)
	out, err = c.Exec(ctx, 0, 0, ctrSh("echo x > /home/work/ro/after")...)
	t.Logf("write after the remount attempt: err=%v output=%q", err, out)
	if _, serr := os.Stat(filepath.Join(src, "after")); serr == nil {
		t.Logf("the remount made the bind writable: only the daemon's EROFS protects ro views from privileged containers")
	}
	mi, err := mountd.ReadMountInfo(0)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mi {
		if m.Point == hp && !m.ReadOnly() {
			t.Fatalf("the host's copy of the view became writable: %+v", m)
		}
	}
	if err := os.WriteFile(filepath.Join(hp, "host"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Fatalf("host write through the ro view: %v; want EROFS", err)
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := p.Unpublish("sess3"); err != nil {
		t.Fatal(err)
	}
}
