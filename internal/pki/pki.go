// Package pki issues the certificates of the API's TLS listener: a private
// CA for the admins, the daemon's server certificate and the admins'
// client certificates (what `vfolder cert` runs). It uses crypto/x509 only:
// ECDSA P-256 keys, SHA-256 signatures, random 128-bit serial numbers.
//
// Files: a CA directory holds ca.crt and ca.key; a leaf is written as
// NAME.crt and NAME.key into the directory given. Keys are PKCS#8 PEM,
// mode 0600; certificates 0644. Nothing is ever overwritten: a file that
// exists already is an error (ErrExists) and nothing is written, so a
// second run cannot replace a CA whose client certificates are in use.
//
// A server certificate names its hosts (DNS names or IP addresses) as
// subject alternative names; clients check them. A client certificate
// carries its NAME as common name, which the daemon logs as the caller.
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"time"
)

// File names inside a CA directory.
const (
	CACert = "ca.crt"
	CAKey  = "ca.key"
)

// Default lifetimes.
const (
	DefaultCAValidity   = 10 * 365 * 24 * time.Hour
	DefaultLeafValidity = 2 * 365 * 24 * time.Hour
)

// ErrExists is returned when a file to write exists already.
var ErrExists = errors.New("file exists; refusing to overwrite it")

// ErrInvalid is wrapped by errors about the arguments.
var ErrInvalid = errors.New("invalid argument")

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

// Issued names the files one call wrote.
type Issued struct {
	CertFile, KeyFile string
	// Subject and NotAfter describe the certificate.
	Subject  string
	NotAfter time.Time
}

// IssueCA creates dir (0700) if needed and writes a new CA into it. name
// is the CA's common name ("" means "vfolder admin CA").
func IssueCA(dir, name string, validity time.Duration) (Issued, error) {
	if name == "" {
		name = "vfolder admin CA"
	}
	if validity <= 0 {
		validity = DefaultCAValidity
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Issued{}, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Issued{}, err
	}
	tmpl, err := template(name, validity)
	if err != nil {
		return Issued{}, err
	}
	tmpl.IsCA = true
	tmpl.BasicConstraintsValid = true
	tmpl.MaxPathLenZero = true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return Issued{}, err
	}
	return write(filepath.Join(dir, CACert), filepath.Join(dir, CAKey), der, key, tmpl)
}

// IssueServer writes NAME.crt and NAME.key into outDir: a server
// certificate for hosts (DNS names or IP addresses, at least one), signed
// by the CA in caDir.
func IssueServer(caDir, outDir, name string, hosts []string, validity time.Duration) (Issued, error) {
	if len(hosts) == 0 {
		return Issued{}, fmt.Errorf("%w: a server certificate needs at least one host name or IP address", ErrInvalid)
	}
	return issueLeaf(caDir, outDir, name, validity, func(t *x509.Certificate) error {
		t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		for _, h := range hosts {
			if ip := net.ParseIP(h); ip != nil {
				t.IPAddresses = append(t.IPAddresses, ip)
			} else if h != "" {
				t.DNSNames = append(t.DNSNames, h)
			} else {
				return fmt.Errorf("%w: empty host name", ErrInvalid)
			}
		}
		return nil
	})
}

// IssueClient writes NAME.crt and NAME.key into outDir: a client
// certificate with common name NAME, signed by the CA in caDir.
func IssueClient(caDir, outDir, name string, validity time.Duration) (Issued, error) {
	return issueLeaf(caDir, outDir, name, validity, func(t *x509.Certificate) error {
		t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		return nil
	})
}

func issueLeaf(caDir, outDir, name string, validity time.Duration, shape func(*x509.Certificate) error) (Issued, error) {
	if !nameRE.MatchString(name) {
		return Issued{}, fmt.Errorf("%w: name %q: want 1-64 letters, digits, '.', '_', '@', '-', starting with a letter or digit", ErrInvalid, name)
	}
	if validity <= 0 {
		validity = DefaultLeafValidity
	}
	ca, err := tls.LoadX509KeyPair(filepath.Join(caDir, CACert), filepath.Join(caDir, CAKey))
	if err != nil {
		return Issued{}, fmt.Errorf("CA in %s: %w", caDir, err)
	}
	caCert, err := x509.ParseCertificate(ca.Certificate[0])
	if err != nil {
		return Issued{}, fmt.Errorf("CA in %s: %w", caDir, err)
	}
	if !caCert.IsCA {
		return Issued{}, fmt.Errorf("%w: %s is not a CA certificate", ErrInvalid, filepath.Join(caDir, CACert))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Issued{}, err
	}
	tmpl, err := template(name, validity)
	if err != nil {
		return Issued{}, err
	}
	if tmpl.NotAfter.After(caCert.NotAfter) {
		tmpl.NotAfter = caCert.NotAfter
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	if err := shape(tmpl); err != nil {
		return Issued{}, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, ca.PrivateKey)
	if err != nil {
		return Issued{}, err
	}
	if err := os.MkdirAll(outDir, 0o700); err != nil {
		return Issued{}, err
	}
	return write(filepath.Join(outDir, name+".crt"), filepath.Join(outDir, name+".key"), der, key, tmpl)
}

func template(cn string, validity time.Duration) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"vfolder"}},
		NotBefore:    now.Add(-5 * time.Minute), // clocks a little behind
		NotAfter:     now.Add(validity),
	}, nil
}

// write writes both files, or neither.
func write(certPath, keyPath string, der []byte, key *ecdsa.PrivateKey, tmpl *x509.Certificate) (Issued, error) {
	for _, p := range []string{certPath, keyPath} {
		if _, err := os.Lstat(p); err == nil {
			return Issued{}, fmt.Errorf("%s: %w", p, ErrExists)
		}
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return Issued{}, err
	}
	if err := writeNew(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}), 0o600); err != nil {
		return Issued{}, err
	}
	if err := writeNew(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		os.Remove(keyPath)
		return Issued{}, err
	}
	return Issued{CertFile: certPath, KeyFile: keyPath, Subject: tmpl.Subject.String(), NotAfter: tmpl.NotAfter}, nil
}

// writeNew creates path exclusively with mode (the umask cannot widen
// it: the mode is set again after creation) and syncs it.
func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s: %w", path, ErrExists)
		}
		return err
	}
	err = f.Chmod(mode)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}
