package main

import (
	"context"
	"errors"
	"fmt"
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/cleave-dev/cleave/capture"
	"github.com/cleave-dev/cleave/opshttp"
)

func newCaptureCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "capture",
		Short: "Stream every row change of the configured tables from the source's binlog to Kafka",
		Long: `capture connects to the source as a replica (source.server_id) and writes every row
change of the configured tables to the topic <prefix>.<db>.<table>, keyed by primary key,
with acks from all in-sync replicas. It resumes from the checkpoint in the topic
<prefix>.capture.checkpoint; without one it starts at the source's current position
(rows that existed before are copied by the backfill). Schema changes on configured
tables follow ddl.policy. When http.listen is set it serves /metrics, /healthz, /readyz
and /status there.

SIGTERM or SIGINT stops reading, waits for Kafka to acknowledge what was sent, stores
the final checkpoint and exits 0. Exit status 2: capture could not run or stopped on an
error (a purged checkpoint, a schema change under ddl.policy stop, a server_id in use).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := a.load(); err != nil {
				return err
			}
			tuneGC(capture.GCPercent)
			reg := prometheus.NewRegistry()
			reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
			opshttp.BuildInfo(reg, buildVersion(), runtime.Version())
			c, err := capture.New(a.cfg, capture.Options{Log: a.log.Named("capture"), Registerer: reg})
			if err != nil {
				return &exitError{code: exitCannot, err: err}
			}
			if err := runCapture(cmd.Context(), a, c, reg); err != nil {
				return &exitError{code: exitCannot, err: fmt.Errorf("capture: %w", err)}
			}
			return nil
		},
	}
}

// runCapture runs c and, when http.listen is set, the operational endpoints beside it;
// the first to fail stops the other.
func runCapture(ctx context.Context, a *app, c *capture.Capture, reg *prometheus.Registry) error {
	g, ctx := errgroup.WithContext(ctx)
	// The HTTP server stops when capture does, whether it ended on an error or on a signal.
	httpCtx, stopHTTP := context.WithCancel(ctx)
	defer stopHTTP()
	g.Go(func() error {
		defer stopHTTP()
		return c.Run(ctx)
	})
	if a.cfg.HTTP.Listen != "" {
		srv := &opshttp.Server{
			Listen:   a.cfg.HTTP.Listen,
			Gatherer: reg,
			Log:      a.log,
			Pprof:    a.cfg.HTTP.Pprof,
			Status:   func(context.Context) any { return map[string]any{"capture": c.Status()} },
			Checks: []opshttp.Check{{Name: "capture", Fn: func(context.Context) error {
				if !c.Status().Streaming {
					return errors.New("not streaming from the source")
				}
				return nil
			}}},
		}
		g.Go(func() error { return srv.Run(httpCtx) })
	}
	return g.Wait()
}
