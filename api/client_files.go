package api

// Client side of the file API (see files.go): listing streams NDJSON,
// downloads return the response body to the caller, uploads speak the
// tus protocol (creation, HEAD for the offset, PATCH from an offset).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/vfolder/vfolder/meta"
)

// TusVersion is the tus protocol version the client speaks.
const TusVersion = "1.0.0"

type bearerTransport struct {
	base  http.RoundTripper
	token string
}

func (t *bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+t.token)
	return t.base.RoundTrip(r)
}

// WithToken returns a client that sends token as a bearer token with
// every request (the file API's authentication for non-admins); "" gives
// c itself.
func (c *Client) WithToken(token string) *Client {
	if token == "" {
		return c
	}
	cc := *c
	hc := *c.HTTP
	base := hc.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	hc.Transport = &bearerTransport{base: base, token: token}
	cc.HTTP = &hc
	return &cc
}

func filesPath(ref, op string) (string, error) {
	if ref == "" || ref == "." || ref == ".." || strings.Contains(ref, "/") {
		return "", invalidArg("%q is not a folder id or name", ref)
	}
	return "/files/" + url.PathEscape(ref) + "/" + op, nil
}

func ownerQuery(owner meta.ScopeID, q url.Values) url.Values {
	if q == nil {
		q = url.Values{}
	}
	if !owner.IsZero() {
		q.Set("owner", owner.String())
	}
	return q
}

// raw performs a request and returns the response when its status is
// 2xx (the caller closes the body), else the API error. No timeout is
// applied beyond ctx.
func (c *Client) raw(ctx context.Context, method, path string, q url.Values, hdr http.Header, body io.Reader) (*http.Response, error) {
	base := c.BaseURL
	if base == "" {
		base = "http://vfolderd"
	}
	u := base + "/" + Version + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, fmt.Errorf("building request: %w", err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if cl := hdr.Get("Content-Length"); cl != "" {
		req.ContentLength, _ = strconv.ParseInt(cl, 10, 64)
		req.Header.Del("Content-Length")
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, c.transportError(err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		defer resp.Body.Close()
		e := decodeError(resp)
		if resp.StatusCode == http.StatusUnauthorized {
			e.Code = CodeUnauthorized
		}
		return nil, e
	}
	return resp, nil
}

// ListFiles streams directory p of folder ref to fn, entry by entry as
// the daemon sends them. An error in the listing's end line is returned.
func (c *Client) ListFiles(ctx context.Context, ref string, owner meta.ScopeID, p string, fn func(FileEntry) error) (int64, error) {
	path, err := filesPath(ref, "list")
	if err != nil {
		return 0, err
	}
	resp, err := c.raw(ctx, http.MethodGet, path, ownerQuery(owner, url.Values{"path": {p}}), nil, nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var n int64
	for sc.Scan() {
		line := sc.Bytes()
		if bytes.HasPrefix(line, []byte(`{"end":`)) {
			var end FileListEnd
			if err := json.Unmarshal(line, &end); err != nil {
				return n, fmt.Errorf("unreadable end of listing: %w", err)
			}
			if end.Error != nil {
				return n, end.Error
			}
			return n, nil
		}
		var e FileEntry
		if err := json.Unmarshal(line, &e); err != nil {
			return n, fmt.Errorf("unreadable listing line: %w", err)
		}
		n++
		if err := fn(e); err != nil {
			return n, err
		}
	}
	if err := sc.Err(); err != nil {
		return n, c.transportError(err)
	}
	return n, fmt.Errorf("vfolderd at %s ended the listing without its last line (cut short)", c.Socket)
}

func (c *Client) fileCall(ctx context.Context, method, ref, op string, owner meta.ScopeID, q url.Values, body, out any) error {
	path, err := filesPath(ref, op)
	if err != nil {
		return err
	}
	return c.do(ctx, method, path, ownerQuery(owner, q), body, out)
}

// StatFile stats p in folder ref.
func (c *Client) StatFile(ctx context.Context, ref string, owner meta.ScopeID, p string) (FileEntry, error) {
	var e FileEntry
	err := c.fileCall(ctx, http.MethodGet, ref, "stat", owner, url.Values{"path": {p}}, nil, &e)
	return e, err
}

// Mkdir creates a directory.
func (c *Client) Mkdir(ctx context.Context, ref string, owner meta.ScopeID, req MkdirRequest) (FileEntry, error) {
	var e FileEntry
	err := c.fileCall(ctx, http.MethodPost, ref, "mkdir", owner, nil, req, &e)
	return e, err
}

// MoveFile renames inside a folder.
func (c *Client) MoveFile(ctx context.Context, ref string, owner meta.ScopeID, req MoveRequest) (FileEntry, error) {
	var e FileEntry
	err := c.fileCall(ctx, http.MethodPost, ref, "move", owner, nil, req, &e)
	return e, err
}

// DeleteFile removes a path; a recursive delete returns its job (poll it
// with FileJob), a plain one nil.
func (c *Client) DeleteFile(ctx context.Context, ref string, owner meta.ScopeID, req DeleteRequest) (*FileJob, error) {
	if !req.Recursive {
		return nil, c.fileCall(ctx, http.MethodPost, ref, "delete", owner, nil, req, nil)
	}
	var j FileJob
	if err := c.fileCall(ctx, http.MethodPost, ref, "delete", owner, nil, req, &j); err != nil {
		return nil, err
	}
	return &j, nil
}

// FileJob polls a background job.
func (c *Client) FileJob(ctx context.Context, id string) (FileJob, error) {
	var j FileJob
	if err := checkSegment("job id", id); err != nil {
		return j, err
	}
	err := c.do(ctx, http.MethodGet, "/file-jobs/"+url.PathEscape(id), nil, nil, &j)
	return j, err
}

// Download opens p of folder ref: a file's bytes (rangeHdr, e.g.
// "bytes=0-99", asks for part of it), a directory as format "tar" or
// "zip". The caller reads and closes the body.
func (c *Client) Download(ctx context.Context, ref string, owner meta.ScopeID, p, format, rangeHdr string) (*http.Response, error) {
	path, err := filesPath(ref, "download")
	if err != nil {
		return nil, err
	}
	q := url.Values{"path": {p}}
	if format != "" {
		q.Set("format", format)
	}
	var hdr http.Header
	if rangeHdr != "" {
		hdr = http.Header{"Range": {rangeHdr}}
	}
	return c.raw(ctx, http.MethodGet, path, ownerQuery(owner, q), hdr, nil)
}

// IssueToken asks for a file API token (admins only).
func (c *Client) IssueToken(ctx context.Context, req TokenRequest) (Token, error) {
	var t Token
	err := c.do(ctx, http.MethodPost, "/tokens", nil, req, &t)
	return t, err
}

// EncodeUploadMetadata renders tus Upload-Metadata (keys sorted).
func EncodeUploadMetadata(md map[string]string) string {
	keys := make([]string, 0, len(md))
	for k := range md {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+" "+base64.StdEncoding.EncodeToString([]byte(md[k])))
	}
	return strings.Join(parts, ",")
}

func tusHeader(h http.Header) http.Header {
	if h == nil {
		h = http.Header{}
	}
	h.Set("Tus-Resumable", TusVersion)
	return h
}

// uploadPath checks an upload URL (absolute, or a path) and returns its
// path relative to /v1.
func uploadPath(loc string) (string, error) {
	u, err := url.Parse(loc)
	if err != nil {
		return "", invalidArg("upload URL %q: %v", loc, err)
	}
	rest, ok := strings.CutPrefix(u.Path, UploadsPath+"/")
	if !ok || rest == "" || strings.Contains(rest, "/") {
		return "", invalidArg("%q is not an upload URL of vfolderd", loc)
	}
	return "/uploads/" + rest, nil
}

// CreateUpload starts a tus upload of size bytes with metadata md (see
// UploadMeta*) and returns its URL.
func (c *Client) CreateUpload(ctx context.Context, size int64, md map[string]string) (string, error) {
	h := tusHeader(http.Header{"Upload-Length": {strconv.FormatInt(size, 10)}, "Upload-Metadata": {EncodeUploadMetadata(md)}})
	resp, err := c.raw(ctx, http.MethodPost, "/uploads", nil, h, nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	loc := resp.Header.Get("Location")
	if _, err := uploadPath(loc); err != nil {
		return "", fmt.Errorf("vfolderd created an upload at %q: %w", loc, err)
	}
	return loc, nil
}

// UploadOffset asks where an upload stands (tus HEAD): the offset and the
// total length.
func (c *Client) UploadOffset(ctx context.Context, loc string) (offset, length int64, err error) {
	p, err := uploadPath(loc)
	if err != nil {
		return 0, 0, err
	}
	resp, err := c.raw(ctx, http.MethodHead, p, nil, tusHeader(nil), nil)
	if err != nil {
		return 0, 0, err
	}
	resp.Body.Close()
	offset, err = strconv.ParseInt(resp.Header.Get("Upload-Offset"), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("upload %s: bad Upload-Offset %q", loc, resp.Header.Get("Upload-Offset"))
	}
	length, _ = strconv.ParseInt(resp.Header.Get("Upload-Length"), 10, 64)
	return offset, length, nil
}

// PatchUpload sends n bytes of body at offset (tus PATCH) and returns the
// new offset.
func (c *Client) PatchUpload(ctx context.Context, loc string, offset, n int64, body io.Reader) (int64, error) {
	p, err := uploadPath(loc)
	if err != nil {
		return 0, err
	}
	h := tusHeader(http.Header{
		"Upload-Offset":  {strconv.FormatInt(offset, 10)},
		"Content-Type":   {"application/offset+octet-stream"},
		"Content-Length": {strconv.FormatInt(n, 10)},
	})
	resp, err := c.raw(ctx, http.MethodPatch, p, nil, h, body)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return strconv.ParseInt(resp.Header.Get("Upload-Offset"), 10, 64)
}

// TerminateUpload removes an unfinished upload (tus DELETE).
func (c *Client) TerminateUpload(ctx context.Context, loc string) error {
	p, err := uploadPath(loc)
	if err != nil {
		return err
	}
	resp, err := c.raw(ctx, http.MethodDelete, p, nil, tusHeader(nil), nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}
