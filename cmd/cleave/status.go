package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/cleave-dev/cleave/daemon"
)

func newStatusCmd(a *app) *cobra.Command {
	var url string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Print the state of a running cleave run: positions, lag per shard, backfill, last reconcile",
		Long: `status asks a running cleave run for its /status and /readyz and prints them as tables:
capture's positions and lag, each shard's lag, consumer lag, breaker, applied events and
dead letters, backfill progress, and the last reconcile with its drift per table, shard
and kind. The daemon is found at --url, or at http.listen of the configuration.

Exit status: 0 when the daemon answers, is ready and its last reconcile found no drift;
1 when it is not ready or the last reconcile found drift; 2 when it cannot be reached.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			base := strings.TrimRight(url, "/")
			if base == "" {
				if err := a.load(); err != nil {
					return err
				}
				if a.cfg.HTTP.Listen == "" {
					return &exitError{code: exitCannot, err: fmt.Errorf("http.listen is empty in %s, so cleave run serves no /status: pass --url", a.configPath)}
				}
				base = statusURL(a.cfg.HTTP.Listen)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			body, err := fetch(ctx, base+"/status")
			if err != nil {
				return &exitError{code: exitCannot, err: err}
			}
			var st daemon.Status
			if err := json.Unmarshal(body, &st); err != nil {
				return &exitError{code: exitCannot, err: fmt.Errorf("%s/status is not a cleave status document: %w", base, err)}
			}
			ready := readiness(ctx, base)
			if asJSON {
				if _, err := cmd.OutOrStdout().Write(body); err != nil {
					return err
				}
			} else {
				writeStatus(cmd.OutOrStdout(), base, &st, ready, time.Now())
			}
			if !ready.ok || (st.Reconcile.Last != nil && st.Reconcile.Last.DriftRows > 0) {
				return &exitError{code: exitFinding}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&url, "url", "", "base URL of the daemon's HTTP listener (default: from http.listen of --config)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the /status document as it is")
	return cmd
}

// statusURL turns http.listen into a URL to reach it from this machine: a wildcard host
// becomes the loopback address.
func statusURL(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "http://" + listen
	}
	switch host {
	case "", "0.0.0.0", "::", "[::]":
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

func fetch(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cleave run does not answer at %s: %w (is it running, and is http.listen right?)", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return body, nil
}

// readyState is the answer of /readyz: ok, or the reasons it gave.
type readyState struct {
	ok      bool
	reasons []string
}

func readiness(ctx context.Context, base string) readyState {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/readyz", nil)
	if err != nil {
		return readyState{reasons: []string{err.Error()}}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return readyState{reasons: []string{err.Error()}}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode == http.StatusOK {
		return readyState{ok: true}
	}
	var rs readyState
	for _, line := range strings.Split(strings.TrimSpace(string(body)), "\n") {
		if line = strings.TrimSpace(strings.TrimPrefix(line, "not ready:")); line != "" {
			rs.reasons = append(rs.reasons, line)
		}
	}
	if len(rs.reasons) == 0 {
		rs.reasons = []string{resp.Status}
	}
	return rs
}

// writeStatus prints the status document as a few aligned tables.
func writeStatus(w io.Writer, base string, s *daemon.Status, ready readyState, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	defer tw.Flush()
	p := func(format string, args ...any) { fmt.Fprintf(tw, format+"\n", args...) }

	p("cleave %s at %s, up %s", s.Version, base, dur(s.UptimeSeconds))
	flavor := ""
	if s.Source.Flavor != "" {
		flavor = " (" + s.Source.Flavor + ")"
	}
	p("source %s%s, kafka %s, topic prefix %s", s.Source.Addr, flavor, strings.Join(s.Kafka.Brokers, ","), s.Kafka.TopicPrefix)
	if ready.ok {
		p("ready: yes")
	} else {
		p("ready: NO")
		for _, r := range ready.reasons {
			p("  %s", r)
		}
	}

	p("")
	state := "not streaming"
	if s.Capture.Streaming {
		state = "streaming"
	}
	p("CAPTURE\t%s, lag %s, %d events, %d produce errors", state, dur(s.Capture.LagSeconds), s.Capture.Events, s.Capture.ProduceErrors)
	p("  read\t%s", orDash(s.Capture.Read))
	p("  acknowledged\t%s", orDash(s.Capture.Acknowledged))
	p("  stored\t%s", orDash(s.Capture.Stored))

	p("")
	p("SHARD\tADDR\tLAG\tCONSUMER LAG\tBREAKER\tAPPLIED\tRETRIES\tDEAD LETTERS")
	for _, sh := range s.Shards {
		lag := "-"
		if sh.LagSeconds != nil {
			lag = dur(*sh.LagSeconds)
		}
		p("%s\t%s\t%s\t%d\t%s\t%d\t%d\t%d", sh.Name, sh.Addr, lag, sh.ConsumerLag, sh.Breaker, sh.Applied, sh.Retries, sh.DeadLetters)
	}

	p("")
	if len(s.Backfill) == 0 {
		p("BACKFILL\tnothing reported")
	} else {
		p("BACKFILL\tPROGRESS\tROWS COPIED\tETA")
		for _, b := range s.Backfill {
			eta := "-"
			if b.ETASeconds != nil {
				eta = dur(*b.ETASeconds)
			}
			p("%s\t%.1f%%\t%d\t%s", b.Table, 100*b.Progress, b.RowsCopied, eta)
		}
	}

	p("")
	r := s.Reconcile
	schedule := "not scheduled (reconcile.interval 0)"
	if r.Interval != "0s" && r.Interval != "" {
		schedule = "every " + r.Interval
	}
	switch {
	case r.Running:
		schedule += ", running now"
	case r.NextAt != nil:
		schedule += ", next in " + dur(r.NextAt.Sub(now).Seconds())
	}
	p("RECONCILE\t%s", schedule)
	if r.LastSuccessAt != nil {
		p("  last success\t%s ago", dur(now.Sub(*r.LastSuccessAt).Seconds()))
	}
	if l := r.Last; l != nil {
		p("  last run\t%s, %d drifted rows, finished %s ago, took %s", l.Status, l.DriftRows,
			dur(now.Sub(l.FinishedAt).Seconds()), dur(l.FinishedAt.Sub(l.StartedAt).Seconds()))
		if l.Error != "" {
			p("  error\t%s", l.Error)
		}
		for _, n := range l.Notes {
			p("  note\t%s", n)
		}
		if len(l.Tables) > 0 {
			p("")
			p("TABLE\tROWS CHECKED\tDRIFT\tIN FLIGHT\tERROR")
			for _, t := range l.Tables {
				p("%s\t%d\t%d\t%d\t%s", t.Table, t.RowsChecked, t.DriftRows, t.InFlight, orDash(t.Error))
			}
		}
		if len(l.Drift) > 0 {
			p("")
			p("DRIFT TABLE\tSHARD\tKIND\tROWS")
			for _, dc := range l.Drift {
				p("%s\t%s\t%s\t%d", dc.Table, dc.Shard, dc.Kind, dc.Rows)
			}
		}
	} else {
		p("  last run\tnone yet")
	}
	if c := s.Cutover; c != nil {
		p("")
		line := fmt.Sprintf("%d %s, %s ago", c.ID, c.State, dur(now.Sub(c.UpdatedAt).Seconds()))
		if c.Kind == "rollback" {
			line = "rollback " + line
		}
		if c.WritePauseMs > 0 {
			line += fmt.Sprintf(", write pause %d ms", c.WritePauseMs)
		}
		p("CUTOVER\t%s", line)
		if c.Reason != "" {
			p("  reason\t%s", c.Reason)
		}
	}
	if r := s.Reverse; r != nil {
		p("")
		p("REVERSE (cut-over %d)\tSTREAMING\tCAPTURE LAG\tSINK LAG\tAPPLIED\tREAD", r.CutoverID)
		for _, sh := range r.Shards {
			sink := "-"
			if sh.SinkLagSeconds != nil {
				sink = dur(*sh.SinkLagSeconds)
			}
			p("%s\t%v\t%s\t%s\t%d\t%s", sh.Shard, sh.Streaming, dur(sh.CaptureLagSeconds), sink, sh.Applied, sh.Read)
		}
	}
}

// dur prints seconds as a short duration: 0.4s, 12s, 3m5s, 2h0m.
func dur(sec float64) string {
	if sec < 0 {
		sec = 0
	}
	d := time.Duration(sec * float64(time.Second))
	switch {
	case d < 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	default:
		return strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
