// Package oci runs real OCI containers for tests: a busybox rootfs, a
// minimal config.json, and a runner around runc (or crun) with cleanup.
//
// Containers run as root-owned (not rootless) containers with new pid,
// mount, ipc, uts and network namespaces (the network namespace has only
// loopback), a cgroup of their own (cgroupsPath unique per container) and
// rootfs propagation rslave, which is what mountd's late publication needs.
// The runtime keeps its state in a per-test directory (--root), so tests
// never see other containers of the host.
//
// crun on a host with hybrid cgroups (a cgroup2 mount at
// /sys/fs/cgroup/unified next to v1 controllers) refuses to start; the
// runner then runs every crun command in a mount namespace of its own
// (propagation unchanged, so mountd's shared session mounts still reach
// the container) with that cgroup2 mount unmounted.
//
// Everything needs root; Require skips a test with the reason when root,
// the runtime or a static busybox is missing (contrib/install-deps.sh
// installs them).
package oci

import (
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/internal/testutil"
)

// Runtimes the runner knows.
const (
	Runc = "runc"
	Crun = "crun"
)

// Require skips t unless it runs as root and runtime and a static busybox
// are installed.
func Require(t testing.TB, runtime string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run containers")
	}
	if _, err := exec.LookPath(runtime); err != nil {
		t.Skipf("needs %s (contrib/install-deps.sh installs it)", runtime)
	}
	if _, err := staticBusybox(); err != nil {
		t.Skipf("needs a static busybox (busybox-static): %v", err)
	}
}

// staticBusybox finds busybox and checks that it is statically linked (it
// is copied into a rootfs without a libc).
func staticBusybox() (string, error) {
	p, err := exec.LookPath("busybox")
	if err != nil {
		return "", err
	}
	f, err := elf.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return "", fmt.Errorf("%s is dynamically linked", p)
		}
	}
	return p, nil
}

// BuildRootfs fills dir with a minimal root filesystem: a static busybox
// at /bin/busybox with a symlink per applet in /bin, /etc/passwd and
// /etc/group with root and work (1000:1000), /home/work (owned by work),
// /tmp (1777), and empty /proc, /sys, /dev.
func BuildRootfs(dir string) error {
	bb, err := staticBusybox()
	if err != nil {
		return err
	}
	for _, d := range []string{"bin", "etc", "home/work", "tmp", "proc", "sys", "dev", "root"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(dir, "tmp"), 0o1777); err != nil {
		return err
	}
	if err := os.Chown(filepath.Join(dir, "home/work"), 1000, 1000); err != nil {
		return err
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "bin/busybox"), data, 0o755); err != nil {
		return err
	}
	out, err := exec.Command(bb, "--list").Output()
	if err != nil {
		return fmt.Errorf("busybox --list: %w", err)
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" || strings.Contains(applet, "/") {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", applet)); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nwork:x:1000:1000:work:/home/work:/bin/sh\n",
		"etc/group":  "root:x:0:\nwork:x:1000:\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// Mount is one OCI mount (same shape as mountd.OCIBind).
type Mount struct {
	Destination string   `json:"destination"`
	Type        string   `json:"type"`
	Source      string   `json:"source"`
	Options     []string `json:"options,omitempty"`
}

// SpecOptions describes the container Spec writes.
type SpecOptions struct {
	Args     []string
	UID, GID uint32
	Env      []string // added to PATH and HOME
	Cwd      string   // default "/"
	// Privileged gives every capability this process holds, all devices, a writable /sys
	// and no masked paths.
	Privileged bool
	// Caps are capabilities (e.g. "CAP_DAC_READ_SEARCH") the process holds
	// on top of the usual set, whatever its uid: they are also put in the
	// inheritable and ambient sets, so a non-root process keeps them
	// across exec. Capabilities outside this process's bounding set are
	// left out.
	Caps []string
	// ReadonlyRootfs mounts the rootfs read-only.
	ReadonlyRootfs bool
	// Mounts are added after the default ones (proc, dev, sys...).
	Mounts []Mount
	// CgroupsPath defaults to a unique path derived from the bundle.
	CgroupsPath string
	// RootfsPropagation defaults to "rslave".
	RootfsPropagation string
}

// defaultCaps is the usual container capability set.
var defaultCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// allCaps is every capability up to CAP_CHECKPOINT_RESTORE, indexed by
// capability number.
var allCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER",
	"CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP",
	"CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
	"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
	"CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
	"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
	"CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD",
	"CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP",
	"CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
	"CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
	"CAP_CHECKPOINT_RESTORE",
}

// heldCaps filters caps down to those in this process's bounding set: a
// runtime cannot grant more (hosts and sandboxes may drop some).
func heldCaps(caps []string) []string {
	var out []string
	for _, c := range caps {
		for i, name := range allCaps {
			if name != c {
				continue
			}
			if r, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(i), 0, 0, 0); err == nil && r == 1 {
				out = append(out, c)
			}
		}
	}
	return out
}

// Spec writes <bundle>/config.json for a container whose rootfs is
// <bundle>/rootfs.
func Spec(bundle string, o SpecOptions) error {
	if len(o.Args) == 0 {
		return errors.New("oci: no process args")
	}
	cwd := o.Cwd
	if cwd == "" {
		cwd = "/"
	}
	env := append([]string{"PATH=/bin", "HOME=/home/work"}, o.Env...)
	defCaps, all := heldCaps(defaultCaps), heldCaps(allCaps)
	caps := map[string]any{"bounding": defCaps}
	switch {
	case o.Privileged:
		caps = map[string]any{"bounding": all, "effective": all, "permitted": all, "inheritable": all}
	case o.UID == 0:
		caps = map[string]any{"bounding": defCaps, "effective": defCaps, "permitted": defCaps}
	}
	if extra := heldCaps(o.Caps); len(extra) > 0 && !o.Privileged {
		held := extra
		if o.UID == 0 {
			held = append(append([]string{}, defCaps...), extra...)
		}
		caps = map[string]any{"bounding": append(append([]string{}, defCaps...), extra...),
			"effective": held, "permitted": held, "inheritable": extra, "ambient": extra}
	}
	sysOpts := []string{"nosuid", "noexec", "nodev", "ro"}
	if o.Privileged {
		sysOpts = []string{"nosuid", "noexec", "nodev"}
	}
	mounts := []Mount{
		{Destination: "/proc", Type: "proc", Source: "proc"},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: sysOpts},
	}
	mounts = append(mounts, o.Mounts...)
	cg := o.CgroupsPath
	if cg == "" {
		cg = "/vfolder-e2e-" + sanitize(filepath.Base(bundle)) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	prop := o.RootfsPropagation
	if prop == "" {
		prop = "rslave"
	}
	linux := map[string]any{
		"cgroupsPath":       cg,
		"rootfsPropagation": prop,
		"namespaces": []map[string]string{
			{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"},
		},
	}
	if o.Privileged {
		linux["resources"] = map[string]any{"devices": []map[string]any{{"allow": true, "access": "rwm"}}}
	} else {
		linux["resources"] = map[string]any{"devices": []map[string]any{{"allow": false, "access": "rwm"}}}
		linux["maskedPaths"] = []string{"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
			"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
			"/sys/firmware", "/proc/scsi"}
		linux["readonlyPaths"] = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
	}
	spec := map[string]any{
		"ociVersion": "1.0.2",
		"process": map[string]any{
			"terminal":        false,
			"user":            map[string]any{"uid": o.UID, "gid": o.GID},
			"args":            o.Args,
			"env":             env,
			"cwd":             cwd,
			"capabilities":    caps,
			"rlimits":         []map[string]any{{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}},
			"noNewPrivileges": !o.Privileged,
		},
		"root":     map[string]any{"path": "rootfs", "readonly": o.ReadonlyRootfs},
		"hostname": "vfolder-e2e",
		"mounts":   mounts,
		"linux":    linux,
	}
	data, err := json.MarshalIndent(spec, "", "\t")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o644)
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

func sanitize(s string) string {
	s = unsafeChars.ReplaceAllString(s, "-")
	if len(s) > 40 {
		s = s[:40]
	}
	return s
}

// ContainerID makes a container id from a test name: unique, and only
// characters runtimes accept.
func ContainerID(t testing.TB) string {
	return "vfe2e-" + sanitize(t.Name()) + "-" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
}

// Container is a container started by Run.
type Container struct {
	ID      string
	Runtime string
	Bundle  string
	// stateRoot is the runtime's --root.
	stateRoot string
	hybrid    bool
	cmd       *exec.Cmd
	out       *testutil.SyncBuffer
	done      chan struct{}
	waitErr   error
	stopOnce  sync.Once
	stopErr   error
}

// hybridCgroups reports whether the host mounts cgroup2 at
// /sys/fs/cgroup/unified next to v1 hierarchies.
func hybridCgroups() bool {
	var st unix.Statfs_t
	if unix.Statfs("/sys/fs/cgroup/unified", &st) != nil || st.Type != unix.CGROUP2_SUPER_MAGIC {
		return false
	}
	return unix.Statfs("/sys/fs/cgroup", &st) == nil && st.Type != unix.CGROUP2_SUPER_MAGIC
}

// command builds a runtime command line.
func (c *Container) command(ctx context.Context, args ...string) *exec.Cmd {
	full := append([]string{"--root", c.stateRoot}, args...)
	if c.Runtime == Crun && c.hybrid {
		script := `umount /sys/fs/cgroup/unified && exec "$0" "$@"`
		return exec.CommandContext(ctx, "unshare", append([]string{"--mount", "--propagation", "unchanged", "--", "sh", "-c", script, c.Runtime}, full...)...)
	}
	return exec.CommandContext(ctx, c.Runtime, full...)
}

// Run starts `<runtime> run --bundle bundle id` as a child process and
// waits until the container runs. Its cleanup (registered on t) kills and
// deletes the container; call Stop to do that earlier.
func Run(ctx context.Context, t testing.TB, runtime, bundle, id string) (*Container, error) {
	t.Helper()
	c := &Container{
		ID: id, Runtime: runtime, Bundle: bundle,
		stateRoot: t.TempDir(),
		hybrid:    runtime == Crun && hybridCgroups(),
		out:       &testutil.SyncBuffer{},
		done:      make(chan struct{}),
	}
	// Not bound to ctx: the container lives until Stop.
	c.cmd = c.command(context.Background(), "run", "--bundle", bundle, id)
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.out
	c.cmd.Stdin = nil
	if err := c.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		c.waitErr = c.cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("stop container %s: %v", id, err)
		}
	})
	for {
		st, err := c.State(ctx)
		if err == nil && st.Status == "running" {
			return c, nil
		}
		select {
		case <-c.done:
			return nil, fmt.Errorf("%s run exited: %v; output:\n%s", runtime, c.waitErr, c.out.String())
		case <-ctx.Done():
			return nil, fmt.Errorf("container %s did not start: %w; output:\n%s", id, ctx.Err(), c.out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// State is what `<runtime> state` reports.
type State struct {
	ID     string `json:"id"`
	Pid    int    `json:"pid"`
	Status string `json:"status"`
}

// State queries the runtime.
func (c *Container) State(ctx context.Context) (State, error) {
	var st State
	out, err := c.command(ctx, "state", c.ID).Output()
	if err != nil {
		return st, err
	}
	err = json.Unmarshal(out, &st)
	return st, err
}

// Pid is the container's init process as seen from the host.
func (c *Container) Pid(ctx context.Context) (int, error) {
	st, err := c.State(ctx)
	if err != nil {
		return 0, err
	}
	if st.Pid <= 0 {
		return 0, fmt.Errorf("container %s has no pid (status %s)", c.ID, st.Status)
	}
	return st.Pid, nil
}

// Exec runs args in the container as uid:gid and returns its combined
// output; a non-zero exit is an *exec.ExitError.
func (c *Container) Exec(ctx context.Context, uid, gid int, args ...string) (string, error) {
	a := append([]string{"exec", "--user", fmt.Sprintf("%d:%d", uid, gid), c.ID}, args...)
	out, err := c.command(ctx, a...).CombinedOutput()
	return string(out), err
}

// Output is what the container's init process wrote so far.
func (c *Container) Output() string { return c.out.String() }

// Stop kills the container (SIGKILL), waits for the runtime's run
// process, and deletes the container. Safe to call more than once.
func (c *Container) Stop() error {
	c.stopOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var errs []error
		select {
		case <-c.done:
		default:
			if out, err := c.command(ctx, "kill", c.ID, "KILL").CombinedOutput(); err != nil {
				// It may have exited by itself meanwhile.
				select {
				case <-c.done:
				default:
					errs = append(errs, fmt.Errorf("kill: %v: %s", err, out))
				}
			}
		}
		select {
		case <-c.done:
		case <-ctx.Done():
			c.cmd.Process.Kill()
			<-c.done
			errs = append(errs, fmt.Errorf("%s run did not exit after the container was killed", c.Runtime))
		}
		// Foreground run deletes the container when it ends; delete
		// --force covers the rest. An error saying it does not exist is
		// fine.
		if out, err := c.command(ctx, "delete", "--force", c.ID).CombinedOutput(); err != nil &&
			!strings.Contains(string(out), "does not exist") && !strings.Contains(string(out), "not exist") {
			errs = append(errs, fmt.Errorf("delete: %v: %s", err, out))
		}
		if _, err := c.State(ctx); err == nil {
			errs = append(errs, fmt.Errorf("container %s still exists after delete", c.ID))
		}
		c.stopErr = errors.Join(errs...)
	})
	return c.stopErr
}
