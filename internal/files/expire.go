package files

// Expiry of abandoned uploads: an upload nobody wrote to for UploadExpiry
// is dropped (its record, and its staged data through the view, which
// gives its bytes back to the quota). The sweep runs when the API starts
// and then every SweepInterval.

import (
	"errors"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/meta"
)

// Expiry settings.
const (
	UploadExpiry  = 7 * 24 * time.Hour
	SweepInterval = time.Hour
)

// touchRecord marks an upload as active (its record's mtime).
func (a *API) touchRecord(id string) {
	now := time.Now()
	_ = os.Chtimes(a.recordPath(id), now, now)
}

// sweepLoop drops expired uploads until the API closes.
func (a *API) sweepLoop() {
	t := time.NewTicker(SweepInterval)
	defer t.Stop()
	for {
		a.sweep(time.Now())
		select {
		case <-a.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sweep drops every upload whose record is older than UploadExpiry. A
// folder that is gone takes its uploads with it (the record goes); one
// that cannot be opened now (trashed, volume down) is tried again at the
// next sweep.
func (a *API) sweep(now time.Time) {
	ents, err := os.ReadDir(a.recordDir)
	if err != nil {
		return
	}
	for _, e := range ents {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || a.ctx.Err() != nil {
			continue
		}
		info, err := e.Info()
		if err != nil || now.Sub(info.ModTime()) < UploadExpiry {
			continue
		}
		folder, err := parseUploadID(id)
		if err != nil {
			_ = os.Remove(a.recordPath(id))
			continue
		}
		ac, err := a.resolve(a.ctx, caller{admin: true}, folder, meta.ScopeID{})
		if errors.Is(err, meta.ErrNotFound) {
			_ = os.Remove(a.recordPath(id))
			continue
		}
		if err != nil {
			a.log.Debug().Err(err).Str("upload", id).Msg("expired upload: folder not available, trying later")
			continue
		}
		sfd, err := ac.openStaging(false)
		if errors.Is(err, meta.ErrNotFound) {
			_ = os.Remove(a.recordPath(id))
			continue
		}
		if err != nil {
			continue
		}
		u := &tusUpload{a: a, ac: ac, id: id}
		u.removeStaged(sfd)
		unix.Close(sfd)
		a.log.Info().Str("upload", id).Str("folder", folder).Time("last_write", info.ModTime()).Msg("abandoned upload expired: removed")
	}
}
