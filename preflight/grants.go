package preflight

import (
	"strings"
)

// grant is one line of SHOW GRANTS that gives (or, with MySQL's partial revokes, takes
// away) privileges on tables: GRANT <privileges> ON <db>.<table> TO <account>.
type grant struct {
	// revoke marks a REVOKE line (MySQL 8 with partial_revokes=ON).
	revoke bool
	// privs are the table-wide privileges, upper case with single spaces: "SELECT",
	// "REPLICATION SLAVE", "ALL PRIVILEGES". Column-level privileges (SELECT (`a`)) are
	// left out: they do not let cleave read whole rows.
	privs []string
	// db is "*" for *.*, else the database name or, on a database-level grant, a LIKE
	// pattern (`shop\_%`.*).
	db string
	// table is "*" for a global or database-level grant.
	table string
}

// parseGrants parses the lines of SHOW GRANTS, keeping those that grant privileges on
// databases and tables. Lines that grant roles, PROXY, or privileges on routines are left
// out: none of them gives what cleave needs. So are lines it cannot read: a privilege it
// cannot see is reported missing, with a fix, rather than assumed.
func parseGrants(lines []string) []grant {
	var out []grant
	for _, l := range lines {
		if g, ok := parseGrant(l); ok {
			out = append(out, g)
		}
	}
	return out
}

// parseGrant parses one SHOW GRANTS line of MariaDB (10.x, 11.x) or MySQL (5.7, 8.x):
//
//	GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO `cleave`@`%` IDENTIFIED BY PASSWORD '*…'
//	GRANT SELECT ON `shop`.* TO 'cleave'@'%'
//	GRANT SELECT (`a`, `b`), INSERT ON `x`.`y` TO `u`@`%`
//	GRANT BACKUP_ADMIN,BINLOG_ADMIN ON *.* TO `u`@`%`
//	REVOKE SELECT ON `mysql`.* FROM `u`@`%`
func parseGrant(line string) (grant, bool) {
	s := strings.TrimSpace(line)
	var g grant
	switch {
	case hasPrefixFold(s, "GRANT "):
		s = s[len("GRANT "):]
	case hasPrefixFold(s, "REVOKE "):
		s = s[len("REVOKE "):]
		g.revoke = true
	default:
		return grant{}, false // SET DEFAULT ROLE …
	}

	// The privilege list ends at the first " ON " outside parentheses (column lists) and
	// quotes (column names).
	depth, start, rest := 0, 0, -1
	var quote byte
	addPriv := func(p string) {
		p = strings.Join(strings.Fields(p), " ")
		if p == "" || strings.Contains(p, "(") {
			return
		}
		g.privs = append(g.privs, strings.ToUpper(p))
	}
scan:
	for i := 0; i < len(s); i++ {
		c := s[i]
		if quote != 0 {
			if c == quote {
				quote = 0
			}
			continue
		}
		switch c {
		case '`', '\'', '"':
			quote = c
		case '(':
			depth++
		case ')':
			depth--
		case ',':
			if depth == 0 {
				addPriv(s[start:i])
				start = i + 1
			}
		case ' ':
			if depth == 0 && hasPrefixFold(s[i:], " ON ") {
				addPriv(s[start:i])
				rest = i + len(" ON ")
				break scan
			}
		}
	}
	if rest < 0 {
		return grant{}, false // a role grant: GRANT `r1` TO `u`@`%`
	}

	obj := strings.TrimLeft(s[rest:], " ")
	// An object type may precede the object; only tables matter.
	switch {
	case hasPrefixFold(obj, "TABLE "):
		obj = strings.TrimLeft(obj[len("TABLE "):], " ")
	case hasPrefixFold(obj, "PROCEDURE "), hasPrefixFold(obj, "FUNCTION "), hasPrefixFold(obj, "PACKAGE "):
		return grant{}, false
	}
	db, obj, ok := parseGrantIdent(obj)
	if !ok || !strings.HasPrefix(obj, ".") {
		return grant{}, false // PROXY ON `u`@`%`
	}
	table, obj, ok := parseGrantIdent(obj[1:])
	if !ok {
		return grant{}, false
	}
	obj = strings.TrimLeft(obj, " ")
	if !hasPrefixFold(obj, "TO ") && !hasPrefixFold(obj, "FROM ") {
		return grant{}, false
	}
	g.db, g.table = db, table
	return g, true
}

// parseGrantIdent reads `*`, a `quoted` (backticks doubled inside), 'quoted' or bare
// identifier at the start of s and returns it unquoted with the rest of s. Backslashes are
// kept: in a database-level grant they escape LIKE wildcards.
func parseGrantIdent(s string) (ident, rest string, ok bool) {
	if s == "" {
		return "", "", false
	}
	switch q := s[0]; q {
	case '*':
		return "*", s[1:], true
	case '`', '\'', '"':
		var b strings.Builder
		for i := 1; i < len(s); i++ {
			if s[i] == q {
				if i+1 < len(s) && s[i+1] == q {
					b.WriteByte(q)
					i++
					continue
				}
				return b.String(), s[i+1:], true
			}
			b.WriteByte(s[i])
		}
		return "", "", false
	}
	end := strings.IndexAny(s, ". @")
	if end < 0 {
		end = len(s)
	}
	if end == 0 {
		return "", "", false
	}
	return s[:end], s[end:], true
}

// grants are the privileges of one account, as SHOW GRANTS lists them.
type grants []grant

func hasPriv(privs []string, want ...string) bool {
	for _, p := range privs {
		if p == "ALL PRIVILEGES" || p == "ALL" {
			return true
		}
		for _, w := range want {
			if p == w {
				return true
			}
		}
	}
	return false
}

// global reports whether one of the privileges is granted on *.*. Replication privileges
// exist only there.
func (gs grants) global(want ...string) bool {
	for _, g := range gs {
		if !g.revoke && g.db == "*" && hasPriv(g.privs, want...) {
			return true
		}
	}
	return false
}

// canSelect reports whether SELECT on db.table is granted globally, on the database (by
// name or LIKE pattern), or on the table, and not taken away by a partial revoke.
func (gs grants) canSelect(db, table string) bool { return gs.can(db, table, "SELECT") }

// can reports whether one of privs is granted on db.table: globally, on the database (by
// name or LIKE pattern), or on the table (table "*": on the database as a whole, which a
// table grant does not give), and not taken away by a partial revoke (MySQL's
// partial_revokes: REVOKE SELECT ON db.* from a global SELECT).
func (gs grants) can(db, table string, privs ...string) bool {
	for _, g := range gs {
		if g.revoke && (g.db == db || g.db == "*") && (g.table == "*" || g.table == table) && hasPriv(g.privs, privs...) {
			return false
		}
	}
	for _, g := range gs {
		if g.revoke || !hasPriv(g.privs, privs...) {
			continue
		}
		switch {
		case g.db == "*":
			return true
		case g.table == "*" && likeMatch(g.db, db):
			return true
		case table != "*" && g.db == db && g.table == table:
			return true
		}
	}
	return false
}

// roleGrants returns the roles that lines of SHOW GRANTS grant to the account: "GRANT
// `r1` TO `u`@`%`" (MariaDB) or "GRANT `r1`@`%`,`r2`@`%` TO `u`@`%`" (MySQL).
func roleGrants(lines []string) []string {
	var roles []string
	for _, l := range lines {
		s := strings.TrimSpace(l)
		if !hasPrefixFold(s, "GRANT ") {
			continue
		}
		if _, ok := parseGrant(s); ok {
			continue // a privilege grant
		}
		body := s[len("GRANT "):]
		to := strings.LastIndex(strings.ToUpper(body), " TO ")
		if to < 0 || strings.Contains(strings.ToUpper(body[:to]), " ON ") {
			continue // PROXY ... ON ..., or what cannot be read
		}
		for _, r := range strings.Split(body[:to], ",") {
			if r = strings.TrimSpace(r); r != "" {
				roles = append(roles, r)
			}
		}
	}
	return roles
}

// likeMatch matches name against a database-level grant pattern: % is any run of
// characters, _ any one character, and a backslash makes the next character literal.
func likeMatch(pattern, name string) bool {
	if pattern == "" {
		return name == ""
	}
	switch pattern[0] {
	case '%':
		for i := 0; i <= len(name); i++ {
			if likeMatch(pattern[1:], name[i:]) {
				return true
			}
		}
		return false
	case '_':
		return name != "" && likeMatch(pattern[1:], name[1:])
	case '\\':
		if len(pattern) > 1 {
			return name != "" && name[0] == pattern[1] && likeMatch(pattern[2:], name[1:])
		}
	}
	return name != "" && name[0] == pattern[0] && likeMatch(pattern[1:], name[1:])
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}
