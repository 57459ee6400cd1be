package capture

import (
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/event"
	"github.com/cleave-dev/cleave/internal/testenv"
	"github.com/cleave-dev/cleave/kafkax"
	"github.com/cleave-dev/cleave/shardmeta"
)

// A transaction that writes _cleave.offsets first is a sink's apply: with replication in
// both directions, capturing it would send the rows back where they came from. None of
// its rows reaches Kafka, also when the transaction is compressed (MySQL: one
// Transaction_payload event; MariaDB: compressed rows events), while its commit is a
// boundary as any other: the checkpoint passes it and a cut-over journal write in it
// still ends it with heartbeats. A transaction that writes the offsets only after another
// table is not a sink's and is captured whole, and so is a plain transaction after the
// skipped ones.
func TestOwnApplyTransactionsAreNotCaptured(t *testing.T) {
	t.Parallel()
	testenv.EachFlavor(t, testOwnApplyTransactionsAreNotCaptured)
}

func testOwnApplyTransactionsAreNotCaptured(t *testing.T, e testenv.Env) {
	t.Parallel()
	// A private source: nothing but the test writes to it, so the position read right
	// after a commit is that commit's; MariaDB compresses by a server setting.
	var compress, plain string
	opts := testenv.ServerOptions{}
	if e.SourceFlavor == testenv.MySQLFlavor {
		compress = "SET SESSION binlog_transaction_compression = ON"
	} else {
		opts.ExtraArgs = []string{"--log-bin-compress-min-len=10"}
		compress, plain = "SET GLOBAL log_bin_compress = ON", "SET GLOBAL log_bin_compress = OFF"
	}
	m := testenv.StartServer(t, e.SourceFlavor, opts)
	f := newFixtureOn(t, e, m.DSN())
	f.exec(shardmeta.Statements...)
	f.exec(shardmeta.SourceStatements...)
	offsets := "`" + shardmeta.Database + "`.`" + shardmeta.Offsets + "`"
	journal := "`" + shardmeta.Database + "`.`" + shardmeta.Cutover + "`"
	f.exec(
		"INSERT INTO "+offsets+" (consumer_group, topic, kafka_partition, next_offset) VALUES ('"+f.prefix+"', 't', 0, 0)",
		"INSERT INTO "+journal+" (topic_prefix, state, detail) VALUES ('"+f.prefix+"', 'fenced', '')",
		"CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(40))",
		"CREATE TABLE other (id INT PRIMARY KEY)",
	)
	// No scheduled heartbeat during the test: a heartbeat at a skipped transaction's
	// commit comes from the journal write in it.
	cfg := f.configure([]string{"t"}, func(c *config.Config) { c.Capture.HeartbeatInterval = time.Hour })
	r := f.start(cfg)
	topic := kafkax.TableTopic(f.prefix, f.db, "t")
	skipped := func() float64 { return metricValue(t, r.reg, "cleave_capture_own_apply_transactions_skipped_total") }
	// changes lists the topic's row events as op and key, sorted.
	changes := func(t *testing.T) []string {
		t.Helper()
		var keys []string
		for _, rec := range rowEvents(readTopic(t, f.env.KafkaBrokers, topic)) {
			keys = append(keys, string(rec.ev.Op)+rec.key)
		}
		slices.Sort(keys)
		return keys
	}

	// apply writes a transaction the way a sink does, in a session that first runs
	// session: the offsets first, then rows, here ids from to from+2 inserted and one of
	// them updated, then extra.
	apply := func(session []string, from int, extra ...string) {
		t.Helper()
		stmts := append(session,
			"BEGIN",
			"UPDATE "+offsets+" SET next_offset = next_offset + 1 WHERE consumer_group = '"+f.prefix+"'",
			fmt.Sprintf("INSERT INTO t VALUES (%d, 'applied'), (%d, 'applied'), (%d, 'applied')", from, from+1, from+2),
			fmt.Sprintf("UPDATE t SET v = 'applied again' WHERE id = %d", from),
		)
		stmts = append(stmts, extra...)
		f.execOneSession(append(stmts, "COMMIT")...)
	}

	t.Run("an apply transaction emits no rows and the checkpoint passes it", func(t *testing.T) {
		apply(nil, 1)
		end := f.sourcePosition()
		r.waitAcknowledged(t, end)
		testenv.Eventually(t, time.Minute, "checkpoint stored at "+end.String(), func() bool { return !r.c.Status().Stored.Before(end) })
		if keys := changes(t); len(keys) != 0 {
			t.Fatalf("row events %v of an apply transaction", keys)
		}
		if n := skipped(); n != 1 {
			t.Fatalf("own_apply_transactions_skipped_total %v, want 1", n)
		}
	})

	t.Run("a compressed apply transaction emits no rows", func(t *testing.T) {
		from := f.sourcePosition()
		if e.SourceFlavor == testenv.MySQLFlavor {
			// The session's transactions become Transaction_payload events.
			apply([]string{compress}, 10)
		} else {
			// The server compresses rows events until the plain statement.
			f.exec(compress)
			apply(nil, 10)
			f.exec(plain)
		}
		end := f.sourcePosition()
		if n := compressedEvents(t, f, from); n == 0 {
			t.Fatalf("no compressed event between %s and %s: the case tests nothing", from, end)
		}
		r.waitAcknowledged(t, end)
		if keys := changes(t); len(keys) != 0 {
			t.Fatalf("row events %v of apply transactions", keys)
		}
		if n := skipped(); n != 2 {
			t.Fatalf("own_apply_transactions_skipped_total %v, want 2", n)
		}
	})

	t.Run("an apply transaction that writes the journal still ends with a heartbeat on every partition", func(t *testing.T) {
		apply(nil, 20, "UPDATE "+journal+" SET state = 'done' WHERE topic_prefix = '"+f.prefix+"'")
		want := version(t, f.sourcePosition())
		testenv.Eventually(t, time.Minute, fmt.Sprintf("a heartbeat at or past %v on every partition", want), func() bool {
			seen := map[int]bool{}
			for _, rec := range readTopic(t, f.env.KafkaBrokers, topic) {
				if rec.ev.Op == event.OpHeartbeat && rec.ev.Version >= want {
					seen[rec.partition] = true
				}
			}
			return len(seen) == cfg.Kafka.Partitions
		})
		if keys := changes(t); len(keys) != 0 {
			t.Fatalf("row events %v of apply transactions", keys)
		}
		if n := skipped(); n != 3 {
			t.Fatalf("own_apply_transactions_skipped_total %v, want 3", n)
		}
	})

	t.Run("transactions that are not a sink's are captured whole", func(t *testing.T) {
		// The offsets written after another table: someone's transaction, not a sink's.
		f.execOneSession("BEGIN",
			"INSERT INTO other VALUES (1)",
			"UPDATE "+offsets+" SET next_offset = next_offset + 1 WHERE consumer_group = '"+f.prefix+"'",
			"INSERT INTO t VALUES (30, 'late tag')",
			"COMMIT")
		f.execOneSession("BEGIN",
			"INSERT INTO t VALUES (31, 'late tag')",
			"UPDATE "+offsets+" SET next_offset = next_offset + 1 WHERE consumer_group = '"+f.prefix+"'",
			"INSERT INTO t VALUES (32, 'late tag')",
			"COMMIT")
		f.exec("INSERT INTO t VALUES (40, 'plain')")
		r.waitAcknowledged(t, f.sourcePosition())
		if keys, want := changes(t), []string{"c[30]", "c[31]", "c[32]", "c[40]"}; !slices.Equal(keys, want) {
			t.Fatalf("row events %v, want %v: only the transactions that are not a sink's apply", keys, want)
		}
		if n := skipped(); n != 3 {
			t.Fatalf("own_apply_transactions_skipped_total %v, want still 3", n)
		}
	})
}

// compressedEvents counts the compressed events (MySQL's Transaction_payload, MariaDB's
// compressed rows events) in the source's binlog file of from, after from.
func compressedEvents(t *testing.T, f *fixture, from Position) int {
	t.Helper()
	rows, err := f.src.Query(fmt.Sprintf("SHOW BINLOG EVENTS IN '%s' FROM %d", from.File, from.Pos))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var file, typ string
		var info sql.NullString
		var pos, serverID, end uint64
		if err := rows.Scan(&file, &pos, &typ, &serverID, &end, &info); err != nil {
			t.Fatal(err)
		}
		if typ := strings.ToLower(typ); strings.Contains(typ, "payload") || strings.Contains(typ, "compressed") {
			n++
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}
