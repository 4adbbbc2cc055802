package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/internal/server"
)

// freePort returns a TCP port on 127.0.0.1 that nothing listened on a
// moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// issueCerts runs `vfolder cert` to make a CA in dir/ca with a server
// certificate for 127.0.0.1 and a client certificate "manager".
func issueCerts(t *testing.T, cliBin, dir string) (caDir string) {
	t.Helper()
	caDir = filepath.Join(dir, "ca")
	for _, args := range [][]string{
		{"cert", "issue-ca", caDir},
		{"cert", "issue-server", "--ca", caDir, "--host", "127.0.0.1,localhost", "server"},
		{"cert", "issue-client", "--ca", caDir, "manager"},
	} {
		if r := RunCLI(t, cliBin, "/nonexistent.sock", args...); r.Code != 0 {
			t.Fatalf("%s", r)
		}
	}
	for _, k := range []string{"ca.key", "server.key", "manager.key"} {
		st, err := os.Stat(filepath.Join(caDir, k))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", k, st.Mode().Perm())
		}
	}
	return caDir
}

// TestRemoteAPI: vfolderd --api-listen serves the API over mutual TLS.
// With a client certificate of the admin CA the CLI works through
// --api-url; without a certificate every route answers 403; with a
// certificate of another CA no request is even read; the socket keeps
// working.
func TestRemoteAPI(t *testing.T) {
	RequireRoot(t)
	_, cliBin := Binaries(t)
	certDir := newDir(t)
	caDir := issueCerts(t, cliBin, certDir)
	// A second CA whose client certificate the daemon must refuse.
	otherCA := filepath.Join(certDir, "other")
	for _, args := range [][]string{{"cert", "issue-ca", otherCA}, {"cert", "issue-client", "--ca", otherCA, "intruder"}} {
		if r := RunCLI(t, cliBin, "/nonexistent.sock", args...); r.Code != 0 {
			t.Fatalf("%s", r)
		}
	}
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	auditPath := filepath.Join(newDir(t), "audit.log")
	d := StartDaemon(t, DaemonOptions{ExtraArgs: []string{"--no-fuse",
		"--audit-log", auditPath,
		"--api-listen", addr,
		"--api-tls-cert", filepath.Join(caDir, "server.crt"),
		"--api-tls-key", filepath.Join(caDir, "server.key"),
		"--api-client-ca", filepath.Join(caDir, "ca.crt"),
	}})
	url := "https://" + addr
	remote := func(cert, key string, args ...string) Result {
		t.Helper()
		full := []string{"--api-url", url, "--tls-ca", filepath.Join(caDir, "ca.crt")}
		if cert != "" {
			full = append(full, "--tls-cert", cert, "--tls-key", key)
		}
		// The socket given by RunCLI does not exist: the call can only
		// go over TLS.
		return RunCLI(t, cliBin, filepath.Join(certDir, "no.sock"), append(full, args...)...)
	}
	mgrCert, mgrKey := filepath.Join(caDir, "manager.crt"), filepath.Join(caDir, "manager.key")

	// The admin's certificate: the CLI works as on the socket.
	const user = "2b1a7c4e-5d3f-4a8e-9c0b-1f2e3d4c5b6a"
	if r := remote(mgrCert, mgrKey, "create", "remote1", "local", "--user", user); r.Code != 0 {
		t.Fatalf("create over TLS: %s", r)
	}
	var folders []api.Folder
	r := remote(mgrCert, mgrKey, "--json", "list")
	if r.Code != 0 {
		t.Fatalf("list over TLS: %s", r)
	}
	if err := json.Unmarshal([]byte(r.Stdout), &folders); err != nil {
		t.Fatal(err)
	}
	if len(folders) != 1 || folders[0].Name != "remote1" {
		t.Fatalf("list over TLS: %+v", folders)
	}
	// The socket sees the same folder, and keeps working.
	if out := d.OK("list").Stdout; !strings.Contains(out, "remote1") {
		t.Errorf("list over the socket does not show the folder created over TLS:\n%s", out)
	}

	// Without a certificate: the CLI is refused with the reason.
	r = remote("", "", "list")
	if r.Code != 1 || !strings.Contains(r.Stderr, "client certificate") {
		t.Errorf("list without a client certificate: want exit 1 naming the certificate, got %s", r)
	}
	// A certificate of another CA: refused too.
	r = remote(filepath.Join(otherCA, "intruder.crt"), filepath.Join(otherCA, "intruder.key"), "list")
	if r.Code != 1 {
		t.Errorf("list with another CA's certificate: want exit 1, got %s", r)
	}
	// A client that does not trust the daemon's CA refuses the daemon.
	r = RunCLI(t, cliBin, filepath.Join(certDir, "no.sock"), "--api-url", url, "--tls-cert", mgrCert, "--tls-key", mgrKey, "list")
	if r.Code != 1 || !strings.Contains(r.Stderr, "certificate") {
		t.Errorf("list without --tls-ca: want exit 1 about the certificate, got %s", r)
	}

	// Every route the server registers, raw: 403 without a certificate,
	// no answer at all with another CA's.
	pool := x509.NewCertPool()
	caPEM, err := os.ReadFile(filepath.Join(caDir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool.AppendCertsFromPEM(caPEM)
	intruder, err := tls.LoadX509KeyPair(filepath.Join(otherCA, "intruder.crt"), filepath.Join(otherCA, "intruder.key"))
	if err != nil {
		t.Fatal(err)
	}
	client := func(certs ...tls.Certificate) *http.Client {
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: certs, MinVersion: tls.VersionTLS13}}}
	}
	anon, wrong := client(), client(intruder)
	defer anon.CloseIdleConnections()
	routes := server.New(nil, server.Options{}).Routes()
	if len(routes) < 20 {
		t.Fatalf("the server lists only %d routes", len(routes))
	}
	for _, rt := range routes {
		path := rt.Path
		for _, p := range rt.PathParams {
			path = strings.Replace(path, "{"+p+"}", "x", 1)
		}
		var body io.Reader
		if rt.Method != http.MethodGet && rt.Method != http.MethodDelete {
			body = strings.NewReader("{}")
		}
		req, err := http.NewRequest(rt.Method, url+path, body)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := anon.Do(req)
		if err != nil {
			t.Errorf("%s %s without a certificate: %v", rt.Method, path, err)
			continue
		}
		var e api.Error
		_ = json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if rt.Public {
			if resp.StatusCode == http.StatusForbidden && strings.Contains(e.Message, "client certificate") {
				t.Errorf("%s %s is public but refused for the missing certificate", rt.Method, path)
			}
		} else if resp.StatusCode != http.StatusForbidden || (rt.Method != http.MethodHead && e.Code != api.CodeForbidden) {
			// (A HEAD answer has no body: the status alone tells.)
			t.Errorf("%s %s without a certificate: %d %+v, want 403 %s", rt.Method, path, resp.StatusCode, e, api.CodeForbidden)
		}

		req, _ = http.NewRequest(rt.Method, url+path, nil)
		if resp, err := wrong.Do(req); err == nil {
			resp.Body.Close()
			t.Errorf("%s %s with another CA's certificate: answered %d, want a failed handshake", rt.Method, path, resp.StatusCode)
		}
	}
	// Nothing changed through the refused calls.
	if out := d.OK("list", "--all").Stdout; strings.Count(out, "remote1") != 1 {
		t.Errorf("folders after the refused calls:\n%s", out)
	}
	checkTLSAudit(t, auditPath, filepath.Join(caDir, "manager.crt"))
	if t.Failed() {
		t.Log(d.Log())
	}
}

// checkTLSAudit: the audit log names the TLS callers by their certificate
// (subject and serial of manager.crt for the create, nothing for the
// refused anonymous calls) and never by a uid.
func checkTLSAudit(t *testing.T, path, certFile string) {
	t.Helper()
	pemBytes, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(pemBytes)
	if blk == nil {
		t.Fatalf("%s holds no PEM block", certFile)
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	serial := hex.EncodeToString(cert.SerialNumber.Bytes())
	var create, refused map[string]any
	var raw []byte
	// A line is written when its request ends; poll briefly.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if raw, err = os.ReadFile(path); err != nil {
			t.Fatal(err)
		}
		create, refused = nil, nil
		for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
			var e map[string]any
			if err := json.Unmarshal([]byte(line), &e); err != nil {
				t.Fatalf("audit line %q: %v", line, err)
			}
			if _, ok := e["uid"]; ok && e["transport"] == "tls" {
				t.Errorf("a TLS caller is logged with a uid: %s", line)
			}
			switch {
			case e["route"] == "POST /v1/folders" && e["status"] == float64(201):
				create = e
			case e["status"] == float64(403) && refused == nil:
				refused = e
			}
		}
		if create != nil && refused != nil {
			break
		}
	}
	if create == nil || refused == nil {
		t.Fatalf("the audit log lacks the create over TLS or a refused call:\n%s", raw)
	}
	if create["transport"] != "tls" || create["admin"] != true || create["cert_subject"] != cert.Subject.String() ||
		create["cert_serial"] != serial || create["remote"] == nil || create["action"] != "folders.create" {
		t.Errorf("create line %v; want transport tls, admin, subject %q, serial %s", create, cert.Subject.String(), serial)
	}
	if refused["transport"] != "tls" || refused["admin"] != false || refused["cert_subject"] != nil || refused["code"] != api.CodeForbidden {
		t.Errorf("refused anonymous line %v", refused)
	}
}
