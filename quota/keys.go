package quota

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/vfolder/vfolder/meta"
)

// Keys in the shared badger database, all under "q/":
//
//	q/o                                   unclean-shutdown marker; value: epoch
//	q/v                                   ledger format (formatVersion)
//	q/l/<scope>                           limits of a scope
//	q/f/<scope><folder>                   counters of a folder: bytes, inodes
//	q/i/<scope><folder><dev:8><ino:8>     charge record of one inode: kind, bytes, xattr bytes
//	q/d/<scope><folder><dev:8><ino:8>     dirty mark of an inode: path hint
//	q/c/<scope><folder><id:8>             create intent: kind, bytes, path hint
//
// <scope> is len(volume) volume len(kind) kind len(uuid) uuid and <folder>
// is len(id) id, each length one byte, so that no encoded prefix is a
// prefix of another. Integers in keys are big-endian (iteration order is
// numeric order).
const (
	keyOpen      = "q/o"
	keyFormat    = "q/v"
	prefLimits   = "q/l/"
	prefFolder   = "q/f/"
	prefInode    = "q/i/"
	prefDirty    = "q/d/"
	prefIntent   = "q/c/"
	recVersion   = 1
	maxHintLen   = 4096
	maxRecordLen = maxHintLen + 64

	// formatVersion is what the ledger counts: 1 charged files and
	// symlinks; 2 also directories (the folder root included) and user.*
	// xattrs. A ledger of an older format is opened as after an unclean
	// shutdown, so that the daemon checks it with repair.
	formatVersion = 2
)

var errCorrupt = errors.New("corrupt quota record")

func appendStr(b []byte, s string) []byte {
	b = append(b, byte(len(s)))
	return append(b, s...)
}

func encScope(s ScopeKey) []byte {
	b := make([]byte, 0, 3+len(s.Volume)+len(s.ID.Kind)+len(s.ID.UUID))
	b = appendStr(b, s.Volume)
	b = appendStr(b, string(s.ID.Kind))
	return appendStr(b, s.ID.UUID)
}

func encFolder(id string) []byte { return appendStr(nil, id) }

func cutStr(b []byte) (string, []byte, bool) {
	if len(b) < 1 || len(b) < 1+int(b[0]) {
		return "", nil, false
	}
	n := int(b[0])
	return string(b[1 : 1+n]), b[1+n:], true
}

// decScope parses an encoded scope at the start of b.
func decScope(b []byte) (ScopeKey, []byte, error) {
	vol, rest, ok1 := cutStr(b)
	kind, rest, ok2 := cutStr(rest)
	uuid, rest, ok3 := cutStr(rest)
	if !ok1 || !ok2 || !ok3 {
		return ScopeKey{}, nil, fmt.Errorf("%w: short scope key", errCorrupt)
	}
	s := ScopeKey{Volume: vol, ID: meta.ScopeID{Kind: meta.OwnerKind(kind), UUID: uuid}}
	if err := s.validate(); err != nil {
		return ScopeKey{}, nil, fmt.Errorf("%w: %v", errCorrupt, err)
	}
	return s, rest, nil
}

func decFolder(b []byte) (string, []byte, error) {
	id, rest, ok := cutStr(b)
	if !ok || validFolderID(id) != nil {
		return "", nil, fmt.Errorf("%w: bad folder id in key", errCorrupt)
	}
	return id, rest, nil
}

func keyLimits(sEnc []byte) []byte { return cat(prefLimits, sEnc, nil) }
func keyFolder(sEnc, fEnc []byte) []byte {
	return cat(prefFolder, sEnc, fEnc)
}

func cat(p string, a, b []byte) []byte {
	k := make([]byte, 0, len(p)+len(a)+len(b)+16)
	k = append(k, p...)
	k = append(k, a...)
	return append(k, b...)
}

// keyInodeIn builds prefix+scope+folder+dev+ino (prefix is prefInode or prefDirty).
func keyInodeIn(prefix string, sEnc, fEnc []byte, k InodeKey) []byte {
	b := cat(prefix, sEnc, fEnc)
	b = binary.BigEndian.AppendUint64(b, k.Dev)
	return binary.BigEndian.AppendUint64(b, k.Ino)
}

func keyIntent(sEnc, fEnc []byte, id uint64) []byte {
	return binary.BigEndian.AppendUint64(cat(prefIntent, sEnc, fEnc), id)
}

// parsedKey is a decoded q/f, q/i, q/d or q/c key.
type parsedKey struct {
	Scope  ScopeKey
	Folder string
	Ino    InodeKey
	ID     uint64
}

// parseKey decodes a key of the given prefix (prefFolder, prefInode,
// prefDirty, prefIntent or prefLimits).
func parseKey(prefix string, key []byte) (parsedKey, error) {
	var p parsedKey
	if !strings.HasPrefix(string(key), prefix) {
		return p, fmt.Errorf("%w: key does not start with %q", errCorrupt, prefix)
	}
	s, rest, err := decScope(key[len(prefix):])
	if err != nil {
		return p, err
	}
	p.Scope = s
	if prefix == prefLimits {
		if len(rest) != 0 {
			return p, fmt.Errorf("%w: trailing bytes in limits key", errCorrupt)
		}
		return p, nil
	}
	p.Folder, rest, err = decFolder(rest)
	if err != nil {
		return p, err
	}
	switch prefix {
	case prefFolder:
		if len(rest) != 0 {
			return p, fmt.Errorf("%w: trailing bytes in folder key", errCorrupt)
		}
	case prefInode, prefDirty:
		if len(rest) != 16 {
			return p, fmt.Errorf("%w: inode key has %d trailing bytes", errCorrupt, len(rest))
		}
		p.Ino = InodeKey{Dev: binary.BigEndian.Uint64(rest), Ino: binary.BigEndian.Uint64(rest[8:])}
	case prefIntent:
		if len(rest) != 8 {
			return p, fmt.Errorf("%w: intent key has %d trailing bytes", errCorrupt, len(rest))
		}
		p.ID = binary.BigEndian.Uint64(rest)
	default:
		return p, fmt.Errorf("%w: unknown key prefix %q", errCorrupt, prefix)
	}
	return p, nil
}

// Values. Each starts with the record version; integers are varints.

func encPair(a, b int64) []byte {
	v := []byte{recVersion}
	v = binary.AppendVarint(v, a)
	return binary.AppendVarint(v, b)
}

func decPair(v []byte) (int64, int64, error) {
	if len(v) < 1 || v[0] != recVersion || len(v) > 32 {
		return 0, 0, fmt.Errorf("%w: bad counter record", errCorrupt)
	}
	a, n := binary.Varint(v[1:])
	if n <= 0 {
		return 0, 0, fmt.Errorf("%w: bad counter record", errCorrupt)
	}
	b, m := binary.Varint(v[1+n:])
	if m <= 0 || 1+n+m != len(v) {
		return 0, 0, fmt.Errorf("%w: bad counter record", errCorrupt)
	}
	return a, b, nil
}

// encLimits / decLimits: bytes, inodes (both >= 0).
func encLimits(bytes, inodes int64) []byte { return encPair(bytes, inodes) }

func decLimits(v []byte) (int64, int64, error) {
	a, b, err := decPair(v)
	if err == nil && (a < 0 || b < 0) {
		err = fmt.Errorf("%w: negative limit", errCorrupt)
	}
	return a, b, err
}

// encCounter / decCounter: bytes, inodes of a folder. Values may be
// negative only in a corrupt store; they are accepted so that Check can
// repair them.
func encCounter(bytes, inodes int64) []byte     { return encPair(bytes, inodes) }
func decCounter(v []byte) (int64, int64, error) { return decPair(v) }

// inode record: kind byte, charged data bytes, and, when not 0, charged
// xattr bytes (so records without xattrs keep the format-1 layout).
func encInode(k Kind, size, x int64) []byte {
	v := binary.AppendVarint([]byte{recVersion, byte(k)}, size)
	if x != 0 {
		v = binary.AppendVarint(v, x)
	}
	return v
}

func decInode(v []byte) (Kind, int64, int64, error) {
	bad := fmt.Errorf("%w: bad inode record", errCorrupt)
	if len(v) < 3 || v[0] != recVersion || !Kind(v[1]).valid() || len(v) > 2+2*binary.MaxVarintLen64 {
		return 0, 0, 0, bad
	}
	size, n := binary.Varint(v[2:])
	if n <= 0 || size < 0 {
		return 0, 0, 0, bad
	}
	rest := v[2+n:]
	if len(rest) == 0 {
		return Kind(v[1]), size, 0, nil
	}
	x, m := binary.Varint(rest)
	if m <= 0 || m != len(rest) || x <= 0 {
		return 0, 0, 0, bad
	}
	return Kind(v[1]), size, x, nil
}

// dirty mark: the path hint.
func encMark(hint string) []byte { return append([]byte{recVersion}, hint...) }

func decMark(v []byte) (string, error) {
	if len(v) < 1 || v[0] != recVersion || len(v) > maxRecordLen {
		return "", fmt.Errorf("%w: bad dirty mark", errCorrupt)
	}
	h := string(v[1:])
	if h != "" && !validHint(h) {
		h = ""
	}
	return h, nil
}

// intent: kind, bytes, hint.
func encIntent(k Kind, bytes int64, hint string) []byte {
	v := binary.AppendVarint([]byte{recVersion, byte(k)}, bytes)
	return append(v, hint...)
}

func decIntent(v []byte) (Kind, int64, string, error) {
	if len(v) < 3 || v[0] != recVersion || !Kind(v[1]).valid() || len(v) > maxRecordLen {
		return 0, 0, "", fmt.Errorf("%w: bad create intent", errCorrupt)
	}
	b, n := binary.Varint(v[2:])
	if n <= 0 || b < 0 {
		return 0, 0, "", fmt.Errorf("%w: bad create intent", errCorrupt)
	}
	h := string(v[2+n:])
	if !validHint(h) {
		return 0, 0, "", fmt.Errorf("%w: bad path in create intent", errCorrupt)
	}
	return Kind(v[1]), b, h, nil
}

// validHint reports whether h is a clean relative path inside a folder:
// non-empty, at most 4096 bytes, no leading '/', no empty, "." or ".."
// components, no NUL. Hints that fail are not stored; recovery then
// searches the folder instead.
func validHint(h string) bool {
	if h == "" || len(h) > maxHintLen || h[0] == '/' || strings.IndexByte(h, 0) >= 0 {
		return false
	}
	for {
		c, rest, more := strings.Cut(h, "/")
		if c == "" || c == "." || c == ".." {
			return false
		}
		if !more {
			return true
		}
		h = rest
	}
}

// splitHint returns the parent directory ("." for the folder root) and the
// last component of a valid hint.
func splitHint(h string) (string, string) {
	if i := strings.LastIndexByte(h, '/'); i >= 0 {
		return h[:i], h[i+1:]
	}
	return ".", h
}
