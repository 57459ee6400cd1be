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

// problem is one error New must report: a *FieldError of table and field whose message
// contains msg, or (field "") a plain error containing msg.
type problem struct{ table, field, msg string }

// problems lists the errors joined in err, FieldErrors by table, field and message.
func problems(err error) []problem {
	var out []problem
	var walk func(error)
	walk = func(err error) {
		var fe *FieldError
		switch j, ok := err.(interface{ Unwrap() []error }); {
		case ok:
			for _, e := range j.Unwrap() {
				walk(e)
			}
		case errors.As(err, &fe):
			out = append(out, problem{fe.Table, fe.Field, fe.Msg})
		default:
			out = append(out, problem{msg: err.Error()})
		}
	}
	walk(err)
	return out
}

// reported says whether got holds want: the same table and field, a message containing
// want's.
func reported(got []problem, want problem) bool {
	for _, g := range got {
		if g.table == want.table && g.field == want.field && strings.Contains(g.msg, want.msg) {
			return true
		}
	}
	return false
}

func TestNewRejects(t *testing.T) {
	ok := evenShards(2)
	hash := map[string]TableSpec{"shop.users": {Strategy: Hash}}
	const known = `("s0", "s1")`
	cases := []struct {
		name   string
		shards []Shard
		tables map[string]TableSpec
		want   []problem // each must be reported, and nothing else
	}{
		{"no shards", nil, hash, []problem{{"", "", "no shards"}}},
		{"a shard without a name", []Shard{{Name: "", Start: 0, End: 0}}, nil,
			[]problem{{"", "shards[0].name", "required: every shard needs a name"}}},
		{"two shards with one name",
			[]Shard{{Name: "a", Start: 0, End: 1 << 63}, {Name: "a", Start: 1 << 63, End: 0}}, nil,
			[]problem{{"", "shards[1].name", `"a" is already the name of shards[0]; shard names must be unique`}}},
		{"a gap in the keyspace",
			[]Shard{{Name: "a", Start: 0, End: 0x40 << 56}, {Name: "b", Start: 0x80 << 56, End: 0}}, nil,
			[]problem{{"", "shards[1].keyspace", `no shard owns 40-80, between shard "a" (-40) and shard "b" (80-); the ranges must meet`}}},
		{"overlapping keyspaces",
			[]Shard{{Name: "a", Start: 0, End: 0x80 << 56}, {Name: "b", Start: 0x40 << 56, End: 0}}, nil,
			[]problem{{"", "shards[1].keyspace", `shard "b" (40-) overlaps shard "a" (-80); each hash must belong to exactly one shard`}}},
		{"two shards that both own everything",
			[]Shard{{Name: "a"}, {Name: "b"}}, nil,
			[]problem{{"", "shards[1].keyspace", `shard "b" (-) overlaps shard "a" (-)`}}},
		{"keyspace that does not start at zero",
			[]Shard{{Name: "a", Start: 0x10 << 56, End: 0x80 << 56}, {Name: "b", Start: 0x80 << 56, End: 0}}, nil,
			[]problem{{"", "shards[0].keyspace", `no shard owns -10: the lowest, shard "a" (10-80), must start at the bottom`}}},
		{"keyspace that does not reach the top",
			[]Shard{{Name: "a", Start: 0, End: 0x80 << 56}, {Name: "b", Start: 0x80 << 56, End: 0xf0 << 56}}, nil,
			[]problem{{"", "shards[1].keyspace", `no shard owns f0-: the highest, shard "b" (80-f0), must reach the top`}}},
		{"a reversed keyspace",
			[]Shard{{Name: "a", Start: 0x80 << 56, End: 0x40 << 56}}, nil,
			[]problem{{"", "shards[0].keyspace", `shard "a" (80-40) is empty or reversed`}}},
		{"a table without a strategy", ok, map[string]TableSpec{"shop.users": {}},
			[]problem{{"shop.users", "strategy", "required: one of hash, range, list, broadcast, pin"}}},
		{"an unknown strategy", ok, map[string]TableSpec{"shop.users": {Strategy: "hsah"}},
			[]problem{{"shop.users", "strategy", `"hsah" is not one of hash, range, list, broadcast, pin`}}},
		{"an unknown strategy with ranges is one problem", ok, map[string]TableSpec{"shop.users": {Strategy: "hsah", Ranges: []RangeBound{{Shard: "s0"}}}},
			[]problem{{"shop.users", "strategy", `"hsah" is not one of`}}},
		{"an unknown key kind", ok, map[string]TableSpec{"shop.users": {Strategy: Hash, KeyKind: 7}},
			[]problem{{"shop.users", "key_kind", "unknown key kind 7"}}},
		{"a table with an empty name", ok, map[string]TableSpec{"": {Strategy: Hash}},
			[]problem{{"", "", "a table name is empty"}}},
		{"pin without a shard", ok, map[string]TableSpec{"shop.config": {Strategy: Pin}},
			[]problem{{"shop.config", "shard", "required: the name of one of the shards " + known}}},
		{"pin to an unknown shard", ok, map[string]TableSpec{"shop.config": {Strategy: Pin, Shard: "s9"}},
			[]problem{{"shop.config", "shard", `"s9" is not one of the shards ` + known}}},
		{"range without ranges", ok, map[string]TableSpec{"shop.events": {Strategy: Range}},
			[]problem{{"shop.events", "ranges", "required by strategy range: at least one range"}}},
		{"range with the unbounded range not last", ok, map[string]TableSpec{"shop.events": {Strategy: Range,
			Ranges: []RangeBound{{Below: "", Shard: "s0"}, {Below: "10", Shard: "s1"}, {Shard: "s1"}}}},
			[]problem{{"shop.events", "ranges[0].below", "required: only the last range may be unbounded"}}},
		{"range whose last range is bounded", ok, map[string]TableSpec{"shop.events": {Strategy: Range,
			Ranges: []RangeBound{{Below: "m", Shard: "s0"}}}},
			[]problem{{"shop.events", "ranges[0].below", `the last range must be unbounded (no below), or values at or above "m" have no shard`}}},
		{"range with equal int bounds", ok, map[string]TableSpec{"shop.events": {Strategy: Range, KeyKind: KeyInt,
			Ranges: []RangeBound{{Below: "100", Shard: "s0"}, {Below: "0100", Shard: "s1"}, {Shard: "s1"}}}},
			[]problem{{"shop.events", "ranges[1].below", `"0100" is not above the previous bound "100" (as integers)`}}},
		{"range with int bounds that go down", ok, map[string]TableSpec{"shop.events": {Strategy: Range, KeyKind: KeyInt,
			Ranges: []RangeBound{{Below: "10", Shard: "s0"}, {Below: "-5", Shard: "s1"}, {Shard: "s0"}}}},
			[]problem{{"shop.events", "ranges[1].below", `"-5" is not above the previous bound "10"`}}},
		{"range with byte bounds that go down", ok, map[string]TableSpec{"shop.events": {Strategy: Range,
			Ranges: []RangeBound{{Below: "m", Shard: "s0"}, {Below: "c", Shard: "s1"}, {Shard: "s0"}}}},
			[]problem{{"shop.events", "ranges[1].below", `"c" is not above the previous bound "m" (byte-wise)`}}},
		{"range with a bound that is not an integer", ok, map[string]TableSpec{"shop.events": {Strategy: Range, KeyKind: KeyInt,
			Ranges: []RangeBound{{Below: "1e6", Shard: "s0"}, {Shard: "s1"}}}},
			[]problem{{"shop.events", "ranges[0].below", `"1e6" is not an integer`}}},
		{"range to an unknown shard", ok, map[string]TableSpec{"shop.events": {Strategy: Range,
			Ranges: []RangeBound{{Below: "m", Shard: "s0"}, {Shard: "east"}}}},
			[]problem{{"shop.events", "ranges[1].shard", `"east" is not one of the shards ` + known}}},
		{"range without a shard", ok, map[string]TableSpec{"shop.events": {Strategy: Range,
			Ranges: []RangeBound{{Below: "m"}, {Shard: "s1"}}}},
			[]problem{{"shop.events", "ranges[0].shard", "required: the name of one of the shards"}}},
		{"list without values", ok, map[string]TableSpec{"shop.stores": {Strategy: List, Default: "s0"}},
			[]problem{{"shop.stores", "values", "required by strategy list: at least one value"}}},
		{"list value to an unknown shard", ok, map[string]TableSpec{"shop.stores": {Strategy: List,
			Values: []ListValue{{"us", "s0"}, {"eu", "s7"}}}},
			[]problem{{"shop.stores", "values[1].shard", `"s7" is not one of the shards ` + known}}},
		{"list default to an unknown shard", ok, map[string]TableSpec{"shop.stores": {Strategy: List,
			Values: []ListValue{{"us", "s0"}}, Default: "rest"}},
			[]problem{{"shop.stores", "default", `"rest" is not one of the shards`}}},
		{"list value listed twice", ok, map[string]TableSpec{"shop.stores": {Strategy: List,
			Values: []ListValue{{"EU", "s0"}, {"eu", "s1"}, {"EU", "s1"}}}},
			[]problem{{"shop.stores", "values[2].value", `"EU" is already listed as values[0]; list each value once`}}},
		{"int list with a value that is not an integer", ok, map[string]TableSpec{"shop.stores": {Strategy: List, KeyKind: KeyInt,
			Values: []ListValue{{"7", "s0"}, {"seven", "s1"}}}},
			[]problem{{"shop.stores", "values[1].value", `"seven" is not an integer`}}},
		{"int list with one integer twice", ok, map[string]TableSpec{"shop.stores": {Strategy: List, KeyKind: KeyInt,
			Values: []ListValue{{"7", "s0"}, {"007", "s1"}}}},
			[]problem{{"shop.stores", "values[1].value", `"007" is already listed as values[0] ("7", the same integer)`}}},
		{"int list with one value written twice is one problem", ok, map[string]TableSpec{"shop.stores": {Strategy: List, KeyKind: KeyInt,
			Values: []ListValue{{"7", "s0"}, {"7", "s1"}}}},
			[]problem{{"shop.stores", "values[1].value", `"7" is already listed as values[0]; list each value once`}}},
		{"hash with ranges", ok, map[string]TableSpec{"shop.users": {Strategy: Hash, Ranges: []RangeBound{{Shard: "s0"}}}},
			[]problem{{"shop.users", "ranges", "belongs to strategy range only, and the strategy is hash: remove it or change the strategy"}}},
		{"pin with list values", ok, map[string]TableSpec{"shop.users": {Strategy: Pin, Shard: "s0", Values: []ListValue{{"a", "s1"}}}},
			[]problem{{"shop.users", "values", "belongs to strategy list only, and the strategy is pin: remove it or change the strategy"}}},
		{"hash with a default shard", ok, map[string]TableSpec{"shop.users": {Strategy: Hash, Default: "s0"}},
			[]problem{{"shop.users", "default", "belongs to strategy list only, and the strategy is hash: remove it or change the strategy"}}},
		{"broadcast with a pinned shard", ok, map[string]TableSpec{"shop.countries": {Strategy: Broadcast, Shard: "s0"}},
			[]problem{{"shop.countries", "shard", "belongs to strategy pin only, and the strategy is broadcast: remove it or change the strategy"}}},
		{"every problem at once", []Shard{{Name: "a", Start: 0, End: 0x40 << 56}, {Name: "b", Start: 0x80 << 56, End: 0}},
			map[string]TableSpec{"t1": {Strategy: Pin, Shard: "c"}, "t2": {Strategy: "mod"}},
			[]problem{{"", "shards[1].keyspace", "no shard owns 40-80"}, {"t1", "shard", `"c" is not one of the shards ("a", "b")`}, {"t2", "strategy", `"mod" is not one of`}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := New(tc.shards, tc.tables)
			if err == nil {
				t.Fatalf("New succeeded (%v), want an error", r)
			}
			got := problems(err)
			for _, w := range tc.want {
				if !reported(got, w) {
					t.Errorf("problem not reported\n got: %v\nwant: %+v", err, w)
				}
			}
			if len(got) != len(tc.want) {
				t.Errorf("%d problems reported, want %d (each once):\n%v", len(got), len(tc.want), err)
			}
		})
	}
}

func TestFieldErrorReadsWithoutMapping(t *testing.T) {
	_, err := New(evenShards(2), map[string]TableSpec{"shop.events": {Strategy: Range, Ranges: []RangeBound{{Below: "m", Shard: "s0"}, {Shard: "east"}}}})
	want := `route: table "shop.events": ranges[1].shard: "east" is not one of the shards ("s0", "s1")`
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant %s", err, want)
	}
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Table != "shop.events" || fe.Field != "ranges[1].shard" {
		t.Fatalf("errors.As found %+v", fe)
	}
	err = CheckKeyspace([]Shard{{Name: "a", End: 0x40 << 56}, {Name: "b", Start: 0x80 << 56}})
	if want := `route: shards[1].keyspace: no shard owns 40-80`; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("err = %v\nwant %s...", err, want)
	}
}

func TestCheckTableLeavesTheKeyKindToNew(t *testing.T) {
	// "9" then "10" ascend as integers but not byte-wise: only the key kind can tell.
	spec := TableSpec{Strategy: Range, Ranges: []RangeBound{{Below: "9", Shard: "s0"}, {Below: "10", Shard: "s1"}, {Shard: "s0"}}}
	if err := CheckTable("t", spec, []string{"s0", "s1"}); err != nil {
		t.Fatalf("CheckTable: %v", err)
	}
	spec.KeyKind = KeyInt
	mustNew(t, evenShards(2), map[string]TableSpec{"t": spec})
	spec.Ranges[0].Shard = "s9"
	if got := problems(CheckTable("t", spec, []string{"s0", "s1"})); !reported(got, problem{"t", "ranges[0].shard", `"s9" is not one of the shards`}) || len(got) != 1 {
		t.Fatalf("CheckTable reported %v", got)
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
		{Shard: "s0"},
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
		{StringValue("t"), "s0"}, // the last range is unbounded
		{StringValue("zebra"), "s0"},
		{BytesValue([]byte{0xff}), "s0"},
		{StringValue("é"), "s0"},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%s goes to %s", tc.v, tc.want), func(t *testing.T) {
			if got := routeOne(t, r, "t", tc.v); got != tc.want {
				t.Errorf("got %s", got)
			}
		})
	}
}

func TestRouteList(t *testing.T) {
	values := []ListValue{{"us", "s0"}, {"eu", "s1"}, {"", "s0"}}
	withDefault := TableSpec{Strategy: List, Values: values, Default: "s2"}
	without := TableSpec{Strategy: List, Values: values}
	ints := TableSpec{Strategy: List, KeyKind: KeyInt, Values: []ListValue{{"007", "s1"}, {"-5", "s2"}, {"0", "s0"}}}
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
