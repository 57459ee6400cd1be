package sink

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"
	"golang.org/x/sync/semaphore"

	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/event"
	"github.com/cleave-dev/cleave/kafkax"
	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/shardmeta"
)

// applier applies the batches of one pipeline run, in order.
type applier struct {
	s      *Sink
	states map[tp]*partState
	kc     *kafkaCommitter
	budget *semaphore.Weighted
	c      *applierConn // see conn
	// staleBase holds the stale counters' values at the last commit on c, staleSeen the
	// values read in the attempt in progress.
	staleBase, staleSeen map[string]int64
}

// do applies one unit of work and releases its messages' buffer budget.
func (a *applier) do(ctx context.Context, w *work) error {
	defer a.release(w)
	if w.ddl != nil {
		defer close(w.ddl.done)
		if a.s.opts.Reverse != nil {
			return a.skipDDL(ctx, w.ddl.m, w.ddl.ev)
		}
		return a.applyDDL(ctx, w.ddl.m, w.ddl.ev)
	}
	return a.applyPlan(ctx, w.plan)
}

func (a *applier) release(w *work) {
	var n int64
	for _, m := range w.msgs {
		n += m.size
	}
	if n > 0 {
		a.budget.Release(n)
	}
}

// applyPlan applies a plan in one shard transaction, retried as a whole. A plan made with
// a table shape that a schema change (by another lane or member) has since replaced is
// made again with the new one.
func (a *applier) applyPlan(ctx context.Context, p *plan) error {
	if len(p.pos) == 0 {
		return nil
	}
	s := a.s
	for replanned := false; ; replanned = true {
		if len(p.dead) > 0 && s.cfg.Sink.OnError == config.OnErrorStop {
			return s.stopOn(p.dead[0])
		}
		start := time.Now()
		var res *result
		err := s.withRetry(ctx, "apply batch", func(actx context.Context) error {
			var err error
			res, err = a.commit(actx, p, false)
			if err != nil && mysqlx.Rejected(err) {
				// Some row is refused for good: find which by applying row by row.
				s.log.Info("shard refused a row of the batch; applying it row by row to find which", zap.Error(err))
				res, err = a.commit(actx, p, true)
			}
			return err
		})
		if err != nil && !replanned && mysqlx.Number(err) == mysqlx.ErBadField {
			s.log.Info("a table changed under the batch; planning it again", zap.Error(err))
			if err := s.reloadTables(ctx); err != nil {
				return err
			}
			if p, err = s.makePlan(p.items); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		s.m.duration.WithLabelValues(s.shard).Observe(time.Since(start).Seconds())
		a.committed(p, res)
		return nil
	}
}

// result is what a committed plan did beyond the plan itself.
type result struct {
	stale map[*table]int
	dead  []*deadLetter
}

// committed updates the partition states, metrics and Kafka commits after a plan committed.
func (a *applier) committed(p *plan, res *result) {
	s := a.s
	s.mu.Lock()
	for key, pos := range p.pos {
		st := a.states[key]
		st.next = pos.next
		if pos.tsMs > 0 {
			st.tsMs = pos.tsMs
		}
		if pos.hwm > st.hwm {
			st.hwm = pos.hwm
		}
	}
	s.mu.Unlock()
	for key, pos := range p.pos {
		a.kc.add(key, pos.next)
	}
	s.updateConsumerLag()
	for t, ops := range p.applied {
		for op, n := range ops {
			s.m.applied.WithLabelValues(s.shard, t.name, opName(op)).Add(float64(n))
		}
	}
	for t, n := range res.stale {
		s.m.stale.WithLabelValues(s.shard, t.name).Add(float64(n))
	}
	for _, d := range res.dead {
		s.m.deadLetters.WithLabelValues(s.shard, d.t.name).Inc()
		s.log.Warn("event sent to the dead-letter topic", append(logMessage(d.m), zap.String("table", d.t.name), zap.Error(d.err))...)
	}
}

// opName is the op label: the event's Debezium letter (c, u, d, r, s).
func opName(op event.Op) string { return string(op) }

// stopOn is the error that halts the sink under on_error stop.
func (s *Sink) stopOn(d *deadLetter) error {
	where := "the shard"
	if s.opts.Reverse != nil {
		where = "the monolith"
	}
	return fmt.Errorf("sink %s: %s; sink.on_error is stop: fix the row's cause on %s (or the table definition) and restart, or set sink.on_error: dead_letter to set such events aside in %s",
		s.shard, d, where, kafkaDLQ(s))
}

func kafkaDLQ(s *Sink) string { return kafkax.DLQTopic(s.cfg.Kafka.TopicPrefix, s.shard) }

// commit runs one attempt of a plan's transaction. careful applies row by row, each in a
// savepoint, so that a row the shard refuses is set aside (or, under on_error stop,
// named) instead of failing the batch.
//
// Round trips are what a batch costs on a busy shard, so there are few: the offsets
// check-and-write (which opens the transaction, see conn), one prepared statement per 500
// rows, one read of the stale counters, COMMIT. A failed attempt drops the connection,
// which rolls its transaction back.
func (a *applier) commit(ctx context.Context, p *plan, careful bool) (res *result, err error) {
	s := a.s
	c, err := a.conn(ctx)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil || careful {
			// The session's stale counters are only trusted after a clean fast attempt.
			a.dropConn()
		}
	}()
	if err := a.writeOffsets(ctx, c, p.pos); err != nil {
		return nil, err
	}
	res = &result{stale: map[*table]int{}, dead: append([]*deadLetter(nil), p.dead...)}
	var counted []*tablePlan // tables whose version-check skips are counted in their variable
	for _, tpl := range p.tables {
		var stale int
		var upserts bool
		if s.opts.Reverse != nil {
			stale, err = a.applyReverse(ctx, c, tpl, res, careful)
		} else if careful {
			stale, err = a.applyCareful(ctx, c, tpl, res)
		} else {
			stale, upserts, err = a.applyFast(ctx, c, tpl)
		}
		if err != nil {
			return nil, err
		}
		res.stale[tpl.t] = stale
		if upserts {
			counted = append(counted, tpl)
		}
	}
	if len(counted) > 0 {
		if err := a.readStale(ctx, c, counted, res); err != nil {
			return nil, err
		}
	}
	if len(res.dead) > 0 {
		if s.cfg.Sink.OnError == config.OnErrorStop {
			return nil, errStop{s.stopOn(res.dead[0])}
		}
		if err := s.writeDeadLetters(ctx, res.dead); err != nil {
			return nil, err
		}
	}
	if s.opts.BeforeCommit != nil {
		if err := s.opts.BeforeCommit(ctx); err != nil {
			return nil, errStop{fmt.Errorf("sink %s: before commit: %w", s.shard, err)}
		}
	}
	if _, err := c.ExecContext(ctx, "COMMIT"); err != nil {
		return nil, err
	}
	a.staleBase = a.staleSeen
	return res, nil
}

// applierConn is the applier's own session: autocommit off, so that the first statement
// of a batch opens its transaction without a round trip of its own; READ COMMITTED, so
// that the members of one shard take no gap locks from each other; and the prepared
// statements of the batches. It never goes back to the pool: dropConn discards it.
type applierConn struct {
	*sql.Conn
	stmts *stmtCache
}

func (a *applier) conn(ctx context.Context) (*applierConn, error) {
	if a.c != nil {
		return a.c, nil
	}
	c, err := a.s.db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	init := []string{"SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED", "SET autocommit = 0"}
	var vars []string
	for _, t := range a.s.tables {
		vars = append(vars, t.staleVar()+" = 0")
	}
	// Every sink session is cleave's applier: the write guards cut-over and rollback put on
	// the side that no longer owns the moved tables let it through (cutover/guard.go).
	vars = append(vars, ApplierVariable+" = 1")
	sort.Strings(vars)
	init = append(init, "SET "+strings.Join(vars, ", "))
	if a.s.opts.Reverse != nil {
		init = append(init, reverseInit)
	}
	for _, q := range init {
		if _, err := c.ExecContext(ctx, q); err != nil {
			discard(c)
			return nil, err
		}
	}
	a.c = &applierConn{Conn: c, stmts: newStmtCache(c)}
	a.staleBase, a.staleSeen = map[string]int64{}, map[string]int64{}
	return a.c, nil
}

func (a *applier) dropConn() {
	if a.c != nil {
		a.c.stmts.close()
		discard(a.c.Conn)
		a.c = nil
	}
}

// discard closes a connection without returning it to the pool (its session settings
// and any open transaction go with it).
func discard(c *sql.Conn) {
	_ = c.Raw(func(any) error { return driver.ErrBadConn })
	_ = c.Close()
}

// readStale reads the stale counters of the tables upserted in this attempt. They only
// grow on the session; what this attempt added is the difference from the last commit.
func (a *applier) readStale(ctx context.Context, c *applierConn, counted []*tablePlan, res *result) error {
	vars := make([]string, len(counted))
	dest := make([]any, len(counted))
	ns := make([]sql.NullInt64, len(counted))
	for i, tpl := range counted {
		vars[i] = tpl.t.staleVar()
		dest[i] = &ns[i]
	}
	if err := c.QueryRowContext(ctx, "SELECT "+strings.Join(vars, ", ")).Scan(dest...); err != nil {
		return err
	}
	seen := make(map[string]int64, len(a.staleBase))
	for k, v := range a.staleBase {
		seen[k] = v
	}
	for i, tpl := range counted {
		res.stale[tpl.t] += int(ns[i].Int64 - a.staleBase[vars[i]])
		seen[vars[i]] = ns[i].Int64
	}
	a.staleSeen = seen
	return nil
}

// errStop is an error that must not be retried and is not the shard's availability.
type errStop struct{ err error }

func (e errStop) Error() string { return e.err.Error() }
func (e errStop) Unwrap() error { return e.err }

// opGroups are a table's row writes as the multi-row statements take them: the deletes,
// and the upserts by signature (sigs in the order first seen), each in the order added.
type opGroups struct {
	dels    []*rowOp
	sigs    []string
	upserts map[string][]*rowOp
}

func (g *opGroups) add(op *rowOp) {
	if op.del {
		g.dels = append(g.dels, op)
		return
	}
	if g.upserts == nil {
		g.upserts = map[string][]*rowOp{}
	}
	if _, ok := g.upserts[op.sig]; !ok {
		g.sigs = append(g.sigs, op.sig)
	}
	g.upserts[op.sig] = append(g.upserts[op.sig], op)
}

// sqlConn is what writeOffsets and the row writers need: a connection or a transaction.
type sqlConn interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// writeOffsets stores the plan's partition offsets, but only where they are still where
// this member last left them: one UPDATE that compares each partition's stored next
// offset with the expected one and moves it on. It locks those rows until the commit, so
// two members applying one partition serialize here, and the loser finds the offset moved
// (fewer rows changed than partitions): its batch is fenced off and rolled back, see the
// package comment. Every offset grows, so a matched row always counts as changed.
func (a *applier) writeOffsets(ctx context.Context, c sqlConn, pos map[tp]*position) error {
	s := a.s
	keys := sortedPositions(pos)
	n := len(keys)
	args := make([]any, 0, 13*n+1)
	for _, k := range keys {
		args = append(args, k.topic, k.partition, pos[k].next)
	}
	for _, k := range keys {
		args = append(args, k.topic, k.partition, uint64(pos[k].version))
	}
	for _, k := range keys {
		args = append(args, k.topic, k.partition, pos[k].tsMs)
	}
	args = append(args, s.group)
	for _, k := range keys {
		args = append(args, k.topic, k.partition, a.states[k].next)
	}
	text := func() string {
		var b strings.Builder
		cases := func(col, set string) {
			b.WriteString(col + " = " + strings.Replace(set, "%", "CASE"+strings.Repeat(" WHEN topic = ? AND kafka_partition = ? THEN ?", n)+" END", 1))
		}
		b.WriteString("UPDATE " + mysqlx.QuoteTable(shardmeta.Database, shardmeta.Offsets) + " SET ")
		cases("next_offset", "%")
		b.WriteString(", ")
		cases("applied_version", "GREATEST(applied_version, %)")
		b.WriteString(", ")
		cases("applied_ts_ms", "GREATEST(applied_ts_ms, %)")
		b.WriteString(" WHERE consumer_group = ? AND (")
		for i := 0; i < n; i++ {
			if i > 0 {
				b.WriteString(" OR ")
			}
			b.WriteString("(topic = ? AND kafka_partition = ? AND next_offset = ?)")
		}
		b.WriteString(")")
		return b.String()
	}
	var r sql.Result
	var err error
	if ac, ok := c.(*applierConn); ok {
		r, err = ac.stmts.exec(ctx, "offsets\x00"+strconv.Itoa(n), true, text, args)
	} else {
		r, err = c.ExecContext(ctx, text(), args...)
	}
	if err != nil {
		return err
	}
	if changed, err := r.RowsAffected(); err != nil {
		return err
	} else if int(changed) != n {
		return fmt.Errorf("%w: %d of the %d partitions of the batch are no longer where this member left them", errFenced, n-int(changed), n)
	}
	return nil
}

func sortedPositions(pos map[tp]*position) []tp {
	keys := make([]tp, 0, len(pos))
	for k := range pos {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].less(keys[j]) })
	return keys
}

// applyFast writes a table's upserts as multi-row INSERT ... ON DUPLICATE KEY UPDATE and
// its deletes as multi-row guarded DELETEs, and returns how many deletes the version check
// skipped (upserts count theirs in the table's session variable).
// Upserts go first: with the guards, a row whose delete and re-insert fall in one batch
// (collapsed to the newest) ends the same as applied one by one.
func (a *applier) applyFast(ctx context.Context, c *applierConn, tpl *tablePlan) (stale int, upserts bool, err error) {
	s := a.s
	t, sh := tpl.t, tpl.sh
	var g opGroups
	for _, k := range tpl.order {
		g.add(tpl.ops[k])
	}
	dels := g.dels
	for _, sig := range g.sigs {
		upserts = true
		ops := g.upserts[sig]
		per := s.rowsPerStatement(len(ops[0].args))
		for len(ops) > 0 {
			n := min(per, len(ops))
			args := make([]any, 0, n*len(ops[0].args))
			for _, op := range ops[:n] {
				args = append(args, op.args...)
			}
			if _, err := c.stmts.exec(ctx, upsertKey(t, sh, sig, n), n == per, func() string { return upsertSQL(s.flavor, t, sh, sig, n) }, args); err != nil {
				return 0, false, fmt.Errorf("upsert into %s: %w", t.name, err)
			}
			ops = ops[n:]
		}
	}
	per := s.rowsPerStatement(len(sh.def.PK) + 1)
	for len(dels) > 0 {
		n := min(per, len(dels))
		args := make([]any, 0, n*(len(sh.def.PK)+1))
		for _, op := range dels[:n] {
			args = append(args, op.args...)
		}
		r, err := c.stmts.exec(ctx, deleteKey(t, sh, n), n == per, func() string { return deleteSQL(t, sh, n) }, args)
		if err != nil {
			return 0, false, fmt.Errorf("delete from %s: %w", t.name, err)
		}
		affected, _ := r.RowsAffected()
		stale += n - int(affected)
		dels = dels[n:]
	}
	return stale, upserts, nil
}

// applyCareful writes a table's rows one by one, each in a savepoint; a row the shard
// refuses for good is rolled back to its savepoint and recorded in res.dead.
func (a *applier) applyCareful(ctx context.Context, c sqlConn, tpl *tablePlan, res *result) (int, error) {
	t, sh := tpl.t, tpl.sh
	stale := 0
	// Upserts first, as in applyFast.
	for _, pass := range []bool{false, true} {
		for _, k := range tpl.order {
			op := tpl.ops[k]
			if op.del != pass {
				continue
			}
			if _, err := c.ExecContext(ctx, "SAVEPOINT cleave_row"); err != nil {
				return 0, err
			}
			var q string
			if op.del {
				q = deleteSQL(t, sh, 1)
			} else {
				q = upsertSQL(a.s.flavor, t, sh, op.sig, 1)
			}
			r, err := c.ExecContext(ctx, q, op.args...)
			if err != nil {
				if !mysqlx.Rejected(err) {
					return 0, err
				}
				if _, rerr := c.ExecContext(ctx, "ROLLBACK TO SAVEPOINT cleave_row"); rerr != nil {
					return 0, rerr
				}
				res.dead = append(res.dead, &deadLetter{m: op.m, ev: op.ev, t: t, err: err})
				continue
			}
			if affected, _ := r.RowsAffected(); affected == 0 {
				stale++
			}
		}
	}
	return stale, nil
}

func (s *Sink) rowsPerStatement(argsPerRow int) int {
	// The protocol allows 65535 placeholders per statement.
	return max(1, min(s.opts.RowsPerStatement, 65535/argsPerRow))
}

func upsertKey(t *table, sh *shape, sig string, n int) string {
	return "u\x00" + t.name + "\x00" + strconv.FormatInt(sh.gen, 10) + "\x00" + sig + "\x00" + strconv.Itoa(n)
}

func deleteKey(t *table, sh *shape, n int) string {
	return "d\x00" + t.name + "\x00" + strconv.FormatInt(sh.gen, 10) + "\x00" + strconv.Itoa(n)
}

// upsertSQL is the version-guarded multi-row upsert of n rows writing the columns of sig,
// as the shard's product f writes it.
// ON DUPLICATE KEY UPDATE assigns left to right and later expressions see the new values,
// so the version column is assigned last and every other column compares against the old
// version. A row the guard keeps counts itself in @cleave_stale (MySQL deprecates setting
// a user variable inside an expression since 8.0.13 with a warning, and 9.7 still takes it;
// affected rows cannot replace it: a multi-row upsert reports inserts + 2 × updates, not
// how many rows the guard kept).
//
// A column with ON UPDATE CURRENT_TIMESTAMP that the change does not write (an event from
// before the column was added) is assigned its own value: left out, the shard would stamp
// it with the time of the apply whenever the row changes.
func upsertSQL(f mysqlx.Flavor, t *table, sh *shape, sig string, n int) string {
	cols := columnsOf(sh, sig)
	var b strings.Builder
	b.WriteString("INSERT INTO " + t.quote + " (")
	for i, c := range cols {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(mysqlx.QuoteIdent(c))
	}
	b.WriteString(") VALUES ")
	row := valuesRow(sig, len(cols))
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(row)
	}
	b.WriteString(f.UpsertRowAlias())
	// The row's values on the shard are named with the table: beside MySQL's row alias a
	// bare column name is ambiguous.
	cur := func(quotedColumn string) string { return t.quote + "." + quotedColumn }
	vq := mysqlx.QuoteIdent(sh.versionCol.Name)
	v, newV := cur(vq), f.UpsertValue(vq)
	newer := "(" + v + " IS NULL OR " + newV + " > " + v + ")"
	if !sh.bookkeeping {
		// An operator's version column may repeat a value (an update that did not bump it):
		// the later change in stream order wins.
		newer = "(" + v + " IS NULL OR " + newV + " >= " + v + ")"
	}
	b.WriteString(" ON DUPLICATE KEY UPDATE ")
	pk := map[string]bool{}
	for _, i := range sh.def.PK {
		pk[sh.def.Columns[i].Name] = true
	}
	for _, c := range cols[:len(cols)-1] {
		if pk[c] {
			continue
		}
		q := mysqlx.QuoteIdent(c)
		b.WriteString(q + " = IF(" + newer + ", " + f.UpsertValue(q) + ", " + cur(q) + "), ")
	}
	for i := range sh.def.Columns {
		if c := &sh.def.Columns[i]; c.AutoUpdated && sig[i] != '1' && c != sh.versionCol && !c.Generated {
			q := mysqlx.QuoteIdent(c.Name)
			b.WriteString(q + " = " + cur(q) + ", ")
		}
	}
	sv := t.staleVar()
	b.WriteString(vq + " = IF(" + newer + ", " + newV + ", IF((" + sv + " := " + sv + " + 1) > 0, " + v + ", " + v + "))")
	return b.String()
}

// deleteSQL deletes n rows by primary key, each only if the shard holds an older version
// (or, for an operator's version column, not a newer one).
func deleteSQL(t *table, sh *shape, n int) string {
	v := mysqlx.QuoteIdent(sh.versionCol.Name)
	older := "(" + v + " IS NULL OR " + v + " < ?)"
	if !sh.bookkeeping {
		older = "(" + v + " IS NULL OR " + v + " <= ?)"
	}
	var one strings.Builder
	one.WriteString("(")
	for _, i := range sh.def.PK {
		one.WriteString(mysqlx.QuoteIdent(sh.def.Columns[i].Name) + " = ? AND ")
	}
	one.WriteString(older + ")")
	var b strings.Builder
	b.WriteString("DELETE FROM " + t.quote + " WHERE ")
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(" OR ")
		}
		b.WriteString(one.String())
	}
	return b.String()
}

// writeDeadLetters sends events to the shard's dead-letter topic, synchronously, before
// the batch that skips them commits: a crash in between sends them again on replay, it
// never loses them. The message keeps the original key and value; headers say where it
// came from and why it was refused.
func (s *Sink) writeDeadLetters(ctx context.Context, dead []*deadLetter) error {
	msgs := make([]kafka.Message, len(dead))
	for i, d := range dead {
		msgs[i] = kafka.Message{
			Topic: kafkaDLQ(s),
			Key:   d.m.Key,
			Value: d.m.Value,
			Headers: []kafka.Header{
				{Key: "cleave.error", Value: []byte(d.err.Error())},
				{Key: "cleave.shard", Value: []byte(s.shard)},
				{Key: "cleave.table", Value: []byte(d.t.name)},
				{Key: "cleave.topic", Value: []byte(d.m.Topic)},
				{Key: "cleave.partition", Value: []byte(strconv.Itoa(d.m.Partition))},
				{Key: "cleave.offset", Value: []byte(strconv.FormatInt(d.m.Offset, 10))},
			},
		}
	}
	if err := s.dlq.WriteMessages(ctx, msgs...); err != nil {
		return &errKafka{fmt.Errorf("write %d event(s) to dead-letter topic %s: %w", len(msgs), kafkaDLQ(s), err)}
	}
	return nil
}

// errKafka is a Kafka failure inside a shard transaction: retried like a shard outage.
type errKafka struct{ err error }

func (e *errKafka) Error() string { return e.err.Error() }
func (e *errKafka) Unwrap() error { return e.err }

// applyDDL applies a schema change event once per shard and moves its partition past it.
func (a *applier) applyDDL(ctx context.Context, m *message, ev *event.Event) error {
	s := a.s
	t := s.tables[m.Topic]
	key := tp{m.Topic, m.Partition}
	err := s.withRetry(ctx, "apply schema change", func(actx context.Context) error {
		conn, err := s.db.Conn(actx)
		if err != nil {
			return err
		}
		defer conn.Close()
		applied := mysqlx.QuoteTable(shardmeta.Database, shardmeta.AppliedDDL)
		var n int
		if err := conn.QueryRowContext(actx, "SELECT COUNT(*) FROM "+applied+" WHERE db = ? AND tbl = ? AND version = ?", t.db, t.tname, uint64(ev.Version)).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			if _, err := conn.ExecContext(actx, "USE "+mysqlx.QuoteIdent(t.db)); err != nil {
				return err
			}
			if _, err := conn.ExecContext(actx, ev.DDL); err != nil {
				if mysqlx.Retryable(err) {
					return err
				}
				if !alreadyApplied(err) {
					return errStop{fmt.Errorf("sink %s: schema change %s failed on the shard: %q: %w; apply an equivalent change to the shard by hand and insert (db, tbl, version, statement) = (%q, %q, %d, ...) into %s.%s, then restart",
						s.shard, describe(m, ev), ev.DDL, err, t.db, t.tname, uint64(ev.Version), shardmeta.Database, shardmeta.AppliedDDL)}
				}
				// Applied before a crash, not yet recorded.
				s.log.Warn("schema change already in effect on the shard; recording it", zap.String("ddl", ev.DDL), zap.Error(err))
			}
		}
		tx, err := conn.BeginTx(actx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		p := &plan{pos: map[tp]*position{key: {next: m.Offset + 1, version: ev.Version, tsMs: ev.Source.TsMs, hwm: m.HighWaterMark}}}
		if err := a.writeOffsets(actx, tx, p.pos); err != nil {
			return err
		}
		if _, err := tx.ExecContext(actx, "INSERT IGNORE INTO "+applied+" (db, tbl, version, statement) VALUES (?, ?, ?, ?)", t.db, t.tname, uint64(ev.Version), ev.DDL); err != nil {
			return err
		}
		if err := tx.Commit(); err != nil {
			return err
		}
		a.committed(p, &result{})
		return nil
	})
	if err != nil {
		return err
	}
	s.m.applied.WithLabelValues(s.shard, t.name, opName(event.OpDDL)).Inc()
	s.log.Info("schema change applied", zap.String("table", t.name), zap.Uint64("version", uint64(ev.Version)))
	return s.reloadTable(ctx, t)
}

// alreadyApplied reports errors that mean the change is already in effect: the column,
// index or table it adds exists, or the one it drops does not.
func alreadyApplied(err error) bool {
	switch mysqlx.Number(err) {
	case 1050, // table exists
		1060, // duplicate column name
		1061, // duplicate key name
		1091, // can't drop; check that it exists
		1826: // duplicate foreign key constraint name
		return true
	}
	return false
}

// reloadTables re-reads every table definition from the shard.
func (s *Sink) reloadTables(ctx context.Context) error {
	for _, t := range s.tables {
		if err := s.reloadTable(ctx, t); err != nil {
			return err
		}
	}
	return nil
}

func (s *Sink) reloadTable(ctx context.Context, t *table) error {
	return s.withRetry(ctx, "reload table definition", func(actx context.Context) error {
		if err := t.reload(actx, s.db, s.shard); err != nil {
			if mysqlx.Retryable(err) {
				return err
			}
			return errStop{err}
		}
		return nil
	})
}
