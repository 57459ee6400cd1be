package sink

import (
	"context"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/event"
	"github.com/cleave-dev/cleave/kafkax"
	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/route"
	"github.com/cleave-dev/cleave/schema"
	"github.com/cleave-dev/cleave/shardmeta"
)

var (
	backlog     = flag.Int("sink.backlog", 1_000_000, "events in the backlog of BenchmarkBacklogApply")
	sinkProfile = flag.String("sink.cpuprofile", "", "write a CPU profile of the sinks' first run in BenchmarkBacklogApply to this file")
	rounds      = flag.Int("sink.rounds", 3, "sink runs of BenchmarkBacklogApply, each between two loader runs")
	lanes       = flag.Int("sink.lanes", 0, "Options.Lanes of the sinks in BenchmarkBacklogApply (0: the default)")
	batchSize   = flag.Int("sink.batch", 500, "sink.batch_size in BenchmarkBacklogApply (the configuration's default is 500)")
	gcPercent   = flag.Int("sink.gc", 0, "GC percent during BenchmarkBacklogApply (cleave sink uses sink.GCPercent; 0: Go's default)")
)

const benchDDL = `CREATE TABLE bench (
	id BIGINT NOT NULL PRIMARY KEY,
	a INT NOT NULL,
	b BIGINT NOT NULL,
	c VARCHAR(64) NOT NULL,
	d VARCHAR(255) NULL,
	e DECIMAL(12,2) NOT NULL,
	f DATETIME(6) NOT NULL,
	g DOUBLE NOT NULL,
	h INT UNSIGNED NOT NULL
) DEFAULT CHARSET=utf8mb4`

var benchTables = []config.Table{{Name: "bench", ShardKey: "id", Strategy: config.StrategyHash}}

// BenchmarkBacklogApply measures the two shard sinks applying a backlog of inserts from
// Kafka (-sink.backlog events, default one million, 9 columns) beside a bare loader that
// writes the same rows into the same shards with the same 500-row upserts, one session per
// shard, both shards at once, without Kafka, decoding, routing, version checks or offsets.
// Run it with -benchtime=1x; it reports the medians of -sink.rounds runs.
func BenchmarkBacklogApply(b *testing.B) {
	f := newFixture(b, fixtureOpts{ddl: []string{benchDDL}, tables: benchTables, batchSize: *batchSize, batchWait: 50 * time.Millisecond, partitions: 8})
	def := f.defs[f.table("bench")]
	r, err := f.cfg.Router(map[string]route.KeyKind{f.table("bench"): route.KeyInt})
	if err != nil {
		b.Fatal(err)
	}
	n := *backlog

	// The backlog: n inserts, as capture would write them.
	start := time.Now()
	// The loader's statements, by shard, made now: it measures the shards alone.
	args := make([][][]any, len(f.cfg.Shards))
	var msgs []kafka.Message
	for i := 1; i <= n; i++ {
		row := benchRow(i)
		v, _ := event.NewVersion("mysql-bin.000001", uint64(i)*200, 0)
		ev := &event.Event{Op: event.OpCreate, After: row, Version: v, TsMs: time.Now().UnixMilli(),
			Source: event.Source{DB: f.db, Table: "bench", File: "mysql-bin.000001", Pos: uint64(i) * 200, TsMs: time.Now().UnixMilli()}}
		val, _ := event.Marshal(ev)
		key, _ := event.Key(def, row)
		msgs = append(msgs, kafka.Message{Topic: kafkax.TableTopic(f.prefix, f.db, "bench"), Key: key, Value: val})
		to, _ := r.Route(f.table("bench"), route.IntValue(int64(i)))
		args[to[0]] = appendLoaderRow(b, def, args[to[0]], row)
		if len(msgs) == 20000 || i == n {
			if err := f.write(msgs); err != nil {
				b.Fatal(err)
			}
			msgs = msgs[:0]
		}
	}
	b.Logf("backlog of %d events produced in %s", n, time.Since(start).Round(time.Millisecond))

	truncate := func() {
		for _, db := range f.shards {
			mustExec(b, db, "TRUNCATE TABLE "+mysqlx.QuoteTable(f.db, "bench"))
		}
	}
	if *gcPercent > 0 {
		// As cleave sink runs (the heap target then also covers the loader's statements).
		defer debug.SetGCPercent(debug.SetGCPercent(*gcPercent))
	}
	b.ResetTimer()
	// The machine is shared and its load varies a lot from one minute to the next, so the
	// loader and the sinks alternate, and each sink run is compared with the loader runs
	// beside it.
	var ratios, sinkRates, loaderRates []float64
	for iter := 0; iter < b.N; iter++ {
		loaderBefore := loadRound(b, f, args, truncate)
		for round := 0; round < *rounds; round++ {
			truncate()
			// The sinks, from groups that have never read the topic.
			for i := range f.shards {
				mustExec(b, f.shards[i], "DELETE FROM `"+shardmeta.Database+"`.`"+shardmeta.Offsets+"` WHERE consumer_group = ?", kafkax.SinkGroup(f.prefix, f.cfg.Shards[i].Name))
			}
			deleteGroups(b, f)
			if *sinkProfile != "" && round == 0 {
				pf, err := os.Create(*sinkProfile)
				if err != nil {
					b.Fatal(err)
				}
				if err := pprof.StartCPUProfile(pf); err != nil {
					b.Fatal(err)
				}
			}
			start := time.Now()
			stop0, _ := f.runSink("s0", Options{Lanes: *lanes})
			stop1, _ := f.runSink("s1", Options{Lanes: *lanes})
			f.waitCaughtUp(10 * time.Minute)
			sinkTime := time.Since(start)
			if *sinkProfile != "" && round == 0 {
				pprof.StopCPUProfile()
			}
			stopAll(b, stop0, stop1)
			loaderAfter := loadRound(b, f, args, truncate)

			sinkRate := float64(n) / sinkTime.Seconds()
			loaderRate := float64(n) / ((loaderBefore + loaderAfter) / 2).Seconds()
			ratios = append(ratios, sinkRate/loaderRate)
			sinkRates = append(sinkRates, sinkRate)
			loaderRates = append(loaderRates, loaderRate)
			b.Logf("round %d: sinks %d events in %s = %.0f events/s; bare loader before and after: %s and %s, mean %.0f rows/s; sinks at %.0f%% of the loader",
				round, n, sinkTime.Round(time.Millisecond), sinkRate, loaderBefore.Round(time.Millisecond), loaderAfter.Round(time.Millisecond), loaderRate, 100*sinkRate/loaderRate)
			loaderBefore = loaderAfter
		}
	}
	b.StopTimer()
	b.ReportMetric(median(sinkRates), "sink_events/s")
	b.ReportMetric(median(loaderRates), "loader_rows/s")
	b.ReportMetric(100*median(ratios), "%_of_loader")
}

// loadRound times the bare loader on empty shard tables.
func loadRound(b *testing.B, f *fixture, args [][][]any, truncate func()) time.Duration {
	truncate()
	return loadBare(b, f, args, 1)
}

// appendLoaderRow adds a row's values, its version last, to the loader's statements of
// one shard, 500 rows per statement.
func appendLoaderRow(b *testing.B, def *schema.Table, stmts [][]any, row event.Row) [][]any {
	per := (len(def.Columns) + 1) * 500
	if len(stmts) == 0 || len(stmts[len(stmts)-1]) == per {
		stmts = append(stmts, make([]any, 0, per))
	}
	a := stmts[len(stmts)-1]
	for i := range def.Columns {
		v, err := event.SQLArg(&def.Columns[i], row[def.Columns[i].Name])
		if err != nil {
			b.Fatal(err)
		}
		a = append(a, v)
	}
	stmts[len(stmts)-1] = append(a, uint64(len(a)/(len(def.Columns)+1)+1))
	return stmts
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

func benchRow(i int) event.Row {
	return event.Row{
		"id": json.Number(strconv.Itoa(i)), "a": json.Number(strconv.Itoa(i % 1000)), "b": json.Number(strconv.Itoa(i * 7919)),
		"c": "name-" + strconv.Itoa(i), "d": strings.Repeat("x", 20+i%60), "e": fmt.Sprintf("%d.%02d", i%100000, i%100),
		"f": fmt.Sprintf("2024-05-%02d 10:%02d:%02d.%06d", 1+i%28, i%60, (i/60)%60, i%1000000), "g": json.Number(strconv.FormatFloat(float64(i)/7, 'g', -1, 64)),
		"h": json.Number(strconv.Itoa(i % 4000000)),
	}
}

// loadBare writes the prepared statements' rows into each shard (concurrently) with
// multi-row upserts of 500 rows, the version column set, in autocommit, over sessions
// connections per shard: the rate a batched loader gets from these shards.
func loadBare(b *testing.B, f *fixture, args [][][]any, sessions int) time.Duration {
	b.Helper()
	def := f.defs[f.table("bench")]
	var cols []string
	for _, c := range def.Columns {
		cols = append(cols, mysqlx.QuoteIdent(c.Name))
	}
	cols = append(cols, mysqlx.QuoteIdent(shardmeta.VersionColumn))
	var upd []string
	for _, c := range cols[1:] {
		upd = append(upd, c+" = VALUES("+c+")")
	}
	stmt := func(n int) string {
		ph := "(" + strings.TrimSuffix(strings.Repeat("?,", len(cols)), ",") + ")"
		return "INSERT INTO " + mysqlx.QuoteTable(f.db, "bench") + " (" + strings.Join(cols, ",") + ") VALUES " +
			strings.TrimSuffix(strings.Repeat(ph+",", n), ",") + " ON DUPLICATE KEY UPDATE " + strings.Join(upd, ", ")
	}
	dbs := make([]*sql.DB, len(f.cfg.Shards))
	for i, sh := range f.cfg.Shards {
		db, err := mysqlx.Open(context.Background(), "shard "+sh.Name, sh.DSN)
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		dbs[i] = db
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(dbs)*sessions)
	for i, db := range dbs {
		for k := 0; k < sessions; k++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				full, err := db.Prepare(stmt(500))
				if err != nil {
					errs[i*sessions+k] = err
					return
				}
				defer full.Close()
				for j, a := range args[i] {
					if j%sessions != k {
						continue
					}
					if len(a) == 500*len(cols) {
						_, err = full.Exec(a...)
					} else {
						_, err = db.Exec(stmt(len(a)/len(cols)), a...)
					}
					if err != nil {
						errs[i*sessions+k] = err
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	d := time.Since(start)
	for _, err := range errs {
		if err != nil {
			b.Fatalf("bare loader: %v", err)
		}
	}
	return d
}

// deleteGroups deletes the sinks' consumer groups, so that their Kafka commits do not
// stand in for the deleted shard offsets.
func deleteGroups(b *testing.B, f *fixture) {
	var ids []string
	for _, sh := range f.cfg.Shards {
		ids = append(ids, kafkax.SinkGroup(f.prefix, sh.Name))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := kafkax.Client(f.brokers).DeleteGroups(ctx, &kafka.DeleteGroupsRequest{GroupIDs: ids}); err != nil {
		b.Fatal(err)
	}
}
