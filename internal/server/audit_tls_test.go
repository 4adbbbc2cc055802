package server

// The audit log names a TLS caller by its certificate (subject, serial)
// and never by a uid: the same identity CallerOf gives and the API
// authorized.

import (
	"crypto/x509"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/vfolder/vfolder/api"
)

func TestAuditTLSCaller(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	al, err := OpenAudit(path, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { al.Close() })
	f := startTLS(t, func(o *Options) { o.Audit = al })
	leaf, err := x509.ParseCertificate(f.admin.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	wantSerial := hex.EncodeToString(leaf.SerialNumber.Bytes())

	policy := f.url + "/v1/policies/" + alice
	put := func(c *http.Client, body string) int {
		t.Helper()
		req, err := http.NewRequest(http.MethodPut, policy, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("PUT %s: %v", policy, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	admin, anon := f.client(t, 0, f.admin), f.client(t, 0)
	if st := put(admin, `{"max_vfolder_count":3}`); st != http.StatusOK {
		t.Fatalf("PUT policy with the admin certificate: %d", st)
	}
	var vols []api.Volume
	if st, err := getJSON(t, admin, f.url+"/v1/volumes", &vols); err != nil || st != http.StatusOK { // a read: no line
		t.Fatalf("GET /v1/volumes: %d %v", st, err)
	}
	if st := put(anon, `{"max_vfolder_count":9}`); st != http.StatusForbidden {
		t.Fatalf("PUT policy without a certificate: %d; want 403", st)
	}

	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), `"uid"`) || strings.Contains(string(raw), `"pid"`) {
		t.Errorf("a TLS caller was logged with a uid or pid:\n%s", raw)
	}
	lines := readAudit(t, path)
	if len(lines) != 2 {
		t.Fatalf("%d audit lines; want the two PUTs:\n%s", len(lines), raw)
	}
	set, refused := lines[0], lines[1]
	if set.Transport != TransportTLS || !set.Admin || set.CertSubject != leaf.Subject.String() || !strings.Contains(set.CertSubject, "CN=manager") ||
		set.CertSerial != wantSerial || set.Remote == "" || set.CallerError != "" ||
		set.Route != "PUT /v1/policies/{owner}" || set.Action != "policies.set" || set.Status != http.StatusOK || set.Object["owner"] != alice {
		t.Errorf("admin certificate line %+v; want subject %q serial %s", set, leaf.Subject.String(), wantSerial)
	}
	if refused.Transport != TransportTLS || refused.Admin || refused.CertSubject != "" || refused.CertSerial != "" || refused.Remote == "" ||
		refused.Status != http.StatusForbidden || refused.Code != api.CodeForbidden || !strings.Contains(refused.Error, "client certificate") {
		t.Errorf("anonymous caller line %+v", refused)
	}
}
