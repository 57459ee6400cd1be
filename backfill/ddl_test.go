package backfill

import (
	"testing"
	"time"

	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/internal/testenv"
)

// TestSchemaChangeDuringTheCopy adds a column to a table while it is copied, with
// ddl.policy propagate: the chunks read with the old definition that would follow the
// change in the stream are copied again with the new one, and once done the shards hold
// every row with every column, the new one too.
func TestSchemaChangeDuringTheCopy(t *testing.T) {
	testenv.EachFlavor(t, func(t *testing.T, e testenv.Env) {
		const rows, chunk = 30_000, 300
		w := newWorld(t, e, []tableSpec{{"items", itemsColumns, hashOn("id")}},
			func(c *config.Config) {
				c.DDL.Policy = config.DDLPropagate
				c.Backfill.ChunkSize, c.Backfill.MaxRowsPerSecond = chunk, 10000
			})
		seedItems(t, w, rows)
		table := w.table("items")
		p := w.start(Options{PollInterval: 200 * time.Millisecond})
		deadline := time.Now().Add(time.Minute)
		for p.status(table).Chunks < 20 {
			if err := p.failed(); err != nil {
				t.Fatal(err)
			}
			if time.Now().After(deadline) {
				t.Fatal("the copy did not get under way")
			}
			time.Sleep(20 * time.Millisecond)
		}
		if p.status(table).State == "done" {
			t.Fatal("the copy finished before the schema change: the test meant to change the table mid-copy")
		}
		w.exec("ALTER TABLE items ADD COLUMN extra INT NOT NULL DEFAULT 7",
			"UPDATE items SET extra = id % 100 WHERE id % 10 = 0")
		w.waitDone(t, p, 2*time.Minute)
		w.waitEqual(t, p, 2*time.Minute, "items")
		st := p.status(table)
		t.Logf("copied %d rows in %d chunks stored, %d chunk copies in this process", st.Rows, st.Chunks, st.ChunksCopied)
	})
}
