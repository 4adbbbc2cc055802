package quota

import (
	"sync/atomic"
	"testing"
	"time"
)

// benchFile returns a ledger with one held file of 1 MiB in a scope with
// a limit, the state of a file being rewritten through a FUSE view.
func benchFile(b *testing.B) (*Manager, ScopeKey, InodeKey) {
	m, _ := newLedger(b)
	s := testScope(b, 1)
	if err := m.SetLimit(s, 1<<40, 0); err != nil {
		b.Fatal(err)
	}
	k := InodeKey{Ino: 42}
	if err := m.OpenForWrite(s, "folder", k, 0, "file"); err != nil {
		b.Fatal(err)
	}
	_, r, err := m.Reserve(s, "folder", k, 0, 1<<20)
	if err != nil {
		b.Fatal(err)
	}
	r.Done(1 << 20)
	return m, s, k
}

// BenchmarkReserveDone is the hot path: a write within the charged size of
// a held file.
func BenchmarkReserveDone(b *testing.B) {
	m, s, k := benchFile(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		off := int64(i%256) * 4096
		g, r, err := m.Reserve(s, "folder", k, off, off+4096)
		if err != nil || g != off+4096 {
			b.Fatal(g, err)
		}
		r.Done(1 << 20)
	}
}

// BenchmarkReserveDoneParallel: writers on different files of one scope.
func BenchmarkReserveDoneParallel(b *testing.B) {
	m, s, _ := benchFile(b)
	var next atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		k := InodeKey{Ino: 1000 + next.Add(1)}
		if err := m.OpenForWrite(s, "folder", k, 0, ""); err != nil {
			b.Error(err)
			return
		}
		_, r, _ := m.Reserve(s, "folder", k, 0, 1<<20)
		r.Done(1 << 20)
		i := 0
		for pb.Next() {
			off := int64(i%256) * 4096
			_, r, err := m.Reserve(s, "folder", k, off, off+4096)
			if err != nil {
				b.Error(err)
				return
			}
			r.Done(1 << 20)
			i++
		}
	})
}

// BenchmarkReserveDoneAppend: every write grows the file (the charge moves
// and the commit loop writes the record every few milliseconds).
func BenchmarkReserveDoneAppend(b *testing.B) {
	m, s, k := benchFile(b)
	size := int64(1 << 20)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		g, r, err := m.Reserve(s, "folder", k, size, size+4096)
		if err != nil {
			b.Fatal(err)
		}
		size = g
		r.Done(size)
	}
}

// BenchmarkAppendStream: a stream of 1 MiB appends to a held file, one
// every 500µs (2 GiB/s), as a sequential write of a new file through a
// view sends them, with the inode records the commit loop writes
// meanwhile (records/op; ns/op is mostly the pause). "deferred" is the
// ledger as it runs; "every-round" commits the growing size in every
// round, as it does while a Flush is in progress.
func BenchmarkAppendStream(b *testing.B) {
	for _, mode := range []string{"deferred", "every-round"} {
		b.Run(mode, func(b *testing.B) {
			m, s, k := benchFile(b)
			if err := m.Flush(); err != nil { // the hold's mark is stored
				b.Fatal(err)
			}
			if mode == "every-round" {
				m.undeferring.Add(1)
			}
			var records atomic.Int64
			m.SetCommitObserver(func(_ time.Duration, n int) { records.Add(int64(n)) })
			size := int64(1 << 20)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				g, r, err := m.Reserve(s, "folder", k, size, size+1<<20)
				if err != nil {
					b.Fatal(err)
				}
				size = g
				r.Done(size)
				time.Sleep(500 * time.Microsecond)
			}
			b.StopTimer()
			b.ReportMetric(float64(records.Load())/float64(b.N), "records/op")
		})
	}
}

func BenchmarkUsage(b *testing.B) {
	m, s, _ := benchFile(b)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if u := m.Usage(s); u.Used != 1<<20 {
			b.Fatal(u)
		}
	}
}

// TestReserveDoneDoesNotAllocate pins the hot path's property that the
// benchmark shows.
func TestReserveDoneDoesNotAllocate(t *testing.T) {
	m, _ := newLedger(t)
	s := testScope(t, 1)
	k := InodeKey{Ino: 42}
	m.OpenForWrite(s, "folder", k, 0, "file")
	_, r, _ := m.Reserve(s, "folder", k, 0, 1<<20)
	r.Done(1 << 20)
	m.Flush()
	allocs := testing.AllocsPerRun(1000, func() {
		_, r, err := m.Reserve(s, "folder", k, 4096, 8192)
		if err != nil {
			t.Fatal(err)
		}
		r.Done(1 << 20)
		_ = m.Usage(s)
	})
	if allocs != 0 {
		t.Fatalf("Reserve+Done+Usage allocate %v times per call", allocs)
	}
}
