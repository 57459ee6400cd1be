package sink

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/event"
	"github.com/cleave-dev/cleave/kafkax"
	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/route"
	"github.com/cleave-dev/cleave/schema"
	"github.com/cleave-dev/cleave/shardmeta"
)

// table is what the sink knows about one shard table: its configuration and, in cur, its
// current shape on the shard. A schema change replaces the shape; a plan keeps the shape
// it was made with, so planning and applying can overlap a reload safely.
type table struct {
	cfg   *config.Table
	name  string // db.table, the router's key
	db    string
	tname string
	topic string
	quote string // `db`.`table`
	idx   int    // position in the configuration: names the table's stale counter
	// reverse: the table is the monolith's, applied to by a reverse sink (Options.Reverse).
	reverse bool
	cur     atomic.Pointer[shape]
}

// staleVar is the session variable the table's upserts count version-check skips in.
func (t *table) staleVar() string { return "@cleave_stale_" + strconv.Itoa(t.idx) }

// shape is a table's definition on the shard and how its rows are versioned and routed.
// It is immutable.
type shape struct {
	// gen tells shapes of one table apart (prepared statements are cached by it).
	gen int64
	def *schema.Table
	// cols maps a column name to its index in def.Columns.
	cols map[string]int
	// versionCol is the column that holds the row's version on the shard.
	versionCol *schema.Column
	// bookkeeping is true when versionCol is cleave's own _cleave_version, whose value is
	// the event's version; otherwise the version is the row's own value of versionCol.
	bookkeeping bool
	// shardKey is the routing column (nil for broadcast and pin).
	shardKey *schema.Column
	// keyIdx is the position of shardKey in the primary key, or -1: when it is there, the
	// Kafka message key alone routes a row change (see routeByKey).
	keyIdx int
	// ddlVersion is the highest version of a schema change recorded on the shard for this
	// table: event columns the shard lacks are dropped only from events older than it.
	ddlVersion event.Version
	// reverse: the table is the monolith's; rows are versioned in _cleave.row_versions,
	// and versionCol is nil (a version_column is one of the application's columns there).
	reverse bool
	// uniqueSecondary (reverse only): the table has a UNIQUE key besides the primary key,
	// so its rows are written one by one in stream order (see applyReverse).
	uniqueSecondary bool
	// sigs interns upsert signatures (nearly every row of a table has the same one).
	sigs sync.Map
}

func (t *shape) sigString(sig []byte) string {
	if v, ok := t.sigs.Load(string(sig)); ok {
		return v.(string)
	}
	v, _ := t.sigs.LoadOrStore(string(sig), string(sig))
	return v.(string)
}

var shapeGen atomic.Int64

func (t *table) shape() *shape { return t.cur.Load() }

// loadTable reads the table's definition from the shard and checks that the shard can
// hold its rows: a primary key, the version column, the shard key.
func loadTable(ctx context.Context, db *sql.DB, shard, prefix string, cfg *config.Table, reverse bool) (*table, error) {
	dbName, tname, err := config.SplitName(cfg.Name)
	if err != nil {
		return nil, err
	}
	t := &table{
		cfg: cfg, name: cfg.Name, db: dbName, tname: tname,
		topic: kafkax.TableTopic(prefix, dbName, tname),
		quote: mysqlx.QuoteTable(dbName, tname), reverse: reverse,
	}
	if err := t.reload(ctx, db, shard); err != nil {
		return nil, err
	}
	return t, nil
}

// reload reads the table's shape from the shard and makes it current.
func (t *table) reload(ctx context.Context, db *sql.DB, shard string) error {
	def, err := schema.Load(ctx, db, t.db, t.tname)
	switch {
	case errors.Is(err, schema.ErrNoTable) && t.reverse:
		return fmt.Errorf("monolith %s has no table %s, which reverse replication writes back to", shard, t.name)
	case errors.Is(err, schema.ErrNoTable):
		return fmt.Errorf("shard %s has no table %s: create it (cleave prepare) before starting its sink", shard, t.name)
	case err != nil:
		return fmt.Errorf("shard %s: %w", shard, err)
	}
	sh := &shape{gen: shapeGen.Add(1), def: def, cols: make(map[string]int, len(def.Columns)), keyIdx: -1}
	for i, c := range def.Columns {
		sh.cols[c.Name] = i
	}
	if t.reverse {
		// The monolith's table as the application has it: no version column, no routing,
		// no schema changes of cleave's. Its rows' versions live in row_versions.
		sh.reverse = true
		var n int
		if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND NON_UNIQUE = 0 AND INDEX_NAME <> 'PRIMARY'",
			t.db, t.tname).Scan(&n); err != nil {
			return fmt.Errorf("monolith %s: read the unique keys of %s: %w", shard, t.name, err)
		}
		sh.uniqueSecondary = n > 0
		t.cur.Store(sh)
		return nil
	}
	vc := t.cfg.VersionColumn
	sh.bookkeeping = vc == ""
	if sh.bookkeeping {
		vc = shardmeta.VersionColumn
	}
	sh.versionCol = def.Column(vc)
	switch {
	case sh.versionCol == nil && sh.bookkeeping:
		return fmt.Errorf("shard %s: table %s has no column %s, which holds each row's version: run cleave prepare, or name an existing version column in the table's version_column", shard, t.name, vc)
	case sh.versionCol == nil:
		return fmt.Errorf("shard %s: table %s has no column %s (its version_column)", shard, t.name, vc)
	case sh.versionCol.Generated:
		return fmt.Errorf("shard %s: table %s: version column %s is a generated column; cleave must write it", shard, t.name, vc)
	case !sh.bookkeeping && !versionKind(sh.versionCol.Kind):
		return fmt.Errorf("shard %s: table %s: version_column %s is a %s column; cleave orders versions by integer, date or date-time columns only", shard, t.name, vc, sh.versionCol.Kind)
	}
	for _, i := range def.PK {
		if def.Columns[i].Name == sh.versionCol.Name {
			return fmt.Errorf("shard %s: table %s: version column %s is part of the primary key", shard, t.name, vc)
		}
	}
	if t.cfg.ShardKey != "" {
		sh.shardKey = def.Column(t.cfg.ShardKey)
		if sh.shardKey == nil {
			return fmt.Errorf("shard %s: table %s has no column %s (its shard_key)", shard, t.name, t.cfg.ShardKey)
		}
		for k, i := range def.PK {
			if &def.Columns[i] == sh.shardKey {
				sh.keyIdx = k
			}
		}
	}
	var v sql.NullInt64
	err = db.QueryRowContext(ctx, "SELECT CAST(MAX(version) AS SIGNED) FROM "+mysqlx.QuoteTable(shardmeta.Database, shardmeta.AppliedDDL)+" WHERE db = ? AND tbl = ?", t.db, t.tname).Scan(&v)
	if err != nil {
		return fmt.Errorf("shard %s: read applied schema changes of %s: %w", shard, t.name, err)
	}
	sh.ddlVersion = event.Version(v.Int64)
	t.cur.Store(sh)
	return nil
}

func versionKind(k schema.Kind) bool {
	return k.Integer() || k == schema.KindDate || k == schema.KindDateTime || k == schema.KindTimestamp
}

// keyKind is how the router compares this table's shard key.
func (t *shape) keyKind() route.KeyKind {
	if t.shardKey != nil && t.shardKey.Kind.Integer() {
		return route.KeyInt
	}
	return route.KeyBytes
}

// shardValue is the routing value of row: its shard key in canonical form.
func (t *shape) shardValue(row event.Row) (route.Value, error) {
	if t.shardKey == nil {
		return route.NullValue(), nil
	}
	v, ok := row[t.shardKey.Name]
	if !ok {
		return route.Value{}, fmt.Errorf("row image lacks the shard key column %s", t.shardKey.Name)
	}
	b, notNull, err := event.Canonical(t.shardKey, v)
	if err != nil {
		return route.Value{}, fmt.Errorf("shard key: %w", err)
	}
	if !notNull {
		return route.NullValue(), nil
	}
	return route.BytesValue(b), nil
}

// rowVersion is the version a change writes: the event's version for the bookkeeping
// column, or the row's own value of the version column, as the argument to bind and as a
// comparable key for collapsing the changes of one row.
func (t *shape) rowVersion(ev *event.Event, row event.Row) (arg any, cmp versionKey, err error) {
	if t.bookkeeping {
		return uint64(ev.Version), versionKey{u: uint64(ev.Version)}, nil
	}
	v, ok := row[t.versionCol.Name]
	if !ok || v == nil {
		return nil, versionKey{}, fmt.Errorf("version column %s is missing or NULL in the row image; a version_column must always hold a value", t.versionCol.Name)
	}
	arg, err = event.SQLArg(t.versionCol, v)
	if err != nil {
		return nil, versionKey{}, err
	}
	switch x := arg.(type) {
	case int64:
		// Shift signed values into unsigned order.
		return arg, versionKey{u: uint64(x) ^ (1 << 63)}, nil
	case uint64:
		return arg, versionKey{u: x}, nil
	case string:
		return arg, versionKey{s: x}, nil
	}
	return nil, versionKey{}, fmt.Errorf("version column %s: unexpected value %T", t.versionCol.Name, arg)
}

// versionKey orders versions: integers by u, date-time text by s (fixed-width text
// compares in time order).
type versionKey struct {
	u uint64
	s string
}

func (a versionKey) less(b versionKey) bool {
	if a.s != b.s {
		return a.s < b.s
	}
	return a.u < b.u
}

// pkKey identifies a row of the table within a batch: its primary key values in key order.
func (t *shape) pkKey(row event.Row) (string, error) {
	var b []byte
	for _, c := range t.def.PK {
		name := t.def.Columns[c].Name
		v, ok := row[name]
		if !ok {
			return "", fmt.Errorf("row image lacks primary key column %s", name)
		}
		// Length-prefixed, so that no value can run into the next.
		var text string
		switch x := v.(type) {
		case nil:
			b = append(b, 'N')
			continue
		case json.Number:
			text = string(x)
		case string:
			text = x
		default:
			text = fmt.Sprint(x)
		}
		b = strconv.AppendInt(b, int64(len(text)), 10)
		b = append(b, ':')
		b = append(b, text...)
	}
	return string(b), nil
}
