package meta

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/ristretto/v2/z"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// Errors specific to the stores in this package.
var (
	// ErrSchemaTooNew is returned by OpenBadger for a database written by a
	// newer version of vfolder.
	ErrSchemaTooNew = errors.New("metadata schema is newer than this build understands")
	// ErrCorrupt is returned by Verify when indexes and records disagree.
	ErrCorrupt = errors.New("metadata store is inconsistent")
)

// BadgerSchemaVersion is the layout version of the keys below "m/" that this
// build writes. OpenBadger refuses databases with a higher version.
const BadgerSchemaVersion = 1

// Key layout. Everything this package writes lives below "m/"; other
// packages may keep their own keys in the same database under other
// prefixes (package quota uses "q/").
//
//	m/schema                      decimal schema version
//	m/vol/<volume>                Volume (JSON)
//	m/scope/<volume>/<scope-id>   QuotaScope (JSON)
//	m/folder/<id>                 Folder (JSON)
//	m/name/<owner>/<name>         id of the owner's folder of that name
//	m/count/<owner>               decimal number of folder records of owner
//	m/policy/<owner>              Policy (JSON)
//	m/member/<project>/<user>     Membership (JSON)
//	m/memberof/<user>/<project>   empty: index of the memberships of a user
//	m/session/<id>                Session (JSON)
//	m/sessfolder/<folder>/<id>    empty: index of the sessions mounting a folder
//
// Volume names, owner ids, UUIDs and session ids never contain '/', folder
// names neither, so every prefix above is unambiguous. The two indexes
// are written in the transaction that writes their record.
const (
	keySchema       = "m/schema"
	prefixVolume    = "m/vol/"
	prefixScope     = "m/scope/"
	prefixFolder    = "m/folder/"
	prefixName      = "m/name/"
	prefixCount     = "m/count/"
	prefixPolicy    = "m/policy/"
	prefixMember    = "m/member/"
	prefixMemberOf  = "m/memberof/"
	prefixSession   = "m/session/"
	prefixSessionOf = "m/sessfolder/"
)

func memberKey(project, user string) []byte { return []byte(prefixMember + project + "/" + user) }

func memberOfKey(user, project string) []byte { return []byte(prefixMemberOf + user + "/" + project) }

func sessionKey(id string) []byte { return []byte(prefixSession + id) }

func sessionOfKey(folder, id string) []byte { return []byte(prefixSessionOf + folder + "/" + id) }

func volumeKey(name string) []byte { return []byte(prefixVolume + name) }

func scopeRecordKey(volume string, id ScopeID) []byte {
	return []byte(prefixScope + volume + "/" + id.String())
}

func folderKey(id string) []byte { return []byte(prefixFolder + id) }

func nameKey(owner ScopeID, name string) []byte {
	return []byte(prefixName + owner.String() + "/" + name)
}

func namePrefix(owner ScopeID) []byte { return []byte(prefixName + owner.String() + "/") }

func countKey(owner ScopeID) []byte { return []byte(prefixCount + owner.String()) }

func policyKey(owner ScopeID) []byte { return []byte(prefixPolicy + owner.String()) }

// errorf wraps base with a formatted detail: "<base>: <detail>".
func errorf(base error, format string, a ...any) error {
	return fmt.Errorf("%w: %s", base, fmt.Sprintf(format, a...))
}

// maxTxnAttempts bounds how often a transaction that lost a conflict to a
// concurrent one is run again before ErrConflict is returned.
const maxTxnAttempts = 100

// Badger is the Store on an embedded badger database in a node-local
// directory.
//
// Every method is one badger transaction, synced to disk (DB.Sync) before
// a write method returns nil: the change is on disk, and a process killed
// at any instant leaves either all or none of a transaction's keys. The
// database itself runs without SyncWrites, so that the quota ledger
// sharing it can commit often without a disk flush each time (see package
// quota). Uniqueness of
// folder names and the folder count limit rest on badger's conflict
// detection: the name index key and the owner's count key are read and
// written inside the creating transaction, so of two racing transactions
// the later committer fails with a conflict and is run again from scratch
// (up to maxTxnAttempts times, with a short random back-off), at which
// point it sees the winner's keys. Consequently the callbacks of
// UpdateScope and UpdateFolder may run more than once; each run gets a
// fresh copy of the stored record and only the last run's result is
// written. Callbacks must not call back into the store.
//
// Every folder record counts toward the owner's limit, trashed ones
// included, until DeleteFolder removes it.
type Badger struct {
	db  *badger.DB
	dir string
	log zerolog.Logger

	mu     sync.RWMutex // held shared by every method, exclusively by Close
	closed bool
}

var _ Store = (*Badger)(nil)

// OpenBadger opens (creating if needed) the metadata database in dir.
// If another process has the directory open the error wraps ErrLocked and
// names the directory. A database of a newer schema is refused with
// ErrSchemaTooNew.
func OpenBadger(dir string, log zerolog.Logger) (*Badger, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("meta: state directory %q: %w", dir, err)
	}
	log = log.With().Str("component", "meta").Logger()
	db, err := openDB(badgerOptions(abs, log), log)
	if err != nil {
		if lockHeld(abs, err) {
			holder := ""
			if pid, rerr := os.ReadFile(filepath.Join(abs, "LOCK")); rerr == nil && len(bytes.TrimSpace(pid)) > 0 {
				holder = " (pid " + string(bytes.TrimSpace(pid)) + ")"
			}
			return nil, fmt.Errorf("meta: %s%s: %w", abs, holder, ErrLocked)
		}
		return nil, fmt.Errorf("meta: open database in %s: %w", abs, err)
	}
	b := &Badger{db: db, dir: abs, log: log}
	if err := b.checkSchema(); err != nil {
		db.Close()
		return nil, err
	}
	log.Debug().Str("dir", abs).Msg("metadata store open")
	return b, nil
}

// Sizes of badger's files. Badger maps its memtable logs (2 x
// BadgerMemTableSize each, sparse) and writes its tables through maps
// too: a store into a page the file system cannot allocate kills the
// process (SIGBUS), so what badger may still need to write is space the
// daemon keeps free on the state disk (see internal/statedisk). The
// records are small (the largest is a session, a few KiB), so a small
// memtable costs nothing measurable (BenchmarkBadgerMemTableSize) and
// keeps that reserve small.
const (
	BadgerMemTableSize     = 4 << 20
	BadgerValueLogFileSize = 16 << 20
	// badgerValueThreshold keeps every record in the LSM tree (none is
	// near 64 KiB); badger wants it below 15% of the memtable.
	badgerValueThreshold = 64 << 10
)

// badgerOptions are the options of the metadata database in dir.
func badgerOptions(dir string, log zerolog.Logger) badger.Options {
	return badger.DefaultOptions(dir).
		WithLogger(badgerLogger{log.With().Str("sub", "badger").Logger()}).
		WithSyncWrites(false).
		WithNumVersionsToKeep(1).
		WithValueLogFileSize(BadgerValueLogFileSize).
		WithMemTableSize(BadgerMemTableSize).
		WithValueThreshold(badgerValueThreshold).
		WithBlockCacheSize(32 << 20).
		WithNumCompactors(2).
		WithDetectConflicts(true)
}

// openDB opens the database, working around a badger recovery bug: a
// process killed right after creating a memtable or value log file leaves
// it empty, and the next badger.Open bootstraps that file but still fails
// with z.NewFile ("Create a new file"); opening again then succeeds
// (upstream issue 2207 of badger). Each attempt repairs at least one file,
// so a few attempts are enough.
func openDB(opts badger.Options, log zerolog.Logger) (*badger.DB, error) {
	const attempts = 4
	for i := 1; ; i++ {
		db, err := badger.Open(opts)
		if err == nil || i == attempts || !strings.Contains(err.Error(), z.NewFile.Error()) {
			return db, err
		}
		log.Warn().Err(err).Str("dir", opts.Dir).Msg("reopening database after recovering a file left empty by a crash")
	}
}

// lockHeld tells whether badger.Open failed because another process holds
// the directory lock. Badger flattens the flock error into a string, so
// besides looking at the error the directory is probed with flock itself.
func lockHeld(dir string, err error) bool {
	if errors.Is(err, syscall.EWOULDBLOCK) || strings.Contains(err.Error(), "Cannot acquire directory lock") {
		return true
	}
	f, oerr := os.Open(dir)
	if oerr != nil {
		return false
	}
	defer f.Close()
	switch ferr := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); ferr {
	case nil:
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		return false
	case unix.EWOULDBLOCK:
		return true
	}
	return false
}

func (b *Badger) checkSchema() error {
	err := b.db.Update(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(keySchema))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return txn.Set([]byte(keySchema), []byte(strconv.Itoa(BadgerSchemaVersion)))
		}
		if err != nil {
			return fmt.Errorf("meta: %s: read schema version: %w", b.dir, err)
		}
		raw, err := item.ValueCopy(nil)
		if err != nil {
			return fmt.Errorf("meta: %s: read schema version: %w", b.dir, err)
		}
		v, err := strconv.Atoi(string(raw))
		if err != nil || v < 1 {
			return fmt.Errorf("meta: %s: schema version %q is not a positive number: %w", b.dir, raw, ErrCorrupt)
		}
		if v > BadgerSchemaVersion {
			return fmt.Errorf("meta: %s holds metadata schema version %d, this build understands up to %d; use a newer vfolderd: %w",
				b.dir, v, BadgerSchemaVersion, ErrSchemaTooNew)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return b.db.Sync()
}

// DB returns the underlying database so that other packages can keep their
// own keys in it (never below "m/"). It is closed by Close.
func (b *Badger) DB() *badger.DB { return b.db }

// Dir returns the absolute directory of the database.
func (b *Badger) Dir() string { return b.dir }

// Close closes the database after in-flight methods have finished. Users
// of DB must be done with it before. Closing again is a no-op.
func (b *Badger) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	if err := b.db.Close(); err != nil {
		return fmt.Errorf("meta: close %s: %w", b.dir, err)
	}
	return nil
}

// view runs fn in a read-only transaction.
func (b *Badger) view(ctx context.Context, fn func(txn *badger.Txn) error) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return b.db.View(fn)
}

// update runs fn in a read-write transaction and commits it, running it
// again when the commit loses a conflict to a concurrent transaction.
func (b *Badger) update(ctx context.Context, fn func(txn *badger.Txn) error) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return ErrClosed
	}
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		txn := b.db.NewTransaction(true)
		err := fn(txn)
		if err == nil {
			err = txn.Commit()
		}
		txn.Discard()
		if err == nil {
			if err = b.db.Sync(); err != nil {
				return fmt.Errorf("meta: sync database: %w", err)
			}
			return nil
		}
		if !errors.Is(err, badger.ErrConflict) {
			return err
		}
		if attempt >= maxTxnAttempts {
			return fmt.Errorf("%w: transaction lost %d conflicts in a row", ErrConflict, attempt)
		}
		backoff := time.Duration(rand.Int64N(int64(min(attempt, 20)) * int64(100*time.Microsecond)))
		b.log.Trace().Int("attempt", attempt).Dur("backoff", backoff).Msg("transaction conflict, retrying")
		time.Sleep(backoff)
	}
}

// getJSON reads key into v; found is false if the key is absent.
func getJSON(txn *badger.Txn, key []byte, v any) (found bool, err error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	err = item.Value(func(raw []byte) error { return json.Unmarshal(raw, v) })
	if err != nil {
		return false, fmt.Errorf("%w: key %q: %v", ErrCorrupt, key, err)
	}
	return true, nil
}

func setJSON(txn *badger.Txn, key []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return txn.Set(key, raw)
}

// getString reads a small value; found is false if the key is absent.
func getString(txn *badger.Txn, key []byte) (string, bool, error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	raw, err := item.ValueCopy(nil)
	return string(raw), true, err
}

func getCount(txn *badger.Txn, owner ScopeID) (int, error) {
	s, ok, err := getString(txn, countKey(owner))
	if err != nil || !ok {
		return 0, err
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%w: folder count of %s is %q", ErrCorrupt, owner, s)
	}
	return n, nil
}

func setCount(txn *badger.Txn, owner ScopeID, n int) error {
	if n <= 0 {
		return txn.Delete(countKey(owner))
	}
	return txn.Set(countKey(owner), []byte(strconv.Itoa(n)))
}

// scan calls fn with the key and value of every key below prefix, in key
// order.
func scan(txn *badger.Txn, prefix []byte, fn func(key, val []byte) error) error {
	opts := badger.DefaultIteratorOptions
	opts.Prefix = prefix
	it := txn.NewIterator(opts)
	defer it.Close()
	for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
		item := it.Item()
		key := item.KeyCopy(nil)
		if err := item.Value(func(val []byte) error { return fn(key, val) }); err != nil {
			return err
		}
	}
	return nil
}

// scanJSON decodes every value below prefix, in key order, keeping those
// keep accepts (all if keep is nil).
func scanJSON[T any](txn *badger.Txn, prefix []byte, keep func(T) bool) ([]T, error) {
	out := []T{}
	err := scan(txn, prefix, func(key, val []byte) error {
		var v T
		if err := json.Unmarshal(val, &v); err != nil {
			return fmt.Errorf("%w: key %q: %v", ErrCorrupt, key, err)
		}
		if keep == nil || keep(v) {
			out = append(out, v)
		}
		return nil
	})
	return out, err
}

// PutVolume creates or replaces a volume record.
func (b *Badger) PutVolume(ctx context.Context, v Volume) error {
	if err := checkVolume(v); err != nil {
		return err
	}
	return b.update(ctx, func(txn *badger.Txn) error { return setJSON(txn, volumeKey(v.Name), v) })
}

// GetVolume returns the named volume.
func (b *Badger) GetVolume(ctx context.Context, name string) (Volume, error) {
	var v Volume
	err := b.view(ctx, func(txn *badger.Txn) error {
		if checkVolumeName(name) != nil {
			return errorf(ErrNotFound, "volume %q", name)
		}
		ok, err := getJSON(txn, volumeKey(name), &v)
		if err == nil && !ok {
			err = errorf(ErrNotFound, "volume %q", name)
		}
		return err
	})
	if err != nil {
		return Volume{}, err
	}
	return v, nil
}

// ListVolumes returns all volumes ordered by name.
func (b *Badger) ListVolumes(ctx context.Context) ([]Volume, error) {
	var out []Volume
	err := b.view(ctx, func(txn *badger.Txn) (err error) {
		out, err = scanJSON[Volume](txn, []byte(prefixVolume), nil)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// CreateScope creates a quota scope; ErrExists if it is there.
func (b *Badger) CreateScope(ctx context.Context, s QuotaScope) error {
	s, err := prepareNewScope(s)
	if err != nil {
		return err
	}
	key := scopeRecordKey(s.Volume, s.ID)
	return b.update(ctx, func(txn *badger.Txn) error {
		if _, err := txn.Get(key); err == nil {
			return errorf(ErrExists, "quota scope %s on volume %q", s.ID, s.Volume)
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		return setJSON(txn, key, s)
	})
}

// GetScope returns one quota scope.
func (b *Badger) GetScope(ctx context.Context, volume string, id ScopeID) (QuotaScope, error) {
	var s QuotaScope
	err := b.view(ctx, func(txn *badger.Txn) error {
		if err := checkOwner(id); err != nil {
			return err
		}
		if checkVolumeName(volume) != nil {
			return errorf(ErrNotFound, "quota scope %s on volume %q", id, volume)
		}
		ok, err := getJSON(txn, scopeRecordKey(volume, id), &s)
		if err == nil && !ok {
			err = errorf(ErrNotFound, "quota scope %s on volume %q", id, volume)
		}
		return err
	})
	if err != nil {
		return QuotaScope{}, err
	}
	return s, nil
}

// UpdateScope applies fn to a copy of the stored scope and stores the result
// if fn succeeds and the result is valid. fn may run more than once (see
// Badger).
func (b *Badger) UpdateScope(ctx context.Context, volume string, id ScopeID, fn func(*QuotaScope) error) (QuotaScope, error) {
	if err := checkOwner(id); err != nil {
		return QuotaScope{}, err
	}
	var res QuotaScope
	err := b.update(ctx, func(txn *badger.Txn) error {
		if checkVolumeName(volume) != nil {
			return errorf(ErrNotFound, "quota scope %s on volume %q", id, volume)
		}
		key := scopeRecordKey(volume, id)
		var old QuotaScope
		ok, err := getJSON(txn, key, &old)
		if err != nil {
			return err
		}
		if !ok {
			return errorf(ErrNotFound, "quota scope %s on volume %q", id, volume)
		}
		s := old
		if err := fn(&s); err != nil {
			return err
		}
		if s, err = finishScopeUpdate(old, s); err != nil {
			return err
		}
		res = s
		return setJSON(txn, key, s)
	})
	if err != nil {
		return QuotaScope{}, err
	}
	return res, nil
}

// ListScopes returns the scopes of one volume ordered by id, or of every
// volume (ordered by volume, then id) when volume is "".
func (b *Badger) ListScopes(ctx context.Context, volume string) ([]QuotaScope, error) {
	var out []QuotaScope
	err := b.view(ctx, func(txn *badger.Txn) (err error) {
		prefix := prefixScope
		if volume != "" {
			if checkVolumeName(volume) != nil {
				out = []QuotaScope{}
				return nil
			}
			prefix += volume + "/"
		}
		out, err = scanJSON[QuotaScope](txn, []byte(prefix), nil)
		return err
	})
	if err != nil {
		return nil, err
	}
	sortScopes(out)
	return out, nil
}

// CreateFolder stores a new folder (see Store).
func (b *Badger) CreateFolder(ctx context.Context, f Folder, maxCount int) error {
	f, err := prepareNewFolder(f, maxCount)
	if err != nil {
		return err
	}
	return b.update(ctx, func(txn *badger.Txn) error {
		if _, err := txn.Get(folderKey(f.ID)); err == nil {
			return errorf(ErrExists, "folder id %s", f.ID)
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		nk := nameKey(f.Owner, f.Name)
		if id, ok, err := getString(txn, nk); err != nil {
			return err
		} else if ok {
			return errorf(ErrExists, "%s already has a folder named %q (id %s)", f.Owner, f.Name, id)
		}
		n, err := getCount(txn, f.Owner)
		if err != nil {
			return err
		}
		if maxCount > 0 && n >= maxCount {
			return errorf(ErrLimitExceeded, "%s has %d folders; the limit is %d", f.Owner, n, maxCount)
		}
		if err := setJSON(txn, folderKey(f.ID), f); err != nil {
			return err
		}
		if err := txn.Set(nk, []byte(f.ID)); err != nil {
			return err
		}
		return setCount(txn, f.Owner, n+1)
	})
}

// getFolder reads a folder record by canonical id.
func getFolder(txn *badger.Txn, id string) (Folder, error) {
	var f Folder
	ok, err := getJSON(txn, folderKey(id), &f)
	if err != nil {
		return Folder{}, err
	}
	if !ok {
		return Folder{}, errorf(ErrNotFound, "folder %s", id)
	}
	return f, nil
}

// GetFolder returns a folder by id (32-hex or dashed, any case).
func (b *Badger) GetFolder(ctx context.Context, id string) (Folder, error) {
	id, err := parseFolderID(id)
	if err != nil {
		return Folder{}, err
	}
	var f Folder
	err = b.view(ctx, func(txn *badger.Txn) (err error) {
		f, err = getFolder(txn, id)
		return err
	})
	if err != nil {
		return Folder{}, err
	}
	return f, nil
}

// FolderByName finds an owner's folder by name.
func (b *Badger) FolderByName(ctx context.Context, owner ScopeID, name string) (Folder, error) {
	if err := checkOwner(owner); err != nil {
		return Folder{}, err
	}
	var f Folder
	err := b.view(ctx, func(txn *badger.Txn) error {
		id, ok, err := getString(txn, nameKey(owner, name))
		if err != nil {
			return err
		}
		if !ok {
			return errorf(ErrNotFound, "%s has no folder named %q", owner, name)
		}
		f, err = getFolder(txn, id)
		if errors.Is(err, ErrNotFound) {
			return errorf(ErrCorrupt, "name %q of %s points to missing folder %s", name, owner, id)
		}
		return err
	})
	if err != nil {
		return Folder{}, err
	}
	return f, nil
}

// ListFolders returns the folders matching filter, ordered by owner, then name.
func (b *Badger) ListFolders(ctx context.Context, filter FolderFilter) ([]Folder, error) {
	if err := checkFilter(filter); err != nil {
		return nil, err
	}
	var out []Folder
	err := b.view(ctx, func(txn *badger.Txn) (err error) {
		if filter.Owner == nil {
			out, err = scanJSON(txn, []byte(prefixFolder), filter.match)
			return err
		}
		// One owner: walk its name index, which is already in name order.
		out = []Folder{}
		return scan(txn, namePrefix(*filter.Owner), func(key, val []byte) error {
			f, err := getFolder(txn, string(val))
			if errors.Is(err, ErrNotFound) {
				return errorf(ErrCorrupt, "name index %q points to missing folder %s", key, val)
			}
			if err != nil {
				return err
			}
			if filter.match(f) {
				out = append(out, f)
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	sortFolders(out)
	return out, nil
}

// UpdateFolder applies fn to a copy of the folder (see Store). fn may run
// more than once (see Badger).
func (b *Badger) UpdateFolder(ctx context.Context, id string, fn func(*Folder) error) (Folder, error) {
	id, err := parseFolderID(id)
	if err != nil {
		return Folder{}, err
	}
	var res Folder
	err = b.update(ctx, func(txn *badger.Txn) error {
		old, err := getFolder(txn, id)
		if err != nil {
			return err
		}
		f := old
		if err := fn(&f); err != nil {
			return err
		}
		if f, err = finishFolderUpdate(old, f); err != nil {
			return err
		}
		if f.Name != old.Name {
			nk := nameKey(f.Owner, f.Name)
			if other, ok, err := getString(txn, nk); err != nil {
				return err
			} else if ok {
				return errorf(ErrExists, "%s already has a folder named %q (id %s)", f.Owner, f.Name, other)
			}
			if err := txn.Delete(nameKey(old.Owner, old.Name)); err != nil {
				return err
			}
			if err := txn.Set(nk, []byte(f.ID)); err != nil {
				return err
			}
		}
		res = f
		return setJSON(txn, folderKey(id), f)
	})
	if err != nil {
		return Folder{}, err
	}
	return res, nil
}

// DeleteFolder removes a folder record; its name is free again.
func (b *Badger) DeleteFolder(ctx context.Context, id string) error {
	id, err := parseFolderID(id)
	if err != nil {
		return err
	}
	return b.update(ctx, func(txn *badger.Txn) error {
		f, err := getFolder(txn, id)
		if err != nil {
			return err
		}
		n, err := getCount(txn, f.Owner)
		if err != nil {
			return err
		}
		if err := txn.Delete(folderKey(id)); err != nil {
			return err
		}
		if err := txn.Delete(nameKey(f.Owner, f.Name)); err != nil {
			return err
		}
		return setCount(txn, f.Owner, n-1)
	})
}

// GetPolicy returns the owner's policy, or the zero Policy if none is set.
func (b *Badger) GetPolicy(ctx context.Context, owner ScopeID) (Policy, error) {
	if err := checkOwner(owner); err != nil {
		return Policy{}, err
	}
	var p Policy
	err := b.view(ctx, func(txn *badger.Txn) error {
		_, err := getJSON(txn, policyKey(owner), &p)
		return err
	})
	if err != nil {
		return Policy{}, err
	}
	return p, nil
}

// SetPolicy sets the owner's policy; the zero Policy removes it.
func (b *Badger) SetPolicy(ctx context.Context, owner ScopeID, p Policy) error {
	if err := checkOwner(owner); err != nil {
		return err
	}
	if err := checkPolicy(p); err != nil {
		return err
	}
	p = normPolicy(p)
	return b.update(ctx, func(txn *badger.Txn) error {
		if p.IsZero() {
			return txn.Delete(policyKey(owner))
		}
		return setJSON(txn, policyKey(owner), p)
	})
}

// SetMembership creates or replaces a membership.
func (b *Badger) SetMembership(ctx context.Context, m Membership) error {
	if err := checkMembership(m); err != nil {
		return err
	}
	return b.update(ctx, func(txn *badger.Txn) error {
		if err := setJSON(txn, memberKey(m.Project, m.User), m); err != nil {
			return err
		}
		return txn.Set(memberOfKey(m.User, m.Project), nil)
	})
}

// RemoveMembership removes a membership; ErrNotFound if there is none.
func (b *Badger) RemoveMembership(ctx context.Context, project, user string) error {
	project, user, err := parseMemberArgs(project, user)
	if err != nil {
		return err
	}
	return b.update(ctx, func(txn *badger.Txn) error {
		key := memberKey(project, user)
		if _, err := txn.Get(key); errors.Is(err, badger.ErrKeyNotFound) {
			return errorf(ErrNotFound, "user %s is not a member of project %s", user, project)
		} else if err != nil {
			return err
		}
		if err := txn.Delete(key); err != nil {
			return err
		}
		return txn.Delete(memberOfKey(user, project))
	})
}

// ListMembers returns the memberships of a project, ordered by user: one
// prefix scan.
func (b *Badger) ListMembers(ctx context.Context, project string) ([]Membership, error) {
	project, err := parseMemberArg("project", project)
	if err != nil {
		return nil, err
	}
	var out []Membership
	err = b.view(ctx, func(txn *badger.Txn) (err error) {
		out, err = scanJSON[Membership](txn, []byte(prefixMember+project+"/"), nil)
		return err
	})
	if err != nil {
		return nil, err
	}
	sortByUser(out)
	return out, nil
}

// ProjectsOf returns the memberships of a user, ordered by project: a
// prefix scan of the user index and one read per membership.
func (b *Badger) ProjectsOf(ctx context.Context, user string) ([]Membership, error) {
	user, err := parseMemberArg("user", user)
	if err != nil {
		return nil, err
	}
	out := []Membership{}
	err = b.view(ctx, func(txn *badger.Txn) error {
		prefix := prefixMemberOf + user + "/"
		return scanKeys(txn, []byte(prefix), func(key []byte) error {
			project := strings.TrimPrefix(string(key), prefix)
			var m Membership
			ok, err := getJSON(txn, memberKey(project, user), &m)
			if err != nil {
				return err
			}
			if !ok {
				return errorf(ErrCorrupt, "user index %q points to a missing membership", key)
			}
			out = append(out, m)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	sortByProject(out)
	return out, nil
}

// scanKeys calls fn with every key below prefix, in key order, without
// reading values.
func scanKeys(txn *badger.Txn, prefix []byte, fn func(key []byte) error) error {
	opts := badger.DefaultIteratorOptions
	opts.Prefix = prefix
	opts.PrefetchValues = false
	it := txn.NewIterator(opts)
	defer it.Close()
	for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
		if err := fn(it.Item().KeyCopy(nil)); err != nil {
			return err
		}
	}
	return nil
}

func getSession(txn *badger.Txn, id string) (Session, bool, error) {
	var s Session
	ok, err := getJSON(txn, sessionKey(id), &s)
	if err != nil || !ok {
		return Session{}, false, err
	}
	return copySession(s), true, nil
}

// PutSession creates or replaces a session record and, in the same
// transaction, its folder index entries.
func (b *Badger) PutSession(ctx context.Context, s Session) error {
	if err := ValidateSession(s); err != nil {
		return err
	}
	return b.update(ctx, func(txn *badger.Txn) error {
		old, found, err := getSession(txn, s.ID)
		if err != nil {
			return err
		}
		var oldp *Session
		if found {
			oldp = &old
		}
		rec, err := prepareSession(s, oldp)
		if err != nil {
			return err
		}
		if found {
			for _, f := range sessionFolders(old) {
				if err := txn.Delete(sessionOfKey(f, old.ID)); err != nil {
					return err
				}
			}
		}
		for _, f := range sessionFolders(rec) {
			if err := txn.Set(sessionOfKey(f, rec.ID), nil); err != nil {
				return err
			}
		}
		return setJSON(txn, sessionKey(rec.ID), rec)
	})
}

// GetSession returns a session; ErrNotFound if there is none.
func (b *Badger) GetSession(ctx context.Context, id string) (Session, error) {
	id, err := parseSessionID(id)
	if err != nil {
		return Session{}, err
	}
	var s Session
	err = b.view(ctx, func(txn *badger.Txn) error {
		var found bool
		var err error
		s, found, err = getSession(txn, id)
		if err == nil && !found {
			err = errorf(ErrNotFound, "session %s", id)
		}
		return err
	})
	if err != nil {
		return Session{}, err
	}
	return s, nil
}

// ListSessions returns every session, ordered by id.
func (b *Badger) ListSessions(ctx context.Context) ([]Session, error) {
	var out []Session
	err := b.view(ctx, func(txn *badger.Txn) (err error) {
		out, err = scanJSON[Session](txn, []byte(prefixSession), nil)
		return err
	})
	if err != nil {
		return nil, err
	}
	for i := range out {
		out[i] = copySession(out[i])
	}
	sortSessions(out)
	return out, nil
}

// DeleteSession removes a session and, in the same transaction, its folder
// index entries.
func (b *Badger) DeleteSession(ctx context.Context, id string) error {
	id, err := parseSessionID(id)
	if err != nil {
		return err
	}
	return b.update(ctx, func(txn *badger.Txn) error {
		s, found, err := getSession(txn, id)
		if err != nil {
			return err
		}
		if !found {
			return errorf(ErrNotFound, "session %s", id)
		}
		for _, f := range sessionFolders(s) {
			if err := txn.Delete(sessionOfKey(f, id)); err != nil {
				return err
			}
		}
		return txn.Delete(sessionKey(id))
	})
}

// SessionsUsingFolder returns the ids of the sessions mounting a folder:
// one prefix scan of the folder index.
func (b *Badger) SessionsUsingFolder(ctx context.Context, folderID string) ([]string, error) {
	folderID, err := parseFolderID(folderID)
	if err != nil {
		return nil, err
	}
	out := []string{}
	err = b.view(ctx, func(txn *badger.Txn) error {
		prefix := prefixSessionOf + folderID + "/"
		return scanKeys(txn, []byte(prefix), func(key []byte) error {
			out = append(out, strings.TrimPrefix(string(key), prefix))
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Verify checks, in one read transaction, that every folder record is
// well-formed and has its name index entry, that every name index entry
// points to a folder of that owner and name, that the per-owner counts
// match the records, that memberships and the user index match one to
// one, and that session records and the folder index match one to one.
// It returns an error wrapping ErrCorrupt if not. vfolderd can run it at
// start; tests run it after crashes.
func (b *Badger) Verify(ctx context.Context) error {
	return b.view(ctx, func(txn *badger.Txn) error {
		if err := verifyMembers(txn); err != nil {
			return err
		}
		if err := verifySessions(txn); err != nil {
			return err
		}
		if err := verifySSHKeys(txn); err != nil {
			return err
		}
		folders := map[string]Folder{}
		counts := map[string]int{}
		err := scan(txn, []byte(prefixFolder), func(key, val []byte) error {
			var f Folder
			if err := json.Unmarshal(val, &f); err != nil {
				return errorf(ErrCorrupt, "key %q: %v", key, err)
			}
			if id := strings.TrimPrefix(string(key), prefixFolder); id != f.ID {
				return errorf(ErrCorrupt, "folder stored under %q has id %q", id, f.ID)
			}
			if err := checkFolder(f); err != nil {
				return errorf(ErrCorrupt, "folder %s: %v", f.ID, err)
			}
			folders[f.ID] = f
			counts[f.Owner.String()]++
			return nil
		})
		if err != nil {
			return err
		}
		names := 0
		err = scan(txn, []byte(prefixName), func(key, val []byte) error {
			names++
			owner, name, _ := strings.Cut(strings.TrimPrefix(string(key), prefixName), "/")
			f, ok := folders[string(val)]
			if !ok {
				return errorf(ErrCorrupt, "name index %q points to missing folder %s", key, val)
			}
			if f.Owner.String() != owner || f.Name != name {
				return errorf(ErrCorrupt, "name index %q points to folder %s named %q of %s", key, val, f.Name, f.Owner)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if names != len(folders) {
			return errorf(ErrCorrupt, "%d name index entries for %d folders", names, len(folders))
		}
		seen := 0
		err = scan(txn, []byte(prefixCount), func(key, val []byte) error {
			owner := strings.TrimPrefix(string(key), prefixCount)
			n, err := strconv.Atoi(string(val))
			if err != nil || n != counts[owner] {
				return errorf(ErrCorrupt, "folder count of %s is %q, but it has %d folders", owner, val, counts[owner])
			}
			seen++
			return nil
		})
		if err != nil {
			return err
		}
		if seen != len(counts) {
			return errorf(ErrCorrupt, "folder counts kept for %d owners, folders exist for %d", seen, len(counts))
		}
		return nil
	})
}

func verifyMembers(txn *badger.Txn) error {
	want := map[string]bool{} // "<user>/<project>"
	err := scan(txn, []byte(prefixMember), func(key, val []byte) error {
		var m Membership
		if err := json.Unmarshal(val, &m); err != nil {
			return errorf(ErrCorrupt, "key %q: %v", key, err)
		}
		if err := checkMembership(m); err != nil {
			return errorf(ErrCorrupt, "key %q: %v", key, err)
		}
		if !bytes.Equal(key, memberKey(m.Project, m.User)) {
			return errorf(ErrCorrupt, "membership stored under %q is of user %q in project %q", key, m.User, m.Project)
		}
		want[m.User+"/"+m.Project] = true
		return nil
	})
	if err != nil {
		return err
	}
	seen := 0
	err = scanKeys(txn, []byte(prefixMemberOf), func(key []byte) error {
		if !want[strings.TrimPrefix(string(key), prefixMemberOf)] {
			return errorf(ErrCorrupt, "user index %q has no membership", key)
		}
		seen++
		return nil
	})
	if err != nil {
		return err
	}
	if seen != len(want) {
		return errorf(ErrCorrupt, "%d user index entries for %d memberships", seen, len(want))
	}
	return nil
}

func verifySessions(txn *badger.Txn) error {
	want := map[string]bool{} // "<folder>/<session>"
	err := scan(txn, []byte(prefixSession), func(key, val []byte) error {
		var s Session
		if err := json.Unmarshal(val, &s); err != nil {
			return errorf(ErrCorrupt, "key %q: %v", key, err)
		}
		if id := strings.TrimPrefix(string(key), prefixSession); id != s.ID {
			return errorf(ErrCorrupt, "session stored under %q has id %q", id, s.ID)
		}
		if err := ValidateSession(s); err != nil {
			return errorf(ErrCorrupt, "key %q: %v", key, err)
		}
		for _, f := range sessionFolders(s) {
			want[f+"/"+s.ID] = true
		}
		return nil
	})
	if err != nil {
		return err
	}
	seen := 0
	err = scanKeys(txn, []byte(prefixSessionOf), func(key []byte) error {
		if !want[strings.TrimPrefix(string(key), prefixSessionOf)] {
			return errorf(ErrCorrupt, "folder index %q has no session mounting that folder", key)
		}
		seen++
		return nil
	})
	if err != nil {
		return err
	}
	if seen != len(want) {
		return errorf(ErrCorrupt, "%d folder index entries for %d folder mounts of sessions", seen, len(want))
	}
	return nil
}

// badgerLogger routes badger's log to zerolog, one level quieter than
// badger's own: its errors and warnings stay errors and warnings, its info
// chatter becomes debug and its debug output trace.
type badgerLogger struct{ l zerolog.Logger }

func (g badgerLogger) msg(e *zerolog.Event, f string, a []any) {
	e.Msg(strings.TrimRight(fmt.Sprintf(f, a...), "\n"))
}
func (g badgerLogger) Errorf(f string, a ...any)   { g.msg(g.l.Error(), f, a) }
func (g badgerLogger) Warningf(f string, a ...any) { g.msg(g.l.Warn(), f, a) }
func (g badgerLogger) Infof(f string, a ...any)    { g.msg(g.l.Debug(), f, a) }
func (g badgerLogger) Debugf(f string, a ...any)   { g.msg(g.l.Trace(), f, a) }
