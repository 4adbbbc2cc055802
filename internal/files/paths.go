package files

import (
	"fmt"
	"strings"

	"github.com/vfolder/vfolder/meta"
)

// Limits of a path inside a folder.
const (
	maxPathLen = 4096
	maxNameLen = 255
)

// StagingDir is the hidden directory at a folder's root where tus uploads
// keep their partial data until they complete. The file API never lists
// it and refuses every path into it.
const StagingDir = ".vfolder-uploads"

// CleanPath checks a path inside a folder and returns it relative to the
// folder's root, without leading or trailing slashes: "." for the root
// itself. A leading "/" is the folder's root. Empty elements and "." are
// dropped; ".." anywhere, a NUL byte, an element over 255 bytes, a path
// over 4096 bytes and any path into StagingDir are refused with an error
// wrapping meta.ErrInvalid.
func CleanPath(p string) (string, error) {
	if len(p) > maxPathLen {
		return "", fmt.Errorf("%w: path is longer than %d bytes", meta.ErrInvalid, maxPathLen)
	}
	if strings.IndexByte(p, 0) >= 0 {
		return "", fmt.Errorf("%w: path %q holds a NUL byte", meta.ErrInvalid, p)
	}
	var out []string
	for _, e := range strings.Split(p, "/") {
		switch {
		case e == "" || e == ".":
			continue
		case e == "..":
			return "", fmt.Errorf("%w: path %q has a \"..\" element: paths stay inside the folder", meta.ErrInvalid, p)
		case len(e) > maxNameLen:
			return "", fmt.Errorf("%w: path element %.40q... is longer than %d bytes", meta.ErrInvalid, e, maxNameLen)
		}
		out = append(out, e)
	}
	if len(out) == 0 {
		return ".", nil
	}
	if out[0] == StagingDir {
		return "", fmt.Errorf("%w: %s holds the daemon's partial uploads and is not part of the file API", meta.ErrInvalid, StagingDir)
	}
	return strings.Join(out, "/"), nil
}

// splitPath returns the parent (relative, "." for the root) and the last
// element of a cleaned path; the root has no last element.
func splitPath(clean string) (dir, base string, err error) {
	if clean == "." {
		return "", "", fmt.Errorf("%w: the folder's root itself cannot be the target", meta.ErrInvalid)
	}
	i := strings.LastIndexByte(clean, '/')
	if i < 0 {
		return ".", clean, nil
	}
	return clean[:i], clean[i+1:], nil
}
