package e2e

import (
	"sort"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/posixtest"

	"github.com/vfolder/vfolder/meta"
)

// TestFsPosix runs go-fuse's POSIX conformance suite against rw views
// (with the delete right, which the suite needs for unlink and rename).
// Every case gets its own folder and view.
//
// Notes on individual cases:
//   - FcntlFlockLocksFile expects a write lock taken through one descriptor
//     to block a read lock through another descriptor of the same process.
//     That holds here because fcntl locks become open-file-description
//     locks on the backing file (so they reach the storage and other
//     nodes), as in go-fuse's own loopback.
//   - OpenSymlinkRace swaps a file and a symlink to /etc/passwd under one
//     name while opening it; it checks that the daemon never opened the
//     symlink's target. The daemon opens with O_NOFOLLOW below
//     RESOLVE_NO_SYMLINKS, so it cannot.
//   - Tmpfile needs O_TMPFILE, which views serve (the file is linked into
//     place through the open descriptor).
//   - RenameOpenDir passes: fstat on a directory descriptor whose name was
//     replaced is answered from the open backing directory.
//   - XAttrLarge skips itself when the backing file system refuses an
//     8 KiB value (ext4 without ea_inode answers ENOSPC); TestFsPosixTmpfs
//     runs it on tmpfs.
func TestFsPosix(t *testing.T) {
	fsPosixAll(t, fsSetup(t))
}

// TestFsPosixTmpfs runs the suite again with the volume on tmpfs: another
// backing file system (inode numbers, xattr limits, O_DIRECT); there
// XAttrLarge runs too, which ext4 without large xattr support skips.
func TestFsPosixTmpfs(t *testing.T) {
	e := fsSetup(t)
	if err := syscall.Mount("tmpfs", e.volume, "tmpfs", 0, "size=256m"); err != nil {
		t.Skipf("cannot mount tmpfs: %v", err)
	}
	// Lazily: the file system still holds the view roots open until its
	// Close, which runs after this cleanup.
	t.Cleanup(func() { syscall.Unmount(e.volume, syscall.MNT_DETACH) })
	fsPosixAll(t, e)
}

func fsPosixAll(t *testing.T, e *fsEnv) {
	names := make([]string, 0, len(posixtest.All))
	for name := range posixtest.All {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fn := posixtest.All[name]
		t.Run(name, func(t *testing.T) {
			s := e.spec(e.folder(t), name, meta.PermRW)
			s.Key = "posix"
			s.RWCanDelete = true
			dir := e.add(t, s)
			fn(t, dir)
		})
	}
}
