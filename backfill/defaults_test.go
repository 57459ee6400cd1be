package backfill

import (
	"fmt"
	"testing"
	"time"

	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/internal/testenv"
)

// stampsColumns holds columns whose values the server makes when a statement leaves them
// out: DEFAULT CURRENT_TIMESTAMP (which MySQL marks DEFAULT_GENERATED), ON UPDATE
// CURRENT_TIMESTAMP, expression defaults, and truly generated columns beside them. Strings
// are in a collation both products share, so that shards of the other product take them.
const stampsColumns = `id BIGINT NOT NULL PRIMARY KEY,
	v VARCHAR(20) COLLATE utf8mb4_bin NOT NULL,
	created TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
	updated TIMESTAMP(6) NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
	seen DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
	stamp TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
	day DATE NOT NULL DEFAULT (CURRENT_DATE),
	token VARCHAR(36) COLLATE utf8mb4_bin NOT NULL DEFAULT (UUID()),
	vlen INT AS (CHAR_LENGTH(v)) STORED,
	vup VARCHAR(20) COLLATE utf8mb4_bin AS (UPPER(v)) VIRTUAL`

// writeStamps inserts rows lo..hi into stamps, a third with every default, a third with
// old values written explicitly, a third with an explicit NULL, then updates some so that
// the source stamps its ON UPDATE columns, some with explicit old values, and some rows
// written before (touched again).
func writeStamps(t *testing.T, w *world, lo, hi int, before int) {
	t.Helper()
	for id := lo; id <= hi; id++ {
		switch id % 3 {
		case 0:
			w.exec(fmt.Sprintf("INSERT INTO stamps (id, v) VALUES (%d, 'd%d')", id, id))
		case 1:
			w.exec(fmt.Sprintf("INSERT INTO stamps (id, v, created, updated, seen, stamp, day, token) VALUES "+
				"(%d, 'e%d', '2001-02-03 04:05:06.123456', '2002-03-04 05:06:07.654321', '2003-04-05 06:07:08.5', '2004-05-06 07:08:09', '2005-06-07', 'token-%d')", id, id, id))
		case 2:
			w.exec(fmt.Sprintf("INSERT INTO stamps (id, v, updated) VALUES (%d, 'n%d', NULL)", id, id))
		}
	}
	w.exec(fmt.Sprintf("UPDATE stamps SET v = CONCAT(v, 'u') WHERE id BETWEEN %d AND %d AND id %% 4 = 0", lo, hi),
		fmt.Sprintf("UPDATE stamps SET v = CONCAT(v, 'x'), updated = '1999-12-31 23:59:59.999999', seen = '1998-01-01 00:00:00.000001', stamp = '2010-10-10 10:10:10' WHERE id BETWEEN %d AND %d AND id %% 4 = 1", lo, hi),
		fmt.Sprintf("UPDATE stamps SET created = '2000-01-01 00:00:00.000001', token = UUID() WHERE id BETWEEN %d AND %d AND id %% 5 = 0", lo, hi))
	if before > 0 {
		w.exec(fmt.Sprintf("UPDATE stamps SET v = CONCAT(v, 'a') WHERE id <= %d AND id %% 7 = 0", before))
	}
}

// TestServerMadeValuesAreCopiedAsTheSourceHoldsThem: the timestamps, dates and UUIDs the
// source's server made for rows (defaults, ON UPDATE stamps) or that were written
// explicitly reach the shards as the source holds them, through the backfill and through
// the stream, and never as the shard's own clock would make them; generated columns are
// the shard's to compute. An independent SELECT of every column compares them. Shards of
// the source's product and of the other product alike.
func TestServerMadeValuesAreCopiedAsTheSourceHoldsThem(t *testing.T) {
	run := func(t *testing.T, e testenv.Env) {
		w := newWorld(t, e, []tableSpec{{"stamps", stampsColumns, hashOn("id")}},
			func(c *config.Config) { c.Backfill.ChunkSize = 100 })
		writeStamps(t, w, 1, 300, 0) // copied by the backfill
		p := w.start(Options{PollInterval: 200 * time.Millisecond})
		w.waitDone(t, p, 2*time.Minute)
		writeStamps(t, w, 301, 600, 300) // streamed, and the copied rows changed again
		w.waitEqual(t, p, 2*time.Minute, "stamps")
		if st := p.status(w.table("stamps")); st.Rows != 300 {
			t.Errorf("the backfill copied %d rows, want 300", st.Rows)
		}
	}
	testenv.EachFlavor(t, run)
	testenv.CrossFlavors(t, run)
}
