package sink

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/sony/gobreaker/v2"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/kafkax"
	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/route"
	"github.com/cleave-dev/cleave/shardmeta"
)

// Options are what a sink takes besides the configuration: its collaborators and the
// knobs that are not operator settings. The zero value is usable.
type Options struct {
	// Log receives the sink's logs; nil discards them.
	Log *zap.Logger
	// Metrics to update; nil creates them on Registry.
	Metrics *Metrics
	// Registry receives the metrics when Metrics is nil; nil leaves them unregistered.
	Registry prometheus.Registerer

	// BeforeCommit, when set, is called in every batch after the rows and offsets are
	// written and before the shard transaction commits. An error rolls the batch back and
	// stops the sink. It is a fault-injection seam for tests (a crash between apply and
	// commit); production code leaves it nil.
	BeforeCommit func(ctx context.Context) error

	// SessionTimeout is how long the group coordinator waits for a heartbeat before it
	// gives a silent member's partitions to others. Default 10s.
	SessionTimeout time.Duration
	// RebalanceTimeout is how long the coordinator waits for members to rejoin during a
	// rebalance; a member that takes longer to finish its batch is dropped from the group
	// (its late batch is then fenced off, see the package comment). Default 30s.
	RebalanceTimeout time.Duration
	// FetchMaxBytes bounds one fetch of one partition. Default 1 MiB.
	FetchMaxBytes int
	// BufferBytes bounds the message bytes fetched but not yet applied, over all
	// partitions of the sink (each lane gets its share): a slow shard stops its own
	// readers at this bound. Default 32 MiB.
	BufferBytes int64
	// RowsPerStatement bounds the rows of one multi-row INSERT or DELETE. Default 500.
	RowsPerStatement int
	// RetryBackoff is the first wait after a retryable error; it doubles up to
	// RetryBackoffMax, with jitter. Defaults 100ms and 10s.
	RetryBackoff, RetryBackoffMax time.Duration
	// BreakerTimeout is how long the breaker stays open before it lets one probe batch
	// through. Default 5s.
	BreakerTimeout time.Duration
	// KafkaCommitInterval is the least time between two commits of the group's offsets to
	// Kafka (the shard's own offsets are written with every batch). Default 1s.
	KafkaCommitInterval time.Duration
	// Reverse, when set, makes the sink apply the shards' changes back to the monolith
	// after a cut-over (reverse replication, for a rollback): the configured shard the
	// sink is given is then the monolith. Nil is the forward sink.
	Reverse *Reverse
	// Lanes is how many batches a sink applies at once, each on its own shard session,
	// over its own share of the assigned partitions (a partition stays in one lane, so
	// its changes keep their order). Default 2.
	Lanes int
}

func (o *Options) setDefaults() {
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.SessionTimeout, 10*time.Second)
	def(&o.RebalanceTimeout, 30*time.Second)
	def(&o.RetryBackoff, 100*time.Millisecond)
	def(&o.RetryBackoffMax, 10*time.Second)
	def(&o.BreakerTimeout, 5*time.Second)
	def(&o.KafkaCommitInterval, time.Second)
	if o.FetchMaxBytes <= 0 {
		o.FetchMaxBytes = 1 << 20
	}
	if o.BufferBytes <= 0 {
		o.BufferBytes = 32 << 20
	}
	if o.RowsPerStatement <= 0 {
		o.RowsPerStatement = 500
	}
	if o.Lanes <= 0 {
		o.Lanes = 2
	}
}

// GCPercent is the garbage collector target a process that runs sinks should use (cleave
// sink sets it unless GOGC is set): a sink allocates fast while decoding events but its
// live heap is small and bounded (Options.BufferBytes, one planned batch per lane), so
// collecting four times less often costs a few MiB and saves much of the CPU the
// collector would take from decoding.
const GCPercent = 400

// Sink applies the change events routed to one shard. Create it with New and run it with
// Run; several Sinks of one shard, in one process or many, share its partitions.
type Sink struct {
	cfg     *config.Config
	shard   string
	shardNo int
	dsn     string
	group   string
	opts    Options
	log     *zap.Logger
	m       *Metrics
	breaker *gobreaker.CircuitBreaker[struct{}]

	db      *sql.DB
	flavor  mysqlx.Flavor // the shard's product, which may not be the source's
	router  *route.Router
	tables  map[string]*table // by topic
	dlq     *kafka.Writer
	batches int // committed batches, for BeforeCommit accounting in tests

	mu       sync.Mutex
	assigned map[tp]*partState // partitions of the running pipeline, for the lag gauges
}

// New checks what it can without connecting and returns a Sink for the named shard.
func New(cfg *config.Config, shard string, opts Options) (*Sink, error) {
	i := cfg.ShardIndex(shard)
	if i < 0 {
		return nil, fmt.Errorf("sink: shard %q is not configured (shards: %s)", shard, shardNames(cfg))
	}
	if opts.Reverse != nil && opts.Reverse.Epoch == 0 {
		return nil, fmt.Errorf("sink: reverse replication to %s: the epoch (the cut-over's id) must be at least 1", shard)
	}
	opts.setDefaults()
	m := opts.Metrics
	if m == nil {
		var err error
		if m, err = NewMetrics(opts.Registry); err != nil {
			return nil, err
		}
	}
	s := &Sink{
		cfg:     cfg,
		shard:   shard,
		shardNo: i,
		dsn:     cfg.Shards[i].DSN,
		group:   kafkax.SinkGroup(cfg.Kafka.TopicPrefix, shard),
		opts:    opts,
		log:     opts.Log.With(zap.String("shard", shard)),
		m:       m,
	}
	s.breaker = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:    "shard " + shard,
		Timeout: opts.BreakerTimeout,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.ConsecutiveFailures >= 3
		},
		// Only an unavailable shard trips the breaker; a rejected row is the row's fault.
		IsSuccessful: func(err error) bool { return err == nil || !mysqlx.Retryable(err) },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			s.m.breaker.WithLabelValues(shard).Set(float64(to))
			s.log.Warn("shard circuit breaker changed state", zap.Stringer("from", from), zap.Stringer("to", to))
		},
	})
	s.m.breaker.WithLabelValues(shard).Set(0)
	s.m.retries.WithLabelValues(shard)
	return s, nil
}

func shardNames(cfg *config.Config) string {
	var names []string
	for _, s := range cfg.Shards {
		names = append(names, s.Name)
	}
	sort.Strings(names)
	return fmt.Sprint(names)
}

// Run consumes and applies until ctx is cancelled, then finishes the batch in hand, stores
// its offsets and returns nil. It returns an error when the shard cannot be applied to:
// a rejected event under sink.on_error stop, a schema the events do not fit, a shard that
// stays unreachable for longer than sink.retry_max_time.
func (s *Sink) Run(ctx context.Context) error {
	if err := s.open(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer s.close()

	topics := make([]string, 0, len(s.tables))
	for topic := range s.tables {
		topics = append(topics, topic)
	}
	sort.Strings(topics)
	if len(topics) == 0 {
		s.log.Warn("no configured table can hold rows on this shard; nothing to apply")
		<-ctx.Done()
		return nil
	}
	cg, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID:                s.group,
		Brokers:           s.cfg.Kafka.Brokers,
		Topics:            topics,
		HeartbeatInterval: max(s.opts.SessionTimeout/10, 100*time.Millisecond),
		SessionTimeout:    s.opts.SessionTimeout,
		RebalanceTimeout:  s.opts.RebalanceTimeout,
		JoinGroupBackoff:  time.Second,
		StartOffset:       kafka.FirstOffset,
		ErrorLogger:       kafkaLogger{s.log},
	})
	if err != nil {
		return fmt.Errorf("sink %s: join consumer group %s: %w", s.shard, s.group, err)
	}
	defer cg.Close()
	s.m.lag.set(s.shard, s.lagSince)
	defer s.m.lag.set(s.shard, nil)

	s.log.Info("sink started", zap.String("group", s.group), zap.Int("topics", len(topics)))
	for {
		gen, err := cg.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				s.log.Info("sink stopped")
				return nil
			}
			// The group retries joining by itself; these are the errors it met meanwhile
			// (coordinator unreachable, rebalance in progress).
			s.log.Info("consumer group not joined yet", zap.Error(err))
			continue
		}
		done := make(chan error, 1)
		gen.Start(func(gctx context.Context) { done <- s.runGeneration(ctx, gctx, gen) })
		if err := <-done; err != nil {
			return err
		}
		if ctx.Err() != nil {
			s.log.Info("sink stopped")
			return nil
		}
	}
}

// open connects to the shard and reads what the sink needs from it.
func (s *Sink) open(ctx context.Context) error {
	db, err := mysqlx.Open(ctx, "shard "+s.shard, s.dsn)
	if err != nil {
		return fmt.Errorf("sink %s: %w", s.shard, err)
	}
	s.db = db
	if s.flavor, err = mysqlx.DetectFlavor(ctx, db); err != nil {
		return fmt.Errorf("sink %s: %w", s.shard, err)
	}
	reverse := s.opts.Reverse != nil
	ensure := shardmeta.Ensure
	if reverse {
		ensure = shardmeta.EnsureReverse
	}
	if err := ensure(ctx, db); err != nil {
		return fmt.Errorf("sink %s: %w", s.shard, err)
	}
	// Tables whose rows can never land here (pinned elsewhere, a list or ranges that do not
	// name this shard) are not read at all: their topics are not subscribed. In reverse
	// every row of every table is the monolith's, and nothing is routed.
	sub := *s.cfg
	sub.Tables = nil
	kinds := map[string]route.KeyKind{}
	s.tables = map[string]*table{}
	for i := range s.cfg.Tables {
		tc := &s.cfg.Tables[i]
		if !reverse && !tc.CanOwn(s.shard) {
			continue
		}
		t, err := loadTable(ctx, db, s.shard, s.cfg.Kafka.TopicPrefix, tc, reverse)
		if err != nil {
			return fmt.Errorf("sink %s: tables[%d]: %w", s.shard, i, err)
		}
		t.idx = i
		s.tables[t.topic] = t
		// At zero from the start, so that rates and alerts over them have a series.
		s.m.stale.WithLabelValues(s.shard, t.name)
		s.m.deadLetters.WithLabelValues(s.shard, t.name)
		kinds[t.name] = t.shape().keyKind()
		sub.Tables = append(sub.Tables, *tc)
	}
	if len(sub.Tables) > 0 && !reverse {
		if s.router, err = sub.Router(kinds); err != nil {
			return fmt.Errorf("sink %s: %w", s.shard, err)
		}
	}
	// The topics this sink reads and writes, as cleave prepare creates them; a sink that
	// starts first creates them the same way.
	var topics []kafkax.Topic
	for _, t := range s.cfg.Topics() {
		if s.tables[t.Name] != nil || t.Name == kafkax.DLQTopic(s.cfg.Kafka.TopicPrefix, s.shard) {
			topics = append(topics, t)
		}
	}
	if err := kafkax.EnsureTopics(ctx, s.cfg.Kafka.Brokers, topics); err != nil {
		return fmt.Errorf("sink %s: %w", s.shard, err)
	}
	s.dlq = kafkax.NewWriter(s.cfg.Kafka.Brokers, 100)
	return nil
}

func (s *Sink) close() {
	if s.dlq != nil {
		s.dlq.Close()
	}
	if s.db != nil {
		s.db.Close()
	}
}

// runGeneration applies the partitions assigned in one generation of the group until the
// generation ends (a rebalance) or the sink stops. A fenced batch (another member moved
// the stored offsets) restarts the partitions from the shard's offsets.
func (s *Sink) runGeneration(runCtx, genCtx context.Context, gen *kafka.Generation) error {
	ctx, cancel := context.WithCancel(runCtx)
	defer cancel()
	stop := context.AfterFunc(genCtx, cancel)
	defer stop()

	var assigned []tp
	committed := map[tp]int64{}
	for topic, parts := range gen.Assignments {
		for _, p := range parts {
			assigned = append(assigned, tp{topic, p.ID})
			committed[tp{topic, p.ID}] = p.Offset
		}
	}
	sort.Slice(assigned, func(i, j int) bool { return assigned[i].less(assigned[j]) })
	s.log.Info("partitions assigned", zap.Int32("generation", gen.ID), zap.Int("partitions", len(assigned)))
	if len(assigned) == 0 {
		<-ctx.Done()
		return nil
	}
	kc := &kafkaCommitter{gen: gen, every: s.opts.KafkaCommitInterval, log: s.log}
	defer kc.flush()

	// The partitions are dealt to lanes; each lane is a pipeline of its own (readers,
	// planner, applier with its own shard session), so a shard applies several batches
	// at once. A partition stays in one lane, so its changes keep their order.
	lanes := make([][]tp, min(s.opts.Lanes, len(assigned)))
	for i, p := range assigned {
		lanes[i%len(lanes)] = append(lanes[i%len(lanes)], p)
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, lane := range lanes {
		g.Go(func() error { return s.runLane(gctx, lane, committed, kc) })
	}
	return g.Wait()
}

// runLane runs the pipeline of some partitions until ctx ends, restarting it from the
// shard's offsets when a batch was fenced off or a reader failed.
func (s *Sink) runLane(ctx context.Context, partitions []tp, committed map[tp]int64, kc *kafkaCommitter) error {
	for {
		err := s.runPipeline(ctx, partitions, committed, kc)
		switch {
		case errors.Is(err, errFenced):
			s.log.Warn("another member applied some of these partitions meanwhile; re-reading their offsets from the shard", zap.Error(err))
		case errors.Is(err, errRestart):
			s.log.Warn("restarting the partitions' readers", zap.Error(err))
		case err != nil:
			return err
		default:
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

// kafkaCommitter commits applied offsets to the group, at most once per interval.
type kafkaCommitter struct {
	gen     *kafka.Generation
	every   time.Duration
	log     *zap.Logger
	mu      sync.Mutex
	last    time.Time
	pending map[string]map[int]int64
}

func (k *kafkaCommitter) add(t tp, next int64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.pending == nil {
		k.pending = map[string]map[int]int64{}
	}
	if k.pending[t.topic] == nil {
		k.pending[t.topic] = map[int]int64{}
	}
	k.pending[t.topic][t.partition] = next
	if time.Since(k.last) >= k.every {
		k.flushLocked()
	}
}

func (k *kafkaCommitter) flush() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.flushLocked()
}

func (k *kafkaCommitter) flushLocked() {
	if len(k.pending) == 0 || k.gen == nil {
		// Without a generation (an applier driven directly) there is nothing to commit to.
		k.pending = nil
		return
	}
	k.last = time.Now()
	if err := k.gen.CommitOffsets(k.pending); err != nil {
		// The shard holds the true offsets; a failed Kafka commit only delays lag tools.
		k.log.Info("commit offsets to Kafka failed; the shard's offsets stay authoritative", zap.Error(err))
		return
	}
	k.pending = nil
}

// kafkaLogger passes kafka-go's error logs to zap at info: the client logs and retries
// every broker hiccup itself.
type kafkaLogger struct{ log *zap.Logger }

func (l kafkaLogger) Printf(format string, args ...any) {
	l.log.Info("kafka: " + fmt.Sprintf(format, args...))
}

// addAssigned and removeAssigned track the partitions of the running lanes.
func (s *Sink) addAssigned(m map[tp]*partState) {
	s.mu.Lock()
	if s.assigned == nil {
		s.assigned = map[tp]*partState{}
	}
	for k, v := range m {
		s.assigned[k] = v
	}
	s.mu.Unlock()
	s.updateConsumerLag()
}

func (s *Sink) removeAssigned(m map[tp]*partState) {
	s.mu.Lock()
	for k, v := range m {
		if s.assigned[k] == v {
			delete(s.assigned, k)
		}
	}
	s.mu.Unlock()
	s.updateConsumerLag()
}

// lagSince is the source commit time of the last event applied on the slowest assigned
// partition.
func (s *Sink) lagSince() (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var oldest int64
	for _, p := range s.assigned {
		if p.tsMs > 0 && (oldest == 0 || p.tsMs < oldest) {
			oldest = p.tsMs
		}
	}
	if oldest == 0 {
		return time.Time{}, false
	}
	return time.UnixMilli(oldest), true
}

func (s *Sink) updateConsumerLag() {
	s.mu.Lock()
	var lag int64
	for _, p := range s.assigned {
		if p.hwm > p.next {
			lag += p.hwm - p.next
		}
	}
	s.mu.Unlock()
	s.m.consumerLag.WithLabelValues(s.shard).Set(float64(lag))
}

// Status describes a running sink for /status. It holds no secrets and no row data.
type Status struct {
	Shard      string            `json:"shard"`
	Group      string            `json:"group"`
	Breaker    string            `json:"breaker"`
	Partitions []PartitionStatus `json:"partitions"`
}

// PartitionStatus is one assigned partition.
type PartitionStatus struct {
	Topic         string `json:"topic"`
	Partition     int    `json:"partition"`
	NextOffset    int64  `json:"next_offset"`
	HighWatermark int64  `json:"high_watermark"`
	AppliedTsMs   int64  `json:"applied_ts_ms,omitempty"`
}

// Status returns a snapshot of the sink's assignment and progress.
func (s *Sink) Status() Status {
	st := Status{Shard: s.shard, Group: s.group, Breaker: s.breaker.State().String(), Partitions: []PartitionStatus{}}
	s.mu.Lock()
	for _, p := range s.assigned {
		st.Partitions = append(st.Partitions, PartitionStatus{Topic: p.topic, Partition: p.partition, NextOffset: p.next, HighWatermark: p.hwm, AppliedTsMs: p.tsMs})
	}
	s.mu.Unlock()
	sort.Slice(st.Partitions, func(i, j int) bool {
		return tp{st.Partitions[i].Topic, st.Partitions[i].Partition}.less(tp{st.Partitions[j].Topic, st.Partitions[j].Partition})
	})
	return st
}
