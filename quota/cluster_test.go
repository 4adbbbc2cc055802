package quota

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

// fakeGrants is a cluster of one, in memory: Room registers the holds
// waiting and raises the grant by what is asked, up to pool.
type fakeGrants struct {
	m        atomic.Pointer[Manager]
	mu       sync.Mutex
	rev      int64
	limit    int64
	pool     int64
	grant    int64
	settled  int64
	rooms    atomic.Int64
	notifies atomic.Int64
}

func (g *fakeGrants) view() ClusterView {
	g.rev++
	return ClusterView{Rev: g.rev, Limit: g.limit, Grant: g.grant, Settled: g.settled}
}

func (g *fakeGrants) Room(s ScopeKey, need Need) bool {
	g.rooms.Add(1)
	m := g.m.Load()
	g.mu.Lock()
	defer g.mu.Unlock()
	refs := m.TakeHolds(s, 1000)
	m.HoldsDone(s, refs, true)
	_, _, ub, _ := m.View(s)
	a := min(max(need.Bytes-(g.grant-ub), 0), g.pool)
	g.grant += a
	g.pool -= a
	m.SetView(s, g.view(), nil)
	return a > 0
}

func (g *fakeGrants) Notify(ScopeKey) { g.notifies.Add(1) }

// settle does what the client does: snapshot, prepare, "send", apply.
func (g *fakeGrants) settle(t testing.TB, s ScopeKey) {
	t.Helper()
	m := g.m.Load()
	u, err := m.Unsettled(s)
	if err != nil {
		t.Fatal(err)
	}
	b := &Batch{Seq: u.Seq + 1, Loose: u.Loose, Holds: u.Holds, Removed: u.Removed, Last: true}
	for i := range b.Holds {
		b.Holds[i].Close = !b.Holds[i].Held
	}
	if err := m.PrepareSettle(s, b); err != nil {
		t.Fatal(err)
	}
	g.mu.Lock()
	var d int64
	for _, f := range b.Folders() {
		d += f.Bytes
	}
	g.settled += d
	g.grant = max(g.grant-d, 0)
	v := g.view()
	g.mu.Unlock()
	if err := m.ApplySettle(s, b, v, nil); err != nil {
		t.Fatal(err)
	}
}

func newCluster(t testing.TB, db string, vol string, g *fakeGrants) *Manager {
	t.Helper()
	m := openMgr(t, openDB(t, db), Options{Grants: g, OpenFolder: folderOpener(vol)})
	g.m.Store(m)
	return m
}

func clusterSetup(t *testing.T, limit int64) (*fakeGrants, *Manager, ScopeKey, string, string) {
	base := t.TempDir()
	vol := filepath.Join(base, "vol")
	if err := os.MkdirAll(filepath.Join(vol, "f1"), 0o755); err != nil {
		t.Fatal(err)
	}
	g := &fakeGrants{limit: limit, pool: limit}
	dbDir := filepath.Join(base, "db")
	m := newCluster(t, dbDir, vol, g)
	s := testScope(t, 1)
	g.mu.Lock()
	m.SetView(s, g.view(), nil)
	g.mu.Unlock()
	return g, m, s, dbDir, vol
}

// openEmpty makes an empty file on storage and opens it for writing
// through the ledger: unlike simFS.create it reserves no room for the
// directory's growth, so these tests see file bytes only.
func openEmpty(t testing.TB, x *simFS, dir, rel string) *handle {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, rel), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	h, err := x.open(rel)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func unsettled(t testing.TB, m *Manager, s ScopeKey) int64 {
	t.Helper()
	u, err := m.Unsettled(s)
	if err != nil {
		t.Fatal(err)
	}
	return u.Bytes
}

// TestClusterFirstTouch: a node charges growth against the size it saw
// when it took its hold (an existing file is adopted, not charged), and a
// removal against the size at removal.
func TestClusterFirstTouch(t *testing.T) {
	g, m, s, _, vol := clusterSetup(t, 1<<20)
	defer m.Close()
	if err := os.WriteFile(filepath.Join(vol, "f1", "other"), make([]byte, 100), 0o644); err != nil {
		t.Fatal(err)
	}
	x := newSimFS(t, m, s, filepath.Join(vol, "f1"), "f1")
	defer x.close()
	h, err := x.open("other") // written by another node: 100 bytes
	if err != nil {
		t.Fatal(err)
	}
	if got := unsettled(t, m, s); got != 0 {
		t.Fatalf("opening another node's file charged %d", got)
	}
	if _, err := x.write(h, 100, make([]byte, 50)); err != nil {
		t.Fatal(err)
	}
	if got := unsettled(t, m, s); got != 50 {
		t.Fatalf("growth charged %d, want 50", got)
	}
	x.release(h)
	g.settle(t, s)
	if err := os.WriteFile(filepath.Join(vol, "f1", "gone"), make([]byte, 70), 0o644); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	unix.Lstat(filepath.Join(vol, "f1", "gone"), &st)
	rm, err := m.PrepareRemoveSize(s, "f1", x.key(&st), KindFile, 70, nil, "gone")
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(vol, "f1", "gone"))
	rm.Done(true)
	if got := unsettled(t, m, s); got != -70 {
		t.Fatalf("removal credited %d, want -70", got)
	}
	// The credit shows and frees room only once settled.
	if u := m.Usage(s); u.Used != 50 {
		t.Fatalf("usage before the credit is settled: %d, want 50", u.Used)
	}
	g.settle(t, s)
	if got := unsettled(t, m, s); got != 0 || g.settled != 50-70 {
		t.Fatalf("after settling: unsettled %d, cluster settled %d (want 0, -20)", got, g.settled)
	}
}

// TestClusterRoomIsGrant: room is the grant minus unsettled growth; a
// write past it asks once and is cut short to what it got; a shrink frees
// room only once settled.
func TestClusterRoomIsGrant(t *testing.T) {
	g, m, s, _, vol := clusterSetup(t, 100)
	defer m.Close()
	x := newSimFS(t, m, s, filepath.Join(vol, "f1"), "f1")
	defer x.close()
	h := openEmpty(t, x, filepath.Join(vol, "f1"), "a")
	if n, err := x.write(h, 0, make([]byte, 60)); err != nil || n != 60 {
		t.Fatalf("write: %d %v", n, err)
	}
	if g.rooms.Load() == 0 {
		t.Fatal("no room was asked for")
	}
	if n, err := x.write(h, 60, make([]byte, 60)); err != nil || n != 40 {
		t.Fatalf("write past the pool: %d %v, want cut short to 40", n, err)
	}
	if _, err := x.write(h, 100, make([]byte, 1)); !errors.Is(err, ErrExceeded) {
		t.Fatalf("write at the limit: %v", err)
	}
	if err := x.truncate(h, 50); err != nil {
		t.Fatal(err)
	}
	if _, err := x.write(h, 50, make([]byte, 10)); !errors.Is(err, ErrExceeded) {
		t.Fatalf("a shrink not yet settled freed room: %v", err)
	}
	g.settle(t, s)
	if n, err := x.write(h, 50, make([]byte, 10)); err != nil || n != 10 {
		t.Fatalf("after settling the shrink: %d %v", n, err)
	}
	x.release(h)
}

// TestClusterAdoptionSurvivesCrash: a node that opened another node's
// file, grew it and died settles after restart only its own growth,
// including what it wrote after its last report (recovery re-stats the
// held file): the adoption is kept with the records.
func TestClusterAdoptionSurvivesCrash(t *testing.T) {
	g, m, s, dbDir, vol := clusterSetup(t, 1<<20)
	if err := os.WriteFile(filepath.Join(vol, "f1", "other"), make([]byte, 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	x := newSimFS(t, m, s, filepath.Join(vol, "f1"), "f1")
	h, err := x.open("other")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x.write(h, 1000, make([]byte, 300)); err != nil {
		t.Fatal(err)
	}
	// More growth behind the ledger's last report, as a crash between the
	// write and its Done would leave it.
	unix.Pwrite(h.fd, make([]byte, 200), 1300)
	abandon(m)
	unix.Close(h.fd)
	x.close()
	m.db.Close()

	m = newCluster(t, dbDir, vol, g)
	defer m.Close()
	if err := m.ResolvePending(s, 0); err != nil {
		t.Fatal(err)
	}
	if got := unsettled(t, m, s); got != 500 {
		t.Fatalf("after restart the node has %d unsettled, want its own growth 500", got)
	}
}

// TestClusterPendingSettlement: a settlement prepared and then lost with
// the process is applied or dropped by the sequence number the cluster
// holds for the node.
func TestClusterPendingSettlement(t *testing.T) {
	for _, applied := range []bool{true, false} {
		g, m, s, dbDir, vol := clusterSetup(t, 1<<20)
		x := newSimFS(t, m, s, filepath.Join(vol, "f1"), "f1")
		h := openEmpty(t, x, filepath.Join(vol, "f1"), "a")
		x.write(h, 0, make([]byte, 123))
		x.release(h)
		u, _ := m.Unsettled(s)
		b := &Batch{Seq: 1, Loose: u.Loose, Holds: u.Holds, Removed: u.Removed, Last: true}
		if err := m.PrepareSettle(s, b); err != nil {
			t.Fatal(err)
		}
		abandon(m)
		x.close()
		m.db.Close()
		m = newCluster(t, dbDir, vol, g)
		seq := uint64(0)
		if applied {
			seq = 1
		}
		if err := m.ResolvePending(s, seq); err != nil {
			t.Fatal(err)
		}
		want := int64(123)
		if applied {
			want = 0
		}
		if got := unsettled(t, m, s); got != want {
			t.Fatalf("applied=%v: unsettled %d, want %d", applied, got, want)
		}
		m.Close()
	}
}

// TestClusterGrowthDoesNotAllocate: inside a grant, a growing write in
// cluster mode takes no allocation and asks nothing.
func TestClusterGrowthDoesNotAllocate(t *testing.T) {
	g, m, s, _, vol := clusterSetup(t, math.MaxInt64/4)
	defer m.Close()
	x := newSimFS(t, m, s, filepath.Join(vol, "f1"), "f1")
	defer x.close()
	h := openEmpty(t, x, filepath.Join(vol, "f1"), "a")
	x.write(h, 0, make([]byte, 4096)) // registers the hold, gets a grant
	g.mu.Lock()
	g.grant += 1 << 40
	m.SetView(s, g.view(), nil)
	g.mu.Unlock()
	rooms := g.rooms.Load()
	size := int64(4096)
	allocs := testing.AllocsPerRun(1000, func() {
		gr, r, err := m.Reserve(s, "f1", h.key, size, size+4096)
		if err != nil {
			t.Fatal(err)
		}
		size = gr
		r.Done(size)
	})
	if allocs != 0 {
		t.Fatalf("a growing write inside a grant allocates %v times", allocs)
	}
	if g.rooms.Load() != rooms {
		t.Fatal("a write inside the grant asked the cluster")
	}
}

// TestClusterCreateAsksRoom: a create, a mkdir and a user xattr in cluster
// mode take their inode and their bytes (the directory's growth, the
// attribute) from the node's grants, asking for more when short, and stop
// with EDQUOT once the cluster's pool is spent; what they charged is
// settled exactly.
func TestClusterCreateAsksRoom(t *testing.T) {
	g, m, s, _, vol := clusterSetup(t, 64<<10)
	defer m.Close()
	dir := filepath.Join(vol, "f1")
	x := newSimFS(t, m, s, dir, "f1")
	defer x.close()
	// The node that makes a folder records its root (every other node
	// adopts it).
	if err := m.RecordRoot(s, "f1"); err != nil {
		t.Fatal(err)
	}
	before := g.rooms.Load()
	h, err := x.create("a")
	if err != nil {
		t.Fatalf("create with no grant yet: %v", err)
	}
	x.release(h)
	if g.rooms.Load() == before {
		t.Fatal("the create asked for no room")
	}
	if err := x.mkdir("d"); err != nil {
		t.Fatal(err)
	}
	if err := x.setxattr("a", "user.k", make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	// Fill the pool: creates stop with EDQUOT, never past the grant.
	var made int
	for ; made < 1000; made++ {
		h, err := x.create(filepath.Join("d", fmt.Sprintf("f%04d", made)))
		if err != nil {
			if !errors.Is(err, ErrExceeded) {
				t.Fatalf("create %d: %v", made, err)
			}
			break
		}
		x.release(h)
	}
	if made == 1000 {
		t.Fatal("a 64 KiB pool took 1000 creates")
	}
	if u := unsettled(t, m, s); u > g.grant || g.grant > g.limit {
		t.Fatalf("unsettled %d past the grant %d (limit %d)", u, g.grant, g.limit)
	}
	g.settle(t, s)
	want := dirCharge(t, dir)
	if g.settled != want {
		t.Fatalf("cluster settled %d, storage holds %d", g.settled, want)
	}
	// Another node grows directory e (entries made behind this ledger);
	// this node's next create there charges only its own growth.
	if err := x.mkdir("e"); err != nil {
		t.Fatal(err)
	}
	g.settle(t, s)
	sizeBefore := dirCharge(t, filepath.Join(dir, "e"))
	for i := 0; i < 200; i++ {
		if err := os.Mkdir(filepath.Join(dir, "e", fmt.Sprintf("%0200d", i)), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// (their own 200 directories, charged by the other node)
	theirs := dirCharge(t, filepath.Join(dir, "e")) - sizeBefore
	g.pool += 1 << 20
	g.limit += 1 << 20
	h, err = x.create(filepath.Join("e", "mine"))
	if err != nil {
		t.Fatal(err)
	}
	x.release(h)
	g.settle(t, s)
	if want := dirCharge(t, dir) - theirs; g.settled != want {
		t.Fatalf("after another node grew e: cluster settled %d, want %d (storage %d less the other node's %d)", g.settled, want, dirCharge(t, dir), theirs)
	}
}

// dirCharge is what the ledger's rules charge for the tree under dir,
// its root included: directory sizes, file sizes, symlink targets and
// user xattrs.
func dirCharge(t testing.TB, dir string) int64 {
	t.Helper()
	var sum int64
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		sum += fi.Size()
		n, err := userXattrBytes(p, true)
		if err != nil {
			return err
		}
		sum += n
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

// TestClusterRemovalCreditsXattrs: a file another node made, with user
// xattrs, is credited at its size and its attributes when this node
// removes it, so the cluster figure does not keep the attributes' bytes.
func TestClusterRemovalCreditsXattrs(t *testing.T) {
	g, m, s, _, vol := clusterSetup(t, 1<<20)
	defer m.Close()
	p := filepath.Join(vol, "f1", "theirs")
	if err := os.WriteFile(p, make([]byte, 70), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(p, "user.k", make([]byte, 30), 0); err != nil {
		t.Skipf("the test directory's file system has no user xattrs: %v", err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	x := newSimFS(t, m, s, filepath.Join(vol, "f1"), "f1")
	defer x.close()
	fd, err := unix.Open(p, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	xattrs := func() int64 {
		n, err := UserXattrBytes(fd)
		if err != nil {
			t.Error(err)
		}
		return n
	}
	rm, err := m.PrepareRemoveSize(s, "f1", x.key(&st), KindFile, 70, xattrs, "theirs")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	rm.Done(true)
	if got := unsettled(t, m, s); got != -(70 + 6 + 30) {
		t.Fatalf("removal credited %d, want -%d", got, 70+6+30)
	}
	g.settle(t, s)
}
