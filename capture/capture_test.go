package capture

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/go-sql-driver/mysql"
	"go.uber.org/zap/zaptest"
	"maps"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/cleave-dev/cleave/event"
	"github.com/cleave-dev/cleave/internal/testenv"
	"github.com/cleave-dev/cleave/kafkax"
	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/schema"
)

// sourceRows reads table from the source with SELECT and returns each row in event form
// by its message key: what capture must have delivered as the row's latest image.
func (f *fixture) sourceRows(table string) map[string]event.Row {
	f.t.Helper()
	ctx := context.Background()
	tbl, err := schema.Load(ctx, f.src, f.db, table)
	if err != nil {
		f.t.Fatal(err)
	}
	// Every column by name: SELECT * leaves out INVISIBLE columns, which the binlog carries.
	names := make([]string, len(tbl.Columns))
	for i, c := range tbl.Columns {
		names[i] = mysqlx.QuoteIdent(c.Name)
	}
	rows, err := f.src.QueryContext(ctx, "SELECT "+strings.Join(names, ", ")+" FROM `"+table+"`")
	if err != nil {
		f.t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]event.Row{}
	for rows.Next() {
		vals := make([]any, len(tbl.Columns))
		ptrs := make([]any, len(vals))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			f.t.Fatal(err)
		}
		row := event.Row{}
		for i := range tbl.Columns {
			col := tbl.Columns[i]
			if col.Kind == schema.KindString {
				// The session converted the column's bytes to utf8mb4 already.
				col.Charset = "utf8mb4"
			}
			v, err := event.Encode(&col, vals[i])
			if err != nil {
				f.t.Fatal(err)
			}
			row[col.Name] = v
		}
		key, err := event.Key(tbl, row)
		if err != nil {
			f.t.Fatal(err)
		}
		out[string(key)] = row
	}
	if err := rows.Err(); err != nil {
		f.t.Fatal(err)
	}
	return out
}

// sameSourceRows compares the rows of table read back from Kafka with its rows read from
// the source (sameRows). JSON columns compare as documents on both sides: their text is
// the source's own rendering on SELECT and the binlog decoder's in the events, and
// rendering JSON exactly as the source does is the decoder's business, tested with it.
func (f *fixture) sameSourceRows(t *testing.T, table string, got map[string]event.Row) {
	t.Helper()
	want := f.sourceRows(table)
	tbl, err := schema.Load(context.Background(), f.src, f.db, table)
	if err != nil {
		t.Fatal(err)
	}
	// The rows are the events' images, which later checks read as captured: canonical
	// JSON goes into copies.
	got = maps.Clone(got)
	for k, row := range got {
		got[k] = maps.Clone(row)
	}
	for _, c := range tbl.Columns {
		if c.Kind != schema.KindJSON {
			continue
		}
		for _, rows := range []map[string]event.Row{got, want} {
			for _, row := range rows {
				if s, ok := row[c.Name].(string); ok {
					row[c.Name] = canonicalJSON(t, s)
				}
			}
		}
	}
	sameRows(t, table, got, want)
}

// canonicalJSON is a JSON document's text with sorted keys and no spaces, integers as
// written and other numbers in Go's shortest form (1.5e300 and 1.5e+300 are one number).
func canonicalJSON(t *testing.T, s string) string {
	t.Helper()
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("JSON %q: %v", s, err)
	}
	var canon func(v any) any
	canon = func(v any) any {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				x[k] = canon(e)
			}
		case []any:
			for i, e := range x {
				x[i] = canon(e)
			}
		case json.Number:
			if strings.ContainsAny(string(x), ".eE") {
				if f, err := x.Float64(); err == nil {
					return json.Number(strconv.FormatFloat(f, 'g', -1, 64))
				}
			}
		}
		return v
	}
	b, err := json.Marshal(canon(v))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// sameRows compares rows read back from Kafka with rows read from the source, through
// JSON, as a sink sees them.
func sameRows(t *testing.T, what string, got, want map[string]event.Row) {
	t.Helper()
	norm := func(m map[string]event.Row) string {
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		var back any
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.UseNumber()
		if err := dec.Decode(&back); err != nil {
			t.Fatal(err)
		}
		out, _ := json.Marshal(back)
		return string(out)
	}
	if g, w := norm(got), norm(want); g != w {
		if len(got) != len(want) {
			t.Fatalf("%s: %d rows from Kafka, %d in the source", what, len(got), len(want))
		}
		for k, w := range want {
			if g, ok := got[k]; !ok || !reflect.DeepEqual(norm(map[string]event.Row{k: g}), norm(map[string]event.Row{k: w})) {
				t.Fatalf("%s: row %s\nfrom Kafka: %v\nin source:  %v", what, k, got[k], w)
			}
		}
		t.Fatalf("%s differ:\nfrom Kafka: %s\nin source:  %s", what, g, w)
	}
}

func TestRowChangesReachKafkaInSourceOrderPerKey(t *testing.T) {
	t.Parallel()
	testenv.EachFlavor(t, testRowChangesReachKafkaInSourceOrderPerKey)
}

func testRowChangesReachKafkaInSourceOrderPerKey(t *testing.T, e testenv.Env) {
	t.Parallel()
	f := newFixture(t, e)
	f.exec(
		"CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(40), qty INT)",
		"CREATE TABLE pairs (a INT, b VARCHAR(10), v INT, PRIMARY KEY (b, a))",
		"CREATE TABLE big (id INT PRIMARY KEY, v VARCHAR(40))",
		"CREATE TABLE ignored (id INT PRIMARY KEY)",
	)
	cfg := f.configure([]string{"items", "pairs", "big"}, nil)
	r := f.start(cfg)

	f.exec(
		"INSERT INTO items VALUES (1,'a',1)",
		"INSERT INTO items VALUES (2,'b',2),(3,'c',3),(4,'d',4)",
		"UPDATE items SET qty = qty + 10 WHERE id <= 3",
		"DELETE FROM items WHERE id = 4",
		"INSERT INTO ignored VALUES (1),(2)",
		"UPDATE items SET id = 10 WHERE id = 1",
		"UPDATE items SET name = 'same' WHERE id = 2",
		"INSERT INTO pairs VALUES (1,'x',1),(2,'x',2),(1,'y',3)",
		"UPDATE pairs SET v = v * 2",
		"DELETE FROM pairs WHERE b = 'y'",
	)
	// One transaction of 100k rows (and a change to another table in it).
	tx, err := f.src.Begin()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		"INSERT INTO big SELECT seq, CONCAT('value ', seq) FROM " + seq(100000) + " s",
		"UPDATE items SET qty = 0 WHERE id = 10",
	} {
		if _, err := tx.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	target := f.sourcePosition()
	r.waitAcknowledged(t, target)
	if err := r.shutdown(); err != nil {
		t.Fatalf("capture stopped with %v, want nil on cancel", err)
	}

	for _, tc := range []struct {
		table string
		ops   map[event.Op]int
	}{
		{"items", map[event.Op]int{event.OpCreate: 5, event.OpUpdate: 5, event.OpDelete: 2}},
		{"pairs", map[event.Op]int{event.OpCreate: 3, event.OpUpdate: 3, event.OpDelete: 1}},
		{"big", map[event.Op]int{event.OpCreate: 100000}},
	} {
		t.Run(tc.table+" has every change once, in order per key, ending in the source's rows", func(t *testing.T) {
			recs := readTopic(t, f.env.KafkaBrokers, kafkax.TableTopic(f.prefix, f.db, tc.table))
			got := countOps(rowEvents(recs))
			if !reflect.DeepEqual(got, tc.ops) {
				t.Fatalf("events by op = %v, want %v", got, tc.ops)
			}
			checkOrderPerKey(t, recs)
			f.sameSourceRows(t, tc.table, finalRows(recs))
		})
	}

	t.Run("a primary key update is a delete of the old key and a create of the new", func(t *testing.T) {
		recs := rowEvents(readTopic(t, f.env.KafkaBrokers, kafkax.TableTopic(f.prefix, f.db, "items")))
		var del, cre *record
		for i := range recs {
			switch {
			case recs[i].key == "[1]" && recs[i].ev.Op == event.OpDelete:
				del = &recs[i]
			case recs[i].key == "[10]" && recs[i].ev.Op == event.OpCreate:
				cre = &recs[i]
			}
		}
		if del == nil || cre == nil {
			t.Fatalf("delete of [1] = %v, create of [10] = %v", del, cre)
		}
		if del.ev.Version != cre.ev.Version || del.ev.Source.Pos != cre.ev.Source.Pos {
			t.Fatalf("the pair carries versions %v and %v", del.ev.Version, cre.ev.Version)
		}
		if del.ev.Before["qty"] != json.Number("11") || cre.ev.After["qty"] != json.Number("11") {
			t.Fatalf("before %v, after %v", del.ev.Before, cre.ev.After)
		}
	})

	t.Run("the rows of one transaction share its GTID and position order", func(t *testing.T) {
		recs := rowEvents(readTopic(t, f.env.KafkaBrokers, kafkax.TableTopic(f.prefix, f.db, "big")))
		gtids := map[string]bool{}
		versions := map[event.Version]bool{}
		for _, r := range recs {
			gtids[r.ev.Source.GTID] = true
			versions[r.ev.Version] = true
			if r.ev.Source.DB != f.db || r.ev.Source.Table != "big" || r.ev.Source.File == "" || r.ev.Source.TsMs == 0 {
				t.Fatalf("source %+v", r.ev.Source)
			}
		}
		if len(gtids) != 1 || len(versions) != 100000 {
			t.Fatalf("%d GTIDs, %d distinct versions", len(gtids), len(versions))
		}
	})

	t.Run("the final checkpoint is at or after the last change", func(t *testing.T) {
		cp, err := NewCheckpointStore(f.env.KafkaBrokers, f.prefix, 1).Load(context.Background())
		if err != nil || cp == nil {
			t.Fatalf("checkpoint %v, %v", cp, err)
		}
		if cp.Before(target) {
			t.Fatalf("checkpoint %s before %s", cp.Position, target)
		}
		if cp.GTID == "" || cp.SourceServerID == 0 {
			t.Fatalf("checkpoint %+v lacks its GTID or source", cp)
		}
	})
}

func TestHeartbeatsReachEveryPartitionAndLagIsZeroWhenIdle(t *testing.T) {
	t.Parallel()
	testenv.EachFlavor(t, testHeartbeatsReachEveryPartitionAndLagIsZeroWhenIdle)
}

func testHeartbeatsReachEveryPartitionAndLagIsZeroWhenIdle(t *testing.T, e testenv.Env) {
	t.Parallel()
	// A private source: the shared one is never idle while other tests write to it.
	m := testenv.StartServer(t, e.SourceFlavor, testenv.ServerOptions{})
	f := newFixtureOn(t, e, m.DSN())
	f.exec("CREATE TABLE t (id INT PRIMARY KEY)")
	cfg := f.configure([]string{"t"}, nil)
	r := f.start(cfg)
	f.exec("INSERT INTO t VALUES (1),(2),(3),(4),(5),(6),(7),(8)")
	r.waitAcknowledged(t, f.sourcePosition())
	topic := kafkax.TableTopic(f.prefix, f.db, "t")
	if e.SourceFlavor == testenv.MySQLFlavor {
		// MySQL 9's only password plugin: on a fresh server nothing is cached, so both
		// connections went through its full authentication, without TLS.
		var plugin string
		if err := f.src.QueryRow("SELECT plugin FROM mysql.user WHERE CONCAT(user, '@', host) = CURRENT_USER()").Scan(&plugin); err != nil || plugin != "caching_sha2_password" {
			t.Fatalf("the cleave user authenticates with %q (%v), want caching_sha2_password", plugin, err)
		}
	}

	// After the insert, every partition gets a heartbeat above the rows before it.
	var recs []record
	deadline := time.Now().Add(time.Minute)
	for {
		recs = readTopic(t, f.env.KafkaBrokers, topic)
		after := map[int]bool{}
		var top event.Version
		for _, rec := range rowEvents(recs) {
			top = max(top, rec.ev.Version)
		}
		for _, rec := range recs {
			if rec.ev.Op == event.OpHeartbeat && rec.ev.Version > top {
				after[rec.partition] = true
			}
		}
		if len(after) == cfg.Kafka.Partitions {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("heartbeats after the rows on %d of %d partitions", len(after), cfg.Kafka.Partitions)
		}
		time.Sleep(200 * time.Millisecond)
	}
	last := map[int]event.Version{}
	for _, rec := range recs {
		if rec.ev.Version < last[rec.partition] {
			t.Fatalf("partition %d: version %v at offset %d after %v", rec.partition, rec.ev.Version, rec.offset, last[rec.partition])
		}
		last[rec.partition] = rec.ev.Version
		if rec.ev.Op == event.OpHeartbeat && (rec.key != "" || rec.ev.Source.File == "" || rec.ev.Source.TsMs == 0) {
			t.Fatalf("heartbeat %+v with key %q", rec.ev, rec.key)
		}
	}

	testenv.Eventually(t, time.Minute, "source_lag_seconds 0 on the idle source", func() bool {
		return metricValue(t, r.reg, "cleave_capture_source_lag_seconds") == 0 &&
			metricValue(t, r.reg, "cleave_capture_heartbeats_total") > 0
	})
	if n := metricValue(t, r.reg, "cleave_capture_events_total"); n != 8 {
		t.Fatalf("events_total = %v, want 8", n)
	}
}

// An idle source that has just begun a new binlog file reports a position past the file's
// opening events (format description, GTID list, binlog checkpoint). Capture must reach
// it: the checker waits for the sinks to pass the source's position before it calls a row
// drift, and would wait in vain until the next write.
func TestIdleSourceAfterRotationIsReachedExactly(t *testing.T) {
	t.Parallel()
	testenv.EachFlavor(t, testIdleSourceAfterRotationIsReachedExactly)
}

func testIdleSourceAfterRotationIsReachedExactly(t *testing.T, e testenv.Env) {
	t.Parallel()
	m := testenv.StartServer(t, e.SourceFlavor, testenv.ServerOptions{})
	f := newFixtureOn(t, e, m.DSN())
	f.exec("CREATE TABLE t (id INT PRIMARY KEY)")
	cfg := f.configure([]string{"t"}, nil)
	r := f.start(cfg)
	f.exec("INSERT INTO t VALUES (1)")
	r.waitAcknowledged(t, f.sourcePosition())
	for i := 0; i < 2; i++ {
		f.exec("FLUSH BINARY LOGS")
		target := f.sourcePosition()
		if target.Pos <= 4 {
			t.Fatalf("source position %s right after a rotation: want past the file's opening events", target)
		}
		r.waitAcknowledged(t, target)
	}
	// MariaDB may still add a binlog checkpoint to the new file a moment later: capture
	// follows the idle source to its exact position, whatever it has become.
	testenv.Eventually(t, time.Minute, "capture at the idle source's exact position", func() bool {
		got, want := r.c.Status().Read, f.sourcePosition()
		return got.File == want.File && got.Pos == want.Pos
	})
}

// Two captures with one server_id: MariaDB keeps one replica connection per server_id and
// disconnects the older one (ERROR 4052), which must stop naming the conflict; MySQL tells
// replicas apart by their UUID (go-mysql gives each connection a new one) and serves both,
// which then both stream.
func TestTwoCapturesWithOneServerID(t *testing.T) {
	t.Parallel()
	testenv.EachFlavor(t, testTwoCapturesWithOneServerID)
}

func testTwoCapturesWithOneServerID(t *testing.T, e testenv.Env) {
	t.Parallel()
	f := newFixture(t, e)
	f.exec("CREATE TABLE t (id INT PRIMARY KEY)")
	cfg := f.configure([]string{"t"}, nil)
	first := f.start(cfg)
	second := f.start(cfg)
	if e.SourceFlavor == testenv.MySQLFlavor {
		t.Run("MySQL serves both", func(t *testing.T) {
			f.exec("INSERT INTO t VALUES (1)")
			target := f.sourcePosition()
			second.waitAcknowledged(t, target)
			first.waitAcknowledged(t, target)
		})
		return
	}
	t.Run("MariaDB stops the older, which names the conflict", func(t *testing.T) {
		var err error
		select {
		case err = <-first.done:
			first.done <- err
		case <-time.After(time.Minute):
			t.Fatal("the first capture kept running beside a second one with its server_id")
		}
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("source.server_id=%d", cfg.Source.ServerID)) || !strings.Contains(err.Error(), "its own server_id") {
			t.Fatalf("error = %v", err)
		}
		if !second.c.Status().Streaming {
			t.Fatal("the second capture is not streaming")
		}
	})
}

func TestPurgedCheckpointIsAClearErrorSayingHowToRecover(t *testing.T) {
	t.Parallel()
	testenv.EachFlavor(t, testPurgedCheckpointIsAClearErrorSayingHowToRecover)
}

func testPurgedCheckpointIsAClearErrorSayingHowToRecover(t *testing.T, e testenv.Env) {
	t.Parallel()
	f := newFixture(t, e)
	f.exec("CREATE TABLE t (id INT PRIMARY KEY)")
	cfg := f.configure([]string{"t"}, nil)
	store := NewCheckpointStore(f.env.KafkaBrokers, f.prefix, 1)
	defer store.Close()
	ctx := context.Background()
	if err := store.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	cur := f.sourcePosition()
	var id uint32
	if err := f.src.QueryRow("SELECT @@server_id").Scan(&id); err != nil {
		t.Fatal(err)
	}
	gone := Checkpoint{Position: Position{File: strings.TrimRight(cur.File, "0123456789") + "000000", Pos: 4}, SourceServerID: id, Flavor: string(e.SourceFlavor)}
	if err := store.Store(ctx, gone); err != nil {
		t.Fatal(err)
	}
	c, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	err = c.Run(ctx)
	for _, want := range []string{gone.File, "no longer has binlog file", "backfill", CheckpointTopic(f.prefix)} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("error %v does not say %q", err, want)
		}
	}
}

func TestWrongBinlogSettingsAreRefusedNamingTheVariable(t *testing.T) {
	t.Parallel()
	testenv.EachFlavor(t, testWrongBinlogSettingsAreRefusedNamingTheVariable)
}

func testWrongBinlogSettingsAreRefusedNamingTheVariable(t *testing.T, e testenv.Env) {
	t.Parallel()
	refused := func(t *testing.T, m testenv.Server, want string) {
		t.Helper()
		f := newFixtureOn(t, e, m.DSN())
		f.exec("CREATE TABLE t (id INT PRIMARY KEY)")
		c, err := New(f.configure([]string{"t"}, nil), Options{})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		err = c.Run(ctx)
		if !errors.Is(err, ErrSource) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), m.Addr()) {
			t.Fatalf("Run = %v, want ErrSource naming %q and the server", err, want)
		}
	}
	t.Run("no binlog", func(t *testing.T) {
		t.Parallel()
		refused(t, testenv.StartServer(t, e.SourceFlavor, testenv.ServerOptions{DisableBinlog: true}), "log_bin is OFF")
	})
	t.Run("settings a running server can change", func(t *testing.T) {
		t.Parallel()
		// One server for the settings that are dynamic, each set wrong in turn.
		m := testenv.StartServer(t, e.SourceFlavor, testenv.ServerOptions{})
		for _, tc := range []struct {
			name, variable, bad, good, want string
		}{
			{"statement format", "binlog_format", "STATEMENT", "ROW", "binlog_format is STATEMENT"},
			{"minimal row image", "binlog_row_image", "MINIMAL", "FULL", "binlog_row_image is MINIMAL"},
			{"minimal row metadata", "binlog_row_metadata", "MINIMAL", "FULL", "binlog_row_metadata is MINIMAL"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				m.RootExec("SET GLOBAL " + tc.variable + " = '" + tc.bad + "'")
				defer m.RootExec("SET GLOBAL " + tc.variable + " = '" + tc.good + "'")
				refused(t, m, tc.want)
			})
		}
	})
}

// A stopped capture resumes from its checkpoint (file, offset and GTID state) and emits
// every change made meanwhile once; a checkpoint the source's binlog no longer belongs to
// (its binlog reset since) is refused, whether the source has fewer transactions than the
// checkpoint has seen or, numbered from 1 again, as many and more.
func TestResumeFromCheckpointAndRefuseAResetSource(t *testing.T) {
	t.Parallel()
	testenv.EachFlavor(t, testResumeFromCheckpointAndRefuseAResetSource)
}

func testResumeFromCheckpointAndRefuseAResetSource(t *testing.T, e testenv.Env) {
	t.Parallel()
	m := testenv.StartServer(t, e.SourceFlavor, testenv.ServerOptions{})
	f := newFixtureOn(t, e, m.DSN())
	f.exec("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(200))")
	cfg := f.configure([]string{"t"}, nil)
	topic := kafkax.TableTopic(f.prefix, f.db, "t")

	r := f.start(cfg)
	for i := 1; i <= 10; i++ {
		f.exec(fmt.Sprintf("INSERT INTO t VALUES (%d, 'first run')", i))
	}
	r.waitAcknowledged(t, f.sourcePosition())
	if err := r.shutdown(); err != nil {
		t.Fatal(err)
	}
	store := NewCheckpointStore(f.env.KafkaBrokers, f.prefix, 1)
	defer store.Close()
	cp, err := store.Load(context.Background())
	if err != nil || cp == nil || cp.GTID == "" {
		t.Fatalf("checkpoint after the first run: %+v, %v", cp, err)
	}

	t.Run("a restart resumes at the checkpoint and emits every change once", func(t *testing.T) {
		f.exec("UPDATE t SET v = 'while stopped' WHERE id <= 5", "DELETE FROM t WHERE id = 10")
		if e.SourceFlavor == testenv.MySQLFlavor {
			// A transaction with a tagged GTID (MySQL 8.4+), which has an event of its own.
			f.execOneSession("SET SESSION gtid_next = 'AUTOMATIC:cleave'", "UPDATE t SET v = 'tagged' WHERE id = 6", "SET SESSION gtid_next = 'AUTOMATIC'")
		} else {
			f.exec("UPDATE t SET v = 'tagged' WHERE id = 6")
		}
		r := f.start(cfg)
		end := f.sourcePosition()
		r.waitAcknowledged(t, end)
		if err := r.shutdown(); err != nil {
			t.Fatal(err)
		}
		recs := rowEvents(readTopic(t, f.env.KafkaBrokers, topic))
		if got, want := countOps(recs), map[event.Op]int{event.OpCreate: 10, event.OpUpdate: 6, event.OpDelete: 1}; !reflect.DeepEqual(got, want) {
			t.Fatalf("events by op %v, want %v", got, want)
		}
		checkOrderPerKey(t, recs)
		f.sameSourceRows(t, "t", finalRows(recs))
		last := recs[len(recs)-1].ev
		for _, rec := range recs {
			if rec.ev.After != nil && rec.ev.After["v"] == "tagged" {
				last = rec.ev
			}
		}
		if last.Source.GTID == "" || e.SourceFlavor == testenv.MySQLFlavor && !strings.Contains(last.Source.GTID, ":cleave:") {
			t.Fatalf("the tagged transaction's events carry GTID %q", last.Source.GTID)
		}
		// The source is idle: the final checkpoint holds its whole GTID state.
		cp, err := store.Load(context.Background())
		if err != nil || cp == nil {
			t.Fatalf("checkpoint: %+v, %v", cp, err)
		}
		if !sameGTIDState(t, e.SourceFlavor, cp.GTID, end.GTID) {
			t.Fatalf("checkpoint GTID state %q, the source's %q", cp.GTID, end.GTID)
		}
	})

	cp, err = store.Load(context.Background())
	if err != nil || cp == nil {
		t.Fatalf("checkpoint: %+v, %v", cp, err)
	}
	reset := "RESET MASTER"
	if e.SourceFlavor == testenv.MySQLFlavor {
		reset = "RESET BINARY LOGS AND GTIDS"
	}
	refused := func(t *testing.T) {
		t.Helper()
		c, err := New(cfg, Options{})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		err = c.Run(ctx)
		if !errors.Is(err, ErrSource) || !strings.Contains(err.Error(), "reset") || !strings.Contains(err.Error(), "topic_prefix") {
			t.Fatalf("Run from the checkpoint %s after %s = %v, want ErrSource saying the binlog was reset and how to start over", cp.Position, reset, err)
		}
	}
	t.Run("after a reset, a source with fewer transactions is refused", func(t *testing.T) {
		f.exec(reset)
		// Binlog file names restart too: reach the checkpoint's file again.
		for f.sourcePosition().File < cp.File {
			f.exec("FLUSH BINARY LOGS")
		}
		f.exec("INSERT INTO t VALUES (100, 'after the reset')")
		refused(t)
	})
	t.Run("after a reset, a source with as many transactions and one starting at the checkpoint's offset is refused", func(t *testing.T) {
		// The checkpoint's offset falls on a transaction boundary of the new history, and
		// the new history has more transactions than the checkpoint has seen: the file and
		// the offset exist, a transaction starts there, the GTID numbers cover the
		// checkpoint's. (Sizes of GTID events vary, so rather than writing transactions
		// until one ends exactly at the old offset, the old checkpoint is stored again
		// with the offset of such a boundary.)
		for i := 0; i < 3; i++ {
			f.exec(fmt.Sprintf("INSERT INTO t VALUES (%d, 'new history')", 2000+i))
		}
		at := f.sourcePosition()
		for i := 3; i < 30; i++ {
			f.exec(fmt.Sprintf("INSERT INTO t VALUES (%d, 'new history')", 2000+i))
		}
		moved := *cp
		moved.File, moved.Pos = at.File, at.Pos
		if err := store.Store(context.Background(), moved); err != nil {
			t.Fatal(err)
		}
		cp = &moved
		refused(t)
	})
}

// sameGTIDState compares two GTID states of flavor as sets.
func sameGTIDState(t *testing.T, flavor testenv.Flavor, a, b string) bool {
	t.Helper()
	if flavor == testenv.MariaDBFlavor {
		return sameMariaDBState(a, b)
	}
	sa, err1 := gomysql.ParseMysqlGTIDSet(a)
	sb, err2 := gomysql.ParseMysqlGTIDSet(b)
	if err1 != nil || err2 != nil {
		t.Fatalf("GTID sets %q, %q: %v %v", a, b, err1, err2)
	}
	return sa.Equal(sb)
}

// XA transactions reach the binlog at XA PREPARE, before they are committed or rolled
// back: rows of a configured table in one stop capture, naming it; XA transactions on
// other tables pass, and capture reaches the position after them.
func TestXATransactionsOnConfiguredTablesStopCapture(t *testing.T) {
	t.Parallel()
	testenv.EachFlavor(t, testXATransactionsOnConfiguredTablesStopCapture)
}

func testXATransactionsOnConfiguredTablesStopCapture(t *testing.T, e testenv.Env) {
	t.Parallel()
	f := newFixture(t, e)
	f.exec("CREATE TABLE t (id INT PRIMARY KEY)", "CREATE TABLE other (id INT PRIMARY KEY)")
	r := f.start(f.configure([]string{"t"}, nil))
	xa := func(table, xid, end string) {
		f.execOneSession("XA START '"+xid+"'", "INSERT INTO "+table+" VALUES (2)", "XA END '"+xid+"'", "XA PREPARE '"+xid+"'", end+" '"+xid+"'")
	}
	t.Run("an XA transaction on another table passes", func(t *testing.T) {
		xa("other", fmt.Sprintf("cleave-a-%d", serverID()), "XA COMMIT")
		f.exec("INSERT INTO t VALUES (1)")
		r.waitAcknowledged(t, f.sourcePosition())
	})
	t.Run("an XA transaction on a configured table stops capture before its rows", func(t *testing.T) {
		xa("t", fmt.Sprintf("cleave-b-%d", serverID()), "XA ROLLBACK")
		var err error
		select {
		case err = <-r.done:
			r.done <- err
		case <-time.After(time.Minute):
			t.Fatal("capture kept running past an XA transaction on a configured table")
		}
		if !errors.Is(err, ErrSource) || !strings.Contains(err.Error(), "XA transaction") || !strings.Contains(err.Error(), f.db+".t") {
			t.Fatalf("capture stopped with %v, want ErrSource naming the XA transaction and the table", err)
		}
		for _, rec := range rowEvents(readTopic(t, f.env.KafkaBrokers, kafkax.TableTopic(f.prefix, f.db, "t"))) {
			if rec.ev.Op != event.OpCreate || rec.key != "[1]" {
				t.Fatalf("event %s %s: the XA transaction's rows reached Kafka", rec.ev.Op, rec.key)
			}
		}
	})
}

// A session may log less than capture needs, whatever the server's settings: its row
// changes to a configured table stop capture, naming the setting, before any of its rows.
func TestSessionsThatLogLessStopCaptureNamingTheSetting(t *testing.T) {
	t.Parallel()
	testenv.EachFlavor(t, testSessionsThatLogLessStopCaptureNamingTheSetting)
}

func testSessionsThatLogLessStopCaptureNamingTheSetting(t *testing.T, e testenv.Env) {
	t.Parallel()
	for _, tc := range []struct {
		name, set, want string
	}{
		{"statement format", "SET SESSION binlog_format = 'STATEMENT'", "as a statement"},
		{"mixed format", "SET SESSION binlog_format = 'MIXED'", "as a statement"},
		{"minimal row image", "SET SESSION binlog_row_image = 'MINIMAL'", "binlog_row_image other than FULL"},
		{"row image without blobs", "SET SESSION binlog_row_image = 'NOBLOB'", "binlog_row_image other than FULL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, e)
			f.exec("CREATE TABLE t (id INT PRIMARY KEY, v INT, b BLOB)", "INSERT INTO t VALUES (1, 1, 'x')")
			r := f.start(f.configure([]string{"t"}, nil))
			f.execOneSession(tc.set, "UPDATE t SET v = 2 WHERE id = 1")
			var err error
			select {
			case err = <-r.done:
				r.done <- err
			case <-time.After(time.Minute):
				t.Fatalf("capture kept running past a row change logged with %q", tc.set)
			}
			if !errors.Is(err, ErrSource) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), f.db+".t") {
				t.Fatalf("capture stopped with %v, want ErrSource saying %q", err, tc.want)
			}
			if n := len(rowEvents(readTopic(t, f.env.KafkaBrokers, kafkax.TableTopic(f.prefix, f.db, "t")))); n != 0 {
				t.Fatalf("%d events of the session's changes reached Kafka", n)
			}
		})
	}
}

// A replica user without REPLICATION SLAVE is refused the binlog dump: capture stops at
// once naming the privilege and the GRANT that gives it, instead of retrying a refusal
// that every attempt meets again.
func TestMissingReplicationGrantStopsCaptureNamingIt(t *testing.T) {
	t.Parallel()
	testenv.EachFlavor(t, func(t *testing.T, e testenv.Env) {
		t.Parallel()
		user := testenv.UniqueName(t, "u", '_', 32)
		admin := testenv.OpenDB(t, e.SourceDSN)
		for _, q := range []string{
			"CREATE USER '" + user + "'@'%' IDENTIFIED BY 'pw'",
			"GRANT ALL PRIVILEGES ON *.* TO '" + user + "'@'%'",
			"REVOKE REPLICATION SLAVE ON *.* FROM '" + user + "'@'%'",
		} {
			if _, err := admin.Exec(q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		t.Cleanup(func() { _, _ = admin.Exec("DROP USER IF EXISTS '" + user + "'@'%'") })
		cfg, err := mysql.ParseDSN(e.SourceDSN)
		if err != nil {
			t.Fatal(err)
		}
		cfg.User, cfg.Passwd = user, "pw"
		f := newFixtureOn(t, e, cfg.FormatDSN())
		f.exec("CREATE TABLE t (id INT PRIMARY KEY)")
		c, err := New(f.configure([]string{"t"}, nil), Options{Log: zaptest.NewLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		err = c.Run(ctx)
		if !errors.Is(err, ErrSource) || !strings.Contains(err.Error(), "REPLICATION SLAVE") || !strings.Contains(err.Error(), "GRANT") {
			t.Fatalf("Run = %v, want ErrSource naming REPLICATION SLAVE and the GRANT", err)
		}
		t.Logf("Run: %v", err)
	})
}
