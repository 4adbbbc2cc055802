package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/meta"
)

// fakeAPI is an in-memory stand-in for vfolderd's API, enough to drive the
// CLI: it keeps folders, scopes and policies and records every request.
type fakeAPI struct {
	socket string

	mu       sync.Mutex
	folders  map[string]api.Folder
	scopes   map[string]api.QuotaScope
	policies map[meta.ScopeID]api.Policy
	views    map[string]api.View // session views by "session/name"
	lastView api.CreateViewRequest
	requests []string // "METHOD /path?query body"

	members     map[string]api.Membership // by "project/user"
	sessions    map[string]api.Session
	lastPublish api.PublishRequest
	lastAttach  api.AttachRequest
	problems    []string // what the next unpublish reports

	drift      int           // differences the next check finds (until repaired)
	incomplete bool          // the next check cannot read a folder
	checkDelay time.Duration // how long a check takes to answer
}

func startFakeAPI(t *testing.T) *fakeAPI {
	t.Helper()
	f := &fakeAPI{
		socket:   filepath.Join(t.TempDir(), "api.sock"),
		folders:  map[string]api.Folder{},
		scopes:   map[string]api.QuotaScope{},
		policies: map[meta.ScopeID]api.Policy{},
		views:    map[string]api.View{},
		members:  map[string]api.Membership{},
		sessions: map[string]api.Session{},
	}
	ln, err := net.Listen("unix", f.socket)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/health", func(w http.ResponseWriter, r *http.Request) {
		reply(w, 200, api.Health{Status: "ok", Version: "test"})
	})
	mux.HandleFunc("GET /v1/nodes", func(w http.ResponseWriter, r *http.Request) {
		started := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
		reply(w, 200, []api.Node{
			{ID: "gpu-1", Hostname: "gpu-1.lan", Version: "1.2", Status: api.NodeAlive, Self: true, StartedAt: started,
				Sessions: []api.NodeSession{{ID: "job-7", Folders: []string{"a", "b"}}, {ID: "job-8", Folders: []string{"a"}}}},
			{ID: "gpu-2", Hostname: "gpu-2.lan", Version: "1.1", Status: api.NodeExpired, StartedAt: started, Sessions: []api.NodeSession{}},
		})
	})
	mux.HandleFunc("GET /v1/volumes", func(w http.ResponseWriter, r *http.Request) {
		reply(w, 200, []api.Volume{{Volume: meta.Volume{Name: "local", Path: "/vfroot/local", MountAllowed: true, CloneAllowed: true}, Status: api.VolumeReady}})
	})
	mux.HandleFunc("GET /v1/folders", f.list)
	f.sharingRoutes(mux)
	mux.HandleFunc("POST /v1/folders", f.create)
	mux.HandleFunc("GET /v1/folders/{ref}", f.withFolder(func(w http.ResponseWriter, r *http.Request, fo api.Folder) {
		reply(w, 200, fo)
	}))
	mux.HandleFunc("POST /v1/folders/{ref}/rename", f.withFolder(f.rename))
	mux.HandleFunc("POST /v1/folders/{ref}/trash", f.withFolder(func(w http.ResponseWriter, r *http.Request, fo api.Folder) {
		if !fo.Status.Live() {
			fail(w, 409, api.CodeConflict, "folder %q is already in the trash", fo.Name)
			return
		}
		fo.Status = meta.StatusDeletePending
		f.folders[fo.ID] = fo
		reply(w, 200, fo)
	}))
	mux.HandleFunc("POST /v1/folders/{ref}/restore", f.withFolder(func(w http.ResponseWriter, r *http.Request, fo api.Folder) {
		if fo.Status != meta.StatusDeletePending {
			fail(w, 409, api.CodeConflict, "folder %q is not in the trash", fo.Name)
			return
		}
		fo.Status = meta.StatusReady
		f.folders[fo.ID] = fo
		reply(w, 200, fo)
	}))
	mux.HandleFunc("POST /v1/folders/{ref}/purge", f.withFolder(func(w http.ResponseWriter, r *http.Request, fo api.Folder) {
		var req api.PurgeRequest
		if json.NewDecoder(r.Body).Decode(&req) != nil {
			fail(w, 400, api.CodeInvalid, "bad body")
			return
		}
		if fo.Status.Live() {
			fail(w, 409, api.CodeConflict, "folder %q is not in the trash; delete it first", fo.Name)
			return
		}
		if req.Confirm != fo.Name {
			fail(w, 409, api.CodeConflict, "confirmation %q does not match the folder name; nothing was purged", req.Confirm)
			return
		}
		// Like the daemon: the answer says delete-ongoing; the removal
		// (instant here) runs on.
		delete(f.folders, fo.ID)
		fo.Status = meta.StatusDeleteOngoing
		fo.Progress = &api.Progress{Op: api.OpPurge, FilesTotal: 7}
		reply(w, 200, fo)
	}))
	mux.HandleFunc("GET /v1/folders/{ref}/usage", f.withFolder(func(w http.ResponseWriter, r *http.Request, fo api.Folder) {
		reply(w, 200, api.FolderUsage{FolderID: fo.ID, UsedBytes: 3 << 19, UsedInodes: 7, AsOf: time.Now()})
	}))
	mux.HandleFunc("/v1/quota-scopes/{volume}/{scope}", f.quota)
	mux.HandleFunc("POST /v1/quota-scopes/{volume}/{scope}/check", f.check)
	mux.HandleFunc("/v1/policies/{owner}", f.policy)
	mux.HandleFunc("GET /v1/views", f.listViews)
	mux.HandleFunc("POST /v1/views", f.addView)
	mux.HandleFunc("DELETE /v1/views/sessions/{session}/{name}", f.removeView)
	f.sessionRoutes(mux)

	srv := httptest.NewUnstartedServer(f.recording(mux))
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return f
}

func (f *fakeAPI) recording(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		line := r.Method + " " + r.URL.EscapedPath()
		if r.URL.RawQuery != "" {
			line += "?" + r.URL.RawQuery
		}
		f.requests = append(f.requests, line)
		h.ServeHTTP(w, r)
	})
}

// calls returns the recorded requests and forgets them.
func (f *fakeAPI) calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.requests
	f.requests = nil
	return r
}

func reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, status int, code, format string, args ...any) {
	reply(w, status, api.Error{Code: code, Message: fmt.Sprintf(format, args...)})
}

func (f *fakeAPI) create(w http.ResponseWriter, r *http.Request) {
	var req api.CreateFolderRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		fail(w, 400, api.CodeInvalid, "bad body: %v", err)
		return
	}
	if err := meta.ValidateName(req.Name); err != nil {
		fail(w, 400, api.CodeInvalid, "%v", err)
		return
	}
	if req.Volume != "local" {
		fail(w, 404, api.CodeNotFound, "volume %q not found", req.Volume)
		return
	}
	for _, fo := range f.folders {
		if fo.Owner == req.Owner && fo.Name == req.Name {
			fail(w, 409, api.CodeExists, "%s already has a folder named %q", req.Owner, req.Name)
			return
		}
	}
	id := meta.NewFolderID()
	fo := api.Folder{
		Folder: meta.Folder{ID: id, Name: req.Name, Owner: req.Owner, Volume: req.Volume, UsageMode: req.UsageMode,
			Permission: req.Permission, Cloneable: req.Cloneable, Status: meta.StatusReady,
			CreatedAt: time.Now(), UpdatedAt: time.Now()},
		Path: "/vfroot/local/" + meta.FolderRelPath(req.Owner, id),
	}
	f.folders[id] = fo
	reply(w, 201, fo)
}

func (f *fakeAPI) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var owner *meta.ScopeID
	if s := q.Get("owner"); s != "" {
		o, err := meta.ParseScopeID(s)
		if err != nil {
			fail(w, 400, api.CodeInvalid, "%v", err)
			return
		}
		owner = &o
	}
	out := []api.Folder{}
	for _, fo := range f.folders {
		switch {
		case owner != nil && fo.Owner != *owner,
			q.Get("volume") != "" && fo.Volume != q.Get("volume"),
			q.Get("deleted") == "" && !fo.Status.Live(),
			q.Get("deleted") == "only" && fo.Status.Live():
			continue
		}
		out = append(out, fo)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	reply(w, 200, out)
}

func (f *fakeAPI) withFolder(h func(http.ResponseWriter, *http.Request, api.Folder)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ref := r.PathValue("ref")
		if id, err := meta.ParseUUID(ref); err == nil {
			if fo, ok := f.folders[id]; ok {
				h(w, r, fo)
				return
			}
			fail(w, 404, api.CodeNotFound, "folder %s not found", ref)
			return
		}
		owner, err := meta.ParseScopeID(r.URL.Query().Get("owner"))
		if err != nil {
			fail(w, 400, api.CodeInvalid, "a folder name needs an owner")
			return
		}
		for _, fo := range f.folders {
			if fo.Owner == owner && fo.Name == ref {
				h(w, r, fo)
				return
			}
		}
		fail(w, 404, api.CodeNotFound, "%s has no folder named %q", owner, ref)
	}
}

func (f *fakeAPI) rename(w http.ResponseWriter, r *http.Request, fo api.Folder) {
	var req api.RenameRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		fail(w, 400, api.CodeInvalid, "bad body")
		return
	}
	if err := meta.ValidateName(req.NewName); err != nil {
		fail(w, 400, api.CodeInvalid, "%v", err)
		return
	}
	for _, o := range f.folders {
		if o.Owner == fo.Owner && o.Name == req.NewName && o.ID != fo.ID {
			fail(w, 409, api.CodeExists, "name %q is taken", req.NewName)
			return
		}
	}
	fo.Name = req.NewName
	f.folders[fo.ID] = fo
	reply(w, 200, fo)
}

func (f *fakeAPI) quota(w http.ResponseWriter, r *http.Request) {
	vol := r.PathValue("volume")
	id, err := meta.ParseScopeID(r.PathValue("scope"))
	if err != nil {
		fail(w, 400, api.CodeInvalid, "%v", err)
		return
	}
	if vol != "local" {
		fail(w, 404, api.CodeNotFound, "volume %q not found", vol)
		return
	}
	key := vol + "/" + id.String()
	s, ok := f.scopes[key]
	if !ok {
		s = api.QuotaScope{QuotaScope: meta.QuotaScope{Volume: vol, ID: id}, UsedBytes: 1 << 30, UsedInodes: 12}
	}
	switch r.Method {
	case http.MethodGet:
	case http.MethodPut:
		var req api.SetQuotaRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			fail(w, 400, api.CodeInvalid, "bad body")
			return
		}
		if req.LimitBytes != nil {
			s.LimitBytes = *req.LimitBytes
		}
		if req.LimitInodes != nil {
			s.LimitInodes = *req.LimitInodes
		}
	case http.MethodDelete:
		s.LimitBytes = 0
	default:
		fail(w, 405, api.CodeInvalid, "method not allowed")
		return
	}
	f.scopes[key] = s
	reply(w, 200, s)
}

func (f *fakeAPI) policy(w http.ResponseWriter, r *http.Request) {
	owner, err := meta.ParseScopeID(r.PathValue("owner"))
	if err != nil {
		fail(w, 400, api.CodeInvalid, "%v", err)
		return
	}
	switch r.Method {
	case http.MethodGet:
	case http.MethodPut:
		var p api.Policy
		if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
			fail(w, 400, api.CodeInvalid, "bad body")
			return
		}
		if p.MaxFolderCount < 0 || p.MaxQuotaScopeSize < 0 {
			fail(w, 400, api.CodeInvalid, "negative policy value")
			return
		}
		f.policies[owner] = p
	default:
		fail(w, 405, api.CodeInvalid, "method not allowed")
		return
	}
	reply(w, 200, f.policies[owner])
}

// folder returns the folder of that id, or an error.
func (f *fakeAPI) folder(id string) (api.Folder, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fo, ok := f.folders[id]
	if !ok {
		return api.Folder{}, errors.New("no such folder")
	}
	return fo, nil
}

// check answers POST .../check: f.drift unknown files in one folder, all
// repaired when asked.
func (f *fakeAPI) check(w http.ResponseWriter, r *http.Request) {
	id, err := meta.ParseScopeID(r.PathValue("scope"))
	if err != nil {
		fail(w, 400, api.CodeInvalid, "%v", err)
		return
	}
	if r.PathValue("volume") != "local" {
		fail(w, 404, api.CodeNotFound, "volume %q not found", r.PathValue("volume"))
		return
	}
	var req api.QuotaCheckRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		fail(w, 400, api.CodeInvalid, "bad body")
		return
	}
	if delay := f.checkDelay; delay > 0 {
		f.mu.Unlock() // let other requests in meanwhile
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
		}
		f.mu.Lock()
	}
	const ledger = 104857600
	fo := api.QuotaCheckFolder{FolderID: "0123456789abcdef0123456789abcdef", Name: "data",
		LedgerBytes: ledger, DiskBytes: ledger + int64(f.drift)*100, LedgerInodes: 1, DiskInodes: 1 + int64(f.drift),
		DiskDirBytes: 4096, DiskXattrBytes: 123, Unknown: f.drift, Complete: !f.incomplete}
	if f.incomplete {
		fo.Errors = []string{"open d: permission denied"}
	}
	rep := api.QuotaCheck{Volume: "local", Scope: id, Repair: req.Repair, Drift: f.drift > 0, Complete: !f.incomplete,
		Folders: []api.QuotaCheckFolder{fo}, UnknownFiles: f.drift, Counts: map[string]int{}, Findings: []api.QuotaFinding{},
		UsedBytes: ledger, UsedInodes: 1, StartedAt: time.Now(), Seconds: 0.25}
	if f.drift > 0 {
		rep.Counts[api.ProblemUnknown] = f.drift
	}
	for i := 0; i < f.drift; i++ {
		rep.Findings = append(rep.Findings, api.QuotaFinding{FolderID: fo.FolderID, Path: fmt.Sprintf("direct%d", i),
			Problem: api.ProblemUnknown, DiskBytes: 100, Repaired: req.Repair})
	}
	if req.Repair && f.drift > 0 {
		rep.Repaired, rep.RepairedCount = true, f.drift
		rep.UsedBytes, rep.UsedInodes = fo.DiskBytes, fo.DiskInodes
		f.drift = 0
	}
	reply(w, 200, rep)
}
