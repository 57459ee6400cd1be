package main

import (
	"context"
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/cleave-dev/cleave/kafkax"
	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/opshttp"
	"github.com/cleave-dev/cleave/sink"
)

func newSinkCmd(a *app) *cobra.Command {
	var shard, listen string
	cmd := &cobra.Command{
		Use:   "sink --shard NAME",
		Short: "Apply the change events routed to one shard, from Kafka to the shard",
		Long: `sink joins the shard's consumer group (<prefix>.sink.<shard>) on every table topic, keeps
the rows the routing gives to the shard and applies them in version-checked batches, each
one shard transaction that also stores its Kafka offsets. Start several for one shard to
split its partitions between them.

SIGTERM or SIGINT finishes the batch in hand, stores its offsets and exits 0. An event the
shard rejects for good stops the sink with an error naming it (sink.on_error: stop) or goes
to <prefix>.dlq.<shard> (sink.on_error: dead_letter).

Exit status: 0 after a signal, 2 on any error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := a.load(); err != nil {
				return err
			}
			if cmd.Flags().Changed("listen") {
				a.cfg.HTTP.Listen = listen
			}
			if err := runSink(cmd.Context(), a, shard); err != nil {
				return &exitError{code: exitCannot, err: err}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&shard, "shard", "", "name of the shard to apply to (one of shards[*].name); required")
	cmd.Flags().StringVar(&listen, "listen", "", "override http.listen for this process (\"\" disables the listener)")
	_ = cmd.MarkFlagRequired("shard")
	return cmd
}

func runSink(ctx context.Context, a *app, shard string) error {
	tuneGC(sink.GCPercent)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	opshttp.BuildInfo(reg, buildVersion(), runtime.Version())
	opts := sink.Options{Log: a.log, Registry: reg}
	if err := testHooks(&opts); err != nil {
		return err
	}
	s, err := sink.New(a.cfg, shard, opts)
	if err != nil {
		return err
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.Run(ctx) })
	if a.cfg.HTTP.Listen != "" {
		shardDSN := a.cfg.Shards[a.cfg.ShardIndex(shard)].DSN
		srv := &opshttp.Server{
			Listen:   a.cfg.HTTP.Listen,
			Gatherer: reg,
			Log:      a.log,
			Pprof:    a.cfg.HTTP.Pprof,
			Checks: []opshttp.Check{
				{Name: "shard " + shard, Fn: func(ctx context.Context) error {
					db, err := mysqlx.Open(ctx, "shard "+shard, shardDSN)
					if err != nil {
						return err
					}
					return db.Close()
				}},
				{Name: "kafka", Fn: func(ctx context.Context) error { return kafkax.Ping(ctx, a.cfg.Kafka.Brokers) }},
			},
			Status: func(context.Context) any { return map[string]any{"sink": s.Status()} },
		}
		g.Go(func() error {
			err := srv.Run(ctx)
			if ctx.Err() != nil {
				return nil
			}
			return err
		})
	}
	return g.Wait()
}
