package api

import (
	"context"
	"net/http"
	"net/url"
)

// SSHKeys calls GET /v1/users/{user}/ssh-keys.
func (c *Client) SSHKeys(ctx context.Context, user string) ([]SSHKey, error) {
	var out []SSHKey
	err := c.sshKeyCall(ctx, http.MethodGet, user, "", nil, &out)
	return out, err
}

// AddSSHKey calls POST /v1/users/{user}/ssh-keys.
func (c *Client) AddSSHKey(ctx context.Context, user string, req AddSSHKeyRequest) (SSHKey, error) {
	var out SSHKey
	err := c.sshKeyCall(ctx, http.MethodPost, user, "", req, &out)
	return out, err
}

// RemoveSSHKey calls DELETE /v1/users/{user}/ssh-keys/{id}; id is the
// key's ID (hex), see SSHKey.
func (c *Client) RemoveSSHKey(ctx context.Context, user, id string) (SSHKey, error) {
	if err := checkSegment("key id", id); err != nil {
		return SSHKey{}, err
	}
	var out SSHKey
	err := c.sshKeyCall(ctx, http.MethodDelete, user, "/"+url.PathEscape(id), nil, &out)
	return out, err
}

func (c *Client) sshKeyCall(ctx context.Context, method, user, suffix string, body, out any) error {
	if err := checkSegment("user", user); err != nil {
		return err
	}
	return c.do(ctx, method, "/users/"+url.PathEscape(user)+"/ssh-keys"+suffix, nil, body, out)
}
