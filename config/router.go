package config

import (
	"errors"
	"fmt"

	"github.com/cleave-dev/cleave/route"
)

// RouteShards converts the shards into route's form: each shard's keyspace range, parsed
// from shards[i].keyspace, or an even split of the keyspace in shard order when no shard
// sets one. Every keyspace that does not parse is named by its key.
func (c *Config) RouteShards() ([]route.Shard, error) {
	out := make([]route.Shard, len(c.Shards))
	even := true
	for _, s := range c.Shards {
		if s.Keyspace != "" {
			even = false
		}
	}
	var split [][2]uint64
	if even {
		split = route.EvenKeyspace(len(c.Shards))
	}
	var errs []error
	for i, s := range c.Shards {
		out[i].Name = s.Name
		if even {
			out[i].Start, out[i].End = split[i][0], split[i][1]
			continue
		}
		start, end, err := route.ParseKeyRange(s.Keyspace)
		if err != nil {
			errs = append(errs, fmt.Errorf("shards[%d].keyspace: %w", i, err))
			continue
		}
		out[i].Start, out[i].End = start, end
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// RouteSpec converts the routing of one table into route's form. kind says how its shard
// key compares (route.KeyInt for integer columns); it matters for range and list only.
func (t *Table) RouteSpec(kind route.KeyKind) route.TableSpec {
	spec := route.TableSpec{
		Strategy: t.Strategy,
		KeyKind:  kind,
		Default:  t.DefaultShard,
		Shard:    t.Shard,
	}
	for _, r := range t.Ranges {
		spec.Ranges = append(spec.Ranges, route.RangeBound{Below: r.Below, Shard: r.Shard})
	}
	for _, v := range t.Values {
		spec.Values = append(spec.Values, route.ListValue{Value: v.Value, Shard: v.Shard})
	}
	return spec
}

// Router builds the routing function of this configuration: the shards with their
// keyspace ranges and every table's strategy, keyed by the table's db.table name. kinds
// gives the key kind of each table's shard key column (read from its schema: route.KeyInt
// for integer columns); a table missing from kinds compares its key as bytes.
//
// Validate has checked what holds whatever the key kinds; route.New checks what only they
// reveal (range bounds that are not integers, or not ascending as integers). Each of its
// problems is named by its config key, like Validate's.
func (c *Config) Router(kinds map[string]route.KeyKind) (*route.Router, error) {
	shards, err := c.RouteShards()
	if err != nil {
		return nil, err
	}
	tables := make(map[string]route.TableSpec, len(c.Tables))
	for i := range c.Tables {
		t := &c.Tables[i]
		tables[t.Name] = t.RouteSpec(kinds[t.Name])
	}
	r, err := route.New(shards, tables)
	if err != nil {
		return nil, fmt.Errorf("routing: %w", errors.Join(c.routeErrors(err, "")...))
	}
	return r, nil
}

// CanOwn reports whether any row of the table can belong to the named shard, as routing
// decides it (route.TableSpec.CanOwn).
func (t *Table) CanOwn(shard string) bool { return t.RouteSpec(route.KeyBytes).CanOwn(shard) }
