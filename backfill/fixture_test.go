package backfill

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

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/cleave-dev/cleave/capture"
	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/internal/testenv"
	"github.com/cleave-dev/cleave/internal/testenv/deploy"
	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/sink"
)

// world is one test's deployment on the local services (testenv/deploy): a database of
// its own on the source, the same database on both shards (prepared by cleave prepare), and
// a topic prefix of its own. Everything is removed at the end of the test.
type world struct {
	*deploy.Deployment
	t      testing.TB
	tables []tableSpec
	cfg    *config.Config // as loaded from the written file
	// collate is appended to the tables' DEFAULT CHARSET (" COLLATE=..."): shards of
	// another product need a collation both products have.
	collate string
}

// tableSpec is a source table of a test: its name, its CREATE TABLE body and its routing
// (a config.Table without its name).
type tableSpec struct {
	name, columns string
	routing       config.Table
}

// The routings of the test tables.
func hashOn(key string) config.Table {
	return config.Table{Strategy: config.StrategyHash, ShardKey: key}
}

func pinTo(shard string) config.Table {
	return config.Table{Strategy: config.StrategyPin, Shard: shard}
}

var broadcast = config.Table{Strategy: config.StrategyBroadcast}

// newWorld makes a world on env's source and shards (one flavor pair of testenv.EachFlavor),
// its configuration changed by tune (nil: as it is).
func newWorld(t testing.TB, env testenv.Env, tables []tableSpec, tune func(*config.Config)) *world {
	t.Helper()
	w := &world{Deployment: deploy.New(t, env, deploy.Options{}), t: t}
	c := &w.Config
	c.Kafka.Partitions = 4
	c.Capture.HeartbeatInterval = 500 * time.Millisecond
	c.Capture.CheckpointInterval = 200 * time.Millisecond
	c.Sink.BatchWait = 20 * time.Millisecond
	c.Reconcile.Interval = 0
	c.HTTP.Listen = ""
	c.Log.Format = "json"
	if tune != nil {
		tune(c)
	}
	if len(tables) > 0 {
		w.addTables(tables...)
	}
	return w
}

// create creates tables on the source without configuring them.
func (w *world) create(tables ...tableSpec) {
	w.t.Helper()
	for _, tb := range tables {
		w.exec(fmt.Sprintf("CREATE TABLE %s (%s) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4%s", mysqlx.QuoteIdent(tb.name), tb.columns, w.collate))
	}
}

// addTables creates tables on the source, then configures them.
func (w *world) addTables(tables ...tableSpec) {
	w.t.Helper()
	w.create(tables...)
	w.configure(tables...)
}

// configure writes the configuration with every table configured so far and prepares the
// shards for them.
func (w *world) configure(tables ...tableSpec) {
	w.t.Helper()
	w.tables = append(w.tables, tables...)
	for _, tb := range tables {
		tc := tb.routing
		tc.Name = w.table(tb.name)
		w.Config.Tables = append(w.Config.Tables, tc)
	}
	w.cfg = w.Write()
	w.Prepare(w.cfg)
}

func (w *world) exec(stmts ...string) {
	w.t.Helper()
	for _, s := range stmts {
		if _, err := w.Source.Exec(s); err != nil {
			w.t.Fatalf("%s: %v", s, err)
		}
	}
}

func (w *world) table(name string) string { return w.Table(name) }

// pipeline is capture, the backfill and a sink per shard running in the test process.
type pipeline struct {
	capture *capture.Capture
	bf      *Backfill
	reg     *prometheus.Registry
	stop    context.CancelFunc
	done    chan struct{}

	mu   sync.Mutex
	errs []error
}

// start runs the pipeline; it is stopped (and must stop cleanly) at the end of the test.
func (w *world) start(opts Options) *pipeline {
	w.t.Helper()
	reg := prometheus.NewRegistry()
	log := zap.NewNop()
	if testing.Verbose() {
		log = zaptest.NewLogger(w.t, zaptest.Level(zap.InfoLevel))
	}
	c, err := capture.New(w.cfg, capture.Options{Log: log.Named("capture"), Registerer: reg, RetryMaxTime: time.Minute})
	if err != nil {
		w.t.Fatal(err)
	}
	opts.Log, opts.Registerer = log.Named("backfill"), reg
	bf, err := New(w.cfg, c, opts)
	if err != nil {
		w.t.Fatal(err)
	}
	sm, err := sink.NewMetrics(reg)
	if err != nil {
		w.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &pipeline{capture: c, bf: bf, reg: reg, stop: cancel, done: make(chan struct{})}
	parts := map[string]func(context.Context) error{"capture": c.Run, "backfill": bf.Run}
	for _, sh := range w.cfg.Shards {
		s, err := sink.New(w.cfg, sh.Name, sink.Options{Log: log.Named("sink"), Metrics: sm, SessionTimeout: 6 * time.Second})
		if err != nil {
			w.t.Fatal(err)
		}
		parts["sink "+sh.Name] = s.Run
	}
	var wg sync.WaitGroup
	for name, run := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				p.mu.Lock()
				p.errs = append(p.errs, fmt.Errorf("%s: %w", name, err))
				p.mu.Unlock()
				cancel()
			}
		}()
	}
	go func() { wg.Wait(); close(p.done) }()
	w.t.Cleanup(func() {
		if err := p.shutdown(); err != nil {
			w.t.Errorf("pipeline did not stop cleanly: %v", err)
		}
	})
	return p
}

// failed returns the first error of a part, or nil.
func (p *pipeline) failed() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return errors.Join(p.errs...)
}

func (p *pipeline) shutdown() error {
	p.stop()
	select {
	case <-p.done:
	case <-time.After(2 * time.Minute):
		return errors.New("parts still running 2 minutes after the cancel")
	}
	return p.failed()
}

// status returns the backfill status of table.
func (p *pipeline) status(table string) TableStatus {
	for _, s := range p.bf.Status() {
		if s.Table == table {
			return s
		}
	}
	return TableStatus{}
}

// metric returns the sum of a counter or gauge over its labels.
func (p *pipeline) metric(name string) float64 {
	mfs, err := p.reg.Gather()
	if err != nil {
		return -1
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.Counter != nil {
				sum += m.Counter.GetValue()
			}
			if m.Gauge != nil {
				sum += m.Gauge.GetValue()
			}
		}
	}
	return sum
}

// waitDone waits until the backfill of every table is done.
func (w *world) waitDone(t testing.TB, p *pipeline, timeout time.Duration) {
	t.Helper()
	testenv.Eventually(t, timeout, "every table's backfill done", func() bool {
		if err := p.failed(); err != nil {
			t.Fatalf("pipeline failed: %v", err)
		}
		for _, s := range p.bf.Status() {
			if s.State != "done" {
				return false
			}
		}
		return true
	})
}

// rowsOf reads every row of table from db as text: the primary key and the row, each
// column QUOTEd (NULL stays distinct from 'NULL'), keyed by the primary key.
func (w *world) rowsOf(db *sql.DB, table string) (map[string]string, error) {
	var cols, pk []string
	rows, err := w.Source.Query("SELECT COLUMN_NAME, COLUMN_KEY, DATA_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION", w.DB, table)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var c, key, typ string
		if err := rows.Scan(&c, &key, &typ); err != nil {
			rows.Close()
			return nil, err
		}
		q := "QUOTE(" + mysqlx.QuoteIdent(c) + ")"
		switch strings.ToLower(typ) {
		case "binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob":
			// As hex: MySQL refuses to join bytes that are no UTF-8 into a text.
			q = "IFNULL(CONCAT('0x', HEX(" + mysqlx.QuoteIdent(c) + ")), 'NULL')"
		case "bit":
			q = "IFNULL(" + mysqlx.QuoteIdent(c) + " + 0, 'NULL')"
		}
		if key == "PRI" {
			pk = append(pk, q)
		}
		cols = append(cols, q)
	}
	rows.Close()
	q := fmt.Sprintf("SELECT CONCAT_WS(',', %s), CONCAT_WS(',', %s) FROM %s", strings.Join(pk, ", "), strings.Join(cols, ", "), mysqlx.QuoteTable(w.DB, table))
	rs, err := db.Query(q)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	out := map[string]string{}
	for rs.Next() {
		var k, v string
		if err := rs.Scan(&k, &v); err != nil {
			return nil, err
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("key %s twice", k)
		}
		out[k] = v
	}
	return out, rs.Err()
}

// diff compares table on the source with the union of the shards (a row on two shards is
// a difference), or with each shard for a broadcast table, and describes the first
// differences, or returns "".
func (w *world) diff(table string) string {
	want, err := w.rowsOf(w.Source, table)
	if err != nil {
		return "source: " + err.Error()
	}
	broadcast := false
	for _, tb := range w.tables {
		if tb.name == table && tb.routing.Strategy == config.StrategyBroadcast {
			broadcast = true
		}
	}
	if broadcast {
		for i, sh := range w.Shards {
			got, err := w.rowsOf(sh, table)
			if err != nil {
				return fmt.Sprintf("shard%d: %v", i, err)
			}
			if d := describe(table, want, got); d != "" {
				return fmt.Sprintf("shard%d: %s", i, d)
			}
		}
		return ""
	}
	got := map[string]string{}
	for i, sh := range w.Shards {
		rows, err := w.rowsOf(sh, table)
		if err != nil {
			return fmt.Sprintf("shard%d: %v", i, err)
		}
		for k, v := range rows {
			if _, dup := got[k]; dup {
				return fmt.Sprintf("key %s on two shards", k)
			}
			got[k] = v
		}
	}
	return describe(table, want, got)
}

// describe lists the first differences between want and got, or returns "".
func describe(table string, want, got map[string]string) string {
	var out []string
	for k, v := range want {
		if g, ok := got[k]; !ok {
			out = append(out, "missing on the shards: "+v)
		} else if g != v {
			out = append(out, "differs: source "+v+" shards "+g)
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok {
			out = append(out, "extra on the shards: "+v)
		}
	}
	if len(out) == 0 {
		return ""
	}
	sort.Strings(out)
	return fmt.Sprintf("%s: %d differences (source %d rows, shards %d), first: %s", table, len(out), len(want), len(got), strings.Join(out[:min(5, len(out))], "; "))
}

// waitEqual waits until the shards hold exactly the source's rows of each table.
func (w *world) waitEqual(t testing.TB, p *pipeline, timeout time.Duration, tables ...string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if p != nil {
			if err := p.failed(); err != nil {
				t.Fatalf("pipeline failed: %v", err)
			}
		}
		var diffs []string
		for _, tb := range tables {
			if d := w.diff(tb); d != "" {
				diffs = append(diffs, d)
			}
		}
		if len(diffs) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s the shards still differ from the source:\n%s", timeout, strings.Join(diffs, "\n"))
		}
		time.Sleep(250 * time.Millisecond)
	}
}
