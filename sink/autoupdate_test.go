package sink

import (
	"testing"
	"time"

	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/event"
	"github.com/cleave-dev/cleave/internal/testenv"
)

// TestAnAutoUpdatedColumnKeepsItsValueWhenAChangeDoesNotCarryIt: a shard column with ON
// UPDATE CURRENT_TIMESTAMP is stamped by the shard's server whenever an upsert changes the
// row without assigning it. A change that does not carry the column (an event from before
// a schema change added it) must leave its value alone, not stamp the time of the apply.
func TestAnAutoUpdatedColumnKeepsItsValueWhenAChangeDoesNotCarryIt(t *testing.T) {
	testenv.EachFlavor(t, func(t *testing.T, e testenv.Env) {
		f := newFixture(t, fixtureOpts{env: e,
			ddl: []string{`CREATE TABLE notes (
				id BIGINT NOT NULL PRIMARY KEY,
				body VARCHAR(40) NOT NULL,
				touched TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6)
			) DEFAULT CHARSET=utf8mb4`},
			tables: []config.Table{{Name: "notes", Strategy: config.StrategyBroadcast}}})
		g := newGen(f, 12)
		const touched = "2001-02-03 04:05:06.123456"
		for id := int64(1); id <= 20; id++ {
			g.emit("notes", event.OpCreate, nil, event.Row{"id": num(id), "body": "first", "touched": touched})
		}
		g.flush()
		stop0, _ := f.runSink("s0", Options{})
		stop1, _ := f.runSink("s1", Options{})
		f.waitCaughtUp(2 * time.Minute)
		// The rows are on the shards; now changes that do not carry the column.
		for id := int64(1); id <= 20; id++ {
			g.emit("notes", event.OpUpdate, event.Row{"id": num(id), "body": "first"}, event.Row{"id": num(id), "body": "second"})
		}
		g.flush()
		f.waitCaughtUp(2 * time.Minute)
		stopAll(t, stop0, stop1)
		for i, sh := range f.shards {
			rows, err := sh.Query("SELECT id, body, CAST(touched AS CHAR) FROM `" + f.db + "`.notes ORDER BY id")
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for rows.Next() {
				var id int64
				var body, at string
				if err := rows.Scan(&id, &body, &at); err != nil {
					t.Fatal(err)
				}
				n++
				if body != "second" || at != touched {
					t.Errorf("shard%d row %d: body %q, touched %s; want second, %s", i, id, body, at, touched)
				}
			}
			rows.Close()
			if n != 20 {
				t.Errorf("shard%d holds %d rows, want 20", i, n)
			}
		}
	})
}
