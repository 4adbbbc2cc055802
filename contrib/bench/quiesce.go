package main

// Keeping measurements apart: a configuration's asynchronous work must
// not land in the next one's measurement, and a page cache hit run must
// really hit the cache.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// fusectlDir is where the kernel shows its FUSE connections (fusectl).
const fusectlDir = "/sys/fs/fuse/connections"

// quiesceTimeout bounds the wait for in-flight FUSE requests.
const quiesceTimeout = 2 * time.Minute

// quiescer is the state of quiesce: whether the connections can be seen.
type quiescer struct {
	tried bool
	blind bool // fusectl is not available; quiesce only syncs
}

// fuseMinors lists the FUSE connections of the recorded mounts.
func (m *mounts) fuseMinors() []uint32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []uint32
	for _, t := range m.list {
		if t.minor != 0 {
			out = append(out, t.minor)
		}
	}
	return append(out, m.conns...)
}

// quiesce writes dirty data back and then waits until no request of any
// FUSE connection of the harness is in flight. The kernel sends RELEASE
// asynchronously when the last descriptor of a file is closed, so a
// server may still be working for a process that has exited: mergerfs
// with dropcacheonclose, for one, calls posix_fadvise(POSIX_FADV_DONTNEED)
// on the backing file there, which drops the page cache of the file every
// configuration shares, and after a random write run that call takes
// hundreds of milliseconds or more (it first starts writeback of every
// dirty page). It returns how long it waited for requests.
func (e *env) quiesce(ctx context.Context) (time.Duration, error) {
	unix.Sync()
	minors := e.mounts.fuseMinors()
	if len(minors) == 0 || !e.fusectl(minors[0]) {
		return 0, nil
	}
	start := time.Now()
	for {
		busy := int64(0)
		for _, mi := range minors {
			n, err := fuseWaiting(mi)
			if err != nil {
				if errors.Is(err, os.ErrNotExist) {
					continue // unmounted meanwhile
				}
				return time.Since(start), err
			}
			busy += n
		}
		if busy == 0 {
			return time.Since(start), nil
		}
		if time.Since(start) > quiesceTimeout {
			return time.Since(start), fmt.Errorf("FUSE requests still in flight after %v", quiesceTimeout)
		}
		select {
		case <-ctx.Done():
			return time.Since(start), ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// fusectl makes sure the connection directory of minor can be read,
// mounting fusectl in this (private) mount namespace if needed.
func (e *env) fusectl(minor uint32) bool {
	if e.fuseq.tried {
		return !e.fuseq.blind
	}
	e.fuseq.tried = true
	p := filepath.Join(fusectlDir, strconv.FormatUint(uint64(minor), 10))
	if _, err := os.Stat(p); err == nil {
		return true
	}
	if err := unix.Mount("fusectl", fusectlDir, "fusectl", 0, ""); err != nil {
		e.fuseq.blind = true
		e.notef("cannot mount fusectl on %s (%v): measurements do not wait for the previous configuration's FUSE requests", fusectlDir, err)
		return false
	}
	e.mounts.add("fusectl", fusectlDir, 0, func() error { return unmountRetry(fusectlDir) })
	if _, err := os.Stat(p); err != nil {
		e.fuseq.blind = true
		e.notef("fusectl shows no connection %d (%v): measurements do not wait for the previous configuration's FUSE requests", minor, err)
		return false
	}
	return true
}

// fuseWaiting is the number of requests of a FUSE connection that are
// queued or being processed by its server.
func fuseWaiting(minor uint32) (int64, error) {
	b, err := os.ReadFile(filepath.Join(fusectlDir, strconv.FormatUint(uint64(minor), 10), "waiting"))
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

// cacheMaps maps files read-only, without touching their pages, to ask
// the kernel which pages are in the page cache (mincore(2)). A page read
// through a FUSE mount may be cached twice, by the client's inode and by
// the backing file's: fio reads it without going to storage as long as
// either holds it.
type cacheMaps struct {
	maps  [][]byte
	vecs  [][]byte
	pages int
}

// mapForCache maps the files (which must have the same size; an
// unmappable one, e.g. a FUSE file in direct I/O mode, is left out when
// another one maps).
func mapForCache(paths ...string) (*cacheMaps, error) {
	c := &cacheMaps{}
	var errs []error
	size := int64(-1)
	for _, p := range paths {
		m, n, err := mapFile(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if size >= 0 && n != size {
			unix.Munmap(m)
			c.close()
			return nil, fmt.Errorf("%s has %d bytes, not %d", p, n, size)
		}
		size = n
		c.maps = append(c.maps, m)
	}
	if len(c.maps) == 0 {
		return nil, errors.Join(errs...)
	}
	ps := int64(os.Getpagesize())
	c.pages = int((size + ps - 1) / ps)
	for range c.maps {
		c.vecs = append(c.vecs, make([]byte, c.pages))
	}
	return c, nil
}

func mapFile(p string) ([]byte, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	if st.Size() == 0 {
		return nil, 0, fmt.Errorf("%s is empty", p)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, 0, fmt.Errorf("mmap %s: %w", p, err)
	}
	return m, st.Size(), nil
}

// cached counts the pages that at least one of the files has in the page
// cache.
func (c *cacheMaps) cached() (int, error) {
	for i, m := range c.maps {
		if err := mincore(m, c.vecs[i]); err != nil {
			return 0, fmt.Errorf("mincore: %w", err)
		}
	}
	n := 0
	for pg := 0; pg < c.pages; pg++ {
		for _, v := range c.vecs {
			if v[pg]&1 != 0 {
				n++
				break
			}
		}
	}
	return n, nil
}

// mincore fills vec with a byte per page of the mapping m, bit 0 set for
// a page in the page cache.
func mincore(m, vec []byte) error {
	_, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(unsafe.SliceData(m))), uintptr(len(m)), uintptr(unsafe.Pointer(unsafe.SliceData(vec))))
	if errno != 0 {
		return errno
	}
	return nil
}

func (c *cacheMaps) close() {
	for _, m := range c.maps {
		unix.Munmap(m)
	}
	c.maps = nil
}

// hitMissAllowance is how many of a file's pages may be out of the page
// cache during a page cache hit run: 1%. Each one that fio reads costs a
// storage round trip, so even that many cost a fast configuration a few
// percent.
func hitMissAllowance(pages int) int {
	return pages / 100
}

// hitAttempts is how often a hit run is tried before it counts as failed.
const hitAttempts = 3

// startCPUProfile starts a CPU profile of this process written to path;
// the returned function stops it and closes the file.
func startCPUProfile(path string) (func() error, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	return func() error {
		pprof.StopCPUProfile()
		return f.Close()
	}, nil
}
