package service

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/internal/volume"
	"github.com/vfolder/vfolder/meta"
)

var (
	alice   = meta.ScopeID{Kind: meta.KindUser, UUID: "2b1a7c4e5d3f4a8e9c0b1f2e3d4c5b6a"}
	bob     = meta.ScopeID{Kind: meta.KindUser, UUID: "3c2b8d5f6e4a5b9fad1c2a3f4e5d6c7b"}
	project = meta.ScopeID{Kind: meta.KindProject, UUID: "4d3c9e6a7f5b6cafbe2d3b4a5f6e7d8c"}
)

// testService is what the test environments share: a service with volume
// "local" attached and recovered.
type testService struct{ svc *Service }

// testOptions are the options of a test service: the test's own uid/gid
// own the storage, scopes are made on first use, ledger (may be nil) keeps
// the quota; then mutate.
func testOptions(ledger Ledger, mutate ...func(*Options)) Options {
	opts := Options{
		StorageUID:       os.Geteuid(),
		StorageGID:       os.Getegid(),
		AutoCreateScopes: true,
		Quota:            ledger,
		Log:              zerolog.Nop(),
	}
	for _, m := range mutate {
		m(&opts)
	}
	return opts
}

// startService makes a service over store with volume "local" at vol
// attached, and recovers.
func startService(t *testing.T, store meta.Store, vol string, opts Options) testService {
	t.Helper()
	svc := New(store, opts)
	ctx := context.Background()
	if err := svc.AttachVolume(ctx, meta.Volume{Name: "local", Path: vol, RWCanDelete: true, MountAllowed: true, CloneAllowed: true}); err != nil {
		t.Fatal(err)
	}
	if err := svc.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	return testService{svc}
}

func (e testService) create(t *testing.T, name string, owner meta.ScopeID) api.Folder {
	t.Helper()
	f, err := e.svc.CreateFolder(context.Background(), api.CreateFolderRequest{Name: name, Volume: "local", Owner: owner})
	if err != nil {
		t.Fatalf("create %q: %v", name, err)
	}
	return f
}

// env is a service over the in-memory store.
type env struct {
	testService
	store *meta.Memory
	vol   string // host path of volume "local"
	opts  Options
}

func newEnv(t *testing.T, mutate ...func(*Options)) *env {
	t.Helper()
	opts := testOptions(nil, mutate...)
	e := &env{store: meta.NewMemory(), vol: t.TempDir(), opts: opts}
	e.testService = startService(t, e.store, e.vol, opts)
	t.Cleanup(func() {
		e.svc.Close()
		e.store.Close()
	})
	return e
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if got := Code(err); got != code {
		t.Errorf("error %v has code %q; want %q", err, got, code)
	}
}

func exists(p string) bool { _, err := os.Lstat(p); return err == nil }

// layoutDirs lists the folder directories present on a volume.
func layoutDirs(t *testing.T, vol string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(vol, "*", "*", "*", "*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestCreateFolder(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.DefaultScopeLimit = 5 << 30 })
	ctx := context.Background()
	f := e.create(t, "mydata1", alice)
	if f.Status != meta.StatusReady || f.UsageMode != meta.ModeGeneral || f.Permission != meta.PermRW || f.Cloneable {
		t.Errorf("folder = %+v; want ready, general, rw", f.Folder)
	}
	want := filepath.Join(e.vol, alice.UUID, f.ID[0:2], f.ID[2:4], f.ID[4:])
	if f.Path != want || !exists(want) {
		t.Errorf("path %q (exists %v); want %q", f.Path, exists(f.Path), want)
	}
	if b, err := os.ReadFile(filepath.Join(e.vol, "version.txt")); err != nil || string(b) != "3" {
		t.Errorf("version.txt = %q, %v", b, err)
	}
	sc, err := e.svc.QuotaScope(ctx, "local", alice)
	if err != nil || sc.LimitBytes != 5<<30 {
		t.Errorf("auto-created scope = %+v, %v; want the default limit", sc, err)
	}

	// The policy's max_quota_scope_size wins over the default.
	if _, err := e.svc.SetPolicy(ctx, bob, meta.Policy{MaxQuotaScopeSize: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	e.create(t, "b", bob)
	if sc, err := e.svc.QuotaScope(ctx, "local", bob); err != nil || sc.LimitBytes != 1<<20 {
		t.Errorf("bob's scope = %+v, %v; want the policy limit", sc, err)
	}

	got, err := e.svc.CreateFolder(ctx, api.CreateFolderRequest{Name: "m", Volume: "local", Owner: alice,
		UsageMode: meta.ModeModel, Permission: meta.PermWD, Cloneable: true})
	if err != nil || got.UsageMode != meta.ModeModel || got.Permission != meta.PermWD || !got.Cloneable {
		t.Errorf("model folder = %+v, %v", got, err)
	}
}

func TestCreateFolderRejects(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.create(t, "taken", alice)
	before := layoutDirs(t, e.vol)
	for _, tc := range []struct {
		name string
		req  api.CreateFolderRequest
		code string
	}{
		{"long name", api.CreateFolderRequest{Name: strings.Repeat("x", 65), Volume: "local", Owner: alice}, api.CodeInvalid},
		{"dotdot", api.CreateFolderRequest{Name: "..", Volume: "local", Owner: alice}, api.CodeInvalid},
		{"slash", api.CreateFolderRequest{Name: "a/b", Volume: "local", Owner: alice}, api.CodeInvalid},
		{"reserved", api.CreateFolderRequest{Name: ".ssh", Volume: "local", Owner: alice}, api.CodeInvalid},
		{"rc", api.CreateFolderRequest{Name: ".vimrc", Volume: "local", Owner: alice}, api.CodeInvalid},
		{"empty", api.CreateFolderRequest{Name: "", Volume: "local", Owner: alice}, api.CodeInvalid},
		{"duplicate", api.CreateFolderRequest{Name: "taken", Volume: "local", Owner: alice}, api.CodeExists},
		{"unknown volume", api.CreateFolderRequest{Name: "x", Volume: "nope", Owner: alice}, api.CodeNotFound},
		{"no volume", api.CreateFolderRequest{Name: "x", Owner: alice}, api.CodeInvalid},
		{"no owner", api.CreateFolderRequest{Name: "x", Volume: "local"}, api.CodeInvalid},
		{"bad mode", api.CreateFolderRequest{Name: "x", Volume: "local", Owner: alice, UsageMode: "fun"}, api.CodeInvalid},
		{"bad perm", api.CreateFolderRequest{Name: "x", Volume: "local", Owner: alice, Permission: "rwx"}, api.CodeInvalid},
		{"cloneable general", api.CreateFolderRequest{Name: "x", Volume: "local", Owner: alice, Cloneable: true}, api.CodeInvalid},
		{"project dot", api.CreateFolderRequest{Name: ".cache", Volume: "local", Owner: project}, api.CodeInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.svc.CreateFolder(ctx, tc.req)
			wantCode(t, err, tc.code)
		})
	}
	if after := layoutDirs(t, e.vol); len(after) != len(before) {
		t.Errorf("rejected creates left directories: %v", after)
	}
	// The dot-folder rules: users may, a project only ".local".
	e.create(t, ".cache", alice)
	e.create(t, ".local", project)
}

func TestFolderCountLimit(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.svc.SetPolicy(ctx, alice, meta.Policy{MaxFolderCount: 2}); err != nil {
		t.Fatal(err)
	}
	e.create(t, "a", alice)
	e.create(t, "b", alice)
	_, err := e.svc.CreateFolder(ctx, api.CreateFolderRequest{Name: "c", Volume: "local", Owner: alice})
	wantCode(t, err, api.CodeLimitExceeded)
	if n := len(layoutDirs(t, e.vol)); n != 2 {
		t.Errorf("%d folder directories; want 2", n)
	}
}

func TestNoAutoCreateScopes(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.AutoCreateScopes = false })
	ctx := context.Background()
	_, err := e.svc.CreateFolder(ctx, api.CreateFolderRequest{Name: "a", Volume: "local", Owner: alice})
	wantCode(t, err, api.CodeNotFound)
	limit := int64(100)
	if _, err := e.svc.SetQuota(ctx, "local", alice, api.SetQuotaRequest{LimitBytes: &limit}); err != nil {
		t.Fatal(err)
	}
	e.create(t, "a", alice)
}

func TestCreateFolderVolumeFailureLeavesNothing(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	// A file where alice's scope directory belongs makes the mkdir fail.
	if err := os.WriteFile(filepath.Join(e.vol, alice.UUID), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := e.svc.CreateFolder(ctx, api.CreateFolderRequest{Name: "x", Volume: "local", Owner: alice})
	wantCode(t, err, api.CodeInternal)
	if !errors.Is(err, volume.ErrUnsafe) {
		t.Errorf("error %v; want volume.ErrUnsafe", err)
	}
	if list, _ := e.svc.ListFolders(ctx, ListFilter{Deleted: api.DeletedInclude}); len(list) != 0 {
		t.Errorf("a failed create left records: %+v", list)
	}
	if err := os.Remove(filepath.Join(e.vol, alice.UUID)); err != nil {
		t.Fatal(err)
	}
	e.create(t, "x", alice) // the name is free
}

func TestConcurrentCreateSameName(t *testing.T) {
	e := newEnv(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, exist := 0, 0
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := e.svc.CreateFolder(context.Background(), api.CreateFolderRequest{Name: "same", Volume: "local", Owner: alice})
			mu.Lock()
			defer mu.Unlock()
			switch Code(err) {
			case "":
				ok++
			case api.CodeExists:
				exist++
			default:
				t.Errorf("unexpected error %v", err)
			}
		}()
	}
	wg.Wait()
	if ok != 1 || exist != 7 {
		t.Errorf("%d created, %d exists; want 1 and 7", ok, exist)
	}
	if n := len(layoutDirs(t, e.vol)); n != 1 {
		t.Errorf("%d folder directories; want 1", n)
	}
}

func TestResolve(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	f := e.create(t, "data", alice)
	for _, tc := range []struct {
		ref   string
		owner meta.ScopeID
		code  string
	}{
		{f.ID, meta.ScopeID{}, ""},
		{meta.DashedUUID(f.ID), meta.ScopeID{}, ""},
		{strings.ToUpper(f.ID), alice, ""},
		{"data", alice, ""},
		{"data", meta.ScopeID{}, api.CodeInvalid},
		{"data", bob, api.CodeNotFound},
		{f.ID, bob, api.CodeNotFound},
		{"ffffffffffffffffffffffffffffffff", meta.ScopeID{}, api.CodeNotFound},
		{"", alice, api.CodeInvalid},
		{"data", meta.ScopeID{Kind: "user", UUID: "xyz"}, api.CodeInvalid},
	} {
		got, err := e.svc.Folder(ctx, tc.ref, tc.owner)
		if Code(err) != tc.code || (err == nil && got.ID != f.ID) {
			t.Errorf("Folder(%q, %q) = %s, %v; want code %q", tc.ref, tc.owner, got.ID, err, tc.code)
		}
	}
	// A folder whose name looks like an id is still found by name.
	odd := e.create(t, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", alice)
	if got, err := e.svc.Folder(ctx, odd.Name, alice); err != nil || got.ID != odd.ID {
		t.Errorf("name that looks like an id: %v, %v", got.ID, err)
	}
}

func TestRename(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	f := e.create(t, "old", alice)
	e.create(t, "other", alice)
	got, err := e.svc.Rename(ctx, "old", alice, "new")
	if err != nil || got.Name != "new" || got.Path != f.Path {
		t.Fatalf("Rename = %+v, %v", got, err)
	}
	_, err = e.svc.Rename(ctx, "new", alice, "other")
	wantCode(t, err, api.CodeExists)
	_, err = e.svc.Rename(ctx, "new", alice, ".bashrc")
	wantCode(t, err, api.CodeInvalid)
	_, err = e.svc.Rename(ctx, "missing", alice, "x")
	wantCode(t, err, api.CodeNotFound)
	p := e.create(t, "shared", project)
	_, err = e.svc.Rename(ctx, p.ID, meta.ScopeID{}, ".hidden")
	wantCode(t, err, api.CodeInvalid)
	if _, err := e.svc.Trash(ctx, "new", alice); err != nil {
		t.Fatal(err)
	}
	_, err = e.svc.Rename(ctx, "new", alice, "newer")
	wantCode(t, err, api.CodeConflict)
}

func TestTrashRestorePurge(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	f := e.create(t, "work", alice)
	if err := os.WriteFile(filepath.Join(f.Path, "file"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}

	_, err := e.svc.Purge(ctx, "work", alice, "work")
	wantCode(t, err, api.CodeConflict) // live folder
	_, err = e.svc.Restore(ctx, "work", alice)
	wantCode(t, err, api.CodeConflict) // not in the trash

	tr, err := e.svc.Trash(ctx, "work", alice)
	if err != nil || tr.Status != meta.StatusDeletePending {
		t.Fatalf("Trash = %+v, %v", tr, err)
	}
	_, err = e.svc.Trash(ctx, "work", alice)
	wantCode(t, err, api.CodeConflict)
	if list, _ := e.svc.ListFolders(ctx, ListFilter{Owner: alice}); len(list) != 0 {
		t.Errorf("trashed folder listed as live: %v", list)
	}
	if list, _ := e.svc.ListFolders(ctx, ListFilter{Owner: alice, Deleted: api.DeletedOnly}); len(list) != 1 {
		t.Errorf("deleted=only lists %d folders; want 1", len(list))
	}
	// The name stays taken while the folder is in the trash.
	_, err = e.svc.CreateFolder(ctx, api.CreateFolderRequest{Name: "work", Volume: "local", Owner: alice})
	wantCode(t, err, api.CodeExists)

	rs, err := e.svc.Restore(ctx, f.ID, meta.ScopeID{})
	if err != nil || rs.Status != meta.StatusReady {
		t.Fatalf("Restore = %+v, %v", rs, err)
	}
	if _, err := e.svc.Trash(ctx, f.ID, alice); err != nil {
		t.Fatal(err)
	}

	for _, wrong := range []string{"", "Work", "work ", "wor"} {
		_, err = e.svc.Purge(ctx, "work", alice, wrong)
		wantCode(t, err, api.CodeConflict)
	}
	if got, err := e.svc.Folder(ctx, f.ID, alice); err != nil || got.Status != meta.StatusDeletePending || !exists(filepath.Join(f.Path, "file")) {
		t.Fatalf("a refused purge changed something: %+v, %v", got, err)
	}

	pg, err := e.svc.Purge(ctx, "work", alice, "work")
	if err != nil || pg.Status != meta.StatusDeleteComplete || pg.ID != f.ID {
		t.Fatalf("Purge = %+v, %v", pg, err)
	}
	if exists(f.Path) || exists(filepath.Join(e.vol, alice.UUID)) {
		t.Errorf("purged tree (or its empty parents) still on the volume")
	}
	_, err = e.svc.Folder(ctx, f.ID, meta.ScopeID{})
	wantCode(t, err, api.CodeNotFound)
	// A purged name can be reused.
	e.create(t, "work", alice)
}

func TestMountedFolderCannotBeTrashedOrPurged(t *testing.T) {
	mounted := map[string][]string{}
	var mu sync.Mutex
	e := newEnv(t, func(o *Options) {
		o.MountedBy = func(id string) []string {
			mu.Lock()
			defer mu.Unlock()
			return mounted[id]
		}
	})
	ctx := context.Background()
	f := e.create(t, "busy", alice)
	mu.Lock()
	mounted[f.ID] = []string{"sess-1", "sess-2"}
	mu.Unlock()
	_, err := e.svc.Trash(ctx, "busy", alice)
	wantCode(t, err, api.CodeConflict)
	if err == nil || !strings.Contains(err.Error(), "sess-1, sess-2") {
		t.Errorf("error %v does not name the sessions", err)
	}
	mu.Lock()
	delete(mounted, f.ID)
	mu.Unlock()
	if _, err := e.svc.Trash(ctx, "busy", alice); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	mounted[f.ID] = []string{"sess-3"}
	mu.Unlock()
	_, err = e.svc.Purge(ctx, "busy", alice, "busy")
	wantCode(t, err, api.CodeConflict)
	if !exists(f.Path) {
		t.Errorf("mounted folder removed")
	}
}

func TestPurgeFailureIsRetryable(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs inside the folder")
	}
	e := newEnv(t)
	ctx := context.Background()
	f := e.create(t, "stuck", alice)
	mnt := filepath.Join(f.Path, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	mounted := true
	t.Cleanup(func() {
		if mounted {
			if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil {
				t.Errorf("unmount: %v", err)
			}
		}
	})
	if _, err := e.svc.Trash(ctx, "stuck", alice); err != nil {
		t.Fatal(err)
	}
	_, err := e.svc.Purge(ctx, "stuck", alice, "stuck")
	wantCode(t, err, api.CodeInternal)
	got, gerr := e.svc.Folder(ctx, f.ID, alice)
	if gerr != nil || got.Status != meta.StatusDeleteError {
		t.Fatalf("after a failed purge: %+v, %v; want delete-error", got.Folder, gerr)
	}
	if err := unix.Unmount(mnt, 0); err != nil {
		t.Fatal(err)
	}
	mounted = false
	if _, err := e.svc.Purge(ctx, "stuck", alice, "stuck"); err != nil {
		t.Fatalf("retried purge: %v", err)
	}
	if exists(f.Path) {
		t.Errorf("tree still there after the retried purge")
	}
}

func TestRecover(t *testing.T) {
	store := meta.NewMemory()
	defer store.Close()
	vol := t.TempDir()
	ctx := context.Background()
	uid, gid := os.Geteuid(), os.Getegid()
	v, err := volume.Open(vol)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if err := v.EnsureVersion(uid, gid, false); err != nil {
		t.Fatal(err)
	}
	rec := func(name string, st meta.Status, mkdir bool) meta.Folder {
		f := meta.Folder{ID: meta.NewFolderID(), Name: name, Owner: alice, Volume: "local",
			UsageMode: meta.ModeGeneral, Permission: meta.PermRW, Status: st}
		if err := store.CreateFolder(ctx, f, 0); err != nil {
			t.Fatal(err)
		}
		if mkdir {
			if err := v.CreateFolder(alice, f.ID, uid, gid); err != nil {
				t.Fatal(err)
			}
		}
		return f
	}
	// What a crash can leave behind.
	madeDir := rec("made-dir", meta.StatusPerforming, true)
	noDir := rec("no-dir", meta.StatusPerforming, false)
	halfPurged := rec("half-purged", meta.StatusDeleteOngoing, true)
	for i := 0; i < 50; i++ {
		p := filepath.Join(v.FolderPath(alice, halfPurged.ID), fmt.Sprintf("d%d", i%5), fmt.Sprintf("f%d", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.RemoveAll(filepath.Join(v.FolderPath(alice, halfPurged.ID), "d0")); err != nil {
		t.Fatal(err)
	}
	gonePurged := rec("gone-purged", meta.StatusDeleteOngoing, false)
	trashed := rec("trashed", meta.StatusDeletePending, true)

	svc := New(store, Options{StorageUID: uid, StorageGID: gid, AutoCreateScopes: true, Log: zerolog.Nop()})
	defer svc.Close()
	if err := svc.AttachVolume(ctx, meta.Volume{Name: "local", Path: vol}); err != nil {
		t.Fatal(err)
	}
	if err := svc.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	svc.Wait()

	if f, err := store.GetFolder(ctx, madeDir.ID); err != nil || f.Status != meta.StatusReady {
		t.Errorf("performing folder with its directory: %+v, %v; want ready", f, err)
	}
	if _, err := store.GetFolder(ctx, noDir.ID); !errors.Is(err, meta.ErrNotFound) {
		t.Errorf("performing folder without a directory: %v; want the record gone", err)
	}
	for _, f := range []meta.Folder{halfPurged, gonePurged} {
		if _, err := store.GetFolder(ctx, f.ID); !errors.Is(err, meta.ErrNotFound) {
			t.Errorf("interrupted purge of %s: record %v; want gone", f.Name, err)
		}
		if exists(v.FolderPath(alice, f.ID)) {
			t.Errorf("interrupted purge of %s: tree still there", f.Name)
		}
	}
	if f, err := store.GetFolder(ctx, trashed.ID); err != nil || f.Status != meta.StatusDeletePending || !exists(v.FolderPath(alice, f.ID)) {
		t.Errorf("trashed folder touched by recovery: %+v, %v", f, err)
	}
	// The freed name can be taken again.
	if _, err := svc.CreateFolder(ctx, api.CreateFolderRequest{Name: "no-dir", Volume: "local", Owner: alice}); err != nil {
		t.Errorf("create with the name of a dropped record: %v", err)
	}
}

func TestAttachVolumeRefusesOtherLayout(t *testing.T) {
	vol := t.TempDir()
	if err := os.WriteFile(filepath.Join(vol, "version.txt"), []byte("2"), 0o644); err != nil {
		t.Fatal(err)
	}
	store := meta.NewMemory()
	defer store.Close()
	svc := New(store, Options{Log: zerolog.Nop()})
	defer svc.Close()
	err := svc.AttachVolume(context.Background(), meta.Volume{Name: "old", Path: vol})
	if !errors.Is(err, volume.ErrLayout) || !strings.Contains(err.Error(), `"old"`) {
		t.Errorf("AttachVolume = %v; want ErrLayout naming the volume", err)
	}
	if vs, _ := store.ListVolumes(context.Background()); len(vs) != 0 {
		t.Errorf("refused volume recorded: %v", vs)
	}
}

func TestQuota(t *testing.T) {
	var changed []meta.QuotaScope
	e := newEnv(t, func(o *Options) {
		o.ScopeChanged = func(s meta.QuotaScope) { changed = append(changed, s) }
		o.Usage = fakeUsage{}
	})
	ctx := context.Background()
	_, err := e.svc.QuotaScope(ctx, "local", alice)
	wantCode(t, err, api.CodeNotFound)
	_, err = e.svc.UnsetQuota(ctx, "local", alice)
	wantCode(t, err, api.CodeNotFound)
	neg := int64(-1)
	_, err = e.svc.SetQuota(ctx, "local", alice, api.SetQuotaRequest{LimitBytes: &neg})
	wantCode(t, err, api.CodeInvalid)
	_, err = e.svc.SetQuota(ctx, "local", alice, api.SetQuotaRequest{LimitInodes: &neg})
	wantCode(t, err, api.CodeInvalid)
	ten := int64(10 << 30)
	_, err = e.svc.SetQuota(ctx, "nope", alice, api.SetQuotaRequest{LimitBytes: &ten})
	wantCode(t, err, api.CodeNotFound)

	sc, err := e.svc.SetQuota(ctx, "local", alice, api.SetQuotaRequest{LimitBytes: &ten})
	if err != nil || sc.LimitBytes != ten || sc.LimitInodes != 0 || sc.UsedBytes != 42 || sc.UsedInodes != 7 {
		t.Fatalf("SetQuota (create) = %+v, %v", sc, err)
	}
	inodes := int64(1000)
	sc, err = e.svc.SetQuota(ctx, "local", alice, api.SetQuotaRequest{LimitInodes: &inodes})
	if err != nil || sc.LimitBytes != ten || sc.LimitInodes != 1000 {
		t.Fatalf("SetQuota (inodes only) = %+v, %v; want bytes kept", sc, err)
	}
	sc, err = e.svc.UnsetQuota(ctx, "local", alice)
	if err != nil || sc.LimitBytes != 0 || sc.LimitInodes != 0 {
		t.Fatalf("UnsetQuota = %+v, %v", sc, err)
	}
	if got, err := e.svc.QuotaScope(ctx, "local", alice); err != nil || got.LimitBytes != 0 {
		t.Errorf("QuotaScope after unset = %+v, %v", got, err)
	}
	if len(changed) != 3 || changed[0].LimitBytes != ten || changed[2].LimitBytes != 0 {
		t.Errorf("ScopeChanged calls: %+v", changed)
	}
	u, err := e.svc.FolderUsage(ctx, e.create(t, "u", alice).ID, meta.ScopeID{})
	if err != nil || u.UsedBytes != 3 || u.UsedInodes != 1 || u.AsOf.IsZero() {
		t.Errorf("FolderUsage = %+v, %v", u, err)
	}
}

type fakeUsage struct{}

func (fakeUsage) ScopeUsage(string, meta.ScopeID) (int64, int64) { return 42, 7 }
func (fakeUsage) FolderUsage(string) (int64, int64)              { return 3, 1 }

func TestPolicy(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if p, err := e.svc.Policy(ctx, alice); err != nil || !p.IsZero() {
		t.Errorf("default policy = %+v, %v", p, err)
	}
	_, err := e.svc.SetPolicy(ctx, alice, meta.Policy{MaxFolderCount: -1})
	wantCode(t, err, api.CodeInvalid)
	_, err = e.svc.SetPolicy(ctx, alice, meta.Policy{MaxQuotaScopeSize: -1})
	wantCode(t, err, api.CodeInvalid)
	_, err = e.svc.Policy(ctx, meta.ScopeID{})
	wantCode(t, err, api.CodeInvalid)
	want := meta.Policy{MaxFolderCount: 3, MaxQuotaScopeSize: 1 << 30}
	if p, err := e.svc.SetPolicy(ctx, alice, want); err != nil || !p.Equal(want) {
		t.Errorf("SetPolicy = %+v, %v", p, err)
	}
	if p, err := e.svc.Policy(ctx, alice); err != nil || !p.Equal(want) {
		t.Errorf("Policy = %+v, %v", p, err)
	}
}

func TestListFolders(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.create(t, "a", alice)
	e.create(t, "b", bob)
	if _, err := e.svc.Trash(ctx, "b", bob); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		lf   ListFilter
		want int
	}{
		{ListFilter{}, 1},
		{ListFilter{Deleted: api.DeletedInclude}, 2},
		{ListFilter{Deleted: api.DeletedOnly}, 1},
		{ListFilter{Owner: bob}, 0},
		{ListFilter{Owner: bob, Deleted: api.DeletedInclude}, 1},
		{ListFilter{Volume: "local"}, 1},
	} {
		got, err := e.svc.ListFolders(ctx, tc.lf)
		if err != nil || len(got) != tc.want {
			t.Errorf("ListFolders(%+v) = %d folders, %v; want %d", tc.lf, len(got), err, tc.want)
		}
	}
	_, err := e.svc.ListFolders(ctx, ListFilter{Deleted: "all"})
	wantCode(t, err, api.CodeInvalid)
	_, err = e.svc.ListFolders(ctx, ListFilter{Volume: "nope"})
	wantCode(t, err, api.CodeNotFound)
	vs, err := e.svc.Volumes(ctx)
	if err != nil || len(vs) != 1 || vs[0].Name != "local" || vs[0].Path != e.vol {
		t.Errorf("Volumes = %+v, %v", vs, err)
	}
}

func TestCode(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code string
	}{
		{nil, ""},
		{fmt.Errorf("x: %w", meta.ErrInvalid), api.CodeInvalid},
		{fmt.Errorf("x: %w", meta.ErrNotFound), api.CodeNotFound},
		{fmt.Errorf("x: %w", meta.ErrExists), api.CodeExists},
		{fmt.Errorf("x: %w", meta.ErrConflict), api.CodeConflict},
		{fmt.Errorf("x: %w", meta.ErrLimitExceeded), api.CodeLimitExceeded},
		{fmt.Errorf("x: %w", meta.ErrClosed), api.CodeUnavailable},
		{fmt.Errorf("x: %w", ErrUnavailable), api.CodeUnavailable},
		{fmt.Errorf("x: %w", meta.ErrUnavailable), api.CodeUnavailable},
		{errors.New("disk on fire"), api.CodeInternal},
	} {
		if got := Code(tc.err); got != tc.code {
			t.Errorf("Code(%v) = %q; want %q", tc.err, got, tc.code)
		}
	}
}
