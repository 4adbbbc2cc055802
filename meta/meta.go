// Package meta is the metadata model of vfolder and the Store that keeps it.
//
// # Model
//
//   - Volume: a named shared storage volume (a host directory mounted at the
//     same path on every node) and its per-volume switches.
//   - QuotaScope: a user or a project on one volume ("user:<uuid>",
//     "project:<uuid>"), with its hard byte limit and optional inode limit.
//     Usage figures are not kept here: they belong to package quota.
//   - Folder: one vfolder. Its id is a UUID; on the volume it lives at
//     <volume>/<scope-hex>/<id[0:2]>/<id[2:4]>/<id[4:]>.
//   - Policy: the resource policy of a user or project (max folder count,
//     default quota scope size, volume permissions). Its Volumes map makes
//     it non-comparable: stores deep-copy it (Clone) and compare with
//     Equal/IsZero; nil and an empty map differ (everything allowed vs
//     nothing) and both survive every store.
//
// # Contract of a Store
//
// Every implementation runs the shared conformance suite in package
// meta/metatest. The rules it checks:
//
//   - Each method is one transaction: it either applies completely or not at
//     all, also across a crash (SIGKILL) of the process; no half-written
//     record is ever visible.
//   - Methods are safe for concurrent use. Concurrent CreateFolder calls
//     never produce two live folders of one owner with the same name, nor
//     more folders than the owner's policy allows.
//   - Errors are the sentinels below, possibly wrapped; callers test them
//     with errors.Is. A method that fails changes nothing, with one
//     exception that only networked stores have: a write that fails with
//     ErrUnavailable may have been applied (completely) by a server whose
//     answer never came; callers that must know read the record again.
//   - Returned values are copies: mutating them does not change the store.
//   - Names are unique per owner across all volumes for every folder that
//     still has a record, trashed ones included; a purged folder's name can
//     be reused.
//   - Every folder record counts toward the owner's maxCount in
//     CreateFolder, trashed ones included, until DeleteFolder removes it.
//   - The callbacks of UpdateFolder and UpdateScope may run more than once
//     in one call (a store runs a transaction again after it lost a
//     conflict to a concurrent one); each run gets a fresh copy of the
//     stored record and only the last run's result is written. Callbacks
//     must therefore be free of side effects (no I/O, no channel sends, no
//     counters outside the record) and must not call the store.
//   - Ids given as arguments (folder ids, project and user uuids of
//     memberships, the folder id of SessionsUsingFolder) are accepted in
//     any form ParseUUID takes; ids inside records must be the canonical
//     32 lowercase hex digits. A malformed id is ErrInvalid.
//
// # Memberships
//
// A Membership says a user belongs to a project. There is at most one per
// (project, user) pair: SetMembership creates or replaces it,
// RemoveMembership deletes it (ErrNotFound if there is none). ListMembers
// and ProjectsOf read the same records from either side and always agree;
// an unknown project or user has no memberships (an empty list, no error).
// The store does not know which projects or users exist: it keeps what it
// is told. Permission "" means "each folder's own Permission"; a set
// Permission replaces it for this member on every folder of the project.
//
// # Sessions
//
// A Session records what mountd has published for one compute session,
// so that a restarted daemon can reconcile. PutSession writes the whole
// record (creating or replacing it); a record is well-formed when
// ValidateSession accepts it. The store keeps an index from folder id to
// session ids, written in the same transaction as the record, so
// SessionsUsingFolder is exact at every instant, also after a crash. The
// store does not check that the folders exist, nor any mount policy
// (system targets, overlaps between sources, the user's permission):
// that is mountd's and the service's job. CreatedAt of a replaced session
// is kept; UpdatedAt is set by the store on every PutSession.
//
// The Store validates what makes a record well-formed (ids, names, enums)
// but not policy that depends on the caller (who may create what): that is
// the service layer's job. Stores in other packages apply the same record
// rules through the functions of records.go.
//
// # Stores shared by several nodes
//
// A store that several nodes use at once (meta/etcdstore) also implements
// Watcher (watch.go): a snapshot of every record at one revision, then the
// changes after it, so that each node keeps its views in step with the
// changes made through the others. Such a store may fail with
// ErrUnavailable when its servers cannot be reached.
package meta

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"time"
)

// Sentinel errors. Every Store method returns one of these (wrapped with
// detail) for expected failures.
var (
	ErrNotFound      = errors.New("not found")
	ErrExists        = errors.New("already exists")
	ErrInvalid       = errors.New("invalid argument")
	ErrLimitExceeded = errors.New("limit exceeded")
	ErrConflict      = errors.New("conflict")
	ErrLocked        = errors.New("state directory is in use by another process")
	ErrClosed        = errors.New("store is closed")
	// ErrUnavailable is returned by a store shared over the network (see
	// meta/etcdstore) that could not reach its servers, or a quorum of
	// them, within its bounded time. A write that fails with it may or may
	// not have been applied (the answer was lost, not necessarily the
	// request); it was applied completely or not at all.
	ErrUnavailable = errors.New("cluster store unreachable")
)

// Permission is what a view or a share allows. Ordered: PermRO < PermRW < PermWD.
type Permission string

const (
	PermRO Permission = "ro" // read only
	PermRW Permission = "rw" // read and write
	PermWD Permission = "wd" // read, write and delete
)

// Rank orders permissions; an unknown permission ranks 0.
func (p Permission) Rank() int {
	switch p {
	case PermRO:
		return 1
	case PermRW:
		return 2
	case PermWD:
		return 3
	}
	return 0
}

// Valid reports whether p is one of the known permissions.
func (p Permission) Valid() bool { return p.Rank() > 0 }

// Min returns the lower of two permissions.
func (p Permission) Min(q Permission) Permission {
	if q.Rank() < p.Rank() {
		return q
	}
	return p
}

// UsageMode is the purpose of a folder.
type UsageMode string

const (
	ModeGeneral UsageMode = "general"
	ModeModel   UsageMode = "model"
	ModeData    UsageMode = "data"
)

// Valid reports whether m is a known usage mode.
func (m UsageMode) Valid() bool {
	return m == ModeGeneral || m == ModeModel || m == ModeData
}

// Status is a folder's lifecycle state (the reference system's names).
type Status string

const (
	StatusReady          Status = "ready"
	StatusPerforming     Status = "performing"
	StatusCloning        Status = "cloning"
	StatusMounted        Status = "mounted"
	StatusError          Status = "error"
	StatusDeletePending  Status = "delete-pending"  // in trash, restorable
	StatusDeleteOngoing  Status = "delete-ongoing"  // purge in progress
	StatusDeleteComplete Status = "delete-complete" // purged; record about to go
	StatusDeleteError    Status = "delete-error"    // purge failed; can be retried
)

// Valid reports whether s is a known status.
func (s Status) Valid() bool {
	switch s {
	case StatusReady, StatusPerforming, StatusCloning, StatusMounted, StatusError,
		StatusDeletePending, StatusDeleteOngoing, StatusDeleteComplete, StatusDeleteError:
		return true
	}
	return false
}

// Live reports whether a folder in this status is usable (not on its way out).
func (s Status) Live() bool {
	switch s {
	case StatusDeletePending, StatusDeleteOngoing, StatusDeleteComplete, StatusDeleteError:
		return false
	}
	return true
}

// Volume is a shared storage volume as configured on the node.
type Volume struct {
	Name string `json:"name"`
	// Path is the host directory of the volume (the same on every node).
	Path string `json:"path"`
	// RWCanDelete lets rw views delete (unlink, rmdir, rename over an
	// existing entry). When false, only wd views can.
	RWCanDelete bool `json:"rw_can_delete"`
	// MountAllowed and CloneAllowed are volume-level switches.
	MountAllowed bool `json:"mount_allowed"`
	CloneAllowed bool `json:"clone_allowed"`
	// Chown is what chown and chgrp to another owner do in rw and wd
	// views; empty means ChownIgnore.
	Chown ChownPolicy `json:"chown,omitempty"`
	// RequireMount: the path must be a mount point, else the volume
	// counts as missing.
	RequireMount bool `json:"require_mount,omitempty"`
}

// ChownPolicy is what chown and chgrp to an owner other than the view's
// do in rw and wd views. Either way the file keeps the storage owner and
// shows the view's; ro views answer EROFS.
type ChownPolicy string

const (
	// ChownIgnore: the call succeeds and changes the ctime only
	// (archive extraction, cp -a and rsync -a as root work).
	ChownIgnore ChownPolicy = "ignore"
	// ChownRefuse: the call fails with EPERM.
	ChownRefuse ChownPolicy = "refuse"
)

// Valid reports whether c is a known policy ("" is ChownIgnore).
func (c ChownPolicy) Valid() bool {
	return c == "" || c == ChownIgnore || c == ChownRefuse
}

// QuotaScope is the quota of one owner (user or project) on one volume.
type QuotaScope struct {
	Volume string  `json:"volume"`
	ID     ScopeID `json:"id"`
	// LimitBytes is the hard limit in bytes; 0 means no limit.
	LimitBytes int64 `json:"limit_bytes"`
	// LimitInodes is the optional inode limit; 0 means no limit.
	LimitInodes int64     `json:"limit_inodes"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// Folder is one vfolder.
type Folder struct {
	// ID is the folder's UUID as 32 lowercase hex digits.
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	Owner      ScopeID    `json:"owner"`
	Volume     string     `json:"volume"`
	UsageMode  UsageMode  `json:"usage_mode"`
	Permission Permission `json:"permission"` // what project members (or the owner) get
	Cloneable  bool       `json:"cloneable"`
	Status     Status     `json:"status"`
	CreatedAt  time.Time  `json:"created_at"`
	UpdatedAt  time.Time  `json:"updated_at"`
}

// FullID is the reference system's full folder id: "<scope-id>/<32-hex>".
func (f *Folder) FullID() string { return f.Owner.String() + "/" + f.ID }

// Policy is a resource policy of one owner. A zero value means "unlimited".
type Policy struct {
	// MaxFolderCount is how many folders the owner may have; 0 = unlimited.
	MaxFolderCount int `json:"max_vfolder_count"`
	// MaxQuotaScopeSize is the initial limit given to a new quota scope of
	// the owner; 0 = none.
	MaxQuotaScopeSize int64 `json:"max_quota_scope_size"`
	// Volumes are the owner's volume permissions (the reference system's
	// allowed_vfolder_hosts): per volume name, the permission names the
	// owner holds there (the service's VolumePerm names, such as
	// "create-vfolder" or "mount-in-session"). nil allows everything on
	// every volume (a policy set before volume permissions existed keeps
	// working); a non-nil map allows on each volume exactly what it lists
	// and nothing on a volume it does not name. The JSON form keeps the
	// difference: nil leaves the field out (the form of a policy from
	// before volume permissions), an empty map is {}.
	Volumes map[string][]string `json:"allowed_volume_perms"`
}

// MarshalJSON leaves allowed_volume_perms out when Volumes is nil, so a
// policy without volume permissions has its earlier form.
func (p Policy) MarshalJSON() ([]byte, error) {
	type plain Policy // without this method
	if p.Volumes != nil {
		return json.Marshal(plain(p))
	}
	return json.Marshal(struct {
		MaxFolderCount    int   `json:"max_vfolder_count"`
		MaxQuotaScopeSize int64 `json:"max_quota_scope_size"`
	}{p.MaxFolderCount, p.MaxQuotaScopeSize})
}

// IsZero reports whether p is the zero Policy (no limit, every volume
// permission): the policy of an owner who has none set.
func (p Policy) IsZero() bool {
	return p.MaxFolderCount == 0 && p.MaxQuotaScopeSize == 0 && p.Volumes == nil
}

// Clone returns a deep copy of p: changing the copy's Volumes never
// changes p's. nil stays nil and an empty map stays an empty map.
func (p Policy) Clone() Policy {
	if p.Volumes == nil {
		return p
	}
	vs := make(map[string][]string, len(p.Volumes))
	for k, v := range p.Volumes {
		vs[k] = append([]string{}, v...)
	}
	p.Volumes = vs
	return p
}

// Equal reports whether p and q are the same policy (a nil Volumes map
// differs from an empty one; the order of a volume's permissions and
// repeated names do not matter).
func (p Policy) Equal(q Policy) bool {
	if p.MaxFolderCount != q.MaxFolderCount || p.MaxQuotaScopeSize != q.MaxQuotaScopeSize ||
		(p.Volumes == nil) != (q.Volumes == nil) || len(p.Volumes) != len(q.Volumes) {
		return false
	}
	set := func(xs []string) []string {
		xs = slices.Clone(xs)
		slices.Sort(xs)
		return slices.Compact(xs)
	}
	for k, a := range p.Volumes {
		b, ok := q.Volumes[k]
		if !ok || !slices.Equal(set(a), set(b)) {
			return false
		}
	}
	return true
}

// VolumeAllows reports whether the policy allows perm on volume vol.
func (p Policy) VolumeAllows(vol, perm string) bool {
	if p.Volumes == nil {
		return true
	}
	return slices.Contains(p.Volumes[vol], perm)
}

// FolderFilter selects folders in ListFolders. Zero fields match anything.
type FolderFilter struct {
	Owner  *ScopeID
	Volume string
	// IncludeDeleted also lists folders that are not Live (trash etc.).
	IncludeDeleted bool
	// OnlyDeleted lists only folders that are not Live.
	OnlyDeleted bool
}

// Membership makes User a member of Project. Both are UUIDs as 32
// lowercase hex digits (the same UUIDs as in ScopeID).
type Membership struct {
	Project string `json:"project"`
	User    string `json:"user"`
	// Permission, if set, overrides the folder permission for this member
	// on every folder of the project (capped by nothing: it is an admin's
	// decision). "" means each folder's own Permission applies.
	Permission Permission `json:"permission,omitempty"`
}

// SessionMount is one view published into a session.
type SessionMount struct {
	// FolderID is the folder's id (32 lowercase hex digits).
	FolderID string `json:"folder_id"`
	// Subpath is "" for the whole folder, or a relative path inside it
	// without ".." components.
	Subpath string `json:"subpath,omitempty"`
	// Name is the view's name under sessions/<id>/: one path component,
	// unique within the session.
	Name string `json:"name"`
	// Target is the absolute, clean path inside the container, unique
	// within the session.
	Target string     `json:"target"`
	Mode   Permission `json:"mode"`
	// HostPath, if set, is the absolute host path the view was published
	// at.
	HostPath string `json:"host_path,omitempty"`
}

// Session is the record of one compute session's mounts.
type Session struct {
	// ID is 1..MaxSessionIDLen characters of [A-Za-z0-9._-], not "." or
	// "..".
	ID string `json:"id"`
	// User is the session owner's UUID (32 lowercase hex digits).
	User string `json:"user"`
	// UID and GID are what the session's views show as owner.
	UID uint32 `json:"uid"`
	GID uint32 `json:"gid"`
	// Mounts are the session's views; at most MaxSessionMounts. A stored
	// session always has a non-nil Mounts.
	Mounts    []SessionMount `json:"mounts"`
	CreatedAt time.Time      `json:"created_at"`
	UpdatedAt time.Time      `json:"updated_at"`
}

// Store keeps the metadata. See the package comment for the contract.
type Store interface {
	// PutVolume creates or replaces a volume record.
	PutVolume(ctx context.Context, v Volume) error
	GetVolume(ctx context.Context, name string) (Volume, error)
	ListVolumes(ctx context.Context) ([]Volume, error)

	// CreateScope creates a quota scope; ErrExists if it is there.
	CreateScope(ctx context.Context, s QuotaScope) error
	GetScope(ctx context.Context, volume string, id ScopeID) (QuotaScope, error)
	// UpdateScope applies fn to the stored scope in one transaction.
	// If fn returns an error nothing is written and that error is returned.
	// fn may run more than once, must be free of side effects and must
	// not call the store. Changing Volume or ID is ErrInvalid; CreatedAt is
	// kept and UpdatedAt is set by the store.
	UpdateScope(ctx context.Context, volume string, id ScopeID, fn func(*QuotaScope) error) (QuotaScope, error)
	ListScopes(ctx context.Context, volume string) ([]QuotaScope, error)

	// CreateFolder stores a new folder. It fails with ErrExists when the
	// owner already has a folder of that name (on any volume) or the id is
	// taken, and with ErrLimitExceeded when the owner already has
	// maxCount or more folder records (maxCount 0 = unlimited; trashed
	// folders count until DeleteFolder). The check and the write are one
	// transaction.
	CreateFolder(ctx context.Context, f Folder, maxCount int) error
	GetFolder(ctx context.Context, id string) (Folder, error)
	// FolderByName finds an owner's folder by name.
	FolderByName(ctx context.Context, owner ScopeID, name string) (Folder, error)
	ListFolders(ctx context.Context, filter FolderFilter) ([]Folder, error)
	// UpdateFolder applies fn in one transaction. fn may change Name
	// (uniqueness is enforced: ErrExists), Status, Permission, UsageMode,
	// Cloneable; changing ID, Owner or Volume is ErrInvalid. UpdatedAt is
	// set by the store. If fn returns an error nothing is written and that
	// error is returned. fn may run more than once, must be free of side
	// effects and must not call the store.
	UpdateFolder(ctx context.Context, id string, fn func(*Folder) error) (Folder, error)
	// DeleteFolder removes the record (after a purge); its name is free
	// again and it no longer counts toward the owner's maxCount.
	DeleteFolder(ctx context.Context, id string) error

	// GetPolicy returns the owner's policy, or the zero Policy if none is set.
	GetPolicy(ctx context.Context, owner ScopeID) (Policy, error)
	SetPolicy(ctx context.Context, owner ScopeID, p Policy) error

	// SetMembership creates or replaces the membership of m.User in
	// m.Project.
	SetMembership(ctx context.Context, m Membership) error
	// RemoveMembership removes a membership; ErrNotFound if there is none.
	RemoveMembership(ctx context.Context, project, user string) error
	// ListMembers returns the memberships of a project, ordered by user.
	ListMembers(ctx context.Context, project string) ([]Membership, error)
	// ProjectsOf returns the memberships of a user, ordered by project.
	ProjectsOf(ctx context.Context, user string) ([]Membership, error)

	// PutSession creates or replaces a whole session record and its
	// folder index entries in one transaction.
	PutSession(ctx context.Context, s Session) error
	// GetSession returns a session; ErrNotFound if there is none.
	GetSession(ctx context.Context, id string) (Session, error)
	// ListSessions returns every session, ordered by id.
	ListSessions(ctx context.Context) ([]Session, error)
	// DeleteSession removes a session and its index entries; ErrNotFound
	// if there is none.
	DeleteSession(ctx context.Context, id string) error
	// SessionsUsingFolder returns the ids of the sessions with at least
	// one mount of the folder, ordered, each once. It reads the folder
	// index, not every session.
	SessionsUsingFolder(ctx context.Context, folderID string) ([]string, error)

	// SSH keys (sshkeys.go): a fingerprint belongs to at most one user.
	// PutSSHKey registers a key (CheckSSHKey); ErrExists when its
	// fingerprint is registered already, to this user or another.
	PutSSHKey(ctx context.Context, k SSHKey) error
	// GetSSHKey returns the key of that fingerprint; ErrNotFound if none.
	GetSSHKey(ctx context.Context, fingerprint string) (SSHKey, error)
	// ListSSHKeys returns a user's keys ordered by fingerprint (an empty
	// list for a user without keys).
	ListSSHKeys(ctx context.Context, user string) ([]SSHKey, error)
	// DeleteSSHKey removes the user's key of that fingerprint and returns
	// it; ErrNotFound if the user has no such key.
	DeleteSSHKey(ctx context.Context, user, fingerprint string) (SSHKey, error)

	// Close releases the store. Other methods then return ErrClosed.
	Close() error

	// Shares and invitations (see shares.go for the model and the rules).

	// CreateInvitation stores a new pending invitation. ErrNotFound when
	// the folder has no record; ErrExists when the id is taken, an
	// invitation of the folder to the invitee is pending, or the invitee
	// holds a share of the folder.
	CreateInvitation(ctx context.Context, inv Invitation) error
	// GetInvitation returns an invitation; ErrNotFound if there is none.
	GetInvitation(ctx context.Context, id string) (Invitation, error)
	// ListInvitations returns the invitations user sent or received, in
	// every state, ordered by creation time, then id.
	ListInvitations(ctx context.Context, user string) ([]Invitation, error)
	// SettleInvitation moves a pending invitation to accepted, rejected
	// or canceled and returns it. Accepting creates the invitee's Share of
	// the folder at the invitation's permission in the same transaction
	// (ErrExists if the invitee holds one, ErrNotFound if the folder's
	// record is gone). ErrConflict if the invitation is not pending.
	SettleInvitation(ctx context.Context, id string, state InvitationState) (Invitation, error)
	// PutShare creates or replaces the share of sh.Folder to sh.User
	// (CreatedAt of a replaced share is kept). ErrNotFound when the
	// folder has no record.
	PutShare(ctx context.Context, sh Share) error
	// GetShare returns the share of folder to user; ErrNotFound if none.
	GetShare(ctx context.Context, folder, user string) (Share, error)
	// RemoveShare removes the share of folder to user; ErrNotFound if
	// there is none.
	RemoveShare(ctx context.Context, folder, user string) error
	// ListShares returns the shares of a folder, ordered by user.
	ListShares(ctx context.Context, folder string) ([]Share, error)
	// SharesOf returns the shares a user holds, ordered by folder.
	SharesOf(ctx context.Context, user string) ([]Share, error)
	// AllShares returns every share, ordered by folder, then user.
	AllShares(ctx context.Context) ([]Share, error)
	// DeleteFolderShares removes every share and invitation of a folder
	// (after its purge). A folder without any is no error.
	DeleteFolderShares(ctx context.Context, folder string) error
}
