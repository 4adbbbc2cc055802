package grants

import (
	"context"
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

// TestFolderUsageAnyNode: a folder's cluster-wide figure on a node that
// never wrote to it.
func TestFolderUsageAnyNode(t *testing.T) {
	cl := newCluster(t, 2, nil)
	cl.setLimit(limit100, 0)
	f, err := cl.nodes[0].create("f1", "a")
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, f, 3<<20)
	f.close()
	cl.waitSettled(3<<20, 5*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	u, err := cl.nodes[1].c.FolderUsage(ctx, cl.s, "f1")
	if err != nil {
		t.Fatal(err)
	}
	if u.Used != 3<<20 || u.UsedInodes != 1 || u.Limit != limit100 {
		t.Fatalf("folder usage on the other node: %+v", u)
	}
}
