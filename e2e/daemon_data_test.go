package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/api"
)

// Data rules through the real daemon: set-id bits, chown, O_DIRECT at the
// quota boundary, fallocate KEEP_SIZE.

// dtUser owns the folders of these tests.
const dtUser = "3f2e1d0c9b8a4f7e8d6c5b4a39281706"

// dtRun runs a command as uid:gid (no supplementary groups) with the
// daemon-free environment and returns its exit code, stdout and stderr.
func dtRun(t *testing.T, uid, gid uint32, name string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = "/"
	cmd.Env = cleanEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("%s: %v", name, err)
		}
		code = ee.ExitCode()
	}
	return code, out.String(), errb.String()
}

// dtSh runs a shell script as uid:gid.
func dtSh(t *testing.T, uid, gid uint32, script string) (int, string, string) {
	t.Helper()
	return dtRun(t, uid, gid, "/bin/sh", "-c", script)
}

// dtOpenDir makes a directory every user can traverse (its parents up to
// the temp root included), as a container's view of its bind mounts.
func dtOpenDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for d := dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// dtBind bind-mounts a view on a directory below dir, as mountd does for
// a container, so that uid 1000 reaches it (the daemon's namespace is
// root-only). Cleanup unmounts it before the daemon stops.
func dtBind(t *testing.T, dir, src string) string {
	t.Helper()
	return bindAt(t, src, filepath.Join(dir, "bind-"+filepath.Base(src)))
}

// bindAt bind-mounts src on a new directory dst; Cleanup unmounts it.
func bindAt(t *testing.T, src, dst string) string {
	t.Helper()
	if err := os.Mkdir(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	failOnMountsLeft(t, dst)
	if err := syscall.Mount(src, dst, "", syscall.MS_BIND, ""); err != nil {
		t.Fatalf("bind %s: %v", src, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dst, 0); err != nil {
			t.Errorf("unmount %s: %v", dst, err)
			syscall.Unmount(dst, syscall.MNT_DETACH)
		}
	})
	return dst
}

// dtMode is the permission bits and owner of p.
func dtMode(t *testing.T, p string) (mode, uid, gid uint32) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatalf("lstat %s: %v", p, err)
	}
	return st.Mode & 0o7777, st.Uid, st.Gid
}

// dtCheck runs `quota-scope check --json` for dtUser and fails on drift.
func dtCheck(t *testing.T, d *Daemon, when string) {
	t.Helper()
	r := d.CLI("--json", "quota-scope", "check", "local", dtUser, "-t", "user")
	var rep api.QuotaCheck
	if err := json.Unmarshal([]byte(r.Stdout), &rep); err != nil {
		t.Fatalf("%s: check printed no report: %v\n%s", when, err, r)
	}
	if r.Code != 0 || rep.Drift {
		t.Errorf("%s: quota-scope check exit %d, %+v; want no drift", when, r.Code, rep)
	}
}

// TestDaemonSetID: as uid 1000 through an rw view (bound as in a
// container), chmod 6755 on a copy of an executable, install -m 4755 and
// cp -p of a set-user-ID file all succeed, and the volume holds 0755
// files owned by the storage uid; the view shows what is stored.
func TestDaemonSetID(t *testing.T) {
	d := StartDaemon(t, DaemonOptions{})
	var f api.Folder
	d.JSON(&f, "create", "data", "local", "--user", dtUser)
	dir := dtOpenDir(t)
	b := dtBind(t, dir, filepath.Join(d.MountPoint, "users", dtUser, "data"))
	src := filepath.Join(dir, "suid-src")
	if err := os.WriteFile(src, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(src, 1000, 1000); err != nil {
		t.Fatal(err)
	}
	if err := unix.Chmod(src, 0o4755); err != nil {
		t.Fatal(err)
	}
	script := "cd " + b + " && cp /bin/sh ./sh && chmod 6755 sh && install -m 4755 /bin/sh ./installed" +
		" && cp -p " + src + " ./copied && stat -c %a sh installed copied"
	code, out, stderr := dtSh(t, 1000, 1000, script)
	if code != 0 || stderr != "" {
		t.Fatalf("as uid 1000: exit %d\n%s%s", code, out, stderr)
	}
	if got := strings.Fields(out); strings.Join(got, " ") != "755 755 755" {
		t.Errorf("modes shown in the view: %q, want 755 for all", out)
	}
	for _, name := range []string{"sh", "installed", "copied"} {
		if mode, uid, gid := dtMode(t, filepath.Join(f.Path, name)); mode != 0o755 || uid != StorageID || gid != StorageID {
			t.Errorf("%s on the volume: mode %o owner %d:%d, want 755 owned by %d", name, mode, uid, gid, StorageID)
		}
	}
	// The copy runs, without any privilege.
	if code, out, stderr := dtRun(t, 1000, 1000, filepath.Join(b, "sh"), "-c", "id -u"); code != 0 || strings.TrimSpace(out) != "1000" {
		t.Errorf("running the copy: exit %d %q %q", code, out, stderr)
	}
}

// dtTree makes a source tree with entries owned by other users, a
// set-user-ID file, a symlink and a subdirectory, and returns its path.
func dtTree(t *testing.T, dir string) string {
	t.Helper()
	src := filepath.Join(dir, "src")
	for _, d := range []string{src, filepath.Join(src, "sub")} {
		if err := os.Mkdir(d, 0o750); err != nil {
			t.Fatal(err)
		}
	}
	files := []struct {
		name     string
		mode     uint32
		uid, gid int
	}{{"a", 0o644, 2000, 3000}, {"sub/b", 0o600, 0, 0}, {"suid", 0o4755, 2001, 2001}, {"sub/c", 0o640, 1000, 4000}}
	for _, f := range files {
		p := filepath.Join(src, f.name)
		if err := os.WriteFile(p, []byte("content of "+f.name+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, f.uid, f.gid); err != nil {
			t.Fatal(err)
		}
		if err := unix.Chmod(p, f.mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("a", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(filepath.Join(src, "link"), 2000, 3000); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(src, "sub"), 2000, 3000); err != nil {
		t.Fatal(err)
	}
	return src
}

// dtCheckCopy compares a copy on the volume with the source: same names
// and contents, every entry owned by the storage uid/gid on the volume and
// by the view's owner in the view, modes as in the source less set-id bits.
func dtCheckCopy(t *testing.T, what, src, back, view string) {
	t.Helper()
	if out, err := exec.Command("diff", "-r", "--no-dereference", src, view).CombinedOutput(); err != nil {
		t.Errorf("%s: the copy differs from the source: %v\n%s", what, err, out)
	}
	err := filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if rel == "." {
			return nil
		}
		smode, _, _ := dtMode(t, p)
		bmode, buid, bgid := dtMode(t, filepath.Join(back, rel))
		vmode, vuid, vgid := dtMode(t, filepath.Join(view, rel))
		if buid != StorageID || bgid != StorageID {
			t.Errorf("%s: %s on the volume owned by %d:%d, want %d:%d", what, rel, buid, bgid, StorageID, StorageID)
		}
		if vuid != 1000 || vgid != 1000 {
			t.Errorf("%s: %s in the view owned by %d:%d, want the view's 1000:1000", what, rel, vuid, vgid)
		}
		if fi.Mode()&os.ModeSymlink == 0 && bmode != smode&^0o6000 {
			t.Errorf("%s: %s on the volume has mode %o, the source %o", what, rel, bmode, smode)
		}
		if vmode != bmode {
			t.Errorf("%s: %s shown with mode %o, stored %o", what, rel, vmode, bmode)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestDaemonChown: as root through an rw view, tar -xf of an archive
// whose entries belong to other users, cp -a and rsync -a exit 0 without
// a word about ownership; the volume holds everything as the storage
// uid/gid, the view shows the view's owner, and a chown changes the ctime.
// With chown = "refuse" tar fails as before; a ro view answers EROFS.
func TestDaemonChown(t *testing.T) {
	if _, err := exec.LookPath("rsync"); err != nil {
		t.Skipf("needs rsync: %v", err)
	}
	d := StartDaemon(t, DaemonOptions{})
	var f api.Folder
	d.JSON(&f, "create", "data", "local", "--user", dtUser)
	view := filepath.Join(d.MountPoint, "users", dtUser, "data")
	dir := t.TempDir()
	src := dtTree(t, dir)
	archive := filepath.Join(dir, "a.tar")
	if out, err := exec.Command("tar", "-cf", archive, "-C", src, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar -c: %v %s", err, out)
	}
	other := filepath.Join(dir, "other.tar")
	if out, err := exec.Command("tar", "--owner=5000", "--group=6000", "-cf", other, "-C", src, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar -c --owner: %v %s", err, out)
	}

	for _, c := range []struct {
		name string
		args []string
	}{
		{"tar", []string{"tar", "-xf", archive, "-C"}},
		{"tar-owner", []string{"tar", "-xf", other, "-C"}},
		{"tar-numeric", []string{"tar", "--numeric-owner", "--same-owner", "-xpf", archive, "-C"}},
		{"cp", []string{"cp", "-a", src + "/."}},
		{"rsync", []string{"rsync", "-a", src + "/"}},
	} {
		// Each copies the tree into its own directory of the view.
		dst := filepath.Join(view, c.name)
		if err := os.Mkdir(dst, 0o755); err != nil {
			t.Fatal(err)
		}
		args := append(append([]string{}, c.args[1:]...), dst+"/")
		code, out, stderr := dtRun(t, 0, 0, c.args[0], args...)
		if code != 0 || stderr != "" {
			t.Errorf("%s as root into the view: exit %d\n%s%s", c.name, code, out, stderr)
		}
		dtCheckCopy(t, c.name, src, filepath.Join(f.Path, c.name), dst)
	}

	// chown changes the ctime on the volume, as a real one does.
	p := filepath.Join(f.Path, "tar", "a")
	var before, after unix.Stat_t
	if err := unix.Lstat(p, &before); err != nil {
		t.Fatal(err)
	}
	if code, out, stderr := dtRun(t, 0, 0, "sh", "-c", "sleep 0.05; chown 7000:7000 "+filepath.Join(view, "tar", "a")); code != 0 {
		t.Errorf("chown: exit %d %s%s", code, out, stderr)
	}
	if err := unix.Lstat(p, &after); err != nil {
		t.Fatal(err)
	}
	if after.Ctim == before.Ctim || after.Uid != StorageID {
		t.Errorf("chown through the view: ctime %v -> %v, owner %d; want a new ctime and the storage owner", before.Ctim, after.Ctim, after.Uid)
	}

	// A read-only folder: EROFS.
	d.OK("create", "frozen", "local", "--user", dtUser, "--permission", "ro")
	ro := filepath.Join(d.MountPoint, "users", dtUser, "frozen")
	if code, _, stderr := dtRun(t, 0, 0, "chown", "1000:1000", ro); code == 0 || !strings.Contains(stderr, "Read-only file system") {
		t.Errorf("chown in a ro view: exit %d %q, want EROFS", code, stderr)
	}

	// chown = "refuse": tar as root fails on every entry, as it did.
	d.Stop()
	cfg, err := os.ReadFile(d.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	// The volume's table is the last one of the file.
	if err := os.WriteFile(d.ConfigPath, append(cfg, "chown = \"refuse\"\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	d.Start()
	if r := d.OK("volume", "list"); !strings.Contains(r.Stdout, "refuse") {
		t.Errorf("volume list does not show the policy:\n%s", r.Stdout)
	}
	dst := filepath.Join(view, "refused")
	if err := os.Mkdir(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := dtRun(t, 0, 0, "tar", "-xf", other, "-C", dst)
	if code != 2 || !strings.Contains(stderr, "Cannot change ownership") {
		t.Errorf("tar -xf with chown = \"refuse\": exit %d %q; want exit 2 and ownership errors", code, stderr)
	}
	if code, _, stderr := dtRun(t, 0, 0, "chown", "1000:1000", filepath.Join(dst, "a")); code != 0 {
		t.Errorf("chown to the view's owner with chown = \"refuse\": exit %d %q", code, stderr)
	}
}

// dtAligned is n zero bytes at a 4096-aligned address.
func dtAligned(n int) []byte {
	b := make([]byte, n+4096)
	off := (4096 - int(uintptr(unsafe.Pointer(&b[0]))%4096)) % 4096
	return b[off : off+n]
}

// dtDirectWorks reports whether files in dir take O_DIRECT writes.
func dtDirectWorks(dir string) bool {
	p := filepath.Join(dir, ".odirect-probe")
	defer os.Remove(p)
	fd, err := unix.Open(p, unix.O_CREAT|unix.O_WRONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	_, err = unix.Pwrite(fd, dtAligned(4096), 0)
	return err == nil
}

// dtDirectVolume returns a directory for the daemon's volume whose file
// system takes O_DIRECT: "" (the default place) when the temp dir's does,
// else a small ext4 on a loop file, unmounted at cleanup after the daemon
// (registered before it). It skips the test when neither works.
func dtDirectVolume(t *testing.T) string {
	t.Helper()
	probe, err := os.MkdirTemp("", "vfe2e-probe-")
	if err != nil {
		t.Fatal(err)
	}
	ok := dtDirectWorks(probe)
	os.RemoveAll(probe)
	if ok {
		return ""
	}
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skipf("the temp dir has no O_DIRECT and mkfs.ext4 is missing: %v", err)
	}
	dir := t.TempDir()
	img, mnt := filepath.Join(dir, "ext4.img"), filepath.Join(dir, "vol")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 64<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", img).CombinedOutput(); err != nil {
		t.Skipf("mkfs.ext4: %v %s", err, out)
	}
	failOnMountsLeft(t, mnt)
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		t.Skipf("the temp dir has no O_DIRECT and a loop mount failed: %v %s", err, out)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(mnt, 0); err != nil {
			t.Errorf("unmount the loop file system: %v", err)
			syscall.Unmount(mnt, syscall.MNT_DETACH)
		}
	})
	vol := filepath.Join(mnt, "local")
	if err := os.Mkdir(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	return vol
}

// TestDaemonDirectWrite: O_DIRECT writes through the daemon, with and
// without a limit. A write the backing file refuses (unaligned) fails as
// natively and charges nothing; a write cut at the limit succeeds with an
// aligned short count, the next gets EDQUOT; quota-scope check finds no
// drift after each.
func TestDaemonDirectWrite(t *testing.T) {
	opt := DaemonOptions{}
	if vol := dtDirectVolume(t); vol != "" {
		opt.Volumes = map[string]string{"local": vol}
	}
	d := StartDaemon(t, opt)
	var f api.Folder
	d.JSON(&f, "create", "data", "local", "--user", dtUser)
	view := filepath.Join(d.MountPoint, "users", dtUser, "data")
	used := func() int64 {
		var q api.QuotaScope
		d.JSON(&q, "quota-scope", "get", "local", dtUser, "-t", "user")
		return q.UsedBytes
	}
	open := func(name string) int {
		fd, err := unix.Open(filepath.Join(view, name), unix.O_CREAT|unix.O_RDWR|unix.O_DIRECT|unix.O_CLOEXEC, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(fd) })
		return fd
	}

	for i, limit := range []string{"", "1G"} {
		if limit != "" {
			d.OK("quota-scope", "set", "local", dtUser, limit, "-t", "user")
		}
		name := "failed" + strconv.Itoa(i)
		fd := open(name)
		base := used()
		if _, err := unix.Pwrite(fd, dtAligned(100), 8192); err != unix.EINVAL {
			t.Errorf("limit %q: unaligned O_DIRECT write past the end: %v, want EINVAL as natively", limit, err)
		}
		if got := dqSize(t, filepath.Join(f.Path, name)); got != 0 {
			t.Errorf("limit %q: size %d after a failed write", limit, got)
		}
		if u := used(); u != base {
			t.Errorf("limit %q: usage %d after a failed write, was %d", limit, u, base)
		}
		dtCheck(t, d, "after a failed O_DIRECT write, limit "+limit)
		if n, err := unix.Pwrite(fd, dtAligned(8192), 4096); n != 8192 || err != nil {
			t.Errorf("limit %q: aligned O_DIRECT write: %d %v", limit, n, err)
		}
		if u := used(); u != base+12288 {
			t.Errorf("limit %q: usage %d after an aligned write, want %d", limit, u, base+12288)
		}
	}

	// 100,000 bytes of room.
	base := used()
	d.OK("quota-scope", "set", "local", dtUser, strconv.FormatInt(base+100000, 10), "-t", "user")
	fd := open("cut")
	var x unix.Statx_t
	align := int64(4096)
	if err := unix.Statx(unix.AT_FDCWD, filepath.Join(f.Path, "cut"), 0, unix.STATX_DIOALIGN, &x); err == nil &&
		x.Mask&unix.STATX_DIOALIGN != 0 && x.Dio_offset_align > 0 {
		align = int64(x.Dio_offset_align)
	}
	cut := 100000 - 100000%align
	if _, err := unix.Pwrite(fd, dtAligned(100), 8192); err != unix.EINVAL {
		t.Errorf("unaligned O_DIRECT write under the limit: %v, want EINVAL", err)
	}
	if n, err := unix.Pwrite(fd, dtAligned(131072), 0); int64(n) != cut || err != nil {
		t.Errorf("O_DIRECT write of 131072 bytes with 100000 of room: %d %v, want %d (alignment %d)", n, err, cut, align)
	}
	if _, err := unix.Pwrite(fd, dtAligned(int(align)), cut); err != unix.EDQUOT {
		t.Errorf("the O_DIRECT write after the cut: %v, want EDQUOT", err)
	}
	if got, u := dqSize(t, filepath.Join(f.Path, "cut")), used(); got != cut || u != base+cut {
		t.Errorf("after the cut: size %d, usage %d; want %d, %d", got, u, cut, base+cut)
	}
	dtCheck(t, d, "after an O_DIRECT write cut at the limit")
	if tr := qMustWalk(t, f.Path); tr.bytes != used() {
		t.Errorf("the volume holds %d bytes, the ledger says %d", tr.bytes, used())
	}
}

// TestDaemonFallocateKeepSize: under a 1 MiB limit, fallocate --keep-size
// of 48 MiB is refused ("Operation not supported") and allocates nothing;
// plain fallocate and zeroing past the end are charged, all or nothing;
// punching a hole works; the ledger follows the size.
func TestDaemonFallocateKeepSize(t *testing.T) {
	if _, err := exec.LookPath("fallocate"); err != nil {
		t.Skipf("needs fallocate(1): %v", err)
	}
	d := StartDaemon(t, DaemonOptions{})
	var f api.Folder
	d.JSON(&f, "create", "data", "local", "--user", dtUser)
	d.OK("quota-scope", "set", "local", dtUser, "1MiB", "-t", "user")
	view := filepath.Join(d.MountPoint, "users", dtUser, "data")
	fa := func(args ...string) (int, string) {
		code, _, stderr := dtRun(t, 0, 0, "fallocate", args...)
		return code, stderr
	}
	if err := os.WriteFile(filepath.Join(view, "keep"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, stderr := fa("--keep-size", "-l", "48MiB", filepath.Join(view, "keep")); code == 0 || !strings.Contains(stderr, "supported") {
		t.Errorf("fallocate --keep-size 48 MiB under 1 MiB: exit %d %q; want EOPNOTSUPP (\"unsupported\")", code, stderr)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(f.Path, "keep"), &st); err == nil && st.Blocks != 0 {
		t.Errorf("the refused allocation left %d blocks", st.Blocks)
	}
	if code, stderr := fa("-l", "512KiB", filepath.Join(view, "g")); code != 0 {
		t.Errorf("fallocate 512 KiB: exit %d %q", code, stderr)
	}
	if code, stderr := fa("-l", "2MiB", filepath.Join(view, "h")); code == 0 || !strings.Contains(stderr, "Disk quota exceeded") {
		t.Errorf("fallocate 2 MiB under 1 MiB: exit %d %q; want EDQUOT", code, stderr)
	}
	if code, stderr := fa("--keep-size", "-o", "0", "-l", "64KiB", filepath.Join(view, "g")); code != 0 {
		t.Errorf("fallocate --keep-size inside the file: exit %d %q", code, stderr)
	}
	if code, stderr := fa("--punch-hole", "-o", "0", "-l", "64KiB", filepath.Join(view, "g")); code != 0 {
		t.Errorf("fallocate --punch-hole: exit %d %q", code, stderr)
	}
	if code, stderr := fa("--zero-range", "--keep-size", "-o", "512KiB", "-l", "64KiB", filepath.Join(view, "g")); code == 0 || !strings.Contains(stderr, "supported") {
		t.Errorf("fallocate --zero-range --keep-size past the end: exit %d %q; want EOPNOTSUPP (\"unsupported\")", code, stderr)
	}
	if code, stderr := fa("--zero-range", "-o", "512KiB", "-l", "64KiB", filepath.Join(view, "g")); code != 0 {
		t.Errorf("fallocate --zero-range past the end: exit %d %q", code, stderr)
	}
	if got := dqSize(t, filepath.Join(f.Path, "g")); got != 576<<10 {
		t.Errorf("g has %d bytes, want %d", got, 576<<10)
	}
	var q api.QuotaScope
	d.JSON(&q, "quota-scope", "get", "local", dtUser, "-t", "user")
	// The folder's root directory is charged too (its st_size).
	want := 576<<10 + dqSize(t, f.Path)
	if tr := qMustWalk(t, f.Path); q.UsedBytes != tr.bytes || q.UsedBytes != want {
		t.Errorf("usage %d, the volume holds %d; want %d", q.UsedBytes, tr.bytes, want)
	}
	dtCheck(t, d, "after fallocate")
}
