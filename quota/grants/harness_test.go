package grants

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/internal/testutil/etcdtest"
	"github.com/vfolder/vfolder/meta"
	"github.com/vfolder/vfolder/quota"
)

// The harness: a "node" is a quota.Manager on a badger of its own with a
// Client, over one directory standing in for the shared volume; files are
// real, and each node drives its ledger around them the way package fs
// does (OpenForWrite with the fstat size, Reserve/ReserveExact around the
// write, Done with the size after).

func testLog(t testing.TB) zerolog.Logger {
	if os.Getenv("GRANTS_TEST_LOG") != "" {
		return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel)
	}
	return zerolog.Nop()
}

func testScope(t testing.TB) quota.ScopeKey {
	t.Helper()
	id, err := meta.UserScope("2b1a7c4e5d3f4a8e9c0b1f2e3d4c5b6a")
	if err != nil {
		t.Fatal(err)
	}
	return quota.ScopeKey{Volume: "vol", ID: id}
}

func etcdClient(t testing.TB, eps []string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   eps,
		DialTimeout: 2 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

type cluster struct {
	t     testing.TB
	etcd  *etcdtest.Server
	vol   string // the shared directory; folders are its subdirectories
	s     quota.ScopeKey
	nodes []*node
	cfg   func(*Config) // called with Node set
}

type node struct {
	cl    *cluster
	name  string
	dir   string
	db    *badger.DB
	m     *quota.Manager
	c     *Client
	cli   *clientv3.Client
	dead  bool
	mu    sync.Mutex
	files map[string]*file
}

func newCluster(t testing.TB, n int, cfg func(*Config)) *cluster {
	t.Helper()
	cl := &cluster{t: t, etcd: etcdtest.Start(t), vol: t.TempDir(), s: testScope(t), cfg: cfg}
	for i := range n {
		cl.nodes = append(cl.nodes, cl.start("node"+string(rune('1'+i)), filepath.Join(t.TempDir(), "state")))
	}
	return cl
}

func (cl *cluster) openFolder(_ quota.ScopeKey, id string) (*os.File, error) {
	return os.Open(filepath.Join(cl.vol, id))
}

func (cl *cluster) config(name string, cli *clientv3.Client) Config {
	c := Config{
		Client:         cli,
		Node:           name,
		OpenFolder:     cl.openFolder,
		LeaseTTL:       3 * time.Second,
		SettleInterval: 200 * time.Millisecond,
		Wait:           3 * time.Second,
		IdleReturn:     2 * time.Second,
		MinUnit:        256 << 10,
		Log:            testLog(cl.t),
	}
	if cl.cfg != nil {
		cl.cfg(&c)
	}
	return c
}

// start opens (or reopens, after a crash) a node's ledger on its state
// directory and starts its client.
func (cl *cluster) start(name, dir string) *node {
	t := cl.t
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil).WithSyncWrites(false).
		WithMemTableSize(8 << 20).WithBlockCacheSize(1 << 20).WithValueLogFileSize(16 << 20).WithNumCompactors(2))
	if err != nil {
		t.Fatal(err)
	}
	cli := etcdClient(t, cl.etcd.Endpoints())
	c, err := New(cl.config(name, cli))
	if err != nil {
		t.Fatal(err)
	}
	m, err := quota.Open(db, testLog(t), quota.Options{Grants: c, OpenFolder: cl.openFolder})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Start(ctx, m); err != nil {
		t.Fatal(err)
	}
	n := &node{cl: cl, name: name, dir: dir, db: db, m: m, c: c, cli: cli, files: map[string]*file{}}
	t.Cleanup(n.stop)
	return n
}

// stop closes the node cleanly (settles, gives grants back).
func (n *node) stop() {
	if n.dead {
		return
	}
	n.dead = true
	n.mu.Lock()
	for _, f := range n.files {
		f.closeLocked()
	}
	n.mu.Unlock()
	n.c.Close()
	n.m.Close()
	n.db.Close()
}

// crash drops the node as a SIGKILL would: nothing is settled or given
// back, the lease is revoked (as its expiry would), the ledger is left as
// the last commits wrote it (the mark table and badger's page cache
// survive a process death).
func (n *node) crash() {
	if n.dead {
		return
	}
	n.dead = true
	c := n.c
	c.closed.Store(true)
	c.cancel()
	c.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := n.cli.Revoke(ctx, clientv3.LeaseID(c.lease.Load())); err != nil {
		n.cl.t.Logf("revoke %s: %v", n.name, err)
	}
	n.mu.Lock()
	for _, f := range n.files {
		unix.Close(f.fd)
	}
	n.files = map[string]*file{}
	n.mu.Unlock()
	// The ledger keeps what its commits wrote and its holds marked, as a
	// process death leaves it (Close settles nothing with the cluster).
	n.m.Close()
	n.db.Close()
}

// file is a regular file a node has open for writing.
type file struct {
	n      *node
	folder string
	path   string // in the folder
	fd     int
	key    quota.InodeKey
	size   int64 // what the node's file system believes (its openInode size)
	closed bool
}

func (cl *cluster) folder(id string) string {
	p := filepath.Join(cl.vol, id)
	if err := os.MkdirAll(p, 0o755); err != nil {
		cl.t.Fatal(err)
	}
	return p
}

func rootDev(t testing.TB, dir string) uint64 {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	return st.Dev
}

// create makes a new file (ReserveInode, create, Commit) and opens it for
// writing.
func (n *node) create(folder, name string) (*file, error) {
	t := n.cl.t
	dir := n.cl.folder(folder)
	r, err := n.m.ReserveInode(n.cl.s, folder, quota.KindFile, 0, name)
	if err != nil {
		return nil, err
	}
	fd, err := unix.Open(filepath.Join(dir, name), unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o644)
	if err != nil {
		r.Cancel()
		t.Fatalf("create %s: %v", name, err)
	}
	var st unix.Stat_t
	unix.Fstat(fd, &st)
	key := quota.MakeKey(rootDev(t, dir), st.Dev, st.Ino)
	r.Commit(key, 0)
	unix.Close(fd)
	return n.open(folder, name)
}

// open opens an existing file for writing: OpenForWrite with its size.
func (n *node) open(folder, name string) (*file, error) {
	t := n.cl.t
	dir := n.cl.folder(folder)
	fd, err := unix.Open(filepath.Join(dir, name), unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open %s: %v", name, err)
	}
	var st unix.Stat_t
	unix.Fstat(fd, &st)
	key := quota.MakeKey(rootDev(t, dir), st.Dev, st.Ino)
	if err := n.m.OpenForWrite(n.cl.s, folder, key, st.Size, name); err != nil {
		unix.Close(fd)
		return nil, err
	}
	f := &file{n: n, folder: folder, path: name, fd: fd, key: key, size: st.Size}
	n.mu.Lock()
	n.files[folder+"/"+name+"/"+time.Now().String()] = f
	n.mu.Unlock()
	return f, nil
}

func (f *file) close() {
	f.n.mu.Lock()
	defer f.n.mu.Unlock()
	f.closeLocked()
}

func (f *file) closeLocked() {
	if f.closed {
		return
	}
	f.closed = true
	unix.Close(f.fd)
	f.n.m.CloseForWrite(f.n.cl.s, f.folder, f.key)
}

var chunk = make([]byte, 1<<20)

// pwrite writes n bytes at off as a FUSE write: reserve, cut short to the
// grant, write, report. Returns what was written.
func (f *file) pwrite(off, n int64) (int64, error) {
	end := off + n
	if end <= f.size {
		return writeAt(f.fd, off, n), nil
	}
	g, r, err := f.n.m.Reserve(f.n.cl.s, f.folder, f.key, off, end)
	if err != nil {
		return 0, err
	}
	w := writeAt(f.fd, off, g-off)
	f.size = max(f.size, off+w)
	r.Done(f.size)
	return w, nil
}

func writeAt(fd int, off, n int64) int64 {
	done := int64(0)
	for done < n {
		b := chunk[:min(int64(len(chunk)), n-done)]
		w, err := unix.Pwrite(fd, b, off+done)
		if err != nil {
			panic(err)
		}
		done += int64(w)
	}
	return done
}

func (f *file) append(n int64) (int64, error) { return f.pwrite(f.size, n) }

// resize changes the size to n as truncate does (all or nothing).
func (f *file) resize(n int64) error {
	r, err := f.n.m.ReserveExact(f.n.cl.s, f.folder, f.key, n)
	if err != nil {
		return err
	}
	if err := unix.Ftruncate(f.fd, n); err != nil {
		panic(err)
	}
	var st unix.Stat_t
	unix.Fstat(f.fd, &st)
	f.size = st.Size
	r.Done(st.Size)
	return nil
}

// fallocate grows the file to n with fallocate mode 0 (all or nothing).
func (f *file) fallocate(n int64) error {
	r, err := f.n.m.ReserveExact(f.n.cl.s, f.folder, f.key, n)
	if err != nil {
		return err
	}
	if err := unix.Fallocate(f.fd, 0, 0, n); err != nil {
		panic(err)
	}
	var st unix.Stat_t
	unix.Fstat(f.fd, &st)
	f.size = st.Size
	r.Done(st.Size)
	return nil
}

// remove unlinks a file as fs does (PrepareRemoveSize, unlink, Done).
func (n *node) remove(folder, name string) error {
	t := n.cl.t
	dir := n.cl.folder(folder)
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(dir, name), &st); err != nil {
		t.Fatalf("lstat %s: %v", name, err)
	}
	key := quota.MakeKey(rootDev(t, dir), st.Dev, st.Ino)
	rm, err := n.m.PrepareRemoveSize(n.cl.s, folder, key, quota.KindOf(st.Mode), st.Size, nil, name)
	if err != nil {
		return err
	}
	err = unix.Unlink(filepath.Join(dir, name))
	rm.Done(err == nil && st.Nlink <= 1)
	return err
}

// volumeBytes is the sum of the logical sizes of the regular files below
// the volume (the truth the figures must match).
func (cl *cluster) volumeBytes() int64 {
	var sum int64
	filepath.WalkDir(cl.vol, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				sum += info.Size()
			}
		}
		return nil
	})
	return sum
}

// settled waits until every live node shows the same usage as the store's
// settled figure and that figure equals want.
func (cl *cluster) waitSettled(want int64, within time.Duration) {
	t := cl.t
	t.Helper()
	deadline := time.Now().Add(within)
	var last string
	for time.Now().Before(deadline) {
		st := cl.state()
		ok := st.Settled == want
		last = ""
		for _, n := range cl.nodes {
			if n.dead {
				continue
			}
			u := n.m.Usage(cl.s)
			if u.Used != want {
				ok = false
			}
			last += n.name + "=" + itoa(u.Used) + " "
		}
		if ok {
			return
		}
		last += "store=" + itoa(st.Settled)
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("usage did not settle at %d within %v: %s", want, within, last)
}

func (cl *cluster) live() *node {
	for _, n := range cl.nodes {
		if !n.dead {
			return n
		}
	}
	cl.t.Fatal("no live node")
	return nil
}

func (cl *cluster) state() ScopeState {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := cl.live().c.State(ctx, cl.s)
	if err != nil {
		cl.t.Fatal(err)
	}
	return st
}

func (cl *cluster) setLimit(bytes, inodes int64) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.live().c.SetLimit(ctx, cl.s, bytes, inodes); err != nil {
		cl.t.Fatal(err)
	}
}

// invariant replays every revision of the scope record and checks
// settled + grants <= limit in each, or, after the limit was lowered
// below it, that the sum does not grow until it holds again.
func (cl *cluster) invariant() int {
	t := cl.t
	t.Helper()
	cli := etcdClient(t, cl.etcd.Endpoints())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key := keys{"/vfolder/quota/"}.record(scopeKey(cl.s))
	cur, err := cli.Get(ctx, key)
	if err != nil || len(cur.Kvs) == 0 {
		t.Fatalf("record: %v", err)
	}
	wch := cli.Watch(ctx, key, clientv3.WithRev(1))
	n := 0
	prev := int64(-1)
	for resp := range wch {
		if err := resp.Err(); err != nil {
			t.Fatal(err)
		}
		for _, ev := range resp.Events {
			rec, err := decode[record](ev.Kv.Value)
			if err != nil {
				t.Fatal(err)
			}
			n++
			g, _ := rec.granted()
			if sum := rec.Settled + g; rec.Limit > 0 && sum > rec.Limit && (prev < 0 || sum > prev) {
				t.Errorf("revision %d: settled %d + grants %d > limit %d", ev.Kv.ModRevision, rec.Settled, g, rec.Limit)
			}
			prev = rec.Settled + g
		}
		if resp.Header.Revision >= cur.Header.Revision || len(resp.Events) == 0 {
			if len(resp.Events) > 0 && resp.Events[len(resp.Events)-1].Kv.ModRevision >= cur.Kvs[0].ModRevision {
				break
			}
		}
	}
	return n
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

func isExceeded(err error) bool { return errors.Is(err, quota.ErrExceeded) }

func prefixOpt() clientv3.OpOption { return clientv3.WithPrefix() }
