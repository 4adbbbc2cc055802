package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	vfs "github.com/vfolder/vfolder/fs"
	"github.com/vfolder/vfolder/meta"
)

// fsConnDir is the fusectl directory of the connection serving mnt. It
// mounts a fusectl instance below the test's temp dir (cleanup unmounts
// it), so the check works where none is mounted at /sys/fs/fuse.
func fsConnDir(t *testing.T, e *fsEnv) string {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(e.mnt, &st); err != nil {
		t.Fatal(err)
	}
	ctl := filepath.Join(e.dir, "fusectl")
	if err := os.Mkdir(ctl, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("fusectl", ctl, "fusectl", 0, ""); err != nil {
		t.Fatalf("mount fusectl: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(ctl, unix.MNT_DETACH) })
	p := filepath.Join(ctl, fmt.Sprint(unix.Minor(st.Dev)))
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("connection dir: %v", err)
	}
	return p
}

// fsWaitGone waits a few seconds for a connection directory to disappear.
// A copy of the mount in another process's mount namespace (a container or
// a concurrent test that unshared its namespace) legitimately keeps the
// connection listed; then the check reports success after logging it.
func fsWaitGone(t *testing.T, conn, mnt string) bool {
	t.Helper()
	for i := 0; i < 100; i++ {
		if _, err := os.Stat(conn); errors.Is(err, os.ErrNotExist) {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	if pids := fsMountHolders(mnt); len(pids) > 0 {
		t.Logf("connection %s kept listed by copies of the mount in processes %v", conn, pids)
		return true
	}
	return false
}

// fsMountHolders lists other processes whose mount namespace has mnt.
func fsMountHolders(mnt string) []string {
	self := fmt.Sprint(os.Getpid())
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, ent := range ents {
		pid := ent.Name()
		if pid == self || pid[0] < '0' || pid[0] > '9' {
			continue
		}
		b, err := os.ReadFile("/proc/" + pid + "/mountinfo")
		if err == nil && strings.Contains(string(b), " "+mnt+" ") {
			out = append(out, pid)
		}
	}
	return out
}

// TestFsCloseLive: Close on a live mount removes it and ends the
// connection; the FS refuses further changes; Close is idempotent.
func TestFsCloseLive(t *testing.T) {
	e := fsSetup(t)
	v := e.add(t, e.spec(e.folder(t), "c", meta.PermRW))
	if err := os.WriteFile(filepath.Join(v, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	conn := fsConnDir(t, e)
	if err := e.fs.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if left := mountsUnder(e.mnt); len(left) > 0 {
		t.Errorf("mounts left: %v", left)
	}
	if !fsWaitGone(t, conn, e.mnt) {
		t.Errorf("connection %s still there", conn)
	}
	if err := e.fs.AddView(e.spec(e.folder(t), "d", meta.PermRW)); !errors.Is(err, vfs.ErrClosed) {
		t.Errorf("AddView after Close: %v", err)
	}
	if err := e.fs.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestFsCloseAfterLazyUnmount: the mount was detached from outside
// (umount -l) while nothing used it.
func TestFsCloseAfterLazyUnmount(t *testing.T) {
	e := fsSetup(t)
	e.add(t, e.spec(e.folder(t), "c", meta.PermRW))
	conn := fsConnDir(t, e)
	if err := syscall.Unmount(e.mnt, syscall.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	if err := fsCloseWithin(t, e.fs, 15*time.Second); err != nil {
		t.Errorf("Close: %v", err)
	}
	if left := mountsUnder(e.mnt); len(left) > 0 {
		t.Errorf("mounts left: %v", left)
	}
	if !fsWaitGone(t, conn, e.mnt) {
		t.Errorf("connection %s still there", conn)
	}
}

// TestFsCloseAfterLazyUnmountBusy: the mount was detached from outside
// while a file stayed open, so the connection outlives the mount in this
// namespace (as copies in containers' namespaces do). Close must abort it.
func TestFsCloseAfterLazyUnmountBusy(t *testing.T) {
	e := fsSetup(t)
	v := e.add(t, e.spec(e.folder(t), "c", meta.PermRW))
	conn := fsConnDir(t, e)
	fd, err := unix.Open(filepath.Join(v, "held"), unix.O_CREAT|unix.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if fd >= 0 {
			unix.Close(fd)
		}
	}()
	if err := syscall.Unmount(e.mnt, syscall.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Pwrite(fd, []byte("still served"), 0); err != nil {
		t.Fatalf("write after umount -l: %v", err)
	}
	if err := fsCloseWithin(t, e.fs, 15*time.Second); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := unix.Pwrite(fd, []byte("x"), 0); err == nil {
		t.Errorf("write after Close succeeded: the connection was not aborted")
	}
	unix.Close(fd)
	fd = -1
	if left := mountsUnder(e.mnt); len(left) > 0 {
		t.Errorf("mounts left: %v", left)
	}
	if !fsWaitGone(t, conn, e.mnt) {
		t.Errorf("connection %s still there", conn)
	}
}

// fsCloseWithin runs Close and fails the test if it hangs.
func fsCloseWithin(t *testing.T, f *vfs.FS, d time.Duration) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f.Close() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Fatalf("Close did not return within %v", d)
		return nil
	}
}

// TestFsCloseWithNamespaceCopy: a process in another mount namespace holds
// a copy of the mount (as a container started after the mount does), so
// the plain unmount does not end the connection; Close aborts it.
func TestFsCloseWithNamespaceCopy(t *testing.T) {
	e := fsSetup(t)
	e.add(t, e.spec(e.folder(t), "c", meta.PermRW))
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("needs unshare(1)")
	}
	cmd := exec.Command(unshare, "--mount", "--propagation", "private", "sleep", "60")
	cmd.Dir = "/"
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	// Wait until the child's namespace holds the copy.
	copied := false
	for i := 0; i < 100 && !copied; i++ {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", cmd.Process.Pid))
		copied = strings.Contains(string(b), " "+e.mnt+" ")
		if !copied {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if !copied {
		t.Fatal("the child's namespace never showed the mount")
	}
	var st unix.Stat_t
	if err := unix.Stat(e.mnt, &st); err != nil {
		t.Fatal(err)
	}
	probe := func() string {
		out, _ := exec.Command("nsenter", "-t", fmt.Sprint(cmd.Process.Pid), "-m",
			"stat", "-c", "%d", e.mnt).CombinedOutput()
		return strings.TrimSpace(string(out))
	}
	fuseDev := fmt.Sprint(st.Dev)
	if got := probe(); got != fuseDev {
		t.Fatalf("the copy in the child's namespace answers %q, want device %s", got, fuseDev)
	}
	if err := fsCloseWithin(t, e.fs, 15*time.Second); err != nil {
		t.Errorf("Close: %v", err)
	}
	if left := mountsUnder(e.mnt); len(left) > 0 {
		t.Errorf("mounts left: %v", left)
	}
	// The copy no longer serves: the connection was aborted (ENOTCONN),
	// not left running for a namespace nobody unmounts.
	if got := probe(); got == fuseDev {
		t.Errorf("the copy in the child's namespace still answers after Close")
	}
}
