package main

import (
	"context"
	"errors"
	"path/filepath"
	"runtime/debug"
	"runtime/metrics"
	"testing"

	"github.com/rs/zerolog"

	"github.com/vfolder/vfolder/internal/config"
)

// gcSettings reads the collector's target percentage and memory limit in
// force.
func gcSettings() (gogc, limit uint64) {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}, {Name: "/gc/gomemlimit:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64(), s[1].Value.Uint64()
}

// TestApplyGC: the [daemon] settings reach the Go runtime, except where
// GOGC or GOMEMLIMIT are set in the environment.
func TestApplyGC(t *testing.T) {
	oldPct := debug.SetGCPercent(100)
	oldLim := debug.SetMemoryLimit(-1)
	t.Cleanup(func() {
		debug.SetGCPercent(oldPct)
		debug.SetMemoryLimit(oldLim)
	})
	noLimit := uint64(debug.SetMemoryLimit(-1))

	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	applyGC(config.Daemon{GOGC: 150, MemoryLimit: 1 << 30}, zerolog.Nop())
	if g, l := gcSettings(); g != 150 || l != 1<<30 {
		t.Errorf("from the configuration: gogc %d, limit %d; want 150, %d", g, l, 1<<30)
	}

	debug.SetGCPercent(100)
	debug.SetMemoryLimit(int64(noLimit))
	t.Setenv("GOGC", "300")
	t.Setenv("GOMEMLIMIT", "3GiB")
	applyGC(config.Daemon{GOGC: 150, MemoryLimit: 1 << 30}, zerolog.Nop())
	if g, l := gcSettings(); g != 100 || l != noLimit {
		t.Errorf("with GOGC and GOMEMLIMIT set: gogc %d, limit %d; want both left alone (100, %d)", g, l, noLimit)
	}

	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	applyGC(config.Daemon{GOGC: 100}, zerolog.Nop())
	if _, l := gcSettings(); l != noLimit {
		t.Errorf("no memory_limit: limit %d, want none (%d)", l, noLimit)
	}
}

// TestGCFlags: --gogc and --memory-limit (and their VFOLDER_
// variables) set the [daemon] table; a bad size is refused.
func TestGCFlags(t *testing.T) {
	vol := t.TempDir()
	state := filepath.Join(t.TempDir(), "state")
	run := func(args ...string) (*config.Config, error) {
		var got *config.Config
		app := newApp(func(_ context.Context, cfg *config.Config) error { got = cfg; return nil })
		err := app.Run(append([]string{"vfolderd", "--volume", "a=" + vol, "--state-dir", state}, args...))
		return got, err
	}
	c, err := run()
	if err != nil {
		t.Fatal(err)
	}
	if c.Daemon.GOGC != config.DefaultGOGC || c.Daemon.MemoryLimit != 0 {
		t.Errorf("defaults: %+v", c.Daemon)
	}
	c, err = run("--gogc", "200", "--memory-limit", "1.5G")
	if err != nil {
		t.Fatal(err)
	}
	if c.Daemon.GOGC != 200 || c.Daemon.MemoryLimit != 3<<29 {
		t.Errorf("flags: %+v", c.Daemon)
	}
	t.Setenv("VFOLDER_GOGC", "50")
	t.Setenv("VFOLDER_MEMORY_LIMIT", "512M")
	c, err = run()
	if err != nil {
		t.Fatal(err)
	}
	if c.Daemon.GOGC != 50 || c.Daemon.MemoryLimit != 512<<20 {
		t.Errorf("environment: %+v", c.Daemon)
	}
	if _, err := run("--memory-limit", "lots"); !errors.Is(err, config.ErrInvalid) {
		t.Errorf("--memory-limit lots: %v", err)
	}
	if _, err := run("--gogc", "1"); !errors.Is(err, config.ErrInvalid) {
		t.Errorf("--gogc 1: %v", err)
	}
}
