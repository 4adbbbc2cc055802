package quota

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestMarkTable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "marks")
	tb, err := openMarkTable(path)
	if err != nil {
		t.Fatal(err)
	}
	s := testScope(t, 1)
	sEnc, fEnc := encScope(s), encFolder("f1")
	// More marks than the initial table holds: it grows.
	n := markInitSlots*2 + 7
	slots := map[int32]uint64{}
	for i := range n {
		slot, err := tb.set(encodeMark(nil, sEnc, fEnc, InodeKey{Ino: uint64(i)}, "d/x"))
		if err != nil {
			t.Fatal(err)
		}
		slots[slot] = uint64(i)
	}
	// Clear the even inodes; tear one odd slot's body.
	torn := int32(-1)
	for slot, ino := range slots {
		if ino%2 == 0 {
			tb.clear(slot)
			delete(slots, slot)
		} else if torn < 0 {
			torn = slot
			tb.mem[int(slot)*markSlotSize+20] ^= 0xff
			delete(slots, slot)
		}
	}
	if err := tb.close(); err != nil {
		t.Fatal(err)
	}
	tb, err = openMarkTable(path)
	if err != nil {
		t.Fatal(err)
	}
	defer tb.close()
	got := tb.load()
	if len(got) != len(slots) {
		t.Fatalf("loaded %d marks, want %d", len(got), len(slots))
	}
	for _, sm := range got {
		if ino, ok := slots[sm.slot]; !ok || sm.ino.Ino != ino || sm.scope != s || sm.folder != "f1" || sm.hint != "d/x" {
			t.Fatalf("slot %d: %+v, want inode %d", sm.slot, sm, ino)
		}
	}
	tb.clearAll()
	if got := tb.load(); len(got) != 0 {
		t.Fatalf("after clearAll: %d marks", len(got))
	}
}

func TestMarkLongHint(t *testing.T) {
	long := make([]byte, 2000)
	for i := range long {
		long[i] = 'a'
	}
	b := encodeMark(nil, encScope(testScope(t, 1)), encFolder("f"), InodeKey{Ino: 5}, string(long))
	sm, err := decodeMark(b)
	if err != nil || sm.hint != "" || sm.ino.Ino != 5 {
		t.Fatalf("long hint: %+v %v (want the hint left out)", sm, err)
	}
}

func FuzzDecodeMark(f *testing.F) {
	f.Add(encodeMark(nil, encScope(testScope(f, 1)), encFolder("f"), InodeKey{Dev: 1, Ino: 2}, "a/b"))
	f.Add([]byte{recVersion})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		sm, err := decodeMark(b)
		if err != nil {
			return
		}
		if sm.hint != "" && !validHint(sm.hint) {
			t.Fatalf("invalid hint accepted: %q", sm.hint)
		}
		re := encodeMark(nil, encScope(sm.scope), encFolder(sm.folder), sm.ino, sm.hint)
		if sm2, err := decodeMark(re); err != nil || sm2 != sm {
			t.Fatalf("round trip: %+v -> %+v %v", sm, sm2, err)
		}
	})
}

// TestMarkFullSlot: the longest hint encodeMark keeps fits the slot.
func TestMarkFullSlot(t *testing.T) {
	tb, err := openMarkTable(filepath.Join(t.TempDir(), "marks"))
	if err != nil {
		t.Fatal(err)
	}
	defer tb.close()
	sEnc, fEnc := encScope(testScope(t, 1)), encFolder("f")
	fixed := len(encodeMark(nil, sEnc, fEnc, InodeKey{Ino: 1}, ""))
	hint := strings.Repeat("h", markBodyMax-fixed)
	body := encodeMark(nil, sEnc, fEnc, InodeKey{Ino: 1}, hint)
	if len(body) != markBodyMax {
		t.Fatalf("body %d bytes, want %d (hint left out?)", len(body), markBodyMax)
	}
	if _, err := tb.set(body); err != nil {
		t.Fatalf("a mark encodeMark made does not fit: %v", err)
	}
	got := tb.load()
	if len(got) != 1 || got[0].hint != hint {
		t.Fatalf("loaded %+v", got)
	}
}
