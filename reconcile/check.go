package reconcile

import (
	"context"
	"database/sql"
	"fmt"
	"math/big"
	"math/bits"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/cleave-dev/cleave/route"
)

const (
	// firstChunk is the size of the first chunk of an adaptive run; the size then follows
	// the time the chunk queries take.
	firstChunk = 1000
	minChunk   = 100
	maxChunk   = 2_000_000
	// leafRows is the source row count under which a mismatched range is compared row by
	// row instead of being bisected further.
	leafRows = 2000
	// fanout is how many parts a mismatched range is split into.
	fanout = 8
	// flushAt is how many differing rows are collected before they are re-checked.
	flushAt = 5000
)

// agg is the aggregate of one side over one key range.
type agg struct {
	count int64
	sum   *big.Int
	// stray counts rows that routing places on another shard (shards only).
	stray int64
}

// Chunks flow through the servers without lock-step: every server moves on to the next
// chunk as soon as its own aggregate is done instead of waiting for the slowest server, up
// to inFlight chunks ahead of the oldest unfinished one. The source does the most work per
// chunk (every row of the range, where a shard holds only its share, even with routing
// evaluated on top), so it is the one that bounds the speed: it runs sourceQueries chunks
// at once, each shard shardQueries. Every query stays within the chunk time target, but the
// source carries up to two of them (and a boundary lookup) at a time: --max-rows-per-second
// and the Threads_running back-off bound what that adds to a busy source.
const (
	inFlight      = 4
	sourceQueries = 2
	shardQueries  = 1
)

// chunk is one key range on its way through the servers.
type chunk struct {
	r      keyRange
	src    agg
	shards []agg
	// elapsed is the slowest server's query time for this chunk.
	elapsed time.Duration
	err     error
	mu      sync.Mutex
	left    int
	done    chan struct{}
}

// finish records one server's part of the chunk; the last one closes done.
func (ch *chunk) finish(elapsed time.Duration, err error) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	ch.elapsed = max(ch.elapsed, elapsed)
	if err != nil && ch.err == nil {
		ch.err = err
	}
	ch.left--
	if ch.left == 0 {
		close(ch.done)
	}
}

// checkTable walks the table chunk by chunk from where the state says, comparing each.
//
// Chunk boundaries come from the source: the key size rows past the previous boundary
// (keyset pagination, never OFFSET from the start). The last chunk is open above, and the
// first open below, so that shard rows outside the source's key range are seen too. A
// producer finds the boundaries, one worker per server runs that server's aggregate of
// every chunk in order, and this goroutine takes the chunks in order as all their
// aggregates are in: compares them, drills into mismatches, saves progress, and adapts the
// chunk size. At most inFlight chunks are under way, so progress and the size adapt closely.
func (c *Checker) checkTable(ctx context.Context, ti *tableInfo, tr *TableReport, ts *tableState, st *state, progress func(int64)) error {
	ts.restore(tr)
	if ts.Done {
		return nil
	}
	size := firstChunk
	if c.opts.ChunkSize > 0 {
		size = c.opts.ChunkSize
	}
	if c.limiter != nil && size > c.limiter.Burst() {
		size = c.limiter.Burst()
	}
	var nextSize atomic.Int64
	nextSize.Store(int64(size))
	target := c.cfg.Reconcile.ChunkTarget

	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()

	servers := len(c.shards) + 1
	work := make([]chan *chunk, servers)
	for i := range work {
		work[i] = make(chan *chunk, inFlight)
	}
	order := make(chan *chunk, inFlight)
	slots := make(chan struct{}, inFlight)

	// Workers per server: index 0 is the source, i+1 shard i.
	for w := range servers {
		n := shardQueries
		if w == 0 {
			n = sourceQueries
		}
		for range n {
			wg.Add(1)
			go c.chunkWorker(ctx, &wg, ti, w, work[w])
		}
	}

	// The producer: boundaries in key order, each chunk handed to every worker.
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer func() {
			for _, w := range work {
				close(w)
			}
			close(order)
		}()
		lower := ts.Next
		for {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
			size := int(nextSize.Load())
			ch := &chunk{shards: make([]agg, len(c.shards)), left: servers, done: make(chan struct{})}
			err := c.throttle(ctx, size)
			var upper [][]byte
			if err == nil {
				upper, err = c.boundary(ctx, ti, lower, size)
			}
			if err != nil {
				ch.err, ch.left = err, 0
				close(ch.done)
				order <- ch
				return
			}
			ch.r = keyRange{Lower: lower, Upper: upper}
			order <- ch
			for _, w := range work {
				w <- ch
			}
			if upper == nil {
				return
			}
			lower = upper
		}
	}()

	for ch := range order {
		select {
		case <-ch.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		if ch.err != nil {
			return ch.err
		}
		r, src, shards := ch.r, ch.src, ch.shards
		if !c.matches(ti, src, shards) {
			tr.ChunksMismatched++
			keys, err := c.drill(ctx, ti, r, src.count, 0)
			if err != nil {
				return err
			}
			ts.Pending = append(ts.Pending, keys...)
			if len(ts.Pending) >= flushAt || r.Upper == nil {
				if err := c.settle(ctx, ti, tr, ts); err != nil {
					return err
				}
			}
		}
		tr.Chunks++
		tr.RowsChecked += src.count
		for i, s := range shards {
			tr.Shards[i].RowsChecked += s.count
		}
		c.m.rows.WithLabelValues(ti.name).Add(float64(src.count))
		c.m.chunks.WithLabelValues(ti.name).Inc()
		ts.save(tr, r.Upper)
		if err := c.saveState(st); err != nil {
			return err
		}
		progress(tr.RowsChecked)
		if r.Upper == nil {
			if err := c.settle(ctx, ti, tr, ts); err != nil {
				return err
			}
			ts.Done = true
			ts.save(tr, nil)
			return c.saveState(st)
		}
		if c.opts.ChunkSize == 0 {
			size = adapt(size, ch.elapsed, target)
			if c.limiter != nil && size > c.limiter.Burst() {
				size = c.limiter.Burst()
			}
			nextSize.Store(int64(size))
		}
		<-slots
	}
	// The producer stopped without a last chunk: only a cancelled context does that.
	if err := ctx.Err(); err != nil {
		return err
	}
	return fmt.Errorf("check of %s stopped before its last chunk", ti.name)
}

// chunkWorker runs server w's aggregate (0: the source, i+1: shard i) of every chunk it is
// handed.
func (c *Checker) chunkWorker(ctx context.Context, wg *sync.WaitGroup, ti *tableInfo, w int, work <-chan *chunk) {
	defer wg.Done()
	for ch := range work {
		if ctx.Err() != nil {
			ch.finish(0, ctx.Err())
			continue
		}
		start := time.Now()
		a, err := c.aggregateOn(ctx, ti, w-1, ch.r)
		if w == 0 {
			ch.src = a
		} else {
			ch.shards[w-1] = a
		}
		ch.finish(time.Since(start), err)
	}
}

// adapt scales the chunk size so that its slowest query takes about target, changing it
// by at most a factor of two per chunk (as pt-table-checksum does), so one slow query
// caused by something else does not swing it wildly.
func adapt(size int, elapsed, target time.Duration) int {
	if elapsed <= 0 {
		return min(size*2, maxChunk)
	}
	f := float64(target) / float64(elapsed)
	f = max(0.5, min(2, f))
	return max(minChunk, min(maxChunk, int(float64(size)*f)))
}

// boundary returns the key size rows past lower (the chunk's inclusive upper bound), or nil
// when fewer rows remain: the chunk is then the last one.
func (c *Checker) boundary(ctx context.Context, ti *tableInfo, lower [][]byte, size int) ([][]byte, error) {
	where, args, err := ti.where(keyRange{Lower: lower})
	if err != nil {
		return nil, err
	}
	q := fmt.Sprintf("SELECT %s FROM %s FORCE INDEX (PRIMARY) WHERE %s ORDER BY %s LIMIT 1 OFFSET %d",
		ti.keySelect(), ti.quoted, where, ti.keyList(), size-1)
	rows, err := c.source.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("find chunk boundary of %s on the source: %w", ti.name, err)
	}
	defer rows.Close()
	if !rows.Next() {
		return nil, rows.Err()
	}
	key, err := scanKey(rows, len(ti.keys), 0)
	if err != nil {
		return nil, fmt.Errorf("find chunk boundary of %s: %w", ti.name, err)
	}
	return key, rows.Err()
}

// scanKey reads len key columns followed by extra columns (discarded) from the current row.
func scanKey(rows *sql.Rows, n, extra int) ([][]byte, error) {
	raw := make([]sql.RawBytes, n+extra)
	dest := make([]any, n+extra)
	for i := range raw {
		dest[i] = &raw[i]
	}
	if err := rows.Scan(dest...); err != nil {
		return nil, err
	}
	key := make([][]byte, n)
	for i := range key {
		key[i] = append([]byte{}, raw[i]...)
	}
	return key, nil
}

// aggregates computes the chunk's aggregate on the source and on every shard at once.
func (c *Checker) aggregates(ctx context.Context, ti *tableInfo, r keyRange) (agg, []agg, error) {
	var src agg
	shards := make([]agg, len(c.shards))
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		var err error
		src, err = c.aggregateOn(gctx, ti, -1, r)
		return err
	})
	for i := range c.shards {
		g.Go(func() error {
			var err error
			shards[i], err = c.aggregateOn(gctx, ti, i, r)
			return err
		})
	}
	err := g.Wait()
	return src, shards, err
}

// aggregateOn computes the aggregate of the range on one server: the source (shard -1) or
// shard i. The server computes it in SQL where it can; the rows come to Go where it cannot
// (streamAggregate).
func (c *Checker) aggregateOn(ctx context.Context, ti *tableInfo, shard int, r keyRange) (agg, error) {
	db, member, where := c.source, "", "the source"
	if shard >= 0 {
		db, where = c.shards[shard], "shard "+c.shardNames[shard]
		if !ti.replicated {
			member = ti.member[shard]
		}
	}
	var a agg
	var err error
	if ti.goHash || shard >= 0 && ti.memberGo[shard] {
		a, err = c.streamAggregate(ctx, db, ti, r, shard)
	} else {
		a, err = c.aggregate(ctx, db, ti, r, member)
	}
	if err != nil {
		return agg{}, fmt.Errorf("checksum %s on %s: %w", ti.name, where, err)
	}
	return a, nil
}

// streamAggregate computes in Go what aggregate computes in SQL, from each row's hash (or,
// for goHash, its parts) and, on a shard, its shard key, routed by the Router the sinks
// use: for a shard that has no MD5() (MySQL 9.6+ without component_classic_hashing) the
// hash strategy's membership cannot be written in SQL, and for a JSON column that one side
// stores natively the hash cannot be. It is taken only where the SQL path cannot be exact
// (membership checked in SQL against a hash computed elsewhere would need MD5 there, and
// requiring a component of every MySQL shard is not an option).
//
// What it costs, measured on MariaDB 10.11 where both paths run (1M rows of a 9-column
// table, the whole range at once, a shared machine under load, three runs each): the SQL
// path took 2.9-4.1 s of server CPU; this one 2.4-3.0 s of server CPU, as the server no
// longer computes MD5 but sends every row, plus 0.8-1.1 s of cleave's CPU to read, sum and
// route them. About the same CPU in all, but moved partly from the shard to cleave, and
// 20-30 bytes per row on the network; TestStreamedAggregateEqualsTheSQLAggregate holds the
// two to the same count, sum and stray rows.
func (c *Checker) streamAggregate(ctx context.Context, db *sql.DB, ti *tableInfo, r keyRange, shard int) (agg, error) {
	where, args, err := ti.where(r)
	if err != nil {
		return agg{}, err
	}
	sel, nh := ti.rowHash, 1
	if ti.goHash {
		sel, nh = strings.Join(ti.hashSels, ","), len(ti.hashSels)
	}
	routed := shard >= 0 && !ti.replicated
	if routed {
		sel += "," + ti.shardKeySelect()
	}
	rows, err := db.QueryContext(ctx, "SELECT "+sel+" FROM "+ti.quoted+" FORCE INDEX (PRIMARY) WHERE "+where, args...)
	if err != nil {
		return agg{}, err
	}
	defer rows.Close()
	raw := make([]sql.RawBytes, nh+1)
	if !routed {
		raw = raw[:nh]
	}
	dest := make([]any, len(raw))
	for i := range raw {
		dest[i] = &raw[i]
	}
	var a agg
	var lo, hi, carry uint64
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return agg{}, err
		}
		var h uint64
		if ti.goHash {
			h = ti.goRowHash(raw[:nh])
		} else if h, err = parseUint(raw[0]); err != nil {
			return agg{}, fmt.Errorf("row hash: %w", err)
		}
		lo, carry = bits.Add64(lo, h, 0)
		hi += carry
		a.count++
		if routed {
			// A key routing refuses (no list entry, no default) belongs nowhere: stray
			// wherever it is, as memberSQL counts it.
			owners, err := c.router.Route(ti.name, routeValue(raw[nh], raw[nh] == nil))
			if err != nil || !contains(owners, shard) {
				a.stray++
			}
		}
	}
	if err := rows.Err(); err != nil {
		return agg{}, err
	}
	a.sum = new(big.Int).Lsh(new(big.Int).SetUint64(hi), 64)
	a.sum.Add(a.sum, new(big.Int).SetUint64(lo))
	return a, nil
}

func (c *Checker) aggregate(ctx context.Context, db *sql.DB, ti *tableInfo, r keyRange, member string) (agg, error) {
	where, args, err := ti.where(r)
	if err != nil {
		return agg{}, err
	}
	stray := "0"
	if member != "" && member != "TRUE" {
		// COUNT, not SUM: SUM of an integer accumulates a DECIMAL, per row.
		stray = "COUNT(IF(" + member + ",NULL,1))"
	}
	q := fmt.Sprintf("SELECT COUNT(*), COALESCE(SUM(%s),0), %s FROM %s FORCE INDEX (PRIMARY) WHERE %s",
		ti.rowHash, stray, ti.quoted, where)
	var a agg
	var sum string
	if err := db.QueryRowContext(ctx, q, args...).Scan(&a.count, &sum, &a.stray); err != nil {
		return agg{}, err
	}
	s, ok := new(big.Int).SetString(sum, 10)
	if !ok {
		return agg{}, fmt.Errorf("row hash sum %q is not an integer", sum)
	}
	a.sum = s
	return a, nil
}

// matches reports whether the shards agree with the source over a range: for a broadcast
// table each shard holds what the source holds; otherwise the shards' counts and sums add
// up to the source's and no shard holds a row that routing places elsewhere.
func (c *Checker) matches(ti *tableInfo, src agg, shards []agg) bool {
	if ti.replicated {
		for _, s := range shards {
			if s.count != src.count || s.sum.Cmp(src.sum) != 0 {
				return false
			}
		}
		return true
	}
	var count int64
	sum := new(big.Int)
	for _, s := range shards {
		if s.stray != 0 {
			return false
		}
		count += s.count
		sum.Add(sum, s.sum)
	}
	return count == src.count && sum.Cmp(src.sum) == 0
}

// settle re-checks the differing rows collected so far against the sinks' progress and
// records drift and rows in flight. Rows are collected across chunks so that a lagging
// pipeline is waited for once per batch, not once per chunk.
func (c *Checker) settle(ctx context.Context, ti *tableInfo, tr *TableReport, ts *tableState) error {
	if len(ts.Pending) == 0 {
		return nil
	}
	c.log.Debug("rows differ, re-checking", zap.String("table", ti.name), zap.Int("rows", len(ts.Pending)))
	drift, inflight, err := c.recheck(ctx, ti, ts.Pending)
	if err != nil {
		return err
	}
	for _, d := range drift {
		if len(tr.Drift) >= c.opts.MaxDriftRows {
			tr.Truncated = true
			break
		}
		tr.Drift = append(tr.Drift, d)
	}
	tr.InFlight = append(tr.InFlight, inflight...)
	ts.Pending = nil
	return nil
}

// drill narrows a mismatched range down to the keys that differ: a range with few source
// rows is compared row by row; a larger one is split into fanout parts at source keys, and
// only the parts whose aggregates differ are examined further.
func (c *Checker) drill(ctx context.Context, ti *tableInfo, r keyRange, srcCount int64, depth int) ([][][]byte, error) {
	if srcCount <= leafRows || depth > 20 {
		return c.leaf(ctx, ti, r)
	}
	step := int(srcCount / fanout)
	if step < 1 {
		step = 1
	}
	var parts []keyRange
	lower := r.Lower
	for i := 0; i < fanout-1; i++ {
		u, err := c.boundaryWithin(ctx, ti, lower, r.Upper, step)
		if err != nil {
			return nil, err
		}
		if u == nil {
			break
		}
		parts = append(parts, keyRange{Lower: lower, Upper: u})
		lower = u
	}
	parts = append(parts, keyRange{Lower: lower, Upper: r.Upper})
	var out [][][]byte
	for _, p := range parts {
		src, shards, err := c.aggregates(ctx, ti, p)
		if err != nil {
			return nil, err
		}
		if c.matches(ti, src, shards) {
			continue
		}
		keys, err := c.drill(ctx, ti, p, src.count, depth+1)
		if err != nil {
			return nil, err
		}
		out = append(out, keys...)
		if len(out) > c.opts.MaxDriftRows*2 {
			break
		}
	}
	return out, nil
}

// boundaryWithin is boundary limited to keys at or below upper.
func (c *Checker) boundaryWithin(ctx context.Context, ti *tableInfo, lower, upper [][]byte, size int) ([][]byte, error) {
	where, args, err := ti.where(keyRange{Lower: lower, Upper: upper})
	if err != nil {
		return nil, err
	}
	q := fmt.Sprintf("SELECT %s FROM %s FORCE INDEX (PRIMARY) WHERE %s ORDER BY %s LIMIT 1 OFFSET %d",
		ti.keySelect(), ti.quoted, where, ti.keyList(), size-1)
	rows, err := c.source.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("split range of %s on the source: %w", ti.name, err)
	}
	defer rows.Close()
	if !rows.Next() {
		return nil, rows.Err()
	}
	key, err := scanKey(rows, len(ti.keys), 0)
	if err != nil {
		return nil, err
	}
	// The last key of the range closes the last part anyway.
	if upper != nil && mapKey(key) == mapKey(upper) {
		return nil, rows.Err()
	}
	return key, rows.Err()
}

// rowInfo is one row as the comparison sees it.
type rowInfo struct {
	key     [][]byte
	hash    uint64
	sk      route.Value
	version []byte // the shard row's version column, nil for NULL or none
}

// readRows reads key, row hash, shard key and (on shards) version of the rows of a range or
// of a list of keys. limit 0 means no limit.
func (c *Checker) readRows(ctx context.Context, db *sql.DB, ti *tableInfo, where string, args []any, versionCol string, limit int) (map[string]*rowInfo, error) {
	vsel := "NULL"
	if versionCol != "" {
		vsel = "CAST(" + quoteIdent(versionCol) + " AS BINARY)"
	}
	hashSel, nh := ti.rowHash, 1
	if ti.goHash {
		hashSel, nh = strings.Join(ti.hashSels, ","), len(ti.hashSels)
	}
	q := fmt.Sprintf("SELECT %s, %s, %s, %s FROM %s FORCE INDEX (PRIMARY) WHERE %s",
		ti.keySelect(), hashSel, ti.shardKeySelect(), vsel, ti.quoted, where)
	if limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", limit)
	}
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	n := len(ti.keys)
	out := map[string]*rowInfo{}
	raw := make([]sql.RawBytes, n+nh+2)
	dest := make([]any, len(raw))
	for i := range raw {
		dest[i] = &raw[i]
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		ri := &rowInfo{key: make([][]byte, n)}
		for i := 0; i < n; i++ {
			ri.key[i] = append([]byte{}, raw[i]...)
		}
		if ti.goHash {
			ri.hash = ti.goRowHash(raw[n : n+nh])
		} else {
			h, err := parseUint(raw[n])
			if err != nil {
				return nil, fmt.Errorf("row hash: %w", err)
			}
			ri.hash = h
		}
		ri.sk = routeValue(cloneBytes(raw[n+nh]), raw[n+nh] == nil)
		ri.version = cloneBytes(raw[n+nh+1])
		out[mapKey(ri.key)] = ri
	}
	return out, rows.Err()
}

// leaf compares a range row by row and returns the keys whose rows differ.
func (c *Checker) leaf(ctx context.Context, ti *tableInfo, r keyRange) ([][][]byte, error) {
	where, args, err := ti.where(r)
	if err != nil {
		return nil, err
	}
	limit := c.opts.MaxDriftRows*2 + leafRows*4
	src, err := c.readRows(ctx, c.source, ti, where, args, "", limit)
	if err != nil {
		return nil, fmt.Errorf("read rows of %s on the source: %w", ti.name, err)
	}
	on := make([]map[string]*rowInfo, len(c.shards))
	g, gctx := errgroup.WithContext(ctx)
	for i, db := range c.shards {
		g.Go(func() error {
			m, err := c.readRows(gctx, db, ti, where, args, ti.shards[i].versionCol, limit)
			if err != nil {
				return fmt.Errorf("read rows of %s on shard %s: %w", ti.name, c.shardNames[i], err)
			}
			on[i] = m
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out [][][]byte
	consider := func(k string, key [][]byte) error {
		if seen[k] {
			return nil
		}
		seen[k] = true
		copies := make([]*rowInfo, len(on))
		for i := range on {
			copies[i] = on[i][k]
		}
		d, err := c.classify(ti, key, src[k], copies)
		if err != nil {
			return err
		}
		if len(d) > 0 {
			out = append(out, key)
		}
		return nil
	}
	for k, ri := range src {
		if err := consider(k, ri.key); err != nil {
			return nil, err
		}
	}
	for i := range on {
		for k, ri := range on[i] {
			if err := consider(k, ri.key); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// classify names what is wrong with one key, given the source row (nil: absent) and each
// shard's copy (nil: absent). No result means the row is where it belongs, as it is.
func (c *Checker) classify(ti *tableInfo, key [][]byte, src *rowInfo, copies []*rowInfo) ([]DriftRow, error) {
	var owners []int
	if src != nil {
		o, err := c.router.Route(ti.name, src.sk)
		if err == nil {
			owners = o
		}
	}
	var ownerNames []string
	ownerHas := false
	for _, o := range owners {
		ownerNames = append(ownerNames, c.shardNames[o])
		if copies[o] != nil {
			ownerHas = true
		}
	}
	var out []DriftRow
	add := func(kind Kind, shard int, expected []string) {
		d := DriftRow{Kind: kind, Shard: c.shardNames[shard], ExpectedShards: expected, Key: ti.encodeKey(key), raw: key}
		if cp := copies[shard]; cp != nil {
			d.version, d.hasVersion = cp.version, ti.shards[shard].versionCol != ""
		}
		out = append(out, d)
	}
	stray := false
	for i, cp := range copies {
		if cp == nil {
			continue
		}
		switch {
		case src == nil:
			add(Extra, i, nil)
		case contains(owners, i):
			if cp.hash != src.hash {
				add(Changed, i, ownerNames)
			}
		case ownerHas:
			add(Duplicate, i, ownerNames)
		default:
			add(WrongShard, i, ownerNames)
			stray = true
		}
	}
	if src != nil && !stray {
		for _, o := range owners {
			if copies[o] == nil {
				add(Missing, o, ownerNames)
			}
		}
	}
	return out, nil
}
