// Command vfolderd is the vfolder node daemon: it keeps the metadata
// (badger, in the node-local state directory; in cluster mode etcd, shared
// by every node), manages folders on the configured shared volumes, serves
// their views in a FUSE namespace (package fs: a node-wide mount plus one
// mount per session) and serves the local API on a unix socket.
//
// Configuration comes from a TOML file (--config) and from flags, each of
// which can also be set through a VFOLDER_* environment variable; a flag
// wins over the variable, the variable over the file, the file over the
// default. See contrib/vfolderd.toml.sample.
//
// # Start
//
//  1. load and validate the configuration (every problem names its field);
//  2. lock the state directory (state_dir/vfolderd.lock, flock): a second
//     daemon on the same state directory exits with status 1 and touches
//     nothing, the socket of the running one included;
//  3. measure the state disk (package statedisk): on a disk too full for
//     badger to replay and flush its log, release the start ballast
//     (state_dir/vfolderd.reserve-start); when even that leaves too
//     little, exit with status 1 saying how much is needed (badger would
//     die of SIGBUS otherwise);
//  4. open the metadata store (state_dir/meta), then the quota ledger in
//     the same badger database (package quota). In cluster mode (see
//     below) the metadata store is etcd, reached and joined first, and
//     the ledger opens a badger database of its own, state_dir/ledger,
//     which the state disk guard watches instead. The ledger settles what a
//     SIGKILL left in flight, looking at the files that were open for
//     writing on the configured volumes that are there (a missing mount
//     would make every file look deleted), so byte usage is exact from
//     here on. The state disk guard starts watching: it preallocates
//     badger's memtable logs, keeps the ballast files, and while the disk
//     is short makes the ledger refuse growth (ENOSPC) and the API
//     metadata changes ("state disk full", 507), until space returns;
//  5. attach each volume (service.AttachVolume): its path must exist, be
//     a mount point when require_mount is set, carry version.txt ("3")
//     and hold at least one of the folders the store knows on it;
//     version.txt is written only into an empty directory the store does
//     not know. A volume of another layout stops the start (exit 1); a
//     missing one is logged and left unavailable: its folders show status
//     error and get no views, creating on it is refused, and it is tried
//     again every 3 s (step 10);
//  6. recover what a crash interrupted (folders left "performing",
//     interrupted purges, which resume in the background), then hand
//     every quota scope's stored limits to the ledger and drop ledger
//     entries of folders that were purged (service.StartQuota);
//  7. mount the FUSE namespace at mount_point (unless fuse = false /
//     --no-fuse): a stale mount left there by a vfolderd that died (stat
//     answers ENOTCONN, or a FUSE mount named "vfolder" is at that path)
//     is detached first, with the dead session mounts on it; without root
//     or /dev/fuse the daemon exits with an error saying so. Then every
//     standing view (users/, projects/) is built from the store. Each
//     session's views get a FUSE mount of their own on
//     mount_point/sessions/<sid> when the session's first view is made;
//  8. reconcile the published sessions (service.StartSessions): their
//     views are made again and published on the same host paths under
//     sessions_dir, on top of the dead mounts of the previous FUSE
//     connections, so containers that kept running work again; sessions
//     whose folders are gone are cleaned. Nothing is mounted under
//     sessions_dir until a session exists; a self-bind of sessions_dir
//     that a killed run left is taken over, so a clean stop releases it;
//  9. after an unclean shutdown (the ledger's WasUnclean, or a recovery
//     check that did not finish last time: state_dir/quota-check-pending),
//     start checking every quota scope against storage with repair, in
//     the background, one scope after the other. It runs while the daemon
//     serves, from the first request on: the check works online, writes
//     go on, `quota-scope get` answers from the ledger and says
//     "checking" until the scope's check is done. Byte figures are exact
//     before it (step 4); what it settles is the inode bookkeeping of
//     creates and removals cut by the crash. The pending file is removed
//     when every scope was checked and no volume is unavailable;
//  10. with [sftp] listen (--sftp-listen), start the SFTP endpoint (package
//     sftpd: the host key is made when absent; the address must bind or
//     the start fails); bind the socket (refusing one something still
//     answers on, replacing a stale one), and the TLS listener when [api]
//     listen (--api-listen) is set, and serve; from here on the unavailable volumes are
//     tried every 3 s, and one that attaches is brought into service
//     (limits, interrupted creates and purges, views, and a quota check
//     after an unclean start) without a restart.
//
// # Cluster mode
//
// With [cluster] etcd_endpoints (--etcd-endpoints) the node is one of a
// cluster. Before step 4 it opens the metadata store in etcd
// (meta/etcdstore, its session records under its node id) and joins the
// cluster (package cluster: its record and its alive key under a lease,
// taking over what an earlier run of this node left, whose claims stay
// alive until step 8 has claimed the sessions' folders again; a node id
// in use by another live daemon stops the start); an etcd that
// does not answer within request_timeout stops the start with "cluster
// store unreachable" (exit 1) before anything is touched. In step 4 the
// ledger opens in cluster mode: one quota per scope across the nodes
// (package quota/grants) on the store's etcd client, below the store's
// prefix plus "quota/", with the node id, lease_ttl, request_timeout and
// quota_wait. Its client starts before anything is served: it takes the
// node's quota lease (a second lease, see below), applies what survivors
// settled for an earlier run of this node, settles what that run left
// and restores the write holds it registered; a failure stops the start.
// Step 5 records each volume through the cluster: a configuration that
// differs from the one live nodes use stops the start. Recovery (step 6)
// finishes only what no live node is doing; step 6 also hands every
// scope's limits to the cluster quota. Step 9's check after an unclean
// stop is the cluster check (one walk corrects the cluster figure; the
// node's own ledger knows only what the node wrote). After step 8 the node follows the changes
// the others make (service.FollowStore): views, memberships, limits and
// purges made through any node reach this one, and it finishes what a
// node that leaves the cluster left unfinished. While etcd is away views
// and I/O go on, metadata changes fail (503, "cluster store
// unreachable"), writes inside the quota grants the node holds go on and
// growth beyond them waits quota_wait and then fails with EDQUOT; the
// node catches up by itself when etcd is back.
//
// A node holds two leases of lease_ttl: its registration's, with its
// sessions' claims (package cluster), and its quota grants' (package
// quota/grants). They end differently: a restarted node keeps the earlier
// run's claims alive until its sessions are reconciled, but gives up the
// earlier run's grant lease at once; and growth stops as soon as the grant
// lease cannot be known alive (from the renewals the node sent), which
// the registration's keepalive stream does not tell. Both expire when the
// node dies or loses etcd. If only the registration's expires, the node
// counts as expired (its sessions' folders can be trashed) until it
// registers again, and its quota goes on; if only the grants' expires,
// the node stops growing, a survivor settles its open files and takes its
// grant back, and the node rejoins under a new lease.
//
// # Metrics and audit log
//
// With [metrics] listen (--metrics-listen) the daemon serves Prometheus
// metrics at /metrics on that address (package internal/metrics, started
// right after the service is made, before the FUSE namespace is mounted,
// so that every FUSE request is observed). With [audit] file
// (--audit-log) every API request that may change something is appended
// to that file as a JSON line (internal/server audit.go); SIGHUP reopens
// it. Both are stopped after the API server, before the service closes
// (observe.go).
//
// # Stop
//
// On SIGTERM or SIGINT while sessions are published (and without
// force_stop / --force-stop), the daemon refuses: it logs how many
// sessions are live and keeps serving, because stopping makes every
// mount of those sessions fail (ENOTCONN) until the daemon is back. A
// second signal stops it anyway (forced); the session records and their
// host mounts stay, and the next start reconciles them. To stop cleanly,
// unpublish the sessions first.
//
// Stopping: stop accepting API calls, let in-flight ones finish (up to
// shutdownTimeout, after which they are cut and interrupted purges resume
// at the next start), close the SFTP endpoint (its listener and every
// session, closing their files), release the sessions directory when no session is
// left, unmount the FUSE namespace, the sessions' mounts first (aborting a
// connection when copies of the mount live on elsewhere: published
// sessions hold such copies),
// stop background work (purges, checks, following the cluster), in
// cluster mode leave the cluster quota (what the node wrote is settled, its
// grants go back to the pool, its quota lease is revoked; files still
// held open stay registered for the next start or a survivor), close
// the quota ledger (which writes what is pending and marks the shutdown
// clean), close the badger database (unless the state disk has no room
// for badger's final flush: its log is then replayed at the next start),
// in cluster mode leave the cluster (the node's record says it stopped;
// its lease is revoked, and with it the claims of its sessions: the
// sessions of a forced stop stop protecting their folders) and close the
// etcd client,
// remove the socket, release the lock, exit 0. A further
// signal during the shutdown kills the process at once.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/fs"
	"github.com/vfolder/vfolder/internal/cluster"
	"github.com/vfolder/vfolder/internal/config"
	"github.com/vfolder/vfolder/internal/server"
	"github.com/vfolder/vfolder/internal/service"
	"github.com/vfolder/vfolder/internal/statedisk"
	"github.com/vfolder/vfolder/internal/volume"
	"github.com/vfolder/vfolder/meta"
	"github.com/vfolder/vfolder/meta/etcdstore"
	"github.com/vfolder/vfolder/mountd"
	"github.com/vfolder/vfolder/quota"
	"github.com/vfolder/vfolder/quota/grants"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

// shutdownTimeout bounds how long in-flight API calls may take to finish.
const shutdownTimeout = 30 * time.Second

func main() {
	app := newApp(runDaemon)
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintf(os.Stderr, "vfolderd: %v\n", err)
		os.Exit(1)
	}
}

func daemonVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// newApp builds the command line; run receives the merged configuration.
func newApp(run func(ctx context.Context, cfg *config.Config) error) *cli.App {
	env := func(name string) []string { return []string{"VFOLDER_" + name} }
	return &cli.App{
		Name:    "vfolderd",
		Usage:   "the vfolder node daemon: folders on shared volumes, quotas, the local API",
		Version: daemonVersion(),
		// Values stay unset (the file and the built-in defaults fill what no
		// flag sets); DefaultText shows those defaults in --help.
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "config", Aliases: []string{"c"}, EnvVars: env("CONFIG"), Usage: "TOML configuration `FILE`"},
			&cli.StringSliceFlag{Name: "volume", EnvVars: env("VOLUMES"), Usage: "a volume as `NAME=PATH` (repeatable; VFOLDER_VOLUMES takes a comma-separated list)"},
			&cli.StringFlag{Name: "state-dir", EnvVars: env("STATE_DIR"), Usage: "node-local state `DIR`", DefaultText: config.DefaultStateDir},
			&cli.StringFlag{Name: "socket", EnvVars: env("SOCKET"), Usage: "API socket `PATH`", DefaultText: api.DefaultSocket},
			&cli.Int64Flag{Name: "storage-uid", EnvVars: env("STORAGE_UID"), Usage: "`UID` owning everything on the volumes", DefaultText: strconv.Itoa(config.DefaultStorageID)},
			&cli.Int64Flag{Name: "storage-gid", EnvVars: env("STORAGE_GID"), Usage: "`GID` owning everything on the volumes", DefaultText: strconv.Itoa(config.DefaultStorageID)},
			&cli.Int64Flag{Name: "view-uid", EnvVars: env("VIEW_UID"), Usage: "`UID` files show as in views", DefaultText: strconv.Itoa(config.DefaultViewID)},
			&cli.Int64Flag{Name: "view-gid", EnvVars: env("VIEW_GID"), Usage: "`GID` files show as in views", DefaultText: strconv.Itoa(config.DefaultViewID)},
			&cli.StringFlag{Name: "admin-group", EnvVars: env("ADMIN_GROUP"), Usage: "`GROUP` (name or gid) allowed on the API besides root", DefaultText: "none"},
			&cli.StringFlag{Name: "mount-point", EnvVars: env("MOUNT_POINT"), Usage: "`DIR` of the FUSE namespace", DefaultText: config.DefaultMountPoint},
			&cli.BoolFlag{Name: "no-fuse", EnvVars: env("NO_FUSE"), Usage: "do not mount the FUSE namespace: serve the API without views (config: fuse = false)"},
			&cli.BoolFlag{Name: "fuse-io-uring", EnvVars: env("FUSE_IO_URING"), Usage: "receive FUSE requests over io_uring (Linux 6.14+, fuse module parameter enable_uring=Y; falls back to /dev/fuse) (config: fuse_io_uring)"},
			&cli.BoolFlag{Name: "kernel-permissions", EnvVars: env("KERNEL_PERMISSIONS"), Usage: "mount with default_permissions: the kernel checks permission bits in views instead of the daemon (config: kernel_permissions)"},
			&cli.StringFlag{Name: "sessions-dir", EnvVars: env("SESSIONS_DIR"), Usage: "`DIR` where published sessions are mounted for containers", DefaultText: config.DefaultSessionsDir},
			&cli.BoolFlag{Name: "force-stop", EnvVars: env("FORCE_STOP"), Usage: "stop on the first SIGTERM even while sessions are published (config: force_stop)"},
			&cli.StringFlag{Name: "log-level", EnvVars: env("LOG_LEVEL"), Usage: "`LEVEL`: trace, debug, info, warn, error", DefaultText: config.DefaultLogLevel},
			&cli.StringFlag{Name: "metrics-listen", EnvVars: env("METRICS_LISTEN"), Usage: "serve Prometheus metrics at /metrics on `HOST:PORT` (config: [metrics] listen)", DefaultText: "off"},
			&cli.StringFlag{Name: "audit-log", EnvVars: env("AUDIT_LOG"), Usage: "append a JSON line per API change to `FILE`; SIGHUP reopens it (config: [audit] file)", DefaultText: "off"},
			&cli.StringSliceFlag{Name: "etcd-endpoints", EnvVars: env("ETCD_ENDPOINTS"), Category: "cluster", Usage: "cluster mode: etcd client `URL`s (comma-separated or repeated; config: [cluster] etcd_endpoints)"},
			&cli.StringFlag{Name: "etcd-ca", EnvVars: env("ETCD_CA"), Category: "cluster", Usage: "PEM `FILE` of the CA that signed etcd's server certificates ([cluster] ca_file)"},
			&cli.StringFlag{Name: "etcd-cert", EnvVars: env("ETCD_CERT"), Category: "cluster", Usage: "PEM `FILE` of the node's client certificate for etcd ([cluster] cert_file)"},
			&cli.StringFlag{Name: "etcd-key", EnvVars: env("ETCD_KEY"), Category: "cluster", Usage: "PEM `FILE` of the client certificate's key ([cluster] key_file)"},
			&cli.StringFlag{Name: "etcd-prefix", EnvVars: env("ETCD_PREFIX"), Category: "cluster", Usage: "etcd key `PREFIX` ([cluster] prefix)", DefaultText: config.DefaultEtcdPrefix},
			&cli.StringFlag{Name: "etcd-timeout", EnvVars: env("ETCD_TIMEOUT"), Category: "cluster", Usage: "bound of one metadata call to etcd, a `DURATION` ([cluster] request_timeout)", DefaultText: config.DefaultRequestTimeout.String()},
			&cli.StringFlag{Name: "lease-ttl", EnvVars: env("LEASE_TTL"), Category: "cluster", Usage: "the node's lease in etcd, whole seconds (`DURATION`; [cluster] lease_ttl)", DefaultText: config.DefaultLeaseTTL.String()},
			&cli.StringFlag{Name: "quota-wait", EnvVars: env("QUOTA_WAIT"), Category: "cluster", Usage: "how long growth beyond the node's quota grant waits for room before EDQUOT, a `DURATION` ([cluster] quota_wait)", DefaultText: config.DefaultQuotaWait.String()},
			&cli.StringFlag{Name: "node-id", EnvVars: env("NODE_ID"), Category: "cluster", Usage: "this node's `NAME` in the cluster ([cluster] node_id)", DefaultText: "the hostname"},
			&cli.StringFlag{Name: "sftp-listen", EnvVars: env("SFTP_LISTEN"), Category: "sftp", Usage: "serve SFTP on this `HOST:PORT` ([sftp] listen)", DefaultText: "off"},
			&cli.StringFlag{Name: "sftp-host-key", EnvVars: env("SFTP_HOST_KEY"), Category: "sftp", Usage: "the SFTP host key `FILE`, made when absent ([sftp] host_key)", DefaultText: "state_dir/" + config.DefaultHostKeyName},
		}, append(apiFlags(env), gcFlags(env)...)...),
		HideHelpCommand: true,
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return fmt.Errorf("unexpected argument %q (vfolderd takes flags only)", c.Args().First())
			}
			cfg, err := loadConfig(c)
			if err != nil {
				return err
			}
			return run(c.Context, cfg)
		},
	}
}

// loadConfig merges file, environment and flags (urfave/cli has already
// put env values under flags that were not given) and validates.
func loadConfig(c *cli.Context) (*config.Config, error) {
	cfg, err := config.Load(c.String("config"))
	if err != nil {
		return nil, err
	}
	for _, v := range c.StringSlice("volume") {
		name, path, err := config.ParseVolumeFlag(v)
		if err != nil {
			return nil, err
		}
		cfg.SetVolume(name, path)
	}
	str := func(flag string, dst *string) {
		if c.IsSet(flag) {
			*dst = c.String(flag)
		}
	}
	num := func(flag string, dst *int64) {
		if c.IsSet(flag) {
			*dst = c.Int64(flag)
		}
	}
	str("state-dir", &cfg.StateDir)
	str("socket", &cfg.Socket)
	num("storage-uid", &cfg.StorageUID)
	num("storage-gid", &cfg.StorageGID)
	num("view-uid", &cfg.ViewUID)
	num("view-gid", &cfg.ViewGID)
	str("admin-group", &cfg.AdminGroup)
	str("mount-point", &cfg.MountPoint)
	str("sessions-dir", &cfg.SessionsDir)
	if c.IsSet("force-stop") {
		cfg.ForceStop = c.Bool("force-stop")
	}
	if c.IsSet("kernel-permissions") {
		cfg.KernelPermissions = c.Bool("kernel-permissions")
	}
	if c.IsSet("no-fuse") {
		cfg.FUSE = !c.Bool("no-fuse")
	}
	if c.IsSet("fuse-io-uring") {
		cfg.FUSEIoUring = c.Bool("fuse-io-uring")
	}
	str("log-level", &cfg.LogLevel)
	str("metrics-listen", &cfg.Metrics.Listen)
	str("audit-log", &cfg.Audit.File)
	if c.IsSet("etcd-endpoints") {
		var eps []string
		for _, v := range c.StringSlice("etcd-endpoints") {
			eps = append(eps, config.SplitEndpoints(v)...)
		}
		cfg.Cluster.EtcdEndpoints = eps
	}
	str("etcd-ca", &cfg.Cluster.CAFile)
	str("etcd-cert", &cfg.Cluster.CertFile)
	str("etcd-key", &cfg.Cluster.KeyFile)
	str("etcd-prefix", &cfg.Cluster.Prefix)
	str("node-id", &cfg.Cluster.NodeID)
	apiConfig(c, cfg)
	if err := gcConfig(c, cfg); err != nil {
		return nil, err
	}
	str("sftp-listen", &cfg.SFTP.Listen)
	str("sftp-host-key", &cfg.SFTP.HostKey)
	for _, d := range []struct {
		flag string
		dst  *time.Duration
	}{{"etcd-timeout", &cfg.Cluster.RequestTimeout}, {"lease-ttl", &cfg.Cluster.LeaseTTL}, {"quota-wait", &cfg.Cluster.QuotaWait}} {
		if c.IsSet(d.flag) {
			v, err := config.ParseDuration(c.String(d.flag))
			if err != nil {
				return nil, fmt.Errorf("%w: --%s: %v", config.ErrInvalid, d.flag, err)
			}
			*d.dst = v
		}
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

func newLogger(level zerolog.Level) zerolog.Logger {
	var w io.Writer = os.Stderr
	if _, err := unix.IoctlGetTermios(int(os.Stderr.Fd()), unix.TCGETS); err == nil {
		w = zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: time.RFC3339}
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger()
}

// errInUse reports that another daemon holds the state directory.
type errInUse struct {
	dir, holder string
}

func (e *errInUse) Error() string {
	return fmt.Sprintf("state directory %s is in use by another vfolderd (%s)", e.dir, e.holder)
}

// lockState creates the state directory (0700) and takes its lock file,
// writing our pid into it. The lock lives as long as the returned file.
func lockState(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	path := filepath.Join(dir, "vfolderd.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("state directory lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			holder := "pid unknown"
			if b, rerr := io.ReadAll(io.LimitReader(f, 32)); rerr == nil {
				if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil && pid > 0 {
					holder = "pid " + strconv.Itoa(pid)
				}
			}
			return nil, &errInUse{dir: dir, holder: holder}
		}
		return nil, fmt.Errorf("state directory lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

func runDaemon(parent context.Context, cfg *config.Config) (err error) {
	log := newLogger(cfg.Level())
	applyGC(cfg.Daemon, log)
	// Start-up steps are short and run to completion; signals are watched
	// once serving.
	ctx := context.Background()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)

	lock, err := lockState(cfg.StateDir)
	if err != nil {
		return err
	}
	defer lock.Close()
	// Runs after the store is closed, while the lock is still held.
	var sockPath string
	var sockInfo os.FileInfo
	defer func() {
		if sockPath != "" {
			removeSocket(sockPath, sockInfo, log)
		}
	}()

	// Cluster mode: the metadata lives in etcd (meta/etcdstore), shared
	// with the other nodes, and the node joins them (package cluster); the
	// quota ledger keeps a badger database of its own in state_dir/ledger.
	// A node of its own keeps both in one badger database, state_dir/meta.
	clusterMode := cfg.Cluster.Enabled()
	dbDir := filepath.Join(cfg.StateDir, "meta")
	if clusterMode {
		dbDir = filepath.Join(cfg.StateDir, "ledger")
	}
	warnOtherMode(cfg.StateDir, clusterMode, log)

	// The state disk guard (package statedisk) sees to it that badger
	// always has room to finish what it started: before the database
	// opens (releasing its ballast on a full disk, refusing to open when
	// even that is not enough), then for as long as the daemon runs.
	var ledgerRef atomic.Pointer[quota.Manager]
	guard := statedisk.New(statedisk.Options{
		Dir:          cfg.StateDir,
		DBDir:        dbDir,
		MemTableSize: meta.BadgerMemTableSize,
		Log:          log,
		OnChange: func(l statedisk.Level) {
			if m := ledgerRef.Load(); m != nil {
				m.SetStoreSpace(storeSpace(l))
			}
		},
	})
	if err := guard.Prepare(); err != nil {
		return err
	}

	ver := daemonVersion()
	var (
		store  meta.Store
		shared *etcdstore.Store // cluster mode: the metadata store
		cl     *cluster.Cluster // cluster mode: this node's membership
	)
	if clusterMode {
		shared, cl, err = joinCluster(ctx, cfg, ver, log)
		if err != nil {
			return err
		}
		// Deferred before the database's and the service's: the node
		// leaves the cluster (its claims go) once its views are gone,
		// then the store closes.
		defer func() {
			if cerr := shared.Close(); cerr != nil {
				log.Warn().Err(cerr).Msg("closing the cluster store")
			}
		}()
		defer func() {
			if cerr := cl.Close(); cerr != nil {
				log.Warn().Err(cerr).Msg("leaving the cluster")
			}
		}()
		store = shared
	}

	db, err := meta.OpenBadger(dbDir, log)
	if err != nil {
		return err // names the directory (and the holder, for ErrLocked)
	}
	defer func() {
		if !guard.RoomToClose() {
			// Closing flushes badger's memtable into a new table, which
			// a full disk cannot take (SIGBUS). Its log is durable: the
			// next start replays it, as after a crash.
			log.Error().Str("state_dir", cfg.StateDir).
				Msg("state disk full: leaving the database without closing it; its log is replayed at the next start")
			return
		}
		if cerr := db.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	if store == nil {
		store = db
	}

	var etcdCli *clientv3.Client
	if shared != nil {
		etcdCli = shared.Client()
	}
	// The service once it has attached the volumes: the ledger and the
	// cluster quota then look at folders on those (see openLedger).
	var attached atomic.Pointer[service.Service]
	ledger, gr, err := openLedger(db, store, cfg, etcdCli, &attached, log)
	if err != nil {
		return err
	}
	ledgerRef.Store(ledger)
	ledger.SetStoreSpace(storeSpace(guard.Level()))
	if err := guard.Start(); err != nil {
		return err
	}
	defer guard.Close()
	// Deferred after the store's Close, so it runs before it: after the
	// file system and the service (deferred below) are done with it.
	defer func() {
		if cerr := ledger.Close(); cerr != nil {
			log.Error().Err(cerr).Msg("closing the quota ledger")
			if err == nil {
				err = fmt.Errorf("closing the quota ledger: %w", cerr)
			}
		}
	}()
	// A typed nil would not be a nil interface.
	var svcQuota service.ClusterQuota
	if gr != nil {
		// Cluster quota: reconciles what an earlier run left, takes the
		// node's lease, then serves the ledger; before any view is served.
		if err := gr.Start(ctx, ledger); err != nil {
			gr.Close()
			return fmt.Errorf("cluster mode: starting the cluster quota: %w", err)
		}
		// Deferred after the ledger's Close, so it runs before it, and
		// after the file system's is deferred, so it runs after it:
		// nothing grows any more; what the node wrote is settled, its
		// grants go back to the pool and its quota lease is revoked.
		defer func() {
			if cerr := gr.Close(); cerr != nil {
				log.Warn().Err(cerr).Msg("leaving the cluster quota: what was not settled is settled at the next start, or by a survivor once the lease expires")
			}
		}()
		svcQuota = gr
	}

	// A typed nil would not be a nil interface.
	var svcCluster service.Cluster
	if cl != nil {
		svcCluster = cl
	}
	svc := service.New(store, service.Options{
		StorageUID:        int(cfg.StorageUID),
		StorageGID:        int(cfg.StorageGID),
		AutoCreateScopes:  cfg.AutoCreateScopes,
		DefaultScopeLimit: cfg.DefaultScopeLimit,
		ViewUID:           uint32(cfg.ViewUID),
		ViewGID:           uint32(cfg.ViewGID),
		MountPoint:        filepath.Clean(cfg.MountPoint), // absolute (Validate), as fs mounts it
		// The ledger enforces the limits and supplies the usage figures.
		// MountedBy: the service knows the session views and the
		// published sessions itself; in a cluster, Cluster tells of the
		// other nodes' mounts.
		Quota:        ledger,
		Cluster:      svcCluster,
		ClusterQuota: svcQuota,
		Log:          log,
	})
	defer svc.Close()
	// Metrics and the audit log, as configured (observe.go); before the
	// FUSE namespace is mounted, so that its requests are observed.
	obs, err := startObserve(cfg, ver, ledger, svc, log)
	if err != nil {
		return err
	}
	defer obs.Close()
	// A volume of another layout needs the operator: refuse to start. A
	// missing one (and any other failure) may come back by itself: serve
	// the others and try it again.
	var volErrs []string
	for _, name := range cfg.VolumeNames() {
		err := svc.AttachVolume(ctx, volumeRecord(name, cfg.Volumes[name]))
		if errors.Is(err, volume.ErrLayout) || errors.Is(err, volume.ErrUnsafe) || errors.Is(err, meta.ErrConflict) {
			volErrs = append(volErrs, err.Error())
		} else if err != nil {
			log.Error().Err(err).Str("volume", name).Str("path", cfg.Volumes[name].Path).
				Dur("retry", service.VolumeRetryInterval).
				Msg("volume unavailable: its folders show status error and get no views, and no folder can be created on it, until it is back; the other volumes are served")
		}
	}
	if len(volErrs) > 0 {
		return fmt.Errorf("refusing to start:\n  %s", strings.Join(volErrs, "\n  "))
	}
	attached.Store(svc)
	if err := svc.Recover(ctx); err != nil {
		return err
	}
	if err := svc.StartQuota(ctx); err != nil {
		return err
	}

	// Deferred after the service's and the store's Close, so it runs
	// before them: the file system goes once the API has stopped.
	var fsys *fs.FS
	defer func() {
		if fsys == nil {
			return
		}
		if cerr := fsys.Close(); cerr != nil {
			log.Error().Err(cerr).Str("mount_point", cfg.MountPoint).Msg("unmounting the FUSE namespace")
			if err == nil {
				err = fmt.Errorf("unmounting the FUSE namespace at %s: %w", cfg.MountPoint, cerr)
			}
		}
	}()
	if cfg.FUSE {
		fsys, err = mountViews(cfg, ledger, log)
		if err != nil {
			return err
		}
		if err := svc.StartViews(ctx, fsys); err != nil {
			return err
		}
		log.Info().Str("mount_point", cfg.MountPoint).Msg("FUSE namespace mounted")
		newMounts := func() (service.Mounts, error) { return service.NewMounts(cfg.SessionsDir, log) }
		if err := svc.StartSessions(ctx, newMounts, sessionsLeftovers(cfg.SessionsDir)); err != nil {
			// Folders and views still work; publishing reports the
			// problem again.
			log.Error().Err(err).Str("sessions_dir", cfg.SessionsDir).Msg("cannot reconcile the published sessions")
		}
		// Runs before the file system's Close (deferred above).
		defer func() {
			if cerr := svc.CloseSessions(context.Background()); cerr != nil {
				log.Warn().Err(cerr).Str("sessions_dir", cfg.SessionsDir).Msg("releasing the sessions directory")
			}
		}()
	} else {
		log.Warn().Msg("FUSE is disabled (fuse = false): serving the API without views")
	}

	if shared != nil {
		// The sessions are reconciled and their folders claimed again:
		// what an earlier run of this node left in the cluster can go.
		cl.ReleasePrevious()
		// Changes made through the other nodes, from here on (a snapshot
		// first: nothing made since the views were built is missed).
		svc.FollowStore(shared)
	}
	startQuotaRecovery(svc, ledger.WasUnclean(), cfg.StateDir, log)
	svc.WatchVolumes(service.VolumeRetryInterval)

	// Deferred after the file system's Close: sessions end before it goes.
	stopSFTP, err := startSFTP(cfg, svc, log)
	if err != nil {
		return err
	}
	defer stopSFTP()

	adminGID, err := cfg.AdminGID()
	if err != nil {
		return err
	}
	l, err := server.Listen(cfg.Socket, adminGID)
	if err != nil {
		return err
	}
	sockPath = cfg.Socket
	sockInfo, _ = os.Lstat(cfg.Socket)
	nodes := localNodes(svc, cfg.Cluster.Node(), ver)
	if cl != nil {
		nodes = cl.Nodes
	}
	var nodeGrants func(context.Context) (map[string][]api.NodeGrant, error)
	if gr != nil {
		nodeGrants = grantsByNode(store, gr, cfg.VolumeNames())
	}
	fileAPI, err := newFileAPI(cfg, svc, log)
	if err != nil {
		return err
	}
	if fileAPI != nil {
		defer fileAPI.Close()
	}
	srv := server.New(svc, server.Options{AdminGID: adminGID, Version: ver, StateDisk: guard.Err, Nodes: nodes, NodeGrants: nodeGrants, Files: fileAPI, Audit: obs.Audit(), Log: log})
	served := make(chan error, 2)
	go func() { served <- srv.Serve(l) }()
	apiL, err := listenAPI(cfg, log)
	if err != nil {
		srv.Close()
		<-served
		return err
	}
	if apiL != nil {
		go func() { served <- srv.Serve(apiL) }()
	}
	ready := log.Info().Str("socket", cfg.Socket).Str("state_dir", cfg.StateDir).Strs("volumes", cfg.VolumeNames()).
		Str("version", ver)
	if clusterMode {
		ready = ready.Str("node", cfg.Cluster.Node()).Strs("etcd", cfg.Cluster.EtcdEndpoints)
	}
	ready.Msg("vfolderd ready")

	if err := waitForStop(parent, served, sigs, svc, cfg.ForceStop, log); err != nil {
		l.Close()
		if apiL != nil {
			apiL.Close()
		}
		return err
	}
	// A further signal during the shutdown kills the process at once.
	signal.Stop(sigs)
	signal.Reset(syscall.SIGTERM, syscall.SIGINT)
	log.Info().Msg("shutting down")
	svc.StopChecks() // a long quota walk must not hold up the stop
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn().Err(err).Dur("timeout", shutdownTimeout).Msg("in-flight API calls did not finish; cutting them")
		svc.Close() // interrupts purges; they resume at the next start
		srv.Close()
	}
	<-served
	if apiL != nil {
		<-served
	}
	return nil
}

// waitForStop serves until a signal asks to stop. While sessions are
// published, a signal is refused (logged) unless force is set or it is
// the second one. The end of ctx stops it like a forced signal. It
// returns an error only when the API server stopped by itself.
func waitForStop(ctx context.Context, served <-chan error, sigs <-chan os.Signal, svc *service.Service, force bool, log zerolog.Logger) error {
	refused := false
	for {
		select {
		case err := <-served:
			return fmt.Errorf("API server stopped: %w", err)
		case <-ctx.Done():
			return nil
		case sig := <-sigs:
			live, err := svc.LiveSessions(context.WithoutCancel(ctx))
			if err != nil {
				log.Error().Err(err).Msg("cannot tell whether sessions are published; stopping")
				return nil
			}
			switch {
			case len(live) == 0:
				return nil
			case force:
				log.Warn().Int("sessions", len(live)).Strs("ids", live).Str("signal", sig.String()).
					Msg("stopping with published sessions (force_stop): their mounts fail until vfolderd is back and reconciles them")
				return nil
			case refused:
				log.Warn().Int("sessions", len(live)).Strs("ids", live).Str("signal", sig.String()).
					Msg("second signal: stopping with published sessions; their mounts fail until vfolderd is back and reconciles them")
				return nil
			}
			refused = true
			log.Warn().Int("sessions", len(live)).Strs("ids", live).Str("signal", sig.String()).
				Msg("refusing to stop: sessions are published and their mounts would fail until vfolderd is back; unpublish them, or send the signal again to stop anyway (force_stop makes one signal enough)")
		}
	}
}

// sessionsLeftovers reports whether an earlier run left something in the
// sessions directory: session directories, or its self-bind (a daemon
// killed after its last session was unpublished). Either makes the start
// take the directory over, so that a clean stop releases it.
func sessionsLeftovers(dir string) bool {
	if hasEntries(dir) {
		return true
	}
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		n, err := mountd.SelfBinds(real)
		return err == nil && n > 0
	}
	return false
}

// hasEntries reports whether dir exists and is not empty.
func hasEntries(dir string) bool {
	f, err := os.Open(dir)
	if err != nil {
		return false
	}
	defer f.Close()
	names, _ := f.Readdirnames(1)
	return len(names) > 0
}

// removeSocket removes the socket file if it is still the one we bound.
func removeSocket(path string, ours os.FileInfo, log zerolog.Logger) {
	cur, err := os.Lstat(path)
	if err != nil || ours == nil || !os.SameFile(ours, cur) {
		return
	}
	if err := os.Remove(path); err != nil {
		log.Warn().Err(err).Str("socket", path).Msg("cannot remove the socket")
	}
}

// openLedger opens the quota ledger in the badger database db (the
// metadata store's on a node of its own, the ledger's own in cluster mode).
// Crash recovery looks at folders on the configured volumes.
//
// Only volumes that are there (service.ProbeVolume, which asks the
// metadata store) are looked at: on a missing mount every file would look
// deleted. The marks of the others stay, and their inodes are settled by
// the check that follows the volume's return (service.WatchVolumes).
//
// In cluster mode (cli not nil) the ledger is in cluster mode too: its
// grants client (package quota/grants), returned for the caller to start,
// works on the cluster store's etcd client under the store's prefix plus
// "quota/", with the node id, the lease TTL, the request timeout and the
// quota wait of the configuration.
func openLedger(db *meta.Badger, store meta.Store, cfg *config.Config, cli *clientv3.Client, attached *atomic.Pointer[service.Service], log zerolog.Logger) (*quota.Manager, *grants.Client, error) {
	paths := map[string]string{}
	for _, name := range cfg.VolumeNames() {
		v := cfg.Volumes[name]
		if err := service.ProbeVolume(context.Background(), store, volumeRecord(name, v)); err != nil {
			log.Debug().Err(err).Str("volume", name).Msg("volume not there: quota crash recovery leaves its files to a later check")
			continue
		}
		paths[name] = v.Path
	}
	// The volumes probed now until the service has attached them, then
	// those the service has attached (one that comes back later too).
	opener := fs.QuotaFolderOpener(func(vol string) (string, bool) {
		if svc := attached.Load(); svc != nil {
			return svc.VolumePath(vol)
		}
		p, ok := paths[vol]
		return p, ok
	})
	var g *grants.Client
	if cli != nil {
		var err error
		g, err = grants.New(grants.Config{
			Client:      cli,
			Prefix:      cfg.Cluster.KeyPrefix() + "quota/",
			Node:        cfg.Cluster.Node(),
			Host:        hostname(),
			OpenFolder:  opener,
			LeaseTTL:    cfg.Cluster.TTL(),
			CallTimeout: cfg.Cluster.Timeout(),
			Wait:        cfg.Cluster.Wait(),
			Log:         log,
		})
		if err != nil {
			return nil, nil, fmt.Errorf("cluster mode: cluster quota: %w", err)
		}
	}
	opts := quota.Options{OpenFolder: opener}
	if g != nil {
		opts.Grants = g
	}
	m, err := quota.Open(db.DB(), log, opts)
	if err != nil {
		return nil, nil, fmt.Errorf("opening the quota ledger in %s: %w", db.Dir(), err)
	}
	return m, g, nil
}

// joinCluster opens the cluster store (its sessions under this node's id)
// and joins the cluster. Without etcd it fails within the request bound.
func joinCluster(ctx context.Context, cfg *config.Config, version string, log zerolog.Logger) (*etcdstore.Store, *cluster.Cluster, error) {
	cc := cfg.Cluster
	node := cc.Node()
	st, err := etcdstore.Open(ctx, etcdstore.Options{
		Endpoints:        cc.EtcdEndpoints,
		CAFile:           cc.CAFile,
		CertFile:         cc.CertFile,
		KeyFile:          cc.KeyFile,
		RequestTimeout:   cc.Timeout(),
		Prefix:           cc.KeyPrefix(),
		SessionNamespace: node,
		Log:              log,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("cluster mode: opening the metadata store in etcd: %w", err)
	}
	host, _ := os.Hostname()
	cl, err := cluster.Join(ctx, cluster.Options{
		Client: st.Client(), Prefix: cc.KeyPrefix(), Node: node, Hostname: host, Version: version,
		StateDir: cfg.StateDir, LeaseTTL: cc.TTL(), RequestTimeout: cc.Timeout(), Log: log,
	})
	if err != nil {
		st.Close()
		return nil, nil, fmt.Errorf("cluster mode: joining as node %q: %w", node, err)
	}
	return st, cl, nil
}

// warnOtherMode says that the database of the other mode, left in the
// state directory, is not used: switching modes moves no metadata.
func warnOtherMode(stateDir string, clusterMode bool, log zerolog.Logger) {
	other, why := filepath.Join(stateDir, "ledger"), "the quota ledger of an earlier run in cluster mode is not used by a node of its own"
	if clusterMode {
		other, why = filepath.Join(stateDir, "meta"), "the node-local metadata of an earlier run without a cluster is not used in cluster mode (nothing is moved into etcd)"
	}
	if _, err := os.Stat(other); err == nil {
		log.Warn().Str("dir", other).Msg(why)
	}
}

// localNodes is the node list of a node of its own: itself, with its
// published sessions.
func localNodes(svc *service.Service, id, version string) func(context.Context) ([]cluster.Node, error) {
	host, _ := os.Hostname()
	started := time.Now().UTC()
	return func(ctx context.Context) ([]cluster.Node, error) {
		sess, err := svc.Sessions(ctx)
		if err != nil {
			return nil, err
		}
		n := cluster.Node{ID: id, Hostname: host, Version: version, Status: cluster.StatusAlive, Self: true, StartedAt: started}
		for _, s := range sess {
			var folders []string
			for _, m := range s.Mounts {
				if !slices.Contains(folders, m.FolderID) {
					folders = append(folders, m.FolderID)
				}
			}
			slices.Sort(folders)
			n.Sessions = append(n.Sessions, cluster.NodeSession{ID: s.ID, Folders: folders})
		}
		return []cluster.Node{n}, nil
	}
}

// hostname is the machine's name ("" when it cannot be read).
func hostname() string {
	h, _ := os.Hostname()
	return h
}

// grantsByNode lists each node's quota grants (for `vfolder node list`):
// the scopes with a limit on the configured volumes, as the cluster holds
// them.
func grantsByNode(store meta.Store, g *grants.Client, volumes []string) func(context.Context) (map[string][]api.NodeGrant, error) {
	return func(ctx context.Context) (map[string][]api.NodeGrant, error) {
		out := map[string][]api.NodeGrant{}
		for _, vol := range volumes {
			scopes, err := store.ListScopes(ctx, vol)
			if err != nil {
				return nil, err
			}
			for _, sc := range scopes {
				if sc.LimitBytes == 0 && sc.LimitInodes == 0 {
					continue // no limit, no grants
				}
				st, err := g.State(ctx, quota.ScopeKey{Volume: sc.Volume, ID: sc.ID})
				if err != nil {
					return nil, err
				}
				for node, gr := range st.Grants {
					if gr.Bytes > 0 || gr.Inodes > 0 {
						out[node] = append(out[node], api.NodeGrant{Volume: sc.Volume, Scope: sc.ID, Bytes: gr.Bytes, Inodes: gr.Inodes})
					}
				}
			}
		}
		for _, gs := range out {
			slices.SortFunc(gs, func(a, b api.NodeGrant) int {
				return strings.Compare(a.Volume+"/"+a.Scope.String(), b.Volume+"/"+b.Scope.String())
			})
		}
		return out, nil
	}
}

// storeSpace is the ledger's view of a state disk level.
func storeSpace(l statedisk.Level) quota.StoreSpace {
	switch l {
	case statedisk.Short:
		return quota.SpaceShort
	case statedisk.Critical:
		return quota.SpaceCritical
	}
	return quota.SpaceOK
}

// volumeRecord is the store's record of a configured volume.
func volumeRecord(name string, v config.Volume) meta.Volume {
	return meta.Volume{Name: name, Path: v.Path, RWCanDelete: v.RWCanDelete, MountAllowed: v.MountAllowed,
		CloneAllowed: v.CloneAllowed, RequireMount: v.RequireMount, Chown: v.Chown}
}

// quotaCheckPending names the file that says a recovery check is owed: it
// exists from an unclean start until every scope was checked, so a check
// cut short by a stop runs again at the next start.
const quotaCheckPending = "quota-check-pending"

// startQuotaRecovery starts the background check of every quota scope when
// the previous process did not stop cleanly or its check did not finish.
func startQuotaRecovery(svc *service.Service, unclean bool, stateDir string, log zerolog.Logger) {
	pending := filepath.Join(stateDir, quotaCheckPending)
	_, err := os.Lstat(pending)
	owed := err == nil
	if !unclean && !owed {
		return
	}
	if !owed {
		if err := writeSynced(pending, []byte("a quota check of every scope is owed after an unclean shutdown\n")); err != nil {
			log.Warn().Err(err).Str("file", pending).Msg("cannot record that a quota check is owed; a stop before it ends skips it")
		}
	}
	svc.StartQuotaRecovery(func() {
		if err := os.Remove(pending); err != nil && !errors.Is(err, os.ErrNotExist) {
			log.Warn().Err(err).Str("file", pending).Msg("cannot remove the pending quota check marker; the check runs again at the next start")
		}
	})
}

// writeSynced writes a small file durably (file and directory synced).
func writeSynced(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
