package main

import (
	"fmt"
	"slices"
	"sort"
)

// cell is one workload on one configuration.
type cell struct {
	runs map[int]float64 // successful runs by run index
	errs []string        // failed runs
	na   string          // why it does not apply here
}

// median of the successful runs; ok is false when there is none.
func (c *cell) median() (float64, bool) {
	if len(c.runs) == 0 {
		return 0, false
	}
	vals := make([]float64, 0, len(c.runs))
	for _, v := range c.runs {
		vals = append(vals, v)
	}
	return median(vals), true
}

// spread of the successful runs: the smallest and the largest value, and
// their difference relative to the median; ok is false with fewer than two
// runs.
func (c *cell) spread() (lo, hi, rel float64, ok bool) {
	if len(c.runs) < 2 {
		return 0, 0, 0, false
	}
	first := true
	for _, v := range c.runs {
		if first || v < lo {
			lo = v
		}
		if first || v > hi {
			hi = v
		}
		first = false
	}
	if m, _ := c.median(); m != 0 {
		rel = (hi - lo) / m
	}
	return lo, hi, rel, true
}

func median(vals []float64) float64 {
	s := slices.Clone(vals)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// results of one harness run.
type results struct {
	workloads []string
	configs   []string // columns of the main table
	ablated   []string // ablation configurations (--ablate), report order
	cells     map[string]map[string]*cell
	describe  map[string]string
	commands  map[string]string // command lines of the peers run as child processes
	setupErr  map[string]string

	treeEntries int
	treeBytes   int64

	usage  *usageReport
	memory *memoryReport
	// cluster is the cluster-write table (cluster.go).
	cluster *clusterReport
}

func newResults(workloads, configs []string) *results {
	r := &results{
		workloads: workloads,
		configs:   configs,
		cells:     map[string]map[string]*cell{},
		describe:  map[string]string{},
		commands:  map[string]string{},
		setupErr:  map[string]string{},
	}
	for _, w := range workloads {
		r.cells[w] = map[string]*cell{}
		wl, _ := workloadByID(w)
		for _, c := range configs {
			cl := &cell{runs: map[int]float64{}}
			if wl.writes && newConfigReadOnly(c) {
				cl.na = "read-only view"
			}
			r.cells[w][c] = cl
		}
	}
	return r
}

// addAblations adds the ablation configurations, with cells only for the
// workloads each of them runs.
func (r *results) addAblations(abl []*ablation) {
	for _, a := range abl {
		name := a.config()
		r.ablated = append(r.ablated, name)
		for _, w := range a.selected(r.workloads) {
			r.cells[w][name] = &cell{runs: map[int]float64{}}
		}
	}
}

// allConfigs are the main table's configurations, then the ablations.
func (r *results) allConfigs() []string {
	return append(slices.Clone(r.configs), r.ablated...)
}

func (r *results) add(workload, config string, run int, v float64, err error) {
	c := r.cells[workload][config]
	if c == nil {
		return
	}
	if err == nil && !(v > 0) {
		err = fmt.Errorf("measured a non-positive value %v", v)
	}
	if err != nil {
		c.errs = append(c.errs, fmt.Sprintf("run %d: %v", run+1, err))
		return
	}
	c.runs[run] = v
}

func (r *results) setupFailed(config string, err error) {
	r.setupErr[config] = err.Error()
}

// failures counts failed measurements (a configuration that could not be
// set up counts once).
func (r *results) failures() int {
	n := len(r.setupErr)
	for _, w := range r.workloads {
		for _, c := range r.allConfigs() {
			if _, bad := r.setupErr[c]; bad {
				continue
			}
			if cl := r.cells[w][c]; cl != nil {
				n += len(cl.errs)
			}
		}
	}
	if r.usage != nil {
		for _, row := range r.usage.rows {
			if row.err != "" {
				n++
			}
		}
	}
	if r.memory != nil && r.memory.err != "" {
		n++
	}
	if r.cluster != nil && r.cluster.err != "" {
		n++
	}
	return n
}

// usageReport is the usage query table: the daemon's answer from its
// ledger against a full walk, on trees of growing size.
type usageReport struct {
	notMeasured string // the whole table, with the reason
	method      string // what "usage query" measures
	rows        []usageRow
}

type usageRow struct {
	files     int
	bytes     int64
	duCold    float64 // seconds, caches dropped
	duWarm    float64 // seconds
	scan      float64 // seconds the ledger needed to learn the tree (one-off)
	query     float64 // seconds per usage query (median)
	ledgerOK  bool    // the ledger's bytes match du -sb's
	ledgerMsg string
	err       string
}

// memoryReport is the daemon memory measurement.
type memoryReport struct {
	notMeasured string
	method      string
	files       int64 // files in the folder behind the views
	views       int
	baseline    int64 // RSS with the mount and the ledger open
	withViews   int64 // RSS with the views added
	rss         int64 // RSS after a walk over one view
	heapLive    int64 // Go heap in use after a collection, after the walk
	err         string
}
