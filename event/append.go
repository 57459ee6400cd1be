package event

// The append functions below write the parts of a message (wire.go) into reused buffers.

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// AppendSource appends s as Marshal writes it.
func AppendSource(dst []byte, s *Source) []byte {
	dst = append(dst, `{"connector":`...)
	dst = AppendJSONString(dst, s.Connector)
	dst = append(dst, `,"name":`...)
	dst = AppendJSONString(dst, s.Name)
	dst = append(dst, `,"db":`...)
	dst = AppendJSONString(dst, s.DB)
	dst = append(dst, `,"table":`...)
	dst = AppendJSONString(dst, s.Table)
	dst = append(dst, `,"server_id":`...)
	dst = strconv.AppendUint(dst, uint64(s.ServerID), 10)
	dst = append(dst, `,"file":`...)
	dst = AppendJSONString(dst, s.File)
	dst = append(dst, `,"pos":`...)
	dst = strconv.AppendUint(dst, s.Pos, 10)
	if s.GTID != "" {
		dst = append(dst, `,"gtid":`...)
		dst = AppendJSONString(dst, s.GTID)
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

// AppendValue appends an encoded value (Encode's result: nil, a json.Number or a string)
// as the wire format writes it.
func AppendValue(dst []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(dst, "null"...)
	case json.Number:
		return append(dst, x...)
	case string:
		return AppendJSONString(dst, x)
	}
	// Encode returns only the three forms above; anything else goes the slow way.
	out, err := appendOther(dst, v)
	if err != nil {
		return append(dst, "null"...)
	}
	return out
}

const hexDigits = "0123456789abcdef"

// AppendJSONEscape appends the escape of an ASCII byte that a JSON string cannot hold as
// it is ('"', '\\', a control character): \b \f \n \r \t where JSON has one, else \u00XX.
func AppendJSONEscape(dst []byte, b byte) []byte {
	switch b {
	case '\\', '"':
		return append(dst, '\\', b)
	case '\b':
		return append(dst, '\\', 'b')
	case '\f':
		return append(dst, '\\', 'f')
	case '\n':
		return append(dst, '\\', 'n')
	case '\r':
		return append(dst, '\\', 'r')
	case '\t':
		return append(dst, '\\', 't')
	}
	return append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
}

// AppendJSONString appends s as encoding/json writes a string with HTML escaping off:
// '"' and '\\' escaped, control characters as \b \f \n \r \t or \u00XX, invalid UTF-8 as
// \ufffd, U+2028 and U+2029 escaped.
func AppendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			dst = AppendJSONEscape(dst, b)
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
