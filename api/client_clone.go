package api

import (
	"context"
	"net/http"

	"github.com/vfolder/vfolder/meta"
)

// CloneFolder calls POST /v1/folders/{ref}/clone. It returns the new
// folder at once, in status cloning with its Progress; poll Folder until
// it is ready (the copy failed and was rolled back when it is gone).
func (c *Client) CloneFolder(ctx context.Context, ref string, owner meta.ScopeID, req CloneRequest) (Folder, error) {
	var f Folder
	err := c.folderCall(ctx, http.MethodPost, ref, "/clone", owner, req, &f)
	return f, err
}
