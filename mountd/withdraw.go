package mountd

// Withdraw: one key of a session taken away while the session stays (a
// revoked mount). It is Unpublish narrowed to <root>/<sid>/<key>:
//
//   - every mount stacked at (or below) the key is detached, topmost and
//     deepest first (MNT_DETACH); the session directory is a shared mount,
//     so each detach propagates to the copies of the session directory and
//     to the slaves of the key's mounts: a view published on a reserved key
//     leaves every running container that bound the placeholder, which
//     then shows the empty read-only placeholder (its own copy of it) at
//     the target;
//   - a view a container bound directly (published before the container
//     started, way 1 in the package comment) is the container's own mount:
//     no detach on the host reaches it. What it shows then is up to the
//     view's source (package fs makes a removed view answer ENOENT to
//     lookups and ESTALE to new opens);
//   - a view an interrupted Replace left parked for the key is detached
//     too, and the key directory is removed.
//
// It never refuses a valid (sid, key): it does all it can and reports, as
// one joined error, what is still mounted or could not be removed. A key
// that is not there is not an error.

import (
	"errors"
	"fmt"
	"path/filepath"
	"sort"

	"golang.org/x/sys/unix"
)

// Withdraw takes the mounts of one key of a session away and removes the
// key directory (see the file comment).
func (p *Publisher) Withdraw(sid, key string) error {
	if err := checkSessionKey(sid, key); err != nil {
		return err
	}
	unlock := p.lock(sid)
	defer unlock()
	var errs []error
	for _, dir := range []string{p.HostPath(sid, key), filepath.Join(p.root, parkedDir, sid, key)} {
		if err := detachAll(dir); err != nil {
			errs = append(errs, err)
		}
	}
	p.removeParkDir(sid, key)

	rootFd, err := unix.Open(p.root, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	defer unix.Close(rootFd)
	sfd, err := openDirAt(rootFd, sid)
	if errors.Is(err, unix.ENOENT) {
		return errors.Join(errs...)
	}
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("open %s: %w", p.SessionDir(sid), err))...)
	}
	defer unix.Close(sfd)
	if err := unix.Unlinkat(sfd, key, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		errs = append(errs, fmt.Errorf("remove %s: %w", p.HostPath(sid, key), err))
	}
	if len(errs) > 0 {
		p.log.Warn().Str("sid", sid).Str("key", key).Errs("errors", errs).Msg("withdraw left things behind")
	} else {
		p.log.Debug().Str("sid", sid).Str("key", key).Msg("withdrawn")
	}
	return errors.Join(errs...)
}

// detachAll detaches every mount at or below dir, deepest and topmost
// first, and reports what is still mounted.
func detachAll(dir string) error {
	lastErr := map[string]error{}
	for round := 0; round < 256; round++ {
		mi, err := ReadMountInfo(0)
		if err != nil {
			return err
		}
		var cands []MountInfo
		for _, m := range mi {
			if under(m.Point, dir) {
				cands = append(cands, m)
			}
		}
		if len(cands) == 0 {
			return nil
		}
		// Deepest first; at one path, the last line is on top.
		sort.SliceStable(cands, func(a, b int) bool { return len(cands[a].Point) > len(cands[b].Point) })
		m := cands[0]
		if err := unix.Unmount(m.Point, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW); err != nil {
			lastErr[m.Point] = err
			var left []error
			for _, c := range cands {
				e := lastErr[c.Point]
				if e == nil {
					e = unix.EBUSY
				}
				left = append(left, fmt.Errorf("still mounted: %s: %w", c.Point, e))
			}
			return errors.Join(left...)
		}
	}
	return fmt.Errorf("still mounted below %s after 256 detaches", dir)
}
