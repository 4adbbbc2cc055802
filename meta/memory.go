package meta

import (
	"cmp"
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// Memory is a Store that keeps everything in process memory, guarded by one
// mutex. It is meant for tests of other packages and for tools that need a
// throw-away store; nothing survives the process. It keeps the same
// contract as Badger and runs the same conformance suite (meta/metatest).
//
// Update callbacks (UpdateScope, UpdateFolder) happen to run exactly once
// here, under the store's lock; the contract still allows more runs, and
// a callback that calls back into the store deadlocks.
type Memory struct {
	mu       sync.RWMutex
	closed   bool
	volumes  map[string]Volume
	scopes   map[scopeKey]QuotaScope
	folders  map[string]Folder
	names    map[ownerName]string
	counts   map[ScopeID]int
	policies map[ScopeID]Policy
	// members[project][user] is the record; memberOf[user][project] its
	// reverse index.
	members  map[string]map[string]Membership
	memberOf map[string]map[string]bool
	// sessions by id; folderSessions[folder id][session id] is the index.
	sessions       map[string]Session
	folderSessions map[string]map[string]bool
	// shares and invitations (memory_shares.go)
	sh memShares
	// sshKeys by key id (SSHKeyID), made on first use (memory_sshkeys.go).
	sshKeys map[string]SSHKey
}

type scopeKey struct {
	volume string
	id     ScopeID
}

type ownerName struct {
	owner ScopeID
	name  string
}

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory {
	return &Memory{
		volumes:  map[string]Volume{},
		scopes:   map[scopeKey]QuotaScope{},
		folders:  map[string]Folder{},
		names:    map[ownerName]string{},
		counts:   map[ScopeID]int{},
		policies: map[ScopeID]Policy{},

		members:        map[string]map[string]Membership{},
		memberOf:       map[string]map[string]bool{},
		sessions:       map[string]Session{},
		folderSessions: map[string]map[string]bool{},
	}
}

var _ Store = (*Memory)(nil)

func (m *Memory) rlock() error {
	m.mu.RLock()
	if m.closed {
		m.mu.RUnlock()
		return ErrClosed
	}
	return nil
}

func (m *Memory) lock() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrClosed
	}
	return nil
}

// PutVolume creates or replaces a volume record.
func (m *Memory) PutVolume(ctx context.Context, v Volume) error {
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	if err := checkVolume(v); err != nil {
		return err
	}
	m.volumes[v.Name] = v
	return nil
}

// GetVolume returns the named volume.
func (m *Memory) GetVolume(ctx context.Context, name string) (Volume, error) {
	if err := m.rlock(); err != nil {
		return Volume{}, err
	}
	defer m.mu.RUnlock()
	v, ok := m.volumes[name]
	if !ok {
		return Volume{}, fmt.Errorf("%w: volume %q", ErrNotFound, name)
	}
	return v, nil
}

// ListVolumes returns all volumes ordered by name.
func (m *Memory) ListVolumes(ctx context.Context) ([]Volume, error) {
	if err := m.rlock(); err != nil {
		return nil, err
	}
	defer m.mu.RUnlock()
	out := make([]Volume, 0, len(m.volumes))
	for _, v := range m.volumes {
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b Volume) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// CreateScope creates a quota scope; ErrExists if it is there.
func (m *Memory) CreateScope(ctx context.Context, s QuotaScope) error {
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	s, err := prepareNewScope(s)
	if err != nil {
		return err
	}
	k := scopeKey{s.Volume, s.ID}
	if _, ok := m.scopes[k]; ok {
		return fmt.Errorf("%w: quota scope %s on volume %q", ErrExists, s.ID, s.Volume)
	}
	m.scopes[k] = s
	return nil
}

// GetScope returns one quota scope.
func (m *Memory) GetScope(ctx context.Context, volume string, id ScopeID) (QuotaScope, error) {
	if err := m.rlock(); err != nil {
		return QuotaScope{}, err
	}
	defer m.mu.RUnlock()
	if err := checkOwner(id); err != nil {
		return QuotaScope{}, err
	}
	s, ok := m.scopes[scopeKey{volume, id}]
	if !ok {
		return QuotaScope{}, fmt.Errorf("%w: quota scope %s on volume %q", ErrNotFound, id, volume)
	}
	return s, nil
}

// UpdateScope applies fn to a copy of the stored scope and stores the result
// if fn succeeds and the result is valid.
func (m *Memory) UpdateScope(ctx context.Context, volume string, id ScopeID, fn func(*QuotaScope) error) (QuotaScope, error) {
	if err := m.lock(); err != nil {
		return QuotaScope{}, err
	}
	defer m.mu.Unlock()
	if err := checkOwner(id); err != nil {
		return QuotaScope{}, err
	}
	k := scopeKey{volume, id}
	old, ok := m.scopes[k]
	if !ok {
		return QuotaScope{}, fmt.Errorf("%w: quota scope %s on volume %q", ErrNotFound, id, volume)
	}
	s := old
	if err := fn(&s); err != nil {
		return QuotaScope{}, err
	}
	s, err := finishScopeUpdate(old, s)
	if err != nil {
		return QuotaScope{}, err
	}
	m.scopes[k] = s
	return s, nil
}

// ListScopes returns the scopes of one volume ordered by id, or of every
// volume (ordered by volume, then id) when volume is "".
func (m *Memory) ListScopes(ctx context.Context, volume string) ([]QuotaScope, error) {
	if err := m.rlock(); err != nil {
		return nil, err
	}
	defer m.mu.RUnlock()
	out := []QuotaScope{}
	for k, s := range m.scopes {
		if volume == "" || k.volume == volume {
			out = append(out, s)
		}
	}
	sortScopes(out)
	return out, nil
}

// CreateFolder stores a new folder (see Store).
func (m *Memory) CreateFolder(ctx context.Context, f Folder, maxCount int) error {
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	f, err := prepareNewFolder(f, maxCount)
	if err != nil {
		return err
	}
	if _, ok := m.folders[f.ID]; ok {
		return fmt.Errorf("%w: folder id %s", ErrExists, f.ID)
	}
	nk := ownerName{f.Owner, f.Name}
	if id, ok := m.names[nk]; ok {
		return fmt.Errorf("%w: %s already has a folder named %q (id %s)", ErrExists, f.Owner, f.Name, id)
	}
	if n := m.counts[f.Owner]; maxCount > 0 && n >= maxCount {
		return fmt.Errorf("%w: %s has %d folders; the limit is %d", ErrLimitExceeded, f.Owner, n, maxCount)
	}
	m.folders[f.ID] = f
	m.names[nk] = f.ID
	m.counts[f.Owner]++
	return nil
}

// GetFolder returns a folder by id (32-hex or dashed, any case).
func (m *Memory) GetFolder(ctx context.Context, id string) (Folder, error) {
	if err := m.rlock(); err != nil {
		return Folder{}, err
	}
	defer m.mu.RUnlock()
	id, err := parseFolderID(id)
	if err != nil {
		return Folder{}, err
	}
	f, ok := m.folders[id]
	if !ok {
		return Folder{}, fmt.Errorf("%w: folder %s", ErrNotFound, id)
	}
	return f, nil
}

// FolderByName finds an owner's folder by name.
func (m *Memory) FolderByName(ctx context.Context, owner ScopeID, name string) (Folder, error) {
	if err := m.rlock(); err != nil {
		return Folder{}, err
	}
	defer m.mu.RUnlock()
	if err := checkOwner(owner); err != nil {
		return Folder{}, err
	}
	id, ok := m.names[ownerName{owner, name}]
	if !ok {
		return Folder{}, fmt.Errorf("%w: %s has no folder named %q", ErrNotFound, owner, name)
	}
	return m.folders[id], nil
}

// ListFolders returns the folders matching filter, ordered by owner, then name.
func (m *Memory) ListFolders(ctx context.Context, filter FolderFilter) ([]Folder, error) {
	if err := m.rlock(); err != nil {
		return nil, err
	}
	defer m.mu.RUnlock()
	if err := checkFilter(filter); err != nil {
		return nil, err
	}
	out := []Folder{}
	for _, f := range m.folders {
		if filter.match(f) {
			out = append(out, f)
		}
	}
	sortFolders(out)
	return out, nil
}

// UpdateFolder applies fn to a copy of the folder (see Store).
func (m *Memory) UpdateFolder(ctx context.Context, id string, fn func(*Folder) error) (Folder, error) {
	if err := m.lock(); err != nil {
		return Folder{}, err
	}
	defer m.mu.Unlock()
	id, err := parseFolderID(id)
	if err != nil {
		return Folder{}, err
	}
	old, ok := m.folders[id]
	if !ok {
		return Folder{}, fmt.Errorf("%w: folder %s", ErrNotFound, id)
	}
	f := old
	if err := fn(&f); err != nil {
		return Folder{}, err
	}
	f, err = finishFolderUpdate(old, f)
	if err != nil {
		return Folder{}, err
	}
	if f.Name != old.Name {
		nk := ownerName{f.Owner, f.Name}
		if other, ok := m.names[nk]; ok {
			return Folder{}, fmt.Errorf("%w: %s already has a folder named %q (id %s)", ErrExists, f.Owner, f.Name, other)
		}
		delete(m.names, ownerName{old.Owner, old.Name})
		m.names[nk] = f.ID
	}
	m.folders[id] = f
	return f, nil
}

// DeleteFolder removes a folder record; its name is free again.
func (m *Memory) DeleteFolder(ctx context.Context, id string) error {
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	id, err := parseFolderID(id)
	if err != nil {
		return err
	}
	f, ok := m.folders[id]
	if !ok {
		return fmt.Errorf("%w: folder %s", ErrNotFound, id)
	}
	delete(m.folders, id)
	delete(m.names, ownerName{f.Owner, f.Name})
	if m.counts[f.Owner]--; m.counts[f.Owner] <= 0 {
		delete(m.counts, f.Owner)
	}
	return nil
}

// GetPolicy returns the owner's policy, or the zero Policy if none is set.
func (m *Memory) GetPolicy(ctx context.Context, owner ScopeID) (Policy, error) {
	if err := m.rlock(); err != nil {
		return Policy{}, err
	}
	defer m.mu.RUnlock()
	if err := checkOwner(owner); err != nil {
		return Policy{}, err
	}
	return m.policies[owner].Clone(), nil
}

// SetPolicy sets the owner's policy; the zero Policy removes it.
func (m *Memory) SetPolicy(ctx context.Context, owner ScopeID, p Policy) error {
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	if err := checkOwner(owner); err != nil {
		return err
	}
	if err := checkPolicy(p); err != nil {
		return err
	}
	if p.IsZero() {
		delete(m.policies, owner)
	} else {
		m.policies[owner] = normPolicy(p)
	}
	return nil
}

// SetMembership creates or replaces a membership.
func (m *Memory) SetMembership(ctx context.Context, ms Membership) error {
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	if err := checkMembership(ms); err != nil {
		return err
	}
	if m.members[ms.Project] == nil {
		m.members[ms.Project] = map[string]Membership{}
	}
	m.members[ms.Project][ms.User] = ms
	if m.memberOf[ms.User] == nil {
		m.memberOf[ms.User] = map[string]bool{}
	}
	m.memberOf[ms.User][ms.Project] = true
	return nil
}

// RemoveMembership removes a membership; ErrNotFound if there is none.
func (m *Memory) RemoveMembership(ctx context.Context, project, user string) error {
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	project, user, err := parseMemberArgs(project, user)
	if err != nil {
		return err
	}
	if _, ok := m.members[project][user]; !ok {
		return fmt.Errorf("%w: user %s is not a member of project %s", ErrNotFound, user, project)
	}
	delete(m.members[project], user)
	if len(m.members[project]) == 0 {
		delete(m.members, project)
	}
	delete(m.memberOf[user], project)
	if len(m.memberOf[user]) == 0 {
		delete(m.memberOf, user)
	}
	return nil
}

// ListMembers returns the memberships of a project, ordered by user.
func (m *Memory) ListMembers(ctx context.Context, project string) ([]Membership, error) {
	if err := m.rlock(); err != nil {
		return nil, err
	}
	defer m.mu.RUnlock()
	project, err := parseMemberArg("project", project)
	if err != nil {
		return nil, err
	}
	out := make([]Membership, 0, len(m.members[project]))
	for _, ms := range m.members[project] {
		out = append(out, ms)
	}
	sortByUser(out)
	return out, nil
}

// ProjectsOf returns the memberships of a user, ordered by project.
func (m *Memory) ProjectsOf(ctx context.Context, user string) ([]Membership, error) {
	if err := m.rlock(); err != nil {
		return nil, err
	}
	defer m.mu.RUnlock()
	user, err := parseMemberArg("user", user)
	if err != nil {
		return nil, err
	}
	out := make([]Membership, 0, len(m.memberOf[user]))
	for project := range m.memberOf[user] {
		out = append(out, m.members[project][user])
	}
	sortByProject(out)
	return out, nil
}

// PutSession creates or replaces a session record and its index entries.
func (m *Memory) PutSession(ctx context.Context, s Session) error {
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	var oldp *Session
	if old, ok := m.sessions[s.ID]; ok {
		oldp = &old
	}
	s, err := prepareSession(s, oldp)
	if err != nil {
		return err
	}
	if oldp != nil {
		m.unindexSession(*oldp)
	}
	m.sessions[s.ID] = s
	for _, f := range sessionFolders(s) {
		if m.folderSessions[f] == nil {
			m.folderSessions[f] = map[string]bool{}
		}
		m.folderSessions[f][s.ID] = true
	}
	return nil
}

func (m *Memory) unindexSession(s Session) {
	for _, f := range sessionFolders(s) {
		delete(m.folderSessions[f], s.ID)
		if len(m.folderSessions[f]) == 0 {
			delete(m.folderSessions, f)
		}
	}
}

// GetSession returns a session; ErrNotFound if there is none.
func (m *Memory) GetSession(ctx context.Context, id string) (Session, error) {
	if err := m.rlock(); err != nil {
		return Session{}, err
	}
	defer m.mu.RUnlock()
	id, err := parseSessionID(id)
	if err != nil {
		return Session{}, err
	}
	s, ok := m.sessions[id]
	if !ok {
		return Session{}, fmt.Errorf("%w: session %s", ErrNotFound, id)
	}
	return copySession(s), nil
}

// ListSessions returns every session, ordered by id.
func (m *Memory) ListSessions(ctx context.Context) ([]Session, error) {
	if err := m.rlock(); err != nil {
		return nil, err
	}
	defer m.mu.RUnlock()
	out := make([]Session, 0, len(m.sessions))
	for _, s := range m.sessions {
		out = append(out, copySession(s))
	}
	sortSessions(out)
	return out, nil
}

// DeleteSession removes a session and its index entries.
func (m *Memory) DeleteSession(ctx context.Context, id string) error {
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	id, err := parseSessionID(id)
	if err != nil {
		return err
	}
	s, ok := m.sessions[id]
	if !ok {
		return fmt.Errorf("%w: session %s", ErrNotFound, id)
	}
	m.unindexSession(s)
	delete(m.sessions, id)
	return nil
}

// SessionsUsingFolder returns the ids of the sessions mounting a folder.
func (m *Memory) SessionsUsingFolder(ctx context.Context, folderID string) ([]string, error) {
	if err := m.rlock(); err != nil {
		return nil, err
	}
	defer m.mu.RUnlock()
	folderID, err := parseFolderID(folderID)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(m.folderSessions[folderID]))
	for id := range m.folderSessions[folderID] {
		out = append(out, id)
	}
	slices.Sort(out)
	return out, nil
}

// Verify checks that the name index and the per-owner counts agree with the
// folder records, that the membership index agrees with the memberships
// and that the folder index of sessions agrees with the session records.
// It returns an error wrapping ErrCorrupt if they do not.
func (m *Memory) Verify(ctx context.Context) error {
	if err := m.rlock(); err != nil {
		return err
	}
	defer m.mu.RUnlock()
	if err := m.verifyMembers(); err != nil {
		return err
	}
	if err := m.verifySessions(); err != nil {
		return err
	}
	counts := map[ScopeID]int{}
	for id, f := range m.folders {
		if id != f.ID {
			return fmt.Errorf("%w: folder stored under %s has id %s", ErrCorrupt, id, f.ID)
		}
		if got := m.names[ownerName{f.Owner, f.Name}]; got != id {
			return fmt.Errorf("%w: name index of %s %q points to %q, not %s", ErrCorrupt, f.Owner, f.Name, got, id)
		}
		counts[f.Owner]++
	}
	if len(m.names) != len(m.folders) {
		return fmt.Errorf("%w: %d name index entries for %d folders", ErrCorrupt, len(m.names), len(m.folders))
	}
	if len(counts) != len(m.counts) {
		return fmt.Errorf("%w: folder counts kept for %d owners, folders exist for %d", ErrCorrupt, len(m.counts), len(counts))
	}
	for o, n := range counts {
		if m.counts[o] != n {
			return fmt.Errorf("%w: %s has %d folders but its count is %d", ErrCorrupt, o, n, m.counts[o])
		}
	}
	return nil
}

func (m *Memory) verifyMembers() error {
	n := 0
	for project, byUser := range m.members {
		if len(byUser) == 0 {
			return fmt.Errorf("%w: empty member map of project %s", ErrCorrupt, project)
		}
		for user, ms := range byUser {
			if ms.Project != project || ms.User != user {
				return fmt.Errorf("%w: membership stored as %s/%s is %+v", ErrCorrupt, project, user, ms)
			}
			if err := checkMembership(ms); err != nil {
				return fmt.Errorf("%w: %v", ErrCorrupt, err)
			}
			if !m.memberOf[user][project] {
				return fmt.Errorf("%w: membership of %s in %s is missing from the user index", ErrCorrupt, user, project)
			}
			n++
		}
	}
	idx := 0
	for user, projects := range m.memberOf {
		if len(projects) == 0 {
			return fmt.Errorf("%w: empty project map of user %s", ErrCorrupt, user)
		}
		idx += len(projects)
	}
	if idx != n {
		return fmt.Errorf("%w: %d user index entries for %d memberships", ErrCorrupt, idx, n)
	}
	return nil
}

func (m *Memory) verifySessions() error {
	n := 0
	for id, s := range m.sessions {
		if id != s.ID {
			return fmt.Errorf("%w: session stored under %q has id %q", ErrCorrupt, id, s.ID)
		}
		if err := ValidateSession(s); err != nil {
			return fmt.Errorf("%w: %v", ErrCorrupt, err)
		}
		for _, f := range sessionFolders(s) {
			if !m.folderSessions[f][id] {
				return fmt.Errorf("%w: session %s mounts folder %s but the folder index lacks it", ErrCorrupt, id, f)
			}
			n++
		}
	}
	idx := 0
	for f, ids := range m.folderSessions {
		if len(ids) == 0 {
			return fmt.Errorf("%w: empty session set of folder %s", ErrCorrupt, f)
		}
		idx += len(ids)
	}
	if idx != n {
		return fmt.Errorf("%w: %d folder index entries for %d folder mounts of sessions", ErrCorrupt, idx, n)
	}
	return nil
}

// Close releases the store. Other methods then return ErrClosed; closing
// again is a no-op.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return nil
}

// ---- Record rules shared by every Store implementation in this package ----

// maxVolumeNameLen bounds volume names (bytes).
const maxVolumeNameLen = 255

// checkVolumeName accepts 1..255 bytes of valid UTF-8 without '/', control
// characters or surrounding spaces, other than "." and "..". Volume names
// such as "local" or "nfs:vol1" are the usual shape.
func checkVolumeName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: volume name is empty", ErrInvalid)
	case len(name) > maxVolumeNameLen:
		return fmt.Errorf("%w: volume name is %d bytes long; the limit is %d", ErrInvalid, len(name), maxVolumeNameLen)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: volume name %q is not valid UTF-8", ErrInvalid, name)
	case name == "." || name == "..":
		return fmt.Errorf("%w: volume name %q is not allowed", ErrInvalid, name)
	case strings.ContainsRune(name, '/'):
		return fmt.Errorf("%w: volume name %q must not contain '/'", ErrInvalid, name)
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return fmt.Errorf("%w: volume name %q contains a control character", ErrInvalid, name)
	case strings.TrimSpace(name) != name:
		return fmt.Errorf("%w: volume name %q has leading or trailing spaces", ErrInvalid, name)
	}
	return nil
}

func checkVolume(v Volume) error {
	if err := checkVolumeName(v.Name); err != nil {
		return err
	}
	if !filepath.IsAbs(v.Path) || strings.ContainsRune(v.Path, 0) || !utf8.ValidString(v.Path) {
		return fmt.Errorf("%w: volume %q: path %q is not an absolute path", ErrInvalid, v.Name, v.Path)
	}
	return nil
}

func checkOwner(id ScopeID) error {
	if !id.Valid() {
		return fmt.Errorf("%w: %q is not a quota scope id (user:<uuid> or project:<uuid>)", ErrInvalid, id.String())
	}
	return nil
}

func checkScope(s QuotaScope) error {
	if err := checkVolumeName(s.Volume); err != nil {
		return err
	}
	if err := checkOwner(s.ID); err != nil {
		return err
	}
	if s.LimitBytes < 0 || s.LimitInodes < 0 {
		return fmt.Errorf("%w: quota scope %s: limits must not be negative", ErrInvalid, s.ID)
	}
	return nil
}

func checkPolicy(p Policy) error {
	if p.MaxFolderCount < 0 || p.MaxQuotaScopeSize < 0 {
		return fmt.Errorf("%w: policy values must not be negative", ErrInvalid)
	}
	for vol, perms := range p.Volumes {
		if err := checkVolumeName(vol); err != nil {
			return fmt.Errorf("policy volume permissions: %w", err)
		}
		if len(perms) > maxVolumePerms {
			return fmt.Errorf("%w: policy volume permissions on %q: %d names, at most %d", ErrInvalid, vol, len(perms), maxVolumePerms)
		}
		for _, x := range perms {
			if !validPermName(x) {
				return fmt.Errorf("%w: policy volume permission %q on %q: want 1..64 characters of a-z, 0-9 and '-'", ErrInvalid, x, vol)
			}
		}
	}
	if len(p.Volumes) > maxPolicyVolumes {
		return fmt.Errorf("%w: policy names %d volumes, at most %d", ErrInvalid, len(p.Volumes), maxPolicyVolumes)
	}
	return nil
}

// Bounds of a policy's volume permissions.
const (
	maxPolicyVolumes = 1024
	maxVolumePerms   = 64
)

func validPermName(x string) bool {
	if len(x) == 0 || len(x) > 64 {
		return false
	}
	for _, c := range x {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// normPolicy is the stored form of a checked policy: a deep copy whose
// volume permission lists are sorted and free of duplicates.
func normPolicy(p Policy) Policy {
	p = p.Clone()
	for k, v := range p.Volumes {
		slices.Sort(v)
		p.Volumes[k] = slices.Compact(v)
	}
	return p
}

func checkFolder(f Folder) error {
	if !isHex32(f.ID) {
		return fmt.Errorf("%w: folder id %q is not 32 lowercase hex digits", ErrInvalid, f.ID)
	}
	if err := ValidateName(f.Name); err != nil {
		return err
	}
	if err := checkOwner(f.Owner); err != nil {
		return err
	}
	if err := checkVolumeName(f.Volume); err != nil {
		return err
	}
	if !f.UsageMode.Valid() {
		return fmt.Errorf("%w: folder %s: unknown usage mode %q", ErrInvalid, f.ID, f.UsageMode)
	}
	if !f.Permission.Valid() {
		return fmt.Errorf("%w: folder %s: unknown permission %q", ErrInvalid, f.ID, f.Permission)
	}
	if !f.Status.Valid() {
		return fmt.Errorf("%w: folder %s: unknown status %q", ErrInvalid, f.ID, f.Status)
	}
	return nil
}

// parseFolderID accepts a folder id in any form ParseUUID does and returns
// the canonical 32-hex form.
func parseFolderID(id string) (string, error) {
	h, err := ParseUUID(id)
	if err != nil {
		return "", fmt.Errorf("folder id: %w", err)
	}
	return h, nil
}

// now is the store's clock: UTC, without a monotonic reading, so values
// compare equal after a round trip through JSON.
func now() time.Time { return time.Now().UTC() }

// normTime gives a caller-supplied time the same form as now().
func normTime(t time.Time) time.Time { return t.UTC() }

func prepareNewScope(s QuotaScope) (QuotaScope, error) {
	if err := checkScope(s); err != nil {
		return QuotaScope{}, err
	}
	if s.CreatedAt.IsZero() {
		s.CreatedAt = now()
	}
	s.CreatedAt = normTime(s.CreatedAt)
	if s.UpdatedAt.IsZero() {
		s.UpdatedAt = s.CreatedAt
	}
	s.UpdatedAt = normTime(s.UpdatedAt)
	return s, nil
}

// finishScopeUpdate checks what an update callback did to a scope: the
// volume and id are fixed, CreatedAt is kept, UpdatedAt is set now.
func finishScopeUpdate(old, s QuotaScope) (QuotaScope, error) {
	if s.Volume != old.Volume || s.ID != old.ID {
		return QuotaScope{}, fmt.Errorf("%w: the volume and id of quota scope %s cannot change", ErrInvalid, old.ID)
	}
	if err := checkScope(s); err != nil {
		return QuotaScope{}, err
	}
	s.CreatedAt = old.CreatedAt
	s.UpdatedAt = now()
	return s, nil
}

func prepareNewFolder(f Folder, maxCount int) (Folder, error) {
	if maxCount < 0 {
		return Folder{}, fmt.Errorf("%w: negative folder count limit %d", ErrInvalid, maxCount)
	}
	if err := checkFolder(f); err != nil {
		return Folder{}, err
	}
	if f.CreatedAt.IsZero() {
		f.CreatedAt = now()
	}
	f.CreatedAt = normTime(f.CreatedAt)
	if f.UpdatedAt.IsZero() {
		f.UpdatedAt = f.CreatedAt
	}
	f.UpdatedAt = normTime(f.UpdatedAt)
	return f, nil
}

// finishFolderUpdate checks what an update callback did to a folder: ID,
// Owner and Volume are fixed, CreatedAt is kept, UpdatedAt is set now.
func finishFolderUpdate(old, f Folder) (Folder, error) {
	if f.ID != old.ID || f.Owner != old.Owner || f.Volume != old.Volume {
		return Folder{}, fmt.Errorf("%w: the id, owner and volume of folder %s cannot change", ErrInvalid, old.ID)
	}
	if err := checkFolder(f); err != nil {
		return Folder{}, err
	}
	f.CreatedAt = old.CreatedAt
	f.UpdatedAt = now()
	return f, nil
}

func checkFilter(ff FolderFilter) error {
	if ff.Owner != nil {
		return checkOwner(*ff.Owner)
	}
	return nil
}

func (ff FolderFilter) match(f Folder) bool {
	if ff.Owner != nil && f.Owner != *ff.Owner {
		return false
	}
	if ff.Volume != "" && f.Volume != ff.Volume {
		return false
	}
	live := f.Status.Live()
	switch {
	case ff.OnlyDeleted:
		return !live
	case ff.IncludeDeleted:
		return true
	}
	return live
}

func sortFolders(fs []Folder) {
	slices.SortFunc(fs, func(a, b Folder) int {
		return cmp.Or(strings.Compare(a.Owner.String(), b.Owner.String()), strings.Compare(a.Name, b.Name))
	})
}

func sortScopes(ss []QuotaScope) {
	slices.SortFunc(ss, func(a, b QuotaScope) int {
		return cmp.Or(strings.Compare(a.Volume, b.Volume), strings.Compare(a.ID.String(), b.ID.String()))
	})
}
