package preflight_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/internal/testenv"
	"github.com/cleave-dev/cleave/internal/testenv/deploy"
	"github.com/cleave-dev/cleave/preflight"
)

// setup is what a test configures; load turns it into a Config through a YAML file, the
// way `cleave check --config` gets one.
type setup struct {
	sourceDSN         string
	flavor            string
	serverID          uint32
	shardDSNs         []string
	brokers           []string
	prefix            string
	replicationFactor int
	tables            []config.Table
}

func (s setup) load(t *testing.T) *config.Config {
	t.Helper()
	c := deploy.Defaults(t)
	c.Source = config.Source{DSN: s.sourceDSN, Flavor: s.flavor, ServerID: s.serverID}
	c.Kafka.Brokers, c.Kafka.TopicPrefix, c.Kafka.Partitions = s.brokers, s.prefix, 2
	if s.replicationFactor > 0 {
		c.Kafka.ReplicationFactor = s.replicationFactor
	}
	for i, dsn := range s.shardDSNs {
		c.Shards = append(c.Shards, config.Shard{Name: fmt.Sprintf("shard%d", i), DSN: dsn})
	}
	c.Tables = s.tables
	c.HTTP.Listen = ""
	_, cfg := deploy.Write(t, c)
	return cfg
}

// closedPort returns a loopback address where nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// shopSchema is the demo's shape plus tables that break one rule each.
const shopSchema = `
CREATE DATABASE IF NOT EXISTS %[1]s;
CREATE TABLE %[1]s.users (
  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  email VARCHAR(190) NOT NULL,
  UNIQUE KEY (email));
CREATE TABLE %[1]s.orders (
  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  user_id BIGINT UNSIGNED NOT NULL,
  total DECIMAL(12,2) NOT NULL,
  version INT UNSIGNED NOT NULL DEFAULT 0,
  note VARCHAR(20),
  KEY (user_id));
CREATE TABLE %[1]s.order_items (
  order_id BIGINT UNSIGNED NOT NULL,
  line INT NOT NULL,
  user_id BIGINT UNSIGNED NOT NULL,
  sku VARCHAR(40) NOT NULL,
  PRIMARY KEY (order_id, line));
CREATE TABLE %[1]s.countries (code CHAR(2) NOT NULL PRIMARY KEY, name VARCHAR(64) NOT NULL);
CREATE TABLE %[1]s.audit (at DATETIME(6) NOT NULL, what TEXT);
CREATE TABLE %[1]s.readings (id BIGINT NOT NULL PRIMARY KEY, celsius DOUBLE NOT NULL);
`

func statuses(r preflight.Report, s preflight.Status) []string {
	var ids []string
	for _, f := range r.Findings {
		if f.Status == s && !slices.Contains(ids, f.Check) {
			ids = append(ids, f.Check)
		}
	}
	slices.Sort(ids)
	return ids
}

func lines(r preflight.Report) string {
	var b strings.Builder
	for _, f := range r.Findings {
		b.WriteString(f.String() + "\n")
	}
	return b.String()
}

func TestRunPassesOnTheLocalServices(t *testing.T) {
	testenv.EachFlavor(t, runPassesOnTheLocalServices)
}

func runPassesOnTheLocalServices(t *testing.T, env testenv.Env) {
	db := testenv.NewDatabase(t, env.SourceDSN)
	src := testenv.OpenDB(t, testenv.DSNWithDB(t, env.SourceDSN, db))
	for _, stmt := range strings.Split(strings.TrimSpace(fmt.Sprintf(shopSchema, "`"+db+"`")), ";") {
		if strings.TrimSpace(stmt) == "" {
			continue
		}
		if _, err := src.Exec(stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	cfg := setup{
		sourceDSN: env.SourceDSN, flavor: string(env.SourceFlavor), serverID: 4242,
		shardDSNs: env.ShardDSNs(), brokers: env.KafkaBrokers, prefix: testenv.TopicPrefix(t),
		tables: deploy.ShopTables(db),
	}.load(t)

	r := preflight.Run(context.Background(), cfg)
	if got := statuses(r, preflight.Fail); len(got) > 0 || r.Count(preflight.Warn) > 0 || !r.OK() {
		t.Fatalf("want every finding OK on the local services, got:\n%s", lines(r))
	}
	// Every requirement of the pre-flight is covered by at least one finding.
	for _, check := range []string{"config", "source.reachable", "source.version", "source.log_bin", "source.binlog_format",
		"source.binlog_row_image", "source.binlog_row_metadata", "source.server_id", "source.gtid", "source.binlog_retention",
		"source.grants", "table", "table.shard_key", "shard.reachable", "shard.grants", "shard.writable", "kafka.reachable", "kafka.create_topic", "kafka.topics"} {
		if len(r.Find(check)) == 0 {
			t.Errorf("no finding for %s in:\n%s", check, lines(r))
		}
	}
	if n := len(r.Find("shard.writable")); n != 2 {
		t.Errorf("want a writable finding per shard, got %d", n)
	}
	// A grants finding per shard and database: the configured one and _cleave.
	if n := len(r.Find("shard.grants")); n != 4 {
		t.Errorf("want 4 shard grant findings (2 shards, 2 databases), got %d", n)
	}
	if env.SourceFlavor == testenv.MySQLFlavor {
		for _, check := range []string{"source.binlog_row_value_options", "source.binlog_transaction_compression"} {
			if len(r.Find(check)) == 0 {
				t.Errorf("no finding for %s on MySQL in:\n%s", check, lines(r))
			}
		}
		if fs := r.Find("source.grants"); !slices.ContainsFunc(fs, func(f preflight.Finding) bool { return strings.HasPrefix(f.Subject, "source grant LOCK TABLES on ") }) {
			t.Errorf("no LOCK TABLES finding on MySQL (the backfill needs it) in:\n%s", lines(r))
		}
	}
	t.Logf("\n%s", lines(r))
}

// TestRunNamesWhatIsWrong starts, per flavor, a private source that is right, breaks one
// thing per case (a server setting through SET GLOBAL, restored afterwards, a user, or the
// configuration) and asserts that exactly the expected checks fail, each with a fix.
func TestRunNamesWhatIsWrong(t *testing.T) {
	for _, f := range testenv.MatrixFlavors() {
		t.Run(string(f), func(t *testing.T) { runNamesWhatIsWrong(t, f) })
	}
}

func runNamesWhatIsWrong(t *testing.T, flavor testenv.Flavor) {
	env := testenv.ServicesFor(t, flavor, flavor)
	mysql := flavor == testenv.MySQLFlavor
	m := testenv.StartServer(t, flavor, testenv.ServerOptions{})
	replGrants := "GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO 'replicator'@'%';"
	if mysql {
		replGrants = "GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'replicator'@'%';"
	}
	m.RootExec(fmt.Sprintf(shopSchema, "shop") +
		"CREATE USER 'reader'@'%' IDENTIFIED BY 'reader'; GRANT SELECT ON shop.* TO 'reader'@'%';" +
		"CREATE USER 'replicator'@'%' IDENTIFIED BY 'replicator'; " + replGrants)
	prefix := testenv.TopicPrefix(t)
	base := func() setup {
		return setup{
			sourceDSN: m.DSN(), flavor: string(flavor), serverID: 4242,
			shardDSNs: env.ShardDSNs(), brokers: env.KafkaBrokers, prefix: prefix,
			tables: deploy.ShopTables("shop"),
		}
	}
	other := "mysql"
	if mysql {
		other = "mariadb"
	}
	// The versions' wording of what differs between the products.
	product, versionColumn := "MariaDB", "int(10) unsigned"
	if mysql {
		product, versionColumn = "MySQL", "int unsigned"
	}

	tests := []struct {
		name string
		// only runs the case on one flavor ("" on both).
		only testenv.Flavor
		// own starts a source of its own with these options, for settings that cannot
		// change at runtime.
		own *testenv.ServerOptions
		// set and reset are SET GLOBAL statements run on the shared private source.
		set, reset string
		edit       func(s *setup)
		wantFail   []string
		wantWarn   []string
		// wantLine must be the start of one of the printed lines.
		wantLine string
	}{
		{name: "a correct source passes"},
		{name: "binlog off fails log_bin", only: testenv.MariaDBFlavor, own: &testenv.ServerOptions{DisableBinlog: true},
			// testenv turns GTID strict mode on only together with the binlog.
			wantFail: []string{"source.log_bin"}, wantWarn: []string{"source.gtid"}, wantLine: "FAIL source log_bin: OFF: the source writes no binary log"},
		{name: "binlog off fails log_bin", only: testenv.MySQLFlavor, own: &testenv.ServerOptions{DisableBinlog: true},
			wantFail: []string{"source.log_bin"}, wantLine: "FAIL source log_bin: OFF: the source writes no binary log"},
		{name: "STATEMENT binlog format fails binlog_format",
			set: "SET GLOBAL binlog_format=STATEMENT", reset: "SET GLOBAL binlog_format=ROW",
			wantFail: []string{"source.binlog_format"}, wantLine: "FAIL source binlog_format: STATEMENT: capture needs ROW events"},
		{name: "MINIMAL row image fails binlog_row_image",
			set: "SET GLOBAL binlog_row_image=MINIMAL", reset: "SET GLOBAL binlog_row_image=FULL",
			wantFail: []string{"source.binlog_row_image"}, wantLine: "FAIL source binlog_row_image: MINIMAL: "},
		{name: "MINIMAL row metadata fails binlog_row_metadata",
			set: "SET GLOBAL binlog_row_metadata=MINIMAL", reset: "SET GLOBAL binlog_row_metadata=FULL",
			wantFail: []string{"source.binlog_row_metadata"}, wantLine: "FAIL source binlog_row_metadata: MINIMAL: capture needs column names"},
		{name: "binlogs kept for an hour fail retention",
			set: "SET GLOBAL binlog_expire_logs_seconds=3600", reset: "SET GLOBAL binlog_expire_logs_seconds=86400",
			wantFail: []string{"source.binlog_retention"}, wantLine: "FAIL source binlog retention: binlogs are purged after 1h0m0s"},
		{name: "binlogs never purged pass",
			set: "SET GLOBAL binlog_expire_logs_seconds=0", reset: "SET GLOBAL binlog_expire_logs_seconds=86400",
			wantLine: "OK   source binlog retention: never purged automatically"},
		{name: "GTID strict mode off warns", only: testenv.MariaDBFlavor,
			set: "SET GLOBAL gtid_strict_mode=OFF", reset: "SET GLOBAL gtid_strict_mode=ON",
			wantWarn: []string{"source.gtid"}, wantLine: "WARN source GTID: gtid_current_pos "},
		{name: "gtid_mode below ON warns", only: testenv.MySQLFlavor,
			set: "SET GLOBAL gtid_mode=ON_PERMISSIVE", reset: "SET GLOBAL gtid_mode=ON",
			wantWarn: []string{"source.gtid"}, wantLine: "WARN source GTID: gtid_mode ON_PERMISSIVE: capture follows binlog file and position"},
		// Sessions may set both for themselves; capture decodes both, so neither fails.
		{name: "PARTIAL_JSON warns that JSON updates are diffs capture applies", only: testenv.MySQLFlavor,
			set: "SET GLOBAL binlog_row_value_options=PARTIAL_JSON", reset: "SET GLOBAL binlog_row_value_options=''",
			wantWarn: []string{"source.binlog_row_value_options"}, wantLine: "WARN source binlog_row_value_options: PARTIAL_JSON: JSON updates are logged as diffs"},
		{name: "whole JSON documents pass and say a session may differ", only: testenv.MySQLFlavor,
			wantLine: "OK   source binlog_row_value_options: (empty): JSON updates are logged as whole documents (a session may set PARTIAL_JSON"},
		{name: "compressed transactions pass: capture decompresses them", only: testenv.MySQLFlavor,
			set: "SET GLOBAL binlog_transaction_compression=ON", reset: "SET GLOBAL binlog_transaction_compression=OFF",
			wantLine: "OK   source binlog_transaction_compression: ON: transactions are logged compressed"},
		{name: "uncompressed transactions pass and say a session may differ", only: testenv.MySQLFlavor,
			wantLine: "OK   source binlog_transaction_compression: OFF (a session may set it ON for its own transactions"},
		{name: "a replica server_id equal to the source's fails",
			edit:     func(s *setup) { s.serverID = m.ServerID() },
			wantFail: []string{"source.server_id"}, wantLine: fmt.Sprintf("FAIL source server_id: %d is also source.server_id", m.ServerID())},
		{name: "the other flavor in the configuration fails",
			edit:     func(s *setup) { s.flavor = other },
			wantFail: []string{"source.version"}, wantLine: `FAIL source version: the server is ` + product},
		{name: "a user with only SELECT lacks the replication grants",
			edit:     func(s *setup) { s.sourceDSN = m.DSNFor("reader", "reader") },
			wantFail: []string{"source.grants"}, wantLine: "FAIL source grant REPLICATION SLAVE: 'reader'@'%' lacks it: capture reads the binlog as a replica. Fix: GRANT REPLICATION SLAVE ON *.* TO 'reader'@'%'"},
		{name: "a user without SELECT cannot read the tables",
			edit:     func(s *setup) { s.sourceDSN = m.DSNFor("replicator", "replicator") },
			wantFail: []string{"source.grants", "table"}, wantLine: "FAIL source grant SELECT on shop: 'replicator'@'%' may not read shop.users, shop.orders"},
		{name: "a MySQL user without LOCK TABLES cannot run the backfill", only: testenv.MySQLFlavor,
			edit:     func(s *setup) { s.sourceDSN = m.DSNFor("reader", "reader") },
			wantFail: []string{"source.grants"}, wantLine: "FAIL source grant LOCK TABLES on shop: 'reader'@'%' lacks it: the backfill starts each chunk's snapshot under a brief LOCK TABLES ... READ (MySQL 9.7.4 reports no binlog position of a snapshot). Fix: GRANT LOCK TABLES ON `shop`.* TO 'reader'@'%'"},
		{name: "a wrong password fails without showing it",
			edit:     func(s *setup) { s.sourceDSN = m.DSNFor("cleave", "s3cret-pw") },
			wantFail: []string{"source.reachable"}, wantLine: "FAIL source " + m.Addr() + ": not usable (Error 1045"},
		{name: "a table without primary key fails with the reason",
			edit:     func(s *setup) { s.tables = append(s.tables, config.Table{Name: "shop.audit", Strategy: "broadcast"}) },
			wantFail: []string{"table"}, wantLine: "FAIL tables[4] shop.audit: has no primary key: cleave keys every change event and checks every row by it"},
		{name: "a table that does not exist fails",
			edit:     func(s *setup) { s.tables = append(s.tables, config.Table{Name: "shop.nope", Strategy: "broadcast"}) },
			wantFail: []string{"table"}, wantLine: "FAIL tables[4].name: table shop.nope does not exist on the source"},
		{name: "a missing shard key column fails naming the key",
			edit:     func(s *setup) { s.tables[1].ShardKey = "uid" },
			wantFail: []string{"table.shard_key"}, wantLine: `FAIL tables[1].shard_key: column "uid" not found in shop.orders. Fix: name one of its columns (id, user_id, total, version, note)`},
		{name: "a DOUBLE shard key fails",
			edit: func(s *setup) {
				s.tables = append(s.tables, config.Table{Name: "shop.readings", Strategy: "hash", ShardKey: "celsius"})
			},
			wantFail: []string{"table.shard_key"}, wantLine: "FAIL tables[4].shard_key: column celsius of shop.readings is double: DOUBLE values have no exact text form"},
		{name: "an integer version column passes",
			edit:     func(s *setup) { s.tables[1].VersionColumn = "version" },
			wantLine: "OK   tables[1].version_column: shop.orders.version " + versionColumn},
		{name: "a string version column fails",
			edit:     func(s *setup) { s.tables[1].VersionColumn = "note" },
			wantFail: []string{"table.version_column"}, wantLine: "FAIL tables[1].version_column: column note of shop.orders is varchar(20): a version must be an integer"},
		{name: "an unreachable shard fails",
			edit:     func(s *setup) { s.shardDSNs[1] = "cleave:cleave@tcp(" + closedPort(t) + ")/" },
			wantFail: []string{"shard.reachable"}, wantLine: "FAIL shards[1] shard1 127.0.0.1:"},
		{name: "a shard on the source's server fails",
			edit:     func(s *setup) { s.shardDSNs[1] = m.DSN() },
			wantFail: []string{"shard.reachable"}, wantLine: "FAIL shards[1] shard1 " + m.Addr() + ": is the same server as the source"},
		{name: "an unreachable Kafka fails",
			edit:     func(s *setup) { s.brokers = []string{closedPort(t)} },
			wantFail: []string{"kafka.reachable"}, wantLine: "FAIL kafka 127.0.0.1:"},
		{name: "a replication factor above the broker count fails topic creation",
			edit:     func(s *setup) { s.replicationFactor = 3 },
			wantFail: []string{"kafka.create_topic"}, wantLine: "FAIL kafka topic " + preflight.CheckTopic(prefix) + ": cannot be created"},
	}
	for _, tt := range tests {
		if tt.only != "" && tt.only != flavor {
			continue
		}
		t.Run(tt.name, func(t *testing.T) {
			s := base()
			if tt.own != nil {
				own := testenv.StartServer(t, flavor, *tt.own)
				own.RootExec(fmt.Sprintf(shopSchema, "shop"))
				s.sourceDSN = own.DSN()
			}
			if tt.set != "" {
				m.RootExec(tt.set)
				t.Cleanup(func() { m.RootExec(tt.reset) })
			}
			if tt.edit != nil {
				tt.edit(&s)
			}
			r := preflight.Run(context.Background(), s.load(t))
			out := lines(r)
			if got := statuses(r, preflight.Fail); !slices.Equal(got, tt.wantFail) {
				t.Errorf("failed checks %v, want %v:\n%s", got, tt.wantFail, out)
			}
			if got := statuses(r, preflight.Warn); !slices.Equal(got, tt.wantWarn) {
				t.Errorf("warned checks %v, want %v:\n%s", got, tt.wantWarn, out)
			}
			if r.OK() != (len(tt.wantFail) == 0) {
				t.Errorf("OK() = %v with failures %v", r.OK(), tt.wantFail)
			}
			for _, f := range r.Findings {
				if f.Status != preflight.OK && f.Fix == "" {
					t.Errorf("%s finding without a fix: %s", f.Status, f)
				}
				if strings.Contains(f.String(), "s3cret-pw") {
					t.Errorf("a finding shows the password: %s", f)
				}
			}
			if tt.wantLine != "" && !slices.ContainsFunc(strings.Split(out, "\n"), func(l string) bool { return strings.HasPrefix(l, tt.wantLine) }) {
				t.Errorf("no line starts with %q:\n%s", tt.wantLine, out)
			}
		})
	}
}
