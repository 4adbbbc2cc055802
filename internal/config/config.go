// Package config is vfolderd's configuration: a TOML file, overridden by
// command-line flags and VFOLDER_* environment variables (flag > env >
// file > default; the flag/env layer lives in cmd/vfolderd and calls the
// Set* helpers here).
//
// # Rules
//
//   - Unknown keys in the file are an error, so a typo never silently falls
//     back to a default.
//   - Validate checks everything that can be checked before the daemon
//     touches anything, and every error names the offending field
//     ("volumes.scratch.path: ..."). All problems are reported at once.
//   - The daemon's own state (state_dir, where badger lives in
//     state_dir/meta) is node-local and must never lie inside a volume:
//     volumes are shared by every node, badger allows one process.
//
// # Defaults
//
// storage_uid/storage_gid default to 1100, the unified storage owner
// operators of the reference system commonly use; view_uid/view_gid
// default to 1000 (the container user "work"). fuse defaults to true: the
// daemon mounts its FUSE namespace at mount_point (which needs root and
// /dev/fuse); fuse = false serves the API without views (and without
// sessions). sessions_dir (default /run/vfolder/sessions) is where
// published sessions' views are mounted for container runtimes; like
// state_dir it is node-local, and it must not overlap mount_point or
// state_dir. force_stop (default false) lets one SIGTERM stop a daemon
// that has published sessions. See contrib/vfolderd.toml.sample for every
// key.
//
// The package does no I/O besides reading the file and stat-ing paths in
// Validate; it is safe for concurrent reads once built.
package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/rs/zerolog"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/internal/units"
	"github.com/vfolder/vfolder/meta"
)

// Defaults.
const (
	DefaultStateDir   = "/var/lib/vfolder"
	DefaultMountPoint = "/run/vfolder/mnt"
	// DefaultSessionsDir is where published session views are mounted on
	// the host (package mountd's root).
	DefaultSessionsDir = "/run/vfolder/sessions"
	DefaultStorageID   = 1100
	DefaultViewID      = 1000
	DefaultLogLevel    = "warn"
	// MaxID is the largest uid/gid accepted (2^32-2; 2^32-1 is the kernel's
	// "no id" value).
	MaxID = 1<<32 - 2

	// DefaultEtcdPrefix is where a cluster's keys live in etcd.
	DefaultEtcdPrefix = "/vfolder/"
	// DefaultRequestTimeout bounds one metadata call to etcd.
	DefaultRequestTimeout = 5 * time.Second
	// DefaultLeaseTTL is how long a node that stopped answering still
	// counts as alive (its sessions keep their folders from the trash).
	DefaultLeaseTTL = 10 * time.Second
	// MinLeaseTTL is the shortest lease_ttl accepted.
	MinLeaseTTL = 2 * time.Second
	// DefaultQuotaWait bounds how long growth beyond a node's quota grant
	// waits for more room (the cluster is full, or etcd is away) before
	// it fails with EDQUOT.
	DefaultQuotaWait = 5 * time.Second
)

// ErrInvalid is wrapped by every configuration error.
var ErrInvalid = errors.New("invalid configuration")

// Volume is one configured storage volume.
type Volume struct {
	// Path is the host directory of the volume (absolute).
	Path string
	// RWCanDelete lets rw views delete; default true.
	RWCanDelete bool
	// MountAllowed and CloneAllowed are the volume's switches; default true.
	MountAllowed bool
	CloneAllowed bool
	// Chown is what chown to another owner does in rw and wd views:
	// meta.ChownIgnore (default) or meta.ChownRefuse.
	Chown meta.ChownPolicy
	// RequireMount makes the volume count as missing unless its path is a
	// mount point; default false.
	RequireMount bool
}

// Config is the daemon configuration.
type Config struct {
	// Volumes by name.
	Volumes map[string]Volume
	// StateDir is node-local; badger lives in StateDir/meta.
	StateDir string
	// StorageUID/StorageGID own every file on the volumes.
	StorageUID, StorageGID int64
	// ViewUID/ViewGID is the owner shown in views unless a mount asks
	// for another one.
	ViewUID, ViewGID int64
	// Socket is the path of the API's unix socket.
	Socket string
	// AdminGroup is a group name or numeric gid whose members may use the
	// API besides root; empty means root only.
	AdminGroup string
	// MountPoint is where the FUSE namespace is mounted.
	MountPoint string
	// SessionsDir is where published sessions' views are mounted on the
	// host for container runtimes to bind (node-local, never in a volume,
	// apart from MountPoint and StateDir).
	SessionsDir string
	// ForceStop lets SIGTERM stop the daemon at once while sessions are
	// published; without it the first signal is refused and a second one
	// is needed.
	ForceStop bool
	// FUSE mounts the FUSE namespace at MountPoint; default true. Without
	// it the daemon serves the API (folders, quotas, policies) but no
	// views.
	FUSE bool
	// FUSEIoUring asks the kernel for FUSE over io_uring (Linux 6.14+
	// with the fuse module parameter enable_uring=Y); without it, or if
	// the kernel refuses, requests go through /dev/fuse. Default false.
	FUSEIoUring bool
	// KernelPermissions mounts the FUSE namespace with the kernel's
	// default_permissions: the kernel checks permission bits instead of
	// the daemon (slower: a GETATTR of the directory after every change
	// of its entries). Default false.
	KernelPermissions bool
	// LogLevel is a zerolog level name.
	LogLevel string
	// AutoCreateScopes creates an owner's quota scope on first folder
	// creation; default true.
	AutoCreateScopes bool
	// DefaultScopeLimit is the byte limit of an auto-created scope when the
	// owner's policy has no max_quota_scope_size; 0 = none.
	DefaultScopeLimit int64
	// Cluster is the [cluster] table; cluster mode when it has endpoints.
	Cluster Cluster
	// Metrics and Audit are the [metrics] and [audit] tables (observe.go).
	Metrics Metrics
	Audit   Audit
	// API is the [api] table: the optional TLS listener (api.go).
	API API
	// SFTP is the [sftp] table (sftp.go).
	SFTP SFTP
	// TokenKeyFile is the file API's token signing key; empty means
	// <StateDir>/token.key (created 0600 when absent).
	TokenKeyFile string
	// Daemon is the [daemon] table: the Go garbage collector (daemon.go).
	Daemon Daemon
}

// Cluster is the [cluster] table (see the package comment). Zero fields
// mean the defaults; the methods return the values in effect.
type Cluster struct {
	// EtcdEndpoints are etcd's client URLs; none means a single node.
	EtcdEndpoints []string
	// CAFile, CertFile and KeyFile are PEM files for TLS to etcd.
	CAFile, CertFile, KeyFile string
	// Prefix is the etcd key prefix ("" means DefaultEtcdPrefix).
	Prefix string
	// RequestTimeout bounds a metadata call (0 means the default).
	RequestTimeout time.Duration
	// LeaseTTL is the node's lease in etcd (0 means the default).
	LeaseTTL time.Duration
	// QuotaWait bounds the wait of growth beyond the node's quota grant
	// (0 means the default).
	QuotaWait time.Duration
	// NodeID names this node ("" means the hostname).
	NodeID string
}

// Enabled reports whether the node runs in cluster mode.
func (c Cluster) Enabled() bool { return len(c.EtcdEndpoints) > 0 }

// KeyPrefix is the etcd key prefix in effect.
func (c Cluster) KeyPrefix() string {
	if c.Prefix == "" {
		return DefaultEtcdPrefix
	}
	return c.Prefix
}

// Timeout is the request timeout in effect.
func (c Cluster) Timeout() time.Duration {
	if c.RequestTimeout == 0 {
		return DefaultRequestTimeout
	}
	return c.RequestTimeout
}

// TTL is the lease TTL in effect.
func (c Cluster) TTL() time.Duration {
	if c.LeaseTTL == 0 {
		return DefaultLeaseTTL
	}
	return c.LeaseTTL
}

// Wait is the quota wait in effect.
func (c Cluster) Wait() time.Duration {
	if c.QuotaWait == 0 {
		return DefaultQuotaWait
	}
	return c.QuotaWait
}

// Node is the node id in effect: NodeID, else the hostname ("" when the
// hostname cannot be read; Validate reports it).
func (c Cluster) Node() string {
	if c.NodeID != "" {
		return c.NodeID
	}
	h, err := os.Hostname()
	if err != nil {
		return ""
	}
	return h
}

// Default returns the built-in defaults (no volumes).
func Default() *Config {
	return &Config{
		Volumes:          map[string]Volume{},
		StateDir:         DefaultStateDir,
		StorageUID:       DefaultStorageID,
		StorageGID:       DefaultStorageID,
		ViewUID:          DefaultViewID,
		ViewGID:          DefaultViewID,
		Socket:           api.DefaultSocket,
		MountPoint:       DefaultMountPoint,
		SessionsDir:      DefaultSessionsDir,
		FUSE:             true,
		LogLevel:         DefaultLogLevel,
		AutoCreateScopes: true,
		Daemon:           Daemon{GOGC: DefaultGOGC},
	}
}

// fileVolume and file mirror the TOML layout. Pointers tell "absent" from
// "false"/zero so that absent keys keep their defaults.
type fileVolume struct {
	Path         string  `toml:"path"`
	RWCanDelete  *bool   `toml:"rw_can_delete"`
	MountAllowed *bool   `toml:"mount_allowed"`
	CloneAllowed *bool   `toml:"clone_allowed"`
	Chown        *string `toml:"chown"`
	RequireMount *bool   `toml:"require_mount"`
}

type file struct {
	Volumes           map[string]fileVolume `toml:"volumes"`
	StateDir          *string               `toml:"state_dir"`
	StorageUID        *int64                `toml:"storage_uid"`
	StorageGID        *int64                `toml:"storage_gid"`
	ViewUID           *int64                `toml:"view_uid"`
	ViewGID           *int64                `toml:"view_gid"`
	Socket            *string               `toml:"socket"`
	AdminGroup        *adminGroup           `toml:"admin_group"`
	MountPoint        *string               `toml:"mount_point"`
	SessionsDir       *string               `toml:"sessions_dir"`
	ForceStop         *bool                 `toml:"force_stop"`
	FUSE              *bool                 `toml:"fuse"`
	FUSEIoUring       *bool                 `toml:"fuse_io_uring"`
	KernelPermissions *bool                 `toml:"kernel_permissions"`
	LogLevel          *string               `toml:"log_level"`
	AutoCreateScopes  *bool                 `toml:"auto_create_scopes"`
	DefaultScopeLimit *size                 `toml:"default_scope_limit"`
	Cluster           *fileCluster          `toml:"cluster"`
	Metrics           *fileMetrics          `toml:"metrics"`
	Audit             *fileAudit            `toml:"audit"`
	API               *fileAPI              `toml:"api"`
	SFTP              *fileSFTP             `toml:"sftp"`
	TokenKeyFile      *string               `toml:"token_key_file"`
	Daemon            *fileDaemon           `toml:"daemon"`
}

type fileCluster struct {
	EtcdEndpoints  *endpoints `toml:"etcd_endpoints"`
	CAFile         *string    `toml:"ca_file"`
	CertFile       *string    `toml:"cert_file"`
	KeyFile        *string    `toml:"key_file"`
	Prefix         *string    `toml:"prefix"`
	RequestTimeout *duration  `toml:"request_timeout"`
	LeaseTTL       *duration  `toml:"lease_ttl"`
	QuotaWait      *duration  `toml:"quota_wait"`
	NodeID         *string    `toml:"node_id"`
}

// endpoints accepts an array of URLs or one comma-separated string.
type endpoints []string

func (e *endpoints) UnmarshalTOML(v any) error {
	switch x := v.(type) {
	case string:
		*e = SplitEndpoints(x)
	case []any:
		out := make([]string, 0, len(x))
		for _, item := range x {
			s, ok := item.(string)
			if !ok {
				return fmt.Errorf("must be a list of URLs (strings), not a list holding %T", item)
			}
			out = append(out, s)
		}
		*e = out
	default:
		return fmt.Errorf("must be a list of URLs or a comma-separated string, not %T", v)
	}
	return nil
}

// SplitEndpoints splits a comma-separated endpoint list, dropping blanks.
func SplitEndpoints(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// duration accepts a Go duration string ("5s", "1m30s") or a whole
// number of seconds.
type duration time.Duration

func (d *duration) UnmarshalTOML(v any) error {
	switch x := v.(type) {
	case int64:
		if x <= 0 {
			return fmt.Errorf("%d is not a positive number of seconds", x)
		}
		*d = duration(time.Duration(x) * time.Second)
	case string:
		p, err := ParseDuration(x)
		if err != nil {
			return err
		}
		*d = duration(p)
	default:
		return fmt.Errorf("must be a duration such as \"5s\" or a number of seconds, not %T", v)
	}
	return nil
}

// ParseDuration parses a positive duration ("5s", "1m30s").
func ParseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (like \"5s\" or \"1m30s\")", s)
	}
	if d <= 0 {
		return 0, fmt.Errorf("%q is not a positive duration", s)
	}
	return d, nil
}

// adminGroup accepts a group name (string) or a gid (integer).
type adminGroup string

func (g *adminGroup) UnmarshalTOML(v any) error {
	switch x := v.(type) {
	case string:
		*g = adminGroup(x)
	case int64:
		if x < 0 || x > MaxID {
			return fmt.Errorf("gid %d is out of range 0..%d", x, int64(MaxID))
		}
		*g = adminGroup(strconv.FormatInt(x, 10))
	default:
		return fmt.Errorf("must be a group name or a gid, not %T", v)
	}
	return nil
}

// size accepts a byte count (integer) or a size string ("100G",
// "unlimited"; the rules of package units).
type size int64

func (z *size) UnmarshalTOML(v any) error {
	switch x := v.(type) {
	case int64:
		if x < 0 {
			return fmt.Errorf("%d is negative", x)
		}
		*z = size(x)
	case string:
		n, err := units.ParseLimit(x)
		if err != nil {
			return err
		}
		*z = size(n)
	default:
		return fmt.Errorf("must be a byte count or a size such as \"100G\", not %T", v)
	}
	return nil
}

// Load reads the TOML file at path over the defaults. An empty path
// returns the defaults. The result is not validated yet.
func Load(path string) (*Config, error) {
	c := Default()
	if path == "" {
		return c, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: config file: %v", ErrInvalid, err)
	}
	if err := c.merge(string(data)); err != nil {
		return nil, fmt.Errorf("%w: config file %s: %v", ErrInvalid, path, err)
	}
	return c, nil
}

// Parse reads TOML text over the defaults (Load without the file).
func Parse(text string) (*Config, error) {
	c := Default()
	if err := c.merge(text); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return c, nil
}

func (c *Config) merge(text string) error {
	var f file
	md, err := toml.Decode(text, &f)
	if err != nil {
		return err
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return fmt.Errorf("unknown key(s): %s", strings.Join(keys, ", "))
	}
	for name, fv := range f.Volumes {
		v := Volume{Path: fv.Path, RWCanDelete: true, MountAllowed: true, CloneAllowed: true, Chown: meta.ChownIgnore}
		if fv.RWCanDelete != nil {
			v.RWCanDelete = *fv.RWCanDelete
		}
		if fv.MountAllowed != nil {
			v.MountAllowed = *fv.MountAllowed
		}
		if fv.CloneAllowed != nil {
			v.CloneAllowed = *fv.CloneAllowed
		}
		if fv.Chown != nil {
			v.Chown = meta.ChownPolicy(*fv.Chown)
		}
		setIf(&v.RequireMount, fv.RequireMount)
		c.Volumes[name] = v
	}
	setIf(&c.StateDir, f.StateDir)
	setIf(&c.StorageUID, f.StorageUID)
	setIf(&c.StorageGID, f.StorageGID)
	setIf(&c.ViewUID, f.ViewUID)
	setIf(&c.ViewGID, f.ViewGID)
	setIf(&c.Socket, f.Socket)
	if f.AdminGroup != nil {
		c.AdminGroup = string(*f.AdminGroup)
	}
	setIf(&c.MountPoint, f.MountPoint)
	setIf(&c.SessionsDir, f.SessionsDir)
	setIf(&c.TokenKeyFile, f.TokenKeyFile)
	setIf(&c.ForceStop, f.ForceStop)
	setIf(&c.KernelPermissions, f.KernelPermissions)
	setIf(&c.FUSE, f.FUSE)
	setIf(&c.FUSEIoUring, f.FUSEIoUring)
	setIf(&c.LogLevel, f.LogLevel)
	setIf(&c.AutoCreateScopes, f.AutoCreateScopes)
	if f.DefaultScopeLimit != nil {
		c.DefaultScopeLimit = int64(*f.DefaultScopeLimit)
	}
	c.API.merge(f.API)
	if fc := f.Cluster; fc != nil {
		if fc.EtcdEndpoints != nil {
			c.Cluster.EtcdEndpoints = *fc.EtcdEndpoints
		}
		setIf(&c.Cluster.CAFile, fc.CAFile)
		setIf(&c.Cluster.CertFile, fc.CertFile)
		setIf(&c.Cluster.KeyFile, fc.KeyFile)
		setIf(&c.Cluster.Prefix, fc.Prefix)
		if fc.RequestTimeout != nil {
			c.Cluster.RequestTimeout = time.Duration(*fc.RequestTimeout)
		}
		if fc.LeaseTTL != nil {
			c.Cluster.LeaseTTL = time.Duration(*fc.LeaseTTL)
		}
		if fc.QuotaWait != nil {
			c.Cluster.QuotaWait = time.Duration(*fc.QuotaWait)
		}
		setIf(&c.Cluster.NodeID, fc.NodeID)
	}
	c.mergeObserve(f.Metrics, f.Audit)
	c.mergeSFTP(f.SFTP)
	c.mergeDaemon(f.Daemon)
	return nil
}

func setIf[T any](dst *T, src *T) {
	if src != nil {
		*dst = *src
	}
}

// SetVolume adds a volume from the command line, or changes the path of a
// volume the file already defines (keeping its switches).
func (c *Config) SetVolume(name, path string) {
	v, ok := c.Volumes[name]
	if !ok {
		v = Volume{RWCanDelete: true, MountAllowed: true, CloneAllowed: true, Chown: meta.ChownIgnore}
	}
	v.Path = path
	c.Volumes[name] = v
}

// ParseVolumeFlag parses the NAME=PATH form of --volume. The name is
// checked like a configured volume name; the path must be non-empty
// (Validate checks the rest).
func ParseVolumeFlag(s string) (name, path string, err error) {
	name, path, ok := strings.Cut(s, "=")
	if !ok {
		return "", "", fmt.Errorf("%w: --volume %q: want NAME=PATH", ErrInvalid, s)
	}
	if err := ValidateVolumeName(name); err != nil {
		return "", "", fmt.Errorf("--volume %q: %w", s, err)
	}
	if path == "" {
		return "", "", fmt.Errorf("%w: --volume %q: the path is empty", ErrInvalid, s)
	}
	if strings.ContainsRune(path, 0) {
		return "", "", fmt.Errorf("%w: --volume %q: the path contains a NUL byte", ErrInvalid, s)
	}
	return name, path, nil
}

var volumeNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

const volumeNameRule = "a volume name is 1-64 characters of a-z, 0-9, '.', '_', '-', starting with a letter or digit"

// ValidateVolumeName checks a volume name: 1..64 characters of
// [a-z0-9._-], starting with a letter or digit.
func ValidateVolumeName(name string) error {
	if !volumeNameRE.MatchString(name) {
		return fmt.Errorf("%w: volume name %q: %s", ErrInvalid, name, volumeNameRule)
	}
	return nil
}

// Validate checks the configuration and reports every problem, each
// naming its field.
func (c *Config) Validate() error {
	var errs []string
	add := func(field, format string, a ...any) {
		errs = append(errs, field+": "+fmt.Sprintf(format, a...))
	}

	if len(c.Volumes) == 0 {
		add("volumes", "no volume is configured (set [volumes.NAME] path = ... or --volume NAME=PATH)")
	}
	names := c.VolumeNames()
	// real holds each volume's resolved path for the overlap checks.
	real := map[string]string{}
	for _, name := range names {
		v := c.Volumes[name]
		field := "volumes." + name + ".path"
		if !volumeNameRE.MatchString(name) {
			add("volumes."+name, volumeNameRule)
			continue
		}
		if v.Chown != meta.ChownIgnore && v.Chown != meta.ChownRefuse {
			add("volumes."+name+".chown", "%q is not a chown policy: want %q (chown in rw and wd views succeeds and files keep the storage owner) or %q (it fails with EPERM)",
				v.Chown, meta.ChownIgnore, meta.ChownRefuse)
		}
		if v.Path == "" {
			add(field, "is empty")
			continue
		}
		if !filepath.IsAbs(v.Path) {
			add(field, "%q is not an absolute path", v.Path)
			continue
		}
		st, err := os.Stat(v.Path)
		if err != nil {
			add(field, "%v", err)
			continue
		}
		if !st.IsDir() {
			add(field, "%q is not a directory", v.Path)
			continue
		}
		r, err := filepath.EvalSymlinks(v.Path)
		if err != nil {
			add(field, "%v", err)
			continue
		}
		real[name] = r
	}
	for i, a := range names {
		for _, b := range names[i+1:] {
			ra, rb := real[a], real[b]
			if ra == "" || rb == "" {
				continue
			}
			if within(ra, rb) || within(rb, ra) {
				add("volumes."+b+".path", "overlaps volume %q (%s and %s)", a, ra, rb)
			}
		}
	}

	checkLocal := func(field, p string) {
		if p == "" {
			add(field, "is empty")
			return
		}
		if !filepath.IsAbs(p) {
			add(field, "%q is not an absolute path", p)
			return
		}
		rp := resolveExisting(p)
		for _, name := range names {
			if rv := real[name]; rv != "" && within(rv, rp) {
				add(field, "%q lies inside volume %q (%s); it must be on node-local disk", p, name, rv)
			}
		}
	}
	checkLocal("state_dir", c.StateDir)
	checkLocal("socket", c.Socket)
	checkLocal("mount_point", c.MountPoint)
	if c.StateDir != "" && c.MountPoint != "" && filepath.IsAbs(c.StateDir) && filepath.IsAbs(c.MountPoint) {
		sd, mp := resolveExisting(c.StateDir), resolveExisting(c.MountPoint)
		if within(sd, mp) || within(mp, sd) {
			add("mount_point", "%q overlaps state_dir %q", c.MountPoint, c.StateDir)
		}
	}
	checkLocal("sessions_dir", c.SessionsDir)
	if filepath.IsAbs(c.SessionsDir) {
		sd := resolveExisting(c.SessionsDir)
		for _, o := range []struct{ field, p string }{{"mount_point", c.MountPoint}, {"state_dir", c.StateDir}} {
			if !filepath.IsAbs(o.p) {
				continue
			}
			op := resolveExisting(o.p)
			if within(sd, op) || within(op, sd) {
				add("sessions_dir", "%q overlaps %s %q", c.SessionsDir, o.field, o.p)
			}
		}
		// sessions_dir is made root-only (0700): the admin group could
		// not reach a socket inside it.
		if filepath.IsAbs(c.Socket) && within(sd, resolveExisting(c.Socket)) {
			add("socket", "%q is inside sessions_dir %q, which only root may enter", c.Socket, c.SessionsDir)
		}
	}
	if c.Socket != "" && strings.HasSuffix(c.Socket, "/") {
		add("socket", "%q names a directory, not a socket file", c.Socket)
	}

	for _, id := range []struct {
		field string
		v     int64
	}{{"storage_uid", c.StorageUID}, {"storage_gid", c.StorageGID}, {"view_uid", c.ViewUID}, {"view_gid", c.ViewGID}} {
		if id.v < 0 || id.v > MaxID {
			add(id.field, "%d is out of range 0..%d", id.v, int64(MaxID))
		}
	}
	if _, err := zerolog.ParseLevel(c.LogLevel); err != nil || c.LogLevel == "" {
		add("log_level", "%q is not one of trace, debug, info, warn, error, fatal, panic, disabled", c.LogLevel)
	}
	if c.DefaultScopeLimit < 0 {
		add("default_scope_limit", "%d is negative", c.DefaultScopeLimit)
	}
	if c.AdminGroup != "" {
		if _, err := c.AdminGID(); err != nil {
			add("admin_group", "%v", err)
		}
	}
	c.Cluster.validate(add)
	c.validateObserve(add, checkLocal)
	c.API.validate(add)
	c.validateSFTP(add)
	c.validateDaemon(add)
	if len(errs) > 0 {
		return fmt.Errorf("%w:\n  %s", ErrInvalid, strings.Join(errs, "\n  "))
	}
	return nil
}

// VolumeNames returns the configured volume names, sorted.
func (c *Config) VolumeNames() []string {
	names := make([]string, 0, len(c.Volumes))
	for n := range c.Volumes {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// AdminGID resolves AdminGroup to a gid; -1 when no admin group is set.
func (c *Config) AdminGID() (int, error) {
	if c.AdminGroup == "" {
		return -1, nil
	}
	if n, err := strconv.ParseInt(c.AdminGroup, 10, 64); err == nil {
		if n < 0 || n > MaxID {
			return 0, fmt.Errorf("gid %d is out of range 0..%d", n, int64(MaxID))
		}
		return int(n), nil
	}
	g, err := user.LookupGroup(c.AdminGroup)
	if err != nil {
		return 0, fmt.Errorf("group %q: %v", c.AdminGroup, err)
	}
	n, err := strconv.Atoi(g.Gid)
	if err != nil {
		return 0, fmt.Errorf("group %q has a non-numeric gid %q", c.AdminGroup, g.Gid)
	}
	return n, nil
}

// Level returns the parsed log level (warn if it does not parse; Validate
// reports that).
func (c *Config) Level() zerolog.Level {
	l, err := zerolog.ParseLevel(c.LogLevel)
	if err != nil || c.LogLevel == "" {
		return zerolog.WarnLevel
	}
	return l
}

// within reports whether p is dir or lies below it (both clean, absolute).
func within(dir, p string) bool {
	if dir == p {
		return true
	}
	if dir == "/" {
		return true
	}
	return strings.HasPrefix(p, dir+"/")
}

// resolveExisting resolves symlinks in the longest existing prefix of p and
// appends the rest, so that a path that does not exist yet can still be
// compared with resolved volume paths.
func resolveExisting(p string) string {
	p = filepath.Clean(p)
	rest := ""
	for {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Join(r, rest)
		}
		parent := filepath.Dir(p)
		if parent == p {
			return filepath.Join(p, rest)
		}
		rest = filepath.Join(filepath.Base(p), rest)
		p = parent
	}
}

var nodeIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

const nodeIDRule = "a node id is 1-63 characters of letters, digits, '.', '_', '-', starting with a letter or digit"

// ValidateNodeID checks a node id.
func ValidateNodeID(id string) error {
	if !nodeIDRE.MatchString(id) {
		return fmt.Errorf("%w: node id %q: %s", ErrInvalid, id, nodeIDRule)
	}
	return nil
}

// validate checks the [cluster] table (see the package comment).
func (c Cluster) validate(add func(field, format string, a ...any)) {
	if !c.Enabled() {
		for _, o := range []struct{ field, v string }{
			{"ca_file", c.CAFile}, {"cert_file", c.CertFile}, {"key_file", c.KeyFile},
			{"prefix", c.Prefix}, {"node_id", c.NodeID},
		} {
			if o.v != "" {
				add("cluster."+o.field, "is set but cluster.etcd_endpoints is empty (--etcd-endpoints): without endpoints vfolderd runs as a single node")
			}
		}
		if c.RequestTimeout != 0 || c.LeaseTTL != 0 || c.QuotaWait != 0 {
			add("cluster", "request_timeout, lease_ttl and quota_wait need cluster.etcd_endpoints (--etcd-endpoints): without endpoints vfolderd runs as a single node")
		}
		return
	}
	tlsSet := c.CAFile != "" || c.CertFile != "" || c.KeyFile != ""
	for _, ep := range c.EtcdEndpoints {
		if err := checkEndpoint(ep); err != nil {
			add("cluster.etcd_endpoints", "%v", err)
			continue
		}
		if tlsSet && strings.HasPrefix(strings.ToLower(ep), "http://") {
			add("cluster.etcd_endpoints", "%q is plain http but TLS files are set; use https:// endpoints (the etcd client ignores TLS for http://)", ep)
		}
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		add("cluster.cert_file", "a client certificate needs both cert_file and key_file (--etcd-cert, --etcd-key)")
	}
	readable := func(field, p string) ([]byte, bool) {
		if p == "" {
			return nil, false
		}
		if !filepath.IsAbs(p) {
			add(field, "%q is not an absolute path", p)
			return nil, false
		}
		b, err := os.ReadFile(p)
		if err != nil {
			add(field, "%v", err)
			return nil, false
		}
		return b, true
	}
	if ca, ok := readable("cluster.ca_file", c.CAFile); ok {
		if !x509.NewCertPool().AppendCertsFromPEM(ca) {
			add("cluster.ca_file", "%s holds no PEM certificate", c.CAFile)
		}
	}
	cert, okC := readable("cluster.cert_file", c.CertFile)
	key, okK := readable("cluster.key_file", c.KeyFile)
	if okC && okK {
		if _, err := tls.X509KeyPair(cert, key); err != nil {
			add("cluster.cert_file", "%s and %s are not a matching PEM certificate and key: %v", c.CertFile, c.KeyFile, err)
		}
	}
	if c.Prefix != "" && (!strings.HasPrefix(c.Prefix, "/") || strings.ContainsFunc(c.Prefix, func(r rune) bool { return r <= ' ' || r == 0x7f })) {
		add("cluster.prefix", "%q must start with '/' and hold no spaces or control characters", c.Prefix)
	}
	if c.RequestTimeout < 0 || (c.RequestTimeout > 0 && c.RequestTimeout < 100*time.Millisecond) || c.RequestTimeout > 10*time.Minute {
		add("cluster.request_timeout", "%v is outside 100ms..10m", c.RequestTimeout)
	}
	if c.QuotaWait < 0 || (c.QuotaWait > 0 && c.QuotaWait < 100*time.Millisecond) || c.QuotaWait > 10*time.Minute {
		add("cluster.quota_wait", "%v is outside 100ms..10m", c.QuotaWait)
	}
	if ttl := c.LeaseTTL; ttl != 0 {
		switch {
		case ttl < MinLeaseTTL || ttl > time.Hour:
			add("cluster.lease_ttl", "%v is outside %v..1h", ttl, MinLeaseTTL)
		case ttl%time.Second != 0:
			add("cluster.lease_ttl", "%v is not a whole number of seconds (etcd leases count seconds)", ttl)
		}
	}
	if c.NodeID == "" {
		h := c.Node()
		if err := ValidateNodeID(h); err != nil {
			add("cluster.node_id", "is not set and the hostname %q is not a node id (%s); set node_id (--node-id)", h, nodeIDRule)
		}
	} else if err := ValidateNodeID(c.NodeID); err != nil {
		add("cluster.node_id", "%q: %s", c.NodeID, nodeIDRule)
	}
}

// checkEndpoint checks one etcd client URL: http(s)://host:port, or
// host:port.
func checkEndpoint(ep string) error {
	if !strings.Contains(ep, "://") {
		if _, _, err := net.SplitHostPort(ep); err != nil {
			return fmt.Errorf("%q is neither a URL (http://host:2379, https://host:2379) nor host:port", ep)
		}
		return nil
	}
	u, err := url.Parse(ep)
	if err != nil {
		return fmt.Errorf("%q: %v", ep, err)
	}
	switch strings.ToLower(u.Scheme) {
	case "http", "https":
	default:
		return fmt.Errorf("%q: the scheme must be http or https", ep)
	}
	if u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return fmt.Errorf("%q must be scheme://host:port, without a path, query or user", ep)
	}
	return nil
}
