package meta

import "context"

// Watcher is implemented by stores that several nodes share (see
// meta/etcdstore): through it a node learns of the changes made through
// the other nodes. The stores in this package do not implement it: a
// node-local store is changed only through its own daemon, which knows
// every change it makes.
//
// A consumer loads a snapshot and then follows the changes made after it:
//
//	for ctx.Err() == nil {
//		snap, err := w.Load(ctx)
//		if err != nil { // ErrUnavailable: wait a little and load again; ErrClosed: stop
//			...
//		}
//		replaceEverything(snap)
//		for ev := range w.Watch(ctx, snap.Rev) {
//			if ev.Kind == EventResync {
//				break // the channel closes after it; load again
//			}
//			apply(ev)
//		}
//	}
//
// Events are reliable: every change committed after the snapshot's
// revision is delivered, in revision order, or the stream ends with an
// EventResync (the revisions were compacted away, the connection to the
// servers was lost or the servers restarted, the servers lost their
// quorum...) after which the consumer must load everything again instead
// of trusting what it holds.
type Watcher interface {
	// Load reads every record at one revision of the store.
	Load(ctx context.Context) (Snapshot, error)
	// Watch delivers the changes committed after revision after (the Rev
	// of a Snapshot) until ctx ends, the store is closed, or an
	// EventResync, after which the channel is closed. With after <= 0 it
	// delivers the changes from now on. Watch itself never blocks; a
	// consumer that stops reading holds the stream back (nothing is lost
	// or dropped), and must keep reading until the channel is closed or
	// cancel ctx.
	Watch(ctx context.Context, after int64) <-chan Event
}

// Snapshot is everything a store holds, read at one revision.
type Snapshot struct {
	// Rev is the store revision the snapshot was read at: Watch(ctx, Rev)
	// delivers exactly the changes that are not in it.
	Rev         int64
	Volumes     []Volume      // ordered by name
	Scopes      []QuotaScope  // ordered by volume, then id
	Folders     []Folder      // every folder, trashed ones included; by owner, then name
	Policies    []OwnerPolicy // the owners with a policy set, ordered by owner
	Memberships []Membership  // ordered by project, then user
	Sessions    []Session     // ordered by id
	Shares      []Share       // ordered by folder, then user
	Invitations []Invitation  // ordered by creation time, then id
}

// OwnerPolicy is the resource policy of one owner.
type OwnerPolicy struct {
	Owner  ScopeID `json:"owner"`
	Policy Policy  `json:"policy"`
}

// EventKind says what an Event is about.
type EventKind string

const (
	// EventResync says that changes may have been missed: reload
	// everything (Load) and watch again from the new snapshot. It is the
	// last event of its channel; Err says why.
	EventResync     EventKind = "resync"
	EventVolume     EventKind = "volume"
	EventScope      EventKind = "scope"
	EventFolder     EventKind = "folder"
	EventPolicy     EventKind = "policy"
	EventMembership EventKind = "membership"
	EventSession    EventKind = "session"
	EventShare      EventKind = "share"
	EventInvitation EventKind = "invitation"
)

// Event is one change of one record. The field named after Kind is set
// (Policy for EventPolicy, and so on): the record as the change left it,
// or, when Deleted, the record as it was before (if the store still had
// it; else only its identity: the fields that name it, such as a folder's
// ID or a scope's Volume and ID). The index entries a store keeps (folder
// names, counts, the session folder index) cause no events of their own:
// they follow from the records.
type Event struct {
	Kind EventKind
	// Rev is the store revision of the change. Events arrive in revision
	// order; the changes of one store call share one revision (a rename
	// and its effects, a membership and its index). For EventResync it is
	// the revision of the last change delivered before it.
	Rev int64
	// Deleted says the record was removed (a purged folder, a membership
	// taken away, a policy reset to the zero Policy...).
	Deleted bool

	Volume     *Volume
	Scope      *QuotaScope
	Folder     *Folder
	Policy     *OwnerPolicy
	Membership *Membership
	Session    *Session
	Share      *Share
	Invitation *Invitation

	// Err is why an EventResync was sent (it wraps ErrUnavailable when the
	// servers could not be reached).
	Err error
}
