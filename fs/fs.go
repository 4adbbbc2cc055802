package fs

import (
	"bufio"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/meta"
	"github.com/vfolder/vfolder/quota"
)

// Options configure the mount. Logger receives the package's own events
// and, at debug level, go-fuse's diagnostics and (with Debug) its request
// trace.
type Options struct {
	MountPoint             string
	StorageUID, StorageGID uint32 // owner of everything on storage
	Logger                 zerolog.Logger
	Debug                  bool // go-fuse debug output
	// Quota is the quota ledger every rw and wd view reports to (see
	// accounting.go); nil means no accounting and no limits. The FS does
	// not close it: close the FS first, then the Manager.
	Quota *quota.Manager
	// ReadAheadKB is the kernel's read-ahead window for the mount (its
	// bdi's read_ahead_kb), used by the reads the daemon serves (rw and wd
	// views; ro views read the backing file through passthrough with the
	// volume's own read-ahead). 0 means DefaultReadAheadKB; negative
	// leaves the kernel's default (128 KiB).
	ReadAheadKB int
	// Tuning turns single tunings off, to measure what each one brings
	// (contrib/bench). The zero value is what vfolderd runs with.
	Tuning Tuning
	// Shared is the state this FS shares with the other FS instances of
	// the node (see Shared); nil gives the FS a private one. The session
	// superblocks an FS mounts (session.go) share its own.
	Shared *Shared
}

// Tuning holds the mount's data-path tunings as deviations from the
// defaults; the zero value keeps every default.
type Tuning struct {
	MaxWrite      int           // largest WRITE/READ request; 0: 1 MiB
	NoKillPriv    bool          // do not negotiate FUSE_HANDLE_KILLPRIV_V2
	NoKeepCache   bool          // never answer opens with FOPEN_KEEP_CACHE
	NoReaddirPlus bool          // plain READDIR instead of READDIRPLUS
	NoPassthrough bool          // ro views read through the daemon too
	NoDirectWrite bool          // write-only opens go through the page cache too
	EntryTimeout  time.Duration // 0: one hour; negative: no caching
	AttrTimeout   time.Duration // 0: one second; negative: no caching
	// NegativeTimeout is how long the kernel keeps the answer that a
	// name inside a view does not exist; 0: one second
	// (negativeTimeout); negative: no caching.
	NegativeTimeout time.Duration
	// ExportSupport leaves file-handle decoding as go-fuse negotiates it
	// (FUSE_NO_EXPORT_SUPPORT is not asked for), so that tests can show
	// that the per-session superblocks hold on their own. Never set it in
	// production.
	ExportSupport bool
	// KernelPermissions mounts with default_permissions: the kernel
	// checks permission bits itself, and re-reads a directory's
	// attributes after every change of its entries. Without it (the
	// default) the daemon checks them (perm.go).
	KernelPermissions bool
	// IoUring asks for FUSE over io_uring: requests arrive as io_uring
	// completions on per-CPU rings instead of through read(2) of
	// /dev/fuse, and replies go back with the next ring command instead
	// of write(2). It needs Linux 6.14+ with the fuse module parameter
	// enable_uring=Y when each superblock is mounted (session
	// superblocks are mounted when their session gets its first view,
	// so keep it Y while the FS lives); otherwise the mount logs a
	// warning and serves through /dev/fuse. Off by default (see
	// docs/io_uring.md for the measurements).
	IoUring bool
	// IoUringQueueDepth is the number of ring entries, and so of
	// requests served at once, per CPU; 0: 2.
	IoUringQueueDepth int
}

// defaultIoUringDepth is the ring entries per CPU queue when io_uring is
// on. Each entry is a thread of its own, and every superblock (session
// superblocks included) has its own rings, so it is kept small.
const defaultIoUringDepth = 2

func ioUringDepth(d int) int {
	if d <= 0 {
		return defaultIoUringDepth
	}
	return d
}

// IoUringRequests is how many requests the mount, and the session
// superblocks it has not closed yet, received through FUSE over io_uring
// (0 when they serve through /dev/fuse).
func (f *FS) IoUringRequests() uint64 {
	n := f.server.IoUringRequests()
	if f.session != "" {
		return n
	}
	f.sessMu.Lock()
	defer f.sessMu.Unlock()
	for _, s := range f.sessions {
		n += s.server.IoUringRequests()
	}
	for s := range f.retired {
		n += s.server.IoUringRequests()
	}
	return n
}

// timeout is d, or def when d is 0, or 0 when d is negative.
func timeout(d, def time.Duration) time.Duration {
	switch {
	case d == 0:
		return def
	case d < 0:
		return 0
	}
	return d
}

// DefaultReadAheadKB is the read-ahead window set when
// Options.ReadAheadKB is 0: one maximal READ request (MaxWrite), so that
// a sequential reader keeps a full-size request in flight.
const DefaultReadAheadKB = maxWrite >> 10

// ErrClosed is returned by methods of an FS after Close.
var ErrClosed = errors.New("vfolder fs is closed")

// Mount timing. Entries are kept long: the kernel drops an unused entry
// whose timeout has passed at once, and with it the inode and its cached
// pages, so a short entry timeout loses the page cache of every file
// closed more than that after its lookup. Changes through other views are
// notified (coherence.go); changes behind the daemon's back are caught by
// path resolution (ESTALE) and attribute expiry.
//
// Negative entries (a name a view does not have) are kept for
// negativeTimeout, as long as attributes: names made through another
// view on this node are notified (coherence.go), names made behind the
// daemon's back appear within that time. Only names inside views are
// cached so; a missing name in the synthetic directories is looked up
// every time.
const (
	entryTimeout    = time.Hour
	attrTimeout     = time.Second
	negativeTimeout = time.Second
	maxWrite        = 1 << 20

	// unmountWait is how long Close waits for the serve loops after a
	// plain unmount before it aborts the connection; abortWait how long it
	// waits after the abort. A session superblock is closed when its
	// session has no view left, so nothing it could still serve is worth
	// waiting for: sessionUnmountWait only lets a connection that the
	// unmount ended go quietly.
	unmountWait        = 2 * time.Second
	sessionUnmountWait = 250 * time.Millisecond
	abortWait          = 10 * time.Second
)

// FS is one mounted vfolder file system: the node-wide namespace that
// Mount returns, or (session.go) the superblock of one session.
type FS struct {
	opts    Options
	log     zerolog.Logger
	server  *fuse.Server
	root    *dirNode
	started time.Time
	inos    inoTable

	// shared, and its parts every operation uses, held directly.
	shared *Shared
	locks  *sizeLocks
	peers  *peerTable

	// session is the session id of a session superblock, "" for the
	// node-wide namespace.
	session string

	// sessMu serialises the life of the session superblocks (mount,
	// retire, close) and guards sessions and retired; it is taken before
	// mu, and held while mounting and unmounting them (never by a request
	// handler).
	sessMu   sync.Mutex
	sessions map[string]*FS
	retired  map[*FS]struct{}

	// negTimeout is how long the kernel keeps a negative entry inside a
	// view (0: not at all).
	negTimeout time.Duration

	// mnt and dev identify the mount: dev is the st_dev of its root
	// (major 0, minor = FUSE connection number).
	mnt string
	dev uint64

	mu      sync.Mutex
	closed  bool
	views   map[place]*view
	keyDirs map[nsKey]*dirNode
	tops    map[string]*dirNode
	vols    map[string]*volume

	// loopsDone is closed when the serve loops have ended: the connection
	// is gone (unmounted with no reference left, or aborted).
	loopsDone chan struct{}

	closeOnce sync.Once
	closeErr  error
}

// Mount mounts the node-wide file system at opts.MountPoint and starts
// serving it. The views of each session are served by a superblock of
// their own, mounted on <mnt>/sessions/<sid> (session.go).
func Mount(opts Options) (*FS, error) {
	return mount(opts, "")
}

// mount mounts the node-wide file system (session "") or the superblock
// of one session.
func mount(opts Options, session string) (*FS, error) {
	if opts.MountPoint == "" {
		return nil, fmt.Errorf("%w: empty mount point", meta.ErrInvalid)
	}
	mnt, err := filepath.Abs(opts.MountPoint)
	if err != nil {
		return nil, fmt.Errorf("%w: mount point %q: %v", meta.ErrInvalid, opts.MountPoint, err)
	}
	if opts.Shared == nil {
		opts.Shared = NewShared()
	}
	lc := opts.Logger.With().Str("component", "fs")
	if session != "" {
		lc = lc.Str("session", session)
	}
	f := &FS{
		opts:     opts,
		log:      lc.Logger(),
		started:  time.Now(),
		shared:   opts.Shared,
		locks:    &opts.Shared.locks,
		peers:    &opts.Shared.peers,
		session:  session,
		sessions: map[string]*FS{},
		retired:  map[*FS]struct{}{},
		mnt:      mnt,
		views:    map[place]*view{},
		keyDirs:  map[nsKey]*dirNode{},
		tops:     map[string]*dirNode{},
		vols:     map[string]*volume{},
	}
	f.inos.init()
	f.root = &dirNode{fs: f}
	if session != "" {
		// A session superblock's root is its session's key directory.
		f.keyDirs[nsKey{NSSessions, session}] = f.root
	}

	tu := opts.Tuning
	// Entry timeouts are set by the daemon in every entry reply
	// (FS.entryTimeout): go-fuse would replace a 0 with its option.
	at := timeout(tu.AttrTimeout, attrTimeout)
	f.negTimeout = timeout(tu.NegativeTimeout, negativeTimeout)
	mw := maxWrite
	if tu.MaxWrite > 0 {
		mw = tu.MaxWrite
	}
	var mountOpts []string
	if tu.KernelPermissions {
		mountOpts = []string{"default_permissions"}
	}
	var extraCaps uint64
	if !tu.KernelPermissions {
		// The daemon must see O_TRUNC in the OPEN to check for write
		// permission (the kernel's own truncate after the open would
		// come through the handle, as an ftruncate does).
		extraCaps |= fuse.CAP_ATOMIC_O_TRUNC
	}
	if !tu.NoKillPriv {
		extraCaps |= fuse.CAP_HANDLE_KILLPRIV_V2
	}
	if !tu.ExportSupport {
		// The kernel then decodes no file handle of this superblock:
		// open_by_handle_at(2) cannot reach a node outside the views
		// bound into a container (see the package comment).
		extraCaps |= fuse.CAP_NO_EXPORT_SUPPORT
	}
	goLog := log.New(zerologWriter{f.log}, "", 0)
	fopts := &gofs.Options{
		MountOptions: fuse.MountOptions{
			AllowOther:         true,
			Options:            mountOpts,
			FsName:             "vfolder",
			Name:               "vfolder",
			MaxWrite:           mw,
			DisableReadDirPlus: tu.NoReaddirPlus,
			DirectMount:        true,
			DirectMountStrict:  true,
			EnableLocks:        true,
			// Passthrough stays negotiable: ro views hand the kernel
			// their backing descriptors (file.PassthroughFd), rw and wd
			// views never do, so every byte they write passes the
			// daemon. Writeback caching would disable passthrough and
			// move EDQUOT from write(2) to close.
			DisabledCapabilities: fuse.CAP_WRITEBACK_CACHE,
			// KILLPRIV_V2: the daemon clears suid/sgid itself (see
			// node.killPrivs). NO_EXPORT_SUPPORT: no file handles.
			ExtraCapabilities: extraCaps,
			Debug:             opts.Debug,
			Logger:            goLog,
			EnableIoUring:     tu.IoUring,
			IoUringQueueDepth: ioUringDepth(tu.IoUringQueueDepth),
		},
		AttrTimeout:       &at,
		NullPermissions:   true,
		FirstAutomaticIno: firstAutomaticIno,
		RootStableAttr:    &gofs.StableAttr{Ino: fuse.FUSE_ROOT_ID},
		Logger:            goLog,
	}
	// gofs.Options.NegativeTimeout stays unset: it would apply to every
	// directory, the synthetic ones included. Lookups inside views set
	// their own (negativeEntries).
	raw := negativeEntries{observeRaw(gofs.NewNodeFS(f.root, fopts))}
	server, err := fuse.NewServer(raw, mnt, &fopts.MountOptions)
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", mnt, err)
	}
	f.server = server
	go server.Serve()
	f.loopsDone = make(chan struct{})
	go func() {
		server.Wait()
		close(f.loopsDone)
	}()
	// WaitMount ends with a probe open of the new mount (go-fuse's poll
	// setup), which a signal can interrupt; the mount itself is done.
	for i := 0; ; i++ {
		err = server.WaitMount()
		if err == nil || !errors.Is(err, unix.EINTR) || i == 10 {
			break
		}
	}
	if err != nil {
		f.abortAndWait()
		return nil, fmt.Errorf("mount %s: %w", mnt, err)
	}
	var st unix.Stat_t
	if err := unix.Stat(mnt, &st); err != nil {
		f.abortAndWait()
		return nil, fmt.Errorf("stat mount %s: %w", mnt, err)
	}
	f.dev = st.Dev
	f.setReadAhead()
	// Keep later mount events on this mount from propagating to peers.
	if err := unix.Mount("", mnt, "", unix.MS_PRIVATE, ""); err != nil {
		f.log.Warn().Err(err).Str("mnt", mnt).Msg("cannot make the mount private")
	}
	f.logMounted(extraCaps)
	return f, nil
}

// logMounted logs the mount and what the kernel agreed to at INIT. go-fuse
// asks only for what the kernel offers, so an extra capability is in
// force when it was asked for and offered.
func (f *FS) logMounted(extraCaps uint64) {
	offered := f.server.KernelSettings().Flags64()
	got := func(c uint64) bool { return extraCaps&c != 0 && offered&c != 0 }
	ev := f.log.Info()
	if f.session != "" {
		ev = f.log.Debug()
	}
	noExport := got(fuse.CAP_NO_EXPORT_SUPPORT)
	uringErr := f.server.IoUringError()
	ev.Str("mnt", f.mnt).Uint32("minor", unix.Minor(f.dev)).
		Bool("no_export_support", noExport).
		Bool("handle_killpriv_v2", got(fuse.CAP_HANDLE_KILLPRIV_V2)).
		Bool("passthrough", offered&fuse.CAP_PASSTHROUGH != 0).
		Bool("io_uring", uringErr == nil).
		Msg("mounted")
	if f.opts.Tuning.IoUring && uringErr != nil {
		f.log.Warn().Err(uringErr).Str("mnt", f.mnt).
			Msg("FUSE over io_uring was asked for but is not in use: requests are served through reads of /dev/fuse " +
				"(it needs Linux 6.14+ and /sys/module/fuse/parameters/enable_uring=Y before mounting)")
	}
	if extraCaps&fuse.CAP_NO_EXPORT_SUPPORT != 0 && !noExport && f.session == "" {
		f.log.Info().Msg("the kernel does not offer FUSE_NO_EXPORT_SUPPORT: it decodes file handles of the inodes it caches; " +
			"each session's views are still served by a superblock of their own, so a handle cannot leave it")
	}
}

// setReadAhead sets the read-ahead window of the mount's bdi. A failure
// (no sysfs) only costs speed.
func (f *FS) setReadAhead() {
	kb := f.opts.ReadAheadKB
	if kb == 0 {
		kb = DefaultReadAheadKB
	}
	if kb < 0 {
		return
	}
	p := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(f.dev), unix.Minor(f.dev))
	if err := os.WriteFile(p, []byte(strconv.Itoa(kb)), 0); err != nil {
		f.log.Warn().Err(err).Str("bdi", p).Msg("cannot set the read-ahead window")
	}
}

// MountPoint is where the file system is mounted.
func (f *FS) MountPoint() string { return f.mnt }

// Views returns the current views, those of the session superblocks
// included, sorted by namespace, key and name.
func (f *FS) Views() []ViewSpec {
	f.mu.Lock()
	out := make([]ViewSpec, 0, len(f.views))
	for _, v := range f.views {
		out = append(out, v.spec)
	}
	f.mu.Unlock()
	if f.session == "" {
		out = f.sessionViews(out)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		if a.Key != b.Key {
			return a.Key < b.Key
		}
		return a.Name < b.Name
	})
	return out
}

// Close unmounts the file system and releases every descriptor. It works
// also when the mount was lazily unmounted from outside, and when copies of
// the mount in other namespaces keep the connection alive: then it aborts
// the connection. Close is idempotent.
func (f *FS) Close() error {
	f.closeOnce.Do(func() { f.closeErr = f.close() })
	return f.closeErr
}

func (f *FS) close() error {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()

	// The session superblocks are mounted on this one: they go first.
	errs := f.closeSessions()
	ended := f.loopsEnded()
	if ended && f.session != "" {
		// A retired session superblock that ended by itself. Its
		// connection number may serve another mount by now, even at
		// the same path: nothing to unmount or abort.
		f.release()
		return errors.Join(errs...)
	}
	if f.mountedHere() {
		if err := f.unmount(); err != nil {
			errs = append(errs, err)
		}
	} else if !ended {
		// Unmounted from outside (umount -l): other references (open
		// files, copies in other namespaces) may keep the connection
		// alive, and nothing will unmount them for us.
		if err := f.abort(); err != nil {
			errs = append(errs, err)
		}
	}
	wait := unmountWait
	if f.session != "" {
		wait = sessionUnmountWait
	}
	if !ended && !f.waitLoops(wait) {
		ev := f.log.Warn()
		if f.session != "" {
			// Copies of its views in containers keep it alive while
			// the daemon stops: they are cut, as every view is.
			ev = f.log.Debug()
		}
		ev.Str("mnt", f.mnt).Msg("serve loops still running after unmount: aborting the connection")
		if err := f.abort(); err != nil {
			errs = append(errs, err)
		}
		if !f.waitLoops(abortWait) {
			errs = append(errs, fmt.Errorf("fuse connection %d did not end after abort", unix.Minor(f.dev)))
		}
	}
	f.release()
	return errors.Join(errs...)
}

// release closes every descriptor of a file system whose connection is
// gone.
func (f *FS) release() {
	f.mu.Lock()
	views := f.views
	f.views = map[place]*view{}
	vols := f.vols
	f.vols = map[string]*volume{}
	f.mu.Unlock()
	for _, v := range views {
		v.removed.Store(true)
		v.closeRoot()
	}
	f.inos.mu.Lock()
	draining := f.inos.draining
	f.inos.draining = nil
	f.inos.mu.Unlock()
	for _, v := range draining {
		v.closeRoot()
	}
	for _, vol := range vols {
		unix.Close(vol.fd)
	}
}

// loopsEnded reports whether the serve loops have ended.
func (f *FS) loopsEnded() bool {
	select {
	case <-f.loopsDone:
		return true
	default:
		return false
	}
}

// unmount detaches the mount from this namespace: a plain unmount first
// (retried while busy), a lazy one if that keeps failing.
func (f *FS) unmount() error {
	var err error
	for i := 0; i < 5; i++ {
		err = unix.Unmount(f.mnt, 0)
		if err == nil || err == unix.EINVAL || err == unix.ENOENT {
			return nil
		}
		time.Sleep(time.Duration(10<<i) * time.Millisecond)
	}
	f.log.Warn().Err(err).Str("mnt", f.mnt).Msg("unmount failed: detaching lazily")
	if err := unix.Unmount(f.mnt, unix.MNT_DETACH); err != nil && err != unix.EINVAL {
		return fmt.Errorf("unmount %s: %w", f.mnt, err)
	}
	return nil
}

// fusectlMagic is the statfs type of the fusectl file system.
const fusectlMagic = 0x65735543

// abort ends the FUSE connection from the kernel side, through fusectl's
// abort file. Where fusectl is not mounted at /sys/fs/fuse/connections, a
// private instance is mounted on a temporary directory for the write.
func (f *FS) abort() error {
	conn := strconv.FormatUint(uint64(unix.Minor(f.dev)), 10)
	dir := "/sys/fs/fuse/connections"
	var sfs unix.Statfs_t
	if err := unix.Statfs(dir, &sfs); err != nil || sfs.Type != fusectlMagic {
		tmp, err := os.MkdirTemp("", "vfolder-fusectl-")
		if err != nil {
			return fmt.Errorf("abort fuse connection %s: %w", conn, err)
		}
		defer os.Remove(tmp)
		if err := unix.Mount("fusectl", tmp, "fusectl", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			return fmt.Errorf("abort fuse connection %s: mount fusectl: %w", conn, err)
		}
		defer unix.Unmount(tmp, unix.MNT_DETACH)
		dir = tmp
	}
	err := os.WriteFile(filepath.Join(dir, conn, "abort"), []byte("1"), 0)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("abort fuse connection %s: %w", conn, err)
	}
	return nil
}

// abortAndWait undoes a mount that cannot be used: detach, abort, wait.
func (f *FS) abortAndWait() {
	if f.dev == 0 {
		for _, m := range readMountInfo() {
			if m.point == f.mnt && m.fstype == "fuse.vfolder" {
				var maj, min uint32
				if _, err := fmt.Sscanf(m.dev, "%d:%d", &maj, &min); err == nil {
					f.dev = unix.Mkdev(maj, min)
				}
			}
		}
	}
	if f.mountedHere() {
		unix.Unmount(f.mnt, unix.MNT_DETACH)
	}
	if f.dev != 0 {
		f.abort()
	}
	f.waitLoops(abortWait)
}

// waitLoops waits up to d for the server's read loops to end.
func (f *FS) waitLoops(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-f.loopsDone:
		return true
	case <-t.C:
		return false
	}
}

// mountedHere reports whether this file system is still mounted at its
// mount point in the caller's mount namespace.
func (f *FS) mountedHere() bool {
	want := fmt.Sprintf("%d:%d", unix.Major(f.dev), unix.Minor(f.dev))
	for _, m := range readMountInfo() {
		if m.dev == want && m.point == f.mnt {
			return true
		}
	}
	return false
}

type mountEntry struct{ dev, point, fstype string }

// readMountInfo parses /proc/self/mountinfo (device and mount point).
func readMountInfo() []mountEntry {
	fh, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer fh.Close()
	var out []mountEntry
	sc := bufio.NewScanner(fh)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		e := mountEntry{dev: fields[2], point: unescapeMount(fields[4])}
		for i := 5; i+1 < len(fields); i++ {
			if fields[i] == "-" {
				e.fstype = fields[i+1]
				break
			}
		}
		out = append(out, e)
	}
	return out
}

// unescapeMount undoes the octal escapes (\040 etc.) of mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// zerologWriter feeds go-fuse's log.Logger output into zerolog at debug
// level.
type zerologWriter struct{ l zerolog.Logger }

func (w zerologWriter) Write(p []byte) (int, error) {
	w.l.Debug().Msg(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
