// Package shardmeta owns cleave's bookkeeping in the _cleave database. On each shard: the
// Kafka offsets every sink stores in the same transaction as the rows it applies, the
// schema changes already applied, and the name of the version column that `cleave prepare`
// adds to shard tables. On the source, for the cut-over only: the cut-over journal and the
// guard that keeps the moved tables from taking writes once they live on the shards, and,
// for reverse replication after a cut-over, the offsets and row versions of the sink that
// applies the shards' changes back to it. It holds definitions and small queries, never
// row data.
package shardmeta

import (
	"context"
	"database/sql"
	"fmt"
)

// Database is the bookkeeping database on every shard.
const Database = "_cleave"

// VersionColumn is the bookkeeping column that holds each row's version on a shard table
// whose configuration names no version_column.
const VersionColumn = "_cleave_version"

// VersionColumnDDL is its definition.
const VersionColumnDDL = "`" + VersionColumn + "` BIGINT UNSIGNED NOT NULL DEFAULT 0"

// Offsets holds, per consumer group, topic and partition, the next Kafka offset to read and
// the highest version the sink has seen on that partition (an applied event or a capture
// heartbeat): every event of the partition with a lower version has been applied.
const Offsets = "offsets"

// AppliedDDL records the schema changes a shard has applied, by version, so that a change
// delivered on several partitions is applied once.
const AppliedDDL = "applied_ddl"

// Statements creates the bookkeeping database and tables; each statement is idempotent.
var Statements = []string{createDatabase, createOffsets, createAppliedDDL}

const (
	createDatabase = "CREATE DATABASE IF NOT EXISTS `" + Database + "`"
	createOffsets  = "CREATE TABLE IF NOT EXISTS `" + Database + "`.`" + Offsets + "` (" +
		"consumer_group VARCHAR(255) NOT NULL, " +
		"topic VARCHAR(249) NOT NULL, " +
		"kafka_partition INT NOT NULL, " +
		"next_offset BIGINT NOT NULL, " +
		"applied_version BIGINT UNSIGNED NOT NULL DEFAULT 0, " +
		"applied_ts_ms BIGINT NOT NULL DEFAULT 0, " +
		"updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6), " +
		"PRIMARY KEY (consumer_group, topic, kafka_partition)" +
		") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
	createAppliedDDL = "CREATE TABLE IF NOT EXISTS `" + Database + "`.`" + AppliedDDL + "` (" +
		"db VARCHAR(64) NOT NULL, " +
		"tbl VARCHAR(64) NOT NULL, " +
		"version BIGINT UNSIGNED NOT NULL, " +
		"statement LONGTEXT NOT NULL, " +
		"applied_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), " +
		"PRIMARY KEY (db, tbl, version)" +
		") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
)

// Ensure creates the bookkeeping database and tables on a shard if they are missing.
func Ensure(ctx context.Context, db *sql.DB) error {
	for _, stmt := range Statements {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("create cleave bookkeeping on shard: %w", err)
		}
	}
	return nil
}

// RowVersions is reverse replication's version store on the monolith, whose tables have
// no version column (cleave never alters the application's tables): per row, by its
// primary key in the canonical encoding of the reverse sink (at most RowKeyMax bytes), the
// cut-over epoch and the shard's version of the last change applied to it. A row without
// an entry was last written by the monolith itself. A delete keeps its entry (a
// tombstone), so that a replayed older insert cannot bring the row back. The entries are
// kept as long as reverse replication of that cut-over may still run; they are cleave's
// own and can be dropped with the table once the rollback is over.
const RowVersions = "row_versions"

// RowKeyMax is the longest encoded primary key RowVersions can hold: 2560 bytes, which
// with db and tbl (64 characters of utf8mb4 each) is InnoDB's 3072-byte limit of an index
// key.
const RowKeyMax = 2560

// RowVersionsStatement creates RowVersions; it is idempotent.
const RowVersionsStatement = "CREATE TABLE IF NOT EXISTS `" + Database + "`.`" + RowVersions + "` (" +
	"db VARCHAR(64) NOT NULL, " +
	"tbl VARCHAR(64) NOT NULL, " +
	"row_key VARBINARY(2560) NOT NULL, " + // RowKeyMax
	"epoch BIGINT UNSIGNED NOT NULL, " +
	"version BIGINT UNSIGNED NOT NULL, " +
	"PRIMARY KEY (db, tbl, row_key)" +
	") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin ROW_FORMAT=DYNAMIC"

// EnsureReverse creates what a reverse sink keeps on the monolith, if it is missing: the
// bookkeeping database, the offsets table (the same as a shard's) and RowVersions. It
// creates nothing in the application's databases.
func EnsureReverse(ctx context.Context, db *sql.DB) error {
	for _, stmt := range []string{createDatabase, createOffsets, RowVersionsStatement} {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("create cleave's reverse replication bookkeeping on the monolith: %w", err)
		}
	}
	return nil
}

// Cutover is the cut-over journal on the source: one row per cut-over attempt of a topic
// prefix, its state written (and committed) before the step it names acts. Every write to
// it is also the in-band marker capture reacts to: capture sends a heartbeat on every
// partition right after a transaction that wrote it, so the sinks' applied versions pass
// the journal's position without waiting for the next scheduled heartbeat.
const Cutover = "cutover"

// Guard lists the moved tables that the server holding it no longer owns: on the source
// after a cut-over, on a shard after a rollback. While a table's row is here, the guard
// triggers installed on the table refuse every write to it, except from a session that
// set @cleave_apply (a sink's).
const Guard = "guard"

// SourceStatements creates the cut-over's bookkeeping on the source; each statement is
// idempotent.
var SourceStatements = []string{
	"CREATE DATABASE IF NOT EXISTS `" + Database + "`",
	"CREATE TABLE IF NOT EXISTS `" + Database + "`.`" + Cutover + "` (" +
		"id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT, " +
		"topic_prefix VARCHAR(200) NOT NULL, " +
		"state VARCHAR(32) NOT NULL, " +
		"detail LONGTEXT NOT NULL, " +
		"started_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), " +
		"updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6), " +
		"PRIMARY KEY (id), KEY (topic_prefix, id)" +
		") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
	"CREATE TABLE IF NOT EXISTS `" + Database + "`.`" + Guard + "` (" +
		"db VARCHAR(64) NOT NULL, " +
		"tbl VARCHAR(64) NOT NULL, " +
		"cutover_id BIGINT UNSIGNED NOT NULL, " +
		"moved_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), " +
		"PRIMARY KEY (db, tbl)" +
		") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
}
