// Command vfolder is the admin CLI of vfolderd: it creates, lists, renames,
// trashes, restores and purges virtual folders, sets quota scopes and
// resource policies, lists, adds and removes views of folders in the
// daemon's FUSE namespace, manages project membership and publishes folders
// into compute sessions (containers), by calling the daemon's local API
// (package api) over its unix socket. It never opens the metadata store itself: the daemon
// owns it.
//
// # Exit codes
//
//	0  success
//	1  the request was refused or failed: an API error (invalid name or
//	   size, not found, conflict, limit exceeded...), the daemon is not
//	   reachable, or a value on the command line (a UUID, a size) is not
//	   acceptable; for "quota-scope check": differences between the usage
//	   ledger and storage that were not repaired, or a folder that could
//	   not be read (the report is printed first, also with --json)
//	2  usage error: unknown command or flag, wrong number of arguments,
//	   conflicting or missing flags, a flag value outside its fixed set
//
// Errors go to stderr as "vfolder: <message>". With --json, results go to
// stdout as the API's JSON objects, for scripts.
//
// Requests time out after --timeout (default 2m), except "quota-scope
// check", which walks whole folders and waits up to api.CheckTimeout (24h)
// unless --timeout is given.
//
// # Argument order
//
// Flags may follow the positional arguments ("vfolder purge ID --confirm
// NAME") and global flags may follow the command ("vfolder list --json").
// An argument that looks like a negative number ("-5G") is taken as a
// positional argument, so that the API can refuse it with a clear message.
// Everything after "--" is positional.
package main

import (
	"context"
	"os"
)

func main() {
	os.Exit(run(context.Background(), os.Args, stdio()))
}
