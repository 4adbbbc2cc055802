package fs

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/meta"
)

// atHandleFID asks name_to_handle_at(2) for a handle that identifies a
// file without promising that it can be opened (Linux 6.5); it works where
// export support is refused, and has the same layout on FUSE.
const atHandleFID = 0x200

// fuseFileIDIno64Gen is the type of FUSE's file handles: nodeid (two
// 32-bit words, high first) and generation.
const fuseFileIDIno64Gen = 0x81

// fuseHandle is the decoded form of a FUSE file handle.
type fuseHandle struct {
	nodeID uint64
	gen    uint32
}

func (h fuseHandle) encode() unix.FileHandle {
	b := make([]byte, 12)
	binary.NativeEndian.PutUint32(b[0:], uint32(h.nodeID>>32))
	binary.NativeEndian.PutUint32(b[4:], uint32(h.nodeID))
	binary.NativeEndian.PutUint32(b[8:], h.gen)
	return unix.NewFileHandle(fuseFileIDIno64Gen, b)
}

// handleOf learns the FUSE handle of path: with a plain name_to_handle_at
// where the superblock exports handles, else with AT_HANDLE_FID. plainErr
// is the error of the plain call.
func handleOf(t *testing.T, path string) (h fuseHandle, plainErr error) {
	t.Helper()
	fh, _, plainErr := unix.NameToHandleAt(unix.AT_FDCWD, path, 0)
	if plainErr != nil {
		var err error
		fh, _, err = unix.NameToHandleAt(unix.AT_FDCWD, path, atHandleFID)
		if err != nil {
			t.Fatalf("name_to_handle_at %s: %v (plain: %v)", path, err, plainErr)
		}
	}
	b := fh.Bytes()
	if fh.Type() != fuseFileIDIno64Gen || len(b) != 12 {
		t.Fatalf("handle of %s: type %#x, %d bytes; want FUSE's %#x, 12 bytes", path, fh.Type(), len(b), fuseFileIDIno64Gen)
	}
	return fuseHandle{
		nodeID: uint64(binary.NativeEndian.Uint32(b[0:]))<<32 | uint64(binary.NativeEndian.Uint32(b[4:])),
		gen:    binary.NativeEndian.Uint32(b[8:]),
	}, plainErr
}

// TestFsFileHandles: a file handle decoded through a session's view can
// name nothing outside that session's superblock. With
// FUSE_NO_EXPORT_SUPPORT (the default) the kernel decodes no handle at
// all; with export support left on (Tuning.ExportSupport), the forged
// handle of node 1 opens only the session superblock's root, which lists
// that session's views, and handles of nodes of other sessions' and of
// users/ views fail. The test process is root: it holds
// CAP_DAC_READ_SEARCH, what open_by_handle_at needs.
func TestFsFileHandles(t *testing.T) {
	for _, tc := range []struct {
		name   string
		export bool
	}{{"default", false}, {"export support", true}} {
		t.Run(tc.name, func(t *testing.T) {
			f, dir := testMountWith(t, func(o *Options) { o.Tuning.ExportSupport = tc.export })
			mnt := f.MountPoint()
			own := testFolder(t, dir, 1, "own")
			other := testFolder(t, dir, 2, "other")
			other.Key = "s2"
			user := testFolder(t, dir, 3, "mine")
			user.Namespace, user.Key = NSUsers, strings.Repeat("7", 32)
			ownRO := own
			ownRO.Name, ownRO.Mode = "own-ro", meta.PermRO
			for _, sp := range []ViewSpec{own, ownRO, other, user} {
				if err := f.AddView(sp); err != nil {
					t.Fatal(err)
				}
				p := filepath.Join(mnt, sp.Namespace, sp.Key, sp.Name, "f-"+sp.Name)
				if sp.Mode != meta.PermRO {
					if err := os.WriteFile(p, []byte("secret"), 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
			ownPath := filepath.Join(mnt, NSSessions, "s1", "own")
			mfd, err := unix.Open(ownPath, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(mfd)

			ownH, plainErr := handleOf(t, ownPath)
			if !tc.export && plainErr == nil {
				t.Errorf("name_to_handle_at on a session view succeeded; the superblock still exports handles")
			}
			if !tc.export && !errors.Is(plainErr, unix.EOPNOTSUPP) {
				t.Logf("name_to_handle_at without export support: %v", plainErr)
			}
			// The handles of other views' nodes, learned while the
			// kernel has them cached (kept open until the end).
			targets := map[string]fuseHandle{"node 1": {nodeID: 1}}
			for _, p := range []string{
				filepath.Join(mnt, NSUsers),
				filepath.Join(mnt, NSUsers, user.Key, user.Name),
				filepath.Join(mnt, NSUsers, user.Key, user.Name, "f-"+user.Name),
				filepath.Join(mnt, NSSessions, "s2", other.Name),
				filepath.Join(mnt, NSSessions, "s2", other.Name, "f-"+other.Name),
			} {
				fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
				if err != nil {
					t.Fatal(err)
				}
				defer unix.Close(fd)
				h, _ := handleOf(t, p)
				targets[strings.TrimPrefix(p, mnt)] = h
			}

			// Its own view's handle: decoded only with export support.
			if fd, err := unix.OpenByHandleAt(mfd, ownH.encode(), unix.O_RDONLY|unix.O_CLOEXEC); err == nil {
				unix.Close(fd)
				if !tc.export {
					t.Errorf("the view's own handle was decoded without export support")
				}
			} else if tc.export {
				t.Errorf("the view's own handle: %v", err)
			}
			for name, h := range targets {
				fd, err := unix.OpenByHandleAt(mfd, h.encode(), unix.O_RDONLY|unix.O_CLOEXEC)
				if err != nil {
					t.Logf("%s (node %d gen %d): %v", name, h.nodeID, h.gen, err)
					continue
				}
				names, lerr := listFd(fd)
				unix.Close(fd)
				if tc.export && name == "node 1" {
					// The session superblock's root: its views only.
					if lerr != nil || !slices.Equal(names, []string{"own", "own-ro"}) {
						t.Errorf("node 1 through a session view lists %q (%v); want the session's views only", names, lerr)
					}
					continue
				}
				t.Errorf("%s (node %d gen %d) opened through a session view; lists %q", name, h.nodeID, h.gen, names)
			}
		})
	}
}

// listFd lists the directory open at fd, sorted.
func listFd(fd int) ([]string, error) {
	d, err := unix.Dup(fd)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(d), "dir")
	defer f.Close()
	names, err := f.Readdirnames(-1)
	slices.Sort(names)
	return names, err
}
