package metrics

import (
	"context"
	"math"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vfolder/vfolder/internal/service"
	"github.com/vfolder/vfolder/quota"
)

// collectTimeout bounds the service calls of one scrape (a cluster store
// out of reach must not hold a scrape until Prometheus gives up).
const collectTimeout = 5 * time.Second

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", name), help, labels, nil)
}

var (
	scopeLabels = []string{"volume", "scope"}

	descLimitBytes  = desc("quota_limit_bytes", "The scope's byte limit (0: unlimited).", scopeLabels...)
	descUsedBytes   = desc("quota_used_bytes", "Bytes charged to the scope: file data, symlinks, directories and user xattrs, with what operations in flight were granted.", scopeLabels...)
	descFreeBytes   = desc("quota_free_bytes", "Bytes the scope may still grow by (absent when it has no byte limit).", scopeLabels...)
	descLimitInodes = desc("quota_limit_inodes", "The scope's inode limit (0: unlimited).", scopeLabels...)
	descUsedInodes  = desc("quota_used_inodes", "Inodes charged to the scope.", scopeLabels...)
	descFreeInodes  = desc("quota_free_inodes", "Inodes the scope may still gain (absent when it has no inode limit).", scopeLabels...)
	descEDQUOT      = desc("quota_edquot_total", "Operations in views answered EDQUOT because the scope had no room, since the daemon started.", scopeLabels...)
	descScopes      = desc("quota_scopes", "Quota scopes the ledger knows.")

	descViews         = desc("views", "Views served, by namespace (users, projects, sessions).", "namespace")
	descSessions      = desc("sessions", "Published sessions.")
	descChecksRunning = desc("quota_checks_running", "Quota checks running now.")
	descCheckEntries  = desc("quota_check_entries", "Objects a running quota check has walked so far.", scopeLabels...)
	descCheckBytes    = desc("quota_check_bytes", "Bytes a running quota check has walked so far.", scopeLabels...)
	descPurgesRunning = desc("purges_running", "Folder purges (tree removals) running now.")
	descPurgeEntries  = desc("purge_entries_removed", "Entries a running purge has removed so far.", "volume", "scope", "folder")
)

// scopeCollector reads every scope's limits and usage from the ledger.
type scopeCollector struct{ m *Metrics }

func (c *scopeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLimitBytes, descUsedBytes, descFreeBytes, descLimitInodes, descUsedInodes, descFreeInodes, descEDQUOT, descScopes} {
		ch <- d
	}
}

func (c *scopeCollector) Collect(ch chan<- prometheus.Metric) {
	l := c.m.src.Ledger
	refused := c.m.edquotCounts()
	scopes := l.Scopes()
	ch <- prometheus.MustNewConstMetric(descScopes, prometheus.GaugeValue, float64(len(scopes)))
	gauge := func(d *prometheus.Desc, v int64, s quota.ScopeKey, scope string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), s.Volume, scope)
	}
	for _, s := range scopes {
		u := l.Usage(s)
		id := s.ID.String()
		gauge(descLimitBytes, u.Limit, s, id)
		gauge(descUsedBytes, u.Used, s, id)
		if f := u.Free(); f != math.MaxInt64 {
			gauge(descFreeBytes, f, s, id)
		}
		gauge(descLimitInodes, u.LimitInodes, s, id)
		gauge(descUsedInodes, u.UsedInodes, s, id)
		if f := u.FreeInodes(); f != math.MaxInt64 {
			gauge(descFreeInodes, f, s, id)
		}
		ch <- prometheus.MustNewConstMetric(descEDQUOT, prometheus.CounterValue, float64(refused[s]), s.Volume, id)
		delete(refused, s)
	}
	// Scopes that refused something and that the ledger no longer lists.
	for s, n := range refused {
		ch <- prometheus.MustNewConstMetric(descEDQUOT, prometheus.CounterValue, float64(n), s.Volume, s.ID.String())
	}
}

// serviceCollector reads views, sessions, checks and purges from the
// service.
type serviceCollector struct{ m *Metrics }

func (c *serviceCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descViews, descSessions, descChecksRunning, descCheckEntries, descCheckBytes, descPurgesRunning, descPurgeEntries} {
		ch <- d
	}
}

func (c *serviceCollector) Collect(ch chan<- prometheus.Metric) {
	svc := c.m.src.Service
	log := c.m.src.Log
	ctx, cancel := context.WithTimeout(context.Background(), collectTimeout)
	defer cancel()

	if views, err := svc.ListViews(ctx, "", ""); err == nil {
		n := map[string]int{"users": 0, "projects": 0, "sessions": 0}
		for _, v := range views {
			n[v.Namespace]++
		}
		for ns, k := range n {
			ch <- prometheus.MustNewConstMetric(descViews, prometheus.GaugeValue, float64(k), ns)
		}
	} else {
		log.Debug().Err(err).Msg("metrics: views left out")
	}
	if sessions, err := svc.Sessions(ctx); err == nil {
		ch <- prometheus.MustNewConstMetric(descSessions, prometheus.GaugeValue, float64(len(sessions)))
	} else {
		log.Debug().Err(err).Msg("metrics: sessions left out")
	}

	checks, purges := 0, 0
	type sk struct{ vol, scope string }
	entries, bytes := map[sk]int64{}, map[sk]int64{}
	for _, a := range svc.Activities() {
		switch a.Kind {
		case service.ActivityCheck:
			checks++
			k := sk{a.Volume, a.Scope}
			entries[k] += a.Entries
			bytes[k] += a.Bytes
		case service.ActivityPurge:
			purges++
			ch <- prometheus.MustNewConstMetric(descPurgeEntries, prometheus.GaugeValue, float64(a.Entries), a.Volume, a.Scope, a.Folder)
		}
	}
	for k, n := range entries {
		ch <- prometheus.MustNewConstMetric(descCheckEntries, prometheus.GaugeValue, float64(n), k.vol, k.scope)
		ch <- prometheus.MustNewConstMetric(descCheckBytes, prometheus.GaugeValue, float64(bytes[k]), k.vol, k.scope)
	}
	ch <- prometheus.MustNewConstMetric(descChecksRunning, prometheus.GaugeValue, float64(checks))
	ch <- prometheus.MustNewConstMetric(descPurgesRunning, prometheus.GaugeValue, float64(purges))
}
