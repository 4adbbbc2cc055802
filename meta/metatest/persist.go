package metatest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/vfolder/vfolder/meta"
)

// RunPersistenceSuite checks that everything a store holds, indexes
// included, survives Close and a reopen of the same directory. open must
// open (creating if needed) the store kept in dir; the suite closes what it
// opens.
func RunPersistenceSuite(t *testing.T, open func(t *testing.T, dir string) meta.Store) {
	t.Run("Reopen", func(t *testing.T) { testReopen(t, open) })
	t.Run("ReopenEmpty", func(t *testing.T) {
		dir := t.TempDir()
		for range 3 {
			s := open(t, dir)
			sn := takeSnapshot(t, t.Context(), s)
			sameSnapshot(t, "reopening an empty store", snapshot{}, withoutPolicies(sn))
			wantNoErr(t, "Close", s.Close())
		}
	})
}

func withoutPolicies(sn snapshot) snapshot {
	for k, p := range sn.Policies {
		if p.IsZero() {
			delete(sn.Policies, k)
		}
	}
	if len(sn.Policies) == 0 {
		sn.Policies = nil
	}
	return sn
}

func verify(t *testing.T, s meta.Store) {
	t.Helper()
	if v, ok := s.(Verifier); ok {
		if err := v.Verify(context.Background()); err != nil {
			t.Errorf("Verify: %v", err)
		}
	}
}

func testReopen(t *testing.T, open func(t *testing.T, dir string) meta.Store) {
	ctx := t.Context()
	dir := t.TempDir()
	s := open(t, dir)
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = s.Close()
		}
	})
	reopen := func() {
		t.Helper()
		wantNoErr(t, "Close", s.Close())
		s = open(t, dir)
		verify(t, s)
	}

	wantNoErr(t, "PutVolume", s.PutVolume(ctx, meta.Volume{Name: "v1", Path: "/vfroot/v1", RWCanDelete: true}))
	wantNoErr(t, "PutVolume", s.PutVolume(ctx, meta.Volume{Name: "v2", Path: "/vfroot/v2", MountAllowed: true}))
	wantNoErr(t, "CreateScope", s.CreateScope(ctx, meta.QuotaScope{Volume: "v1", ID: User(1), LimitBytes: 1 << 20}))
	wantNoErr(t, "CreateScope", s.CreateScope(ctx, meta.QuotaScope{Volume: "v2", ID: Project(1), LimitInodes: 9}))
	_, err := s.UpdateScope(ctx, "v1", User(1), func(q *meta.QuotaScope) error { q.LimitBytes = 2 << 20; return nil })
	wantNoErr(t, "UpdateScope", err)
	wantNoErr(t, "SetPolicy", s.SetPolicy(ctx, User(1), meta.Policy{MaxFolderCount: 4, MaxQuotaScopeSize: 1 << 30,
		Volumes: map[string][]string{"v1": {"create-vfolder", "mount-in-session"}}}))
	wantNoErr(t, "SetPolicy", s.SetPolicy(ctx, Project(1), meta.Policy{MaxFolderCount: 1}))
	// Nothing allowed anywhere: an empty map must come back empty, not nil.
	wantNoErr(t, "SetPolicy", s.SetPolicy(ctx, Project(2), meta.Policy{Volumes: map[string][]string{}}))

	keep := mustCreate(t, ctx, s, NewFolder(User(1), "v1", "keep"), 4)
	renamed := mustCreate(t, ctx, s, NewFolder(User(1), "v2", "old-name"), 4)
	trashed := mustCreate(t, ctx, s, NewFolder(User(1), "v1", "trashed"), 4)
	gone := mustCreate(t, ctx, s, NewFolder(User(1), "v1", "gone"), 4)
	mustCreate(t, ctx, s, NewFolder(Project(1), "v2", "keep"), 1)
	_, err = s.UpdateFolder(ctx, renamed.ID, func(f *meta.Folder) error { f.Name = "new-name"; f.Cloneable = true; return nil })
	wantNoErr(t, "rename", err)
	_, err = s.UpdateFolder(ctx, trashed.ID, func(f *meta.Folder) error { f.Status = meta.StatusDeletePending; return nil })
	wantNoErr(t, "trash", err)
	wantNoErr(t, "DeleteFolder", s.DeleteFolder(ctx, gone.ID))

	p1, p2, u1, u2 := Project(1).UUID, Project(2).UUID, User(1).UUID, User(2).UUID
	for _, m := range []meta.Membership{
		{Project: p1, User: u1}, {Project: p1, User: u2, Permission: meta.PermRO},
		{Project: p2, User: u1, Permission: meta.PermWD}, {Project: p2, User: u2},
	} {
		wantNoErr(t, "SetMembership", s.SetMembership(ctx, m))
	}
	wantNoErr(t, "SetMembership replace", s.SetMembership(ctx, meta.Membership{Project: p1, User: u1, Permission: meta.PermRW}))
	wantNoErr(t, "RemoveMembership", s.RemoveMembership(ctx, p2, u2))

	sessCreated := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	s1 := NewSession("s1", User(1), Mount(keep.ID, "keep"), Mount(renamed.ID, "new-name"))
	s1.Mounts[1].Subpath, s1.Mounts[1].HostPath, s1.Mounts[1].Mode = "a/b", "/run/vf/s1/new-name", meta.PermRO
	s1.CreatedAt = sessCreated
	wantNoErr(t, "PutSession", s.PutSession(ctx, s1))
	wantNoErr(t, "PutSession", s.PutSession(ctx, NewSession("s2", User(2), Mount(keep.ID, "k"), Mount(trashed.ID, "t"))))
	wantNoErr(t, "PutSession", s.PutSession(ctx, NewSession("s3", User(2), Mount(keep.ID, "k"))))
	wantNoErr(t, "PutSession replace", s.PutSession(ctx, NewSession("s2", User(2), Mount(trashed.ID, "t"))))
	wantNoErr(t, "DeleteSession", s.DeleteSession(ctx, "s3"))

	before := takeSnapshot(t, ctx, s)
	reopen()
	sameSnapshot(t, "Close and reopen", before, takeSnapshot(t, ctx, s))

	// Membership and session indexes came back.
	ms, err := s.ProjectsOf(ctx, u1)
	wantNoErr(t, "ProjectsOf after reopen", err)
	memberships(t, "ProjectsOf(u1) after reopen", ms,
		meta.Membership{Project: p1, User: u1, Permission: meta.PermRW}, meta.Membership{Project: p2, User: u1, Permission: meta.PermWD})
	ms, err = s.ProjectsOf(ctx, u2)
	wantNoErr(t, "ProjectsOf after reopen", err)
	memberships(t, "ProjectsOf(u2) after reopen", ms, meta.Membership{Project: p1, User: u2, Permission: meta.PermRO})
	wantErr(t, "RemoveMembership of a removed pair after reopen", s.RemoveMembership(ctx, p2, u2), meta.ErrNotFound)
	usingFolder(t, ctx, s, keep.ID, "s1")
	usingFolder(t, ctx, s, renamed.ID, "s1")
	usingFolder(t, ctx, s, trashed.ID, "s2")
	got1, err := s.GetSession(ctx, "s1")
	wantNoErr(t, "GetSession after reopen", err)
	if !got1.CreatedAt.Equal(sessCreated) || got1.Mounts[1] != s1.Mounts[1] {
		t.Errorf("session s1 after reopen = %+v, want %+v", got1, s1)
	}
	// A replace after the reopen keeps CreatedAt and moves the index.
	wantNoErr(t, "PutSession replace after reopen", s.PutSession(ctx, NewSession("s1", User(1), Mount(trashed.ID, "t"))))
	usingFolder(t, ctx, s, keep.ID)
	usingFolder(t, ctx, s, trashed.ID, "s1", "s2")

	// The indexes came back too.
	got, err := s.FolderByName(ctx, User(1), "new-name")
	if err != nil || got.ID != renamed.ID {
		t.Errorf("FolderByName(new-name) after reopen = %s, %v; want %s", got.ID, err, renamed.ID)
	}
	_, err = s.FolderByName(ctx, User(1), "old-name")
	wantErr(t, "FolderByName(old-name) after reopen", err, meta.ErrNotFound)
	wantErr(t, "name of a kept folder after reopen", s.CreateFolder(ctx, NewFolder(User(1), "v2", "keep"), 0), meta.ErrExists)
	wantErr(t, "name of a trashed folder after reopen", s.CreateFolder(ctx, NewFolder(User(1), "v2", "trashed"), 0), meta.ErrExists)
	wantErr(t, "id of a kept folder after reopen", s.CreateFolder(ctx, func() meta.Folder {
		f := NewFolder(User(2), "v1", "x")
		f.ID = keep.ID
		return f
	}(), 0), meta.ErrExists)
	wantErr(t, "scope after reopen", s.CreateScope(ctx, meta.QuotaScope{Volume: "v1", ID: User(1)}), meta.ErrExists)
	// User 1 has 3 records left (keep, new-name, trashed): a limit of 3 is
	// reached, 4 is not. The deleted folder's name is free.
	wantErr(t, "limit after reopen", s.CreateFolder(ctx, NewFolder(User(1), "v1", "gone"), 3), meta.ErrLimitExceeded)
	wantErr(t, "project limit after reopen", s.CreateFolder(ctx, NewFolder(Project(1), "v1", "second"), 1), meta.ErrLimitExceeded)
	again := mustCreate(t, ctx, s, NewFolder(User(1), "v1", "gone"), 4)
	wantErr(t, "limit 4 reached after reopen", s.CreateFolder(ctx, NewFolder(User(1), "v1", "fifth"), 4), meta.ErrLimitExceeded)

	// Changes made after a reopen persist as well.
	wantNoErr(t, "DeleteFolder", s.DeleteFolder(ctx, trashed.ID))
	_, err = s.UpdateFolder(ctx, again.ID, func(f *meta.Folder) error { f.Name = "back"; return nil })
	wantNoErr(t, "rename", err)
	wantNoErr(t, "SetPolicy zero", s.SetPolicy(ctx, Project(1), meta.Policy{}))
	wantNoErr(t, "PutVolume replace", s.PutVolume(ctx, meta.Volume{Name: "v2", Path: "/elsewhere"}))
	wantNoErr(t, "DeleteSession", s.DeleteSession(ctx, "s2"))
	wantNoErr(t, "RemoveMembership", s.RemoveMembership(ctx, p1, u2))
	before = takeSnapshot(t, ctx, s)
	reopen()
	sameSnapshot(t, "second reopen", before, takeSnapshot(t, ctx, s))
	usingFolder(t, ctx, s, trashed.ID, "s1")
	got1, err = s.GetSession(ctx, "s1")
	wantNoErr(t, "GetSession after second reopen", err)
	if !got1.CreatedAt.Equal(sessCreated) {
		t.Errorf("CreatedAt of s1 after replace and reopen is %v, want %v", got1.CreatedAt, sessCreated)
	}
	ms, err = s.ListMembers(ctx, p1)
	wantNoErr(t, "ListMembers after second reopen", err)
	memberships(t, "ListMembers(p1) after second reopen", ms, meta.Membership{Project: p1, User: u1, Permission: meta.PermRW})
	for name, want := range map[string]error{"back": nil, "gone": meta.ErrNotFound, "trashed": meta.ErrNotFound, "keep": nil} {
		_, err := s.FolderByName(ctx, User(1), name)
		if !errors.Is(err, want) {
			t.Errorf("FolderByName(%s) after second reopen: %v, want %v", name, err, want)
		}
	}
	mustCreate(t, ctx, s, NewFolder(User(1), "v1", "trashed"), 4)
	wantErr(t, "limit after second reopen", s.CreateFolder(ctx, NewFolder(User(1), "v1", "x"), 4), meta.ErrLimitExceeded)

	closed = true
	wantNoErr(t, "Close", s.Close())
}
