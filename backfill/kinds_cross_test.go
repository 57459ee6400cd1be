package backfill

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/internal/testenv"
)

// TestEveryKeyKindIsCopiedAcrossProducts copies the tables of every key kind from a
// source of one product to shards of the other, in a collation both products share,
// while a writer changes them: each value type must read, travel and write back the same
// on the other product.
//
// Without JSON: a MySQL document streamed to a MariaDB shard arrives as compact text
// ({"a":1}) where MySQL shows {"a": 1}, which is the JSON values' own work.
func TestEveryKeyKindIsCopiedAcrossProducts(t *testing.T) {
	testenv.CrossFlavors(t, func(t *testing.T, e testenv.Env) {
		ks := kinds()
		for i := range ks {
			ks[i] = withoutColumn(ks[i], "j", "j JSON NULL")
		}
		w := newWorld(t, e, nil, func(c *config.Config) { c.Backfill.ChunkSize, c.Backfill.MaxRowsPerSecond = 50, 4000 })
		w.collate = " COLLATE=utf8mb4_general_ci"
		var specs []tableSpec
		var names []string
		for _, k := range ks {
			specs = append(specs, k.spec)
			names = append(names, k.spec.name)
		}
		w.addTables(specs...)
		r := rand.New(rand.NewPCG(7, 7))
		for _, k := range ks {
			seed(t, w.Source, w.DB, k, 1500, r)
		}
		wr := startWriter(t, w.Source, w.DB, ks, 4, 400)
		p := w.start(Options{PollInterval: 200 * time.Millisecond})
		w.waitDone(t, p, 2*time.Minute)
		wr.halt(t)
		w.waitEqual(t, p, time.Minute, names...)
		t.Logf("%d changes written during the copy", wr.changes.Load())
	})
}

// withoutColumn is k without its row column name, defined as def in its spec.
func withoutColumn(k kind, name, def string) kind {
	at := slices.Index(k.rowCols, name)
	if at < 0 {
		return k
	}
	k.spec.columns = strings.Replace(strings.Replace(k.spec.columns, ", "+def, "", 1), def+", ", "", 1)
	k.rowCols = slices.Delete(slices.Clone(k.rowCols), at, at+1)
	row := k.row
	k.row = func(r *rand.Rand) []any {
		v := row(r)
		return slices.Delete(v, at, at+1)
	}
	return k
}
