package config

// The [sftp] table: vfolderd's SFTP endpoint (package sftpd), off unless
// listen is set.
//
//	[sftp]
//	listen = "0.0.0.0:2022"   # host:port; empty (default) = off
//	host_key = "/var/lib/vfolder/ssh_host_ed25519_key"
//	                          # default state_dir/ssh_host_ed25519_key,
//	                          # made (ed25519, 0600) when absent
//
// The endpoint does its I/O through the FUSE views, so it needs fuse.

import (
	"net"
	"path/filepath"
	"strconv"
)

// DefaultHostKeyName is the host key's file name in state_dir.
const DefaultHostKeyName = "ssh_host_ed25519_key"

// SFTP is the [sftp] table.
type SFTP struct {
	// Listen is the TCP address to serve SFTP on; empty means off.
	Listen string
	// HostKey is the host key's path ("" means state_dir/DefaultHostKeyName).
	HostKey string
}

// Enabled reports whether the endpoint is on.
func (s SFTP) Enabled() bool { return s.Listen != "" }

// HostKeyPath is the host key path in effect.
func (c *Config) HostKeyPath() string {
	if c.SFTP.HostKey != "" {
		return c.SFTP.HostKey
	}
	return filepath.Join(c.StateDir, DefaultHostKeyName)
}

type fileSFTP struct {
	Listen  *string `toml:"listen"`
	HostKey *string `toml:"host_key"`
}

func (c *Config) mergeSFTP(f *fileSFTP) {
	if f == nil {
		return
	}
	setIf(&c.SFTP.Listen, f.Listen)
	setIf(&c.SFTP.HostKey, f.HostKey)
}

func (c *Config) validateSFTP(add func(field, format string, a ...any)) {
	if !c.SFTP.Enabled() {
		return
	}
	host, port, err := net.SplitHostPort(c.SFTP.Listen)
	if err != nil {
		add("sftp.listen", "%q is not host:port: %v", c.SFTP.Listen, err)
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		add("sftp.listen", "%q: port %q is not a number from 0 to 65535", c.SFTP.Listen, port)
	} else if host != "" && net.ParseIP(host) == nil && host != "localhost" {
		add("sftp.listen", "%q: host %q is not an IP address (or localhost)", c.SFTP.Listen, host)
	}
	if c.SFTP.HostKey != "" && !filepath.IsAbs(c.SFTP.HostKey) {
		add("sftp.host_key", "%q is not an absolute path", c.SFTP.HostKey)
	}
	if !c.FUSE {
		add("sftp.listen", "the SFTP endpoint works through the FUSE views: it needs fuse = true")
	}
}
