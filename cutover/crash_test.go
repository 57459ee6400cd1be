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
	"github.com/cleave-dev/cleave/internal/testenv"
)

// TestMain removes the cleave binary the crash test builds.
func TestMain(m *testing.M) {
	code := m.Run()
	testenv.RemoveBinaries()
	os.Exit(code)
}

// TestKilledCutoverIsResolvedWhole kills `cleave cutover` with SIGKILL right after each
// state is journaled. At once the source takes writes again (a fence dies with its session)
// unless the kill came past the point of no return; then the next cut-over resolves the
// journal: before the switch to aborted with no trigger or guard row left, at the switch to
// done with the hook acknowledged and the guard refusing writes. Never half-switched.
func TestKilledCutoverIsResolvedWhole(t *testing.T) {
	testenv.EachFlavor(t, func(t *testing.T, env testenv.Env) {
		w := newWorld(t, env, true, nil)
		bin := testenv.CleaveBinary(t, testenv.TestHooksTag)
		for _, at := range []cutover.State{cutover.StateGate, cutover.StateVerify, cutover.StateFence,
			cutover.StateDrain, cutover.StateFencedVerify, cutover.StateSwitched} {
			t.Run(string(at), func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
				defer cancel()
				cmd := exec.CommandContext(ctx, bin, "cutover", "--config", w.Path, "--log-level", "warn")
				cmd.Env = append(os.Environ(), "CLEAVE_TEST_CUTOVER_KILL_AT="+string(at))
				out, err := cmd.CombinedOutput()
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
					t.Fatalf("cleave cutover was to kill itself at %s; it ended with %v:\n%s", at, err, out)
				}

				wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
				werr := write(wctx, w.Source, w.DB)
				wcancel()
				if at.Switched() {
					if !isGuardRefusal(werr) {
						t.Errorf("a write after a kill past the point of no return: %v, want the guard's refusal", werr)
					}
				} else if werr != nil {
					t.Errorf("a write right after the kill at %s: %v, want the source to take it (the fence must end with the session)", at, werr)
				}

				rec, err := w.cutover(t, cutover.Options{}).Resolve(ctx)
				if err != nil {
					t.Fatalf("resolve after the kill at %s: %v", at, err)
				}
				if rec == nil {
					t.Fatalf("resolve after the kill at %s found nothing to resolve", at)
				}
				recs, running, err := w.cutover(t, cutover.Options{}).Status(ctx, 1)
				if err != nil || running || len(recs) != 1 {
					t.Fatalf("status: %+v running %v err %v", recs, running, err)
				}
				got := recs[0]
				if at.Switched() {
					if got.State != cutover.StateDone || got.Detail.Hook == nil || !got.Detail.Hook.Acked {
						t.Errorf("a kill at %s resolved to %s (hook %+v), want done with the hook acknowledged", at, got.State, got.Detail.Hook)
					}
					if n := w.hook.received(); len(n) != 1 || n[0].CutoverID != got.ID {
						t.Errorf("hook notices %+v, want one for cut-over %d", n, got.ID)
					}
					if n := guarded(t, w); n != len(w.cfg.Tables) {
						t.Errorf("%d tables guarded, want %d", n, len(w.cfg.Tables))
					}
					testenv.Eventually(t, time.Minute, "the shards to equal the source", func() bool { return w.diff(t) == "" })
					return
				}
				if got.State != cutover.StateAborted {
					t.Errorf("a kill at %s resolved to %s, want aborted", at, got.State)
				}
				if n := guardTriggers(t, w); n != 0 {
					t.Errorf("%d guard triggers left after resolving a kill at %s", n, at)
				}
				if n := guarded(t, w); n != 0 {
					t.Errorf("%d guard rows left after resolving a kill at %s", n, at)
				}
				if len(w.hook.received()) != 0 {
					t.Errorf("the hook was called for a cut-over killed at %s", at)
				}
			})
		}
	})
}
