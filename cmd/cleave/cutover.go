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

func newCutoverCmd(a *app) *cobra.Command {
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
			rec, err := c.Run(ctx)
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
