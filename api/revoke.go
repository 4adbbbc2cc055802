package api

import "github.com/vfolder/vfolder/meta"

// RevokedMount is a mount a publish took out of an existing session
// because the session's user no longer reaches its folder (an unshare, a
// leave, a membership removed) or reaches it at a lower permission than
// the mount's mode, or may no longer mount from its volume
// (Session.Revoked).
type RevokedMount struct {
	Name     string          `json:"name"`
	FolderID string          `json:"folder_id"`
	Subpath  string          `json:"subpath,omitempty"`
	Target   string          `json:"target"`
	Mode     meta.Permission `json:"mode"`
	HostPath string          `json:"host_path"`
	// Reason says what changed, naming the permission and the folder.
	Reason string `json:"reason"`
}
