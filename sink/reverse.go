package sink

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"github.com/cleave-dev/cleave/event"
	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/shardmeta"
)

// Reverse makes a sink apply the changes of the shards back to the monolith, for a
// rollback after a cut-over (see the package comment, Reverse replication). The sink's
// shard is then the monolith: the configuration the sink is given names it as its shard
// (its name and DSN), and its tables and topic prefix are those of the reverse captures,
// whose source is a shard.
type Reverse struct {
	// Epoch is the id of the cut-over whose shards are replicated back (the id of its row
	// in the source's _cleave.cutover journal). Every change the sink applies is stored
	// with it: a change of a later cut-over's reverse replication always replaces one of
	// an earlier cut-over's, whatever the two shards' binlog positions. It must be at
	// least 1, and the same for every reverse sink of one cut-over.
	Epoch uint64
}

// ApplierVariable is the session variable every sink sets: the write guards on the moved
// tables (cutover's on the source after the switch, rollback's on the shards after it)
// refuse every writer but a session where it is set.
const ApplierVariable = "@cleave_apply"

// reverseInit is what a reverse applier's session sets besides the sink's own settings:
// foreign keys are not checked, because the tables' streams are
// applied each in its own order (a child row may arrive before its parent, or a parent's
// delete before its children's), and the shards, where those rules held when the changes
// were made, are the truth the monolith follows. With the checks off no ON DELETE CASCADE
// runs on the monolith either: the children's deletes come from the shards' binlogs.
const reverseInit = "SET SESSION foreign_key_checks = 0"

// rowKey encodes a row's primary key for _cleave.row_versions: each key column's
// canonical bytes (what the server renders for the value, see event.Canonical) after their
// length as a uvarint. The lengths make it collision-free: no two different keys of one
// table encode alike.
func (sh *shape) rowKey(t *table, row event.Row) ([]byte, error) {
	var b []byte
	for _, i := range sh.def.PK {
		c := &sh.def.Columns[i]
		v, ok := row[c.Name]
		if !ok {
			return nil, fmt.Errorf("row image lacks primary key column %s", c.Name)
		}
		raw, notNull, err := event.Canonical(c, v)
		if err != nil {
			return nil, fmt.Errorf("primary key: %w", err)
		}
		if !notNull {
			return nil, fmt.Errorf("primary key column %s is NULL in the row image", c.Name)
		}
		b = binary.AppendUvarint(b, uint64(len(raw)))
		b = append(b, raw...)
	}
	if len(b) > shardmeta.RowKeyMax {
		return nil, fmt.Errorf("table %s: the row's primary key takes %d bytes, more than the %d that %s.%s can key: reverse replication cannot keep this row's version; leave the table out of reverse replication (or apply this row's change to the monolith by hand)",
			t.name, len(b), shardmeta.RowKeyMax, shardmeta.Database, shardmeta.RowVersions)
	}
	return b, nil
}

// applyReverse writes a table's rows to the monolith one by one, in the order their
// changes came in: for each, it reads the row's stored (epoch, version) with a locking
// read, skips the change unless it is newer, and otherwise writes the row (an upsert of
// every column it carries, or a delete by primary key) and then its new (epoch, version).
// A delete's entry stays as a tombstone. A row the monolith refuses for good is recorded
// in res.dead: a failed statement undoes itself (InnoDB rolls back the statement, its
// triggers included), and the row's entry is then not written, so no savepoint is needed.
func (a *applier) applyReverse(ctx context.Context, c *applierConn, tpl *tablePlan, res *result) (stale int, err error) {
	s := a.s
	t, sh := tpl.t, tpl.sh
	epoch := s.opts.Reverse.Epoch
	ops := make([]*rowOp, 0, len(tpl.order))
	for _, k := range tpl.order {
		ops = append(ops, tpl.ops[k])
	}
	// The newest change of each row, in stream order: rows of one table can still depend
	// on each other through the monolith's unique keys.
	sort.Slice(ops, func(i, j int) bool { return ops[i].rev.seq < ops[j].rev.seq })
	gen := strconv.FormatInt(sh.gen, 10)
	for _, op := range ops {
		var storedEpoch, storedVersion uint64
		err := c.stmts.scanRow(ctx, "r\x00versions", selectRowVersionSQL, []any{t.db, t.tname, op.rev.key}, &storedEpoch, &storedVersion)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			// Last written by the monolith itself: every reverse change is newer.
		case err != nil:
			return 0, fmt.Errorf("read the row version of %s: %w", t.name, err)
		case !newerVersion(epoch, op.vkey.u, storedEpoch, storedVersion):
			stale++
			continue
		}
		if op.del {
			_, err = c.stmts.exec(ctx, "r\x00d\x00"+t.name+"\x00"+gen, true, func() string { return reverseDeleteSQL(t, sh) }, op.args)
		} else {
			typed := strings.IndexByte(op.sig, 0) >= 0 // JSON expressions vary: not prepared
			_, err = c.stmts.exec(ctx, "r\x00u\x00"+t.name+"\x00"+gen+"\x00"+op.sig, !typed, func() string { return reverseUpsertSQL(s.flavor, t, sh, op.sig) }, op.args)
		}
		if err != nil {
			if !mysqlx.Rejected(err) {
				return 0, fmt.Errorf("write %s on the monolith: %w", t.name, err)
			}
			res.dead = append(res.dead, &deadLetter{m: op.m, ev: op.ev, t: t, err: err})
			continue
		}
		if _, err := c.stmts.exec(ctx, "r\x00store", true, func() string { return storeRowVersionSQL(s.flavor) }, []any{t.db, t.tname, op.rev.key, epoch, op.vkey.u}); err != nil {
			return 0, fmt.Errorf("store the row version of %s: %w", t.name, err)
		}
	}
	return stale, nil
}

// newerVersion orders (epoch, version) pairs: by epoch, then by version.
func newerVersion(epoch, version, storedEpoch, storedVersion uint64) bool {
	if epoch != storedEpoch {
		return epoch > storedEpoch
	}
	return version > storedVersion
}

var selectRowVersionSQL = "SELECT epoch, version FROM " + mysqlx.QuoteTable(shardmeta.Database, shardmeta.RowVersions) +
	" WHERE db = ? AND tbl = ? AND row_key = ? FOR UPDATE"

// storeRowVersionSQL writes a row's (epoch, version), unconditionally: the locking read
// before it decided, and holds the entry until the commit.
func storeRowVersionSQL(f mysqlx.Flavor) string {
	return "INSERT INTO " + mysqlx.QuoteTable(shardmeta.Database, shardmeta.RowVersions) +
		" (db, tbl, row_key, epoch, version) VALUES (?, ?, ?, ?, ?)" + f.UpsertRowAlias() +
		" ON DUPLICATE KEY UPDATE epoch = " + f.UpsertValue("`epoch`") + ", version = " + f.UpsertValue("`version`")
}

// reverseUpsertSQL writes one row of signature sig to the monolith, every column it
// carries, with no version guard (the caller checked row_versions). As in upsertSQL, an
// ON UPDATE CURRENT_TIMESTAMP column the change does not write keeps its value.
func reverseUpsertSQL(f mysqlx.Flavor, t *table, sh *shape, sig string) string {
	cols, exprs, _ := strings.Cut(sig, "\x00")
	var parts []string
	if exprs != "" {
		parts = strings.Split(exprs, "\x00")
	}
	pk := map[int]bool{}
	for _, i := range sh.def.PK {
		pk[i] = true
	}
	var names, values, sets []string
	for i := 0; i < len(cols); i++ {
		q := mysqlx.QuoteIdent(sh.def.Columns[i].Name)
		switch cols[i] {
		case '1':
			values = append(values, "?")
		case 'j':
			values = append(values, parts[0])
			parts = parts[1:]
		default:
			if c := &sh.def.Columns[i]; c.AutoUpdated && !c.Generated {
				sets = append(sets, q+" = "+t.quote+"."+q)
			}
			continue
		}
		names = append(names, q)
		if !pk[i] {
			sets = append(sets, q+" = "+f.UpsertValue(q))
		}
	}
	if len(sets) == 0 {
		// Only key columns: a row that exists is already this row.
		q := mysqlx.QuoteIdent(sh.def.Columns[sh.def.PK[0]].Name)
		sets = append(sets, q+" = "+t.quote+"."+q)
	}
	return "INSERT INTO " + t.quote + " (" + strings.Join(names, ",") + ") VALUES (" + strings.Join(values, ",") + ")" +
		f.UpsertRowAlias() + " ON DUPLICATE KEY UPDATE " + strings.Join(sets, ", ")
}

// reverseDeleteSQL deletes one row of the monolith by primary key.
func reverseDeleteSQL(t *table, sh *shape) string {
	var where []string
	for _, i := range sh.def.PK {
		where = append(where, mysqlx.QuoteIdent(sh.def.Columns[i].Name)+" = ?")
	}
	return "DELETE FROM " + t.quote + " WHERE " + strings.Join(where, " AND ")
}

// skipDDL moves a partition past a schema change without applying it: on the monolith the
// schema is the application's (cleave never alters its tables), and every shard would
// send the change again. The table's definition is read again, so rows that no longer fit
// the monolith stop the sink with the schema error that names the column.
func (a *applier) skipDDL(ctx context.Context, m *message, ev *event.Event) error {
	s := a.s
	t := s.tables[m.Topic]
	p := &plan{pos: map[tp]*position{{m.Topic, m.Partition}: {next: m.Offset + 1, version: ev.Version, tsMs: ev.Source.TsMs, hwm: m.HighWaterMark}}}
	err := s.withRetry(ctx, "move past a schema change", func(actx context.Context) error {
		tx, err := s.db.BeginTx(actx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		if err := a.writeOffsets(actx, tx, p.pos); err != nil {
			return err
		}
		return tx.Commit()
	})
	if err != nil {
		return err
	}
	a.committed(p, &result{})
	s.log.Warn("a shard changed the schema of a table; reverse replication does not apply schema changes to the monolith: make the same change there if its rows need it",
		zap.String("table", t.name), zap.String("ddl", ev.DDL), zap.Uint64("version", uint64(ev.Version)))
	return s.reloadTable(ctx, t)
}
