package api

import "time"

// CloneRequest asks for a copy of a cloneable folder (POST
// /v1/folders/{ref}/clone). The owner query parameter is the caller's
// scope: it resolves REF and owns the new folder; without it REF must be
// an id and the new folder gets the source's owner.
type CloneRequest struct {
	// Name of the new folder.
	Name string `json:"name"`
	// Volume of the new folder; empty means the source's.
	Volume string `json:"volume,omitempty"`
}

// Progress is a long operation running on a folder: a clone copying into
// it (op "clone", status cloning) or a purge removing it (op "purge",
// status delete-ongoing). Totals are 0 when not known.
type Progress struct {
	Op         string    `json:"op"`
	BytesDone  int64     `json:"bytes_done"`
	BytesTotal int64     `json:"bytes_total"`
	FilesDone  int64     `json:"files_done"`
	FilesTotal int64     `json:"files_total"`
	StartedAt  time.Time `json:"started_at"`
	// Source is the id of the folder being copied (op "clone").
	Source string `json:"source,omitempty"`
}

// Operations in Progress.Op.
const (
	OpClone = "clone"
	OpPurge = "purge"
)
