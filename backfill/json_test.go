package backfill

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/event"
	"github.com/cleave-dev/cleave/internal/testenv"
	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/reconcile"
	"github.com/cleave-dev/cleave/schema"
)

// mysqlDocs are documents a MySQL source holds: scalars of every type the text does not
// tell, numbers a double does not hold, text that needs escaping.
var mysqlDocs = []string{
	"JSON_OBJECT('price', 99.990, 'qty', CAST(3 AS UNSIGNED), 'big', CAST('123456789012345678901234567890' AS DECIMAL(30,0)), 'u64', CAST(18446744073709551615 AS UNSIGNED), 'i64', CAST(9223372036854775807 AS SIGNED), 'neg', -0.5, 'int', CAST(5 AS DECIMAL(3,0)), 'half', 1.5, 'dbl', CAST(1.5 AS DOUBLE), 'third', CAST(1/3 AS DOUBLE), 'e300', 1e300)",
	"JSON_ARRAY(DATE'2024-02-29', TIME'12:00:00', CAST('-838:59:59' AS TIME), CAST('2024-02-29 23:59:59.999999' AS DATETIME(6)), x'00ff', '2024-02-29', '12:00:00.000000', 'base64:type15:AP8=')",
	"(SELECT JSON_OBJECT('ts', ts, 'year', y, 'blob', bl, 'bit', bt) FROM helper)",
	`CAST('{"a": [1, 2.5, "x", null, true, {}, []], "s": "tab\\t é \\"q\\" \\\\ /"}' AS JSON)`,
	"CAST(99.990 AS JSON)", "CAST(CAST(5 AS UNSIGNED) AS JSON)", "CAST('null' AS JSON)", "CAST('[]' AS JSON)", `CAST('"x"' AS JSON)`,
	"JSON_OBJECT('long', REPEAT('é', 3000), 'n', 12.50)",
	"JSON_ARRAY(0.1, 0.30000000000000004, 1e-7, CAST(0.1 AS DOUBLE))",
	"NULL",
}

// mariadbDocs are JSON texts as a MariaDB source stores them, spacing and number forms
// included.
var mariadbDocs = []string{
	`'{"price":99.990,"qty" : 3 , "big": 123456789012345678901234567890}'`,
	`'[1.50, 2e3, -0.0, 1E-7, 18446744073709551616, 3.14159265358979323846]'`,
	`'  {"nested": {"a": [ ], "b": {}}, "s": "tab\\there \\u00e9 \\"q\\" \\\\ /"}  '`,
	`'"2024-01-02"'`, `'null'`, `'{}'`,
	`JSON_OBJECT('d', 12.50, 'when', DATE'2024-02-29')`,
	`NULL`,
}

// rangeRouting puts the backfilled rows on shard0 and the streamed ones on shard1. (Hash
// routing would do, but the checker's SQL form of it calls MD5 with a number, which MySQL
// 9's MD5 refuses.)
var rangeRouting = config.Table{Strategy: config.StrategyRange, ShardKey: "id",
	Ranges: []config.RangeBound{{Below: "1000", Shard: "shard0"}, {Shard: "shard1"}}}

// TestJSONValuesReachTheShardsAsTheSourceHoldsThem copies documents through the backfill
// and the stream, between sources and shards of both flavors: every shard holds each
// document's text exactly as the source renders it (digits included, across flavors), and
// on MySQL shards of a MySQL source every scalar has the source's JSON_TYPE.
func TestJSONValuesReachTheShardsAsTheSourceHoldsThem(t *testing.T) {
	run := func(t *testing.T, env testenv.Env) {
		t.Parallel()
		w := copyJSONDocs(t, env, rangeRouting)
		if env.SourceFlavor == testenv.MySQLFlavor && env.ShardFlavor == testenv.MySQLFlavor {
			w.compareJSONTypes(t, "docs")
		}
	}
	testenv.EachFlavor(t, run)
	testenv.CrossFlavors(t, run)
}

// TestReconcileFindsNoDriftInCopiedJSON runs the checker over documents copied from a
// MySQL source to MySQL shards. The checker's row hash needs SHA1 and its hash routing
// MD5, which MySQL 9 keeps in component_classic_hashing, not installed on the shared
// servers: the test runs on private servers with the component.
func TestReconcileFindsNoDriftInCopiedJSON(t *testing.T) {
	testenv.SkipUnlessInMatrix(t, testenv.MySQLFlavor)
	env := testenv.ServicesFor(t, testenv.MySQLFlavor, testenv.MySQLFlavor)
	var dsns []string
	for range 3 {
		dsns = append(dsns, testenv.StartMySQLWithClassicHashing(t, testenv.ServerOptions{}).DSN())
	}
	env.SourceDSN, env.Shard0DSN, env.Shard1DSN = dsns[0], dsns[1], dsns[2]
	w := copyJSONDocs(t, env, rangeRouting)
	w.compareJSONTypes(t, "docs")
	rep := w.reconcile(t, "docs")
	if rep.Status != reconcile.StatusConsistent || rep.Tables[0].RowsChecked == 0 {
		t.Fatalf("reconcile over the copied documents: %s after %d rows, drift %+v, error %q", rep.Status, rep.Tables[0].RowsChecked, rep.Tables[0].Drift, rep.Tables[0].Error)
	}
	t.Logf("reconcile: %s, %d rows checked", rep.Status, rep.Tables[0].RowsChecked)
	w.showWhatTheCheckerSeesOfTypes(t)
}

// copyJSONDocs creates a table of documents on env's source, copies it (half through the
// backfill, half through the stream, then updates) to the shards with routing, and waits
// until every shard holds the source's text of each.
func copyJSONDocs(t *testing.T, env testenv.Env, routing config.Table) *world {
	t.Helper()
	w := newWorld(t, env, nil, nil)
	docs := mariadbDocs
	if env.SourceFlavor == testenv.MySQLFlavor {
		w.exec(
			"CREATE TABLE helper (id INT PRIMARY KEY, bl BLOB, bt BIT(5), ts TIMESTAMP(3) NULL, y YEAR)",
			"INSERT INTO helper VALUES (1, x'00ff10', b'101', '2024-01-02 03:04:05.123', 2024)",
		)
		docs = mysqlDocs
	}
	// utf8mb4_bin: a collation both products know, for the shards of the other one
	// (MySQL's default utf8mb4_0900_ai_ci is unknown to MariaDB).
	w.exec("ALTER DATABASE " + mysqlx.QuoteIdent(w.DB) + " CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
	w.exec("CREATE TABLE docs (id INT NOT NULL PRIMARY KEY, j JSON NULL, k JSON NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin")
	insert := func(first int) {
		for i, d := range docs {
			w.exec(fmt.Sprintf("INSERT INTO docs VALUES (%d, %s, %s)", first+i, d, docs[(i+1)%len(docs)]))
		}
	}
	insert(1) // copied by the backfill
	w.configure(tableSpec{name: "docs", routing: routing})
	p := w.start(Options{})
	w.waitDone(t, p, 3*time.Minute)
	insert(1001) // streamed
	w.exec("UPDATE docs SET k = j WHERE id % 2 = 0")
	w.waitEqual(t, p, 3*time.Minute, "docs")
	return w
}

// compareJSONTypes compares, for every scalar of every document of table, its JSON_TYPE on
// the source and on the shard that holds the row. Two types have no SQL form a shard could
// rebuild them from: a TIMESTAMP arrives as a DATETIME, and an opaque value other than a
// binary string (a BLOB or BIT column's value) as the STRING of its base64:type<n>: text.
func (w *world) compareJSONTypes(t *testing.T, table string) {
	t.Helper()
	src := w.jsonTypes(t, w.Source, table)
	got := map[string]string{}
	for _, sh := range w.Shards {
		for k, v := range w.jsonTypes(t, sh, table) {
			got[k] = v
		}
	}
	if len(src) == 0 || len(got) != len(src) {
		t.Fatalf("%d scalars on the source, %d on the shards", len(src), len(got))
	}
	checked := 0
	for k, want := range src {
		switch want {
		case "TIMESTAMP":
			want = "DATETIME"
		case "BIT":
			want = "STRING"
		}
		if want == "BLOB" && strings.Contains(k, "blob") {
			want = "STRING" // the BLOB column's value: base64:type252:
		}
		if got[k] != want {
			t.Errorf("%s: JSON_TYPE %s on the shard, %s on the source", k, got[k], src[k])
		}
		checked++
	}
	t.Logf("%d scalars have the source's types on the shards", checked)
}

// jsonTypes returns the JSON_TYPE of every scalar of every JSON document of table on db,
// keyed by "id column path".
func (w *world) jsonTypes(t *testing.T, db *sql.DB, table string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out := map[string]string{}
	for _, col := range []string{"j", "k"} {
		q := mysqlx.QuoteIdent(col)
		rows, err := db.QueryContext(ctx, "SELECT id, CAST("+q+" AS CHAR) FROM "+mysqlx.QuoteTable(w.DB, table)+" WHERE "+q+" IS NOT NULL")
		if err != nil {
			t.Fatal(err)
		}
		texts := map[int]string{}
		for rows.Next() {
			var id int
			var text string
			if err := rows.Scan(&id, &text); err != nil {
				t.Fatal(err)
			}
			texts[id] = text
		}
		rows.Close()
		for id, text := range texts {
			var paths []string
			if err := event.ScanJSON(text, func(s *event.JSONScalar) error {
				paths = append(paths, string(s.Path))
				return nil
			}); err != nil {
				t.Fatalf("row %d: %v", id, err)
			}
			pj, _ := json.Marshal(paths)
			rs, err := db.QueryContext(ctx, "SELECT c.n, JSON_TYPE(JSON_EXTRACT(t."+q+", c.p)) FROM "+mysqlx.QuoteTable(w.DB, table)+" AS t, JSON_TABLE(?, '$[*]' COLUMNS (n FOR ORDINALITY, p TEXT PATH '$')) AS c WHERE t.id = ?", string(pj), id)
			if err != nil {
				t.Fatal(err)
			}
			for rs.Next() {
				var n int
				var typ string
				if err := rs.Scan(&n, &typ); err != nil {
					t.Fatal(err)
				}
				out[fmt.Sprintf("row %d %s %s", id, col, paths[n-1])] = typ
			}
			rs.Close()
		}
	}
	return out
}

func (w *world) reconcile(t *testing.T, table string) *reconcile.Report {
	t.Helper()
	c, err := reconcile.New(w.cfg, reconcile.WithOptions(reconcile.Options{Tables: []string{w.table(table)}, RecheckWait: 200 * time.Millisecond}),
		reconcile.WithRegisterer(prometheus.NewRegistry()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := c.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// showWhatTheCheckerSeesOfTypes puts on a shard, next to the source's documents with
// DECIMALs, UNSIGNED INTEGERs and DATEs, the documents a reparse of their text makes (what
// cleave wrote before it carried types: DOUBLEs, INTEGERs, STRINGs), and compares their
// row hashes as the checker computes them (reconcile.RowHashSQL, on each server). The
// checker compares the documents' text, so it sees a type change only where the new type
// prints differently: DECIMAL 99.990 against DOUBLE 99.99, or a DECIMAL with more digits
// than a double keeps, not DECIMAL 1.5 against DOUBLE 1.5.
func (w *world) showWhatTheCheckerSeesOfTypes(t *testing.T) {
	t.Helper()
	create := "CREATE TABLE " + mysqlx.QuoteTable(w.DB, "typed") + " (id INT NOT NULL PRIMARY KEY, j JSON NULL)"
	w.exec(create, "INSERT INTO typed VALUES (1, JSON_OBJECT('price', 99.990)), (2, JSON_OBJECT('price', 1.5)), (3, CAST(CAST(5 AS UNSIGNED) AS JSON)), (4, JSON_ARRAY(DATE'2024-02-29')), (5, JSON_OBJECT('pi', 3.14159265358979323846)), (6, JSON_OBJECT('n', 5.0))")
	shard := w.Shards[0]
	if _, err := shard.Exec(create); err != nil {
		t.Fatal(err)
	}
	if _, err := shard.Exec("INSERT INTO " + mysqlx.QuoteTable(w.DB, "typed") + " SELECT id, CAST(CAST(j AS CHAR) AS JSON) FROM (SELECT 1 AS id, JSON_OBJECT('price', 99.990) AS j UNION ALL SELECT 2, JSON_OBJECT('price', 1.5) UNION ALL SELECT 3, CAST(CAST(5 AS UNSIGNED) AS JSON) UNION ALL SELECT 4, JSON_ARRAY(DATE'2024-02-29') UNION ALL SELECT 5, JSON_OBJECT('pi', 3.14159265358979323846) UNION ALL SELECT 6, JSON_OBJECT('n', 5.0)) AS s"); err != nil {
		t.Fatal(err)
	}
	def, err := schema.Load(context.Background(), w.Source, w.DB, "typed")
	if err != nil {
		t.Fatal(err)
	}
	var cols []*schema.Column
	for i := range def.Columns {
		cols = append(cols, &def.Columns[i])
	}
	hashes := func(db *sql.DB) map[int]string {
		out := map[int]string{}
		rows, err := db.Query("SELECT id, " + reconcile.RowHashSQL(cols) + ", CAST(j AS CHAR) FROM " + mysqlx.QuoteTable(w.DB, "typed"))
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var id int
			var h, text string
			if err := rows.Scan(&id, &h, &text); err != nil {
				t.Fatal(err)
			}
			out[id] = h + " " + text
		}
		return out
	}
	src, sh := hashes(w.Source), hashes(shard)
	seen := func(id int) bool {
		return src[id][:strings.IndexByte(src[id], ' ')] != sh[id][:strings.IndexByte(sh[id], ' ')]
	}
	if !seen(1) || !seen(5) {
		t.Errorf("the row hash does not tell DECIMAL 99.990 from DOUBLE 99.99, or a DECIMAL pi from the DOUBLE: source %v, shard %v", src, sh)
	}
	for id, what := range map[int]string{2: "DECIMAL 1.5 from the DOUBLE 1.5", 3: "UNSIGNED INTEGER 5 from the INTEGER 5", 4: "DATE 2024-02-29 from the STRING", 6: "DECIMAL 5.0 from the DOUBLE 5.0"} {
		t.Logf("the checker tells %s: %v (it hashes the documents' text)", what, seen(id))
	}
}

func TestEncoderWritesJSONTypesAsTheEventPackage(t *testing.T) {
	def := &schema.Table{DB: "d", Name: "t", Columns: []schema.Column{{Name: "id", Kind: schema.KindInt}, {Name: "j", Kind: schema.KindJSON}}, PK: []int{0}}
	enc := newEncoder(def)
	enc.setSource(&event.Source{Connector: "cleave", Name: "p", DB: "d", Table: "t", Snapshot: true})
	vals := []any{json.Number("7"), `{"d": "2024-02-29", "p": 99.990}`}
	types := map[string]event.JSONTypes{"j": {`$."p"`: event.JSONDecimal, `$."d"`: event.JSONDate}}
	want, err := event.Marshal(&event.Event{Op: event.OpRead, After: event.Row{"id": vals[0], "j": vals[1]}, TsMs: 5, Version: 9,
		Source: event.Source{Connector: "cleave", Name: "p", DB: "d", Table: "t", Snapshot: true}, JSONTypes: types})
	if err != nil {
		t.Fatal(err)
	}
	enc.load(vals)
	if got := enc.appendEvent(nil, 5, 9, types); !bytes.Equal(got, want) {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func TestOnlyMySQLsTemporalAndBinaryTextsAreOpenStrings(t *testing.T) {
	for tok, want := range map[string]bool{
		`"2024-02-29"`: true, `"2024-02-29 23:59:59.999999"`: true, `"-838:59:59.000000"`: true, `"12:00:00.000000"`: true,
		`"base64:type15:AP8="`: true, `"base64:type252:AP8="`: false, `"2024-02-29 23:59:59"`: false, `"12:00:00"`: false,
		`"x2024-02-29"`: false, `""`: false, `"hello"`: false,
	} {
		if got := openString(tok); got != want {
			t.Errorf("openString(%s) = %v, want %v", tok, got, want)
		}
	}
}
