package finalize

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cleave-dev/cleave/backfill"
	"github.com/cleave-dev/cleave/capture"
	"github.com/cleave-dev/cleave/cutover"
	"github.com/cleave-dev/cleave/kafkax"
	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/preflight"
	"github.com/cleave-dev/cleave/shardmeta"
)

// ddlLockWait bounds how long a DROP COLUMN waits for a table's metadata lock: while it
// waits, every new query of the table queues behind it, so a long transaction of the
// application must make it fail soon rather than stall the table.
const ddlLockWait = 10 * time.Second

// plan adds the actions that are left to do, in the order they run, and the notes on what
// finalize leaves.
func (f *Finalizer) plan(ctx context.Context, rep *Report) error {
	if err := f.stopReverse(ctx, rep); err != nil {
		return err
	}
	for i := range f.shards {
		if err := f.planVersionColumns(ctx, rep, i); err != nil {
			return err
		}
	}
	for i := range f.shards {
		if err := f.planBookkeeping(ctx, rep, i); err != nil {
			return err
		}
	}
	if err := f.planTopics(ctx, rep); err != nil {
		return err
	}
	return f.noteSource(ctx, rep)
}

// stopReverse ends reverse replication (the shards' changes applied back to the source so
// that a rollback loses nothing) before anything else: once the version columns are gone,
// its changes could no longer be ordered. The gate has seen its sinks stopped (checkSinks);
// this removes its bookkeeping on the source (the reverse sinks' offsets and the rows'
// versions) and journals the migration as finalized, so that no `cleave run` starts it
// again. Its topics go with the others (topics).
func (f *Finalizer) stopReverse(ctx context.Context, rep *Report) error {
	if f.rec == nil || len(f.rec.Detail.Reverse) == 0 {
		return nil
	}
	if err := f.planSourceDelete(ctx, rep, shardmeta.Offsets, "consumer_group IN ("+sqlList(f.reverseGroups())+")"); err != nil {
		return err
	}
	var pairs []string
	for _, t := range f.cfg.Tables {
		pairs = append(pairs, "("+sqlString(t.DB())+", "+sqlString(t.TableName())+")")
	}
	if len(pairs) > 0 {
		if err := f.planSourceDelete(ctx, rep, shardmeta.RowVersions, "(db, tbl) IN ("+strings.Join(pairs, ", ")+")"); err != nil {
			return err
		}
	}
	if f.rec.Detail.FinalizedAt == nil {
		id, prefix := f.rec.ID, f.cfg.Kafka.TopicPrefix
		rep.Actions = append(rep.Actions, &Action{Where: "source", Statement: fmt.Sprintf("journal cut-over %d finalized: reverse replication stops for good", id),
			run: func(ctx context.Context, a *Action) error {
				return cutover.MarkFinalized(ctx, f.source, prefix, id, time.Now())
			}})
	}
	return nil
}

// planSourceDelete plans the deletion of the rows of the source's _cleave.<table> that
// match cond, when there are any.
func (f *Finalizer) planSourceDelete(ctx context.Context, rep *Report, table, cond string) error {
	q := mysqlx.QuoteTable(shardmeta.Database, table)
	var n int
	err := f.source.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+q+" WHERE "+cond).Scan(&n)
	if e := mysqlx.Number(err); e == mysqlx.ErNoSuchTable || e == mysqlx.ErBadDB {
		return nil
	}
	if err != nil {
		return fmt.Errorf("source: read %s.%s: %w", shardmeta.Database, table, err)
	}
	if n > 0 {
		rep.Actions = append(rep.Actions, &Action{Where: "source", Statement: "DELETE FROM " + q + " WHERE " + cond, run: execOn(f.source)})
	}
	return nil
}

// reverseGroups are the consumer groups of the latest cut-over's reverse sinks.
func (f *Finalizer) reverseGroups() []string {
	if f.rec == nil {
		return nil
	}
	var out []string
	for _, shard := range f.reverseShards() {
		out = append(out, kafkax.ReverseGroup(f.cfg.Kafka.TopicPrefix, f.rec.ID, shard))
	}
	return out
}

// reverseShards are the shards the latest cut-over started reverse replication from.
func (f *Finalizer) reverseShards() []string {
	if f.rec == nil {
		return nil
	}
	out := make([]string, 0, len(f.rec.Detail.Reverse))
	for s := range f.rec.Detail.Reverse {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// planVersionColumns drops the bookkeeping version column from the shard's tables that
// have one because their configuration names no version_column. A table's own
// version_column is the application's and stays.
func (f *Finalizer) planVersionColumns(ctx context.Context, rep *Report, i int) error {
	db, name := f.shards[i], f.cfg.Shards[i].Name
	flavor, err := mysqlx.DetectFlavor(ctx, db)
	if err != nil {
		return fmt.Errorf("shard %s: %w", name, err)
	}
	for _, t := range f.cfg.Tables {
		if t.VersionColumn != "" {
			continue
		}
		var n int
		if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND COLUMN_NAME = ?",
			t.DB(), t.TableName(), shardmeta.VersionColumn).Scan(&n); err != nil {
			return fmt.Errorf("shard %s: look for %s in %s: %w", name, shardmeta.VersionColumn, t.Name, err)
		}
		if n == 0 {
			continue
		}
		stmt := "ALTER TABLE " + mysqlx.QuoteTable(t.DB(), t.TableName()) + " DROP COLUMN " + mysqlx.QuoteIdent(shardmeta.VersionColumn)
		a := &Action{Where: "shard " + name, Statement: stmt}
		if flavor.InstantDropColumn() {
			a.Statement += ", ALGORITHM=INSTANT"
		} else {
			a.Note = fmt.Sprintf("%s has no instant DROP COLUMN: the default algorithm rebuilds the table", flavor.Product())
		}
		a.run = func(ctx context.Context, a *Action) error { return dropColumn(ctx, db, stmt, a) }
		rep.Actions = append(rep.Actions, a)
	}
	return nil
}

// dropColumn runs the action's DROP COLUMN on one session with a short metadata lock wait,
// falling back to the default algorithm where the table refuses the instant one.
func dropColumn(ctx context.Context, db *sql.DB, stmt string, a *Action) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, fmt.Sprintf("SET SESSION lock_wait_timeout = %d", int(ddlLockWait.Seconds()))); err != nil {
		return err
	}
	_, err = conn.ExecContext(ctx, a.Statement)
	if n := mysqlx.Number(err); a.Statement != stmt && (n == mysqlx.ErAlterNotSupported || n == mysqlx.ErAlterNotSupportedR) {
		a.Note = fmt.Sprintf("ALGORITHM=INSTANT refused (%v); dropped with the default algorithm, which rebuilds the table", err)
		a.Statement = stmt
		_, err = conn.ExecContext(ctx, stmt)
	}
	switch mysqlx.Number(err) {
	case mysqlx.ErCantDropField:
		a.Note = "already gone"
		return nil
	case mysqlx.ErLockWaitTimeout:
		return fmt.Errorf("%w: a transaction of the application holds the table; run finalize again when it is quieter", err)
	}
	return err
}

// planBookkeeping removes the deployment's part of the shard's _cleave database: the whole
// database when nothing of another deployment is in it, else only the rows of the
// deployment's consumer groups and tables.
func (f *Finalizer) planBookkeeping(ctx context.Context, rep *Report, i int) error {
	db, name := f.shards[i], f.cfg.Shards[i].Name
	where := "shard " + name
	var exists int
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", shardmeta.Database).Scan(&exists); err != nil {
		return fmt.Errorf("%s: look for %s: %w", where, shardmeta.Database, err)
	}
	if exists == 0 {
		return nil
	}

	var tables []string
	rows, err := db.QueryContext(ctx, "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?", shardmeta.Database)
	if err != nil {
		return fmt.Errorf("%s: list %s: %w", where, shardmeta.Database, err)
	}
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			rows.Close()
			return fmt.Errorf("%s: list %s: %w", where, shardmeta.Database, err)
		}
		tables = append(tables, t)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("%s: list %s: %w", where, shardmeta.Database, err)
	}
	var groups []string
	for _, s := range f.cfg.Shards {
		groups = append(groups, kafkax.SinkGroup(f.cfg.Kafka.TopicPrefix, s.Name))
	}
	ownOffsets := "consumer_group IN (" + sqlList(groups) + ")"
	var pairs []string
	for _, t := range f.cfg.Tables {
		pairs = append(pairs, "("+sqlString(t.DB())+", "+sqlString(t.TableName())+")")
	}
	ownDDL := "(db, tbl) IN (" + strings.Join(pairs, ", ") + ")"
	if len(pairs) == 0 {
		ownDDL = "FALSE"
	}

	var foreign []string
	var mine []string // the statements that delete the deployment's rows
	for _, t := range tables {
		var own, other int
		switch t {
		case shardmeta.Offsets, shardmeta.AppliedDDL:
			cond := ownOffsets
			if t == shardmeta.AppliedDDL {
				cond = ownDDL
			}
			q := "SELECT COALESCE(SUM(" + cond + "), 0), COALESCE(SUM(NOT (" + cond + ")), 0) FROM " + mysqlx.QuoteTable(shardmeta.Database, t)
			if err := db.QueryRowContext(ctx, q).Scan(&own, &other); err != nil {
				return fmt.Errorf("%s: read %s.%s: %w", where, shardmeta.Database, t, err)
			}
			if own > 0 {
				mine = append(mine, "DELETE FROM "+mysqlx.QuoteTable(shardmeta.Database, t)+" WHERE "+cond)
			}
			if other > 0 {
				foreign = append(foreign, fmt.Sprintf("%d rows of other deployments in %s", other, t))
			}
		case preflight.CheckWriteTable:
			// cleave check's scratch table, always empty: no deployment's.
		default:
			foreign = append(foreign, "table "+t)
		}
	}
	if len(foreign) == 0 {
		stmt := "DROP DATABASE IF EXISTS " + mysqlx.QuoteIdent(shardmeta.Database)
		rep.Actions = append(rep.Actions, &Action{Where: where, Statement: stmt, run: execOn(db)})
		return nil
	}
	for _, stmt := range mine {
		rep.Actions = append(rep.Actions, &Action{Where: where, Statement: stmt, run: execOn(db)})
	}
	rep.Notes = append(rep.Notes, fmt.Sprintf("%s: the %s database stays, it holds what is not this deployment's (%s); it goes with the last deployment's finalize",
		where, shardmeta.Database, strings.Join(foreign, ", ")))
	return nil
}

func execOn(db *sql.DB) func(context.Context, *Action) error {
	return func(ctx context.Context, a *Action) error {
		_, err := db.ExecContext(ctx, a.Statement)
		return err
	}
}

// topics are the deployment's Kafka topics, and only those: a topic of another prefix
// that merely starts with this one is not among them.
func (f *Finalizer) topics() []string {
	prefix := f.cfg.Kafka.TopicPrefix
	var out []string
	for _, t := range f.cfg.Tables {
		out = append(out, kafkax.TableTopic(prefix, t.DB(), t.TableName()))
	}
	for _, s := range f.cfg.Shards {
		out = append(out, kafkax.DLQTopic(prefix, s.Name))
	}
	out = append(out, backfill.Topic(prefix), capture.CheckpointTopic(prefix))
	for _, shard := range f.reverseShards() {
		rp := kafkax.ReversePrefix(prefix, f.rec.ID, shard)
		for _, t := range f.cfg.Tables {
			out = append(out, kafkax.TableTopic(rp, t.DB(), t.TableName()))
		}
		out = append(out, kafkax.DLQTopic(rp, kafkax.ReverseSink(shard)), backfill.Topic(rp), capture.CheckpointTopic(rp))
	}
	return out
}

// existingTopics returns which of names exist, sorted. It lists every topic of the
// cluster rather than asking for the names, which could create them on a broker that
// creates topics on first use.
func existingTopics(ctx context.Context, brokers []string, names []string) ([]string, error) {
	md, err := kafkax.Client(brokers).Metadata(ctx, &kafka.MetadataRequest{})
	if err != nil {
		return nil, fmt.Errorf("list the topics on %v: %w", brokers, err)
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	var out []string
	for _, t := range md.Topics {
		if want[t.Name] {
			out = append(out, t.Name)
		}
	}
	sort.Strings(out)
	return out, nil
}

func (f *Finalizer) planTopics(ctx context.Context, rep *Report) error {
	brokers := f.cfg.Kafka.Brokers
	left, err := existingTopics(ctx, brokers, f.topics())
	if err != nil {
		return err
	}
	if len(left) == 0 {
		return nil
	}
	if !f.opts.DeleteTopics {
		rep.Notes = append(rep.Notes, fmt.Sprintf("kafka: the deployment's %d topics stay (%s); --delete-topics deletes them", len(left), strings.Join(left, ", ")))
		return nil
	}
	// Each topic is its own action, so the report names each; the cluster deletes them in
	// the background, and the last action waits until none of them is listed any more, so
	// that a run right after this one finds nothing left.
	for i, t := range left {
		last := i == len(left)-1
		rep.Actions = append(rep.Actions, &Action{Where: "kafka", Statement: "delete topic " + t, run: func(ctx context.Context, a *Action) error {
			if err := deleteTopic(ctx, brokers, t); err != nil {
				return err
			}
			if last {
				return waitDeleted(ctx, brokers, left)
			}
			return nil
		}})
	}
	return nil
}

func deleteTopic(ctx context.Context, brokers []string, topic string) error {
	res, err := kafkax.Client(brokers).DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{topic}})
	if err != nil {
		return err
	}
	if err := res.Errors[topic]; err != nil && !errors.Is(err, kafka.UnknownTopicOrPartition) {
		return err
	}
	return nil
}

// waitDeleted waits until the cluster lists none of the topics.
func waitDeleted(ctx context.Context, brokers []string, topics []string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		left, err := existingTopics(ctx, brokers, topics)
		if err != nil {
			return err
		}
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("topics %s are still listed 30s after their deletion", strings.Join(left, ", "))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// noteSource says what stays on the source: the moved tables, frozen by the cut-over's
// guard, and the journal.
func (f *Finalizer) noteSource(ctx context.Context, rep *Report) error {
	var guarded, unguarded []string
	for _, t := range f.cfg.Tables {
		var n int
		err := f.source.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+mysqlx.QuoteTable(shardmeta.Database, shardmeta.Guard)+" WHERE db = ? AND tbl = ?", t.DB(), t.TableName()).Scan(&n)
		if nerr := mysqlx.Number(err); nerr == mysqlx.ErNoSuchTable || nerr == mysqlx.ErBadDB {
			n, err = 0, nil
		}
		if err != nil {
			return fmt.Errorf("read the source's guard: %w", err)
		}
		if n > 0 {
			guarded = append(guarded, t.Name)
		} else {
			unguarded = append(unguarded, t.Name)
		}
	}
	if len(guarded) > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("source: %s are now a frozen copy whose guard triggers (_cleave_guard_*) refuse writes; finalize leaves them, drop them when you no longer need them", strings.Join(guarded, ", ")))
	}
	if len(unguarded) > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("source: %s have no guard row in %s.%s, so the source takes writes to them that no shard will see", strings.Join(unguarded, ", "), shardmeta.Database, shardmeta.Guard))
	}
	rep.Notes = append(rep.Notes, fmt.Sprintf("source: the cut-over journal %s.%s stays, as the record of the migration", shardmeta.Database, shardmeta.Cutover))
	return nil
}

func sqlString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `''`).Replace(s) + "'"
}

func sqlList(vals []string) string {
	if len(vals) == 0 {
		return "NULL"
	}
	q := make([]string, len(vals))
	for i, v := range vals {
		q[i] = sqlString(v)
	}
	return strings.Join(q, ", ")
}
