// Package fs is vfolder's FUSE file system: the views of every vfolder
// used on a node, served by the node's daemon in several superblocks (one
// FUSE connection each): a node-wide one for the standing views, and one
// per session that holds that session's views and nothing else.
//
// # Namespace
//
//	<mnt>/sessions/<session-id>/<mount-name>   the session's own superblock
//	<mnt>/users/<user-uuid>/<folder-name>
//	<mnt>/projects/<project-uuid>/<folder-name>
//
// Mount mounts the node-wide FS at <mnt>. Its root, the three top
// directories and the key directories below them are synthetic (type
// dirNode): owned by root, mode 0700, refusing every change from the file
// system side (EPERM). Only AddView and RemoveView change them; both tell
// the kernel to drop its cached entries (NotifyEntry), so a view appears
// and disappears at once. A container sees only the view directories
// mountd bind-mounts into it, never these levels.
//
// # Session superblocks
//
// A bind mount of a subtree limits path lookups only: open_by_handle_at(2)
// (CAP_DAC_READ_SEARCH, no user namespace) decodes a handle to any inode
// of the superblock, and the kernel decodes a FUSE handle for every inode
// it has cached (go-fuse does not negotiate CAP_EXPORT_SUPPORT), node 1,
// the root, always included. Two layers keep a container inside what it
// was given:
//
//   - Every superblock negotiates FUSE_NO_EXPORT_SUPPORT (where the kernel
//     offers it, as Linux 6.6 and later do): the kernel then decodes no
//     handle of it at all (name_to_handle_at answers EOPNOTSUPP,
//     open_by_handle_at ESTALE). What was agreed is logged at mount.
//   - A session's views live in an FS of their own (FS.session set, see
//     session.go), whose root holds only them: a handle decoded through a
//     bound view names at most a node of that session, also on kernels
//     without the first layer. It is mounted on the session's key
//     directory of the node-wide FS with the session's first view, so the
//     paths <mnt>/sessions/<sid>/<name> keep their meaning, and retired
//     with its last view: detached, its key directory removed, left to end
//     once nothing refers to it (open files, copies of its views in
//     containers), which a goroutine waits for. Close of the node-wide FS
//     closes the live and the retired session superblocks first.
//
// The superblocks share what concerns backing files (Shared): the striped
// size locks with the state of files open for writing, the peer table of
// cross-view coherence and the view serial numbers; the quota ledger is
// the one Options.Quota. Inode slots are per superblock.
//
// # Views
//
// A view (type view) fixes at AddView: the folder directory (plus an
// optional subpath), the mode (ro, rw, wd), the uid/gid every entry shows,
// and whether rw may delete. Its root directory is opened once:
//
//	openat2(volumeRootFd, "<FolderRel>/<Subpath>", O_PATH|O_DIRECTORY,
//	        RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS)
//
// with one O_PATH descriptor kept per volume root. Each entry inside a view
// is a node (type node). A node knows its view and its backing identity
// (device, inode); its path below the view root is read from the go-fuse
// tree on every operation (node.relPath) and resolved again with openat2
// RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS below the view root, in chunks when
// longer than 4000 bytes (package internal/backing). The final name is then
// handled with *at calls that never follow symlinks. Symlinks are created
// and read back as they are; the daemon itself never follows one, so a
// symlink to /etc or to another folder leads nowhere when the daemon
// resolves a path: the kernel follows symlinks inside the mount on behalf of
// the caller, in the caller's mount namespace, and every component it
// resolves comes back to the daemon as a lookup below the view root.
//
// A removed view is gone from the tree at once. Nodes the kernel still holds
// (open files, a working directory) refuse new lookups (ENOENT) and new
// opens, creations and namespace changes (ESTALE); descriptors already open
// keep reading and writing until closed, like files on a lazily unmounted
// file system. The view's root descriptor is closed when go-fuse forgets the
// view's root node, or at Close.
//
// # Inode numbers
//
// Two views of one folder show different owners, so they must not share
// FUSE inodes; hard links inside one view must show one st_ino. Each view
// holds a slot s in 1..32767 (slot 0 numbers the synthetic directories):
//
//	ino = s<<47 | backing inode       if the backing inode is below 2^47 and
//	                                  on the device of the view root
//	ino = 1<<63 | n                   otherwise: n is handed out from a per-FS
//	                                  counter and remembered per view for as
//	                                  long as any node object of that backing
//	                                  inode exists (runtime.AddCleanup)
//
// The first form is stable for the life of the view and needs no memory;
// the second serves file systems with 64-bit inode numbers (Lustre, some NFS
// servers) and is stable while the kernel caches the inode. The go-fuse
// generation mixes a per-view serial number (unique across the superblocks
// of a node) with the backing birth time, so a node of an old view never
// matches a lookup in a new view that reuses the slot, a recycled backing
// inode gets a new generation, and no node of one superblock carries the
// nodeid and generation of a node of another. A removed
// view's slot is free again once go-fuse forgets its root node; slots are
// handed out round-robin, so a freed one is reused late. Directory
// entries (readdir d_ino) carry the same numbers, except for backing inodes
// of the second form that have no node yet: they carry 1<<63 plus the low
// bits of the backing inode.
//
// # Modes and ownership
//
// The daemon enforces the view mode itself, whatever the caller's
// credentials: ro answers EROFS to every mutation (create, mkdir, mknod,
// symlink, link, open for writing, truncate, chmod, chown, utimens,
// setxattr, removexattr, rename, unlink, rmdir, fallocate,
// copy_file_range); rw allows writes, and unlink, rmdir and rename over an
// existing entry only with RWCanDelete (else EPERM; RENAME_EXCHANGE loses
// nothing and is allowed); wd allows everything. Permission bits are
// checked against the owner every entry shows: the view's UID/GID, in
// every attribute reply (see Permissions).
// Everything created through any view, by any caller (root included), is
// chowned to StorageUID:StorageGID on storage before the reply, and mode
// bits are stored as the caller asked (the daemon's umask is undone), less
// the set-id bits no view stores (setid.go): S_ISUID on anything, S_ISGID
// on anything but a directory. A file on storage belongs to the owner of
// every folder, and a set-id executable there would run as that owner
// wherever the volume is mounted without nosuid. create, mknod, O_TMPFILE
// and chmod drop the bits silently, as a nosuid mount ignores them, so cp
// -p, tar and rsync (which chmod after copying) do not fail; getattr shows
// what is stored. S_ISGID on a directory is kept: it only hands the
// directory's group (the storage gid, which every entry gets anyway) and
// the bit to new entries, and the kernel drops it from files created there
// by processes outside the group; mkdir gives it only by inheritance, as
// mkdir(2) does.
//
// chown and chgrp succeed in rw and wd views whatever owner is asked for
// (unless ViewSpec.RefuseChown): ownership is unified, and archive
// extraction, cp -a, rsync -a and package managers run as root in a
// container would otherwise fail on every entry. The entry keeps (or
// gets) the storage owner and shows the view's; the daemon chowns it to
// StorageUID:StorageGID, which changes the ctime and clears set-id bits
// as a chown does. With RefuseChown a chown to an owner other than the
// view's own is EPERM. chown permission is checked first, by the
// kernel's rules (chown_ok, chgrp_ok): only a caller with CAP_CHOWN gets
// another owner as far as the chown itself. Device nodes cannot be created (EPERM): a device
// file on shared storage would be usable wherever the volume is mounted
// without nodev.
//
// # Permissions
//
// The daemon checks permission bits itself (perm.go lists the rules
// operation by operation); the mount has no default_permissions. With
// default_permissions the kernel checks them, but it also re-reads a
// directory's attributes (a GETATTR round trip) after every create,
// unlink, mkdir and rmdir in it, because the change invalidated them.
// Tuning.KernelPermissions (vfolderd's kernel_permissions) mounts that
// way instead; both answer alike (e2e/perm_matrix_test.go compares each
// with a native directory).
//
// Without default_permissions the kernel asks the daemon at access(2),
// faccessat(2) and chdir(2) (FUSE_ACCESS); it checks S_IXUGO for the exec
// of a regular file, the sticky rule of unlink and rename and the type
// rules of user.* attributes with the attributes it caches, and nothing
// else (setattr_prepare is passed ATTR_FORCE). So the daemon checks each
// request as generic_permission, may_create, may_delete, may_linkat
// (protected_hardlinks), vfs_rename, may_open, setattr_prepare,
// notify_change and xattr_permission would. The caller's fsuid and fsgid
// come with the request; supplementary groups are read from
// /proc/<tid>/status only when a decision depends on them (trusted only
// while that file still shows the request's ids), capabilities with
// capget(2) of the requesting thread only when one would grant what the
// bits refuse (the status file costs about as much as the GETATTR round
// trip saved), and they count only for a thread in the daemon's user
// namespace
// (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER, CAP_FSETID and
// CAP_CHOWN each as the kernel uses it: root in a container that dropped
// one does not have it here either). Where /proc cannot be read the
// caller has no supplementary group and no capability.
//
// On a ro view the answers come in the order of a read-only bind mount:
// EROFS before the permission bits, except for access(W_OK), open for
// writing without O_TRUNC and truncate(2), which check the bits first,
// as may_open and vfs_truncate do. The daemon must see O_TRUNC in the
// OPEN for this and for the write check (FUSE_ATOMIC_O_TRUNC is
// negotiated). Where mountd binds a ro view read-only, the kernel answers
// EROFS from the bind's flag before it asks the daemon, also where a
// native read-only bind says EACCES first (open for writing or
// truncate(2) without write permission; unlink, rmdir or rename in a
// directory the caller may not search): a refusal either way.
//
// Search permission is checked at LOOKUP, and a walk through entries the
// kernel caches never reaches the daemon. So an entry is cached (for the
// entry timeout) only below a directory that every class may search (x
// for owner, group and other); below any other directory its entry
// timeout is 0, and every walk revalidates it with a LOOKUP that the
// daemon checks. The synthetic directories (0700) give their entries
// timeout 0 and refuse LOOKUP, ACCESS and OPENDIR to callers other than
// root (or a holder of CAP_DAC_OVERRIDE or CAP_DAC_READ_SEARCH), so a user
// of the host cannot walk into the views once root has, except at two
// levels: the top directories and the session key directories. A
// superblock is mounted on each session key directory, and the kernel
// detaches what is mounted below an entry whose revalidation fails, so
// these LOOKUPs never refuse and their entries are kept: a user of the
// host can stat <mnt>/sessions/<sid> (learn that the session exists),
// and is refused by the session superblock's root below it. A chmod
// through the daemon that takes x from some class drops the kernel's
// entries below that directory in every view of the folder on the node
// (in its own view only once the SETATTR reply is out: the kernel holds
// the directory's lock until then).
//
// What stays inexact: a chmod made behind the daemon's back (on storage,
// by another node) leaves the entries the kernel cached below the
// directory until their timeout; a refused revalidation drops the
// kernel's entries below that name for every caller (a cache flush, not
// a grant); and FIFOs are opened by the kernel without asking the
// daemon, so their permission bits are not checked (the pipe lives in
// this node's kernel only).
//
// # Kernel caching and the data path
//
// ro views pass reads through: each handle of a ro view offers its backing
// descriptor to the kernel (file.PassthroughFd, CAP_PASSTHROUGH), which
// then reads the backing file itself, from the volume's own page cache
// and with its read-ahead, without a round trip. The choice is per view,
// never per open: one FUSE inode cannot mix passthrough and daemon opens,
// and a ro view's inodes (distinct from every other view's) are never
// opened for writing. rw and wd views never pass through: every read and
// write reaches the daemon, every write the quota hook. Where the kernel
// offers no passthrough (or refuses a backing descriptor), ro views are
// served by the daemon like the others. There is no writeback cache (it
// would disable passthrough and move EDQUOT from write(2) to close).
// Write-only opens of rw and wd views bypass the page cache
// (FOPEN_DIRECT_IO, view.directWrite): the data is copied once into the
// WRITE request instead of into 4 KiB page-cache pages first; readers of
// other handles see the new bytes (the kernel invalidates what they
// cached).
//
// Entries are cached for an hour (below directories that every class may
// search; see Permissions), attributes for a second, and negative
// entries (a name a view does not have) for a second too
// (Tuning.NegativeTimeout; none below a directory that not every class
// may search): a search path walked again and again (python imports,
// PATH, git, pip, conda) asks the daemon for each missing name once a
// second at most instead of on every stat or open. A name made through
// another view on this node appears at once (see below); one made behind
// the daemon's back (another node, the storage itself) appears within
// that second, the bound attributes already have there. Only names
// inside views are cached so: a missing name in the synthetic directories
// is asked for every time. go-fuse's own NegativeTimeout is not used (it
// covers every directory): node.Lookup sets the timeout in the entry
// reply and the raw file system answers such an ENOENT as a negative
// entry (negativeEntries). Opens keep the page cache (FOPEN_KEEP_CACHE)
// only when the
// backing file's size, mtime and ctime are what the daemon last reported
// for the node, which gives close-to-open consistency across views and
// with writers on other nodes; with auto_inval_data the kernel also drops
// the pages of an open file when a refreshed attribute shows another size
// or mtime. The mount's read-ahead window (its bdi's read_ahead_kb) is
// set to one maximal request (Options.ReadAheadKB).
//
// Requests reach the daemon through read(2) of /dev/fuse and replies go
// back through write(2), unless Tuning.IoUring asks for FUSE over
// io_uring (off by default; docs/io_uring.md): then every superblock
// registers ring entries on one queue per CPU (go-fuse's
// MountOptions.EnableIoUring, a patched go-fuse in third_party/go-fuse),
// a request is the completion of a pending ring command on the queue of
// the caller's CPU, served inline by a thread pinned to that CPU, and
// the reply is committed with the command that waits for the next
// request. INIT, FORGET, INTERRUPT and the notifications of coherence.go
// stay on /dev/fuse. The kernel offers it only when the fuse module
// parameter enable_uring is Y at INIT; otherwise the mount warns and
// uses /dev/fuse. A queue serves as many requests at once as it has
// entries (Tuning.IoUringQueueDepth), where /dev/fuse serves any number.
//
// The long entry timeout is kept correct by two rules (coherence.go).
// What the daemon changes through one view is notified to the kernel for
// the other views of the same folder on this node, in every superblock
// (the node-wide one and the sessions'): every created, removed or
// renamed name drops that entry there (a created name, by create, mkdir,
// mknod, symlink, link, a linked O_TMPFILE or the target of a rename,
// also the negative entry the kernel may hold for it in every view that
// knows the directory), and the flush of a handle that
// wrote (close(2) waits for it) or a setattr drops the file's attributes
// there. Changes behind the daemon's back (other nodes, the storage
// itself) are found by path resolution: every operation resolves the
// node's path again, and a path that now names another object or nothing
// answers ESTALE (node.openStat), on which the kernel looks the name up
// again; attributes expire after a second. A path through a symlink keeps
// its ELOOP/ENOTDIR (the daemon never follows one).
//
// FUSE_HANDLE_KILLPRIV_V2 is negotiated, so the kernel does not ask for
// security.capability before every write; the daemon clears set-user-ID
// and set-group-ID of a regular file itself (node.killPrivs) on every
// write, truncate, O_TRUNC, fallocate, copy_file_range into it and chown
// through a view, whoever the caller: root in a container is not
// privileged on the storage, and only files given the bits behind the
// daemon's back can have them. The write path checks the mode cached in
// openInode, so this costs nothing on files without the bits.
//
// # Memory
//
// The kernel may know millions of nodes of a view (a find over a large
// folder), and go-fuse keeps a node for each until the kernel forgets it
// (FORGET, under memory pressure or drop_caches), so a node is go-fuse's
// Inode plus 32 bytes: view, backing inode, page-cache stamp, and a
// pointer to the rarely needed part (a backing device other than the
// view's, open handles). Nothing else is kept per node; the inode numbers
// of the first form need no table. With go-fuse's bookkeeping (the entry
// in the parent's children, the parent link, the node ID table) a known
// inode costs about 0.4-0.5 KB of live heap: measured, 380-490 MB with
// 1M files known, and an RSS of about 660 MiB at GOGC 100 (the daemon's
// [daemon] gogc and memory_limit; docs/operations.md, "Tuning the
// daemon").
//
// Each session superblock is a go-fuse server of its own: its reader
// goroutines each hold a request buffer of one maximal WRITE (1 MiB), so a
// session costs a few MiB of Go heap, of which only the pages the kernel
// has written requests into are resident (measured: about 170 KiB RSS and
// 3.4 MiB of heap per idle session).
//
// # Extended attributes and locks
//
// Only the "user." namespace is served. Reading any other name answers
// ENODATA (there is no such attribute), setting or removing one answers
// EOPNOTSUPP (as on a file system without that namespace), and listing shows
// only user.* names. user.* attributes are charged to the quota scope
// (see Quota). Attributes are read and written through the
// /proc/self/fd path of an O_PATH descriptor of a node that was checked not
// to be a symlink. POSIX (fcntl) locks become open-file-description locks on
// the backing descriptor and flock locks flock(2) on it, so locks reach the
// storage and other nodes that use it.
//
// # Quota
//
// With Options.Quota set, every rw and wd view reports to the quota
// ledger (package quota) under its scope (volume, ViewSpec.Scope) and
// folder (ViewSpec.FolderID); such a view must name both. Every operation
// that can grow a scope's usage calls the ledger before it acts, at one
// place marked "quota:" in the code (the table is in accounting.go):
// a handle open for writing holds its inode in the ledger until Release;
// a write or copy_file_range past the end of the file reserves [off, end)
// and is cut short to what the scope has room for (the kernel returns the
// short count, the next call gets EDQUOT); on an O_DIRECT handle the cut
// is rounded down to the backing file's direct I/O alignment (statx
// STATX_DIOALIGN, else the page size), as a block file system's direct
// write ends on a block at its quota, so that the backing write stays
// valid and the writer's next offset aligned (room below one alignment
// unit is EDQUOT for direct writes, left to buffered ones); a write or
// copy that fails or comes back short reports the size fstat gives,
// never its offset; truncate, ftruncate, O_TRUNC and fallocate changing
// the size reserve the new size, all or nothing; fallocate with KEEP_SIZE
// reaching past the end is refused with EOPNOTSUPP (it would hold disk
// space no logical size counts; inside the file it passes, and
// posix_fallocate, which never asks for KEEP_SIZE, and callers that fall
// back to writing are charged);
// create, O_TMPFILE, mkdir, mknod and symlink reserve an inode (a symlink
// also its target length, a directory its initial size); every create,
// link and rename also reserves the growth of the directory it adds an
// entry to, settled to the directory's real size after; setxattr of a
// user.* attribute reserves what the attribute adds, settled to the
// object's real attribute bytes after; unlink, rmdir and rename over an
// entry release the object when its last link is gone (read from an
// O_PATH descriptor of the victim after the removal). Shrinking and
// removing always work, also over a lowered limit. Inode keys are relative to the device of the
// folder root (quota.MakeKey), so a view of a subpath charges the same
// inodes as a view of the whole folder. Rename and link across views get
// EXDEV, so nothing moves across folders or scopes.
//
// Size changes of one backing inode are serialised by a striped lock
// keyed by (device, inode), shared by all views. Each stripe also keeps,
// for the inodes open for writing, their size and mode (openInode), kept
// exact by every size change the daemon makes under the exclusive lock
// and refreshed from fstat at each open. So the write path needs no stat:
// a write that ends within the file takes the stripe shared, does one
// pwritev and tells the ledger nothing; a write past the end takes it
// exclusively around Reserve, pwritev and Done. Neither allocates. The
// ledger's work per append is in memory (a lock, the counters): the
// growing size of a file open for writing is written to the store at
// its release, not every commit round (package quota, "Persistence"),
// so a sequential write of a new file costs the store the same few
// commits (the hold's mark, the first rounds until it is stored, the
// final size) however long it is.
//
// statfs in a view whose scope has a byte limit reports the limit as the
// size and the limit minus the usage as free (available also capped by
// the volume's own free space), in f_frsize units; with an inode limit,
// f_files and f_ffree likewise. Without a limit it reports the volume.
// So df inside a container shows the quota.
//
// OpenFolder and QuotaFolderOpener open folder roots for the ledger's
// crash recovery (quota.Options.OpenFolder) and for Check.
//
// # Concurrency
//
// FS.mu guards the view table, the key directories and the volume table; it
// is never held while talking to the kernel (notifications are sent after
// it is released) and no FUSE request handler takes it. FS.sessMu (node-wide
// FS only) serialises mounting and retiring session superblocks and guards
// their table; it is taken before FS.mu and held across those mount system
// calls, which the node-wide FS answers (lookups of its synthetic
// directories) without taking either lock. The entry of a key directory
// that has a session superblock on it is never invalidated: the kernel
// would detach the mount. view.fdMu guards the
// view root descriptor against being closed while an operation resolves a
// path. A node's stamp is atomic and its open handles have their own mutex
// (nodeExt). The peer table (views per folder, coherence.go) has its own
// RWMutex, taken shared by request handlers, which send notifications to
// the kernel only with no lock held and wait for them at most notifyWait.
// go-fuse serialises nothing else: operations run in parallel.
//
// # Errors
//
// Every error becomes a syscall.Errno through toErrno, which unwraps with
// errors.As/Is; fs.ToErrno is never used on wrapped errors. Exported methods
// return errors wrapping the meta sentinels (meta.ErrInvalid,
// meta.ErrExists, meta.ErrNotFound, meta.ErrLimitExceeded) or ErrClosed.
//
// # Observation
//
// With an Observer set (SetObserver, observe.go) before a mount is made,
// the mount's raw file system is wrapped: every request is timed and
// reported with its status, and every EDQUOT with its scope. Without one
// nothing is wrapped. The daemon's metrics are built on it.
//
// # Shutdown
//
// Close closes the session superblocks, then unmounts. When the mount is
// already gone from this namespace (umount -l from outside), busy, or the
// unmount does not let the serve loops end (copies of the mount live on in
// containers' namespaces), Close detaches what is left and aborts the
// connection through /sys/fs/fuse/connections/<minor>/abort, then waits for
// the loops. A retired session superblock whose loops ended by themselves
// is neither unmounted nor aborted (its connection number may serve another
// mount by then).
package fs
