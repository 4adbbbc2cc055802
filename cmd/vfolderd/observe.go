package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/vfolder/vfolder/internal/config"
	"github.com/vfolder/vfolder/internal/metrics"
	"github.com/vfolder/vfolder/internal/server"
	"github.com/vfolder/vfolder/internal/service"
	"github.com/vfolder/vfolder/quota"
)

// observe is the daemon's metrics endpoint and audit log, each present
// only when configured ([metrics] listen / --metrics-listen, [audit] file
// / --audit-log).
type observe struct {
	metrics *metrics.Metrics
	msrv    *metrics.Server
	audit   *server.AuditLog
	hup     chan os.Signal
	hupDone chan struct{}
	log     zerolog.Logger
}

// startObserve starts what cfg asks for. It runs before the FUSE
// namespace is mounted, so that every FUSE request is observed. The audit
// log is reopened on SIGHUP (logrotate); without an audit log SIGHUP keeps
// its default action.
func startObserve(cfg *config.Config, ver string, ledger *quota.Manager, svc *service.Service, log zerolog.Logger) (o *observe, err error) {
	o = &observe{log: log}
	defer func() {
		if err != nil {
			o.Close()
		}
	}()
	if cfg.Audit.Enabled() {
		if o.audit, err = server.OpenAudit(cfg.Audit.File, log); err != nil {
			return nil, err
		}
		o.hup, o.hupDone = make(chan os.Signal, 1), make(chan struct{})
		signal.Notify(o.hup, syscall.SIGHUP)
		go func() {
			defer close(o.hupDone)
			for range o.hup {
				if err := o.audit.Reopen(); err != nil {
					log.Error().Err(err).Str("audit_log", cfg.Audit.File).Msg("SIGHUP: cannot reopen the audit log; still writing to the old file")
				} else {
					log.Info().Str("audit_log", cfg.Audit.File).Msg("SIGHUP: audit log reopened")
				}
			}
		}()
		log.Info().Str("audit_log", cfg.Audit.File).Msg("auditing API changes")
	}
	if cfg.Metrics.Enabled() {
		node := ""
		if cfg.Cluster.Enabled() {
			node = cfg.Cluster.Node()
		}
		o.metrics = metrics.New(metrics.Sources{Version: ver, Ledger: ledger, Service: svc, Node: node, Log: log})
		if o.msrv, err = o.metrics.Listen(cfg.Metrics.Listen); err != nil {
			return nil, err
		}
		log.Info().Str("metrics_listen", o.msrv.Addr()).Msg("serving metrics at /metrics")
	}
	return o, nil
}

// Audit is the audit log for the API server (nil: none).
func (o *observe) Audit() *server.AuditLog {
	if o == nil {
		return nil
	}
	return o.audit
}

// Close stops the metrics listener and closes the audit log.
func (o *observe) Close() {
	if o == nil {
		return
	}
	if o.msrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := o.msrv.Shutdown(ctx); err != nil {
			o.log.Warn().Err(err).Msg("stopping the metrics listener")
		}
		cancel()
		o.msrv = nil
	}
	if o.metrics != nil {
		o.metrics.Close()
	}
	if o.hup != nil {
		signal.Stop(o.hup)
		close(o.hup)
		<-o.hupDone
		o.hup = nil
	}
	if o.audit != nil {
		if err := o.audit.Close(); err != nil {
			o.log.Warn().Err(err).Msg("closing the audit log")
		}
		o.audit = nil
	}
}
