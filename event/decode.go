package event

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// Design note: the fast decoder.
//
// Decoding is most of a sink's CPU, and every sink decodes every change of its rows, so
// messages are read by a decoder made for the shapes cleave writes (flat row images,
// known fields in their usual spelling) that does not go through reflection. Anything
// outside those shapes (an escape it does not know, a nested value in a row, a field name
// in other case, a number out of range, an invalid event) goes to unmarshalReference, the
// definition of what a message means (encoding/json of Event): for any input both give
// the same event or the fast path defers. decode_test.go holds them to that, on random
// events, hand-picked odd inputs and a fuzz target.

// Decoder decodes message values. It keeps the column and database names it has seen, so
// that decoding the next row of a table does not allocate its keys again. It is not safe
// for concurrent use: each goroutine that decodes has its own. The zero value is ready.
type Decoder struct {
	names interner
}

// Decode decodes a message value into an event, as Unmarshal does. The strings of the
// event may share data's memory: data must not be modified while the event is in use
// (Kafka hands each message its own bytes).
func (d *Decoder) Decode(data []byte) (*Event, error) {
	return decode(data, &d.names)
}

// Unmarshal decodes a Kafka message value into an event. Numbers stay json.Number so that
// 64-bit integers and exact decimals survive. The strings of the event may share data's
// memory: data must not be modified while the event is in use.
func Unmarshal(data []byte) (*Event, error) {
	return decode(data, nil)
}

func decode(data []byte, names *interner) (*Event, error) {
	if ev, ok := fastDecode(data, names); ok {
		return ev, nil
	}
	return unmarshalReference(data)
}

var errSlow = errors.New("not on the fast path")

func fastDecode(data []byte, names *interner) (*Event, bool) {
	d := decoder{b: data, names: names}
	var e Event
	if err := d.event(&e); err != nil {
		return nil, false
	}
	if e.check() != nil {
		return nil, false
	}
	return &e, true
}

type decoder struct {
	b     []byte
	i     int
	names *interner
}

// interner hands out one string per column name, so that decoding a row does not allocate
// its keys again and again. It is not safe for concurrent use: each planner has its own.
type interner struct {
	m map[string]string
	// rowSize is the most columns a row image had: new row maps are made that big, so
	// that they do not grow while decoding.
	rowSize int
	// cols are the column names of the last row image, in order: the next row of the
	// same table names them in the same order, found here without hashing.
	cols []string
}

// column interns the i-th column name of a row image.
func (n *interner) column(i int, b []byte) string {
	if n == nil {
		return string(b)
	}
	if i < len(n.cols) && n.cols[i] == string(b) {
		return n.cols[i]
	}
	s := n.intern(b)
	if i < len(n.cols) {
		n.cols[i] = s
	} else if i == len(n.cols) && i < 1024 {
		n.cols = append(n.cols, s)
	}
	return s
}

// alias is b as a string without a copy: b must not change while the string is in use.
func alias(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

func (n *interner) intern(b []byte) string {
	if n == nil {
		return string(b)
	}
	if s, ok := n.m[string(b)]; ok {
		return s
	}
	if n.m == nil || len(n.m) > 4096 {
		n.m = map[string]string{} // bounded: a stream of ever new names only costs allocations
	}
	s := string(b)
	n.m[s] = s
	return s
}

func (d *decoder) ws() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *decoder) peek() byte {
	d.ws()
	if d.i >= len(d.b) {
		return 0
	}
	return d.b[d.i]
}

func (d *decoder) expect(c byte) error {
	if d.peek() != c {
		return errSlow
	}
	d.i++
	return nil
}

func (d *decoder) null() bool {
	if d.peek() == 'n' && d.i+4 <= len(d.b) && string(d.b[d.i:d.i+4]) == "null" {
		d.i += 4
		return true
	}
	return false
}

// object calls field for each key of an object; field must consume the value. The key
// bytes are only valid during the call.
func (d *decoder) object(field func(key []byte) error) error {
	if err := d.expect('{'); err != nil {
		return err
	}
	if d.peek() == '}' {
		d.i++
		return nil
	}
	for {
		key, err := d.rawStr()
		if err != nil {
			return err
		}
		if err := d.expect(':'); err != nil {
			return err
		}
		if err := field(key); err != nil {
			return err
		}
		switch d.peek() {
		case ',':
			d.i++
		case '}':
			d.i++
			return nil
		default:
			return errSlow
		}
	}
}

func (d *decoder) event(e *Event) error {
	return d.object(func(key []byte) error {
		var err error
		switch string(key) {
		case "before":
			e.Before, err = d.row()
		case "after":
			e.After, err = d.row()
		case "op":
			var s string
			if s, err = d.strOrNull(string(e.Op)); err == nil {
				e.Op = Op(s)
			}
		case "ts_ms":
			e.TsMs, err = d.int64(e.TsMs)
		case "source":
			err = d.source(&e.Source)
		case "version":
			var u uint64
			if u, err = d.uint64(uint64(e.Version), 64); err == nil {
				e.Version = Version(u)
			}
		case "ddl":
			e.DDL, err = d.strOrNull(e.DDL)
		case "json_types":
			e.JSONTypes, err = d.jsonTypes(e.JSONTypes)
		default:
			err = d.unknown(key, "before", "after", "op", "ts_ms", "source", "version", "ddl", "json_types")
		}
		return err
	})
}

func (d *decoder) source(s *Source) error {
	if d.null() {
		return nil
	}
	return d.object(func(key []byte) error {
		var err error
		switch string(key) {
		case "connector":
			s.Connector, err = d.name(s.Connector)
		case "name":
			s.Name, err = d.name(s.Name)
		case "db":
			s.DB, err = d.name(s.DB)
		case "table":
			s.Table, err = d.name(s.Table)
		case "server_id":
			var u uint64
			if u, err = d.uint64(uint64(s.ServerID), 32); err == nil {
				s.ServerID = uint32(u)
			}
		case "file":
			s.File, err = d.name(s.File)
		case "pos":
			s.Pos, err = d.uint64(s.Pos, 64)
		case "gtid":
			s.GTID, err = d.strOrNull(s.GTID)
		case "ts_ms":
			s.TsMs, err = d.int64(s.TsMs)
		case "row":
			var i int64
			if i, err = d.int64(int64(s.Row)); err == nil {
				if int64(int(i)) != i {
					return errSlow
				}
				s.Row = int(i)
			}
		case "snapshot":
			switch {
			case d.null():
			case d.lit("true"):
				s.Snapshot = true
			case d.lit("false"):
				s.Snapshot = false
			default:
				err = errSlow
			}
		default:
			err = d.unknown(key, "connector", "name", "db", "table", "server_id", "file", "pos", "gtid", "ts_ms", "row", "snapshot")
		}
		return err
	})
}

// name decodes a string that repeats from event to event (a database, a binlog file),
// interned like column names.
func (d *decoder) name(old string) (string, error) {
	if d.null() {
		return old, nil
	}
	b, err := d.rawStr()
	if err != nil {
		return "", err
	}
	return d.names.intern(b), nil
}

// unknown skips the value of a key no field has. encoding/json matches field names without
// regard to case, so a key that differs from one only in case is left to it.
func (d *decoder) unknown(key []byte, known ...string) error {
	for _, k := range known {
		if strings.EqualFold(k, string(key)) {
			return errSlow
		}
	}
	return d.skip(0)
}

// row decodes a row image: a flat object of strings, numbers, booleans and nulls.
func (d *decoder) row() (Row, error) {
	if d.null() {
		return nil, nil
	}
	size := 0
	if d.names != nil {
		size = d.names.rowSize
	}
	r := make(Row, size)
	col := 0
	err := d.object(func(key []byte) error {
		var v any
		switch c := d.peek(); {
		case c == '"':
			s, err := d.str()
			if err != nil {
				return err
			}
			v = s
		case c == '-' || (c >= '0' && c <= '9'):
			n, err := d.number()
			if err != nil {
				return err
			}
			v = json.Number(n)
		case d.null():
		case d.lit("true"):
			v = true
		case d.lit("false"):
			v = false
		default:
			return errSlow
		}
		r[d.names.column(col, key)] = v
		col++
		return nil
	})
	if d.names != nil && len(r) > d.names.rowSize && len(r) <= 1024 {
		d.names.rowSize = len(r)
	}
	return r, err
}

func (d *decoder) lit(s string) bool {
	if d.peek() != s[0] || d.i+len(s) > len(d.b) || string(d.b[d.i:d.i+len(s)]) != s {
		return false
	}
	d.i += len(s)
	return true
}

// number scans a JSON number and returns its text.
func (d *decoder) number() (string, error) {
	d.ws()
	start := d.i
	if d.i < len(d.b) && d.b[d.i] == '-' {
		d.i++
	}
	digits := func() int {
		n := 0
		for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
			d.i++
			n++
		}
		return n
	}
	if d.i < len(d.b) && d.b[d.i] == '0' {
		d.i++
	} else if digits() == 0 {
		return "", errSlow
	}
	if d.i < len(d.b) && d.b[d.i] == '.' {
		d.i++
		if digits() == 0 {
			return "", errSlow
		}
	}
	if d.i < len(d.b) && (d.b[d.i] == 'e' || d.b[d.i] == 'E') {
		d.i++
		if d.i < len(d.b) && (d.b[d.i] == '+' || d.b[d.i] == '-') {
			d.i++
		}
		if digits() == 0 {
			return "", errSlow
		}
	}
	return alias(d.b[start:d.i]), nil
}

func (d *decoder) int64(old int64) (int64, error) {
	if d.null() {
		return old, nil
	}
	n, err := d.number()
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseInt(n, 10, 64)
	if err != nil {
		return 0, errSlow
	}
	return v, nil
}

func (d *decoder) uint64(old uint64, bits int) (uint64, error) {
	if d.null() {
		return old, nil
	}
	n, err := d.number()
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseUint(n, 10, bits)
	if err != nil {
		return 0, errSlow
	}
	return v, nil
}

func (d *decoder) strOrNull(old string) (string, error) {
	if d.null() {
		return old, nil
	}
	return d.str()
}

// rawStr decodes a JSON string into bytes that alias the input when it has no escapes.
func (d *decoder) rawStr() ([]byte, error) {
	if err := d.expect('"'); err != nil {
		return nil, err
	}
	start := d.i
	for d.i < len(d.b) {
		switch c := d.b[d.i]; {
		case c == '"':
			s := d.b[start:d.i]
			d.i++
			if !utf8.Valid(s) {
				return nil, errSlow
			}
			return s, nil
		case c == '\\':
			s, err := d.escaped(start)
			return []byte(s), err
		case c < 0x20:
			return nil, errSlow
		}
		d.i++
	}
	return nil, errSlow
}

// str decodes a JSON string.
func (d *decoder) str() (string, error) {
	if err := d.expect('"'); err != nil {
		return "", err
	}
	start := d.i
	ascii := true
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			s := d.b[start:d.i]
			d.i++
			if !ascii && !utf8.Valid(s) {
				return "", errSlow // encoding/json replaces invalid bytes; leave that to it
			}
			return alias(s), nil
		case c == '\\':
			return d.escaped(start)
		case c < 0x20:
			return "", errSlow
		case c >= 0x80:
			ascii = false
		}
		d.i++
	}
	return "", errSlow
}

// escaped finishes a string that has escapes, from start (after the opening quote).
func (d *decoder) escaped(start int) (string, error) {
	buf := make([]byte, 0, d.i-start+16)
	buf = append(buf, d.b[start:d.i]...)
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			d.i++
			if !utf8.Valid(buf) {
				return "", errSlow
			}
			return string(buf), nil
		case c < 0x20:
			return "", errSlow
		case c != '\\':
			buf = append(buf, c)
			d.i++
			continue
		}
		if d.i+1 >= len(d.b) {
			return "", errSlow
		}
		e := d.b[d.i+1]
		d.i += 2
		if c, ok := unescape(e); ok {
			buf = append(buf, c)
			continue
		}
		switch e {
		case 'u':
			r, ok := d.hex4()
			if !ok {
				return "", errSlow
			}
			if utf16.IsSurrogate(r) {
				// Only a well-formed pair; encoding/json's handling of lone halves is its own.
				if d.i+1 >= len(d.b) || d.b[d.i] != '\\' || d.b[d.i+1] != 'u' {
					return "", errSlow
				}
				d.i += 2
				r2, ok := d.hex4()
				if !ok {
					return "", errSlow
				}
				r = utf16.DecodeRune(r, r2)
				if r == utf8.RuneError {
					return "", errSlow
				}
			}
			buf = utf8.AppendRune(buf, r)
		default:
			return "", errSlow
		}
	}
	return "", errSlow
}

// unescape returns the byte a one-letter JSON escape (\n, \", …) stands for.
func unescape(e byte) (byte, bool) {
	switch e {
	case '"', '\\', '/':
		return e, true
	case 'b':
		return '\b', true
	case 'f':
		return '\f', true
	case 'n':
		return '\n', true
	case 'r':
		return '\r', true
	case 't':
		return '\t', true
	}
	return 0, false
}

func (d *decoder) hex4() (rune, bool) {
	r, ok := hex4(alias(d.b[d.i:]))
	if ok {
		d.i += 4
	}
	return r, ok
}

// skip passes over any JSON value.
func (d *decoder) skip(depth int) error {
	if depth > 100 {
		return errSlow
	}
	switch c := d.peek(); {
	case c == '"':
		_, err := d.str()
		return err
	case c == '-' || (c >= '0' && c <= '9'):
		_, err := d.number()
		return err
	case c == '{':
		return d.object(func([]byte) error { return d.skip(depth + 1) })
	case c == '[':
		d.i++
		if d.peek() == ']' {
			d.i++
			return nil
		}
		for {
			if err := d.skip(depth + 1); err != nil {
				return err
			}
			switch d.peek() {
			case ',':
				d.i++
			case ']':
				d.i++
				return nil
			default:
				return errSlow
			}
		}
	case d.null(), d.lit("true"), d.lit("false"):
		return nil
	}
	return errSlow
}

// jsonTypes decodes the json_types field (event/json.go) as Unmarshal does; what
// encoding/json would merge or zero (a repeated field, a null inside) goes the slow way.
func (d *decoder) jsonTypes(old map[string]JSONTypes) (map[string]JSONTypes, error) {
	if d.null() {
		return nil, nil
	}
	if old != nil {
		return nil, errSlow
	}
	out := map[string]JSONTypes{}
	err := d.object(func(col []byte) error {
		if _, dup := out[string(col)]; dup || d.peek() == 'n' {
			return errSlow
		}
		name := d.names.intern(col)
		t := JSONTypes{}
		if err := d.object(func(path []byte) error {
			if _, dup := t[string(path)]; dup || d.peek() != '"' {
				return errSlow
			}
			p := string(path)
			s, err := d.str()
			if err != nil {
				return err
			}
			t[p] = JSONType(s)
			return nil
		}); err != nil {
			return err
		}
		out[name] = t
		return nil
	})
	return out, err
}
