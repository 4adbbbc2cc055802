package service

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/internal/testutil"
	"github.com/vfolder/vfolder/meta"
	"github.com/vfolder/vfolder/quota"
)

// qenv is a service over a badger store with the quota ledger in the same
// database, as the daemon runs it.
type qenv struct {
	testService
	store  *meta.Badger
	ledger *quota.Manager
	state  string
	vol    string
	closed bool
}

func newQuotaEnv(t *testing.T, state, vol string, mutate ...func(*Options)) *qenv {
	t.Helper()
	if state == "" {
		state = t.TempDir()
	}
	if vol == "" {
		vol = t.TempDir()
	}
	store, ledger := testutil.OpenLedger(t, filepath.Join(state, "meta"))
	e := &qenv{store: store, ledger: ledger, state: state, vol: vol}
	e.testService = startService(t, store, vol, testOptions(ledger, mutate...))
	ctx := context.Background()
	if err := e.svc.StartQuota(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.close(t) })
	return e
}

// close stops the service and closes the ledger, then the store (the
// daemon's order).
func (e *qenv) close(t *testing.T) {
	t.Helper()
	if e.closed {
		return
	}
	e.closed = true
	e.svc.Close()
	if err := e.ledger.Close(); err != nil {
		t.Errorf("ledger Close: %v", err)
	}
	if err := e.store.Close(); err != nil {
		t.Errorf("store Close: %v", err)
	}
}

// write makes a file of size bytes in the folder and records it in the
// ledger the way the file system does for a create and a write.
func (e *qenv) write(t *testing.T, f api.Folder, name string, size int64) {
	t.Helper()
	p := filepath.Join(f.Path, name)
	if err := os.WriteFile(p, make([]byte, size), 0o644); err != nil {
		t.Fatal(err)
	}
	var root, st unix.Stat_t
	if err := unix.Stat(f.Path, &root); err != nil {
		t.Fatal(err)
	}
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	r, err := e.ledger.ReserveInode(scopeKey("local", f.Owner), f.ID, quota.KindFile, 0, name)
	if err != nil {
		t.Fatal(err)
	}
	r.Commit(quota.MakeKey(root.Dev, st.Dev, st.Ino), st.Size)
}

// dirSize is a directory's st_size: what the ledger charges for it.
func dirSize(t *testing.T, p string) int64 {
	t.Helper()
	st, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

func (e *qenv) scope(t *testing.T, id meta.ScopeID) api.QuotaScope {
	t.Helper()
	sc, err := e.svc.QuotaScope(context.Background(), "local", id)
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

func ledgerLimit(l *quota.Manager, id meta.ScopeID) (int64, int64) {
	u := l.Usage(scopeKey("local", id))
	return u.Limit, u.LimitInodes
}

func TestQuotaLimitsReachTheLedger(t *testing.T) {
	e := newQuotaEnv(t, "", "", func(o *Options) { o.DefaultScopeLimit = 7 << 20 })
	ctx := context.Background()

	// A scope made by the first folder gets its limit at once: the
	// default, or the owner's policy.
	e.create(t, "a", alice)
	if b, _ := ledgerLimit(e.ledger, alice); b != 7<<20 {
		t.Errorf("ledger limit of an auto-created scope = %d; want the default %d", b, 7<<20)
	}
	if _, err := e.svc.SetPolicy(ctx, bob, meta.Policy{MaxQuotaScopeSize: 3 << 20}); err != nil {
		t.Fatal(err)
	}
	e.create(t, "b", bob)
	if b, _ := ledgerLimit(e.ledger, bob); b != 3<<20 {
		t.Errorf("ledger limit of a scope made under a policy = %d; want %d", b, 3<<20)
	}

	// SetQuota and UnsetQuota.
	lim, ino := int64(100<<20), int64(50)
	if _, err := e.svc.SetQuota(ctx, "local", alice, api.SetQuotaRequest{LimitBytes: &lim, LimitInodes: &ino}); err != nil {
		t.Fatal(err)
	}
	if b, i := ledgerLimit(e.ledger, alice); b != lim || i != ino {
		t.Errorf("ledger limits after SetQuota = %d, %d; want %d, %d", b, i, lim, ino)
	}
	if _, err := e.svc.SetQuota(ctx, "local", project, api.SetQuotaRequest{LimitBytes: &lim}); err != nil {
		t.Fatal(err)
	}
	if b, _ := ledgerLimit(e.ledger, project); b != lim {
		t.Errorf("ledger limit of a scope made by SetQuota = %d", b)
	}
	if _, err := e.svc.UnsetQuota(ctx, "local", alice); err != nil {
		t.Fatal(err)
	}
	if b, i := ledgerLimit(e.ledger, alice); b != 0 || i != 0 {
		t.Errorf("ledger limits after UnsetQuota = %d, %d; want none", b, i)
	}

	// The ledger enforces what it was given: bob's 3 MiB.
	fb, err := e.svc.Folder(ctx, "b", bob)
	if err != nil {
		t.Fatal(err)
	}
	var root unix.Stat_t
	if err := unix.Stat(fb.Path, &root); err != nil {
		t.Fatal(err)
	}
	g, r, err := e.ledger.Reserve(scopeKey("local", bob), fb.ID, quota.InodeKey{Ino: 12345}, 0, 5<<20)
	if err != nil || g != 3<<20 {
		t.Errorf("Reserve of 5 MiB under a 3 MiB limit granted %d, %v; want a cut at 3 MiB", g, err)
	}
	r.Done(g)
}

func TestStartQuotaAppliesStoredLimits(t *testing.T) {
	state, vol := t.TempDir(), t.TempDir()
	e := newQuotaEnv(t, state, vol)
	ctx := context.Background()
	lim := int64(10 << 20)
	if _, err := e.svc.SetQuota(ctx, "local", alice, api.SetQuotaRequest{LimitBytes: &lim}); err != nil {
		t.Fatal(err)
	}
	e.create(t, "a", alice)
	e.close(t)

	// The store changes behind the ledger's back (a limit stored while the
	// ledger was down): the next start applies the stored one.
	store, err := meta.OpenBadger(filepath.Join(state, "meta"), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.UpdateScope(ctx, "local", alice, func(q *meta.QuotaScope) error { q.LimitBytes = 20 << 20; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	e2 := newQuotaEnv(t, state, vol)
	if b, _ := ledgerLimit(e2.ledger, alice); b != 20<<20 {
		t.Errorf("ledger limit after start = %d; want the stored %d", b, 20<<20)
	}
}

func TestQuotaUsageFromTheLedger(t *testing.T) {
	e := newQuotaEnv(t, "", "")
	ctx := context.Background()
	f := e.create(t, "a", alice)
	g := e.create(t, "b", alice)
	e.write(t, f, "x", 1000)
	e.write(t, f, "y", 24)
	e.write(t, g, "z", 5)
	sc := e.scope(t, alice)
	if sc.UsedBytes != 1029 || sc.UsedInodes != 3 || sc.Checking {
		t.Errorf("QuotaScope = %+v; want 1029 bytes, 3 inodes, not checking", sc)
	}
	u, err := e.svc.FolderUsage(ctx, f.ID, meta.ScopeID{})
	if err != nil || u.UsedBytes != 1024 || u.UsedInodes != 2 {
		t.Errorf("FolderUsage = %+v, %v; want 1024 bytes, 2 inodes", u, err)
	}
}

func TestCheckQuotaFindsAndRepairs(t *testing.T) {
	e := newQuotaEnv(t, "", "")
	ctx := context.Background()
	f := e.create(t, "a", alice)
	g := e.create(t, "b", alice)
	e.write(t, f, "known", 100)
	// Folder roots are charged their size from the first check on.
	ra, rb := dirSize(t, f.Path), dirSize(t, g.Path)

	// Clean: no drift.
	rep, err := e.svc.CheckQuota(ctx, "local", alice, false)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Drift || rep.Repaired || !rep.Complete || len(rep.Folders) != 2 || rep.UsedBytes != 100+ra+rb {
		t.Fatalf("check of a clean scope = %+v", rep)
	}

	// Written on storage behind the ledger: two unknown files, one file
	// the ledger charges is gone.
	if err := os.WriteFile(filepath.Join(f.Path, "direct1"), make([]byte, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(g.Path, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(g.Path, "d", "direct2"), make([]byte, 10), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(f.Path, "known")); err != nil {
		t.Fatal(err)
	}
	rep, err = e.svc.CheckQuota(ctx, "local", alice, false)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Drift || rep.Repaired || rep.UnknownFiles != 3 || rep.MissingEntries != 1 || rep.RepairedCount != 0 {
		t.Fatalf("check without repair = %+v; want 3 unknown (2 files, 1 dir), 1 missing, nothing repaired", rep)
	}
	byID := map[string]api.QuotaCheckFolder{}
	for _, x := range rep.Folders {
		byID[x.FolderID] = x
	}
	rd := dirSize(t, filepath.Join(g.Path, "d"))
	if x := byID[f.ID]; x.LedgerBytes != 100+ra || x.DiskBytes != 4096+ra || x.DiskDirBytes != ra || x.Unknown != 1 || x.Missing != 1 || x.Name != "a" {
		t.Errorf("folder a = %+v", x)
	}
	if x := byID[g.ID]; x.LedgerBytes != rb || x.DiskBytes != 10+rb+rd || x.DiskDirBytes != rb+rd || x.DiskInodes != 2 || x.Unknown != 2 {
		t.Errorf("folder b = %+v", x)
	}
	if sc := e.scope(t, alice); sc.UsedBytes != 100+ra+rb {
		t.Errorf("a check without repair changed the usage to %d", sc.UsedBytes)
	}
	paths := map[string]bool{}
	for _, x := range rep.Findings {
		paths[x.Path] = true
	}
	if !paths["direct1"] || !paths["d/direct2"] {
		t.Errorf("findings %+v do not name the unknown files", rep.Findings)
	}

	rep, err = e.svc.CheckQuota(ctx, "local", alice, true)
	if err != nil {
		t.Fatal(err)
	}
	want := 4106 + ra + rb + rd
	if !rep.Drift || !rep.Repaired || rep.RepairedCount != 4 || rep.UsedBytes != want || rep.UsedInodes != 3 {
		t.Fatalf("check with repair = %+v; want 4 repairs, %d bytes, 3 inodes", rep, want)
	}
	if sc := e.scope(t, alice); sc.UsedBytes != want || sc.UsedInodes != 3 {
		t.Errorf("usage after repair = %d bytes, %d inodes; want %d, 3", sc.UsedBytes, sc.UsedInodes, want)
	}
	rep, err = e.svc.CheckQuota(ctx, "local", alice, false)
	if err != nil || rep.Drift {
		t.Errorf("check after repair = %+v, %v; want no drift", rep, err)
	}

	// Refusals.
	_, err = e.svc.CheckQuota(ctx, "nope", alice, false)
	wantCode(t, err, api.CodeNotFound)
	_, err = e.svc.CheckQuota(ctx, "local", bob, false)
	wantCode(t, err, api.CodeNotFound)
	_, err = e.svc.CheckQuota(ctx, "local", meta.ScopeID{Kind: meta.KindUser, UUID: "x"}, false)
	wantCode(t, err, api.CodeInvalid)
}

func TestCheckQuotaMissingFolderDirectory(t *testing.T) {
	e := newQuotaEnv(t, "", "")
	f := e.create(t, "a", alice)
	if err := os.RemoveAll(f.Path); err != nil {
		t.Fatal(err)
	}
	rep, err := e.svc.CheckQuota(context.Background(), "local", alice, true)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Complete || len(rep.Folders) != 1 || len(rep.Folders[0].Errors) == 0 || !strings.Contains(rep.Folders[0].Errors[0], "cannot open") {
		t.Errorf("check with a folder directory gone = %+v; want it incomplete with the error", rep)
	}
}

func TestPurgeDropsTheFolderFromTheLedger(t *testing.T) {
	e := newQuotaEnv(t, "", "")
	ctx := context.Background()
	f := e.create(t, "a", alice)
	g := e.create(t, "b", alice)
	e.write(t, f, "x", 3000)
	e.write(t, g, "y", 7)
	if _, err := e.svc.Trash(ctx, f.ID, alice); err != nil {
		t.Fatal(err)
	}
	// A trashed folder still counts.
	if sc := e.scope(t, alice); sc.UsedBytes != 3007 {
		t.Errorf("usage with a folder in the trash = %d; want 3007", sc.UsedBytes)
	}
	if _, err := e.svc.Purge(ctx, f.ID, alice, "a"); err != nil {
		t.Fatal(err)
	}
	if sc := e.scope(t, alice); sc.UsedBytes != 7 || sc.UsedInodes != 1 {
		t.Errorf("usage after purge = %d bytes, %d inodes; want 7, 1", sc.UsedBytes, sc.UsedInodes)
	}
	for _, id := range e.ledger.Folders(scopeKey("local", alice)) {
		if id == f.ID {
			t.Errorf("the purged folder is still in the ledger")
		}
	}
	rep, err := e.svc.CheckQuota(ctx, "local", alice, false)
	if err != nil || rep.Drift {
		t.Errorf("check after purge = %+v, %v", rep, err)
	}
}

func TestLedgerFoldersWithoutRecord(t *testing.T) {
	state, vol := t.TempDir(), t.TempDir()
	e := newQuotaEnv(t, state, vol)
	ctx := context.Background()
	a := e.create(t, "a", alice)
	ra := dirSize(t, a.Path) // charged from the first check on
	// Entries of a folder whose record is gone (a purge cut between
	// deleting the record and dropping the ledger's entries).
	const ghost = "0123456789abcdef0123456789abcdef"
	r, err := e.ledger.ReserveInode(scopeKey("local", alice), ghost, quota.KindFile, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	r.Commit(quota.InodeKey{Ino: 99}, 500)
	if sc := e.scope(t, alice); sc.UsedBytes != 500 {
		t.Fatalf("usage = %d", sc.UsedBytes)
	}
	rep, err := e.svc.CheckQuota(ctx, "local", alice, false)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Drift || len(rep.OrphanFolders) != 1 || rep.OrphanFolders[0] != ghost || rep.Counts[api.ProblemOrphan] != 1 {
		t.Fatalf("check = %+v; want the orphan folder reported", rep)
	}
	if sc := e.scope(t, alice); sc.UsedBytes != 500+ra {
		t.Errorf("a check without repair dropped the orphan")
	}
	rep, err = e.svc.CheckQuota(ctx, "local", alice, true)
	if err != nil || !rep.Repaired || rep.UsedBytes != ra {
		t.Fatalf("check with repair = %+v, %v", rep, err)
	}

	// StartQuota drops them too.
	r, err = e.ledger.ReserveInode(scopeKey("local", alice), ghost, quota.KindFile, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	r.Commit(quota.InodeKey{Ino: 99}, 500)
	e.close(t)
	e2 := newQuotaEnv(t, state, vol)
	if sc := e2.scope(t, alice); sc.UsedBytes != ra {
		t.Errorf("usage after a start = %d; want the orphan dropped", sc.UsedBytes)
	}
}

func TestQuotaRecoveryChecksEveryScope(t *testing.T) {
	e := newQuotaEnv(t, "", "")
	f := e.create(t, "a", alice)
	g := e.create(t, "b", project)
	for _, p := range []string{filepath.Join(f.Path, "x"), filepath.Join(g.Path, "y")} {
		if err := os.WriteFile(p, make([]byte, 1234), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan struct{})
	e.svc.StartQuotaRecovery(func() { close(done) })
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the recovery checks did not finish within 30s")
	}
	for i, id := range []meta.ScopeID{alice, project} {
		want := 1234 + dirSize(t, []string{f.Path, g.Path}[i]) // the file and its folder root
		if sc := e.scope(t, id); sc.UsedBytes != want || sc.UsedInodes != 1 || sc.Checking {
			t.Errorf("%s after the recovery check = %+v; want %d bytes, 1 inode, not checking", id, sc, want)
		}
	}
}

// TestCheckQuotaLogsProgress: a long walk logs its progress at info level.
func TestCheckQuotaLogsProgress(t *testing.T) {
	old := progressEvery
	progressEvery = 0
	t.Cleanup(func() { progressEvery = old })
	var logs testutil.SyncBuffer
	e := newQuotaEnv(t, "", "", func(o *Options) { o.Log = zerolog.New(&logs).Level(zerolog.InfoLevel) })
	f := e.create(t, "many", alice)
	for i := 0; i < 5000; i++ {
		if err := os.WriteFile(filepath.Join(f.Path, fmt.Sprintf("f%04d", i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := e.svc.CheckQuota(context.Background(), "local", alice, false)
	if err != nil || rep.UnknownFiles != 5000 {
		t.Fatalf("check = %d unknown, %v", rep.UnknownFiles, err)
	}
	out := logs.String()
	for _, want := range []string{`"message":"quota check started"`, `"message":"quota check in progress"`, `"entries":4096`, `"message":"quota check finished"`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
}

func TestStopChecks(t *testing.T) {
	e := newQuotaEnv(t, "", "")
	e.create(t, "a", alice)
	e.svc.StopChecks()
	_, err := e.svc.CheckQuota(context.Background(), "local", alice, false)
	wantCode(t, err, api.CodeUnavailable)
}

func TestClosedLedgerFailsLimitChanges(t *testing.T) {
	e := newQuotaEnv(t, "", "")
	e.create(t, "a", alice)
	if err := e.ledger.Close(); err != nil {
		t.Fatal(err)
	}
	lim := int64(1 << 20)
	_, err := e.svc.SetQuota(context.Background(), "local", alice, api.SetQuotaRequest{LimitBytes: &lim})
	wantCode(t, err, api.CodeUnavailable)
	// The stored limit is there for the next start.
	sc, err := e.store.GetScope(context.Background(), "local", alice)
	if err != nil || sc.LimitBytes != lim {
		t.Errorf("stored scope = %+v, %v", sc, err)
	}
}
