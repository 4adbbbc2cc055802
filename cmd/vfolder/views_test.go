package main

import (
	"encoding/json"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/meta"
)

// The fake API's view routes: session views only, kept in f.views; the
// last add request is kept for inspection. f.mu is held (recording).

func (f *fakeAPI) listViews(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	out := []api.View{}
	for _, v := range f.views {
		if (q.Get("namespace") == "" || v.Namespace == q.Get("namespace")) && (q.Get("key") == "" || v.Key == q.Get("key")) {
			out = append(out, v)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key+"/"+out[i].Name < out[j].Key+"/"+out[j].Name })
	reply(w, 200, out)
}

func (f *fakeAPI) addView(w http.ResponseWriter, r *http.Request) {
	var req api.CreateViewRequest
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		fail(w, 400, api.CodeInvalid, "bad body: %v", err)
		return
	}
	f.lastView = req
	var fo api.Folder
	found := false
	for _, x := range f.folders {
		if x.ID == req.Folder || (req.Owner != nil && x.Owner == *req.Owner && x.Name == req.Folder) {
			fo, found = x, true
		}
	}
	if !found {
		fail(w, 404, api.CodeNotFound, "folder %q not found", req.Folder)
		return
	}
	mode := req.Mode
	if mode == "" {
		mode = fo.Permission
	}
	if mode.Rank() > fo.Permission.Rank() {
		fail(w, 403, api.CodeForbidden, "mode %s exceeds the permission of folder %q (%s)", mode, fo.Name, fo.Permission)
		return
	}
	v := api.View{Namespace: "sessions", Key: req.Session, Name: req.Name, FolderID: fo.ID, Volume: fo.Volume,
		Subpath: req.Subpath, Mode: mode, UID: 1000, GID: 1000, Path: "/run/vfolder/mnt/sessions/" + req.Session + "/" + req.Name}
	if req.UID != nil {
		v.UID, v.GID = *req.UID, *req.GID
	}
	status := 201
	if old, ok := f.views[req.Session+"/"+req.Name]; ok {
		if old != v {
			fail(w, 409, api.CodeExists, "session %s already has a view named %q", req.Session, req.Name)
			return
		}
		status = 200
	}
	f.views[req.Session+"/"+req.Name] = v
	reply(w, status, v)
}

func (f *fakeAPI) removeView(w http.ResponseWriter, r *http.Request) {
	k := r.PathValue("session") + "/" + r.PathValue("name")
	v, ok := f.views[k]
	if !ok {
		fail(w, 404, api.CodeNotFound, "session %s has no view named %q", r.PathValue("session"), r.PathValue("name"))
		return
	}
	delete(f.views, k)
	reply(w, 200, v)
}

func TestViewCommands(t *testing.T) {
	f := startFakeAPI(t)
	fo := createFolder(t, f, "data", "--permission", "rw")
	f.calls()

	r := mustOK(t, f.run(t, "view", "add", "sess-1", "work", "data", "--user", userUUID, "--mode", "ro", "--subpath", "in/x"))
	if !strings.Contains(r.stdout, "/run/vfolder/mnt/sessions/sess-1/work") || !strings.Contains(r.stdout, "mode:") {
		t.Errorf("view add printed %q", r.stdout)
	}
	owner, _ := meta.UserScope(userUUID)
	want := api.CreateViewRequest{Session: "sess-1", Name: "work", Folder: "data", Owner: &owner, Subpath: "in/x", Mode: meta.PermRO}
	if !reflect.DeepEqual(f.lastView, want) {
		t.Errorf("request %+v; want %+v", f.lastView, want)
	}
	// By id, flags after the arguments, explicit uid/gid, JSON output.
	r = mustOK(t, f.run(t, "view", "add", "sess-2", "root", fo.ID, "--uid", "0", "--gid", "0", "--json"))
	var v api.View
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || v.UID != 0 || v.GID != 0 || v.Mode != meta.PermRW || v.FolderID != fo.ID {
		t.Errorf("view add --json = %+v, %v (%q)", v, err, r.stdout)
	}
	if f.lastView.Owner != nil || f.lastView.UID == nil || *f.lastView.UID != 0 || f.lastView.Mode != "" {
		t.Errorf("request by id %+v; want no owner, uid 0, mode left to the daemon", f.lastView)
	}

	r = mustOK(t, f.run(t, "view", "list"))
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "NAMESPACE") || !strings.Contains(lines[1], "sess-1") || !strings.Contains(lines[1], "in/x") || !strings.Contains(lines[2], "0:0") {
		t.Errorf("view list printed:\n%s", r.stdout)
	}
	f.calls()
	var vs []api.View
	r = mustOK(t, f.run(t, "--json", "view", "list", "--session", "sess-2"))
	if err := json.Unmarshal([]byte(r.stdout), &vs); err != nil || len(vs) != 1 || vs[0].Key != "sess-2" {
		t.Errorf("view list --session = %+v, %v", vs, err)
	}
	if calls := f.calls(); len(calls) != 1 || calls[0] != "GET /v1/views?key=sess-2&namespace=sessions" {
		t.Errorf("calls %v", calls)
	}

	r = mustOK(t, f.run(t, "view", "remove", "sess-1", "work"))
	if !strings.Contains(r.stdout, "Removed view sessions/sess-1/work") {
		t.Errorf("view remove printed %q", r.stdout)
	}
	if calls := f.calls(); len(calls) != 1 || calls[0] != "DELETE /v1/views/sessions/sess-1/work" {
		t.Errorf("calls %v", calls)
	}

	runFailCases(t, f, []failCase{
		{"add missing args", []string{"view", "add", "s", "n"}, 2, "vfolder: view add needs arguments SESSION NAME REF, got 2\nRun 'vfolder view add --help'", true, false},
		{"add name without owner", []string{"view", "add", "s", "n", "data"}, 2, `"data" is not a folder id`, true, false},
		{"add bad mode", []string{"view", "add", "s", "n", fo.ID, "--mode", "rwx"}, 2, "--mode must be ro, rw or wd", true, false},
		{"add uid without gid", []string{"view", "add", "s", "n", fo.ID, "--uid", "5"}, 2, "--uid and --gid together", true, false},
		{"add bad uid", []string{"view", "add", "s", "n", fo.ID, "--uid", "x", "--gid", "1"}, 1, `--uid "x" is not an id`, true, false},
		{"add uid -1", []string{"view", "add", "s", "n", fo.ID, "--uid", "4294967295", "--gid", "1"}, 1, "is not an id", true, false},
		{"add over permission", []string{"view", "add", "s", "n", fo.ID, "--mode", "wd"}, 1, "exceeds the permission", false, false},
		{"add taken place", []string{"view", "add", "sess-2", "root", fo.ID, "--mode", "ro"}, 1, "already has a view", false, false},
		{"remove missing", []string{"view", "remove", "sess-1", "work"}, 1, "has no view named", false, false},
		{"remove missing args", []string{"view", "remove", "sess-1"}, 2, "vfolder: view remove needs arguments SESSION NAME, got 1", true, false},
		{"list extra", []string{"view", "list", "x"}, 2, "view list takes no arguments", true, false},
		{"list empty session", []string{"view", "list", "--session", ""}, 2, "--session needs a session id", true, false},
		{"view without subcommand", []string{"view"}, 2, "needs a subcommand", true, false},
	})
}
