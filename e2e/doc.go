// Package e2e tests vfolder through real things: real vfolderd and vfolder
// processes, real FUSE mounts, real system calls (and dd, df) on them, and
// real OCI containers (package e2e/oci). The package holds only tests; this
// file is its documentation.
//
// # Suites
//
//   - cli, views, members, daemon_quota, crash: the vfolderd and vfolder
//     binaries, built once per test run; each test starts its own daemon
//     on temporary directories (config, state, volumes, socket, mount
//     point) and drives it through the CLI or the API client (StartDaemon,
//     Daemon.CLI). crash kills the daemon with SIGKILL during work and
//     checks what a restart recovers.
//   - fs_*: the FUSE namespace of package fs mounted in the test process
//     (fsSetup), checked against the backing volume: modes, ownership,
//     paths and names that try to escape, data, close and unmount.
//   - quota, quota_crash: fs with the quota ledger (qSetup): concurrent
//     writers, cut-short writes and EDQUOT, statfs, checks and repair, and
//     a child process killed 20 times (5 with -short) under load whose
//     restarts must recover usage to the byte (the backing walk, qWalk, is
//     the truth).
//   - mountd, container: sessions published into real runc (or crun)
//     containers, restarts of the daemon under a running container,
//     privileged containers that try to remount.
//   - handles, hardening: a container holding CAP_DAC_READ_SEARCH forges
//     file handles (helper e2e/fhattack, built statically and copied into
//     the rootfs); host users try to reach published sessions; what a
//     killed daemon leaves mounted; the log under concurrent folder
//     changes.
//   - files: the file API through the daemon and the CLI (uploads resumed
//     after the client is SIGKILLed, the quota, ro folders, ranges with
//     curl, tar downloads, tokens with a non-admin peer, a streamed
//     100k-entry listing, expiry of abandoned uploads).
//   - perm_matrix: the errnos (and, after chmod and chown, the modes and
//     owners) of permission-relevant system calls through a view of a
//     real daemon, as root and as other callers, against a native
//     directory showing the same owner and modes; rw and ro views. The
//     list of mounts under test (permMounts) is where the daemon's own
//     permission checks (issue 15) join.
//
// # Rules the helpers keep
//
//   - A daemon is stopped by its PID (SIGTERM, then SIGKILL after a grace
//     period, which fails the test) in t.Cleanup; nothing else is killed.
//   - A graceful stop must leave no mount behind; a mount left by a daemon
//     that was SIGKILLed on purpose is detached by the helper.
//   - A test that mounts registers failOnMountsLeft first, so that a mount
//     left behind fails it (and is detached).
//   - Temporary directories are removed only after every mount under them
//     is gone, so a cleanup never deletes through a live mount.
//   - Tests that need root, /dev/fuse or a container runtime skip with the
//     reason (RequireRoot).
package e2e
