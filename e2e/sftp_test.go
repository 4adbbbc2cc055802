package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/vfolder/vfolder/api"
)

// The SFTP endpoint, driven by OpenSSH's own clients (sftp -b, scp -s).

const (
	sftpUser   = "3f2e1d0c-9b8a-4765-8432-10fedcba9876"
	sftpUserHx = "3f2e1d0c9b8a4765843210fedcba9876"
)

// sftpEnv is a daemon with the SFTP endpoint on a loopback port, a user
// with a registered key and a second, unregistered key.
type sftpEnv struct {
	d             *Daemon
	port          string
	key, wrongKey string // private key files
	dir           string // scratch files of the test
}

func requireOpenSSH(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"sftp", "scp", "ssh-keygen"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs OpenSSH's %s (package openssh-client): %v", tool, err)
		}
	}
}

func sftpFreePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

func keygen(t *testing.T, path string) {
	t.Helper()
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "e2e", "-f", path).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
}

func startSFTP(t *testing.T, volumeConfig string) *sftpEnv {
	t.Helper()
	RequireRoot(t)
	requireOpenSSH(t)
	port := sftpFreePort(t)
	opt := DaemonOptions{ExtraArgs: []string{"--sftp-listen", "127.0.0.1:" + port}}
	if volumeConfig != "" {
		opt.VolumeConfig = map[string]string{"local": volumeConfig}
	}
	d := StartDaemon(t, opt)
	e := &sftpEnv{d: d, port: port, dir: t.TempDir()}
	e.key, e.wrongKey = filepath.Join(e.dir, "id"), filepath.Join(e.dir, "wrong")
	keygen(t, e.key)
	keygen(t, e.wrongKey)
	d.OK("sshkey", "add", "--user", sftpUser, e.key+".pub")
	return e
}

// sftp runs a batch with key as user; it returns the exit code and output.
func (e *sftpEnv) sftp(t *testing.T, key, user string, batch ...string) (int, string) {
	t.Helper()
	bf := filepath.Join(e.dir, "batch")
	if err := os.WriteFile(bf, []byte(strings.Join(batch, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return e.run(t, "sftp", "-b", bf, "-i", key, "-P", e.port, user+"@127.0.0.1")
}

func (e *sftpEnv) run(t *testing.T, tool string, args ...string) (int, string) {
	t.Helper()
	common := []string{"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
		"-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR", "-F", "/dev/null"}
	cmd := exec.Command(tool, append(common, args...)...)
	cmd.Dir = e.dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("%s %v: still running after 2 minutes\n%s", tool, args, out.String())
	}
	return cmd.ProcessState.ExitCode(), out.String()
}

func (e *sftpEnv) ok(t *testing.T, batch ...string) string {
	t.Helper()
	code, out := e.sftp(t, e.key, sftpUser, batch...)
	if code != 0 {
		t.Fatalf("sftp batch %q: exit %d\n%s\ndaemon log:\n%s", batch, code, out, tail(e.d.Log(), 20))
	}
	return out
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func randomFile(t *testing.T, path string, size int) []byte {
	t.Helper()
	b := make([]byte, size)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

func sameFile(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got) != sha256.Sum256(want) {
		t.Fatalf("%s: %d bytes, sha256 %x; want %d bytes, sha256 %x", path, len(got), sha256.Sum256(got), len(want), sha256.Sum256(want))
	}
}

func (e *sftpEnv) view(name string) string {
	return filepath.Join(e.d.MountPoint, "users", sftpUserHx, name)
}

func TestSFTPTransfers(t *testing.T) {
	e := startSFTP(t, "")
	var data api.Folder
	e.d.JSON(&data, "create", "data", "local", "--user", sftpUser, "--permission", "wd")
	src := randomFile(t, filepath.Join(e.dir, "src.bin"), 3<<20+12345)
	small := randomFile(t, filepath.Join(e.dir, "small.bin"), 777)

	out := e.ok(t,
		"ls /",
		"put src.bin /data/a.bin",
		"mkdir /data/sub",
		"put small.bin /data/sub/c.bin",
		"get /data/a.bin got-a.bin",
		"rename /data/a.bin /data/b.bin",
		"get /data/b.bin got-b.bin",
		"get /data/sub/c.bin got-c.bin",
		"ls -l /data",
		"rm /data/sub/c.bin",
		"rmdir /data/sub",
		"cd /data/../data/./",
		"get ../data/b.bin got-rel.bin",
	)
	if !strings.Contains(out, "data") || !strings.Contains(out, "b.bin") {
		t.Errorf("listings do not show the folder and the file:\n%s", out)
	}
	sameFile(t, filepath.Join(e.dir, "got-a.bin"), src)
	sameFile(t, filepath.Join(e.dir, "got-b.bin"), src)
	sameFile(t, filepath.Join(e.dir, "got-c.bin"), small)
	sameFile(t, filepath.Join(e.dir, "got-rel.bin"), src)
	// What the views show is what was written, at the storage owner.
	sameFile(t, filepath.Join(data.Path, "b.bin"), src)
	for _, gone := range []string{"a.bin", "sub"} {
		if _, err := os.Lstat(filepath.Join(data.Path, gone)); !os.IsNotExist(err) {
			t.Errorf("%s still on the volume: %v", gone, err)
		}
	}
	st, err := os.Stat(filepath.Join(data.Path, "b.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if uid := statUID(st); uid != StorageID {
		t.Errorf("b.bin on storage is owned by uid %d, want the storage uid %d", uid, StorageID)
	}

	// scp over the SFTP protocol, with the plain-hex login name.
	if code, out := e.run(t, "scp", "-s", "-i", e.key, "-P", e.port, "small.bin", sftpUserHx+"@127.0.0.1:/data/scp.bin"); code != 0 {
		t.Fatalf("scp -s: exit %d\n%s", code, out)
	}
	sameFile(t, filepath.Join(data.Path, "scp.bin"), small)
	if code, out := e.run(t, "scp", "-s", "-i", e.key, "-P", e.port, sftpUserHx+"@127.0.0.1:/data/b.bin", "scp-back.bin"); code != 0 {
		t.Fatalf("scp -s back: exit %d\n%s", code, out)
	}
	sameFile(t, filepath.Join(e.dir, "scp-back.bin"), src)

	// A key nobody registered is refused, and writes nothing.
	if code, out := e.sftp(t, e.wrongKey, sftpUser, "put small.bin /data/wrong.bin"); code == 0 {
		t.Fatalf("an unregistered key logged in:\n%s", out)
	}
	// The registered key of another login name is refused too.
	if code, out := e.sftp(t, e.key, "11111111222233334444555555555555", "ls /"); code == 0 {
		t.Fatalf("a key logged in as another user:\n%s", out)
	}
	if _, err := os.Lstat(filepath.Join(data.Path, "wrong.bin")); !os.IsNotExist(err) {
		t.Errorf("a refused login wrote a file: %v", err)
	}

	// Paths cannot leave the folder, and links on the volume are never
	// followed: listed, readable as links, refused as files.
	if err := os.Symlink("b.bin", filepath.Join(e.view("data"), "lnk")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(".", filepath.Join(e.view("data"), "dlnk")); err != nil {
		t.Fatal(err)
	}
	out = e.ok(t, "ls -l /data")
	if !strings.Contains(out, "lnk -> b.bin") && !strings.Contains(out, "lnk") {
		t.Errorf("the link is not listed:\n%s", out)
	}
	// A ".." is cleaned on the path, never resolved through a link.
	e.ok(t, "get /data/lnk/../b.bin y.bin")
	sameFile(t, filepath.Join(e.dir, "y.bin"), src)
	os.Remove(filepath.Join(e.dir, "y.bin"))
	for _, refused := range [][]string{
		{"get /data/lnk x.bin"},
		{"put small.bin /data/lnk"},
		{"get /data/dlnk/b.bin y.bin"},
		{"put small.bin /data/dlnk/y.bin"},
		{"put small.bin /newtop.bin"},
		{"mkdir /newfolder"},
		{"rm /data"},
		{"get /../../etc/passwd z.bin"},
	} {
		if code, out := e.sftp(t, e.key, sftpUser, refused...); code == 0 {
			t.Errorf("sftp %q succeeded:\n%s", refused, out)
		}
	}
	// Listing a link to a directory shows the link, not what it points at.
	if out := e.ok(t, "ls /data/dlnk/"); strings.Contains(out, "b.bin") || strings.Contains(out, "scp.bin") {
		t.Errorf("listing a link to a directory listed the directory:\n%s", out)
	}
	sameFile(t, filepath.Join(data.Path, "b.bin"), src)
	if _, err := os.Stat(filepath.Join(e.dir, "z.bin")); err == nil {
		t.Error("a path with .. reached outside the folders")
	}

	// A project's folder shows for its members, at the membership's
	// permission, and is gone once the membership is.
	const project = "6a5b4c3d2e1f40918273645546372819"
	var pf api.Folder
	e.d.JSON(&pf, "create", "shared", "local", "--project", project)
	if err := os.WriteFile(filepath.Join(pf.Path, "readme"), []byte("shared\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.d.OK("member", "add", "--project", project, "--user", sftpUser, "--permission", "ro")
	if out := e.ok(t, "ls /", "get /shared/readme readme"); !strings.Contains(out, "shared") {
		t.Errorf("the project folder is not listed:\n%s", out)
	}
	if code, out := e.sftp(t, e.key, sftpUser, "put small.bin /shared/x"); code == 0 {
		t.Errorf("a ro member wrote into the project folder:\n%s", out)
	}
	e.d.OK("member", "remove", "--project", project, "--user", sftpUser)
	if code, out := e.sftp(t, e.key, sftpUser, "get /shared/readme readme2"); code == 0 {
		t.Errorf("a former member read the project folder:\n%s", out)
	}

	// The CLI: --json lists, usage errors exit 2, refusals 1.
	var keys []api.SSHKey
	e.d.JSON(&keys, "sshkey", "list", "--user", sftpUserHx)
	if len(keys) != 1 || keys[0].Type != "ssh-ed25519" || !strings.HasPrefix(keys[0].Fingerprint, "SHA256:") {
		t.Errorf("sshkey list: %+v", keys)
	}
	if r := e.d.CLI("sshkey", "add", e.wrongKey+".pub"); r.Code != 2 {
		t.Errorf("sshkey add without --user: %s", r)
	}
	if r := e.d.CLI("sshkey", "add", "--user", "11111111222233334444555555555555", e.key+".pub"); r.Code != 1 || !strings.Contains(r.Stderr, "registered") {
		t.Errorf("the same key for another user: %s", r)
	}
	if r := e.d.CLI("sshkey", "add", "--user", sftpUser, e.wrongKey); r.Code != 1 {
		t.Errorf("a private key file: %s", r)
	}
	// After the key is removed (by its fingerprint), it is refused.
	e.d.OK("sshkey", "remove", "--user", sftpUser, keys[0].Fingerprint)
	if code, out := e.sftp(t, e.key, sftpUser, "ls /"); code == 0 {
		t.Fatalf("a removed key logged in:\n%s", out)
	}
}

func TestSFTPReadOnlyAndQuota(t *testing.T) {
	e := startSFTP(t, "")
	var ro, data api.Folder
	e.d.JSON(&ro, "create", "shelf", "local", "--user", sftpUser, "--permission", "ro")
	e.d.JSON(&data, "create", "data", "local", "--user", sftpUser)
	if err := os.WriteFile(filepath.Join(ro.Path, "kept.txt"), []byte("kept\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	small := randomFile(t, filepath.Join(e.dir, "small.bin"), 1000)
	e.ok(t, "put small.bin /data/s.bin", "get /shelf/kept.txt kept.txt")
	for _, refused := range []string{
		"put small.bin /shelf/new.bin", "put small.bin /shelf/kept.txt", "mkdir /shelf/d",
		"rm /shelf/kept.txt", "rename /shelf/kept.txt /shelf/k2.txt", "chmod 600 /shelf/kept.txt",
	} {
		if code, out := e.sftp(t, e.key, sftpUser, refused); code == 0 {
			t.Errorf("ro folder: %q succeeded:\n%s", refused, out)
		}
	}
	if got, _ := os.ReadFile(filepath.Join(ro.Path, "kept.txt")); string(got) != "kept\n" {
		t.Errorf("ro folder's file changed: %q", got)
	}
	entries, _ := os.ReadDir(ro.Path)
	if len(entries) != 1 {
		t.Errorf("ro folder holds %d entries, want 1", len(entries))
	}

	// Quota: room for part of the next upload only.
	before := dqScope(e.d, sftpUserHx)
	const room = 1<<20 + 4321
	e.d.OK("quota-scope", "set", "local", sftpUserHx, strconv.FormatInt(before.UsedBytes+room, 10), "-t", "user")
	big := randomFile(t, filepath.Join(e.dir, "big.bin"), 3<<20)
	code, out := e.sftp(t, e.key, sftpUser, "put big.bin /data/big.bin")
	if code == 0 {
		t.Fatalf("an upload past the quota succeeded:\n%s", out)
	}
	// The client gets (and the daemon logs) a message with the numbers.
	if want := "disk quota exceeded: quota scope user:" + sftpUserHx + " on volume local holds"; !strings.Contains(e.d.Log(), want) {
		t.Errorf("the daemon log does not say %q:\n%s", want, tail(e.d.Log(), 10))
	}
	// The partial upload keeps exactly what fit: a prefix of the source,
	// never more than the room; the usage counts exactly those bytes.
	got, err := os.ReadFile(filepath.Join(data.Path, "big.bin"))
	if err != nil {
		t.Fatalf("the partial upload: %v", err)
	}
	if len(got) != room || !bytes.Equal(got, big[:len(got)]) {
		t.Errorf("partial upload holds %d bytes (prefix of the source: %v), want the %d bytes that fit", len(got), bytes.Equal(got, big[:min(len(got), len(big))]), room)
	}
	after := dqScope(e.d, sftpUserHx)
	if after.UsedBytes != before.UsedBytes+int64(len(got)) || after.UsedBytes > after.LimitBytes {
		t.Errorf("usage %d after the refused upload, limit %d; want %d (before %d + %d stored)", after.UsedBytes, after.LimitBytes, before.UsedBytes+int64(len(got)), before.UsedBytes, len(got))
	}
	// A full scope refuses the next upload outright, and a delete makes
	// room again.
	if code, out := e.sftp(t, e.key, sftpUser, "put small.bin /data/s2.bin"); code == 0 {
		t.Errorf("an upload into a full scope succeeded:\n%s", out)
	}
	// df shows the quota: size about the limit (in KiB), nothing available.
	out = e.ok(t, "df /data")
	var size, used, avail int64
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) < 3 {
		t.Errorf("df /data:\n%s", out)
	} else if _, err := fmt.Sscan(lines[len(lines)-1], &size, &used, &avail); err != nil || avail != 0 || size > after.LimitBytes/1024 || size < after.LimitBytes/1024-4 {
		t.Errorf("df /data shows size %d KiB, %d available (%v); want about %d KiB, none available:\n%s", size, avail, err, after.LimitBytes/1024, out)
	}
	e.ok(t, "rm /data/big.bin", "put small.bin /data/s3.bin", "get /data/s3.bin s3.bin")
	sameFile(t, filepath.Join(e.dir, "s3.bin"), small)
	if final := dqScope(e.d, sftpUserHx); final.UsedBytes != before.UsedBytes+int64(len(small)) {
		t.Errorf("final usage %d, want %d (before + s3.bin)", final.UsedBytes, before.UsedBytes+int64(len(small)))
	}
}

func statUID(fi os.FileInfo) int {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid)
	}
	return -1
}

// TestSFTPRclone copies a tree up and back with rclone's sftp backend.
func TestSFTPRclone(t *testing.T) {
	if _, err := exec.LookPath("rclone"); err != nil {
		t.Skipf("needs rclone (package rclone): %v", err)
	}
	e := startSFTP(t, "")
	var data api.Folder
	e.d.JSON(&data, "create", "data", "local", "--user", sftpUser)
	up := filepath.Join(e.dir, "up")
	want := map[string][]byte{}
	for i, size := range []int{0, 1, 4096, 1<<20 + 3} {
		name := filepath.Join(fmt.Sprintf("d%d", i%2), fmt.Sprintf("f%d", i))
		if err := os.MkdirAll(filepath.Join(up, filepath.Dir(name)), 0o755); err != nil {
			t.Fatal(err)
		}
		want[name] = randomFile(t, filepath.Join(up, name), size)
	}
	rclone := func(args ...string) {
		t.Helper()
		cmd := exec.Command("rclone", append([]string{"--config", "/dev/null", "--low-level-retries", "1", "--retries", "1"}, args...)...)
		cmd.Env = append(os.Environ(),
			"RCLONE_CONFIG_VF_TYPE=sftp", "RCLONE_CONFIG_VF_HOST=127.0.0.1", "RCLONE_CONFIG_VF_PORT="+e.port,
			"RCLONE_CONFIG_VF_USER="+sftpUser, "RCLONE_CONFIG_VF_KEY_FILE="+e.key,
			// No shell on the endpoint: no remote hash commands.
			"RCLONE_CONFIG_VF_DISABLE_HASHCHECK=true", "RCLONE_CONFIG_VF_SHELL_TYPE=none")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("rclone %v: %v\n%s", args, err, out)
		}
	}
	rclone("copy", up, "vf:/data/tree")
	down := filepath.Join(e.dir, "down")
	rclone("copy", "vf:/data/tree", down)
	for name, b := range want {
		sameFile(t, filepath.Join(data.Path, "tree", name), b)
		sameFile(t, filepath.Join(down, name), b)
	}
	rclone("purge", "vf:/data/tree")
	if _, err := os.Lstat(filepath.Join(data.Path, "tree")); !os.IsNotExist(err) {
		t.Errorf("rclone purge left the tree: %v", err)
	}
}

// TestSFTPNoDelete: on a volume with rw_can_delete = false a rw folder
// takes new files and renames onto new names, and refuses deletes.
func TestSFTPNoDelete(t *testing.T) {
	e := startSFTP(t, "rw_can_delete = false")
	var data api.Folder
	e.d.JSON(&data, "create", "data", "local", "--user", sftpUser, "--permission", "rw")
	small := randomFile(t, filepath.Join(e.dir, "small.bin"), 4321)
	e.ok(t, "put small.bin /data/a.bin", "mkdir /data/d", "rename /data/a.bin /data/b.bin", "put small.bin /data/c.bin")
	for _, refused := range []string{"rm /data/b.bin", "rmdir /data/d", "rename /data/c.bin /data/b.bin"} {
		if code, out := e.sftp(t, e.key, sftpUser, refused); code == 0 {
			t.Errorf("rw without delete: %q succeeded:\n%s", refused, out)
		}
	}
	sameFile(t, filepath.Join(data.Path, "b.bin"), small)
	sameFile(t, filepath.Join(data.Path, "c.bin"), small)
	if st, err := os.Stat(filepath.Join(data.Path, "d")); err != nil || !st.IsDir() {
		t.Errorf("the directory: %v %v", st, err)
	}
}

// TestSFTPStopWithOpenSession: SIGTERM while a session holds a file open
// for writing ends the session, and the daemon exits cleanly with its
// mounts gone; the bytes written so far are on the volume and counted.
func TestSFTPStopWithOpenSession(t *testing.T) {
	e := startSFTP(t, "")
	var data api.Folder
	e.d.JSON(&data, "create", "data", "local", "--user", sftpUser)
	before := dqScope(e.d, sftpUserHx)
	keyPEM, err := os.ReadFile(e.key)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ssh.Dial("tcp", "127.0.0.1:"+e.port, &ssh.ClientConfig{
		User: sftpUser, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl, err := sftp.NewClient(c)
	if err != nil {
		t.Fatal(err)
	}
	f, err := cl.OpenFile("/data/open.bin", os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		t.Fatal(err)
	}
	chunk := bytes.Repeat([]byte("v"), 100000)
	if _, err := f.Write(chunk); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	e.d.Stop() // fails the test on an unclean exit or mounts left behind
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("stopping with an open SFTP session took %v", took)
	}
	if _, err := cl.Stat("/data"); err == nil {
		t.Error("the SFTP session survived the daemon")
	}
	if got, err := os.ReadFile(filepath.Join(data.Path, "open.bin")); err != nil || !bytes.Equal(got, chunk) {
		t.Errorf("open.bin holds %d bytes (%v), want the %d written", len(got), err, len(chunk))
	}
	e.d.Start()
	if after := dqScope(e.d, sftpUserHx); after.UsedBytes != before.UsedBytes+int64(len(chunk)) {
		t.Errorf("usage after the restart %d, want %d", after.UsedBytes, before.UsedBytes+int64(len(chunk)))
	}
}
