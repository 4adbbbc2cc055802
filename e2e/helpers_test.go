package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/mountd"
)

// StorageID is the unified storage uid/gid the tests configure.
const StorageID = 1100

var (
	binDir    string
	buildOnce sync.Once
	buildErr  error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "vfolder-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// moduleRoot is the directory holding go.mod.
func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// Binaries builds vfolderd and vfolder once per test run and returns their
// paths.
func Binaries(t testing.TB) (daemon, cli string) {
	t.Helper()
	buildOnce.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			goBin = "/usr/local/go/bin/go"
		}
		for _, pkg := range []string{"vfolderd", "vfolder"} {
			cmd := exec.Command(goBin, "build", "-o", filepath.Join(binDir, pkg), "./cmd/"+pkg)
			cmd.Dir = moduleRoot()
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("building cmd/%s: %v\n%s", pkg, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "vfolderd"), filepath.Join(binDir, "vfolder")
}

// RequireRoot skips the test unless it runs as root with /dev/fuse present.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the test mounts FUSE and chowns to the storage uid")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("needs /dev/fuse: %v", err)
	}
}

// DaemonOptions configure StartDaemon. Zero fields get defaults.
type DaemonOptions struct {
	// Volumes maps volume names to paths; default {"local": <dir>/vol/local}.
	Volumes map[string]string
	// StateDir defaults to <dir>/state.
	StateDir string
	// ExtraArgs are appended to the daemon's command line.
	ExtraArgs []string
	// VolumeConfig holds extra TOML lines of a volume's table, by name.
	VolumeConfig map[string]string
}

// Daemon is one vfolderd process started by a test.
type Daemon struct {
	t           testing.TB
	Bin, CLIBin string
	// Dir is the daemon's private temporary directory.
	Dir        string
	ConfigPath string
	StateDir   string
	Socket     string
	MountPoint string
	Volumes    map[string]string
	LogPath    string
	args       []string
	volConfig  map[string]string

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed when cmd has exited
	waitErr error
}

// newDir makes a short private directory (unix socket paths are limited
// to 108 bytes) that is removed after every mount below it is gone.
func newDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "vfe2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if left := mountsUnder(dir); len(left) > 0 {
			for _, m := range left {
				_ = syscall.Unmount(m, syscall.MNT_DETACH)
			}
			if still := mountsUnder(dir); len(still) > 0 {
				t.Errorf("mounts still present under %s, not removing it: %v", dir, still)
				return
			}
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("removing %s: %v", dir, err)
		}
	})
	return dir
}

// StartDaemon starts vfolderd on fresh temporary directories and waits
// until /v1/health answers. The daemon is stopped in t.Cleanup.
func StartDaemon(t testing.TB, opt DaemonOptions) *Daemon {
	t.Helper()
	RequireRoot(t)
	bin, cli := Binaries(t)
	dir := newDir(t)
	d := &Daemon{
		t: t, Bin: bin, CLIBin: cli, Dir: dir,
		ConfigPath: filepath.Join(dir, "vfolderd.toml"),
		StateDir:   opt.StateDir,
		Socket:     filepath.Join(dir, "vfolderd.sock"),
		MountPoint: filepath.Join(dir, "mnt"),
		Volumes:    opt.Volumes,
		LogPath:    filepath.Join(dir, "vfolderd.log"),
		args:       opt.ExtraArgs,
		volConfig:  opt.VolumeConfig,
	}
	if d.StateDir == "" {
		d.StateDir = filepath.Join(dir, "state")
	}
	if d.Volumes == nil {
		d.Volumes = map[string]string{"local": filepath.Join(dir, "vol", "local")}
	}
	for _, p := range d.Volumes {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{d.StateDir, d.MountPoint} {
		if err := os.MkdirAll(p, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(d.ConfigPath, []byte(d.configText()), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.cleanup)
	d.Start()
	return d
}

func (d *Daemon) configText() string {
	var b strings.Builder
	fmt.Fprintf(&b, "state_dir = %q\nsocket = %q\nmount_point = %q\n", d.StateDir, d.Socket, d.MountPoint)
	fmt.Fprintf(&b, "storage_uid = %d\nstorage_gid = %d\nlog_level = \"info\"\n", StorageID, StorageID)
	names := make([]string, 0, len(d.Volumes))
	for n := range d.Volumes {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&b, "\n[volumes.%s]\npath = %q\n", n, d.Volumes[n])
		if extra := d.volConfig[n]; extra != "" {
			fmt.Fprintln(&b, extra)
		}
	}
	return b.String()
}

// Start starts the daemon process (again, after Kill or Stop) and waits
// for it to serve.
func (d *Daemon) Start() {
	d.t.Helper()
	d.mu.Lock()
	if d.cmd != nil {
		d.mu.Unlock()
		d.t.Fatal("daemon already running")
	}
	logf, err := os.OpenFile(d.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		d.mu.Unlock()
		d.t.Fatal(err)
	}
	fmt.Fprintf(logf, "=== start %s\n", time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(d.Bin, append([]string{"--config", d.ConfigPath}, d.args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = cleanEnv()
	if err := cmd.Start(); err != nil {
		d.mu.Unlock()
		logf.Close()
		d.t.Fatalf("starting vfolderd: %v", err)
	}
	done := make(chan struct{})
	d.cmd, d.done, d.waitErr = cmd, done, nil
	d.mu.Unlock()
	go func() {
		err := cmd.Wait()
		logf.Close()
		d.mu.Lock()
		d.waitErr = err
		d.mu.Unlock()
		close(done)
	}()
	d.waitHealthy(done)
}

// cleanEnv is the test's environment without VFOLDER_* variables, which
// would override the config file.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VFOLDER_") {
			env = append(env, kv)
		}
	}
	return env
}

func (d *Daemon) waitHealthy(done chan struct{}) {
	d.t.Helper()
	c := api.NewClient(d.Socket)
	defer c.CloseIdleConnections()
	deadline := time.Now().Add(60 * time.Second)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-done:
			d.t.Fatalf("vfolderd exited while starting (%v); log:\n%s", d.exitErr(), d.Log())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		h, err := c.Health(ctx)
		cancel()
		if err == nil && h.Status == "ok" {
			return
		}
		lastErr = err
		time.Sleep(50 * time.Millisecond)
	}
	d.t.Fatalf("vfolderd did not become healthy within 60s (last error: %v); log:\n%s", lastErr, d.Log())
}

func (d *Daemon) exitErr() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.waitErr
}

// PID is the running daemon's process id (0 when stopped).
func (d *Daemon) PID() int {
	if cmd, _ := d.running(); cmd != nil {
		return cmd.Process.Pid
	}
	return 0
}

// running returns the daemon's process and the channel closed when it has
// exited; cmd is nil when it is not running.
func (d *Daemon) running() (cmd *exec.Cmd, done chan struct{}) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cmd, d.done
}

// Stop sends SIGTERM and waits for a clean exit (status 0, no mount left).
func (d *Daemon) Stop() {
	d.t.Helper()
	cmd, done := d.running()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		d.t.Errorf("vfolderd (pid %d) did not exit within 30s of SIGTERM; killed it", cmd.Process.Pid)
	}
	d.mu.Lock()
	err := d.waitErr
	d.cmd = nil
	d.mu.Unlock()
	if err != nil {
		d.t.Errorf("vfolderd exited with %v after SIGTERM; log:\n%s", err, d.Log())
	}
	if left := mountsUnder(d.Dir); len(left) > 0 {
		d.t.Errorf("vfolderd left mounts behind after SIGTERM: %v", left)
	}
}

// Kill sends SIGKILL and waits for the process to be gone. The FUSE mount
// it leaves behind stays (as after a real crash); see DetachMounts.
func (d *Daemon) Kill() {
	d.t.Helper()
	cmd, done := d.running()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
	d.mu.Lock()
	d.cmd = nil
	d.mu.Unlock()
}

// DetachMounts lazily unmounts every mount under the daemon's directory
// (what a killed daemon leaves behind).
func (d *Daemon) DetachMounts() {
	d.t.Helper()
	for _, m := range mountsUnder(d.Dir) {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil {
			d.t.Errorf("detaching %s: %v", m, err)
		}
	}
}

// RunSecond runs another vfolderd on this daemon's state directory (with
// its own socket and mount point) and waits up to 30s for it to exit. It
// returns the exit code and the output; a second daemon still running
// after 30s is stopped by its PID and fails the test.
func (d *Daemon) RunSecond() (int, string) {
	d.t.Helper()
	dir := newDir(d.t)
	second := &Daemon{StateDir: d.StateDir, Socket: filepath.Join(dir, "second.sock"),
		MountPoint: filepath.Join(dir, "mnt"), Volumes: d.Volumes}
	if err := os.MkdirAll(second.MountPoint, 0o700); err != nil {
		d.t.Fatal(err)
	}
	cfg := filepath.Join(dir, "second.toml")
	if err := os.WriteFile(cfg, []byte(second.configText()), 0o600); err != nil {
		d.t.Fatal(err)
	}
	var out bytes.Buffer
	cmd := exec.Command(d.Bin, "--config", cfg)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Env = cleanEnv()
	if err := cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err = <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			err = <-done
		}
		d.t.Errorf("a second vfolderd on the same state directory kept running (%v); output:\n%s", err, out.String())
	}
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		d.t.Fatalf("second vfolderd: %v", err)
	}
	return code, out.String()
}

func (d *Daemon) cleanup() {
	d.Stop()
	if d.t.Failed() {
		d.t.Logf("vfolderd log (%s):\n%s", d.LogPath, d.Log())
	}
}

// Log returns the daemon's output so far (the last 64 KiB).
func (d *Daemon) Log() string {
	b, _ := os.ReadFile(d.LogPath)
	if len(b) > 64<<10 {
		b = append([]byte("...\n"), b[len(b)-64<<10:]...)
	}
	return string(b)
}

// Client returns an API client of the daemon.
func (d *Daemon) Client() *api.Client {
	c := api.NewClient(d.Socket)
	d.t.Cleanup(c.CloseIdleConnections)
	return c
}

// Result is the outcome of one CLI run.
type Result struct {
	Args           []string
	Code           int
	Stdout, Stderr string
}

func (r Result) String() string {
	return fmt.Sprintf("vfolder %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(r.Args, " "), r.Code, r.Stdout, r.Stderr)
}

// CLI runs the vfolder binary against the daemon's socket with stdin
// closed (not a terminal).
func (d *Daemon) CLI(args ...string) Result {
	d.t.Helper()
	return RunCLI(d.t, d.CLIBin, d.Socket, args...)
}

// RunCLI runs the vfolder binary at bin with --socket socket.
func RunCLI(t testing.TB, bin, socket string, args ...string) Result {
	t.Helper()
	return runCLIEnv(t, bin, socket, 2*time.Minute, nil, args...)
}

// runCLIEnv is RunCLI with extra environment and a bound of its own.
func runCLIEnv(t testing.TB, bin, socket string, bound time.Duration, env []string, args ...string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--socket", socket}, args...)...)
	cmd.Env = append(cleanEnv(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := Result{Args: args, Stdout: out.String(), Stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.Exited():
		r.Code = ee.ExitCode()
	default:
		t.Fatalf("running vfolder %v: %v (stderr %q)", args, err, r.Stderr)
	}
	return r
}

// OK runs the CLI and fails the test unless it exits 0.
func (d *Daemon) OK(args ...string) Result {
	d.t.Helper()
	r := d.CLI(args...)
	if r.Code != 0 {
		d.t.Fatalf("unexpected failure: %s", r)
	}
	return r
}

// JSON runs the CLI with --json, expects exit 0 and decodes stdout into v.
func (d *Daemon) JSON(v any, args ...string) {
	d.t.Helper()
	r := d.OK(append([]string{"--json"}, args...)...)
	if err := json.Unmarshal([]byte(r.Stdout), v); err != nil {
		d.t.Fatalf("decoding the output of vfolder --json %v: %v\n%s", args, err, r.Stdout)
	}
}

// mountTable is this process's mount table (/proc/self/mountinfo).
func mountTable() ([]mountd.MountInfo, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return mountd.ParseMountInfo(f)
}

// mountInfosUnder lists the mounts at or below dir, in the order of the
// mount table (a mount after the one it is mounted on).
func mountInfosUnder(dir string) ([]mountd.MountInfo, error) {
	mounts, err := mountTable()
	if err != nil {
		return nil, err
	}
	var out []mountd.MountInfo
	for _, m := range mounts {
		if m.Point == dir || strings.HasPrefix(m.Point, dir+"/") {
			out = append(out, m)
		}
	}
	return out, nil
}

// mountsUnder lists mount points at or below dir, deepest first. When the
// mount table cannot be read it lists that error instead, so that a check
// for mounts left behind fails.
func mountsUnder(dir string) []string {
	mounts, err := mountInfosUnder(dir)
	if err != nil {
		return []string{"cannot read mountinfo: " + err.Error()}
	}
	out := make([]string, len(mounts))
	for i, m := range mounts {
		out[i] = m.Point
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

// failOnMountsLeft registers a cleanup that fails the test if anything is
// still mounted at or below dir, and detaches it. Register it before the
// mounts (cleanups run last first), so that it runs after they are gone.
func failOnMountsLeft(t testing.TB, dir string) {
	t.Helper()
	t.Cleanup(func() {
		if left := mountsUnder(dir); len(left) > 0 {
			t.Errorf("mounts left under %s: %v", dir, left)
			for _, m := range left {
				syscall.Unmount(m, syscall.MNT_DETACH)
			}
		}
	})
}

// TreeEntry describes one file in a volume snapshot.
type TreeEntry struct {
	Mode     fs.FileMode
	UID, GID uint32
	Size     int64 // regular files only
}

// Tree snapshots every entry below root (relative paths), without times.
func Tree(t testing.TB, root string) map[string]TreeEntry {
	t.Helper()
	out := map[string]TreeEntry{}
	err := filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		rel, _ := filepath.Rel(root, p)
		e := TreeEntry{Mode: fi.Mode(), UID: st.Uid, GID: st.Gid}
		if fi.Mode().IsRegular() {
			e.Size = fi.Size()
		}
		out[rel] = e
		return nil
	})
	if err != nil {
		t.Fatalf("walking %s: %v", root, err)
	}
	return out
}

// DiffTrees describes how two snapshots differ ("" when equal).
func DiffTrees(before, after map[string]TreeEntry) string {
	var diffs []string
	for p, b := range before {
		a, ok := after[p]
		switch {
		case !ok:
			diffs = append(diffs, "removed "+p)
		case a != b:
			diffs = append(diffs, fmt.Sprintf("changed %s: %+v -> %+v", p, b, a))
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			diffs = append(diffs, "added "+p)
		}
	}
	sort.Strings(diffs)
	return strings.Join(diffs, "\n")
}
