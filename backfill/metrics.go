package backfill

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the backfill's Prometheus metrics. The table label is one of the configured
// tables.
type metrics struct {
	rows       *prometheus.CounterVec
	chunks     *prometheus.CounterVec
	superseded *prometheus.CounterVec
	ratio      *prometheus.GaugeVec
	eta        *prometheus.GaugeVec
	throttled  prometheus.Counter
	// snapshotRetries counts snapshots taken again because capture had already read past
	// their position (see capture.ErrSnapshotBehind).
	snapshotRetries prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns, sub = "cleave", "backfill"
	m := &metrics{
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "rows_copied_total",
			Help: "Rows copied by the backfill and acknowledged by Kafka, by table. At start it counts the rows the current copy of the table had stored.",
		}, []string{"table"}),
		chunks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "chunks_total",
			Help: "Chunks copied by the backfill and acknowledged by Kafka in this process, by table. A chunk copied again after a crash or a stream restart counts again.",
		}, []string{"table"}),
		superseded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "rows_superseded_total",
			Help: "Copied rows left out of the stream because it already carried a newer change of the same key (updated or deleted after the chunk's snapshot), by table.",
		}, []string{"table"}),
		ratio: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "progress_ratio",
			Help: "Share of the table's rows copied by its current backfill (1 when done), by table.",
		}, []string{"table"}),
		eta: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "eta_seconds",
			Help: "Estimated seconds until the table's backfill is done (0 when done), by table; absent until the copy has a rate.",
		}, []string{"table"}),
		throttled: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "throttled_seconds_total",
			Help: "Time the backfill waited for backfill.max_rows_per_second or for a busy source (Threads_running above the limit).",
		}),
		snapshotRetries: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "snapshot_retries_total",
			Help: "Chunk snapshots taken again because capture had already read a transaction the snapshot did not yet see (written to the binlog, not yet visible in the engine).",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.rows, m.chunks, m.superseded, m.ratio, m.eta, m.throttled, m.snapshotRetries} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
