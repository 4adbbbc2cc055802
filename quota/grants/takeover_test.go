package grants

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// lazy makes node3 settle only when it must ask for room.
func lazy(c *Config) {
	if c.Node == "node3" {
		c.SettleInterval = time.Hour
		c.IdleReturn = time.Hour
		c.MinUnit = 16 << 20
	}
}

// TestDeadNodeSettledBySurvivor: node3 writes into files it holds open
// and dies without settling (its lease revoked, as its expiry would). A
// survivor settles its holds from storage: the cluster figure equals the
// volume, and node3's share (its grant) is gone from the record, back in
// the pool. node3 then restarts on its ledger and does not count again
// what the survivor settled.
func TestDeadNodeSettledBySurvivor(t *testing.T) {
	cl := newCluster(t, 3, lazy)
	cl.setLimit(limit100, 0)
	n1, n3 := cl.nodes[0], cl.nodes[2]
	a, err := n1.create("f1", "a")
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, a, 10<<20)
	a.close()
	cl.waitSettled(10<<20, 5*time.Second)

	b, err := n3.create("f1", "b")
	if err != nil {
		t.Fatal(err)
	}
	a3, err := n3.open("f1", "a") // another node's file: charged from its size now
	if err != nil {
		t.Fatal(err)
	}
	for range 6 {
		mustWrite(t, b, 1<<20)
		mustWrite(t, a3, 512<<10)
	}
	if err := a3.resize(a3.size + 100000); err != nil {
		t.Fatal(err)
	}
	_, _, ub, _ := n3.m.View(cl.s)
	if ub <= 0 {
		t.Fatalf("node3 settled everything before dying (unsettled %d): the test proves nothing", ub)
	}
	st := cl.state()
	if st.Grants["node3"].Bytes <= 0 {
		t.Fatalf("node3 holds no grant: %+v", st)
	}
	t.Logf("node3 dies with %d bytes unsettled, grant %d", ub, st.Grants["node3"].Bytes)
	n3.crash()

	truth := cl.volumeBytes()
	cl.waitSettled(truth, 15*time.Second)
	st = cl.state()
	if _, ok := st.Grants["node3"]; ok {
		t.Fatalf("node3's share is still in the record: %+v", st)
	}
	var granted int64
	for _, g := range st.Grants {
		granted += g.Bytes
	}
	if st.Settled+granted > st.Limit {
		t.Fatalf("settled %d + grants %d > limit %d", st.Settled, granted, st.Limit)
	}

	// node3 comes back on its ledger: what the survivor settled is not
	// counted again, and it writes on.
	cl.cfg = nil
	r3 := cl.start("node3", n3.dir)
	cl.nodes[2] = r3
	cl.waitSettled(truth, 10*time.Second)
	c, err := r3.create("f1", "c")
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, c, 1<<20)
	c.close()
	cl.waitSettled(truth+1<<20, 10*time.Second)
	if got := cl.volumeBytes(); got != truth+1<<20 {
		t.Fatalf("volume %d", got)
	}
	cl.invariant()
}

// TestDeadNodeLeaseExpires: the same with the lease left to expire, and a
// survivor that itself writes meanwhile.
func TestDeadNodeLeaseExpires(t *testing.T) {
	cl := newCluster(t, 2, func(c *Config) {
		lazy(c)
		if c.Node == "node2" {
			c.SettleInterval = time.Hour
			c.IdleReturn = time.Hour
		}
	})
	cl.setLimit(limit100, 0)
	n1, n2 := cl.nodes[0], cl.nodes[1]
	f, err := n2.create("f1", "x")
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, f, 3<<20)
	if err := f.fallocate(f.size + 1<<20); err != nil {
		t.Fatal(err)
	}
	// Dies without revoking: the lease expires after its TTL.
	c := n2.c
	n2.dead = true
	c.closed.Store(true)
	c.cancel()
	c.wg.Wait()
	n2.m.Close()
	n2.db.Close()
	g, err := n1.create("f1", "y")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		mustWrite(t, g, 256<<10)
		if _, ok := cl.state().Grants["node2"]; !ok {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	g.close()
	cl.waitSettled(cl.volumeBytes(), 15*time.Second)
	if _, ok := cl.state().Grants["node2"]; ok {
		t.Fatal("node2's share survived its lease")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := n1.cli.Get(ctx, keys{"/vfolder/quota/"}.takeovers("node2"), prefixOpt())
	if err != nil || len(resp.Kvs) == 0 {
		t.Fatalf("no takeover record for node2: %v", err)
	}
	_ = filepath.Join
}

func mustWrite(t testing.TB, f *file, n int64) {
	t.Helper()
	w, err := f.append(n)
	if err != nil || w != n {
		t.Fatalf("append %d: wrote %d, %v", n, w, err)
	}
}

// TestLeaseLostWhileAlive: a node's lease is revoked while the node runs
// (as when it is cut off from the store longer than its TTL). It must
// stop growing at once; a survivor settles its holds; the node rejoins,
// counts what the survivor settled as settled, and writes on. The figure
// ends equal to the volume.
func TestLeaseLostWhileAlive(t *testing.T) {
	cl := newCluster(t, 2, lazy)
	cl.setLimit(limit100, 0)
	n1 := cl.nodes[0]
	n2 := cl.nodes[1]
	f, err := n2.create("f1", "x")
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, f, 2<<20)
	g, err := n1.create("f1", "y")
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, g, 1<<20)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := n2.cli.Revoke(ctx, clientv3.LeaseID(n2.c.lease.Load())); err != nil {
		t.Fatal(err)
	}
	// n2 keeps its file open and goes on writing: until it has rejoined it
	// must not spend the grant the survivor may take.
	deadline := time.Now().Add(15 * time.Second)
	var rejoined bool
	for time.Now().Before(deadline) {
		if _, err := f.append(64 << 10); err != nil && !isExceeded(err) {
			t.Fatal(err)
		}
		mustWrite(t, g, 64<<10)
		st := cl.state()
		if sh, ok := st.Grants["node2"]; ok && sh.Seq > 0 && time.Since(deadline.Add(-15*time.Second)) > 2*time.Second {
			rejoined = true
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !rejoined {
		t.Fatal("node2 did not rejoin")
	}
	for range 10 {
		mustWrite(t, f, 64<<10)
	}
	f.close()
	g.close()
	cl.waitSettled(cl.volumeBytes(), 15*time.Second)
	cl.invariant()
}
