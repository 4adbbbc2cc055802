// Package etcdtest starts private etcd servers for tests: one etcd
// process per Server, listening on loopback ports of its own, with its
// data in a directory of the test's. Tests that need etcd call Start; it
// skips the test with a reason when no etcd binary is installed (the
// project's install script installs Debian's etcd-server, so CI always
// has one), and every server it starts is killed in t.Cleanup.
//
// A Server can be stopped (SIGTERM), killed, paused (SIGSTOP, the way a
// partitioned or hung member looks to a client) and started again on the
// same data directory and ports, which is what the fault tests need.
package etcdtest

import (
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
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vfolder/vfolder/internal/testutil"
)

// Binary is the etcd executable tests use: $VFOLDER_TEST_ETCD, else
// "etcd" on PATH.
func Binary() (string, error) {
	if p := os.Getenv("VFOLDER_TEST_ETCD"); p != "" {
		return p, nil
	}
	return exec.LookPath("etcd")
}

// Server is one private etcd process.
type Server struct {
	t       testing.TB
	bin     string
	dir     string
	client  string // client URL
	peer    string // peer URL
	name    string
	logs    testutil.SyncBuffer
	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	stopped bool
}

// Start starts a single-member etcd cluster with its data below a
// t.TempDir(), and waits until it answers. It skips t when there is no
// etcd binary.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Skipf("no etcd binary (install Debian's etcd-server, or set VFOLDER_TEST_ETCD): %v", err)
	}
	cport, pport := freePort(t), freePort(t)
	s := &Server{
		t:      t,
		bin:    bin,
		dir:    filepath.Join(t.TempDir(), "etcd"),
		client: "http://127.0.0.1:" + strconv.Itoa(cport),
		peer:   "http://127.0.0.1:" + strconv.Itoa(pport),
		name:   "vfolder-test",
	}
	t.Cleanup(func() {
		s.Kill()
		if t.Failed() {
			t.Logf("etcd output:\n%s", tail(s.logs.String(), 4000))
		}
	})
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	return s
}

// Endpoint is the server's client URL (http://127.0.0.1:PORT).
func (s *Server) Endpoint() string { return s.client }

// Endpoints is Endpoint as a list, for clientv3.Config.
func (s *Server) Endpoints() []string { return []string{s.client} }

// Dir is the server's data directory.
func (s *Server) Dir() string { return s.dir }

// Logs returns what the server printed so far.
func (s *Server) Logs() string { return s.logs.String() }

// Restart starts the process (again) on the same data directory and
// ports and waits until it answers; a running process is left alone.
func (s *Server) Restart() error {
	s.mu.Lock()
	if s.cmd != nil {
		s.mu.Unlock()
		return nil
	}
	cmd := exec.Command(s.bin,
		"--name", s.name,
		"--data-dir", s.dir,
		"--listen-client-urls", s.client,
		"--advertise-client-urls", s.client,
		"--listen-peer-urls", s.peer,
		"--initial-advertise-peer-urls", s.peer,
		"--initial-cluster", s.name+"="+s.peer,
		"--initial-cluster-state", "new",
		"--heartbeat-interval", "50",
		"--election-timeout", "500",
		"--log-level", "warn",
	)
	// etcd 3.4 refuses to start on an unsupported architecture without
	// this; it is harmless elsewhere.
	cmd.Env = append(os.Environ(), "ETCD_UNSUPPORTED_ARCH="+runtime.GOARCH)
	cmd.Stdout = &s.logs
	cmd.Stderr = &s.logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		s.mu.Unlock()
		return fmt.Errorf("start etcd: %w", err)
	}
	exited := make(chan struct{})
	s.cmd, s.exited, s.stopped = cmd, exited, false
	s.mu.Unlock()
	go func() {
		cmd.Wait()
		close(exited)
	}()
	return s.waitHealthy(30 * time.Second)
}

func (s *Server) waitHealthy(d time.Duration) error {
	deadline := time.Now().Add(d)
	cl := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		select {
		case <-s.exitedCh():
			return fmt.Errorf("etcd exited while starting:\n%s", tail(s.logs.String(), 4000))
		default:
		}
		resp, err := cl.Get(s.client + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("etcd did not become healthy within %v:\n%s", d, tail(s.logs.String(), 4000))
}

func (s *Server) exitedCh() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.exited == nil {
		c := make(chan struct{})
		close(c)
		return c
	}
	return s.exited
}

// Stop ends the process with SIGTERM (a clean stop) and waits for it.
func (s *Server) Stop() { s.signal(syscall.SIGTERM) }

// Kill ends the process with SIGKILL and waits for it.
func (s *Server) Kill() { s.signal(syscall.SIGKILL) }

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	if cmd == nil {
		s.mu.Unlock()
		return
	}
	if s.stopped {
		// A paused process does not act on SIGTERM until continued.
		cmd.Process.Signal(syscall.SIGCONT)
		s.stopped = false
	}
	cmd.Process.Signal(sig)
	s.mu.Unlock()
	select {
	case <-exited:
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		<-exited
	}
	s.mu.Lock()
	s.cmd, s.exited = nil, nil
	s.mu.Unlock()
}

// Pause stops the process with SIGSTOP: connections stay open and
// nothing answers, as with a hung or partitioned server.
func (s *Server) Pause() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return errors.New("etcd is not running")
	}
	s.stopped = true
	return s.cmd.Process.Signal(syscall.SIGSTOP)
}

// Resume continues a paused process.
func (s *Server) Resume() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return errors.New("etcd is not running")
	}
	s.stopped = false
	return s.cmd.Process.Signal(syscall.SIGCONT)
}

// Running reports whether the process is running (paused counts).
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// WaitHealthy waits until the server answers its health check.
func (s *Server) WaitHealthy(ctx context.Context) error {
	d := 30 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		d = time.Until(dl)
	}
	return s.waitHealthy(d)
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
