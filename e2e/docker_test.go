package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/e2e/oci"
)

// Docker end to end: a real Docker engine (Debian's docker.io) runs the
// session's containers with the --mount flags a runtime derives from the
// publish answer, and does what the runc/crun tests do.
//
// The test starts its own dockerd with a private data root, exec root
// (which also holds the containerd that dockerd starts for itself),
// pidfile, unix socket and an empty daemon config, under a directory of
// its own; --bridge=none, --iptables=false and --ip6tables=false keep it
// away from the host's networking. There is no image registry: the image
// is the busybox rootfs the runc/crun tests build, brought in with
// `docker import`. At the end the containers are removed, that dockerd
// (its PID only) is stopped, and whatever it left mounted under its
// directory is detached.

// dockerEngine is a dockerd started by a test.
type dockerEngine struct {
	t      *testing.T
	dir    string
	host   string // DOCKER_HOST
	client string // docker CLI
	cmd    *exec.Cmd
	done   chan struct{}
}

// dockerSkip skips t, or fails it under CI (CI installs docker.io, so
// there the test must run).
func dockerSkip(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") != "" {
		t.Fatalf("%s (CI must run the Docker tests: contrib/install-deps.sh installs docker.io)", msg)
	}
	t.Skip(msg)
}

// startDocker starts a private dockerd, or skips the test with the reason
// it cannot.
func startDocker(t *testing.T) *dockerEngine {
	t.Helper()
	RequireRoot(t)
	oci.Require(t, oci.Runc) // the busybox rootfs; dockerd runs runc too
	dockerd, err := exec.LookPath("dockerd")
	if err != nil {
		if _, e := os.Stat("/usr/sbin/dockerd"); e == nil {
			dockerd = "/usr/sbin/dockerd"
		} else {
			dockerSkip(t, "needs dockerd (Debian's docker.io; contrib/install-deps.sh installs it)")
		}
	}
	client := "/usr/bin/docker" // docker.io's client, of dockerd's version
	if _, err := os.Stat(client); err != nil {
		if client, err = exec.LookPath("docker"); err != nil {
			dockerSkip(t, "needs the docker client (docker.io)")
		}
	}
	// Short: unix socket paths (dockerd's, containerd's) are limited.
	dir, err := os.MkdirTemp("", "vfdk-")
	if err != nil {
		t.Fatal(err)
	}
	e := &dockerEngine{t: t, dir: dir, host: "unix://" + filepath.Join(dir, "docker.sock"), client: client, done: make(chan struct{})}
	cfg := filepath.Join(dir, "daemon.json")
	if err := os.WriteFile(cfg, []byte("{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "dockerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	e.cmd = exec.Command(dockerd,
		"--config-file", cfg,
		"--data-root", filepath.Join(dir, "data"),
		"--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "dockerd.pid"),
		"--host", e.host,
		"--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-masq=false",
		"--log-level=warn")
	e.cmd.Stdout, e.cmd.Stderr = logf, logf
	e.cmd.Env = append(cleanEnv(), "PATH=/usr/sbin:/usr/bin:/sbin:/bin")
	if err := e.cmd.Start(); err != nil {
		logf.Close()
		os.RemoveAll(dir)
		dockerSkip(t, "dockerd does not start: %v", err)
	}
	go func() {
		_ = e.cmd.Wait()
		logf.Close()
		close(e.done)
	}()
	t.Cleanup(e.stop)
	deadline := time.Now().Add(90 * time.Second)
	for {
		out, err := e.run("version", "--format", "{{.Server.Version}}")
		if err == nil {
			t.Logf("dockerd %s at %s", strings.TrimSpace(out), e.host)
			break
		}
		select {
		case <-e.done:
			dockerSkip(t, "dockerd cannot run here: it exited; its log:\n%s", e.logTail())
		default:
		}
		if time.Now().After(deadline) {
			dockerSkip(t, "dockerd did not answer within 90 s (%v); its log:\n%s", err, e.logTail())
		}
		time.Sleep(300 * time.Millisecond)
	}
	return e
}

func (e *dockerEngine) logTail() string {
	b, _ := os.ReadFile(filepath.Join(e.dir, "dockerd.log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// run runs the docker client against this engine.
func (e *dockerEngine) run(args ...string) (string, error) {
	return e.runIn(nil, args...)
}

func (e *dockerEngine) runIn(stdin []byte, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.client, args...)
	cmd.Env = append(cleanEnv(), "DOCKER_HOST="+e.host, "DOCKER_CONFIG="+filepath.Join(e.dir, "client"))
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// ok runs the docker client and fails the test when it fails.
func (e *dockerEngine) ok(args ...string) string {
	e.t.Helper()
	out, err := e.run(args...)
	if err != nil {
		e.t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(out)
}

// stop removes every container, stops this dockerd (SIGTERM to its PID,
// SIGKILL after 60 s) and detaches what it left mounted under its
// directory before removing it.
func (e *dockerEngine) stop() {
	t := e.t
	if ids, err := e.run("ps", "-aq"); err == nil && strings.TrimSpace(ids) != "" {
		if out, err := e.run(append([]string{"rm", "-f"}, strings.Fields(ids)...)...); err != nil {
			t.Errorf("docker rm -f: %v\n%s", err, out)
		}
	}
	select {
	case <-e.done:
	default:
		_ = e.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-e.done:
		case <-time.After(60 * time.Second):
			t.Errorf("dockerd did not stop within 60 s; killing it")
			_ = e.cmd.Process.Kill()
			<-e.done
		}
	}
	for _, m := range mountsUnder(e.dir) {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil {
			t.Errorf("detaching %s: %v", m, err)
		}
	}
	if err := os.RemoveAll(e.dir); err != nil {
		t.Errorf("removing %s: %v", e.dir, err)
	}
}

// importBusybox builds the busybox rootfs of the runc/crun tests and
// imports it as an image; it returns the image name.
func (e *dockerEngine) importBusybox() string {
	e.t.Helper()
	rootfs := filepath.Join(e.t.TempDir(), "rootfs")
	if err := oci.BuildRootfs(rootfs); err != nil {
		e.t.Fatal(err)
	}
	tarball, err := exec.Command("tar", "-C", rootfs, "--numeric-owner", "-cf", "-", ".").Output()
	if err != nil {
		e.t.Fatalf("tar of the rootfs: %v", err)
	}
	const image = "vfolder-e2e/busybox:latest"
	if out, err := e.runIn(tarball, "import", "-", image); err != nil {
		e.t.Fatalf("docker import: %v\n%s", err, out)
	}
	return image
}

// dockerJQ is the README's jq program that turns `vfolder --json mount
// publish` output into docker run flags, one a line.
const dockerJQ = `(.mounts[].oci), ((.reserved // [])[] | .oci // empty)
  | "--mount=type=bind,src=\(.source),dst=\(.destination),bind-propagation=rslave"
    + (if any(.options[]; . == "ro") then ",readonly" else "" end)`

// dockerFlagsJQ runs dockerJQ over a publish answer; ok is false when jq
// is not installed.
func dockerFlagsJQ(t *testing.T, publishJSON string) (flags []string, ok bool) {
	t.Helper()
	jq, err := exec.LookPath("jq")
	if err != nil {
		return nil, false
	}
	cmd := exec.Command(jq, "-r", dockerJQ)
	cmd.Stdin = strings.NewReader(publishJSON)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("jq %s: %v", dockerJQ, err)
	}
	return strings.Fields(string(out)), true
}

// dockerMountFlags turns a publish answer into docker run flags, the way
// the README tells a runtime to: one --mount per "oci" object,
// type=bind, src and dst from it, bind-propagation=rslave, and readonly
// when its options say "ro".
func dockerMountFlags(s api.Session) []string {
	var out []string
	add := func(o api.OCIMount) {
		f := "type=bind,src=" + o.Source + ",dst=" + o.Destination + ",bind-propagation=rslave"
		for _, opt := range o.Options {
			if opt == "ro" {
				f += ",readonly"
			}
		}
		out = append(out, "--mount="+f)
	}
	for _, m := range s.Mounts {
		add(m.OCI)
	}
	for _, r := range s.Reserved {
		if r.OCI != nil {
			add(*r.OCI)
		}
	}
	return out
}

// exec runs a shell script in container name as uid; it returns the
// output and whether it succeeded.
func (e *dockerEngine) exec(name string, uid int, script string) (string, error) {
	return e.run("exec", "-u", fmt.Sprintf("%d:%d", uid, uid), name, "sh", "-c", script)
}

func (e *dockerEngine) execOK(name string, uid int, script string) string {
	e.t.Helper()
	out, err := e.exec(name, uid, script)
	if err != nil {
		e.t.Fatalf("in %s as %d: %q: %v\n%s", name, uid, script, err, out)
	}
	return out
}

func (e *dockerEngine) execFails(name string, uid int, script string) string {
	e.t.Helper()
	out, err := e.exec(name, uid, script)
	var ee *exec.ExitError
	if err == nil {
		e.t.Fatalf("in %s as %d: %q succeeded; want a failure\n%s", name, uid, script, out)
	} else if !errors.As(err, &ee) {
		e.t.Fatalf("in %s: %q: %v\n%s", name, script, err, out)
	}
	return out
}

// execWorks retries script until it succeeds (the first access after a
// daemon restart may race the reconcile of the last mount).
func (e *dockerEngine) execWorks(name string, uid int, script string) string {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err := e.exec(name, uid, script)
		if err == nil {
			return out
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("in %s %q keeps failing: %v\n%s", name, script, err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// capNames are the capabilities by number, as docker names them.
var capNames = []string{
	"CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL",
	"SETGID", "SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE",
	"NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
	"SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
	"SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME",
	"SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL",
	"SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM",
	"BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
}

// missingCaps lists the capabilities outside this process's bounding set.
func missingCaps() []string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapBnd:"); ok {
			bnd, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return nil
			}
			var out []string
			for i, n := range capNames {
				if bnd&(1<<uint(i)) == 0 {
					out = append(out, n)
				}
			}
			return out
		}
	}
	return nil
}

func TestDockerSession(t *testing.T) {
	dk := startDocker(t)
	image := dk.importBusybox()
	d, sessDir := mdStartDaemon(t)
	const sid = "sess-docker"
	u := []string{"--user", mdUser}
	var data, ref, late, hot api.Folder
	d.JSON(&data, append([]string{"create", "data", "local"}, u...)...)
	d.JSON(&ref, append([]string{"create", "ref", "local", "--permission", "ro"}, u...)...)
	d.JSON(&late, append([]string{"create", "late", "local"}, u...)...)
	d.JSON(&hot, append([]string{"create", "hot", "local"}, u...)...)
	d.OK("quota-scope", "set", "local", mdUser, "16M", "-t", "user")
	mdWriteMarker(t, ref, "marker", "read-only")
	mdWriteMarker(t, late, "marker", "late")
	mdWriteMarker(t, hot, "marker", "hot")

	var s api.Session
	r := d.OK(append([]string{"--json", "mount", "publish", sid, "data", "ref", "--uid", "1000", "--gid", "1000", "--reserve", "late"}, u...)...)
	if err := json.Unmarshal([]byte(r.Stdout), &s); err != nil {
		t.Fatalf("publish answer: %v\n%s", err, r.Stdout)
	}
	flags := dockerMountFlags(s)
	if len(flags) != 3 {
		t.Fatalf("docker flags %q from %+v; want 3 (data, ref, the reserved target)", flags, s)
	}
	// The README's jq line gives the same flags.
	if fromJQ, ok := dockerFlagsJQ(t, r.Stdout); ok && !reflect.DeepEqual(fromJQ, flags) {
		t.Errorf("the README's jq program gives %q; want %q", fromJQ, flags)
	} else if !ok {
		t.Log("jq is not installed: the README's jq line is not checked")
	}
	t.Logf("docker run %s", strings.Join(flags, " "))
	run := append([]string{"run", "-d", "--name", "vf-work", "--network", "none", "--user", "1000:1000"}, flags...)
	dk.ok(append(run, image, "sleep", "600")...)

	// rw folder: written as the container user, stored as the storage uid.
	dk.execOK("vf-work", 1000, "echo hi > /home/work/data/x")
	if got := ctrReadHost(t, filepath.Join(data.Path, "x")); got != "hi\n" {
		t.Errorf("x on the volume: %q", got)
	}
	if uid, gid := ctrOwnerOf(t, filepath.Join(data.Path, "x")); uid != StorageID || gid != StorageID {
		t.Errorf("x on the volume owned by %d:%d; want %d:%d", uid, gid, StorageID, StorageID)
	}
	if out := dk.execOK("vf-work", 1000, "ls -ln /home/work/data/x"); len(strings.Fields(out)) < 4 || strings.Fields(out)[2] != "1000" || strings.Fields(out)[3] != "1000" {
		t.Errorf("ls -ln in the container: %q; want 1000 1000", out)
	}
	// ro folder: EROFS, for root in the container too.
	if got := dk.execOK("vf-work", 1000, "cat /home/work/ref/marker"); got != "read-only" {
		t.Errorf("ro marker: %q", got)
	}
	for _, uid := range []int{1000, 0} {
		if out := dk.execFails("vf-work", uid, "echo no > /home/work/ref/y"); !strings.Contains(out, "Read-only file system") {
			t.Errorf("write into the ro folder as %d: %q", uid, out)
		}
	}

	t.Run("df and EDQUOT", func(t *testing.T) {
		out := dk.execOK("vf-work", 1000, "df -k /home/work/data")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		f := strings.Fields(lines[len(lines)-1])
		if len(f) < 2 {
			t.Fatalf("df output %q", out)
		}
		if total, err := strconv.ParseInt(f[1], 10, 64); err != nil || total != 16<<10 {
			t.Errorf("df in the container shows %q KiB; want the quota, %d KiB", f[1], 16<<10)
		}
		out, err := dk.exec("vf-work", 1000, "dd if=/dev/zero of=/home/work/data/big bs=1M count=32 conv=fsync")
		if err == nil || !strings.Contains(out, "Disk quota exceeded") {
			t.Errorf("dd of 32 MiB under a 16 MiB quota: %v, %q; want \"Disk quota exceeded\"", err, out)
		}
		dk.execOK("vf-work", 1000, "rm /home/work/data/big")
	})

	t.Run("privileged remount", func(t *testing.T) {
		priv := append([]string{"run", "-d", "--name", "vf-priv", "--network", "none", "--privileged"}, flags...)
		if out, err := dk.run(append(priv, image, "sleep", "600")...); err != nil {
			// --privileged asks for every capability the kernel knows;
			// where this process's bounding set lacks some (a sandbox),
			// the runtime cannot grant them. Every capability held, no
			// seccomp filter, is what matters for the remount.
			missing := missingCaps()
			if !strings.Contains(out, "apply caps") || len(missing) == 0 {
				t.Fatalf("docker run --privileged: %v\n%s", err, out)
			}
			t.Logf("--privileged cannot run here (%s); all capabilities but %v, unconfined, instead", strings.TrimSpace(out), missing)
			dk.ok("rm", "-f", "vf-priv")
			priv = []string{"run", "-d", "--name", "vf-priv", "--network", "none", "--cap-add", "ALL", "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined"}
			for _, c := range missing {
				priv = append(priv, "--cap-drop", c)
			}
			priv = append(priv, flags...)
			dk.ok(append(priv, image, "sleep", "600")...)
		}
		out, err := dk.exec("vf-priv", 0, "mount -o remount,rw /home/work/ref")
		t.Logf("privileged remount,rw of the ro folder: err=%v %q", err, out)
		if out := dk.execFails("vf-priv", 0, "echo x > /home/work/ref/priv"); !strings.Contains(out, "Read-only file system") {
			t.Errorf("privileged write into the ro folder: %q", out)
		}
		if _, err := os.Lstat(filepath.Join(ref.Path, "priv")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the privileged container wrote into the ro folder: %v", err)
		}
		dk.ok("rm", "-f", "vf-priv")
	})

	// Hot-add: published while the container runs, at the reserved
	// target, it appears inside through the rslave propagation.
	if out, err := dk.exec("vf-work", 1000, "cat /home/work/late/marker"); err == nil {
		t.Fatalf("late folder visible before it was published: %q", out)
	}
	d.JSON(&s, append([]string{"mount", "publish", sid, "late", "--uid", "1000", "--gid", "1000"}, u...)...)
	if got := dk.execOK("vf-work", 1000, "cat /home/work/late/marker"); got != "late" {
		t.Errorf("late folder inside: %q", got)
	}
	dk.execOK("vf-work", 1000, "echo lw > /home/work/late/w")
	if got := ctrReadHost(t, filepath.Join(late.Path, "w")); got != "lw\n" {
		t.Errorf("write into the hot-added folder reached the volume as %q", got)
	}
	// And without a reservation: attach with the container's PID.
	d.JSON(&s, append([]string{"mount", "publish", sid, "hot", "--uid", "1000", "--gid", "1000"}, u...)...)
	pid := dk.ok("inspect", "-f", "{{.State.Pid}}", "vf-work")
	d.OK("mount", "attach", sid, "--pid", pid)
	if got := dk.execOK("vf-work", 1000, "cat /home/work/hot/marker"); got != "hot" {
		t.Errorf("attached folder inside: %q", got)
	}

	// vfolderd restarts (killed, then stopped with two SIGTERMs, then
	// killed) under the running container: its folders work again, the
	// live view is on top of each of its targets, and each key on the
	// host holds that view alone.
	for round := 1; round <= 3; round++ {
		name := fmt.Sprintf("restart %d", round)
		if round != 2 {
			d.Kill()
		} else {
			d.mdSignal(t, syscall.SIGTERM)
			d.mdWaitLog(t, "refusing to stop")
			d.mdSignal(t, syscall.SIGTERM)
			if err := d.mdWaitExit(t, 60*time.Second); err != nil {
				t.Fatalf("forced stop exited with %v; log:\n%s", err, d.Log())
			}
		}
		if out, err := dk.exec("vf-work", 1000, "cat /home/work/data/x"); err == nil {
			t.Errorf("%s: the folder still worked with vfolderd stopped: %q", name, out)
		}
		d.Start()
		if got := dk.execWorks("vf-work", 1000, "cat /home/work/data/x"); got != "hi\n" {
			t.Errorf("%s: data: %q", name, got)
		}
		w := fmt.Sprintf("r%d", round)
		dk.execOK("vf-work", 1000, "echo "+w+" > /home/work/data/"+w)
		if got := ctrReadHost(t, filepath.Join(data.Path, w)); got != w+"\n" {
			t.Errorf("%s: write reached the volume as %q", name, got)
		}
		if out := dk.execFails("vf-work", 1000, "echo no > /home/work/ref/z"); !strings.Contains(out, "Read-only file system") {
			t.Errorf("%s: ro folder: %q", name, out)
		}
		for tgt, want := range map[string]string{"/home/work/ref/marker": "read-only", "/home/work/late/w": "lw\n", "/home/work/hot/marker": "hot"} {
			if got := dk.execWorks("vf-work", 1000, "cat "+tgt); got != want {
				t.Errorf("%s: %s = %q; want %q", name, tgt, got, want)
			}
		}
		rsCheckKeys(t, sessDir, sid, name)
		cpid, err := strconv.Atoi(dk.ok("inspect", "-f", "{{.State.Pid}}", "vf-work"))
		if err != nil {
			t.Fatal(err)
		}
		for tgt, key := range map[string]string{"/home/work/data": "data", "/home/work/ref": "ref", "/home/work/hot": "hot"} {
			n := rsCheckContainer(t, cpid, tgt, sessDir, sid, key, name)
			t.Logf("%s: %d mounts at %s in the container", name, n, tgt)
		}
	}

	dk.ok("rm", "-f", "vf-work")
	mdUnpublish(t, d, sid, 4)
	if left := mdMountsBelow(sessDir); len(left) > 0 {
		t.Errorf("mounts left below %s after unpublish: %v", sessDir, left)
	}
}
