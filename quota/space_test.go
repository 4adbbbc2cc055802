package quota

import (
	"errors"
	"testing"
)

// TestStoreSpace: a short state disk refuses growth with ErrStoreFull
// (not ErrExceeded) and lets overwrites, shrinks and removals through; a
// critical one refuses every ledger write; back to OK, growth resumes,
// and nothing refused was charged.
func TestStoreSpace(t *testing.T) {
	m, _ := newLedger(t)
	s := testScope(t, 1)
	if err := m.SetLimit(s, 1000, 0); err != nil {
		t.Fatal(err)
	}
	var a int64
	createFile(t, m, s, "f1", ino(1))
	createFile(t, m, s, "f1", ino(2))
	if err := m.OpenForWrite(s, "f1", ino(1), 0, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := write(t, m, s, "f1", ino(1), &a, 0, 100); err != nil {
		t.Fatal(err)
	}
	mustUsage(t, m, s, 100, 2)

	m.SetStoreSpace(SpaceShort)
	if _, err := write(t, m, s, "f1", ino(1), &a, 100, 200); !errors.Is(err, ErrStoreFull) || errors.Is(err, ErrExceeded) {
		t.Errorf("growing write while short: %v; want ErrStoreFull", err)
	}
	if _, err := m.ReserveExact(s, "f1", ino(1), 150); !errors.Is(err, ErrStoreFull) {
		t.Errorf("truncate up while short: %v; want ErrStoreFull", err)
	}
	if _, err := m.ReserveInode(s, "f1", KindFile, 0, "b"); !errors.Is(err, ErrStoreFull) {
		t.Errorf("create while short: %v; want ErrStoreFull", err)
	}
	if u := m.Usage(s); u.Used != 100 || u.UsedInodes != 2 {
		t.Errorf("refusals charged something: %+v", u)
	}
	// Overwrite inside the charged size, a shrink and a removal go on.
	if g, err := write(t, m, s, "f1", ino(1), &a, 0, 100); err != nil || g != 100 {
		t.Errorf("overwrite while short: %d, %v", g, err)
	}
	r, err := m.ReserveExact(s, "f1", ino(1), 80)
	if err != nil {
		t.Fatalf("shrink while short: %v", err)
	}
	r.Done(80)
	a = 80
	rm, err := m.PrepareRemove(s, "f1", ino(2), "b")
	if err != nil {
		t.Fatalf("remove while short: %v", err)
	}
	rm.Done(true)
	mustUsage(t, m, s, 80, 1)

	m.SetStoreSpace(SpaceCritical)
	if g, err := write(t, m, s, "f1", ino(1), &a, 0, 80); err != nil || g != 80 {
		t.Errorf("overwrite of an open file while critical: %d, %v", g, err)
	}
	if _, err := m.ReserveExact(s, "f1", ino(1), 10); !errors.Is(err, ErrStoreFull) {
		t.Errorf("shrink while critical: %v; want ErrStoreFull", err)
	}
	if err := m.OpenForWrite(s, "f1", ino(3), 0, "c"); !errors.Is(err, ErrStoreFull) {
		t.Errorf("open for writing while critical: %v; want ErrStoreFull", err)
	}
	if _, err := m.PrepareRemove(s, "f1", ino(1), "a"); !errors.Is(err, ErrStoreFull) {
		t.Errorf("remove while critical: %v; want ErrStoreFull", err)
	}
	m.CloseForWrite(s, "f1", ino(1)) // releases always work
	mustUsage(t, m, s, 80, 1)

	m.SetStoreSpace(SpaceOK)
	if err := m.OpenForWrite(s, "f1", ino(1), 80, "a"); err != nil {
		t.Fatal(err)
	}
	if g, err := write(t, m, s, "f1", ino(1), &a, 80, 300); err != nil || g != 300 {
		t.Errorf("growth after space returned: %d, %v", g, err)
	}
	m.CloseForWrite(s, "f1", ino(1))
	mustUsage(t, m, s, 300, 1)
	if err := m.Flush(); err != nil {
		t.Fatal(err)
	}
}
