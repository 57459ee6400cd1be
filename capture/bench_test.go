package capture

import (
	"context"
	"fmt"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"sort"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/cleave-dev/cleave/internal/testenv"
	"github.com/cleave-dev/cleave/mysqlx"
)

// BenchmarkCatchUp measures how fast capture catches up with a backlog of row changes
// (1M by default; CLEAVE_BENCH_ROWS sets another count): from the checkpoint before the
// backlog until Kafka has acknowledged every event, beside the rate at which go-mysql
// alone reads and decodes the same binlog range, measured in the same run.
//
//	go test -run '^$' -bench CatchUp -benchtime 1x ./capture/
//
// It prints, per round, the CPU this process spent per row change in both measurements:
// unlike the rates, that figure does not depend on what else the machine is running.
func BenchmarkCatchUp(b *testing.B) {
	total := 1_000_000
	if s := os.Getenv("CLEAVE_BENCH_ROWS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 10 {
			b.Fatalf("CLEAVE_BENCH_ROWS=%q: want a count of at least 10", s)
		}
		total = n
	}
	flavor := testenv.BenchFlavor()
	f := newFixture(b, testenv.ServicesFor(b, flavor, flavor))
	f.exec(`CREATE TABLE orders (
		id BIGINT PRIMARY KEY, user_id INT NOT NULL, status TINYINT NOT NULL, sku VARCHAR(40) NOT NULL,
		amount DECIMAL(12,2) NOT NULL, created DATETIME(6) NOT NULL, score DOUBLE, note VARCHAR(100), flags INT UNSIGNED)`)
	// The numbers 0 to chunk-1, outside the binlog, for both flavors (MariaDB's seq_ tables
	// are not MySQL's).
	const chunk = 10000
	nums := mysqlx.QuoteTable(f.db+"_nums", "n")
	digits := "(SELECT 0 AS d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 " +
		"UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9)"
	f.execOneSession(
		"SET SESSION sql_log_bin = 0",
		"CREATE DATABASE "+mysqlx.QuoteIdent(f.db+"_nums"),
		"CREATE TABLE "+nums+" (n INT PRIMARY KEY)",
		"INSERT INTO "+nums+" SELECT a.d + 10*b.d + 100*c.d + 1000*e.d FROM "+digits+" a, "+digits+" b, "+digits+" c, "+digits+" e",
		"SET SESSION sql_log_bin = 1", // the session goes back to the pool
	)
	defer f.src.Exec("DROP DATABASE IF EXISTS " + mysqlx.QuoteIdent(f.db+"_nums"))
	// 70% inserts, 20% updates (two images each), 10% deletes.
	inserts, updates := total*7/10, total*2/10
	deletes := total - inserts - updates
	start := f.sourcePosition()
	var sourceID uint32
	if err := f.src.QueryRow("SELECT @@server_id").Scan(&sourceID); err != nil {
		b.Fatal(err)
	}
	base := f.prefix
	loadStart := time.Now()
	for lo := 0; lo < inserts; lo += chunk {
		f.exec(fmt.Sprintf(`INSERT INTO orders SELECT seq, seq %% 10007, seq %% 5, CONCAT('SKU-', seq %% 977),
			(seq %% 100000) / 100, '2024-01-01 00:00:00' + INTERVAL seq SECOND, seq / 7, CONCAT('note for order ', seq), seq
			FROM (SELECT n + %d AS seq FROM %s WHERE n < %d) AS s`, lo+1, nums, min(chunk, inserts-lo)))
	}
	for lo := 0; lo < updates; lo += chunk {
		f.exec(fmt.Sprintf("UPDATE orders SET status = status + 1, amount = amount + 1 WHERE id BETWEEN %d AND %d", lo+1, min(lo+chunk, updates)))
	}
	f.exec(fmt.Sprintf("DELETE FROM orders WHERE id > %d", inserts-deletes))
	end := f.sourcePosition()
	b.Logf("backlog of %d row changes written in %s, binlog %s to %s", total, time.Since(loadStart).Round(time.Millisecond), start, end)

	// As cleave capture runs (both measurements share it).
	if os.Getenv("GOGC") == "" {
		defer debug.SetGCPercent(debug.SetGCPercent(GCPercent))
	}
	// The machine is shared: each round measures the bare decode and then capture, and the
	// figures reported are the medians over the rounds (CLEAVE_BENCH_ROUNDS, default 3).
	rounds := 3
	if s := os.Getenv("CLEAVE_BENCH_ROUNDS"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			rounds = n
		}
	}
	b.ResetTimer()
	var bareRates, captureRates, ratios []float64
	for i := 0; i < b.N*rounds; i++ {
		cpu0 := cpuTime()
		var rows int
		var took time.Duration
		pprof.Do(context.Background(), pprof.Labels("phase", "bare"), func(context.Context) {
			rows, took = bareDecode(b, flavor, f.env.SourceDSN, start, end, f.db)
		})
		bareCPU := cpuTime() - cpu0
		if rows != total {
			b.Fatalf("bare decode read %d row changes, want %d", rows, total)
		}
		bareRate := float64(rows) / took.Seconds()

		// A fresh topic prefix whose checkpoint stands before the backlog.
		f.prefix = fmt.Sprintf("%s-%d", base, i)
		cfg := f.configure([]string{"orders"}, nil)
		store := NewCheckpointStore(cfg.Kafka.Brokers, f.prefix, 1)
		if err := store.Ensure(context.Background()); err != nil {
			b.Fatal(err)
		}
		if err := store.Store(context.Background(), Checkpoint{Position: start, SourceServerID: sourceID, Flavor: string(flavor)}); err != nil {
			b.Fatal(err)
		}
		store.Close()
		began, cpu1 := time.Now(), cpuTime()
		var r *running
		pprof.Do(context.Background(), pprof.Labels("phase", "capture"), func(context.Context) { r = f.start(cfg) })
		r.waitAcknowledged(b, end)
		took = time.Since(began)
		captureCPU := cpuTime() - cpu1
		waited := metricValue(b, r.reg, "cleave_capture_backpressure_seconds_total")
		if err := r.shutdown(); err != nil {
			b.Fatal(err)
		}
		captureRate := float64(total) / took.Seconds()
		bareRates, captureRates = append(bareRates, bareRate), append(captureRates, captureRate)
		ratios = append(ratios, 100*captureRate/bareRate)
		b.Logf("round %d: capture %d events in %s = %.0f events/s; bare go-mysql decode %.0f rows/s; capture at %.0f%% of bare; "+
			"CPU of this process per row change: capture %.1fµs, bare decode %.1fµs; reader waited %.1fs for Kafka",
			i+1, total, took.Round(time.Millisecond), captureRate, bareRate, 100*captureRate/bareRate,
			float64(captureCPU.Microseconds())/float64(total), float64(bareCPU.Microseconds())/float64(total), waited)
	}
	b.ReportMetric(median(captureRates), "events/s")
	b.ReportMetric(median(bareRates), "bare-rows/s")
	b.ReportMetric(median(ratios), "%-of-bare")
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// bareDecode reads the binlog from from to to with go-mysql alone, as capture configures
// it, and counts the decoded row changes of db.
func bareDecode(tb testing.TB, flavor testenv.Flavor, dsn string, from, to Position, db string) (int, time.Duration) {
	tb.Helper()
	began, rows := time.Now(), 0
	walkBinlog(tb, string(flavor), dsn, from, to, 10*time.Minute, func(cfg *replication.BinlogSyncerConfig) {
		cfg.EventCacheCount, cfg.DiscardGTIDSet, cfg.DisableRetrySync = 1024, true, true
	}, func(_ string, ev *replication.BinlogEvent) {
		if e, ok := ev.Event.(*replication.RowsEvent); ok && string(e.Table.Schema) == db {
			n := len(e.Rows)
			if e.Type() == replication.EnumRowsEventTypeUpdate {
				n /= 2
			}
			rows += n
		}
	})
	return rows, time.Since(began)
}
