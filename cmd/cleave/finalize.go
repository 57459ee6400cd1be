package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/cleave-dev/cleave/finalize"
)

func newFinalizeCmd(a *app) *cobra.Command {
	var (
		dryRun, yes, deleteTopics, asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "finalize",
		Short: "After the cut-over, remove cleave's bookkeeping so that the shards are plain databases",
		Long: `finalize is the last step of a migration. Once the latest cut-over of the topic prefix is
done, it removes from every shard the version column _cleave_version of each table whose
configuration names no version_column (a table's own version_column stays), and the
deployment's part of the _cleave database (the database itself once no other deployment
keeps anything in it). With --delete-topics it also deletes the deployment's Kafka topics:
the table topics, the dead-letter topics, the backfill and capture checkpoint topics.

It refuses, changing nothing, unless the cut-over is done, no sink runs (the shards'
offsets rows are idle and the sinks' consumer groups have no members), and a reconcile of
every table that finalize runs itself is consistent with no row in flight.

On the source it changes nothing: the moved tables stay as a frozen copy whose guard
triggers refuse writes (drop them when you no longer need them), and the cut-over journal
_cleave.cutover stays as the record of the migration.

Without --yes finalize is a dry run: it runs every check and prints every statement, and
changes nothing. Every step can be repeated; a run with nothing left says so.

Exit codes: 0 finalized (or the dry run passed, or nothing left), 1 refused (nothing
changed), 2 could not run.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dryRun && yes {
				return &exitError{code: exitCannot, err: errors.New("--dry-run and --yes exclude each other")}
			}
			if err := a.load(); err != nil {
				return err
			}
			f := finalize.New(a.cfg, a.log.Named("finalize"), finalize.Options{Apply: yes, DeleteTopics: deleteTopics})
			defer f.Close()
			rep, err := f.Run(cmd.Context())
			out := cmd.OutOrStdout()
			if asJSON {
				_ = json.NewEncoder(out).Encode(rep)
			} else {
				printFinalize(out, rep)
			}
			switch {
			case err == nil:
				return nil
			case finalize.IsRefused(err):
				return &exitError{code: exitFinding, err: err}
			}
			return &exitError{code: exitCannot, err: err}
		},
	}
	cmd.Flags().BoolVar(&yes, "yes", false, "make the changes (without it finalize is a dry run)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "run every check and print every statement, change nothing (the default without --yes)")
	cmd.Flags().BoolVar(&deleteTopics, "delete-topics", false, "also delete the deployment's Kafka topics (table, dead-letter, backfill and checkpoint topics)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}

func printFinalize(out io.Writer, r *finalize.Report) {
	if r == nil {
		return
	}
	for _, c := range r.Checks {
		mark := "ok  "
		if !c.OK {
			mark = "FAIL"
		}
		fmt.Fprintf(out, "%s %-14s %s\n", mark, c.Name, c.Detail)
		if !c.OK && c.Fix != "" {
			fmt.Fprintf(out, "     %-14s fix: %s\n", "", c.Fix)
		}
	}
	if r.NothingToDo {
		fmt.Fprintln(out, "nothing left to do: the shards hold no bookkeeping of this deployment")
	}
	if len(r.Actions) > 0 {
		switch {
		case !r.Applied:
			fmt.Fprintln(out, "dry run, nothing changed; with --yes finalize would run:")
		default:
			fmt.Fprintln(out, "changes:")
		}
		for _, a := range r.Actions {
			state := "  "
			if r.Applied {
				state = "- "
				if a.Done {
					state = "+ "
				}
			}
			fmt.Fprintf(out, "%s%s: %s\n", state, a.Where, a.Statement)
			if a.Note != "" {
				fmt.Fprintf(out, "    (%s)\n", a.Note)
			}
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintln(out, "note: "+n)
	}
}
