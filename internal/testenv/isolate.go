package testenv

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/cleave-dev/cleave/internal/testenv/core"
)

// cleanupTimeout bounds each cleanup step, so a dead server cannot hang a test's end.
const cleanupTimeout = 30 * time.Second

// NewDatabase creates an empty database with a name unique to this test run (the test's
// name plus a random suffix, at most 64 characters) on the server of dsn, and drops it at
// t.Cleanup. It returns the database name; DSNWithDB makes a DSN that uses it.
func NewDatabase(t testing.TB, dsn string) string {
	t.Helper()
	name := UniqueName(t, "t_", '_', 64)
	db := openDB(t, dsn)
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	if err := core.CreateDatabase(ctx, db, name); err != nil {
		db.Close()
		t.Fatalf("testenv: create database %s on %s: %v", name, core.DSNAddr(dsn), err)
	}
	t.Cleanup(func() {
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		if err := core.DropDatabase(ctx, db, name); err != nil {
			t.Logf("testenv: drop database %s on %s: %v", name, core.DSNAddr(dsn), err)
		}
	})
	return name
}

// DSNWithDB returns dsn with its database set to db.
func DSNWithDB(t testing.TB, dsn, db string) string {
	t.Helper()
	out, err := core.DSNWithDB(dsn, db)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return out
}

// OpenDB opens dsn (plain go-sql-driver, no session settings) and closes it at t.Cleanup.
func OpenDB(t testing.TB, dsn string) *sql.DB {
	t.Helper()
	db := openDB(t, dsn)
	t.Cleanup(func() { db.Close() })
	return db
}

func openDB(t testing.TB, dsn string) *sql.DB {
	t.Helper()
	db, err := core.OpenDB(dsn)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return db
}

// TopicPrefix returns a Kafka topic prefix unique to this test run ("t-<test>-<random>").
// At t.Cleanup the topics and consumer groups whose names start with it are deleted from
// the shared Kafka (best effort: failures are logged, not fatal).
func TopicPrefix(t testing.TB) string {
	t.Helper()
	prefix := UniqueName(t, "t-", '-', 80)
	brokers := FromEnv().KafkaBrokers
	t.Cleanup(func() { DeleteTopics(t, brokers, prefix) })
	return prefix
}

// DeleteTopics deletes the topics and consumer groups whose names start with prefix from
// the cluster at brokers. Failures are logged: it is meant for cleanup.
func DeleteTopics(t testing.TB, brokers []string, prefix string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	err := core.DeleteTopics(ctx, brokers, prefix)
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) {
		return
	}
	for _, err := range joined.Unwrap() {
		// Kafka gone (not started, or a test's own broker): nothing to clean.
		if !errors.Is(err, core.ErrUnreachable) {
			t.Logf("testenv: %v", err)
		}
	}
}

// UniqueName returns prefix + the sanitized test name + sep + 8 random hex digits, at most
// maxLen bytes, using only [a-z0-9] and sep. Database names, topic prefixes and file
// names built from it are valid and never collide between parallel test processes.
func UniqueName(t testing.TB, prefix string, sep byte, maxLen int) string {
	t.Helper()
	return core.UniqueName(prefix, t.Name(), sep, maxLen)
}
