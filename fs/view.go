package fs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/internal/backing"
	"github.com/vfolder/vfolder/meta"
	"github.com/vfolder/vfolder/quota"
)

// ViewSpec describes one view. See the package comment.
type ViewSpec struct {
	Namespace   string // "sessions", "users" or "projects"
	Key         string // session id, or 32-hex user/project uuid
	Name        string // entry name under Key (folder name or mount name)
	VolumeName  string
	VolumePath  string          // host directory of the volume
	FolderRel   string          // folder directory relative to the volume root
	Subpath     string          // optional relative path inside the folder
	Mode        meta.Permission // ro, rw, wd
	UID, GID    uint32          // owner shown for every entry in the view
	RWCanDelete bool            // rw views may unlink/rmdir/rename-over-existing
	RefuseChown bool            // chown to another owner is EPERM instead of a no-op
	FolderID    string
	Scope       meta.ScopeID
}

// place is where a view lives in the namespace.
type place struct{ ns, key, name string }

// nsKey names a key directory.
type nsKey struct{ ns, key string }

// view is one served view.
type view struct {
	fs     *FS
	spec   ViewSpec
	slot   uint64
	serial uint64
	dev    uint64 // st_dev of the view root
	vol    *volume
	root   *node

	rootStable gofs.StableAttr

	// q is the view's quota hook (see accounting.go); fixed at AddView.
	q quotaHook

	// place is the view's folder and sub the components of its subpath
	// inside it: what coherence.go needs to find the same path in the
	// other views of the folder.
	place folderPlace
	sub   []string

	// fdMu guards rootFd: operations hold it shared while they resolve
	// paths below it; closeRoot takes it exclusively.
	fdMu   sync.RWMutex
	rootFd int

	removed   atomic.Bool
	closeOnce sync.Once

	mapMu  sync.Mutex
	mapped map[devIno]*mappedIno
}

// volume is the O_PATH descriptor of one volume root, shared by its views.
type volume struct {
	name, path string
	fd         int
	refs       int
}

// readOnly reports whether the view is ro.
func (v *view) readOnly() bool { return v.spec.Mode == meta.PermRO }

// mutable answers EROFS on ro views and errClosed on removed ones.
func (v *view) mutable() syscall.Errno {
	if v.readOnly() {
		return syscall.EROFS
	}
	if v.removed.Load() {
		return errClosed
	}
	return 0
}

// deletable answers the errno of an operation that removes an entry.
func (v *view) deletable() syscall.Errno {
	if errno := v.mutable(); errno != 0 {
		return errno
	}
	if v.spec.Mode == meta.PermRW && !v.spec.RWCanDelete {
		return syscall.EPERM
	}
	return 0
}

// canDelete reports whether the view may remove or replace entries.
func (v *view) canDelete() bool {
	return v.spec.Mode == meta.PermWD || v.spec.Mode == meta.PermRW && v.spec.RWCanDelete
}

// withRoot runs fn with the view root descriptor held open.
func (v *view) withRoot(fn func(rootFd int) syscall.Errno) syscall.Errno {
	v.fdMu.RLock()
	defer v.fdMu.RUnlock()
	if v.rootFd < 0 {
		return errClosed
	}
	return fn(v.rootFd)
}

// closeRoot closes the view root descriptor and frees the slot.
func (v *view) closeRoot() {
	v.closeOnce.Do(func() {
		v.fdMu.Lock()
		if v.rootFd >= 0 {
			unix.Close(v.rootFd)
			v.rootFd = -1
		}
		v.fdMu.Unlock()
		v.fs.inos.freeSlot(v.slot)
		v.fs.inos.mu.Lock()
		delete(v.fs.inos.draining, v)
		v.fs.inos.mu.Unlock()
	})
}

// AddView makes a view appear. Adding an identical spec again does
// nothing; a different spec at the same place fails with meta.ErrExists;
// a bad spec with meta.ErrInvalid; a missing folder directory (or subpath)
// with meta.ErrNotFound. A session view goes to its session's superblock,
// which is mounted with the session's first view (session.go).
func (f *FS) AddView(spec ViewSpec) error {
	comps, err := spec.validate()
	if err != nil {
		return err
	}
	if f.session != "" && (spec.Namespace != NSSessions || spec.Key != f.session) {
		return fmt.Errorf("%w: the superblock of session %s holds only that session's views, not %s/%s", meta.ErrInvalid, f.session, spec.Namespace, spec.Key)
	}
	if spec.Namespace == NSSessions && f.session == "" {
		return f.addSessionView(spec)
	}
	return f.addView(spec, comps)
}

// addView adds a view to this FS's own tree.
func (f *FS) addView(spec ViewSpec, comps []string) error {
	pl := place{spec.Namespace, spec.Key, spec.Name}

	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return ErrClosed
	}
	if old := f.views[pl]; old != nil {
		f.mu.Unlock()
		if old.spec == spec {
			return nil
		}
		return fmt.Errorf("%w: another view is at %s/%s/%s", meta.ErrExists, spec.Namespace, spec.Key, spec.Name)
	}
	v, err := f.newView(spec, comps)
	if err != nil {
		f.mu.Unlock()
		return err
	}
	ctx := context.Background()
	kd, top, newKey := f.keyDirLocked(spec.Namespace, spec.Key)
	rootInode := kd.NewPersistentInode(ctx, v.root, v.rootStable)
	kd.AddChild(spec.Name, rootInode, false)
	f.views[pl] = v
	f.peers.add(v)
	f.mu.Unlock()

	// Drop whatever the kernel cached for these names (a negative entry
	// or a removed view at the same place).
	if newKey {
		top.NotifyEntry(spec.Key)
	}
	kd.NotifyEntry(spec.Name)
	f.log.Debug().Str("ns", spec.Namespace).Str("key", spec.Key).Str("name", spec.Name).
		Str("mode", string(spec.Mode)).Uint64("slot", v.slot).Msg("view added")
	return nil
}

// keyDirLocked returns the key directory of ns/key, making it (below its
// top directory) when missing: then newKey is set, and the caller tells
// the kernel about it (top.NotifyEntry(key)) once f.mu is released. In a
// session superblock the key directory is the root. f.mu is held.
func (f *FS) keyDirLocked(ns, key string) (kd, top *dirNode, newKey bool) {
	if kd := f.keyDirs[nsKey{ns, key}]; kd != nil {
		return kd, f.tops[ns], false
	}
	top = f.tops[ns]
	kd = &dirNode{fs: f}
	ch := top.NewPersistentInode(context.Background(), kd, dirStable(f.inos.nextSynthetic()))
	top.AddChild(key, ch, false)
	f.keyDirs[nsKey{ns, key}] = kd
	return kd, top, true
}

// dropKeyDirLocked takes an empty key directory away. The caller then
// calls forgetKeyDir with the result, once f.mu is released. f.mu is
// held.
func (f *FS) dropKeyDirLocked(ns, key string) (kd, top *dirNode) {
	kd = f.keyDirs[nsKey{ns, key}]
	if kd == nil || kd == f.root {
		return nil, nil
	}
	top = f.tops[ns]
	top.RmChild(key)
	delete(f.keyDirs, nsKey{ns, key})
	return kd, top
}

// forgetKeyDir lets go-fuse forget a dropped key directory and the kernel
// its entry.
func forgetKeyDir(kd, top *dirNode, key string) {
	if kd == nil {
		return
	}
	kd.ForgetPersistent()
	top.NotifyEntry(key)
}

// newView opens the view root and builds the view. f.mu is held.
func (f *FS) newView(spec ViewSpec, comps []string) (*view, error) {
	vol, err := f.volumeRef(spec.VolumeName, spec.VolumePath)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*view, error) {
		f.volumeUnref(vol)
		return nil, err
	}
	fd, err := backing.OpenDir(vol.fd, comps)
	if err != nil {
		switch {
		case errors.Is(err, unix.ENOENT):
			return fail(fmt.Errorf("%w: folder directory %s/%s (subpath %q): %v", meta.ErrNotFound, spec.VolumeName, spec.FolderRel, spec.Subpath, err))
		case errors.Is(err, unix.ELOOP), errors.Is(err, unix.EXDEV), errors.Is(err, unix.ENOTDIR):
			return fail(fmt.Errorf("%w: folder directory %s/%s (subpath %q) is not a plain directory below the volume: %v", meta.ErrInvalid, spec.VolumeName, spec.FolderRel, spec.Subpath, err))
		}
		return fail(fmt.Errorf("open folder directory %s/%s: %w", spec.VolumeName, spec.FolderRel, err))
	}
	st, err := backing.Fstat(fd)
	if err != nil {
		unix.Close(fd)
		return fail(fmt.Errorf("stat folder directory %s/%s: %w", spec.VolumeName, spec.FolderRel, err))
	}
	slot, err := f.inos.allocSlot()
	if err != nil {
		unix.Close(fd)
		return fail(err)
	}
	v := &view{
		fs:     f,
		spec:   spec,
		slot:   slot,
		serial: f.shared.serial.Add(1),
		dev:    st.Dev,
		vol:    vol,
		rootFd: fd,
		mapped: map[devIno]*mappedIno{},
	}
	rel, _ := splitFolderRel(spec.FolderRel)
	v.place = folderPlace{volume: spec.VolumeName, folderRel: strings.Join(rel, "/")}
	v.sub = comps[len(rel):]
	if err := f.setQuota(v, spec, comps); err != nil {
		unix.Close(fd)
		f.inos.freeSlot(slot)
		return fail(err)
	}
	v.root, v.rootStable = v.newNode(&st)
	return v, nil
}

// setQuota sets up the view's quota hook when the FS has a ledger. A view
// that may write must name its folder and scope then; a read-only view
// without them simply shows the volume's figures in statfs.
func (f *FS) setQuota(v *view, spec ViewSpec, comps []string) error {
	if f.opts.Quota == nil {
		return nil
	}
	if spec.FolderID == "" || spec.Scope.IsZero() {
		if spec.Mode == meta.PermRO {
			return nil
		}
		return fmt.Errorf("%w: a %s view needs its folder id and quota scope for the quota", meta.ErrInvalid, spec.Mode)
	}
	rel, _ := splitFolderRel(spec.FolderRel)
	sub := comps[len(rel):]
	rootDev := v.dev
	if len(sub) > 0 {
		// The view shows a subpath: keys are relative to the device of
		// the folder root itself.
		fd, err := backing.OpenDir(v.vol.fd, rel)
		if err != nil {
			return fmt.Errorf("open folder directory %s/%s: %w", spec.VolumeName, spec.FolderRel, err)
		}
		st, err := backing.Fstat(fd)
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("stat folder directory %s/%s: %w", spec.VolumeName, spec.FolderRel, err)
		}
		rootDev = st.Dev
	}
	v.q = quotaHook{
		m:       f.opts.Quota,
		scope:   quota.ScopeKey{Volume: spec.VolumeName, ID: spec.Scope},
		folder:  spec.FolderID,
		rootDev: rootDev,
		prefix:  strings.Join(sub, "/"),
	}
	return nil
}

// RemoveView makes a view disappear; meta.ErrNotFound if there is none.
// A key directory left empty disappears too; a session left without
// views loses its superblock (session.go).
func (f *FS) RemoveView(namespace, key, name string) error {
	if namespace == NSSessions && f.session == "" {
		return f.removeSessionView(key, name)
	}
	pl := place{namespace, key, name}
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return ErrClosed
	}
	v := f.views[pl]
	if v == nil {
		f.mu.Unlock()
		return fmt.Errorf("%w: no view at %s/%s/%s", meta.ErrNotFound, namespace, key, name)
	}
	delete(f.views, pl)
	v.removed.Store(true)
	f.peers.remove(v)
	f.inos.mu.Lock()
	f.inos.draining[v] = v
	f.inos.mu.Unlock()

	kd := f.keyDirs[nsKey{namespace, key}]
	rootInode := v.root.EmbeddedInode()
	kd.RmChild(name)
	var goneKd, goneTop *dirNode
	if len(kd.Children()) == 0 {
		goneKd, goneTop = f.dropKeyDirLocked(namespace, key)
	}
	f.volumeUnref(v.vol)
	f.mu.Unlock()

	// Dropping persistence lets go-fuse forget the root node once the
	// kernel has; node.OnForget then closes the root descriptor.
	rootInode.ForgetPersistent()
	kd.NotifyEntry(name)
	forgetKeyDir(goneKd, goneTop, key)
	f.log.Debug().Str("ns", namespace).Str("key", key).Str("name", name).Msg("view removed")
	return nil
}

// volumeRef opens (or shares) the O_PATH descriptor of a volume root.
func (f *FS) volumeRef(name, path string) (*volume, error) {
	if vol := f.vols[name]; vol != nil {
		if vol.path != path {
			return nil, fmt.Errorf("%w: volume %q is at %s, not %s", meta.ErrInvalid, name, vol.path, path)
		}
		vol.refs++
		return vol, nil
	}
	fd, err := unix.Open(path, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("%w: volume %q directory %s: %v", meta.ErrNotFound, name, path, err)
		}
		return nil, fmt.Errorf("%w: volume %q directory %s: %v", meta.ErrInvalid, name, path, err)
	}
	vol := &volume{name: name, path: path, fd: fd, refs: 1}
	f.vols[name] = vol
	return vol, nil
}

func (f *FS) volumeUnref(vol *volume) {
	vol.refs--
	if vol.refs == 0 {
		unix.Close(vol.fd)
		delete(f.vols, vol.name)
	}
}
