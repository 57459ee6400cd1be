package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/cleave-dev/cleave/prepare"
)

func newPrepareCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "prepare",
		Short: "Create the shard databases, tables and bookkeeping, and the Kafka topics",
		Long: `prepare creates on every shard cleave's bookkeeping database (_cleave), the source
databases and the configured tables, from the source's own SHOW CREATE TABLE without its
AUTO_INCREMENT counter and foreign keys, plus the version column _cleave_version where a
table has no version_column; then it creates the Kafka topics: one per table and one
dead-letter topic per shard. It prints one line per object: created, or already up to
date.

Running it again changes nothing. A shard table that exists with another definition than
the source's is an error naming the shard, the table and each difference; prepare never
alters or drops it.

A shard may run the other product than the source (MySQL, MariaDB). Each table is made as
that product spells it (a collation under its name there, JSON as it stores JSON), and a
column whose collation has no exact equal there (MySQL's default utf8mb4_0900_ai_ci on
MariaDB, MariaDB's uca1400 collations on MySQL) is refused by name before anything is
created: such a shard would compare and order strings otherwise than the source.

Exit status: 0 when everything is ready, 2 on any error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := a.load(); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			err := prepare.Run(cmd.Context(), a.cfg, func(s prepare.Step) { fmt.Fprintln(out, s) })
			if err == nil {
				return nil
			}
			var diff *prepare.DiffError
			if errors.As(err, &diff) {
				err = fmt.Errorf("%w\nA shard table differs from the source: alter it to match, or drop it (if it holds nothing but what cleave copied) and run prepare again", err)
			}
			return &exitError{code: exitCannot, err: err}
		},
	}
}
