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
//
// # Paths (all under /v1)
//
//	GET    /v1/volumes                              -> []Volume
//	GET    /v1/folders?owner=&volume=&deleted=      -> []Folder   (deleted: "", "include", "only")
//	POST   /v1/folders              CreateFolderRequest -> Folder (201)
//	GET    /v1/folders/{ref}?owner=                 -> Folder
//	POST   /v1/folders/{ref}/rename RenameRequest   -> Folder
//	POST   /v1/folders/{ref}/trash                  -> Folder     (status delete-pending)
//	POST   /v1/folders/{ref}/restore                -> Folder     (status ready)
//	POST   /v1/folders/{ref}/purge  PurgeRequest    -> Folder     (record gone afterwards)
//	GET    /v1/folders/{ref}/usage?owner=           -> FolderUsage
//	GET    /v1/quota-scopes/{volume}/{scope}        -> QuotaScope
//	PUT    /v1/quota-scopes/{volume}/{scope}  SetQuotaRequest -> QuotaScope
//	DELETE /v1/quota-scopes/{volume}/{scope}        -> QuotaScope (limit removed)
//	GET    /v1/policies/{owner}                     -> Policy
//	PUT    /v1/policies/{owner}     Policy          -> Policy
//	GET    /v1/views?namespace=&key=                -> []View
//	POST   /v1/views                CreateViewRequest -> View (201; 200 when the same view exists)
//	DELETE /v1/views/sessions/{session}/{name}      -> View       (the removed view)
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
// purged (409 naming the sessions). Session views are not persisted yet:
// after a restart of the daemon they are gone and must be added again.
// On a node running without FUSE every /v1/views call answers 503.
//
// # Errors
//
// Every error is a JSON Error body with a stable code and a message meant
// for humans, and an HTTP status matching the code (see Code* below).
package api

import (
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
)

// Volume is one configured storage volume.
type Volume = meta.Volume

// Folder is a folder record as the API returns it.
type Folder struct {
	meta.Folder
	// Path is the folder's directory on the host.
	Path string `json:"path"`
}

// CreateFolderRequest creates a folder owned by Owner on Volume.
type CreateFolderRequest struct {
	Name       string          `json:"name"`
	Volume     string          `json:"volume"`
	Owner      meta.ScopeID    `json:"owner"`
	UsageMode  meta.UsageMode  `json:"usage_mode,omitempty"` // default general
	Permission meta.Permission `json:"permission,omitempty"` // default rw
	Cloneable  bool            `json:"cloneable,omitempty"`
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
}

// FolderUsage is one folder's own usage.
type FolderUsage struct {
	FolderID   string    `json:"folder_id"`
	UsedBytes  int64     `json:"used_bytes"`
	UsedInodes int64     `json:"used_inodes"`
	AsOf       time.Time `json:"as_of"`
}

// Policy is an owner's resource policy.
type Policy = meta.Policy

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
