package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/vfolder/vfolder/api"
)

func TestNodeList(t *testing.T) {
	f := startFakeAPI(t)
	r := mustOK(t, f.run(t, "node", "list"))
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 {
		t.Fatalf("output:\n%s\nwant a header and two nodes", r.stdout)
	}
	for _, want := range []string{"NODE", "HOST", "STATUS", "SESSIONS", "GRANTS"} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("header %q lacks %s", lines[0], want)
		}
	}
	for _, want := range []string{"gpu-1", "gpu-1.lan", "alive (this node)", "job-7 (2 folders), job-8 (1 folder)"} {
		if !strings.Contains(lines[1], want) {
			t.Errorf("line %q lacks %q", lines[1], want)
		}
	}
	if f := strings.Fields(lines[2]); f[0] != "gpu-2" || f[3] != "expired" || f[len(f)-1] != "-" || f[len(f)-2] != "-" {
		t.Errorf("line %q: want gpu-2 expired with no sessions and no grants", lines[2])
	}

	r = mustOK(t, f.run(t, "--json", "node", "ls"))
	var ns []api.Node
	if err := json.Unmarshal([]byte(r.stdout), &ns); err != nil || len(ns) != 2 || ns[0].Sessions[0].ID != "job-7" {
		t.Errorf("--json: %v %+v", err, ns)
	}
	if r := f.run(t, "node", "list", "extra"); r.code != exitUsage {
		t.Errorf("node list extra: exit %d", r.code)
	}
}
