package main

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/internal/config"
	"github.com/vfolder/vfolder/internal/service"
	"github.com/vfolder/vfolder/meta"
)

// quotaDaemon opens the store and the ledger of a state directory and a
// service over them, as runDaemon does (without FUSE and the API).
func quotaDaemon(t *testing.T, state, vol string) (*service.Service, func()) {
	t.Helper()
	cfg := &config.Config{StateDir: state, Volumes: map[string]config.Volume{"local": {Path: vol}}}
	store, err := meta.OpenBadger(filepath.Join(state, "meta"), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ledger, _, err := openLedger(store, store, cfg, nil, &atomic.Pointer[service.Service]{}, zerolog.Nop())
	if err != nil {
		store.Close()
		t.Fatal(err)
	}
	svc := service.New(store, service.Options{StorageUID: os.Geteuid(), StorageGID: os.Getegid(), AutoCreateScopes: true, Quota: ledger, Log: zerolog.Nop()})
	ctx := context.Background()
	if err := svc.AttachVolume(ctx, meta.Volume{Name: "local", Path: vol}); err != nil {
		t.Fatal(err)
	}
	if err := svc.StartQuota(ctx); err != nil {
		t.Fatal(err)
	}
	closed := false
	stop := func() {
		if closed {
			return
		}
		closed = true
		svc.Close()
		if err := ledger.Close(); err != nil {
			t.Errorf("ledger Close: %v", err)
		}
		if err := store.Close(); err != nil {
			t.Errorf("store Close: %v", err)
		}
	}
	t.Cleanup(stop)
	return svc, stop
}

func waitGone(t *testing.T, p string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Lstat(p); os.IsNotExist(err) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is still there after 20s", p)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestQuotaRecoveryMarker: an unclean start records that a check is owed
// and the finished check removes the record; a start that finds the
// record checks again even when the last stop was clean.
func TestQuotaRecoveryMarker(t *testing.T) {
	state, vol := t.TempDir(), t.TempDir()
	pending := filepath.Join(state, quotaCheckPending)
	svc, stop := quotaDaemon(t, state, vol)
	owner := meta.ScopeID{Kind: meta.KindUser, UUID: "2b1a7c4e5d3f4a8e9c0b1f2e3d4c5b6a"}
	f, err := svc.CreateFolder(context.Background(), api.CreateFolderRequest{Name: "a", Volume: "local", Owner: owner})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.Path, "x"), make([]byte, 777), 0o644); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(f.Path)
	if err != nil {
		t.Fatal(err)
	}
	root := st.Size() // the folder root is charged too, from its first check

	// Clean, nothing owed: no check, no marker.
	startQuotaRecovery(svc, false, state, zerolog.Nop())
	if _, err := os.Lstat(pending); err == nil {
		t.Fatal("a clean start recorded a pending check")
	}
	if sc, _ := svc.QuotaScope(context.Background(), "local", owner); sc.UsedBytes != 0 || sc.Checking {
		t.Fatalf("a clean start checked: %+v", sc)
	}

	// Unclean: the check runs and clears the marker.
	startQuotaRecovery(svc, true, state, zerolog.Nop())
	waitGone(t, pending)
	if sc, _ := svc.QuotaScope(context.Background(), "local", owner); sc.UsedBytes != 777+root || sc.Checking {
		t.Errorf("after the recovery check: %+v; want %d bytes", sc, 777+root)
	}
	stop()

	// A marker left by a run stopped before its check ended: checked again.
	if err := os.WriteFile(filepath.Join(f.Path, "y"), make([]byte, 23), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeSynced(pending, []byte("owed\n")); err != nil {
		t.Fatal(err)
	}
	svc, _ = quotaDaemon(t, state, vol)
	startQuotaRecovery(svc, false, state, zerolog.Nop())
	waitGone(t, pending)
	if sc, _ := svc.QuotaScope(context.Background(), "local", owner); sc.UsedBytes != 800+root {
		t.Errorf("after the owed check: %+v; want %d bytes", sc, 800+root)
	}
}
