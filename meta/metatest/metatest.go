// Package metatest is the conformance suite of meta.Store. Every Store
// implementation runs RunStoreSuite in its tests, and implementations that
// persist also run RunPersistenceSuite.
//
// Each subtest opens a fresh, empty store through the function it is given
// and closes it when done (closing twice must be harmless). If a store also
// has a method Verify(context.Context) error (see Verifier), the suite calls
// it at the end of every subtest that left the store open, so index and
// counter bookkeeping is checked after every scenario.
//
// Times are compared with time.Time.Equal, never ==, and the suite never
// asserts on durations.
package metatest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vfolder/vfolder/meta"
)

// Verifier is implemented by stores that can check their own indexes.
type Verifier interface {
	Verify(ctx context.Context) error
}

// Races is how many goroutines the concurrency checks start at once.
const Races = 16

// User and Project return deterministic, valid scope ids for tests.
func User(n int) meta.ScopeID {
	return meta.ScopeID{Kind: meta.KindUser, UUID: fmt.Sprintf("%032x", 0x1000+n)}
}

// Project returns the n-th test project scope id.
func Project(n int) meta.ScopeID {
	return meta.ScopeID{Kind: meta.KindProject, UUID: fmt.Sprintf("%032x", 0x2000+n)}
}

// NewFolder returns a valid, ready folder record with a fresh id.
func NewFolder(owner meta.ScopeID, volume, name string) meta.Folder {
	return meta.Folder{
		ID:         meta.NewFolderID(),
		Name:       name,
		Owner:      owner,
		Volume:     volume,
		UsageMode:  meta.ModeGeneral,
		Permission: meta.PermRW,
		Status:     meta.StatusReady,
	}
}

var errCallback = errors.New("callback refused")

type suite struct {
	open func(t *testing.T) meta.Store
}

func (su suite) run(t *testing.T, name string, fn func(t *testing.T, ctx context.Context, s meta.Store)) {
	t.Helper()
	t.Run(name, func(t *testing.T) {
		s := su.open(t)
		t.Cleanup(func() { _ = s.Close() })
		ctx := t.Context()
		fn(t, ctx, s)
		if v, ok := s.(Verifier); ok && !t.Failed() {
			if err := v.Verify(context.Background()); err != nil && !errors.Is(err, meta.ErrClosed) {
				t.Errorf("Verify after %s: %v", name, err)
			}
		}
	})
}

// RunStoreSuite checks every rule of the meta.Store contract. open must
// return a new, empty store each time it is called.
func RunStoreSuite(t *testing.T, open func(t *testing.T) meta.Store) {
	su := suite{open: open}
	su.run(t, "Volumes", testVolumes)
	su.run(t, "VolumeValidation", testVolumeValidation)
	su.run(t, "Scopes", testScopes)
	su.run(t, "ScopeValidation", testScopeValidation)
	su.run(t, "UpdateScope", testUpdateScope)
	su.run(t, "CreateGetFolder", testCreateGetFolder)
	su.run(t, "FolderIDForms", testFolderIDForms)
	su.run(t, "FolderValidation", testFolderValidation)
	su.run(t, "NameUniqueness", testNameUniqueness)
	su.run(t, "FolderLimit", testFolderLimit)
	su.run(t, "Rename", testRename)
	su.run(t, "UpdateFolder", testUpdateFolder)
	su.run(t, "DeleteFolder", testDeleteFolder)
	su.run(t, "ListFolders", testListFolders)
	su.run(t, "Copies", testCopies)
	su.run(t, "Policies", testPolicies)
	su.run(t, "PolicyVolumes", testPolicyVolumes)
	su.run(t, "Closed", testClosed)
	su.run(t, "RaceSameName", testRaceSameName)
	su.run(t, "RaceLimit", testRaceLimit)
	su.run(t, "RaceSameID", testRaceSameID)
	su.run(t, "RaceRename", testRaceRename)
	su.run(t, "RaceUpdateScope", testRaceUpdateScope)
	su.run(t, "RaceMixed", testRaceMixed)
	su.run(t, "Memberships", testMemberships)
	su.run(t, "MembershipValidation", testMembershipValidation)
	su.run(t, "RaceMemberships", testRaceMemberships)
	su.run(t, "Sessions", testSessions)
	su.run(t, "SessionFolderIndex", testSessionFolderIndex)
	su.run(t, "SessionFolderIndexMany", testSessionFolderIndexMany)
	su.run(t, "SessionValidation", testSessionValidation)
	su.run(t, "SessionCopies", testSessionCopies)
	su.run(t, "RaceSessions", testRaceSessions)
	runShareSuite(su, t)
	su.run(t, "SSHKeys", testSSHKeys)
	su.run(t, "SSHKeyValidation", testSSHKeyValidation)
	su.run(t, "RaceSSHKeys", testRaceSSHKeys)
	su.run(t, "SSHKeysClosed", testSSHKeysClosed)
}

// ---- helpers ----

func mustCreate(t *testing.T, ctx context.Context, s meta.Store, f meta.Folder, maxCount int) meta.Folder {
	t.Helper()
	if err := s.CreateFolder(ctx, f, maxCount); err != nil {
		t.Fatalf("CreateFolder(%q of %s on %q): %v", f.Name, f.Owner, f.Volume, err)
	}
	got, err := s.GetFolder(ctx, f.ID)
	if err != nil {
		t.Fatalf("GetFolder(%s) right after create: %v", f.ID, err)
	}
	return got
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: got error %v, want %v", what, err, want)
	}
}

func wantNoErr(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// snapshot is everything a store holds that the suite can observe.
type snapshot struct {
	Volumes  []meta.Volume
	Scopes   []meta.QuotaScope
	Folders  []meta.Folder
	Policies map[string]meta.Policy
	// Members are the memberships of the testOwners' projects, project by
	// project; Sessions every session.
	Members  []meta.Membership
	Sessions []meta.Session
}

// testOwners are the owners whose policies snapshot reads.
var testOwners = []meta.ScopeID{User(1), User(2), User(3), Project(1), Project(2)}

func takeSnapshot(t *testing.T, ctx context.Context, s meta.Store) snapshot {
	t.Helper()
	var sn snapshot
	var err error
	sn.Volumes, err = s.ListVolumes(ctx)
	wantNoErr(t, "ListVolumes", err)
	sn.Scopes, err = s.ListScopes(ctx, "")
	wantNoErr(t, "ListScopes", err)
	sn.Folders, err = s.ListFolders(ctx, meta.FolderFilter{IncludeDeleted: true})
	wantNoErr(t, "ListFolders", err)
	sn.Policies = map[string]meta.Policy{}
	for _, o := range testOwners {
		p, err := s.GetPolicy(ctx, o)
		wantNoErr(t, "GetPolicy", err)
		sn.Policies[o.String()] = p
		if o.Kind == meta.KindProject {
			ms, err := s.ListMembers(ctx, o.UUID)
			wantNoErr(t, "ListMembers", err)
			sn.Members = append(sn.Members, ms...)
		}
	}
	sn.Sessions, err = s.ListSessions(ctx)
	wantNoErr(t, "ListSessions", err)
	return sn
}

// sameSnapshot compares snapshots through their JSON form, so that equal
// instants compare equal whatever their in-memory representation, and an
// empty list equals a nil one.
func sameSnapshot(t *testing.T, what string, before, after snapshot) {
	t.Helper()
	enc := func(sn snapshot) string {
		if len(sn.Volumes) == 0 {
			sn.Volumes = nil
		}
		if len(sn.Scopes) == 0 {
			sn.Scopes = nil
		}
		if len(sn.Folders) == 0 {
			sn.Folders = nil
		}
		if len(sn.Members) == 0 {
			sn.Members = nil
		}
		if len(sn.Sessions) == 0 {
			sn.Sessions = nil
		}
		b, err := json.Marshal(sn)
		if err != nil {
			t.Fatalf("encode snapshot: %v", err)
		}
		return string(b)
	}
	if b, a := enc(before), enc(after); b != a {
		t.Errorf("%s changed the store:\nbefore %s\nafter  %s", what, b, a)
	}
}

func sameFolder(t *testing.T, what string, got, want meta.Folder) {
	t.Helper()
	if got.ID != want.ID || got.Name != want.Name || got.Owner != want.Owner || got.Volume != want.Volume ||
		got.UsageMode != want.UsageMode || got.Permission != want.Permission || got.Cloneable != want.Cloneable ||
		got.Status != want.Status || !got.CreatedAt.Equal(want.CreatedAt) || !got.UpdatedAt.Equal(want.UpdatedAt) {
		t.Errorf("%s:\ngot  %+v\nwant %+v", what, got, want)
	}
}

func names(fs []meta.Folder) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.Owner.String() + "/" + f.Name
	}
	return out
}

func countFolders(t *testing.T, ctx context.Context, s meta.Store, owner meta.ScopeID) int {
	t.Helper()
	fs, err := s.ListFolders(ctx, meta.FolderFilter{Owner: &owner, IncludeDeleted: true})
	wantNoErr(t, "ListFolders", err)
	return len(fs)
}

// race runs fn(i) for i in [0,n) in n goroutines released at once and
// returns their errors.
func race(n int, fn func(i int) error) []error {
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = fn(i)
		}()
	}
	close(start)
	wg.Wait()
	return errs
}

// tally counts nil errors and errors matching want; anything else fails t.
func tally(t *testing.T, errs []error, want error) (ok, matched int) {
	t.Helper()
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, want):
			matched++
		default:
			t.Errorf("goroutine %d: unexpected error %v (want nil or %v)", i, err, want)
		}
	}
	return ok, matched
}

// ---- volumes ----

func testVolumes(t *testing.T, ctx context.Context, s meta.Store) {
	if vs, err := s.ListVolumes(ctx); err != nil || len(vs) != 0 {
		t.Fatalf("ListVolumes on empty store = %v, %v; want none", vs, err)
	}
	_, err := s.GetVolume(ctx, "nope")
	wantErr(t, "GetVolume(unknown)", err, meta.ErrNotFound)

	b := meta.Volume{Name: "vol-b", Path: "/vfroot/b", RWCanDelete: true, MountAllowed: true}
	a := meta.Volume{Name: "nfs:a", Path: "/vfroot/a", CloneAllowed: true}
	wantNoErr(t, "PutVolume b", s.PutVolume(ctx, b))
	wantNoErr(t, "PutVolume a", s.PutVolume(ctx, a))
	got, err := s.GetVolume(ctx, "vol-b")
	wantNoErr(t, "GetVolume", err)
	if got != b {
		t.Errorf("GetVolume = %+v, want %+v", got, b)
	}
	vs, err := s.ListVolumes(ctx)
	wantNoErr(t, "ListVolumes", err)
	if !reflect.DeepEqual(vs, []meta.Volume{a, b}) {
		t.Errorf("ListVolumes = %+v, want [a b] ordered by name", vs)
	}

	// Put replaces.
	b2 := b
	b2.Path, b2.RWCanDelete, b2.CloneAllowed = "/vfroot/b2", false, true
	wantNoErr(t, "PutVolume replace", s.PutVolume(ctx, b2))
	got, err = s.GetVolume(ctx, "vol-b")
	wantNoErr(t, "GetVolume", err)
	if got != b2 {
		t.Errorf("after replace GetVolume = %+v, want %+v", got, b2)
	}
	vs, err = s.ListVolumes(ctx)
	wantNoErr(t, "ListVolumes", err)
	if len(vs) != 2 {
		t.Errorf("ListVolumes after replace has %d volumes, want 2", len(vs))
	}
}

func testVolumeValidation(t *testing.T, ctx context.Context, s meta.Store) {
	bad := []meta.Volume{
		{Name: "", Path: "/x"},
		{Name: "a/b", Path: "/x"},
		{Name: ".", Path: "/x"},
		{Name: "..", Path: "/x"},
		{Name: "a\x00b", Path: "/x"},
		{Name: "a\nb", Path: "/x"},
		{Name: " a", Path: "/x"},
		{Name: "\xff", Path: "/x"},
		{Name: strings.Repeat("v", 256), Path: "/x"},
		{Name: "ok", Path: ""},
		{Name: "ok", Path: "relative/path"},
		{Name: "ok", Path: "/a\x00b"},
		{Name: "ok", Path: "/a\xffb"},
	}
	before := takeSnapshot(t, ctx, s)
	for _, v := range bad {
		wantErr(t, fmt.Sprintf("PutVolume(%q, %q)", v.Name, v.Path), s.PutVolume(ctx, v), meta.ErrInvalid)
	}
	sameSnapshot(t, "invalid PutVolume", before, takeSnapshot(t, ctx, s))
	wantNoErr(t, "PutVolume 255-byte name", s.PutVolume(ctx, meta.Volume{Name: strings.Repeat("v", 255), Path: "/x"}))
}

// ---- scopes ----

func testScopes(t *testing.T, ctx context.Context, s meta.Store) {
	_, err := s.GetScope(ctx, "v1", User(1))
	wantErr(t, "GetScope(unknown)", err, meta.ErrNotFound)
	if ss, err := s.ListScopes(ctx, "v1"); err != nil || len(ss) != 0 {
		t.Fatalf("ListScopes on empty store = %v, %v", ss, err)
	}

	created := time.Date(2024, 5, 1, 12, 0, 0, 123456789, time.UTC)
	u1 := meta.QuotaScope{Volume: "v1", ID: User(1), LimitBytes: 1 << 30, LimitInodes: 1000, CreatedAt: created}
	wantNoErr(t, "CreateScope", s.CreateScope(ctx, u1))
	got, err := s.GetScope(ctx, "v1", User(1))
	wantNoErr(t, "GetScope", err)
	if got.Volume != "v1" || got.ID != User(1) || got.LimitBytes != 1<<30 || got.LimitInodes != 1000 ||
		!got.CreatedAt.Equal(created) || got.UpdatedAt.Before(got.CreatedAt) {
		t.Errorf("GetScope = %+v, want %+v", got, u1)
	}

	// A second create fails and leaves the first untouched.
	dup := u1
	dup.LimitBytes = 5
	wantErr(t, "CreateScope again", s.CreateScope(ctx, dup), meta.ErrExists)
	again, err := s.GetScope(ctx, "v1", User(1))
	wantNoErr(t, "GetScope", err)
	if again.LimitBytes != 1<<30 {
		t.Errorf("failed CreateScope changed LimitBytes to %d", again.LimitBytes)
	}

	// A store-set CreatedAt when none is given.
	before := time.Now().Add(-time.Minute)
	wantNoErr(t, "CreateScope p1", s.CreateScope(ctx, meta.QuotaScope{Volume: "v1", ID: Project(1)}))
	p1, err := s.GetScope(ctx, "v1", Project(1))
	wantNoErr(t, "GetScope p1", err)
	if p1.CreatedAt.Before(before) || p1.UpdatedAt.Before(p1.CreatedAt) {
		t.Errorf("CreatedAt/UpdatedAt not set by the store: %+v", p1)
	}

	// Same scope id on another volume is a different scope.
	wantNoErr(t, "CreateScope on v2", s.CreateScope(ctx, meta.QuotaScope{Volume: "v2", ID: User(1), LimitBytes: 7}))
	got, err = s.GetScope(ctx, "v2", User(1))
	wantNoErr(t, "GetScope v2", err)
	if got.LimitBytes != 7 {
		t.Errorf("scope on v2 has limit %d, want 7", got.LimitBytes)
	}
	_, err = s.GetScope(ctx, "v2", Project(1))
	wantErr(t, "GetScope(v2, project 1)", err, meta.ErrNotFound)

	ss, err := s.ListScopes(ctx, "v1")
	wantNoErr(t, "ListScopes v1", err)
	if len(ss) != 2 || ss[0].ID != Project(1) || ss[1].ID != User(1) {
		t.Errorf("ListScopes(v1) = %+v, want project:… then user:…", ss)
	}
	ss, err = s.ListScopes(ctx, "")
	wantNoErr(t, "ListScopes all", err)
	if len(ss) != 3 || ss[0].Volume != "v1" || ss[2].Volume != "v2" {
		t.Errorf("ListScopes(\"\") = %+v, want 3 scopes ordered by volume", ss)
	}
	ss, err = s.ListScopes(ctx, "v3")
	wantNoErr(t, "ListScopes v3", err)
	if len(ss) != 0 {
		t.Errorf("ListScopes(v3) = %+v, want none", ss)
	}
	// "v" is a prefix of "v1": it must not match.
	ss, err = s.ListScopes(ctx, "v")
	wantNoErr(t, "ListScopes v", err)
	if len(ss) != 0 {
		t.Errorf("ListScopes(v) = %+v, want none", ss)
	}
}

func testScopeValidation(t *testing.T, ctx context.Context, s meta.Store) {
	bad := []meta.QuotaScope{
		{Volume: "", ID: User(1)},
		{Volume: "a/b", ID: User(1)},
		{Volume: "v", ID: meta.ScopeID{}},
		{Volume: "v", ID: meta.ScopeID{Kind: "group", UUID: User(1).UUID}},
		{Volume: "v", ID: meta.ScopeID{Kind: meta.KindUser, UUID: "xyz"}},
		{Volume: "v", ID: meta.ScopeID{Kind: meta.KindUser, UUID: "ABCDEF" + strings.Repeat("0", 26)}},
		{Volume: "v", ID: meta.ScopeID{Kind: meta.KindUser, UUID: meta.DashedUUID(User(1).UUID)}},
		{Volume: "v", ID: User(1), LimitBytes: -1},
		{Volume: "v", ID: User(1), LimitInodes: -1},
	}
	before := takeSnapshot(t, ctx, s)
	for _, sc := range bad {
		wantErr(t, fmt.Sprintf("CreateScope(%+v)", sc), s.CreateScope(ctx, sc), meta.ErrInvalid)
	}
	sameSnapshot(t, "invalid CreateScope", before, takeSnapshot(t, ctx, s))
	_, err := s.GetScope(ctx, "v", meta.ScopeID{Kind: "group", UUID: "x"})
	wantErr(t, "GetScope(invalid id)", err, meta.ErrInvalid)
}

func testUpdateScope(t *testing.T, ctx context.Context, s meta.Store) {
	created := time.Date(2023, 1, 2, 3, 4, 5, 0, time.UTC)
	wantNoErr(t, "CreateScope", s.CreateScope(ctx, meta.QuotaScope{Volume: "v", ID: User(1), LimitBytes: 100, CreatedAt: created}))

	// Unknown scope: ErrNotFound and fn is not called.
	called := false
	_, err := s.UpdateScope(ctx, "v", User(2), func(*meta.QuotaScope) error { called = true; return nil })
	wantErr(t, "UpdateScope(unknown)", err, meta.ErrNotFound)
	if called {
		t.Errorf("UpdateScope called fn for an unknown scope")
	}
	_, err = s.UpdateScope(ctx, "v", meta.ScopeID{Kind: "x"}, func(*meta.QuotaScope) error { return nil })
	wantErr(t, "UpdateScope(invalid id)", err, meta.ErrInvalid)

	// fn's error is returned and nothing is written.
	before := takeSnapshot(t, ctx, s)
	_, err = s.UpdateScope(ctx, "v", User(1), func(q *meta.QuotaScope) error {
		q.LimitBytes = 999
		return errCallback
	})
	if !errors.Is(err, errCallback) {
		t.Errorf("UpdateScope with failing fn returned %v, want the callback's error", err)
	}
	sameSnapshot(t, "UpdateScope with failing fn", before, takeSnapshot(t, ctx, s))

	// Changing the identity or breaking a rule is ErrInvalid; nothing written.
	for what, fn := range map[string]func(*meta.QuotaScope){
		"volume":         func(q *meta.QuotaScope) { q.Volume = "other" },
		"id":             func(q *meta.QuotaScope) { q.ID = User(9) },
		"negative bytes": func(q *meta.QuotaScope) { q.LimitBytes = -5 },
		"negative inode": func(q *meta.QuotaScope) { q.LimitInodes = -5 },
	} {
		_, err := s.UpdateScope(ctx, "v", User(1), func(q *meta.QuotaScope) error { fn(q); return nil })
		wantErr(t, "UpdateScope changing "+what, err, meta.ErrInvalid)
	}
	sameSnapshot(t, "invalid UpdateScope", before, takeSnapshot(t, ctx, s))
	_, err = s.GetScope(ctx, "other", User(1))
	wantErr(t, "GetScope of the moved-to volume", err, meta.ErrNotFound)

	// A good update: limits change, CreatedAt stays, UpdatedAt is the store's.
	old, err := s.GetScope(ctx, "v", User(1))
	wantNoErr(t, "GetScope", err)
	upd, err := s.UpdateScope(ctx, "v", User(1), func(q *meta.QuotaScope) error {
		q.LimitBytes, q.LimitInodes = 0, 50
		q.CreatedAt = time.Unix(1, 0)
		q.UpdatedAt = time.Unix(2, 0)
		return nil
	})
	wantNoErr(t, "UpdateScope", err)
	if upd.LimitBytes != 0 || upd.LimitInodes != 50 || !upd.CreatedAt.Equal(created) || upd.UpdatedAt.Before(old.UpdatedAt) ||
		upd.UpdatedAt.Equal(time.Unix(2, 0)) {
		t.Errorf("UpdateScope returned %+v", upd)
	}
	got, err := s.GetScope(ctx, "v", User(1))
	wantNoErr(t, "GetScope", err)
	if got != upd && !(got.LimitBytes == upd.LimitBytes && got.LimitInodes == upd.LimitInodes &&
		got.CreatedAt.Equal(upd.CreatedAt) && got.UpdatedAt.Equal(upd.UpdatedAt)) {
		t.Errorf("GetScope after update = %+v, UpdateScope returned %+v", got, upd)
	}
}

// ---- folders ----

func testCreateGetFolder(t *testing.T, ctx context.Context, s meta.Store) {
	created := time.Date(2024, 2, 29, 23, 59, 59, 999, time.UTC)
	f := meta.Folder{
		ID: meta.NewFolderID(), Name: "data set ü", Owner: Project(1), Volume: "v1",
		UsageMode: meta.ModeModel, Permission: meta.PermWD, Cloneable: true, Status: meta.StatusCloning,
		CreatedAt: created,
	}
	got := mustCreate(t, ctx, s, f, 0)
	want := f
	want.UpdatedAt = got.UpdatedAt
	sameFolder(t, "GetFolder after CreateFolder", got, want)
	if got.UpdatedAt.Before(created) {
		t.Errorf("UpdatedAt %v is before CreatedAt %v", got.UpdatedAt, created)
	}
	byName, err := s.FolderByName(ctx, Project(1), "data set ü")
	wantNoErr(t, "FolderByName", err)
	sameFolder(t, "FolderByName", byName, got)

	// Store-set CreatedAt when none is given.
	before := time.Now().Add(-time.Minute)
	g := mustCreate(t, ctx, s, NewFolder(User(1), "v1", "plain"), 0)
	if g.CreatedAt.Before(before) || g.UpdatedAt.Before(g.CreatedAt) {
		t.Errorf("CreatedAt/UpdatedAt not set by the store: %+v", g)
	}

	_, err = s.GetFolder(ctx, meta.NewFolderID())
	wantErr(t, "GetFolder(unknown)", err, meta.ErrNotFound)
	_, err = s.FolderByName(ctx, Project(1), "other")
	wantErr(t, "FolderByName(unknown name)", err, meta.ErrNotFound)
	_, err = s.FolderByName(ctx, Project(2), "data set ü")
	wantErr(t, "FolderByName(other owner)", err, meta.ErrNotFound)
	_, err = s.FolderByName(ctx, meta.ScopeID{}, "data set ü")
	wantErr(t, "FolderByName(invalid owner)", err, meta.ErrInvalid)
	_, err = s.UpdateFolder(ctx, meta.NewFolderID(), func(*meta.Folder) error { return nil })
	wantErr(t, "UpdateFolder(unknown)", err, meta.ErrNotFound)
	wantErr(t, "DeleteFolder(unknown)", s.DeleteFolder(ctx, meta.NewFolderID()), meta.ErrNotFound)
}

func testFolderIDForms(t *testing.T, ctx context.Context, s meta.Store) {
	f := mustCreate(t, ctx, s, NewFolder(User(1), "v", "x"), 0)
	dashed := meta.DashedUUID(f.ID)
	for _, id := range []string{dashed, strings.ToUpper(dashed), strings.ToUpper(f.ID)} {
		got, err := s.GetFolder(ctx, id)
		if err != nil || got.ID != f.ID {
			t.Errorf("GetFolder(%q) = %s, %v; want %s", id, got.ID, err, f.ID)
		}
	}
	for _, id := range []string{"", "x", f.ID[:31], f.ID + "0", "../" + f.ID[3:], strings.Repeat("g", 32)} {
		_, err := s.GetFolder(ctx, id)
		wantErr(t, fmt.Sprintf("GetFolder(%q)", id), err, meta.ErrInvalid)
		_, err = s.UpdateFolder(ctx, id, func(*meta.Folder) error { return nil })
		wantErr(t, fmt.Sprintf("UpdateFolder(%q)", id), err, meta.ErrInvalid)
		wantErr(t, fmt.Sprintf("DeleteFolder(%q)", id), s.DeleteFolder(ctx, id), meta.ErrInvalid)
	}
	// Updates and deletes accept the dashed form too.
	_, err := s.UpdateFolder(ctx, dashed, func(f *meta.Folder) error { f.Status = meta.StatusMounted; return nil })
	wantNoErr(t, "UpdateFolder(dashed)", err)
	wantNoErr(t, "DeleteFolder(dashed)", s.DeleteFolder(ctx, strings.ToUpper(dashed)))
	_, err = s.GetFolder(ctx, f.ID)
	wantErr(t, "GetFolder after delete", err, meta.ErrNotFound)
}

func testFolderValidation(t *testing.T, ctx context.Context, s meta.Store) {
	base := NewFolder(User(1), "v", "good")
	cases := map[string]func(f *meta.Folder){
		"empty id":          func(f *meta.Folder) { f.ID = "" },
		"short id":          func(f *meta.Folder) { f.ID = f.ID[:30] },
		"uppercase id":      func(f *meta.Folder) { f.ID = strings.ToUpper(meta.NewFolderID()[:31]) + "A" },
		"dashed id":         func(f *meta.Folder) { f.ID = meta.DashedUUID(f.ID) },
		"non-hex id":        func(f *meta.Folder) { f.ID = strings.Repeat("z", 32) },
		"empty name":        func(f *meta.Folder) { f.Name = "" },
		"dotdot":            func(f *meta.Folder) { f.Name = ".." },
		"dot":               func(f *meta.Folder) { f.Name = "." },
		"slash":             func(f *meta.Folder) { f.Name = "a/b" },
		"reserved .ssh":     func(f *meta.Folder) { f.Name = ".ssh" },
		"reserved rc":       func(f *meta.Folder) { f.Name = ".bashrc" },
		"reserved profile":  func(f *meta.Folder) { f.Name = ".foo_profile" },
		"65 chars":          func(f *meta.Folder) { f.Name = strings.Repeat("é", 65) },
		"control char":      func(f *meta.Folder) { f.Name = "a\tb" },
		"NUL":               func(f *meta.Folder) { f.Name = "a\x00b" },
		"bad utf8":          func(f *meta.Folder) { f.Name = "a\xffb" },
		"leading space":     func(f *meta.Folder) { f.Name = " a" },
		"zero owner":        func(f *meta.Folder) { f.Owner = meta.ScopeID{} },
		"bad owner kind":    func(f *meta.Folder) { f.Owner.Kind = "group" },
		"bad owner uuid":    func(f *meta.Folder) { f.Owner.UUID = "1234" },
		"empty volume":      func(f *meta.Folder) { f.Volume = "" },
		"volume with slash": func(f *meta.Folder) { f.Volume = "a/b" },
		"unknown status":    func(f *meta.Folder) { f.Status = "gone" },
		"empty status":      func(f *meta.Folder) { f.Status = "" },
		"unknown mode":      func(f *meta.Folder) { f.UsageMode = "scratch" },
		"empty mode":        func(f *meta.Folder) { f.UsageMode = "" },
		"unknown perm":      func(f *meta.Folder) { f.Permission = "rwx" },
		"empty perm":        func(f *meta.Folder) { f.Permission = "" },
	}
	before := takeSnapshot(t, ctx, s)
	for what, mutate := range cases {
		f := base
		f.ID = meta.NewFolderID()
		mutate(&f)
		wantErr(t, "CreateFolder with "+what, s.CreateFolder(ctx, f, 0), meta.ErrInvalid)
	}
	f := base
	wantErr(t, "CreateFolder with negative maxCount", s.CreateFolder(ctx, f, -1), meta.ErrInvalid)
	sameSnapshot(t, "invalid CreateFolder", before, takeSnapshot(t, ctx, s))

	// The same rules hold for updates; a failed update writes nothing.
	mustCreate(t, ctx, s, base, 0)
	before = takeSnapshot(t, ctx, s)
	for what, mutate := range cases {
		if strings.Contains(what, "id") || strings.Contains(what, "owner") || strings.Contains(what, "volume") {
			continue // identity changes are tested in UpdateFolder
		}
		_, err := s.UpdateFolder(ctx, base.ID, func(f *meta.Folder) error { mutate(f); return nil })
		wantErr(t, "UpdateFolder with "+what, err, meta.ErrInvalid)
	}
	sameSnapshot(t, "invalid UpdateFolder", before, takeSnapshot(t, ctx, s))

	// Names at the edges that are allowed.
	for _, name := range []string{strings.Repeat("é", 64), ".local", ".linuxbrew", "データ", "a b", "...", "Ssh", ".SSH2"} {
		mustCreate(t, ctx, s, NewFolder(User(2), "v", name), 0)
	}
}

func testNameUniqueness(t *testing.T, ctx context.Context, s meta.Store) {
	a := mustCreate(t, ctx, s, NewFolder(User(1), "v1", "shared"), 0)

	// Same owner, same name, other volume.
	wantErr(t, "same name on another volume", s.CreateFolder(ctx, NewFolder(User(1), "v2", "shared"), 0), meta.ErrExists)
	// Same owner, same name, same volume.
	wantErr(t, "same name on the same volume", s.CreateFolder(ctx, NewFolder(User(1), "v1", "shared"), 0), meta.ErrExists)
	// Other owners may use the name.
	mustCreate(t, ctx, s, NewFolder(User(2), "v1", "shared"), 0)
	mustCreate(t, ctx, s, NewFolder(Project(1), "v2", "shared"), 0)
	// A project and a user with the same UUID are different owners.
	mustCreate(t, ctx, s, NewFolder(meta.ScopeID{Kind: meta.KindProject, UUID: User(1).UUID}, "v1", "shared"), 0)
	// Names are case-sensitive.
	mustCreate(t, ctx, s, NewFolder(User(1), "v1", "Shared"), 0)

	// Taken id.
	dupID := NewFolder(User(3), "v1", "fresh")
	dupID.ID = a.ID
	wantErr(t, "taken id", s.CreateFolder(ctx, dupID, 0), meta.ErrExists)
	_, err := s.FolderByName(ctx, User(3), "fresh")
	wantErr(t, "name of failed create", err, meta.ErrNotFound)

	// A trashed folder keeps its name.
	_, err = s.UpdateFolder(ctx, a.ID, func(f *meta.Folder) error { f.Status = meta.StatusDeletePending; return nil })
	wantNoErr(t, "trash", err)
	wantErr(t, "name of a trashed folder", s.CreateFolder(ctx, NewFolder(User(1), "v1", "shared"), 0), meta.ErrExists)
	for _, st := range []meta.Status{meta.StatusDeleteOngoing, meta.StatusDeleteError, meta.StatusDeleteComplete} {
		_, err = s.UpdateFolder(ctx, a.ID, func(f *meta.Folder) error { f.Status = st; return nil })
		wantNoErr(t, "status "+string(st), err)
		wantErr(t, "name of a folder in "+string(st), s.CreateFolder(ctx, NewFolder(User(1), "v2", "shared"), 0), meta.ErrExists)
	}
	// Purged: the name is free again.
	wantNoErr(t, "DeleteFolder", s.DeleteFolder(ctx, a.ID))
	mustCreate(t, ctx, s, NewFolder(User(1), "v2", "shared"), 0)
}

func testFolderLimit(t *testing.T, ctx context.Context, s meta.Store) {
	var ids []string
	for i := range 3 {
		ids = append(ids, mustCreate(t, ctx, s, NewFolder(User(1), "v", fmt.Sprint("f", i)), 3).ID)
	}
	before := takeSnapshot(t, ctx, s)
	wantErr(t, "4th folder with maxCount 3", s.CreateFolder(ctx, NewFolder(User(1), "v", "f3"), 3), meta.ErrLimitExceeded)
	wantErr(t, "4th folder with maxCount 2", s.CreateFolder(ctx, NewFolder(User(1), "v2", "f3"), 2), meta.ErrLimitExceeded)
	wantErr(t, "4th folder with maxCount 1", s.CreateFolder(ctx, NewFolder(User(1), "v", "f3"), 1), meta.ErrLimitExceeded)
	sameSnapshot(t, "CreateFolder over the limit", before, takeSnapshot(t, ctx, s))
	// Failed creates (name taken) do not use up the limit.
	wantErr(t, "taken name", s.CreateFolder(ctx, NewFolder(User(1), "v", "f0"), 10), meta.ErrExists)
	// The limit is per owner.
	mustCreate(t, ctx, s, NewFolder(User(2), "v", "f0"), 1)
	wantErr(t, "user 2 over its limit", s.CreateFolder(ctx, NewFolder(User(2), "v", "f1"), 1), meta.ErrLimitExceeded)
	mustCreate(t, ctx, s, NewFolder(Project(1), "v", "f0"), 1)
	// 0 means unlimited.
	mustCreate(t, ctx, s, NewFolder(User(1), "v", "f3"), 0)
	mustCreate(t, ctx, s, NewFolder(User(1), "v", "f4"), 6)
	// Trashed folders still count.
	_, err := s.UpdateFolder(ctx, ids[0], func(f *meta.Folder) error { f.Status = meta.StatusDeletePending; return nil })
	wantNoErr(t, "trash", err)
	wantErr(t, "6th folder with maxCount 5, one trashed", s.CreateFolder(ctx, NewFolder(User(1), "v", "f5"), 5), meta.ErrLimitExceeded)
	// Renames do not change the count.
	_, err = s.UpdateFolder(ctx, ids[1], func(f *meta.Folder) error { f.Name = "renamed"; return nil })
	wantNoErr(t, "rename", err)
	wantErr(t, "6th folder with maxCount 5 after rename", s.CreateFolder(ctx, NewFolder(User(1), "v", "f5"), 5), meta.ErrLimitExceeded)
	// DeleteFolder frees a slot.
	wantNoErr(t, "DeleteFolder", s.DeleteFolder(ctx, ids[0]))
	mustCreate(t, ctx, s, NewFolder(User(1), "v", "f5"), 5)
	wantErr(t, "6th folder with maxCount 5 again", s.CreateFolder(ctx, NewFolder(User(1), "v", "f6"), 5), meta.ErrLimitExceeded)
	if n := countFolders(t, ctx, s, User(1)); n != 5 {
		t.Errorf("user 1 has %d folders, want 5", n)
	}
}

func testRename(t *testing.T, ctx context.Context, s meta.Store) {
	a := mustCreate(t, ctx, s, NewFolder(User(1), "v1", "alpha"), 0)
	b := mustCreate(t, ctx, s, NewFolder(User(1), "v2", "beta"), 0)
	other := mustCreate(t, ctx, s, NewFolder(User(2), "v1", "gamma"), 0)

	// To a taken name (on another volume): ErrExists, nothing changes, not
	// even the other fields the callback touched.
	before := takeSnapshot(t, ctx, s)
	_, err := s.UpdateFolder(ctx, a.ID, func(f *meta.Folder) error {
		f.Name = "beta"
		f.Status = meta.StatusMounted
		f.Cloneable = true
		return nil
	})
	wantErr(t, "rename to a taken name", err, meta.ErrExists)
	sameSnapshot(t, "failed rename", before, takeSnapshot(t, ctx, s))

	// To a name another owner uses: fine.
	a2, err := s.UpdateFolder(ctx, a.ID, func(f *meta.Folder) error { f.Name = "gamma"; return nil })
	wantNoErr(t, "rename to another owner's name", err)
	if a2.Name != "gamma" {
		t.Errorf("UpdateFolder returned name %q", a2.Name)
	}
	got, err := s.FolderByName(ctx, User(1), "gamma")
	wantNoErr(t, "FolderByName new name", err)
	if got.ID != a.ID {
		t.Errorf("FolderByName(gamma) = %s, want %s", got.ID, a.ID)
	}
	got, err = s.FolderByName(ctx, User(2), "gamma")
	wantNoErr(t, "FolderByName other owner", err)
	if got.ID != other.ID {
		t.Errorf("other owner's gamma is now %s", got.ID)
	}
	// The old name is free.
	_, err = s.FolderByName(ctx, User(1), "alpha")
	wantErr(t, "FolderByName old name", err, meta.ErrNotFound)
	c := mustCreate(t, ctx, s, NewFolder(User(1), "v1", "alpha"), 0)

	// Renaming to its own name is a no-op rename.
	_, err = s.UpdateFolder(ctx, c.ID, func(f *meta.Folder) error { f.Name = "alpha"; return nil })
	wantNoErr(t, "rename to own name", err)
	// Invalid new names.
	for _, n := range []string{"", "..", "x/y", ".ssh", strings.Repeat("x", 65)} {
		_, err = s.UpdateFolder(ctx, c.ID, func(f *meta.Folder) error { f.Name = n; return nil })
		wantErr(t, fmt.Sprintf("rename to %q", n), err, meta.ErrInvalid)
	}
	// A trashed folder's name is taken.
	_, err = s.UpdateFolder(ctx, b.ID, func(f *meta.Folder) error { f.Status = meta.StatusDeletePending; return nil })
	wantNoErr(t, "trash", err)
	_, err = s.UpdateFolder(ctx, c.ID, func(f *meta.Folder) error { f.Name = "beta"; return nil })
	wantErr(t, "rename to a trashed folder's name", err, meta.ErrExists)
	// Swapping two names through a free name works.
	for _, step := range []struct {
		id, name string
	}{{c.ID, "tmp"}, {a.ID, "alpha"}, {c.ID, "gamma"}} {
		_, err = s.UpdateFolder(ctx, step.id, func(f *meta.Folder) error { f.Name = step.name; return nil })
		wantNoErr(t, "rename "+step.name, err)
	}
	for name, id := range map[string]string{"alpha": a.ID, "gamma": c.ID, "beta": b.ID} {
		got, err := s.FolderByName(ctx, User(1), name)
		if err != nil || got.ID != id {
			t.Errorf("FolderByName(%s) = %s, %v; want %s", name, got.ID, err, id)
		}
	}
	_, err = s.FolderByName(ctx, User(1), "tmp")
	wantErr(t, "FolderByName(tmp)", err, meta.ErrNotFound)
}

func testUpdateFolder(t *testing.T, ctx context.Context, s meta.Store) {
	created := time.Date(2022, 7, 1, 0, 0, 0, 0, time.UTC)
	f0 := NewFolder(User(1), "v1", "u")
	f0.CreatedAt = created
	f := mustCreate(t, ctx, s, f0, 0)
	mustCreate(t, ctx, s, NewFolder(User(2), "v1", "other"), 0)

	before := takeSnapshot(t, ctx, s)
	_, err := s.UpdateFolder(ctx, f.ID, func(f *meta.Folder) error {
		f.Status = meta.StatusError
		return errCallback
	})
	if !errors.Is(err, errCallback) {
		t.Errorf("UpdateFolder with failing fn returned %v, want the callback's error", err)
	}
	for what, fn := range map[string]func(*meta.Folder){
		"id":            func(f *meta.Folder) { f.ID = meta.NewFolderID() },
		"owner":         func(f *meta.Folder) { f.Owner = User(2) },
		"owner kind":    func(f *meta.Folder) { f.Owner.Kind = meta.KindProject },
		"volume":        func(f *meta.Folder) { f.Volume = "v2" },
		"id and status": func(f *meta.Folder) { f.ID = meta.NewFolderID(); f.Status = meta.StatusMounted },
	} {
		_, err := s.UpdateFolder(ctx, f.ID, func(f *meta.Folder) error { fn(f); return nil })
		wantErr(t, "UpdateFolder changing "+what, err, meta.ErrInvalid)
	}
	sameSnapshot(t, "failed UpdateFolder", before, takeSnapshot(t, ctx, s))

	upd, err := s.UpdateFolder(ctx, f.ID, func(g *meta.Folder) error {
		if g.ID != f.ID || g.Name != "u" || g.Status != meta.StatusReady {
			t.Errorf("fn got %+v, want the stored folder", *g)
		}
		g.Status = meta.StatusMounted
		g.Permission = meta.PermRO
		g.UsageMode = meta.ModeData
		g.Cloneable = true
		g.CreatedAt = time.Unix(5, 0)
		g.UpdatedAt = time.Unix(6, 0)
		return nil
	})
	wantNoErr(t, "UpdateFolder", err)
	if upd.Status != meta.StatusMounted || upd.Permission != meta.PermRO || upd.UsageMode != meta.ModeData || !upd.Cloneable {
		t.Errorf("UpdateFolder returned %+v", upd)
	}
	if !upd.CreatedAt.Equal(created) {
		t.Errorf("CreatedAt changed to %v", upd.CreatedAt)
	}
	if upd.UpdatedAt.Equal(time.Unix(6, 0)) || upd.UpdatedAt.Before(f.UpdatedAt) {
		t.Errorf("UpdatedAt is %v; want the store's clock (>= %v)", upd.UpdatedAt, f.UpdatedAt)
	}
	got, err := s.GetFolder(ctx, f.ID)
	wantNoErr(t, "GetFolder", err)
	sameFolder(t, "GetFolder after UpdateFolder", got, upd)
}

func testDeleteFolder(t *testing.T, ctx context.Context, s meta.Store) {
	a := mustCreate(t, ctx, s, NewFolder(User(1), "v", "doomed"), 0)
	b := mustCreate(t, ctx, s, NewFolder(User(1), "v", "kept"), 0)
	wantNoErr(t, "DeleteFolder", s.DeleteFolder(ctx, a.ID))
	_, err := s.GetFolder(ctx, a.ID)
	wantErr(t, "GetFolder after delete", err, meta.ErrNotFound)
	_, err = s.FolderByName(ctx, User(1), "doomed")
	wantErr(t, "FolderByName after delete", err, meta.ErrNotFound)
	wantErr(t, "DeleteFolder again", s.DeleteFolder(ctx, a.ID), meta.ErrNotFound)
	_, err = s.UpdateFolder(ctx, a.ID, func(*meta.Folder) error { return nil })
	wantErr(t, "UpdateFolder after delete", err, meta.ErrNotFound)
	if _, err := s.GetFolder(ctx, b.ID); err != nil {
		t.Errorf("the other folder is gone: %v", err)
	}
	// The name and even the id can be reused.
	mustCreate(t, ctx, s, NewFolder(User(1), "v", "doomed"), 0)
	again := NewFolder(User(2), "v", "reuse")
	again.ID = a.ID
	mustCreate(t, ctx, s, again, 0)
	if n := countFolders(t, ctx, s, User(1)); n != 2 {
		t.Errorf("user 1 has %d folders, want 2", n)
	}
}

func testListFolders(t *testing.T, ctx context.Context, s meta.Store) {
	type spec struct {
		owner  meta.ScopeID
		volume string
		name   string
		status meta.Status
	}
	specs := []spec{
		{User(2), "v1", "b", meta.StatusReady},
		{User(1), "v2", "z", meta.StatusMounted},
		{User(1), "v1", "a", meta.StatusReady},
		{User(1), "v1", "B", meta.StatusError},
		{User(1), "v2", "trash", meta.StatusDeletePending},
		{Project(1), "v1", "proj", meta.StatusReady},
		{Project(1), "v2", "gone", meta.StatusDeleteError},
		{User(2), "v2", "a", meta.StatusDeleteOngoing},
		{User(2), "v1", "c", meta.StatusCloning},
		{User(2), "v1", "d", meta.StatusDeleteComplete},
		{User(2), "v1", "e", meta.StatusPerforming},
	}
	for _, sp := range specs {
		f := NewFolder(sp.owner, sp.volume, sp.name)
		f.Status = sp.status
		mustCreate(t, ctx, s, f, 0)
	}
	u1, u2, p1, nobody := User(1), User(2), Project(1), User(3)
	p, u := Project(1).String()+"/", func(n int) string { return User(n).String() + "/" }
	cases := []struct {
		what   string
		filter meta.FolderFilter
		want   []string
	}{
		{"all live", meta.FolderFilter{}, []string{p + "proj", u(1) + "B", u(1) + "a", u(1) + "z", u(2) + "b", u(2) + "c", u(2) + "e"}},
		{"all", meta.FolderFilter{IncludeDeleted: true}, []string{p + "gone", p + "proj", u(1) + "B", u(1) + "a", u(1) + "trash", u(1) + "z",
			u(2) + "a", u(2) + "b", u(2) + "c", u(2) + "d", u(2) + "e"}},
		{"only deleted", meta.FolderFilter{OnlyDeleted: true}, []string{p + "gone", u(1) + "trash", u(2) + "a", u(2) + "d"}},
		{"only deleted wins over include", meta.FolderFilter{OnlyDeleted: true, IncludeDeleted: true}, []string{p + "gone", u(1) + "trash", u(2) + "a", u(2) + "d"}},
		{"owner", meta.FolderFilter{Owner: &u1}, []string{u(1) + "B", u(1) + "a", u(1) + "z"}},
		{"owner incl deleted", meta.FolderFilter{Owner: &u1, IncludeDeleted: true}, []string{u(1) + "B", u(1) + "a", u(1) + "trash", u(1) + "z"}},
		{"owner only deleted", meta.FolderFilter{Owner: &u2, OnlyDeleted: true}, []string{u(2) + "a", u(2) + "d"}},
		{"project", meta.FolderFilter{Owner: &p1, IncludeDeleted: true}, []string{p + "gone", p + "proj"}},
		{"volume", meta.FolderFilter{Volume: "v2"}, []string{u(1) + "z"}},
		{"volume incl deleted", meta.FolderFilter{Volume: "v2", IncludeDeleted: true}, []string{p + "gone", u(1) + "trash", u(1) + "z", u(2) + "a"}},
		{"owner and volume", meta.FolderFilter{Owner: &u2, Volume: "v1"}, []string{u(2) + "b", u(2) + "c", u(2) + "e"}},
		{"owner and volume, none", meta.FolderFilter{Owner: &u2, Volume: "v2"}, []string{}},
		{"unknown owner", meta.FolderFilter{Owner: &nobody, IncludeDeleted: true}, []string{}},
		{"unknown volume", meta.FolderFilter{Volume: "v", IncludeDeleted: true}, []string{}},
	}
	for _, c := range cases {
		for range 2 { // the order must be the same every time
			got, err := s.ListFolders(ctx, c.filter)
			if err != nil {
				t.Errorf("ListFolders(%s): %v", c.what, err)
				continue
			}
			if g := names(got); !reflect.DeepEqual(g, c.want) {
				t.Errorf("ListFolders(%s) = %q, want %q", c.what, g, c.want)
			}
		}
	}
	bad := meta.ScopeID{Kind: "user", UUID: "nope"}
	_, err := s.ListFolders(ctx, meta.FolderFilter{Owner: &bad})
	wantErr(t, "ListFolders(invalid owner)", err, meta.ErrInvalid)
	zero := meta.ScopeID{}
	_, err = s.ListFolders(ctx, meta.FolderFilter{Owner: &zero})
	wantErr(t, "ListFolders(zero owner)", err, meta.ErrInvalid)
}

func testCopies(t *testing.T, ctx context.Context, s meta.Store) {
	in := NewFolder(User(1), "v", "orig")
	wantNoErr(t, "CreateFolder", s.CreateFolder(ctx, in, 0))
	in.Name = "mutated input" // must not reach the store
	f, err := s.GetFolder(ctx, in.ID)
	wantNoErr(t, "GetFolder", err)
	if f.Name != "orig" {
		t.Fatalf("stored name is %q", f.Name)
	}
	f.Name, f.Status = "mutated get", meta.StatusError
	byName, err := s.FolderByName(ctx, User(1), "orig")
	wantNoErr(t, "FolderByName", err)
	byName.Name = "mutated byname"
	list, err := s.ListFolders(ctx, meta.FolderFilter{})
	wantNoErr(t, "ListFolders", err)
	list[0].Name = "mutated list"
	var kept *meta.Folder
	upd, err := s.UpdateFolder(ctx, in.ID, func(g *meta.Folder) error { kept = g; g.Cloneable = true; return nil })
	wantNoErr(t, "UpdateFolder", err)
	upd.Name = "mutated update result"
	kept.Name = "mutated after fn returned"
	got, err := s.GetFolder(ctx, in.ID)
	wantNoErr(t, "GetFolder", err)
	if got.Name != "orig" || got.Status != meta.StatusReady || !got.Cloneable {
		t.Errorf("mutating returned values changed the store: %+v", got)
	}

	wantNoErr(t, "PutVolume", s.PutVolume(ctx, meta.Volume{Name: "v", Path: "/v"}))
	vs, err := s.ListVolumes(ctx)
	wantNoErr(t, "ListVolumes", err)
	vs[0].Path = "/mutated"
	v, err := s.GetVolume(ctx, "v")
	wantNoErr(t, "GetVolume", err)
	v.Path = "/mutated2"
	if v, _ := s.GetVolume(ctx, "v"); v.Path != "/v" {
		t.Errorf("mutating returned volumes changed the store: %+v", v)
	}

	wantNoErr(t, "CreateScope", s.CreateScope(ctx, meta.QuotaScope{Volume: "v", ID: User(1), LimitBytes: 10}))
	ss, err := s.ListScopes(ctx, "v")
	wantNoErr(t, "ListScopes", err)
	ss[0].LimitBytes = 99
	var keptScope *meta.QuotaScope
	us, err := s.UpdateScope(ctx, "v", User(1), func(q *meta.QuotaScope) error { keptScope = q; q.LimitInodes = 3; return nil })
	wantNoErr(t, "UpdateScope", err)
	us.LimitBytes = 98
	keptScope.LimitBytes = 97
	if sc, _ := s.GetScope(ctx, "v", User(1)); sc.LimitBytes != 10 || sc.LimitInodes != 3 {
		t.Errorf("mutating returned scopes changed the store: %+v", sc)
	}
}

func testPolicies(t *testing.T, ctx context.Context, s meta.Store) {
	p, err := s.GetPolicy(ctx, User(1))
	if err != nil || !p.IsZero() || p.Volumes != nil {
		t.Errorf("GetPolicy(unknown) = %+v, %v; want the zero policy and no error", p, err)
	}
	want := meta.Policy{MaxFolderCount: 10, MaxQuotaScopeSize: 1 << 40}
	wantNoErr(t, "SetPolicy", s.SetPolicy(ctx, User(1), want))
	p, err = s.GetPolicy(ctx, User(1))
	if err != nil || !p.Equal(want) {
		t.Errorf("GetPolicy = %+v, %v; want %+v", p, err, want)
	}
	// Other owners, including the project with the same UUID, are unaffected.
	for _, o := range []meta.ScopeID{User(2), {Kind: meta.KindProject, UUID: User(1).UUID}} {
		if p, err := s.GetPolicy(ctx, o); err != nil || !p.IsZero() {
			t.Errorf("GetPolicy(%s) = %+v, %v; want zero", o, p, err)
		}
	}
	want2 := meta.Policy{MaxFolderCount: 3}
	wantNoErr(t, "SetPolicy replace", s.SetPolicy(ctx, User(1), want2))
	if p, _ := s.GetPolicy(ctx, User(1)); !p.Equal(want2) {
		t.Errorf("after replace GetPolicy = %+v, want %+v", p, want2)
	}
	wantNoErr(t, "SetPolicy zero", s.SetPolicy(ctx, User(1), meta.Policy{}))
	if p, _ := s.GetPolicy(ctx, User(1)); !p.IsZero() {
		t.Errorf("after setting the zero policy GetPolicy = %+v", p)
	}

	before := takeSnapshot(t, ctx, s)
	wantErr(t, "SetPolicy(invalid owner)", s.SetPolicy(ctx, meta.ScopeID{}, want), meta.ErrInvalid)
	wantErr(t, "SetPolicy(negative count)", s.SetPolicy(ctx, User(1), meta.Policy{MaxFolderCount: -1}), meta.ErrInvalid)
	wantErr(t, "SetPolicy(negative size)", s.SetPolicy(ctx, User(1), meta.Policy{MaxQuotaScopeSize: -1}), meta.ErrInvalid)
	sameSnapshot(t, "invalid SetPolicy", before, takeSnapshot(t, ctx, s))
	_, err = s.GetPolicy(ctx, meta.ScopeID{Kind: "user", UUID: "x"})
	wantErr(t, "GetPolicy(invalid owner)", err, meta.ErrInvalid)
}

// testPolicyVolumes checks the volume permissions of a policy: nil (all
// allowed) and an empty map (nothing allowed) stay apart, lists come back
// sorted without duplicates, returned and given maps are copies, and bad
// names are refused without a change.
func testPolicyVolumes(t *testing.T, ctx context.Context, s meta.Store) {
	// An empty map is not the zero policy: it is stored and read back
	// as an empty map (nothing allowed anywhere).
	wantNoErr(t, "SetPolicy(empty map)", s.SetPolicy(ctx, User(1), meta.Policy{Volumes: map[string][]string{}}))
	p, err := s.GetPolicy(ctx, User(1))
	wantNoErr(t, "GetPolicy", err)
	if p.Volumes == nil || len(p.Volumes) != 0 || p.IsZero() {
		t.Errorf("after SetPolicy(empty map) GetPolicy = %+v (Volumes nil: %v); want an empty, non-nil map", p, p.Volumes == nil)
	}
	if p.VolumeAllows("v", "create-vfolder") {
		t.Errorf("an empty volume map allows create-vfolder on v")
	}

	given := map[string][]string{
		"v":  {"mount-in-session", "create-vfolder", "mount-in-session"},
		"v2": {},
	}
	wantNoErr(t, "SetPolicy(volumes)", s.SetPolicy(ctx, User(1), meta.Policy{MaxFolderCount: 2, Volumes: given}))
	// Mutating what was given must not change the store.
	given["v"][0] = "clone"
	given["v3"] = []string{"clone"}
	p, err = s.GetPolicy(ctx, User(1))
	wantNoErr(t, "GetPolicy", err)
	want := meta.Policy{MaxFolderCount: 2, Volumes: map[string][]string{"v": {"create-vfolder", "mount-in-session"}, "v2": {}}}
	if !p.Equal(want) || len(p.Volumes["v"]) != 2 || p.Volumes["v"][0] != "create-vfolder" {
		t.Errorf("GetPolicy = %+v; want %+v (sorted, each name once)", p, want)
	}
	if !p.VolumeAllows("v", "create-vfolder") || p.VolumeAllows("v", "clone") || p.VolumeAllows("v2", "create-vfolder") || p.VolumeAllows("v3", "clone") {
		t.Errorf("VolumeAllows disagrees with %+v", p.Volumes)
	}
	// Mutating what was returned must not change the store.
	p.Volumes["v"][0] = "clone"
	p.Volumes["v9"] = []string{"clone"}
	again, _ := s.GetPolicy(ctx, User(1))
	if !again.Equal(want) {
		t.Errorf("mutating a returned policy changed the store: %+v", again)
	}

	before := takeSnapshot(t, ctx, s)
	for name, bad := range map[string]map[string][]string{
		"volume name with slash": {"a/b": {"clone"}},
		"empty volume name":      {"": {"clone"}},
		"upper-case permission":  {"v": {"Clone"}},
		"empty permission":       {"v": {""}},
		"permission with space":  {"v": {"mount in session"}},
	} {
		wantErr(t, "SetPolicy("+name+")", s.SetPolicy(ctx, User(1), meta.Policy{Volumes: bad}), meta.ErrInvalid)
	}
	sameSnapshot(t, "invalid volume permissions", before, takeSnapshot(t, ctx, s))

	// Back to nil: everything allowed again, and the record is the zero
	// policy once the counts are zero too.
	wantNoErr(t, "SetPolicy(nil volumes)", s.SetPolicy(ctx, User(1), meta.Policy{MaxFolderCount: 2}))
	if p, _ := s.GetPolicy(ctx, User(1)); p.Volumes != nil || !p.VolumeAllows("v", "clone") {
		t.Errorf("after resetting the volumes GetPolicy = %+v; want nil Volumes", p)
	}
}

func testClosed(t *testing.T, ctx context.Context, s meta.Store) {
	f := mustCreate(t, ctx, s, NewFolder(User(1), "v", "x"), 0)
	wantNoErr(t, "CreateScope", s.CreateScope(ctx, meta.QuotaScope{Volume: "v", ID: User(1)}))
	wantNoErr(t, "SetMembership", s.SetMembership(ctx, meta.Membership{Project: Project(1).UUID, User: User(1).UUID}))
	wantNoErr(t, "PutSession", s.PutSession(ctx, NewSession("s1", User(1), Mount(f.ID, "x"))))
	wantNoErr(t, "Close", s.Close())
	called := false
	noop := func(*meta.Folder) error { called = true; return nil }
	calls := map[string]func() error{
		"PutVolume":   func() error { return s.PutVolume(ctx, meta.Volume{Name: "v", Path: "/v"}) },
		"GetVolume":   func() error { _, err := s.GetVolume(ctx, "v"); return err },
		"ListVolumes": func() error { _, err := s.ListVolumes(ctx); return err },
		"CreateScope": func() error { return s.CreateScope(ctx, meta.QuotaScope{Volume: "v", ID: User(2)}) },
		"GetScope":    func() error { _, err := s.GetScope(ctx, "v", User(1)); return err },
		"UpdateScope": func() error {
			_, err := s.UpdateScope(ctx, "v", User(1), func(*meta.QuotaScope) error { called = true; return nil })
			return err
		},
		"ListScopes":   func() error { _, err := s.ListScopes(ctx, "v"); return err },
		"CreateFolder": func() error { return s.CreateFolder(ctx, NewFolder(User(1), "v", "y"), 0) },
		"GetFolder":    func() error { _, err := s.GetFolder(ctx, f.ID); return err },
		"FolderByName": func() error { _, err := s.FolderByName(ctx, User(1), "x"); return err },
		"ListFolders":  func() error { _, err := s.ListFolders(ctx, meta.FolderFilter{}); return err },
		"UpdateFolder": func() error { _, err := s.UpdateFolder(ctx, f.ID, noop); return err },
		"DeleteFolder": func() error { return s.DeleteFolder(ctx, f.ID) },
		"GetPolicy":    func() error { _, err := s.GetPolicy(ctx, User(1)); return err },
		"SetPolicy":    func() error { return s.SetPolicy(ctx, User(1), meta.Policy{MaxFolderCount: 1}) },
		"SetMembership": func() error {
			return s.SetMembership(ctx, meta.Membership{Project: Project(1).UUID, User: User(1).UUID})
		},
		"RemoveMembership":    func() error { return s.RemoveMembership(ctx, Project(1).UUID, User(1).UUID) },
		"ListMembers":         func() error { _, err := s.ListMembers(ctx, Project(1).UUID); return err },
		"ProjectsOf":          func() error { _, err := s.ProjectsOf(ctx, User(1).UUID); return err },
		"PutSession":          func() error { return s.PutSession(ctx, NewSession("s1", User(1), Mount(f.ID, "x"))) },
		"GetSession":          func() error { _, err := s.GetSession(ctx, "s1"); return err },
		"ListSessions":        func() error { _, err := s.ListSessions(ctx); return err },
		"DeleteSession":       func() error { return s.DeleteSession(ctx, "s1") },
		"SessionsUsingFolder": func() error { _, err := s.SessionsUsingFolder(ctx, f.ID); return err },
	}
	if v, ok := s.(Verifier); ok {
		calls["Verify"] = func() error { return v.Verify(ctx) }
	}
	for name, call := range calls {
		wantErr(t, name+" after Close", call(), meta.ErrClosed)
	}
	if called {
		t.Errorf("an update callback ran on a closed store")
	}
}

// ---- concurrency ----

func testRaceSameName(t *testing.T, ctx context.Context, s meta.Store) {
	for round, vol := range []string{"v1", ""} {
		name := fmt.Sprint("contested", round)
		errs := race(Races, func(i int) error {
			v := vol
			if v == "" { // every goroutine on its own volume
				v = fmt.Sprint("vol", i)
			}
			return s.CreateFolder(ctx, NewFolder(User(1), v, name), 0)
		})
		ok, exists := tally(t, errs, meta.ErrExists)
		if ok != 1 || exists != Races-1 {
			t.Errorf("round %d: %d creates of one name succeeded and %d got ErrExists; want 1 and %d", round, ok, exists, Races-1)
		}
	}
	if n := countFolders(t, ctx, s, User(1)); n != 2 {
		t.Errorf("user has %d folders, want 2", n)
	}
}

func testRaceLimit(t *testing.T, ctx context.Context, s meta.Store) {
	for _, limit := range []int{1, 5, Races - 1} {
		owner := User(100 + limit)
		errs := race(Races, func(i int) error {
			return s.CreateFolder(ctx, NewFolder(owner, fmt.Sprint("v", i%3), fmt.Sprint("f", i)), limit)
		})
		ok, over := tally(t, errs, meta.ErrLimitExceeded)
		if ok != limit || over != Races-limit {
			t.Errorf("maxCount %d: %d creates succeeded and %d got ErrLimitExceeded; want %d and %d", limit, ok, over, limit, Races-limit)
		}
		if n := countFolders(t, ctx, s, owner); n != limit {
			t.Errorf("maxCount %d: owner has %d folders", limit, n)
		}
	}
	// Distinct owners do not limit each other.
	errs := race(Races, func(i int) error {
		return s.CreateFolder(ctx, NewFolder(User(200+i), "v", "only"), 1)
	})
	if ok, _ := tally(t, errs, meta.ErrLimitExceeded); ok != Races {
		t.Errorf("%d of %d owners could create their single folder", ok, Races)
	}
}

func testRaceSameID(t *testing.T, ctx context.Context, s meta.Store) {
	id := meta.NewFolderID()
	errs := race(Races, func(i int) error {
		f := NewFolder(User(1+i%3), "v", fmt.Sprint("n", i))
		f.ID = id
		return s.CreateFolder(ctx, f, 0)
	})
	ok, exists := tally(t, errs, meta.ErrExists)
	if ok != 1 || exists != Races-1 {
		t.Errorf("%d creates of one id succeeded and %d got ErrExists; want 1 and %d", ok, exists, Races-1)
	}
	all, err := s.ListFolders(ctx, meta.FolderFilter{IncludeDeleted: true})
	wantNoErr(t, "ListFolders", err)
	if len(all) != 1 {
		t.Errorf("%d folders exist, want 1", len(all))
	}
}

func testRaceRename(t *testing.T, ctx context.Context, s meta.Store) {
	ids := make([]string, Races)
	for i := range ids {
		ids[i] = mustCreate(t, ctx, s, NewFolder(User(1), fmt.Sprint("v", i%2), fmt.Sprint("src", i)), 0).ID
	}
	errs := race(Races, func(i int) error {
		_, err := s.UpdateFolder(ctx, ids[i], func(f *meta.Folder) error { f.Name = "target"; return nil })
		return err
	})
	ok, exists := tally(t, errs, meta.ErrExists)
	if ok != 1 || exists != Races-1 {
		t.Errorf("%d renames to one name succeeded and %d got ErrExists; want 1 and %d", ok, exists, Races-1)
	}
	winner, err := s.FolderByName(ctx, User(1), "target")
	wantNoErr(t, "FolderByName(target)", err)
	for i, id := range ids {
		f, err := s.GetFolder(ctx, id)
		wantNoErr(t, "GetFolder", err)
		if won := errs[i] == nil; won != (f.Name == "target") || won != (winner.ID == id) {
			t.Errorf("folder %d: rename error %v but name %q (winner %s)", i, errs[i], f.Name, winner.ID)
		}
	}
	// Racing a rename against a create of the same name: one wins.
	for round := range 4 {
		name := fmt.Sprint("dual", round)
		errs = race(2, func(i int) error {
			if i == 0 {
				return s.CreateFolder(ctx, NewFolder(User(1), "v0", name), 0)
			}
			_, err := s.UpdateFolder(ctx, ids[round], func(f *meta.Folder) error { f.Name = name; return nil })
			return err
		})
		if ok, _ := tally(t, errs, meta.ErrExists); ok != 1 {
			t.Errorf("round %d: create and rename to %q: %d succeeded, want 1", round, name, ok)
		}
	}
}

func testRaceUpdateScope(t *testing.T, ctx context.Context, s meta.Store) {
	wantNoErr(t, "CreateScope", s.CreateScope(ctx, meta.QuotaScope{Volume: "v", ID: User(1)}))
	errs := race(Races, func(i int) error {
		_, err := s.UpdateScope(ctx, "v", User(1), func(q *meta.QuotaScope) error {
			q.LimitBytes++
			return nil
		})
		return err
	})
	tally(t, errs, nil)
	sc, err := s.GetScope(ctx, "v", User(1))
	wantNoErr(t, "GetScope", err)
	if sc.LimitBytes != Races {
		t.Errorf("after %d concurrent increments the limit is %d: updates were lost", Races, sc.LimitBytes)
	}
	// Concurrent CreateScope of one scope: exactly one wins.
	errs = race(Races, func(i int) error {
		return s.CreateScope(ctx, meta.QuotaScope{Volume: "v", ID: User(2), LimitBytes: int64(i + 1)})
	})
	if ok, exists := tally(t, errs, meta.ErrExists); ok != 1 || exists != Races-1 {
		t.Errorf("%d CreateScope succeeded and %d got ErrExists; want 1 and %d", ok, exists, Races-1)
	}
}

// testRaceMixed runs creates, renames, trashes and deletes of a few owners
// at once and then checks the counts against the records (and Verify, if
// the store has it).
func testRaceMixed(t *testing.T, ctx context.Context, s meta.Store) {
	const limit = 6
	owners := []meta.ScopeID{User(1), User(2), Project(1)}
	var mu sync.Mutex
	created := map[string]bool{}
	errs := race(Races, func(i int) error {
		owner := owners[i%len(owners)]
		for j := range 12 {
			name := fmt.Sprint("n", (i+j)%8)
			f := NewFolder(owner, fmt.Sprint("v", j%2), name)
			err := s.CreateFolder(ctx, f, limit)
			switch {
			case err == nil:
				mu.Lock()
				created[f.ID] = true
				mu.Unlock()
			case errors.Is(err, meta.ErrExists), errors.Is(err, meta.ErrLimitExceeded):
			default:
				return fmt.Errorf("create: %w", err)
			}
			if err == nil && j%3 == 0 {
				_, err := s.UpdateFolder(ctx, f.ID, func(f *meta.Folder) error { f.Name = fmt.Sprint("r", i, "-", j); return nil })
				if err != nil && !errors.Is(err, meta.ErrExists) {
					return fmt.Errorf("rename: %w", err)
				}
			}
			if err == nil && j%4 == 1 {
				if err := s.DeleteFolder(ctx, f.ID); err != nil {
					return fmt.Errorf("delete: %w", err)
				}
				mu.Lock()
				delete(created, f.ID)
				mu.Unlock()
			}
		}
		return nil
	})
	tally(t, errs, nil)
	total := 0
	for _, o := range owners {
		n := countFolders(t, ctx, s, o)
		if n > limit {
			t.Errorf("%s has %d folders, over its limit %d", o, n, limit)
		}
		total += n
	}
	all, err := s.ListFolders(ctx, meta.FolderFilter{IncludeDeleted: true})
	wantNoErr(t, "ListFolders", err)
	if len(all) != total || len(all) != len(created) {
		t.Errorf("ListFolders has %d folders, per-owner lists %d, successful creates minus deletes %d", len(all), total, len(created))
	}
	seen := map[string]bool{}
	for _, f := range all {
		if !created[f.ID] {
			t.Errorf("folder %s exists but was never reported created (or was deleted)", f.ID)
		}
		k := f.Owner.String() + "/" + f.Name
		if seen[k] {
			t.Errorf("two folders named %s", k)
		}
		seen[k] = true
	}
}
