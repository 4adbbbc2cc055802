package grants

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/vfolder/vfolder/quota"
)

// TestCheckRepairsWithWriters: files changed on storage behind the
// daemons' back make the cluster figure wrong both ways; one check walks
// the folder and corrects it while node2 keeps creating, growing and
// removing files in the same folder. After the writers stop, the figure
// equals the volume to the byte.
func TestCheckRepairsWithWriters(t *testing.T) {
	cl := newCluster(t, 3, nil)
	cl.setLimit(limit100, 0)
	n1, n2 := cl.nodes[0], cl.nodes[1]
	for _, name := range []string{"a", "b", "c"} {
		f, err := n1.create("f1", name)
		if err != nil {
			t.Fatal(err)
		}
		mustWrite(t, f, 2<<20)
		f.close()
	}
	cl.waitSettled(6<<20, 5*time.Second)
	dir := cl.folder("f1")
	// Drift: a file appears, another is cut, behind the daemons' back.
	if err := os.WriteFile(filepath.Join(dir, "behind"), make([]byte, 3<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(dir, "b"), 1<<20); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	root, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	folders := []quota.FolderRoot{{FolderID: "f1", Dir: root}}
	// The folder root is charged its size as a directory (no inode); the
	// harness's nodes make files only, so only the check finds it.
	rootSt, err := root.Stat()
	if err != nil {
		t.Fatal(err)
	}
	rootBytes := rootSt.Size()

	rep, err := n1.c.Check(ctx, cl.s, folders, false)
	if err != nil {
		t.Fatal(err)
	}
	if db, dn := rep.Folders[0].Diff(); db != 2<<20+rootBytes || dn != 1 || rep.Repaired {
		t.Fatalf("check: %+v, want +2 MiB, +%d bytes of the folder root and +1 inode, not repaired", rep.Folders[0], rootBytes)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // node2 writes on in the same folder
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			name := "w" + itoa(int64(i))
			f, err := n2.create("f1", name)
			if err != nil {
				t.Error(err)
				return
			}
			for range 4 {
				mustWrite(t, f, 64<<10)
			}
			f.close()
			if i%3 == 2 {
				if err := n2.remove("f1", "w"+itoa(int64(i-1))); err != nil {
					t.Error(err)
					return
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	time.Sleep(300 * time.Millisecond)
	rep, err = n1.c.Check(ctx, cl.s, folders, true)
	if err != nil {
		t.Fatal(err)
	}
	if fc := rep.Folders[0]; fc.Busy || !rep.Repaired {
		t.Fatalf("check with writers: %+v", rep.Folders[0])
	}
	t.Logf("repaired: %+v", rep.Folders[0])
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	cl.waitSettled(cl.volumeBytes()+rootBytes, 10*time.Second)
	st := cl.state()
	rep, err = n1.c.Check(ctx, cl.s, folders, false)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Drift() {
		t.Fatalf("drift after repair: %+v (settled inodes %d)", rep.Folders[0], st.SettledInodes)
	}
	cl.invariant()
}
