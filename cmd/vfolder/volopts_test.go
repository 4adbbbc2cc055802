package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/vfolder/vfolder/api"
)

func TestPolicyVolumePerms(t *testing.T) {
	f := startFakeAPI(t)
	mustOK(t, f.run(t, "policy", "set", "--project", projectUUID, "--max-folders", "5"))
	mustOK(t, f.run(t, "policy", "set", "--project", projectUUID,
		"--volume-perms", "local=create-vfolder,mount-in-session", "--volume-perms", "cold=none"))
	r := mustOK(t, f.run(t, "--json", "policy", "get", "--project", projectUUID))
	var p api.Policy
	if err := json.Unmarshal([]byte(r.stdout), &p); err != nil {
		t.Fatal(err)
	}
	if p.MaxFolderCount != 5 || len(p.Volumes) != 2 || strings.Join(p.Volumes["local"], ",") != "create-vfolder,mount-in-session" ||
		p.Volumes["cold"] == nil || len(p.Volumes["cold"]) != 0 {
		t.Errorf("policy after --volume-perms: %+v", p)
	}
	r = mustOK(t, f.run(t, "policy", "get", "--project", projectUUID))
	if !strings.Contains(r.stdout, "cold=none local=create-vfolder,mount-in-session (other volumes: none)") {
		t.Errorf("policy get printed %q", r.stdout)
	}
	// One volume changes, the other stays.
	mustOK(t, f.run(t, "policy", "set", "--project", projectUUID, "--volume-perms", "cold=all"))
	r = mustOK(t, f.run(t, "--json", "policy", "get", "--project", projectUUID))
	p = api.Policy{}
	_ = json.Unmarshal([]byte(r.stdout), &p)
	if len(p.Volumes["cold"]) != len(volumePermNames) || len(p.Volumes["local"]) != 2 {
		t.Errorf("policy after cold=all: %+v", p)
	}
	mustOK(t, f.run(t, "policy", "set", "--project", projectUUID, "--all-volumes"))
	r = mustOK(t, f.run(t, "policy", "get", "--project", projectUUID))
	if !strings.Contains(r.stdout, "all (every volume)") {
		t.Errorf("policy get after --all-volumes printed %q", r.stdout)
	}
	for _, bad := range [][]string{
		{"--volume-perms", "local=fly"},
		{"--volume-perms", "=clone"},
		{"--volume-perms", "clone"},
		{"--volume-perms", "a=clone", "--volume-perms", "a=clone"},
		{"--volume-perms", "a=clone", "--all-volumes"},
	} {
		args := append([]string{"policy", "set", "--project", projectUUID}, bad...)
		if r := f.run(t, args...); r.code != exitUsage {
			t.Errorf("%q: exit %d (%s), want %d", bad, r.code, r.stderr, exitUsage)
		}
	}
}

func TestUpdateOptionsUsage(t *testing.T) {
	f := startFakeAPI(t)
	for _, bad := range [][]string{
		{"update-options", "0123456789abcdef0123456789abcdef"},
		{"update-options", "0123456789abcdef0123456789abcdef", "--perm", "rx"},
		{"update-options", "0123456789abcdef0123456789abcdef", "--cloneable", "maybe"},
		{"update-options", "0123456789abcdef0123456789abcdef", "--usage-mode", "fast"},
		{"update-options", "data", "--perm", "ro"},
	} {
		if r := f.run(t, bad...); r.code != exitUsage {
			t.Errorf("%q: exit %d (%s), want %d", bad, r.code, r.stderr, exitUsage)
		}
	}
}

func TestParseNames(t *testing.T) {
	in := "# names\n\n0123456789abcdef0123456789abcdef  alpha\n01234567-89ab-cdef-0123-456789abcdee beta project\n"
	got, err := parseNames(strings.NewReader(in), "names")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Name != "alpha" || got[0].OwnerKind != "" || got[1].FolderID != "0123456789abcdef0123456789abcdee" || got[1].OwnerKind != "project" {
		t.Errorf("parsed %+v", got)
	}
	for _, bad := range []string{"xyz name\n", "0123456789abcdef0123456789abcdef\n", "0123456789abcdef0123456789abcdef a b c\n", "0123456789abcdef0123456789abcdef a group\n"} {
		if _, err := parseNames(strings.NewReader(bad), "names"); err == nil || !strings.Contains(err.Error(), "line 1") {
			t.Errorf("%q: %v; want an error naming line 1", bad, err)
		}
	}
}

func TestImportProgressLine(t *testing.T) {
	scope := api.ImportProgress{Phase: api.ImportCounting, Scopes: 4, Counted: 1, ScopeBytes: 3 << 30}
	scope.Scope.Kind, scope.Scope.UUID = "user", "0123456789abcdef0123456789abcdef"
	for p, want := range map[*api.ImportProgress]string{
		{Phase: api.ImportReading}:                              "reading the volume's layout",
		{Phase: api.ImportRegister, Folders: 10, Registered: 3}: "registered 3 of 10 folder(s)",
		&scope: "counting usage: scope 2 of 4 (user:0123456789abcdef0123456789abcdef): 3 GiB so far",
	} {
		if got := importProgressLine(*p); !strings.Contains(got, want) {
			t.Errorf("progress line %q; want %q in it", got, want)
		}
	}
}
