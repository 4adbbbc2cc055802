package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// errUsage marks a bad command line (exit status 2).
var errUsage = errors.New("usage")

// options are the parsed flags.
type options struct {
	workloads  []string // workload ids, in table order
	configs    []string // configuration names, in table order
	size       int64    // sequential file size
	randSize   int64    // random I/O file size
	files      int      // metadata workload file count
	runs       int
	seqRuns    int // runs of the seqwrite group, when more than runs
	out        string
	quick      bool
	tmpfs      bool
	dir        string // parent of the work directory
	fioRuntime time.Duration
	treeSrc    string // directory tarred for the tree workloads
	statPasses int
	usageFiles []int // tree sizes for the usage query
	views      int   // live views for the memory measurement
	quiet      bool
	cpuProfile string // CPU profile of the run process, "" for none
	ablate     bool
	ablations  []*ablation // with --ablate: the ablations that run
	ablateSkip []string    // with --ablate: ablations left out, and why

	argv []string // the command line, for the report
}

// quick-mode defaults (a smoke run of a few minutes).
const (
	quickSize       = 64 << 20
	quickRandSize   = 32 << 20
	quickFiles      = 2000
	quickFioRuntime = time.Second
	quickTree       = "crypto"
)

func parseOptions(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fl := flag.NewFlagSet("bench", flag.ContinueOnError)
	fl.SetOutput(stderr)
	var workloads, configs, size, randSize, usageFiles, ablationList string
	fl.StringVar(&workloads, "workloads", "all", "comma-separated workloads or groups ("+strings.Join(groupNames(), ", ")+"); ids: "+strings.Join(workloadIDs(), ", "))
	fl.StringVar(&configs, "configs", "all", "comma-separated configurations: "+strings.Join(configNames(), ", "))
	fl.StringVar(&size, "size", "1GiB", "size of the sequential read/write file")
	fl.StringVar(&randSize, "rand-size", "256MiB", "size of the random 4k I/O file")
	fl.IntVar(&o.files, "files", 20000, "number of small files for create/stat/unlink")
	fl.IntVar(&o.runs, "runs", 3, "runs per workload and configuration (the median is reported)")
	fl.IntVar(&o.seqRuns, "seq-runs", 7, "runs of the sequential write workloads (seqwrite-new, seqwrite-overwrite) when more than --runs: their figures include the backing disk's writeback, the noisiest part of the table")
	fl.StringVar(&o.out, "out", "BENCHMARKS.md", "report file")
	fl.BoolVar(&o.quick, "quick", false, "small sizes for a smoke run of a few minutes (explicit flags win)")
	fl.BoolVar(&o.tmpfs, "tmpfs", false, "back everything with a tmpfs instead of the local disk")
	fl.StringVar(&o.dir, "dir", "/var/tmp", "directory in which the work directory is created")
	fl.DurationVar(&o.fioRuntime, "fio-runtime", 5*time.Second, "duration of each fio job")
	fl.StringVar(&o.treeSrc, "tree", "/usr/local/go/src", "source tree tarred once for untar/find/du/statstorm/rm")
	fl.IntVar(&o.statPasses, "stat-passes", 5, "lstat passes of the stat storm")
	fl.StringVar(&usageFiles, "usage-files", "1000,100000,1000000", "tree sizes (files) for the usage query")
	fl.IntVar(&o.views, "views", 1000, "live views for the daemon memory measurement")
	fl.BoolVar(&o.quiet, "q", false, "print only the final table")
	fl.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile (runtime/pprof, for go tool pprof) of the process that serves the in-process FUSE mounts (vfolder, go-fuse loopback), covering the whole run, to this file")
	fl.BoolVar(&o.ablate, "ablate", false, "also mount vfolder with one data-path tuning off at a time and run each on the workloads that tuning can affect (an Ablation section in the report); adds vfolder-rw / vfolder-ro, which they are compared with")
	fl.StringVar(&ablationList, "ablations", "all", "with --ablate: comma-separated tunings to turn off: "+strings.Join(ablationIDs(), ", "))
	if err := fl.Parse(args); err != nil {
		return nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	if fl.NArg() > 0 {
		return nil, fmt.Errorf("%w: unexpected arguments %q", errUsage, fl.Args())
	}
	set := map[string]bool{}
	fl.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if o.quick {
		if !set["size"] {
			size = strconv.Itoa(quickSize)
		}
		if !set["rand-size"] {
			randSize = strconv.Itoa(quickRandSize)
		}
		if !set["files"] {
			o.files = quickFiles
		}
		if !set["fio-runtime"] {
			o.fioRuntime = quickFioRuntime
		}
		if !set["tree"] {
			o.treeSrc = filepath.Join(o.treeSrc, quickTree)
		}
		if !set["usage-files"] {
			usageFiles = "1000,10000"
		}
		if !set["views"] {
			o.views = 100
		}
	}
	var err error
	if o.size, err = parseSize(size); err != nil {
		return nil, fmt.Errorf("%w: --size: %v", errUsage, err)
	}
	if o.randSize, err = parseSize(randSize); err != nil {
		return nil, fmt.Errorf("%w: --rand-size: %v", errUsage, err)
	}
	if o.size < 1<<20 || o.randSize < 1<<20 {
		return nil, fmt.Errorf("%w: --size and --rand-size must be at least 1MiB", errUsage)
	}
	if o.runs < 1 || o.runs > 100 {
		return nil, fmt.Errorf("%w: --runs must be 1..100", errUsage)
	}
	if o.seqRuns < 1 || o.seqRuns > 100 {
		return nil, fmt.Errorf("%w: --seq-runs must be 1..100", errUsage)
	}
	if o.quick && !set["seq-runs"] {
		o.seqRuns = o.runs
	}
	if o.files < 1 || o.files > 10_000_000 {
		return nil, fmt.Errorf("%w: --files must be 1..10000000", errUsage)
	}
	if o.statPasses < 1 || o.statPasses > 1000 {
		return nil, fmt.Errorf("%w: --stat-passes must be 1..1000", errUsage)
	}
	if o.fioRuntime < 100*time.Millisecond {
		return nil, fmt.Errorf("%w: --fio-runtime must be at least 100ms", errUsage)
	}
	if o.views < 1 || o.views > 30000 {
		return nil, fmt.Errorf("%w: --views must be 1..30000", errUsage)
	}
	if o.usageFiles, err = parseCounts(usageFiles); err != nil {
		return nil, fmt.Errorf("%w: --usage-files: %v", errUsage, err)
	}
	if o.workloads, err = selectWorkloads(workloads); err != nil {
		return nil, fmt.Errorf("%w: --workloads: %v", errUsage, err)
	}
	if o.configs, err = selectConfigs(configs); err != nil {
		return nil, fmt.Errorf("%w: --configs: %v", errUsage, err)
	}
	if set["ablations"] && !o.ablate {
		return nil, fmt.Errorf("%w: --ablations needs --ablate", errUsage)
	}
	if o.ablate {
		if o.ablations, o.ablateSkip, err = selectAblations(ablationList, o.workloads); err != nil {
			return nil, fmt.Errorf("%w: --ablations: %v", errUsage, err)
		}
		o.configs = withBases(o.configs, o.ablations)
	}
	if o.out == "" {
		return nil, fmt.Errorf("%w: --out is empty", errUsage)
	}
	if o.out, err = filepath.Abs(o.out); err != nil {
		return nil, fmt.Errorf("%w: --out: %v", errUsage, err)
	}
	if o.dir, err = filepath.Abs(o.dir); err != nil {
		return nil, fmt.Errorf("%w: --dir: %v", errUsage, err)
	}
	if o.treeSrc, err = filepath.Abs(o.treeSrc); err != nil {
		return nil, fmt.Errorf("%w: --tree: %v", errUsage, err)
	}
	if o.cpuProfile != "" {
		if o.cpuProfile, err = filepath.Abs(o.cpuProfile); err != nil {
			return nil, fmt.Errorf("%w: --cpuprofile: %v", errUsage, err)
		}
	}
	o.argv = args
	return o, nil
}

// parseSize parses a byte count: a decimal number with an optional unit
// K, M, G, T (powers of 1024, also written KiB, MiB... or KB, MB...; case
// does not matter) or B. Fractions are allowed with a unit ("1.5GiB").
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, errors.New("empty size")
	}
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	if num == "" {
		return 0, fmt.Errorf("size %q does not start with a number", s)
	}
	var mult int64
	switch unit {
	case "", "b":
		mult = 1
	case "k", "kb", "kib":
		mult = 1 << 10
	case "m", "mb", "mib":
		mult = 1 << 20
	case "g", "gb", "gib":
		mult = 1 << 30
	case "t", "tb", "tib":
		mult = 1 << 40
	default:
		return 0, fmt.Errorf("size %q has an unknown unit %q", s, unit)
	}
	if !strings.Contains(num, ".") {
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("size %q: %v", s, err)
		}
		if n > math.MaxInt64/mult {
			return 0, fmt.Errorf("size %q is too large", s)
		}
		return n * mult, nil
	}
	if mult == 1 {
		return 0, fmt.Errorf("size %q: a fraction needs a unit", s)
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: %v", s, err)
	}
	v := f * float64(mult)
	if math.IsNaN(v) || v >= math.MaxInt64 {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return int64(v), nil
}

// parseCounts parses a comma-separated list of positive counts.
func parseCounts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 || n > 100_000_000 {
			return nil, fmt.Errorf("bad count %q (want 1..100000000)", f)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, errors.New("no counts")
	}
	return out, nil
}

// splitList splits a comma-separated flag value; "all" or "" selects all.
func splitList(s string) (all bool, items []string) {
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		switch f {
		case "":
		case "all":
			all = true
		default:
			items = append(items, f)
		}
	}
	return all || len(items) == 0, items
}

// isRoot reports whether the process may mount and drop caches.
func isRoot() bool { return os.Geteuid() == 0 }

// groupRuns is how many runs group g gets: --runs, or --seq-runs for the
// sequential writes when that is more.
func (o *options) groupRuns(g string) int {
	if g == groupSeqWrite {
		return max(o.runs, o.seqRuns)
	}
	return o.runs
}

// totalRuns is how many runs the harness makes: the most any selected
// table group gets.
func (o *options) totalRuns(want map[string]bool) int {
	n := o.runs
	for _, g := range groupOrder {
		if groupWanted(g, want) {
			n = max(n, o.groupRuns(g))
		}
	}
	return n
}
