package fs

import (
	"bytes"
	"context"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/internal/backing"
)

// Permission checks of the daemon (see "Permissions" in the package
// comment). Unless Tuning.KernelPermissions is set, the mount has no
// default_permissions, and the kernel checks nothing but S_IXUGO for the
// exec of a regular file, the sticky rule of unlink and rename
// (check_sticky), and the type rules of user.* attributes: it asks the
// daemon at access(2), faccessat(2), chdir(2) (FUSE_ACCESS) and, for
// setattr, passes ATTR_FORCE to setattr_prepare, which then checks
// nothing. So every operation checks here what the kernel's
// generic_permission and setattr_prepare would have, against the owner
// every entry of a view shows (the view's UID and GID) and the mode as
// stored:
//
//	LOOKUP                       x on the directory
//	ACCESS (access, chdir)       the mask asked; on a ro view W_OK on a
//	                             file, directory or symlink the caller
//	                             may write answers EROFS, as on a
//	                             read-only bind mount
//	CREATE MKDIR MKNOD SYMLINK   w+x on the directory (may_create);
//	  TMPFILE
//	LINK                         protected_hardlinks (fs.protected_hardlinks
//	                             = 1): the source's owner, CAP_FOWNER, or a
//	                             safe source (a regular file without
//	                             S_ISUID nor S_ISGID|S_IXGRP that the
//	                             caller may read and write); then w+x on
//	                             the directory
//	UNLINK RMDIR                 w+x on the directory; in a sticky
//	                             directory the caller owns the entry or the
//	                             directory, or has CAP_FOWNER (EPERM)
//	RENAME                       as UNLINK on the source directory; as
//	                             UNLINK (replaced entry) or CREATE on the
//	                             target directory; moving a directory to
//	                             another directory needs w on it (its "..")
//	OPEN                         r and/or w per O_ACCMODE, w for O_TRUNC, x
//	                             alone for an exec (__FMODE_EXEC)
//	OPENDIR                      r
//	SETATTR size                 w, unless through an open handle (ftruncate)
//	SETATTR mode                 the owner or CAP_FOWNER (EPERM); S_ISGID is
//	                             dropped when the caller is not in the group
//	                             and has no CAP_FSETID
//	SETATTR uid / gid            chown_ok / chgrp_ok: the owner keeping the
//	                             owner, or giving a group it is in, or
//	                             CAP_CHOWN (EPERM)
//	SETATTR times                explicit times: the owner or CAP_FOWNER
//	                             (EPERM); both "now": also anyone who may
//	                             write (EACCES)
//	SETXATTR REMOVEXATTR user.*  w; on a sticky directory the owner or
//	                             CAP_FOWNER (EPERM)
//	GETXATTR user.*              r
//	LISTXATTR READLINK GETATTR   nothing (as the kernel)
//
// A permission is generic_permission's: the owner class uses the owner
// bits only, the group class (the caller's fsgid or a supplementary group
// is the view's GID) the group bits only, everyone else the other bits;
// then CAP_DAC_READ_SEARCH (read a file, read or search a directory) and
// CAP_DAC_OVERRIDE (anything on a directory; read and write on a file, and
// exec when some x bit is set).
//
// The caller is fuse.Caller: fsuid, fsgid and the thread id. Supplementary
// groups come from /proc/<tid>/status, read only when the group and other
// bits differ in what is asked, and trusted only when its Uid and Gid
// lines still show the caller's ids; capabilities from capget(2), asked
// only when the bits refuse and a capability would grant. Capabilities
// count only for a caller in the daemon's user namespace (a container
// with a user namespace of its own is privileged over the ids it maps,
// which do not include what a view shows as far as the daemon can tell)
// and are the effective set, or for access(2) by uid 0 the permitted
// set, and none for access(2) by another uid, as access_override_creds
// makes them. Where /proc cannot be read, the caller has no supplementary
// group and no capability: the check refuses rather than guess.

// The bits of a permission mask (MAY_EXEC, MAY_WRITE, MAY_READ).
const (
	mayExec  = 1
	mayWrite = 2
	mayRead  = 4
)

// fmodeExec is __FMODE_EXEC: the kernel sets it in the flags of the open
// that execve(2) makes.
const fmodeExec = 0x20

// Capabilities (linux/capability.h).
const (
	capChown         = 0
	capDacOverride   = 1
	capDacReadSearch = 2
	capFowner        = 3
	capFsetid        = 4
)

// prober is the caller as the decision functions see it; cred is the
// real one, tests use fakes.
type prober interface {
	fsuid() uint32
	inGroup(gid uint32) bool
	capable(c uint) bool
}

// permits is generic_permission: may the caller access an object with
// st_mode mode (type and permission bits) owned by uid:gid for mask
// (mayRead|mayWrite|mayExec)?
func permits(c prober, mode, uid, gid, mask uint32) bool {
	mask &= 7
	if mask == 0 {
		return true
	}
	if c.fsuid() == uid {
		if mask&^(mode>>6) == 0 {
			return true
		}
	} else {
		m := mode
		// The group only matters when its bits and the other bits
		// differ in what is asked.
		if mask&(m^(m>>3)) != 0 && c.inGroup(gid) {
			m >>= 3
		}
		if mask&^m == 0 {
			return true
		}
	}
	if mode&unix.S_IFMT == unix.S_IFDIR {
		if mask&mayWrite == 0 && c.capable(capDacReadSearch) {
			return true
		}
		return c.capable(capDacOverride)
	}
	if mask == mayRead && c.capable(capDacReadSearch) {
		return true
	}
	if mask&mayExec == 0 || mode&0o111 != 0 {
		return c.capable(capDacOverride)
	}
	return false
}

// ownerOrCapable is inode_owner_or_capable: the caller owns the object
// (uid) or has CAP_FOWNER.
func ownerOrCapable(c prober, uid uint32) bool {
	return c.fsuid() == uid || c.capable(capFowner)
}

// mayCreate is may_create's permission part: w+x on the directory.
func mayCreate(c prober, dirMode, uid, gid uint32) syscall.Errno {
	if !permits(c, dirMode, uid, gid, mayWrite|mayExec) {
		return syscall.EACCES
	}
	return 0
}

// mayDelete is may_delete's permission part: w+x on the directory, and in
// a sticky directory the caller owns the entry (entryUID) or the
// directory, or has CAP_FOWNER.
func mayDelete(c prober, dirMode, uid, gid, entryUID uint32) syscall.Errno {
	if !permits(c, dirMode, uid, gid, mayWrite|mayExec) {
		return syscall.EACCES
	}
	if dirMode&unix.S_ISVTX != 0 && c.fsuid() != entryUID && c.fsuid() != uid && !c.capable(capFowner) {
		return syscall.EPERM
	}
	return 0
}

// mayLink is may_linkat with fs.protected_hardlinks set: the source's
// owner, CAP_FOWNER, or a safe source.
func mayLink(c prober, mode, uid, gid uint32) syscall.Errno {
	if !protectedHardlinks() || ownerOrCapable(c, uid) {
		return 0
	}
	safe := mode&unix.S_IFMT == unix.S_IFREG && mode&unix.S_ISUID == 0 &&
		mode&(unix.S_ISGID|unix.S_IXGRP) != unix.S_ISGID|unix.S_IXGRP &&
		permits(c, mode, uid, gid, mayRead|mayWrite)
	if !safe {
		return syscall.EPERM
	}
	return 0
}

// openMask is the permission an open with these flags needs: x alone for
// an exec, else r and/or w per the access mode, w for O_TRUNC.
func openMask(flags uint32) uint32 {
	if flags&fmodeExec != 0 {
		return mayExec
	}
	var m uint32
	switch flags & unix.O_ACCMODE {
	case unix.O_RDONLY:
		m = mayRead
	case unix.O_WRONLY:
		m = mayWrite
	default:
		m = mayRead | mayWrite
	}
	if flags&unix.O_TRUNC != 0 {
		m |= mayWrite
	}
	return m
}

// setattrCheck is what setattr_prepare (and, for a size, vfs_truncate;
// for times set to now, notify_change) checks of a SETATTR, in the
// kernel's order. mode and uid:gid are the object's; in is the request.
// It returns the permission bits to store when the request sets a mode
// (S_ISGID dropped as setattr_prepare drops it).
func setattrCheck(c prober, mode, uid, gid uint32, in *fuse.SetAttrIn) (uint32, syscall.Errno) {
	if _, ok := in.GetSize(); ok && in.Valid&fuse.FATTR_FH == 0 {
		if !permits(c, mode, uid, gid, mayWrite) {
			return 0, syscall.EACCES
		}
	}
	if nu, ok := in.GetUID(); ok {
		if !(c.fsuid() == uid && nu == uid) && !c.capable(capChown) {
			return 0, syscall.EPERM
		}
	}
	if ng, ok := in.GetGID(); ok {
		if !(c.fsuid() == uid && (ng == gid || c.inGroup(ng))) && !c.capable(capChown) {
			return 0, syscall.EPERM
		}
	}
	newMode, setMode := in.GetMode()
	if setMode {
		if !ownerOrCapable(c, uid) {
			return 0, syscall.EPERM
		}
		if newMode&unix.S_ISGID != 0 && !c.inGroup(gid) && !c.capable(capFsetid) {
			newMode &^= unix.S_ISGID
		}
	}
	if t := in.Valid & (fuse.FATTR_ATIME | fuse.FATTR_MTIME); t != 0 {
		touch := t == fuse.FATTR_ATIME|fuse.FATTR_MTIME &&
			in.Valid&(fuse.FATTR_ATIME_NOW|fuse.FATTR_MTIME_NOW) == fuse.FATTR_ATIME_NOW|fuse.FATTR_MTIME_NOW
		if !ownerOrCapable(c, uid) {
			if !touch {
				return 0, syscall.EPERM
			}
			if !permits(c, mode, uid, gid, mayWrite) {
				return 0, syscall.EACCES
			}
		}
	}
	return newMode, 0
}

// xattrCheck is xattr_permission for a user.* name on an object of mode
// owned by uid:gid, for mask mayRead (get) or mayWrite (set, remove).
// Names of other namespaces are not checked (the daemon serves none).
func xattrCheck(c prober, mode, uid, gid, mask uint32) syscall.Errno {
	typ := mode & unix.S_IFMT
	if typ != unix.S_IFREG && typ != unix.S_IFDIR {
		if mask&mayWrite != 0 {
			return syscall.EPERM
		}
		return syscall.ENODATA
	}
	if typ == unix.S_IFDIR && mode&unix.S_ISVTX != 0 && mask&mayWrite != 0 && !ownerOrCapable(c, uid) {
		return syscall.EPERM
	}
	if !permits(c, mode, uid, gid, mask) {
		return syscall.EACCES
	}
	return 0
}

// cred is the caller of one request. Its supplementary groups and
// capabilities are read from /proc on first need.
type cred struct {
	uid, gid, pid uint32
	access        bool // an access(2) check (access_override_creds)
	loaded        bool
	valid         bool // /proc was read and showed the caller's ids
	capsRead      bool
	capsOK        bool // capabilities read, in the daemon's user namespace
	groups        []uint32
	capEff        uint64
	capPrm        uint64
}

// nobody is the caller of a request without credentials.
const nobody = 65534

// callerOf returns the request's caller.
func callerOf(ctx context.Context) *cred {
	c, ok := fuse.FromContext(ctx)
	if !ok {
		return &cred{uid: nobody, gid: nobody}
	}
	return &cred{uid: c.Uid, gid: c.Gid, pid: c.Pid}
}

func (c *cred) fsuid() uint32 { return c.uid }

func (c *cred) inGroup(gid uint32) bool {
	if gid == c.gid {
		return true
	}
	c.load()
	for _, g := range c.groups {
		if g == gid {
			return true
		}
	}
	return false
}

func (c *cred) capable(cp uint) bool {
	if c.access && c.uid != 0 {
		return false
	}
	if !c.capsRead {
		c.capsRead = true
		c.readCaps()
	}
	if !c.capsOK {
		return false
	}
	set := c.capEff
	if c.access {
		set = c.capPrm
	}
	return set&(1<<cp) != 0
}

// readCaps reads the caller's capabilities with capget(2) (a system call,
// much cheaper than reading /proc/<tid>/status, which matters: root's
// every create in a directory it does not own asks for CAP_DAC_OVERRIDE).
// The thread is blocked in its request meanwhile, so the id names it.
// They count only when the thread is in the daemon's user namespace.
func (c *cred) readCaps() {
	if c.pid == 0 {
		return
	}
	var self, st unix.Stat_t
	if !selfUserNS(&self) || unix.Stat("/proc/"+strconv.FormatUint(uint64(c.pid), 10)+"/ns/user", &st) != nil ||
		st.Dev != self.Dev || st.Ino != self.Ino {
		return
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3, Pid: int32(c.pid)}
	var data [2]unix.CapUserData
	if unix.Capget(&hdr, &data[0]) != nil {
		return
	}
	c.capEff = uint64(data[0].Effective) | uint64(data[1].Effective)<<32
	c.capPrm = uint64(data[0].Permitted) | uint64(data[1].Permitted)<<32
	c.capsOK = true
}

// load reads the caller's groups and capabilities from
// /proc/<tid>/status.
func (c *cred) load() {
	if c.loaded {
		return
	}
	c.loaded = true
	if c.pid == 0 {
		return
	}
	dir := "/proc/" + strconv.FormatUint(uint64(c.pid), 10)
	b, err := os.ReadFile(dir + "/status")
	if err != nil {
		return
	}
	// The ids the request carries are the fs ids, or for access(2) the
	// real ones: the fourth and first fields of the Uid and Gid lines.
	field := 3
	if c.access {
		field = 0
	}
	var uidOK, gidOK bool
	for _, line := range bytes.Split(b, []byte{'\n'}) {
		k, v, ok := bytes.Cut(line, []byte{':'})
		if !ok {
			continue
		}
		f := bytes.Fields(v)
		switch string(k) {
		case "Uid":
			uidOK = len(f) == 4 && string(f[field]) == strconv.FormatUint(uint64(c.uid), 10)
		case "Gid":
			gidOK = len(f) == 4 && string(f[field]) == strconv.FormatUint(uint64(c.gid), 10)
		case "Groups":
			for _, g := range f {
				if n, err := strconv.ParseUint(string(g), 10, 32); err == nil {
					c.groups = append(c.groups, uint32(n))
				}
			}
		}
	}
	if !uidOK || !gidOK {
		c.groups = nil
		return
	}
	c.valid = true
}

var (
	selfNSOnce sync.Once
	selfNS     unix.Stat_t
	selfNSOK   bool
)

// selfUserNS gives the daemon's own user namespace.
func selfUserNS(out *unix.Stat_t) bool {
	selfNSOnce.Do(func() { selfNSOK = unix.Stat("/proc/self/ns/user", &selfNS) == nil })
	*out = selfNS
	return selfNSOK
}

var (
	hardlinksMu   sync.Mutex
	hardlinksAt   time.Time
	hardlinksProt bool
)

// protectedHardlinks reports fs.protected_hardlinks (re-read every few
// seconds; an unreadable value counts as set).
func protectedHardlinks() bool {
	hardlinksMu.Lock()
	defer hardlinksMu.Unlock()
	if time.Since(hardlinksAt) > 5*time.Second {
		b, err := os.ReadFile("/proc/sys/fs/protected_hardlinks")
		hardlinksProt = err != nil || len(bytes.TrimSpace(b)) == 0 || bytes.TrimSpace(b)[0] != '0'
		hardlinksAt = time.Now()
	}
	return hardlinksProt
}

// checks reports whether the daemon checks permissions itself (the mount
// has no default_permissions).
func (v *view) checks() bool { return !v.fs.opts.Tuning.KernelPermissions }

// may checks mask on an object of the view with st_mode mode.
func (v *view) may(c prober, mode, mask uint32) syscall.Errno {
	if !permits(c, mode, v.spec.UID, v.spec.GID, mask) {
		return syscall.EACCES
	}
	return 0
}

// allSearch reports whether a directory of mode lets every class search
// it: then the kernel may keep the entries below it cached, as a walk
// through them needs nobody's check.
func allSearch(mode uint32) bool { return mode&0o111 == 0o111 }

// entryTimeout is the entry timeout of a name in a directory of dirMode:
// the mount's, or 0 (revalidated by a LOOKUP on every walk, which the
// daemon checks) when the daemon checks permissions and the directory
// does not let every class search it.
func (f *FS) entryTimeout(dirMode uint32) time.Duration {
	if !f.opts.Tuning.KernelPermissions && !allSearch(dirMode) {
		return 0
	}
	return timeout(f.opts.Tuning.EntryTimeout, entryTimeout)
}

// negEntryTimeout is how long the kernel may keep a negative entry (a
// name that does not exist) in a directory of dirMode: the FS's negative
// timeout, or 0 when the daemon checks permissions and the directory does
// not let every class search it (a cached negative entry would answer
// ENOENT where the caller must get EACCES).
func (f *FS) negEntryTimeout(dirMode uint32) time.Duration {
	if !f.opts.Tuning.KernelPermissions && !allSearch(dirMode) {
		return 0
	}
	return f.negTimeout
}

// accessCheck answers FUSE_ACCESS for an object of the view.
func (v *view) accessCheck(ctx context.Context, st *backing.Stat, mask uint32) syscall.Errno {
	c := callerOf(ctx)
	c.access = true
	if errno := v.may(c, st.Mode, mask); errno != 0 {
		return errno
	}
	if mask&mayWrite != 0 && v.readOnly() {
		switch st.Type() {
		case unix.S_IFREG, unix.S_IFDIR, unix.S_IFLNK:
			return syscall.EROFS
		}
	}
	return 0
}
