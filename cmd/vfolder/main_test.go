package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/meta"
)

const (
	userUUID    = "0123456789abcdef0123456789abcdef"
	userDashed  = "01234567-89ab-cdef-0123-456789abcdef"
	projectUUID = "fedcba9876543210fedcba9876543210"
)

type result struct {
	code           int
	stdout, stderr string
}

// runCLI runs the CLI in-process against socket.
func runCLI(t *testing.T, socket string, stdin string, terminal bool, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	e := env{
		stdin:      strings.NewReader(stdin),
		stdout:     &out,
		stderr:     &errb,
		isTerminal: func() bool { return terminal },
	}
	full := append([]string{"vfolder", "--socket", socket}, args...)
	code := run(context.Background(), full, e)
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

func (f *fakeAPI) run(t *testing.T, args ...string) result {
	t.Helper()
	return runCLI(t, f.socket, "", false, args...)
}

func mustOK(t *testing.T, r result) result {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("exit %d, stderr %q, stdout %q", r.code, r.stderr, r.stdout)
	}
	return r
}

// createFolder creates a folder of the user userUUID.
func createFolder(t *testing.T, f *fakeAPI, name string, extra ...string) api.Folder {
	t.Helper()
	return createFolderAs(t, f, name, append([]string{"--user", userUUID}, extra...)...)
}

// createFolderAs creates a folder with the owner (and other flags) in args.
func createFolderAs(t *testing.T, f *fakeAPI, name string, args ...string) api.Folder {
	t.Helper()
	r := mustOK(t, f.run(t, append([]string{"--json", "create", name, "local"}, args...)...))
	var fo api.Folder
	if err := json.Unmarshal([]byte(r.stdout), &fo); err != nil {
		t.Fatalf("create --json printed %q: %v", r.stdout, err)
	}
	return fo
}

// failCase is a command line that must fail.
type failCase struct {
	name     string
	args     []string
	code     int
	stderr   string // substring of stderr
	noCalls  bool   // the CLI must not have called the API
	terminal bool   // stdin is a terminal
}

// runFailCases runs each case against f and checks the exit code, that
// stderr has a line starting with "vfolder: " and contains tc.stderr, and
// that no API call was made when tc.noCalls.
func runFailCases(t *testing.T, f *fakeAPI, cases []failCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f.calls()
			r := runCLI(t, f.socket, "", tc.terminal, tc.args...)
			if r.code != tc.code {
				t.Errorf("exit %d, want %d (stderr %q)", r.code, tc.code, r.stderr)
			}
			if !strings.HasPrefix(r.stderr, "vfolder: ") && !strings.Contains(r.stderr, "\nvfolder: ") {
				t.Errorf("stderr %q has no line starting with \"vfolder: \"", r.stderr)
			}
			if !strings.Contains(r.stderr, tc.stderr) {
				t.Errorf("stderr %q does not contain %q", r.stderr, tc.stderr)
			}
			if calls := f.calls(); tc.noCalls && len(calls) > 0 {
				t.Errorf("the CLI called the API: %v", calls)
			}
		})
	}
}

func TestExitCodes(t *testing.T) {
	f := startFakeAPI(t)
	existing := createFolder(t, f, "taken")
	f.calls()
	deadSock := filepath.Join(t.TempDir(), "none.sock")

	runFailCases(t, f, []failCase{
		// usage errors: exit 2
		{"no command", nil, 2, "no command given", true, false},
		{"unknown command", []string{"frobnicate"}, 2, `unknown command "frobnicate"`, true, false},
		{"unknown flag", []string{"list", "--bogus"}, 2, "flag provided but not defined", true, false},
		{"unknown global flag", []string{"--bogus", "list"}, 2, "flag provided but not defined", true, false},
		{"missing args", []string{"create", "x", "--user", userUUID}, 2, "create needs arguments NAME HOST, got 1", true, false},
		{"extra args", []string{"info", existing.ID, "more"}, 2, "info takes arguments REF, got 2", true, false},
		{"create without owner", []string{"create", "x", "local"}, 2, "needs the owner", true, false},
		{"both owners", []string{"create", "x", "local", "--user", userUUID, "--project", projectUUID}, 2, "not both", true, false},
		{"bad mode", []string{"create", "x", "local", "--user", userUUID, "--mode", "fast"}, 2, "--mode must be general, model or data", true, false},
		{"bad permission", []string{"create", "x", "local", "--user", userUUID, "--permission", "rwx"}, 2, "--permission must be ro, rw or wd", true, false},
		{"name without owner", []string{"info", "taken"}, 2, `"taken" is not a folder id`, true, false},
		{"all and trash", []string{"list", "--all", "--trash"}, 2, "not both", true, false},
		{"group without subcommand", []string{"quota-scope"}, 2, "needs a subcommand", true, false},
		{"unknown subcommand", []string{"policy", "delete"}, 2, `unknown subcommand "delete"`, true, false},
		{"quota without type", []string{"quota-scope", "get", "local", userUUID}, 2, "add -t user or -t project", true, false},
		{"quota bad type", []string{"quota-scope", "get", "local", userUUID, "-t", "group"}, 2, "-t must be user or project", true, false},
		{"quota type contradicts", []string{"quota-scope", "get", "local", "user:" + userUUID, "-t", "project"}, 2, "contradicts", true, false},
		{"quota set nothing", []string{"quota-scope", "set", "local", userUUID, "-t", "user"}, 2, "needs a LIMIT", true, false},
		{"policy set nothing", []string{"policy", "set", "--user", userUUID}, 2, "needs --max-folders", true, false},
		{"policy without owner", []string{"policy", "get"}, 2, "needs the owner", true, false},
		{"purge non-interactive", []string{"purge", existing.ID}, 2, "purge needs --confirm NAME", true, false},

		// refused values and API errors: exit 1
		{"bad user uuid", []string{"create", "x", "local", "--user", "bob"}, 1, `--user "bob" is not a UUID`, true, false},
		{"negative size", []string{"quota-scope", "set", "local", userUUID, "-5G", "-t", "user"}, 1, "negative", true, false},
		{"fractional bytes", []string{"quota-scope", "set", "local", userUUID, "1.5", "-t", "user"}, 1, "not a whole number of bytes", true, false},
		{"unknown unit", []string{"quota-scope", "set", "local", userUUID, "12XB", "-t", "user"}, 1, `unknown unit "XB"`, true, false},
		{"overflowing size", []string{"quota-scope", "set", "local", userUUID, "99999999999P", "-t", "user"}, 1, "too large", true, false},
		{"garbage size", []string{"quota-scope", "set", "local", userUUID, "abc", "-t", "user"}, 1, "not a number", true, false},
		{"check extra args", []string{"quota-scope", "check", "local", userUUID, "x", "-t", "user"}, 2, "check takes arguments HOST ID", true, false},
		{"check without type", []string{"quota-scope", "check", "local", userUUID}, 2, "add -t user or -t project", true, false},
		{"bad inode count", []string{"quota-scope", "set", "local", "user:" + userUUID, "--inodes", "-3"}, 1, "not a count", true, false},
		{"bad scope id", []string{"quota-scope", "get", "local", "user:nope"}, 1, "not a quota scope id", true, false},
		{"bad policy size", []string{"policy", "set", "--user", userUUID, "--max-quota-scope-size", "lots"}, 1, "--max-quota-scope-size", true, false},
		{"long name", []string{"create", strings.Repeat("n", 65), "local", "--user", userUUID}, 1, "65 characters", false, false},
		{"dotdot name", []string{"create", "..", "local", "--user", userUUID}, 1, "not allowed", false, false},
		{"slash name", []string{"create", "a/b", "local", "--user", userUUID}, 1, "must not contain '/'", false, false},
		{"reserved name", []string{"create", ".ssh", "local", "--user", userUUID}, 1, "reserved", false, false},
		{"duplicate name", []string{"create", "taken", "local", "--user", userUUID}, 1, "already has a folder", false, false},
		{"unknown volume", []string{"create", "x", "nas9", "--user", userUUID}, 1, `volume "nas9" not found`, false, false},
		{"unknown id", []string{"info", "99999999999999999999999999999999"}, 1, "not found", false, false},
		{"purge live folder", []string{"purge", existing.ID, "--confirm", "taken"}, 1, "not in the trash", false, false},
		{"purge interactive eof", []string{"purge", existing.ID}, 1, "no confirmation given", false, true},
		{"unreachable", []string{"--socket", deadSock, "list"}, 1, "cannot reach vfolderd at " + deadSock + ": is it running?", true, false},
	})
	// The refused commands changed nothing.
	r := mustOK(t, f.run(t, "--json", "list", "--all"))
	var all []api.Folder
	if err := json.Unmarshal([]byte(r.stdout), &all); err != nil {
		t.Fatal(err)
	}
	if len(all) != 1 || all[0].ID != existing.ID || all[0].Status != meta.StatusReady {
		t.Errorf("after the refused commands the folders are %+v", all)
	}
}

func TestUnreachableMessage(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	r := runCLI(t, sock, "", false, "volume", "list")
	want := "vfolder: cannot reach vfolderd at " + sock + ": is it running?\n"
	if r.code != 1 || r.stderr != want {
		t.Fatalf("got exit %d stderr %q, want 1 and %q", r.code, r.stderr, want)
	}
}

func TestFolderLifecycle(t *testing.T) {
	f := startFakeAPI(t)

	// volume list and its alias
	for _, args := range [][]string{{"volume", "list"}, {"list-hosts"}} {
		r := mustOK(t, f.run(t, args...))
		if !strings.Contains(r.stdout, "NAME") || !strings.Contains(r.stdout, "/vfroot/local") {
			t.Errorf("%v printed %q", args, r.stdout)
		}
	}

	// create, with flags after the positional arguments
	r := mustOK(t, f.run(t, "create", "data", "local", "--user", userDashed, "--mode", "model", "--permission", "ro", "--cloneable"))
	if !strings.Contains(r.stdout, `Created folder "data"`) {
		t.Errorf("create printed %q", r.stdout)
	}
	r = mustOK(t, f.run(t, "list", "--json", "--user", userUUID)) // global flag after the command
	var fs []api.Folder
	if err := json.Unmarshal([]byte(r.stdout), &fs); err != nil || len(fs) != 1 {
		t.Fatalf("list --json printed %q (%v)", r.stdout, err)
	}
	fo := fs[0]
	if fo.Name != "data" || fo.UsageMode != meta.ModeModel || fo.Permission != meta.PermRO || !fo.Cloneable || fo.Owner.UUID != userUUID {
		t.Errorf("created folder %+v", fo)
	}
	createFolder(t, f, "other")
	pr := createFolderAs(t, f, "shared", "--project", projectUUID)

	// table output is aligned: every line has the columns at the same offsets
	r = mustOK(t, f.run(t, "list"))
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 4 {
		t.Fatalf("list printed %d lines, want header + 3:\n%s", len(lines), r.stdout)
	}
	col := strings.Index(lines[0], "NAME")
	for _, l := range lines[1:] {
		if len(l) <= col || l[col-1] != ' ' || l[col] == ' ' {
			t.Errorf("column NAME not aligned in %q (header %q)", l, lines[0])
		}
	}
	r = mustOK(t, f.run(t, "list", "--project", projectUUID))
	if !strings.Contains(r.stdout, "shared") || strings.Contains(r.stdout, "other") {
		t.Errorf("list --project printed %q", r.stdout)
	}

	// info by name and by id
	r = mustOK(t, f.run(t, "info", "data", "--user", userUUID))
	if !strings.Contains(r.stdout, fo.ID) || !strings.Contains(r.stdout, fo.Path) {
		t.Errorf("info printed %q", r.stdout)
	}
	mustOK(t, f.run(t, "info", pr.ID))

	// rename: duplicate refused, then a real rename
	if r = f.run(t, "rename", fo.ID, "other"); r.code != 1 || !strings.Contains(r.stderr, "taken") {
		t.Errorf("rename to a taken name: %+v", r)
	}
	mustOK(t, f.run(t, "rename", "data", "--user", userUUID, "data2"))
	if got, _ := f.folder(fo.ID); got.Name != "data2" {
		t.Errorf("after rename the folder is %+v", got)
	}

	// delete says it can be restored; list hides it, --trash shows it
	r = mustOK(t, f.run(t, "delete", fo.ID))
	if !strings.Contains(r.stdout, "restore") {
		t.Errorf("delete printed %q", r.stdout)
	}
	if r = mustOK(t, f.run(t, "list")); strings.Contains(r.stdout, "data2") {
		t.Errorf("a trashed folder is listed: %q", r.stdout)
	}
	if r = mustOK(t, f.run(t, "list", "--trash")); !strings.Contains(r.stdout, "data2") || strings.Contains(r.stdout, "other") {
		t.Errorf("list --trash printed %q", r.stdout)
	}
	mustOK(t, f.run(t, "restore", fo.ID))
	if got, _ := f.folder(fo.ID); got.Status != meta.StatusReady {
		t.Errorf("after restore the folder is %+v", got)
	}

	// purge: wrong name refused (nothing changes), right name purges
	mustOK(t, f.run(t, "delete", fo.ID))
	if r = f.run(t, "purge", fo.ID, "--confirm", "data"); r.code != 1 || !strings.Contains(r.stderr, "does not match") {
		t.Errorf("purge with a wrong name: %+v", r)
	}
	if _, err := f.folder(fo.ID); err != nil {
		t.Fatal("a refused purge removed the folder")
	}
	r = mustOK(t, f.run(t, "purge", fo.ID, "--confirm", "data2", "--wait"))
	if !strings.Contains(r.stdout, "Purged") {
		t.Errorf("purge --wait printed %q", r.stdout)
	}
	if _, err := f.folder(fo.ID); err == nil {
		t.Error("the purged folder is still there")
	}

	// usage
	r = mustOK(t, f.run(t, "usage", pr.ID))
	if !strings.Contains(r.stdout, "1.5 MiB") || !strings.Contains(r.stdout, "1572864") {
		t.Errorf("usage printed %q", r.stdout)
	}
}

func TestPurgeInteractive(t *testing.T) {
	f := startFakeAPI(t)
	fo := createFolder(t, f, "scratch")
	mustOK(t, f.run(t, "delete", fo.ID))

	r := runCLI(t, f.socket, "scratc\n", true, "purge", fo.ID)
	if r.code != 1 || !strings.Contains(r.stderr, "type the folder name") && !strings.Contains(r.stderr, "Type the folder name") {
		t.Errorf("wrong typed name: %+v", r)
	}
	if _, err := f.folder(fo.ID); err != nil {
		t.Fatal("a wrongly confirmed purge removed the folder")
	}
	r = runCLI(t, f.socket, "scratch\n", true, "purge", fo.ID)
	if r.code != 0 {
		t.Fatalf("purge with the typed name: %+v", r)
	}
	if _, err := f.folder(fo.ID); err == nil {
		t.Error("the folder is still there")
	}
}

func TestQuotaScope(t *testing.T) {
	f := startFakeAPI(t)
	scopePath := "/v1/quota-scopes/local/user:" + userUUID

	r := mustOK(t, f.run(t, "quota-scope", "set", "local", userUUID, "10G", "-t", "user"))
	if got := f.calls(); !reflect.DeepEqual(got, []string{"PUT " + scopePath}) {
		t.Errorf("calls %v", got)
	}
	for _, want := range []string{"10 GiB (10737418240 bytes)", "1 GiB (1073741824 bytes)", "9 GiB", "10.0%"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("quota-scope set printed %q, missing %q", r.stdout, want)
		}
	}
	r = mustOK(t, f.run(t, "--json", "quota-scope", "set", "local", "user:"+userUUID, "500MiB", "--inodes", "1000"))
	var s api.QuotaScope
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatal(err)
	}
	if s.LimitBytes != 500<<20 || s.LimitInodes != 1000 {
		t.Errorf("after set 500MiB --inodes 1000: %+v", s)
	}
	r = mustOK(t, f.run(t, "qs", "get", "local", userDashed, "-t", "user"))
	for _, want := range []string{"limit:", "500 MiB", "used:", "free:", "0 B", "used %:", "204.8%", "12 of 1000"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("quota-scope get printed %q, missing %q", r.stdout, want)
		}
	}
	f.calls()
	mustOK(t, f.run(t, "quota-scope", "unset", "local", "user:"+userUUID))
	if got := f.calls(); !reflect.DeepEqual(got, []string{"DELETE " + scopePath}) {
		t.Errorf("calls %v", got)
	}
	r = mustOK(t, f.run(t, "quota-scope", "get", "local", "user:"+userUUID))
	if !strings.Contains(r.stdout, "unlimited") {
		t.Errorf("after unset: %q", r.stdout)
	}
	// "unlimited" as a LIMIT sets 0
	mustOK(t, f.run(t, "quota-scope", "set", "local", "user:"+userUUID, "1T"))
	r = mustOK(t, f.run(t, "--json", "quota-scope", "set", "local", "user:"+userUUID, "unlimited"))
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil || s.LimitBytes != 0 {
		t.Errorf("set unlimited: %q", r.stdout)
	}
}

func TestPolicy(t *testing.T) {
	f := startFakeAPI(t)
	mustOK(t, f.run(t, "policy", "set", "--project", projectUUID, "--max-folders", "5"))
	mustOK(t, f.run(t, "policy", "set", "--project", projectUUID, "--max-quota-scope-size", "2T"))
	r := mustOK(t, f.run(t, "--json", "policy", "get", "--project", projectUUID))
	var p api.Policy
	if err := json.Unmarshal([]byte(r.stdout), &p); err != nil {
		t.Fatal(err)
	}
	if p.MaxFolderCount != 5 || p.MaxQuotaScopeSize != 2<<40 {
		t.Errorf("policy after two partial sets: %+v (a set must keep the other field)", p)
	}
	r = mustOK(t, f.run(t, "policy", "get", "--project", projectUUID))
	if !strings.Contains(r.stdout, "2 TiB") || !strings.Contains(r.stdout, "5") {
		t.Errorf("policy get printed %q", r.stdout)
	}
	mustOK(t, f.run(t, "policy", "set", "--project", projectUUID, "--max-folders", "unlimited"))
	r = mustOK(t, f.run(t, "policy", "get", "--project", projectUUID))
	if !strings.Contains(r.stdout, "max folders:           unlimited") {
		t.Errorf("policy get printed %q", r.stdout)
	}
}

func TestJSONEmptyList(t *testing.T) {
	f := startFakeAPI(t)
	r := mustOK(t, f.run(t, "list", "--json"))
	if strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("empty list --json printed %q, want []", r.stdout)
	}
}

func TestHelp(t *testing.T) {
	f := startFakeAPI(t)
	for _, args := range [][]string{{"--help"}, {"help"}, {"create", "--help"}, {"quota-scope", "set", "--help"}, {"help", "purge"}} {
		r := f.run(t, args...)
		if r.code != 0 || !strings.Contains(r.stdout, "USAGE") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, r.code, r.stdout, r.stderr)
		}
	}
	r := mustOK(t, f.run(t, "--help"))
	if !strings.Contains(r.stdout, "powers of 1024") || !strings.Contains(r.stdout, "powers of 1000") {
		t.Errorf("the help does not document the size units: %q", r.stdout)
	}
}

func TestReorderArgs(t *testing.T) {
	app := newApp(&state{env: env{}})
	cases := []struct{ in, want []string }{
		{[]string{"vfolder"}, []string{"vfolder"}},
		{[]string{"vfolder", "list"}, []string{"vfolder", "list"}},
		{[]string{"vfolder", "purge", "ID", "--confirm", "name"}, []string{"vfolder", "purge", "--confirm", "name", "--", "ID"}},
		{[]string{"vfolder", "purge", "ID", "--confirm=name"}, []string{"vfolder", "purge", "--confirm=name", "--", "ID"}},
		{[]string{"vfolder", "list", "--json", "--all"}, []string{"vfolder", "--json", "list", "--all"}},
		{[]string{"vfolder", "--socket", "/s", "info", "x", "--socket", "/t", "-u", "U"}, []string{"vfolder", "--socket", "/s", "--socket", "/t", "info", "-u", "U", "--", "x"}},
		{[]string{"vfolder", "quota-scope", "set", "H", "ID", "-5G", "-t", "user"}, []string{"vfolder", "quota-scope", "set", "-t", "user", "--", "H", "ID", "-5G"}},
		{[]string{"vfolder", "create", "--", "-name", "H", "--user", "U"}, []string{"vfolder", "create", "--", "-name", "H", "--user", "U"}},
		{[]string{"vfolder", "create", "N", "H", "--cloneable", "--user", "U"}, []string{"vfolder", "create", "--cloneable", "--user", "U", "--", "N", "H"}},
		{[]string{"vfolder", "help", "create", "--x"}, []string{"vfolder", "help", "create", "--x"}},
		{[]string{"vfolder", "quota-scope", "--help"}, []string{"vfolder", "quota-scope", "--help"}},
		{[]string{"vfolder", "frob", "--json"}, []string{"vfolder", "frob", "--json"}},
		{[]string{"vfolder", "info", "x", "--confirm"}, []string{"vfolder", "info", "--confirm", "--", "x"}},
	}
	for _, tc := range cases {
		if got := reorderArgs(app, tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("reorderArgs(%q)\n got %q\nwant %q", tc.in, got, tc.want)
		}
	}
}

func TestQuotaCheck(t *testing.T) {
	f := startFakeAPI(t)
	path := "POST /v1/quota-scopes/local/user:" + userUUID + "/check"

	// No drift: exit 0, a table and a summary.
	r := mustOK(t, f.run(t, "quota-scope", "check", "local", userUUID, "-t", "user"))
	for _, want := range []string{"FOLDER", "LEDGER BYTES", "DISK BYTES", "data", "104857600", "unknown files:", "drift:", "nothing to repair", "disk bytes in directories:", "4096", "disk bytes in user xattrs:", "123"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("check printed %q, missing %q", r.stdout, want)
		}
	}
	if calls := f.calls(); len(calls) != 1 || calls[0] != path {
		t.Errorf("calls %v; want one %s", calls, path)
	}

	// Drift without --repair: exit 1, the findings, a hint.
	f.drift = 2
	r = f.run(t, "quota-scope", "check", "local", "user:"+userUUID)
	if r.code != 1 || !strings.Contains(r.stderr, "differs from storage (2 difference(s))") || !strings.Contains(r.stderr, "--repair") {
		t.Errorf("check with drift: exit %d, stderr %q", r.code, r.stderr)
	}
	for _, want := range []string{"direct0", "direct1", "unknown", "no (run with --repair)", "drift"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("check printed %q, missing %q", r.stdout, want)
		}
	}
	// --json prints the report and keeps the exit status.
	r = f.run(t, "--json", "quota-scope", "check", "local", userUUID, "-t", "user")
	var rep api.QuotaCheck
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("--json printed %q: %v", r.stdout, err)
	}
	if r.code != 1 || !rep.Drift || rep.UnknownFiles != 2 || rep.Repair {
		t.Errorf("--json check: exit %d, %+v", r.code, rep)
	}

	// --repair (after the arguments): exit 0.
	f.calls()
	r = mustOK(t, f.run(t, "quota-scope", "check", "local", userUUID, "--repair", "-t", "user"))
	if !strings.Contains(r.stdout, "yes (2)") {
		t.Errorf("check --repair printed %q", r.stdout)
	}
	mustOK(t, f.run(t, "quota-scope", "check", "local", userUUID, "-t", "user"))

	// A folder that could not be read: exit 1.
	f.incomplete = true
	r = f.run(t, "quota-scope", "check", "local", userUUID, "-t", "user")
	if r.code != 1 || !strings.Contains(r.stderr, "could not read everything") || !strings.Contains(r.stdout, "permission denied") {
		t.Errorf("incomplete check: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}

	// --timeout (given after the command) bounds a check too.
	f.mu.Lock()
	f.incomplete, f.checkDelay = false, 2*time.Second
	f.mu.Unlock()
	r = f.run(t, "quota-scope", "check", "local", userUUID, "-t", "user", "--timeout", "100ms")
	if r.code != 1 || !strings.Contains(r.stderr, "did not answer in time") {
		t.Errorf("check with --timeout 100ms: exit %d, stderr %q", r.code, r.stderr)
	}
	f.mu.Lock()
	f.checkDelay = 0
	f.mu.Unlock()

	// Unknown volume: the daemon's error, exit 1.
	r = f.run(t, "quota-scope", "check", "nas9", userUUID, "-t", "user")
	if r.code != 1 || !strings.Contains(r.stderr, `volume "nas9" not found`) {
		t.Errorf("check on an unknown volume: exit %d, stderr %q", r.code, r.stderr)
	}
}
