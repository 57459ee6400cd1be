package reconcile

import (
	"bytes"
	"encoding/json"
	"math"
	"math/big"
	"sort"
	"strconv"
)

// canonicalJSON renders a JSON document in one spelling per value, so that a document
// stored as MySQL's binary JSON and the same document stored as MariaDB's text compare
// equal, and any two different values compare different. ok is false when doc is not
// JSON (a text column may hold anything); the caller then compares the bytes.
//
// What MySQL keeps of a document is its value, not its text: it sorts object keys, keeps the
// last of duplicate keys, drops white space, stores a number as an int64, a uint64 or a
// double (an integer literal outside both ranges, and any literal with a fraction or an
// exponent, becomes a double: 1e2 is 100.0, 2.50 is 2.5) and renders strings with their
// characters, not their escapes. The canonical form keeps exactly that, so that it is the
// same whichever side the text came from:
//
//   - objects with keys in byte order, the last of duplicate keys kept, no white space;
//   - strings re-encoded (escapes only where JSON requires them);
//   - numbers by value: an integer literal in the int64 or uint64 range as its digits,
//     anything else through float64, written as its integer digits when it is a whole
//     number below 2^64 in magnitude, otherwise in Go's shortest form. 1, 1.0 and 1e0 are
//     one value (MySQL's JSON comparison says so too); 0.1 and 0.10000000000000001 are the
//     same double and so one value.
func canonicalJSON(doc []byte) ([]byte, bool) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, false
	}
	if _, err := dec.Token(); err == nil {
		return nil, false // trailing data: not one document
	}
	var b bytes.Buffer
	writeCanonical(&b, v)
	return b.Bytes(), true
}

func writeCanonical(b *bytes.Buffer, v any) {
	switch x := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		b.WriteString(strconv.FormatBool(x))
	case string:
		writeJSONString(b, x)
	case json.Number:
		b.WriteString(canonicalNumber(string(x)))
	case []any:
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteByte(',')
			}
			writeCanonical(b, e)
		}
		b.WriteByte(']')
	case map[string]any:
		// encoding/json keeps the last value of a duplicate key, as MySQL does.
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			writeJSONString(b, k)
			b.WriteByte(':')
			writeCanonical(b, x[k])
		}
		b.WriteByte('}')
	}
}

func writeJSONString(b *bytes.Buffer, s string) {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)       // a Go string always encodes
	b.Truncate(b.Len() - 1) // Encode's newline
}

var two64 = new(big.Float).SetFloat64(math.Ldexp(1, 64))

// canonicalNumber is the canonical text of a JSON number literal (see canonicalJSON).
func canonicalNumber(lit string) string {
	if i, err := strconv.ParseInt(lit, 10, 64); err == nil {
		return strconv.FormatInt(i, 10)
	}
	if u, err := strconv.ParseUint(lit, 10, 64); err == nil {
		return strconv.FormatUint(u, 10)
	}
	f, err := strconv.ParseFloat(lit, 64)
	if err != nil {
		// Out of the double's range: MySQL refuses such a document, so it can only be
		// text; keep it as written.
		return lit
	}
	if f == 0 {
		return "0" // -0.0 too: MySQL renders it 0.0
	}
	if f == math.Trunc(f) {
		bf := new(big.Float).SetFloat64(math.Abs(f))
		if bf.Cmp(two64) < 0 {
			n, _ := new(big.Float).SetFloat64(f).Int(nil)
			return n.String()
		}
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}
