package sink

import (
	"context"
	"encoding/binary"
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
// changes came in. The rows' stored (epoch, version) pairs are read first, with a locking
// read per reverseChunk keys; a change that is not newer is skipped, the others write the
// row (an upsert of every column it carries, or a delete by primary key), and the new pairs
// of the rows written are stored at the end, again per reverseChunk rows. The locks are
// held until the commit, so nothing else can store a pair in between. A delete's entry
// stays as a tombstone. A row the monolith refuses for good is recorded in res.dead: a
// failed statement undoes itself (InnoDB rolls back the statement, its triggers included),
// and the row's entry is then not written, so no savepoint is needed. Round trips: one per
// row, plus two per reverseChunk rows (measured: three per row before, which let the
// reverse path fall behind a shard taking 1,800 row changes/s).
//
// Unless careful, a table with no UNIQUE key besides its primary key takes its rows in
// multi-row statements instead (writeReverseBatched): each row key appears once in a plan,
// so no two of its rows can collide, and whatever the order of the statements the table
// ends as if written one by one. With another unique key a row's write could meet a row
// that an earlier change of the stream moves out of its way, so those tables, and every
// table of a careful attempt (after the monolith refused a row), go one by one.
func (a *applier) applyReverse(ctx context.Context, c *applierConn, tpl *tablePlan, res *result, careful bool) (stale int, err error) {
	t, sh := tpl.t, tpl.sh
	epoch := a.s.opts.Reverse.Epoch
	ops := make([]*rowOp, 0, len(tpl.order))
	for _, k := range tpl.order {
		ops = append(ops, tpl.ops[k])
	}
	// The newest change of each row, in stream order: rows of one table can still depend
	// on each other through the monolith's unique keys.
	sort.Slice(ops, func(i, j int) bool { return ops[i].rev.seq < ops[j].rev.seq })
	stored, err := readRowVersions(ctx, c, t, ops)
	if err != nil {
		return 0, err
	}
	live := ops[:0]
	for _, op := range ops {
		// No entry: last written by the monolith itself, and every reverse change is newer.
		if sv, ok := stored[string(op.rev.key)]; ok && !newerVersion(epoch, op.vkey.u, sv[0], sv[1]) {
			stale++
			continue
		}
		live = append(live, op)
	}
	if !careful && !sh.uniqueSecondary {
		err = a.writeReverseBatched(ctx, c, t, sh, live)
	} else {
		live, err = a.writeReverseRows(ctx, c, t, sh, live, res)
	}
	if err != nil {
		return 0, err
	}
	return stale, a.storeRowVersions(ctx, c, t, live)
}

// writeReverseRows writes ops one by one, in their order, and returns those written: a
// row the monolith refuses for good goes to res.dead instead.
func (a *applier) writeReverseRows(ctx context.Context, c *applierConn, t *table, sh *shape, ops []*rowOp, res *result) ([]*rowOp, error) {
	gen := strconv.FormatInt(sh.gen, 10)
	var written []*rowOp
	for _, op := range ops {
		var err error
		if op.del {
			_, err = c.stmts.exec(ctx, "r\x00D\x00"+t.name+"\x00"+gen+"\x001", true, func() string { return reverseDeletesSQL(t, sh, 1) }, op.args)
		} else {
			typed := strings.IndexByte(op.sig, 0) >= 0 // JSON expressions vary: not prepared
			_, err = c.stmts.exec(ctx, "r\x00U\x00"+t.name+"\x00"+gen+"\x00"+op.sig+"\x001", !typed, func() string { return reverseUpsertSQL(a.s.flavor, t, sh, op.sig, 1) }, op.args)
		}
		if err != nil {
			if !mysqlx.Rejected(err) {
				return nil, fmt.Errorf("write %s on the monolith: %w", t.name, err)
			}
			res.dead = append(res.dead, &deadLetter{m: op.m, ev: op.ev, t: t, err: err})
			continue
		}
		written = append(written, op)
	}
	return written, nil
}

// storeRowVersions stores the (epoch, version) of the rows written, reverseChunk per
// statement.
func (a *applier) storeRowVersions(ctx context.Context, c *applierConn, t *table, written []*rowOp) error {
	epoch := a.s.opts.Reverse.Epoch
	for len(written) > 0 {
		n := min(len(written), reverseChunk)
		args := make([]any, 0, 5*n)
		for _, op := range written[:n] {
			args = append(args, t.db, t.tname, op.rev.key, epoch, op.vkey.u)
		}
		if _, err := c.stmts.exec(ctx, "r\x00store\x00"+strconv.Itoa(n), true, func() string { return storeRowVersionsSQL(a.s.flavor, n) }, args); err != nil {
			return fmt.Errorf("store the row versions of %s: %w", t.name, err)
		}
		written = written[n:]
	}
	return nil
}

// writeReverseBatched writes ops as multi-row statements: the deletes, then the upserts
// of each signature. An error the monolith answers for a row fails the attempt; applyPlan
// then retries it carefully, one row at a time, to set that row aside.
func (a *applier) writeReverseBatched(ctx context.Context, c *applierConn, t *table, sh *shape, ops []*rowOp) error {
	s := a.s
	gen := strconv.FormatInt(sh.gen, 10)
	var g opGroups
	for _, op := range ops {
		g.add(op)
	}
	per := s.rowsPerStatement(len(sh.def.PK))
	for dels := g.dels; len(dels) > 0; {
		n := min(per, len(dels))
		args := make([]any, 0, n*len(sh.def.PK))
		for _, op := range dels[:n] {
			args = append(args, op.args...)
		}
		if _, err := c.stmts.exec(ctx, "r\x00D\x00"+t.name+"\x00"+gen+"\x00"+strconv.Itoa(n), n == per, func() string { return reverseDeletesSQL(t, sh, n) }, args); err != nil {
			return fmt.Errorf("delete from %s on the monolith: %w", t.name, err)
		}
		dels = dels[n:]
	}
	for _, sig := range g.sigs {
		rows := g.upserts[sig]
		typed := strings.IndexByte(sig, 0) >= 0 // JSON expressions vary: not prepared
		per := s.rowsPerStatement(len(rows[0].args))
		for len(rows) > 0 {
			n := min(per, len(rows))
			args := make([]any, 0, n*len(rows[0].args))
			for _, op := range rows[:n] {
				args = append(args, op.args...)
			}
			if _, err := c.stmts.exec(ctx, "r\x00U\x00"+t.name+"\x00"+gen+"\x00"+sig+"\x00"+strconv.Itoa(n), !typed && n == per, func() string { return reverseUpsertSQL(s.flavor, t, sh, sig, n) }, args); err != nil {
				return fmt.Errorf("upsert into %s on the monolith: %w", t.name, err)
			}
			rows = rows[n:]
		}
	}
	return nil
}

// reverseChunk bounds the keys of one read, and the rows of one store, of row_versions.
const reverseChunk = 500

// readRowVersions reads, with a locking read, the stored (epoch, version) of the ops' rows
// that have one, by row key.
func readRowVersions(ctx context.Context, c *applierConn, t *table, ops []*rowOp) (map[string][2]uint64, error) {
	stored := make(map[string][2]uint64, len(ops))
	for rest := ops; len(rest) > 0; {
		n := min(len(rest), reverseChunk)
		args := make([]any, 0, 2+n)
		args = append(args, t.db, t.tname)
		for _, op := range rest[:n] {
			args = append(args, op.rev.key)
		}
		rows, err := c.QueryContext(ctx, selectRowVersionsSQL(n), args...)
		if err != nil {
			return nil, fmt.Errorf("read the row versions of %s: %w", t.name, err)
		}
		for rows.Next() {
			var key []byte
			var e, v uint64
			if err := rows.Scan(&key, &e, &v); err != nil {
				rows.Close()
				return nil, fmt.Errorf("read the row versions of %s: %w", t.name, err)
			}
			stored[string(key)] = [2]uint64{e, v}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("read the row versions of %s: %w", t.name, err)
		}
		rest = rest[n:]
	}
	return stored, nil
}

// newerVersion orders (epoch, version) pairs: by epoch, then by version.
func newerVersion(epoch, version, storedEpoch, storedVersion uint64) bool {
	if epoch != storedEpoch {
		return epoch > storedEpoch
	}
	return version > storedVersion
}

// selectRowVersionsSQL reads the stored pairs of n row keys of one table, locking them.
func selectRowVersionsSQL(n int) string {
	return "SELECT row_key, epoch, version FROM " + mysqlx.QuoteTable(shardmeta.Database, shardmeta.RowVersions) +
		" WHERE db = ? AND tbl = ? AND row_key IN (?" + strings.Repeat(", ?", n-1) + ") FOR UPDATE"
}

// storeRowVersionsSQL writes n rows' (epoch, version), unconditionally: the locking read
// before it decided, and holds the entries until the commit.
func storeRowVersionsSQL(f mysqlx.Flavor, n int) string {
	return "INSERT INTO " + mysqlx.QuoteTable(shardmeta.Database, shardmeta.RowVersions) +
		" (db, tbl, row_key, epoch, version) VALUES (?, ?, ?, ?, ?)" + strings.Repeat(", (?, ?, ?, ?, ?)", n-1) + f.UpsertRowAlias() +
		" ON DUPLICATE KEY UPDATE epoch = " + f.UpsertValue("`epoch`") + ", version = " + f.UpsertValue("`version`")
}

// reverseUpsertSQL writes n rows of signature sig to the monolith, every column they
// carry, with no version guard (the caller checked row_versions). As in upsertSQL, an ON
// UPDATE CURRENT_TIMESTAMP column the change does not write keeps its value.
func reverseUpsertSQL(f mysqlx.Flavor, t *table, sh *shape, sig string, n int) string {
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
	row := "(" + strings.Join(values, ",") + ")"
	return "INSERT INTO " + t.quote + " (" + strings.Join(names, ",") + ") VALUES " + row + strings.Repeat(", "+row, n-1) +
		f.UpsertRowAlias() + " ON DUPLICATE KEY UPDATE " + strings.Join(sets, ", ")
}

// reverseDeletesSQL deletes n rows of the monolith by primary key: one by equality of
// every key column, more by a row constructor list.
func reverseDeletesSQL(t *table, sh *shape, n int) string {
	var cols, marks, eq []string
	for _, i := range sh.def.PK {
		q := mysqlx.QuoteIdent(sh.def.Columns[i].Name)
		cols, marks, eq = append(cols, q), append(marks, "?"), append(eq, q+" = ?")
	}
	if n == 1 {
		return "DELETE FROM " + t.quote + " WHERE " + strings.Join(eq, " AND ")
	}
	tuple := "(" + strings.Join(marks, ", ") + ")"
	return "DELETE FROM " + t.quote + " WHERE (" + strings.Join(cols, ", ") + ") IN (" + tuple + strings.Repeat(", "+tuple, n-1) + ")"
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
