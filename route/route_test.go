package route

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// evenShards names n shards s0..s(n-1) over EvenKeyspace(n).
func evenShards(n int) []Shard {
	var out []Shard
	for i, r := range EvenKeyspace(n) {
		out = append(out, Shard{Name: fmt.Sprintf("s%d", i), Start: r[0], End: r[1]})
	}
	return out
}

func mustNew(t testing.TB, shards []Shard, tables map[string]TableSpec) *Router {
	t.Helper()
	r, err := New(shards, tables)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return r
}

// routeOne routes and insists on exactly one shard, returning its name.
func routeOne(t *testing.T, r *Router, table string, v Value) string {
	t.Helper()
	got, err := r.Route(table, v)
	if err != nil {
		t.Fatalf("Route(%q, %s): %v", table, v, err)
	}
	if len(got) != 1 {
		t.Fatalf("Route(%q, %s) = %v, want exactly one shard", table, v, got)
	}
	return r.Shards()[got[0]].Name
}

func TestNewRejects(t *testing.T) {
	ok := evenShards(2)
	hash := map[string]TableSpec{"shop.users": {Strategy: Hash}}
	cases := []struct {
		name   string
		shards []Shard
		tables map[string]TableSpec
		want   []string // every one must appear in the error
	}{
		{"no shards", nil, hash, []string{"no shards"}},
		{"a shard without a name", []Shard{{Name: "", Start: 0, End: 0}}, nil, []string{"shards[0] has no name"}},
		{"two shards with one name",
			[]Shard{{Name: "a", Start: 0, End: 1 << 63}, {Name: "a", Start: 1 << 63, End: 0}}, nil,
			[]string{`shard name "a" is used twice`, "shards[0] and shards[1]"}},
		{"a gap in the keyspace",
			[]Shard{{Name: "a", Start: 0, End: 0x40 << 56}, {Name: "b", Start: 0x80 << 56, End: 0}}, nil,
			[]string{"no shard owns the keyspace 40-80", `"a"`, `"b"`}},
		{"overlapping keyspaces",
			[]Shard{{Name: "a", Start: 0, End: 0x80 << 56}, {Name: "b", Start: 0x40 << 56, End: 0}}, nil,
			[]string{`shards "a" (-80) and "b" (40-) overlap`}},
		{"two shards that both own everything",
			[]Shard{{Name: "a"}, {Name: "b"}}, nil,
			[]string{`shards "a" (-) and "b" (-) overlap`}},
		{"keyspace that does not start at zero",
			[]Shard{{Name: "a", Start: 0x10 << 56, End: 0x80 << 56}, {Name: "b", Start: 0x80 << 56, End: 0}}, nil,
			[]string{"no shard owns the keyspace from 0", `lowest shard "a"`}},
		{"keyspace that does not reach the top",
			[]Shard{{Name: "a", Start: 0, End: 0x80 << 56}, {Name: "b", Start: 0x80 << 56, End: 0xf0 << 56}}, nil,
			[]string{"to the top (f0-)", `highest shard "b"`}},
		{"a reversed keyspace",
			[]Shard{{Name: "a", Start: 0x80 << 56, End: 0x40 << 56}}, nil,
			[]string{`shard "a": keyspace 80-40 is empty or reversed`}},
		{"a table without a strategy", ok, map[string]TableSpec{"shop.users": {}},
			[]string{`table "shop.users": no strategy`}},
		{"an unknown strategy", ok, map[string]TableSpec{"shop.users": {Strategy: "hsah"}},
			[]string{`table "shop.users": unknown strategy "hsah"`}},
		{"an unknown key kind", ok, map[string]TableSpec{"shop.users": {Strategy: Hash, KeyKind: 7}},
			[]string{`table "shop.users": unknown key kind 7`}},
		{"a table with an empty name", ok, map[string]TableSpec{"": {Strategy: Hash}},
			[]string{"table name is empty"}},
		{"pin without a shard", ok, map[string]TableSpec{"shop.config": {Strategy: Pin}},
			[]string{`table "shop.config": strategy pin names no shard`}},
		{"pin to an unknown shard", ok, map[string]TableSpec{"shop.config": {Strategy: Pin, Shard: "s9"}},
			[]string{`table "shop.config": strategy pin names shard "s9", which is not one of the shards ("s0", "s1")`}},
		{"range without ranges", ok, map[string]TableSpec{"shop.events": {Strategy: Range}},
			[]string{`table "shop.events": strategy range needs at least one range`}},
		{"range with the unbounded range not last", ok, map[string]TableSpec{"shop.events": {Strategy: Range,
			Ranges: []RangeBound{{Below: "", Shard: "s0"}, {Below: "10", Shard: "s1"}}}},
			[]string{`table "shop.events": ranges[0] is unbounded`, "only the last range may be unbounded"}},
		{"range with equal int bounds", ok, map[string]TableSpec{"shop.events": {Strategy: Range, KeyKind: KeyInt,
			Ranges: []RangeBound{{Below: "100", Shard: "s0"}, {Below: "0100", Shard: "s1"}, {Shard: "s1"}}}},
			[]string{`table "shop.events": ranges[1].below "0100" is not above the previous bound "100"`}},
		{"range with int bounds that go down", ok, map[string]TableSpec{"shop.events": {Strategy: Range, KeyKind: KeyInt,
			Ranges: []RangeBound{{Below: "10", Shard: "s0"}, {Below: "-5", Shard: "s1"}}}},
			[]string{`ranges[1].below "-5" is not above the previous bound "10"`}},
		{"range with byte bounds that go down", ok, map[string]TableSpec{"shop.events": {Strategy: Range,
			Ranges: []RangeBound{{Below: "m", Shard: "s0"}, {Below: "c", Shard: "s1"}}}},
			[]string{`ranges[1].below "c" is not above the previous bound "m"`, "byte-wise"}},
		{"range with a bound that is not an integer", ok, map[string]TableSpec{"shop.events": {Strategy: Range, KeyKind: KeyInt,
			Ranges: []RangeBound{{Below: "1e6", Shard: "s0"}, {Shard: "s1"}}}},
			[]string{`ranges[0].below "1e6" is not an integer`}},
		{"range to an unknown shard", ok, map[string]TableSpec{"shop.events": {Strategy: Range,
			Ranges: []RangeBound{{Below: "m", Shard: "s0"}, {Shard: "east"}}}},
			[]string{`table "shop.events": ranges[1] names shard "east", which is not one of the shards`}},
		{"range without a shard", ok, map[string]TableSpec{"shop.events": {Strategy: Range,
			Ranges: []RangeBound{{Below: "m"}, {Shard: "s1"}}}},
			[]string{`ranges[0] names no shard`}},
		{"list without values", ok, map[string]TableSpec{"shop.stores": {Strategy: List, Default: "s0"}},
			[]string{`table "shop.stores": strategy list needs at least one value`}},
		{"list value to an unknown shard", ok, map[string]TableSpec{"shop.stores": {Strategy: List,
			Values: map[string]string{"us": "s0", "eu": "s7"}}},
			[]string{`list value "eu" names shard "s7", which is not one of the shards`}},
		{"list default to an unknown shard", ok, map[string]TableSpec{"shop.stores": {Strategy: List,
			Values: map[string]string{"us": "s0"}, Default: "rest"}},
			[]string{`table "shop.stores": default names shard "rest"`}},
		{"int list with a value that is not an integer", ok, map[string]TableSpec{"shop.stores": {Strategy: List, KeyKind: KeyInt,
			Values: map[string]string{"7": "s0", "seven": "s1"}}},
			[]string{`list value "seven" is not an integer`}},
		{"int list with one integer twice", ok, map[string]TableSpec{"shop.stores": {Strategy: List, KeyKind: KeyInt,
			Values: map[string]string{"7": "s0", "007": "s1"}}},
			[]string{`list values "007" and "7" are the same integer`}},
		{"hash with ranges", ok, map[string]TableSpec{"shop.users": {Strategy: Hash, Ranges: []RangeBound{{Shard: "s0"}}}},
			[]string{`table "shop.users": ranges are given but the strategy is "hash"`}},
		{"pin with list values", ok, map[string]TableSpec{"shop.users": {Strategy: Pin, Shard: "s0", Values: map[string]string{"a": "s1"}}},
			[]string{`list values are given but the strategy is "pin"`}},
		{"hash with a default shard", ok, map[string]TableSpec{"shop.users": {Strategy: Hash, Default: "s0"}},
			[]string{`a default shard is given but the strategy is "hash"`}},
		{"broadcast with a pinned shard", ok, map[string]TableSpec{"shop.countries": {Strategy: Broadcast, Shard: "s0"}},
			[]string{`a pinned shard is given but the strategy is "broadcast"`}},
		{"every problem at once", []Shard{{Name: "a", Start: 0, End: 0x40 << 56}, {Name: "b", Start: 0x80 << 56, End: 0}},
			map[string]TableSpec{"t1": {Strategy: Pin, Shard: "c"}, "t2": {Strategy: "mod"}},
			[]string{"no shard owns the keyspace 40-80", `table "t1": strategy pin names shard "c"`, `table "t2": unknown strategy "mod"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := New(tc.shards, tc.tables)
			if err == nil {
				t.Fatalf("New succeeded (%v), want an error", r)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not name the problem\n got: %v\nwant: ...%s...", err, w)
				}
			}
		})
	}
}

func TestNewAccepts(t *testing.T) {
	t.Run("shards listed out of keyspace order keep their listed indexes", func(t *testing.T) {
		shards := []Shard{{Name: "hi", Start: 0x80 << 56}, {Name: "lo", End: 0x80 << 56}}
		r := mustNew(t, shards, map[string]TableSpec{"t": {Strategy: Hash}})
		if got := r.ShardForHash(0); got != 1 {
			t.Errorf("hash 0 -> shard %d, want 1 (lo)", got)
		}
		if got := r.ShardForHash(^uint64(0)); got != 0 {
			t.Errorf("hash max -> shard %d, want 0 (hi)", got)
		}
		if !slices.Equal(r.Shards(), shards) {
			t.Errorf("Shards() = %v, want %v", r.Shards(), shards)
		}
	})
	t.Run("one shard owns the whole keyspace", func(t *testing.T) {
		r := mustNew(t, []Shard{{Name: "only"}}, map[string]TableSpec{"t": {Strategy: Hash}})
		if got := routeOne(t, r, "t", StringValue("x")); got != "only" {
			t.Errorf("got %s", got)
		}
	})
	t.Run("a range table may end without an unbounded range", func(t *testing.T) {
		mustNew(t, evenShards(2), map[string]TableSpec{"t": {Strategy: Range, Ranges: []RangeBound{{Below: "m", Shard: "s0"}}}})
	})
	t.Run("Shards returns a copy", func(t *testing.T) {
		r := mustNew(t, evenShards(2), nil)
		r.Shards()[0].Name = "changed"
		if r.Shards()[0].Name != "s0" {
			t.Error("changing Shards() changed the router")
		}
	})
}

func TestRouteUnknownTable(t *testing.T) {
	r := mustNew(t, evenShards(2), map[string]TableSpec{"shop.users": {Strategy: Hash}})
	_, err := r.Route("shop.user", IntValue(1))
	if !errors.Is(err, ErrUnknownTable) || !strings.Contains(err.Error(), `"shop.user"`) {
		t.Fatalf("err = %v, want ErrUnknownTable naming the table", err)
	}
	if _, ok := r.Strategy("shop.user"); ok {
		t.Error("Strategy knows a table that was not configured")
	}
	if s, ok := r.Strategy("shop.users"); !ok || s != Hash {
		t.Errorf("Strategy(shop.users) = %q, %v", s, ok)
	}
}

func TestRouteHash(t *testing.T) {
	r := mustNew(t, evenShards(4), map[string]TableSpec{"t": {Strategy: Hash}})
	t.Run("NULL hashes to 0 and goes to the shard that owns 0", func(t *testing.T) {
		if got := routeOne(t, r, "t", NullValue()); got != "s0" {
			t.Errorf("NULL -> %s, want s0", got)
		}
	})
	t.Run("the empty string is not NULL", func(t *testing.T) {
		// MD5('') = d41d8cd9...: the top quarter of the keyspace.
		if got := routeOne(t, r, "t", StringValue("")); got != "s3" {
			t.Errorf("'' -> %s, want s3", got)
		}
	})
	t.Run("the chosen shard owns the hash", func(t *testing.T) {
		for i := range 1000 {
			v := IntValue(int64(i))
			idx, _ := r.Route("t", v)
			if h := HashKey(v.Bytes); !r.Shards()[idx[0]].Contains(h) {
				t.Fatalf("%s: hash %#x not in shard %v", v, h, r.Shards()[idx[0]])
			}
		}
	})
}

func TestRouteRangeInt(t *testing.T) {
	r := mustNew(t, evenShards(4), map[string]TableSpec{"t": {Strategy: Range, KeyKind: KeyInt, Ranges: []RangeBound{
		{Below: "-100", Shard: "s0"},
		{Below: "10", Shard: "s1"},
		{Below: "18446744073709551615", Shard: "s2"},
		{Shard: "s3"},
	}}})
	cases := []struct {
		v    Value
		want string
	}{
		{NullValue(), "s0"},
		{StringValue("-9223372036854775808"), "s0"},
		{StringValue("-101"), "s0"},
		{StringValue("-100"), "s1"}, // equal to a bound: the next range
		{StringValue("-99"), "s1"},
		{StringValue("-0"), "s1"},
		{StringValue("0"), "s1"},
		{StringValue("9"), "s1"}, // numerically below 10, though "9" > "10" byte-wise
		{StringValue("10"), "s2"},
		{StringValue("0010"), "s2"},
		{StringValue("9223372036854775807"), "s2"},
		{StringValue("18446744073709551614"), "s2"},
		{StringValue("18446744073709551615"), "s3"},
		{StringValue("99999999999999999999999999999"), "s3"},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%s goes to %s", tc.v, tc.want), func(t *testing.T) {
			if got := routeOne(t, r, "t", tc.v); got != tc.want {
				t.Errorf("got %s", got)
			}
		})
	}
	for _, bad := range []string{"", "abc", "1.5", " 1", "1e3", "-", "0x10"} {
		t.Run(fmt.Sprintf("%q is an error naming the table and the value", bad), func(t *testing.T) {
			_, err := r.Route("t", StringValue(bad))
			if !errors.Is(err, ErrBadKey) || !strings.Contains(err.Error(), `table "t"`) || !strings.Contains(err.Error(), fmt.Sprintf("%q", bad)) {
				t.Errorf("err = %v", err)
			}
		})
	}
}

func TestRouteRangeBytes(t *testing.T) {
	r := mustNew(t, evenShards(3), map[string]TableSpec{"t": {Strategy: Range, Ranges: []RangeBound{
		{Below: "g", Shard: "s0"},
		{Below: "n", Shard: "s1"},
		{Below: "t", Shard: "s2"},
	}}})
	cases := []struct {
		v    Value
		want string
	}{
		{NullValue(), "s0"},
		{StringValue(""), "s0"},
		{BytesValue([]byte{0}), "s0"},
		{StringValue("G"), "s0"}, // byte-wise: upper case sorts before lower case
		{StringValue("fzzz"), "s0"},
		{StringValue("g"), "s1"}, // equal to a bound: the next range
		{StringValue("g\x00"), "s1"},
		{StringValue("mmm"), "s1"},
		{StringValue("n"), "s2"},
		{StringValue("sz"), "s2"},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%s goes to %s", tc.v, tc.want), func(t *testing.T) {
			if got := routeOne(t, r, "t", tc.v); got != tc.want {
				t.Errorf("got %s", got)
			}
		})
	}
	for _, beyond := range []Value{StringValue("t"), StringValue("zebra"), BytesValue([]byte{0xff}), StringValue("é")} {
		t.Run(fmt.Sprintf("%s above the last bound is an error", beyond), func(t *testing.T) {
			_, err := r.Route("t", beyond)
			if !errors.Is(err, ErrNoShard) || !strings.Contains(err.Error(), `last range bound "t"`) {
				t.Errorf("err = %v", err)
			}
		})
	}
}

func TestRouteList(t *testing.T) {
	values := map[string]string{"us": "s0", "eu": "s1", "": "s0"}
	withDefault := TableSpec{Strategy: List, Values: values, Default: "s2"}
	without := TableSpec{Strategy: List, Values: values}
	ints := TableSpec{Strategy: List, KeyKind: KeyInt, Values: map[string]string{"007": "s1", "-5": "s2", "0": "s0"}}
	r := mustNew(t, evenShards(3), map[string]TableSpec{"with": withDefault, "without": without, "ints": ints})

	cases := []struct {
		table string
		v     Value
		want  string
	}{
		{"with", StringValue("us"), "s0"},
		{"with", StringValue("eu"), "s1"},
		{"with", StringValue(""), "s0"},
		{"with", StringValue("US"), "s2"}, // values compare byte-wise: not listed
		{"with", StringValue("asia"), "s2"},
		{"with", NullValue(), "s2"},
		{"without", StringValue("eu"), "s1"},
		{"without", StringValue(""), "s0"},
		{"ints", StringValue("7"), "s1"},
		{"ints", StringValue("-5"), "s2"},
		{"ints", StringValue("-0"), "s0"},
		{"ints", StringValue("0"), "s0"},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%s: %s goes to %s", tc.table, tc.v, tc.want), func(t *testing.T) {
			if got := routeOne(t, r, tc.table, tc.v); got != tc.want {
				t.Errorf("got %s", got)
			}
		})
	}
	errCases := []struct {
		table string
		v     Value
		is    error
	}{
		{"without", StringValue("asia"), ErrNoShard},
		{"without", NullValue(), ErrNoShard},
		{"ints", StringValue("8"), ErrNoShard},
		{"ints", StringValue("seven"), ErrBadKey},
	}
	for _, tc := range errCases {
		t.Run(fmt.Sprintf("%s: %s is an error", tc.table, tc.v), func(t *testing.T) {
			_, err := r.Route(tc.table, tc.v)
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), fmt.Sprintf("table %q", tc.table)) || !strings.Contains(err.Error(), tc.v.String()) {
				t.Errorf("err = %v, want %v naming table and value", err, tc.is)
			}
		})
	}
}

func TestRouteBroadcastAndPin(t *testing.T) {
	r := mustNew(t, evenShards(3), map[string]TableSpec{
		"countries": {Strategy: Broadcast},
		"settings":  {Strategy: Pin, Shard: "s1"},
	})
	for _, v := range []Value{NullValue(), StringValue(""), IntValue(-1), StringValue("🙂")} {
		got, err := r.Route("countries", v)
		if err != nil || !slices.Equal(got, []int{0, 1, 2}) {
			t.Errorf("broadcast %s = %v, %v; want every shard", v, got, err)
		}
		if got := routeOne(t, r, "settings", v); got != "s1" {
			t.Errorf("pin %s -> %s, want s1", v, got)
		}
	}
}

// A child table stays with its parent when both route on the same key value with the same
// strategy: orders.user_id and users.id.
func TestChildTableFollowsParent(t *testing.T) {
	for _, n := range []int{2, 3, 5} {
		t.Run(fmt.Sprintf("%d shards", n), func(t *testing.T) {
			r := mustNew(t, evenShards(n), map[string]TableSpec{
				"shop.users":  {Strategy: Hash}, // shard key id
				"shop.orders": {Strategy: Hash}, // shard key user_id
			})
			for id := int64(-50); id < 2000; id++ {
				user := routeOne(t, r, "shop.users", IntValue(id))
				order := routeOne(t, r, "shop.orders", IntValue(id))
				if user != order {
					t.Fatalf("user %d on %s but its order on %s", id, user, order)
				}
			}
		})
	}
}

func TestValueString(t *testing.T) {
	if got := NullValue().String(); got != "NULL" {
		t.Errorf("NULL renders %s", got)
	}
	if got := StringValue("NULL").String(); got != `"NULL"` {
		t.Errorf("the string NULL renders %s", got)
	}
	if got := StringValue(strings.Repeat("x", 100)).String(); len(got) > 80 || !strings.HasSuffix(got, "...") {
		t.Errorf("a long value renders %s", got)
	}
	if got := UintValue(18446744073709551615).String(); got != `"18446744073709551615"` {
		t.Errorf("max uint renders %s", got)
	}
}

func BenchmarkRouteHash(b *testing.B) {
	r := mustNew(b, evenShards(4), map[string]TableSpec{"shop.users": {Strategy: Hash}})
	keys := make([]Value, 1024)
	for i := range keys {
		keys[i] = IntValue(int64(i) * 7919)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := r.Route("shop.users", keys[i&1023]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRouteRangeInt(b *testing.B) {
	ranges := []RangeBound{}
	for i := range 15 {
		ranges = append(ranges, RangeBound{Below: fmt.Sprint((i + 1) * 100000), Shard: "s0"})
	}
	ranges = append(ranges, RangeBound{Shard: "s1"})
	r := mustNew(b, evenShards(2), map[string]TableSpec{"t": {Strategy: Range, KeyKind: KeyInt, Ranges: ranges}})
	keys := make([]Value, 1024)
	for i := range keys {
		keys[i] = IntValue(int64(i) * 1777)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := r.Route("t", keys[i&1023]); err != nil {
			b.Fatal(err)
		}
	}
}

func TestOnlyHashRangeAndListRouteByTheShardKey(t *testing.T) {
	for s, want := range map[Strategy]bool{Hash: true, Range: true, List: true, Broadcast: false, Pin: false, "": false, "mod": false} {
		if got := s.ByKey(); got != want {
			t.Errorf("Strategy(%q).ByKey() = %v, want %v", s, got, want)
		}
	}
}
