package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// Configuration names, in table order.
const (
	cfgNative             = "native"
	cfgVfolderRW          = "vfolder-rw"
	cfgVfolderRWNoLimit   = "vfolder-rw-nolimit"
	cfgVfolderRWUntracked = "vfolder-rw-untracked"
	cfgVfolderRO          = "vfolder-ro"
	cfgVfolderRWUring     = "vfolder-rw-uring"
	cfgVfolderROUring     = "vfolder-ro-uring"
	cfgLoopback           = "loopback"
	cfgLoopbackPT         = "loopback-pt"
	cfgBindfs             = "bindfs"
	cfgMergerfs           = "mergerfs"
)

func configNames() []string {
	return []string{cfgNative, cfgVfolderRW, cfgVfolderRWNoLimit, cfgVfolderRWUntracked, cfgVfolderRO,
		cfgVfolderRWUring, cfgVfolderROUring, cfgLoopback, cfgLoopbackPT, cfgBindfs, cfgMergerfs}
}

// A config is one column: a way to reach the shared backing directory.
type config interface {
	name() string
	// readOnly configurations skip the workloads that write.
	readOnly() bool
	// setup mounts what the configuration needs (recording every mount in
	// e.mounts) and returns the directory the workloads use, which shows
	// the contents of e.data (or of its ownData directory).
	setup(ctx context.Context, e *env) (string, error)
	// describe is one line for the report, valid after setup.
	describe() string
}

// ownData is implemented by a configuration that shows a backing
// directory other than e.data (another folder on the same volume, whose
// fixture files are hard links to those of e.data); valid after setup.
type ownData interface {
	dataDir() string
}

// dataDirOf is the backing directory a set-up configuration shows.
func (e *env) dataDirOf(c config) string {
	if o, ok := c.(ownData); ok && o.dataDir() != "" {
		return o.dataDir()
	}
	return e.data
}

func newConfig(name string) config {
	switch name {
	case cfgNative:
		return nativeConfig{}
	case cfgLoopback:
		return &loopbackConfig{passthrough: false}
	case cfgLoopbackPT:
		return &loopbackConfig{passthrough: true}
	case cfgBindfs:
		// Only -f (stay in the foreground, so the harness can wait for
		// it): every other setting is bindfs's default, which is
		// single-threaded (bindfs passes -s to libfuse unless given
		// --multithreaded); the thread count after the run is in the notes.
		return &daemonConfig{cfg: cfgBindfs, bin: "bindfs", args: func(src, mnt string) []string { return []string{"-f", src, mnt} },
			about: "its defaults (single-threaded unless --multithreaded, libfuse 2); -f only keeps it in the foreground"}
	case cfgMergerfs:
		opts := "cache.files=partial,dropcacheonclose=true,category.create=mfs"
		return &daemonConfig{cfg: cfgMergerfs, bin: "mergerfs", args: func(src, mnt string) []string { return []string{"-f", "-o", opts, src, mnt} },
			about: "one branch: the backing directory; the options its manual recommends"}
	case cfgVfolderRW, cfgVfolderRWNoLimit, cfgVfolderRWUntracked, cfgVfolderRO, cfgVfolderRWUring, cfgVfolderROUring:
		return newVfolderConfig(name)
	}
	if a := ablationByConfig(name); a != nil {
		return newAblationConfig(a)
	}
	panic("unknown configuration " + name)
}

// nativeConfig is the backing directory itself.
type nativeConfig struct{}

func (nativeConfig) name() string   { return cfgNative }
func (nativeConfig) readOnly() bool { return false }
func (nativeConfig) setup(ctx context.Context, e *env) (string, error) {
	return e.data, nil
}
func (nativeConfig) describe() string { return "the backing directory itself, no FUSE" }

// loopbackConfig is go-fuse's loopback file system (fs.NewLoopbackRoot),
// mounted in this process with the options of go-fuse's example loopback
// (1 s entry and attribute timeouts, default MaxWrite). Without
// passthrough, the mount refuses CAP_PASSTHROUGH so that every read and
// write reaches the server.
type loopbackConfig struct {
	passthrough bool
	probe       string
}

func (c *loopbackConfig) name() string {
	if c.passthrough {
		return cfgLoopbackPT
	}
	return cfgLoopback
}
func (c *loopbackConfig) readOnly() bool { return false }

func loopbackOptions(passthrough bool, src string) *gofs.Options {
	sec := time.Second
	o := &gofs.Options{
		AttrTimeout:     &sec,
		EntryTimeout:    &sec,
		NullPermissions: true,
		MountOptions: fuse.MountOptions{
			DirectMount:       true,
			DirectMountStrict: true,
			FsName:            src,
			Name:              "loopback",
		},
	}
	if !passthrough {
		o.MountOptions.DisabledCapabilities = fuse.CAP_PASSTHROUGH
	}
	return o
}

func (c *loopbackConfig) setup(ctx context.Context, e *env) (string, error) {
	reads, err := probePassthrough(e, c.name(), c.passthrough)
	switch {
	case err != nil:
		c.probe = "passthrough probe failed: " + err.Error()
	case reads == 0:
		c.probe = "probe: reads bypass the server (kernel passthrough active)"
	default:
		c.probe = fmt.Sprintf("probe: reads reach the server (%d READ requests for 256 KiB; no passthrough)", reads)
	}
	if c.passthrough && err == nil && reads != 0 {
		e.notef("%s: the kernel did not use passthrough (the probe saw %d READ requests); this column measures the same thing as %s", c.name(), reads, cfgLoopback)
	}
	if !c.passthrough && err == nil && reads == 0 {
		return "", fmt.Errorf("passthrough is in use although CAP_PASSTHROUGH was refused")
	}
	mnt := filepath.Join(e.mntRoot, c.name())
	root, err := gofs.NewLoopbackRoot(e.data)
	if err != nil {
		return "", err
	}
	return mountGoFuse(e, c.name(), mnt, root, loopbackOptions(c.passthrough, e.data))
}

func (c *loopbackConfig) describe() string {
	s := "go-fuse v2.12.1 fs.NewLoopbackRoot in-process, DirectMount, 1 s entry/attr timeouts, default MaxWrite (128 KiB)"
	if c.passthrough {
		s += ", CAP_PASSTHROUGH accepted"
	} else {
		s += ", CAP_PASSTHROUGH refused (DisabledCapabilities)"
	}
	if c.probe != "" {
		s += "; " + c.probe
	}
	return s
}

// mountGoFuse mounts root at mnt in this process and records the mount.
func mountGoFuse(e *env, what, mnt string, root gofs.InodeEmbedder, opts *gofs.Options) (string, error) {
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return "", err
	}
	server, err := gofs.Mount(mnt, root, opts)
	if err != nil {
		return "", fmt.Errorf("mount %s: %w", what, err)
	}
	e.mounts.add(what, mnt, fuseMinor(mnt), func() error {
		if err := server.Unmount(); err != nil {
			return err
		}
		server.Wait()
		return nil
	})
	return mnt, nil
}

// probePassthrough mounts a loopback with the same options whose files
// count READ requests, reads a 256 KiB file written on the backing side
// through it, and returns how many READ requests reached the server:
// zero means the kernel read the backing file itself (passthrough).
func probePassthrough(e *env, name string, passthrough bool) (int64, error) {
	src := filepath.Join(e.work, "probe-src-"+name)
	if err := os.MkdirAll(src, 0o755); err != nil {
		return 0, err
	}
	defer os.RemoveAll(src)
	if err := os.WriteFile(filepath.Join(src, "probe.dat"), bytes.Repeat([]byte("p"), 256<<10), 0o644); err != nil {
		return 0, err
	}
	var st syscall.Stat_t
	if err := syscall.Stat(src, &st); err != nil {
		return 0, err
	}
	var reads atomic.Int64
	lr := &gofs.LoopbackRoot{Path: src, Dev: uint64(st.Dev)}
	root := &probeNode{LoopbackNode: &gofs.LoopbackNode{RootData: lr}, reads: &reads}
	lr.RootNode = root
	mnt := filepath.Join(e.mntRoot, "probe-"+name)
	if _, err := mountGoFuse(e, "passthrough probe", mnt, root, loopbackOptions(passthrough, src)); err != nil {
		return 0, err
	}
	defer e.mounts.remove(mnt)
	b, err := os.ReadFile(filepath.Join(mnt, "probe.dat"))
	if err != nil {
		return 0, err
	}
	if len(b) != 256<<10 {
		return 0, fmt.Errorf("probe read %d bytes, want %d", len(b), 256<<10)
	}
	return reads.Load(), nil
}

// probeNode is a loopback node whose files count their READ requests.
type probeNode struct {
	*gofs.LoopbackNode
	reads *atomic.Int64
}

var _ gofs.NodeWrapChilder = (*probeNode)(nil)
var _ gofs.NodeOpener = (*probeNode)(nil)

func (n *probeNode) WrapChild(ctx context.Context, ops gofs.InodeEmbedder) gofs.InodeEmbedder {
	if ln, ok := ops.(*gofs.LoopbackNode); ok {
		return &probeNode{LoopbackNode: ln, reads: n.reads}
	}
	return ops
}

func (n *probeNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	fh, fl, errno := n.LoopbackNode.Open(ctx, flags)
	if errno != 0 {
		return fh, fl, errno
	}
	lf, ok := fh.(*gofs.LoopbackFile)
	if !ok {
		return fh, fl, 0
	}
	return &probeFile{LoopbackFile: lf, reads: n.reads}, fl, 0
}

// probeFile keeps every LoopbackFile method (PassthroughFd included) and
// counts reads.
type probeFile struct {
	*gofs.LoopbackFile
	reads *atomic.Int64
}

func (f *probeFile) Read(ctx context.Context, buf []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	f.reads.Add(1)
	return f.LoopbackFile.Read(ctx, buf, off)
}

// daemonConfig is a FUSE server from a Debian package run in the
// foreground as a child process.
type daemonConfig struct {
	cfg     string
	bin     string
	args    func(src, mnt string) []string
	about   string
	version string
	command string // the command line, paths named (valid after setup)
}

func (c *daemonConfig) name() string   { return c.cfg }
func (c *daemonConfig) readOnly() bool { return false }

func (c *daemonConfig) setup(ctx context.Context, e *env) (string, error) {
	path, err := exec.LookPath(c.bin)
	if err != nil {
		return "", fmt.Errorf("%s is not installed (make deps installs it): %w", c.bin, err)
	}
	c.version = toolVersion(path)
	mnt := filepath.Join(e.mntRoot, c.cfg)
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return "", err
	}
	argv := append([]string{path}, c.args(e.data, mnt)...)
	c.command = commandLine(argv, map[string]string{e.data: "BACKING", mnt: "MOUNTPOINT"})
	d, err := startDaemon(ctx, mnt, argv)
	if err != nil {
		return "", err
	}
	e.mounts.add(c.cfg, mnt, fuseMinor(mnt), func() error {
		// What the server ran with, seen from outside: its thread count
		// after every workload (a single-threaded libfuse server has one).
		if n, err := threadCount(d.cmd.Process.Pid); err == nil {
			e.notef("%s (pid %d) had %d thread(s) at the end of the run", c.cfg, d.cmd.Process.Pid, n)
		}
		return d.stop(mnt)
	})
	return mnt, nil
}

func (c *daemonConfig) describe() string {
	s := "`" + c.command + "`, as a child process; " + c.about
	if c.version != "" {
		s = c.version + ": " + s
	}
	return s
}

// commandLine is argv as one shell-like line, each argument equal to a
// key of names written as its value (BACKING for the backing directory...).
func commandLine(argv []string, names map[string]string) string {
	out := make([]string, len(argv))
	for i, a := range argv {
		if n, ok := names[a]; ok {
			a = n
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}

// threadCount is the number of threads of process pid.
func threadCount(pid int) (int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0, err
	}
	return len(ents), nil
}

// toolVersion is the first line of `bin --version`.
func toolVersion(bin string) string {
	cmd := exec.Command(bin, "--version")
	out, _ := cmd.CombinedOutput()
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return strings.TrimSpace(line)
}
