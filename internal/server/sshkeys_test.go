package server

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net/http"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/vfolder/vfolder/api"
)

func TestSSHKeyRoutes(t *testing.T) {
	ts := start(t, "", -1)
	c := api.NewClient(ts.socket)
	defer c.CloseIdleConnections()
	ctx := context.Background()
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp))) + " me@host"
	user := strings.TrimPrefix(alice, "user:")

	k, err := c.AddSSHKey(ctx, user, api.AddSSHKeyRequest{Key: line})
	if err != nil {
		t.Fatal(err)
	}
	if k.Fingerprint != ssh.FingerprintSHA256(sp) || k.Comment != "me@host" || k.User != user {
		t.Errorf("added %+v", k)
	}
	var ae *api.Error
	if _, err := c.AddSSHKey(ctx, user, api.AddSSHKeyRequest{Key: line}); !errors.As(err, &ae) || ae.Code != api.CodeExists {
		t.Errorf("adding a key twice: %v", err)
	}
	if _, err := c.AddSSHKey(ctx, user, api.AddSSHKeyRequest{Key: "not a key"}); !errors.As(err, &ae) || ae.Code != api.CodeInvalid {
		t.Errorf("adding garbage: %v", err)
	}
	if _, err := c.AddSSHKey(ctx, "bob", api.AddSSHKeyRequest{Key: line}); !errors.As(err, &ae) || ae.Code != api.CodeInvalid {
		t.Errorf("a user that is no UUID: %v", err)
	}
	ks, err := c.SSHKeys(ctx, user)
	if err != nil || len(ks) != 1 || ks[0].ID != k.ID {
		t.Errorf("list = %+v, %v", ks, err)
	}
	// Unknown body fields are refused like everywhere in the API.
	ts.fail(t, http.MethodPost, "/v1/users/"+user+"/ssh-keys", map[string]string{"key": line, "options": "x"}, http.StatusBadRequest, api.CodeInvalid)
	if _, err := c.RemoveSSHKey(ctx, user, k.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RemoveSSHKey(ctx, user, k.ID); !errors.As(err, &ae) || ae.Code != api.CodeNotFound {
		t.Errorf("removing twice: %v", err)
	}
	var empty []api.SSHKey
	ts.ok(t, http.MethodGet, "/v1/users/"+user+"/ssh-keys", nil, &empty, http.StatusOK)
	if empty == nil || len(empty) != 0 {
		t.Errorf("list after removal = %#v, want []", empty)
	}
}
