package api

// Wire types of sharing: invitations of a user's folder to other users,
// per-folder permissions of project members (shares), and what a user
// can reach (routes in internal/server/sharing.go, client methods in
// client_sharing.go).

import "github.com/vfolder/vfolder/meta"

// InviteRequest offers a user's folder to another user
// (POST /v1/invitations).
type InviteRequest struct {
	// Folder is the folder's id, or its name together with User.
	Folder string `json:"folder"`
	// User is the inviter (the folder's owner, a user UUID). Needed when
	// Folder is a name; when given with an id it must be the owner.
	User string `json:"user,omitempty"`
	// Invitee is the user UUID the folder is offered to.
	Invitee    string          `json:"invitee"`
	Permission meta.Permission `json:"permission"`
}

// Invitation is an invitation with the folder's name, as one user sees it.
type Invitation struct {
	meta.Invitation
	FolderName string `json:"folder_name"`
	// Direction is "incoming" (the user asked about is the invitee) or
	// "outgoing" (the inviter); empty when nobody was asked about.
	Direction string `json:"direction,omitempty"`
}

// Invitation directions.
const (
	DirIncoming = "incoming"
	DirOutgoing = "outgoing"
)

// InvitationActionRequest is the body of accept, reject and cancel
// (POST /v1/invitations/{id}/{action}): User, when set, must be the
// invitee (accept, reject) or the inviter (cancel).
type InvitationActionRequest struct {
	User string `json:"user,omitempty"`
}

// ShareRequest sets one user's permission on one folder
// (POST /v1/folders/{ref}/shares): on a project folder a per-folder
// permission of a member (it beats the membership's default); on a
// user's folder a change of the permission an accepted invitation
// granted (at most the owner's permission on the folder).
type ShareRequest struct {
	User       string          `json:"user"`
	Permission meta.Permission `json:"permission"`
}

// Share is one user's permission on one folder.
type Share struct {
	meta.Share
	FolderName string       `json:"folder_name"`
	Owner      meta.ScopeID `json:"owner"`
	// Via is "invited" for a user's folder, "shared" for a project's.
	Via string `json:"via"`
}

// LeaveRequest gives up an invited folder (POST /v1/users/{user}/leave):
// Folder is the folder's id or its name in users/<user>/.
type LeaveRequest struct {
	Folder string `json:"folder"`
}

// ReachedFolder is one folder a user can reach (GET /v1/users/{user}/reach):
// every field of Folder, plus how the user reaches it and the permission
// the user has there (what users/<user>/<view_name> shows and the most a
// publish can mount).
type ReachedFolder struct {
	Folder
	// ViewName is the folder's name in users/<user>/ (the folder's own
	// name, or name@<owner hex[:8]> on a clash).
	ViewName string `json:"view_name"`
	// Via is "owner", "project" (membership default), "shared" (a
	// per-folder permission on a project folder) or "invited" (an
	// accepted invitation).
	Via                 string          `json:"via"`
	EffectivePermission meta.Permission `json:"effective_permission"`
}

// UserStatus is the storage status of one user: the counters of the
// reference system's Data page (GET /v1/users/{user}/status).
type UserStatus struct {
	User string `json:"user"`
	// FoldersCreated counts the user's own folder records (trashed ones
	// included: they count toward MaxFolders until purged).
	FoldersCreated int `json:"folders_created"`
	// MaxFolders is the user's policy limit (0 = unlimited).
	MaxFolders     int `json:"max_folders"`
	ProjectFolders int `json:"project_folders"`
	InvitedFolders int `json:"invited_folders"`
	// Usage is per quota scope and volume: the user's own scope, then
	// each of the user's projects', on every volume this node serves.
	Usage []ScopeUsage `json:"usage"`
}

// ScopeUsage is one scope's usage and limit on one volume.
type ScopeUsage struct {
	Scope      meta.ScopeID `json:"scope"`
	Volume     string       `json:"volume"`
	UsedBytes  int64        `json:"used_bytes"`
	LimitBytes int64        `json:"limit_bytes"` // 0 = no limit (or no scope yet)
}
