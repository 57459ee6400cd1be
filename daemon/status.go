package daemon

import (
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/cleave-dev/cleave/kafkax"
	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/reconcile"
	"github.com/cleave-dev/cleave/reverse"
)

// Status is the /status document. It holds addresses, never a DSN: no password can leak
// through it. Most numbers are read from the same registry /metrics serves, so /status and
// the dashboard never disagree.
type Status struct {
	Version       string    `json:"version"`
	StartedAt     time.Time `json:"started_at"`
	UptimeSeconds float64   `json:"uptime_seconds"`

	Source    Endpoint        `json:"source"`
	Kafka     KafkaStatus     `json:"kafka"`
	Capture   CaptureStatus   `json:"capture"`
	Shards    []ShardStatus   `json:"shards"`
	Backfill  []TableBackfill `json:"backfill"`
	Reconcile ReconcileStatus `json:"reconcile"`
	// Cutover is the latest cut-over, absent before the first.
	Cutover *CutoverStatus `json:"cutover,omitempty"`
	// Reverse is reverse replication, present while it runs (after a cut-over switched).
	Reverse *ReverseStatus `json:"reverse,omitempty"`
}

// ReverseStatus is reverse replication: the shards' changes flowing back to the source.
type ReverseStatus struct {
	// CutoverID is the cut-over whose switch it follows.
	CutoverID uint64               `json:"cutover_id"`
	Shards    []ReverseShardStatus `json:"shards"`
}

// ReverseShardStatus is one shard's reverse window.
type ReverseShardStatus struct {
	Shard       string `json:"shard"`
	TopicPrefix string `json:"topic_prefix"`
	// Start is where reading the shard's binlog began, Read how far it has come.
	Start     string `json:"start"`
	Read      string `json:"read,omitempty"`
	Streaming bool   `json:"streaming"`
	// CaptureLagSeconds is how far reading is behind the shard; SinkLagSeconds is now
	// minus the shard commit time of the last change applied to the source, absent until
	// one was applied.
	CaptureLagSeconds float64  `json:"capture_lag_seconds"`
	SinkLagSeconds    *float64 `json:"sink_lag_seconds,omitempty"`
	Applied           int64    `json:"applied"`
}

func reverseStatus(rs reverse.Status, v metricsView) *ReverseStatus {
	out := &ReverseStatus{CutoverID: rs.CutoverID, Shards: []ReverseShardStatus{}}
	for _, sh := range rs.Shards {
		st := ReverseShardStatus{Shard: sh.Shard, TopicPrefix: sh.TopicPrefix, Streaming: sh.Capture.Streaming, CaptureLagSeconds: sh.Capture.LagSeconds}
		if sh.Start != nil {
			st.Start = fmt.Sprintf("%s:%d", sh.Start.File, sh.Start.Pos)
		}
		if sh.Capture.Read.File != "" {
			st.Read = sh.Capture.Read.String()
		}
		want := map[string]string{"shard": kafkax.ReverseSink(sh.Shard)}
		if lag, ok := v.max("cleave_sink_lag_seconds", want); ok {
			st.SinkLagSeconds = &lag
		}
		st.Applied = v.int("cleave_sink_events_applied_total", want)
		out.Shards = append(out.Shards, st)
	}
	return out
}

// CutoverStatus is the latest cut-over as its journal on the source holds it.
type CutoverStatus struct {
	ID uint64 `json:"id"`
	// Kind is "cutover" or "rollback".
	Kind         string    `json:"kind"`
	State        string    `json:"state"`
	UpdatedAt    time.Time `json:"updated_at"`
	WritePauseMs int64     `json:"write_pause_ms,omitempty"`
	// Reason says why it aborted, or what keeps it from finishing.
	Reason string `json:"reason,omitempty"`
}

// Endpoint is where a server is.
type Endpoint struct {
	Addr   string `json:"addr"`
	Flavor string `json:"flavor,omitempty"`
}

// KafkaStatus is where the change events go.
type KafkaStatus struct {
	Brokers     []string `json:"brokers"`
	TopicPrefix string   `json:"topic_prefix"`
}

// CaptureStatus is how far binlog capture has come. Positions are printed as capture
// prints them: file:pos, with the GTID state when the source has GTIDs.
type CaptureStatus struct {
	// Streaming is true while the replica connection is open.
	Streaming bool `json:"streaming"`
	// Read is the newest transaction boundary read from the binlog, Acknowledged the newest
	// whose events Kafka has all acknowledged, Stored the last checkpoint written.
	Read         string `json:"read,omitempty"`
	Acknowledged string `json:"acknowledged,omitempty"`
	Stored       string `json:"stored,omitempty"`
	// LagSeconds is how far reading is behind the source.
	LagSeconds float64 `json:"lag_seconds"`
	// Events counts the change events handed to Kafka since the process started.
	Events int64 `json:"events"`
	// ProduceErrors counts produce requests Kafka did not acknowledge.
	ProduceErrors int64 `json:"produce_errors"`
}

// ShardStatus is one shard's sink.
type ShardStatus struct {
	Name string `json:"name"`
	Addr string `json:"addr"`
	// LagSeconds is now minus the source commit time of the last event applied; absent
	// until the sink has applied one.
	LagSeconds *float64 `json:"lag_seconds,omitempty"`
	// ConsumerLag counts messages waiting in the shard's assigned partitions.
	ConsumerLag int64 `json:"consumer_lag_messages"`
	// Breaker is closed, half-open or open.
	Breaker string `json:"breaker"`
	// Applied counts events applied since the process started; DeadLetters those rejected
	// for good; Retries the batches retried.
	Applied     int64 `json:"applied"`
	DeadLetters int64 `json:"dead_letters"`
	Retries     int64 `json:"retries"`
}

// TableBackfill is one table's copy of its existing rows.
type TableBackfill struct {
	Table      string   `json:"table"`
	Progress   float64  `json:"progress_ratio"`
	RowsCopied int64    `json:"rows_copied"`
	ETASeconds *float64 `json:"eta_seconds,omitempty"`
}

// ReconcileStatus is the schedule and the last result of the checker.
type ReconcileStatus struct {
	// Interval is reconcile.interval; "0s" means no schedule.
	Interval string `json:"interval"`
	// Running is true while a check is in progress.
	Running bool `json:"running"`
	// NextAt is when the next scheduled check starts.
	NextAt *time.Time `json:"next_at,omitempty"`
	// LastSuccessAt is when the last check that completed finished.
	LastSuccessAt *time.Time `json:"last_success_at,omitempty"`
	// Last is the last finished check.
	Last *ReconcileRun `json:"last,omitempty"`
}

// ReconcileRun summarises one check: counts only, never row keys.
type ReconcileRun struct {
	Status     string           `json:"status"`
	StartedAt  time.Time        `json:"started_at"`
	FinishedAt time.Time        `json:"finished_at"`
	DriftRows  int              `json:"drift_rows"`
	Error      string           `json:"error,omitempty"`
	Tables     []ReconcileTable `json:"tables,omitempty"`
	Notes      []string         `json:"notes,omitempty"`
	Drift      []DriftCount     `json:"drift,omitempty"`
}

// ReconcileTable is one table of a check.
type ReconcileTable struct {
	Table       string `json:"table"`
	RowsChecked int64  `json:"rows_checked"`
	DriftRows   int    `json:"drift_rows"`
	InFlight    int    `json:"in_flight"`
	Error       string `json:"error,omitempty"`
}

// DriftCount is the number of drifted rows of one table on one shard of one kind.
type DriftCount struct {
	Table string `json:"table"`
	Shard string `json:"shard"`
	Kind  string `json:"kind"`
	Rows  int    `json:"rows"`
}

// summarize turns a checker's report (and its error) into a ReconcileRun.
func summarize(rep *reconcile.Report, err error, started, finished time.Time) *ReconcileRun {
	run := &ReconcileRun{StartedAt: started, FinishedAt: finished}
	if err != nil {
		run.Status = string(reconcile.StatusError)
		run.Error = err.Error()
	}
	if rep == nil {
		if run.Status == "" {
			run.Status = string(reconcile.StatusError)
		}
		return run
	}
	if run.Status == "" {
		run.Status = string(rep.Status)
	}
	run.DriftRows = rep.DriftCount()
	run.Notes = rep.Notes
	for _, t := range rep.Tables {
		rt := ReconcileTable{Table: t.Table, RowsChecked: t.RowsChecked, Error: t.Error, InFlight: len(t.InFlight)}
		for _, s := range t.Shards {
			for _, k := range reconcile.Kinds {
				if n := s.Drift[k]; n > 0 {
					rt.DriftRows += n
					run.Drift = append(run.Drift, DriftCount{Table: t.Table, Shard: s.Shard, Kind: string(k), Rows: n})
				}
			}
		}
		run.Tables = append(run.Tables, rt)
	}
	return run
}

// metricsView indexes one Gather of the registry by metric name.
type metricsView map[string][]*dto.Metric

func gather(g prometheus.Gatherer) metricsView {
	mfs, _ := g.Gather() // a partial result is still worth showing
	v := metricsView{}
	for _, mf := range mfs {
		v[mf.GetName()] = mf.GetMetric()
	}
	return v
}

func label(m *dto.Metric, name string) string {
	for _, lp := range m.GetLabel() {
		if lp.GetName() == name {
			return lp.GetValue()
		}
	}
	return ""
}

func value(m *dto.Metric) float64 {
	switch {
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetUntyped() != nil:
		return m.GetUntyped().GetValue()
	}
	return 0
}

// sum adds the samples of name whose labels match want.
func (v metricsView) sum(name string, want map[string]string) (float64, bool) {
	total, found := 0.0, false
	for _, m := range v[name] {
		ok := true
		for k, val := range want {
			if label(m, k) != val {
				ok = false
				break
			}
		}
		if ok {
			total += value(m)
			found = true
		}
	}
	return total, found
}

func (v metricsView) max(name string, want map[string]string) (float64, bool) {
	best, found := math.Inf(-1), false
	for _, m := range v[name] {
		ok := true
		for k, val := range want {
			if label(m, k) != val {
				ok = false
				break
			}
		}
		if ok && value(m) > best {
			best, found = value(m), true
		}
	}
	return best, found
}

func (v metricsView) int(name string, want map[string]string) int64 {
	f, _ := v.sum(name, want)
	return int64(f)
}

var breakerStates = map[float64]string{0: "closed", 1: "half-open", 2: "open"}

// fill sets the parts of s that the metrics hold.
func (d *Daemon) fill(s *Status, v metricsView) {
	s.Capture.Events = v.int("cleave_capture_events_total", nil)
	s.Capture.ProduceErrors = v.int("cleave_capture_produce_errors_total", nil)

	for _, sh := range d.cfg.Shards {
		want := map[string]string{"shard": sh.Name}
		st := ShardStatus{Name: sh.Name, Addr: mysqlx.Addr(sh.DSN), Breaker: "closed"}
		if lag, ok := v.max("cleave_sink_lag_seconds", want); ok {
			st.LagSeconds = &lag
		}
		st.ConsumerLag = v.int("cleave_sink_consumer_lag_messages", want)
		if b, ok := v.max("cleave_sink_breaker_state", want); ok {
			st.Breaker = breakerStates[b]
		}
		st.Applied = v.int("cleave_sink_events_applied_total", want)
		st.DeadLetters = v.int("cleave_sink_dead_letters_total", want)
		st.Retries = v.int("cleave_sink_retries_total", want)
		s.Shards = append(s.Shards, st)
	}

	byTable := map[string]*TableBackfill{}
	get := func(m *dto.Metric) *TableBackfill {
		t := label(m, "table")
		if byTable[t] == nil {
			byTable[t] = &TableBackfill{Table: t}
		}
		return byTable[t]
	}
	for _, m := range v["cleave_backfill_progress_ratio"] {
		get(m).Progress = value(m)
	}
	for _, m := range v["cleave_backfill_rows_copied_total"] {
		get(m).RowsCopied = int64(value(m))
	}
	for _, m := range v["cleave_backfill_eta_seconds"] {
		eta := value(m)
		get(m).ETASeconds = &eta
	}
	s.Backfill = []TableBackfill{} // an empty list, not null, when nothing is reported
	for _, b := range byTable {
		s.Backfill = append(s.Backfill, *b)
	}
	sort.Slice(s.Backfill, func(i, j int) bool { return s.Backfill[i].Table < s.Backfill[j].Table })
}
