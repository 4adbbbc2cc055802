package etcdstore_test

import (
	"context"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/vfolder/vfolder/internal/testutil"
	"github.com/vfolder/vfolder/internal/testutil/etcdtest"
	"github.com/vfolder/vfolder/meta"
	"github.com/vfolder/vfolder/meta/etcdstore"
	"github.com/vfolder/vfolder/meta/metatest"
)

// captureStderr runs fn with file descriptor 2 going to a pipe and
// returns what was written to it.
func captureStderr(t *testing.T, fn func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	saved, err := syscall.Dup(2)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Dup3(int(w.Fd()), 2, 0); err != nil {
		t.Fatal(err)
	}
	done := make(chan string)
	go func() {
		b, _ := io.ReadAll(r)
		done <- string(b)
	}()
	func() {
		defer func() {
			syscall.Dup3(saved, 2, 0)
			syscall.Close(saved)
			w.Close()
		}()
		fn()
	}()
	return <-done
}

// TestClientLogsQuiet: while etcd is away the etcd client retries and
// logs about it; none of that reaches stderr, and at debug level it goes
// to the store's zerolog logger instead.
func TestClientLogsQuiet(t *testing.T) {
	srv := etcdtest.Start(t)
	var logs testutil.SyncBuffer
	outage := func(log zerolog.Logger) {
		s, err := etcdstore.Open(context.Background(), etcdstore.Options{
			Endpoints: srv.Endpoints(), Prefix: newPrefix(), RequestTimeout: 500 * time.Millisecond, Log: log,
		})
		if err != nil {
			t.Error(err)
			return
		}
		defer s.Close()
		srv.Kill()
		defer srv.Restart()
		for range 3 {
			_, _ = s.ListVolumes(context.Background())
			_ = s.SetPolicy(context.Background(), metatest.User(1), meta.Policy{MaxFolderCount: 1})
		}
	}
	got := captureStderr(t, func() { outage(zerolog.New(io.Discard).Level(zerolog.WarnLevel)) })
	if got != "" {
		t.Errorf("the store wrote to stderr during an outage:\n%s", got)
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	got = captureStderr(t, func() { outage(zerolog.New(&logs).Level(zerolog.DebugLevel)) })
	if got != "" {
		t.Errorf("the store wrote to stderr during an outage at debug level:\n%s", got)
	}
	if !strings.Contains(logs.String(), `"sub":"etcd-client"`) {
		t.Errorf("at debug level the etcd client's lines do not reach the store's logger; it logged:\n%s", logs.String())
	}
}
