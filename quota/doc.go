// Package quota keeps the usage of every quota scope (one owner on one
// volume) and enforces its limits in the I/O path: a write that would
// cross the byte limit is cut short, the next one fails with ErrExceeded
// (EDQUOT). It knows nothing of FUSE; package fs calls it around each
// backing operation.
//
// # What is counted
//
// Every byte a view user can make the volume hold is charged. The usage
// of a scope is the sum, over the objects of its folders (each inode once
// however many hard links it has), of:
//
//   - regular files: their logical size (st_size);
//   - symlinks: the length of their target;
//   - directories, the folder root included: their st_size, which is what
//     the directory itself holds on the volume (ext4: whole 4 KiB blocks,
//     never shrinking until the directory is removed; xfs: its data
//     blocks, or the bytes inside the inode while small; tmpfs: 20 bytes
//     per entry; btrfs: the lengths of its names). On CephFS a
//     directory's st_size is by default its recursive byte count
//     (rbytes), which would charge every file twice and change with
//     every write below it: mount CephFS with norbytes (st_size is then
//     the number of entries);
//   - user.* extended attributes of files and directories:
//     sum(len(name)+len(value)), "user." included.
//
// Device nodes, fifos and sockets cost no bytes. Every object below a
// folder root (files, directories, symlinks, nodes; not the root itself,
// KindRoot) counts as one inode against the optional inode limit. Usage
// is also kept per folder. A limit of 0 means none. Lowering a limit
// below the usage blocks growth only: overwriting inside a file,
// shrinking and removing always work.
//
// A folder root is recorded at its first contact with the ledger: the
// first namespace or xattr change through a view, or the first Check
// (until then the folder holds nothing the daemon wrote). Likewise a
// directory made behind the daemon's back is recorded by the first
// operation that changes it, from its size then.
//
// Objects are identified by InodeKey, built with MakeKey from st_dev and
// st_ino relative to the folder root's device, so that keys survive a
// remount under another device number. An inode belongs to one folder:
// fs answers EXDEV to a rename or link across folders.
//
// # Calling it from a file system
//
// Every call takes the scope, the folder id and the inode key.
// ErrExceeded means EDQUOT; ErrStoreFull, the refusal of growth (or, when
// critical, of every ledger write) while the store's disk is short of
// space (SetStoreSpace), means ENOSPC. Other errors (ErrClosed, a failed
// ledger write) mean EIO.
//
//   - open for writing (also create, and before truncating by path):
//     OpenForWrite(ino, st_size, path-in-folder); CloseForWrite when the
//     handle is released. The hold keeps a durable dirty mark on the inode
//     (see Crash safety). Do not open with O_TRUNC: truncate as below.
//   - write, copy_file_range at [off, end): granted, r, err := Reserve(off,
//     end). On ErrExceeded answer EDQUOT. Else write only up to granted
//     (short write), fstat, r.Done(st_size) (or -1 when fstat failed).
//   - truncate/ftruncate to n, fallocate growing the file to n (mode 0 with
//     off+len > size): r, err := ReserveExact(n) (all or nothing; shrinking
//     always passes), do it, fstat, r.Done(st_size). fallocate with
//     KEEP_SIZE or PUNCH_HOLE changes no logical size: nothing to do.
//   - create, mkdir, symlink, mknod: c, err := ReserveCreate(kind,
//     len(target) for a symlink else 0, parent DirRef); do it; fstatat
//     the new object, fstat the parent; c.Commit(key, st_size,
//     parent st_size) when a new inode was made, c.Cancel(parent st_size)
//     when the call failed or opened an existing file. It reserves, all or
//     nothing, the inode, a symlink's target, a new directory's initial
//     size and the parent's growth (DirGrowth each).
//   - O_TMPFILE (an inode in no directory): ReserveInode(KindFile, 0, "")
//     and Commit/Cancel.
//   - link: r, err := ReserveDir(parent, true); do it; r.Done(parent
//     st_size). unlink, rmdir: ReserveDir(parent, false) (never refused
//     for room) around the PrepareRemove below.
//   - rename: ReserveRename(from, to, grow: !RENAME_EXCHANGE); do it;
//     r.Done(from st_size, to st_size).
//   - unlink, rmdir, rename over an existing target: rm, err :=
//     PrepareRemove(victim key, path); do it; rm.Done(lastLink) where
//     lastLink means the call succeeded and st_nlink was 1. A file still
//     held open for writing keeps its charge until its last CloseForWrite.
//   - setxattr of a user.* attribute: r, err := ReserveXattr(key, kind,
//     st_size, path, len(name)+len(value)); do it; r.Done(UserXattrBytes).
//     removexattr: the same with 0 growth.
//   - chmod, chown, reads: nothing.
//   - statfs: Usage(scope).Limit and Free().
//
// # Concurrency and the hot path
//
// Each scope has one mutex; every call takes it once or twice for a few
// map lookups and additions, and the scope table is read under an RWMutex.
// A write within the inode's charged size, on a held inode, takes no
// allocation and no system call (Reservation is a value; see
// BenchmarkReserveDone). Directory walks (Check, recovery) never run
// under a scope's lock.
//
// Check-and-reserve is one step under the scope's lock: the grant is added
// to the scope's usage before the lock is released, so any number of
// concurrent writers on one or many inodes never get more than the limit
// in total. Directory and xattr changes hold their inodes exclusively
// from the reservation to Done (charge.go), so each settles to the exact
// figure its operation reports; the kernel serialises such changes per
// directory and per inode anyway, so the hold waits only when two views
// change one backing directory at once.
//
// Why the limit holds for directories: a directory is charged at least
// its size plus DirGrowth from the reservation of an entry until Done
// reports its real size, and the reservation is refused (EDQUOT) unless
// the scope has DirGrowth left, under the same lock as every other grant.
// One entry grows a directory by at most DirGrowth on the file systems
// the daemon is meant for (see DirGrowth), so the sum of the real sizes
// never exceeds the sum of the charges, which never exceeds the limit
// through the daemon. Removing entries needs no room: it never grows a
// directory. Several reservations can be outstanding on one inode (two
// writers on one file). From the first to the last of them (an episode)
// the inode is charged max(size before, highest grant, highest size
// reported). When the last is done the charge settles to the reported
// size if the episode had one operation, else to the highest size
// reported: the operation that changed the size last reported after its
// change, so that is never below the truth; an episode mixing a shrink
// with other operations may stay a little high until the next operation
// settles it. The charge of an inode is never below its real size.
//
// # Memory
//
// In memory are: the limits and counters of every scope and folder, and
// the state of inodes that are held, have operations in flight, changed
// since the last commit, or are unverified after a crash. Other inodes
// live only in the store; a call on one loads its record (under a
// generation check, so an eviction racing with the load cannot resurrect
// stale state). Usage and FolderUsage read counters: O(1).
//
// # Persistence
//
// Records live in the badger database shared with package meta, under
// "q/" (see keys.go): limits per scope, a counter (bytes, inodes) per
// folder, a charge record per inode (kind, data bytes, xattr bytes),
// dirty marks, create intents, the shutdown marker and the ledger's
// format. A ledger written by an older format (which charged files and
// symlinks only) opens as after an unclean shutdown (WasUnclean), so the
// daemon checks and repairs every scope once. One commit loop goroutine writes all of
// them: every FlushInterval (2ms) it takes a snapshot of the queued
// changes under the scopes' locks and writes them, in transactions of at
// most MaxBatch records. Each transaction writes inode records together
// with the folder counters adjusted by exactly the difference those
// records make. So at every instant:
//
//	persisted folder counter == sum of the folder's persisted inode records
//
// and the in-memory counters are the persisted ones plus the changes not
// yet committed plus grants and creates in flight. The scope's usage is
// the sum of its folders'.
//
// The size of a regular file held for writing (OpenForWrite) is not
// committed while it grows, once the store holds the file's dirty mark:
// recovery sets the record of a marked inode to what is on storage
// whatever the record says, and the release of the last hold writes the
// final size in the transaction that removes the mark. So a stream of
// appends to an open file (a sequential write of a new file: one Reserve
// and one Done per request) makes the commit loop write nothing between
// the first growth and the close, where it would otherwise write the
// record and the folder counter every round. A Flush and Close write
// these sizes too (Flush: "every change so far"). Limits are checked
// against the in-memory counters, which follow every write exactly.
// Cluster scopes commit every change.
//
// # Crash safety
//
// A SIGKILL at any instant loses no byte and counts none twice:
//
//   - Dirty marks. While an inode is held (OpenForWrite, PrepareRemove),
//     has a size-changing reservation outstanding, or a directory or xattr
//     change in flight, it carries a dirty mark (with its path hint). An
//     operation that may change its charge (growing Reserve, ReserveExact,
//     PrepareRemove of an inode with bytes, every ReserveCreate, ReserveDir,
//     ReserveRename and ReserveXattr) first stores the mark in the mark
//     table (marks.go), once per hold: a slot
//     of a file mapped shared, which outlives the process the moment it is
//     stored, at the cost of a copy of a few hundred bytes and no system
//     call. The commit loop then writes the mark to the store and clears
//     the slot; the store's mark is removed in the same transaction as the
//     final record. (Without a table, as when it cannot grow, the
//     operation waits for the store's mark instead.) A slot is cleared
//     only once the whole commit round that settled its inode is written
//     and no operation used the inode since that round's snapshot,
//     because a directory's mark also stands for the entries made in it,
//     whose records may come in a later round.
//   - Intents. ReserveInode of a symlink with a path first makes a create
//     intent (path, length) durable; Commit deletes it in the transaction
//     that writes the symlink's record.
//   - Recovery, in Open: every inode with a mark (in the store or the
//     table) is looked up on storage,
//     through Options.OpenFolder, by its path hint (openat2 beneath the
//     folder root, fstatat without following) or, if the hint is stale, by
//     one walk of its folder; its record is set to what is there (size
//     and user.* xattrs, read through a descriptor of the object; or
//     removed when a complete walk did not find it), marks cleared, in
//     transactions that keep the invariant. The entries of a marked
//     directory that have no record are recorded: the objects its
//     creates in flight made. Intents (of ReserveInode) are settled the
//     same way. Inodes that cannot be looked at (volume not mounted, no
//     OpenFolder) keep their mark and are "unverified" until a Check.
//
// The crash this guards against is the death of the process. Neither the
// mark table nor the commit loop's transactions are flushed to disk one by
// one: both are in the kernel's page cache once written, which outlives
// the process, and a flush per commit would cost the I/O path a disk
// round trip every few milliseconds (see Manager.sync). After a power loss
// or a kernel crash the last moments of both may be missing; the open
// marker, flushed to disk at Open, makes that start unclean, and the Check
// with Repair the daemon runs after an unclean start settles it. Limits,
// the clean-shutdown marker and Flush are flushed to disk.
//
// After recovery every persisted counter equals the sum of its records and
// every record with bytes (file, directory, symlink, xattrs) equals what
// is on storage (TestCrashRecovery kills a child process doing writes,
// creates, links with long names, renames, mkdir, rmdir and xattr changes
// 20 times and checks both to the byte). What a crash can still leave
// behind is inode bookkeeping of objects without bytes whose removal was
// in flight: an empty file removed while its record was not yet deleted. Open writes an unclean
// marker that Close clears; WasUnclean tells the daemon to run Check with
// Repair on each scope it uses, which settles those.
//
// # Reconcile
//
// Check walks folders on storage through directory descriptors only
// (openat2 with RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS, getdents, fstatat
// with AT_SYMLINK_NOFOLLOW; symlinks are never followed, each (dev, ino)
// is counted once; user.* xattrs are read with llistxattr/lgetxattr on
// /proc/self/fd/<directory>/<name>, which do not follow the last
// component) and reports, per folder, the ledger's and the disk's bytes
// (with the parts held by directories and by xattrs) and inodes, and
// findings: objects unknown to the ledger, ledger entries whose object is
// gone, wrong sizes, xattr bytes or types, unverified inodes, and
// counters that differ from their records. With Repair it fixes them.
// It runs online: a difference seen by the walk is confirmed by pinning
// the inode, noting its operation counter, statting the object again and
// accepting the result only if no operation touched the inode meanwhile
// (and no create is in flight in the folder, for unknown objects); an
// entry is taken for gone only if two complete walks missed it and no
// operation touched it. Findings that could not be confirmed count as
// Busy and are left to the next Check.
//
// # Beyond one node
//
// Room is computed in one place, the scope's avail (none at all while the
// store's disk is short, in either mode). With Options.Grants
// set (package quota/grants: one quota per scope across the nodes of a
// cluster, on etcd) the ledger is in cluster mode, all of it in
// cluster.go behind hooks marked "cluster:":
//
//   - Room is the node's grant minus the growth it charged and has not
//     settled; an own shrink frees room only once settled. When an
//     operation needs more, the ledger asks Grants.Room with no lock held
//     (the inode pinned), then computes room again; a write inside the
//     grant makes no call and no allocation (TestClusterGrowthDoesNotAllocate).
//     A scope with a limit grows an inode only once the node's write hold
//     of it is registered in the cluster.
//   - First touch: OpenForWrite (and PrepareRemoveSize) take the size the
//     caller observed as the inode's size; what that changes is adopted,
//     not charged: it is another node's doing. Changes learned from
//     storage (recovery finding a file gone, a Check's repairs) are
//     adopted too. So a node's own figure, used - adopted, is the sum of
//     what its operations changed, and the cluster figure the sum of the
//     nodes' deltas. Adoption is committed with the records it explains
//     (q/ga/<scope><folder>), and before a dirty mark outlives it, so
//     recovery counts as own growth only what the node wrote.
//   - Settlement: Unsettled snapshots per folder, per registered hold and
//     per removal credit what the node has not settled; PrepareSettle
//     makes a batch durable before the client sends it, ApplySettle
//     records it (q/gs: the settled own figure per folder), ResolvePending
//     applies or drops a batch left by a crash by the sequence number the
//     cluster holds. Usage shows the cluster's settled figure plus the
//     node's unsettled growth.
//   - Faults: FreezeGrants (the client's lease is unconfirmed), RestoreHold
//     and Disown (a restarted node learns what it registered, and what a
//     survivor settled for it), Quiet and Idle (the client looks at
//     storage only when the node has nothing unsettled there), and a
//     journal for the cluster check (StartJournal).
//
// In cluster mode the limits that count are the cluster's (fed to the
// client); those SetLimit stores stay on the node and are not enforced.
// Without Grants none of this runs and nothing changes.
package quota
