// Package grants makes one exact quota per scope across the nodes of a
// cluster, on etcd. Each node keeps its own ledger (package quota, on a
// badger of its own) and its own write path; this package gives each
// node a slice of every scope's room (a grant, Lustre's qunit idea),
// settles what the node wrote into a cluster-wide figure within a
// second, and settles for nodes that die. A Client implements
// quota.Grants: the ledger consults it only when a node runs short of
// room, outside its locks; inside a grant a write makes no network call
// and no allocation.
//
// # Keys and the invariant
//
// Below Config.Prefix (see records.go): per scope a record s/<scope>/r
// (limits, settled bytes and inodes, and each node's share: grant,
// last settlement's sequence number, what it waits for), the settled
// figure of each folder s/<scope>/f/<folder>, and hold records
// s/<scope>/h/<folder>/<inode> of inodes held open for writing; per node
// its key n/<node> under its lease and its memberships m/<node>/<scope>.
// Every change of a scope's figures or shares is one transaction that
// compares the record's ModRevision (and the hold records it touches), so
// in every revision
//
//	settled + sum of grants <= limit
//
// except right after the limit was lowered below it: then no grant grows
// and nodes give back what they do not use until it holds again (as on
// one node, lowering a limit blocks growth only). A scope without a limit
// has no grants; nodes only settle.
//
// # Room, growth and settlement
//
// A node's room in a scope is its grant minus the growth it charged and
// has not settled. Its shrinks (truncates, removals) free room, and show
// in its figure, only once settled: the cluster may withhold them (see
// Two nodes, one file). Every SettleInterval (500ms), and whenever it asks
// for room, a node settles: one transaction per batch of at most 40
// folders, holds and removals adds its changes to the folder figures and
// the scope's settled figure and takes the growth it used off its grant
// (its room does not change), with the next sequence number of its share.
// What it freed goes back to the pool; the node keeps it as room only as
// far as the pool is not over the limit (after a limit was lowered).
// The ledger writes the batch as pending (with a flush) before it is
// sent; after a crash the sequence number in the store tells whether it
// was applied (quota.Manager.PrepareSettle, ResolvePending): each change
// is settled once.
//
// A node shows (quota.Manager.Usage, Client.Usage) the scope's settled
// figure plus its own unsettled growth: on any node, the cluster-wide
// figure; changes of other nodes show once they settle, within a second.
// When writers stop, every node shows the volume to the byte.
//
// # Grant sizing and recall
//
// A node asks in the background, before it runs out (when its room falls
// below a quarter of a unit), for a unit: what it writes in RefillPeriod
// (1s) at its current growth rate, within MinUnit..MaxUnit, and never more
// than half the pool's fair share among the nodes using the scope — so
// units are large far from the limit and shrink near it. Full-speed
// writing so costs a few transactions per second per node (see
// BenchmarkClusterWrite: about 4/s on one node, 18/s on three, at 4-5 GB/s).
// A node that does not grow for IdleReturn (10s) gives its grant back.
//
// An operation the node's room cannot cover waits (Config.Wait, 5s)
// while its node asks. When the pool cannot cover it, the node records
// what it wants in its share and bumps the record's recall counter; every
// other node then gives back the room it does not use (quota.Manager.
// Withhold takes only room not spent, and room just handed to a waiting
// write is kept for a moment). A write that may be cut short takes what
// its node holds once the pool cannot give the rest; it gets EDQUOT for
// good only when the pool is empty and no other node holds any room. An
// all-or-nothing operation (truncate, fallocate, create) takes room only
// when it can have all of it, and gets EDQUOT when even the pool and all
// other grants together are too small. So writers that keep writing fill
// a scope to exactly its limit before anyone gets EDQUOT for good.
//
// # Charging across nodes (the first-touch rule)
//
// Several nodes write one folder (cluster sessions do). A node charges
// growth against the size it observes when it takes a write hold
// (OpenForWrite passes the fstat size; what differs from its ledger is
// adopted: another node's doing, not charged), and removals against the
// size at removal (quota.Manager.PrepareRemoveSize, for the file system
// to call with the victim's fstat). So the cluster figure is the sum of
// the nodes' deltas. What a node learns from storage rather than does
// (recovery finding a file gone, a local Check's repairs) is adopted too.
//
// # Registered holds
//
// A node registers its write hold of an inode in the inode's hold record
// when it opens it for writing (batched, in the background), and grows an
// inode of a scope with a limit only once the registration is in the
// store: so every inode a node may have grown without settling is
// listed, for a survivor. The record keeps Base (the size the first
// registration saw) and per node: View (what the node last settled for
// the inode), C (what its settlements applied since), Held (credits
// withheld) and Open. A node's last close of the inode ends its entry in
// its next settlement. Cost: one transaction per batch of up to 40 files
// opened for writing, before the first growth of each (about one round
// trip), and their removal with the next settlement.
//
// # Two nodes, one file
//
// When a second node registers a hold of an inode another node holds,
// the record becomes contested. Rule: each node charges growth against
// its own view of the size (growth made by both is counted at least once,
// maybe twice: the figure is never below the truth); a shrink (truncate,
// removal) of a contested inode is not applied but withheld in the
// node's entry, since another node's view may still be the old size (its
// writes below it are not charged); a removal by a node without a hold of
// an inode that has a hold record is withheld likewise. When the last open
// entry closes, that node sets the inode's figure to what storage holds:
// correction = size - (Base + sum of C), applied with its settlement, and
// the record goes. Storage is looked at only when the node has not
// touched the inode since its snapshot (quota.Manager.Quiet); a file
// found gone leaves a tombstone (s/<scope>/z/...) so that a removal
// credit settled later is not applied again. A record left with no open
// entry (the look failed) is finished by any node that has nothing
// unsettled on the inode (sweep). When the writers stop, the figure is
// exact. The window this does not close: a node that truncates a file
// and settles between another node's open of it and that open's
// registration (one round trip) makes the figure low by the file's size
// until the other node lets go or a check.
//
// # Faults
//
// Lease: a node grows beyond what it settled only while its lease is
// surely alive: until the moment it sent its last successful keepalive
// plus the TTL less a margin (LeaseTTL/5 + 200ms). Past that it freezes
// its grants (quota.Manager.FreezeGrants): a survivor may take them once
// the store expires the lease. So an outage shorter than that does not
// stop writes inside grants; growth beyond them waits Wait, then fails
// with EDQUOT and a log line naming the outage; nothing overshoots, and
// the node catches up (settles, registers, asks) when the store answers.
// A node that finds its key or its share gone freezes at once, takes a
// new lease and reconciles before it grows again.
//
// Takeover: survivors watch node keys (and sweep memberships every two
// TTLs). One claims a dead node (c/<node>, under its own lease) and, for
// each scope the node used, looks at each inode of the node's hold
// records on storage and settles size - View for it, in transactions that
// also check the dead node's key is still absent; with the last one the
// node's share (its grant) goes back to the pool and a takeover record
// t/<node>/<scope>/ lists what was settled. A node that comes back (after
// SIGKILL or power loss: its ledger recovered exact per-inode state)
// applies its takeover records first (quota.Manager.Disown), then settles
// the rest. What a dead node changed outside registered holds and had not
// settled (removals of files it did not hold, directories, symlinks: at
// most SettleInterval of them) is not seen by a survivor: its next run
// settles it, or the cluster check corrects it. After an unclean start
// (quota.Manager.WasUnclean) the daemon runs the cluster check with
// repair, as on one node: a power loss can lose the ledger's last
// commits.
//
// # The cluster check
//
// Client.Check is the primitive of `quota-scope check --repair` in
// cluster mode: one walk of the folders corrects the cluster figure while
// writers on any node go on (see check.go for the protocol: every node
// settles and freezes its settlements of the scope for the walk, and
// journals the inodes it changes with their figure before the change).
//
// # Concurrency
//
// One goroutine per scope (worker) sends every transaction of the node on
// the scope's keys and gives the ledger its views, in one order; a watch
// on the scope's keys keeps its cache current (an entry is replaced only
// by a newer revision). The Client's mutex guards only its table of
// workers and is never held while calling the ledger; Notify is a
// non-blocking kick, callable with a ledger lock held; Room blocks its
// caller (a FUSE request) for at most Wait. Errors: ErrUnreachable (the
// store did not answer), ErrClosed, ErrBusy (a check), ErrInvalid; test
// them with errors.Is.
//
// # Wiring it into the daemon
//
//	cli, _ := clientv3.New(clientv3.Config{Endpoints: eps, Logger: zap.NewNop(), TLS: ...})
//	g, err := grants.New(grants.Config{Client: cli, Node: nodeID, Host: host,
//		OpenFolder: openFolder, Log: log})
//	ledger, err := quota.Open(db, log, quota.Options{Grants: g, OpenFolder: openFolder})
//	err = g.Start(ctx, ledger) // before serving FUSE: reconciles, leases
//
// Then: feed limits from the metadata store with g.SetLimit (on any node:
// it is idempotent); on a purge call g.DropFolder once and
// ledger.DropFolder on every node; `quota-scope get` reads g.Usage (or the
// ledger's Usage, the same figure); `quota-scope check --repair` calls
// g.Check; `vfolder node list` reads g.State and g.Stats; the file system
// calls ledger.PrepareRemoveSize for removals. At shutdown: stop FUSE,
// g.Close (settles, gives grants back, revokes the lease), ledger.Close.
// Without etcd (one node) none of this runs: quota.Options.Grants stays
// nil and the ledger works as before.
package grants
