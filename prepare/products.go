package prepare

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/schema"
)

// Products are the source's and a shard's server products, which may differ: a MySQL
// monolith split onto MariaDB shards, or the other way round. The zero value is one
// product on both sides.
//
// A shard of another product holds a table faithfully only when every column compares and
// orders its values as the source's does: a collation decides which strings a unique key
// takes as equal (a shard would refuse rows the source holds, or hold rows the source
// refused) and the order of a string primary key, by which the checker pages the source
// and asks the shards for the same key range. So a collation crosses only when the shard's
// product vouches for an exact equal (mysqlx.Flavor.Collation); JSON crosses as the
// shard's product stores it (mysqlx.Flavor.NativeJSON). Everything else is refused by
// name, before anything is created.
type Products struct {
	Source, Shard mysqlx.Flavor
}

func (p Products) cross() bool {
	return p.Source != nil && p.Shard != nil && p.Source.Name() != p.Shard.Name()
}

// collation is the shard's collation for the source's coll.
func (p Products) collation(coll string) (string, bool) {
	if coll == "" || !p.cross() {
		return coll, true
	}
	return p.Shard.Collation(p.Source, coll)
}

// Refused is a source column a shard of another product cannot hold faithfully:
// "shop.users.name varchar(64) COLLATE utf8mb4_0900_ai_ci".
type Refused struct {
	Table, Column, Type, Collation string
}

func (r Refused) String() string {
	return fmt.Sprintf("%s.%s %s COLLATE %s", r.Table, r.Column, r.Type, r.Collation)
}

// UnfaithfulError reports the source columns that a shard of another product cannot hold
// faithfully, with what the operator can do about them.
type UnfaithfulError struct {
	Shard    string
	Products Products
	Columns  []Refused
}

func (e *UnfaithfulError) Error() string {
	var b strings.Builder
	src, dst := e.Products.Source, e.Products.Shard
	fmt.Fprintf(&b, "%s (%s) cannot hold these columns of the %s source faithfully:", e.Shard, dst.Product(), src.Product())
	for _, c := range e.Columns {
		b.WriteString("\n  " + c.String())
	}
	first := e.Columns[0]
	fmt.Fprintf(&b, "\n%s has no collation that compares, orders and pads strings exactly as these do: a shard's unique key "+
		"would take other strings as equal than the source's, and the checker, which pages by the source's key order, "+
		"would compare other rows. Change each column on the source to a collation both products share "+
		"(utf8mb4_bin, utf8mb4_general_ci, utf8mb4_unicode_ci, utf8mb4_unicode_520_ci; MySQL's utf8mb4_0900_bin is MariaDB's utf8mb4_nopad_bin), "+
		"e.g. ALTER TABLE %s MODIFY %s %s COLLATE utf8mb4_bin (restating its other attributes), or use %s shards",
		dst.Family(), quoteName(first.Table), mysqlx.QuoteIdent(first.Column), first.Type, src.Family())
	return b.String()
}

func quoteName(dbTable string) string {
	db, table, _ := strings.Cut(dbTable, ".")
	return mysqlx.QuoteTable(db, table)
}

// tableCollation is the COLLATE= table option; tableCharset is DEFAULT CHARSET=.
var (
	tableCollation = regexp.MustCompile(`(?i)\s+COLLATE\s*=\s*(\w+)`)
	tableCharset   = regexp.MustCompile(`(?i)\bDEFAULT CHARSET\s*=\s*(\w+)`)
	collateClause  = regexp.MustCompile(`(?i)\bCOLLATE(\s*=\s*|\s+)(\w+)`)
)

// forShard adapts the shard DDL of a source table (ShardDDL) to a shard of p.Shard's
// product:
//
//   - the table's default collation is always stated (COLLATE=…), since a server omits
//     it when it is its character set's default, and the shard's product or version may
//     default to another one (MySQL 8's utf8mb4 is utf8mb4_0900_ai_ci);
//   - across products, each collation is renamed to the shard's equal of it; a column
//     whose collation has none is refused (the error lists them all); a table default
//     that has none and that no column uses is left to the shard's default for the
//     character set, with a note;
//   - from MariaDB to MySQL, expression defaults (DEFAULT uuid()) and the defaults of
//     TEXT and BLOB columns are put in parentheses, the only form MySQL takes them in.
//
// Types need no rewriting: MySQL's JSON is accepted by MariaDB as its LONGTEXT JSON, and
// MariaDB's (a LONGTEXT with a json_valid CHECK) is a LONGTEXT with that CHECK on MySQL.
func forShard(t sourceTable, p Products) (string, []string, []Refused) {
	ddl, def, collation := t.ddl, t.def, t.collation
	var notes []string
	var refused []Refused
	renames := map[string]string{}
	if p.cross() && p.Shard.ParenthesizedDefaults() {
		ddl = parenthesizedDefaults(ddl, def, t.defaults)
	}
	for _, c := range def.Columns {
		if c.Collation == "" {
			continue
		}
		m, ok := p.collation(c.Collation)
		if !ok {
			refused = append(refused, Refused{Table: def.FullName(), Column: c.Name, Type: c.ColumnType, Collation: c.Collation})
			continue
		}
		if !strings.EqualFold(m, c.Collation) {
			renames[strings.ToLower(c.Collation)] = m
		}
	}
	if len(refused) > 0 {
		return "", nil, refused
	}
	head, tail, ok := splitOptions(ddl)
	if !ok || collation == "" {
		return rename(ddl, renames), nil, nil
	}
	m, mapped := p.collation(collation)
	switch {
	case mapped && !strings.EqualFold(m, collation):
		renames[strings.ToLower(collation)] = m
		tail = statedCollation(tail, m)
	case mapped:
		tail = statedCollation(tail, collation)
	default:
		// No column inherits it (they would be refused above): only a column added later
		// by a schema change would, and it gets the shard's default instead.
		tail = tableCollation.ReplaceAllString(tail, "")
		notes = append(notes, fmt.Sprintf("its default collation %s has no equal on %s: the shard table keeps the shard's default for its character set, which a string column added later without a collation would get", collation, p.Shard.Product()))
	}
	return rename(head, renames) + rename(tail, renames), notes, nil
}

var (
	literalDefault = regexp.MustCompile(`^(?:'|[bBxX]'|NULL$|[-+]?[0-9.]+(?:[eE][-+]?[0-9]+)?$)`)
	nowDefault     = regexp.MustCompile(`(?i)^(?:current_timestamp|now|localtime|localtimestamp)(?:\(\d*\))?$`)
)

// parenthesizedDefaults writes the defaults MySQL only takes in parentheses so: MariaDB
// prints an expression default bare (DEFAULT uuid(), as information_schema's
// COLUMN_DEFAULT in defaults holds it), and allows a literal default on a TEXT or BLOB
// column, which MySQL takes only as an expression (8.0.13).
func parenthesizedDefaults(ddl string, def *schema.Table, defaults map[string]string) string {
	lines := strings.Split(ddl, "\n")
	for _, c := range def.Columns {
		d, ok := defaults[c.Name]
		if !ok || d == "" || d == "NULL" || strings.HasPrefix(d, "(") || nowDefault.MatchString(d) {
			continue
		}
		blob := strings.HasSuffix(c.DataType, "text") || strings.HasSuffix(c.DataType, "blob") || c.DataType == "json"
		if literalDefault.MatchString(d) && !blob {
			continue
		}
		prefix := "  " + mysqlx.QuoteIdent(c.Name) + " "
		for i, l := range lines {
			if strings.HasPrefix(l, prefix) {
				lines[i] = strings.Replace(l, " DEFAULT "+d, " DEFAULT ("+d+")", 1)
				break
			}
		}
	}
	return strings.Join(lines, "\n")
}

// splitOptions splits a CREATE TABLE statement before its table options (the line that
// closes the column list).
func splitOptions(ddl string) (head, tail string, ok bool) {
	i := strings.Index(ddl, "\n)")
	if i < 0 {
		return ddl, "", false
	}
	return ddl[:i+1], ddl[i+1:], true
}

// statedCollation makes the table options state collation: replaced when they have one,
// added after DEFAULT CHARSET=… when not.
func statedCollation(options, collation string) string {
	line, rest, _ := strings.Cut(options, "\n")
	if rest != "" {
		rest = "\n" + rest
	}
	if tableCollation.MatchString(line) {
		return tableCollation.ReplaceAllString(line, " COLLATE="+collation) + rest
	}
	if loc := tableCharset.FindStringIndex(line); loc != nil {
		return line[:loc[1]] + " COLLATE=" + collation + line[loc[1]:] + rest
	}
	return line + rest
}

// rename replaces the collation names of renames in COLLATE clauses, outside string
// literals and quoted identifiers (a comment may mention a collation).
func rename(sql string, renames map[string]string) string {
	if len(renames) == 0 {
		return sql
	}
	var b strings.Builder
	start := 0
	flush := func(end int) {
		b.WriteString(collateClause.ReplaceAllStringFunc(sql[start:end], func(m string) string {
			sub := collateClause.FindStringSubmatch(m)
			if to, ok := renames[strings.ToLower(sub[2])]; ok {
				return "COLLATE" + sub[1] + to
			}
			return m
		}))
	}
	for i := 0; i < len(sql); i++ {
		q := sql[i]
		if q != '\'' && q != '"' && q != '`' {
			continue
		}
		flush(i)
		j := i + 1
		for ; j < len(sql); j++ {
			if sql[j] == '\\' && q != '`' {
				j++
				continue
			}
			if sql[j] == q {
				if j+1 < len(sql) && sql[j+1] == q {
					j++
					continue
				}
				break
			}
		}
		if j >= len(sql) {
			j = len(sql) - 1
		}
		b.WriteString(sql[i : j+1])
		i = j
		start = j + 1
	}
	flush(len(sql))
	return b.String()
}
