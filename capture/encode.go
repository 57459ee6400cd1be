package capture

import (
	"bytes"
	"sort"
	"strconv"

	"github.com/cleave-dev/cleave/event"
	"github.com/cleave-dev/cleave/schema"
)

// Design note: the message encoder.
//
// event.Marshal defines the message format: encoding/json of event.Event, whose row
// images are maps (keys sorted) of encoded values. Capture builds the same bytes without
// the maps and reflection, which cost more than decoding the row: values are encoded by
// event.Encode into a slice in column order and written in the sorted order of the column
// names, computed once per table definition. encode_test.go checks, on random rows
// (control characters, invalid UTF-8, U+2028 …), that the bytes equal event.Marshal's and
// event.Key's, so the format has one definition.

// rowImage is a row in event form: the JSON text of each column's value (event.Encode's
// result as encoding/json writes it), in table order, in one buffer. The reader keeps two
// and reuses them for every row: a message is encoded from them and they are overwritten.
type rowImage struct {
	buf  []byte
	ends []int // value i is buf[ends[i-1]:ends[i]]
	set  bool  // false: no image (the before of an insert, the after of a delete)
	// types holds the JSON columns' scalars whose type their text does not tell, for the
	// event's json_types (json.go); jsonText and jsonPath are appendJSON's scratch buffers.
	types              map[string]event.JSONTypes
	jsonText, jsonPath []byte
}

func (img *rowImage) reset() {
	img.buf, img.ends, img.set = img.buf[:0], img.ends[:0], true
	clear(img.types)
}

// value returns the JSON text of column i.
func (img *rowImage) value(i int) []byte {
	start := 0
	if i > 0 {
		start = img.ends[i-1]
	}
	return img.buf[start:img.ends[i]]
}

// sortedColumns returns the column indexes in the order encoding/json writes map keys.
func sortedColumns(names []string) []int {
	order := make([]int, len(names))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return names[order[a]] < names[order[b]] })
	return order
}

// appendEvent appends the JSON value of a row change event.
func (d *tableDef) appendEvent(dst []byte, op event.Op, before, after *rowImage, tsMs int64, src *event.Source, v event.Version) []byte {
	dst = append(dst, `{"before":`...)
	dst = d.appendImage(dst, before)
	dst = append(dst, `,"after":`...)
	dst = d.appendImage(dst, after)
	dst = append(dst, `,"op":`...)
	dst = event.AppendJSONString(dst, string(op))
	dst = append(dst, `,"ts_ms":`...)
	dst = strconv.AppendInt(dst, tsMs, 10)
	dst = append(dst, `,"source":`...)
	dst = event.AppendSource(dst, src)
	dst = append(dst, `,"version":`...)
	dst = strconv.AppendUint(dst, uint64(v), 10)
	if after != nil && after.set {
		dst = event.AppendJSONTypes(dst, after.types) // JSON columns only: see json.go
	}
	return append(dst, '}')
}

func (d *tableDef) appendImage(dst []byte, img *rowImage) []byte {
	if img == nil || !img.set {
		return append(dst, "null"...)
	}
	dst = append(dst, '{')
	for n, i := range d.order {
		if n > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, d.quotedNames[i]...)
		dst = append(dst, ':')
		dst = append(dst, img.value(i)...)
	}
	return append(dst, '}')
}

// appendKey appends the message key of img: the JSON array of its primary key values.
func (d *tableDef) appendKey(dst []byte, img *rowImage) []byte {
	dst = append(dst, '[')
	for n, i := range d.table.PK {
		if n > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, img.value(i)...)
	}
	return append(dst, ']')
}

// sameKey reports whether two images have the same primary key. The encoding is canonical:
// equal text, equal value.
func (d *tableDef) sameKey(a, b *rowImage) bool {
	for _, i := range d.table.PK {
		if !bytes.Equal(a.value(i), b.value(i)) {
			return false
		}
	}
	return true
}

// appendColumn appends the JSON text of event.Encode(col, v). The kinds and Go types that
// make up nearly every binlog row are written directly, without event.Encode's boxed
// result; every other value goes through event.Encode. encode_test.go checks that both
// ways write the same bytes.
func appendColumn(dst []byte, col *schema.Column, v any) ([]byte, error) {
	switch col.Kind {
	case schema.KindInt:
		switch x := v.(type) {
		case int8:
			return strconv.AppendInt(dst, int64(x), 10), nil
		case int16:
			return strconv.AppendInt(dst, int64(x), 10), nil
		case int32:
			return strconv.AppendInt(dst, int64(x), 10), nil
		case int64:
			return strconv.AppendInt(dst, x, 10), nil
		}
	case schema.KindUint:
		switch x := v.(type) {
		case uint8:
			return strconv.AppendUint(dst, uint64(x), 10), nil
		case uint16:
			return strconv.AppendUint(dst, uint64(x), 10), nil
		case uint32:
			return strconv.AppendUint(dst, uint64(x), 10), nil
		case uint64:
			return strconv.AppendUint(dst, x, 10), nil
		}
	case schema.KindString, schema.KindJSON:
		if x, ok := v.(string); ok && utf8Charset(col.Charset) {
			return event.AppendJSONString(dst, x), nil
		}
	case schema.KindDate, schema.KindDateTime, schema.KindTime, schema.KindTimestamp:
		if x, ok := v.(string); ok {
			return event.AppendJSONString(dst, x), nil
		}
	}
	enc, err := event.Encode(col, v)
	if err != nil {
		return dst, err
	}
	return event.AppendValue(dst, enc), nil
}

// utf8Charset reports whether text of charset cs is UTF-8 already (event.Encode keeps it).
func utf8Charset(cs string) bool {
	switch cs {
	case "", "utf8mb4", "utf8mb3", "utf8", "ascii", "binary":
		return true
	}
	return false
}
