package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
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

// cellText is a table cell: the median and, off native, the speed
// relative to native.
func (e *env) cellText(w workload, cfg string) string {
	r := e.res
	if _, bad := r.setupErr[cfg]; bad {
		return "setup failed"
	}
	c := r.cells[w.id][cfg]
	if c.na != "" {
		return "n/a"
	}
	v, ok := c.median()
	if !ok {
		if len(c.errs) > 0 {
			return "error"
		}
		return "not run"
	}
	s := fmtVal(v)
	if len(c.errs) > 0 {
		s += fmt.Sprintf(" (%d/%d failed)", len(c.errs), len(c.errs)+len(c.runs))
	}
	if cfg == cfgNative {
		return s
	}
	nv, ok := r.cells[w.id][cfgNative].median()
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
		if w.group == groupUsage || w.group == groupMemory {
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
	if e.res.usage != nil {
		b.WriteString("\n" + e.renderUsage())
	}
	if e.res.memory != nil {
		b.WriteString("\n" + e.renderMemory())
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

// renderReport is the whole BENCHMARKS.md.
func (e *env) renderReport() string {
	o := e.opts
	m := e.machine
	var b strings.Builder
	b.WriteString("# vfolder benchmarks\n\n")
	fmt.Fprintf(&b, "Produced by `make bench` (`go run ./contrib/bench %s`) on %s, in %s.\n",
		strings.Join(o.argv, " "), e.started.UTC().Format("2006-01-02 15:04 MST"), time.Since(e.started).Round(time.Second))
	fmt.Fprintf(&b, "Each cell is the median of %d runs, interleaved across configurations (the order rotates every run), ", o.runs)
	b.WriteString("followed by the speed relative to native: 1.00x is as fast as the native directory, 0.50x half as fast, whatever the unit ")
	b.WriteString("(↑: higher is better, ↓: lower is better). n/a: the workload writes and the view is read-only.\n\n")

	b.WriteString("## Machine\n\n| | |\n| --- | --- |\n")
	fmt.Fprintf(&b, "| CPU | %s |\n| Cores | %s |\n| Memory | %s |\n| Kernel | %s |\n| OS | %s |\n| Backing | %s |\n| Load average (1/5/15 min) | %s at start, %s at end |\n| Software | %s |\n\n",
		m.CPU, m.Cores, m.Memory, m.Kernel, m.OS, m.Backing, m.Load, loadAvg(), m.Tools)

	b.WriteString("## Configurations\n\nAll of them show the same backing directory (a vfolder folder directory on a local vfolder volume).\n\n")
	for _, c := range e.res.configs {
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

	b.WriteString("\n## Method\n\n")
	want := map[string]bool{}
	for _, id := range e.res.workloads {
		want[id] = true
	}
	if groupWanted(groupSeqWrite, want) || groupWanted(groupSeqRead, want) {
		fmt.Fprintf(&b, "- Sequential: %s file, 1 MiB blocks, one process; new file timed from open to close; overwrite rewrites the existing file and ends with fsync. Cold reads drop the caches (`echo 3 > /proc/sys/vm/drop_caches`) and open the file anew; warm reads read it once, then time a second open and read.\n", humanBytes(o.size))
	}
	if groupWanted(groupRandom, want) {
		fmt.Fprintf(&b, "- Random: fio (psync, iodepth 1, one job, bs 4k, --time_based --runtime %v) on a %s file. Hit: the file is read once through the configuration first and fio keeps the cache (--invalidate=0); where an open drops the kernel's cached pages (no FOPEN_KEEP_CACHE), fio's own open refills them through the server. Miss: caches dropped and O_DIRECT; a FUSE server that opens the backing file without O_DIRECT serves these reads from the backing page cache and can look faster than native. Writes are buffered.\n", o.fioRuntime, humanBytes(o.randSize))
	}
	if groupWanted(groupMeta, want) {
		fmt.Fprintf(&b, "- Metadata: %d files of %d bytes in directories of %d; stat and unlink run after dropping the caches.\n", o.files, metaFileSize, filesPerDir)
	}
	if groupWanted(groupTree, want) {
		fmt.Fprintf(&b, "- Tree: a tarball of %s extracted with `tar -xf --no-same-owner`; `find`, `du -s` and the stat storm (lstat of every entry, %d passes, paths known in advance like a git index) start with dropped caches; `rm -rf` follows.\n", o.treeSrc, o.statPasses)
	}
	b.WriteString("- Every timed operation runs in its own process (a worker, fio, tar, find, du, rm), never in the process serving the FUSE mounts. Everything runs in a private mount namespace.\n")
	if e.res.usage != nil && e.res.usage.method != "" {
		b.WriteString("- Usage query: " + e.res.usage.method + "\n")
	}
	if e.res.memory != nil && e.res.memory.method != "" && e.res.memory.notMeasured == "" {
		b.WriteString("- Memory: " + e.res.memory.method + "\n")
	}

	notes := append([]string(nil), e.notes...)
	for _, id := range e.res.workloads {
		for _, c := range e.res.configs {
			if _, bad := e.res.setupErr[c]; bad {
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

	b.WriteString("\n## Every run\n\n<details><summary>values per run</summary>\n\n| workload | configuration | runs |\n| --- | --- | --- |\n")
	for _, w := range e.tableWorkloads() {
		for _, c := range e.res.configs {
			cl := e.res.cells[w.id][c]
			if cl.na != "" || len(cl.runs)+len(cl.errs) == 0 {
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
			fmt.Fprintf(&b, "| %s | %s | %s %s |\n", w.id, c, strings.Join(vals, ", "), w.unit)
		}
	}
	b.WriteString("\n</details>\n")
	return b.String()
}
