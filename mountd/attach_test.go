//go:build linux

package mountd

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// startNamespaceHolder starts `unshare --mount sleep` (a process in a
// mount namespace of its own, like a container without the rest) and
// returns its pid once it runs in that namespace. Cleanup kills it by pid.
func startNamespaceHolder(t *testing.T) int {
	t.Helper()
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("needs unshare(1) from util-linux")
	}
	cmd := exec.Command(unshare, "--mount", "--propagation", "slave", "sleep", "300")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	self, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ns, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/mnt")
		exe, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
		if err == nil && ns != self && filepath.Base(exe) == "sleep" {
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d never entered its own mount namespace", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// topIn returns the topmost mount at point in pid's namespace (0: this
// thread's).
func topIn(t *testing.T, pid int, point string) *MountInfo {
	t.Helper()
	mi, err := ReadMountInfo(pid)
	if err != nil {
		t.Fatal(err)
	}
	st := stackAt(mi, point)
	if len(st) == 0 {
		return nil
	}
	return &st[len(st)-1]
}

func TestMountdAttach(t *testing.T) {
	p := newTestPublisher(t)
	selfNS, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		t.Fatal(err)
	}
	pid := startNamespaceHolder(t)
	inside := func(p string) string { return "/proc/" + strconv.Itoa(pid) + "/root" + p }

	src, other := t.TempDir(), t.TempDir()
	if err := writeFile(filepath.Join(src, "marker"), "attached"); err != nil {
		t.Fatal(err)
	}
	hp, err := p.Publish("s1", "data", src, false)
	if err != nil {
		t.Fatal(err)
	}
	hpOther, err := p.Publish("s1", "other", other, false)
	if err != nil {
		t.Fatal(err)
	}
	base := t.TempDir() // the holder shares the host's filesystems
	target := filepath.Join(base, "a", "b", "data")
	if err := Attach(pid, hp, target, false); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, inside(target+"/marker")); got != "attached" {
		t.Fatalf("inside: %q", got)
	}
	if err := writeFile(inside(target+"/w"), "w"); err != nil {
		t.Fatalf("write inside: %v", err)
	}
	if got := mustRead(t, filepath.Join(src, "w")); got != "w" {
		t.Fatalf("write did not reach the source: %q", got)
	}
	top := topIn(t, pid, target)
	if top == nil || top.Shared() || !top.Slave() || !hasOpt(top.Options, "nosuid") || !hasOpt(top.Options, "nodev") {
		t.Fatalf("attached mount: %+v", top)
	}
	// Nothing appeared in this namespace.
	if left := mountsUnder(t, base); len(left) > 0 {
		t.Fatalf("attach leaked into the host namespace: %+v", left)
	}
	// Again: a no-op. Another view at the same target: a conflict.
	if err := Attach(pid, hp, target, false); err != nil {
		t.Fatalf("repeat Attach: %v", err)
	}
	if n := len(stackAtPid(t, pid, target)); n != 1 {
		t.Fatalf("%d mounts at the target after a repeated Attach", n)
	}
	if err := Attach(pid, hpOther, target, false); !errors.Is(err, ErrConflict) {
		t.Fatalf("other view on the same target: %v; want ErrConflict", err)
	}

	// Read-only attach of a rw view.
	roTarget := filepath.Join(base, "ro")
	if err := Attach(pid, hp, roTarget, true); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, inside(roTarget+"/marker")); got != "attached" {
		t.Fatalf("inside ro: %q", got)
	}
	if err := writeFile(inside(roTarget+"/x"), "x"); !errors.Is(err, unix.EROFS) {
		t.Fatalf("write into ro attach: %v; want EROFS", err)
	}

	// A symlink on the way is refused.
	if err := os.Symlink(base, filepath.Join(base, "link")); err != nil {
		t.Fatal(err)
	}
	if err := Attach(pid, hp, filepath.Join(base, "link", "x"), false); !errors.Is(err, unix.ELOOP) {
		t.Fatalf("attach through a symlink: %v; want ELOOP", err)
	}
	for _, bad := range []string{"", "rel", "/", "/a/../b", "/a/"} {
		if err := Attach(pid, hp, bad, false); !errors.Is(err, ErrInvalid) {
			t.Errorf("Attach(target %q) = %v; want ErrInvalid", bad, err)
		}
	}
	if err := Attach(0, hp, target, false); !errors.Is(err, ErrInvalid) {
		t.Errorf("Attach(pid 0) = %v", err)
	}

	for _, tg := range []string{target, roTarget} {
		if err := Detach(pid, tg); err != nil {
			t.Fatal(err)
		}
		if top := topIn(t, pid, tg); top != nil {
			t.Fatalf("still mounted at %s after Detach: %+v", tg, top)
		}
	}
	if _, err := os.Stat(inside(target + "/marker")); !os.IsNotExist(err) {
		t.Fatalf("marker visible after Detach: %v", err)
	}
	if err := Detach(pid, target); !errors.Is(err, ErrNotMounted) {
		t.Fatalf("second Detach: %v; want ErrNotMounted", err)
	}
	if err := Detach(pid, filepath.Join(base, "missing", "x")); !errors.Is(err, ErrNotMounted) {
		t.Fatalf("Detach of a missing path: %v; want ErrNotMounted", err)
	}

	// The threads that entered the other namespace end with their
	// goroutines, and the main thread never goes there.
	for i := 0; i < 20; i++ {
		if err := Attach(pid, hp, target, false); err != nil {
			t.Fatal(err)
		}
		if err := Detach(pid, target); err != nil {
			t.Fatal(err)
		}
	}
	if ns, err := os.Readlink("/proc/self/ns/mnt"); err != nil || ns != selfNS {
		t.Fatalf("main thread's mount namespace is %q (%v), was %q", ns, err, selfNS)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		stray := threadsOutside(t, selfNS)
		if len(stray) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("threads still in another mount namespace: %v", stray)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// threadsOutside lists this process's threads whose mount namespace is
// not ns.
func threadsOutside(t *testing.T, ns string) []string {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, task := range tasks {
		got, err := os.Readlink("/proc/self/task/" + task.Name() + "/ns/mnt")
		if err == nil && got != ns {
			out = append(out, task.Name()+":"+got)
		}
	}
	return out
}

func stackAtPid(t *testing.T, pid int, point string) []MountInfo {
	t.Helper()
	mi, err := ReadMountInfo(pid)
	if err != nil {
		t.Fatal(err)
	}
	return stackAt(mi, point)
}
