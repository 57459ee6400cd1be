package reconcile

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// SchemaVersion is the version of the JSON report's layout. It changes when a field is
// renamed or removed or changes meaning; adding a field does not change it.
const SchemaVersion = 1

// Kind classifies a drifted row.
type Kind string

// The kinds of drift.
const (
	// Missing: the source has the row, the shard that owns it does not.
	Missing Kind = "missing"
	// Extra: a shard has a row the source does not have.
	Extra Kind = "extra"
	// WrongShard: the row sits on a shard that does not own it, and its owner lacks it.
	WrongShard Kind = "wrong_shard"
	// Duplicate: the row sits on its owner and also on another shard (reported there).
	Duplicate Kind = "duplicate"
	// Changed: the owner has the row with different column values (Columns names them).
	Changed Kind = "changed"
)

// Kinds lists the drift kinds in report order.
var Kinds = []Kind{Missing, Extra, WrongShard, Duplicate, Changed}

// Status is the verdict of a run.
type Status string

// The verdicts.
const (
	StatusConsistent Status = "consistent"
	StatusDrift      Status = "drift"
	StatusError      Status = "error"
)

// Exit codes of `cleave reconcile`.
const (
	ExitConsistent = 0
	ExitDrift      = 1
	ExitCannot     = 2
)

// Report is the result of one run; `--json FILE` writes it as is. Its layout is pinned by
// testdata/report.golden.json.
type Report struct {
	// SchemaVersion is SchemaVersion.
	SchemaVersion int `json:"schema_version"`
	// Status is consistent, drift (at least one drifted row remains), or error (no drift
	// found, but at least one table could not be checked).
	Status     Status    `json:"status"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
	// DurationSeconds is the wall time of the run.
	DurationSeconds float64 `json:"duration_seconds"`
	// Resumed is true when the run continued a killed run from its state file.
	Resumed bool `json:"resumed"`
	// Tables holds one entry per configured table, in configuration order.
	Tables []*TableReport `json:"tables"`
	// Repair is present when repair statements were generated (--repair-sql) or applied
	// (--repair).
	Repair *RepairReport `json:"repair,omitempty"`
	// Notes explain what the numbers cannot: sinks that stayed behind, truncated lists.
	Notes []string `json:"notes,omitempty"`
}

// TableReport is the result for one table.
type TableReport struct {
	// Table is db.table.
	Table string `json:"table"`
	// Strategy is the table's routing strategy.
	Strategy string `json:"strategy"`
	// RowsChecked counts the source rows compared (including chunks of a resumed run).
	RowsChecked int64 `json:"rows_checked"`
	// Chunks counts the chunks compared, ChunksResumed those taken from the state file of a
	// killed run (not compared again), ChunksMismatched those whose aggregates differed.
	Chunks           int `json:"chunks"`
	ChunksResumed    int `json:"chunks_resumed"`
	ChunksMismatched int `json:"chunks_mismatched"`
	// DurationSeconds is the time spent on the table in this run.
	DurationSeconds float64 `json:"duration_seconds"`
	// Shards holds per-shard counts, in configuration order.
	Shards []*ShardReport `json:"shards"`
	// Drift lists every drifted row (at most the configured limit; see Truncated).
	Drift []DriftRow `json:"drift"`
	// InFlight lists rows that still differed after the last re-check round but whose
	// source row kept changing or whose sinks had not caught up: not drift.
	InFlight []InFlightRow `json:"in_flight"`
	// Truncated is true when more drifted rows were found than listed.
	Truncated bool `json:"truncated,omitempty"`
	// Error says why the table could not be checked (completely).
	Error string `json:"error,omitempty"`
}

// ShardReport counts one table's rows on one shard.
type ShardReport struct {
	Shard string `json:"shard"`
	// RowsChecked counts the shard's rows compared.
	RowsChecked int64 `json:"rows_checked"`
	// Drift counts drifted rows reported on this shard, by kind (every kind present).
	Drift map[Kind]int `json:"drift"`
	// InFlight counts rows in flight involving this shard.
	InFlight int `json:"in_flight"`
}

// DriftRow is one drifted row on one shard.
type DriftRow struct {
	Kind Kind `json:"kind"`
	// Shard is where the drift is: the owner for missing and changed, the shard holding the
	// stray copy for extra, wrong_shard and duplicate.
	Shard string `json:"shard"`
	// ExpectedShards are the shards that own the row by routing (absent for extra).
	ExpectedShards []string `json:"expected_shards,omitempty"`
	// Key is the primary key in key order, each value in the change event's encoding
	// (numbers as JSON numbers, strings as text, binary as base64).
	Key []any `json:"key"`
	// Columns names the differing columns of a changed row.
	Columns []string `json:"columns,omitempty"`
	// Repaired is true when --repair fixed the row and the re-check confirmed it.
	Repaired bool `json:"repaired,omitempty"`

	// Internal: what repair needs, not part of the report.
	raw        [][]byte // key values as selected (see keyCol)
	version    []byte   // the shard row's version column as read, nil when absent
	hasVersion bool
}

// InFlightRow is a row that could not be settled within the re-check rounds.
type InFlightRow struct {
	Key []any `json:"key"`
	// Shards are the shards whose copy differed in the last round.
	Shards []string `json:"shards,omitempty"`
	// Reason is "source row kept changing" or names the sink that stayed behind.
	Reason string `json:"reason"`
}

// RepairReport holds the statements that fix the drift, per shard.
type RepairReport struct {
	// Applied is true with --repair.
	Applied bool `json:"applied"`
	// Statements maps a shard name to the SQL run (or to run) on it, in order.
	Statements map[string][]string `json:"statements"`
	// Repaired counts rows fixed and confirmed by the re-check; Remaining those that still
	// differ afterwards.
	Repaired  int `json:"repaired"`
	Remaining int `json:"remaining"`
}

// DriftCount is the number of drifted rows (not repaired) in the report.
func (r *Report) DriftCount() int {
	n := 0
	for _, t := range r.Tables {
		for _, d := range t.Drift {
			if !d.Repaired {
				n++
			}
		}
	}
	return n
}

// ExitCode maps the report and the error of Run to the exit code: 1 when drift remains
// (even if another table could not be checked: drift is the finding that matters), 2 when
// the run failed or a table could not be checked, 0 otherwise.
func ExitCode(r *Report, err error) int {
	if r != nil && r.DriftCount() > 0 {
		return ExitDrift
	}
	if err != nil || r == nil || r.Status == StatusError {
		return ExitCannot
	}
	return ExitConsistent
}

func (r *Report) finish(now time.Time) {
	r.FinishedAt = now
	r.DurationSeconds = now.Sub(r.StartedAt).Seconds()
	r.Status = StatusConsistent
	for _, t := range r.Tables {
		if t.Error != "" {
			r.Status = StatusError
		}
		t.count()
	}
	if r.DriftCount() > 0 {
		r.Status = StatusDrift
	}
}

// count sets the per-shard drift and in-flight counts from the table's rows.
func (t *TableReport) count() {
	for _, s := range t.Shards {
		for _, k := range Kinds {
			s.Drift[k] = 0
		}
		s.InFlight = 0
	}
	for _, d := range t.Drift {
		if d.Repaired {
			continue
		}
		if s := t.shard(d.Shard); s != nil {
			s.Drift[d.Kind]++
		}
	}
	for _, f := range t.InFlight {
		for _, name := range f.Shards {
			if s := t.shard(name); s != nil {
				s.InFlight++
			}
		}
	}
}

func (t *TableReport) shard(name string) *ShardReport {
	for _, s := range t.Shards {
		if s.Shard == name {
			return s
		}
	}
	return nil
}

// WriteJSON writes the report, indented.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteSummary writes the terminal summary: one line per table and shard with the rows
// checked, the drift by kind, the rows in flight and the time taken.
func (r *Report) WriteSummary(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := []string{"TABLE", "SHARD", "ROWS"}
	for _, k := range Kinds {
		head = append(head, strings.ToUpper(string(k)))
	}
	head = append(head, "IN_FLIGHT", "TIME", "")
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	for _, t := range r.Tables {
		dur := (time.Duration(t.DurationSeconds*1000) * time.Millisecond).String()
		fields := []string{t.Table, "(source)", fmt.Sprint(t.RowsChecked)}
		for range Kinds {
			fields = append(fields, "")
		}
		fields = append(fields, "", dur, "")
		fmt.Fprintln(tw, strings.Join(fields, "\t"))
		for _, s := range t.Shards {
			fields := []string{"", s.Shard, fmt.Sprint(s.RowsChecked)}
			for _, k := range Kinds {
				fields = append(fields, fmt.Sprint(s.Drift[k]))
			}
			fields = append(fields, fmt.Sprint(s.InFlight), "", "")
			fmt.Fprintln(tw, strings.Join(fields, "\t"))
		}
	}
	tw.Flush()
	for _, t := range r.Tables {
		if t.Error != "" {
			fmt.Fprintf(w, "%s: could not check: %s\n", t.Table, t.Error)
		}
		if t.Truncated {
			fmt.Fprintf(w, "%s: more drifted rows than listed\n", t.Table)
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintln(w, "note:", n)
	}
	switch r.Status {
	case StatusConsistent:
		fmt.Fprintf(w, "consistent: %d rows in %d tables match (%.1fs)\n", r.rows(), len(r.Tables), r.DurationSeconds)
	case StatusDrift:
		fmt.Fprintf(w, "DRIFT: %d rows differ (%.1fs)\n", r.DriftCount(), r.DurationSeconds)
	case StatusError:
		fmt.Fprintf(w, "could not check every table (%.1fs)\n", r.DurationSeconds)
	}
}

func (r *Report) rows() int64 {
	var n int64
	for _, t := range r.Tables {
		n += t.RowsChecked
	}
	return n
}

// sortDrift orders drift rows by shard, kind and key text, so reports are stable.
func sortDrift(rows []DriftRow) {
	sort.SliceStable(rows, func(i, j int) bool {
		a, b := rows[i], rows[j]
		if a.Shard != b.Shard {
			return a.Shard < b.Shard
		}
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		return keyText(a.Key) < keyText(b.Key)
	})
}

func keyText(k []any) string {
	b, _ := json.Marshal(k)
	return string(b)
}
