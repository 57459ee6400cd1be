package testenv

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/segmentio/kafka-go"
)

// Environment variables printed by `scripts/services.sh env`, with the same defaults.
// They are named CLEAVE_TEST_* because CLEAVE_SOURCE_DSN, CLEAVE_KAFKA_BROKERS and the like
// are cleave's own configuration overrides, which must not leak into every test.
const (
	EnvSourceDSN    = "CLEAVE_TEST_SOURCE_DSN"
	EnvShard0DSN    = "CLEAVE_TEST_SHARD0_DSN"
	EnvShard1DSN    = "CLEAVE_TEST_SHARD1_DSN"
	EnvKafkaBrokers = "CLEAVE_TEST_KAFKA_BROKERS"

	DefaultSourceDSN    = "cleave:cleave@tcp(127.0.0.1:3307)/"
	DefaultShard0DSN    = "cleave:cleave@tcp(127.0.0.1:3308)/"
	DefaultShard1DSN    = "cleave:cleave@tcp(127.0.0.1:3309)/"
	DefaultKafkaBrokers = "127.0.0.1:9092"
)

// pingTimeout bounds each reachability check, so a missing service costs a test seconds.
const pingTimeout = 5 * time.Second

// Env is where the shared local services are. DSNs are go-sql-driver DSNs without a
// database name, for the user cleave, which has all privileges.
type Env struct {
	SourceDSN    string
	Shard0DSN    string
	Shard1DSN    string
	KafkaBrokers []string
}

// ShardDSNs returns the shard DSNs in shard order.
func (e Env) ShardDSNs() []string { return []string{e.Shard0DSN, e.Shard1DSN} }

// FromEnv reads the service addresses from the environment, without checking them.
func FromEnv() Env {
	return Env{
		SourceDSN:    getenv(EnvSourceDSN, DefaultSourceDSN),
		Shard0DSN:    getenv(EnvShard0DSN, DefaultShard0DSN),
		Shard1DSN:    getenv(EnvShard1DSN, DefaultShard1DSN),
		KafkaBrokers: splitBrokers(getenv(EnvKafkaBrokers, DefaultKafkaBrokers)),
	}
}

// Services returns the shared MariaDB source, shards and Kafka after checking that each
// answers. An unreachable service skips the test, or fails it when CI=true.
func Services(t testing.TB) Env {
	t.Helper()
	e := FromEnv()
	requireMySQL(t, e)
	requireKafka(t, e.KafkaBrokers)
	return e
}

// MySQL is Services for tests that need only the MariaDB servers; Kafka is not checked.
func MySQL(t testing.TB) Env {
	t.Helper()
	e := FromEnv()
	requireMySQL(t, e)
	return e
}

// KafkaBrokers is Services for tests that need only Kafka; it returns the brokers.
func KafkaBrokers(t testing.TB) []string {
	t.Helper()
	e := FromEnv()
	requireKafka(t, e.KafkaBrokers)
	return e.KafkaBrokers
}

// InCI reports whether tests run under CI (CI=true), where a missing service is a failure.
func InCI() bool { return os.Getenv("CI") == "true" }

// unavailable ends the test because a service it needs is missing: a failure in CI, a
// skip elsewhere.
func unavailable(t testing.TB, service, addr string, err error) {
	t.Helper()
	msg := fmt.Sprintf("%s at %s is not reachable (%v): run scripts/services.sh up", service, addr, err)
	if InCI() {
		t.Fatalf("%s [CI=true: a missing service fails the test]", msg)
	}
	t.Skip(msg)
}

func skipIfShort(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the local services; skipped under -short")
	}
}

// reachable remembers addresses that answered once, so many tests in one package do not
// each pay for a round of pings.
var reachable sync.Map

func requireMySQL(t testing.TB, e Env) {
	t.Helper()
	skipIfShort(t)
	checkMySQL(t, e)
}

func checkMySQL(t testing.TB, e Env) {
	t.Helper()
	for _, s := range []struct{ name, dsn string }{
		{"MariaDB source", e.SourceDSN},
		{"MariaDB shard0", e.Shard0DSN},
		{"MariaDB shard1", e.Shard1DSN},
	} {
		if _, ok := reachable.Load(s.dsn); ok {
			continue
		}
		if err := pingMySQL(s.dsn); err != nil {
			unavailable(t, s.name, dsnAddr(s.dsn), err)
			return
		}
		reachable.Store(s.dsn, true)
	}
}

func requireKafka(t testing.TB, brokers []string) {
	t.Helper()
	skipIfShort(t)
	checkKafka(t, brokers)
}

func checkKafka(t testing.TB, brokers []string) {
	t.Helper()
	key := "kafka:" + strings.Join(brokers, ",")
	if _, ok := reachable.Load(key); ok {
		return
	}
	if err := pingKafka(brokers); err != nil {
		unavailable(t, "Kafka", strings.Join(brokers, ","), err)
		return
	}
	reachable.Store(key, true)
}

func pingMySQL(dsn string) error {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return fmt.Errorf("parse DSN: %w", err)
	}
	cfg.Timeout = pingTimeout
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), pingTimeout)
	defer cancel()
	return db.PingContext(ctx)
}

func pingKafka(brokers []string) error {
	if len(brokers) == 0 {
		return fmt.Errorf("no brokers configured (%s is empty)", EnvKafkaBrokers)
	}
	var lastErr error
	for _, b := range brokers {
		if lastErr = pingBroker(b, pingTimeout); lastErr == nil {
			return nil
		}
	}
	return lastErr
}

// pingBroker asks the broker at addr for the cluster's brokers (a metadata request).
func pingBroker(addr string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn, err := kafka.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	_, err = conn.Brokers()
	return err
}

// dsnAddr is the host:port of a DSN, for messages (never the password).
func dsnAddr(dsn string) string {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return "(unparsable DSN)"
	}
	return cfg.Addr
}

func getenv(key, def string) string {
	if v := strings.TrimSpace(os.Getenv(key)); v != "" {
		return v
	}
	return def
}

func splitBrokers(s string) []string {
	var out []string
	for _, b := range strings.Split(s, ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}
