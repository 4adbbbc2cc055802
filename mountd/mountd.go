// Package mountd publishes vfolder views into containers and takes them away.
//
// Its inputs are plain host directories: the views that package fs serves
// at <fuse-mnt>/sessions/<sid>/<name>, where each session has a FUSE
// superblock of its own, so what Publish binds is a subtree of a superblock
// that holds that session's views and nothing else (a file handle decoded
// through it cannot name anything of other sessions or users). It knows
// nothing about FUSE.
//
// # Targets
//
// ResolveTarget turns a requested target into an absolute container path
// following the reference system's rules (default /home/work/<name>,
// relative targets under /home/work, absolute targets as given, system
// paths refused). CheckOverlap refuses a mount request whose targets or
// sources overlap. AutomountTarget places dot-folders.
//
// # Layout on the host
//
//	<root>                   a private mount (self-bind): nothing mounted
//	                         below it propagates back to the host namespace
//	<root>/<sid>             a shared mount (self-bind) per session
//	<root>/<sid>/<key>       one view, or a read-only placeholder for one
//	<root>/.parked/<sid>/<key>  a view Replace moved aside for a moment
//	                         (see replace.go); normally absent
//
// The root, the session directories and the key directories are owned by
// root and mode 0700 (tightened at start where an earlier version made
// them 0711): container runtimes bind as root, and no other host user may
// walk to a published view, whose files show as the session's uid.
//
// # What propagates, and the three ways a view reaches a container
//
// A container runtime binds every OCI mount on its own (bind, then the
// propagation flag), inside a new mount namespace that starts as a copy of
// the host's. Copies of <root>/<sid> in that namespace are slaves of the
// host's session mount once the runtime applies rootfs propagation rslave
// (runc's default; the spec should say linux.rootfsPropagation "rslave"
// and must not say "private"), and a bind of a slave mount is itself a
// slave of the same master. So:
//
//  1. Publish, then start the container with OCIMount(hostPath, target).
//     The container binds the view itself. It keeps it until it stops:
//     Unpublish does not reach that copy (Detach does).
//  2. Reserve before the container starts, Publish at any time. Reserve
//     puts a read-only, empty, tiny tmpfs (source "vfolder-placeholder") at
//     <root>/<sid>/<key>; the container binds that placeholder with
//     "rbind,rslave", becoming a slave of it. A view published later is
//     mounted on top of the placeholder's root, and the kernel copies it
//     onto every slave of the placeholder: it appears at the target inside
//     the running container. Unpublish removes it again the same way. The
//     placeholder is read-only so that a container never writes into the
//     host's runtime directory while no view is there.
//  3. Attach injects a view into a running container at any target, with
//     no preparation: it clones the mount in the host namespace, enters the
//     container's mount namespace on a locked thread and moves the clone
//     there. Detach takes it away.
//
// A read-only view is created read-only before it is attached anywhere
// (open_tree clone, mount_setattr, move_mount), so no propagated copy is
// ever writable, not even briefly: remounting the host copy read-only
// afterwards would not reach the copies. The ro flag given to Publish (or
// Attach) and to OCIMount for one mount must agree; the caller takes both
// from the same request. Every view is also nosuid and nodev. The bind flag
// alone does not stop a privileged container (it can remount rw): the
// daemon's own EROFS on ro views is the real guarantee.
//
// # State, concurrency and errors
//
// The mount table is the state: a restarted daemon finds what an earlier
// run published (Publish is idempotent per (sid, key) and recognises its
// own earlier mounts; Replace puts a new view in the place of one whose
// FUSE connection is gone: it reaches every copy of the dead one in
// running containers, and the dead mounts are taken away from under it,
// see replace.go; PublishOver only stacks the new view on top). A self-bind of the root that an earlier Publisher
// left (its daemon was killed) is recognised as a bind of the directory it
// covers (SelfBinds) and released by Close like one this Publisher made; a
// mount of the operator's there (a tmpfs, say) is left alone. Methods of a Publisher are safe for concurrent use;
// calls for one session are serialised, sessions do not wait on each other.
// Expected failures are the sentinels below (wrapped with detail); they
// also match meta.ErrInvalid / meta.ErrConflict so the API layer can map
// them. Everything here needs root (CAP_SYS_ADMIN) and Linux >= 5.12.
package mountd

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/vfolder/vfolder/meta"
)

// Sentinel errors; test with errors.Is. Their texts read like the meta
// sentinels they wrap, because callers show them to users as they are.
var (
	// ErrInvalid: bad input (a target, session id, key, subpath or path).
	ErrInvalid = fmt.Errorf("%w", meta.ErrInvalid)
	// ErrSystemPath: the target is a system directory. Also ErrInvalid.
	ErrSystemPath = fmt.Errorf("%w: system path refused", ErrInvalid)
	// ErrOverlap: two mounts of one request overlap. Also ErrInvalid.
	ErrOverlap = fmt.Errorf("%w: overlapping mounts", ErrInvalid)
	// ErrConflict: the key (or target) already holds a different mount.
	ErrConflict = fmt.Errorf("%w", meta.ErrConflict)
	// ErrNotMounted: Detach found nothing mounted at the target.
	ErrNotMounted = errors.New("nothing mounted there")
	// ErrUnsupported: the kernel lacks the new mount API (Linux < 5.12).
	ErrUnsupported = errors.New("the kernel lacks open_tree/mount_setattr/move_mount (Linux 5.12 or later is needed)")
)

// MaxSessionIDLen is the longest session id accepted.
const MaxSessionIDLen = 128

// MaxKeyLen is the longest publication key accepted, in bytes (one path
// component on the host).
const MaxKeyLen = 255

// ValidateSessionID checks a session id: 1..128 characters of
// [A-Za-z0-9_.-], not starting with '.'.
func ValidateSessionID(sid string) error {
	if sid == "" || len(sid) > MaxSessionIDLen {
		return fmt.Errorf("%w: session id must be 1..%d characters", ErrInvalid, MaxSessionIDLen)
	}
	if sid[0] == '.' {
		return fmt.Errorf("%w: session id %q must not start with '.'", ErrInvalid, sid)
	}
	for i := 0; i < len(sid); i++ {
		c := sid[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.'
		if !ok {
			return fmt.Errorf("%w: session id %q may only contain letters, digits, '_', '-' and '.'", ErrInvalid, sid)
		}
	}
	return nil
}

// ValidateKey checks a publication key: one path component of valid UTF-8,
// 1..255 bytes, not "." or "..", no '/', NUL or control characters. Mount
// names (folder names) are valid keys.
func ValidateKey(key string) error {
	if key == "" || len(key) > MaxKeyLen {
		return fmt.Errorf("%w: key must be 1..%d bytes", ErrInvalid, MaxKeyLen)
	}
	if !utf8.ValidString(key) {
		return fmt.Errorf("%w: key is not valid UTF-8", ErrInvalid)
	}
	if key == "." || key == ".." || strings.ContainsRune(key, '/') {
		return fmt.Errorf("%w: key %q must be a single path component", ErrInvalid, key)
	}
	for _, r := range key {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%w: key %q contains a control character", ErrInvalid, key)
		}
	}
	return nil
}

// OCIBind is one entry of an OCI runtime spec's "mounts" array.
type OCIBind struct {
	Destination string   `json:"destination"`
	Type        string   `json:"type"`
	Source      string   `json:"source"`
	Options     []string `json:"options"`
}

// OCIMount returns the OCI mount that binds hostPath (from Publish or
// Reserve) at target (from ResolveTarget) inside a container:
// {destination: target, type: bind, source: hostPath, options: rbind,
// rslave[, ro]}. rslave makes the container's copy a slave, so views
// published later under a reserved key propagate in and nothing mounted
// inside the container propagates out. ro must match the view's mode.
func OCIMount(hostPath, target string, ro bool) OCIBind {
	opts := []string{"rbind", "rslave"}
	if ro {
		opts = append(opts, "ro")
	}
	return OCIBind{Destination: target, Type: "bind", Source: hostPath, Options: opts}
}
