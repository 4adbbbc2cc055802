package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/meta"
	"github.com/vfolder/vfolder/quota"
)

// One exact quota per scope across the nodes (cluster quota, package
// quota/grants), end to end: three vfolderd processes on one volume and
// a real etcd; writers are goroutines making real syscalls on the nodes'
// FUSE views; the truth is a walk of the folder on the volume (what the
// ledger charges: quota.WalkFolder).

const clLimit = 100 << 20 // 104857600

// clFolder creates the user's folder name through n (the scope is made
// with it) and returns its directory on the volume.
func clFolder(t *testing.T, n *clNode, vol, name string) string {
	t.Helper()
	var f api.Folder
	n.JSON(&f, "create", name, "local", "--user", clUser)
	return filepath.Join(vol, meta.FolderRelPath(meta.ScopeID{Kind: meta.KindUser, UUID: clUser}, f.ID))
}

// clSetLimit sets the user's scope limit through n.
func clSetLimit(t *testing.T, n *clNode, limit string) {
	t.Helper()
	n.OK("quota-scope", "set", "local", clUser, limit, "-t", "user")
}

// clUsed is the user's scope usage as `quota-scope get` on n shows it.
func (n *clNode) clUsed(t *testing.T) int64 {
	t.Helper()
	var q api.QuotaScope
	n.JSON(&q, "quota-scope", "get", "local", clUser, "-t", "user")
	return q.UsedBytes
}

// clTruth is what the ledger charges for what is in dir on the volume.
func clTruth(t *testing.T, dir string) int64 {
	t.Helper()
	sum, err := clWalk(dir)
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

func clWalk(dir string) (int64, error) {
	f, err := os.Open(dir)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var sum int64
	complete, err := quota.WalkFolder(context.Background(), f, func(e quota.WalkEntry) error {
		sum += e.Bytes
		return nil
	})
	if err == nil && !complete {
		err = fmt.Errorf("walking %s: incomplete", dir)
	}
	return sum, err
}

// clSampler walks dir every few milliseconds until stopped and keeps the
// largest total seen. Files only grow while it runs, so a walk never
// shows more than the volume held at its end.
type clSampler struct {
	max, last, samples atomic.Int64
	stop               chan struct{}
	done               chan struct{}
}

func clSample(t *testing.T, dir string) *clSampler {
	s := &clSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			select {
			case <-s.stop:
				return
			default:
			}
			v, err := clWalk(dir)
			if err != nil {
				t.Errorf("sampling: %v", err)
				return
			}
			s.last.Store(v)
			s.samples.Add(1)
			if v > s.max.Load() {
				s.max.Store(v)
			}
			time.Sleep(3 * time.Millisecond)
		}
	}()
	return s
}

func (s *clSampler) end() { close(s.stop); <-s.done }

// Writer kinds: every one grows its own file.
const (
	wAppend   = "append"    // write(2) on O_APPEND
	wPwrite   = "pwrite"    // pwrite(2) 4 KiB past the end (a hole, then data)
	wFalloc   = "fallocate" // fallocate(2) mode 0 past the end
	wTruncate = "truncate"  // ftruncate(2) up
)

// clWriter grows one file through one node's view.
type clWriter struct {
	node, kind, path string
	chunk            int
	pace             time.Duration // pause between operations
	verify           bool          // fsync each write; acked is what fsync confirmed
	retryEDQUOT      bool          // EDQUOT pauses, until ctx ends

	size, acked atomic.Int64
	edquot      atomic.Int64
	err         error // first error other than EDQUOT
}

// clPattern is the content of byte o of a verified file.
func clPattern(seed, o int64) byte { return byte((o*131 + seed*7) % 251) }

func (w *clWriter) seed() int64 { return int64(len(w.path)*31 + int(w.path[len(w.path)-1])) }

// run writes until EDQUOT (or ctx ends when retryEDQUOT is set).
func (w *clWriter) run(ctx context.Context) {
	flags := os.O_WRONLY | os.O_CREATE | syscall.O_CLOEXEC
	if w.kind == wAppend {
		flags |= os.O_APPEND
	}
	f, err := os.OpenFile(w.path, flags, 0o644)
	if err != nil {
		w.err = err
		return
	}
	defer f.Close()
	fd := int(f.Fd())
	buf := make([]byte, w.chunk)
	for ctx.Err() == nil {
		size := w.size.Load()
		var err error
		switch w.kind {
		case wAppend, wPwrite:
			off := size
			if w.kind == wPwrite && !w.verify {
				off += 4096
			}
			for i := range buf {
				buf[i] = clPattern(w.seed(), off+int64(i))
			}
			var n int
			if w.kind == wAppend {
				n, err = unix.Write(fd, buf)
			} else {
				n, err = unix.Pwrite(fd, buf, off)
			}
			if n > 0 {
				w.size.Store(off + int64(n))
			}
		case wFalloc:
			if err = unix.Fallocate(fd, 0, size, int64(w.chunk)); err == nil {
				w.size.Store(size + int64(w.chunk))
			}
		case wTruncate:
			if err = unix.Ftruncate(fd, size+int64(w.chunk)); err == nil {
				w.size.Store(size + int64(w.chunk))
			}
		}
		if err == nil && w.verify {
			if err = unix.Fsync(fd); err == nil {
				w.acked.Store(w.size.Load())
			}
		}
		switch {
		case errors.Is(err, syscall.EDQUOT):
			w.edquot.Add(1)
			if !w.retryEDQUOT {
				return
			}
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
			continue
		case err != nil:
			w.err = err
			return
		}
		if w.pace > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(w.pace):
			}
		}
	}
}

// clWriters starts per node one writer of each kind in kinds, on files
// prefix-<node>-<kind> of the folder name's view.
func clWriters(ctx context.Context, nodes []*clNode, name string, kinds []string, setup func(*clWriter)) ([]*clWriter, *sync.WaitGroup) {
	var ws []*clWriter
	var wg sync.WaitGroup
	for _, n := range nodes {
		for _, k := range kinds {
			w := &clWriter{node: n.id, kind: k, path: filepath.Join(n.view(name), fmt.Sprintf("w-%s-%s", n.id, k)), chunk: 256 << 10}
			setup(w)
			ws = append(ws, w)
			wg.Add(1)
			go func() {
				defer wg.Done()
				w.run(ctx)
			}()
		}
	}
	return ws, &wg
}

// clWaitUsed waits until `quota-scope get` on every node shows want.
func clWaitUsed(t *testing.T, nodes []*clNode, want int64, within time.Duration) {
	t.Helper()
	for _, n := range nodes {
		var got int64
		clWait(t, within, fmt.Sprintf("quota-scope get on %s shows %d", n.id, want), func() bool {
			got = n.clUsed(t)
			return got == want
		})
	}
}

// TestClusterQuotaFill: a 100 MiB scope, 4 writers per node (append,
// pwrite past the end, fallocate, truncate up) on three nodes: the
// volume never holds more than the limit and ends at exactly it, every
// failure is EDQUOT, and every node shows the limit as the usage. Then a
// file written through node1 is removed through node2 (which never
// touched it): its bytes are credited on every node.
func TestClusterQuotaFill(t *testing.T) {
	// Writers wait for room others give back; on a loaded machine that
	// may take longer than the default wait.
	_, vol, nodes := clStart(t, 3, "--quota-wait", "20s")
	n1, n2 := nodes[0], nodes[1]
	dir := clFolder(t, n1, vol, "fill")
	clSetLimit(t, n1, "100MiB")
	for _, n := range nodes {
		clWait(t, 5*time.Second, "the view on "+n.id, func() bool { return clExists(n.view("fill")) })
	}

	smp := clSample(t, dir)
	start := time.Now()
	ws, wg := clWriters(context.Background(), nodes, "fill", []string{wAppend, wPwrite, wFalloc, wTruncate}, func(*clWriter) {})
	wg.Wait()
	took := time.Since(start)
	smp.end()
	for _, w := range ws {
		if w.err != nil {
			t.Errorf("%s %s: %v (every failure must be EDQUOT)", w.node, w.kind, w.err)
		}
		if w.edquot.Load() != 1 {
			t.Errorf("%s %s ended without EDQUOT", w.node, w.kind)
		}
	}
	final := clTruth(t, dir)
	t.Logf("12 writers on 3 nodes filled the scope in %v; %d samples, largest %d", took.Round(time.Millisecond), smp.samples.Load(), smp.max.Load())
	if m := smp.max.Load(); m > clLimit {
		t.Errorf("the volume held %d bytes at some point; the limit is %d", m, clLimit)
	}
	if final != clLimit {
		t.Errorf("the volume holds %d bytes after the writers stopped; want exactly %d", final, clLimit)
	}
	clWaitUsed(t, nodes, final, 5*time.Second)

	// Removal through a node that never touched the file.
	victim := filepath.Join(n2.view("fill"), "w-node1-append")
	if err := os.Remove(victim); err != nil {
		t.Fatal(err)
	}
	after := clTruth(t, dir)
	if after >= final {
		t.Fatalf("removing %s freed nothing on the volume", victim)
	}
	clWaitUsed(t, nodes, after, 5*time.Second)
}

// TestClusterQuotaKilledNode: node3 is killed (SIGKILL) mid-write; the
// other two keep writing. Once node3's lease expired a survivor settles
// what it wrote and its unused grant goes back to the pool: the survivors
// fill the scope to exactly its limit and show the volume's figure to the
// byte. Restarted, node3 shows the same figure (nothing counted twice).
func TestClusterQuotaKilledNode(t *testing.T) {
	// The survivors' writers wait for node3's grant (lease TTL plus the
	// settlement) rather than get EDQUOT while it is held.
	_, vol, nodes := clStart(t, 3, "--quota-wait", "15s")
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	dir := clFolder(t, n1, vol, "kill")
	clSetLimit(t, n1, "100MiB")
	for _, n := range nodes {
		clWait(t, 5*time.Second, "the view on "+n.id, func() bool { return clExists(n.view("kill")) })
	}
	smp := clSample(t, dir)
	ws, wg := clWriters(context.Background(), nodes, "kill", []string{wAppend, wPwrite}, func(w *clWriter) {
		w.chunk, w.pace = 64<<10, 10*time.Millisecond
	})
	clWait(t, 30*time.Second, "a fifth of the scope written", func() bool { return smp.last.Load() >= clLimit/5 })
	n3.Kill()
	killedAt := smp.last.Load()
	survivorsAt := map[string]int64{}
	for _, w := range ws {
		survivorsAt[w.node+w.kind] = w.size.Load()
	}
	wg.Wait()
	smp.end()
	for _, w := range ws {
		if w.node == n3.id {
			continue // cut off by the kill
		}
		if w.err != nil || w.edquot.Load() != 1 {
			t.Errorf("%s %s: %v, EDQUOT %d times (want one EDQUOT at the end)", w.node, w.kind, w.err, w.edquot.Load())
		}
		if w.size.Load() <= survivorsAt[w.node+w.kind] {
			t.Errorf("%s %s wrote nothing after node3 was killed", w.node, w.kind)
		}
	}
	final := clTruth(t, dir)
	t.Logf("node3 killed at %d bytes on the volume; the survivors filled it to %d (largest sample %d)", killedAt, final, smp.max.Load())
	if m := smp.max.Load(); m > clLimit {
		t.Errorf("the volume held %d bytes at some point; the limit is %d", m, clLimit)
	}
	if final != clLimit {
		t.Errorf("the survivors filled the volume to %d; want exactly %d (node3's unused grant back in the pool)", final, clLimit)
	}
	clWaitUsed(t, []*clNode{n1, n2}, final, 5*time.Second)

	// A cluster check agrees on the bytes. (Creates node3 made and had
	// not settled when it died are not seen by a survivor: its next run
	// settles them, see below.)
	var chk api.QuotaCheck
	r := n2.CLI("--json", "quota-scope", "check", "local", clUser, "-t", "user")
	if err := json.Unmarshal([]byte(r.Stdout), &chk); err != nil {
		t.Fatalf("cluster check before node3's restart: %s (%v)", r, err)
	}
	if len(chk.Folders) != 1 || chk.Folders[0].LedgerBytes != final || chk.Folders[0].DiskBytes != final {
		t.Errorf("cluster check before node3's restart: %+v", chk.Folders)
	}
	n3.Start()
	clWaitUsed(t, nodes, final, 10*time.Second)
	// Twice the settlement interval later, still nothing counted twice,
	// and a check finds bytes and inodes as on the volume.
	time.Sleep(time.Second)
	clWaitUsed(t, nodes, final, time.Second)
	if r := n1.CLI("quota-scope", "check", "local", clUser, "-t", "user"); r.Code != 0 {
		t.Errorf("cluster check after node3's restart: %s", r)
	}
}

// TestClusterQuotaEtcdOutage: etcd is stopped for 10 s while writers on
// every node write and fsync: nothing overshoots, every fsynced byte is
// on the volume as written, and the writers fill the scope to exactly its
// limit once etcd is back.
func TestClusterQuotaEtcdOutage(t *testing.T) {
	srv, vol, nodes := clStart(t, 3, "--quota-wait", "2s")
	n1 := nodes[0]
	dir := clFolder(t, n1, vol, "outage")
	clSetLimit(t, n1, "100MiB")
	for _, n := range nodes {
		clWait(t, 5*time.Second, "the view on "+n.id, func() bool { return clExists(n.view("outage")) })
	}
	smp := clSample(t, dir)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ws, wg := clWriters(ctx, nodes, "outage", []string{wAppend, wPwrite}, func(w *clWriter) {
		w.chunk, w.pace, w.verify, w.retryEDQUOT = 64<<10, 15*time.Millisecond, true, true
	})
	clWait(t, 30*time.Second, "a sixth of the scope written", func() bool { return smp.last.Load() >= clLimit/6 })
	srv.Stop()
	stoppedAt := smp.last.Load()
	time.Sleep(10 * time.Second)
	duringOutage := smp.last.Load()
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	clWait(t, 60*time.Second, "the scope full after etcd came back", func() bool { return smp.last.Load() == clLimit })
	cancel()
	wg.Wait()
	smp.end()
	t.Logf("etcd stopped at %d bytes on the volume, %d when it came back, full %v later", stoppedAt, duringOutage, time.Since(back).Round(time.Millisecond))
	if m := smp.max.Load(); m > clLimit {
		t.Errorf("the volume held %d bytes at some point; the limit is %d", m, clLimit)
	}
	if duringOutage >= clLimit {
		t.Errorf("the scope filled during the outage: the test did not see writes resume")
	}
	for _, w := range ws {
		if w.err != nil {
			t.Errorf("%s %s: %v (only EDQUOT may fail)", w.node, w.kind, w.err)
		}
		// What fsync confirmed is on the volume, as written.
		p := filepath.Join(dir, filepath.Base(w.path))
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		acked := w.acked.Load()
		if int64(len(b)) < acked {
			t.Errorf("%s: %d bytes on the volume, %d were fsynced", p, len(b), acked)
			continue
		}
		want := make([]byte, acked)
		for i := range want {
			want[i] = clPattern(w.seed(), int64(i))
		}
		if !bytes.Equal(b[:acked], want) {
			t.Errorf("%s: the fsynced bytes differ from what was written", p)
		}
	}
	clWaitUsed(t, nodes, clTruth(t, dir), 10*time.Second)
}

// TestClusterQuotaOneFile: two nodes write one file at once through a
// cluster session (one session published on both). Each charges growth against its
// own view of the size, so the cluster figure, once settled, is never
// below what the volume holds; when the writers close the file, the
// figure is exact. A shrink by one of them while the other holds the
// file is withheld, not applied, until then. The node list shows the
// grants of the two writing nodes.
func TestClusterQuotaOneFile(t *testing.T) {
	_, vol, nodes := clStart(t, 3)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	dir := clFolder(t, n1, vol, "shared")
	clSetLimit(t, n1, "1GiB")
	// A cluster session: one session id published on node1 and node2,
	// its containers writing through the session's mounts.
	var files []*os.File
	for _, n := range []*clNode{n1, n2} {
		clWait(t, 5*time.Second, "the view on "+n.id, func() bool { return clExists(n.view("shared")) })
		var s api.Session
		n.JSON(&s, "mount", "publish", "job-w", "--user", clUser, "shared")
		if len(s.Mounts) != 1 {
			t.Fatalf("publish on %s: %+v", n.id, s)
		}
		f, err := os.OpenFile(filepath.Join(s.Mounts[0].HostPath, "one"), os.O_WRONLY|os.O_CREATE, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	const block = 1 << 20
	buf := bytes.Repeat([]byte{'x'}, block)
	settledAbove := func(what string) {
		t.Helper()
		truth := clTruth(t, dir)
		for _, n := range []*clNode{n1, n2, n3} {
			var got int64
			clWait(t, 5*time.Second, fmt.Sprintf("%s: the figure on %s settles at or above the volume's %d", what, n.id, truth), func() bool {
				got = n.clUsed(t)
				return got >= truth
			})
			t.Logf("%s: %s shows %d, the volume holds %d", what, n.id, got, truth)
		}
	}
	for round := 0; round < 4; round++ {
		var wg sync.WaitGroup
		for i, f := range files {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := f.WriteAt(buf, int64(2*round+i)*block); err != nil {
					t.Errorf("node%d writing block %d: %v", i+1, 2*round+i, err)
				}
			}()
		}
		wg.Wait()
		settledAbove(fmt.Sprintf("round %d", round))
	}
	var ns []api.Node
	n3.JSON(&ns, "node", "list")
	for _, n := range ns {
		if has := len(n.Grants) > 0; has != (n.ID != n3.id) {
			t.Errorf("node list: %s has grants %+v", n.ID, n.Grants)
		}
	}
	if out := n3.OK("node", "list").Stdout; !bytes.Contains([]byte(out), []byte("local user:"+clUser)) {
		t.Errorf("node list shows no grant:\n%s", out)
	}
	if err := files[1].Truncate(3 * block); err != nil {
		t.Fatal(err)
	}
	settledAbove("after node2 shrank the file node1 holds")
	for _, f := range files {
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	files = nil
	truth := clTruth(t, dir)
	if want := 3*block + dqSize(t, dir); truth != want { // the folder root is charged too
		t.Fatalf("the volume holds %d bytes; want %d", truth, want)
	}
	clWaitUsed(t, nodes, truth, 10*time.Second)
}

// TestClusterQuotaCheckRepair: a file written on the volume behind the
// daemons' back is not in the cluster figure; `quota-scope check
// --repair` through node2 corrects it with one walk while node1 keeps
// writing, and every node then shows the volume's figure.
func TestClusterQuotaCheckRepair(t *testing.T) {
	_, vol, nodes := clStart(t, 3)
	n1, n2 := nodes[0], nodes[1]
	dir := clFolder(t, n1, vol, "chk")
	clSetLimit(t, n1, "1GiB")
	clWait(t, 5*time.Second, "the view on node1", func() bool { return clExists(n1.view("chk")) })
	if err := os.WriteFile(filepath.Join(dir, "behind"), make([]byte, 3<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ws, wg := clWriters(ctx, []*clNode{n1}, "chk", []string{wAppend}, func(w *clWriter) {
		w.chunk, w.pace = 64<<10, 20*time.Millisecond
	})
	clWait(t, 10*time.Second, "node1 writing", func() bool { return ws[0].size.Load() > 1<<20 })
	var rep api.QuotaCheck
	n2.JSON(&rep, "quota-scope", "check", "local", clUser, "-t", "user", "--repair")
	cancel()
	wg.Wait()
	if ws[0].err != nil {
		t.Errorf("node1's writer: %v", ws[0].err)
	}
	if !rep.Drift || !rep.Repaired || len(rep.Folders) != 1 || rep.Folders[0].DiskBytes-rep.Folders[0].LedgerBytes != 3<<20 {
		t.Errorf("check --repair through node2: %+v", rep)
	}
	clWaitUsed(t, nodes, clTruth(t, dir), 5*time.Second)
	if r := nodes[2].CLI("quota-scope", "check", "local", clUser, "-t", "user"); r.Code != 0 {
		t.Errorf("a check through node3 after the repair: %s", r)
	}
}
