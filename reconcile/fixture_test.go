package reconcile

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/internal/testenv"
	"github.com/cleave-dev/cleave/internal/testenv/deploy"
	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/route"
	"github.com/cleave-dev/cleave/schema"
	"github.com/cleave-dev/cleave/shardmeta"
)

// fixture is a source and two shards holding one database of the same name (a
// testenv/deploy deployment), filled directly with SQL: a pipeline at rest.
type fixture struct {
	dep    *deploy.Deployment
	t      *testing.T
	env    testenv.Env
	dbName string
	// source is a session on the source with no default database, as the checker's own.
	source *sql.DB
	shards []*sql.DB
	dir    string
	cfg    *config.Config // as loaded from the written file
	router *route.Router
}

// fixtureTable is one table of the fixture's configuration.
type fixtureTable struct {
	name     string // table name (the database is the fixture's)
	ddl      string // column and key definitions
	strategy string
	shardKey string
}

// newFixture creates the tables on the source and on both shards of env (a source and
// shards of one flavor, or of two).
func newFixture(t *testing.T, env testenv.Env, tables ...fixtureTable) *fixture {
	t.Helper()
	return newFixtureWith(t, env, nil, tables...)
}

// newFixtureWith is newFixture with the configuration changed by tune.
func newFixtureWith(t *testing.T, env testenv.Env, tune func(*config.Config), tables ...fixtureTable) *fixture {
	t.Helper()
	d := deploy.New(t, env, deploy.Options{ShardNames: []string{"s0", "s1"}, CreateShardDatabases: true})
	f := &fixture{dep: d, t: t, env: env, dbName: d.DB, shards: d.Shards, dir: t.TempDir()}
	source, err := mysqlx.Open(context.Background(), "source", env.SourceDSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { source.Close() })
	f.source = source
	d.Config.Kafka.Partitions = 4
	for _, tb := range tables {
		d.Config.Tables = append(d.Config.Tables, config.Table{Name: f.full(tb.name), Strategy: route.Strategy(tb.strategy), ShardKey: tb.shardKey})
		f.exec(f.source, "CREATE TABLE %s (%s) DEFAULT CHARSET=utf8mb4", f.q(tb.name), tb.ddl)
		for _, s := range f.shards {
			f.exec(s, "CREATE TABLE %s (%s, %s) DEFAULT CHARSET=utf8mb4", f.q(tb.name), tb.ddl, shardmeta.VersionColumnDDL)
		}
	}
	d.Config.Reconcile.RecheckRounds = 3
	if tune != nil {
		tune(&d.Config)
	}
	f.cfg = d.Write()
	return f
}

// eachSplit runs fn for every split of flavors the checker must handle: a source and shards
// of one flavor ("mariadb", "mysql"), then a source of one flavor with shards of the other
// ("mysql-to-mariadb", "mariadb-to-mysql").
func eachSplit(t *testing.T, fn func(t *testing.T, e testenv.Env)) {
	t.Helper()
	testenv.EachFlavorDatabases(t, fn)
	testenv.CrossFlavors(t, fn)
}

// seq is a derived table of the integers 1..n in its column seq, on either flavor
// (MariaDB's seq_1_to_n tables do not exist on MySQL).
func (f *fixture) seq(n int) string { return seqSQL(n) }

func seqSQL(n int) string {
	const digits = "(SELECT 0 d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 " +
		"UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9)"
	var terms, from []string
	for i, p := 0, 1; p < n; i, p = i+1, p*10 {
		terms = append(terms, fmt.Sprintf("%d*d%d.d", p, i))
		from = append(from, fmt.Sprintf("%s d%d", digits, i))
	}
	if len(terms) == 0 {
		return "(SELECT 1 AS seq) AS seqs"
	}
	return fmt.Sprintf("(SELECT * FROM (SELECT %s + 1 AS seq FROM %s) AS s WHERE seq <= %d) AS seqs",
		strings.Join(terms, " + "), strings.Join(from, " CROSS JOIN "), n)
}

// sourceFlavor is the flavor of the fixture's source.
func (f *fixture) sourceFlavor() mysqlx.Flavor {
	f.t.Helper()
	fl, err := mysqlx.DetectFlavor(context.Background(), f.source)
	if err != nil {
		f.t.Fatal(err)
	}
	return fl
}

func (f *fixture) configPath() string { return f.dep.Path }

func (f *fixture) q(table string) string { return mysqlx.QuoteTable(f.dbName, table) }

func (f *fixture) exec(db *sql.DB, format string, args ...any) {
	f.t.Helper()
	if _, err := db.Exec(fmt.Sprintf(format, args...)); err != nil {
		f.t.Fatalf("%s: %v", fmt.Sprintf(format, args...), err)
	}
}

// execIn runs a statement in a session of the given time zone.
func (f *fixture) execIn(db *sql.DB, zone, format string, args ...any) {
	f.t.Helper()
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "SET time_zone = '"+zone+"'"); err != nil {
		f.t.Fatal(err)
	}
	stmt := fmt.Sprintf(format, args...)
	if _, err := conn.ExecContext(ctx, stmt); err != nil {
		f.t.Fatalf("%s: %v", stmt, err)
	}
	if _, err := conn.ExecContext(ctx, "SET time_zone = '+00:00'"); err != nil {
		f.t.Fatal(err)
	}
}

// full is the configured name of a fixture table.
func (f *fixture) full(table string) string { return f.dep.Table(table) }

// owner routes a shard key value of table with the configuration's router.
func (f *fixture) owner(table string, key route.Value) []int {
	f.t.Helper()
	if f.router == nil {
		kinds := map[string]route.KeyKind{}
		for _, tb := range f.cfg.Tables {
			def, err := schema.Load(context.Background(), f.source, tb.DB(), tb.TableName())
			if err != nil {
				f.t.Fatal(err)
			}
			if tb.ShardKey != "" {
				kinds[tb.Name] = keyKind(def.Column(tb.ShardKey))
			}
		}
		r, err := f.cfg.Router(kinds)
		if err != nil {
			f.t.Fatal(err)
		}
		f.router = r
	}
	o, err := f.router.Route(f.full(table), key)
	if err != nil {
		f.t.Fatal(err)
	}
	return o
}

// copyRouted copies every source row of table to the shards that own it, with version 1,
// as a sink would have left them. shardKey is the routing column ("" routes every row to
// the owners of NULL, which is right for broadcast and pin).
func (f *fixture) copyRouted(table, shardKey string) {
	f.t.Helper()
	cols := f.columns(table)
	sk := "NULL"
	if shardKey != "" {
		sk = "CAST(" + mysqlx.QuoteIdent(shardKey) + " AS BINARY)"
	}
	// The parameter makes it a prepared statement, whose rows come in the binary protocol:
	// FLOAT exactly, not as the six digits of its text.
	rows, err := f.source.Query("SELECT "+sk+", "+strings.Join(quoteAll(cols), ",")+" FROM "+f.q(table)+" WHERE 1 = ?", 1)
	if err != nil {
		f.t.Fatal(err)
	}
	defer rows.Close()
	type row struct {
		sk   []byte
		null bool
		vals []any
	}
	var all []row
	for rows.Next() {
		vals := make([]any, len(cols)+1)
		ptrs := make([]any, len(vals))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			f.t.Fatal(err)
		}
		b, _ := vals[0].([]byte)
		all = append(all, row{sk: b, null: vals[0] == nil, vals: vals[1:]})
	}
	if err := rows.Err(); err != nil {
		f.t.Fatal(err)
	}
	ph := strings.TrimSuffix(strings.Repeat("?,", len(cols)), ",")
	for _, r := range all {
		for _, o := range f.owner(table, routeValue(r.sk, r.null)) {
			q := fmt.Sprintf("INSERT INTO %s (%s, _cleave_version) VALUES (%s, 1)", f.q(table), strings.Join(quoteAll(cols), ","), ph)
			if _, err := f.shards[o].Exec(q, r.vals...); err != nil {
				f.t.Fatalf("copy row to shard %d: %v", o, err)
			}
		}
	}
}

// columns are the written (not generated) columns of a source table, in order.
func (f *fixture) columns(table string) []string {
	f.t.Helper()
	def, err := schema.Load(context.Background(), f.source, f.dbName, table)
	if err != nil {
		f.t.Fatal(err)
	}
	var cols []string
	for _, c := range def.Columns {
		if !c.Generated {
			cols = append(cols, c.Name)
		}
	}
	return cols
}

func quoteAll(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = mysqlx.QuoteIdent(n)
	}
	return out
}

// checker returns a checker over the fixture's pools with the given options.
func (f *fixture) checker(opts Options, more ...Option) *Checker {
	f.t.Helper()
	all := append([]Option{WithOptions(opts), WithConnections(f.source, f.shards)}, more...)
	c, err := New(f.cfg, all...)
	if err != nil {
		f.t.Fatal(err)
	}
	return c
}

func (f *fixture) run(opts Options, more ...Option) *Report {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rep, err := f.checker(opts, more...).Run(ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	for _, tr := range rep.Tables {
		if tr.Error != "" {
			f.t.Fatalf("table %s could not be checked: %s", tr.Table, tr.Error)
		}
	}
	return rep
}
