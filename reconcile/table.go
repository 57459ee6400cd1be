package reconcile

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/event"
	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/route"
	"github.com/cleave-dev/cleave/schema"
	"github.com/cleave-dev/cleave/shardmeta"
)

// keyCol is one primary key column: how it is selected (raw bytes that Go can hold and
// send back) and how a held value is bound again so that the server compares it exactly as
// it orders the column.
type keyCol struct {
	col   *schema.Column
	sel   string // select expression
	param string // placeholder expression, with one "?"
	arg   func(raw []byte) (any, error)
}

var decimalType = regexp.MustCompile(`(?i)^decimal\((\d+),(\d+)\)`)

func newKeyCol(c *schema.Column) (keyCol, error) {
	q := mysqlx.QuoteIdent(c.Name)
	k := keyCol{col: c, sel: q, param: "?"}
	parseInt := func(raw []byte) (any, error) { return strconv.ParseInt(string(raw), 10, 64) }
	parseUint := func(raw []byte) (any, error) { return strconv.ParseUint(string(raw), 10, 64) }
	text := func(raw []byte) (any, error) { return string(raw), nil }
	hexArg := func(raw []byte) (any, error) { return hex.EncodeToString(raw), nil }
	switch c.Kind {
	case schema.KindInt, schema.KindYear:
		k.arg = parseInt
	case schema.KindUint:
		k.arg = parseUint
	case schema.KindBit, schema.KindEnum, schema.KindSet:
		// ENUM and SET sort by their index, not their label: compare the numbers.
		k.sel = "(" + q + "+0)"
		k.arg = parseUint
	case schema.KindFloat, schema.KindDouble:
		k.sel = "CAST(" + q + " AS DOUBLE)"
		k.arg = func(raw []byte) (any, error) { return strconv.ParseFloat(string(raw), 64) }
	case schema.KindDecimal:
		m := decimalType.FindStringSubmatch(c.ColumnType)
		if m == nil {
			m = []string{"", "65", "30"}
		}
		k.param = "CAST(? AS DECIMAL(" + m[1] + "," + m[2] + "))"
		k.arg = text
	case schema.KindDate:
		k.param = "CAST(? AS DATE)"
		k.arg = text
	case schema.KindTime:
		k.param = mysqlx.TimeParam(c.FSP)
		k.arg = text
	case schema.KindDateTime, schema.KindTimestamp:
		k.param = fmt.Sprintf("CAST(? AS DATETIME(%d))", c.FSP)
		k.arg = text
	case schema.KindString, schema.KindJSON:
		// The stored bytes travel as hex and become a string of the column's own character
		// set and collation again, so any byte sequence survives the round trip.
		k.sel = "CAST(" + q + " AS BINARY)"
		cs, coll := c.Charset, c.Collation
		if cs == "" {
			cs, coll = "utf8mb4", "utf8mb4_bin"
		}
		k.param = "CONVERT(UNHEX(?) USING " + cs + ") COLLATE " + coll
		k.arg = hexArg
	case schema.KindBinary:
		k.param = "UNHEX(?)"
		k.arg = hexArg
	default:
		return k, fmt.Errorf("primary key column %s of type %s cannot be paged by", c.Name, c.ColumnType)
	}
	return k, nil
}

// literal renders a held key value as an SQL literal for repair statements.
func (k keyCol) literal(raw []byte) string {
	switch k.col.Kind {
	case schema.KindInt, schema.KindYear, schema.KindUint, schema.KindBit, schema.KindEnum, schema.KindSet, schema.KindDecimal:
		return string(raw)
	case schema.KindFloat, schema.KindDouble:
		return string(raw)
	case schema.KindString, schema.KindJSON:
		cs := k.col.Charset
		if cs == "" {
			cs = "utf8mb4"
		}
		return "_" + cs + " X'" + hex.EncodeToString(raw) + "'"
	case schema.KindBinary:
		return "X'" + hex.EncodeToString(raw) + "'"
	}
	return "'" + string(raw) + "'" // dates and times: digits, '-', ':', '.', ' '
}

// tableInfo is what the checker knows about one configured table.
type tableInfo struct {
	cfg     *config.Table
	name    string // db.table
	db, tbl string
	quoted  string
	// replicated is set for a table every shard holds whole (route's Replicated): each
	// shard is compared with the source instead of the shards adding up to it.
	replicated bool
	def        *schema.Table
	// hashed are the source columns the row hash covers: every column, generated ones too
	// (see loadTable). written are those a repair writes: every column but the generated.
	hashed  []*schema.Column
	written []*schema.Column
	keys    []keyCol
	// shardKey is the routing column, nil for broadcast and pin.
	shardKey *schema.Column
	rowHash  string
	// canon[i] says how hashed[i]'s part is rendered on a split where the products render it
	// differently (see hash.go); goHash is set when any column needs Go: the servers then
	// send hashSels per row and Go hashes them (subHash: the first is the SHA-256 of the
	// other parts). partSels are the parts one by one (to name changed columns), canonical
	// columns as their raw text.
	canon    []canonKind
	goHash   bool
	subHash  bool
	partSels []string
	hashSels []string
	// member[i] is the condition that a row belongs on shard i (non-broadcast tables);
	// memberGo[i] is set when shard i cannot evaluate it (MD5() missing) and routing is
	// applied in Go to the rows it sends.
	member   []string
	memberGo []bool
	// shards holds per-shard facts.
	shards []shardTable
}

// shardTable is the table's definition on one shard.
type shardTable struct {
	// versionCol is the column that holds the row's version there ("" when none).
	versionCol string
	// bookkeeping is true when versionCol is cleave's _cleave_version.
	bookkeeping bool
}

// loadTable reads a table's definition on the source and checks every shard's.
//
// mixed says that the servers are not all of one product: the kinds whose text differs
// between products are then hashed in Go (markCanon).
func loadTable(ctx context.Context, cfg *config.Table, source *sql.DB, shards []*sql.DB, shardNames []string, mixed bool) (*tableInfo, error) {
	db, tbl, err := config.SplitName(cfg.Name)
	if err != nil {
		return nil, err
	}
	def, err := schema.Load(ctx, source, db, tbl)
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	t := &tableInfo{cfg: cfg, name: cfg.Name, db: db, tbl: tbl, quoted: mysqlx.QuoteTable(db, tbl),
		replicated: cfg.RouteSpec(route.KeyBytes).Replicated(), def: def}
	// Generated columns are compared too, although cleave never writes them: they are data
	// the application reads, and they can differ while every written column matches. A
	// VIRTUAL column is computed as it is read, under the checker's pinned session on both
	// sides, so it differs only when the shard's expression does (an edited shard table, or
	// a function that answers differently on the other product: JSON and regular expression
	// functions, collations). A STORED column keeps what its expression gave in the writer's
	// session: CAST(ts AS CHAR) of a TIMESTAMP stores the application's local time on the
	// source and UTC on a shard written by the sink, and only a check of the column itself
	// sees that. A repair cannot write them; the report says so (generatedNote).
	for i := range def.Columns {
		t.hashed = append(t.hashed, &def.Columns[i])
		if !def.Columns[i].Generated {
			t.written = append(t.written, &def.Columns[i])
		}
	}
	for _, i := range def.PK {
		k, err := newKeyCol(&def.Columns[i])
		if err != nil {
			return nil, fmt.Errorf("source %s: %w", cfg.Name, err)
		}
		t.keys = append(t.keys, k)
	}
	if cfg.ShardKey != "" {
		t.shardKey = def.Column(cfg.ShardKey)
		if t.shardKey == nil {
			return nil, fmt.Errorf("source %s has no column %s (its shard_key)", cfg.Name, cfg.ShardKey)
		}
	}

	var errs []error
	for i, sdb := range shards {
		sdef, err := schema.Load(ctx, sdb, db, tbl)
		if err != nil && !errors.Is(err, schema.ErrNoPrimaryKey) {
			errs = append(errs, fmt.Errorf("shard %s: %w", shardNames[i], err))
			continue
		}
		var missing []string
		for _, c := range t.hashed {
			if sdef.Column(c.Name) == nil {
				missing = append(missing, c.Name)
			}
		}
		if len(missing) == 0 {
			t.markCanon(sdef, mixed)
		}
		if len(missing) > 0 {
			errs = append(errs, fmt.Errorf("shard %s: %s lacks column(s) %s of the source: run cleave prepare", shardNames[i], cfg.Name, strings.Join(missing, ", ")))
			continue
		}
		st := shardTable{}
		if cfg.VersionColumn != "" {
			if sdef.Column(cfg.VersionColumn) != nil {
				st.versionCol = cfg.VersionColumn
			}
		} else if sdef.Column(shardmeta.VersionColumn) != nil {
			st.versionCol, st.bookkeeping = shardmeta.VersionColumn, true
		}
		t.shards = append(t.shards, st)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	t.planHash()
	return t, nil
}

// keyList is the primary key column list, for ORDER BY.
func (t *tableInfo) keyList() string {
	names := make([]string, len(t.keys))
	for i, k := range t.keys {
		names[i] = mysqlx.QuoteIdent(k.col.Name)
	}
	return strings.Join(names, ",")
}

// keySelect is the select list of the key columns.
func (t *tableInfo) keySelect() string {
	sels := make([]string, len(t.keys))
	for i, k := range t.keys {
		sels[i] = k.sel
	}
	return strings.Join(sels, ",")
}

// shardKeySelect selects the shard key's canonical bytes (what routing sees), or NULL.
func (t *tableInfo) shardKeySelect() string {
	if t.shardKey == nil {
		return "NULL"
	}
	return "CAST(" + mysqlx.QuoteIdent(t.shardKey.Name) + " AS BINARY)"
}

// cmp builds "key OP bound" over the (composite) key in the expanded form that MariaDB's
// range optimizer turns into an index range (it does not for row constructors):
//
//	(a > ?) OR (a = ? AND b > ?)                 key >  bound
//	(a < ?) OR (a = ? AND b <= ?)                key <= bound
func (t *tableInfo) cmp(bound [][]byte, strict, last string) (string, []any, error) {
	var ors []string
	var args []any
	for i := range t.keys {
		var ands []string
		for j := 0; j < i; j++ {
			ands = append(ands, mysqlx.QuoteIdent(t.keys[j].col.Name)+" = "+t.keys[j].param)
			a, err := t.keys[j].arg(bound[j])
			if err != nil {
				return "", nil, fmt.Errorf("key column %s value %q: %w", t.keys[j].col.Name, bound[j], err)
			}
			args = append(args, a)
		}
		op := strict
		if i == len(t.keys)-1 {
			op = last
		}
		ands = append(ands, mysqlx.QuoteIdent(t.keys[i].col.Name)+" "+op+" "+t.keys[i].param)
		a, err := t.keys[i].arg(bound[i])
		if err != nil {
			return "", nil, fmt.Errorf("key column %s value %q: %w", t.keys[i].col.Name, bound[i], err)
		}
		args = append(args, a)
		ors = append(ors, "("+strings.Join(ands, " AND ")+")")
	}
	return "(" + strings.Join(ors, " OR ") + ")", args, nil
}

// keyRange is a half-open range of primary keys: (Lower, Upper]; nil bounds are open.
type keyRange struct {
	Lower, Upper [][]byte
}

// where renders the range as a condition.
func (t *tableInfo) where(r keyRange) (string, []any, error) {
	var conds []string
	var args []any
	if r.Lower != nil {
		c, a, err := t.cmp(r.Lower, ">", ">")
		if err != nil {
			return "", nil, err
		}
		conds, args = append(conds, c), append(args, a...)
	}
	if r.Upper != nil {
		c, a, err := t.cmp(r.Upper, "<", "<=")
		if err != nil {
			return "", nil, err
		}
		conds, args = append(conds, c), append(args, a...)
	}
	if len(conds) == 0 {
		return "TRUE", nil, nil
	}
	return strings.Join(conds, " AND "), args, nil
}

// keysWhere renders "key IN (keys)" for a batch of keys.
func (t *tableInfo) keysWhere(keys [][][]byte) (string, []any, error) {
	var ors []string
	var args []any
	for _, key := range keys {
		var ands []string
		for i, k := range t.keys {
			ands = append(ands, mysqlx.QuoteIdent(k.col.Name)+" = "+k.param)
			a, err := k.arg(key[i])
			if err != nil {
				return "", nil, fmt.Errorf("key column %s value %q: %w", k.col.Name, key[i], err)
			}
			args = append(args, a)
		}
		ors = append(ors, "("+strings.Join(ands, " AND ")+")")
	}
	if len(ors) == 0 {
		return "FALSE", nil, nil
	}
	return strings.Join(ors, " OR "), args, nil
}

// encodeKey turns held key values into the report's form, the change event's encoding
// (what a message key holds); decodeKey is its inverse.
func (t *tableInfo) encodeKey(raw [][]byte) []any {
	out := make([]any, len(raw))
	for i, k := range t.keys {
		var held any = raw[i]
		if kind := k.col.Kind; kind == schema.KindEnum || kind == schema.KindSet {
			// Held as the index or bit mask (col+0): the event names the labels.
			if u, err := strconv.ParseUint(string(raw[i]), 10, 64); err == nil {
				held = int64(u)
			}
		}
		v, err := event.Encode(k.col, held)
		if err != nil {
			v = hex.EncodeToString(raw[i])
		}
		out[i] = v
	}
	return out
}

// decodeKey turns a change event's message key (event.Key: the JSON array of the primary
// key's values in the event encoding) into held key values, the inverse of encodeKey: the
// bytes keySelect reads for the row by key (readByKeys), so that mapKey finds the row when
// it is read back. Those reads have arguments, so they are prepared statements whose rows
// come in the binary protocol: numbers arrive as numbers and database/sql writes them in
// Go's text (a double as strconv's shortest 'g'), which is what this writes too.
func (t *tableInfo) decodeKey(msg []byte) ([][]byte, error) {
	vals, err := event.UnmarshalKey(msg)
	if err != nil {
		return nil, fmt.Errorf("key of %s: %w", t.name, err)
	}
	if len(vals) != len(t.keys) {
		return nil, fmt.Errorf("key %s has %d values, the primary key of %s has %d columns", msg, len(vals), t.name, len(t.keys))
	}
	out := make([][]byte, len(vals))
	for i, k := range t.keys {
		b, err := heldValue(k.col, vals[i])
		if err != nil {
			return nil, fmt.Errorf("key %s of %s: column %s (%s): %w", msg, t.name, k.col.Name, k.col.ColumnType, err)
		}
		out[i] = b
	}
	return out, nil
}

// heldValue is one event-encoded key value as keyCol's select expression reads it.
func heldValue(col *schema.Column, v any) ([]byte, error) {
	if v == nil {
		return nil, errors.New("NULL in a primary key")
	}
	num, isNum := v.(json.Number)
	str, isStr := v.(string)
	switch col.Kind {
	case schema.KindInt, schema.KindYear:
		if !isNum {
			return nil, fmt.Errorf("%v is not an integer", v)
		}
		i, err := strconv.ParseInt(string(num), 10, 64)
		if err != nil {
			return nil, err
		}
		return strconv.AppendInt(nil, i, 10), nil
	case schema.KindUint, schema.KindBit:
		if !isNum {
			return nil, fmt.Errorf("%v is not an unsigned integer", v)
		}
		u, err := strconv.ParseUint(string(num), 10, 64)
		if err != nil {
			return nil, err
		}
		return strconv.AppendUint(nil, u, 10), nil
	case schema.KindEnum:
		// Selected as its index (col+0); the event holds the label, "" for index 0.
		if !isStr {
			return nil, fmt.Errorf("%v is not an enum label", v)
		}
		if str == "" {
			return []byte("0"), nil
		}
		for i, e := range col.Elements {
			if e == str {
				return strconv.AppendInt(nil, int64(i+1), 10), nil
			}
		}
		return nil, fmt.Errorf("%q is not one of its labels", str)
	case schema.KindSet:
		// Selected as its bit mask (col+0); the event holds the labels joined by ",".
		if !isStr {
			return nil, fmt.Errorf("%v is not a set of labels", v)
		}
		var mask uint64
		if str != "" {
		labels:
			for _, l := range strings.Split(str, ",") {
				for i, e := range col.Elements {
					if e == l {
						mask |= 1 << i
						continue labels
					}
				}
				return nil, fmt.Errorf("%q is not one of its labels", l)
			}
		}
		return strconv.AppendUint(nil, mask, 10), nil
	case schema.KindFloat, schema.KindDouble:
		if !isNum {
			return nil, fmt.Errorf("%v is not a number", v)
		}
		bits := 64
		if col.Kind == schema.KindFloat {
			bits = 32
		}
		f, err := strconv.ParseFloat(string(num), bits)
		if err != nil {
			return nil, err
		}
		// Selected as CAST(col AS DOUBLE): a FLOAT's exact value as a double.
		return strconv.AppendFloat(nil, f, 'g', -1, 64), nil
	case schema.KindDecimal, schema.KindDate, schema.KindTime, schema.KindDateTime, schema.KindTimestamp:
		if !isStr {
			return nil, fmt.Errorf("%v is not text", v)
		}
		return []byte(str), nil
	case schema.KindString, schema.KindJSON, schema.KindBinary:
		// Selected as the stored bytes: text in the column's character set, binary decoded.
		if !isStr {
			return nil, fmt.Errorf("%v is not text", v)
		}
		b, _, err := event.Canonical(col, v)
		return b, err
	}
	return nil, fmt.Errorf("no key form for kind %s", col.Kind)
}

// mapKey is a map key for held key values: each value length-prefixed, so that composite
// keys cannot run into each other.
func mapKey(raw [][]byte) string {
	var b bytes.Buffer
	var n [binary.MaxVarintLen64]byte
	for _, v := range raw {
		b.Write(n[:binary.PutUvarint(n[:], uint64(len(v)))])
		b.Write(v)
	}
	return b.String()
}

// routeValue is a held shard key as routing sees it.
func routeValue(raw []byte, null bool) route.Value {
	if null {
		return route.NullValue()
	}
	return route.BytesValue(raw)
}

func cloneBytes(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}
