package api_test

// The OpenAPI description (openapi.yaml) must be a valid OpenAPI 3
// document and describe exactly the routes the server registers: the same
// paths and methods, the same path parameters and the same query
// parameters (both directions). The schemas of the wire types must name
// the same JSON fields as the Go types.

import (
	"context"
	"encoding/json"
	"maps"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/internal/server"
	"github.com/vfolder/vfolder/meta"
)

func loadSpec(t *testing.T) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile("openapi.yaml")
	if err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.yaml is not a valid OpenAPI 3 document: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi.yaml declares version %q, want 3.x", doc.OpenAPI)
	}
	return doc
}

type specOp struct {
	path, query, header []string
	// security is the operation's own security requirements (nil: none
	// given).
	security *openapi3.SecurityRequirements
}

// specRoutes lists "METHOD /path" with the operation's parameters (the
// path item's and its own).
func specRoutes(t *testing.T, doc *openapi3.T) map[string]specOp {
	out := map[string]specOp{}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			var so specOp
			params := append(slices.Clone(item.Parameters), op.Parameters...)
			for _, p := range params {
				switch p.Value.In {
				case openapi3.ParameterInPath:
					so.path = append(so.path, p.Value.Name)
				case openapi3.ParameterInQuery:
					so.query = append(so.query, p.Value.Name)
				case openapi3.ParameterInHeader:
					// The tus upload protocol speaks in headers.
					so.header = append(so.header, p.Value.Name)
				default:
					t.Errorf("%s %s: parameter %q in %s: the API takes only path, query and (tus) header parameters", method, path, p.Value.Name, p.Value.In)
				}
			}
			sort.Strings(so.query)
			so.security = op.Security
			out[method+" "+path] = so
			if op.Responses.Default() == nil {
				t.Errorf("%s %s: no default (Error) response", method, path)
			}
		}
	}
	return out
}

func TestOpenAPIMatchesServerRoutes(t *testing.T) {
	doc := loadSpec(t)
	spec := specRoutes(t, doc)
	routes := server.New(nil, server.Options{}).Routes()
	if len(routes) == 0 {
		t.Fatal("the server registers no route")
	}
	served := map[string]bool{}
	for _, r := range routes {
		key := r.Method + " " + r.Path
		served[key] = true
		so, ok := spec[key]
		if !ok {
			t.Errorf("%s is served but not in api/openapi.yaml", key)
			continue
		}
		// Path parameters: the same set (OpenAPI does not order them).
		sp := slices.Sorted(slices.Values(so.path))
		rp := slices.Sorted(slices.Values(r.PathParams))
		if !slices.Equal(sp, rp) {
			t.Errorf("%s: path parameters in the spec %v, served %v", key, sp, rp)
		}
		q := r.QueryParams
		if q == nil {
			q = []string{}
		}
		if so.query == nil {
			so.query = []string{}
		}
		if !slices.Equal(so.query, q) {
			t.Errorf("%s: query parameters in the spec %v, served %v", key, so.query, q)
		}
		// Header parameters: the tus routes' own, and Tus-Resumable on
		// each of them.
		tus := r.Path == api.UploadsPath || strings.HasPrefix(r.Path, api.UploadsPath+"/")
		if len(so.header) > 0 && !tus {
			t.Errorf("%s: header parameters %v in the spec; only the tus upload routes take headers", key, so.header)
		}
		if tus && !slices.Contains(so.header, "Tus-Resumable") {
			t.Errorf("%s: a tus route without the Tus-Resumable header parameter", key)
		}
		checkSecurity(t, key, r.Token, so.security)
	}
	for key := range spec {
		if !served[key] {
			t.Errorf("%s is in api/openapi.yaml but not served", key)
		}
	}
}

// checkSecurity: a route that accepts a bearer token (the file API's)
// says so, with the alternative of no token (admin callers); no other
// route names the bearer scheme.
func checkSecurity(t *testing.T, key string, token bool, sec *openapi3.SecurityRequirements) {
	t.Helper()
	var reqs []string
	if sec != nil {
		for _, req := range *sec {
			names := slices.Sorted(maps.Keys(req))
			reqs = append(reqs, "{"+strings.Join(names, ",")+"}")
		}
	}
	sort.Strings(reqs)
	if token {
		if want := []string{"{bearerAuth}", "{}"}; !slices.Equal(reqs, want) {
			t.Errorf("%s accepts a bearer token: security in the spec %v, want %v (a token, or none for admins)", key, reqs, want)
		}
	} else if reqs != nil {
		t.Errorf("%s takes no token, but the spec gives it security %v", key, reqs)
	}
}

func TestOpenAPISecurity(t *testing.T) {
	doc := loadSpec(t)
	if len(doc.Security) != 0 {
		t.Errorf("the spec has document-wide security %v: only the file routes take a token", doc.Security)
	}
	ref := doc.Components.SecuritySchemes["bearerAuth"]
	if ref == nil || ref.Value == nil {
		t.Fatal("no bearerAuth security scheme")
	}
	if s := ref.Value; s.Type != "http" || s.Scheme != "bearer" || s.BearerFormat != "JWT" {
		t.Errorf("bearerAuth is %s %s %s, want http bearer JWT", s.Type, s.Scheme, s.BearerFormat)
	}
	if len(doc.Components.SecuritySchemes) != 1 {
		t.Errorf("security schemes %v, want bearerAuth alone", slices.Sorted(maps.Keys(doc.Components.SecuritySchemes)))
	}
	// Some route takes a token: the check in
	// TestOpenAPIMatchesServerRoutes is not vacuous.
	n := 0
	for _, r := range server.New(nil, server.Options{}).Routes() {
		if r.Token {
			n++
		}
	}
	if n == 0 {
		t.Error("the server lists no route that accepts a token")
	}
}

// jsonFields lists the JSON names of a struct's fields, those of embedded
// structs included: as encoding/json does, an untagged embedded struct or
// pointer to a struct contributes its own fields, not a field of its name.
func jsonFields(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				out = append(out, jsonFields(ft)...)
				continue
			}
		}
		if name == "" {
			name = f.Name
		}
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

func TestOpenAPISchemasMatchTypes(t *testing.T) {
	doc := loadSpec(t)
	types := map[string]any{
		"Error": api.Error{}, "Health": api.Health{}, "Volume": api.Volume{}, "Folder": api.Folder{},
		"CreateFolderRequest": api.CreateFolderRequest{}, "RenameRequest": api.RenameRequest{},
		"PurgeRequest": api.PurgeRequest{}, "FolderUsage": api.FolderUsage{},
		"SetQuotaRequest": api.SetQuotaRequest{}, "QuotaScope": api.QuotaScope{},
		"QuotaCheckRequest": api.QuotaCheckRequest{}, "QuotaCheck": api.QuotaCheck{},
		"QuotaCheckFolder": api.QuotaCheckFolder{}, "QuotaFinding": api.QuotaFinding{},
		"Policy": api.Policy{}, "Node": api.Node{}, "NodeSession": api.NodeSession{}, "NodeGrant": api.NodeGrant{},
		"View": api.View{}, "CreateViewRequest": api.CreateViewRequest{}, "Membership": api.Membership{},
		"SetMemberRequest": api.SetMemberRequest{}, "MountRequest": api.MountRequest{},
		"PublishRequest": api.PublishRequest{}, "OCIMount": api.OCIMount{}, "PublishedMount": api.PublishedMount{},
		"ReservedTarget": api.ReservedTarget{}, "Session": api.Session{}, "AttachRequest": api.AttachRequest{},
		"UnpublishResult": api.UnpublishResult{},
		"Progress":        api.Progress{}, "CloneRequest": api.CloneRequest{}, "UpdateOptionsRequest": api.UpdateOptionsRequest{},
		"ImportRequest": api.ImportRequest{}, "ImportName": api.ImportName{}, "ImportReport": api.ImportReport{},
		"ImportedFolder": api.ImportedFolder{}, "ImportProblem": api.ImportProblem{}, "ImportProgress": api.ImportProgress{},
		"InviteRequest": api.InviteRequest{}, "Invitation": api.Invitation{},
		"InvitationActionRequest": api.InvitationActionRequest{}, "ShareRequest": api.ShareRequest{}, "Share": api.Share{},
		"LeaveRequest": api.LeaveRequest{}, "ReachedFolder": api.ReachedFolder{}, "UserStatus": api.UserStatus{},
		"ScopeUsage": api.ScopeUsage{}, "SSHKey": api.SSHKey{}, "AddSSHKeyRequest": api.AddSSHKeyRequest{},
		"RevokedMount": api.RevokedMount{},
		"FileEntry":    api.FileEntry{}, "FileListEnd": api.FileListEnd{}, "MkdirRequest": api.MkdirRequest{},
		"MoveRequest": api.MoveRequest{}, "DeleteRequest": api.DeleteRequest{}, "FileJob": api.FileJob{},
		"TokenRequest": api.TokenRequest{}, "Token": api.Token{},
	}
	for name, v := range types {
		ref, ok := doc.Components.Schemas[name]
		if !ok || ref.Value == nil {
			t.Errorf("schema %s is missing", name)
			continue
		}
		var props []string
		for p := range ref.Value.Properties {
			props = append(props, p)
		}
		sort.Strings(props)
		if want := jsonFields(reflect.TypeOf(v)); !slices.Equal(props, want) {
			t.Errorf("schema %s has properties %v; the Go type %T has JSON fields %v", name, props, v, want)
		}
	}
	// Every object schema is checked (schemas of plain values aside).
	for name, ref := range doc.Components.Schemas {
		if _, ok := types[name]; !ok && ref.Value.Type.Is(openapi3.TypeObject) {
			t.Errorf("object schema %s is not compared with a Go type", name)
		}
	}
}

// TestOpenAPIValidatesRealObjects: objects the daemon sends validate
// against their schemas (formats, enums, nullable fields).
func TestOpenAPIValidatesRealObjects(t *testing.T) {
	doc := loadSpec(t)
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	check := func(schema string, v any) {
		t.Helper()
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var generic any
		if err := json.Unmarshal(b, &generic); err != nil {
			t.Fatal(err)
		}
		if err := doc.Components.Schemas[schema].Value.VisitJSON(generic); err != nil {
			t.Errorf("%s %s does not validate: %v", schema, b, err)
		}
	}
	var f api.Folder
	if err := json.Unmarshal([]byte(`{"id":"0123456789abcdef0123456789abcdef","name":"data","owner":"user:2b1a7c4e5d3f4a8e9c0b1f2e3d4c5b6a",
		"volume":"local","usage_mode":"general","permission":"rw","cloneable":false,"status":"ready","path":"/vol/x"}`), &f); err != nil {
		t.Fatal(err)
	}
	f.CreatedAt, f.UpdatedAt = now, now
	check("Folder", f)
	check("Error", api.Error{Code: api.CodeStateFull, Message: "state disk full"})
	check("Node", api.Node{ID: "n1", Status: api.NodeAlive, StartedAt: now, Sessions: []api.NodeSession{{ID: "s", Folders: []string{"a"}}}})
	check("UnpublishResult", api.UnpublishResult{Session: "s", Removed: []api.PublishedMount{}, Problems: []string{}})
	check("Volume", api.Volume{Volume: meta.Volume{Name: "local", Path: "/vol"}, Status: api.VolumeReady,
		VolumeSpace: &api.VolumeSpace{CapacityBytes: 1 << 30, UsedBytes: 1 << 20, FreeBytes: 1<<30 - 1<<20}})
	check("Volume", api.Volume{Volume: meta.Volume{Name: "gone"}, Status: api.VolumeUnavailable, Reason: "missing"})
	f.Status, f.Progress = meta.StatusCloning, &api.Progress{Op: api.OpClone, BytesDone: 1, StartedAt: now, Source: f.ID}
	check("Folder", f)
	check("ReachedFolder", api.ReachedFolder{Folder: f, ViewName: "data", Via: "invited", EffectivePermission: meta.PermRO})
	check("Policy", meta.Policy{MaxFolderCount: 3})
	check("Policy", meta.Policy{Volumes: map[string][]string{"local": {"create-vfolder", "clone"}}})
	check("Invitation", api.Invitation{Invitation: meta.Invitation{ID: f.ID, Folder: f.ID, Permission: meta.PermRO,
		State: meta.InvitePending, CreatedAt: now, UpdatedAt: now}, FolderName: "data", Direction: api.DirIncoming})
	check("Share", api.Share{Share: meta.Share{Folder: f.ID, Permission: meta.PermRW, CreatedAt: now, UpdatedAt: now},
		FolderName: "data", Owner: f.Owner, Via: "shared"})
	check("ImportProgress", api.ImportProgress{Volume: "local", Phase: api.ImportReading})
	check("ImportReport", api.ImportReport{Volume: "local", Imported: []api.ImportedFolder{{ID: f.ID, Owner: f.Owner}},
		Skipped: []api.ImportedFolder{}, Problems: []api.ImportProblem{}, Checks: []api.QuotaCheck{}})
	check("SSHKey", api.SSHKey{ID: "ab", Type: "ssh-ed25519", CreatedAt: now})
	// A wrong volume permission name fails.
	if err := doc.Components.Schemas["Policy"].Value.VisitJSON(map[string]any{"allowed_volume_perms": map[string]any{"local": []any{"fly"}}}); err == nil {
		t.Error("a Policy with an unknown volume permission validates")
	}
	check("FileEntry", api.FileEntry{Name: "a", Type: api.FileRegular, Size: 3, Mtime: now, Mode: "4755"})
	check("FileEntry", api.FileEntry{Name: "l", Type: api.FileSymlink, Mtime: now, Mode: "0777", Target: "../x"})
	check("FileListEnd", api.FileListEnd{End: true, Count: 2})
	check("FileListEnd", api.FileListEnd{End: true, Error: &api.Error{Code: api.CodeInternal, Message: "EIO"}})
	check("FileJob", api.FileJob{ID: "j", Op: "delete", FolderID: f.ID, Path: "/a", State: api.JobRunning, Started: now})
	check("FileJob", api.FileJob{ID: "j", Op: "delete", FolderID: f.ID, Path: "/a", State: api.JobFailed, Started: now,
		Finished: &now, Error: &api.Error{Code: api.CodeQuotaExceeded, Message: "x"}})
	check("Token", api.Token{Token: "a.b.c", User: "u", Perm: meta.PermRO, ExpiresAt: now})
	check("TokenRequest", api.TokenRequest{User: "u", Owner: f.Owner.String(), Perm: meta.PermWD, TTLSeconds: 60})
	if err := doc.Components.Schemas["FileEntry"].Value.VisitJSON(map[string]any{"name": "a", "type": "file", "size": 1.0,
		"mtime": "2026-01-02T03:04:05Z", "mode": "644"}); err == nil {
		t.Error("a FileEntry with a three-digit mode validates")
	}
	lim := int64(0)
	check("SetQuotaRequest", api.SetQuotaRequest{LimitBytes: &lim})
	// And a wrong one fails.
	if err := doc.Components.Schemas["Error"].Value.VisitJSON(map[string]any{"code": "nope", "message": "x"}); err == nil {
		t.Error("an Error with an unknown code validates")
	}
}
