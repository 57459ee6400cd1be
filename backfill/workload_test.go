package backfill

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cleave-dev/cleave/mysqlx"
)

// kind is a test table with its key generator and random row contents, so that a writer
// can insert, update and delete rows of it as an application would.
type kind struct {
	spec tableSpec
	// key returns a random primary key (its column values).
	key func(r *rand.Rand) []any
	// row returns random values for the non-key columns.
	row func(r *rand.Rand) []any
	// keyCols and rowCols name them.
	keyCols, rowCols []string
}

func (k kind) insertSQL(db string) string {
	cols := append(append([]string(nil), k.keyCols...), k.rowCols...)
	return fmt.Sprintf("INSERT IGNORE INTO %s (%s) VALUES (%s)", mysqlx.QuoteTable(db, k.spec.name),
		strings.Join(cols, ", "), strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", "))
}

func (k kind) where() string {
	var w []string
	for _, c := range k.keyCols {
		w = append(w, c+" = ?")
	}
	return strings.Join(w, " AND ")
}

func (k kind) updateSQL(db string) string {
	var set []string
	for _, c := range k.rowCols {
		set = append(set, c+" = ?")
	}
	return fmt.Sprintf("UPDATE %s SET %s WHERE %s", mysqlx.QuoteTable(db, k.spec.name), strings.Join(set, ", "), k.where())
}

func (k kind) deleteSQL(db string) string {
	return fmt.Sprintf("DELETE FROM %s WHERE %s", mysqlx.QuoteTable(db, k.spec.name), k.where())
}

func randomWord(r *rand.Rand, alphabet []string, n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteString(alphabet[r.IntN(len(alphabet))])
	}
	return b.String()
}

// kinds are the key shapes the backfill must page through: integers (negative too),
// composite, text in a case-insensitive collation, bytes, latin1 text, a date/enum key
// with columns of every other kind, and an empty table.
func kinds() []kind {
	letters := []string{"a", "B", "c", "Ä", "ß", "é", "z", "0", "9", " ", "_", "🎉", "ø"}
	latin := []string{"a", "B", "é", "Å", "€", "z", "ÿ", " ", "_"}
	note := func(r *rand.Rand) any {
		switch r.IntN(4) {
		case 0:
			return nil
		case 1:
			return ""
		}
		return randomWord(r, letters, r.IntN(20))
	}
	return []kind{
		{
			spec:    tableSpec{"ints", "id BIGINT NOT NULL PRIMARY KEY, v VARCHAR(64) NULL, n INT NOT NULL", hashOn("id")},
			key:     func(r *rand.Rand) []any { return []any{r.Int64N(2_000_000) - 1_000_000} },
			row:     func(r *rand.Rand) []any { return []any{note(r), r.IntN(1000)} },
			keyCols: []string{"id"}, rowCols: []string{"v", "n"},
		},
		{
			spec: tableSpec{"comp", "region CHAR(2) NOT NULL, id INT NOT NULL, amount DECIMAL(30,10) NOT NULL, PRIMARY KEY (region, id)", hashOn("region")},
			key: func(r *rand.Rand) []any {
				return []any{[]string{"eu", "us", "ap", "af", "sa"}[r.IntN(5)], r.IntN(4000) - 2000}
			},
			row:     func(r *rand.Rand) []any { return []any{fmt.Sprintf("%d.%010d", r.IntN(1e9)-5e8, r.IntN(1e9))} },
			keyCols: []string{"region", "id"}, rowCols: []string{"amount"},
		},
		{
			spec:    tableSpec{"strs", "code VARCHAR(40) COLLATE utf8mb4_general_ci NOT NULL PRIMARY KEY, payload TEXT NULL", hashOn("code")},
			key:     func(r *rand.Rand) []any { return []any{randomWord(r, letters, 1+r.IntN(8))} },
			row:     func(r *rand.Rand) []any { return []any{note(r)} },
			keyCols: []string{"code"}, rowCols: []string{"payload"},
		},
		{
			spec: tableSpec{"bins", "k VARBINARY(16) NOT NULL PRIMARY KEY, fixed BINARY(4) NOT NULL, data BLOB NULL", hashOn("k")},
			key: func(r *rand.Rand) []any {
				b := make([]byte, 1+r.IntN(6))
				for i := range b {
					b[i] = []byte{0, 1, 0x7f, 0x80, 0xff, 'a'}[r.IntN(6)]
				}
				return []any{b}
			},
			row: func(r *rand.Rand) []any {
				return []any{[]byte{byte(r.IntN(256)), 0, 0, 0}[:1+r.IntN(4)], []byte(randomWord(r, letters, r.IntN(10)))}
			},
			keyCols: []string{"k"}, rowCols: []string{"fixed", "data"},
		},
		{
			spec:    tableSpec{"lat", "name VARCHAR(32) CHARACTER SET latin1 NOT NULL PRIMARY KEY, v INT NOT NULL", hashOn("name")},
			key:     func(r *rand.Rand) []any { return []any{randomWord(r, latin, 1+r.IntN(6))} },
			row:     func(r *rand.Rand) []any { return []any{r.IntN(1 << 20)} },
			keyCols: []string{"name"}, rowCols: []string{"v"},
		},
		{
			spec: tableSpec{"misc", "d DATE NOT NULL, e ENUM('lo','mid','hi') NOT NULL, f FLOAT NULL, dbl DOUBLE NULL, t TIME(3) NULL, b BIT(8) NULL, s SET('x','y','z') NULL, j JSON NULL, ts TIMESTAMP(6) NULL, dec2 DECIMAL(30,10) NULL, y YEAR NULL, PRIMARY KEY (d, e)", broadcast},
			key: func(r *rand.Rand) []any {
				return []any{time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, r.IntN(1500)).Format("2006-01-02"), []string{"lo", "mid", "hi"}[r.IntN(3)]}
			},
			row: func(r *rand.Rand) []any {
				return []any{r.Float32() * 1000, r.NormFloat64(), fmt.Sprintf("%d:%02d:%02d.%03d", r.IntN(838), r.IntN(60), r.IntN(60), r.IntN(1000)),
					r.IntN(256), []string{"", "x", "y,z", "x,y,z"}[r.IntN(4)], fmt.Sprintf(`{"a": %d, "b": "%s"}`, r.IntN(100), randomWord(r, letters, 3)),
					time.Unix(1e9+r.Int64N(1e9), r.Int64N(1e9)).UTC().Format("2006-01-02 15:04:05.000000"),
					fmt.Sprintf("%d.%010d", r.IntN(1e9), r.IntN(1e9)), 1901 + r.IntN(255)}
			},
			keyCols: []string{"d", "e"}, rowCols: []string{"f", "dbl", "t", "b", "s", "j", "ts", "dec2", "y"},
		},
		{
			spec:    tableSpec{"empty", "id INT NOT NULL PRIMARY KEY, v INT NULL", pinTo("shard1")},
			keyCols: []string{"id"}, rowCols: []string{"v"},
		},
	}
}

// seed inserts up to n random rows into the table of k.
func seed(t testing.TB, db *sql.DB, database string, k kind, n int, r *rand.Rand) {
	t.Helper()
	if k.key == nil || n == 0 {
		return
	}
	cols := append(append([]string(nil), k.keyCols...), k.rowCols...)
	tuple := "(" + strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", ") + ")"
	for done := 0; done < n; {
		batch := min(500, n-done)
		var args []any
		for i := 0; i < batch; i++ {
			args = append(append(args, k.key(r)...), k.row(r)...)
		}
		q := fmt.Sprintf("INSERT IGNORE INTO %s (%s) VALUES %s", mysqlx.QuoteTable(database, k.spec.name), strings.Join(cols, ", "),
			strings.TrimSuffix(strings.Repeat(tuple+", ", batch), ", "))
		if _, err := db.Exec(q, args...); err != nil {
			t.Fatalf("seed %s: %v", k.spec.name, err)
		}
		done += batch
	}
}

// writer changes random rows of the kinds until stopped: inserts, updates and deletes
// (a delete of a random key often hits nothing; an insert of an existing key is ignored).
type writer struct {
	db       *sql.DB
	database string
	kinds    []kind
	changes  atomic.Int64
	stop     context.CancelFunc
	wg       sync.WaitGroup
	err      atomic.Pointer[error]
}

func startWriter(t testing.TB, db *sql.DB, database string, ks []kind, workers int, perSecond int) *writer {
	ctx, cancel := context.WithCancel(context.Background())
	w := &writer{db: db, database: database, kinds: ks, stop: cancel}
	var pace <-chan time.Time
	if perSecond > 0 {
		tick := time.NewTicker(time.Second / time.Duration(perSecond))
		t.Cleanup(tick.Stop)
		pace = tick.C
	}
	for i := 0; i < workers; i++ {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			r := rand.New(rand.NewPCG(uint64(i), 99))
			for ctx.Err() == nil {
				if pace != nil {
					select {
					case <-ctx.Done():
						return
					case <-pace:
					}
				}
				k := ks[r.IntN(len(ks))]
				if k.key == nil {
					continue
				}
				var q string
				var args []any
				switch p := r.IntN(10); {
				case p < 4:
					q, args = k.insertSQL(database), append(k.key(r), k.row(r)...)
				case p < 8:
					q, args = k.updateSQL(database), append(k.row(r), k.key(r)...)
				default:
					q, args = k.deleteSQL(database), k.key(r)
				}
				if _, err := db.ExecContext(ctx, q, args...); err != nil {
					if ctx.Err() == nil && !mysqlx.Retryable(err) {
						e := fmt.Errorf("%s: %w", q, err)
						w.err.Store(&e)
						return
					}
					continue
				}
				w.changes.Add(1)
			}
		}()
	}
	t.Cleanup(func() { w.halt(t) })
	return w
}

// halt stops the writer and fails the test if a write failed.
func (w *writer) halt(t testing.TB) {
	t.Helper()
	w.stop()
	w.wg.Wait()
	if e := w.err.Load(); e != nil {
		t.Fatalf("writer: %v", *e)
	}
}
