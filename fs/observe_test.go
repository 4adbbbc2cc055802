package fs

import (
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/meta"
	"github.com/vfolder/vfolder/quota"
)

// countingObserver counts what it is told.
type countingObserver struct {
	reqs    [NumOps]atomic.Int64
	errs    [NumOps]atomic.Int64
	edquot  atomic.Int64
	mu      sync.Mutex
	refused map[quota.ScopeKey]int
}

func (o *countingObserver) Request(op Op, d time.Duration, status int32) {
	o.reqs[op].Add(1)
	if status != 0 {
		o.errs[op].Add(1)
	}
	if syscall.Errno(status) == syscall.EDQUOT {
		o.edquot.Add(1)
	}
}

func (o *countingObserver) QuotaRefused(s quota.ScopeKey) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.refused == nil {
		o.refused = map[quota.ScopeKey]int{}
	}
	o.refused[s]++
}

func TestFsObserver(t *testing.T) {
	o := &countingObserver{}
	SetObserver(o)
	t.Cleanup(func() { SetObserver(nil) })
	m := testLedger(t)
	f, dir := testMountWith(t, func(opt *Options) { opt.Quota = m })
	s := testFolder(t, dir, 1, "q")
	s.Mode = meta.PermRW
	sk := quota.ScopeKey{Volume: s.VolumeName, ID: s.Scope}
	if err := f.AddView(s); err != nil {
		t.Fatal(err)
	}
	view := filepath.Join(f.MountPoint(), "sessions", "s1", "q")
	before := o.reqs[OpCreate].Load()
	fd, err := unix.Open(filepath.Join(view, "f"), unix.O_CREAT|unix.O_RDWR|unix.O_EXCL, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if got := o.reqs[OpCreate].Load() - before; got != 1 {
		t.Errorf("%d CREATE requests observed for one create; want 1", got)
	}
	if err := m.SetLimit(sk, m.Usage(sk).Used+100, 0); err != nil {
		t.Fatal(err)
	}
	writes := o.reqs[OpWrite].Load()
	for i := range 3 {
		if n, err := unix.Pwrite(fd, make([]byte, 10), int64(10*i)); n != 10 || err != nil {
			t.Fatalf("write: %d %v", n, err)
		}
	}
	if got := o.reqs[OpWrite].Load() - writes; got != 3 {
		t.Errorf("%d WRITE requests observed for 3 writes; want 3", got)
	}
	if _, err := unix.Pwrite(fd, make([]byte, 200), 30); err != nil {
		t.Fatalf("write cut short: %v", err)
	}
	if _, err := unix.Pwrite(fd, []byte("x"), 200); err != unix.EDQUOT {
		t.Fatalf("write past the limit: %v; want EDQUOT", err)
	}
	if n := o.edquot.Load(); n != 1 {
		t.Errorf("%d requests observed answering EDQUOT; want 1", n)
	}
	o.mu.Lock()
	got := o.refused[sk]
	o.mu.Unlock()
	if got != 1 {
		t.Errorf("QuotaRefused(%v) told %d times; want 1 (%v)", sk, got, o.refused)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(view, &st); err != nil {
		t.Fatal(err)
	}
	if o.reqs[OpStatFs].Load() == 0 {
		t.Error("STATFS not observed")
	}
	if OpCopyFileRange.String() != "copy_file_range" || Op(200).String() != "unknown" {
		t.Errorf("op names: %q %q", OpCopyFileRange, Op(200))
	}
}

// TestFsObserverMatchesTrace: with the wrapper in place, the observer
// counts exactly the WRITE, READ and CREATE requests go-fuse's own trace
// shows, and ro views still read through passthrough where the kernel
// offers it (the wrapper hides nothing go-fuse needs).
func TestFsObserverMatchesTrace(t *testing.T) {
	o := &countingObserver{}
	SetObserver(o)
	t.Cleanup(func() { SetObserver(nil) })
	m := testLedger(t)
	f, dir, ops := countingMount(t, m)
	rw := testFolder(t, dir, 1, "rw")
	rw.Mode = meta.PermRW
	ro := rw
	ro.Name, ro.Mode = "ro", meta.PermRO
	for _, s := range []ViewSpec{rw, ro} {
		if err := f.AddView(s); err != nil {
			t.Fatal(err)
		}
	}
	data := make([]byte, 3<<20+100)
	rwPath := filepath.Join(f.MountPoint(), "sessions", "s1", "rw", "f")
	if err := os.WriteFile(rwPath, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.ReadFile(rwPath); err != nil {
		t.Fatal(err)
	}
	roReads := ops.count("READ")
	if _, err := os.ReadFile(filepath.Join(f.MountPoint(), "sessions", "s1", "ro", "f")); err != nil {
		t.Fatal(err)
	}
	if ops.passthroughNegotiated() && ops.count("READ") != roReads {
		t.Errorf("ro view read through the daemon (%d READ requests) with the observer in place; want passthrough", ops.count("READ")-roReads)
	}
	for _, c := range []struct {
		op    Op
		trace string
	}{{OpWrite, "WRITE"}, {OpRead, "READ"}, {OpCreate, "CREATE"}} {
		if got, want := o.reqs[c.op].Load(), int64(ops.count(c.trace)); got != want || want == 0 {
			t.Errorf("observer counted %d %s requests; go-fuse's trace shows %d", got, c.trace, want)
		}
	}
}
