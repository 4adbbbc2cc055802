package server

import (
	"testing"

	"github.com/vfolder/vfolder/api"
)

func TestOptionsAndImportRoutes(t *testing.T) {
	ts := start(t, "", -1)
	var f api.Folder
	ts.ok(t, "POST", "/v1/folders", api.CreateFolderRequest{Name: "data", Volume: "local", Owner: mustScope(t, alice)}, &f, 201)

	var g api.Folder
	ts.ok(t, "PATCH", "/v1/folders/data/options?owner="+alice, `{"permission":"ro"}`, &g, 200)
	if g.Permission != "ro" || g.ID != f.ID {
		t.Errorf("PATCH options = %+v", g)
	}
	ts.fail(t, "PATCH", "/v1/folders/"+f.ID+"/options", `{}`, 400, api.CodeInvalid)
	ts.fail(t, "PATCH", "/v1/folders/"+f.ID+"/options", `{"perm":"ro"}`, 400, api.CodeInvalid)
	ts.fail(t, "PATCH", "/v1/folders/"+f.ID+"/options", `{"cloneable":true}`, 400, api.CodeInvalid)

	// Volume permissions: a policy without create-vfolder on local is 403.
	ts.ok(t, "PUT", "/v1/policies/"+alice, `{"allowed_volume_perms":{"local":["mount-in-session"]}}`, nil, 200)
	e := ts.fail(t, "POST", "/v1/folders", api.CreateFolderRequest{Name: "more", Volume: "local", Owner: mustScope(t, alice)}, 403, api.CodeForbidden)
	if e.Message == "" {
		t.Errorf("403 without a message")
	}
	ts.fail(t, "PUT", "/v1/policies/"+alice, `{"allowed_volume_perms":{"local":["fly"]}}`, 400, api.CodeInvalid)
	var p api.Policy
	ts.ok(t, "GET", "/v1/policies/"+alice, nil, &p, 200)
	if len(p.Volumes["local"]) != 1 {
		t.Errorf("policy = %+v", p)
	}

	// Volumes carry the capacity figures.
	var vs []api.Volume
	ts.ok(t, "GET", "/v1/volumes", nil, &vs, 200)
	if len(vs) != 1 || vs[0].VolumeSpace == nil || vs[0].CapacityBytes <= 0 {
		t.Errorf("volumes = %+v", vs)
	}

	// Import: no import yet; an empty import of a volume with only the
	// folder made above skips it.
	ts.fail(t, "GET", "/v1/volumes/local/import", nil, 404, api.CodeNotFound)
	var rep api.ImportReport
	ts.ok(t, "POST", "/v1/volumes/local/import", "", &rep, 200)
	if len(rep.Imported) != 0 || len(rep.Skipped) != 1 {
		t.Errorf("import = %+v", rep)
	}
	ts.fail(t, "POST", "/v1/volumes/local/import", `{"owner_kind":"group"}`, 400, api.CodeInvalid)
	ts.fail(t, "POST", "/v1/volumes/nowhere/import", `{}`, 404, api.CodeNotFound)
	var prog api.ImportProgress
	ts.ok(t, "GET", "/v1/volumes/local/import", nil, &prog, 200)
	if prog.Running || prog.Volume != "local" {
		t.Errorf("progress = %+v", prog)
	}
}
