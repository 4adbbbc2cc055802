package server

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/internal/testutil"
)

// startLedger runs a server over a badger store with the quota ledger in
// the same database.
func startLedger(t *testing.T) *testServer {
	t.Helper()
	store, ledger := testutil.OpenLedger(t, filepath.Join(t.TempDir(), "meta"))
	ts := startWith(t, "", -1, store, ledger)
	if err := ts.svc.StartQuota(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Runs before the server's cleanup, which closes the store.
	t.Cleanup(func() {
		if err := ledger.Close(); err != nil {
			t.Errorf("ledger Close: %v", err)
		}
	})
	return ts
}

// TestQuotaLimitInput: every limit that is not a whole number of bytes in
// range is refused with a message that says what is wrong, and nothing
// changes.
func TestQuotaLimitInput(t *testing.T) {
	ts := start(t, "", -1)
	path := "/v1/quota-scopes/local/" + alice
	var q api.QuotaScope
	ts.ok(t, "PUT", path, `{"limit_bytes":1048576}`, &q, 200)
	for _, tc := range []struct {
		name, body, msg string
	}{
		{"negative", `{"limit_bytes":-5368709120}`, "negative"},
		{"negative inodes", `{"limit_inodes":-1}`, "negative"},
		{"negative huge", `{"limit_bytes":-99999999999999999999999}`, "negative"},
		{"fractional bytes", `{"limit_bytes":1.5}`, "not a whole number of bytes"},
		{"fractional inodes", `{"limit_inodes":0.5}`, "not a whole number of inodes"},
		{"overflow", `{"limit_bytes":9223372036854775808}`, "too large"},
		{"overflow like 99999999999P", `{"limit_bytes":112589990684151774822400}`, "too large"},
		{"overflow exponent", `{"limit_bytes":1e30}`, "too large"},
		{"string with unknown unit", `{"limit_bytes":"12XB"}`, `got the string "12XB"`},
		{"string garbage", `{"limit_bytes":"abc"}`, "must be a JSON number"},
		{"bool", `{"limit_bytes":true}`, "must be a whole number of bytes"},
		{"object", `{"limit_bytes":{}}`, "must be a whole number of bytes"},
		{"unknown field", `{"limit":1}`, "unknown field"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := ts.fail(t, "PUT", path, tc.body, 400, api.CodeInvalid)
			if !strings.Contains(e.Message, tc.msg) {
				t.Errorf("message %q does not contain %q", e.Message, tc.msg)
			}
		})
	}
	ts.ok(t, "GET", path, nil, &q, 200)
	if q.LimitBytes != 1<<20 || q.LimitInodes != 0 {
		t.Errorf("a refused request changed the scope: %+v", q)
	}
	// Accepted forms: the maximum, 0, null (kept), an integral exponent.
	ts.ok(t, "PUT", path, `{"limit_bytes":9223372036854775807}`, &q, 200)
	if q.LimitBytes != 1<<63-1 {
		t.Errorf("max limit = %d", q.LimitBytes)
	}
	ts.ok(t, "PUT", path, `{"limit_bytes":1e9,"limit_inodes":null}`, &q, 200)
	if q.LimitBytes != 1e9 || q.LimitInodes != 0 {
		t.Errorf("1e9 = %+v", q)
	}
	ts.ok(t, "PUT", path, `{"limit_bytes":0}`, &q, 200)
	if q.LimitBytes != 0 {
		t.Errorf("0 = %+v", q)
	}
}

func TestPolicyInput(t *testing.T) {
	ts := start(t, "", -1)
	path := "/v1/policies/" + alice
	for _, tc := range []struct{ body, msg string }{
		{`{"max_quota_scope_size":-1}`, "negative"},
		{`{"max_quota_scope_size":1.5}`, "not a whole number of bytes"},
		{`{"max_quota_scope_size":1e40}`, "too large"},
		{`{"max_quota_scope_size":"10G"}`, "JSON number"},
		{`{"max_vfolder_count":2.5}`, "not a whole number of folders"},
	} {
		e := ts.fail(t, "PUT", path, tc.body, 400, api.CodeInvalid)
		if !strings.Contains(e.Message, tc.msg) {
			t.Errorf("PUT %s: %q does not contain %q", tc.body, e.Message, tc.msg)
		}
	}
	var p api.Policy
	ts.ok(t, "PUT", path, `{"max_quota_scope_size":1073741824,"max_vfolder_count":null}`, &p, 200)
	if p.MaxQuotaScopeSize != 1<<30 || p.MaxFolderCount != 0 {
		t.Errorf("policy = %+v", p)
	}
}

func FuzzParseLimit(f *testing.F) {
	for _, s := range []string{"0", "-1", "1.5", "1e9", "1e30", `"12XB"`, "9223372036854775807", "9223372036854775808", "-0", "null", "true", "1.0", "00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseLimit("limit_bytes", "bytes", []byte(s))
		if err != nil {
			if !strings.Contains(err.Error(), "limit_bytes") {
				t.Errorf("error %q does not name the field", err)
			}
			return
		}
		if n != nil && *n < 0 {
			t.Errorf("parseLimit(%q) = %d: negative accepted", s, *n)
		}
	})
}

func TestQuotaCheckRoute(t *testing.T) {
	ts := startLedger(t)
	owner := mustScope(t, alice)
	var f api.Folder
	ts.ok(t, "POST", "/v1/folders", api.CreateFolderRequest{Name: "data", Volume: "local", Owner: owner}, &f, 201)
	path := "/v1/quota-scopes/local/" + alice
	var rep api.QuotaCheck
	ts.ok(t, "POST", path+"/check", nil, &rep, 200)
	if rep.Drift || !rep.Complete || len(rep.Folders) != 1 || rep.Folders[0].Name != "data" {
		t.Fatalf("check of a clean scope = %+v", rep)
	}
	if err := os.WriteFile(filepath.Join(f.Path, "direct"), []byte("0123456789"), 0o644); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(f.Path)
	if err != nil {
		t.Fatal(err)
	}
	root := st.Size() // the folder root, charged from the first check on
	ts.ok(t, "POST", path+"/check", `{"repair":false}`, &rep, 200)
	if !rep.Drift || rep.Repaired || rep.UnknownFiles != 1 || rep.Folders[0].DiskBytes != 10+root || rep.Folders[0].LedgerBytes != root {
		t.Fatalf("check = %+v", rep)
	}
	var q api.QuotaScope
	ts.ok(t, "GET", path, nil, &q, 200)
	if q.UsedBytes != root {
		t.Errorf("used %d after a check without repair", q.UsedBytes)
	}
	ts.ok(t, "POST", path+"/check", `{"repair":true}`, &rep, 200)
	if !rep.Drift || !rep.Repaired || rep.UsedBytes != 10+root {
		t.Fatalf("check with repair = %+v", rep)
	}
	ts.ok(t, "GET", path, nil, &q, 200)
	if q.UsedBytes != 10+root || q.UsedInodes != 1 {
		t.Errorf("scope after repair = %+v", q)
	}
	var u api.FolderUsage
	ts.ok(t, "GET", "/v1/folders/"+f.ID+"/usage", nil, &u, 200)
	if u.UsedBytes != 10+root || u.UsedInodes != 1 {
		t.Errorf("folder usage = %+v", u)
	}

	ts.fail(t, "POST", path+"/check", `{"repair":"yes"}`, 400, api.CodeInvalid)
	ts.fail(t, "POST", path+"/check", `{"fix":true}`, 400, api.CodeInvalid)
	ts.fail(t, "POST", "/v1/quota-scopes/nowhere/"+alice+"/check", nil, 404, api.CodeNotFound)
	ts.fail(t, "POST", "/v1/quota-scopes/local/"+project+"/check", nil, 404, api.CodeNotFound)
	ts.fail(t, "GET", path+"/check", nil, 405, api.CodeInvalid)

	// Through the client.
	c := api.NewClient(ts.socket)
	defer c.CloseIdleConnections()
	rep, err = c.CheckQuotaScope(context.Background(), "local", owner, api.QuotaCheckRequest{})
	if err != nil || rep.Drift || rep.UsedBytes != 10+root {
		t.Errorf("client check = %+v, %v", rep, err)
	}
}

// TestQuotaCheckWithoutLedger: a daemon without a ledger answers 503.
func TestQuotaCheckWithoutLedger(t *testing.T) {
	ts := start(t, "", -1)
	ts.ok(t, "PUT", "/v1/quota-scopes/local/"+alice, `{"limit_bytes":1}`, nil, 200)
	ts.fail(t, "POST", "/v1/quota-scopes/local/"+alice+"/check", nil, 503, api.CodeUnavailable)
}
