//go:build linux

package mountd

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// replaceSource makes a directory standing for one run's view, with a
// marker file naming the run.
func replaceSource(t *testing.T, run string) string {
	t.Helper()
	d := t.TempDir()
	if err := writeFile(filepath.Join(d, "marker"), run); err != nil {
		t.Fatal(err)
	}
	return d
}

// parkLikeReplace does what Replace does up to step 2 (a new view of src
// on top of the key, the one below made private, the new one parked) and
// stops there, as a crash would. It returns the parking path.
func parkLikeReplace(t *testing.T, p *Publisher, sid, key, src string, ro bool) string {
	t.Helper()
	hp := p.HostPath(sid, key)
	below, err := unix.OpenTree(unix.AT_FDCWD, hp, unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(below)
	tree, err := cloneView(src, ro)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(tree)
	if err := unix.MoveMount(tree, "", unix.AT_FDCWD, hp, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		t.Fatal(err)
	}
	if err := unix.MountSetattr(below, "", unix.AT_EMPTY_PATH, &unix.MountAttr{Propagation: unix.MS_PRIVATE}); err != nil {
		t.Fatal(err)
	}
	parkFd, parkPath, err := p.parkDir(sid, key)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(parkFd)
	if err := unix.MoveMount(tree, "", parkFd, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		t.Fatal(err)
	}
	return parkPath
}

// unstackLater registers a cleanup that detaches all but the bottom
// mount stacked at dest (bindLikeRuntime's cleanup takes that one).
func unstackLater(t *testing.T, dest string) {
	t.Cleanup(func() {
		for n := len(stackHere(t, dest)); n > 1; n-- {
			if err := unix.Unmount(dest, unix.MNT_DETACH); err != nil {
				t.Errorf("unmount %s: %v", dest, err)
				return
			}
		}
	})
}

func stackHere(t *testing.T, point string) []MountInfo {
	t.Helper()
	mi, err := ReadMountInfo(0)
	if err != nil {
		t.Fatal(err)
	}
	return stackAt(mi, point)
}

// TestMountdReplace: Replace leaves exactly one mount at the key, the new
// view, and the new view reaches a "container" that bound the view of an
// earlier run and one that bound the placeholder; the latter loses the
// replaced view from under the new one.
func TestMountdReplace(t *testing.T) {
	p := newTestPublisher(t)
	run1, run2, run3 := replaceSource(t, "run1"), replaceSource(t, "run2"), replaceSource(t, "run3")
	hp, err := p.Reserve("s1", "data")
	if err != nil {
		t.Fatal(err)
	}
	ctr := t.TempDir()
	viaPlaceholder := filepath.Join(ctr, "a/home/work/data") // started before publish
	bindLikeRuntime(t, hp, viaPlaceholder, false)
	unstackLater(t, viaPlaceholder)
	if _, err := p.Publish("s1", "data", run1, false); err != nil {
		t.Fatal(err)
	}
	direct := filepath.Join(ctr, "b/home/work/data") // started after publish
	bindLikeRuntime(t, hp, direct, false)
	unstackLater(t, direct)
	for _, d := range []string{viaPlaceholder, direct} {
		if got := mustRead(t, filepath.Join(d, "marker")); got != "run1" {
			t.Fatalf("%s before the replace: %q", d, got)
		}
	}
	if n := len(stackHere(t, hp)); n != 2 {
		t.Fatalf("%d mounts at the key after Publish; want placeholder and view", n)
	}

	for i, src := range []string{run2, run3} {
		want := []string{"run2", "run3"}[i]
		got, err := p.Replace("s1", "data", src, false)
		if err != nil || got != hp {
			t.Fatalf("Replace = %q, %v", got, err)
		}
		st := stackHere(t, hp)
		if len(st) != 1 || isPlaceholder(&st[0]) || !st[0].Shared() || !hasOpt(st[0].Options, "nosuid") {
			t.Fatalf("after replace %d the key holds %+v; want the new view alone", i+1, st)
		}
		if got := mustRead(t, filepath.Join(hp, "marker")); got != want {
			t.Fatalf("key after replace %d: %q", i+1, got)
		}
		for _, d := range []string{viaPlaceholder, direct} {
			if got := mustRead(t, filepath.Join(d, "marker")); got != want {
				t.Errorf("%s after replace %d: %q; want %q", d, i+1, got, want)
			}
			if err := writeFile(filepath.Join(d, "w"), want); err != nil {
				t.Errorf("write in %s after replace %d: %v", d, i+1, err)
			} else if got := mustRead(t, filepath.Join(src, "w")); got != want {
				t.Errorf("write in %s reached the new source as %q", d, got)
			}
		}
		if _, err := os.Lstat(filepath.Join(p.Root(), parkedDir)); !os.IsNotExist(err) {
			t.Errorf("parking directory left after replace %d: %v", i+1, err)
		}
		if i == 0 {
			// The copy of the placeholder lost the first view from
			// under the new one: placeholder and new view are left.
			if st := stackHere(t, viaPlaceholder); len(st) != 2 || !isPlaceholder(&st[0]) {
				t.Errorf("the placeholder's copy holds %+v; want the placeholder and the new view", st)
			}
		}
	}
	if err := p.Unpublish("s1"); err != nil {
		t.Fatal(err)
	}
}

// TestMountdReplaceParked: a view that an interrupted Replace left parked
// goes back on top of its key before the next Replace clears the key.
func TestMountdReplaceParked(t *testing.T) {
	p := newTestPublisher(t)
	run1, run2 := replaceSource(t, "run1"), replaceSource(t, "run2")
	hp, err := p.Publish("s1", "data", run1, true)
	if err != nil {
		t.Fatal(err)
	}
	ctr := filepath.Join(t.TempDir(), "home/work/data")
	bindLikeRuntime(t, hp, ctr, true)
	unstackLater(t, ctr)
	parkLikeReplace(t, p, "s1", "data", replaceSource(t, "run1b"), true)
	if got := mustRead(t, filepath.Join(ctr, "marker")); got != "run1b" {
		t.Fatalf("the container's copy shows %q; want the parked view", got)
	}
	if _, err := p.Replace("s1", "data", run2, true); err != nil {
		t.Fatal(err)
	}
	if st := stackHere(t, hp); len(st) != 1 || !st[0].ReadOnly() {
		t.Fatalf("the key holds %+v; want the new read-only view alone", st)
	}
	if got := mustRead(t, filepath.Join(ctr, "marker")); got != "run2" {
		t.Errorf("the container's copy shows %q; want run2", got)
	}
	if err := writeFile(filepath.Join(ctr, "x"), "x"); err == nil {
		t.Errorf("write into the replaced read-only view succeeded")
	}
	if _, err := os.Lstat(filepath.Join(p.Root(), parkedDir)); !os.IsNotExist(err) {
		t.Errorf("parking directory left: %v", err)
	}
	if err := p.Unpublish("s1"); err != nil {
		t.Fatal(err)
	}
}

// TestMountdUnpublishClearsParked: Unpublish detaches a parked view and
// removes the parking directories.
func TestMountdUnpublishClearsParked(t *testing.T) {
	p := newTestPublisher(t)
	hp, err := p.Publish("s1", "data", replaceSource(t, "run1"), false)
	if err != nil {
		t.Fatal(err)
	}
	parkPath := parkLikeReplace(t, p, "s1", "data", replaceSource(t, "run2"), false)
	if n := len(stackHere(t, hp)); n != 1 {
		t.Fatalf("%d mounts at the key", n)
	}
	if n := len(stackHere(t, parkPath)); n != 1 {
		t.Fatalf("%d mounts parked", n)
	}
	if err := p.Unpublish("s1"); err != nil {
		t.Fatal(err)
	}
	if left := mountsUnder(t, filepath.Join(p.Root(), parkedDir)); len(left) > 0 {
		t.Errorf("parked mounts left: %+v", left)
	}
	if _, err := os.Lstat(filepath.Join(p.Root(), parkedDir)); !os.IsNotExist(err) {
		t.Errorf("parking directory left: %v", err)
	}
}

// TestMountdPublishAfterCutReplace: a Replace cut short after it cleared
// the key (the view parked, nothing at the key) is finished by the next
// Publish of the key: the container that held the old view gets the new
// one, and the key holds it alone.
func TestMountdPublishAfterCutReplace(t *testing.T) {
	p := newTestPublisher(t)
	hp, err := p.Publish("s1", "data", replaceSource(t, "run1"), false)
	if err != nil {
		t.Fatal(err)
	}
	ctr := filepath.Join(t.TempDir(), "home/work/data")
	bindLikeRuntime(t, hp, ctr, false)
	unstackLater(t, ctr)
	parkLikeReplace(t, p, "s1", "data", replaceSource(t, "run2"), false)
	for n := len(stackHere(t, hp)); n > 0; n-- {
		if err := unix.Unmount(hp, unix.MNT_DETACH); err != nil {
			t.Fatal(err)
		}
	}
	if !p.Parked("s1", "data") {
		t.Fatal("Parked does not see the parked view")
	}
	run3 := replaceSource(t, "run3")
	if _, err := p.Publish("s1", "data", run3, false); err != nil {
		t.Fatal(err)
	}
	if st := stackHere(t, hp); len(st) != 1 {
		t.Fatalf("the key holds %d mounts; want the new view alone", len(st))
	}
	if got := mustRead(t, filepath.Join(ctr, "marker")); got != "run3" {
		t.Errorf("the container's copy shows %q; want run3", got)
	}
	if p.Parked("s1", "data") {
		t.Error("still parked after Publish")
	}
	if err := p.Unpublish("s1"); err != nil {
		t.Fatal(err)
	}
}

// TestMountdReplaceBareKey: Replace of a key with nothing mounted mounts
// the view there and touches nothing else (the session mount stays
// shared).
func TestMountdReplaceBareKey(t *testing.T) {
	p := newTestPublisher(t)
	hp, err := p.Replace("s1", "data", replaceSource(t, "run1"), false)
	if err != nil {
		t.Fatal(err)
	}
	if st := stackHere(t, hp); len(st) != 1 || !st[0].Shared() {
		t.Fatalf("the key holds %+v; want the view alone, shared", st)
	}
	if got := mustRead(t, filepath.Join(hp, "marker")); got != "run1" {
		t.Fatalf("view shows %q", got)
	}
	if sess := topAt(t, p.SessionDir("s1")); sess == nil || !sess.Shared() {
		t.Fatalf("session mount after Replace: %+v", sess)
	}
	if err := p.Unpublish("s1"); err != nil {
		t.Fatal(err)
	}
}
