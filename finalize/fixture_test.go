package finalize_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"golang.org/x/sync/errgroup"

	"github.com/cleave-dev/cleave/backfill"
	"github.com/cleave-dev/cleave/capture"
	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/cutover"
	"github.com/cleave-dev/cleave/finalize"
	"github.com/cleave-dev/cleave/internal/loadgen"
	"github.com/cleave-dev/cleave/internal/testenv"
	"github.com/cleave-dev/cleave/internal/testenv/deploy"
	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/reconcile"
	"github.com/cleave-dev/cleave/route"
	"github.com/cleave-dev/cleave/shardmeta"
	"github.com/cleave-dev/cleave/sink"
)

// world is a deployment of the sample shop plus a table with its own version column
// (accounts.version), prepared on the shards. The cut-over is not run: a test writes the
// journal row a done cut-over leaves.
type world struct {
	*deploy.Deployment
	cfg  *config.Config
	stop func() // stops the pipeline (idempotent)
}

// newWorld builds the world on the deployment's shards; seed rows are copied by the
// pipeline, so a test that seeds starts it.
func newWorld(t *testing.T, env testenv.Env, opts deploy.Options, seed bool) *world {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	w := &world{Deployment: deploy.New(t, env, opts), stop: func() {}}
	if err := loadgen.CreateSchema(ctx, w.Source, w.DB); err != nil {
		t.Fatal(err)
	}
	w.exec(t, w.Source, "CREATE TABLE "+mysqlx.QuoteTable(w.DB, "accounts")+
		" (id BIGINT UNSIGNED NOT NULL PRIMARY KEY, owner VARCHAR(64) NOT NULL, version BIGINT UNSIGNED NOT NULL) ENGINE=InnoDB")
	if seed {
		if _, err := loadgen.Seed(ctx, w.Source, w.DB, 120, 1); err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= 20; i++ {
			w.exec(t, w.Source, "INSERT INTO "+mysqlx.QuoteTable(w.DB, "accounts")+" VALUES (?, ?, ?)", i, fmt.Sprintf("owner %d", i), i*3)
		}
	}
	c := &w.Config
	c.Kafka.Partitions = 2
	c.Tables = append(deploy.ShopTables(w.DB),
		config.Table{Name: w.DB + ".accounts", ShardKey: "id", Strategy: route.Hash, VersionColumn: "version"})
	c.Capture.HeartbeatInterval = 200 * time.Millisecond
	c.Sink.BatchWait = 10 * time.Millisecond
	c.Reconcile.Interval = 0
	c.Reconcile.RecheckRounds = 1
	c.HTTP.Listen = ""
	w.cfg = w.Write()
	w.Prepare(w.cfg)
	for _, stmt := range shardmeta.SourceStatements {
		w.exec(t, w.Source, stmt)
	}
	t.Cleanup(func() {
		_, _ = w.Source.Exec("DELETE FROM `_cleave`.`cutover` WHERE topic_prefix = ?", w.Prefix)
		_, _ = w.Source.Exec("DELETE FROM `_cleave`.`guard` WHERE db = ?", w.DB)
	})
	return w
}

func (w *world) exec(t *testing.T, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// journal records a cut-over of the world's prefix in state, as cutover's journal row;
// done also guards the moved tables, as a done cut-over leaves them.
func (w *world) journal(t *testing.T, state cutover.State) {
	t.Helper()
	w.exec(t, w.Source, "INSERT INTO `_cleave`.`cutover` (topic_prefix, state, detail) VALUES (?, ?, '{}')", w.Prefix, string(state))
	if state == cutover.StateDone {
		for _, tbl := range w.cfg.Tables {
			w.exec(t, w.Source, "REPLACE INTO `_cleave`.`guard` (db, tbl, cutover_id) VALUES (?, ?, 1)", tbl.DB(), tbl.TableName())
		}
	}
}

// start runs capture, the backfill and every shard's sink, as `cleave run` does, until
// stop or the end of the test.
func (w *world) start(t *testing.T) {
	t.Helper()
	log := zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel))
	cp, err := capture.New(w.cfg, capture.Options{Log: log.Named("capture")})
	if err != nil {
		t.Fatal(err)
	}
	bf, err := backfill.New(w.cfg, cp, backfill.Options{Log: log.Named("backfill")})
	if err != nil {
		t.Fatal(err)
	}
	parts := []interface{ Run(context.Context) error }{cp, bf}
	for _, s := range w.cfg.Shards {
		sk, err := sink.New(w.cfg, s.Name, sink.Options{Log: log.Named("sink")})
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, sk)
	}
	ctx, cancel := context.WithCancel(context.Background())
	g, gctx := errgroup.WithContext(ctx)
	for _, p := range parts {
		g.Go(func() error { return p.Run(gctx) })
	}
	var once sync.Once
	w.stop = func() {
		once.Do(func() {
			cancel()
			if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("pipeline: %v", err)
			}
		})
	}
	t.Cleanup(w.stop)
}

// waitCopied waits until the shards hold what the source holds.
func (w *world) waitCopied(t *testing.T) {
	t.Helper()
	testenv.Eventually(t, 2*time.Minute, "the shards to hold the source's rows", func() bool {
		return w.diff(t) == ""
	})
}

// diff compares every table of the source with the union of the shards by a SELECT of the
// source's columns: "" when each row is on the shards that own it with the source's values.
func (w *world) diff(t *testing.T) string {
	t.Helper()
	var out []string
	for _, tbl := range w.cfg.Tables {
		src := w.dump(t, w.Source, tbl.TableName())
		var want, got []string
		copies := 1
		if tbl.Strategy == route.Broadcast {
			copies = len(w.Shards)
		}
		for range copies {
			want = append(want, src...)
		}
		for _, db := range w.Shards {
			got = append(got, w.dump(t, db, tbl.TableName())...)
		}
		sort.Strings(want)
		sort.Strings(got)
		if strings.Join(want, "\n") != strings.Join(got, "\n") {
			out = append(out, fmt.Sprintf("%s: %d rows on the source side, %d on the shards, or values differ", tbl.Name, len(want), len(got)))
		}
	}
	return strings.Join(out, "; ")
}

// shardData is every shard's rows of every table, by the source's columns.
func (w *world) shardData(t *testing.T) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for i, db := range w.Shards {
		for _, tbl := range w.cfg.Tables {
			out[w.cfg.Shards[i].Name+" "+tbl.Name] = w.dump(t, db, tbl.TableName())
		}
	}
	return out
}

// dump returns the rows of a table of the world's database on db as sorted text, NULLs
// marked, with the source's columns.
func (w *world) dump(t *testing.T, db *sql.DB, table string) []string {
	t.Helper()
	cols := w.columns(t, w.Source, table)
	for i := range cols {
		cols[i] = mysqlx.QuoteIdent(cols[i])
	}
	out := testenv.Rows(t, context.Background(), db, "SELECT "+strings.Join(cols, ", ")+" FROM "+mysqlx.QuoteTable(w.DB, table))
	sort.Strings(out)
	return out
}

// columns lists a table's columns in the world's database on db.
func (w *world) columns(t *testing.T, db *sql.DB, table string) []string {
	t.Helper()
	return testenv.Columns(t, context.Background(), db, w.DB, table)
}

// hasBookkeeping reports whether a shard has the _cleave database.
func hasBookkeeping(t *testing.T, db *sql.DB) bool {
	t.Helper()
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", shardmeta.Database).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n > 0
}

// finalizer returns a finalizer of the world with the test's short timings.
func (w *world) finalizer(t *testing.T, opts finalize.Options) *finalize.Finalizer {
	t.Helper()
	if opts.SinkIdle == 0 {
		opts.SinkIdle = time.Second
	}
	opts.Reconcile = reconcile.Options{RecheckWait: 200 * time.Millisecond, MaxThreadsRunning: -1}
	f := finalize.New(w.cfg, zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)), opts)
	t.Cleanup(func() { f.Close() })
	return f
}

// run runs a finalizer once, on a fresh one, and logs its report.
func (w *world) run(t *testing.T, opts finalize.Options) (*finalize.Report, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := w.finalizer(t, opts).Run(ctx)
	if rep != nil {
		for _, c := range rep.Checks {
			t.Logf("check %s ok=%v: %s", c.Name, c.OK, c.Detail)
		}
		for _, a := range rep.Actions {
			t.Logf("action %s: %s done=%v %s", a.Where, a.Statement, a.Done, a.Note)
		}
		for _, n := range rep.Notes {
			t.Logf("note: %s", n)
		}
	}
	return rep, err
}

// failed returns the names of the checks that failed, and their text.
func failed(rep *finalize.Report) ([]string, string) {
	var names, text []string
	for _, c := range rep.Checks {
		if !c.OK {
			names = append(names, c.Name)
			text = append(text, c.Detail+": "+c.Fix)
		}
	}
	return names, strings.Join(text, "\n")
}
