package grants

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkClusterWrite: writers on 1 or 3 nodes append to their own
// files in one scope, far from its limit, with the default grant sizing
// and settlement interval (each file is cut back to 0 at 64 MiB, so the
// volume stays small). It reports the aggregate throughput (MB/s) and the
// store transactions per second the scope costs (txn/s: settlements, grant
// requests, hold registrations, all nodes together).
func BenchmarkClusterWrite(b *testing.B) {
	for _, nodes := range []int{1, 3} {
		b.Run(fmt.Sprintf("nodes=%d", nodes), func(b *testing.B) {
			cl := newCluster(b, nodes, func(c *Config) {
				c.SettleInterval = 0 // defaults, as the daemon runs
				c.IdleReturn = 0
				c.MinUnit = 0
				c.Wait = 0
				c.LeaseTTL = 0
			})
			cl.setLimit(1<<50, 0)
			const chunk = 256 << 10
			const writersPerNode = 2
			var files []*file
			for _, n := range cl.nodes {
				for i := range writersPerNode {
					f, err := n.create("f1", fmt.Sprintf("%s-%d", n.name, i))
					if err != nil {
						b.Fatal(err)
					}
					files = append(files, f)
				}
			}
			txns0 := cl.txns()
			var next atomic.Int64
			b.SetBytes(chunk)
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for _, f := range files {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for next.Add(1) <= int64(b.N) {
						if f.size >= 64<<20 {
							if err := f.resize(0); err != nil {
								b.Error(err)
								return
							}
						}
						if w, err := f.append(chunk); err != nil || w != chunk {
							b.Errorf("append: %d %v", w, err)
							return
						}
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(cl.txns()-txns0)/elapsed.Seconds(), "txn/s")
			var asks, conflicts int64
			for _, n := range cl.nodes {
				st := n.c.Stats()
				asks += st.Asks[cl.s]
				conflicts += st.Conflicts[cl.s]
			}
			b.ReportMetric(float64(asks)/elapsed.Seconds(), "asks/s")
			b.ReportMetric(float64(conflicts)/elapsed.Seconds(), "conflicts/s")
			for _, f := range files {
				f.close()
			}
		})
	}
}

// txns is the transactions all live nodes sent on the scope so far.
func (cl *cluster) txns() int64 {
	var n int64
	for _, nd := range cl.nodes {
		if !nd.dead {
			n += nd.c.Stats().Txns[cl.s]
		}
	}
	return n
}
