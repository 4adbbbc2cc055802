package service

import (
	"testing"

	"github.com/rs/zerolog"

	"github.com/vfolder/vfolder/meta"
)

func TestActivities(t *testing.T) {
	s := New(meta.NewMemory(), Options{Log: zerolog.Nop()})
	defer s.Close()
	if got := s.Activities(); len(got) != 0 {
		t.Fatalf("activities of a new service: %+v", got)
	}
	c, cid := s.startActivity(ActivityCheck, "local", "user:a", "")
	p, pid := s.startActivity(ActivityPurge, "local", "user:b", "f1")
	c.setFolder("f2")
	c.progress(10, 4096)
	p.progress(7, 0)
	got := s.Activities()
	if len(got) != 2 {
		t.Fatalf("activities: %+v", got)
	}
	if a := got[0]; a.Kind != ActivityCheck || a.Volume != "local" || a.Scope != "user:a" || a.Folder != "f2" || a.Entries != 10 || a.Bytes != 4096 {
		t.Errorf("check: %+v", a)
	}
	if a := got[1]; a.Kind != ActivityPurge || a.Folder != "f1" || a.Entries != 7 {
		t.Errorf("purge: %+v", a)
	}
	s.endActivity(cid)
	if got := s.Activities(); len(got) != 1 || got[0].Kind != ActivityPurge {
		t.Errorf("after the check ended: %+v", got)
	}
	s.endActivity(pid)
	if got := s.Activities(); len(got) != 0 {
		t.Errorf("after both ended: %+v", got)
	}
}
