package config

import (
	"strings"
	"testing"

	"github.com/cleave-dev/cleave/route"
)

func routerConfig(keyspaces ...string) *Config {
	c := &Config{
		Tables: []Table{
			{Name: "shop.users", ShardKey: "id", Strategy: StrategyHash},
			{Name: "shop.invoices", ShardKey: "id", Strategy: StrategyRange, Ranges: []RangeBound{{Below: "1000", Shard: "s0"}, {Shard: "s1"}}},
			{Name: "shop.stores", ShardKey: "region", Strategy: StrategyList, Values: []ListValue{{Value: "eu", Shard: "s0"}, {Value: "us", Shard: "s1"}}, DefaultShard: "s0"},
			{Name: "shop.countries", Strategy: StrategyBroadcast},
			{Name: "shop.settings", Strategy: StrategyPin, Shard: "s1"},
		},
	}
	for i, ks := range keyspaces {
		c.Shards = append(c.Shards, Shard{Name: "s" + string(rune('0'+i)), Keyspace: ks})
	}
	return c
}

func routeTo(t *testing.T, r *route.Router, table string, v route.Value) []int {
	t.Helper()
	got, err := r.Route(table, v)
	if err != nil {
		t.Fatalf("Route(%s, %s): %v", table, v, err)
	}
	return got
}

func TestRouterConvertsEveryStrategy(t *testing.T) {
	c := routerConfig("", "")
	r, err := c.Router(map[string]route.KeyKind{"shop.invoices": route.KeyInt})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		table string
		value route.Value
		want  []int
	}{
		{"range below the bound compares as integers", "shop.invoices", route.StringValue("999"), []int{0}},
		{"range at the bound goes to the next range", "shop.invoices", route.StringValue("1000"), []int{1}},
		{"range far above compares numerically, not bytewise", "shop.invoices", route.StringValue("20"), []int{0}},
		{"list value", "shop.stores", route.StringValue("us"), []int{1}},
		{"list default", "shop.stores", route.StringValue("apac"), []int{0}},
		{"broadcast reaches every shard", "shop.countries", route.StringValue("x"), []int{0, 1}},
		{"pin", "shop.settings", route.NullValue(), []int{1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := routeTo(t, r, tc.table, tc.value)
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("got %v, want %v", got, tc.want)
				}
			}
		})
	}
}

func TestRouterHashUsesTheKeyspace(t *testing.T) {
	// Without keyspaces the split is even; with explicit ones a hash goes where its range is.
	for _, tc := range []struct {
		name      string
		keyspaces []string
	}{
		{"even split when no shard sets a keyspace", []string{"", ""}},
		{"explicit ranges, listed in reverse order", []string{"40-", "-40"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := routerConfig(tc.keyspaces...)
			r, err := c.Router(nil)
			if err != nil {
				t.Fatal(err)
			}
			shards, _ := c.RouteShards()
			for i := 0; i < 200; i++ {
				v := route.IntValue(int64(i))
				got := routeTo(t, r, "shop.users", v)
				h := route.HashKey(v.Bytes)
				if len(got) != 1 || !shards[got[0]].Contains(h) {
					t.Fatalf("value %d (hash %#x) routed to %v, whose keyspace does not hold it", i, h, got)
				}
			}
		})
	}
}

// TestRouterNamesWhatTheKeyKindRejects: what only the column's type reveals is found when
// the Router is built, and named by its config key like Validate's problems.
func TestRouterNamesWhatTheKeyKindRejects(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(c *Config)
		want   string
	}{
		{"a range bound that is not an integer", func(c *Config) { c.Tables[1].Ranges[0].Below = "abc" },
			`tables[1].ranges[0].below: "abc" is not an integer`},
		{"one integer listed twice", func(c *Config) {
			c.Tables[2].Values = []ListValue{{Value: "7", Shard: "s0"}, {Value: "007", Shard: "s1"}}
		}, `tables[2].values[1].value: "007" is already listed as values[0] ("7", the same integer)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := routerConfig("", "")
			tc.change(c)
			if err := c.Validate(); err != nil && strings.Contains(err.Error(), "tables[") {
				t.Fatalf("Validate already refuses it, without the key kind: %v", err)
			}
			_, err := c.Router(map[string]route.KeyKind{"shop.invoices": route.KeyInt, "shop.stores": route.KeyInt})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to say %s", err, tc.want)
			}
		})
	}
}

func TestValidateKeyspaces(t *testing.T) {
	cases := []struct {
		name      string
		keyspaces []string
		want      []string // substrings of the error; none means valid
	}{
		{"none set: even split", []string{"", "", ""}, nil},
		{"two halves", []string{"-80", "80-"}, nil},
		{"whole keyspace on one shard", []string{"-"}, nil},
		{"any order, uneven", []string{"c0-", "-40", "40-c0"}, nil},
		{"some set, some not", []string{"-80", ""}, []string{"shards[1].keyspace: required"}},
		{"not a range", []string{"-80", "zz-"}, []string{`shards[1].keyspace: key range "zz-": start: "zz" is not hex`}},
		{"gap between ranges", []string{"-40", "80-"}, []string{`shards[1].keyspace: no shard owns 40-80, between shard "s0" (-40) and shard "s1" (80-)`}},
		{"overlap", []string{"-90", "80-"}, []string{`shards[1].keyspace: shard "s1" (80-) overlaps shard "s0" (-90)`}},
		{"bottom not covered", []string{"10-80", "80-"}, []string{`shards[0].keyspace: no shard owns -10: the lowest, shard "s0" (10-80), must start at the bottom`}},
		{"top not covered", []string{"-80", "80-f0"}, []string{`shards[1].keyspace: no shard owns f0-: the highest, shard "s1" (80-f0), must reach the top`}},
		{"two open-ended ranges", []string{"-", "80-"}, []string{`shards[1].keyspace: shard "s1" (80-) overlaps shard "s0" (-)`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := &Config{}
			for i, ks := range tc.keyspaces {
				c.Shards = append(c.Shards, Shard{Name: "s" + string(rune('0'+i)), Keyspace: ks})
			}
			err := c.validateKeyspaces()
			if tc.want == nil {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				if _, err := c.RouteShards(); err != nil {
					t.Fatalf("RouteShards: %v", err)
				}
				if _, err := route.New(mustRouteShards(t, c), nil); err != nil {
					t.Fatalf("valid keyspaces but route.New disagrees: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func mustRouteShards(t *testing.T, c *Config) []route.Shard {
	t.Helper()
	s, err := c.RouteShards()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestValidateNamesTheKeyspaceKey(t *testing.T) {
	body := strings.Replace(validYAML, `dsn: "cleave:pw@tcp(127.0.0.1:3309)/"`, `dsn: "cleave:pw@tcp(127.0.0.1:3309)/"
    keyspace: "80-"`, 1)
	_, err := Load(writeConfig(t, body))
	if err == nil || !strings.Contains(err.Error(), "shards[0].keyspace") {
		t.Fatalf("err = %v, want it to name shards[0].keyspace", err)
	}
}

func TestCanOwn(t *testing.T) {
	c := routerConfig("", "")
	for _, tc := range []struct {
		table string
		shard string
		want  bool
	}{
		{"shop.users", "s1", true},
		{"shop.countries", "s0", true},
		{"shop.settings", "s0", false},
		{"shop.settings", "s1", true},
		{"shop.invoices", "s1", true},
		{"shop.stores", "s1", true},
	} {
		if got := c.Table(tc.table).CanOwn(tc.shard); got != tc.want {
			t.Errorf("%s on %s: CanOwn = %v, want %v", tc.table, tc.shard, got, tc.want)
		}
	}
	only := Table{Name: "a.b", Strategy: StrategyList, ShardKey: "k", Values: []ListValue{{Value: "x", Shard: "s0"}}}
	if only.CanOwn("s1") {
		t.Error("a list that names only s0 can own rows on s1")
	}
}
