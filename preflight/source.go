package preflight

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/mysqlx"
)

// MinBinlogRetention is the shortest binlog retention check accepts. Capture resumes from
// the binlog position it stored; a capture stopped for longer than the retention finds its
// position purged and the tables must be copied again. A day covers a stop overnight.
const MinBinlogRetention = 24 * time.Hour

// serverVars are the global variables check reads; a variable a server version lacks is
// simply absent from the result.
var serverVars = []string{
	"version", "version_comment", "hostname", "port", "datadir", "server_id",
	"log_bin", "binlog_format", "binlog_row_image", "binlog_row_metadata", "binlog_row_value_options",
	"binlog_transaction_compression",
	"gtid_mode", "gtid_strict_mode", "gtid_current_pos",
	"expire_logs_days", "binlog_expire_logs_seconds",
}

func globalVars(ctx context.Context, db *sql.DB) (map[string]string, error) {
	vars, err := mysqlx.GlobalVariables(ctx, db, serverVars...)
	if err != nil {
		return nil, fmt.Errorf("read server variables: %w", err)
	}
	return vars, nil
}

// openServer opens dsn and reads its variables. The error is the reason it is not usable,
// without the name: the caller's finding names the server.
func openServer(ctx context.Context, name, dsn string) (*server, error) {
	db, err := mysqlx.Open(ctx, name, dsn)
	if err != nil {
		if cause := errors.Unwrap(err); cause != nil {
			err = cause
		}
		return nil, err
	}
	vars, err := globalVars(ctx, db)
	if err != nil {
		db.Close()
		return nil, err
	}
	return &server{db: db, vars: vars, fl: mysqlx.FlavorOf(vars["version"]),
		id: vars["hostname"] + ":" + vars["port"] + ":" + vars["datadir"] + ":" + vars["server_id"]}, nil
}

// unreachableFix says what to do about a server that did not answer.
func unreachableFix(err error, key string) string {
	if mysqlx.Number(err) == mysqlx.ErAccessDenied {
		return "correct the user and password in " + key
	}
	return "start the server, or correct the host:port in " + key
}

// checkSource checks the source's reachability, binlog settings, GTID state, retention
// and the capture user's grants. It returns the open source, or nil when it is unreachable.
func checkSource(ctx context.Context, r *Report, cfg *config.Config) *server {
	ctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	subject := "source " + mysqlx.Addr(cfg.Source.DSN)
	src, err := openServer(ctx, "source", cfg.Source.DSN)
	if err != nil {
		r.fail("source.reachable", subject, "not usable ("+err.Error()+"); its settings, grants and tables were not checked",
			unreachableFix(err, "source.dsn (or "+config.EnvPrefix+"_SOURCE_DSN)"))
		return nil
	}
	r.ok("source.reachable", subject, "reachable")

	checkFlavor(r, cfg, src)
	checkBinlog(r, cfg, src)
	checkGTID(r, src)
	checkRetention(r, src)
	checkGrants(ctx, r, cfg, src)
	return src
}

func checkFlavor(r *Report, cfg *config.Config, src *server) {
	const subject = "source version"
	f := src.fl
	major, minor := f.OldestSupported()
	switch {
	case cfg.Source.Flavor != f.Name():
		r.fail("source.version", subject,
			fmt.Sprintf("the server is %s but source.flavor is %q: capture would speak the wrong GTID dialect of the replica protocol", f.Product(), cfg.Source.Flavor),
			"set source.flavor: "+f.Name())
	case !f.AtLeast(major, minor):
		r.fail("source.version", subject, fmt.Sprintf("%s is older than %d.%d, the oldest %s cleave supports", f.Product(), major, minor, f.Family()),
			fmt.Sprintf("upgrade the source to %s %d.%d or later", f.Family(), major, minor))
	default:
		r.ok("source.version", subject, "%s (source.flavor %s)", f.Product(), cfg.Source.Flavor)
	}
}

func checkBinlog(r *Report, cfg *config.Config, src *server) {
	v := src.vars
	const cnf = " and in the [mysqld] section of the server's config file, so that it survives a restart"
	if strings.EqualFold(v["log_bin"], "ON") {
		r.ok("source.log_bin", "source log_bin", "ON")
	} else {
		r.fail("source.log_bin", "source log_bin", orUnset(v["log_bin"])+": the source writes no binary log, so there is nothing to capture",
			"add log_bin=mysql-bin to the [mysqld] section of the server's config file and restart it (log_bin cannot be changed at runtime)")
	}

	if f := v["binlog_format"]; strings.EqualFold(f, "ROW") {
		r.ok("source.binlog_format", "source binlog_format", "ROW")
	} else {
		r.fail("source.binlog_format", "source binlog_format", orUnset(f)+": capture needs ROW events, which carry the values of every changed row",
			"SET GLOBAL binlog_format=ROW"+cnf+"; sessions already open keep their format until they reconnect")
	}

	if img := v["binlog_row_image"]; strings.EqualFold(img, "FULL") {
		r.ok("source.binlog_row_image", "source binlog_row_image", "FULL")
	} else {
		r.fail("source.binlog_row_image", "source binlog_row_image", orUnset(img)+": capture needs every column before and after each change; a "+strings.ToUpper(img)+" image leaves out unchanged columns, the shard key among them",
			"SET GLOBAL binlog_row_image=FULL"+cnf)
	}

	// Capture decodes a row by the column names the binlog carries (FULL metadata), so a
	// row written before an ALTER TABLE still decodes right after it. Without them the only
	// definition at hand is the table's current one, which is wrong for every event logged
	// before a change: capture refuses such a source, and so does the check.
	switch meta, has := v["binlog_row_metadata"]; {
	case !has:
		r.fail("source.binlog_row_metadata", "source binlog_row_metadata",
			src.fl.Product()+" cannot log column names in the binlog, and capture refuses to decode rows without them (a row logged before a schema change would decode with the wrong columns)",
			"upgrade the source to MySQL 8.0 or later, or MariaDB 10.5 or later")
	case strings.EqualFold(meta, "FULL"):
		r.ok("source.binlog_row_metadata", "source binlog_row_metadata", "FULL")
	default:
		r.fail("source.binlog_row_metadata", "source binlog_row_metadata", meta+": capture needs column names in the binlog to decode rows logged before a schema change (ALTER TABLE) correctly",
			"SET GLOBAL binlog_row_metadata=FULL"+cnf)
	}

	// Two MySQL settings change how row events are written, and both are session variables:
	// any session may turn them on for its own transactions whatever the global value says.
	// Capture decodes both forms, so neither is a failure; the findings say what the source
	// writes by default and that a session may differ.
	if opts, has := v["binlog_row_value_options"]; has {
		if strings.Contains(strings.ToUpper(opts), "PARTIAL_JSON") {
			r.warn("source.binlog_row_value_options", "source binlog_row_value_options",
				opts+": JSON updates are logged as diffs against the row's before image, not as whole documents; capture decodes them and applies each diff to the before image, so a document is only as right as the before image it was applied to (sessions may also set this themselves)",
				"SET GLOBAL binlog_row_value_options=''"+cnf+" to log whole documents, as every other reader of the binlog expects")
		} else {
			r.ok("source.binlog_row_value_options", "source binlog_row_value_options",
				"%s: JSON updates are logged as whole documents (a session may set PARTIAL_JSON for its own updates; capture decodes those too)", orEmpty(opts))
		}
	}
	if comp, has := v["binlog_transaction_compression"]; has {
		if strings.EqualFold(comp, "ON") {
			r.ok("source.binlog_transaction_compression", "source binlog_transaction_compression",
				"ON: transactions are logged compressed (one Transaction_payload event each); capture decompresses them")
		} else {
			r.ok("source.binlog_transaction_compression", "source binlog_transaction_compression",
				"%s (a session may set it ON for its own transactions; capture decompresses those)", comp)
		}
	}

	id, err := strconv.ParseUint(v["server_id"], 10, 32)
	switch {
	case err != nil || id == 0:
		r.fail("source.server_id", "source server_id", orUnset(v["server_id"])+": a server without a server_id refuses replica connections",
			"set server_id to a unique non-zero number in the server's config file and restart it")
	case uint32(id) == cfg.Source.ServerID:
		r.fail("source.server_id", "source server_id",
			fmt.Sprintf("%d is also source.server_id, the id cleave connects with as a replica: the source refuses a replica with its own server_id", id),
			"set source.server_id to a number that neither the source nor any of its replicas uses")
	default:
		r.ok("source.server_id", "source server_id", "%d (cleave replicates as server_id %d)", id, cfg.Source.ServerID)
	}
}

// checkGTID looks at the GTID state. Neither case is a FAIL: capture also works by binlog
// file and position, and replaying a transaction is harmless (apply is version-checked).
// What GTIDs buy is a position that survives a failover of the source to one of its
// replicas, so their absence is worth a WARN. A MySQL source has GTIDs with gtid_mode=ON;
// a MariaDB source always has them, and keeps them in order only in strict mode.
func checkGTID(r *Report, src *server) {
	const subject = "source GTID"
	v := src.vars
	if !src.fl.BinlogHasGTIDs(v) {
		r.warn("source.gtid", subject, "gtid_mode "+orUnset(v["gtid_mode"])+": capture follows binlog file and position, which do not survive a failover of the source to a replica",
			"SET GLOBAL enforce_gtid_consistency=ON, then raise gtid_mode step by step (OFF_PERMISSIVE, ON_PERMISSIVE, ON) and set both in the server's config file")
		return
	}
	strict := src.fl.GTIDStrictModeVariable()
	if strict == "" {
		r.ok("source.gtid", subject, "gtid_mode ON")
		return
	}
	// GTIDs that may go out of order: MariaDB's, whose state is one GTID per domain.
	pos, has := v["gtid_current_pos"]
	if !has {
		r.fail("source.gtid", subject, "gtid_current_pos is not readable", "use MariaDB 10.5 or later")
		return
	}
	if pos == "" {
		pos = "(empty: nothing logged yet)"
	}
	// Without strict mode a server accepts GTIDs out of sequence within a domain (after a
	// failover to a diverged replica, say); resuming by GTID could then skip transactions.
	if !strings.EqualFold(v[strict], "ON") {
		r.warn("source.gtid", subject, "gtid_current_pos "+pos+", "+strict+" "+orUnset(v[strict])+": GTIDs may go out of order within a domain after a failover, and capture resuming by GTID could then skip transactions",
			"SET GLOBAL "+strict+"=ON, and set it in the server's config file")
		return
	}
	r.ok("source.gtid", subject, "gtid_current_pos %s, %s ON", pos, strict)
}

// binlogRetention is how long the source keeps binlogs (0: never purged) and the variable
// that says so. MariaDB 10.6+ and MySQL 8 have binlog_expire_logs_seconds, which wins
// when set; older servers only expire_logs_days (fractional on MariaDB).
func binlogRetention(vars map[string]string) (time.Duration, string) {
	if s, has := vars["binlog_expire_logs_seconds"]; has {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil && n > 0 {
			return time.Duration(n) * time.Second, "binlog_expire_logs_seconds=" + s
		}
	}
	if d, has := vars["expire_logs_days"]; has {
		if f, err := strconv.ParseFloat(d, 64); err == nil && f > 0 {
			return time.Duration(f * float64(24*time.Hour)), "expire_logs_days=" + d
		}
	}
	if _, has := vars["binlog_expire_logs_seconds"]; has {
		return 0, "binlog_expire_logs_seconds=0"
	}
	return 0, "expire_logs_days=0"
}

func checkRetention(r *Report, src *server) {
	const subject = "source binlog retention"
	d, from := binlogRetention(src.vars)
	switch {
	case d == 0:
		r.ok("source.binlog_retention", subject, "never purged automatically (%s); watch the disk", from)
	case d < MinBinlogRetention:
		fix := "SET GLOBAL binlog_expire_logs_seconds=604800 (7 days; at least 86400)"
		if _, has := src.vars["binlog_expire_logs_seconds"]; !has {
			fix = "SET GLOBAL expire_logs_days=7 (at least 1)"
		}
		r.fail("source.binlog_retention", subject,
			fmt.Sprintf("binlogs are purged after %s (%s): a capture stopped for longer loses its position and the tables must be copied again", fmtDuration(d), from),
			fix+", and set it in the server's config file")
	default:
		r.ok("source.binlog_retention", subject, "%s (%s)", fmtDuration(d), from)
	}
}

func fmtDuration(d time.Duration) string {
	if d >= 24*time.Hour && d%(24*time.Hour) == 0 {
		if d == 24*time.Hour {
			return "1 day"
		}
		return fmt.Sprintf("%d days", d/(24*time.Hour))
	}
	return d.String()
}

func orUnset(s string) string {
	if s == "" {
		return "(not set)"
	}
	return s
}

func orEmpty(s string) string {
	if s == "" {
		return "(empty)"
	}
	return s
}

// checkGrants checks the privileges capture, the backfill and reconcile need on the
// source (sourceNeeds), one finding per privilege, each failure with the GRANT that fixes it.
func checkGrants(ctx context.Context, r *Report, cfg *config.Config, src *server) {
	a, err := readAccount(ctx, src)
	if err != nil {
		r.fail("source.grants", "source grants", err.Error(), "check that the source answers SHOW GRANTS")
		return
	}
	f := src.fl
	var dbs []string
	tablesOf := map[string][]string{}
	for _, t := range cfg.Tables {
		db, tb := t.DB(), t.TableName()
		if _, seen := tablesOf[db]; !seen {
			dbs = append(dbs, db)
		}
		tablesOf[db] = append(tablesOf[db], tb)
	}
	for _, n := range sourceNeeds(f, dbs) {
		subject := "source grant " + n.priv
		switch {
		case n.db != "*":
			subject += " on " + n.db
		case n.priv == f.BinlogMonitorPrivilege() && n.priv != "REPLICATION CLIENT":
			// Named as well by the name every other server knows it by.
			subject = "source grant REPLICATION CLIENT (" + n.priv + ")"
		}
		if n.priv == "SELECT" {
			checkSelect(ctx, r, f, a, src, n, subject, tablesOf[n.db])
			continue
		}
		switch {
		case a.has(n):
			r.ok("source.grants", subject, "held by %s", a.name)
		// The coordinates: the grant lines may not tell the whole story (a role MySQL does
		// not expand); listing the binlogs is the proof.
		case n.priv == f.BinlogMonitorPrivilege() && probeBinlogMonitor(ctx, src):
			r.ok("source.grants", subject, "%s may read the binlog coordinates (SHOW BINARY LOGS works)", a.name)
		default:
			r.fail("source.grants", subject, a.name+" lacks it: "+n.why, a.fix(f, []string{n.priv}, n.db))
		}
	}
}

// checkSelect checks SELECT on the configured tables of one database: by the grants, and
// where they do not show it, by trying (a role MySQL does not expand, a pattern matched
// differently under lower_case_table_names).
func checkSelect(ctx context.Context, r *Report, f mysqlx.Flavor, a *account, src *server, n need, subject string, tables []string) {
	var missing []string
	for _, tb := range tables {
		if !a.grants.canSelect(n.db, tb) {
			missing = append(missing, tb)
		}
	}
	if len(missing) == 0 {
		r.ok("source.grants", subject, "held by %s", a.name)
		return
	}
	var denied []string
	for _, tb := range missing {
		if err := probeSelect(ctx, src.db, n.db, tb); isDenied(err) {
			denied = append(denied, n.db+"."+tb)
		}
	}
	if len(denied) > 0 {
		r.fail("source.grants", subject, a.name+" may not read "+strings.Join(denied, ", ")+": "+n.why, a.fix(f, []string{"SELECT"}, n.db))
		return
	}
	r.ok("source.grants", subject, "%s may read its configured tables", a.name)
}

// showGrants returns the lines of SHOW GRANTS for the current user. On MySQL the
// privileges of active roles appear only with USING; MariaDB lists them by itself.
func showGrants(ctx context.Context, src *server) ([]string, error) {
	q := "SHOW GRANTS"
	if src.fl.ShowGrantsNeedsRoles() {
		var roles string
		if err := src.db.QueryRowContext(ctx, "SELECT CURRENT_ROLE()").Scan(&roles); err == nil && roles != "" && !strings.EqualFold(roles, "NONE") {
			q = "SHOW GRANTS FOR CURRENT_USER() USING " + roles
		}
	}
	rows, err := src.db.QueryContext(ctx, q)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var l string
		if err := rows.Scan(&l); err != nil {
			return nil, err
		}
		lines = append(lines, l)
	}
	return lines, rows.Err()
}

// probeBinlogMonitor reports whether the user may list the binlogs.
func probeBinlogMonitor(ctx context.Context, src *server) bool {
	rows, err := src.db.QueryContext(ctx, "SHOW BINARY LOGS")
	if err != nil {
		return false
	}
	rows.Close()
	return true
}

func probeSelect(ctx context.Context, db *sql.DB, schema, table string) error {
	rows, err := db.QueryContext(ctx, "SELECT 1 FROM "+mysqlx.QuoteTable(schema, table)+" LIMIT 0")
	if err != nil {
		return err
	}
	return rows.Close()
}

func isDenied(err error) bool {
	switch mysqlx.Number(err) {
	case mysqlx.ErTableAccessDenied, mysqlx.ErDBAccessDenied, mysqlx.ErAccessDenied, 1227 /* ER_SPECIFIC_ACCESS_DENIED_ERROR */ :
		return true
	}
	return false
}

// quoteAccount turns CURRENT_USER()'s user@host into 'user'@'host' for a GRANT statement.
func quoteAccount(userHost string) string {
	at := strings.LastIndex(userHost, "@")
	if at < 0 {
		return "'" + userHost + "'"
	}
	return "'" + userHost[:at] + "'@'" + userHost[at+1:] + "'"
}
