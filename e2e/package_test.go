package e2e

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vfolder/vfolder/api"
)

// buildPackage runs contrib/package over the test's binaries and returns
// the .deb.
func buildPackage(t *testing.T, version, dir string) string {
	t.Helper()
	daemon, _ := Binaries(t)
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = "/usr/local/go/bin/go"
	}
	out := filepath.Join(dir, "vfolder.deb")
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "run", ".", "-root", moduleRoot(), "-bin", filepath.Dir(daemon), "-version", version, "-out", out)
	cmd.Dir = filepath.Join(moduleRoot(), "contrib", "package")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the package: %v\n%s", err, b)
	}
	return out
}

func runTool(t *testing.T, name string, args ...string) string {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

// unitValues reads a systemd unit: every Key=value of every section.
func unitValues(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	vals := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: bad line %q", path, line)
		}
		vals[k] = append(vals[k], v)
	}
	return vals
}

// TestPackage builds the .deb, checks its metadata, installs it into a
// fresh root with dpkg --root, checks what it installed, starts the unit's
// ExecStart command from that root against a private state directory and
// volume (with the packaged configuration, its paths moved), checks that
// the daemon serves, stops it, and removes the package.
func TestPackage(t *testing.T) {
	RequireRoot(t)
	for _, tool := range []string{"dpkg", "dpkg-deb", "bash"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (contrib/install-deps.sh)", tool)
		}
	}
	dir := newDir(t)
	const version = "1.2.3~test1"
	deb := buildPackage(t, version, dir)

	// Metadata.
	fields := runTool(t, "dpkg-deb", "-f", deb, "Package", "Version", "Architecture", "Section", "Recommends")
	for _, want := range []string{"Package: vfolder", "Version: " + version, "Section: admin", "Recommends: fuse3"} {
		if !strings.Contains(fields, want) {
			t.Errorf("dpkg-deb -f: no %q in\n%s", want, fields)
		}
	}
	ctrl := filepath.Join(dir, "control")
	runTool(t, "dpkg-deb", "-e", deb, ctrl)
	if b, _ := os.ReadFile(filepath.Join(ctrl, "conffiles")); strings.TrimSpace(string(b)) != "/etc/vfolder/vfolderd.toml" {
		t.Errorf("conffiles: %q, want the configuration alone", b)
	}
	for _, s := range []string{"postinst", "prerm", "postrm"} {
		if st, err := os.Stat(filepath.Join(ctrl, s)); err != nil || st.Mode().Perm()&0o111 == 0 {
			t.Errorf("maintainer script %s: %v", s, err)
		}
	}

	// Install into a fresh root. The maintainer scripts run outside it
	// (--force-script-chrootless) and see DPKG_ROOT: they leave the host's
	// systemd alone.
	root := filepath.Join(dir, "root")
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "var/lib/dpkg/status"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	dpkg := func(args ...string) string {
		t.Helper()
		return runTool(t, "dpkg", append([]string{"--root=" + root, "--log=/dev/null", "--force-script-chrootless", "--force-depends"}, args...)...)
	}
	dpkg("-i", deb)
	if st := dpkg("-s", "vfolder"); !strings.Contains(st, "Status: install ok installed") || !strings.Contains(st, "Version: "+version) {
		t.Fatalf("dpkg -s after install:\n%s", st)
	}
	listed := dpkg("-L", "vfolder")
	for path, mode := range map[string]os.FileMode{
		"/usr/bin/vfolderd":                              0o755,
		"/usr/bin/vfolder":                               0o755,
		"/lib/systemd/system/vfolderd.service":           0o644,
		"/etc/vfolder":                                   0o750 | os.ModeDir,
		"/etc/vfolder/vfolderd.toml":                     0o640,
		"/var/lib/vfolder":                               0o700 | os.ModeDir,
		"/usr/share/bash-completion/completions/vfolder": 0o644,
		"/usr/share/man/man8/vfolder.8.gz":               0o644,
		"/usr/share/man/man8/vfolderd.8.gz":              0o644,
		"/usr/share/doc/vfolder/operations.md":           0o644,
		"/usr/share/doc/vfolder/openapi.yaml":            0o644,
		"/usr/share/doc/vfolder/copyright":               0o644,
	} {
		st, err := os.Lstat(filepath.Join(root, path))
		if err != nil {
			t.Errorf("installed %s: %v", path, err)
			continue
		}
		if got := st.Mode() & (os.ModePerm | os.ModeDir); got != mode {
			t.Errorf("%s: mode %v, want %v", path, got, mode)
		}
		if sys := st.Sys().(*syscall.Stat_t); sys.Uid != 0 || sys.Gid != 0 {
			t.Errorf("%s: owned by %d:%d, want root", path, sys.Uid, sys.Gid)
		}
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(path) + `$`).MatchString(listed) {
			t.Errorf("dpkg -L does not list %s", path)
		}
	}
	// The packaged configuration is the sample.
	sample, _ := os.ReadFile(filepath.Join(moduleRoot(), "contrib", "vfolderd.toml.sample"))
	conf, err := os.ReadFile(filepath.Join(root, "etc/vfolder/vfolderd.toml"))
	if err != nil || !bytes.Equal(conf, sample) {
		t.Errorf("/etc/vfolder/vfolderd.toml differs from contrib/vfolderd.toml.sample (%v)", err)
	}

	// The unit.
	unit := unitValues(t, filepath.Join(root, "lib/systemd/system/vfolderd.service"))
	one := func(k string) string {
		if len(unit[k]) != 1 {
			t.Errorf("unit: %s = %q, want one value", k, unit[k])
			return ""
		}
		return unit[k][0]
	}
	if v := one("Restart"); v != "on-failure" {
		t.Errorf("unit: Restart=%s, want on-failure", v)
	}
	if v := one("KillMode"); v != "mixed" {
		t.Errorf("unit: KillMode=%s, want mixed (SIGTERM to the FUSE server alone)", v)
	}
	if v := one("LimitNOFILE"); v == "" {
		t.Error("unit: no LimitNOFILE")
	}
	after := strings.Join(unit["After"], " ")
	for _, want := range []string{"local-fs.target", "remote-fs.target"} {
		if !strings.Contains(after, want) {
			t.Errorf("unit: After=%s lacks %s", after, want)
		}
	}
	exec0 := strings.Fields(one("ExecStart"))
	if len(exec0) == 0 || exec0[0] != "/usr/bin/vfolderd" {
		t.Fatalf("unit: ExecStart=%v, want /usr/bin/vfolderd ...", exec0)
	}

	// Completion and man pages.
	comp := filepath.Join(root, "usr/share/bash-completion/completions/vfolder")
	got := runTool(t, "bash", "-c", `source "$1"; complete -p vfolder >/dev/null && COMP_WORDS=(vfolder quota-scope s) COMP_CWORD=2 && _vfolder && echo "${COMPREPLY[*]}"`, "-", comp)
	if strings.TrimSpace(got) != "set" {
		t.Errorf("completion of 'vfolder quota-scope s': %q, want set", got)
	}
	for _, m := range []string{"vfolder.8.gz", "vfolderd.8.gz"} {
		f, err := os.Open(filepath.Join(root, "usr/share/man/man8", m))
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(f)
		if err != nil {
			t.Fatalf("%s: %v", m, err)
		}
		page, _ := io.ReadAll(zr)
		f.Close()
		if !bytes.Contains(page, []byte(".TH vfolder")) || !bytes.Contains(page, []byte("--socket")) {
			t.Errorf("%s is not a man page naming --socket:\n%.300s", m, page)
		}
	}

	// Start the unit's command from the installed tree, against private
	// directories, with the packaged configuration's paths moved there.
	work := filepath.Join(dir, "w")
	paths := map[string]string{
		`state_dir = "/var/lib/vfolder"`:         `state_dir = "` + filepath.Join(work, "state") + `"`,
		`socket = "/run/vfolder/vfolderd.sock"`:  `socket = "` + filepath.Join(work, "s.sock") + `"`,
		`mount_point = "/run/vfolder/mnt"`:       `mount_point = "` + filepath.Join(work, "mnt") + `"`,
		`sessions_dir = "/run/vfolder/sessions"`: `sessions_dir = "` + filepath.Join(work, "sessions") + `"`,
		`path = "/vfroot/local"`:                 `path = "` + filepath.Join(work, "vol") + `"`,
		`log_level = "warn"`:                     `log_level = "info"`,
	}
	text := string(conf)
	for from, to := range paths {
		if !strings.Contains(text, from) {
			t.Fatalf("the packaged configuration has no line %q", from)
		}
		text = strings.Replace(text, from, to, 1)
	}
	for _, d := range []string{"state", "mnt", "vol"} {
		if err := os.MkdirAll(filepath.Join(work, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	cfgPath := filepath.Join(work, "vfolderd.toml")
	if err := os.WriteFile(cfgPath, []byte(text), 0o640); err != nil {
		t.Fatal(err)
	}
	args := make([]string, 0, len(exec0))
	for _, a := range exec0[1:] {
		if a == "/etc/vfolder/vfolderd.toml" {
			a = cfgPath
		}
		args = append(args, a)
	}
	logBuf := &bytes.Buffer{}
	cmd := exec.Command(filepath.Join(root, exec0[0]), args...)
	cmd.Stdout, cmd.Stderr = logBuf, logBuf
	cmd.Env = cleanEnv()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	defer func() {
		if !stopped {
			_ = cmd.Process.Kill()
			<-exited
		}
	}()
	c := api.NewClient(filepath.Join(work, "s.sock"))
	defer c.CloseIdleConnections()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := c.Health(ctx)
		cancel()
		if err == nil {
			break
		}
		select {
		case err := <-exited:
			stopped = true
			t.Fatalf("the packaged vfolderd exited: %v\n%s", err, logBuf)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the packaged vfolderd does not answer: %v\n%s", err, logBuf)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The packaged CLI talks to it.
	r := RunCLI(t, filepath.Join(root, "usr/bin/vfolder"), filepath.Join(work, "s.sock"), "volume", "list")
	if r.Code != 0 || !strings.Contains(r.Stdout, "local") {
		t.Errorf("the packaged CLI: %s", r)
	}
	// Stop as systemd does (KillSignal=SIGTERM): a clean exit, no mount left.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			t.Errorf("the packaged vfolderd stopped with %v\n%s", err, logBuf)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("the packaged vfolderd did not stop within 60 s (the unit's TimeoutStopSec)\n%s", logBuf)
	}
	if left := mountsUnder(work); len(left) > 0 {
		t.Errorf("mounts left after the stop: %v", left)
	}

	// Remove keeps the configuration (a conffile); purge takes it.
	dpkg("-r", "vfolder")
	if _, err := os.Stat(filepath.Join(root, "usr/bin/vfolderd")); !os.IsNotExist(err) {
		t.Errorf("/usr/bin/vfolderd after remove: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/vfolder/vfolderd.toml")); err != nil {
		t.Errorf("the configuration after remove: %v (a conffile stays until purge)", err)
	}
	dpkg("-P", "vfolder")
	if _, err := os.Stat(filepath.Join(root, "etc/vfolder/vfolderd.toml")); !os.IsNotExist(err) {
		t.Errorf("the configuration after purge: %v", err)
	}
}
