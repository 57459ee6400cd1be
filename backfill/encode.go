package backfill

import (
	"sort"
	"strconv"

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
		e.names[i] = event.AppendJSONString(nil, def.Columns[i].Name)
	}
	sort.SliceStable(e.order, func(a, b int) bool { return def.Columns[e.order[a]].Name < def.Columns[e.order[b]].Name })
	return e
}

// setSource sets the source object of the next rows.
func (e *encoder) setSource(s *event.Source) {
	e.source = event.AppendSource(e.source[:0], s)
}

// appendKey appends the message key of a row whose encoded values are vals.
func (e *encoder) appendKey(dst []byte, vals []any) []byte {
	dst = append(dst, '[')
	for n, i := range e.def.PK {
		if n > 0 {
			dst = append(dst, ',')
		}
		dst = event.AppendValue(dst, vals[i])
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
		dst = event.AppendValue(dst, vals[i])
	}
	dst = append(dst, `},"op":"r","ts_ms":`...)
	dst = strconv.AppendInt(dst, tsMs, 10)
	dst = append(dst, `,"source":`...)
	dst = append(dst, e.source...)
	dst = append(dst, `,"version":`...)
	dst = strconv.AppendUint(dst, uint64(v), 10)
	return append(dst, '}')
}
