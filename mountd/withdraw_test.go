package mountd

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestMountdWithdraw: withdrawing one key takes its view out of the
// "container" that bound the placeholder (which then shows the empty
// placeholder), leaves no mount at the key on the host, removes the key
// directory, and leaves the session's other keys alone.
func TestMountdWithdraw(t *testing.T) {
	p := newTestPublisher(t)
	gone, kept := t.TempDir(), t.TempDir()
	if err := writeFile(filepath.Join(gone, "marker"), "gone"); err != nil {
		t.Fatal(err)
	}
	if err := writeFile(filepath.Join(kept, "marker"), "kept"); err != nil {
		t.Fatal(err)
	}
	hpGone, err := p.Reserve("s1", "gone")
	if err != nil {
		t.Fatal(err)
	}
	ctr := t.TempDir()
	dGone := filepath.Join(ctr, "home/work/gone")
	bindLikeRuntime(t, hpGone, dGone, false)
	if _, err := p.Publish("s1", "gone", gone, false); err != nil {
		t.Fatal(err)
	}
	hpKept, err := p.Publish("s1", "kept", kept, true)
	if err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, filepath.Join(dGone, "marker")); got != "gone" {
		t.Fatalf("view in the bind before Withdraw: %q", got)
	}

	if err := p.Withdraw("s1", "gone"); err != nil {
		t.Fatal(err)
	}
	if left := mountsUnder(t, hpGone); len(left) != 0 {
		t.Errorf("mounts left at the withdrawn key: %+v", left)
	}
	if _, err := os.Lstat(hpGone); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the key directory is still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dGone, "marker")); !os.IsNotExist(err) {
		t.Errorf("the withdrawn view is still in the bind: %v", err)
	}
	if top := topAt(t, dGone); top == nil || !isPlaceholder(top) {
		t.Errorf("after Withdraw the bind shows %+v; want the empty placeholder", top)
	}
	if got := mustRead(t, filepath.Join(hpKept, "marker")); got != "kept" {
		t.Errorf("the other key: %q", got)
	}
	// Again, and an unknown key: nothing to do, no error.
	if err := p.Withdraw("s1", "gone"); err != nil {
		t.Errorf("second Withdraw: %v", err)
	}
	if err := p.Withdraw("nosuch", "key"); err != nil {
		t.Errorf("Withdraw of an unknown session: %v", err)
	}
	if err := p.Withdraw("s1", "../x"); !errors.Is(err, ErrInvalid) {
		t.Errorf("Withdraw of a bad key: %v", err)
	}
	if err := p.Unpublish("s1"); err != nil {
		t.Fatal(err)
	}
}
