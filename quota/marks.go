package quota

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The mark table bridges the time between an operation that needs a dirty
// mark and the commit that makes the mark durable in the store. Without
// it, the first growth of every file opened for writing and every removal
// of a file with bytes would wait for a synced badger commit (a disk
// flush) before it could go on: hundreds of microseconds per file.
//
// The table is a file mapped MAP_SHARED, cut into fixed slots. Setting a
// mark stores one slot: the body (scope, folder, inode key, path hint)
// first, then an 8-byte header (magic and CRC of the body) with one
// aligned store. A store into a shared mapping is in the kernel's page
// cache the moment it is made, so the mark survives the death of the
// process (SIGKILL) at any instant after the store; a slot torn by a kill
// in the middle fails its CRC and is ignored, and the operation it was for
// had not started. A slot is cleared (header zeroed) once the store holds
// the inode's mark (the commit loop wrote it, see apply) or the inode
// needs no mark any more and its record is written.
//
// The table is not flushed to disk: after a kernel crash or power loss it
// may have lost marks. That case is an unclean shutdown like any other
// (the open marker in the store is written synced), and the daemon runs a
// Check with Repair on every scope it uses after an unclean start, which
// settles what the marks would have told.
//
// Open reads the slots an earlier process left, treats each as a dirty
// mark for recovery, and clears the table once recovery's results are
// durable in the store.

const (
	markSlotSize  = 1024
	markInitSlots = 256
	markMagic     = 0x314d5156        // "VQM1"
	markBodyMax   = markSlotSize - 10 // after the header and the body's length
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// markTable is the table of one Manager. mu guards everything; a set or a
// clear is a copy of at most one slot.
type markTable struct {
	mu   sync.Mutex
	f    *os.File // nil: in memory (a store kept in memory cannot outlive the process anyway)
	mem  []byte
	free []int32
	err  error // a failed growth: later sets fall back to waiting for the store
}

// slotMark is a mark read back from the table.
type slotMark struct {
	slot   int32
	scope  ScopeKey
	folder string
	ino    InodeKey
	hint   string
}

func openMarkTable(path string) (*markTable, error) {
	t := &markTable{}
	if path == "" {
		t.mem = make([]byte, markInitSlots*markSlotSize)
		t.resetFree()
		return t, nil
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("quota: open mark table: %w", err)
	}
	t.f = f
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("quota: mark table: %w", err)
	}
	size := st.Size() / markSlotSize * markSlotSize
	if size < markInitSlots*markSlotSize {
		size = markInitSlots * markSlotSize
	}
	if err := t.mapSize(size); err != nil {
		f.Close()
		return nil, err
	}
	t.resetFree()
	return t, nil
}

// mapSize sizes the file with its blocks allocated (a store into a hole of
// a full file system would kill the process with SIGBUS) and maps it.
func (t *markTable) mapSize(size int64) error {
	if err := unix.Fallocate(int(t.f.Fd()), 0, 0, size); err != nil {
		return fmt.Errorf("quota: allocate mark table: %w", err)
	}
	mem, err := unix.Mmap(int(t.f.Fd()), 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("quota: map mark table: %w", err)
	}
	if t.mem != nil {
		_ = unix.Munmap(t.mem)
	}
	t.mem = mem
	return nil
}

func (t *markTable) slots() int32 { return int32(len(t.mem) / markSlotSize) }

func (t *markTable) resetFree() {
	n := t.slots()
	t.free = t.free[:0]
	for i := n - 1; i >= 0; i-- {
		t.free = append(t.free, i)
	}
}

func (t *markTable) header(i int32) *uint64 {
	return (*uint64)(unsafe.Pointer(&t.mem[int(i)*markSlotSize]))
}

// encodeMark is the body of a slot: version, scope, folder, dev, ino, hint.
// A hint that does not fit is left out (recovery then walks the folder).
func encodeMark(b []byte, sEnc, fEnc []byte, k InodeKey, hint string) []byte {
	b = append(b[:0], recVersion)
	b = append(b, sEnc...)
	b = append(b, fEnc...)
	b = binary.BigEndian.AppendUint64(b, k.Dev)
	b = binary.BigEndian.AppendUint64(b, k.Ino)
	if len(b)+2+len(hint) > markBodyMax || !validHint(hint) {
		hint = ""
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(hint)))
	return append(b, hint...)
}

var errBadMark = errors.New("bad mark slot")

func decodeMark(b []byte) (slotMark, error) {
	var sm slotMark
	if len(b) < 1 || b[0] != recVersion {
		return sm, errBadMark
	}
	s, rest, err := decScope(b[1:])
	if err != nil {
		return sm, errBadMark
	}
	f, rest, err := decFolder(rest)
	if err != nil || len(rest) < 18 {
		return sm, errBadMark
	}
	sm.scope, sm.folder = s, f
	sm.ino = InodeKey{Dev: binary.BigEndian.Uint64(rest), Ino: binary.BigEndian.Uint64(rest[8:])}
	n := int(binary.BigEndian.Uint16(rest[16:]))
	rest = rest[18:]
	if n != len(rest) {
		return sm, errBadMark
	}
	sm.hint = string(rest)
	if sm.hint != "" && !validHint(sm.hint) {
		sm.hint = ""
	}
	return sm, nil
}

// set stores a mark and returns its slot, or -1 and an error when the
// table cannot grow (the caller then waits for the store instead).
func (t *markTable) set(body []byte) (int32, error) {
	if len(body) > markBodyMax {
		return -1, fmt.Errorf("%w: mark of %d bytes", ErrInvalid, len(body))
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mem == nil {
		return -1, ErrClosed
	}
	if len(t.free) == 0 {
		if err := t.grow(); err != nil {
			return -1, err
		}
	}
	i := t.free[len(t.free)-1]
	t.free = t.free[:len(t.free)-1]
	off := int(i) * markSlotSize
	atomic.StoreUint64(t.header(i), 0)
	binary.LittleEndian.PutUint16(t.mem[off+8:], uint16(len(body)))
	copy(t.mem[off+10:], body)
	crc := crc32.Checksum(t.mem[off+8:off+10+len(body)], castagnoli)
	atomic.StoreUint64(t.header(i), uint64(markMagic)|uint64(crc)<<32)
	return i, nil
}

func (t *markTable) grow() error {
	if t.err != nil {
		return t.err
	}
	n := int64(len(t.mem)) * 2
	if t.f == nil {
		mem := make([]byte, n)
		copy(mem, t.mem)
		t.mem = mem
	} else if err := t.mapSize(n); err != nil {
		t.err = err
		return err
	}
	old := int32(n/2) / markSlotSize
	for i := t.slots() - 1; i >= old; i-- {
		t.free = append(t.free, i)
	}
	return nil
}

// clear removes the mark in slot i.
func (t *markTable) clear(i int32) {
	if i < 0 {
		return
	}
	t.mu.Lock()
	if t.mem != nil {
		atomic.StoreUint64(t.header(i), 0)
		t.free = append(t.free, i)
	}
	t.mu.Unlock()
}

// load returns the valid marks in the table.
func (t *markTable) load() []slotMark {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []slotMark
	for i := range t.slots() {
		h := atomic.LoadUint64(t.header(i))
		if uint32(h) != markMagic {
			continue
		}
		off := int(i) * markSlotSize
		n := int(binary.LittleEndian.Uint16(t.mem[off+8:]))
		if n > markBodyMax || crc32.Checksum(t.mem[off+8:off+10+n], castagnoli) != uint32(h>>32) {
			continue
		}
		sm, err := decodeMark(t.mem[off+10 : off+10+n])
		if err != nil {
			continue
		}
		sm.slot = i
		out = append(out, sm)
	}
	return out
}

// clearAll empties the table.
func (t *markTable) clearAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range t.slots() {
		atomic.StoreUint64(t.header(i), 0)
	}
	t.resetFree()
}

func (t *markTable) close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.f == nil {
		return nil
	}
	err := unix.Munmap(t.mem)
	t.mem = nil
	if cerr := t.f.Close(); err == nil {
		err = cerr
	}
	t.f = nil
	return err
}

const defaultMarkFile = "quota.marks"

// setSlot puts the inode's dirty mark into the mark table and queues it so
// that the commit loop writes the mark to the store. It reports false when
// the table cannot take it (the caller waits for the store). sc.mu is held.
func (sc *scope) setSlot(in *inode) bool {
	if in.slot > 0 {
		return true
	}
	var buf [markSlotSize]byte
	i, err := sc.m.marks.set(encodeMark(buf[:0], sc.enc, in.f.enc, in.key, in.hint))
	if err != nil {
		sc.m.log.Warn().Err(err).Msg("quota: mark table unavailable; waiting for the store")
		return false
	}
	in.slot = i + 1
	sc.touch(in)
	return true
}

// settleSlot clears the inode's slot once the store holds its mark, or
// once the inode needs no mark and the store holds its record. sc.mu is
// held.
func (sc *scope) settleSlot(in *inode) {
	if in.slot == 0 {
		return
	}
	if in.storeMarked() || (!in.markWanted() && !in.flushing && !in.needsFlush()) {
		sc.m.marks.clear(in.slot - 1)
		in.slot = 0
	}
}
