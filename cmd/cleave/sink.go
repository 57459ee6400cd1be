package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/cleave-dev/cleave/kafkax"
	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/opshttp"
	"github.com/cleave-dev/cleave/sink"
)

// Test-only environment variables: fault injection for the sink's crash tests. They are
// read only here, never by the sink package, and do nothing unless set.
const (
	// envCrashBeforeCommit=N kills the process with SIGKILL inside its N-th batch, after
	// the rows and offsets are written and before the shard transaction commits.
	envCrashBeforeCommit = "CLEAVE_TEST_CRASH_BEFORE_COMMIT"
	// envSessionTimeout shortens the consumer group session (a Go duration), so that a
	// killed member's partitions move on quickly.
	envSessionTimeout = "CLEAVE_TEST_GROUP_SESSION_TIMEOUT"
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

// testHooks installs the fault injection asked for by the test-only environment variables.
func testHooks(opts *sink.Options) error {
	if v := os.Getenv(envSessionTimeout); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("%s: %q is not a duration", envSessionTimeout, v)
		}
		opts.SessionTimeout = d
	}
	if v := os.Getenv(envCrashBeforeCommit); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return fmt.Errorf("%s: %q is not a positive number of batches", envCrashBeforeCommit, v)
		}
		var batches atomic.Int64
		opts.BeforeCommit = func(context.Context) error {
			if batches.Add(1) >= int64(n) {
				// A crash, not an exit: nothing is flushed, nothing is rolled back cleanly.
				_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
				select {}
			}
			return nil
		}
	}
	return nil
}
