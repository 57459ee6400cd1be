package sink

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/cleave-dev/cleave/event"
	"github.com/cleave-dev/cleave/route"
	"github.com/cleave-dev/cleave/schema"
	"github.com/cleave-dev/cleave/shardmeta"
)

// plan is what one shard transaction does: the row writes of a run of messages, collapsed
// to the newest change per row, and the offsets those messages advance.
type plan struct {
	tables  []*tablePlan // in first-seen order
	byTable map[*table]*tablePlan
	pos     map[tp]*position
	// dead are events refused before reaching the shard (undecodable, unroutable, a value
	// the column cannot take); the shard's refusals are added while applying.
	dead []*deadLetter
	// applied counts the changes routed to this shard, by table and source operation.
	applied map[*table]map[event.Op]int
	// items are what the plan was made from, to make it again with new table shapes.
	items []item
	// seq numbers the row writes in stream order (reverse replication applies them so).
	seq int
}

// position is how far a plan takes one partition.
type position struct {
	next    int64
	version event.Version
	tsMs    int64
	hwm     int64
}

type tablePlan struct {
	t *table
	// sh is the shape the plan was made with; its statements are built from it.
	sh *shape
	// ops holds the newest change of each row, by primary key.
	ops   map[string]*rowOp
	order []string // keys in first-seen order, so statements are deterministic
}

// rowOp is one row write: an upsert of the after image, or a guarded delete.
type rowOp struct {
	del  bool
	sig  string // upsert: which columns it writes (one byte per table column; see jsonSig)
	args []any  // upsert: column values in column order, then the version; delete: key values, then the version
	vkey versionKey
	m    *message
	ev   *event.Event
	rev  *reverseRow // reverse replication only (a pointer keeps rowOp small for the others)
}

// reverseRow is what reverse replication needs of a row write besides the rest: the row's
// key in row_versions, and the change's place in the stream.
type reverseRow struct {
	key []byte
	seq int
}

// deadLetter is an event the shard cannot take, with the reason.
type deadLetter struct {
	m   *message
	ev  *event.Event
	t   *table
	err error
}

func (d *deadLetter) String() string {
	return fmt.Sprintf("event %s of %s: %v", describe(d.m, d.ev), d.t.name, d.err)
}

// item is a fetched message with its decoded event (or why it does not decode). A message
// whose key alone shows that its row belongs to another shard is not decoded at all:
// foreign is set and only its offset counts.
type item struct {
	m       *message
	ev      *event.Event
	err     error
	foreign bool
	// keyHere: the message key routed the row here (so does every image of the change).
	keyHere bool
}

// errSchema marks an event that does not fit the shard's table definition: not one bad
// row but a shard that needs its schema fixed, so it stops the sink whatever on_error says.
type errSchema struct{ msg string }

func (e *errSchema) Error() string { return e.msg }

// planItems makes the plan of items, reloading the table definitions when an event does
// not fit them: another lane or member may have applied a schema change meanwhile. It
// tries again a few times over about three seconds, as another session may be between
// running a schema change and recording it, a moment in which the shard's table and
// its record of changes disagree.
func (s *Sink) planItems(ctx context.Context, items []item) (*plan, error) {
	p, err := s.makePlan(items)
	var se *errSchema
	for wait := 100 * time.Millisecond; errors.As(err, &se); wait *= 2 {
		if rerr := s.reloadTables(ctx); rerr != nil {
			return nil, rerr
		}
		if p, err = s.makePlan(items); !errors.As(err, &se) || wait > 2*time.Second {
			break
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(wait):
		}
	}
	return p, err
}

// decode classifies a message: foreign (by its key), or decoded. dec belongs to the
// calling goroutine.
func (s *Sink) decode(m *message, dec *event.Decoder) item {
	it := item{m: m, foreign: m.foreign}
	if it.foreign {
		return it
	}
	if m.routed {
		it.keyHere = true
	} else if t := s.tables[m.Topic]; t != nil && len(m.Key) > 0 {
		if here, ok := s.routeByKey(t, m.Key); ok {
			if !here {
				it.foreign = true
				return it
			}
			it.keyHere = true
		}
	}
	if len(m.Value) > 0 {
		it.ev, it.err = dec.Decode(m.Value)
	}
	return it
}

// routeByKey routes a row change by its Kafka message key when the table's shard key is
// part of its primary key: the key then holds the shard key value, and every row image of
// the change has the same one, since an update never changes the primary key (capture
// emits a primary key change as a delete and a create, each under its own key). Most
// changes of other shards' rows are so skipped without decoding. ok is false when the key
// cannot decide.
func (s *Sink) routeByKey(t *table, key []byte) (here, ok bool) {
	sh := t.shape()
	if sh.keyIdx < 0 {
		return false, false
	}
	var raw any
	if len(sh.def.PK) == 1 && len(key) > 2 && key[0] == '[' && key[len(key)-1] == ']' && bytes.IndexAny(key[1:len(key)-1], `",[]{}`) < 0 {
		// The common single-column integer key, [42], without a JSON decoder.
		raw = json.Number(key[1 : len(key)-1])
	} else {
		vals, err := event.UnmarshalKey(key)
		if err != nil || len(vals) != len(sh.def.PK) {
			return false, false
		}
		raw = vals[sh.keyIdx]
	}
	v := route.NullValue()
	if b, notNull, err := event.Canonical(sh.shardKey, raw); err != nil {
		return false, false
	} else if notNull {
		v = route.BytesValue(b)
	}
	shards, err := s.router.Route(t.name, v)
	if err != nil {
		return false, false // the full decode reports it
	}
	for _, i := range shards {
		if i == s.shardNo {
			return true, true
		}
	}
	return false, true
}

// sameKey reports whether two row images have the same primary key values.
func sameKey(sh *shape, a, b event.Row) bool {
	if a == nil || b == nil {
		return true
	}
	for _, i := range sh.def.PK {
		n := sh.def.Columns[i].Name
		if a[n] != b[n] {
			return false
		}
	}
	return true
}

// makePlan routes and collapses the changes of items. An error is a schema mismatch.
func (s *Sink) makePlan(items []item) (*plan, error) {
	p := &plan{byTable: map[*table]*tablePlan{}, pos: map[tp]*position{}, applied: map[*table]map[event.Op]int{}, items: items}
	for _, it := range items {
		m := it.m
		key := tp{m.Topic, m.Partition}
		pos := p.pos[key]
		if pos == nil {
			pos = &position{}
			p.pos[key] = pos
		}
		pos.next = m.Offset + 1
		if m.HighWaterMark > pos.hwm {
			pos.hwm = m.HighWaterMark
		}
		t := s.tables[m.Topic]
		if t == nil || it.foreign {
			continue
		}
		if it.err != nil {
			p.dead = append(p.dead, &deadLetter{m: m, t: t, err: it.err})
			continue
		}
		ev := it.ev
		if ev == nil {
			continue // a tombstone: no change to apply
		}
		if ev.Version > pos.version {
			pos.version = ev.Version
		}
		if ev.Source.TsMs > 0 {
			pos.tsMs = ev.Source.TsMs
		}
		if ev.Op == event.OpHeartbeat {
			continue
		}
		if err := s.planRow(p, t, m, ev, it.keyHere); err != nil {
			var se *errSchema
			if errors.As(err, &se) {
				return nil, err
			}
			p.dead = append(p.dead, &deadLetter{m: m, ev: ev, t: t, err: err})
		}
	}
	return p, nil
}

// planRow routes one row change. An update whose shard key moves the row away from this
// shard is a delete here; one that moves it here is an insert here.
func (s *Sink) planRow(p *plan, t *table, m *message, ev *event.Event, keyHere bool) error {
	tpl := p.byTable[t]
	sh := t.shape()
	if tpl != nil {
		sh = tpl.sh
	}
	here := func(row event.Row) (bool, error) {
		if sh.reverse {
			return true, nil // every row on the reverse topics is the monolith's
		}
		if keyHere && (ev.Op != event.OpUpdate || sameKey(sh, ev.Before, ev.After)) {
			return true, nil
		}
		v, err := sh.shardValue(row)
		if err != nil {
			return false, err
		}
		shards, err := s.router.Route(t.name, v)
		if err != nil {
			return false, err
		}
		for _, i := range shards {
			if i == s.shardNo {
				return true, nil
			}
		}
		return false, nil
	}
	var upsert, del event.Row
	switch ev.Op {
	case event.OpCreate, event.OpRead:
		ok, err := here(ev.After)
		if err != nil {
			return err
		}
		if ok {
			upsert = ev.After
		}
	case event.OpDelete:
		ok, err := here(ev.Before)
		if err != nil {
			return err
		}
		if ok {
			del = ev.Before
		}
	case event.OpUpdate:
		afterHere, err := here(ev.After)
		if err != nil {
			return err
		}
		if ev.Before != nil {
			beforeHere, err := here(ev.Before)
			if err != nil {
				return err
			}
			if beforeHere && !afterHere {
				del = ev.Before
			} else if beforeHere && afterHere {
				// A primary key change arrives as a delete and a create; should an update
				// still carry one, the old row must go.
				kb, err1 := sh.pkKey(ev.Before)
				ka, err2 := sh.pkKey(ev.After)
				if err1 == nil && err2 == nil && kb != ka {
					del = ev.Before
				}
			}
		}
		if afterHere {
			upsert = ev.After
		}
	default:
		return fmt.Errorf("op %q has no row to apply", ev.Op)
	}
	if upsert == nil && del == nil {
		return nil
	}
	var ops []*rowOp
	if del != nil {
		op, err := s.deleteOp(t, sh, m, ev, del)
		if err != nil {
			return err
		}
		ops = append(ops, op)
	}
	if upsert != nil {
		op, err := s.upsertOp(t, sh, m, ev, upsert)
		if err != nil {
			return err
		}
		ops = append(ops, op)
	}
	if tpl == nil {
		tpl = &tablePlan{t: t, sh: sh, ops: map[string]*rowOp{}}
		p.byTable[t] = tpl
		p.tables = append(p.tables, tpl)
		p.applied[t] = map[event.Op]int{}
	}
	p.applied[t][ev.Op]++
	for _, op := range ops {
		if op.rev != nil {
			p.seq++
			op.rev.seq = p.seq
		}
		row := ev.After
		if op.del {
			row = ev.Before
		}
		k, err := sh.pkKey(row)
		if err != nil {
			return err
		}
		prev, seen := tpl.ops[k]
		if !seen {
			tpl.order = append(tpl.order, k)
		}
		// The newest change of a row wins; for equal versions the later one (stream order).
		if !seen || !op.vkey.less(prev.vkey) {
			tpl.ops[k] = op
		}
	}
	return nil
}

func (s *Sink) upsertOp(t *table, sh *shape, m *message, ev *event.Event, row event.Row) (*rowOp, error) {
	cols := sh.def.Columns
	sig := make([]byte, len(cols))
	args := make([]any, 0, len(cols)+1)
	var jsonWrites []*jsonWrite
	known := 0
	for i := range cols {
		c := &cols[i]
		v, ok := row[c.Name]
		if !ok {
			sig[i] = '0'
			continue
		}
		known++
		if c.Generated || c == sh.versionCol {
			sig[i] = '0'
			continue
		}
		if c.Kind == schema.KindJSON {
			// A MySQL JSON column: some documents are rebuilt with their scalars' types.
			w, err := jsonValueWrite(c, v, ev.JSONTypes[c.Name])
			if err != nil {
				return nil, err
			}
			if w != nil {
				sig[i] = 'j'
				jsonWrites = append(jsonWrites, w)
				args = append(args, w.args...)
				continue
			}
		}
		a, err := event.SQLArg(c, v)
		if err != nil {
			return nil, err
		}
		sig[i] = '1'
		args = append(args, a)
	}
	if known < len(row) {
		if err := s.checkUnknownColumns(t, sh, ev, row); err != nil {
			return nil, err
		}
	}
	op := &rowOp{args: args, m: m, ev: ev}
	if err := sh.version(t, op, row); err != nil {
		return nil, err
	}
	if jsonWrites != nil {
		// Not interned: documents vary in their typed scalars, and sigs would only grow.
		op.sig = string(jsonSig(sig, jsonWrites))
	} else {
		op.sig = sh.sigString(sig)
	}
	return op, nil
}

// version sets op's version: appended to its arguments for the version guard of a shard,
// or, in reverse replication, the event's version and the row's key in row_versions.
func (sh *shape) version(t *table, op *rowOp, row event.Row) error {
	if sh.reverse {
		k, err := sh.rowKey(t, row)
		if err != nil {
			return err
		}
		op.rev, op.vkey = &reverseRow{key: k}, versionKey{u: uint64(op.ev.Version)}
		return nil
	}
	varg, vkey, err := sh.rowVersion(op.ev, row)
	if err != nil {
		return err
	}
	op.args, op.vkey = append(op.args, varg), vkey
	return nil
}

func (s *Sink) deleteOp(t *table, sh *shape, m *message, ev *event.Event, row event.Row) (*rowOp, error) {
	args := make([]any, 0, len(sh.def.PK)+1)
	for _, i := range sh.def.PK {
		c := &sh.def.Columns[i]
		v, ok := row[c.Name]
		if !ok {
			return nil, fmt.Errorf("row image lacks primary key column %s", c.Name)
		}
		a, err := event.SQLArg(c, v)
		if err != nil {
			return nil, err
		}
		args = append(args, a)
	}
	op := &rowOp{del: true, args: args, m: m, ev: ev}
	if err := sh.version(t, op, row); err != nil {
		return nil, err
	}
	return op, nil
}

// checkUnknownColumns accepts event columns the shard table lacks only when a schema change
// of the table newer than the event has been applied (the column was dropped, and this
// partition is still behind the change).
func (s *Sink) checkUnknownColumns(t *table, sh *shape, ev *event.Event, row event.Row) error {
	var unknown []string
	for name := range row {
		if _, ok := sh.cols[name]; !ok && !(sh.reverse && name == shardmeta.VersionColumn) {
			// (A shard's bookkeeping column is in its events, and never on the monolith.)
			unknown = append(unknown, name)
		}
	}
	if len(unknown) == 0 || sh.ddlVersion > ev.Version {
		return nil
	}
	sort.Strings(unknown)
	if sh.reverse {
		return &errSchema{fmt.Sprintf("monolith %s: table %s has no column %s, which the shards' events of the table carry (version %s): reverse replication leaves the monolith's schema to the application; add the column to the monolith's table as the shards have it, then restart", s.shard, t.name, strings.Join(unknown, ", "), ev.Version)}
	}
	return &errSchema{fmt.Sprintf("shard %s: table %s has no column %s, which events of the table carry (version %s): align the shard's table with the source (cleave prepare), or add the column", s.shard, t.name, strings.Join(unknown, ", "), ev.Version)}
}

// columnsOf lists the columns an upsert signature writes, version column last.
func columnsOf(sh *shape, sig string) []string {
	var out []string
	for i := range sh.def.Columns {
		if sig[i] == '1' || sig[i] == 'j' {
			out = append(out, sh.def.Columns[i].Name)
		}
	}
	return append(out, sh.versionCol.Name)
}
