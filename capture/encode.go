package capture

import (
	"strconv"

	"github.com/cleave-dev/cleave/event"
	"github.com/cleave-dev/cleave/schema"
)

// Messages are written by the event package's wire writer (event/wire.go): each table
// definition has its event.Columns, and the reader fills one event.Image per row image
// with the JSON text of each value, which appendColumn writes straight from go-mysql's
// values for the common kinds.

// rowImage is a row image in event form (event.Image) with what capture needs beside it.
// The reader keeps two and reuses them for every row: a message is encoded from them and
// they are overwritten.
type rowImage struct {
	event.Image
	set bool // false: no image (the before of an insert, the after of a delete)
	// types holds the JSON columns' scalars whose type their text does not tell, for the
	// event's json_types (json.go); jsonText and jsonPath are appendJSON's scratch buffers.
	types              map[string]event.JSONTypes
	jsonText, jsonPath []byte
}

func (img *rowImage) reset() {
	img.Image.Reset()
	img.set = true
	clear(img.types)
}

// wire returns the image as the wire writer takes it: nil when there is none.
func (img *rowImage) wire() *event.Image {
	if img == nil || !img.set {
		return nil
	}
	return &img.Image
}

// appendEvent appends the JSON value of a row change event; src is the encoded source.
func (d *tableDef) appendEvent(dst []byte, op event.Op, before, after *rowImage, tsMs int64, src []byte, v event.Version) []byte {
	h := event.Head{Op: op, TsMs: tsMs, Source: src, Version: v}
	if after.wire() != nil {
		h.JSONTypes = after.types // JSON columns only: see json.go
	}
	return d.cols.AppendEvent(dst, &h, before.wire(), after.wire())
}

// appendKey appends the message key of img: the JSON array of its primary key values.
func (d *tableDef) appendKey(dst []byte, img *rowImage) []byte {
	return d.cols.AppendKey(dst, &img.Image)
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
