package cutover_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/cutover"
	"github.com/cleave-dev/cleave/internal/loadgen"
	"github.com/cleave-dev/cleave/internal/testenv"
	"github.com/cleave-dev/cleave/mysqlx"
)

// TestCutoverSwitchesUnderLoadAndRefusesStrayWrites cuts over while an application writes:
// the cut-over ends done, the hook hears of it once, every write the source took is on the
// shards (an independent SELECT of every column), every write after the switch is refused
// loudly by the guard, and the fence paused writes no longer than cutover.max_write_pause.
func TestCutoverSwitchesUnderLoadAndRefusesStrayWrites(t *testing.T) {
	testenv.EachFlavor(t, func(t *testing.T, env testenv.Env) {
		w := newWorld(t, env, true, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()

		loadCtx, stopLoad := context.WithCancel(ctx)
		defer stopLoad()
		load := &loadgen.Load{DB: w.Source, Database: w.DB, Rate: 300, Workers: 2, Seed: 3}
		loadDone := make(chan error, 1)
		go func() { _, err := load.Run(loadCtx); loadDone <- err }()
		testenv.Eventually(t, time.Minute, "the load to write", func() bool { return load.Stats().Transactions > 50 })

		rec, err := w.cutover(t, cutover.Options{}).Run(ctx)
		if err != nil {
			t.Fatalf("cut-over failed: %v (record %+v)", err, rec)
		}
		if rec.State != cutover.StateDone {
			t.Fatalf("cut-over ended in state %s, want done", rec.State)
		}
		t.Logf("cut-over %d: rounds %+v, fenced %+v, write pause %d ms, marker %+v; the load had written %d transactions",
			rec.ID, rec.Detail.Rounds, rec.Detail.Fenced, rec.Detail.WritePauseMs, rec.Detail.Marker, load.Stats().Transactions)
		if rec.Detail.WritePauseMs <= 0 || rec.Detail.WritePauseMs > w.cfg.Cutover.MaxWritePause.Milliseconds() {
			t.Errorf("write pause %d ms, want within (0, %s]", rec.Detail.WritePauseMs, w.cfg.Cutover.MaxWritePause)
		}
		if rec.Detail.Marker == nil || len(rec.Detail.Rounds) == 0 || rec.Detail.Fenced == nil {
			t.Errorf("journal lacks the marker or the verification rounds: %+v", rec.Detail)
		}
		notices := w.hook.received()
		if len(notices) != 1 || notices[0].CutoverID != rec.ID || notices[0].Event != "switched" || len(notices[0].Tables) != len(w.cfg.Tables) {
			t.Errorf("hook received %+v, want one switched notice of cut-over %d naming %d tables", notices, rec.ID, len(w.cfg.Tables))
		}

		// The application, still writing to the source, is refused: the load stops on the
		// guard's error, never on another.
		select {
		case err := <-loadDone:
			if !isGuardRefusal(err) {
				t.Fatalf("the load stopped with %v, want the guard's refusal", err)
			}
		case <-time.After(time.Minute):
			t.Fatal("the load still writes to the source after the switch")
		}
		if err := write(ctx, w.Source, w.DB); !isGuardRefusal(err) {
			t.Errorf("a write to a moved table after the switch: %v, want the guard's refusal", err)
		}
		// Reverse replication's applier passes the guard.
		conn, err := w.Source.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.ExecContext(ctx, "SET @cleave_apply = 1"); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.ExecContext(ctx, "SELECT 1"); err != nil {
			t.Fatal(err)
		}
		conn.Close()

		// Nothing the source took is missing: the shards equal it.
		testenv.Eventually(t, time.Minute, "the shards to equal the source", func() bool { return w.diff(t) == "" })

		st, running, err := w.cutover(t, cutover.Options{}).Status(ctx, 5)
		if err != nil || running || len(st) == 0 || st[0].ID != rec.ID || st[0].State != cutover.StateDone {
			t.Errorf("status: %+v running %v err %v, want cut-over %d done and nothing running", st, running, err, rec.ID)
		}
		if _, err := w.cutover(t, cutover.Options{}).Run(ctx); err == nil || !strings.Contains(err.Error(), "already switched") {
			t.Errorf("a second cut-over: %v, want it refused as already switched", err)
		}
	})
}

// TestCutoverAbortsWhenTheSinksDoNotDrainInTime stops capture and the sinks just before the fence: the
// marker is never applied, the cut-over aborts at cutover.max_write_pause, the source takes
// writes again, and no trigger or guard row is left.
func TestCutoverAbortsWhenTheSinksDoNotDrainInTime(t *testing.T) {
	testenv.EachFlavor(t, func(t *testing.T, env testenv.Env) {
		w := newWorld(t, env, true, func(c *config.Config) { c.Cutover.MaxWritePause = 2 * time.Second })
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		opts := cutover.Options{AfterState: func(s cutover.State) error {
			if s == cutover.StateFence {
				w.stop()
			}
			return nil
		}}
		rec, err := w.cutover(t, opts).Run(ctx)
		if err == nil || rec == nil || rec.State != cutover.StateAborted {
			t.Fatalf("cut-over: %v, record %+v, want aborted", err, rec)
		}
		if !strings.Contains(rec.Detail.Reason, "drain") {
			t.Errorf("abort reason %q does not name the drain", rec.Detail.Reason)
		}
		if err := write(ctx, w.Source, w.DB); err != nil {
			t.Errorf("a write after the abort: %v, want the source to take it", err)
		}
		if n := guardTriggers(t, w); n != 0 {
			t.Errorf("%d guard triggers left after the abort", n)
		}
		if n := guarded(t, w); n != 0 {
			t.Errorf("%d guard rows left after the abort", n)
		}
		if len(w.hook.received()) != 0 {
			t.Error("the hook was called for an aborted cut-over")
		}
	})
}

// TestCutoverDryRunChangesNothing runs the gate and a verification round and leaves no
// journal row, trigger or fence behind.
func TestCutoverDryRunChangesNothing(t *testing.T) {
	testenv.EachFlavor(t, func(t *testing.T, env testenv.Env) {
		w := newWorld(t, env, true, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		rec, err := w.cutover(t, cutover.Options{DryRun: true}).Run(ctx)
		if err != nil {
			t.Fatalf("dry run: %v", err)
		}
		if rec.ID != 0 || len(rec.Detail.Rounds) != 1 {
			t.Errorf("dry run record %+v, want no journal id and one verification round", rec)
		}
		recs, _, err := w.cutover(t, cutover.Options{}).Status(ctx, 5)
		if err != nil || len(recs) != 0 {
			t.Errorf("journal after a dry run: %+v (%v), want empty", recs, err)
		}
		if n := guardTriggers(t, w); n != 0 {
			t.Errorf("%d guard triggers after a dry run", n)
		}
		if err := write(ctx, w.Source, w.DB); err != nil {
			t.Errorf("a write after the dry run: %v", err)
		}
	})
}

// TestCutoverGateNamesEveryFailedCheck runs a cut-over with no hook and nothing running:
// the gate lists each failed check with its fix, and nothing is touched.
func TestCutoverGateNamesEveryFailedCheck(t *testing.T) {
	env := testenv.Services(t)
	w := newWorld(t, env, false, func(c *config.Config) { c.Cutover.HookURL = "" })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rec, err := w.cutover(t, cutover.Options{}).Run(ctx)
	if err == nil || !cutover.IsGate(err) {
		t.Fatalf("cut-over: %v, want the gate's failure", err)
	}
	for _, want := range []string{"cutover.hook_url or cutover.hook_command", "backfill", "shard0's sink", "shard1's sink"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("gate error does not name %q:\n%v", want, err)
		}
	}
	if rec == nil || rec.State != cutover.StateAborted {
		t.Errorf("record %+v, want aborted", rec)
	}
	if n := guardTriggers(t, w); n != 0 {
		t.Errorf("%d guard triggers after a failed gate", n)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Error("the gate timed out instead of failing")
	}
}

// TestCutoverAbortsOnDriftFoundByVerification changes a row on the source once the gate's
// reconcile has passed, lets it reach its shard, then damages the shard's copy: the first
// verification round finds it, the cut-over aborts naming the row's table, and the source
// takes writes as before.
func TestCutoverAbortsOnDriftFoundByVerification(t *testing.T) {
	testenv.EachFlavor(t, func(t *testing.T, env testenv.Env) {
		w := newWorld(t, env, true, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		users := w.cfg.Tables[0]
		opts := cutover.Options{AfterState: func(s cutover.State) error {
			if s != cutover.StateVerify {
				return nil
			}
			if err := write(ctx, w.Source, w.DB); err != nil {
				return err
			}
			var want string
			if err := w.Source.QueryRowContext(ctx, "SELECT balance FROM "+mysqlx.QuoteTable(w.DB, "users")+" WHERE id = 1").Scan(&want); err != nil {
				return err
			}
			// Damage the copy only once the change has reached it, so that it is not the
			// sink that repairs it.
			testenv.Eventually(t, time.Minute, "user 1's change on its shard", func() bool {
				for _, db := range w.Shards {
					var got string
					if db.QueryRowContext(ctx, "SELECT balance FROM "+mysqlx.QuoteTable(w.DB, "users")+" WHERE id = 1").Scan(&got) == nil && got == want {
						_, err := db.ExecContext(ctx, "UPDATE "+mysqlx.QuoteTable(w.DB, "users")+" SET note = 'damaged' WHERE id = 1")
						return err == nil
					}
				}
				return false
			})
			return nil
		}}
		rec, err := w.cutover(t, opts).Run(ctx)
		if err == nil || rec == nil || rec.State != cutover.StateAborted {
			t.Fatalf("cut-over: %v, record %+v, want aborted", err, rec)
		}
		if !strings.Contains(rec.Detail.Reason, "differ") || !strings.Contains(rec.Detail.Reason, users.Name) {
			t.Errorf("abort reason %q does not name the drift in %s", rec.Detail.Reason, users.Name)
		}
		if err := write(ctx, w.Source, w.DB); err != nil {
			t.Errorf("a write after the abort: %v", err)
		}
		if n := guardTriggers(t, w); n != 0 {
			t.Errorf("%d guard triggers left after the abort", n)
		}
	})
}
