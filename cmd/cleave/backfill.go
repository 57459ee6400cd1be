package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/cleave-dev/cleave/backfill"
)

func newBackfillCmd(a *app) *cobra.Command {
	var (
		tables             []string
		all, detach, quiet bool
	)
	cmd := &cobra.Command{
		Use:   "backfill",
		Short: "Copy tables' existing rows into the stream again, and follow the backfill's progress",
		Long: `The backfill copies the rows a table holds into the change stream, in chunks along the
primary key, each read in a short consistent snapshot and woven into capture's stream so
that a copied row never overwrites a newer change. cleave run copies every configured
table whose copy is not done when it starts, a table new to the configuration too, and
stores its progress per chunk in the topic <prefix>.backfill, so a restart resumes.

cleave backfill does not copy anything itself: the copy needs capture's stream, so it runs
in the process that runs capture (cleave run). With --table (or --all) it stores a request
to copy those tables again from the start — after the shards lost rows, or after a schema
change made by hand; copying again is safe at any time — and a running cleave run picks
the request up within seconds. Then it follows the copy of those tables (of every
configured table without --table) with a progress bar and ETA on a terminal, a line per
table every ten seconds otherwise, until they are done.

Exit codes: 0 the tables are copied (or, with --detach, the requests are stored),
2 could not run (an unknown table, Kafka unreachable). Ctrl-C stops following only: the
requests stay stored and the copy goes on.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := a.load(); err != nil {
				return err
			}
			configured := map[string]bool{}
			var names []string
			for _, t := range a.cfg.Tables {
				configured[t.Name] = true
				names = append(names, t.Name)
			}
			var unknown []string
			for _, t := range tables {
				if !configured[t] {
					unknown = append(unknown, t)
				}
			}
			if len(unknown) > 0 {
				return &exitError{code: exitCannot, err: fmt.Errorf("--table %s: not among the configured tables (%s); add it to tables: in the configuration first",
					strings.Join(unknown, ", "), strings.Join(names, ", "))}
			}
			if all {
				tables = names
			}
			ctx := cmd.Context()
			store := backfill.NewStore(a.cfg.Kafka.Brokers, a.cfg.Kafka.TopicPrefix, a.cfg.Kafka.ReplicationFactor)
			defer store.Close()
			if err := store.Ensure(ctx); err != nil {
				return &exitError{code: exitCannot, err: err}
			}
			if _, err := store.Poll(ctx); err != nil {
				return &exitError{code: exitCannot, err: err}
			}
			out := cmd.OutOrStdout()
			for _, t := range tables {
				r, err := store.RequestCopy(ctx, t)
				if err != nil {
					return &exitError{code: exitCannot, err: err}
				}
				fmt.Fprintf(out, "requested a new copy of %s (request %s)\n", t, r.ID)
			}
			if detach {
				return nil
			}
			follow := tables
			if len(follow) == 0 {
				follow = names
			}
			fmt.Fprintf(out, "following the backfill of %d table(s); the copy runs in cleave run (Ctrl-C stops following, not the copy)\n", len(follow))
			var view progressView = &lineView{out: out, every: 10 * time.Second, quiet: quiet}
			if !quiet && term.IsTerminal(int(os.Stderr.Fd())) {
				view = &barView{}
			}
			started := time.Now()
			warned := false
			err := backfill.Follow(ctx, store, follow, time.Second, func(fs []backfill.Followed) {
				view.show(fs)
				if !warned && len(tables) > 0 && time.Since(started) > 30*time.Second {
					for _, f := range fs {
						if f.Progress == nil {
							fmt.Fprintf(os.Stderr, "no copier has picked up the request for %s after 30s: is cleave run running with this configuration (kafka.topic_prefix %s)? The request stays stored until one does.\n",
								f.Table, a.cfg.Kafka.TopicPrefix)
							warned = true
							break
						}
					}
				}
			})
			view.close()
			switch {
			case errors.Is(err, context.Canceled):
				fmt.Fprintln(out, "stopped following; the copy goes on in cleave run")
				return nil
			case err != nil:
				return &exitError{code: exitCannot, err: err}
			}
			fmt.Fprintf(out, "every followed table is copied\n")
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&tables, "table", nil, "copy this table (db.table) again from the start; repeatable")
	cmd.Flags().BoolVar(&all, "all", false, "copy every configured table again from the start")
	cmd.Flags().BoolVar(&detach, "detach", false, "store the requests and exit without following the copy")
	cmd.Flags().BoolVar(&quiet, "quiet", false, "print only when a table is done")
	return cmd
}

// progressView shows the followed tables.
type progressView interface {
	show(fs []backfill.Followed)
	close()
}

// lineView prints a line per table every so often, and one when a table is done.
type lineView struct {
	out   interface{ Write([]byte) (int, error) }
	every time.Duration
	quiet bool
	last  time.Time
	done  map[string]bool
}

func (v *lineView) show(fs []backfill.Followed) {
	if v.done == nil {
		v.done = map[string]bool{}
	}
	due := !v.quiet && time.Since(v.last) >= v.every
	if due {
		v.last = time.Now()
	}
	for _, f := range fs {
		switch {
		case f.Done() && !v.done[f.Table]:
			v.done[f.Table] = true
			fmt.Fprintf(v.out, "%s: done, %d rows in %d chunks\n", f.Table, f.Progress.Rows, f.Progress.Chunks)
		case f.Done():
		case due && f.Progress == nil:
			fmt.Fprintf(v.out, "%s: waiting for the copier\n", f.Table)
		case due:
			eta := "unknown"
			if f.ETASeconds != nil {
				eta = (time.Duration(*f.ETASeconds) * time.Second).String()
			}
			fmt.Fprintf(v.out, "%s: %.1f%%, %d of about %d rows, %.0f rows/s, ETA %s\n", f.Table, 100*f.Progress.Ratio(), f.Progress.Rows, f.Progress.Estimate, f.RowsPerSecond, eta)
		}
	}
}

func (v *lineView) close() {}

// barView draws a progress bar with ETA for the table being copied, and leaves a line for
// each table done.
type barView struct {
	bar   *progressbar.ProgressBar
	table string
	done  map[string]bool
}

func (v *barView) show(fs []backfill.Followed) {
	if v.done == nil {
		v.done = map[string]bool{}
	}
	for _, f := range fs {
		if f.Done() && !v.done[f.Table] {
			v.done[f.Table] = true
			if v.bar != nil && v.table == f.Table {
				_ = v.bar.Set64(f.Progress.Rows)
				_ = v.bar.Finish()
				v.bar = nil
			}
			fmt.Fprintf(os.Stderr, "\n%s: done, %d rows in %d chunks\n", f.Table, f.Progress.Rows, f.Progress.Chunks)
		}
	}
	for _, f := range fs {
		if f.Done() || f.Progress == nil {
			continue
		}
		if v.bar == nil || v.table != f.Table {
			if v.bar != nil {
				_ = v.bar.Finish()
			}
			v.table = f.Table
			// Progress arrives per stored chunk, in jumps: the bar shows the rate and ETA
			// Follow measures over a minute rather than its own.
			v.bar = progressbar.NewOptions64(max(f.Progress.Estimate, 1),
				progressbar.OptionSetWriter(os.Stderr),
				progressbar.OptionSetDescription(f.Table),
				progressbar.OptionShowCount(),
				progressbar.OptionSetPredictTime(false),
				progressbar.OptionSetElapsedTime(true),
				progressbar.OptionShowDescriptionAtLineEnd(),
				progressbar.OptionThrottle(200*time.Millisecond),
				progressbar.OptionFullWidth(),
			)
		}
		if v.bar.GetMax64() < f.Progress.Estimate {
			v.bar.ChangeMax64(f.Progress.Estimate)
		}
		desc := f.Table
		if f.RowsPerSecond > 0 {
			desc += fmt.Sprintf(" %.0f rows/s", f.RowsPerSecond)
		}
		if f.ETASeconds != nil {
			desc += " ETA " + (time.Duration(*f.ETASeconds) * time.Second).String()
		}
		v.bar.Describe(desc)
		_ = v.bar.Set64(f.Progress.Rows)
		return // the copier copies one table at a time
	}
}

func (v *barView) close() {
	if v.bar != nil {
		_ = v.bar.Exit()
	}
}
