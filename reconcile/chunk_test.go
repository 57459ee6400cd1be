package reconcile

import (
	"context"
	"database/sql"
	"fmt"
	mrand "math/rand/v2"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/internal/testenv"
	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/schema"
)

func TestRangeConditionsUseTheExpandedFormForCompositeKeys(t *testing.T) {
	ti := &tableInfo{}
	for _, c := range []schema.Column{
		{Name: "a", Kind: schema.KindInt},
		{Name: "b", Kind: schema.KindString, Charset: "utf8mb4", Collation: "utf8mb4_general_ci"},
	} {
		k, err := newKeyCol(&c)
		if err != nil {
			t.Fatal(err)
		}
		ti.keys = append(ti.keys, k)
	}
	where, args, err := ti.where(keyRange{Lower: [][]byte{[]byte("-3"), []byte("x")}, Upper: [][]byte{[]byte("7"), []byte("é")}})
	if err != nil {
		t.Fatal(err)
	}
	b := "CONVERT(UNHEX(?) USING utf8mb4) COLLATE utf8mb4_general_ci"
	want := "((`a` > ?) OR (`a` = ? AND `b` > " + b + ")) AND ((`a` < ?) OR (`a` = ? AND `b` <= " + b + "))"
	if where != want {
		t.Errorf("where:\n got %s\nwant %s", where, want)
	}
	if got := fmt.Sprint(args); got != "[-3 -3 78 7 7 c3a9]" {
		t.Errorf("args %s", got)
	}
	if _, _, err := ti.where(keyRange{Lower: [][]byte{[]byte("x1"), []byte("")}}); err == nil {
		t.Error("a non-integer bound of an integer key was accepted")
	}
}

func TestAdaptKeepsChunksNearTheTargetTimeWithinFactorTwo(t *testing.T) {
	target := 250 * time.Millisecond
	for _, tc := range []struct {
		size    int
		elapsed time.Duration
		want    int
	}{
		{1000, 125 * time.Millisecond, 2000},
		{1000, 10 * time.Millisecond, 2000},
		{1000, 500 * time.Millisecond, 500},
		{1000, 5 * time.Second, 500},
		{1000, 250 * time.Millisecond, 1000},
		{150, 5 * time.Second, minChunk},
		{maxChunk, time.Millisecond, maxChunk},
	} {
		if got := adapt(tc.size, tc.elapsed, target); got != tc.want {
			t.Errorf("adapt(%d, %s) = %d, want %d", tc.size, tc.elapsed, got, tc.want)
		}
	}
}

// TestChunkBoundariesCoverCompositeKeysExactlyOnce pages through a table whose key mixes a
// negative integer, a case-insensitive string and binary bytes, with many chunk sizes, and
// checks that the chunks, concatenated, are exactly the table in key order and that every
// chunk but the last has exactly the asked size.
func TestChunkBoundariesCoverCompositeKeysExactlyOnce(t *testing.T) {
	testenv.EachFlavorDatabases(t, func(t *testing.T, env testenv.Env) { chunkBoundariesCover(t, env.SourceDSN) })
}

func chunkBoundariesCover(t *testing.T, dsn string) {
	db, name := scratch(t, dsn)
	table := mysqlx.QuoteTable(name, "ck")
	if _, err := db.Exec("CREATE TABLE " + table + ` (a INT NOT NULL, b VARCHAR(10) COLLATE utf8mb4_general_ci NOT NULL,
		c VARBINARY(4) NOT NULL, v INT, PRIMARY KEY (a, b, c))`); err != nil {
		t.Fatal(err)
	}
	rng := mrand.New(mrand.NewPCG(7, 9))
	words := []string{"", "a", "A", "a ", "b", "ä", "é", "e", "z", "Zz", "mid", "|"}
	var vals []string
	for range 3000 {
		c := make([]byte, rng.IntN(4))
		for i := range c {
			c[i] = []byte{0, 1, 0x7f, 0x80, 0xff}[rng.IntN(5)]
		}
		vals = append(vals, fmt.Sprintf("(%d, '%s', X'%x', 1)", rng.IntN(11)-5, words[rng.IntN(len(words))], c))
	}
	if _, err := db.Exec("INSERT IGNORE INTO " + table + " VALUES " + strings.Join(vals, ",")); err != nil {
		t.Fatal(err)
	}
	ti, err := loadTable(context.Background(), &config.Table{Name: name + ".ck", Strategy: "broadcast"}, db, nil, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	c := &Checker{source: db, log: zap.NewNop()}
	all := keysIn(t, db, ti, keyRange{})
	if len(all) < 300 {
		t.Fatalf("only %d distinct keys", len(all))
	}
	for _, size := range []int{1, 2, 7, 100, len(all) - 1, len(all), len(all) + 1} {
		t.Run(fmt.Sprintf("chunks of %d", size), func(t *testing.T) {
			var got []string
			var lower [][]byte
			for chunks := 0; ; chunks++ {
				if chunks > len(all)+1 {
					t.Fatal("paging does not end")
				}
				upper, err := c.boundary(context.Background(), ti, lower, size)
				if err != nil {
					t.Fatal(err)
				}
				part := keysIn(t, db, ti, keyRange{Lower: lower, Upper: upper})
				if upper != nil && len(part) != size {
					t.Fatalf("chunk %d holds %d rows, want %d", chunks, len(part), size)
				}
				got = append(got, part...)
				if upper == nil {
					break
				}
				lower = upper
			}
			if strings.Join(got, "\n") != strings.Join(all, "\n") {
				t.Fatalf("chunks cover %d keys, the table has %d (or the order differs)", len(got), len(all))
			}
		})
	}
}

func keysIn(t *testing.T, db *sql.DB, ti *tableInfo, r keyRange) []string {
	t.Helper()
	where, args, err := ti.where(r)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := db.Query("SELECT "+ti.keySelect()+" FROM "+ti.quoted+" WHERE "+where+" ORDER BY "+ti.keyList(), args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		k, err := scanKey(rows, len(ti.keys), 0)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%q", k))
	}
	return out
}
