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
	"time"

	"github.com/segmentio/kafka-go"
)

// TableTopic is the topic of the change events of db.table.
func TableTopic(prefix, db, table string) string { return prefix + "." + db + "." + table }

// DLQTopic is the dead-letter topic of a shard's sink.
func DLQTopic(prefix, shard string) string { return prefix + ".dlq." + shard }

// SinkGroup is the consumer group of a shard's sinks.
func SinkGroup(prefix, shard string) string { return prefix + ".sink." + shard }

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
