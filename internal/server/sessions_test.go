package server

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/vfolder/vfolder/api"
	vfs "github.com/vfolder/vfolder/fs"
	"github.com/vfolder/vfolder/internal/service"
	"github.com/vfolder/vfolder/meta"
)

// memMounts is a stand-in for the host side of sessions: it records what
// is published where.
type memMounts struct {
	mu       sync.Mutex
	root     string
	keys     map[string]map[string]string // sid -> key -> "placeholder" or "ro|rw source"
	attached []string
}

func (m *memMounts) set(sid, key, v string) {
	if m.keys[sid] == nil {
		m.keys[sid] = map[string]string{}
	}
	m.keys[sid][key] = v
}

func (m *memMounts) Reserve(sid, key string) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.keys[sid][key] == "" {
		m.set(sid, key, "placeholder")
	}
	return m.HostPath(sid, key), nil
}

func (m *memMounts) Publish(sid, key, source string, ro bool) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v := "rw " + source
	if ro {
		v = "ro " + source
	}
	m.set(sid, key, v)
	return m.HostPath(sid, key), nil
}

func (m *memMounts) Unpublish(sid string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.keys, sid)
	return nil
}

func (m *memMounts) Withdraw(sid, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.keys[sid], key)
	return nil
}

func (m *memMounts) Attach(pid int, hostPath, target string, ro bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.attached = append(m.attached, hostPath+" "+target)
	return nil
}

func (m *memMounts) HostPath(sid, key string) string { return filepath.Join(m.root, sid, key) }

func (m *memMounts) Sessions() ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for sid := range m.keys {
		out = append(out, sid)
	}
	return out, nil
}

func (m *memMounts) Placeholders(sid string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for k, v := range m.keys[sid] {
		if v == "placeholder" {
			out = append(out, k)
		}
	}
	return out, nil
}

func (m *memMounts) Close() error { return nil }

const (
	aliceUUID   = "2b1a7c4e5d3f4a8e9c0b1f2e3d4c5b6a"
	projectUUID = "4d3c9e6a7f5b6cafbe2d3b4a5f6e7d8c"
)

func TestMembers(t *testing.T) {
	ts := start(t, "", -1)
	var m api.Membership
	ts.ok(t, "PUT", "/v1/projects/"+meta.DashedUUID(projectUUID)+"/members/"+aliceUUID, api.SetMemberRequest{Permission: meta.PermRO}, &m, 200)
	if m.Project != projectUUID || m.User != aliceUUID || m.Permission != meta.PermRO {
		t.Errorf("membership %+v", m)
	}
	// No body: each folder's own permission.
	var plain api.Membership
	ts.ok(t, "PUT", "/v1/projects/"+projectUUID+"/members/"+aliceUUID, nil, &plain, 200)
	if plain.Permission != "" || plain.User != aliceUUID {
		t.Errorf("membership without a body %+v", plain)
	}
	var list []api.Membership
	ts.ok(t, "GET", "/v1/projects/"+projectUUID+"/members", nil, &list, 200)
	if len(list) != 1 || list[0].User != aliceUUID {
		t.Errorf("members %+v", list)
	}
	ts.fail(t, "PUT", "/v1/projects/"+projectUUID+"/members/"+aliceUUID, api.SetMemberRequest{Permission: "all"}, 400, api.CodeInvalid)
	ts.fail(t, "PUT", "/v1/projects/"+projectUUID+"/members/"+aliceUUID, `{"perm":"ro"}`, 400, api.CodeInvalid)
	ts.fail(t, "PUT", "/v1/projects/nope/members/"+aliceUUID, nil, 400, api.CodeInvalid)
	ts.fail(t, "GET", "/v1/projects/"+projectUUID+"/members?x=1", nil, 400, api.CodeInvalid)
	ts.ok(t, "DELETE", "/v1/projects/"+projectUUID+"/members/"+aliceUUID, nil, &m, 200)
	if m.User != aliceUUID {
		t.Errorf("removed %+v", m)
	}
	ts.fail(t, "DELETE", "/v1/projects/"+projectUUID+"/members/"+aliceUUID, nil, 404, api.CodeNotFound)
	ts.ok(t, "GET", "/v1/projects/"+projectUUID+"/members", nil, &list, 200)
	if list == nil || len(list) != 0 {
		t.Errorf("members after removal %#v; want []", list)
	}

	// Through the client.
	c := api.NewClient(ts.socket)
	defer c.CloseIdleConnections()
	ctx := context.Background()
	if m, err := c.SetMember(ctx, projectUUID, aliceUUID, meta.PermWD); err != nil || m.Permission != meta.PermWD {
		t.Errorf("client SetMember = %+v, %v", m, err)
	}
	if ms, err := c.Members(ctx, projectUUID); err != nil || len(ms) != 1 {
		t.Errorf("client Members = %+v, %v", ms, err)
	}
	if _, err := c.RemoveMember(ctx, projectUUID, aliceUUID); err != nil {
		t.Error(err)
	}
	var ae *api.Error
	if _, err := c.RemoveMember(ctx, projectUUID, aliceUUID); !errors.As(err, &ae) || ae.Code != api.CodeNotFound {
		t.Errorf("client RemoveMember twice: %v", err)
	}
}

func TestSessions(t *testing.T) {
	ts := start(t, "", -1)
	ctx := context.Background()
	pub := api.PublishRequest{User: aliceUUID, Mounts: []api.MountRequest{{Folder: "data"}}}
	ts.fail(t, "POST", "/v1/sessions/s1/publish", pub, 503, api.CodeUnavailable)
	if err := ts.svc.StartViews(ctx, &memViews{views: map[string]vfs.ViewSpec{}}); err != nil {
		t.Fatal(err)
	}
	mm := &memMounts{root: "/run/vfolder/sessions", keys: map[string]map[string]string{}}
	if err := ts.svc.StartSessions(ctx, func() (service.Mounts, error) { return mm, nil }, false); err != nil {
		t.Fatal(err)
	}
	var f api.Folder
	ts.ok(t, "POST", "/v1/folders", api.CreateFolderRequest{Name: "data", Volume: "local", Owner: mustScope(t, alice)}, &f, 201)

	var s api.Session
	ts.ok(t, "POST", "/v1/sessions/s1/publish", pub, &s, 200)
	if s.ID != "s1" || len(s.Mounts) != 1 || s.Mounts[0].FolderID != f.ID || s.Mounts[0].Target != "/home/work/data" ||
		s.Mounts[0].HostPath != "/run/vfolder/sessions/s1/data" || s.Mounts[0].OCI.Source != s.Mounts[0].HostPath {
		t.Errorf("published %+v", s)
	}
	ts.fail(t, "POST", "/v1/sessions/s1/publish", `{"user":"`+aliceUUID+`","mounts":[],"colour":1}`, 400, api.CodeInvalid)
	ts.fail(t, "POST", "/v1/sessions/s1/publish", api.PublishRequest{User: aliceUUID, Mounts: []api.MountRequest{{Folder: "data", Mode: meta.PermWD}}}, 403, api.CodeForbidden)
	ts.fail(t, "POST", "/v1/sessions/s1/publish", api.PublishRequest{User: aliceUUID, Mounts: []api.MountRequest{{Folder: "data", Target: "/proc/x"}}}, 400, api.CodeInvalid)
	e := ts.fail(t, "POST", "/v1/folders/"+f.ID+"/trash", nil, 409, api.CodeConflict)
	if !strings.Contains(e.Message, "s1") {
		t.Errorf("trash refusal %q does not name the session", e.Message)
	}
	var list []api.Session
	ts.ok(t, "GET", "/v1/sessions", nil, &list, 200)
	if len(list) != 1 || list[0].ID != "s1" {
		t.Errorf("sessions %+v", list)
	}
	ts.ok(t, "GET", "/v1/sessions/s1", nil, &s, 200)
	ts.fail(t, "GET", "/v1/sessions/nope", nil, 404, api.CodeNotFound)
	ts.fail(t, "GET", "/v1/sessions/.x", nil, 400, api.CodeInvalid)
	ts.ok(t, "POST", "/v1/sessions/s1/attach", api.AttachRequest{PID: 77}, &s, 200)
	if len(mm.attached) != 1 || mm.attached[0] != "/run/vfolder/sessions/s1/data /home/work/data" {
		t.Errorf("attached %v", mm.attached)
	}
	ts.fail(t, "POST", "/v1/sessions/s1/attach", api.AttachRequest{}, 400, api.CodeInvalid)
	ts.fail(t, "POST", "/v1/sessions/s1/attach", nil, 400, api.CodeInvalid)

	var res api.UnpublishResult
	ts.ok(t, "POST", "/v1/sessions/s1/unpublish", nil, &res, 200)
	if res.Session != "s1" || len(res.Removed) != 1 || res.Problems == nil || len(res.Problems) != 0 {
		t.Errorf("unpublish %+v", res)
	}
	ts.ok(t, "POST", "/v1/sessions/s1/unpublish", "{}", &res, 200)
	ts.ok(t, "POST", "/v1/folders/"+f.ID+"/trash", nil, nil, 200)

	// Through the client.
	c := api.NewClient(ts.socket)
	defer c.CloseIdleConnections()
	var g api.Folder
	ts.ok(t, "POST", "/v1/folders", api.CreateFolderRequest{Name: "g", Volume: "local", Owner: mustScope(t, alice)}, &g, 201)
	got, err := c.Publish(ctx, "s2", api.PublishRequest{User: aliceUUID, Mounts: []api.MountRequest{{Folder: "g", Mode: meta.PermRO}}, Reserve: []string{"late"}})
	if err != nil || len(got.Mounts) != 1 || got.Mounts[0].Mode != meta.PermRO || len(got.Reserved) != 1 || got.Reserved[0].Target != "/home/work/late" {
		t.Errorf("client Publish = %+v, %v", got, err)
	}
	if ss, err := c.Sessions(ctx); err != nil || len(ss) != 1 {
		t.Errorf("client Sessions = %+v, %v", ss, err)
	}
	if s, err := c.Session(ctx, "s2"); err != nil || s.ID != "s2" {
		t.Errorf("client Session = %+v, %v", s, err)
	}
	if _, err := c.Attach(ctx, "s2", 5); err != nil {
		t.Errorf("client Attach: %v", err)
	}
	if r, err := c.Unpublish(ctx, "s2"); err != nil || len(r.Removed) != 1 {
		t.Errorf("client Unpublish = %+v, %v", r, err)
	}
	var ae *api.Error
	if _, err := c.Session(ctx, ".."); !errors.As(err, &ae) || ae.Code != api.CodeInvalid {
		t.Errorf("client with session \"..\": %v", err)
	}
}
