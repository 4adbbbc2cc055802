package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/meta"
)

// TestCrashDuringCreates kills vfolderd with SIGKILL in the middle of a
// burst of creates (API clients and CLI processes in parallel), restarts it
// on the same state directory and checks that nothing is half-written:
// every record is whole and unique, every record's directory exists, every
// create that was acknowledged survived, and creating works again. Five
// rounds on the same state.
func TestCrashDuringCreates(t *testing.T) {
	d := StartDaemon(t, DaemonOptions{})
	vol := d.Volumes["local"]
	owners := []string{"user:" + userUUID, "project:" + projectHex}

	acked := map[string]api.Folder{} // id -> folder, acknowledged before a kill
	for round := 0; round < 5; round++ {
		var (
			mu        sync.Mutex
			ok        atomic.Int64
			cut       atomic.Int64 // creates in flight when the daemon died
			stop      atomic.Bool
			wg        sync.WaitGroup
			roundAcks []api.Folder
		)
		worker := func(g int, useCLI bool) {
			defer wg.Done()
			owner, _ := meta.ParseScopeID(owners[(g/2)%len(owners)])
			c := api.NewClient(d.Socket)
			defer c.CloseIdleConnections()
			for i := 0; !stop.Load(); i++ {
				name := fmt.Sprintf("r%d-g%d-%d", round, g, i)
				var f api.Folder
				var err error
				if useCLI {
					flag := "--user"
					if owner.Kind == meta.KindProject {
						flag = "--project"
					}
					r := d.CLI("--json", "create", name, "local", flag, owner.UUID)
					if r.Code != 0 {
						err = fmt.Errorf("%s", r.Stderr)
					} else {
						// Its id is looked up by name after the restart.
						f = api.Folder{Folder: meta.Folder{Name: name, Owner: owner}}
					}
				} else {
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					f, err = c.CreateFolder(ctx, api.CreateFolderRequest{Name: name, Volume: "local", Owner: owner})
					cancel()
				}
				if err != nil {
					if stop.Load() {
						cut.Add(1)
						return
					}
					// Before the kill every create must succeed.
					t.Errorf("round %d: create %s failed while the daemon was up: %v", round, name, err)
					return
				}
				mu.Lock()
				roundAcks = append(roundAcks, f)
				mu.Unlock()
				ok.Add(1)
			}
		}
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go worker(g, g%2 == 1)
		}
		// Kill once the burst is well under way; the kill point moves from
		// round to round.
		target := int64(8 + 6*round)
		deadline := time.Now().Add(60 * time.Second)
		for ok.Load() < target && time.Now().Before(deadline) && !t.Failed() {
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(time.Duration(round*7) * time.Millisecond)
		stop.Store(true)
		d.Kill()
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		if ok.Load() < target {
			t.Fatalf("round %d: only %d creates succeeded in 60s", round, ok.Load())
		}

		d.Start()
		fs := listAll(d)
		byName := map[string]api.Folder{}
		for _, f := range fs {
			key := f.Owner.String() + "/" + f.Name
			if other, dup := byName[key]; dup {
				t.Errorf("round %d: two folders named %q of %s: %s and %s", round, f.Name, f.Owner, other.ID, f.ID)
			}
			byName[key] = f
			if f.ID == "" || f.Name == "" || !f.Owner.Valid() || f.Volume != "local" || !f.Status.Valid() {
				t.Errorf("round %d: malformed record %+v", round, f)
				continue
			}
			want := filepath.Join(vol, meta.FolderRelPath(f.Owner, f.ID))
			if fi, err := os.Stat(want); err != nil || !fi.IsDir() {
				t.Errorf("round %d: folder %q (%s) is listed but its directory %s is missing: %v", round, f.Name, f.ID, want, err)
			}
		}
		for _, a := range roundAcks {
			f, found := byName[a.Owner.String()+"/"+a.Name]
			if !found || (a.ID != "" && f.ID != a.ID) {
				t.Errorf("round %d: acknowledged create of %q (%s) was lost", round, a.Name, a.ID)
				continue
			}
			acked[f.ID] = f
		}
		for id, a := range acked {
			if f, found := byName[a.Owner.String()+"/"+a.Name]; !found || f.ID != id {
				t.Errorf("round %d: folder %q (%s) acknowledged in an earlier round is gone", round, a.Name, id)
			}
		}
		if n := countOrphans(t, vol, fs); n > 0 {
			t.Logf("round %d: %d folder directories on the volume have no record (created when the daemon died)", round, n)
		}
		// Creating works again, also with names a dead create may have used.
		var f api.Folder
		d.JSON(&f, "create", fmt.Sprintf("after-crash-%d", round), "local", "--user", userUUID)
		checkFolderDir(t, vol, f)
		t.Logf("round %d: %d creates acknowledged before the kill, %d cut by it, %d folders after restart", round, len(roundAcks), cut.Load(), len(fs))
		if t.Failed() {
			t.FailNow()
		}
	}
}

// countOrphans counts folder directories (depth 4) that no record names.
func countOrphans(t *testing.T, vol string, fs []api.Folder) int {
	t.Helper()
	known := map[string]bool{}
	for _, f := range fs {
		known[filepath.Join(vol, meta.FolderRelPath(f.Owner, f.ID))] = true
	}
	dirs, err := filepath.Glob(filepath.Join(vol, "*", "*", "*", "*"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range dirs {
		if !known[p] {
			n++
		}
	}
	return n
}
