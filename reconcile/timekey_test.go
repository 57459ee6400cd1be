package reconcile

import (
	"fmt"
	"testing"

	"github.com/cleave-dev/cleave/internal/testenv"
)

// TestTimeKeysBoundChunksExactly checks a table keyed by TIME one row per chunk, so that
// every key is a chunk boundary bound back to the servers. MySQL 9.7 reads some strings
// bound to CAST(? AS TIME) wrongly ("01:00:00.500" as 05:00:00): a boundary read too high
// leaves the rows below it unchecked. A change to every row on a shard must be found
// exactly once per row.
func TestTimeKeysBoundChunksExactly(t *testing.T) {
	testenv.EachFlavorDatabases(t, func(t *testing.T, env testenv.Env) {
		f := newFixture(t, env, fixtureTable{name: "clock", strategy: "broadcast",
			ddl: "t TIME(3) NOT NULL PRIMARY KEY, v INT NOT NULL"})
		n := 0
		for h := -3; h <= 160; h += 7 {
			for _, rest := range []string{"00:00.000", "00:00.500", "01:06.021", "09:03.008", "30:00.000", "59:59.999"} {
				f.exec(f.source, "INSERT INTO %s VALUES ('%d:%s', %d)", f.q("clock"), h, rest, n)
				n++
			}
		}
		f.copyRouted("clock", "")
		if rep := f.run(Options{ChunkSize: 1}); rep.Status != StatusConsistent {
			t.Fatalf("before the change: %v", describe(f, rep))
		}
		f.exec(f.shards[0], "UPDATE %s SET v = v + 1", f.q("clock"))
		rep := f.run(Options{ChunkSize: 1})
		got := 0
		for _, d := range describeAll(rep) {
			if len(d) > 0 {
				got++
			}
		}
		if got != n {
			t.Fatalf("found %d changed rows, want all %d: %s", got, n, fmt.Sprint(describeAll(rep)))
		}
	})
}
