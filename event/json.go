package event

import (
	"errors"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// Design note: JSON values and the types their text cannot tell.
//
// A JSON column's value travels as a string holding the document's JSON text (Encode). From
// a MySQL source that text is exactly what MySQL renders for the value (SELECT CAST(j AS
// CHAR)): members in MySQL's key order, ", " and ": " between them, DECIMALs with all their
// digits, doubles as MySQL prints them. From MariaDB, whose JSON is text, it is the stored
// text, byte for byte.
//
// MySQL stores JSON in a binary form whose scalars have types that text does not always
// show. Reading MySQL's text back, its JSON parser gives every scalar the type the text
// suggests (NumberType): an integer is INTEGER (UNSIGNED INTEGER from 2^32 up), any other
// number a DOUBLE, a string a STRING. So a DECIMAL 99.990 written back as text becomes the
// DOUBLE 99.99, an UNSIGNED INTEGER 5 becomes an INTEGER, a DATE becomes a STRING.
//
// The optional envelope field json_types carries, for the JSON columns of the after image
// (the image a sink writes), each scalar whose type differs from the one its text suggests:
//
//	"json_types": {"<column>": {"<path>": "<type>", ...}, ...}
//
// <path> is the scalar's MySQL JSON path: "$", then ."<key>" for an object member (the key
// always quoted, as a JSON string: AppendJSONPathKey) and [<n>] for an array element.
// <type> is the name MySQL's JSON_TYPE() gives it: DECIMAL, UNSIGNED INTEGER (below 2^32,
// where the text suggests INTEGER), INTEGER (from 2^32 up, where the text suggests
// UNSIGNED INTEGER), DOUBLE (only when the text of a double would suggest DECIMAL), DATE,
// TIME, DATETIME, TIMESTAMP, or
// BLOB (a binary string, MySQL's opaque value of field type 15, whose text is
// "base64:type15:<base64>"). A column, or the whole field, is left out when nothing needs a
// type: the field is absent from events of MariaDB sources, from events without JSON
// columns, and from every event written before it existed, which therefore decode as
// before and apply as before (but for the numbers of the next paragraph). Readers that do
// not know the field skip it (encoding/json and the sinks' decoder both do), and a reader
// meeting a type it does not know keeps the text as it is.
//
// What the text suggests is also a type a sink needs: a number that a double cannot hold
// (NumberType says DECIMAL: more digits than a double keeps) loses digits when MySQL parses
// it, wherever the text came from, so a sink writing to a MySQL JSON column keeps such a
// number as a DECIMAL even without json_types (text from a MariaDB source). Text that a
// double formatter wrote (MySQL's, or Go's in events of older cleave versions) never holds
// such a number: its doubles are the shortest decimals that read back as themselves.

// JSONType is the type of a JSON scalar, named as MySQL's JSON_TYPE() names it.
type JSONType string

// The scalar types json_types carries, and those NumberType returns.
const (
	JSONInteger   JSONType = "INTEGER"
	JSONUnsigned  JSONType = "UNSIGNED INTEGER"
	JSONDouble    JSONType = "DOUBLE"
	JSONDecimal   JSONType = "DECIMAL"
	JSONString    JSONType = "STRING"
	JSONDate      JSONType = "DATE"
	JSONTime      JSONType = "TIME"
	JSONDateTime  JSONType = "DATETIME"
	JSONTimestamp JSONType = "TIMESTAMP"
	JSONBlob      JSONType = "BLOB"
)

// JSONTypes maps the paths of one document's scalars to their types (see the design note).
type JSONTypes map[string]JSONType

// AppendJSONPathKey appends the path step of member key: ."key", the key always quoted.
func AppendJSONPathKey(path []byte, key string) []byte {
	return AppendJSONString(append(path, '.'), key)
}

// AppendJSONPathIndex appends the path step of array element i: [i].
func AppendJSONPathIndex(path []byte, i int) []byte {
	path = append(path, '[')
	path = strconv.AppendInt(path, int64(i), 10)
	return append(path, ']')
}

// AppendJSONTypes appends the json_types field as Marshal writes it, with its leading
// comma, or nothing when types is empty.
func AppendJSONTypes(dst []byte, types map[string]JSONTypes) []byte {
	if len(types) == 0 {
		return dst
	}
	cols := make([]string, 0, len(types))
	for c := range types {
		cols = append(cols, c)
	}
	sort.Strings(cols)
	dst = append(dst, `,"json_types":{`...)
	for i, c := range cols {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = AppendJSONString(dst, c)
		dst = append(dst, ":{"...)
		t := types[c]
		paths := make([]string, 0, len(t))
		for p := range t {
			paths = append(paths, p)
		}
		sort.Strings(paths)
		for j, p := range paths {
			if j > 0 {
				dst = append(dst, ',')
			}
			dst = AppendJSONString(dst, p)
			dst = append(dst, ':')
			dst = AppendJSONString(dst, string(t[p]))
		}
		dst = append(dst, '}')
	}
	return append(dst, '}')
}

// NumberType returns the type the text of a JSON number suggests, the one MySQL's JSON
// parser gives it: INTEGER for an integer that fits 64 signed bits, but UNSIGNED INTEGER for
// a non-negative one from 2^32 up to 2^64-1, DOUBLE for
// a number a double holds (its decimal value is the shortest decimal of the double nearest
// to it: so 1.5, 1.0, 1e2 and 99.990), and DECIMAL for one with more digits than that (more
// than about 17 significant digits) that a DECIMAL can hold (PlainDecimal). A number
// neither can hold is a DOUBLE: the nearest one is the best there is. tok must be a valid
// JSON number.
func NumberType(tok string) JSONType {
	if strings.IndexAny(tok, ".eE") < 0 {
		// MySQL's parser (rapidjson) hands on a non-negative integer above 32 bits as an
		// unsigned 64-bit one, which MySQL keeps as UNSIGNED INTEGER.
		if u, err := strconv.ParseUint(tok, 10, 64); err == nil {
			if u > math.MaxUint32 {
				return JSONUnsigned
			}
			return JSONInteger
		}
		if _, err := strconv.ParseInt(tok, 10, 64); err == nil {
			return JSONInteger
		}
	}
	if fewDigits(tok) {
		return JSONDouble // a double keeps any 15 significant digits (DBL_DIG)
	}
	f, err := strconv.ParseFloat(tok, 64)
	if err == nil && sameDecimal(tok, strconv.FormatFloat(f, 'e', -1, 64)) {
		return JSONDouble
	}
	if _, _, _, ok := PlainDecimal(tok); ok {
		return JSONDecimal
	}
	return JSONDouble
}

// fewDigits reports whether a number without an exponent has at most 15 significant
// digits.
func fewDigits(tok string) bool {
	n, leading := 0, true
	for i := 0; i < len(tok); i++ {
		switch c := tok[i]; {
		case c == 'e' || c == 'E':
			return false
		case c >= '1' && c <= '9' || c == '0' && !leading:
			leading = false
			n++
		}
	}
	return n <= 15
}

// sameDecimal reports whether two number texts have the same decimal value.
func sameDecimal(a, b string) bool {
	an, ad, ae := normalDecimal(a)
	bn, bd, be := normalDecimal(b)
	if ad == "" || bd == "" {
		return ad == bd // zeros are equal whatever their sign
	}
	return an == bn && ad == bd && ae == be
}

// normalDecimal splits a number text into its sign, its significant digits (no leading or
// trailing zeros; empty for zero) and the exponent e of value = 0.digits × 10^e.
func normalDecimal(s string) (neg bool, digits string, exp int) {
	if strings.HasPrefix(s, "-") {
		neg, s = true, s[1:]
	} else {
		s = strings.TrimPrefix(s, "+")
	}
	mant, e10 := s, 0
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		mant = s[:i]
		n, err := strconv.Atoi(s[i+1:])
		if err != nil {
			n = 0
		}
		e10 = n
	}
	intPart, frac, _ := strings.Cut(mant, ".")
	all := intPart + frac
	point := len(intPart) + e10
	lead := 0
	for lead < len(all) && all[lead] == '0' {
		lead++
	}
	all = all[lead:]
	point -= lead
	all = strings.TrimRight(all, "0")
	if all == "" {
		return neg, "", 0
	}
	return neg, all, point
}

// PlainDecimal writes a JSON number as the plain decimal literal a DECIMAL(precision,
// scale) holds exactly: the number's own digits, its fraction digits (trailing zeros
// included: 99.990 has scale 3) as the scale, the exponent applied ("1.5e3" is "1500",
// scale 0). ok is false when no DECIMAL holds it (more than 30 fraction digits or 65 in
// all, MySQL's limits).
func PlainDecimal(tok string) (text string, precision, scale int, ok bool) {
	neg := strings.HasPrefix(tok, "-")
	s := strings.TrimPrefix(strings.TrimPrefix(tok, "-"), "+")
	mant, e10 := s, 0
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		mant = s[:i]
		n, err := strconv.Atoi(s[i+1:])
		if err != nil || n > 1000 || n < -1000 {
			return "", 0, 0, false
		}
		e10 = n
	}
	intPart, frac, _ := strings.Cut(mant, ".")
	digits := intPart + frac
	point := len(intPart) + e10 // digits before the point
	for point > len(digits) {
		digits += "0"
	}
	for point < 0 {
		digits = "0" + digits
		point++
	}
	intPart, frac = strings.TrimLeft(digits[:point], "0"), digits[point:]
	scale = len(frac)
	precision = max(len(intPart)+scale, 1)
	if scale > 30 || precision > 65 {
		return "", 0, 0, false
	}
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	if intPart == "" {
		b.WriteByte('0')
	} else {
		b.WriteString(intPart)
	}
	if scale > 0 {
		b.WriteByte('.')
		b.WriteString(frac)
	}
	return b.String(), precision, scale, true
}

// JSONScalar is one scalar of a JSON text, as ScanJSON finds it.
type JSONScalar struct {
	// Path is its MySQL JSON path (see the design note), valid only during the callback.
	Path []byte
	// Token is its text as it stands in the document: a number's digits, a string with its
	// quotes and escapes (UnquoteJSON), true, false or null.
	Token string
}

// ErrJSONSyntax is returned by ScanJSON for text that is not JSON.
var ErrJSONSyntax = errors.New("not a JSON text")

// maxJSONDepth bounds nesting as MySQL does (100 levels), so a hostile text cannot
// exhaust the stack.
const maxJSONDepth = 100

// ScanJSON calls fn for every scalar of the JSON text, in document order, with its path.
// It stops at the first error fn returns, or at ErrJSONSyntax.
func ScanJSON(text string, fn func(s *JSONScalar) error) error {
	sc := jsonScanner{decoder: decoder{b: unsafe.Slice(unsafe.StringData(text), len(text))}, fn: fn,
		cur: JSONScalar{Path: append(make([]byte, 0, 64), '$')}}
	if err := sc.value(0); err != nil {
		return err
	}
	sc.ws()
	if sc.i != len(sc.b) {
		return ErrJSONSyntax
	}
	return nil
}

// jsonScanner walks a document with the message decoder's lexer (decode.go), over the
// text's bytes without a copy; the tokens it hands out alias the text.
type jsonScanner struct {
	decoder
	fn  func(s *JSONScalar) error
	cur JSONScalar
}

func (sc *jsonScanner) value(depth int) error {
	switch c := sc.peek(); {
	case c == '{':
		if depth >= maxJSONDepth {
			return ErrJSONSyntax
		}
		sc.i++
		if sc.peek() == '}' {
			sc.i++
			return nil
		}
		for {
			sc.ws()
			tok, err := sc.token()
			if err != nil {
				return err
			}
			key, ok := UnquoteJSON(tok)
			if !ok {
				return ErrJSONSyntax
			}
			if sc.peek() != ':' {
				return ErrJSONSyntax
			}
			sc.i++
			n := len(sc.cur.Path)
			sc.cur.Path = AppendJSONPathKey(sc.cur.Path, key)
			if err := sc.value(depth + 1); err != nil {
				return err
			}
			sc.cur.Path = sc.cur.Path[:n]
			if end, err := sc.next('}'); err != nil || end {
				return err
			}
		}
	case c == '[':
		if depth >= maxJSONDepth {
			return ErrJSONSyntax
		}
		sc.i++
		if sc.peek() == ']' {
			sc.i++
			return nil
		}
		for k := 0; ; k++ {
			n := len(sc.cur.Path)
			sc.cur.Path = AppendJSONPathIndex(sc.cur.Path, k)
			if err := sc.value(depth + 1); err != nil {
				return err
			}
			sc.cur.Path = sc.cur.Path[:n]
			if end, err := sc.next(']'); err != nil || end {
				return err
			}
		}
	case c == '"':
		tok, err := sc.token()
		if err != nil {
			return err
		}
		sc.cur.Token = tok
	case c == '-' || (c >= '0' && c <= '9'):
		tok, err := sc.number()
		if err != nil {
			return ErrJSONSyntax
		}
		sc.cur.Token = tok
	default:
		for _, lit := range []string{"true", "false", "null"} {
			if sc.lit(lit) {
				sc.cur.Token = lit
				return sc.fn(&sc.cur)
			}
		}
		return ErrJSONSyntax
	}
	return sc.fn(&sc.cur)
}

// next passes a ',' (false) or the closing byte (true) of a container.
func (sc *jsonScanner) next(closing byte) (end bool, err error) {
	switch sc.peek() {
	case ',':
		sc.i++
		return false, nil
	case closing:
		sc.i++
		return true, nil
	}
	return false, ErrJSONSyntax
}

// token passes a string and returns it with its quotes and escapes, as it stands.
func (sc *jsonScanner) token() (string, error) {
	if sc.i >= len(sc.b) || sc.b[sc.i] != '"' {
		return "", ErrJSONSyntax
	}
	start := sc.i
	for sc.i++; sc.i < len(sc.b); sc.i++ {
		switch c := sc.b[sc.i]; {
		case c == '\\':
			sc.i++
		case c == '"':
			sc.i++
			return alias(sc.b[start:sc.i]), nil
		case c < 0x20:
			return "", ErrJSONSyntax
		}
	}
	return "", ErrJSONSyntax
}

// UnquoteJSON decodes a JSON string token (with its quotes). ok is false for anything else.
func UnquoteJSON(tok string) (s string, ok bool) {
	if len(tok) < 2 || tok[0] != '"' || tok[len(tok)-1] != '"' {
		return "", false
	}
	body := tok[1 : len(tok)-1]
	if strings.IndexByte(body, '\\') < 0 {
		return body, utf8.ValidString(body)
	}
	b := make([]byte, 0, len(body))
	for i := 0; i < len(body); i++ {
		c := body[i]
		if c != '\\' {
			b = append(b, c)
			continue
		}
		i++
		if i >= len(body) {
			return "", false
		}
		if c, ok := unescape(body[i]); ok {
			b = append(b, c)
			continue
		}
		switch body[i] {
		case 'u':
			r, ok := hex4(body[i+1:])
			if !ok {
				return "", false
			}
			i += 4
			if utf16.IsSurrogate(r) {
				if r2, ok := hex4(body[min(i+3, len(body)):]); ok && i+2 < len(body) && body[i+1] == '\\' && body[i+2] == 'u' {
					if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
						b = utf8.AppendRune(b, d)
						i += 6
						continue
					}
				}
				r = utf8.RuneError
			}
			b = utf8.AppendRune(b, r)
		default:
			return "", false
		}
	}
	return string(b), true
}

func hex4(s string) (rune, bool) {
	if len(s) < 4 {
		return 0, false
	}
	n, err := strconv.ParseUint(s[:4], 16, 16)
	return rune(n), err == nil
}
