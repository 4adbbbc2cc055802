package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/vfolder/vfolder/api"
	vfs "github.com/vfolder/vfolder/fs"
	"github.com/vfolder/vfolder/meta"
)

// memViews is a stand-in for the FUSE namespace (service.Views) with the
// contract of fs.FS: identical adds succeed, another spec at a taken place
// is ErrExists, a missing directory ErrNotFound.
type memViews struct {
	mu    sync.Mutex
	views map[string]vfs.ViewSpec
}

func key(ns, k, name string) string { return ns + "/" + k + "/" + name }

func (m *memViews) AddView(sp vfs.ViewSpec) error {
	if _, err := os.Stat(filepath.Join(sp.VolumePath, sp.FolderRel, sp.Subpath)); err != nil {
		return fmt.Errorf("%w: %v", meta.ErrNotFound, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	k := key(sp.Namespace, sp.Key, sp.Name)
	if old, ok := m.views[k]; ok {
		if old == sp {
			return nil
		}
		return fmt.Errorf("%w: %s is taken", meta.ErrExists, k)
	}
	m.views[k] = sp
	return nil
}

func (m *memViews) RemoveView(ns, k, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.views[key(ns, k, name)]; !ok {
		return meta.ErrNotFound
	}
	delete(m.views, key(ns, k, name))
	return nil
}

func (m *memViews) Views() []vfs.ViewSpec {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []vfs.ViewSpec
	for _, v := range m.views {
		out = append(out, v)
	}
	return out
}

func TestViews(t *testing.T) {
	ts := start(t, "", -1)
	ctx := context.Background()
	ts.fail(t, "GET", "/v1/views", nil, 503, api.CodeUnavailable)
	ts.fail(t, "POST", "/v1/views", api.CreateViewRequest{Session: "s1", Name: "w", Folder: strings.Repeat("a", 32)}, 503, api.CodeUnavailable)
	if err := ts.svc.StartViews(ctx, &memViews{views: map[string]vfs.ViewSpec{}}); err != nil {
		t.Fatal(err)
	}

	var f, ro api.Folder
	ts.ok(t, "POST", "/v1/folders", api.CreateFolderRequest{Name: "data", Volume: "local", Owner: mustScope(t, alice)}, &f, 201)
	ts.ok(t, "POST", "/v1/folders", api.CreateFolderRequest{Name: "ref", Volume: "local", Owner: mustScope(t, project), Permission: meta.PermRO}, &ro, 201)
	var list []api.View
	ts.ok(t, "GET", "/v1/views", nil, &list, 200)
	if len(list) != 2 || list[0].Namespace != "projects" || list[0].Name != "ref" || list[1].Namespace != "users" || list[1].Name != "data" {
		t.Errorf("standing views = %+v", list)
	}

	owner := mustScope(t, alice)
	req := api.CreateViewRequest{Session: "s1", Name: "work", Folder: "data", Owner: &owner, Mode: meta.PermRO}
	var v api.View
	ts.ok(t, "POST", "/v1/views", req, &v, 201)
	if v.Namespace != "sessions" || v.Key != "s1" || v.Name != "work" || v.FolderID != f.ID || v.Mode != meta.PermRO || v.Volume != "local" {
		t.Errorf("created view %+v", v)
	}
	var again api.View
	ts.ok(t, "POST", "/v1/views", req, &again, 200)
	if again != v {
		t.Errorf("repeat = %+v; want %+v", again, v)
	}
	req.Mode = meta.PermRW
	ts.fail(t, "POST", "/v1/views", req, 409, api.CodeExists)
	e := ts.fail(t, "POST", "/v1/views", api.CreateViewRequest{Session: "s2", Name: "r", Folder: ro.ID, Mode: meta.PermWD}, 403, api.CodeForbidden)
	if !strings.Contains(e.Message, "exceeds the permission") {
		t.Errorf("403 message %q", e.Message)
	}
	ts.fail(t, "POST", "/v1/views", `{"session":"s2","name":"r","folder":"`+ro.ID+`","colour":"red"}`, 400, api.CodeInvalid)
	ts.fail(t, "POST", "/v1/views", api.CreateViewRequest{Session: "s2", Name: "r", Folder: ro.ID, Subpath: "../up"}, 400, api.CodeInvalid)
	ts.fail(t, "POST", "/v1/views", api.CreateViewRequest{Session: "s2", Name: "r", Folder: ro.ID, Subpath: "nope"}, 404, api.CodeNotFound)
	ts.fail(t, "POST", "/v1/views?x=1", req, 400, api.CodeInvalid)

	ts.ok(t, "GET", "/v1/views?namespace=sessions&key=s1", nil, &list, 200)
	if len(list) != 1 || list[0] != v {
		t.Errorf("views of s1 = %+v", list)
	}
	ts.ok(t, "GET", "/v1/views?namespace=sessions&key=other", nil, &list, 200)
	if list == nil || len(list) != 0 {
		t.Errorf("views of an unknown session = %#v; want []", list)
	}
	ts.fail(t, "GET", "/v1/views?key=s1", nil, 400, api.CodeInvalid)
	ts.fail(t, "GET", "/v1/views?namespace=homes", nil, 400, api.CodeInvalid)
	ts.fail(t, "GET", "/v1/views?session=s1", nil, 400, api.CodeInvalid)

	e = ts.fail(t, "POST", "/v1/folders/"+f.ID+"/trash", nil, 409, api.CodeConflict)
	if !strings.Contains(e.Message, "s1") {
		t.Errorf("trash refusal %q does not name the session", e.Message)
	}
	var removed api.View
	ts.ok(t, "DELETE", "/v1/views/sessions/s1/work", nil, &removed, 200)
	if removed != v {
		t.Errorf("removed %+v; want %+v", removed, v)
	}
	ts.fail(t, "DELETE", "/v1/views/sessions/s1/work", nil, 404, api.CodeNotFound)
	ts.fail(t, "DELETE", "/v1/views/users/"+owner.UUID+"/data", nil, 404, api.CodeNotFound)
	ts.ok(t, "POST", "/v1/folders/"+f.ID+"/trash", nil, nil, 200)
	ts.ok(t, "GET", "/v1/views?namespace=users", nil, &list, 200)
	if len(list) != 0 {
		t.Errorf("users/ views after trash = %+v", list)
	}
}

// TestViewsClient drives the view calls through api.Client.
func TestViewsClient(t *testing.T) {
	ts := start(t, "", -1)
	ctx := context.Background()
	if err := ts.svc.StartViews(ctx, &memViews{views: map[string]vfs.ViewSpec{}}); err != nil {
		t.Fatal(err)
	}
	c := api.NewClient(ts.socket)
	defer c.CloseIdleConnections()
	owner := mustScope(t, alice)
	f, err := c.CreateFolder(ctx, api.CreateFolderRequest{Name: "data", Volume: "local", Owner: owner})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(f.Path, "in"), 0o755); err != nil {
		t.Fatal(err)
	}
	uid, gid := uint32(2000), uint32(2001)
	v, err := c.AddView(ctx, api.CreateViewRequest{Session: "job-7", Name: "in", Folder: f.ID, Subpath: "in", UID: &uid, GID: &gid})
	if err != nil || v.UID != 2000 || v.GID != 2001 || v.Subpath != "in" || v.Mode != meta.PermRW {
		t.Fatalf("AddView = %+v, %v", v, err)
	}
	vs, err := c.Views(ctx, api.ViewFilter{Namespace: api.NSSessions, Key: "job-7"})
	if err != nil || len(vs) != 1 || vs[0] != v {
		t.Errorf("Views = %+v, %v", vs, err)
	}
	_, err = c.TrashFolder(ctx, f.ID, owner)
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Code != api.CodeConflict || !strings.Contains(ae.Message, "job-7") {
		t.Errorf("trash with a session view: %v", err)
	}
	if got, err := c.RemoveView(ctx, "job-7", "in"); err != nil || got != v {
		t.Errorf("RemoveView = %+v, %v", got, err)
	}
	if _, err := c.RemoveView(ctx, "job-7", "in"); !errors.As(err, &ae) || ae.Code != api.CodeNotFound {
		t.Errorf("RemoveView twice: %v", err)
	}
	if _, err := c.TrashFolder(ctx, f.ID, owner); err != nil {
		t.Errorf("trash after the view is gone: %v", err)
	}
}
