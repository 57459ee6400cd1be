package sink

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"github.com/cleave-dev/cleave/event"
	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/schema"
)

// Design note: writing JSON to a MySQL shard.
//
// A JSON value arrives as text (event/json.go). A MariaDB shard's JSON column is text
// (LONGTEXT), and so is any shard column that is not MySQL's native JSON: the text is
// written as it is, byte for byte. A MySQL JSON column parses the text, and its parser
// types every scalar by what its text suggests: an integer as INTEGER (UNSIGNED INTEGER
// from 2^32 up), any other number as a DOUBLE, a string as a STRING. Where the source's
// scalar had another type, or where a double cannot hold the number's digits, the sink
// rebuilds the document on the shard instead of writing the bare text:
//
//	JSON_SET(CAST(? AS JSON), ?, CAST(? AS DECIMAL(5,3)), ?, CAST(? AS DATE), ...)
//
// with the text, then each such scalar's path and value; JSON_SET replaces the parsed
// scalar with one of the right type. The type of each scalar is the event's json_types
// entry for its path if there is one, otherwise what its text suggests (event.NumberType:
// DECIMAL for a number with more digits than a double keeps, as text from a MariaDB source
// may hold). DECIMAL(p,s) takes p and s from the number's own digits, so 99.990 stays
// 99.990. DATETIME and TIMESTAMP are rebuilt as DATETIME(6): no SQL expression but a
// TIMESTAMP column has the TIMESTAMP type, and both render the same text.
//
// A value that needs nothing of the kind (most of them) is written as before, bare; one
// that does makes its row's statement differ (the upsert signature carries the
// expression), so rows are batched with the rows whose documents have the same shape of
// typed scalars.

// jsonWrite is how an upsert writes one JSON value: the SQL expression in place of the
// column's placeholder, and its arguments.
type jsonWrite struct {
	expr string
	args []any
}

// jsonParsedType is the type MySQL's JSON parser gives a scalar of JSON text.
func jsonParsedType(tok string) event.JSONType {
	switch c := tok[0]; {
	case c == '"':
		return event.JSONString
	case c == '-' || c >= '0' && c <= '9':
		if t := event.NumberType(tok); t != event.JSONDecimal {
			return t
		}
		return event.JSONDouble
	}
	return "" // true, false, null: nothing a type could change
}

// jsonValueWrite decides how value v of the MySQL JSON column c is written: nil when its
// text alone gives every scalar its type. types is the event's json_types entry of c.
func jsonValueWrite(c *schema.Column, v any, types event.JSONTypes) (*jsonWrite, error) {
	text, ok := v.(string)
	if !ok {
		return nil, nil // not text: SQLArg reports it
	}
	if len(types) == 0 && !mayHoldLongNumber(text) {
		return nil, nil
	}
	var w *jsonWrite
	found := 0
	err := event.ScanJSON(text, func(s *event.JSONScalar) error {
		target, explicit := types[string(s.Path)]
		if explicit {
			found++
		} else {
			switch c := s.Token[0]; {
			case c == '-' || c >= '0' && c <= '9':
				target = event.NumberType(s.Token)
			default:
				return nil
			}
		}
		if target == jsonParsedType(s.Token) {
			return nil
		}
		cast, arg, err := jsonScalarArg(target, s.Token)
		if err != nil {
			return fmt.Errorf("json_types says %s is %s: %w", s.Path, target, err)
		}
		if cast == "" {
			return nil // a type this sink does not know: the text stands
		}
		if w == nil {
			w = &jsonWrite{expr: "JSON_SET(CAST(? AS JSON)", args: []any{text}}
		}
		w.expr += ",?," + cast
		w.args = append(w.args, string(s.Path), arg)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("column %s (json): %w", c.Name, err)
	}
	if found != len(types) {
		var missing []string
		seen := map[string]bool{}
		_ = event.ScanJSON(text, func(s *event.JSONScalar) error { seen[string(s.Path)] = true; return nil })
		for p := range types {
			if !seen[p] {
				missing = append(missing, p)
			}
		}
		return nil, fmt.Errorf("column %s (json): json_types names %s, which the document lacks", c.Name, strings.Join(missing, ", "))
	}
	if w != nil {
		w.expr += ")"
	}
	return w, nil
}

// mayHoldLongNumber reports whether a JSON text may hold a number that a double does not
// keep exactly, the only kind whose text suggests DECIMAL: one with more than 15
// significant digits (a double keeps any 15, DBL_DIG), or with an exponent, which may take
// it past a double's range. A cheap byte scan, so that the common document is written bare
// without being parsed.
func mayHoldLongNumber(text string) bool {
	for i := 0; i < len(text); i++ {
		switch c := text[i]; {
		case c == '"':
			for i++; i < len(text) && text[i] != '"'; i++ {
				if text[i] == '\\' {
					i++
				}
			}
		case c == '-' || c >= '0' && c <= '9':
			significant, leading := 0, true
			for ; i < len(text); i++ {
				c := text[i]
				if c == 'e' || c == 'E' {
					return true
				}
				if c < '0' || c > '9' {
					if c != '.' && c != '-' {
						break
					}
					continue
				}
				if c != '0' || !leading {
					leading = false
					significant++
				}
			}
			if significant > 15 {
				return true
			}
		}
	}
	return false
}

// jsonScalarArg returns the SQL expression (one placeholder) that makes a JSON scalar of
// type t from its text tok, and the placeholder's argument. An empty cast means the sink
// cannot build t: the scalar is left as the text makes it.
func jsonScalarArg(t event.JSONType, tok string) (cast string, arg any, err error) {
	switch t {
	case event.JSONDecimal:
		if tok[0] == '"' {
			return "", nil, fmt.Errorf("its text %.40s is no number", tok)
		}
		plain, p, s, ok := event.PlainDecimal(tok)
		if !ok {
			return "", nil, fmt.Errorf("%.40s does not fit a DECIMAL", tok)
		}
		return "CAST(? AS DECIMAL(" + strconv.Itoa(p) + "," + strconv.Itoa(s) + "))", plain, nil
	case event.JSONUnsigned:
		u, perr := strconv.ParseUint(tok, 10, 64)
		if perr != nil {
			return "", nil, fmt.Errorf("its text %.40s is no unsigned 64-bit integer", tok)
		}
		return "CAST(? AS UNSIGNED)", strconv.FormatUint(u, 10), nil
	case event.JSONInteger:
		i, perr := strconv.ParseInt(tok, 10, 64)
		if perr != nil {
			return "", nil, fmt.Errorf("its text %.40s is no signed 64-bit integer", tok)
		}
		return "CAST(? AS SIGNED)", strconv.FormatInt(i, 10), nil
	case event.JSONDate, event.JSONTime, event.JSONDateTime, event.JSONTimestamp:
		s, ok := event.UnquoteJSON(tok)
		if !ok || s == "" || strings.Trim(s, "0123456789-:. ") != "" {
			return "", nil, fmt.Errorf("its text %.40s is no date or time", tok)
		}
		// The parameter is converted to a string first, as mysqlx.TimeParam explains.
		switch t {
		case event.JSONDate:
			return "CAST(CONVERT(? USING utf8mb4) AS DATE)", s, nil
		case event.JSONTime:
			return mysqlx.TimeParam(6), s, nil
		}
		return "CAST(CONVERT(? USING utf8mb4) AS DATETIME(6))", s, nil
	case event.JSONBlob:
		s, ok := event.UnquoteJSON(tok)
		data, found := strings.CutPrefix(s, "base64:type15:")
		data = strings.ReplaceAll(data, "\n", "")
		if _, derr := base64.StdEncoding.DecodeString(data); !ok || !found || derr != nil {
			return "", nil, fmt.Errorf("its text %.40s is no base64:type15: value", tok)
		}
		return "CAST(FROM_BASE64(?) AS BINARY)", data, nil
	case event.JSONDouble, event.JSONString:
		return "", nil, nil // the parser's own types: nothing to rebuild
	}
	return "", nil, nil
}

// jsonSig appends, to an upsert signature whose columns are marked, the expression of
// each column written through a jsonWrite ('j' in the column's byte), in column order.
func jsonSig(sig []byte, writes []*jsonWrite) []byte {
	for _, w := range writes {
		sig = append(sig, 0)
		sig = append(sig, w.expr...)
	}
	return sig
}

// valuesRow is the VALUES tuple of one row of signature sig writing n columns (the
// version column last): a placeholder per column, or the column's JSON expression.
func valuesRow(sig string, n int) string {
	cols, exprs, typed := strings.Cut(sig, "\x00")
	if !typed {
		return "(" + strings.Repeat("?,", n-1) + "?)"
	}
	parts := strings.Split(exprs, "\x00")
	var b strings.Builder
	b.WriteByte('(')
	k := 0
	for i := 0; i < len(cols); i++ {
		switch cols[i] {
		case '1':
			b.WriteString("?,")
		case 'j':
			b.WriteString(parts[k])
			b.WriteByte(',')
			k++
		}
	}
	b.WriteString("?)")
	return b.String()
}
