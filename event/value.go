package event

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/text/encoding/charmap"

	"github.com/cleave-dev/cleave/schema"
)

// Encode turns a column value as a reader produced it (go-mysql's binlog decoder, or
// database/sql scanning into any) into its event form:
//
//	kind                         event form
//	int, uint, year, bit         json.Number, the exact integer (up to 2^64-1)
//	float, double                json.Number, the shortest text that reads back to the same bits
//	decimal                      string, the exact decimal text ("12.300")
//	date, time, datetime         string, MySQL's text ("2024-02-29", "-838:59:59.000000",
//	                             "2024-02-29 23:59:59.999999")
//	timestamp                    string, the UTC wall time in the same text form
//	string, enum, set, json      string, UTF-8 text (enum: its label; set: labels joined by ",")
//	binary                       string, standard base64 of the bytes
//	NULL                         nil
//
// A value the column cannot hold, or of a Go type the kind does not expect, is an error
// naming the column; nothing is ever silently changed.
func Encode(col *schema.Column, v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	out, err := encode(col, v)
	if err != nil {
		return nil, fmt.Errorf("column %s (%s): %w", col.Name, col.ColumnType, err)
	}
	return out, nil
}

func encode(col *schema.Column, v any) (any, error) {
	switch col.Kind {
	case schema.KindInt:
		i, err := toInt64(v)
		if err != nil {
			return nil, err
		}
		return json.Number(strconv.FormatInt(i, 10)), nil
	case schema.KindUint, schema.KindBit:
		u, err := toUint64(col, v)
		if err != nil {
			return nil, err
		}
		return json.Number(strconv.FormatUint(u, 10)), nil
	case schema.KindYear:
		i, err := toInt64(v)
		if err != nil {
			return nil, err
		}
		return json.Number(strconv.FormatInt(i, 10)), nil
	case schema.KindFloat, schema.KindDouble:
		return encodeFloat(col, v)
	case schema.KindDecimal:
		s, err := toText(v)
		if err != nil {
			return nil, err
		}
		if !isDecimalText(s) {
			return nil, fmt.Errorf("%q is not a decimal", s)
		}
		return s, nil
	case schema.KindDate, schema.KindTime, schema.KindDateTime:
		if t, ok := v.(time.Time); ok {
			return formatTime(col, t), nil
		}
		return toText(v)
	case schema.KindTimestamp:
		if t, ok := v.(time.Time); ok {
			return formatTime(col, t.UTC()), nil
		}
		return toText(v)
	case schema.KindString, schema.KindJSON:
		return encodeText(col, v)
	case schema.KindEnum:
		return encodeEnum(col, v)
	case schema.KindSet:
		return encodeSet(col, v)
	case schema.KindBinary:
		switch b := v.(type) {
		case []byte:
			return base64.StdEncoding.EncodeToString(b), nil
		case string:
			return base64.StdEncoding.EncodeToString([]byte(b)), nil
		}
		return nil, fmt.Errorf("binary value of Go type %T", v)
	}
	return nil, fmt.Errorf("no encoding for kind %s", col.Kind)
}

func toInt64(v any) (int64, error) {
	switch x := v.(type) {
	case int8:
		return int64(x), nil
	case int16:
		return int64(x), nil
	case int32:
		return int64(x), nil
	case int64:
		return x, nil
	case int:
		return int64(x), nil
	case uint8:
		return int64(x), nil
	case uint16:
		return int64(x), nil
	case uint32:
		return int64(x), nil
	case uint64:
		if x > 1<<63-1 {
			return 0, fmt.Errorf("%d overflows a signed 64-bit integer", x)
		}
		return int64(x), nil
	case []byte:
		return strconv.ParseInt(string(x), 10, 64)
	case string:
		return strconv.ParseInt(x, 10, 64)
	}
	return 0, fmt.Errorf("integer value of Go type %T", v)
}

// toUint64 reads an unsigned value. Binlog decoders hand out unsigned columns as signed Go
// integers of the column's storage width, so a negative one is re-read at that width.
func toUint64(col *schema.Column, v any) (uint64, error) {
	switch x := v.(type) {
	case int8:
		return uint64(uint8(x)), nil
	case int16:
		return uint64(uint16(x)), nil
	case int32:
		if col.DataType == "mediumint" {
			return uint64(uint32(x) & 0xFFFFFF), nil
		}
		return uint64(uint32(x)), nil
	case int64:
		return uint64(x), nil
	case int:
		return uint64(x), nil
	case uint8:
		return uint64(x), nil
	case uint16:
		return uint64(x), nil
	case uint32:
		return uint64(x), nil
	case uint64:
		return x, nil
	case []byte:
		if col.Kind == schema.KindBit && col.DataType == "bit" && !isDigits(x) {
			// database/sql scans BIT as its big-endian bytes.
			var u uint64
			for _, b := range x {
				u = u<<8 | uint64(b)
			}
			return u, nil
		}
		return strconv.ParseUint(string(x), 10, 64)
	case string:
		return strconv.ParseUint(x, 10, 64)
	}
	return 0, fmt.Errorf("unsigned value of Go type %T", v)
}

func isDigits(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func encodeFloat(col *schema.Column, v any) (any, error) {
	bits := 64
	if col.Kind == schema.KindFloat {
		bits = 32
	}
	var f float64
	switch x := v.(type) {
	case float32:
		f = float64(x)
	case float64:
		f = x
	case []byte:
		p, err := strconv.ParseFloat(string(x), bits)
		if err != nil {
			return nil, err
		}
		f = p
	case string:
		p, err := strconv.ParseFloat(x, bits)
		if err != nil {
			return nil, err
		}
		f = p
	default:
		return nil, fmt.Errorf("float value of Go type %T", v)
	}
	return json.Number(strconv.FormatFloat(f, 'g', -1, bits)), nil
}

// isDecimalText reports whether s is a plain decimal literal as MySQL renders DECIMAL
// values: an optional sign, digits, and optionally a point and more digits.
func isDecimalText(s string) bool {
	if s != "" && (s[0] == '-' || s[0] == '+') {
		s = s[1:]
	}
	digits, point := 0, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			digits++
		case c == '.' && !point:
			point = true
		default:
			return false
		}
	}
	return digits > 0
}

func toText(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case []byte:
		return string(x), nil
	}
	return "", fmt.Errorf("text value of Go type %T", v)
}

func formatTime(col *schema.Column, t time.Time) string {
	switch col.Kind {
	case schema.KindDate:
		return t.Format("2006-01-02")
	}
	s := t.Format("2006-01-02 15:04:05")
	if col.FSP > 0 {
		s += "." + fmt.Sprintf("%06d", t.Nanosecond()/1000)[:col.FSP]
	}
	return s
}

// encodeText returns the column's text as UTF-8. latin1 columns hold cp1252 bytes (MySQL's
// latin1 is Windows-1252) and are converted; other single-byte charsets are refused rather
// than guessed at.
func encodeText(col *schema.Column, v any) (any, error) {
	var b []byte
	switch x := v.(type) {
	case string:
		if utf8Compatible(col.Charset) {
			return x, nil // no copy: the common case of every binlog row
		}
		b = []byte(x)
	case []byte:
		b = x
	default:
		return nil, fmt.Errorf("text value of Go type %T", v)
	}
	switch strings.ToLower(col.Charset) {
	case "", "utf8mb4", "utf8mb3", "utf8", "ascii", "binary":
		return string(b), nil
	case "latin1":
		s, err := charmap.Windows1252.NewDecoder().Bytes(b)
		if err != nil {
			return nil, err
		}
		return string(s), nil
	}
	return nil, fmt.Errorf("character set %s is not supported (use utf8mb4, utf8mb3, ascii or latin1)", col.Charset)
}

// utf8Compatible reports whether text in charset cs is already UTF-8.
func utf8Compatible(cs string) bool {
	switch cs {
	case "", "utf8mb4", "utf8mb3", "utf8", "ascii", "binary":
		return true
	}
	return false
}

func encodeEnum(col *schema.Column, v any) (any, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case []byte:
		return string(x), nil
	}
	i, err := toInt64(v)
	if err != nil {
		return nil, err
	}
	if i == 0 {
		return "", nil // MySQL's error value of an ENUM is the empty string at index 0
	}
	if i < 0 || int(i) > len(col.Elements) {
		return nil, fmt.Errorf("enum index %d outside its %d labels", i, len(col.Elements))
	}
	return col.Elements[i-1], nil
}

func encodeSet(col *schema.Column, v any) (any, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case []byte:
		return string(x), nil
	}
	i, err := toInt64(v)
	if err != nil {
		return nil, err
	}
	var labels []string
	for bit := 0; bit < 64; bit++ {
		if uint64(i)&(1<<bit) == 0 {
			continue
		}
		if bit >= len(col.Elements) {
			return nil, fmt.Errorf("set bit %d outside its %d labels", bit, len(col.Elements))
		}
		labels = append(labels, col.Elements[bit])
	}
	return strings.Join(labels, ","), nil
}

// SQLArg turns an event value back into an argument for database/sql that writes exactly
// the source's value into a column of the same definition (on a session in UTC).
func SQLArg(col *schema.Column, v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	arg, err := sqlArg(col, v)
	if err != nil {
		return nil, fmt.Errorf("column %s (%s): %w", col.Name, col.ColumnType, err)
	}
	return arg, nil
}

func sqlArg(col *schema.Column, v any) (any, error) {
	switch col.Kind {
	case schema.KindInt, schema.KindYear:
		return strconv.ParseInt(text(v), 10, 64)
	case schema.KindUint, schema.KindBit:
		return strconv.ParseUint(text(v), 10, 64)
	case schema.KindFloat:
		f, err := strconv.ParseFloat(text(v), 32)
		return f, err
	case schema.KindDouble:
		return strconv.ParseFloat(text(v), 64)
	case schema.KindBinary:
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("binary value must be a base64 string, got %T", v)
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("binary value is not base64: %w", err)
		}
		return b, nil
	}
	switch x := v.(type) {
	case string:
		return x, nil
	case json.Number:
		return string(x), nil
	}
	return nil, fmt.Errorf("value of Go type %T", v)
}

func text(v any) string {
	switch x := v.(type) {
	case json.Number:
		return string(x)
	case string:
		return x
	}
	return fmt.Sprint(v)
}

// Canonical returns the bytes MySQL itself would render for the value (what CAST(col AS
// CHAR) or MD5(col) sees): the routing form of a shard key. Text is in the column's own
// character set (a latin1 'é' is the one byte 0xe9, as MD5 sees it on the server), and BIT
// is its big-endian bytes at the column's width. ok is false for NULL.
func Canonical(col *schema.Column, v any) (b []byte, ok bool, err error) {
	if v == nil {
		return nil, false, nil
	}
	switch col.Kind {
	case schema.KindBinary:
		arg, err := SQLArg(col, v)
		if err != nil {
			return nil, false, err
		}
		return arg.([]byte), true, nil
	case schema.KindString, schema.KindEnum, schema.KindSet:
		if strings.EqualFold(col.Charset, "latin1") {
			enc, err := charmap.Windows1252.NewEncoder().Bytes([]byte(text(v)))
			if err != nil {
				return nil, false, fmt.Errorf("column %s: %q has no latin1 form: %w", col.Name, text(v), err)
			}
			return enc, true, nil
		}
	case schema.KindBit:
		u, err := strconv.ParseUint(text(v), 10, 64)
		if err != nil {
			return nil, false, fmt.Errorf("column %s: %w", col.Name, err)
		}
		width := (bitWidth(col.ColumnType) + 7) / 8
		out := make([]byte, width)
		for i := width - 1; i >= 0; i-- {
			out[i] = byte(u)
			u >>= 8
		}
		return out, true, nil
	}
	return []byte(text(v)), true, nil
}

// bitWidth reads n of "bit(n)"; BIT alone is BIT(1).
func bitWidth(columnType string) int {
	open, close := strings.IndexByte(columnType, '('), strings.IndexByte(columnType, ')')
	if open < 0 || close <= open {
		return 1
	}
	n, err := strconv.Atoi(columnType[open+1 : close])
	if err != nil || n < 1 || n > 64 {
		return 1
	}
	return n
}
