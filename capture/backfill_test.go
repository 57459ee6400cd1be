package capture

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/cleave-dev/cleave/event"
	"github.com/cleave-dev/cleave/internal/testenv"
	"github.com/cleave-dev/cleave/kafkax"
	"github.com/cleave-dev/cleave/mysqlx"
)

// snapshotChunk reads rows of table t (id, v) inside a consistent snapshot, the way the
// backfill does, and returns them as a chunk of op "r" events for watch.
func snapshotChunk(t *testing.T, f *fixture, watch *Watch) *Chunk {
	t.Helper()
	ctx := context.Background()
	conn, err := f.src.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// The snapshot's binlog position: MariaDB names it in its session status; on MySQL a
	// second session holds the table's read lock while the snapshot starts and the position
	// is read, as the backfill does, so that no write to the table falls in between.
	var at Position
	if f.fl.Name() == mysqlx.MySQL {
		lock, err := f.src.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer lock.Close()
		if _, err := lock.ExecContext(ctx, "LOCK TABLES t READ"); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.ExecContext(ctx, "START TRANSACTION WITH CONSISTENT SNAPSHOT"); err != nil {
			t.Fatal(err)
		}
		file, pos, _, err := f.fl.BinlogPosition(ctx, lock)
		if err != nil {
			t.Fatal(err)
		}
		at = Position{File: file, Pos: pos}
		if _, err := lock.ExecContext(ctx, "UNLOCK TABLES"); err != nil {
			t.Fatal(err)
		}
	} else {
		if _, err := conn.ExecContext(ctx, "START TRANSACTION WITH CONSISTENT SNAPSHOT"); err != nil {
			t.Fatal(err)
		}
		rows, err := conn.QueryContext(ctx, "SHOW SESSION STATUS WHERE Variable_name IN ('Binlog_snapshot_file', 'Binlog_snapshot_position')")
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var k, v string
			if err := rows.Scan(&k, &v); err != nil {
				t.Fatal(err)
			}
			if k == "Binlog_snapshot_file" {
				at.File = v
			} else {
				at.Pos, _ = strconv.ParseUint(v, 10, 64)
			}
		}
		rows.Close()
	}
	if err := watch.SetPosition(at); err != nil {
		t.Fatal(err)
	}
	version, err := event.NewVersion(at.File, at.Pos, 0)
	if err != nil {
		t.Fatal(err)
	}
	ch := &Chunk{Watch: watch, At: at, SchemaAt: at}
	rs, err := conn.QueryContext(ctx, "SELECT id, v FROM t ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	for rs.Next() {
		var id int64
		var v sql.NullString
		if err := rs.Scan(&id, &v); err != nil {
			t.Fatal(err)
		}
		after := event.Row{"id": json.Number(strconv.FormatInt(id, 10)), "v": nil}
		if v.Valid {
			after["v"] = v.String
		}
		val, err := event.Marshal(&event.Event{After: after, Op: event.OpRead, Version: version,
			Source: event.Source{Connector: "cleave", DB: f.db, Table: "t", File: at.File, Pos: at.Pos, Snapshot: true}})
		if err != nil {
			t.Fatal(err)
		}
		key := []byte(fmt.Sprintf("[%d]", id))
		ch.Keys, ch.Values = append(ch.Keys, key), append(ch.Values, val)
		ch.Bytes += int64(len(key) + len(val))
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	return ch
}

// TestWovenChunkLeavesOutRowsChangedAfterItsSnapshot takes a snapshot of ten rows, then
// deletes one and updates another: the chunk, woven into the stream after both changes,
// must leave out those two rows (the deleted one would otherwise come back), and every
// key's versions must strictly increase in its partition. A snapshot older than rows the
// stream had already emitted when its watch opened is refused.
func TestWovenChunkLeavesOutRowsChangedAfterItsSnapshot(t *testing.T) {
	testenv.EachFlavor(t, testWovenChunkLeavesOutRowsChangedAfterItsSnapshot)
}

func testWovenChunkLeavesOutRowsChangedAfterItsSnapshot(t *testing.T, e testenv.Env) {
	f := newFixture(t, e)
	f.exec("CREATE TABLE t (id BIGINT PRIMARY KEY, v VARCHAR(20) NULL)")
	f.exec("INSERT INTO t VALUES (1,'a'),(2,'b'),(3,'c'),(4,'d'),(5,'e'),(6,NULL),(7,'g'),(8,'h'),(9,'i'),(10,'j')")
	cfg := f.configure([]string{"t"}, nil)
	r := f.start(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	watch, err := r.c.WatchTable(ctx, f.db+".t")
	if err != nil {
		t.Fatal(err)
	}
	ch := snapshotChunk(t, f, watch)
	f.exec("DELETE FROM t WHERE id = 3", "UPDATE t SET v = 'E' WHERE id = 5", "INSERT INTO t VALUES (11, 'k')")
	r.waitAcknowledged(t, f.sourcePosition())

	t.Run("a snapshot behind rows the stream emitted is refused", func(t *testing.T) {
		late, err := r.c.WatchTable(ctx, f.db+".t")
		if err != nil {
			t.Fatal(err)
		}
		defer late.Release()
		if err := late.SetPosition(ch.At); !errors.Is(err, ErrSnapshotBehind) {
			t.Fatalf("SetPosition(%s) after the stream emitted later rows: %v, want ErrSnapshotBehind", ch.At, err)
		}
	})

	// The source is idle now: the reader waits for events and must be woken.
	ticket, err := r.c.Weave(ctx, ch)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-ticket.Done():
	case <-ctx.Done():
		t.Fatal("the chunk was not woven and acknowledged within a minute on an idle source")
	}
	if err := ticket.Err(); err != nil {
		t.Fatal(err)
	}
	at, rows, superseded := ticket.Result()
	if rows != 8 || superseded != 2 || at.Before(ch.At) {
		t.Fatalf("woven at %s (snapshot %s): %d rows, %d left out; want 8 and 2, at or after the snapshot", at, ch.At, rows, superseded)
	}

	recs := readTopic(t, f.env.KafkaBrokers, kafkax.TableTopic(f.prefix, f.db, "t"))
	last := map[string]event.Version{}
	copied := map[string]bool{}
	for _, rec := range recs {
		if rec.ev.Op == event.OpHeartbeat {
			continue
		}
		if v, ok := last[rec.key]; ok && rec.ev.Version <= v {
			t.Fatalf("key %s: %s version %v after version %v", rec.key, rec.ev.Op, rec.ev.Version, v)
		}
		last[rec.key] = rec.ev.Version
		if rec.ev.Op == event.OpRead {
			copied[rec.key] = true
		}
	}
	for _, k := range []string{"[3]", "[5]", "[11]"} {
		if copied[k] {
			t.Errorf("key %s was copied although the stream carries a newer change of it", k)
		}
	}
	if len(copied) != 8 {
		t.Errorf("%d keys copied, want 8", len(copied))
	}
}
