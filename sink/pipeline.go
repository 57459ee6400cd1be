package sink

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"
	"golang.org/x/sync/semaphore"

	"github.com/cleave-dev/cleave/event"
	"github.com/cleave-dev/cleave/kafkax"
	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/shardmeta"
)

var (
	// errFenced: the stored offsets of a partition are not where this member left them:
	// another member applied it meanwhile. The batch was rolled back.
	errFenced = errors.New("stored offsets moved by another member")
	// errRestart: a reader failed in a way that re-reading from the stored offsets cures.
	errRestart = errors.New("partition reader failed")
)

// tp is a topic partition.
type tp struct {
	topic     string
	partition int
}

func (a tp) less(b tp) bool {
	if a.topic != b.topic {
		return a.topic < b.topic
	}
	return a.partition < b.partition
}

func (a tp) String() string { return fmt.Sprintf("%s/%d", a.topic, a.partition) }

// partState is the applier's view of one assigned partition.
type partState struct {
	tp
	// next is the next offset as stored on the shard by this member's last commit (or read
	// at claim time): what the next batch expects to find there.
	next int64
	// hwm is the partition's high watermark as of the last fetched message.
	hwm int64
	// tsMs is the source commit time of the last applied event (heartbeats included).
	tsMs int64
}

// message is a fetched Kafka message with the bytes it holds in the buffer budget.
type message struct {
	kafka.Message
	size int64
	// foreign: the reader found by its key that the row belongs to other shards. It is
	// handed on only to carry its offset (the last message the reader read before a send).
	foreign bool
	// routed: the reader routed it by its key, here.
	routed bool
	// settled, set on a schema change, is closed once the planner has dealt with it: the
	// reader of its partition routes by key again only after that, with the new shape.
	settled chan struct{}
}

// readBatch bounds what a reader collects before handing it to the planner: messages
// handed on at once, and their bytes.
const (
	readBatchMessages = 128
	// readMaxDropped bounds a run of dropped messages before the last of them is handed
	// on anyway, so that the stored offset (and the lag it shows) keeps up through a long
	// run of other shards' rows.
	readMaxDropped = 4096
	readBatchBytes = 1 << 20
)

// work is one unit for the applier: a planned run of row changes, or a schema change
// (which the planner waits for before planning what follows it). msgs are the messages
// whose buffer budget it releases once applied.
type work struct {
	msgs []*message
	plan *plan
	ddl  *ddlWork
}

type ddlWork struct {
	m    *message
	ev   *event.Event
	done chan struct{}
}

// runPipeline claims the assigned partitions' offsets from the shard and runs three
// stages until ctx ends: one reader per partition, a planner that decodes, routes and
// collapses a batch, and the applier that writes it. Planning the next batch overlaps
// applying this one; both are bounded (the byte budget, one planned batch in hand). When
// ctx ends the batch being collected is planned and applied too, then it returns nil.
func (s *Sink) runPipeline(ctx context.Context, assigned []tp, committed map[tp]int64, kc *kafkaCommitter) error {
	states, err := s.claim(ctx, assigned, committed)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	s.addAssigned(states)
	defer s.removeAssigned(states)

	// abort stops every stage at once (an apply failed); ctx ending stops them gracefully.
	abort, cancel := context.WithCancel(context.Background())
	defer cancel()
	rctx, stopReaders := context.WithCancel(ctx)
	var readers sync.WaitGroup
	defer readers.Wait() // after stopReaders: no reader outlives its pipeline
	defer stopReaders()
	stop := context.AfterFunc(abort, stopReaders)
	defer stop()

	budget := semaphore.NewWeighted(s.opts.BufferBytes / int64(s.opts.Lanes))
	in := make(chan []*message, 2*s.cfg.Sink.BatchSize/readBatchMessages+len(states))
	readErr := make(chan error, len(states))
	for _, st := range states {
		readers.Go(func() { s.read(rctx, st.tp, st.next, budget, in, readErr) })
	}
	out := make(chan *work, 1)
	planned := make(chan error, 1)
	go func() {
		defer close(out)
		planned <- s.planLoop(ctx, abort, in, readErr, out)
	}()

	a := &applier{s: s, states: states, kc: kc, budget: budget}
	defer a.dropConn()
	for w := range out {
		if err := a.do(ctx, w); err != nil {
			cancel()
			for w := range out {
				a.release(w)
				if w.ddl != nil {
					close(w.ddl.done)
				}
			}
			<-planned
			if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
				// Stopping while the shard was unavailable: the batch stays unapplied, and
				// its offsets unstored, for the next owner.
				return nil
			}
			return err
		}
	}
	return <-planned
}

// planLoop collects batches from the readers and hands them planned to the applier. A
// batch closes when it holds sink.batch_size changes to decode, four times as many
// messages in all (changes of other shards' rows, skipped by key, cost little), when
// sink.batch_wait has passed since its first message, or at a schema change.
func (s *Sink) planLoop(ctx, abort context.Context, in <-chan []*message, readErr <-chan error, out chan<- *work) error {
	send := func(w *work) bool {
		select {
		case out <- w:
			return true
		case <-abort.Done():
			return false
		}
	}
	dec := new(event.Decoder)
	var pending []*message // received from a reader, not yet taken into a batch
	// Go 1.23 timers: a stopped or reset timer never delivers a stale tick.
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		var (
			items   []item
			msgs    []*message
			decoded int
			wait    <-chan time.Time // nil until the batch's first message
		)
		// flush plans and sends the batch; false means stop (an error, or abort).
		flush := func() (bool, error) {
			timer.Stop()
			wait = nil
			if len(items) == 0 {
				return true, nil
			}
			p, err := s.planItems(abort, items)
			if err != nil {
				return false, err
			}
			ok := send(&work{msgs: msgs, plan: p})
			items, msgs, decoded = nil, nil, 0
			return ok, nil
		}
	collect:
		for decoded < s.cfg.Sink.BatchSize && len(msgs) < 4*s.cfg.Sink.BatchSize {
			if len(pending) == 0 {
				select {
				case pending = <-in:
				case <-wait:
					break collect
				case err := <-readErr:
					if _, ferr := flush(); ferr != nil {
						return ferr
					}
					return err
				case <-ctx.Done():
					_, err := flush()
					return err
				case <-abort.Done():
					return nil
				}
			}
			m := pending[0]
			pending = pending[1:]
			it := s.decode(m, dec)
			if it.err == nil && it.ev != nil && it.ev.Op == event.OpDDL {
				// Everything before the change is applied first; nothing after it is
				// planned until it is applied (the table's shape changes).
				if ok, err := flush(); !ok {
					return err
				}
				w := &work{msgs: []*message{m}, ddl: &ddlWork{m: m, ev: it.ev, done: make(chan struct{})}}
				if !send(w) {
					return nil
				}
				select {
				case <-w.ddl.done:
				case <-abort.Done():
					return nil
				}
				if m.settled != nil {
					close(m.settled)
				}
				continue
			}
			items = append(items, it)
			msgs = append(msgs, m)
			if !it.foreign {
				decoded++
			}
			if wait == nil {
				timer.Reset(s.cfg.Sink.BatchWait)
				wait = timer.C
			}
		}
		if ok, err := flush(); !ok {
			return err
		}
	}
}

// read fetches one partition from offset on, within the shared byte budget, and hands the
// messages to the planner in order, a few at a time. A message whose key shows that its
// row belongs to other shards is dropped here rather than handed on (most of them, with
// several shards), except the last one read before a hand-off, which carries the offset
// the batch reaches. After a schema change of the table, nothing is dropped until the
// planner has dealt with it: keys after it may only route right with the new shape.
func (s *Sink) read(ctx context.Context, p tp, offset int64, budget *semaphore.Weighted, out chan<- []*message, errs chan<- error) {
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:               s.cfg.Kafka.Brokers,
		Topic:                 p.topic,
		Partition:             p.partition,
		MinBytes:              1,
		MaxBytes:              s.opts.FetchMaxBytes,
		MaxWait:               500 * time.Millisecond,
		QueueCapacity:         64,
		ReadLagInterval:       -1,
		OffsetOutOfRangeError: true,
		ErrorLogger:           kafkaLogger{s.log},
	})
	defer r.Close()
	if err := r.SetOffset(offset); err != nil {
		errs <- fmt.Errorf("%w: %s: set offset %d: %v", errRestart, p, offset, err)
		return
	}
	t := s.tables[p.topic]
	lane := s.opts.BufferBytes / int64(s.opts.Lanes)
	var (
		batch   []*message
		bytes   int64
		skipped *message      // the last message dropped since the last hand-off
		dropped int           // messages dropped since the last hand-off
		hold    chan struct{} // a schema change handed on and not yet settled
	)
	send := func() bool {
		if skipped != nil {
			batch = append(batch, skipped)
			skipped = nil
		}
		dropped = 0
		if len(batch) == 0 {
			return true
		}
		if bytes > lane {
			bytes = lane
		}
		if err := budget.Acquire(ctx, bytes); err != nil {
			return false
		}
		// The budget is released per message once applied: spread it over them.
		per, rest := bytes/int64(len(batch)), bytes%int64(len(batch))
		for _, m := range batch {
			m.size = per
		}
		batch[len(batch)-1].size += rest
		select {
		case out <- batch:
			batch, bytes = make([]*message, 0, readBatchMessages), 0
			return true
		case <-ctx.Done():
			budget.Release(bytes)
			return false
		}
	}
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, kafka.OffsetOutOfRange) {
				errs <- fmt.Errorf("sink %s: %s: offset %d is no longer (or not yet) in the partition: %w; events between the shard's stored offset and the partition's retained range are lost to this shard: re-copy it", s.shard, p, offset, err)
				return
			}
			errs <- fmt.Errorf("%w: %s: %v", errRestart, p, err)
			return
		}
		offset = m.Offset + 1
		msg := &message{Message: m}
		if hold != nil {
			select {
			case <-hold:
				hold = nil
			default:
			}
		}
		switch {
		case len(m.Key) == 0:
			// A heartbeat, a schema change, or a message cleave did not write.
			if ev, err := event.Unmarshal(m.Value); err == nil && ev.Op == event.OpDDL {
				msg.settled = make(chan struct{})
				hold = msg.settled
			}
		case s.opts.Reverse != nil:
			msg.routed = true // every row on the reverse topics is the monolith's
		case t != nil && hold == nil:
			if here, ok := s.routeByKey(t, m.Key); ok {
				msg.routed = true
				if !here {
					msg.foreign = true
					skipped = msg
					dropped++
				}
			}
		}
		if !msg.foreign {
			if skipped != nil {
				// Its offset is covered by this message's.
				skipped = nil
			}
			batch = append(batch, msg)
			bytes += int64(len(m.Key) + len(m.Value) + 64)
		}
		// Hand on at the end of what the partition held when fetched, or when full.
		if m.Offset+1 >= m.HighWaterMark || len(batch) >= readBatchMessages || bytes >= readBatchBytes || dropped >= readMaxDropped {
			if !send() {
				return
			}
		}
	}
}

// claim reads the stored next offset of each partition from the shard, creating the rows
// that are missing from the group's Kafka commit or the partition's first offset, and
// checks that each lies within what the partition still holds.
func (s *Sink) claim(ctx context.Context, assigned []tp, committed map[tp]int64) (map[tp]*partState, error) {
	bounds, err := s.partitionBounds(ctx, assigned)
	if err != nil {
		return nil, err
	}
	offsets := mysqlx.QuoteTable(shardmeta.Database, shardmeta.Offsets)
	var b strings.Builder
	args := make([]any, 0, 4*len(assigned))
	b.WriteString("INSERT IGNORE INTO " + offsets + " (consumer_group, topic, kafka_partition, next_offset) VALUES ")
	for i, p := range assigned {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?,?,?,?)")
		start := committed[p]
		if start < 0 {
			start = bounds[p][0]
		}
		args = append(args, s.group, p.topic, p.partition, start)
	}
	var states map[tp]*partState
	err = s.withRetry(ctx, "claim partition offsets", func(ctx context.Context) error {
		if _, err := s.db.ExecContext(ctx, b.String(), args...); err != nil {
			return err
		}
		states = make(map[tp]*partState, len(assigned))
		rows, err := s.db.QueryContext(ctx, "SELECT topic, kafka_partition, next_offset, applied_ts_ms FROM "+offsets+" WHERE consumer_group = ?", s.group)
		if err != nil {
			return err
		}
		defer rows.Close()
		want := map[tp]bool{}
		for _, p := range assigned {
			want[p] = true
		}
		for rows.Next() {
			st := &partState{}
			if err := rows.Scan(&st.topic, &st.partition, &st.next, &st.tsMs); err != nil {
				return err
			}
			if want[st.tp] {
				states[st.tp] = st
			}
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	for _, p := range assigned {
		if st := states[p]; st != nil && st.next > bounds[p][1] {
			// Another member may have stored an offset past the end read above: read the
			// ends again before calling it an error.
			if bounds, err = s.partitionBounds(ctx, assigned); err != nil {
				return nil, err
			}
			break
		}
	}
	for _, p := range assigned {
		st := states[p]
		if st == nil {
			return nil, fmt.Errorf("sink %s: no stored offset for %s after creating it", s.shard, p)
		}
		first, last := bounds[p][0], bounds[p][1]
		st.hwm = last
		if st.next < first {
			return nil, fmt.Errorf("sink %s: %s: the shard's stored offset %d is below the partition's first retained offset %d: events %d..%d were deleted by retention before this shard applied them; re-copy the shard (or raise the topic's retention)", s.shard, p, st.next, first, st.next, first-1)
		}
		if st.next > last {
			return nil, fmt.Errorf("sink %s: %s: the shard's stored offset %d is beyond the partition's end %d: the topic was re-created or the shard belongs to another cluster; delete the group's rows from %s.%s only if the shard is re-copied", s.shard, p, st.next, last, shardmeta.Database, shardmeta.Offsets)
		}
	}
	return states, nil
}

// partitionBounds returns the first and the end (next to be written) offset of each
// partition.
func (s *Sink) partitionBounds(ctx context.Context, assigned []tp) (map[tp][2]int64, error) {
	req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}}
	for _, p := range assigned {
		req.Topics[p.topic] = append(req.Topics[p.topic], kafka.FirstOffsetOf(p.partition), kafka.LastOffsetOf(p.partition))
	}
	out := map[tp][2]int64{}
	var lastErr error
	for attempt := 0; attempt < 10; attempt++ {
		res, err := kafkax.Client(s.cfg.Kafka.Brokers).ListOffsets(ctx, req)
		if err == nil {
			for topic, parts := range res.Topics {
				for _, po := range parts {
					if po.Error != nil {
						err = fmt.Errorf("%s/%d: %w", topic, po.Partition, po.Error)
						break
					}
					out[tp{topic, po.Partition}] = [2]int64{po.FirstOffset, po.LastOffset}
				}
			}
		}
		if err == nil {
			return out, nil
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return nil, fmt.Errorf("%w: list offsets of the assigned partitions: %v", errRestart, lastErr)
}

// logMessage names a message for logs and errors: topic, partition, offset and key.
func logMessage(m *message) []zap.Field {
	return []zap.Field{zap.String("topic", m.Topic), zap.Int("partition", m.Partition), zap.Int64("offset", m.Offset), zap.ByteString("key", m.Key)}
}

// describe names a message and, when decoded, the source position of its event.
func describe(m *message, ev *event.Event) string {
	s := fmt.Sprintf("%s/%d offset %d key %s", m.Topic, m.Partition, m.Offset, m.Key)
	if ev != nil {
		s += fmt.Sprintf(" (source %s:%d", ev.Source.File, ev.Source.Pos)
		if ev.Source.GTID != "" {
			s += " gtid " + ev.Source.GTID
		}
		s += fmt.Sprintf(" row %d, version %d)", ev.Source.Row, uint64(ev.Version))
	}
	return s
}
