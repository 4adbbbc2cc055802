package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/vfolder/vfolder/internal/config"
	"github.com/vfolder/vfolder/internal/service"
	"github.com/vfolder/vfolder/meta"
)

func TestSessionFlags(t *testing.T) {
	dir := t.TempDir()
	vol := filepath.Join(dir, "vol")
	if err := os.Mkdir(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	var got *config.Config
	app := newApp(func(_ context.Context, cfg *config.Config) error { got = cfg; return nil })
	if err := app.Run([]string{"vfolderd", "--volume", "a=" + vol, "--state-dir", filepath.Join(dir, "st")}); err != nil {
		t.Fatal(err)
	}
	if got.SessionsDir != config.DefaultSessionsDir || got.ForceStop {
		t.Errorf("defaults: sessions_dir %q force_stop %v", got.SessionsDir, got.ForceStop)
	}
	t.Setenv("VFOLDER_SESSIONS_DIR", filepath.Join(dir, "env-sessions"))
	if err := app.Run([]string{"vfolderd", "--volume", "a=" + vol, "--state-dir", filepath.Join(dir, "st"), "--force-stop"}); err != nil {
		t.Fatal(err)
	}
	if got.SessionsDir != filepath.Join(dir, "env-sessions") || !got.ForceStop {
		t.Errorf("env and flag: sessions_dir %q force_stop %v", got.SessionsDir, got.ForceStop)
	}
	if err := app.Run([]string{"vfolderd", "--volume", "a=" + vol, "--state-dir", filepath.Join(dir, "st"), "--sessions-dir", filepath.Join(vol, "s")}); !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), "sessions_dir") {
		t.Errorf("sessions dir inside the volume: %v", err)
	}
}

// TestWaitForStop: with published sessions the first signal is refused,
// the second stops; force_stop makes the first enough; without sessions
// the first stops.
func TestWaitForStop(t *testing.T) {
	store := meta.NewMemory()
	defer store.Close()
	svc := service.New(store, service.Options{Log: zerolog.Nop()})
	defer svc.Close()
	ctx := context.Background()

	// run feeds signals to waitForStop and reports whether it returned:
	// it waits up to 10s when a stop is expected, and 200ms (then stops it
	// through its context) when not.
	run := func(force bool, signals int, want bool) (stopped bool) {
		sigs := make(chan os.Signal, 4)
		for i := 0; i < signals; i++ {
			sigs <- syscall.SIGTERM
		}
		done := make(chan error, 1)
		stop, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() { done <- waitForStop(stop, make(chan error), sigs, svc, force, zerolog.Nop()) }()
		// Wait until the signals are taken, then a little for an answer.
		for len(sigs) > 0 {
			time.Sleep(time.Millisecond)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			return true
		case <-time.After(map[bool]time.Duration{true: 10 * time.Second, false: 200 * time.Millisecond}[want]):
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			return false
		}
	}
	if !run(false, 1, true) {
		t.Errorf("no sessions: one signal did not stop")
	}
	rec := meta.Session{ID: "s1", User: strings.Repeat("a", 32), Mounts: []meta.SessionMount{}}
	if err := store.PutSession(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if run(false, 1, false) {
		t.Errorf("a live session: one signal stopped")
	}
	if !run(false, 2, true) {
		t.Errorf("a live session: two signals did not stop")
	}
	if !run(true, 1, true) {
		t.Errorf("a live session with force_stop: one signal did not stop")
	}
	// The API server stopping by itself is an error.
	served := make(chan error, 1)
	served <- errors.New("boom")
	if err := waitForStop(ctx, served, make(chan os.Signal), svc, false, zerolog.Nop()); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("server stop: %v", err)
	}
}

// TestKernelPermissionsFlag: the daemon checks permissions by default;
// kernel_permissions and --kernel-permissions hand them to the kernel.
func TestKernelPermissionsFlag(t *testing.T) {
	dir := t.TempDir()
	vol := filepath.Join(dir, "vol")
	if err := os.Mkdir(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "c.toml")
	if err := os.WriteFile(conf, []byte("kernel_permissions = true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var got *config.Config
	app := newApp(func(_ context.Context, cfg *config.Config) error { got = cfg; return nil })
	base := []string{"vfolderd", "--volume", "a=" + vol, "--state-dir", filepath.Join(dir, "st")}
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{nil, false},
		{[]string{"--kernel-permissions"}, true},
		{[]string{"--config", conf}, true},
		{[]string{"--config", conf, "--kernel-permissions=false"}, false},
	} {
		if err := app.Run(append(append([]string{}, base...), tc.args...)); err != nil {
			t.Fatal(err)
		}
		if got.KernelPermissions != tc.want {
			t.Errorf("%v: kernel_permissions %v, want %v", tc.args, got.KernelPermissions, tc.want)
		}
	}
}
