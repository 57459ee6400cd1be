package capture

import (
	"context"
	"database/sql"
	"errors"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/event"
	"github.com/cleave-dev/cleave/internal/testenv"
	"github.com/cleave-dev/cleave/internal/testenv/deploy"
	"github.com/cleave-dev/cleave/mysqlx"
)

// fixture is one test's isolated world: a database on the source of one flavor, a topic
// prefix on the shared Kafka (a testenv/deploy deployment with the one shard s0), and a
// replica server_id of its own for each configuration.
type fixture struct {
	t       testing.TB
	dep     *deploy.Deployment
	env     testenv.Env   // the source and Kafka the configurations name
	fl      mysqlx.Flavor // the source's
	db      string
	prefix  string
	src     *sql.DB // a session on the test's database (UTC, utf8mb4)
	cfgPath string
	cfg     *config.Config
}

// newFixture creates the database and prefix on env's source; tables are the configured
// tables of the test's database, created by the caller with src.
func newFixture(t testing.TB, env testenv.Env) *fixture {
	t.Helper()
	return newFixtureOn(t, env, "")
}

// newFixtureOn is newFixture with the source at sourceDSN (a private server of env's
// flavor) instead of the shared one.
func newFixtureOn(t testing.TB, env testenv.Env, sourceDSN string) *fixture {
	t.Helper()
	if sourceDSN != "" {
		env.SourceDSN = sourceDSN
	}
	dep := deploy.New(t, env, deploy.Options{ShardDSNs: []string{env.Shard0DSN}, ShardNames: []string{"s0"}})
	f := &fixture{t: t, dep: dep, env: env, db: dep.DB, prefix: dep.Prefix, src: dep.Source}
	var err error
	if f.fl, err = mysqlx.DetectFlavor(context.Background(), f.src); err != nil {
		t.Fatal(err)
	}
	if f.fl.Name() != string(env.SourceFlavor) {
		t.Fatalf("the source at %s is %s, the test expects %s", mysqlx.Addr(env.SourceDSN), f.fl.Product(), env.SourceFlavor.Product())
	}
	return f
}

// seq is a table expression of one column, seq, with the numbers 1 to n, for writing many
// rows in one statement on either flavor (MariaDB's seq_1_to_n tables do not exist on
// MySQL, whose recursive CTEs stop at 1000 rows unless a session variable says otherwise).
func seq(n int) string {
	digits := "(SELECT 0 d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9)"
	var from, sum []string
	scale := 1
	for k := 0; scale < n; k++ {
		from = append(from, digits+" d"+itoa(k))
		sum = append(sum, itoa(scale)+"*d"+itoa(k)+".d")
		scale *= 10
	}
	if len(from) == 0 {
		return "(SELECT 1 seq)"
	}
	return "(SELECT " + strings.Join(sum, "+") + " + 1 seq FROM " + strings.Join(from, ", ") + " HAVING seq <= " + itoa(n) + ")"
}

// serverID returns a replica server_id no other test (of any package) uses.
func serverID() uint32 { return deploy.ServerID() }

// configure writes and loads a configuration for the fixture with the given tables (names
// within the test's database), changed by tune (nil: as it is).
func (f *fixture) configure(tables []string, tune func(*config.Config)) *config.Config {
	f.t.Helper()
	cfg := f.configureWith(f.prefix, tables, tune)
	f.cfg = cfg
	return cfg
}

// configureWith is configure for another topic prefix (one that begins with the
// fixture's, so that the test's cleanup removes its topics); it leaves f.cfg as it was.
func (f *fixture) configureWith(prefix string, tables []string, tune func(*config.Config)) *config.Config {
	f.t.Helper()
	c := f.dep.Config
	c.Source.DSN, c.Source.ServerID = f.env.SourceDSN, deploy.ServerID()
	c.Kafka.Brokers = f.env.KafkaBrokers
	c.Kafka.TopicPrefix, c.Kafka.Partitions = prefix, 4
	c.Tables = nil
	for _, tb := range tables {
		c.Tables = append(c.Tables, config.Table{Name: f.db + "." + tb, Strategy: config.StrategyBroadcast})
	}
	c.HTTP.Listen = ""
	c.Log.Level, c.Log.Format = "info", "json"
	c.Capture.HeartbeatInterval, c.Capture.CheckpointInterval = 500*time.Millisecond, 200*time.Millisecond
	if tune != nil {
		tune(&c)
	}
	path, cfg := deploy.Write(f.t, c)
	if prefix == f.prefix {
		f.cfgPath = path
	}
	return cfg
}

func (f *fixture) exec(stmts ...string) {
	f.t.Helper()
	for _, s := range stmts {
		if _, err := f.src.Exec(s); err != nil {
			f.t.Fatalf("%s: %v", s, err)
		}
	}
}

// execOneSession runs stmts in order on one connection, for session settings.
func (f *fixture) execOneSession(stmts ...string) {
	f.t.Helper()
	ctx := context.Background()
	conn, err := f.src.Conn(ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	defer conn.Close()
	for _, s := range stmts {
		if _, err := conn.ExecContext(ctx, s); err != nil {
			f.t.Fatalf("%s: %v", s, err)
		}
	}
}

// running is a Capture running in the test process.
type running struct {
	c    *Capture
	reg  *prometheus.Registry
	stop context.CancelFunc
	done chan error
	once sync.Once
	err  error
}

func (f *fixture) start(cfg *config.Config) *running {
	f.t.Helper()
	return f.startWith(cfg, Options{})
}

// startWith is start with opts; their Registerer and RetryMaxTime are the test's.
func (f *fixture) startWith(cfg *config.Config, opts Options) *running {
	f.t.Helper()
	reg := prometheus.NewRegistry()
	opts.Registerer, opts.RetryMaxTime = reg, time.Minute
	c, err := New(cfg, opts)
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{c: c, reg: reg, stop: cancel, done: make(chan error, 1)}
	go func() { r.done <- c.Run(ctx) }()
	f.t.Cleanup(func() { r.shutdown() })
	// Streaming begins once the start position is stored.
	testenv.Eventually(f.t, time.Minute, "capture streaming", func() bool {
		select {
		case err := <-r.done:
			r.done <- err
			return true
		default:
		}
		return c.Status().Streaming
	})
	return r
}

// shutdown cancels Run and returns what it returned.
func (r *running) shutdown() error {
	r.once.Do(func() {
		r.stop()
		select {
		case r.err = <-r.done:
		case <-time.After(2 * time.Minute):
			r.err = errors.New("capture did not stop within 2 minutes")
		}
	})
	return r.err
}

// sourcePosition is the source's current position, with its GTID state.
func (f *fixture) sourcePosition() Position {
	f.t.Helper()
	file, pos, gtid, err := f.fl.BinlogPosition(context.Background(), f.src)
	if err != nil {
		f.t.Fatal(err)
	}
	return Position{File: file, Pos: pos, GTID: gtid}
}

// waitAcknowledged waits until Kafka has acknowledged everything up to the source's
// current position.
func (r *running) waitAcknowledged(t testing.TB, target Position) {
	t.Helper()
	testenv.Eventually(t, 2*time.Minute, "capture acknowledged up to "+target.String(), func() bool {
		select {
		case err := <-r.done:
			r.done <- err
			t.Fatalf("capture stopped: %v", err)
		default:
		}
		return !r.c.Status().Acknowledged.Before(target)
	})
}

// record is one message read back from Kafka.
type record struct {
	partition int
	offset    int64
	key       string
	ev        *event.Event
	value     []byte // the message value as capture wrote it
}

// readTopic reads every event of topic, partition by partition in offset order.
func readTopic(t *testing.T, brokers []string, topic string) []record {
	t.Helper()
	var out []record
	for _, m := range testenv.ReadTopic(t, brokers, topic) {
		ev, err := event.Unmarshal(m.Value)
		if err != nil {
			t.Fatalf("%s/%d@%d: %v: %s", topic, m.Partition, m.Offset, err, m.Value)
		}
		out = append(out, record{partition: m.Partition, offset: m.Offset, key: string(m.Key), ev: ev, value: m.Value})
	}
	return out
}

// rows returns the row events (no heartbeats, no schema changes) of records.
func rowEvents(recs []record) []record {
	var out []record
	for _, r := range recs {
		if r.ev.Op == event.OpCreate || r.ev.Op == event.OpUpdate || r.ev.Op == event.OpDelete {
			out = append(out, r)
		}
	}
	return out
}

// checkOrderPerKey checks that, in every partition, each key's versions strictly increase
// and that a key lives in one partition only.
func checkOrderPerKey(t *testing.T, recs []record) {
	t.Helper()
	last := map[string]event.Version{}
	part := map[string]int{}
	for _, r := range rowEvents(recs) {
		if p, ok := part[r.key]; ok && p != r.partition {
			t.Fatalf("key %s in partitions %d and %d", r.key, p, r.partition)
		}
		part[r.key] = r.partition
		if v, ok := last[r.key]; ok && r.ev.Version <= v {
			t.Fatalf("key %s: version %v at offset %d after %v", r.key, r.ev.Version, r.offset, v)
		}
		last[r.key] = r.ev.Version
	}
}

// finalRows replays the row events per key in partition order and returns the rows that
// exist at the end, by key.
func finalRows(recs []record) map[string]event.Row {
	rows := map[string]event.Row{}
	sorted := append([]record(nil), rowEvents(recs)...)
	sort.SliceStable(sorted, func(i, j int) bool {
		if sorted[i].partition != sorted[j].partition {
			return sorted[i].partition < sorted[j].partition
		}
		return sorted[i].offset < sorted[j].offset
	})
	for _, r := range sorted {
		if r.ev.Op == event.OpDelete {
			delete(rows, r.key)
		} else {
			rows[r.key] = r.ev.After
		}
	}
	return rows
}

func countOps(recs []record) map[event.Op]int {
	n := map[event.Op]int{}
	for _, r := range recs {
		n[r.ev.Op]++
	}
	return n
}

// metricValue reads a gauge or counter (summed over labels) from reg.
func metricValue(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	return testenv.MetricSum(t, reg, name, nil)
}

func itoa(i int) string { return strconv.Itoa(i) }

// onMySQL runs fn as the subtest "mysql" against the MySQL services, for what only MySQL
// has; a run narrowed to other flavors (CLEAVE_TEST_FLAVORS) leaves it out.
func onMySQL(t *testing.T, fn func(t *testing.T, e testenv.Env)) {
	t.Helper()
	for _, f := range testenv.MatrixFlavors() {
		if f == testenv.MySQLFlavor {
			t.Run(string(f), func(t *testing.T) { fn(t, testenv.ServicesFor(t, f, f)) })
		}
	}
}

func atoi(t testing.TB, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
