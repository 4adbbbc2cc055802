// Package cluster is a vfolderd node's membership in a cluster of nodes
// that share one etcd (cluster mode): the node registry, the node's lease,
// the claims that keep folders mounted on any node out of the trash, and
// the shared volume records. The metadata itself is meta/etcdstore's; this
// package keeps its own keys next to it, under the store's prefix P, on
// the store's etcd client.
//
// # Keys
//
//	P n/node/<node>                        the node's record: hostname, version, start, stop (kept)
//	P n/alive/<node>                       the node is alive (under its lease)
//	P n/claim/<folder>/<node>/<session>    a session on the node mounts the folder (under the lease)
//	P n/fence/<folder>                     a node is taking the folder out of service (under the lease)
//	P n/lock/volumes                       etcd mutex (concurrency.Mutex) around volume record changes
//
// Values are JSON. Node ids, folder ids and session ids never contain
// '/', so every prefix above is unambiguous.
//
// # Lease
//
// Join grants a lease of Options.LeaseTTL and keeps it alive with etcd's
// own keepalive (clientv3's concurrency.Session, which also tells when the
// lease is lost). Everything that must vanish when the node dies is put
// under it: the alive key, the claims, the fences. A node killed with
// SIGKILL (or cut off from etcd) thus stops counting one TTL after its
// last keepalive. When the node learns that its lease is gone (the client
// heard nothing for the TTL) it registers again under a new lease, puts
// back every claim it holds, and only then ends the old lease (which etcd
// may have kept: a restarted etcd renews its leases); folders trashed
// while no lease of the node was alive were not protected, which the log
// says.
//
// A node id is used by one live daemon at a time. At Join an alive key of
// the same id left by an earlier process of the same instance (same
// machine-id, boot id and state directory: the state directory's lock
// proves that process is gone) is taken over at once: the new record
// replaces it, the earlier process's fences are removed (its operations
// died with it), and its lease, with the claims of its sessions, is kept
// alive until the restarted daemon has reconciled its sessions and
// claimed their folders again (ReleasePrevious). A daemon restarted before its
// lease ran out thus leaves no moment in which another node could trash
// a folder its sessions mount. An alive key of another instance is waited
// for (up to the TTL, in case it is a process that just died) and then
// refused with an error naming its host and state directory.
//
// # Claims and fences: trash never races a mount
//
// A folder must never be trashed or purged while a session on any live
// node mounts it. Two writes and two reads make that hold without a lock
// shared by the nodes:
//
//   - A node that takes a folder out of service (trash, purge; also create
//     and crash recovery, see below) first writes the fence P n/fence/<f>
//     (only if no fence is there), then reads the claims P n/claim/<f>/.
//     Any claim: it removes its fence and refuses, naming each session and
//     its node. None: it changes the folder's status, then checks that its
//     fence stood all along (the fence key still has the create revision
//     it wrote: keys under a lease cannot come back once the lease
//     expired), and only then removes it.
//   - A node that mounts a folder (publish, a session view, a restarted
//     node's reconcile) first writes its claim in one transaction that
//     requires the fence to be absent, then reads the folder record again
//     and backs out unless it is still live.
//
// etcd is linearizable, so the two are ordered. If the claim was written
// before the fence node read the claims, the fence node sees it and
// refuses. Otherwise the claim was written after that read, hence after the
// fence was written: either the fence was still there (the claim's
// transaction fails: "being trashed through node X") or it was removed,
// which happens only after the status change, so the claiming node's
// re-read of the folder sees it trashed and backs out. If the fence node
// lost its lease in the middle (its fence vanished before the status
// change), the check after the status change finds the fence gone and
// reads the claims again: any claim makes it undo the status change and
// refuse; none means any later claim's re-read sees the new status. Either
// way no session mounts a folder that is trashed.
//
// A fence also marks an operation in progress. Creating a folder holds
// one from before its record exists until it is ready, and a purge until
// its record is gone, so that crash recovery (which finishes folders left
// "performing" or "delete-ongoing", and which a node runs at start and
// when another node leaves the cluster: Departed) takes over only what a
// dead node left: it takes the fence itself first, and skips folders whose
// fence another live node holds.
//
// # Volumes
//
// Every node configures its volumes itself, with the same paths. Their
// records in etcd are shared: ShareVolume, under the etcd mutex, writes a
// node's volume when there is no record yet and accepts an equal one. A
// record that differs (another path, other switches) is replaced only
// when no other node is alive (an operator changed the configuration of a
// stopped cluster); otherwise the node's volume is refused with an error
// naming the differing settings and the live nodes, since nodes that
// enforce different rules on one volume are not one system.
//
// # Unavailability
//
// Every call is bounded by Options.RequestTimeout; when etcd does not
// answer it fails with an error wrapping meta.ErrUnavailable ("cluster
// store unreachable"), like the metadata store. Claims and fences are
// then refused: publishing and trashing fail rather than guess.
//
// All methods are safe for concurrent use.
package cluster
