// Package capture owns the stream of row changes from the source's binlog to Kafka: a
// replica connection (go-mysql's replication package) to the source, the decoding of every
// row of the configured tables with the definition the binlog gives it at its position,
// the change events (event.Event) keyed by primary key and written to one topic per table,
// schema changes handled by ddl.policy, heartbeats, and the checkpoint of the last
// position whose events Kafka has acknowledged. It must never store a position before
// every event up to it is acknowledged, never resume inside a transaction, and never let
// go-mysql's types escape: downstream sees only event.Event.
//
// It emits no row change of a transaction whose first table map is _cleave.offsets: that
// is a cleave sink's apply (the sink's offsets UPDATE is the first statement of each of
// its transactions), and capturing it would send the change back where it came from once
// replication runs both ways (ownapply.go). Capture never copies the rows a table already
// holds: that is the backfill's (package backfill), which runs beside it by choice.
package capture

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"

	"github.com/cleave-dev/cleave/capture/schemahist"
	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/event"
	"github.com/cleave-dev/cleave/kafkax"
	"github.com/cleave-dev/cleave/schema"
)

// GCPercent is the garbage collector target a process that runs capture should use
// (cleave capture sets it unless GOGC is set). Capture allocates quickly while it decodes
// and encodes rows, while its live heap is bounded by capture.max_in_flight_bytes and
// go-mysql's read-ahead of 1024 events; collecting half as often costs at most about one
// more such heap and saves a good part of the collector's CPU.
const GCPercent = 200

// Options are the collaborators and seams of a Capture. The zero value works.
type Options struct {
	// Log receives capture's logs; nil discards them.
	Log *zap.Logger
	// Registerer receives capture's metrics; nil registers them nowhere.
	Registerer prometheus.Registerer
	// RetryMaxTime is how long capture keeps restarting a failing stream without making
	// progress before it gives up with the error. Default 5 minutes.
	RetryMaxTime time.Duration
	// StartAt is where a capture without a stored checkpoint (a fresh kafka.topic_prefix)
	// starts: a transaction boundary of the source's binlog, as the source's binlog status
	// gives it (file, offset and, where the source has GTIDs, the GTID state there; MariaDB
	// can tell the state at a position, so it may be left empty there, MySQL cannot). nil
	// starts at the source's current position. A stored checkpoint always wins: a restart
	// resumes from it, whatever StartAt says. Capture checks that the source still has the
	// position and that it belongs to its binlog history, and stores it as the first
	// checkpoint before it streams.
	//
	// Reverse replication starts a shard's capture at the shard's position read at the
	// cut-over's switch: it streams exactly the writes made on the shard after it. Capture
	// never copies the rows the tables already hold (that is package backfill, which only
	// a caller that runs it beside capture, as cleave run does, gets), so such a capture
	// needs no switch to turn copying off: run capture alone.
	StartAt *Position
}

// Capture streams the row changes of the configured tables to Kafka.
type Capture struct {
	cfg     *config.Config
	log     *zap.Logger
	metrics *metrics
	opts    Options
	hist    *schemahist.History
	tables  map[string]*tableInfo // by db.table
	byDB    map[string]map[string]*tableInfo

	lag lagState

	// weave takes the backfill's chunks into the stream (backfill.go).
	weave *weaver

	mu     sync.Mutex
	status Status
}

// tableInfo is a configured table's place in Kafka.
type tableInfo struct {
	name       string
	db, table  string
	topic      string
	partitions int
	counters   map[event.Op]prometheus.Counter
}

// Status describes where capture is, for /status and for tests.
type Status struct {
	// Stored is the last checkpoint written to Kafka.
	Stored Position `json:"stored"`
	// Acknowledged is the newest boundary whose events Kafka has all acknowledged.
	Acknowledged Position `json:"acknowledged"`
	// Read is the newest boundary read from the binlog.
	Read Position `json:"read"`
	// Streaming is true while a replica connection is open.
	Streaming bool `json:"streaming"`
	// LagSeconds is source_lag_seconds.
	LagSeconds float64 `json:"lag_seconds"`
}

// New returns a capture for cfg. It connects to nothing until Run.
func New(cfg *config.Config, opts Options) (*Capture, error) {
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	if opts.RetryMaxTime <= 0 {
		opts.RetryMaxTime = 5 * time.Minute
	}
	c := &Capture{cfg: cfg, log: opts.Log, opts: opts, hist: schemahist.New(16), tables: map[string]*tableInfo{}, byDB: map[string]map[string]*tableInfo{}}
	c.weave = newWeaver()
	c.lag.period = cfg.Capture.HeartbeatInterval
	c.metrics = newMetrics(opts.Registerer, c.lag.seconds)
	for _, t := range cfg.Tables {
		db, tb, err := config.SplitName(t.Name)
		if err != nil {
			return nil, fmt.Errorf("tables: %w", err)
		}
		ti := &tableInfo{name: t.Name, db: db, table: tb, topic: kafkax.TableTopic(cfg.Kafka.TopicPrefix, db, tb), counters: map[event.Op]prometheus.Counter{}}
		for _, op := range []event.Op{event.OpCreate, event.OpUpdate, event.OpDelete, event.OpDDL} {
			ti.counters[op] = c.metrics.events.WithLabelValues(t.Name, string(op))
		}
		c.tables[t.Name] = ti
		if c.byDB[db] == nil {
			c.byDB[db] = map[string]*tableInfo{}
		}
		c.byDB[db][tb] = ti
	}
	return c, nil
}

// History is the schema history of the configured tables.
func (c *Capture) History() *schemahist.History { return c.hist }

// Status returns where capture is.
func (c *Capture) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.status
	s.LagSeconds = c.lag.seconds()
	return s
}

func (c *Capture) setStatus(f func(s *Status)) {
	c.mu.Lock()
	f(&c.status)
	c.mu.Unlock()
}

// fatalError marks an error that a new attempt would meet again: capture stops.
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }
func (e *fatalError) Unwrap() error { return e.err }

func fatal(err error) error { return &fatalError{err} }

func isFatal(err error) bool {
	var fe *fatalError
	if errors.As(err, &fe) {
		return true
	}
	if errors.Is(err, ErrPurged) || errors.Is(err, ErrServerIDConflict) || errors.Is(err, ErrDDL) || errors.Is(err, ErrSource) {
		return true
	}
	var ke kafka.Error
	if errors.As(err, &ke) && !ke.Temporary() {
		return true
	}
	return false
}

// Design note: where a start resumes.
//
// The checkpoint holds both the binlog file and offset of a transaction boundary and the
// source's GTID state there. Capture reconnects by file and offset: versions are derived
// from exactly those (event.NewVersion), so re-reading from the stored offset re-emits
// every event with the version it had, which is what makes a restart idempotent for the
// sinks. The GTID state guards that position instead: file names restart after RESET
// MASTER or on a restored server, and the same file and offset would then hold other
// transactions; on MariaDB, BINLOG_GTID_POS(file, offset) must give the stored state, or
// capture refuses to start. After a failover to another server the offsets (and so the
// versions) are another server's; capture refuses that too (source server_id) rather than
// let the shards compare versions of two binlogs.

// Run captures until ctx is cancelled (then it stops reading, waits for Kafka to
// acknowledge what it has sent, stores the final checkpoint and returns nil) or until an
// error that retrying cannot cure.
func (c *Capture) Run(ctx context.Context) error {
	defer c.weave.shutdown()
	src, err := openSource(ctx, c.cfg)
	if err != nil {
		return err
	}
	defer src.db.Close()
	c.log.Info("source ready", zap.String("version", src.version), zap.Uint32("source_server_id", src.serverID),
		zap.String("flavor", src.flavor), zap.Uint32("replica_server_id", c.cfg.Source.ServerID))

	if err := c.checkTables(ctx, src); err != nil {
		return err
	}
	if err := c.ensureTopics(ctx); err != nil {
		return err
	}
	store := NewCheckpointStore(c.cfg.Kafka.Brokers, c.cfg.Kafka.TopicPrefix, c.cfg.Kafka.ReplicationFactor)
	defer store.Close()
	if err := store.Ensure(ctx); err != nil {
		return fmt.Errorf("create checkpoint topic: %w", err)
	}
	cp, err := store.Load(ctx)
	if err != nil {
		return err
	}
	var from Position
	if cp == nil {
		// No checkpoint: start at StartAt or else the source's current position, and store
		// it before anything else, so that a crash from here on resumes here and not at a
		// later "current" position (the changes in between would be lost). The backfill,
		// where one runs, copies what existed before.
		if c.opts.StartAt != nil {
			if from, err = src.startAt(ctx, *c.opts.StartAt, c.cfg.Kafka.TopicPrefix); err != nil {
				return err
			}
		} else if from, err = src.currentPosition(ctx); err != nil {
			return err
		}
		if err := store.Store(ctx, Checkpoint{Position: from, SourceServerID: src.serverID, Flavor: src.flavor}); err != nil {
			return err
		}
		if c.opts.StartAt != nil {
			c.log.Info("no checkpoint: starting at the given start position", zap.Stringer("position", from))
		} else {
			c.log.Info("no checkpoint: starting at the source's current position", zap.Stringer("position", from))
		}
	} else {
		if c.opts.StartAt != nil {
			c.log.Info("a checkpoint is stored: the given start position is not used", zap.Stringer("start_at", *c.opts.StartAt), zap.Stringer("checkpoint", cp.Position))
		}
		if cp.Flavor != "" && cp.Flavor != src.flavor {
			return fmt.Errorf("%w: the checkpoint in %s was written for a %s source, source.flavor is %s", ErrSource, store.Topic(), cp.Flavor, src.flavor)
		}
		if err := src.checkResume(ctx, cp, c.cfg.Kafka.TopicPrefix); err != nil {
			return err
		}
		from = cp.Position
		c.log.Info("resuming from checkpoint", zap.Stringer("position", from))
	}
	c.setStatus(func(s *Status) { s.Stored, s.Acknowledged, s.Read = from, from, from })
	c.recordCheckpoint(from)

	// Sessions: each opens a replica connection at the last acknowledged boundary and runs
	// until an error or shutdown. Retryable failures (the source or Kafka unreachable, a
	// produce batch that failed after kafka-go's retries) start a new session after a
	// backoff; giving up needs RetryMaxTime without progress.
	backoff := time.Second
	lastProgress := time.Now()
	for {
		next, err := c.session(ctx, src, store, from)
		if next.Before(from) {
			next = from
		}
		if from.Before(next) {
			lastProgress = time.Now()
			backoff = time.Second
		}
		from = next
		if ctx.Err() != nil {
			if err != nil && !errors.Is(err, context.Canceled) && !isFatal(err) {
				c.log.Info("stopped", zap.Stringer("position", from), zap.Error(err))
			} else {
				c.log.Info("stopped", zap.Stringer("position", from))
			}
			if err != nil && isFatal(err) {
				return err
			}
			return nil
		}
		if err == nil {
			return nil
		}
		if isFatal(err) {
			return err
		}
		if time.Since(lastProgress) > c.opts.RetryMaxTime {
			return fmt.Errorf("capture made no progress for %s, last error: %w", c.opts.RetryMaxTime, err)
		}
		c.metrics.restarts.Inc()
		wait := backoff/2 + rand.N(backoff/2+1)
		c.log.Warn("stream failed, restarting from the last acknowledged position", zap.Stringer("position", from),
			zap.Duration("backoff", wait), zap.Error(err))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

// checkTables checks that each configured table exists and has a primary key.
func (c *Capture) checkTables(ctx context.Context, src *source) error {
	var errs []error
	for _, ti := range c.tables {
		if _, err := schema.Load(ctx, src.db, ti.db, ti.table); err != nil {
			errs = append(errs, fmt.Errorf("table %s: %w", ti.name, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrSource, err)
	}
	return nil
}

// ensureTopics creates the table topics and learns their partition counts: heartbeats and
// schema changes go to every partition.
func (c *Capture) ensureTopics(ctx context.Context) error {
	var topics []kafkax.Topic
	var names []string
	for _, ti := range c.tables {
		topics = append(topics, kafkax.Topic{Name: ti.topic, Partitions: c.cfg.Kafka.Partitions, ReplicationFactor: c.cfg.Kafka.ReplicationFactor})
		names = append(names, ti.topic)
	}
	if err := kafkax.EnsureTopics(ctx, c.cfg.Kafka.Brokers, topics); err != nil {
		return err
	}
	parts, err := kafkax.Partitions(ctx, c.cfg.Kafka.Brokers, names)
	if err != nil {
		return err
	}
	for _, ti := range c.tables {
		if ti.partitions = parts[ti.topic]; ti.partitions < 1 {
			return fmt.Errorf("topic %s has no partitions in the cluster's metadata", ti.topic)
		}
	}
	return nil
}

func (c *Capture) recordCheckpoint(p Position) {
	if idx, err := event.FileIndex(p.File); err == nil {
		c.metrics.checkpointFile.Set(float64(idx))
	}
	c.metrics.checkpointPos.Set(float64(p.Pos))
}

// lagState computes source_lag_seconds.
type lagState struct {
	period     time.Duration
	lastTs     atomic.Int64 // header timestamp (unix seconds) of the last event read
	lastRead   atomic.Int64 // when it was read (unix nanoseconds)
	caughtUpAt atomic.Int64 // when the source last said it had nothing more (unix nanoseconds)
}

func (l *lagState) read(ts uint32, now time.Time) {
	if ts == 0 {
		return
	}
	l.lastTs.Store(int64(ts))
	l.lastRead.Store(now.UnixNano())
}

func (l *lagState) caughtUp(now time.Time) { l.caughtUpAt.Store(now.UnixNano()) }

// seconds is 0 while the source's heartbeats, arriving in time, say capture has read all
// there is; otherwise now minus the time of the last event read.
func (l *lagState) seconds() float64 {
	now := time.Now()
	up := l.caughtUpAt.Load()
	if up != 0 && up >= l.lastRead.Load() && now.Sub(time.Unix(0, up)) < 3*l.period+time.Second {
		return 0
	}
	ts := l.lastTs.Load()
	if ts == 0 {
		return 0
	}
	return max(0, now.Sub(time.Unix(ts, 0)).Seconds())
}
