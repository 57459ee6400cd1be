package capture

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol/metadata"
)

// Design note: acknowledged prefix and back-pressure.
//
// The reader hands messages to the producer in stream order. They are grouped into chunks
// (the messages of one kafka-go WriteMessages call); every chunk may carry the last
// transaction boundary the reader passed before the chunk ended. kafka-go's asynchronous
// writer batches per partition, keeps one request in flight per partition (so a key's
// messages reach its partition in order) and reports every finished batch to Completion,
// in no particular order across partitions.
//
// Chunks sit in a FIFO until each of their messages is acknowledged (acks=all). Only the
// head of the FIFO retires, so the safe position, the newest boundary of a retired chunk,
// only ever moves over a contiguous acknowledged prefix of the stream: a failed or slow
// message holds it back however many later ones succeed. A failed batch (kafka-go has
// already retried it) poisons the producer: the reader stops, and capture starts a new
// session from the safe position. Events after it are written again with the same
// versions: duplicates, never gaps.
//
// The bytes of flushed chunks count against maxInFlight until their messages are
// acknowledged; flush blocks while the budget is spent, which stops the binlog reader:
// back-pressure, never an unbounded queue. The chunk being filled is bounded by the batch
// size, so memory is bounded by maxInFlight plus one chunk.

// messageWriter is the part of kafka.Writer the producer uses.
type messageWriter interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
	Close() error
}

var _ messageWriter = (*kafka.Writer)(nil)

// chunk is a run of consecutive messages written together.
type chunk struct {
	msgs     []kafka.Message
	bytes    int64
	pending  int      // messages not yet acknowledged
	boundary Position // the newest transaction boundary at or before the chunk's end
	hasBound bool
	done     bool
	// acked are called when the chunk retires: it and every chunk before it are
	// acknowledged (woven backfill chunks, see backfill.go).
	acked []func()
}

// producer writes change events to Kafka asynchronously and tracks which prefix of the
// stream Kafka has acknowledged.
type producer struct {
	w           messageWriter
	maxInFlight int64
	batchSize   int
	metrics     *metrics

	mu       sync.Mutex
	cond     *sync.Cond
	inFlight int64
	fifo     []*chunk
	safe     Position
	hasSafe  bool
	err      error // the first produce failure; final

	cur       *chunk // filled by the reader goroutine only
	lastFlush time.Time
}

func newProducer(w messageWriter, maxInFlight int64, batchSize int, m *metrics) *producer {
	p := &producer{w: w, maxInFlight: maxInFlight, batchSize: batchSize, metrics: m, cur: &chunk{}}
	p.cond = sync.NewCond(&p.mu)
	return p
}

// messageSize approximates what a message costs in memory and on the wire.
func messageSize(m *kafka.Message) int64 { return int64(len(m.Key) + len(m.Value) + 64) }

// add appends msg to the current chunk, flushing it when full.
func (p *producer) add(ctx context.Context, msg kafka.Message) error {
	msg.WriterData = p.cur
	p.cur.msgs = append(p.cur.msgs, msg)
	p.cur.bytes += messageSize(&msg)
	if len(p.cur.msgs) >= p.batchSize || p.cur.bytes >= p.maxInFlight/4 {
		return p.flush(ctx)
	}
	return nil
}

// boundary records that every event up to pos has been added: once they are all
// acknowledged, pos may be stored. Chunks holding messages are flushed at each boundary so
// that a quiet stream is not held back; empty chunks only every few milliseconds.
func (p *producer) boundary(ctx context.Context, pos Position, now time.Time) error {
	p.cur.boundary, p.cur.hasBound = pos, true
	if len(p.cur.msgs) > 0 || now.Sub(p.lastFlush) >= 50*time.Millisecond {
		p.lastFlush = now
		return p.flush(ctx)
	}
	return nil
}

// flush hands the current chunk to the writer, first waiting until the in-flight budget
// has room for it.
func (p *producer) flush(ctx context.Context) error {
	c := p.cur
	if len(c.msgs) == 0 && !c.hasBound && len(c.acked) == 0 {
		return nil
	}
	p.cur = &chunk{msgs: make([]kafka.Message, 0, min(len(c.msgs)*2, p.batchSize))}
	msgs := c.msgs // c belongs to the completion callback once it is in the FIFO
	c.pending = len(msgs)

	p.mu.Lock()
	if c.bytes > 0 {
		stop := context.AfterFunc(ctx, func() {
			p.mu.Lock()
			p.cond.Broadcast()
			p.mu.Unlock()
		})
		// An oversized chunk still goes alone, when nothing else is in flight.
		if p.err == nil && p.inFlight > 0 && p.inFlight+c.bytes > p.maxInFlight {
			began := time.Now()
			for p.err == nil && ctx.Err() == nil && p.inFlight > 0 && p.inFlight+c.bytes > p.maxInFlight {
				p.cond.Wait()
			}
			p.metrics.backpressure.Add(time.Since(began).Seconds())
		}
		stop()
	}
	if p.err != nil {
		err := p.err
		p.mu.Unlock()
		return err
	}
	if err := ctx.Err(); err != nil {
		p.mu.Unlock()
		return err
	}
	p.inFlight += c.bytes
	p.metrics.inFlightBytes.Set(float64(p.inFlight))
	p.fifo = append(p.fifo, c)
	if c.pending == 0 {
		c.done = true
		p.retireLocked()
	}
	p.mu.Unlock()

	if len(msgs) == 0 {
		return nil
	}
	// Asynchronous: this returns once the messages are queued in the writer's batches.
	if err := p.w.WriteMessages(ctx, msgs...); err != nil {
		p.fail(fmt.Errorf("queue %d messages for Kafka: %w", len(msgs), err))
		return p.failure()
	}
	return nil
}

// completion is the kafka.Writer's Completion callback: msgs are one acknowledged (or
// failed) batch of one partition.
func (p *producer) completion(msgs []kafka.Message, err error) {
	if err != nil {
		p.metrics.produceErrors.Inc()
		m := msgs[0]
		p.fail(fmt.Errorf("write %d messages to topic %s partition %d: %w", len(msgs), m.Topic, m.Partition, err))
		return
	}
	var bytes int64
	for i := range msgs {
		bytes += int64(len(msgs[i].Key) + len(msgs[i].Value))
	}
	p.metrics.bytes.Add(float64(bytes))

	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range msgs {
		c, _ := msgs[i].WriterData.(*chunk)
		if c == nil {
			continue
		}
		c.pending--
		if c.pending == 0 {
			c.done = true
			p.inFlight -= c.bytes
			c.msgs = nil // the writer holds its own copies; let ours go
		}
	}
	p.metrics.inFlightBytes.Set(float64(p.inFlight))
	p.retireLocked()
	p.cond.Broadcast()
}

// retireLocked pops acknowledged chunks off the head of the FIFO, moving the safe position.
func (p *producer) retireLocked() {
	n := 0
	for n < len(p.fifo) && p.fifo[n].done {
		if c := p.fifo[n]; c.hasBound {
			p.safe, p.hasSafe = c.boundary, true
		}
		for _, f := range p.fifo[n].acked {
			f()
		}
		p.fifo[n] = nil
		n++
	}
	if n > 0 {
		p.fifo = p.fifo[n:]
	}
}

func (p *producer) fail(err error) {
	p.mu.Lock()
	if p.err == nil {
		p.err = err
	}
	p.cond.Broadcast()
	p.mu.Unlock()
}

// failure returns the first produce failure, or nil.
func (p *producer) failure() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// safePosition returns the newest boundary up to which Kafka has acknowledged every event.
func (p *producer) safePosition() (Position, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.safe, p.hasSafe
}

// close flushes what the reader added last and waits, at most drain, until the writer has
// finished every batch (acknowledged, or failed after its retries); it returns the first
// failure. After a failure it does not wait: the batches still queued behind the failed
// one cannot move the safe position any more, and the next session writes them again.
// Batches the writer still holds when close returns are left to finish in the background;
// they can only add duplicates.
func (p *producer) close(ctx context.Context, drain time.Duration) error {
	var flushErr error
	if p.failure() == nil {
		flushErr = p.flush(context.WithoutCancel(ctx))
	}
	done := make(chan error, 1)
	go func() { done <- p.w.Close() }()
	var closeErr error
	if p.failure() == nil {
		select {
		case closeErr = <-done:
		case <-time.After(drain):
			closeErr = fmt.Errorf("Kafka did not acknowledge the events in flight within %s", drain)
		}
	}
	if err := p.failure(); err != nil {
		return err
	}
	if flushErr != nil {
		return flushErr
	}
	if closeErr != nil {
		return fmt.Errorf("close Kafka writer: %w", closeErr)
	}
	return nil
}

// partitionCounts is a kafka.RoundTripper for the producer's writer that answers the
// metadata request kafka-go's Writer makes for every message it is given (to count the
// topic's partitions) from a copy at most a second old; every other request goes to the
// transport. It halves the writer's cost per message.
type partitionCounts struct {
	kafka.RoundTripper
	mu    sync.Mutex
	known map[string]metadataAnswer
}

type metadataAnswer struct {
	resp    kafka.Response
	expires time.Time
}

func newPartitionCounts(rt kafka.RoundTripper) *partitionCounts {
	return &partitionCounts{RoundTripper: rt, known: map[string]metadataAnswer{}}
}

func (t *partitionCounts) RoundTrip(ctx context.Context, addr net.Addr, req kafka.Request) (kafka.Response, error) {
	m, ok := req.(*metadata.Request)
	if !ok || len(m.TopicNames) != 1 {
		return t.RoundTripper.RoundTrip(ctx, addr, req)
	}
	topic := m.TopicNames[0]
	now := time.Now()
	t.mu.Lock()
	a, hit := t.known[topic]
	t.mu.Unlock()
	if hit && now.Before(a.expires) {
		return a.resp, nil
	}
	resp, err := t.RoundTripper.RoundTrip(ctx, addr, req)
	if err != nil {
		return resp, err
	}
	if r, ok := resp.(*metadata.Response); ok {
		for _, tp := range r.Topics {
			if tp.Name == topic && tp.ErrorCode == 0 {
				t.mu.Lock()
				t.known[topic] = metadataAnswer{resp: resp, expires: now.Add(time.Second)}
				t.mu.Unlock()
			}
		}
	}
	return resp, nil
}

// onAcked calls fn (from the writer's completion goroutine, under the producer's lock: it
// must not block) once every message added so far is acknowledged by Kafka.
func (p *producer) onAcked(ctx context.Context, fn func()) error {
	p.cur.acked = append(p.cur.acked, fn)
	return p.flush(ctx)
}
