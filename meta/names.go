package meta

import (
	"fmt"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxNameLen is the longest folder name, in characters.
const MaxNameLen = 64

var reservedNames = map[string]bool{
	".terminfo": true, ".jupyter": true, ".tmux.conf": true, ".ssh": true,
	".bashrc": true, ".bash_profile": true, ".profile": true, ".zshrc": true,
	".vimrc": true, ".bash_logout": true, ".bash_history": true,
	".config/fish": true, "lost+found": true,
}

var (
	reservedRC      = regexp.MustCompile(`^\.[a-z0-9]+rc$`)
	reservedProfile = regexp.MustCompile(`^\.[a-z0-9]+_profile$`)
)

// ValidateName checks a folder name against the reference system's rules:
// 1..64 characters of valid UTF-8, no '/', no control characters (C0, DEL, C1),
// not "." or "..", no leading or trailing spaces, not a reserved name.
func ValidateName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: folder name is empty", ErrInvalid)
	}
	if !utf8.ValidString(name) {
		return fmt.Errorf("%w: folder name is not valid UTF-8", ErrInvalid)
	}
	if n := utf8.RuneCountInString(name); n > MaxNameLen {
		return fmt.Errorf("%w: folder name is %d characters long; the limit is %d", ErrInvalid, n, MaxNameLen)
	}
	if name == "." || name == ".." {
		return fmt.Errorf("%w: folder name %q is not allowed", ErrInvalid, name)
	}
	if strings.ContainsRune(name, '/') {
		return fmt.Errorf("%w: folder name %q must not contain '/'", ErrInvalid, name)
	}
	if strings.IndexFunc(name, unicode.IsControl) >= 0 {
		return fmt.Errorf("%w: folder name %q contains a control character", ErrInvalid, name)
	}
	if strings.TrimSpace(name) != name {
		return fmt.Errorf("%w: folder name %q has leading or trailing spaces", ErrInvalid, name)
	}
	if reservedNames[name] || reservedRC.MatchString(name) || reservedProfile.MatchString(name) {
		return fmt.Errorf("%w: folder name %q is reserved", ErrInvalid, name)
	}
	return nil
}

// IsAutomount reports whether a folder of this name is mounted into every
// session of its owner automatically (names starting with a dot).
func IsAutomount(name string) bool { return strings.HasPrefix(name, ".") }
