// Package shardmeta owns cleave's bookkeeping on each shard: the _cleave database with the
// Kafka offsets every sink stores in the same transaction as the rows it applies, the
// schema changes already applied, and the name of the version column that `cleave prepare`
// adds to shard tables. It holds definitions and small queries, never row data.
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
var Statements = []string{
	"CREATE DATABASE IF NOT EXISTS `" + Database + "`",
	"CREATE TABLE IF NOT EXISTS `" + Database + "`.`" + Offsets + "` (" +
		"consumer_group VARCHAR(255) NOT NULL, " +
		"topic VARCHAR(249) NOT NULL, " +
		"kafka_partition INT NOT NULL, " +
		"next_offset BIGINT NOT NULL, " +
		"applied_version BIGINT UNSIGNED NOT NULL DEFAULT 0, " +
		"applied_ts_ms BIGINT NOT NULL DEFAULT 0, " +
		"updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6), " +
		"PRIMARY KEY (consumer_group, topic, kafka_partition)" +
		") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
	"CREATE TABLE IF NOT EXISTS `" + Database + "`.`" + AppliedDDL + "` (" +
		"db VARCHAR(64) NOT NULL, " +
		"tbl VARCHAR(64) NOT NULL, " +
		"version BIGINT UNSIGNED NOT NULL, " +
		"statement LONGTEXT NOT NULL, " +
		"applied_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), " +
		"PRIMARY KEY (db, tbl, version)" +
		") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
}

// Ensure creates the bookkeeping database and tables on a shard if they are missing.
func Ensure(ctx context.Context, db *sql.DB) error {
	for _, stmt := range Statements {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("create cleave bookkeeping on shard: %w", err)
		}
	}
	return nil
}
