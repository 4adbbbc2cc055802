// Package api is the contract of vfolderd's local API: HTTP/JSON over a unix
// socket, spoken by the vfolder CLI and by container runtimes (mountd).
//
// # Transport and identity
//
// The daemon listens on a unix socket (default /run/vfolder/vfolderd.sock).
// It identifies the caller by SO_PEERCRED: root, or a member of the
// configured admin group, may do everything; anyone else gets 403. The
// platform (Backend.AI's manager, an operator) authenticates its own users
// and passes the acting identity explicitly (the "user"/"project" fields).
// Optionally the same routes are served on a TCP port with mutual TLS
// (vfolderd --api-listen; NewTLSClient): a client certificate of the
// admin's CA has the rights of root on the socket, a caller without one
// gets 403.
//
// openapi.yaml beside this file describes every route for client
// generators; a test keeps it equal to the routes the server registers.
//
// # Paths (all under /v1)
//
//	GET    /v1/volumes                              -> []Volume
//	POST   /v1/volumes/{volume}/import ImportRequest -> ImportReport (volopts.go)
//	GET    /v1/volumes/{volume}/import              -> ImportProgress
//	GET    /v1/folders?owner=&volume=&deleted=      -> []Folder   (deleted: "", "include", "only")
//	POST   /v1/folders              CreateFolderRequest -> Folder (201)
//	GET    /v1/folders/{ref}?owner=                 -> Folder
//	POST   /v1/folders/{ref}/rename RenameRequest   -> Folder
//	POST   /v1/folders/{ref}/trash                  -> Folder     (status delete-pending)
//	POST   /v1/folders/{ref}/restore                -> Folder     (status ready)
//	POST   /v1/folders/{ref}/purge  PurgeRequest    -> Folder     (record gone afterwards)
//	GET    /v1/folders/{ref}/usage?owner=           -> FolderUsage
//	PATCH  /v1/folders/{ref}/options?owner= UpdateOptionsRequest -> Folder (volopts.go)
//	GET    /v1/quota-scopes/{volume}/{scope}        -> QuotaScope
//	PUT    /v1/quota-scopes/{volume}/{scope}  SetQuotaRequest -> QuotaScope
//	DELETE /v1/quota-scopes/{volume}/{scope}        -> QuotaScope (limit removed)
//	POST   /v1/quota-scopes/{volume}/{scope}/check QuotaCheckRequest -> QuotaCheck
//	GET    /v1/policies/{owner}                     -> Policy
//	PUT    /v1/policies/{owner}     Policy          -> Policy
//	GET    /v1/views?namespace=&key=                -> []View
//	POST   /v1/views                CreateViewRequest -> View (201; 200 when the same view exists)
//	DELETE /v1/views/sessions/{session}/{name}      -> View       (the removed view)
//	GET    /v1/projects/{project}/members           -> []Membership
//	PUT    /v1/projects/{project}/members/{user} SetMemberRequest -> Membership
//	DELETE /v1/projects/{project}/members/{user}    -> Membership (the removed one)
//	GET    /v1/sessions                             -> []Session
//	GET    /v1/sessions/{session}                   -> Session
//	POST   /v1/sessions/{session}/publish PublishRequest -> Session
//	POST   /v1/sessions/{session}/attach  AttachRequest  -> Session
//	POST   /v1/sessions/{session}/unpublish          -> UnpublishResult (200 for any well-formed id)
//	GET    /v1/nodes                                -> []Node     (the cluster's nodes; this node alone without a cluster)
//	GET    /v1/health                               -> {"status":"ok","version":...}
//
// {ref} is a folder id (32-hex or dashed UUID) or a folder name; a name
// needs the owner query parameter ("user:<uuid>" or "project:<uuid>").
// {scope} and {owner} are scope ids ("user:<uuid>", "project:<uuid>").
//
// # Views
//
// The daemon serves one FUSE namespace per node (see package fs):
//
//	<mount-point>/users/<user-uuid-hex>/<folder-name>        standing views
//	<mount-point>/projects/<project-uuid-hex>/<folder-name>  standing views
//	<mount-point>/sessions/<session-id>/<name>               session views
//
// Standing views follow the folders by themselves: every live folder shows
// under its owner, at the folder's permission, owned by the configured
// view uid/gid. Session views are what container runtimes (mountd) ask
// for with POST /v1/views: one folder (or a subpath of it) at a mode that
// must not exceed the folder's permission (403 otherwise), shown as the
// given uid/gid. A folder that has session views cannot be trashed or
// purged (409 naming the sessions). Session views added this way are
// kept in memory only: after a restart of the daemon they are gone and
// must be added again (the views of published sessions, below, are
// persisted).
// On a node running without FUSE every /v1/views call answers 503.
//
// # Project membership
//
// {project} and {user} are UUIDs (dashed or 32-hex). A member reaches
// every live folder of the project at the membership's permission when it
// is set, else at the folder's own permission. Under
// users/<user-uuid>/ a project folder appears by its name; when that name
// is taken by a folder the user owns, or by a folder of another project
// the user is a member of, every project folder of that name appears as
// "<name>@<first 8 hex digits of the project uuid>" instead (the user's
// own folder keeps the plain name). A project's ".local" folder is not
// shown under users/: it is mounted into sessions per user (see below).
// Membership changes update the views at once; mounts that sessions
// already have are not changed by them.
//
// # Sessions (mountd)
//
// POST /v1/sessions/{session}/publish makes folders available to the
// containers of a compute session. Each mount names a folder by id, by
// name (as the user sees it under users/<user>/) or as "name/subpath"
// (also "id/subpath"); the target follows the reference system's rules
// (default /home/work/<name>, a relative target goes under /home/work,
// system directories are refused); mode defaults to the user's
// permission on the folder and may never exceed it (403 naming the
// folder, also for a folder the user may not use at all). With automount
// (the default) every live dot-folder the user owns is added at
// /home/work/<name> (.linuxbrew at /home/linuxbrew/.linuxbrew), and the
// ".local" folder of a project the user is a member of is mounted as its
// per-user subfolder "<user-hex>" (created when missing) unless the user
// owns a ".local" of their own. Overlapping targets or sources are
// refused.
//
// The answer lists every mount of the session with the host path
// published for it and the OCI runtime-spec mount ("oci") that binds it
// into a container: put those objects into config.json's "mounts" and
// keep linux.rootfsPropagation at "rslave". Publishing is idempotent per
// (session, target): the same request again returns the same session,
// and a request with more mounts adds them, so every container of a
// cluster session gets the same mounts, paths and modes. The session's
// user, uid and gid are fixed by its first publish.
//
// "reserve" holds targets for folders published after the containers
// started: each gets a read-only empty placeholder ("reserved" in the
// answer, with its "oci" mount) that the container binds; a later publish
// of a folder at that exact target appears inside the running containers
// at once. POST .../attach {pid} injects every mount of the session into
// the running container whose init process is pid (hot-adding without a
// reservation); mounts already there are left alone.
//
// POST .../unpublish takes every mount of the session away, removes its
// views and its record; it never refuses and answers 200 with the list of
// what it could not remove. A folder mounted by a session cannot be
// trashed or purged (409 naming the sessions). Sessions are persisted: a
// restarted daemon publishes them again on the same host paths, so
// containers that kept running see working mounts again.
//
// # Quotas
//
// A quota scope is one owner (user or project) on one volume. Its limit is
// enforced by the daemon in the I/O path of every rw and wd view (package
// quota): a write that would cross it is cut short and the next one fails
// with EDQUOT; statfs in a view reports the limit and the free bytes. The
// usage figures (QuotaScope.UsedBytes, FolderUsage) are read from the
// daemon's ledger in constant time, never from a tree walk; they include
// the bytes of writes in flight. A new limit (PUT, DELETE, or a scope
// created with a folder) is enforced from the moment the call answers.
// Limits are whole numbers of bytes (and inodes) from 0 (no limit) to
// 2^63-1; anything else (negative, fractional, out of range, a string) is
// refused with 400.
//
// POST .../check walks the scope's folders on storage and compares what
// is there with the ledger (QuotaCheck); with "repair": true it makes the
// ledger match. It runs online (writes go on) and may take long on big
// folders: clients should allow for that (the CLI waits up to
// CheckTimeout). The daemon runs the same check with repair on every
// scope, in the background, when it starts after an unclean shutdown;
// QuotaScope.Checking is true while a check of the scope runs.
//
// # Nodes
//
// GET /v1/nodes lists the nodes of the cluster (cluster mode: every
// vfolderd that shares the etcd), ordered by id: each with its hostname,
// version, status (alive; stopped: it stopped cleanly; expired: its lease
// ran out without a clean stop, as after a crash) and, for the alive ones,
// the sessions it holds folders for. Without a cluster the list holds
// this node alone. Grants are the quota room a node may fill without
// asking the cluster, per scope with a limit, as etcd holds them (cluster
// mode; absent for a node that holds none and on a node of its own).
//
// # Errors
//
// Every error is a JSON Error body with a stable code and a message meant
// for humans, and an HTTP status matching the code (see Code* below).
package api

import (
	"net/http"
	"time"

	"github.com/vfolder/vfolder/meta"
)

// Version is the API version prefix.
const Version = "v1"

// DefaultSocket is where vfolderd listens unless configured otherwise.
const DefaultSocket = "/run/vfolder/vfolderd.sock"

// Error is the body of every non-2xx response.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Message }

// Error codes and the HTTP status each one travels with.
const (
	CodeInvalid       = "invalid"        // 400: bad input
	CodeForbidden     = "forbidden"      // 403: caller may not do this
	CodeNotFound      = "not-found"      // 404
	CodeExists        = "exists"         // 409: name or id taken
	CodeConflict      = "conflict"       // 409: wrong state (e.g. purge of a live folder, wrong confirm name)
	CodeLimitExceeded = "limit-exceeded" // 422: policy limit (folder count)
	CodeInternal      = "internal"       // 500
	CodeUnavailable   = "unavailable"    // 503: shutting down
	// CodeStateFull: the daemon's state disk is short of space; metadata
	// changes are refused until space is freed there (507 Insufficient
	// Storage: the server cannot store what the request needs; retry
	// later).
	CodeStateFull = "state-disk-full" // 507
)

// StatusOf is the HTTP status an error code travels with (the codes of
// files.go included); an unknown code is 500.
func StatusOf(code string) int {
	switch code {
	case CodeInvalid:
		return http.StatusBadRequest
	case CodeUnauthorized:
		return http.StatusUnauthorized
	case CodeForbidden:
		return http.StatusForbidden
	case CodeNotFound:
		return http.StatusNotFound
	case CodeExists, CodeConflict:
		return http.StatusConflict
	case CodeLimitExceeded:
		return http.StatusUnprocessableEntity
	case CodeUnavailable:
		return http.StatusServiceUnavailable
	case CodeStateFull, CodeQuotaExceeded:
		return http.StatusInsufficientStorage
	}
	return http.StatusInternalServerError
}

// Volume is one configured storage volume and whether it is attached.
type Volume struct {
	meta.Volume
	// VolumeSpace is the backing file system's capacity (volopts.go);
	// absent while the volume is unavailable.
	*VolumeSpace
	// Status is VolumeReady or VolumeUnavailable.
	Status string `json:"status"`
	// Reason says why an unavailable volume is not attached (its path is
	// missing, not a mount point, has no version.txt...).
	Reason string `json:"reason,omitempty"`
}

// Volume statuses.
const (
	// VolumeReady: attached; its folders are served.
	VolumeReady = "ready"
	// VolumeUnavailable: configured but not attached (see Reason); the
	// daemon tries again every few seconds, and its folders show status
	// "error" until it is back.
	VolumeUnavailable = "unavailable"
)

// Folder is a folder record as the API returns it.
type Folder struct {
	meta.Folder
	// Path is the folder's directory on the host.
	Path string `json:"path"`
	// StatusReason says why Status is "error" (e.g. the folder's volume
	// is unavailable).
	StatusReason string `json:"status_reason,omitempty"`
	// Progress is the clone or purge running on the folder (clone.go).
	Progress *Progress `json:"progress,omitempty"`
}

// CreateFolderRequest creates a folder owned by Owner on Volume.
type CreateFolderRequest struct {
	Name       string          `json:"name"`
	Volume     string          `json:"volume"`
	Owner      meta.ScopeID    `json:"owner"`
	UsageMode  meta.UsageMode  `json:"usage_mode,omitempty"` // default general
	Permission meta.Permission `json:"permission,omitempty"` // default rw
	Cloneable  bool            `json:"cloneable,omitempty"`
	// ID, if set, is the id the folder gets (32 hex digits or a dashed
	// UUID) instead of a new one: a platform that keeps its own ids
	// adopts them (see the README's "create --id").
	ID string `json:"id,omitempty"`
}

// RenameRequest renames a folder.
type RenameRequest struct {
	NewName string `json:"new_name"`
}

// PurgeRequest purges a trashed folder; Confirm must equal its exact name.
type PurgeRequest struct {
	Confirm string `json:"confirm"`
}

// SetQuotaRequest sets a scope's limits. Nil fields are left as they are.
// A limit of 0 removes it.
type SetQuotaRequest struct {
	LimitBytes  *int64 `json:"limit_bytes,omitempty"`
	LimitInodes *int64 `json:"limit_inodes,omitempty"`
}

// QuotaScope is a scope with its limits and current usage.
type QuotaScope struct {
	meta.QuotaScope
	UsedBytes  int64 `json:"used_bytes"`
	UsedInodes int64 `json:"used_inodes"`
	// Checking is true while a check of the scope runs (one asked for, or
	// the one the daemon runs after an unclean shutdown).
	Checking bool `json:"checking,omitempty"`
}

// QuotaCheckRequest is the body of POST .../check (optional: no body means
// no repair).
type QuotaCheckRequest struct {
	// Repair makes the ledger match what is on storage.
	Repair bool `json:"repair"`
}

// CheckTimeout is how long the CLI waits for a check by default.
const CheckTimeout = 24 * time.Hour

// Problems a check reports (QuotaFinding.Problem, QuotaCheck.Counts).
const (
	ProblemUnknown    = "unknown"    // an object on storage the ledger does not know
	ProblemGone       = "gone"       // a ledger entry whose object is gone from storage
	ProblemSize       = "size"       // charged bytes differ from the real size
	ProblemXattr      = "xattr"      // charged user.* xattr bytes differ from the real ones
	ProblemKind       = "kind"       // the ledger has another type for the object
	ProblemUnverified = "unverified" // left unconfirmed by a crash
	ProblemCounter    = "counter"    // a folder's counter differs from its entries
	ProblemChanged    = "changed"    // changed while being checked; not drift
	ProblemOrphan     = "orphan"     // ledger entries of a folder that no longer exists
)

// QuotaCheck is the result of checking a scope's ledger against storage.
type QuotaCheck struct {
	Volume string       `json:"volume"`
	Scope  meta.ScopeID `json:"scope"`
	// Repair tells whether repair was asked for.
	Repair bool `json:"repair"`
	// Drift is true when the ledger differed from storage.
	Drift bool `json:"drift"`
	// Repaired is true when every difference found was fixed.
	Repaired bool `json:"repaired"`
	// Complete is false when some folder or directory could not be read
	// (see the folders' Errors); the ledger entries of such a folder are
	// never taken for gone.
	Complete bool `json:"complete"`
	// Folders are the scope's folders on the volume that were walked.
	Folders []QuotaCheckFolder `json:"folders"`
	// UnknownFiles counts objects on storage the ledger did not know;
	// MissingEntries ledger entries whose object is gone from storage.
	UnknownFiles   int `json:"unknown_files"`
	MissingEntries int `json:"missing_entries"`
	// Counts counts every finding by problem (ProblemUnknown...).
	Counts map[string]int `json:"counts"`
	// RepairedCount is how many findings were fixed.
	RepairedCount int `json:"repaired_count"`
	// Busy counts differences left alone because operations on them were
	// in flight; the next check looks at them again.
	Busy int `json:"busy"`
	// OrphanFolders are folder ids the ledger holds for this scope that
	// have no folder record any more (dropped from the ledger by repair).
	OrphanFolders []string `json:"orphan_folders,omitempty"`
	// Findings lists differences, at most MaxFindings of them.
	Findings  []QuotaFinding `json:"findings"`
	Truncated bool           `json:"truncated,omitempty"`
	// UsedBytes and UsedInodes are the scope's usage when the check ended
	// (after repairs).
	UsedBytes  int64     `json:"used_bytes"`
	UsedInodes int64     `json:"used_inodes"`
	StartedAt  time.Time `json:"started_at"`
	// Seconds is how long the check took.
	Seconds float64 `json:"seconds"`
}

// QuotaCheckFolder is one folder of a check: what the ledger held and what
// was found on storage.
type QuotaCheckFolder struct {
	FolderID string `json:"folder_id"`
	Name     string `json:"name"`
	// LedgerBytes and LedgerInodes are the ledger's figures before any
	// repair; DiskBytes and DiskInodes what the walk found.
	LedgerBytes  int64 `json:"ledger_bytes"`
	DiskBytes    int64 `json:"disk_bytes"`
	LedgerInodes int64 `json:"ledger_inodes"`
	DiskInodes   int64 `json:"disk_inodes"`
	// DiskDirBytes and DiskXattrBytes are the parts of DiskBytes held by
	// directories (the folder root included) and by user.* xattrs.
	DiskDirBytes   int64 `json:"disk_dir_bytes"`
	DiskXattrBytes int64 `json:"disk_xattr_bytes"`
	// Unknown, Missing and Other count this folder's findings: objects
	// unknown to the ledger, entries gone from storage, and every other
	// difference (sizes, xattrs, types, unverified entries, counters).
	Unknown  int      `json:"unknown"`
	Missing  int      `json:"missing"`
	Other    int      `json:"other"`
	Complete bool     `json:"complete"`
	Errors   []string `json:"errors,omitempty"`
}

// QuotaFinding is one difference between the ledger and storage.
type QuotaFinding struct {
	FolderID string `json:"folder_id"`
	// Path is relative to the folder root ("" when not known).
	Path    string `json:"path,omitempty"`
	Problem string `json:"problem"`
	// LedgerBytes is what the ledger charged, DiskBytes what storage
	// holds (for ProblemCounter: the counter and the sum of entries; the
	// inode fields alike).
	LedgerBytes  int64 `json:"ledger_bytes"`
	DiskBytes    int64 `json:"disk_bytes"`
	LedgerInodes int64 `json:"ledger_inodes,omitempty"`
	DiskInodes   int64 `json:"disk_inodes,omitempty"`
	Repaired     bool  `json:"repaired"`
}

// MaxFindings bounds QuotaCheck.Findings.
const MaxFindings = 1000

// FolderUsage is one folder's own usage.
type FolderUsage struct {
	FolderID   string    `json:"folder_id"`
	UsedBytes  int64     `json:"used_bytes"`
	UsedInodes int64     `json:"used_inodes"`
	AsOf       time.Time `json:"as_of"`
}

// Policy is an owner's resource policy.
type Policy = meta.Policy

// Node statuses (Node.Status).
const (
	NodeAlive   = "alive"   // its lease is alive
	NodeStopped = "stopped" // it stopped cleanly
	NodeExpired = "expired" // its lease ran out without a clean stop
)

// Node is one vfolderd node (GET /v1/nodes).
type Node struct {
	ID       string `json:"id"`
	Hostname string `json:"hostname"`
	Version  string `json:"version"`
	// Status is NodeAlive, NodeStopped or NodeExpired.
	Status string `json:"status"`
	// Self marks the node that answered.
	Self bool `json:"self,omitempty"`
	// StartedAt is when the node (last) started; StoppedAt when it
	// stopped cleanly.
	StartedAt time.Time `json:"started_at"`
	StoppedAt time.Time `json:"stopped_at,omitzero"`
	// Sessions are the sessions the node holds folders for (alive nodes
	// only), ordered by id.
	Sessions []NodeSession `json:"sessions"`
	// Grants are the quota grants the node holds (cluster mode); absent
	// when it holds none.
	Grants []NodeGrant `json:"grants,omitempty"`
}

// NodeSession is one session of a node.
type NodeSession struct {
	ID string `json:"session"`
	// Folders are the ids of the folders the session mounts on the node.
	Folders []string `json:"folders"`
}

// NodeGrant is the quota a node may spend in one scope without asking the
// cluster.
type NodeGrant struct {
	Volume string       `json:"volume"`
	Scope  meta.ScopeID `json:"scope"`
	Bytes  int64        `json:"bytes"`
	Inodes int64        `json:"inodes"`
}

// Health is the body of GET /v1/health.
type Health struct {
	Status  string `json:"status"`
	Version string `json:"version"`
}

// The namespaces of views (the directories below the mount point).
const (
	NSSessions = "sessions"
	NSUsers    = "users"
	NSProjects = "projects"
)

// View is one view in the daemon's FUSE namespace.
type View struct {
	Namespace string `json:"namespace"` // sessions, users or projects
	// Key is the session id, or the 32-hex uuid of the user or project.
	Key      string `json:"key"`
	Name     string `json:"name"` // entry name below Key
	FolderID string `json:"folder_id"`
	Volume   string `json:"volume"`
	// Subpath is the directory inside the folder the view shows ("" for
	// the whole folder).
	Subpath string          `json:"subpath"`
	Mode    meta.Permission `json:"mode"`
	UID     uint32          `json:"uid"`
	GID     uint32          `json:"gid"`
	// Path is the view's absolute path under the daemon's mount point.
	Path string `json:"path"`
}

// Membership is a user's membership in a project.
type Membership = meta.Membership

// SetMemberRequest is the body of PUT /v1/projects/{project}/members/{user}.
// An empty Permission means "each folder's own permission".
type SetMemberRequest struct {
	Permission meta.Permission `json:"permission,omitempty"`
}

// MountRequest is one folder of a PublishRequest.
type MountRequest struct {
	// Folder is a folder id, a folder name as the user sees it, or either
	// followed by "/subpath".
	Folder string `json:"folder"`
	// Target is the path inside the container; "" means /home/work/<name>.
	Target string `json:"target,omitempty"`
	// Mode defaults to the user's permission and may not exceed it.
	Mode meta.Permission `json:"mode,omitempty"`
}

// PublishRequest publishes folders for a session.
type PublishRequest struct {
	// User is the session owner's UUID.
	User string `json:"user"`
	// UID and GID are what the session's views show as owner; they
	// default to the daemon's view uid/gid.
	UID *uint32 `json:"uid,omitempty"`
	GID *uint32 `json:"gid,omitempty"`
	// Mounts are the folders to publish.
	Mounts []MountRequest `json:"mounts"`
	// Automount adds the user's dot-folders; nil means true.
	Automount *bool `json:"automount,omitempty"`
	// Reserve lists targets to hold for folders published later.
	Reserve []string `json:"reserve,omitempty"`
}

// OCIMount is one entry of an OCI runtime spec's "mounts" array.
type OCIMount struct {
	Destination string   `json:"destination"`
	Type        string   `json:"type"`
	Source      string   `json:"source"`
	Options     []string `json:"options"`
}

// PublishedMount is one mount of a session.
type PublishedMount struct {
	// Name is the mount's name: its view is
	// <mount-point>/sessions/<session>/<name>.
	Name     string          `json:"name"`
	FolderID string          `json:"folder_id"`
	Subpath  string          `json:"subpath,omitempty"`
	Target   string          `json:"target"`
	Mode     meta.Permission `json:"mode"`
	// HostPath is where the view is published on the host.
	HostPath string `json:"host_path"`
	// OCI binds HostPath at Target in a container.
	OCI OCIMount `json:"oci"`
}

// ReservedTarget is a target held for a folder published later.
type ReservedTarget struct {
	Name string `json:"name"`
	// Target is "" when the daemon restarted since the reservation (the
	// reservation itself survives).
	Target   string    `json:"target,omitempty"`
	HostPath string    `json:"host_path"`
	OCI      *OCIMount `json:"oci,omitempty"`
}

// Session is a published compute session.
type Session struct {
	ID       string           `json:"session"`
	User     string           `json:"user"`
	UID      uint32           `json:"uid"`
	GID      uint32           `json:"gid"`
	Mounts   []PublishedMount `json:"mounts"`
	Reserved []ReservedTarget `json:"reserved,omitempty"`
	// Revoked lists the mounts this publish took out of the session
	// (api/revoke.go); only in the answer of a publish.
	Revoked []RevokedMount `json:"revoked,omitempty"`
	// CreatedAt and UpdatedAt are those of the session's record (zero
	// for a session that only holds reservations).
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// AttachRequest names the running container to attach a session's mounts
// to: the pid of its init process as the host sees it.
type AttachRequest struct {
	PID int `json:"pid"`
}

// UnpublishResult is what an unpublish removed and what it could not.
type UnpublishResult struct {
	Session string `json:"session"`
	// Removed are the mounts the session had.
	Removed []PublishedMount `json:"removed"`
	// Problems are what could not be removed (empty when all went).
	Problems []string `json:"problems"`
}

// CreateViewRequest adds a session view. Folder is a folder id, or a
// folder name together with Owner. Mode defaults to the folder's
// permission and may not exceed it; UID and GID default to the daemon's
// configured view uid/gid.
type CreateViewRequest struct {
	Session string          `json:"session"`
	Name    string          `json:"name"`
	Folder  string          `json:"folder"`
	Owner   *meta.ScopeID   `json:"owner,omitempty"`
	Subpath string          `json:"subpath,omitempty"`
	Mode    meta.Permission `json:"mode,omitempty"`
	UID     *uint32         `json:"uid,omitempty"`
	GID     *uint32         `json:"gid,omitempty"`
}
