package backfill

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/cleave-dev/cleave/capture"
	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/event"
	"github.com/cleave-dev/cleave/mysqlx"
)

// Stream is where copied chunks go: capture, running in the same process.
type Stream interface {
	WaitStreaming(ctx context.Context) error
	WatchTable(ctx context.Context, table string) (*capture.Watch, error)
	Weave(ctx context.Context, ch *capture.Chunk) (*capture.Ticket, error)
	Cancel(t *capture.Ticket)
}

var _ Stream = (*capture.Capture)(nil)

// Options are the collaborators and seams of a Backfill. The zero value works.
type Options struct {
	// Log receives the backfill's logs; nil discards them.
	Log *zap.Logger
	// Registerer receives the backfill's metrics; nil registers them nowhere.
	Registerer prometheus.Registerer
	// MaxThreadsRunning pauses the copy while the source's Threads_running is above it.
	// 0 means 50; negative disables the check.
	MaxThreadsRunning int
	// PollInterval is how often the copier looks for new requests. Default 2 s.
	PollInterval time.Duration
	// LockTables takes every snapshot the MySQL way (a brief LOCK TABLES ... READ around
	// the snapshot's start) also on MariaDB. Tests use it to exercise that path.
	LockTables bool
	// Pipeline is how many chunks may be copied ahead of Kafka's acknowledgement. Default 3.
	Pipeline int
	// RetryMaxTime is how long the copier retries a failing source or Kafka without
	// progress before it gives up with the error. Default 5 minutes.
	RetryMaxTime time.Duration
}

// Backfill copies the configured tables' existing rows into capture's stream. Create it
// with New; Run it beside capture.
type Backfill struct {
	cfg     *config.Config
	stream  Stream
	opts    Options
	log     *zap.Logger
	metrics *metrics
	limiter *rate.Limiter
	tables  []string // configured tables, in configuration order

	mu     sync.Mutex
	status map[string]*TableStatus
}

// TableStatus is one table's backfill as this process sees it.
type TableStatus struct {
	Table    string  `json:"table"`
	State    string  `json:"state"` // waiting, copying, done
	Rows     int64   `json:"rows"`
	Chunks   int64   `json:"chunks"`
	Estimate int64   `json:"estimate"`
	Ratio    float64 `json:"progress_ratio"`
	// ETASeconds is known once the copy has a rate.
	ETASeconds *float64 `json:"eta_seconds,omitempty"`
	// LastKey is the key the copy resumes after.
	LastKey json.RawMessage `json:"last_key,omitempty"`
	// ChunksCopied counts chunks copied in this process, including copies repeated after
	// a lost chunk; Superseded the rows left out for a newer change in the stream.
	ChunksCopied int64 `json:"chunks_copied"`
	Superseded   int64 `json:"superseded"`
}

// New returns a backfill of cfg's tables into stream. It connects to nothing until Run.
func New(cfg *config.Config, stream Stream, opts Options) (*Backfill, error) {
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	if opts.MaxThreadsRunning == 0 {
		opts.MaxThreadsRunning = 50
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = 2 * time.Second
	}
	if opts.Pipeline <= 0 {
		opts.Pipeline = 3
	}
	if opts.RetryMaxTime <= 0 {
		opts.RetryMaxTime = 5 * time.Minute
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("register backfill metrics: %w", err)
	}
	b := &Backfill{cfg: cfg, stream: stream, opts: opts, log: opts.Log, metrics: m, status: map[string]*TableStatus{}}
	if n := cfg.Backfill.MaxRowsPerSecond; n > 0 {
		b.limiter = rate.NewLimiter(rate.Limit(n), max(cfg.Backfill.ChunkSize, 1))
	}
	for _, t := range cfg.Tables {
		b.tables = append(b.tables, t.Name)
		b.status[t.Name] = &TableStatus{Table: t.Name, State: "waiting"}
		m.rows.WithLabelValues(t.Name)
		m.chunks.WithLabelValues(t.Name)
		m.superseded.WithLabelValues(t.Name)
		m.ratio.WithLabelValues(t.Name)
	}
	return b, nil
}

// Status returns each configured table's backfill, in configuration order.
func (b *Backfill) Status() []TableStatus {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]TableStatus, 0, len(b.tables))
	for _, t := range b.tables {
		out = append(out, *b.status[t])
	}
	return out
}

func (b *Backfill) setStatus(table string, f func(s *TableStatus)) {
	b.mu.Lock()
	f(b.status[table])
	b.mu.Unlock()
}

// errSuperseded: a newer request for the table arrived while it was being copied.
var errSuperseded = errors.New("a newer backfill request for the table arrived")

// Run copies every configured table whose current copy is not done, then keeps serving
// requests until ctx is cancelled (it then returns nil). It returns an error only for what
// retrying cannot cure: a table it cannot read or encode, capture stopped, or the source
// or Kafka failing for longer than RetryMaxTime.
func (b *Backfill) Run(ctx context.Context) error {
	src, err := mysqlx.Open(ctx, "source", b.cfg.Source.DSN)
	if err != nil {
		return stopped(ctx, err)
	}
	defer src.Close()
	c := &copier{b: b, src: src}
	if err := c.init(ctx); err != nil {
		return stopped(ctx, err)
	}
	defer c.close()
	store := NewStore(b.cfg.Kafka.Brokers, b.cfg.Kafka.TopicPrefix, b.cfg.Kafka.ReplicationFactor)
	defer store.Close()
	c.store = store
	if err := c.retry(ctx, "create the backfill topic", func() error { return store.Ensure(ctx) }); err != nil {
		return stopped(ctx, err)
	}
	if err := c.retry(ctx, "read the backfill topic", func() error { _, err := store.Poll(ctx); return err }); err != nil {
		return stopped(ctx, err)
	}
	for _, t := range b.tables {
		p := store.State().Current(t)
		if p != nil {
			// The counter starts with what the table's current copy stored before.
			b.metrics.rows.WithLabelValues(t).Add(float64(p.Rows))
		}
		b.showProgress(t, p, nil)
	}
	// The first snapshot must come after capture's start position (see the package doc).
	if err := b.stream.WaitStreaming(ctx); err != nil {
		return stopped(ctx, err)
	}
	for {
		table := b.next(store.State())
		if table == "" {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(b.opts.PollInterval):
			}
			if err := c.retry(ctx, "read the backfill topic", func() error { _, err := store.Poll(ctx); return err }); err != nil {
				return stopped(ctx, err)
			}
			continue
		}
		err := c.copyTable(ctx, table)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, errSuperseded):
			b.log.Info("backfill request superseded by a newer one: copying the table again from the start", zap.String("table", table))
		case err != nil:
			return err
		}
	}
}

// stopped returns nil when ctx is done (a shutdown, not a failure), else err.
func stopped(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// next returns the first configured table whose current copy is not done, or "".
func (b *Backfill) next(st *State) string {
	for _, t := range b.tables {
		if p := st.Current(t); p == nil || !p.Done {
			return t
		}
	}
	return ""
}

// showProgress publishes a table's stored progress to the metrics and status; rate is the
// copy's rows per second in this process, when known.
func (b *Backfill) showProgress(table string, p *Progress, rowsPerSec *float64) {
	state := "waiting"
	var ratio float64
	var eta *float64
	st := TableStatus{}
	if p != nil {
		ratio = p.Ratio()
		state = "copying"
		if p.Done {
			state = "done"
			zero := 0.0
			eta = &zero
		} else if rowsPerSec != nil && *rowsPerSec > 0 {
			left := float64(max(p.Estimate-p.Rows, 0)) / *rowsPerSec
			eta = &left
		}
		st = TableStatus{Rows: p.Rows, Chunks: p.Chunks, Estimate: p.Estimate, LastKey: p.LastKey}
	}
	b.metrics.ratio.WithLabelValues(table).Set(ratio)
	if eta != nil {
		b.metrics.eta.WithLabelValues(table).Set(*eta)
	}
	b.setStatus(table, func(s *TableStatus) {
		s.State, s.Ratio, s.ETASeconds = state, ratio, eta
		s.Rows, s.Chunks, s.Estimate, s.LastKey = st.Rows, st.Chunks, st.Estimate, st.LastKey
	})
}

// copier is Run's working state.
type copier struct {
	b        *Backfill
	src      *sql.DB
	store    *Store
	flavor   mysqlx.Flavor // the source's product, as the server says
	showPos  string
	serverID uint32
	sc       *snapshotConn
	lastLook time.Time // of the last look at Threads_running
}

func (c *copier) init(ctx context.Context) error {
	var version string
	if err := c.src.QueryRowContext(ctx, "SELECT @@version, @@server_id").Scan(&version, &c.serverID); err != nil {
		return fmt.Errorf("read the source's version and server_id: %w", err)
	}
	c.flavor = mysqlx.FlavorOf(version)
	c.showPos = c.flavor.BinlogStatusStatement()
	return nil
}

func (c *copier) close() {
	if c.sc != nil {
		c.sc.close()
		c.sc = nil
	}
}

func (c *copier) method() string {
	if c.b.opts.LockTables || !c.flavor.SnapshotPositionStatus() {
		return methodLock
	}
	return methodStatus
}

// conn returns the snapshot connection, opening it when needed.
func (c *copier) conn(ctx context.Context) (*snapshotConn, error) {
	if c.sc != nil {
		return c.sc, nil
	}
	sc, err := openSnapshotConn(ctx, c.src, c.method(), c.showPos)
	if err != nil {
		return nil, err
	}
	c.sc = sc
	return sc, nil
}

// retry runs f until it succeeds, ctx ends, or RetryMaxTime passes; errors a retry cannot
// cure end it at once.
func (c *copier) retry(ctx context.Context, what string, f func() error) error {
	began := time.Now()
	backoff := 100 * time.Millisecond
	for {
		err := f()
		if err == nil || ctx.Err() != nil {
			return err
		}
		if !retryable(err) {
			return fmt.Errorf("%s: %w", what, err)
		}
		if time.Since(began) > c.b.opts.RetryMaxTime {
			return fmt.Errorf("%s: still failing after %s: %w", what, c.b.opts.RetryMaxTime, err)
		}
		c.b.log.Warn("backfill: retrying", zap.String("doing", what), zap.Duration("backoff", backoff), zap.Error(err))
		if err := sleep(ctx, backoff/2+rand.N(backoff/2+1)); err != nil {
			return err
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// retryable reports whether err may go away: a MySQL error mysqlx calls retryable, a table
// definition that changed under the snapshot, a lost connection, or a Kafka error.
func retryable(err error) bool {
	if mysqlx.Retryable(err) {
		return true
	}
	switch mysqlx.Number(err) {
	case 1412: // ER_TABLE_DEF_CHANGED: the table changed after the snapshot began
		return true
	case 0:
	default:
		return false
	}
	return !errors.Is(err, errFatal)
}

// errFatal marks an error of the copy itself (a value it cannot encode, a key it cannot
// page by): retrying reads the same row again.
var errFatal = errors.New("backfill cannot copy the table")

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

// inflight is a chunk handed to capture whose rows Kafka has not yet acknowledged.
type inflight struct {
	ticket *capture.Ticket
	read   *chunkRead
}

// copyTable copies table from its stored progress (or from the start) until it is done,
// storing progress after each acknowledged chunk.
//
// Chunks are read ahead of Kafka's acknowledgements, at most Pipeline of them, and their
// progress stored in order as their tickets finish. A failed ticket (the stream restarted,
// or the table's definition changed) abandons every chunk after the last stored one and
// copies again from there.
func (c *copier) copyTable(ctx context.Context, table string) error {
	b := c.b
	st := c.store.State()
	reqID := st.RequestID(table)
	var prog Progress
	if p := st.Current(table); p != nil {
		prog = *p
	} else {
		prog = Progress{Table: table, Request: reqID, StartedAtMs: time.Now().UnixMilli()}
	}
	var tr *tableReader
	open := func() error {
		return c.retry(ctx, "read the definition of "+table, func() error {
			at, err := showPosition(ctx, c.src, c.showPos)
			if err != nil {
				return err
			}
			t, err := openTable(ctx, c.src, table, at, b.cfg.Backfill.ChunkSize)
			if err != nil {
				return fmt.Errorf("%w: %w", errFatal, err)
			}
			tr = t
			return nil
		})
	}
	if err := open(); err != nil {
		return err
	}
	prog.Estimate = max(prog.Estimate, tr.estimate(ctx, c.src), prog.Rows)
	began, rowsAtStart := time.Now(), prog.Rows
	rowsPerSec := func() *float64 {
		el := time.Since(began).Seconds()
		if el < 1 || prog.Rows == rowsAtStart {
			return nil
		}
		r := float64(prog.Rows-rowsAtStart) / el
		return &r
	}
	b.showProgress(table, &prog, nil)
	log := b.log.With(zap.String("table", table))
	if prog.LastKey != nil || prog.Rows > 0 {
		log.Info("backfill resuming", zap.Int64("rows", prog.Rows), zap.Int64("chunks", prog.Chunks), zap.String("after", string(prog.LastKey)))
	} else {
		log.Info("backfill starting", zap.Int64("estimate", prog.Estimate), zap.String("request", reqID), zap.String("method", c.method()))
	}
	cursor, err := decodeKey(prog.LastKey)
	if err != nil {
		return fmt.Errorf("backfill %s: stored progress: %w", table, err)
	}
	src := event.Source{Connector: "cleave", Name: b.cfg.Kafka.TopicPrefix, DB: tr.db, Table: tr.tbl, ServerID: c.serverID, Snapshot: true}
	maxBytes := min(max(b.cfg.Capture.MaxInFlightBytes/4, 1<<20), 16<<20)

	sv := newSaver(ctx, c.store, c.retry, table)
	defer sv.close(ctx)
	var out []inflight
	abandon := func() {
		for _, f := range out {
			b.stream.Cancel(f.ticket)
		}
		out = nil
	}
	defer abandon()
	finalRead := false
	lastPoll, lastLog := time.Now(), time.Now()
	for {
		// Retire acknowledged chunks in order: while the pipeline is full, or to finish.
		for len(out) > 0 && (len(out) >= b.opts.Pipeline || finalRead) {
			head := out[0]
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-head.ticket.Done():
			}
			if terr := head.ticket.Err(); terr != nil {
				abandon()
				finalRead = false
				if errors.Is(terr, capture.ErrStopped) {
					return terr
				}
				log.Info("backfill: copying again from the last stored chunk", zap.String("after", string(prog.LastKey)), zap.String("reason", terr.Error()))
				var err error
				if cursor, err = decodeKey(prog.LastKey); err != nil {
					return err
				}
				if errors.Is(terr, capture.ErrSchemaChanged) {
					if err := open(); err != nil {
						return err
					}
				}
				break
			}
			out = out[1:]
			_, _, superseded := head.ticket.Result()
			next := prog
			next.LastKey = json.RawMessage(head.read.lastKey)
			next.At = head.read.chunk.At.File + ":" + strconv.FormatUint(head.read.chunk.At.Pos, 10)
			next.Rows += int64(head.read.rows)
			next.Chunks++
			next.Estimate = max(next.Estimate, next.Rows)
			sv.set(next)
			prog = next
			b.metrics.rows.WithLabelValues(table).Add(float64(head.read.rows))
			b.metrics.chunks.WithLabelValues(table).Inc()
			b.metrics.superseded.WithLabelValues(table).Add(float64(superseded))
			b.setStatus(table, func(s *TableStatus) { s.ChunksCopied++; s.Superseded += int64(superseded) })
			b.showProgress(table, &prog, rowsPerSec())
			if time.Since(lastLog) >= 30*time.Second {
				lastLog = time.Now()
				fields := []zap.Field{zap.Int64("rows", prog.Rows), zap.Int64("estimate", prog.Estimate), zap.Float64("ratio", prog.Ratio())}
				if r := rowsPerSec(); r != nil {
					fields = append(fields, zap.Float64("rows_per_second", *r))
				}
				log.Info("backfill progress", fields...)
			}
		}
		if err := sv.failure(); err != nil {
			return err
		}
		if finalRead && len(out) == 0 {
			prog.Done = true
			if err := sv.flush(ctx, sv.set(prog)); err != nil {
				return err
			}
			b.showProgress(table, &prog, nil)
			el := time.Since(began)
			log.Info("backfill done", zap.Int64("rows", prog.Rows), zap.Int64("chunks", prog.Chunks), zap.Duration("took", el),
				zap.Float64("rows_per_second", float64(prog.Rows-rowsAtStart)/max(el.Seconds(), 0.001)))
			return nil
		}
		if finalRead {
			continue
		}
		if time.Since(lastPoll) >= b.opts.PollInterval {
			lastPoll = time.Now()
			if err := c.retry(ctx, "read the backfill topic", func() error { _, err := c.store.Poll(ctx); return err }); err != nil {
				return err
			}
			if c.store.State().RequestID(table) != reqID {
				return errSuperseded
			}
		}
		if err := c.throttle(ctx); err != nil {
			return err
		}
		var read *chunkRead
		err := c.retry(ctx, "copy a chunk of "+table, func() error {
			var err error
			read, err = c.readChunk(ctx, tr, cursor, src, maxBytes)
			if errors.Is(err, errDefinitionChanged) {
				if oerr := open(); oerr != nil {
					return fmt.Errorf("%w: %w", errFatal, oerr)
				}
			}
			return err
		})
		if err != nil {
			return err
		}
		if read.rows == 0 {
			// Nothing after the cursor at this snapshot: once the chunks before are
			// acknowledged, the table is done.
			finalRead = true
			continue
		}
		t, err := b.stream.Weave(ctx, read.chunk)
		if err != nil {
			read.chunk.Watch.Release()
			return err
		}
		out = append(out, inflight{ticket: t, read: read})
		if cursor, err = decodeKey(read.lastKey); err != nil {
			return err
		}
		finalRead = read.final
	}
}

// readChunk opens a watch, reads one chunk after key and returns it; a chunk without rows
// releases its watch. Connection errors close the snapshot connection, so that the retry
// opens a new one.
func (c *copier) readChunk(ctx context.Context, tr *tableReader, key []any, src event.Source, maxBytes int64) (*chunkRead, error) {
	sc, err := c.conn(ctx)
	if err != nil {
		return nil, err
	}
	var watch *capture.Watch
	var read *chunkRead
	for wait := time.Millisecond; ; wait = min(2*wait, 100*time.Millisecond) {
		if watch, err = c.b.stream.WatchTable(ctx, tr.name); err != nil {
			return nil, fmt.Errorf("%w: %w", errFatal, err)
		}
		read, err = tr.readChunk(ctx, sc, watch, key, src, maxBytes)
		if !errors.Is(err, capture.ErrSnapshotBehind) {
			break
		}
		// The stream read a transaction from the binlog that the engine had not made
		// visible yet when the snapshot began: a moment later a snapshot includes it.
		watch.Release()
		c.b.metrics.snapshotRetries.Inc()
		if err := sleep(ctx, wait); err != nil {
			return nil, err
		}
	}
	if err != nil {
		watch.Release()
		c.close()
		switch mysqlx.Number(err) {
		case mysqlx.ErBadField, mysqlx.ErNoSuchTable:
			// A column or the table went away under a prepared query: read the definition
			// again (a table that is gone for good fails there).
			return nil, errDefinitionChanged
		}
		if mysqlx.Number(err) == 0 && !errors.Is(err, errDefinitionChanged) && ctx.Err() == nil && !isConnError(err) {
			return nil, fmt.Errorf("%w: %w", errFatal, err)
		}
		return nil, err
	}
	if read.rows == 0 {
		watch.Release()
	}
	return read, nil
}

// isConnError reports whether err is a lost connection rather than an error of the copy.
func isConnError(err error) bool {
	return mysqlx.Retryable(err)
}

// throttle holds the next chunk back until backfill.max_rows_per_second allows a chunk and
// the source is not busy: while Threads_running is above Options.MaxThreadsRunning it
// waits, backing off from 100 ms to 5 s, so that the copy never adds load to a server that
// is struggling. It looks at Threads_running at most once a second.
func (c *copier) throttle(ctx context.Context) error {
	began := time.Now()
	defer func() { c.b.metrics.throttled.Add(time.Since(began).Seconds()) }()
	if c.b.limiter != nil {
		if err := c.b.limiter.WaitN(ctx, c.b.limiter.Burst()); err != nil {
			return err
		}
	}
	// A look at the source's load costs a round trip that waits for a busy server's CPU:
	// once a second is often enough.
	if c.b.opts.MaxThreadsRunning < 0 || time.Since(c.lastLook) < time.Second {
		return nil
	}
	c.lastLook = time.Now()
	backoff := 100 * time.Millisecond
	logged := false
	for {
		var name, val string
		if err := c.src.QueryRowContext(ctx, "SHOW GLOBAL STATUS LIKE 'Threads_running'").Scan(&name, &val); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return nil // the chunk's own query will meet the problem and retry
		}
		n, _ := strconv.Atoi(val)
		// This look itself runs one thread.
		if n-1 <= c.b.opts.MaxThreadsRunning {
			return nil
		}
		if !logged {
			c.b.log.Info("source is busy, pausing the backfill", zap.Int("threads_running", n), zap.Int("max", c.b.opts.MaxThreadsRunning))
			logged = true
		}
		if err := sleep(ctx, backoff); err != nil {
			return err
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}
