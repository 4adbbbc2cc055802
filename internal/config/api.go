package config

// This file is the [api] table: the optional TCP listener of the API with
// mutual TLS, for a manager on another host (see internal/server/tls.go).
//
//	[api]
//	listen    = "0.0.0.0:7443"                 # host:port; none: socket only
//	tls_cert  = "/etc/vfolder/tls/server.crt"  # the listener's certificate
//	tls_key   = "/etc/vfolder/tls/server.key"  # and key
//	client_ca = "/etc/vfolder/tls/ca.crt"      # CA of the admins' client certificates
//
// All three files are required with listen. Validate reads them (a key
// that does not match its certificate, or a CA file without a certificate,
// is an error at start, not at the first handshake).

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"regexp"
	"strconv"
)

// hostRE is a DNS host name (labels of letters, digits and '-').
var hostRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$`)

// API is the [api] table.
type API struct {
	// Listen is the TCP address (host:port) of the TLS listener; "" means
	// none (the unix socket only).
	Listen string
	// TLSCert and TLSKey are the PEM files of the listener's certificate
	// and key; ClientCA the PEM file of the CA that signs admin client
	// certificates.
	TLSCert, TLSKey, ClientCA string
}

// Enabled reports whether the TLS listener is configured.
func (a API) Enabled() bool { return a.Listen != "" }

type fileAPI struct {
	Listen   *string `toml:"listen"`
	TLSCert  *string `toml:"tls_cert"`
	TLSKey   *string `toml:"tls_key"`
	ClientCA *string `toml:"client_ca"`
}

func (a *API) merge(f *fileAPI) {
	if f == nil {
		return
	}
	setIf(&a.Listen, f.Listen)
	setIf(&a.TLSCert, f.TLSCert)
	setIf(&a.TLSKey, f.TLSKey)
	setIf(&a.ClientCA, f.ClientCA)
}

func (a API) validate(add func(field, format string, a ...any)) {
	if !a.Enabled() {
		for _, f := range []struct{ key, v string }{{"api.tls_cert", a.TLSCert}, {"api.tls_key", a.TLSKey}, {"api.client_ca", a.ClientCA}} {
			if f.v != "" {
				add(f.key, "is set but api.listen is not (the TLS listener is off)")
			}
		}
		return
	}
	host, port, err := net.SplitHostPort(a.Listen)
	if err != nil {
		add("api.listen", "%q is not host:port: %v", a.Listen, err)
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		add("api.listen", "port %q of %q is not a number from 0 to 65535", port, a.Listen)
	} else if host != "" && net.ParseIP(host) == nil && !hostRE.MatchString(host) {
		add("api.listen", "host %q of %q is not an IP address or a host name", host, a.Listen)
	}
	missing := false
	for _, f := range []struct{ key, v string }{{"api.tls_cert", a.TLSCert}, {"api.tls_key", a.TLSKey}, {"api.client_ca", a.ClientCA}} {
		if f.v == "" {
			add(f.key, "is required with api.listen (mutual TLS: the listener's certificate and key, and the CA of the admins' client certificates)")
			missing = true
		}
	}
	if missing {
		return
	}
	if _, err := tls.LoadX509KeyPair(a.TLSCert, a.TLSKey); err != nil {
		add("api.tls_cert", "certificate %s with key %s: %v", a.TLSCert, a.TLSKey, err)
	}
	pem, err := os.ReadFile(a.ClientCA)
	if err != nil {
		add("api.client_ca", "%v", err)
	} else if !x509.NewCertPool().AppendCertsFromPEM(pem) {
		add("api.client_ca", "%s holds no PEM certificate", a.ClientCA)
	}
}
