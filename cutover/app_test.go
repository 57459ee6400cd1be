package cutover_test

import (
	"context"
	"testing"
	"time"

	"github.com/cleave-dev/cleave/cutover"
	"github.com/cleave-dev/cleave/internal/loadgen"
	"github.com/cleave-dev/cleave/internal/testenv"
)

// TestApplicationFollowsTheCutoverAndLosesNothingItAcknowledged cuts over under an
// application that writes to the source and, told by the hook (or by the guard's refusal,
// whichever comes first), sends each transaction to the shard that owns its user. After
// it stops, an independent SELECT of the shards holds every change it had acknowledged,
// before the switch and after, exactly once and on the owning shard only. The write pause
// it saw is logged, not asserted: timing is the benchmark's business. Reverse replication
// then brings the shards' changes back: the source ends equal to the shards.
func TestApplicationFollowsTheCutoverAndLosesNothingItAcknowledged(t *testing.T) {
	testenv.EachFlavor(t, func(t *testing.T, env testenv.Env) {
		w := newWorld(t, env, true, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		app, stopApp := w.startApp(t, ctx, 700, 5)

		rec, err := w.cutover(t, cutover.Options{}).Run(ctx)
		if err != nil {
			t.Fatalf("cut-over failed: %v (record %+v)", err, rec)
		}
		if rec.State != cutover.StateDone {
			t.Fatalf("cut-over ended in state %s, want done", rec.State)
		}
		switchedAt, byRefusal, ok := app.Switched()
		if !ok {
			t.Fatal("the cut-over is done and the application has not switched")
		}
		// Writing on the shards for a while after the switch.
		onShards := app.Stats().OnShards
		testenv.Eventually(t, time.Minute, "the application to write to the shards", func() bool { return app.Stats().OnShards > onShards+200 })
		if err := stopApp(); err != nil {
			t.Fatalf("the application: %v", err)
		}

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
		if st.Transactions == st.OnShards || st.OnShards == 0 {
			t.Errorf("the application acknowledged %d transactions, %d of them on the shards: want some on each side of the switch", st.Transactions, st.OnShards)
		}

		from, to := rec.FenceWindow()
		samples := app.Samples()
		t.Logf("cut-over %d: rounds %+v, fenced %+v, journaled write pause %d ms; the application switched %s after the fence (by the guard's refusal: %v), "+
			"acknowledged %d transactions (%d on the shards, %d retried there after a refusal); checked %d users, %d live and %d deleted orders",
			rec.ID, rec.Detail.Rounds, rec.Detail.Fenced, rec.Detail.WritePauseMs, switchedAt.Sub(from).Round(time.Millisecond), byRefusal,
			st.Transactions, st.OnShards, st.Refused, check.Users, check.Orders, check.Deleted)
		if st.Failed > 0 {
			t.Errorf("the servers refused %d attempts with an error other than the guard's (rolled back, retried): %q; a cut-over must only pause writes, or refuse them once switched", st.Failed, st.Failures)
		}
		t.Logf("write pause the application saw: across the fence %s; overall %s", loadgen.PauseOf(samples, from, to), loadgen.PauseOf(samples, time.Time{}, time.Time{}))

		// Reverse replication kept the source a complete copy: every change the application
		// made on the shards is back on the source, which an independent SELECT finds equal to
		// the union of the shards.
		testenv.Eventually(t, 2*time.Minute, "the source to follow the shards", func() bool { return w.diff(t) == "" })
	})
}
