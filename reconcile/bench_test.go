package reconcile

import (
	"context"
	"database/sql"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/internal/testenv"
	"github.com/cleave-dev/cleave/internal/testenv/deploy"
	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/route"
	"github.com/cleave-dev/cleave/schema"
)

// benchRows is the size of the benchmark table.
const benchRows = 1_000_000

const benchDDL = `id BIGINT NOT NULL PRIMARY KEY, user_id BIGINT NOT NULL, name VARCHAR(64), email VARCHAR(128),
	amount DECIMAL(12,2), score DOUBLE, created DATETIME(6), status TINYINT, note TEXT`

const benchSelect = `SELECT seq AS id, seq * 7 %% 100003 AS user_id, CONCAT('name-', seq), CONCAT('user', seq, '@example.com'), seq / 100,
	seq * 1.5, TIMESTAMP'2024-01-01 00:00:00' + INTERVAL seq SECOND, seq %% 5, IF(seq %% 3 = 0, NULL, REPEAT('x', seq %% 50))
	FROM (SELECT a.d + 10*b.d + 100*c.d + 1000*e.d + 10000*f.d + 100000*g.d + 1 AS seq
		FROM %[1]s a, %[1]s b, %[1]s c, %[1]s e, %[1]s f, %[1]s g) AS s`

// benchDigits is the numbers 0 to 9; six of them make the million rows on either flavor.
const benchDigits = `(SELECT 0 AS d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4
	UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9)`

// BenchmarkReconcile1M verifies a 1M-row, 9-column table held by the source and split by
// hash over the two shards, and, in the same run on the same data, measures
// pt-table-checksum (Percona Toolkit, on the source alone, as it is used without replicas)
// and a bare full-scan aggregate of cleave's row hash on the source (the floor: one query,
// one server). Each reports rows/s.
//
//	go test -run '^$' -bench Reconcile1M -benchtime 3x ./reconcile/
func BenchmarkReconcile1M(b *testing.B) {
	flavor := testenv.BenchFlavor()
	env := testenv.DatabasesFor(b, flavor, flavor)
	ctx := context.Background()
	dbName := testenv.UniqueName(b, "bench_", '_', 40)
	source, err := mysqlx.Open(ctx, "source", env.SourceDSN)
	if err != nil {
		b.Fatal(err)
	}
	defer source.Close()
	var shards []*sql.DB
	for i, dsn := range env.ShardDSNs() {
		db, err := mysqlx.Open(ctx, fmt.Sprintf("shard%d", i), dsn)
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		shards = append(shards, db)
	}
	all := append([]*sql.DB{source}, shards...)
	for _, db := range all {
		if _, err := db.Exec("CREATE DATABASE " + mysqlx.QuoteIdent(dbName)); err != nil {
			b.Fatal(err)
		}
		defer db.Exec("DROP DATABASE IF EXISTS " + mysqlx.QuoteIdent(dbName))
	}
	table := mysqlx.QuoteTable(dbName, "bench")

	// Fill: the source without binlogging it (nothing downstream needs these rows), each
	// shard with the rows that routing gives it: the user ids route.HashKey puts on it, held
	// in a table of their own (a stock MySQL 9 shard has no MD5() to route in SQL).
	fill := func(db *sql.DB, where string, extra string) {
		conn, err := db.Conn(ctx)
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		conn.ExecContext(ctx, "SET SESSION sql_log_bin = 0")
		if _, err := conn.ExecContext(ctx, "CREATE TABLE "+table+" ("+benchDDL+extra+")"); err != nil {
			b.Fatal(err)
		}
		q := fmt.Sprintf("INSERT INTO "+table+" (id, user_id, name, email, amount, score, created, status, note) SELECT * FROM ("+benchSelect+") AS r WHERE %s", benchDigits, where)
		if _, err := conn.ExecContext(ctx, q); err != nil {
			b.Fatal(err)
		}
	}
	start := time.Now()
	fill(source, "TRUE", "")
	ks := route.EvenKeyspace(2)
	for i, db := range shards {
		mine := route.Shard{Start: ks[i][0], End: ks[i][1]}
		users := mysqlx.QuoteTable(dbName, "bench_users")
		if _, err := db.Exec("CREATE TABLE " + users + " (user_id BIGINT PRIMARY KEY)"); err != nil {
			b.Fatal(err)
		}
		var ids []string
		flush := func() {
			if len(ids) > 0 {
				if _, err := db.Exec("INSERT INTO " + users + " VALUES (" + strings.Join(ids, "),(") + ")"); err != nil {
					b.Fatal(err)
				}
			}
			ids = ids[:0]
		}
		for u := range 100003 { // user_id is seq * 7 % 100003
			if mine.Contains(route.HashKey(strconv.AppendInt(nil, int64(u), 10))) {
				ids = append(ids, strconv.Itoa(u))
			}
			if len(ids) == 5000 {
				flush()
			}
		}
		flush()
		fill(db, "user_id IN (SELECT user_id FROM "+users+")", ", _cleave_version BIGINT UNSIGNED NOT NULL DEFAULT 1")
		if _, err := db.Exec("DROP TABLE " + users); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("filled %d rows on the source and split them over 2 shards in %s", benchRows, time.Since(start).Round(time.Millisecond))

	c := deploy.Defaults(b)
	c.Source.DSN, c.Source.ServerID = env.SourceDSN, 4243
	c.Kafka.Brokers, c.Kafka.TopicPrefix = []string{"127.0.0.1:9"}, "bench"
	c.Shards = []config.Shard{{Name: "s0", DSN: env.Shard0DSN}, {Name: "s1", DSN: env.Shard1DSN}}
	c.Tables = []config.Table{{Name: dbName + ".bench", Strategy: config.StrategyHash, ShardKey: "user_id"}}
	_, cfg := deploy.Write(b, c)

	rowsPerSec := func(b *testing.B, elapsed time.Duration) {
		b.ReportMetric(float64(benchRows)*float64(b.N)/elapsed.Seconds(), "rows/s")
	}

	b.Run("cleave-source-vs-2-shards", func(b *testing.B) {
		c, err := New(cfg, WithConnections(source, shards))
		if err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		start := time.Now()
		for range b.N {
			rep, err := c.Run(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if rep.Status != StatusConsistent || rep.Tables[0].RowsChecked != benchRows {
				b.Fatalf("status %s, %d rows checked, %s", rep.Status, rep.Tables[0].RowsChecked, rep.Tables[0].Error)
			}
		}
		rowsPerSec(b, time.Since(start))
	})

	b.Run("cleave-one-chunk", func(b *testing.B) {
		c, err := New(cfg, WithConnections(source, shards), WithOptions(Options{ChunkSize: 2 * benchRows}))
		if err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		start := time.Now()
		for range b.N {
			if _, err := c.Run(ctx); err != nil {
				b.Fatal(err)
			}
		}
		rowsPerSec(b, time.Since(start))
	})

	b.Run("pt-table-checksum-source-only", func(b *testing.B) {
		pt, err := exec.LookPath("pt-table-checksum")
		if err != nil {
			b.Skip("pt-table-checksum not installed (Debian: percona-toolkit)")
		}
		dsn, err := mysql.ParseDSN(env.SourceDSN)
		if err != nil {
			b.Fatal(err)
		}
		host, port, _ := strings.Cut(dsn.Addr, ":")
		args := []string{
			fmt.Sprintf("h=%s,P=%s,u=%s,p=%s", host, port, dsn.User, dsn.Passwd),
			"--databases", dbName, "--tables", "bench", "--replicate", dbName + ".checksums",
			"--recursion-method", "none", "--no-check-binlog-format", "--no-check-replication-filters",
			"--no-version-check", "--chunk-time", "0.5",
		}
		b.ResetTimer()
		start := time.Now()
		for range b.N {
			out, err := exec.Command(pt, args...).CombinedOutput()
			// Exit status is a bit mask of findings; only a failure to run is an error here.
			if err != nil && !strings.Contains(string(out), "bench") {
				b.Fatalf("pt-table-checksum: %v\n%s", err, out)
			}
			b.Logf("pt-table-checksum:\n%s", out)
		}
		rowsPerSec(b, time.Since(start))
	})

	b.Run("bare-hash-query-source-only", func(b *testing.B) {
		def, err := schema.Load(ctx, source, dbName, "bench")
		if err != nil {
			b.Fatal(err)
		}
		q := "SELECT COUNT(*), SUM(" + RowHashSQL(columnsOf(def)) + ") FROM " + table
		b.ResetTimer()
		start := time.Now()
		for range b.N {
			var n int64
			var sum string
			if err := source.QueryRowContext(ctx, q).Scan(&n, &sum); err != nil {
				b.Fatal(err)
			}
		}
		rowsPerSec(b, time.Since(start))
	})
}
