package quota

import (
	"errors"
	"strings"
	"testing"
)

// TestHoldRoom: a hold is all or nothing, names the numbers when
// refused, keeps writers from the room it holds and gives it back once.
func TestHoldRoom(t *testing.T) {
	m, _ := newLedger(t)
	s := testScope(t, 41)
	if err := m.SetLimit(s, 1000, 10); err != nil {
		t.Fatal(err)
	}
	createFile(t, m, s, "f", ino(1))
	var size int64
	if _, err := write(t, m, s, "f", ino(1), &size, 0, 300); err != nil {
		t.Fatal(err)
	}
	_, err := m.HoldRoom(s, 701, 1)
	var ex *ExceededError
	if !errors.As(err, &ex) || !errors.Is(err, ErrExceeded) {
		t.Fatalf("hold beyond the limit: %v", err)
	}
	if ex.FreeBytes != 700 || ex.WantBytes != 701 || !strings.Contains(err.Error(), "needs 701 bytes, has 700 free") {
		t.Fatalf("refusal %+v: %v", ex, err)
	}
	if _, err := m.HoldRoom(s, 10, 10); !errors.Is(err, ErrExceeded) || !strings.Contains(err.Error(), "needs 10 inodes, has 9 free") {
		t.Fatalf("hold beyond the inode limit: %v", err)
	}
	mustUsage(t, m, s, 300, 1)
	h, err := m.HoldRoom(s, 600, 5)
	if err != nil {
		t.Fatal(err)
	}
	mustUsage(t, m, s, 900, 6)
	// A writer gets only what the hold left.
	if g, err := write(t, m, s, "f", ino(1), &size, 300, 1000); err != nil || g != 400 {
		t.Fatalf("write next to a hold: granted %d, %v; want 400", g, err)
	}
	h.Release()
	h.Release()
	mustUsage(t, m, s, 400, 1)
	assertConsistent(t, m)
}
