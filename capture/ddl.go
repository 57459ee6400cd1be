package capture

import (
	"sort"
	"strings"
)

// Design note: recognising schema changes.
//
// A schema change reaches the binlog as the text of the statement (a query event) with the
// session's default database beside it. Capture needs two things from that text: which
// tables the statement changes, and the statement rewritten so that it means the same
// without a default database (sinks apply it on every shard, where no USE was issued). A
// full SQL parser would reject much of MariaDB's and MySQL's DDL dialects; what capture
// needs is only the head of each statement, so ddl.go lexes the statement (comments,
// executable comments, quoted identifiers and strings) and reads the table names at the
// places MySQL's grammar puts them. The rewrite inserts the database before each
// unqualified name it found and leaves every other byte of the statement as it was.
//
// Recognised: ALTER [ONLINE|OFFLINE] [IGNORE] TABLE (and its RENAME TO), CREATE [OR
// REPLACE] TABLE (and LIKE), CREATE [UNIQUE|FULLTEXT|SPATIAL] INDEX … ON, DROP TABLE(S),
// DROP INDEX … ON, RENAME TABLE(S) a TO b, TRUNCATE [TABLE], DROP DATABASE|SCHEMA, and the
// REFERENCES of foreign keys. Temporary tables are not replicated as schema changes.

// tableRef is one table name found in a statement.
type tableRef struct {
	db, table string
	// qualified is false when the statement named the table without a database; at is
	// then the byte offset where the database must be inserted.
	qualified bool
	at        int
}

// ddlStatement is what a schema-change statement does.
type ddlStatement struct {
	// changed are the tables whose definition (or existence, or rows, for TRUNCATE) the
	// statement changes.
	changed []tableRef
	// refs are the other tables it names (foreign keys, LIKE), rewritten as well.
	refs []tableRef
	// dropDB is the database a DROP DATABASE removes, with every table in it.
	dropDB string
	// end, when above 0, is where the statement ends for the shards: MySQL logs a CREATE
	// TABLE ... SELECT (atomic since 8.0.21) as a CREATE TABLE ending in START
	// TRANSACTION, its rows following as row events; only a replica applier may run that
	// clause (any other session may then run nothing but its rows), so the shards get the
	// CREATE TABLE without it.
	end int
}

type tokKind int

const (
	tWord   tokKind = iota // a bare word: keyword or identifier
	tQuoted                // a `quoted` identifier
	tString                // a 'string' or "string"
	tPunct                 // any other single byte
)

type token struct {
	kind       tokKind
	text       string // the identifier (unquoted) or the punctuation byte
	start, end int
}

// lex splits a statement into tokens, dropping comments. The content of an executable
// comment (/*! … */, /*!50100 … */, /*M! … */) is code to MySQL and so to lex.
func lex(s string) []token {
	var toks []token
	execDepth := 0
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f':
			i++
		case c == '/' && i+1 < len(s) && s[i+1] == '*':
			j := i + 2
			if j < len(s) && (s[j] == '!' || (s[j] == 'M' && j+1 < len(s) && s[j+1] == '!')) {
				if s[j] == 'M' {
					j++
				}
				j++
				for j < len(s) && s[j] >= '0' && s[j] <= '9' {
					j++
				}
				execDepth++
				i = j
				continue
			}
			end := strings.Index(s[i+2:], "*/")
			if end < 0 {
				return toks
			}
			i += 2 + end + 2
		case c == '*' && execDepth > 0 && i+1 < len(s) && s[i+1] == '/':
			execDepth--
			i += 2
		case c == '#' || (c == '-' && i+2 < len(s) && s[i+1] == '-' && (s[i+2] == ' ' || s[i+2] == '\t' || s[i+2] == '\n')):
			end := strings.IndexByte(s[i:], '\n')
			if end < 0 {
				return toks
			}
			i += end + 1
		case c == '`':
			var b strings.Builder
			j := i + 1
			for j < len(s) {
				if s[j] == '`' {
					if j+1 < len(s) && s[j+1] == '`' {
						b.WriteByte('`')
						j += 2
						continue
					}
					break
				}
				b.WriteByte(s[j])
				j++
			}
			toks = append(toks, token{kind: tQuoted, text: b.String(), start: i, end: min(j+1, len(s))})
			i = j + 1
		case c == '\'' || c == '"':
			j := i + 1
			for j < len(s) {
				if s[j] == '\\' {
					j += 2
					continue
				}
				if s[j] == c {
					if j+1 < len(s) && s[j+1] == c {
						j += 2
						continue
					}
					break
				}
				j++
			}
			toks = append(toks, token{kind: tString, start: i, end: min(j+1, len(s))})
			i = j + 1
		case isWordByte(c):
			j := i
			for j < len(s) && isWordByte(s[j]) {
				j++
			}
			toks = append(toks, token{kind: tWord, text: s[i:j], start: i, end: j})
			i = j
		default:
			toks = append(toks, token{kind: tPunct, text: s[i : i+1], start: i, end: i + 1})
			i++
		}
	}
	return toks
}

func isWordByte(c byte) bool {
	return c == '_' || c == '$' || c >= 0x80 || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

// parser walks the tokens of one statement.
type parser struct {
	toks []token
	i    int
}

func (p *parser) kw(words ...string) bool {
	if p.i >= len(p.toks) || p.toks[p.i].kind != tWord {
		return false
	}
	for _, w := range words {
		if strings.EqualFold(p.toks[p.i].text, w) {
			return true
		}
	}
	return false
}

// accept consumes the keyword sequence if it is next.
func (p *parser) accept(words ...string) bool {
	for k, w := range words {
		j := p.i + k
		if j >= len(p.toks) || p.toks[j].kind != tWord || !strings.EqualFold(p.toks[j].text, w) {
			return false
		}
	}
	p.i += len(words)
	return true
}

func (p *parser) punct(c string) bool {
	return p.i < len(p.toks) && p.toks[p.i].kind == tPunct && p.toks[p.i].text == c
}

// name reads [db.]table.
func (p *parser) name() (tableRef, bool) {
	if p.i >= len(p.toks) || (p.toks[p.i].kind != tWord && p.toks[p.i].kind != tQuoted) {
		return tableRef{}, false
	}
	first := p.toks[p.i]
	p.i++
	if p.punct(".") && p.i+1 < len(p.toks) && (p.toks[p.i+1].kind == tWord || p.toks[p.i+1].kind == tQuoted) {
		second := p.toks[p.i+1]
		p.i += 2
		return tableRef{db: first.text, table: second.text, qualified: true}, true
	}
	return tableRef{table: first.text, at: first.start}, true
}

// scan visits the remaining tokens at parenthesis depth 0 (or any depth with all).
func (p *parser) rest(f func(p *parser)) {
	for p.i < len(p.toks) {
		before := p.i
		f(p)
		if p.i == before {
			p.i++
		}
	}
}

// parseDDL reports what statement stmt changes, or ok=false when it is not a schema change
// on tables.
func parseDDL(stmt string) (d ddlStatement, ok bool) {
	p := &parser{toks: lex(stmt)}
	refs := func(p *parser) {
		switch {
		case p.accept("REFERENCES"), p.accept("LIKE"):
			if r, ok := p.name(); ok {
				d.refs = append(d.refs, r)
			}
		}
	}
	switch {
	case p.accept("ALTER"):
		for p.accept("ONLINE") || p.accept("OFFLINE") || p.accept("IGNORE") {
		}
		if !p.accept("TABLE") {
			return d, false
		}
		p.accept("IF", "EXISTS")
		r, ok := p.name()
		if !ok {
			return d, false
		}
		d.changed = append(d.changed, r)
		p.rest(func(p *parser) {
			if p.accept("RENAME") {
				if p.kw("COLUMN", "INDEX", "KEY", "CONSTRAINT") {
					p.i++
					return
				}
				_ = p.accept("TO") || p.accept("AS")
				if r, ok := p.name(); ok {
					d.changed = append(d.changed, r)
				}
				return
			}
			refs(p)
		})
		return d, true
	case p.accept("CREATE"):
		p.accept("OR", "REPLACE")
		if p.kw("TEMPORARY") {
			return d, false
		}
		if p.accept("TABLE") {
			p.accept("IF", "NOT", "EXISTS")
			r, ok := p.name()
			if !ok {
				return d, false
			}
			d.changed = append(d.changed, r)
			p.rest(refs)
			if n := len(p.toks); n >= 2 && p.toks[n-2].kind == tWord && strings.EqualFold(p.toks[n-2].text, "START") &&
				p.toks[n-1].kind == tWord && strings.EqualFold(p.toks[n-1].text, "TRANSACTION") {
				d.end = p.toks[n-2].start
			}
			return d, true
		}
		for p.accept("UNIQUE") || p.accept("FULLTEXT") || p.accept("SPATIAL") || p.accept("ONLINE") || p.accept("OFFLINE") {
		}
		if !p.accept("INDEX") {
			return d, false
		}
		return d, p.indexTarget(&d)
	case p.accept("DROP"):
		if p.kw("TEMPORARY") {
			return d, false
		}
		switch {
		case p.accept("TABLE"), p.accept("TABLES"):
			p.accept("IF", "EXISTS")
			for {
				r, ok := p.name()
				if !ok {
					break
				}
				d.changed = append(d.changed, r)
				if !p.punct(",") {
					break
				}
				p.i++
			}
			return d, len(d.changed) > 0
		case p.accept("INDEX"):
			return d, p.indexTarget(&d)
		case p.accept("DATABASE"), p.accept("SCHEMA"):
			p.accept("IF", "EXISTS")
			r, ok := p.name()
			if !ok || r.qualified {
				return d, false
			}
			d.dropDB = r.table
			return d, true
		}
		return d, false
	case p.accept("RENAME"):
		if !p.accept("TABLE") && !p.accept("TABLES") {
			return d, false
		}
		for {
			from, ok := p.name()
			if !ok || !p.accept("TO") {
				break
			}
			to, ok := p.name()
			if !ok {
				break
			}
			d.changed = append(d.changed, from, to)
			if !p.punct(",") {
				break
			}
			p.i++
		}
		return d, len(d.changed) > 0
	case p.accept("TRUNCATE"):
		p.accept("TABLE")
		r, ok := p.name()
		if !ok {
			return d, false
		}
		d.changed = append(d.changed, r)
		return d, true
	}
	return d, false
}

// indexTarget reads "name [IF …] [USING …] ON table" after CREATE/DROP INDEX.
func (p *parser) indexTarget(d *ddlStatement) bool {
	for p.i < len(p.toks) {
		if p.accept("ON") {
			r, ok := p.name()
			if !ok {
				return false
			}
			d.changed = append(d.changed, r)
			return true
		}
		p.i++
	}
	return false
}

// resolve fills in the default database of unqualified names.
func (d *ddlStatement) resolve(defaultDB string) {
	for _, list := range [][]tableRef{d.changed, d.refs} {
		for i := range list {
			if !list[i].qualified {
				list[i].db = defaultDB
			}
		}
	}
}

// qualify returns stmt with defaultDB inserted before every unqualified table name of d,
// so that it means the same on a connection without a default database.
func qualify(stmt string, d ddlStatement, defaultDB string) string {
	if d.end > 0 {
		stmt = strings.TrimRight(stmt[:d.end], " \t\r\n")
	}
	var at []int
	for _, list := range [][]tableRef{d.changed, d.refs} {
		for _, r := range list {
			if !r.qualified {
				at = append(at, r.at)
			}
		}
	}
	if len(at) == 0 || defaultDB == "" {
		return stmt
	}
	prefix := "`" + strings.ReplaceAll(defaultDB, "`", "``") + "`."
	var b strings.Builder
	last := 0
	for _, a := range sortedUnique(at) {
		b.WriteString(stmt[last:a])
		b.WriteString(prefix)
		last = a
	}
	b.WriteString(stmt[last:])
	return b.String()
}

func sortedUnique(xs []int) []int {
	sort.Ints(xs)
	out := make([]int, 0, len(xs))
	for _, x := range xs {
		if len(out) == 0 || out[len(out)-1] != x {
			out = append(out, x)
		}
	}
	return out
}

// statementDML reports whether stmt is a row change written as a statement (a session with
// binlog_format STATEMENT or MIXED), and the words it contains, to match table names.
func statementDML(stmt string) (words map[string]bool, ok bool) {
	toks := lex(stmt)
	if len(toks) == 0 || toks[0].kind != tWord {
		return nil, false
	}
	switch strings.ToUpper(toks[0].text) {
	case "INSERT", "UPDATE", "DELETE", "REPLACE", "LOAD":
	default:
		return nil, false
	}
	words = map[string]bool{}
	for _, t := range toks {
		if t.kind == tWord || t.kind == tQuoted {
			words[strings.ToLower(t.text)] = true
		}
	}
	return words, true
}
