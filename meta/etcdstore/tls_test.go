package etcdstore_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/vfolder/vfolder/internal/testutil/etcdtest"
	"github.com/vfolder/vfolder/meta"
	"github.com/vfolder/vfolder/meta/etcdstore"
)

// pki is a throw-away CA with one server and one client certificate.
type pki struct {
	ca, serverCert, serverKey, clientCert, clientKey string
	clientTLS                                        *tls.Config
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func newPKI(t *testing.T) pki {
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "vfolder test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	p := pki{ca: filepath.Join(dir, "ca.pem")}
	writePEM(t, p.ca, "CERTIFICATE", caDER)
	issue := func(name string, serial int64, usage x509.ExtKeyUsage) (string, string) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		cert, keyPath := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
		writePEM(t, cert, "CERTIFICATE", der)
		writePEM(t, keyPath, "EC PRIVATE KEY", keyDER)
		return cert, keyPath
	}
	p.serverCert, p.serverKey = issue("server", 2, x509.ExtKeyUsageServerAuth)
	p.clientCert, p.clientKey = issue("client", 3, x509.ExtKeyUsageClientAuth)
	pair, err := tls.LoadX509KeyPair(p.clientCert, p.clientKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	p.clientTLS = &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}}
	return p
}

// startTLSEtcd starts an etcd that serves clients over TLS only and
// requires a client certificate signed by the CA.
func startTLSEtcd(t *testing.T, p pki) string {
	bin, err := etcdtest.Binary()
	if err != nil {
		t.Skipf("no etcd binary: %v", err)
	}
	client := "https://127.0.0.1:" + strconv.Itoa(freePort(t))
	peer := "http://127.0.0.1:" + strconv.Itoa(freePort(t))
	cmd := exec.Command(bin,
		"--name", "tls", "--data-dir", filepath.Join(t.TempDir(), "etcd"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "tls="+peer, "--initial-cluster-state", "new",
		"--cert-file", p.serverCert, "--key-file", p.serverKey,
		"--client-cert-auth", "--trusted-ca-file", p.ca, "--log-level", "error",
	)
	cmd.Env = append(os.Environ(), "ETCD_UNSUPPORTED_ARCH="+runtime.GOARCH)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: p.clientTLS}}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := hc.Get(client + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return client
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("TLS etcd did not become healthy: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestTLSClientCertificates: with the CA, certificate and key files the
// store talks to an etcd that requires client certificates; without a
// client certificate the server cannot be used (ErrUnavailable within the
// bound); inconsistent or unreadable files are refused at Open.
func TestTLSClientCertificates(t *testing.T) {
	p := newPKI(t)
	ep := startTLSEtcd(t, p)
	ctx := t.Context()
	s, err := etcdstore.Open(ctx, etcdstore.Options{
		Endpoints: []string{ep}, CAFile: p.ca, CertFile: p.clientCert, KeyFile: p.clientKey,
		Prefix: newPrefix(), RequestTimeout: 10 * time.Second, Log: testLogger(t),
	})
	if err != nil {
		t.Fatalf("Open over TLS: %v", err)
	}
	defer s.Close()
	v := meta.Volume{Name: "v", Path: "/vfroot/v"}
	if err := s.PutVolume(ctx, v); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetVolume(ctx, "v"); err != nil || got != v {
		t.Fatalf("GetVolume over TLS = %+v, %v", got, err)
	}

	_, err = etcdstore.Open(ctx, etcdstore.Options{
		Endpoints: []string{ep}, CAFile: p.ca, Prefix: newPrefix(), RequestTimeout: faultBound, Log: testLogger(t),
	})
	if !errors.Is(err, meta.ErrUnavailable) {
		t.Errorf("Open without a client certificate: %v; want ErrUnavailable", err)
	}

	for what, o := range map[string]etcdstore.Options{
		"certificate without key": {CertFile: p.clientCert},
		"key without certificate": {KeyFile: p.clientKey},
		"missing CA file":         {CAFile: filepath.Join(t.TempDir(), "nope.pem")},
		"missing certificate":     {CertFile: filepath.Join(t.TempDir(), "nope.pem"), KeyFile: p.clientKey},
		"no endpoints":            {Endpoints: []string{}},
	} {
		if o.Endpoints == nil {
			o.Endpoints = []string{ep}
		}
		if _, err := etcdstore.Open(ctx, o); !errors.Is(err, meta.ErrInvalid) {
			t.Errorf("Open with %s: %v; want ErrInvalid", what, err)
		}
	}
}
