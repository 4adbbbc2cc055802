package main

// This file and ablate.go are the only ones that know vfolder's own
// packages (fs, quota, meta): the vfolder configurations (vfolder-rw,
// vfolder-rw-nolimit, vfolder-rw-untracked, vfolder-ro and the ablations
// of --ablate), the usage query measurement and the daemon memory
// measurement.

import (
	"context"
	"encoding/json"
	"fmt"
	iofs "io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	vfs "github.com/vfolder/vfolder/fs"
	"github.com/vfolder/vfolder/meta"
	"github.com/vfolder/vfolder/quota"
)

// Identities used by the benchmark volume.
const (
	vfVolume     = "bench"
	vfSession    = "bench"
	vfStorageUID = 1100 // unified owner on storage, as operators commonly use
	vfViewUID    = 1000 // the container user every view shows
	vfQuotaBytes = 1 << 50
)

// vfolderIDs name the benchmark folder: its quota scope, its id and its
// directory relative to the volume root.
type vfolderIDs struct {
	scope meta.ScopeID
	id    string
	rel   string
}

func newVfolderIDs() (vfolderIDs, error) {
	sc, err := meta.UserScope(uuid.NewString())
	if err != nil {
		return vfolderIDs{}, err
	}
	id := meta.NewFolderID()
	return vfolderIDs{scope: sc, id: id, rel: meta.FolderRelPath(sc, id)}, nil
}

// vfolderShared is an in-process vfolder mount (one mount per node, like
// vfolderd) with a view per configuration. The ledger mount has the quota
// ledger attached (fs.Options.Quota) and serves vfolder-rw,
// vfolder-rw-nolimit and vfolder-ro; the untracked mount has none and
// serves vfolder-rw-untracked.
type vfolderShared struct {
	name   string
	fs     *vfs.FS
	ledger *ledger // nil on the untracked mount
	mnt    string
	err    error
}

// Names of the two vfolder mounts (below e.mntRoot).
const (
	vfMountLedger    = "vfolder"
	vfMountUntracked = "vfolder-untracked"
)

// mountStateDir holds the mount's quota ledger: apart from stateDir, which
// the usage query and memory measurements open in this process and in a
// worker while the mount is up (badger allows one opener).
func (e *env) mountStateDir() string { return filepath.Join(e.work, "state-mount") }

// vfolderMount returns the ledger mount (tracked) or the untracked one,
// mounting it on first use.
func (e *env) vfolderMount(tracked bool) (*vfolderShared, error) {
	if tracked {
		return e.vfolderMountNamed(vfMountLedger, e.mountStateDir(), nil)
	}
	return e.vfolderMountNamed(vfMountUntracked, "", nil)
}

// vfolderMountNamed returns the vfolder mount called name (below
// e.mntRoot), mounting it on first use: with a quota ledger in stateDir
// (the benchmark folder's scope limited to vfQuotaBytes) unless stateDir
// is "", and with tune applied to its options if not nil.
func (e *env) vfolderMountNamed(name, stateDir string, tune func(*vfs.Options)) (*vfolderShared, error) {
	tracked := stateDir != ""
	if s := e.vf[name]; s != nil {
		return s, s.err
	}
	if e.vf == nil {
		e.vf = map[string]*vfolderShared{}
	}
	s := &vfolderShared{name: name, mnt: filepath.Join(e.mntRoot, name)}
	e.vf[name] = s
	if s.err = os.MkdirAll(s.mnt, 0o755); s.err != nil {
		return s, s.err
	}
	opts := vfs.Options{
		MountPoint: s.mnt,
		StorageUID: vfStorageUID,
		StorageGID: vfStorageUID,
		Logger:     zerolog.Nop(),
	}
	var l *ledger
	if tracked {
		if l, s.err = openLedgerAt(stateDir); s.err != nil {
			s.err = fmt.Errorf("open the quota ledger: %w", s.err)
			return s, s.err
		}
		sk := quota.ScopeKey{Volume: vfVolume, ID: e.folder.scope}
		if s.err = l.m.SetLimit(sk, vfQuotaBytes, 0); s.err != nil {
			l.close()
			return s, s.err
		}
		s.ledger = l
		opts.Quota = l.m
	}
	if tune != nil {
		tune(&opts)
	}
	if s.fs, s.err = vfs.Mount(opts); s.err != nil {
		if l != nil {
			l.close()
		}
		return s, s.err
	}
	fsys := s.fs
	e.mounts.add(name, s.mnt, fuseMinor(s.mnt), func() error {
		delete(e.vf, name)
		err := fsys.Close()
		if l != nil {
			l.close()
		}
		return err
	})
	return s, nil
}

// vfMountUring is the vfolder mount that serves the -uring
// configurations over FUSE over io_uring.
const vfMountUring = "vfolder-uring"

// uringParam is the fuse module parameter that lets a FUSE connection use
// io_uring; the kernel reads it when the connection is initialised.
const uringParam = "/sys/module/fuse/parameters/enable_uring"

// vfolderUringMount returns the io_uring mount, mounting it on first use.
// enable_uring is set to Y until the mount is undone, then restored: the
// kernel reads it when a connection is initialised, and the views'
// session superblocks (package fs) are mounted later, when the views are
// added.
func (e *env) vfolderUringMount() (*vfolderShared, error) {
	if s := e.vf[vfMountUring]; s != nil {
		return s, s.err
	}
	old, err := os.ReadFile(uringParam)
	if err != nil {
		return nil, fmt.Errorf("FUSE over io_uring is not available: %w", err)
	}
	if err := os.WriteFile(uringParam, []byte("Y"), 0); err != nil {
		return nil, fmt.Errorf("enable FUSE over io_uring: %w", err)
	}
	// Recorded before the mount, so undone after it.
	e.mounts.add("fuse module parameter enable_uring, set to Y (restored to "+strings.TrimSpace(string(old))+")", "", 0, func() error {
		return os.WriteFile(uringParam, []byte(strings.TrimSpace(string(old))), 0)
	})
	return e.vfolderMountNamed(vfMountUring, filepath.Join(e.work, "state-"+vfMountUring), func(o *vfs.Options) {
		o.Tuning.IoUring = true
	})
}

// vfolderConfig is a view of a benchmark folder.
type vfolderConfig struct {
	cfg     string
	mode    meta.Permission
	view    string // view name below sessions/bench
	tracked bool   // on the ledger mount
	noLimit bool   // a folder of its own, in a scope without a limit
	data    string // backing directory shown, set by setup
	probe   string // what the ledger probe saw, set by setup
	abl     *ablation
	ra      string // the mount's read_ahead_kb, set by setup
	uring   bool   // on the io_uring mount
}

func newVfolderConfig(name string) config {
	switch name {
	case cfgVfolderRO:
		return &vfolderConfig{cfg: name, mode: meta.PermRO, view: "ro", tracked: true}
	case cfgVfolderRWNoLimit:
		return &vfolderConfig{cfg: name, mode: meta.PermRW, view: "rw-nolimit", tracked: true, noLimit: true}
	case cfgVfolderRWUntracked:
		return &vfolderConfig{cfg: name, mode: meta.PermRW, view: "rw", tracked: false}
	case cfgVfolderRWUring:
		return &vfolderConfig{cfg: name, mode: meta.PermRW, view: "rw", tracked: true, uring: true}
	case cfgVfolderROUring:
		return &vfolderConfig{cfg: name, mode: meta.PermRO, view: "ro", tracked: true, uring: true}
	}
	return &vfolderConfig{cfg: name, mode: meta.PermRW, view: "rw", tracked: true}
}

// newAblationConfig is the ablation's base view on a mount of its own.
func newAblationConfig(a *ablation) config {
	c := newVfolderConfig(a.base).(*vfolderConfig)
	c.cfg, c.abl = a.config(), a
	return c
}

func (c *vfolderConfig) name() string    { return c.cfg }
func (c *vfolderConfig) readOnly() bool  { return c.mode == meta.PermRO }
func (c *vfolderConfig) dataDir() string { return c.data }

func (c *vfolderConfig) setup(ctx context.Context, e *env) (string, error) {
	var s *vfolderShared
	var err error
	if c.abl != nil {
		name := "vfolder-" + c.abl.id
		s, err = e.vfolderMountNamed(name, filepath.Join(e.work, "state-"+name), c.abl.apply)
	} else if c.uring {
		s, err = e.vfolderUringMount()
	} else {
		s, err = e.vfolderMount(c.tracked)
	}
	if err != nil {
		return "", err
	}
	folder := e.folder
	if c.noLimit {
		// Another user's folder on the same volume: the 1 PiB limit of the
		// benchmark folder's scope does not apply to it.
		if folder, err = newVfolderIDs(); err != nil {
			return "", err
		}
		dir := filepath.Join(e.vol, folder.rel)
		if err := linkFixtures(filepath.Join(e.data, fixtureDir), filepath.Join(dir, fixtureDir)); err != nil {
			return "", fmt.Errorf("second folder: %w", err)
		}
		sk := quota.ScopeKey{Volume: vfVolume, ID: folder.scope}
		if err := s.ledger.m.SetLimit(sk, 0, 0); err != nil {
			return "", fmt.Errorf("clear the limit of the second folder's scope: %w", err)
		}
		if u := s.ledger.m.Usage(sk); u.Limit != 0 || u.LimitInodes != 0 {
			return "", fmt.Errorf("the second folder's scope still has limits %d bytes, %d inodes", u.Limit, u.LimitInodes)
		}
	}
	c.data = filepath.Join(e.vol, folder.rel)
	spec := vfs.ViewSpec{
		Namespace:   vfs.NSSessions,
		Key:         vfSession,
		Name:        c.view,
		VolumeName:  vfVolume,
		VolumePath:  e.vol,
		FolderRel:   folder.rel,
		Mode:        c.mode,
		UID:         vfViewUID,
		GID:         vfViewUID,
		RWCanDelete: c.mode == meta.PermRW,
		FolderID:    folder.id,
		Scope:       folder.scope,
	}
	if err := s.fs.AddView(spec); err != nil {
		return "", fmt.Errorf("add %s view: %w", c.mode, err)
	}
	view := filepath.Join(s.mnt, vfs.NSSessions, vfSession, c.view)
	// Session views are served by a FUSE mount of their own (package fs),
	// closed with s.fs.
	e.mounts.addConn(fuseMinor(view))
	// The workloads run in a bind mount of the view, as a container sees
	// it (mountd binds each view): a path walk starts at the view's root
	// and never passes the root-only synthetic directories above it,
	// whose names the daemon has the kernel look up on every walk.
	path := filepath.Join(e.work, "view-"+c.cfg)
	if err := os.MkdirAll(path, 0o755); err != nil {
		return "", err
	}
	if err := unix.Mount(view, path, "", unix.MS_BIND, ""); err != nil {
		return "", fmt.Errorf("bind the %s view: %w", c.mode, err)
	}
	e.mounts.add(c.cfg+" view (bind)", path, 0, func() error { return unmountRetry(path) })
	c.ra = readAheadKB(path)
	if c.uring {
		// The kernel may refuse io_uring and the mount then serves
		// through /dev/fuse: measure nothing under the wrong name.
		before := s.fs.IoUringRequests()
		if _, err := os.ReadDir(path); err != nil {
			return "", err
		}
		if s.fs.IoUringRequests() == before {
			return "", fmt.Errorf("the view's requests do not go through io_uring (see the mount's log)")
		}
	}
	if c.tracked && c.mode == meta.PermRW {
		grew, err := probeLedger(path, s.ledger.m, folder.id)
		if err != nil {
			return "", fmt.Errorf("ledger probe: %w", err)
		}
		if grew != ledgerProbeBytes {
			return "", fmt.Errorf("ledger probe: a %d-byte file written through the view changed the folder's usage by %d bytes", ledgerProbeBytes, grew)
		}
		c.probe = fmt.Sprintf("probe: a %d-byte file written through the view raised the folder's ledger usage by %d bytes", ledgerProbeBytes, grew)
	}
	return path, nil
}

// ledgerProbeBytes is the size of the file probeLedger writes.
const ledgerProbeBytes = 4096

// probeLedger writes a small file through a view, returns how much the
// folder's usage in the ledger grew for the file's data, and removes the
// file again. Directories are charged their size too: a first file makes
// the folder root known to the ledger (it is charged from its first
// change through a view), and any growth of the directory by the probe's
// name is taken off.
func probeLedger(view string, m *quota.Manager, folderID string) (int64, error) {
	warm := filepath.Join(view, "ledger-probe.0")
	if err := os.WriteFile(warm, nil, 0o644); err != nil {
		return 0, err
	}
	if err := os.Remove(warm); err != nil {
		return 0, err
	}
	dir := func() (int64, error) {
		st, err := os.Stat(view)
		if err != nil {
			return 0, err
		}
		return st.Size(), nil
	}
	dirBefore, err := dir()
	if err != nil {
		return 0, err
	}
	before := m.FolderUsage(folderID).Used
	p := filepath.Join(view, "ledger-probe.dat")
	if err := os.WriteFile(p, pattern(ledgerProbeBytes), 0o644); err != nil {
		return 0, err
	}
	grew := m.FolderUsage(folderID).Used - before
	dirAfter, err := dir()
	if err != nil {
		return 0, err
	}
	grew -= dirAfter - dirBefore
	if err := os.Remove(p); err != nil {
		return grew, err
	}
	return grew, nil
}

// linkFixtures makes the regular files directly in src (the files the
// writable configurations read and overwrite) appear in dst as hard
// links: the same inodes, so the same data and the same page cache.
func linkFixtures(src, dst string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, ent := range ents {
		if !ent.Type().IsRegular() {
			continue
		}
		if err := os.Link(filepath.Join(src, ent.Name()), filepath.Join(dst, ent.Name())); err != nil {
			return err
		}
	}
	return nil
}

// readAheadKB is the read-ahead window of the mount at mnt (its bdi's
// read_ahead_kb), "" if unknown.
func readAheadKB(mnt string) string {
	var st unix.Stat_t
	if err := unix.Stat(mnt, &st); err != nil {
		return ""
	}
	b, err := os.ReadFile(fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev)))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func (c *vfolderConfig) describe() string {
	view := vfs.NSSessions + "/" + vfSession + "/" + c.view + " (used through a bind mount of it, as mountd binds views into containers)"
	ids := fmt.Sprintf(", storage uid/gid %d, view uid/gid %d", vfStorageUID, vfViewUID)
	var s string
	switch {
	case c.uring:
		s = fmt.Sprintf("%s on a vfolder fs.Mount of its own with FUSE over io_uring (fs.Options.Tuning.IoUring; the harness sets /sys/module/fuse/parameters/enable_uring to Y for the mount and restores it), a quota ledger of its own (same %s limit), view %s%s; every request of the view reaches the daemon as an io_uring completion (checked at setup)",
			strings.TrimSuffix(c.cfg, "-uring"), humanBytes(vfQuotaBytes), view, ids)
	case c.abl != nil:
		s = fmt.Sprintf("%s with one tuning off: %s; a vfolder fs.Mount of its own in-process, with a quota ledger of its own (the folder's scope has the same %s limit as for vfolder-rw), view %s of the benchmark folder%s; runs only the workloads the tuning can affect (%s)",
			c.abl.base, c.abl.off, humanBytes(vfQuotaBytes), view, ids, strings.Join(c.abl.workloads, ", "))
	case !c.tracked:
		s = "a second vfolder fs.Mount in-process, without a quota ledger (fs.Options.Quota nil: no accounting, no limits), view " + view +
			" of the benchmark folder" + ids + ", deletes allowed; otherwise as vfolder-rw: what the accounting itself costs"
	case c.noLimit:
		s = "the vfolder fs.Mount with the quota ledger (shared with vfolder-rw and vfolder-ro), view " + view +
			" of a second folder on the same volume, in another user's scope that has no limit (0 = none)" + ids +
			", deletes allowed; the ledger tracks every write past EOF, truncate, fallocate and create as for vfolder-rw, but no limit applies; its fixture files are hard links to the benchmark folder's"
	case c.mode == meta.PermRW:
		s = "the vfolder fs.Mount in-process with the quota ledger (shared with vfolder-rw-nolimit and vfolder-ro), view " + view + ids +
			fmt.Sprintf(", deletes allowed; quota: the folder's scope has a %s limit (far above the workload), so every write past EOF, truncate, fallocate and create passes the quota ledger (badger in the work directory)", humanBytes(vfQuotaBytes))
	default:
		s = "the vfolder fs.Mount in-process with the quota ledger (shared with vfolder-rw and vfolder-rw-nolimit), view " + view + ids
	}
	if c.ra != "" {
		s += "; read_ahead_kb " + c.ra
	}
	if c.probe != "" {
		s += "; " + c.probe
	}
	return s
}

// measureUsage compares the usage the quota ledger answers with a du -sb
// walk, on one folder that grows to each size of --usage-files.
func (e *env) measureUsage(ctx context.Context) *usageReport {
	rep := &usageReport{
		method: "`quota.Manager.FolderUsage` called in-process (what vfolderd answers a usage request from; the API round trip is not included), " +
			"median over 1000 batches of 100 calls, after a `Check` with repair taught the ledger the tree (its time is the last column). " +
			"The tree: files of 0..8191 bytes (sparse) in directories of 1000, written on the backing side. du -sb walks the same tree. Measured once per size, not per run.",
	}
	dir, err := e.usageFolder()
	if err != nil {
		rep.notMeasured = err.Error()
		return rep
	}
	st, err := e.openLedger()
	if err != nil {
		rep.notMeasured = "cannot open the quota ledger: " + err.Error()
		return rep
	}
	defer st.close()
	sk := quota.ScopeKey{Volume: vfVolume, ID: e.folder.scope}
	if err := st.m.SetLimit(sk, vfQuotaBytes, 0); err != nil {
		rep.notMeasured = "cannot set a quota: " + err.Error()
		return rep
	}
	counts := append([]int(nil), e.opts.usageFiles...)
	sort.Ints(counts)
	have, bytes := 0, int64(0)
	for _, n := range counts {
		if ctx.Err() != nil {
			return rep
		}
		row := usageRow{files: n}
		e.logf("usage query: growing the tree to %d files", n)
		b, err := growUsageTree(ctx, dir, have, n)
		if err != nil {
			row.err = err.Error()
			rep.rows = append(rep.rows, row)
			break
		}
		have, bytes = n, bytes+b
		row.bytes = bytes
		if err := dropCaches(); err != nil {
			row.err = err.Error()
			rep.rows = append(rep.rows, row)
			continue
		}
		if row.duCold, err = timeCmd(ctx, "du", "-sb", dir); err == nil {
			row.duWarm, err = timeCmd(ctx, "du", "-sb", dir)
		}
		if err != nil {
			row.err = err.Error()
			rep.rows = append(rep.rows, row)
			continue
		}
		d, err := os.Open(dir)
		if err != nil {
			row.err = err.Error()
			rep.rows = append(rep.rows, row)
			continue
		}
		start := time.Now()
		_, err = st.m.Check(ctx, sk, []quota.FolderRoot{{FolderID: e.usageFolderID(), Dir: d}}, quota.CheckOptions{Repair: true})
		row.scan = time.Since(start).Seconds()
		d.Close()
		if err != nil {
			row.err = "ledger check: " + err.Error()
			rep.rows = append(rep.rows, row)
			continue
		}
		var u quota.Usage
		batches := make([]float64, 1000)
		for i := range batches {
			t := time.Now()
			for j := 0; j < 100; j++ {
				u = st.m.FolderUsage(e.usageFolderID())
			}
			batches[i] = time.Since(t).Seconds() / 100
		}
		row.query = median(batches)
		// The ledger also charges the directories their size.
		dirs, err := dirSizes(dir)
		if err != nil {
			row.err = err.Error()
			rep.rows = append(rep.rows, row)
			continue
		}
		row.ledgerOK = u.Used == bytes+dirs
		if !row.ledgerOK {
			row.ledgerMsg = fmt.Sprintf("ledger says %d bytes, the tree has %d (%d of them directories)", u.Used, bytes+dirs, dirs)
			e.notef("usage query at %d files: the ledger disagrees with the tree: %s", n, row.ledgerMsg)
		}
		rep.rows = append(rep.rows, row)
	}
	return rep
}

// dirSizes sums the st_size of the directories of a tree, its root
// included: what the quota ledger charges for them.
func dirSizes(root string) (int64, error) {
	var n int64
	err := filepath.WalkDir(root, func(p string, d iofs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		n += info.Size()
		return nil
	})
	return n, err
}

// usageFolderID is the id of the folder the usage and memory measurements
// use (in the benchmark folder's scope).
func (e *env) usageFolderID() string {
	return strings.Repeat("0", 31) + "1"
}

func (e *env) usageFolder() (string, error) {
	dir := filepath.Join(e.vol, meta.FolderRelPath(e.folder.scope, e.usageFolderID()))
	return dir, os.MkdirAll(dir, 0o755)
}

// ledger is the daemon's state store with the quota ledger open on it.
type ledger struct {
	db *meta.Badger
	m  *quota.Manager
}

func openLedgerAt(dir string) (*ledger, error) {
	db, err := meta.OpenBadger(dir, zerolog.Nop())
	if err != nil {
		return nil, err
	}
	m, err := quota.Open(db.DB(), zerolog.Nop(), quota.Options{})
	if err != nil {
		db.Close()
		return nil, err
	}
	return &ledger{db: db, m: m}, nil
}

func (e *env) openLedger() (*ledger, error) { return openLedgerAt(e.stateDir()) }

func (e *env) stateDir() string { return filepath.Join(e.work, "state") }

func (l *ledger) close() {
	l.m.Close()
	l.db.Close()
}

// growUsageTree adds files from..to-1 below dir (sparse, 0..8191 bytes,
// directories of filesPerDir) and returns the bytes added.
func growUsageTree(ctx context.Context, dir string, from, to int) (int64, error) {
	var bytes int64
	for i := from; i < to; i++ {
		if i%10000 == 0 && ctx.Err() != nil {
			return 0, ctx.Err()
		}
		p := metaName(dir, i)
		if i%filesPerDir == 0 {
			if err := unix.Mkdir(filepath.Dir(p), 0o755); err != nil && err != unix.EEXIST {
				return 0, err
			}
		}
		fd, err := unix.Open(p, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o644)
		if err != nil {
			return 0, fmt.Errorf("create %s: %w", p, err)
		}
		size := int64(i % 8192)
		if err := unix.Ftruncate(fd, size); err != nil {
			unix.Close(fd)
			return 0, err
		}
		unix.Close(fd)
		bytes += size
	}
	return bytes, nil
}

// memResult is what the memory worker prints.
type memResult struct {
	Baseline int64  `json:"baseline"` // RSS with the mount and the ledger open, no views
	Views    int64  `json:"views"`    // RSS with the views
	Walked   int64  `json:"walked"`   // RSS after a find over one view (the kernel knows every file)
	HeapLive int64  `json:"heapLive"` // Go heap in use after a collection, right after Walked
	Files    int64  `json:"files"`    // files in the folder behind the views
	Ledger   int64  `json:"ledger"`   // bytes the ledger reports for the folder
	Error    string `json:"error,omitempty"`
}

// measureMemory runs a daemon-like process (vfolder mount plus quota
// ledger) with the largest usage tree known to the ledger and --views live
// views of that folder, and reads its RSS.
func (e *env) measureMemory(ctx context.Context) *memoryReport {
	rep := &memoryReport{}
	if e.res.usage == nil || len(e.res.usage.rows) == 0 || e.res.usage.notMeasured != "" {
		rep.notMeasured = "needs the usage query measurement (the ledger of its largest tree); select the usage-query workload too"
		return rep
	}
	files := 0
	for _, r := range e.res.usage.rows {
		if r.err == "" && r.files > files {
			files = r.files
		}
	}
	if files == 0 {
		rep.notMeasured = "the usage query measurement failed"
		return rep
	}
	dir, err := e.usageFolder()
	if err != nil {
		rep.err = err.Error()
		return rep
	}
	mnt := filepath.Join(e.mntRoot, "vfolder-mem")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		rep.err = err.Error()
		return rep
	}
	// The worker unmounts what it mounts; this is the safety net if it
	// dies.
	e.mounts.add("vfolder memory worker", mnt, 0, func() error {
		if isMounted(mnt) {
			return forceUnmount(mnt, fuseMinor(mnt))
		}
		return nil
	})
	defer e.mounts.remove(mnt)
	out, err := runWorkerRaw(ctx, opVfMem, e.stateDir(), e.vol, strings.TrimPrefix(dir, e.vol+"/"), e.usageFolderID(), e.folder.scope.String(), mnt, strconv.Itoa(e.opts.views))
	if err != nil {
		rep.err = err.Error()
		return rep
	}
	var r memResult
	if err := json.Unmarshal(out, &r); err != nil {
		rep.err = fmt.Sprintf("bad worker output %q: %v", out, err)
		return rep
	}
	if r.Error != "" {
		rep.err = r.Error
		return rep
	}
	rep.files, rep.views = r.Files, e.opts.views
	rep.baseline, rep.withViews, rep.rss, rep.heapLive = r.Baseline, r.Views, r.Walked, r.HeapLive
	rep.method = fmt.Sprintf("one process holding a vfolder mount and the quota ledger (badger opened as vfolderd opens it) that knows a folder of %d files (%s); RSS (VmRSS) after opening both, after adding %d live views of that folder (sessions/<id>/data), and after `find` over one view so that the kernel and the daemon know every file; per known file: that last growth divided by the files; then the Go heap in use after a forced collection (RSS runs up to about twice the live heap under the default GOGC).",
		r.Files, humanBytes(r.Ledger), e.opts.views)
	if files != 1_000_000 {
		e.notef("memory: measured with %d files known, not 1M (--usage-files)", files)
	}
	if e.opts.views != 1000 {
		e.notef("memory: measured with %d live views, not 1000 (--views)", e.opts.views)
	}
	return rep
}

// opVfMem is the memory worker: state volume folderRel folderID scope mnt views.
const opVfMem = "vfmem"

func vfMemWorker(a []string) memResult {
	fail := func(err error) memResult { return memResult{Error: err.Error()} }
	if len(a) != 7 {
		return fail(fmt.Errorf("vfmem wants 7 arguments, got %d", len(a)))
	}
	state, vol, rel, folderID, scopeStr, mnt := a[0], a[1], a[2], a[3], a[4], a[5]
	views, err := strconv.Atoi(a[6])
	if err != nil || views < 1 {
		return fail(fmt.Errorf("bad view count %q", a[6]))
	}
	scope, err := meta.ParseScopeID(scopeStr)
	if err != nil {
		return fail(err)
	}
	l, err := openLedgerAt(state)
	if err != nil {
		return fail(err)
	}
	defer l.close()
	fsys, err := vfs.Mount(vfs.Options{MountPoint: mnt, StorageUID: vfStorageUID, StorageGID: vfStorageUID, Logger: zerolog.Nop(), Quota: l.m})
	if err != nil {
		return fail(err)
	}
	defer fsys.Close()
	runtime.GC()
	res := memResult{Baseline: selfRSS()}
	u := l.m.FolderUsage(folderID)
	res.Ledger = u.Used
	for i := 0; i < views; i++ {
		err := fsys.AddView(vfs.ViewSpec{
			Namespace: vfs.NSSessions, Key: fmt.Sprintf("bench-%05d", i), Name: "data",
			VolumeName: vfVolume, VolumePath: vol, FolderRel: rel,
			Mode: meta.PermRW, UID: vfViewUID, GID: vfViewUID, FolderID: folderID, Scope: scope,
		})
		if err != nil {
			return fail(fmt.Errorf("add view %d: %w", i, err))
		}
	}
	res.Views = selfRSS()
	view := filepath.Join(mnt, vfs.NSSessions, "bench-00000", "data")
	// find runs as a child process: this process serves its requests.
	cmd := execFind(view)
	out, err := cmd.Output()
	if err != nil {
		return fail(fmt.Errorf("find over a view: %v", err))
	}
	res.Files = int64(strings.Count(string(out), "\n"))
	res.Walked = selfRSS()
	// RSS depends on when the collector last ran (the heap grows to twice
	// what is live by default); the live heap after a collection is what
	// the daemon actually keeps.
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	res.HeapLive = int64(ms.HeapAlloc)
	return res
}

// selfRSS is this process's resident set size.
func selfRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) >= 1 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}
