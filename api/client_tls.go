package api

// This file is the client of the API's TLS listener (vfolderd --api-listen):
// the same calls as over the socket, over HTTPS with a client certificate.

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// TLSFiles are the PEM files a TLS client uses.
type TLSFiles struct {
	// CertFile and KeyFile: the client certificate (issued by the admin's
	// CA) and its key. Both or neither; without them every route but the
	// token-authorized ones is refused (403).
	CertFile, KeyFile string
	// CAFile: the CA of the daemon's server certificate; "" means the
	// system's roots.
	CAFile string
}

// NewTLSClient returns a client of the daemon's TLS listener at baseURL
// ("https://host:port"). It speaks TLS 1.3 only.
func NewTLSClient(baseURL string, files TLSFiles) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return nil, invalidArg("API URL %q: want https://HOST:PORT", baseURL)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS13}
	switch {
	case files.CertFile != "" && files.KeyFile != "":
		cert, err := tls.LoadX509KeyPair(files.CertFile, files.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate %s / key %s: %w", files.CertFile, files.KeyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	case files.CertFile != "" || files.KeyFile != "":
		return nil, invalidArg("a client certificate needs both its certificate and its key file")
	}
	if files.CAFile != "" {
		pem, err := os.ReadFile(files.CAFile)
		if err != nil {
			return nil, fmt.Errorf("server CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("server CA %s holds no PEM certificate", files.CAFile)
		}
		cfg.RootCAs = pool
	}
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{
		DialContext:         dialer.DialContext,
		TLSClientConfig:     cfg,
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConns:        16,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
	}
	base := strings.TrimSuffix(u.String(), "/")
	return &Client{
		Socket:  base,
		BaseURL: base,
		HTTP: &http.Client{
			Transport:     tr,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}, nil
}
