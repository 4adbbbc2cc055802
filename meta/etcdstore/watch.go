package etcdstore

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/connectivity"

	"github.com/vfolder/vfolder/meta"
)

// family splits a key below the store's "m/" into its family ("folder",
// "member"...) and the rest. The session families of the store's own
// namespace are found below it; those of other namespaces have family
// "node" (no records of this store).
func (s *Store) family(key []byte) (fam, rest string) {
	k := string(key)
	own := s.spfx != s.pfx && strings.HasPrefix(k, s.spfx)
	if own {
		k = strings.TrimPrefix(k, s.spfx)
	} else {
		k = strings.TrimPrefix(k, s.pfx)
	}
	fam, rest, _ = strings.Cut(k, "/")
	if s.spfx != s.pfx && !own {
		switch fam {
		case "session", "sessfolder", "sessbulk": // a store without a namespace wrote them
			return "node", k
		}
	}
	return fam, rest
}

// recordEvent turns the key and value of a record into an Event of its
// kind. val nil means only the identity in the key is known. ok is false
// for keys that are not records (indexes, counts, the schema).
func recordEvent(fam, rest string, key, val []byte) (ev meta.Event, ok bool, err error) {
	switch fam {
	case "vol":
		v := meta.Volume{Name: rest}
		if val != nil {
			v, err = decode[meta.Volume](key, val)
		}
		return meta.Event{Kind: meta.EventVolume, Volume: &v}, true, err
	case "scope":
		volume, id, _ := strings.Cut(rest, "/")
		sid, perr := meta.ParseScopeID(id)
		if perr != nil {
			return meta.Event{}, false, fmt.Errorf("%w: etcdstore: key %q: %v", meta.ErrCorrupt, key, perr)
		}
		sc := meta.QuotaScope{Volume: volume, ID: sid}
		if val != nil {
			sc, err = decode[meta.QuotaScope](key, val)
		}
		return meta.Event{Kind: meta.EventScope, Scope: &sc}, true, err
	case "folder":
		f := meta.Folder{ID: rest}
		if val != nil {
			f, err = decode[meta.Folder](key, val)
		}
		return meta.Event{Kind: meta.EventFolder, Folder: &f}, true, err
	case "policy":
		owner, perr := meta.ParseScopeID(rest)
		if perr != nil {
			return meta.Event{}, false, fmt.Errorf("%w: etcdstore: key %q: %v", meta.ErrCorrupt, key, perr)
		}
		p := meta.OwnerPolicy{Owner: owner}
		if val != nil {
			p.Policy, err = decode[meta.Policy](key, val)
		}
		return meta.Event{Kind: meta.EventPolicy, Policy: &p}, true, err
	case "member":
		project, user, _ := strings.Cut(rest, "/")
		m := meta.Membership{Project: project, User: user}
		if val != nil {
			m, err = decode[meta.Membership](key, val)
		}
		return meta.Event{Kind: meta.EventMembership, Membership: &m}, true, err
	case "share":
		folder, user, _ := strings.Cut(rest, "/")
		sh := meta.Share{Folder: folder, User: user}
		if val != nil {
			sh, err = decode[meta.Share](key, val)
		}
		return meta.Event{Kind: meta.EventShare, Share: &sh}, true, err
	case "inv":
		inv := meta.Invitation{ID: rest}
		if val != nil {
			inv, err = decode[meta.Invitation](key, val)
		}
		return meta.Event{Kind: meta.EventInvitation, Invitation: &inv}, true, err
	case "session":
		sess := meta.Session{ID: rest, Mounts: []meta.SessionMount{}}
		if val != nil {
			sess, err = decodeSession(key, val)
		}
		return meta.Event{Kind: meta.EventSession, Session: &sess}, true, err
	}
	return meta.Event{}, false, nil
}

// recordFamilies are the key families that hold records (the others are
// indexes).
var recordFamilies = []string{"vol", "scope", "folder", "policy", "member", "session", "share", "inv"}

// Load reads every record at one revision: each record family page by
// page, all pinned to the revision of the first page. Watch(ctx,
// snapshot.Rev) continues from it.
func (s *Store) Load(ctx context.Context) (meta.Snapshot, error) {
	var snap meta.Snapshot
	err := s.read(ctx, "load everything", func(ctx context.Context) error {
		var kvs []*mvccpb.KeyValue
		var rev int64
		for _, fam := range recordFamilies {
			root := s.pfx
			if fam == "session" {
				root = s.spfx
			}
			got, at, err := s.scan(ctx, root+fam+"/", rev, false)
			if err != nil {
				return err
			}
			kvs, rev = append(kvs, got...), at
		}
		snap = meta.Snapshot{
			Rev: rev, Volumes: []meta.Volume{}, Scopes: []meta.QuotaScope{}, Folders: []meta.Folder{},
			Policies: []meta.OwnerPolicy{}, Memberships: []meta.Membership{}, Sessions: []meta.Session{},
			Shares: []meta.Share{}, Invitations: []meta.Invitation{},
		}
		for _, kv := range kvs {
			fam, rest := s.family(kv.Key)
			ev, ok, err := recordEvent(fam, rest, kv.Key, kv.Value)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			switch ev.Kind {
			case meta.EventVolume:
				snap.Volumes = append(snap.Volumes, *ev.Volume)
			case meta.EventScope:
				snap.Scopes = append(snap.Scopes, *ev.Scope)
			case meta.EventFolder:
				snap.Folders = append(snap.Folders, *ev.Folder)
			case meta.EventPolicy:
				snap.Policies = append(snap.Policies, *ev.Policy)
			case meta.EventMembership:
				snap.Memberships = append(snap.Memberships, *ev.Membership)
			case meta.EventSession:
				snap.Sessions = append(snap.Sessions, *ev.Session)
			case meta.EventShare:
				snap.Shares = append(snap.Shares, *ev.Share)
			case meta.EventInvitation:
				snap.Invitations = append(snap.Invitations, *ev.Invitation)
			}
		}
		return nil
	})
	if err != nil {
		return meta.Snapshot{}, err
	}
	meta.SortScopes(snap.Scopes)
	meta.SortFolders(snap.Folders)
	slices.SortFunc(snap.Policies, func(a, b meta.OwnerPolicy) int { return strings.Compare(a.Owner.String(), b.Owner.String()) })
	slices.SortFunc(snap.Memberships, func(a, b meta.Membership) int {
		return cmp.Or(strings.Compare(a.Project, b.Project), strings.Compare(a.User, b.User))
	})
	meta.SortShares(snap.Shares)
	meta.SortInvitations(snap.Invitations)
	return snap, nil
}

// Watch delivers the changes committed after revision after (see
// meta.Watcher and the package comment for when it ends with a resync).
func (s *Store) Watch(ctx context.Context, after int64) <-chan meta.Event {
	out := make(chan meta.Event, 64)
	s.mu.RLock()
	closed := s.closed
	s.mu.RUnlock()
	if closed {
		close(out)
		return out
	}
	go s.watch(ctx, after, out)
	return out
}

func (s *Store) watch(ctx context.Context, after int64, out chan<- meta.Event) {
	defer close(out)
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	stop := context.AfterFunc(s.bg, cancel) // the store closed
	defer stop()

	lost := s.connLost(wctx)
	opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithPrevKV()}
	if after > 0 {
		opts = append(opts, clientv3.WithRev(after+1))
	}
	wch := s.cli.Watch(wctx, s.pfx, opts...)

	send := func(ev meta.Event) bool {
		select {
		case out <- ev:
			return true
		case <-wctx.Done():
			return false
		}
	}
	resync := func(rev int64, err error) {
		s.log.Debug().Err(err).Msg("watch ends with a resync")
		send(meta.Event{Kind: meta.EventResync, Rev: rev, Err: err})
	}
	last := after
	for {
		select {
		case <-wctx.Done():
			return
		case <-lost:
			resync(last, fmt.Errorf("%w: the connection to etcd at %s was lost; changes may have been missed", meta.ErrUnavailable, s.endpoints))
			return
		case wr, ok := <-wch:
			if wctx.Err() != nil {
				return
			}
			if !ok {
				resync(last, fmt.Errorf("%w: etcd at %s ended the watch", meta.ErrUnavailable, s.endpoints))
				return
			}
			if wr.CompactRevision != 0 {
				resync(last, fmt.Errorf("etcdstore: the changes after revision %d were compacted away (etcd keeps revisions from %d)", last, wr.CompactRevision))
				return
			}
			if err := wr.Err(); err != nil {
				resync(last, s.fail(wctx, "watch", false, err))
				return
			}
			if wr.Canceled {
				resync(last, fmt.Errorf("%w: etcd at %s cancelled the watch", meta.ErrUnavailable, s.endpoints))
				return
			}
			for _, e := range wr.Events {
				ev, ok, err := s.event(e)
				if err != nil {
					resync(last, err)
					return
				}
				if ok && !send(ev) {
					return
				}
			}
			if n := len(wr.Events); n > 0 {
				last = wr.Events[n-1].Kv.ModRevision
			}
		}
	}
}

// event decodes one etcd watch event; ok is false for non-record keys.
func (s *Store) event(e *clientv3.Event) (meta.Event, bool, error) {
	fam, rest := s.family(e.Kv.Key)
	var val []byte
	deleted := e.Type == mvccpb.DELETE
	switch {
	case !deleted:
		val = e.Kv.Value
	case e.PrevKv != nil:
		val = e.PrevKv.Value
	}
	ev, ok, err := recordEvent(fam, rest, e.Kv.Key, val)
	if err != nil || !ok {
		return meta.Event{}, false, err
	}
	ev.Rev, ev.Deleted = e.Kv.ModRevision, deleted
	return ev, true, nil
}

// connLost returns a channel that is closed when the client's connection
// leaves the ready state after having been ready, or is not usable when
// the watch starts; it stops watching when ctx ends.
func (s *Store) connLost(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{})
	conn := s.cli.ActiveConnection()
	go func() {
		st := conn.GetState()
		ready := false
		for {
			switch st {
			case connectivity.Ready:
				ready = true
			case connectivity.TransientFailure, connectivity.Shutdown:
				close(ch)
				return
			case connectivity.Idle, connectivity.Connecting:
				if ready {
					close(ch)
					return
				}
				if st == connectivity.Idle {
					conn.Connect()
				}
			}
			if !conn.WaitForStateChange(ctx, st) {
				return
			}
			st = conn.GetState()
		}
	}()
	return ch
}
