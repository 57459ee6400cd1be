package event

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
)

// Design note: the wire format, written in one place.
//
// A message's value is the JSON object of an Event, its fields in the order of the struct
// (before, after, op, ts_ms, source, version, then ddl and json_types when set), written
// as encoding/json writes that struct with HTML escaping off: row images are objects whose
// keys are the column names in byte order, each value the JSON text of Encode's result. A
// message's key is the JSON array of the primary key's values (Key). The format is what
// consumers outside cleave read (kcat, Debezium-style consumers), so it is defined by
// encoding/json: event_test.go checks every writer against it on random events.
//
// There are two ways in, one writer underneath:
//   - Marshal and MarshalKey take an Event and its values as they are, for the events
//     that are rare (schema changes, heartbeats) and for tests;
//   - a Columns built once per table definition, and an Image per row image filled with
//     the JSON text of each value in table order, for the hot paths (capture's stream,
//     the backfill's chunks), which reuse their buffers and build no maps.
// Both write the envelope through Head.appendTail and the values through the same
// appenders, so they cannot drift apart.

// Columns writes the row images and keys of one table's rows. Build it once per table
// definition: it holds the column names as JSON strings and the order they are written in.
type Columns struct {
	quoted [][]byte // the names as JSON strings, in table order
	order  []int    // the column indexes in the order a row image writes them
	pk     []int    // the primary key's column indexes, in key order
}

// NewColumns returns the writer of the rows of a table with these columns (in table
// order) and primary key (column indexes in key order).
func NewColumns(names []string, pk []int) *Columns {
	c := &Columns{quoted: make([][]byte, len(names)), order: make([]int, len(names)), pk: slices.Clone(pk)}
	for i, n := range names {
		c.quoted[i] = AppendJSONString(nil, n)
		c.order[i] = i
	}
	slices.SortStableFunc(c.order, func(a, b int) int {
		switch {
		case names[a] < names[b]:
			return -1
		case names[a] > names[b]:
			return 1
		}
		return 0
	})
	return c
}

// Image is one row image on its way into a message: the JSON text of each column's value
// (AppendValue of Encode's result), in table order, in one buffer. Writers keep one per
// image and Reset it for every row.
type Image struct {
	// Text holds the values' texts one after another. Append a value's text to it, then
	// call End.
	Text []byte
	ends []int // value i is Text[ends[i-1]:ends[i]]
}

// Reset empties the image for the next row.
func (m *Image) Reset() { m.Text, m.ends = m.Text[:0], m.ends[:0] }

// End marks the end of the value just appended to Text.
func (m *Image) End() { m.ends = append(m.ends, len(m.Text)) }

// Add appends an encoded value (Encode's result) as the next column's.
func (m *Image) Add(v any) {
	m.Text = AppendValue(m.Text, v)
	m.End()
}

// Len is the number of values in the image.
func (m *Image) Len() int { return len(m.ends) }

// Value returns the JSON text of column i.
func (m *Image) Value(i int) []byte {
	start := 0
	if i > 0 {
		start = m.ends[i-1]
	}
	return m.Text[start:m.ends[i]]
}

// Clone returns a copy that shares no memory with m.
func (m *Image) Clone() Image {
	return Image{Text: slices.Clone(m.Text), ends: slices.Clone(m.ends)}
}

// Head is everything of an event but its row images.
type Head struct {
	Op   Op
	TsMs int64
	// Source is the source object as AppendSource writes it: rows that share one (the
	// rows of a backfill chunk) encode it once.
	Source  []byte
	Version Version
	DDL     string
	// JSONTypes are the after image's JSON scalars whose type their text does not tell.
	JSONTypes map[string]JSONTypes
}

// appendTail appends the fields after the row images, and the event's closing brace.
func (h *Head) appendTail(dst []byte) []byte {
	dst = append(dst, `,"op":`...)
	dst = AppendJSONString(dst, string(h.Op))
	dst = append(dst, `,"ts_ms":`...)
	dst = strconv.AppendInt(dst, h.TsMs, 10)
	dst = append(dst, `,"source":`...)
	dst = append(dst, h.Source...)
	dst = append(dst, `,"version":`...)
	dst = strconv.AppendUint(dst, uint64(h.Version), 10)
	if h.DDL != "" {
		dst = append(dst, `,"ddl":`...)
		dst = AppendJSONString(dst, h.DDL)
	}
	dst = AppendJSONTypes(dst, h.JSONTypes)
	return append(dst, '}')
}

// AppendEvent appends the message value of a row change. A nil image is written as null
// (the before of an insert, the after of a delete).
func (c *Columns) AppendEvent(dst []byte, h *Head, before, after *Image) []byte {
	dst = append(dst, `{"before":`...)
	dst = c.appendImage(dst, before)
	dst = append(dst, `,"after":`...)
	dst = c.appendImage(dst, after)
	return h.appendTail(dst)
}

func (c *Columns) appendImage(dst []byte, m *Image) []byte {
	if m == nil {
		return append(dst, "null"...)
	}
	dst = append(dst, '{')
	for n, i := range c.order {
		if n > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, c.quoted[i]...)
		dst = append(dst, ':')
		dst = append(dst, m.Value(i)...)
	}
	return append(dst, '}')
}

// AppendKey appends the message key of a row: the JSON array of its primary key values.
func (c *Columns) AppendKey(dst []byte, m *Image) []byte {
	dst = append(dst, '[')
	for n, i := range c.pk {
		if n > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, m.Value(i)...)
	}
	return append(dst, ']')
}

// SameKey reports whether two images have the same primary key. The encoding is
// canonical (Encode): equal text, equal value.
func (c *Columns) SameKey(a, b *Image) bool {
	for _, i := range c.pk {
		if !bytes.Equal(a.Value(i), b.Value(i)) {
			return false
		}
	}
	return true
}

// Marshal encodes e as the JSON value of its Kafka message.
func Marshal(e *Event) ([]byte, error) {
	fail := func(err error) ([]byte, error) {
		return nil, fmt.Errorf("encode event of %s.%s at %s:%d: %w", e.Source.DB, e.Source.Table, e.Source.File, e.Source.Pos, err)
	}
	dst := append(make([]byte, 0, 512), `{"before":`...)
	dst, err := appendRow(dst, e.Before)
	if err != nil {
		return fail(fmt.Errorf("before: %w", err))
	}
	dst = append(dst, `,"after":`...)
	if dst, err = appendRow(dst, e.After); err != nil {
		return fail(fmt.Errorf("after: %w", err))
	}
	h := Head{Op: e.Op, TsMs: e.TsMs, Source: AppendSource(nil, &e.Source), Version: e.Version, DDL: e.DDL, JSONTypes: e.JSONTypes}
	return h.appendTail(dst), nil
}

// appendRow appends a row image given as a map, its keys in byte order.
func appendRow(dst []byte, r Row) ([]byte, error) {
	if r == nil {
		return append(dst, "null"...), nil
	}
	names := make([]string, 0, len(r))
	for n := range r {
		names = append(names, n)
	}
	slices.Sort(names)
	dst = append(dst, '{')
	for i, n := range names {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = AppendJSONString(dst, n)
		dst = append(dst, ':')
		var err error
		if dst, err = appendChecked(dst, r[n]); err != nil {
			return nil, fmt.Errorf("column %s: %w", n, err)
		}
	}
	return append(dst, '}'), nil
}

// MarshalKey encodes already-encoded primary key values as a message key.
func MarshalKey(vals []any) ([]byte, error) {
	dst := append(make([]byte, 0, 32), '[')
	for i, v := range vals {
		if i > 0 {
			dst = append(dst, ',')
		}
		var err error
		if dst, err = appendChecked(dst, v); err != nil {
			return nil, fmt.Errorf("encode key: %w", err)
		}
	}
	return append(dst, ']'), nil
}

// appendChecked appends a value of any type as encoding/json writes it, refusing what it
// refuses (a json.Number that is not a number); AppendValue trusts Encode's results.
func appendChecked(dst []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil, string:
		return AppendValue(dst, x), nil
	case json.Number:
		if x == "" {
			return append(dst, '0'), nil // as encoding/json writes an empty Number
		}
		if !validNumber(string(x)) {
			return nil, fmt.Errorf("invalid number literal %q", string(x))
		}
		return append(dst, x...), nil
	case bool:
		return strconv.AppendBool(dst, x), nil
	}
	return appendOther(dst, v)
}

// appendOther appends a value of a type Encode never returns (a nested document an event
// decoded by encoding/json may hold) with encoding/json, HTML escaping off.
func appendOther(dst []byte, v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return append(dst, bytes.TrimRight(buf.Bytes(), "\n")...), nil
}

// validNumber reports whether s is a JSON number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
func validNumber(s string) bool {
	if s == "" || (s[0] != '-' && (s[0] < '0' || s[0] > '9')) {
		return false
	}
	d := decoder{b: []byte(s)}
	_, err := d.number()
	return err == nil && d.i == len(s)
}
