package api

// Wire types of the file API (internal/files): files inside folders,
// resumable uploads (tus) and the tokens that let people other than root
// and the admin group use it. See docs/files.md.

import (
	"time"

	"github.com/vfolder/vfolder/meta"
)

// Error codes of the file API besides the general ones.
const (
	CodeUnauthorized  = "unauthorized"   // 401: the bearer token is missing, expired or not valid
	CodeQuotaExceeded = "quota-exceeded" // 507: the folder's quota scope has no room
)

// File types of FileEntry.Type.
const (
	FileRegular = "file"
	FileDir     = "dir"
	FileSymlink = "symlink"
	FileOther   = "other"
)

// FileEntry is one entry of a directory listing, or a stat result. The
// listing (GET /v1/files/{ref}/list) is NDJSON: one FileEntry per line,
// in directory order, ended by a FileListEnd line.
type FileEntry struct {
	Name  string    `json:"name"`
	Type  string    `json:"type"`
	Size  int64     `json:"size"`
	Mtime time.Time `json:"mtime"`
	// Mode is the permission bits in octal, e.g. "0644".
	Mode string `json:"mode"`
	// Target is a symlink's target.
	Target string `json:"target,omitempty"`
}

// FileListEnd is the last line of a listing: how many entries were sent,
// or the error that cut the listing short.
type FileListEnd struct {
	End   bool   `json:"end"`
	Count int64  `json:"count"`
	Error *Error `json:"error,omitempty"`
}

// MkdirRequest creates a directory (POST /v1/files/{ref}/mkdir).
type MkdirRequest struct {
	Path    string `json:"path"`
	Parents bool   `json:"parents,omitempty"` // like mkdir -p
}

// MoveRequest renames From to To inside one folder (POST .../move).
type MoveRequest struct {
	From      string `json:"from"`
	To        string `json:"to"`
	Overwrite bool   `json:"overwrite,omitempty"`
}

// DeleteRequest removes Path (POST .../delete). A directory needs
// Recursive unless it is empty; a recursive delete runs in the background
// and answers 202 with the job to poll (GET /v1/file-jobs/{id}).
type DeleteRequest struct {
	Path      string `json:"path"`
	Recursive bool   `json:"recursive,omitempty"`
}

// Job states.
const (
	JobRunning = "running"
	JobDone    = "done"
	JobFailed  = "failed"
)

// FileJob is a background file operation (a recursive delete).
type FileJob struct {
	ID       string     `json:"id"`
	Op       string     `json:"op"`
	FolderID string     `json:"folder_id"`
	Path     string     `json:"path"`
	State    string     `json:"state"`
	Removed  int64      `json:"removed"` // entries removed so far
	Bytes    int64      `json:"bytes"`   // bytes of regular files removed so far
	Error    *Error     `json:"error,omitempty"`
	Started  time.Time  `json:"started"`
	Finished *time.Time `json:"finished,omitempty"`
}

// Metadata keys of a tus upload (POST /v1/uploads, Upload-Metadata).
const (
	UploadMetaFolder    = "folder"    // folder REF (id, or a name with owner / in the token user's reach)
	UploadMetaOwner     = "owner"     // owner of a folder given by name (admin callers)
	UploadMetaPath      = "path"      // target path inside the folder
	UploadMetaOverwrite = "overwrite" // "1" replaces an existing file
	UploadMetaMode      = "mode"      // octal permission bits, default 0644
)

// UploadsPath is the base path of the tus endpoint.
const UploadsPath = "/" + Version + "/uploads"

// TokenRequest asks for a file API token (POST /v1/tokens, admins only).
type TokenRequest struct {
	User string `json:"user"`
	// Folder limits the token to one folder (REF: an id, or a name the
	// user reaches); empty: every folder the user reaches.
	Folder string `json:"folder,omitempty"`
	// Owner is the owner of a Folder given by name (user:<uuid> or
	// project:<uuid>).
	Owner string          `json:"owner,omitempty"`
	Perm  meta.Permission `json:"perm,omitempty"` // default rw; never more than the user's own
	// TTLSeconds is the lifetime; 0 means DefaultTokenTTL.
	TTLSeconds int64 `json:"ttl_seconds,omitempty"`
}

// Token lifetimes.
const (
	DefaultTokenTTL = time.Hour
	MaxTokenTTL     = 7 * 24 * time.Hour
)

// Token is a signed file API token.
type Token struct {
	Token     string          `json:"token"`
	User      string          `json:"user"`
	FolderID  string          `json:"folder_id,omitempty"`
	Perm      meta.Permission `json:"perm"`
	ExpiresAt time.Time       `json:"expires_at"`
}
