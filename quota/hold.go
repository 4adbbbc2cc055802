package quota

import "fmt"

// Hold is room of a scope set aside for objects that are about to appear
// on storage without passing through a view: the copy a folder clone
// makes. While held, the bytes and inodes count in the scope's usage, so
// no writer of the scope can take them, all or nothing. The objects are
// recorded afterwards by a Check with Repair of the new folder (which
// needs no room: it records what is there); Release then gives the hold
// back. Between the two the scope counts both, never neither, so a
// concurrent writer can never take room the copy already uses.
//
// A hold lives in memory only: after a crash it is gone, as is the
// process that made the copy; the daemon removes the unfinished copy at
// the next start. In cluster mode a hold is refused (ErrInvalid): room
// there is the node's grant.
type Hold struct {
	sc            *scope
	bytes, inodes int64
}

// ExceededError is the refusal of a hold: what was asked and what the
// scope has left.
type ExceededError struct {
	Scope                   ScopeKey
	WantBytes, WantInodes   int64
	FreeBytes, FreeInodes   int64 // -1: no limit
	LimitBytes, LimitInodes int64
	UsedBytes, UsedInodes   int64
	bytesShort, storeShort  bool
}

func (e *ExceededError) Error() string {
	switch {
	case e.storeShort:
		return fmt.Sprintf("quota scope %s: the ledger's disk is short of space: no room for %d bytes", e.Scope, e.WantBytes)
	case e.bytesShort:
		return fmt.Sprintf("quota scope %s: needs %d bytes, has %d free (limit %d, used %d)", e.Scope, e.WantBytes, e.FreeBytes, e.LimitBytes, e.UsedBytes)
	default:
		return fmt.Sprintf("quota scope %s: needs %d inodes, has %d free (limit %d, used %d)", e.Scope, e.WantInodes, e.FreeInodes, e.LimitInodes, e.UsedInodes)
	}
}

// Unwrap makes the error match ErrExceeded (or ErrStoreFull).
func (e *ExceededError) Unwrap() error {
	if e.storeShort {
		return ErrStoreFull
	}
	return ErrExceeded
}

// HoldRoom sets aside bytes and inodes of the scope, all or nothing, or
// fails with an *ExceededError naming the numbers.
func (m *Manager) HoldRoom(s ScopeKey, bytes, inodes int64) (*Hold, error) {
	if bytes < 0 || inodes < 0 {
		return nil, fmt.Errorf("%w: negative hold", ErrInvalid)
	}
	if m.closed.Load() {
		return nil, ErrClosed
	}
	sc, err := m.lookup(s, true)
	if err != nil {
		return nil, err
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.cl != nil {
		return nil, fmt.Errorf("%w: room cannot be held in cluster mode", ErrInvalid)
	}
	e := &ExceededError{Scope: s, WantBytes: bytes, WantInodes: inodes, LimitBytes: sc.limitBytes, LimitInodes: sc.limitInodes,
		UsedBytes: sc.used, UsedInodes: sc.count, FreeBytes: -1, FreeInodes: -1}
	if sc.limitBytes > 0 {
		e.FreeBytes = max(sc.limitBytes-sc.used, 0)
	}
	if sc.limitInodes > 0 {
		e.FreeInodes = max(sc.limitInodes-sc.count, 0)
	}
	switch {
	case m.space.Load() != int32(SpaceOK):
		e.storeShort = true
		return nil, e
	case bytes > sc.avail():
		e.bytesShort = true
		return nil, e
	case sc.limitInodes > 0 && sc.count+inodes > sc.limitInodes:
		return nil, e
	}
	sc.used += bytes
	sc.count += inodes
	if h := m.hook; h != nil {
		h(sc)
	}
	return &Hold{sc: sc, bytes: bytes, inodes: inodes}, nil
}

// Release gives what is still held back. It may be called more than once.
func (h *Hold) Release() {
	if h == nil || h.sc == nil {
		return
	}
	sc := h.sc
	h.sc = nil
	sc.mu.Lock()
	sc.used -= h.bytes
	sc.count -= h.inodes
	if hk := sc.m.hook; hk != nil {
		hk(sc)
	}
	sc.mu.Unlock()
}
