package grants

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const limit100 = 100 << 20

// sampler sums the real file sizes of the volume until stopped and
// reports the highest sum seen.
func (cl *cluster) sampler() (stop func() int64) {
	var hi atomic.Int64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			if v := cl.volumeBytes(); v > hi.Load() {
				hi.Store(v)
			}
			select {
			case <-done:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	return func() int64 {
		close(done)
		wg.Wait()
		return hi.Load()
	}
}

// fillWriters starts 4 writers on node n, each on its own file in folder,
// until the quota refuses them: append, pwrite past EOF, fallocate growth
// (ReserveExact), truncate up. Refusals other than ErrExceeded go to errs.
func fillWriters(n *node, folder string, wg *sync.WaitGroup, errs chan<- error) {
	kinds := []string{"append", "pwrite", "fallocate", "truncate"}
	for i, kind := range kinds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := n.create(folder, fmt.Sprintf("%s-%d-%s", n.name, i, kind))
			if err != nil {
				errs <- fmt.Errorf("%s %s create: %w", n.name, kind, err)
				return
			}
			defer f.close()
			for {
				var err error
				switch kind {
				case "append":
					_, err = f.append(1 << 20)
				case "pwrite":
					_, err = f.pwrite(f.size+4096, 256<<10)
				case "fallocate":
					err = f.fallocate(f.size + 768<<10)
				case "truncate":
					err = f.resize(f.size + 512<<10)
				}
				if err != nil {
					if !isExceeded(err) {
						errs <- fmt.Errorf("%s %s: %w", n.name, kind, err)
					}
					return
				}
			}
		}()
	}
}

// TestFillExactly: three nodes, four writers each, one 100 MiB scope: the
// volume never holds more than the limit and ends holding exactly it;
// every refusal is EDQUOT; every node then shows the limit as usage, and
// no revision of the scope record broke settled + grants <= limit.
func TestFillExactly(t *testing.T) {
	cl := newCluster(t, 3, nil)
	cl.setLimit(limit100, 0)
	stop := cl.sampler()
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for _, n := range cl.nodes {
		fillWriters(n, "f1", &wg, errs)
	}
	wg.Wait()
	hi := stop()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if hi > limit100 {
		t.Errorf("volume held %d bytes at some point, limit %d", hi, limit100)
	}
	if got := cl.volumeBytes(); got != limit100 {
		t.Errorf("volume holds %d bytes after the writers stopped, want exactly %d", got, limit100)
	}
	cl.waitSettled(limit100, 10*time.Second)
	// The folder's figure is the scope's: a settlement sent again after a
	// conflict must not write a stale figure of the folder.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, n := range cl.nodes {
		if u, err := n.c.FolderUsage(ctx, cl.s, "f1"); err != nil || u.Used != limit100 {
			t.Errorf("%s: folder figure %d (%v); want %d, the scope's", n.name, u.Used, err, limit100)
		}
	}
	var conflicts int64
	for _, n := range cl.nodes {
		conflicts += n.c.Stats().Conflicts[cl.s]
	}
	t.Logf("revisions checked: %d; settlement conflicts: %d", cl.invariant(), conflicts)
	for _, n := range cl.nodes {
		t.Logf("%s: %d transactions", n.name, n.c.Stats().Txns[cl.s])
	}
}
