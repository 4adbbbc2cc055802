package config

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vfolder/vfolder/internal/pki"
)

func TestAPITable(t *testing.T) {
	dir := t.TempDir()
	if _, err := pki.IssueCA(dir, "", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := pki.IssueServer(dir, dir, "server", []string{"localhost"}, 0); err != nil {
		t.Fatal(err)
	}
	crt, key, ca := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"), filepath.Join(dir, "ca.crt")
	c, err := Parse(`
[api]
listen = "127.0.0.1:7443"
tls_cert = "` + crt + `"
tls_key = "` + key + `"
client_ca = "` + ca + `"
`)
	if err != nil {
		t.Fatal(err)
	}
	if !c.API.Enabled() || c.API.Listen != "127.0.0.1:7443" || c.API.TLSCert != crt || c.API.TLSKey != key || c.API.ClientCA != ca {
		t.Fatalf("[api] = %+v", c.API)
	}
	if _, err := Parse("[api]\nlisten_addr = \"x\"\n"); err == nil || !strings.Contains(err.Error(), "api.listen_addr") {
		t.Errorf("unknown key in [api]: %v", err)
	}

	for _, tc := range []struct {
		name string
		api  API
		want []string // fields named in the error; none: valid
	}{
		{"off", API{}, nil},
		{"complete", API{Listen: ":7443", TLSCert: crt, TLSKey: key, ClientCA: ca}, nil},
		{"host name", API{Listen: "node1.example.org:7443", TLSCert: crt, TLSKey: key, ClientCA: ca}, nil},
		{"files without listen", API{TLSCert: crt}, []string{"api.tls_cert: is set but api.listen is not"}},
		{"listen without files", API{Listen: ":7443"}, []string{"api.tls_cert: is required", "api.tls_key: is required", "api.client_ca: is required"}},
		{"no port", API{Listen: "127.0.0.1", TLSCert: crt, TLSKey: key, ClientCA: ca}, []string{"api.listen: \"127.0.0.1\" is not host:port"}},
		{"bad port", API{Listen: "127.0.0.1:99999", TLSCert: crt, TLSKey: key, ClientCA: ca}, []string{"api.listen: port \"99999\""}},
		{"bad host", API{Listen: "a b:1", TLSCert: crt, TLSKey: key, ClientCA: ca}, []string{"api.listen: host \"a b\""}},
		{"key of another certificate", API{Listen: ":1", TLSCert: crt, TLSKey: filepath.Join(dir, "ca.key"), ClientCA: ca}, []string{"api.tls_cert: certificate"}},
		{"CA file without a certificate", API{Listen: ":1", TLSCert: crt, TLSKey: key, ClientCA: key}, []string{"api.client_ca: " + key + " holds no PEM certificate"}},
		{"missing CA file", API{Listen: ":1", TLSCert: crt, TLSKey: key, ClientCA: filepath.Join(dir, "nope")}, []string{"api.client_ca: open"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig(t)
			c.API = tc.api
			err := c.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("want ErrInvalid, got %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}
