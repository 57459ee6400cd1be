package cutover

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/shardmeta"
)

// The guard: three BEFORE triggers per moved table that refuse the write while the table
// has a row in _cleave.guard. They are installed before the fence, inert until the switch
// commits the guard rows, and dropped when the attempt aborts. A cut-over guards the
// source; a rollback guards every shard. A session that sets @cleave_apply (every sink's,
// sink.ApplierVariable) passes them.

// guardOps are the trigger timings, with the suffix of each trigger's name.
var guardOps = []struct{ op, suffix string }{
	{"INSERT", "bi"}, {"UPDATE", "bu"}, {"DELETE", "bd"},
}

// triggerName is the name of the guard trigger on table for suffix; trigger names are
// unique per database and at most 64 characters, so a long table name is hashed.
func triggerName(table, suffix string) string {
	name := "_cleave_guard_" + table + "_" + suffix
	if len(name) <= 64 {
		return name
	}
	sum := sha256.Sum256([]byte(table))
	return "_cleave_guard_" + hex.EncodeToString(sum[:12]) + "_" + suffix
}

// guardMessage is what a refused write reports on the source (after a cut-over), or on a
// shard when back is set (after a rollback); SIGNAL's message is at most 128 characters.
func guardMessage(db, table string, back bool) string {
	where, to := "moved to the shards at cut-over", "write to the shards"
	if back {
		where, to = "moved back to the source at rollback", "write to the source"
	}
	msg := fmt.Sprintf("cleave: %s.%s %s; %s", db, table, where, to)
	if len(msg) > 128 {
		msg = fmt.Sprintf("cleave: table %s; %s", where, to)
	}
	return msg
}

func sqlString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `''`).Replace(s) + "'"
}

// createGuardSQL returns the statements that install the guard on db.table (back: a
// shard's, after a rollback).
func createGuardSQL(db, table string, back bool) []string {
	var out []string
	for _, g := range guardOps {
		out = append(out, fmt.Sprintf("CREATE TRIGGER %s BEFORE %s ON %s FOR EACH ROW "+
			"BEGIN IF @cleave_apply IS NULL AND EXISTS (SELECT 1 FROM %s WHERE db = %s AND tbl = %s) THEN "+
			"SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = %s; END IF; END",
			mysqlx.QuoteTable(db, triggerName(table, g.suffix)), g.op, mysqlx.QuoteTable(db, table),
			mysqlx.QuoteTable(shardmeta.Database, shardmeta.Guard), sqlString(db), sqlString(table),
			sqlString(guardMessage(db, table, back))))
	}
	return out
}

// dropGuardSQL returns the statements that remove the guard from db.table.
func dropGuardSQL(db, table string) []string {
	var out []string
	for _, g := range guardOps {
		out = append(out, "DROP TRIGGER IF EXISTS "+mysqlx.QuoteTable(db, triggerName(table, g.suffix)))
	}
	return out
}

// installGuard installs the guard triggers on every moved table, replacing leftovers of an
// earlier attempt.
//
// The triggers are created under LOCK TABLES <every moved table> WRITE, held only for the
// DDL. Without it, MariaDB (measured on 10.11) fails statements that race the CREATE
// TRIGGER with error 1146 "Table '_cleave.guard' doesn't exist": a statement that opened
// the table before the trigger existed meets the trigger's table unopened. Four writers
// racing the creation saw one to four such errors per installation in most of six rounds;
// under the lock none (MySQL 9.7 showed none either way). The lock waits for open
// transactions on the tables, bounded by lock_wait_timeout, which the caller sets.
func installGuard(ctx context.Context, conn *sql.Conn, tables []string, where string, back bool) error {
	var stmts []string
	for _, name := range tables {
		db, tbl, _ := strings.Cut(name, ".")
		stmts = append(append(stmts, dropGuardSQL(db, tbl)...), createGuardSQL(db, tbl, back)...)
	}
	if err := underWriteLock(ctx, conn, tables, stmts); err != nil {
		return fmt.Errorf("install the write guard on the moved tables on %s: %w (cleave needs the TRIGGER and LOCK TABLES privileges on the moved tables, and with binary logging on, MySQL also needs log_bin_trust_function_creators=1 or SUPER there)", where, err)
	}
	return nil
}

// underWriteLock runs stmts while the session holds every table (db.table) locked WRITE.
func underWriteLock(ctx context.Context, conn *sql.Conn, tables []string, stmts []string) error {
	var locks []string
	for _, name := range tables {
		db, tbl, _ := strings.Cut(name, ".")
		locks = append(locks, mysqlx.QuoteTable(db, tbl)+" WRITE")
	}
	if _, err := conn.ExecContext(ctx, "LOCK TABLES "+strings.Join(locks, ", ")); err != nil {
		return err
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), "UNLOCK TABLES")
	for _, stmt := range stmts {
		if _, err := conn.ExecContext(ctx, stmt); err != nil {
			return err
		}
	}
	return nil
}

// removeGuard drops the guard triggers, under the same brief lock as their creation, and
// the guard rows of the moved tables, on the server named where.
func removeGuard(ctx context.Context, conn *sql.Conn, tables []string, where string) error {
	var stmts []string
	for _, name := range tables {
		db, tbl, _ := strings.Cut(name, ".")
		stmts = append(stmts, dropGuardSQL(db, tbl)...)
	}
	if err := underWriteLock(ctx, conn, tables, stmts); err != nil && mysqlx.Number(err) != mysqlx.ErNoSuchTable {
		return fmt.Errorf("remove the write guard from the moved tables on %s: %w", where, err)
	}
	for _, name := range tables {
		db, tbl, _ := strings.Cut(name, ".")
		if _, err := conn.ExecContext(ctx, "DELETE FROM "+guardTable()+" WHERE db = ? AND tbl = ?", db, tbl); err != nil && mysqlx.Number(err) != mysqlx.ErNoSuchTable {
			return fmt.Errorf("remove the guard row of %s on %s: %w", name, where, err)
		}
	}
	return nil
}
