package api

import (
	"context"
	"net/http"
	"net/url"

	"github.com/vfolder/vfolder/meta"
)

// UpdateOptions calls PATCH /v1/folders/{ref}/options.
func (c *Client) UpdateOptions(ctx context.Context, ref string, owner meta.ScopeID, req UpdateOptionsRequest) (Folder, error) {
	var f Folder
	err := c.folderCall(ctx, http.MethodPatch, ref, "/options", owner, req, &f)
	return f, err
}

// ImportVolume calls POST /v1/volumes/{volume}/import. It takes as long
// as the walk of the volume's folders: give the client a Timeout (or ctx
// a deadline) that allows for it.
func (c *Client) ImportVolume(ctx context.Context, volume string, req ImportRequest) (ImportReport, error) {
	if err := checkSegment("volume name", volume); err != nil {
		return ImportReport{}, err
	}
	var r ImportReport
	err := c.do(ctx, http.MethodPost, "/volumes/"+url.PathEscape(volume)+"/import", nil, req, &r)
	return r, err
}

// ImportProgress calls GET /v1/volumes/{volume}/import.
func (c *Client) ImportProgress(ctx context.Context, volume string) (ImportProgress, error) {
	if err := checkSegment("volume name", volume); err != nil {
		return ImportProgress{}, err
	}
	var p ImportProgress
	err := c.do(ctx, http.MethodGet, "/volumes/"+url.PathEscape(volume)+"/import", nil, nil, &p)
	return p, err
}
