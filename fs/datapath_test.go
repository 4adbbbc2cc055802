package fs

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"unsafe"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/meta"
	"github.com/vfolder/vfolder/quota"
)

// opCounter counts the FUSE requests go-fuse's debug trace shows, by
// opcode, and remembers the INIT reply.
type opCounter struct {
	mu        sync.Mutex
	ops       map[string]int
	lookups   map[string]int // LOOKUP requests by name
	readBytes int64
	init      string
}

// rxOp matches a request line of go-fuse's trace ("rx 12: READ n9 ...")
// and rxRead the length of a READ ("READ n9 {Fh 1 [0 +131072) ...").
var (
	rxOp   = regexp.MustCompile(`rx \d+: ([A-Z_]+) `)
	rxRead = regexp.MustCompile(`rx \d+: READ n\d+ \{Fh \d+ \[\d+ \+(\d+)\)`)
	// rxLookup matches a LOOKUP and its name ("LOOKUP n1  \"d\"  p42",
	// the quotes escaped in the JSON log line).
	rxLookup = regexp.MustCompile(`rx \d+: LOOKUP n\d+ +\\?"([^"\\]*)\\?"`)
)

func (c *opCounter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, line := range strings.Split(string(p), "\n") {
		if m := rxOp.FindStringSubmatch(line); m != nil {
			c.ops[m[1]]++
		}
		if m := rxLookup.FindStringSubmatch(line); m != nil {
			if c.lookups == nil {
				c.lookups = map[string]int{}
			}
			c.lookups[m[1]]++
		}
		if m := rxRead.FindStringSubmatch(line); m != nil {
			n, _ := strconv.ParseInt(m[1], 10, 64)
			c.readBytes += n
		}
		if strings.Contains(line, "tx 2:") && c.init == "" {
			c.init = line
		}
	}
	return len(p), nil
}

// tracedMount mounts as testMountWith does, with go-fuse's request trace
// counted by the returned opCounter; tune may change the options too.
func tracedMount(t *testing.T, tune func(*Options)) (*FS, string, *opCounter) {
	t.Helper()
	ops := &opCounter{ops: map[string]int{}}
	f, dir := testMountWith(t, func(o *Options) {
		if tune != nil {
			tune(o)
		}
		o.Debug = true
		o.Logger = zerolog.New(ops).Level(zerolog.DebugLevel)
	})
	return f, dir, ops
}

// countLookups is the number of LOOKUP requests of any of names.
func (c *opCounter) countLookups(names ...string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, name := range names {
		n += c.lookups[name]
	}
	return n
}

// bytesRead is the sum of the lengths of the READ requests seen.
func (c *opCounter) bytesRead() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.readBytes
}

func (c *opCounter) count(op string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ops[op]
}

// passthroughNegotiated reports whether the kernel accepted
// CAP_PASSTHROUGH at INIT.
func (c *opCounter) passthroughNegotiated() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Contains(c.init, "PASSTHROUGH")
}

// TestFsDataPath: reads on a ro view are served by the kernel's
// passthrough (the daemon sees no READ request) wherever the kernel
// offers it, while every read and write of an rw view of the same folder
// reaches the daemon, and its writes the quota ledger.
// countingMount is testMount with the quota ledger m and go-fuse's trace
// counted by an opCounter.
func countingMount(t *testing.T, m *quota.Manager) (*FS, string, *opCounter) {
	t.Helper()
	return tracedMount(t, func(o *Options) { o.Quota = m })
}

func TestFsDataPath(t *testing.T) {
	m := testLedger(t)
	f, dir, ops := countingMount(t, m)
	rw := testFolder(t, dir, 1, "rw")
	rw.Mode = meta.PermRW
	ro := rw
	ro.Name, ro.Mode = "ro", meta.PermRO
	for _, s := range []ViewSpec{rw, ro} {
		if err := f.AddView(s); err != nil {
			t.Fatal(err)
		}
	}
	data := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	rwPath := filepath.Join(f.MountPoint(), "sessions", "s1", "rw", "f")
	roPath := filepath.Join(f.MountPoint(), "sessions", "s1", "ro", "f")
	if err := os.WriteFile(rwPath, data, 0o644); err != nil {
		t.Fatal(err)
	}

	// rw: reads reach the daemon.
	before := ops.count("READ")
	if got, err := os.ReadFile(rwPath); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read through the rw view: %d bytes, %v", len(got), err)
	}
	if ops.count("READ") == before {
		t.Errorf("reads of an rw view did not reach the daemon")
	}

	// ro: reads bypass the daemon when the kernel offers passthrough.
	before = ops.count("READ")
	for i := 0; i < 2; i++ {
		if got, err := os.ReadFile(roPath); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("read through the ro view: %d bytes, %v", len(got), err)
		}
	}
	// O_DIRECT opens take the same path.
	fd, err := unix.Open(roPath, unix.O_RDONLY|unix.O_DIRECT, 0)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	if n, err := unix.Pread(fd, buf, 4096); err != nil || n != 4096 || !bytes.Equal(buf, data[4096:8192]) {
		t.Errorf("O_DIRECT read through the ro view: %d %v", n, err)
	}
	// While the ro view's passthrough reader is open, the rw view writes
	// the same backing file: the FUSE inodes are distinct, so nothing
	// conflicts, and the reader sees the new bytes.
	wfd, err := unix.Open(rwPath, unix.O_WRONLY, 0)
	if err != nil {
		t.Fatalf("open for writing through rw while ro reads: %v", err)
	}
	if _, err := unix.Pwrite(wfd, []byte("NEW!"), 4096); err != nil {
		t.Errorf("write through rw: %v", err)
	}
	unix.Close(wfd)
	if n, err := unix.Pread(fd, buf, 4096); err != nil || n != 4096 || string(buf[:4]) != "NEW!" {
		t.Errorf("ro reader after an rw write: %q %v", buf[:4], err)
	}
	unix.Close(fd)
	roReads := ops.count("READ") - before
	if ops.passthroughNegotiated() {
		if roReads != 0 {
			t.Errorf("ro view: the daemon served %d READ requests, want 0 (passthrough)", roReads)
		}
	} else {
		t.Logf("the kernel did not offer passthrough: ro reads served by the daemon (%d READ requests)", roReads)
		if roReads == 0 {
			t.Errorf("no passthrough and no READ request: the reads went nowhere")
		}
	}

	// rw: every write reaches the daemon and the ledger, also while the
	// ro view has the file open for passthrough reads.
	rfd, err := unix.Open(roPath, unix.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(rfd)
	sk := quota.ScopeKey{Volume: rw.VolumeName, ID: rw.Scope}
	beforeW := ops.count("WRITE")
	wf, err := os.OpenFile(rwPath, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 16; i++ {
		if _, err := wf.Write(make([]byte, 64<<10)); err != nil {
			t.Fatal(err)
		}
	}
	if err := wf.Close(); err != nil {
		t.Fatal(err)
	}
	if ops.count("WRITE") == beforeW {
		t.Errorf("writes of an rw view did not reach the daemon")
	}
	waitUsage(t, m, sk, int64(len(data))+16*64<<10+rootBytes(t, dir, rw), 1)
	if n, err := unix.Pread(rfd, buf, int64(len(data))); err != nil || n != 4096 {
		t.Errorf("ro reader past the old end after rw appends: %d %v", n, err)
	}
}

// TestFsReadAhead: the mount's read-ahead window is set at Mount.
func TestFsReadAhead(t *testing.T) {
	for _, tc := range []struct{ opt, want int }{{0, DefaultReadAheadKB}, {4096, 4096}} {
		f, _ := testMountWith(t, func(o *Options) { o.ReadAheadKB = tc.opt })
		p := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(f.dev), unix.Minor(f.dev))
		b, err := os.ReadFile(p)
		if err != nil {
			t.Skipf("no bdi in sysfs: %v", err)
		}
		if got := strings.TrimSpace(string(b)); got != strconv.Itoa(tc.want) {
			t.Errorf("ReadAheadKB %d: %s is %s, want %d", tc.opt, p, got, tc.want)
		}
	}
}

// TestFsNodeSize guards the memory per known file: a node is go-fuse's
// Inode plus 32 bytes, one allocation size class (see node).
func TestFsNodeSize(t *testing.T) {
	inode := unsafe.Sizeof(gofs.Inode{})
	if got := unsafe.Sizeof(node{}); got > inode+32 {
		t.Errorf("node is %d bytes, want at most %d (go-fuse Inode %d + 32)", got, inode+32, inode)
	}
}

// TestFsDirectWrite: a write-only open of an rw view writes straight into
// WRITE requests (FOPEN_DIRECT_IO); a reader that cached the file sees
// the new bytes and the quota ledger counts every byte.
func TestFsDirectWrite(t *testing.T) {
	m := testLedger(t)
	f, dir, ops := countingMount(t, m)
	rw := testFolder(t, dir, 1, "rw")
	rw.Mode = meta.PermRW
	if err := f.AddView(rw); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(f.MountPoint(), "sessions", "s1", "rw", "f")
	data := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got := make([]byte, len(data))
	if _, err := r.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	// Write 4 KiB in the middle through a write-only handle.
	w, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	patch := bytes.Repeat([]byte{'X'}, 4096)
	before := ops.count("WRITE")
	if _, err := w.WriteAt(patch, 8192); err != nil {
		t.Fatal(err)
	}
	if ops.count("WRITE") == before {
		t.Fatalf("a write-only write did not reach the daemon")
	}
	copy(data[8192:], patch)
	if n, err := r.ReadAt(got, 0); n != len(data) || !bytes.Equal(got, data) {
		t.Fatalf("reader after a direct write: %d bytes, %v, equal %v", n, err, bytes.Equal(got[:n], data[:n]))
	}
	// Grow the file: the ledger counts it, the reader sees it.
	if _, err := w.WriteAt(patch, int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	data = append(data, patch...)
	got = make([]byte, len(data))
	if n, err := r.ReadAt(got, 0); n != len(data) || !bytes.Equal(got, data) {
		t.Fatalf("reader after a growing direct write: %d bytes, %v", n, err)
	}
	sk := quota.ScopeKey{Volume: rw.VolumeName, ID: rw.Scope}
	waitUsage(t, m, sk, int64(len(data))+rootBytes(t, dir, rw), 1)
}
