package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeCert writes a self-signed certificate and its key as PEM files in
// dir and returns their paths.
func writeCert(t *testing.T, dir, name string) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func TestParseCluster(t *testing.T) {
	c, err := Parse(`
[cluster]
etcd_endpoints = ["https://10.0.0.1:2379", "https://10.0.0.2:2379"]
ca_file = "/etc/vfolder/etcd-ca.pem"
cert_file = "/etc/vfolder/node.pem"
key_file = "/etc/vfolder/node-key.pem"
prefix = "/vf/"
request_timeout = "3s"
lease_ttl = 7
quota_wait = "750ms"
node_id = "gpu-07"
`)
	if err != nil {
		t.Fatal(err)
	}
	cl := c.Cluster
	if !cl.Enabled() || len(cl.EtcdEndpoints) != 2 || cl.EtcdEndpoints[1] != "https://10.0.0.2:2379" {
		t.Errorf("endpoints = %q", cl.EtcdEndpoints)
	}
	if cl.CAFile != "/etc/vfolder/etcd-ca.pem" || cl.CertFile != "/etc/vfolder/node.pem" || cl.KeyFile != "/etc/vfolder/node-key.pem" {
		t.Errorf("TLS files = %+v", cl)
	}
	if cl.KeyPrefix() != "/vf/" || cl.Timeout() != 3*time.Second || cl.TTL() != 7*time.Second || cl.Node() != "gpu-07" {
		t.Errorf("prefix %q timeout %v ttl %v node %q", cl.KeyPrefix(), cl.Timeout(), cl.TTL(), cl.Node())
	}
	if cl.Wait() != 750*time.Millisecond {
		t.Errorf("quota wait %v", cl.Wait())
	}

	// One comma-separated string works too; the rest takes the defaults.
	c, err = Parse("[cluster]\netcd_endpoints = \"http://a:2379, http://b:2379,\"\n")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.Cluster.EtcdEndpoints, " "); got != "http://a:2379 http://b:2379" {
		t.Errorf("endpoints = %q", got)
	}
	if c.Cluster.KeyPrefix() != DefaultEtcdPrefix || c.Cluster.Timeout() != DefaultRequestTimeout || c.Cluster.TTL() != DefaultLeaseTTL || c.Cluster.Wait() != DefaultQuotaWait {
		t.Errorf("defaults: %q %v %v", c.Cluster.KeyPrefix(), c.Cluster.Timeout(), c.Cluster.TTL())
	}
	if h, _ := os.Hostname(); c.Cluster.Node() != h {
		t.Errorf("node id %q; want the hostname %q", c.Cluster.Node(), h)
	}
	if Default().Cluster.Enabled() {
		t.Error("the default configuration is in cluster mode")
	}

	for _, tc := range []struct{ text, want string }{
		{"[cluster]\netcd_endpoint = \"http://a:2379\"", "cluster.etcd_endpoint"},
		{"[cluster]\netcd_endpoints = 5", "list of URLs"},
		{"[cluster]\netcd_endpoints = [5]", "list of URLs"},
		{"[cluster]\nlease_ttl = \"soon\"", "not a duration"},
		{"[cluster]\nrequest_timeout = -3", "positive"},
	} {
		if _, err := Parse(tc.text); err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v; want an error mentioning %q", tc.text, err, tc.want)
		}
	}
}

func TestValidateCluster(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeCert(t, dir, "node")
	other, _ := writeCert(t, dir, "other")
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	ok := func(c *Config) {
		c.Cluster.EtcdEndpoints = []string{"https://127.0.0.1:2379"}
		c.Cluster.NodeID = "node-1"
	}
	for _, tc := range []struct {
		name   string
		mutate func(c *Config)
		want   string // "" for valid
	}{
		{"endpoints only", func(c *Config) { c.Cluster.EtcdEndpoints = []string{"http://127.0.0.1:2379"}; c.Cluster.NodeID = "n1" }, ""},
		{"host:port", func(c *Config) { c.Cluster.EtcdEndpoints = []string{"127.0.0.1:2379"}; c.Cluster.NodeID = "n1" }, ""},
		{"TLS", func(c *Config) {
			ok(c)
			c.Cluster.CAFile, c.Cluster.CertFile, c.Cluster.KeyFile = cert, cert, key
		}, ""},
		{"CA alone", func(c *Config) { ok(c); c.Cluster.CAFile = cert }, ""},
		{"bad scheme", func(c *Config) { ok(c); c.Cluster.EtcdEndpoints = []string{"ftp://x:1"} }, "scheme must be http or https"},
		{"no port", func(c *Config) { ok(c); c.Cluster.EtcdEndpoints = []string{"etcd-host"} }, "neither a URL"},
		{"path", func(c *Config) { ok(c); c.Cluster.EtcdEndpoints = []string{"http://x:1/v3"} }, "without a path"},
		{"TLS over http", func(c *Config) {
			ok(c)
			c.Cluster.EtcdEndpoints = []string{"http://127.0.0.1:2379"}
			c.Cluster.CAFile = cert
		}, "plain http but TLS files are set"},
		{"cert without key", func(c *Config) { ok(c); c.Cluster.CertFile = cert }, "both cert_file and key_file"},
		{"missing CA", func(c *Config) { ok(c); c.Cluster.CAFile = filepath.Join(dir, "missing.pem") }, "cluster.ca_file: open"},
		{"relative CA", func(c *Config) { ok(c); c.Cluster.CAFile = "ca.pem" }, "not an absolute path"},
		{"garbage CA", func(c *Config) { ok(c); c.Cluster.CAFile = garbage }, "holds no PEM certificate"},
		{"key of another cert", func(c *Config) { ok(c); c.Cluster.CertFile, c.Cluster.KeyFile = other, key }, "not a matching PEM certificate and key"},
		{"bad node id", func(c *Config) { ok(c); c.Cluster.NodeID = "node/1" }, "cluster.node_id: \"node/1\""},
		{"long node id", func(c *Config) { ok(c); c.Cluster.NodeID = strings.Repeat("n", 64) }, "1-63 characters"},
		{"bad prefix", func(c *Config) { ok(c); c.Cluster.Prefix = "vfolder" }, "cluster.prefix"},
		{"ttl too short", func(c *Config) { ok(c); c.Cluster.LeaseTTL = time.Second }, "cluster.lease_ttl: 1s is outside 2s..1h"},
		{"ttl fraction", func(c *Config) { ok(c); c.Cluster.LeaseTTL = 2500 * time.Millisecond }, "whole number of seconds"},
		{"quota wait too long", func(c *Config) { ok(c); c.Cluster.QuotaWait = time.Hour }, "cluster.quota_wait: 1h0m0s is outside 100ms..10m"},
		{"quota wait without endpoints", func(c *Config) { c.Cluster.QuotaWait = time.Second }, "quota_wait need cluster.etcd_endpoints"},
		{"timeout too short", func(c *Config) { ok(c); c.Cluster.RequestTimeout = time.Millisecond }, "cluster.request_timeout"},
		{"node id without endpoints", func(c *Config) { c.Cluster.NodeID = "n1" }, "cluster.node_id: is set but cluster.etcd_endpoints is empty"},
		{"TLS without endpoints", func(c *Config) { c.Cluster.CAFile = cert }, "cluster.ca_file: is set but"},
		{"ttl without endpoints", func(c *Config) { c.Cluster.LeaseTTL = 5 * time.Second }, "need cluster.etcd_endpoints"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig(t)
			tc.mutate(c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("rejected: %v", err)
			case tc.want != "" && (err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Validate = %v; want an error mentioning %q", err, tc.want)
			}
		})
	}
}

// TestSampleClusterTable: the sample's commented [cluster] table parses
// once uncommented, so that its keys are the real ones.
func TestSampleClusterTable(t *testing.T) {
	data, err := os.ReadFile("../../contrib/vfolderd.toml.sample")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	i := strings.Index(text, "# [cluster]")
	if i < 0 {
		t.Fatal("the sample has no commented [cluster] table")
	}
	var lines []string
	for _, l := range strings.Split(text[i:], "\n") {
		if strings.HasPrefix(l, "# ") && !strings.HasPrefix(l, "# #") {
			lines = append(lines, strings.TrimPrefix(l, "# "))
		}
	}
	c, err := Parse(strings.Join(lines, "\n"))
	if err != nil {
		t.Fatalf("the uncommented table: %v", err)
	}
	cl := c.Cluster
	if len(cl.EtcdEndpoints) != 3 || cl.NodeID == "" || cl.CertFile == "" || cl.TTL() != DefaultLeaseTTL ||
		cl.Timeout() != DefaultRequestTimeout || cl.KeyPrefix() != DefaultEtcdPrefix {
		t.Errorf("the sample's table gives %+v", cl)
	}
}
