package etcdstore_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vfolder/vfolder/internal/testutil/etcdtest"
	"github.com/vfolder/vfolder/meta"
	"github.com/vfolder/vfolder/meta/metatest"
)

// The benchmarks run against a private local etcd (one member, data on
// the test's temporary directory), so they measure the store's round
// trips and etcd's commit path on this machine, not a network.

func opsPerSec(b *testing.B, n int64) {
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "ops/s")
}

// BenchmarkCreateFolder creates folders one after the other (one owner:
// each create reads and writes the owner's count key).
func BenchmarkCreateFolder(b *testing.B) {
	srv := etcdtest.Start(b)
	s := open(b, srv, newPrefix(), 0)
	ctx := b.Context()
	var n int64
	for b.Loop() {
		if err := s.CreateFolder(ctx, metatest.NewFolder(metatest.User(1), "v", fmt.Sprint("f", n)), 0); err != nil {
			b.Fatal(err)
		}
		n++
	}
	opsPerSec(b, n)
}

// BenchmarkCreateFolderParallel creates folders from concurrent callers:
// "owners" gives each caller an owner of its own, "one-owner" makes them
// contend for one owner's count key (compare-and-swap retries).
func BenchmarkCreateFolderParallel(b *testing.B) {
	for _, shared := range []bool{false, true} {
		name := "owners"
		if shared {
			name = "one-owner"
		}
		b.Run(name, func(b *testing.B) {
			srv := etcdtest.Start(b)
			s := open(b, srv, newPrefix(), 0)
			ctx := b.Context()
			var n, callers atomic.Int64
			b.SetParallelism(4)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				owner := metatest.User(int(callers.Add(1)))
				if shared {
					owner = metatest.User(0)
				}
				for pb.Next() {
					if err := s.CreateFolder(ctx, metatest.NewFolder(owner, "v", fmt.Sprint("f", n.Add(1))), 0); err != nil {
						b.Error(err)
						return
					}
				}
			})
			opsPerSec(b, n.Load())
		})
	}
}

// BenchmarkGetFolder reads folders by id (a linearizable read each) out
// of 1000.
func BenchmarkGetFolder(b *testing.B) {
	srv := etcdtest.Start(b)
	s := open(b, srv, newPrefix(), 0)
	ctx := b.Context()
	ids := make([]string, 1000)
	for i := range ids {
		f := metatest.NewFolder(metatest.User(i%10), "v", fmt.Sprint("f", i))
		if err := s.CreateFolder(ctx, f, 0); err != nil {
			b.Fatal(err)
		}
		ids[i] = f.ID
	}
	var n int64
	for b.Loop() {
		if _, err := s.GetFolder(ctx, ids[rand.IntN(len(ids))]); err != nil {
			b.Fatal(err)
		}
		n++
	}
	opsPerSec(b, n)
}

// BenchmarkWatchLatency measures how long after a change through one
// store (one node) starts the other store's watch delivers it (the change's
// own commit included): p50 and max in milliseconds, the figure behind
// "every node in step within 1 s".
func BenchmarkWatchLatency(b *testing.B) {
	srv := etcdtest.Start(b)
	p := newPrefix()
	w, r := open(b, srv, p, 0), open(b, srv, p, 0)
	ctx := b.Context()
	f := metatest.NewFolder(metatest.User(1), "v", "watched")
	if err := w.CreateFolder(ctx, f, 0); err != nil {
		b.Fatal(err)
	}
	snap, err := r.Load(ctx)
	if err != nil {
		b.Fatal(err)
	}
	ch := r.Watch(ctx, snap.Rev)
	var lat []time.Duration
	for b.Loop() {
		start := time.Now()
		if _, err := w.UpdateFolder(ctx, f.ID, func(g *meta.Folder) error { g.Cloneable = !g.Cloneable; return nil }); err != nil {
			b.Fatal(err)
		}
		select {
		case ev, ok := <-ch:
			if !ok || ev.Kind != meta.EventFolder {
				b.Fatalf("event %+v (open %v)", ev, ok)
			}
		case <-time.After(15 * time.Second):
			b.Fatal("no event within 15s")
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(lat[len(lat)/2]), "event-ms-p50")
	b.ReportMetric(ms(lat[len(lat)-1]), "event-ms-max")
}
