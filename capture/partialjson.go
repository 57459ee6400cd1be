package capture

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
)

// Design note: partial JSON updates.
//
// A MySQL session with binlog_row_value_options=PARTIAL_JSON logs an UPDATE that changes
// a JSON column with JSON_SET, JSON_REPLACE or JSON_REMOVE as a PARTIAL_UPDATE_ROWS_EVENT
// whose after image holds, for that column, only the changes: a vector of diffs (replace,
// insert or remove a value at a path), in the order the statement made them. go-mysql
// names no such event type and keeps the first diff of a vector only; a column the
// statement left alone is an empty vector, which it decodes as an empty document.
//
// Capture decodes these events with its own row reader (rowsdecode.go), so that every
// value reads as in a plain update, and gives each JSON column logged as diffs its value
// in the before image (the source logs full before images, binlog_row_image=FULL) with the
// whole vector applied: the before image's binary document and each diff's binary value
// are decoded into trees (json.go), the diffs change the tree as MySQL's apply_json_diffs
// changes its DOM, and the result is written by rowImage.appendJSONDoc, the writer of full
// images. A partial update thus gives the event a full-image update gives, byte for byte,
// json_types included.

// Operations of a JSON diff (MySQL's enum_json_diff_operation).
const (
	jsonDiffReplace = 0
	jsonDiffInsert  = 1
	jsonDiffRemove  = 2
)

// jsonDiff is one change of a partial JSON update: at path, replace the value with value,
// insert value, or remove the value (value nil).
type jsonDiff struct {
	op    byte
	path  string
	value *jsonNode
}

func (d jsonDiff) String() string {
	switch d.op {
	case jsonDiffReplace:
		return "replace " + d.path
	case jsonDiffInsert:
		return "insert " + d.path
	}
	return "remove " + d.path
}

// binlogRowValueOptions' bit for partial JSON updates (MySQL's PARTIAL_JSON_UPDATES).
const partialJSONUpdates = 1

// decodePartialUpdate decodes the rows of a PARTIAL_UPDATE_ROWS_EVENT at data[pos:]: pairs
// of a before image and an after image, the latter preceded by its value options and, with
// partial JSON updates, a bitmap of the JSON columns logged as diffs. Each such column's
// after value becomes its before value with the diffs applied, a *jsonNode.
func decodePartialUpdate(e *replication.RowsEvent, data []byte, pos int) error {
	for i, t := range e.Table.ColumnType {
		if !fastDecodableType(t) {
			return fmt.Errorf("partial JSON update of %s.%s, whose column %d has binlog type %d, which capture cannot decode in such an event; log full JSON documents (binlog_row_value_options='')",
				e.Table.Schema, e.Table.Table, i+1, t)
		}
	}
	rd := rowReader{table: e.Table, unsigned: unsignedColumns(e.Table)}
	e.Rows = e.Rows[:0]
	e.SkippedColumns = e.SkippedColumns[:0]
	for pos < len(data) {
		n, err := rd.image(e, data[pos:], e.ColumnBitmap1)
		if err != nil {
			return err
		}
		pos += n
		partial, n, err := rd.valueOptions(data[pos:])
		if err != nil {
			return err
		}
		pos += n
		// The row reader reads a diff vector as a JSON value: both are a length of the
		// column's length size, then the bytes.
		if n, err = rd.image(e, data[pos:], e.ColumnBitmap2); err != nil {
			return err
		}
		pos += n
		if partial != nil {
			before, after := e.Rows[len(e.Rows)-2], e.Rows[len(e.Rows)-1]
			if err := rd.applyDiffs(before, after, partial); err != nil {
				return err
			}
		}
	}
	return nil
}

// valueOptions reads the value options that precede an after image and returns the
// partial JSON bitmap (one bit per JSON column of the table, in column order), nil when
// the image holds whole values only.
func (rd *rowReader) valueOptions(data []byte) ([]byte, int, error) {
	opts, n, ok := lengthEncodedInt(data)
	if !ok {
		return nil, 0, errShortRow
	}
	if opts&partialJSONUpdates == 0 {
		return nil, n, nil
	}
	size := (int(rd.table.JsonColumnCount()) + 7) / 8
	if n+size > len(data) {
		return nil, 0, errShortRow
	}
	return data[n : n+size], n + size, nil
}

// applyDiffs replaces, in after, the diff vector of every JSON column whose bit is set in
// partial by the column's value in before with the diffs applied.
func (rd *rowReader) applyDiffs(before, after []any, partial []byte) error {
	ji := 0
	for col, t := range rd.table.ColumnType {
		if t != mysql.MYSQL_TYPE_JSON {
			continue
		}
		// Every JSON column has a bit, whether the image holds it or not.
		isPartial := bitSet(partial, ji)
		ji++
		vector, ok := after[col].(mysqlJSON)
		if !isPartial || !ok {
			continue // a whole document, or NULL
		}
		diffs, err := readJSONDiffs(vector)
		if err != nil {
			return fmt.Errorf("column %d: %w", col+1, err)
		}
		if len(diffs) == 0 {
			after[col] = before[col] // a JSON column the statement left alone
			continue
		}
		bin, ok := before[col].(mysqlJSON)
		if !ok {
			return fmt.Errorf("column %d: %d JSON diffs for a value that is not a document (%T) in the before image", col+1, len(diffs), before[col])
		}
		doc, err := parseJSONBinary(bin)
		if err != nil {
			return fmt.Errorf("column %d: the before image's document: %w", col+1, err)
		}
		if err := doc.applyDiffs(diffs); err != nil {
			return fmt.Errorf("column %d: %w", col+1, err)
		}
		after[col] = doc
	}
	return nil
}

// readJSONDiffs splits a binary diff vector (MySQL's Json_diff::write_binary, one after
// the other: the operation, the path and, but for a removal, the binary JSON value, each
// length-encoded) into its diffs.
func readJSONDiffs(b []byte) ([]jsonDiff, error) {
	var out []jsonDiff
	lenenc := func() ([]byte, error) {
		l, n, ok := lengthEncodedInt(b)
		if !ok || uint64(len(b)-n) < l {
			return nil, errors.New("JSON diff vector ends inside a diff")
		}
		v := b[n : n+int(l)]
		b = b[n+int(l):]
		return v, nil
	}
	for len(b) > 0 {
		d := jsonDiff{op: b[0]}
		if d.op > jsonDiffRemove {
			return nil, fmt.Errorf("JSON diff of unknown operation %d", d.op)
		}
		b = b[1:]
		path, err := lenenc()
		if err != nil {
			return nil, err
		}
		d.path = bytesString(path)
		if d.op != jsonDiffRemove {
			bin, err := lenenc()
			if err != nil {
				return nil, err
			}
			if d.value, err = parseJSONBinary(bin); err != nil {
				return nil, fmt.Errorf("value of the JSON diff at %s: %w", d.path, err)
			}
		}
		out = append(out, d)
	}
	return out, nil
}

// lengthEncodedInt reads a length-encoded integer (the client protocol's) at the start of
// b: its value and size, ok false when b ends inside it or it is the NULL marker.
// go-mysql's LengthEncodedInt indexes past a short b.
func lengthEncodedInt(b []byte) (v uint64, n int, ok bool) {
	if len(b) == 0 {
		return 0, 0, false
	}
	switch b[0] {
	case 0xfb:
		return 0, 1, false
	case 0xfc:
		n = 3
	case 0xfd:
		n = 4
	case 0xfe, 0xff: // MySQL's net_field_length reads 8 bytes after either
		n = 9
	default:
		return uint64(b[0]), 1, true
	}
	if len(b) < n {
		return 0, 0, false
	}
	for i := n - 1; i >= 1; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v, n, true
}

// applyDiffs applies diffs to document n in order, as MySQL's apply_json_diffs does: a
// diff that MySQL would reject (a path that is not there, a member inserted twice, the
// whole document) is an error, since MySQL's own replica would stop on it too.
func (n *jsonNode) applyDiffs(diffs []jsonDiff) error {
	for _, d := range diffs {
		legs, err := parseJSONPath(d.path)
		if err != nil {
			return fmt.Errorf("JSON diff %s: %w", d, err)
		}
		if err := n.applyDiff(d.op, legs, d.value); err != nil {
			return fmt.Errorf("JSON diff %s does not apply to the before image: %w", d, err)
		}
	}
	return nil
}

// applyDiff applies one diff, as MySQL's apply_json_diff: the path is followed exactly,
// without the auto-wrapping of JSON_SET's paths (MySQL logs the path with it removed).
func (n *jsonNode) applyDiff(op byte, legs []jsonLeg, value *jsonNode) error {
	if len(legs) == 0 {
		// MySQL logs a change of the whole document as the new document, never as a diff.
		return errors.New("a diff of the whole document")
	}
	if op == jsonDiffReplace {
		old := n.seek(legs)
		if old == nil {
			return errors.New("no value to replace")
		}
		*old = *value
		return nil
	}
	parent, last := n.seek(legs[:len(legs)-1]), legs[len(legs)-1]
	if parent == nil {
		return errors.New("no container at the path")
	}
	switch {
	case parent.kind == jsonObject && !last.isArray:
		i, exists := parent.member(last.member)
		if op == jsonDiffInsert {
			if exists {
				return fmt.Errorf("member %q to insert exists", last.member)
			}
			parent.setMember(last.member, *value)
			return nil
		}
		if !exists {
			return fmt.Errorf("no member %q to remove", last.member)
		}
		parent.keys = slices.Delete(parent.keys, i, i+1)
		parent.elems = slices.Delete(parent.elems, i, i+1)
		return nil
	case parent.kind == jsonArray && last.isArray:
		i, within := last.cell(len(parent.elems))
		if op == jsonDiffInsert {
			// Past the end appends, before the start prepends.
			parent.elems = slices.Insert(parent.elems, i, *value)
			return nil
		}
		if !within {
			return fmt.Errorf("no element %s of %d to remove", last, len(parent.elems))
		}
		parent.elems = slices.Delete(parent.elems, i, i+1)
		return nil
	}
	if last.isArray {
		return fmt.Errorf("%s of a value that is not an array", last)
	}
	return fmt.Errorf("%s of a value that is not an object", last)
}

// seek returns the value at the end of legs in n, followed exactly (MySQL's
// seek_exact_path), or nil.
func (n *jsonNode) seek(legs []jsonLeg) *jsonNode {
	for _, leg := range legs {
		switch {
		case n.kind == jsonArray && leg.isArray:
			i, within := leg.cell(len(n.elems))
			if !within {
				return nil
			}
			n = &n.elems[i]
		case n.kind == jsonObject && !leg.isArray:
			i, ok := n.member(leg.member)
			if !ok {
				return nil
			}
			n = &n.elems[i]
		default:
			return nil
		}
	}
	return n
}

// jsonLeg is one step of a JSON path: an object member, or an array cell counted from
// the start or (fromEnd) from the last element.
type jsonLeg struct {
	member  string
	isArray bool
	index   int
	fromEnd bool
}

func (l jsonLeg) String() string {
	switch {
	case !l.isArray:
		return "member " + strconv.Quote(l.member)
	case l.fromEnd && l.index == 0:
		return "[last]"
	case l.fromEnd:
		return "[last-" + strconv.Itoa(l.index) + "]"
	}
	return "[" + strconv.Itoa(l.index) + "]"
}

// cell is the position the leg names in an array of n elements, as MySQL's
// Json_array_index: past the end is n, before the start ([last-k], k >= n) is 0; within
// says whether it is an element.
func (l jsonLeg) cell(n int) (pos int, within bool) {
	if l.fromEnd {
		if l.index < n {
			return n - 1 - l.index, true
		}
		return 0, false
	}
	return min(l.index, n), l.index < n
}

// parseJSONPath parses a path as MySQL logs it in a diff (Json_path::to_string): "$" and
// legs, each .name, ."quoted name", [n], [last] or [last-n].
func parseJSONPath(p string) ([]jsonLeg, error) {
	if !strings.HasPrefix(p, "$") {
		return nil, fmt.Errorf("path %q does not start with $", p)
	}
	rest := strings.TrimLeft(p[1:], " ")
	var legs []jsonLeg
	for rest != "" {
		switch rest[0] {
		case '.':
			rest = strings.TrimLeft(rest[1:], " ")
			if strings.HasPrefix(rest, `"`) {
				end := 1
				for end < len(rest) && rest[end] != '"' {
					if rest[end] == '\\' {
						end++
					}
					end++
				}
				if end >= len(rest) {
					return nil, fmt.Errorf("path %q: unterminated member name", p)
				}
				// MySQL quotes a name as JSON quotes a string.
				var name string
				if err := json.Unmarshal([]byte(rest[:end+1]), &name); err != nil {
					return nil, fmt.Errorf("path %q: member name %s: %w", p, rest[:end+1], err)
				}
				legs = append(legs, jsonLeg{member: name})
				rest = rest[end+1:]
				continue
			}
			end := strings.IndexAny(rest, ".[ ")
			if end < 0 {
				end = len(rest)
			}
			if end == 0 || rest[:end] == "*" {
				return nil, fmt.Errorf("path %q: not a single member", p)
			}
			legs = append(legs, jsonLeg{member: rest[:end]})
			rest = rest[end:]
		case '[':
			end := strings.IndexByte(rest, ']')
			if end < 0 {
				return nil, fmt.Errorf("path %q: unterminated array index", p)
			}
			leg, err := parseArrayIndex(strings.TrimSpace(rest[1:end]))
			if err != nil {
				return nil, fmt.Errorf("path %q: %w", p, err)
			}
			legs = append(legs, leg)
			rest = rest[end+1:]
		case ' ':
			rest = rest[1:]
		default:
			return nil, fmt.Errorf("path %q: unexpected %q", p, rest[0])
		}
	}
	return legs, nil
}

func parseArrayIndex(s string) (jsonLeg, error) {
	leg := jsonLeg{isArray: true}
	if strings.HasPrefix(s, "last") {
		leg.fromEnd = true
		s = strings.TrimSpace(s[len("last"):])
		if s == "" {
			return leg, nil
		}
		if s[0] != '-' {
			return leg, fmt.Errorf("array index [last%s] is not a single cell", s)
		}
		s = strings.TrimSpace(s[1:])
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return leg, fmt.Errorf("array index %q is not a single cell", s)
	}
	leg.index = n
	return leg, nil
}
