package files

import (
	"crypto/rand"
	"encoding/hex"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vfolder/vfolder/api"
)

// Finished jobs are kept this long for polling, and at most maxJobs jobs
// are kept at all (the oldest finished go first).
const (
	jobKeep = time.Hour
	maxJobs = 1024
)

// job is one background removal; its counters are updated by the worker
// and read by pollers.
type job struct {
	user    string // "" for an admin's job
	removed atomic.Int64
	bytes   atomic.Int64

	mu  sync.Mutex
	rec api.FileJob
}

func (j *job) add(entries, bytes int64) {
	j.removed.Add(entries)
	j.bytes.Add(bytes)
}

func (j *job) snapshot() api.FileJob {
	j.mu.Lock()
	defer j.mu.Unlock()
	r := j.rec
	r.Removed, r.Bytes = j.removed.Load(), j.bytes.Load()
	return r
}

func (j *job) finish(err error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	now := time.Now().UTC()
	j.rec.Finished = &now
	j.rec.State = api.JobDone
	if err != nil {
		j.rec.State = api.JobFailed
		j.rec.Error = &api.Error{Code: codeOf(err), Message: err.Error()}
	}
}

// jobs holds the background jobs of this daemon (memory only: a job cut
// by a restart leaves part of its tree, and is run again by the caller).
type jobs struct {
	mu sync.Mutex
	m  map[string]*job
}

func (js *jobs) start(rec api.FileJob, user string) *job {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	rec.ID = hex.EncodeToString(b)
	rec.State = api.JobRunning
	rec.Started = time.Now().UTC()
	j := &job{user: user, rec: rec}
	js.mu.Lock()
	defer js.mu.Unlock()
	if js.m == nil {
		js.m = map[string]*job{}
	}
	js.gcLocked()
	js.m[rec.ID] = j
	return j
}

func (js *jobs) gcLocked() {
	var oldest string
	var oldestAt time.Time
	for id, j := range js.m {
		r := j.snapshot()
		if r.Finished == nil {
			continue
		}
		if time.Since(*r.Finished) > jobKeep {
			delete(js.m, id)
			continue
		}
		if oldest == "" || r.Finished.Before(oldestAt) {
			oldest, oldestAt = id, *r.Finished
		}
	}
	if len(js.m) >= maxJobs && oldest != "" {
		delete(js.m, oldest)
	}
}

func (js *jobs) get(id string) *job {
	js.mu.Lock()
	defer js.mu.Unlock()
	return js.m[id]
}
