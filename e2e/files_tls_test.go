package e2e

// The file API over the TCP listener: a person without a client
// certificate reaches the file routes with a token, and nothing else.

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vfolder/vfolder/api"
)

// TestFilesOverTLS: a token user uploads, lists and downloads over the
// TLS listener without a client certificate; the same CLI without a token
// is refused, the token does not open another folder, and admin routes
// stay closed to it.
func TestFilesOverTLS(t *testing.T) {
	RequireRoot(t)
	_, cliBin := Binaries(t)
	certDir := newDir(t)
	caDir := issueCerts(t, cliBin, certDir)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	d := StartDaemon(t, DaemonOptions{ExtraArgs: []string{
		"--api-listen", addr,
		"--api-tls-cert", filepath.Join(caDir, "server.crt"),
		"--api-tls-key", filepath.Join(caDir, "server.key"),
		"--api-client-ca", filepath.Join(caDir, "ca.crt"),
	}})
	var a, b api.Folder
	d.JSON(&a, "create", "tlsa", "local", "--user", flUser)
	d.JSON(&b, "create", "tlsb", "local", "--user", flUser)
	var tk api.Token
	d.JSON(&tk, "token", "issue", "--user", flUser, "--folder", a.ID, "--perm", "rw")

	// The CLI over TLS with the CA only (no client certificate); the
	// socket it is given does not exist.
	remote := func(token string, args ...string) Result {
		t.Helper()
		saved := d.Socket
		d.Socket = filepath.Join(certDir, "no.sock")
		defer func() { d.Socket = saved }()
		env := []string{"XDG_CACHE_HOME=" + t.TempDir()}
		if token != "" {
			env = append(env, "VFOLDER_TOKEN="+token)
		}
		full := append([]string{"--api-url", "https://" + addr, "--tls-ca", filepath.Join(caDir, "ca.crt")}, args...)
		return cliEnv(t, d, env, full...)
	}

	src := filepath.Join(t.TempDir(), "blob.bin")
	data := bytes.Repeat([]byte("vfolder over tls "), 300000) // 5.1 MB
	writeFile(t, src, data)
	if r := remote(tk.Token, "upload", a.ID, src, "--to", "in"); r.Code != 0 {
		t.Fatalf("upload over TLS with a token: %s", r)
	}
	got, err := os.ReadFile(filepath.Join(a.Path, "in", "blob.bin"))
	if err != nil {
		t.Fatalf("the uploaded file is not in the folder: %v", err)
	}
	if sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("uploaded %d bytes, the folder holds %d different ones", len(data), len(got))
	}
	if r := remote(tk.Token, "ls", a.ID, "in"); r.Code != 0 || !strings.Contains(r.Stdout, "blob.bin") {
		t.Errorf("ls over TLS with a token: %s", r)
	}
	out := t.TempDir()
	if r := remote(tk.Token, "download", a.ID, "in/blob.bin", "--out", out); r.Code != 0 {
		t.Errorf("download over TLS with a token: %s", r)
	} else if back, err := os.ReadFile(filepath.Join(out, "blob.bin")); err != nil || !bytes.Equal(back, data) {
		t.Errorf("downloaded file differs (%v, %d bytes)", err, len(back))
	}

	// The token is for A only; without a token nothing; admin routes
	// stay closed to a token.
	if r := remote(tk.Token, "ls", b.ID); r.Code != 1 || !strings.Contains(r.Stderr, "token is for folder") {
		t.Errorf("ls of B with A's token over TLS: want exit 1 naming the token's folder, got %s", r)
	}
	if r := remote("", "ls", a.ID); r.Code != 1 {
		t.Errorf("ls over TLS without a token or certificate: want exit 1, got %s", r)
	}
	if r := remote(tk.Token, "list"); r.Code != 1 || !strings.Contains(r.Stderr, "certificate") {
		t.Errorf("folder list (an admin route) with a token over TLS: want exit 1 about the certificate, got %s", r)
	}
}
