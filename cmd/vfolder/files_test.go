package main

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vfolder/vfolder/meta"
)

func tarOf(t *testing.T, entries ...tar.Header) []byte {
	t.Helper()
	var b bytes.Buffer
	w := tar.NewWriter(&b)
	for _, h := range entries {
		h := h
		body := ""
		if h.Typeflag == tar.TypeReg {
			body = "data:" + h.Name
			h.Size = int64(len(body))
		}
		if err := w.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if body != "" {
			if _, err := w.Write([]byte(body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestExtractTar(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	n, err := extractTar(bytes.NewReader(tarOf(t,
		tar.Header{Typeflag: tar.TypeDir, Name: "a/", Mode: 0o755},
		tar.Header{Typeflag: tar.TypeReg, Name: "a/f.txt", Mode: 0o640},
		tar.Header{Typeflag: tar.TypeSymlink, Name: "a/l", Linkname: "f.txt"},
	)), dir)
	if err != nil || n != int64(len("data:a/f.txt")) {
		t.Fatalf("extract: %d, %v", n, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "a", "f.txt")); err != nil || string(b) != "data:a/f.txt" {
		t.Errorf("a/f.txt = %q, %v", b, err)
	}
	if st, err := os.Stat(filepath.Join(dir, "a", "f.txt")); err != nil || st.Mode().Perm() != 0o640 {
		t.Errorf("a/f.txt mode: %v, %v", st.Mode(), err)
	}
	if l, err := os.Readlink(filepath.Join(dir, "a", "l")); err != nil || l != "f.txt" {
		t.Errorf("a/l -> %q, %v", l, err)
	}
	outside := t.TempDir()
	for name, entries := range map[string][]tar.Header{
		"dotdot":   {{Typeflag: tar.TypeReg, Name: "../escape"}},
		"absolute": {{Typeflag: tar.TypeReg, Name: "/etc/escape"}},
		"through a symlink": {
			{Typeflag: tar.TypeSymlink, Name: "s", Linkname: outside},
			{Typeflag: tar.TypeReg, Name: "s/escape"},
		},
	} {
		_, err := extractTar(bytes.NewReader(tarOf(t, entries...)), filepath.Join(t.TempDir(), "x"))
		if err == nil {
			t.Errorf("%s: extracted", name)
		}
	}
	if _, err := os.Stat(filepath.Join(outside, "escape")); err == nil {
		t.Errorf("a file was written through the archive's symlink")
	}
}

func TestUploadStateFile(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, []byte("abc"), 0o644); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(p)
	it := uploadItem{local: p, remote: "/x/f", info: fi}
	a, err := uploadStateFile("data", meta.ScopeID{}, it, false)
	if err != nil || !strings.HasPrefix(a, os.Getenv("XDG_CACHE_HOME")) {
		t.Fatalf("state file %q, %v", a, err)
	}
	if b, _ := uploadStateFile("data", meta.ScopeID{}, it, false); b != a {
		t.Errorf("the same upload got another state file")
	}
	other := it
	other.remote = "/y/f"
	if b, _ := uploadStateFile("data", meta.ScopeID{}, other, false); b == a {
		t.Errorf("another target shares the state file")
	}
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(p, later, later); err != nil {
		t.Fatal(err)
	}
	fi2, _ := os.Stat(p)
	changed := it
	changed.info = fi2
	if b, _ := uploadStateFile("data", meta.ScopeID{}, changed, false); b == a {
		t.Errorf("a changed source shares the state file")
	}
}
