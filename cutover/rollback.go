package cutover

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/cleave-dev/cleave/event"
	"github.com/cleave-dev/cleave/kafkax"
	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/shardmeta"
)

// Design note: rollback is the cut-over run backwards.
//
// A rollback moves the application's writes to the moved tables from the shards back to
// the source, which reverse replication has kept current since the switch. It journals
// its own row (Detail.Kind rollback, Detail.Of the cut-over it undoes) in the same journal,
// under the same lock, through the same states:
//
//   - gate: the cut-over is done and not finalized, a hook is configured, the forward
//     path is healthy (it takes over again afterwards: the same checks as a cut-over's),
//     and every shard's reverse sink keeps offsets on the source for every partition of its
//     topics and is within cutover.max_sink_lag of its shard;
//   - verify: rounds under live writes over the rows changed on the shards since the
//     switch (the keys of the reverse topics), until a round has few enough rows to verify
//     under the fence;
//   - fence: on every shard a session of its own installs the shard's guard triggers (inert
//     until their rows exist) and takes LOCK TABLES <moved> READ; the shards' sessions are
//     bounded by the same wait_timeout as a cut-over's, so a hung cleave cannot hold them;
//   - drain: each fenced shard writes its _cleave.cutover (the reverse capture's in-band
//     marker, as the source's journal is the forward one's) and reads its binlog position
//     after it; every reverse sink must apply past its shard's position within
//     cutover.max_write_pause;
//   - fenced_verify: the rows changed since the last round, with nothing changing;
//   - switched: each fenced shard commits its guard rows (from then on it refuses writes to
//     the moved tables), then one transaction on the source deletes the source's guard rows
//     and journals "switched": the point of no return. The fences are released: writers
//     waiting on the shards get the guard's refusal;
//   - done: the source's inert guard triggers are dropped and the application
//     acknowledged the hook ("rolled_back").
//
// The order of the switch means a crash can only ever leave both sides refusing writes,
// never both taking them: between the shards' guard commits and the source's, a crash
// leaves a journal before "switched", which resolution aborts (the shards' guards are
// removed, the source's stay): writes fail loudly until then and none is lost. After the
// rollback, the forward path is the one that never stopped: the source's capture kept
// reading (it skipped the reverse sinks' transactions as its own) and the forward sinks
// pass the shards' guard (sink.ApplierVariable), so the application's writes to the source
// reach the shards again, their versions above every earlier one. Reverse replication
// stops once it sees the rollback switched.

// Rollback performs the rollback of the latest cut-over: gate, verification rounds, the
// shards' fences, drain, fenced verification, switch back, hook. It returns the journaled
// record; an error with a record whose state is aborted means the gate or a step failed
// and nothing switched back.
func (c *Cutover) Rollback(ctx context.Context) (*Record, error) {
	var prev *Record
	var revTopics []string
	check := func(p *Record) (Detail, error) {
		switch {
		case p == nil:
			return Detail{}, errors.New("nothing to roll back: no cut-over of this topic prefix has switched (see `cleave cutover --status`)")
		case p.IsRollback():
			return Detail{}, fmt.Errorf("already rolled back: rollback %d moved the tables back to the source at %s", p.ID, p.UpdatedAt.Format(time.RFC3339))
		case p.State != StateDone:
			return Detail{}, fmt.Errorf("cut-over %d is switched but its hook has not been acknowledged: finish it first (`cleave cutover` delivers the hook again)", p.ID)
		case p.Detail.FinalizedAt != nil:
			return Detail{}, fmt.Errorf("cut-over %d was finalized at %s: reverse replication ended and the source no longer follows the shards; there is no way back", p.ID, p.Detail.FinalizedAt.Format(time.RFC3339))
		case len(p.Detail.Reverse) == 0:
			return Detail{}, fmt.Errorf("cut-over %d journaled no reverse replication (made by an older cleave): the source did not follow the shards, so a rollback would lose their changes", p.ID)
		}
		prev = p
		c.rollingBack = true
		c.verifyTopics = map[string][]string{}
		for _, t := range c.cfg.Tables {
			for _, s := range c.cfg.Shards {
				topic := kafkax.TableTopic(kafkax.ReversePrefix(c.cfg.Kafka.TopicPrefix, p.ID, s.Name), t.DB(), t.TableName())
				c.verifyTopics[t.Name] = append(c.verifyTopics[t.Name], topic)
				revTopics = append(revTopics, topic)
			}
		}
		return Detail{Kind: KindRollback, Of: p.ID}, nil
	}
	return c.attempt(ctx, check, func(ctx context.Context, ctl *sql.Conn, rec *Record) error {
		fences := make([]*sql.Conn, len(c.shards))
		defer func() {
			for _, f := range fences {
				if f != nil {
					c.unfence(f)
					endSession(f)
				}
			}
		}()
		if err := c.rollback(ctx, ctl, rec, prev, revTopics, fences); err != nil || c.opts.DryRun {
			return err
		}
		if err := c.after(StateSwitched); err != nil {
			return err
		}
		return c.finish(ctx, ctl, rec)
	})
}

// rollback runs the steps up to the switch; the fences it takes are left in fences for
// the caller to release.
func (c *Cutover) rollback(ctx context.Context, ctl *sql.Conn, rec, prev *Record, revTopics []string, fences []*sql.Conn) error {
	if err := c.gate(ctx); err != nil {
		return err
	}
	if err := c.reverseGate(ctx, prev); err != nil {
		return err
	}

	// Verification rounds under live writes, from the start of the reverse topics: every
	// row changed on the shards since the switch.
	if err := c.step(ctx, ctl, rec, StateVerify); err != nil {
		return err
	}
	end := func(ctx context.Context) (map[string][]int64, error) {
		offs, err := kafkax.EndOffsets(ctx, c.cfg.Kafka.Brokers, revTopics)
		if err != nil {
			return nil, fmt.Errorf("read the reverse topics' end offsets: %w", err)
		}
		return offs, nil
	}
	// From the start of every partition of the reverse topics.
	from := map[string][]int64{}
	parts, err := kafkax.Partitions(ctx, c.cfg.Kafka.Brokers, revTopics)
	if err != nil {
		return fmt.Errorf("read the reverse topics' partitions: %w", err)
	}
	for t, n := range parts {
		from[t] = make([]int64, n)
	}
	from, carry, err := c.verifyRounds(ctx, ctl, rec, from, map[string][][]byte{}, end, "roll back")
	if err != nil || c.opts.DryRun {
		return err
	}

	// Fence every shard: its guard triggers first (inert until their rows exist), then
	// the lock, each on a session of its own.
	if err := c.step(ctx, ctl, rec, StateFence); err != nil {
		return err
	}
	pause := c.cfg.Cutover.MaxWritePause
	secs := int(math.Ceil(pause.Seconds()))
	for i, db := range c.shards {
		name := "shard " + c.cfg.Shards[i].Name
		conn, err := db.Conn(ctx)
		if err != nil {
			return fmt.Errorf("fence: open a session on %s: %w", name, err)
		}
		fences[i] = conn
		if _, err := conn.ExecContext(ctx, fmt.Sprintf("SET SESSION lock_wait_timeout = %d", secs)); err != nil {
			return fmt.Errorf("fence: set lock_wait_timeout on %s: %w", name, err)
		}
		if err := ensureJournal(ctx, conn); err != nil {
			return fmt.Errorf("fence: %s: %w", name, err)
		}
		if err := installGuard(ctx, conn, c.tables, name, true); err != nil {
			return err
		}
	}
	fenceStart := c.now()
	var locks []string
	for _, t := range c.tables {
		db, tbl, _ := strings.Cut(t, ".")
		locks = append(locks, mysqlx.QuoteTable(db, tbl)+" READ")
	}
	locks = append(locks, journalTable()+" WRITE", guardTable()+" WRITE")
	for i, conn := range fences {
		name := "shard " + c.cfg.Shards[i].Name
		for _, stmt := range []string{fmt.Sprintf("SET SESSION wait_timeout = %d", secs), "SET SESSION autocommit = 0"} {
			if _, err := conn.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("fence: %s on %s: %w", stmt, name, err)
			}
		}
		if _, err := conn.ExecContext(ctx, "LOCK TABLES "+strings.Join(locks, ", ")); err != nil {
			if mysqlx.Number(err) == 1205 {
				return fmt.Errorf("fence: could not lock the moved tables on %s within %ds: a long transaction holds one of them (find it in information_schema.innodb_trx); writes went on", name, secs)
			}
			return fmt.Errorf("fence: lock the moved tables on %s: %w (needs the LOCK TABLES privilege)", name, err)
		}
	}

	// The markers: a write to each shard's journal, committed under its fence after every
	// write to the moved tables, and the position after it.
	rec.Detail.ShardMarkers = map[string]*Position{}
	want := map[string]event.Version{}
	for i, conn := range fences {
		s := c.cfg.Shards[i].Name
		if _, err := conn.ExecContext(ctx, "REPLACE INTO "+journalTable()+" (id, topic_prefix, state, detail) VALUES (?, ?, ?, ?)",
			rec.ID, rec.Prefix, "rollback_marker", fmt.Sprintf(`{"of": %d}`, prev.ID)); err != nil {
			return fmt.Errorf("fence: write the marker on shard %s: %w", s, err)
		}
		if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
			return fmt.Errorf("fence: commit the marker on shard %s: %w", s, err)
		}
		file, pos, _, err := mysqlx.BinlogStatus(ctx, conn, c.shardFl[i].BinlogStatusStatement())
		if err != nil {
			return fmt.Errorf("fence: read shard %s's binlog position after the marker: %w", s, err)
		}
		v, err := event.NewVersion(file, pos, 0)
		if err != nil {
			return fmt.Errorf("fence: shard %s: %w", s, err)
		}
		rec.Detail.ShardMarkers[s] = &Position{File: file, Pos: pos, Version: uint64(v)}
		want[s] = v
	}
	if err := c.step(ctx, ctl, rec, StateDrain); err != nil {
		return err
	}

	// Drain: every reverse sink past its shard's marker on every partition.
	if behind, err := c.waitReverse(ctx, prev, want, fenceStart.Add(pause)); err != nil {
		return fmt.Errorf("drain: %w", err)
	} else if behind != "" {
		return fmt.Errorf("drain: the reverse sinks did not apply the shards' markers within cutover.max_write_pause (%s): %s; writes to the shards went on, nothing switched back", pause, behind)
	}
	if err := c.step(ctx, ctl, rec, StateFencedVerify); err != nil {
		return err
	}

	// Verify the rows changed since the last round, with nothing changing.
	if err := c.fencedVerify(ctx, rec, from, carry, end, fenceStart, "writes to the shards went on, nothing switched back"); err != nil {
		return err
	}

	// Switch back: the shards' guard rows first, each committed under its fence; then the
	// source's guard rows go with the journal's "switched", the point of no return.
	for i, conn := range fences {
		s := c.cfg.Shards[i].Name
		for _, t := range c.tables {
			db, tbl, _ := strings.Cut(t, ".")
			if _, err := conn.ExecContext(ctx, "REPLACE INTO "+guardTable()+" (db, tbl, cutover_id) VALUES (?, ?, ?)", db, tbl, rec.ID); err != nil {
				return fmt.Errorf("switch: guard %s on shard %s: %w", t, s, err)
			}
		}
		if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
			return fmt.Errorf("switch: commit the guard on shard %s: %w", s, err)
		}
	}
	if _, err := ctl.ExecContext(ctx, "BEGIN"); err != nil {
		return fmt.Errorf("switch: begin on the source: %w", err)
	}
	for _, t := range c.tables {
		db, tbl, _ := strings.Cut(t, ".")
		if _, err := ctl.ExecContext(ctx, "DELETE FROM "+guardTable()+" WHERE db = ? AND tbl = ?", db, tbl); err != nil {
			_, _ = ctl.ExecContext(ctx, "ROLLBACK")
			return fmt.Errorf("switch: lift the source's guard of %s: %w", t, err)
		}
	}
	rec.Detail.WritePauseMs = c.now().Sub(fenceStart).Milliseconds()
	if err := rec.save(ctx, ctl, StateSwitched, c.now()); err != nil {
		_, _ = ctl.ExecContext(ctx, "ROLLBACK")
		return err
	}
	if _, err := ctl.ExecContext(ctx, "COMMIT"); err != nil {
		return c.ambiguous(ctx, rec, err)
	}
	for i, f := range fences {
		c.unfence(f)
		endSession(f)
		fences[i] = nil
	}
	rec.Detail.WritePauseMs = c.now().Sub(fenceStart).Milliseconds()
	if err := rec.save(ctx, ctl, StateSwitched, c.now()); err != nil {
		c.log.Warn("record the write pause", zap.Error(err))
	}
	c.log.Info("rolled back: the source takes the moved tables' writes again", zap.Uint64("rollback", rec.ID), zap.Uint64("cutover", prev.ID), zap.Int64("write_pause_ms", rec.Detail.WritePauseMs))
	return nil
}

// reverseGate checks that every shard's reverse sink runs and is current: its offsets on
// the source for every partition of its topics, and what it applied last within
// cutover.max_sink_lag.
func (c *Cutover) reverseGate(ctx context.Context, prev *Record) error {
	var failed []string
	now := c.now()
	offsets := mysqlx.QuoteTable(shardmeta.Database, shardmeta.Offsets)
	for _, s := range c.cfg.Shards {
		group := kafkax.ReverseGroup(c.cfg.Kafka.TopicPrefix, prev.ID, s.Name)
		var n int
		var ts int64
		err := c.source.QueryRowContext(ctx, "SELECT COUNT(*), COALESCE(MIN(applied_ts_ms), 0) FROM "+offsets+" WHERE consumer_group = ?", group).Scan(&n, &ts)
		switch {
		case err != nil && mysqlx.Number(err) != mysqlx.ErNoSuchTable:
			failed = append(failed, fmt.Sprintf("cannot read the reverse sinks' offsets on the source: %v", err))
		case n < len(c.tables)*c.cfg.Kafka.Partitions:
			failed = append(failed, fmt.Sprintf("shard %s's reverse sink (group %s) keeps offsets on the source for %d of %d partitions: is `cleave run` running? (cleave status shows REVERSE)", s.Name, group, n, len(c.tables)*c.cfg.Kafka.Partitions))
		case ts == 0:
			failed = append(failed, fmt.Sprintf("shard %s's reverse sink has applied nothing yet on some partition: let it catch up (cleave_sink_lag_seconds{shard=%q})", s.Name, kafkax.ReverseSink(s.Name)))
		default:
			if lag := now.Sub(time.UnixMilli(ts)); lag > c.cfg.Cutover.MaxSinkLag {
				failed = append(failed, fmt.Sprintf("shard %s's reverse sink is %s behind the shard (cutover.max_sink_lag %s): wait until it catches up (cleave_sink_lag_seconds{shard=%q})", s.Name, lag.Round(time.Millisecond), c.cfg.Cutover.MaxSinkLag, kafkax.ReverseSink(s.Name)))
			}
		}
	}
	if len(failed) > 0 {
		return &gateError{failed: failed}
	}
	return nil
}

// waitReverse waits until every shard's reverse sink has applied up to want[shard] on
// every partition of its topics, or until deadline; it returns what is still behind ("" when
// nothing is).
func (c *Cutover) waitReverse(ctx context.Context, prev *Record, want map[string]event.Version, deadline time.Time) (string, error) {
	offsets := mysqlx.QuoteTable(shardmeta.Database, shardmeta.Offsets)
	parts := len(c.tables) * c.cfg.Kafka.Partitions
	shards := make([]string, 0, len(want))
	for s := range want {
		shards = append(shards, s)
	}
	sort.Strings(shards)
	for {
		var behind []string
		for _, s := range shards {
			var n int
			var low sql.NullInt64
			if err := c.source.QueryRowContext(ctx, "SELECT COUNT(*), CAST(MIN(applied_version) AS SIGNED) FROM "+offsets+" WHERE consumer_group = ?",
				kafkax.ReverseGroup(c.cfg.Kafka.TopicPrefix, prev.ID, s)).Scan(&n, &low); err != nil {
				return "", fmt.Errorf("read the reverse sinks' offsets on the source: %w", err)
			}
			if n < parts || !low.Valid || event.Version(low.Int64) < want[s] {
				behind = append(behind, fmt.Sprintf("shard %s's reverse sink at %s, the marker at %s", s, event.Version(low.Int64), want[s]))
			}
		}
		if len(behind) == 0 {
			return "", nil
		}
		if !c.now().Before(deadline) {
			return strings.Join(behind, "; "), nil
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return "", err
		}
	}
}

// removeShardGuards removes a rollback's guard (triggers and rows) from the moved tables on
// every shard: when a rollback aborts, and when a later cut-over switches.
func (c *Cutover) removeShardGuards(ctx context.Context, tables []string) error {
	if err := c.openShards(ctx); err != nil {
		return err
	}
	for i, db := range c.shards {
		name := "shard " + c.cfg.Shards[i].Name
		var n int
		err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?", shardmeta.Database, shardmeta.Guard).Scan(&n)
		if err != nil {
			return fmt.Errorf("look for the guard on %s: %w", name, err)
		}
		if n == 0 {
			continue // never guarded
		}
		conn, err := db.Conn(ctx)
		if err != nil {
			return fmt.Errorf("open a session on %s: %w", name, err)
		}
		_, err = conn.ExecContext(ctx, "SET SESSION lock_wait_timeout = 60")
		if err == nil {
			err = removeGuard(ctx, conn, tables, name)
		}
		endSession(conn)
		if err != nil {
			return err
		}
	}
	return nil
}
