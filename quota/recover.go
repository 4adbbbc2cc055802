package quota

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/dgraph-io/badger/v4"
	"golang.org/x/sys/unix"
)

// recState is what an earlier process left unsettled.
type recState struct {
	marks   []*inode
	intents []*intent
}

// load reads limits, folder counters, dirty marks and intents. Called by
// Open before any other goroutine can see the Manager.
func (m *Manager) load() (*recState, error) {
	rec := &recState{}
	folderOf := func(s ScopeKey, id string) (*scope, *folder) {
		sc := m.scopeLocked(s)
		f := sc.folders[id]
		if f == nil {
			f = sc.newFolder(id)
			m.folderIdx[id] = f
		}
		return sc, f
	}
	err := m.db.View(func(txn *badger.Txn) error {
		each := func(prefix string, fn func(p parsedKey, v []byte) error) error {
			opt := badger.DefaultIteratorOptions
			opt.Prefix = []byte(prefix)
			it := txn.NewIterator(opt)
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				item := it.Item()
				p, err := parseKey(prefix, item.Key())
				if err != nil {
					m.log.Warn().Err(err).Str("key", fmt.Sprintf("%q", item.Key())).Msg("quota: skipping unreadable key")
					continue
				}
				v, err := item.ValueCopy(nil)
				if err != nil {
					return err
				}
				if err := fn(p, v); err != nil {
					m.log.Warn().Err(err).Str("key", fmt.Sprintf("%q", item.Key())).Msg("quota: skipping unreadable record")
				}
			}
			return nil
		}
		err := each(prefLimits, func(p parsedKey, v []byte) error {
			b, i, err := decLimits(v)
			if err != nil {
				return err
			}
			sc := m.scopeLocked(p.Scope)
			sc.limitBytes, sc.limitInodes = b, i
			return nil
		})
		if err != nil {
			return err
		}
		err = each(prefFolder, func(p parsedKey, v []byte) error {
			b, c, err := decCounter(v)
			if err != nil {
				return err
			}
			sc, f := folderOf(p.Scope, p.Folder)
			f.used, f.count, f.pUsed, f.pCount = b, c, b, c
			sc.used += b
			sc.count += c
			return nil
		})
		if err != nil {
			return err
		}
		// mark loads the record of a marked inode; inStore tells that the
		// mark is in the store (else only in the mark table).
		mark := func(s ScopeKey, folder string, k InodeKey, hint string, inStore bool) error {
			sc, f := folderOf(s, folder)
			if in := f.inodes[k]; in != nil {
				if in.hint == "" {
					in.hint = hint
				}
				return nil
			}
			in := &inode{key: k, f: f, rep: -1, unverified: true, hint: hint}
			if inStore {
				in.pMark, in.pHint = true, hint
			}
			item, err := txn.Get(keyInodeIn(prefInode, sc.enc, f.enc, k))
			switch {
			case errors.Is(err, badger.ErrKeyNotFound):
			case err != nil:
				return err
			default:
				if err := item.Value(func(v []byte) error {
					kind, size, x, err := decInode(v)
					if err != nil {
						return err
					}
					in.loadRecord(kind, size, x)
					return nil
				}); err != nil {
					return err
				}
			}
			f.inodes[k] = in
			rec.marks = append(rec.marks, in)
			return nil
		}
		err = each(prefDirty, func(p parsedKey, v []byte) error {
			hint, err := decMark(v)
			if err != nil {
				return err
			}
			return mark(p.Scope, p.Folder, p.Ino, hint, true)
		})
		if err != nil {
			return err
		}
		for _, sm := range m.marks.load() {
			if err := mark(sm.scope, sm.folder, sm.ino, sm.hint, false); err != nil {
				return err
			}
		}
		return each(prefIntent, func(p parsedKey, v []byte) error {
			kind, bytes, hint, err := decIntent(v)
			if err != nil {
				return err
			}
			_, f := folderOf(p.Scope, p.Folder)
			rec.intents = append(rec.intents, &intent{id: p.ID, f: f, kind: kind, bytes: bytes, hint: hint, want: true, persist: true})
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("quota: load ledger: %w", err)
	}
	return rec, nil
}

// recover settles the inodes an earlier process had marked dirty and its
// create intents: each is looked up on storage (by its path hint, else by
// a walk of its folder) and its record set to what is there.
func (m *Manager) recover(rec *recState) {
	if len(rec.marks) == 0 && len(rec.intents) == 0 {
		return
	}
	type group struct {
		f       *folder
		marks   []*inode
		intents []*intent
	}
	groups := map[*folder]*group{}
	var order []*group
	get := func(f *folder) *group {
		g := groups[f]
		if g == nil {
			g = &group{f: f}
			groups[f] = g
			order = append(order, g)
		}
		return g
	}
	for _, in := range rec.marks {
		g := get(in.f)
		g.marks = append(g.marks, in)
	}
	for _, it := range rec.intents {
		g := get(it.f)
		g.intents = append(g.intents, it)
	}
	var st recStats
	for _, g := range order {
		m.recoverFolder(g.f, g.marks, g.intents, &st)
	}
	ev := m.log.Info()
	if st.left > 0 {
		ev = m.log.Warn()
	}
	ev.Int("settled", st.settled).Int("gone", st.gone).Int("unverified", st.left).Int("recorded", st.recorded).
		Int("intents", len(rec.intents)).Msg("quota: recovered inodes left dirty by the previous run")
}

type recStats struct{ settled, gone, left, recorded int }

func (m *Manager) recoverFolder(f *folder, marks []*inode, intents []*intent, stats *recStats) {
	sc := f.sc
	sc.mu.Lock()
	defer sc.mu.Unlock()
	var root *os.File
	err := errors.New("no way to open folders was configured")
	if m.opts.OpenFolder != nil {
		root, err = m.opts.OpenFolder(sc.key, f.id)
	}
	if err != nil {
		if m.opts.OpenFolder != nil && errors.Is(err, fs.ErrNotExist) {
			// The folder is gone, and with it everything in it.
			for _, in := range marks {
				in.unverified = false
				sc.observe(in, func() { sc.remove(in) }) // cluster: found, not made (cluster.go)
				sc.after(in)
				stats.gone++
			}
			for _, it := range intents {
				it.want = false
				sc.queueIntent(it)
			}
			m.log.Warn().Str("scope", sc.key.String()).Str("folder", f.id).Msg("quota: folder of dirty inodes is gone; released them")
			return
		}
		f.stale = append(f.stale, intents...)
		stats.left += len(marks)
		m.log.Warn().Err(err).Str("scope", sc.key.String()).Str("folder", f.id).Int("inodes", len(marks)).
			Msg("quota: cannot open folder; dirty inodes stay unverified until a check")
		return
	}
	defer root.Close()
	fd, rootDev, err := rootOf(root)
	if err != nil {
		f.stale = append(f.stale, intents...)
		stats.left += len(marks)
		m.log.Warn().Err(err).Str("folder", f.id).Msg("quota: cannot open folder root; dirty inodes stay unverified until a check")
		return
	}
	defer unix.Close(fd)

	var rst unix.Stat_t
	if err := unix.Fstat(fd, &rst); err != nil {
		f.stale = append(f.stale, intents...)
		stats.left += len(marks)
		m.log.Warn().Err(err).Str("folder", f.id).Msg("quota: cannot stat folder root; dirty inodes stay unverified until a check")
		return
	}
	rootKey := MakeKey(rootDev, rst.Dev, rst.Ino)

	// Directories settled here, by path ("" for the root): scanned at the
	// end for entries without a record.
	var dirs []string
	settle := func(in *inode, o *object, path string) {
		kind := o.kind
		if in.key == rootKey {
			kind, path = KindRoot, ""
		}
		in.unverified = false
		in.ops++
		sc.setExists(in, true, kind, o.st.Size)
		in.xattr = o.x
		sc.recharge(in)
		sc.after(in)
		stats.settled++
		if kind == KindDir || kind == KindRoot {
			dirs = append(dirs, path)
		}
	}
	pending := map[InodeKey]*inode{}
	for _, in := range marks {
		var o object
		if in.key == rootKey {
			if inspectFd(fd, &o) == nil {
				settle(in, &o, "")
				continue
			}
		} else if in.hint != "" && inspectHint(fd, in.hint, &o) == nil && MakeKey(rootDev, o.st.Dev, o.st.Ino) == in.key {
			settle(in, &o, in.hint)
			continue
		}
		pending[in.key] = in
	}
	for _, it := range intents {
		var st unix.Stat_t
		err := statHint(fd, it.hint, &st)
		if isGone(err) {
			it.want = false
			sc.queueIntent(it)
			continue
		}
		if err != nil {
			f.stale = append(f.stale, it)
			continue
		}
		in, err := sc.getInode(f, MakeKey(rootDev, st.Dev, st.Ino))
		if err != nil {
			f.stale = append(f.stale, it)
			continue
		}
		// Created, but maybe not recorded: whatever record the inode
		// number has (none, or a stale one of an empty object removed just
		// before whose removal was not committed) the object there is
		// what counts. The intent goes with the record's write.
		in.ops++
		sc.setExists(in, true, KindOf(st.Mode), st.Size)
		in.intents = append(in.intents, it.id)
		sc.after(in)
	}
	if len(pending) > 0 {
		m.recoverPending(f, fd, rootDev, pending, settle, stats)
	}
	// cluster: an entry without a record in a directory this node was
	// changing may as well be another node's: the cluster check after the
	// unclean start settles those instead (cluster.go).
	if m.opts.Grants != nil {
		return
	}
	for _, d := range dirs {
		m.recordEntries(f, fd, rootDev, d, stats)
	}
}

// recoverPending finds the marked inodes whose hint is missing or stale
// (renamed, removed) with one walk of the folder: found ones are settled,
// the others are gone if the walk was complete. sc.mu is held; it is
// released during the walk.
func (m *Manager) recoverPending(f *folder, fd int, rootDev uint64, pending map[InodeKey]*inode, settle func(*inode, *object, string), stats *recStats) {
	sc := f.sc
	found := map[InodeKey]string{}
	w := newWalker(context.Background(), func(_ int, parent, name string, st *unix.Stat_t) error {
		if k := MakeKey(rootDev, st.Dev, st.Ino); pending[k] != nil {
			found[k] = join(parent, name)
		}
		return nil
	})
	sc.mu.Unlock()
	werr := w.run(fd)
	sc.mu.Lock()
	for k, in := range pending {
		if path, ok := found[k]; ok {
			var o object
			p, n := splitHint(path)
			if err := inspectAt(fd, p, n, &o); err == nil && MakeKey(rootDev, o.st.Dev, o.st.Ino) == k {
				settle(in, &o, path)
				continue
			}
			stats.left++
			continue
		}
		if werr == nil && !w.incomplete {
			in.unverified = false
			sc.observe(in, func() { sc.remove(in) }) // cluster: found, not made (cluster.go)
			sc.after(in)
			stats.gone++
			continue
		}
		stats.left++
	}
	if werr != nil || w.incomplete {
		m.log.Warn().Err(werr).Strs("errors", w.errs).Str("folder", f.id).Msg("quota: folder walk incomplete; some dirty inodes stay unverified until a check")
	}
}

// recordEntries records the entries of a directory that was marked when
// the previous process died and that the ledger does not know: objects
// created in it whose record was not yet written. (Its entries with a
// record are right: their own marks cover their changes.) rel is the
// directory's path, "" for the folder root. sc.mu is held.
func (m *Manager) recordEntries(f *folder, root int, rootDev uint64, rel string, stats *recStats) {
	sc := f.sc
	if rel == "" {
		rel = "."
	}
	dfd, err := openDir(root, rel)
	if err != nil {
		if !isGone(err) {
			m.log.Warn().Err(err).Str("folder", f.id).Str("dir", rel).Msg("quota: cannot read a directory left dirty; a check will settle its entries")
		}
		return
	}
	defer unix.Close(dfd)
	names, err := readNames(dfd, make([]byte, 64<<10))
	if err != nil {
		m.log.Warn().Err(err).Str("folder", f.id).Str("dir", rel).Msg("quota: cannot read a directory left dirty; a check will settle its entries")
	}
	for _, name := range names {
		var st unix.Stat_t
		if fstatat(dfd, name, &st) != nil {
			continue
		}
		kind := KindOf(st.Mode)
		in, err := sc.getInode(f, MakeKey(rootDev, st.Dev, st.Ino))
		if err != nil {
			continue
		}
		if in.unverified || (in.exists && in.kind == kind) {
			sc.after(in) // loaded for the look: evicted again
			continue
		}
		var x int64
		if kindHasXattrs(kind) {
			if x, err = xattrBytesAt(dfd, name); err != nil {
				continue
			}
		}
		in.ops++
		in.gen++
		sc.setExists(in, true, kind, st.Size)
		in.xattr = x
		sc.recharge(in)
		sc.after(in)
		stats.recorded++
	}
}
