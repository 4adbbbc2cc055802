package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/internal/testutil/etcdtest"
)

// Cluster mode end to end: a real etcd (etcdtest) and three vfolderd
// processes on one shared volume directory, each with its own state
// directory, socket, mount point and sessions directory.

const (
	clUser    = "5e1f0a2b3c4d4e5f8a9b0c1d2e3f4a5b"
	clProject = "6f2a1b3c4d5e4f6a9b0c1d2e3f4a5b6c"
	// clWithin is the propagation bound of the acceptance.
	clWithin = time.Second
	// clTTL is the nodes' lease: a killed node stops counting after it.
	clTTL = 2 * time.Second
)

// clNode is one daemon of a test cluster.
type clNode struct {
	*Daemon
	id       string
	sessions string
}

// clStart starts etcd and n daemons on one shared volume; extra are more
// flags of every daemon.
func clStart(t *testing.T, n int, extra ...string) (*etcdtest.Server, string, []*clNode) {
	t.Helper()
	RequireRoot(t)
	srv := etcdtest.Start(t)
	vol := filepath.Join(newDir(t), "vol")
	if err := os.MkdirAll(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	var nodes []*clNode
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("node%d", i)
		sess := mdSessionsDir(t)
		d := StartDaemon(t, DaemonOptions{
			Volumes: map[string]string{"local": vol},
			ExtraArgs: append([]string{"--etcd-endpoints", srv.Endpoint(), "--node-id", id, "--sessions-dir", sess,
				"--lease-ttl", clTTL.String(), "--etcd-timeout", "2s"}, extra...),
		})
		node := &clNode{Daemon: d, id: id, sessions: sess}
		// Before the daemon's own cleanup stops it: a daemon with
		// published sessions refuses the first SIGTERM.
		t.Cleanup(func() { node.unpublishAll(t) })
		nodes = append(nodes, node)
	}
	return srv, vol, nodes
}

func (n *clNode) unpublishAll(t *testing.T) {
	if n.PID() == 0 {
		return
	}
	c := api.NewClient(n.Socket)
	defer c.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ss, err := c.Sessions(ctx)
	if err != nil {
		t.Errorf("%s: listing sessions at the end: %v", n.id, err)
		return
	}
	for _, s := range ss {
		if r, err := c.Unpublish(ctx, s.ID); err != nil || len(r.Problems) > 0 {
			t.Errorf("%s: unpublishing %s at the end: %+v, %v", n.id, s.ID, r, err)
		}
	}
}

// view is the path of a user's standing view of name on the node.
func (n *clNode) view(name string) string {
	return filepath.Join(n.MountPoint, "users", clUser, name)
}

// clWait polls cond every 2 ms for up to d and returns how long it took.
func clWait(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Since(start)
}

func clExists(p string) bool { _, err := os.Stat(p); return err == nil }

// clChange runs change (a CLI call through one node), then waits until
// cond holds on every node in nodes, each within clWithin of the change's
// answer, and logs the delays: from the start of the call and from its
// answer.
func clChange(t *testing.T, what string, nodes []*clNode, change func(), cond func(n *clNode) bool) {
	t.Helper()
	start := time.Now()
	change()
	acked := time.Now()
	var ds []string
	for _, n := range nodes {
		clWait(t, clWithin-time.Since(acked), what+" on "+n.id, func() bool { return cond(n) })
		now := time.Now()
		ds = append(ds, fmt.Sprintf("%s %v (%v after the answer)", n.id, now.Sub(start).Round(time.Millisecond), now.Sub(acked).Round(time.Millisecond)))
	}
	t.Logf("%s: seen on %s", what, strings.Join(ds, ", "))
}

// folderGone reports whether the user's folder name has neither a view
// nor a record on the node (a purge: the record goes after the tree).
func (n *clNode) folderGone(t *testing.T, name string) bool {
	if clExists(n.view(name)) {
		return false
	}
	c := api.NewClient(n.Socket)
	defer c.CloseIdleConnections()
	fs, err := c.ListFolders(context.Background(), api.ListFoldersOptions{Deleted: api.DeletedInclude})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fs {
		if f.Name == name && f.Owner.UUID == clUser {
			return false
		}
	}
	return true
}

// viewMode is the mode of a view on the node ("" when there is none).
func (n *clNode) viewMode(t *testing.T, name string) string {
	c := api.NewClient(n.Socket)
	defer c.CloseIdleConnections()
	vs, err := c.Views(context.Background(), api.ViewFilter{Namespace: api.NSUsers, Key: clUser})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		if v.Name == name {
			return string(v.Mode)
		}
	}
	return ""
}

// TestClusterViewsInStep: what is done through one node reaches the views
// of the others within a second: create (and the name taken cluster-wide),
// rename, permission change (membership), trash, restore, purge.
func TestClusterViewsInStep(t *testing.T) {
	_, _, nodes := clStart(t, 3)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]

	clChange(t, "create through node1", []*clNode{n2, n3}, func() { n1.OK("create", "data", "local", "--user", clUser) },
		func(n *clNode) bool { return clExists(n.view("data")) })
	if r := n3.CLI("create", "data", "local", "--user", clUser); r.Code != 1 || !strings.Contains(r.Stderr, "data") {
		t.Errorf("the same name for the same owner through node3: %s", r)
	}
	// One volume: what node2 writes, node3 reads.
	if err := os.WriteFile(filepath.Join(n2.view("data"), "hello.txt"), []byte("from node2"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(n3.view("data"), "hello.txt")); err != nil || string(b) != "from node2" {
		t.Errorf("node3 reads %q, %v", b, err)
	}

	clChange(t, "rename through node2", []*clNode{n1, n3}, func() { n2.OK("rename", "data", "results", "--user", clUser) },
		func(n *clNode) bool { return clExists(n.view("results")) && !clExists(n.view("data")) })

	// Permission change: the user's membership of a project.
	n1.OK("create", "shared", "local", "--project", clProject, "--permission", "rw")
	clChange(t, "membership through node3", []*clNode{n1, n2},
		func() { n3.OK("member", "add", "--project", clProject, "--user", clUser, "--permission", "ro") },
		func(n *clNode) bool { return n.viewMode(t, "shared") == "ro" })
	if err := os.WriteFile(filepath.Join(n1.view("shared"), "x"), nil, 0o644); !errors.Is(err, syscall.EROFS) {
		t.Errorf("writing into a ro view on node1: %v; want EROFS", err)
	}
	clChange(t, "permission change through node2", []*clNode{n1, n3},
		func() { n2.OK("member", "add", "--project", clProject, "--user", clUser, "--permission", "wd") },
		func(n *clNode) bool { return n.viewMode(t, "shared") == "wd" })
	if err := os.WriteFile(filepath.Join(n1.view("shared"), "x"), nil, 0o644); err != nil {
		t.Errorf("writing after the permission became wd on node1: %v", err)
	}

	clChange(t, "trash through node1", []*clNode{n2, n3}, func() { n1.OK("delete", "results", "--user", clUser) },
		func(n *clNode) bool { return !clExists(n.view("results")) })
	clChange(t, "restore through node3", []*clNode{n1, n2}, func() { n3.OK("restore", "results", "--user", clUser) },
		func(n *clNode) bool { return clExists(n.view("results")) })
	n2.OK("delete", "results", "--user", clUser)
	clChange(t, "purge through node2", []*clNode{n1, n3}, func() { n2.OK("purge", "results", "--user", clUser, "--confirm", "results", "--wait") },
		func(n *clNode) bool { return n.folderGone(t, "results") })
	if r := n1.CLI("info", "results", "--user", clUser); r.Code != 1 {
		t.Errorf("info of a purged folder through node1: %s", r)
	}
	// The purged name is free again, through any node.
	n3.OK("create", "results", "local", "--user", clUser)
}

// TestClusterTrashOfMountedFolder: a folder mounted by a session on
// node2 cannot be trashed through node1 (the refusal names node2 and the
// session); one session id published on two nodes gets the same mounts;
// once node2 is killed and its lease has run out, the trash goes through;
// restarted, node2 registers again and cleans the session whose folder
// is in the trash.
func TestClusterTrashOfMountedFolder(t *testing.T) {
	_, _, nodes := clStart(t, 3)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	n1.OK("create", "work", "local", "--user", clUser)
	clChange(t, "create through node1", []*clNode{n2, n3}, func() { n1.OK("create", "code", "local", "--user", clUser) },
		func(n *clNode) bool { return clExists(n.view("code")) && clExists(n.view("work")) })

	// A cluster session: the same request on two nodes, the same mounts.
	var s2, s3 api.Session
	n2.JSON(&s2, "mount", "publish", "job-c", "--user", clUser, "code=/workspace:ro", "work")
	n3.JSON(&s3, "mount", "publish", "job-c", "--user", clUser, "code=/workspace:ro", "work")
	norm := func(s api.Session, sessDir string) string {
		var out []string
		for _, m := range s.Mounts {
			out = append(out, fmt.Sprintf("%s %s %s %s %s", m.Name, m.FolderID, m.Target, m.Mode, strings.TrimPrefix(m.HostPath, sessDir)))
		}
		return strings.Join(out, "\n")
	}
	if a, b := norm(s2, n2.sessions), norm(s3, n3.sessions); a != b || len(s2.Mounts) != 2 {
		t.Errorf("the cluster session's mounts differ:\nnode2:\n%s\nnode3:\n%s", a, b)
	}
	mdUnpublish(t, n3.Daemon, "job-c", 2)
	mdUnpublish(t, n2.Daemon, "job-c", 2)

	n2.OK("mount", "publish", "job-1", "--user", clUser, "work")
	r := n1.CLI("delete", "work", "--user", clUser)
	if r.Code != 1 || !strings.Contains(r.Stderr, "session job-1 on node node2") {
		t.Fatalf("trash through node1 of a folder mounted on node2: %s", r)
	}
	var ns []api.Node
	n3.JSON(&ns, "node", "list")
	if len(ns) != 3 || ns[1].ID != "node2" || ns[1].Status != api.NodeAlive || len(ns[1].Sessions) != 1 || ns[1].Sessions[0].ID != "job-1" {
		t.Errorf("node list through node3: %+v", ns)
	}
	if out := n3.OK("node", "list").Stdout; !strings.Contains(out, "job-1 (1 folder)") || !strings.Contains(out, "alive (this node)") {
		t.Errorf("node list:\n%s", out)
	}

	// SIGKILL: node2's lease runs out, its claims with it.
	n2.Kill()
	killed := time.Now()
	var took time.Duration
	for {
		r := n1.CLI("delete", "work", "--user", clUser)
		if r.Code == 0 {
			took = time.Since(killed)
			break
		}
		if !strings.Contains(r.Stderr, "node2") {
			t.Fatalf("trash after node2 was killed: %s", r)
		}
		if time.Since(killed) > clTTL+10*time.Second {
			t.Fatalf("trash still refused %v after node2 was killed (lease %v): %s", time.Since(killed), clTTL, r)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("trash went through %v after node2 was killed (lease TTL %v)", took.Round(time.Millisecond), clTTL)
	n1.JSON(&ns, "node", "list")
	if ns[1].Status != api.NodeExpired || len(ns[1].Sessions) > 0 {
		t.Errorf("node2 after the kill: %+v", ns[1])
	}

	// Restarted, node2 registers again and cleans job-1: its folder is in
	// the trash.
	n2.Start()
	var left []api.Session
	n2.JSON(&left, "mount", "list")
	if len(left) != 0 {
		t.Errorf("sessions on node2 after its restart: %+v; want job-1 cleaned", left)
	}
	if m := mdMountsBelow(n2.sessions); len(m) > 0 {
		t.Errorf("mounts left in node2's sessions directory: %v", m)
	}
	n1.JSON(&ns, "node", "list")
	if ns[1].Status != api.NodeAlive || len(ns[1].Sessions) != 0 {
		t.Errorf("node2 after its restart: %+v", ns[1])
	}
	// And a trashed folder cannot be mounted anywhere.
	if r := n3.CLI("mount", "publish", "job-2", "--user", clUser, "work"); r.Code != 1 {
		t.Errorf("publishing a trashed folder through node3: %s", r)
	}
}

// TestClusterEtcdOutage: with etcd stopped, metadata changes fail with
// "cluster store unreachable" within the bound while views and I/O go
// on; after etcd is back the nodes catch up by themselves.
func TestClusterEtcdOutage(t *testing.T) {
	srv, _, nodes := clStart(t, 3)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	clChange(t, "create through node1", []*clNode{n2, n3}, func() { n1.OK("create", "keep", "local", "--user", clUser) },
		func(n *clNode) bool { return clExists(n.view("keep")) })

	srv.Stop()
	down := time.Now()
	r := n1.CLI("create", "during", "local", "--user", clUser)
	if r.Code != 1 || !strings.Contains(r.Stderr, "cluster store unreachable") {
		t.Errorf("create while etcd is down: %s", r)
	}
	r = n2.CLI("delete", "keep", "--user", clUser)
	if r.Code != 1 || !strings.Contains(r.Stderr, "cluster store unreachable") {
		t.Errorf("trash while etcd is down: %s", r)
	}
	if took := time.Since(down); took > 20*time.Second {
		t.Errorf("two refused changes took %v with a 2s bound", took)
	}
	// Views and I/O go on, across nodes (one volume).
	for i, n := range nodes {
		p := filepath.Join(n.view("keep"), fmt.Sprintf("during-%d.txt", i))
		if err := os.WriteFile(p, []byte(n.id), 0o644); err != nil {
			t.Errorf("writing through %s while etcd is down: %v", n.id, err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(n3.view("keep"), "during-0.txt")); err != nil || string(b) != "node1" {
		t.Errorf("node3 reads what node1 wrote while etcd is down: %q, %v", b, err)
	}
	// Longer than the lease: the nodes register again afterwards.
	time.Sleep(clTTL + time.Second)

	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	for {
		r := n1.CLI("create", "after", "local", "--user", clUser)
		if r.Code == 0 {
			break
		}
		if !strings.Contains(r.Stderr, "cluster store unreachable") || time.Since(back) > 30*time.Second {
			t.Fatalf("create after etcd came back: %s", r)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("metadata changes work again %v after etcd was restarted", time.Since(back).Round(time.Millisecond))
	for _, n := range []*clNode{n2, n3} {
		d := clWait(t, 15*time.Second, "the create after the outage on "+n.id, func() bool { return clExists(n.view("after")) })
		t.Logf("%s caught up %v after the create", n.id, d.Round(time.Millisecond))
	}
	clWait(t, 15*time.Second, "every node alive again", func() bool {
		var ns []api.Node
		n3.JSON(&ns, "node", "list")
		for _, x := range ns {
			if x.Status != api.NodeAlive {
				return false
			}
		}
		return len(ns) == 3
	})
	clChange(t, "trash after the outage", []*clNode{n1, n3}, func() { n2.OK("delete", "keep", "--user", clUser) },
		func(n *clNode) bool { return !clExists(n.view("keep")) })
}

// TestClusterQuickRestart: a node killed and restarted before its lease
// runs out keeps its sessions' folders out of the trash the whole time:
// the restarted daemon takes over its registration and claims the
// folders again before the earlier run's claims go.
func TestClusterQuickRestart(t *testing.T) {
	_, _, nodes := clStart(t, 2)
	n1, n2 := nodes[0], nodes[1]
	clChange(t, "create through node1", []*clNode{n2}, func() { n1.OK("create", "busy", "local", "--user", clUser) },
		func(n *clNode) bool { return clExists(n.view("busy")) })
	n2.OK("mount", "publish", "job-q", "--user", clUser, "busy")

	stop := make(chan struct{})
	refusals, accepted := 0, 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			// Not RunCLI: it may end the test, which only the test's
			// own goroutine may do.
			var stderr strings.Builder
			cmd := exec.Command(n1.CLIBin, "--socket", n1.Socket, "delete", "busy", "--user", clUser)
			cmd.Env, cmd.Stderr = cleanEnv(), &stderr
			err := cmd.Run()
			switch {
			case err == nil:
				accepted++
				return
			case strings.Contains(stderr.String(), "job-q"):
				refusals++
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	n2.Kill()
	n2.Start()
	// Past the killed run's lease: only the restarted daemon protects
	// the folder now.
	time.Sleep(clTTL + time.Second)
	close(stop)
	<-done
	if accepted > 0 {
		t.Fatalf("the folder was trashed around node2's restart (%d refusals before)", refusals)
	}
	t.Logf("trash refused %d times around node2's quick restart", refusals)
	var ss []api.Session
	n2.JSON(&ss, "mount", "list")
	if len(ss) != 1 || ss[0].ID != "job-q" {
		t.Errorf("sessions on node2 after the restart: %+v", ss)
	}
	if b, err := os.ReadDir(filepath.Join(n2.MountPoint, "sessions", "job-q", "busy")); err != nil {
		t.Errorf("the session's view after the restart: %v %v", b, err)
	}
	mdUnpublish(t, n2.Daemon, "job-q", 1)
	n1.OK("delete", "busy", "--user", clUser)
}
