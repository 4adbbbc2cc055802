package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSFTPConfig(t *testing.T) {
	c, err := Parse(`
[sftp]
listen = "127.0.0.1:2022"
host_key = "/etc/vfolder/host_key"
`)
	if err != nil {
		t.Fatal(err)
	}
	if !c.SFTP.Enabled() || c.SFTP.Listen != "127.0.0.1:2022" || c.HostKeyPath() != "/etc/vfolder/host_key" {
		t.Errorf("sftp = %+v, host key %q", c.SFTP, c.HostKeyPath())
	}
	d := Default()
	if d.SFTP.Enabled() || d.HostKeyPath() != filepath.Join(DefaultStateDir, DefaultHostKeyName) {
		t.Errorf("default sftp = %+v, host key %q", d.SFTP, d.HostKeyPath())
	}
	if _, err := Parse("[sftp]\nport = 22\n"); err == nil || !strings.Contains(err.Error(), "sftp.port") {
		t.Errorf("unknown key in [sftp]: %v", err)
	}
}

func TestSFTPValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(c *Config)
		want   string
	}{
		{"no port", func(c *Config) { c.SFTP.Listen = "127.0.0.1" }, "sftp.listen: "},
		{"bad port", func(c *Config) { c.SFTP.Listen = "127.0.0.1:70000" }, "sftp.listen: "},
		{"host name", func(c *Config) { c.SFTP.Listen = "example.org:22" }, "is not an IP address"},
		{"relative key", func(c *Config) { c.SFTP.Listen = ":2022"; c.SFTP.HostKey = "key" }, "sftp.host_key: "},
		{"no fuse", func(c *Config) { c.SFTP.Listen = ":2022"; c.FUSE = false }, "needs fuse = true"},
	} {
		c := validConfig(t)
		tc.mutate(c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Validate = %v; want an error containing %q", tc.name, err, tc.want)
		}
	}
	c := validConfig(t)
	c.SFTP.Listen = "[::1]:2022"
	if err := c.Validate(); err != nil {
		t.Errorf("an IPv6 listen address: %v", err)
	}
}

// TestSampleSFTPTable: the sample's commented [sftp] table parses once
// uncommented.
func TestSampleSFTPTable(t *testing.T) {
	data, err := os.ReadFile("../../contrib/vfolderd.toml.sample")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	i := strings.Index(text, "# [sftp]")
	if i < 0 {
		t.Fatal("the sample has no commented [sftp] table")
	}
	var lines []string
	for _, l := range strings.Split(text[i:], "\n") {
		if strings.HasPrefix(l, "# ") && !strings.HasPrefix(l, "# #") {
			lines = append(lines, strings.TrimPrefix(l, "# "))
		}
	}
	c, err := Parse(strings.Join(lines, "\n"))
	if err != nil {
		t.Fatalf("the uncommented table: %v", err)
	}
	if !c.SFTP.Enabled() || c.SFTP.HostKey == "" {
		t.Errorf("the sample's table gives %+v", c.SFTP)
	}
}
