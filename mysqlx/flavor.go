package mysqlx

import (
	"context"
	"fmt"
	"strconv"
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
	// Family names the product without its version, as an operator chooses servers:
	// "MariaDB", "MySQL".
	Family() string
	// AtLeast reports whether the server's version is at least major.minor.
	AtLeast(major, minor int) bool
	// OldestSupported is the oldest major.minor of the product cleave works with: MariaDB
	// 10.5 (the first to log column names, binlog_row_metadata, and to name BINLOG
	// MONITOR), MySQL 5.7.
	OldestSupported() (major, minor int)
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
	// GTIDStrictModeVariable names the global variable that must be ON for the server to
	// refuse a GTID out of sequence within a replication domain (after a failover to a
	// diverged replica, say), which resuming by GTID relies on: MariaDB's gtid_strict_mode.
	// It is "" on MySQL, whose GTIDs are a set with no order to break.
	GTIDStrictModeVariable() string
	// BinlogZeroLogPos reports whether the server may send events of a binlog dump with log
	// position 0, leaving the replica to compute it (go-mysql's FillZeroLogPos): MariaDB
	// from 11.4 does; MySQL and older MariaDB always fill it in.
	BinlogZeroLogPos() bool

	// The backfill's snapshots of the source.

	// SnapshotPositionStatus reports whether START TRANSACTION WITH CONSISTENT SNAPSHOT
	// records the snapshot's binlog position in the session status Binlog_snapshot_file
	// and Binlog_snapshot_position. MariaDB does; MySQL has no such status, so there the
	// position is read while LOCK TABLES … READ holds off every write to the table.
	SnapshotPositionStatus() bool

	// Shard tables: how a source table's definition is made on a shard of this product
	// (cleave prepare), and how rows are written to it (the sink).

	// ParenthesizedDefaults reports whether the product takes an expression default
	// (DEFAULT uuid()) and the default of a TEXT or BLOB column only in parentheses, as
	// MySQL does (DEFAULT (uuid())); MariaDB takes and prints them bare.
	ParenthesizedDefaults() bool

	// NativeJSON reports whether JSON is a type of its own. MySQL's is (documents stored in
	// a binary form, normalised); MariaDB's JSON is an alias for LONGTEXT COLLATE
	// utf8mb4_bin with a CHECK (json_valid(…)), and keeps the text as written.
	NativeJSON() bool
	// Collation returns this product's name for a collation that compares, orders and pads
	// every string exactly as collation coll of the product from does, and false when
	// there is none it can vouch for. A collation decides which keys a unique index takes
	// as equal and the order of a string primary key, by which the checker pages, so
	// "close" is not good enough: MySQL's utf8mb4_0900_ai_ci (UCA 9.0.0) and MariaDB's
	// utf8mb4_uca1400_nopad_ai_ci (UCA 14.0.0) disagree about Hangul, emoji and every
	// character Unicode added after 9.0.
	Collation(from Flavor, coll string) (string, bool)
	// UpsertRowAlias is what an INSERT … ON DUPLICATE KEY UPDATE writes after its VALUES
	// rows to name the row it tried to insert, and UpsertValue how the assignments refer
	// to that row's value of a column (quoted). MySQL deprecates VALUES(col) there from
	// 8.0.20 for a row alias (8.0.19: … VALUES (…) AS new ON DUPLICATE KEY UPDATE c =
	// new.c); MariaDB has only VALUES(col).
	UpsertRowAlias() string
	UpsertValue(quotedColumn string) string
	// InstantDropColumn reports whether ALTER TABLE … DROP COLUMN takes ALGORITHM=INSTANT,
	// a change of the table's metadata only, without copying its rows: MariaDB from 10.4,
	// MySQL from 8.0.29. Even there a table may refuse it (MySQL counts instant changes
	// per table, up to 64), so a caller falls back to the default algorithm.
	InstantDropColumn() bool
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
	// BinlogMonitorGrants are the privileges, as SHOW GRANTS prints them, that allow what
	// BinlogMonitorPrivilege does besides that name: MariaDB prints REPLICATION CLIENT
	// before 10.5 and BINLOG MONITOR from it (one privilege, renamed); MySQL's SUPER
	// includes REPLICATION CLIENT.
	BinlogMonitorGrants() []string
	// ShowGrantsNeedsRoles reports whether SHOW GRANTS lists the privileges of the
	// session's active roles only when it names them (SHOW GRANTS FOR CURRENT_USER() USING
	// r), as MySQL 8.0+ does. MariaDB lists them by itself, and MySQL 5.7 has no roles.
	ShowGrantsNeedsRoles() bool
	// DefaultRoleStatement makes roles active at every login of account: MySQL takes all of
	// them (SET DEFAULT ROLE ALL TO), MariaDB one (SET DEFAULT ROLE r FOR). Without it a
	// granted role gives nothing until a session runs SET ROLE, which cleave never does.
	DefaultRoleStatement(role, account string) string
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
func (f mariaDB) Product() string               { return f.Family() + " " + shortVersion(f.version) }
func (f mariaDB) Family() string                { return "MariaDB" }
func (f mariaDB) AtLeast(major, minor int) bool { return VersionAtLeast(f.version, major, minor) }
func (f mariaDB) OldestSupported() (int, int)   { return 10, 5 }
func (f mariaDB) BinlogStatusStatement() string { return "SHOW MASTER STATUS" }
func (f mariaDB) BuiltinMD5() bool              { return true }
func (f mariaDB) DefaultRoleStatement(role, account string) string {
	return "SET DEFAULT ROLE " + role + " FOR " + account
}
func (f mariaDB) BinlogMonitorPrivilege() string {
	if f.AtLeast(10, 5) {
		return "BINLOG MONITOR"
	}
	return "REPLICATION CLIENT"
}
func (f mariaDB) BinlogMonitorGrants() []string {
	return []string{"REPLICATION CLIENT", "BINLOG MONITOR"}
}
func (f mariaDB) ShowGrantsNeedsRoles() bool { return false }

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
func (f mariaDB) GTIDStrictModeVariable() string        { return "gtid_strict_mode" }
func (f mariaDB) BinlogZeroLogPos() bool                { return f.AtLeast(11, 4) }
func (f mariaDB) SnapshotPositionStatus() bool          { return true }

func (f mariaDB) ParenthesizedDefaults() bool { return false }
func (f mariaDB) NativeJSON() bool            { return false }
func (f mariaDB) Collation(from Flavor, coll string) (string, bool) {
	return collationOn(f, from, coll)
}
func (f mariaDB) InstantDropColumn() bool                { return f.AtLeast(10, 4) }
func (f mariaDB) UpsertRowAlias() string                 { return "" }
func (f mariaDB) UpsertValue(quotedColumn string) string { return "VALUES(" + quotedColumn + ")" }

type mySQL struct{ version string }

var _ Flavor = mySQL{}

func (f mySQL) Name() string                  { return MySQL }
func (f mySQL) Version() string               { return f.version }
func (f mySQL) Product() string               { return f.Family() + " " + shortVersion(f.version) }
func (f mySQL) Family() string                { return "MySQL" }
func (f mySQL) AtLeast(major, minor int) bool { return VersionAtLeast(f.version, major, minor) }
func (f mySQL) OldestSupported() (int, int)   { return 5, 7 }
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
func (f mySQL) GTIDStrictModeVariable() string { return "" }
func (f mySQL) BinlogZeroLogPos() bool         { return false }

func (f mySQL) SnapshotPositionStatus() bool { return false }

func (f mySQL) ParenthesizedDefaults() bool { return true }
func (f mySQL) NativeJSON() bool            { return true }
func (f mySQL) Collation(from Flavor, coll string) (string, bool) {
	return collationOn(f, from, coll)
}

// upsertAlias names the inserted row in MySQL's upserts: not a word a table is likely to
// be called, so that a column reference never becomes ambiguous.
const upsertAlias = "`_cleave_new`"

func (f mySQL) UpsertRowAlias() string {
	if !f.before8019() {
		return " AS " + upsertAlias
	}
	return ""
}

func (f mySQL) UpsertValue(quotedColumn string) string {
	if f.UpsertRowAlias() != "" {
		return upsertAlias + "." + quotedColumn
	}
	return "VALUES(" + quotedColumn + ")"
}

func (f mySQL) InstantDropColumn() bool { return f.atLeast80(29) }

// before8019 reports a MySQL older than 8.0.19, which has no row alias in INSERT.
func (f mySQL) before8019() bool { return !f.atLeast80(19) }

// atLeast80 reports whether the server is MySQL 8.0.patch or newer: 8.0 took new features
// in patch releases.
func (f mySQL) atLeast80(patch int) bool {
	if !f.AtLeast(8, 0) {
		return false
	}
	if f.AtLeast(8, 1) {
		return true
	}
	parts := strings.SplitN(shortVersion(f.version), ".", 3)
	if len(parts) < 3 {
		return false
	}
	p, err := strconv.Atoi(parts[2])
	return err == nil && p >= patch
}

// sharedCollations are the collations MySQL and MariaDB both have from their common MySQL
// 5 past, under one name and with the same weights and pad attribute. Each was checked
// against MySQL 9.7 and MariaDB 10.11 with strings that tell collations apart (trailing
// spaces, NBSP, a/á/A/Ä and a combining accent, ß/ss/ẞ, æ/ae, ligatures, Hangul
// syllables and jamo, emoji and characters of recent Unicode versions, CJK, Latin-1
// letters): the same classes of equal strings, in the same order. Other collations that
// both products name alike are left out on purpose: MariaDB rebuilt some language
// collations on CLDR (utf8mb4_croatian_ci is not MySQL's), and MariaDB 11.4 accepts
// utf8mb4_0900_ai_ci as an alias of its UCA 14.0.0 collation.
var sharedCollations = map[string]bool{
	"binary":                 true,
	"utf8mb4_bin":            true,
	"utf8mb4_general_ci":     true,
	"utf8mb4_unicode_ci":     true,
	"utf8mb4_unicode_520_ci": true,
	"utf8mb3_bin":            true,
	"utf8mb3_general_ci":     true,
	"utf8mb3_unicode_ci":     true,
	"utf8mb3_unicode_520_ci": true,
	"utf8_bin":               true,
	"utf8_general_ci":        true,
	"utf8_unicode_ci":        true,
	"utf8_unicode_520_ci":    true,
	"latin1_swedish_ci":      true,
	"latin1_bin":             true,
	"latin1_general_ci":      true,
	"latin1_general_cs":      true,
	"ascii_general_ci":       true,
	"ascii_bin":              true,
}

// renamedCollations are one collation under each product's own name, by product: the
// name on the key's product maps to the name on the other. utf8mb4_0900_bin and
// utf8mb4_nopad_bin both compare code points without padding.
var renamedCollations = map[string]map[string]string{
	MySQL:   {"utf8mb4_0900_bin": "utf8mb4_nopad_bin"},
	MariaDB: {"utf8mb4_nopad_bin": "utf8mb4_0900_bin"},
}

// collationOn is Flavor.Collation for the product to.
func collationOn(to, from Flavor, coll string) (string, bool) {
	coll = strings.ToLower(coll)
	if from == nil || from.Name() == to.Name() || sharedCollations[coll] {
		return coll, true
	}
	if c, ok := renamedCollations[from.Name()][coll]; ok {
		return c, true
	}
	return "", false
}

func (f mySQL) BuiltinMD5() bool               { return !f.AtLeast(9, 6) }
func (f mySQL) BinlogMonitorPrivilege() string { return "REPLICATION CLIENT" }
func (f mySQL) BinlogMonitorGrants() []string  { return []string{"SUPER"} }
func (f mySQL) ShowGrantsNeedsRoles() bool     { return f.AtLeast(8, 0) }
func (f mySQL) DefaultRoleStatement(_, account string) string {
	return "SET DEFAULT ROLE ALL TO " + account
}
