package api

// Client calls of sharing (see sharing.go for the types and
// internal/server/sharing.go for the routes).

import (
	"context"
	"net/http"
	"net/url"

	"github.com/vfolder/vfolder/meta"
)

// Invite calls POST /v1/invitations.
func (c *Client) Invite(ctx context.Context, req InviteRequest) (Invitation, error) {
	var inv Invitation
	err := c.do(ctx, http.MethodPost, "/invitations", nil, req, &inv)
	return inv, err
}

// SettleInvitation calls POST /v1/invitations/{id}/{action}; action is
// "accept", "reject" or "cancel", user the invitee (accept, reject) or
// the inviter (cancel), or "" for no check.
func (c *Client) SettleInvitation(ctx context.Context, id, action, user string) (Invitation, error) {
	if err := checkSegment("invitation id", id); err != nil {
		return Invitation{}, err
	}
	if err := checkSegment("invitation action", action); err != nil {
		return Invitation{}, err
	}
	var inv Invitation
	err := c.do(ctx, http.MethodPost, "/invitations/"+url.PathEscape(id)+"/"+url.PathEscape(action), nil, InvitationActionRequest{User: user}, &inv)
	return inv, err
}

func (c *Client) userCall(ctx context.Context, method, user, suffix string, body, out any) error {
	if err := checkSegment("user", user); err != nil {
		return err
	}
	return c.do(ctx, method, "/users/"+url.PathEscape(user)+suffix, nil, body, out)
}

// Invitations calls GET /v1/users/{user}/invitations.
func (c *Client) Invitations(ctx context.Context, user string) ([]Invitation, error) {
	var is []Invitation
	err := c.userCall(ctx, http.MethodGet, user, "/invitations", nil, &is)
	return is, err
}

// Reach calls GET /v1/users/{user}/reach.
func (c *Client) Reach(ctx context.Context, user string) ([]ReachedFolder, error) {
	var fs []ReachedFolder
	err := c.userCall(ctx, http.MethodGet, user, "/reach", nil, &fs)
	return fs, err
}

// UserStatus calls GET /v1/users/{user}/status.
func (c *Client) UserStatus(ctx context.Context, user string) (UserStatus, error) {
	var st UserStatus
	err := c.userCall(ctx, http.MethodGet, user, "/status", nil, &st)
	return st, err
}

// Leave calls POST /v1/users/{user}/leave: the user gives up an invited
// folder (its id, or its name in the user's folders).
func (c *Client) Leave(ctx context.Context, user, folder string) (Share, error) {
	var sh Share
	err := c.userCall(ctx, http.MethodPost, user, "/leave", LeaveRequest{Folder: folder}, &sh)
	return sh, err
}

// Shares calls GET /v1/folders/{ref}/shares.
func (c *Client) Shares(ctx context.Context, ref string, owner meta.ScopeID) ([]Share, error) {
	var ss []Share
	err := c.folderCall(ctx, http.MethodGet, ref, "/shares", owner, nil, &ss)
	return ss, err
}

// SetShare calls POST /v1/folders/{ref}/shares.
func (c *Client) SetShare(ctx context.Context, ref string, owner meta.ScopeID, req ShareRequest) (Share, error) {
	var sh Share
	err := c.folderCall(ctx, http.MethodPost, ref, "/shares", owner, req, &sh)
	return sh, err
}

// Unshare calls DELETE /v1/folders/{ref}/shares/{user} and returns the
// removed share.
func (c *Client) Unshare(ctx context.Context, ref string, owner meta.ScopeID, user string) (Share, error) {
	if err := checkSegment("user", user); err != nil {
		return Share{}, err
	}
	var sh Share
	err := c.folderCall(ctx, http.MethodDelete, ref, "/shares/"+url.PathEscape(user), owner, nil, &sh)
	return sh, err
}
