// Package daemon composes `cleave run`: binlog capture with the backfill of the rows that
// existed before it, one sink per shard and the scheduled reconcile in one process,
// behind one operational HTTP listener (/metrics, /healthz, /readyz, /status). It owns
// the composition only — which parts run, the one
// metrics registry they share, how the first fatal error stops the others, how a shutdown
// drains them, and what /readyz and /status report — never the work of a part: that stays
// in capture, sink and reconcile.
//
// # Lifecycle
//
// Every part is Run(ctx) error, and the daemon runs them in one errgroup. A part that
// returns an error cancels the group's context: the other parts finish what they hold (a
// sink its batch and offsets, capture its acknowledged checkpoint) and return, and Run
// returns the first error, named by its part. Cancelling Run's context (SIGTERM in `cleave
// run`) drains the parts the same way, and Run returns nil. A part that returns nil while
// the daemon is still meant to run is an error too: the daemon never limps on without it.
//
// A failed reconcile is not fatal: it is logged, shown in /status, and the schedule goes on
// (CleaveReconcileStale alerts when checks keep failing).
package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/cleave-dev/cleave/backfill"
	"github.com/cleave-dev/cleave/capture"
	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/cutover"
	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/opshttp"
	"github.com/cleave-dev/cleave/reconcile"
	"github.com/cleave-dev/cleave/reverse"
	"github.com/cleave-dev/cleave/sink"
)

// Options are the daemon's collaborators. The zero value works.
type Options struct {
	// Log receives every part's logs; nil discards them.
	Log *zap.Logger
	// Registry is the one registry every part registers its metrics on and /metrics serves;
	// nil creates one. The Go and process collectors and cleave_build_info are added to it.
	Registry *prometheus.Registry
	// Version is the cleave version reported by cleave_build_info and /status.
	Version string
	// Listen overrides http.listen (tests use 127.0.0.1:0).
	Listen string
}

// runner is a long-running part of the daemon.
type runner interface {
	Run(ctx context.Context) error
}

var (
	_ runner = (*capture.Capture)(nil)
	_ runner = (*backfill.Backfill)(nil)
	_ runner = (*sink.Sink)(nil)
	_ runner = (*opshttp.Server)(nil)
	_ runner = (*cutover.Watcher)(nil)
	_ runner = (*reverse.Runner)(nil)
)

// part is a runner with the name its errors and logs carry.
type part struct {
	name string
	r    runner
}

// Daemon is `cleave run`. Create it with New, run it once with Run.
type Daemon struct {
	cfg     *config.Config
	log     *zap.Logger
	reg     *prometheus.Registry
	version string
	started time.Time

	capture  *capture.Capture
	backfill *backfill.Backfill
	sinks    []*sink.Sink
	checker  *reconcile.Checker
	ready    *readiness
	http     *opshttp.Server
	cutover  *cutover.Watcher
	reverse  *reverse.Runner

	mu        sync.Mutex
	reconcile ReconcileStatus
}

// New builds every part for cfg without connecting to anything.
func New(cfg *config.Config, opts Options) (*Daemon, error) {
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	reg := opts.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	d := &Daemon{cfg: cfg, log: opts.Log, reg: reg, version: opts.Version, started: time.Now()}
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, fmt.Errorf("register Go metrics: %w", err)
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, fmt.Errorf("register process metrics: %w", err)
	}
	opshttp.BuildInfo(reg, opts.Version, runtime.Version())
	d.reconcile.Interval = cfg.Reconcile.Interval.String()
	if cfg.Reconcile.Interval > 0 {
		// The alert rules compare the time since the last good check with the schedule.
		interval := prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cleave_reconcile_interval_seconds",
			Help: "reconcile.interval of the scheduled checks of cleave run.",
		})
		interval.Set(cfg.Reconcile.Interval.Seconds())
		if err := reg.Register(interval); err != nil {
			return nil, fmt.Errorf("register reconcile interval: %w", err)
		}
	}

	var err error
	if d.capture, err = capture.New(cfg, capture.Options{Log: d.log.Named("capture"), Registerer: reg}); err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	// The backfill copies, into capture's stream, every configured table whose copy is not
	// done (a table new to the configuration too), and serves `cleave backfill` requests.
	if d.backfill, err = backfill.New(cfg, d.capture, backfill.Options{Log: d.log.Named("backfill"), Registerer: reg}); err != nil {
		return nil, fmt.Errorf("backfill: %w", err)
	}
	sm, err := sink.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	for _, s := range cfg.Shards {
		sk, err := sink.New(cfg, s.Name, sink.Options{Log: d.log.Named("sink"), Metrics: sm})
		if err != nil {
			return nil, err
		}
		d.sinks = append(d.sinks, sk)
	}
	if d.checker, err = reconcile.New(cfg, reconcile.WithLogger(d.log.Named("reconcile")), reconcile.WithRegisterer(reg)); err != nil {
		return nil, err
	}
	co, err := cutover.New(cfg, d.log.Named("cutover"), cutover.Options{})
	if err != nil {
		return nil, err
	}
	if d.cutover, err = cutover.NewWatcher(co, reg, d.log.Named("cutover")); err != nil {
		return nil, fmt.Errorf("cutover: %w", err)
	}
	// After a cut-over switches, the shards' changes flow back to the source.
	if d.reverse, err = reverse.New(cfg, reverse.Options{Log: d.log.Named("reverse"), Registerer: reg, SinkMetrics: sm, Latest: d.cutover.LatestSwitched}); err != nil {
		return nil, err
	}
	if d.ready, err = newReadiness(cfg); err != nil {
		return nil, err
	}
	listen := cfg.HTTP.Listen
	if opts.Listen != "" {
		listen = opts.Listen
	}
	if listen != "" {
		d.http = &opshttp.Server{
			Listen:   listen,
			Gatherer: reg,
			Checks:   d.ready.checks(),
			Status:   func(ctx context.Context) any { return d.Status(ctx) },
			Pprof:    cfg.HTTP.Pprof,
			Log:      d.log.Named("http"),
		}
	}
	return d, nil
}

// Registry is the registry /metrics serves.
func (d *Daemon) Registry() *prometheus.Registry { return d.reg }

// Addr is the address of the HTTP listener once Run listens, or nil.
func (d *Daemon) Addr() net.Addr {
	if d.http == nil {
		return nil
	}
	return d.http.Addr()
}

// Run runs every part until ctx is cancelled (it then drains them and returns nil) or one
// of them fails (it then stops the others and returns that error).
func (d *Daemon) Run(ctx context.Context) error {
	defer d.ready.close()
	defer d.checker.Close()

	parts := []part{{"capture", d.capture}, {"backfill", d.backfill}, {"cutover", d.cutover}, {"reverse", d.reverse}}
	for i, s := range d.sinks {
		parts = append(parts, part{"sink " + d.cfg.Shards[i].Name, s})
	}
	if d.http != nil {
		parts = append(parts, part{"http", d.http})
	}
	if d.cfg.Reconcile.Interval > 0 {
		parts = append(parts, part{"reconcile", runFunc(d.schedule)})
	}
	d.log.Info("cleave run starting",
		zap.String("version", d.version),
		zap.String("source", mysqlx.Addr(d.cfg.Source.DSN)),
		zap.Strings("brokers", d.cfg.Kafka.Brokers),
		zap.Int("shards", len(d.cfg.Shards)),
		zap.Int("tables", len(d.cfg.Tables)),
		zap.Duration("reconcile_interval", d.cfg.Reconcile.Interval))

	g, gctx := errgroup.WithContext(ctx)
	for _, p := range parts {
		g.Go(func() error {
			err := p.r.Run(gctx)
			switch {
			case err != nil && gctx.Err() != nil && errors.Is(err, context.Canceled):
				// Interrupted by the shutdown: not a failure of its own.
			case err != nil:
				d.log.Error("stopped with an error: stopping cleave run", zap.String("part", p.name), zap.Error(err))
				if !strings.HasPrefix(err.Error(), p.name+": ") {
					err = fmt.Errorf("%s: %w", p.name, err)
				}
				return err
			case gctx.Err() == nil:
				err := errors.New("stopped without an error while cleave run was still running")
				d.log.Error("part stopped: stopping cleave run", zap.String("part", p.name))
				return fmt.Errorf("%s: %w", p.name, err)
			}
			d.log.Debug("part drained", zap.String("part", p.name))
			return nil
		})
	}
	err := g.Wait()
	if err == nil {
		d.log.Info("cleave run stopped: every part drained")
	}
	return err
}

// runFunc adapts a function to runner.
type runFunc func(ctx context.Context) error

func (f runFunc) Run(ctx context.Context) error { return f(ctx) }

// schedule runs the checker every reconcile.interval, the first time one interval after
// the start: capture and the sinks get that long to reach the present before the first
// verdict. Runs never overlap; a run longer than the interval delays the next one.
func (d *Daemon) schedule(ctx context.Context) error {
	interval := d.cfg.Reconcile.Interval
	for {
		next := time.Now().Add(interval)
		d.mu.Lock()
		d.reconcile.NextAt = &next
		d.mu.Unlock()
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		d.mu.Lock()
		d.reconcile.Running, d.reconcile.NextAt = true, nil
		d.mu.Unlock()

		started := time.Now()
		rep, err := d.checker.Run(ctx)
		if ctx.Err() != nil {
			return nil // shutting down: an interrupted run says nothing
		}
		run := summarize(rep, err, started, time.Now())
		fields := []zap.Field{zap.String("status", run.Status), zap.Int("drift_rows", run.DriftRows), zap.Duration("took", time.Since(started))}
		switch {
		case err != nil:
			d.log.Error("scheduled reconcile failed", append(fields, zap.Error(err))...)
		case run.Status == string(reconcile.StatusDrift):
			d.log.Warn("scheduled reconcile found drift", fields...)
		default:
			d.log.Info("scheduled reconcile done", fields...)
		}
		d.mu.Lock()
		d.reconcile.Running, d.reconcile.Last = false, run
		if err == nil && run.Status != string(reconcile.StatusError) {
			fin := run.FinishedAt
			d.reconcile.LastSuccessAt = &fin
		}
		d.mu.Unlock()
	}
}

// Status returns the /status document.
func (d *Daemon) Status(context.Context) Status {
	s := Status{
		Version:       d.version,
		StartedAt:     d.started.UTC(),
		UptimeSeconds: time.Since(d.started).Seconds(),
		Source:        Endpoint{Addr: mysqlx.Addr(d.cfg.Source.DSN), Flavor: d.cfg.Source.Flavor},
		Kafka:         KafkaStatus{Brokers: d.cfg.Kafka.Brokers, TopicPrefix: d.cfg.Kafka.TopicPrefix},
	}
	cs := d.capture.Status()
	s.Capture = CaptureStatus{Streaming: cs.Streaming, LagSeconds: cs.LagSeconds}
	if cs.Read.File != "" {
		s.Capture.Read, s.Capture.Acknowledged, s.Capture.Stored = cs.Read.String(), cs.Acknowledged.String(), cs.Stored.String()
	}
	metrics := gather(d.reg)
	d.fill(&s, metrics)
	d.mu.Lock()
	s.Reconcile = d.reconcile
	d.mu.Unlock()
	if rec := d.cutover.Latest(); rec != nil {
		s.Cutover = &CutoverStatus{ID: rec.ID, Kind: rec.Kind(), State: string(rec.State), UpdatedAt: rec.UpdatedAt,
			WritePauseMs: rec.Detail.WritePauseMs, Reason: rec.Detail.Reason}
	}
	if rs := d.reverse.Status(); rs.CutoverID != 0 {
		s.Reverse = reverseStatus(rs, metrics)
	}
	return s
}
