package files

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/meta"
)

const testUser = "0123456789abcdef0123456789abcdef"

func testKey(t testing.TB) []byte {
	t.Helper()
	k, err := LoadKey(filepath.Join(t.TempDir(), "k", "token.key"))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func sign(t testing.TB, key []byte, c Claims) string {
	t.Helper()
	s, err := SignToken(key, c)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func claims(exp time.Time) Claims {
	return Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: testUser, ExpiresAt: jwt.NewNumericDate(exp)}, Perm: meta.PermRW}
}

func TestLoadKey(t *testing.T) {
	p := filepath.Join(t.TempDir(), "state", "token.key")
	k1, err := LoadKey(p)
	if err != nil || len(k1) != keyBytes {
		t.Fatalf("new key: %d bytes, %v", len(k1), err)
	}
	st, err := os.Stat(p)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, %v; want 0600", st.Mode(), err)
	}
	k2, err := LoadKey(p)
	if err != nil || !bytes.Equal(k1, k2) {
		t.Fatalf("reloaded key differs: %v", err)
	}
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKey(p); !errors.Is(err, ErrKeyUnsafe) || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("a group/world-readable key was accepted: %v", err)
	}
	short := filepath.Join(t.TempDir(), "short.key")
	if err := os.WriteFile(short, []byte("abc"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKey(short); !errors.Is(err, ErrKeyUnsafe) {
		t.Errorf("a 3-byte key was accepted")
	}
}

func TestParseToken(t *testing.T) {
	key := testKey(t)
	now := time.Now()
	good := sign(t, key, claims(now.Add(time.Hour)))
	c, err := ParseToken(key, good, now)
	if err != nil || c.Subject != testUser || c.Perm != meta.PermRW || c.Issuer != tokenIssuer {
		t.Fatalf("good token: %+v, %v", c, err)
	}
	dashed := claims(now.Add(time.Hour))
	dashed.Subject = "01234567-89ab-cdef-0123-456789abcdef"
	dashed.Folder = strings.ToUpper("fedcba9876543210fedcba9876543210")
	if c, err := ParseToken(key, sign(t, key, dashed), now); err != nil || c.Subject != testUser || c.Folder != "fedcba9876543210fedcba9876543210" {
		t.Errorf("dashed subject and upper-case folder are not canonicalised: %+v, %v", c, err)
	}

	noExp := claims(now)
	noExp.ExpiresAt = nil
	badPerm := claims(now.Add(time.Hour))
	badPerm.Perm = "admin"
	badSub := claims(now.Add(time.Hour))
	badSub.Subject = "root"
	badFolder := claims(now.Add(time.Hour))
	badFolder.Folder = "../x"
	parts := strings.Split(good, ".")
	other := testKey(t)
	noneTok, _ := jwt.NewWithClaims(jwt.SigningMethodNone, claims(now.Add(time.Hour))).SignedString(jwt.UnsafeAllowNoneSignatureType)
	wrongIss := claims(now.Add(time.Hour))
	wrongIssTok, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, wrongIss).SignedString(key) // no issuer
	cases := map[string]struct {
		tok, want string
	}{
		"expired":         {sign(t, key, claims(now.Add(-time.Second))), "expired"},
		"other key":       {sign(t, other, claims(now.Add(time.Hour))), "signature"},
		"tampered claims": {parts[0] + "." + strings.TrimRight(parts[1], "=") + "x." + parts[2], ""},
		"tampered sig":    {parts[0] + "." + parts[1] + "." + flip(parts[2]), "signature"},
		"alg none":        {noneTok, ""},
		"no expiry":       {sign(t, key, noExp), ""},
		"bad perm":        {sign(t, key, badPerm), "permission"},
		"bad subject":     {sign(t, key, badSub), "subject"},
		"bad folder":      {sign(t, key, badFolder), "folder"},
		"no issuer":       {wrongIssTok, ""},
		"empty":           {"", "malformed"},
		"garbage":         {"a.b.c", ""},
		"huge":            {strings.Repeat("a", maxTokenLen+1), "longer"},
	}
	for name, tc := range cases {
		_, err := ParseToken(key, tc.tok, now)
		if !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want unauthorized mentioning %q", name, err, tc.want)
		}
	}
}

func flip(s string) string {
	b := []byte(s)
	if b[0] == 'A' {
		b[0] = 'B'
	} else {
		b[0] = 'A'
	}
	return string(b)
}

func TestBearer(t *testing.T) {
	for h, want := range map[string]string{"Bearer abc": "abc", "bearer  abc ": "abc", "BEARER x.y.z": "x.y.z"} {
		if got, ok := bearer(h); !ok || got != want {
			t.Errorf("bearer(%q) = %q, %v", h, got, ok)
		}
	}
	for _, h := range []string{"Basic abc", "Bearer", "Bear abc", ""} {
		if _, ok := bearer(h); ok {
			t.Errorf("bearer(%q) accepted", h)
		}
	}
}

func TestCleanPath(t *testing.T) {
	ok := map[string]string{
		"": ".", "/": ".", ".": ".", "//a//b/": "a/b", "/a/./b": "a/b", "a": "a",
		"x/.vfolder-uploads": "x/.vfolder-uploads", ".vfolder-uploadsx": ".vfolder-uploadsx",
		"/" + strings.Repeat("n", 255): strings.Repeat("n", 255),
	}
	for in, want := range ok {
		if got, err := CleanPath(in); err != nil || got != want {
			t.Errorf("CleanPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"..", "/a/../b", "a/..", "a\x00b", "/" + strings.Repeat("n", 256), strings.Repeat("a/", 2049),
		".vfolder-uploads", "/.vfolder-uploads/x.part", "./.vfolder-uploads"} {
		if got, err := CleanPath(in); !errors.Is(err, meta.ErrInvalid) {
			t.Errorf("CleanPath(%q) = %q, %v; want invalid", in, got, err)
		}
	}
}

// FuzzCleanPath: an accepted path is relative, clean, has no "..", no
// NUL, no empty element, does not enter the staging directory, and is a
// fixed point.
func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{"", "/", "a/b", "../x", "/a/./b//", ".vfolder-uploads/x", "a\x00", "..."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := CleanPath(in)
		if err != nil {
			if !errors.Is(err, meta.ErrInvalid) {
				t.Fatalf("error not invalid: %v", err)
			}
			return
		}
		if got == "." {
			return
		}
		if strings.HasPrefix(got, "/") || strings.HasSuffix(got, "/") || strings.Contains(got, "\x00") || len(got) > maxPathLen {
			t.Fatalf("CleanPath(%q) = %q", in, got)
		}
		for i, e := range strings.Split(got, "/") {
			if e == "" || e == "." || e == ".." || len(e) > maxNameLen || (i == 0 && e == StagingDir) {
				t.Fatalf("CleanPath(%q) = %q has element %q", in, got, e)
			}
		}
		if again, err := CleanPath(got); err != nil || again != got {
			t.Fatalf("not a fixed point: %q -> %q, %v", got, again, err)
		}
		dir, base, err := splitPath(got)
		if err != nil || base == "" || strings.Contains(base, "/") || (dir != "." && dir+"/"+base != got) || (dir == "." && base != got) {
			t.Fatalf("splitPath(%q) = %q, %q, %v", got, dir, base, err)
		}
	})
}

// FuzzParseToken: whatever the input, a token parses only if it is a
// valid HS256 token of the key, and then its fields are canonical.
func FuzzParseToken(f *testing.F) {
	key := testKey(f)
	now := time.Now()
	good := sign(f, key, claims(now.Add(time.Hour)))
	f.Add(good)
	f.Add("")
	f.Add("a.b.c")
	f.Add(good[:len(good)-2])
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := ParseToken(key, tok, now)
		if err != nil {
			if !errors.Is(err, ErrUnauthorized) {
				t.Fatalf("error not unauthorized: %v", err)
			}
			return
		}
		if _, err := meta.ParseUUID(c.Subject); err != nil || !c.Perm.Valid() || c.ExpiresAt == nil || !c.ExpiresAt.After(now) {
			t.Fatalf("accepted token with %+v", c)
		}
	})
}

func TestParseMode(t *testing.T) {
	for in, want := range map[string]uint32{"": 0o644, "0644": 0o644, "755": 0o755, "0": 0, "0777": 0o777} {
		if got, err := ParseMode(in); err != nil || got != want {
			t.Errorf("ParseMode(%q) = %o, %v", in, got, err)
		}
	}
	for _, in := range []string{"4755", "0o644", "888", "-1", "07777", "abc", "1000"} {
		if _, err := ParseMode(in); !errors.Is(err, meta.ErrInvalid) {
			t.Errorf("ParseMode(%q) accepted", in)
		}
	}
}

func FuzzParseMode(f *testing.F) {
	for _, s := range []string{"", "0644", "4755", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		m, err := ParseMode(in)
		if err != nil {
			return
		}
		if m > 0o777 {
			t.Fatalf("ParseMode(%q) = %o", in, m)
		}
		if in != "" {
			if n, perr := strconv.ParseUint(in, 8, 32); perr != nil || uint32(n) != m {
				t.Fatalf("ParseMode(%q) = %o, strconv says %o, %v", in, m, n, perr)
			}
		}
	})
}

func FuzzParseUploadID(f *testing.F) {
	f.Add(strings.Repeat("a", 32) + "-" + strings.Repeat("0", 32))
	f.Add("x-y")
	f.Add("../../etc")
	f.Fuzz(func(t *testing.T, id string) {
		folder, err := parseUploadID(id)
		if err != nil {
			return
		}
		if len(id) != 65 || folder != id[:32] || !isHex(folder) || strings.ContainsAny(id, "/.\x00") {
			t.Fatalf("parseUploadID(%q) = %q", id, folder)
		}
	})
}

// FuzzRange: the download path serves files with http.ServeContent; any
// Range header gets either the whole file, a 416, or exactly the bytes
// its Content-Range names.
func FuzzRange(f *testing.F) {
	data := make([]byte, 1000)
	for i := range data {
		data[i] = byte(i * 7)
	}
	for _, s := range []string{"bytes=0-99", "bytes=-5", "bytes=990-", "bytes=5-1", "bytes=0-0,10-20", "bytes=2000-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, rng string) {
		r := httptest.NewRequest(http.MethodGet, "/x", nil)
		r.Header.Set("Range", rng)
		w := httptest.NewRecorder()
		http.ServeContent(w, r, "x", time.Time{}, bytes.NewReader(data))
		switch w.Code {
		case http.StatusOK:
			if !bytes.Equal(w.Body.Bytes(), data) {
				t.Fatalf("200 with %d bytes", w.Body.Len())
			}
		case http.StatusPartialContent:
			cr := w.Header().Get("Content-Range")
			if cr == "" {
				return // multipart: several ranges
			}
			var a, b, n int
			if _, err := fmt.Sscanf(cr, "bytes %d-%d/%d", &a, &b, &n); err == nil && a == n && b == n-1 && w.Body.Len() == 0 {
				return // "bytes=-0": net/http answers an empty 206
			}
			if _, err := fmt.Sscanf(cr, "bytes %d-%d/%d", &a, &b, &n); err != nil || n != len(data) || a > b || b >= n {
				t.Fatalf("Content-Range %q", cr)
			}
			if !bytes.Equal(w.Body.Bytes(), data[a:b+1]) {
				t.Fatalf("range %q: body is not bytes %d-%d", rng, a, b)
			}
		case http.StatusRequestedRangeNotSatisfiable:
		default:
			t.Fatalf("status %d for %q", w.Code, rng)
		}
	})
}

func TestIsFileRoute(t *testing.T) {
	for p, want := range map[string]bool{
		"/v1/files/x/list": true, "/v1/uploads": true, "/v1/uploads/abc": true, "/v1/file-jobs/1": true,
		"/v1/folders": false, "/v1/tokens": false, "/v1/uploadsx": false, "/v1/files": false, "/v1/filesx/y": false,
	} {
		if got := IsFileRoute(p); got != want {
			t.Errorf("IsFileRoute(%q) = %v", p, got)
		}
	}
}

// TestOpsBeneath runs the fd-level operations on a plain directory (the
// views add their own rules on top): they stay below the root and follow
// no symlink.
func TestOpsBeneath(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	root, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(root)
	if err := mkdir(root, "a/b/c", true); err != nil {
		t.Fatal(err)
	}
	if err := mkdir(root, "a/b/c", true); err != nil {
		t.Errorf("mkdir -p of an existing directory: %v", err)
	}
	if err := mkdir(root, "a/b", false); !errors.Is(err, meta.ErrExists) {
		t.Errorf("mkdir of an existing directory: %v", err)
	}
	if err := mkdir(root, "link/x", true); !errors.Is(err, meta.ErrInvalid) {
		t.Errorf("mkdir through a symlink: %v", err)
	}
	if _, err := stat(root, "link/secret"); !errors.Is(err, meta.ErrInvalid) {
		t.Errorf("stat through a symlink: %v", err)
	}
	if e, err := stat(root, "link"); err != nil || e.Type != api.FileSymlink || e.Target != outside {
		t.Errorf("stat of the symlink itself: %+v, %v", e, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a", "f"), []byte("12345"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := move(root, "a/f", "a/b/c/g", false); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a", "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := move(root, "a/f", "a/b/c/g", false); !errors.Is(err, meta.ErrExists) {
		t.Errorf("move onto an existing file: %v", err)
	}
	var names []string
	if err := list(context.Background(), root, "a/b/c", func(e api.FileEntry) error { names = append(names, e.Name); return nil }, func() {}); err != nil || len(names) != 1 || names[0] != "g" {
		t.Errorf("list: %v, %v", names, err)
	}
	if err := remove(root, "a/b"); !errors.Is(err, meta.ErrConflict) {
		t.Errorf("remove of a non-empty directory: %v", err)
	}
	var p countProgress
	if err := removeAll(context.Background(), root, "a", "/a", &p); err != nil {
		t.Fatal(err)
	}
	if p.entries != 5 || p.bytes != 6 {
		t.Errorf("removeAll counted %d entries, %d bytes; want 5, 6", p.entries, p.bytes)
	}
	if err := removeAll(context.Background(), root, "link", "/link", &p); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(outside, "secret")); err != nil {
		t.Errorf("removing a symlink touched its target: %v", err)
	}
}

type countProgress struct{ entries, bytes int64 }

func (c *countProgress) add(e, b int64) { c.entries += e; c.bytes += b }

// TestRemoveAllBig removes a directory of several getdents batches.
func TestRemoveAllBig(t *testing.T) {
	dir := t.TempDir()
	const n = 3*listBatch + 17
	if err := os.MkdirAll(filepath.Join(dir, "big", "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if err := os.WriteFile(filepath.Join(dir, "big", fmt.Sprintf("f%05d", i)), []byte("ab"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	root, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(root)
	var seen int
	if err := list(context.Background(), root, "big", func(api.FileEntry) error { seen++; return nil }, func() {}); err != nil || seen != n+1 {
		t.Errorf("list saw %d entries, %v; want %d", seen, err, n+1)
	}
	var p countProgress
	if err := removeAll(context.Background(), root, "big", "/big", &p); err != nil {
		t.Fatal(err)
	}
	if p.entries != n+2 || p.bytes != 2*n {
		t.Errorf("removeAll counted %d entries, %d bytes; want %d, %d", p.entries, p.bytes, n+2, 2*n)
	}
	if _, err := os.Stat(filepath.Join(dir, "big")); !os.IsNotExist(err) {
		t.Errorf("big still there: %v", err)
	}
}
