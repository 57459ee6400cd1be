package sink

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/segmentio/kafka-go"

	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/event"
	"github.com/cleave-dev/cleave/internal/testenv"
	"github.com/cleave-dev/cleave/internal/testenv/deploy"
	"github.com/cleave-dev/cleave/kafkax"
	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/schema"
	"github.com/cleave-dev/cleave/shardmeta"
)

// monolith is the name the reverse tests' configuration gives the monolith as the sink's
// shard.
const monolith = "monolith"

// The monolith's tables as an application has them: no version column; accounts has an
// optimistic-lock column configured as its version_column, which reverse replication must
// write as an ordinary column and never order by.
var reverseDDL = []string{
	"CREATE TABLE accounts (id BIGINT NOT NULL PRIMARY KEY, owner VARCHAR(64) NOT NULL, balance DECIMAL(12,2) NOT NULL, lock_version INT UNSIGNED NOT NULL) DEFAULT CHARSET=utf8mb4",
	"CREATE TABLE items (region VARCHAR(8) NOT NULL, id INT NOT NULL, qty INT NOT NULL, PRIMARY KEY (region, id)) DEFAULT CHARSET=utf8mb4",
	"CREATE TABLE tags (account_id BIGINT NOT NULL, tag VARCHAR(16) NOT NULL, PRIMARY KEY (account_id, tag)) DEFAULT CHARSET=utf8mb4",
}

// newReverseFixture sets up a monolith (a database of the test's own on the source server)
// whose tables hold one row each written by the monolith itself and carry guard triggers
// that refuse every write of a session without @cleave_apply = 1, and a configuration
// that names the monolith as the sink's only shard. Nothing is prepared: the monolith's
// tables stay as the application made them. onError is sink.on_error.
func newReverseFixture(t *testing.T, e testenv.Env, onError string) *fixture {
	t.Helper()
	d := deploy.New(t, e, deploy.Options{ShardDSNs: []string{e.SourceDSN}, ShardNames: []string{monolith}})
	mono := d.Source
	for _, ddl := range reverseDDL {
		mustExec(t, mono, ddl)
	}
	mustExec(t, mono, "INSERT INTO accounts VALUES (1, 'mono', 10.00, 7)")
	mustExec(t, mono, "INSERT INTO items VALUES ('eu', 1, 5)")
	mustExec(t, mono, "INSERT INTO tags VALUES (1, 'seed')")
	for _, tbl := range []string{"accounts", "items", "tags"} {
		for _, op := range []string{"INSERT", "UPDATE", "DELETE"} {
			mustExec(t, mono, fmt.Sprintf("CREATE TRIGGER %s_guard_%s BEFORE %s ON %s FOR EACH ROW BEGIN "+
				"IF NOT (@cleave_apply <=> 1) THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'moved to the shards'; END IF; END",
				tbl, strings.ToLower(op), op, tbl))
		}
	}
	t.Cleanup(func() {
		_, _ = mono.Exec("DELETE FROM "+mysqlx.QuoteTable(shardmeta.Database, shardmeta.RowVersions)+" WHERE db = ?", d.DB)
	})

	c := &d.Config
	c.Kafka.Partitions = 2
	c.Tables = []config.Table{
		{Name: d.Table("accounts"), ShardKey: "id", Strategy: config.StrategyHash, VersionColumn: "lock_version"},
		{Name: d.Table("items"), Strategy: config.StrategyBroadcast},
		{Name: d.Table("tags"), ShardKey: "account_id", Strategy: config.StrategyHash},
	}
	c.Sink.BatchSize, c.Sink.BatchWait, c.Sink.OnError, c.Sink.RetryMaxTime = 200, 20*time.Millisecond, onError, 3*time.Minute
	c.HTTP.Listen = ""
	cfg := d.Write()

	f := &fixture{dep: d, t: t, env: e, db: d.DB, prefix: d.Prefix, brokers: e.KafkaBrokers, cfgPath: d.Path, cfg: cfg,
		src: mono, shards: []*sql.DB{mono}, defs: map[string]*schema.Table{}, failed: make(chan error, 16)}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, tc := range cfg.Tables {
		def, err := schema.Load(ctx, mono, tc.DB(), tc.TableName())
		if err != nil {
			t.Fatal(err)
		}
		f.defs[tc.Name] = def
	}
	if err := kafkax.EnsureTopics(ctx, f.brokers, cfg.Topics()); err != nil {
		t.Fatal(err)
	}
	// A topic just created answers Not Leader For Partition until its leaders are elected.
	req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}}
	for _, tc := range cfg.Tables {
		topic := kafkax.TableTopic(f.prefix, tc.DB(), tc.TableName())
		for p := 0; p < cfg.Kafka.Partitions; p++ {
			req.Topics[topic] = append(req.Topics[topic], kafka.LastOffsetOf(p))
		}
	}
	testenv.Eventually(t, time.Minute, "the reverse topics' partitions to have leaders", func() bool {
		res, err := kafkax.Client(f.brokers).ListOffsets(ctx, req)
		if err != nil {
			return false
		}
		for _, parts := range res.Topics {
			for _, p := range parts {
				if p.Error != nil {
					return false
				}
			}
		}
		return true
	})
	return f
}

// shardEvent is the message a shard's reverse capture would write for a change of table
// at version: its rows carry the shard's bookkeeping column, as the shards' tables have it.
func (f *fixture) shardEvent(table string, op event.Op, before, after event.Row, version uint64) kafka.Message {
	f.t.Helper()
	withBookkeeping := func(r event.Row) event.Row {
		if r == nil {
			return nil
		}
		out := event.Row{shardmeta.VersionColumn: json.Number(fmt.Sprint(version))}
		for k, v := range r {
			out[k] = v
		}
		return out
	}
	ev := &event.Event{Op: op, Before: withBookkeeping(before), After: withBookkeeping(after), Version: event.Version(version), TsMs: time.Now().UnixMilli(),
		Source: event.Source{Connector: "mariadb", Name: f.prefix, DB: f.db, Table: table, ServerID: 2, File: "mysql-bin.000001", Pos: version, TsMs: time.Now().UnixMilli()}}
	val, err := event.Marshal(ev)
	if err != nil {
		f.t.Fatal(err)
	}
	img := after
	if op == event.OpDelete {
		img = before
	}
	key, err := event.Key(f.defs[f.table(table)], img)
	if err != nil {
		f.t.Fatal(err)
	}
	return kafka.Message{Topic: kafkax.TableTopic(f.prefix, f.db, table), Key: key, Value: val}
}

func account(id int64, owner, balance string, lockVersion int64) event.Row {
	return event.Row{"id": num(id), "owner": owner, "balance": balance, "lock_version": num(lockVersion)}
}

func itemRow(region string, id, qty int64) event.Row {
	return event.Row{"region": region, "id": num(id), "qty": num(qty)}
}

// produceAndWait writes msgs and waits until the sink has stored every partition's end.
func (f *fixture) produceAndWait(msgs ...kafka.Message) {
	f.t.Helper()
	if err := f.write(msgs); err != nil {
		f.t.Fatalf("produce: %v", err)
	}
	f.waitCaughtUp(2 * time.Minute)
}

// monolithRows dumps a table of the monolith, one "col|col|…" string per row in primary
// key order.
func (f *fixture) monolithRows(table string) []string {
	f.t.Helper()
	def := f.defs[f.table(table)]
	var cols []string
	for _, c := range def.Columns {
		cols = append(cols, mysqlx.QuoteIdent(c.Name))
	}
	q := "SELECT CONCAT_WS('|', " + strings.Join(cols, ", ") + ") FROM " + mysqlx.QuoteTable(f.db, table) + " ORDER BY " + strings.Join(def.PKNames(), ", ")
	return f.strings(q)
}

// rowVersions dumps the monolith's row_versions entries of the test's database.
func (f *fixture) rowVersions() []string {
	f.t.Helper()
	return f.strings("SELECT CONCAT_WS('|', tbl, HEX(row_key), epoch, version) FROM "+mysqlx.QuoteTable(shardmeta.Database, shardmeta.RowVersions)+
		" WHERE db = ? ORDER BY tbl, row_key", f.db)
}

func (f *fixture) strings(q string, args ...any) []string {
	f.t.Helper()
	rows, err := f.src.Query(q, args...)
	if err != nil {
		f.t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			f.t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		f.t.Fatal(err)
	}
	return out
}

// versionEntry is a row_versions entry as rowVersions dumps it; key holds the row's
// primary key values, encoded as the package comment says (each value's length as a
// uvarint, then its bytes).
func versionEntry(tbl string, epoch, version uint64, key ...string) string {
	var b []byte
	for _, k := range key {
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
	}
	return fmt.Sprintf("%s|%X|%d|%d", tbl, b, epoch, version)
}

func expectRows(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s:\n got %q\nwant %q", what, got, want)
	}
}

func staleCount(m *Metrics) float64 {
	ch := make(chan prometheus.Metric, 100)
	go func() { m.stale.Collect(ch); close(ch) }()
	var sum float64
	for metric := range ch {
		var d dto.Metric
		_ = metric.Write(&d)
		sum += d.GetCounter().GetValue()
	}
	return sum
}

func TestReverseSinkAppliesShardChangesToTheGuardedMonolithOnce(t *testing.T) {
	testenv.EachFlavor(t, func(t *testing.T, e testenv.Env) {
		f := newReverseFixture(t, e, config.OnErrorStop)
		if _, err := f.src.Exec("UPDATE accounts SET balance = 0 WHERE id = 1"); mysqlx.Number(err) != 1644 {
			t.Fatalf("a write without @cleave_apply: %v, want the guard's SIGNAL (error 1644)", err)
		}
		m, err := NewMetrics(nil)
		if err != nil {
			t.Fatal(err)
		}
		stop, _ := f.runSink(monolith, Options{Metrics: m, Reverse: &Reverse{Epoch: 5}})

		// One shard's changes: an update of a row the monolith wrote (no entry: any reverse
		// change is newer), an insert and an update whose lock_version goes down (the
		// version_column orders nothing here), inserts followed by deletes, and the
		// composite-key table.
		first := []kafka.Message{
			f.shardEvent("accounts", event.OpUpdate, account(1, "mono", "10.00", 7), account(1, "mono", "15.00", 8), 1000),
			f.shardEvent("accounts", event.OpCreate, nil, account(2, "bob", "20.00", 9), 1100),
			f.shardEvent("accounts", event.OpUpdate, account(2, "bob", "20.00", 9), account(2, "bob", "25.00", 1), 1200),
			f.shardEvent("accounts", event.OpCreate, nil, account(3, "carol", "30.00", 1), 1300),
			f.shardEvent("accounts", event.OpDelete, account(3, "carol", "30.00", 1), nil, 1400),
			f.shardEvent("accounts", event.OpCreate, nil, account(4, "dave", "40.00", 1), 1500),
			f.shardEvent("accounts", event.OpDelete, account(4, "dave", "40.00", 1), nil, 1600),
			f.shardEvent("items", event.OpUpdate, itemRow("eu", 1, 5), itemRow("eu", 1, 6), 1700),
			f.shardEvent("items", event.OpCreate, nil, itemRow("us", 2, 7), 1800),
			// A table of key columns only, and an insert of a row the monolith has.
			f.shardEvent("tags", event.OpCreate, nil, event.Row{"account_id": num(1), "tag": "seed"}, 1900),
			f.shardEvent("tags", event.OpCreate, nil, event.Row{"account_id": num(2), "tag": "b"}, 1950),
		}
		f.produceAndWait(first...)

		wantAccounts := []string{"1|mono|15.00|8", "2|bob|25.00|1"}
		wantItems := []string{"eu|1|6", "us|2|7"}
		wantTags := []string{"1|seed", "2|b"}
		wantVersions := []string{
			versionEntry("accounts", 5, 1000, "1"),
			versionEntry("accounts", 5, 1200, "2"),
			versionEntry("accounts", 5, 1400, "3"), // tombstones
			versionEntry("accounts", 5, 1600, "4"),
			versionEntry("items", 5, 1700, "eu", "1"),
			versionEntry("items", 5, 1800, "us", "2"),
			versionEntry("tags", 5, 1900, "1", "seed"),
			versionEntry("tags", 5, 1950, "2", "b"),
		}
		expectRows(t, "accounts after the shard's changes", f.monolithRows("accounts"), wantAccounts...)
		expectRows(t, "items after the shard's changes", f.monolithRows("items"), wantItems...)
		expectRows(t, "tags after the shard's changes", f.monolithRows("tags"), wantTags...)
		expectRows(t, "row_versions after the shard's changes", f.rowVersions(), wantVersions...)

		t.Run("offsets are stored in the monolith", func(t *testing.T) {
			ends := f.endOffsets()
			stored := f.storedOffsets(0)
			if len(stored) != len(ends) || len(ends) != len(f.cfg.Tables)*f.cfg.Kafka.Partitions {
				t.Fatalf("stored offsets %v, want one per partition of every topic: %v", stored, ends)
			}
			for k, end := range ends {
				if stored[k] != end {
					t.Errorf("%s: stored next offset %d, want the partition's end %d", k, stored[k], end)
				}
			}
		})

		t.Run("a replayed suffix and older versions change nothing", func(t *testing.T) {
			before := staleCount(m)
			replay := append([]kafka.Message{}, first[1:]...)
			replay = append(replay, f.shardEvent("accounts", event.OpUpdate, account(2, "bob", "20.00", 9), account(2, "bob", "99.00", 99), 1150))
			f.produceAndWait(replay...)
			expectRows(t, "accounts after the replay", f.monolithRows("accounts"), wantAccounts...)
			expectRows(t, "items after the replay", f.monolithRows("items"), wantItems...)
			expectRows(t, "tags after the replay", f.monolithRows("tags"), wantTags...)
			expectRows(t, "row_versions after the replay", f.rowVersions(), wantVersions...)
			if got := staleCount(m); got <= before {
				t.Errorf("stale changes counted %v, want more than the %v before the replay", got, before)
			}
		})

		t.Run("a replayed insert does not bring a deleted row back", func(t *testing.T) {
			f.produceAndWait(f.shardEvent("accounts", event.OpCreate, nil, account(4, "dave", "40.00", 1), 1500))
			expectRows(t, "accounts after the older insert", f.monolithRows("accounts"), wantAccounts...)
			expectRows(t, "row_versions after the older insert", f.rowVersions(), wantVersions...)
		})

		if err := stop(); err != nil {
			t.Fatalf("reverse sink: %v", err)
		}
		for _, tc := range f.cfg.Tables {
			def, err := schema.Load(context.Background(), f.src, tc.DB(), tc.TableName())
			if err != nil {
				t.Fatal(err)
			}
			if def.Column(shardmeta.VersionColumn) != nil {
				t.Errorf("the reverse sink added %s to the monolith's %s", shardmeta.VersionColumn, tc.Name)
			}
		}
	})
}

func TestReverseSinkOrdersChangesByEpochBeforeVersion(t *testing.T) {
	testenv.EachFlavor(t, func(t *testing.T, e testenv.Env) {
		f := newReverseFixture(t, e, config.OnErrorStop)
		run := func(epoch uint64, msgs ...kafka.Message) {
			t.Helper()
			stop, _ := f.runSink(monolith, Options{Reverse: &Reverse{Epoch: epoch}})
			f.produceAndWait(msgs...)
			if err := stop(); err != nil {
				t.Fatalf("reverse sink of epoch %d: %v", epoch, err)
			}
		}
		run(5,
			f.shardEvent("accounts", event.OpCreate, nil, account(10, "x", "1.00", 1), 5000),
			f.shardEvent("accounts", event.OpUpdate, account(10, "x", "1.00", 1), account(10, "x", "2.00", 2), 6000),
			f.shardEvent("accounts", event.OpCreate, nil, account(12, "z", "1.00", 1), 6500),
			f.shardEvent("accounts", event.OpDelete, account(12, "z", "1.00", 1), nil, 7000),
		)
		expectRows(t, "accounts after epoch 5", f.monolithRows("accounts"), "1|mono|10.00|7", "10|x|2.00|2")

		// The next cut-over's shards start their binlogs anew: lower versions, later epoch.
		run(6,
			f.shardEvent("accounts", event.OpUpdate, account(10, "x", "2.00", 2), account(10, "x", "3.00", 3), 10),
			f.shardEvent("accounts", event.OpCreate, nil, account(12, "z", "5.00", 1), 20),
		)
		expectRows(t, "accounts after epoch 6", f.monolithRows("accounts"), "1|mono|10.00|7", "10|x|3.00|3", "12|z|5.00|1")

		// A straggler of the earlier cut-over, however high its version, is older.
		run(5,
			f.shardEvent("accounts", event.OpUpdate, account(10, "x", "2.00", 2), account(10, "x", "4.00", 4), 99999),
			f.shardEvent("accounts", event.OpDelete, account(12, "z", "1.00", 1), nil, 99999),
		)
		expectRows(t, "accounts after a late change of epoch 5", f.monolithRows("accounts"), "1|mono|10.00|7", "10|x|3.00|3", "12|z|5.00|1")
		expectRows(t, "row_versions", f.rowVersions(),
			versionEntry("accounts", 6, 10, "10"),
			versionEntry("accounts", 6, 20, "12"),
		)
	})
}

func TestReverseRowKeysAreCollisionFreeAndBounded(t *testing.T) {
	def := &schema.Table{DB: "d", Name: "t", Columns: []schema.Column{
		{Name: "a", Kind: schema.KindString, Charset: "utf8mb4"},
		{Name: "b", Kind: schema.KindString, Charset: "utf8mb4"},
	}, PK: []int{0, 1}}
	sh := &shape{def: def, reverse: true}
	tb := &table{name: "d.t"}
	key := func(a, b string) []byte {
		k, err := sh.rowKey(tb, event.Row{"a": a, "b": b})
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	for _, pair := range [][2][2]string{
		{{"a", "bc"}, {"ab", "c"}},
		{{"", "x"}, {"x", ""}},
		{{"\x01a", ""}, {"", "a"}},
	} {
		x, y := key(pair[0][0], pair[0][1]), key(pair[1][0], pair[1][1])
		if bytes.Equal(x, y) {
			t.Errorf("keys %q and %q both encode as %x", pair[0], pair[1], x)
		}
	}
	if !bytes.Equal(key("eu", "7"), key("eu", "7")) {
		t.Error("one key encodes two ways")
	}
	_, err := sh.rowKey(tb, event.Row{"a": strings.Repeat("x", shardmeta.RowKeyMax), "b": "y"})
	if err == nil || !strings.Contains(err.Error(), "d.t") || !strings.Contains(err.Error(), "leave the table out of reverse replication") {
		t.Errorf("a key longer than RowKeyMax: %v, want an error naming the table and what to do", err)
	}
	if _, err := sh.rowKey(tb, event.Row{"a": strings.Repeat("x", shardmeta.RowKeyMax-4), "b": "y"}); err != nil {
		t.Errorf("a key of RowKeyMax bytes: %v", err)
	}
}

func TestReverseVersionsCompareEpochFirst(t *testing.T) {
	for _, c := range []struct {
		e, v, se, sv uint64
		newer        bool
	}{
		{5, 10, 5, 9, true},
		{5, 10, 5, 10, false},
		{5, 9, 5, 10, false},
		{6, 1, 5, 99999, true},
		{5, 99999, 6, 1, false},
	} {
		if got := newerVersion(c.e, c.v, c.se, c.sv); got != c.newer {
			t.Errorf("(%d, %d) newer than stored (%d, %d) = %v, want %v", c.e, c.v, c.se, c.sv, got, c.newer)
		}
	}
}

func TestReverseSinkLeavesTheMonolithsSchemaToTheApplication(t *testing.T) {
	testenv.EachFlavor(t, func(t *testing.T, e testenv.Env) {
		f := newReverseFixture(t, e, config.OnErrorStop)
		stop, done := f.runSink(monolith, Options{Reverse: &Reverse{Epoch: 5}})
		alter := "ALTER TABLE `accounts` ADD COLUMN note VARCHAR(16) NULL"
		var msgs []kafka.Message
		for p := 0; p < f.cfg.Kafka.Partitions; p++ {
			val, err := event.Marshal(&event.Event{Op: event.OpDDL, DDL: alter, Version: 2000,
				Source: event.Source{DB: f.db, Table: "accounts", File: "mysql-bin.000001", Pos: 2000, TsMs: time.Now().UnixMilli()}})
			if err != nil {
				t.Fatal(err)
			}
			msgs = append(msgs, kafka.Message{Topic: kafkax.TableTopic(f.prefix, f.db, "accounts"), Partition: p, Value: val})
		}
		msgs = append(msgs, f.shardEvent("accounts", event.OpCreate, nil, account(20, "eve", "1.00", 1), 2100))
		f.produceAndWait(msgs...)
		def, err := schema.Load(context.Background(), f.src, f.db, "accounts")
		if err != nil {
			t.Fatal(err)
		}
		if def.Column("note") != nil {
			t.Errorf("the reverse sink applied a shard's schema change to the monolith: %s", alter)
		}
		expectRows(t, "accounts after the schema change", f.monolithRows("accounts"), "1|mono|10.00|7", "20|eve|1.00|1")

		// A row the monolith cannot hold stops the sink, naming the column.
		row := account(21, "fay", "2.00", 1)
		row["note"] = "hi"
		if err := f.write([]kafka.Message{f.shardEvent("accounts", event.OpCreate, nil, row, 2200)}); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if err != nil {
				<-f.failed // reported there too, and expected
			}
			if err == nil || !strings.Contains(err.Error(), "no column note") || !strings.Contains(err.Error(), "monolith") {
				t.Errorf("the sink ended with %v, want the schema error naming the monolith's missing column note", err)
			}
		case <-time.After(2 * time.Minute):
			t.Fatal("the sink kept running on a row the monolith has no column for")
		}
		_ = stop()
		expectRows(t, "accounts after the refused row", f.monolithRows("accounts"), "1|mono|10.00|7", "20|eve|1.00|1")
	})
}

func TestReverseSinkSetsAsideARowTheMonolithRefusesAndKeepsNoVersionOfIt(t *testing.T) {
	testenv.EachFlavor(t, func(t *testing.T, e testenv.Env) {
		f := newReverseFixture(t, e, config.OnErrorDeadLetter)
		stop, _ := f.runSink(monolith, Options{Reverse: &Reverse{Epoch: 5}})
		refused := f.shardEvent("accounts", event.OpCreate, nil, account(30, strings.Repeat("o", 65), "1.00", 1), 3000)
		f.produceAndWait(refused,
			f.shardEvent("accounts", event.OpCreate, nil, account(31, "gus", "2.00", 1), 3100))
		if err := stop(); err != nil {
			t.Fatalf("reverse sink: %v", err)
		}
		expectRows(t, "accounts", f.monolithRows("accounts"), "1|mono|10.00|7", "31|gus|2.00|1")
		expectRows(t, "row_versions", f.rowVersions(), versionEntry("accounts", 5, 3100, "31"))
		dead := readAll(t, f.brokers, kafkax.DLQTopic(f.prefix, monolith), 1)
		if !bytes.Equal(dead[0].Key, refused.Key) {
			t.Errorf("dead letter %s, want the refused row's %s", dead[0].Key, refused.Key)
		}
	})
}
