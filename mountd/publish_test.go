//go:build linux

package mountd

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (mounts)")
	}
}

// mountsUnder lists the mounts at or below dir in this namespace.
func mountsUnder(t *testing.T, dir string) []MountInfo {
	t.Helper()
	mi, err := ReadMountInfo(0)
	if err != nil {
		t.Fatal(err)
	}
	var out []MountInfo
	for _, m := range mi {
		if under(m.Point, dir) {
			out = append(out, m)
		}
	}
	return out
}

// newTestPublisher makes a Publisher rooted in a temp dir; its cleanup
// closes it and fails the test if any mount is left at or below the root.
func newTestPublisher(t *testing.T) *Publisher {
	t.Helper()
	requireRoot(t)
	root := filepath.Join(t.TempDir(), "sessions")
	p, err := NewPublisher(root, zerolog.Nop())
	if errors.Is(err, ErrUnsupported) {
		t.Skipf("kernel: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if left := mountsUnder(t, p.Root()); len(left) > 0 {
			for _, m := range left {
				unix.Unmount(m.Point, unix.MNT_DETACH)
			}
			t.Errorf("mounts left under %s: %+v", p.Root(), left)
		}
	})
	return p
}

// bindLikeRuntime does what a container runtime does for an OCI mount
// {source, "rbind", "rslave"}: a recursive bind, then recursive slave.
func bindLikeRuntime(t *testing.T, source, dest string, ro bool) {
	t.Helper()
	if err := os.MkdirAll(dest, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(source, dest, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dest, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dest, err)
		}
	})
	if ro {
		if err := unix.Mount("", dest, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Mount("", dest, "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		t.Fatal(err)
	}
}

func writeFile(path, data string) error { return os.WriteFile(path, []byte(data), 0o644) }

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// topAt returns the topmost mount at point in this namespace.
func topAt(t *testing.T, point string) *MountInfo {
	t.Helper()
	return topIn(t, 0, point)
}

func TestMountdPublishRW(t *testing.T) {
	p := newTestPublisher(t)
	src := t.TempDir()
	if err := writeFile(filepath.Join(src, "hello"), "world"); err != nil {
		t.Fatal(err)
	}
	hp, err := p.Publish("s1", "data", src, false)
	if err != nil {
		t.Fatal(err)
	}
	if hp != filepath.Join(p.Root(), "s1", "data") {
		t.Fatalf("host path %s", hp)
	}
	if got := mustRead(t, filepath.Join(hp, "hello")); got != "world" {
		t.Fatalf("read through view: %q", got)
	}
	if err := writeFile(filepath.Join(hp, "new"), "x"); err != nil {
		t.Fatalf("write through rw view: %v", err)
	}
	if got := mustRead(t, filepath.Join(src, "new")); got != "x" {
		t.Fatalf("write did not reach the source: %q", got)
	}
	top := topAt(t, hp)
	if top == nil || top.ReadOnly() || !hasOpt(top.Options, "nosuid") || !hasOpt(top.Options, "nodev") || !top.Shared() {
		t.Fatalf("view mount: %+v", top)
	}
	sess := topAt(t, p.SessionDir("s1"))
	if sess == nil || !sess.Shared() {
		t.Fatalf("session mount not shared: %+v", sess)
	}
	root := topAt(t, p.Root())
	if root == nil || root.Shared() || root.Slave() {
		t.Fatalf("root mount not private: %+v", root)
	}

	// Idempotent: same source and mode, no second mount.
	hp2, err := p.Publish("s1", "data", src, false)
	if err != nil || hp2 != hp {
		t.Fatalf("second Publish = %q, %v", hp2, err)
	}
	mi, _ := ReadMountInfo(0)
	if n := len(stackAt(mi, hp)); n != 1 {
		t.Fatalf("%d mounts at %s after a repeated Publish", n, hp)
	}
	// A different source or mode for the key is a conflict.
	if _, err := p.Publish("s1", "data", t.TempDir(), false); !errors.Is(err, ErrConflict) {
		t.Fatalf("other source: %v; want ErrConflict", err)
	}
	if _, err := p.Publish("s1", "data", src, true); !errors.Is(err, ErrConflict) {
		t.Fatalf("other mode: %v; want ErrConflict", err)
	}
	for _, bad := range [][3]string{{"", "k", src}, {".x", "k", src}, {"s1", "..", src}, {"s1", "a/b", src}, {"s1", "k", "rel"}} {
		if _, err := p.Publish(bad[0], bad[1], bad[2], false); !errors.Is(err, ErrInvalid) {
			t.Errorf("Publish(%q, %q, %q) = %v; want ErrInvalid", bad[0], bad[1], bad[2], err)
		}
	}
	if _, err := p.Publish("s1", "missing", filepath.Join(src, "nope"), false); !errors.Is(err, unix.ENOENT) {
		t.Fatalf("missing source: %v", err)
	}

	if err := p.Unpublish("s1"); err != nil {
		t.Fatal(err)
	}
	if left := mountsUnder(t, p.SessionDir("s1")); len(left) > 0 {
		t.Fatalf("left: %+v", left)
	}
	if _, err := os.Stat(p.SessionDir("s1")); !os.IsNotExist(err) {
		t.Fatalf("session dir still there: %v", err)
	}
	if got := mustRead(t, filepath.Join(src, "hello")); got != "world" {
		t.Fatalf("source damaged: %q", got)
	}
	if err := p.Unpublish("s1"); err != nil {
		t.Fatalf("second Unpublish: %v", err)
	}
	if err := p.Unpublish("never"); err != nil {
		t.Fatalf("Unpublish of an unknown session: %v", err)
	}
}

func TestMountdPublishRO(t *testing.T) {
	p := newTestPublisher(t)
	src := t.TempDir()
	if err := writeFile(filepath.Join(src, "f"), "data"); err != nil {
		t.Fatal(err)
	}
	hp, err := p.Publish("s1", "ro", src, true)
	if err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, filepath.Join(hp, "f")); got != "data" {
		t.Fatalf("read: %q", got)
	}
	if err := writeFile(filepath.Join(hp, "new"), "x"); !errors.Is(err, unix.EROFS) {
		t.Fatalf("write to ro view: %v; want EROFS", err)
	}
	if err := os.Remove(filepath.Join(hp, "f")); !errors.Is(err, unix.EROFS) {
		t.Fatalf("unlink in ro view: %v; want EROFS", err)
	}
	if top := topAt(t, hp); top == nil || !top.ReadOnly() {
		t.Fatalf("view mount not ro: %+v", top)
	}
	if _, err := p.Publish("s1", "ro", src, true); err != nil {
		t.Fatalf("repeat: %v", err)
	}
	// The source itself is still writable.
	if err := writeFile(filepath.Join(src, "g"), "y"); err != nil {
		t.Fatal(err)
	}
}

// TestMountdPropagation plays the container runtime in this namespace: it
// binds reserved keys "rbind,rslave" elsewhere, then publishes views and
// checks they appear in those binds (and go away with Unpublish), with
// their modes, and that nothing mounted in a bind propagates back.
func TestMountdPropagation(t *testing.T) {
	p := newTestPublisher(t)
	srcRO, srcRW := t.TempDir(), t.TempDir()
	if err := writeFile(filepath.Join(srcRO, "marker"), "ro-view"); err != nil {
		t.Fatal(err)
	}
	if err := writeFile(filepath.Join(srcRW, "marker"), "rw-view"); err != nil {
		t.Fatal(err)
	}
	hpRO, err := p.Reserve("s1", "late-ro")
	if err != nil {
		t.Fatal(err)
	}
	hpRW, err := p.Reserve("s1", "late-rw")
	if err != nil {
		t.Fatal(err)
	}
	if top := topAt(t, hpRO); top == nil || !isPlaceholder(top) || !top.ReadOnly() || !top.Shared() {
		t.Fatalf("placeholder: %+v", top)
	}
	// The placeholder cannot be written to.
	if err := writeFile(filepath.Join(hpRW, "x"), "x"); !errors.Is(err, unix.EROFS) {
		t.Fatalf("write into placeholder: %v; want EROFS", err)
	}
	if again, err := p.Reserve("s1", "late-ro"); err != nil || again != hpRO {
		t.Fatalf("repeat Reserve = %q, %v", again, err)
	}
	mi, _ := ReadMountInfo(0)
	if n := len(stackAt(mi, hpRO)); n != 1 {
		t.Fatalf("%d mounts after a repeated Reserve", n)
	}

	ctr := t.TempDir() // stands for a container's rootfs
	dRO, dRW := filepath.Join(ctr, "home/work/ro"), filepath.Join(ctr, "home/work/rw")
	bindLikeRuntime(t, hpRO, dRO, true)
	bindLikeRuntime(t, hpRW, dRW, false)
	if _, err := os.Stat(filepath.Join(dRO, "marker")); !os.IsNotExist(err) {
		t.Fatalf("marker visible before publish: %v", err)
	}

	if _, err := p.Publish("s1", "late-ro", srcRO, true); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Publish("s1", "late-rw", srcRW, false); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, filepath.Join(dRO, "marker")); got != "ro-view" {
		t.Fatalf("late ro view in the bind: %q", got)
	}
	if got := mustRead(t, filepath.Join(dRW, "marker")); got != "rw-view" {
		t.Fatalf("late rw view in the bind: %q", got)
	}
	if err := writeFile(filepath.Join(dRO, "x"), "x"); !errors.Is(err, unix.EROFS) {
		t.Fatalf("write into the propagated ro view: %v; want EROFS", err)
	}
	if err := writeFile(filepath.Join(dRW, "x"), "x"); err != nil {
		t.Fatalf("write into the propagated rw view: %v", err)
	}
	if got := mustRead(t, filepath.Join(srcRW, "x")); got != "x" {
		t.Fatalf("write did not reach the source: %q", got)
	}
	if top := topAt(t, dRO); top == nil || !top.ReadOnly() || !top.Slave() || top.Shared() {
		t.Fatalf("propagated ro copy: %+v", top)
	}

	// A mount made inside the "container" does not propagate back.
	sub := filepath.Join(dRW, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", sub, "tmpfs", 0, "size=64k"); err != nil {
		t.Fatal(err)
	}
	if n := len(mountsUnder(t, hpRW)); n != 2 { // placeholder + view
		t.Errorf("a mount in the slave reached the host view: %d mounts under %s", n, hpRW)
	}
	if err := unix.Unmount(sub, unix.MNT_DETACH); err != nil {
		t.Fatal(err)
	}

	if err := p.Unpublish("s1"); err != nil {
		t.Fatal(err)
	}
	// The views left the "container"; the placeholders remain, empty.
	if _, err := os.Stat(filepath.Join(dRO, "marker")); !os.IsNotExist(err) {
		t.Fatalf("ro view still in the bind after Unpublish: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dRW, "marker")); !os.IsNotExist(err) {
		t.Fatalf("rw view still in the bind after Unpublish: %v", err)
	}
	if top := topAt(t, dRW); top == nil || !isPlaceholder(top) {
		t.Fatalf("after Unpublish the bind shows %+v", top)
	}
}

func TestMountdUnpublishReports(t *testing.T) {
	p := newTestPublisher(t)
	src := t.TempDir()
	if _, err := p.Publish("s1", "data", src, false); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Reserve("s1", "later"); err != nil {
		t.Fatal(err)
	}
	// Something that is not ours in the session directory: Unpublish does
	// everything else and reports it.
	junk := filepath.Join(p.SessionDir("s1"), "junk")
	if err := writeFile(junk, "x"); err != nil {
		t.Fatal(err)
	}
	err := p.Unpublish("s1")
	if err == nil || !strings.Contains(err.Error(), "junk") {
		t.Fatalf("Unpublish = %v; want a report naming junk", err)
	}
	if left := mountsUnder(t, p.SessionDir("s1")); len(left) > 0 {
		t.Fatalf("mounts left: %+v", left)
	}
	for _, k := range []string{"data", "later"} {
		if _, err := os.Lstat(filepath.Join(p.SessionDir("s1"), k)); !os.IsNotExist(err) {
			t.Errorf("key dir %s still there: %v", k, err)
		}
	}
	if err := os.Remove(junk); err != nil {
		t.Fatal(err)
	}
	if err := p.Unpublish("s1"); err != nil {
		t.Fatal(err)
	}
}

// TestMountdRestart: a second Publisher on the same root (a restarted
// daemon) recognises what the first one published.
func TestMountdRestart(t *testing.T) {
	p1 := newTestPublisher(t)
	src := t.TempDir()
	hp, err := p1.Publish("s1", "data", src, true)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := NewPublisher(p1.Root(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if got, err := p2.Publish("s1", "data", src, true); err != nil || got != hp {
		t.Fatalf("Publish after restart = %q, %v", got, err)
	}
	mi, _ := ReadMountInfo(0)
	if n := len(stackAt(mi, hp)); n != 1 {
		t.Fatalf("%d mounts at %s", n, hp)
	}
	if n := len(stackAt(mi, p1.Root())); n != 1 {
		t.Fatalf("%d mounts at the root", n)
	}
	sids, err := p2.Sessions()
	if err != nil || len(sids) != 1 || sids[0] != "s1" {
		t.Fatalf("Sessions = %v, %v", sids, err)
	}
	if err := p2.Unpublish("s1"); err != nil {
		t.Fatal(err)
	}
}

func TestMountdConcurrentPublish(t *testing.T) {
	p := newTestPublisher(t)
	src := t.TempDir()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for s := 0; s < 4; s++ {
		for k := 0; k < 4; k++ {
			for rep := 0; rep < 2; rep++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					sid, key := fmt.Sprintf("s%d", s), fmt.Sprintf("k%d", k)
					if _, err := p.Publish(sid, key, src, k%2 == 0); err != nil {
						errs <- err
					}
				}()
			}
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	mi, _ := ReadMountInfo(0)
	for s := 0; s < 4; s++ {
		for k := 0; k < 4; k++ {
			if n := len(stackAt(mi, p.HostPath(fmt.Sprintf("s%d", s), fmt.Sprintf("k%d", k)))); n != 1 {
				t.Errorf("s%d/k%d: %d mounts", s, k, n)
			}
		}
	}
}

func TestMountdOCIMount(t *testing.T) {
	m := OCIMount("/run/vfolder/sessions/s1/data", "/home/work/data", false)
	if m.Destination != "/home/work/data" || m.Type != "bind" || m.Source != "/run/vfolder/sessions/s1/data" ||
		strings.Join(m.Options, ",") != "rbind,rslave" {
		t.Fatalf("%+v", m)
	}
	if m := OCIMount("/a", "/b", true); strings.Join(m.Options, ",") != "rbind,rslave,ro" {
		t.Fatalf("%+v", m)
	}
}

// TestMountdPublishIsolatedFromSource: the view is not a peer of the
// source's mount, so mounts made later under the source (say, inside the
// FUSE mount) do not appear in published views, and the other way round.
func TestMountdPublishIsolatedFromSource(t *testing.T) {
	p := newTestPublisher(t)
	src := t.TempDir()
	if err := os.Mkdir(filepath.Join(src, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(src, src, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(src, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", src, err)
		}
	})
	if err := unix.Mount("", src, "", unix.MS_SHARED, ""); err != nil {
		t.Fatal(err)
	}
	hp, err := p.Publish("s1", "data", src, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("vfolder-test", filepath.Join(src, "sub"), "tmpfs", 0, "size=64k"); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(filepath.Join(src, "sub"), unix.MNT_DETACH)
	if n := len(mountsUnder(t, hp)); n != 1 {
		t.Fatalf("a mount under the source reached the view: %+v", mountsUnder(t, hp))
	}
	if err := p.Unpublish("s1"); err != nil {
		t.Fatal(err)
	}
}
