// Package config owns cleave's configuration: one struct tree, its defaults, loading from a
// YAML file with environment overrides, and the static validation that names the exact key
// of every problem. It never connects to anything: checks that need the source or the
// shards (a shard key that must exist in a table, say) belong to the preflight package.
package config

import (
	"fmt"
	"strings"
	"time"

	"github.com/cleave-dev/cleave/route"
)

// Config is the whole configuration of one cleave deployment.
type Config struct {
	// Source is the monolith that cleave reads.
	Source Source `mapstructure:"source"`
	// Kafka is the cluster that carries the change events between capture and the sinks.
	Kafka Kafka `mapstructure:"kafka"`
	// Shards are the databases the monolith is split into, in keyspace order.
	Shards []Shard `mapstructure:"shards"`
	// Tables are the source tables cleave moves, each with its routing.
	Tables []Table `mapstructure:"tables"`
	// DDL says what capture does with a schema change on a configured table.
	DDL DDL `mapstructure:"ddl"`
	// Capture tunes the binlog reader and producer.
	Capture Capture `mapstructure:"capture"`
	// Sink tunes the per-shard appliers.
	Sink Sink `mapstructure:"sink"`
	// Backfill tunes the copy of rows that existed before capture started.
	Backfill Backfill `mapstructure:"backfill"`
	// Reconcile tunes the checker.
	Reconcile Reconcile `mapstructure:"reconcile"`
	// Cutover tunes `cleave cutover`, the fenced switch of the application's writes.
	Cutover Cutover `mapstructure:"cutover"`
	// HTTP is the one listener for /metrics, /healthz, /readyz and /status.
	HTTP HTTP `mapstructure:"http"`
	// Log configures logging.
	Log Log `mapstructure:"log"`
}

// Source describes the monolith and how cleave connects to it as a replica.
type Source struct {
	// DSN in go-sql-driver form: user:password@tcp(host:port)/ . The user needs
	// REPLICATION SLAVE, REPLICATION CLIENT and SELECT.
	DSN string `mapstructure:"dsn"`
	// Flavor is "mariadb" or "mysql"; it selects the GTID dialect of the replica protocol.
	Flavor string `mapstructure:"flavor"`
	// ServerID is the replica server_id cleave's binlog connection uses. It must differ from
	// the source's own server_id and from every other replica's: two connections with one
	// server_id disconnect each other.
	ServerID uint32 `mapstructure:"server_id"`
}

// Kafka describes the cluster and the naming of cleave's topics.
type Kafka struct {
	// Brokers are host:port bootstrap addresses.
	Brokers []string `mapstructure:"brokers"`
	// TopicPrefix starts every topic and consumer group name cleave uses:
	// <prefix>.<db>.<table>, <prefix>.dlq.<shard>, <prefix>.sink.<shard>.
	TopicPrefix string `mapstructure:"topic_prefix"`
	// Partitions is the partition count of the table topics cleave creates.
	Partitions int `mapstructure:"partitions"`
	// ReplicationFactor of the topics cleave creates.
	ReplicationFactor int `mapstructure:"replication_factor"`
}

// Shard is one target database.
type Shard struct {
	// Name identifies the shard in routing, metrics and logs.
	Name string `mapstructure:"name"`
	// DSN in go-sql-driver form. Overridable per shard by CLEAVE_SHARD_<NAME>_DSN.
	DSN string `mapstructure:"dsn"`
	// Keyspace is the part of the 64-bit hash keyspace this shard owns, as a Vitess-style hex
	// range ("-80", "80-", "40-80"). Empty on every shard means an even split in shard order.
	Keyspace string `mapstructure:"keyspace"`
}

// Table is one source table and its routing.
type Table struct {
	// Name is db.table on the source.
	Name string `mapstructure:"name"`
	// ShardKey is the column whose value routes a row. Required by hash, range and list.
	ShardKey string `mapstructure:"shard_key"`
	// Strategy is hash, range, list, broadcast or pin (route's strategies).
	Strategy route.Strategy `mapstructure:"strategy"`
	// Ranges (strategy range): ascending exclusive upper bounds; the last one has no bound.
	Ranges []RangeBound `mapstructure:"ranges"`
	// Values (strategy list): which shard each shard key value belongs to. A list of pairs
	// rather than a mapping, because mapping keys lose their case on the way in.
	Values []ListValue `mapstructure:"values"`
	// DefaultShard (strategy list): the shard of values not listed; empty makes them an error.
	DefaultShard string `mapstructure:"default_shard"`
	// Shard (strategy pin): the one shard that holds every row.
	Shard string `mapstructure:"shard"`
	// VersionColumn names an existing column whose value orders a row's versions (for
	// example an optimistic-lock counter). Empty: cleave keeps the version in a bookkeeping
	// column that `cleave prepare` adds to the shard table.
	VersionColumn string `mapstructure:"version_column"`
	// DriftAlertAbove is how many drifted rows of this table (over every shard and kind) a
	// check may find before the drift alert fires for it: the webhook and the
	// CleaveDriftDetected rule. 0, the default, alerts on any. Reports, `cleave status` and
	// cleave_reconcile_drift_rows still show every drifted row; this is for a noisy legacy
	// table whose known drift should not page anyone.
	DriftAlertAbove int `mapstructure:"drift_alert_above"`
}

// RangeBound is one range of a range-routed table.
type RangeBound struct {
	// Below is the exclusive upper bound; empty on the last range only.
	Below string `mapstructure:"below"`
	// Shard owns the values below Below and at or above the previous bound.
	Shard string `mapstructure:"shard"`
}

// ListValue assigns one shard key value of a list-routed table to a shard.
type ListValue struct {
	// Value is the shard key value as MySQL renders it ("eu", "42").
	Value string `mapstructure:"value"`
	// Shard holds the rows with that value.
	Shard string `mapstructure:"shard"`
}

// DDL is the schema-change policy.
type DDL struct {
	// Policy is "stop" (capture halts and names the statement and position) or
	// "propagate" (a schema-change event that the sinks apply to every shard).
	Policy string `mapstructure:"policy"`
}

// Capture tunes the binlog reader and the Kafka producer.
type Capture struct {
	// HeartbeatInterval is how often an idle capture still proves it is current.
	HeartbeatInterval time.Duration `mapstructure:"heartbeat_interval"`
	// MaxInFlightBytes bounds the events read from the binlog but not yet acknowledged by Kafka.
	MaxInFlightBytes int64 `mapstructure:"max_in_flight_bytes"`
	// BatchSize is the most messages the producer sends in one request per partition.
	BatchSize int `mapstructure:"batch_size"`
	// CheckpointInterval is the most time between two stored positions while events flow.
	CheckpointInterval time.Duration `mapstructure:"checkpoint_interval"`
}

// Sink tunes the per-shard appliers.
type Sink struct {
	// BatchSize is the most events applied in one shard transaction.
	BatchSize int `mapstructure:"batch_size"`
	// BatchWait is how long a partial batch waits for more events before it is applied.
	BatchWait time.Duration `mapstructure:"batch_wait"`
	// OnError is "stop" (the shard's sink halts naming the event) or "dead_letter" (the
	// event goes to <prefix>.dlq.<shard> with its error, is counted, and the rest continues).
	OnError string `mapstructure:"on_error"`
	// RetryMaxTime caps the total time spent retrying one batch on retryable errors.
	RetryMaxTime time.Duration `mapstructure:"retry_max_time"`
}

// Backfill tunes the copy of existing rows.
type Backfill struct {
	// ChunkSize is the number of rows read per chunk.
	ChunkSize int `mapstructure:"chunk_size"`
	// MaxRowsPerSecond throttles the copy; 0 means unthrottled.
	MaxRowsPerSecond int `mapstructure:"max_rows_per_second"`
}

// Reconcile tunes the checker.
type Reconcile struct {
	// Interval between scheduled checks in `cleave run`; 0 disables scheduling.
	Interval time.Duration `mapstructure:"interval"`
	// ChunkTarget is the time one chunk query should take; chunk size adapts to it.
	ChunkTarget time.Duration `mapstructure:"chunk_target"`
	// MaxRowsPerSecond throttles reads on the source; 0 means unthrottled.
	MaxRowsPerSecond int `mapstructure:"max_rows_per_second"`
	// RecheckRounds is how many times a differing row is re-read, waiting for the sinks,
	// before it is called drift or in flight.
	RecheckRounds int `mapstructure:"recheck_rounds"`
	// WebhookURL receives an Alertmanager-compatible JSON body when drift is found and when
	// it clears. Empty disables it.
	WebhookURL string `mapstructure:"webhook_url"`
}

// Cutover tunes the switch of the application's writes from the source to the shards.
type Cutover struct {
	// MaxWritePause bounds how long writes to the moved tables wait on the source while
	// the sinks drain and the changed rows are verified; past it the cut-over aborts and
	// the writes go on, nothing switched. The server enforces it too (the fencing session's
	// wait_timeout), so a cleave that hangs cannot hold the writes longer.
	MaxWritePause time.Duration `mapstructure:"max_write_pause"`
	// MaxSinkLag is the gate on every shard's sink: how far behind the source (by the
	// commit time of what it applied last, heartbeats included) it may be when the
	// cut-over starts.
	MaxSinkLag time.Duration `mapstructure:"max_sink_lag"`
	// FencedVerifyKeys is how many changed rows may be left to verify when the fence goes
	// up: before it, rounds of verification under live writes run until the rows changed
	// since the previous round are at most this many.
	FencedVerifyKeys int `mapstructure:"fenced_verify_keys"`
	// HookURL receives a POST with the switch (JSON, see README) after the point of no
	// return; a 2xx answer acknowledges it. HookCommand is run by /bin/sh -c with the same
	// JSON on its standard input; exit status 0 acknowledges it. At least one is required;
	// when both are set both must acknowledge. Either may be called more than once for
	// the same cut-over (after a crash): the application must treat a repeat as done.
	HookURL     string `mapstructure:"hook_url"`
	HookCommand string `mapstructure:"hook_command"`
	// HookTimeout bounds the retries of the hook; past it the cut-over stays switched
	// with the hook pending, and `cleave cutover` calls it again.
	HookTimeout time.Duration `mapstructure:"hook_timeout"`
}

// HTTP is the operational listener.
type HTTP struct {
	// Listen is host:port for /metrics, /healthz, /readyz and /status; empty disables it.
	Listen string `mapstructure:"listen"`
	// Pprof also serves Go's profiler under /debug/pprof/ on the same listener.
	Pprof bool `mapstructure:"pprof"`
}

// Log configures logging.
type Log struct {
	// Level is debug, info, warn or error.
	Level string `mapstructure:"level"`
	// Format is auto (console on a terminal, JSON otherwise), json or console.
	Format string `mapstructure:"format"`
	// File, when set, receives the logs instead of stderr, rotated by size.
	File string `mapstructure:"file"`
	// MaxSizeMB is the size at which the log file rotates.
	MaxSizeMB int `mapstructure:"max_size_mb"`
	// MaxBackups is how many rotated files are kept.
	MaxBackups int `mapstructure:"max_backups"`
	// MaxAgeDays removes rotated files older than this many days; 0 keeps them (up to
	// MaxBackups).
	MaxAgeDays int `mapstructure:"max_age_days"`
}

// Strategies and policies accepted in the configuration. The strategies are route's; these
// names are theirs for code that builds a Config.
const (
	StrategyHash      = route.Hash
	StrategyRange     = route.Range
	StrategyList      = route.List
	StrategyBroadcast = route.Broadcast
	StrategyPin       = route.Pin

	DDLStop      = "stop"
	DDLPropagate = "propagate"

	OnErrorStop       = "stop"
	OnErrorDeadLetter = "dead_letter"
)

// defaults holds every default in one place, keyed by the configuration path.
var defaults = map[string]any{
	"source.flavor":                 "mariadb",
	"kafka.topic_prefix":            "cleave",
	"kafka.partitions":              8,
	"kafka.replication_factor":      1,
	"ddl.policy":                    DDLStop,
	"capture.heartbeat_interval":    time.Second,
	"capture.max_in_flight_bytes":   int64(64 << 20),
	"capture.batch_size":            1000,
	"capture.checkpoint_interval":   time.Second,
	"sink.batch_size":               500,
	"sink.batch_wait":               50 * time.Millisecond,
	"sink.on_error":                 OnErrorStop,
	"sink.retry_max_time":           5 * time.Minute,
	"backfill.chunk_size":           5000,
	"backfill.max_rows_per_second":  0,
	"reconcile.interval":            10 * time.Minute,
	"reconcile.chunk_target":        250 * time.Millisecond,
	"reconcile.max_rows_per_second": 0,
	"reconcile.recheck_rounds":      5,
	"cutover.max_write_pause":       5 * time.Second,
	"cutover.max_sink_lag":          5 * time.Second,
	"cutover.fenced_verify_keys":    20000,
	"cutover.hook_url":              "",
	"cutover.hook_command":          "",
	"cutover.hook_timeout":          5 * time.Minute,
	"http.listen":                   "127.0.0.1:9466",
	"http.pprof":                    false,
	"log.level":                     "info",
	"log.format":                    "auto",
	"log.max_size_mb":               100,
	"log.max_backups":               5,
	"log.max_age_days":              0,
}

// Table returns the configured table named db.table, or nil.
func (c *Config) Table(name string) *Table {
	for i := range c.Tables {
		if c.Tables[i].Name == name {
			return &c.Tables[i]
		}
	}
	return nil
}

// ShardIndex returns the index of the shard named name, or -1.
func (c *Config) ShardIndex(name string) int {
	for i := range c.Shards {
		if c.Shards[i].Name == name {
			return i
		}
	}
	return -1
}

// SplitName splits db.table into its parts.
func SplitName(name string) (db, table string, err error) {
	db, table, ok := strings.Cut(name, ".")
	if !ok || db == "" || table == "" || strings.Contains(table, ".") {
		return "", "", fmt.Errorf("%q is not of the form db.table", name)
	}
	return db, table, nil
}

// DB returns the database part of the table's name.
func (t *Table) DB() string { db, _, _ := SplitName(t.Name); return db }

// TableName returns the table part of the table's name.
func (t *Table) TableName() string { _, tb, _ := SplitName(t.Name); return tb }
