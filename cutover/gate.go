package cutover

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
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
			if s.ts == 0 {
				bad("shard %s's sink has applied nothing yet on some partition of %s: let it catch up (cleave_sink_lag_seconds)", name, topic)
			} else if lag := now.Sub(time.UnixMilli(s.ts)); lag > c.cfg.Cutover.MaxSinkLag {
				bad("shard %s's sink is %s behind on %s (cutover.max_sink_lag %s): wait until it catches up (cleave_sink_lag_seconds)", name, lag.Round(time.Millisecond), topic, c.cfg.Cutover.MaxSinkLag)
			}
		}
	}
	// Reverse replication: after the switch every shard is a source of its own, read back
	// to the source, so each must keep a binlog capture can read from the switch on.
	c.shardFl = make([]mysqlx.Flavor, len(c.shards))
	for i, db := range c.shards {
		fl, problems := reverseReady(ctx, db, c.cfg.Source.ServerID)
		c.shardFl[i] = fl
		for _, p := range problems {
			bad("shard %s cannot be read back for rollback: %s", c.cfg.Shards[i].Name, p)
		}
	}
	if len(failed) > 0 {
		return &gateError{failed: failed}
	}
	return nil
}

// reverseReady checks that reverse replication can capture the shard's binlog: the
// settings capture needs of any source, a server_id other than the one capture connects
// with, and a binlog position cleave's shard user may read. It returns the shard's flavor
// (nil when it could not be asked) and what is wrong, each with its fix.
func reverseReady(ctx context.Context, db *sql.DB, captureID uint32) (mysqlx.Flavor, []string) {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	fl, err := mysqlx.DetectFlavor(ctx, db)
	if err != nil {
		return nil, []string{err.Error()}
	}
	vars, err := mysqlx.GlobalVariables(ctx, db, "server_id", "log_bin", "binlog_format", "binlog_row_image", "binlog_row_metadata")
	if err != nil {
		return fl, []string{fmt.Sprintf("read its variables: %v", err)}
	}
	for k, v := range vars {
		vars[k] = strings.ToUpper(v)
	}
	const fix = " in the shard's config file (and SET GLOBAL), before the cut-over"
	if v := vars["log_bin"]; v != "ON" && v != "1" {
		bad("log_bin is %s: set log_bin%s", orUnset(v), fix)
	}
	for _, want := range [][2]string{{"binlog_format", "ROW"}, {"binlog_row_image", "FULL"}, {"binlog_row_metadata", "FULL"}} {
		if v := vars[want[0]]; v != want[1] {
			bad("%s is %s: set %s=%s%s", want[0], orUnset(v), want[0], want[1], fix)
		}
	}
	if vars["server_id"] == strconv.FormatUint(uint64(captureID), 10) {
		bad("its server_id %s is source.server_id, the replica id capture connects with: give the shard a server_id of its own", vars["server_id"])
	}
	if _, _, _, err := fl.BinlogPosition(ctx, db); err != nil {
		bad("%v: grant %s and REPLICATION SLAVE to cleave's shard user", err, fl.BinlogMonitorPrivilege())
	}
	return fl, problems
}

func orUnset(v string) string {
	if v == "" {
		return "unset"
	}
	return v
}
