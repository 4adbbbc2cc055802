package grants

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// steady runs the four kinds of writers on node n at a modest rate until
// stop is closed. A refusal (EDQUOT) is counted and the writer retries a
// little later; any other error fails the test. Each writer checks at the
// end that its file holds every byte it was told was written.
func steady(t *testing.T, n *node, folder string, stop <-chan struct{}, wg *sync.WaitGroup, refused *atomic.Int64) {
	kinds := []string{"append", "pwrite", "fallocate", "truncate"}
	for i, kind := range kinds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := n.create(folder, fmt.Sprintf("%s-%d-%s", n.name, i, kind))
			for err != nil {
				if !isExceeded(err) {
					t.Errorf("%s create: %v", n.name, err)
					return
				}
				refused.Add(1)
				time.Sleep(50 * time.Millisecond)
				f, err = n.create(folder, fmt.Sprintf("%s-%d-%s", n.name, i, kind))
			}
			defer f.close()
			for {
				select {
				case <-stop:
					var st unix.Stat_t
					unix.Fstat(f.fd, &st)
					if st.Size != f.size {
						t.Errorf("%s %s: file holds %d bytes, %d were acknowledged", n.name, kind, st.Size, f.size)
					}
					return
				case <-time.After(20 * time.Millisecond):
				}
				var err error
				switch kind {
				case "append":
					_, err = f.append(32 << 10)
				case "pwrite":
					_, err = f.pwrite(f.size+4096, 16<<10)
				case "fallocate":
					err = f.fallocate(f.size + 24<<10)
				case "truncate":
					err = f.resize(f.size + 16<<10)
				}
				if err != nil {
					if !isExceeded(err) {
						t.Errorf("%s %s: %v", n.name, kind, err)
						return
					}
					refused.Add(1)
					time.Sleep(50 * time.Millisecond)
				}
			}
		}()
	}
}

func testOutageWith(t *testing.T, how string) {
	cl := newCluster(t, 3, func(c *Config) {
		c.LeaseTTL = 30 * time.Second // longer than the outage: grants stay usable
		c.Wait = 2 * time.Second
		c.CallTimeout = time.Second
	})
	cl.setLimit(limit100, 0)
	down, up := func() error { cl.etcd.Stop(); return nil }, cl.etcd.Restart
	if how == "pause" {
		down, up = cl.etcd.Pause, cl.etcd.Resume
	}
	hiStop := cl.sampler()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var refused atomic.Int64
	for _, n := range cl.nodes {
		steady(t, n, "f1", stop, &wg, &refused)
	}
	time.Sleep(2 * time.Second)
	before := cl.volumeBytes()
	if err := down(); err != nil {
		t.Fatal(err)
	}
	t.Logf("store down at %d bytes", before)
	time.Sleep(10 * time.Second)
	during := cl.volumeBytes()
	if err := up(); err != nil {
		t.Fatal(err)
	}
	t.Logf("store up at %d bytes (%d written during the outage, inside grants); %d refusals so far", during, during-before, refused.Load())
	if during <= before {
		t.Errorf("nothing was written during the outage (%d -> %d): writes inside grants must go on", before, during)
	}
	// Writes resume and fill the scope.
	deadline := time.Now().Add(60 * time.Second)
	for cl.volumeBytes() < limit100 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()
	hi := hiStop()
	if hi > limit100 {
		t.Errorf("volume held %d bytes at some point, limit %d", hi, limit100)
	}
	if got := cl.volumeBytes(); got != limit100 {
		t.Errorf("volume holds %d bytes at the end, want the limit %d", got, limit100)
	}
	cl.waitSettled(cl.volumeBytes(), 15*time.Second)
	cl.invariant()
}

// TestOutageStop: etcd stopped for 10 s mid-write and started again.
func TestOutageStop(t *testing.T) {
	testOutageWith(t, "stop")
}

// TestOutagePause: etcd paused (SIGSTOP, as a hung or partitioned member
// looks) for 10 s mid-write and resumed.
func TestOutagePause(t *testing.T) {
	testOutageWith(t, "pause")
}

// TestOutageLongerThanLease: with a 3 s lease, a 7 s outage: after the
// lease's margin the node grows nothing (a survivor could have taken its
// grant), and grows again once the store is back; nothing overshoots.
func TestOutageLongerThanLease(t *testing.T) {
	cl := newCluster(t, 2, func(c *Config) {
		c.LeaseTTL = 3 * time.Second
		c.Wait = time.Second
		c.CallTimeout = 500 * time.Millisecond
		c.MinUnit = 64 << 20 // grants outlast the outage
	})
	const limit = 1 << 30
	cl.setLimit(limit, 0)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var refused atomic.Int64
	for _, n := range cl.nodes {
		steady(t, n, "f1", stop, &wg, &refused)
	}
	time.Sleep(time.Second)
	cl.etcd.Stop()
	time.Sleep(4 * time.Second) // past the lease's margin
	frozen := cl.volumeBytes()
	time.Sleep(3 * time.Second)
	if after := cl.volumeBytes(); after != frozen {
		t.Errorf("the volume grew from %d to %d while the nodes could not confirm their leases", frozen, after)
	}
	if err := cl.etcd.Restart(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for cl.volumeBytes() <= frozen && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if cl.volumeBytes() <= frozen {
		t.Error("writes did not resume after the store came back")
	}
	close(stop)
	wg.Wait()
	if got := cl.volumeBytes(); got > limit {
		t.Errorf("volume %d over the limit", got)
	}
	cl.waitSettled(cl.volumeBytes(), 15*time.Second)
}
