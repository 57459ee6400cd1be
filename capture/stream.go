package capture

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"

	"github.com/cleave-dev/cleave/capture/schemahist"
	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/event"
	"github.com/cleave-dev/cleave/kafkax"
)

// session opens one replica connection at from and streams until an error or until ctx
// is cancelled. It returns the newest position whose events Kafka acknowledged (stored as
// the checkpoint before it returns), from which the next session resumes.
func (c *Capture) session(ctx context.Context, src *source, store *CheckpointStore, from Position) (Position, error) {
	w := kafkax.NewWriter(c.cfg.Kafka.Brokers, c.cfg.Capture.BatchSize)
	w.Async = true
	w.Balancer = partitioner{}
	transport := &kafka.Transport{}
	defer transport.CloseIdleConnections()
	w.Transport = newPartitionCounts(transport)
	// kafka-go retries a batch a few times (a leader moving, a broker restarting); past
	// that, the session ends and capture restarts the stream from the acknowledged
	// position with its own backoff, so that a dead cluster surfaces within a bounded time.
	w.MaxAttempts = 4
	w.WriteBackoffMin = 100 * time.Millisecond
	w.WriteBackoffMax = time.Second
	w.WriteTimeout = 5 * time.Second
	prod := newProducer(w, c.cfg.Capture.MaxInFlightBytes, c.cfg.Capture.BatchSize, c.metrics)
	w.Completion = prod.completion

	gtid, err := newGTIDState(src.flavor, from.GTID)
	if err != nil {
		return from, fatal(err)
	}
	syncer := replication.NewBinlogSyncer(c.syncerConfig(src))
	streamer, err := syncer.StartSync(gomysql.Position{Name: from.File, Pos: uint32(from.Pos)})
	if err != nil {
		syncer.Close()
		_ = w.Close()
		return from, classifyStreamError(fmt.Errorf("open replica connection at %s: %w", from, err), c.cfg.Source.ServerID, from, c.cfg.Kafka.TopicPrefix)
	}
	c.setStatus(func(s *Status) { s.Streaming = true })
	c.log.Info("streaming", zap.Stringer("from", from))

	r := &reader{
		c: c, src: src, prod: prod, file: from.File, gtid: gtid, last: from,
		defs: map[uint64]*tableDef{}, nextHeartbeat: time.Now(),
	}

	// The checkpointer stores the acknowledged position every checkpoint_interval, and
	// polls kafka-go's retry counter for the metrics.
	cpCtx, stopCP := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.checkpointLoop(cpCtx, store, prod, w, src)
	}()

	readErr := r.run(ctx, streamer)
	syncer.Close()
	closeErr := prod.close(ctx, time.Minute)
	// Chunks woven in this session and not acknowledged by now are copied again.
	c.weave.sessionEnded()
	stopCP()
	wg.Wait()
	c.setStatus(func(s *Status) { s.Streaming = false })
	c.collectWriterStats(w)

	next := from
	if safe, ok := prod.safePosition(); ok {
		next = safe
	}
	if err := c.storeCheckpoint(context.WithoutCancel(ctx), store, next, src); err != nil {
		c.log.Warn("final checkpoint not stored; the next start re-reads from the previous one", zap.Error(err))
	}

	switch {
	case readErr != nil && !errors.Is(readErr, context.Canceled):
		return next, classifyStreamError(readErr, c.cfg.Source.ServerID, next, c.cfg.Kafka.TopicPrefix)
	case closeErr != nil:
		return next, closeErr
	}
	return next, readErr
}

func (c *Capture) syncerConfig(src *source) replication.BinlogSyncerConfig {
	hb := c.cfg.Capture.HeartbeatInterval
	cfg := replication.BinlogSyncerConfig{
		ServerID:  c.cfg.Source.ServerID,
		Flavor:    src.flavor,
		Host:      src.host,
		Port:      src.port,
		User:      src.user,
		Password:  src.password,
		Localhost: "cleave-capture",
		TLSConfig: src.tls,
		// TIMESTAMP values as UTC wall time, DECIMAL as exact text, DATETIME as text.
		ParseTime:               false,
		TimestampStringLocation: time.UTC,
		UseDecimal:              false,
		// The source sends a heartbeat when it has had nothing to send for this long: it
		// proves the connection alive and capture current (lag 0) on an idle source.
		HeartbeatPeriod: hb,
		ReadTimeout:     max(3*hb, 10*time.Second),
		// Reconnection is capture's: it must resume at a transaction boundary it chose.
		DisableRetrySync: true,
		// The events go-mysql reads ahead, decoded; bounded, as every buffer in capture is.
		EventCacheCount: 1024,
		DiscardGTIDSet:  true,
		FillZeroLogPos:  src.fillZeroLogPos,
		Logger:          newSlogger(c.log.Named("binlog")),
		// Rows of tables capture does not stream are not decoded at all; the others are
		// decoded into go-mysql's values, faster (rowsdecode.go).
		RowsEventDecodeFunc: rowsDecoder{wanted: c.wanted}.decode,
	}
	if src.compressed {
		// Where every transaction is one compressed event, each event read ahead is a
		// whole transaction, decoded: read fewer ahead.
		cfg.EventCacheCount = 32
	}
	if src.socket != "" {
		socket := src.socket
		cfg.Dialer = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		}
	}
	return cfg
}

func (c *Capture) checkpointLoop(ctx context.Context, store *CheckpointStore, prod *producer, w *kafka.Writer, src *source) {
	t := time.NewTicker(c.cfg.Capture.CheckpointInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c.collectWriterStats(w)
		safe, ok := prod.safePosition()
		if !ok {
			continue
		}
		c.setStatus(func(s *Status) { s.Acknowledged = safe })
		if err := c.storeCheckpoint(ctx, store, safe, src); err != nil && ctx.Err() == nil {
			c.log.Warn("checkpoint not stored; retrying at the next interval", zap.Error(err))
		}
	}
}

// storeCheckpoint stores p unless it is already the stored checkpoint.
func (c *Capture) storeCheckpoint(ctx context.Context, store *CheckpointStore, p Position, src *source) error {
	c.mu.Lock()
	same := c.status.Stored == p
	c.mu.Unlock()
	if same {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := store.Store(ctx, Checkpoint{Position: p, SourceServerID: src.serverID, Flavor: src.flavor}); err != nil {
		return err
	}
	c.setStatus(func(s *Status) {
		s.Stored = p
		if s.Acknowledged.Before(p) {
			s.Acknowledged = p
		}
	})
	c.recordCheckpoint(p)
	return nil
}

// collectWriterStats adds kafka-go's retry count (reset by each Stats call) to the metrics.
func (c *Capture) collectWriterStats(w *kafka.Writer) {
	st := w.Stats()
	c.metrics.produceRetries.Add(float64(st.Retries))
}

// partitioner partitions keyed messages by murmur2 of the key, as Java clients do, and
// sends a message without a key (heartbeats and schema changes, which go to every
// partition) to the partition it names.
type partitioner struct{ hash kafka.Murmur2Balancer }

func (p partitioner) Balance(msg kafka.Message, partitions ...int) int {
	if msg.Key == nil {
		return msg.Partition
	}
	h := p.hash
	h.Consistent = true
	return h.Balance(msg, partitions...)
}

var _ kafka.Balancer = partitioner{}

// group is the event group (transaction) being read.
type group struct {
	open bool
	// endsAtQuery: the group is one statement (MariaDB's standalone groups, MySQL's DDL)
	// and ends with its query event rather than with an XID or COMMIT.
	endsAtQuery bool
	gtid        string
	// xa: an XA transaction's group (XA START ... XA PREPARE), whose rows may still be
	// rolled back.
	xa bool
	// journal: the group wrote the cut-over journal, and ends with a heartbeat (marker.go).
	journal bool
	// mapped: a table map of the group was read. ownApply: the first one named
	// _cleave.offsets, the group is cleave's own apply and its rows are not emitted;
	// skippedRows counts them. lateTag: a later one did (ownapply.go).
	mapped, ownApply, lateTag bool
	skippedRows               int
}

// reader turns the binlog events of one session into messages, in binlog order. It runs
// on one goroutine and owns its state.
type reader struct {
	c    *Capture
	src  *source
	prod *producer
	ctx  context.Context

	file string
	gtid gtidState
	grp  group
	// last is the newest transaction boundary read.
	last Position
	// defs caches table definitions by table id; ignored tables map to ignoredTable.
	defs map[uint64]*tableDef

	nextHeartbeat time.Time
	caughtUp      bool
	// buf and srcBuf are scratch space for encoding messages and their source objects;
	// before and after hold the images of the row being encoded.
	buf, srcBuf   []byte
	before, after rowImage

	// wctx is what the reader waits for events with; a queued backfill chunk cancels it.
	// prevEv is the last event read other than a heartbeat (readPos).
	wctx   context.Context
	prevEv *replication.BinlogEvent

	// fde is the format description of the binlog file being read; inner parses the
	// events of compressed transactions in it (compressed.go). Inside a compressed
	// transaction, rowBase is the payload's row index of the next rows event, and net,
	// when not nil, collects its changes to emit them net.
	fde      *replication.FormatDescriptionEvent
	inner    *replication.BinlogParser
	innerFor *replication.FormatDescriptionEvent
	rowBase  int
	net      *netChanges
}

// ignoredTable marks a table id of a table that is not configured.
var ignoredTable = &tableDef{}

func (r *reader) run(ctx context.Context, s *replication.BinlogStreamer) error {
	r.ctx = ctx
	for {
		ev, err := r.nextEvent(ctx, s)
		if err != nil {
			return err
		}
		if err := r.handle(ev); err != nil {
			return err
		}
	}
}

// pos names the event with header h, for messages.
func (r *reader) pos(h *replication.EventHeader) string {
	s := fmt.Sprintf("%s:%d", r.file, h.LogPos-h.EventSize)
	if r.grp.gtid != "" {
		s += " (gtid " + r.grp.gtid + ")"
	}
	return s
}

func (r *reader) handle(ev *replication.BinlogEvent) error {
	h := ev.Header
	switch e := ev.Event.(type) {
	case *replication.RowsEvent:
		r.c.lag.read(h.Timestamp, time.Now())
		r.caughtUp = false
		return r.rows(h, e)
	case *replication.TableMapEvent:
		// go-mysql hands the table map to the rows events that follow it.
		if isJournal(e) {
			r.grp.journal = true
		}
		r.tableMap(h, e)
	case *replication.XIDEvent:
		return r.endGroup(h)
	case *replication.MariadbGTIDEvent:
		r.beginGroup(h, r.gtid.begin(&e.GTID), e.IsStandalone(), e.Flags&mariadbFlPreparedXA != 0)
	case *replication.GTIDEvent:
		r.beginGroup(h, r.gtid.begin(mysqlGTID{sid: e.SID, gno: e.GNO}), true, false)
	case *replication.GtidTaggedLogEvent:
		// A GTID with a tag (MySQL 8.4+, gtid_next='AUTOMATIC:tag'): an event type of its own.
		r.beginGroup(h, r.gtid.begin(mysqlGTID{sid: e.SID, gno: e.GNO, tag: e.Tag}), true, false)
	case *replication.QueryEvent:
		return r.query(h, e)
	case *replication.RotateEvent:
		next := string(e.NextLogName)
		if next != r.file {
			// A new file: table ids may have restarted (a server restart begins a file).
			clear(r.defs)
			r.file = next
		}
		// The header of a real rotate belongs to the old file; the event says where the
		// new one starts. A fake rotate (timestamp 0) opens the stream at our position.
		if h.Timestamp != 0 && !r.grp.open {
			return r.boundary(Position{File: next, Pos: e.Position, GTID: r.gtid.String()})
		}
	case *replication.FormatDescriptionEvent, *replication.MariadbGTIDListEvent,
		*replication.MariadbBinlogCheckPointEvent, *replication.PreviousGTIDsEvent:
		if fde, ok := e.(*replication.FormatDescriptionEvent); ok {
			r.fde = fde
		}
		// The events a file opens with, and MariaDB's binlog checkpoints: no row changes,
		// never inside a transaction. Passing one is a boundary, so that an idle source's
		// position (SHOW MASTER STATUS, which counts them) is reached, not left short of.
		// The description the server sends when a stream opens mid-file lies before the
		// position and is skipped.
		if !r.grp.open && h.LogPos > 0 && r.last.File == r.file && uint64(h.LogPos) > r.last.Pos {
			return r.boundary(Position{File: r.file, Pos: uint64(h.LogPos), GTID: r.gtid.String()})
		}
	case *replication.HeartbeatEvent:
		r.caughtUp = true
		now := time.Now()
		r.c.lag.caughtUp(now)
		return r.maybeHeartbeat(now)
	case *replication.TransactionPayloadEvent:
		return r.payload(h, e)
	case *replication.GenericEvent:
		if h.EventType == replication.XA_PREPARE_LOG_EVENT {
			// MySQL's XA PREPARE (or XA COMMIT ... ONE PHASE): the end of the group.
			return r.endGroup(h)
		}
	}
	return nil
}

// MariaDB GTID event flag of an XA PREPARE group (sql/log_event.h FL_PREPARED_XA).
const mariadbFlPreparedXA = 64

func (r *reader) beginGroup(h *replication.EventHeader, gtid string, endsAtQuery, xa bool) {
	r.grp = group{open: true, endsAtQuery: endsAtQuery, gtid: gtid, xa: xa}
	r.c.lag.read(h.Timestamp, time.Now())
	r.caughtUp = false
}

// endGroup closes the transaction whose commit event has header h: the end of that event
// is a boundary.
func (r *reader) endGroup(h *replication.EventHeader) error {
	if r.grp.ownApply {
		r.endOwnApply(h, r.grp)
	}
	journal := r.grp.journal
	r.grp = group{}
	p := Position{File: r.file, Pos: uint64(h.LogPos), GTID: r.gtid.String()}
	if journal {
		if err := r.journalHeartbeat(h, p); err != nil {
			return err
		}
	}
	return r.boundary(p)
}

func (r *reader) boundary(p Position) error {
	r.last = p
	now := time.Now()
	if err := r.prod.boundary(r.ctx, p, now); err != nil {
		return err
	}
	r.c.setStatus(func(s *Status) { s.Read = p })
	return r.maybeHeartbeat(now)
}

// readPos is how far the reader has read, between transactions: the end of the last event
// it handled (heartbeats aside). No row change lies between the last boundary and it.
func (r *reader) readPos() Position {
	p := r.last
	ev := r.prevEv
	if ev == nil {
		return p
	}
	var q Position
	switch e := ev.Event.(type) {
	case *replication.RotateEvent:
		// r.file is already the file it names.
		q = Position{File: string(e.NextLogName), Pos: e.Position}
	default:
		if ev.Header.LogPos == 0 {
			return p
		}
		q = Position{File: r.file, Pos: uint64(ev.Header.LogPos)}
	}
	if p.Before(q) {
		q.GTID = p.GTID
		return q
	}
	return p
}

func (r *reader) query(h *replication.EventHeader, e *replication.QueryEvent) error {
	q := bytes.TrimSpace(e.Query)
	switch {
	case bytes.EqualFold(q, []byte("BEGIN")):
		r.grp.open = true
		r.grp.endsAtQuery = false
		return nil
	case bytes.EqualFold(q, []byte("COMMIT")), bytes.EqualFold(q, []byte("ROLLBACK")):
		return r.endGroup(h)
	case hasPrefixFold(q, "XA "):
		// XA START/END belong to the group; PREPARE ends it (its rows are written; MySQL
		// logs it as an event of its own, see handle), COMMIT/ROLLBACK are groups of their
		// own. MariaDB's GTID event flags the group too; MySQL's does not.
		if hasPrefixFold(q, "XA START") || hasPrefixFold(q, "XA BEGIN") {
			r.grp.open, r.grp.xa = true, true
		}
		if hasPrefixFold(q, "XA PREPARE") || hasPrefixFold(q, "XA COMMIT") || hasPrefixFold(q, "XA ROLLBACK") {
			return r.endGroup(h)
		}
		return nil
	case hasPrefixFold(q, "SAVEPOINT"), hasPrefixFold(q, "ROLLBACK TO"), hasPrefixFold(q, "RELEASE SAVEPOINT"):
		return nil
	}
	if err := r.statement(h, e); err != nil {
		return err
	}
	if !r.grp.open || r.grp.endsAtQuery {
		return r.endGroup(h)
	}
	return nil
}

func hasPrefixFold(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && strings.EqualFold(string(b[:len(prefix)]), prefix)
}

// statement handles a query event that is neither transaction control nor XA: a schema
// change, or a row change some session wrote in statement format.
func (r *reader) statement(h *replication.EventHeader, e *replication.QueryEvent) error {
	stmt := string(e.Query)
	defaultDB := string(e.Schema)
	if d, ok := parseDDL(stmt); ok {
		d.resolve(defaultDB)
		affected := r.affected(d)
		if len(affected) == 0 {
			return nil
		}
		return r.schemaChange(h, stmt, d, defaultDB, affected)
	}
	if words, ok := statementDML(stmt); ok {
		for _, ti := range r.c.tables {
			if words[strings.ToLower(ti.table)] && (words[strings.ToLower(ti.db)] || strings.EqualFold(defaultDB, ti.db)) {
				return fatal(fmt.Errorf("%w: a row change to %s at %s was written to the binlog as a statement (%.200q), not as rows: some session runs with binlog_format STATEMENT or MIXED. Capture cannot know which rows it changed; set binlog_format=ROW globally, end sessions that set it otherwise, then copy the table again (backfill)",
					ErrSource, ti.name, r.pos(h), stmt))
			}
		}
	}
	return nil
}

// affected returns the configured tables a schema change touches.
func (r *reader) affected(d ddlStatement) []*tableInfo {
	var out []*tableInfo
	seen := map[string]bool{}
	add := func(ti *tableInfo) {
		if ti != nil && !seen[ti.name] {
			seen[ti.name] = true
			out = append(out, ti)
		}
	}
	for _, ref := range d.changed {
		add(r.c.lookup(ref.db, ref.table))
	}
	if d.dropDB != "" {
		for _, ti := range r.c.tables {
			if strings.EqualFold(ti.db, d.dropDB) {
				add(ti)
			}
		}
	}
	return out
}

// wanted reports whether db.table is a configured table; it runs on go-mysql's goroutine
// and allocates nothing.
func (c *Capture) wanted(db, table []byte) bool {
	_, ok := c.byDB[string(db)][string(table)]
	return ok
}

// lookup returns the configured table db.table (names compare as MySQL does on Linux for
// databases and tables: exactly), or nil.
func (c *Capture) lookup(db, table string) *tableInfo {
	return c.tables[db+"."+table]
}

// schemaChange applies ddl.policy to a schema change on configured tables.
func (r *reader) schemaChange(h *replication.EventHeader, stmt string, d ddlStatement, defaultDB string, affected []*tableInfo) error {
	names := make([]string, len(affected))
	for i, ti := range affected {
		names[i] = ti.name
	}
	start := uint64(h.LogPos - h.EventSize)
	if r.c.cfg.DDL.Policy != config.DDLPropagate {
		// The boundary before this statement is the newest one stored: a restart stops here
		// again, until the policy or the source changes.
		return fatal(fmt.Errorf("%w %s at %s: %q. ddl.policy is stop, so capture halts before it and will resume from %s. To go on, set ddl.policy: propagate and restart (capture then carries this change to every shard, before the rows written after it), or change the shard tables yourself and copy the table again (backfill)",
			ErrDDL, strings.Join(names, ", "), r.pos(h), stmt, r.last))
	}
	qualified := qualify(stmt, d, defaultDB)
	version, err := event.NewVersion(r.file, start, 0)
	if err != nil {
		return fatal(err)
	}
	now := time.Now()
	for _, ti := range affected {
		ev := &event.Event{
			Op:      event.OpDDL,
			DDL:     qualified,
			TsMs:    now.UnixMilli(),
			Version: version,
			Source:  r.source(h, ti, start, 0),
		}
		val, err := event.Marshal(ev)
		if err != nil {
			return fatal(err)
		}
		// Every partition: each sink instance sees the change in order with the rows of
		// its partitions, before the first row written with the new definition.
		for p := 0; p < ti.partitions; p++ {
			if err := r.prod.add(r.ctx, kafka.Message{Topic: ti.topic, Partition: p, Value: val}); err != nil {
				return err
			}
		}
		ti.counters[event.OpDDL].Inc()
		r.c.hist.Change(ti.name, schemahist.Coord(version), qualified)
	}
	// Definitions are rebuilt from the next table maps.
	clear(r.defs)
	r.c.log.Info("schema change propagated", zap.Strings("tables", names), zap.String("position", r.pos(h)), zap.String("ddl", qualified))
	return nil
}

func (r *reader) source(h *replication.EventHeader, ti *tableInfo, pos uint64, row int) event.Source {
	return event.Source{
		Connector: "cleave",
		Name:      r.c.cfg.Kafka.TopicPrefix,
		DB:        ti.db,
		Table:     ti.table,
		ServerID:  h.ServerID,
		File:      r.file,
		Pos:       pos,
		GTID:      r.grp.gtid,
		TsMs:      int64(h.Timestamp) * 1000,
		Row:       row,
	}
}

// def returns the definition of the table a rows event refers to, or ignoredTable.
func (r *reader) def(h *replication.EventHeader, tm *replication.TableMapEvent) (*tableDef, error) {
	if d, ok := r.defs[tm.TableID]; ok && (d == ignoredTable || d.sameTable(tm)) {
		return d, nil
	}
	ti := r.c.lookup(string(tm.Schema), string(tm.Table))
	if ti == nil {
		r.defs[tm.TableID] = ignoredTable
		return ignoredTable, nil
	}
	d, err := buildDef(tm, r.src.coll, ti.topic, r.pos(h))
	if err != nil {
		return nil, fatal(err)
	}
	d.info = ti
	r.defs[tm.TableID] = d
	coord, _ := event.NewVersion(r.file, uint64(h.LogPos-h.EventSize), 0)
	prev, changed, err := r.c.hist.Observe(ti.name, schemahist.Coord(coord), d.fingerprint, d.table)
	if err != nil {
		r.c.log.Warn("schema history", zap.Error(err))
	} else if changed {
		r.c.log.Info("table definition changed", zap.String("table", ti.name), zap.String("position", r.pos(h)),
			zap.Int("columns_before", len(prev.Table.Columns)), zap.Int("columns_after", len(d.table.Columns)))
	}
	return d, nil
}

// rows turns a rows event of a configured table into change events.
func (r *reader) rows(h *replication.EventHeader, e *replication.RowsEvent) (err error) {
	if e.Table == nil {
		return fatal(fmt.Errorf("rows event at %s without its table map", r.pos(h)))
	}
	d, err := r.def(h, e.Table)
	if err != nil || d == ignoredTable {
		return err
	}
	if r.grp.ownApply {
		r.grp.skippedRows += rowChanges(e, h.EventType)
		return nil
	}
	if r.grp.xa {
		return fatal(fmt.Errorf("%w: rows of %s at %s belong to an XA transaction, which the binlog shows at PREPARE, before it is committed or rolled back; capture does not support XA transactions on configured tables", ErrSource, d.name, r.pos(h)))
	}
	for _, skipped := range e.SkippedColumns {
		if len(skipped) > 0 {
			return fatal(fmt.Errorf("%w: the rows event of %s at %s lacks %d columns: it was written with binlog_row_image other than FULL (a session may set it); set binlog_row_image=FULL for every session, then copy the table again (backfill)", ErrSource, d.name, r.pos(h), len(skipped)))
		}
	}
	if r.net == nil && !uncompressed(e) {
		// A MariaDB compressed rows event (compressed.go).
		if n := rowChanges(e, h.EventType); n >= int(h.EventSize) {
			r.emitNet(h, n)
			defer func() { r.net = nil }()
			defer func() {
				if err == nil {
					err = r.flushNet(h)
				}
			}()
		}
	}
	start := uint64(h.LogPos - h.EventSize)
	now := time.Now().UnixMilli()
	src := r.source(h, d.info, start, 0)
	before, after := &r.before, &r.after
	emit := func(op event.Op, row int) error {
		var b, a *rowImage
		switch op {
		case event.OpCreate:
			a = after
		case event.OpUpdate:
			b, a = before, after
		case event.OpDelete:
			b = before
		}
		if r.net != nil {
			r.buf = d.appendKey(r.buf[:0], keyImage(op, b, a))
			r.net.add(d, r.buf, b, a)
			return nil
		}
		row += r.rowBase
		version, err := event.NewVersion(r.file, start, row)
		if err != nil {
			return fatal(err)
		}
		src.Row = row
		return r.emitRow(d, op, b, a, now, &src, version)
	}
	decode := func(img *rowImage, values []any) error {
		if err := d.image(img, values); err != nil {
			return fatal(fmt.Errorf("decode row at %s: %w", r.pos(h), err))
		}
		return nil
	}
	kind := e.Type()
	if h.EventType == replication.PARTIAL_UPDATE_ROWS_EVENT {
		// Its JSON diffs were applied to the before images while decoding (partialjson.go).
		kind = replication.EnumRowsEventTypeUpdate
	}
	switch kind {
	case replication.EnumRowsEventTypeInsert:
		for i, vals := range e.Rows {
			if err := decode(after, vals); err != nil {
				return err
			}
			if err := emit(event.OpCreate, i); err != nil {
				return err
			}
		}
	case replication.EnumRowsEventTypeDelete:
		for i, vals := range e.Rows {
			if err := decode(before, vals); err != nil {
				return err
			}
			if err := emit(event.OpDelete, i); err != nil {
				return err
			}
		}
	case replication.EnumRowsEventTypeUpdate:
		for i := 0; i+1 < len(e.Rows); i += 2 {
			if err := decode(before, e.Rows[i]); err != nil {
				return err
			}
			if err := decode(after, e.Rows[i+1]); err != nil {
				return err
			}
			row := i / 2
			if !d.cols.SameKey(&before.Image, &after.Image) {
				// A new primary key is a new row: the old one is deleted and the new one
				// created, each under its own key (and partition). Both carry the version
				// of this row change; as they are different keys, each key's versions
				// still strictly increase.
				if err := emit(event.OpDelete, row); err != nil {
					return err
				}
				if err := emit(event.OpCreate, row); err != nil {
					return err
				}
				continue
			}
			if err := emit(event.OpUpdate, row); err != nil {
				return err
			}
		}
	default:
		return fatal(fmt.Errorf("rows event of unknown kind at %s", r.pos(h)))
	}
	return nil
}

// keyImage is the image whose primary key keys a change event.
func keyImage(op event.Op, before, after *rowImage) *rowImage {
	if op == event.OpDelete {
		return before
	}
	return after
}

// emitRow encodes one row change event of d and hands it to the producer.
func (r *reader) emitRow(d *tableDef, op event.Op, before, after *rowImage, now int64, src *event.Source, version event.Version) error {
	// Key and value are encoded into a scratch buffer and copied into one exact allocation
	// per message, which Kafka holds until it is acknowledged.
	r.buf = d.appendKey(r.buf[:0], keyImage(op, before, after))
	klen := len(r.buf)
	r.srcBuf = event.AppendSource(r.srcBuf[:0], src)
	r.buf = d.appendEvent(r.buf, op, before, after, now, r.srcBuf, version)
	kv := append(make([]byte, 0, len(r.buf)), r.buf...)
	k, val := kv[:klen:klen], kv[klen:]
	r.watchKey(d.info, k, version)
	d.info.counters[op].Inc()
	return r.prod.add(r.ctx, kafka.Message{Topic: d.topic, Key: k, Value: val})
}

// maybeHeartbeat writes a heartbeat to every partition of every table topic when one is
// due and the reader stands at a transaction boundary. Its version is that of the
// boundary: above every event before it, below every event after it.
func (r *reader) maybeHeartbeat(now time.Time) error {
	if r.grp.open || now.Before(r.nextHeartbeat) {
		return nil
	}
	r.nextHeartbeat = now.Add(r.c.cfg.Capture.HeartbeatInterval)
	if err := r.heartbeat(now, r.last); err != nil {
		return err
	}
	return r.prod.flush(r.ctx)
}

// heartbeat adds a heartbeat at boundary p to every partition of every table topic.
func (r *reader) heartbeat(now time.Time, p Position) error {
	version, err := event.NewVersion(p.File, p.Pos, 0)
	if err != nil {
		return fatal(err)
	}
	// The source's time at the boundary: now when the source says nothing is left to
	// read, else the time of the last event read.
	ts := now.UnixMilli()
	if !r.caughtUp {
		if t := r.c.lag.lastTs.Load(); t != 0 {
			ts = t * 1000
		}
	}
	for _, ti := range r.c.tables {
		ev := &event.Event{
			Op:      event.OpHeartbeat,
			TsMs:    now.UnixMilli(),
			Version: version,
			Source: event.Source{
				Connector: "cleave", Name: r.c.cfg.Kafka.TopicPrefix, DB: ti.db, Table: ti.table,
				ServerID: r.src.serverID, File: p.File, Pos: p.Pos, GTID: p.GTID, TsMs: ts,
			},
		}
		val, err := event.Marshal(ev)
		if err != nil {
			return fatal(err)
		}
		for part := 0; part < ti.partitions; part++ {
			if err := r.prod.add(r.ctx, kafka.Message{Topic: ti.topic, Partition: part, Value: val}); err != nil {
				return err
			}
			r.c.metrics.heartbeats.Inc()
		}
	}
	return nil
}
