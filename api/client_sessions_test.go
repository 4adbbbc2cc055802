package api

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vfolder/vfolder/meta"
)

// TestClientSessionRequests checks the membership and session calls'
// method, path and body, and that answers are decoded.
func TestClientSessionRequests(t *testing.T) {
	var answer any
	d := startFake(t, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, answer) })
	c := NewClient(d.socket)
	ctx := context.Background()
	p, u := testProject.UUID, testUser.UUID
	member := Membership{Project: p, User: u, Permission: meta.PermRO}
	sess := Session{ID: "s 1", User: u, UID: 1000, GID: 1000, Mounts: []PublishedMount{{
		Name: "data", FolderID: strings.Repeat("a", 32), Target: "/home/work/data", Mode: meta.PermRW, HostPath: "/run/vfolder/sessions/s 1/data",
		OCI: OCIMount{Destination: "/home/work/data", Type: "bind", Source: "/run/vfolder/sessions/s 1/data", Options: []string{"rbind", "rslave"}}}},
		Reserved:  []ReservedTarget{{Name: "late~01234567", Target: "/home/work/late", HostPath: "/run/vfolder/sessions/s 1/late~01234567"}},
		CreatedAt: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC), UpdatedAt: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)}
	uid := uint32(1000)
	no := false

	runRequestCases(t, d, &answer, []requestCase{
		{"members", []Membership{member}, func() (any, error) { return c.Members(ctx, p) },
			recorded{Method: "GET", Path: "/v1/projects/" + p + "/members"}},
		{"set member", member, func() (any, error) { return c.SetMember(ctx, p, u, meta.PermRO) },
			recorded{Method: "PUT", Path: "/v1/projects/" + p + "/members/" + u, Body: `{"permission":"ro"}`}},
		{"set member plain", member, func() (any, error) { return c.SetMember(ctx, p, u, "") },
			recorded{Method: "PUT", Path: "/v1/projects/" + p + "/members/" + u, Body: `{}`}},
		{"remove member", member, func() (any, error) { return c.RemoveMember(ctx, p, u) },
			recorded{Method: "DELETE", Path: "/v1/projects/" + p + "/members/" + u}},
		{"sessions", []Session{sess}, func() (any, error) { return c.Sessions(ctx) },
			recorded{Method: "GET", Path: "/v1/sessions"}},
		{"session", sess, func() (any, error) { return c.Session(ctx, "s 1") },
			recorded{Method: "GET", Path: "/v1/sessions/s%201"}},
		{"publish", sess, func() (any, error) {
			return c.Publish(ctx, "s 1", PublishRequest{User: u, UID: &uid, GID: &uid, Automount: &no,
				Mounts: []MountRequest{{Folder: "data/sub", Target: "/w", Mode: meta.PermRO}}, Reserve: []string{"late"}})
		}, recorded{Method: "POST", Path: "/v1/sessions/s%201/publish",
			Body: `{"user":"` + u + `","uid":1000,"gid":1000,"mounts":[{"folder":"data/sub","target":"/w","mode":"ro"}],"automount":false,"reserve":["late"]}`}},
		{"attach", sess, func() (any, error) { return c.Attach(ctx, "s 1", 4242) },
			recorded{Method: "POST", Path: "/v1/sessions/s%201/attach", Body: `{"pid":4242}`}},
		{"unpublish", UnpublishResult{Session: "s 1", Removed: sess.Mounts, Problems: []string{"still mounted: x"}},
			func() (any, error) { return c.Unpublish(ctx, "s 1") },
			recorded{Method: "POST", Path: "/v1/sessions/s%201/unpublish"}},
	})

	expectRefused(t, d, map[string]func() error{
		"empty project": func() error { _, err := c.Members(ctx, ""); return err },
		"dot user":      func() error { _, err := c.SetMember(ctx, p, "..", ""); return err },
		"empty session": func() error { _, err := c.Publish(ctx, "", PublishRequest{}); return err },
		"dot session":   func() error { _, err := c.Unpublish(ctx, "."); return err },
	})
}
