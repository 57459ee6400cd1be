package backfill

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/internal/testenv"
	"github.com/cleave-dev/cleave/mysqlx"
)

// runCleave runs the cleave binary with args and returns its output and exit code.
func runCleave(t *testing.T, timeout time.Duration, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, testenv.CleaveBinary(t), args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out.String(), 0
	case errors.As(err, &ee):
		return out.String(), ee.ExitCode()
	}
	t.Fatalf("cleave %v: %v\n%s", args, err, out.String())
	return "", -1
}

// TestBackfillCommandCopiesATableAgain: rows a shard lost behind cleave's back come back
// when `cleave backfill --table` asks the running copier to copy the table again; the
// command follows the copy and exits 0 once it is done. A request that arrives while a
// copy is under way restarts it from the start, and an unknown table is refused with
// exit code 2.
func TestBackfillCommandCopiesATableAgain(t *testing.T) {
	testenv.EachFlavor(t, func(t *testing.T, e testenv.Env) {
		w := newWorld(t, e, []tableSpec{{"items", itemsColumns, hashOn("id")}},
			func(c *config.Config) { c.Backfill.ChunkSize, c.Backfill.MaxRowsPerSecond = 500, 20000 })
		seedItems(t, w, 20_000)
		table := w.table("items")
		p := w.start(Options{PollInterval: 200 * time.Millisecond})
		w.waitDone(t, p, time.Minute)
		w.waitEqual(t, p, time.Minute, "items")

		t.Run("an unknown table is refused", func(t *testing.T) {
			out, code := runCleave(t, time.Minute, "backfill", "--config", w.Path, "--table", w.DB+".nope")
			if code != 2 || !strings.Contains(out, w.DB+".nope") || !strings.Contains(out, "not among the configured tables") {
				t.Fatalf("exit %d:\n%s", code, out)
			}
		})

		t.Run("rows a shard lost come back", func(t *testing.T) {
			var lost int64
			for _, sh := range w.Shards {
				res, err := sh.Exec("DELETE FROM " + mysqlx.QuoteTable(w.DB, "items") + " WHERE id % 7 = 0")
				if err != nil {
					t.Fatal(err)
				}
				n, _ := res.RowsAffected()
				lost += n
			}
			if lost == 0 {
				t.Fatal("nothing deleted on the shards")
			}
			if d := w.diff("items"); d == "" {
				t.Fatal("the shards still equal the source after losing rows")
			}
			before := p.status(table).ChunksCopied
			out, code := runCleave(t, 2*time.Minute, "backfill", "--config", w.Path, "--table", table)
			if code != 0 || !strings.Contains(out, "requested a new copy of "+table) || !strings.Contains(out, "every followed table is copied") {
				t.Fatalf("exit %d:\n%s", code, out)
			}
			w.waitEqual(t, p, time.Minute, "items")
			if after := p.status(table).ChunksCopied; after-before < 40 {
				t.Errorf("the copy again took %d chunks, want the whole table (40)", after-before)
			}
			t.Logf("%d rows lost on the shards came back; cleave backfill printed:\n%s", lost, out)
		})

		t.Run("a request during a copy restarts it from the start", func(t *testing.T) {
			store := NewStore(w.Env.KafkaBrokers, w.Prefix, 1)
			defer store.Close()
			ctx := context.Background()
			if _, err := store.Poll(ctx); err != nil {
				t.Fatal(err)
			}
			first, err := store.RequestCopy(ctx, table)
			if err != nil {
				t.Fatal(err)
			}
			progressOf := func() *Progress {
				if _, err := store.Poll(ctx); err != nil {
					t.Fatal(err)
				}
				return store.State().Current(table)
			}
			var half *Progress
			deadline := time.Now().Add(time.Minute)
			for half = progressOf(); half == nil || half.Chunks < 5; half = progressOf() {
				if time.Now().After(deadline) {
					t.Fatal("the first request's copy did not get under way")
				}
				time.Sleep(20 * time.Millisecond)
			}
			if half.Done {
				t.Fatal("the copy finished before the second request: the test meant to interrupt it")
			}
			second, err := store.RequestCopy(ctx, table)
			if err != nil {
				t.Fatal(err)
			}
			finished := func() bool {
				pr := progressOf()
				return pr != nil && pr.Done && pr.Request == second.ID
			}
			deadline = time.Now().Add(time.Minute)
			for !finished() {
				if time.Now().After(deadline) {
					t.Fatalf("no finished copy for the second request; progress %+v", progressOf())
				}
				time.Sleep(50 * time.Millisecond)
			}
			done := progressOf()
			if done.Chunks < 40 || done.Request == first.ID {
				t.Fatalf("the second request's copy: %+v (first request %s)", done, first.ID)
			}
			w.waitEqual(t, p, time.Minute, "items")
		})
	})
}
