package testutil

import (
	"strings"
	"sync"
	"testing"
)

// TestSyncBuffer writes from several goroutines while reading: every write
// ends up whole in the buffer (run with -race to check the locking).
func TestSyncBuffer(t *testing.T) {
	var b SyncBuffer
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 100; j++ {
				if _, err := b.Write([]byte("x\n")); err != nil {
					t.Error(err)
				}
				_ = b.String()
			}
		}()
	}
	wg.Wait()
	if got := strings.Count(b.String(), "x\n"); got != 800 {
		t.Errorf("buffer holds %d writes; want 800", got)
	}
}
