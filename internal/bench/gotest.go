package bench

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// BenchLine is one result line of `go test -bench` output: the benchmark's name (without
// the -GOMAXPROCS suffix), its iterations, and each reported metric by unit.
type BenchLine struct {
	Name       string
	Iterations int
	Metrics    map[string]float64
}

var gomaxprocs = regexp.MustCompile(`-\d+$`)

// ParseBenchOutput reads the result lines of `go test -bench` output, ignoring logs and
// everything else.
func ParseBenchOutput(r io.Reader) ([]BenchLine, error) {
	var out []BenchLine
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || !strings.HasPrefix(fields[0], "Benchmark") || len(fields)%2 != 0 {
			continue
		}
		n, err := strconv.Atoi(fields[1])
		if err != nil {
			continue
		}
		bl := BenchLine{Name: gomaxprocs.ReplaceAllString(fields[0], ""), Iterations: n, Metrics: map[string]float64{}}
		ok := true
		for i := 2; i+1 < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				ok = false
				break
			}
			bl.Metrics[fields[i+1]] = v
		}
		if ok {
			out = append(out, bl)
		}
	}
	return out, sc.Err()
}

// metric finds the value of unit on the line named name.
func metric(lines []BenchLine, name, unit string) (float64, error) {
	for _, l := range lines {
		if l.Name == name {
			if v, ok := l.Metrics[unit]; ok {
				return v, nil
			}
			return 0, fmt.Errorf("%s reported no %q metric", name, unit)
		}
	}
	return 0, fmt.Errorf("no result line for %s", name)
}

// GoBench describes how to turn one package benchmark's output into a figure.
type GoBench struct {
	Key, Title, How string
	// Cleave and Beside name the metrics: benchmark name, unit, and the label shown.
	Cleave, Beside []GoMetric
	// AnyRates shows every rate reported when Cleave's metrics are missing but the
	// benchmark ran (its metrics were renamed since this table was written).
	AnyRates bool
}

// GoMetric is one metric of a benchmark result line.
type GoMetric struct {
	Bench, Metric string
	// Label names the value in the table; Unit is the unit shown.
	Label, Unit string
	// Optional metrics leave the figure standing when they are missing.
	Optional bool
}

var captureBench = GoBench{
	Key:   "capture_catchup",
	Title: "capture catch-up of a 1M row-change backlog (70% inserts, 20% updates, 10% deletes, 9 columns) into Kafka",
	How: "capture/BenchmarkCatchUp (`go test -bench CatchUp -benchtime 1x`): capture in-process, started from a stored checkpoint before the backlog, " +
		"timed until Kafka has acknowledged every event (8 partitions, acks=all); beside it go-mysql's BinlogSyncer alone reading and decoding the same binlog range, same run.",
	Cleave: []GoMetric{{Bench: "BenchmarkCatchUp", Metric: "events/s", Unit: "events/s"}},
	Beside: []GoMetric{
		{Bench: "BenchmarkCatchUp", Metric: "bare-rows/s", Label: "bare go-mysql decode", Unit: "rows/s"},
		{Bench: "BenchmarkCatchUp", Metric: "%-of-bare", Label: "capture at", Unit: "% of bare", Optional: true},
	},
}

var reconcileBench = GoBench{
	Key:   "reconcile",
	Title: "reconcile of a 1M-row, 9-column table, source against 2 shards",
	How: "reconcile/BenchmarkReconcile1M (`-benchtime 1x`): cleave's chunked checker (count + 64-bit hash sum per chunk on the source and on both shards) verifying the table; " +
		"beside it the same check as one chunk (what chunking costs), pt-table-checksum on the source alone (--recursion-method none, --chunk-time 0.5) and one bare full-scan `SELECT COUNT(*), SUM(<row hash>)` on the source, on the same table in the same run.",
	Cleave: []GoMetric{{Bench: "BenchmarkReconcile1M/cleave-source-vs-2-shards", Metric: "rows/s", Unit: "rows/s"}},
	Beside: []GoMetric{
		{Bench: "BenchmarkReconcile1M/cleave-one-chunk", Metric: "rows/s", Label: "cleave as one chunk", Unit: "rows/s", Optional: true},
		{Bench: "BenchmarkReconcile1M/pt-table-checksum-source-only", Metric: "rows/s", Label: "pt-table-checksum", Unit: "rows/s"},
		{Bench: "BenchmarkReconcile1M/bare-hash-query-source-only", Metric: "rows/s", Label: "bare hash scan", Unit: "rows/s"},
	},
}

// onMySQL is a benchmark's figure as measured with a MySQL source and MySQL shards
// (CLEAVE_BENCH_FLAVOR=mysql), for the row beside the MariaDB one.
func onMySQL(gb GoBench, where string) GoBench {
	gb.Key += "_mysql"
	gb.Title += ", " + where
	gb.How = "As the row above, with a MySQL 9.7 source and MySQL 9.7 shards (CLEAVE_BENCH_FLAVOR=mysql)."
	return gb
}

// GoBenches are the package benchmarks scripts/bench.sh runs, by kind.
var GoBenches = map[string]GoBench{
	"capture": captureBench,
	"sink": {
		Key:   "sink_apply",
		Title: "sink apply of a 1M-insert backlog from Kafka to 2 shards (9 columns, version-checked)",
		How: "sink/BenchmarkBacklogApply (`-benchtime 1x`): both shard sinks from a consumer group that never read the topic, timed until they hold every row; " +
			"beside them a bare loader writing the same rows into the same shards with 500-row INSERT … ON DUPLICATE KEY UPDATE, both shards at once, no Kafka, decoding, routing or version check.",
		Cleave: []GoMetric{{Bench: "BenchmarkBacklogApply", Metric: "sink_events/s", Unit: "events/s"}},
		Beside: []GoMetric{
			{Bench: "BenchmarkBacklogApply", Metric: "loader_rows/s", Label: "bare batched-upsert loader", Unit: "rows/s"},
			{Bench: "BenchmarkBacklogApply", Metric: "%_of_loader", Label: "sinks at", Unit: "% of loader", Optional: true},
		},
	},
	"backfill_package": {
		Key:   "backfill_package",
		Title: "backfill of the shop's 1M-row order_items (composite key) onto 2 shards under a 1,000 row changes/s write load, in one process",
		How: "backfill/BenchmarkBackfill (`-benchtime 1x`): capture, the backfill and both sinks in the test process copy order_items while the loadgen writes; " +
			"the copy rate is rows acknowledged by Kafka per second of copy, the end-to-end rate rows per second until both shards hold the source's row count; the peak Go heap is sampled every 50 ms.",
		Cleave: []GoMetric{
			{Bench: "BenchmarkBackfill", Metric: "rows-in-shards/s", Label: "into both shards", Unit: "rows/s"},
			{Bench: "BenchmarkBackfill", Metric: "copied-rows/s", Label: "copy into Kafka", Unit: "rows/s"},
		},
		Beside:   []GoMetric{{Bench: "BenchmarkBackfill", Metric: "peak-heap-MiB", Label: "peak Go heap", Unit: "MiB", Optional: true}},
		AnyRates: true,
	},
	"reconcile": reconcileBench,
	// The same on MySQL 9.7.
	"capture_mysql":   onMySQL(captureBench, "MySQL 9.7 source"),
	"reconcile_mysql": onMySQL(reconcileBench, "MySQL 9.7 source and shards"),
}

// figureFromAnyRates builds gb's figure from every rate (a unit ending in "/s") reported,
// for a benchmark whose metrics were renamed: the first rate is cleave's figure and the
// other rates stand beside it, named by their units, row rates first.
func figureFromAnyRates(gb GoBench, lines []BenchLine) Figure {
	f := Figure{Key: gb.Key, Title: gb.Title, How: gb.How}
	for _, l := range lines {
		units := make([]string, 0, len(l.Metrics))
		for u := range l.Metrics {
			if strings.HasSuffix(u, "/s") {
				units = append(units, u)
			}
		}
		// Rows first: "rows/s" is the figure the table asks of a backfill.
		sort.Slice(units, func(i, j int) bool {
			ri, rj := strings.Contains(units[i], "rows"), strings.Contains(units[j], "rows")
			if ri != rj {
				return ri
			}
			return units[i] < units[j]
		})
		for _, u := range units {
			v := Value{Name: strings.TrimPrefix(l.Name, "Benchmark"), Value: l.Metrics[u], Unit: u}
			if len(f.Cleave) == 0 {
				f.Cleave = append(f.Cleave, v)
			} else {
				f.Beside = append(f.Beside, v)
			}
		}
	}
	if len(f.Cleave) == 0 {
		f.Missing = "benchmark failed: no rate reported"
	}
	return f
}

// FigureFromGoBench turns the output of kind's benchmark into its figure; a benchmark that
// failed or did not report gives a figure whose Missing says why.
func FigureFromGoBench(kind string, output io.Reader) (Figure, error) {
	gb, ok := GoBenches[kind]
	if !ok {
		return Figure{}, fmt.Errorf("unknown benchmark kind %q", kind)
	}
	f := Figure{Key: gb.Key, Title: gb.Title, How: gb.How}
	lines, err := ParseBenchOutput(output)
	if err != nil {
		f.Missing = "could not read the benchmark output: " + err.Error()
		return f, nil
	}
	for _, m := range gb.Cleave {
		v, err := metric(lines, m.Bench, m.Metric)
		if err != nil {
			if renamed := figureFromAnyRates(gb, lines); gb.AnyRates && renamed.Missing == "" {
				renamed.How += " (Its metrics were renamed: every rate it reported is shown under its own unit.)"
				return renamed, nil
			}
			f.Cleave, f.Missing = nil, "benchmark failed: "+err.Error()
			return f, nil
		}
		f.Cleave = append(f.Cleave, Value{Name: m.Label, Value: v, Unit: m.Unit})
	}
	// cleave's own figure stands without a reference; one that did not run is named.
	for _, m := range gb.Beside {
		v, err := metric(lines, m.Bench, m.Metric)
		switch {
		case err == nil:
			f.Beside = append(f.Beside, Value{Name: m.Label, Value: v, Unit: m.Unit})
		case !m.Optional:
			f.Beside = append(f.Beside, Value{Name: m.Label + " not measured (" + err.Error() + ")"})
		}
	}
	return f, nil
}
