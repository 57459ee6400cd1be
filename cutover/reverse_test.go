package cutover_test

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cleave-dev/cleave/cutover"
	"github.com/cleave-dev/cleave/event"
	"github.com/cleave-dev/cleave/finalize"
	"github.com/cleave-dev/cleave/internal/testenv"
	"github.com/cleave-dev/cleave/kafkax"
	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/reconcile"
	"github.com/cleave-dev/cleave/route"
)

// TestReverseReplicationBringsShardChangesBackOnceWithoutALoop cuts over, then changes the
// moved tables on the shards as the application would (an update, an insert routed to its
// shard, a delete). Reverse replication brings every change back to the source: an
// independent SELECT of every column finds the source equal to the union of the shards,
// and the reconcile agrees. Nothing loops: once the source's capture has read past the
// reverse sinks' transactions (the forward sinks' applied versions pass the source's
// binlog end), it has emitted no event for them and counted them as its own applies, and
// the shard rows keep the versions the shards gave them (a forward echo would overwrite
// them with source versions).
func TestReverseReplicationBringsShardChangesBackOnceWithoutALoop(t *testing.T) {
	testenv.EachFlavor(t, func(t *testing.T, env testenv.Env) {
		w := newWorld(t, env, true, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()

		rec, err := w.cutover(t, cutover.Options{}).Run(ctx)
		if err != nil {
			t.Fatalf("cut-over failed: %v (record %+v)", err, rec)
		}
		if len(rec.Detail.Reverse) != len(w.cfg.Shards) {
			t.Fatalf("the switch journaled reverse starts %+v, want one per shard", rec.Detail.Reverse)
		}
		reg := w.daemon.Registry()
		testenv.Eventually(t, time.Minute, "reverse replication to start", func() bool {
			return metricSum(t, reg, "cleave_reverse_cutover_id", nil) == float64(rec.ID)
		})
		forwardBefore := metricSum(t, reg, "cleave_capture_events_total", nil)
		skippedBefore := metricSum(t, reg, "cleave_capture_own_apply_transactions_skipped_total", nil)

		// The application's writes, now on the shards.
		router, err := w.cfg.Router(nil)
		if err != nil {
			t.Fatal(err)
		}
		users := mysqlx.QuoteTable(w.DB, "users")
		orders := mysqlx.QuoteTable(w.DB, "orders")
		onShard := func(id uint64) *sql.DB {
			t.Helper()
			to, err := router.Route(w.Table("users"), route.UintValue(id))
			if err != nil || len(to) != 1 {
				t.Fatalf("route user %d: %v %v", id, to, err)
			}
			return w.Shards[to[0]]
		}
		exec := func(db *sql.DB, q string, args ...any) {
			t.Helper()
			if _, err := db.ExecContext(ctx, q, args...); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		exec(onShard(1), "UPDATE "+users+" SET balance = balance + 7, note = 'changed on the shard' WHERE id = 1")
		const newUser = 1000001
		exec(onShard(newUser), "INSERT INTO "+users+" (id, email, name, country, balance, created_at) VALUES (?, 'new@example.com', 'New', 'DE', 1.50, NOW(6))", newUser)
		var gone uint64
		if err := onShard(2).QueryRowContext(ctx, "SELECT id FROM "+orders+" WHERE user_id = 2 ORDER BY id LIMIT 1").Scan(&gone); err != nil {
			t.Fatalf("an order of user 2: %v", err)
		}
		exec(onShard(2), "DELETE FROM "+orders+" WHERE id = ?", gone)
		versions := shardVersions(t, ctx, w, onShard, newUser)

		testenv.Eventually(t, 2*time.Minute, "the source to equal the shards", func() bool { return w.diff(t) == "" })

		// Let the source's capture read past the reverse sinks' transactions: the forward
		// sinks have applied (heartbeats) past the source's binlog end.
		fl, err := mysqlx.DetectFlavor(ctx, w.Source)
		if err != nil {
			t.Fatal(err)
		}
		file, pos, _, err := fl.BinlogPosition(ctx, w.Source)
		if err != nil {
			t.Fatal(err)
		}
		end, err := event.NewVersion(file, pos, 0)
		if err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, time.Minute, "the forward stream to pass the source's binlog end", func() bool {
			for i, db := range w.Shards {
				var low sql.NullInt64
				if db.QueryRowContext(ctx, "SELECT CAST(MIN(applied_version) AS SIGNED) FROM `_cleave`.`offsets` WHERE consumer_group = ?",
					kafkax.SinkGroup(w.Prefix, w.cfg.Shards[i].Name)).Scan(&low) != nil || !low.Valid || uint64(low.Int64) < uint64(end) {
					return false
				}
			}
			return true
		})
		if got := metricSum(t, reg, "cleave_capture_events_total", nil); got != forwardBefore {
			t.Errorf("the source's capture emitted %v events after the switch, want none: the reverse sinks' writes came forward again", got-forwardBefore)
		}
		if got := metricSum(t, reg, "cleave_capture_own_apply_transactions_skipped_total", nil); got <= skippedBefore {
			t.Errorf("the source's capture skipped %v transactions as cleave's own applies, want the reverse sinks' (more than %v)", got, skippedBefore)
		}
		if after := shardVersions(t, ctx, w, onShard, newUser); after != versions {
			t.Errorf("shard rows' versions changed from %q to %q after the changes went back: something came forward again", versions, after)
		}
		var applied float64
		for _, s := range w.cfg.Shards {
			applied += metricSum(t, reg, "cleave_sink_events_applied_total", map[string]string{"shard": kafkax.ReverseSink(s.Name)})
		}
		if applied < 3 {
			t.Errorf("the reverse sinks applied %v events, want at least the 3 changes", applied)
		}

		// The checker agrees, and a stray write on the source is still refused.
		chk, err := reconcile.New(w.cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer chk.Close()
		rep, err := chk.Run(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Status != reconcile.StatusConsistent {
			t.Errorf("reconcile after reverse replication: %s (%d drifted rows), want consistent", rep.Status, rep.DriftCount())
		}
		if err := write(ctx, w.Source, w.DB); !isGuardRefusal(err) {
			t.Errorf("a stray write to a moved table on the source: %v, want the guard's refusal", err)
		}

		// Finalize ends reverse replication: its bookkeeping on the source goes, and the
		// journal says so, so that no cleave run starts it again.
		w.stop()
		fin := finalize.New(w.cfg, nil, finalize.Options{Apply: true, SinkIdle: time.Second})
		defer fin.Close()
		for {
			_, err := fin.Run(ctx)
			if err == nil {
				break
			}
			var ref *finalize.RefusedError
			if !errors.As(err, &ref) {
				t.Fatalf("finalize: %v", err)
			}
			for _, c := range ref.Failed {
				if !strings.HasPrefix(c.Name, "sinks.") {
					t.Fatalf("finalize: %v", err)
				}
			}
			select { // the stopped sinks' offsets are not SinkIdle old yet
			case <-ctx.Done():
				t.Fatalf("finalize: %v", err)
			case <-time.After(200 * time.Millisecond):
			}
		}
		var left int
		if err := w.Source.QueryRowContext(ctx, "SELECT (SELECT COUNT(*) FROM `_cleave`.`offsets` WHERE consumer_group LIKE ?) + (SELECT COUNT(*) FROM `_cleave`.`row_versions` WHERE db = ?)",
			w.Prefix+".rev%", w.DB).Scan(&left); err != nil {
			t.Fatal(err)
		}
		if left != 0 {
			t.Errorf("finalize left %d rows of reverse replication's bookkeeping on the source", left)
		}
		if last, err := cutover.Latest(ctx, w.Source, w.Prefix); err != nil || last == nil || last.Detail.FinalizedAt == nil {
			t.Errorf("the journal does not record the finalize: %+v, %v", last, err)
		}
	})
}

// shardVersions is the version column of the rows the test changed on the shards.
func shardVersions(t *testing.T, ctx context.Context, w *world, onShard func(uint64) *sql.DB, newUser uint64) string {
	t.Helper()
	var out []string
	for _, id := range []uint64{1, newUser} {
		var v string
		if err := onShard(id).QueryRowContext(ctx, "SELECT CAST(`_cleave_version` AS CHAR) FROM "+mysqlx.QuoteTable(w.DB, "users")+" WHERE id = ?", id).Scan(&v); err != nil {
			t.Fatalf("version of user %d: %v", id, err)
		}
		out = append(out, v)
	}
	return strings.Join(out, ",")
}

// metricSum adds up the samples of a metric whose labels include want.
func metricSum(t *testing.T, g testenv.Gatherer, name string, want map[string]string) float64 {
	t.Helper()
	return testenv.MetricSum(t, g, name, want)
}
