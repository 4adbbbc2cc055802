package meta

import (
	"cmp"
	"fmt"
	"path"
	"slices"
	"strings"
	"unicode/utf8"
)

// Record rules of memberships and sessions, shared by every Store in this
// package.

const (
	// MaxSessionIDLen is the longest session id, in bytes.
	MaxSessionIDLen = 128
	// MaxSessionMounts is the most mounts one session record may hold.
	MaxSessionMounts = 1024
	// MaxMountNameLen is the longest mount name, in bytes (one path
	// component).
	MaxMountNameLen = 255
	// MaxPathLen is the longest Target, HostPath or Subpath of a mount, in
	// bytes (PATH_MAX without the terminating NUL).
	MaxPathLen = 4095
)

// ValidateSessionID checks a session id: 1..128 characters of
// [A-Za-z0-9._-], not "." or "..".
func ValidateSessionID(id string) error {
	if id == "" || len(id) > MaxSessionIDLen {
		return fmt.Errorf("%w: session id must be 1..%d characters long", ErrInvalid, MaxSessionIDLen)
	}
	if id == "." || id == ".." {
		return fmt.Errorf("%w: session id %q is not allowed", ErrInvalid, id)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%w: session id %q may only contain letters, digits, '.', '_' and '-'", ErrInvalid, id)
		}
	}
	return nil
}

// ValidateSession checks that s is a well-formed session record, as
// PutSession requires:
//
//   - ID passes ValidateSessionID; User is 32 lowercase hex digits;
//   - at most MaxSessionMounts mounts, with unique Names and unique
//     Targets;
//   - each mount: FolderID is 32 lowercase hex digits; Mode is ro, rw or
//     wd; Name is one path component of valid UTF-8 (1..255 bytes, not "."
//     or "..", no '/', no control characters); Target is a clean absolute
//     path of valid UTF-8 without control characters; HostPath is "" or an
//     absolute path of valid UTF-8 without NUL; Subpath is "" or a
//     relative path of valid UTF-8 without NUL and without ".."
//     components. Paths are at most MaxPathLen bytes.
//
// Mount policy (system directories as targets, nested targets or
// sources, the user's folder permission) is not checked here.
func ValidateSession(s Session) error {
	if err := ValidateSessionID(s.ID); err != nil {
		return err
	}
	if !isHex32(s.User) {
		return fmt.Errorf("%w: session %s: user %q is not 32 lowercase hex digits", ErrInvalid, s.ID, s.User)
	}
	if len(s.Mounts) > MaxSessionMounts {
		return fmt.Errorf("%w: session %s has %d mounts; the limit is %d", ErrInvalid, s.ID, len(s.Mounts), MaxSessionMounts)
	}
	names := make(map[string]bool, len(s.Mounts))
	targets := make(map[string]bool, len(s.Mounts))
	for i, m := range s.Mounts {
		if err := checkSessionMount(m); err != nil {
			return fmt.Errorf("session %s: mount %d: %w", s.ID, i, err)
		}
		if names[m.Name] {
			return fmt.Errorf("%w: session %s: two mounts are named %q", ErrInvalid, s.ID, m.Name)
		}
		if targets[m.Target] {
			return fmt.Errorf("%w: session %s: two mounts have the target %q", ErrInvalid, s.ID, m.Target)
		}
		names[m.Name], targets[m.Target] = true, true
	}
	return nil
}

func checkSessionMount(m SessionMount) error {
	if !isHex32(m.FolderID) {
		return fmt.Errorf("%w: folder id %q is not 32 lowercase hex digits", ErrInvalid, m.FolderID)
	}
	if !m.Mode.Valid() {
		return fmt.Errorf("%w: unknown mode %q", ErrInvalid, m.Mode)
	}
	if err := checkMountName(m.Name); err != nil {
		return err
	}
	if err := checkPathText("target", m.Target, true); err != nil {
		return err
	}
	if !path.IsAbs(m.Target) || path.Clean(m.Target) != m.Target {
		return fmt.Errorf("%w: target %q is not a clean absolute path", ErrInvalid, m.Target)
	}
	if m.HostPath != "" {
		if err := checkPathText("host path", m.HostPath, false); err != nil {
			return err
		}
		if !path.IsAbs(m.HostPath) {
			return fmt.Errorf("%w: host path %q is not absolute", ErrInvalid, m.HostPath)
		}
	}
	if m.Subpath != "" {
		if err := checkPathText("subpath", m.Subpath, false); err != nil {
			return err
		}
		if path.IsAbs(m.Subpath) {
			return fmt.Errorf("%w: subpath %q is absolute", ErrInvalid, m.Subpath)
		}
		for _, c := range strings.Split(m.Subpath, "/") {
			if c == ".." {
				return fmt.Errorf("%w: subpath %q has a '..' component", ErrInvalid, m.Subpath)
			}
		}
	}
	return nil
}

// isCtl reports ASCII control characters (C0 and DEL).
func isCtl(r rune) bool { return r < 0x20 || r == 0x7f }

func checkMountName(name string) error {
	switch {
	case name == "" || len(name) > MaxMountNameLen:
		return fmt.Errorf("%w: mount name must be 1..%d bytes long", ErrInvalid, MaxMountNameLen)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: mount name %q is not valid UTF-8", ErrInvalid, name)
	case name == "." || name == ".." || strings.ContainsRune(name, '/'):
		return fmt.Errorf("%w: mount name %q is not a single path component", ErrInvalid, name)
	case strings.IndexFunc(name, isCtl) >= 0:
		return fmt.Errorf("%w: mount name %q contains a control character", ErrInvalid, name)
	}
	return nil
}

// checkPathText checks what a stored path may contain: 1..MaxPathLen bytes
// of valid UTF-8 (records are JSON, which cannot keep other bytes), no NUL,
// and if noCtl no control character at all.
func checkPathText(what, p string, noCtl bool) error {
	switch {
	case p == "":
		return fmt.Errorf("%w: %s is empty", ErrInvalid, what)
	case len(p) > MaxPathLen:
		return fmt.Errorf("%w: %s is %d bytes long; the limit is %d", ErrInvalid, what, len(p), MaxPathLen)
	case !utf8.ValidString(p):
		return fmt.Errorf("%w: %s %q is not valid UTF-8", ErrInvalid, what, p)
	case strings.ContainsRune(p, 0):
		return fmt.Errorf("%w: %s contains NUL", ErrInvalid, what)
	case noCtl && strings.IndexFunc(p, isCtl) >= 0:
		return fmt.Errorf("%w: %s %q contains a control character", ErrInvalid, what, p)
	}
	return nil
}

// parseSessionID checks a session id given as an argument.
func parseSessionID(id string) (string, error) {
	if err := ValidateSessionID(id); err != nil {
		return "", err
	}
	return id, nil
}

// prepareSession checks s and returns the copy to store: Mounts copied
// (never nil), times in the store's form. CreatedAt is old's when a
// record is replaced, s's (or now) when one is created; UpdatedAt is now.
func prepareSession(s Session, old *Session) (Session, error) {
	if err := ValidateSession(s); err != nil {
		return Session{}, err
	}
	s.Mounts = slices.Clone(s.Mounts)
	if s.Mounts == nil {
		s.Mounts = []SessionMount{}
	}
	switch {
	case old != nil:
		s.CreatedAt = old.CreatedAt
	case s.CreatedAt.IsZero():
		s.CreatedAt = now()
	default:
		s.CreatedAt = normTime(s.CreatedAt)
	}
	s.UpdatedAt = now()
	return s, nil
}

// copySession returns s with its own Mounts.
func copySession(s Session) Session {
	s.Mounts = slices.Clone(s.Mounts)
	if s.Mounts == nil {
		s.Mounts = []SessionMount{}
	}
	return s
}

// sessionFolders returns the distinct folder ids s mounts, sorted.
func sessionFolders(s Session) []string {
	ids := make([]string, 0, len(s.Mounts))
	for _, m := range s.Mounts {
		ids = append(ids, m.FolderID)
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

func checkMembership(m Membership) error {
	if !isHex32(m.Project) {
		return fmt.Errorf("%w: membership: project %q is not 32 lowercase hex digits", ErrInvalid, m.Project)
	}
	if !isHex32(m.User) {
		return fmt.Errorf("%w: membership: user %q is not 32 lowercase hex digits", ErrInvalid, m.User)
	}
	if m.Permission != "" && !m.Permission.Valid() {
		return fmt.Errorf("%w: membership of %s in %s: unknown permission %q", ErrInvalid, m.User, m.Project, m.Permission)
	}
	return nil
}

// parseMemberArg accepts a project or user UUID given as an argument in
// any form ParseUUID takes.
func parseMemberArg(what, u string) (string, error) {
	h, err := ParseUUID(u)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	return h, nil
}

func sortByUser(ms []Membership) {
	slices.SortFunc(ms, func(a, b Membership) int { return cmp.Compare(a.User, b.User) })
}

func sortByProject(ms []Membership) {
	slices.SortFunc(ms, func(a, b Membership) int { return cmp.Compare(a.Project, b.Project) })
}

func sortSessions(ss []Session) {
	slices.SortFunc(ss, func(a, b Session) int { return cmp.Compare(a.ID, b.ID) })
}

func parseMemberArgs(project, user string) (string, string, error) {
	p, err := parseMemberArg("project", project)
	if err != nil {
		return "", "", err
	}
	u, err := parseMemberArg("user", user)
	if err != nil {
		return "", "", err
	}
	return p, u, nil
}
