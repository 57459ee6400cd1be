package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/cleave-dev/cleave/preflight"
)

func newCheckCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "check",
		Short: "Pre-flight: check that the source, the shards and Kafka are ready for cleave",
		Long: `check connects to the source, every shard and Kafka and prints one line per
requirement: "OK   <what>: <seen>", "WARN <what>: <problem>. Fix: <what to do>" or
"FAIL <what>: <problem>. Fix: <what to do>". It changes nothing on the source; on each
shard it may create the _cleave database with an empty scratch table, and on Kafka it
creates and deletes the topic <prefix>.cleave-check.

Exit status: 0 when nothing failed (warnings allowed), 1 when a check failed, 2 when the
checks could not run (an invalid configuration).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := a.load(); err != nil {
				return err
			}
			rep := preflight.Run(cmd.Context(), a.cfg)
			out := cmd.OutOrStdout()
			for _, f := range rep.Findings {
				fmt.Fprintln(out, f)
			}
			fmt.Fprintf(out, "%d OK, %d WARN, %d FAIL\n", rep.Count(preflight.OK), rep.Count(preflight.Warn), rep.Count(preflight.Fail))
			if !rep.OK() {
				return &exitError{code: exitFinding}
			}
			return nil
		},
	}
}
