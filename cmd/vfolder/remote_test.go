package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCertCommands: vfolder cert writes a CA and certificates, refuses to
// overwrite, and reports missing arguments as usage errors.
func TestCertCommands(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca")
	sock := filepath.Join(dir, "none.sock") // never called
	mustOK(t, runCLI(t, sock, "", false, "cert", "issue-ca", ca))
	r := mustOK(t, runCLI(t, sock, "", false, "--json", "cert", "issue-server", "--ca", ca, "--host", "127.0.0.1,node1", "server"))
	var out struct {
		CertFile string `json:"cert_file"`
		KeyFile  string `json:"key_file"`
		Subject  string `json:"subject"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("--json output %q: %v", r.stdout, err)
	}
	if out.CertFile != filepath.Join(ca, "server.crt") || !strings.Contains(out.Subject, "CN=server") {
		t.Errorf("issue-server: %+v", out)
	}
	mustOK(t, runCLI(t, sock, "", false, "cert", "issue-client", "--ca", ca, "--out", filepath.Join(dir, "m"), "manager"))
	if st, err := os.Stat(filepath.Join(dir, "m", "manager.key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("manager.key: %v %v", st, err)
	}
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"cert", "issue-ca", ca}, 1, "refusing to overwrite"},
		{[]string{"cert", "issue-client", "manager2"}, 2, "--ca DIR"},
		{[]string{"cert", "issue-client", "--ca", ca}, 2, "needs arguments NAME"},
		{[]string{"cert", "issue-server", "--ca", ca, "srv"}, 2, "--host"},
		{[]string{"cert", "issue-client", "--ca", ca, "../evil"}, 1, "name"},
		{[]string{"cert", "issue-client", "--ca", filepath.Join(dir, "nope"), "x"}, 1, "CA in"},
	} {
		r := runCLI(t, sock, "", false, tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.msg) {
			t.Errorf("vfolder %v: exit %d %q, want exit %d naming %q", tc.args, r.code, r.stderr, tc.code, tc.msg)
		}
	}
}

// TestRemoteFlags: the TLS flags are checked before any call.
func TestRemoteFlags(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "none.sock")
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"--tls-cert", "c.pem", "list"}, 2, "--tls-cert is for --api-url"},
		{[]string{"--api-url", "http://h:1", "list"}, 2, "want https://HOST:PORT"},
		{[]string{"--api-url", "https://h:1/v1", "list"}, 2, "want https://HOST:PORT"},
		{[]string{"--api-url", "https://h:1", "--tls-cert", "c.pem", "list"}, 2, "together"},
		{[]string{"--api-url", "https://h:1", "--tls-cert", "c.pem", "--tls-key", "k.pem", "list"}, 1, "client certificate c.pem"},
		{[]string{"--api-url", "https://h:1", "--tls-ca", filepath.Join(dir, "ca.pem"), "list"}, 1, "server CA"},
		// Nothing listens there: unreachable, named by its URL.
		{[]string{"--api-url", "https://127.0.0.1:1", "list"}, 1, "cannot reach vfolderd at https://127.0.0.1:1"},
	} {
		r := runCLI(t, sock, "", false, tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.msg) {
			t.Errorf("vfolder %v: exit %d %q, want exit %d naming %q", tc.args, r.code, r.stderr, tc.code, tc.msg)
		}
	}
}
