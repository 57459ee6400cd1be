package backfill

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/internal/testenv"
)

// TestEveryKeyKindIsCopiedUnderWrites copies tables keyed by integers (negative too),
// composite keys, case-insensitive text, bytes, latin1 text, a date and an enum, and an
// empty table, in chunks of 50 rows while a writer inserts, updates and deletes rows of
// the same key ranges. Then a table is added to the configuration and the pipeline
// restarted, as an operator would: the new table is copied (this time with the MySQL
// method, a brief table lock around each snapshot) while the others keep streaming, and
// the tables copied before are not copied again.
func TestEveryKeyKindIsCopiedUnderWrites(t *testing.T) {
	testenv.EachFlavor(t, func(t *testing.T, e testenv.Env) {
		ks := kinds()
		var specs []tableSpec
		for _, k := range ks {
			specs = append(specs, k.spec)
		}
		// Throttled so that the copy of 12,000 rows takes seconds of writes.
		w := newWorld(t, e, specs, func(c *config.Config) { c.Backfill.ChunkSize, c.Backfill.MaxRowsPerSecond = 50, 4000 })
		// The table added later exists from the start, as in a monolith: only the
		// configuration changes.
		late := kind{
			spec:    tableSpec{"late", "id INT NOT NULL PRIMARY KEY, v VARCHAR(20) NOT NULL", hashOn("id")},
			key:     func(r *rand.Rand) []any { return []any{r.IntN(100000)} },
			row:     func(r *rand.Rand) []any { return []any{randomWord(r, []string{"x", "y"}, 8)} },
			keyCols: []string{"id"}, rowCols: []string{"v"},
		}
		w.create(late.spec)
		r := rand.New(rand.NewPCG(7, 7))
		seed(t, w.Source, w.DB, late, 3000, r)
		for _, k := range ks {
			seed(t, w.Source, w.DB, k, 1500, r)
		}
		wr := startWriter(t, w.Source, w.DB, ks, 4, 400)
		p := w.start(Options{PollInterval: 200 * time.Millisecond})
		w.waitDone(t, p, 2*time.Minute)

		var names []string
		for _, k := range ks {
			names = append(names, k.spec.name)
		}
		t.Run("each table equals the source once caught up", func(t *testing.T) {
			wr.halt(t)
			w.waitEqual(t, p, time.Minute, names...)
			t.Logf("%d changes written during the copy", wr.changes.Load())
			for _, k := range ks {
				st := p.status(w.table(k.spec.name))
				t.Logf("%s: %d rows in %d chunks, %d rows left out for a newer change in the stream", k.spec.name, st.Rows, st.Chunks, st.Superseded)
				if k.key == nil && (st.Rows != 0 || st.State != "done") {
					t.Errorf("empty table: status %+v", st)
				}
				if k.key != nil && st.Chunks < 10 {
					t.Errorf("%s copied in %d chunks: the test meant many small chunks", k.spec.name, st.Chunks)
				}
			}
		})

		t.Run("a table added to the configuration is copied while the others stream", func(t *testing.T) {
			before := map[string]TableStatus{}
			for _, s := range p.bf.Status() {
				before[s.Table] = s
			}
			if err := p.shutdown(); err != nil {
				t.Fatal(err)
			}
			// Writes to the new table while nothing captures it: the copy must bring them.
			wr0 := startWriter(t, w.Source, w.DB, []kind{late}, 2, 200)
			w.configure(late.spec)
			wr0.halt(t)
			all := append(ks, late)
			wr := startWriter(t, w.Source, w.DB, all, 4, 400)
			p := w.start(Options{PollInterval: 200 * time.Millisecond, LockTables: true})
			w.waitDone(t, p, 2*time.Minute)
			wr.halt(t)
			w.waitEqual(t, p, time.Minute, append(names, "late")...)
			for _, s := range p.bf.Status() {
				if s.ChunksCopied != 0 && s.Table != w.table("late") {
					t.Errorf("%s was copied again (%d chunks) after it was done", s.Table, s.ChunksCopied)
				}
				if b, ok := before[s.Table]; ok && (s.Rows != b.Rows || s.Chunks != b.Chunks) {
					t.Errorf("%s: progress changed from %+v to %+v", s.Table, b, s)
				}
			}
			if s := p.status(w.table("late")); s.Chunks < 10 || s.State != "done" {
				t.Errorf("late table: %+v", s)
			}
		})
	})
}
