package cutover

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/cleave-dev/cleave/backfill"
	"github.com/cleave-dev/cleave/kafkax"
	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/shardmeta"
)

// gate runs every check that must hold before the cut-over touches anything, and returns
// a gateError naming each one that failed with its fix. The clean reconcile, the slowest
// check, runs after these (in run), only when they pass.
func (c *Cutover) gate(ctx context.Context) error {
	var failed []string
	bad := func(format string, args ...any) { failed = append(failed, fmt.Sprintf(format, args...)) }

	if c.cfg.Cutover.HookURL == "" && c.cfg.Cutover.HookCommand == "" {
		bad("no switch hook: set cutover.hook_url or cutover.hook_command to how cleave tells the application to write the moved tables to the shards")
	}
	if len(c.tables) == 0 {
		bad("no tables are configured (tables[]): nothing to move")
	}

	// The source: its flavor and binlog position, which the marker needs.
	var version string
	if err := c.source.QueryRowContext(ctx, "SELECT VERSION()").Scan(&version); err != nil {
		bad("cannot ask the source its version: %v", err)
	} else {
		c.flavor = mysqlx.FlavorOf(version)
		if _, _, _, err := mysqlx.BinlogStatus(ctx, c.source, c.flavor.BinlogStatusStatement()); err != nil {
			bad("%v: grant %s to cleave's source user", err, c.flavor.BinlogMonitorPrivilege())
		}
	}

	// The backfill: every moved table copied.
	store := backfill.NewStore(c.cfg.Kafka.Brokers, c.cfg.Kafka.TopicPrefix, c.cfg.Kafka.ReplicationFactor)
	defer store.Close()
	if _, err := store.Poll(ctx); err != nil {
		bad("cannot read the backfill's progress: %v: is `cleave run` (or `cleave capture`) running for topic prefix %q?", err, c.cfg.Kafka.TopicPrefix)
	} else {
		st := store.State()
		for _, t := range c.tables {
			p := st.Current(t)
			switch {
			case p == nil:
				bad("the backfill of %s has not started: run `cleave run` (or `cleave capture`) until `cleave status` shows it done", t)
			case !p.Done:
				bad("the backfill of %s is not done (%.0f%%, %d rows copied): wait until `cleave status` shows it done", t, 100*p.Ratio(), p.Rows)
			}
		}
	}

	// The sinks: every shard's sink keeps offsets for every partition of every moved
	// table's topic, and what it applied last is recent.
	now := c.now()
	topics := c.topicList
	q := "SELECT topic, COUNT(*), COALESCE(MIN(applied_ts_ms), 0) FROM " + mysqlx.QuoteTable(shardmeta.Database, shardmeta.Offsets) +
		" WHERE consumer_group = ? AND topic IN (?" + strings.Repeat(", ?", len(topics)-1) + ") GROUP BY topic"
	for i, db := range c.shards {
		if len(topics) == 0 {
			break
		}
		name := c.cfg.Shards[i].Name
		group := kafkax.SinkGroup(c.cfg.Kafka.TopicPrefix, name)
		args := []any{group}
		for _, t := range topics {
			args = append(args, t)
		}
		rows, err := db.QueryContext(ctx, q, args...)
		if err != nil {
			bad("cannot read the sink offsets on shard %s: %v: run `cleave prepare` and start the shard's sink", name, err)
			continue
		}
		type seen struct {
			n  int
			ts int64
		}
		got := map[string]seen{}
		for rows.Next() {
			var topic string
			var s seen
			if err := rows.Scan(&topic, &s.n, &s.ts); err != nil {
				bad("read the sink offsets on shard %s: %v", name, err)
				break
			}
			got[topic] = s
		}
		rows.Close()
		for _, topic := range topics {
			s := got[topic]
			if s.n < c.cfg.Kafka.Partitions {
				bad("shard %s's sink (group %s) keeps offsets for %d of %d partitions of %s: start it (`cleave run`, or `cleave sink --shard %s`) and let it catch up", name, group, s.n, c.cfg.Kafka.Partitions, topic, name)
				continue
			}
			if lag := now.Sub(time.UnixMilli(s.ts)); lag > c.cfg.Cutover.MaxSinkLag {
				bad("shard %s's sink is %s behind on %s (cutover.max_sink_lag %s): wait until it catches up (cleave_sink_lag_seconds)", name, lag.Round(time.Millisecond), topic, c.cfg.Cutover.MaxSinkLag)
			}
		}
	}
	if len(failed) > 0 {
		return &gateError{failed: failed}
	}
	return nil
}
