package meta

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

// TestMemoryVerifyDetects damages the in-memory indexes directly and makes
// sure Verify (which the conformance suite relies on) notices each kind.
func TestMemoryVerifyDetects(t *testing.T) {
	owner := ScopeID{Kind: KindUser, UUID: fmt.Sprintf("%032x", 1)}
	other := fmt.Sprintf("%032x", 2)
	project := fmt.Sprintf("%032x", 3)
	f := Folder{ID: NewFolderID(), Name: "x", Owner: owner, Volume: "v", UsageMode: ModeGeneral, Permission: PermRW, Status: StatusReady}
	sess := Session{ID: "s", User: owner.UUID, Mounts: []SessionMount{{FolderID: f.ID, Name: "x", Target: "/x", Mode: PermRO}}}
	damage := map[string]func(m *Memory){
		"name entry missing":    func(m *Memory) { delete(m.names, ownerName{owner, "x"}) },
		"name entry extra":      func(m *Memory) { m.names[ownerName{owner, "y"}] = f.ID },
		"count wrong":           func(m *Memory) { m.counts[owner] = 2 },
		"count of nobody":       func(m *Memory) { m.counts[ScopeID{Kind: KindProject, UUID: other}] = 1 },
		"member index missing":  func(m *Memory) { delete(m.memberOf, owner.UUID) },
		"member index extra":    func(m *Memory) { m.memberOf[other] = map[string]bool{project: true} },
		"member index empty":    func(m *Memory) { m.memberOf[other] = map[string]bool{} },
		"member stored wrongly": func(m *Memory) { m.members[project][owner.UUID] = Membership{Project: project, User: other} },
		"member invalid": func(m *Memory) {
			m.members[project][owner.UUID] = Membership{Project: project, User: owner.UUID, Permission: "x"}
		},
		"session index missing": func(m *Memory) { delete(m.folderSessions, f.ID) },
		"session index extra":   func(m *Memory) { m.folderSessions[other] = map[string]bool{"s": true} },
		"session index ghost":   func(m *Memory) { m.folderSessions[f.ID]["ghost"] = true },
		"session index empty":   func(m *Memory) { m.folderSessions[other] = map[string]bool{} },
		"session stored wrongly": func(m *Memory) {
			s := m.sessions["s"]
			s.ID = "t"
			m.sessions["s"] = s
		},
		"session invalid": func(m *Memory) {
			s := m.sessions["s"]
			s.User = "nobody"
			m.sessions["s"] = s
		},
	}
	for what, fn := range damage {
		t.Run(what, func(t *testing.T) {
			ctx := context.Background()
			m := NewMemory()
			if err := m.CreateFolder(ctx, f, 0); err != nil {
				t.Fatal(err)
			}
			if err := m.SetMembership(ctx, Membership{Project: project, User: owner.UUID}); err != nil {
				t.Fatal(err)
			}
			if err := m.PutSession(ctx, sess); err != nil {
				t.Fatal(err)
			}
			if err := m.Verify(ctx); err != nil {
				t.Fatalf("Verify before damage: %v", err)
			}
			fn(m)
			if err := m.Verify(ctx); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Verify after %s: %v, want ErrCorrupt", what, err)
			}
		})
	}
}
