package finalize

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/cleave-dev/cleave/cutover"
	"github.com/cleave-dev/cleave/kafkax"
	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/reconcile"
	"github.com/cleave-dev/cleave/shardmeta"
)

// checkCutover requires the newest cut-over of the topic prefix to be done.
func (f *Finalizer) checkCutover(ctx context.Context, rep *Report) error {
	prefix := f.cfg.Kafka.TopicPrefix
	rec, err := cutover.LatestSwitched(ctx, f.source, prefix)
	if err != nil {
		return err
	}
	f.rec = rec
	c := Check{Name: "cutover"}
	switch {
	case rec == nil:
		c.Detail = fmt.Sprintf("the source's journal (_cleave.cutover) has no switched cut-over of topic prefix %q", prefix)
		c.Fix = "run `cleave cutover` first: finalize removes what the sinks need, so it runs only after the application writes to the shards"
	case rec.IsRollback():
		c.Detail = fmt.Sprintf("rollback %d of topic prefix %q (state %s) moved the tables back to the source", rec.ID, prefix, rec.State)
		c.Fix = "finalize only after a cut-over: run `cleave cutover` again first, or, to abandon the migration, leave the shards alone"
	case rec.State != cutover.StateDone:
		c.Detail = fmt.Sprintf("the latest cut-over of topic prefix %q (%d) is in state %s, not %s", prefix, rec.ID, rec.State, cutover.StateDone)
		c.Fix = "finish it (`cleave cutover --status`; `cleave cutover` resolves a stopped one) and run finalize when it is done"
	default:
		c.OK = true
		c.Detail = fmt.Sprintf("cut-over %d of topic prefix %q is done (%s)", rec.ID, prefix, rec.UpdatedAt.UTC().Format(time.RFC3339))
	}
	rep.check(c)
	return nil
}

// checkSinks requires every shard's sink to be stopped: its offsets rows idle for
// Options.SinkIdle on the shard's own clock, and its consumer group without members. Either
// alone can miss a sink: an idle sink whose capture stopped no longer writes offsets, and
// a sink between two sessions of the group is briefly no member.
func (f *Finalizer) checkSinks(ctx context.Context, rep *Report) error {
	var groups []string
	for _, s := range f.cfg.Shards {
		groups = append(groups, kafkax.SinkGroup(f.cfg.Kafka.TopicPrefix, s.Name))
	}
	q := "SELECT consumer_group, COUNT(*), TIMESTAMPDIFF(MICROSECOND, MAX(updated_at), NOW(6)) FROM " +
		mysqlx.QuoteTable(shardmeta.Database, shardmeta.Offsets) + " WHERE consumer_group IN (" + placeholders(len(groups)) + ") GROUP BY consumer_group"
	args := make([]any, len(groups))
	for i, g := range groups {
		args[i] = g
	}
	var busy []string
	for i, db := range f.shards {
		name := f.cfg.Shards[i].Name
		rows, err := db.QueryContext(ctx, q, args...)
		if n := mysqlx.Number(err); n == mysqlx.ErNoSuchTable || n == mysqlx.ErBadDB {
			continue // no bookkeeping: no sink writes here
		}
		if err != nil {
			return fmt.Errorf("read the sinks' offsets on shard %s: %w", name, err)
		}
		for rows.Next() {
			var group string
			var n int
			var ageUs int64
			if err := rows.Scan(&group, &n, &ageUs); err != nil {
				rows.Close()
				return fmt.Errorf("read the sinks' offsets on shard %s: %w", name, err)
			}
			if age := time.Duration(ageUs) * time.Microsecond; age < f.opts.SinkIdle {
				busy = append(busy, fmt.Sprintf("shard %s: group %s stored offsets %s ago", name, group, age.Round(time.Millisecond)))
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("read the sinks' offsets on shard %s: %w", name, err)
		}
	}
	// The reverse sinks store their offsets in the source.
	if rg := f.reverseGroups(); len(rg) > 0 {
		rows, err := f.source.QueryContext(ctx, "SELECT consumer_group, TIMESTAMPDIFF(MICROSECOND, MAX(updated_at), NOW(6)) FROM "+
			mysqlx.QuoteTable(shardmeta.Database, shardmeta.Offsets)+" WHERE consumer_group IN ("+placeholders(len(rg))+") GROUP BY consumer_group", anys(rg)...)
		switch n := mysqlx.Number(err); {
		case n == mysqlx.ErNoSuchTable || n == mysqlx.ErBadDB:
		case err != nil:
			return fmt.Errorf("read the reverse sinks' offsets on the source: %w", err)
		default:
			for rows.Next() {
				var group string
				var ageUs int64
				if err := rows.Scan(&group, &ageUs); err != nil {
					rows.Close()
					return fmt.Errorf("read the reverse sinks' offsets on the source: %w", err)
				}
				if age := time.Duration(ageUs) * time.Microsecond; age < f.opts.SinkIdle {
					busy = append(busy, fmt.Sprintf("source: reverse group %s stored offsets %s ago", group, age.Round(time.Millisecond)))
				}
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return fmt.Errorf("read the reverse sinks' offsets on the source: %w", err)
			}
		}
		groups = append(groups, rg...)
	}
	c := Check{Name: "sinks.offsets", OK: len(busy) == 0}
	if c.OK {
		c.Detail = fmt.Sprintf("no sink stored offsets in the last %s", f.opts.SinkIdle)
	} else {
		c.Detail = "a sink is still running (" + strings.Join(busy, "; ") + ")"
		c.Fix = fmt.Sprintf("stop `cleave run` and every `cleave sink`, wait %s, and run finalize again", f.opts.SinkIdle)
	}
	rep.check(c)

	c = Check{Name: "sinks.groups"}
	res, err := kafkax.Client(f.cfg.Kafka.Brokers).DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: groups})
	if err != nil {
		c.Detail = fmt.Sprintf("cannot describe the sinks' consumer groups on %v: %v", f.cfg.Kafka.Brokers, err)
		c.Fix = "make Kafka reachable (kafka.brokers) so finalize can see that no sink runs"
		rep.check(c)
		return nil
	}
	var members []string
	for _, g := range res.Groups {
		if g.Error != nil {
			members = append(members, fmt.Sprintf("group %s cannot be described: %v", g.GroupID, g.Error))
			continue
		}
		if len(g.Members) > 0 {
			hosts := make([]string, len(g.Members))
			for i, m := range g.Members {
				hosts[i] = m.ClientID + "@" + m.ClientHost
			}
			members = append(members, fmt.Sprintf("group %s has %d members (%s)", g.GroupID, len(g.Members), strings.Join(hosts, ", ")))
		}
	}
	c.OK = len(members) == 0
	if c.OK {
		c.Detail = fmt.Sprintf("no member in the sinks' consumer groups %s", strings.Join(groups, ", "))
	} else {
		c.Detail = "a sink is still running: " + strings.Join(members, "; ")
		c.Fix = "stop `cleave run` and every `cleave sink` of this deployment, and run finalize again"
	}
	rep.check(c)
	return nil
}

// checkReconcile runs a reconcile of every configured table and requires it consistent,
// with no row in flight: nothing unverified.
func (f *Finalizer) checkReconcile(ctx context.Context, rep *Report) error {
	opts := f.opts.Reconcile
	opts.Tables, opts.Repair, opts.RepairSQL, opts.Resume = nil, false, false, false
	chk, err := reconcile.New(f.cfg, reconcile.WithOptions(opts), reconcile.WithLogger(f.log.Named("reconcile")),
		reconcile.WithRegisterer(prometheus.NewRegistry()), reconcile.WithConnections(f.source, f.shards))
	if err != nil {
		return err
	}
	defer chk.Close()
	r, err := chk.Run(ctx)
	if err != nil {
		return fmt.Errorf("reconcile before finalizing: %w", err)
	}
	var rows int64
	var drifted, inFlight int
	var problems []string
	for _, t := range r.Tables {
		rows += t.RowsChecked
		drifted += len(t.Drift)
		inFlight += len(t.InFlight)
		switch {
		case t.Error != "":
			problems = append(problems, t.Table+": "+t.Error)
		case len(t.Drift) > 0 || len(t.InFlight) > 0:
			problems = append(problems, fmt.Sprintf("%s: %d drifted rows, %d rows in flight", t.Table, len(t.Drift), len(t.InFlight)))
		}
	}
	c := Check{Name: "reconcile", OK: r.Status == reconcile.StatusConsistent && len(problems) == 0}
	switch {
	case c.OK:
		c.Detail = fmt.Sprintf("consistent: %d tables, %d rows checked", len(r.Tables), rows)
	case drifted == 0 && inFlight > 0 && r.Status == reconcile.StatusConsistent:
		// With the sinks stopped, a differing row can never settle: the re-check waits for
		// sinks that no longer apply, so reconcile calls it in flight, not drift.
		c.Detail = fmt.Sprintf("%d rows differ and could not be verified (%s)", inFlight, strings.Join(problems, "; "))
		c.Fix = "the stopped sinks cannot settle them: start `cleave run` again, find and repair the rows with `cleave reconcile` (`--repair`), stop it, and run finalize again"
	default:
		c.Detail = fmt.Sprintf("status %s (%s)", r.Status, strings.Join(problems, "; "))
		c.Fix = "find the rows with `cleave reconcile`, repair them (`cleave reconcile --repair`), and run finalize again"
	}
	rep.check(c)
	return nil
}

func placeholders(n int) string {
	if n == 0 {
		return "NULL"
	}
	return "?" + strings.Repeat(", ?", n-1)
}

func anys(vals []string) []any {
	out := make([]any, len(vals))
	for i, v := range vals {
		out[i] = v
	}
	return out
}
