package reconcile

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/cleave-dev/cleave/capture"
	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/internal/testenv"
	"github.com/cleave-dev/cleave/kafkax"
	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/route"
	"github.com/cleave-dev/cleave/shardmeta"
	"github.com/cleave-dev/cleave/sink"
)

const liveDDL = `id BIGINT NOT NULL PRIMARY KEY, user_id BIGINT UNSIGNED NOT NULL, name VARCHAR(64),
	amount DECIMAL(12,2), updated DATETIME(6)`

// liveRows are the rows that exist before the pipeline starts; the load touches only ids
// from liveTouched up, so rows below it change only when the test says so.
const (
	liveRows    = 20000
	liveTouched = 1000
	loadRate    = 1500 // row changes per second
)

// TestZeroFalsePositivesUnderLiveWritesThroughThePipeline runs capture and both shards'
// sinks against the local services while a load writes about 1,500 rows a second to the
// source (inserts, updates, some moving a row to the other shard, deletes). Ten checks
// during the load must report no drift: rows whose change has not reached a shard yet are
// lag, not drift. Then one row is damaged on its shard and the next check reports exactly
// that row.
func TestZeroFalsePositivesUnderLiveWritesThroughThePipeline(t *testing.T) {
	testenv.EachFlavor(t, testZeroFalsePositivesUnderLiveWrites)
	testenv.CrossFlavors(t, testZeroFalsePositivesUnderLiveWrites)
}

func testZeroFalsePositivesUnderLiveWrites(t *testing.T, env testenv.Env) {
	f := newFixtureWith(t, env, func(c *config.Config) {
		c.Capture.HeartbeatInterval = 200 * time.Millisecond
		c.Capture.CheckpointInterval = 200 * time.Millisecond
		c.Sink.BatchWait = 20 * time.Millisecond
		c.Reconcile.RecheckRounds = 4
	}, fixtureTable{name: "live", ddl: liveDDL, strategy: "hash", shardKey: "user_id"})
	prefix := f.dep.Prefix
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, s := range f.shards {
		if err := shardmeta.Ensure(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	f.exec(f.source, `INSERT INTO %s SELECT seq, seq * 7919 %% 10007, CONCAT('name-', seq), seq / 100,
		TIMESTAMP'2024-01-01 00:00:00' + INTERVAL seq SECOND FROM %s`, f.q("live"), f.seq(liveRows))
	f.copyRouted("live", "user_id")

	// The pipeline: capture from the source's current position, one sink per shard.
	var wg sync.WaitGroup
	pipelineErr := make(chan error, 3)
	start := func(name string, run func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(ctx); err != nil && ctx.Err() == nil {
				pipelineErr <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	defer func() { cancel(); wg.Wait() }()
	cp, err := capture.New(f.cfg, capture.Options{})
	if err != nil {
		t.Fatal(err)
	}
	start("capture", cp.Run)
	for _, s := range f.cfg.Shards {
		sk, err := sink.New(f.cfg, s.Name, sink.Options{})
		if err != nil {
			t.Fatal(err)
		}
		start("sink "+s.Name, sk.Run)
	}
	// Running means: every shard's sink has applied a heartbeat of capture on every
	// partition. A sink stores a partition's offsets as soon as it is assigned, before
	// capture may even have read the source's position; a heartbeat is only sent from that
	// position on, so every write of the load comes after it and reaches the shards.
	topic := kafkax.TableTopic(prefix, f.dbName, "live")
	testenv.Eventually(t, 90*time.Second, "capture and both sinks to run", func() bool {
		select {
		case err := <-pipelineErr:
			t.Fatal(err)
		default:
		}
		for i, s := range f.shards {
			var n int
			err := s.QueryRow("SELECT COUNT(*) FROM _cleave.offsets WHERE consumer_group = ? AND topic = ? AND applied_version > 0",
				kafkax.SinkGroup(prefix, f.cfg.Shards[i].Name), topic).Scan(&n)
			if err != nil || n < f.cfg.Kafka.Partitions {
				return false
			}
		}
		return true
	})

	load := startLoad(t, f)
	checks := 0
	for run := 1; run <= 10; run++ {
		// Short waits: a row whose sink lags beyond them is in flight, which is allowed;
		// they bound the test's time when the sinks run slowly (under -race, say).
		rep := f.run(Options{RecheckWait: time.Second})
		checks++
		tr := rep.Tables[0]
		t.Logf("check %d during the load: %d rows, %d of %d chunks mismatched, %d rows in flight, %.2fs",
			run, tr.RowsChecked, tr.ChunksMismatched, tr.Chunks, len(tr.InFlight), rep.DurationSeconds)
		if n := rep.DriftCount(); n != 0 {
			t.Errorf("check %d during the load reported %d drifted rows: %v", run, n, describe(f, rep))
			dumpDrift(t, f, rep, topic)
		}
		select {
		case err := <-pipelineErr:
			t.Fatal(err)
		default:
		}
	}

	// One real difference, on a row the load never touches.
	const victim = 5
	var uid uint64
	if err := f.source.QueryRow("SELECT user_id FROM "+f.q("live")+" WHERE id = ?", victim).Scan(&uid); err != nil {
		t.Fatal(err)
	}
	owner := f.owner("live", route.UintValue(uid))[0]
	f.exec(f.shards[owner], "UPDATE %s SET name = 'damaged' WHERE id = %d", f.q("live"), victim)
	// Sinks slowed down (by the race detector, say) may lag for long: give this check's
	// re-check rounds more time, so the damaged row is settled rather than left in flight.
	rep := f.run(Options{RecheckWait: 5 * time.Second})
	got := describe(f, rep)
	want := []string{fmt.Sprintf("changed s%d [%d] name", owner, victim)}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("with one damaged row the check reported %v, want exactly %v", got, want)
	}
	changes, elapsed := load.stop()
	t.Logf("load: %d row changes in %s (%.0f rows/s) across %d checks", changes, elapsed.Round(time.Millisecond), float64(changes)/elapsed.Seconds(), checks+1)
	if load.err != nil {
		t.Fatal(load.err)
	}
}

type liveLoad struct {
	cancel  context.CancelFunc
	done    chan struct{}
	changes atomic.Int64
	started time.Time
	mu      sync.Mutex
	err     error
}

// startLoad writes row changes to the source at loadRate per second in small transactions
// until stop: inserts of new rows, updates (one in four moving the row to another shard
// key), and deletes of rows it inserted.
func startLoad(t *testing.T, f *fixture) *liveLoad {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l := &liveLoad{cancel: cancel, done: make(chan struct{}), started: time.Now()}
	db, err := mysqlx.Open(ctx, "source", f.env.SourceDSN)
	if err != nil {
		t.Fatal(err)
	}
	lim := rate.NewLimiter(loadRate, 50)
	const workers = 3
	var wg sync.WaitGroup
	var nextID atomic.Int64
	nextID.Store(1_000_000)
	table := f.q("live")
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := mrand.New(mrand.NewPCG(uint64(w), 42))
			var mine []int64
			for ctx.Err() == nil {
				const perTx = 10
				if lim.WaitN(ctx, perTx) != nil {
					return
				}
				err := func() error {
					tx, err := db.BeginTx(ctx, nil)
					if err != nil {
						return err
					}
					defer tx.Rollback()
					for range perTx {
						switch r := rng.IntN(10); {
						case r < 4:
							id := nextID.Add(1)
							_, err = tx.Exec("INSERT INTO "+table+" VALUES (?, ?, ?, ?, NOW(6))", id, rng.Uint64N(100000), fmt.Sprintf("new-%d", id), rng.IntN(100000))
							mine = append(mine, id)
						case r < 9:
							id := liveTouched + rng.Int64N(liveRows-liveTouched)
							if len(mine) > 0 && rng.IntN(2) == 0 {
								id = mine[rng.IntN(len(mine))]
							}
							if rng.IntN(4) == 0 {
								_, err = tx.Exec("UPDATE "+table+" SET user_id = ?, updated = NOW(6) WHERE id = ?", rng.Uint64N(100000), id)
							} else {
								_, err = tx.Exec("UPDATE "+table+" SET name = CONCAT('u', ?), amount = amount + 1, updated = NOW(6) WHERE id = ?", rng.IntN(1000), id)
							}
						default:
							if len(mine) == 0 {
								continue
							}
							i := rng.IntN(len(mine))
							_, err = tx.Exec("DELETE FROM "+table+" WHERE id = ?", mine[i])
							mine = append(mine[:i], mine[i+1:]...)
						}
						if err != nil {
							return err
						}
					}
					if err := tx.Commit(); err != nil {
						return err
					}
					l.changes.Add(perTx)
					return nil
				}()
				if err != nil && ctx.Err() == nil && !errors.Is(err, sql.ErrTxDone) {
					if mysqlx.Retryable(err) {
						continue
					}
					l.mu.Lock()
					l.err = errors.Join(l.err, err)
					l.mu.Unlock()
					return
				}
			}
		}()
	}
	go func() { wg.Wait(); db.Close(); close(l.done) }()
	return l
}

func (l *liveLoad) stop() (int64, time.Duration) {
	elapsed := time.Since(l.started)
	l.cancel()
	<-l.done
	return l.changes.Load(), elapsed
}

// dumpDrift logs, for a few drifted rows, the source row, every shard's copy with its
// version, and the sinks' applied versions: enough to tell the checker's mistake from the
// pipeline's.
func dumpDrift(t *testing.T, f *fixture, rep *Report, topic string) {
	t.Helper()
	file, pos, _, _ := binlogStatus(context.Background(), f.source, f.sourceFlavor())
	t.Logf("source position %s:%d", file, pos)
	for i, s := range f.shards {
		rows, err := s.Query("SELECT kafka_partition, applied_version, next_offset FROM _cleave.offsets WHERE topic = ? ORDER BY 1", topic)
		if err != nil {
			t.Log(err)
			continue
		}
		var parts []string
		for rows.Next() {
			var p int
			var v uint64
			var o int64
			rows.Scan(&p, &v, &o)
			parts = append(parts, fmt.Sprintf("p%d=%d@%d", p, v, o))
		}
		rows.Close()
		t.Logf("shard s%d applied: %s", i, strings.Join(parts, " "))
	}
	for n, d := range rep.Tables[0].Drift {
		if n >= 5 {
			break
		}
		id := d.Key[0]
		line := func(db *sql.DB, ver string) string {
			var uid, name, amount, upd, v sql.NullString
			err := db.QueryRow("SELECT user_id, name, amount, updated, "+ver+" FROM "+f.q("live")+" WHERE id = ?", fmt.Sprint(id)).Scan(&uid, &name, &amount, &upd, &v)
			if err != nil {
				return err.Error()
			}
			return fmt.Sprintf("user_id=%s name=%s amount=%s updated=%s version=%s", uid.String, name.String, amount.String, upd.String, v.String)
		}
		t.Logf("%s %s key %v: source %s", d.Kind, d.Shard, d.Key, line(f.source, "NULL"))
		for i, s := range f.shards {
			t.Logf("    s%d: %s", i, line(s, "_cleave_version"))
		}
	}
}
