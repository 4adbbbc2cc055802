package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/internal/pki"
	"github.com/vfolder/vfolder/internal/service"
	"github.com/vfolder/vfolder/internal/testutil"
	"github.com/vfolder/vfolder/meta"
)

// tlsFixture is a server with only a TLS listener, a CA with a server and a
// client certificate, and a second CA with a client certificate.
type tlsFixture struct {
	url             string
	roots           *x509.CertPool
	admin, intruder tls.Certificate
	srv             *Server
	log             *testutil.SyncBuffer
}

// startTLS starts the fixture; opts change the server's options.
func startTLS(t *testing.T, opts ...func(*Options)) *tlsFixture {
	t.Helper()
	dir := t.TempDir()
	ca, other := filepath.Join(dir, "ca"), filepath.Join(dir, "other")
	for _, d := range []string{ca, other} {
		if _, err := pki.IssueCA(d, "", 0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := pki.IssueServer(ca, ca, "server", []string{"127.0.0.1"}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := pki.IssueClient(ca, ca, "manager", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := pki.IssueClient(other, other, "intruder", 0); err != nil {
		t.Fatal(err)
	}
	store := meta.NewMemory()
	svc := service.New(store, service.Options{StorageUID: os.Geteuid(), StorageGID: os.Getegid(), Log: zerolog.Nop()})
	logs := &testutil.SyncBuffer{}
	o := Options{AdminGID: -1, Version: "test", Log: zerolog.New(logs).Level(zerolog.DebugLevel)}
	for _, f := range opts {
		f(&o)
	}
	srv := New(svc, o)
	whoami := func(r *http.Request, _ url.Values) (int, any, error) {
		c, ok := CallerOf(r)
		if !ok {
			t.Error("CallerOf: no caller")
		}
		return http.StatusOK, map[string]any{"transport": c.Transport, "subject": c.Subject, "admin": c.Admin, "serial": c.Serial}, nil
	}
	srv.handle("GET /v1/test/whoami", whoami)
	srv.handlePublic("GET /v1/test/public", whoami)
	cfg, err := TLSConfig(TLSFiles{CertFile: filepath.Join(ca, "server.crt"), KeyFile: filepath.Join(ca, "server.key"), ClientCAFile: filepath.Join(ca, "ca.crt")})
	if err != nil {
		t.Fatal(err)
	}
	l, err := ListenTLS("127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		svc.Close()
		store.Close()
	})
	f := &tlsFixture{url: "https://" + l.Addr().String(), roots: x509.NewCertPool(), srv: srv, log: logs}
	pem, _ := os.ReadFile(filepath.Join(ca, "ca.crt"))
	f.roots.AppendCertsFromPEM(pem)
	if f.admin, err = tls.LoadX509KeyPair(filepath.Join(ca, "manager.crt"), filepath.Join(ca, "manager.key")); err != nil {
		t.Fatal(err)
	}
	if f.intruder, err = tls.LoadX509KeyPair(filepath.Join(other, "intruder.crt"), filepath.Join(other, "intruder.key")); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *tlsFixture) client(t *testing.T, maxVersion uint16, certs ...tls.Certificate) *http.Client {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: f.roots, Certificates: certs, MaxVersion: maxVersion}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func getJSON(t *testing.T, c *http.Client, u string, out any) (int, error) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	return resp.StatusCode, nil
}

func TestTLSCallers(t *testing.T) {
	f := startTLS(t)
	type who struct {
		Transport, Subject, Serial string
		Admin                      bool
	}

	// The admin's certificate: every route, identified by its subject.
	admin := f.client(t, 0, f.admin)
	var w who
	if st, err := getJSON(t, admin, f.url+"/v1/test/whoami", &w); err != nil || st != 200 {
		t.Fatalf("whoami with the admin certificate: %d %v", st, err)
	}
	if w.Transport != TransportTLS || !w.Admin || !strings.Contains(w.Subject, "CN=manager") || w.Serial == "" {
		t.Errorf("caller with the admin certificate: %+v", w)
	}
	var vols []api.Volume
	if st, err := getJSON(t, admin, f.url+"/v1/volumes", &vols); err != nil || st != 200 {
		t.Errorf("GET /v1/volumes with the admin certificate: %d %v", st, err)
	}

	// The request log names the certificate, not a uid.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(f.log.String(), `"cert_subject":"CN=manager`) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if logs := f.log.String(); !strings.Contains(logs, `"cert_subject":"CN=manager`) || strings.Contains(logs, `"uid"`) {
		t.Errorf("request log of a TLS caller:\n%s", logs)
	}

	// No certificate: 403 naming the certificate, except public routes.
	anon := f.client(t, 0)
	var e api.Error
	for _, p := range []string{"/v1/health", "/v1/volumes", "/v1/test/whoami", "/v1/nope"} {
		e = api.Error{}
		if st, err := getJSON(t, anon, f.url+p, &e); err != nil || st != 403 || e.Code != api.CodeForbidden || !strings.Contains(e.Message, "client certificate") {
			t.Errorf("GET %s without a certificate: %d %v %+v", p, st, err, e)
		}
	}
	w = who{}
	if st, err := getJSON(t, anon, f.url+"/v1/test/public", &w); err != nil || st != 200 {
		t.Fatalf("public route without a certificate: %d %v", st, err)
	}
	if w.Admin || w.Transport != TransportTLS || w.Subject != "" {
		t.Errorf("anonymous caller: %+v", w)
	}

	// Another CA's certificate, or TLS 1.2: no request is read.
	if _, err := f.client(t, 0, f.intruder).Get(f.url + "/v1/test/public"); err == nil {
		t.Error("a certificate of another CA was accepted")
	}
	if _, err := f.client(t, tls.VersionTLS12, f.admin).Get(f.url + "/v1/health"); err == nil {
		t.Error("TLS 1.2 was accepted")
	}

	// The test routes are listed, the public one as public.
	var pub []string
	for _, r := range f.srv.Routes() {
		if r.Public {
			pub = append(pub, r.Method+" "+r.Path)
		}
	}
	if !slices.Equal(pub, []string{"GET /v1/test/public"}) {
		t.Errorf("public routes: %v", pub)
	}
}

func TestTLSConfigErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := pki.IssueCA(dir, "", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := pki.IssueServer(dir, dir, "server", []string{"localhost"}, 0); err != nil {
		t.Fatal(err)
	}
	good := TLSFiles{CertFile: filepath.Join(dir, "server.crt"), KeyFile: filepath.Join(dir, "server.key"), ClientCAFile: filepath.Join(dir, "ca.crt")}
	cfg, err := TLSConfig(good)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MinVersion != tls.VersionTLS13 || cfg.ClientAuth != tls.VerifyClientCertIfGiven {
		t.Errorf("config: min version %x, client auth %v", cfg.MinVersion, cfg.ClientAuth)
	}
	bad := good
	bad.KeyFile = filepath.Join(dir, "ca.key") // does not match the certificate
	if _, err := TLSConfig(bad); err == nil {
		t.Error("a key of another certificate was accepted")
	}
	bad = good
	bad.ClientCAFile = good.KeyFile
	if _, err := TLSConfig(bad); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("client CA without a certificate: %v", err)
	}
}

func TestRoutesList(t *testing.T) {
	routes := New(nil, Options{}).Routes()
	find := func(method, path string) Route {
		for _, r := range routes {
			if r.Method == method && r.Path == path {
				return r
			}
		}
		t.Fatalf("%s %s is not listed", method, path)
		return Route{}
	}
	if r := find("GET", "/v1/folders"); !slices.Equal(r.QueryParams, []string{"deleted", "owner", "volume"}) || len(r.PathParams) != 0 {
		t.Errorf("GET /v1/folders: %+v", r)
	}
	if r := find("PUT", "/v1/quota-scopes/{volume}/{scope}"); !slices.Equal(r.PathParams, []string{"volume", "scope"}) || len(r.QueryParams) != 0 {
		t.Errorf("PUT quota scope: %+v", r)
	}
	if r := find("DELETE", "/v1/views/sessions/{session}/{name}"); !slices.Equal(r.PathParams, []string{"session", "name"}) || r.Public {
		t.Errorf("DELETE view: %+v", r)
	}
}

// TestSocketCaller: over the socket, CallerOf tells the peer's credentials.
func TestSocketCaller(t *testing.T) {
	dir, err := os.MkdirTemp("", "vfolder-caller-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	store := meta.NewMemory()
	defer store.Close()
	svc := service.New(store, service.Options{StorageUID: os.Geteuid(), StorageGID: os.Getegid(), Log: zerolog.Nop()})
	defer svc.Close()
	srv := New(svc, Options{AdminGID: os.Getegid(), Log: zerolog.Nop()})
	var got Caller
	srv.handle("GET /v1/test/whoami", func(r *http.Request, _ url.Values) (int, any, error) {
		got, _ = CallerOf(r)
		return http.StatusOK, struct{}{}, nil
	})
	l, err := Listen(filepath.Join(dir, "s.sock"), -1)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	defer func() {
		srv.Close()
		<-done
	}()
	c := unixClient(filepath.Join(dir, "s.sock"))
	defer c.CloseIdleConnections()
	resp, err := c.Get("http://vfolderd/v1/test/whoami")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if got.Transport != TransportSocket || got.UID != uint32(os.Geteuid()) || got.PID != int32(os.Getpid()) || !got.Admin || got.Err != nil {
		t.Errorf("socket caller: %+v (uid %d, pid %d)", got, os.Geteuid(), os.Getpid())
	}
}
