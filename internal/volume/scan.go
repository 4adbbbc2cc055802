package volume

// Reading a volume's layout (for import) and its capacity.
//
// ScanLayout lists every folder directory of a layout-v3 volume and every
// entry it does not understand, without changing anything: it opens the
// layout levels read-only through the root descriptor (openat2 beneath
// it, no symlink followed) and looks at each entry with fstatat
// (AT_SYMLINK_NOFOLLOW), so d_type gaps of network file systems do not
// matter. It never looks inside a folder directory. Statfs is fstatfs of
// the root descriptor.

import (
	"context"
	"errors"
	"fmt"
	"path"
	"sort"

	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/meta"
)

// Found is one folder directory of a volume's layout.
type Found struct {
	// ScopeHex is the scope directory's name (the owner's UUID, 32 hex).
	ScopeHex string
	// ID is the folder id (32 hex) its path spells.
	ID string
	// Rel is its path relative to the volume root.
	Rel string
}

// Stray is a layout entry ScanLayout does not understand.
type Stray struct {
	Rel    string // relative to the volume root
	Reason string
}

// Layout is what ScanLayout found, each list ordered by path.
type Layout struct {
	Folders []Found
	Strays  []Stray
}

// rootKnown are the entries of a volume root besides scope directories:
// the layout's version file, and the directory ext file systems make.
var rootKnown = map[string]uint32{versionFile: unix.S_IFREG, "lost+found": unix.S_IFDIR}

// ScanLayout walks the layout levels of the volume (see the file
// comment). An error is returned only when a level cannot be read at all
// (or ctx ends); what is merely not understood goes to Strays.
func (v *Volume) ScanLayout(ctx context.Context) (Layout, error) {
	var out Layout
	var rootSt unix.Stat_t
	if err := unix.Fstat(v.rootFd(), &rootSt); err != nil {
		return out, fmt.Errorf("volume %s: %w", v.path, err)
	}
	sc := scanner{ctx: ctx, dev: rootSt.Dev, out: &out}
	if err := sc.level(v.rootFd(), ".", 0); err != nil {
		return out, fmt.Errorf("volume %s: %w", v.path, err)
	}
	sort.Slice(out.Folders, func(i, j int) bool { return out.Folders[i].Rel < out.Folders[j].Rel })
	sort.Slice(out.Strays, func(i, j int) bool { return out.Strays[i].Rel < out.Strays[j].Rel })
	return out, nil
}

type scanner struct {
	ctx context.Context
	dev uint64
	out *Layout
	buf []byte
}

// nameLen is the length of a level's names: scope, aa, bb, rest.
var nameLen = [4]int{32, 2, 2, 28}

var levelName = [4]string{"scope directory (32 hex digits)", "first id level (2 hex digits)", "second id level (2 hex digits)", "folder directory (28 hex digits)"}

func isLowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// level reads the directory dir (at path rel) at layout depth d
// (0 = root) and descends into what it understands.
func (sc *scanner) level(dir int, rel string, d int) error {
	fd, err := openDir(dir, ".")
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if sc.buf == nil {
		sc.buf = make([]byte, 32<<10)
	}
	var names []string
	for {
		ents, err := readDirents(fd, sc.buf)
		if err != nil {
			return fmt.Errorf("read %s: %w", rel, err)
		}
		if len(ents) == 0 {
			break
		}
		for _, e := range ents {
			names = append(names, e.name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		if err := sc.ctx.Err(); err != nil {
			return err
		}
		erel := path.Join(rel, name)
		var st unix.Stat_t
		if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue // gone meanwhile
			}
			sc.stray(erel, "cannot stat: "+err.Error())
			continue
		}
		typ := st.Mode & unix.S_IFMT
		if d == 0 {
			if want, ok := rootKnown[name]; ok {
				if typ != want {
					sc.stray(erel, "not of the type the layout gives this name")
				}
				continue
			}
		}
		switch {
		case typ == unix.S_IFLNK:
			sc.stray(erel, "a symlink where the layout has a "+levelName[d])
			continue
		case typ != unix.S_IFDIR:
			sc.stray(erel, "not a directory; the layout has only a "+levelName[d]+" here")
			continue
		case !isLowerHex(name, nameLen[d]):
			sc.stray(erel, "name is not a "+levelName[d]+" in lowercase")
			continue
		case st.Dev != sc.dev:
			sc.stray(erel, "another file system is mounted here")
			continue
		}
		if d == 3 {
			parts := splitRel(erel)
			sc.out.Folders = append(sc.out.Folders, Found{ScopeHex: parts[0], ID: parts[1] + parts[2] + parts[3], Rel: erel})
			continue
		}
		sub, err := openDir(fd, name)
		if err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			sc.stray(erel, "cannot open: "+err.Error())
			continue
		}
		err = sc.level(sub, erel, d+1)
		unix.Close(sub)
		if err != nil {
			return err
		}
	}
	return nil
}

func (sc *scanner) stray(rel, reason string) {
	sc.out.Strays = append(sc.out.Strays, Stray{Rel: rel, Reason: reason})
}

// splitRel splits "a/b/c/d" (a clean relative path of four components).
func splitRel(rel string) [4]string {
	var out [4]string
	for i := 3; i > 0; i-- {
		dir, base := path.Split(rel)
		out[i] = base
		rel = path.Clean(dir)
	}
	out[0] = rel
	return out
}

// Space is a volume's statfs figures (see api.VolumeSpace).
type Space struct {
	CapacityBytes, UsedBytes, FreeBytes    int64
	CapacityInodes, UsedInodes, FreeInodes int64
}

// Statfs returns the figures of the volume's backing file system
// (fstatfs of the root descriptor), as df(1) computes them: the block
// size is f_frsize (f_bsize when that is 0), used = blocks - bfree, free
// = bavail.
func (v *Volume) Statfs() (Space, error) {
	var st unix.Statfs_t
	for {
		err := unix.Fstatfs(v.rootFd(), &st)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return Space{}, fmt.Errorf("statfs %s: %w", v.path, err)
		}
		break
	}
	return spaceOf(&st), nil
}

func spaceOf(st *unix.Statfs_t) Space {
	bs := st.Frsize
	if bs <= 0 {
		bs = st.Bsize
	}
	sp := Space{
		CapacityBytes:  int64(st.Blocks) * bs,
		UsedBytes:      int64(st.Blocks-st.Bfree) * bs,
		FreeBytes:      int64(st.Bavail) * bs,
		CapacityInodes: int64(st.Files),
		FreeInodes:     int64(st.Ffree),
	}
	if st.Files >= st.Ffree {
		sp.UsedInodes = int64(st.Files - st.Ffree)
	}
	return sp
}

// FolderID is the folder id of a Found in the canonical form, checked.
func (f Found) FolderID() (string, error) {
	id, err := meta.ParseUUID(f.ID)
	if err != nil || id != f.ID {
		return "", fmt.Errorf("%w: %s does not spell a folder id", ErrInvalid, f.Rel)
	}
	return id, nil
}
