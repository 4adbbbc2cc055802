package grants

import (
	"testing"
	"time"
)

// TestBasicSettle: one node writes within a limit; the store's settled
// figure and every node's usage reach the truth.
func TestBasicSettle(t *testing.T) {
	cl := newCluster(t, 2, nil)
	cl.setLimit(100<<20, 0)
	a := cl.nodes[0]
	f, err := a.create("f1", "a")
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if _, err := f.append(1 << 20); err != nil {
			t.Fatal(err)
		}
	}
	cl.waitSettled(10<<20, 5*time.Second)
	f.close()
	b := cl.nodes[1]
	g, err := b.open("f1", "a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.append(1 << 20); err != nil {
		t.Fatal(err)
	}
	g.close()
	cl.waitSettled(11<<20, 5*time.Second)
	if err := b.remove("f1", "a"); err != nil {
		t.Fatal(err)
	}
	cl.waitSettled(0, 5*time.Second)
	t.Logf("revisions checked: %d", cl.invariant())
}
