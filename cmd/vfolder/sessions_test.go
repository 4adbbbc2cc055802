package main

import (
	"encoding/json"
	"net/http"
	"path"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/meta"
)

// The fake API's membership and session routes. f.mu is held
// (recording).

func (f *fakeAPI) sessionRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/projects/{project}/members", func(w http.ResponseWriter, r *http.Request) {
		out := []api.Membership{}
		for _, m := range f.members {
			if m.Project == r.PathValue("project") {
				out = append(out, m)
			}
		}
		sort.Slice(out, func(i, j int) bool { return out[i].User < out[j].User })
		reply(w, 200, out)
	})
	mux.HandleFunc("PUT /v1/projects/{project}/members/{user}", func(w http.ResponseWriter, r *http.Request) {
		var req api.SetMemberRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			fail(w, 400, api.CodeInvalid, "bad body: %v", err)
			return
		}
		m := api.Membership{Project: r.PathValue("project"), User: r.PathValue("user"), Permission: req.Permission}
		f.members[m.Project+"/"+m.User] = m
		reply(w, 200, m)
	})
	mux.HandleFunc("DELETE /v1/projects/{project}/members/{user}", func(w http.ResponseWriter, r *http.Request) {
		k := r.PathValue("project") + "/" + r.PathValue("user")
		m, ok := f.members[k]
		if !ok {
			fail(w, 404, api.CodeNotFound, "user %s is not a member of project %s", r.PathValue("user"), r.PathValue("project"))
			return
		}
		delete(f.members, k)
		reply(w, 200, m)
	})
	mux.HandleFunc("GET /v1/sessions", func(w http.ResponseWriter, r *http.Request) {
		out := []api.Session{}
		for _, s := range f.sessions {
			out = append(out, s)
		}
		reply(w, 200, out)
	})
	mux.HandleFunc("GET /v1/sessions/{sid}", func(w http.ResponseWriter, r *http.Request) {
		s, ok := f.sessions[r.PathValue("sid")]
		if !ok {
			fail(w, 404, api.CodeNotFound, "no session %s is published", r.PathValue("sid"))
			return
		}
		reply(w, 200, s)
	})
	mux.HandleFunc("POST /v1/sessions/{sid}/publish", func(w http.ResponseWriter, r *http.Request) {
		var req api.PublishRequest
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			fail(w, 400, api.CodeInvalid, "bad body: %v", err)
			return
		}
		f.lastPublish = req
		sid := r.PathValue("sid")
		s := f.sessions[sid]
		s.ID, s.User, s.UID, s.GID, s.CreatedAt = sid, req.User, 1000, 1000, time.Now()
		for _, m := range req.Mounts {
			name := path.Base(m.Folder)
			tgt := m.Target
			if tgt == "" {
				tgt = "/home/work/" + name
			}
			mode := m.Mode
			if mode == "" {
				mode = meta.PermRW
			}
			hp := "/run/vfolder/sessions/" + sid + "/" + name
			opts := []string{"rbind", "rslave"}
			if mode == meta.PermRO {
				opts = append(opts, "ro")
			}
			s.Mounts = append(s.Mounts, api.PublishedMount{Name: name, FolderID: strings.Repeat("a", 32), Target: tgt, Mode: mode, HostPath: hp,
				OCI: api.OCIMount{Destination: tgt, Type: "bind", Source: hp, Options: opts}})
		}
		for _, t := range req.Reserve {
			s.Reserved = append(s.Reserved, api.ReservedTarget{Name: path.Base(t) + "~00000000", Target: t, HostPath: "/run/vfolder/sessions/" + sid + "/" + path.Base(t)})
		}
		f.sessions[sid] = s
		reply(w, 200, s)
	})
	mux.HandleFunc("POST /v1/sessions/{sid}/attach", func(w http.ResponseWriter, r *http.Request) {
		if err := json.NewDecoder(r.Body).Decode(&f.lastAttach); err != nil {
			fail(w, 400, api.CodeInvalid, "bad body")
			return
		}
		s, ok := f.sessions[r.PathValue("sid")]
		if !ok {
			fail(w, 404, api.CodeNotFound, "no session %s is published", r.PathValue("sid"))
			return
		}
		reply(w, 200, s)
	})
	mux.HandleFunc("POST /v1/sessions/{sid}/unpublish", func(w http.ResponseWriter, r *http.Request) {
		sid := r.PathValue("sid")
		res := api.UnpublishResult{Session: sid, Removed: f.sessions[sid].Mounts, Problems: f.problems}
		if res.Removed == nil {
			res.Removed = []api.PublishedMount{}
		}
		if res.Problems == nil {
			res.Problems = []string{}
		}
		delete(f.sessions, sid)
		reply(w, 200, res)
	})
}

func TestMemberCommands(t *testing.T) {
	f := startFakeAPI(t)
	r := mustOK(t, f.run(t, "member", "add", "--project", projectUUID, "--user", userDashed, "--permission", "ro"))
	if !strings.Contains(r.stdout, "is a member of project "+projectUUID+" (ro on every folder)") {
		t.Errorf("member add printed %q", r.stdout)
	}
	if calls := f.calls(); len(calls) != 1 || calls[0] != "PUT /v1/projects/"+projectUUID+"/members/"+userUUID {
		t.Errorf("calls %v", calls)
	}
	mustOK(t, f.run(t, "member", "add", "-p", projectUUID, "-u", strings.Repeat("b", 32)))
	r = mustOK(t, f.run(t, "member", "list", "--project", projectUUID))
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "USER") || !strings.Contains(lines[1], userUUID+"  ro") || !strings.Contains(lines[2], "(folder's)") {
		t.Errorf("member list printed:\n%s", r.stdout)
	}
	var ms []api.Membership
	r = mustOK(t, f.run(t, "--json", "member", "ls", "--project", projectUUID))
	if err := json.Unmarshal([]byte(r.stdout), &ms); err != nil || len(ms) != 2 {
		t.Errorf("member list --json = %+v, %v", ms, err)
	}
	r = mustOK(t, f.run(t, "member", "remove", "--project", projectUUID, "--user", userUUID))
	if !strings.Contains(r.stdout, "no longer a member") {
		t.Errorf("member remove printed %q", r.stdout)
	}
	runFailCases(t, f, []failCase{
		{"remove again", []string{"member", "remove", "--project", projectUUID, "--user", userUUID}, 1, "is not a member", false, false},
		{"no project", []string{"member", "add", "--user", userUUID}, 2, "needs --project UUID", false, false},
		{"no user", []string{"member", "remove", "--project", projectUUID}, 2, "needs --user UUID", false, false},
		{"bad project", []string{"member", "list", "--project", "p1"}, 1, `--project "p1" is not a UUID`, false, false},
		{"bad permission", []string{"member", "add", "--project", projectUUID, "--user", userUUID, "--permission", "all"}, 2, "--permission must be ro, rw or wd", false, false},
		{"extra argument", []string{"member", "list", "--project", projectUUID, "x"}, 2, "takes no arguments", false, false},
	})
}

func TestMountCommands(t *testing.T) {
	f := startFakeAPI(t)
	r := mustOK(t, f.run(t, "--json", "mount", "publish", "sess-1", "data", "ref:ro", "ws=/workspace", "proj/sub=out:rw",
		"--user", userUUID, "--uid", "1000", "--gid", "1001", "--reserve", "late", "--no-automount"))
	var s api.Session
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil || s.ID != "sess-1" || len(s.Mounts) != 4 || len(s.Reserved) != 1 {
		t.Fatalf("publish --json = %+v, %v (%q)", s, err, r.stdout)
	}
	uid, gid, no := uint32(1000), uint32(1001), false
	want := api.PublishRequest{User: userUUID, UID: &uid, GID: &gid, Automount: &no, Reserve: []string{"late"}, Mounts: []api.MountRequest{
		{Folder: "data"}, {Folder: "ref", Mode: meta.PermRO}, {Folder: "ws", Target: "/workspace"}, {Folder: "proj/sub", Target: "out", Mode: meta.PermRW}}}
	if !reflect.DeepEqual(f.lastPublish, want) {
		t.Errorf("publish request\n%+v\nwant\n%+v", f.lastPublish, want)
	}
	r = mustOK(t, f.run(t, "mount", "publish", "sess-2", "--user", userUUID))
	if !strings.Contains(r.stdout, "Session sess-2") || f.lastPublish.Automount != nil || f.lastPublish.UID != nil {
		t.Errorf("plain publish printed %q, sent %+v", r.stdout, f.lastPublish)
	}
	r = mustOK(t, f.run(t, "mount", "list"))
	if lines := strings.Split(strings.TrimSpace(r.stdout), "\n"); len(lines) != 3 || !strings.HasPrefix(lines[0], "SESSION") {
		t.Errorf("mount list printed:\n%s", r.stdout)
	}
	r = mustOK(t, f.run(t, "mount", "list", "sess-1"))
	if !strings.Contains(r.stdout, "/workspace") || !strings.Contains(r.stdout, "(reserved)") {
		t.Errorf("mount list sess-1 printed:\n%s", r.stdout)
	}
	r = mustOK(t, f.run(t, "mount", "attach", "sess-1", "--pid", "4242"))
	if f.lastAttach.PID != 4242 || !strings.Contains(r.stdout, "Attached 4 mount(s) of session sess-1 to pid 4242") {
		t.Errorf("attach printed %q, sent %+v", r.stdout, f.lastAttach)
	}
	r = mustOK(t, f.run(t, "mount", "unpublish", "sess-1"))
	if !strings.Contains(r.stdout, "4 mount(s) removed") {
		t.Errorf("unpublish printed %q", r.stdout)
	}
	f.mu.Lock()
	f.problems = []string{"still mounted: /run/vfolder/sessions/sess-2/x: device or resource busy"}
	f.mu.Unlock()
	r = f.run(t, "mount", "unpublish", "sess-2")
	if r.code != 1 || !strings.Contains(r.stderr, "could not remove everything") || !strings.Contains(r.stderr, "device or resource busy") {
		t.Errorf("unpublish with problems: exit %d, stderr %q", r.code, r.stderr)
	}

	runFailCases(t, f, []failCase{
		{"publish without user", []string{"mount", "publish", "s"}, 2, "needs --user UUID", false, false},
		{"publish without session", []string{"mount", "publish", "--user", userUUID}, 2, "needs arguments SESSION [MOUNT...]", false, false},
		{"publish empty target", []string{"mount", "publish", "s", "data=", "--user", userUUID}, 2, "empty target", false, false},
		{"publish no folder", []string{"mount", "publish", "s", "=/x", "--user", userUUID}, 2, "has no folder", false, false},
		{"publish uid alone", []string{"mount", "publish", "s", "--user", userUUID, "--uid", "1"}, 2, "--uid and --gid together", false, false},
		{"attach without pid", []string{"mount", "attach", "s"}, 2, "needs --pid", false, false},
		{"attach bad pid", []string{"mount", "attach", "s", "--pid", "x"}, 1, `--pid "x" is not a process id`, false, false},
		{"attach unknown", []string{"mount", "attach", "nope", "--pid", "1"}, 1, "no session nope", false, false},
		{"list unknown", []string{"mount", "list", "nope"}, 1, "no session nope", false, false},
		{"unpublish two", []string{"mount", "unpublish", "a", "b"}, 2, "takes arguments SESSION", false, false},
		{"mount without subcommand", []string{"mount"}, 2, "needs a subcommand", false, false},
	})
}

func TestParseMountArg(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want api.MountRequest
		err  bool
	}{
		{"data", api.MountRequest{Folder: "data"}, false},
		{"data:ro", api.MountRequest{Folder: "data", Mode: meta.PermRO}, false},
		{"data=/w:wd", api.MountRequest{Folder: "data", Target: "/w", Mode: meta.PermWD}, false},
		{"a/b=rel/x", api.MountRequest{Folder: "a/b", Target: "rel/x"}, false},
		{"odd:name", api.MountRequest{Folder: "odd:name"}, false},
		{"x=/a:b", api.MountRequest{Folder: "x", Target: "/a:b"}, false},
		{"=/x", api.MountRequest{}, true},
		{":ro", api.MountRequest{}, true},
		{"x=", api.MountRequest{}, true},
	} {
		got, err := parseMountArg(tc.in)
		if (err != nil) != tc.err || (!tc.err && got != tc.want) {
			t.Errorf("parseMountArg(%q) = %+v, %v; want %+v (error %v)", tc.in, got, err, tc.want, tc.err)
		}
	}
}

// FuzzParseMountArg: a parsed mount never has an empty folder, and
// printing it back in the same syntax parses to the same request.
func FuzzParseMountArg(f *testing.F) {
	for _, s := range []string{"data", "data:ro", "a/b=/x:rw", "x=", "=", ":", "a=b=c", "n:rw:ro"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		mr, err := parseMountArg(s)
		if err != nil {
			return
		}
		if mr.Folder == "" || (mr.Mode != "" && !mr.Mode.Valid()) {
			t.Fatalf("parseMountArg(%q) = %+v", s, mr)
		}
		back := mr.Folder
		if mr.Target != "" {
			back += "=" + mr.Target
		}
		if mr.Mode != "" {
			back += ":" + string(mr.Mode)
		}
		again, err := parseMountArg(back)
		if err != nil || again != mr {
			t.Fatalf("%q -> %+v -> %q -> %+v, %v", s, mr, back, again, err)
		}
	})
}
