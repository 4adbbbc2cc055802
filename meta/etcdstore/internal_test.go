package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/vfolder/vfolder/internal/testutil/etcdtest"
	"github.com/vfolder/vfolder/meta"
	"github.com/vfolder/vfolder/meta/metatest"
)

func openInternal(t *testing.T, srv *etcdtest.Server, o Options) *Store {
	t.Helper()
	o.Endpoints = srv.Endpoints()
	if o.Prefix == "" {
		o.Prefix = "/" + strings.ReplaceAll(t.Name(), "/", "-") + "/"
	}
	o.Log = zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	s, err := Open(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestReadsAtOneRevision: getKeys with a revision reads the values of that
// revision inside its read-only Txn (what FolderByName and ListFolders
// rely on), and scan pages stay on the revision of the first page.
func TestReadsAtOneRevision(t *testing.T) {
	srv := etcdtest.Start(t)
	s := openInternal(t, srv, Options{page: 2})
	ctx := t.Context()
	for i := range 5 {
		if _, err := s.cli.Put(ctx, s.pfx+fmt.Sprintf("x/%d", i), "old"); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := s.cli.Get(ctx, s.pfx+"x/0")
	if err != nil {
		t.Fatal(err)
	}
	rev := resp.Header.Revision
	for i := range 5 {
		if _, err := s.cli.Put(ctx, s.pfx+fmt.Sprintf("x/%d", i), "new"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.cli.Put(ctx, s.pfx+"x/5", "new"); err != nil {
		t.Fatal(err)
	}
	got, at, err := s.getKeys(ctx, []string{s.pfx + "x/1", s.pfx + "x/5"}, rev)
	if err != nil {
		t.Fatal(err)
	}
	if at != rev || got[s.pfx+"x/1"] == nil || string(got[s.pfx+"x/1"].Value) != "old" || got[s.pfx+"x/5"] != nil {
		t.Errorf("getKeys at revision %d read %v at %d; want x/1 old and no x/5", rev, got, at)
	}
	kvs, at, err := s.scan(ctx, s.pfx+"x/", rev, false)
	if err != nil {
		t.Fatal(err)
	}
	if at != rev || len(kvs) != 5 {
		t.Fatalf("scan at revision %d read %d keys at %d; want 5", rev, len(kvs), at)
	}
	for _, kv := range kvs {
		if string(kv.Value) != "old" {
			t.Errorf("scan at revision %d read %s=%s", rev, kv.Key, kv.Value)
		}
	}
	kvs, _, err = s.scan(ctx, s.pfx+"x/", 0, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(kvs) != 6 || len(kvs[0].Value) != 0 {
		t.Errorf("current keys-only scan read %d keys (first value %q); want 6 without values", len(kvs), kvs[0].Value)
	}
}

// TestPagedListsAndIndexes runs the conformance suite with two keys per
// range page, so that every list and Verify cross page boundaries.
func TestPagedListsAndIndexes(t *testing.T) {
	srv := etcdtest.Start(t)
	n := 0
	metatest.RunStoreSuite(t, func(t *testing.T) meta.Store {
		n++
		return openInternal(t, srv, Options{page: 2, Prefix: fmt.Sprintf("/paged-%d/", n), RequestTimeout: time.Minute})
	})
}

// TestSchemaVersion: a prefix written by a newer layout is refused, a
// record of a newer version too, and an unversioned one is corrupt.
func TestSchemaVersion(t *testing.T) {
	srv := etcdtest.Start(t)
	s := openInternal(t, srv, Options{Prefix: "/schema/"})
	ctx := t.Context()
	f := metatest.NewFolder(metatest.User(1), "v", "x")
	if err := s.CreateFolder(ctx, f, 0); err != nil {
		t.Fatal(err)
	}
	raw, err := s.cli.Get(ctx, s.folderKey(f.ID))
	if err != nil {
		t.Fatal(err)
	}
	if v := string(raw.Kvs[0].Value); !strings.HasPrefix(v, `{"v":1,"data":{"id":"`+f.ID) {
		t.Errorf("stored folder is %s; want the versioned envelope", v)
	}
	for val, want := range map[string]error{
		strings.Replace(string(raw.Kvs[0].Value), `"v":1`, `"v":2`, 1): meta.ErrSchemaTooNew,
		`{"id":"` + f.ID + `"}`: meta.ErrCorrupt,
		`not json`:              meta.ErrCorrupt,
	} {
		if _, err := s.cli.Put(ctx, s.folderKey(f.ID), val); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetFolder(ctx, f.ID); !errors.Is(err, want) {
			t.Errorf("GetFolder of %s: %v; want %v", val, err, want)
		}
	}

	if _, err := s.cli.Put(ctx, s.pfx+"schema", "2"); err != nil {
		t.Fatal(err)
	}
	_, err = Open(ctx, Options{Endpoints: srv.Endpoints(), Prefix: "/schema"})
	if !errors.Is(err, meta.ErrSchemaTooNew) {
		t.Errorf("Open of a prefix with layout 2: %v; want ErrSchemaTooNew", err)
	}
	if _, err := s.cli.Put(ctx, s.pfx+"schema", "x"); err != nil {
		t.Fatal(err)
	}
	_, err = Open(ctx, Options{Endpoints: srv.Endpoints(), Prefix: "/schema/"})
	if !errors.Is(err, meta.ErrCorrupt) {
		t.Errorf("Open of a prefix with layout x: %v; want ErrCorrupt", err)
	}
}

// TestVerifyDetects damages the keys of a consistent store one way at a
// time and makes sure Verify (which the conformance suite relies on)
// notices each.
func TestVerifyDetects(t *testing.T) {
	srv := etcdtest.Start(t)
	ctx := t.Context()
	n := 0
	fresh := func(t *testing.T) (*Store, meta.Folder) {
		n++
		s := openInternal(t, srv, Options{Prefix: fmt.Sprintf("/verify-%d/", n)})
		f := metatest.NewFolder(metatest.User(1), "v", "x")
		if err := s.CreateFolder(ctx, f, 0); err != nil {
			t.Fatal(err)
		}
		if err := s.SetMembership(ctx, meta.Membership{Project: metatest.Project(1).UUID, User: metatest.User(1).UUID}); err != nil {
			t.Fatal(err)
		}
		small := metatest.NewSession("small", metatest.User(1), metatest.Mount(f.ID, "x"))
		big := metatest.NewSession("big", metatest.User(1))
		for i := range maxIndexedFolders + 1 {
			big.Mounts = append(big.Mounts, metatest.Mount(fmt.Sprintf("%032x", i), fmt.Sprint("m", i)))
		}
		for _, sess := range []meta.Session{small, big} {
			if err := s.PutSession(ctx, sess); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Verify(ctx); err != nil {
			t.Fatalf("Verify of an intact store: %v", err)
		}
		return s, f
	}
	user, project := metatest.User(1), metatest.Project(1).UUID
	damage := map[string]func(s *Store, f meta.Folder) (key, val string, del bool){
		"name key missing": func(s *Store, f meta.Folder) (string, string, bool) { return s.nameKey(user, "x"), "", true },
		"name key extra":   func(s *Store, f meta.Folder) (string, string, bool) { return s.nameKey(user, "y"), f.ID, false },
		"count wrong":      func(s *Store, f meta.Folder) (string, string, bool) { return s.countKey(user), "2", false },
		"count of nobody": func(s *Store, f meta.Folder) (string, string, bool) {
			return s.countKey(metatest.User(2)), "1", false
		},
		"member copy missing": func(s *Store, f meta.Folder) (string, string, bool) {
			return s.memberOfKey(user.UUID, project), "", true
		},
		"member copy different": func(s *Store, f meta.Folder) (string, string, bool) {
			v, _ := encode(meta.Membership{Project: project, User: user.UUID, Permission: meta.PermRO})
			return s.memberOfKey(user.UUID, project), v, false
		},
		"session entry missing": func(s *Store, f meta.Folder) (string, string, bool) {
			return s.sessFolderKey(f.ID, "small"), "", true
		},
		"session entry extra": func(s *Store, f meta.Folder) (string, string, bool) {
			return s.sessFolderKey(fmt.Sprintf("%032x", 1), "small"), "", false
		},
		"bulk key missing": func(s *Store, f meta.Folder) (string, string, bool) { return s.sessBulkKey("big"), "", true },
		"bulk key of a small session": func(s *Store, f meta.Folder) (string, string, bool) {
			v, _ := encode([]string{f.ID})
			return s.sessBulkKey("small"), v, false
		},
		"bulk key wrong": func(s *Store, f meta.Folder) (string, string, bool) {
			v, _ := encode([]string{f.ID})
			return s.sessBulkKey("big"), v, false
		},
		"folder under another id": func(s *Store, f meta.Folder) (string, string, bool) {
			g := f
			g.ID = meta.NewFolderID()
			v, _ := encode(g)
			return s.folderKey(f.ID), v, false
		},
		"folder invalid": func(s *Store, f meta.Folder) (string, string, bool) {
			g := f
			g.Status = "gone"
			v, _ := encode(g)
			return s.folderKey(f.ID), v, false
		},
	}
	for what, fn := range damage {
		t.Run(strings.ReplaceAll(what, " ", "-"), func(t *testing.T) {
			s, f := fresh(t)
			key, val, del := fn(s, f)
			var err error
			if del {
				_, err = s.cli.Delete(ctx, key)
			} else {
				_, err = s.cli.Put(ctx, key, val)
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Verify(ctx); !errors.Is(err, meta.ErrCorrupt) {
				t.Errorf("Verify after %s: %v; want ErrCorrupt", what, err)
			}
		})
	}
}

// TestErrorMessages: the store's own answers read as the node-local
// stores' do (no wrapping of a sentinel-carrying error), and etcd's
// failures name the operation.
func TestErrorMessages(t *testing.T) {
	srv := etcdtest.Start(t)
	s := openInternal(t, srv, Options{})
	ctx := t.Context()
	id := meta.NewFolderID()
	_, err := s.GetFolder(ctx, id)
	if want := "not found: folder " + id; err == nil || err.Error() != want {
		t.Errorf("GetFolder(unknown) = %v; want %q", err, want)
	}
	f := metatest.NewFolder(metatest.User(1), "v", "x")
	if err := s.CreateFolder(ctx, f, 0); err != nil {
		t.Fatal(err)
	}
	err = s.CreateFolder(ctx, metatest.NewFolder(metatest.User(1), "v", "x"), 0)
	if want := fmt.Sprintf("already exists: %s already has a folder named %q (id %s)", f.Owner, "x", f.ID); err == nil || err.Error() != want {
		t.Errorf("CreateFolder(taken name) = %v; want %q", err, want)
	}
}
