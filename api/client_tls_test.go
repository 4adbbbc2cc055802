package api

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNewTLSClientRefusesBadArguments(t *testing.T) {
	for _, u := range []string{"", "http://h:1", "https://", "https://h:1/v1", "https://h:1?x=1", "https://u:p@h:1", "unix:///run/x.sock"} {
		_, err := NewTLSClient(u, TLSFiles{})
		var ae *Error
		if !errors.As(err, &ae) || ae.Code != CodeInvalid {
			t.Errorf("NewTLSClient(%q): %v, want an invalid-argument error", u, err)
		}
	}
	if _, err := NewTLSClient("https://h:1", TLSFiles{CertFile: "c.pem"}); err == nil || !strings.Contains(err.Error(), "both") {
		t.Errorf("a certificate without its key: %v", err)
	}
	ca := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(ca, []byte("not PEM"), 0o600)
	if _, err := NewTLSClient("https://h:1", TLSFiles{CAFile: ca}); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("a CA file without a certificate: %v", err)
	}
}

// TestTLSClientCalls: a TLS client calls /v1 below its base URL, speaks
// TLS 1.3, checks the server against the given CA and decodes errors.
func TestTLSClientCalls(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || r.TLS.Version != tls.VersionTLS13 {
			t.Errorf("request over %+v, want TLS 1.3", r.TLS)
		}
		switch r.URL.Path {
		case "/v1/health":
			w.Write([]byte(`{"status":"ok","version":"x"}`))
		default:
			w.WriteHeader(http.StatusForbidden)
			w.Write([]byte(`{"code":"forbidden","message":"no certificate"}`))
		}
	}))
	srv.StartTLS()
	defer srv.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pemOf(srv.Certificate()), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := NewTLSClient(srv.URL+"/", TLSFiles{CAFile: caFile})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	h, err := c.Health(context.Background())
	if err != nil || h.Status != "ok" {
		t.Fatalf("Health: %+v %v", h, err)
	}
	_, err = c.Volumes(context.Background())
	var ae *Error
	if !errors.As(err, &ae) || ae.Code != CodeForbidden || ae.Message != "no certificate" {
		t.Errorf("Volumes: %v, want the server's forbidden error", err)
	}
	// Without the CA the server is not trusted.
	c2, err := NewTLSClient(srv.URL, TLSFiles{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c2.Health(context.Background()); err == nil || !strings.Contains(err.Error(), srv.URL) {
		t.Errorf("Health against an untrusted server: %v, want an error naming %s", err, srv.URL)
	}
}

func pemOf(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}
