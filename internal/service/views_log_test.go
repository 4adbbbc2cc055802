package service

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"

	"github.com/vfolder/vfolder/meta"
)

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) errorLines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, l := range strings.Split(s.b.String(), "\n") {
		if strings.Contains(l, `"level":"error"`) {
			out = append(out, l)
		}
	}
	return out
}

// TestViewsOfFoldersBeingCreated: a folder still being created (its
// record performing, its directory not made yet) gets no standing view
// when another folder of its owner changes meanwhile, and that is no
// error; it keeps its name taken. A ready folder whose directory is
// missing is a real failure and is logged as one.
func TestViewsOfFoldersBeingCreated(t *testing.T) {
	var logs syncBuffer
	e, fv := newViewEnv(t, func(o *Options) { o.Log = zerolog.New(&logs).Level(zerolog.InfoLevel) })
	ctx := context.Background()
	// A create cut between its record and its directory, as a
	// concurrent request sees it.
	pending := meta.Folder{ID: meta.NewFolderID(), Name: "data", Owner: alice, Volume: "local",
		UsageMode: meta.ModeGeneral, Permission: meta.PermRW, Status: meta.StatusPerforming}
	if err := e.store.CreateFolder(ctx, pending, 0); err != nil {
		t.Fatal(err)
	}
	e.create(t, "other", alice)
	u := "users/" + alice.UUID + "/"
	wantPlaces(t, fv, u+"other rw")
	if lines := logs.errorLines(); len(lines) > 0 {
		t.Errorf("a folder being created was logged as an error:\n%s", strings.Join(lines, "\n"))
	}

	// The same record ready but with no directory: an error.
	if _, err := e.store.UpdateFolder(ctx, pending.ID, func(f *meta.Folder) error {
		f.Status = meta.StatusReady
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	e.create(t, "third", alice)
	wantPlaces(t, fv, u+"other rw", u+"third rw")
	lines := logs.errorLines()
	if len(lines) != 1 || !strings.Contains(lines[0], "cannot add a folder's view") || !strings.Contains(lines[0], pending.ID) {
		t.Errorf("a ready folder without its directory: error lines %q; want one naming it", lines)
	}
}
