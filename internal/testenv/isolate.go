package testenv

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/segmentio/kafka-go"
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
	if _, err := db.ExecContext(ctx, "CREATE DATABASE `"+name+"`"); err != nil {
		db.Close()
		t.Fatalf("testenv: create database %s on %s: %v", name, dsnAddr(dsn), err)
	}
	t.Cleanup(func() {
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		if _, err := db.ExecContext(ctx, "DROP DATABASE IF EXISTS `"+name+"`"); err != nil {
			t.Logf("testenv: drop database %s on %s: %v", name, dsnAddr(dsn), err)
		}
	})
	return name
}

// DSNWithDB returns dsn with its database set to db.
func DSNWithDB(t testing.TB, dsn, db string) string {
	t.Helper()
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatalf("testenv: parse DSN for %s: %v", dsnAddr(dsn), err)
	}
	cfg.DBName = db
	return cfg.FormatDSN()
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
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatalf("testenv: parse DSN for %s: %v", dsnAddr(dsn), err)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = pingTimeout
	}
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatalf("testenv: open %s: %v", cfg.Addr, err)
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
	if len(brokers) == 0 || prefix == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	addr := kafka.TCP(brokers...)
	client := &kafka.Client{Addr: addr, Timeout: cleanupTimeout}

	if groups, err := client.ListGroups(ctx, &kafka.ListGroupsRequest{Addr: brokerAddr(brokers)}); err == nil {
		var ids []string
		for _, g := range groups.Groups {
			if strings.HasPrefix(g.GroupID, prefix) {
				ids = append(ids, g.GroupID)
			}
		}
		if len(ids) > 0 {
			res, err := client.DeleteGroups(ctx, &kafka.DeleteGroupsRequest{Addr: brokerAddr(brokers), GroupIDs: ids})
			if err != nil {
				t.Logf("testenv: delete consumer groups %v: %v", ids, err)
			} else {
				for id, err := range res.Errors {
					if err != nil {
						t.Logf("testenv: delete consumer group %s: %v", id, err)
					}
				}
			}
		}
	}

	meta, err := client.Metadata(ctx, &kafka.MetadataRequest{})
	if err != nil {
		// Kafka gone (not started, or a test's own broker): nothing to clean.
		return
	}
	var topics []string
	for _, tp := range meta.Topics {
		if strings.HasPrefix(tp.Name, prefix) {
			topics = append(topics, tp.Name)
		}
	}
	if len(topics) == 0 {
		return
	}
	res, err := client.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: topics})
	if err != nil {
		t.Logf("testenv: delete topics %v: %v", topics, err)
		return
	}
	for name, err := range res.Errors {
		if err != nil {
			t.Logf("testenv: delete topic %s: %v", name, err)
		}
	}
}

func brokerAddr(brokers []string) net.Addr { return kafka.TCP(brokers[0]) }

// UniqueName returns prefix + the sanitized test name + sep + 8 random hex digits, at most
// maxLen bytes, using only [a-z0-9] and sep. Database names, topic prefixes and file
// names built from it are valid and never collide between parallel test processes.
func UniqueName(t testing.TB, prefix string, sep byte, maxLen int) string {
	t.Helper()
	suffix := randomHex(t, 4)
	var b strings.Builder
	lastSep := true
	for _, r := range strings.ToLower(t.Name()) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
			lastSep = false
		case !lastSep:
			b.WriteByte(sep)
			lastSep = true
		}
	}
	body := strings.TrimRight(b.String(), string(sep))
	if room := maxLen - len(prefix) - 1 - len(suffix); len(body) > room {
		body = strings.TrimRight(body[:max(room, 0)], string(sep))
	}
	if body == "" {
		return prefix + suffix
	}
	return prefix + body + string(sep) + suffix
}

func randomHex(t testing.TB, n int) string {
	t.Helper()
	buf := make([]byte, n)
	if _, err := rand.Read(buf); err != nil {
		t.Fatalf("testenv: random: %v", err)
	}
	return hex.EncodeToString(buf)
}
