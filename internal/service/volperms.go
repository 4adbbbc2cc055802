package service

// Per-owner volume permissions: what a user or project may do on one
// volume (the reference system's allowed_vfolder_hosts).
//
// They live in the owner's resource policy (meta.Policy.Volumes, JSON
// allowed_volume_perms): nil allows everything on every volume, so a
// setup that never set them keeps working; a non-nil map allows on each
// volume exactly the permissions it lists and nothing on a volume it does
// not name. An action is allowed when every scope it involves holds the
// permission: the acting user and, for an action on or in a project's
// folder, that project too. The service enforces create-vfolder in
// CreateFolder (the new folder's owner) and mount-in-session in Publish
// (the session's user and, for a project folder, the project); sharing,
// clone and the file API call CheckVolumePerm for theirs. A refusal wraps
// ErrForbidden (API code forbidden, HTTP 403) and names the permission,
// the volume and the scope that lacks it. Sessions published before a
// permission was taken away keep their mounts (a running container keeps
// what it was given) until their next publish, which takes those mounts
// out (revoke.go).

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/vfolder/vfolder/meta"
)

// VolumePerm is one thing a scope may be allowed to do on a volume.
type VolumePerm string

// The volume permissions the API and mountd enforce.
const (
	VolCreate   VolumePerm = "create-vfolder"
	VolMount    VolumePerm = "mount-in-session"
	VolUpload   VolumePerm = "upload-file"
	VolDownload VolumePerm = "download-file"
	VolInvite   VolumePerm = "invite-others"
	VolClone    VolumePerm = "clone"
)

// VolumePerms are every known volume permission, in the order help texts
// list them.
var VolumePerms = []VolumePerm{VolCreate, VolMount, VolUpload, VolDownload, VolInvite, VolClone}

// Valid reports whether p is a known volume permission.
func (p VolumePerm) Valid() bool { return slices.Contains(VolumePerms, p) }

// volumePermNames is the list of known names for messages.
func volumePermNames() string {
	names := make([]string, len(VolumePerms))
	for i, p := range VolumePerms {
		names[i] = string(p)
	}
	return strings.Join(names, ", ")
}

// checkPolicyVolumes checks that a policy names only known volume
// permissions (the store checks the form of the names, the service
// their meaning).
func checkPolicyVolumes(p meta.Policy) error {
	for vol, perms := range p.Volumes {
		for _, x := range perms {
			if !VolumePerm(x).Valid() {
				return fmt.Errorf("%w: volume permission %q on volume %q is none of %s", meta.ErrInvalid, x, vol, volumePermNames())
			}
		}
	}
	return nil
}

// CheckVolumePerm returns nil when every scope in who may do p on volume
// vol, else an error wrapping ErrForbidden that names the volume, the
// permission and the scope that lacks it. who is the acting user and, for
// an action on or in a project's folder, that project. Zero scope ids in
// who are skipped; a scope with no policy holds every permission.
func (s *Service) CheckVolumePerm(ctx context.Context, vol string, p VolumePerm, who ...meta.ScopeID) error {
	if !p.Valid() {
		return fmt.Errorf("%w: unknown volume permission %q", meta.ErrInvalid, p)
	}
	for _, id := range who {
		if id.IsZero() {
			continue
		}
		pol, err := s.store.GetPolicy(ctx, id)
		if err != nil {
			return fmt.Errorf("volume permission %s of %s on volume %q: %w", p, id, vol, err)
		}
		if pol.VolumeAllows(vol, string(p)) {
			continue
		}
		held := "nothing"
		if have := pol.Volumes[vol]; len(have) > 0 {
			held = strings.Join(have, ", ")
		} else if _, named := pol.Volumes[vol]; !named {
			held = "nothing (the policy does not name the volume)"
		}
		return fmt.Errorf("%w: %s lacks the volume permission %q on volume %q (its resource policy allows there: %s)",
			ErrForbidden, id, p, vol, held)
	}
	return nil
}

// folderScopes are the scopes an action of user on folder f involves: the
// user and, for a project folder, the project.
func folderScopes(user string, f meta.Folder) []meta.ScopeID {
	who := []meta.ScopeID{{Kind: meta.KindUser, UUID: user}}
	if f.Owner.Kind == meta.KindProject {
		who = append(who, f.Owner)
	}
	return who
}
