package config

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
)

// Metrics is the [metrics] table: the Prometheus endpoint (package
// internal/metrics).
type Metrics struct {
	// Listen is the host:port of the metrics listener, which serves
	// /metrics over plain HTTP; "" (the default) serves no metrics. Port
	// 0 takes a free port (the daemon logs it). Bind it to a loopback or
	// management address: the figures name volumes, scopes and sessions.
	Listen string
}

// Enabled reports whether the metrics listener is configured.
func (m Metrics) Enabled() bool { return m.Listen != "" }

// Audit is the [audit] table: the API audit log (internal/server
// audit.go).
type Audit struct {
	// File is the absolute path of the audit log: one JSON line per API
	// request that may change something and per refused one, appended
	// (created 0600); "" (the default) keeps none. SIGHUP reopens it
	// (logrotate).
	File string
}

// Enabled reports whether the audit log is configured.
func (a Audit) Enabled() bool { return a.File != "" }

type fileMetrics struct {
	Listen *string `toml:"listen"`
}

type fileAudit struct {
	File *string `toml:"file"`
}

func (c *Config) mergeObserve(m *fileMetrics, a *fileAudit) {
	if m != nil {
		setIf(&c.Metrics.Listen, m.Listen)
	}
	if a != nil {
		setIf(&c.Audit.File, a.File)
	}
}

// validateObserve checks [metrics] and [audit]; checkLocal is Validate's
// check that a path is absolute and on node-local disk.
func (c *Config) validateObserve(add func(field, format string, a ...any), checkLocal func(field, p string)) {
	if l := c.Metrics.Listen; l != "" {
		host, port, err := net.SplitHostPort(l)
		if err != nil {
			add("metrics.listen", "%q is not host:port (%v); for example \"127.0.0.1:9436\" or \":9436\"", l, err)
		} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			add("metrics.listen", "port %q of %q is not a number 0..65535", port, l)
		} else if host != "" && net.ParseIP(host) == nil {
			if _, err := net.LookupHost(host); err != nil {
				add("metrics.listen", "host %q of %q does not resolve: %v", host, l, err)
			}
		}
	}
	if p := c.Audit.File; p != "" {
		checkLocal("audit.file", p)
		if !filepath.IsAbs(p) {
			return
		}
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			add("audit.file", "%q is a directory; name the log file", p)
		}
		if st, err := os.Stat(filepath.Dir(p)); err != nil {
			add("audit.file", "the directory of %q: %v", p, err)
		} else if !st.IsDir() {
			add("audit.file", "%q is not a directory", filepath.Dir(p))
		}
	}
}
