package meta

// Record rules for Store implementations in other packages (such as
// meta/etcdstore). They are the rules the stores in this package apply, so
// that every store validates and normalises records the same way and the
// conformance suite (meta/metatest) sees the same behaviour. Each returns
// an error wrapping ErrInvalid for a record the Store must refuse.

// CheckVolume checks a volume record as PutVolume requires: a name of
// 1..255 bytes of valid UTF-8 without '/', control characters or
// surrounding spaces (not "." or ".."), and an absolute path.
func CheckVolume(v Volume) error { return checkVolume(v) }

// CheckOwner checks a quota scope id given as an owner or scope argument:
// "user" or "project" and 32 lowercase hex digits.
func CheckOwner(id ScopeID) error { return checkOwner(id) }

// CheckPolicy checks a policy as SetPolicy requires: no negative value,
// valid volume names and permission names (a-z, 0-9, '-').
func CheckPolicy(p Policy) error { return checkPolicy(p) }

// PreparePolicy returns the stored form of a checked policy: a deep copy
// whose volume permission lists are sorted, each name once.
func PreparePolicy(p Policy) Policy { return normPolicy(p) }

// CheckMembership checks a membership as SetMembership requires.
func CheckMembership(m Membership) error { return checkMembership(m) }

// ParseFolderID accepts a folder id argument in any form ParseUUID takes
// and returns the canonical 32-hex form.
func ParseFolderID(id string) (string, error) { return parseFolderID(id) }

// PrepareScope checks a new quota scope as CreateScope requires and
// returns the record to store: CreatedAt is the caller's or now,
// UpdatedAt the caller's or CreatedAt, both in UTC.
func PrepareScope(s QuotaScope) (QuotaScope, error) { return prepareNewScope(s) }

// FinishScopeUpdate checks what an UpdateScope callback made of old and
// returns the record to store: Volume and ID must not change, CreatedAt is
// kept and UpdatedAt is now.
func FinishScopeUpdate(old, s QuotaScope) (QuotaScope, error) { return finishScopeUpdate(old, s) }

// PrepareFolder checks a new folder and the maxCount argument as
// CreateFolder requires and returns the record to store (times as in
// PrepareScope).
func PrepareFolder(f Folder, maxCount int) (Folder, error) { return prepareNewFolder(f, maxCount) }

// FinishFolderUpdate checks what an UpdateFolder callback made of old and
// returns the record to store: ID, Owner and Volume must not change,
// CreatedAt is kept and UpdatedAt is now. Name uniqueness is the store's
// to check.
func FinishFolderUpdate(old, f Folder) (Folder, error) { return finishFolderUpdate(old, f) }

// PrepareSession checks s as PutSession requires (ValidateSession) and
// returns the record to store: its own non-nil Mounts, CreatedAt kept
// from old when a record is replaced (old != nil), else s's or now;
// UpdatedAt now.
func PrepareSession(s Session, old *Session) (Session, error) { return prepareSession(s, old) }

// SessionFolders returns the distinct folder ids a session mounts, sorted:
// the entries of the folder index that PutSession keeps for it.
func SessionFolders(s Session) []string { return sessionFolders(s) }

// Check checks the filter's owner, if set, as ListFolders requires.
func (ff FolderFilter) Check() error { return checkFilter(ff) }

// Match reports whether ListFolders with this filter lists f.
func (ff FolderFilter) Match(f Folder) bool { return ff.match(f) }

// SortFolders orders folders as ListFolders returns them: by owner, then
// name.
func SortFolders(fs []Folder) { sortFolders(fs) }

// SortScopes orders scopes as ListScopes returns them: by volume, then id.
func SortScopes(ss []QuotaScope) { sortScopes(ss) }
