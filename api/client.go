package api

// This file is the Go client of the API, used by the vfolder CLI, mountd
// and tests. A Client is safe for concurrent use; it keeps idle
// connections to the socket between calls.
//
// Errors a method returns:
//   - *Error when the daemon answered with a non-2xx status (the decoded
//     body; when the body is not an API error, a synthesized one whose code
//     follows the HTTP status);
//   - *UnreachableError (errors.Is(err, ErrUnreachable)) when the socket is
//     missing, refuses connections or may not be opened;
//   - *Error with CodeInvalid for arguments that cannot even be put in a
//     request (an empty or "."/".." path segment: a folder reference, a
//     volume, a session id...; a zero scope id);
//   - otherwise a transport error prefixed with the socket path.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/vfolder/vfolder/meta"
)

// Values of the "deleted" query parameter of GET /v1/folders.
const (
	DeletedExclude = ""        // live folders only
	DeletedInclude = "include" // live and trashed folders
	DeletedOnly    = "only"    // trashed (not live) folders only
)

// DefaultTimeout bounds one call when the caller's context has no deadline.
const DefaultTimeout = 2 * time.Minute

// maxErrorBody bounds how much of an error response is read.
const maxErrorBody = 64 << 10

// ErrUnreachable is matched (errors.Is) by every *UnreachableError.
var ErrUnreachable = errors.New("vfolderd is unreachable")

// UnreachableError reports that the daemon's socket could not be connected.
type UnreachableError struct {
	Socket string
	Err    error // the dial error
}

func (e *UnreachableError) Error() string {
	if errors.Is(e.Err, syscall.EACCES) || errors.Is(e.Err, syscall.EPERM) {
		return fmt.Sprintf("cannot reach vfolderd at %s: permission denied (run as root or as a member of the admin group)", e.Socket)
	}
	return fmt.Sprintf("cannot reach vfolderd at %s: is it running?", e.Socket)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrUnreachable) true.
func (e *UnreachableError) Is(target error) bool { return target == ErrUnreachable }

// Client calls vfolderd's API over its unix socket, or over its TLS
// listener (NewTLSClient).
type Client struct {
	// Socket is the daemon's socket path (for a TLS client, its URL); it
	// names the daemon in error messages.
	Socket string
	// BaseURL is the TLS listener's https://HOST:PORT; "" for the socket.
	BaseURL string
	// HTTP is the underlying client; its transport dials Socket.
	HTTP *http.Client
	// Timeout bounds each call whose context has no deadline; 0 means
	// DefaultTimeout, a negative value means no bound.
	Timeout time.Duration
}

// NewClient returns a client of the daemon listening on socket.
func NewClient(socket string) *Client {
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, "unix", socket)
		},
		MaxIdleConns:          16,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       30 * time.Second,
		ResponseHeaderTimeout: 0, // bounded by the call's context instead
		DisableCompression:    true,
	}
	return &Client{
		Socket: socket,
		HTTP: &http.Client{
			Transport: tr,
			// A redirect is never part of the API: report it as is.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

// CloseIdleConnections closes the client's idle connections.
func (c *Client) CloseIdleConnections() { c.HTTP.CloseIdleConnections() }

// ListFoldersOptions filters ListFolders. Zero fields match anything.
type ListFoldersOptions struct {
	Owner   meta.ScopeID // zero value: every owner
	Volume  string
	Deleted string // DeletedExclude, DeletedInclude or DeletedOnly
}

// Health calls GET /v1/health.
func (c *Client) Health(ctx context.Context) (Health, error) {
	var h Health
	err := c.do(ctx, http.MethodGet, "/health", nil, nil, &h)
	return h, err
}

// Nodes calls GET /v1/nodes.
func (c *Client) Nodes(ctx context.Context) ([]Node, error) {
	var n []Node
	err := c.do(ctx, http.MethodGet, "/nodes", nil, nil, &n)
	return n, err
}

// Volumes calls GET /v1/volumes.
func (c *Client) Volumes(ctx context.Context) ([]Volume, error) {
	var v []Volume
	err := c.do(ctx, http.MethodGet, "/volumes", nil, nil, &v)
	return v, err
}

// ListFolders calls GET /v1/folders.
func (c *Client) ListFolders(ctx context.Context, opt ListFoldersOptions) ([]Folder, error) {
	q := url.Values{}
	if !opt.Owner.IsZero() {
		q.Set("owner", opt.Owner.String())
	}
	if opt.Volume != "" {
		q.Set("volume", opt.Volume)
	}
	if opt.Deleted != "" {
		q.Set("deleted", opt.Deleted)
	}
	var f []Folder
	err := c.do(ctx, http.MethodGet, "/folders", q, nil, &f)
	return f, err
}

// CreateFolder calls POST /v1/folders.
func (c *Client) CreateFolder(ctx context.Context, req CreateFolderRequest) (Folder, error) {
	var f Folder
	err := c.do(ctx, http.MethodPost, "/folders", nil, req, &f)
	return f, err
}

// Folder calls GET /v1/folders/{ref}. ref is an id, or a name of owner's
// folder (owner may be the zero value when ref is an id).
func (c *Client) Folder(ctx context.Context, ref string, owner meta.ScopeID) (Folder, error) {
	var f Folder
	err := c.folderCall(ctx, http.MethodGet, ref, "", owner, nil, &f)
	return f, err
}

// RenameFolder calls POST /v1/folders/{ref}/rename.
func (c *Client) RenameFolder(ctx context.Context, ref string, owner meta.ScopeID, newName string) (Folder, error) {
	var f Folder
	err := c.folderCall(ctx, http.MethodPost, ref, "/rename", owner, RenameRequest{NewName: newName}, &f)
	return f, err
}

// TrashFolder calls POST /v1/folders/{ref}/trash.
func (c *Client) TrashFolder(ctx context.Context, ref string, owner meta.ScopeID) (Folder, error) {
	var f Folder
	err := c.folderCall(ctx, http.MethodPost, ref, "/trash", owner, nil, &f)
	return f, err
}

// RestoreFolder calls POST /v1/folders/{ref}/restore.
func (c *Client) RestoreFolder(ctx context.Context, ref string, owner meta.ScopeID) (Folder, error) {
	var f Folder
	err := c.folderCall(ctx, http.MethodPost, ref, "/restore", owner, nil, &f)
	return f, err
}

// PurgeFolder calls POST /v1/folders/{ref}/purge; confirm must be the
// folder's exact name.
func (c *Client) PurgeFolder(ctx context.Context, ref string, owner meta.ScopeID, confirm string) (Folder, error) {
	var f Folder
	err := c.folderCall(ctx, http.MethodPost, ref, "/purge", owner, PurgeRequest{Confirm: confirm}, &f)
	return f, err
}

// FolderUsage calls GET /v1/folders/{ref}/usage.
func (c *Client) FolderUsage(ctx context.Context, ref string, owner meta.ScopeID) (FolderUsage, error) {
	var u FolderUsage
	err := c.folderCall(ctx, http.MethodGet, ref, "/usage", owner, nil, &u)
	return u, err
}

// QuotaScope calls GET /v1/quota-scopes/{volume}/{scope}.
func (c *Client) QuotaScope(ctx context.Context, volume string, scope meta.ScopeID) (QuotaScope, error) {
	var s QuotaScope
	err := c.scopeCall(ctx, http.MethodGet, volume, scope, "", nil, &s)
	return s, err
}

// SetQuotaScope calls PUT /v1/quota-scopes/{volume}/{scope}.
func (c *Client) SetQuotaScope(ctx context.Context, volume string, scope meta.ScopeID, req SetQuotaRequest) (QuotaScope, error) {
	var s QuotaScope
	err := c.scopeCall(ctx, http.MethodPut, volume, scope, "", req, &s)
	return s, err
}

// UnsetQuotaScope calls DELETE /v1/quota-scopes/{volume}/{scope}.
func (c *Client) UnsetQuotaScope(ctx context.Context, volume string, scope meta.ScopeID) (QuotaScope, error) {
	var s QuotaScope
	err := c.scopeCall(ctx, http.MethodDelete, volume, scope, "", nil, &s)
	return s, err
}

// CheckQuotaScope calls POST /v1/quota-scopes/{volume}/{scope}/check. A
// check walks every folder of the scope: give ctx a deadline (or the
// client a Timeout) that allows for it.
func (c *Client) CheckQuotaScope(ctx context.Context, volume string, scope meta.ScopeID, req QuotaCheckRequest) (QuotaCheck, error) {
	var r QuotaCheck
	err := c.scopeCall(ctx, http.MethodPost, volume, scope, "/check", req, &r)
	return r, err
}

// Policy calls GET /v1/policies/{owner}.
func (c *Client) Policy(ctx context.Context, owner meta.ScopeID) (Policy, error) {
	var p Policy
	err := c.policyCall(ctx, http.MethodGet, owner, nil, &p)
	return p, err
}

// SetPolicy calls PUT /v1/policies/{owner}.
func (c *Client) SetPolicy(ctx context.Context, owner meta.ScopeID, p Policy) (Policy, error) {
	var out Policy
	err := c.policyCall(ctx, http.MethodPut, owner, p, &out)
	return out, err
}

// ViewFilter selects views in Views. Key needs Namespace.
type ViewFilter struct {
	Namespace string // NSSessions, NSUsers, NSProjects or "" for all
	Key       string // session id or owner uuid; "" for all
}

// Views calls GET /v1/views.
func (c *Client) Views(ctx context.Context, f ViewFilter) ([]View, error) {
	if f.Key != "" && f.Namespace == "" {
		return nil, invalidArg("a view key (%q) needs a namespace", f.Key)
	}
	q := url.Values{}
	if f.Namespace != "" {
		q.Set("namespace", f.Namespace)
	}
	if f.Key != "" {
		q.Set("key", f.Key)
	}
	var v []View
	err := c.do(ctx, http.MethodGet, "/views", q, nil, &v)
	return v, err
}

// AddView calls POST /v1/views. Adding a view that exists with the same
// settings succeeds and returns it.
func (c *Client) AddView(ctx context.Context, req CreateViewRequest) (View, error) {
	var v View
	err := c.do(ctx, http.MethodPost, "/views", nil, req, &v)
	return v, err
}

// RemoveView calls DELETE /v1/views/sessions/{session}/{name} and returns
// the removed view.
func (c *Client) RemoveView(ctx context.Context, session, name string) (View, error) {
	if err := checkSegment("session id", session); err != nil {
		return View{}, err
	}
	if err := checkSegment("view name", name); err != nil {
		return View{}, err
	}
	var v View
	err := c.do(ctx, http.MethodDelete, "/views/sessions/"+url.PathEscape(session)+"/"+url.PathEscape(name), nil, nil, &v)
	return v, err
}

// Members calls GET /v1/projects/{project}/members.
func (c *Client) Members(ctx context.Context, project string) ([]Membership, error) {
	if err := checkSegment("project", project); err != nil {
		return nil, err
	}
	var m []Membership
	err := c.do(ctx, http.MethodGet, "/projects/"+url.PathEscape(project)+"/members", nil, nil, &m)
	return m, err
}

// SetMember calls PUT /v1/projects/{project}/members/{user}; perm "" means
// each folder's own permission.
func (c *Client) SetMember(ctx context.Context, project, user string, perm meta.Permission) (Membership, error) {
	var m Membership
	err := c.memberCall(ctx, http.MethodPut, project, user, SetMemberRequest{Permission: perm}, &m)
	return m, err
}

// RemoveMember calls DELETE /v1/projects/{project}/members/{user} and
// returns the removed membership.
func (c *Client) RemoveMember(ctx context.Context, project, user string) (Membership, error) {
	var m Membership
	err := c.memberCall(ctx, http.MethodDelete, project, user, nil, &m)
	return m, err
}

func (c *Client) memberCall(ctx context.Context, method, project, user string, body, out any) error {
	if err := checkSegment("project", project); err != nil {
		return err
	}
	if err := checkSegment("user", user); err != nil {
		return err
	}
	return c.do(ctx, method, "/projects/"+url.PathEscape(project)+"/members/"+url.PathEscape(user), nil, body, out)
}

// Sessions calls GET /v1/sessions.
func (c *Client) Sessions(ctx context.Context) ([]Session, error) {
	var s []Session
	err := c.do(ctx, http.MethodGet, "/sessions", nil, nil, &s)
	return s, err
}

// Session calls GET /v1/sessions/{session}.
func (c *Client) Session(ctx context.Context, session string) (Session, error) {
	var s Session
	err := c.sessionCall(ctx, http.MethodGet, session, "", nil, &s)
	return s, err
}

// Publish calls POST /v1/sessions/{session}/publish.
func (c *Client) Publish(ctx context.Context, session string, req PublishRequest) (Session, error) {
	var s Session
	err := c.sessionCall(ctx, http.MethodPost, session, "/publish", req, &s)
	return s, err
}

// Attach calls POST /v1/sessions/{session}/attach.
func (c *Client) Attach(ctx context.Context, session string, pid int) (Session, error) {
	var s Session
	err := c.sessionCall(ctx, http.MethodPost, session, "/attach", AttachRequest{PID: pid}, &s)
	return s, err
}

// Unpublish calls POST /v1/sessions/{session}/unpublish. The daemon
// answers 200 also when it could not remove everything: see Problems.
func (c *Client) Unpublish(ctx context.Context, session string) (UnpublishResult, error) {
	var r UnpublishResult
	err := c.sessionCall(ctx, http.MethodPost, session, "/unpublish", nil, &r)
	return r, err
}

func (c *Client) sessionCall(ctx context.Context, method, session, suffix string, body, out any) error {
	if err := checkSegment("session id", session); err != nil {
		return err
	}
	return c.do(ctx, method, "/sessions/"+url.PathEscape(session)+suffix, nil, body, out)
}

// checkSegment refuses path segments that cannot be sent.
func checkSegment(what, v string) error {
	if v == "" || v == "." || v == ".." {
		return invalidArg("%s %q is not valid", what, v)
	}
	return nil
}

func invalidArg(format string, args ...any) *Error {
	return &Error{Code: CodeInvalid, Message: fmt.Sprintf(format, args...)}
}

func (c *Client) folderCall(ctx context.Context, method, ref, suffix string, owner meta.ScopeID, body, out any) error {
	switch {
	case ref == "":
		return invalidArg("folder reference is empty: give a folder id or name")
	case ref == "." || ref == "..":
		return invalidArg("%q is not a folder id or name", ref)
	}
	var q url.Values
	if !owner.IsZero() {
		q = url.Values{"owner": {owner.String()}}
	}
	return c.do(ctx, method, "/folders/"+url.PathEscape(ref)+suffix, q, body, out)
}

func (c *Client) scopeCall(ctx context.Context, method, volume string, scope meta.ScopeID, suffix string, body, out any) error {
	if err := checkSegment("volume name", volume); err != nil {
		return err
	}
	if scope.IsZero() {
		return invalidArg("quota scope id is empty")
	}
	return c.do(ctx, method, "/quota-scopes/"+url.PathEscape(volume)+"/"+url.PathEscape(scope.String())+suffix, nil, body, out)
}

func (c *Client) policyCall(ctx context.Context, method string, owner meta.ScopeID, body, out any) error {
	if owner.IsZero() {
		return invalidArg("policy owner is empty")
	}
	return c.do(ctx, method, "/policies/"+url.PathEscape(owner.String()), nil, body, out)
}

// do performs one call: path is relative to /v1 and already escaped.
func (c *Client) do(ctx context.Context, method, path string, q url.Values, body, out any) error {
	if _, ok := ctx.Deadline(); !ok && c.Timeout >= 0 {
		t := c.Timeout
		if t == 0 {
			t = DefaultTimeout
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t)
		defer cancel()
	}
	base := c.BaseURL
	if base == "" {
		base = "http://vfolderd"
	}
	u := base + "/" + Version + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encoding request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return fmt.Errorf("building request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return c.transportError(err)
	}
	defer resp.Body.Close()

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return decodeError(resp)
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		if ctx.Err() != nil {
			return c.transportError(ctx.Err())
		}
		return fmt.Errorf("vfolderd at %s sent an unreadable %s %s response: %w", c.Socket, method, "/"+Version+path, err)
	}
	return nil
}

func (c *Client) transportError(err error) error {
	for _, e := range []syscall.Errno{syscall.ENOENT, syscall.ECONNREFUSED, syscall.EACCES, syscall.EPERM, syscall.ENOTDIR, syscall.ENOTSOCK} {
		if errors.Is(err, e) {
			return &UnreachableError{Socket: c.Socket, Err: err}
		}
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // the method and URL say nothing useful to a user
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("vfolderd at %s did not answer in time: %w", c.Socket, err)
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("call to vfolderd at %s canceled: %w", c.Socket, err)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return fmt.Errorf("vfolderd at %s closed the connection before answering (did it stop?): %w", c.Socket, err)
	}
	return fmt.Errorf("vfolderd at %s: %w", c.Socket, err)
}

// codeForStatus is the error code a status travels with, for error bodies
// that carry none.
func codeForStatus(status int) string {
	switch {
	case status == http.StatusBadRequest:
		return CodeInvalid
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return CodeForbidden
	case status == http.StatusNotFound:
		return CodeNotFound
	case status == http.StatusConflict:
		return CodeConflict
	case status == http.StatusUnprocessableEntity:
		return CodeLimitExceeded
	case status == http.StatusServiceUnavailable:
		return CodeUnavailable
	case status >= 400 && status < 500:
		return CodeInvalid
	default:
		return CodeInternal
	}
}

func decodeError(resp *http.Response) *Error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
	var e Error
	if err := json.Unmarshal(b, &e); err == nil && e.Message != "" {
		if e.Code == "" {
			e.Code = codeForStatus(resp.StatusCode)
		}
		return &e
	}
	msg := fmt.Sprintf("vfolderd answered %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	if t := strings.TrimSpace(string(b)); t != "" && !strings.HasPrefix(t, "{") {
		if len(t) > 200 {
			t = t[:200] + "..."
		}
		msg += ": " + t
	}
	return &Error{Code: codeForStatus(resp.StatusCode), Message: msg}
}
