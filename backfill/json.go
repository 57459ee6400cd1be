package backfill

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/cleave-dev/cleave/capture"
	"github.com/cleave-dev/cleave/event"
	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/schema"
)

// Design note: the types of the JSON scalars the backfill copies.
//
// The backfill reads a MySQL JSON column as text, MySQL's rendering of it: exactly the text
// capture's own JSON decoder writes for the same value. What the text does not tell is the
// type of some scalars (event/json.go): 99.990 may be a DECIMAL or (text aside) a DOUBLE, 5
// an INTEGER, an UNSIGNED INTEGER or a DECIMAL, "2024-02-29" a STRING or a DATE. No SQL
// function returns a document with its types, so the copier asks the source for the type
// of each scalar whose text leaves it open, inside the snapshot the chunk was read in, in
// one query per chunk:
//
//	SELECT g, k, JSON_TYPE(JSON_EXTRACT(r.j, path)) FROM
//	  (SELECT ROW_NUMBER() OVER (ORDER BY pk) AS rn, j FROM
//	     (SELECT pk, j FROM t WHERE pk > ? ORDER BY pk LIMIT ?) AS x) AS r
//	  JOIN JSON_TABLE(?, '$[*]' COLUMNS (g FOR ORDINALITY, rn INT PATH '$[0]', ...
//	       NESTED PATH '$[2][*]' COLUMNS (k FOR ORDINALITY, c TEXT PATH '$'))) AS c ON c.rn = r.rn
//	WHERE the type differs from what the text suggests
//
// The chunk's rows are read again by the chunk's own key range and numbered in key order
// (the snapshot is the same, so the numbers are the chunk's row numbers), and the
// candidates come in one JSON parameter, per document its row number, its column and its
// candidates' paths each behind a letter for the type its text suggests: one statement
// text per table, one round trip per chunk, the rows found by the primary key index as
// the chunk was.
//
// What it costs (MySQL 9.7 on this 2-core machine, 1000-row chunks of 20,000 rows):
// documents of ten numbers each cost 0.7-1.8 s of type queries in all (some 4-5 µs per
// candidate on the server, much of it parsing the parameter, which the flat form of one
// array per candidate made twice as long; the Go scan under 1 µs), against 0.1-0.3 s to
// read the rows: a backfill of such a table takes several times as long. Documents without numbers or date-like strings cost nothing (0.03 s of
// scanning). Cheaper was looked for and not found: no SQL function renders a document
// with its types or hashes its binary form; JSON_STORAGE_SIZE and JSON equality do not
// tell an UNSIGNED INTEGER from an INTEGER (nor equality a DECIMAL from a DOUBLE);
// letting the server list every typed scalar itself (JSON_TABLE over
// JSON_EXTRACT(j, '$', '$**.*', '$**[*]'), as a subquery of the chunk read or a query of
// its own) measured no faster (1.0-1.7 s), since it visits every scalar of every row. Only rows with candidates cost anything more:
// the scalars whose text can stand for another type are numbers (but those only a DECIMAL
// holds) and strings shaped like MySQL's dates and times or base64:type15: values. A chunk
// whose documents hold none is not queried. Rows found to hold typed scalars are encoded
// again with json_types.

// jsonTyper finds the types of one table's JSON scalars, chunk by chunk; nil for a table
// without MySQL JSON columns.
type jsonTyper struct {
	cols []int // indexes of the JSON columns
	// first and next are the queries of the first chunk and of the chunks after a key (see
	// the design note); placeholders: the chunk query's key arguments, LIMIT, candidates.
	first, next string
	// per chunk: the documents that have candidates, and the values of their rows
	docs []jsonDoc
	vals map[int][]any
}

// jsonDoc is one document of a chunk with the scalars whose type its text leaves open.
type jsonDoc struct {
	row, col int // row number in the chunk (from 0), index into jsonTyper.cols
	cands    []jsonCandidate
}

// jsonCandidate is a scalar whose type its text leaves open.
type jsonCandidate struct {
	path    string
	natural event.JSONType
	token   string
}

// naturalCode is how a candidate's natural type travels in the query's parameter: one
// letter before its path, which keeps the parameter (which the server parses) short.
var naturalCode = map[event.JSONType]string{event.JSONInteger: "I", event.JSONUnsigned: "U", event.JSONDouble: "D", event.JSONString: "S"}

// maxCandidatesPerQuery bounds the JSON parameter (tens of bytes a candidate) well below
// max_allowed_packet; a chunk with more is typed in several queries.
const maxCandidatesPerQuery = 20000

func newJSONTyper(tr *tableReader) *jsonTyper {
	jt := &jsonTyper{}
	var sel []string
	for i := range tr.def.Columns {
		if tr.def.Columns[i].Kind == schema.KindJSON {
			jt.cols = append(jt.cols, i)
			sel = append(sel, mysqlx.QuoteIdent(tr.def.Columns[i].Name))
		}
	}
	if len(jt.cols) == 0 {
		return nil
	}
	var pk []string
	for _, k := range tr.keys {
		pk = append(pk, k.quote)
	}
	doc := "r.c0"
	if len(sel) > 1 {
		doc = "CASE c.col"
		for i := range sel {
			doc += " WHEN " + strconv.Itoa(i) + " THEN r.c" + strconv.Itoa(i)
		}
		doc += " END"
	}
	var aliased []string
	for i, s := range sel {
		aliased = append(aliased, s+" AS c"+strconv.Itoa(i))
	}
	query := func(where string) string {
		inner := "SELECT " + strings.Join(pk, ", ") + ", " + strings.Join(sel, ", ") + " FROM " + mysqlx.QuoteTable(tr.db, tr.tbl) +
			where + " ORDER BY " + strings.Join(pk, ", ") + " LIMIT ?"
		return "SELECT g, k, t FROM (SELECT c.g, c.k, LEFT(c.c, 1) AS nat, JSON_TYPE(JSON_EXTRACT(" + doc + ", SUBSTRING(c.c, 2))) AS t FROM " +
			"(SELECT ROW_NUMBER() OVER (ORDER BY " + strings.Join(pk, ", ") + ") AS rn, " + strings.Join(aliased, ", ") + " FROM (" + inner + ") AS x) AS r " +
			"JOIN JSON_TABLE(?, '$[*]' COLUMNS (g FOR ORDINALITY, rn INT PATH '$[0]', col INT PATH '$[1]', NESTED PATH '$[2][*]' COLUMNS (k FOR ORDINALITY, c TEXT PATH '$'))) AS c ON c.rn = r.rn) AS typed " +
			"WHERE t <> CASE nat WHEN 'I' THEN 'INTEGER' WHEN 'U' THEN 'UNSIGNED INTEGER' WHEN 'D' THEN 'DOUBLE' ELSE 'STRING' END"
	}
	jt.first, jt.next = query(""), query(" WHERE "+tr.after())
	return jt
}

// start forgets the previous chunk.
func (jt *jsonTyper) start() {
	if jt != nil {
		jt.docs = jt.docs[:0]
		clear(jt.vals)
	}
}

// scan notes the candidates of row (its number in the chunk) whose encoded values are vals.
func (jt *jsonTyper) scan(def *schema.Table, row int, vals []any) error {
	if jt == nil {
		return nil
	}
	found := false
	for ci, c := range jt.cols {
		text, ok := vals[c].(string)
		if !ok {
			continue
		}
		doc := jsonDoc{row: row, col: ci}
		err := event.ScanJSON(text, func(s *event.JSONScalar) error {
			var natural event.JSONType
			switch c := s.Token[0]; {
			case c == '"':
				if !openString(s.Token) {
					return nil
				}
				natural = event.JSONString
			case c == '-' || c >= '0' && c <= '9':
				if natural = event.NumberType(s.Token); natural == event.JSONDecimal {
					return nil // only a DECIMAL holds it, and that is what its text says
				}
			default:
				return nil
			}
			doc.cands = append(doc.cands, jsonCandidate{path: string(s.Path), natural: natural, token: s.Token})
			return nil
		})
		if err != nil {
			return fmt.Errorf("column %s: the source's JSON text does not parse: %w", def.Columns[c].Name, err)
		}
		if len(doc.cands) > 0 {
			jt.docs = append(jt.docs, doc)
			found = true
		}
	}
	if found {
		if jt.vals == nil {
			jt.vals = map[int][]any{}
		}
		jt.vals[row] = append([]any(nil), vals...)
	}
	return nil
}

// openString reports whether a JSON string token may be the text of a scalar of another
// type: MySQL's rendering of a DATE (2024-02-29), a TIME ([-]hh:mm:ss.ffffff, hours up to
// 838), a DATETIME or TIMESTAMP (2024-02-29 23:59:59.ffffff), or of a binary string
// (base64:type15:...).
func openString(tok string) bool {
	s := tok[1 : len(tok)-1]
	if strings.HasPrefix(s, "base64:type15:") {
		return true
	}
	shape := func(s, pattern string) bool {
		if len(s) != len(pattern) {
			return false
		}
		for i := 0; i < len(s); i++ {
			if pattern[i] == 'd' {
				if s[i] < '0' || s[i] > '9' {
					return false
				}
			} else if s[i] != pattern[i] {
				return false
			}
		}
		return true
	}
	return shape(s, "dddd-dd-dd") || shape(s, "dddd-dd-dd dd:dd:dd.dddddd") ||
		shape(strings.TrimPrefix(s, "-"), "dd:dd:dd.dddddd") || shape(strings.TrimPrefix(s, "-"), "ddd:dd:dd.dddddd")
}

// resolve asks the source, inside the chunk's snapshot, for the types of the chunk's
// candidates, and returns the json_types of each row that has some. args are the chunk
// query's arguments, rows how many rows it read.
func (jt *jsonTyper) resolve(ctx context.Context, sc *snapshotConn, tr *tableReader, args []any, rows int) (map[int]map[string]event.JSONTypes, error) {
	if jt == nil || len(jt.docs) == 0 {
		return nil, nil
	}
	q := jt.next
	if args == nil {
		q = jt.first
	}
	st, err := sc.stmt(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("prepare the JSON type query of %s: %w", tr.name, err)
	}
	var out map[int]map[string]event.JSONTypes
	for from := 0; from < len(jt.docs); {
		// A batch of whole documents, at most maxCandidatesPerQuery candidates (or one
		// document, however many it has).
		to, n := from, 0
		for to < len(jt.docs) && (to == from || n+len(jt.docs[to].cands) <= maxCandidatesPerQuery) {
			n += len(jt.docs[to].cands)
			to++
		}
		batch := jt.docs[from:to]
		from = to
		list := make([][3]any, len(batch))
		for i, d := range batch {
			paths := make([]string, len(d.cands))
			for k, c := range d.cands {
				paths[k] = naturalCode[c.natural] + c.path
			}
			list[i] = [3]any{d.row + 1, d.col, paths}
		}
		param, err := json.Marshal(list)
		if err != nil {
			return nil, err
		}
		qargs := append(append(append([]any(nil), args...), rows), string(param))
		rs, err := st.QueryContext(ctx, qargs...)
		if err != nil {
			return nil, fmt.Errorf("read the JSON types of a chunk of %s: %w", tr.name, err)
		}
		for rs.Next() {
			var g, k int
			var typ string
			if err := rs.Scan(&g, &k, &typ); err != nil {
				rs.Close()
				return nil, fmt.Errorf("read the JSON types of a chunk of %s: %w", tr.name, err)
			}
			if g < 1 || g > len(batch) || k < 1 || k > len(batch[g-1].cands) {
				continue
			}
			d := batch[g-1]
			c := d.cands[k-1]
			t := event.JSONType(typ)
			switch t {
			case event.JSONDecimal, event.JSONUnsigned, event.JSONInteger, event.JSONDouble,
				event.JSONDate, event.JSONTime, event.JSONDateTime, event.JSONTimestamp:
			case event.JSONBlob:
				// Only a binary string (field type 15) can be made again from its text.
				if !strings.HasPrefix(c.token, `"base64:type15:`) {
					continue
				}
			default:
				continue // BIT, OPAQUE...: the text stands, as capture leaves it
			}
			if out == nil {
				out = map[int]map[string]event.JSONTypes{}
			}
			row := out[d.row]
			if row == nil {
				row = map[string]event.JSONTypes{}
				out[d.row] = row
			}
			name := tr.def.Columns[jt.cols[d.col]].Name
			if row[name] == nil {
				row[name] = event.JSONTypes{}
			}
			row[name][c.path] = t
		}
		err = rs.Err()
		rs.Close()
		if err != nil {
			return nil, fmt.Errorf("read the JSON types of a chunk of %s: %w", tr.name, err)
		}
	}
	return out, nil
}

// retype encodes again, with their json_types, the events of the chunk's rows that have
// typed scalars (typed, from resolve).
func (jt *jsonTyper) retype(ch *capture.Chunk, enc *encoder, typed map[int]map[string]event.JSONTypes, tsMs int64, v event.Version) {
	for row, types := range typed {
		enc.load(jt.vals[row])
		val := enc.appendEvent(nil, tsMs, v, types)
		ch.Bytes += int64(len(val) - len(ch.Values[row]))
		ch.Values[row] = val
	}
}
