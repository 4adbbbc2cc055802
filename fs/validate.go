package fs

import (
	"fmt"
	"path/filepath"

	"github.com/vfolder/vfolder/internal/backing"
	"github.com/vfolder/vfolder/meta"
)

// The three namespaces below the mount root.
const (
	NSSessions = "sessions"
	NSUsers    = "users"
	NSProjects = "projects"
)

var namespaces = []string{NSSessions, NSUsers, NSProjects}

// maxSessionKey is the longest session id.
const maxSessionKey = 128

// ValidateSessionKey checks a session id: 1..128 characters of
// [A-Za-z0-9._-], not "." or "..".
func ValidateSessionKey(s string) error {
	if s == "" || len(s) > maxSessionKey {
		return fmt.Errorf("%w: session id must be 1..%d characters, got %d", meta.ErrInvalid, maxSessionKey, len(s))
	}
	if s == "." || s == ".." {
		return fmt.Errorf("%w: session id %q is not allowed", meta.ErrInvalid, s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%w: session id %q may hold only A-Z a-z 0-9 . _ -", meta.ErrInvalid, s)
		}
	}
	return nil
}

// ValidateKey checks the key of a view in its namespace: a session id, or
// the 32 lowercase hex digits of a user or project UUID.
func ValidateKey(namespace, key string) error {
	switch namespace {
	case NSSessions:
		return ValidateSessionKey(key)
	case NSUsers, NSProjects:
		if !isHex32(key) {
			return fmt.Errorf("%w: %s key %q must be 32 lowercase hex digits", meta.ErrInvalid, namespace, key)
		}
		return nil
	}
	return fmt.Errorf("%w: namespace %q is none of sessions, users, projects", meta.ErrInvalid, namespace)
}

// ValidateEntryName checks the name of a view below its key: 1..255 bytes,
// no '/', no NUL, not "." or "..".
func ValidateEntryName(name string) error {
	if !backing.ValidName(name) {
		return fmt.Errorf("%w: view name %q is invalid (1..255 bytes, no '/' or NUL, not \".\" or \"..\")", meta.ErrInvalid, name)
	}
	return nil
}

// SplitSubpath checks an optional subpath inside a folder and returns its
// components. Absolute paths, ".." anywhere, NUL bytes and components longer
// than 255 bytes are refused; "" and "." mean the folder itself.
func SplitSubpath(p string) ([]string, error) {
	comps, ok := backing.SplitRel(p)
	if !ok {
		return nil, fmt.Errorf("%w: subpath %q must be relative, without '..', NUL or names over 255 bytes", meta.ErrInvalid, p)
	}
	return comps, nil
}

// splitFolderRel checks a folder directory relative to the volume root.
func splitFolderRel(p string) ([]string, error) {
	comps, ok := backing.SplitRel(p)
	if !ok || len(comps) == 0 {
		return nil, fmt.Errorf("%w: folder path %q must be a non-empty relative path without '..'", meta.ErrInvalid, p)
	}
	return comps, nil
}

// validate checks a spec and returns the path of the view root below the
// volume root as components.
func (s *ViewSpec) validate() ([]string, error) {
	if err := ValidateKey(s.Namespace, s.Key); err != nil {
		return nil, err
	}
	if err := ValidateEntryName(s.Name); err != nil {
		return nil, err
	}
	if s.VolumeName == "" {
		return nil, fmt.Errorf("%w: empty volume name", meta.ErrInvalid)
	}
	if !filepath.IsAbs(s.VolumePath) {
		return nil, fmt.Errorf("%w: volume path %q must be absolute", meta.ErrInvalid, s.VolumePath)
	}
	rel, err := splitFolderRel(s.FolderRel)
	if err != nil {
		return nil, err
	}
	sub, err := SplitSubpath(s.Subpath)
	if err != nil {
		return nil, err
	}
	if !s.Mode.Valid() {
		return nil, fmt.Errorf("%w: view mode %q is none of ro, rw, wd", meta.ErrInvalid, s.Mode)
	}
	if s.UID == ^uint32(0) || s.GID == ^uint32(0) {
		return nil, fmt.Errorf("%w: uid/gid -1 cannot own a view", meta.ErrInvalid)
	}
	if s.FolderID != "" && !isHex32(s.FolderID) {
		return nil, fmt.Errorf("%w: folder id %q must be 32 lowercase hex digits", meta.ErrInvalid, s.FolderID)
	}
	if !s.Scope.IsZero() && !s.Scope.Valid() {
		return nil, fmt.Errorf("%w: quota scope %q is malformed", meta.ErrInvalid, s.Scope.String())
	}
	return append(rel, sub...), nil
}

func isHex32(s string) bool {
	if len(s) != 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
