package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func load(t *testing.T, cert, key string) *x509.Certificate {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if k, ok := pair.PrivateKey.(*ecdsa.PrivateKey); !ok || k.Curve != elliptic.P256() {
		t.Errorf("%s: key is %T, want ECDSA P-256", key, pair.PrivateKey)
	}
	return c
}

func TestIssueChain(t *testing.T) {
	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca")
	ca, err := IssueCA(caDir, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := IssueServer(caDir, caDir, "server", []string{"node1.example.org", "127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := IssueClient(caDir, filepath.Join(dir, "out"), "manager", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, is := range []Issued{ca, srv, cl} {
		for f, want := range map[string]os.FileMode{is.KeyFile: 0o600, is.CertFile: 0o644} {
			st, err := os.Stat(f)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != want {
				t.Errorf("%s: mode %v, want %v", f, st.Mode().Perm(), want)
			}
		}
	}
	caCert := load(t, ca.CertFile, ca.KeyFile)
	if !caCert.IsCA || caCert.Subject.CommonName != "vfolder admin CA" {
		t.Errorf("CA: IsCA %v, subject %s", caCert.IsCA, caCert.Subject)
	}
	roots := x509.NewCertPool()
	roots.AddCert(caCert)
	sc := load(t, srv.CertFile, srv.KeyFile)
	if _, err := sc.Verify(x509.VerifyOptions{Roots: roots, DNSName: "node1.example.org"}); err != nil {
		t.Errorf("server certificate for node1.example.org: %v", err)
	}
	if _, err := sc.Verify(x509.VerifyOptions{Roots: roots, DNSName: "127.0.0.1"}); err != nil {
		t.Errorf("server certificate for 127.0.0.1: %v", err)
	}
	if _, err := sc.Verify(x509.VerifyOptions{Roots: roots, DNSName: "other.example.org"}); err == nil {
		t.Error("server certificate verifies for a host it does not name")
	}
	if d := time.Until(sc.NotAfter); d > time.Hour || d < 50*time.Minute {
		t.Errorf("server certificate valid for %v, want about 1h", d)
	}
	cc := load(t, cl.CertFile, cl.KeyFile)
	if _, err := cc.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client certificate: %v", err)
	}
	if _, err := cc.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Error("the client certificate is accepted as a server certificate")
	}
	if cc.Subject.CommonName != "manager" || cl.CertFile != filepath.Join(dir, "out", "manager.crt") {
		t.Errorf("client: CN %q, file %s", cc.Subject.CommonName, cl.CertFile)
	}
	if cc.SerialNumber.Cmp(sc.SerialNumber) == 0 {
		t.Error("two certificates share a serial number")
	}
}

func TestNeverOverwrites(t *testing.T) {
	caDir := t.TempDir()
	if _, err := IssueCA(caDir, "", 0); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(caDir, CAKey))
	if _, err := IssueCA(caDir, "", 0); !errors.Is(err, ErrExists) {
		t.Fatalf("second IssueCA: %v, want ErrExists", err)
	}
	after, _ := os.ReadFile(filepath.Join(caDir, CAKey))
	if string(before) != string(after) {
		t.Fatal("the CA key changed")
	}
	if _, err := IssueClient(caDir, caDir, "a", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := IssueClient(caDir, caDir, "a", 0); !errors.Is(err, ErrExists) {
		t.Fatalf("second client a: %v, want ErrExists", err)
	}
}

func TestRefusesBadInput(t *testing.T) {
	caDir := t.TempDir()
	if _, err := IssueClient(caDir, caDir, "x", 0); err == nil {
		t.Error("a client certificate without a CA was issued")
	}
	if _, err := IssueCA(caDir, "", 0); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"", "../x", "a/b", ".hidden", string(make([]byte, 70))} {
		if _, err := IssueClient(caDir, caDir, name, 0); !errors.Is(err, ErrInvalid) {
			t.Errorf("name %q: %v, want ErrInvalid", name, err)
		}
	}
	if _, err := IssueServer(caDir, caDir, "s", nil, 0); !errors.Is(err, ErrInvalid) {
		t.Errorf("server without hosts: %v, want ErrInvalid", err)
	}
	// A leaf is not a CA.
	if _, err := IssueClient(caDir, caDir, "leaf", 0); err != nil {
		t.Fatal(err)
	}
	leafDir := t.TempDir()
	for _, f := range [][2]string{{"leaf.crt", CACert}, {"leaf.key", CAKey}} {
		b, _ := os.ReadFile(filepath.Join(caDir, f[0]))
		os.WriteFile(filepath.Join(leafDir, f[1]), b, 0o600)
	}
	if _, err := IssueClient(leafDir, leafDir, "y", 0); !errors.Is(err, ErrInvalid) {
		t.Errorf("signing with a leaf: %v, want ErrInvalid", err)
	}
}
