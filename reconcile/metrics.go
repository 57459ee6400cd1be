package reconcile

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the checker's Prometheus series. The registry is injected; registering twice
// (a second Checker on the same registry, as `cleave run` may build) reuses the series.
type metrics struct {
	drift       *prometheus.GaugeVec
	inFlight    *prometheus.GaugeVec
	alertAbove  *prometheus.GaugeVec
	rows        *prometheus.CounterVec
	chunks      *prometheus.CounterVec
	duration    prometheus.Gauge
	lastSuccess prometheus.Gauge
	throttled   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		drift: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cleave_reconcile_drift_rows",
			Help: "Rows that differ between the source and a shard at the last check, by table, shard and kind (missing, extra, wrong_shard, duplicate, changed).",
		}, []string{"table", "shard", "kind"}),
		alertAbove: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cleave_reconcile_drift_alert_above_rows",
			Help: "The table's drift_alert_above: CleaveDriftDetected fires for it only when more of its rows drifted than this.",
		}, []string{"table"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cleave_reconcile_in_flight_rows",
			Help: "Rows that still differed after the last re-check round of the last check but were changing or waiting for a lagging sink (not drift).",
		}, []string{"table"}),
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cleave_reconcile_rows_checked_total",
			Help: "Source rows compared with the shards.",
		}, []string{"table"}),
		chunks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cleave_reconcile_chunks_checked_total",
			Help: "Chunks compared with the shards.",
		}, []string{"table"}),
		duration: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cleave_reconcile_duration_seconds",
			Help: "Wall time of the last complete check.",
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cleave_reconcile_last_success_timestamp_seconds",
			Help: "Unix time at which the last check that covered every table finished (with or without drift).",
		}),
		throttled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cleave_reconcile_throttled_total",
			Help: "Pauses of the check because the source's Threads_running was above the limit.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	reg1 := func(c prometheus.Collector) prometheus.Collector {
		if err != nil {
			return c
		}
		got, e := register(reg, c)
		if e != nil {
			err = e
			return c
		}
		return got
	}
	m.drift = reg1(m.drift).(*prometheus.GaugeVec)
	m.inFlight = reg1(m.inFlight).(*prometheus.GaugeVec)
	m.alertAbove = reg1(m.alertAbove).(*prometheus.GaugeVec)
	m.rows = reg1(m.rows).(*prometheus.CounterVec)
	m.chunks = reg1(m.chunks).(*prometheus.CounterVec)
	m.duration = reg1(m.duration).(prometheus.Gauge)
	m.lastSuccess = reg1(m.lastSuccess).(prometheus.Gauge)
	m.throttled = reg1(m.throttled).(prometheus.Counter)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c, or returns the collector already registered under its name.
func register(reg prometheus.Registerer, c prometheus.Collector) (prometheus.Collector, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			return are.ExistingCollector, nil
		}
		return nil, fmt.Errorf("register reconcile metrics: %w", err)
	}
	return c, nil
}

// observe publishes a finished run's results.
func (c *Checker) observe(rep *Report) {
	complete := true
	for _, t := range rep.Tables {
		if t.Error != "" {
			complete = false
			continue
		}
		for _, s := range t.Shards {
			for _, k := range Kinds {
				c.m.drift.WithLabelValues(t.Table, s.Shard, string(k)).Set(float64(s.Drift[k]))
			}
		}
		c.m.inFlight.WithLabelValues(t.Table).Set(float64(len(t.InFlight)))
		c.m.alertAbove.WithLabelValues(t.Table).Set(float64(c.driftAlertAbove(t.Table)))
	}
	c.m.duration.Set(rep.DurationSeconds)
	if complete {
		c.m.lastSuccess.Set(float64(rep.FinishedAt.UnixNano()) / 1e9)
	}
}
