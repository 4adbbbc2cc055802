package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// workerResult is what a worker prints: the elapsed time of the timed
// part, and how many operations and bytes it did.
type workerResult struct {
	Seconds float64 `json:"seconds"`
	Ops     int64   `json:"ops"`
	Bytes   int64   `json:"bytes"`
}

// Worker operations. Arguments are positional strings.
const (
	opSeqWrite = "seqwrite" // path size mode(new|new-fsync|overwrite)
	opRead     = "read"     // path passes: the last pass is timed
	opCreate   = "create"   // dir n filesize
	opStat     = "stat"     // dir n
	opUnlink   = "unlink"   // dir n
	opLstat    = "lstat"    // root listfile passes
	opNegStat  = "negstat"  // dir n passes
	opHold     = "hold"     // path backing ms: read path whole, print, keep it open and watch its cache until stdin ends
)

// blockSize is the sequential I/O block size.
const blockSize = 1 << 20

// filesPerDir spreads the metadata workload's files over directories.
const filesPerDir = 1000

func workerMain(args []string) int {
	if len(args) > 0 && args[0] == opVfMem {
		r := vfMemWorker(args[1:])
		if err := json.NewEncoder(os.Stdout).Encode(r); err != nil {
			fmt.Fprintf(os.Stderr, "bench worker: %v\n", err)
			return 1
		}
		return 0
	}
	if len(args) > 0 && args[0] == opHold {
		if err := holdWorker(args[1:]); err != nil {
			fmt.Fprintf(os.Stderr, "bench worker %v: %v\n", args, err)
			return 1
		}
		return 0
	}
	res, err := runWorker(args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench worker %v: %v\n", args, err)
		return 1
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		fmt.Fprintf(os.Stderr, "bench worker: %v\n", err)
		return 1
	}
	return 0
}

func runWorker(args []string) (workerResult, error) {
	if len(args) == 0 {
		return workerResult{}, errors.New("no operation")
	}
	op, a := args[0], args[1:]
	need := func(n int) error {
		if len(a) != n {
			return fmt.Errorf("%s wants %d arguments, got %d", op, n, len(a))
		}
		return nil
	}
	num := func(s string) (int64, error) { return strconv.ParseInt(s, 10, 64) }
	switch op {
	case opSeqWrite:
		if err := need(3); err != nil {
			return workerResult{}, err
		}
		size, err := num(a[1])
		if err != nil {
			return workerResult{}, err
		}
		return seqWrite(a[0], size, a[2])
	case opRead:
		if err := need(2); err != nil {
			return workerResult{}, err
		}
		passes, err := num(a[1])
		if err != nil || passes < 1 {
			return workerResult{}, fmt.Errorf("bad passes %q", a[1])
		}
		return seqRead(a[0], int(passes))
	case opCreate, opStat, opUnlink:
		if op == opCreate {
			if err := need(3); err != nil {
				return workerResult{}, err
			}
		} else if err := need(2); err != nil {
			return workerResult{}, err
		}
		n, err := num(a[1])
		if err != nil || n < 1 {
			return workerResult{}, fmt.Errorf("bad count %q", a[1])
		}
		var fsize int64
		if op == opCreate {
			if fsize, err = num(a[2]); err != nil || fsize < 0 {
				return workerResult{}, fmt.Errorf("bad file size %q", a[2])
			}
		}
		return metaOp(op, a[0], int(n), fsize)
	case opNegStat:
		if err := need(3); err != nil {
			return workerResult{}, err
		}
		n, err := num(a[1])
		if err != nil || n < 1 {
			return workerResult{}, fmt.Errorf("bad count %q", a[1])
		}
		passes, err := num(a[2])
		if err != nil || passes < 1 {
			return workerResult{}, fmt.Errorf("bad passes %q", a[2])
		}
		return negStat(a[0], int(n), int(passes))
	case opLstat:
		if err := need(3); err != nil {
			return workerResult{}, err
		}
		passes, err := num(a[2])
		if err != nil || passes < 1 {
			return workerResult{}, fmt.Errorf("bad passes %q", a[2])
		}
		return lstatPasses(a[0], a[1], int(passes))
	}
	return workerResult{}, fmt.Errorf("unknown operation %q", op)
}

// pattern is a block of non-repeating bytes.
func pattern(n int) []byte {
	b := make([]byte, n)
	x := uint64(0x9E3779B97F4A7C15)
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	return b
}

// seqWrite writes size bytes in 1 MiB blocks, timed from open to close.
// mode "new" creates the file (it must not exist) and does not fsync;
// "new-fsync" creates it and ends with fsync; "overwrite" rewrites an
// existing file from offset 0 without truncating and ends with fsync.
//
// The fsync makes a figure the time to get the data to the backing disk,
// the same work for every configuration. Without it, a new file's figure
// is how much of it the page cache absorbs before writeback throttles the
// writer, which depends on what ran before (dirty pages of other
// configurations and processes, free memory) more than on the path
// being measured.
func seqWrite(path string, size int64, mode string) (workerResult, error) {
	flags := os.O_WRONLY
	sync := true
	switch mode {
	case "new":
		flags |= os.O_CREATE | os.O_EXCL
		sync = false
	case "new-fsync":
		flags |= os.O_CREATE | os.O_EXCL
	case "overwrite":
	default:
		return workerResult{}, fmt.Errorf("bad mode %q", mode)
	}
	buf := pattern(blockSize)
	start := time.Now()
	f, err := os.OpenFile(path, flags, 0o644)
	if err != nil {
		return workerResult{}, err
	}
	var done int64
	for done < size {
		n := min(int64(len(buf)), size-done)
		w, err := f.Write(buf[:n])
		done += int64(w)
		if err != nil {
			f.Close()
			return workerResult{}, err
		}
	}
	if sync {
		if err := f.Sync(); err != nil {
			f.Close()
			return workerResult{}, err
		}
	}
	if err := f.Close(); err != nil {
		return workerResult{}, err
	}
	return workerResult{Seconds: time.Since(start).Seconds(), Bytes: done, Ops: done / blockSize}, nil
}

// seqRead reads the file passes times, each with a fresh open, in 1 MiB
// blocks; only the last pass is timed.
func seqRead(path string, passes int) (workerResult, error) {
	buf := make([]byte, blockSize)
	var res workerResult
	for p := 0; p < passes; p++ {
		start := time.Now()
		f, err := os.Open(path)
		if err != nil {
			return workerResult{}, err
		}
		var total int64
		for {
			n, err := f.Read(buf)
			total += int64(n)
			if err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				f.Close()
				return workerResult{}, err
			}
			if n == 0 {
				break
			}
		}
		f.Close()
		res = workerResult{Seconds: time.Since(start).Seconds(), Bytes: total, Ops: (total + blockSize - 1) / blockSize}
	}
	if res.Bytes == 0 {
		return workerResult{}, fmt.Errorf("%s is empty", path)
	}
	return res, nil
}

// metaName is the path of the i-th small file below dir.
func metaName(dir string, i int) string {
	return fmt.Sprintf("%s/d%04d/f%07d", dir, i/filesPerDir, i)
}

// metaOp creates, stats or unlinks n small files below dir (in
// subdirectories of filesPerDir files). Creating makes the
// subdirectories; unlinking removes them.
func metaOp(op, dir string, n int, fsize int64) (workerResult, error) {
	data := pattern(int(fsize))
	dirs := (n + filesPerDir - 1) / filesPerDir
	start := time.Now()
	switch op {
	case opCreate:
		for i := 0; i < n; i++ {
			if i%filesPerDir == 0 {
				if err := unix.Mkdir(filepath.Dir(metaName(dir, i)), 0o755); err != nil {
					return workerResult{}, fmt.Errorf("mkdir: %w", err)
				}
			}
			fd, err := unix.Open(metaName(dir, i), unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o644)
			if err != nil {
				return workerResult{}, fmt.Errorf("create %s: %w", metaName(dir, i), err)
			}
			if len(data) > 0 {
				if _, err := unix.Write(fd, data); err != nil {
					unix.Close(fd)
					return workerResult{}, fmt.Errorf("write: %w", err)
				}
			}
			if err := unix.Close(fd); err != nil {
				return workerResult{}, fmt.Errorf("close: %w", err)
			}
		}
	case opStat:
		var st unix.Stat_t
		for i := 0; i < n; i++ {
			if err := unix.Lstat(metaName(dir, i), &st); err != nil {
				return workerResult{}, fmt.Errorf("lstat %s: %w", metaName(dir, i), err)
			}
		}
	case opUnlink:
		for i := 0; i < n; i++ {
			if err := unix.Unlink(metaName(dir, i)); err != nil {
				return workerResult{}, fmt.Errorf("unlink %s: %w", metaName(dir, i), err)
			}
		}
		for d := 0; d < dirs; d++ {
			if err := unix.Rmdir(filepath.Dir(metaName(dir, d*filesPerDir))); err != nil {
				return workerResult{}, fmt.Errorf("rmdir: %w", err)
			}
		}
	}
	return workerResult{Seconds: time.Since(start).Seconds(), Ops: int64(n)}, nil
}

// missingName is the path of the i-th name below dir that negstat looks
// for: in the directory of metaName(dir, i), where no such file is.
func missingName(dir string, i int) string {
	return fmt.Sprintf("%s/d%04d/m%07d.py", dir, i/filesPerDir, i)
}

// negStat lstats n names that do not exist passes times, as a module
// search (python imports, a shell walking PATH) asks each directory of
// its path for names it does not have, over and over. Every lstat must
// fail with ENOENT.
func negStat(dir string, n, passes int) (workerResult, error) {
	paths := make([]string, n)
	for i := range paths {
		paths[i] = missingName(dir, i)
	}
	var st unix.Stat_t
	start := time.Now()
	for p := 0; p < passes; p++ {
		for _, path := range paths {
			if err := unix.Lstat(path, &st); err != unix.ENOENT {
				return workerResult{}, fmt.Errorf("lstat %s: %v, want ENOENT", path, err)
			}
		}
	}
	return workerResult{Seconds: time.Since(start).Seconds(), Ops: int64(passes * n)}, nil
}

// lstatPasses lstats every path of listfile (relative to root, one a
// line) passes times, like `git status` looking at every file it knows.
func lstatPasses(root, listfile string, passes int) (workerResult, error) {
	b, err := os.ReadFile(listfile)
	if err != nil {
		return workerResult{}, err
	}
	var paths []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if l := sc.Text(); l != "" {
			paths = append(paths, root+"/"+l)
		}
	}
	if len(paths) == 0 {
		return workerResult{}, fmt.Errorf("%s lists no paths", listfile)
	}
	var st unix.Stat_t
	start := time.Now()
	for p := 0; p < passes; p++ {
		for _, path := range paths {
			if err := unix.Lstat(path, &st); err != nil {
				return workerResult{}, fmt.Errorf("lstat %s: %w", path, err)
			}
		}
	}
	return workerResult{Seconds: time.Since(start).Seconds(), Ops: int64(passes * len(paths))}, nil
}

// runWorkerProc runs one worker operation in a child process.
func runWorkerProc(ctx context.Context, args ...string) (workerResult, error) {
	out, err := runWorkerRaw(ctx, args...)
	if err != nil {
		return workerResult{}, err
	}
	var res workerResult
	if err := json.Unmarshal(out, &res); err != nil {
		return workerResult{}, fmt.Errorf("%s: bad output %q: %v", args[0], out, err)
	}
	if res.Seconds <= 0 {
		return workerResult{}, fmt.Errorf("%s: non-positive time %v", args[0], res.Seconds)
	}
	return res, nil
}

// runWorkerRaw runs a worker and returns what it printed.
func runWorkerRaw(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "/proc/self/exe", args...)
	cmd.Env = append(envWithout(os.Environ(), roleEnv), roleEnv+"="+roleWorker)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%s: %v: %s", args[0], err, firstLines(stderr.String(), 3))
	}
	return stdout.Bytes(), nil
}

// execFind is `find dir -type f`, killed if this process dies.
func execFind(dir string) *exec.Cmd {
	cmd := exec.Command("find", dir, "-type", "f")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// envWithout drops key from an environment list.
func envWithout(env []string, key string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, key+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// holdResult is what a hold worker prints: once the file is read (the
// warm-up), and when it is told to stop (the page cache watch).
type holdResult struct {
	workerResult
	Pages  int `json:"pages"`  // pages of the file
	Lowest int `json:"lowest"` // fewest pages cached (client or backing side) seen
}

// holdWatchInterval is how often a hold worker looks at the page cache.
const holdWatchInterval = 20 * time.Millisecond

// holdWorker (path backing ms) reads path whole in 1 MiB blocks and
// prints the result; then, keeping the file open, it counts every
// holdWatchInterval for ms milliseconds how many of its pages are in the
// page cache of path or of backing (the same file seen on the backing
// side), until its standard input ends; it prints the lowest count.
func holdWorker(a []string) error {
	if len(a) != 3 {
		return fmt.Errorf("hold wants 3 arguments, got %d", len(a))
	}
	path, backing := a[0], a[1]
	ms, err := strconv.ParseInt(a[2], 10, 64)
	if err != nil || ms < 0 {
		return fmt.Errorf("bad duration %q", a[2])
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	start := time.Now()
	n, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, struct{ io.Reader }{f}, make([]byte, blockSize))
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("%s is empty", path)
	}
	res := holdResult{workerResult: workerResult{Seconds: time.Since(start).Seconds(), Bytes: n, Ops: (n + blockSize - 1) / blockSize}}
	paths := []string{backing}
	if path != backing {
		paths = append(paths, path)
	}
	c, err := mapForCache(paths...)
	if err != nil {
		return err
	}
	defer c.close()
	res.Pages = c.pages
	if res.Lowest, err = c.cached(); err != nil {
		return err
	}
	enc := json.NewEncoder(os.Stdout)
	if err := enc.Encode(res); err != nil {
		return err
	}
	eof := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, os.Stdin)
		eof <- err
	}()
	deadline := time.Now().Add(time.Duration(ms) * time.Millisecond)
	tick := time.NewTicker(holdWatchInterval)
	defer tick.Stop()
	for {
		select {
		case err := <-eof:
			if err != nil {
				return err
			}
			return enc.Encode(res)
		case <-tick.C:
			if time.Now().After(deadline) {
				continue
			}
			k, err := c.cached()
			if err != nil {
				return err
			}
			res.Lowest = min(res.Lowest, k)
		}
	}
}

// holder is a running hold worker.
type holder struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *bufio.Reader
	stderr bytes.Buffer
	first  holdResult
}

// startHold starts a hold worker on path (backing: the same file on the
// backing side) that watches the page cache for d, and returns once it
// has read the file (it keeps it open until close).
func startHold(ctx context.Context, path, backing string, d time.Duration) (*holder, error) {
	h := &holder{}
	h.cmd = exec.CommandContext(ctx, "/proc/self/exe", opHold, path, backing, strconv.FormatInt(d.Milliseconds(), 10))
	h.cmd.Env = append(envWithout(os.Environ(), roleEnv), roleEnv+"="+roleWorker)
	h.cmd.Stderr = &h.stderr
	h.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var err error
	if h.stdin, err = h.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := h.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	h.stdout = bufio.NewReader(stdout)
	if err := h.cmd.Start(); err != nil {
		return nil, err
	}
	if err := h.read(&h.first); err != nil || h.first.Bytes <= 0 {
		h.stdin.Close()
		werr := h.cmd.Wait()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%s: %v %v: %s", opHold, err, werr, firstLines(h.stderr.String(), 3))
	}
	return h, nil
}

func (h *holder) read(r *holdResult) error {
	line, err := h.stdout.ReadBytes('\n')
	if err != nil {
		return err
	}
	return json.Unmarshal(line, r)
}

// close stops the watch, lets the hold worker close the file and exit,
// and returns its last result.
func (h *holder) close() (holdResult, error) {
	h.stdin.Close()
	var r holdResult
	rerr := h.read(&r)
	if err := h.cmd.Wait(); err != nil {
		return r, fmt.Errorf("%v: %s", err, firstLines(h.stderr.String(), 3))
	}
	if rerr != nil {
		return r, fmt.Errorf("%s: %w", opHold, rerr)
	}
	return r, nil
}
