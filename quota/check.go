package quota

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/dgraph-io/badger/v4"
	"golang.org/x/sys/unix"
)

// FolderRoot is one folder to check: its id and its root directory on
// storage. Check reads through a private descriptor and does not close Dir.
type FolderRoot struct {
	FolderID string
	Dir      *os.File
}

// CheckOptions tune Check.
type CheckOptions struct {
	// Repair makes the ledger match what is on storage.
	Repair bool
	// Progress, if set, is called every few thousand entries and when a
	// folder is done.
	Progress func(Progress)
	// MaxFindings caps Report.Findings (default 1000); Report.Counts
	// always counts everything.
	MaxFindings int
}

// Progress of a running Check.
type Progress struct {
	FolderID string
	Entries  int64 // objects seen so far in this folder
	Bytes    int64 // bytes seen so far in this folder
	Done     bool  // the folder is finished
}

// Problem is the kind of a Finding.
type Problem string

const (
	ProblemUnknown    Problem = "unknown"    // on storage, not in the ledger
	ProblemGone       Problem = "gone"       // in the ledger, not on storage
	ProblemSize       Problem = "size"       // charged bytes differ from the real size
	ProblemKind       Problem = "kind"       // the ledger has another type for this inode
	ProblemXattr      Problem = "xattr"      // charged user.* xattr bytes differ from the real ones
	ProblemUnverified Problem = "unverified" // dirty after a crash and not yet confirmed
	ProblemCounter    Problem = "counter"    // folder counter differs from the sum of its records
	ProblemChanged    Problem = "changed"    // changed while being checked; left alone
)

// Finding is one difference between the ledger and storage.
type Finding struct {
	FolderID string
	Path     string // relative to the folder root ("" when not known)
	Ino      InodeKey
	Problem  Problem
	// Bytes: what the ledger charges, what storage holds (data and
	// xattrs together). For ProblemCounter: counter and sum of records
	// (Inodes alike).
	LedgerBytes, DiskBytes   int64
	LedgerInodes, DiskInodes int64
	Repaired                 bool
}

// FolderReport sums up one folder.
type FolderReport struct {
	FolderID string
	// LedgerBytes/LedgerInodes are the folder's usage in the ledger when
	// its walk ended (before repairs); DiskBytes/DiskInodes what the walk
	// found. They differ by the findings and by writes made meanwhile.
	LedgerBytes, LedgerInodes int64
	DiskBytes, DiskInodes     int64
	// DiskDirBytes and DiskXattrBytes are the parts of DiskBytes held by
	// directories (the root included) and by user.* xattrs.
	DiskDirBytes, DiskXattrBytes int64
	// Complete is false when some directory could not be read; then no
	// ledger entry of the folder is taken for gone.
	Complete bool
	Errors   []string
}

// Report is the result of Check.
type Report struct {
	Scope     ScopeKey
	Folders   []FolderReport
	Findings  []Finding
	Counts    map[Problem]int
	Repaired  int
	Busy      int      // differences not looked at because operations were in flight
	Truncated bool     // Findings was capped
	Unchecked []string // ledger folders of the scope that were not in the list
}

// Drift reports whether the check found any difference.
func (r *Report) Drift() bool {
	for p, n := range r.Counts {
		if p != ProblemChanged && n > 0 {
			return true
		}
	}
	return false
}

func (r *Report) add(f Finding, max int) {
	r.Counts[f.Problem]++
	if f.Repaired {
		r.Repaired++
	}
	if len(r.Findings) < max {
		r.Findings = append(r.Findings, f)
	} else {
		r.Truncated = true
	}
}

// Check walks the given folders of a scope on storage and compares every
// object with the ledger; with Repair it makes the ledger match. It runs
// online: writers may go on. See the package comment for how it avoids
// taking in-flight changes for drift. The walk goes through directory
// descriptors only (openat2 beneath the folder root, no symlinks
// followed, fstatat without following) and counts every inode once.
func (m *Manager) Check(ctx context.Context, s ScopeKey, folders []FolderRoot, o CheckOptions) (*Report, error) {
	if m.closed.Load() {
		return nil, ErrClosed
	}
	if o.MaxFindings <= 0 {
		o.MaxFindings = 1000
	}
	sc, err := m.lookup(s, true)
	if err != nil {
		return nil, err
	}
	sc.checkMu.Lock()
	defer sc.checkMu.Unlock()

	rep := &Report{Scope: s, Counts: map[Problem]int{}}
	checked := map[string]bool{}
	for _, root := range folders {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		if checked[root.FolderID] {
			continue
		}
		checked[root.FolderID] = true
		fr, err := m.checkFolder(ctx, sc, root, o, rep)
		rep.Folders = append(rep.Folders, fr)
		if err != nil {
			return rep, err
		}
	}
	sc.mu.Lock()
	for id, f := range sc.folders {
		if !checked[id] && !f.dropped {
			rep.Unchecked = append(rep.Unchecked, id)
		}
	}
	sc.mu.Unlock()
	slices.Sort(rep.Unchecked)
	return rep, nil
}

// cand is a difference seen by the first walk, to be confirmed.
type cand struct {
	parent, name string
	key          InodeKey
	root         bool // the folder root itself
}

func (m *Manager) checkFolder(ctx context.Context, sc *scope, root FolderRoot, o CheckOptions, rep *Report) (FolderReport, error) {
	fr := FolderReport{FolderID: root.FolderID}
	sc.mu.Lock()
	f, err := sc.folder(root.FolderID)
	sc.mu.Unlock()
	if err != nil {
		return fr, err
	}
	fd, rootDev, err := rootOf(root.Dir)
	if err != nil {
		fr.Errors = append(fr.Errors, err.Error())
		return fr, fmt.Errorf("quota: check folder %s: %w", root.FolderID, err)
	}
	defer unix.Close(fd)

	// The root: charged its size and xattrs, not counted as an inode. A
	// root the ledger has no record of was never changed through a view:
	// this check is its first contact with the ledger, which records it
	// (as the first change through a view would) rather than call it
	// drift.
	var ro object
	if err := inspectFd(fd, &ro); err != nil {
		fr.Errors = append(fr.Errors, err.Error())
		return fr, fmt.Errorf("quota: check folder %s: %w", root.FolderID, err)
	}
	rootKey := MakeKey(rootDev, ro.st.Dev, ro.st.Ino)
	if err := m.firstContact(sc, f, rootKey, &ro); err != nil {
		return fr, err
	}
	seen := []InodeKey{rootKey}
	fr.DiskBytes += ro.total()
	fr.DiskDirBytes += ro.data
	fr.DiskXattrBytes += ro.x
	var cands []cand
	if v, busy := m.ledgerView(sc, f, rootKey, nil); busy {
		rep.Busy++
	} else if !v.exists || v.kind != KindRoot || v.unverified || v.bytes != ro.total() || v.x != ro.x {
		cands = append(cands, cand{key: rootKey, root: true})
	}

	// Walk 1: every object, compared with the ledger as it is now.
	multi := map[InodeKey]struct{}{}
	var txn *badger.Txn
	lookups := 0
	defer func() {
		if txn != nil {
			txn.Discard()
		}
	}()
	var entries int64
	w := newWalker(ctx, func(dirfd int, parent, name string, st *unix.Stat_t) error {
		k := MakeKey(rootDev, st.Dev, st.Ino)
		kind := KindOf(st.Mode)
		if kind != KindDir && st.Nlink > 1 {
			if _, dup := multi[k]; dup {
				return nil
			}
			multi[k] = struct{}{}
		}
		seen = append(seen, k)
		size := chargeOf(kind, st.Size)
		var x int64
		xerr := error(nil)
		if kindHasXattrs(kind) {
			x, xerr = xattrBytesAt(dirfd, name)
		}
		fr.DiskBytes += size + x
		if kind == KindDir {
			fr.DiskDirBytes += size
		}
		fr.DiskXattrBytes += x
		fr.DiskInodes++
		entries++
		if o.Progress != nil && entries%4096 == 0 {
			o.Progress(Progress{FolderID: f.id, Entries: entries, Bytes: fr.DiskBytes})
		}
		if txn == nil || lookups >= 4096 {
			if txn != nil {
				txn.Discard()
			}
			txn, lookups = m.db.NewTransaction(false), 0
		}
		lookups++
		v, busy := m.ledgerView(sc, f, k, txn)
		if busy {
			rep.Busy++
			return nil
		}
		if xerr != nil || !v.exists || v.kind != kind || v.unverified || v.bytes != size+x || v.x != x {
			cands = append(cands, cand{parent: parent, name: name, key: k})
		}
		return nil
	})
	werr := w.run(fd)
	fr.Errors = append(fr.Errors, w.errs...)
	fr.Complete = werr == nil && !w.incomplete
	sc.mu.Lock()
	fr.LedgerBytes, fr.LedgerInodes = f.used, f.count
	sc.mu.Unlock()
	if werr != nil {
		return fr, werr
	}

	// Differences seen by the walk: look again, with the inode pinned and
	// its operation counter checked, so that nothing in flight is taken
	// for drift.
	for _, c := range cands {
		m.confirm(sc, f, fd, rootDev, c, o, rep)
	}

	// Ledger entries the walk did not see.
	if fr.Complete {
		if err := m.checkGone(ctx, sc, f, fd, rootDev, seen, o, rep); err != nil {
			return fr, err
		}
		if o.Repair {
			sc.mu.Lock()
			for _, it := range f.stale {
				it.want = false
				sc.queueIntent(it)
			}
			f.stale = nil
			sc.mu.Unlock()
		}
	}
	if err := m.auditFolder(sc, f, o, rep); err != nil {
		return fr, err
	}
	if o.Progress != nil {
		o.Progress(Progress{FolderID: f.id, Entries: entries, Bytes: fr.DiskBytes, Done: true})
	}
	return fr, nil
}

type ledgerView struct {
	exists, unverified bool
	kind               Kind
	bytes              int64 // the whole charge
	x                  int64 // its xattr part
}

// ledgerView returns what the ledger holds for k: the in-memory state if
// the inode is there, else its record (read in txn, or in a transaction
// of its own when txn is nil). busy: an operation is in flight.
func (m *Manager) ledgerView(sc *scope, f *folder, k InodeKey, txn *badger.Txn) (ledgerView, bool) {
	sc.mu.Lock()
	if in := f.inodes[k]; in != nil {
		v := ledgerView{exists: in.exists, unverified: in.unverified, kind: in.kind, bytes: in.charged, x: in.xch}
		busy := in.outstanding > 0 || in.excl
		sc.mu.Unlock()
		return v, busy
	}
	sc.mu.Unlock()
	if txn == nil {
		txn = m.db.NewTransaction(false)
		defer txn.Discard()
	}
	var v ledgerView
	item, err := txn.Get(keyInodeIn(prefInode, sc.enc, f.enc, k))
	if err != nil {
		return v, false
	}
	_ = item.Value(func(b []byte) error {
		kind, size, x, err := decInode(b)
		if err == nil {
			v = ledgerView{exists: true, kind: kind, bytes: size + x, x: x}
		}
		return nil
	})
	return v, false
}

// firstContact records a folder root the ledger has no record of, as
// found on storage (see checkFolder), unless an operation on it is in
// flight (it records the root itself).
func (m *Manager) firstContact(sc *scope, f *folder, k InodeKey, o *object) error {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	in, err := sc.getInode(f, k)
	if err != nil {
		return fmt.Errorf("quota: check folder %s: %w", f.id, err)
	}
	if !in.exists && !in.unverified && !in.excl && in.outstanding == 0 && in.writers == 0 {
		in.ops++
		sc.setExists(in, true, KindRoot, o.st.Size)
		in.xattr = o.x
		sc.recharge(in)
	}
	sc.after(in)
	return nil
}

// confirm re-examines one difference: pin the inode, note its operation
// counter, stat the object again, and accept the result only if no
// operation touched the inode meanwhile.
func (m *Manager) confirm(sc *scope, f *folder, fd int, rootDev uint64, c cand, o CheckOptions, rep *Report) {
	path := join(c.parent, c.name)
	sc.mu.Lock()
	in, err := sc.getInode(f, c.key)
	if err != nil {
		sc.mu.Unlock()
		rep.Busy++
		return
	}
	in.pins++
	ops := in.ops
	sc.mu.Unlock()

	var ob object
	var serr error
	if c.root {
		serr = inspectFd(fd, &ob)
	} else {
		serr = inspectAt(fd, c.parent, c.name, &ob)
	}
	st := &ob.st

	sc.mu.Lock()
	defer sc.mu.Unlock()
	in.pins--
	defer sc.after(in)
	fnd := Finding{FolderID: f.id, Path: path, Ino: c.key, LedgerBytes: in.charged}
	if !in.exists {
		fnd.LedgerBytes = 0
	}
	if serr != nil || MakeKey(rootDev, st.Dev, st.Ino) != c.key {
		// Removed or replaced since the walk: the operation doing it
		// keeps the ledger right.
		fnd.Problem = ProblemChanged
		rep.add(fnd, o.MaxFindings)
		return
	}
	if in.ops != ops || in.outstanding > 0 || in.excl || (f.creating > 0 && (!in.exists || in.writers > 0)) {
		// In flight. A create not yet committed may be this object: one
		// the ledger does not know yet, or one that took the number of an
		// object whose removal is in flight (held: writers), whose record
		// the ledger still has.
		rep.Busy++
		return
	}
	kind := ob.kind
	if c.root {
		kind = KindRoot
	}
	fnd.DiskBytes = ob.total()
	switch {
	case !in.exists:
		fnd.Problem = ProblemUnknown
	case in.kind != kind:
		fnd.Problem = ProblemKind
	case in.charged-in.xch != ob.data:
		fnd.Problem = ProblemSize
	case in.xch != ob.x:
		fnd.Problem = ProblemXattr
	case in.unverified:
		fnd.Problem = ProblemUnverified
	default:
		return // settled meanwhile
	}
	if o.Repair {
		in.ops++
		in.unverified = false
		// cluster: found, not made (cluster.go)
		sc.observe(in, func() {
			sc.setExists(in, true, kind, st.Size)
			in.xattr = ob.x
			sc.recharge(in)
		})
		fnd.Repaired = true
	}
	rep.add(fnd, o.MaxFindings)
}

// checkGone finds records of the folder whose inode the walk did not see,
// confirms with a second walk (an object renamed from a part not yet
// walked into one already walked escapes one walk, not two) and, with
// Repair, releases them when no operation touched them meanwhile.
func (m *Manager) checkGone(ctx context.Context, sc *scope, f *folder, fd int, rootDev uint64, seen []InodeKey, o CheckOptions, rep *Report) error {
	slices.SortFunc(seen, cmpKey)
	prefix := cat(prefInode, sc.enc, f.enc)
	var gone []InodeKey
	err := m.db.View(func(txn *badger.Txn) error {
		opt := badger.DefaultIteratorOptions
		opt.Prefix = prefix
		opt.PrefetchValues = false
		it := txn.NewIterator(opt)
		defer it.Close()
		i := 0
		for it.Rewind(); it.Valid(); it.Next() {
			key := it.Item().Key()
			if len(key) != len(prefix)+16 {
				continue
			}
			k := InodeKey{Dev: binary.BigEndian.Uint64(key[len(prefix):]), Ino: binary.BigEndian.Uint64(key[len(prefix)+8:])}
			for i < len(seen) && cmpKey(seen[i], k) < 0 {
				i++
			}
			if i < len(seen) && seen[i] == k {
				continue
			}
			gone = append(gone, k)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("quota: check folder %s: %w", f.id, err)
	}
	// Unverified inodes without a record are gone candidates too, and so
	// are records not yet committed (an object made just before the
	// check and removed behind the daemon's back).
	sc.mu.Lock()
	for k, in := range f.inodes {
		if (in.unverified && !in.exists) || (in.exists && !in.pExists) {
			if _, ok := slices.BinarySearchFunc(seen, k, cmpKey); !ok {
				gone = append(gone, k)
			}
		}
	}
	sc.mu.Unlock()
	if len(gone) == 0 {
		return nil
	}
	type pinned struct {
		in  *inode
		ops uint64
	}
	pins := map[InodeKey]pinned{}
	sc.mu.Lock()
	for _, k := range gone {
		in, err := sc.getInode(f, k)
		if err != nil {
			continue
		}
		in.pins++
		pins[k] = pinned{in, in.ops}
	}
	sc.mu.Unlock()
	again := map[InodeKey]bool{}
	w := newWalker(ctx, func(_ int, parent, name string, st *unix.Stat_t) error {
		k := MakeKey(rootDev, st.Dev, st.Ino)
		if _, ok := pins[k]; ok {
			again[k] = true
		}
		return nil
	})
	werr := w.run(fd)
	complete := werr == nil && !w.incomplete
	sc.mu.Lock()
	defer sc.mu.Unlock()
	for k, p := range pins {
		in := p.in
		in.pins--
		if complete && !again[k] {
			switch {
			case in.ops != p.ops || in.outstanding > 0 || in.writers > 0:
				// In use (maybe unlinked but still open): not gone yet.
				rep.Busy++
			case in.exists || in.unverified:
				fnd := Finding{FolderID: f.id, Ino: k, Problem: ProblemGone, LedgerBytes: in.charged, LedgerInodes: inodesOf(in.exists, in.kind)}
				if o.Repair {
					in.unverified = false
					sc.observe(in, func() { sc.remove(in) }) // cluster: found, not made (cluster.go)
					fnd.Repaired = true
				}
				rep.add(fnd, o.MaxFindings)
			}
		}
		sc.after(in)
	}
	return werr
}

func cmpKey(a, b InodeKey) int {
	switch {
	case a.Dev != b.Dev:
		if a.Dev < b.Dev {
			return -1
		}
		return 1
	case a.Ino < b.Ino:
		return -1
	case a.Ino > b.Ino:
		return 1
	}
	return 0
}

// auditFolder checks the persisted invariant of one folder: its counter
// record equals the sum of its inode records (read in one snapshot after
// everything pending was written). With Repair a difference is corrected
// in memory and in the store.
func (m *Manager) auditFolder(sc *scope, f *folder, o CheckOptions, rep *Report) error {
	if err := m.Flush(); err != nil {
		return err
	}
	cb, cc, sb, sn, err := m.persistedFolder(sc, f)
	if err != nil {
		return err
	}
	if cb == sb && cc == sn {
		return nil
	}
	fnd := Finding{FolderID: f.id, Problem: ProblemCounter, LedgerBytes: cb, DiskBytes: sb, LedgerInodes: cc, DiskInodes: sn}
	if o.Repair {
		sc.mu.Lock()
		du, dc := sb-cb, sn-cc
		f.used += du
		f.count += dc
		sc.used += du
		sc.count += dc
		f.corrUsed += du
		f.corrCount += dc
		sc.adoptFolder(f, du, dc) // cluster: found, not made (cluster.go)
		sc.queueFolder(f)
		sc.mu.Unlock()
		fnd.Repaired = true
	}
	rep.add(fnd, o.MaxFindings)
	return nil
}

// persistedFolder reads, in one snapshot, a folder's counter record and
// the sum and number of its inode records.
func (m *Manager) persistedFolder(sc *scope, f *folder) (cb, cc, sb, sn int64, err error) {
	err = m.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(keyFolder(sc.enc, f.enc))
		switch {
		case errors.Is(err, badger.ErrKeyNotFound):
		case err != nil:
			return err
		default:
			if err := item.Value(func(v []byte) error {
				var derr error
				cb, cc, derr = decCounter(v)
				return derr
			}); err != nil {
				return err
			}
		}
		opt := badger.DefaultIteratorOptions
		opt.Prefix = cat(prefInode, sc.enc, f.enc)
		it := txn.NewIterator(opt)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			err := it.Item().Value(func(v []byte) error {
				kind, size, x, derr := decInode(v)
				if derr == nil {
					sb += size + x
					sn += kind.inodes()
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		err = fmt.Errorf("quota: audit folder %s: %w", f.id, err)
	}
	return
}
