package service

// update-options: a live folder's permission, cloneable flag and usage
// mode change after creation.
//
// The change is one Store.UpdateFolder (the callback checks the status
// and the cloneable rule on the current record, so it races with nothing).
// The standing views (users/<uuid>/, projects/<uuid>/) follow at once:
// syncOwner rebuilds the owner's key directories and a view whose mode
// changed is replaced (a standing rw view becomes ro, and writes through
// it get EROFS from the daemon from then on). New publishes are capped by
// the new permission. Session views already published keep the mode they
// were published with (a view fixes its mode at creation, and a running
// container keeps what it was given) until the session's next publish,
// which takes out a mount whose mode is now above the user's permission
// (revoke.go); a lower permission is never raised for them either.

import (
	"context"
	"fmt"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/meta"
)

// UpdateOptions changes a live folder's options (nil fields stay).
func (s *Service) UpdateOptions(ctx context.Context, ref string, owner meta.ScopeID, req api.UpdateOptionsRequest) (api.Folder, error) {
	if req.Permission == nil && req.Cloneable == nil && req.UsageMode == nil {
		return api.Folder{}, fmt.Errorf("%w: nothing to change: give permission, cloneable or usage_mode", meta.ErrInvalid)
	}
	if req.Permission != nil && !req.Permission.Valid() {
		return api.Folder{}, fmt.Errorf("%w: permission %q is not one of ro, rw, wd", meta.ErrInvalid, *req.Permission)
	}
	if req.UsageMode != nil && !req.UsageMode.Valid() {
		return api.Folder{}, fmt.Errorf("%w: usage_mode %q is not one of general, model, data", meta.ErrInvalid, *req.UsageMode)
	}
	f, err := s.resolve(ctx, ref, owner)
	if err != nil {
		return api.Folder{}, err
	}
	var was meta.Folder
	f, err = s.store.UpdateFolder(ctx, f.ID, func(x *meta.Folder) error {
		was = *x
		switch x.Status {
		case meta.StatusReady, meta.StatusMounted, meta.StatusError:
		default:
			return fmt.Errorf("%w: folder %q is %s; only a live folder's options can change (restore it from the trash first)", meta.ErrConflict, x.Name, x.Status)
		}
		if req.Permission != nil {
			x.Permission = *req.Permission
		}
		if req.UsageMode != nil {
			x.UsageMode = *req.UsageMode
		}
		if req.Cloneable != nil {
			x.Cloneable = *req.Cloneable
		}
		if x.Cloneable && x.UsageMode != meta.ModeModel {
			if req.Cloneable != nil {
				return fmt.Errorf("%w: only folders with usage_mode \"model\" can be cloneable; folder %q has usage_mode %q", meta.ErrInvalid, x.Name, x.UsageMode)
			}
			return fmt.Errorf("%w: folder %q is cloneable, and only folders with usage_mode \"model\" can be; set cloneable=false with usage_mode %q", meta.ErrInvalid, x.Name, x.UsageMode)
		}
		return nil
	})
	if err != nil {
		return api.Folder{}, err
	}
	s.log.Info().Str("folder", f.ID).Str("name", f.Name).
		Str("permission_was", string(was.Permission)).Str("permission", string(f.Permission)).
		Bool("cloneable_was", was.Cloneable).Bool("cloneable", f.Cloneable).
		Str("usage_mode_was", string(was.UsageMode)).Str("usage_mode", string(f.UsageMode)).
		Msg("folder options changed")
	s.syncOwner(ctx, f.Owner)
	return s.toAPI(f), nil
}
