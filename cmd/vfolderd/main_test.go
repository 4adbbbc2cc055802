package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/internal/config"
	"github.com/vfolder/vfolder/internal/testutil"
)

// TestConfigPrecedence checks flag > env > file > default.
func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	volFile, volEnv, volFlag := filepath.Join(dir, "f"), filepath.Join(dir, "e"), filepath.Join(dir, "g")
	for _, d := range []string{volFile, volEnv, volFlag} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfgPath := filepath.Join(dir, "vfolderd.toml")
	text := fmt.Sprintf(`
state_dir = %q
socket = "/run/from-file.sock"
log_level = "error"
storage_uid = 2000
view_uid = 3000
[volumes.a]
path = %q
mount_allowed = false
`, filepath.Join(dir, "state"), volFile)
	if err := os.WriteFile(cfgPath, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("VFOLDER_CONFIG", cfgPath)
	t.Setenv("VFOLDER_SOCKET", "/run/from-env.sock")
	t.Setenv("VFOLDER_LOG_LEVEL", "info")
	t.Setenv("VFOLDER_STORAGE_UID", "2001")
	t.Setenv("VFOLDER_VOLUMES", "b="+volEnv)

	var got *config.Config
	app := newApp(func(_ context.Context, cfg *config.Config) error { got = cfg; return nil })
	err := app.Run([]string{"vfolderd", "--log-level", "debug", "--volume", "a=" + volFlag, "--view-gid", "7"})
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"socket (env over file)", got.Socket, "/run/from-env.sock"},
		{"log_level (flag over env)", got.LogLevel, "debug"},
		{"storage_uid (env over file)", got.StorageUID, int64(2001)},
		{"view_uid (file over default)", got.ViewUID, int64(3000)},
		{"view_gid (flag)", got.ViewGID, int64(7)},
		{"storage_gid (default)", got.StorageGID, int64(config.DefaultStorageID)},
		{"volume a path (flag over file)", got.Volumes["a"].Path, volFlag},
		{"volume a keeps mount_allowed from the file", got.Volumes["a"].MountAllowed, false},
		// --volume replaces VFOLDER_VOLUMES as a whole.
		{"volume b (env, replaced by --volume)", got.Volumes["b"].Path, ""},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v; want %v", c.name, c.got, c.want)
		}
	}
	if err := app.Run([]string{"vfolderd"}); err != nil {
		t.Fatal(err)
	}
	if got.Volumes["b"].Path != volEnv || got.Volumes["a"].Path != volFile {
		t.Errorf("volumes without --volume: %+v; want a from the file, b from VFOLDER_VOLUMES", got.Volumes)
	}

	err = newApp(func(context.Context, *config.Config) error { return nil }).Run([]string{"vfolderd", "--volume", "bad"})
	if !errors.Is(err, config.ErrInvalid) {
		t.Errorf("--volume bad: %v", err)
	}
}

// TestHelpDefaults checks that --help shows each flag's default once, and
// the built-in one.
func TestHelpDefaults(t *testing.T) {
	var out bytes.Buffer
	app := newApp(func(context.Context, *config.Config) error { t.Error("--help ran the daemon"); return nil })
	app.Writer = &out
	if err := app.Run([]string{"vfolderd", "--help"}); err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(out.String(), "\n") {
		if strings.Count(l, "(default") > 1 {
			t.Errorf("a default is shown twice: %q", l)
		}
	}
	for flag, def := range map[string]string{
		"--storage-uid": "1100", "--storage-gid": "1100", "--view-uid": "1000", "--view-gid": "1000",
		"--state-dir": config.DefaultStateDir, "--socket": api.DefaultSocket, "--log-level": config.DefaultLogLevel,
	} {
		found := false
		for _, l := range strings.Split(out.String(), "\n") {
			if strings.HasPrefix(strings.TrimSpace(l), flag+" ") {
				found = strings.Contains(l, "(default: "+def+")")
			}
		}
		if !found {
			t.Errorf("%s does not show its default %s:\n%s", flag, def, out.String())
		}
	}
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// daemonBinary builds vfolderd once per test run.
func daemonBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "vfolderd-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "vfolderd")
		goBin, err := exec.LookPath("go")
		if err != nil {
			goBin = "/usr/local/go/bin/go"
		}
		out, err := exec.Command(goBin, "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	if mnt := os.Getenv(helperEnv); mnt != "" {
		mountHelper(mnt) // never returns
	}
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// daemon is one vfolderd process a test started.
type daemon struct {
	cmd    *exec.Cmd
	stderr *testutil.SyncBuffer // read while the daemon may still write
	done   chan struct{}
	err    error
}

func startDaemon(t *testing.T, cfgPath string) *daemon {
	t.Helper()
	return startDaemonAs(t, cfgPath, nil)
}

// startDaemonAs starts vfolderd with extra arguments, as the given
// credential when it is not nil.
func startDaemonAs(t *testing.T, cfgPath string, cred *syscall.Credential, args ...string) *daemon {
	t.Helper()
	d := &daemon{stderr: &testutil.SyncBuffer{}, done: make(chan struct{})}
	d.cmd = exec.Command(daemonBinary(t), append([]string{"--config", cfgPath}, args...)...)
	if cred != nil {
		d.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	d.cmd.Stderr = d.stderr
	d.cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.err = d.cmd.Wait(); close(d.done) }()
	t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			d.cmd.Process.Kill() // only the process this test started
			<-d.done
		}
	})
	return d
}

// wait waits for the daemon to exit and returns its exit code.
func (d *daemon) wait(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-d.done:
	case <-time.After(within):
		t.Fatalf("vfolderd did not exit within %v; stderr:\n%s", within, d.stderr)
	}
	var ee *exec.ExitError
	if errors.As(d.err, &ee) {
		return ee.ExitCode()
	}
	if d.err != nil {
		t.Fatal(d.err)
	}
	return 0
}

func httpClient(socket string) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		DisableKeepAlives: true,
	}}
}

func health(socket string) error {
	resp, err := httpClient(socket).Get("http://vfolderd/v1/health")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var h api.Health
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		return err
	}
	if resp.StatusCode != 200 || h.Status != "ok" {
		return fmt.Errorf("health: %d %+v", resp.StatusCode, h)
	}
	return nil
}

// waitHealthy waits until the daemon answers on its socket.
func waitHealthy(t *testing.T, d *daemon, socket string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := health(socket)
		if err == nil {
			return
		}
		select {
		case <-d.done:
			t.Fatalf("vfolderd exited before answering: %v\n%s", d.err, d.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("vfolderd does not answer on %s: %v\n%s", socket, err, d.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type setup struct {
	dir, cfg, socket, vol, state, mnt string
}

// canMount reports whether this process may mount FUSE (root and
// /dev/fuse); without, the daemons of these tests run with fuse = false.
func canMount() bool {
	_, err := os.Stat("/dev/fuse")
	return os.Geteuid() == 0 && err == nil
}

func newSetup(t *testing.T, extra string) setup {
	t.Helper()
	dir := t.TempDir()
	s := setup{dir: dir, cfg: filepath.Join(dir, "vfolderd.toml"), socket: filepath.Join(dir, "run", "vfolderd.sock"),
		vol: filepath.Join(dir, "vol"), state: filepath.Join(dir, "state"), mnt: filepath.Join(dir, "mnt")}
	if err := os.Mkdir(s.vol, 0o755); err != nil {
		t.Fatal(err)
	}
	// Registered after t.TempDir, so it runs before the directory is
	// removed (and after the daemons' own cleanups).
	t.Cleanup(func() { noMountsLeft(t, dir) })
	if !canMount() && !strings.Contains(extra, "fuse =") {
		extra += "\nfuse = false\n"
	}
	text := fmt.Sprintf("state_dir = %q\nsocket = %q\nmount_point = %q\nstorage_uid = %d\nstorage_gid = %d\n%s\n[volumes.local]\npath = %q\n",
		s.state, s.socket, s.mnt, os.Geteuid(), os.Getegid(), extra, s.vol)
	if err := os.WriteFile(s.cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestDaemonLifecycle(t *testing.T) {
	s := newSetup(t, "")
	first := startDaemon(t, s.cfg)
	waitHealthy(t, first, s.socket)
	if b, err := os.ReadFile(filepath.Join(s.vol, "version.txt")); err != nil || string(b) != "3" {
		t.Errorf("version.txt = %q, %v", b, err)
	}

	// A second daemon on the same state directory refuses to start and
	// leaves the first one's socket alone.
	second := startDaemon(t, s.cfg)
	if code := second.wait(t, 60*time.Second); code != 1 {
		t.Errorf("second vfolderd exited %d; want 1", code)
	}
	want := fmt.Sprintf("state directory %s is in use by another vfolderd (pid %d)", s.state, first.cmd.Process.Pid)
	if !strings.Contains(second.stderr.String(), want) {
		t.Errorf("second vfolderd said %q; want %q", second.stderr, want)
	}
	if err := health(s.socket); err != nil {
		t.Errorf("first vfolderd stopped answering after the second one tried: %v", err)
	}

	if err := first.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := first.wait(t, 60*time.Second); code != 0 {
		t.Errorf("vfolderd exited %d after SIGTERM; want 0\n%s", code, first.stderr)
	}
	if _, err := os.Lstat(s.socket); !os.IsNotExist(err) {
		t.Errorf("socket left behind after SIGTERM: %v", err)
	}
}

func TestDaemonSurvivesKill(t *testing.T) {
	s := newSetup(t, "")
	d := startDaemon(t, s.cfg)
	waitHealthy(t, d, s.socket)
	body := `{"name":"keep","volume":"local","owner":"user:2b1a7c4e5d3f4a8e9c0b1f2e3d4c5b6a"}`
	resp, err := httpClient(s.socket).Post("http://vfolderd/v1/folders", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var f api.Folder
	err = json.NewDecoder(resp.Body).Decode(&f)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("create: %d %v", resp.StatusCode, err)
	}
	view := filepath.Join(s.mnt, "users", "2b1a7c4e5d3f4a8e9c0b1f2e3d4c5b6a", "keep")
	if canMount() {
		if st, err := os.Stat(view); err != nil || !st.IsDir() {
			t.Errorf("view of the folder: %v", err)
		}
	}
	if err := d.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	d.wait(t, 30*time.Second)
	if _, err := os.Lstat(s.socket); err != nil {
		t.Fatalf("a killed daemon cannot remove its socket; expected it to be left: %v", err)
	}
	if canMount() {
		if n := len(mountsAt(t, s.mnt)); n != 1 {
			t.Errorf("%d mounts at %s after SIGKILL; want the dead one left", n, s.mnt)
		}
	}

	// The restarted daemon replaces the stale socket and still knows the folder.
	d2 := startDaemon(t, s.cfg)
	waitHealthy(t, d2, s.socket)
	resp, err = httpClient(s.socket).Get("http://vfolderd/v1/folders/" + f.ID)
	if err != nil {
		t.Fatal(err)
	}
	var got api.Folder
	err = json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if err != nil || got.Name != "keep" || got.Status != "ready" {
		t.Errorf("after restart: %d %+v %v", resp.StatusCode, got, err)
	}
	if canMount() {
		// The dead mount was replaced by one that serves the view again.
		if m := mountsAt(t, s.mnt); len(m) != 1 || m[0].FSType != "fuse.vfolder" {
			t.Errorf("mounts at %s after restart: %+v; want one vfolder mount", s.mnt, m)
		}
		if st, err := os.Stat(view); err != nil || !st.IsDir() {
			t.Errorf("view after restart: %v", err)
		}
		if !strings.Contains(d2.stderr.String(), "stale FUSE mount") {
			t.Errorf("the restarted daemon did not log the stale mount it replaced:\n%s", d2.stderr)
		}
	}
	if err := d2.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := d2.wait(t, 60*time.Second); code != 0 {
		t.Errorf("exit %d after SIGINT\n%s", code, d2.stderr)
	}
	if m := mountsAt(t, s.mnt); len(m) != 0 {
		t.Errorf("mounts left at %s after SIGINT: %+v", s.mnt, m)
	}
}

// TestDaemonFUSESwitch: without root the daemon refuses to start unless
// FUSE is switched off, and then serves the API without views.
func TestDaemonFUSESwitch(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the daemon as another user")
	}
	const nobody = 65534
	s := newSetup(t, fmt.Sprintf("storage_uid = %d\nstorage_gid = %d", nobody, nobody))
	// newSetup wrote the running ids; rewrite them for nobody.
	text, err := os.ReadFile(s.cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(text), fmt.Sprintf("storage_uid = %d\nstorage_gid = %d\n", os.Geteuid(), os.Getegid()), "", 1)
	if err := os.WriteFile(s.cfg, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	// Let nobody reach the binary and own the setup.
	bin := daemonBinary(t)
	for _, p := range []string{filepath.Dir(bin), s.dir, filepath.Dir(s.dir)} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := filepath.Walk(s.dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, nobody, nobody)
	}); err != nil {
		t.Fatal(err)
	}
	cred := &syscall.Credential{Uid: nobody, Gid: nobody}

	d := startDaemonAs(t, s.cfg, cred)
	code := d.wait(t, 60*time.Second)
	msg := d.stderr.String()
	if code != 1 || !strings.Contains(msg, "needs root") || !strings.Contains(msg, "--no-fuse") || !strings.Contains(msg, s.mnt) {
		t.Errorf("exit %d, stderr %q; want 1 saying FUSE needs root and how to switch it off", code, msg)
	}
	if _, err := os.Lstat(s.socket); !os.IsNotExist(err) {
		t.Errorf("a refused start left the socket: %v", err)
	}

	d = startDaemonAs(t, s.cfg, cred, "--no-fuse")
	waitHealthy(t, d, s.socket)
	resp, err := httpClient(s.socket).Get("http://vfolderd/v1/views")
	if err != nil {
		t.Fatal(err)
	}
	var e api.Error
	err = json.NewDecoder(resp.Body).Decode(&e)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 503 || !strings.Contains(e.Message, "fuse = false") {
		t.Errorf("GET /v1/views without FUSE = %d %+v %v; want 503", resp.StatusCode, e, err)
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := d.wait(t, 60*time.Second); code != 0 {
		t.Errorf("exit %d after SIGTERM\n%s", code, d.stderr)
	}
}

func TestDaemonRefusesBadStart(t *testing.T) {
	t.Run("unknown key", func(t *testing.T) {
		s := newSetup(t, "colour = \"red\"")
		d := startDaemon(t, s.cfg)
		if code := d.wait(t, 60*time.Second); code != 1 || !strings.Contains(d.stderr.String(), "colour") {
			t.Errorf("exit %d, stderr %q; want 1 naming the key", code, d.stderr)
		}
	})
	t.Run("volume of another layout", func(t *testing.T) {
		s := newSetup(t, "")
		if err := os.WriteFile(filepath.Join(s.vol, "version.txt"), []byte("2"), 0o644); err != nil {
			t.Fatal(err)
		}
		d := startDaemon(t, s.cfg)
		code := d.wait(t, 60*time.Second)
		if code != 1 || !strings.Contains(d.stderr.String(), `volume "local"`) || !strings.Contains(d.stderr.String(), `says "2"`) {
			t.Errorf("exit %d, stderr %q; want 1 naming the volume and its version", code, d.stderr)
		}
		if _, err := os.Lstat(s.socket); !os.IsNotExist(err) {
			t.Errorf("a refused start created the socket: %v", err)
		}
	})
	t.Run("socket answered by someone else", func(t *testing.T) {
		s := newSetup(t, "")
		if err := os.MkdirAll(filepath.Dir(s.socket), 0o755); err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("unix", s.socket)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		d := startDaemon(t, s.cfg)
		if code := d.wait(t, 60*time.Second); code != 1 || !strings.Contains(d.stderr.String(), "answers connections") {
			t.Errorf("exit %d, stderr %q; want 1", code, d.stderr)
		}
		if _, err := os.Lstat(s.socket); err != nil {
			t.Errorf("the other process's socket was removed: %v", err)
		}
	})
}

// TestNoFUSESwitch checks fuse = false, VFOLDER_NO_FUSE and --no-fuse.
func TestNoFUSESwitch(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "vfolderd.toml")
	write := func(extra string) {
		text := fmt.Sprintf("state_dir = %q\n%s\n[volumes.a]\npath = %q\n", filepath.Join(dir, "state"), extra, dir+"/vol")
		if err := os.WriteFile(cfgPath, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(dir+"/vol", 0o755); err != nil {
		t.Fatal(err)
	}
	fuseOn := func(args ...string) bool {
		t.Helper()
		var got *config.Config
		app := newApp(func(_ context.Context, cfg *config.Config) error { got = cfg; return nil })
		if err := app.Run(append([]string{"vfolderd", "--config", cfgPath}, args...)); err != nil {
			t.Fatal(err)
		}
		return got.FUSE
	}
	write("")
	if !fuseOn() {
		t.Error("FUSE is off by default")
	}
	if fuseOn("--no-fuse") {
		t.Error("--no-fuse left FUSE on")
	}
	write("fuse = false")
	if fuseOn() {
		t.Error("fuse = false left FUSE on")
	}
	if !fuseOn("--no-fuse=false") {
		t.Error("--no-fuse=false does not override fuse = false")
	}
	write("fuse = true")
	t.Setenv("VFOLDER_NO_FUSE", "true")
	if fuseOn() {
		t.Error("VFOLDER_NO_FUSE=true left FUSE on")
	}
}
