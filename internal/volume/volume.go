// Package volume is the on-volume storage layout of vfolder, compatible
// with the reference system's v3 volumes:
//
//	<volume>/version.txt                     "3"
//	<volume>/<scope-hex>/<aa>/<bb>/<rest>    one folder; id = "aabbrest..." (32 hex)
//
// Nothing else is ever written on a volume.
//
// # Telling a volume from a missing mount
//
// A shared volume is usually a mount (NFS, CephFS, Lustre...) on a
// directory of the node's root disk. When the mount is missing, the path
// still names a directory: an empty one, or one holding what was written
// there by mistake. Writing version.txt there would turn it into a volume
// whose folders disappear behind the real mount once it is back. So
// EnsureVersion writes version.txt only into an empty directory that the
// caller does not know as an initialised volume (a brand-new volume);
// a volume the caller initialised before (the daemon's store remembers
// it) must show its version.txt, or it counts as missing (ErrMissing).
// A volume may also be required to be a mount point (IsMountPoint). No
// marker of its own is kept on the volume: the layout stays exactly the
// reference system's.
//
// # Access rules
//
// A Volume holds an O_PATH descriptor of the volume root, opened once.
// Every later access goes through directory descriptors and *at calls:
// openat2 with RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS, mkdirat, unlinkat,
// fchown/fchmod on opened descriptors. No host path is ever joined and
// resolved again, and no symlink is ever followed: a symlink where a
// directory of the layout is expected is an error (ErrUnsafe), and a
// symlink inside a folder is removed as a link, never followed.
//
// # Creating and removing folders
//
// CreateFolder makes the missing scope/aa/bb levels (0755) and the folder
// root (0755), each owned by the storage uid/gid. RemoveFolder deletes a
// folder tree depth-first while holding one directory descriptor at a time
// (a parent is re-opened through ".." and checked by device and inode
// number, so the depth of a tree is not bounded by the descriptor limit),
// never crosses into another filesystem, copes with read-only directories,
// and then prunes empty bb, aa and scope directories. It tolerates a tree
// that is already partly or completely gone, so an interrupted purge can
// simply be run again.
//
// # Concurrency
//
// Methods are safe for concurrent use. Creating the layout levels and
// pruning them are serialized per Volume so that a prune never removes a
// parent another goroutine is creating a folder in; other nodes sharing
// the volume are handled by retrying creation when a level vanishes.
// Removing two different folders runs in parallel.
package volume

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/internal/backing"
	"github.com/vfolder/vfolder/meta"
)

// LayoutVersion is the content of <volume>/version.txt this package writes
// and accepts.
const LayoutVersion = "3"

const (
	versionFile    = "version.txt"
	versionTmpFile = ".version.txt.tmp"
	dirMode        = 0o755
	// progressEvery is how many removed entries pass between progress calls.
	progressEvery = 1024
)

// Errors. Failures of system calls are wrapped *os.PathError/syscall.Errno
// values besides these.
var (
	// ErrLayout: the volume has a layout this daemon does not handle.
	ErrLayout = errors.New("unsupported volume layout")
	// ErrUnsafe: a symlink, non-directory or foreign mount was found where
	// the layout expects a plain directory.
	ErrUnsafe = errors.New("unsafe entry on volume")
	// ErrInvalid: a malformed owner or folder id.
	ErrInvalid = errors.New("invalid folder reference")
	// ErrMissing: the volume is not there: its path does not exist, is not
	// a mount point although it must be one, or lacks the version.txt of
	// a volume initialised before (its mount is probably missing).
	ErrMissing = errors.New("volume missing")
)

// Volume is an opened storage volume.
type Volume struct {
	path string
	root *os.File // O_PATH|O_DIRECTORY
	// mu serializes creating and pruning layout levels.
	mu sync.Mutex
}

// Open opens the volume root directory at path (absolute; symlinks in
// path itself are resolved once, here).
func Open(path string) (*Volume, error) {
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("volume path %q is not absolute", path)
	}
	fd, err := unix.Open(path, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil, fmt.Errorf("%w: %s does not exist", ErrMissing, path)
	}
	if err != nil {
		return nil, &os.PathError{Op: "open volume", Path: path, Err: err}
	}
	return &Volume{path: filepath.Clean(path), root: os.NewFile(uintptr(fd), path)}, nil
}

// Close releases the root descriptor.
func (v *Volume) Close() error { return v.root.Close() }

// Path is the volume's host path, for display.
func (v *Volume) Path() string { return v.path }

// FolderPath is a folder's host path, for display only: never open it.
func (v *Volume) FolderPath(owner meta.ScopeID, id string) string {
	if checkRef(owner, id) != nil {
		return ""
	}
	return filepath.Join(v.path, meta.FolderRelPath(owner, id))
}

func (v *Volume) rootFd() int { return int(v.root.Fd()) }

// EnsureVersion checks <volume>/version.txt. A missing file is created
// (owned by uid/gid, content "3") only when the volume is empty apart
// from lost+found and known is false; a volume with content but no
// version file, or with another version, is refused with ErrLayout.
// known tells that the caller initialised (or used) this volume before:
// then a missing version.txt means the volume is not there (ErrMissing),
// never that it is new.
func (v *Volume) EnsureVersion(uid, gid int, known bool) error {
	for attempt := 0; attempt < 3; attempt++ {
		got, err := v.readVersion()
		if err == nil {
			if got != LayoutVersion {
				return fmt.Errorf("%w: volume %s: %s says %q; this daemon handles layout %q only", ErrLayout, v.path, versionFile, got, LayoutVersion)
			}
			return nil
		}
		if !errors.Is(err, unix.ENOENT) {
			return err
		}
		if known {
			return fmt.Errorf("%w: %s has no %s, but this volume was initialised before: its file system is probably not mounted", ErrMissing, v.path, versionFile)
		}
		if err := v.checkEmpty(); err != nil {
			return err
		}
		err = v.writeVersion(uid, gid)
		if errors.Is(err, unix.EEXIST) {
			continue // another node wrote it first: read theirs
		}
		return err
	}
	return fmt.Errorf("%w: volume %s: %s keeps changing", ErrLayout, v.path, versionFile)
}

// IsMountPoint reports whether the volume root is the root of a mount:
// statx's STATX_ATTR_MOUNT_ROOT where the kernel reports it (bind mounts
// included), else a device number different from the parent's.
func (v *Volume) IsMountPoint() (bool, error) {
	var stx unix.Statx_t
	err := unix.Statx(v.rootFd(), "", unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BASIC_STATS, &stx)
	if err != nil {
		return false, &os.PathError{Op: "statx", Path: v.path, Err: err}
	}
	if stx.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT != 0 {
		return stx.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0, nil
	}
	var self, parent unix.Stat_t
	if err := unix.Fstat(v.rootFd(), &self); err != nil {
		return false, &os.PathError{Op: "stat", Path: v.path, Err: err}
	}
	if err := unix.Fstatat(v.rootFd(), "..", &parent, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return false, &os.PathError{Op: "stat", Path: filepath.Join(v.path, ".."), Err: err}
	}
	// "/" is its own parent and a mount root.
	return self.Dev != parent.Dev || self.Ino == parent.Ino, nil
}

// RequireMountPoint fails with ErrMissing unless the volume root is a
// mount point.
func (v *Volume) RequireMountPoint() error {
	ok, err := v.IsMountPoint()
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: %s is not a mount point (require_mount is set): its file system is not mounted", ErrMissing, v.path)
	}
	return nil
}

func (v *Volume) readVersion() (string, error) {
	fd, err := backing.Openat2(v.rootFd(), versionFile, unix.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return "", fmt.Errorf("%w: volume %s: %s is a symlink", ErrUnsafe, v.path, versionFile)
		}
		return "", &os.PathError{Op: "open", Path: filepath.Join(v.path, versionFile), Err: err}
	}
	f := os.NewFile(uintptr(fd), versionFile)
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 64))
	if err != nil {
		return "", fmt.Errorf("volume %s: read %s: %w", v.path, versionFile, err)
	}
	return string(bytes.TrimSpace(b)), nil
}

func (v *Volume) checkEmpty() error {
	fd, err := openDir(v.rootFd(), ".")
	if err != nil {
		return &os.PathError{Op: "open", Path: v.path, Err: err}
	}
	defer unix.Close(fd)
	buf := make([]byte, 8192)
	for {
		ents, err := readDirents(fd, buf)
		if err != nil {
			return &os.PathError{Op: "readdir", Path: v.path, Err: err}
		}
		if len(ents) == 0 {
			return nil
		}
		for _, e := range ents {
			switch e.name {
			case "lost+found", versionTmpFile:
				continue
			}
			return fmt.Errorf("%w: volume %s has no %s but is not empty (it holds %q); refusing to use it as a layout %s volume", ErrLayout, v.path, versionFile, e.name, LayoutVersion)
		}
	}
}

func (v *Volume) writeVersion(uid, gid int) error {
	root := v.rootFd()
	_ = unix.Unlinkat(root, versionTmpFile, 0)
	fd, err := backing.Openat2(root, versionTmpFile, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW, 0o644)
	if err != nil {
		return &os.PathError{Op: "create", Path: filepath.Join(v.path, versionTmpFile), Err: err}
	}
	f := os.NewFile(uintptr(fd), versionTmpFile)
	_, err = f.Write([]byte(LayoutVersion))
	if err == nil {
		err = unix.Fchown(fd, uid, gid)
	}
	if err == nil {
		err = unix.Fchmod(fd, 0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = unix.Renameat2(root, versionTmpFile, root, versionFile, unix.RENAME_NOREPLACE)
	}
	if err != nil {
		_ = unix.Unlinkat(root, versionTmpFile, 0)
		if errors.Is(err, unix.EEXIST) {
			return err
		}
		return fmt.Errorf("volume %s: write %s: %w", v.path, versionFile, err)
	}
	return syncDir(root)
}

// checkRef validates an owner and a folder id (32 lowercase hex digits).
func checkRef(owner meta.ScopeID, id string) error {
	if !owner.Valid() {
		return fmt.Errorf("%w: owner %q is not a scope id", ErrInvalid, owner.String())
	}
	if h, err := meta.ParseUUID(id); err != nil || h != id {
		return fmt.Errorf("%w: folder id %q is not 32 lowercase hex digits", ErrInvalid, id)
	}
	return nil
}

// levels returns the layout path of a folder as its components.
func levels(owner meta.ScopeID, id string) [4]string {
	return [4]string{owner.Hex(), id[0:2], id[2:4], id[4:]}
}

// CreateFolder creates the folder directory (and missing parents), owned
// by uid/gid with mode 0755. If the folder directory already exists it
// fails with an error matching os.ErrExist.
func (v *Volume) CreateFolder(owner meta.ScopeID, id string, uid, gid int) error {
	if err := checkRef(owner, id); err != nil {
		return err
	}
	lv := levels(owner, id)
	v.mu.Lock()
	defer v.mu.Unlock()
	var err error
	// A level may vanish between mkdirat and the next step when another
	// node prunes it; start over then.
	for attempt := 0; attempt < 5; attempt++ {
		err = v.createOnce(lv, uid, gid)
		if !errors.Is(err, unix.ENOENT) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("create folder %s: %w", v.FolderPath(owner, id), err)
	}
	return nil
}

func (v *Volume) createOnce(lv [4]string, uid, gid int) error {
	dir := v.rootFd()
	var opened []int
	defer func() {
		for _, fd := range opened {
			unix.Close(fd)
		}
	}()
	for _, name := range lv[:3] {
		fd, _, err := mkdirOpen(dir, name, uid, gid)
		if err != nil {
			return err
		}
		opened = append(opened, fd)
		dir = fd
	}
	fd, created, err := mkdirOpen(dir, lv[3], uid, gid)
	if err != nil {
		return err
	}
	unix.Close(fd)
	if !created {
		return fmt.Errorf("folder directory %w", os.ErrExist)
	}
	return syncDir(dir)
}

// mkdirOpen makes dir/name (0755, uid:gid) unless it exists and opens it.
// created tells whether this call made it.
func mkdirOpen(dir int, name string, uid, gid int) (fd int, created bool, err error) {
	err = unix.Mkdirat(dir, name, dirMode)
	created = err == nil
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return -1, false, err
	}
	fd, err = openDir(dir, name)
	if err != nil {
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			return -1, false, fmt.Errorf("%w: %q is not a plain directory", ErrUnsafe, name)
		}
		return -1, false, err
	}
	if created {
		// Explicit chmod: mkdirat's mode is filtered by the umask.
		if err = unix.Fchown(fd, uid, gid); err == nil {
			err = unix.Fchmod(fd, dirMode)
		}
		if err != nil {
			unix.Close(fd)
			return -1, false, err
		}
	}
	return fd, created, nil
}

// FolderExists reports whether the folder directory is present.
func (v *Volume) FolderExists(owner meta.ScopeID, id string) (bool, error) {
	f, err := v.OpenFolder(owner, id)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	f.Close()
	return true, nil
}

// OpenFolder opens the folder's root directory (O_RDONLY|O_DIRECTORY),
// resolved beneath the volume root without following any symlink. A
// missing folder gives an error matching os.ErrNotExist.
func (v *Volume) OpenFolder(owner meta.ScopeID, id string) (*os.File, error) {
	if err := checkRef(owner, id); err != nil {
		return nil, err
	}
	rel := meta.FolderRelPath(owner, id)
	fd, err := openDir(v.rootFd(), rel)
	if err != nil {
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			return nil, fmt.Errorf("%w: %s is not a plain directory", ErrUnsafe, v.FolderPath(owner, id))
		}
		return nil, &os.PathError{Op: "open", Path: v.FolderPath(owner, id), Err: err}
	}
	return os.NewFile(uintptr(fd), v.FolderPath(owner, id)), nil
}

// RemoveFolder deletes the folder tree and prunes empty parents. progress,
// if not nil, is called from the calling goroutine with the running count
// of removed entries (every progressEvery entries and once at the end). A
// folder that is already (partly) gone is fine. When ctx is cancelled the
// removal stops between entries and returns ctx.Err(); calling it again
// continues where it stopped.
func (v *Volume) RemoveFolder(ctx context.Context, owner meta.ScopeID, id string, progress func(removed int64)) error {
	if err := checkRef(owner, id); err != nil {
		return err
	}
	lv := levels(owner, id)
	var fds [3]int
	n := 0
	defer func() {
		for i := 0; i < n; i++ {
			unix.Close(fds[i])
		}
	}()
	dir := v.rootFd()
	for _, name := range lv[:3] {
		fd, err := openDir(dir, name)
		if errors.Is(err, unix.ENOENT) {
			break // already gone below here
		}
		if err != nil {
			if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
				return fmt.Errorf("%w: %q in %s is not a plain directory", ErrUnsafe, name, v.path)
			}
			return fmt.Errorf("remove folder %s: %w", v.FolderPath(owner, id), err)
		}
		fds[n] = fd
		n++
		dir = fd
	}
	if n == 3 {
		r := remover{ctx: ctx, progress: progress, buf: make([]byte, 32<<10)}
		err := r.removeTree(fds[2], lv[3])
		if r.progress != nil {
			r.progress(r.removed)
		}
		if err != nil {
			return fmt.Errorf("remove folder %s: %w", v.FolderPath(owner, id), err)
		}
	}
	// Prune empty levels bottom-up; stop at the first one still in use.
	v.mu.Lock()
	defer v.mu.Unlock()
	parents := [3]int{v.rootFd(), 0, 0}
	if n > 0 {
		parents[1] = fds[0]
	}
	if n > 1 {
		parents[2] = fds[1]
	}
	for i := n - 1; i >= 0; i-- {
		err := unix.Unlinkat(parents[i], lv[i], unix.AT_REMOVEDIR)
		if err == nil || errors.Is(err, unix.ENOENT) {
			continue
		}
		if errors.Is(err, unix.ENOTEMPTY) || errors.Is(err, unix.EEXIST) {
			break
		}
		return fmt.Errorf("remove folder %s: prune %q: %w", v.FolderPath(owner, id), lv[i], err)
	}
	return syncDir(v.rootFd())
}

// remover deletes one tree; see RemoveFolder.
type remover struct {
	ctx      context.Context
	progress func(int64)
	removed  int64
	buf      []byte
}

type frame struct {
	name     string
	dev, ino uint64
}

func (r *remover) count() {
	r.removed++
	if r.progress != nil && r.removed%progressEvery == 0 {
		r.progress(r.removed)
	}
}

// removeTree removes parent/name and everything below it.
func (r *remover) removeTree(parent int, name string) error {
	cur, err := r.openChild(parent, name)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
		// The folder root itself is not a directory: remove the entry.
		if err := unix.Unlinkat(parent, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return err
		}
		r.count()
		return nil
	}
	if err != nil {
		return err
	}
	var st, pst unix.Stat_t
	if err := unix.Fstat(parent, &pst); err != nil {
		unix.Close(cur)
		return err
	}
	if err := unix.Fstat(cur, &st); err != nil {
		unix.Close(cur)
		return err
	}
	if st.Dev != pst.Dev {
		unix.Close(cur)
		return fmt.Errorf("%w: the folder directory is a mount point; unmount it first", ErrUnsafe)
	}
	rootDev := st.Dev
	stack := []frame{{name, st.Dev, st.Ino}}
	defer func() {
		if cur >= 0 {
			unix.Close(cur)
		}
	}()
	for {
		if err := r.ctx.Err(); err != nil {
			return err
		}
		child, err := r.emptyFiles(cur)
		if err != nil {
			return err
		}
		if child != "" {
			fd, err := r.openChild(cur, child)
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
				continue // changed under us: rescan
			}
			if err != nil {
				return fmt.Errorf("open %q: %w", child, err)
			}
			if err := unix.Fstat(fd, &st); err != nil {
				unix.Close(fd)
				return err
			}
			if st.Dev != rootDev {
				unix.Close(fd)
				return fmt.Errorf("%w: %q is a mount point; unmount it first", ErrUnsafe, child)
			}
			unix.Close(cur)
			cur = fd
			stack = append(stack, frame{child, st.Dev, st.Ino})
			continue
		}
		// cur is empty: go up and remove it.
		top := stack[len(stack)-1]
		if len(stack) == 1 {
			unix.Close(cur)
			cur = -1
			if err := unix.Unlinkat(parent, top.name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("rmdir: %w", err)
			}
			r.count()
			return nil
		}
		up, err := unix.Openat(cur, "..", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open parent of %q: %w", top.name, err)
		}
		want := stack[len(stack)-2]
		if err := unix.Fstat(up, &st); err != nil || st.Dev != want.dev || st.Ino != want.ino {
			unix.Close(up)
			return fmt.Errorf("%w: directory %q was moved during removal", ErrUnsafe, top.name)
		}
		unix.Close(cur)
		cur = up
		stack = stack[:len(stack)-1]
		err = unix.Unlinkat(cur, top.name, unix.AT_REMOVEDIR)
		switch {
		case err == nil:
			r.count()
		case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENOTEMPTY), errors.Is(err, unix.EEXIST):
			// Gone already, or refilled meanwhile: the rescan handles it.
		case errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM):
			// A read-only parent: make it writable and retry through the
			// rescan, once; a second refusal is final (immutable etc.).
			if changed, err2 := makeWritable(cur); err2 != nil || !changed {
				return fmt.Errorf("rmdir %q: %w", top.name, err)
			}
		default:
			return fmt.Errorf("rmdir %q: %w", top.name, err)
		}
	}
}

// emptyFiles unlinks every non-directory entry of dir and returns the name
// of a subdirectory still to be removed, or "" when dir is empty.
func (r *remover) emptyFiles(dir int) (string, error) {
	if _, err := unix.Seek(dir, 0, 0); err != nil {
		return "", err
	}
	madeWritable := false
	for {
		if err := r.ctx.Err(); err != nil {
			return "", err
		}
		ents, err := readDirents(dir, r.buf)
		if err != nil {
			return "", err
		}
		if len(ents) == 0 {
			return "", nil
		}
		for _, e := range ents {
			typ := e.typ
			if typ == unix.DT_UNKNOWN {
				var st unix.Stat_t
				if err := unix.Fstatat(dir, e.name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
					if errors.Is(err, unix.ENOENT) {
						continue
					}
					return "", err
				}
				if st.Mode&unix.S_IFMT == unix.S_IFDIR {
					typ = unix.DT_DIR
				}
			}
			if typ == unix.DT_DIR {
				return e.name, nil
			}
			err := unix.Unlinkat(dir, e.name, 0)
			if (errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM)) && !madeWritable {
				madeWritable = true
				if changed, _ := makeWritable(dir); changed {
					err = unix.Unlinkat(dir, e.name, 0)
				}
			}
			switch {
			case err == nil:
				r.count()
			case errors.Is(err, unix.ENOENT):
			case errors.Is(err, unix.EISDIR):
				return e.name, nil // replaced by a directory meanwhile
			default:
				return "", fmt.Errorf("unlink %q: %w", e.name, err)
			}
		}
	}
}

// openChild opens dir/name as a directory; a directory we may not read
// (mode 0 when not running as root) is made accessible first.
func (r *remover) openChild(dir int, name string) (int, error) {
	fd, err := openDir(dir, name)
	if !errors.Is(err, unix.EACCES) {
		return fd, err
	}
	pfd, perr := backing.Openat2(dir, name, unix.O_PATH|unix.O_DIRECTORY, 0)
	if perr != nil {
		return -1, err
	}
	var st unix.Stat_t
	// chmod through the descriptor's /proc link: it names the inode just
	// opened, so a rename or symlink swap cannot redirect it.
	if unix.Fstat(pfd, &st) == nil {
		_ = unix.Chmod(backing.ProcPath(pfd), (st.Mode&0o7777)|0o700)
	}
	unix.Close(pfd)
	return openDir(dir, name)
}

// makeWritable adds owner rwx to an opened directory; changed is false
// when it had them already.
func makeWritable(fd int) (changed bool, err error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return false, err
	}
	if st.Mode&0o700 == 0o700 {
		return false, nil
	}
	return true, unix.Fchmod(fd, (st.Mode&0o7777)|0o700)
}

// openDir opens dir/name as a readable directory, confined below dir and
// refusing every symlink (backing.Openat2).
func openDir(dir int, name string) (int, error) {
	return backing.Openat2(dir, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
}

// syncDir flushes a directory's entries; dir may be an O_PATH descriptor.
func syncDir(dir int) error {
	fd, err := openDir(dir, ".")
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Fsync(fd); err != nil && !errors.Is(err, unix.EINVAL) {
		return err
	}
	return nil
}

type dirent struct {
	name string
	typ  uint8
}

// readDirents returns the next batch of entries of an open directory,
// without "." and ".."; an empty batch means the end.
func readDirents(fd int, buf []byte) ([]dirent, error) {
	for {
		n, err := unix.Getdents(fd, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			return nil, nil
		}
		ents := parseDirents(buf[:n])
		if len(ents) > 0 {
			return ents, nil
		}
	}
}

// parseDirents decodes linux_dirent64 records:
// ino u64, off s64, reclen u16, type u8, name NUL-terminated.
func parseDirents(b []byte) []dirent {
	var out []dirent
	for len(b) >= 19 {
		reclen := int(binary.NativeEndian.Uint16(b[16:18]))
		if reclen < 19 || reclen > len(b) {
			break
		}
		typ := b[18]
		name := b[19:reclen]
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		b = b[reclen:]
		if s := string(name); s != "." && s != ".." && s != "" {
			out = append(out, dirent{s, typ})
		}
	}
	return out
}
