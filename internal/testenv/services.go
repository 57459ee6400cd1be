package testenv

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/cleave-dev/cleave/internal/testenv/core"
)

// Environment variables printed by `scripts/services.sh env`, with the same defaults
// (core documents them).
const (
	EnvSourceDSN    = core.EnvSourceDSN
	EnvShard0DSN    = core.EnvShard0DSN
	EnvShard1DSN    = core.EnvShard1DSN
	EnvKafkaBrokers = core.EnvKafkaBrokers

	EnvMySQLSourceDSN = core.EnvMySQLSourceDSN
	EnvMySQLShard0DSN = core.EnvMySQLShard0DSN
	EnvMySQLShard1DSN = core.EnvMySQLShard1DSN
	// EnvMySQLRoot is the root MySQL runs in (scripts/services.sh builds it); private
	// MySQL servers start inside it.
	EnvMySQLRoot = "CLEAVE_MYSQL_ROOT"
	// EnvFlavors narrows the flavor matrix for a quick local run ("mariadb" or "mysql");
	// CI runs every flavor.
	EnvFlavors = "CLEAVE_TEST_FLAVORS"

	DefaultSourceDSN    = core.DefaultSourceDSN
	DefaultShard0DSN    = core.DefaultShard0DSN
	DefaultShard1DSN    = core.DefaultShard1DSN
	DefaultKafkaBrokers = core.DefaultKafkaBrokers

	DefaultMySQLSourceDSN = core.DefaultMySQLSourceDSN
	DefaultMySQLShard0DSN = core.DefaultMySQLShard0DSN
	DefaultMySQLShard1DSN = core.DefaultMySQLShard1DSN
)

// Flavor is a server product: the local services run a source and two shards of each.
type Flavor = core.Flavor

// The flavors the suite runs against.
const (
	MariaDBFlavor = core.MariaDBFlavor
	MySQLFlavor   = core.MySQLFlavor
)

// Flavors is every flavor, in the order the matrix runs them.
var Flavors = core.Flavors

// Env is where the shared local services are. DSNs are go-sql-driver DSNs without a
// database name, for the user cleave, which has all privileges.
type Env = core.Env

// FromEnv reads the MariaDB service addresses from the environment, without checking them.
func FromEnv() Env { return core.FromEnv() }

// FromEnvFor reads the addresses of a source of one flavor and shards of another from the
// environment, without checking them.
func FromEnvFor(source, shards Flavor) Env { return core.FromEnvFor(source, shards) }

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
		if err := core.PingMySQL(context.Background(), s.dsn); err != nil {
			unavailable(t, s.name, core.DSNAddr(s.dsn), err)
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
	if err := core.PingKafka(context.Background(), brokers); err != nil {
		unavailable(t, "Kafka", strings.Join(brokers, ","), err)
		return
	}
	reachable.Store(key, true)
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
