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

	EnvMySQLSourceDSN = "CLEAVE_TEST_MYSQL_SOURCE_DSN"
	EnvMySQLShard0DSN = "CLEAVE_TEST_MYSQL_SHARD0_DSN"
	EnvMySQLShard1DSN = "CLEAVE_TEST_MYSQL_SHARD1_DSN"
	// EnvMySQLRoot is the root MySQL runs in (scripts/services.sh builds it); private
	// MySQL servers start inside it.
	EnvMySQLRoot = "CLEAVE_MYSQL_ROOT"
	// EnvFlavors narrows the flavor matrix for a quick local run ("mariadb" or "mysql");
	// CI runs every flavor.
	EnvFlavors = "CLEAVE_TEST_FLAVORS"

	DefaultSourceDSN    = "cleave:cleave@tcp(127.0.0.1:3307)/"
	DefaultShard0DSN    = "cleave:cleave@tcp(127.0.0.1:3308)/"
	DefaultShard1DSN    = "cleave:cleave@tcp(127.0.0.1:3309)/"
	DefaultKafkaBrokers = "127.0.0.1:9092"

	DefaultMySQLSourceDSN = "cleave:cleave@tcp(127.0.0.1:3317)/"
	DefaultMySQLShard0DSN = "cleave:cleave@tcp(127.0.0.1:3318)/"
	DefaultMySQLShard1DSN = "cleave:cleave@tcp(127.0.0.1:3319)/"
)

// Flavor is a server product: the local services run a source and two shards of each.
type Flavor string

// The flavors the suite runs against.
const (
	MariaDBFlavor Flavor = "mariadb"
	MySQLFlavor   Flavor = "mysql"
)

// Flavors is every flavor, in the order the matrix runs them.
var Flavors = []Flavor{MariaDBFlavor, MySQLFlavor}

// Product names the flavor in messages ("MariaDB", "MySQL").
func (f Flavor) Product() string {
	if f == MySQLFlavor {
		return "MySQL"
	}
	return "MariaDB"
}

// pingTimeout bounds each reachability check, so a missing service costs a test seconds.
const pingTimeout = 5 * time.Second

// Env is where the shared local services are. DSNs are go-sql-driver DSNs without a
// database name, for the user cleave, which has all privileges.
type Env struct {
	SourceDSN    string
	Shard0DSN    string
	Shard1DSN    string
	KafkaBrokers []string
	// SourceFlavor is what the source runs (source.flavor in a config), ShardFlavor what
	// both shards run.
	SourceFlavor Flavor
	ShardFlavor  Flavor
}

// ShardDSNs returns the shard DSNs in shard order.
func (e Env) ShardDSNs() []string { return []string{e.Shard0DSN, e.Shard1DSN} }

// FromEnv reads the MariaDB service addresses from the environment, without checking them.
func FromEnv() Env { return FromEnvFor(MariaDBFlavor, MariaDBFlavor) }

// FromEnvFor reads the addresses of a source of one flavor and shards of another from the
// environment, without checking them.
func FromEnvFor(source, shards Flavor) Env {
	e := Env{
		KafkaBrokers: splitBrokers(getenv(EnvKafkaBrokers, DefaultKafkaBrokers)),
		SourceFlavor: source,
		ShardFlavor:  shards,
	}
	if source == MySQLFlavor {
		e.SourceDSN = getenv(EnvMySQLSourceDSN, DefaultMySQLSourceDSN)
	} else {
		e.SourceDSN = getenv(EnvSourceDSN, DefaultSourceDSN)
	}
	if shards == MySQLFlavor {
		e.Shard0DSN = getenv(EnvMySQLShard0DSN, DefaultMySQLShard0DSN)
		e.Shard1DSN = getenv(EnvMySQLShard1DSN, DefaultMySQLShard1DSN)
	} else {
		e.Shard0DSN = getenv(EnvShard0DSN, DefaultShard0DSN)
		e.Shard1DSN = getenv(EnvShard1DSN, DefaultShard1DSN)
	}
	return e
}

// Services returns the shared MariaDB source, shards and Kafka after checking that each
// answers. An unreachable service skips the test, or fails it when CI=true.
func Services(t testing.TB) Env { return ServicesFor(t, MariaDBFlavor, MariaDBFlavor) }

// ServicesFor is Services for a source of one flavor and shards of another.
func ServicesFor(t testing.TB, source, shards Flavor) Env {
	t.Helper()
	e := FromEnvFor(source, shards)
	requireMySQL(t, e)
	requireKafka(t, e.KafkaBrokers)
	return e
}

// MySQL is Services for tests that need only the MariaDB servers; Kafka is not checked.
func MySQL(t testing.TB) Env { return DatabasesFor(t, MariaDBFlavor, MariaDBFlavor) }

// DatabasesFor is ServicesFor without Kafka: only the source and the shards are checked.
func DatabasesFor(t testing.TB, source, shards Flavor) Env {
	t.Helper()
	e := FromEnvFor(source, shards)
	requireMySQL(t, e)
	return e
}

// EachFlavor runs fn once per flavor, as subtests named after it ("mariadb", "mysql"),
// with a source and shards of that flavor and Kafka checked. CLEAVE_TEST_FLAVORS narrows
// the matrix outside CI.
func EachFlavor(t *testing.T, fn func(t *testing.T, e Env)) {
	t.Helper()
	for _, f := range MatrixFlavors() {
		t.Run(string(f), func(t *testing.T) {
			fn(t, ServicesFor(t, f, f))
		})
	}
}

// EachFlavorDatabases is EachFlavor for tests that need no Kafka.
func EachFlavorDatabases(t *testing.T, fn func(t *testing.T, e Env)) {
	t.Helper()
	for _, f := range MatrixFlavors() {
		t.Run(string(f), func(t *testing.T) {
			fn(t, DatabasesFor(t, f, f))
		})
	}
}

// CrossFlavors runs fn for a MySQL source with MariaDB shards and a MariaDB source with
// MySQL shards, as subtests "mysql-to-mariadb" and "mariadb-to-mysql".
func CrossFlavors(t *testing.T, fn func(t *testing.T, e Env)) {
	t.Helper()
	for _, p := range [][2]Flavor{{MySQLFlavor, MariaDBFlavor}, {MariaDBFlavor, MySQLFlavor}} {
		if !inMatrix(p[0]) || !inMatrix(p[1]) {
			continue
		}
		t.Run(string(p[0])+"-to-"+string(p[1]), func(t *testing.T) {
			fn(t, ServicesFor(t, p[0], p[1]))
		})
	}
}

// MatrixFlavors is the flavors this run covers: every flavor, unless CLEAVE_TEST_FLAVORS
// names some (ignored under CI=true, which always runs them all).
func MatrixFlavors() []Flavor {
	var out []Flavor
	for _, f := range Flavors {
		if inMatrix(f) {
			out = append(out, f)
		}
	}
	return out
}

// SkipUnlessInMatrix skips a test written for one flavor when CLEAVE_TEST_FLAVORS leaves
// that flavor out of this run.
func SkipUnlessInMatrix(t testing.TB, f Flavor) {
	t.Helper()
	if !inMatrix(f) {
		t.Skipf("%s is not in %s=%s", f, EnvFlavors, os.Getenv(EnvFlavors))
	}
}

func inMatrix(f Flavor) bool {
	v := strings.TrimSpace(os.Getenv(EnvFlavors))
	if v == "" || InCI() {
		return true
	}
	for _, w := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' }) {
		if Flavor(w) == f {
			return true
		}
	}
	return false
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
	src, shard := e.SourceFlavor, e.ShardFlavor
	if src == "" {
		src = MariaDBFlavor
	}
	if shard == "" {
		shard = MariaDBFlavor
	}
	for _, s := range []struct{ name, dsn string }{
		{src.Product() + " source", e.SourceDSN},
		{shard.Product() + " shard0", e.Shard0DSN},
		{shard.Product() + " shard1", e.Shard1DSN},
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

// EnvBenchFlavor picks the flavor a benchmark runs against (scripts/bench.sh sets it for its
// MySQL rows); MariaDB when unset.
const EnvBenchFlavor = "CLEAVE_BENCH_FLAVOR"

// BenchFlavor is the flavor named by CLEAVE_BENCH_FLAVOR, MariaDB by default.
func BenchFlavor() Flavor {
	if Flavor(strings.TrimSpace(os.Getenv(EnvBenchFlavor))) == MySQLFlavor {
		return MySQLFlavor
	}
	return MariaDBFlavor
}
