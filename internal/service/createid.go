package service

// create --id: a folder may be created with an id its caller gives (a
// platform that keeps its own folder ids adopts them). The id is checked
// (a UUID in any form meta.ParseUUID takes, not the nil UUID), must not be
// any folder record's (meta.ErrExists) and its directory must not exist
// on the volume yet: a directory that is already there is registered by
// ImportVolume (import.go), which counts its usage, never by create,
// which would charge it as empty. The store's CreateFolder still refuses
// an id taken concurrently.

import (
	"context"
	"errors"
	"fmt"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/meta"
)

// nilFolderID is the nil UUID, never a folder id.
const nilFolderID = "00000000000000000000000000000000"

// newFolderID returns the id of a folder CreateFolder makes: the
// request's, checked as above, or a new one.
func (s *Service) newFolderID(ctx context.Context, a *attached, req api.CreateFolderRequest) (string, error) {
	if req.ID == "" {
		return meta.NewFolderID(), nil
	}
	id, err := meta.ParseFolderID(req.ID)
	if err != nil {
		return "", fmt.Errorf("id %q: %w", req.ID, err)
	}
	if id == nilFolderID {
		return "", fmt.Errorf("%w: id %q is the nil UUID, which no folder may have", meta.ErrInvalid, req.ID)
	}
	f, err := s.store.GetFolder(ctx, id)
	switch {
	case err == nil:
		return "", fmt.Errorf("%w: folder id %s is taken by folder %q of %s on volume %q", meta.ErrExists, id, f.Name, f.Owner, f.Volume)
	case !errors.Is(err, meta.ErrNotFound):
		return "", err
	}
	there, err := a.vol.FolderExists(req.Owner, id)
	if err != nil {
		return "", fmt.Errorf("folder id %s: %w", id, err)
	}
	if there {
		return "", fmt.Errorf("%w: the directory of folder id %s already exists on volume %q (%s); register folders that are already on a volume with 'vfolder volume import %s', which counts their usage",
			meta.ErrExists, id, req.Volume, a.vol.FolderPath(req.Owner, id), req.Volume)
	}
	return id, nil
}
