package fs

import (
	"errors"
	"strings"
	"testing"

	"github.com/vfolder/vfolder/meta"
)

func TestFsValidateSessionKey(t *testing.T) {
	good := []string{"a", "sess-1", "A.b_c-9", strings.Repeat("x", 128), "..a", "a.."}
	bad := []string{"", ".", "..", strings.Repeat("x", 129), "a/b", "a b", "a\x00", "ä", "a:b", "-\n"}
	for _, s := range good {
		if err := ValidateSessionKey(s); err != nil {
			t.Errorf("ValidateSessionKey(%q) = %v, want nil", s, err)
		}
	}
	for _, s := range bad {
		if err := ValidateSessionKey(s); !errors.Is(err, meta.ErrInvalid) {
			t.Errorf("ValidateSessionKey(%q) = %v, want ErrInvalid", s, err)
		}
	}
}

func TestFsValidateKey(t *testing.T) {
	hex := strings.Repeat("0123456789abcdef", 2)
	cases := []struct {
		ns, key string
		ok      bool
	}{
		{NSSessions, "s1", true},
		{NSUsers, hex, true},
		{NSProjects, hex, true},
		{NSUsers, strings.ToUpper(hex), false},
		{NSUsers, hex[:31], false},
		{NSProjects, "01234567-89ab-cdef-0123-456789abcdef", false},
		{NSUsers, "s1", false},
		{"other", hex, false},
		{"", "s1", false},
	}
	for _, c := range cases {
		err := ValidateKey(c.ns, c.key)
		if c.ok != (err == nil) {
			t.Errorf("ValidateKey(%q, %q) = %v, want ok=%v", c.ns, c.key, err, c.ok)
		}
		if err != nil && !errors.Is(err, meta.ErrInvalid) {
			t.Errorf("ValidateKey(%q, %q) = %v, not ErrInvalid", c.ns, c.key, err)
		}
	}
}

func TestFsValidateEntryName(t *testing.T) {
	good := []string{"a", "my folder", ".hidden", "..x", strings.Repeat("n", 255), "ü-名前"}
	bad := []string{"", ".", "..", "a/b", "/", "a\x00b", strings.Repeat("n", 256)}
	for _, s := range good {
		if err := ValidateEntryName(s); err != nil {
			t.Errorf("ValidateEntryName(%q) = %v, want nil", s, err)
		}
	}
	for _, s := range bad {
		if err := ValidateEntryName(s); !errors.Is(err, meta.ErrInvalid) {
			t.Errorf("ValidateEntryName(%q) = %v, want ErrInvalid", s, err)
		}
	}
}

func TestFsSplitSubpath(t *testing.T) {
	cases := []struct {
		in   string
		want []string
		ok   bool
	}{
		{"", nil, true},
		{".", nil, true},
		{"a", []string{"a"}, true},
		{"a/b/c", []string{"a", "b", "c"}, true},
		{"a//b/./c/", []string{"a", "b", "c"}, true},
		{"..", nil, false},
		{"a/..", nil, false},
		{"a/../b", nil, false},
		{"../a", nil, false},
		{"/a", nil, false},
		{"/", nil, false},
		{"a/\x00", nil, false},
		{"a/" + strings.Repeat("x", 256), nil, false},
		{"a/" + strings.Repeat("x", 255), []string{"a", strings.Repeat("x", 255)}, true},
	}
	for _, c := range cases {
		got, err := SplitSubpath(c.in)
		if c.ok != (err == nil) {
			t.Errorf("SplitSubpath(%q) err = %v, want ok=%v", c.in, err, c.ok)
			continue
		}
		if err != nil {
			if !errors.Is(err, meta.ErrInvalid) {
				t.Errorf("SplitSubpath(%q) = %v, not ErrInvalid", c.in, err)
			}
			continue
		}
		if strings.Join(got, "/") != strings.Join(c.want, "/") || len(got) != len(c.want) {
			t.Errorf("SplitSubpath(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestFsSpecValidate(t *testing.T) {
	hex := strings.Repeat("ab", 16)
	base := ViewSpec{
		Namespace: NSUsers, Key: hex, Name: "data", VolumeName: "v", VolumePath: "/vol",
		FolderRel: hex + "/ab/ab/" + hex[4:], Mode: meta.PermRW, UID: 1000, GID: 1000,
		FolderID: hex, Scope: meta.ScopeID{Kind: meta.KindUser, UUID: hex},
	}
	if comps, err := base.validate(); err != nil || len(comps) != 4 {
		t.Fatalf("base spec: %v %q", err, comps)
	}
	mut := map[string]func(*ViewSpec){
		"namespace":   func(s *ViewSpec) { s.Namespace = "x" },
		"key":         func(s *ViewSpec) { s.Key = "nothex" },
		"name":        func(s *ViewSpec) { s.Name = "a/b" },
		"volume":      func(s *ViewSpec) { s.VolumeName = "" },
		"volume path": func(s *ViewSpec) { s.VolumePath = "rel/path" },
		"folder":      func(s *ViewSpec) { s.FolderRel = "" },
		"folder up":   func(s *ViewSpec) { s.FolderRel = "../x" },
		"folder abs":  func(s *ViewSpec) { s.FolderRel = "/etc" },
		"subpath up":  func(s *ViewSpec) { s.Subpath = "a/../../x" },
		"subpath abs": func(s *ViewSpec) { s.Subpath = "/etc" },
		"mode":        func(s *ViewSpec) { s.Mode = "rwx" },
		"uid":         func(s *ViewSpec) { s.UID = ^uint32(0) },
		"folder id":   func(s *ViewSpec) { s.FolderID = "x" },
		"scope":       func(s *ViewSpec) { s.Scope = meta.ScopeID{Kind: "group", UUID: hex} },
	}
	for name, m := range mut {
		s := base
		m(&s)
		if _, err := s.validate(); !errors.Is(err, meta.ErrInvalid) {
			t.Errorf("%s: validate = %v, want ErrInvalid", name, err)
		}
	}
}

// FuzzFsSubpath: an accepted subpath never climbs, never is absolute, and
// its components are plain names.
func FuzzFsSubpath(f *testing.F) {
	for _, s := range []string{"", ".", "a/b", "../x", "a/../b", "/abs", "a//b/", "a\x00b", strings.Repeat("y/", 40)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		comps, err := SplitSubpath(p)
		if err != nil {
			if !errors.Is(err, meta.ErrInvalid) {
				t.Fatalf("SplitSubpath(%q) = %v, not ErrInvalid", p, err)
			}
			return
		}
		if strings.HasPrefix(p, "/") {
			t.Fatalf("accepted absolute %q", p)
		}
		for _, c := range comps {
			if c == "" || c == "." || c == ".." || strings.ContainsAny(c, "/\x00") || len(c) > 255 {
				t.Fatalf("SplitSubpath(%q) gave component %q", p, c)
			}
		}
		for _, c := range strings.Split(p, "/") {
			if c == ".." {
				t.Fatalf("accepted %q with ..", p)
			}
		}
	})
}

// FuzzFsSessionKey: accepted keys are 1..128 bytes of the allowed set and
// never "." or "..".
func FuzzFsSessionKey(f *testing.F) {
	for _, s := range []string{"", "a", ".", "..", "s-1.x_y", "a/b", strings.Repeat("k", 129)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := ValidateSessionKey(s)
		if err != nil {
			if !errors.Is(err, meta.ErrInvalid) {
				t.Fatalf("ValidateSessionKey(%q) = %v, not ErrInvalid", s, err)
			}
			return
		}
		if s == "" || len(s) > 128 || s == "." || s == ".." {
			t.Fatalf("accepted %q", s)
		}
		if strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != "" {
			t.Fatalf("accepted %q with other characters", s)
		}
	})
}

// FuzzFsEntryName: accepted names are one path component of 1..255 bytes.
func FuzzFsEntryName(f *testing.F) {
	for _, s := range []string{"", "a", ".", "..", "a/b", "x\x00", strings.Repeat("n", 256)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := ValidateEntryName(s)
		if err != nil {
			if !errors.Is(err, meta.ErrInvalid) {
				t.Fatalf("ValidateEntryName(%q) = %v, not ErrInvalid", s, err)
			}
			return
		}
		if s == "" || len(s) > 255 || s == "." || s == ".." || strings.ContainsAny(s, "/\x00") {
			t.Fatalf("accepted %q", s)
		}
	})
}

// FuzzFsKey: user and project keys are exactly 32 lowercase hex digits.
func FuzzFsKey(f *testing.F) {
	f.Add(NSUsers, strings.Repeat("a", 32))
	f.Add(NSProjects, strings.Repeat("A", 32))
	f.Add(NSSessions, "s")
	f.Add("x", "y")
	f.Fuzz(func(t *testing.T, ns, key string) {
		err := ValidateKey(ns, key)
		if err != nil {
			return
		}
		switch ns {
		case NSSessions:
			if ValidateSessionKey(key) != nil {
				t.Fatalf("accepted session key %q", key)
			}
		case NSUsers, NSProjects:
			if len(key) != 32 || strings.Trim(key, "0123456789abcdef") != "" {
				t.Fatalf("accepted %s key %q", ns, key)
			}
		default:
			t.Fatalf("accepted namespace %q", ns)
		}
	})
}
