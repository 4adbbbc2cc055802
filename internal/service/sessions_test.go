package service

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/vfolder/vfolder/api"
	vfs "github.com/vfolder/vfolder/fs"
	"github.com/vfolder/vfolder/meta"
	"github.com/vfolder/vfolder/mountd"
)

// fakeMounts is the host side in memory: per session and key a stack of
// what is mounted there (a placeholder, views, dead views).
type fakeMounts struct {
	root string

	mu      sync.Mutex
	stacks  map[string]map[string][]fakeMount
	attach  []string // "pid hostPath target ro"
	ops     []string
	fail    map[string]error // Publish of this key fails
	unpub   error            // Unpublish returns this
	attErr  error
	closed  bool
	created int
}

type fakeMount struct {
	placeholder, dead, ro bool
	source                string
}

func newFakeMounts(root string) *fakeMounts {
	return &fakeMounts{root: root, stacks: map[string]map[string][]fakeMount{}, fail: map[string]error{}}
}

func (f *fakeMounts) key(sid, key string) []fakeMount {
	if f.stacks[sid] == nil {
		f.stacks[sid] = map[string][]fakeMount{}
	}
	return f.stacks[sid][key]
}

func (f *fakeMounts) Reserve(sid, key string) (string, error) {
	if err := mountd.ValidateKey(key); err != nil {
		return "", err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.key(sid, key)) == 0 {
		f.stacks[sid][key] = []fakeMount{{placeholder: true}}
		f.ops = append(f.ops, "reserve "+sid+"/"+key)
	}
	return f.HostPath(sid, key), nil
}

func (f *fakeMounts) Publish(sid, key, source string, ro bool) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail[key]; err != nil {
		return "", err
	}
	st := f.key(sid, key)
	if n := len(st); n > 0 && !st[n-1].placeholder && !st[n-1].dead {
		if st[n-1].source == source && st[n-1].ro == ro {
			return f.HostPath(sid, key), nil
		}
		return "", fmt.Errorf("%w: %s holds another view", mountd.ErrConflict, key)
	}
	f.stacks[sid][key] = append(st, fakeMount{source: source, ro: ro})
	f.ops = append(f.ops, fmt.Sprintf("publish %s/%s ro=%v", sid, key, ro))
	return f.HostPath(sid, key), nil
}

func (f *fakeMounts) Unpublish(sid string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.stacks, sid)
	f.ops = append(f.ops, "unpublish "+sid)
	return f.unpub
}

func (f *fakeMounts) Attach(pid int, hostPath, target string, ro bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.attErr != nil {
		return f.attErr
	}
	f.attach = append(f.attach, fmt.Sprintf("%d %s %s %v", pid, hostPath, target, ro))
	return nil
}

func (f *fakeMounts) HostPath(sid, key string) string { return filepath.Join(f.root, sid, key) }

func (f *fakeMounts) Sessions() ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for sid := range f.stacks {
		out = append(out, sid)
	}
	sort.Strings(out)
	return out, nil
}

func (f *fakeMounts) Placeholders(sid string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for k, st := range f.stacks[sid] {
		if len(st) > 0 && st[len(st)-1].placeholder {
			out = append(out, k)
		}
	}
	return out, nil
}

func (f *fakeMounts) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

// top is what is on top of a key ("" for nothing).
func (f *fakeMounts) top(sid, key string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.stacks[sid][key]
	if len(st) == 0 {
		return ""
	}
	t := st[len(st)-1]
	switch {
	case t.placeholder:
		return "placeholder"
	case t.dead:
		return "dead"
	case t.ro:
		return "ro " + t.source
	}
	return "rw " + t.source
}

func (f *fakeMounts) takeOps() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	o := f.ops
	f.ops = nil
	return o
}

// killAll marks every view dead (the FUSE connection of a daemon that
// stopped).
func (f *fakeMounts) killAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, keys := range f.stacks {
		for k, st := range keys {
			for i := range st {
				if !st[i].placeholder {
					st[i].dead = true
				}
			}
			keys[k] = st
		}
	}
}

const mnt = "/run/vfolder/mnt"

// newSessionEnv is a view env with sessions started on a fake host side.
func newSessionEnv(t *testing.T, mutate ...func(*Options)) (*env, *fakeViews, *fakeMounts) {
	t.Helper()
	e, fv := newViewEnv(t, mutate...)
	fm := newFakeMounts("/run/vfolder/sessions")
	if err := e.svc.StartSessions(context.Background(), func() (Mounts, error) { fm.created++; return fm, nil }, false); err != nil {
		t.Fatal(err)
	}
	return e, fv, fm
}

func u32(n uint32) *uint32 { return &n }

func (e *env) publish(t *testing.T, sid string, req api.PublishRequest) api.Session {
	t.Helper()
	s, err := e.svc.Publish(context.Background(), sid, req)
	if err != nil {
		t.Fatalf("publish %s: %v", sid, err)
	}
	return s
}

// mountsByTarget renders a session's mounts as "target name mode folder[/sub] oci-options".
func mountsByTarget(s api.Session) map[string]string {
	out := map[string]string{}
	for _, m := range s.Mounts {
		src := m.FolderID[:6]
		if m.Subpath != "" {
			src += "/" + m.Subpath
		}
		out[m.Target] = fmt.Sprintf("%s %s %s %s", m.Name, m.Mode, src, strings.Join(m.OCI.Options, ","))
	}
	return out
}

func TestPublish(t *testing.T) {
	e, fv, fm := newSessionEnv(t)
	ctx := context.Background()
	data := e.createAs(t, "data", alice, meta.PermRW)
	ref := e.createAs(t, "ref", alice, meta.PermRO)
	cache := e.createAs(t, ".cache", alice, meta.PermRW)
	shared := e.createAs(t, "shared", project, meta.PermWD)
	if err := os.MkdirAll(filepath.Join(data.Path, "sub", "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.SetMember(ctx, project.UUID, alice.UUID, ""); err != nil {
		t.Fatal(err)
	}
	if fm.created != 0 {
		t.Fatalf("the host side was made before any session existed")
	}
	req := api.PublishRequest{User: meta.DashedUUID(alice.UUID), UID: u32(2000), GID: u32(2001), Mounts: []api.MountRequest{
		{Folder: "data"},
		{Folder: "ref"},
		{Folder: shared.ID + "/", Target: "/workspace", Mode: meta.PermRW},
		{Folder: "data/sub/dir", Target: "deep"},
	}}
	// Overlapping sources (data and data/sub/dir) are refused first.
	if _, err := e.svc.Publish(ctx, "sess-1", req); Code(err) != api.CodeInvalid || !strings.Contains(err.Error(), "overlap") ||
		strings.Count(err.Error(), meta.ErrInvalid.Error()) != 1 {
		t.Fatalf("overlapping sources: %v; want one %q in it", err, meta.ErrInvalid)
	}
	req.Mounts = req.Mounts[:3]
	s := e.publish(t, "sess-1", req)
	if s.ID != "sess-1" || s.User != alice.UUID || s.UID != 2000 || s.GID != 2001 {
		t.Errorf("session = %+v", s)
	}
	want := map[string]string{
		"/home/work/data":   "data rw " + data.ID[:6] + " rbind,rslave",
		"/home/work/ref":    "ref ro " + ref.ID[:6] + " rbind,rslave,ro",
		"/workspace":        "shared rw " + shared.ID[:6] + " rbind,rslave",
		"/home/work/.cache": ".cache rw " + cache.ID[:6] + " rbind,rslave",
	}
	if got := mountsByTarget(s); !reflect.DeepEqual(got, want) {
		t.Errorf("mounts:\n%v\nwant\n%v", got, want)
	}
	for _, m := range s.Mounts {
		hp := filepath.Join("/run/vfolder/sessions/sess-1", m.Name)
		if m.HostPath != hp || m.OCI.Source != hp || m.OCI.Destination != m.Target || m.OCI.Type != "bind" {
			t.Errorf("mount %s: host path %q, oci %+v", m.Name, m.HostPath, m.OCI)
		}
		wantTop := "rw " + filepath.Join(mnt, "sessions", "sess-1", m.Name)
		if m.Mode == meta.PermRO {
			wantTop = "ro" + wantTop[2:]
		}
		if got := fm.top("sess-1", m.Name); got != wantTop {
			t.Errorf("host side of %s: %q; want %q", m.Name, got, wantTop)
		}
		sp := fv.views[viewPlace{vfs.NSSessions, "sess-1", m.Name}]
		if sp.UID != 2000 || sp.GID != 2001 || sp.Mode != m.Mode || sp.FolderID != m.FolderID {
			t.Errorf("view of %s: %+v", m.Name, sp)
		}
	}
	rec, err := e.store.GetSession(ctx, "sess-1")
	if err != nil || len(rec.Mounts) != 4 {
		t.Fatalf("record = %+v, %v", rec, err)
	}

	// The same request again: the same answer, nothing done.
	fm.takeOps()
	fv.takeOps()
	if again := e.publish(t, "sess-1", req); !reflect.DeepEqual(again, s) {
		t.Errorf("publishing again:\n%+v\nwant\n%+v", again, s)
	}
	if ops, vops := fm.takeOps(), fv.takeOps(); len(ops)+len(vops) != 0 {
		t.Errorf("publishing again changed things: %v %v", ops, vops)
	}
	// A second container of the session asks for a subset: it gets the
	// whole session.
	if sub := e.publish(t, "sess-1", api.PublishRequest{User: alice.UUID, UID: u32(2000), GID: u32(2001), Mounts: []api.MountRequest{{Folder: "data"}}}); !reflect.DeepEqual(mountsByTarget(sub), want) {
		t.Errorf("subset: %v", mountsByTarget(sub))
	}
	// An extra mount is added (a subpath of another folder, by id).
	more := e.createAs(t, "more", alice, meta.PermRW)
	if err := os.MkdirAll(filepath.Join(more.Path, "in"), 0o755); err != nil {
		t.Fatal(err)
	}
	s2 := e.publish(t, "sess-1", api.PublishRequest{User: alice.UUID, UID: u32(2000), GID: u32(2001),
		Mounts: []api.MountRequest{{Folder: meta.DashedUUID(more.ID) + "/in", Target: "/data/more", Mode: meta.PermRO}}})
	want["/data/more"] = "more ro " + more.ID[:6] + "/in rbind,rslave,ro"
	if got := mountsByTarget(s2); !reflect.DeepEqual(got, want) {
		t.Errorf("after adding:\n%v\nwant\n%v", got, want)
	}
	if ops := fm.takeOps(); strings.Join(ops, ",") != "reserve sess-1/more,publish sess-1/more ro=true" {
		t.Errorf("adding one mount did %v", ops)
	}

	// The folders are busy now.
	_, err = e.svc.Trash(ctx, data.ID, alice)
	if Code(err) != api.CodeConflict || !strings.Contains(err.Error(), "sess-1") {
		t.Errorf("trash of a published folder: %v", err)
	}
	if _, err := e.svc.RemoveSessionView(ctx, "sess-1", "data"); Code(err) != api.CodeConflict {
		t.Errorf("removing a published view through the views API: %v", err)
	}
	list, err := e.svc.Sessions(ctx)
	if err != nil || len(list) != 1 || list[0].ID != "sess-1" || len(list[0].Mounts) != 5 {
		t.Errorf("Sessions = %+v, %v", list, err)
	}
	if got, err := e.svc.Session(ctx, "sess-1"); err != nil || !reflect.DeepEqual(mountsByTarget(got), want) {
		t.Errorf("Session = %+v, %v", got, err)
	}
	if live, err := e.svc.LiveSessions(ctx); err != nil || strings.Join(live, ",") != "sess-1" {
		t.Errorf("LiveSessions = %v, %v", live, err)
	}
	if err := e.svc.CloseSessions(ctx); err != nil || fm.closed {
		t.Errorf("CloseSessions with a live session: %v, closed %v", err, fm.closed)
	}

	// Unpublish: everything goes, the folder can be trashed.
	res, err := e.svc.Unpublish(ctx, "sess-1")
	if err != nil || len(res.Removed) != 5 || len(res.Problems) != 0 {
		t.Fatalf("Unpublish = %+v, %v", res, err)
	}
	if _, err := e.store.GetSession(ctx, "sess-1"); !errors.Is(err, meta.ErrNotFound) {
		t.Errorf("record after unpublish: %v", err)
	}
	for _, v := range fv.Views() {
		if v.Namespace == vfs.NSSessions {
			t.Errorf("view left after unpublish: %+v", v)
		}
	}
	if _, err := e.svc.Trash(ctx, data.ID, alice); err != nil {
		t.Errorf("trash after unpublish: %v", err)
	}
	// Unknown sessions unpublish fine; the host side is released when no
	// session is left.
	if res, err := e.svc.Unpublish(ctx, "never"); err != nil || len(res.Removed) != 0 || len(res.Problems) != 0 {
		t.Errorf("unpublish of an unknown session: %+v, %v", res, err)
	}
	if err := e.svc.CloseSessions(ctx); err != nil || !fm.closed {
		t.Errorf("CloseSessions without sessions: %v, closed %v", err, fm.closed)
	}
}

func TestPublishRefusals(t *testing.T) {
	e, fv, fm := newSessionEnv(t)
	ctx := context.Background()
	e.createAs(t, "data", alice, meta.PermRW)
	ro := e.createAs(t, "ref", alice, meta.PermRO)
	bobs := e.createAs(t, "secret", bob, meta.PermRW)
	trashed := e.createAs(t, "old", alice, meta.PermRW)
	if _, err := e.svc.Trash(ctx, trashed.ID, alice); err != nil {
		t.Fatal(err)
	}
	e.createAs(t, "models", project, meta.PermRO)
	if _, err := e.svc.SetMember(ctx, project.UUID, alice.UUID, ""); err != nil {
		t.Fatal(err)
	}
	e.publish(t, "busy", api.PublishRequest{User: alice.UUID, Mounts: []api.MountRequest{{Folder: "data"}}})
	fm.takeOps()
	fv.takeOps()
	before, _ := e.store.GetSession(ctx, "busy")

	one := func(mr ...api.MountRequest) api.PublishRequest {
		return api.PublishRequest{User: alice.UUID, Mounts: mr}
	}
	for _, tc := range []struct {
		name, sid string
		req       api.PublishRequest
		code      string
		msg       string
	}{
		{"mode above permission", "s", one(api.MountRequest{Folder: "ref", Mode: meta.PermRW}), api.CodeForbidden, `folder "ref"`},
		{"member mode above permission", "s", one(api.MountRequest{Folder: "models", Mode: meta.PermWD}), api.CodeForbidden, `folder "models"`},
		{"another user's folder", "s", one(api.MountRequest{Folder: bobs.ID}), api.CodeForbidden, `folder "secret"`},
		{"another user's folder by name", "s", one(api.MountRequest{Folder: "secret"}), api.CodeNotFound, `"secret"`},
		{"trashed", "s", one(api.MountRequest{Folder: trashed.ID}), api.CodeConflict, "trash"},
		{"unknown id", "s", one(api.MountRequest{Folder: strings.Repeat("e", 32)}), api.CodeNotFound, "no folder"},
		{"empty folder", "s", one(api.MountRequest{}), api.CodeInvalid, "empty folder"},
		{"escaping subpath", "s", one(api.MountRequest{Folder: "data/../x"}), api.CodeInvalid, "subpath"},
		{"bad mode", "s", one(api.MountRequest{Folder: "data", Mode: "x"}), api.CodeInvalid, "mode"},
		{"system target", "s", one(api.MountRequest{Folder: "data", Target: "/etc/x"}), api.CodeInvalid, "system path"},
		{"escaping target", "s", one(api.MountRequest{Folder: "data", Target: "../x"}), api.CodeInvalid, "escapes"},
		{"same target twice", "s", one(api.MountRequest{Folder: "data", Target: "/w"}, api.MountRequest{Folder: "ref", Target: "/w"}), api.CodeInvalid, "/w"},
		{"nested targets", "s", one(api.MountRequest{Folder: "data", Target: "/w"}, api.MountRequest{Folder: "ref", Target: "/w/x"}), api.CodeInvalid, "overlap"},
		{"target taken in the session", "busy", one(api.MountRequest{Folder: "ref", Target: "/home/work/data"}), api.CodeConflict, "/home/work/data"},
		{"same target other mode", "busy", one(api.MountRequest{Folder: "data", Mode: meta.PermRO}), api.CodeConflict, "/home/work/data"},
		{"overlapping an existing mount", "busy", one(api.MountRequest{Folder: "ref", Target: "/home/work/data/ref"}), api.CodeInvalid, "overlap"},
		{"bad session id", "a/b", one(api.MountRequest{Folder: "data"}), api.CodeInvalid, "session id"},
		{"dot session id", ".hidden", one(api.MountRequest{Folder: "data"}), api.CodeInvalid, "session id"},
		{"bad user", "s", api.PublishRequest{User: "alice"}, api.CodeInvalid, "user"},
		{"uid -1", "s", api.PublishRequest{User: alice.UUID, UID: u32(^uint32(0))}, api.CodeInvalid, "uid"},
		{"other user on a session", "busy", api.PublishRequest{User: bob.UUID}, api.CodeConflict, "belongs to user"},
		{"other uid on a session", "busy", api.PublishRequest{User: alice.UUID, UID: u32(0)}, api.CodeConflict, "belongs to user"},
		{"system reservation", "s", api.PublishRequest{User: alice.UUID, Reserve: []string{"/usr/x"}}, api.CodeInvalid, "system path"},
		{"empty reservation", "s", api.PublishRequest{User: alice.UUID, Reserve: []string{""}}, api.CodeInvalid, "reserved target is empty"},
	} {
		_, err := e.svc.Publish(ctx, tc.sid, tc.req)
		if Code(err) != tc.code || !strings.Contains(fmt.Sprint(err), tc.msg) {
			t.Errorf("%s: %v (code %q); want %q mentioning %q", tc.name, err, Code(err), tc.code, tc.msg)
		}
	}
	if ops, vops := fm.takeOps(), fv.takeOps(); len(ops)+len(vops) != 0 {
		t.Errorf("refused publishes changed things: %v %v", ops, vops)
	}
	after, _ := e.store.GetSession(ctx, "busy")
	if !reflect.DeepEqual(before, after) {
		t.Errorf("refused publishes changed the record:\n%+v\n%+v", before, after)
	}
	if _, err := e.store.GetSession(ctx, "s"); !errors.Is(err, meta.ErrNotFound) {
		t.Errorf("a refused publish left a record: %v", err)
	}
	// A volume that does not allow mounts.
	if err := e.svc.AttachVolume(ctx, meta.Volume{Name: "local", Path: e.vol, RWCanDelete: true, MountAllowed: false}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Publish(ctx, "s", one(api.MountRequest{Folder: ro.ID})); Code(err) != api.CodeForbidden || !strings.Contains(err.Error(), "mount_allowed") {
		t.Errorf("volume without mounts: %v", err)
	}
}

// TestPublishProjectLocal: a project's .local is mounted as the user's
// subfolder, made when missing; a user's own .local wins.
func TestPublishProjectLocal(t *testing.T) {
	e, _, _ := newSessionEnv(t, func(o *Options) { o.StorageUID, o.StorageGID = os.Geteuid(), os.Getegid() })
	ctx := context.Background()
	local := e.createAs(t, ".local", project, meta.PermRW)
	e.createAs(t, ".local", project2, meta.PermRW)
	for _, p := range []meta.ScopeID{project2, project} {
		if _, err := e.svc.SetMember(ctx, p.UUID, alice.UUID, ""); err != nil {
			t.Fatal(err)
		}
	}
	s := e.publish(t, "s1", api.PublishRequest{User: alice.UUID})
	// The first project by id (project < project2) is chosen.
	if got := mountsByTarget(s); len(got) != 1 || got["/home/work/.local"] != ".local rw "+local.ID[:6]+"/"+alice.UUID+" rbind,rslave" {
		t.Errorf("mounts = %v", got)
	}
	st, err := os.Lstat(filepath.Join(local.Path, alice.UUID))
	if err != nil || !st.IsDir() || st.Mode().Perm() != 0o755 {
		t.Fatalf("per-user subfolder: %v, %v", st, err)
	}
	if sys := st.Sys().(*syscall.Stat_t); int(sys.Uid) != os.Geteuid() {
		t.Errorf("subfolder owned by %d", sys.Uid)
	}
	// Explicitly, by id, with a subpath below the user's subfolder.
	if err := os.Mkdir(filepath.Join(local.Path, alice.UUID, "share"), 0o755); err != nil {
		t.Fatal(err)
	}
	s = e.publish(t, "s2", api.PublishRequest{User: alice.UUID, Mounts: []api.MountRequest{{Folder: local.ID + "/share", Target: "/opt/share"}}})
	if got := mountsByTarget(s)["/opt/share"]; got != ".local rw "+local.ID[:6]+"/"+alice.UUID+"/share rbind,rslave" {
		t.Errorf("explicit project .local: %q (all %v)", got, mountsByTarget(s))
	}
	// A symlink in place of the subfolder is refused.
	if err := os.Symlink("/etc", filepath.Join(local.Path, bob.UUID)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.SetMember(ctx, project.UUID, bob.UUID, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Publish(ctx, "s3", api.PublishRequest{User: bob.UUID}); Code(err) != api.CodeInvalid {
		t.Errorf("publish over a symlinked subfolder: %v", err)
	}
	// Alice's own .local replaces the project's.
	own := e.createAs(t, ".local", alice, meta.PermRW)
	s = e.publish(t, "s4", api.PublishRequest{User: alice.UUID})
	if got := mountsByTarget(s); len(got) != 1 || got["/home/work/.local"] != ".local rw "+own.ID[:6]+" rbind,rslave" {
		t.Errorf("own .local: %v", got)
	}
	// Without automount nothing is added.
	if s := e.publish(t, "s5", api.PublishRequest{User: alice.UUID, Automount: new(bool)}); len(s.Mounts) != 0 {
		t.Errorf("automount off: %v", mountsByTarget(s))
	}
	// An automount that overlaps a requested target is left out.
	data := e.createAs(t, "data", alice, meta.PermRW)
	s = e.publish(t, "s6", api.PublishRequest{User: alice.UUID, Mounts: []api.MountRequest{{Folder: data.ID, Target: "/home/work/.local/x"}}})
	if got := mountsByTarget(s); len(got) != 1 {
		t.Errorf("overlapping automount: %v", got)
	}
}

func TestPublishReserve(t *testing.T) {
	e, _, fm := newSessionEnv(t)
	ctx := context.Background()
	e.createAs(t, "data", alice, meta.PermRW)
	late := e.createAs(t, "late", alice, meta.PermRO)
	s := e.publish(t, "s", api.PublishRequest{User: alice.UUID, Mounts: []api.MountRequest{{Folder: "data"}}, Reserve: []string{"late", "/scratch"}})
	if len(s.Reserved) != 2 {
		t.Fatalf("reserved = %+v", s.Reserved)
	}
	slots := map[string]api.ReservedTarget{}
	for _, r := range s.Reserved {
		slots[r.Target] = r
		if r.OCI == nil || r.OCI.Source != r.HostPath || r.OCI.Destination != r.Target || fm.top("s", r.Name) != "placeholder" {
			t.Errorf("reservation %+v (host side %q)", r, fm.top("s", r.Name))
		}
	}
	key := slots["/home/work/late"].Name
	if key != slotKey("/home/work/late") || !strings.HasPrefix(key, "late~") {
		t.Errorf("reservation key %q", key)
	}
	// A mount overlapping a reservation is refused.
	if _, err := e.svc.Publish(ctx, "s", api.PublishRequest{User: alice.UUID, Mounts: []api.MountRequest{{Folder: late.ID, Target: "/scratch/x"}}}); Code(err) != api.CodeInvalid {
		t.Errorf("mount into a reservation: %v", err)
	}
	// Publishing at the reserved target fills it.
	s = e.publish(t, "s", api.PublishRequest{User: alice.UUID, Mounts: []api.MountRequest{{Folder: "late"}}})
	if got := mountsByTarget(s)["/home/work/late"]; got != key+" ro "+late.ID[:6]+" rbind,rslave,ro" {
		t.Errorf("filled reservation: %q", got)
	}
	if len(s.Reserved) != 1 || s.Reserved[0].Target != "/scratch" {
		t.Errorf("reservations left: %+v", s.Reserved)
	}
	if got := fm.top("s", key); got != "ro "+filepath.Join(mnt, "sessions", "s", key) {
		t.Errorf("host side of the filled reservation: %q", got)
	}
	// A session of reservations only has a record (and can be found).
	e.publish(t, "only", api.PublishRequest{User: alice.UUID, Automount: new(bool), Reserve: []string{"/x"}})
	if got, err := e.svc.Session(ctx, "only"); err != nil || len(got.Mounts) != 0 || len(got.Reserved) != 1 {
		t.Errorf("reservation-only session: %+v, %v", got, err)
	}
}

func TestPublishRollback(t *testing.T) {
	e, fv, fm := newSessionEnv(t)
	ctx := context.Background()
	e.createAs(t, "a", alice, meta.PermRW)
	e.createAs(t, "b", alice, meta.PermRW)
	e.createAs(t, "c", alice, meta.PermRW)
	fm.fail["b"] = errors.New("kernel says no")
	req := api.PublishRequest{User: alice.UUID, Mounts: []api.MountRequest{{Folder: "a"}, {Folder: "b"}}}
	if _, err := e.svc.Publish(ctx, "new", req); err == nil || !strings.Contains(err.Error(), "kernel says no") {
		t.Fatalf("failing publish: %v", err)
	}
	if _, err := e.store.GetSession(ctx, "new"); !errors.Is(err, meta.ErrNotFound) {
		t.Errorf("a failed new session left its record: %v", err)
	}
	for _, v := range fv.Views() {
		if v.Namespace == vfs.NSSessions {
			t.Errorf("a failed new session left a view: %+v", v)
		}
	}
	if fm.top("new", "a") != "" {
		t.Errorf("a failed new session left host mounts")
	}
	// An existing session keeps what was published completely.
	e.publish(t, "old", api.PublishRequest{User: alice.UUID, Mounts: []api.MountRequest{{Folder: "a"}}})
	if _, err := e.svc.Publish(ctx, "old", api.PublishRequest{User: alice.UUID, Mounts: []api.MountRequest{{Folder: "c"}, {Folder: "b"}}}); err == nil {
		t.Fatal("failing extension succeeded")
	}
	rec, err := e.store.GetSession(ctx, "old")
	if err != nil || len(rec.Mounts) != 2 || rec.Mounts[0].Name != "a" || rec.Mounts[1].Name != "c" {
		t.Errorf("record after a failed extension: %+v, %v", rec, err)
	}
	if _, ok := fv.views[viewPlace{vfs.NSSessions, "old", "b"}]; ok {
		t.Errorf("view of the failed mount left")
	}
	delete(fm.fail, "b")
	if s := e.publish(t, "old", api.PublishRequest{User: alice.UUID, Mounts: []api.MountRequest{{Folder: "b"}}}); len(s.Mounts) != 3 {
		t.Errorf("retry: %v", mountsByTarget(s))
	}
}

// TestReconcile: a restarted service publishes every stored session again
// over the dead views, cleans sessions whose folders are gone and removes
// session directories without a record.
func TestReconcile(t *testing.T) {
	e, _, fm := newSessionEnv(t)
	ctx := context.Background()
	e.createAs(t, "data", alice, meta.PermRW)
	e.createAs(t, "ref", alice, meta.PermRO)
	gone := e.createAs(t, "gone", bob, meta.PermRW)
	e.publish(t, "keep", api.PublishRequest{User: alice.UUID, Mounts: []api.MountRequest{{Folder: "data"}, {Folder: "ref"}}, Reserve: []string{"/late"}})
	e.publish(t, "lost", api.PublishRequest{User: bob.UUID, Mounts: []api.MountRequest{{Folder: "gone"}}})
	if _, err := fm.Reserve("orphan", "x"); err != nil {
		t.Fatal(err)
	}
	// The folder vanishes behind the daemon's back (not through trash,
	// which refuses it).
	if err := e.store.DeleteFolder(ctx, gone.ID); err != nil {
		t.Fatal(err)
	}
	fm.killAll()
	fm.takeOps()

	// A new service on the same store: a restarted daemon.
	svc := New(e.store, e.opts)
	t.Cleanup(svc.Close)
	if err := svc.AttachVolume(ctx, meta.Volume{Name: "local", Path: e.vol, RWCanDelete: true, MountAllowed: true}); err != nil {
		t.Fatal(err)
	}
	fv := newFakeViews()
	if err := svc.StartViews(ctx, fv); err != nil {
		t.Fatal(err)
	}
	if err := svc.StartSessions(ctx, func() (Mounts, error) { return fm, nil }, false); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"data", "ref"} {
		if got := fm.top("keep", k); !strings.HasSuffix(got, filepath.Join(mnt, "sessions", "keep", k)) {
			t.Errorf("%s after reconcile: %q", k, got)
		}
		if _, ok := fv.views[viewPlace{vfs.NSSessions, "keep", k}]; !ok {
			t.Errorf("view %s not made again", k)
		}
	}
	if fm.top("keep", "ref")[:2] != "ro" {
		t.Errorf("ro mount published rw again")
	}
	if _, err := e.store.GetSession(ctx, "lost"); !errors.Is(err, meta.ErrNotFound) {
		t.Errorf("session with a gone folder kept: %v", err)
	}
	ops := strings.Join(fm.takeOps(), ",")
	for _, want := range []string{"unpublish lost", "unpublish orphan"} {
		if !strings.Contains(ops, want) {
			t.Errorf("reconcile did %s; want %q", ops, want)
		}
	}
	if strings.Contains(ops, "unpublish keep") {
		t.Errorf("reconcile unpublished a good session: %s", ops)
	}
	s, err := svc.Session(ctx, "keep")
	if err != nil || len(s.Mounts) != 2 || len(s.Reserved) != 1 || s.Reserved[0].Name != slotKey("/late") || s.Reserved[0].Target != "" {
		t.Errorf("restored session = %+v, %v", s, err)
	}
	// The reservation can still be filled after the restart.
	s, err = svc.Publish(ctx, "keep", api.PublishRequest{User: alice.UUID, Automount: new(bool)})
	if err != nil {
		t.Fatal(err)
	}
	e.createAs(t, "late", alice, meta.PermRW)
	s, err = svc.Publish(ctx, "keep", api.PublishRequest{User: alice.UUID, Mounts: []api.MountRequest{{Folder: "late", Target: "/late"}}})
	if err != nil || mountsByTarget(s)["/late"] == "" || !strings.HasPrefix(mountsByTarget(s)["/late"], slotKey("/late")+" ") {
		t.Errorf("filling a reservation after a restart: %v, %v", mountsByTarget(s), err)
	}
}

func TestAttachAndUnpublishProblems(t *testing.T) {
	e, _, fm := newSessionEnv(t)
	ctx := context.Background()
	e.createAs(t, "data", alice, meta.PermRW)
	e.createAs(t, "ref", alice, meta.PermRO)
	e.publish(t, "s", api.PublishRequest{User: alice.UUID, Mounts: []api.MountRequest{{Folder: "data"}, {Folder: "ref", Target: "/srv/ref"}}})
	if _, err := e.svc.Attach(ctx, "s", 4242); err != nil {
		t.Fatal(err)
	}
	want := []string{"4242 /run/vfolder/sessions/s/data /home/work/data false", "4242 /run/vfolder/sessions/s/ref /srv/ref true"}
	if !reflect.DeepEqual(fm.attach, want) {
		t.Errorf("attach calls %v; want %v", fm.attach, want)
	}
	if _, err := e.svc.Attach(ctx, "s", 0); Code(err) != api.CodeInvalid {
		t.Errorf("pid 0: %v", err)
	}
	if _, err := e.svc.Attach(ctx, "nope", 1); Code(err) != api.CodeNotFound {
		t.Errorf("unknown session: %v", err)
	}
	fm.attErr = fmt.Errorf("mount namespace of pid 9: %w", os.ErrNotExist)
	if _, err := e.svc.Attach(ctx, "s", 9); Code(err) != api.CodeNotFound {
		t.Errorf("gone process: %v", err)
	}
	fm.attErr = fmt.Errorf("%w: target holds a mount", mountd.ErrConflict)
	if _, err := e.svc.Attach(ctx, "s", 9); Code(err) != api.CodeConflict {
		t.Errorf("busy target: %v", err)
	}

	fm.unpub = errors.Join(errors.New("still mounted: x"), errors.New("remove y: busy"))
	res, err := e.svc.Unpublish(ctx, "s")
	if err != nil || len(res.Removed) != 2 || strings.Join(res.Problems, "|") != "still mounted: x|remove y: busy" {
		t.Errorf("Unpublish with problems = %+v, %v", res, err)
	}
	if _, err := e.store.GetSession(ctx, "s"); !errors.Is(err, meta.ErrNotFound) {
		t.Errorf("record kept after an unpublish with problems: %v", err)
	}
	if _, err := e.svc.Unpublish(ctx, "../x"); Code(err) != api.CodeInvalid {
		t.Errorf("bad id: %v", err)
	}
}

func TestSessionsWithoutViews(t *testing.T) {
	e := newEnv(t, withViews)
	ctx := context.Background()
	if err := e.svc.StartSessions(ctx, func() (Mounts, error) { return nil, errors.New("unused") }, false); Code(err) != api.CodeUnavailable {
		t.Errorf("StartSessions without views: %v", err)
	}
	if _, err := e.svc.Publish(ctx, "s", api.PublishRequest{User: alice.UUID}); Code(err) != api.CodeUnavailable {
		t.Errorf("publish without views: %v", err)
	}
	if _, err := e.svc.Attach(ctx, "s", 1); Code(err) != api.CodeNotFound {
		t.Errorf("attach without sessions: %v", err)
	}
}

// TestPublishRacesTrash runs publish and trash of one folder at the same
// time: exactly one wins.
func TestPublishRacesTrash(t *testing.T) {
	e, _, _ := newSessionEnv(t)
	ctx := context.Background()
	for i := 0; i < 20; i++ {
		f := e.createAs(t, fmt.Sprintf("f%d", i), alice, meta.PermRW)
		raceTrash(t, e.svc, i, f, "publish", func() error {
			_, err := e.svc.Publish(ctx, fmt.Sprintf("s%d", i), api.PublishRequest{User: alice.UUID, Mounts: []api.MountRequest{{Folder: f.ID}}})
			return err
		})
	}
}

// FuzzSlotKey: every target publish accepts gets a valid, stable key.
func FuzzSlotKey(f *testing.F) {
	for _, s := range []string{"/home/work/late", "late", "/x", "/" + strings.Repeat("é", 127), "/a/b/c~deadbeef", "/a/\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, target string) {
		resolved, err := mountd.ResolveTarget("", target)
		if err != nil {
			return
		}
		k := slotKey(resolved)
		if k != slotKey(resolved) || !slotKeyRE.MatchString(k) {
			t.Fatalf("slotKey(%q) = %q", resolved, k)
		}
		if err := mountd.ValidateKey(k); err != nil {
			t.Fatalf("slotKey(%q) = %q: %v", resolved, k, err)
		}
		if err := vfs.ValidateEntryName(k); err != nil {
			t.Fatalf("slotKey(%q) = %q: %v", resolved, k, err)
		}
	})
}
