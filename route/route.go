// Package route decides which shards own a row: one pure function, route(table, shard key)
// -> shard indexes, shared by the sink (which rows to keep) and by the checker (where a row
// should be). It owns the strategies (hash, range, list, broadcast, pin), the 64-bit hash
// keyspace and its Vitess-style key ranges, and the SQL expression that computes the same
// hash on the server.
//
// Its output for a given value must never change between releases: a changed hash or a
// moved boundary would silently put existing rows on the wrong shard. testdata/hash_golden.txt
// pins it. The package never touches a database, Kafka or another cleave package; the config
// package converts its structs into the plain types here.
//
// Routing sees only the canonical bytes of the shard key (see Value), never the column type.
// A child table therefore stays with its parent when it routes on the same value with the
// same strategy (orders.user_id with users.id), provided both columns render the value the
// same way: INT and BIGINT UNSIGNED do, INT and DECIMAL(10,2) ("7" and "7.00") do not, and a
// latin1 and a utf8mb4 column hold different bytes for "é". Strings route by their stored
// bytes, not by collation: under a case-insensitive collation "A" and "a" are one key to
// the database but may land on different shards.
package route

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
)

// Strategy says how the rows of a table are spread over the shards.
type Strategy string

// The routing strategies.
const (
	// Hash places a row by HashKey of its shard key on the shards' keyspace ranges.
	Hash Strategy = "hash"
	// Range places a row by comparing its shard key with ascending boundaries.
	Range Strategy = "range"
	// List places a row by looking its shard key up in a value -> shard table.
	List Strategy = "list"
	// Broadcast gives every row to every shard (small reference tables).
	Broadcast Strategy = "broadcast"
	// Pin gives every row to one named shard.
	Pin Strategy = "pin"
)

// ByKey reports whether the strategy places a row by its shard key value (hash, range and
// list); broadcast and pin place every row alike and take no shard key.
func (s Strategy) ByKey() bool { return s == Hash || s == Range || s == List }

// KeyKind says how a shard key value compares for range routing.
type KeyKind int

const (
	// KeyBytes compares the canonical bytes byte-wise (bytes.Compare).
	KeyBytes KeyKind = iota
	// KeyInt compares signed or unsigned integers of any size numerically. It also makes
	// list values compare as integers ("007" in a list matches the value 7).
	KeyInt
)

// String returns "bytes" or "int".
func (k KeyKind) String() string {
	switch k {
	case KeyBytes:
		return "bytes"
	case KeyInt:
		return "int"
	}
	return "KeyKind(" + strconv.Itoa(int(k)) + ")"
}

// Shard is one shard with the part of the hash keyspace it owns: [Start, End) over uint64,
// End == 0 meaning 2^64 (the top).
type Shard struct {
	Name       string
	Start, End uint64
}

// Contains reports whether hash h falls in the shard's keyspace [Start, End).
func (s Shard) Contains(h uint64) bool {
	return h >= s.Start && (s.End == 0 || h < s.End)
}

// RangeBound is one range of a range-routed table: the values at or above the previous
// bound and below Below belong to Shard.
type RangeBound struct {
	// Below is the exclusive upper bound in canonical form; "" means unbounded, which the
	// last range must be and no other may be.
	Below string
	// Shard names the shard that owns the range.
	Shard string
}

// ListValue assigns one shard key value of a list-routed table to a shard.
type ListValue struct {
	// Value is the shard key value in canonical form.
	Value string
	// Shard names the shard that owns the rows with that value.
	Shard string
}

// TableSpec is the routing of one table.
type TableSpec struct {
	Strategy Strategy
	// KeyKind is how the shard key compares (Range; List canonicalises integer values).
	KeyKind KeyKind
	// Ranges (Range): ascending exclusive upper bounds, the last one unbounded.
	Ranges []RangeBound
	// Values (List): which shard each value belongs to, each value listed once.
	Values []ListValue
	// Default (List): shard for values not listed; "" makes them an error.
	Default string
	// Shard (Pin): the shard that holds every row.
	Shard string
}

// Value is a shard key value in canonical form: MySQL's own string rendering of the value,
// the bytes that CAST(col AS CHAR) and MD5(col) see on the server. That is decimal text for
// integers ("-42", "18446744073709551615"), the exact DECIMAL text with its scale ("12.50"),
// 'YYYY-MM-DD hh:mm:ss[.ffffff]' for DATETIME/TIMESTAMP (fraction digits as the column
// declares), and the stored bytes of strings and binary strings, in the column's own
// character set (a latin1 "é" is the one byte 0xe9). NULL is Null, distinct from the empty
// string.
type Value struct {
	Null  bool
	Bytes []byte
}

// NullValue is the SQL NULL shard key. It hashes to 0, sorts below every range bound, and
// goes to a list's default shard.
func NullValue() Value { return Value{Null: true} }

// BytesValue is a non-NULL value with the given canonical bytes.
func BytesValue(b []byte) Value { return Value{Bytes: b} }

// StringValue is a non-NULL value with the bytes of s.
func StringValue(s string) Value { return Value{Bytes: []byte(s)} }

// IntValue is the canonical form of a signed integer column value.
func IntValue(i int64) Value { return Value{Bytes: strconv.AppendInt(nil, i, 10)} }

// UintValue is the canonical form of an unsigned integer column value.
func UintValue(u uint64) Value { return Value{Bytes: strconv.AppendUint(nil, u, 10)} }

// String renders the value for messages: NULL, or the bytes quoted (and shortened when long).
func (v Value) String() string {
	if v.Null {
		return "NULL"
	}
	const max = 64
	if len(v.Bytes) > max {
		return strconv.Quote(string(v.Bytes[:max])) + "..."
	}
	return strconv.Quote(string(v.Bytes))
}

// Errors that Route wraps, for callers that must tell a bad row from a bad setup.
var (
	// ErrUnknownTable: Route was asked about a table the Router was not built with.
	ErrUnknownTable = errors.New("table has no routing")
	// ErrNoShard: the value has no shard (not listed in a list without default).
	ErrNoShard = errors.New("no shard for shard key value")
	// ErrBadKey: the value cannot be compared the way the table says (not an integer for
	// KeyInt).
	ErrBadKey = errors.New("shard key value does not fit the table's key kind")
)

// Router routes rows of the tables it was built with. It is immutable and safe for
// concurrent use.
type Router struct {
	shards []Shard
	// byStart holds shard indexes in keyspace order, starts[i] the Start of byStart[i].
	byStart []int
	starts  []uint64
	// one[i] is the slice {i}, and all the slice {0..n-1}: Route returns them shared so
	// that it does not allocate.
	one    [][]int
	all    []int
	tables map[string]*table
}

type table struct {
	name     string
	strategy Strategy
	kind     KeyKind
	// range
	below      [][]byte // KeyBytes bounds, excluding an unbounded last one
	belowInt   []intKey // KeyInt bounds, excluding an unbounded last one
	rangeShard []int    // shard per range, len = bounds (+1 when the last is unbounded)
	// list
	values map[string]int
	def    int // -1: none
	// pin
	pin int
}

// New checks the shards and tables and builds a Router. Shard indexes in Route's results
// are positions in shards. The shards' keyspaces must partition [0, 2^64) exactly
// (CheckKeyspace), and every table's routing must hold to CheckTable and to its key kind.
// Every problem found is reported, each a *FieldError naming the shard or table and the
// field at fault, joined.
func New(shards []Shard, tables map[string]TableSpec) (*Router, error) {
	r := &Router{
		shards: append([]Shard(nil), shards...),
		tables: make(map[string]*table, len(tables)),
	}
	var errs []error
	names := make([]string, len(shards))
	first := make(map[string]int, len(shards))
	for i, s := range shards {
		names[i] = s.Name
		field := fmt.Sprintf("shards[%d].name", i)
		switch j, dup := first[s.Name]; {
		case s.Name == "":
			errs = append(errs, &FieldError{Field: field, Msg: "required: every shard needs a name"})
		case dup:
			errs = append(errs, &FieldError{Field: field, Msg: fmt.Sprintf("%q is already the name of shards[%d]; shard names must be unique", s.Name, j)})
		default:
			first[s.Name] = i
		}
	}
	errs = append(errs, r.buildKeyspace()...)
	r.one = make([][]int, len(shards))
	r.all = make([]int, len(shards))
	for i := range shards {
		r.one[i] = r.all[i : i+1 : i+1]
		r.all[i] = i
	}

	set := newShardSet(names)
	tableNames := make([]string, 0, len(tables))
	for name := range tables {
		tableNames = append(tableNames, name)
	}
	sort.Strings(tableNames)
	for _, name := range tableNames {
		t, tErrs := compileTable(name, tables[name], set)
		errs = append(errs, tErrs...)
		if len(tErrs) == 0 {
			r.tables[name] = t
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return r, nil
}

// buildKeyspace sorts the shards by keyspace start and checks that they tile [0, 2^64).
func (r *Router) buildKeyspace() []error {
	order, errs := keyspaceOrder(r.shards)
	r.byStart = order
	r.starts = make([]uint64, len(order))
	for k, i := range order {
		r.starts[k] = r.shards[i].Start
	}
	return errs
}

// compileTable checks the routing of one table (checkTable, then what depends on its key
// kind) and builds its lookup structures.
func compileTable(name string, spec TableSpec, shards shardSet) (*table, []error) {
	if name == "" {
		return nil, []error{errors.New("route: a table name is empty")}
	}
	errs := checkTable(name, spec, shards)
	fail := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Table: name, Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	index := func(shard string) int {
		if i, ok := shards.index[shard]; ok {
			return i
		}
		return -1 // checkTable has reported it
	}
	t := &table{name: name, strategy: spec.Strategy, kind: spec.KeyKind, def: -1, pin: -1}
	if spec.KeyKind != KeyBytes && spec.KeyKind != KeyInt {
		fail("key_kind", "unknown key kind %d; want KeyBytes or KeyInt", spec.KeyKind)
		return t, errs
	}
	switch spec.Strategy {
	case Pin:
		t.pin = index(spec.Shard)
	case Range:
		compileRanges(t, spec, index, fail)
	case List:
		compileList(t, spec, index, fail)
	}
	return t, errs
}

func compileRanges(t *table, spec TableSpec, index func(string) int, fail func(string, string, ...any)) {
	for i, rb := range spec.Ranges {
		t.rangeShard = append(t.rangeShard, index(rb.Shard))
		if rb.Below == "" {
			continue
		}
		field := fmt.Sprintf("ranges[%d].below", i)
		switch t.kind {
		case KeyInt:
			k, ok := parseIntKey([]byte(rb.Below))
			if !ok {
				fail(field, "%q is not an integer, and the table's shard key compares as one", rb.Below)
				continue
			}
			if n := len(t.belowInt); n > 0 && compareIntKey(t.belowInt[n-1], k) >= 0 {
				fail(field, "%q is not above the previous bound %q (as integers); bounds must strictly increase", rb.Below, spec.Ranges[i-1].Below)
			}
			t.belowInt = append(t.belowInt, k)
		default:
			if n := len(t.below); n > 0 && string(t.below[n-1]) >= rb.Below {
				fail(field, "%q is not above the previous bound %q (byte-wise); bounds must strictly increase", rb.Below, spec.Ranges[i-1].Below)
			}
			t.below = append(t.below, []byte(rb.Below))
		}
	}
}

func compileList(t *table, spec TableSpec, index func(string) int, fail func(string, string, ...any)) {
	if spec.Default != "" {
		t.def = index(spec.Default)
	}
	t.values = make(map[string]int, len(spec.Values))
	at := make(map[string]int, len(spec.Values)) // canonical value -> its first index
	for i, lv := range spec.Values {
		key := lv.Value
		if t.kind == KeyInt {
			k, ok := parseIntKey([]byte(lv.Value))
			if !ok {
				fail(fmt.Sprintf("values[%d].value", i), "%q is not an integer, and the table's shard key compares as one", lv.Value)
				continue
			}
			key = string(k.appendCanonical(nil))
		}
		if j, dup := at[key]; dup {
			if prev := spec.Values[j].Value; prev != lv.Value { // checkTable has reported the same text
				fail(fmt.Sprintf("values[%d].value", i), "%s", listedTwice(lv.Value, j, prev))
			}
			continue
		}
		at[key] = i
		t.values[key] = index(lv.Shard)
	}
}

// Shards returns the shards in the order Route's indexes refer to.
func (r *Router) Shards() []Shard {
	return append([]Shard(nil), r.shards...)
}

// Strategy returns the strategy of table, and false when the Router does not know it.
func (r *Router) Strategy(table string) (Strategy, bool) {
	t, ok := r.tables[table]
	if !ok {
		return "", false
	}
	return t.strategy, true
}

// Route returns the indexes (into Shards) of the shards that own a row of table whose shard
// key is key: every shard for Broadcast, exactly one otherwise. The result is shared and
// must not be modified. Errors wrap ErrUnknownTable, ErrNoShard or ErrBadKey.
func (r *Router) Route(table string, key Value) ([]int, error) {
	t, ok := r.tables[table]
	if !ok {
		return nil, fmt.Errorf("route: table %q: %w; add it to the tables of the configuration", table, ErrUnknownTable)
	}
	switch t.strategy {
	case Hash:
		var h uint64
		if !key.Null {
			h = HashKey(key.Bytes)
		}
		return r.one[r.shardForHash(h)], nil
	case Broadcast:
		return r.all, nil
	case Pin:
		return r.one[t.pin], nil
	case Range:
		i, err := t.rangeIndex(key)
		if err != nil {
			return nil, err
		}
		return r.one[t.rangeShard[i]], nil
	case List:
		i, err := t.listShard(key)
		if err != nil {
			return nil, err
		}
		return r.one[i], nil
	}
	// New accepts no other strategy.
	return nil, fmt.Errorf("route: table %q: unknown strategy %q", table, t.strategy)
}

// ShardForHash returns the index of the shard whose keyspace holds h.
func (r *Router) ShardForHash(h uint64) int { return r.shardForHash(h) }

func (r *Router) shardForHash(h uint64) int {
	// Last shard whose Start <= h; starts[0] is 0, so there is one.
	lo, hi := 0, len(r.starts)
	for hi-lo > 1 {
		mid := int(uint(lo+hi) >> 1)
		if r.starts[mid] <= h {
			lo = mid
		} else {
			hi = mid
		}
	}
	return r.byStart[lo]
}

// rangeIndex is the index of the first range whose bound is above key (NULL is below all).
func (t *table) rangeIndex(key Value) (int, error) {
	n := len(t.below)
	var i int
	switch {
	case key.Null:
		i = 0
	case t.kind == KeyInt:
		k, ok := parseIntKey(key.Bytes)
		if !ok {
			return 0, fmt.Errorf("route: table %q: shard key %s is not an integer (strategy range with int keys): %w", t.name, key, ErrBadKey)
		}
		n = len(t.belowInt)
		lo, hi := 0, n
		for lo < hi {
			mid := int(uint(lo+hi) >> 1)
			if compareIntKey(k, t.belowInt[mid]) < 0 {
				hi = mid
			} else {
				lo = mid + 1
			}
		}
		i = lo
	default:
		lo, hi := 0, n
		for lo < hi {
			mid := int(uint(lo+hi) >> 1)
			if string(key.Bytes) < string(t.below[mid]) {
				hi = mid
			} else {
				lo = mid + 1
			}
		}
		i = lo
	}
	// New requires the last range to be unbounded, so every key has a range.
	return i, nil
}

func (t *table) listShard(key Value) (int, error) {
	if !key.Null {
		if i, ok := t.lookup(key.Bytes); ok {
			return i, nil
		}
	} else if t.def >= 0 {
		return t.def, nil
	}
	if t.kind == KeyInt && !key.Null {
		if _, ok := parseIntKey(key.Bytes); !ok {
			return 0, fmt.Errorf("route: table %q: shard key %s is not an integer (strategy list with int keys): %w", t.name, key, ErrBadKey)
		}
	}
	if t.def >= 0 {
		return t.def, nil
	}
	return 0, fmt.Errorf("route: table %q: shard key %s is not in the list and the list has no default shard: %w", t.name, key, ErrNoShard)
}

func (t *table) lookup(b []byte) (int, bool) {
	if t.kind != KeyInt {
		i, ok := t.values[string(b)]
		return i, ok
	}
	k, ok := parseIntKey(b)
	if !ok {
		return 0, false
	}
	var buf [48]byte
	i, ok := t.values[string(k.appendCanonical(buf[:0]))]
	return i, ok
}
