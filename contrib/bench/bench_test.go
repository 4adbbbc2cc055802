package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test binary play the harness's roles: the harness
// re-executes /proc/self/exe, which is this binary under go test.
func TestMain(m *testing.M) {
	if os.Getenv(roleEnv) != "" {
		os.Exit(Main(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// needRoot skips unless the harness can run here.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the harness mounts file systems and drops caches")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("needs /dev/fuse")
	}
	for _, tool := range []string{"fio", "tar", "find", "du", "rm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (make deps installs it)", tool)
		}
	}
}

// smallTree makes a source tree of a few dozen files for the tree
// workloads.
func smallTree(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "src")
	for d := 0; d < 4; d++ {
		dir := filepath.Join(root, fmt.Sprintf("pkg%d", d), "sub")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for f := 0; f < 10; f++ {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%d.go", f)), bytes.Repeat([]byte("x"), 100*f), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return root
}

// harness starts the harness as `make bench` would (role parent).
func harness(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(envWithout(os.Environ(), roleEnv), roleEnv+"="+roleParent)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	return cmd
}

// checkNothingLeft fails if dir holds anything or anything is mounted
// below it.
func checkNothingLeft(t *testing.T, dir string) {
	t.Helper()
	if err := checkNoMounts(dir, ""); err != nil {
		t.Errorf("the harness left mounts behind: %v", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		t.Errorf("the harness left %s in %s", e.Name(), dir)
	}
}

// runReport runs the harness with args plus --dir and --out in fresh
// temporary directories, checks that it succeeded and left nothing
// behind, and returns the report and what the harness printed.
func runReport(t *testing.T, timeout time.Duration, args ...string) (report, stdout string) {
	t.Helper()
	dir := t.TempDir()
	out := filepath.Join(t.TempDir(), "BENCHMARKS.md")
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := harness(ctx, append(args, "--dir", dir, "--out", out)...)
	var outBuf, errBuf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &outBuf, &errBuf
	start := time.Now()
	err := cmd.Run()
	t.Logf("harness ran %v", time.Since(start).Round(time.Millisecond))
	if err != nil {
		t.Fatalf("harness failed: %v\nstdout:\n%s\nstderr:\n%s", err, outBuf.String(), errBuf.String())
	}
	checkNothingLeft(t, dir)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return string(b), outBuf.String()
}

// TestQuickRun runs the whole harness in --quick mode on a tmpfs with
// tiny sizes against native and go-fuse's loopback, and checks the report.
func TestQuickRun(t *testing.T) {
	needRoot(t)
	report, stdout := runReport(t, 90*time.Second, "--quick", "--tmpfs", "-q",
		"--configs", "native,loopback",
		"--size", "2MiB", "--rand-size", "1MiB", "--files", "50",
		"--fio-runtime", "200ms", "--runs", "2", "--stat-passes", "2",
		"--tree", smallTree(t), "--usage-files", "20,60", "--views", "3",
		"--workloads", strings.Join(slices.DeleteFunc(workloadIDs(), func(id string) bool { return id == "cluster-write" }), ","))
	for _, h := range []string{"# vfolder benchmarks", "## Machine", "| CPU |", "| Kernel |", "| Backing | tmpfs", "## Configurations", "## Results"} {
		if !strings.Contains(report, h) {
			t.Errorf("report lacks %q", h)
		}
	}
	rows := tableRows(report)
	for _, w := range allWorkloads {
		if w.group == groupCluster {
			continue // TestClusterRow
		}
		cells, ok := rows[w.id]
		if !ok {
			t.Errorf("no row for workload %s", w.id)
			continue
		}
		switch w.group {
		case groupUsage:
			// | label | du cold | du warm | query | scan |
			if len(cells) != 5 {
				t.Errorf("usage row has %d cells: %q", len(cells), cells)
				continue
			}
			for _, c := range cells[1:] {
				if !strings.HasSuffix(c, "s") || strings.Contains(c, "error") {
					t.Errorf("usage row cell %q is not a duration", c)
				}
			}
		case groupMemory:
			if len(cells) != 6 {
				t.Errorf("memory row has %d cells: %q", len(cells), cells)
				continue
			}
			for _, c := range cells[1:] {
				if !strings.HasSuffix(c, "MiB") && !strings.HasSuffix(c, "KiB") && !strings.HasSuffix(c, "GiB") && !strings.HasSuffix(c, " B") {
					t.Errorf("memory row cell %q is not a size", c)
				}
			}
		default:
			// | title | unit | native | loopback |
			if len(cells) != 4 {
				t.Errorf("row %s has %d cells, want 4: %q", w.id, len(cells), cells)
				continue
			}
			if !strings.HasPrefix(cells[1], w.unit) {
				t.Errorf("row %s: unit %q, want %q", w.id, cells[1], w.unit)
			}
			if !numberRe(cells[2]) {
				t.Errorf("row %s: native cell %q is not a number", w.id, cells[2])
			}
			if !numberRe(cells[3]) || !strings.HasSuffix(cells[3], "x)") {
				t.Errorf("row %s: loopback cell %q is not a number with a ratio", w.id, cells[3])
			}
		}
	}
	if !strings.Contains(stdout, "`seqwrite-new`") {
		t.Errorf("the table was not printed:\n%s", stdout)
	}
	// Both untar forms, the cache rule and every run's spread are in the
	// report.
	for _, want := range []string{"`untar`: `tar -xf TARBALL -C DIR --no-same-owner`", "`untar-chown`: `tar -xf TARBALL -C DIR`",
		"`echo 3 > /proc/sys/vm/drop_caches`", "| workload | configuration | runs | median | spread |"} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	for _, id := range []string{"untar", "untar-chown", "find", "rm"} {
		if !regexp.MustCompile(`(?m)^\| ` + id + ` \| loopback \| [0-9.e-]+, [0-9.e-]+ s \| [0-9.e-]+ \| [0-9.e-]+\.\.[0-9.e-]+ \([0-9]+%\) \|$`).MatchString(report) {
			t.Errorf("Every run lacks the two runs, median and spread of %s on loopback", id)
		}
	}
}

// TestClusterRow runs the cluster row alone (three vfolderd processes from
// bin/vfolderd and a private etcd) with small sizes, and checks its table
// and that it left nothing behind.
func TestClusterRow(t *testing.T) {
	needRoot(t)
	if _, err := etcdBinary(); err != nil {
		t.Skipf("no etcd binary (install Debian's etcd-server): %v", err)
	}
	if _, err := findVfolderd(); err != nil {
		t.Skipf("the cluster row runs bin/vfolderd: %v", err)
	}
	report, _ := runReport(t, 120*time.Second, "--tmpfs", "-q", "--workloads", "cluster-write", "--runs", "1", "--size", "16MiB")
	var data [][]string
	in := false
	for _, l := range strings.Split(report, "\n") {
		switch {
		case strings.Contains(l, "`cluster-write`"):
			in = true
		case !strings.HasPrefix(l, "| "):
			in = false
		case in && !strings.HasPrefix(l, "| ---"):
			var cells []string
			for _, c := range strings.Split(strings.Trim(l, "|"), "|") {
				cells = append(cells, strings.TrimSpace(c))
			}
			data = append(data, cells)
		}
	}
	if len(data) != 2 {
		t.Fatalf("cluster table has %d data rows, want 2:\n%s", len(data), report)
	}
	for i, want := range []string{"1", "3"} {
		r := data[i]
		if len(r) != 7 || r[1] != want || !strings.HasSuffix(r[4], "MiB/s") || !numberRe(r[6]) || !strings.HasSuffix(r[5], "x") {
			t.Errorf("cluster row %d: %q", i, r)
		}
	}
	if !strings.Contains(report, "- Cluster write: ") {
		t.Errorf("the method of the cluster row is missing:\n%s", report)
	}
}

// tableRows maps the workload id in backticks of every table row to the
// row's cells.
func tableRows(report string) map[string][]string {
	rows := map[string][]string{}
	sc := bufio.NewScanner(strings.NewReader(report))
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, "| ") {
			continue
		}
		var cells []string
		for _, c := range strings.Split(strings.Trim(l, "|"), "|") {
			cells = append(cells, strings.TrimSpace(c))
		}
		i := strings.Index(cells[0], "`")
		j := strings.LastIndex(cells[0], "`")
		if i < 0 || j <= i {
			continue
		}
		id := cells[0][i+1 : j]
		if _, ok := workloadByID(id); ok && (id == "usage-query" || id == "memory" || id == "cluster-write") {
			// the header row of the usage and memory tables names them;
			// their data row follows
			continue
		}
		rows[id] = cells
	}
	// usage and memory data rows
	sc = bufio.NewScanner(strings.NewReader(report))
	section := ""
	for sc.Scan() {
		l := sc.Text()
		switch {
		case strings.Contains(l, "`usage-query`"):
			section = "usage-query"
			continue
		case strings.Contains(l, "`memory`"):
			section = "memory"
			continue
		case strings.Contains(l, "`cluster-write`"):
			section = "cluster-write"
			continue
		case !strings.HasPrefix(l, "| "):
			section = ""
			continue
		case strings.HasPrefix(l, "| ---"):
			continue
		}
		if section != "" {
			var cells []string
			for _, c := range strings.Split(strings.Trim(l, "|"), "|") {
				cells = append(cells, strings.TrimSpace(c))
			}
			if _, seen := rows[section]; !seen {
				rows[section] = cells
			}
		}
	}
	return rows
}

// numberRe reports whether a cell starts with a positive number.
func numberRe(s string) bool {
	f := strings.Fields(s)
	if len(f) == 0 {
		return false
	}
	var v float64
	_, err := fmt.Sscanf(f[0], "%g", &v)
	return err == nil && v > 0
}

// TestInterrupt sends SIGINT in the middle of a run: the harness must
// unmount everything, remove its work directory and exit with 130.
func TestInterrupt(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := harness(ctx, "--quick", "--configs", "native,loopback", "--workloads", "seqread,meta",
		"--size", "2MiB", "--files", "50", "--runs", "100", "--dir", dir,
		"--out", filepath.Join(t.TempDir(), "out.md"))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until the runs have started (everything is mounted).
	sc := bufio.NewScanner(stderr)
	var log strings.Builder
	started := false
	for sc.Scan() {
		log.WriteString(sc.Text() + "\n")
		if strings.Contains(sc.Text(), "run 2/100") {
			started = true
			break
		}
	}
	if !started {
		cmd.Wait()
		t.Fatalf("the harness did not start its runs:\n%s", log.String())
	}
	if mnts, err := mountsUnder(dir); err != nil || len(mnts) != 0 {
		t.Errorf("mounts visible outside the harness's namespace: %v %v", mnts, err)
	}
	// Like ^C in a terminal: the whole process group gets SIGINT.
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	go func() {
		for sc.Scan() {
			log.WriteString(sc.Text() + "\n")
		}
	}()
	err = cmd.Wait()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 130 {
		t.Errorf("exit after SIGINT: %v, want status 130", err)
	}
	checkNothingLeft(t, dir)
}

func TestParseSize(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"1GiB", 1 << 30, true}, {"1g", 1 << 30, true}, {"64MiB", 64 << 20, true}, {"512M", 512 << 20, true},
		{"4096", 4096, true}, {"4096B", 4096, true}, {"1.5GiB", 3 << 29, true}, {" 2 KiB ", 2048, true},
		{"", 0, false}, {"GiB", 0, false}, {"1.5", 0, false}, {"1x", 0, false}, {"-1M", 0, false},
		{"9999999999999T", 0, false}, {"1..2M", 0, false}, {"1e3M", 0, false},
	} {
		got, err := parseSize(c.in)
		if (err == nil) != c.ok || (c.ok && got != c.want) {
			t.Errorf("parseSize(%q) = %d, %v; want %d ok=%v", c.in, got, err, c.want, c.ok)
		}
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"1GiB", "1.5m", "7", "", "8EiB", "99999999999999999999", "0.0000001k"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseSize(s)
		if err == nil && n < 0 {
			t.Fatalf("parseSize(%q) = %d: negative", s, n)
		}
	})
}

func FuzzParseCounts(f *testing.F) {
	for _, s := range []string{"1000,100000,1000000", "", ",", "1,,2", "0", "-5", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out, err := parseCounts(s)
		if err != nil {
			return
		}
		if len(out) == 0 {
			t.Fatalf("parseCounts(%q) returned nothing without an error", s)
		}
		for _, n := range out {
			if n < 1 {
				t.Fatalf("parseCounts(%q) returned %d", s, n)
			}
		}
	})
}

func TestParseMountInfo(t *testing.T) {
	in := "36 35 98:0 / /mnt/a\\040b rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n" +
		"40 36 0:52 / /var/tmp/x/mnt/loopback rw,nosuid,nodev shared:7 - fuse.loopback /src rw,user_id=0\n" +
		"garbage line\n"
	got := parseMountInfo([]byte(in))
	if len(got) != 2 {
		t.Fatalf("got %d entries: %+v", len(got), got)
	}
	if got[0].point != "/mnt/a b" || got[0].fstype != "ext3" || got[0].source != "/dev/root" {
		t.Errorf("first entry: %+v", got[0])
	}
	if got[1].point != "/var/tmp/x/mnt/loopback" || got[1].fstype != "fuse.loopback" || got[1].minor != 52 {
		t.Errorf("second entry: %+v", got[1])
	}
}

func FuzzParseMountInfo(f *testing.F) {
	f.Add([]byte("36 35 98:0 / /mnt/a\\040b rw master:1 - ext3 /dev/root rw\n"))
	f.Add([]byte("1 2 3 4 5 6 - \\\\ \\0 \\999\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, e := range parseMountInfo(b) {
			if e.fstype == "" {
				t.Fatalf("entry without a file system type: %+v", e)
			}
		}
	})
}

func FuzzUnescapeMount(f *testing.F) {
	for _, s := range []string{`a\040b`, `\`, `\04`, `\0400`, `\777`, "plain"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u := unescapeMount(s)
		if len(u) > len(s) {
			t.Fatalf("unescapeMount(%q) = %q grew", s, u)
		}
		if !strings.Contains(s, `\`) && u != s {
			t.Fatalf("unescapeMount(%q) = %q changed a string without escapes", s, u)
		}
	})
}

func TestSelect(t *testing.T) {
	ws, err := selectWorkloads("meta,du")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(ws, ",") != "create,stat,negstat,unlink,du" {
		t.Errorf("selectWorkloads: %v", ws)
	}
	if _, err := selectWorkloads("nope"); err == nil {
		t.Error("unknown workload accepted")
	}
	cs, err := selectConfigs("mergerfs,loopback")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(cs, ",") != "native,loopback,mergerfs" {
		t.Errorf("selectConfigs: %v (native first, table order)", cs)
	}
	if _, err := selectConfigs("zfs"); err == nil {
		t.Error("unknown configuration accepted")
	}
}

func TestMedianAndRatio(t *testing.T) {
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Errorf("median odd = %v", m)
	}
	if m := median([]float64{4, 1, 2, 3}); m != 2.5 {
		t.Errorf("median even = %v", m)
	}
	e := &env{opts: &options{}, res: newResults([]string{"seqread-cold", "rm", "randwrite"}, []string{cfgNative, cfgLoopback, cfgVfolderRO})}
	for run, v := range []float64{100, 300, 200} {
		e.res.add("seqread-cold", cfgNative, run, v, nil)
		e.res.add("seqread-cold", cfgLoopback, run, v/2, nil)
		e.res.add("rm", cfgNative, run, v/100, nil)
		e.res.add("rm", cfgLoopback, run, v/25, nil)
	}
	e.res.add("randwrite", cfgLoopback, 0, 0, fmt.Errorf("boom"))
	w, _ := workloadByID("seqread-cold")
	if got := e.cellText(w, cfgLoopback); got != "100 (0.50x)" {
		t.Errorf("throughput cell = %q", got)
	}
	w, _ = workloadByID("rm")
	if got := e.cellText(w, cfgLoopback); got != "8.00 (0.25x)" {
		t.Errorf("time cell = %q (slower must be below 1x)", got)
	}
	w, _ = workloadByID("randwrite")
	if got := e.cellText(w, cfgVfolderRO); got != "n/a" {
		t.Errorf("write on a read-only view = %q", got)
	}
	if got := e.cellText(w, cfgLoopback); got != "error" {
		t.Errorf("failed cell = %q", got)
	}
	if e.res.failures() != 1 {
		t.Errorf("failures = %d, want 1", e.res.failures())
	}
}

func TestSpread(t *testing.T) {
	c := &cell{runs: map[int]float64{0: 4, 1: 2, 2: 3}}
	lo, hi, rel, ok := c.spread()
	if !ok || lo != 2 || hi != 4 || rel != 2.0/3 {
		t.Errorf("spread = %v, %v, %v, %v; want 2, 4, 0.667, true", lo, hi, rel, ok)
	}
	if got := spreadText(c); got != "3.00 | 2.00..4.00 (67%)" {
		t.Errorf("spreadText = %q", got)
	}
	one := &cell{runs: map[int]float64{0: 5}}
	if _, _, _, ok := one.spread(); ok {
		t.Error("spread of one run reported")
	}
	if got := spreadText(one); got != "5.00 | one run" {
		t.Errorf("spreadText of one run = %q", got)
	}
}

func TestUntarArgs(t *testing.T) {
	if got := strings.Join(untarArgs("t.tar", "d", false), " "); got != "-xf t.tar -C d --no-same-owner" {
		t.Errorf("untar without chown: %q", got)
	}
	if got := strings.Join(untarArgs("t.tar", "d", true), " "); got != "-xf t.tar -C d" {
		t.Errorf("untar with chown: %q", got)
	}
	e := &env{opts: &options{}, res: newResults([]string{"untar"}, []string{cfgNative, cfgBindfs, cfgMergerfs})}
	if got := e.peerCommands(); got != "" {
		t.Errorf("peer commands with none set up = %q", got)
	}
	e.res.commands[cfgBindfs] = "/usr/bin/bindfs -f BACKING MOUNTPOINT"
	if got := e.peerCommands(); got != "bindfs: `/usr/bin/bindfs -f BACKING MOUNTPOINT`" {
		t.Errorf("peer commands = %q", got)
	}
	c := newConfig(cfgBindfs).(*daemonConfig)
	if got := commandLine(append([]string{"/usr/bin/bindfs"}, c.args("/b", "/m")...), map[string]string{"/b": "BACKING", "/m": "MOUNTPOINT"}); got != "/usr/bin/bindfs -f BACKING MOUNTPOINT" {
		t.Errorf("bindfs command = %q (only -f: its defaults, single-threaded)", got)
	}
}

func TestParseFioIOPS(t *testing.T) {
	out := []byte(`fio: some warning
{"fio version":"fio-3.33","jobs":[{"jobname":"randread","error":0,
 "read":{"io_bytes":4096000,"iops":12345.6,"total_ios":1000},
 "write":{"io_bytes":0,"iops":0.0,"total_ios":0}}]}`)
	v, err := parseFioIOPS(out, "randread")
	if err != nil || v != 12345.6 {
		t.Errorf("parseFioIOPS = %v, %v", v, err)
	}
	if _, err := parseFioIOPS(out, "randwrite"); err == nil {
		t.Error("a job with no writes was accepted as a write result")
	}
	if _, err := parseFioIOPS([]byte("no json"), "randread"); err == nil {
		t.Error("output without JSON accepted")
	}
}

// TestQuickQuota runs the harness on a tmpfs with the three rw vfolder
// columns and --cpuprofile, and checks the quota overhead table and the
// profile.
func TestQuickQuota(t *testing.T) {
	needRoot(t)
	prof := filepath.Join(t.TempDir(), "cpu.pprof")
	report, _ := runReport(t, 120*time.Second, "--quick", "--tmpfs", "-q",
		"--configs", "vfolder-rw,vfolder-rw-nolimit,vfolder-rw-untracked",
		"--workloads", "seqwrite,random,meta",
		"--size", "2MiB", "--rand-size", "1MiB", "--files", "50",
		"--fio-runtime", "200ms", "--runs", "2", "--cpuprofile", prof)
	for _, c := range []string{cfgVfolderRW, cfgVfolderRWNoLimit, cfgVfolderRWUntracked} {
		if !strings.Contains(report, "- **"+c+"**: ") {
			t.Errorf("report does not describe %s", c)
		}
	}
	if !strings.Contains(report, "raised the folder's ledger usage by 4096 bytes") {
		t.Error("the ledger probe of the rw views is not in the report")
	}
	// | quota overhead | unit | rw vs nolimit | rw vs untracked | nolimit vs untracked |
	var got []string
	main, _, _ := strings.Cut(report, "## Every run") // whose rows have 5 cells too
	for _, l := range strings.Split(main, "\n") {
		cells := strings.Split(strings.Trim(l, "|"), "|")
		if len(cells) != 5 {
			continue
		}
		id := strings.TrimSpace(cells[0])
		w, ok := workloadByID(id)
		if !ok {
			continue
		}
		if !w.writes {
			t.Errorf("quota overhead row for %s, which does not write", id)
		}
		got = append(got, id)
		for _, c := range cells[2:] {
			c = strings.TrimSpace(c)
			var v float64
			if _, err := fmt.Sscanf(c, "%g%%", &v); err != nil || !strings.HasSuffix(c, "%") || (c[0] != '+' && c[0] != '-') {
				t.Errorf("quota overhead row %s: cell %q is not a signed percentage", id, c)
			}
		}
	}
	if want := "seqwrite-new,seqwrite-overwrite,randwrite,create,unlink"; strings.Join(got, ",") != want {
		t.Errorf("quota overhead rows %v, want %s", got, want)
	}
	st, err := os.Stat(prof)
	if err != nil || st.Size() == 0 {
		t.Errorf("no CPU profile written: %v", err)
	}
}

func TestQuotaOverhead(t *testing.T) {
	cfgs := []string{cfgNative, cfgVfolderRW, cfgVfolderRWNoLimit, cfgVfolderRWUntracked}
	e := &env{opts: &options{}, res: newResults([]string{"create", "rm", "stat"}, cfgs)}
	for run := 0; run < 3; run++ {
		e.res.add("create", cfgVfolderRW, run, 900, nil)
		e.res.add("create", cfgVfolderRWNoLimit, run, 1000, nil)
		e.res.add("create", cfgVfolderRWUntracked, run, 1200, nil)
		e.res.add("rm", cfgVfolderRW, run, 2.2, nil)
		e.res.add("rm", cfgVfolderRWNoLimit, run, 2, nil)
	}
	w, _ := workloadByID("create")
	// 900 ops/s against 1000: each op takes 1000/900 as long.
	if v, ok := e.overhead(w, cfgVfolderRW, cfgVfolderRWNoLimit); !ok || v < 11.1 || v > 11.2 {
		t.Errorf("throughput overhead = %v, %v; want +11.1%%", v, ok)
	}
	if v, ok := e.overhead(w, cfgVfolderRWUntracked, cfgVfolderRW); !ok || v > -24.9 || v < -25.1 {
		t.Errorf("faster view: overhead = %v, %v; want -25%%", v, ok)
	}
	w, _ = workloadByID("rm")
	if v, ok := e.overhead(w, cfgVfolderRW, cfgVfolderRWNoLimit); !ok || v < 9.99 || v > 10.01 {
		t.Errorf("time overhead = %v, %v; want +10%%", v, ok)
	}
	if _, ok := e.overhead(w, cfgVfolderRW, cfgVfolderRWUntracked); ok {
		t.Error("overhead against a configuration without runs")
	}
	table := e.renderQuotaOverhead()
	for _, want := range []string{"| create | ops/s | +11.1% | +33.3% | +20.0% |", "| rm | s | +10.0% | not measured | not measured |"} {
		if !strings.Contains(table, want) {
			t.Errorf("quota overhead table lacks %q:\n%s", want, table)
		}
	}
	if strings.Contains(table, "| stat |") {
		t.Errorf("quota overhead table has a row for stat, which does not write:\n%s", table)
	}
	e.res = newResults([]string{"create"}, []string{cfgNative, cfgVfolderRW, cfgLoopback})
	if table := e.renderQuotaOverhead(); table != "" {
		t.Errorf("quota overhead table without the columns to compare:\n%s", table)
	}
}

func TestLinkFixtures(t *testing.T) {
	src, dst := t.TempDir(), filepath.Join(t.TempDir(), "f", "fixtures")
	if err := os.WriteFile(filepath.Join(src, "rand.dat"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(src, "tree"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := linkFixtures(src, dst); err != nil {
		t.Fatal(err)
	}
	a, err1 := os.Stat(filepath.Join(src, "rand.dat"))
	b, err2 := os.Stat(filepath.Join(dst, "rand.dat"))
	if err1 != nil || err2 != nil || !os.SameFile(a, b) {
		t.Errorf("rand.dat is not a hard link to the same inode: %v %v", err1, err2)
	}
	if _, err := os.Stat(filepath.Join(dst, "tree")); !os.IsNotExist(err) {
		t.Errorf("directories are linked too: %v", err)
	}
}

func TestCacheMaps(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.dat"), filepath.Join(dir, "b.dat")
	for _, p := range []string{a, b} {
		if err := os.WriteFile(p, pattern(64<<10), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c, err := mapForCache(a, b, filepath.Join(dir, "missing"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	if want := (64<<10 + os.Getpagesize() - 1) / os.Getpagesize(); c.pages != want || len(c.maps) != 2 {
		t.Errorf("pages = %d (want %d), %d files mapped (want 2)", c.pages, want, len(c.maps))
	}
	// Just written: every page is cached.
	if n, err := c.cached(); err != nil || n != c.pages {
		t.Errorf("cached = %d, %v; want %d", n, err, c.pages)
	}
	if err := os.WriteFile(filepath.Join(dir, "short.dat"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if c2, err := mapForCache(a, filepath.Join(dir, "short.dat")); err == nil {
		c2.close()
		t.Error("files of different sizes accepted")
	}
	if _, err := mapForCache(filepath.Join(dir, "missing")); err == nil {
		t.Error("nothing mapped, no error")
	}
	if hitMissAllowance(65536) != 655 || hitMissAllowance(50) != 0 {
		t.Errorf("hitMissAllowance: %d, %d", hitMissAllowance(65536), hitMissAllowance(50))
	}
}

func TestFuseWaiting(t *testing.T) {
	needRoot(t)
	if _, err := fuseWaiting(0); err == nil {
		t.Error("connection 0 exists")
	}
}

// TestQuickAblate runs the harness with --ablate on a small subset and
// checks the Ablation section: one row per tuning and selected workload it
// can affect, each with two medians and a signed change.
func TestQuickAblate(t *testing.T) {
	needRoot(t)
	report, stdout := runReport(t, 150*time.Second, "--quick", "--ablate", "--tmpfs", "-q",
		"--configs", "native,vfolder-rw", "--workloads", "seqwrite-new,find",
		"--size", "2MiB", "--runs", "2", "--tree", smallTree(t))
	if os.Getenv("BENCH_TEST_SHOW") != "" {
		t.Log(report)
	}
	sec := report[strings.Index(report, "## Ablation\n"):]
	if i := strings.Index(sec, "\n## Method"); i < 0 || !strings.Contains(report, "## Ablation\n") {
		t.Fatalf("no Ablation section before the method:\n%s", report)
	} else {
		sec = sec[:i]
	}
	if strings.Index(report, "## Ablation") < strings.Index(report, "## Results") {
		t.Error("the Ablation section comes before the results")
	}
	var got []string
	for _, l := range strings.Split(sec, "\n") {
		if !strings.HasPrefix(l, "| -") || strings.HasPrefix(l, "| ---") {
			continue
		}
		// | tuning | workload | unit | default | without | change |
		cells := strings.Split(strings.Trim(l, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if len(cells) != 6 {
			t.Errorf("ablation row has %d cells: %q", len(cells), l)
			continue
		}
		got = append(got, cells[0]+" "+cells[1])
		if !numberRe(cells[3]) || !numberRe(cells[4]) {
			t.Errorf("ablation row %q: medians are not numbers", l)
		}
		var v float64
		if c := cells[5]; len(c) < 2 || (c[0] != '+' && c[0] != '-') || !strings.HasSuffix(c, "%") {
			t.Errorf("ablation row %q: change %q is not a signed percentage", l, c)
		} else if _, err := fmt.Sscanf(c, "%g%%", &v); err != nil {
			t.Errorf("ablation row %q: change %q: %v", l, c, err)
		}
	}
	want := []string{"-maxwrite seqwrite-new", "-killpriv seqwrite-new", "-directwrite seqwrite-new",
		"-timeouts find", "-readdirplus find", "-kernelperms find"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("ablation rows %q, want %q", got, want)
	}
	for _, s := range []string{"**-maxwrite**", "**-readdirplus**", "- **vfolder-rw-timeouts**: ", "FOPEN_CACHE_DIR", "read_ahead_kb"} {
		if !strings.Contains(report, s) {
			t.Errorf("report lacks %q", s)
		}
	}
	// Tunings no selected workload can show are not run.
	for _, c := range []string{"vfolder-rw-keepcache", "vfolder-rw-readahead", "vfolder-ro-passthrough", cfgVfolderRO} {
		if strings.Contains(report, "- **"+c+"**: ") || strings.Contains(sec, "("+c+" against") {
			t.Errorf("report shows %s, which has no selected workload", c)
		}
	}
	// The ablation columns stay out of the main table.
	if rows := tableRows(report); len(rows["find"]) != 4 {
		t.Errorf("main table row for find has %d cells, want 4: %q", len(rows["find"]), rows["find"])
	}
	if !strings.Contains(stdout, "| -maxwrite | seqwrite-new |") {
		t.Errorf("the ablation table was not printed:\n%s", stdout)
	}
}

func TestSelectAblations(t *testing.T) {
	run, skipped, err := selectAblations("all", []string{"seqread-cold", "find"})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, a := range run {
		ids = append(ids, a.id)
	}
	if strings.Join(ids, ",") != "maxwrite,timeouts,readdirplus,kernelperms,readahead,passthrough" {
		t.Errorf("ablations for seqread-cold,find: %v", ids)
	}
	if len(skipped) != 4 {
		t.Errorf("skipped: %q", skipped)
	}
	if got := withBases([]string{cfgNative, cfgLoopback}, run); strings.Join(got, ",") != "native,vfolder-rw,vfolder-ro,loopback" {
		t.Errorf("withBases: %v", got)
	}
	if _, _, err := selectAblations("maxwrite,nope", nil); err == nil {
		t.Error("unknown ablation accepted")
	}
	o, err := parseOptions([]string{"--ablate", "--ablations", "keepcache", "--configs", "native", "--workloads", "seqread,find"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(o.ablations) != 1 || o.ablations[0].config() != "vfolder-rw-keepcache" || strings.Join(o.configs, ",") != "native,vfolder-rw" {
		t.Errorf("--ablate --ablations keepcache: ablations %v, configs %v", o.ablations, o.configs)
	}
	if _, err := parseOptions([]string{"--ablations", "keepcache"}, io.Discard); err == nil {
		t.Error("--ablations without --ablate accepted")
	}
	for _, a := range ablations {
		if c := newConfig(a.config()); c.name() != a.config() || c.readOnly() != (a.base == cfgVfolderRO) || newConfigReadOnly(a.config()) != c.readOnly() {
			t.Errorf("configuration of -%s: name %s, read-only %v", a.id, c.name(), c.readOnly())
		}
		for _, w := range a.workloads {
			wl, ok := workloadByID(w)
			if !ok || (a.base == cfgVfolderRO && wl.writes) {
				t.Errorf("-%s runs workload %s, which is unknown or writes on a read-only view", a.id, w)
			}
		}
	}
}

func TestRenderAblation(t *testing.T) {
	cfgs := []string{cfgNative, cfgVfolderRW}
	e := &env{opts: &options{}, res: newResults([]string{"seqwrite-new", "find", "stat"}, cfgs)}
	run, _, _ := selectAblations("maxwrite,timeouts,keepcache", e.res.workloads)
	e.res.addAblations(run)
	for r := 0; r < 3; r++ {
		e.res.add("seqwrite-new", cfgVfolderRW, r, 800, nil)
		e.res.add("seqwrite-new", "vfolder-rw-maxwrite", r, 400, nil)
		e.res.add("find", cfgVfolderRW, r, 0.5, nil)
		e.res.add("find", "vfolder-rw-timeouts", r, 0.4, nil)
		e.res.add("stat", cfgVfolderRW, r, 1000, nil)
	}
	e.res.add("stat", "vfolder-rw-timeouts", 0, 0, fmt.Errorf("boom"))
	table := e.renderAblation()
	for _, want := range []string{
		"| -maxwrite | seqwrite-new | MiB/s ↑ | 800 | 400 | +100.0% |",
		"| -timeouts | find | s ↓ | 0.5 | 0.4 | -20.0% |",
		"| -timeouts | stat | ops/s ↑ | 1000 | error | not measured |",
		"- **-maxwrite** (vfolder-rw-maxwrite against vfolder-rw: ",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("ablation table lacks %q:\n%s", want, table)
		}
	}
	for _, bad := range []string{"| -maxwrite | find", "| -timeouts | seqwrite-new", "-keepcache"} {
		if strings.Contains(table, bad) {
			t.Errorf("ablation table has %q, a workload the tuning does not run:\n%s", bad, table)
		}
	}
	if e.res.failures() != 1 {
		t.Errorf("failures = %d, want 1", e.res.failures())
	}
	e.res = newResults([]string{"find"}, cfgs)
	if table := e.renderAblation(); table != "" {
		t.Errorf("ablation table without --ablate:\n%s", table)
	}
}

// TestSeqWriteModes: "new-fsync" creates the file, writes every byte and
// syncs; both new modes refuse an existing file; overwrite keeps the
// file's other bytes (no truncation).
func TestSeqWriteModes(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "new.dat")
	size := int64(3*blockSize + 100)
	r, err := seqWrite(p, size, "new-fsync")
	if err != nil {
		t.Fatal(err)
	}
	if r.Bytes != size || r.Seconds <= 0 {
		t.Fatalf("result %+v, want %d bytes in a positive time", r, size)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(data)) != size || !bytes.Equal(data[:blockSize], pattern(blockSize)) {
		t.Fatalf("file has %d bytes (want %d) or not the pattern", len(data), size)
	}
	for _, mode := range []string{"new", "new-fsync"} {
		if _, err := seqWrite(p, 10, mode); !os.IsExist(err) {
			t.Errorf("%s over an existing file: %v, want EEXIST", mode, err)
		}
	}
	if _, err := seqWrite(p, blockSize, "overwrite"); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(p); err != nil || st.Size() != size {
		t.Fatalf("overwrite changed the size: %v %v", st, err)
	}
	if _, err := seqWrite(filepath.Join(dir, "x"), 10, "append"); err == nil {
		t.Error("unknown mode accepted")
	}
}

func TestSeqRunsOption(t *testing.T) {
	o, err := parseOptions(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.runs != 3 || o.groupRuns(groupSeqWrite) != 7 || o.groupRuns(groupSeqRead) != 3 {
		t.Fatalf("defaults: runs %d, seqwrite %d, seqread %d", o.runs, o.groupRuns(groupSeqWrite), o.groupRuns(groupSeqRead))
	}
	if n := o.totalRuns(map[string]bool{"find": true}); n != 3 {
		t.Errorf("total runs without seq writes: %d, want 3", n)
	}
	if n := o.totalRuns(map[string]bool{"find": true, "seqwrite-new": true}); n != 7 {
		t.Errorf("total runs with seq writes: %d, want 7", n)
	}
	// --runs above --seq-runs wins; --quick keeps the runs even.
	for _, c := range []struct {
		args []string
		want int
	}{
		{[]string{"--runs", "9"}, 9},
		{[]string{"--seq-runs", "2"}, 3},
		{[]string{"--quick", "--runs", "2"}, 2},
		{[]string{"--quick", "--runs", "2", "--seq-runs", "5"}, 5},
	} {
		o, err := parseOptions(c.args, io.Discard)
		if err != nil {
			t.Fatal(c.args, err)
		}
		if got := o.groupRuns(groupSeqWrite); got != c.want {
			t.Errorf("%v: seqwrite runs %d, want %d", c.args, got, c.want)
		}
	}
	if _, err := parseOptions([]string{"--seq-runs", "0"}, io.Discard); err == nil {
		t.Error("--seq-runs 0 accepted")
	}
}

// TestSeqRuns runs the sequential groups with more runs for the writes:
// every run of the writes is in the report, the reads keep --runs, and
// the Method says how writes are timed.
func TestSeqRuns(t *testing.T) {
	needRoot(t)
	report, _ := runReport(t, 90*time.Second, "--tmpfs", "-q", "--configs", "native,loopback",
		"--size", "2MiB", "--runs", "2", "--seq-runs", "4", "--workloads", "seqwrite,seqread-cold")
	count := func(id, cfg string) int {
		m := regexp.MustCompile(`(?m)^\| ` + id + ` \| ` + cfg + ` \| ([0-9., e+-]+) MiB/s \|`).FindStringSubmatch(report)
		if m == nil {
			t.Fatalf("Every run lacks %s on %s", id, cfg)
		}
		return len(strings.Split(m[1], ","))
	}
	for _, cfg := range []string{"native", "loopback"} {
		for id, want := range map[string]int{"seqwrite-new": 4, "seqwrite-overwrite": 4, "seqread-cold": 2} {
			if n := count(id, cfg); n != want {
				t.Errorf("%s on %s: %d runs, want %d", id, cfg, n, want)
			}
		}
	}
	for _, want := range []string{"median of 2 runs (4 for the sequential writes)", "calls fsync(2) and closes the file, timed from open(2) to the end of close(2)",
		"seq write 2 MiB + fsync, new file"} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q", want)
		}
	}
}

// TestNegStat: the negstat worker looks up names that are missing in
// the metadata workload's directories, and fails when one exists.
func TestNegStat(t *testing.T) {
	dir := t.TempDir()
	if _, err := metaOp(opCreate, dir, 3, 0); err != nil {
		t.Fatal(err)
	}
	r, err := runWorker([]string{opNegStat, dir, "3", "2"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Ops != 6 || r.Seconds <= 0 {
		t.Errorf("negstat of 3 names x2: %+v", r)
	}
	if err := os.WriteFile(missingName(dir, 1), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := runWorker([]string{opNegStat, dir, "3", "1"}); err == nil {
		t.Error("negstat succeeded over a name that exists")
	}
}
