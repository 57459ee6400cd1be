// Package kafkax owns how cleave names and creates its Kafka topics and builds its clients:
// table topics <prefix>.<db>.<table>, dead-letter topics <prefix>.dlq.<shard>, the consumer
// group <prefix>.sink.<shard> of each shard, and producers that partition by murmur2 (as
// Java clients do) with acks from all in-sync replicas. It holds no state of its own.
package kafkax

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
)

// TableTopic is the topic of the change events of db.table.
func TableTopic(prefix, db, table string) string { return prefix + "." + db + "." + table }

// DLQTopic is the dead-letter topic of a shard's sink.
func DLQTopic(prefix, shard string) string { return prefix + ".dlq." + shard }

// SinkGroup is the consumer group of a shard's sinks.
func SinkGroup(prefix, shard string) string { return prefix + ".sink." + shard }

// ReversePrefix is the topic prefix of the reverse stream of one shard in one cut-over:
// its table topics, capture's checkpoints and the reverse sink's consumer group all live
// under it, so a later cut-over (after a rollback) starts from nothing of an earlier one.
func ReversePrefix(prefix string, cutoverID uint64, shard string) string {
	return prefix + ".rev" + strconv.FormatUint(cutoverID, 10) + "." + shard
}

// ReverseSink is the name the reverse sink of a shard's stream carries, in its logs, its
// metrics' shard label and its consumer group.
func ReverseSink(shard string) string { return "reverse-" + shard }

// ReverseGroup is the consumer group of the reverse sink of a shard in one cut-over.
func ReverseGroup(prefix string, cutoverID uint64, shard string) string {
	return SinkGroup(ReversePrefix(prefix, cutoverID, shard), ReverseSink(shard))
}

// Topic describes a topic to create.
type Topic struct {
	Name              string
	Partitions        int
	ReplicationFactor int
	// Configs are topic-level settings, e.g. cleanup.policy=compact.
	Configs map[string]string
}

// Client returns an admin client for brokers.
func Client(brokers []string) *kafka.Client {
	return &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second}
}

// EnsureTopics creates the topics that do not exist yet. An existing topic is left as it
// is, but one with fewer partitions than asked is an error: events of one row could then
// land in a different partition than before.
func EnsureTopics(ctx context.Context, brokers []string, topics []Topic) error {
	if len(topics) == 0 {
		return nil
	}
	c := Client(brokers)
	req := &kafka.CreateTopicsRequest{}
	for _, t := range topics {
		cfg := kafka.TopicConfig{Topic: t.Name, NumPartitions: t.Partitions, ReplicationFactor: t.ReplicationFactor}
		for k, v := range t.Configs {
			cfg.ConfigEntries = append(cfg.ConfigEntries, kafka.ConfigEntry{ConfigName: k, ConfigValue: v})
		}
		req.Topics = append(req.Topics, cfg)
	}
	res, err := c.CreateTopics(ctx, req)
	if err != nil {
		return fmt.Errorf("create topics on %v: %w", brokers, err)
	}
	var errs []error
	for _, t := range topics {
		if terr := res.Errors[t.Name]; terr != nil && !errors.Is(terr, kafka.TopicAlreadyExists) {
			errs = append(errs, fmt.Errorf("create topic %s: %w", t.Name, terr))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	names := make([]string, len(topics))
	for i, t := range topics {
		names[i] = t.Name
	}
	parts, err := Partitions(ctx, brokers, names)
	if err != nil {
		return err
	}
	for _, t := range topics {
		if parts[t.Name] < t.Partitions {
			return fmt.Errorf("topic %s exists with %d partitions, fewer than the %d configured: raise kafka.partitions to match is not possible without re-keying; use a new kafka.topic_prefix or delete the topic", t.Name, parts[t.Name], t.Partitions)
		}
	}
	return nil
}

// Partitions returns the partition count of each named topic that exists.
func Partitions(ctx context.Context, brokers []string, topics []string) (map[string]int, error) {
	c := Client(brokers)
	// Topic creation is asynchronous on the controller: metadata may lag for a moment.
	deadline := time.Now().Add(10 * time.Second)
	for {
		md, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: topics})
		if err != nil {
			return nil, fmt.Errorf("read metadata from %v: %w", brokers, err)
		}
		out := map[string]int{}
		pending := false
		for _, t := range md.Topics {
			if t.Error != nil {
				if errors.Is(t.Error, kafka.UnknownTopicOrPartition) || errors.Is(t.Error, kafka.LeaderNotAvailable) {
					pending = true
					continue
				}
				return nil, fmt.Errorf("metadata of topic %s: %w", t.Name, t.Error)
			}
			out[t.Name] = len(t.Partitions)
		}
		if !pending || time.Now().After(deadline) {
			return out, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Ping checks that one of the brokers answers a metadata request.
func Ping(ctx context.Context, brokers []string) error {
	var errs []error
	for _, b := range brokers {
		d := net.Dialer{Timeout: 3 * time.Second}
		conn, err := d.DialContext(ctx, "tcp", b)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		conn.Close()
		if _, err := Client([]string{b}).Metadata(ctx, &kafka.MetadataRequest{}); err != nil {
			errs = append(errs, fmt.Errorf("broker %s: %w", b, err))
			continue
		}
		return nil
	}
	return fmt.Errorf("no Kafka broker of %v answers: %w", brokers, errors.Join(errs...))
}

// NewWriter returns a producer for topic-less messages (each message names its topic) that
// partitions by murmur2 of the key, so that Java producers and consumers agree on the
// partition of a key, and waits for all in-sync replicas.
func NewWriter(brokers []string, batchSize int) *kafka.Writer {
	return &kafka.Writer{
		Addr:                   kafka.TCP(brokers...),
		Balancer:               &kafka.Murmur2Balancer{Consistent: true},
		RequiredAcks:           kafka.RequireAll,
		BatchSize:              batchSize,
		BatchBytes:             16 << 20,
		BatchTimeout:           5 * time.Millisecond,
		AllowAutoTopicCreation: false,
		Compression:            kafka.Snappy,
	}
}

// NewStateWriter returns a synchronous producer for a bookkeeping topic (capture's
// checkpoint, the backfill's progress): each write is sent at once, alone, and returns only
// when every in-sync replica holds it.
func NewStateWriter(brokers []string, topic string) *kafka.Writer {
	return &kafka.Writer{
		Addr:         kafka.TCP(brokers...),
		Topic:        topic,
		RequiredAcks: kafka.RequireAll,
		BatchSize:    1,
		BatchTimeout: time.Millisecond,
		MaxAttempts:  5,
	}
}

// EndOffsets returns, for each topic, the offset the next message of each partition will
// get (its high watermark), indexed by partition number. Everything below it has been
// acknowledged by every in-sync replica. A topic that does not exist is an error.
func EndOffsets(ctx context.Context, brokers []string, topics []string) (map[string][]int64, error) {
	if len(topics) == 0 {
		return map[string][]int64{}, nil
	}
	parts, err := Partitions(ctx, brokers, topics)
	if err != nil {
		return nil, err
	}
	req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}}
	for _, t := range topics {
		n, ok := parts[t]
		if !ok {
			return nil, fmt.Errorf("end offsets of topic %s: no such topic on %v", t, brokers)
		}
		for p := 0; p < n; p++ {
			req.Topics[t] = append(req.Topics[t], kafka.LastOffsetOf(p))
		}
	}
	res, err := Client(brokers).ListOffsets(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("list end offsets of %v on %v: %w", topics, brokers, err)
	}
	out := make(map[string][]int64, len(topics))
	for _, t := range topics {
		ends := make([]int64, parts[t])
		seen := make([]bool, parts[t])
		for _, po := range res.Topics[t] {
			if po.Error != nil {
				return nil, fmt.Errorf("end offset of %s partition %d: %w", t, po.Partition, po.Error)
			}
			if po.Partition < 0 || po.Partition >= len(ends) {
				return nil, fmt.Errorf("end offsets of %s: answer for partition %d of %d", t, po.Partition, len(ends))
			}
			ends[po.Partition], seen[po.Partition] = po.LastOffset, true
		}
		for p, ok := range seen {
			if !ok {
				return nil, fmt.Errorf("end offsets of %s: no answer for partition %d", t, p)
			}
		}
		out[t] = ends
	}
	return out, nil
}

// Reading a range of a partition.
const (
	// readMaxWait bounds how long one fetch waits for data; readBatchBytes is the most
	// one fetch returns (the writers' BatchBytes, so the largest batch always fits).
	readMaxWait    = 500 * time.Millisecond
	readBatchBytes = 16 << 20
	// readTimeout bounds one fetch on the wire, readStalls the fetches in a row that may
	// return nothing below the high watermark before the read gives up.
	readTimeout = 30 * time.Second
	readStalls  = 5
)

// ReadKeys calls fn with the key of every message of topic whose offset in partition p is
// in [from[p], to[p]), partition by partition in offset order, from one goroutine. A
// message without a key (capture's heartbeats and schema changes) is skipped. The key
// slice is only valid during the call: fn must copy what it keeps. An error from fn stops
// the read and is returned as is.
//
// from and to have one entry per partition of the topic (as EndOffsets returns them);
// from[p] >= to[p] reads nothing of p. The read of p ends at the first message at or past
// to[p], so offsets the log skips (compaction) do not stall it. A range that starts below
// the partition's log start (retention deleted it) or ends past its high watermark is an
// error naming the topic, the partition and the offsets, returned before fn sees any key of
// that partition. The producers of cleave's table topics are not transactional: a
// transaction marker in the range would be passed to fn as a key.
func ReadKeys(ctx context.Context, brokers []string, topic string, from, to []int64, fn func(partition int, key []byte) error) error {
	if len(from) != len(to) {
		return fmt.Errorf("read keys of %s: %d start offsets for %d end offsets", topic, len(from), len(to))
	}
	parts, err := Partitions(ctx, brokers, []string{topic})
	if err != nil {
		return err
	}
	if n, ok := parts[topic]; !ok {
		return fmt.Errorf("read keys of %s: no such topic on %v", topic, brokers)
	} else if n != len(from) {
		return fmt.Errorf("read keys of %s: offsets for %d partitions, the topic has %d", topic, len(from), n)
	}
	for p := range from {
		if from[p] >= to[p] {
			continue
		}
		if err := readPartitionKeys(ctx, brokers, topic, p, from[p], to[p], fn); err != nil {
			return err
		}
	}
	return nil
}

func readPartitionKeys(ctx context.Context, brokers []string, topic string, p int, from, to int64, fn func(int, []byte) error) error {
	conn, err := dialLeader(ctx, brokers, topic, p)
	if err != nil {
		return err
	}
	defer conn.Close()
	// The connection knows no context: closing it ends a fetch under way.
	defer context.AfterFunc(ctx, func() { conn.Close() })()
	ctxErr := func(err error) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	_ = conn.SetDeadline(time.Now().Add(readTimeout))
	first, last, err := conn.ReadOffsets()
	if err != nil {
		return ctxErr(fmt.Errorf("offsets of %s partition %d: %w", topic, p, err))
	}
	if from < first {
		return fmt.Errorf("read keys of %s partition %d from offset %d to %d: the log starts at offset %d, retention has deleted the messages below it", topic, p, from, to, first)
	}
	if to > last {
		return fmt.Errorf("read keys of %s partition %d from offset %d to %d: the partition ends at offset %d (its high watermark), below the end asked", topic, p, from, to, last)
	}
	// One seek per batch, and the next offset taken from the batch, not from the last
	// message: a batch that ends in compacted-away records moves past them.
	stalls := 0
	for off := from; off < to; {
		if err := ctx.Err(); err != nil {
			return err
		}
		_ = conn.SetDeadline(time.Now().Add(readTimeout))
		if _, err := conn.Seek(off, kafka.SeekAbsolute); err != nil {
			return ctxErr(readError(topic, p, off, from, to, err))
		}
		batch := conn.ReadBatchWith(kafka.ReadBatchConfig{MinBytes: 1, MaxBytes: readBatchBytes, MaxWait: readMaxWait})
		start := off
		var ferr error
		for off < to {
			m, err := batch.ReadMessage()
			if err != nil {
				break
			}
			if m.Offset >= to {
				off = to
				break
			}
			off = m.Offset + 1
			if len(m.Key) == 0 {
				continue
			}
			if ferr = fn(p, m.Key); ferr != nil {
				break
			}
		}
		if off < to {
			off = max(off, batch.Offset())
		}
		if err := batch.Close(); err != nil && ferr == nil {
			return ctxErr(readError(topic, p, off, from, to, err))
		}
		if ferr != nil {
			return ferr
		}
		if off > start {
			stalls = 0
			continue
		}
		// Nothing at off although the high watermark is at or past to (checked above):
		// a broker that keeps answering so is not one this read can finish on.
		if stalls++; stalls >= readStalls {
			return fmt.Errorf("read keys of %s partition %d: no message at offset %d after %d fetches, below the end %d asked", topic, p, off, stalls, to)
		}
	}
	return nil
}

// readError names the range a failed fetch belonged to; a fetch below the log start means
// retention deleted messages while the range was read.
func readError(topic string, p int, off, from, to int64, err error) error {
	if errors.Is(err, kafka.OffsetOutOfRange) {
		return fmt.Errorf("read keys of %s partition %d from offset %d to %d: offset %d is no longer in the log (retention deleted it during the read): %w", topic, p, from, to, off, err)
	}
	return fmt.Errorf("read keys of %s partition %d at offset %d (range %d to %d): %w", topic, p, off, from, to, err)
}

// dialLeader connects to the leader of a partition through the first broker that answers.
func dialLeader(ctx context.Context, brokers []string, topic string, p int) (*kafka.Conn, error) {
	var errs []error
	for _, b := range brokers {
		d := kafka.Dialer{Timeout: 10 * time.Second}
		conn, err := d.DialLeader(ctx, "tcp", b, topic, p)
		if err == nil {
			return conn, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		errs = append(errs, fmt.Errorf("via %s: %w", b, err))
	}
	return nil, fmt.Errorf("connect to the leader of %s partition %d: %w", topic, p, errors.Join(errs...))
}
