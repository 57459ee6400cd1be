package preflight

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/shardmeta"
)

// The privileges each part of cleave needs, per server and flavor. They were found by
// running every part as a user that holds exactly these and as users that lack one each
// (cmd/cleave's TestLeastPrivilegeUsersPassCheckAndRunEveryPart and its missing-grant
// cases), on MariaDB 10.11 and MySQL 9.7:
//
//	server  privilege                        on         needed by
//	source  REPLICATION SLAVE                *.*        capture: reads the binlog as a replica
//	source  REPLICATION CLIENT               *.*        capture: the binlog coordinates to start and
//	        (MariaDB 10.5+: BINLOG MONITOR)             resume; the backfill on MySQL: each chunk's
//	                                                    position; reconcile: the position a re-check
//	                                                    waits for
//	source  SELECT                           db.*       the backfill copies the rows, reconcile compares
//	                                                    them, capture and prepare read the definitions
//	source  LOCK TABLES (MySQL only)         db.*       the backfill: each chunk's snapshot starts under a
//	                                                    brief LOCK TABLES ... READ (no binlog_snapshot_position)
//	shard   SELECT, INSERT, UPDATE, DELETE   db.*       the sink writes the rows, reconcile reads them, a
//	                                                    repair writes and deletes them
//	shard   CREATE                           db.*       prepare creates the database and its tables
//	shard   ALTER, DROP, INDEX               db.*       the sink, with ddl.policy: propagate only
//	shard   SELECT, INSERT, UPDATE, CREATE   _cleave.*  the sink's offsets and applied schema changes
//	                                                    (never deleted); prepare, check and the sink
//	                                                    create the database and its tables
//
// Nothing else: no RELOAD (cleave never flushes), no SUPER, no PROCESS. The README's
// "Grants" section prints the GRANT statements.

// need is one privilege a part of cleave needs on a server.
type need struct {
	// priv is the privilege as GRANT names it; also are other names that include it.
	priv string
	also []string
	// db is "*" for a global privilege, else the database it is needed on.
	db string
	// why says which part needs it, for the finding.
	why string
}

// sourceNeeds is what capture, the backfill and reconcile need on the source.
func sourceNeeds(f mysqlx.Flavor, dbs []string) []need {
	monitor := need{priv: f.BinlogMonitorPrivilege(), also: f.BinlogMonitorGrants(), db: "*",
		why: "capture reads the binlog coordinates to start and to resume, and reconcile the source position it waits for before a re-check"}
	if !f.SnapshotPositionStatus() {
		monitor.why += ", and the backfill each chunk's position"
	}
	needs := []need{
		{priv: "REPLICATION SLAVE", db: "*", why: "capture reads the binlog as a replica"},
		monitor,
	}
	for _, db := range dbs {
		needs = append(needs, need{priv: "SELECT", db: db, why: "backfill copies the rows and reconcile compares them"})
	}
	if !f.SnapshotPositionStatus() {
		for _, db := range dbs {
			needs = append(needs, need{priv: "LOCK TABLES", db: db,
				why: "the backfill starts each chunk's snapshot under a brief LOCK TABLES ... READ (" + f.Product() + " reports no binlog position of a snapshot)"})
		}
	}
	return needs
}

// shardNeeds is what prepare, the sink and a repair need on a shard, per database.
func shardNeeds(cfg *config.Config, dbs []string) map[string][]need {
	out := map[string][]need{}
	for _, db := range dbs {
		for _, p := range []string{"SELECT", "INSERT", "UPDATE", "DELETE"} {
			out[db] = append(out[db], need{priv: p, db: db, why: "the sink writes the rows, reconcile reads them and a repair fixes them"})
		}
		out[db] = append(out[db], need{priv: "CREATE", db: db, why: "prepare creates the database and its tables"})
		if cfg.DDL.Policy == config.DDLPropagate {
			for _, p := range []string{"ALTER", "DROP", "INDEX"} {
				out[db] = append(out[db], need{priv: p, db: db, why: "the sink applies the source's schema changes (ddl.policy: propagate)"})
			}
		}
	}
	for _, p := range []string{"SELECT", "INSERT", "UPDATE", "CREATE"} {
		out[shardmeta.Database] = append(out[shardmeta.Database], need{priv: p, db: shardmeta.Database,
			why: "the sink keeps its Kafka offsets and applied schema changes there, and prepare creates it"})
	}
	return out
}

// account is what check knows of the user it connects as.
type account struct {
	name   string // 'user'@'host', for GRANT statements
	lines  []string
	grants grants
	// inactiveRoles are roles granted to the account that are not active in its session
	// (no default role): their privileges do not count.
	inactiveRoles []string
}

// readAccount reads the current user's grants on srv.
func readAccount(ctx context.Context, srv *server) (*account, error) {
	var user string
	if err := srv.db.QueryRowContext(ctx, "SELECT CURRENT_USER()").Scan(&user); err != nil {
		return nil, fmt.Errorf("cannot read the current user: %w", err)
	}
	a := &account{name: quoteAccount(user)}
	lines, err := showGrants(ctx, srv)
	if err != nil {
		return nil, fmt.Errorf("cannot read the grants of %s: %w", a.name, err)
	}
	a.lines, a.grants = lines, grants(parseGrants(lines))
	if roles := roleGrants(lines); len(roles) > 0 {
		var cur sql.NullString
		if err := srv.db.QueryRowContext(ctx, "SELECT CURRENT_ROLE()").Scan(&cur); err == nil && (!cur.Valid || cur.String == "" || strings.EqualFold(cur.String, "NONE")) {
			a.inactiveRoles = roles
		}
	}
	return a, nil
}

// has reports whether the account holds n: on the database as a whole for a per-database
// need (db.*, or a pattern matching it, or globally).
func (a *account) has(n need) bool {
	privs := append([]string{n.priv}, n.also...)
	if n.db == "*" {
		return a.grants.global(privs...)
	}
	return a.grants.can(n.db, "*", privs...)
}

// fix is the statement that grants the missing privileges on db ("*": globally), and, when
// the account has roles that are not active, the statement that would make them active.
func (a *account) fix(f mysqlx.Flavor, privs []string, db string) string {
	on := "*.*"
	if db != "*" {
		on = mysqlx.QuoteIdent(db) + ".*"
	}
	s := "GRANT " + strings.Join(privs, ", ") + " ON " + on + " TO " + a.name
	if len(a.inactiveRoles) > 0 {
		s += fmt.Sprintf(" (or, if a role of %s holds it: %s; its roles %s are not active at login)",
			a.name, f.DefaultRoleStatement(a.inactiveRoles[0], a.name), strings.Join(a.inactiveRoles, ", "))
	}
	return s
}

// checkShardGrants checks, per database, the privileges prepare, the sink and a repair
// need on a shard. The databases need not exist yet (prepare creates them), so the grants
// are read, not tried.
func checkShardGrants(ctx context.Context, r *Report, cfg *config.Config, key, subject string, s *server) {
	a, err := readAccount(ctx, s)
	if err != nil {
		r.fail("shard.grants", subject, err.Error(), "check that the shard answers SHOW GRANTS")
		return
	}
	f := s.fl
	var dbs []string
	seen := map[string]bool{}
	for _, t := range cfg.Tables {
		if db := t.DB(); !seen[db] {
			seen[db] = true
			dbs = append(dbs, db)
		}
	}
	needs := shardNeeds(cfg, dbs)
	for _, db := range append(dbs, shardmeta.Database) {
		var missing, whys []string
		for _, n := range needs[db] {
			if !a.has(n) {
				missing = append(missing, n.priv)
				if !contains(whys, n.why) {
					whys = append(whys, n.why)
				}
			}
		}
		sub := fmt.Sprintf("%s grants on %s", subject, db)
		if len(missing) == 0 {
			r.ok("shard.grants", sub, "%s holds %s", a.name, privList(needs[db]))
			continue
		}
		r.fail("shard.grants", sub, fmt.Sprintf("%s lacks %s on %s: %s", a.name, strings.Join(missing, ", "), db, strings.Join(whys, "; ")),
			a.fix(f, missing, db))
	}
}

func privList(ns []need) string {
	var ps []string
	for _, n := range ns {
		ps = append(ps, n.priv)
	}
	return strings.Join(ps, ", ")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
