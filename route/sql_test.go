package route

import (
	"database/sql"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/cleave-dev/cleave/internal/testenv"
)

// scratchDB returns a connection to a fresh database on the server at dsn (dropped when the
// test ends) and its name.
func scratchDB(t *testing.T, dsn string) (*sql.DB, string) {
	t.Helper()
	name := testenv.NewDatabase(t, dsn)
	cfg, err := mysql.ParseDSN(testenv.DSNWithDB(t, dsn, name))
	if err != nil {
		t.Fatal(err)
	}
	// Strings travel as utf8mb4 so that the bytes stored are the bytes Go hashes.
	cfg.Collation = "utf8mb4_bin"
	return testenv.OpenDB(t, cfg.FormatDSN()), name
}

// keyRow is one row of shard keys, each column nil for NULL, with the canonical bytes Go
// routes on.
type keyRow struct {
	id   int
	vals map[string]*string // column -> canonical text, nil for NULL
}

var hashColumns = []string{"i", "u", "n", "s", "b", "d", "t"}

func randomKeyRow(rng *mrand.Rand, id int) keyRow {
	ptr := func(s string) *string { return &s }
	r := keyRow{id: id, vals: map[string]*string{}}
	// i BIGINT: the limits, small negatives, anything.
	switch id % 4 {
	case 0:
		r.vals["i"] = ptr(strconv.FormatInt([]int64{math.MinInt64, math.MaxInt64, -1, 0}[rng.IntN(4)], 10))
	case 1:
		r.vals["i"] = ptr(strconv.FormatInt(-rng.Int64N(100000), 10))
	default:
		r.vals["i"] = ptr(strconv.FormatInt(int64(rng.Uint64()), 10))
	}
	// u BIGINT UNSIGNED: up to 2^64-1.
	if id%5 == 0 {
		r.vals["u"] = ptr(strconv.FormatUint(math.MaxUint64-rng.Uint64N(2), 10))
	} else {
		r.vals["u"] = ptr(strconv.FormatUint(rng.Uint64(), 10))
	}
	// n INT
	r.vals["n"] = ptr(strconv.FormatInt(int64(int32(rng.Uint32())), 10))
	// s VARCHAR utf8mb4: emoji, accents, spaces at either end, the empty string.
	runes := []rune("aZ09 éßжд中文🙂🚀👩‍💻'\"\\%_\t")
	rs := make([]rune, rng.IntN(20))
	for i := range rs {
		rs[i] = runes[rng.IntN(len(runes))]
	}
	r.vals["s"] = ptr(string(rs))
	// b VARBINARY: any bytes, NUL and 0xff included, trailing zeros kept.
	bs := make([]byte, rng.IntN(24))
	for i := range bs {
		bs[i] = byte(rng.Uint32())
	}
	r.vals["b"] = ptr(string(bs))
	// d DECIMAL(30,4): MySQL renders exactly four fraction digits.
	intPart, frac := rng.Uint64N(1_000_000_000_000), rng.IntN(10000)
	dec := fmt.Sprintf("%d.%04d", intPart, frac)
	if rng.IntN(2) == 0 && (intPart != 0 || frac != 0) {
		dec = "-" + dec
	}
	r.vals["d"] = ptr(dec)
	// t DATETIME(6): six fraction digits always.
	ts := time.Date(1000+rng.IntN(8999), time.Month(1+rng.IntN(12)), 1+rng.IntN(28), rng.IntN(24), rng.IntN(60), rng.IntN(60), rng.IntN(1_000_000)*1000, time.UTC)
	r.vals["t"] = ptr(ts.Format("2006-01-02 15:04:05.000000"))
	// Every column is NULL in some rows.
	for _, c := range hashColumns {
		if rng.IntN(10) == 0 {
			r.vals[c] = nil
		}
	}
	return r
}

func (r keyRow) value(col string) Value {
	if v := r.vals[col]; v != nil {
		return StringValue(*v)
	}
	return NullValue()
}

// TestSQLHashExprMatchesHashKey proves that the server computes the hash Go routes on, for
// every kind of shard key column, so the checker can select a shard's rows on the server.
// SQLHashExpr calls MD5(): MariaDB has it built in; MySQL 9.6+ only with
// component_classic_hashing, installed here on a private server (a stock MySQL 9 source
// leaves membership to Go, which this test does not need to prove).
func TestSQLHashExprMatchesHashKey(t *testing.T) {
	t.Run("mariadb", func(t *testing.T) {
		testenv.SkipUnlessInMatrix(t, testenv.MariaDBFlavor)
		sqlHashMatchesHashKey(t, testenv.DatabasesFor(t, testenv.MariaDBFlavor, testenv.MariaDBFlavor).SourceDSN)
	})
	t.Run("mysql with component_classic_hashing", func(t *testing.T) {
		testenv.SkipUnlessInMatrix(t, testenv.MySQLFlavor)
		sqlHashMatchesHashKey(t, testenv.StartMySQLWithClassicHashing(t, testenv.ServerOptions{DisableBinlog: true}).DSN())
	})
}

func sqlHashMatchesHashKey(t *testing.T, dsn string) {
	db, dbName := scratchDB(t, dsn)
	table := "`" + dbName + "`.`keys`"
	_, err := db.Exec(`CREATE TABLE ` + table + ` (
		id INT PRIMARY KEY,
		i BIGINT NULL,
		u BIGINT UNSIGNED NULL,
		n INT NULL,
		s VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
		b VARBINARY(255) NULL,
		d DECIMAL(30,4) NULL,
		t DATETIME(6) NULL)`)
	if err != nil {
		t.Fatal(err)
	}

	rng := mrand.New(mrand.NewPCG(1, 2))
	rows := make([]keyRow, 0, 220)
	// The edge cases first, then random rows.
	edge := []map[string]*string{{}, {"s": new(""), "b": new(""), "i": new("0"), "u": new("0"), "n": new("0")}}
	for i, vals := range edge {
		rows = append(rows, keyRow{id: i + 1, vals: vals})
	}
	for id := len(rows) + 1; len(rows) < 220; id++ {
		rows = append(rows, randomKeyRow(rng, id))
	}
	insert := `INSERT INTO ` + table + ` (id, i, u, n, s, b, d, t) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`
	for _, r := range rows {
		args := []any{r.id}
		for _, c := range hashColumns {
			switch v := r.vals[c]; {
			case v == nil:
				args = append(args, nil)
			case c == "b":
				args = append(args, []byte(*v))
			default:
				args = append(args, *v)
			}
		}
		if _, err := db.Exec(insert, args...); err != nil {
			t.Fatalf("insert row %d: %v", r.id, err)
		}
	}

	t.Run("the server hashes every column the way HashKey does", func(t *testing.T) {
		query := "SELECT id"
		for _, c := range hashColumns {
			query += ", " + SQLHashExpr("`"+c+"`")
		}
		for _, c := range hashColumns {
			query += ", CAST(`" + c + "` AS BINARY)"
		}
		res, err := db.Query(query + " FROM " + table + " ORDER BY id")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Close()
		n := 0
		for res.Next() {
			var id int
			hashes := make([]uint64, len(hashColumns))
			texts := make([]sql.RawBytes, len(hashColumns))
			dest := []any{&id}
			for i := range hashes {
				dest = append(dest, &hashes[i])
			}
			for i := range texts {
				dest = append(dest, &texts[i])
			}
			if err := res.Scan(dest...); err != nil {
				t.Fatal(err)
			}
			r := rows[id-1]
			for i, c := range hashColumns {
				v := r.value(c)
				// The canonical form this test assumes is what the server renders.
				if !v.Null && string(texts[i]) != string(v.Bytes) {
					t.Errorf("row %d column %s: server renders %q, test assumed %q", id, c, texts[i], v.Bytes)
				}
				want := uint64(0)
				if !v.Null {
					want = HashKey(v.Bytes)
				}
				if hashes[i] != want {
					t.Errorf("row %d column %s = %s: SQL hash %#016x, HashKey %#016x", id, c, v, hashes[i], want)
				}
			}
			n++
		}
		if err := res.Err(); err != nil {
			t.Fatal(err)
		}
		if n != len(rows) {
			t.Fatalf("read %d rows, inserted %d", n, len(rows))
		}
	})

	t.Run("the server selects exactly the rows Go routes to each shard", func(t *testing.T) {
		for _, n := range []int{1, 2, 3} {
			r := mustNew(t, evenShards(n), map[string]TableSpec{"keys": {Strategy: Hash}})
			for _, col := range []string{"u", "s", "b"} {
				for idx, sh := range r.Shards() {
					var want []int
					for _, row := range rows {
						if got, _ := r.Route("keys", row.value(col)); got[0] == idx {
							want = append(want, row.id)
						}
					}
					cond, err := TableSpec{Strategy: Hash}.MemberSQL("`"+col+"`", r.Shards(), idx)
					if err != nil {
						t.Fatal(err)
					}
					got := queryIDs(t, db, "SELECT id FROM "+table+" WHERE "+cond+" ORDER BY id")
					if !slices.Equal(got, want) {
						t.Errorf("%d shards, column %s, shard %s (%s): server selects %v, Go routes %v",
							n, col, sh.Name, FormatKeyRange(sh.Start, sh.End), got, want)
					}
				}
			}
		}
	})
}

func queryIDs(t *testing.T, db *sql.DB, query string) []int {
	t.Helper()
	res, err := db.Query(query)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	defer res.Close()
	var ids []int
	for res.Next() {
		var id int
		if err := res.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	return ids
}
