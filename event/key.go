package event

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/cleave-dev/cleave/schema"
)

// Key returns the Kafka message key of a row: the JSON array of its encoded primary key
// values in key order, e.g. [42] or ["eu",7]. Values are canonical (see Encode), so one row
// always has one key and so one partition.
func Key(t *schema.Table, row Row) ([]byte, error) {
	vals := make([]any, len(t.PK))
	for i, c := range t.PK {
		name := t.Columns[c].Name
		v, ok := row[name]
		if !ok {
			return nil, fmt.Errorf("row of %s lacks primary key column %s", t.FullName(), name)
		}
		vals[i] = v
	}
	return MarshalKey(vals)
}

// UnmarshalKey decodes a message key into its values (json.Number or string or nil).
func UnmarshalKey(key []byte) ([]any, error) {
	dec := json.NewDecoder(bytes.NewReader(key))
	dec.UseNumber()
	var vals []any
	if err := dec.Decode(&vals); err != nil {
		return nil, fmt.Errorf("decode key %q: %w", key, err)
	}
	return vals, nil
}
