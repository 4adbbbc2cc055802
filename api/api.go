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
//	GET    /v1/health                               -> {"status":"ok","version":...}
//
// {ref} is a folder id (32-hex or dashed UUID) or a folder name; a name
// needs the owner query parameter ("user:<uuid>" or "project:<uuid>").
// {scope} and {owner} are scope ids ("user:<uuid>", "project:<uuid>").
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
