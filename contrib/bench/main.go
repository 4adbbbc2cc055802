// Command bench is vfolder's benchmark harness (`make bench`). It measures
// the same workloads, in one run and side by side, on the native backing
// directory and on FUSE file systems over that directory: vfolder views
// (rw and ro; rw also without a limit and without a quota ledger, to show
// what quota enforcement and accounting cost), go-fuse's plain loopback
// with and without kernel passthrough, bindfs and mergerfs. It prints
// medians and ratios to native and writes them, with a description of the
// machine, to BENCHMARKS.md. --cpuprofile writes a CPU profile of the
// process that serves the in-process FUSE mounts. --ablate adds vfolder
// mounts that each turn one data-path tuning off and run only the
// workloads it can affect, and an Ablation section that compares them with
// the default vfolder column (ablate.go).
//
// # Processes
//
// One binary plays three roles, chosen by the VFOLDER_BENCH_ROLE
// environment variable:
//
//   - parent (unset): checks the flags and that it runs as root, creates
//     the work directory, and runs itself again as "run" in a new private
//     mount namespace (unshare(CLONE_NEWNS), then MS_REC|MS_PRIVATE on /).
//     Every mount the harness makes lives in that namespace, so none can
//     leak to the host. It forwards SIGINT/SIGTERM, and after the child
//     exits it fails loudly if anything is mounted at or below the work
//     directory in its own namespace, then removes the work directory.
//   - run: mounts the configurations, prepares the fixtures, runs the
//     workloads and writes the report. go-fuse servers (loopback, vfolder)
//     are served by this process; bindfs and mergerfs run as child
//     processes in the foreground (-f) in their own process group.
//   - worker: one timed operation (sequential I/O, metadata loops, lstat
//     passes) in a separate process, as a container would do it; it prints
//     one JSON line with the elapsed time. fio, tar, find, du and rm are
//     separate processes too. Nothing timed runs in the process that
//     serves the FUSE mounts.
//
// # Measurements
//
// Workloads are grouped (seq write, seq read, random, metadata, tree).
// For run 1..N, for each group, for each configuration (the order rotates
// with the run), the group runs once: runs are interleaved across
// configurations so that slow drifts of a shared machine hit all of them
// alike. A cell is the median of the runs and its speed relative to native
// (higher is better, whatever the unit). A workload that cannot run on a
// configuration (writes on a read-only view) is "n/a"; a failure is
// reported as such in the cell and in the notes, and the exit status is
// non-zero. Nothing is ever estimated: what is not measured says why.
// The Every run section gives each cell's runs, median and spread.
//
// The tree workloads extract one tarball (made once, outside every mount)
// in two forms, as root: `untar` with --no-same-owner (no chown) and
// `untar-chown` with a plain `tar -xf` (one chown per entry, tar's
// default for root). Every tree workload (both untars, find, du, the stat
// storm, rm -rf) starts after a sync and a drop of the page, dentry and
// inode caches, so none of them reads what the previous one cached.
//
// All configurations share one backing directory (a vfolder folder
// directory on a vfolder volume layout), so fixtures (the big file, the
// random I/O file, the source tarball) are written once; only
// vfolder-rw-nolimit shows a second folder of the volume (its scope must
// not be the limited one), whose fixture files are hard links to the same
// inodes. Each run writes into its own scratch directory named after
// configuration and run, and scratch directories are removed through the
// backing path between steps.
//
// Before every measurement the harness syncs and waits until none of its
// FUSE connections has a request in flight (fusectl's waiting counter):
// RELEASE is asynchronous, and what a server does there (mergerfs drops
// the backing file's page cache) must not land in the next
// configuration's measurement. A page cache hit run keeps the file open
// in a warm-up process for its whole duration, which also watches the
// file's pages in the page cache (client and backing side, mincore): a
// run during which more than 1% of them were in neither is repeated (up
// to three attempts) and then fails.
//
// # Cleanup
//
// Every mount is recorded when it is made and undone in reverse order on
// exit, on error and on SIGINT/SIGTERM: go-fuse servers are unmounted
// (the connection is aborted through /sys/fs/fuse/connections if that
// fails), bindfs and mergerfs are unmounted and their processes waited
// for (killed by PID if they do not exit). Then /proc/self/mountinfo is
// checked; anything left below the work directory is reported, detached,
// and makes the exit status non-zero.
package main

import (
	"os"
)

// roleEnv selects the role of the process (see the package comment).
const (
	roleEnv    = "VFOLDER_BENCH_ROLE"
	roleParent = "parent" // the default when unset
	roleRun    = "run"
	roleWorker = "worker"
	// workEnv carries the work directory from parent to run.
	workEnv = "VFOLDER_BENCH_WORK"
	// parentNSEnv carries the parent's mount namespace, which the run
	// process must not be in.
	parentNSEnv = "VFOLDER_BENCH_PARENT_NS"
)

func main() { os.Exit(Main(os.Args[1:])) }

// Main runs the role selected by the environment and returns the exit
// status.
func Main(args []string) int {
	switch os.Getenv(roleEnv) {
	case roleWorker:
		return workerMain(args)
	case roleRun:
		return runMain(args)
	default:
		return parentMain(args)
	}
}
