package fs

import (
	"slices"
	"sync"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// Cross-view coherence. The kernel keeps directory entries for
// entryTimeout, so a change made through one view must reach the kernel's
// caches of the other views of the same folder on this node explicitly:
// every change of a name (create, mkdir, mknod, symlink, link, unlink,
// rmdir, rename) drops the kernel's entry for that name in the other
// views, and the end of a change of a file's data or attributes (the
// flush of a handle that wrote, setattr) drops its cached attributes
// there, so a size or mtime that moved also drops the cached pages
// (auto_inval_data). The other views' nodes are found by walking their
// go-fuse trees along the changed path: no index is kept, and a view
// whose kernel never looked at the path is skipped after a few map
// lookups.
//
// Notifications are written to the kernel after the daemon's own work,
// from a separate goroutine, and the request waits at most notifyWait for
// them: the kernel takes the other view's directory lock to drop an entry,
// and a request of that view holding the lock may be waiting for this
// one's reply (two renames in two views of one folder). Past notifyWait
// the reply goes out and the notification completes on its own.
//
// The kernel also keeps negative entries inside views, for
// negativeTimeout (node.Lookup): a name created through one view is
// therefore notified to every other view of the folder that has a node
// of its directory, whether or not it has a node of the name itself
// (the kernel's entry invalidation drops a negative dentry as well as a
// positive one). The view the name was made through needs nothing: the
// kernel turns its own negative dentry into the new entry.
//
// Changes made on storage behind the daemon (other nodes) are not
// notified. The kernel then keeps a stale entry for up to entryTimeout,
// but every operation resolves the node's path again below the view root,
// and one that finds another object there answers ESTALE (node.openStat),
// on which the kernel looks the name up again; attributes are refreshed
// after attrTimeout. A name made there appears once the negative entry
// the kernel may have for it expires, within negativeTimeout.

// notifyWait bounds how long a request waits for its notifications.
const notifyWait = 20 * time.Millisecond

// folderPlace identifies the folder a view shows (its volume and folder
// directory): views with the same place share backing objects.
type folderPlace struct{ volume, folderRel string }

// peerTable lists the live views of each folder, in every FS instance
// that shares it (Shared): a change through a session superblock reaches
// the users/ and projects/ views of the node-wide one and the other
// sessions' superblocks, and the other way round (go-fuse sends each
// notification to the connection of the inode it names). Request
// handlers take mu shared; AddView and RemoveView exclusively (with
// their FS.mu held).
type peerTable struct {
	mu sync.RWMutex
	m  map[folderPlace][]*view
}

func (p *peerTable) add(v *view) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[folderPlace][]*view{}
	}
	p.m[v.place] = append(p.m[v.place], v)
}

func (p *peerTable) remove(v *view) {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := slices.DeleteFunc(p.m[v.place], func(w *view) bool { return w == v })
	if len(l) == 0 {
		delete(p.m, v.place)
	} else {
		p.m[v.place] = l
	}
}

// notice is one invalidation: the entry name of directory in, or (name
// empty) the attributes of in.
type notice struct {
	in   *gofs.Inode
	name string
}

// peerNotices returns what the other views of n's folder must drop when
// the entry name of directory n changed, or (name empty) when the
// attributes of n itself changed. A name that was added is notified to
// every other view that has a node of the directory, also without a node
// of the name: the kernel may hold a negative entry for it. A name that
// was removed or replaced only to those that have a node of it.
func (n *node) peerNotices(name string, added bool) []notice {
	var out []notice
	for _, in := range n.peerInodes() {
		if name != "" && !added && in.GetChild(name) == nil {
			continue
		}
		out = append(out, notice{in: in, name: name})
	}
	return out
}

// peerInodes returns the nodes of n's path in the other views of its
// folder that the kernel knows.
func (n *node) peerInodes() []*gofs.Inode {
	v := n.v
	peers := v.fs.peers
	peers.mu.RLock()
	defer peers.mu.RUnlock()
	list := peers.m[v.place]
	if len(list) < 2 {
		return nil
	}
	comps, errno := n.relPath()
	if errno != 0 {
		return nil
	}
	// path is n's path relative to the folder root.
	path := make([]string, 0, len(v.sub)+len(comps))
	path = append(append(path, v.sub...), comps...)
	var out []*gofs.Inode
	for _, w := range list {
		if w == v || w.removed.Load() || len(path) < len(w.sub) || !slices.Equal(path[:len(w.sub)], w.sub) {
			continue
		}
		in := w.root.EmbeddedInode()
		for _, c := range path[len(w.sub):] {
			if in = in.GetChild(c); in == nil {
				break
			}
		}
		if in == nil {
			continue
		}
		out = append(out, in)
	}
	return out
}

// sendNotices hands the notices to the kernel and waits for that at most
// notifyWait. It must be called with no lock held.
func sendNotices(ns []notice) {
	if len(ns) == 0 {
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, x := range ns {
			if x.name != "" {
				x.in.NotifyEntry(x.name)
			} else {
				// A negative offset drops the attributes only; the
				// pages go when the new attributes show another
				// size or mtime.
				x.in.NotifyContent(-1, 0)
			}
		}
	}()
	t := time.NewTimer(notifyWait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}

// negativeEntries answers the lookups of a name that does not exist,
// which go-fuse gives as ENOENT, with a negative entry (node ID 0) when
// the lookup set an entry timeout (node.Lookup does inside views), so
// that the kernel keeps it for that long. Lookups that set none stay
// ENOENT, which the kernel does not keep. The observer, wrapped inside,
// counts them as ENOENT either way.
type negativeEntries struct{ fuse.RawFileSystem }

func (r negativeEntries) Lookup(cancel <-chan struct{}, header *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	st := r.RawFileSystem.Lookup(cancel, header, name, out)
	if st == fuse.ENOENT && out.NodeId == 0 && out.EntryTimeout() > 0 {
		return fuse.OK
	}
	return st
}

// entryAdded tells the other views that directory n has a new entry
// name (created, linked, or the target of a rename).
func (n *node) entryAdded(name string) { sendNotices(n.peerNotices(name, true)) }

// entryChanged tells the other views that the entry name of directory n
// was removed or now names another object.
func (n *node) entryChanged(name string) { sendNotices(n.peerNotices(name, false)) }

// attrsChanged tells the other views that n's data or attributes changed.
func (n *node) attrsChanged() { sendNotices(n.peerNotices("", false)) }

// dropChildEntries drops every entry the kernel caches below directory n,
// in its view and in the other views of the folder: n stopped letting
// every class search it, so each walk below it must reach the daemon's
// LOOKUP again (perm.go). The kernel holds n's lock during the SETATTR
// that calls this, so n's own entries are dropped once the reply has
// gone (a walk in between may still use one); the other views' at once.
func (n *node) dropChildEntries() {
	own := childNotices(n.EmbeddedInode())
	var peers []notice
	for _, in := range n.peerInodes() {
		peers = append(peers, childNotices(in)...)
	}
	if len(own) > 0 {
		go func() {
			for _, x := range own {
				x.in.NotifyEntry(x.name)
			}
		}()
	}
	sendNotices(peers)
}

// childNotices lists the entries of directory in that the kernel knows.
func childNotices(in *gofs.Inode) []notice {
	var out []notice
	for name := range in.Children() {
		out = append(out, notice{in: in, name: name})
	}
	return out
}
