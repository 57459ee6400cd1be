package backfill

import (
	"github.com/cleave-dev/cleave/event"
	"github.com/cleave-dev/cleave/schema"
)

// encoder writes copied rows as the messages capture would write for them, an op "r"
// event each, with the event package's wire writer (event/wire.go). The rows of a chunk
// share one source object, encoded once.
type encoder struct {
	cols   *event.Columns
	img    event.Image // the row being written
	source []byte      // the encoded source object of the next rows
}

func newEncoder(def *schema.Table) *encoder {
	names := make([]string, len(def.Columns))
	for i := range def.Columns {
		names[i] = def.Columns[i].Name
	}
	return &encoder{cols: event.NewColumns(names, def.PK)}
}

// setSource sets the source object of the next rows.
func (e *encoder) setSource(s *event.Source) {
	e.source = event.AppendSource(e.source[:0], s)
}

// load takes the encoded values (event.Encode's results) of the next row to write.
func (e *encoder) load(vals []any) {
	e.img.Reset()
	for _, v := range vals {
		e.img.Add(v)
	}
}

// appendKey appends the message key of the loaded row.
func (e *encoder) appendKey(dst []byte) []byte {
	return e.cols.AppendKey(dst, &e.img)
}

// appendEvent appends the message value of the loaded row, with the json_types of its
// JSON columns when it has any (json.go).
func (e *encoder) appendEvent(dst []byte, tsMs int64, v event.Version, types map[string]event.JSONTypes) []byte {
	h := event.Head{Op: event.OpRead, TsMs: tsMs, Source: e.source, Version: v, JSONTypes: types}
	return e.cols.AppendEvent(dst, &h, nil, &e.img)
}
