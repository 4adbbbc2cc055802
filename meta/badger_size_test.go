package meta

import (
	"fmt"
	"io/fs"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/rs/zerolog"
)

// BenchmarkBadgerMemTableSize commits ledger-like transactions (64 small
// records each, as the quota commit loop writes them) with several
// memtable sizes, and reports the disk the database held at the end
// (allocated blocks, the sparse memtable logs counted as allocated).
func BenchmarkBadgerMemTableSize(b *testing.B) {
	for _, mt := range []int64{1 << 20, 4 << 20, 16 << 20, 64 << 20} {
		b.Run(fmt.Sprintf("memtable=%dMiB", mt>>20), func(b *testing.B) {
			dir := b.TempDir()
			db, err := badger.Open(badgerOptions(dir, zerolog.Nop()).WithMemTableSize(mt))
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			val := make([]byte, 24)
			b.SetBytes(64 * (64 + int64(len(val))))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				err := db.Update(func(txn *badger.Txn) error {
					for j := 0; j < 64; j++ {
						k := fmt.Sprintf("q/i/local/user:%032x/%032x/%016x", i%97, j, i*64+j)
						if err := txn.Set([]byte(k), val); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(allocated(b, dir))/(1<<20), "MiB-on-disk")
		})
	}
}

// allocated sums the allocated blocks of the files below dir.
func allocated(b *testing.B, dir string) int64 {
	var n int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err == nil {
			n += st.Blocks * 512
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return n
}
