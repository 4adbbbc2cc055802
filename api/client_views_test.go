package api

import (
	"context"
	"errors"
	"net/http"
	"reflect"
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

	cases := []struct {
		name   string
		answer any
		call   func() (any, error)
		want   recorded
	}{
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
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			answer = tc.answer
			got, err := tc.call()
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !reflect.DeepEqual(got, tc.answer) {
				t.Errorf("decoded %#v, want %#v", got, tc.answer)
			}
			req := d.last()
			req.Body = strings.TrimSpace(req.Body)
			if req != tc.want {
				t.Errorf("request\n got %+v\nwant %+v", req, tc.want)
			}
		})
	}

	// Arguments that cannot make a request fail before one is sent.
	n := d.count()
	for name, call := range map[string]func() error{
		"key without namespace": func() error { _, err := c.Views(ctx, ViewFilter{Key: "s"}); return err },
		"empty session":         func() error { _, err := c.RemoveView(ctx, "", "x"); return err },
		"dot name":              func() error { _, err := c.RemoveView(ctx, "s", ".."); return err },
	} {
		var ae *Error
		if err := call(); !errors.As(err, &ae) || ae.Code != CodeInvalid {
			t.Errorf("%s: %v; want an invalid-argument error", name, err)
		}
	}
	if d.count() != n {
		t.Errorf("invalid arguments reached the daemon")
	}
}
