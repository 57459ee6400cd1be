package config

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/cleave-dev/cleave/mysqlx"
)

var (
	identRe  = regexp.MustCompile(`^[A-Za-z0-9_$]{1,64}$`)
	topicRe  = regexp.MustCompile(`^[A-Za-z0-9._-]{1,100}$`)
	shardRe  = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	logLevel = map[string]bool{"debug": true, "info": true, "warn": true, "error": true}
)

// Validate checks everything that can be checked without connecting anywhere. Each problem
// is reported as "<key path>: <problem>"; all problems are joined into one error.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}

	if c.Source.DSN == "" {
		bad("source.dsn", "required: the monolith's DSN, e.g. user:password@tcp(host:3306)/")
	} else if err := checkDSN(c.Source.DSN); err != nil {
		bad("source.dsn", "%v", err)
	}
	if c.Source.Flavor != "mariadb" && c.Source.Flavor != "mysql" {
		bad("source.flavor", "%q is not mariadb or mysql", c.Source.Flavor)
	}
	if c.Source.ServerID == 0 {
		bad("source.server_id", "required: a replica server_id (1..4294967295) that no other replica of the source uses")
	}

	if len(c.Kafka.Brokers) == 0 {
		bad("kafka.brokers", "required: at least one host:port")
	}
	for i, b := range c.Kafka.Brokers {
		if _, _, err := net.SplitHostPort(b); err != nil {
			bad(fmt.Sprintf("kafka.brokers[%d]", i), "%q is not host:port", b)
		}
	}
	if !topicRe.MatchString(c.Kafka.TopicPrefix) {
		bad("kafka.topic_prefix", "%q must be 1-100 characters of letters, digits, '.', '_' or '-'", c.Kafka.TopicPrefix)
	}
	if c.Kafka.Partitions < 1 {
		bad("kafka.partitions", "must be at least 1, got %d", c.Kafka.Partitions)
	}
	if c.Kafka.ReplicationFactor < 1 {
		bad("kafka.replication_factor", "must be at least 1, got %d", c.Kafka.ReplicationFactor)
	}

	if len(c.Shards) == 0 {
		bad("shards", "required: at least one shard with name and dsn")
	}
	seenShard := map[string]int{}
	for i, s := range c.Shards {
		key := fmt.Sprintf("shards[%d]", i)
		switch {
		case s.Name == "":
			bad(key+".name", "required")
		case !shardRe.MatchString(s.Name):
			bad(key+".name", "%q must be 1-64 letters, digits, '_' or '-'", s.Name)
		default:
			if j, dup := seenShard[s.Name]; dup {
				bad(key+".name", "%q is already the name of shards[%d]", s.Name, j)
			}
			seenShard[s.Name] = i
		}
		if s.DSN == "" {
			bad(key+".dsn", "required (or set %s)", ShardDSNEnv(s.Name))
		} else if err := checkDSN(s.DSN); err != nil {
			bad(key+".dsn", "%v", err)
		}
	}
	if err := c.validateKeyspaces(); err != nil {
		errs = append(errs, err)
	}

	if len(c.Tables) == 0 {
		bad("tables", "required: at least one table to move")
	}
	seenTable := map[string]int{}
	for i, t := range c.Tables {
		key := fmt.Sprintf("tables[%d]", i)
		db, tb, err := SplitName(t.Name)
		switch {
		case t.Name == "":
			bad(key+".name", "required: db.table")
		case err != nil:
			bad(key+".name", "%v", err)
		case !identRe.MatchString(db) || !identRe.MatchString(tb):
			bad(key+".name", "%q: database and table names must be plain identifiers", t.Name)
		default:
			if j, dup := seenTable[t.Name]; dup {
				bad(key+".name", "%q is already configured as tables[%d]", t.Name, j)
			}
			seenTable[t.Name] = i
		}
		if t.VersionColumn != "" && !identRe.MatchString(t.VersionColumn) {
			bad(key+".version_column", "%q is not a column name", t.VersionColumn)
		}
		if t.DriftAlertAbove < 0 {
			bad(key+".drift_alert_above", "must be 0 (alert on any drifted row) or more rows, got %d", t.DriftAlertAbove)
		}
		errs = append(errs, c.validateTableRouting(i)...)
		validateShardKey(key, t, bad)
	}

	if c.DDL.Policy != DDLStop && c.DDL.Policy != DDLPropagate {
		bad("ddl.policy", "%q is not stop or propagate", c.DDL.Policy)
	}
	if c.Capture.HeartbeatInterval <= 0 {
		bad("capture.heartbeat_interval", "must be positive, got %s", c.Capture.HeartbeatInterval)
	}
	if c.Capture.MaxInFlightBytes < 1<<20 {
		bad("capture.max_in_flight_bytes", "must be at least 1048576, got %d", c.Capture.MaxInFlightBytes)
	}
	if c.Capture.BatchSize < 1 {
		bad("capture.batch_size", "must be at least 1, got %d", c.Capture.BatchSize)
	}
	if c.Capture.CheckpointInterval <= 0 {
		bad("capture.checkpoint_interval", "must be positive, got %s", c.Capture.CheckpointInterval)
	}
	if c.Sink.BatchSize < 1 {
		bad("sink.batch_size", "must be at least 1, got %d", c.Sink.BatchSize)
	}
	if c.Sink.BatchWait < 0 {
		bad("sink.batch_wait", "must not be negative, got %s", c.Sink.BatchWait)
	}
	if c.Sink.OnError != OnErrorStop && c.Sink.OnError != OnErrorDeadLetter {
		bad("sink.on_error", "%q is not stop or dead_letter", c.Sink.OnError)
	}
	if c.Sink.RetryMaxTime <= 0 {
		bad("sink.retry_max_time", "must be positive, got %s", c.Sink.RetryMaxTime)
	}
	if c.Backfill.ChunkSize < 1 {
		bad("backfill.chunk_size", "must be at least 1, got %d", c.Backfill.ChunkSize)
	}
	if c.Backfill.MaxRowsPerSecond < 0 {
		bad("backfill.max_rows_per_second", "must not be negative, got %d", c.Backfill.MaxRowsPerSecond)
	}
	if c.Reconcile.Interval < 0 {
		bad("reconcile.interval", "must not be negative, got %s", c.Reconcile.Interval)
	}
	if c.Reconcile.ChunkTarget <= 0 {
		bad("reconcile.chunk_target", "must be positive, got %s", c.Reconcile.ChunkTarget)
	}
	if c.Reconcile.MaxRowsPerSecond < 0 {
		bad("reconcile.max_rows_per_second", "must not be negative, got %d", c.Reconcile.MaxRowsPerSecond)
	}
	if c.Reconcile.RecheckRounds < 1 {
		bad("reconcile.recheck_rounds", "must be at least 1, got %d", c.Reconcile.RecheckRounds)
	}
	if u := c.Reconcile.WebhookURL; u != "" && !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
		bad("reconcile.webhook_url", "%q must start with http:// or https://", u)
	}
	if c.Cutover.MaxWritePause < time.Second {
		bad("cutover.max_write_pause", "must be at least 1s (the server's bound on the fence is whole seconds), got %s", c.Cutover.MaxWritePause)
	}
	if c.Cutover.MaxSinkLag <= 0 {
		bad("cutover.max_sink_lag", "must be positive, got %s", c.Cutover.MaxSinkLag)
	}
	if c.Cutover.FencedVerifyKeys < 1 {
		bad("cutover.fenced_verify_keys", "must be at least 1, got %d", c.Cutover.FencedVerifyKeys)
	}
	if u := c.Cutover.HookURL; u != "" && !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
		bad("cutover.hook_url", "%q must start with http:// or https://", u)
	}
	if c.Cutover.HookTimeout <= 0 {
		bad("cutover.hook_timeout", "must be positive, got %s", c.Cutover.HookTimeout)
	}
	if c.HTTP.Listen != "" {
		if _, _, err := net.SplitHostPort(c.HTTP.Listen); err != nil {
			bad("http.listen", "%q is not host:port (use \"\" to disable the listener)", c.HTTP.Listen)
		}
	}
	if !logLevel[c.Log.Level] {
		bad("log.level", "%q is not debug, info, warn or error", c.Log.Level)
	}
	if c.Log.Format != "auto" && c.Log.Format != "json" && c.Log.Format != "console" {
		bad("log.format", "%q is not auto, json or console", c.Log.Format)
	}
	if c.Log.File != "" && c.Log.MaxSizeMB < 1 {
		bad("log.max_size_mb", "must be at least 1, got %d", c.Log.MaxSizeMB)
	}
	if c.Log.MaxBackups < 0 {
		bad("log.max_backups", "must be 0 (keep every rotated file) or more, got %d", c.Log.MaxBackups)
	}
	if c.Log.MaxAgeDays < 0 {
		bad("log.max_age_days", "must be 0 (no age limit) or more days, got %d", c.Log.MaxAgeDays)
	}
	return errors.Join(errs...)
}

// validateShardKey checks tables[i].shard_key, which only the configuration names: route
// sees the key's values, never its column.
func validateShardKey(key string, t Table, bad func(string, string, ...any)) {
	switch {
	case t.ShardKey == "":
		if t.Strategy.ByKey() {
			bad(key+".shard_key", "required by strategy %s: the column whose value routes a row", t.Strategy)
		}
	case !identRe.MatchString(t.ShardKey):
		bad(key+".shard_key", "%q is not a column name", t.ShardKey)
	case t.Strategy.Valid() && !t.Strategy.ByKey():
		bad(key+".shard_key", "not used by strategy %s; remove it", t.Strategy)
	}
}

// checkDSN parses a go-sql-driver DSN without ever echoing the password.
func checkDSN(dsn string) error {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return fmt.Errorf("not a valid DSN (expected user:password@tcp(host:port)/): %s", strings.ReplaceAll(err.Error(), dsn, mysqlx.Redact(dsn)))
	}
	if cfg.Net != "tcp" && cfg.Net != "unix" {
		return fmt.Errorf("network %q is not tcp or unix", cfg.Net)
	}
	return nil
}
