package capture

import (
	"context"
	"crypto/tls"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-sql-driver/mysql"

	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/mysqlx"
)

// source is what capture knows about the server it reads, learnt at start.
type source struct {
	db *sql.DB
	// fl is the server's product, for the SQL that differs between them; flavor is its
	// name, which is also go-mysql's replication dialect (gomysql.MariaDBFlavor or
	// gomysql.MySQLFlavor).
	fl       mysqlx.Flavor
	flavor   string
	version  string
	serverID uint32
	// gtids is whether the source has GTIDs capture can follow (MariaDB always; MySQL with
	// gtid_mode=ON).
	gtids bool
	// fillZeroLogPos: the source may send events with a zero log position
	// (Flavor.BinlogZeroLogPos).
	fillZeroLogPos bool
	// compressed: every session compresses its transactions (MySQL's
	// binlog_transaction_compression is ON globally).
	compressed bool
	coll       collations

	// tls is the replica connection's TLS configuration, nil for none: the SQL
	// connection's (source.dsn's tls parameter).
	tls *tls.Config

	host     string
	port     uint16
	user     string
	password string
	socket   string
}

// Errors that end capture for good: retrying cannot help, an operator must act.
var (
	// ErrPurged is returned when the binlog position capture must resume from is no longer
	// on the source.
	ErrPurged = errors.New("checkpoint purged from the source's binlog")
	// ErrServerIDConflict is returned when another replica connection uses capture's
	// server_id.
	ErrServerIDConflict = errors.New("another replica connection uses capture's server_id")
	// ErrDDL is returned when a schema change on a configured table meets ddl.policy stop.
	ErrDDL = errors.New("schema change on a configured table")
	// ErrSource is returned when the source is set up in a way capture cannot work with.
	ErrSource = errors.New("source not usable for capture")
)

// openSource connects to the source, checks the settings capture depends on and reads what
// it needs for decoding. Each problem names the variable and the fix.
func openSource(ctx context.Context, cfg *config.Config) (*source, error) {
	dc, err := mysql.ParseDSN(cfg.Source.DSN)
	if err != nil {
		return nil, fmt.Errorf("source.dsn: %w", err)
	}
	s := &source{flavor: cfg.Source.Flavor, user: dc.User, password: dc.Passwd}
	switch dc.Net {
	case "unix":
		s.socket = dc.Addr
	default:
		host, port, err := net.SplitHostPort(dc.Addr)
		if err != nil {
			return nil, fmt.Errorf("source.dsn: address %q: %w", dc.Addr, err)
		}
		p, err := strconv.ParseUint(port, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("source.dsn: port %q: %w", port, err)
		}
		s.host, s.port = host, uint16(p)
	}
	s.db, err = mysqlx.Open(ctx, "source", cfg.Source.DSN)
	if err != nil {
		return nil, err
	}
	if s.tls, err = replicaTLS(ctx, dc, s.db); err != nil {
		s.db.Close()
		return nil, err
	}
	if err := s.check(ctx, cfg); err != nil {
		s.db.Close()
		return nil, err
	}
	if err := s.loadCollations(ctx); err != nil {
		s.db.Close()
		return nil, err
	}
	return s, nil
}

// replicaTLS is the TLS configuration of the replica connection: the one go-sql-driver
// made of source.dsn's tls parameter, so that both connections to the source encrypt and
// verify alike (tls=true: the system's CAs and the DSN's host; skip-verify; a registered
// configuration). With tls=preferred, TLS is used where the SQL connection got it.
func replicaTLS(ctx context.Context, dc *mysql.Config, db *sql.DB) (*tls.Config, error) {
	if dc.TLS == nil {
		return nil, nil
	}
	if dc.AllowFallbackToPlaintext {
		var name, cipher string
		if err := db.QueryRowContext(ctx, "SHOW SESSION STATUS LIKE 'Ssl_cipher'").Scan(&name, &cipher); err != nil && !errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("ask the source whether the connection uses TLS: %w", err)
		}
		if cipher == "" {
			return nil, nil
		}
	}
	return dc.TLS.Clone(), nil
}

func (s *source) check(ctx context.Context, cfg *config.Config) error {
	vars, err := mysqlx.GlobalVariables(ctx, s.db, "version", "server_id", "log_bin", "binlog_format", "binlog_row_image", "binlog_row_metadata", "gtid_mode", "binlog_transaction_compression")
	if err != nil {
		return fmt.Errorf("read source variables: %w", err)
	}
	s.version = vars["version"]
	s.fl = mysqlx.FlavorOf(s.version)
	const cnf = " (SET GLOBAL and in the server's config file), then restart capture"
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if s.fl.Name() != s.flavor {
		bad("the source is %s but source.flavor is %q: set source.flavor: %s", s.fl.Product(), s.flavor, s.fl.Name())
	}
	if !strings.EqualFold(vars["log_bin"], "ON") && vars["log_bin"] != "1" {
		bad("log_bin is %s: the source writes no binary log; enable it in the server's config file and restart the server", orUnset(vars["log_bin"]))
	}
	if !strings.EqualFold(vars["binlog_format"], "ROW") {
		bad("binlog_format is %s: capture needs row events; set binlog_format=ROW%s", orUnset(vars["binlog_format"]), cnf)
	}
	if !strings.EqualFold(vars["binlog_row_image"], "FULL") {
		bad("binlog_row_image is %s: capture needs every column of every changed row; set binlog_row_image=FULL%s", orUnset(vars["binlog_row_image"]), cnf)
	}
	if meta, ok := vars["binlog_row_metadata"]; !ok {
		bad("the source (%s) cannot log column names (binlog_row_metadata): capture decodes each row by the names its table map carries, so that rows logged before a schema change decode right; use MariaDB 10.5+ or MySQL 8.0+", s.version)
	} else if !strings.EqualFold(meta, "FULL") {
		bad("binlog_row_metadata is %s: capture decodes each row by the column names, signedness and labels of its table map; set binlog_row_metadata=FULL%s", meta, cnf)
	}
	// Compressed transactions are read like any other (compressed.go), but each is one
	// event that go-mysql decodes whole before capture reads it.
	s.compressed = strings.EqualFold(vars["binlog_transaction_compression"], "ON")
	id, err := strconv.ParseUint(vars["server_id"], 10, 32)
	if err != nil {
		bad("server_id is %q, not a number", vars["server_id"])
	}
	s.serverID = uint32(id)
	if s.serverID == cfg.Source.ServerID {
		bad("source.server_id %d is the source's own server_id: give capture a server_id no server and no other replica uses", cfg.Source.ServerID)
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w at %s: %s", ErrSource, mysqlx.Addr(cfg.Source.DSN), strings.Join(problems, "; "))
	}
	s.gtids = s.fl.BinlogHasGTIDs(vars)
	s.fillZeroLogPos = s.fl.BinlogZeroLogPos()
	return nil
}

func orUnset(v string) string {
	if v == "" {
		return "unset"
	}
	return v
}

// loadCollations reads the collation ids the server uses in table maps.
func (s *source) loadCollations(ctx context.Context) error {
	s.coll = collations{}
	queries := []string{
		"SELECT ID, CHARACTER_SET_NAME FROM information_schema.COLLATIONS WHERE ID IS NOT NULL",
		// MariaDB 10.10+ lists the ids of its UCA-14 collations only here.
		"SELECT ID, CHARACTER_SET_NAME FROM information_schema.COLLATION_CHARACTER_SET_APPLICABILITY WHERE ID IS NOT NULL",
	}
	for i, q := range queries {
		rows, err := s.db.QueryContext(ctx, q)
		if err != nil {
			if i == 0 {
				return fmt.Errorf("read the source's collations: %w", err)
			}
			continue // older servers have no ID column there
		}
		for rows.Next() {
			var id uint64
			var cs string
			if err := rows.Scan(&id, &cs); err != nil {
				rows.Close()
				return fmt.Errorf("read the source's collations: %w", err)
			}
			s.coll[id] = strings.ToLower(cs)
		}
		err = rows.Err()
		rows.Close()
		if err != nil && i == 0 {
			return fmt.Errorf("read the source's collations: %w", err)
		}
	}
	return nil
}

// currentPosition returns the source's current binlog position, a transaction boundary,
// with its GTID state.
func (s *source) currentPosition(ctx context.Context) (Position, error) {
	var p Position
	file, pos, gtid, err := s.fl.BinlogPosition(ctx, s.db)
	if errors.Is(err, mysqlx.ErrNoBinlog) {
		return p, fmt.Errorf("%w: %v", ErrSource, err)
	}
	if err != nil {
		return p, err
	}
	p.File, p.Pos = file, pos
	if s.gtids {
		p.GTID = gtid
	}
	return p, nil
}

// startAt checks a start position the caller gave (Options.StartAt) as a checkpoint is
// checked before a resume (the source still has it, it belongs to the source's binlog
// history, a transaction begins there or the binlog ends there) and completes its GTID
// state where the source can tell it.
func (s *source) startAt(ctx context.Context, p Position, prefix string) (Position, error) {
	if _, err := p.coord(); err != nil || p.Pos < 4 {
		return p, fmt.Errorf("%w: the start position %s is not a binlog file and an offset past its header", ErrSource, p)
	}
	switch {
	case !s.gtids:
		p.GTID = ""
	case p.GTID == "":
		g, ok, err := s.fl.GTIDStateAt(ctx, s.db, p.File, p.Pos)
		if err != nil {
			return p, fmt.Errorf("read the GTID state at the start position %s: %w", p, err)
		}
		if !ok {
			return p, fmt.Errorf("%w: the start position %s has no GTID state, and the source (gtid_mode ON) cannot tell the one at that position: give the GTID set of the binlog status the position was read with", ErrSource, p)
		}
		p.GTID = g
	}
	if _, err := newGTIDState(s.flavor, p.GTID); err != nil {
		return p, fmt.Errorf("%w: the start position %s: %v", ErrSource, p, err)
	}
	if err := s.checkResume(ctx, &Checkpoint{Position: p, SourceServerID: s.serverID}, prefix); err != nil {
		return p, fmt.Errorf("start at %s: %w", p, err)
	}
	return p, nil
}

// binlogFiles lists the binlog files the source still has, oldest first.
func (s *source) binlogFiles(ctx context.Context) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, "SHOW BINARY LOGS")
	if err != nil {
		return nil, fmt.Errorf("list the source's binlog files: %w", err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var files []string
	for rows.Next() {
		vals := make([]sql.RawBytes, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, fmt.Errorf("list the source's binlog files: %w", err)
		}
		files = append(files, string(vals[0]))
	}
	return files, rows.Err()
}

// purgedError is the error for a resume position the source no longer has.
func purgedError(cp Position, prefix, detail string) error {
	return fmt.Errorf("%w: capture must resume at %s, but %s. Every change after that point is gone from the source, so the shards cannot be brought up to date from the binlog. Recover by copying the tables again: delete the topic %s (or set a new kafka.topic_prefix) so that capture starts at the current position, then run the backfill; and keep binlogs longer (binlog_expire_logs_seconds) than capture may be stopped",
		ErrPurged, cp, detail, CheckpointTopic(prefix))
}

// checkResume verifies that the source can still serve cp and that cp belongs to it.
func (s *source) checkResume(ctx context.Context, cp *Checkpoint, prefix string) error {
	if cp.SourceServerID != 0 && cp.SourceServerID != s.serverID {
		return fmt.Errorf("%w: the checkpoint %s was taken on the source with server_id %d, but source.dsn now reaches server_id %d. Versions order the changes of one server's binlog only; after a failover or with another source, start over: a new kafka.topic_prefix (or delete %s), then backfill",
			ErrSource, cp.Position, cp.SourceServerID, s.serverID, CheckpointTopic(prefix))
	}
	// File names restart after RESET MASTER (RESET BINARY LOGS AND GTIDS) or on a server
	// restored from a backup: the same file and offset would then hold other transactions.
	// The GTID state tells them apart: first the source's whole history, which a reset
	// empties, then the state at the position itself.
	reset := func(detail string) error {
		return fmt.Errorf("%w: the checkpoint %s does not belong to the source's binlog history: %s. The binlog was reset (RESET MASTER, RESET BINARY LOGS AND GTIDS) or the server replaced since. Start over: a new kafka.topic_prefix (or delete %s), then backfill",
			ErrSource, cp.Position, detail, CheckpointTopic(prefix))
	}
	if cp.GTID != "" {
		if err := s.checkHistory(ctx, cp, reset); err != nil {
			return err
		}
	}
	files, err := s.binlogFiles(ctx)
	if err != nil {
		return err
	}
	found := false
	for _, f := range files {
		if f == cp.File {
			found = true
		}
	}
	if !found {
		oldest := "none"
		if len(files) > 0 {
			oldest = files[0]
		}
		return purgedError(cp.Position, prefix, fmt.Sprintf("the source no longer has binlog file %s (oldest kept: %s)", cp.File, oldest))
	}
	if cp.GTID == "" {
		return nil
	}
	g, ok, err := s.fl.GTIDStateAt(ctx, s.db, cp.File, cp.Pos)
	if err != nil {
		return err
	}
	if ok {
		if !sameMariaDBState(g, cp.GTID) {
			return reset(fmt.Sprintf("at %s:%d the source's binlog has GTID position %q, the checkpoint recorded %q", cp.File, cp.Pos, g, cp.GTID))
		}
		return nil
	}
	return s.checkNextTransaction(ctx, cp, reset)
}

// checkHistory checks that the source has executed every transaction the checkpoint has
// seen: a reset source numbers its transactions from 1 again.
func (s *source) checkHistory(ctx context.Context, cp *Checkpoint, reset func(string) error) error {
	executed, err := s.fl.ExecutedGTIDs(ctx, s.db)
	if err != nil {
		return fmt.Errorf("read the source's executed GTIDs: %w", err)
	}
	seen, err := newGTIDState(s.flavor, cp.GTID)
	if err != nil {
		return fmt.Errorf("%w: the checkpoint's GTID state: %v", ErrSource, err)
	}
	missing, err := seen.missingFrom(executed)
	if err != nil {
		return err
	}
	if missing != "" {
		return reset(missing)
	}
	return nil
}

// checkNextTransaction is the check at the position itself where the server cannot tell
// the GTID state there (MySQL): the checkpoint's offset must begin an event (a stored
// boundary always does; another history's file rarely has one there), and the
// transaction that begins there must not be one the checkpoint has already seen.
func (s *source) checkNextTransaction(ctx context.Context, cp *Checkpoint, reset func(string) error) error {
	seen, err := gomysql.ParseMysqlGTIDSet(cp.GTID)
	if err != nil {
		return fmt.Errorf("%w: the checkpoint's GTID set %q: %v", ErrSource, cp.GTID, err)
	}
	stmt := fmt.Sprintf("SHOW BINLOG EVENTS IN '%s' FROM %d LIMIT 1", strings.ReplaceAll(cp.File, "'", "''"), cp.Pos)
	failed := func(err error) error {
		var me *mysql.MySQLError
		if errors.As(err, &me) && me.Number == errBinlogRead {
			return reset(fmt.Sprintf("offset %d of %s is not the start of an event (%s)", cp.Pos, cp.File, me.Message))
		}
		return fmt.Errorf("read the source's binlog at %s: %w", cp.Position, err)
	}
	// The server reports a bad offset as the query's error or, once it has sent the
	// result's header, as the error of its rows.
	rows, err := s.db.QueryContext(ctx, stmt)
	if err != nil {
		return failed(err)
	}
	defer rows.Close()
	for rows.Next() {
		var logName, typ, info string
		var pos, serverID, end uint64
		if err := rows.Scan(&logName, &pos, &typ, &serverID, &end, &info); err != nil {
			return fmt.Errorf("read the source's binlog at %s: %w", cp.Position, err)
		}
		_, quoted, ok := strings.Cut(info, "GTID_NEXT= '")
		if !ok || !strings.HasPrefix(typ, "Gtid") {
			continue
		}
		gtid := strings.TrimSuffix(quoted, "'")
		if next, err := gomysql.ParseMysqlGTIDSet(gtid); err == nil && seen.Contain(next) {
			return reset(fmt.Sprintf("the transaction at %s:%d is %s, which the checkpoint had already seen", cp.File, cp.Pos, gtid))
		}
	}
	if err := rows.Err(); err != nil {
		return failed(err)
	}
	return nil
}

// errSecureTransportRequired is ER_SECURE_TRANSPORT_REQUIRED: a connection without TLS
// to a server with require_secure_transport=ON.
const errSecureTransportRequired = 3159

// errSpecificAccessDenied is ER_SPECIFIC_ACCESS_DENIED_ERROR: the user lacks a global
// privilege, REPLICATION SLAVE for a binlog dump.
const errSpecificAccessDenied = 1227

// errBinlogRead is ER_ERROR_WHEN_EXECUTING_COMMAND, which SHOW BINLOG EVENTS returns for an
// offset that is not the start of an event.
const errBinlogRead = 1220

// classifyStreamError turns an error of the replica connection into capture's error.
func classifyStreamError(err error, serverID uint32, resume Position, prefix string) error {
	var me *gomysql.MyError
	if !errors.As(err, &me) {
		return err
	}
	switch me.Code {
	case errSpecificAccessDenied, mysqlx.ErAccessDenied:
		// The SQL connection of the same user was accepted before, so every attempt meets
		// the same refusal: the user may not read the binlog (MySQL and MariaDB both answer
		// a dump without REPLICATION SLAVE with access denied), or, MariaDB's answer to a
		// connection without TLS, the user must use TLS. Stop and name both.
		return fmt.Errorf("%w: the source refused capture's replica connection: %s. The user may lack the privilege to read the binlog: GRANT REPLICATION SLAVE ON *.* TO <user> (see README, Grants); or the source may require TLS of it: add tls=true to source.dsn", ErrSource, strings.TrimSuffix(me.Message, "."))
	case errSecureTransportRequired:
		return fmt.Errorf("%w: the source refused capture's replica connection: %s. %s", ErrSource, strings.TrimSuffix(me.Message, "."), mysqlx.TLSHint)
	case 4052, 1236:
		msg := strings.ToLower(me.Message)
		if me.Code == 4052 || strings.Contains(msg, "same server_uuid/server_id") || strings.Contains(msg, "same server_id") {
			return fmt.Errorf("%w: the source closed capture's replica connection because another one registered with source.server_id=%d (%s). Two connections with one server_id disconnect each other: give every cleave capture, and every other replica of the source, its own server_id",
				ErrServerIDConflict, serverID, me.Message)
		}
		if strings.Contains(msg, "purged") || strings.Contains(msg, "could not find") || strings.Contains(msg, "not find first log") {
			return purgedError(resume, prefix, "the source answers: "+me.Message)
		}
		return fmt.Errorf("%w: the source refused to send its binlog from %s: %s", ErrSource, resume, me.Message)
	}
	return err
}
