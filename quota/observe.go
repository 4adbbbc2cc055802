package quota

import "time"

// CommitObserver receives the duration of every transaction the commit
// loop wrote to the store, and how many inode records it carried (see
// "The commit loop" in flush.go). It runs on the commit loop's goroutine:
// it must be cheap and must not block or call the Manager.
type CommitObserver func(d time.Duration, records int)

// SetCommitObserver makes fn observe the ledger's commits from now on
// (nil stops it). The daemon's metrics (package internal/metrics) use it;
// the ledger itself does not depend on them.
func (m *Manager) SetCommitObserver(fn CommitObserver) {
	if fn == nil {
		m.commitObs.Store(nil)
		return
	}
	m.commitObs.Store(&fn)
}

func (m *Manager) observeCommit(d time.Duration, records int) {
	if p := m.commitObs.Load(); p != nil {
		(*p)(d, records)
	}
}
