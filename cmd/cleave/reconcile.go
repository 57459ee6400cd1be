package main

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/cleave-dev/cleave/reconcile"
)

func newReconcileCmd(a *app) *cobra.Command {
	var (
		jsonPath, repairSQLPath, statePath, alertStatePath string
		repair, resume, noProgress                         bool
		maxRPS, chunkSize, maxThreads                      int
		tables                                             []string
	)
	cmd := &cobra.Command{
		Use:   "reconcile",
		Short: "Compare the source with the shards once and name every row that differs",
		Long: `reconcile compares every configured table of the source with the union of the shards,
chunk by chunk along the primary key, drills mismatched chunks down to the rows, and
re-checks those rows against the sinks' progress so that replication lag is never called
drift. It prints a summary per table and shard.

Exit codes: 0 consistent, 1 drift found (and not repaired), 2 could not check.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := a.load(); err != nil {
				return err
			}
			if cmd.Flags().Changed("max-rows-per-second") {
				if maxRPS < 0 {
					return &exitError{code: exitCannot, err: errors.New("--max-rows-per-second must not be negative")}
				}
				a.cfg.Reconcile.MaxRowsPerSecond = maxRPS
			}
			if chunkSize < 0 {
				return &exitError{code: exitCannot, err: errors.New("--chunk-size must not be negative")}
			}
			opts := reconcile.Options{
				Tables:            tables,
				ChunkSize:         chunkSize,
				StatePath:         statePath,
				Resume:            resume,
				MaxThreadsRunning: maxThreads,
				RepairSQL:         repairSQLPath != "",
				Repair:            repair,
				AlertStatePath:    alertStatePath,
			}
			checkerOpts := []reconcile.Option{
				reconcile.WithOptions(opts),
				reconcile.WithLogger(a.log.Named("reconcile")),
				reconcile.WithRegisterer(prometheus.NewRegistry()),
			}
			var bar *progressbar.ProgressBar
			if !noProgress && term.IsTerminal(int(os.Stderr.Fd())) {
				bar = progressbar.NewOptions64(-1,
					progressbar.OptionSetWriter(os.Stderr),
					progressbar.OptionSetDescription("checking"),
					progressbar.OptionShowCount(),
					progressbar.OptionSetItsString("rows"),
					progressbar.OptionShowIts(),
					progressbar.OptionSetPredictTime(true),
					progressbar.OptionThrottle(200*time.Millisecond),
					progressbar.OptionClearOnFinish(),
				)
				checkerOpts = append(checkerOpts, reconcile.WithProgress(func(p reconcile.Progress) {
					if bar.GetMax64() != p.RowsTotal {
						bar.ChangeMax64(p.RowsTotal)
					}
					bar.Describe(p.Table)
					_ = bar.Set64(p.RowsDone)
				}))
			}
			checker, err := reconcile.New(a.cfg, checkerOpts...)
			if err != nil {
				return &exitError{code: exitCannot, err: err}
			}
			defer checker.Close()
			rep, err := checker.Run(cmd.Context())
			if bar != nil {
				_ = bar.Finish()
			}
			if err != nil {
				return &exitError{code: exitCannot, err: err}
			}
			rep.WriteSummary(cmd.OutOrStdout())
			if jsonPath != "" {
				if err := writeFile(jsonPath, func(f *os.File) error { return rep.WriteJSON(f) }); err != nil {
					return &exitError{code: exitCannot, err: fmt.Errorf("write --json %s: %w", jsonPath, err)}
				}
			}
			if repairSQLPath != "" {
				if err := writeFile(repairSQLPath, func(f *os.File) error { return writeRepairSQL(f, rep) }); err != nil {
					return &exitError{code: exitCannot, err: fmt.Errorf("write --repair-sql %s: %w", repairSQLPath, err)}
				}
			}
			if code := reconcile.ExitCode(rep, nil); code != exitOK {
				return &exitError{code: code}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&jsonPath, "json", "", "write the full report as JSON to this file")
	f.StringVar(&repairSQLPath, "repair-sql", "", "write the SQL that would fix each drifted row, per shard, to this file (dry run)")
	f.BoolVar(&repair, "repair", false, "apply the fixes through version-guarded writes, then re-check the rows")
	f.BoolVar(&resume, "resume", false, "continue a killed run from its last finished chunk (see --state)")
	f.StringVar(&statePath, "state", ".cleave-reconcile.state.json", "progress file written after every chunk, for --resume; removed when a run completes")
	f.StringVar(&alertStatePath, "alert-state", ".cleave-reconcile.alerts.json", "file remembering firing drift alerts between runs, so a clean run resolves them")
	f.IntVar(&maxRPS, "max-rows-per-second", 0, "throttle source reads to this many rows per second (overrides reconcile.max_rows_per_second; 0: unthrottled)")
	f.IntVar(&chunkSize, "chunk-size", 0, "rows per chunk (0: adapt to reconcile.chunk_target)")
	f.IntVar(&maxThreads, "max-threads-running", reconcile.DefaultMaxThreadsRunning, "pause while the source's Threads_running is above this (negative: never pause)")
	f.StringSliceVar(&tables, "table", nil, "check only this db.table (repeatable)")
	f.BoolVar(&noProgress, "no-progress", false, "no progress bar even on a terminal")
	return cmd
}

func writeFile(path string, write func(*os.File) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// writeRepairSQL writes the repair statements grouped by shard, each group to be run on
// that shard's server with the session settings cleave uses.
func writeRepairSQL(f *os.File, rep *reconcile.Report) error {
	fmt.Fprintf(f, "-- cleave reconcile repair, %s: %d drifted rows\n", rep.FinishedAt.Format(time.RFC3339), rep.DriftCount())
	if rep.Repair == nil || len(rep.Repair.Statements) == 0 {
		_, err := fmt.Fprintln(f, "-- nothing to repair")
		return err
	}
	shards := make([]string, 0, len(rep.Repair.Statements))
	for shard := range rep.Repair.Statements {
		shards = append(shards, shard)
	}
	sort.Strings(shards)
	for _, shard := range shards {
		stmts := rep.Repair.Statements[shard]
		fmt.Fprintf(f, "\n-- shard %s\nSET time_zone = '+00:00';\nSTART TRANSACTION;\n", shard)
		for _, s := range stmts {
			if len(s) > 2 && s[:2] == "--" {
				fmt.Fprintln(f, s)
				continue
			}
			fmt.Fprintln(f, s+";")
		}
		fmt.Fprintln(f, "COMMIT;")
	}
	return nil
}
