package sftpd

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"github.com/rs/zerolog"
	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/internal/service"
	"github.com/vfolder/vfolder/meta"
)

const testUser = "0123456789abcdef0123456789abcdef"

// fakeService reaches the folders in reach; keys in keys are registered
// for testUser; volume permissions in denied are refused.
type fakeService struct {
	mu     sync.Mutex
	keys   map[string]bool // fingerprint
	reach  []service.Reached
	denied map[service.VolumePerm]bool
}

func (f *fakeService) CheckSSHLogin(_ context.Context, user string, pub ssh.PublicKey) (string, meta.SSHKey, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	u, err := meta.ParseUUID(user)
	if err != nil || u != testUser || !f.keys[ssh.FingerprintSHA256(pub)] {
		return "", meta.SSHKey{}, fmt.Errorf("%w: %s", service.ErrKeyRefused, user)
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
	return u, meta.SSHKey{User: u, Fingerprint: ssh.FingerprintSHA256(pub), Key: line, Type: pub.Type()}, nil
}

func (f *fakeService) Reach(context.Context, string) ([]service.Reached, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]service.Reached(nil), f.reach...), nil
}

func (f *fakeService) CheckVolumePerm(_ context.Context, vol string, p service.VolumePerm, _ ...meta.ScopeID) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.denied[p] {
		return fmt.Errorf("%w: %s on volume %s", service.ErrForbidden, p, vol)
	}
	return nil
}

func (f *fakeService) QuotaScope(_ context.Context, vol string, id meta.ScopeID) (api.QuotaScope, error) {
	return api.QuotaScope{QuotaScope: meta.QuotaScope{Volume: vol, ID: id, LimitBytes: 100}, UsedBytes: 100}, nil
}

func (f *fakeService) setKey(pub ssh.PublicKey, on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.keys[ssh.FingerprintSHA256(pub)] = on
}

// fixture: a directory standing in for the mount point, with the views
// users/<testUser>/data (wd), .../shelf (ro) and .../other (rw) as plain
// directories (the rules a real view enforces by itself are the e2e
// tests' business; these tests check what the handlers decide).
type fixture struct {
	mnt  string
	svc  *fakeService
	srv  *Server
	pub  ssh.PublicKey
	priv ed25519.PrivateKey
}

func (fx *fixture) view(name string) string { return filepath.Join(fx.mnt, "users", testUser, name) }

func newFixture(t *testing.T) *fixture {
	t.Helper()
	fx := &fixture{mnt: t.TempDir()}
	folder := func(name string, perm meta.Permission) service.Reached {
		if err := os.MkdirAll(fx.view(name), 0o755); err != nil {
			t.Fatal(err)
		}
		return service.Reached{Name: name, Perm: perm, Via: service.ViaOwner, Folder: meta.Folder{
			ID: fmt.Sprintf("%032x", len(name)), Name: name, Volume: "local",
			Owner: meta.ScopeID{Kind: meta.KindUser, UUID: testUser}, Permission: perm,
		}}
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	fx.priv = priv
	if fx.pub, err = ssh.NewPublicKey(pub); err != nil {
		t.Fatal(err)
	}
	fx.svc = &fakeService{keys: map[string]bool{ssh.FingerprintSHA256(fx.pub): true}, denied: map[service.VolumePerm]bool{},
		reach: []service.Reached{folder("data", meta.PermWD), folder("other", meta.PermRW), folder("shelf", meta.PermRO)}}
	// Outside every view: what an escape would reach.
	if err := os.WriteFile(filepath.Join(fx.mnt, "secret"), []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(fx.view("shelf"), "kept.txt"), []byte("kept"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, hpriv, _ := ed25519.GenerateKey(rand.Reader)
	host, err := ssh.NewSignerFromKey(hpriv)
	if err != nil {
		t.Fatal(err)
	}
	fx.srv, err = New(fx.svc, Options{MountPoint: fx.mnt, HostKey: host, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fx.srv.Close() })
	return fx
}

// client serves one SFTP session over a pipe, without SSH.
func (fx *fixture) client(t *testing.T) *sftp.Client {
	t.Helper()
	h := &handlers{s: fx.srv, user: testUser, pub: fx.pub, log: zerolog.Nop()}
	c1, c2 := net.Pipe()
	rs := sftp.NewRequestServer(c1, h.sftpHandlers(), sftp.WithStartDirectory("/"))
	go func() { _ = rs.Serve() }()
	cl, err := sftp.NewClientPipe(c2, c2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close(); rs.Close() })
	return cl
}

// wantStatus checks that err is an SFTP status of code (os.ErrNotExist
// for no-such-file, which the client turns into it).
func wantStatus(t *testing.T, what string, err error, code error) {
	t.Helper()
	// The client turns these two codes into the os errors.
	switch code {
	case sftp.ErrSSHFxNoSuchFile:
		if !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: %v, want no such file", what, err)
		}
		return
	case sftp.ErrSSHFxPermissionDenied:
		if !errors.Is(err, os.ErrPermission) {
			t.Errorf("%s: %v, want permission denied", what, err)
		}
		return
	}
	var se *sftp.StatusError
	if !errors.As(err, &se) || error(se.FxCode()) != code {
		t.Errorf("%s: %v, want %v", what, err, code)
	}
}

func put(t *testing.T, cl *sftp.Client, p, data string) error {
	t.Helper()
	// Write-only, as OpenSSH's put opens (Create asks for reading too).
	f, err := cl.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		return err
	}
	if _, err := f.Write([]byte(data)); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func get(cl *sftp.Client, p string) (string, error) {
	f, err := cl.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	return string(b), err
}

func TestCleanPath(t *testing.T) {
	for in, want := range map[string]string{
		"": "/", ".": "/", "/": "/", "..": "/", "/../..": "/", "a/../../b": "/b",
		"/data/../../etc/passwd": "/etc/passwd", "data//x/./y/": "/data/x/y", "/data/x/..": "/data",
	} {
		if got := cleanPath(in); got != want {
			t.Errorf("cleanPath(%q) = %q, want %q", in, got, want)
		}
	}
	name, rel := split("/data/a/b")
	if name != "data" || rel != "a/b" {
		t.Errorf("split = %q, %q", name, rel)
	}
}

func TestTopLevel(t *testing.T) {
	fx := newFixture(t)
	cl := fx.client(t)
	es, err := cl.ReadDir("/")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
		if !e.IsDir() {
			t.Errorf("%s is not a directory", e.Name())
		}
	}
	if strings.Join(names, ",") != "data,other,shelf" {
		t.Errorf("/ lists %v", names)
	}
	if st, err := cl.Stat("/"); err != nil || !st.IsDir() {
		t.Errorf("stat /: %v %v", st, err)
	}
	if st, err := cl.Stat("/data"); err != nil || !st.IsDir() || st.Name() != "data" {
		t.Errorf("stat /data: %v %v", st, err)
	}
	wantStatus(t, "create /x", put(t, cl, "/x", "x"), sftp.ErrSSHFxPermissionDenied)
	wantStatus(t, "mkdir /newfolder", cl.Mkdir("/newfolder"), sftp.ErrSSHFxPermissionDenied)
	wantStatus(t, "rmdir /data", cl.RemoveDirectory("/data"), sftp.ErrSSHFxPermissionDenied)
	wantStatus(t, "rename /data", cl.Rename("/data", "/data2"), sftp.ErrSSHFxPermissionDenied)
	wantStatus(t, "open /nope/x", put(t, cl, "/nope/x", "x"), sftp.ErrSSHFxNoSuchFile)
	if _, err := os.Stat(filepath.Join(fx.mnt, "x")); err == nil {
		t.Error("a write at the top level landed in the mount point")
	}
}

func TestPaths(t *testing.T) {
	fx := newFixture(t)
	cl := fx.client(t)
	if err := put(t, cl, "/data/f.txt", "hello"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(fx.view("data"), "f.txt")); string(b) != "hello" {
		t.Fatalf("the view holds %q", b)
	}
	// ".." and relative paths are cleaned against "/": they name the same
	// file, or a folder the user does not reach, never the mount point.
	for _, p := range []string{"/data/f.txt", "data/f.txt", "/../data/f.txt", "/data/../data/./f.txt", "//data//f.txt"} {
		if got, err := get(cl, p); err != nil || got != "hello" {
			t.Errorf("get %q = %q, %v", p, got, err)
		}
	}
	for _, p := range []string{"/data/../../secret", "/../secret", "../../secret", "/data/../../users/" + testUser + "/data/f.txt"} {
		if got, err := get(cl, p); err == nil {
			t.Errorf("get %q escaped: %q", p, got)
		}
	}
	if err := cl.Mkdir("/data/d"); err != nil {
		t.Fatal(err)
	}
	if err := cl.Rename("/data/f.txt", "/data/d/g.txt"); err != nil {
		t.Fatal(err)
	}
	// Rename does not replace (SFTP v3); posix-rename does.
	if err := put(t, cl, "/data/h.txt", "h"); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, "rename onto an existing file", cl.Rename("/data/h.txt", "/data/d/g.txt"), sftp.ErrSSHFxFailure)
	if err := cl.PosixRename("/data/h.txt", "/data/d/g.txt"); err != nil {
		t.Fatal(err)
	}
	if got, _ := get(cl, "/data/d/g.txt"); got != "h" {
		t.Errorf("after posix-rename: %q", got)
	}
	// Across folders: refused.
	wantStatus(t, "rename across folders", cl.Rename("/data/d/g.txt", "/other/g.txt"), sftp.ErrSSHFxFailure)
	wantStatus(t, "link across folders", cl.Link("/data/d/g.txt", "/other/g.txt"), sftp.ErrSSHFxFailure)
	if err := cl.Link("/data/d/g.txt", "/data/hard.txt"); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, "rmdir of a full directory", cl.RemoveDirectory("/data/d"), sftp.ErrSSHFxFailure)
	if err := cl.Remove("/data/d/g.txt"); err != nil {
		t.Fatal(err)
	}
	if err := cl.RemoveDirectory("/data/d"); err != nil {
		t.Fatal(err)
	}
	if err := cl.Chmod("/data/hard.txt", 0o600); err != nil {
		t.Fatal(err)
	}
	if err := cl.Truncate("/data/hard.txt", 0); err != nil {
		t.Fatal(err)
	}
	mt := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := cl.Chtimes("/data/hard.txt", mt, mt); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(fx.view("data"), "hard.txt")); err != nil || st.Mode().Perm() != 0o600 || st.Size() != 0 || !st.ModTime().Equal(mt) {
		t.Errorf("after setstat: %v %v", st, err)
	}
	wantStatus(t, "symlink", cl.Symlink("hard.txt", "/data/s"), sftp.ErrSSHFxOpUnsupported)
	wantStatus(t, "remove a folder root", cl.Remove("/data"), sftp.ErrSSHFxPermissionDenied)
}

func TestSymlinksNeverFollowed(t *testing.T) {
	fx := newFixture(t)
	cl := fx.client(t)
	v := fx.view("data")
	if err := os.WriteFile(filepath.Join(v, "f"), []byte("f"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(v, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{"abs": filepath.Join(fx.mnt, "secret"), "rel": "f", "up": "../../../secret", "dir": "sub"} {
		if err := os.Symlink(target, filepath.Join(v, name)); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"/data/abs", "/data/rel", "/data/up"} {
		if got, err := get(cl, p); err == nil {
			t.Errorf("open %s followed the link: %q", p, got)
		} else {
			wantStatus(t, "open "+p, err, sftp.ErrSSHFxPermissionDenied)
		}
		wantStatus(t, "write through "+p, put(t, cl, p, "x"), sftp.ErrSSHFxPermissionDenied)
		st, err := cl.Lstat(p)
		if err != nil || st.Mode()&os.ModeSymlink == 0 {
			t.Errorf("lstat %s = %v, %v; want the link", p, st, err)
		}
		// stat does not follow either: it shows the link.
		if st, err := cl.Stat(p); err != nil || st.Mode()&os.ModeSymlink == 0 {
			t.Errorf("stat %s = %v, %v; want the link itself", p, st, err)
		}
	}
	if tgt, err := cl.ReadLink("/data/abs"); err != nil || tgt != filepath.Join(fx.mnt, "secret") {
		t.Errorf("readlink = %q, %v", tgt, err)
	}
	// Through a link to a directory: refused.
	wantStatus(t, "create below a dir link", put(t, cl, "/data/dir/new", "x"), sftp.ErrSSHFxPermissionDenied)
	if _, err := cl.ReadDir("/data/dir"); err == nil {
		t.Error("listing a link to a directory followed it")
	}
	wantStatus(t, "mkdir below a dir link", cl.Mkdir("/data/dir/d"), sftp.ErrSSHFxPermissionDenied)
	if _, err := os.Stat(filepath.Join(v, "sub", "new")); err == nil {
		t.Error("a write through a link landed")
	}
	// Listed as links, described without following.
	es, err := cl.ReadDir("/data")
	if err != nil {
		t.Fatal(err)
	}
	links := 0
	for _, e := range es {
		if e.Mode()&os.ModeSymlink != 0 {
			links++
		}
	}
	if links != 4 {
		t.Errorf("listing shows %d links, want 4", links)
	}
	// The links can be removed (wd), which removes the link only.
	if err := cl.Remove("/data/abs"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(fx.mnt, "secret")); string(b) != "secret" {
		t.Error("removing a link touched its target")
	}
}

func TestPermissions(t *testing.T) {
	fx := newFixture(t)
	cl := fx.client(t)
	if got, err := get(cl, "/shelf/kept.txt"); err != nil || got != "kept" {
		t.Fatalf("read in ro folder: %q %v", got, err)
	}
	wantStatus(t, "write in ro", put(t, cl, "/shelf/new", "x"), sftp.ErrSSHFxPermissionDenied)
	wantStatus(t, "overwrite in ro", put(t, cl, "/shelf/kept.txt", "x"), sftp.ErrSSHFxPermissionDenied)
	wantStatus(t, "mkdir in ro", cl.Mkdir("/shelf/d"), sftp.ErrSSHFxPermissionDenied)
	wantStatus(t, "remove in ro", cl.Remove("/shelf/kept.txt"), sftp.ErrSSHFxPermissionDenied)
	wantStatus(t, "chmod in ro", cl.Chmod("/shelf/kept.txt", 0o600), sftp.ErrSSHFxPermissionDenied)
	wantStatus(t, "rename in ro", cl.Rename("/shelf/kept.txt", "/shelf/k"), sftp.ErrSSHFxPermissionDenied)
	if b, _ := os.ReadFile(filepath.Join(fx.view("shelf"), "kept.txt")); string(b) != "kept" {
		t.Error("the ro folder changed")
	}

	// Volume permissions: upload-file for changes, download-file for reads.
	fx.svc.mu.Lock()
	fx.svc.denied[service.VolUpload] = true
	fx.svc.mu.Unlock()
	wantStatus(t, "write without upload-file", put(t, cl, "/data/x", "x"), sftp.ErrSSHFxPermissionDenied)
	wantStatus(t, "mkdir without upload-file", cl.Mkdir("/data/d"), sftp.ErrSSHFxPermissionDenied)
	if _, err := get(cl, "/shelf/kept.txt"); err != nil {
		t.Errorf("read without upload-file: %v", err)
	}
	fx.svc.mu.Lock()
	fx.svc.denied = map[service.VolumePerm]bool{service.VolDownload: true}
	fx.svc.mu.Unlock()
	_, err := get(cl, "/shelf/kept.txt")
	wantStatus(t, "read without download-file", err, sftp.ErrSSHFxPermissionDenied)
	if err := put(t, cl, "/data/x", "x"); err != nil {
		t.Errorf("write without download-file: %v", err)
	}

	// Reach is asked at every request: a folder taken away is gone.
	fx.svc.mu.Lock()
	fx.svc.reach = fx.svc.reach[1:]
	fx.svc.mu.Unlock()
	if _, err := cl.Stat("/data/x"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stat in a folder no longer reached: %v", err)
	}

	// A removed key: the next open is refused.
	fx.svc.setKey(fx.pub, false)
	_, err = get(cl, "/other/whatever")
	wantStatus(t, "open after the key was removed", err, sftp.ErrSSHFxPermissionDenied)
	_, err = cl.ReadDir("/")
	wantStatus(t, "list after the key was removed", err, sftp.ErrSSHFxPermissionDenied)
}

// TestSSH runs the whole server: logins with a registered key, a wrong
// key, a wrong user; no exec; Close ends live sessions.
func TestSSH(t *testing.T) {
	fx := newFixture(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- fx.srv.Serve(l) }()
	dial := func(user string, key ed25519.PrivateKey) (*ssh.Client, error) {
		signer, err := ssh.NewSignerFromKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return ssh.Dial("tcp", l.Addr().String(), &ssh.ClientConfig{
			User: user, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
			HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second,
		})
	}
	_, wrong, _ := ed25519.GenerateKey(rand.Reader)
	if c, err := dial(testUser, wrong); err == nil {
		c.Close()
		t.Fatal("an unregistered key logged in")
	}
	if c, err := dial("fedcba98765432100123456789abcdef", fx.priv); err == nil {
		c.Close()
		t.Fatal("a key logged in as another user")
	}
	dashed := testUser[:8] + "-" + testUser[8:12] + "-" + testUser[12:16] + "-" + testUser[16:20] + "-" + testUser[20:]
	c, err := dial(dashed, fx.priv)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.Run("id"); err == nil {
		t.Error("exec was served")
	}
	cl, err := sftp.NewClient(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := put(t, cl, "/data/over-ssh", "ssh"); err != nil {
		t.Fatal(err)
	}
	if got, err := get(cl, "/data/over-ssh"); err != nil || got != "ssh" {
		t.Fatalf("get = %q, %v", got, err)
	}
	// Close ends the live session and the accept loop.
	done := make(chan struct{})
	go func() { fx.srv.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return with a session open")
	}
	if err := <-served; err != nil {
		t.Errorf("Serve after Close: %v", err)
	}
	if _, err := cl.Stat("/data"); err == nil {
		t.Error("the session survived Close")
	}
}

func TestHostKey(t *testing.T) {
	p := filepath.Join(t.TempDir(), "keys", "host")
	s1, created, err := LoadHostKey(p)
	if err != nil || !created {
		t.Fatalf("first load: %v, created %v", err, created)
	}
	st, err := os.Stat(p)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", st, err)
	}
	s2, created, err := LoadHostKey(p)
	if err != nil || created || string(s1.PublicKey().Marshal()) != string(s2.PublicKey().Marshal()) || s2.PublicKey().Type() != ssh.KeyAlgoED25519 {
		t.Fatalf("second load: created %v, %v", created, err)
	}
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadHostKey(p); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("a world-readable key: %v", err)
	}
}

// TestErrorMapping: each errno reaches the client as the right SFTP code
// with a message that says what happened.
func TestErrorMapping(t *testing.T) {
	fx := newFixture(t)
	h := &handlers{s: fx.srv, user: testUser, pub: fx.pub, log: zerolog.Nop()}
	rw := loc{p: "/other/f", r: fx.svc.reach[1], rel: "f"}
	ro := loc{p: "/shelf/f", r: fx.svc.reach[2], rel: "f"}
	ctx := context.Background()
	for _, tc := range []struct {
		l    loc
		what op
		err  error
		code error
		msg  string
	}{
		{rw, opWrite, unix.ENOENT, sftp.ErrSSHFxNoSuchFile, "no such file"},
		{ro, opWrite, unix.EROFS, sftp.ErrSSHFxPermissionDenied, `folder "shelf" is read-only for you (permission ro)`},
		{rw, opDelete, unix.EPERM, sftp.ErrSSHFxPermissionDenied, "deleting and replacing are not allowed"},
		{rw, opRead, unix.ELOOP, sftp.ErrSSHFxPermissionDenied, "never followed"},
		{rw, opWrite, unix.EDQUOT, sftp.ErrSSHFxFailure, "disk quota exceeded: quota scope user:" + testUser + " on volume local holds 100 of its 100 bytes"},
		{rw, opWrite, unix.EXDEV, sftp.ErrSSHFxFailure, "between folders"},
		{rw, opWrite, unix.EEXIST, sftp.ErrSSHFxFailure, "already exists"},
		{rw, opDelete, unix.ENOTEMPTY, sftp.ErrSSHFxFailure, "not empty"},
		{rw, opWrite, fmt.Errorf("%w: upload-file", service.ErrForbidden), sftp.ErrSSHFxPermissionDenied, "upload-file"},
		{rw, opWrite, fmt.Errorf("x: %w", meta.ErrUnavailable), sftp.ErrSSHFxFailure, "try again"},
	} {
		err := h.fail(ctx, tc.what, tc.l, tc.err)
		var oe *opError
		if !errors.As(err, &oe) || oe.code != tc.code || !strings.Contains(err.Error(), tc.msg) || !strings.HasPrefix(err.Error(), tc.l.p+": ") {
			t.Errorf("%v: %v (code %v), want %v with %q", tc.err, err, oe, tc.code, tc.msg)
		}
		if !errors.Is(err, tc.err) {
			t.Errorf("%v: the mapped error does not wrap the cause", tc.err)
		}
	}
}
