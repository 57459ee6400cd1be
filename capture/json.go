package capture

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/go-mysql-org/go-mysql/mysql"

	"github.com/cleave-dev/cleave/event"
	"github.com/cleave-dev/cleave/schema"
)

// Design note: MySQL's binary JSON.
//
// A MySQL JSON column arrives in the binlog in MySQL's binary form (sql-common/json_binary.cc),
// whose scalars carry their SQL types: integers of 16, 32 and 64 bits, signed or not,
// doubles, strings, and "opaque" values of any other SQL type (DECIMAL, DATE, TIME,
// DATETIME, TIMESTAMP, binary strings...). go-mysql's decoder renders opaque scalars as
// strings and numbers through Go's encoding, so capture decodes the binary itself:
// parseJSONBinary builds a tree (jsonNode) whose scalars keep the exact text MySQL renders
// for them and their type, appendText renders the tree exactly as MySQL's
// Json_wrapper::to_string does (so the event's text equals SELECT CAST(j AS CHAR) on the
// source), and types lists the scalars whose type the text does not tell (event/json.go),
// for the event's json_types.
//
// The layout, after a type byte:
//
//	object, array   element count and byte size (2 bytes each in the small form, 4 in the
//	                large), then for objects one key entry (offset, 2-byte length) per
//	                member, then one value entry (type byte, then offset, or the value
//	                itself for small enough scalars) per element, then keys and values.
//	                Offsets count from the start of the container; keys are stored in
//	                MySQL's order (shorter first, then by bytes).
//	literal         1 byte: 0 null, 1 true, 2 false
//	int16 ... uint64, double   little endian
//	string          length (7 bits a byte, low first, high bit = more), then UTF-8
//	opaque          the SQL field type (1 byte), length as for strings, then the value in
//	                that type's binary form: DECIMAL as precision, scale and the DECIMAL
//	                column encoding; temporal values as a packed 8-byte integer.
//
// The tree is also what a change to a document applies to: a partial JSON update
// (binlog_row_value_options=PARTIAL_JSON) is a list of replace/insert/remove operations on
// paths of the before image, whose values are binary JSON too. partialjson.go decodes the
// before image and each value with parseJSONBinary, changes the tree (setMember keeps
// MySQL's key order; arrays are plain slices of elems) and hands the tree on in the row in
// place of the column's value; tableDef.image writes it with rowImage.appendJSONDoc, which
// renders it (appendText) and records its types as the decoder of full images does.

// mysqlJSON is a JSON column value as the binlog holds it, MySQL's binary form, sharing
// the event's memory. rowReader returns it for MYSQL_TYPE_JSON columns.
type mysqlJSON []byte

// jsonColumn reads a JSON column value: a little-endian length of lenBytes bytes, then the
// binary document.
func jsonColumn(data []byte, lenBytes int) (any, int, error) {
	if lenBytes < 1 || lenBytes > 4 {
		return nil, 0, decodeError("invalid JSON length size " + strconv.Itoa(lenBytes))
	}
	if len(data) < lenBytes {
		return nil, 0, errShortRow
	}
	l := int(mysql.FixedLengthInt(data[:lenBytes]))
	if l < 0 || lenBytes+l > len(data) {
		return nil, 0, errShortRow
	}
	return mysqlJSON(data[lenBytes : lenBytes+l]), lenBytes + l, nil
}

// jsonKind is the type of a node of a JSON document.
type jsonKind uint8

const (
	jsonNull jsonKind = iota
	jsonTrue
	jsonFalse
	jsonObject
	jsonArray
	jsonString
	jsonInt      // INTEGER
	jsonUint     // UNSIGNED INTEGER
	jsonDouble   // DOUBLE
	jsonDecimal  // DECIMAL
	jsonDate     // DATE
	jsonTime     // TIME
	jsonDateTime // DATETIME
	jsonTimestamp
	jsonOpaque // any other SQL type: binary strings, BIT, ...
)

// jsonNode is one value of a decoded document.
type jsonNode struct {
	kind jsonKind
	// text is a scalar as MySQL renders it, before quoting: a number's digits, a string's
	// characters, a temporal value's text ("2024-02-29 23:59:59.000000"), an opaque value's
	// "base64:type<field>:<base64>" form. It may share the decoded data's memory.
	text string
	// field is an opaque value's SQL field type (15 for binary strings, 252 BLOB, 16 BIT).
	field byte
	// keys are an object's member names in MySQL's order (jsonKeyLess); elems are its
	// values (keys[i] names elems[i]), or an array's elements.
	keys  []string
	elems []jsonNode
}

// jsonError is a binary JSON document that cannot be decoded.
type jsonError string

func (e jsonError) Error() string { return "binary JSON: " + string(e) }

// Binary type bytes (json_binary.h).
const (
	jsonbSmallObject = 0x00
	jsonbLargeObject = 0x01
	jsonbSmallArray  = 0x02
	jsonbLargeArray  = 0x03
	jsonbLiteral     = 0x04
	jsonbInt16       = 0x05
	jsonbUint16      = 0x06
	jsonbInt32       = 0x07
	jsonbUint32      = 0x08
	jsonbInt64       = 0x09
	jsonbUint64      = 0x0a
	jsonbDouble      = 0x0b
	jsonbString      = 0x0c
	jsonbOpaque      = 0x0f
)

// maxJSONDepth bounds nesting as MySQL does; deeper binary data is corrupt, not a stack
// to exhaust.
const maxJSONDepth = 100

// parseJSONBinary decodes a binary document. An empty one is JSON null, as MySQL reads it
// (a NOT NULL column filled by INSERT IGNORE or a lax sql_mode).
func parseJSONBinary(b []byte) (*jsonNode, error) {
	n := &jsonNode{}
	if len(b) == 0 {
		return n, nil
	}
	// Every value of a document takes at least one byte of its own, so a document has
	// fewer values than bytes; corrupt offsets that point many entries at one container
	// would otherwise make decoding exponential in the depth.
	budget := len(b)
	if err := decodeJSONValue(n, b[0], b[1:], 0, &budget); err != nil {
		return nil, err
	}
	return n, nil
}

func decodeJSONValue(n *jsonNode, typ byte, data []byte, depth int, budget *int) error {
	if *budget--; *budget < 0 {
		return jsonError("more values than bytes: entries overlap")
	}
	switch typ {
	case jsonbSmallObject, jsonbLargeObject, jsonbSmallArray, jsonbLargeArray:
		if depth >= maxJSONDepth {
			return jsonError("nested deeper than 100 levels")
		}
		return decodeJSONContainer(n, typ, data, depth, budget)
	case jsonbLiteral:
		if len(data) < 1 {
			return jsonError("literal cut short")
		}
		switch data[0] {
		case 0:
			n.kind = jsonNull
		case 1:
			n.kind = jsonTrue
		case 2:
			n.kind = jsonFalse
		default:
			return jsonError("unknown literal " + strconv.Itoa(int(data[0])))
		}
		return nil
	case jsonbInt16, jsonbUint16, jsonbInt32, jsonbUint32, jsonbInt64, jsonbUint64, jsonbDouble:
		size := 8
		switch typ {
		case jsonbInt16, jsonbUint16:
			size = 2
		case jsonbInt32, jsonbUint32:
			size = 4
		}
		if len(data) < size {
			return jsonError("number cut short")
		}
		var u uint64
		for i := size - 1; i >= 0; i-- {
			u = u<<8 | uint64(data[i])
		}
		switch typ {
		case jsonbInt16:
			n.kind, n.text = jsonInt, strconv.FormatInt(int64(int16(u)), 10)
		case jsonbInt32:
			n.kind, n.text = jsonInt, strconv.FormatInt(int64(int32(u)), 10)
		case jsonbInt64:
			n.kind, n.text = jsonInt, strconv.FormatInt(int64(u), 10)
		case jsonbUint16, jsonbUint32, jsonbUint64:
			n.kind, n.text = jsonUint, strconv.FormatUint(u, 10)
		case jsonbDouble:
			n.kind, n.text = jsonDouble, string(appendMySQLDouble(nil, math.Float64frombits(u)))
		}
		return nil
	case jsonbString:
		s, err := jsonVarData(data)
		if err != nil {
			return err
		}
		n.kind, n.text = jsonString, bytesString(s)
		return nil
	case jsonbOpaque:
		if len(data) < 1 {
			return jsonError("opaque value cut short")
		}
		v, err := jsonVarData(data[1:])
		if err != nil {
			return err
		}
		return decodeJSONOpaque(n, data[0], v)
	}
	return jsonError("unknown value type " + strconv.Itoa(int(typ)))
}

// jsonVarData reads a length-prefixed byte string.
func jsonVarData(data []byte) ([]byte, error) {
	var l uint64
	for i := 0; i < 5; i++ {
		if i >= len(data) {
			return nil, jsonError("length cut short")
		}
		l |= uint64(data[i]&0x7f) << (7 * i)
		if data[i]&0x80 == 0 {
			if l > uint64(len(data)-i-1) {
				return nil, jsonError("data shorter than its length")
			}
			return data[i+1 : i+1+int(l)], nil
		}
	}
	return nil, jsonError("length longer than 5 bytes")
}

func decodeJSONContainer(n *jsonNode, typ byte, data []byte, depth int, budget *int) error {
	large := typ == jsonbLargeObject || typ == jsonbLargeArray
	object := typ == jsonbSmallObject || typ == jsonbLargeObject
	offSize := 2
	if large {
		offSize = 4
	}
	word := func(b []byte) int {
		if large {
			return int(binary.LittleEndian.Uint32(b))
		}
		return int(binary.LittleEndian.Uint16(b))
	}
	if len(data) < 2*offSize {
		return jsonError("container header cut short")
	}
	count, size := word(data), word(data[offSize:])
	if size > len(data) || size < 2*offSize {
		return jsonError("container size " + strconv.Itoa(size) + " outside its " + strconv.Itoa(len(data)) + " bytes")
	}
	data = data[:size]
	keyEntry, valueEntry := offSize+2, 1+offSize
	header := 2 * offSize
	if object {
		header += count * keyEntry
	}
	if count < 0 || count > size || header+count*valueEntry > size {
		return jsonError("container of " + strconv.Itoa(count) + " elements in " + strconv.Itoa(size) + " bytes")
	}
	if object {
		n.kind = jsonObject
		n.keys = make([]string, count)
		for i := range count {
			e := 2*offSize + i*keyEntry
			off, l := word(data[e:]), int(binary.LittleEndian.Uint16(data[e+offSize:]))
			if off < header || off+l > size {
				return jsonError("key outside its object")
			}
			n.keys[i] = bytesString(data[off : off+l])
		}
	} else {
		n.kind = jsonArray
	}
	n.elems = make([]jsonNode, count)
	for i := range count {
		e := header + i*valueEntry
		t := data[e]
		inline := t == jsonbLiteral || t == jsonbInt16 || t == jsonbUint16 || (large && (t == jsonbInt32 || t == jsonbUint32))
		var v []byte
		if inline {
			v = data[e+1 : e+valueEntry]
		} else {
			off := word(data[e+1:])
			if off < header || off >= size {
				return jsonError("value outside its container")
			}
			v = data[off:]
		}
		if err := decodeJSONValue(&n.elems[i], t, v, depth+1, budget); err != nil {
			return err
		}
	}
	return nil
}

func decodeJSONOpaque(n *jsonNode, field byte, v []byte) error {
	switch field {
	case mysql.MYSQL_TYPE_NEWDECIMAL:
		if len(v) < 2 {
			return jsonError("DECIMAL cut short")
		}
		precision, scale := int(v[0]), int(v[1])
		// The precision is the expression's, which may exceed a column's 65 (a negative
		// DECIMAL(65,30) literal has 66).
		if precision < 1 || scale > precision {
			return jsonError("DECIMAL(" + strconv.Itoa(precision) + "," + strconv.Itoa(scale) + ")")
		}
		text, _, err := decimalText(v[2:], precision, scale)
		if err != nil {
			return jsonError("DECIMAL cut short")
		}
		n.kind, n.text = jsonDecimal, text.(string)
		return nil
	case mysql.MYSQL_TYPE_DATE, mysql.MYSQL_TYPE_DATETIME, mysql.MYSQL_TYPE_TIMESTAMP, mysql.MYSQL_TYPE_TIME:
		if len(v) < 8 {
			return jsonError("temporal value cut short")
		}
		packed := int64(binary.LittleEndian.Uint64(v))
		switch field {
		case mysql.MYSQL_TYPE_TIME:
			n.kind, n.text = jsonTime, packedTimeText(packed)
		case mysql.MYSQL_TYPE_DATE:
			n.kind, n.text = jsonDate, packedDatetimeText(packed, true)
		case mysql.MYSQL_TYPE_DATETIME:
			n.kind, n.text = jsonDateTime, packedDatetimeText(packed, false)
		default:
			n.kind, n.text = jsonTimestamp, packedDatetimeText(packed, false)
		}
		return nil
	case mysql.MYSQL_TYPE_VAR_STRING:
		// MySQL prints these as plain strings (wrapper_to_string): a string is what they are.
		n.kind, n.text = jsonString, bytesString(v)
		return nil
	}
	n.kind, n.field = jsonOpaque, field
	n.text = opaqueText(field, v)
	return nil
}

// packedDatetimeText renders a packed DATETIME (or DATE) as my_TIME_to_str does with 6
// fraction digits, which is how MySQL prints every temporal JSON value.
func packedDatetimeText(packed int64, date bool) string {
	if packed < 0 {
		packed = -packed
	}
	frac := packed % (1 << 24)
	ymdhms := packed >> 24
	ymd, hms := ymdhms>>17, ymdhms%(1<<17)
	ym := ymd >> 5
	b := make([]byte, 0, 26)
	b = appendPadded(b, int(ym/13), 4)
	b = append(b, '-')
	b = appendPadded(b, int(ym%13), 2)
	b = append(b, '-')
	b = appendPadded(b, int(ymd%(1<<5)), 2)
	if date {
		return bytesString(b)
	}
	b = append(b, ' ')
	b = appendPadded(b, int(hms>>12), 2)
	b = append(b, ':')
	b = appendPadded(b, int((hms>>6)%(1<<6)), 2)
	b = append(b, ':')
	b = appendPadded(b, int(hms%(1<<6)), 2)
	b = append(b, '.')
	b = appendPadded(b, int(frac), 6)
	return bytesString(b)
}

// packedTimeText renders a packed TIME as my_TIME_to_str does with 6 fraction digits.
func packedTimeText(packed int64) string {
	b := make([]byte, 0, 18)
	if packed < 0 {
		packed = -packed
		b = append(b, '-')
	}
	frac := packed % (1 << 24)
	hms := packed >> 24
	b = appendPadded(b, int((hms>>12)%(1<<10)), 2)
	b = append(b, ':')
	b = appendPadded(b, int((hms>>6)%(1<<6)), 2)
	b = append(b, ':')
	b = appendPadded(b, int(hms%(1<<6)), 2)
	b = append(b, '.')
	b = appendPadded(b, int(frac), 6)
	return bytesString(b)
}

// opaqueText is MySQL's text of an opaque value: base64:type<field>:<base64>, the base64
// broken by a newline after every 76 characters as MySQL's base64_encode does.
func opaqueText(field byte, v []byte) string {
	enc := base64.StdEncoding.EncodeToString(v)
	var b strings.Builder
	b.Grow(len(enc) + len(enc)/76 + 20)
	b.WriteString("base64:type")
	b.WriteString(strconv.Itoa(int(field)))
	b.WriteByte(':')
	for len(enc) > 76 {
		b.WriteString(enc[:76])
		b.WriteByte('\n')
		enc = enc[76:]
	}
	b.WriteString(enc)
	return b.String()
}

// jsonKeyLess is MySQL's order of object keys: shorter first, then by bytes.
func jsonKeyLess(a, b string) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}

// member returns the index of member key of object n, or where it would go in MySQL's
// key order and false.
func (n *jsonNode) member(key string) (int, bool) {
	lo, hi := 0, len(n.keys)
	for lo < hi {
		m := (lo + hi) / 2
		if jsonKeyLess(n.keys[m], key) {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo, lo < len(n.keys) && n.keys[lo] == key
}

// setMember sets member key of object n to v, keeping MySQL's key order.
func (n *jsonNode) setMember(key string, v jsonNode) {
	i, ok := n.member(key)
	if ok {
		n.elems[i] = v
		return
	}
	n.keys = slices.Insert(n.keys, i, key)
	n.elems = slices.Insert(n.elems, i, v)
}

// appendText appends the document's JSON text exactly as MySQL renders it.
func (n *jsonNode) appendText(dst []byte) []byte {
	switch n.kind {
	case jsonNull:
		return append(dst, "null"...)
	case jsonTrue:
		return append(dst, "true"...)
	case jsonFalse:
		return append(dst, "false"...)
	case jsonObject:
		dst = append(dst, '{')
		for i := range n.elems {
			if i > 0 {
				dst = append(dst, ", "...)
			}
			dst = appendMySQLString(dst, n.keys[i])
			dst = append(dst, ": "...)
			dst = n.elems[i].appendText(dst)
		}
		return append(dst, '}')
	case jsonArray:
		dst = append(dst, '[')
		for i := range n.elems {
			if i > 0 {
				dst = append(dst, ", "...)
			}
			dst = n.elems[i].appendText(dst)
		}
		return append(dst, ']')
	case jsonInt, jsonUint, jsonDouble, jsonDecimal:
		return append(dst, n.text...)
	}
	return appendMySQLString(dst, n.text)
}

// appendMySQLString appends s quoted as MySQL's double_quote does: '"', '\\' and the bytes
// below 0x20 escaped (\b \t \n \f \r, the others as \u00xx), everything else as it is.
func appendMySQLString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c > 0x1f && c != '"' && c != '\\' {
			continue
		}
		dst = append(dst, s[start:i]...)
		dst = event.AppendJSONEscape(dst, c) // the same escapes as MySQL's double_quote
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendMySQLDouble appends a double as MySQL prints it in JSON: my_gcvt with its widest
// field (MY_GCVT_MAX_FIELD_WIDTH, 34 characters), which keeps the shortest digits that read
// back as the same double and chooses between 123.45 and 1.2345e20 forms by the exponent,
// then ".0" when the result would read as an integer.
func appendMySQLDouble(dst []byte, x float64) []byte {
	if math.IsInf(x, 0) || math.IsNaN(x) {
		return append(dst, "0.0"...) // my_gcvt's overflow result; never in a stored document
	}
	// The shortest digits, as dtoa's mode 0 (mode 4 with more digits than a double has).
	e := strconv.AppendFloat(nil, x, 'e', -1, 64)
	neg := e[0] == '-'
	if neg {
		e = e[1:]
	}
	mant, exp, _ := strings.Cut(string(e), "e")
	digits := strings.Replace(mant, ".", "", 1)
	decpt, _ := strconv.Atoi(exp)
	decpt++ // value = 0.digits × 10^decpt
	if digits == "0" {
		decpt = 1
	}
	start := len(dst)
	if neg {
		dst = append(dst, '-')
	}
	// my_gcvt's choice for a width that fits every double: 'f' when the point is at most
	// 15 places out (MAX_DECPT_FOR_F_FORMAT) and a large number has a fraction.
	if decpt >= -14 && (decpt <= 15 || len(digits) > decpt) {
		switch {
		case decpt <= 0:
			dst = append(dst, "0."...)
			for i := decpt; i < 0; i++ {
				dst = append(dst, '0')
			}
			dst = append(dst, digits...)
		case decpt < len(digits):
			dst = append(dst, digits[:decpt]...)
			dst = append(dst, '.')
			dst = append(dst, digits[decpt:]...)
		default:
			dst = append(dst, digits...)
			for i := len(digits); i < decpt; i++ {
				dst = append(dst, '0')
			}
		}
	} else {
		dst = append(dst, digits[0])
		if len(digits) > 1 {
			dst = append(dst, '.')
			dst = append(dst, digits[1:]...)
		}
		dst = append(dst, 'e')
		dst = strconv.AppendInt(dst, int64(decpt-1), 10)
	}
	if !strings.ContainsAny(string(dst[start:]), ".e") {
		dst = append(dst, ".0"...)
	}
	return dst
}

// jsonType is the node's type as JSON_TYPE() names it.
func (n *jsonNode) jsonType() event.JSONType {
	switch n.kind {
	case jsonString:
		return event.JSONString
	case jsonInt:
		return event.JSONInteger
	case jsonUint:
		return event.JSONUnsigned
	case jsonDouble:
		return event.JSONDouble
	case jsonDecimal:
		return event.JSONDecimal
	case jsonDate:
		return event.JSONDate
	case jsonTime:
		return event.JSONTime
	case jsonDateTime:
		return event.JSONDateTime
	case jsonTimestamp:
		return event.JSONTimestamp
	case jsonOpaque:
		if n.field == mysql.MYSQL_TYPE_VARCHAR {
			return event.JSONBlob
		}
	}
	return ""
}

// types adds to t, under path, every scalar of n whose type its text does not tell (see
// event/json.go) and returns t, made when first needed. Opaque values of field types other
// than 15 (a BLOB or BINARY column's value, BIT) have no SQL form a shard could rebuild
// them from: they stay strings of their base64:type<n>: text.
func (n *jsonNode) types(t event.JSONTypes, path []byte) event.JSONTypes {
	var natural event.JSONType
	switch n.kind {
	case jsonObject:
		for i := range n.elems {
			t = n.elems[i].types(t, event.AppendJSONPathKey(path, n.keys[i]))
		}
		return t
	case jsonArray:
		for i := range n.elems {
			t = n.elems[i].types(t, event.AppendJSONPathIndex(path, i))
		}
		return t
	case jsonInt:
		if n.text[0] == '-' || len(n.text) < 10 {
			return t // below 2^32, or negative: the parser makes an INTEGER of it too
		}
		natural = event.NumberType(n.text)
	case jsonUint, jsonDouble, jsonDecimal:
		natural = event.NumberType(n.text)
	case jsonDate, jsonTime, jsonDateTime, jsonTimestamp:
		natural = event.JSONString
	case jsonOpaque:
		if n.field != mysql.MYSQL_TYPE_VARCHAR {
			return t
		}
		natural = event.JSONString
	default:
		return t // null, booleans and strings read back as they are
	}
	if typ := n.jsonType(); typ != natural {
		if t == nil {
			t = event.JSONTypes{}
		}
		t[string(path)] = typ
	}
	return t
}

// appendJSON decodes a binary JSON value of column col, appends its text in event form (a
// JSON string holding MySQL's rendering) and records in img the scalars that need a type.
func (img *rowImage) appendJSON(dst []byte, col *schema.Column, v mysqlJSON) ([]byte, error) {
	doc, err := parseJSONBinary(v)
	if err != nil {
		return dst, fmt.Errorf("column %s (json): %w", col.Name, err)
	}
	return img.appendJSONDoc(dst, col, doc), nil
}

// appendJSONDoc is appendJSON of a decoded (and perhaps changed) document.
func (img *rowImage) appendJSONDoc(dst []byte, col *schema.Column, doc *jsonNode) []byte {
	img.jsonText = doc.appendText(img.jsonText[:0])
	dst = event.AppendJSONString(dst, bytesString(img.jsonText))
	if t := doc.types(nil, append(img.jsonPath[:0], '$')); len(t) > 0 {
		if img.types == nil {
			img.types = map[string]event.JSONTypes{}
		}
		img.types[col.Name] = t
	}
	return dst
}
