//go:build linux

package mountd

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// TestMountdSelfBindsParse: only binds of the directory they cover count,
// from the bottom of the stack at the path.
func TestMountdSelfBindsParse(t *testing.T) {
	base := []string{
		"20 1 8:1 / / rw - ext4 /dev/sda1 rw",
		"21 20 0:22 / /run rw shared:5 - tmpfs tmpfs rw",
	}
	for _, tc := range []struct {
		name  string
		lines []string
		dir   string
		want  int
	}{
		{"nothing mounted", nil, "/run/vfolder/sessions", 0},
		{"self-bind on tmpfs", []string{"30 21 0:22 /vfolder/sessions /run/vfolder/sessions rw - tmpfs tmpfs rw"}, "/run/vfolder/sessions", 1},
		{"self-bind on the root fs", []string{"30 20 8:1 /srv/sessions /srv/sessions rw - ext4 /dev/sda1 rw"}, "/srv/sessions", 1},
		{"two stacked", []string{
			"30 21 0:22 /vfolder/sessions /run/vfolder/sessions rw - tmpfs tmpfs rw",
			"31 30 0:22 /vfolder/sessions /run/vfolder/sessions rw - tmpfs tmpfs rw",
		}, "/run/vfolder/sessions", 2},
		{"an operator's tmpfs", []string{"30 21 0:40 / /run/vfolder/sessions rw - tmpfs sessions rw"}, "/run/vfolder/sessions", 0},
		{"a bind of another directory", []string{"30 21 0:22 /elsewhere /run/vfolder/sessions rw - tmpfs tmpfs rw"}, "/run/vfolder/sessions", 0},
		{"self-bind under an operator's tmpfs", []string{
			"30 21 0:40 / /run/vfolder/sessions rw - tmpfs sessions rw",
			"31 30 0:40 / /run/vfolder/sessions rw - tmpfs sessions rw",
		}, "/run/vfolder/sessions", 0},
	} {
		var mi []MountInfo
		for _, l := range append(append([]string{}, base...), tc.lines...) {
			m, err := ParseMountInfoLine(l)
			if err != nil {
				t.Fatal(err)
			}
			mi = append(mi, m)
		}
		if got := selfBinds(mi, tc.dir); got != tc.want {
			t.Errorf("%s: selfBinds = %d, want %d", tc.name, got, tc.want)
		}
	}
}

// TestMountdCloseAfterCrash: the self-bind a Publisher that was never
// closed left behind (its daemon was killed) is released by the Close of
// the next Publisher on that root; an operator's own mount there is not.
func TestMountdCloseAfterCrash(t *testing.T) {
	requireRoot(t)
	root := filepath.Join(t.TempDir(), "sessions")
	t.Cleanup(func() {
		for _, m := range mountsUnder(t, root) {
			unix.Unmount(m.Point, unix.MNT_DETACH)
		}
	})
	p1, err := NewPublisher(root, zerolog.Nop())
	if err != nil {
		t.Skipf("kernel: %v", err)
	}
	if _, err := p1.Publish("s1", "data", t.TempDir(), false); err != nil {
		t.Fatal(err)
	}
	if err := p1.Unpublish("s1"); err != nil {
		t.Fatal(err)
	}
	// p1 is dropped without Close, as a killed daemon drops it.
	p2, err := NewPublisher(root, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if err := p2.Close(); err != nil {
		t.Fatal(err)
	}
	if left := mountsUnder(t, root); len(left) > 0 {
		t.Errorf("mounts left at %s after the next Publisher's Close: %+v", root, left)
	}

	// An operator's tmpfs at the root stays.
	if err := unix.Mount("sessions", root, "tmpfs", 0, "size=64k"); err != nil {
		t.Fatal(err)
	}
	p3, err := NewPublisher(root, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if err := p3.Close(); err != nil {
		t.Fatal(err)
	}
	left := mountsUnder(t, root)
	if len(left) != 1 || left[0].FSType != "tmpfs" {
		t.Errorf("after Close on an operator's tmpfs: %+v; want the tmpfs alone", left)
	}
}

// TestMountdRootOnly: the root, the session directories and the key
// directories are root's and 0700, also when an earlier version made them
// more open.
func TestMountdRootOnly(t *testing.T) {
	requireRoot(t)
	root := filepath.Join(t.TempDir(), "sessions")
	// What an earlier version left: 0711 directories.
	if err := os.MkdirAll(filepath.Join(root, "old"), 0o711); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{root, filepath.Join(root, "old")} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	p, err := NewPublisher(root, zerolog.Nop())
	if err != nil {
		t.Skipf("kernel: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	for _, sid := range []string{"old", "new"} {
		if _, err := p.Publish(sid, "data", t.TempDir(), false); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Reserve(sid, "later"); err != nil {
			t.Fatal(err)
		}
	}
	check := func(p string) {
		t.Helper()
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			t.Fatal(err)
		}
		if st.Mode&0o7777 != 0o700 || st.Uid != 0 || st.Gid != 0 {
			t.Errorf("%s: mode %04o owner %d:%d; want 0700 root", p, st.Mode&0o7777, st.Uid, st.Gid)
		}
	}
	check(root)
	for _, sid := range []string{"old", "new"} {
		check(filepath.Join(root, sid))
	}
	// Key directories, seen below the mounts on them (a bind of the
	// session directory has no submounts).
	for _, sid := range []string{"old", "new"} {
		under := filepath.Join(t.TempDir(), "under")
		if err := os.Mkdir(under, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount(filepath.Join(root, sid), under, "", unix.MS_BIND, ""); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"data", "later"} {
			check(filepath.Join(under, k))
		}
		if err := unix.Unmount(under, unix.MNT_DETACH); err != nil {
			t.Fatal(err)
		}
	}
	for _, sid := range []string{"old", "new"} {
		if err := p.Unpublish(sid); err != nil {
			t.Fatal(err)
		}
	}
}
