package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/vfolder/vfolder/internal/config"
)

// TestObserveFlags checks --metrics-listen and --audit-log over the
// [metrics] and [audit] tables, and their environment variables.
func TestObserveFlags(t *testing.T) {
	dir := t.TempDir()
	vol := filepath.Join(dir, "vol")
	if err := os.Mkdir(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "vfolderd.toml")
	text := "state_dir = \"" + filepath.Join(dir, "state") + "\"\n[volumes.a]\npath = \"" + vol + "\"\n" +
		"[metrics]\nlisten = \"127.0.0.1:1\"\n[audit]\nfile = \"" + filepath.Join(dir, "file.log") + "\"\n"
	if err := os.WriteFile(cfgPath, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	var got *config.Config
	run := func(args ...string) {
		t.Helper()
		got = nil
		app := newApp(func(_ context.Context, cfg *config.Config) error { got = cfg; return nil })
		if err := app.Run(append([]string{"vfolderd", "--config", cfgPath}, args...)); err != nil {
			t.Fatal(err)
		}
	}
	run()
	if got.Metrics.Listen != "127.0.0.1:1" || got.Audit.File != filepath.Join(dir, "file.log") {
		t.Errorf("from the file: %+v %+v", got.Metrics, got.Audit)
	}
	t.Setenv("VFOLDER_METRICS_LISTEN", "127.0.0.1:2")
	run("--audit-log", filepath.Join(dir, "flag.log"))
	if got.Metrics.Listen != "127.0.0.1:2" || got.Audit.File != filepath.Join(dir, "flag.log") {
		t.Errorf("env and flag: %+v %+v", got.Metrics, got.Audit)
	}
	run("--metrics-listen", ":3")
	if got.Metrics.Listen != ":3" {
		t.Errorf("flag over env: %+v", got.Metrics)
	}
}
