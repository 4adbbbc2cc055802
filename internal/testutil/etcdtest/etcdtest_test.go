package etcdtest

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestServerLifecycle puts a key, restarts the server on the same data
// directory, and reads it back; a paused server does not answer within a
// short deadline and answers again once resumed.
func TestServerLifecycle(t *testing.T) {
	s := Start(t)
	cli, err := clientv3.New(clientv3.Config{Endpoints: s.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "k", "v1"); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	if s.Running() {
		t.Fatal("still running after Stop")
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v1" {
		t.Fatalf("after restart: %v", resp.Kvs)
	}

	if err := s.Pause(); err != nil {
		t.Fatal(err)
	}
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = cli.Put(short, "k", "v2")
	cancelShort()
	if err == nil {
		t.Fatal("a paused server answered a put")
	}
	if err := s.Resume(); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "k", "v3"); err != nil {
		t.Fatalf("after resume: %v", err)
	}
	resp, err = cli.Get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if got := string(resp.Kvs[0].Value); got != "v3" {
		t.Fatalf("value %q; want v3", got)
	}
}
