package backfill

import (
	"encoding/json"
	"sort"
	"strconv"
	"unicode/utf8"

	"github.com/cleave-dev/cleave/event"
	"github.com/cleave-dev/cleave/schema"
)

// encoder writes copied rows as the messages capture would write for them: the key is
// event.Key's JSON array of the primary key values, the value event.Marshal's encoding of
// an op "r" event. It builds the bytes directly (encoding/json of a map per row costs more
// than reading the row); encode_test.go checks, on random rows, that they equal what the
// event package writes, so the format keeps one definition.
type encoder struct {
	def *schema.Table
	// order lists the columns in the order encoding/json writes map keys; names are their
	// names as JSON strings.
	order []int
	names [][]byte
	// source is the encoded "source" object of every row of a chunk (they share it).
	source []byte
}

func newEncoder(def *schema.Table) *encoder {
	e := &encoder{def: def, order: make([]int, len(def.Columns)), names: make([][]byte, len(def.Columns))}
	for i := range def.Columns {
		e.order[i] = i
		e.names[i] = appendJSONString(nil, def.Columns[i].Name)
	}
	sort.SliceStable(e.order, func(a, b int) bool { return def.Columns[e.order[a]].Name < def.Columns[e.order[b]].Name })
	return e
}

// setSource sets the source object of the next rows.
func (e *encoder) setSource(s *event.Source) {
	e.source = appendSource(e.source[:0], s)
}

// appendKey appends the message key of a row whose encoded values are vals.
func (e *encoder) appendKey(dst []byte, vals []any) []byte {
	dst = append(dst, '[')
	for n, i := range e.def.PK {
		if n > 0 {
			dst = append(dst, ',')
		}
		dst = appendValue(dst, vals[i])
	}
	return append(dst, ']')
}

// appendEvent appends the message value of the copied row vals.
func (e *encoder) appendEvent(dst []byte, vals []any, tsMs int64, v event.Version) []byte {
	dst = append(dst, `{"before":null,"after":{`...)
	for n, i := range e.order {
		if n > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, e.names[i]...)
		dst = append(dst, ':')
		dst = appendValue(dst, vals[i])
	}
	dst = append(dst, `},"op":"r","ts_ms":`...)
	dst = strconv.AppendInt(dst, tsMs, 10)
	dst = append(dst, `,"source":`...)
	dst = append(dst, e.source...)
	dst = append(dst, `,"version":`...)
	dst = strconv.AppendUint(dst, uint64(v), 10)
	return append(dst, '}')
}

func appendSource(dst []byte, s *event.Source) []byte {
	dst = append(dst, `{"connector":`...)
	dst = appendJSONString(dst, s.Connector)
	dst = append(dst, `,"name":`...)
	dst = appendJSONString(dst, s.Name)
	dst = append(dst, `,"db":`...)
	dst = appendJSONString(dst, s.DB)
	dst = append(dst, `,"table":`...)
	dst = appendJSONString(dst, s.Table)
	dst = append(dst, `,"server_id":`...)
	dst = strconv.AppendUint(dst, uint64(s.ServerID), 10)
	dst = append(dst, `,"file":`...)
	dst = appendJSONString(dst, s.File)
	dst = append(dst, `,"pos":`...)
	dst = strconv.AppendUint(dst, s.Pos, 10)
	if s.GTID != "" {
		dst = append(dst, `,"gtid":`...)
		dst = appendJSONString(dst, s.GTID)
	}
	dst = append(dst, `,"ts_ms":`...)
	dst = strconv.AppendInt(dst, s.TsMs, 10)
	dst = append(dst, `,"row":`...)
	dst = strconv.AppendInt(dst, int64(s.Row), 10)
	if s.Snapshot {
		dst = append(dst, `,"snapshot":true`...)
	}
	return append(dst, '}')
}

// appendValue appends an encoded value (event.Encode's result: nil, json.Number or string).
func appendValue(dst []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(dst, "null"...)
	case json.Number:
		return append(dst, x...)
	case string:
		return appendJSONString(dst, x)
	}
	// event.Encode returns only the three forms above; anything else goes the slow way.
	b, err := json.Marshal(v)
	if err != nil {
		return append(dst, "null"...)
	}
	return append(dst, b...)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as encoding/json writes a string with HTML escaping off:
// '"' and '\\' escaped, control characters as \b \f \n \r \t or \u00XX, invalid UTF-8 as
// \ufffd, U+2028 and U+2029 escaped.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case c == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case c == '\u2028' || c == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
