package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/fs"
	"github.com/vfolder/vfolder/mountd"
)

// entry is what prepareMountPoint looks at in a mountinfo line.
type entry struct{ point, fstype, source string }

func entryOf(m mountd.MountInfo) entry { return entry{m.Point, m.FSType, m.Source} }

func TestParseMountInfo(t *testing.T) {
	text := `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
67 27 0:42 / /tmp/a\040b/mnt rw,nosuid,nodev,relatime - fuse.vfolder vfolder rw,user_id=0,group_id=0,default_permissions,allow_other
68 27 0:43 / /run/x rw shared:5 master:2 - fuse sshfs#host rw
69 27 0:44 / /odd rw - tmpfs
garbage
70 27 0:45 / /no/sep rw shared:1 tmpfs tmpfs rw
`
	got := parseMountInfo(strings.NewReader(text))
	want := []entry{
		{"/", "ext4", "/dev/sda1"},
		{"/tmp/a b/mnt", "fuse.vfolder", "vfolder"},
		{"/run/x", "fuse", "sshfs#host"},
	}
	if len(got) != len(want) {
		t.Fatalf("parsed %+v; want %+v", got, want)
	}
	for i := range want {
		if entryOf(got[i]) != want[i] {
			t.Errorf("entry %d = %+v; want %+v", i, got[i], want[i])
		}
	}
	if !isVfolderFUSE(got[1]) || isVfolderFUSE(got[2]) || isVfolderFUSE(got[0]) {
		t.Errorf("isVfolderFUSE misjudges %+v", got)
	}
	if !isVfolderFUSE(mountd.MountInfo{Point: "/m", FSType: "fuse", Source: "vfolder"}) {
		t.Errorf("a plain fuse mount named vfolder is ours too")
	}
	for in, out := range map[string]string{`a\040b`: "a b", `x\134y`: `x\y`, `tail\04`: `tail\04`, `\777z`: `\777z`, "plain": "plain"} {
		ms := parseMountInfo(strings.NewReader("1 2 0:1 / " + in + " rw - ext4 x rw\n"))
		if len(ms) != 1 || ms[0].Point != out {
			t.Errorf("mount point %q parsed as %+v; want %q", in, ms, out)
		}
	}
}

// escapeMount escapes like the kernel does in mountinfo (and also every
// other byte strings.Fields would split on).
func escapeMount(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r == '\\' || unicode.IsSpace(r) {
			for _, c := range []byte(string(r)) {
				fmt.Fprintf(&b, "\\%03o", c)
			}
			continue
		}
		b.WriteRune(r)
	}
	// Invalid UTF-8 went through WriteRune as U+FFFD above; keep the
	// original bytes instead.
	if !utf8.ValidString(s) {
		b.Reset()
		for i := 0; i < len(s); i++ {
			c := s[i]
			if c == '\\' || c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r' || c >= 0x80 {
				fmt.Fprintf(&b, "\\%03o", c)
				continue
			}
			b.WriteByte(c)
		}
	}
	return b.String()
}

func FuzzParseMountInfoLine(f *testing.F) {
	f.Add("/tmp/a b/mnt", "fuse.vfolder", "vfolder")
	f.Add("/", "-", "x\\y")
	f.Add("/odd\u00a0name", "fuse", "\t")
	f.Fuzz(func(t *testing.T, point, fstype, source string) {
		if point == "" || fstype == "" || source == "" {
			return
		}
		line := "36 35 0:42 / " + escapeMount(point) + " rw,relatime shared:1 - " + escapeMount(fstype) + " " + escapeMount(source) + " rw"
		ms := parseMountInfo(strings.NewReader(line))
		if len(ms) != 1 {
			t.Fatalf("%q not parsed", line)
		}
		if got := entryOf(ms[0]); got != (entry{point, fstype, source}) {
			t.Errorf("parsed %+v from %q; want %q %q %q", got, line, point, fstype, source)
		}
	})
}

func needFUSE(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount FUSE")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("needs /dev/fuse: %v", err)
	}
}

// mountsAt lists the mounts at exactly p.
func mountsAt(t *testing.T, p string) []mountd.MountInfo {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []mountd.MountInfo
	for _, m := range parseMountInfo(f) {
		if m.Point == p {
			out = append(out, m)
		}
	}
	return out
}

// noMountsLeft fails the test (and detaches) if anything is mounted at or
// below dir.
func noMountsLeft(t *testing.T, dir string) {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, m := range parseMountInfo(f) {
		if m.Point == dir || strings.HasPrefix(m.Point, dir+"/") {
			t.Errorf("mount left at %s (%s %s)", m.Point, m.FSType, m.Source)
			unix.Unmount(m.Point, unix.MNT_DETACH)
		}
	}
}

// fuseMountPoint skips the test without FUSE and returns a mount point in
// a temp dir below which nothing may stay mounted at the end.
func fuseMountPoint(t *testing.T) string {
	t.Helper()
	needFUSE(t)
	dir := t.TempDir()
	t.Cleanup(func() { noMountsLeft(t, dir) })
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	return mnt
}

// mountTestFS mounts an empty FUSE namespace of package fs at mnt.
func mountTestFS(mnt string) (*fs.FS, error) {
	return fs.Mount(fs.Options{MountPoint: mnt, StorageUID: 1100, StorageGID: 1100, Logger: zerolog.Nop()})
}

func TestPrepareMountPointCreates(t *testing.T) {
	dir := t.TempDir()
	mnt := filepath.Join(dir, "run", "vfolder", "mnt")
	if err := prepareMountPoint(mnt, zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(mnt); err != nil || !st.IsDir() || st.Mode().Perm() != 0o700 {
		t.Errorf("mount point %v, %v; want a 0700 directory", st.Mode(), err)
	}
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := prepareMountPoint(file, zerolog.Nop()); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("mount point on a file: %v", err)
	}
	if err := prepareMountPoint("rel/mnt", zerolog.Nop()); err == nil {
		t.Errorf("relative mount point accepted")
	}
}

// TestPrepareMountPointDetachesVfolderMount: a vfolder FUSE mount already
// at the mount point (here a live one of this process) is detached; other
// mounts are left alone.
func TestPrepareMountPointDetachesVfolderMount(t *testing.T) {
	mnt := fuseMountPoint(t)
	old, err := mountTestFS(mnt)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if why := staleMount(mnt); !strings.Contains(why, "fuse.vfolder") {
		t.Errorf("staleMount = %q; want the vfolder mount named", why)
	}
	if err := prepareMountPoint(mnt, zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	if left := mountsAt(t, mnt); len(left) != 0 {
		t.Errorf("still mounted: %+v", left)
	}
	if err := old.Close(); err != nil {
		t.Errorf("closing the detached file system: %v", err)
	}

	// Not ours: a tmpfs stays.
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(mnt, unix.MNT_DETACH)
	if err := prepareMountPoint(mnt, zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	if left := mountsAt(t, mnt); len(left) != 1 || left[0].FSType != "tmpfs" {
		t.Errorf("mounts at %s: %+v; want the tmpfs untouched", mnt, left)
	}
	if err := unix.Unmount(mnt, 0); err != nil {
		t.Fatal(err)
	}
}

// helperEnv makes the test binary mount a file system and wait (see
// TestMain): a process that can be killed like a crashing daemon.
const helperEnv = "VFOLDERD_TEST_MOUNT_HELPER"

func mountHelper(mnt string) {
	f, err := mountTestFS(mnt)
	if err != nil {
		os.Stdout.WriteString("error " + err.Error() + "\n")
		os.Exit(1)
	}
	_ = f
	os.Stdout.WriteString("ready\n")
	select {}
}

// TestPrepareMountPointAfterCrash: the mount of a process killed with
// SIGKILL answers ENOTCONN and is replaced.
func TestPrepareMountPointAfterCrash(t *testing.T) {
	mnt := fuseMountPoint(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+mnt)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	if line != "ready\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("helper said %q", line)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	// The kernel ends the connection once the dead process's descriptors
	// are closed.
	var st unix.Stat_t
	deadline := time.Now().Add(10 * time.Second)
	for err = unix.Stat(mnt, &st); !errors.Is(err, unix.ENOTCONN) && time.Now().Before(deadline); err = unix.Stat(mnt, &st) {
		time.Sleep(20 * time.Millisecond)
	}
	if !errors.Is(err, unix.ENOTCONN) {
		t.Fatalf("stat of the dead mount: %v; want ENOTCONN", err)
	}
	if why := staleMount(mnt); !strings.Contains(why, "ENOTCONN") {
		t.Errorf("staleMount = %q", why)
	}
	if err := prepareMountPoint(mnt, zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	if left := mountsAt(t, mnt); len(left) != 0 {
		t.Errorf("still mounted: %+v", left)
	}
	// A fresh mount works there.
	f, err := mountTestFS(mnt)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.ReadDir(mnt); err != nil {
		t.Errorf("readdir of the fresh mount: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Error(err)
	}
}
