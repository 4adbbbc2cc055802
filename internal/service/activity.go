package service

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Activities: the long operations running now (quota checks and purges)
// and how far each has got, for the daemon's metrics (package
// internal/metrics reads Activities at scrape time). The operations
// publish their progress with two atomic stores per progress report; a
// reader copies the registry under its short lock. Nothing here changes
// what the operations do.

// Activity kinds.
const (
	ActivityCheck = "check" // a quota check (CheckQuota)
	ActivityPurge = "purge" // removing a purged folder's tree
)

// Activity is a snapshot of one running long operation.
type Activity struct {
	Kind    string // ActivityCheck or ActivityPurge
	Volume  string
	Scope   string // the quota scope, "user:<uuid>" or "project:<uuid>"
	Folder  string // the folder id (purges; a check's current folder)
	Entries int64  // objects walked (check) or removed (purge) so far
	Bytes   int64  // bytes walked so far (check)
	Started time.Time
}

// activities is the registry; its zero value is ready.
type activities struct {
	mu   sync.Mutex
	next uint64
	ops  map[uint64]*activity
}

type activity struct {
	Activity // fixed fields; Entries and Bytes unused
	folder   atomic.Pointer[string]
	entries  atomic.Int64
	bytes    atomic.Int64
}

func (s *Service) acts() *activities { return &s.act }

// startActivity registers a running operation; the caller ends it with
// endActivity.
func (s *Service) startActivity(kind, vol, scope, folder string) (*activity, uint64) {
	r := s.acts()
	a := &activity{Activity: Activity{Kind: kind, Volume: vol, Scope: scope, Started: time.Now()}}
	a.setFolder(folder)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ops == nil {
		r.ops = map[uint64]*activity{}
	}
	r.next++
	r.ops[r.next] = a
	return a, r.next
}

func (s *Service) endActivity(id uint64) {
	r := s.acts()
	r.mu.Lock()
	delete(r.ops, id)
	r.mu.Unlock()
}

func (a *activity) setFolder(id string) { a.folder.Store(&id) }

// progress publishes how far the operation has got.
func (a *activity) progress(entries, bytes int64) {
	a.entries.Store(entries)
	a.bytes.Store(bytes)
}

// Activities returns the quota checks and purges running now, oldest
// first.
func (s *Service) Activities() []Activity {
	r := s.acts()
	r.mu.Lock()
	out := make([]Activity, 0, len(r.ops))
	for _, a := range r.ops {
		x := a.Activity
		if f := a.folder.Load(); f != nil {
			x.Folder = *f
		}
		x.Entries, x.Bytes = a.entries.Load(), a.bytes.Load()
		out = append(out, x)
	}
	r.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Started.Before(out[j].Started) })
	return out
}
