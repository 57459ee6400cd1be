package capture

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/go-mysql-org/go-mysql/replication"
	"github.com/segmentio/kafka-go"

	"github.com/cleave-dev/cleave/event"
)

// Design note: weaving copied chunks into the stream.
//
// The backfill (package backfill) copies a table in chunks, each read inside a consistent
// snapshot whose binlog position P it knows exactly; every copied row is an op "r" event
// with version(P). Capture's part is to put those events into the table's topic at a place
// where, for every key of the chunk, the partition holds
//
//	[the key's changes at or before P]  the copied row  [the key's changes after P]
//
// It does so in the reader goroutine, the only writer of the stream, so there is no race
// with the binlog events around the chunk:
//
//  1. Before the backfill takes the snapshot it opens a Watch on the table. From then on
//     the reader records, per key, the newest version it emits for that table (once P is
//     known, only versions above P). A change after P can be in the binlog, and read by
//     capture, before the snapshot is taken: servers write a transaction to the binlog
//     before the engine makes it visible, and send it to replicas in between. So the Watch
//     notes the version of the last row emitted when it opened (from), and a snapshot with
//     P below it is refused (ErrSnapshotBehind) and taken again: with P >= from, every row
//     emitted after P was emitted after the Watch opened, and is recorded.
//  2. The chunk is queued. The reader weaves it in only between two transactions and only
//     once it has read past P (readPos >= P): every change at or before P is then already
//     in the stream, ahead of the copied rows.
//  3. Rows whose key the Watch saw changed after P are left out: the stream already holds a
//     newer full image of them, or their delete, which must not be followed by the older
//     copy (a delete leaves no tombstone on the shard; the copy would bring the row back).
//     The other rows are added to the producer like any event.
//  4. The chunk's Ticket is done once Kafka has acknowledged its rows and everything before
//     them (the producer retires chunks in stream order). If the session ends first, the
//     ticket fails with ErrChunkLost and the backfill copies the chunk again.
//
// Waiting for readPos >= P (rather than weaving a chunk as soon as it arrives) keeps every
// version a partition carries at or below the stream's position: a copied row never claims
// a position the stream has not reached, so the sinks' applied_version, which the checker
// trusts as "everything up to here is applied", and the heartbeats' version stay true.
//
// A schema change of the table between the definition the chunk was encoded with and the
// weaving point fails the ticket with ErrSchemaChanged: its rows would follow the change
// in the partition with columns of the old definition.
//
// Memory: a Watch records only keys changed between P and the weaving point, which the
// reader reaches soon after P; the queue holds at most maxQueuedChunks chunks (and
// maxQueuedBytes); once woven, the rows count against capture.max_in_flight_bytes like
// every event.

// Errors of a woven chunk: the backfill copies the chunk again.
var (
	// ErrChunkLost: the stream restarted before Kafka acknowledged the chunk's rows.
	ErrChunkLost = errors.New("the stream restarted before Kafka acknowledged the chunk's rows")
	// ErrSchemaChanged: the table's definition changed after the chunk was encoded and
	// before the place in the stream where it would go.
	ErrSchemaChanged = errors.New("the table's definition changed while the chunk was in flight")
	// ErrStopped: capture stopped; nothing more is woven.
	ErrStopped = errors.New("capture stopped")
	// ErrSnapshotBehind: the snapshot's position is below rows the stream emitted before
	// the Watch opened; those rows could be missed. Take the snapshot again.
	ErrSnapshotBehind = errors.New("the snapshot is behind the stream")
)

const (
	maxQueuedChunks = 2
	maxQueuedBytes  = 64 << 20
)

// Chunk is a run of rows of one table read at one consistent snapshot, encoded as
// messages of the table's topic (op "r", version of At), in key order.
type Chunk struct {
	// Watch was opened on the table before the snapshot was taken.
	Watch *Watch
	// At is the binlog position the snapshot is consistent with.
	At Position
	// SchemaAt is a position at or before the moment the table definition the rows were
	// encoded with was read: a schema change after it fails the chunk.
	SchemaAt Position
	// Keys and Values are the message key and value of each row.
	Keys, Values [][]byte
	// Bytes is the size of Keys and Values.
	Bytes int64
}

// Watch records the keys of one table that the stream emits after a snapshot position.
type Watch struct {
	table *tableInfo
	// from is the version of the last row the reader had emitted when the Watch opened:
	// rows emitted before it are not recorded, so a snapshot position below it is refused.
	from uint64
	// at is the coordinate of the snapshot position, 0 until SetPosition.
	at atomic.Uint64
	// keys maps a message key to the newest version emitted for it. Only the reader
	// goroutine touches it, from the moment the Watch is published in the registry.
	keys map[string]uint64
	// once guards the removal from the registry.
	once sync.Once
	c    *Capture
}

// SetPosition records the snapshot's position: from now on only changes after it are
// recorded. It returns ErrSnapshotBehind when the stream had already emitted rows after p
// when the Watch opened: take the snapshot again (with a new Watch).
func (w *Watch) SetPosition(p Position) error {
	coord, err := p.coord()
	if err != nil {
		return fmt.Errorf("snapshot position %s: %w", p, err)
	}
	if coord < w.from {
		return fmt.Errorf("%w: snapshot at %s, stream at version %d", ErrSnapshotBehind, p, w.from)
	}
	w.at.Store(coord)
	return nil
}

// Release stops the recording; a Watch whose chunk is woven is released by capture.
func (w *Watch) Release() { w.c.weave.unwatch(w) }

// Ticket follows one chunk through the stream.
type Ticket struct {
	chunk *Chunk
	done  chan struct{}

	// Set before done is closed.
	err        error
	wovenAt    Position
	rows       int
	superseded int

	// state is guarded by the weaver's mutex.
	state ticketState
}

type ticketState int

const (
	ticketQueued ticketState = iota
	ticketWoven
	ticketFinished
)

// Done is closed when the chunk's rows are acknowledged by Kafka, or the chunk failed.
func (t *Ticket) Done() <-chan struct{} { return t.done }

// Err is nil when every row woven is acknowledged; ErrChunkLost, ErrSchemaChanged or
// ErrStopped otherwise. Valid once Done is closed.
func (t *Ticket) Err() error { return t.err }

// Result says where the chunk went into the stream, how many rows were written and how
// many were left out because the stream already carried a newer change of their key.
// Valid once Done is closed with Err nil.
func (t *Ticket) Result() (at Position, rows, superseded int) {
	return t.wovenAt, t.rows, t.superseded
}

// weaver is capture's side of the backfill: the watches, the queue of chunks waiting for
// their place in the stream, and the chunks woven but not yet acknowledged.
type weaver struct {
	// reg is the registry of open watches by table, replaced (never changed) under mu, so
	// the reader reads it without a lock; nil when no watch is open.
	reg atomic.Pointer[map[*tableInfo][]*Watch]
	// queued counts the chunks in queue, for the reader's cheap check.
	queued atomic.Int32
	// emitted is the version of the last row the reader emitted.
	emitted atomic.Uint64

	mu         sync.Mutex
	queue      []*Ticket
	queueBytes int64
	changed    chan struct{} // closed and replaced when the queue shrinks or capture stops
	woven      []*Ticket     // woven in the current session, not yet acknowledged
	wake       context.CancelFunc
	stopped    bool

	ready     chan struct{} // closed when the first session streams
	readyOnce sync.Once
	stop      chan struct{} // closed when Run returns
	stopOnce  sync.Once
}

func newWeaver() *weaver {
	return &weaver{changed: make(chan struct{}), ready: make(chan struct{}), stop: make(chan struct{})}
}

// WatchTable opens a Watch on table (db.table). It waits until capture streams, so that the
// stream covers every change after a snapshot taken from now on. Open it before taking the
// snapshot; pass it to Weave with the chunk, or Release it.
func (c *Capture) WatchTable(ctx context.Context, table string) (*Watch, error) {
	ti := c.tables[table]
	if ti == nil {
		return nil, fmt.Errorf("table %s is not among the configured tables", table)
	}
	if err := c.WaitStreaming(ctx); err != nil {
		return nil, err
	}
	w := &Watch{table: ti, keys: map[string]uint64{}, c: c}
	wv := c.weave
	wv.mu.Lock()
	defer wv.mu.Unlock()
	if wv.stopped {
		return nil, ErrStopped
	}
	reg := map[*tableInfo][]*Watch{}
	if old := wv.reg.Load(); old != nil {
		for k, v := range *old {
			reg[k] = v
		}
	}
	reg[ti] = append(append([]*Watch(nil), reg[ti]...), w)
	wv.reg.Store(&reg)
	// After the Watch is published: every row emitted after this load is recorded (the
	// reader stores emitted before it reads the registry, see watchKey).
	w.from = wv.emitted.Load()
	return w, nil
}

// WaitStreaming returns once capture's first session streams from its start position
// (every change after that position reaches the stream), or with ErrStopped when capture
// stopped before.
func (c *Capture) WaitStreaming(ctx context.Context) error {
	select {
	case <-c.weave.ready:
		return nil
	case <-c.weave.stop:
		return ErrStopped
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (wv *weaver) unwatch(w *Watch) {
	w.once.Do(func() {
		wv.mu.Lock()
		defer wv.mu.Unlock()
		old := wv.reg.Load()
		if old == nil {
			return
		}
		reg := map[*tableInfo][]*Watch{}
		for k, v := range *old {
			if k != w.table {
				reg[k] = v
				continue
			}
			var keep []*Watch
			for _, x := range v {
				if x != w {
					keep = append(keep, x)
				}
			}
			if len(keep) > 0 {
				reg[k] = keep
			}
		}
		if len(reg) == 0 {
			wv.reg.Store(nil)
		} else {
			wv.reg.Store(&reg)
		}
	})
}

// Weave queues ch for the stream and returns its ticket. It blocks while the queue is
// full: the backfill cannot read further ahead than capture weaves.
func (c *Capture) Weave(ctx context.Context, ch *Chunk) (*Ticket, error) {
	if ch.Watch == nil || ch.Watch.c != c {
		return nil, errors.New("weave: the chunk has no Watch of this capture")
	}
	if err := ch.Watch.SetPosition(ch.At); err != nil {
		return nil, err
	}
	if _, err := ch.SchemaAt.coord(); err != nil {
		return nil, fmt.Errorf("weave: schema position %s: %w", ch.SchemaAt, err)
	}
	t := &Ticket{chunk: ch, done: make(chan struct{})}
	wv := c.weave
	for {
		wv.mu.Lock()
		if wv.stopped {
			wv.mu.Unlock()
			return nil, ErrStopped
		}
		if len(wv.queue) == 0 || (len(wv.queue) < maxQueuedChunks && wv.queueBytes+ch.Bytes <= maxQueuedBytes) {
			wv.queue = append(wv.queue, t)
			wv.queueBytes += ch.Bytes
			wv.queued.Add(1)
			if wv.wake != nil {
				wv.wake()
			}
			wv.mu.Unlock()
			return t, nil
		}
		changed := wv.changed
		wv.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-changed:
		}
	}
}

// Cancel withdraws a chunk that is still queued; a chunk already woven runs its course.
func (c *Capture) Cancel(t *Ticket) {
	wv := c.weave
	wv.mu.Lock()
	if t.state == ticketQueued {
		wv.dequeueLocked(t)
		t.state = ticketFinished
		t.err = context.Canceled
		close(t.done)
	}
	wv.mu.Unlock()
	t.chunk.Watch.Release()
}

func (wv *weaver) dequeueLocked(t *Ticket) {
	for i, q := range wv.queue {
		if q == t {
			wv.queue = append(wv.queue[:i:i], wv.queue[i+1:]...)
			wv.queueBytes -= t.chunk.Bytes
			wv.queued.Add(-1)
			close(wv.changed)
			wv.changed = make(chan struct{})
			return
		}
	}
}

// finishLocked ends a ticket once.
func (wv *weaver) finishLocked(t *Ticket, err error) {
	if t.state == ticketFinished {
		return
	}
	t.state = ticketFinished
	t.err = err
	close(t.done)
}

// arm returns the context the reader waits for events with: it is cancelled when a chunk
// is queued, so that an idle reader weaves it without waiting for the next event.
func (wv *weaver) arm(ctx context.Context) context.Context {
	wctx, cancel := context.WithCancel(ctx)
	wv.mu.Lock()
	if wv.wake != nil {
		wv.wake()
	}
	wv.wake = cancel
	wv.mu.Unlock()
	return wctx
}

// sessionEnded fails the chunks woven in a session whose events Kafka did not all
// acknowledge: the next session starts before them.
func (wv *weaver) sessionEnded() {
	wv.mu.Lock()
	defer wv.mu.Unlock()
	for _, t := range wv.woven {
		wv.finishLocked(t, ErrChunkLost)
	}
	wv.woven = nil
	if wv.wake != nil {
		wv.wake()
		wv.wake = nil
	}
}

// shutdown fails every chunk still queued or in flight, for good: capture stopped.
func (wv *weaver) shutdown() {
	wv.mu.Lock()
	wv.stopped = true
	for _, t := range wv.queue {
		wv.finishLocked(t, ErrStopped)
	}
	wv.queue, wv.queueBytes = nil, 0
	wv.queued.Store(0)
	for _, t := range wv.woven {
		wv.finishLocked(t, ErrStopped)
	}
	wv.woven = nil
	close(wv.changed)
	wv.changed = make(chan struct{})
	wv.mu.Unlock()
	wv.stopOnce.Do(func() { close(wv.stop) })
}

// acked is the producer's callback for a woven chunk.
func (wv *weaver) acked(t *Ticket) {
	wv.mu.Lock()
	defer wv.mu.Unlock()
	for i, x := range wv.woven {
		if x == t {
			wv.woven = append(wv.woven[:i:i], wv.woven[i+1:]...)
			break
		}
	}
	wv.finishLocked(t, nil)
}

// nextLocked removes and returns the first queued chunk whose snapshot position is at or
// before coord, or nil.
func (wv *weaver) nextLocked(coord uint64) *Ticket {
	for _, t := range wv.queue {
		if t.chunk.Watch.at.Load() <= coord {
			wv.dequeueLocked(t)
			return t
		}
	}
	return nil
}

// nextEvent is the reader's way to the next binlog event. Between transactions it first
// weaves in the queued chunks the stream has reached; while it waits for an event, a
// queued chunk wakes it.
func (r *reader) nextEvent(ctx context.Context, s *replication.BinlogStreamer) (*replication.BinlogEvent, error) {
	wv := r.c.weave
	if r.wctx == nil {
		r.wctx = wv.arm(ctx)
		wv.readyOnce.Do(func() { close(wv.ready) })
	}
	for {
		if wv.queued.Load() > 0 && !r.grp.open {
			if err := r.weaveReady(); err != nil {
				return nil, err
			}
		}
		ev, err := s.GetEvent(r.wctx)
		if err == nil {
			if _, hb := ev.Event.(*replication.HeartbeatEvent); !hb {
				r.prevEv = ev
			}
			return ev, nil
		}
		if ctx.Err() != nil || !errors.Is(err, context.Canceled) {
			return nil, err
		}
		r.wctx = wv.arm(ctx) // woken by a queued chunk
	}
}

// weaveReady weaves every queued chunk whose snapshot position the reader has passed.
func (r *reader) weaveReady() error {
	at := r.readPos()
	coord, err := at.coord()
	if err != nil {
		return fatal(err)
	}
	wv := r.c.weave
	for {
		wv.mu.Lock()
		t := wv.nextLocked(coord)
		if t != nil {
			t.state = ticketWoven
		}
		wv.mu.Unlock()
		if t == nil {
			return nil
		}
		if err := r.weaveChunk(t, at, coord); err != nil {
			return err
		}
	}
}

func (r *reader) weaveChunk(t *Ticket, at Position, coord uint64) error {
	ch := t.chunk
	w := ch.Watch
	ti := w.table
	wv := r.c.weave
	w.Release()
	if r.schemaChanged(ti, ch.SchemaAt, coord) {
		wv.mu.Lock()
		wv.finishLocked(t, ErrSchemaChanged)
		wv.mu.Unlock()
		return nil
	}
	p := w.at.Load()
	rows, superseded := 0, 0
	wv.mu.Lock()
	wv.woven = append(wv.woven, t)
	wv.mu.Unlock()
	for i, k := range ch.Keys {
		if v, ok := w.keys[string(k)]; ok && v > p {
			superseded++
			continue
		}
		if err := r.prod.add(r.ctx, kafka.Message{Topic: ti.topic, Key: k, Value: ch.Values[i]}); err != nil {
			return err
		}
		rows++
	}
	t.wovenAt, t.rows, t.superseded = at, rows, superseded
	r.c.metrics.events.WithLabelValues(ti.name, string(event.OpRead)).Add(float64(rows))
	return r.prod.onAcked(r.ctx, func() { wv.acked(t) })
}

// schemaChanged reports whether the schema history holds a change of ti's definition
// after from and at or before coord. The first definition capture observes of a table is
// not a change.
func (r *reader) schemaChanged(ti *tableInfo, from Position, coord uint64) bool {
	f, err := from.coord()
	if err != nil {
		return true
	}
	for i, e := range r.c.hist.Entries(ti.name) {
		if (i > 0 || e.DDL != "") && uint64(e.From) > f && uint64(e.From) <= coord {
			return true
		}
	}
	return false
}

// watchKey records an emitted key of ti for the open watches on it. It stores the version
// as emitted before it reads the registry: a Watch opened concurrently either is seen here
// or reads this version (or a later one) as its from.
func (r *reader) watchKey(ti *tableInfo, key []byte, v event.Version) {
	r.c.weave.emitted.Store(uint64(v))
	reg := r.c.weave.reg.Load()
	if reg == nil {
		return
	}
	for _, w := range (*reg)[ti] {
		if at := w.at.Load(); at != 0 && uint64(v) <= at {
			continue
		}
		if old, ok := w.keys[string(key)]; !ok || uint64(v) > old {
			w.keys[string(key)] = uint64(v)
		}
	}
}
