// Package sftpd is vfolderd's SFTP endpoint: users move files in and out
// of their folders without a compute session, with any SFTP client
// (OpenSSH's sftp, scp -s, rclone, FileZilla). It speaks SSH through
// golang.org/x/crypto/ssh and SFTP (version 3 with the usual OpenSSH
// extensions) through github.com/pkg/sftp's request server, whose
// sftp.Handlers this package implements.
//
// # Who logs in
//
// The SSH login name is a user's UUID (dashed or 32 hex digits, any
// case). Only public-key authentication exists: the key must be
// registered for that user in the metadata store (vfolder sshkey add;
// service.CheckSSHLogin), so every node of a cluster accepts the same
// keys. The key is looked up again when the SFTP subsystem starts and at
// every open (file, directory listing), so removing a key refuses new
// logins at once and cuts a live session off at its next open. Only the
// "sftp" subsystem is served: no shell, no exec, no forwarding.
//
// # What a user sees
//
// "/" is a virtual, read-only directory holding one directory per folder
// the user reaches (service.Reach: owned, project and invited folders),
// by the name it has in the FUSE namespace's users/<uuid>/. Reach is
// asked again on every request, so a folder that is shared, unshared,
// trashed or renamed shows so at the next request. "/<name>/<path>" is
// a file in that folder.
//
// # The same rules as the views, from the same code
//
// The file I/O is not a second implementation of the folder rules: it is
// done through the daemon's own standing views, mount_point/users/<uuid>/
// <name>, which present the folder at the user's effective permission. So
// ro refuses every change (EROFS, from the view itself), rw deletes only
// where the volume allows it, ownership is unified, setid bits are never
// stored and the quota holds to the byte (the view charges every write),
// exactly as in a container. Paths are resolved from a descriptor of the
// mount point with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
// RESOLVE_NO_XDEV) and the *at calls (mkdirat, unlinkat, renameat2,
// linkat, readlinkat) on the parent's descriptor: no path string is ever
// joined onto a host path, a client's ".." cannot leave the folder (the
// path is cleaned first, and RESOLVE_BENEATH is the second line), and a
// symbolic link on the volume is never followed: listings show links,
// readlink reads them, lstat describes them, but opening, listing or
// changing anything through one is refused (permission denied). Creating
// symbolic links over SFTP is not offered (the protocol's targets would
// arrive as cleaned absolute paths of this virtual tree).
//
// Volume permissions are checked per request: reads need the volume's
// download-file permission, changes its upload-file permission, for the
// user and, for a project's folder, the project
// (service.CheckVolumePerm).
//
// # Quota and partial uploads
//
// A write that crosses the scope's limit is cut short by the view and the
// next one fails with EDQUOT; the client gets SSH_FX_FAILURE with a
// message naming the scope, its limit and its usage. An upload that runs
// out of room therefore leaves the file holding exactly the bytes that
// fit (a prefix of what was sent, never more than the limit allows), and
// the usage counts exactly those bytes; the client reports the failure,
// and the user removes or resumes the file. Nothing is written beyond the
// limit, and nothing is removed behind the user's back (a rw user may not
// be allowed to delete).
//
// # Errors
//
// Errors reach the client as SFTP status codes with a message: ENOENT as
// no-such-file; EROFS, EACCES, EPERM and a refused symbolic link as
// permission-denied; everything else (EDQUOT, EXDEV, EEXIST, ENOTEMPTY...)
// as failure with a message that says what happened. Every refusal is
// logged at debug level, failures of the server itself at error level.
//
// # Concurrency
//
// One goroutine accepts connections; each connection gets a goroutine for
// the SSH handshake and channel requests, and pkg/sftp runs each SFTP
// session with its own workers (reads and writes of one handle may run
// concurrently; pread/pwrite on one descriptor are safe). None of this
// I/O runs inside a FUSE request: the kernel hands it to the FUSE server
// like any other process's I/O. Close stops accepting, closes every
// connection (which ends its sessions and closes their files) and waits
// for the goroutines.
package sftpd
