package statedisk

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

const mt = 64 << 10 // memtable size of the tests

// fakeDisk is a state directory whose available space the test sets; the
// ballast files count against it.
type fakeDisk struct {
	dir   string
	free  atomic.Int64 // available besides the ballast files
	mu    sync.Mutex
	level []Level
}

func newFake(t *testing.T, free int64) (*fakeDisk, *Guard) {
	t.Helper()
	d := &fakeDisk{dir: t.TempDir()}
	d.free.Store(free)
	db := filepath.Join(d.dir, "meta")
	if err := os.Mkdir(db, 0o700); err != nil {
		t.Fatal(err)
	}
	g := New(Options{Dir: d.dir, DBDir: db, MemTableSize: mt, Log: zerolog.Nop(),
		OnChange: func(l Level) { d.mu.Lock(); d.level = append(d.level, l); d.mu.Unlock() }})
	g.opts.statfs = func(string) (int64, error) {
		n := d.free.Load()
		for _, f := range []string{BallastFile, StartBallastFile} {
			if st, err := os.Stat(filepath.Join(d.dir, f)); err == nil {
				n -= st.Size()
			}
		}
		return n, nil
	}
	return d, g
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func TestLevels(t *testing.T) {
	d, g := newFake(t, 100*mt)
	if err := g.Prepare(); err != nil {
		t.Fatal(err)
	}
	g.Check()
	if g.Level() != OK || g.Err() != nil {
		t.Fatalf("level %v, err %v; want ok", g.Level(), g.Err())
	}
	if !exists(filepath.Join(d.dir, BallastFile)) || !exists(filepath.Join(d.dir, StartBallastFile)) {
		t.Fatal("ballast files not made")
	}
	// 100 - 12 (ballast) = 88 available; short below 16.
	d.free.Store(12*mt + 10*mt)
	g.Check()
	if g.Level() != Short || !errors.Is(g.Err(), ErrFull) || !strings.Contains(g.Err().Error(), d.dir) {
		t.Fatalf("level %v, err %v; want short naming the directory", g.Level(), g.Err())
	}
	if !exists(filepath.Join(d.dir, BallastFile)) {
		t.Fatal("ballast released while only short")
	}
	// Critical: the run ballast goes, the start ballast stays.
	d.free.Store(12*mt + mt)
	g.Check()
	if exists(filepath.Join(d.dir, BallastFile)) || !exists(filepath.Join(d.dir, StartBallastFile)) {
		t.Fatal("at critical: want the run ballast released and the start ballast kept")
	}
	if g.Level() != Short {
		t.Fatalf("level after the release %v; want short (9 x memtable available)", g.Level())
	}
	// Others take the released space: critical.
	d.free.Store(4*mt + mt)
	g.Check()
	if g.Level() != Critical {
		t.Fatalf("level %v; want critical", g.Level())
	}
	// Space returns: ok only once the ballast fits again.
	d.free.Store(4*mt + 20*mt)
	g.Check()
	if g.Level() != Short {
		t.Fatalf("level %v; want short until the ballast fits", g.Level())
	}
	d.free.Store(200 * mt)
	g.Check()
	if g.Level() != OK || !exists(filepath.Join(d.dir, BallastFile)) {
		t.Fatalf("level %v; want ok with the ballast back", g.Level())
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	want := []Level{Short, Critical, Short, OK}
	if len(d.level) != len(want) {
		t.Fatalf("changes %v; want %v", d.level, want)
	}
	for i := range want {
		if d.level[i] != want[i] {
			t.Fatalf("changes %v; want %v", d.level, want)
		}
	}
}

// A start on a full disk releases the start ballast to open; with nothing
// left to release it refuses, saying how much it needs.
func TestPrepareOnFullDisk(t *testing.T) {
	d, g := newFake(t, 100*mt)
	if err := g.Prepare(); err != nil {
		t.Fatal(err)
	}
	g.Check() // makes the ballast files
	if err := os.WriteFile(filepath.Join(g.opts.DBDir, "00001.mem"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	d.free.Store(12 * mt) // everything but the ballast is taken
	_, g2 := newFake(t, 0)
	g2.opts = g.opts
	g2.run, g2.start = g.run, g.start
	if err := g2.Prepare(); err != nil {
		t.Fatalf("start on a full disk with the ballast: %v", err)
	}
	if exists(filepath.Join(d.dir, StartBallastFile)) {
		t.Error("the start ballast was not released")
	}
	if g2.Level() == OK {
		t.Error("level ok on a full disk")
	}
	// Now everything is gone.
	d.free.Store(12 * mt)
	os.Remove(filepath.Join(d.dir, BallastFile))
	os.Remove(filepath.Join(d.dir, StartBallastFile))
	d.free.Store(mt / 2)
	err := g2.Prepare()
	if !errors.Is(err, ErrFull) || !strings.Contains(err.Error(), "needs") {
		t.Errorf("start on a full disk without ballast = %v; want ErrFull saying what it needs", err)
	}
	if g2.RoomToClose() {
		t.Error("RoomToClose on a full disk")
	}
}

// Memtable logs are preallocated: their blocks are there before badger
// stores into them.
func TestPreallocate(t *testing.T) {
	_, g := newFake(t, 100*mt)
	p := filepath.Join(g.opts.DBDir, "00002.mem")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, 2*mt); err != nil {
		t.Fatal(err)
	}
	if err := g.Prepare(); err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	if st.Blocks*512 < 2*mt {
		t.Skipf("the test directory's file system does not preallocate (%d of %d bytes allocated)", st.Blocks*512, 2*mt)
	}
	if st.Size != 2*mt {
		t.Errorf("size changed to %d", st.Size)
	}
}
