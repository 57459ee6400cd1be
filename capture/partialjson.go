package capture

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
	gojson "github.com/goccy/go-json"
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
// Capture applies the whole vector to the column's value in the before image (the source
// logs full before images, binlog_row_image=FULL) and sends the full after image, as a
// full-image update would have: the same event, byte for byte. The diffs are applied as
// MySQL's apply_json_diffs does, on a document parsed from the before image's JSON text
// with every number kept as its text, and the result is written in the text form the
// rows decoder gives JSON columns. Two functions join this to the JSON decoder:
// jsonText (a diff's binary value as text) and applyJSONDiffs (the document's parse and
// rendering).

// Operations of a JSON diff (MySQL's enum_json_diff_operation).
const (
	jsonDiffReplace = 0
	jsonDiffInsert  = 1
	jsonDiffRemove  = 2
)

// jsonDiff is one change of a partial JSON update: at path, replace the value with value,
// insert value, or remove the value. value is JSON text.
type jsonDiff struct {
	op    byte
	path  string
	value string
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

// decodePartialUpdate decodes a PARTIAL_UPDATE_ROWS_EVENT from its rows at data[pos:]:
// go-mysql decodes every value, then each JSON column logged as diffs gets, in its after
// image, its before value with the diffs applied.
func decodePartialUpdate(e *replication.RowsEvent, data []byte, pos int) error {
	if err := e.DecodeData(pos, data); err != nil {
		return err
	}
	rd := rowReader{table: e.Table, unsigned: unsignedColumns(e.Table)}
	for row := 0; pos < len(data); row += 2 {
		n, err := rd.walkImage(data[pos:], e.ColumnBitmap1, false, nil)
		if err != nil {
			return err
		}
		pos += n
		if row+1 >= len(e.Rows) {
			return errShortRow
		}
		n, err = rd.walkImage(data[pos:], e.ColumnBitmap2, true, func(col int, vector []byte) error {
			diffs, err := readJSONDiffs(vector, func(bin []byte) (string, error) { return jsonText(e, col, bin) })
			if err != nil {
				return fmt.Errorf("column %d: %w", col+1, err)
			}
			if len(diffs) == 0 {
				e.Rows[row+1][col] = e.Rows[row][col] // a JSON column the statement left alone
				return nil
			}
			before, ok := e.Rows[row][col].(string)
			if !ok {
				return fmt.Errorf("column %d: %d JSON diffs for a value that is not a document (%T) in the before image", col+1, len(diffs), e.Rows[row][col])
			}
			after, err := applyJSONDiffs(before, diffs)
			if err != nil {
				return fmt.Errorf("column %d: %w", col+1, err)
			}
			e.Rows[row+1][col] = after
			return nil
		})
		if err != nil {
			return err
		}
		pos += n
	}
	return nil
}

// walkImage steps over one row image of a partial update event at the start of data and
// returns the bytes it takes; for the after image, it calls partial with the diff vector
// of every JSON column logged as diffs.
func (rd *rowReader) walkImage(data []byte, bitmap []byte, after bool, partial func(col int, vector []byte) error) (int, error) {
	pos := 0
	var partialBits []byte
	if after {
		opts, _, n := mysql.LengthEncodedInt(data)
		pos += n
		if opts&partialJSONUpdates != 0 {
			size := (int(rd.table.JsonColumnCount()) + 7) / 8
			if pos+size > len(data) {
				return 0, errShortRow
			}
			partialBits = data[pos : pos+size]
			pos += size
		}
	}
	n := int(rd.table.ColumnCount)
	present := 0
	for i := 0; i < n; i++ {
		if bitSet(bitmap, i) {
			present++
		}
	}
	size := (present + 7) / 8
	if pos+size > len(data) {
		return 0, errShortRow
	}
	nulls := data[pos : pos+size]
	pos += size
	ni, ji := 0, 0
	for i := 0; i < n; i++ {
		isJSON := rd.table.ColumnType[i] == mysql.MYSQL_TYPE_JSON
		// Every JSON column has a bit in the partial bitmap, logged or not.
		isPartial := false
		if isJSON && partialBits != nil {
			isPartial = bitSet(partialBits, ji)
			ji++
		}
		if !bitSet(bitmap, i) {
			continue
		}
		isNull := nulls[ni>>3]&(1<<(uint(ni)&7)) != 0
		ni++
		if isNull {
			continue
		}
		if isJSON {
			meta := int(rd.table.ColumnMeta[i])
			if pos+meta > len(data) {
				return 0, errShortRow
			}
			l := int(mysql.FixedLengthInt(data[pos : pos+meta]))
			if pos+meta+l > len(data) {
				return 0, errShortRow
			}
			if isPartial && partial != nil {
				if err := partial(i, data[pos+meta:pos+meta+l]); err != nil {
					return 0, err
				}
			}
			pos += meta + l
			continue
		}
		_, size, err := rd.value(data[pos:], i)
		if err != nil {
			return 0, err
		}
		pos += size
	}
	return pos, nil
}

// readJSONDiffs splits a binary diff vector (MySQL's Json_diff::write_binary, one after
// the other: the operation, the path and, but for a removal, the value, each length-encoded)
// into its diffs, their values turned into text by text.
func readJSONDiffs(b []byte, text func([]byte) (string, error)) ([]jsonDiff, error) {
	var out []jsonDiff
	lenenc := func() ([]byte, error) {
		l, isNull, n := mysql.LengthEncodedInt(b)
		if isNull || n == 0 || uint64(len(b)-n) < l {
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
		d.path = string(path)
		if d.op != jsonDiffRemove {
			bin, err := lenenc()
			if err != nil {
				return nil, err
			}
			if d.value, err = text(bin); err != nil {
				return nil, fmt.Errorf("value of the JSON diff at %s: %w", d.path, err)
			}
		}
		out = append(out, d)
	}
	return out, nil
}

// jsonText is the text of binary JSON value bin of column col of e, exactly as the rows
// decoder gives a JSON column: go-mysql decodes it as the only column of a before image,
// through a copy of e, which carries the decoder's settings.
func jsonText(e *replication.RowsEvent, col int, bin []byte) (string, error) {
	c := *e
	width := (int(e.ColumnCount) + 7) / 8
	c.ColumnBitmap1 = make([]byte, width)
	c.ColumnBitmap1[col>>3] = 1 << (uint(col) & 7)
	c.ColumnBitmap2 = make([]byte, width)
	meta := int(e.Table.ColumnMeta[col])
	img := make([]byte, 0, 1+meta+len(bin)+1)
	img = append(img, 0) // the null bitmap of one column: not NULL
	for i, l := 0, len(bin); i < meta; i, l = i+1, l>>8 {
		img = append(img, byte(l))
	}
	img = append(img, bin...)
	img = append(img, 0) // an after image without options or columns
	if err := c.DecodeData(0, img); err != nil {
		return "", err
	}
	if len(c.Rows) == 0 {
		return "", errors.New("the JSON value did not decode")
	}
	switch v := c.Rows[0][col].(type) {
	case string:
		return v, nil
	case []byte:
		return string(v), nil
	default:
		return "", fmt.Errorf("the JSON value decoded as %T", v)
	}
}

// applyJSONDiffs returns the JSON document before with diffs applied in order, as MySQL's
// apply_json_diffs does.
func applyJSONDiffs(before string, diffs []jsonDiff) (string, error) {
	doc, err := parseJSONValue(before)
	if err != nil {
		return "", fmt.Errorf("the before image's JSON: %w", err)
	}
	for _, d := range diffs {
		legs, err := parseJSONPath(d.path)
		if err != nil {
			return "", fmt.Errorf("JSON diff %s: %w", d, err)
		}
		var value any
		if d.op != jsonDiffRemove {
			if value, err = parseJSONValue(d.value); err != nil {
				return "", fmt.Errorf("JSON diff %s: value %w", d, err)
			}
		}
		if doc, err = applyJSONDiff(doc, d.op, legs, value); err != nil {
			return "", fmt.Errorf("JSON diff %s does not apply to the before image: %w", d, err)
		}
	}
	// Written as the rows decoder writes JSON columns: go-mysql renders them with
	// goccy/go-json, whose key order (by quoted key) is not encoding/json's.
	b, err := gojson.Marshal(doc)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// parseJSONValue parses JSON text into a document: map[string]any, []any, json.Number,
// string, bool or nil.
func parseJSONValue(s string) (any, error) {
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	if d.More() {
		return nil, errors.New("text after the JSON value")
	}
	return v, nil
}

// jsonLeg is one step of a JSON path: an object member, or an array cell counted from
// the start or (fromEnd) from the last element.
type jsonLeg struct {
	member  string
	isArray bool
	index   int
	fromEnd bool
}

// parseJSONPath parses a path as MySQL logs it in a diff: "$" and legs, each .name,
// ."quoted name", [n], [last] or [last-n].
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

// position is the leg's index in an array of n elements; negative when [last-k] lies
// before the start.
func (l jsonLeg) position(n int) int {
	if l.fromEnd {
		return n - 1 - l.index
	}
	return l.index
}

// applyJSONDiff applies one diff to doc and returns the new document.
func applyJSONDiff(doc any, op byte, legs []jsonLeg, value any) (any, error) {
	if len(legs) == 0 {
		if op != jsonDiffReplace {
			return nil, errors.New("only a replacement can apply to the whole document")
		}
		return value, nil
	}
	// The container that holds the value the last leg names. An array leg on a value
	// that is not an array names that value itself at index 0 (MySQL's auto-wrapping).
	parentPath, last := legs[:len(legs)-1], legs[len(legs)-1]
	return rewrite(doc, parentPath, func(parent any) (any, error) {
		switch p := parent.(type) {
		case map[string]any:
			if last.isArray {
				if op == jsonDiffReplace && last.position(1) == 0 {
					return value, nil
				}
				return nil, fmt.Errorf("array index on an object")
			}
			_, exists := p[last.member]
			switch op {
			case jsonDiffReplace:
				if !exists {
					return nil, fmt.Errorf("no member %q to replace", last.member)
				}
				p[last.member] = value
			case jsonDiffInsert:
				p[last.member] = value
			case jsonDiffRemove:
				if !exists {
					return nil, fmt.Errorf("no member %q to remove", last.member)
				}
				delete(p, last.member)
			}
			return p, nil
		case []any:
			if !last.isArray {
				return nil, fmt.Errorf("member %q of an array", last.member)
			}
			i := last.position(len(p))
			switch op {
			case jsonDiffReplace:
				if i < 0 || i >= len(p) {
					return nil, fmt.Errorf("no element %d of %d to replace", i, len(p))
				}
				p[i] = value
				return p, nil
			case jsonDiffInsert:
				i = max(0, min(i, len(p)))
				p = append(p, nil)
				copy(p[i+1:], p[i:])
				p[i] = value
				return p, nil
			default:
				if i < 0 || i >= len(p) {
					return nil, fmt.Errorf("no element %d of %d to remove", i, len(p))
				}
				return append(p[:i], p[i+1:]...), nil
			}
		default:
			if last.isArray && op == jsonDiffReplace && last.position(1) == 0 {
				return value, nil
			}
			return nil, fmt.Errorf("a path through a scalar")
		}
	})
}

// rewrite replaces the value at path in doc by f of it and returns the new document.
func rewrite(doc any, path []jsonLeg, f func(any) (any, error)) (any, error) {
	if len(path) == 0 {
		return f(doc)
	}
	leg, rest := path[0], path[1:]
	switch d := doc.(type) {
	case map[string]any:
		if leg.isArray {
			if leg.position(1) == 0 {
				return rewrite(doc, rest, f)
			}
			return nil, fmt.Errorf("array index on an object")
		}
		v, ok := d[leg.member]
		if !ok {
			return nil, fmt.Errorf("no member %q", leg.member)
		}
		nv, err := rewrite(v, rest, f)
		if err != nil {
			return nil, err
		}
		d[leg.member] = nv
		return d, nil
	case []any:
		if !leg.isArray {
			return nil, fmt.Errorf("member %q of an array", leg.member)
		}
		i := leg.position(len(d))
		if i < 0 || i >= len(d) {
			return nil, fmt.Errorf("no element %d of %d", i, len(d))
		}
		nv, err := rewrite(d[i], rest, f)
		if err != nil {
			return nil, err
		}
		d[i] = nv
		return d, nil
	default:
		if leg.isArray && leg.position(1) == 0 {
			return rewrite(doc, rest, f)
		}
		return nil, fmt.Errorf("a path through a scalar")
	}
}
