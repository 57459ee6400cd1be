package config

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cleave-dev/cleave/route"
)

// The routing rules (strategies, their ranges and lists, the shards' keyspace) are route's:
// config only converts its tables and shards into route's types, asks route, and names each
// problem route finds by its config key. Config checks what route cannot know: whether
// every shard or none sets keyspace, the shard key column, and the uniqueness of its own
// names.

// validateKeyspaces checks shards[*].keyspace: either no shard sets it (an even split in
// shard order) or every shard does, each one parses as a key range, and together they cover
// the 64-bit hash keyspace exactly once (route.CheckKeyspace). Every problem names the
// shards[i].keyspace key.
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
	if set != len(c.Shards) {
		var errs []error
		for i, s := range c.Shards {
			if s.Keyspace == "" {
				errs = append(errs, fmt.Errorf("shards[%d].keyspace: required because other shards set one: either every shard names its keyspace range or none does (an even split in shard order)", i))
			}
		}
		return errors.Join(errs...)
	}
	shards, err := c.RouteShards()
	if err != nil {
		return err
	}
	return errors.Join(c.routeErrors(route.CheckKeyspace(shards), "")...)
}

// validateTableRouting checks the routing of tables[i] with route's rules: those that hold
// whatever the shard key's type (route.CheckTable). What depends on the column's type is
// checked when the Router is built.
func (c *Config) validateTableRouting(i int) []error {
	names := make([]string, len(c.Shards))
	for j, s := range c.Shards {
		names[j] = s.Name
	}
	t := &c.Tables[i]
	return c.routeErrors(route.CheckTable(t.Name, t.RouteSpec(route.KeyBytes), names), fmt.Sprintf("tables[%d]", i))
}

// tableKeys spells the fields of route.TableSpec whose config key differs from route's name
// for them; the others (strategy, ranges[i].below, values[i].shard, shard, ...) are the same.
var tableKeys = map[string]string{"default": "default_shard"}

// routeErrors names each of route's problems in err by its config key: a table's field
// under table (its "tables[i]" key; "" looks the table up by name), a shard's field as it
// is, since route's shards are config's in the same order. Other errors are kept.
func (c *Config) routeErrors(err error, table string) []error {
	if err == nil {
		return nil
	}
	all := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		all = j.Unwrap()
	}
	out := make([]error, 0, len(all))
	for _, e := range all {
		var fe *route.FieldError
		if !errors.As(e, &fe) {
			out = append(out, e)
			continue
		}
		key := fe.Field
		if fe.Table != "" {
			prefix := table
			if prefix == "" {
				prefix = c.tableKey(fe.Table)
			}
			field, rest, _ := strings.Cut(fe.Field, ".")
			if k, ok := tableKeys[field]; ok {
				field = k
			}
			key = prefix + "." + field
			if rest != "" {
				key += "." + rest
			}
		}
		out = append(out, &keyError{key: key, err: fe})
	}
	return out
}

// tableKey is the key of the table named name: "tables[i]", or its name when no table has it.
func (c *Config) tableKey(name string) string {
	for i := range c.Tables {
		if c.Tables[i].Name == name {
			return fmt.Sprintf("tables[%d]", i)
		}
	}
	return fmt.Sprintf("table %q", name)
}

// keyError is a problem that route found, named by the config key of its field. It unwraps
// to route's *route.FieldError.
type keyError struct {
	key string
	err *route.FieldError
}

func (e *keyError) Error() string { return e.key + ": " + e.err.Msg }
func (e *keyError) Unwrap() error { return e.err }
