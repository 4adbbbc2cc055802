package api

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/vfolder/vfolder/meta"
)

// TestClientViewRequests checks the view calls' method, path, query and
// body, and that answers are decoded.
func TestClientViewRequests(t *testing.T) {
	view := View{Namespace: NSSessions, Key: "sess-1", Name: "work", FolderID: strings.Repeat("a", 32), Volume: "local",
		Subpath: "in/data", Mode: meta.PermRO, UID: 1000, GID: 1000, Path: "/run/vfolder/mnt/sessions/sess-1/work"}
	var answer any
	d := startFake(t, func(w http.ResponseWriter, r *http.Request) {
		status := http.StatusOK
		if r.Method == http.MethodPost {
			status = http.StatusCreated
		}
		writeJSON(w, status, answer)
	})
	c := NewClient(d.socket)
	ctx := context.Background()
	uid, gid := uint32(0), uint32(5)
	owner := testUser

	runRequestCases(t, d, &answer, []requestCase{
		{"list all", []View{view}, func() (any, error) { return c.Views(ctx, ViewFilter{}) },
			recorded{Method: "GET", Path: "/v1/views"}},
		{"list session", []View{view}, func() (any, error) { return c.Views(ctx, ViewFilter{Namespace: NSSessions, Key: "sess-1"}) },
			recorded{Method: "GET", Path: "/v1/views", Query: "key=sess-1&namespace=sessions"}},
		{"add by id", view, func() (any, error) {
			return c.AddView(ctx, CreateViewRequest{Session: "sess-1", Name: "work", Folder: view.FolderID, Mode: meta.PermRO})
		}, recorded{Method: "POST", Path: "/v1/views",
			Body: `{"session":"sess-1","name":"work","folder":"` + view.FolderID + `","mode":"ro"}`}},
		{"add by name", view, func() (any, error) {
			return c.AddView(ctx, CreateViewRequest{Session: "sess-1", Name: "work", Folder: "data", Owner: &owner, Subpath: "in/data", UID: &uid, GID: &gid})
		}, recorded{Method: "POST", Path: "/v1/views",
			Body: `{"session":"sess-1","name":"work","folder":"data","owner":"user:0123456789abcdef0123456789abcdef","subpath":"in/data","uid":0,"gid":5}`}},
		{"remove", view, func() (any, error) { return c.RemoveView(ctx, "sess-1", "my work") },
			recorded{Method: "DELETE", Path: "/v1/views/sessions/sess-1/my%20work"}},
	})

	// Arguments that cannot make a request fail before one is sent.
	expectRefused(t, d, map[string]func() error{
		"key without namespace": func() error { _, err := c.Views(ctx, ViewFilter{Key: "s"}); return err },
		"empty session":         func() error { _, err := c.RemoveView(ctx, "", "x"); return err },
		"dot name":              func() error { _, err := c.RemoveView(ctx, "s", ".."); return err },
	})
}
