package capture

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/cleave-dev/cleave/event"
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
	cfg := f.configure([]string{"full_j", "part_j"}, nil)
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
		// Scalars whose type the text does not tell, in values the diffs carry: the events
		// must carry the same json_types as full images do.
		`UPDATE %s SET doc = JSON_SET(doc, '$.price', 99.990, '$.day', DATE'2024-02-29', '$.u', CAST(5 AS UNSIGNED), '$.i', 4294967296, '$.at', CAST('2024-01-02 03:04:05.5' AS DATETIME(1))) WHERE id IN (1, 3)`,
		`UPDATE %s SET doc = JSON_REPLACE(doc, '$.price', 100.000, '$.u', CAST(6 AS UNSIGNED)), doc2 = JSON_SET(doc2, '$.t', TIME'12:00:00', '$.bin', x'00ff', '$.x[1]', JSON_ARRAY(0.5, CAST('-1.25' AS DECIMAL(5,2)))) WHERE id = 3`,
		`UPDATE %s SET doc = JSON_REMOVE(doc, '$.day', '$.b[0]') WHERE id = 1`,
		// Auto-wrapping paths (MySQL logs them as the replacement of the wrapped value) and
		// an array cell before the start (an insert at the front).
		`UPDATE %s SET doc = JSON_SET(doc, '$.n[1]', 'after n', '$.c[1]', 7, '$.b[last-10]', 'first') WHERE id = 1`,
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
	packed := func(table string) []string {
		return []string{"BEGIN",
			"UPDATE " + table + ` SET doc = JSON_SET(doc, '$.packed', 1.5, '$.b[0]', DATE'2000-01-01') WHERE id = 1`,
			"UPDATE " + table + ` SET doc = JSON_REMOVE(doc, '$.packed') WHERE id = 1`,
			"COMMIT"}
	}
	part = append(part, "SET SESSION binlog_transaction_compression = ON")
	part = append(part, packed("part_j")...)
	// The session goes back to the pool: the full-image updates must not inherit its settings.
	part = append(part, "SET SESSION binlog_transaction_compression = OFF", "SET SESSION binlog_row_value_options = ''")
	full = packed("full_j")
	f.execOneSession(part...)
	f.execOneSession(full...)
	end := f.sourcePosition()
	r.waitAcknowledged(t, end)

	n := partialEvents(t, f.env.SourceDSN, start, end, f.db+".part_j")
	t.Logf("%d partial update events", n)
	if n < len(updates)-3 {
		t.Fatalf("%d partial update events for part_j, want most of its %d updates logged as diffs", n, len(updates))
	}
	if n := partialEvents(t, f.env.SourceDSN, start, end, f.db+".full_j"); n != 0 {
		t.Fatalf("%d partial update events for full_j, whose updates must be logged with full images", n)
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
		typed := 0
		for _, rec := range rowEvents(recs["part_j"]) {
			if len(rec.ev.JSONTypes) > 0 {
				typed++
			}
		}
		if typed < 5 {
			t.Fatalf("%d events from partial updates carry json_types; the updates give at least 5", typed)
		}
	})
}

// partialEvents counts the PARTIAL_UPDATE_ROWS_EVENTs of table (db.table) in the binlog
// from from to to, inside compressed transactions too.
func partialEvents(t *testing.T, dsn string, from, to Position, table string) int {
	t.Helper()
	n := 0
	count := func(ev *replication.BinlogEvent) {
		if re, ok := ev.Event.(*replication.RowsEvent); ok && ev.Header.EventType == replication.PARTIAL_UPDATE_ROWS_EVENT &&
			string(re.Table.Schema)+"."+string(re.Table.Table) == table {
			n++
		}
	}
	walkBinlog(t, "mysql", dsn, from, to, time.Minute, func(cfg *replication.BinlogSyncerConfig) {
		cfg.TimestampStringLocation = nil
	}, func(_ string, ev *replication.BinlogEvent) {
		if e, ok := ev.Event.(*replication.TransactionPayloadEvent); ok {
			for _, ie := range e.Events {
				count(ie)
			}
			return
		}
		count(ev)
	})
	return n
}

// jsonTree is the document of JSON text as MySQL's parser types it: integers INTEGER
// (UNSIGNED INTEGER above the signed range), other numbers DOUBLE. Test data only: it
// panics on invalid text.
func jsonTree(text string) *jsonNode {
	d := json.NewDecoder(strings.NewReader(text))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		panic(fmt.Sprintf("test document %s: %v", text, err))
	}
	var build func(v any) jsonNode
	build = func(v any) jsonNode {
		switch x := v.(type) {
		case nil:
			return jsonNode{kind: jsonNull}
		case bool:
			if x {
				return jsonNode{kind: jsonTrue}
			}
			return jsonNode{kind: jsonFalse}
		case string:
			return jsonNode{kind: jsonString, text: x}
		case json.Number:
			if _, err := strconv.ParseInt(string(x), 10, 64); err == nil {
				return jsonNode{kind: jsonInt, text: string(x)}
			}
			if _, err := strconv.ParseUint(string(x), 10, 64); err == nil {
				return jsonNode{kind: jsonUint, text: string(x)}
			}
			f, err := x.Float64()
			if err != nil {
				panic(fmt.Sprintf("test document %s: %v", text, err))
			}
			return jsonNode{kind: jsonDouble, text: string(appendMySQLDouble(nil, f))}
		case []any:
			n := jsonNode{kind: jsonArray, elems: []jsonNode{}}
			for _, e := range x {
				n.elems = append(n.elems, build(e))
			}
			return n
		case map[string]any:
			n := jsonNode{kind: jsonObject}
			for k, e := range x {
				n.setMember(k, build(e))
			}
			return n
		}
		panic(fmt.Sprintf("test document %s: %T", text, v))
	}
	n := build(v)
	return &n
}

func TestJSONDiffsApplyAsMySQLAppliesThem(t *testing.T) {
	scalar := func(kind jsonKind, text string) *jsonNode { return &jsonNode{kind: kind, text: text} }
	replace := func(path string, v *jsonNode) jsonDiff { return jsonDiff{jsonDiffReplace, path, v} }
	insert := func(path string, v *jsonNode) jsonDiff { return jsonDiff{jsonDiffInsert, path, v} }
	remove := func(path string) jsonDiff { return jsonDiff{jsonDiffRemove, path, nil} }
	for _, tc := range []struct {
		name   string
		before string
		diffs  []jsonDiff
		want   string // MySQL's text of the result; "" for an error
		types  event.JSONTypes
	}{
		{"replace a member and an element", `{"a":1,"b":[1,2]}`, []jsonDiff{replace("$.a", jsonTree(`2`)), replace("$.b[1]", jsonTree(`"x"`))}, `{"a": 2, "b": [1, "x"]}`, nil},
		{"an inserted member takes its place in MySQL's key order", `{"a":1,"zz":2}`, []jsonDiff{insert("$.z", jsonTree(`{"k":[true]}`)), insert("$.aaa", jsonTree(`null`))}, `{"a": 1, "z": {"k": [true]}, "zz": 2, "aaa": null}`, nil},
		{"insert past an array's end appends", `[1]`, []jsonDiff{insert("$[10]", jsonTree(`2`))}, `[1, 2]`, nil},
		{"insert before an array's start prepends", `[1,2]`, []jsonDiff{insert("$[last-5]", jsonTree(`0`))}, `[0, 1, 2]`, nil},
		{"insert inside an array shifts", `[1,3]`, []jsonDiff{insert("$[1]", jsonTree(`2`))}, `[1, 2, 3]`, nil},
		{"insert into an empty array at [last]", `{"e":[]}`, []jsonDiff{insert("$.e[last]", jsonTree(`1`))}, `{"e": [1]}`, nil},
		{"[last] and [last-1]", `{"b":[1,2,3]}`, []jsonDiff{replace("$.b[last]", jsonTree(`"L"`)), replace("$.b[last-1]", jsonTree(`"M"`))}, `{"b": [1, "M", "L"]}`, nil},
		{"remove a member and an element", `{"a":1,"b":[1,2,3]}`, []jsonDiff{remove("$.a"), remove("$.b[0]")}, `{"b": [2, 3]}`, nil},
		{"remove the last element", `[1,2,3]`, []jsonDiff{remove("$[last]")}, `[1, 2]`, nil},
		{"quoted member names", `{"a b":{"q\"":1}}`, []jsonDiff{replace(`$."a b"."q\""`, jsonTree(`2`))}, `{"a b": {"q\"": 2}}`, nil},
		{"a path through nested containers", `{"a":[{"b":[0,{"c":1}]}]}`, []jsonDiff{replace("$.a[0].b[last].c", jsonTree(`[]`))}, `{"a": [{"b": [0, {"c": []}]}]}`, nil},
		{"diffs apply in order", `{"a":[]}`, []jsonDiff{insert("$.a[0]", jsonTree(`1`)), insert("$.a[0]", jsonTree(`0`)), remove("$.a[last]")}, `{"a": [0]}`, nil},
		{"a diff inside a value an earlier diff inserted", `{}`, []jsonDiff{insert("$.o", jsonTree(`{}`)), insert("$.o.k", jsonTree(`[1]`)), insert("$.o.k[1]", jsonTree(`2`))}, `{"o": {"k": [1, 2]}}`, nil},
		{"scalars keep the types of the binary values", `{"x":0,"u":1}`, []jsonDiff{
			insert("$.p", scalar(jsonDecimal, "99.990")), insert("$.d", scalar(jsonDate, "2024-02-29")), replace("$.x", scalar(jsonUint, "5")), remove("$.u"),
		}, `{"d": "2024-02-29", "p": 99.990, "x": 5}`, event.JSONTypes{`$."d"`: event.JSONDate, `$."p"`: event.JSONDecimal, `$."x"`: event.JSONUnsigned}},
		{"numbers keep their text", `{"n":18446744073709551615,"f":1.5e300,"x":0.1}`, []jsonDiff{replace("$.x", scalar(jsonDecimal, "0.10"))}, `{"f": 1.5e300, "n": 18446744073709551615, "x": 0.10}`, event.JSONTypes{`$."x"`: event.JSONDecimal}},
		// What MySQL's apply_json_diff rejects, and so would a MySQL replica.
		{"the whole document is no diff", `{"a":1}`, []jsonDiff{replace("$", jsonTree(`[1]`))}, "", nil},
		{"[0] of a scalar is no diff path (MySQL logs paths without auto-wrapping)", `{"a":"s"}`, []jsonDiff{replace("$.a[0]", jsonTree(`"t"`))}, "", nil},
		{"[0] of an object is no diff path", `{"a":{}}`, []jsonDiff{insert("$.a[0]", jsonTree(`1`))}, "", nil},
		{"a member of an array is no diff path", `{"a":[1]}`, []jsonDiff{remove("$.a.b")}, "", nil},
		{"a replaced member must exist", `{"a":1}`, []jsonDiff{replace("$.b", jsonTree(`1`))}, "", nil},
		{"an inserted member must not exist", `{"a":1}`, []jsonDiff{insert("$.a", jsonTree(`2`))}, "", nil},
		{"a removed member must exist", `{"a":1}`, []jsonDiff{remove("$.b")}, "", nil},
		{"a removed element must exist", `[1]`, []jsonDiff{remove("$[1]")}, "", nil},
		{"a replaced element must exist", `[1]`, []jsonDiff{replace("$[last-1]", jsonTree(`1`))}, "", nil},
		{"a path through a missing member fails", `{"a":1}`, []jsonDiff{insert("$.b.c", jsonTree(`1`))}, "", nil},
		{"a path through a scalar fails", `{"a":1}`, []jsonDiff{insert("$.a.c", jsonTree(`1`))}, "", nil},
		{"wildcards are no diff paths", `{"a":1}`, []jsonDiff{remove("$.*")}, "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := jsonTree(tc.before)
			err := doc.applyDiffs(tc.diffs)
			switch {
			case tc.want == "" && err == nil:
				t.Fatalf("applied to %s: %s, want an error", tc.before, doc.appendText(nil))
			case tc.want == "":
				return
			case err != nil:
				t.Fatalf("applied to %s: %v", tc.before, err)
			}
			if got := string(doc.appendText(nil)); got != tc.want {
				t.Fatalf("applied to %s: %s, want %s", tc.before, got, tc.want)
			}
			if got := doc.types(nil, []byte("$")); !reflect.DeepEqual(got, tc.types) {
				t.Fatalf("applied to %s: types %v, want %v", tc.before, got, tc.types)
			}
		})
	}
}

// TestCutJSONDiffVectorsAreErrorsNotPanics reads a diff vector of every operation cut at
// every length: an error, or the diffs before the cut when it falls between two.
func TestCutJSONDiffVectorsAreErrorsNotPanics(t *testing.T) {
	var value []byte // a value whose length takes more than one byte
	for _, g := range readGolden(t) {
		if len(g.binary) > 300 {
			value = g.binary
			break
		}
	}
	var vec []byte
	for _, d := range []struct {
		op   byte
		path string
	}{{jsonDiffReplace, "$.a"}, {jsonDiffInsert, `$."b c"[last-1]`}, {jsonDiffRemove, "$[0]"}} {
		vec = append(vec, d.op)
		vec = gomysql.AppendLengthEncodedInteger(vec, uint64(len(d.path)))
		vec = append(vec, d.path...)
		if d.op != jsonDiffRemove {
			vec = gomysql.AppendLengthEncodedInteger(vec, uint64(len(value)))
			vec = append(vec, value...)
		}
	}
	diffs, err := readJSONDiffs(vec)
	if err != nil || len(diffs) != 3 || diffs[1].path != `$."b c"[last-1]` || diffs[2].value != nil {
		t.Fatalf("the whole vector: %v, %v", diffs, err)
	}
	for cut := 1; cut < len(vec); cut++ {
		if diffs, err := readJSONDiffs(vec[:cut]); err == nil && len(diffs) == 3 {
			t.Fatalf("the vector cut to %d of its %d bytes read as 3 diffs", cut, len(vec))
		}
	}
}
