// Package statedisk keeps vfolderd alive when the file system of its state
// directory fills up.
//
// # Why
//
// Badger maps its memtable logs (sparse files of 2 x the memtable size)
// and writes its tables through maps. A store into a page of a mapped file
// that the file system cannot allocate raises SIGBUS, which kills a Go
// process at once: every FUSE request in flight then gets ENOTCONN, and a
// restart on the still full disk dies the same way while badger replays
// and flushes its log. Errors returned by write(2) would be handled; a
// fault in a map cannot be. So the daemon never lets badger need a page
// it cannot have.
//
// # How
//
//   - Preallocation. Every memtable log in the database directory is
//     fallocated in full (FALLOC_FL_KEEP_SIZE over its length) as soon as
//     it appears (fsnotify) and at every poll: stores into the live log
//     never need a new block, whatever else fills the disk.
//   - Levels. statfs of the state directory (the space available to
//     unprivileged users, f_bavail) is read every Interval and whenever
//     badger creates a file (a memtable rotation, a flushed or compacted
//     table: the moments its usage grows). Below Reserve the disk is
//     Short: growth that needs accounting (writes past a file's charged
//     size, size increases, creates) is refused with ENOSPC, and metadata
//     changes through the API with "state disk full"; reads, overwrites
//     within a file's charged size, shrinks and removals go on (a removal
//     writes one small record). Below Critical, what badger needs to
//     rotate its memtable once, flush it and compact, every operation
//     that writes a ledger record is refused too (ENOSPC), so badger
//     only finishes what it started.
//   - Ballast. Two fallocated files hold space no other process can
//     take. state_dir/vfolderd.reserve (Ballast bytes) is released when
//     the disk gets Critical, so that badger can finish what it started
//     and close; state_dir/vfolderd.reserve-start (StartBallast bytes) is
//     released only before the database opens on a disk too full for
//     badger to replay and flush its log, so that a restart on a full
//     disk opens, serves reads and refuses growth. Both are made again
//     once the disk has Reserve plus their size available.
//   - Stop. Closing badger flushes its memtable into a table: with less
//     than RoomToClose available the daemon leaves the database without
//     closing it (its log is durable and replayed at the next start, as
//     after a crash, which the daemon is built to survive).
//   - Recovery. The level follows statfs both ways: when space returns
//     (Reserve + Ballast available, or Reserve once the ballast is in
//     place) the daemon serves growth again by itself; nothing is
//     retried or replayed, because nothing refused was charged.
//
// What it cannot prevent: another process taking the released ballast
// before badger used it, on a disk that stays full. Keep state_dir on a
// file system that user data does not fill (its own, or one with blocks
// reserved for root: vfolderd runs as root and f_bavail already leaves
// those out).
//
// # Concurrency
//
// Level and Err are one atomic load. OnChange runs on the guard's
// goroutine (or in Prepare), one call at a time, in level order.
package statedisk

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/internal/units"
)

// Level is how short of space the state disk is.
type Level int32

const (
	// OK: above the reserve.
	OK Level = iota
	// Short: below the reserve: growth and metadata changes are refused.
	Short
	// Critical: below what badger needs to finish: every ledger write is
	// refused.
	Critical
)

func (l Level) String() string {
	switch l {
	case OK:
		return "ok"
	case Short:
		return "short"
	case Critical:
		return "critical"
	}
	return fmt.Sprintf("level(%d)", int32(l))
}

// ErrFull is matched by the errors of a state disk short of space.
var ErrFull = errors.New("state disk full")

// FullError describes a state disk short of space; it matches ErrFull.
type FullError struct {
	Dir     string
	Avail   int64 // bytes available when measured
	Reserve int64
}

func (e *FullError) Error() string {
	return fmt.Sprintf("state disk full: %s has %s available, below the %s vfolderd keeps for its database; metadata changes and growth are refused until space is freed there (reads go on)",
		e.Dir, units.FormatSize(max(e.Avail, 0)), units.FormatSize(e.Reserve))
}

func (e *FullError) Is(target error) bool { return target == ErrFull }

// The ballast files in the state directory.
const (
	BallastFile      = "vfolderd.reserve"
	StartBallastFile = "vfolderd.reserve-start"
)

// Options configure a Guard. Sizes left 0 are derived from MemTableSize.
type Options struct {
	// Dir is the state directory: measured, and where the ballast lives.
	Dir string
	// DBDir is badger's directory; its *.mem files are preallocated.
	DBDir string
	// MemTableSize is badger's memtable size (required).
	MemTableSize int64
	// Critical: below it every ledger write is refused and the ballast
	// is released; default 4 x MemTableSize (a rotation: a new log of 2 x,
	// a flushed table of at most 1 x, and room for badger's small files).
	Critical int64
	// Reserve: below it the disk is short; default 16 x MemTableSize.
	Reserve int64
	// Ballast is the size of the ballast released at Critical; default
	// 8 x MemTableSize (a rotation, a close, and a compaction of the
	// level-0 tables).
	Ballast int64
	// StartBallast is the size of the ballast released before opening on
	// a full disk; default 4 x MemTableSize (replaying and flushing the
	// logs a stop left).
	StartBallast int64
	// Interval between polls; default 1s.
	Interval time.Duration
	// OnChange is told every level change.
	OnChange func(Level)
	Log      zerolog.Logger

	// statfs returns the bytes available in dir (tests replace it).
	statfs func(dir string) (int64, error)
}

// Guard watches the state disk. See the package comment.
type Guard struct {
	opts  Options
	log   zerolog.Logger
	level atomic.Int32
	avail atomic.Int64

	mu         sync.Mutex // serialises Check
	run, start ballast
	noPrealloc bool // fallocate is not supported: said once

	watcher *fsnotify.Watcher
	stop    chan struct{}
	done    chan struct{}
}

// New returns a guard; nothing is touched before Prepare.
func New(opts Options) *Guard {
	m := opts.MemTableSize
	if opts.Critical <= 0 {
		opts.Critical = 4 * m
	}
	if opts.Reserve <= 0 {
		opts.Reserve = 16 * m
	}
	if opts.Reserve < opts.Critical {
		opts.Reserve = opts.Critical
	}
	if opts.Ballast <= 0 {
		opts.Ballast = 8 * m
	}
	if opts.StartBallast <= 0 {
		opts.StartBallast = 4 * m
	}
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	if opts.statfs == nil {
		opts.statfs = available
	}
	return &Guard{opts: opts, log: opts.Log.With().Str("component", "statedisk").Logger(),
		run:   ballast{path: filepath.Join(opts.Dir, BallastFile), size: opts.Ballast},
		start: ballast{path: filepath.Join(opts.Dir, StartBallastFile), size: opts.StartBallast}}
}

// ballast is one ballast file.
type ballast struct {
	path    string
	size    int64
	present bool
}

func (b *ballast) look() {
	st, err := os.Lstat(b.path)
	b.present = err == nil && st.Mode().IsRegular() && st.Size() >= b.size
}

// missing is how many bytes the ballast files lack.
func (g *Guard) missing() int64 {
	var n int64
	for _, b := range []*ballast{&g.run, &g.start} {
		if !b.present {
			n += b.size
		}
	}
	return n
}

// RoomToClose reports whether the database has room to close (badger
// flushes its memtable into a table of at most the memtable size; twice
// that leaves room for its small files).
func (g *Guard) RoomToClose() bool {
	avail, err := g.opts.statfs(g.opts.Dir)
	return err == nil && avail >= 2*g.opts.MemTableSize
}

// available is statfs's f_bavail in bytes.
func available(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, &os.PathError{Op: "statfs", Path: dir, Err: err}
	}
	return int64(st.Bavail) * st.Bsize, nil
}

// Level is the current level.
func (g *Guard) Level() Level { return Level(g.level.Load()) }

// Err is nil while the disk is OK, else a *FullError.
func (g *Guard) Err() error {
	if g.Level() == OK {
		return nil
	}
	return &FullError{Dir: g.opts.Dir, Avail: g.avail.Load(), Reserve: g.opts.Reserve}
}

// Reserve is the threshold below which the disk is short.
func (g *Guard) Reserve() int64 { return g.opts.Reserve }

// Prepare runs before the database opens. On a disk too full for badger
// to open (replay and flush its log) it releases the ballast; if even
// that is not enough it fails with a *FullError saying how much is
// needed, and nothing is opened. Otherwise the ballast is put in place
// when there is room, and the level is set.
func (g *Guard) Prepare() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := os.MkdirAll(g.opts.Dir, 0o700); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	g.run.look()
	g.start.look()
	avail, err := g.opts.statfs(g.opts.Dir)
	if err != nil {
		return err
	}
	// Opening replays the memtable logs and flushes them into a table,
	// and starts a new log.
	need := max(g.openNeed(), g.opts.Critical)
	for _, b := range []*ballast{&g.start, &g.run} {
		if avail >= need || !b.present {
			continue
		}
		g.release(b, "the state disk is too full for the database to open")
		if avail, err = g.opts.statfs(g.opts.Dir); err != nil {
			return err
		}
	}
	if need = g.openNeed(); avail < need {
		return fmt.Errorf("%w: %s has %s available and no ballast left; vfolderd needs %s there to open its database: free space on that file system",
			ErrFull, g.opts.Dir, units.FormatSize(max(avail, 0)), units.FormatSize(need))
	}
	g.setLevel(g.levelOf(avail), avail)
	return nil
}

// openNeed is what badger may write while it opens: a table for each
// memtable log it replays and the first pages of a new log.
func (g *Guard) openNeed() int64 {
	need := g.opts.MemTableSize // the new log's first pages, small files
	ents, _ := os.ReadDir(g.opts.DBDir)
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".mem") {
			need += g.opts.MemTableSize
		}
	}
	return need
}

// levelOf maps the available bytes to a level; the ballast files are made
// again only with Reserve plus their size available, so leaving Short
// waits for that.
func (g *Guard) levelOf(avail int64) Level {
	switch {
	case avail < g.opts.Critical:
		return Critical
	case avail < g.opts.Reserve+g.missing():
		return Short
	}
	return OK
}

// Start watches the disk until Close: a poll every Interval and a look
// whenever badger makes a file. Call it once the database is open.
func (g *Guard) Start() error {
	w, err := fsnotify.NewWatcher()
	if err == nil {
		if err = w.Add(g.opts.DBDir); err != nil {
			w.Close()
		}
	}
	if err != nil {
		// The poll alone still works, a little later.
		g.log.Warn().Err(err).Str("dir", g.opts.DBDir).Msg("cannot watch the database directory; polling the state disk only")
		w = nil
	}
	g.watcher = w
	g.stop = make(chan struct{})
	g.done = make(chan struct{})
	g.Check()
	go g.loop()
	return nil
}

// Close stops watching.
func (g *Guard) Close() {
	if g.stop == nil {
		return
	}
	close(g.stop)
	<-g.done
	if g.watcher != nil {
		g.watcher.Close()
	}
	g.stop = nil
}

func (g *Guard) loop() {
	defer close(g.done)
	t := time.NewTicker(g.opts.Interval)
	defer t.Stop()
	var events chan fsnotify.Event
	var errs chan error
	if g.watcher != nil {
		events, errs = g.watcher.Events, g.watcher.Errors
	}
	for {
		select {
		case <-g.stop:
			return
		case <-t.C:
			g.Check()
		case ev, ok := <-events:
			if !ok {
				return
			}
			if ev.Has(fsnotify.Create) {
				g.Check()
			}
		case err, ok := <-errs:
			if !ok {
				return
			}
			// An overflow only loses events; the poll still runs.
			g.log.Debug().Err(err).Msg("watching the database directory")
		}
	}
}

// Check preallocates the memtable logs, measures the disk, and moves the
// level, releasing or making the ballast.
func (g *Guard) Check() {
	g.mu.Lock()
	defer g.mu.Unlock()
	preallocErr := g.preallocate()
	avail, err := g.opts.statfs(g.opts.Dir)
	if err != nil {
		g.log.Error().Err(err).Msg("cannot measure the state disk; keeping the last level")
		return
	}
	lvl := g.levelOf(avail)
	if preallocErr != nil && lvl < Critical {
		// A log that could not be preallocated will need blocks as it
		// fills: the disk is as short as it gets.
		lvl = Critical
	}
	if lvl == Critical && g.run.present {
		g.release(&g.run, "the state disk is critically short")
		if a, err := g.opts.statfs(g.opts.Dir); err == nil {
			avail = a
		}
		if g.preallocate() == nil {
			preallocErr = nil
		}
		lvl = g.levelOf(avail)
		if preallocErr != nil {
			lvl = Critical
		}
	}
	if lvl == OK && g.missing() > 0 {
		if err := g.makeBallast(); err != nil {
			g.log.Warn().Err(err).Msg("cannot make the state disk's ballast; staying short")
			lvl = Short
		} else if a, err := g.opts.statfs(g.opts.Dir); err == nil {
			avail = a
			lvl = g.levelOf(avail)
		}
	}
	g.setLevel(lvl, avail)
}

// setLevel records the level and tells OnChange and the log about a
// change.
func (g *Guard) setLevel(lvl Level, avail int64) {
	g.avail.Store(avail)
	old := Level(g.level.Swap(int32(lvl)))
	if old == lvl {
		return
	}
	ev := g.log.Warn()
	msg := "state disk short of space: growth in views (ENOSPC) and metadata changes are refused until space is freed; reads, overwrites, shrinks and removals go on"
	switch lvl {
	case OK:
		ev = g.log.Warn()
		msg = "state disk has space again: growth and metadata changes are served"
	case Critical:
		ev = g.log.Error()
		msg = "state disk critically short of space: every change that writes a ledger record (opens for writing, size changes, creates, removals) is refused with ENOSPC until space is freed; reads go on"
	}
	ev.Str("dir", g.opts.Dir).Str("available", units.FormatSize(max(avail, 0))).
		Str("reserve", units.FormatSize(g.opts.Reserve)).Str("level", lvl.String()).Msg(msg)
	if g.opts.OnChange != nil {
		g.opts.OnChange(lvl)
	}
}

// release removes a ballast file; mu is held.
func (g *Guard) release(b *ballast, why string) {
	err := os.Remove(b.path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		g.log.Error().Err(err).Str("file", b.path).Msg("cannot release the state disk's ballast")
		return
	}
	b.present = false
	g.log.Warn().Str("file", b.path).Str("size", units.FormatSize(b.size)).
		Msg("released the state disk's ballast: " + why + "; it is made again once space returns")
}

// makeBallast makes the missing ballast files; mu is held.
func (g *Guard) makeBallast() error {
	for _, b := range []*ballast{&g.start, &g.run} {
		if b.present {
			continue
		}
		if err := b.make(); err != nil {
			return err
		}
		g.log.Info().Str("file", b.path).Str("size", units.FormatSize(b.size)).Msg("state disk ballast in place")
	}
	return nil
}

// make writes the file with its blocks allocated.
func (b *ballast) make() error {
	tmp := b.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	err = unix.Fallocate(int(f.Fd()), 0, 0, b.size)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, b.path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("ballast %s: %w", b.path, err)
	}
	b.present = true
	return nil
}

// preallocate allocates the blocks of every memtable log of the database;
// mu is held. It fails when the file system has no room for them.
func (g *Guard) preallocate() error {
	ents, err := os.ReadDir(g.opts.DBDir)
	if err != nil {
		return nil // not there yet: nothing to protect
	}
	var firstErr error
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".mem") {
			continue
		}
		if err := g.preallocFile(filepath.Join(g.opts.DBDir, e.Name())); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}

func (g *Guard) preallocFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil // flushed and removed meanwhile
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return err
	}
	if st.Blocks*512 >= st.Size {
		return nil
	}
	err = unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_KEEP_SIZE, 0, st.Size)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EOPNOTSUPP):
		if !g.noPrealloc {
			g.noPrealloc = true
			g.log.Warn().Str("dir", g.opts.DBDir).Msg("the state disk's file system cannot preallocate; a state disk filled at once may still stop vfolderd (keep state_dir on ext4, xfs or btrfs)")
		}
		return nil
	}
	return &os.PathError{Op: "fallocate", Path: path, Err: err}
}
