package sink

import (
	"context"
	"crypto/md5"
	"database/sql"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/event"
	"github.com/cleave-dev/cleave/internal/testenv"
	"github.com/cleave-dev/cleave/internal/testenv/deploy"
	"github.com/cleave-dev/cleave/kafkax"
	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/schema"
	"github.com/cleave-dev/cleave/shardmeta"
)

// The test tables: one per routing strategy, a child table whose shard key can change, a
// composite primary key, and most column kinds.
var sourceDDL = []string{
	`CREATE TABLE users (
		id BIGINT NOT NULL PRIMARY KEY,
		name VARCHAR(64) NOT NULL,
		email VARCHAR(128) NULL,
		balance DECIMAL(12,2) NOT NULL,
		created DATETIME(6) NULL,
		flags INT UNSIGNED NOT NULL,
		bio TEXT NULL,
		avatar VARBINARY(32) NULL
	) DEFAULT CHARSET=utf8mb4`,
	`CREATE TABLE orders (
		id BIGINT NOT NULL PRIMARY KEY,
		user_id BIGINT NOT NULL,
		amount DECIMAL(10,2) NOT NULL,
		status ENUM('new','paid','shipped') NOT NULL,
		note VARCHAR(255) NULL
	) DEFAULT CHARSET=utf8mb4`,
	`CREATE TABLE countries (
		code CHAR(2) NOT NULL PRIMARY KEY,
		name VARCHAR(64) NOT NULL
	) DEFAULT CHARSET=utf8mb4`,
	`CREATE TABLE settings (
		k VARCHAR(32) NOT NULL PRIMARY KEY,
		v VARCHAR(255) NULL
	) DEFAULT CHARSET=utf8mb4`,
	`CREATE TABLE ledger (
		id BIGINT NOT NULL PRIMARY KEY,
		account VARCHAR(32) NOT NULL,
		amount DECIMAL(14,4) NOT NULL,
		lock_version INT UNSIGNED NOT NULL
	) DEFAULT CHARSET=utf8mb4`,
	`CREATE TABLE items (
		region VARCHAR(8) NOT NULL,
		id INT NOT NULL,
		qty INT NOT NULL,
		PRIMARY KEY (region, id)
	) DEFAULT CHARSET=utf8mb4`,
}

// sourceTables configures the test tables (names within the test's database).
var sourceTables = []config.Table{
	{Name: "users", ShardKey: "id", Strategy: config.StrategyHash},
	{Name: "orders", ShardKey: "user_id", Strategy: config.StrategyHash},
	{Name: "countries", Strategy: config.StrategyBroadcast},
	{Name: "settings", Strategy: config.StrategyPin, Shard: "s1"},
	{Name: "ledger", ShardKey: "account", Strategy: config.StrategyHash, VersionColumn: "lock_version"},
	{Name: "items", ShardKey: "region", Strategy: config.StrategyList,
		Values: []config.ListValue{{Value: "eu", Shard: "s0"}, {Value: "us", Shard: "s1"}}, DefaultShard: "s1"},
}

// fixture is one isolated cleave setup (a testenv/deploy deployment): a database of the
// same name on the source and on both shards, a topic prefix, a configuration file, and
// the shard tables made by prepare.
type fixture struct {
	dep     *deploy.Deployment
	t       testing.TB
	env     testenv.Env
	db      string
	prefix  string
	brokers []string
	cfgPath string
	cfg     *config.Config
	// src and shards are plain driver sessions (no session settings of cleave's): src on
	// the source server, shards on the shard servers, none with a default database.
	src    *sql.DB
	shards []*sql.DB
	defs   map[string]*schema.Table // source definitions by db.table
	w      *kafka.Writer
	// failed reports a sink (or capture) of this fixture that ended with an error by itself.
	failed chan error
}

type fixtureOpts struct {
	// env is the source and shards of one flavor pair (testenv.EachFlavor); the zero value
	// is the shared MariaDB servers.
	env        testenv.Env
	shardDSNs  []string // default: the shared shards of env
	brokers    []string // default: the shared Kafka
	onError    string
	batchSize  int
	batchWait  time.Duration
	partitions int
	// ddl and tables replace the test tables (tables: names within the test's database).
	ddl    []string
	tables []config.Table
}

func newFixture(t testing.TB, o fixtureOpts) *fixture {
	t.Helper()
	env := o.env
	if env.SourceDSN == "" {
		env = testenv.Services(t)
	}
	if o.shardDSNs == nil {
		o.shardDSNs = env.ShardDSNs()
	}
	if o.brokers == nil {
		o.brokers = env.KafkaBrokers
	}
	if o.onError == "" {
		o.onError = config.OnErrorStop
	}
	if o.batchSize == 0 {
		o.batchSize = 200
	}
	if o.partitions == 0 {
		o.partitions = 4
	}
	if o.batchWait == 0 {
		o.batchWait = 20 * time.Millisecond
	}
	if o.ddl == nil {
		o.ddl, o.tables = sourceDDL, sourceTables
	}
	depEnv := env
	depEnv.KafkaBrokers = o.brokers
	d := deploy.New(t, depEnv, deploy.Options{ShardDSNs: o.shardDSNs, ShardNames: []string{"s0", "s1"}, CreateShardDatabases: true})
	f := &fixture{dep: d, t: t, env: env, db: d.DB, prefix: d.Prefix, brokers: o.brokers, defs: map[string]*schema.Table{}, failed: make(chan error, 16)}
	f.src = testenv.OpenDB(t, testenv.DSNWithDB(t, env.SourceDSN, ""))
	for _, dsn := range o.shardDSNs {
		f.shards = append(f.shards, testenv.OpenDB(t, dsn))
	}
	for _, ddl := range o.ddl {
		mustExec(t, f.src, "USE `"+f.db+"`")
		if _, err := f.src.Exec(strings.Replace(ddl, "CREATE TABLE ", "CREATE TABLE `"+f.db+"`.", 1)); err != nil {
			t.Fatalf("create source table: %v", err)
		}
	}

	c := &d.Config
	c.Kafka.Partitions = o.partitions
	for _, tc := range o.tables {
		tc.Name = f.table(tc.Name)
		c.Tables = append(c.Tables, tc)
	}
	c.Sink.BatchSize, c.Sink.BatchWait, c.Sink.OnError, c.Sink.RetryMaxTime = o.batchSize, o.batchWait, o.onError, 3*time.Minute
	c.HTTP.Listen = ""
	c.Log.Level = "debug"
	f.cfg = d.Write()
	f.cfgPath = d.Path
	d.Prepare(f.cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, tc := range f.cfg.Tables {
		def, err := schema.Load(ctx, f.src, tc.DB(), tc.TableName())
		if err != nil {
			t.Fatal(err)
		}
		f.defs[tc.Name] = def
	}
	return f
}

func mustExec(t testing.TB, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func (f *fixture) table(name string) string { return f.db + "." + name }

func (f *fixture) logger() *zap.Logger {
	if testing.Verbose() {
		return zaptest.NewLogger(f.t, zaptest.Level(zap.InfoLevel))
	}
	return zap.NewNop()
}

// runSink runs a Sink of shard in the background. stop cancels it and returns Run's
// result; a sink that ends by itself is reported by the returned channel.
func (f *fixture) runSink(shard string, opts Options) (stop func() error, done <-chan error) {
	f.t.Helper()
	_, stop, done = f.startSink(shard, opts)
	return stop, done
}

// startSink is runSink that also returns the Sink.
func (f *fixture) startSink(shard string, opts Options) (s *Sink, stop func() error, done <-chan error) {
	f.t.Helper()
	if opts.Log == nil {
		opts.Log = f.logger()
	}
	if opts.SessionTimeout == 0 {
		opts.SessionTimeout = 6 * time.Second
	}
	s, err := New(f.cfg, shard, opts)
	if err != nil {
		f.t.Fatal(err)
	}
	s.log = s.log.With(zap.String("instance", fmt.Sprintf("%p", s)))
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	finished := make(chan struct{})
	var result error
	go func() {
		result = s.Run(ctx)
		errc <- result
		if result != nil && ctx.Err() == nil {
			select {
			case f.failed <- fmt.Errorf("sink %s: %w", shard, result):
			default:
			}
		}
		close(finished)
	}()
	stop = func() error {
		cancel()
		select {
		case <-finished:
			return result
		case <-time.After(2 * time.Minute):
			return fmt.Errorf("sink %s did not stop within 2 minutes", shard)
		}
	}
	f.t.Cleanup(func() { _ = stop() })
	return s, stop, errc
}

// gen is the stand-in for capture: it makes random row changes of the test tables, keeps
// the resulting rows, and turns each change into the event capture would produce.
type gen struct {
	f      *fixture
	rng    *rand.Rand
	pos    uint64
	rows   map[string]map[string]event.Row // table -> primary key -> row
	keys   map[string][]string             // table -> the keys of rows, to pick from
	at     map[string]map[string]int       // table -> key -> index in keys
	nextID int64
	// tx, when set, makes the generator a writer of the source instead of a producer of
	// events: each change is a statement in it, and capture makes the events.
	tx   *sql.Tx
	msgs []kafka.Message
	// events counts the row events made, by table.
	events map[string]int
	// extra adds users columns, drop removes them (after schema changes).
	extra map[string]func() any
	drop  map[string]bool
}

func newGen(f *fixture, seed uint64) *gen {
	g := &gen{f: f, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), pos: 4, rows: map[string]map[string]event.Row{},
		keys: map[string][]string{}, at: map[string]map[string]int{}, nextID: 1, events: map[string]int{}}
	for name := range f.defs {
		g.rows[name] = map[string]event.Row{}
		g.at[name] = map[string]int{}
	}
	return g
}

// put and unput keep rows and the key index in step.
func (g *gen) put(name, k string, row event.Row) {
	if _, ok := g.rows[name][k]; !ok {
		g.at[name][k] = len(g.keys[name])
		g.keys[name] = append(g.keys[name], k)
	}
	g.rows[name][k] = row
}

func (g *gen) unput(name, k string) {
	i, ok := g.at[name][k]
	if !ok {
		return
	}
	keys := g.keys[name]
	last := keys[len(keys)-1]
	keys[i] = last
	g.at[name][last] = i
	g.keys[name] = keys[:len(keys)-1]
	delete(g.at[name], k)
	delete(g.rows[name], k)
}

func num(i int64) json.Number { return json.Number(strconv.FormatInt(i, 10)) }

func (g *gen) maybeNull(v any) any {
	if g.rng.IntN(5) == 0 {
		return nil
	}
	return v
}

func (g *gen) word(n int) string {
	const letters = "abcdefghijklmnopqrstuvwxyzäöü é€"
	r := []rune(letters)
	var b strings.Builder
	for i := 0; i < 1+g.rng.IntN(n); i++ {
		b.WriteRune(r[g.rng.IntN(len(r))])
	}
	return b.String()
}

func (g *gen) newRow(table string) event.Row {
	id := g.nextID
	g.nextID++
	switch table {
	case "users":
		row := event.Row{
			"id": num(id), "name": g.word(20), "email": g.maybeNull(g.word(30) + "@x.org"),
			"balance": fmt.Sprintf("%d.%02d", g.rng.IntN(100000)-50000, g.rng.IntN(100)),
			"created": g.maybeNull(fmt.Sprintf("2024-%02d-%02d 12:%02d:%02d.%06d", 1+g.rng.IntN(12), 1+g.rng.IntN(28), g.rng.IntN(60), g.rng.IntN(60), g.rng.IntN(1000000))),
			"flags":   num(int64(g.rng.Uint32())),
			"bio":     g.maybeNull(strings.Repeat(g.word(10), 1+g.rng.IntN(5))),
			"avatar":  g.maybeNull(base64.StdEncoding.EncodeToString([]byte(g.word(8)))),
		}
		for c, f := range g.extra {
			row[c] = f()
		}
		for c := range g.drop {
			delete(row, c)
		}
		return row
	case "orders":
		return event.Row{
			"id": num(id), "user_id": num(int64(1 + g.rng.IntN(300))),
			"amount": fmt.Sprintf("%d.%02d", g.rng.IntN(10000), g.rng.IntN(100)),
			"status": []string{"new", "paid", "shipped"}[g.rng.IntN(3)], "note": g.maybeNull(g.word(40)),
		}
	case "countries":
		return event.Row{"code": fmt.Sprintf("%c%c", 'A'+g.rng.IntN(26), 'A'+g.rng.IntN(26)), "name": g.word(20)}
	case "settings":
		return event.Row{"k": "key" + strconv.Itoa(g.rng.IntN(50)), "v": g.maybeNull(g.word(30))}
	case "ledger":
		return event.Row{"id": num(id), "account": fmt.Sprintf("acct-%d", g.rng.IntN(400)),
			"amount": fmt.Sprintf("%d.%04d", g.rng.IntN(1000000)-500000, g.rng.IntN(10000)), "lock_version": num(1)}
	case "items":
		return event.Row{"region": []string{"eu", "us", "apac", "latam"}[g.rng.IntN(4)], "id": num(int64(g.rng.IntN(500))), "qty": num(int64(g.rng.IntN(1000)))}
	}
	panic(table)
}

// change modifies some columns of row (never the primary key).
func (g *gen) change(table string, row event.Row) event.Row {
	fresh := g.newRow(table)
	out := event.Row{}
	for k, v := range row {
		if !g.drop[k] || table != "users" {
			out[k] = v
		}
	}
	def := g.f.defs[g.f.table(table)]
	for _, c := range def.Columns {
		pk := false
		for _, i := range def.PK {
			pk = pk || def.Columns[i].Name == c.Name
		}
		if !pk && g.rng.IntN(2) == 0 {
			out[c.Name] = fresh[c.Name]
		}
	}
	if table == "ledger" {
		// An optimistic-lock counter: every change bumps it.
		v, _ := row["lock_version"].(json.Number).Int64()
		out["lock_version"] = num(v + 1)
	}
	return out
}

func (g *gen) key(table string, row event.Row) string {
	k, err := event.Key(g.f.defs[g.f.table(table)], row)
	if err != nil {
		g.f.t.Fatal(err)
	}
	return string(k)
}

func (g *gen) emit(table string, op event.Op, before, after event.Row) {
	name := g.f.table(table)
	g.events[table]++
	if op == event.OpDelete {
		g.unput(name, g.key(table, before))
	} else {
		g.put(name, g.key(table, after), after)
	}
	if g.tx != nil {
		g.write(table, op, before, after)
		return
	}
	g.pos += 37
	v, err := event.NewVersion("mysql-bin.000001", g.pos, 0)
	if err != nil {
		g.f.t.Fatal(err)
	}
	ev := &event.Event{Op: op, Before: before, After: after, TsMs: time.Now().UnixMilli(), Version: v,
		Source: event.Source{Connector: "mariadb", Name: g.f.prefix, DB: g.f.db, Table: table, ServerID: 1, File: "mysql-bin.000001", Pos: g.pos, TsMs: time.Now().UnixMilli()}}
	img := after
	if op == event.OpDelete {
		img = before
	}
	val, err := event.Marshal(ev)
	if err != nil {
		g.f.t.Fatal(err)
	}
	g.msgs = append(g.msgs, kafka.Message{Topic: kafkax.TableTopic(g.f.prefix, g.f.db, table), Key: []byte(g.key(table, img)), Value: val})
}

// pkChange changes a row's primary key: on the source one UPDATE, which capture turns into
// a delete and a create; as events, that delete and create.
func (g *gen) pkChange(table string, old, row event.Row) {
	if g.tx == nil {
		g.emit(table, event.OpDelete, old, nil)
		g.emit(table, event.OpCreate, nil, row)
		return
	}
	name := g.f.table(table)
	g.unput(name, g.key(table, old))
	g.put(name, g.key(table, row), row)
	g.write(table, event.OpUpdate, old, row)
}

// write is the statement that makes a change on the source.
func (g *gen) write(table string, op event.Op, before, after event.Row) {
	def := g.f.defs[g.f.table(table)]
	arg := func(row event.Row, i int) any {
		a, err := event.SQLArg(&def.Columns[i], row[def.Columns[i].Name])
		if err != nil {
			panic(err) // the generator made a value its own column cannot hold
		}
		return a
	}
	var q strings.Builder
	var args []any
	where := func(row event.Row) {
		q.WriteString(" WHERE ")
		for k, i := range def.PK {
			if k > 0 {
				q.WriteString(" AND ")
			}
			q.WriteString(mysqlx.QuoteIdent(def.Columns[i].Name) + " = ?")
			args = append(args, arg(row, i))
		}
	}
	switch op {
	case event.OpCreate:
		q.WriteString("INSERT INTO " + mysqlx.QuoteTable(def.DB, def.Name) + " (")
		for i, c := range def.Columns {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString(mysqlx.QuoteIdent(c.Name))
			args = append(args, arg(after, i))
		}
		q.WriteString(") VALUES (" + strings.TrimSuffix(strings.Repeat("?, ", len(def.Columns)), ", ") + ")")
	case event.OpUpdate:
		q.WriteString("UPDATE " + mysqlx.QuoteTable(def.DB, def.Name) + " SET ")
		for i, c := range def.Columns {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString(mysqlx.QuoteIdent(c.Name) + " = ?")
			args = append(args, arg(after, i))
		}
		where(before)
	case event.OpDelete:
		q.WriteString("DELETE FROM " + mysqlx.QuoteTable(def.DB, def.Name))
		where(before)
	}
	if _, err := g.tx.Exec(q.String(), args...); err != nil {
		panic(fmt.Errorf("write load: %s: %w", q.String(), err))
	}
}

var genTables = []string{"users", "users", "users", "orders", "orders", "orders", "countries", "settings", "ledger", "ledger", "items", "items"}

// step makes one random change.
func (g *gen) step() {
	table := genTables[g.rng.IntN(len(genTables))]
	name := g.f.table(table)
	rows := g.rows[name]
	if len(rows) == 0 || g.rng.IntN(3) == 0 {
		row := g.newRow(table)
		if old, ok := rows[g.key(table, row)]; ok {
			g.emit(table, event.OpUpdate, old, row)
			return
		}
		g.emit(table, event.OpCreate, nil, row)
		return
	}
	old := rows[g.keys[name][g.rng.IntN(len(g.keys[name]))]]
	switch n := g.rng.IntN(10); {
	case n < 6:
		g.emit(table, event.OpUpdate, old, g.change(table, old))
	case n < 8:
		g.emit(table, event.OpDelete, old, nil)
	default:
		row := g.change(table, old)
		fresh := g.newRow(table)
		for _, i := range g.f.defs[name].PK {
			c := g.f.defs[name].Columns[i].Name
			row[c] = fresh[c]
		}
		if _, taken := rows[g.key(table, row)]; taken {
			g.emit(table, event.OpUpdate, old, g.change(table, old))
			return
		}
		g.pkChange(table, old, row)
	}
}

// heartbeats adds a heartbeat to every partition of every table topic, at the current
// position.
func (g *gen) heartbeats() {
	g.pos += 37
	v, _ := event.NewVersion("mysql-bin.000001", g.pos, 0)
	for _, tc := range g.f.cfg.Tables {
		for p := 0; p < g.f.cfg.Kafka.Partitions; p++ {
			val, _ := event.Marshal(&event.Event{Op: event.OpHeartbeat, Version: v, TsMs: time.Now().UnixMilli(),
				Source: event.Source{DB: tc.DB(), Table: tc.TableName(), File: "mysql-bin.000001", Pos: g.pos, TsMs: time.Now().UnixMilli()}})
			g.msgs = append(g.msgs, kafka.Message{Topic: kafkax.TableTopic(g.f.prefix, tc.DB(), tc.TableName()), Partition: p, Value: val})
		}
	}
}

// produce makes n changes (with a round of heartbeats every 500) and writes their events.
func (g *gen) produce(n int) {
	for i := 0; i < n; i++ {
		g.step()
		if i%500 == 499 {
			g.heartbeats()
		}
	}
	g.flush()
}

// flush writes the pending events to Kafka: keyed ones partitioned by murmur2 as capture
// does (kafkax.NewWriter), heartbeats to their own partition.
func (g *gen) flush() {
	g.f.t.Helper()
	if len(g.msgs) == 0 {
		return
	}
	if err := g.f.write(g.msgs); err != nil {
		g.f.t.Fatalf("produce: %v", err)
	}
	g.msgs = g.msgs[:0]
}

// write produces msgs in order, retrying until Kafka takes them (a write may then be
// duplicated, as a producer retry after a broker restart can be).
func (f *fixture) write(msgs []kafka.Message) error {
	if f.w == nil {
		f.w = kafkax.NewWriter(f.brokers, 1000)
		f.w.Balancer = partitionOrMurmur2{}
		w := f.w
		f.t.Cleanup(func() { w.Close() })
	}
	deadline := time.Now().Add(3 * time.Minute)
	for len(msgs) > 0 {
		n := min(len(msgs), 5000)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := f.w.WriteMessages(ctx, msgs[:n]...)
		cancel()
		if err != nil {
			if time.Now().After(deadline) {
				return err
			}
			time.Sleep(200 * time.Millisecond)
			continue
		}
		msgs = msgs[n:]
	}
	return nil
}

// partitionOrMurmur2 partitions keyed messages as kafkax.NewWriter does and sends
// key-less ones (heartbeats) to the partition they name.
type partitionOrMurmur2 struct{}

func (partitionOrMurmur2) Balance(m kafka.Message, partitions ...int) int {
	if m.Key == nil {
		return m.Partition
	}
	return (&kafka.Murmur2Balancer{Consistent: true}).Balance(m, partitions...)
}

// sqlLoad keeps writing changes to the source tables (about rate per second, in
// transactions of one to four changes) until stop is called; capture turns them into
// events. stop returns how many changes it made.
func (g *gen) sqlLoad(rate int) (stop func() int) {
	done := make(chan struct{})
	finished := make(chan struct{})
	var n int
	var failed any
	go func() {
		defer close(finished)
		defer func() { failed = recover() }()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			for made := 0; made < rate/20; {
				tx, err := g.f.src.Begin()
				if err != nil {
					panic(err)
				}
				g.tx = tx
				for k := 1 + g.rng.IntN(4); k > 0; k-- {
					g.step()
					made++
				}
				g.tx = nil
				if err := tx.Commit(); err != nil {
					panic(err)
				}
			}
			n += rate / 20
		}
	}()
	return func() int {
		close(done)
		<-finished
		if failed != nil {
			g.f.t.Fatalf("write load: %v", failed)
		}
		return n
	}
}

// loadSource writes the generator's rows into the source tables, replacing what is there:
// the reference the shards are compared with.
func (g *gen) loadSource() {
	t := g.f.t
	t.Helper()
	for name, rows := range g.rows {
		def := g.f.defs[name]
		mustExec(t, g.f.src, "DELETE FROM "+mysqlx.QuoteTable(def.DB, def.Name))
		var cols []string
		for _, c := range def.Columns {
			cols = append(cols, mysqlx.QuoteIdent(c.Name))
		}
		keys := make([]string, 0, len(rows))
		for k := range rows {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for len(keys) > 0 {
			n := min(len(keys), 200)
			var args []any
			var ph []string
			for _, k := range keys[:n] {
				ph = append(ph, "("+strings.TrimSuffix(strings.Repeat("?,", len(cols)), ",")+")")
				for i := range def.Columns {
					a, err := event.SQLArg(&def.Columns[i], rows[k][def.Columns[i].Name])
					if err != nil {
						t.Fatal(err)
					}
					args = append(args, a)
				}
			}
			q := "INSERT INTO " + mysqlx.QuoteTable(def.DB, def.Name) + " (" + strings.Join(cols, ",") + ") VALUES " + strings.Join(ph, ",")
			if _, err := g.f.src.Exec(q, args...); err != nil {
				t.Fatalf("load source %s: %v", name, err)
			}
			keys = keys[n:]
		}
	}
}

// waitCaughtUp waits until every sink has stored, for every partition it reads, the
// partition's end offset as of the call (or a later one).
func (f *fixture) waitCaughtUp(timeout time.Duration) {
	f.t.Helper()
	ends := f.endOffsets()
	testenv.Eventually(f.t, timeout, "sinks to apply every partition to its end", func() bool {
		f.checkSinks()
		for i, sh := range f.cfg.Shards {
			stored := f.storedOffsets(i)
			for _, tc := range f.cfg.Tables {
				if !tc.CanOwn(sh.Name) {
					continue
				}
				topic := kafkax.TableTopic(f.prefix, tc.DB(), tc.TableName())
				for p := 0; p < f.cfg.Kafka.Partitions; p++ {
					if stored[tp{topic, p}] < ends[tp{topic, p}] {
						return false
					}
				}
			}
		}
		return true
	})
}

// checkSinks fails the test when a sink (or capture) of the fixture ended by itself with
// an error (tests that expect one read the sink's own done channel instead).
func (f *fixture) checkSinks() {
	f.t.Helper()
	select {
	case err := <-f.failed:
		f.t.Fatalf("a part of the pipeline stopped: %v", err)
	default:
	}
}

func (f *fixture) endOffsets() map[tp]int64 {
	f.t.Helper()
	req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}}
	for _, tc := range f.cfg.Tables {
		topic := kafkax.TableTopic(f.prefix, tc.DB(), tc.TableName())
		for p := 0; p < f.cfg.Kafka.Partitions; p++ {
			req.Topics[topic] = append(req.Topics[topic], kafka.LastOffsetOf(p))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := kafkax.Client(f.brokers).ListOffsets(ctx, req)
	if err != nil {
		f.t.Fatalf("list offsets: %v", err)
	}
	out := map[tp]int64{}
	for topic, parts := range res.Topics {
		for _, p := range parts {
			if p.Error != nil {
				f.t.Fatalf("list offsets %s/%d: %v", topic, p.Partition, p.Error)
			}
			out[tp{topic, p.Partition}] = p.LastOffset
		}
	}
	return out
}

// storedOffsets reads the next offsets a shard's sinks have stored.
func (f *fixture) storedOffsets(shard int) map[tp]int64 {
	f.t.Helper()
	rows, err := f.shards[shard].Query("SELECT topic, kafka_partition, next_offset FROM `"+shardmeta.Database+"`.`"+shardmeta.Offsets+"` WHERE consumer_group = ?",
		kafkax.SinkGroup(f.prefix, f.cfg.Shards[shard].Name))
	if err != nil {
		f.t.Logf("read stored offsets: %v", err)
		return nil
	}
	defer rows.Close()
	out := map[tp]int64{}
	for rows.Next() {
		var k tp
		var n int64
		if err := rows.Scan(&k.topic, &k.partition, &n); err != nil {
			f.t.Fatal(err)
		}
		out[k] = n
	}
	return out
}

// setStoredOffsets overwrites the stored offsets of a shard (sinks stopped): a replay.
func (f *fixture) setStoredOffsets(shard int, offsets map[tp]int64) {
	f.t.Helper()
	for k, n := range offsets {
		mustExec(f.t, f.shards[shard], "UPDATE `"+shardmeta.Database+"`.`"+shardmeta.Offsets+"` SET next_offset = ? WHERE consumer_group = ? AND topic = ? AND kafka_partition = ?",
			n, kafkax.SinkGroup(f.prefix, f.cfg.Shards[shard].Name), k.topic, k.partition)
	}
}

// shardRows reads a table of one shard (without the bookkeeping column), one string per
// row in primary key order.
func (f *fixture) shardRows(shard int, table string) []string {
	f.t.Helper()
	def := f.defs[f.table(table)]
	return f.query(f.shards[shard], def, "")
}

// expectedRows reads from the source the rows of table that belong on shard, routed by
// the server's own rendering of the shard key (CAST AS BINARY, what MD5() would hash):
// independent of the sink's Go routing and of the event's form of the values.
func (f *fixture) expectedRows(shard int, table string) []string {
	f.t.Helper()
	def := f.defs[f.table(table)]
	tc := f.cfg.Table(f.table(table))
	name := f.cfg.Shards[shard].Name
	where := ""
	switch tc.Strategy {
	case config.StrategyHash:
		ranges, err := f.cfg.RouteShards()
		if err != nil {
			f.t.Fatal(err)
		}
		// MySQL 9 has no MD5() unless a component is installed: the hash is taken here, of
		// the bytes the server renders, exactly as route.SQLHashExpr does on the server.
		return f.queryHashed(f.src, def, mysqlx.QuoteIdent(tc.ShardKey), ranges[shard].Start, ranges[shard].End)
	case config.StrategyPin:
		where = "TRUE"
		if tc.Shard != name {
			where = "FALSE"
		}
	case config.StrategyList:
		var mine, all []string
		for _, v := range tc.Values {
			q := "'" + strings.ReplaceAll(v.Value, "'", "''") + "'"
			all = append(all, q)
			if v.Shard == name {
				mine = append(mine, q)
			}
		}
		col := mysqlx.QuoteIdent(tc.ShardKey)
		where = "FALSE"
		if len(mine) > 0 {
			where = col + " IN (" + strings.Join(mine, ",") + ")"
		}
		if tc.DefaultShard == name {
			where += " OR " + col + " NOT IN (" + strings.Join(all, ",") + ")"
		}
	}
	return f.query(f.src, def, where)
}

func (f *fixture) query(db *sql.DB, def *schema.Table, where string) []string {
	f.t.Helper()
	var out []string
	f.scanRows(db, def, "NULL", where, func(row string, _ []byte) { out = append(out, row) })
	return out
}

// queryHashed is query for the rows whose hash of key (a quoted column) lies in the
// keyspace range [start, end), end 0 meaning the top: the first 8 bytes of MD5 of the
// key's bytes as the server renders them, big endian, and 0 for NULL.
func (f *fixture) queryHashed(db *sql.DB, def *schema.Table, key string, start, end uint64) []string {
	f.t.Helper()
	var out []string
	f.scanRows(db, def, "CAST("+key+" AS BINARY)", "", func(row string, k []byte) {
		var h uint64
		if k != nil {
			sum := md5.Sum(k)
			h = binary.BigEndian.Uint64(sum[:8])
		}
		if h >= start && (end == 0 || h < end) {
			out = append(out, row)
		}
	})
	return out
}

// scanRows reads def's rows from db in primary key order, each as one string of its
// columns' HEX, with the value of extra beside it.
func (f *fixture) scanRows(db *sql.DB, def *schema.Table, extra, where string, fn func(row string, extra []byte)) {
	f.t.Helper()
	var cols []string
	for _, c := range def.Columns {
		cols = append(cols, "IFNULL(HEX("+mysqlx.QuoteIdent(c.Name)+"), 'NULL')")
	}
	q := "SELECT CONCAT_WS('|', " + strings.Join(cols, ", ") + "), " + extra + " FROM " + mysqlx.QuoteTable(def.DB, def.Name)
	if where != "" {
		q += " WHERE " + where
	}
	var pk []string
	for _, n := range def.PKNames() {
		pk = append(pk, mysqlx.QuoteIdent(n))
	}
	q += " ORDER BY " + strings.Join(pk, ",")
	rows, err := db.Query(q)
	if err != nil {
		f.t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	for rows.Next() {
		var s string
		var k []byte
		if err := rows.Scan(&s, &k); err != nil {
			f.t.Fatal(err)
		}
		fn(s, k)
	}
	if err := rows.Err(); err != nil {
		f.t.Fatal(err)
	}
}

// snapshot is every table of every shard.
type snapshot map[string][]string

func (f *fixture) snapshot() snapshot {
	out := snapshot{}
	for i := range f.cfg.Shards {
		for _, tc := range f.cfg.Tables {
			if !tc.CanOwn(f.cfg.Shards[i].Name) {
				continue
			}
			out[fmt.Sprintf("%s %s", f.cfg.Shards[i].Name, tc.TableName())] = f.shardRows(i, tc.TableName())
		}
	}
	return out
}

// assertShardsMatchSource compares every shard table with the source rows that belong on
// it, row by row.
func (f *fixture) assertShardsMatchSource() {
	f.t.Helper()
	total := 0
	for i, sh := range f.cfg.Shards {
		for _, tc := range f.cfg.Tables {
			if !tc.CanOwn(sh.Name) {
				continue
			}
			want := f.expectedRows(i, tc.TableName())
			got := f.shardRows(i, tc.TableName())
			total += len(got)
			diffRows(f.t, sh.Name+" "+tc.Name, got, want)
		}
	}
	f.t.Logf("compared %d shard rows with the source", total)
	if total == 0 {
		f.t.Fatal("the shards hold no rows at all: nothing was compared")
	}
}

// waitShardsMatchSource polls until every shard table holds exactly the source rows that
// belong on it (the sinks have caught up with capture), then asserts it once more.
func (f *fixture) waitShardsMatchSource(timeout time.Duration) {
	f.t.Helper()
	testenv.Eventually(f.t, timeout, "the shards to match the source", func() bool {
		f.checkSinks()
		for i, sh := range f.cfg.Shards {
			for _, tc := range f.cfg.Tables {
				if tc.CanOwn(sh.Name) && !sameRows(f.shardRows(i, tc.TableName()), f.expectedRows(i, tc.TableName())) {
					return false
				}
			}
		}
		return true
	})
	f.assertShardsMatchSource()
}

func sameRows(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func diffRows(t testing.TB, what string, got, want []string) {
	t.Helper()
	gs, ws := map[string]bool{}, map[string]bool{}
	for _, r := range got {
		gs[r] = true
	}
	for _, r := range want {
		ws[r] = true
	}
	var missing, extra []string
	for _, r := range want {
		if !gs[r] {
			missing = append(missing, r)
		}
	}
	for _, r := range got {
		if !ws[r] {
			extra = append(extra, r)
		}
	}
	if len(missing)+len(extra) > 0 || len(got) != len(want) {
		t.Errorf("%s: %d rows, want %d; %d missing, %d extra or different; first missing %.200q, first extra %.200q",
			what, len(got), len(want), len(missing), len(extra), first(missing), first(extra))
	}
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

func (a snapshot) equal(t testing.TB, b snapshot, what string) {
	t.Helper()
	for k, rows := range a {
		diffRows(t, what+": "+k, b[k], rows)
	}
}
