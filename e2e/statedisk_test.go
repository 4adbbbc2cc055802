package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vfolder/vfolder/api"
)

// loopFS makes an ext4 file system of size bytes in a file of the test's
// temporary directory and mounts it (mount -o loop); it is unmounted and
// its loop device detached in t.Cleanup, which fails the test if either
// is left. It skips when loop devices or mkfs.ext4 are unavailable.
func loopFS(t *testing.T, size int64) string {
	t.Helper()
	RequireRoot(t)
	for _, tool := range []string{"mkfs.ext4", "mount", "umount", "losetup"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s: %v", tool, err)
		}
	}
	base := newDir(t)
	img := filepath.Join(base, "state.img")
	mnt := filepath.Join(base, "fs")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, size); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-m", "0", img).CombinedOutput(); err != nil {
		t.Skipf("mkfs.ext4: %v\n%s", err, out)
	}
	failOnMountsLeft(t, base)
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		t.Skipf("loop devices are unavailable here (mount -o loop: %v: %s)", err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-d", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount -d %s: %v\n%s", mnt, err, out)
		}
		if out, _ := exec.Command("losetup", "-j", img).Output(); len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("loop device left attached: %s", out)
			for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				if dev, _, ok := strings.Cut(l, ":"); ok {
					_ = exec.Command("losetup", "-d", dev).Run()
				}
			}
		}
	})
	return mnt
}

// fillFS writes path with zeroes until the file system is full (ENOSPC)
// and returns how many bytes it took.
func fillFS(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	var n int64
	for {
		w, err := f.Write(buf)
		n += int64(w)
		if errors.Is(err, syscall.ENOSPC) {
			break
		}
		if err != nil {
			t.Fatalf("filling %s: %v", path, err)
		}
	}
	// What is left are blocks smaller than a write: take them too.
	for _, sz := range []int{64 << 10, 4 << 10} {
		for {
			w, err := f.Write(buf[:sz])
			n += int64(w)
			if err != nil {
				break
			}
		}
	}
	_ = f.Sync()
	return n
}

// sdWriters keep writing files in a view and record every error that is
// not ENOSPC.
type sdWriters struct {
	view string
	stop chan struct{}
	wg   sync.WaitGroup

	mu         sync.Mutex
	enospc     int
	written    int
	unexpected []string
}

func startWriters(view string, n int) *sdWriters {
	w := &sdWriters{view: view, stop: make(chan struct{})}
	for i := 0; i < n; i++ {
		w.wg.Add(1)
		go w.run(i)
	}
	return w
}

func (w *sdWriters) note(err error, what string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if errors.Is(err, syscall.ENOSPC) {
		w.enospc++
		return
	}
	w.unexpected = append(w.unexpected, fmt.Sprintf("%s: %v", what, err))
}

func (w *sdWriters) run(id int) {
	defer w.wg.Done()
	chunk := bytes.Repeat([]byte{byte('a' + id)}, 64<<10)
	for n := 0; ; n++ {
		select {
		case <-w.stop:
			return
		default:
		}
		name := filepath.Join(w.view, fmt.Sprintf("w%d-%d", id, n%8))
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			w.note(err, "create "+name)
			time.Sleep(20 * time.Millisecond)
			continue
		}
		ok := true
		for i := 0; i < 4 && ok; i++ {
			if _, err := f.Write(chunk); err != nil {
				w.note(err, "write "+name)
				ok = false
			}
		}
		if err := f.Close(); err != nil {
			w.note(err, "close "+name)
		}
		if ok {
			w.mu.Lock()
			w.written++
			w.mu.Unlock()
		} else {
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func (w *sdWriters) counts() (enospc, written int, unexpected []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.enospc, w.written, append([]string(nil), w.unexpected...)
}

func (w *sdWriters) halt() {
	close(w.stop)
	w.wg.Wait()
}

// waitFor polls cond every 50 ms for up to d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

const sdUser = "6f5e4d3c2b1a4f0e9d8c7b6a5f4e3d2c"

// TestStateDiskFull fills the file system of the daemon's state directory
// while writers work in a view with a limit: growth gets ENOSPC, the
// daemon does not die and the view never answers ENOTCONN, reads go on,
// metadata changes get "state disk full"; a stop and a start on the full
// disk work; once space is freed, writes resume by themselves and the
// ledger matches the volume.
func TestStateDiskFull(t *testing.T) {
	fsDir := loopFS(t, 200<<20)
	d := StartDaemon(t, DaemonOptions{StateDir: filepath.Join(fsDir, "state")})
	var f api.Folder
	d.JSON(&f, "create", "data", "local", "--user", sdUser)
	d.OK("quota-scope", "set", "local", sdUser, "1GiB", "-t", "user")
	view := filepath.Join(d.MountPoint, "users", sdUser, "data")
	keep := bytes.Repeat([]byte("state disk full; reads go on\n"), 40000)
	if err := os.WriteFile(filepath.Join(view, "keep"), keep, 0o644); err != nil {
		t.Fatal(err)
	}
	pid := d.PID()

	w := startWriters(view, 2)
	waitFor(t, 20*time.Second, "the writers to write", func() bool { _, n, _ := w.counts(); return n > 4 })
	fill1 := filepath.Join(fsDir, "filler1")
	t.Logf("filled the state disk with %d MiB", fillFS(t, fill1)>>20)

	waitFor(t, 20*time.Second, "ENOSPC in the view", func() bool { n, _, _ := w.counts(); return n > 0 })
	time.Sleep(2 * time.Second) // keep writing against the full disk
	if _, _, bad := w.counts(); len(bad) > 0 {
		t.Fatalf("errors other than ENOSPC in the view: %v", bad)
	}
	if d.PID() != pid {
		t.Fatalf("vfolderd is gone; log:\n%s", d.Log())
	}
	if got, err := os.ReadFile(filepath.Join(view, "keep")); err != nil || !bytes.Equal(got, keep) {
		t.Errorf("reading a file while the state disk is full: %d bytes, %v", len(got), err)
	}
	if _, err := os.Create(filepath.Join(view, "new")); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("create while the state disk is full: %v; want ENOSPC", err)
	}
	r := d.CLI("create", "other", "local", "--user", sdUser)
	if r.Code != 1 || !strings.Contains(r.Stderr, "state disk full") {
		t.Errorf("metadata change while the state disk is full: %s; want exit 1 with \"state disk full\"", r)
	}
	d.OK("list", "--user", sdUser) // reads of metadata go on
	// Removals go on (once the guard released its ballast).
	waitFor(t, 10*time.Second, "a removal to work", func() bool {
		err := os.Remove(filepath.Join(view, "w0-1"))
		return err == nil || errors.Is(err, os.ErrNotExist)
	})
	w.halt()
	if _, _, bad := w.counts(); len(bad) > 0 {
		t.Fatalf("errors other than ENOSPC in the view: %v", bad)
	}
	if strings.Contains(d.Log(), "SIGBUS") || strings.Contains(d.Log(), "unexpected fault address") {
		t.Fatalf("fault in the log:\n%s", d.Log())
	}

	// Take what the guard released too: the disk is full to the last
	// block. A stop and a start must still work.
	fill2 := filepath.Join(fsDir, "filler2")
	fillFS(t, fill2)
	d.Stop()
	d.Start()
	if got, err := os.ReadFile(filepath.Join(view, "keep")); err != nil || !bytes.Equal(got, keep) {
		t.Errorf("reading after a start on the full disk: %d bytes, %v", len(got), err)
	}
	if _, err := os.Create(filepath.Join(view, "new")); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("create after a start on the full disk: %v; want ENOSPC", err)
	}

	// Space returns: writes resume by themselves.
	for _, p := range []string{fill1, fill2} {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 20*time.Second, "writes to resume", func() bool {
		err := os.WriteFile(filepath.Join(view, "after"), []byte("space is back\n"), 0o644)
		return err == nil
	})
	d.OK("create", "other", "local", "--user", sdUser)
	if code, rep := dqCheckUser(t, d, sdUser); code != 0 || rep.Drift {
		t.Errorf("quota-scope check after the full state disk: exit %d, %+v; want no drift", code, rep)
	}
}

// dqCheckUser runs `quota-scope check --json` for user on "local".
func dqCheckUser(t *testing.T, d *Daemon, user string) (int, api.QuotaCheck) {
	t.Helper()
	r := d.CLI("--json", "quota-scope", "check", "local", user, "-t", "user")
	var rep api.QuotaCheck
	if err := json.Unmarshal([]byte(r.Stdout), &rep); err != nil {
		t.Fatalf("check printed no report: %v\n%s", err, r)
	}
	return r.Code, rep
}
