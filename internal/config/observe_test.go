package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestObserveKeys(t *testing.T) {
	c, err := Parse(`
[volumes.local]
path = "/srv/local"

[metrics]
listen = "127.0.0.1:9436"

[audit]
file = "/var/log/vfolder/audit.log"
`)
	if err != nil {
		t.Fatal(err)
	}
	if c.Metrics.Listen != "127.0.0.1:9436" || !c.Metrics.Enabled() {
		t.Errorf("metrics = %+v", c.Metrics)
	}
	if c.Audit.File != "/var/log/vfolder/audit.log" || !c.Audit.Enabled() {
		t.Errorf("audit = %+v", c.Audit)
	}
	d := Default()
	if d.Metrics.Enabled() || d.Audit.Enabled() {
		t.Errorf("metrics or audit on by default: %+v %+v", d.Metrics, d.Audit)
	}
	if _, err := Parse("[metrics]\nlisten = 9436\n"); err == nil {
		t.Error("a number as metrics.listen was accepted")
	}
	if _, err := Parse("[audit]\npath = \"/x\"\n"); err == nil || !strings.Contains(err.Error(), "audit.path") {
		t.Errorf("unknown key audit.path: %v", err)
	}
}

func TestValidateObserve(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name   string
		mutate func(c *Config)
		want   string // "" means valid
	}{
		{"metrics loopback", func(c *Config) { c.Metrics.Listen = "127.0.0.1:9436" }, ""},
		{"metrics any address", func(c *Config) { c.Metrics.Listen = ":9436" }, ""},
		{"metrics ipv6", func(c *Config) { c.Metrics.Listen = "[::1]:0" }, ""},
		{"metrics no port", func(c *Config) { c.Metrics.Listen = "127.0.0.1" }, "metrics.listen: \"127.0.0.1\" is not host:port"},
		{"metrics bad port", func(c *Config) { c.Metrics.Listen = "127.0.0.1:http-alt" }, "metrics.listen: port \"http-alt\""},
		{"metrics port range", func(c *Config) { c.Metrics.Listen = ":70000" }, "0..65535"},
		{"audit file", func(c *Config) { c.Audit.File = filepath.Join(dir, "audit.log") }, ""},
		{"audit relative", func(c *Config) { c.Audit.File = "audit.log" }, "audit.file: \"audit.log\" is not an absolute path"},
		{"audit directory", func(c *Config) { c.Audit.File = dir }, "is a directory"},
		{"audit missing dir", func(c *Config) { c.Audit.File = filepath.Join(dir, "nope", "audit.log") }, "audit.file: the directory of"},
		{"audit in volume", func(c *Config) { c.Audit.File = filepath.Join(c.Volumes["local"].Path, "audit.log") }, "audit.file: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig(t)
			tc.mutate(c)
			err := c.Validate()
			if tc.want == "" {
				if err != nil {
					t.Errorf("Validate = %v; want nil", err)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate = %v; want an error containing %q", err, tc.want)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "audit.log")); !os.IsNotExist(err) {
		t.Errorf("Validate created the audit log: %v", err)
	}
}

// TestSampleObserveTables: the sample's commented [metrics] and [audit]
// tables parse once uncommented, so that their keys are the real ones.
func TestSampleObserveTables(t *testing.T) {
	data, err := os.ReadFile("../../contrib/vfolderd.toml.sample")
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	in := false
	for _, l := range strings.Split(string(data), "\n") {
		switch {
		case l == "# [metrics]" || l == "# [audit]":
			in = true
		case !strings.HasPrefix(l, "# "):
			in = false
		}
		if in {
			lines = append(lines, strings.TrimPrefix(l, "# "))
		}
	}
	c, err := Parse(strings.Join(lines, "\n"))
	if err != nil {
		t.Fatalf("the uncommented tables: %v\n%s", err, strings.Join(lines, "\n"))
	}
	if !c.Metrics.Enabled() || !c.Audit.Enabled() {
		t.Errorf("the sample's tables give %+v %+v", c.Metrics, c.Audit)
	}
}
