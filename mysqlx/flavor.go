package mysqlx

import (
	"context"
	"fmt"
	"strings"
)

// Flavor is everything in the SQL cleave sends that differs between the server products
// it talks to (MariaDB and MySQL, each by version). Every part asks its server's Flavor
// instead of branching on a product name, so a difference lives here once, with its
// reason, and a further product would be one more implementation.
type Flavor interface {
	// Name is the product as source.flavor spells it: "mariadb" or "mysql".
	Name() string
	// Version is the server's VERSION() ("10.11.19-MariaDB-0+deb12u1-log", "9.7.4-2").
	Version() string
	// Product names the server in messages: "MariaDB 10.11.19", "MySQL 9.7.4".
	Product() string
	// AtLeast reports whether the server's version is at least major.minor.
	AtLeast(major, minor int) bool
	// BinlogStatusStatement reports the binlog's end: SHOW BINARY LOG STATUS on MySQL from
	// 8.2 (8.4 removed the old name), SHOW MASTER STATUS elsewhere.
	BinlogStatusStatement() string

	// Hash functions (the checker's row hash and its routing in SQL).

	// BuiltinMD5 reports whether MD5() (and SHA1()) are built-in functions. MySQL
	// deprecated both in 9.4 and removed them in 9.6: component_classic_hashing brings them
	// back as loadable functions that take string arguments only (HasMD5 detects it).
	// SHA2() and CRC32() are built in on every server.
	BuiltinMD5() bool

	// Privileges, named as GRANT takes them and SHOW GRANTS prints them.

	// BinlogMonitorPrivilege allows SHOW BINARY LOGS and the binlog status statement:
	// MariaDB 10.5 renamed REPLICATION CLIENT to BINLOG MONITOR (and prints the new name).
	BinlogMonitorPrivilege() string
	// DefaultRoleStatement makes roles active at every login of account: MySQL takes all of
	// them (SET DEFAULT ROLE ALL TO), MariaDB one (SET DEFAULT ROLE r FOR). Without it a
	// granted role gives nothing until a session runs SET ROLE, which cleave never does.
	DefaultRoleStatement(role, account string) string

	// Snapshots (the backfill's copy of a chunk).

	// BinlogSnapshotPosition reports whether a consistent snapshot tells its binlog
	// position (MariaDB's Binlog_snapshot_file and Binlog_snapshot_position status). MySQL
	// has no such status: the backfill takes each chunk's position under a brief
	// LOCK TABLES ... READ, which needs the LOCK TABLES privilege.
	BinlogSnapshotPosition() bool
}

// The values of source.flavor.
const (
	MariaDB = "mariadb"
	MySQL   = "mysql"
)

// FlavorOf returns the flavor of a server by its VERSION() string: MariaDB says so in its
// version, every other server is MySQL.
func FlavorOf(version string) Flavor {
	if strings.Contains(strings.ToLower(version), "mariadb") {
		return mariaDB{version: version}
	}
	return mySQL{version: version}
}

// DetectFlavor asks the server behind q for its version and returns its flavor.
func DetectFlavor(ctx context.Context, q Querier) (Flavor, error) {
	rows, err := q.QueryContext(ctx, "SELECT VERSION()")
	if err != nil {
		return nil, fmt.Errorf("read the server's version: %w", err)
	}
	defer rows.Close()
	var v string
	if rows.Next() {
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("read the server's version: %w", err)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the server's version: %w", err)
	}
	if v == "" {
		return nil, fmt.Errorf("read the server's version: VERSION() returned nothing")
	}
	return FlavorOf(v), nil
}

// shortVersion is the version's leading digits and dots: "10.11.19" of "10.11.19-MariaDB-…".
func shortVersion(v string) string {
	end := 0
	for end < len(v) && (v[end] == '.' || v[end] >= '0' && v[end] <= '9') {
		end++
	}
	return strings.TrimRight(v[:end], ".")
}

type mariaDB struct{ version string }

var _ Flavor = mariaDB{}

func (f mariaDB) Name() string                  { return MariaDB }
func (f mariaDB) Version() string               { return f.version }
func (f mariaDB) Product() string               { return "MariaDB " + shortVersion(f.version) }
func (f mariaDB) AtLeast(major, minor int) bool { return VersionAtLeast(f.version, major, minor) }
func (f mariaDB) BinlogStatusStatement() string { return "SHOW MASTER STATUS" }
func (f mariaDB) BuiltinMD5() bool              { return true }
func (f mariaDB) BinlogSnapshotPosition() bool  { return true }
func (f mariaDB) DefaultRoleStatement(role, account string) string {
	return "SET DEFAULT ROLE " + role + " FOR " + account
}
func (f mariaDB) BinlogMonitorPrivilege() string {
	if f.AtLeast(10, 5) {
		return "BINLOG MONITOR"
	}
	return "REPLICATION CLIENT"
}

type mySQL struct{ version string }

var _ Flavor = mySQL{}

func (f mySQL) Name() string                  { return MySQL }
func (f mySQL) Version() string               { return f.version }
func (f mySQL) Product() string               { return "MySQL " + shortVersion(f.version) }
func (f mySQL) AtLeast(major, minor int) bool { return VersionAtLeast(f.version, major, minor) }
func (f mySQL) BinlogStatusStatement() string {
	if f.AtLeast(8, 2) {
		return "SHOW BINARY LOG STATUS"
	}
	return "SHOW MASTER STATUS"
}
func (f mySQL) BuiltinMD5() bool               { return !f.AtLeast(9, 6) }
func (f mySQL) BinlogMonitorPrivilege() string { return "REPLICATION CLIENT" }
func (f mySQL) BinlogSnapshotPosition() bool   { return false }
func (f mySQL) DefaultRoleStatement(_, account string) string {
	return "SET DEFAULT ROLE ALL TO " + account
}
