package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/meta"
)

// cloneFake answers clone and folder reads: each read of the clone moves
// its progress one file (25 bytes) on, until 4 files are done and it is
// ready; with vanish it is gone after two reads (a rolled-back clone).
type cloneFake struct {
	socket string
	vanish bool

	mu    sync.Mutex
	reads int
	req   api.CloneRequest
	query string
}

const cloneID = "0123456789abcdef0123456789abcdef"

func startCloneFake(t *testing.T, vanish bool) *cloneFake {
	t.Helper()
	f := &cloneFake{socket: filepath.Join(t.TempDir(), "api.sock"), vanish: vanish}
	ln, err := net.Listen("unix", f.socket)
	if err != nil {
		t.Fatal(err)
	}
	owner, _ := meta.UserScope(userUUID)
	folder := func(done int64) api.Folder {
		fo := api.Folder{Folder: meta.Folder{ID: cloneID, Name: "copy", Owner: owner, Volume: "local", Status: meta.StatusCloning}}
		if done >= 4 {
			fo.Status = meta.StatusReady
			return fo
		}
		fo.Progress = &api.Progress{Op: api.OpClone, FilesDone: done, FilesTotal: 4, BytesDone: 25 * done, BytesTotal: 100, StartedAt: time.Now()}
		return fo
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/folders/{ref}/clone", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		_ = json.NewDecoder(r.Body).Decode(&f.req)
		f.query = r.URL.RawQuery
		if f.req.Name == "toobig" {
			fail(w, 409, api.CodeLimitExceeded, "cannot clone folder \"src\": the copy needs 100 bytes and 4 inodes; nothing was copied")
			return
		}
		reply(w, 200, folder(0))
	})
	mux.HandleFunc("GET /v1/folders/{ref}", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.reads++
		if f.vanish && f.reads > 2 {
			fail(w, 404, api.CodeNotFound, "no folder has id %s", cloneID)
			return
		}
		reply(w, 200, folder(int64(f.reads)))
	})
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return f
}

func fastPolls(t *testing.T) {
	oldPoll, oldLine := pollEvery, lineEvery
	pollEvery, lineEvery = time.Millisecond, 0
	t.Cleanup(func() { pollEvery, lineEvery = oldPoll, oldLine })
}

// TestCloneWaitLines: without a terminal, --wait prints progress lines
// and ends with the ready folder; without --wait the call answers at once.
func TestCloneWaitLines(t *testing.T) {
	fastPolls(t)
	f := startCloneFake(t, false)
	r := mustOK(t, runCLI(t, f.socket, "", false, "clone", "src", "copy", "--user", userUUID, "--volume", "other", "--wait"))
	if f.req.Name != "copy" || f.req.Volume != "other" || !strings.Contains(f.query, "owner=user%3A"+userUUID) {
		t.Errorf("request %+v, query %q", f.req, f.query)
	}
	for _, want := range []string{"clone: 1 of 4 files, 25 B of 100 B (25%)", "clone: 3 of 4 files", "clone: 4 of 4 files, 100 B of 100 B (100%)"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("--wait progress lines lack %q:\n%s", want, r.stderr)
		}
	}
	if !strings.Contains(r.stdout, "Cloned into folder \"copy\"") || !strings.Contains(r.stdout, "ready") {
		t.Errorf("--wait printed %q", r.stdout)
	}

	f = startCloneFake(t, false)
	r = mustOK(t, runCLI(t, f.socket, "", false, "--json", "clone", cloneID, "copy"))
	var fo api.Folder
	if err := json.Unmarshal([]byte(r.stdout), &fo); err != nil || fo.Status != meta.StatusCloning || fo.Progress == nil || f.reads != 0 {
		t.Errorf("clone --json: %q (%v), %d reads", r.stdout, err, f.reads)
	}

	// info shows the progress of a running clone.
	r = mustOK(t, runCLI(t, f.socket, "", false, "info", cloneID))
	if !strings.Contains(r.stdout, "progress") || !strings.Contains(r.stdout, "1 of 4 files") {
		t.Errorf("info of a cloning folder: %q", r.stdout)
	}
}

// TestCloneWaitFailures: a refused clone and a rolled-back one exit 1
// with the reason; a name without an owner is a usage error.
func TestCloneWaitFailures(t *testing.T) {
	fastPolls(t)
	f := startCloneFake(t, true)
	r := runCLI(t, f.socket, "", false, "clone", "src", "copy", "--user", userUUID, "--wait")
	if r.code != 1 || !strings.Contains(r.stderr, "failed and was rolled back") {
		t.Errorf("clone that vanished: %+v", r)
	}
	r = runCLI(t, f.socket, "", false, "clone", "src", "toobig", "--user", userUUID)
	if r.code != 1 || !strings.Contains(r.stderr, "needs 100 bytes and 4 inodes") {
		t.Errorf("refused clone: %+v", r)
	}
	if r = runCLI(t, f.socket, "", false, "clone", "src", "copy"); r.code != 2 {
		t.Errorf("clone by name without an owner: %+v", r)
	}
	if r = runCLI(t, f.socket, "", false, "clone", cloneID); r.code != 2 {
		t.Errorf("clone without a new name: %+v", r)
	}
}

// openPTY opens a pseudo-terminal pair.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		t.Skipf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		m.Close()
		t.Skipf("ptsname: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		t.Skipf("open the terminal's other side: %v", err)
	}
	return m, s
}

// TestCloneWaitBar: on a terminal, --wait draws a progress bar.
func TestCloneWaitBar(t *testing.T) {
	fastPolls(t)
	pollEvery = 150 * time.Millisecond // let the bar's throttle draw a few times
	m, s := openPTY(t)
	defer m.Close()
	var shown bytes.Buffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(&shown, m) // ends with EIO once the other side is closed
	}()
	f := startCloneFake(t, false)
	var out bytes.Buffer
	e := env{stdin: strings.NewReader(""), stdout: &out, stderr: s, isTerminal: func() bool { return false }}
	code := run(context.Background(), []string{"vfolder", "--socket", f.socket, "clone", "src", "copy", "--user", userUUID, "--wait"}, e)
	s.Close()
	<-done
	if code != 0 || !strings.Contains(out.String(), "Cloned into folder") {
		t.Fatalf("clone --wait on a terminal: exit %d, %q", code, out.String())
	}
	if !strings.Contains(shown.String(), "cloning copy") || !strings.Contains(shown.String(), "files)") || !strings.Contains(shown.String(), "%") {
		t.Errorf("the terminal showed no progress bar: %q", shown.String())
	}
}
