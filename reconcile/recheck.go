package reconcile

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/event"
	"github.com/cleave-dev/cleave/kafkax"
	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/shardmeta"
)

// keyBatch is how many keys one re-read query names.
const keyBatch = 500

func quoteIdent(s string) string { return mysqlx.QuoteIdent(s) }

func parseUint(b []byte) (uint64, error) { return strconv.ParseUint(string(b), 10, 64) }

// recheck settles candidate rows under live writes.
//
// A difference seen once may be replication lag. Each round:
//
//  1. read the rows on the source (src1);
//  2. note the source's binlog position P (the flavor's binlog status statement, read after
//     src1, so every change src1 reflects is below P);
//  3. wait until every shard's sink has applied past P on every partition of the table's
//     topic (min applied_version in _cleave.offsets >= version(P)); a shard without any
//     offsets for the topic has no sink running and is not waited for;
//  4. read the rows on every shard, then on the source again (src2).
//
// For a row with src1 == src2 the source did not change it between steps 1 and 4, so every
// change of it is below P and already applied: the shards must show exactly src2. If they
// do not, that round counts against the row. A row must differ in two such rounds (or the
// only round) to be drift, which also covers a change and its revert between 1 and 4.
// A row whose source copy changed (src1 != src2) is inconclusive for the round; when the
// sinks did not reach P within the round's wait, the round is inconclusive for every row.
// Rows still inconclusive after the last round are in flight, never drift. The wait doubles
// every round.
func (c *Checker) recheck(ctx context.Context, ti *tableInfo, keys [][][]byte) ([]DriftRow, []InFlightRow, error) {
	type pend struct {
		key      [][]byte
		diffs    int
		last     []DriftRow
		changing bool
		lag      string
	}
	rounds := max(1, c.cfg.Reconcile.RecheckRounds)
	need := min(2, rounds)
	pending := map[string]*pend{}
	var order []string
	for _, k := range keys {
		mk := mapKey(k)
		if _, ok := pending[mk]; !ok {
			pending[mk] = &pend{key: k}
			order = append(order, mk)
		}
	}
	var drift []DriftRow
	wait := c.opts.RecheckWait
	backoff := 100 * time.Millisecond
	for round := 0; round < rounds && len(pending) > 0; round++ {
		var batch [][][]byte
		for _, mk := range order {
			if p, ok := pending[mk]; ok {
				batch = append(batch, p.key)
			}
		}
		src1, err := c.readByKeys(ctx, c.source, ti, batch, "")
		if err != nil {
			return nil, nil, fmt.Errorf("re-read rows of %s on the source: %w", ti.name, err)
		}
		v, havePos, err := c.sourceVersion(ctx)
		if err != nil {
			return nil, nil, err
		}
		lag := ""
		if havePos {
			ok, note, err := c.waitSinks(ctx, ti, v, wait)
			if err != nil {
				return nil, nil, err
			}
			if !ok {
				lag = note
			}
		}
		unsettled := false
		if lag != "" {
			for _, p := range pending {
				p.lag, p.changing = lag, false
			}
			unsettled = true
		} else {
			copies := make([]map[string]*rowInfo, len(c.shards))
			for i, db := range c.shards {
				m, err := c.readByKeys(ctx, db, ti, batch, ti.shards[i].versionCol)
				if err != nil {
					return nil, nil, fmt.Errorf("re-read rows of %s on shard %s: %w", ti.name, c.shardNames[i], err)
				}
				copies[i] = m
			}
			src2, err := c.readByKeys(ctx, c.source, ti, batch, "")
			if err != nil {
				return nil, nil, fmt.Errorf("re-read rows of %s on the source: %w", ti.name, err)
			}
			for _, mk := range order {
				p, ok := pending[mk]
				if !ok {
					continue
				}
				a, b := src1[mk], src2[mk]
				if !sameRow(a, b) {
					p.changing, p.lag = true, ""
					unsettled = true
					continue
				}
				on := make([]*rowInfo, len(copies))
				for i := range copies {
					on[i] = copies[i][mk]
				}
				d, err := c.classify(ti, p.key, b, on)
				if err != nil {
					return nil, nil, err
				}
				if len(d) == 0 {
					delete(pending, mk)
					continue
				}
				p.diffs++
				p.last, p.changing, p.lag = d, false, ""
				if p.diffs >= need {
					drift = append(drift, d...)
					delete(pending, mk)
				}
			}
		}
		if len(pending) > 0 && round < rounds-1 {
			if unsettled {
				if err := sleep(ctx, backoff); err != nil {
					return nil, nil, err
				}
				backoff = min(backoff*2, 5*time.Second)
			}
			wait *= 2
		}
	}
	var inflight []InFlightRow
	for _, mk := range order {
		p, ok := pending[mk]
		if !ok {
			continue
		}
		f := InFlightRow{Key: ti.encodeKey(p.key)}
		switch {
		case p.lag != "":
			f.Reason = p.lag
		case p.changing:
			f.Reason = "source row kept changing"
		default:
			f.Reason = "differed in fewer rounds than needed to confirm"
		}
		for _, d := range p.last {
			if !contains(f.Shards, d.Shard) {
				f.Shards = append(f.Shards, d.Shard)
			}
		}
		inflight = append(inflight, f)
	}
	for i := range drift {
		if drift[i].Kind != Changed {
			continue
		}
		cols, err := c.changedColumns(ctx, ti, drift[i].raw, c.shardIndex(drift[i].Shard))
		if err != nil {
			return nil, nil, err
		}
		drift[i].Columns = cols
	}
	return drift, inflight, nil
}

func (c *Checker) shardIndex(name string) int {
	for i, n := range c.shardNames {
		if n == name {
			return i
		}
	}
	return -1
}

func sameRow(a, b *rowInfo) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.hash == b.hash && a.sk.Null == b.sk.Null && string(a.sk.Bytes) == string(b.sk.Bytes)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// readByKeys reads the rows with the given keys, in batches.
func (c *Checker) readByKeys(ctx context.Context, db *sql.DB, ti *tableInfo, keys [][][]byte, versionCol string) (map[string]*rowInfo, error) {
	out := map[string]*rowInfo{}
	for start := 0; start < len(keys); start += keyBatch {
		where, args, err := ti.keysWhere(keys[start:min(start+keyBatch, len(keys))])
		if err != nil {
			return nil, err
		}
		m, err := c.readRows(ctx, db, ti, where, args, versionCol, 0)
		if err != nil {
			return nil, err
		}
		for k, v := range m {
			out[k] = v
		}
	}
	return out, nil
}

// sourceVersion is the version of the source's current binlog position: every change
// committed so far has a lower version. ok is false when the source has no binlog.
func (c *Checker) sourceVersion(ctx context.Context) (event.Version, bool, error) {
	file, pos, ok, err := binlogStatus(ctx, c.source, c.srcInfo.flavor)
	if err != nil || !ok {
		return 0, ok, err
	}
	v, err := event.NewVersion(file, pos, 0)
	if err != nil {
		return 0, false, err
	}
	return v, true, nil
}

// binlogStatus reads the source's binlog file and position with its flavor's statement
// (MySQL 8.4 removed SHOW MASTER STATUS). ok is false when the source keeps no binlog.
func binlogStatus(ctx context.Context, db *sql.DB, f mysqlx.Flavor) (file string, pos uint64, ok bool, err error) {
	stmt := f.BinlogStatusStatement()
	file, pos, _, err = mysqlx.BinlogStatus(ctx, db, stmt)
	switch {
	case errors.Is(err, mysqlx.ErrNoBinlog):
		return "", 0, false, nil
	case err != nil:
		return "", 0, false, fmt.Errorf("%w (on %s, %s needs the %s privilege: GRANT %s ON *.* TO the reconcile user)",
			err, f.Product(), stmt, f.BinlogMonitorPrivilege(), f.BinlogMonitorPrivilege())
	}
	return file, pos, file != "", nil
}

// waitSinks waits until every shard whose sink keeps offsets for the table's topic has
// applied past version v on every partition, or timeout passes; note then says which
// shard is behind. A shard without offsets for the topic has no sink and is not waited for.
func (c *Checker) waitSinks(ctx context.Context, ti *tableInfo, v event.Version, timeout time.Duration) (bool, string, error) {
	return c.waitApplied(ctx, []string{ti.name}, v, timeout, false)
}

// WaitApplied waits until the sink of every configured shard has applied past version v on
// every partition of the topic of every listed table (db.table), or timeout passes. Unlike
// the re-check's wait, a shard without offsets for a topic, or with fewer partitions than
// configured, is behind: the caller needs every shard to have caught up, not only those
// whose sinks have started. When ok is false, behind names the first shard, table and
// topic found behind and the version it had applied.
func (c *Checker) WaitApplied(ctx context.Context, tables []string, v event.Version, timeout time.Duration) (ok bool, behind string, err error) {
	for _, name := range tables {
		if c.cfg.Table(name) == nil {
			return false, "", fmt.Errorf("reconcile: table %q is not configured (tables[].name)", name)
		}
	}
	if err := c.connect(ctx); err != nil {
		return false, "", fmt.Errorf("reconcile: %w", err)
	}
	return c.waitApplied(ctx, tables, v, timeout, true)
}

// waitApplied is the wait of waitSinks (strict false) and WaitApplied (strict true): it
// polls the sinks' offsets of every table's topic on every shard (min applied_version in
// _cleave.offsets for the shard's group and the topic), a partition without a row counting
// as having applied nothing. Without strict, a shard with no offsets at all for a topic
// (no bookkeeping, or no sink has run) is skipped; with it, that shard is behind.
func (c *Checker) waitApplied(ctx context.Context, tables []string, v event.Version, timeout time.Duration, strict bool) (bool, string, error) {
	type target struct{ table, topic string }
	targets := make([]target, len(tables))
	for i, name := range tables {
		db, tbl, err := config.SplitName(name)
		if err != nil {
			return false, "", err
		}
		targets[i] = target{name, kafkax.TableTopic(c.cfg.Kafka.TopicPrefix, db, tbl)}
	}
	deadline := time.Now().Add(timeout)
	q := "SELECT COUNT(*), COALESCE(MIN(applied_version),0) FROM " + mysqlx.QuoteTable(shardmeta.Database, shardmeta.Offsets) +
		" WHERE consumer_group = ? AND topic = ?"
	parts := c.cfg.Kafka.Partitions
	for {
		note := ""
	scan:
		for i, db := range c.shards {
			group := kafkax.SinkGroup(c.cfg.Kafka.TopicPrefix, c.shardNames[i])
			for _, t := range targets {
				var n int64
				var applied uint64
				err := db.QueryRowContext(ctx, q, group, t.topic).Scan(&n, &applied)
				switch {
				case err != nil && (mysqlx.Number(err) == mysqlx.ErNoSuchTable || mysqlx.Number(err) == 1049):
					if !strict {
						continue // no bookkeeping: no sink has ever run on this shard
					}
					note = fmt.Sprintf("sinks behind: shard %s has no sink offsets (no %s.%s table: run cleave prepare and start its sink) for table %s (topic %s), so it has applied nothing up to version %d after waiting %s",
						c.shardNames[i], shardmeta.Database, shardmeta.Offsets, t.table, t.topic, uint64(v), timeout)
					break scan
				case err != nil:
					return false, "", fmt.Errorf("read sink offsets of %s on shard %s: %w", t.topic, c.shardNames[i], err)
				case n == 0 && !strict:
					continue // no sink keeps offsets for this table here: nothing to wait for
				}
				if int(n) < parts {
					applied = 0 // a partition without offsets has applied nothing yet
				}
				if event.Version(applied) < v {
					note = fmt.Sprintf("sinks behind: shard %s (group %s) had applied table %s (topic %s) up to version %d (%d of %d partitions with offsets), below version %d after waiting %s",
						c.shardNames[i], group, t.table, t.topic, applied, n, parts, uint64(v), timeout)
					break scan
				}
			}
		}
		if note == "" {
			return true, "", nil
		}
		if time.Now().After(deadline) {
			return false, note, nil
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return false, "", err
		}
	}
}

// changedColumns names the columns whose parts differ between the source row and the
// shard's copy.
func (c *Checker) changedColumns(ctx context.Context, ti *tableInfo, key [][]byte, shard int) ([]string, error) {
	if shard < 0 {
		return nil, nil
	}
	src, err := c.readParts(ctx, c.source, ti, key)
	if err != nil {
		return nil, fmt.Errorf("read changed row of %s on the source: %w", ti.name, err)
	}
	dst, err := c.readParts(ctx, c.shards[shard], ti, key)
	if err != nil {
		return nil, fmt.Errorf("read changed row of %s on shard %s: %w", ti.name, c.shardNames[shard], err)
	}
	if src == nil || dst == nil {
		return nil, nil
	}
	var cols []string
	for i, col := range ti.hashed {
		if src[i] != dst[i] {
			cols = append(cols, col.Name)
		}
	}
	return cols, nil
}

// readParts reads the hash parts of one row (nil when absent), as the row hash joins them.
func (c *Checker) readParts(ctx context.Context, db *sql.DB, ti *tableInfo, key [][]byte) ([]string, error) {
	where, args, err := ti.keysWhere([][][]byte{key})
	if err != nil {
		return nil, err
	}
	rows, err := db.QueryContext(ctx, "SELECT "+strings.Join(ti.partSels, ",")+" FROM "+ti.quoted+" WHERE "+where, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	if !rows.Next() {
		return nil, rows.Err()
	}
	raw := make([]sql.RawBytes, len(ti.partSels))
	dest := make([]any, len(raw))
	for i := range raw {
		dest[i] = &raw[i]
	}
	if err := rows.Scan(dest...); err != nil {
		return nil, err
	}
	return ti.renderParts(raw), rows.Err()
}
