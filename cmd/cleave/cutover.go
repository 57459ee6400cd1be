package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cleave-dev/cleave/cutover"
)

func newCutoverCmd(a *app) *cobra.Command { return newSwitchCmd(a, false) }

func newRollbackCmd(a *app) *cobra.Command { return newSwitchCmd(a, true) }

const rollbackLong = `rollback moves the configured tables' writes from the shards back to the source, which
reverse replication (run by ` + "`cleave run`" + ` since the cut-over) has kept current:

  1. gate: the cut-over is done and not finalized, a hook is configured, the forward path
     is healthy (it takes over again), and every shard's reverse sink keeps up
     (cutover.max_sink_lag);
  2. verify: the rows changed on the shards since the switch are re-checked in rounds;
  3. fence: writes to the moved tables wait on every shard; a marker goes into each
     shard's binlog; every reverse sink must apply past its shard's marker, and the last
     changed rows are verified, within cutover.max_write_pause, else the rollback aborts
     and the writes to the shards go on;
  4. switch: the point of no return. Guard triggers make the shards refuse writes to the
     moved tables, the source takes them again, the fences are released, and the hook
     (event "rolled_back") tells the application to write to the source.

It is journaled on the source like a cut-over and resolved the same way after a crash:
before the switch to aborted (the shards' guards removed), after it to done.

Exit codes: 0 switched back (or the dry run passed), 1 the gate failed or the rollback
aborted (nothing switched back), 2 could not run (or switched back with the hook pending).`

func newSwitchCmd(a *app, back bool) *cobra.Command {
	var (
		dryRun, status, abort, asJSON bool
		maxPause                      time.Duration
	)
	cmd := &cobra.Command{
		Use:   "cutover",
		Short: "Switch the application's writes to the moved tables from the source to the shards, fenced and verified",
		Long: `cutover moves the configured tables' writes from the source to the shards:

  1. gate: the backfill is done, every shard's sink keeps up (cutover.max_sink_lag), a
     switch hook is configured, and a reconcile of the moved tables is clean;
  2. verify: the rows changed since then are re-checked in rounds under live writes;
  3. fence: writes to the moved tables wait on the source (LOCK TABLES ... READ); a marker
     goes into the binlog; every shard's sink must apply past it, and the last changed rows
     are verified, all within cutover.max_write_pause, else the cut-over aborts and the
     writes go on;
  4. switch: the point of no return. Guard triggers make the source refuse writes to the
     moved tables, the fence is released, and the hook (cutover.hook_url and/or
     cutover.hook_command) tells the application to write to the shards.

Every step is journaled on the source (_cleave.cutover) before it acts; a cut-over killed
at any step is resolved by the next ` + "`cleave cutover`" + ` (or ` + "`cleave run`" + `): before the switch to
aborted, after it to done.

Exit codes: 0 switched (or the dry run passed), 1 the gate failed or the cut-over aborted
(nothing switched), 2 could not run (or switched with the hook still pending).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := a.load(); err != nil {
				return err
			}
			n := 0
			for _, b := range []bool{dryRun, status, abort} {
				if b {
					n++
				}
			}
			if n > 1 {
				return &exitError{code: exitCannot, err: errors.New("--dry-run, --status and --abort exclude each other")}
			}
			if cmd.Flags().Changed("max-write-pause") {
				if maxPause < time.Second {
					return &exitError{code: exitCannot, err: fmt.Errorf("--max-write-pause must be at least 1s, got %s", maxPause)}
				}
				a.cfg.Cutover.MaxWritePause = maxPause
			}
			opts := cutover.Options{DryRun: dryRun}
			if err := cutoverTestHooks(&opts); err != nil {
				return &exitError{code: exitCannot, err: err}
			}
			c, err := cutover.New(a.cfg, a.log.Named("cutover"), opts)
			if err != nil {
				return &exitError{code: exitCannot, err: err}
			}
			defer c.Close()
			ctx := cmd.Context()
			out := cmd.OutOrStdout()
			switch {
			case status:
				recs, running, err := c.Status(ctx, 5)
				if err != nil {
					return &exitError{code: exitCannot, err: err}
				}
				if asJSON {
					return json.NewEncoder(out).Encode(map[string]any{"running": running, "cutovers": recs})
				}
				if len(recs) == 0 {
					fmt.Fprintln(out, "no cut-over yet")
					return nil
				}
				for i, r := range recs {
					if i == 0 && running && !r.State.Final() {
						fmt.Fprintln(out, "(running now)")
					}
					printRecord(out, r)
				}
				return nil
			case abort:
				rec, err := c.Abort(ctx)
				if err != nil {
					return &exitError{code: exitFinding, err: err}
				}
				printRecord(out, rec)
				return nil
			}
			run := c.Run
			if back {
				run = c.Rollback
			}
			rec, err := run(ctx)
			if rec != nil {
				if asJSON {
					_ = json.NewEncoder(out).Encode(rec)
				} else {
					printRecord(out, rec)
				}
			}
			switch {
			case err == nil:
				return nil
			case rec != nil && rec.State == cutover.StateSwitched:
				return &exitError{code: exitCannot, err: err}
			case rec != nil && (rec.State == cutover.StateAborted || dryRun):
				return &exitError{code: exitFinding, err: err}
			case cutover.IsGate(err):
				return &exitError{code: exitFinding, err: err}
			}
			return &exitError{code: exitCannot, err: err}
		},
	}
	if back {
		cmd.Use, cmd.Short, cmd.Long = "rollback", "Switch the application's writes to the moved tables from the shards back to the source, fenced and verified", rollbackLong
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "run the gate and one verification round, and change nothing")
	cmd.Flags().BoolVar(&status, "status", false, "show the latest cut-overs and whether one is running")
	cmd.Flags().BoolVar(&abort, "abort", false, "stop the running (or a stopped) cut-over before its point of no return; the source takes writes again")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the journal record as JSON")
	cmd.Flags().DurationVar(&maxPause, "max-write-pause", 0, "override cutover.max_write_pause: the longest writes to the moved tables may wait on the source (at least 1s)")
	return cmd
}

func printRecord(out interface{ Write([]byte) (int, error) }, r *cutover.Record) {
	if r == nil {
		return
	}
	id := fmt.Sprintf("cut-over %d", r.ID)
	if r.IsRollback() {
		id = fmt.Sprintf("rollback %d (of cut-over %d)", r.ID, r.Detail.Of)
	}
	if r.ID == 0 {
		id = "dry run"
	}
	fmt.Fprintf(out, "%s  state %s  tables %s\n", id, r.State, strings.Join(r.Detail.Tables, ", "))
	for _, s := range r.Detail.Steps {
		fmt.Fprintf(out, "  %-14s %s\n", s.State, s.At.UTC().Format(time.RFC3339Nano))
	}
	for i, rd := range r.Detail.Rounds {
		fmt.Fprintf(out, "  verify round %d: %d changed rows in %.2fs\n", i+1, rd.Rows, rd.Seconds)
	}
	if r.Detail.Fenced != nil {
		fmt.Fprintf(out, "  fenced verify: %d changed rows in %.2fs\n", r.Detail.Fenced.Rows, r.Detail.Fenced.Seconds)
	}
	if r.Detail.Marker != nil {
		fmt.Fprintf(out, "  marker at %s:%d\n", r.Detail.Marker.File, r.Detail.Marker.Pos)
	}
	for _, s := range r.Detail.Shards {
		if m := r.Detail.ShardMarkers[s]; m != nil {
			fmt.Fprintf(out, "  shard %s marker at %s:%d\n", s, m.File, m.Pos)
		}
	}
	if r.Detail.WritePauseMs > 0 {
		fmt.Fprintf(out, "  write pause %d ms\n", r.Detail.WritePauseMs)
	}
	if h := r.Detail.Hook; h != nil {
		fmt.Fprintf(out, "  hook: %d attempts, acknowledged %v\n", h.Attempts, h.Acked)
	}
	if r.Detail.Reason != "" {
		fmt.Fprintf(out, "  reason: %s\n", r.Detail.Reason)
	}
}
