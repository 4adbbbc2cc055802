package metatest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vfolder/vfolder/meta"
)

// Mount returns a valid read-write mount of folderID named name, at
// /home/work/<name>.
func Mount(folderID, name string) meta.SessionMount {
	return meta.SessionMount{FolderID: folderID, Name: name, Target: "/home/work/" + name, Mode: meta.PermRW}
}

// NewSession returns a valid session record of user (uid/gid 1000) with
// the given mounts.
func NewSession(id string, user meta.ScopeID, mounts ...meta.SessionMount) meta.Session {
	return meta.Session{ID: id, User: user.UUID, UID: 1000, GID: 1000, Mounts: mounts}
}

// folderN is the n-th deterministic test folder id.
func folderN(n int) string { return fmt.Sprintf("%032x", 0xf000+n) }

// ---- memberships ----

func memberships(t *testing.T, what string, got []meta.Membership, want ...meta.Membership) {
	t.Helper()
	if len(got) == 0 && len(want) == 0 {
		if got == nil {
			t.Errorf("%s returned nil, want an empty list", what)
		}
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s = %+v, want %+v", what, got, want)
	}
}

func testMemberships(t *testing.T, ctx context.Context, s meta.Store) {
	p1, p2, p3 := Project(1).UUID, Project(2).UUID, Project(3).UUID
	u1, u2, u3 := User(1).UUID, User(2).UUID, User(3).UUID

	ms, err := s.ListMembers(ctx, p1)
	wantNoErr(t, "ListMembers(empty)", err)
	memberships(t, "ListMembers(empty)", ms)
	ms, err = s.ProjectsOf(ctx, u1)
	wantNoErr(t, "ProjectsOf(empty)", err)
	memberships(t, "ProjectsOf(empty)", ms)
	wantErr(t, "RemoveMembership(absent)", s.RemoveMembership(ctx, p1, u1), meta.ErrNotFound)

	m11 := meta.Membership{Project: p1, User: u1}
	m12 := meta.Membership{Project: p1, User: u2, Permission: meta.PermRO}
	m13 := meta.Membership{Project: p1, User: u3, Permission: meta.PermWD}
	m21 := meta.Membership{Project: p2, User: u1, Permission: meta.PermRW}
	m31 := meta.Membership{Project: p3, User: u1}
	for _, m := range []meta.Membership{m31, m13, m21, m11, m12} { // out of order on purpose
		wantNoErr(t, "SetMembership", s.SetMembership(ctx, m))
	}
	ms, err = s.ListMembers(ctx, p1)
	wantNoErr(t, "ListMembers", err)
	memberships(t, "ListMembers(p1)", ms, m11, m12, m13)
	ms, err = s.ListMembers(ctx, p2)
	wantNoErr(t, "ListMembers", err)
	memberships(t, "ListMembers(p2)", ms, m21)
	ms, err = s.ProjectsOf(ctx, u1)
	wantNoErr(t, "ProjectsOf", err)
	memberships(t, "ProjectsOf(u1)", ms, m11, m21, m31)
	ms, err = s.ProjectsOf(ctx, u3)
	wantNoErr(t, "ProjectsOf", err)
	memberships(t, "ProjectsOf(u3)", ms, m13)
	// A user uuid is not a project uuid: the sides do not mix.
	ms, err = s.ListMembers(ctx, u1)
	wantNoErr(t, "ListMembers(a user's uuid)", err)
	memberships(t, "ListMembers(a user's uuid)", ms)
	ms, err = s.ProjectsOf(ctx, p1)
	wantNoErr(t, "ProjectsOf(a project's uuid)", err)
	memberships(t, "ProjectsOf(a project's uuid)", ms)

	// Set replaces: one record per pair, seen the same from both sides.
	m12b := meta.Membership{Project: p1, User: u2, Permission: meta.PermWD}
	wantNoErr(t, "SetMembership replace", s.SetMembership(ctx, m12b))
	m11b := meta.Membership{Project: p1, User: u1, Permission: meta.PermRO}
	wantNoErr(t, "SetMembership replace", s.SetMembership(ctx, m11b))
	m13b := meta.Membership{Project: p1, User: u3}
	wantNoErr(t, "SetMembership clear permission", s.SetMembership(ctx, m13b))
	ms, err = s.ListMembers(ctx, p1)
	wantNoErr(t, "ListMembers", err)
	memberships(t, "ListMembers(p1) after replace", ms, m11b, m12b, m13b)
	ms, err = s.ProjectsOf(ctx, u1)
	wantNoErr(t, "ProjectsOf", err)
	memberships(t, "ProjectsOf(u1) after replace", ms, m11b, m21, m31)

	// Arguments in other UUID forms.
	dashed := strings.ToUpper(meta.DashedUUID(p1))
	ms, err = s.ListMembers(ctx, dashed)
	wantNoErr(t, "ListMembers(dashed)", err)
	memberships(t, "ListMembers(dashed)", ms, m11b, m12b, m13b)
	ms, err = s.ProjectsOf(ctx, meta.DashedUUID(u3))
	wantNoErr(t, "ProjectsOf(dashed)", err)
	memberships(t, "ProjectsOf(dashed)", ms, m13b)

	// Remove takes one pair away, from both sides.
	wantNoErr(t, "RemoveMembership", s.RemoveMembership(ctx, dashed, strings.ToUpper(u2)))
	wantErr(t, "RemoveMembership again", s.RemoveMembership(ctx, p1, u2), meta.ErrNotFound)
	wantErr(t, "RemoveMembership(swapped)", s.RemoveMembership(ctx, u1, p2), meta.ErrNotFound)
	ms, err = s.ListMembers(ctx, p1)
	wantNoErr(t, "ListMembers", err)
	memberships(t, "ListMembers(p1) after remove", ms, m11b, m13b)
	ms, err = s.ProjectsOf(ctx, u2)
	wantNoErr(t, "ProjectsOf", err)
	memberships(t, "ProjectsOf(u2) after remove", ms)
	wantNoErr(t, "RemoveMembership", s.RemoveMembership(ctx, p2, u1))
	wantNoErr(t, "RemoveMembership", s.RemoveMembership(ctx, p3, u1))
	ms, err = s.ProjectsOf(ctx, u1)
	wantNoErr(t, "ProjectsOf", err)
	memberships(t, "ProjectsOf(u1) after removes", ms, m11b)
	ms, err = s.ListMembers(ctx, p2)
	wantNoErr(t, "ListMembers", err)
	memberships(t, "ListMembers(p2) after remove", ms)

	// A removed pair can come back.
	wantNoErr(t, "SetMembership again", s.SetMembership(ctx, m12))
	ms, err = s.ProjectsOf(ctx, u2)
	wantNoErr(t, "ProjectsOf", err)
	memberships(t, "ProjectsOf(u2) after re-adding", ms, m12)

	// Returned lists are copies.
	ms, err = s.ListMembers(ctx, p1)
	wantNoErr(t, "ListMembers", err)
	ms[0].Permission = meta.PermWD
	ms2, err := s.ProjectsOf(ctx, u1)
	wantNoErr(t, "ProjectsOf", err)
	ms2[0].Permission = meta.PermWD
	ms, err = s.ListMembers(ctx, p1)
	wantNoErr(t, "ListMembers", err)
	memberships(t, "ListMembers(p1) after mutating results", ms, m11b, m12, m13b)
}

func testMembershipValidation(t *testing.T, ctx context.Context, s meta.Store) {
	p, u := Project(1).UUID, User(1).UUID
	wantNoErr(t, "SetMembership", s.SetMembership(ctx, meta.Membership{Project: p, User: u, Permission: meta.PermRW}))
	before := takeSnapshot(t, ctx, s)
	bad := map[string]meta.Membership{
		"empty project":     {User: u},
		"empty user":        {Project: p},
		"dashed project":    {Project: meta.DashedUUID(p), User: u},
		"uppercase user":    {Project: p, User: strings.ToUpper(User(0xabc).UUID)},
		"short user":        {Project: p, User: u[:31]},
		"non-hex project":   {Project: strings.Repeat("g", 32), User: u},
		"scope id as user":  {Project: p, User: User(1).String()},
		"unknown perm":      {Project: p, User: u, Permission: "rwx"},
		"uppercase perm":    {Project: p, User: u, Permission: "RO"},
		"replace with junk": {Project: p, User: u, Permission: "none"},
	}
	for what, m := range bad {
		wantErr(t, "SetMembership with "+what, s.SetMembership(ctx, m), meta.ErrInvalid)
	}
	for _, arg := range []string{"", "x", p[:31], p + "0", "../" + p[3:], strings.Repeat("g", 32), "project:" + p} {
		wantErr(t, fmt.Sprintf("RemoveMembership(%q, user)", arg), s.RemoveMembership(ctx, arg, u), meta.ErrInvalid)
		wantErr(t, fmt.Sprintf("RemoveMembership(project, %q)", arg), s.RemoveMembership(ctx, p, arg), meta.ErrInvalid)
		_, err := s.ListMembers(ctx, arg)
		wantErr(t, fmt.Sprintf("ListMembers(%q)", arg), err, meta.ErrInvalid)
		_, err = s.ProjectsOf(ctx, arg)
		wantErr(t, fmt.Sprintf("ProjectsOf(%q)", arg), err, meta.ErrInvalid)
	}
	sameSnapshot(t, "invalid membership calls", before, takeSnapshot(t, ctx, s))
}

func testRaceMemberships(t *testing.T, ctx context.Context, s meta.Store) {
	projects := []string{Project(1).UUID, Project(2).UUID, Project(3).UUID}
	perms := []meta.Permission{"", meta.PermRO, meta.PermRW, meta.PermWD}
	// Every goroutine sets and removes memberships of a few shared pairs.
	errs := race(Races, func(i int) error {
		for j := range 20 {
			p, u := projects[(i+j)%3], User((i*7+j)%5).UUID
			if (i+j)%3 == 0 {
				if err := s.RemoveMembership(ctx, p, u); err != nil && !errors.Is(err, meta.ErrNotFound) {
					return err
				}
				continue
			}
			if err := s.SetMembership(ctx, meta.Membership{Project: p, User: u, Permission: perms[(i+j)%4]}); err != nil {
				return err
			}
		}
		return nil
	})
	tally(t, errs, nil)
	// Both sides agree.
	fromProjects := map[meta.Membership]bool{}
	for _, p := range projects {
		ms, err := s.ListMembers(ctx, p)
		wantNoErr(t, "ListMembers", err)
		for _, m := range ms {
			fromProjects[m] = true
		}
	}
	fromUsers := map[meta.Membership]bool{}
	for n := range 5 {
		ms, err := s.ProjectsOf(ctx, User(n).UUID)
		wantNoErr(t, "ProjectsOf", err)
		for _, m := range ms {
			fromUsers[m] = true
		}
	}
	if !reflect.DeepEqual(fromProjects, fromUsers) {
		t.Errorf("ListMembers and ProjectsOf disagree after concurrent changes:\nby project %v\nby user    %v", fromProjects, fromUsers)
	}

	// Exactly one of many concurrent removes of one pair succeeds.
	wantNoErr(t, "SetMembership", s.SetMembership(ctx, meta.Membership{Project: projects[0], User: User(9).UUID}))
	errs = race(Races, func(int) error { return s.RemoveMembership(ctx, projects[0], User(9).UUID) })
	if ok, missing := tally(t, errs, meta.ErrNotFound); ok != 1 || missing != Races-1 {
		t.Errorf("%d concurrent removes of one membership succeeded and %d got ErrNotFound; want 1 and %d", ok, missing, Races-1)
	}
}

// ---- sessions ----

func sameSession(t *testing.T, what string, got, want meta.Session) {
	t.Helper()
	wm := want.Mounts
	if wm == nil {
		wm = []meta.SessionMount{}
	}
	if got.ID != want.ID || got.User != want.User || got.UID != want.UID || got.GID != want.GID ||
		!reflect.DeepEqual(got.Mounts, wm) || !got.CreatedAt.Equal(want.CreatedAt) || !got.UpdatedAt.Equal(want.UpdatedAt) {
		t.Errorf("%s:\ngot  %+v\nwant %+v", what, got, want)
	}
}

func usingFolder(t *testing.T, ctx context.Context, s meta.Store, folder string, want ...string) {
	t.Helper()
	got, err := s.SessionsUsingFolder(ctx, folder)
	if err != nil {
		t.Errorf("SessionsUsingFolder(%s): %v", folder, err)
		return
	}
	if got == nil {
		t.Errorf("SessionsUsingFolder(%s) returned nil, want a list", folder)
	}
	if len(got) != len(want) || (len(want) > 0 && !reflect.DeepEqual(got, want)) {
		t.Errorf("SessionsUsingFolder(%s) = %q, want %q", folder, got, want)
	}
}

func testSessions(t *testing.T, ctx context.Context, s meta.Store) {
	_, err := s.GetSession(ctx, "nope")
	wantErr(t, "GetSession(unknown)", err, meta.ErrNotFound)
	wantErr(t, "DeleteSession(unknown)", s.DeleteSession(ctx, "nope"), meta.ErrNotFound)
	if ss, err := s.ListSessions(ctx); err != nil || ss == nil || len(ss) != 0 {
		t.Fatalf("ListSessions on an empty store = %v, %v; want an empty list", ss, err)
	}

	created := time.Date(2024, 3, 1, 8, 0, 0, 42, time.UTC)
	full := meta.Session{
		ID: "kernel-01.A_b", User: User(1).UUID, UID: 1001, GID: 4294967295,
		Mounts: []meta.SessionMount{
			{FolderID: folderN(1), Name: "data set ü", Target: "/home/work/data set ü", Mode: meta.PermRO,
				HostPath: "/run/vfolder/sessions/kernel-01.A_b/data set ü"},
			{FolderID: folderN(2), Subpath: "runs/2024", Name: "runs", Target: "/workspace", Mode: meta.PermWD},
			{FolderID: folderN(1), Subpath: "sub", Name: "again", Target: "/home/work/again", Mode: meta.PermRW},
		},
		CreatedAt: created,
		UpdatedAt: time.Unix(7, 0), // ignored: the store sets UpdatedAt
	}
	start := time.Now().Add(-time.Minute)
	wantNoErr(t, "PutSession", s.PutSession(ctx, full))
	got, err := s.GetSession(ctx, full.ID)
	wantNoErr(t, "GetSession", err)
	want := full
	want.UpdatedAt = got.UpdatedAt
	sameSession(t, "GetSession after PutSession", got, want)
	if got.UpdatedAt.Before(start) {
		t.Errorf("UpdatedAt %v is not the store's clock", got.UpdatedAt)
	}

	// No mounts at all, no CreatedAt: the store fills both in.
	bare := NewSession("bare", User(2))
	wantNoErr(t, "PutSession(no mounts)", s.PutSession(ctx, bare))
	gotBare, err := s.GetSession(ctx, "bare")
	wantNoErr(t, "GetSession(bare)", err)
	if gotBare.Mounts == nil || len(gotBare.Mounts) != 0 {
		t.Errorf("a session without mounts has Mounts %#v, want an empty non-nil list", gotBare.Mounts)
	}
	if gotBare.CreatedAt.Before(start) || gotBare.UpdatedAt.Before(gotBare.CreatedAt) {
		t.Errorf("CreatedAt/UpdatedAt not set by the store: %+v", gotBare)
	}
	empty := NewSession("empty", User(2))
	empty.Mounts = []meta.SessionMount{}
	wantNoErr(t, "PutSession(empty mounts)", s.PutSession(ctx, empty))

	list, err := s.ListSessions(ctx)
	wantNoErr(t, "ListSessions", err)
	var ids []string
	for _, x := range list {
		ids = append(ids, x.ID)
	}
	if want := []string{"bare", "empty", "kernel-01.A_b"}; !reflect.DeepEqual(ids, want) {
		t.Errorf("ListSessions ids = %q, want %q", ids, want)
	}
	for _, x := range list {
		if x.ID == full.ID {
			sameSession(t, "ListSessions entry", x, got)
		}
	}

	// Replace: the whole record changes, CreatedAt stays, UpdatedAt moves.
	repl := meta.Session{ID: full.ID, User: User(3).UUID, UID: 0, GID: 0,
		Mounts:    []meta.SessionMount{Mount(folderN(3), "new")},
		CreatedAt: time.Unix(1, 0)}
	wantNoErr(t, "PutSession replace", s.PutSession(ctx, repl))
	got2, err := s.GetSession(ctx, full.ID)
	wantNoErr(t, "GetSession after replace", err)
	want = repl
	want.CreatedAt, want.UpdatedAt = created, got2.UpdatedAt
	sameSession(t, "GetSession after replace", got2, want)
	if got2.UpdatedAt.Before(got.UpdatedAt) {
		t.Errorf("UpdatedAt went back from %v to %v", got.UpdatedAt, got2.UpdatedAt)
	}
	if list, _ := s.ListSessions(ctx); len(list) != 3 {
		t.Errorf("ListSessions after replace has %d sessions, want 3", len(list))
	}

	// Delete.
	wantNoErr(t, "DeleteSession", s.DeleteSession(ctx, full.ID))
	_, err = s.GetSession(ctx, full.ID)
	wantErr(t, "GetSession after delete", err, meta.ErrNotFound)
	wantErr(t, "DeleteSession again", s.DeleteSession(ctx, full.ID), meta.ErrNotFound)
	if _, err := s.GetSession(ctx, "bare"); err != nil {
		t.Errorf("another session is gone: %v", err)
	}
	// A deleted id is free: a new record gets a new CreatedAt.
	wantNoErr(t, "PutSession after delete", s.PutSession(ctx, NewSession(full.ID, User(1))))
	got3, err := s.GetSession(ctx, full.ID)
	wantNoErr(t, "GetSession", err)
	if got3.CreatedAt.Equal(created) {
		t.Errorf("a session put after its delete kept the old CreatedAt")
	}
}

func testSessionFolderIndex(t *testing.T, ctx context.Context, s meta.Store) {
	f1, f2, f3, f4 := folderN(1), folderN(2), folderN(3), folderN(4)
	usingFolder(t, ctx, s, f1)

	// Real folders and made-up ids alike: the store does not check folders.
	rf := mustCreate(t, ctx, s, NewFolder(User(1), "v", "real"), 0)
	a := NewSession("a", User(1), Mount(f1, "one"), Mount(f2, "two"), Mount(rf.ID, "real"))
	b := NewSession("b", User(2), Mount(f1, "x"))
	// Two mounts of one folder: the session is listed once.
	c := NewSession("c", User(2), Mount(f1, "p"), Mount(f1, "q"), Mount(f3, "r"))
	for _, x := range []meta.Session{c, a, b} {
		wantNoErr(t, "PutSession "+x.ID, s.PutSession(ctx, x))
	}
	usingFolder(t, ctx, s, f1, "a", "b", "c")
	usingFolder(t, ctx, s, f2, "a")
	usingFolder(t, ctx, s, f3, "c")
	usingFolder(t, ctx, s, f4)
	usingFolder(t, ctx, s, rf.ID, "a")
	// Any UUID form.
	usingFolder(t, ctx, s, strings.ToUpper(meta.DashedUUID(f1)), "a", "b", "c")

	// Replacing a session moves its index entries.
	a2 := NewSession("a", User(1), Mount(f2, "two"), Mount(f4, "four"))
	wantNoErr(t, "PutSession replace", s.PutSession(ctx, a2))
	usingFolder(t, ctx, s, f1, "b", "c")
	usingFolder(t, ctx, s, f2, "a")
	usingFolder(t, ctx, s, f4, "a")
	usingFolder(t, ctx, s, rf.ID)
	// Dropping one of two mounts of a folder keeps the entry.
	c2 := NewSession("c", User(2), Mount(f1, "q"))
	wantNoErr(t, "PutSession replace", s.PutSession(ctx, c2))
	usingFolder(t, ctx, s, f1, "b", "c")
	usingFolder(t, ctx, s, f3)
	// A failed replace changes neither the record nor the index.
	before := takeSnapshot(t, ctx, s)
	badA := NewSession("a", User(1), Mount(f3, "ok"), Mount(f1, "bad/name"))
	wantErr(t, "invalid replace", s.PutSession(ctx, badA), meta.ErrInvalid)
	sameSnapshot(t, "invalid replace", before, takeSnapshot(t, ctx, s))
	usingFolder(t, ctx, s, f2, "a")
	usingFolder(t, ctx, s, f3)
	// Deleting removes its entries only.
	wantNoErr(t, "DeleteSession", s.DeleteSession(ctx, "b"))
	usingFolder(t, ctx, s, f1, "c")
	wantNoErr(t, "PutSession without mounts", s.PutSession(ctx, NewSession("c", User(2))))
	usingFolder(t, ctx, s, f1)
	wantNoErr(t, "DeleteSession", s.DeleteSession(ctx, "a"))
	for _, f := range []string{f1, f2, f3, f4, rf.ID} {
		usingFolder(t, ctx, s, f)
	}
	// Session and folder records are independent: deleting the folder
	// leaves the session alone, and the index keeps listing it.
	wantNoErr(t, "PutSession", s.PutSession(ctx, NewSession("d", User(1), Mount(rf.ID, "real"))))
	wantNoErr(t, "DeleteFolder", s.DeleteFolder(ctx, rf.ID))
	usingFolder(t, ctx, s, rf.ID, "d")

	// Many sessions on one folder come back sorted.
	var want []string
	for i := range 40 {
		id := fmt.Sprintf("s%02d", (i*17)%40)
		want = append(want, id)
		wantNoErr(t, "PutSession", s.PutSession(ctx, NewSession(id, User(1), Mount(f4, "m"))))
	}
	slices.Sort(want)
	usingFolder(t, ctx, s, f4, want...)

	for _, id := range []string{"", "x", f1[:31], f1 + "0", "../" + f1[3:], strings.Repeat("g", 32)} {
		_, err := s.SessionsUsingFolder(ctx, id)
		wantErr(t, fmt.Sprintf("SessionsUsingFolder(%q)", id), err, meta.ErrInvalid)
	}
}

// testSessionFolderIndexMany moves sessions between many distinct folders
// (more than a store may be able to index with one entry per folder in one
// transaction) and few, overlapping and not, and checks after every step
// that the index answers exactly what the records say.
func testSessionFolderIndexMany(t *testing.T, ctx context.Context, s meta.Store) {
	const span = meta.MaxSessionMounts + 100
	mounts := func(from, n int) []meta.SessionMount {
		ms := make([]meta.SessionMount, n)
		for i := range ms {
			ms[i] = Mount(folderN(from+i), fmt.Sprint("m", i))
		}
		return ms
	}
	type step struct {
		id       string
		from, n  int
		deleting bool
	}
	steps := []step{
		{id: "a", from: 0, n: 200},
		{id: "b", from: 150, n: 3},
		{id: "a", from: 100, n: 200}, // many to many, half the folders kept
		{id: "a", from: 90, n: 20},   // many to few, some kept
		{id: "c", from: 0, n: meta.MaxSessionMounts},
		{id: "a", from: 95, n: 61},   // few to many, some kept
		{id: "a", from: 1000, n: 60}, // many to few, none kept
		{id: "a", from: 1030, n: 60}, // few to few, half kept
		{id: "c", from: 1059, n: 2},
		{id: "c", deleting: true},
		{id: "b", from: 0, n: 500},
		{id: "b", deleting: true},
		{id: "a", deleting: true},
	}
	model := map[string][2]int{} // session -> [from, n]
	for i, st := range steps {
		if st.deleting {
			wantNoErr(t, fmt.Sprintf("step %d: DeleteSession %s", i, st.id), s.DeleteSession(ctx, st.id))
			delete(model, st.id)
		} else {
			wantNoErr(t, fmt.Sprintf("step %d: PutSession %s", i, st.id), s.PutSession(ctx, NewSession(st.id, User(1), mounts(st.from, st.n)...)))
			model[st.id] = [2]int{st.from, st.n}
		}
		// Every folder at the edges of a range, and a stride through the rest.
		check := map[int]bool{}
		for _, r := range model {
			for _, k := range []int{r[0] - 1, r[0], r[0] + 1, r[0] + r[1] - 1, r[0] + r[1]} {
				check[k] = true
			}
		}
		for k := 0; k < span; k += 37 {
			check[k] = true
		}
		for k := range check {
			if k < 0 {
				continue
			}
			var want []string
			for id, r := range model {
				if k >= r[0] && k < r[0]+r[1] {
					want = append(want, id)
				}
			}
			slices.Sort(want)
			usingFolder(t, ctx, s, folderN(k), want...)
		}
		if t.Failed() {
			t.Fatalf("the folder index is wrong after step %d (%+v)", i, st)
		}
		if v, ok := s.(Verifier); ok {
			wantNoErr(t, fmt.Sprintf("Verify after step %d", i), v.Verify(ctx))
		}
	}
}

func testSessionValidation(t *testing.T, ctx context.Context, s meta.Store) {
	f := folderN(1)
	base := func() meta.Session {
		return NewSession("base", User(1), Mount(f, "a"), Mount(folderN(2), "b"))
	}
	mount0 := func(fn func(m *meta.SessionMount)) func(s *meta.Session) {
		return func(s *meta.Session) { fn(&s.Mounts[0]) }
	}
	long := "/" + strings.Repeat("x", meta.MaxPathLen)
	cases := map[string]func(s *meta.Session){
		"empty id":            func(s *meta.Session) { s.ID = "" },
		"dot id":              func(s *meta.Session) { s.ID = "." },
		"dotdot id":           func(s *meta.Session) { s.ID = ".." },
		"slash in id":         func(s *meta.Session) { s.ID = "a/b" },
		"space in id":         func(s *meta.Session) { s.ID = "a b" },
		"colon in id":         func(s *meta.Session) { s.ID = "a:b" },
		"non-ascii id":        func(s *meta.Session) { s.ID = "sé" },
		"NUL in id":           func(s *meta.Session) { s.ID = "a\x00" },
		"129-char id":         func(s *meta.Session) { s.ID = strings.Repeat("a", 129) },
		"empty user":          func(s *meta.Session) { s.User = "" },
		"dashed user":         func(s *meta.Session) { s.User = meta.DashedUUID(User(1).UUID) },
		"scope id as user":    func(s *meta.Session) { s.User = User(1).String() },
		"uppercase user":      func(s *meta.Session) { s.User = strings.ToUpper(User(0xabc).UUID) },
		"empty folder id":     mount0(func(m *meta.SessionMount) { m.FolderID = "" }),
		"dashed folder id":    mount0(func(m *meta.SessionMount) { m.FolderID = meta.DashedUUID(f) }),
		"short folder id":     mount0(func(m *meta.SessionMount) { m.FolderID = f[:31] }),
		"empty mode":          mount0(func(m *meta.SessionMount) { m.Mode = "" }),
		"unknown mode":        mount0(func(m *meta.SessionMount) { m.Mode = "rwx" }),
		"empty name":          mount0(func(m *meta.SessionMount) { m.Name = "" }),
		"dot name":            mount0(func(m *meta.SessionMount) { m.Name = "." }),
		"dotdot name":         mount0(func(m *meta.SessionMount) { m.Name = ".." }),
		"slash in name":       mount0(func(m *meta.SessionMount) { m.Name = "a/b" }),
		"NUL in name":         mount0(func(m *meta.SessionMount) { m.Name = "a\x00b" }),
		"newline in name":     mount0(func(m *meta.SessionMount) { m.Name = "a\nb" }),
		"DEL in name":         mount0(func(m *meta.SessionMount) { m.Name = "a\x7fb" }),
		"bad utf8 name":       mount0(func(m *meta.SessionMount) { m.Name = "a\xffb" }),
		"256-byte name":       mount0(func(m *meta.SessionMount) { m.Name = strings.Repeat("n", 256) }),
		"duplicate name":      func(s *meta.Session) { s.Mounts[1].Name = s.Mounts[0].Name },
		"empty target":        mount0(func(m *meta.SessionMount) { m.Target = "" }),
		"relative target":     mount0(func(m *meta.SessionMount) { m.Target = "home/work/a" }),
		"unclean target":      mount0(func(m *meta.SessionMount) { m.Target = "/home/work/../a" }),
		"trailing slash":      mount0(func(m *meta.SessionMount) { m.Target = "/home/work/a/" }),
		"double slash":        mount0(func(m *meta.SessionMount) { m.Target = "/home//a" }),
		"control in target":   mount0(func(m *meta.SessionMount) { m.Target = "/home/work/a\tb" }),
		"bad utf8 target":     mount0(func(m *meta.SessionMount) { m.Target = "/home/\xff" }),
		"long target":         mount0(func(m *meta.SessionMount) { m.Target = long }),
		"duplicate target":    func(s *meta.Session) { s.Mounts[1].Target = s.Mounts[0].Target },
		"relative host path":  mount0(func(m *meta.SessionMount) { m.HostPath = "run/x" }),
		"NUL in host path":    mount0(func(m *meta.SessionMount) { m.HostPath = "/run/a\x00b" }),
		"bad utf8 host path":  mount0(func(m *meta.SessionMount) { m.HostPath = "/run/\xff" }),
		"long host path":      mount0(func(m *meta.SessionMount) { m.HostPath = long }),
		"absolute subpath":    mount0(func(m *meta.SessionMount) { m.Subpath = "/etc" }),
		"dotdot subpath":      mount0(func(m *meta.SessionMount) { m.Subpath = ".." }),
		"escaping subpath":    mount0(func(m *meta.SessionMount) { m.Subpath = "a/../../b" }),
		"dotdot last":         mount0(func(m *meta.SessionMount) { m.Subpath = "a/.." }),
		"NUL in subpath":      mount0(func(m *meta.SessionMount) { m.Subpath = "a\x00" }),
		"bad utf8 subpath":    mount0(func(m *meta.SessionMount) { m.Subpath = "\xfe" }),
		"long subpath":        mount0(func(m *meta.SessionMount) { m.Subpath = long[1:] + "x" }),
		"second mount broken": func(s *meta.Session) { s.Mounts[1].Mode = "" },
		"too many mounts": func(s *meta.Session) {
			s.Mounts = nil
			for i := range meta.MaxSessionMounts + 1 {
				s.Mounts = append(s.Mounts, Mount(folderN(i), fmt.Sprint("m", i)))
			}
		},
	}
	wantNoErr(t, "PutSession", s.PutSession(ctx, base()))
	before := takeSnapshot(t, ctx, s)
	for what, mutate := range cases {
		x := base()
		mutate(&x)
		if err := meta.ValidateSession(x); !errors.Is(err, meta.ErrInvalid) {
			t.Errorf("ValidateSession with %s: %v, want ErrInvalid", what, err)
		}
		wantErr(t, "PutSession with "+what, s.PutSession(ctx, x), meta.ErrInvalid)
	}
	sameSnapshot(t, "invalid PutSession", before, takeSnapshot(t, ctx, s))
	usingFolder(t, ctx, s, f, "base")
	for _, id := range []string{"", ".", "..", "a/b", "../base", strings.Repeat("a", 129), "a b"} {
		_, err := s.GetSession(ctx, id)
		wantErr(t, fmt.Sprintf("GetSession(%q)", id), err, meta.ErrInvalid)
		wantErr(t, fmt.Sprintf("DeleteSession(%q)", id), s.DeleteSession(ctx, id), meta.ErrInvalid)
	}

	// Edges that are allowed.
	good := map[string]func(s *meta.Session){
		"128-char id":         func(s *meta.Session) { s.ID = strings.Repeat("Z", 128) },
		"dotted ids":          func(s *meta.Session) { s.ID = "..." },
		"leading dot id":      func(s *meta.Session) { s.ID = ".hidden-_1" },
		"255-byte name":       mount0(func(m *meta.SessionMount) { m.Name = strings.Repeat("n", 255) }),
		"unicode name":        mount0(func(m *meta.SessionMount) { m.Name = "データ .x" }),
		"root target":         mount0(func(m *meta.SessionMount) { m.Target = "/" }),
		"4095-byte target":    mount0(func(m *meta.SessionMount) { m.Target = long[:meta.MaxPathLen] }),
		"subpath":             mount0(func(m *meta.SessionMount) { m.Subpath = "a/b c/..d/.e" }),
		"dot subpath":         mount0(func(m *meta.SessionMount) { m.Subpath = "./a//b/" }),
		"control in subpath":  mount0(func(m *meta.SessionMount) { m.Subpath = "a\tb" }),
		"same folder twice":   func(s *meta.Session) { s.Mounts[1].FolderID = s.Mounts[0].FolderID },
		"uid and gid max":     func(s *meta.Session) { s.UID, s.GID = ^uint32(0), ^uint32(0) },
		"as many as allowed":  func(s *meta.Session) { s.Mounts = manyMounts(meta.MaxSessionMounts) },
		"mode ro":             mount0(func(m *meta.SessionMount) { m.Mode = meta.PermRO }),
		"unicode host path":   mount0(func(m *meta.SessionMount) { m.HostPath = "/run/vf/セッション" }),
		"control in hostpath": mount0(func(m *meta.SessionMount) { m.HostPath = "/run/a\nb" }),
	}
	for what, mutate := range good {
		x := base()
		mutate(&x)
		if x.ID == "base" {
			x.ID = "good-" + strings.ReplaceAll(what, " ", "-")
		}
		wantNoErr(t, "PutSession with "+what, s.PutSession(ctx, x))
		got, err := s.GetSession(ctx, x.ID)
		wantNoErr(t, "GetSession with "+what, err)
		x.CreatedAt, x.UpdatedAt = got.CreatedAt, got.UpdatedAt
		sameSession(t, "round trip with "+what, got, x)
	}
}

func manyMounts(n int) []meta.SessionMount {
	ms := make([]meta.SessionMount, n)
	for i := range ms {
		ms[i] = Mount(folderN(i), fmt.Sprint("m", i))
	}
	return ms
}

func testSessionCopies(t *testing.T, ctx context.Context, s meta.Store) {
	in := NewSession("s", User(1), Mount(folderN(1), "a"), Mount(folderN(2), "b"))
	wantNoErr(t, "PutSession", s.PutSession(ctx, in))
	in.Mounts[0].Name = "mutated input" // shares the caller's array: must not reach the store
	got, err := s.GetSession(ctx, "s")
	wantNoErr(t, "GetSession", err)
	got.Mounts[0].Target = "/mutated/get"
	got.Mounts = append(got.Mounts[:1], Mount(folderN(3), "c"))
	list, err := s.ListSessions(ctx)
	wantNoErr(t, "ListSessions", err)
	list[0].Mounts[1].Mode = meta.PermWD
	again, err := s.GetSession(ctx, "s")
	wantNoErr(t, "GetSession", err)
	want := []meta.SessionMount{Mount(folderN(1), "a"), Mount(folderN(2), "b")}
	if !reflect.DeepEqual(again.Mounts, want) {
		t.Errorf("mutating inputs or results changed the store: %+v", again.Mounts)
	}
	usingFolder(t, ctx, s, folderN(3))
	ids, err := s.SessionsUsingFolder(ctx, folderN(1))
	wantNoErr(t, "SessionsUsingFolder", err)
	ids[0] = "mutated"
	usingFolder(t, ctx, s, folderN(1), "s")
}

// testRaceSessions replaces, deletes and reads sessions concurrently and
// then checks that the folder index matches the records exactly.
func testRaceSessions(t *testing.T, ctx context.Context, s meta.Store) {
	const nSessions, nFolders = 4, 6
	errs := race(Races, func(i int) error {
		for j := range 15 {
			id := fmt.Sprint("s", (i+j)%nSessions)
			if (i*j)%5 == 4 {
				if err := s.DeleteSession(ctx, id); err != nil && !errors.Is(err, meta.ErrNotFound) {
					return fmt.Errorf("delete: %w", err)
				}
				continue
			}
			var ms []meta.SessionMount
			for k := range nFolders {
				if (i+j+k)%3 == 0 {
					ms = append(ms, Mount(folderN(k), fmt.Sprint("m", k)))
				}
			}
			if err := s.PutSession(ctx, NewSession(id, User(i%3), ms...)); err != nil {
				return fmt.Errorf("put: %w", err)
			}
			if _, err := s.GetSession(ctx, id); err != nil && !errors.Is(err, meta.ErrNotFound) {
				return fmt.Errorf("get: %w", err)
			}
			if _, err := s.SessionsUsingFolder(ctx, folderN(j%nFolders)); err != nil {
				return fmt.Errorf("index: %w", err)
			}
		}
		return nil
	})
	tally(t, errs, nil)
	sessions, err := s.ListSessions(ctx)
	wantNoErr(t, "ListSessions", err)
	want := map[string][]string{}
	for _, x := range sessions {
		for _, m := range x.Mounts {
			if !slices.Contains(want[m.FolderID], x.ID) {
				want[m.FolderID] = append(want[m.FolderID], x.ID)
			}
		}
	}
	for k := range nFolders {
		f := folderN(k)
		slices.Sort(want[f])
		usingFolder(t, ctx, s, f, want[f]...)
	}

	// Concurrent puts of distinct sessions on one folder all land in the
	// index.
	errs = race(Races, func(i int) error {
		return s.PutSession(ctx, NewSession(fmt.Sprintf("many%02d", i), User(1), Mount(folderN(99), "m")))
	})
	tally(t, errs, nil)
	var all []string
	for i := range Races {
		all = append(all, fmt.Sprintf("many%02d", i))
	}
	usingFolder(t, ctx, s, folderN(99), all...)

	// Exactly one of many concurrent deletes of one session succeeds.
	errs = race(Races, func(int) error { return s.DeleteSession(ctx, "many00") })
	if ok, missing := tally(t, errs, meta.ErrNotFound); ok != 1 || missing != Races-1 {
		t.Errorf("%d concurrent deletes of one session succeeded and %d got ErrNotFound; want 1 and %d", ok, missing, Races-1)
	}
	usingFolder(t, ctx, s, folderN(99), all[1:]...)
}
