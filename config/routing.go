package config

import (
	"errors"
	"fmt"
	"sort"

	"github.com/cleave-dev/cleave/route"
)

// validateKeyspaces checks shards[*].keyspace: either no shard sets it (an even split in
// shard order) or every shard does, each one parses as a key range, and together they cover
// the 64-bit hash keyspace exactly once. Every problem names the shards[i].keyspace key.
func (c *Config) validateKeyspaces() error {
	set := 0
	for _, s := range c.Shards {
		if s.Keyspace != "" {
			set++
		}
	}
	if set == 0 {
		return nil
	}
	var errs []error
	if set != len(c.Shards) {
		for i, s := range c.Shards {
			if s.Keyspace == "" {
				errs = append(errs, fmt.Errorf("shards[%d].keyspace: required because other shards set one: either every shard names its keyspace range or none does (an even split in shard order)", i))
			}
		}
		return errors.Join(errs...)
	}

	type span struct {
		i          int
		start, end uint64 // end 0 is the top, 2^64
	}
	spans := make([]span, 0, len(c.Shards))
	for i, s := range c.Shards {
		start, end, err := route.ParseKeyRange(s.Keyspace)
		if err != nil {
			errs = append(errs, fmt.Errorf("shards[%d].keyspace: %v", i, err))
			continue
		}
		spans = append(spans, span{i, start, end})
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	sort.SliceStable(spans, func(a, b int) bool { return spans[a].start < spans[b].start })
	key := func(sp span) string { return fmt.Sprintf("shards[%d].keyspace", sp.i) }
	if first := spans[0]; first.start != 0 {
		errs = append(errs, fmt.Errorf("%s: %q starts above the bottom of the keyspace, so no shard owns %q; the lowest range must have an empty start, like \"-80\"",
			key(first), c.Shards[first.i].Keyspace, route.FormatKeyRange(0, first.start)))
	}
	for k := 1; k < len(spans); k++ {
		prev, cur := spans[k-1], spans[k]
		switch {
		case prev.end == 0 || prev.end > cur.start:
			errs = append(errs, fmt.Errorf("%s: %q overlaps %s %q; each hash must belong to exactly one shard",
				key(cur), c.Shards[cur.i].Keyspace, key(prev), c.Shards[prev.i].Keyspace))
		case prev.end < cur.start:
			errs = append(errs, fmt.Errorf("%s: no shard owns %q between %s %q and %s %q; the ranges must meet",
				key(cur), route.FormatKeyRange(prev.end, cur.start), key(prev), c.Shards[prev.i].Keyspace, key(cur), c.Shards[cur.i].Keyspace))
		}
	}
	if last := spans[len(spans)-1]; last.end != 0 {
		errs = append(errs, fmt.Errorf("%s: %q ends below the top of the keyspace, so no shard owns %q; the highest range must have an empty end, like \"80-\"",
			key(last), c.Shards[last.i].Keyspace, route.FormatKeyRange(last.end, 0)))
	}
	return errors.Join(errs...)
}
