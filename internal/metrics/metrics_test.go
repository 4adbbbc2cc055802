package metrics

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/fs"
	"github.com/vfolder/vfolder/internal/service"
	"github.com/vfolder/vfolder/meta"
	"github.com/vfolder/vfolder/quota"
)

const scopeUUID = "2b1a7c4e5d3f4a8e9c0b1f2e3d4c5b6a"

func testLedger(t *testing.T) *quota.Manager {
	t.Helper()
	db, err := meta.OpenBadger(t.TempDir(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	m, err := quota.Open(db.DB(), zerolog.Nop(), quota.Options{})
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.Close()
		db.Close()
	})
	return m
}

// find returns the metric of family name whose labels include want, or
// nil.
func find(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) *dto.Metric {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if have[k] != v {
					continue next
				}
			}
			return m
		}
	}
	return nil
}

func value(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	m := find(t, reg, name, labels)
	if m == nil {
		t.Fatalf("no %s%v", name, labels)
	}
	switch {
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	t.Fatalf("%s has no value", name)
	return 0
}

func TestMetrics(t *testing.T) {
	l := testLedger(t)
	svc := service.New(meta.NewMemory(), service.Options{Quota: l, Log: zerolog.Nop()})
	t.Cleanup(svc.Close)
	m := New(Sources{Version: "1.2.3", Ledger: l, Service: svc, Log: zerolog.Nop()})
	t.Cleanup(m.Close)
	reg := m.Registry()

	id, err := meta.UserScope(scopeUUID)
	if err != nil {
		t.Fatal(err)
	}
	sk := quota.ScopeKey{Volume: "local", ID: id}
	lbl := map[string]string{"volume": "local", "scope": id.String()}
	if err := l.SetLimit(sk, 1000, 10); err != nil {
		t.Fatal(err)
	}
	if err := l.OpenForWrite(sk, "f1", quota.InodeKey{Dev: 1, Ino: 2}, 0, "a"); err != nil {
		t.Fatal(err)
	}
	g, r, err := l.Reserve(sk, "f1", quota.InodeKey{Dev: 1, Ino: 2}, 0, 600)
	if err != nil || g != 600 {
		t.Fatalf("Reserve: %d %v", g, err)
	}
	r.Done(600)
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	u := l.Usage(sk)
	for name, want := range map[string]int64{
		"vfolder_quota_limit_bytes": 1000, "vfolder_quota_used_bytes": u.Used, "vfolder_quota_free_bytes": 1000 - u.Used,
		"vfolder_quota_limit_inodes": 10, "vfolder_quota_used_inodes": u.UsedInodes, "vfolder_quota_free_inodes": 10 - u.UsedInodes,
	} {
		if got := value(t, reg, name, lbl); got != float64(want) {
			t.Errorf("%s = %v; want %d", name, got, want)
		}
	}
	if u.Used < 600 {
		t.Errorf("ledger usage %d after 600 bytes", u.Used)
	}
	if got := value(t, reg, "vfolder_quota_edquot_total", lbl); got != 0 {
		t.Errorf("edquot before any refusal = %v", got)
	}
	if got := value(t, reg, "vfolder_ledger_commit_duration_seconds", nil); got < 1 {
		t.Errorf("ledger commits observed: %v; want at least 1 after Flush", got)
	}

	// What package fs tells the observer it installed.
	obs, ok := any(fuseObserver{m}).(fs.Observer)
	if !ok {
		t.Fatal("fuseObserver is not an fs.Observer")
	}
	obs.QuotaRefused(sk)
	obs.QuotaRefused(sk)
	obs.Request(fs.OpWrite, 30*time.Microsecond, 0)
	obs.Request(fs.OpWrite, 40*time.Microsecond, int32(syscall.EDQUOT))
	obs.Request(fs.OpLookup, 10*time.Microsecond, int32(syscall.ENOENT))
	obs.Request(fs.OpLookup, 10*time.Microsecond, int32(syscall.EHOSTDOWN))
	if got := value(t, reg, "vfolder_quota_edquot_total", lbl); got != 2 {
		t.Errorf("edquot = %v; want 2", got)
	}
	if got := value(t, reg, "vfolder_fuse_request_duration_seconds", map[string]string{"op": "write"}); got != 2 {
		t.Errorf("write requests = %v; want 2", got)
	}
	for _, c := range []struct {
		op, errno string
		want      float64
	}{{"write", "EDQUOT", 1}, {"lookup", "ENOENT", 1}, {"lookup", "OTHER", 1}} {
		if got := value(t, reg, "vfolder_fuse_request_errors_total", map[string]string{"op": c.op, "errno": c.errno}); got != c.want {
			t.Errorf("errors{%s,%s} = %v; want %v", c.op, c.errno, got, c.want)
		}
	}
	if find(t, reg, "vfolder_fuse_request_errors_total", map[string]string{"op": "write", "errno": "ENOENT"}) != nil {
		t.Error("an error series exists that nothing counted")
	}

	// Unlimited: no free figure.
	if err := l.SetLimit(sk, 0, 0); err != nil {
		t.Fatal(err)
	}
	if find(t, reg, "vfolder_quota_free_bytes", lbl) != nil || find(t, reg, "vfolder_quota_free_inodes", lbl) != nil {
		t.Error("free figures for an unlimited scope")
	}
	if got := value(t, reg, "vfolder_quota_limit_bytes", lbl); got != 0 {
		t.Errorf("limit of an unlimited scope = %v", got)
	}

	if got := value(t, reg, "vfolder_sessions", nil); got != 0 {
		t.Errorf("sessions = %v", got)
	}
	if got := value(t, reg, "vfolder_quota_checks_running", nil); got != 0 {
		t.Errorf("checks running = %v", got)
	}
	if find(t, reg, "vfolder_views", nil) != nil {
		t.Error("views reported by a service without FUSE views")
	}
	if b := find(t, reg, "vfolder_build_info", map[string]string{"version": "1.2.3"}); b == nil || b.Gauge.GetValue() != 1 {
		t.Errorf("build info: %v", b)
	}
}

func TestMetricsListener(t *testing.T) {
	m := New(Sources{Version: "test", Log: zerolog.Nop()})
	t.Cleanup(m.Close)
	srv, err := m.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	}()
	resp, err := http.Get("http://" + srv.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `vfolder_build_info{goversion="`) {
		t.Errorf("GET /metrics = %d:\n%s", resp.StatusCode, body)
	}
	resp, err = http.Get("http://" + srv.Addr() + "/other")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("GET /other = %d; want 404", resp.StatusCode)
	}
	if _, err := m.Listen(srv.Addr()); err == nil {
		t.Error("a second listener on the same address")
	}
}

// BenchmarkObserveRequest is the metrics' cost per FUSE request (the
// wrapper's clock reads are in BenchmarkFsObserved of package fs).
func BenchmarkObserveRequest(b *testing.B) {
	m := New(Sources{Version: "bench", Log: zerolog.Nop()})
	defer m.Close()
	o := fuseObserver{m}
	b.Run("ok", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			o.Request(fs.OpWrite, 42*time.Microsecond, 0)
		}
	})
	b.Run("error", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			o.Request(fs.OpLookup, 42*time.Microsecond, int32(syscall.ENOENT))
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				o.Request(fs.OpGetAttr, 42*time.Microsecond, 0)
			}
		})
	})
	b.Run("clock+observe", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			t0 := time.Now()
			o.Request(fs.OpWrite, time.Since(t0), 0)
		}
	})
}

// BenchmarkFUSEMetrics measures what the metrics cost on real FUSE
// requests. Two mounts run side by side, one made without metrics and one
// made with them (the raw-layer wrapper's clock reads and the observer);
// each iteration does the same operation on both, alternately, so that
// the machine's load hits both alike. Reported: the median time of one
// operation on each (without-ns, with-ns) and the median of the paired
// differences (delta-ns). VFOLDER_BENCH_CONTROL=1 compares two mounts
// without metrics instead (the order's own effect).
//
//	go test -run '^$' -bench FUSEMetrics -benchtime 5000x ./internal/metrics/
func BenchmarkFUSEMetrics(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root to mount FUSE")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		b.Skipf("needs /dev/fuse: %v", err)
	}
	mountView := func(b *testing.B) string {
		dir := b.TempDir()
		mnt := filepath.Join(dir, "mnt")
		if err := os.Mkdir(mnt, 0o755); err != nil {
			b.Fatal(err)
		}
		f, err := fs.Mount(fs.Options{MountPoint: mnt, StorageUID: 1100, StorageGID: 1100, Logger: zerolog.Nop()})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { f.Close() })
		scope := meta.ScopeID{Kind: meta.KindUser, UUID: scopeUUID}
		id := fmt.Sprintf("%032x", 1)
		rel := meta.FolderRelPath(scope, id)
		if err := os.MkdirAll(filepath.Join(dir, "vol", rel), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := f.AddView(fs.ViewSpec{Namespace: fs.NSSessions, Key: "s1", Name: "q", VolumeName: "vol",
			VolumePath: filepath.Join(dir, "vol"), FolderRel: rel, Mode: meta.PermWD, UID: 1000, GID: 1000,
			FolderID: id, Scope: scope}); err != nil {
			b.Fatal(err)
		}
		return filepath.Join(mnt, "sessions", "s1", "q")
	}
	fs.SetObserver(nil)
	plain, plain2 := mountView(b), mountView(b)
	m := New(Sources{Version: "bench", Log: zerolog.Nop()})
	defer m.Close()
	observed := mountView(b)
	if os.Getenv("VFOLDER_BENCH_CONTROL") != "" {
		// A/A control: two mounts without metrics, to see the order's
		// own effect on the paired difference.
		observed = plain2
	}

	paired := func(b *testing.B, op func(view string, i int)) {
		var without, with, delta []time.Duration
		i := 0
		for b.Loop() {
			t0 := time.Now()
			op(plain, i)
			t1 := time.Now()
			op(observed, i)
			t2 := time.Now()
			without, with = append(without, t1.Sub(t0)), append(with, t2.Sub(t1))
			delta = append(delta, t2.Sub(t1)-t1.Sub(t0))
			i++
		}
		med := func(d []time.Duration) float64 {
			sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
			return float64(d[len(d)/2].Nanoseconds())
		}
		b.ReportMetric(med(without), "without-ns")
		b.ReportMetric(med(with), "with-ns")
		b.ReportMetric(med(delta), "delta-ns")
	}
	b.Run("create-write-unlink", func(b *testing.B) {
		buf := make([]byte, 100)
		paired(b, func(view string, _ int) {
			p := filepath.Join(view, "f")
			fd, err := unix.Open(p, unix.O_CREAT|unix.O_WRONLY|unix.O_EXCL, 0o644)
			if err != nil {
				b.Fatal(err)
			}
			unix.Write(fd, buf)
			unix.Close(fd)
			if err := unix.Unlink(p); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("append-4k", func(b *testing.B) {
		fds := map[string]int{}
		for _, v := range []string{plain, observed} {
			fd, err := unix.Open(filepath.Join(v, "g"), unix.O_CREAT|unix.O_WRONLY|unix.O_TRUNC, 0o644)
			if err != nil {
				b.Fatal(err)
			}
			defer unix.Close(fd)
			fds[v] = fd
		}
		buf := make([]byte, 4096)
		paired(b, func(view string, i int) {
			if _, err := unix.Pwrite(fds[view], buf, int64(i%16384)*4096); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("stat-uncached", func(b *testing.B) {
		// A name looked up for the first time: one LOOKUP (ENOENT) each.
		paired(b, func(view string, i int) {
			var st unix.Stat_t
			if err := unix.Stat(filepath.Join(view, "missing-"+strconv.Itoa(i)), &st); err != unix.ENOENT {
				b.Fatalf("stat: %v", err)
			}
		})
	})
}

// vfolderNames lists the vfolder_* metric families m serves.
func vfolderNames(t *testing.T, m *Metrics) map[string]string {
	t.Helper()
	ch := make(chan *prometheus.Desc, 256)
	go func() {
		for _, c := range m.own {
			c.Describe(ch)
		}
		close(ch)
	}()
	re := regexp.MustCompile(`fqName: "([a-z_]+)", help: "([^"]*)"`)
	out := map[string]string{}
	for d := range ch {
		sm := re.FindStringSubmatch(d.String())
		if sm == nil {
			t.Fatalf("cannot read %s", d)
		}
		if !strings.HasPrefix(sm[1], Namespace+"_") {
			t.Errorf("metric %s is not prefixed %s_", sm[1], Namespace)
		}
		out[sm[1]] = sm[2]
	}
	return out
}

// TestDocsAndDashboard checks that docs/metrics.md lists every metric with
// its type, and that the Grafana dashboard uses only metrics that exist.
func TestDocsAndDashboard(t *testing.T) {
	l := testLedger(t)
	svc := service.New(meta.NewMemory(), service.Options{Quota: l, Log: zerolog.Nop()})
	t.Cleanup(svc.Close)
	m := New(Sources{Version: "docs", Ledger: l, Service: svc, Log: zerolog.Nop()})
	t.Cleanup(m.Close)
	names := vfolderNames(t, m)
	if len(names) < 20 {
		t.Fatalf("only %d metrics: %v", len(names), names)
	}
	doc, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]string{}
	for _, f := range fams {
		types[f.GetName()] = strings.ToLower(f.GetType().String())
	}
	for name, help := range names {
		if help == "" {
			t.Errorf("%s has no help text", name)
		}
		row := regexp.MustCompile("(?m)^\\| `" + name + "` \\| ([a-z]+) \\|").FindSubmatch(doc)
		if row == nil {
			t.Errorf("docs/metrics.md has no table row for %s", name)
			continue
		}
		if typ, ok := types[name]; ok && typ != string(row[1]) {
			t.Errorf("docs/metrics.md says %s is a %s; it is a %s", name, row[1], typ)
		}
	}
	dash, err := os.ReadFile("../../contrib/grafana/vfolder-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var js map[string]any
	if err := json.Unmarshal(dash, &js); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	used := regexp.MustCompile(`vfolder_[a-z_]+`).FindAllString(string(dash), -1)
	if len(used) == 0 {
		t.Fatal("the dashboard uses no vfolder metric")
	}
	for _, u := range used {
		base := u
		for _, suf := range []string{"_bucket", "_count", "_sum"} {
			if b, ok := strings.CutSuffix(u, suf); ok && names[b] != "" {
				base = b
			}
		}
		if _, ok := names[base]; !ok && u != "vfolder_dashboard" {
			t.Errorf("the dashboard uses %s, which vfolderd does not serve", u)
		}
	}
}
