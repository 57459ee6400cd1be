package capture

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are capture's Prometheus metrics. Labels are bounded: table is one of the
// configured tables, op one of c, u, d, s.
type metrics struct {
	events         *prometheus.CounterVec
	heartbeats     prometheus.Counter
	bytes          prometheus.Counter
	produceErrors  prometheus.Counter
	produceRetries prometheus.Counter
	restarts       prometheus.Counter
	inFlightBytes  prometheus.Gauge
	backpressure   prometheus.Counter
	checkpointFile prometheus.Gauge
	checkpointPos  prometheus.Gauge
	lag            prometheus.GaugeFunc
	// ownApplySkipped counts cleave's own apply transactions (ownapply.go).
	ownApplySkipped prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, lag func() float64) *metrics {
	const ns, sub = "cleave", "capture"
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "events_total",
			Help: "Change events handed to Kafka, by source table and op (c insert, u update, d delete, s schema change). Events re-emitted after a restart count again.",
		}, []string{"table", "op"}),
		heartbeats: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "heartbeats_total",
			Help: "Heartbeat messages written (one per partition of every table topic per heartbeat).",
		}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "bytes_total",
			Help: "Bytes of message keys and values acknowledged by Kafka.",
		}),
		produceErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "produce_errors_total",
			Help: "Produce requests Kafka did not acknowledge (each one was retried or stopped capture).",
		}),
		produceRetries: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "produce_retries_total",
			Help: "Produce requests sent again after a failure, and restarts of the stream from the checkpoint after a batch failed for good.",
		}),
		restarts: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "stream_restarts_total",
			Help: "Times the binlog stream was restarted from the last acknowledged position after a retryable failure.",
		}),
		inFlightBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "in_flight_bytes",
			Help: "Bytes of events handed to Kafka and not yet acknowledged (bounded by capture.max_in_flight_bytes).",
		}),
		backpressure: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "backpressure_seconds_total",
			Help: "Time the binlog reader waited because capture.max_in_flight_bytes of events were unacknowledged by Kafka: when it grows at one second per second, Kafka sets the pace.",
		}),
		checkpointFile: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "checkpoint_binlog_file_index",
			Help: "Numeric suffix of the binlog file of the last stored checkpoint.",
		}),
		checkpointPos: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "checkpoint_binlog_position_bytes",
			Help: "Offset in its binlog file of the last stored checkpoint.",
		}),
		lag: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "source_lag_seconds",
			Help: "How far capture's reading is behind the source: 0 while the source's heartbeats show nothing is left to read, else now minus the commit time of the last event read.",
		}, lag),
		ownApplySkipped: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "own_apply_transactions_skipped_total",
			Help: "Transactions read whose first table map is _cleave.offsets: a cleave sink's apply, whose row changes capture does not emit, so that replication in both directions does not loop. Transactions read again after a restart count again.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.events, m.heartbeats, m.bytes, m.produceErrors, m.produceRetries, m.restarts,
			m.inFlightBytes, m.backpressure, m.checkpointFile, m.checkpointPos, m.lag, m.ownApplySkipped)
	}
	return m
}
