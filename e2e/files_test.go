package e2e

// The file API (internal/files) through a real daemon and the real CLI:
// uploads (tus, resumed after SIGKILL), the quota, ro folders, downloads
// (ranges, directories as tar), tokens, and a streamed 100k-entry listing.

import (
	"archive/tar"
	"archive/zip"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/meta"
)

const (
	flUser  = "1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a"
	flUser2 = "2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b"
)

// cliEnv runs the CLI with extra environment (a private cache dir, a
// token) and returns the result.
func cliEnv(t *testing.T, d *Daemon, env []string, args ...string) Result {
	t.Helper()
	return runCLIEnv(t, d.CLIBin, d.Socket, 10*time.Minute, env, args...)
}

func mustFail(t *testing.T, r Result, want string) {
	t.Helper()
	if r.Code != 1 || !strings.Contains(r.Stderr, want) {
		t.Errorf("want exit 1 with %q; got %s", want, r)
	}
}

func writeFile(t *testing.T, p string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func sha(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func stagingLeft(t *testing.T, f api.Folder) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(f.Path, ".vfolder-uploads"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func usageOf(t *testing.T, d *Daemon, f api.Folder) int64 {
	t.Helper()
	var u api.FolderUsage
	d.JSON(&u, "usage", f.ID)
	return u.UsedBytes
}

// TestFilesOps: mkdir, upload (files and a tree), ls, stat, mv, rm (also
// recursive), download of a file and of a directory, a range request with
// curl, and a ro folder refusing every change.
func TestFilesOps(t *testing.T) {
	d := StartDaemon(t, DaemonOptions{VolumeConfig: map[string]string{"local": "rw_can_delete = false"}})
	cache := []string{"XDG_CACHE_HOME=" + t.TempDir()}
	u := []string{"--user", flUser}
	var f, ro api.Folder
	d.JSON(&f, append([]string{"create", "data", "local"}, u...)...)
	d.JSON(&ro, append([]string{"create", "frozen", "local", "--permission", "ro"}, u...)...)

	src := t.TempDir()
	payload := make([]byte, 3<<20+17)
	rand.New(rand.NewSource(1)).Read(payload)
	writeFile(t, filepath.Join(src, "big.bin"), payload)
	writeFile(t, filepath.Join(src, "tree", "a.txt"), []byte("alpha\n"))
	writeFile(t, filepath.Join(src, "tree", "sub", "b.txt"), []byte("beta\n"))
	if err := os.MkdirAll(filepath.Join(src, "tree", "empty"), 0o755); err != nil {
		t.Fatal(err)
	}

	d.OK(append([]string{"mkdir", f.ID, "/in/deep", "-p"}, u...)...)
	mustFail(t, d.CLI("mkdir", f.ID, "/in/deep"), "exists")
	r := cliEnv(t, d, cache, "--json", "upload", f.ID, filepath.Join(src, "big.bin"), filepath.Join(src, "tree"), "--to", "/in")
	if r.Code != 0 {
		t.Fatalf("upload: %s", r)
	}
	if got := sha(t, filepath.Join(f.Path, "in", "big.bin")); got != sha(t, filepath.Join(src, "big.bin")) {
		t.Errorf("uploaded big.bin differs")
	}
	for _, p := range []string{"in/tree/a.txt", "in/tree/sub/b.txt"} {
		want, _ := os.ReadFile(filepath.Join(src, strings.TrimPrefix(p, "in/")))
		if got, err := os.ReadFile(filepath.Join(f.Path, p)); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s on storage = %q, %v; want %q", p, got, err, want)
		}
	}
	if st, err := os.Stat(filepath.Join(f.Path, "in/tree/empty")); err != nil || !st.IsDir() {
		t.Errorf("empty directory of the tree: %v", err)
	}
	// Ownership is unified on storage, as through any view.
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(f.Path, "in", "big.bin"), &st); err != nil || st.Uid != StorageID || st.Gid != StorageID {
		t.Errorf("uploaded file owned by %d:%d (%v), want %d:%d", st.Uid, st.Gid, err, StorageID, StorageID)
	}
	if left := stagingLeft(t, f); len(left) > 0 {
		t.Errorf("staging holds %v after complete uploads", left)
	}
	// Uploading onto an existing file needs --overwrite.
	mustFail(t, cliEnv(t, d, cache, "upload", f.ID, filepath.Join(src, "big.bin"), "--to", "/in"), "exists")

	// ls streams NDJSON entries.
	r = d.OK("--json", "ls", f.ID, "/in")
	names := map[string]api.FileEntry{}
	dec := json.NewDecoder(strings.NewReader(r.Stdout))
	for dec.More() {
		var e api.FileEntry
		if err := dec.Decode(&e); err != nil {
			t.Fatal(err)
		}
		names[e.Name] = e
	}
	if len(names) != 3 || names["big.bin"].Size != int64(len(payload)) || names["tree"].Type != api.FileDir || names["deep"].Type != api.FileDir {
		t.Errorf("ls /in = %+v", names)
	}
	if r := d.OK("ls", f.ID); strings.Contains(r.Stdout, ".vfolder-uploads") {
		t.Errorf("ls of the root shows the staging directory:\n%s", r.Stdout)
	}
	mustFail(t, d.CLI("ls", f.ID, "/../.."), "..")
	mustFail(t, d.CLI("ls", f.ID, "/.vfolder-uploads"), "partial uploads")
	mustFail(t, d.CLI("ls", f.ID, "/nope"), "no such file")

	// Range request with curl over the unix socket.
	out, err := exec.Command("curl", "-sS", "-f", "--unix-socket", d.Socket, "-r", "1000-1999",
		"http://vfolderd/v1/files/"+f.ID+"/download?path=/in/big.bin").Output()
	if err != nil || !bytes.Equal(out, payload[1000:2000]) {
		t.Errorf("range 1000-1999: %d bytes, %v; want the source's bytes", len(out), err)
	}
	out, err = exec.Command("curl", "-sS", "-f", "--unix-socket", d.Socket, "-r", "-5",
		"http://vfolderd/v1/files/"+f.ID+"/download?path=/in/big.bin").Output()
	if err != nil || !bytes.Equal(out, payload[len(payload)-5:]) {
		t.Errorf("suffix range -5: %q, %v", out, err)
	}

	// Download: a file and a directory (tar, extracted).
	dst := t.TempDir()
	d.OK("download", f.ID, "/in/big.bin", "/in/tree", "--out", dst)
	if sha(t, filepath.Join(dst, "big.bin")) != sha(t, filepath.Join(src, "big.bin")) {
		t.Errorf("downloaded big.bin differs")
	}
	if diff := DiffTrees(Tree(t, filepath.Join(src, "tree")), Tree(t, filepath.Join(dst, "tree"))); diff != "" {
		t.Errorf("downloaded tree differs:\n%s", diff)
	}

	// A directory as a zip.
	d.OK("download", f.ID, "/in/tree", "--out", dst, "--archive", "zip")
	zr, err := zip.OpenReader(filepath.Join(dst, "tree.zip"))
	if err != nil {
		t.Fatal(err)
	}
	zfiles := map[string]string{}
	for _, zf := range zr.File {
		if zf.Mode().IsRegular() {
			rc, _ := zf.Open()
			b, _ := io.ReadAll(rc)
			rc.Close()
			zfiles[zf.Name] = string(b)
		}
	}
	zr.Close()
	if len(zfiles) != 2 || zfiles["a.txt"] != "alpha\n" || zfiles["sub/b.txt"] != "beta\n" {
		t.Errorf("zip of /in/tree holds %v", zfiles)
	}

	// A project's folder, by name with its owner.
	const project = "3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c"
	var pf api.Folder
	d.JSON(&pf, "create", "shared", "local", "--project", project)
	d.OK("mkdir", "shared", "/p/q", "--parents", "--project", project)
	if r := cliEnv(t, d, cache, "upload", "shared", filepath.Join(src, "tree", "a.txt"), "--to", "/p/q", "--project", project); r.Code != 0 {
		t.Fatalf("upload into a project's folder: %s", r)
	}
	if b, err := os.ReadFile(filepath.Join(pf.Path, "p", "q", "a.txt")); err != nil || string(b) != "alpha\n" {
		t.Errorf("project folder's file: %q, %v", b, err)
	}

	// mv and rm.
	d.OK("mv", f.ID, "/in/big.bin", "/in/deep/moved.bin")
	mustFail(t, d.CLI("mv", f.ID, "/in/tree/a.txt", "/in/deep/moved.bin"), "exists")
	mustFail(t, d.CLI("rm", f.ID, "/in/tree"), "needs permission wd")
	// A rw folder on a volume that does not let rw delete refuses deletes.
	mustFail(t, d.CLI("rm", f.ID, "/in/deep/moved.bin"), "needs permission wd")

	var wd api.Folder
	d.JSON(&wd, append([]string{"create", "scratch", "local", "--permission", "wd"}, u...)...)
	wdBase := usageOf(t, d, wd)
	d.OK("mkdir", wd.ID, "/x/y/z", "-p")
	writeFile(t, filepath.Join(d.MountPoint, "users", flUser, "scratch", "x", "y", "z", "f"), []byte("data"))
	mustFail(t, d.CLI("rm", wd.ID, "/x"), "not empty")
	var jobs []api.FileJob
	d.JSON(&jobs, "rm", "-r", wd.ID, "/x")
	if len(jobs) != 1 || jobs[0].State != api.JobDone || jobs[0].Removed != 4 || jobs[0].Bytes != 4 {
		t.Errorf("rm -r job = %+v; want done, 4 entries, 4 bytes", jobs)
	}
	if _, err := os.Stat(filepath.Join(wd.Path, "x")); !os.IsNotExist(err) {
		t.Errorf("/x still there after rm -r: %v", err)
	}
	if n := usageOf(t, d, wd); n != wdBase {
		t.Errorf("usage after rm -r = %d, want %d (the empty folder's)", n, wdBase)
	}

	// A ro folder refuses upload, mkdir, mv and rm.
	writeFile(t, filepath.Join(ro.Path, "keep.txt"), []byte("keep"))
	mustFail(t, cliEnv(t, d, cache, "upload", ro.ID, filepath.Join(src, "tree", "a.txt")), "read-only")
	mustFail(t, d.CLI("mkdir", ro.ID, "/new"), "read-only")
	mustFail(t, d.CLI("mv", ro.ID, "/keep.txt", "/moved.txt"), "read-only")
	mustFail(t, d.CLI("rm", ro.ID, "/keep.txt"), "read-only")
	if left := stagingLeft(t, ro); len(left) > 0 {
		t.Errorf("ro folder got staging entries %v", left)
	}
	if _, err := os.Stat(filepath.Join(ro.Path, "keep.txt")); err != nil {
		t.Errorf("ro folder's file: %v", err)
	}
}

// TestFilesQuota: an upload of known length that cannot fit is refused
// before a byte is written; one that crosses the limit while streaming
// (another upload filled the scope meanwhile) stops with 507 and the
// numbers, leaving nothing partial; usage stays exact to the byte.
func TestFilesQuota(t *testing.T) {
	d := StartDaemon(t, DaemonOptions{})
	cache := []string{"XDG_CACHE_HOME=" + t.TempDir()}
	var f api.Folder
	d.JSON(&f, "create", "data", "local", "--user", flUser)
	const limit = 10 << 20
	d.OK("quota-scope", "set", "local", flUser, strconv.Itoa(limit), "-t", "user")
	base := usageOf(t, d, f)

	src := t.TempDir()
	writeFile(t, filepath.Join(src, "huge.bin"), make([]byte, 12<<20))
	r := cliEnv(t, d, cache, "upload", f.ID, filepath.Join(src, "huge.bin"))
	mustFail(t, r, "quota exceeded")
	if !strings.Contains(r.Stderr, strconv.Itoa(limit)) {
		t.Errorf("the message does not give the limit: %s", r.Stderr)
	}
	if left := stagingLeft(t, f); len(left) > 0 {
		t.Errorf("refused upload left %v", left)
	}
	if n := usageOf(t, d, f); n != base {
		t.Errorf("usage after a refused upload = %d, want %d", n, base)
	}

	// Two uploads that each fit; the second crosses the limit.
	c := d.Client()
	ctx := context.Background()
	first, err := c.CreateUpload(ctx, 6<<20, map[string]string{api.UploadMetaFolder: f.ID, api.UploadMetaPath: "one.bin"})
	if err != nil {
		t.Fatal(err)
	}
	second, err := c.CreateUpload(ctx, 6<<20, map[string]string{api.UploadMetaFolder: f.ID, api.UploadMetaPath: "two.bin"})
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 6<<20)
	if off, err := c.PatchUpload(ctx, first, 0, int64(len(data)), bytes.NewReader(data)); err != nil || off != int64(len(data)) {
		t.Fatalf("first upload: %d, %v", off, err)
	}
	_, err = c.PatchUpload(ctx, second, 0, int64(len(data)), bytes.NewReader(data))
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Code != api.CodeQuotaExceeded || !strings.Contains(ae.Message, "limit "+strconv.Itoa(limit)) {
		t.Fatalf("second upload crossing the limit: %v; want quota-exceeded with the numbers", err)
	}
	if _, err := os.Stat(filepath.Join(f.Path, "two.bin")); !os.IsNotExist(err) {
		t.Errorf("two.bin exists after the failed upload: %v", err)
	}
	if left := stagingLeft(t, f); len(left) > 0 {
		t.Errorf("the crossed upload left %v", left)
	}
	if n := usageOf(t, d, f); n != base+6<<20 {
		t.Errorf("usage = %d, want %d (one.bin only)", n, base+6<<20)
	}
	if _, _, err := c.UploadOffset(ctx, second); err == nil {
		t.Errorf("the crossed upload can still be resumed")
	}
}

// TestFilesTokens: a token for folder A opens A only, never another
// user's folder; an expired or tampered token is refused (401); a token
// never lends more than the user's own permission; a non-admin peer of
// the socket gets through with a token and nowhere else.
func TestFilesTokens(t *testing.T) {
	d := StartDaemon(t, DaemonOptions{VolumeConfig: map[string]string{"local": "rw_can_delete = false"}})
	var a, b, other, ro api.Folder
	d.JSON(&a, "create", "alpha", "local", "--user", flUser)
	d.JSON(&b, "create", "beta", "local", "--user", flUser)
	d.JSON(&ro, "create", "frozen", "local", "--user", flUser, "--permission", "ro")
	d.JSON(&other, "create", "theirs", "local", "--user", flUser2)
	writeFile(t, filepath.Join(a.Path, "hello.txt"), []byte("hi"))

	tok := func(args ...string) string {
		var tk api.Token
		d.JSON(&tk, append([]string{"token", "issue", "--user", flUser}, args...)...)
		return tk.Token
	}
	withTok := func(tk string, args ...string) Result {
		return cliEnv(t, d, []string{"VFOLDER_TOKEN=" + tk, "XDG_CACHE_HOME=" + t.TempDir()}, args...)
	}
	ta := tok("--folder", a.ID)
	if r := withTok(ta, "ls", "alpha"); r.Code != 0 || !strings.Contains(r.Stdout, "hello.txt") {
		t.Errorf("token for A lists A: %s", r)
	}
	mustFail(t, withTok(ta, "ls", b.ID), "token is for folder")
	mustFail(t, withTok(ta, "ls", "beta"), "token is for folder")
	mustFail(t, withTok(ta, "ls", other.ID), "reaches no folder")
	all := tok()
	mustFail(t, withTok(all, "ls", other.ID), "reaches no folder")
	mustFail(t, withTok(all, "ls", "theirs", "--user", flUser2), "reaches no folder")
	if r := withTok(all, "ls", "beta"); r.Code != 0 {
		t.Errorf("an all-folders token lists B: %s", r)
	}

	// A token never raises a permission: wd on the user's ro folder.
	twd := tok("--perm", "wd")
	writeFile(t, filepath.Join(ro.Path, "keep.txt"), []byte("keep"))
	mustFail(t, withTok(twd, "mkdir", "frozen", "/x"), "read-only")
	mustFail(t, withTok(twd, "rm", "frozen", "/keep.txt"), "read-only")
	// A ro token on a rw folder refuses changes; rw does not delete there.
	tro := tok("--perm", "ro", "--folder", "alpha")
	mustFail(t, withTok(tro, "mkdir", "alpha", "/x"), "read-only")
	if r := withTok(ta, "mkdir", "alpha", "/x"); r.Code != 0 {
		t.Errorf("rw token mkdir: %s", r)
	}
	mustFail(t, withTok(twd, "rm", "alpha", "/x"), "needs permission wd")
	// A token cannot issue tokens, even from root's own connection.
	if code, body := curlToken(t, d, ta, "/v1/tokens", "-X", "POST", "-d", `{"user":"`+flUser+`"}`); code != http.StatusForbidden {
		t.Errorf("token issuing a token: %d %s", code, body)
	}

	// Expired and tampered tokens: 401.
	short := tok("--ttl", "1s")
	time.Sleep(2100 * time.Millisecond)
	mustFail(t, withTok(short, "ls", "alpha"), "expired")
	parts := strings.Split(ta, ".")
	claims := []byte(`{"sub":"` + flUser + `","perm":"wd","iss":"vfolderd","exp":` + strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10) + `}`)
	forged := parts[0] + "." + b64url(claims) + "." + parts[2]
	mustFail(t, withTok(forged, "ls", "beta"), "signature")
	code, body := curlToken(t, d, forged, "/v1/files/"+b.ID+"/list")
	if code != http.StatusUnauthorized || !strings.Contains(body, api.CodeUnauthorized) {
		t.Errorf("forged token: %d %s", code, body)
	}

	// A non-admin peer: only token requests on file routes get through.
	for _, dir := range []string{d.Dir} {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(d.Socket, 0o666); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(d.Dir, "vfolder-cli")
	if b, err := os.ReadFile(d.CLIBin); err != nil || os.WriteFile(bin, b, 0o755) != nil {
		t.Fatalf("copying the CLI: %v", err)
	}
	if out, err := runAs(65534, 65534, bin, "--socket", d.Socket, "list"); err == nil || !strings.Contains(out, "may not use") {
		t.Errorf("nobody without a token: %v %s", err, out)
	}
	out, err := runAs(65534, 65534, "env", "VFOLDER_TOKEN="+ta, "XDG_CACHE_HOME=/tmp", bin, "--socket", d.Socket, "ls", "alpha")
	if err != nil || !strings.Contains(out, "hello.txt") {
		t.Errorf("nobody with a token: %v %s", err, out)
	}
	out, err = runAs(65534, 65534, "env", "VFOLDER_TOKEN="+ta, bin, "--socket", d.Socket, "list")
	if err == nil || !strings.Contains(out, "may not use") {
		t.Errorf("nobody with a token on a non-file route: %v %s", err, out)
	}
}

func b64url(b []byte) string {
	const enc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	var out strings.Builder
	for i := 0; i < len(b); i += 3 {
		var n uint32
		k := min(3, len(b)-i)
		for j := 0; j < 3; j++ {
			n <<= 8
			if j < k {
				n |= uint32(b[i+j])
			}
		}
		for j := 0; j < k+1; j++ {
			out.WriteByte(enc[(n>>(18-6*j))&63])
		}
	}
	return out.String()
}

func curlToken(t *testing.T, d *Daemon, tok, path string, extra ...string) (int, string) {
	t.Helper()
	args := append([]string{"-sS", "--unix-socket", d.Socket, "-H", "Authorization: Bearer " + tok,
		"-w", "\n%{http_code}", "http://vfolderd" + path}, extra...)
	out, err := exec.Command("curl", args...).Output()
	if err != nil {
		t.Fatal(err)
	}
	s := strings.TrimSpace(string(out))
	i := strings.LastIndexByte(s, '\n')
	code, _ := strconv.Atoi(s[i+1:])
	return code, s[:max(i, 0)]
}

// socketClient is a raw HTTP client of the daemon's socket.
func socketClient(d *Daemon) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", d.Socket)
	}}}
}

// TestFilesTar10k: a directory of 10k files downloads as a tar equal to
// the source.
func TestFilesTar10k(t *testing.T) {
	d := StartDaemon(t, DaemonOptions{})
	var f api.Folder
	d.JSON(&f, "create", "data", "local", "--user", flUser)
	view := filepath.Join(d.MountPoint, "users", flUser, "data")
	rng := rand.New(rand.NewSource(7))
	want := map[string][]byte{}
	for i := 0; i < 10000; i++ {
		name := fmt.Sprintf("d%02d/f%05d.dat", i%50, i)
		b := make([]byte, rng.Intn(600))
		rng.Read(b)
		want[name] = b
		writeFile(t, filepath.Join(view, name), b)
	}
	resp, err := socketClient(d).Get("http://vfolderd/v1/files/" + f.ID + "/download?path=/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-tar" {
		t.Fatalf("download: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	tr := tar.NewReader(resp.Body)
	got := 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		w, ok := want[h.Name]
		if !ok || !bytes.Equal(w, b) {
			t.Fatalf("tar entry %s (%d bytes): not the source's (known %v)", h.Name, len(b), ok)
		}
		got++
	}
	if got != len(want) {
		t.Errorf("tar holds %d files, want %d", got, len(want))
	}
}

// TestFilesListStream100k: a listing of 100k entries streams: the first
// entry arrives long before the last, and the daemon's memory stays
// bounded while it sends.
func TestFilesListStream100k(t *testing.T) {
	// A small GC target, so that the daemon's RSS follows its live memory
	// rather than its garbage.
	t.Setenv("GOGC", "20")
	d := StartDaemon(t, DaemonOptions{})
	var f api.Folder
	d.JSON(&f, "create", "data", "local", "--user", flUser)
	const n = 100000
	dir := filepath.Join(f.Path, "many")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		// Long names: the whole listing is ~25 MB of JSON, far more
		// than the bound below.
		fd, err := syscall.Open(filepath.Join(dir, fmt.Sprintf("entry-%06d-%s", i, strings.Repeat("x", 180))), syscall.O_CREAT|syscall.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		syscall.Close(fd)
	}
	if err := filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, StorageID, StorageID)
	}); err != nil {
		t.Fatal(err)
	}
	// A first listing makes the FUSE side know every entry (its inode
	// cache grows with what the kernel looked up, whoever asked): the
	// memory of the listing itself is measured on the second one.
	if n2, err := d.Client().ListFiles(context.Background(), f.ID, meta.ScopeID{}, "/many", func(api.FileEntry) error { return nil }); err != nil || n2 != n {
		t.Fatalf("warm-up listing: %d entries, %v", n2, err)
	}
	// The FUSE side's own memory for a pass over every entry (lookups,
	// attributes), reached once more through the view itself.
	if out, err := exec.Command("ls", "-lU", filepath.Join(d.MountPoint, "users", flUser, "data", "many")).Output(); err != nil || bytes.Count(out, []byte("\n")) < n {
		t.Fatalf("ls -l of the view: %v", err)
	}
	rssBefore := vmRSS(t, d.PID())
	start := time.Now()
	resp, err := socketClient(d).Get("http://vfolderd/v1/files/" + f.ID + "/list?path=/many")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	first, err := br.ReadBytes('\n')
	if err != nil {
		t.Fatal(err)
	}
	tFirst := time.Since(start)
	var e api.FileEntry
	if err := json.Unmarshal(first, &e); err != nil || !strings.HasPrefix(e.Name, "entry-") {
		t.Fatalf("first line %q: %v", first, err)
	}
	// Stop reading a while: the daemon must be stuck sending, not done.
	time.Sleep(500 * time.Millisecond)
	rssMid := vmRSS(t, d.PID())
	count, peak := 1, rssMid
	var end api.FileListEnd
	for {
		line, err := br.ReadBytes('\n')
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if bytes.HasPrefix(line, []byte(`{"end":`)) {
			if err := json.Unmarshal(line, &end); err != nil {
				t.Fatal(err)
			}
			continue
		}
		count++
		if count%20000 == 0 {
			peak = max(peak, vmRSS(t, d.PID()))
		}
	}
	total := time.Since(start)
	if count != n || !end.End || end.Count != n || end.Error != nil {
		t.Fatalf("listing: %d lines, end %+v; want %d", count, end, n)
	}
	t.Logf("first entry after %v, all %d after %v; daemon RSS %d KiB before, %d after the first line, peak %d KiB", tFirst, n, total, rssBefore, rssMid, peak)
	if tFirst*4 > total {
		t.Errorf("the first entry came after %v of %v: the listing is not streamed", tFirst, total)
	}
	if grow := peak - rssBefore; grow > 16<<10 {
		t.Errorf("daemon RSS grew by %d KiB while listing %d entries: not bounded", grow, n)
	}
}

// vmRSS is a process's resident set in KiB.
func vmRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.Fields(rest)[0], 10, 64)
			return n
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// TestFilesUploadResumeAfterKill: an upload of a 2 GiB file (256 MiB
// with -short) whose client is SIGKILLed at about half resumes on rerun
// from the daemon's offset; the result matches the source's checksum and
// the folder's usage is exact to the byte.
func TestFilesUploadResumeAfterKill(t *testing.T) {
	d := StartDaemon(t, DaemonOptions{})
	var f api.Folder
	d.JSON(&f, "create", "data", "local", "--user", flUser)
	base := usageOf(t, d, f)
	size := int64(2 << 30)
	if testing.Short() {
		size = 256 << 20
	}
	src := filepath.Join(t.TempDir(), "big.bin")
	out, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	block := make([]byte, 1<<20)
	rng := rand.New(rand.NewSource(42))
	for w := int64(0); w < size; w += int64(len(block)) {
		rng.Read(block[:4096]) // every MiB differs
		if _, err := out.Write(block); err != nil {
			t.Fatal(err)
		}
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	want := sha(t, src)
	env := append(cleanEnv(), "XDG_CACHE_HOME="+t.TempDir())

	cmd := exec.Command(d.CLIBin, "--socket", d.Socket, "upload", f.ID, src)
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var partSize int64
	deadline := time.Now().Add(5 * time.Minute)
	for partSize < size/2 {
		select {
		case err := <-done:
			t.Fatalf("the upload ended before it could be killed (%v): %s", err, stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatalf("the upload did not reach half in time (at %d)", partSize)
		}
		for _, n := range stagingLeft(t, f) {
			if st, err := os.Stat(filepath.Join(f.Path, ".vfolder-uploads", n)); err == nil && strings.HasSuffix(n, ".part") {
				partSize = st.Size()
			}
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-done
	t.Logf("client killed with %d of %d bytes staged", partSize, size)
	if _, err := os.Stat(filepath.Join(f.Path, "big.bin")); !os.IsNotExist(err) {
		t.Fatalf("the target exists before the upload completed: %v", err)
	}

	rerun := exec.Command(d.CLIBin, "--socket", d.Socket, "--json", "upload", f.ID, src)
	rerun.Env = env
	res, err := rerun.Output()
	if err != nil {
		t.Fatalf("rerun: %v", err)
	}
	var results []struct {
		Size    int64 `json:"size"`
		Resumed int64 `json:"resumed_at"`
	}
	if err := json.Unmarshal(res, &results); err != nil || len(results) != 1 {
		t.Fatalf("rerun output %q: %v", res, err)
	}
	if results[0].Resumed < partSize || results[0].Resumed >= size {
		t.Errorf("rerun resumed at %d; want at least %d (what was staged at the kill)", results[0].Resumed, partSize)
	}
	if got := sha(t, filepath.Join(f.Path, "big.bin")); got != want {
		t.Errorf("uploaded file's sha256 %s, source's %s", got, want)
	}
	if left := stagingLeft(t, f); len(left) > 0 {
		t.Errorf("staging holds %v after the upload", left)
	}
	if n := usageOf(t, d, f); n != base+size {
		t.Errorf("usage = %d, want %d + %d", n, base, size)
	}
}

// TestFilesUploadExpiry: an upload abandoned for longer than the expiry
// is dropped when the daemon next sweeps (at start), and its staged bytes
// go back to the quota.
func TestFilesUploadExpiry(t *testing.T) {
	d := StartDaemon(t, DaemonOptions{})
	var f api.Folder
	d.JSON(&f, "create", "data", "local", "--user", flUser)
	base := usageOf(t, d, f)
	c := d.Client()
	ctx := context.Background()
	loc, err := c.CreateUpload(ctx, 4<<20, map[string]string{api.UploadMetaFolder: f.ID, api.UploadMetaPath: "x.bin"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.PatchUpload(ctx, loc, 0, 1<<20, bytes.NewReader(make([]byte, 1<<20))); err != nil {
		t.Fatal(err)
	}
	if n := usageOf(t, d, f); n < base+1<<20 {
		t.Fatalf("staged bytes are not charged: usage %d, base %d", n, base)
	}
	c.CloseIdleConnections()
	id := loc[strings.LastIndexByte(loc, '/')+1:]
	record := filepath.Join(d.StateDir, "uploads", id+".json")
	d.Stop()
	old := time.Now().Add(-8 * 24 * time.Hour)
	if err := os.Chtimes(record, old, old); err != nil {
		t.Fatal(err)
	}
	d.Start()
	deadline := time.Now().Add(30 * time.Second)
	for len(stagingLeft(t, f)) > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if left := stagingLeft(t, f); len(left) > 0 {
		t.Fatalf("the abandoned upload is still staged: %v", left)
	}
	if _, err := os.Stat(record); !os.IsNotExist(err) {
		t.Errorf("the record is still there: %v", err)
	}
	if n := usageOf(t, d, f); n != base {
		t.Errorf("usage after the expiry = %d, want %d", n, base)
	}
	if _, _, err := d.Client().UploadOffset(ctx, loc); err == nil {
		t.Errorf("the expired upload can still be resumed")
	}
}
