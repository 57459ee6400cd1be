package reconcile

import "testing"

func TestCanonicalJSONSpellsOneValueOneWay(t *testing.T) {
	for _, tc := range []struct {
		name, a, b string
		same       bool
	}{
		{"white space and key order", `{ "b" : 1, "a":[1, 2] }`, `{"a": [1, 2], "b": 1}`, true},
		{"MySQL's key order (by length)", `{"aa":1,"b":2}`, `{"b": 2, "aa": 1}`, true},
		{"the last of duplicate keys", `{"a":1,"a":2}`, `{"a": 2}`, true},
		{"an exponent and a fraction are a double", `1e2`, `100.0`, true},
		{"trailing zeros of a fraction", `2.50`, `2.5`, true},
		{"an integer beyond uint64 is a double", `18446744073709551616`, `1.8446744073709552e19`, true},
		{"doubles that round alike", `0.10000000000000001`, `0.1`, true},
		{"minus zero", `-0.0`, `0`, true},
		{"escapes and characters", `"\u00e9\/"`, `"é/"`, true},
		{"int64 max kept exact", `9223372036854775807`, `9223372036854775806`, false},
		{"uint64 max kept exact", `18446744073709551615`, `18446744073709551614`, false},
		{"a different value", `{"a":1}`, `{"a":2}`, false},
		{"a string is not a number", `"1"`, `1`, false},
		{"null is not the string null", `null`, `"null"`, false},
		{"an array's order counts", `[1,2]`, `[2,1]`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, okA := canonicalJSON([]byte(tc.a))
			b, okB := canonicalJSON([]byte(tc.b))
			if !okA || !okB {
				t.Fatalf("not read as JSON: %q %v, %q %v", tc.a, okA, tc.b, okB)
			}
			if got := string(a) == string(b); got != tc.same {
				t.Errorf("%s -> %s and %s -> %s: same = %v, want %v", tc.a, a, tc.b, b, got, tc.same)
			}
		})
	}
	for _, bad := range []string{`{"a":`, `{} {}`, `not json`, ``} {
		if _, ok := canonicalJSON([]byte(bad)); ok {
			t.Errorf("%q read as one JSON document", bad)
		}
	}
}
