package reconcile

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/schema"
)

// Repair.
//
// A drifted row is fixed on its shard the way a sink would have written it, never blindly:
//
//   - missing, changed, and the owner of a wrong_shard row: the source row, read now, is
//     upserted with a version that beats the shard's (INSERT ... ON DUPLICATE KEY UPDATE,
//     every column guarded by the version, the version assigned last). The version is that
//     of the source position read just BEFORE the source row: every change the row shows is
//     at or below it (older events still in flight lose against it, correctly, since the
//     row already includes them) and every later change has a higher version and still
//     wins when its event arrives.
//   - extra, and the stray copy of a wrong_shard or duplicate row: deleted only while the
//     shard row still has the version it had when the drift was confirmed, so a copy that a
//     sink has since rewritten is left alone.
//
// A table whose shards have no version column (neither version_column nor _cleave_version)
// gets unguarded statements, marked with a comment. Deletes run before upserts on each
// shard, in one transaction per shard; afterwards the rows are re-checked like any
// candidate and marked repaired only if they now match.

// literalSQL renders a column's value as an SQL literal, computed by the source itself, so
// that the repair writes exactly the stored value.
func literalSQL(c *schema.Column) string {
	q := mysqlx.QuoteIdent(c.Name)
	var e string
	switch c.Kind {
	case schema.KindString, schema.KindJSON, schema.KindEnum, schema.KindSet:
		cs := c.Charset
		if cs == "" {
			cs = "utf8mb4"
		}
		e = "CONCAT('_" + cs + " X''', HEX(" + q + "), '''')"
	case schema.KindBinary:
		e = "CONCAT('X''', HEX(" + q + "), '''')"
	case schema.KindFloat:
		e = "CAST(CAST(" + q + " AS DOUBLE) AS CHAR)"
	case schema.KindBit:
		e = "CAST(" + q + "+0 AS CHAR)"
	case schema.KindInt, schema.KindUint, schema.KindYear, schema.KindDecimal, schema.KindDouble:
		e = "CAST(" + q + " AS CHAR)"
	default:
		e = "QUOTE(" + q + ")"
	}
	return "IFNULL(" + e + ",'NULL')"
}

func (c *Checker) repair(ctx context.Context, rep *Report, infos []*tableInfo) error {
	rr := &RepairReport{Applied: c.opts.Repair, Statements: map[string][]string{}}
	rep.Repair = rr
	byName := map[string]*tableInfo{}
	for _, ti := range infos {
		if ti != nil {
			byName[ti.name] = ti
		}
	}
	perShard := make([][]string, len(c.shards))
	for _, tr := range rep.Tables {
		ti := byName[tr.Table]
		if ti == nil || len(tr.Drift) == 0 {
			continue
		}
		stmts, err := c.repairStatements(ctx, ti, tr.Drift)
		if err != nil {
			return fmt.Errorf("%s: %w", tr.Table, err)
		}
		for i, s := range stmts {
			perShard[i] = append(perShard[i], s...)
		}
	}
	for i, s := range perShard {
		if len(s) > 0 {
			rr.Statements[c.shardNames[i]] = s
		}
	}
	if !c.opts.Repair {
		return nil
	}
	for i, stmts := range perShard {
		if len(stmts) == 0 {
			continue
		}
		if err := applyStatements(ctx, c.shards[i], stmts); err != nil {
			return fmt.Errorf("apply repair on shard %s: %w", c.shardNames[i], err)
		}
		c.log.Info("repair applied", zap.String("shard", c.shardNames[i]), zap.Int("statements", len(stmts)))
	}
	for _, tr := range rep.Tables {
		ti := byName[tr.Table]
		if ti == nil || len(tr.Drift) == 0 {
			continue
		}
		var keys [][][]byte
		for _, d := range tr.Drift {
			keys = append(keys, d.raw)
		}
		still, inflight, err := c.recheck(ctx, ti, keys)
		if err != nil {
			return fmt.Errorf("re-check %s after repair: %w", tr.Table, err)
		}
		bad := map[string]bool{}
		for _, d := range still {
			bad[mapKey(d.raw)] = true
		}
		for _, f := range inflight {
			bad[keyText(f.Key)] = true
		}
		for i := range tr.Drift {
			d := &tr.Drift[i]
			if !bad[mapKey(d.raw)] && !bad[keyText(d.Key)] {
				d.Repaired = true
				rr.Repaired++
			} else {
				rr.Remaining++
			}
		}
	}
	return nil
}

func applyStatements(ctx context.Context, db *sql.DB, stmts []string) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, s := range stmts {
		if strings.HasPrefix(s, "--") {
			continue
		}
		if _, err := tx.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	return tx.Commit()
}

// repairStatements returns, per shard, the statements that fix the table's drift rows.
func (c *Checker) repairStatements(ctx context.Context, ti *tableInfo, drift []DriftRow) ([][]string, error) {
	out := make([][]string, len(c.shards))
	upserts := make([]map[string][][]byte, len(c.shards))
	seen := make([]map[string][]byte, len(c.shards))
	for i := range upserts {
		upserts[i], seen[i] = map[string][][]byte{}, map[string][]byte{}
	}
	var allUpsert [][][]byte
	addUpsert := func(shard int, d DriftRow) {
		if shard < 0 {
			return
		}
		mk := mapKey(d.raw)
		if _, ok := upserts[shard][mk]; !ok {
			upserts[shard][mk] = d.raw
			allUpsert = append(allUpsert, d.raw)
		}
		if d.Kind == Changed && d.version != nil {
			seen[shard][mk] = d.version
		}
	}
	for _, d := range drift {
		i := c.shardIndex(d.Shard)
		switch d.Kind {
		case Missing, Changed:
			addUpsert(i, d)
		case WrongShard:
			for _, e := range d.ExpectedShards {
				addUpsert(c.shardIndex(e), d)
			}
			out[i] = append(out[i], c.deleteSQL(ti, i, d))
		case Extra, Duplicate:
			out[i] = append(out[i], c.deleteSQL(ti, i, d))
		}
	}
	if len(allUpsert) == 0 {
		return out, nil
	}
	// The position first, then the rows: see the comment at the top of the file.
	v, havePos, err := c.sourceVersion(ctx)
	if err != nil {
		return nil, err
	}
	if !havePos {
		v = 0
	}
	rows, err := c.readLiterals(ctx, ti, allUpsert)
	if err != nil {
		return nil, fmt.Errorf("read source rows to repair: %w", err)
	}
	for i := range upserts {
		for mk, key := range upserts[i] {
			lits, ok := rows[mk]
			if !ok {
				out[i] = append(out[i], fmt.Sprintf("-- %s key %s: gone from the source since the check; nothing to write", ti.name, keyText(ti.encodeKey(key))))
				continue
			}
			ver := uint64(v)
			if s, ok := seen[i][mk]; ok {
				if cur, err := strconv.ParseUint(string(s), 10, 64); err == nil && cur >= ver {
					ver = cur + 1
				}
			}
			out[i] = append(out[i], c.upsertSQL(ti, i, lits, ver))
		}
	}
	return out, nil
}

// readLiterals reads the source rows of keys as SQL literals per written column.
func (c *Checker) readLiterals(ctx context.Context, ti *tableInfo, keys [][][]byte) (map[string][]string, error) {
	out := map[string][]string{}
	sels := make([]string, len(ti.written))
	for i, col := range ti.written {
		sels[i] = literalSQL(col)
	}
	n := len(ti.keys)
	for start := 0; start < len(keys); start += keyBatch {
		where, args, err := ti.keysWhere(keys[start:min(start+keyBatch, len(keys))])
		if err != nil {
			return nil, err
		}
		q := "SELECT " + ti.keySelect() + "," + strings.Join(sels, ",") + " FROM " + ti.quoted + " WHERE " + where
		rows, err := c.source.QueryContext(ctx, q, args...)
		if err != nil {
			return nil, err
		}
		raw := make([]sql.RawBytes, n+len(sels))
		dest := make([]any, len(raw))
		for i := range raw {
			dest[i] = &raw[i]
		}
		for rows.Next() {
			if err := rows.Scan(dest...); err != nil {
				rows.Close()
				return nil, err
			}
			key := make([][]byte, n)
			for i := range key {
				key[i] = append([]byte{}, raw[i]...)
			}
			lits := make([]string, len(sels))
			for i := range lits {
				lits[i] = string(raw[n+i])
			}
			out[mapKey(key)] = lits
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// upsertSQL writes the source row lits to shard i, guarded by the shard's version column.
func (c *Checker) upsertSQL(ti *tableInfo, shard int, lits []string, version uint64) string {
	st := ti.shards[shard]
	cols := make([]string, 0, len(ti.written)+1)
	vals := make([]string, 0, len(ti.written)+1)
	for i, col := range ti.written {
		cols = append(cols, mysqlx.QuoteIdent(col.Name))
		vals = append(vals, lits[i])
	}
	var guard, vq string
	switch {
	case st.bookkeeping:
		vq = mysqlx.QuoteIdent(st.versionCol)
		cols = append(cols, vq)
		vals = append(vals, strconv.FormatUint(version, 10))
		guard = "VALUES(" + vq + ") > " + vq
	case st.versionCol != "":
		// The table's own version column comes from the source row; the source's value is
		// the truth, so an equal version with other contents is overwritten too.
		vq = mysqlx.QuoteIdent(st.versionCol)
		guard = "VALUES(" + vq + ") >= " + vq
	}
	var sets []string
	isKey := map[string]bool{}
	for _, k := range ti.keys {
		isKey[k.col.Name] = true
	}
	for _, col := range ti.written {
		q := mysqlx.QuoteIdent(col.Name)
		if isKey[col.Name] || q == vq {
			continue
		}
		if guard == "" {
			sets = append(sets, q+" = VALUES("+q+")")
		} else {
			sets = append(sets, q+" = IF("+guard+", VALUES("+q+"), "+q+")")
		}
	}
	if vq != "" {
		// Assigned last: ON DUPLICATE KEY UPDATE sees earlier assignments.
		sets = append(sets, vq+" = IF("+guard+", VALUES("+vq+"), "+vq+")")
	}
	if len(sets) == 0 {
		k := mysqlx.QuoteIdent(ti.keys[0].col.Name)
		sets = append(sets, k+" = "+k)
	}
	prefix := ""
	if guard == "" {
		prefix = "/* unguarded: the shard table has no version column */ "
	}
	return prefix + "INSERT INTO " + ti.quoted + " (" + strings.Join(cols, ",") + ") VALUES (" + strings.Join(vals, ",") + ") ON DUPLICATE KEY UPDATE " + strings.Join(sets, ", ")
}

// deleteSQL removes a stray row from shard i, only if its version is still the one seen.
func (c *Checker) deleteSQL(ti *tableInfo, shard int, d DriftRow) string {
	var conds []string
	for i, k := range ti.keys {
		conds = append(conds, mysqlx.QuoteIdent(k.col.Name)+" = "+k.literal(d.raw[i]))
	}
	st := ti.shards[shard]
	prefix := ""
	switch {
	case st.versionCol != "" && d.version == nil:
		conds = append(conds, mysqlx.QuoteIdent(st.versionCol)+" IS NULL")
	case st.versionCol != "":
		lit := string(d.version)
		vc := ti.def.Column(st.versionCol)
		if !st.bookkeeping && (vc == nil || !vc.Kind.Integer()) {
			lit = "'" + strings.ReplaceAll(lit, "'", "''") + "'"
		}
		conds = append(conds, mysqlx.QuoteIdent(st.versionCol)+" = "+lit)
	default:
		prefix = "/* unguarded: the shard table has no version column */ "
	}
	return fmt.Sprintf("%sDELETE FROM %s WHERE %s /* %s */", prefix, ti.quoted, strings.Join(conds, " AND "), d.Kind)
}
