package fs

import (
	"fmt"
	iofs "io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/internal/backing"
	"github.com/vfolder/vfolder/meta"
	"github.com/vfolder/vfolder/quota"
)

// volumeMarker is the file every volume root holds (storage layout v3).
const volumeMarker = "version.txt"

// OpenFolder opens the root directory of a folder for the quota ledger
// (quota.Options.OpenFolder for crash recovery, quota.FolderRoot.Dir for
// Check). volumePath is the host directory of the volume, folderRel the
// folder's directory below it (meta.FolderRelPath). The folder is
// resolved with openat2 beneath the volume root without following any
// symlink.
//
// The error wraps io/fs.ErrNotExist only when the folder is really gone:
// the volume root is there and holds its version.txt, and the folder
// directory is not. A volume that is not mounted (its root missing, or
// without version.txt) gives another error, so the ledger keeps the
// folder's charges until a later Check.
func OpenFolder(volumePath, folderRel string) (*os.File, error) {
	comps, err := splitFolderRel(folderRel)
	if err != nil {
		return nil, err
	}
	if !filepath.IsAbs(volumePath) {
		return nil, fmt.Errorf("%w: volume path %q must be absolute", meta.ErrInvalid, volumePath)
	}
	vfd, err := unix.Open(volumePath, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		// %v, not %w: a missing volume root must not read as a
		// removed folder (ENOENT matches io/fs.ErrNotExist).
		return nil, fmt.Errorf("open volume %s: %v", volumePath, err)
	}
	defer unix.Close(vfd)
	if _, err := backing.Lstat(vfd, volumeMarker); err != nil {
		return nil, fmt.Errorf("volume %s: no %s (%v): not mounted or not a volume", volumePath, volumeMarker, err)
	}
	fd, err := backing.Open(vfd, comps, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		if err == unix.ENOENT {
			return nil, fmt.Errorf("folder %s in volume %s: %w", folderRel, volumePath, iofs.ErrNotExist)
		}
		return nil, fmt.Errorf("open folder %s in volume %s: %w", folderRel, volumePath, err)
	}
	return os.NewFile(uintptr(fd), filepath.Join(volumePath, folderRel)), nil
}

// QuotaFolderOpener returns the function for quota.Options.OpenFolder:
// volumePath maps a volume name to its host directory (false when the
// volume is not configured on this node, which leaves the folder's inodes
// unverified until a Check), and the folder's directory is
// meta.FolderRelPath of the scope and folder id.
func QuotaFolderOpener(volumePath func(volume string) (string, bool)) func(quota.ScopeKey, string) (*os.File, error) {
	return func(s quota.ScopeKey, folderID string) (*os.File, error) {
		if !s.ID.Valid() || !isHex32(folderID) {
			return nil, fmt.Errorf("%w: scope %q, folder id %q", meta.ErrInvalid, s.ID.String(), folderID)
		}
		path, ok := volumePath(s.Volume)
		if !ok {
			return nil, fmt.Errorf("volume %q is not configured on this node", s.Volume)
		}
		return OpenFolder(path, meta.FolderRelPath(s.ID, folderID))
	}
}
