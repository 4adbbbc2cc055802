package fs

import (
	"fmt"
	"runtime"
	"sync"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/internal/backing"
	"github.com/vfolder/vfolder/meta"
)

// Inode number layout (see the package comment).
const (
	inoBits    = 47
	inoMask    = 1<<inoBits - 1
	slotBits   = 15
	maxSlot    = 1<<slotBits - 1
	mappedBit  = 1 << 63
	mappedMask = mappedBit - 1

	// firstAutomaticIno is where go-fuse would number nodes created with
	// Ino 0. vfolder always sets Ino; the value only keeps that range
	// apart from both schemes above.
	firstAutomaticIno = 1 << 62

	// Synthetic directories: the root is 1, the top directories 2..4,
	// key directories count up from firstKeyDirIno (slot 0).
	firstKeyDirIno = 16
)

// inoTable hands out view slots, mapped inode numbers and synthetic
// directory numbers (view serial numbers come from Shared).
type inoTable struct {
	mu       sync.Mutex
	slots    map[uint64]bool
	nextSlot uint64
	mapped   uint64 // last mapped number handed out
	synth    uint64 // last synthetic number handed out

	// draining holds removed views whose root node go-fuse has not
	// forgotten yet: their slot and root descriptor are still in use.
	draining map[*view]*view
}

func (t *inoTable) init() {
	t.slots = map[uint64]bool{}
	t.nextSlot = 1
	t.synth = firstKeyDirIno - 1
	t.draining = map[*view]*view{}
}

// allocSlot returns a free slot, searching round-robin so a freed slot is
// reused as late as possible.
func (t *inoTable) allocSlot() (uint64, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := 0; i < maxSlot; i++ {
		s := t.nextSlot
		t.nextSlot++
		if t.nextSlot > maxSlot {
			t.nextSlot = 1
		}
		if !t.slots[s] {
			t.slots[s] = true
			return s, nil
		}
	}
	return 0, fmt.Errorf("%w: all %d view slots are in use", meta.ErrLimitExceeded, maxSlot)
}

func (t *inoTable) freeSlot(s uint64) {
	t.mu.Lock()
	delete(t.slots, s)
	t.mu.Unlock()
}

func (t *inoTable) nextSynthetic() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.synth++
	return t.synth
}

func (t *inoTable) nextMapped() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.mapped++
	return mappedBit | (t.mapped & mappedMask)
}

// devIno is a backing identity.
type devIno struct{ dev, ino uint64 }

// mappedIno is one remembered number of the second scheme, counted by the
// node objects that use it.
type mappedIno struct {
	ino  uint64
	refs int
}

// direct reports whether the backing identity is numbered by the first
// scheme in this view.
func (v *view) direct(dev, ino uint64) bool {
	return dev == v.dev && ino != 0 && ino <= inoMask
}

// acquireIno returns the FUSE inode number for a backing identity and
// counts one more user of a mapped number; release undoes the count.
func (v *view) acquireIno(dev, ino uint64) uint64 {
	if v.direct(dev, ino) {
		return v.slot<<inoBits | ino
	}
	k := devIno{dev, ino}
	v.mapMu.Lock()
	defer v.mapMu.Unlock()
	m := v.mapped[k]
	if m == nil {
		m = &mappedIno{ino: v.fs.inos.nextMapped()}
		v.mapped[k] = m
	}
	m.refs++
	return m.ino
}

func (v *view) releaseIno(k devIno) {
	v.mapMu.Lock()
	defer v.mapMu.Unlock()
	if m := v.mapped[k]; m != nil {
		m.refs--
		if m.refs <= 0 {
			delete(v.mapped, k)
		}
	}
}

// peekIno is the number a directory entry shows for a backing inode on
// device dev, without creating a mapping.
func (v *view) peekIno(dev, ino uint64) uint64 {
	if v.direct(dev, ino) {
		return v.slot<<inoBits | ino
	}
	v.mapMu.Lock()
	defer v.mapMu.Unlock()
	if m := v.mapped[devIno{dev, ino}]; m != nil {
		return m.ino
	}
	return mappedBit | (ino & inoMask)
}

// generation mixes the view serial with the backing birth time: a stable
// value for one file in one view, different across views (of every FS
// instance sharing the serials, so a node of one superblock never has the
// nodeid and generation of a node of another) and across recycled backing
// inodes on file systems that report a birth time.
func (v *view) generation(st *backing.Stat) uint64 {
	g := uint64(1)
	if st.HasBtime {
		g = uint64(st.Btime.Sec)*1e9 + uint64(st.Btime.Nsec)
	}
	return mix64(v.serial*0x9E3779B97F4A7C15 ^ g)
}

// mix64 is the splitmix64 finaliser.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xBF58476D1CE4E5B9
	x ^= x >> 27
	x *= 0x94D049BB133111EB
	x ^= x >> 31
	return x
}

// newNode builds the node object for a backing entry and its go-fuse
// identity. Mapped numbers are released when the object is collected:
// go-fuse drops objects it does not use (a lookup that lost a race) without
// telling, so a count kept by OnAdd/OnForget would drift.
func (v *view) newNode(st *backing.Stat) (*node, gofs.StableAttr) {
	n := &node{v: v, ino: st.Ino}
	if st.Dev != v.dev {
		n.ext.Store(&nodeExt{dev: st.Dev})
	}
	fino := v.acquireIno(st.Dev, st.Ino)
	if !v.direct(st.Dev, st.Ino) {
		runtime.AddCleanup(n, v.releaseIno, devIno{st.Dev, st.Ino})
	}
	return n, gofs.StableAttr{
		Mode: st.Mode & unix.S_IFMT,
		Ino:  fino,
		Gen:  v.generation(st),
	}
}
