package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	point  string
	fstype string
	source string
	minor  uint32
}

// readMountInfo parses /proc/self/mountinfo.
func readMountInfo() ([]mountEntry, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	return parseMountInfo(b), nil
}

// parseMountInfo parses mountinfo text; malformed lines are skipped.
func parseMountInfo(b []byte) []mountEntry {
	var out []mountEntry
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" && i >= 6 {
				sep = i
				break
			}
		}
		if sep < 0 || len(fields) < sep+3 {
			continue
		}
		e := mountEntry{point: unescapeMount(fields[4]), fstype: fields[sep+1], source: unescapeMount(fields[sep+2])}
		if _, mi, ok := strings.Cut(fields[2], ":"); ok {
			if n, err := strconv.ParseUint(mi, 10, 32); err == nil {
				e.minor = uint32(n)
			}
		}
		out = append(out, e)
	}
	return out
}

// unescapeMount undoes the octal escapes (\040 for space...) of mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// under reports whether p is dir or below it.
func under(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

// mountsUnder lists the mounts at or below dir, deepest first.
func mountsUnder(dir string) ([]mountEntry, error) {
	all, err := readMountInfo()
	if err != nil {
		return nil, err
	}
	var out []mountEntry
	for i := len(all) - 1; i >= 0; i-- {
		if under(all[i].point, dir) {
			out = append(out, all[i])
		}
	}
	return out, nil
}

// isMounted reports whether something is mounted exactly at p.
func isMounted(p string) bool {
	all, err := readMountInfo()
	if err != nil {
		return false
	}
	for _, m := range all {
		if m.point == p {
			return true
		}
	}
	return false
}

// abortFuse aborts the FUSE connection with the given minor device number,
// which makes every pending and future request fail and lets a stuck
// server and its unmount finish.
func abortFuse(minor uint32) error {
	p := fmt.Sprintf("/sys/fs/fuse/connections/%d/abort", minor)
	if _, err := os.Stat("/sys/fs/fuse/connections"); err == nil {
		if _, err := os.Stat(p); err != nil {
			// fusectl may not be mounted in this namespace yet.
			_ = unix.Mount("fusectl", "/sys/fs/fuse/connections", "fusectl", 0, "")
		}
	}
	return os.WriteFile(p, []byte("1"), 0)
}

// fuseMinor is the FUSE connection number of the mount at p (0 if unknown).
func fuseMinor(p string) uint32 {
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		return 0
	}
	return unix.Minor(st.Dev)
}

// forceUnmount is the last resort for a mount at p: abort its FUSE
// connection (if it is one) and detach it.
func forceUnmount(p string, minor uint32) error {
	var errs []error
	if minor != 0 {
		if err := abortFuse(minor); err != nil {
			errs = append(errs, fmt.Errorf("abort fuse connection %d: %w", minor, err))
		}
	}
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
		errs = append(errs, fmt.Errorf("detach %s: %w", p, err))
	}
	return errors.Join(errs...)
}

// unmountRetry unmounts p, retrying while it is busy.
func unmountRetry(p string) error {
	var err error
	for i := 0; i < 20; i++ {
		err = unix.Unmount(p, 0)
		if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) {
			return err
		}
		time.Sleep(time.Duration(i+1) * 10 * time.Millisecond)
	}
	return err
}

// tracked is one mount the harness made.
type tracked struct {
	what  string
	point string
	minor uint32 // FUSE connection, 0 if none
	undo  func() error
}

// mounts records every mount the harness makes and undoes them.
type mounts struct {
	mu   sync.Mutex
	list []*tracked
	// conns are FUSE connections of mounts that a recorded mount's undo
	// takes away with it (the session superblocks of a vfolder mount).
	conns []uint32
}

// addConn records a FUSE connection that quiesce must wait for.
func (m *mounts) addConn(minor uint32) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if minor != 0 && !slices.Contains(m.conns, minor) {
		m.conns = append(m.conns, minor)
	}
}

// add records a mount; undo must unmount it and stop its server.
func (m *mounts) add(what, point string, minor uint32, undo func() error) {
	m.mu.Lock()
	m.list = append(m.list, &tracked{what: what, point: point, minor: minor, undo: undo})
	m.mu.Unlock()
}

// remove undoes one recorded mount now (before the end of the run).
func (m *mounts) remove(point string) error {
	m.mu.Lock()
	var t *tracked
	for i := len(m.list) - 1; i >= 0; i-- {
		if m.list[i].point == point {
			t = m.list[i]
			m.list = append(m.list[:i], m.list[i+1:]...)
			break
		}
	}
	m.mu.Unlock()
	if t == nil {
		return nil
	}
	return undoOne(t)
}

func undoOne(t *tracked) error {
	done := make(chan error, 1)
	go func() { done <- t.undo() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		err = fmt.Errorf("unmount of %s (%s) hangs", t.point, t.what)
	}
	if err != nil || isMounted(t.point) {
		if ferr := forceUnmount(t.point, t.minor); ferr != nil {
			err = errors.Join(err, ferr)
		}
		if err == nil {
			err = fmt.Errorf("%s (%s) was still mounted after its unmount", t.point, t.what)
		}
		return fmt.Errorf("%s at %s: %w", t.what, t.point, err)
	}
	return nil
}

// undoAll undoes every recorded mount in reverse order.
func (m *mounts) undoAll() error {
	m.mu.Lock()
	list := m.list
	m.list = nil
	m.mu.Unlock()
	var errs []error
	for i := len(list) - 1; i >= 0; i-- {
		if err := undoOne(list[i]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// checkNoMounts fails when anything is mounted at or below dir (other
// than keep, which may be ""); it detaches what it finds.
func checkNoMounts(dir, keep string) error {
	left, err := mountsUnder(dir)
	if err != nil {
		return fmt.Errorf("read mountinfo: %w", err)
	}
	var bad []string
	for _, m := range left {
		if m.point == keep {
			continue
		}
		bad = append(bad, fmt.Sprintf("%s (%s from %s)", m.point, m.fstype, m.source))
		var minor uint32
		if strings.HasPrefix(m.fstype, "fuse") {
			minor = m.minor
		}
		_ = forceUnmount(m.point, minor)
	}
	if len(bad) > 0 {
		return fmt.Errorf("mounts left behind (now detached): %s", strings.Join(bad, "; "))
	}
	return nil
}

// daemon is a FUSE server run as a child process in the foreground.
type daemon struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	done   chan struct{}
	err    error
}

// startDaemon runs argv (a FUSE server that mounts at point and stays in
// the foreground) and waits until the mount appears.
func startDaemon(ctx context.Context, point string, argv []string) (*daemon, error) {
	d := &daemon{stderr: &bytes.Buffer{}, done: make(chan struct{})}
	d.cmd = exec.Command(argv[0], argv[1:]...)
	d.cmd.Stdout = d.stderr
	d.cmd.Stderr = d.stderr
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	// Pdeathsig fires when the thread that started the child exits, so
	// the start happens on a locked thread that lives as long as the
	// daemon does.
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := d.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		d.err = d.cmd.Wait()
		close(d.done)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	deadline := time.Now().Add(15 * time.Second)
	for !isMounted(point) {
		select {
		case <-d.done:
			return nil, fmt.Errorf("%s exited before mounting: %v: %s", filepath.Base(argv[0]), d.err, strings.TrimSpace(d.stderr.String()))
		case <-ctx.Done():
			d.stop(point)
			return nil, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			d.stop(point)
			return nil, fmt.Errorf("%s did not mount %s within 15s: %s", filepath.Base(argv[0]), point, strings.TrimSpace(d.stderr.String()))
		}
	}
	return d, nil
}

// stop unmounts point and waits for the daemon to exit; it is killed (by
// its PID) if it does not.
func (d *daemon) stop(point string) error {
	uerr := unmountRetry(point)
	if uerr != nil {
		_ = forceUnmount(point, fuseMinor(point))
	}
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
		return errors.Join(uerr, fmt.Errorf("pid %d did not exit after the unmount; killed", d.cmd.Process.Pid))
	}
	return uerr
}
