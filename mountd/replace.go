//go:build linux

package mountd

// Replacing the dead views of an earlier FUSE connection.
//
// When the daemon that served a session's views restarts, every key of
// the session holds a view whose FUSE connection is gone (it answers
// ENOTCONN), and every container that bound or was given that view holds
// a copy of it. Those copies are the container's own mounts: the host
// cannot take them away or change their superblock. What reaches them is
// propagation: a mount made on top of the host's dead view is copied on
// top of every copy of it (they are its slaves). So the new view has to go
// on top of the dead one first. Left there, each restart would stack one
// more dead mount per key, on the host and in every container.
//
// Replace does the new view's work and then takes the dead mounts away
// underneath it, so that each key holds exactly one mount, the live view:
//
//  1. a clone of the new view (nosuid, nodev, read-only from the start
//     when ro) is mounted on top of the key. The kernel copies it on top
//     of every copy of the dead view in running containers, as a slave of
//     the new host mount: from now on the containers receive propagation
//     from it alone;
//  2. the new view is moved away to a parking directory below the
//     private root (<root>/.parked/<sid>/<key>). A move does not
//     propagate: the containers keep their copies;
//  3. every mount left at the key (the dead views of this and earlier
//     runs, the placeholder) is detached, topmost first. The kernel
//     propagates each of those detaches to the containers that hold a copy
//     of the mount below it, and there a copy of the detached mount that
//     is covered by the new view is taken out from under it (the new
//     view's copy moves down onto what was below), so containers lose
//     their dead intermediate copies too. The copy a container bound when
//     it started stays under the new view: it is the container's own;
//  4. the new view is moved back onto the key, which now has nothing
//     mounted on it, so nothing propagates anywhere.
//
// The placeholder goes too: a key whose view was published has no
// further use for it (reserved keys that never got a view keep theirs).
//
// A failure in step 2 or 3 leaves (or moves back) the new view on top of
// whatever is at the key, which is where plain stacking would have put
// it: it works, and the dead mounts stay below it. A failure in step 4,
// or a crash between steps 2 and 4, leaves the view parked: the next
// Publish or Replace of that key finds it and puts it back on top of the
// key before anything else, because it is the mount the containers
// receive propagation from.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// parkedDir is the directory below the root where Replace parks a view
// while it clears the key below it. Its name starts with '.', so it is
// never taken for a session directory.
const parkedDir = ".parked"

// maxStack bounds how many mounts Replace detaches at one key.
const maxStack = 64

// Replace publishes source at <root>/<sid>/<key> in place of the mounts
// there (normally views of a FUSE connection that is gone), as described
// in the file comment, and returns the host path. Running containers that
// hold a copy of a view that was at the key get the new view in its place.
// The caller must know that the key holds nothing worth keeping: only
// dead views of the same publication and the placeholder.
func (p *Publisher) Replace(sid, key, source string, ro bool) (string, error) {
	if err := checkSessionKey(sid, key); err != nil {
		return "", err
	}
	if !filepath.IsAbs(source) {
		return "", fmt.Errorf("%w: source %q is not absolute", ErrInvalid, source)
	}
	sessFd, done, err := p.lockSession(sid)
	if err != nil {
		return "", err
	}
	defer done()
	hostPath := p.HostPath(sid, key)
	kfd, err := mkdirOpenAt(sessFd, key, rootMode)
	if err != nil {
		return "", fmt.Errorf("key dir %s: %w", hostPath, err)
	}
	unix.Close(kfd)
	parkFd, parkPath, err := p.parkDir(sid, key)
	if err != nil {
		return "", err
	}
	defer func() { unix.Close(parkFd) }() // reopened below

	// A view parked by a Replace that was cut short goes back on top.
	// The mount table tells: a dead view cannot be asked.
	if parked, err := isParked(parkPath); err != nil {
		return "", err
	} else if parked {
		if err := unix.MoveMount(parkFd, "", sessFd, key, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
			return "", mountErr("move_mount", parkPath+" to "+hostPath, err)
		}
		p.log.Info().Str("sid", sid).Str("key", key).Msg("a view parked by an interrupted replace is back on its key")
		// The fd named the parked mount's root; the directory is below.
		unix.Close(parkFd)
		if parkFd, _, err = p.parkDir(sid, key); err != nil {
			parkFd = -1
			return "", err
		}
	}

	// Nothing at the key: nothing to replace, nothing to reach.
	mi, err := ReadMountInfo(0)
	if err != nil {
		return "", err
	}
	if len(stackAt(mi, hostPath)) == 0 {
		if err := attachView(sessFd, key, hostPath, source, ro); err != nil {
			return "", err
		}
		return hostPath, nil
	}
	// The mount on top now (a dead view), for step 2.
	below, err := unix.OpenTree(sessFd, key, unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return "", mountErr("open_tree", hostPath, err)
	}
	defer unix.Close(below)

	// 1. The new view on top: it reaches every copy in the containers.
	tree, err := cloneView(source, ro)
	if err != nil {
		return "", err
	}
	defer unix.Close(tree)
	if err := unix.MoveMount(tree, "", sessFd, key, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return "", mountErr("move_mount", hostPath, err)
	}
	// From here on the view is published; what follows only clears the
	// dead mounts below it. Failures leave it on top of them.
	putBack := func(why error) (string, error) {
		if err := unix.MoveMount(tree, "", sessFd, key, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
			return "", errors.Join(why, mountErr("move_mount", "the parked view back to "+hostPath, err))
		}
		p.log.Warn().Err(why).Str("sid", sid).Str("key", key).Msg("published on top of the dead views; they stay below it")
		return hostPath, nil
	}

	// 2. Park it. The kernel moves no mount out of a shared parent, so
	// the dead view below is made private first: its copies already
	// have the new view on top, and nothing needs to reach them through
	// it any more.
	if err := unix.MountSetattr(below, "", unix.AT_EMPTY_PATH, &unix.MountAttr{Propagation: unix.MS_PRIVATE}); err != nil {
		p.log.Warn().Err(err).Str("sid", sid).Str("key", key).Msg("cannot make the dead view private; the dead views stay below the new one")
		return hostPath, nil
	}
	if err := unix.MoveMount(tree, "", parkFd, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		p.log.Warn().Err(err).Str("sid", sid).Str("key", key).Msg("cannot park the new view; the dead views stay below it")
		return hostPath, nil
	}
	// 3. Clear the key, topmost first. The mount table says how many
	// mounts are stacked there: a dead view cannot be asked.
	mi, err = ReadMountInfo(0)
	if err != nil {
		return putBack(err)
	}
	stack := stackAt(mi, hostPath)
	if len(stack) > maxStack {
		return putBack(fmt.Errorf("%d mounts stacked at %s", len(stack), hostPath))
	}
	for range stack {
		if err := unix.Unmount(hostPath, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW); err != nil {
			return putBack(fmt.Errorf("unmount %s: %w", hostPath, err))
		}
	}
	removed := len(stack)
	// 4. Back onto the bare key.
	if err := unix.MoveMount(tree, "", sessFd, key, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return "", mountErr("move_mount", "the parked view back to "+hostPath, err)
	}
	p.removeParkDir(sid, key)
	p.log.Debug().Str("sid", sid).Str("key", key).Int("replaced", removed).Msg("replaced the dead views")
	return hostPath, nil
}

// isParked reports whether something is mounted at parkPath.
func isParked(parkPath string) (bool, error) {
	mi, err := ReadMountInfo(0)
	if err != nil {
		return false, err
	}
	return len(stackAt(mi, parkPath)) > 0, nil
}

// Parked reports whether a Replace that was cut short left the view of
// (sid, key) parked: Publish then hands the key to Replace, which puts it
// back first, because running containers receive propagation through it.
func (p *Publisher) Parked(sid, key string) bool {
	if checkSessionKey(sid, key) != nil {
		return false
	}
	parked, err := isParked(filepath.Join(p.root, parkedDir, sid, key))
	return err == nil && parked
}

// cloneView returns a detached recursive clone of source: nosuid, nodev,
// read-only with ro, private (it becomes shared in a peer group of its
// own when it is attached below a shared mount).
func cloneView(source string, ro bool) (int, error) {
	tree, err := unix.OpenTree(unix.AT_FDCWD, source, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	if err != nil {
		return -1, mountErr("open_tree", source, err)
	}
	attr := unix.MountAttr{Attr_set: viewAttrs, Propagation: unix.MS_PRIVATE}
	if ro {
		attr.Attr_set |= unix.MOUNT_ATTR_RDONLY
	}
	if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &attr); err != nil {
		unix.Close(tree)
		return -1, mountErr("mount_setattr", source, err)
	}
	return tree, nil
}

// parkDir opens (making it when missing) <root>/.parked/<sid>/<key>.
func (p *Publisher) parkDir(sid, key string) (int, string, error) {
	name := filepath.Join(p.root, parkedDir, sid, key)
	fd, err := unix.Open(p.root, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, name, err
	}
	for _, c := range []string{parkedDir, sid, key} {
		next, err := mkdirOpenAt(fd, c, rootMode)
		unix.Close(fd)
		if err != nil {
			return -1, name, fmt.Errorf("parking directory %s: %w", name, err)
		}
		fd = next
	}
	return fd, name, nil
}

// removeParkDir removes <root>/.parked/<sid>/<key> and the directories
// above it that are then empty. Errors are ignored: a directory left
// there is reused by the next Replace, and Unpublish removes it.
func (p *Publisher) removeParkDir(sid, key string) {
	rootFd, err := unix.Open(p.root, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	defer unix.Close(rootFd)
	pfd, err := openDirAt(rootFd, parkedDir)
	if err != nil {
		return
	}
	defer unix.Close(pfd)
	if sfd, err := openDirAt(pfd, sid); err == nil {
		if key != "" {
			_ = unix.Unlinkat(sfd, key, unix.AT_REMOVEDIR)
		}
		unix.Close(sfd)
	}
	_ = unix.Unlinkat(pfd, sid, unix.AT_REMOVEDIR)
	_ = unix.Unlinkat(rootFd, parkedDir, unix.AT_REMOVEDIR)
}

// clearParked detaches whatever an interrupted Replace left parked for
// sid and removes its parking directories (Unpublish).
func (p *Publisher) clearParked(sid string) error {
	dir := filepath.Join(p.root, parkedDir, sid)
	mi, err := ReadMountInfo(0)
	if err != nil {
		return err
	}
	var errs []error
	keys := map[string]bool{}
	for i := len(mi) - 1; i >= 0; i-- {
		if filepath.Dir(mi[i].Point) != dir {
			continue
		}
		keys[filepath.Base(mi[i].Point)] = true
		if err := unix.Unmount(mi[i].Point, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW); err != nil && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mi[i].Point, err))
		}
	}
	if ents, err := os.ReadDir(dir); err == nil {
		for _, e := range ents {
			keys[e.Name()] = true
		}
	}
	for k := range keys {
		p.removeParkDir(sid, k)
	}
	p.removeParkDir(sid, "")
	return errors.Join(errs...)
}
