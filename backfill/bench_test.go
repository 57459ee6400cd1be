package backfill

import (
	"context"
	"database/sql"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/internal/loadgen"
	"github.com/cleave-dev/cleave/internal/testenv"
	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/sink"
)

// BenchmarkBackfill copies the shop's order_items (a composite primary key; 4 rows per
// user, so 250,000 users make 1,000,000 rows; CLEAVE_BENCH_USERS overrides) into two
// shards with capture, the backfill and both sinks in this process, while loadgen writes
// 1,000 row changes per second to the shop. It reports the copy's rate (rows acknowledged
// by Kafka per second of copy), the end-to-end rate (rows per second until both shards
// hold exactly the source's table, after the load stopped) and the peak Go heap of the
// process, sampled every 50 ms. The collector is set as cleave run sets it (GOGC=400, a
// soft limit of 1 GiB) unless GOGC is set.
//
//	go test -run '^$' -bench Backfill -benchtime 1x ./backfill/
func BenchmarkBackfill(b *testing.B) {
	users := 250_000
	if s := os.Getenv("CLEAVE_BENCH_USERS"); s != "" {
		users, _ = strconv.Atoi(s)
	}
	chunk := 5000
	if s := os.Getenv("CLEAVE_BENCH_CHUNK"); s != "" {
		chunk, _ = strconv.Atoi(s)
	}
	if os.Getenv("GOGC") == "" {
		defer debug.SetGCPercent(debug.SetGCPercent(sink.GCPercent))
		defer debug.SetMemoryLimit(debug.SetMemoryLimit(1 << 30))
	}
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		w := newWorld(b, testenv.Services(b), nil, func(c *config.Config) { c.Backfill.ChunkSize = chunk })
		ctx := context.Background()
		if err := loadgen.CreateSchema(ctx, w.Source, w.DB); err != nil {
			b.Fatal(err)
		}
		seeded := time.Now()
		if _, err := loadgen.Seed(ctx, w.Source, w.DB, users, 1); err != nil {
			b.Fatal(err)
		}
		b.Logf("seeded %d users (%d order_items) in %s", users, 4*users, time.Since(seeded).Round(time.Second))
		w.configure(tableSpec{name: "order_items", routing: hashOn("user_id")})
		table := w.table("order_items")

		loadCtx, stopLoad := context.WithCancel(ctx)
		load := &loadgen.Load{DB: w.Source, Database: w.DB, Rate: 1000, Workers: 8, Seed: 9}
		loadDone := make(chan error, 1)
		go func() { _, err := load.Run(loadCtx); loadDone <- err }()

		var peak atomic.Uint64
		sampling, stopSampling := context.WithCancel(ctx)
		go func() {
			var ms runtime.MemStats
			for sampling.Err() == nil {
				runtime.ReadMemStats(&ms)
				if ms.HeapInuse > peak.Load() {
					peak.Store(ms.HeapInuse)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}()

		b.StartTimer()
		began := time.Now()
		p := w.start(Options{})
		w.waitDone(b, p, 30*time.Minute)
		copyTook := time.Since(began)
		st := p.status(table)
		stopLoad()
		if err := <-loadDone; err != nil {
			b.Fatal(err)
		}
		// The shards have caught up when their row counts add up to the source's; the full
		// comparison of every column comes after, untimed.
		count := func(db interface {
			QueryRow(string, ...any) *sql.Row
		}) int64 {
			var n int64
			if err := db.QueryRow("SELECT COUNT(*) FROM " + mysqlx.QuoteTable(w.DB, "order_items")).Scan(&n); err != nil {
				b.Fatal(err)
			}
			return n
		}
		n := count(w.Source)
		testenv.Eventually(b, 30*time.Minute, "the shards to hold the source's row count", func() bool {
			return count(w.Shards[0])+count(w.Shards[1]) == n
		})
		total := time.Since(began)
		b.StopTimer()
		stopSampling()
		w.waitEqual(b, p, 30*time.Minute, "order_items")
		ls := load.Stats()
		b.ReportMetric(float64(st.Rows)/copyTook.Seconds(), "copied-rows/s")
		b.ReportMetric(float64(n)/total.Seconds(), "rows-in-shards/s")
		b.ReportMetric(float64(peak.Load())/(1<<20), "peak-heap-MiB")
		b.Logf("copied %d rows in %d chunks in %s (%.0f rows/s); both shards equal the source's %d rows %s after the start (%.0f rows/s); %d rows left out for a newer change; load wrote %d row changes (%.0f/s); peak heap %.0f MiB",
			st.Rows, st.Chunks, copyTook.Round(100*time.Millisecond), float64(st.Rows)/copyTook.Seconds(), n, total.Round(100*time.Millisecond),
			float64(n)/total.Seconds(), st.Superseded, ls.Rows(), float64(ls.Rows())/copyTook.Seconds(), float64(peak.Load())/(1<<20))
		if err := p.shutdown(); err != nil {
			b.Fatal(err)
		}
	}
}
