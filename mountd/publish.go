//go:build linux

package mountd

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// PlaceholderSource is the mount source name of the read-only tmpfs that
// Reserve puts at a key with no view yet.
const PlaceholderSource = "vfolder-placeholder"

// viewAttrs are set on every view: no setuid binaries, no device nodes.
const viewAttrs = unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV

// rootMode is the mode of the root, the session directories and the key
// directories: only root (the runtimes) may walk to a published view.
const rootMode = 0o700

// privateDir makes the directory name below dirfd owned by root and mode
// 0700 when it is not (a directory made by an earlier version, or by an
// operator). It never follows a symlink.
func privateDir(dirfd int, name string, log zerolog.Logger) error {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", name, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("stat %s: %w", name, err)
	}
	if st.Uid != 0 || st.Gid != 0 {
		if err := unix.Fchown(fd, 0, 0); err != nil {
			return fmt.Errorf("chown %s to root: %w", name, err)
		}
	}
	if st.Mode&0o7777 != rootMode {
		if err := unix.Fchmod(fd, rootMode); err != nil {
			return fmt.Errorf("chmod %s: %w", name, err)
		}
		log.Info().Str("dir", name).Str("was", fmt.Sprintf("%04o", st.Mode&0o7777)).Msg("sessions directory made root-only (0700)")
	}
	return nil
}

// Publisher publishes views under a runtime directory (for example
// /run/vfolder/sessions). See the package comment for the layout.
type Publisher struct {
	root string
	log  zerolog.Logger

	rootMu   sync.Mutex
	rootDone bool
	madeRoot bool // this Publisher bound root onto itself

	mu    sync.Mutex
	locks map[string]*sessLock
}

type sessLock struct {
	mu   sync.Mutex
	refs int
}

// NewPublisher creates root if needed, makes it root's alone (owner root,
// mode 0700: runtimes bind as root, and nobody else on the host may reach
// a published view), and makes it a private mount (bound onto itself
// when it is not a mount point yet), so that nothing mounted below it
// propagates back into the host namespace. A self-bind an earlier
// Publisher left (a daemon killed before it could release it) counts as
// this one's own, so Close releases it.
func NewPublisher(root string, log zerolog.Logger) (*Publisher, error) {
	if !filepath.IsAbs(root) {
		return nil, fmt.Errorf("%w: publisher root %q is not absolute", ErrInvalid, root)
	}
	// Parents stay traversable (the API socket may share one); the root
	// itself is private.
	if err := os.MkdirAll(filepath.Dir(root), 0o755); err != nil {
		return nil, err
	}
	if err := os.Mkdir(root, rootMode); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, err
	}
	real, err := filepath.EvalSymlinks(root)
	if err != nil {
		return nil, err
	}
	if err := privateDir(unix.AT_FDCWD, real, log); err != nil {
		return nil, err
	}
	p := &Publisher{root: real, log: log, locks: make(map[string]*sessLock)}
	if err := p.ensureRoot(); err != nil {
		return nil, err
	}
	return p, nil
}

// Root is the runtime directory (symlinks resolved).
func (p *Publisher) Root() string { return p.root }

// SessionDir is <root>/<sid>.
func (p *Publisher) SessionDir(sid string) string { return filepath.Join(p.root, sid) }

// HostPath is <root>/<sid>/<key>, where Publish and Reserve put a key.
func (p *Publisher) HostPath(sid, key string) string { return filepath.Join(p.root, sid, key) }

func (p *Publisher) lock(sid string) func() {
	p.mu.Lock()
	l := p.locks[sid]
	if l == nil {
		l = &sessLock{}
		p.locks[sid] = l
	}
	l.refs++
	p.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		p.mu.Lock()
		l.refs--
		if l.refs == 0 {
			delete(p.locks, sid)
		}
		p.mu.Unlock()
	}
}

// mountErr turns ENOSYS from the new mount API into ErrUnsupported.
func mountErr(op, path string, err error) error {
	if errors.Is(err, unix.ENOSYS) {
		return fmt.Errorf("%s %s: %w", op, path, ErrUnsupported)
	}
	return fmt.Errorf("%s %s: %w", op, path, err)
}

// openDirAt opens name below dirfd as an O_PATH directory fd, refusing
// symlinks and anything that leaves dirfd.
func openDirAt(dirfd int, name string) (int, error) {
	return unix.Openat2(dirfd, name, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
}

// mkdirOpenAt opens directory name below dirfd, creating it first if it
// is missing.
func mkdirOpenAt(dirfd int, name string, mode uint32) (int, error) {
	fd, err := openDirAt(dirfd, name)
	if errors.Is(err, unix.ENOENT) {
		if err := unix.Mkdirat(dirfd, name, mode); err != nil && !errors.Is(err, unix.EEXIST) {
			return -1, err
		}
		fd, err = openDirAt(dirfd, name)
	}
	return fd, err
}

// isMountRoot reports whether fd is the root of a mount.
func isMountRoot(fd int) (bool, error) {
	var st unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BASIC_STATS, &st); err != nil {
		return false, err
	}
	if st.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT == 0 {
		return false, fmt.Errorf("statx reports no mount-root attribute: %w", ErrUnsupported)
	}
	return st.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0, nil
}

// bindSelf binds the directory fd refers to onto itself.
func bindSelf(fd int, name string) error {
	tree, err := unix.OpenTree(fd, "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH)
	if err != nil {
		return mountErr("open_tree", name, err)
	}
	defer unix.Close(tree)
	if err := unix.MoveMount(tree, "", fd, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		return mountErr("move_mount", name, err)
	}
	return nil
}

// setPropagation sets the propagation type of the mount at path (not of
// the mounts below it).
func setPropagation(path string, prop uint64) error {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, &unix.MountAttr{Propagation: prop}); err != nil {
		return mountErr("mount_setattr", path, err)
	}
	return nil
}

func (p *Publisher) ensureRoot() error {
	p.rootMu.Lock()
	defer p.rootMu.Unlock()
	if p.rootDone {
		return nil
	}
	fd, err := unix.Open(p.root, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", p.root, err)
	}
	isRoot, err := isMountRoot(fd)
	switch {
	case err == nil && !isRoot:
		err = bindSelf(fd, p.root)
		if err == nil {
			p.madeRoot = true
		}
	case err == nil:
		// A mount point already: the operator's own mount, or the
		// self-bind of an earlier Publisher that was not closed (its
		// daemon was killed). The latter is ours to release.
		var n int
		if n, err = SelfBinds(p.root); err == nil && n > 0 {
			p.madeRoot = true
			p.log.Info().Str("root", p.root).Msg("taking over the self-bind an earlier run left on the sessions directory")
		}
	}
	unix.Close(fd)
	if err != nil {
		return err
	}
	if err := setPropagation(p.root, unix.MS_PRIVATE); err != nil {
		return err
	}
	p.rootDone = true
	return nil
}

// lockSession takes the session lock and does ensureSession; done closes
// the fd and releases the lock.
func (p *Publisher) lockSession(sid string) (sessFd int, done func(), err error) {
	unlock := p.lock(sid)
	sessFd, err = p.ensureSession(sid)
	if err != nil {
		unlock()
		return -1, nil, err
	}
	return sessFd, func() { unix.Close(sessFd); unlock() }, nil
}

// checkSessionKey validates the session id and the key of a publication.
func checkSessionKey(sid, key string) error {
	if err := ValidateSessionID(sid); err != nil {
		return err
	}
	return ValidateKey(key)
}

// keyStack makes the key directory below the session directory (when
// missing) and returns the mounts stacked at its host path, bottom first.
func keyStack(sessFd int, key, hostPath string) ([]MountInfo, error) {
	kfd, err := mkdirOpenAt(sessFd, key, rootMode)
	if err != nil {
		return nil, fmt.Errorf("key dir %s: %w", hostPath, err)
	}
	unix.Close(kfd)
	mi, err := ReadMountInfo(0)
	if err != nil {
		return nil, err
	}
	return stackAt(mi, hostPath), nil
}

// ensureSession creates <root>/<sid> and makes it a shared mount (bound
// onto itself), so that mounts made below it later reach the containers
// that bound something from it, and returns an O_PATH fd of it. The
// session lock is held. Idempotent.
func (p *Publisher) ensureSession(sid string) (int, error) {
	if err := p.ensureRoot(); err != nil {
		return -1, err
	}
	rootFd, err := unix.Open(p.root, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	defer unix.Close(rootFd)
	dir := p.SessionDir(sid)
	fd, err := mkdirOpenAt(rootFd, sid, rootMode)
	if err != nil {
		return -1, fmt.Errorf("session dir %s: %w", dir, err)
	}
	if err := privateDir(rootFd, sid, p.log); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("session dir %s: %w", dir, err)
	}
	isRoot, err := isMountRoot(fd)
	if err == nil && !isRoot {
		if err = bindSelf(fd, dir); err == nil {
			unix.Close(fd)
			fd, err = openDirAt(rootFd, sid)
			if err != nil {
				return -1, err
			}
		}
	}
	if err == nil {
		if e := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, &unix.MountAttr{Propagation: unix.MS_SHARED}); e != nil {
			err = mountErr("mount_setattr", dir, e)
		}
	}
	if err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// Reserve prepares key for a view that may be published after the
// session's containers start: it puts a read-only, empty placeholder
// mount at <root>/<sid>/<key> unless something is mounted there already,
// and returns that path for OCIMount. Idempotent.
func (p *Publisher) Reserve(sid, key string) (string, error) {
	if err := checkSessionKey(sid, key); err != nil {
		return "", err
	}
	sessFd, done, err := p.lockSession(sid)
	if err != nil {
		return "", err
	}
	defer done()
	hostPath := p.HostPath(sid, key)
	st, err := keyStack(sessFd, key, hostPath)
	if err != nil {
		return "", err
	}
	if len(st) > 0 {
		return hostPath, nil
	}
	if err := mountPlaceholder(sessFd, key, hostPath); err != nil {
		return "", err
	}
	p.log.Debug().Str("sid", sid).Str("key", key).Msg("reserved")
	return hostPath, nil
}

// mountPlaceholder mounts a new read-only tmpfs at key below dirfd. It is
// read-only from its creation on.
func mountPlaceholder(dirfd int, key, hostPath string) error {
	fsfd, err := unix.Fsopen("tmpfs", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return mountErr("fsopen", hostPath, err)
	}
	defer unix.Close(fsfd)
	for _, kv := range [][2]string{{"source", PlaceholderSource}, {"size", "4k"}, {"nr_inodes", "4"}, {"mode", "0555"}} {
		if err := unix.FsconfigSetString(fsfd, kv[0], kv[1]); err != nil {
			return mountErr("fsconfig "+kv[0], hostPath, err)
		}
	}
	// A read-only superblock, not only a read-only mount: a runtime
	// that remounts its bind without "ro" (crun does) still cannot write.
	if err := unix.FsconfigSetFlag(fsfd, "ro"); err != nil {
		return mountErr("fsconfig ro", hostPath, err)
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return mountErr("fsconfig create", hostPath, err)
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOEXEC)
	if err != nil {
		return mountErr("fsmount", hostPath, err)
	}
	defer unix.Close(mfd)
	if err := unix.MoveMount(mfd, "", dirfd, key, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return mountErr("move_mount", hostPath, err)
	}
	return nil
}

func isPlaceholder(m *MountInfo) bool {
	return m.FSType == "tmpfs" && m.Source == PlaceholderSource
}

// sameObject reports whether two paths lead to the same inode.
func sameObject(a, b string) (bool, error) {
	var sa, sb unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, a, 0, unix.STATX_INO, &sa); err != nil {
		return false, err
	}
	if err := unix.Statx(unix.AT_FDCWD, b, 0, unix.STATX_INO, &sb); err != nil {
		return false, err
	}
	return sa.Dev_major == sb.Dev_major && sa.Dev_minor == sb.Dev_minor && sa.Ino == sb.Ino, nil
}

// Publish mounts the directory source (a view) at <root>/<sid>/<key> and
// returns that path. The mount is a recursive clone of source, nosuid and
// nodev, and with ro read-only from before it is attached anywhere. On a
// reserved key it goes on top of the placeholder and so appears in the
// running containers that bound the placeholder.
//
// Idempotent per (sid, key): publishing the same source with the same
// mode again returns the path; a different source or mode is ErrConflict.
// A key whose view an interrupted Replace left parked is published
// through Replace (see replace.go).
func (p *Publisher) Publish(sid, key, source string, ro bool) (string, error) {
	if p.Parked(sid, key) {
		// An interrupted Replace left the key's view aside.
		return p.Replace(sid, key, source, ro)
	}
	return p.publish(sid, key, source, ro, false)
}

// PublishOver mounts source at <root>/<sid>/<key> as Publish does, but on
// top of whatever is mounted there, without looking at it: for a key whose
// view belongs to a FUSE connection that is gone (it answers ENOTCONN), so
// that the new view reaches every copy of the dead one in running
// containers.
func (p *Publisher) PublishOver(sid, key, source string, ro bool) (string, error) {
	return p.publish(sid, key, source, ro, true)
}

func (p *Publisher) publish(sid, key, source string, ro, over bool) (string, error) {
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
	if !over {
		st, err := keyStack(sessFd, key, hostPath)
		if err != nil {
			return "", err
		}
		if len(st) > 0 && !isPlaceholder(&st[len(st)-1]) {
			top := st[len(st)-1]
			same, err := sameObject(source, hostPath)
			if err != nil {
				return "", err
			}
			wantRO := ro
			var sfs unix.Statfs_t
			if unix.Statfs(source, &sfs) == nil && sfs.Flags&unix.ST_RDONLY != 0 {
				wantRO = true
			}
			if same && top.ReadOnly() == wantRO {
				return hostPath, nil
			}
			return "", fmt.Errorf("%w: %s already holds a different view (or mode)", ErrConflict, hostPath)
		}
	}
	if err := attachView(sessFd, key, hostPath, source, ro); err != nil {
		return "", err
	}
	p.log.Debug().Str("sid", sid).Str("key", key).Str("source", source).Bool("ro", ro).Bool("over", over).Msg("published")
	return hostPath, nil
}

// attachView mounts a recursive clone of source at key below sessFd
// (hostPath names it in errors): nosuid, nodev and, with ro, read-only
// from before it is attached anywhere.
func attachView(sessFd int, key, hostPath, source string, ro bool) error {
	tree, err := unix.OpenTree(unix.AT_FDCWD, source, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	if err != nil {
		return mountErr("open_tree", source, err)
	}
	defer unix.Close(tree)
	// Private first: the clone must not stay a peer of the source's
	// mount. Attached below the shared session mount it becomes shared
	// in a peer group of its own.
	attr := unix.MountAttr{Attr_set: viewAttrs, Propagation: unix.MS_PRIVATE}
	if ro {
		attr.Attr_set |= unix.MOUNT_ATTR_RDONLY
	}
	if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &attr); err != nil {
		return mountErr("mount_setattr", source, err)
	}
	if err := unix.MoveMount(tree, "", sessFd, key, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return mountErr("move_mount", hostPath, err)
	}
	return nil
}

// Sessions lists the session ids that have a directory under the root.
func (p *Publisher) Sessions() ([]string, error) {
	ents, err := os.ReadDir(p.root)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() && ValidateSessionID(e.Name()) == nil {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// Unpublish takes every mount under <root>/<sid> away (deepest first,
// MNT_DETACH), then removes the key directories and the session
// directory. It never refuses: it does all it can and reports, as one
// joined error, what it could not unmount or remove. Views published on
// reserved keys disappear from running containers too; a view a container
// bound directly (published before it started) stays there until the
// container stops (or Detach). An unknown sid is not an error.
func (p *Publisher) Unpublish(sid string) error {
	if err := ValidateSessionID(sid); err != nil {
		return err
	}
	unlock := p.lock(sid)
	defer unlock()
	dir := p.SessionDir(sid)
	var errs []error
	if err := p.clearParked(sid); err != nil {
		errs = append(errs, err)
	}

	lastErr := map[string]error{}
	for round := 0; round < 256; round++ {
		mi, err := ReadMountInfo(0)
		if err != nil {
			errs = append(errs, err)
			break
		}
		var cands []MountInfo
		for _, m := range mi {
			if under(m.Point, dir) {
				cands = append(cands, m)
			}
		}
		if len(cands) == 0 {
			break
		}
		hasChild := map[int]bool{}
		for _, m := range cands {
			hasChild[m.Parent] = true
		}
		// Deepest first; a leaf has no child mount.
		sort.SliceStable(cands, func(a, b int) bool { return len(cands[a].Point) > len(cands[b].Point) })
		progress := false
		for _, m := range cands {
			if hasChild[m.ID] {
				continue
			}
			if err := unix.Unmount(m.Point, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW); err != nil {
				lastErr[m.Point] = err
				continue
			}
			delete(lastErr, m.Point)
			progress = true
		}
		if !progress {
			// Whatever is left goes with the session mount itself.
			if err := unix.Unmount(dir, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW); err != nil {
				lastErr[dir] = err
			}
			mi, _ = ReadMountInfo(0)
			for _, m := range mi {
				if under(m.Point, dir) {
					e := lastErr[m.Point]
					if e == nil {
						e = unix.EBUSY
					}
					errs = append(errs, fmt.Errorf("still mounted: %s: %w", m.Point, e))
				}
			}
			break
		}
	}

	rootFd, err := unix.Open(p.root, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	defer unix.Close(rootFd)
	rfd, err := unix.Openat2(rootFd, sid, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if errors.Is(err, unix.ENOENT) {
		return errors.Join(errs...)
	}
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("open %s: %w", dir, err))...)
	}
	f := os.NewFile(uintptr(rfd), dir)
	names, err := f.Readdirnames(-1)
	if err != nil {
		errs = append(errs, fmt.Errorf("list %s: %w", dir, err))
	}
	for _, n := range names {
		if err := unix.Unlinkat(rfd, n, unix.AT_REMOVEDIR); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", filepath.Join(dir, n), err))
		}
	}
	f.Close()
	if err := unix.Unlinkat(rootFd, sid, unix.AT_REMOVEDIR); err != nil {
		errs = append(errs, fmt.Errorf("remove %s: %w", dir, err))
	}
	if len(errs) > 0 {
		p.log.Warn().Str("sid", sid).Errs("errors", errs).Msg("unpublish left things behind")
	} else {
		p.log.Debug().Str("sid", sid).Msg("unpublished")
	}
	return errors.Join(errs...)
}

// Close unpublishes every session and, if this Publisher bound the root
// onto itself, detaches that mount. Only for when no container uses the
// views any more (tests, decommissioning a node); a daemon restart does
// not need it.
func (p *Publisher) Close() error {
	sids, err := p.Sessions()
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	for _, sid := range sids {
		if err := p.Unpublish(sid); err != nil {
			errs = append(errs, err)
		}
	}
	p.rootMu.Lock()
	defer p.rootMu.Unlock()
	if p.madeRoot {
		// Every self-bind stacked there (normally one).
		for i := 0; i < maxSelfBinds; i++ {
			if err := unix.Unmount(p.root, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW); err != nil {
				errs = append(errs, fmt.Errorf("unmount %s: %w", p.root, err))
				break
			}
			if n, err := SelfBinds(p.root); err != nil || n == 0 {
				break
			}
		}
		p.madeRoot = false
		p.rootDone = false
	}
	return errors.Join(errs...)
}

// maxSelfBinds bounds how many stacked self-binds Close takes away.
const maxSelfBinds = 16

// SelfBinds reports how many mounts at dir (in the calling thread's
// mount namespace), counted from the bottom of the stack there, are
// binds of the directory they cover: a Publisher's self-bind, as one
// that was not closed leaves it. 0 when nothing is mounted at dir or the
// bottom mount is another file system (an operator's tmpfs, say).
func SelfBinds(dir string) (int, error) {
	mi, err := ReadMountInfo(0)
	if err != nil {
		return 0, err
	}
	return selfBinds(mi, dir), nil
}

// selfBinds is SelfBinds over a parsed mount table.
func selfBinds(mounts []MountInfo, dir string) int {
	st := stackAt(mounts, dir)
	if len(st) == 0 {
		return 0
	}
	var below *MountInfo
	for i := range mounts {
		if mounts[i].ID == st[0].Parent {
			below = &mounts[i]
			break
		}
	}
	if below == nil || !under(dir, below.Point) {
		return 0
	}
	// dir's path inside the file system of the mount below it.
	rel := strings.TrimPrefix(strings.TrimPrefix(dir, below.Point), "/")
	root := path.Join(below.Root, rel)
	n := 0
	for _, m := range st {
		if m.Dev != below.Dev || m.Root != root || m.FSType != below.FSType || m.Source != below.Source {
			break
		}
		n++
	}
	return n
}
