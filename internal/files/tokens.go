package files

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/vfolder/vfolder/meta"
)

// ErrKeyUnsafe: the token key file exists but may not be used (readable
// by others, too short).
var ErrKeyUnsafe = errors.New("token key unsafe")

// ErrUnauthorized: a bearer token is missing, malformed, expired, signed
// with another key or names nothing valid (HTTP 401).
var ErrUnauthorized = errors.New("unauthorized")

const (
	tokenIssuer = "vfolderd"
	keyBytes    = 32
	// maxTokenLen bounds what is parsed at all.
	maxTokenLen = 4096
)

// Claims are what a file API token carries: the user (sub), optionally
// one folder, and the highest permission it lends.
type Claims struct {
	jwt.RegisteredClaims
	Folder string          `json:"folder,omitempty"`
	Perm   meta.Permission `json:"perm"`
}

// LoadKey reads the HS256 key from path, creating it (32 random bytes,
// mode 0600, parent 0700) when absent. A key file readable by others, or
// shorter than 32 bytes, is refused.
func LoadKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("token key directory: %w", err)
		}
		k := make([]byte, keyBytes)
		if _, err := rand.Read(k); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("token key %s: %w", path, err)
		}
		_, werr := f.Write(k)
		if serr := f.Sync(); werr == nil {
			werr = serr
		}
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			os.Remove(path)
			return nil, fmt.Errorf("token key %s: %w", path, werr)
		}
		return k, nil
	}
	if err != nil {
		return nil, fmt.Errorf("token key: %w", err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %#o: it must not be readable by group or others (chmod 600)", ErrKeyUnsafe, path, st.Mode().Perm())
	}
	if len(b) < keyBytes {
		return nil, fmt.Errorf("%w: %s holds %d bytes; at least %d are needed", ErrKeyUnsafe, path, len(b), keyBytes)
	}
	return b, nil
}

// SignToken signs c with key (HS256).
func SignToken(key []byte, c Claims) (string, error) {
	c.Issuer = tokenIssuer
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(key)
}

// ParseToken verifies a token: HS256 with key, issued by vfolderd, not
// expired (an expiry is required), a user UUID as subject, a valid
// permission and, when present, a folder id. Every failure wraps
// ErrUnauthorized.
func ParseToken(key []byte, tok string, now time.Time) (Claims, error) {
	if len(tok) > maxTokenLen {
		return Claims{}, fmt.Errorf("%w: token is longer than %d bytes", ErrUnauthorized, maxTokenLen)
	}
	var c Claims
	_, err := jwt.ParseWithClaims(tok, &c, func(*jwt.Token) (any, error) { return key, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuer(tokenIssuer),
		jwt.WithTimeFunc(func() time.Time { return now }),
	)
	if err != nil {
		msg := err.Error()
		switch {
		case errors.Is(err, jwt.ErrTokenExpired):
			msg = "the token has expired"
		case errors.Is(err, jwt.ErrTokenSignatureInvalid):
			msg = "the token's signature is not valid (tampered with, or signed with another key)"
		case errors.Is(err, jwt.ErrTokenMalformed):
			msg = "the token is malformed"
		}
		return Claims{}, fmt.Errorf("%w: %s", ErrUnauthorized, msg)
	}
	u, err := meta.ParseUUID(c.Subject)
	if err != nil {
		return Claims{}, fmt.Errorf("%w: the token's subject is not a user UUID", ErrUnauthorized)
	}
	c.Subject = u
	if !c.Perm.Valid() {
		return Claims{}, fmt.Errorf("%w: the token's permission %q is none of ro, rw, wd", ErrUnauthorized, c.Perm)
	}
	if c.Folder != "" {
		f, err := meta.ParseUUID(c.Folder)
		if err != nil {
			return Claims{}, fmt.Errorf("%w: the token's folder is not a folder id", ErrUnauthorized)
		}
		c.Folder = f
	}
	return c, nil
}

// bearer returns the token of an "Authorization: Bearer" header, or "".
func bearer(h string) (string, bool) {
	const p = "bearer "
	if len(h) < len(p) || !strings.EqualFold(h[:len(p)], p) {
		return "", false
	}
	return strings.TrimSpace(h[len(p):]), true
}

func jwtSubject(user string) jwt.RegisteredClaims { return jwt.RegisteredClaims{Subject: user} }

func jwtTime(t time.Time) *jwt.NumericDate { return jwt.NewNumericDate(t) }
