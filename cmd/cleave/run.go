package main

import (
	"github.com/spf13/cobra"

	"github.com/cleave-dev/cleave/daemon"
	"github.com/cleave-dev/cleave/sink"
)

func newRunCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "run",
		Short: "The migration daemon: capture, every shard's sink and the scheduled reconcile in one process",
		Long: `run streams the source's binlog to Kafka (capture), applies the change events to every
shard (one sink per shard) and checks the shards against the source every
reconcile.interval, in one process. One HTTP listener (http.listen) serves /metrics
(Prometheus), /healthz (alive), /readyz (source, Kafka and every shard reachable; 503
naming each one that is not) and /status (JSON; cleave status prints it as a table).

The first part that fails stops the others: each finishes what it holds (a sink its
batch and offsets, capture its checkpoint) and run exits 2 naming the part and the error.
SIGTERM or Ctrl-C drains the parts the same way and exits 0.

Run cleave prepare first: run expects the shard tables and bookkeeping to exist.

The Go collector runs at GOGC=400 with a soft limit of GOMEMLIMIT=1GiB unless those
variables are set: decoding and encoding events allocate fast while the live heap
stays small, and the collector would otherwise take a large share of the CPU.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := a.load(); err != nil {
				return err
			}
			tuneGC(sink.GCPercent)
			d, err := daemon.New(a.cfg, daemon.Options{Log: a.log, Version: buildVersion()})
			if err != nil {
				return &exitError{code: exitCannot, err: err}
			}
			if err := d.Run(cmd.Context()); err != nil {
				return &exitError{code: exitCannot, err: err}
			}
			return nil
		},
	}
}
