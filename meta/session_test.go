package meta_test

import (
	"encoding/json"
	"errors"
	"path"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/vfolder/vfolder/meta"
	"github.com/vfolder/vfolder/meta/metatest"
)

var sessionIDRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,128}$`)

func TestValidateSessionID(t *testing.T) {
	good := []string{"a", "0", "kernel-01.A_b", "...", ".x", "x.", "-", "_", strings.Repeat("Z", 128)}
	bad := []string{"", ".", "..", "a/b", "a b", "a:b", "é", "a\x00", "a\n", strings.Repeat("Z", 129), "/", "a\\b"}
	for _, id := range good {
		if err := meta.ValidateSessionID(id); err != nil {
			t.Errorf("ValidateSessionID(%q) = %v, want nil", id, err)
		}
	}
	for _, id := range bad {
		if err := meta.ValidateSessionID(id); !errors.Is(err, meta.ErrInvalid) {
			t.Errorf("ValidateSessionID(%q) = %v, want ErrInvalid", id, err)
		}
	}
}

func FuzzValidateSessionID(f *testing.F) {
	for _, s := range []string{"", ".", "..", "...", "abc", "a/b", "é", strings.Repeat("a", 128), strings.Repeat("a", 129), "a\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		err := meta.ValidateSessionID(id)
		want := sessionIDRE.MatchString(id) && id != "." && id != ".."
		if (err == nil) != want {
			t.Fatalf("ValidateSessionID(%q) = %v; the rule says valid=%v", id, err, want)
		}
		if err != nil && !errors.Is(err, meta.ErrInvalid) {
			t.Fatalf("ValidateSessionID(%q) = %v, not ErrInvalid", id, err)
		}
	})
}

// FuzzValidateSession checks that every mount ValidateSession accepts
// survives a JSON round trip unchanged, is one path component by name, a
// clean absolute target, and a subpath that stays inside the folder.
func FuzzValidateSession(f *testing.F) {
	seeds := [][4]string{
		{"a", "/home/work/a", "", ""},
		{"data set ü", "/workspace", "runs/2024", "/run/vf/s/data set ü"},
		{"..", "/x", "", ""},
		{"a/b", "/x", "", ""},
		{"a", "/x/../y", "", ""},
		{"a", "/x", "../y", ""},
		{"a", "/x", "a/../../b", ""},
		{"a", "/x", "./a//b/", "rel"},
		{"a\x7f", "/x\t", "\xff", "/\x00"},
		{"a", "/", "..a/b..", "/"},
	}
	for _, s := range seeds {
		f.Add(s[0], s[1], s[2], s[3])
	}
	f.Fuzz(func(t *testing.T, name, target, subpath, hostPath string) {
		m := meta.SessionMount{FolderID: strings.Repeat("a", 32), Name: name, Target: target, Subpath: subpath, HostPath: hostPath, Mode: meta.PermRO}
		s := metatest.NewSession("s", metatest.User(1), m)
		err := meta.ValidateSession(s)
		if err != nil {
			if !errors.Is(err, meta.ErrInvalid) {
				t.Fatalf("ValidateSession(%+v) = %v, not ErrInvalid", m, err)
			}
			return
		}
		raw, jerr := json.Marshal(s)
		if jerr != nil {
			t.Fatal(jerr)
		}
		var back meta.Session
		if jerr := json.Unmarshal(raw, &back); jerr != nil {
			t.Fatal(jerr)
		}
		if !reflect.DeepEqual(back.Mounts, s.Mounts) {
			t.Fatalf("accepted mount changes in a JSON round trip: %+v -> %+v", s.Mounts, back.Mounts)
		}
		if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") || len(name) > meta.MaxMountNameLen {
			t.Fatalf("accepted mount name %q is not one path component", name)
		}
		if !path.IsAbs(target) || path.Clean(target) != target || strings.ContainsRune(target, 0) {
			t.Fatalf("accepted target %q is not a clean absolute path", target)
		}
		if hostPath != "" && (!path.IsAbs(hostPath) || strings.ContainsRune(hostPath, 0)) {
			t.Fatalf("accepted host path %q is not absolute", hostPath)
		}
		if j := path.Join("/folder", subpath); j != "/folder" && !strings.HasPrefix(j, "/folder/") {
			t.Fatalf("accepted subpath %q escapes the folder (%s)", subpath, j)
		}
		if strings.HasPrefix(subpath, "/") || strings.ContainsRune(subpath, 0) || !utf8.ValidString(subpath) {
			t.Fatalf("accepted subpath %q", subpath)
		}
	})
}
