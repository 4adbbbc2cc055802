package grants

import (
	"sync"
	"testing"
	"time"
)

// figure is the cluster figure: what the store settled plus what each
// live node has not settled yet. The nodes are read first: a settlement
// moves a change into the store before the node drops it from its
// unsettled part, so this order may count a change twice, never miss it.
func (cl *cluster) figure() int64 {
	var f int64
	for _, n := range cl.nodes {
		if !n.dead {
			_, _, ub, _ := n.m.View(cl.s)
			f += ub
		}
	}
	return f + cl.state().Settled
}

// TestTwoNodesOneFile: two nodes hold one file open and extend it at once
// (interleaved blocks past the end, as parallel writers of one output
// file do), then one truncates it and the other removes it while the
// first still holds it. Each node charges growth against the size it saw
// (so growth made by both is counted at least once, maybe twice), and
// withholds shrink credits while the other node holds the file; when the
// last of them lets go, the file's figure is set to what storage holds.
// The cluster figure is never below the truth and ends equal to it.
func TestTwoNodesOneFile(t *testing.T) {
	cl := newCluster(t, 2, nil)
	cl.setLimit(limit100, 0)
	n1, n2 := cl.nodes[0], cl.nodes[1]
	f1, err := n1.create("f1", "shared")
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, f1, 1<<20)
	f2, err := n2.open("f1", "shared")
	if err != nil {
		t.Fatal(err)
	}
	const block = 256 << 10
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var low []string
	var lowMu sync.Mutex
	wg.Add(1)
	go func() { // the figure is never below the truth
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			truth := cl.volumeBytes()
			if fig := cl.figure(); fig < truth {
				lowMu.Lock()
				low = append(low, itoa(fig)+" < "+itoa(truth))
				lowMu.Unlock()
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	var ww sync.WaitGroup
	for i, f := range []*file{f1, f2} {
		ww.Add(1)
		go func() {
			defer ww.Done()
			for k := range 40 {
				if k%2 != i {
					continue
				}
				off := int64(1<<20) + int64(k)*block
				if _, err := f.pwrite(off, block); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	ww.Wait()
	truth := cl.volumeBytes()
	if truth != 1<<20+40*block {
		t.Fatalf("file holds %d", truth)
	}
	f1.close()
	f2.close()
	cl.waitSettled(truth, 10*time.Second) // the last to let go set the figure to the truth

	// A truncate by node2 while node1 holds the file: node1 still believes
	// the old size, so its writes below it are not charged; the credit
	// for the truncate must wait until node1 lets go.
	h1, err := n1.open("f1", "shared")
	if err != nil {
		t.Fatal(err)
	}
	h2, err := n2.open("f1", "shared")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // both holds registered
	if err := h2.resize(0); err != nil {
		t.Fatal(err)
	}
	h2.close()
	for off := int64(0); off < truth; off += block {
		if _, err := h1.pwrite(off, block); err != nil { // inside node1's view: no reservation
			t.Fatal(err)
		}
	}
	time.Sleep(500 * time.Millisecond) // settlements
	if fig, now := cl.figure(), cl.volumeBytes(); fig < now || now != truth {
		t.Fatalf("figure %d, volume %d (want %d): a credit was given while another node held the file", fig, now, truth)
	}
	h1.close()
	cl.waitSettled(truth, 10*time.Second)

	// A removal by node2 while node1 holds the file open and writes on
	// (the volume no longer shows the file; its bytes go when node1 lets
	// go).
	g1, err := n1.open("f1", "shared")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // node1's hold registered
	if err := n2.remove("f1", "shared"); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, g1, 1<<20) // into the unlinked file
	time.Sleep(500 * time.Millisecond)
	if fig := cl.figure(); fig < 0 {
		t.Fatalf("figure %d", fig)
	}
	g1.close()
	cl.waitSettled(0, 10*time.Second)
	close(stop)
	wg.Wait()
	for _, l := range low {
		t.Errorf("cluster figure below the truth: %s", l)
	}
	cl.invariant()
}
