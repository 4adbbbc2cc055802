package grants

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/vfolder/vfolder/meta"
	"github.com/vfolder/vfolder/quota"
)

// Keys, below Config.Prefix (see the package comment):
//
//	s/<scope>/r                  scope record: limits, settled usage, shares of nodes
//	s/<scope>/f/<folder>         settled figure of a folder
//	s/<scope>/h/<folder>/<inode> registered write holds of one inode
//	s/<scope>/z/<folder>/<inode> tombstone: a figure set from storage found the inode gone
//	n/<node>                     node, under its lease
//	m/<node>/<scope>             the node has a share in the scope
//	t/<node>/<scope>/<n>         what a survivor settled for a dead node
//	c/<node>                     a survivor's claim on a dead node, under its lease
//	r/<scope>                    a cluster check, under its runner's lease
//	r/<scope>/a/<node>           a node's answer to it, under that node's lease
//
// <scope> is the escaped volume, "/", the escaped scope id; <folder> is
// the escaped folder id; <inode> is dev:ino in hex.

func scopeKey(s quota.ScopeKey) string {
	return url.PathEscape(s.Volume) + "/" + url.PathEscape(s.ID.String())
}

func parseScopeKey(sk string) (quota.ScopeKey, error) {
	vol, id, ok := strings.Cut(sk, "/")
	if !ok {
		return quota.ScopeKey{}, fmt.Errorf("bad scope key %q", sk)
	}
	v, err := url.PathUnescape(vol)
	if err != nil {
		return quota.ScopeKey{}, err
	}
	idStr, err := url.PathUnescape(id)
	if err != nil {
		return quota.ScopeKey{}, err
	}
	sid, err := meta.ParseScopeID(idStr)
	if err != nil {
		return quota.ScopeKey{}, err
	}
	return quota.ScopeKey{Volume: v, ID: sid}, nil
}

func inoKey(k quota.InodeKey) string {
	return strconv.FormatUint(k.Dev, 16) + ":" + strconv.FormatUint(k.Ino, 16)
}

func parseInoKey(s string) (quota.InodeKey, error) {
	d, i, ok := strings.Cut(s, ":")
	if !ok {
		return quota.InodeKey{}, fmt.Errorf("bad inode key %q", s)
	}
	dev, err := strconv.ParseUint(d, 16, 64)
	if err != nil {
		return quota.InodeKey{}, err
	}
	ino, err := strconv.ParseUint(i, 16, 64)
	if err != nil {
		return quota.InodeKey{}, err
	}
	return quota.InodeKey{Dev: dev, Ino: ino}, nil
}

type keys struct{ p string }

func (k keys) scope(sk string) string           { return k.p + "s/" + sk + "/" }
func (k keys) record(sk string) string          { return k.scope(sk) + "r" }
func (k keys) folders(sk string) string         { return k.scope(sk) + "f/" }
func (k keys) folder(sk, folder string) string  { return k.folders(sk) + url.PathEscape(folder) }
func (k keys) holds(sk string) string           { return k.scope(sk) + "h/" }
func (k keys) holdsIn(sk, folder string) string { return k.holds(sk) + url.PathEscape(folder) + "/" }
func (k keys) hold(sk, folder string, ino quota.InodeKey) string {
	return k.holdsIn(sk, folder) + inoKey(ino)
}
func (k keys) tombs(sk string) string { return k.scope(sk) + "z/" }
func (k keys) tomb(sk, folder string, ino quota.InodeKey) string {
	return k.tombs(sk) + url.PathEscape(folder) + "/" + inoKey(ino)
}
func (k keys) isTomb(sk, key string) bool      { return strings.HasPrefix(key, k.tombs(sk)) }
func (k keys) nodes() string                   { return k.p + "n/" }
func (k keys) node(n string) string            { return k.nodes() + url.PathEscape(n) }
func (k keys) members(n string) string         { return k.p + "m/" + url.PathEscape(n) + "/" }
func (k keys) member(n, sk string) string      { return k.members(n) + sk }
func (k keys) takeovers(n string) string       { return k.p + "t/" + url.PathEscape(n) + "/" }
func (k keys) takeoversIn(n, sk string) string { return k.takeovers(n) + sk + "/" }
func (k keys) claim(n string) string           { return k.p + "c/" + url.PathEscape(n) }
func (k keys) checks() string                  { return k.p + "r/" }
func (k keys) check(sk string) string          { return k.checks() + sk }
func (k keys) answers(sk string) string        { return k.check(sk) + "/a/" }
func (k keys) answer(sk, node string) string   { return k.answers(sk) + url.PathEscape(node) }
func (k keys) nodeOfMember(key string) string  { return strings.TrimPrefix(key, k.p+"m/") }
func (k keys) folderOf(sk, key string) string {
	return unescape(strings.TrimPrefix(key, k.folders(sk)))
}
func (k keys) nodeOf(key string) string { return unescape(strings.TrimPrefix(key, k.nodes())) }
func (k keys) answerNode(sk, key string) string {
	return unescape(strings.TrimPrefix(key, k.answers(sk)))
}
func (k keys) isRecord(sk, key string) bool        { return key == k.record(sk) }
func (k keys) isFolder(sk, key string) bool        { return strings.HasPrefix(key, k.folders(sk)) }
func (k keys) isHold(sk, key string) bool          { return strings.HasPrefix(key, k.holds(sk)) }
func (k keys) memberScope(node, key string) string { return strings.TrimPrefix(key, k.members(node)) }

// holdOf parses a hold key into its folder and inode.
func (k keys) holdOf(sk, key string) (string, quota.InodeKey, error) {
	rest := strings.TrimPrefix(key, k.holds(sk))
	f, i, ok := strings.Cut(rest, "/")
	if !ok {
		return "", quota.InodeKey{}, fmt.Errorf("bad hold key %q", key)
	}
	ino, err := parseInoKey(i)
	if err != nil {
		return "", quota.InodeKey{}, err
	}
	return unescape(f), ino, nil
}

func unescape(s string) string {
	u, err := url.PathUnescape(s)
	if err != nil {
		return s
	}
	return u
}

// record is a scope's record. Invariant, in every revision where the
// limit was not lowered below it: Settled + sum of Grant <= Limit.
type record struct {
	Limit         int64  `json:"l,omitempty"`
	LimitInodes   int64  `json:"li,omitempty"`
	Settled       int64  `json:"s"`
	SettledInodes int64  `json:"si"`
	Recall        uint64 `json:"rc,omitempty"` // bumped by a node that waits for room
	// Nodes are the shares of nodes in the scope.
	Nodes map[string]*share `json:"n,omitempty"`
	// Dropped folders: their figures are gone, late settlements of them
	// are discarded.
	Dropped map[string]bool `json:"d,omitempty"`
}

// share is one node's part of a scope.
type share struct {
	Grant       int64  `json:"g,omitempty"`
	GrantInodes int64  `json:"gi,omitempty"`
	Seq         uint64 `json:"q,omitempty"` // last settlement applied
	// Want: room the node waits for beyond its grant, until WantUntil
	// (unix ms); others give their idle room back.
	Want       int64  `json:"w,omitempty"`
	WantInodes int64  `json:"wi,omitempty"`
	WantUntil  int64  `json:"wu,omitempty"`
	Answered   uint64 `json:"a,omitempty"` // last Recall the node answered
}

func (r *record) clone() *record {
	c := *r
	c.Nodes = make(map[string]*share, len(r.Nodes))
	for n, s := range r.Nodes {
		x := *s
		c.Nodes[n] = &x
	}
	if r.Dropped != nil {
		c.Dropped = make(map[string]bool, len(r.Dropped))
		for f, v := range r.Dropped {
			c.Dropped[f] = v
		}
	}
	return &c
}

func (r *record) granted() (b, n int64) {
	for _, s := range r.Nodes {
		b += s.Grant
		n += s.GrantInodes
	}
	return
}

// pool is what may still be granted: limit - settled - grants (0 when
// the scope has no limit of that kind).
func (r *record) pool() (b, n int64) {
	gb, gn := r.granted()
	if r.Limit > 0 {
		b = r.Limit - r.Settled - gb
	}
	if r.LimitInodes > 0 {
		n = r.LimitInodes - r.SettledInodes - gn
	}
	return
}

// figure is a folder's settled figure.
type figure struct {
	Bytes  int64 `json:"b"`
	Inodes int64 `json:"i"`
}

// holdRec is the record of one inode's registered write holds. Base is
// the size the first registration observed; each entry's C is what that
// node's settlements applied to the scope's figure for the inode since,
// and Held what they withheld (shrinks while another node held the inode
// too). When the last open entry of a contested record closes, the
// inode's figure is set to what storage holds:
// correction = size - (Base + sum of C).
type holdRec struct {
	Base      int64                 `json:"b"`
	Contested bool                  `json:"x,omitempty"`
	Hint      string                `json:"p,omitempty"`
	E         map[string]*holdEntry `json:"e"`
}

type holdEntry struct {
	View int64 `json:"v"`           // the charge the node accounts for the inode (as last settled)
	C    int64 `json:"c"`           // applied to the figure since registration
	Held int64 `json:"h,omitempty"` // withheld credits
	Open bool  `json:"o,omitempty"` // the node still holds the inode
}

func (h *holdRec) clone() *holdRec {
	c := *h
	c.E = make(map[string]*holdEntry, len(h.E))
	for n, e := range h.E {
		x := *e
		c.E[n] = &x
	}
	return &c
}

func (h *holdRec) openOthers(me string) bool {
	for n, e := range h.E {
		if n != me && e.Open {
			return true
		}
	}
	return false
}

func (h *holdRec) sumC() int64 {
	var s int64
	for _, e := range h.E {
		s += e.C
	}
	return s
}

// tombRec marks an inode whose figure a resolution or a takeover set from
// storage when the file was gone: a removal credit settled later for it
// was already counted (its bytes are not applied again). Tombstones go
// after tombLife, or when the inode number is registered again.
type tombRec struct {
	At int64 `json:"at"` // unix ms
}

const tombLife = 5 * time.Minute

// nodeRec is a node's liveness record.
type nodeRec struct {
	Host  string `json:"host,omitempty"`
	Lease int64  `json:"lease"`
	Start int64  `json:"start"`
}

// takeover is what a survivor settled for a dead node in one scope: the
// node's last settlement and the holds it closed with their views.
type takeover struct {
	By    string         `json:"by"`
	Seq   uint64         `json:"seq"`
	Holds []takeoverHold `json:"h,omitempty"`
}

type takeoverHold struct {
	Folder string `json:"f"`
	Dev    uint64 `json:"d,omitempty"`
	Ino    uint64 `json:"i"`
	View   int64  `json:"v"`
}

// checkRec announces a cluster check of a scope. Phase 1: journal and
// answer; phase 2: the walk is over, settle and answer again.
type checkRec struct {
	Epoch uint32 `json:"e"`
	Phase int    `json:"p"`
	By    string `json:"by"`
}

// answer is a node's answer to a check: the phase it reached and the
// inodes it changed since it began journaling.
type answer struct {
	Epoch    uint32         `json:"e"`
	Phase    int            `json:"p"`
	Journal  []journalEntry `json:"j,omitempty"`
	Overflow []string       `json:"o,omitempty"`
}

type journalEntry struct {
	Folder string `json:"f"`
	Dev    uint64 `json:"d,omitempty"`
	Ino    uint64 `json:"i"`
	Bytes  int64  `json:"b"`
	Inodes int64  `json:"n"`
}

func decode[T any](v []byte) (*T, error) {
	x := new(T)
	if err := json.Unmarshal(v, x); err != nil {
		return nil, err
	}
	return x, nil
}

func encode(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // plain structs: cannot fail
	}
	return string(b)
}
