// Package event owns cleave's change event: the Debezium-style envelope that travels from
// capture through Kafka to the sinks, the encoding of every column value by its schema.Kind,
// the canonical encoding of a primary key used as the Kafka message key, and the version
// that orders the changes of one row. It also owns the wire format, written and read in one
// place: every writer (capture's stream, the backfill, Marshal) goes through wire.go and
// every reader through decode.go, and wire_test.go holds them all to one definition.
// Capture builds events at the edge of the binlog reader; nothing downstream sees
// go-mysql's types.
package event

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Op is the kind of change, as Debezium names them.
type Op string

// The operations.
const (
	OpCreate Op = "c" // a row inserted
	OpUpdate Op = "u" // a row updated in place (primary key unchanged)
	OpDelete Op = "d" // a row deleted
	OpRead   Op = "r" // a row copied by the backfill
	OpDDL    Op = "s" // a schema change on the table, applied by the sinks to every shard
	// OpHeartbeat carries no row: capture sends one to every partition of every table topic
	// so that sinks and the checker know the stream has passed a source position even when
	// the table is idle. Its Version is at or above every earlier event of the partition.
	OpHeartbeat Op = "h"
)

// Row maps column names to encoded values. A value is nil (SQL NULL), a json.Number or a
// string; see Encode for which kind uses which.
type Row map[string]any

// Source says where in the source's binlog an event comes from.
type Source struct {
	Connector string `json:"connector"`
	Name      string `json:"name"` // the topic prefix
	DB        string `json:"db"`
	Table     string `json:"table"`
	ServerID  uint32 `json:"server_id"`
	File      string `json:"file"`
	Pos       uint64 `json:"pos"`
	GTID      string `json:"gtid,omitempty"`
	TsMs      int64  `json:"ts_ms"` // commit time on the source, milliseconds since the epoch
	Row       int    `json:"row"`   // index of the row inside its binlog rows event
	Snapshot  bool   `json:"snapshot,omitempty"`
}

// Event is one row change (or one schema change) of one table.
type Event struct {
	Before  Row     `json:"before"`
	After   Row     `json:"after"`
	Op      Op      `json:"op"`
	TsMs    int64   `json:"ts_ms"` // when capture produced the event
	Source  Source  `json:"source"`
	Version Version `json:"version"`
	// DDL is the statement of a schema-change event (Op == OpDDL).
	DDL string `json:"ddl,omitempty"`
	// JSONTypes holds, by column, the scalars of After's JSON documents whose type their
	// text does not tell (see json.go); nil when there are none.
	JSONTypes map[string]JSONTypes `json:"json_types,omitempty"`
}

// unmarshalReference decodes a message value with encoding/json: the definition of what a
// message means, which the fast decoder (decode.go) defers to for any input outside the
// shapes it knows.
func unmarshalReference(data []byte) (*Event, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var e Event
	if err := dec.Decode(&e); err != nil {
		return nil, fmt.Errorf("decode change event: %w", err)
	}
	if err := e.check(); err != nil {
		return nil, err
	}
	return &e, nil
}

// check refuses an event whose op lacks what it needs.
func (e *Event) check() error {
	switch e.Op {
	case OpCreate, OpUpdate, OpRead:
		if e.After == nil {
			return fmt.Errorf("decode change event: op %q without after", e.Op)
		}
	case OpDelete:
		if e.Before == nil {
			return fmt.Errorf("decode change event: op d without before")
		}
	case OpHeartbeat:
	case OpDDL:
		if e.DDL == "" {
			return fmt.Errorf("decode change event: op s without ddl")
		}
	default:
		return fmt.Errorf("decode change event: unknown op %q", e.Op)
	}
	return nil
}

// Image returns the row image that describes the row after the change: After, or Before for
// a delete.
func (e *Event) Image() Row {
	if e.Op == OpDelete {
		return e.Before
	}
	return e.After
}
