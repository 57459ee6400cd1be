package capture

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cleave-dev/cleave/event"
	"github.com/cleave-dev/cleave/internal/testenv"
	"github.com/cleave-dev/cleave/kafkax"
)

// TestMain runs capture's tests in a local time zone far from UTC: capture must never
// depend on the zone of the machine it runs on (go-mysql renders TIMESTAMP values in the
// local zone wherever it is not told otherwise).
func TestMain(m *testing.M) {
	time.Local = time.FixedZone("UTC-07:30", -(7*3600 + 30*60))
	code := m.Run()
	testenv.RemoveBinaries() // the crash tests' cleave
	os.Exit(code)
}

// compressedTable is the definition of the tables the compression test writes: columns
// whose decoding depends on the parser's settings (TIMESTAMP, DECIMAL, JSON) among others.
const compressedTable = `(id INT PRIMARY KEY, v INT, s VARCHAR(60), ts TIMESTAMP(6) NULL, dt DATETIME(6), d DECIMAL(20,5), j JSON, b BLOB) DEFAULT CHARSET=utf8mb4`

// TestCompressedTransactionsGiveTheEventsOfPlainOnes writes the same changes to two
// tables, once plainly and once compressed (MySQL: a session with
// binlog_transaction_compression, whose transactions become Transaction_payload events;
// MariaDB: log_bin_compress, its compressed rows events), and requires the same events of
// both, in the same order per key, ending in the source's rows. Capture restarted from the
// boundary before or after a compressed transaction emits exactly the events it emitted
// after that boundary the first time.
func TestCompressedTransactionsGiveTheEventsOfPlainOnes(t *testing.T) {
	t.Parallel()
	testenv.EachFlavor(t, testCompressedTransactionsGiveTheEventsOfPlainOnes)
}

func testCompressedTransactionsGiveTheEventsOfPlainOnes(t *testing.T, e testenv.Env) {
	t.Parallel()
	var f *fixture
	var on, off string
	if e.SourceFlavor == testenv.MySQLFlavor {
		f = newFixture(t, e)
		on, off = "SET SESSION binlog_transaction_compression = ON", "SET SESSION binlog_transaction_compression = OFF"
	} else {
		// A server setting: a private server.
		m := testenv.StartServer(t, e.SourceFlavor, testenv.ServerOptions{ExtraArgs: []string{"--log-bin-compress-min-len=10"}})
		f = newFixtureOn(t, e, m.DSN())
		on, off = "SET GLOBAL log_bin_compress = ON", "SET GLOBAL log_bin_compress = OFF"
	}
	f.exec("CREATE TABLE plain "+compressedTable, "CREATE TABLE packed "+compressedTable, "CREATE TABLE counters (id INT PRIMARY KEY, v INT, j JSON)")
	tables := []string{"plain", "packed", "counters"}
	cfg := f.configure(tables, nil)
	r := f.start(cfg)

	ctx := context.Background()
	conn, err := f.src.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	run := func(stmts ...string) {
		t.Helper()
		for _, s := range stmts {
			if _, err := conn.ExecContext(ctx, s); err != nil {
				t.Fatalf("%s: %v", s, err)
			}
		}
	}
	// The same changes for either table: a large transaction, a transaction of several
	// statements (updates, deletes, primary key changes, an insert of NULLs) and an
	// autocommit update; TIMESTAMPs written from a session far from UTC; JSON documents
	// whose scalars' types the text does not tell (MySQL: DECIMALs, integers of 64 bits,
	// UNSIGNED ones, dates and times), so json_types are compared too.
	bulk := func(table string) string {
		return "INSERT INTO " + table + " SELECT seq, seq % 7, CONCAT('row ', seq), '2024-06-01 12:00:00.123456', '2024-06-01 12:00:00.5', seq / 3, " +
			"JSON_OBJECT('n', seq, 'f', 2.5e0, 's', CONCAT('<', seq, '>'), 'd', seq / 3, 'p', CAST(seq AS DECIMAL(10,2)) + 0.5, 'u', CAST(seq AS UNSIGNED), " +
			"'big', seq * 4294967296, 'ubig', CAST(18446744073709551615 - seq AS UNSIGNED), 'day', DATE'2024-06-01' + INTERVAL seq DAY, " +
			"'at', CAST('2024-06-01 12:00:00.5' AS DATETIME(1)), 't', SEC_TO_TIME(seq), 'a', JSON_ARRAY(seq / 7, -seq * 4294967296)), " +
			"REPEAT('b', seq % 50) FROM " + seq(3000) + " s"
	}
	mixed := func(table string) []string {
		return []string{
			"BEGIN",
			"UPDATE " + table + " SET v = v + 1, j = JSON_SET(j, '$.n', 'x', '$.d', 12.50, '$.day', DATE'2030-01-01', '$.a[5]', CAST(7 AS UNSIGNED)), ts = '2030-01-01 00:00:00' WHERE id % 10 = 0",
			"DELETE FROM " + table + " WHERE id % 10 = 5",
			"UPDATE " + table + " SET id = id + 10000 WHERE id % 100 = 1",
			"INSERT INTO " + table + " VALUES (20000, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
			"COMMIT",
			"UPDATE " + table + " SET s = 'single' WHERE id = 2",
		}
	}
	run("SET SESSION time_zone = '+05:00'", bulk("plain"))
	run(mixed("plain")...)

	run(on)
	beforePacked := f.sourcePosition()
	run(bulk("packed"))
	afterBulk := f.sourcePosition()
	run(mixed("packed")...)
	// A transaction of more row changes than compressed bytes: two rows toggled back and
	// forth 100,000 times in all (MySQL then emits them net), beside a plain insert of a
	// JSON document with typed scalars.
	run("INSERT INTO counters (id, v) VALUES (2, 0)",
		"BEGIN",
		"INSERT INTO counters (id, v) SELECT 1 + seq % 2, 0 FROM "+seq(100000)+" s ON DUPLICATE KEY UPDATE v = 1 - v",
		"INSERT INTO counters VALUES (3, 7, JSON_OBJECT('d', 1.50, 'i', 4294967296, 'day', DATE'2024-06-01'))",
		"COMMIT")
	run(off, "UPDATE counters SET v = v + 10 WHERE id = 2", "SET SESSION time_zone = '+00:00'")
	end := f.sourcePosition()
	r.waitAcknowledged(t, end)

	topic := func(prefix, table string) string { return kafkax.TableTopic(prefix, f.db, table) }
	recs := map[string][]record{}
	for _, tb := range tables {
		recs[tb] = readTopic(t, f.env.KafkaBrokers, topic(f.prefix, tb))
	}

	for _, tb := range tables {
		t.Run(tb+": every key's versions increase and the last images are the source's rows", func(t *testing.T) {
			checkOrderPerKey(t, recs[tb])
			f.sameSourceRows(t, tb, finalRows(recs[tb]))
		})
	}

	t.Run("compressed changes are the plain ones, in the same order per key", func(t *testing.T) {
		plain, packed := changesPerKey(t, rowEvents(recs["plain"])), changesPerKey(t, rowEvents(recs["packed"]))
		if len(plain) != len(packed) || len(plain) < 3000 {
			t.Fatalf("%d keys changed plainly, %d compressed", len(plain), len(packed))
		}
		for k, want := range plain {
			if got := packed[k]; fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("key %s: compressed %v\nplain %v", k, got, want)
			}
		}
	})

	if e.SourceFlavor == testenv.MySQLFlavor {
		t.Run("the row changes of a compressed transaction take its position and their index in it", func(t *testing.T) {
			byGTID := map[string][]*event.Event{}
			for _, rec := range rowEvents(recs["packed"]) {
				byGTID[rec.ev.Source.GTID] = append(byGTID[rec.ev.Source.GTID], rec.ev)
			}
			if len(byGTID) != 3 {
				t.Fatalf("compressed events of %d transactions, want 3", len(byGTID))
			}
			for gtid, evs := range byGTID {
				rows := map[int]bool{}
				for _, ev := range evs {
					want, err := event.NewVersion(ev.Source.File, ev.Source.Pos, ev.Source.Row)
					if err != nil || ev.Version != want || ev.Source.Pos != evs[0].Source.Pos {
						t.Fatalf("transaction %s: event at %s:%d row %d has version %v, want %v at the transaction's position %d", gtid, ev.Source.File, ev.Source.Pos, ev.Source.Row, ev.Version, want, evs[0].Source.Pos)
					}
					rows[ev.Source.Row] = true
				}
				for i := 0; i < len(rows); i++ {
					if !rows[i] {
						t.Fatalf("transaction %s: row indexes %v are not 0 to %d", gtid, rows, len(rows)-1)
					}
				}
			}
		})
		t.Run("a compressed transaction with more changes than bytes is emitted net, one event per row", func(t *testing.T) {
			evs := rowEvents(recs["counters"])
			var toggles string
			for _, rec := range evs {
				if rec.key == "[3]" {
					toggles = rec.ev.Source.GTID
				}
			}
			got := map[string]bool{}
			for _, rec := range evs {
				if rec.ev.Source.GTID != toggles {
					continue
				}
				got[rec.key+string(rec.ev.Op)] = true
				if want, _ := event.NewVersion(rec.ev.Source.File, rec.ev.Source.Pos, 0); rec.ev.Source.Row != 0 || rec.ev.Version != want {
					t.Fatalf("net event of %s at row %d, version %v; want row 0 of the transaction's position, version %v", rec.key, rec.ev.Source.Row, rec.ev.Version, want)
				}
			}
			// [1] is created and toggled, [2] (inserted before) toggled, [3] created.
			if want := map[string]bool{"[1]c": true, "[2]u": true, "[3]c": true}; fmt.Sprint(got) != fmt.Sprint(want) || len(evs) != 5 {
				t.Fatalf("the toggling transaction gave %v (%d events for counters in all); want one event per row %v (5 in all)", got, len(evs), want)
			}
			// A row emitted net is written as any other: MySQL's text, and json_types.
			for _, rec := range evs {
				if rec.key != "[3]" {
					continue
				}
				wantTypes := map[string]event.JSONTypes{"j": {`$."d"`: event.JSONDecimal, `$."i"`: event.JSONInteger, `$."day"`: event.JSONDate}}
				if j := rec.ev.After["j"]; j != `{"d": 1.50, "i": 4294967296, "day": "2024-06-01"}` || !reflect.DeepEqual(rec.ev.JSONTypes, wantTypes) {
					t.Fatalf("net event of [3]: j %v with json_types %v, want MySQL's text with %v: %s", j, rec.ev.JSONTypes, wantTypes, rec.value)
				}
			}
		})
	}

	// Restarting at the boundary before the compressed transactions, and at the one between
	// two of them, must bring exactly the events the first run had after it.
	var id uint32
	if err := f.src.QueryRow("SELECT @@server_id").Scan(&id); err != nil {
		t.Fatal(err)
	}
	for i, at := range []Position{beforePacked, afterBulk} {
		t.Run(fmt.Sprintf("a restart at %s emits what the first run emitted after it, once", at), func(t *testing.T) {
			coord, err := at.coord()
			if err != nil {
				t.Fatal(err)
			}
			prefix := fmt.Sprintf("%s-from%d", f.prefix, i)
			store := NewCheckpointStore(f.env.KafkaBrokers, prefix, 1)
			defer store.Close()
			if err := store.Ensure(ctx); err != nil {
				t.Fatal(err)
			}
			if err := store.Store(ctx, Checkpoint{Position: at, SourceServerID: id, Flavor: string(e.SourceFlavor)}); err != nil {
				t.Fatal(err)
			}
			again := f.start(f.configureWith(prefix, tables, nil))
			again.waitAcknowledged(t, end)
			for _, tb := range []string{"packed", "counters"} {
				want := map[change]int{}
				for _, rec := range rowEvents(recs[tb]) {
					if uint64(rec.ev.Version) > coord {
						want[change{rec.key, rec.ev.Version, rec.ev.Op}]++
					}
				}
				got := map[change]int{}
				for _, rec := range rowEvents(readTopic(t, f.env.KafkaBrokers, topic(prefix, tb))) {
					got[change{rec.key, rec.ev.Version, rec.ev.Op}]++
				}
				if len(want) == 0 || fmt.Sprint(sortedChanges(got)) != fmt.Sprint(sortedChanges(want)) {
					t.Fatalf("%s: %d distinct changes after the restart, %d the first time after %s", tb, len(got), len(want), at)
				}
			}
		})
	}
}

// changesPerKey is each key's changes in stream order: the bytes capture wrote for each
// event but those of its place in the stream (source, version, ts_ms), field by field.
func changesPerKey(t *testing.T, recs []record) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, r := range recs {
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(r.value, &fields); err != nil {
			t.Fatalf("%s@%d: %v", r.key, r.offset, err)
		}
		var b strings.Builder
		for _, name := range []string{"op", "before", "after", "json_types", "ddl"} {
			if v, ok := fields[name]; ok {
				fmt.Fprintf(&b, "%s=%s ", name, v)
			}
			delete(fields, name)
		}
		for _, name := range []string{"source", "version", "ts_ms"} {
			delete(fields, name)
		}
		if len(fields) > 0 {
			t.Fatalf("%s@%d: fields %v the comparison does not know: %s", r.key, r.offset, slices.Collect(maps.Keys(fields)), r.value)
		}
		out[r.key] = append(out[r.key], strings.TrimSuffix(b.String(), " "))
	}
	return out
}

// sortedChanges lists changes with their counts in a stable order, for comparison.
func sortedChanges(m map[change]int) []string {
	out := make([]string, 0, len(m))
	for c, n := range m {
		out = append(out, fmt.Sprintf("%s %d %s x%d", c.key, c.version, c.op, n))
	}
	sort.Strings(out)
	return out
}
