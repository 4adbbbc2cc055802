// Copyright 2026 the Go-FUSE Authors. All rights reserved.
// Use of this source code is governed by a BSD-style
// license that can be found in the LICENSE file.

package fs

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/hanwen/go-fuse/v2/posixtest"
)

// requireIoUring skips the test unless the kernel lets FUSE servers
// use io_uring (fuse module parameter enable_uring).
func requireIoUring(t *testing.T) {
	b, err := os.ReadFile("/sys/module/fuse/parameters/enable_uring")
	if err != nil {
		t.Skipf("FUSE over io_uring not available: %v", err)
	}
	if strings.TrimSpace(string(b)) != "Y" {
		t.Skip("FUSE over io_uring disabled (/sys/module/fuse/parameters/enable_uring is not Y)")
	}
}

// checkRingServed fails the test if no request came through the rings,
// which would mean the kernel silently kept using /dev/fuse reads.
func checkRingServed(t *testing.T, tc *testCase, before uint64) {
	t.Helper()
	if got := tc.server.IoUringRequests(); got <= before {
		t.Errorf("no requests served through io_uring (count %d, was %d)", got, before)
	}
}

func TestIoUringPosix(t *testing.T) {
	noisy := map[string]bool{
		"ParallelFileOpen": true,
		"ReadDir":          true,
		"OpenSymlinkRace":  true,
	}
	for nm, fn := range posixtest.All {
		t.Run(nm, func(t *testing.T) {
			tc := newTestCase(t, &testOptions{
				suppressDebug: noisy[nm],
				attrCache:     true,
				entryCache:    true,
				enableLocks:   true,
				ioUring:       true,
			})
			before := tc.server.IoUringRequests()
			fn(t, tc.mntDir)
			checkRingServed(t, tc, before)
		})
	}
}

// TestIoUringData moves data in both directions through the ring in
// sizes around the payload buffer, and lists a directory with
// READDIRPLUS.
func TestIoUringData(t *testing.T) {
	tc := newTestCase(t, &testOptions{ioUring: true, suppressDebug: true})
	before := tc.server.IoUringRequests()

	for _, size := range []int{0, 1, 4095, 4096, 65537, 128 << 10, 1<<20 + 3} {
		data := bytes.Repeat([]byte{byte(size), 'x', 'y'}, size/3+1)[:size]
		fn := filepath.Join(tc.mntDir, "file")
		if err := os.WriteFile(fn, data, 0644); err != nil {
			t.Fatalf("WriteFile(%d): %v", size, err)
		}
		orig, err := os.ReadFile(filepath.Join(tc.origDir, "file"))
		if err != nil || !bytes.Equal(orig, data) {
			t.Fatalf("size %d: backing file has %d bytes (err %v), want the written ones", size, len(orig), err)
		}
		got, err := os.ReadFile(fn)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("size %d: read back %d bytes (err %v), want the written ones", size, len(got), err)
		}
	}

	for i := 0; i < 200; i++ {
		tc.writeOrig(strings.Repeat("n", 1+i%100)+string(rune('a'+i%26))+string(rune('0'+i/26)), "x", 0644)
	}
	ents, err := os.ReadDir(tc.mntDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 201 {
		t.Errorf("got %d entries, want 201", len(ents))
	}

	if err := syscall.Setxattr(filepath.Join(tc.mntDir, "file"), "user.k", []byte("value"), 0); err == nil {
		buf := make([]byte, 64)
		n, err := syscall.Getxattr(filepath.Join(tc.mntDir, "file"), "user.k", buf)
		if err != nil || string(buf[:n]) != "value" {
			t.Errorf("Getxattr: %q, %v", buf[:n], err)
		}
	}
	checkRingServed(t, tc, before)
}

// blockingOpenRoot has one file whose Open blocks until the request is
// interrupted.
type blockingOpenRoot struct {
	Inode
	child blockingOpen
}

type blockingOpen struct {
	Inode
	entered     chan struct{}
	interrupted chan struct{}
}

func (r *blockingOpenRoot) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*Inode, syscall.Errno) {
	if name != "file" {
		return nil, syscall.ENOENT
	}
	return r.Inode.NewInode(ctx, &r.child, StableAttr{Ino: 2, Gen: 1}), OK
}

func (o *blockingOpen) Open(ctx context.Context, flags uint32) (FileHandle, uint32, syscall.Errno) {
	close(o.entered)
	select {
	case <-time.After(10 * time.Second):
		return nil, 0, syscall.EIO
	case <-ctx.Done():
		close(o.interrupted)
		return nil, 0, syscall.EINTR
	}
}

// TestIoUringInterrupt: a request served from a ring entry is
// interrupted through FUSE_INTERRUPT, which arrives on /dev/fuse.
func TestIoUringInterrupt(t *testing.T) {
	requireIoUring(t)
	root := &blockingOpenRoot{child: blockingOpen{entered: make(chan struct{}), interrupted: make(chan struct{})}}
	sec := time.Second
	opts := &Options{EntryTimeout: &sec, AttrTimeout: &sec}
	opts.EnableIoUring = true
	mntDir, server := testMount(t, root, opts)
	if err := server.IoUringError(); err != nil {
		t.Fatalf("io_uring not in use: %v", err)
	}
	before := server.IoUringRequests()

	cmd := exec.Command("cat", mntDir+"/file")
	if err := cmd.Start(); err != nil {
		t.Fatalf("run %v: %v", cmd, err)
	}
	select {
	case <-root.child.entered:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatal("OPEN did not reach the file system")
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Errorf("Kill: %v", err)
	}
	cmd.Wait()
	select {
	case <-root.child.interrupted:
	case <-time.After(5 * time.Second):
		t.Error("OPEN was not interrupted")
	}
	if server.IoUringRequests() == before {
		t.Error("OPEN did not come through io_uring")
	}
}
