//go:build linux

package mountd

import (
	"errors"
	"fmt"
	"path"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// checkContainerPath checks a target for Attach/Detach: clean, absolute,
// not "/".
func checkContainerPath(target string) error {
	if !path.IsAbs(target) || path.Clean(target) != target || target == "/" || strings.ContainsRune(target, 0) {
		return fmt.Errorf("%w: target %q must be a clean absolute path other than /", ErrInvalid, target)
	}
	return nil
}

// openMountNS opens the mount namespace of pid.
func openMountNS(pid int) (int, error) {
	if pid <= 0 {
		return -1, fmt.Errorf("%w: pid %d", ErrInvalid, pid)
	}
	fd, err := unix.Open("/proc/"+strconv.Itoa(pid)+"/ns/mnt", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("mount namespace of pid %d: %w", pid, err)
	}
	return fd, nil
}

// inMountNS runs fn on a fresh OS thread that has entered the mount
// namespace nsFd, with "/" and the working directory at that namespace's
// root. Paths inside fn are the container's own paths.
func inMountNS(nsFd int, fn func() error) error {
	return onLockedThread(func() error {
		// The thread is never unlocked. unshare(CLONE_FS) gave it its
		// own root and working directory and setns moved it into the
		// container's mount namespace; no other goroutine may ever run
		// on it. A goroutine that exits while locked to its thread makes
		// the runtime terminate that thread instead of reusing it, so the
		// thread dies with this goroutine (and stops pinning the
		// container's namespace).
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			return fmt.Errorf("unshare(CLONE_FS): %w", err)
		}
		if err := unix.Setns(nsFd, unix.CLONE_NEWNS); err != nil {
			return fmt.Errorf("setns(mnt): %w", err)
		}
		if err := unix.Chdir("/"); err != nil {
			return fmt.Errorf("chdir / in the container: %w", err)
		}
		return fn()
	})
}

// onLockedThread runs fn on a new goroutine locked to an OS thread that
// is not the process's main thread, and never unlocks it (see inMountNS).
// The main thread is special: the runtime cannot end it, it would stay
// in the container's namespace forever (pinning it), and /proc/self
// shows the main thread's view. So if the goroutine lands there, it keeps
// the main thread busy while a second goroutine, which then cannot be
// scheduled on it, does the work; the untouched main thread is unlocked
// afterwards.
func onLockedThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if unix.Gettid() == unix.Getpid() {
			err := onLockedThread(fn)
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// Attach injects the mount at hostPath (a view, normally from Publish)
// into the running container whose process is pid, at target (a path
// inside the container, from ResolveTarget). The clone is taken in this
// namespace (recursive, nosuid, nodev, read-only from the start if ro,
// and a slave so nothing mounted inside the container propagates out);
// then a locked thread enters the container's mount namespace, creates
// target and its missing parents (0755, refusing symlinks on the way) and
// moves the clone there. Attaching the same view at the same target again
// is a no-op; a target that already holds another mount is ErrConflict.
func Attach(pid int, hostPath, target string, ro bool) error {
	if err := checkContainerPath(target); err != nil {
		return err
	}
	nsFd, err := openMountNS(pid)
	if err != nil {
		return err
	}
	defer unix.Close(nsFd)
	tree, err := unix.OpenTree(unix.AT_FDCWD, hostPath, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	if err != nil {
		return mountErr("open_tree", hostPath, err)
	}
	defer unix.Close(tree)
	attr := unix.MountAttr{Attr_set: viewAttrs, Propagation: unix.MS_SLAVE}
	if ro {
		attr.Attr_set |= unix.MOUNT_ATTR_RDONLY
	}
	if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &attr); err != nil {
		return mountErr("mount_setattr", hostPath, err)
	}
	var src unix.Statx_t
	if err := unix.Statx(tree, "", unix.AT_EMPTY_PATH, unix.STATX_INO, &src); err != nil {
		return err
	}
	return inMountNS(nsFd, func() error {
		dfd, err := mkdirAllIn(target)
		if err != nil {
			return fmt.Errorf("target %s in pid %d: %w", target, pid, err)
		}
		defer unix.Close(dfd)
		var st unix.Statx_t
		if err := unix.Statx(dfd, "", unix.AT_EMPTY_PATH, unix.STATX_INO, &st); err != nil {
			return err
		}
		if st.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT != 0 && st.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0 {
			if st.Dev_major == src.Dev_major && st.Dev_minor == src.Dev_minor && st.Ino == src.Ino {
				return nil
			}
			return fmt.Errorf("%w: %s in pid %d already holds a mount", ErrConflict, target, pid)
		}
		if err := unix.MoveMount(tree, "", dfd, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
			return mountErr("move_mount", target, err)
		}
		return nil
	})
}

// mkdirAllIn opens the directory target (absolute, clean) below the
// current root, creating missing components with mode 0755. A symlink on
// the way is refused (ELOOP).
func mkdirAllIn(target string) (int, error) {
	fd, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	for _, c := range strings.Split(target[1:], "/") {
		next, err := mkdirOpenAt(fd, c, 0o755)
		unix.Close(fd)
		if err != nil {
			return -1, err
		}
		fd = next
	}
	return fd, nil
}

// Detach unmounts (MNT_DETACH) the topmost mount at target inside the
// mount namespace of pid; ErrNotMounted if nothing is mounted there.
// Symlinks on the way to target are refused.
func Detach(pid int, target string) error {
	if err := checkContainerPath(target); err != nil {
		return err
	}
	nsFd, err := openMountNS(pid)
	if err != nil {
		return err
	}
	defer unix.Close(nsFd)
	return inMountNS(nsFd, func() error {
		parent, base := path.Split(target)
		rootFd, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(rootFd)
		rel := strings.TrimPrefix(path.Clean(parent), "/")
		if rel == "" {
			rel = "."
		}
		pfd, err := openDirAt(rootFd, rel)
		if errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("%w: %s in pid %d", ErrNotMounted, target, pid)
		}
		if err != nil {
			return fmt.Errorf("%s in pid %d: %w", parent, pid, err)
		}
		defer unix.Close(pfd)
		var st unix.Statx_t
		err = unix.Statx(pfd, base, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BASIC_STATS, &st)
		if errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("%w: %s in pid %d", ErrNotMounted, target, pid)
		}
		if err != nil {
			return err
		}
		if st.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT == 0 || st.Attributes&unix.STATX_ATTR_MOUNT_ROOT == 0 {
			return fmt.Errorf("%w: %s in pid %d", ErrNotMounted, target, pid)
		}
		if err := unix.Fchdir(pfd); err != nil {
			return err
		}
		if err := unix.Unmount(base, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW); err != nil {
			return fmt.Errorf("unmount %s in pid %d: %w", target, pid, err)
		}
		return nil
	})
}
