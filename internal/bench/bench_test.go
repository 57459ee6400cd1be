package bench

import (
	"context"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

const captureOutput = `goos: linux
goarch: amd64
pkg: github.com/cleave-dev/cleave/capture
cpu: Intel(R) Xeon(R) Processor
BenchmarkCatchUp-2   	       1	9123456789 ns/op	        44.10 %-of-bare	    410000 bare-rows/s	    180810 events/s
--- BENCH: BenchmarkCatchUp-2
    bench_test.go:67: backlog of 1000000 row changes written in 25s
PASS
ok  	github.com/cleave-dev/cleave/capture	48.123s
`

const reconcileOutput = `BenchmarkReconcile1M/cleave-source-vs-2-shards-2         	       1	1500000000 ns/op	    666666 rows/s
BenchmarkReconcile1M/pt-table-checksum-source-only-2     	--- SKIP: BenchmarkReconcile1M/pt-table-checksum-source-only
BenchmarkReconcile1M/bare-hash-query-source-only-2       	       1	 650000000 ns/op	   1538461 rows/s
`

func TestParseBenchOutput(t *testing.T) {
	t.Run("reads the metrics of a result line and skips logs", func(t *testing.T) {
		lines, err := ParseBenchOutput(strings.NewReader(captureOutput))
		if err != nil {
			t.Fatal(err)
		}
		if len(lines) != 1 || lines[0].Name != "BenchmarkCatchUp" || lines[0].Iterations != 1 {
			t.Fatalf("lines = %+v", lines)
		}
		want := map[string]float64{"ns/op": 9123456789, "%-of-bare": 44.10, "bare-rows/s": 410000, "events/s": 180810}
		for unit, v := range want {
			if got := lines[0].Metrics[unit]; got != v {
				t.Errorf("%s = %v, want %v", unit, got, v)
			}
		}
	})
	t.Run("keeps sub-benchmark names without the GOMAXPROCS suffix", func(t *testing.T) {
		lines, err := ParseBenchOutput(strings.NewReader(reconcileOutput))
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, l := range lines {
			names = append(names, l.Name)
		}
		want := "BenchmarkReconcile1M/cleave-source-vs-2-shards,BenchmarkReconcile1M/bare-hash-query-source-only"
		if got := strings.Join(names, ","); got != want {
			t.Errorf("names = %s, want %s", got, want)
		}
	})
}

func TestFigureFromGoBench(t *testing.T) {
	tests := []struct {
		name, kind, output string
		wantCleave         string
		wantBeside         string
		wantMissing        bool
	}{
		{
			name: "capture beside the bare decode", kind: "capture", output: captureOutput,
			wantCleave: "180,810 events/s", wantBeside: "bare go-mysql decode 410,000 rows/s; capture at 44% of bare",
		},
		{
			name: "a reference that skipped is named, cleave's figure stands", kind: "reconcile", output: reconcileOutput,
			wantCleave: "666,666 rows/s", wantBeside: "pt-table-checksum not measured (no result line for BenchmarkReconcile1M/pt-table-checksum-source-only); bare hash scan 1,538,461 rows/s",
		},
		{
			name: "a benchmark that failed leaves the figure missing", kind: "sink", output: "--- FAIL: BenchmarkBacklogApply\nFAIL\n",
			wantMissing: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := FigureFromGoBench(tt.kind, strings.NewReader(tt.output))
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantMissing {
				if f.Missing == "" || len(f.Cleave) != 0 {
					t.Fatalf("figure = %+v, want it missing", f)
				}
				return
			}
			if got := joinValues(f.Cleave); got != tt.wantCleave {
				t.Errorf("cleave = %q, want %q", got, tt.wantCleave)
			}
			if got := joinValues(f.Beside); got != tt.wantBeside {
				t.Errorf("beside = %q, want %q", got, tt.wantBeside)
			}
		})
	}
	t.Run("the backfill's rates, end to end first", func(t *testing.T) {
		out := "BenchmarkBackfill-2   1   68825926471 ns/op   41527 copied-rows/s   77.93 peak-heap-MiB   14574 rows-in-shards/s\n"
		f, err := FigureFromGoBench("backfill_package", strings.NewReader(out))
		if err != nil {
			t.Fatal(err)
		}
		if got, want := joinValues(f.Cleave)+" | "+joinValues(f.Beside), "into both shards 14,574 rows/s; copy into Kafka 41,527 rows/s | peak Go heap 78 MiB"; got != want {
			t.Errorf("figure = %q, want %q", got, want)
		}
	})
	t.Run("a benchmark whose metrics were renamed shows every rate it reports", func(t *testing.T) {
		out := "BenchmarkBackfill-2   1   5000000 ns/op   1000 MB/s   250000 rows/s   12 chunks\n"
		f, err := FigureFromGoBench("backfill_package", strings.NewReader(out))
		if err != nil {
			t.Fatal(err)
		}
		if got, want := joinValues(f.Cleave)+" | "+joinValues(f.Beside), "Backfill 250,000 rows/s | Backfill 1,000 MB/s"; got != want {
			t.Errorf("figure = %q, want %q", got, want)
		}
	})
	t.Run("an unknown kind is an error", func(t *testing.T) {
		if _, err := FigureFromGoBench("nope", strings.NewReader("")); err == nil {
			t.Fatal("no error")
		}
	})
}

func TestFormatNumber(t *testing.T) {
	tests := []struct {
		x    float64
		unit string
		want string
	}{
		{1234567.4, "events/s", "1,234,567 events/s"},
		{999, "rows/s", "999 rows/s"},
		{12.345, "ms", "12.3 ms"},
		{1234.5, "ms", "1,235 ms"},
		{185.8, "MiB", "186 MiB"},
		{44.4, "% of bare", "44% of bare"},
		{math.NaN(), "ms", "n/a"},
	}
	for _, tt := range tests {
		if got := formatNumber(tt.x, tt.unit); got != tt.want {
			t.Errorf("formatNumber(%v, %q) = %q, want %q", tt.x, tt.unit, got, tt.want)
		}
	}
}

func TestPercentile(t *testing.T) {
	sorted := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	tests := []struct {
		p    float64
		want float64
	}{{50, 5}, {99, 10}, {100, 10}, {10, 1}, {0, 1}}
	for _, tt := range tests {
		if got := percentile(sorted, tt.p); got != tt.want {
			t.Errorf("p%v = %v, want %v", tt.p, got, tt.want)
		}
	}
	if !math.IsNaN(percentile(nil, 50)) {
		t.Error("percentile of nothing is not NaN")
	}
}

func TestMarkdown(t *testing.T) {
	r := Report{
		Date:     time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC),
		Machine:  Machine{CPUs: 2, CPUModel: "Test CPU", MemoryMB: 24 * 1024, OS: "linux/amd64"},
		Versions: []Version{{Name: "Go", Version: "go1.26"}},
		Figures: []Figure{
			{Key: "run_peak_rss", Title: "peak RSS", Cleave: []Value{{Value: 80, Unit: "MiB"}}, How: "VmHWM."},
			{Key: "backfill", Title: "backfill rows/s", Missing: "backfill not built", How: "Not measured."},
			{Key: "capture_catchup", Title: "capture | catch-up", Cleave: []Value{{Value: 1000, Unit: "events/s"}}, Beside: []Value{{Name: "bare", Value: 2000, Unit: "rows/s"}}, How: "go test."},
		},
	}
	r.SortFigures()
	md := r.Markdown()
	for _, want := range []string{
		"Measured 2026-01-02 03:04 UTC on 2 CPUs (Test CPU), 24.0 GiB memory, linux/amd64.",
		"Versions: Go go1.26.",
		"| 1 | capture \\| catch-up | 1,000 events/s | bare 2,000 rows/s |",
		"| 2 | backfill rows/s | n/a (backfill not built) |  |",
		"| 3 | peak RSS | 80 MiB |  |",
		"1. go test.",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}

func TestCleanEnvDropsConfigOverrides(t *testing.T) {
	t.Setenv("CLEAVE_SOURCE_DSN", "x")
	t.Setenv("CLEAVE_TEST_SOURCE_DSN", "y")
	env := strings.Join(cleanEnv(), "\n")
	if strings.Contains(env, "CLEAVE_SOURCE_DSN=") {
		t.Error("a CLEAVE_ configuration override reached the child's environment")
	}
	if !strings.Contains(env, "CLEAVE_TEST_SOURCE_DSN=y") {
		t.Error("the test services' address was dropped")
	}
}

func TestPromValue(t *testing.T) {
	const page = `# HELP cleave_capture_heartbeats_total Heartbeats.
# TYPE cleave_capture_heartbeats_total counter
cleave_capture_heartbeats_total 16
cleave_backfill_rows_copied_total{table="a.b"} 10
cleave_backfill_rows_copied_total{table="a.c"} 5
cleave_backfill_rows_copied_total_other 99
`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(page)) }))
	defer srv.Close()
	tests := []struct {
		name string
		want float64
	}{
		{"cleave_capture_heartbeats_total", 16},
		{"cleave_backfill_rows_copied_total", 15},
		{"cleave_not_exported", 0},
	}
	for _, tt := range tests {
		got, err := promValue(context.Background(), srv.URL, tt.name)
		if err != nil || got != tt.want {
			t.Errorf("promValue(%s) = %v, %v; want %v", tt.name, got, err, tt.want)
		}
	}
}
