package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/meta"
)

// Defects of the daemon's host side: what its mounts let other host
// users reach, what a crash leaves mounted, what its log says under
// concurrent folder changes.

// errorLines returns the daemon's log lines at error level (zerolog
// JSON, as the daemon writes when its output is not a terminal).
func errorLines(d *Daemon) []string {
	b, _ := os.ReadFile(d.LogPath)
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, `"level":"error"`) || strings.Contains(l, `"level":"fatal"`) {
			out = append(out, l)
		}
	}
	return out
}

// TestConcurrentLifecycleLogsNoErrors: folders of one owner created,
// trashed and purged concurrently all succeed, and the daemon logs no
// error for it (the views of folders still being made are not errors).
func TestConcurrentLifecycleLogsNoErrors(t *testing.T) {
	d := StartDaemon(t, DaemonOptions{})
	c := d.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	owner := meta.ScopeID{Kind: meta.KindUser, UUID: "7b0c1d2e3f404142a3b4c5d6e7f80910"}
	// Folders that stay: their views are recomputed with every change.
	for _, n := range []string{"keep1", "keep2"} {
		if _, err := c.CreateFolder(ctx, api.CreateFolderRequest{Name: n, Volume: "local", Owner: owner}); err != nil {
			t.Fatal(err)
		}
	}
	const workers, rounds = 6, 12
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				name := fmt.Sprintf("w%d-r%d", w, r)
				f, err := c.CreateFolder(ctx, api.CreateFolderRequest{Name: name, Volume: "local", Owner: owner})
				if err != nil {
					t.Errorf("create %s: %v", name, err)
					return
				}
				if _, err := c.TrashFolder(ctx, f.ID, meta.ScopeID{}); err != nil {
					t.Errorf("trash %s: %v", name, err)
					return
				}
				if _, err := c.PurgeFolder(ctx, f.ID, meta.ScopeID{}, name); err != nil {
					t.Errorf("purge %s: %v", name, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if lines := errorLines(d); len(lines) > 0 {
		n := len(lines)
		if n > 10 {
			lines = lines[:10]
		}
		t.Errorf("%d error lines in the daemon's log while every request succeeded; first ones:\n%s", n, strings.Join(lines, "\n"))
	}
	// The folders that stayed still have their views.
	for _, n := range []string{"keep1", "keep2"} {
		p := filepath.Join(d.MountPoint, "users", owner.UUID, n)
		if _, err := os.Stat(p); err != nil {
			t.Errorf("view of %s: %v", n, err)
		}
	}
}

// TestSessionsDirAfterCrash: a daemon killed while a session is published
// leaves its mounts; the next start takes them over, and once the session
// is unpublished a clean stop leaves nothing of the daemon's mounted (the
// self-bind of the sessions directory included).
func TestSessionsDirAfterCrash(t *testing.T) {
	d, sess := mdStartDaemon(t)
	u := []string{"--user", mdUser}
	var f api.Folder
	d.JSON(&f, append([]string{"create", "data", "local"}, u...)...)
	var s api.Session
	d.JSON(&s, append([]string{"mount", "publish", "crash-1", "data", "--uid", "1000", "--gid", "1000"}, u...)...)
	d.Kill()
	if len(mountsUnder(sess)) == 0 {
		t.Fatalf("nothing mounted under %s after the kill; the test proves nothing", sess)
	}
	d.Start()
	mdUnpublish(t, d, "crash-1", 1)
	d.Stop()
	for _, dir := range []string{sess, d.Dir} {
		if left := mountsUnder(dir); len(left) > 0 {
			t.Errorf("mounts left under %s after unpublish and a clean stop: %v", dir, left)
		}
	}

	// Killed after the last session was unpublished: the self-bind is
	// all that is left, and the next clean start and stop release it.
	d.Start()
	d.JSON(&s, append([]string{"mount", "publish", "crash-2", "data", "--uid", "1000", "--gid", "1000"}, u...)...)
	mdUnpublish(t, d, "crash-2", 1)
	d.Kill()
	d.Start()
	d.Stop()
	for _, dir := range []string{sess, d.Dir} {
		if left := mountsUnder(dir); len(left) > 0 {
			t.Errorf("mounts left under %s after a kill with no session, a start and a clean stop: %v", dir, left)
		}
	}
}

// runAs runs a command as uid:gid (no supplementary groups) and returns
// its combined output and error.
func runAs(uid, gid uint32, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}}
	cmd.Dir = "/"
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestSessionsHostReach: on the host, nobody but root reaches a published
// session or the FUSE namespace: not uid 65534, not the session's own uid
// (whose files the views show as its own), neither through the sessions
// directory nor through the mount point. Root does (the test would prove
// nothing otherwise).
func TestSessionsHostReach(t *testing.T) {
	d, sess := mdStartDaemon(t)
	// The test's directories are open to all, so that only the daemon's
	// own directories keep others out.
	for _, dir := range []string{d.Dir, filepath.Dir(sess)} {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	u := []string{"--user", mdUser}
	var f api.Folder
	d.JSON(&f, append([]string{"create", "data", "local"}, u...)...)
	mdWriteMarker(t, f, "marker", "secret")
	var s api.Session
	d.JSON(&s, append([]string{"mount", "publish", "reach", "data", "--uid", "1000", "--gid", "1000"}, u...)...)
	if len(s.Mounts) != 1 {
		t.Fatalf("published %+v", s.Mounts)
	}
	hostPath := s.Mounts[0].HostPath
	paths := []string{
		hostPath,
		filepath.Join(d.MountPoint, "sessions", "reach", s.Mounts[0].Name),
		filepath.Join(d.MountPoint, "users", mdUser, "data"),
	}
	for _, p := range paths {
		if out, err := runAs(0, 0, "cat", filepath.Join(p, "marker")); err != nil || out != "secret" {
			t.Fatalf("root cannot read %s/marker: %q %v", p, out, err)
		}
	}
	for _, id := range []uint32{65534, 1000} {
		for _, p := range paths {
			if out, err := runAs(id, id, "cat", filepath.Join(p, "marker")); err == nil {
				t.Errorf("uid %d read %s/marker: %q", id, p, out)
			} else if !strings.Contains(out, "Permission denied") {
				t.Logf("uid %d reading %s/marker: %v %q", id, p, err, out)
			}
			if out, err := runAs(id, id, "ls", p); err == nil {
				t.Errorf("uid %d listed %s: %q", id, p, out)
			}
			w := filepath.Join(p, fmt.Sprintf("from-%d", id))
			if out, err := runAs(id, id, "sh", "-c", "echo x > "+w); err == nil {
				t.Errorf("uid %d wrote %s: %q", id, w, out)
			}
		}
	}
	ents, err := os.ReadDir(f.Path)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 {
		t.Errorf("the folder holds %v; want the marker alone", ents)
	}
}
