package api

// Wire types of folder options, volume capacity and volume import.
//
//	PATCH  /v1/folders/{ref}/options?owner=   UpdateOptionsRequest -> Folder
//	POST   /v1/volumes/{volume}/import        ImportRequest        -> ImportReport
//	GET    /v1/volumes/{volume}/import                             -> ImportProgress
//
// GET /v1/volumes adds the fields of VolumeSpace to each attached volume.

import "github.com/vfolder/vfolder/meta"

// UpdateOptionsRequest changes a live folder's options; nil fields stay
// as they are, and a request with none is refused.
type UpdateOptionsRequest struct {
	Permission *meta.Permission `json:"permission,omitempty"`
	Cloneable  *bool            `json:"cloneable,omitempty"`
	UsageMode  *meta.UsageMode  `json:"usage_mode,omitempty"`
}

// VolumeSpace is what statfs(2) of a volume's backing file system says,
// as df(1) shows it: capacity, used and free bytes (free is what an
// unprivileged writer may still use, f_bavail), and the inode figures.
// Used is capacity minus the file system's free blocks (f_bfree), so
// used + free can be less than capacity by the blocks kept for root.
type VolumeSpace struct {
	CapacityBytes int64 `json:"capacity_bytes"`
	UsedBytes     int64 `json:"used_bytes"`
	FreeBytes     int64 `json:"free_bytes"`
	// Inodes: 0 total means the file system does not count them.
	CapacityInodes int64 `json:"capacity_inodes"`
	UsedInodes     int64 `json:"used_inodes"`
	FreeInodes     int64 `json:"free_inodes"`
	// SpaceError says why the figures are missing (statfs failed); the
	// numbers are 0 then.
	SpaceError string `json:"space_error,omitempty"`
}

// Owner kinds of an import.
const (
	OwnerKindUser    = "user"
	OwnerKindProject = "project"
)

// ImportRequest registers the folders already on a layout-v3 volume.
type ImportRequest struct {
	// Names gives folders their names and owner kinds, by folder id
	// (32-hex); a folder it does not name is called by its id.
	Names []ImportName `json:"names,omitempty"`
	// OwnerKind ("user" or "project") is the kind of every scope
	// directory whose kind Names does not give and the store does not
	// already know; "" means such a scope is refused.
	OwnerKind string `json:"owner_kind,omitempty"`
	// DryRun checks and reports without registering anything.
	DryRun bool `json:"dry_run,omitempty"`
}

// ImportName is one line of an import names file.
type ImportName struct {
	FolderID string `json:"folder_id"`
	Name     string `json:"name"`
	// OwnerKind is "user", "project" or "" (see ImportRequest.OwnerKind).
	OwnerKind string `json:"owner_kind,omitempty"`
}

// ImportReport is what an import found and did.
type ImportReport struct {
	Volume string `json:"volume"`
	DryRun bool   `json:"dry_run,omitempty"`
	// Imported are the folders registered by this call; Skipped those
	// already registered (a rerun skips everything).
	Imported []ImportedFolder `json:"imported"`
	Skipped  []ImportedFolder `json:"skipped"`
	// Problems are the entries the import did not understand; when there
	// are any, nothing was registered (the call fails and its error lists
	// them).
	Problems []ImportProblem `json:"problems"`
	// Checks are the quota checks (with repair) of the scopes that got
	// folders: the walk that counted their usage.
	Checks []QuotaCheck `json:"checks"`
}

// ImportedFolder is one folder of an import.
type ImportedFolder struct {
	ID         string       `json:"id"`
	Name       string       `json:"name"`
	Owner      meta.ScopeID `json:"owner"`
	Path       string       `json:"path"`
	UsedBytes  int64        `json:"used_bytes"`
	UsedInodes int64        `json:"used_inodes"`
}

// ImportProblem is one entry an import refused.
type ImportProblem struct {
	// Path is relative to the volume root.
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

// Import phases (ImportProgress.Phase).
const (
	ImportReading  = "reading-layout"
	ImportRegister = "registering"
	ImportCounting = "counting-usage"
	ImportDone     = "done"
	ImportFailed   = "failed"
)

// ImportProgress is how far the running (or the last) import of a volume
// is: GET /v1/volumes/{volume}/import.
type ImportProgress struct {
	Volume  string `json:"volume"`
	Running bool   `json:"running"`
	// Phase is one of the Import* phases.
	Phase string `json:"phase"`
	// Folders is how many folders the import registers; Registered how
	// many it has.
	Folders    int `json:"folders"`
	Registered int `json:"registered"`
	// Scopes is how many quota scopes the import counts; Counted how many
	// it has; Scope is the one being counted and ScopeBytes its usage so
	// far.
	Scopes     int          `json:"scopes"`
	Counted    int          `json:"counted"`
	Scope      meta.ScopeID `json:"scope,omitzero"`
	ScopeBytes int64        `json:"scope_bytes"`
	// Error is why a failed import stopped.
	Error string `json:"error,omitempty"`
}
