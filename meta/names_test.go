package meta_test

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/vfolder/vfolder/meta"
)

func TestValidateName(t *testing.T) {
	ok := []string{
		"a",
		strings.Repeat("a", 64),
		strings.Repeat("데", 64), // 64 characters, 192 bytes
		".local",
		".linuxbrew",
		".cache",
		".bashrc2",         // not of the form .<alnum>rc
		".Bashrc",          // the patterns are lowercase only
		".foo_profile.bak", // pattern is anchored
		"my data",
		"데이터",
		"模型-v2",
		"emoji 🚀",
		"...",
		"a..b",
		"-rf",
		"a:b",
		"ssh",
		".ssh2",
		"lost+found2",
	}
	for _, name := range ok {
		if err := meta.ValidateName(name); err != nil {
			t.Errorf("ValidateName(%q) = %v, want ok", name, err)
		}
	}
	bad := []string{
		"",
		strings.Repeat("a", 65),
		strings.Repeat("데", 65),
		".",
		"..",
		"a/b",
		"/",
		"a/",
		"/a",
		"../x",
		".ssh",
		".bashrc",
		".zshrc",
		".vimrc",
		".xrc",
		".foo1rc",
		".bash_profile",
		".profile",
		".foo_profile",
		".terminfo",
		".jupyter",
		".tmux.conf",
		".bash_logout",
		".bash_history",
		"lost+found",
		".config/fish",
		"a\x00b",
		"a\nb",
		"\t",
		"a\x7f",
		"a\u0085b", // C1 control (NEL)
		"a\u009bb", // C1 control (CSI)
		" leading",
		"trailing ",
		"\u00a0nbsp",
		"\xff",
		"a\xc3",
		"\xed\xa0\x80", // surrogate half
	}
	for _, name := range bad {
		err := meta.ValidateName(name)
		if !errors.Is(err, meta.ErrInvalid) {
			t.Errorf("ValidateName(%q) = %v, want ErrInvalid", name, err)
		}
	}
}

func TestIsAutomount(t *testing.T) {
	for name, want := range map[string]bool{".local": true, ".linuxbrew": true, "local": false, "a.b": false} {
		if got := meta.IsAutomount(name); got != want {
			t.Errorf("IsAutomount(%q) = %v, want %v", name, got, want)
		}
	}
}

// The fuzz target restates the rules independently of the implementation.
var (
	fuzzReserved = map[string]bool{
		".terminfo": true, ".jupyter": true, ".tmux.conf": true, ".ssh": true,
		".bashrc": true, ".bash_profile": true, ".profile": true, ".zshrc": true,
		".vimrc": true, ".bash_logout": true, ".bash_history": true, "lost+found": true,
	}
	fuzzRC      = regexp.MustCompile(`^\.[a-z0-9]+rc$`)
	fuzzProfile = regexp.MustCompile(`^\.[a-z0-9]+_profile$`)
)

func FuzzValidateName(f *testing.F) {
	for _, s := range []string{"a", "..", ".", "a/b", ".ssh", ".bashrc", ".foo_profile", ".local",
		strings.Repeat("x", 64), strings.Repeat("x", 65), "데이터", "a\x00", "\u0085", " a", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := meta.ValidateName(name)
		if err != nil {
			if !errors.Is(err, meta.ErrInvalid) {
				t.Fatalf("ValidateName(%q) = %v, not ErrInvalid", name, err)
			}
			return
		}
		switch {
		case name == "":
			t.Fatal("accepted the empty name")
		case !utf8.ValidString(name):
			t.Fatalf("accepted invalid UTF-8 %q", name)
		case utf8.RuneCountInString(name) > meta.MaxNameLen:
			t.Fatalf("accepted %d characters", utf8.RuneCountInString(name))
		case strings.Contains(name, "/"):
			t.Fatalf("accepted %q with a slash", name)
		case name == "." || name == "..":
			t.Fatalf("accepted %q", name)
		case fuzzReserved[name] || fuzzRC.MatchString(name) || fuzzProfile.MatchString(name):
			t.Fatalf("accepted reserved %q", name)
		case strings.TrimSpace(name) != name:
			t.Fatalf("accepted %q with surrounding spaces", name)
		}
		for _, r := range name {
			if r < 0x20 || (r >= 0x7f && r <= 0x9f) {
				t.Fatalf("accepted %q with control character %U", name, r)
			}
		}
	})
}
