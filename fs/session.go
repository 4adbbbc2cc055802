package fs

import (
	"fmt"
	"path/filepath"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/meta"
)

// Shared is the state the FS instances of one node share: the striped
// size locks with the state of the files open for writing (sizeLocks),
// so that two superblocks writing one backing file serialise their size
// changes and see one size, and the peer table of cross-view coherence
// (peerTable), so that a change through one superblock drops what the
// kernel cached of the same folder in the others; and the serial numbers
// of views, which go into the generation of every node (view.generation),
// so that a node of one superblock never carries the nodeid and
// generation of a node of another. The quota ledger is shared through
// Options.Quota. Inode slots stay per FS: inode numbers only need to be
// unique within a superblock.
type Shared struct {
	locks  sizeLocks
	peers  peerTable
	serial atomic.Uint64 // last view serial handed out
}

// NewShared returns state for FS instances to share (Options.Shared).
func NewShared() *Shared { return &Shared{} }

// A session superblock is an FS of its own (session set) whose root holds
// the views of one session and nothing else. It is mounted on the
// session's key directory of the node-wide FS, <mnt>/sessions/<sid>, when
// the session gets its first view, so every path <mnt>/sessions/<sid>/<name>
// keeps its meaning. What mountd binds into a container is a subtree of
// it, so a file handle decoded there can only name a node of that session.
//
// When the session's last view goes, the superblock is retired: detached
// from <mnt>/sessions/<sid> (lazily, so open descriptors go on working
// as they do on any removed view) and its key directory removed. Its
// serve loops end by themselves once nothing refers to it any more (no
// open file, no copy of a view in a container); a goroutine waits for
// that and releases its descriptors. Close of the node-wide FS closes
// the live and the retired superblocks first (aborting connections that
// copies keep alive) and waits for their loops.

// addSessionView adds a view to its session's superblock, mounting the
// superblock first when the session has none. A superblock mounted for a
// view that then fails is retired again.
func (f *FS) addSessionView(spec ViewSpec) error {
	f.sessMu.Lock()
	defer f.sessMu.Unlock()
	s, created, err := f.sessionFS(spec.Key)
	if err != nil {
		return err
	}
	err = s.AddView(spec)
	if err != nil && created {
		f.retireSessionFS(spec.Key, s)
	}
	return err
}

// sessionFS returns the superblock of session sid, mounting it on the
// session's key directory when there is none. f.sessMu is held.
func (f *FS) sessionFS(sid string) (s *FS, created bool, err error) {
	if s := f.sessions[sid]; s != nil {
		return s, false, nil
	}
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil, false, ErrClosed
	}
	_, top, newKey := f.keyDirLocked(NSSessions, sid)
	f.mu.Unlock()
	if newKey {
		// Before the mount: invalidating the entry of a mount point
		// detaches what is mounted there.
		top.NotifyEntry(sid)
	}
	opts := f.opts
	opts.MountPoint = filepath.Join(f.mnt, NSSessions, sid)
	opts.Shared = f.shared
	s, err = mount(opts, sid)
	if err != nil {
		f.mu.Lock()
		kd, top := f.dropKeyDirLocked(NSSessions, sid)
		f.mu.Unlock()
		forgetKeyDir(kd, top, sid)
		return nil, false, fmt.Errorf("session %s: %w", sid, err)
	}
	f.sessions[sid] = s
	return s, true, nil
}

// removeSessionView removes a view from its session's superblock and
// retires the superblock when that was the session's last view.
func (f *FS) removeSessionView(sid, name string) error {
	f.sessMu.Lock()
	defer f.sessMu.Unlock()
	f.mu.Lock()
	closed := f.closed
	f.mu.Unlock()
	if closed {
		return ErrClosed
	}
	s := f.sessions[sid]
	if s == nil {
		return fmt.Errorf("%w: no view at %s/%s/%s", meta.ErrNotFound, NSSessions, sid, name)
	}
	if err := s.RemoveView(NSSessions, sid, name); err != nil {
		return err
	}
	if s.viewCount() == 0 {
		f.retireSessionFS(sid, s)
	}
	return nil
}

// retireSessionFS detaches a session superblock that has no view left,
// removes its key directory, and leaves it to end by itself (see above).
// f.sessMu is held.
func (f *FS) retireSessionFS(sid string, s *FS) {
	delete(f.sessions, sid)
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	if err := unix.Unmount(s.mnt, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW); err != nil && err != unix.EINVAL && err != unix.ENOENT {
		f.log.Error().Err(err).Str("session", sid).Str("mnt", s.mnt).Msg("cannot detach the superblock of a session without views")
	}
	// After the detach only (see sessionFS).
	f.mu.Lock()
	kd, top := f.dropKeyDirLocked(NSSessions, sid)
	f.mu.Unlock()
	forgetKeyDir(kd, top, sid)
	f.retired[s] = struct{}{}
	go func() {
		<-s.loopsDone
		f.sessMu.Lock()
		_, mine := f.retired[s]
		delete(f.retired, s)
		f.sessMu.Unlock()
		if mine {
			// Nothing refers to it any more: Close only releases
			// its descriptors (closeSessions does it otherwise).
			s.Close()
		}
	}()
	s.log.Debug().Str("mnt", s.mnt).Msg("session superblock retired")
}

// closeSessions closes every session superblock, live or retired (Close
// of the node-wide FS, which is marked closed already).
func (f *FS) closeSessions() []error {
	f.sessMu.Lock()
	all := make(map[string]*FS, len(f.sessions)+len(f.retired))
	for sid, s := range f.sessions {
		all[sid] = s
	}
	f.sessions = map[string]*FS{}
	for s := range f.retired {
		all[s.session+" (retired)"] = s
	}
	f.retired = map[*FS]struct{}{}
	f.sessMu.Unlock()
	var errs []error
	for name, s := range all {
		if err := s.Close(); err != nil {
			errs = append(errs, fmt.Errorf("session %s: %w", name, err))
		}
	}
	return errs
}

// viewCount is the number of views of the FS's own tree.
func (f *FS) viewCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.views)
}

// sessionViews appends the views of every live session superblock to
// out.
func (f *FS) sessionViews(out []ViewSpec) []ViewSpec {
	f.sessMu.Lock()
	defer f.sessMu.Unlock()
	for _, s := range f.sessions {
		out = append(out, s.Views()...)
	}
	return out
}
