package grants

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestInodeLimitAcrossNodes: an inode limit of 60 with creators on three
// nodes: exactly 60 objects are made (each file counts one), every
// refusal is EDQUOT.
func TestInodeLimitAcrossNodes(t *testing.T) {
	cl := newCluster(t, 3, nil)
	cl.setLimit(0, 60)
	var made atomic.Int64
	var wg sync.WaitGroup
	for _, n := range cl.nodes {
		for w := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					f, err := n.create("f1", fmt.Sprintf("%s-%d-%d", n.name, w, i))
					if err != nil {
						if !isExceeded(err) {
							t.Error(err)
						}
						return
					}
					f.close()
					made.Add(1)
				}
			}()
		}
	}
	wg.Wait()
	if made.Load() != 60 {
		t.Fatalf("%d files made, limit 60", made.Load())
	}
	deadline := time.Now().Add(10 * time.Second)
	for cl.state().SettledInodes != 60 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if st := cl.state(); st.SettledInodes != 60 {
		t.Fatalf("settled inodes %d", st.SettledInodes)
	}
}

// TestLowerLimit: a limit lowered below the usage blocks growth on every
// node; removals still work, and once the usage is below the new limit
// growth resumes up to exactly it. Nodes give their grants back.
func TestLowerLimit(t *testing.T) {
	cl := newCluster(t, 2, nil)
	cl.setLimit(limit100, 0)
	n1, n2 := cl.nodes[0], cl.nodes[1]
	for i := range 5 {
		f, err := n1.create("f1", fmt.Sprintf("a%d", i))
		if err != nil {
			t.Fatal(err)
		}
		mustWrite(t, f, 10<<20)
		f.close()
	}
	cl.waitSettled(50<<20, 5*time.Second)
	cl.setLimit(30<<20, 0)
	g, err := n2.create("f1", "b")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.append(1 << 20); !isExceeded(err) {
		t.Fatalf("growth above a lowered limit: %v", err)
	}
	for i := range 3 {
		if err := n2.remove("f1", fmt.Sprintf("a%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	cl.waitSettled(20<<20, 5*time.Second)
	var wrote int64
	for {
		w, err := g.append(1 << 20)
		wrote += w
		if err != nil {
			if !isExceeded(err) {
				t.Fatal(err)
			}
			break
		}
	}
	if wrote != 10<<20 {
		t.Fatalf("wrote %d after the removals, want the 10 MiB left", wrote)
	}
	g.close()
	cl.waitSettled(30<<20, 5*time.Second)
	cl.invariant()
}

// TestDropFolder: a purged folder's figure leaves the scope's; a late
// settlement of it is discarded.
func TestDropFolder(t *testing.T) {
	cl := newCluster(t, 2, lazy)
	cl.setLimit(limit100, 0)
	n1, n2 := cl.nodes[0], cl.nodes[1]
	f, err := n1.create("keep", "x")
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, f, 3<<20)
	f.close()
	g, err := n1.create("purge", "y")
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, g, 5<<20)
	g.close()
	cl.waitSettled(8<<20, 5*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n2.c.DropFolder(ctx, cl.s, "purge"); err != nil {
		t.Fatal(err)
	}
	if err := n1.m.DropFolder(cl.s, "purge"); err != nil {
		t.Fatal(err)
	}
	if st := cl.state(); st.Settled != 3<<20 {
		t.Fatalf("settled %d after the drop, want 3 MiB", st.Settled)
	}
	// A late settlement of the dropped folder is discarded.
	if err := n1.c.DropFolder(ctx, cl.s, "purge"); err != nil {
		t.Fatal(err)
	}
	if st := cl.state(); st.Settled != 3<<20 {
		t.Fatalf("settled %d after a second drop", st.Settled)
	}
}
