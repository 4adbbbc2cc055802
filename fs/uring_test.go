package fs

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/internal/testutil"
	"github.com/vfolder/vfolder/meta"
)

// uringParam is the fuse module parameter that lets FUSE servers use
// io_uring; the kernel reads it when a mount is initialised.
const uringParam = "/sys/module/fuse/parameters/enable_uring"

// testIoUring runs every test mount over io_uring
// (VFOLDER_TEST_IO_URING=1, set up by TestMain).
var testIoUring bool

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	if os.Getenv("VFOLDER_TEST_IO_URING") == "1" {
		restore, err := setUringParam("Y")
		if err != nil {
			fmt.Fprintf(os.Stderr, "VFOLDER_TEST_IO_URING=1: %v\n", err)
			return 1
		}
		defer restore()
		testIoUring = true
	}
	return m.Run()
}

// setUringParam sets the fuse module parameter enable_uring and returns
// a function that restores the old value.
func setUringParam(v string) (restore func(), err error) {
	old, err := os.ReadFile(uringParam)
	if err != nil {
		return nil, fmt.Errorf("FUSE over io_uring not available: %w", err)
	}
	if err := os.WriteFile(uringParam, []byte(v), 0); err != nil {
		return nil, err
	}
	return func() { os.WriteFile(uringParam, bytes.TrimSpace(old), 0) }, nil
}

// uringParamFor sets the parameter for the test, or skips it.
func uringParamFor(t *testing.T, v string) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if testIoUring {
		t.Skip("the suite runs over io_uring; the parameter stays Y")
	}
	restore, err := setUringParam(v)
	if err != nil {
		t.Skip(err)
	}
	t.Cleanup(restore)
}

// TestFsIoUring serves a wd and a ro view over io_uring: WRITE with
// payloads of many sizes, READ replies, READDIRPLUS, xattrs, create,
// rename, unlink; and fails if the requests did not go through the
// rings.
func TestFsIoUring(t *testing.T) {
	uringParamFor(t, "Y")
	m := testLedger(t)
	f, dir := testMountWith(t, func(o *Options) {
		o.Quota = m
		o.Tuning.IoUring = true
	})
	if err := f.server.IoUringError(); err != nil {
		t.Fatalf("io_uring not in use: %v", err)
	}
	rw := testFolder(t, dir, 1, "rw")
	rw.Mode = meta.PermWD
	ro := rw
	ro.Name, ro.Mode = "ro", meta.PermRO
	for _, s := range []ViewSpec{rw, ro} {
		if err := f.AddView(s); err != nil {
			t.Fatal(err)
		}
	}
	before := f.IoUringRequests()
	rwDir := filepath.Join(f.MountPoint(), "sessions", "s1", "rw")
	roDir := filepath.Join(f.MountPoint(), "sessions", "s1", "ro")
	for _, size := range []int{0, 1, 4095, 4096, 65537, 1 << 20, 3<<20 + 5} {
		data := bytes.Repeat([]byte{byte(size), 'a', 'b', 'c', 'd'}, size/5+1)[:size]
		name := fmt.Sprintf("f%d", size)
		if err := os.WriteFile(filepath.Join(rwDir, name), data, 0o644); err != nil {
			t.Fatalf("write %d bytes: %v", size, err)
		}
		for _, d := range []string{rwDir, roDir} {
			got, err := os.ReadFile(filepath.Join(d, name))
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("read %s: %d bytes, %v; want the %d written", filepath.Join(d, name), len(got), err, size)
			}
		}
	}
	// O_DIRECT: every READ goes to the daemon.
	fd, err := unix.Open(filepath.Join(rwDir, "f65537"), unix.O_RDONLY|unix.O_DIRECT, 0)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8192)
	if n, err := unix.Pread(fd, buf, 4096); err != nil || n != 8192 {
		t.Errorf("O_DIRECT pread: %d, %v", n, err)
	}
	unix.Close(fd)

	// Long names, many entries: READDIRPLUS fills whole pages.
	for i := 0; i < 300; i++ {
		if err := os.WriteFile(filepath.Join(rwDir, fmt.Sprintf("%s-%03d", strings.Repeat("n", 1+i%200), i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ents, err := os.ReadDir(rwDir)
	if err != nil || len(ents) != 307 {
		t.Errorf("readdir: %d entries, %v; want 307", len(ents), err)
	}
	if err := unix.Setxattr(filepath.Join(rwDir, "f1"), "user.k", []byte("value"), 0); err == nil {
		n, err := unix.Getxattr(filepath.Join(rwDir, "f1"), "user.k", buf)
		if err != nil || string(buf[:n]) != "value" {
			t.Errorf("getxattr: %q, %v", buf[:n], err)
		}
	}
	if err := os.Rename(filepath.Join(rwDir, "f4095"), filepath.Join(rwDir, "g1")); err != nil {
		t.Error(err)
	}
	if err := os.Remove(filepath.Join(rwDir, "g1")); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat(filepath.Join(rwDir, "g1")); !os.IsNotExist(err) {
		t.Errorf("stat after unlink: %v", err)
	}
	if got := f.IoUringRequests() - before; got < 300 {
		t.Errorf("only %d requests served through io_uring", got)
	}
}

// TestFsIoUringRefused: with the kernel parameter off, a mount that asks
// for io_uring still works, through /dev/fuse, and says why in the log.
func TestFsIoUringRefused(t *testing.T) {
	uringParamFor(t, "N")
	var logBuf testutil.SyncBuffer
	f, dir := testMountWith(t, func(o *Options) {
		o.Tuning.IoUring = true
		o.Logger = zerolog.New(&logBuf)
	})
	if f.server.IoUringError() == nil {
		t.Fatal("io_uring reported in use with enable_uring=N")
	}
	rw := testFolder(t, dir, 1, "rw")
	rw.Mode = meta.PermRW
	if err := f.AddView(rw); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(f.MountPoint(), "sessions", "s1", "rw", "f")
	if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(p); err != nil || string(got) != "x" {
		t.Errorf("read back %q, %v", got, err)
	}
	if n := f.IoUringRequests(); n != 0 {
		t.Errorf("%d requests counted as io_uring", n)
	}
	if !strings.Contains(logBuf.String(), "not in use") {
		t.Errorf("no warning logged: %s", logBuf.String())
	}
}
