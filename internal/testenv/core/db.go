package core

import (
	"context"
	"database/sql"
	"fmt"

	"strings"

	"github.com/go-sql-driver/mysql"
)

// OpenDB opens dsn with plain go-sql-driver (no session settings, unlike mysqlx.Open),
// with a dial timeout of PingTimeout unless the DSN sets one. It does not connect yet.
func OpenDB(dsn string) (*sql.DB, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse DSN for %s: %w", DSNAddr(dsn), err)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = PingTimeout
	}
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", cfg.Addr, err)
	}
	return db, nil
}

// DSNWithDB returns dsn with its database set to db.
func DSNWithDB(dsn, db string) (string, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return "", fmt.Errorf("parse DSN for %s: %w", DSNAddr(dsn), err)
	}
	cfg.DBName = db
	return cfg.FormatDSN(), nil
}

// CreateDatabase creates the empty database name; it fails if it exists.
func CreateDatabase(ctx context.Context, db *sql.DB, name string) error {
	_, err := db.ExecContext(ctx, "CREATE DATABASE "+quoteIdent(name))
	return err
}

// DropDatabase drops the database name if it exists.
func DropDatabase(ctx context.Context, db *sql.DB, name string) error {
	_, err := db.ExecContext(ctx, "DROP DATABASE IF EXISTS "+quoteIdent(name))
	return err
}

// quoteIdent quotes a database name. (mysqlx has the same, but its tests use testenv.)
func quoteIdent(name string) string { return "`" + strings.ReplaceAll(name, "`", "``") + "`" }
