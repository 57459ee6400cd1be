package sink

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the sink's Prometheus metrics, labelled by shard. One Metrics serves every
// sink of a process (NewMetrics registers the collectors once); labels never hold keys or
// positions.
type Metrics struct {
	applied     *prometheus.CounterVec
	stale       *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	consumerLag *prometheus.GaugeVec
	retries     *prometheus.CounterVec
	breaker     *prometheus.GaugeVec
	deadLetters *prometheus.CounterVec
	lag         *lagCollector
}

// NewMetrics creates the sink metrics and registers them with reg (nil: not registered).
// Registering on a registry that already holds them reuses the registered ones, so several
// sinks of one process can each call it.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		applied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cleave_sink_events_applied_total",
			Help: "Change events routed to the shard and applied, by source operation (c, u, d, r, s as in the event); includes those the version check then skipped.",
		}, []string{"shard", "table", "op"}),
		stale: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cleave_sink_events_stale_total",
			Help: "Row changes skipped by the version check because the shard already held a newer version of the row (replays, overlaps).",
		}, []string{"shard", "table"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cleave_sink_apply_duration_seconds",
			Help:    "Time to apply one batch to the shard: its whole transaction, offsets included.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}, []string{"shard"}),
		consumerLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cleave_sink_consumer_lag_messages",
			Help: "Messages in the assigned partitions not yet applied (high watermark minus the stored next offset).",
		}, []string{"shard"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cleave_sink_retries_total",
			Help: "Batch applications retried after a retryable shard error (deadlock, lock wait timeout, lost connection, open breaker).",
		}, []string{"shard"}),
		breaker: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cleave_sink_breaker_state",
			Help: "State of the shard's circuit breaker: 0 closed, 1 half-open, 2 open.",
		}, []string{"shard"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cleave_sink_dead_letters_total",
			Help: "Events the shard rejected for good and that went to the dead-letter topic.",
		}, []string{"shard", "table"}),
		lag: &lagCollector{
			desc:    prometheus.NewDesc("cleave_sink_lag_seconds", "Seconds between now and the source commit time of the last event applied (heartbeats included) on the shard's slowest assigned partition.", []string{"shard"}, nil),
			sources: map[string]func() (time.Time, bool){},
		},
	}
	if reg == nil {
		return m, nil
	}
	var err error
	if m.applied, err = register(reg, m.applied); err != nil {
		return nil, err
	}
	if m.stale, err = register(reg, m.stale); err != nil {
		return nil, err
	}
	if m.duration, err = register(reg, m.duration); err != nil {
		return nil, err
	}
	if m.consumerLag, err = register(reg, m.consumerLag); err != nil {
		return nil, err
	}
	if m.retries, err = register(reg, m.retries); err != nil {
		return nil, err
	}
	if m.breaker, err = register(reg, m.breaker); err != nil {
		return nil, err
	}
	if m.deadLetters, err = register(reg, m.deadLetters); err != nil {
		return nil, err
	}
	if m.lag, err = register(reg, m.lag); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c, or returns the collector of the same description that reg
// already holds.
func register[T prometheus.Collector](reg prometheus.Registerer, c T) (T, error) {
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(T); ok {
			return existing, nil
		}
	}
	return c, fmt.Errorf("register sink metrics: %w", err)
}

// lagCollector computes cleave_sink_lag_seconds at scrape time, so the value keeps
// growing while nothing arrives (a stopped capture) instead of freezing.
type lagCollector struct {
	desc    *prometheus.Desc
	mu      sync.Mutex
	sources map[string]func() (time.Time, bool)
}

func (l *lagCollector) Describe(ch chan<- *prometheus.Desc) { ch <- l.desc }

func (l *lagCollector) Collect(ch chan<- prometheus.Metric) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	for shard, f := range l.sources {
		if ts, ok := f(); ok {
			ch <- prometheus.MustNewConstMetric(l.desc, prometheus.GaugeValue, now.Sub(ts).Seconds(), shard)
		}
	}
}

func (l *lagCollector) set(shard string, f func() (time.Time, bool)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if f == nil {
		delete(l.sources, shard)
		return
	}
	l.sources[shard] = f
}
