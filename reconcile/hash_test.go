package reconcile

import (
	"context"
	"database/sql"
	"fmt"
	mrand "math/rand/v2"
	"strings"
	"testing"

	"github.com/cleave-dev/cleave/internal/testenv"
	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/schema"
)

const kindsDDL = `id INT NOT NULL PRIMARY KEY, i BIGINT NULL, u BIGINT UNSIGNED NULL, d DECIMAL(20,6) NULL,
	f FLOAT NULL, g DOUBLE NULL, dt DATE NULL, tm TIME(3) NULL, dtm DATETIME(6) NULL, ts TIMESTAMP(6) NULL,
	y YEAR NULL, s VARCHAR(20) COLLATE utf8mb4_general_ci NULL, c CHAR(8) NULL, l VARCHAR(20) CHARACTER SET latin1 NULL,
	b VARBINARY(20) NULL, bl BLOB NULL, bt BIT(10) NULL, e ENUM('a','b','c|d') NULL, st SET('x','y') NULL, j JSON NULL`

// scratch opens a fresh database on the server of dsn with the pinned session.
func scratch(t *testing.T, dsn string) (*sql.DB, string) {
	t.Helper()
	name := testenv.NewDatabase(t, dsn)
	db, err := mysqlx.Open(context.Background(), "source", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, name
}

func kindsTable(t *testing.T, dsn string) (*sql.DB, *schema.Table) {
	t.Helper()
	return kindsTableOf(t, dsn, kindsDDL)
}

func kindsTableOf(t *testing.T, dsn, ddl string) (*sql.DB, *schema.Table) {
	t.Helper()
	db, name := scratch(t, dsn)
	if _, err := db.Exec("CREATE TABLE " + mysqlx.QuoteTable(name, "k") + " (" + ddl + ")"); err != nil {
		t.Fatal(err)
	}
	def, err := schema.Load(context.Background(), db, name, "k")
	if err != nil {
		t.Fatal(err)
	}
	return db, def
}

func columnsOf(def *schema.Table) []*schema.Column {
	out := make([]*schema.Column, len(def.Columns))
	for i := range def.Columns {
		out[i] = &def.Columns[i]
	}
	return out
}

// hashesOf returns, per id, the server's row hash and the Go hash of the parts.
func hashesOf(t *testing.T, db *sql.DB, def *schema.Table, skipID bool) map[int][2]uint64 {
	t.Helper()
	cols := columnsOf(def)
	if skipID {
		cols = cols[1:]
	}
	parts := make([]string, len(cols))
	for i, c := range cols {
		parts[i] = partSQL(c)
	}
	rows, err := db.Query("SELECT id, " + RowHashSQL(cols) + ", " + strings.Join(parts, ",") + " FROM " + mysqlx.QuoteTable(def.DB, def.Name))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[int][2]uint64{}
	for rows.Next() {
		var id int
		var h uint64
		vals := make([]string, len(cols))
		dest := []any{&id, &h}
		for i := range vals {
			dest = append(dest, &vals[i])
		}
		if err := rows.Scan(dest...); err != nil {
			t.Fatal(err)
		}
		out[id] = [2]uint64{h, RowHash(vals)}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// The server renders a NOT NULL column bare and a nullable one NULL-marked; the Go hash of
// the NULL-marked parts must agree with both.
func TestRowHashInGoAgreesWithTheServerOnRandomRows(t *testing.T) {
	testenv.EachFlavorDatabases(t, func(t *testing.T, env testenv.Env) {
		for _, tc := range []struct {
			name     string
			ddl      string
			nullable bool
		}{
			{"nullable columns, some NULL", kindsDDL, true},
			{"NOT NULL columns", notNull(kindsDDL), false},
		} {
			t.Run(tc.name, func(t *testing.T) { rowHashAgrees(t, env.SourceDSN, tc.ddl, tc.nullable) })
		}
	})
}

func notNull(ddl string) string {
	return strings.ReplaceAll(strings.TrimSuffix(ddl, " NULL"), " NULL,", " NOT NULL,") + " NOT NULL"
}

func rowHashAgrees(t *testing.T, dsn, ddl string, nullable bool) {
	db, def := kindsTableOf(t, dsn, ddl)
	if def.Columns[1].Nullable != nullable {
		t.Fatalf("column %s nullable = %v, want %v", def.Columns[1].Name, def.Columns[1].Nullable, nullable)
	}
	insertRandomKinds(t, db, def, nullable, 300)
	hashes := hashesOf(t, db, def, false)
	if len(hashes) != 300 {
		t.Fatalf("%d rows hashed, want 300", len(hashes))
	}
	for id, h := range hashes {
		if h[0] != h[1] {
			t.Errorf("row %d: server hash %016x, Go hash of the parts %016x", id, h[0], h[1])
		}
	}
}

// insertRandomKinds inserts rows 1..n of random values of every kind into a kindsDDL table;
// the same seed gives the same statements on every server.
func insertRandomKinds(t *testing.T, db *sql.DB, def *schema.Table, nullable bool, n int) {
	t.Helper()
	rng := mrand.New(mrand.NewPCG(1, 2))
	null := func(v string) string {
		if nullable && rng.IntN(6) == 0 {
			return "NULL"
		}
		return v
	}
	str := func() string {
		const alphabet = "ab |Zé\\'%_ "
		r := []rune(alphabet)
		var b strings.Builder
		for range rng.IntN(8) {
			b.WriteRune(r[rng.IntN(len(r))])
		}
		return strings.ReplaceAll(strings.ReplaceAll(b.String(), `\`, `\\`), `'`, `''`)
	}
	for id := 1; id <= n; id++ {
		q := fmt.Sprintf("INSERT INTO %s VALUES (%d, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
			mysqlx.QuoteTable(def.DB, def.Name), id,
			null(fmt.Sprint(int64(rng.Uint64()))), null(fmt.Sprint(rng.Uint64())),
			null(fmt.Sprintf("%d.%06d", rng.IntN(1e9)-5e8, rng.IntN(1e6))),
			null(fmt.Sprint(rng.Float32()*1e6)), null(fmt.Sprintf("%v", rng.NormFloat64()*1e10)),
			null(fmt.Sprintf("'%04d-%02d-%02d'", 1000+rng.IntN(8000), 1+rng.IntN(12), 1+rng.IntN(28))),
			null(fmt.Sprintf("'%d:%02d:%02d.%03d'", rng.IntN(838)-400, rng.IntN(60), rng.IntN(60), rng.IntN(1000))),
			null(fmt.Sprintf("'2024-02-29 23:59:59.%06d'", rng.IntN(1e6))),
			null(fmt.Sprintf("FROM_UNIXTIME(%d.%06d)", 1+rng.IntN(2e9), rng.IntN(1e6))),
			null(fmt.Sprint(1901+rng.IntN(254))),
			null("'"+str()+"'"), null("'"+str()+"'"), null("'"+str()+"'"),
			null(fmt.Sprintf("X'%016x'", rng.Uint64())), null(fmt.Sprintf("X'%08x00%08x'", rng.Uint32(), rng.Uint32())),
			null(fmt.Sprintf("b'%b'", rng.IntN(1024))), null([]string{"'a'", "'b'", "'c|d'"}[rng.IntN(3)]),
			null([]string{"''", "'x'", "'y'", "'x,y'"}[rng.IntN(4)]), null(`'{"k": [1, "two"]}'`))
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

func TestRowHashTellsApartValuesThatLookAlike(t *testing.T) {
	testenv.EachFlavorDatabases(t, func(t *testing.T, env testenv.Env) { rowHashTellsApart(t, env.SourceDSN) })
}

func rowHashTellsApart(t *testing.T, dsn string) {
	db, def := kindsTable(t, dsn)
	table := mysqlx.QuoteTable(def.DB, def.Name)
	for n, tc := range []struct {
		name   string
		cols   string
		a, b   string
		differ bool
	}{
		{"NULL and the empty string", "s", "NULL", "''", true},
		{"a trailing space in a VARCHAR", "s", "'abc'", "'abc '", true},
		{"case under a case-insensitive collation", "s", "'abc'", "'ABC'", true},
		{"a NULL moving to the next column", "s, c", "'a', NULL", "NULL, 'a'", true},
		{"a separator inside a value", "s, c", "'a|b', 'c'", "'a', 'b|c'", true},
		{"DATETIME(6) microseconds", "dtm", "'2024-01-01 00:00:00.000001'", "'2024-01-01 00:00:00.000000'", true},
		{"TIME fractions", "tm", "'-00:00:01.001'", "'-00:00:01.002'", true},
		{"the last digit of a DECIMAL", "d", "'12.345678'", "'12.345679'", true},
		{"two doubles one bit apart", "g", "0.30000000000000004", "0.3", true},
		{"two floats one bit apart", "f", "0.1", "0.10000001", true},
		{"BIGINT UNSIGNED max and one below", "u", "18446744073709551615", "18446744073709551614", true},
		{"BIGINT min and max", "i", "-9223372036854775808", "9223372036854775807", true},
		{"BLOB bytes", "bl", "X'0001'", "X'0002'", true},
		{"a BLOB and the same bytes plus a zero", "bl", "X'00'", "X'0000'", true},
		{"latin1 bytes", "l", "'é'", "'e'", true},
		{"ENUM labels", "e", "'a'", "'b'", true},
		{"BIT values", "bt", "b'1'", "b'10'", true},
		{"TIMESTAMP instants one microsecond apart", "ts", "'2024-03-31 01:00:00.000000'", "'2024-03-31 01:00:00.000001'", true},
		{"the same values", "s, d", "'x', '1.5'", "'x', '1.500000'", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			idA, idB := 1000+2*n, 1001+2*n
			for _, r := range []struct {
				id   int
				vals string
			}{{idA, tc.a}, {idB, tc.b}} {
				if _, err := db.Exec(fmt.Sprintf("INSERT INTO %s (id, %s) VALUES (%d, %s)", table, tc.cols, r.id, r.vals)); err != nil {
					t.Fatal(err)
				}
			}
			h := hashesOf(t, db, def, true)
			if got := h[idA][0] != h[idB][0]; got != tc.differ {
				t.Errorf("hashes %016x and %016x: differ = %v, want %v", h[idA][0], h[idB][0], got, tc.differ)
			}
			if h[idA][0] != h[idA][1] || h[idB][0] != h[idB][1] {
				t.Errorf("Go and server disagree: %x", h)
			}
		})
	}
}
