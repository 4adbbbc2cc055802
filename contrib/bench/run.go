package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Layout below the work directory.
const (
	fixtureDir = "fixtures" // below the data directory
	volDir     = "vol"      // the vfolder volume
	mntDir     = "mnt"      // mount points
)

// env is the state of one harness run (role "run").
type env struct {
	opts     *options
	work     string // the work directory (a tmpfs with --tmpfs)
	vol      string // volume root
	folder   vfolderIDs
	data     string // backing directory shared by every configuration
	mntRoot  string
	tarball  string
	treeList string
	log      io.Writer
	mounts   mounts
	machine  machineInfo
	res      *results
	notes    []string
	started  time.Time
	vf       map[string]*vfolderShared // vfolder mounts by name
	fuseq    quiescer                  // state of quiesce
}

func (e *env) notef(format string, args ...any) {
	e.notes = append(e.notes, fmt.Sprintf(format, args...))
}

func (e *env) logf(format string, args ...any) {
	fmt.Fprintf(e.log, "bench: "+format+"\n", args...)
}

// errInterrupted reports a SIGINT/SIGTERM.
var errInterrupted = errors.New("interrupted")

func runMain(args []string) (code int) {
	o, err := parseOptions(args, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	work := os.Getenv(workEnv)
	if work == "" || !filepath.IsAbs(work) {
		fmt.Fprintln(os.Stderr, "bench: no work directory (run without "+roleEnv+")")
		return 2
	}
	if err := enterPrivateNamespace(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	e := &env{opts: o, work: work, log: os.Stderr, started: time.Now()}
	if o.cpuProfile != "" {
		// This process serves the in-process FUSE mounts (vfolder, go-fuse
		// loopback): the profile shows their hot spots. Deferred before
		// the unmount below, so it stops last.
		stopProfile, err := startCPUProfile(o.cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 1
		}
		defer func() {
			if err := stopProfile(); err != nil {
				fmt.Fprintln(os.Stderr, "bench: cpu profile:", err)
				if code == 0 {
					code = 1
				}
			}
		}()
		e.notef("CPU profile of the process serving the in-process FUSE mounts (vfolder, go-fuse loopback), for the whole run: %s (`go tool pprof`); bindfs and mergerfs are other processes", o.cpuProfile)
	}
	if o.quiet {
		e.log = io.Discard
	}
	defer func() {
		if err := e.mounts.undoAll(); err != nil {
			fmt.Fprintln(os.Stderr, "bench: FAILED to unmount cleanly:", err)
			code = 1
		}
		if err := checkNoMounts(work, ""); err != nil {
			fmt.Fprintln(os.Stderr, "bench: FAILED:", err)
			code = 1
		}
	}()
	err = e.run(ctx)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errInterrupted) || ctx.Err() != nil:
		fmt.Fprintln(os.Stderr, "bench: interrupted; unmounting")
		return 130
	default:
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
}

// enterPrivateNamespace makes sure this process has its own mount
// namespace (not the parent's) and that no mount event propagates out of
// it.
func enterPrivateNamespace() error {
	self, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		return fmt.Errorf("cannot read the mount namespace: %w", err)
	}
	parent := os.Getenv(parentNSEnv)
	if parent == "" {
		return errors.New("the parent did not say which mount namespace it runs in")
	}
	if self == parent {
		return errors.New("refusing to run in the parent's mount namespace (the parent re-runs this binary under unshare(CLONE_NEWNS))")
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make / private in the new mount namespace: %w", err)
	}
	return nil
}

func (e *env) run(ctx context.Context) error {
	o := e.opts
	if o.tmpfs {
		if err := unix.Mount("bench", e.work, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
			return fmt.Errorf("mount tmpfs on %s: %w", e.work, err)
		}
		e.mounts.add("tmpfs", e.work, 0, func() error { return unmountRetry(e.work) })
	}
	var err error
	if e.folder, err = newVfolderIDs(); err != nil {
		return err
	}
	e.vol = filepath.Join(e.work, volDir)
	e.data = filepath.Join(e.vol, e.folder.rel)
	e.mntRoot = filepath.Join(e.work, mntDir)
	for _, d := range []string{e.data, filepath.Join(e.data, fixtureDir), e.mntRoot} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(e.vol, "version.txt"), []byte("3\n"), 0o644); err != nil {
		return err
	}
	e.machine = describeMachine(e.data, o.tmpfs)
	want := map[string]bool{}
	for _, w := range o.workloads {
		want[w] = true
	}
	e.res = newResults(o.workloads, o.configs)
	e.res.addAblations(o.ablations)
	for _, n := range o.ablateSkip {
		e.notef("ablation: %s", n)
	}
	if err := e.checkTools(want); err != nil {
		return err
	}

	e.logf("work directory %s (%s), backing directory %s", e.work, e.machine.Backing, e.data)
	if err := e.prepareFixtures(ctx, want); err != nil {
		if ctx.Err() != nil {
			return errInterrupted
		}
		return fmt.Errorf("prepare fixtures: %w", err)
	}

	// Mount every configuration (if a table workload is selected).
	var targets []*target
	tableWanted := false
	for _, g := range groupOrder {
		tableWanted = tableWanted || (g != groupUsage && g != groupMemory && g != groupCluster && groupWanted(g, want))
	}
	for _, name := range o.configs {
		if !tableWanted {
			break
		}
		c := newConfig(name)
		e.logf("setting up %s", name)
		path, err := c.setup(ctx, e)
		if ctx.Err() != nil {
			return errInterrupted
		}
		e.res.describe[name] = c.describe()
		if err != nil {
			e.res.setupFailed(name, err)
			e.notef("%s: setup failed: %v", name, err)
			e.logf("%s: setup failed: %v", name, err)
			continue
		}
		if d, ok := c.(*daemonConfig); ok {
			e.res.commands[name] = d.command
		}
		targets = append(targets, &target{c: c, path: path, data: e.dataDirOf(c)})
	}
	for _, a := range o.ablations {
		if !tableWanted {
			break
		}
		c := newConfig(a.config())
		e.logf("setting up %s", c.name())
		path, err := c.setup(ctx, e)
		if ctx.Err() != nil {
			return errInterrupted
		}
		e.res.describe[c.name()] = c.describe()
		if err != nil {
			e.res.setupFailed(c.name(), err)
			e.notef("%s: setup failed: %v", c.name(), err)
			e.logf("%s: setup failed: %v", c.name(), err)
			continue
		}
		targets = append(targets, &target{c: c, path: path, data: e.dataDirOf(c), want: a.wants(want)})
	}

	// Runs, interleaved across configurations.
	for run := 0; run < o.totalRuns(want); run++ {
		for _, g := range groupOrder {
			if !groupWanted(g, want) || g == groupUsage || g == groupMemory || g == groupCluster || run >= o.groupRuns(g) {
				continue
			}
			var group []*target
			for _, t := range targets {
				if groupWanted(g, t.wants(want)) {
					group = append(group, t)
				}
			}
			for i := range group {
				t := group[(i+run)%len(group)]
				e.logf("run %d/%d %-9s %s", run+1, o.groupRuns(g), g, t.c.name())
				if err := e.runGroup(ctx, g, t, run, t.wants(want)); err != nil {
					if ctx.Err() != nil {
						return errInterrupted
					}
					return err
				}
			}
		}
	}

	if want["usage-query"] {
		e.logf("usage query")
		e.res.usage = e.measureUsage(ctx)
		if ctx.Err() != nil {
			return errInterrupted
		}
	}
	if want["memory"] {
		e.logf("daemon memory")
		e.res.memory = e.measureMemory(ctx)
		if ctx.Err() != nil {
			return errInterrupted
		}
	}
	if want["cluster-write"] {
		e.logf("cluster write")
		e.res.cluster = e.measureCluster(ctx)
		if ctx.Err() != nil {
			return errInterrupted
		}
	}

	// Unmount before writing the report, so that a failing unmount is
	// part of it.
	if err := e.mounts.undoAll(); err != nil {
		return fmt.Errorf("unmount: %w", err)
	}
	if err := checkNoMounts(e.work, ""); err != nil {
		return err
	}
	report := e.renderReport()
	if err := os.WriteFile(o.out, []byte(report), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", o.out, err)
	}
	fmt.Println(e.renderTable())
	if a := e.renderAblation(); a != "" {
		fmt.Println("Ablation\n\n" + a)
	}
	fmt.Printf("report written to %s\n", o.out)
	if n := e.res.failures(); n > 0 {
		return fmt.Errorf("%d measurements failed (see the notes in %s)", n, o.out)
	}
	return nil
}

func groupWanted(g string, want map[string]bool) bool {
	for _, w := range allWorkloads {
		if w.group == g && want[w.id] {
			return true
		}
	}
	return false
}

// checkTools fails early when a selected workload needs a missing tool.
func (e *env) checkTools(want map[string]bool) error {
	need := map[string]string{}
	if groupWanted(groupRandom, want) {
		need["fio"] = "random 4k workloads"
	}
	if groupWanted(groupTree, want) {
		for _, t := range []string{"tar", "find", "du", "rm"} {
			need[t] = "tree workloads"
		}
	}
	if want["usage-query"] {
		need["du"] = "usage query"
	}
	var missing []string
	for t, why := range need {
		if _, err := exec.LookPath(t); err != nil {
			missing = append(missing, t+" (for "+why+")")
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return fmt.Errorf("missing tools: %s; run `make deps`", strings.Join(missing, ", "))
	}
	if groupWanted(groupTree, want) {
		if st, err := os.Stat(e.opts.treeSrc); err != nil || !st.IsDir() {
			return fmt.Errorf("--tree %s is not a directory", e.opts.treeSrc)
		}
	}
	return nil
}

// target is a mounted configuration.
type target struct {
	c    config
	path string          // where the workloads run
	data string          // the backing directory path shows
	want map[string]bool // the workloads it runs; nil: every selected one
}

// wants is the set of workloads t runs, out of the selected ones.
func (t *target) wants(selected map[string]bool) map[string]bool {
	if t.want == nil {
		return selected
	}
	return t.want
}

// backing maps a path below t.path to the same entry in the backing
// directory.
func (e *env) backing(t *target, p string) string {
	rel, err := filepath.Rel(t.path, p)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		panic("path " + p + " is not below " + t.path)
	}
	return filepath.Join(t.data, rel)
}

// dropCaches writes dirty data back and drops the page, dentry and inode
// caches (of FUSE mounts too).
func dropCaches() error {
	unix.Sync()
	return os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0)
}

// timeCmd runs a command to completion and returns its wall time.
func timeCmd(ctx context.Context, name string, args ...string) (float64, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start).Seconds()
	if err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return 0, fmt.Errorf("%s: %v: %s", name, err, firstLines(stderr.String(), 3))
	}
	return d, nil
}

func firstLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = append(lines[:n], "...")
	}
	return strings.Join(lines, " | ")
}
