package quota

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/vfolder/vfolder/meta"
)

func FuzzParseKey(f *testing.F) {
	s := ScopeKey{Volume: "vol", ID: meta.ScopeID{Kind: meta.KindUser, UUID: "0123456789abcdef0123456789abcdef"}}
	sEnc, fEnc := encScope(s), encFolder("folder1")
	f.Add(keyFolder(sEnc, fEnc))
	f.Add(keyInodeIn(prefInode, sEnc, fEnc, InodeKey{Dev: 3, Ino: 99}))
	f.Add(keyInodeIn(prefDirty, sEnc, fEnc, InodeKey{Ino: 1}))
	f.Add(keyIntent(sEnc, fEnc, 7))
	f.Add(keyLimits(sEnc))
	f.Add([]byte("q/i/\xff"))
	f.Fuzz(func(t *testing.T, key []byte) {
		for _, p := range []string{prefLimits, prefFolder, prefInode, prefDirty, prefIntent} {
			pk, err := parseKey(p, key)
			if err != nil {
				continue
			}
			if pk.Scope.validate() != nil {
				t.Fatalf("accepted invalid scope %+v", pk.Scope)
			}
			sEnc := encScope(pk.Scope)
			var again []byte
			switch p {
			case prefLimits:
				again = keyLimits(sEnc)
			case prefFolder:
				again = keyFolder(sEnc, encFolder(pk.Folder))
			case prefInode, prefDirty:
				again = keyInodeIn(p, sEnc, encFolder(pk.Folder), pk.Ino)
			case prefIntent:
				again = keyIntent(sEnc, encFolder(pk.Folder), pk.ID)
			}
			if !bytes.Equal(again, key) {
				t.Fatalf("%q parsed as %+v re-encodes as %q", key, pk, again)
			}
		}
	})
}

func FuzzDecodeRecords(f *testing.F) {
	f.Add(encInode(KindFile, 12345, 0))
	f.Add(encInode(KindDir, 4096, 70))
	f.Add(encInode(KindRoot, 40, 0))
	f.Add(encCounter(-5, 3))
	f.Add(encLimits(1<<40, 0))
	f.Add(encMark("a/b/c"))
	f.Add(encIntent(KindSymlink, 9, "x/y"))
	f.Add(encMarker(42, true))
	f.Add([]byte{1, 1, 0x80, 0x80, 0x80})
	f.Fuzz(func(t *testing.T, v []byte) {
		if k, size, x, err := decInode(v); err == nil {
			if !k.valid() || size < 0 || x < 0 {
				t.Fatalf("decInode accepted kind %d size %d xattrs %d", k, size, x)
			}
			if k2, s2, x2, err := decInode(encInode(k, size, x)); err != nil || k2 != k || s2 != size || x2 != x {
				t.Fatalf("inode record does not round-trip: %v %v %v %v", k2, s2, x2, err)
			}
		}
		if a, b, err := decPair(v); err == nil {
			if a2, b2, err := decPair(encPair(a, b)); err != nil || a2 != a || b2 != b {
				t.Fatal("counter record does not round-trip")
			}
		}
		if a, b, err := decLimits(v); err == nil && (a < 0 || b < 0) {
			t.Fatal("negative limit accepted")
		}
		if h, err := decMark(v); err == nil && h != "" && !validHint(h) {
			t.Fatalf("mark with invalid hint %q", h)
		}
		if k, n, h, err := decIntent(v); err == nil {
			if !k.valid() || n < 0 || !validHint(h) {
				t.Fatalf("intent accepted %v %d %q", k, n, h)
			}
		}
		if e, c, err := decMarker(v); err == nil {
			if e2, c2, err := decMarker(encMarker(e, c)); err != nil || e2 != e || c2 != c {
				t.Fatal("marker does not round-trip")
			}
		}
	})
}

func FuzzValidHint(f *testing.F) {
	for _, h := range []string{"a", "a/b", "/a", "a//b", "a/../b", "./a", "a/", "..", "a\x00b", strings.Repeat("x", 5000)} {
		f.Add(h)
	}
	f.Fuzz(func(t *testing.T, h string) {
		if !validHint(h) {
			return
		}
		if strings.HasPrefix(h, "/") || strings.Contains(h, "\x00") || len(h) > maxHintLen {
			t.Fatalf("accepted %q", h)
		}
		for _, c := range strings.Split(h, "/") {
			if c == "" || c == "." || c == ".." {
				t.Fatalf("accepted %q with component %q", h, c)
			}
		}
		p, n := splitHint(h)
		if n == "" || strings.Contains(n, "/") {
			t.Fatalf("split %q -> %q %q", h, p, n)
		}
		if p == "." {
			if n != h {
				t.Fatalf("split %q -> %q %q", h, p, n)
			}
		} else if !validHint(p) || p+"/"+n != h {
			t.Fatalf("split %q -> %q %q", h, p, n)
		}
	})
}

// FuzzLedgerOps runs a sequence of single-threaded operations decoded from
// the input against a model of the files: the charge never exceeds the
// limit through growth, and equals the sum of the model's sizes whenever
// no reservation is outstanding.
func FuzzLedgerOps(f *testing.F) {
	// Growth without a write hold waits for a durable dirty mark; without
	// SyncWrites that wait is short enough for fuzzing.
	db, err := badger.Open(badger.DefaultOptions(f.TempDir()).WithLogger(nil).WithMemTableSize(8 << 20).WithBlockCacheSize(1 << 20))
	if err != nil {
		f.Fatal(err)
	}
	m := openMgr(f, db, Options{})
	f.Cleanup(func() {
		m.Close()
		db.Close()
	})
	var n atomic.Int64
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20})
	f.Add(bytes.Repeat([]byte{3, 200, 17, 0, 255, 1, 9}, 20))
	f.Fuzz(func(t *testing.T, prog []byte) { runLedgerProg(t, m, n.Add(1), prog) })
}

func runLedgerProg(t *testing.T, m *Manager, id int64, prog []byte) {
	s := ScopeKey{Volume: "fuzz", ID: meta.ScopeID{Kind: meta.KindProject, UUID: "0123456789abcdef01234567" + hex8(id)}}
	limit := int64(0)
	size := [4]int64{}
	xattr := [4]int64{}
	exists := [4]bool{}
	var open []pendingWrite
	next := func() int64 {
		if len(prog) == 0 {
			return 0
		}
		v := int64(prog[0])
		prog = prog[1:]
		return v
	}
	for len(prog) > 0 {
		op, i := next()%8, int(next()%4)
		k := InodeKey{Ino: uint64(i)}
		before := m.Usage(s).Used
		switch op {
		case 0: // set limit
			limit = next() * 16
			if err := m.SetLimit(s, limit, 0); err != nil {
				t.Fatal(err)
			}
		case 1, 2: // write, finished at once or left outstanding
			off, ln := next()*8, next()*8+1
			exists[i] = true // a file being written exists, granted or not
			g, r, err := m.Reserve(s, "f", k, off, off+ln)
			if err != nil {
				if !errors.Is(err, ErrExceeded) {
					t.Fatal(err)
				}
				if limit == 0 || before < limit && off < size[i] {
					t.Fatalf("write refused: limit %d used %d off %d size %d", limit, before, off, size[i])
				}
				continue
			}
			if u := m.Usage(s).Used; limit > 0 && u > max(limit, before) {
				t.Fatalf("grant took usage to %d over limit %d (was %d)", u, limit, before)
			}
			if op == 1 {
				size[i] = max(size[i], g)
				r.Done(size[i])
			} else {
				open = append(open, pendingWrite{r, i, g})
			}
		case 3: // finish the oldest outstanding write
			if len(open) > 0 {
				o := open[0]
				open = open[1:]
				size[o.i] = max(size[o.i], o.end)
				o.r.Done(size[o.i])
			}
		case 4: // truncate
			if hasOpen(open, i) {
				continue
			}
			ns := next() * 8
			exists[i] = true
			r, err := m.ReserveExact(s, "f", k, ns)
			if err != nil {
				continue
			}
			size[i] = ns
			r.Done(ns)
		case 5: // remove
			if hasOpen(open, i) {
				continue
			}
			m.Forget(s, "f", k)
			exists[i], size[i], xattr[i] = false, 0, 0
		case 6: // change xattrs: reserve grow, end with total
			grow, total := next()*4, next()*4
			if hasOpen(open, i) {
				continue
			}
			r, err := m.ReserveXattr(s, "f", k, KindFile, size[i], "", func() (int64, error) { return grow, nil }, nil)
			if err != nil {
				if !errors.Is(err, ErrExceeded) {
					t.Fatal(err)
				}
				if limit == 0 || before+grow <= limit {
					t.Fatalf("xattr change refused: limit %d used %d grow %d", limit, before, grow)
				}
				continue
			}
			if u := m.Usage(s).Used; limit > 0 && u > max(limit, before) {
				t.Fatalf("xattr grant took usage to %d over limit %d (was %d)", u, limit, before)
			}
			exists[i] = true
			xattr[i] = min(total, xattr[i]+grow)
			r.Done(xattr[i])
		}
		if len(open) == 0 {
			var sum, cnt int64
			for j := range size {
				if exists[j] {
					sum += size[j] + xattr[j]
					cnt++
				}
			}
			if u := m.Usage(s); u.Used != sum || u.UsedInodes != cnt {
				t.Fatalf("usage %+v, model %d bytes %d inodes", u, sum, cnt)
			}
		}
	}
	for _, o := range open {
		size[o.i] = max(size[o.i], o.end)
		o.r.Done(size[o.i])
	}
}

type pendingWrite struct {
	r   Reservation
	i   int
	end int64
}

func hasOpen(open []pendingWrite, i int) bool {
	for _, o := range open {
		if o.i == i {
			return true
		}
	}
	return false
}

func hex8(n int64) string {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(n))
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 8)
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}
