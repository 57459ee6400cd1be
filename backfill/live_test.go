package backfill

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/event"
	"github.com/cleave-dev/cleave/internal/testenv"
	"github.com/cleave-dev/cleave/kafkax"
	"github.com/cleave-dev/cleave/mysqlx"
)

// cursorLoad writes to the table items around the backfill's cursor while it copies:
// deletes of rows not yet copied (just ahead of the cursor, where chunks are in flight,
// and further ahead), updates of rows just copied, inserts beyond the current chunk (new
// keys at the end, and deleted keys ahead of the cursor inserted again), and random
// updates and deletes anywhere. It remembers which keys it deleted for good.
type cursorLoad struct {
	db      string
	chunk   int64
	cursor  func() int64 // last key copied, 0 before the first chunk
	mu      sync.Mutex
	maxID   int64
	deleted map[int64]bool
	counts  map[string]int
}

func (l *cursorLoad) step(ctx context.Context, w *world, r *rand.Rand) error {
	c := l.cursor()
	l.mu.Lock()
	maxID := l.maxID
	l.mu.Unlock()
	items := mysqlx.QuoteTable(l.db, "items")
	between := func(lo, hi int64) int64 {
		lo, hi = max(lo, 1), min(hi, maxID)
		if hi < lo {
			return max(1, min(c, maxID))
		}
		return lo + r.Int64N(hi-lo+1)
	}
	update := func(id int64) error {
		_, err := w.Source.ExecContext(ctx, "UPDATE "+items+" SET val = ?, amount = amount + 1, updated = UTC_TIMESTAMP(6) WHERE id = ?", randomWord(r, []string{"u", "v", "w"}, 12), id)
		return err
	}
	del := func(id int64) error {
		res, err := w.Source.ExecContext(ctx, "DELETE FROM "+items+" WHERE id = ?", id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 1 {
			l.mu.Lock()
			l.deleted[id] = true
			l.mu.Unlock()
		}
		return nil
	}
	insert := func(id int64) error {
		res, err := w.Source.ExecContext(ctx, "INSERT IGNORE INTO "+items+" (id, grp, val, amount, updated, note) VALUES (?, ?, ?, ?, UTC_TIMESTAMP(6), ?)",
			id, r.IntN(100), randomWord(r, []string{"i", "j"}, 10), fmt.Sprintf("%d.%02d", r.IntN(1000), r.IntN(100)), nullable(r))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 1 {
			l.mu.Lock()
			delete(l.deleted, id)
			l.maxID = max(l.maxID, id)
			l.mu.Unlock()
		}
		return nil
	}
	var kind string
	var err error
	switch p := r.IntN(100); {
	case p < 20:
		kind, err = "delete in flight", del(between(c+1, c+3*l.chunk))
	case p < 30:
		kind, err = "delete ahead", del(between(c+3*l.chunk, c+50*l.chunk))
	case p < 55:
		kind, err = "update just copied", update(between(c-2*l.chunk, c))
	case p < 65:
		kind, err = "update in flight", update(between(c+1, c+3*l.chunk))
	case p < 80:
		l.mu.Lock()
		l.maxID++
		id := l.maxID
		l.mu.Unlock()
		kind, err = "insert at the end", insert(id)
	case p < 88:
		kind, err = "insert ahead", insert(between(c+1, c+20*l.chunk))
	case p < 94:
		kind, err = "update anywhere", update(between(1, maxID))
	default:
		kind, err = "delete anywhere", del(between(1, maxID))
	}
	if err == nil {
		l.mu.Lock()
		l.counts[kind]++
		l.mu.Unlock()
	}
	return err
}

func nullable(r *rand.Rand) any {
	if r.IntN(3) == 0 {
		return nil
	}
	return randomWord(r, []string{"n", "o", "é"}, r.IntN(8))
}

const itemsColumns = "id BIGINT NOT NULL PRIMARY KEY, grp INT NOT NULL, val VARCHAR(64) NOT NULL, amount DECIMAL(12,2) NOT NULL, updated DATETIME(6) NOT NULL, note TEXT NULL"

// seedItems inserts rows 1..n into items.
func seedItems(t testing.TB, w *world, n int) {
	t.Helper()
	r := rand.New(rand.NewPCG(uint64(n), 1))
	for lo := 1; lo <= n; lo += 1000 {
		var b strings.Builder
		var args []any
		for id := lo; id < lo+1000 && id <= n; id++ {
			if b.Len() > 0 {
				b.WriteString(",")
			}
			b.WriteString("(?,?,?,?,?,?)")
			args = append(args, id, r.IntN(100), randomWord(r, []string{"a", "b", "c", "ü"}, 16), fmt.Sprintf("%d.%02d", r.IntN(100000), r.IntN(100)),
				time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(r.Int64N(int64(365*24*time.Hour)))).Format("2006-01-02 15:04:05.000000"), nullable(r))
		}
		if _, err := w.Source.Exec("INSERT INTO items (id, grp, val, amount, updated, note) VALUES "+b.String(), args...); err != nil {
			t.Fatal(err)
		}
	}
}

// cursorOf decodes a status' last key of items.
func cursorOf(s TableStatus) int64 {
	var k []json.Number
	if json.Unmarshal(s.LastKey, &k) != nil || len(k) != 1 {
		return 0
	}
	n, _ := strconv.ParseInt(k[0].String(), 10, 64)
	return n
}

// TestCopyUnderWritesAroundTheCursor copies 200,000 rows in chunks of 1,000 while writers
// delete rows not yet copied (also those in chunks in flight), update rows just copied,
// and insert rows beyond the current chunk. After catch-up the shards hold exactly the
// source's rows (an independent comparison of every column), no deleted row came back, and
// in every partition each key's versions strictly increase: its changes up to the
// snapshot, the copy, its changes after.
func TestCopyUnderWritesAroundTheCursor(t *testing.T) {
	testenv.EachFlavor(t, func(t *testing.T, e testenv.Env) {
		const rows, chunk = 200_000, 1000
		w := newWorld(t, e, []tableSpec{{"items", itemsColumns, hashOn("id")}},
			func(c *config.Config) { c.Backfill.ChunkSize, c.Backfill.MaxRowsPerSecond = chunk, 40000 })
		seedItems(t, w, rows)
		table := w.table("items")

		p := w.start(Options{PollInterval: 200 * time.Millisecond})
		load := &cursorLoad{db: w.DB, chunk: chunk, maxID: rows, deleted: map[int64]bool{}, counts: map[string]int{},
			cursor: func() int64 { return cursorOf(p.status(table)) }}
		ctx, stop := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for i := 0; i < 4; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := rand.New(rand.NewPCG(uint64(i), 5))
				for ctx.Err() == nil {
					if err := load.step(ctx, w, r); err != nil && ctx.Err() == nil && !mysqlx.Retryable(err) {
						errs <- err
						return
					}
				}
			}()
		}
		halt := func() {
			stop()
			wg.Wait()
			select {
			case err := <-errs:
				t.Fatalf("load: %v", err)
			default:
			}
		}
		defer halt()
		w.waitDone(t, p, 8*time.Minute) // a deadline for a hang on a busy machine, not a measure of speed
		halt()

		st := p.status(table)
		t.Logf("copied %d rows in %d chunks; %d rows left out for a newer change in the stream; %v snapshots taken again; load: %v",
			st.Rows, st.Chunks, st.Superseded, p.metric("cleave_backfill_snapshot_retries_total"), load.counts)
		for _, k := range []string{"delete in flight", "delete ahead", "update just copied", "insert at the end", "insert ahead"} {
			if load.counts[k] < 50 {
				t.Errorf("only %d writes of kind %q during the copy: the test meant many", load.counts[k], k)
			}
		}

		t.Run("the shards equal the source", func(t *testing.T) {
			w.waitEqual(t, p, 2*time.Minute, "items")
		})

		t.Run("no deleted row came back", func(t *testing.T) {
			// A key deleted and inserted again by another writer may exist; the rows deleted
			// for good are those deleted at some point and absent from the source now.
			var ids []string
			for id := range load.deleted {
				ids = append(ids, strconv.FormatInt(id, 10))
			}
			present := func(db *sql.DB) map[int64]bool {
				out := map[int64]bool{}
				rows, err := db.Query("SELECT id FROM " + mysqlx.QuoteTable(w.DB, "items") + " WHERE id IN (" + strings.Join(ids, ",") + ")")
				if err != nil {
					t.Fatal(err)
				}
				defer rows.Close()
				for rows.Next() {
					var id int64
					if err := rows.Scan(&id); err != nil {
						t.Fatal(err)
					}
					out[id] = true
				}
				return out
			}
			onSource := present(w.Source)
			gone := len(ids) - len(onSource)
			if gone < 100 {
				t.Fatalf("only %d rows deleted for good", gone)
			}
			for i, sh := range w.Shards {
				for id := range present(sh) {
					if !onSource[id] {
						t.Errorf("row %d, deleted on the source, is on shard%d", id, i)
					}
				}
			}
			t.Logf("%d rows deleted for good during the copy, none of them on a shard", gone)
		})

		t.Run("in every partition each key's versions strictly increase", func(t *testing.T) {
			recs := readTopic(t, w.Env.KafkaBrokers, kafkax.TableTopic(w.Prefix, w.DB, "items"))
			last := map[string]event.Version{}
			part := map[string]int{}
			copies := 0
			for _, r := range recs {
				if r.ev.Op == event.OpHeartbeat {
					continue
				}
				if r.ev.Op == event.OpRead {
					copies++
				}
				if p, ok := part[r.key]; ok && p != r.partition {
					t.Fatalf("key %s in partitions %d and %d", r.key, p, r.partition)
				}
				part[r.key] = r.partition
				if v, ok := last[r.key]; ok && r.ev.Version <= v {
					var hist []string
					for _, x := range recs {
						if x.key == r.key {
							hist = append(hist, fmt.Sprintf("%s v%v @%d before=%v after=%v", x.ev.Op, x.ev.Version, x.offset, x.ev.Before, x.ev.After))
						}
					}
					t.Fatalf("key %s: %s version %v at offset %d after version %v; its events:\n%s", r.key, r.ev.Op, r.ev.Version, r.offset, v, strings.Join(hist, "\n"))
				}
				last[r.key] = r.ev.Version
			}
			if int64(copies) != st.Rows-int64(st.Superseded) {
				t.Errorf("%d copied rows in the topic, status says %d copied and %d left out", copies, st.Rows, st.Superseded)
			}
		})
	})
}

// record is one message read back from Kafka.
type record struct {
	partition int
	offset    int64
	key       string
	ev        *event.Event
}

// readTopic reads every event of topic, partition by partition in offset order.
func readTopic(t testing.TB, brokers []string, topic string) []record {
	t.Helper()
	var out []record
	for _, m := range testenv.ReadTopic(t, brokers, topic) {
		ev, err := event.Unmarshal(m.Value)
		if err != nil {
			t.Fatalf("%s/%d@%d: %v: %s", topic, m.Partition, m.Offset, err, m.Value)
		}
		out = append(out, record{partition: m.Partition, offset: m.Offset, key: string(m.Key), ev: ev})
	}
	return out
}
