package capture

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cleave-dev/cleave/kafkax"
)

// CheckpointTopic is the compacted topic in which capture stores its position.
func CheckpointTopic(prefix string) string { return prefix + ".capture.checkpoint" }

// checkpointKey is the key of every checkpoint message: compaction keeps the latest.
const checkpointKey = "capture"

// Checkpoint is what capture stores: the boundary up to which every event is acknowledged
// by Kafka, and the identity of the source it belongs to.
type Checkpoint struct {
	Position
	// SourceServerID is @@server_id of the source the position belongs to: positions (and
	// so versions) only compare within one server's binlog.
	SourceServerID uint32 `json:"source_server_id"`
	Flavor         string `json:"flavor"`
	StoredAtMs     int64  `json:"stored_at_ms"`
}

// CheckpointStore keeps capture's checkpoint in a single-partition compacted Kafka topic,
// written with acks from all in-sync replicas.
type CheckpointStore struct {
	brokers []string
	topic   string
	rf      int
	w       *kafka.Writer
}

// NewCheckpointStore returns the store of the deployment with topic prefix prefix.
func NewCheckpointStore(brokers []string, prefix string, replicationFactor int) *CheckpointStore {
	topic := CheckpointTopic(prefix)
	return &CheckpointStore{
		brokers: brokers,
		topic:   topic,
		rf:      replicationFactor,
		w:       kafkax.NewStateWriter(brokers, topic),
	}
}

// Topic is the name of the checkpoint topic.
func (s *CheckpointStore) Topic() string { return s.topic }

// Ensure creates the checkpoint topic if it does not exist: one partition (one writer, one
// key), compacted so that it holds the latest checkpoint forever.
func (s *CheckpointStore) Ensure(ctx context.Context) error {
	return kafkax.EnsureTopics(ctx, s.brokers, []kafkax.Topic{{
		Name:              s.topic,
		Partitions:        1,
		ReplicationFactor: s.rf,
		Configs:           map[string]string{"cleanup.policy": "compact", "min.compaction.lag.ms": "0"},
	}})
}

// Load returns the latest stored checkpoint, or nil when none was ever stored. Errors
// Kafka calls temporary (a partition whose leader is still being elected, as right after
// the topic is created) are retried for up to loadRetryTime.
func (s *CheckpointStore) Load(ctx context.Context) (*Checkpoint, error) {
	var cp *Checkpoint
	err := kafkax.RetryTemporary(ctx, loadRetryTime, func() error {
		var errs []error
		for _, b := range s.brokers {
			c, err := s.loadFrom(ctx, b)
			if err == nil {
				cp = c
				return nil
			}
			errs = append(errs, err)
		}
		return fmt.Errorf("read checkpoint from topic %s: %w", s.topic, errors.Join(errs...))
	})
	if err != nil {
		return nil, err
	}
	return cp, nil
}

// loadRetryTime bounds how long Load retries temporary Kafka errors.
const loadRetryTime = 30 * time.Second

func (s *CheckpointStore) loadFrom(ctx context.Context, broker string) (*Checkpoint, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := kafka.DialLeader(ctx, "tcp", broker, s.topic, 0)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	first, last, err := conn.ReadOffsets()
	if err != nil {
		return nil, err
	}
	if last <= first {
		return nil, nil
	}
	// The latest message is the last one: compaction never removes the newest record of
	// a key, and this topic has one key.
	if _, err := conn.Seek(last-1, kafka.SeekAbsolute); err != nil {
		return nil, err
	}
	var msg kafka.Message
	for {
		m, err := conn.ReadMessage(1 << 20)
		if err != nil {
			return nil, err
		}
		msg = m
		if m.Offset >= last-1 {
			break
		}
	}
	if msg.Value == nil {
		return nil, nil // a tombstone: the checkpoint was deleted on purpose
	}
	var cp Checkpoint
	if err := json.Unmarshal(msg.Value, &cp); err != nil {
		return nil, fmt.Errorf("checkpoint at offset %d is not valid JSON (%q): %w", msg.Offset, msg.Value, err)
	}
	if cp.File == "" {
		return nil, fmt.Errorf("checkpoint at offset %d has no binlog file: %s", msg.Offset, msg.Value)
	}
	return &cp, nil
}

// Store writes cp and returns once every in-sync replica has it.
func (s *CheckpointStore) Store(ctx context.Context, cp Checkpoint) error {
	cp.StoredAtMs = time.Now().UnixMilli()
	val, err := json.Marshal(cp)
	if err != nil {
		return err
	}
	if err := s.w.WriteMessages(ctx, kafka.Message{Key: []byte(checkpointKey), Value: val}); err != nil {
		return fmt.Errorf("store checkpoint %s in topic %s: %w", cp.Position, s.topic, err)
	}
	return nil
}

// Close releases the store's producer.
func (s *CheckpointStore) Close() error { return s.w.Close() }
