package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/meta"
)

// The cluster row (workload cluster-write): vfolderd processes in cluster
// mode on one shared volume directory and one private etcd, writing one
// quota scope through their FUSE views; aggregate throughput of three
// nodes against one, and the etcd transactions the scope costs.

const (
	clusterNodes   = 3
	clusterWriters = 2 // writers per node
	clusterUser    = "0c1a5e7b9d2f4c6e8a0b1c2d3e4f5a6b"
	clusterLimit   = 1 << 40 // far above what is written: full-speed writing
)

// clusterReport is the cluster table.
type clusterReport struct {
	notMeasured string
	err         string
	method      string
	rows        []clusterRow // 1 node, then clusterNodes nodes
}

type clusterRow struct {
	nodes, writers int
	bytes          int64
	mibs           float64 // aggregate, median over the runs
	txns           float64 // etcd Txn requests per second during the writes, median
}

// findVfolderd is bin/vfolderd of the module the harness runs in (make
// bench builds it first).
func findVfolderd() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			p := filepath.Join(dir, "bin", "vfolderd")
			if _, err := os.Stat(p); err != nil {
				return "", fmt.Errorf("%s is missing: run make build (make bench does)", p)
			}
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory: run the harness from the repository")
		}
		dir = parent
	}
}

// etcdBinary is $VFOLDER_TEST_ETCD, else etcd on PATH (Debian's
// etcd-server).
func etcdBinary() (string, error) {
	if p := os.Getenv("VFOLDER_TEST_ETCD"); p != "" {
		return p, nil
	}
	return exec.LookPath("etcd")
}

func freeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// clusterProc is a process the cluster measurement started.
type clusterProc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
}

func startProc(ctx context.Context, name, logPath, bin string, args ...string) (*clusterProc, error) {
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	// etcd 3.4 refuses to start on architectures other than amd64 unless
	// told to (vfolderd ignores the variable).
	cmd.Env = append(os.Environ(), "ETCD_UNSUPPORTED_ARCH="+runtime.GOARCH)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &clusterProc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		lf.Close()
		close(p.done)
	}()
	return p, nil
}

// stop ends the process with SIGTERM (SIGKILL after d).
func (p *clusterProc) stop(d time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(d):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func waitFor(ctx context.Context, d time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(d)
	for !cond() {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not within %v", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// etcdTxns is the number of Txn requests the etcd server at url answered
// (its metrics: grpc_server_handled_total of method Txn, every code).
func etcdTxns(ctx context.Context, url string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var n int64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "grpc_server_handled_total{") || !strings.Contains(line, `grpc_method="Txn"`) {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, fmt.Errorf("etcd metrics: %q: %v", line, err)
		}
		n += int64(v)
	}
	return n, sc.Err()
}

// measureCluster runs the cluster row.
func (e *env) measureCluster(ctx context.Context) *clusterReport {
	rep := &clusterReport{}
	etcdBin, err := etcdBinary()
	if err != nil {
		rep.notMeasured = "no etcd binary (install Debian's etcd-server, or set VFOLDER_TEST_ETCD)"
		return rep
	}
	vfolderd, err := findVfolderd()
	if err != nil {
		rep.notMeasured = err.Error()
		return rep
	}
	perWriter := max(e.opts.size/clusterWriters, blockSize)
	rep.method = fmt.Sprintf("%d vfolderd processes (bin/vfolderd) in cluster mode on one shared volume directory (%s), each with its own state directory, socket and FUSE mount, and one private single-member etcd (%s, loopback); "+
		"one folder of one user scope with a limit of %s (far above what is written: grants are sized for full speed). "+
		"Each writer is a worker process writing a new %s file in 1 MiB blocks through its node's view (open..close); %d writers per node. "+
		"\"1 node\": node1's writers alone, the other nodes idle; \"%d nodes\": every node's writers at once. Aggregate = all bytes / the slowest writer's time. "+
		"etcd txn/s = Txn requests etcd answered during the writes (its metrics, grpc_server_handled_total of method Txn) per second of the slowest writer: the scope's settlements, grant requests and hold registrations (nothing else runs). "+
		"Median of %d runs; the files are removed between runs. The nodes share this machine's cores with each other and with etcd.",
		clusterNodes, e.work, etcdBin, humanBytes(clusterLimit), humanBytes(perWriter), clusterWriters, clusterNodes, e.opts.runs)

	root := filepath.Join(e.work, "cluster")
	vol := filepath.Join(root, "vol")
	for _, d := range []string{vol, filepath.Join(root, "etcd")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			rep.err = err.Error()
			return rep
		}
	}
	cport, err1 := freeLoopbackPort()
	pport, err2 := freeLoopbackPort()
	if err := errors.Join(err1, err2); err != nil {
		rep.err = err.Error()
		return rep
	}
	curl, purl := fmt.Sprintf("http://127.0.0.1:%d", cport), fmt.Sprintf("http://127.0.0.1:%d", pport)
	etcd, err := startProc(ctx, "etcd", filepath.Join(root, "etcd.log"), etcdBin,
		"--name", "bench", "--data-dir", filepath.Join(root, "etcd", "data"),
		"--listen-client-urls", curl, "--advertise-client-urls", curl,
		"--listen-peer-urls", purl, "--initial-advertise-peer-urls", purl,
		"--initial-cluster", "bench="+purl, "--initial-cluster-state", "new")
	if err != nil {
		rep.err = err.Error()
		return rep
	}
	defer etcd.stop(10 * time.Second)
	if err := waitFor(ctx, 30*time.Second, "etcd answers", func() bool { _, err := etcdTxns(ctx, curl); return err == nil }); err != nil {
		rep.err = err.Error()
		return rep
	}

	type node struct {
		id, mnt string
		proc    *clusterProc
		cli     *api.Client
	}
	var nodes []*node
	defer func() {
		// Clean stops: each daemon unmounts its FUSE namespace.
		var wg sync.WaitGroup
		for _, n := range nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				n.cli.CloseIdleConnections()
				n.proc.stop(30 * time.Second)
			}()
		}
		wg.Wait()
	}()
	for i := 1; i <= clusterNodes; i++ {
		id := fmt.Sprintf("node%d", i)
		dir := filepath.Join(root, id)
		n := &node{id: id, mnt: filepath.Join(dir, "mnt")}
		for _, d := range []string{n.mnt, filepath.Join(dir, "state")} {
			if err := os.MkdirAll(d, 0o700); err != nil {
				rep.err = err.Error()
				return rep
			}
		}
		sock := filepath.Join(dir, "vfolderd.sock")
		n.proc, err = startProc(ctx, id, filepath.Join(dir, "vfolderd.log"), vfolderd,
			"--volume", "local="+vol, "--state-dir", filepath.Join(dir, "state"), "--socket", sock,
			"--mount-point", n.mnt, "--sessions-dir", filepath.Join(dir, "sessions"), "--force-stop",
			"--etcd-endpoints", curl, "--node-id", id, "--log-level", "warn")
		if err != nil {
			rep.err = err.Error()
			return rep
		}
		n.cli = api.NewClient(sock)
		nodes = append(nodes, n)
		if err := waitFor(ctx, 60*time.Second, id+" serves", func() bool { _, err := n.cli.Health(ctx); return err == nil }); err != nil {
			rep.err = fmt.Sprintf("%v (log: %s)", err, filepath.Join(dir, "vfolderd.log"))
			return rep
		}
	}
	owner := meta.ScopeID{Kind: meta.KindUser, UUID: clusterUser}
	if _, err := nodes[0].cli.CreateFolder(ctx, api.CreateFolderRequest{Name: "bench", Volume: "local", Owner: owner}); err != nil {
		rep.err = "create the folder: " + err.Error()
		return rep
	}
	lim := int64(clusterLimit)
	if _, err := nodes[0].cli.SetQuotaScope(ctx, "local", owner, api.SetQuotaRequest{LimitBytes: &lim}); err != nil {
		rep.err = "set the limit: " + err.Error()
		return rep
	}
	view := func(n *node) string { return filepath.Join(n.mnt, "users", clusterUser, "bench") }
	for _, n := range nodes {
		if err := waitFor(ctx, 10*time.Second, "the folder's view on "+n.id, func() bool { _, err := os.Stat(view(n)); return err == nil }); err != nil {
			rep.err = err.Error()
			return rep
		}
	}

	counts := []int{1, clusterNodes}
	mibs := map[int][]float64{}
	txns := map[int][]float64{}
	written := map[int]int64{}
	for run := 0; run < e.opts.runs; run++ {
		for _, k := range counts {
			e.logf("run %d/%d cluster-write, %d node(s)", run+1, e.opts.runs, k)
			before, err := etcdTxns(ctx, curl)
			if err != nil {
				rep.err = err.Error()
				return rep
			}
			var mu sync.Mutex
			var slowest float64
			var total int64
			var errs []error
			var wg sync.WaitGroup
			for _, n := range nodes[:k] {
				for w := 0; w < clusterWriters; w++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						p := filepath.Join(view(n), fmt.Sprintf("w-%s-%d", n.id, w))
						r, err := runWorkerProc(ctx, opSeqWrite, p, strconv.FormatInt(perWriter, 10), "new")
						mu.Lock()
						defer mu.Unlock()
						if err != nil {
							errs = append(errs, err)
							return
						}
						slowest = max(slowest, r.Seconds)
						total += r.Bytes
					}()
				}
			}
			wg.Wait()
			after, err := etcdTxns(ctx, curl)
			if err == nil && len(errs) > 0 {
				err = errors.Join(errs...)
			}
			if err != nil {
				rep.err = err.Error()
				return rep
			}
			mibs[k] = append(mibs[k], float64(total)/(1<<20)/slowest)
			txns[k] = append(txns[k], float64(after-before)/slowest)
			written[k] = total
			for _, n := range nodes[:k] {
				for w := 0; w < clusterWriters; w++ {
					if err := os.Remove(filepath.Join(view(n), fmt.Sprintf("w-%s-%d", n.id, w))); err != nil {
						rep.err = err.Error()
						return rep
					}
				}
			}
		}
	}
	for _, k := range counts {
		rep.rows = append(rep.rows, clusterRow{nodes: k, writers: k * clusterWriters, bytes: written[k], mibs: medianOf(mibs[k]), txns: medianOf(txns[k])})
	}
	return rep
}

func medianOf(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func (e *env) renderCluster() string {
	c := e.res.cluster
	var b strings.Builder
	b.WriteString("| cluster write `cluster-write`, one scope | nodes | writers | written | aggregate | vs 1 node | etcd txn/s (the scope) |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	switch {
	case c.notMeasured != "":
		fmt.Fprintf(&b, "| vfolderd in cluster mode | not measured: %s | | | | | |\n", c.notMeasured)
	case c.err != "":
		fmt.Fprintf(&b, "| vfolderd in cluster mode | error: %s | | | | | |\n", c.err)
	default:
		base := 0.0
		for _, r := range c.rows {
			if base == 0 {
				base = r.mibs
			}
			ratio := "1.00x"
			if base > 0 && r.nodes > 1 {
				ratio = fmt.Sprintf("%.2fx", r.mibs/base)
			}
			fmt.Fprintf(&b, "| vfolderd in cluster mode, seq write through the views | %d | %d | %s | %.0f MiB/s | %s | %.1f |\n",
				r.nodes, r.writers, humanBytes(r.bytes), r.mibs, ratio, r.txns)
		}
	}
	return b.String()
}
