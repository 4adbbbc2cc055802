package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// machineInfo describes where the numbers come from.
type machineInfo struct {
	CPU     string
	Cores   string
	Memory  string
	Kernel  string
	OS      string
	Backing string
	Load    string
	Tools   string
}

func describeMachine(dir string, tmpfs bool) machineInfo {
	m := machineInfo{CPU: "unknown", Memory: "unknown", OS: "unknown"}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		n := 0
		sc := bufio.NewScanner(strings.NewReader(string(b)))
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), ":")
			if !ok {
				continue
			}
			switch strings.TrimSpace(k) {
			case "model name":
				m.CPU = strings.TrimSpace(v)
			case "processor":
				n++
			}
		}
		m.Cores = fmt.Sprintf("%d online CPUs (%d usable by this process)", n, runtime.NumCPU())
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemTotal:" {
				if kb, err := strconv.ParseInt(f[1], 10, 64); err == nil {
					m.Memory = humanBytes(kb << 10)
				}
			}
		}
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:]) + " " + unix.ByteSliceToString(u.Version[:]) + " " + unix.ByteSliceToString(u.Machine[:])
	}
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "PRETTY_NAME="); ok {
				m.OS = strings.Trim(v, `"`)
			}
		}
	}
	m.Backing = backingDescription(dir, tmpfs)
	m.Load = loadAvg()
	tools := []string{runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/hanwen/go-fuse/v2" {
				tools = append(tools, "go-fuse "+d.Version)
			}
		}
	}
	for _, t := range []string{"fio", "bindfs", "mergerfs", "tar", "du"} {
		if p, err := exec.LookPath(t); err == nil {
			if v := toolVersion(p); v != "" {
				tools = append(tools, v)
			}
		}
	}
	m.Tools = strings.Join(tools, "; ")
	return m
}

// backingDescription names the file system holding dir and its source.
func backingDescription(dir string, tmpfs bool) string {
	all, err := readMountInfo()
	if err != nil {
		return "unknown"
	}
	var best mountEntry
	for _, e := range all {
		if under(dir, e.point) && len(e.point) >= len(best.point) {
			best = e
		}
	}
	s := fmt.Sprintf("%s on %s (mounted at %s)", best.fstype, best.source, best.point)
	var st unix.Statfs_t
	if unix.Statfs(dir, &st) == nil {
		s += fmt.Sprintf(", %s free", humanBytes(int64(st.Bavail)*st.Bsize))
	}
	if tmpfs {
		s = "tmpfs (--tmpfs), " + s
	} else {
		s = "local disk, " + s
	}
	return s
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// fmtVal formats a measured value with about three significant digits.
// spreadText is the median and spread columns of a cell in the Every run
// table.
func spreadText(c *cell) string {
	m, ok := c.median()
	if !ok {
		return "| "
	}
	lo, hi, rel, ok := c.spread()
	if !ok {
		return fmtVal(m) + " | one run"
	}
	return fmt.Sprintf("%s | %s..%s (%.0f%%)", fmtVal(m), fmtVal(lo), fmtVal(hi), rel*100)
}

func fmtVal(v float64) string {
	switch {
	case v >= 1000:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case v >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

func fmtDuration(sec float64) string {
	d := time.Duration(sec * float64(time.Second))
	switch {
	case d < time.Microsecond:
		return fmt.Sprintf("%.0f ns", sec*1e9)
	case d < time.Millisecond:
		return fmt.Sprintf("%.1f µs", sec*1e6)
	case d < time.Second:
		return fmt.Sprintf("%.1f ms", sec*1e3)
	}
	return fmt.Sprintf("%.2f s", sec)
}

// title is the table label of a workload.
func (e *env) title(w workload) string {
	o := e.opts
	tree := filepath.Base(o.treeSrc)
	if e.res.treeEntries > 0 {
		tree = fmt.Sprintf("%s (%d entries, %s)", tree, e.res.treeEntries, humanBytes(e.res.treeBytes))
	}
	r := strings.NewReplacer(
		"{size}", humanBytes(o.size),
		"{rand}", humanBytes(o.randSize)+" file",
		"{files}", strconv.Itoa(o.files),
		"{tree}", tree,
		"{passes}", strconv.Itoa(o.statPasses),
	)
	return r.Replace(w.title)
}

// medianText is a cell's median, with its failed runs noted, or why there
// is none (ok false).
func (e *env) medianText(w workload, cfg string) (s string, v float64, ok bool) {
	r := e.res
	if _, bad := r.setupErr[cfg]; bad {
		return "setup failed", 0, false
	}
	c := r.cells[w.id][cfg]
	if c == nil {
		return "not run", 0, false
	}
	if c.na != "" {
		return "n/a", 0, false
	}
	v, ok = c.median()
	if !ok {
		if len(c.errs) > 0 {
			return "error", 0, false
		}
		return "not run", 0, false
	}
	s = fmtVal(v)
	if len(c.errs) > 0 {
		s += fmt.Sprintf(" (%d/%d failed)", len(c.errs), len(c.errs)+len(c.runs))
	}
	return s, v, true
}

// cellText is a table cell: the median and, off native, the speed
// relative to native.
func (e *env) cellText(w workload, cfg string) string {
	s, v, ok := e.medianText(w, cfg)
	if !ok || cfg == cfgNative {
		return s
	}
	nv, ok := e.res.cells[w.id][cfgNative].median()
	if !ok {
		return s
	}
	ratio := v / nv
	if !w.higher {
		ratio = nv / v
	}
	return fmt.Sprintf("%s (%.2fx)", s, ratio)
}

// tableWorkloads are the rows of the main table.
func (e *env) tableWorkloads() []workload {
	var out []workload
	for _, id := range e.res.workloads {
		w, _ := workloadByID(id)
		if w.group == groupUsage || w.group == groupMemory || w.group == groupCluster {
			continue
		}
		out = append(out, w)
	}
	return out
}

// renderTable is the main results table in Markdown.
func (e *env) renderTable() string {
	var b strings.Builder
	if rows := e.tableWorkloads(); len(rows) > 0 {
		b.WriteString("| workload | unit |")
		for _, c := range e.res.configs {
			b.WriteString(" " + c + " |")
		}
		b.WriteString("\n| --- | --- |")
		for range e.res.configs {
			b.WriteString(" ---: |")
		}
		b.WriteString("\n")
		for _, w := range rows {
			unit := w.unit
			if w.higher {
				unit += " ↑"
			} else {
				unit += " ↓"
			}
			fmt.Fprintf(&b, "| %s `%s` | %s |", e.title(w), w.id, unit)
			for _, c := range e.res.configs {
				b.WriteString(" " + e.cellText(w, c) + " |")
			}
			b.WriteString("\n")
		}
	}
	if q := e.renderQuotaOverhead(); q != "" {
		b.WriteString("\n" + q)
	}
	if e.res.usage != nil {
		b.WriteString("\n" + e.renderUsage())
	}
	if e.res.memory != nil {
		b.WriteString("\n" + e.renderMemory())
	}
	if e.res.cluster != nil {
		b.WriteString("\n" + e.renderCluster())
	}
	return b.String()
}

// overhead is how much more time per unit of work cfg takes than ref for
// workload w, in percent of ref's (positive: cfg is slower), from the
// medians; ok is false when either is missing.
func (e *env) overhead(w workload, cfg, ref string) (float64, bool) {
	r := e.res
	for _, c := range []string{cfg, ref} {
		if _, bad := r.setupErr[c]; bad {
			return 0, false
		}
		if r.cells[w.id][c] == nil {
			return 0, false
		}
	}
	v, ok1 := r.cells[w.id][cfg].median()
	rv, ok2 := r.cells[w.id][ref].median()
	if !ok1 || !ok2 || v <= 0 || rv <= 0 {
		return 0, false
	}
	if w.higher {
		return (rv/v - 1) * 100, true
	}
	return (v/rv - 1) * 100, true
}

// quotaPairs are the comparisons of the quota overhead table.
var quotaPairs = [][2]string{
	{cfgVfolderRW, cfgVfolderRWNoLimit},
	{cfgVfolderRW, cfgVfolderRWUntracked},
	{cfgVfolderRWNoLimit, cfgVfolderRWUntracked},
}

// renderQuotaOverhead is the quota overhead table: for every workload
// that writes, the extra time of the limited view against the view
// without a limit and the view without a ledger; "" when vfolder-rw and
// neither of the others ran.
func (e *env) renderQuotaOverhead() string {
	has := map[string]bool{}
	for _, c := range e.res.configs {
		has[c] = true
	}
	var pairs [][2]string
	for _, p := range quotaPairs {
		if has[p[0]] && has[p[1]] {
			pairs = append(pairs, p)
		}
	}
	var rows []workload
	for _, w := range e.tableWorkloads() {
		if w.writes {
			rows = append(rows, w)
		}
	}
	if len(pairs) == 0 || len(rows) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("Quota overhead: extra time per unit of work of the first view over the second, from the medians above (positive: slower; vfolder-rw: a limit to enforce, vfolder-rw-nolimit: usage tracked, no limit, vfolder-rw-untracked: no ledger).\n\n")
	b.WriteString("| quota overhead | unit |")
	for _, p := range pairs {
		fmt.Fprintf(&b, " %s vs %s |", p[0], p[1])
	}
	b.WriteString("\n| --- | --- |")
	for range pairs {
		b.WriteString(" ---: |")
	}
	b.WriteString("\n")
	for _, w := range rows {
		fmt.Fprintf(&b, "| %s | %s |", w.id, w.unit)
		for _, p := range pairs {
			if v, ok := e.overhead(w, p[0], p[1]); ok {
				fmt.Fprintf(&b, " %+.1f%% |", v)
			} else {
				b.WriteString(" not measured |")
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}

func (e *env) renderUsage() string {
	u := e.res.usage
	var b strings.Builder
	b.WriteString("| usage query `usage-query` | du -sb, caches dropped | du -sb, warm | vfolder usage query | ledger learns the tree (one-off scan) |\n| --- | ---: | ---: | ---: | ---: |\n")
	if u.notMeasured != "" {
		fmt.Fprintf(&b, "| all sizes | not measured: %s | | | |\n", u.notMeasured)
		return b.String()
	}
	for _, r := range u.rows {
		label := fmt.Sprintf("%d files, %s", r.files, humanBytes(r.bytes))
		if r.err != "" {
			fmt.Fprintf(&b, "| %s | error: %s | | | |\n", label, r.err)
			continue
		}
		q := fmtDuration(r.query)
		if !r.ledgerOK {
			q += " (" + r.ledgerMsg + ")"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", label, fmtDuration(r.duCold), fmtDuration(r.duWarm), q, fmtDuration(r.scan))
	}
	return b.String()
}

func (e *env) renderMemory() string {
	m := e.res.memory
	var b strings.Builder
	b.WriteString("| memory (RSS) `memory` | mount + ledger open | + live views | + find over one view (every file known) | per known file | Go heap live after GC |\n| --- | ---: | ---: | ---: | ---: | ---: |\n")
	switch {
	case m.notMeasured != "":
		fmt.Fprintf(&b, "| vfolder daemon, 1M files known, 1000 live views | not measured: %s | | | | |\n", m.notMeasured)
	case m.err != "":
		fmt.Fprintf(&b, "| vfolder daemon | error: %s | | | | |\n", m.err)
	default:
		perFile := int64(0)
		if m.files > 0 {
			perFile = (m.rss - m.withViews) / m.files
		}
		fmt.Fprintf(&b, "| vfolder daemon, %d files in the ledger, %d live views | %s | %s | %s | %s | %s |\n",
			m.files, m.views, humanBytes(m.baseline), humanBytes(m.withViews), humanBytes(m.rss), humanBytes(perFile), humanBytes(m.heapLive))
	}
	return b.String()
}

// hasVfolder reports whether a vfolder configuration is among configs.
func hasVfolder(configs []string) bool {
	for _, c := range configs {
		if strings.HasPrefix(c, "vfolder") {
			return true
		}
	}
	return false
}

// peerCommands lists the command line of every peer run as a child
// process, in table order ("" if none was set up).
func (e *env) peerCommands() string {
	var out []string
	for _, c := range e.res.allConfigs() {
		if cmd, ok := e.res.commands[c]; ok {
			out = append(out, c+": `"+cmd+"`")
		}
	}
	return strings.Join(out, "; ")
}

// renderReport is the whole BENCHMARKS.md.
func (e *env) renderReport() string {
	o := e.opts
	m := e.machine
	var b strings.Builder
	b.WriteString("# vfolder benchmarks\n\n")
	fmt.Fprintf(&b, "Produced by `make bench` (`go run ./contrib/bench %s`) on %s, in %s.\n",
		strings.Join(o.argv, " "), e.started.UTC().Format("2006-01-02 15:04 MST"), time.Since(e.started).Round(time.Second))
	seqMore := ""
	if n := o.groupRuns(groupSeqWrite); n > o.runs && slices.ContainsFunc(e.res.workloads, func(id string) bool {
		w, _ := workloadByID(id)
		return w.group == groupSeqWrite
	}) {
		seqMore = fmt.Sprintf(" (%d for the sequential writes)", n)
	}
	fmt.Fprintf(&b, "Each cell is the median of %d runs%s, interleaved across configurations (the order rotates every run), ", o.runs, seqMore)
	b.WriteString("followed by the speed relative to native: 1.00x is as fast as the native directory, 0.50x half as fast, whatever the unit ")
	b.WriteString("(↑: higher is better, ↓: lower is better). n/a: the workload writes and the view is read-only.\n\n")

	b.WriteString("## Machine\n\n| | |\n| --- | --- |\n")
	fmt.Fprintf(&b, "| CPU | %s |\n| Cores | %s |\n| Memory | %s |\n| Kernel | %s |\n| OS | %s |\n| Backing | %s |\n| Load average (1/5/15 min) | %s at start, %s at end |\n| Software | %s |\n\n",
		m.CPU, m.Cores, m.Memory, m.Kernel, m.OS, m.Backing, m.Load, loadAvg(), m.Tools)

	b.WriteString("## Configurations\n\nAll of them show the same backing directory (a vfolder folder directory on a local vfolder volume)")
	if slices.Contains(e.res.configs, cfgVfolderRWNoLimit) {
		b.WriteString(", except " + cfgVfolderRWNoLimit + ": a second folder on the same volume, whose fixture files are hard links to the same inodes")
	}
	b.WriteString(". Each configuration writes into scratch directories of its own.\n\n")
	for _, c := range e.res.allConfigs() {
		if len(e.tableWorkloads()) == 0 {
			b.WriteString("(none: no workload of the main table was selected)\n")
			break
		}
		d := e.res.describe[c]
		if err, bad := e.res.setupErr[c]; bad {
			d += " — setup failed: " + err
		}
		fmt.Fprintf(&b, "- **%s**: %s\n", c, d)
	}

	b.WriteString("\n## Results\n\n")
	b.WriteString(e.renderTable())
	if a := e.renderAblation(); a != "" {
		b.WriteString("\n## Ablation\n\n")
		fmt.Fprintf(&b, "What each data-path tuning of vfolder brings: the median of the default column (%s, or %s for -passthrough) against a mount with only that tuning off, on the workloads it can affect; change: positive means the tuning helps (see Method).\n\n", cfgVfolderRW, cfgVfolderRO)
		b.WriteString(a)
	}

	b.WriteString("\n## Method\n\n")
	want := map[string]bool{}
	for _, id := range e.res.workloads {
		want[id] = true
	}
	if groupWanted(groupSeqRead, want) {
		fmt.Fprintf(&b, "- Sequential reads: %s file, 1 MiB blocks, one process. Cold reads drop the caches (`echo 3 > /proc/sys/vm/drop_caches`) and open the file anew; warm reads read it once, then time a second open and read.\n", humanBytes(o.size))
	}
	if groupWanted(groupSeqWrite, want) {
		fmt.Fprintf(&b, "- Sequential writes: each run starts with `sync` and `echo 3 > /proc/sys/vm/drop_caches` (no dirty or cached pages of earlier runs), then a worker process writes %s in 1 MiB write(2) calls, calls fsync(2) and closes the file, timed from open(2) to the end of close(2) (fio's end_fsync=1); the figure is bytes / that time. New file: O_CREAT|O_EXCL in a scratch directory, removed after the run; overwrite: the %s fixture rewritten from offset 0 without truncation. The fsync makes every configuration do the same work, the data on the backing disk: timed to close(2) only, a new file's figure is how much of it the backing page cache absorbs before dirty-page writeback throttles the writer, which depends on the dirty pages and free memory the previous runs (other configurations, other processes) left, not on the path measured: runs of the same native write then differ several times over. %d runs (--seq-runs, when more than --runs), as these figures depend on the backing disk's writeback and vary more than the others.\n", humanBytes(o.size), fxBig, o.groupRuns(groupSeqWrite))
	}
	if groupWanted(groupRandom, want) {
		fmt.Fprintf(&b, "- Random: fio (psync, iodepth 1, one job, bs 4k, --time_based --runtime %v) on a %s file. Hit: a process reads the file whole through the configuration and keeps it open until fio ends (so that a server dropping the backing file's cache when a file is closed, like mergerfs with dropcacheonclose, cannot do so before or during the run), and fio keeps the cache (--invalidate=0); where an open drops the kernel's cached pages (no FOPEN_KEEP_CACHE), fio's reads go through the server to the backing file's page cache. That process also counts the file's pages in the page cache, on the client side or on the backing side (mincore(2) every 20 ms, from the warm-up to the end of the run); a run during which more than 1%% of them were in neither (the kernel reclaimed them, so fio read them from storage) is repeated, up to %d attempts, then counts as failed; repeats are listed in the notes. Miss: caches dropped and O_DIRECT; a FUSE server that opens the backing file without O_DIRECT serves these reads from the backing page cache and can look faster than native. Writes are buffered.\n", o.fioRuntime, humanBytes(o.randSize), hitAttempts)
	}
	if groupWanted(groupMeta, want) {
		fmt.Fprintf(&b, "- Metadata: %d files of %d bytes in directories of %d; stat and unlink run after dropping the caches.\n", o.files, metaFileSize, filesPerDir)
	}
	if groupWanted(groupTree, want) {
		fmt.Fprintf(&b, "- Tree: one tarball of %s, made once (`tar -cf TARBALL -C %s %s`, on the work directory's file system, outside every mount) and extracted by every configuration. Each of these starts after `sync` and `echo 3 > /proc/sys/vm/drop_caches`, runs as root in a process of its own, and is timed from its start to its exit: `untar`: `tar %s`; `untar-chown`: `tar %s` (as root tar restores the archive's owners, one chown per entry), into a directory of its own that is then removed through the backing directory, untimed; `find`: `find TREE`; `du`: `du -s TREE`; the stat storm: a worker lstat()s every entry, %d passes, paths known in advance like a git index; `rm`: `rm -rf TREE`. TREE is the tree `untar` extracted (on read-only views, the same tree extracted once on the backing side).\n",
			o.treeSrc, filepath.Dir(o.treeSrc), filepath.Base(o.treeSrc),
			strings.Join(untarArgs("TARBALL", "DIR", false), " "), strings.Join(untarArgs("TARBALL", "DIR", true), " "), o.statPasses)
	}
	if cmds := e.peerCommands(); cmds != "" {
		b.WriteString("- Peers run as child processes, exactly as (BACKING: the shared backing directory, MOUNTPOINT: the configuration's mount point; nothing else is passed): " + cmds + ". go-fuse's loopback and vfolder are mounted in the harness process with the options under Configurations.\n")
	}
	b.WriteString("- Before every measurement the harness syncs and waits until none of its FUSE connections has a request in flight (/sys/fs/fuse/connections/N/waiting): the kernel sends RELEASE asynchronously, so a server may still be working on files the previous configuration closed (mergerfs's dropcacheonclose drops the page cache of the backing files every configuration shares).\n")
	b.WriteString("- Every timed operation runs in its own process (a worker, fio, tar, find, du, rm), never in the process serving the FUSE mounts. Everything runs in a private mount namespace.\n")
	if len(e.res.ablated) > 0 {
		b.WriteString("- " + e.ablationMethod() + "\n")
	}
	if hasVfolder(e.res.configs) {
		b.WriteString("- Directory caching (FOPEN_CACHE_DIR, the kernel keeping a directory's listing in its page cache across opens) is not used by vfolder: every listing reaches the daemon, which reads the backing directory; there is nothing to turn off for it.\n")
	}
	if e.res.usage != nil && e.res.usage.method != "" {
		b.WriteString("- Usage query: " + e.res.usage.method + "\n")
	}
	if e.res.memory != nil && e.res.memory.method != "" && e.res.memory.notMeasured == "" {
		b.WriteString("- Memory: " + e.res.memory.method + "\n")
	}
	if e.res.cluster != nil && e.res.cluster.method != "" && e.res.cluster.notMeasured == "" {
		b.WriteString("- Cluster write: " + e.res.cluster.method + "\n")
	}

	notes := append([]string(nil), e.notes...)
	for _, id := range e.res.workloads {
		for _, c := range e.res.allConfigs() {
			if _, bad := e.res.setupErr[c]; bad || e.res.cells[id][c] == nil {
				continue
			}
			for _, er := range e.res.cells[id][c].errs {
				notes = append(notes, fmt.Sprintf("%s on %s failed: %s", id, c, er))
			}
		}
	}
	if len(notes) > 0 {
		b.WriteString("\n## Notes\n\n")
		for _, n := range notes {
			b.WriteString("- " + n + "\n")
		}
	}

	b.WriteString("\n## Every run\n\n<details><summary>values per run</summary>\n\nSpread: the smallest and the largest run, and their difference relative to the median.\n\n| workload | configuration | runs | median | spread |\n| --- | --- | --- | ---: | --- |\n")
	for _, w := range e.tableWorkloads() {
		for _, c := range e.res.allConfigs() {
			cl := e.res.cells[w.id][c]
			if cl == nil || cl.na != "" || len(cl.runs)+len(cl.errs) == 0 {
				continue
			}
			var runs []int
			for r := range cl.runs {
				runs = append(runs, r)
			}
			sort.Ints(runs)
			var vals []string
			for _, r := range runs {
				vals = append(vals, fmtVal(cl.runs[r]))
			}
			for range cl.errs {
				vals = append(vals, "error")
			}
			fmt.Fprintf(&b, "| %s | %s | %s %s | %s |\n", w.id, c, strings.Join(vals, ", "), w.unit, spreadText(cl))
		}
	}
	b.WriteString("\n</details>\n")
	return b.String()
}
