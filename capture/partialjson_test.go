package capture

import (
	"context"
	"strings"
	"testing"
	"time"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
	"github.com/go-sql-driver/mysql"
	"go.uber.org/zap"

	"github.com/cleave-dev/cleave/internal/testenv"
	"github.com/cleave-dev/cleave/kafkax"
)

// TestPartialJSONUpdatesGiveTheEventsOfFullImageOnes applies the same JSON updates to two
// tables, from a session that logs full images and from one with
// binlog_row_value_options=PARTIAL_JSON (its updates logged as diffs: several per column,
// array inserts, [last], quoted member names, removals, columns left alone, some in a
// compressed transaction), and requires byte-identical events for both, ending in the
// source's rows.
func TestPartialJSONUpdatesGiveTheEventsOfFullImageOnes(t *testing.T) {
	t.Parallel()
	onMySQL(t, testPartialJSONUpdatesGiveTheEventsOfFullImageOnes)
}

func testPartialJSONUpdatesGiveTheEventsOfFullImageOnes(t *testing.T, e testenv.Env) {
	t.Parallel()
	f := newFixture(t, e)
	const def = "(id INT PRIMARY KEY, a INT, doc JSON, doc2 JSON, note VARCHAR(20)) DEFAULT CHARSET=utf8mb4"
	f.exec("CREATE TABLE full_j "+def, "CREATE TABLE part_j "+def)
	cfg := f.configure([]string{"full_j", "part_j"}, "")
	r := f.start(cfg)

	seed := []string{
		`(1, 1, '{"a": 1, "b": [1, 2, 3], "c": {"d": "x"}, "a b": 0, "n": -12, "f": 2.5e0}', '[1, 2]', 'one')`,
		`(2, 2, '{"a": "ü 🎉", "b": [], "c": {"d": [true, false, null]}, "a b": {}, "big": 18446744073709551615}', '"scalar"', 'two')`,
		`(3, 3, '{"a": null, "b": [{"k": 1}, {"k": 2}], "c": {"d": 1e300}, "a b": "<&>"}', '{"x": [0]}', NULL)`,
		`(4, 4, NULL, '[]', 'nulls')`,
	}
	updates := []string{
		`UPDATE %s SET doc = JSON_SET(doc, '$.a', 2, '$.b[1]', 'two', '$.new', true), doc2 = JSON_REMOVE(doc2, '$[0]'), a = 5 WHERE id = 1`,
		`UPDATE %s SET doc = JSON_SET(doc, '$.b[10]', 99) WHERE id = 1`,
		`UPDATE %s SET doc = JSON_REPLACE(doc, '$.c.d', 'a string longer than the one before it') WHERE id = 1`,
		`UPDATE %s SET doc = JSON_SET(doc, '$.b[last]', 'L') WHERE id = 1`,
		`UPDATE %s SET doc = JSON_REMOVE(doc, '$.c.d', '$."a b"') WHERE id <= 3`,
		`UPDATE %s SET doc = JSON_SET(doc, '$."key with \\"quotes\\""', JSON_OBJECT('x', JSON_ARRAY(1, 2.5e0, NULL))) WHERE id IN (1, 2)`,
		"UPDATE %s SET doc = JSON_SET(doc, '$.ü', '<&> \u2028') WHERE id = 2",
		`UPDATE %s SET note = 'json alone' WHERE id <= 4`,
		`UPDATE %s SET doc = JSON_SET(doc, '$.b[last-1].k', 20, '$.b[0]', JSON_ARRAY()) WHERE id = 3`,
		`UPDATE %s SET doc2 = JSON_SET(doc2, '$.x[0]', 'zero', '$.y', 1.5e300) WHERE id = 3`,
		`UPDATE %s SET doc = JSON_SET(doc, '$.a', 'from NULL') WHERE id = 4`,
		`UPDATE %s SET doc = JSON_REPLACE(doc, '$', JSON_ARRAY(1, 2)) WHERE id = 2`,
		`UPDATE %s SET doc2 = JSON_SET(doc2, '$[0]', 'wrapped') WHERE id = 2`,
	}
	for _, tb := range []string{"full_j", "part_j"} {
		f.exec("INSERT INTO " + tb + " VALUES " + strings.Join(seed, ", "))
	}
	start := f.sourcePosition()
	var full, part []string
	for _, u := range updates {
		full = append(full, strings.ReplaceAll(u, "%s", "full_j"))
		part = append(part, strings.ReplaceAll(u, "%s", "part_j"))
	}
	f.execOneSession(full...)
	part = append([]string{"SET SESSION binlog_row_value_options = 'PARTIAL_JSON'"}, part...)
	// Partial updates inside a compressed transaction too.
	part = append(part, "SET SESSION binlog_transaction_compression = ON", "BEGIN",
		`UPDATE part_j SET doc = JSON_SET(doc, '$.packed', 1) WHERE id = 1`, `UPDATE part_j SET doc = JSON_REMOVE(doc, '$.packed') WHERE id = 1`, "COMMIT")
	full = []string{"BEGIN", `UPDATE full_j SET doc = JSON_SET(doc, '$.packed', 1) WHERE id = 1`, `UPDATE full_j SET doc = JSON_REMOVE(doc, '$.packed') WHERE id = 1`, "COMMIT"}
	f.execOneSession(part...)
	f.execOneSession(full...)
	end := f.sourcePosition()
	r.waitAcknowledged(t, end)

	n := partialEvents(t, f.env.SourceDSN, start, end, f.db+".part_j")
	t.Logf("%d partial update events", n)
	if n < len(updates)-3 {
		t.Fatalf("%d partial update events for part_j, want most of its %d updates logged as diffs", n, len(updates))
	}
	recs := map[string][]record{}
	for _, tb := range []string{"full_j", "part_j"} {
		recs[tb] = readTopic(t, f.env.KafkaBrokers, kafkax.TableTopic(f.prefix, f.db, tb))
		t.Run(tb+" ends in the source's rows", func(t *testing.T) {
			checkOrderPerKey(t, recs[tb])
			f.sameSourceRows(t, tb, finalRows(recs[tb]))
		})
	}
	t.Run("partial updates give the events of full-image updates, byte for byte", func(t *testing.T) {
		fullChanges, partChanges := changesPerKey(t, rowEvents(recs["full_j"])), changesPerKey(t, rowEvents(recs["part_j"]))
		for k, want := range fullChanges {
			got := partChanges[k]
			if len(got) != len(want) {
				t.Fatalf("key %s: %d events from partial updates, %d from full images", k, len(got), len(want))
			}
			for i := range want {
				if got[i] != want[i] {
					t.Errorf("key %s, change %d:\npartial %s\nfull    %s", k, i, got[i], want[i])
				}
			}
		}
		if len(partChanges) != len(fullChanges) {
			t.Fatalf("%d keys from partial updates, %d from full images", len(partChanges), len(fullChanges))
		}
	})
}

// partialEvents counts the PARTIAL_UPDATE_ROWS_EVENTs of table (db.table) in the binlog
// from from to to, inside compressed transactions too.
func partialEvents(t *testing.T, dsn string, from, to Position, table string) int {
	t.Helper()
	dc, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := strings.Cut(dc.Addr, ":")
	syncer := replication.NewBinlogSyncer(replication.BinlogSyncerConfig{
		ServerID: serverID(), Flavor: "mysql", Host: host, Port: uint16(atoi(t, port)), User: dc.User, Password: dc.Passwd,
		Logger: newSlogger(zap.NewNop()),
	})
	defer syncer.Close()
	st, err := syncer.StartSync(gomysql.Position{Name: from.File, Pos: uint32(from.Pos)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n := 0
	file := from.File
	count := func(ev *replication.BinlogEvent) {
		if re, ok := ev.Event.(*replication.RowsEvent); ok && ev.Header.EventType == replication.PARTIAL_UPDATE_ROWS_EVENT &&
			string(re.Table.Schema)+"."+string(re.Table.Table) == table {
			n++
		}
	}
	for {
		ev, err := st.GetEvent(ctx)
		if err != nil {
			t.Fatalf("read binlog: %v", err)
		}
		switch e := ev.Event.(type) {
		case *replication.RotateEvent:
			file = string(e.NextLogName)
			continue
		case *replication.TransactionPayloadEvent:
			for _, ie := range e.Events {
				count(ie)
			}
		default:
			count(ev)
		}
		if ev.Header.LogPos > 0 && !(Position{File: file, Pos: uint64(ev.Header.LogPos)}).Before(to) {
			return n
		}
	}
}

func TestJSONDiffsApplyAsMySQLAppliesThem(t *testing.T) {
	for _, tc := range []struct {
		name   string
		before string
		diffs  []jsonDiff
		want   string // "" for an error
	}{
		{"replace a member and an element", `{"a":1,"b":[1,2]}`, []jsonDiff{{jsonDiffReplace, "$.a", `2`}, {jsonDiffReplace, "$.b[1]", `"x"`}}, `{"a":2,"b":[1,"x"]}`},
		{"insert a member", `{"a":1}`, []jsonDiff{{jsonDiffInsert, "$.z", `{"k":[true]}`}}, `{"a":1,"z":{"k":[true]}}`},
		{"insert past an array's end appends", `[1]`, []jsonDiff{{jsonDiffInsert, "$[10]", `2`}}, `[1,2]`},
		{"insert inside an array shifts", `[1,3]`, []jsonDiff{{jsonDiffInsert, "$[1]", `2`}}, `[1,2,3]`},
		{"[last] and [last-1]", `{"b":[1,2,3]}`, []jsonDiff{{jsonDiffReplace, "$.b[last]", `"L"`}, {jsonDiffReplace, "$.b[last-1]", `"M"`}}, `{"b":[1,"M","L"]}`},
		{"remove a member and an element", `{"a":1,"b":[1,2,3]}`, []jsonDiff{{jsonDiffRemove, "$.a", ""}, {jsonDiffRemove, "$.b[0]", ""}}, `{"b":[2,3]}`},
		{"quoted member names", `{"a b":{"q\"":1}}`, []jsonDiff{{jsonDiffReplace, `$."a b"."q\""`, `2`}}, `{"a b":{"q\"":2}}`},
		{"the whole document", `{"a":1}`, []jsonDiff{{jsonDiffReplace, "$", `[1]`}}, `[1]`},
		{"[0] of a scalar is the scalar", `{"a":"s"}`, []jsonDiff{{jsonDiffReplace, "$.a[0]", `"t"`}}, `{"a":"t"}`},
		{"numbers keep their text", `{"n":18446744073709551615,"f":1.5e+300,"x":0.1}`, []jsonDiff{{jsonDiffReplace, "$.x", `1E400`}}, `{"f":1.5e+300,"n":18446744073709551615,"x":1E400}`},
		{"diffs apply in order", `{"a":[]}`, []jsonDiff{{jsonDiffInsert, "$.a[0]", `1`}, {jsonDiffInsert, "$.a[0]", `0`}, {jsonDiffRemove, "$.a[last]", ""}}, `{"a":[0]}`},
		{"a replaced member must exist", `{"a":1}`, []jsonDiff{{jsonDiffReplace, "$.b", `1`}}, ""},
		{"a path through a missing member fails", `{"a":1}`, []jsonDiff{{jsonDiffInsert, "$.b.c", `1`}}, ""},
		{"wildcards are no diff paths", `{"a":1}`, []jsonDiff{{jsonDiffRemove, "$.*", ""}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := applyJSONDiffs(tc.before, tc.diffs)
			switch {
			case tc.want == "" && err == nil:
				t.Fatalf("applied to %s: %s, want an error", tc.before, got)
			case tc.want != "" && err != nil:
				t.Fatalf("applied to %s: %v", tc.before, err)
			case got != tc.want && tc.want != "":
				t.Fatalf("applied to %s: %s, want %s", tc.before, got, tc.want)
			}
		})
	}
}
