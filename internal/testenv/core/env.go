package core

import (
	"os"
	"strings"
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

// The flavors the local services run.
const (
	MariaDBFlavor Flavor = "mariadb"
	MySQLFlavor   Flavor = "mysql"
)

// Flavors is every flavor, in the order the test matrix runs them.
var Flavors = []Flavor{MariaDBFlavor, MySQLFlavor}

// Product names the flavor in messages ("MariaDB", "MySQL").
func (f Flavor) Product() string {
	if f == MySQLFlavor {
		return "MySQL"
	}
	return "MariaDB"
}

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
// environment, without checking them. An unset variable means its default.
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
