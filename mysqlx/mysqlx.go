// Package mysqlx owns how cleave talks SQL to the source and the shards: opening pools with
// a pinned session (UTC time zone, utf8mb4, strict SQL mode) so that every value reads and
// writes the same way on every server, quoting identifiers, and classifying MySQL errors as
// retryable or fatal by error number. It never logs or returns a DSN's password.
package mysqlx

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Open returns a pool for dsn whose every connection runs in UTC with utf8mb4 and a strict
// SQL mode, and checks that the server answers. name says what the pool is for ("source",
// "shard s0") and appears in errors.
func Open(ctx context.Context, name, dsn string) (*sql.DB, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("%s: DSN %s: %v", name, Redact(dsn), redactErr(err, dsn))
	}
	cfg.Loc = time.UTC
	cfg.ParseTime = false
	cfg.InterpolateParams = false
	cfg.MultiStatements = false
	if cfg.Params == nil {
		cfg.Params = map[string]string{}
	}
	cfg.Params["time_zone"] = "'+00:00'"
	cfg.Params["sql_mode"] = "'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION,NO_AUTO_VALUE_ON_ZERO'"
	cfg.Collation = "utf8mb4_bin"
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", name, redactErr(err, dsn))
	}
	db := sql.OpenDB(conn)
	db.SetConnMaxLifetime(10 * time.Minute)
	db.SetConnMaxIdleTime(time.Minute)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		var me *mysql.MySQLError
		if errors.As(err, &me) && cfg.TLS == nil {
			switch me.Number {
			case errSecureTransportRequired:
				return nil, fmt.Errorf("%s at %s refused a connection without TLS: %w. %s", name, Addr(dsn), err, TLSHint)
			case errAccessDenied:
				// MariaDB refuses a connection without TLS to a server that requires it
				// with this error too.
				return nil, fmt.Errorf("%s at %s refused the connection: %w. Check the DSN's user and password; if the server is MariaDB with require_secure_transport=ON, it answers a connection without TLS so too: add tls=true (the server's certificate verified against the system's CAs) or tls=skip-verify to the DSN", name, Addr(dsn), err)
			}
		}
		return nil, fmt.Errorf("%s at %s is not reachable: %w", name, Addr(dsn), err)
	}
	return db, nil
}

// errSecureTransportRequired is ER_SECURE_TRANSPORT_REQUIRED: a connection without TLS to
// a server with require_secure_transport=ON.
const errSecureTransportRequired = 3159

// errAccessDenied is ER_ACCESS_DENIED_ERROR.
const errAccessDenied = 1045

// TLSHint says how to connect to a server that accepts only TLS connections.
const TLSHint = "The server accepts only TLS connections (require_secure_transport=ON): add tls=true to the DSN (TLS, the server's certificate verified against the system's CAs), or tls=skip-verify (TLS without verifying the server)"

// Addr returns host:port (or the socket path) of dsn, for messages.
func Addr(dsn string) string {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return "?"
	}
	return cfg.Addr
}

// Redact returns dsn with its password replaced by "xxx".
func Redact(dsn string) string {
	at := strings.LastIndex(dsn, "@")
	if at < 0 {
		return dsn
	}
	if colon := strings.Index(dsn[:at], ":"); colon >= 0 {
		return dsn[:colon] + ":xxx" + dsn[at:]
	}
	return dsn
}

func redactErr(err error, dsn string) string {
	msg := err.Error()
	if cfg, perr := mysql.ParseDSN(dsn); perr == nil && cfg.Passwd != "" {
		msg = strings.ReplaceAll(msg, cfg.Passwd, "xxx")
	}
	return strings.ReplaceAll(msg, dsn, Redact(dsn))
}

// QuoteIdent quotes a MySQL identifier with backticks.
func QuoteIdent(name string) string {
	return "`" + strings.ReplaceAll(name, "`", "``") + "`"
}

// QuoteTable quotes db.table.
func QuoteTable(db, table string) string {
	return QuoteIdent(db) + "." + QuoteIdent(table)
}

// MySQL error numbers cleave acts on.
const (
	ErDupEntry           = 1062
	ErLockWaitTimeout    = 1205
	ErLockDeadlock       = 1213
	ErQueryInterrupted   = 1317
	ErServerShutdown     = 1053
	ErConCount           = 1040
	ErTooManyUserConns   = 1203
	ErOptionPreventsStmt = 1290 // e.g. read_only
	ErDataTooLong        = 1406
	ErTruncatedWrong     = 1292
	ErWarnDataOutOfRange = 1264
	ErBadNull            = 1048
	ErNoSuchTable        = 1146
	ErBadDB              = 1049 // unknown database
	ErCantDropField      = 1091 // DROP COLUMN of a column that is not there
	ErAlterNotSupported  = 1845 // ALGORITHM= not supported for the operation
	ErAlterNotSupportedR = 1846 // the same, with a reason
	ErBadField           = 1054
	ErAccessDenied       = 1045
	ErTableAccessDenied  = 1142
	ErDBAccessDenied     = 1044
	ErMasterFatalReading = 1236
	ErCantLock           = 1015
)

// Number returns the MySQL error number of err, or 0 when err is not a server error.
func Number(err error) uint16 {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return me.Number
	}
	return 0
}

// Retryable reports whether err is worth retrying: a deadlock, a lock wait timeout, a
// server going away or refusing connections for now, or a lost connection. Everything else
// (a value a column cannot hold, a missing table, denied access) fails the same way again.
func Retryable(err error) bool {
	if err == nil {
		return false
	}
	switch Number(err) {
	case ErLockDeadlock, ErLockWaitTimeout, ErQueryInterrupted, ErServerShutdown, ErConCount, ErTooManyUserConns, ErOptionPreventsStmt, ErCantLock:
		return true
	case 0:
	default:
		return false
	}
	// driver.ErrBadConn: the session broke before the statement reached the server (a
	// dedicated *sql.Conn gets it back instead of a new session).
	if errors.Is(err, mysql.ErrInvalidConn) || errors.Is(err, mysql.ErrBusyBuffer) || errors.Is(err, sql.ErrConnDone) ||
		errors.Is(err, driver.ErrBadConn) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	var oe *net.OpError
	return errors.As(err, &oe)
}

// Rejected reports whether err is the server refusing a row for good: the value does not
// fit the column, a NULL where none is allowed, a wrong type. Such an event goes to the
// dead-letter path instead of being retried.
func Rejected(err error) bool {
	switch Number(err) {
	case ErDataTooLong, ErTruncatedWrong, ErWarnDataOutOfRange, ErBadNull, 1366 /* incorrect value */, 1265 /* data truncated */, 1452 /* foreign key */, 3140 /* invalid JSON */, 4025 /* MariaDB: CONSTRAINT failed */, 3819 /* MySQL: check constraint violated */ :
		return true
	}
	return false
}

// TimeParam is the placeholder for a TIME(fsp) value bound as text. MySQL 9.7 reads some
// strings bound straight to CAST(? AS TIME) wrongly ("01:00:00.500" as 05:00:00,
// "153:01:06.021" as 21:00:00; a literal or a column reads them right): made a string of
// the connection's character set first, the parameter parses as a literal does, on MySQL
// and MariaDB alike.
func TimeParam(fsp int) string {
	return "CAST(CONVERT(? USING utf8mb4) AS TIME(" + strconv.Itoa(fsp) + "))"
}
