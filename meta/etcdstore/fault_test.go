package etcdstore_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/vfolder/vfolder/internal/testutil/etcdtest"
	"github.com/vfolder/vfolder/meta"
	"github.com/vfolder/vfolder/meta/etcdstore"
	"github.com/vfolder/vfolder/meta/metatest"
)

// The client-crash test runs the test binary again as a writer that it
// kills; these variables select that mode.
const (
	envHelper   = "VFOLDER_ETCDSTORE_TEST_HELPER"
	envEndpoint = "VFOLDER_ETCDSTORE_TEST_ENDPOINT"
	envPrefix   = "VFOLDER_ETCDSTORE_TEST_PREFIX"
)

func TestMain(m *testing.M) {
	switch os.Getenv(envHelper) {
	case "":
		os.Exit(m.Run())
	case "writer":
		os.Exit(writerHelper(os.Getenv(envEndpoint), os.Getenv(envPrefix)))
	default:
		fmt.Fprintf(os.Stderr, "unknown helper mode %q\n", os.Getenv(envHelper))
		os.Exit(2)
	}
}

// faultBound is the RequestTimeout of the fault tests; slack is what a
// failing call may take beyond it on a loaded machine.
const (
	faultBound = time.Second
	slack      = 3 * time.Second
)

// storeCalls are one call of every kind a store makes: reads of one key,
// ranges, and write transactions of each shape.
func storeCalls(s *etcdstore.Store, f meta.Folder) map[string]func(ctx context.Context) error {
	owner := f.Owner
	return map[string]func(ctx context.Context) error{
		"GetFolder":    func(ctx context.Context) error { _, err := s.GetFolder(ctx, f.ID); return err },
		"FolderByName": func(ctx context.Context) error { _, err := s.FolderByName(ctx, owner, f.Name); return err },
		"ListFolders": func(ctx context.Context) error {
			_, err := s.ListFolders(ctx, meta.FolderFilter{Owner: &owner})
			return err
		},
		"CreateFolder": func(ctx context.Context) error {
			return s.CreateFolder(ctx, metatest.NewFolder(owner, "v", "new-"+meta.NewFolderID()[:8]), 100)
		},
		"UpdateFolder": func(ctx context.Context) error {
			_, err := s.UpdateFolder(ctx, f.ID, func(g *meta.Folder) error { g.Cloneable = !g.Cloneable; return nil })
			return err
		},
		"UpdateScope": func(ctx context.Context) error {
			_, err := s.UpdateScope(ctx, "v", owner, func(q *meta.QuotaScope) error { q.LimitBytes++; return nil })
			return err
		},
		"CreateScope": func(ctx context.Context) error {
			return s.CreateScope(ctx, meta.QuotaScope{Volume: "v2", ID: owner})
		},
		"SetPolicy": func(ctx context.Context) error { return s.SetPolicy(ctx, owner, meta.Policy{MaxFolderCount: 9}) },
		"SetMembership": func(ctx context.Context) error {
			return s.SetMembership(ctx, meta.Membership{Project: metatest.Project(1).UUID, User: owner.UUID})
		},
		"PutSession": func(ctx context.Context) error {
			return s.PutSession(ctx, metatest.NewSession("s1", owner, metatest.Mount(f.ID, "x")))
		},
		"SessionsUsingFolder": func(ctx context.Context) error { _, err := s.SessionsUsingFolder(ctx, f.ID); return err },
		"Load":                func(ctx context.Context) error { _, err := s.Load(ctx); return err },
		"Verify":              func(ctx context.Context) error { return s.Verify(ctx) },
	}
}

func seed(t *testing.T, s *etcdstore.Store) meta.Folder {
	t.Helper()
	ctx := t.Context()
	f := metatest.NewFolder(metatest.User(1), "v", "data")
	if err := s.CreateFolder(ctx, f, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateScope(ctx, meta.QuotaScope{Volume: "v", ID: f.Owner, LimitBytes: 1}); err != nil {
		t.Fatal(err)
	}
	return f
}

// wantUnavailable runs every call and checks that each fails with
// meta.ErrUnavailable, saying so and naming the endpoints, within the
// bound.
func wantUnavailable(t *testing.T, calls map[string]func(ctx context.Context) error, endpoint string) {
	t.Helper()
	var wg sync.WaitGroup
	for name, call := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			err := call(context.Background())
			took := time.Since(start)
			if !errors.Is(err, meta.ErrUnavailable) {
				t.Errorf("%s: %v; want ErrUnavailable", name, err)
				return
			}
			if took > faultBound+slack {
				t.Errorf("%s failed after %v; the bound is %v", name, took, faultBound)
			}
			if msg := err.Error(); !strings.Contains(msg, "cluster store unreachable") || !strings.Contains(msg, endpoint) {
				t.Errorf("%s: message %q does not say the cluster store is unreachable at %s", name, msg, endpoint)
			}
		}()
	}
	wg.Wait()
}

// waitWorking retries a read until the store answers again, and then
// runs every call.
func waitWorking(t *testing.T, s *etcdstore.Store, calls map[string]func(ctx context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := s.ListVolumes(context.Background())
		if err == nil {
			break
		}
		if !errors.Is(err, meta.ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("the store does not work again: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for name, call := range calls {
		if err := call(context.Background()); err != nil && !errors.Is(err, meta.ErrExists) {
			t.Errorf("%s once etcd is back: %v", name, err)
		}
	}
}

// TestUnavailableWhileDown: with etcd killed every call fails within the
// bound with ErrUnavailable; once etcd runs again the same store works,
// and nothing was written by the failed calls.
func TestUnavailableWhileDown(t *testing.T) {
	srv := etcdtest.Start(t)
	s := open(t, srv, newPrefix(), faultBound)
	f := seed(t, s)
	before, err := s.Load(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	calls := storeCalls(s, f)
	srv.Kill()
	wantUnavailable(t, calls, srv.Endpoint())
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	// The writes above were never sent (nothing answered): the store is as
	// it was.
	deadline := time.Now().Add(30 * time.Second)
	var after meta.Snapshot
	for {
		if after, err = s.Load(t.Context()); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("Load after restart: %v", err)
	}
	if fmt.Sprint(after.Folders, after.Scopes, after.Policies, after.Sessions, after.Memberships) !=
		fmt.Sprint(before.Folders, before.Scopes, before.Policies, before.Sessions, before.Memberships) {
		t.Errorf("calls that failed while etcd was down changed the store:\nbefore %+v\nafter  %+v", before, after)
	}
	waitWorking(t, s, calls)
}

// TestUnavailableWhilePaused: a hung etcd (SIGSTOP: connections stay open,
// nothing answers) makes calls fail within the bound too; they work again
// once it continues.
func TestUnavailableWhilePaused(t *testing.T) {
	srv := etcdtest.Start(t)
	s := open(t, srv, newPrefix(), faultBound)
	f := seed(t, s)
	calls := storeCalls(s, f)
	if err := srv.Pause(); err != nil {
		t.Fatal(err)
	}
	wantUnavailable(t, calls, srv.Endpoint())
	if err := srv.Resume(); err != nil {
		t.Fatal(err)
	}
	waitWorking(t, s, calls)
	if err := s.Verify(t.Context()); err != nil {
		t.Error(err)
	}
}

// TestUnavailableTimeoutOption: the bound is the RequestTimeout option,
// and a caller's shorter deadline wins with the caller's own error.
func TestUnavailableTimeoutOption(t *testing.T) {
	srv := etcdtest.Start(t)
	bound := 2500 * time.Millisecond
	s := open(t, srv, newPrefix(), bound)
	f := seed(t, s)
	if err := srv.Pause(); err != nil {
		t.Fatal(err)
	}
	defer srv.Resume()
	start := time.Now()
	_, err := s.GetFolder(context.Background(), f.ID)
	if took := time.Since(start); !errors.Is(err, meta.ErrUnavailable) || took < bound || took > bound+slack {
		t.Errorf("GetFolder with etcd paused: %v after %v; want ErrUnavailable after %v", err, took, bound)
	}
	if !strings.Contains(fmt.Sprint(err), bound.String()) {
		t.Errorf("message %q does not name the bound %v", err, bound)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err = s.GetFolder(ctx, f.ID)
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, meta.ErrUnavailable) {
		t.Errorf("GetFolder with a caller's deadline of 200ms: %v; want the caller's DeadlineExceeded", err)
	}
}

// TestEtcdGoneMidWrite: writers create, rename, delete folders and
// replace sessions when etcd is killed (or hangs: paused) under them.
// Every call either succeeds or fails with ErrUnavailable; once etcd is
// back the store is consistent (Verify: no half-written change, also from
// requests a paused etcd applies after their callers gave up), every
// acknowledged change is there, and the store takes writes again.
func TestEtcdGoneMidWrite(t *testing.T) {
	for _, how := range []string{"kill", "pause"} {
		t.Run(how, func(t *testing.T) { testEtcdGoneMidWrite(t, how) })
	}
}

func testEtcdGoneMidWrite(t *testing.T, how string) {
	srv := etcdtest.Start(t)
	s := open(t, srv, newPrefix(), faultBound)
	const writers = 4
	var mu sync.Mutex
	acked := map[string]bool{} // folder id -> exists, after acknowledged creates and deletes
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var failures sync.Map
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			owner := metatest.User(w % 2)
			ctx := context.Background()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				f := metatest.NewFolder(owner, "v", fmt.Sprintf("w%d-%d", w, i))
				err := s.CreateFolder(ctx, f, 0)
				if err == nil {
					mu.Lock()
					acked[f.ID] = true
					mu.Unlock()
					if i%3 == 0 {
						_, err = s.UpdateFolder(ctx, f.ID, func(g *meta.Folder) error { g.Name += "-renamed"; return nil })
					}
					if err == nil && i%4 == 1 {
						err = s.DeleteFolder(ctx, f.ID)
						mu.Lock()
						if err == nil {
							acked[f.ID] = false
						} else {
							delete(acked, f.ID) // unknown: it may have been applied
						}
						mu.Unlock()
					}
					if err == nil {
						err = s.PutSession(ctx, metatest.NewSession(fmt.Sprint("s", w), owner, metatest.Mount(f.ID, "m"), metatest.Mount(meta.NewFolderID(), "n")))
					}
				}
				if err != nil {
					if !errors.Is(err, meta.ErrUnavailable) {
						t.Errorf("writer %d: %v", w, err)
						return
					}
					failures.Store(w, true)
					time.Sleep(10 * time.Millisecond)
				}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	if how == "kill" {
		srv.Kill()
	} else if err := srv.Pause(); err != nil {
		t.Fatal(err)
	}
	// Let every writer see the outage.
	deadline := time.Now().Add(faultBound + slack)
	for time.Now().Before(deadline) {
		n := 0
		failures.Range(func(any, any) bool { n++; return true })
		if n == writers {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if how == "kill" {
		if err := srv.Restart(); err != nil {
			t.Fatal(err)
		}
	} else if err := srv.Resume(); err != nil {
		t.Fatal(err)
	}
	waitWorking(t, s, nil)
	ctx := t.Context()
	if err := s.Verify(ctx); err != nil {
		t.Fatalf("after etcd was killed mid-write: %v", err)
	}
	if len(acked) == 0 {
		t.Fatal("no write was acknowledged before etcd was killed")
	}
	for id, exists := range acked {
		_, err := s.GetFolder(ctx, id)
		if exists && err != nil {
			t.Errorf("acknowledged folder %s: %v", id, err)
		}
		if !exists && !errors.Is(err, meta.ErrNotFound) {
			t.Errorf("acknowledged delete of folder %s: GetFolder says %v", id, err)
		}
	}
	if err := s.CreateFolder(ctx, metatest.NewFolder(metatest.User(0), "v", "after"), 0); err != nil {
		t.Errorf("CreateFolder after the restart: %v", err)
	}
}

// writerHelper is the process TestClientKilledMidWrite kills: it writes
// as fast as it can, saying "ready" after its first write.
func writerHelper(endpoint, prefix string) int {
	s, err := etcdstore.Open(context.Background(), etcdstore.Options{Endpoints: []string{endpoint}, Prefix: prefix, Log: zerolog.Nop()})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx := context.Background()
	owners := []meta.ScopeID{metatest.User(1), metatest.User(2)}
	for i := 0; ; i++ {
		owner := owners[i%2]
		f := metatest.NewFolder(owner, "v", fmt.Sprint("f", i, "-", os.Getpid()))
		if err := s.CreateFolder(ctx, f, 0); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		_, _ = s.UpdateFolder(ctx, f.ID, func(g *meta.Folder) error { g.Name += "-r"; return nil })
		_ = s.PutSession(ctx, metatest.NewSession(fmt.Sprint("s", i%3), owner, metatest.Mount(f.ID, "a"), metatest.Mount(meta.NewFolderID(), "b")))
		_ = s.SetMembership(ctx, meta.Membership{Project: metatest.Project(i % 2).UUID, User: owner.UUID})
		if i%2 == 1 {
			_ = s.DeleteFolder(ctx, f.ID)
			_ = s.RemoveMembership(ctx, metatest.Project(i%2).UUID, owner.UUID)
		}
		if i == 0 {
			fmt.Println("ready")
		}
	}
}

// TestClientKilledMidWrite: a process killed (SIGKILL) while it writes
// leaves no half-written change behind: every change is one transaction.
func TestClientKilledMidWrite(t *testing.T) {
	srv := etcdtest.Start(t)
	prefix := newPrefix()
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), envHelper+"=writer", envEndpoint+"="+srv.Endpoint(), envPrefix+"="+prefix)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		line, _ := bufio.NewReader(out).ReadString('\n')
		if line != "ready\n" {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("round %d: writer did not start: %q; stderr: %s", round, line, stderr.String())
		}
		time.Sleep(time.Duration(100+round*137) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()
		s := open(t, srv, prefix, 0)
		if err := s.Verify(t.Context()); err != nil {
			t.Fatalf("round %d: after the writer was killed: %v", round, err)
		}
		fs, err := s.ListFolders(t.Context(), meta.FolderFilter{IncludeDeleted: true})
		if err != nil || len(fs) == 0 {
			t.Fatalf("round %d: the writer wrote nothing? %d folders, %v", round, len(fs), err)
		}
		s.Close()
	}
}

// cluster is a private multi-member etcd cluster on loopback.
type cluster struct {
	t       *testing.T
	bin     string
	dir     string
	names   []string
	clients []string
	peers   []string
	initial string
	cmds    []*exec.Cmd
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func startCluster(t *testing.T, n int) *cluster {
	bin, err := etcdtest.Binary()
	if err != nil {
		t.Skipf("no etcd binary: %v", err)
	}
	c := &cluster{t: t, bin: bin, dir: t.TempDir(), cmds: make([]*exec.Cmd, n)}
	var initial []string
	for i := range n {
		c.names = append(c.names, fmt.Sprint("m", i))
		c.clients = append(c.clients, "http://127.0.0.1:"+strconv.Itoa(freePort(t)))
		c.peers = append(c.peers, "http://127.0.0.1:"+strconv.Itoa(freePort(t)))
		initial = append(initial, c.names[i]+"="+c.peers[i])
	}
	t.Cleanup(func() {
		for i := range c.cmds {
			c.kill(i)
		}
	})
	c.initial = strings.Join(initial, ",")
	for i := range n {
		c.start(i)
	}
	c.waitHealthy()
	return c
}

func (c *cluster) start(i int) {
	cmd := exec.Command(c.bin,
		"--name", c.names[i],
		"--data-dir", filepath.Join(c.dir, c.names[i]),
		"--listen-client-urls", c.clients[i], "--advertise-client-urls", c.clients[i],
		"--listen-peer-urls", c.peers[i], "--initial-advertise-peer-urls", c.peers[i],
		"--initial-cluster", c.initial, "--initial-cluster-state", "new",
		"--heartbeat-interval", "50", "--election-timeout", "500", "--log-level", "error",
	)
	cmd.Env = append(os.Environ(), "ETCD_UNSUPPORTED_ARCH="+runtime.GOARCH)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.cmds[i] = cmd
}

func (c *cluster) kill(i int) {
	if c.cmds[i] != nil {
		c.cmds[i].Process.Kill()
		c.cmds[i].Wait()
		c.cmds[i] = nil
	}
}

func (c *cluster) waitHealthy() {
	cl := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for i, u := range c.clients {
		if c.cmds[i] == nil {
			continue
		}
		for {
			resp, err := cl.Get(u + "/health")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Now().After(deadline) {
				c.t.Fatalf("etcd member %s did not become healthy", c.names[i])
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// TestQuorumLost: a three-member cluster that loses two members still
// answers on the third, but cannot serve: calls fail within the bound with
// ErrUnavailable; with one member back (a quorum of two) they work again.
func TestQuorumLost(t *testing.T) {
	c := startCluster(t, 3)
	s, err := etcdstore.Open(t.Context(), etcdstore.Options{
		Endpoints: c.clients, Prefix: newPrefix(), RequestTimeout: faultBound, Log: testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	f := seed(t, s)
	calls := storeCalls(s, f)
	c.kill(1)
	c.kill(2)
	wantUnavailable(t, calls, c.clients[0])
	c.start(1)
	c.waitHealthy()
	waitWorking(t, s, calls)
	if err := s.Verify(t.Context()); err != nil {
		t.Error(err)
	}
}

// TestOpenUnreachable: Open against an endpoint where nothing listens
// fails within the bound with ErrUnavailable naming the endpoint.
func TestOpenUnreachable(t *testing.T) {
	ep := "http://127.0.0.1:" + strconv.Itoa(freePort(t))
	start := time.Now()
	_, err := etcdstore.Open(t.Context(), etcdstore.Options{Endpoints: []string{ep}, RequestTimeout: faultBound, Log: testLogger(t)})
	if took := time.Since(start); !errors.Is(err, meta.ErrUnavailable) || took > faultBound+slack {
		t.Fatalf("Open of %s: %v after %v; want ErrUnavailable within %v", ep, err, took, faultBound)
	}
	if !strings.Contains(err.Error(), ep) {
		t.Errorf("message %q does not name %s", err, ep)
	}
}
