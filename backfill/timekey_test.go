package backfill

import (
	"fmt"
	"testing"
	"time"

	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/internal/testenv"
)

// TestTimeKeysBoundChunksExactly copies a table keyed by TIME one row per chunk, so that
// every key is a chunk boundary bound back to the server. MySQL 9.7 reads some strings
// bound to CAST(? AS TIME) wrongly ("01:00:00.500" as 05:00:00, "153:01:06.021" as
// 21:00:00): a boundary read too high skips the rows below it, one read too low copies
// rows again. Every row must arrive, on every flavor.
func TestTimeKeysBoundChunksExactly(t *testing.T) {
	testenv.EachFlavor(t, func(t *testing.T, e testenv.Env) {
		spec := tableSpec{"clock", "t TIME(3) NOT NULL PRIMARY KEY, v INT NOT NULL", broadcast}
		w := newWorld(t, e, []tableSpec{spec}, func(c *config.Config) { c.Backfill.ChunkSize = 1 })
		var keys []string
		for h := -3; h <= 160; h += 7 {
			for _, rest := range []string{"00:00.000", "00:00.500", "01:06.021", "09:03.008", "30:00.000", "59:59.999"} {
				keys = append(keys, fmt.Sprintf("%d:%s", h, rest))
			}
		}
		for i, k := range keys {
			if _, err := w.Source.Exec("INSERT INTO `"+w.DB+"`.clock VALUES (?, ?)", k, i); err != nil {
				t.Fatalf("insert %s: %v", k, err)
			}
		}
		p := w.start(Options{PollInterval: 100 * time.Millisecond})
		w.waitDone(t, p, 2*time.Minute)
		w.waitEqual(t, p, time.Minute, "clock")
	})
}
