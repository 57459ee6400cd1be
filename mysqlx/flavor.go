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

	// The binlog as a reader of it (capture) sees it: its end and its GTID state.

	// BinlogPosition returns the binlog's end (file and offset, a transaction boundary)
	// and the GTID state there. MySQL's binlog status row carries its executed GTID set;
	// MariaDB's carries none, so there it is BINLOG_GTID_POS of that file and offset.
	BinlogPosition(ctx context.Context, q Querier) (file string, pos uint64, gtid string, err error)
	// GTIDStateAt returns the GTID state at a binlog position, ok false where the server
	// cannot tell: MariaDB computes it (BINLOG_GTID_POS); MySQL has no such function.
	GTIDStateAt(ctx context.Context, q Querier, file string, pos uint64) (gtid string, ok bool, err error)
	// ExecutedGTIDs returns the GTID state of everything in the server's binlog history:
	// MySQL's @@GLOBAL.gtid_executed, MariaDB's @@GLOBAL.gtid_binlog_pos (its
	// gtid_current_pos also counts transactions a replica applied without logging them).
	ExecutedGTIDs(ctx context.Context, q Querier) (string, error)
	// BinlogHasGTIDs reports from the server's global variables (lower-case names, as
	// SHOW GLOBAL VARIABLES gives them) whether every transaction in its binlog carries a
	// GTID: MariaDB's always does, MySQL's only with gtid_mode=ON.
	BinlogHasGTIDs(vars map[string]string) bool
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

// Binlog position and GTID state (binlog.go).
func (f mariaDB) BinlogPosition(ctx context.Context, q Querier) (string, uint64, string, error) {
	return mariaDBBinlogPosition(ctx, q, f.BinlogStatusStatement())
}
func (f mariaDB) GTIDStateAt(ctx context.Context, q Querier, file string, pos uint64) (string, bool, error) {
	g, err := mariaDBGTIDAt(ctx, q, file, pos)
	return g, err == nil, err
}
func (f mariaDB) ExecutedGTIDs(ctx context.Context, q Querier) (string, error) {
	return queryString(ctx, q, "SELECT @@GLOBAL.gtid_binlog_pos")
}
func (f mariaDB) BinlogHasGTIDs(map[string]string) bool { return true }

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

// Binlog position and GTID state (binlog.go).
func (f mySQL) BinlogPosition(ctx context.Context, q Querier) (string, uint64, string, error) {
	return mySQLBinlogPosition(ctx, q, f.BinlogStatusStatement())
}
func (f mySQL) GTIDStateAt(context.Context, Querier, string, uint64) (string, bool, error) {
	return "", false, nil
}
func (f mySQL) ExecutedGTIDs(ctx context.Context, q Querier) (string, error) {
	g, err := queryString(ctx, q, "SELECT @@GLOBAL.gtid_executed")
	return strings.ReplaceAll(g, "\n", ""), err
}
func (f mySQL) BinlogHasGTIDs(vars map[string]string) bool {
	return strings.EqualFold(vars["gtid_mode"], "ON")
}
