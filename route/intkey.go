package route

// intKey is a decimal integer of any size, taken apart without allocating: its sign and
// its digits with leading zeros removed (they alias the text it was parsed from). Zero has
// no digits and is never negative, so "-0", "+0" and "000" are all the same key.
type intKey struct {
	neg    bool
	digits []byte
}

// parseIntKey parses an optional sign followed by one or more ASCII digits. Nothing else is
// accepted: no spaces, no fraction, no exponent. MySQL renders integer columns as plain
// decimal, so a value that fails here was not an integer column.
func parseIntKey(b []byte) (intKey, bool) {
	var k intKey
	if len(b) > 0 && (b[0] == '-' || b[0] == '+') {
		k.neg = b[0] == '-'
		b = b[1:]
	}
	if len(b) == 0 {
		return intKey{}, false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return intKey{}, false
		}
	}
	for len(b) > 0 && b[0] == '0' {
		b = b[1:]
	}
	if len(b) == 0 {
		return intKey{}, true
	}
	k.digits = b
	return k, true
}

// compareIntKey returns -1, 0 or +1 as a is numerically below, equal to or above b.
func compareIntKey(a, b intKey) int {
	if a.neg != b.neg {
		if a.neg {
			return -1
		}
		return 1
	}
	c := compareMagnitude(a.digits, b.digits)
	if a.neg {
		return -c
	}
	return c
}

// compareMagnitude compares digit strings without leading zeros: the longer is larger, and
// equal lengths compare like their text.
func compareMagnitude(a, b []byte) int {
	switch {
	case len(a) < len(b):
		return -1
	case len(a) > len(b):
		return 1
	case string(a) < string(b):
		return -1
	case string(a) > string(b):
		return 1
	}
	return 0
}

// appendCanonical appends the key as MySQL would render it: "-" only when negative, no
// leading zeros, "0" for zero.
func (k intKey) appendCanonical(dst []byte) []byte {
	if len(k.digits) == 0 {
		return append(dst, '0')
	}
	if k.neg {
		dst = append(dst, '-')
	}
	return append(dst, k.digits...)
}
