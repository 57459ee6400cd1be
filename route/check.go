package route

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// FieldError is one problem with the routing that New (or CheckTable, CheckKeyspace) was
// given, naming the field at fault, so that a caller that holds the same routing in another
// form can point at its own spelling of that field (the config package names its YAML key).
// Every problem found is reported; several are joined with errors.Join, so errors.As finds
// the first and a caller that wants each one walks the join's Unwrap() []error.
type FieldError struct {
	// Table is the table whose TableSpec holds the field; "" for a field of a shard.
	Table string
	// Field is the path of the field. For a table it is relative to its TableSpec:
	// "strategy", "key_kind", "ranges", "ranges[1].below", "ranges[1].shard", "values",
	// "values[2].value", "values[2].shard", "default" or "shard". For a shard it is relative to
	// New's shards: "shards[1].name", or "shards[1].keyspace" for its Start and End.
	Field string
	// Msg says what is wrong and what to do about it.
	Msg string
}

func (e *FieldError) Error() string {
	if e.Table != "" {
		return fmt.Sprintf("route: table %q: %s: %s", e.Table, e.Field, e.Msg)
	}
	return fmt.Sprintf("route: %s: %s", e.Field, e.Msg)
}

// CheckTable reports every problem of the routing of table over shards with the given names
// (in shard order) that holds whatever the shard key's type: the rules of New except those
// that depend on spec.KeyKind (range bounds that must ascend as the key compares, bounds and
// list values that must be integers and must not repeat as integers), which only the
// column's type reveals. The problems are *FieldError, joined; nil when there is none.
func CheckTable(table string, spec TableSpec, shards []string) error {
	return errors.Join(checkTable(table, spec, newShardSet(shards))...)
}

// strategies lists the strategies for messages.
const strategies = "hash, range, list, broadcast, pin"

// Valid reports whether s is one of the routing strategies.
func (s Strategy) Valid() bool { return s.ByKey() || s == Broadcast || s == Pin }

// shardSet is the shard names a table's routing may refer to.
type shardSet struct {
	index map[string]int // the first shard of each name
	known string         // the names, quoted, in shard order: for messages
}

func newShardSet(names []string) shardSet {
	s := shardSet{index: make(map[string]int, len(names))}
	quoted := make([]string, 0, len(names))
	for i, n := range names {
		if _, dup := s.index[n]; !dup && n != "" {
			s.index[n] = i
			quoted = append(quoted, strconv.Quote(n))
		}
	}
	s.known = strings.Join(quoted, ", ")
	return s
}

// checkTable is CheckTable with the problems unjoined.
func checkTable(table string, spec TableSpec, shards shardSet) []error {
	var errs []error
	fail := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Table: table, Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	ref := func(field, shard string) {
		if shard == "" {
			fail(field, "required: the name of one of the shards (%s)", shards.known)
		} else if _, ok := shards.index[shard]; !ok {
			fail(field, "%q is not one of the shards (%s)", shard, shards.known)
		}
	}
	if !spec.Strategy.Valid() {
		if spec.Strategy == "" {
			fail("strategy", "required: one of %s", strategies)
		} else {
			fail("strategy", "%q is not one of %s", spec.Strategy, strategies)
		}
		return errs
	}
	// Parameters of another strategy are a typo or a half-changed routing: refuse them
	// rather than route by something the operator did not mean.
	foreign := func(field string, given bool, owner Strategy) {
		if given && spec.Strategy != owner {
			fail(field, "belongs to strategy %s only, and the strategy is %s: remove it or change the strategy", owner, spec.Strategy)
		}
	}
	foreign("ranges", len(spec.Ranges) > 0, Range)
	foreign("values", len(spec.Values) > 0, List)
	foreign("default", spec.Default != "", List)
	foreign("shard", spec.Shard != "", Pin)

	switch spec.Strategy {
	case Pin:
		ref("shard", spec.Shard)
	case Range:
		if len(spec.Ranges) == 0 {
			fail("ranges", "required by strategy range: at least one range, the last one without below")
		}
		for i, rb := range spec.Ranges {
			ref(fmt.Sprintf("ranges[%d].shard", i), rb.Shard)
			last := i == len(spec.Ranges)-1
			switch {
			case rb.Below == "" && !last:
				fail(fmt.Sprintf("ranges[%d].below", i), "required: only the last range may be unbounded")
			case rb.Below != "" && last:
				// A bounded last range leaves every value at or above it without a shard:
				// new rows of a growing key would start failing one day.
				fail(fmt.Sprintf("ranges[%d].below", i), "the last range must be unbounded (no below), or values at or above %q have no shard", rb.Below)
			}
		}
	case List:
		if len(spec.Values) == 0 {
			fail("values", "required by strategy list: at least one value and its shard")
		}
		seen := make(map[string]int, len(spec.Values))
		for i, lv := range spec.Values {
			ref(fmt.Sprintf("values[%d].shard", i), lv.Shard)
			if j, dup := seen[lv.Value]; dup {
				fail(fmt.Sprintf("values[%d].value", i), "%s", listedTwice(lv.Value, j, lv.Value))
				continue
			}
			seen[lv.Value] = i
		}
		if spec.Default != "" {
			ref("default", spec.Default)
		}
	}
	return errs
}

// listedTwice is the problem of a list value that repeats values[j] (written as prev).
func listedTwice(v string, j int, prev string) string {
	if v == prev {
		return fmt.Sprintf("%q is already listed as values[%d]; list each value once", v, j)
	}
	return fmt.Sprintf("%q is already listed as values[%d] (%q, the same integer); list each value once", v, j, prev)
}
