package cutover_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/cleave-dev/cleave/cutover"
	"github.com/cleave-dev/cleave/internal/loadgen"
	"github.com/cleave-dev/cleave/internal/testenv"
	"github.com/cleave-dev/cleave/kafkax"
	"github.com/cleave-dev/cleave/mysqlx"
)

// TestRollbackUnderLoadLosesNothingAndForwardResumes cuts over under an application that
// follows the hook to the shards, lets it write there, then rolls back: the application,
// told by the hook (or a shard's guard refusal), writes to the source again. After it
// stops, an independent SELECT of the shards holds every change it had acknowledged (the
// forward path took the source's new writes back to the shards), the source equals the
// shards, a stray write to a shard is refused loudly, and reverse replication has stopped.
func TestRollbackUnderLoadLosesNothingAndForwardResumes(t *testing.T) {
	testenv.EachFlavor(t, func(t *testing.T, env testenv.Env) {
		w := newWorld(t, env, true, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
		defer cancel()
		app, stopApp := w.startApp(t, ctx, 500, 11)

		rec, err := w.cutover(t, cutover.Options{}).Run(ctx)
		if err != nil || rec.State != cutover.StateDone {
			t.Fatalf("cut-over: %v (record %+v)", err, rec)
		}
		onShards := app.Stats().OnShards
		testenv.Eventually(t, time.Minute, "the application to write to the shards", func() bool { return app.Stats().OnShards > onShards+200 })
		waitReverseRunning(t, w, rec.ID)

		back, err := w.cutover(t, cutover.Options{}).Rollback(ctx)
		if err != nil {
			t.Fatalf("rollback failed: %v (record %+v)", err, back)
		}
		if back.State != cutover.StateDone || !back.IsRollback() || back.Detail.Of != rec.ID || len(back.Detail.ShardMarkers) != len(w.cfg.Shards) {
			t.Fatalf("rollback ended as %+v, want a done rollback of cut-over %d with a marker per shard", back, rec.ID)
		}
		backAt, byRefusal, ok := app.SwitchedBack()
		if !ok {
			t.Fatal("the rollback is done and the application has not switched back")
		}
		onSource := app.Stats().Transactions - app.Stats().OnShards
		testenv.Eventually(t, time.Minute, "the application to write to the source again", func() bool {
			st := app.Stats()
			return st.Transactions-st.OnShards > onSource+200
		})
		if err := stopApp(); err != nil {
			t.Fatalf("the application: %v", err)
		}

		// The forward path took the source's writes to the shards again.
		testenv.Eventually(t, 2*time.Minute, "the shards to equal the source", func() bool { return w.diff(t) == "" })
		check, err := app.Verify(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range check.Problems {
			if i == 20 {
				t.Errorf("... and %d more", len(check.Problems)-i)
				break
			}
			t.Error(p)
		}
		st := app.Stats()
		if st.Failed > 0 {
			t.Errorf("the servers refused %d attempts with an error other than a guard's: %q", st.Failed, st.Failures)
		}
		from, to := back.FenceWindow()
		t.Logf("rollback %d: rounds %+v, fenced %+v, journaled write pause %d ms; the application went back %s after the fence (by a refusal: %v); %d transactions (%d on the shards, %d refused first); write pause it saw across the fence %s",
			back.ID, back.Detail.Rounds, back.Detail.Fenced, back.Detail.WritePauseMs, backAt.Sub(from).Round(time.Millisecond), byRefusal,
			st.Transactions, st.OnShards, st.Refused, loadgen.PauseOf(app.Samples(), from, to))

		// A stray write on a shard fails loudly; the source takes writes; reverse stopped.
		for i, db := range w.Shards {
			_, err := db.ExecContext(ctx, "UPDATE "+mysqlx.QuoteTable(w.DB, "users")+" SET balance = balance + 1 WHERE id > 0 LIMIT 1")
			if !loadgen.IsRollbackRefusal(err) {
				t.Errorf("a write to a moved table on shard %d after the rollback: %v, want the guard's refusal", i, err)
			}
		}
		if err := write(ctx, w.Source, w.DB); err != nil {
			t.Errorf("a write to the source after the rollback: %v", err)
		}
		if n := guardTriggers(t, w); n != 0 {
			t.Errorf("%d guard triggers left on the source after the rollback", n)
		}
		testenv.Eventually(t, time.Minute, "reverse replication to stop", func() bool {
			return metricSum(t, w.daemon.Registry(), "cleave_reverse_cutover_id", nil) == 0
		})
		if _, err := w.cutover(t, cutover.Options{}).Rollback(ctx); err == nil {
			t.Error("a second rollback was not refused")
		}
	})
}

// waitReverseRunning waits until every shard's reverse sink keeps offsets on the source
// for every partition, each with something applied in the last second of the source's
// clock: the rollback's gate wants them current.
func waitReverseRunning(t *testing.T, w *world, cutoverID uint64) {
	t.Helper()
	want := len(w.cfg.Tables) * w.cfg.Kafka.Partitions
	testenv.Eventually(t, time.Minute, "every reverse sink's offsets on every partition, current", func() bool {
		for _, s := range w.cfg.Shards {
			var n int
			if w.Source.QueryRow("SELECT COUNT(*) FROM `_cleave`.`offsets` WHERE consumer_group = ? AND applied_ts_ms > UNIX_TIMESTAMP(NOW(3)) * 1000 - 1000",
				kafkax.ReverseGroup(w.Prefix, cutoverID, s.Name)).Scan(&n) != nil || n < want {
				return false
			}
		}
		return true
	})
}

// TestRollbackAbortsWhenAReverseSinkDoesNotDrain first runs a dry-run rollback, which
// changes nothing, then stops `cleave run` (every reverse capture and sink) just before the
// shards' fences: the markers are never applied, the rollback aborts at
// cutover.max_write_pause, the shards take writes again, no guard is left on them, and the
// source still refuses.
func TestRollbackAbortsWhenAReverseSinkDoesNotDrain(t *testing.T) {
	testenv.EachFlavor(t, func(t *testing.T, env testenv.Env) {
		w := newWorld(t, env, true, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
		defer cancel()
		rec, err := w.cutover(t, cutover.Options{}).Run(ctx)
		if err != nil || rec.State != cutover.StateDone {
			t.Fatalf("cut-over: %v (record %+v)", err, rec)
		}
		waitReverseRunning(t, w, rec.ID)
		// A dry run checks and verifies, and changes nothing: no journal row, no hook.
		dry, err := w.cutover(t, cutover.Options{DryRun: true}).Rollback(ctx)
		if err != nil || dry == nil || dry.ID != 0 || len(dry.Detail.Rounds) != 1 {
			t.Fatalf("dry-run rollback: %v (record %+v), want one verification round and nothing journaled", err, dry)
		}
		if n := len(w.hook.received()); n != 1 {
			t.Errorf("the hook heard %d notices after a dry-run rollback, want the cut-over's one", n)
		}
		if last, err := cutover.Latest(ctx, w.Source, w.Prefix); err != nil || last == nil || last.ID != rec.ID {
			t.Errorf("the journal's latest attempt after a dry-run rollback: %+v, %v; want cut-over %d", last, err, rec.ID)
		}
		c := w.cutover(t, cutover.Options{AfterState: func(s cutover.State) error {
			if s == cutover.StateFence {
				w.stop()
			}
			return nil
		}})
		started := time.Now()
		back, err := c.Rollback(ctx)
		if err == nil || back == nil || back.State != cutover.StateAborted {
			t.Fatalf("rollback with the reverse path stopped: %v (record %+v), want aborted", err, back)
		}
		t.Logf("aborted after %s: %v", time.Since(started).Round(time.Millisecond), err)
		for i, db := range w.Shards {
			if _, err := db.ExecContext(ctx, "UPDATE "+mysqlx.QuoteTable(w.DB, "users")+" SET balance = balance + 1 WHERE id > 0 LIMIT 1"); err != nil {
				t.Errorf("a write to shard %d after the aborted rollback: %v, want it taken", i, err)
			}
			var n int
			if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ? AND TRIGGER_NAME LIKE '\\_cleave\\_guard\\_%'", w.DB).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 0 {
				t.Errorf("shard %d keeps %d guard triggers after the aborted rollback", i, n)
			}
		}
		if err := write(ctx, w.Source, w.DB); !isGuardRefusal(err) {
			t.Errorf("a write to the source after the aborted rollback: %v, want the cut-over's guard still refusing", err)
		}
	})
}

// TestKilledRollbackIsResolvedWhole kills `cleave rollback` with SIGKILL right after each
// state is journaled. Before the point of no return the shards take writes again at once
// and the next resolve aborts it with no guard left on them; at the switch it resolves to
// done: the hook acknowledged, the shards refusing writes, the source taking them.
func TestKilledRollbackIsResolvedWhole(t *testing.T) {
	testenv.EachFlavor(t, func(t *testing.T, env testenv.Env) {
		w := newWorld(t, env, true, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
		defer cancel()
		rec, err := w.cutover(t, cutover.Options{}).Run(ctx)
		if err != nil || rec.State != cutover.StateDone {
			t.Fatalf("cut-over: %v (record %+v)", err, rec)
		}
		waitReverseRunning(t, w, rec.ID)
		bin := testenv.CleaveBinary(t, testenv.TestHooksTag)
		onShard := func() error {
			wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
			defer wcancel()
			_, err := w.Shards[0].ExecContext(wctx, "UPDATE "+mysqlx.QuoteTable(w.DB, "users")+" SET balance = balance + 1 WHERE id > 0 LIMIT 1")
			return err
		}
		for _, at := range []cutover.State{cutover.StateGate, cutover.StateVerify, cutover.StateFence,
			cutover.StateDrain, cutover.StateFencedVerify, cutover.StateSwitched} {
			t.Run(string(at), func(t *testing.T) {
				waitReverseRunning(t, w, rec.ID)
				cmd := exec.CommandContext(ctx, bin, "rollback", "--config", w.Path, "--log-level", "warn")
				cmd.Env = append(os.Environ(), "CLEAVE_TEST_CUTOVER_KILL_AT="+string(at))
				out, err := cmd.CombinedOutput()
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
					t.Fatalf("cleave rollback was to kill itself at %s; it ended with %v:\n%s", at, err, out)
				}
				werr := onShard()
				// Before the switch, the fences died with their sessions; the guard rows are
				// only committed at the switch itself.
				if !at.Switched() && werr != nil {
					t.Errorf("a write to a shard right after the kill at %s: %v, want it taken", at, werr)
				}
				got, err := w.cutover(t, cutover.Options{}).Resolve(ctx)
				if err != nil || got == nil {
					t.Fatalf("resolve after the kill at %s: %+v, %v", at, got, err)
				}
				if !at.Switched() {
					if got.State != cutover.StateAborted || !got.IsRollback() {
						t.Errorf("a kill at %s resolved to %s %s, want an aborted rollback", at, got.Kind(), got.State)
					}
					if err := onShard(); err != nil {
						t.Errorf("a write to a shard after resolving the kill at %s: %v", at, err)
					}
					if err := write(ctx, w.Source, w.DB); !isGuardRefusal(err) {
						t.Errorf("a write to the source after resolving the kill at %s: %v, want the cut-over's guard still refusing", at, err)
					}
					// The reverse path brought the shard's writes back; the next attempt's gate
					// wants it current.
					testenv.Eventually(t, time.Minute, "the source to equal the shards", func() bool { return w.diff(t) == "" })
					return
				}
				if got.State != cutover.StateDone || got.Detail.Hook == nil || !got.Detail.Hook.Acked {
					t.Errorf("a kill at %s resolved to %s (hook %+v), want done with the hook acknowledged", at, got.State, got.Detail.Hook)
				}
				if err := onShard(); !loadgen.IsRollbackRefusal(err) {
					t.Errorf("a write to a shard after the rollback resolved: %v, want the guard's refusal", err)
				}
				if err := write(ctx, w.Source, w.DB); err != nil {
					t.Errorf("a write to the source after the rollback resolved: %v", err)
				}
				testenv.Eventually(t, time.Minute, "the shards to equal the source", func() bool { return w.diff(t) == "" })
			})
		}
	})
}
