package reconcile

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/internal/testenv"
	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/schema"
)

// crossKinds is a column of every kind the row hash renders, as each product spells it:
// MariaDB 10.11 has no utf8mb4_0900_ai_ci (MySQL 8's default), and its JSON is LONGTEXT.
func crossKinds(f testenv.Flavor) string {
	coll := "utf8mb4_unicode_ci"
	if f == testenv.MySQLFlavor {
		coll = "utf8mb4_0900_ai_ci"
	}
	return `id INT NOT NULL PRIMARY KEY, i BIGINT NULL, u BIGINT UNSIGNED NULL, d DECIMAL(20,6) NULL,
	f FLOAT NULL, g DOUBLE NULL, dt DATE NULL, tm TIME(6) NULL, dtm DATETIME(6) NULL, ts TIMESTAMP(6) NULL,
	y YEAR NULL, s VARCHAR(20) COLLATE ` + coll + ` NULL, sg VARCHAR(20) COLLATE utf8mb4_general_ci NULL, c CHAR(8) NULL,
	l VARCHAR(20) CHARACTER SET latin1 NULL, b VARBINARY(20) NULL, bn BINARY(4) NULL, bl BLOB NULL, tx TEXT NULL,
	bt BIT(10) NULL, e ENUM('a','b','c|d') NULL, st SET('x','y') NULL`
}

// crossRows are the rows both servers get, as SQL value lists: edge values first, then
// random ones from a fixed seed.
func crossRows() []string {
	rows := []string{
		`(1, -9223372036854775808, 18446744073709551615, -99999999999999.999999, 3.4028234e38, 1.7976931348623157e308,
		  '1000-01-01', '-838:59:58.999999', '1000-01-01 00:00:00.000000', '1970-01-01 00:00:01.000000', 1901,
		  'Ärger ß 😀', 'abc ', 'a', 'é', X'00', X'00000000', X'', '', b'0', 'a', '')`,
		`(2, 9223372036854775807, 0, 0.000001, -1.17549435e-38, 5e-324, '9999-12-31', '838:59:58.999999',
		  '9999-12-31 23:59:59.999999', '2038-01-19 03:14:07.999999', 2155, '', ' ', '', '', X'ff', X'ff00ff00', X'000102', 'x',
		  b'1111111111', 'c|d', 'x,y')`,
		`(3, 0, 1, -12.5, 0.1, -0.0, '2024-02-29', '-00:00:00.000001', '2024-02-29 23:59:59.999999', '2024-03-31 01:00:00.500000',
		  2000, 'a|b', 'A', 'N', 'N', X'7c', X'7c', X'4e', '|', b'1', 'b', 'y')`,
		`(4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)`,
		`(5, 1, 2, 1, 16777217, 0.30000000000000004, '2000-01-01', '00:00:00', '2000-01-01 00:00:00', '2000-01-01 00:00:00',
		  1970, 'NULL', 'N', '', 'NULL', X'', X'', X'', 'N', b'10', 'a', 'x')`,
	}
	rng := mrand.New(mrand.NewPCG(5, 6))
	str := func() string {
		r := []rune("ab |Zé\\'%_ ß😀")
		var b strings.Builder
		for range rng.IntN(8) {
			b.WriteRune(r[rng.IntN(len(r))])
		}
		return "'" + strings.ReplaceAll(strings.ReplaceAll(b.String(), `\`, `\\`), `'`, `''`) + "'"
	}
	latin := func() string {
		r := []rune("ab |Zé'%_ ")
		var b strings.Builder
		for range rng.IntN(8) {
			b.WriteRune(r[rng.IntN(len(r))])
		}
		return "'" + strings.ReplaceAll(b.String(), `'`, `''`) + "'"
	}
	null := func(v string) string {
		if rng.IntN(7) == 0 {
			return "NULL"
		}
		return v
	}
	for id := 10; id < 2010; id++ {
		vals := []string{
			fmt.Sprint(id),
			null(fmt.Sprint(int64(rng.Uint64()))), null(fmt.Sprint(rng.Uint64())),
			null(fmt.Sprintf("%d.%06d", rng.IntN(1e9)-5e8, rng.IntN(1e6))),
			null(strconv.FormatFloat(float64(randomFloat32(rng)), 'g', -1, 32)), null(strconv.FormatFloat(randomFloat64(rng), 'g', -1, 64)),
			null(fmt.Sprintf("'%04d-%02d-%02d'", 1000+rng.IntN(8000), 1+rng.IntN(12), 1+rng.IntN(28))),
			null(fmt.Sprintf("'%d:%02d:%02d.%06d'", rng.IntN(1600)-800, rng.IntN(60), rng.IntN(60), rng.IntN(1e6))),
			null(fmt.Sprintf("'%04d-%02d-%02d %02d:%02d:%02d.%06d'", 1000+rng.IntN(8000), 1+rng.IntN(12), 1+rng.IntN(28), rng.IntN(24), rng.IntN(60), rng.IntN(60), rng.IntN(1e6))),
			null(fmt.Sprintf("FROM_UNIXTIME(%d.%06d)", 1+rng.IntN(2e9), rng.IntN(1e6))),
			null(fmt.Sprint(1901 + rng.IntN(255))),
			null(str()), null(str()), null(str()), null(latin()),
			null(fmt.Sprintf("X'%016x'", rng.Uint64())), null(fmt.Sprintf("X'%08x'", rng.Uint32())), null(fmt.Sprintf("X'%08x00%08x'", rng.Uint32(), rng.Uint32())),
			null(str()),
			null(fmt.Sprintf("b'%b'", rng.IntN(1024))), null([]string{"'a'", "'b'", "'c|d'"}[rng.IntN(3)]),
			null([]string{"''", "'x'", "'y'", "'x,y'"}[rng.IntN(4)]),
		}
		rows = append(rows, "("+strings.Join(vals, ", ")+")")
	}
	return rows
}

// randomFloat64 is a double of random bits (every exponent equally likely), not NaN or an
// infinity: the values whose text the products render differently are far from 1.
func randomFloat64(rng *mrand.Rand) float64 {
	for {
		if f := math.Float64frombits(rng.Uint64()); !math.IsNaN(f) && !math.IsInf(f, 0) {
			return f
		}
	}
}

func randomFloat32(rng *mrand.Rand) float32 {
	for {
		if f := math.Float32frombits(rng.Uint32()); !math.IsNaN(float64(f)) && !math.IsInf(float64(f), 0) {
			return f
		}
	}
}

// crossJSON are JSON documents as an application may write them, each with the spelling
// MySQL gives the same value (what MySQL stores and renders). On a MariaDB side either text
// may sit in the column, on a MySQL side only the value.
var crossJSON = []struct{ written, normalized string }{
	{`{"b":1,"a":[1.0,2.50,"x\u00e9"]}`, `{"a": [1.0, 2.5, "xé"], "b": 1}`},
	{`{"a":1e2, "big": 18446744073709551616, "i": 9223372036854775807, "u": 18446744073709551615}`,
		`{"a": 100.0, "i": 9223372036854775807, "u": 18446744073709551615, "big": 1.8446744073709552e19}`},
	{`{"a":1,"a":2}`, `{"a": 2}`},
	{`[-0.0, -0, 1e-7, 0.1e1, 123456789012345678901234567890, 0.1, 0.10000000000000001]`,
		`[-0.0, 0, 1e-7, 1.0, 1.2345678901234568e29, 0.1, 0.1]`},
	{`"\ud83d\ude00 \"q\" \\ \/ \n"`, `"😀 \"q\" \\ / \n"`},
	{`{"aa":1,"b":{"z":[],"y":{}},"a":null}`, `{"a": null, "b": {"y": {}, "z": []}, "aa": 1}`},
	{`[true,false,null]`, `[true, false, null]`},
	{`  {"k" : [ 1 , "two" ] }  `, `{"k": [1, "two"]}`},
	{`9007199254740993`, `9007199254740993`},
	{`9007199254740993.0`, `9007199254740992.0`},
}

// TestRowHashIsTheSameOnMariaDBAndMySQL writes the same rows to a MariaDB and a MySQL
// server and requires the same 64-bit row hash for each: a mixed split compares a row
// hashed on one product with its copy hashed on the other. Every kind is computed in SQL
// (RowHashSQL) except JSON, which one product stores as a document and the other as text:
// its rows are hashed as the checker does on such a split, from canonicalJSON in Go.
func TestRowHashIsTheSameOnMariaDBAndMySQL(t *testing.T) {
	testenv.CrossFlavors(t, func(t *testing.T, env testenv.Env) {
		ctx := context.Background()
		src, srcName := scratch(t, env.SourceDSN)
		dst, dstName := scratch(t, env.Shard0DSN)
		load := func(db *sql.DB, name string, f testenv.Flavor) *schema.Table {
			if _, err := db.Exec("CREATE TABLE " + mysqlx.QuoteTable(name, "k") + " (" + crossKinds(f) + ")"); err != nil {
				t.Fatal(err)
			}
			rows := crossRows()
			for start := 0; start < len(rows); start += 250 {
				batch := strings.Join(rows[start:min(start+250, len(rows))], ",")
				if _, err := db.Exec("INSERT INTO " + mysqlx.QuoteTable(name, "k") + " VALUES " + batch); err != nil {
					t.Fatalf("rows %d and on: %v", start, err)
				}
			}
			def, err := schema.Load(ctx, db, name, "k")
			if err != nil {
				t.Fatal(err)
			}
			return def
		}
		sdef, ddef := load(src, srcName, env.SourceFlavor), load(dst, dstName, env.ShardFlavor)
		// The kinds rendered in SQL: the same text on both products, so the same hash.
		var sqlCols []*schema.Column
		for _, c := range columnsOf(sdef) {
			if c.Kind != schema.KindDouble && c.Kind != schema.KindFloat {
				sqlCols = append(sqlCols, c)
			}
		}
		a := hashesWith(t, src, sdef, sqlCols)
		b := hashesWith(t, dst, ddef, sqlCols)
		if len(a) != len(crossRows()) || len(b) != len(a) {
			t.Fatalf("%d and %d rows hashed, want %d", len(a), len(b), len(crossRows()))
		}
		for id, h := range a {
			if h != b[id] {
				t.Errorf("row %d: %s hash %016x, %s hash %016x", id, env.SourceFlavor, h, env.ShardFlavor, b[id])
				logParts(t, src, dst, srcName, dstName, id)
			}
		}
		// Every kind as the checker hashes a row on a mixed split: DOUBLE and FLOAT in Go.
		sameCheckerHashes(t, src, dst, srcName, dstName, "k", len(crossRows()))

		// JSON: the written spelling on one side, the other spelling on the other, and the
		// written one on both.
		for _, db := range []struct {
			db   *sql.DB
			name string
		}{{src, srcName}, {dst, dstName}} {
			if _, err := db.db.Exec("CREATE TABLE " + mysqlx.QuoteTable(db.name, "j") + " (id INT NOT NULL PRIMARY KEY, j JSON NULL)"); err != nil {
				t.Fatal(err)
			}
		}
		ins := func(db *sql.DB, name string, id int, doc string) {
			if _, err := db.Exec("INSERT INTO "+mysqlx.QuoteTable(name, "j")+" VALUES (?, ?)", id, doc); err != nil {
				t.Fatalf("%s: %v", doc, err)
			}
		}
		for i, doc := range crossJSON {
			ins(src, srcName, 2*i, doc.written)
			ins(dst, dstName, 2*i, doc.normalized)
			ins(src, srcName, 2*i+1, doc.written)
			ins(dst, dstName, 2*i+1, doc.written)
		}
		ins(src, srcName, 100, "null")
		ins(dst, dstName, 100, "null")
		if _, err := src.Exec("INSERT INTO " + mysqlx.QuoteTable(srcName, "j") + " VALUES (101, NULL)"); err != nil {
			t.Fatal(err)
		}
		if _, err := dst.Exec("INSERT INTO " + mysqlx.QuoteTable(dstName, "j") + " VALUES (101, NULL)"); err != nil {
			t.Fatal(err)
		}
		sameCheckerHashes(t, src, dst, srcName, dstName, "j", 2*len(crossJSON)+2)
	})
}

// sameCheckerHashes hashes every row of table on both servers as the checker does on a
// split of the two (JSON, DOUBLE and FLOAT rendered in Go), and requires equal hashes.
func sameCheckerHashes(t *testing.T, src, dst *sql.DB, srcName, dstName, table string, rows int) {
	t.Helper()
	ctx := context.Background()
	ti, err := loadTable(ctx, &config.Table{Name: srcName + "." + table, Strategy: "broadcast"}, src, nil, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	// The shard's database has another name here: load its definition under its own.
	sdef, err := schema.Load(ctx, dst, dstName, table)
	if err != nil {
		t.Fatal(err)
	}
	ti.markCanon(sdef, true)
	ti.planHash()
	if !ti.goHash {
		t.Fatalf("table %s: no column hashed in Go on a mixed split", table)
	}
	c := &Checker{}
	ha, err := c.readRows(ctx, src, ti, "TRUE", nil, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	ti.quoted = mysqlx.QuoteTable(dstName, table)
	hb, err := c.readRows(ctx, dst, ti, "TRUE", nil, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(ha) != rows || len(hb) != rows {
		t.Fatalf("%d and %d rows of %s read, want %d", len(ha), len(hb), table, rows)
	}
	for k, r := range ha {
		if o := hb[k]; o == nil || o.hash != r.hash {
			t.Errorf("%s row %s: hash %016x on one side, %v on the other", table, r.key[0], r.hash, o)
		}
	}
}

// hashesWith returns the server's RowHashSQL over cols per id.
func hashesWith(t *testing.T, db *sql.DB, def *schema.Table, cols []*schema.Column) map[int]uint64 {
	t.Helper()
	rows, err := db.Query("SELECT id, " + RowHashSQL(cols) + " FROM " + mysqlx.QuoteTable(def.DB, def.Name))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[int]uint64{}
	for rows.Next() {
		var id int
		var h uint64
		if err := rows.Scan(&id, &h); err != nil {
			t.Fatal(err)
		}
		out[id] = h
	}
	return out
}

// logParts logs the parts of one row on both servers, column by column, where they differ.
func logParts(t *testing.T, a, b *sql.DB, aName, bName string, id int) {
	t.Helper()
	def, err := schema.Load(context.Background(), a, aName, "k")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range columnsOf(def) {
		var va, vb string
		q := "SELECT " + partSQL(c) + " FROM %s WHERE id = ?"
		a.QueryRow(fmt.Sprintf(q, mysqlx.QuoteTable(aName, "k")), id).Scan(&va)
		b.QueryRow(fmt.Sprintf(q, mysqlx.QuoteTable(bName, "k")), id).Scan(&vb)
		if va != vb {
			t.Logf("    row %d column %s: %q against %q", id, c.Name, va, vb)
		}
	}
}

// TestJSONIsComparedByValueWhereOneSideStoresDocuments: MySQL keeps a JSON column's value,
// MariaDB its text. Between the two, another spelling of the same document is no drift,
// and another value is. Between two MariaDB servers the text is what is stored, and a
// respelling is a change (TestDriftInjectedIntoShards covers that side).
func TestJSONIsComparedByValueWhereOneSideStoresDocuments(t *testing.T) {
	testenv.CrossFlavors(t, func(t *testing.T, env testenv.Env) {
		f := newFixture(t, env, fixtureTable{name: "docs", strategy: "hash", shardKey: "id",
			ddl: "id INT NOT NULL PRIMARY KEY, j JSON NULL, g DOUBLE NULL, fl FLOAT NULL"})
		for i, doc := range crossJSON {
			if _, err := f.source.Exec("INSERT INTO "+f.q("docs")+" VALUES (?, ?, ?, ?)", i+1, doc.written, -1.35429804664959e-10*float64(i+1), -2.1226996614962652e-24*float64(i+1)); err != nil {
				t.Fatal(err)
			}
		}
		f.copyRouted("docs", "id")
		// Respell every document on the MariaDB side: the text there becomes the other one.
		maria, where := f.source, "source"
		if env.ShardFlavor == testenv.MariaDBFlavor {
			maria, where = nil, "shards"
		}
		for i, doc := range crossJSON {
			if maria != nil {
				f.exec(maria, "UPDATE %s SET j = %s WHERE id = %d", f.q("docs"), sqlString(doc.normalized), i+1)
				continue
			}
			for _, s := range f.shards {
				f.exec(s, "UPDATE %s SET j = %s WHERE id = %d", f.q("docs"), sqlString(doc.normalized), i+1)
			}
		}
		if rep := f.run(Options{}); rep.Status != StatusConsistent {
			t.Fatalf("after respelling the documents on the MariaDB %s: %v", where, describe(f, rep))
		}
		o := f.owner("docs", routeValue([]byte("3"), false))[0]
		f.exec(f.shards[o], `UPDATE %s SET j = '{"a": 3}' WHERE id = 3`, f.q("docs"))
		o2 := f.owner("docs", routeValue([]byte("4"), false))[0]
		// The next double after the source's: one bit apart.
		next := math.Nextafter(-1.35429804664959e-10*4, 0)
		if _, err := f.shards[o2].Exec("UPDATE "+f.q("docs")+" SET g = ? WHERE id = 4", next); err != nil {
			t.Fatal(err)
		}
		want := describeWant(f, []wantDrift{{Changed, o, 3, "j"}, {Changed, o2, 4, "g"}})
		if got := describe(f, f.run(Options{})); strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("reported %v, want %v", got, want)
		}
	})
}

func sqlString(s string) string {
	return "'" + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), `'`, `''`) + "'"
}
