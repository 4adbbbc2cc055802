package meta

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/google/uuid"
)

// OwnerKind tells whether a scope or folder belongs to a user or a project.
type OwnerKind string

const (
	KindUser    OwnerKind = "user"
	KindProject OwnerKind = "project"
)

// ScopeID names a quota scope and a folder owner: "user:<uuid>" or
// "project:<uuid>". UUID is kept as 32 lowercase hex digits.
type ScopeID struct {
	Kind OwnerKind
	UUID string
}

// String renders the canonical form "user:<32-hex>".
func (s ScopeID) String() string { return string(s.Kind) + ":" + s.UUID }

// Hex is the on-disk directory name of the scope.
func (s ScopeID) Hex() string { return s.UUID }

// IsZero reports whether s is unset.
func (s ScopeID) IsZero() bool { return s.Kind == "" && s.UUID == "" }

// Valid reports whether s is well-formed.
func (s ScopeID) Valid() bool {
	return (s.Kind == KindUser || s.Kind == KindProject) && isHex32(s.UUID)
}

// MarshalJSON encodes the canonical string form.
func (s ScopeID) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// UnmarshalJSON accepts the string form ParseScopeID accepts.
func (s *ScopeID) UnmarshalJSON(b []byte) error {
	var str string
	if err := json.Unmarshal(b, &str); err != nil {
		return err
	}
	id, err := ParseScopeID(str)
	if err != nil {
		return err
	}
	*s = id
	return nil
}

// UserScope and ProjectScope build scope ids from a UUID in any form
// ParseUUID accepts.
func UserScope(u string) (ScopeID, error)    { return newScope(KindUser, u) }
func ProjectScope(u string) (ScopeID, error) { return newScope(KindProject, u) }

// NewScopeID builds a scope id of the given kind.
func NewScopeID(kind OwnerKind, u string) (ScopeID, error) { return newScope(kind, u) }

func newScope(kind OwnerKind, u string) (ScopeID, error) {
	if kind != KindUser && kind != KindProject {
		return ScopeID{}, fmt.Errorf("%w: owner kind %q is neither user nor project", ErrInvalid, kind)
	}
	h, err := ParseUUID(u)
	if err != nil {
		return ScopeID{}, err
	}
	return ScopeID{Kind: kind, UUID: h}, nil
}

// ParseScopeID parses "user:<uuid>" or "project:<uuid>".
func ParseScopeID(s string) (ScopeID, error) {
	kind, rest, ok := strings.Cut(s, ":")
	if !ok {
		return ScopeID{}, fmt.Errorf("%w: quota scope id %q must look like user:<uuid> or project:<uuid>", ErrInvalid, s)
	}
	return newScope(OwnerKind(kind), rest)
}

// ParseUUID accepts a UUID in the dashed or the bare 32-hex form (any case)
// and returns the bare lowercase 32-hex form.
func ParseUUID(s string) (string, error) {
	if len(s) > 64 {
		return "", fmt.Errorf("%w: %q is not a UUID", ErrInvalid, s[:64]+"...")
	}
	u, err := uuid.Parse(s)
	if err != nil || (len(s) != 32 && len(s) != 36) {
		return "", fmt.Errorf("%w: %q is not a UUID", ErrInvalid, s)
	}
	return strings.ReplaceAll(u.String(), "-", ""), nil
}

// NewFolderID returns a fresh random folder id (32 hex digits).
func NewFolderID() string { return strings.ReplaceAll(uuid.NewString(), "-", "") }

// DashedUUID renders a 32-hex id in the dashed form, for display.
func DashedUUID(h string) string {
	if !isHex32(h) {
		return h
	}
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
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

// FolderRelPath is the folder's path relative to the volume root:
// "<scope-hex>/<aa>/<bb>/<rest>".
func FolderRelPath(owner ScopeID, id string) string {
	return owner.Hex() + "/" + id[0:2] + "/" + id[2:4] + "/" + id[4:]
}
