package config

import (
	"os"
	"strings"
	"testing"
)

// TestDaemonTable: [daemon] gogc and memory_limit parse, default to
// DefaultGOGC and no limit, and out-of-range values are refused with the
// key named.
func TestDaemonTable(t *testing.T) {
	c, err := Parse("")
	if err != nil {
		t.Fatal(err)
	}
	if c.Daemon.GOGC != DefaultGOGC || c.Daemon.MemoryLimit != 0 {
		t.Errorf("defaults: %+v", c.Daemon)
	}
	c, err = Parse("[daemon]\ngogc = 200\nmemory_limit = \"2G\"\n")
	if err != nil {
		t.Fatal(err)
	}
	if c.Daemon.GOGC != 200 || c.Daemon.MemoryLimit != 2<<30 {
		t.Errorf("set: %+v", c.Daemon)
	}
	c, err = Parse("[daemon]\nmemory_limit = \"none\"\n")
	if err != nil || c.Daemon.MemoryLimit != 0 {
		t.Errorf("memory_limit = none: %+v %v", c.Daemon, err)
	}
	if _, err := Parse("[daemon]\nmemory_limit = \"lots\"\n"); err == nil || !strings.Contains(err.Error(), "memory_limit") {
		t.Errorf("memory_limit = lots: %v; want an error naming the key", err)
	}
	for _, tc := range []struct {
		d     Daemon
		field string
	}{
		{Daemon{GOGC: 5}, "daemon.gogc"},
		{Daemon{GOGC: 20000}, "daemon.gogc"},
		{Daemon{GOGC: 100, MemoryLimit: 1 << 20}, "daemon.memory_limit"},
	} {
		c := validConfig(t)
		c.Daemon = tc.d
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%+v: %v; want an error naming %s", tc.d, err, tc.field)
		}
	}
	c = validConfig(t)
	c.Daemon = Daemon{GOGC: 50, MemoryLimit: 1 << 30}
	if err := c.Validate(); err != nil {
		t.Errorf("valid [daemon]: %v", err)
	}
}

// TestSampleDaemonTable: the sample's [daemon] table parses and shows
// the defaults.
func TestSampleDaemonTable(t *testing.T) {
	data, err := os.ReadFile("../../contrib/vfolderd.toml.sample")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), "\n[daemon]\n") {
		t.Fatal("the sample has no [daemon] table")
	}
	c, err := Parse(string(data))
	if err != nil {
		t.Fatal(err)
	}
	if c.Daemon.GOGC != DefaultGOGC || c.Daemon.MemoryLimit != 0 {
		t.Errorf("sample [daemon]: %+v, want the defaults", c.Daemon)
	}
}
