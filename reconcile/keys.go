package reconcile

import (
	"context"
	"fmt"
	"sync"

	"golang.org/x/sync/errgroup"
)

// keyed is what CheckKeys loads on its first call and keeps for the next ones: the same
// connections, servers, definitions and routing a run loads.
type keyed struct {
	mu     sync.Mutex
	loaded bool
	tables map[string]*tableInfo
	errs   map[string]error
}

// CheckKeys re-checks exactly the rows of one configured table (db.table) whose primary
// keys are given, on the source against the shards that own them, with the live re-check
// rounds a chunk check gives its differing rows: a row that differs is re-read after every
// sink has applied past the source's position, and reported as drift only when it still
// differs, as in flight when it kept changing or the sinks stayed behind.
//
// keys are Kafka message keys of the table's change events (event.Key: the JSON array of
// the primary key's values); duplicates are checked once. A key that does not decode for
// the table is an error naming both. The report counts the source rows found under the
// keys in RowsChecked and each shard's in its entry; a key with no row anywhere is a row
// deleted on the source and on its shards alike.
//
// The first call connects and loads the definitions of the checker's tables and the
// routing, as Run does; later calls reuse them. Calls may run concurrently with each other
// but not with Run.
func (c *Checker) CheckKeys(ctx context.Context, table string, keys [][]byte) (*TableReport, error) {
	ti, err := c.keyedTable(ctx, table)
	if err != nil {
		return nil, err
	}
	start := c.now()
	held, err := heldKeys(ti, keys)
	if err != nil {
		return nil, fmt.Errorf("reconcile: %w", err)
	}
	tr := c.newTableReport(ti.cfg)

	// A first comparison, as a chunk's, picks the rows that differ; only they wait for
	// the sinks in the re-check rounds.
	src := map[string]*rowInfo{}
	copies := make([]map[string]*rowInfo, len(c.shards))
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		m, err := c.readByKeys(gctx, c.source, ti, held, "")
		if err != nil {
			return fmt.Errorf("read rows of %s on the source: %w", ti.name, err)
		}
		src = m
		return nil
	})
	for i, db := range c.shards {
		g.Go(func() error {
			m, err := c.readByKeys(gctx, db, ti, held, ti.shards[i].versionCol)
			if err != nil {
				return fmt.Errorf("read rows of %s on shard %s: %w", ti.name, c.shardNames[i], err)
			}
			copies[i] = m
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("reconcile: %w", err)
	}
	tr.RowsChecked = int64(len(src))
	for i := range copies {
		tr.Shards[i].RowsChecked = int64(len(copies[i]))
	}
	ts := &tableState{}
	for _, k := range held {
		mk := mapKey(k)
		on := make([]*rowInfo, len(copies))
		for i := range copies {
			on[i] = copies[i][mk]
		}
		d, err := c.classify(ti, k, src[mk], on)
		if err != nil {
			return nil, fmt.Errorf("reconcile: %w", err)
		}
		if len(d) > 0 {
			ts.Pending = append(ts.Pending, k)
		}
	}
	if err := c.settle(ctx, ti, tr, ts); err != nil {
		return nil, fmt.Errorf("reconcile: re-check rows of %s: %w", ti.name, err)
	}
	sortDrift(tr.Drift)
	tr.count()
	tr.DurationSeconds = c.now().Sub(start).Seconds()
	return tr, nil
}

// keyedTable returns the loaded table for CheckKeys, loading every table of the checker
// on the first call. A failed connection is tried again by the next call; a table that
// cannot be checked stays so.
func (c *Checker) keyedTable(ctx context.Context, table string) (*tableInfo, error) {
	k := &c.keyed
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.loaded {
		tables := c.tables()
		infos, errs, err := c.load(ctx, tables)
		if err != nil {
			return nil, err
		}
		k.tables, k.errs = map[string]*tableInfo{}, map[string]error{}
		for i, t := range tables {
			if infos[i] != nil {
				k.tables[t.Name] = infos[i]
			} else {
				k.errs[t.Name] = errs[i]
			}
		}
		k.loaded = true
	}
	if ti := k.tables[table]; ti != nil {
		return ti, nil
	}
	if err := k.errs[table]; err != nil {
		return nil, fmt.Errorf("reconcile: cannot check %s: %w", table, err)
	}
	if c.cfg.Table(table) == nil {
		return nil, fmt.Errorf("reconcile: table %q is not configured (tables[].name)", table)
	}
	return nil, fmt.Errorf("reconcile: table %s is not among the checker's tables %v", table, c.opts.Tables)
}

// heldKeys turns message keys into distinct held key values, in their first order.
func heldKeys(ti *tableInfo, keys [][]byte) ([][][]byte, error) {
	seen := make(map[string]bool, len(keys))
	held := make([][][]byte, 0, len(keys))
	for _, msg := range keys {
		if seen[string(msg)] {
			continue
		}
		seen[string(msg)] = true
		k, err := ti.decodeKey(msg)
		if err != nil {
			return nil, err
		}
		held = append(held, k)
	}
	// Two texts of one number ([1.0] and [1]) are one row.
	distinct := make(map[string]bool, len(held))
	out := held[:0]
	for _, k := range held {
		if mk := mapKey(k); !distinct[mk] {
			distinct[mk] = true
			out = append(out, k)
		}
	}
	return out, nil
}
