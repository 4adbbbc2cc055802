// Package metrics is vfolderd's Prometheus endpoint: every metric is
// named vfolder_*, listed with its type, labels and meaning in
// docs/metrics.md, and served at /metrics on a listener of its own
// (metrics_listen / --metrics-listen; off by default).
//
// # Design
//
// Figures that already exist somewhere are read when Prometheus scrapes,
// never maintained on the side: the collectors (collect.go) ask the quota
// ledger for every scope's limits and usage (quota.Manager.Scopes and
// Usage: one short lock per scope), the service for its views, sessions
// and running checks and purges (service.Activities). A write in a view
// therefore costs the metrics nothing, and the figures cannot drift from
// what quota-scope get reports.
//
// What happens only as events is counted as it happens, through hooks
// that keep Prometheus out of the packages they sit in:
//
//   - FUSE requests: package fs wraps its raw file system when an
//     observer is set (fs.SetObserver, see fs/observe.go); per request
//     the observer does one histogram Observe on a histogram resolved
//     when the Metrics was made (an array indexed by fs.Op: no label
//     lookup, no allocation) and, for an error, one counter increment
//     resolved once per (operation, errno class).
//   - EDQUOT: fs tells the observer the scope that had no room; the count
//     per scope is an atomic in a map entry made on the scope's first
//     refusal, emitted at scrape time next to the scope's usage (0 for
//     scopes that never refused anything, so that rate() works from the
//     first scrape).
//   - ledger commits: the quota commit loop reports the duration of each
//     transaction (quota.Manager.SetCommitObserver).
//
// The observers are process-wide (one daemon, one set of metrics): New
// installs them, Close removes them. New must run before the FUSE
// namespace is mounted for the FUSE requests to be observed.
//
// # Concurrency and errors
//
// The observers run on FUSE and commit-loop goroutines concurrently and
// never block. Collect runs on the HTTP server's goroutines; a source that
// fails (a store out of reach while counting sessions) leaves its metrics
// out of that scrape and is logged at debug level, the others are served.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/vfolder/vfolder/fs"
	"github.com/vfolder/vfolder/internal/service"
	"github.com/vfolder/vfolder/quota"
)

// Namespace prefixes every metric name.
const Namespace = "vfolder"

// Sources are what the metrics read. Nil fields leave their metrics out.
type Sources struct {
	// Version is the daemon's version (vfolder_build_info).
	Version string
	// Ledger is the quota ledger: per-scope usage and EDQUOT counts, and
	// its commit latency.
	Ledger *quota.Manager
	// Service supplies views, sessions, checks and purges.
	Service *service.Service
	// Node is this node's name in a cluster ("" on a node of its own);
	// it is a label of vfolder_build_info only.
	Node string
	Log  zerolog.Logger
}

// fuseBuckets are the FUSE latency buckets: 5 us to 0.9 s in steps of 3
// (a synchronous round trip is ~50 us; metadata work on a slow volume
// takes milliseconds).
var fuseBuckets = prometheus.ExponentialBuckets(5e-6, 3, 12)

// commitBuckets are the ledger commit latency buckets: 50 us to ~3 s.
var commitBuckets = prometheus.ExponentialBuckets(50e-6, 3, 11)

// Metrics is the daemon's registry and the observers feeding it.
type Metrics struct {
	src Sources
	reg *prometheus.Registry

	fuseReq   [fs.NumOps]prometheus.Observer
	fuseErrs  *prometheus.CounterVec
	fuseErrAt [fs.NumOps][len(errnoClasses) + 1]atomic.Pointer[prometheus.Counter]

	edquotMu sync.RWMutex
	edquot   map[quota.ScopeKey]*atomic.Uint64

	commit        prometheus.Histogram
	commitRecords prometheus.Counter

	own    []prometheus.Collector // the vfolder_* collectors
	closed atomic.Bool
}

// New builds the registry over src and installs the FUSE and ledger
// observers. Close removes them.
func New(src Sources) *Metrics {
	m := &Metrics{src: src, reg: prometheus.NewRegistry(), edquot: map[quota.ScopeKey]*atomic.Uint64{}}
	fuseHist := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Subsystem: "fuse", Name: "request_duration_seconds",
		Help:    "Time the daemon took to answer FUSE requests, by operation (the _count is the number of requests).",
		Buckets: fuseBuckets,
	}, []string{"op"})
	for op := fs.Op(0); op < fs.NumOps; op++ {
		m.fuseReq[op] = fuseHist.WithLabelValues(op.String())
	}
	m.fuseErrs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "fuse", Name: "request_errors_total",
		Help: "FUSE requests answered with an error, by operation and errno (ENOENT, EDQUOT, ...; OTHER for the rest).",
	}, []string{"op", "errno"})
	m.commit = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: Namespace, Subsystem: "ledger", Name: "commit_duration_seconds",
		Help:    "Duration of the quota ledger's commit transactions (the commit loop's writes to the store).",
		Buckets: commitBuckets,
	})
	m.commitRecords = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "ledger", Name: "committed_records_total",
		Help: "Inode records the quota ledger's commit loop has written.",
	})
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "build_info",
		Help: "Always 1; the labels name the daemon's version, the Go version it was built with and the node.",
	}, []string{"version", "goversion", "node"})
	build.WithLabelValues(src.Version, runtime.Version(), src.Node).Set(1)

	m.own = []prometheus.Collector{fuseHist, m.fuseErrs, m.commit, m.commitRecords, build}
	if src.Ledger != nil {
		m.own = append(m.own, &scopeCollector{m: m})
		src.Ledger.SetCommitObserver(m.observeCommit)
	}
	if src.Service != nil {
		m.own = append(m.own, &serviceCollector{m: m})
	}
	m.reg.MustRegister(m.own...)
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	fs.SetObserver(fuseObserver{m})
	return m
}

// Registry is the registry the endpoint serves (tests gather from it).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus text format (or
// OpenMetrics when the scraper asks for it).
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorHandling:     promhttp.ContinueOnError,
		EnableOpenMetrics: true,
		Timeout:           30 * time.Second,
	})
}

// Close removes the observers New installed (the FS instances mounted
// meanwhile keep calling the Metrics, which go on counting harmlessly).
func (m *Metrics) Close() {
	if m.closed.Swap(true) {
		return
	}
	fs.SetObserver(nil)
	if m.src.Ledger != nil {
		m.src.Ledger.SetCommitObserver(nil)
	}
}

func (m *Metrics) observeCommit(d time.Duration, records int) {
	m.commit.Observe(d.Seconds())
	m.commitRecords.Add(float64(records))
}

// fuseObserver is the fs.Observer.
type fuseObserver struct{ m *Metrics }

func (o fuseObserver) Request(op fs.Op, d time.Duration, status int32) {
	if op >= fs.NumOps {
		return
	}
	o.m.fuseReq[op].Observe(d.Seconds())
	if status != 0 {
		o.m.fuseError(op, syscall.Errno(status))
	}
}

func (o fuseObserver) QuotaRefused(s quota.ScopeKey) { o.m.refused(s) }

// errnoClasses are the errnos that get a label value of their own.
var errnoClasses = [...]syscall.Errno{
	syscall.ENOENT, syscall.EEXIST, syscall.EACCES, syscall.EPERM, syscall.EROFS,
	syscall.EDQUOT, syscall.ENOSPC, syscall.EIO, syscall.EXDEV, syscall.ENOTEMPTY,
	syscall.EINTR, syscall.ESTALE, syscall.ENODATA, syscall.EINVAL, syscall.ENOTDIR,
	syscall.EISDIR, syscall.ELOOP, syscall.ENAMETOOLONG, syscall.EBADF, syscall.ENOSYS,
	syscall.EAGAIN, syscall.ERANGE, syscall.EOPNOTSUPP,
}

var errnoNames = [...]string{
	"ENOENT", "EEXIST", "EACCES", "EPERM", "EROFS",
	"EDQUOT", "ENOSPC", "EIO", "EXDEV", "ENOTEMPTY",
	"EINTR", "ESTALE", "ENODATA", "EINVAL", "ENOTDIR",
	"EISDIR", "ELOOP", "ENAMETOOLONG", "EBADF", "ENOSYS",
	"EAGAIN", "ERANGE", "EOPNOTSUPP",
}

func errnoClass(e syscall.Errno) (int, string) {
	for i, c := range errnoClasses {
		if c == e {
			return i, errnoNames[i]
		}
	}
	return len(errnoClasses), "OTHER"
}

func (m *Metrics) fuseError(op fs.Op, e syscall.Errno) {
	i, name := errnoClass(e)
	slot := &m.fuseErrAt[op][i]
	c := slot.Load()
	if c == nil {
		cc := m.fuseErrs.WithLabelValues(op.String(), name)
		slot.CompareAndSwap(nil, &cc)
		c = slot.Load()
	}
	(*c).Inc()
}

// refused counts an EDQUOT of scope s.
func (m *Metrics) refused(s quota.ScopeKey) {
	m.edquotMu.RLock()
	c := m.edquot[s]
	m.edquotMu.RUnlock()
	if c == nil {
		m.edquotMu.Lock()
		if c = m.edquot[s]; c == nil {
			c = new(atomic.Uint64)
			m.edquot[s] = c
		}
		m.edquotMu.Unlock()
	}
	c.Add(1)
}

// edquotCounts copies the EDQUOT counts.
func (m *Metrics) edquotCounts() map[quota.ScopeKey]uint64 {
	m.edquotMu.RLock()
	defer m.edquotMu.RUnlock()
	out := make(map[quota.ScopeKey]uint64, len(m.edquot))
	for k, c := range m.edquot {
		out[k] = c.Load()
	}
	return out
}

// Server is the metrics listener.
type Server struct {
	http *http.Server
	l    net.Listener
	done chan error
}

// Listen binds addr (host:port) and serves /metrics on it until Shutdown.
// Any other path answers 404.
func (m *Metrics) Listen(addr string) (*Server, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listener %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	s := &Server{
		http: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute},
		l:    l,
		done: make(chan error, 1),
	}
	go func() {
		err := s.http.Serve(l)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.done <- err
	}()
	return s, nil
}

// Addr is the address the server listens on (the port chosen when addr
// asked for port 0).
func (s *Server) Addr() string { return s.l.Addr().String() }

// Shutdown stops the listener and waits for scrapes in flight until ctx
// ends.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.http.Shutdown(ctx)
	if err != nil {
		s.http.Close()
	}
	if serr := <-s.done; err == nil {
		err = serr
	}
	return err
}
