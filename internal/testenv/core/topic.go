package core

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cleave-dev/cleave/kafkax"
)

// cleanupTimeout bounds each Kafka request of a cleanup.
const cleanupTimeout = 30 * time.Second

// ErrUnreachable marks a DeleteTopics that could not list the cluster's topics: there was
// nothing it could clean. A caller cleaning up after a broker it stopped may ignore it.
var ErrUnreachable = errors.New("cluster unreachable")

// DeleteTopics deletes the topics and consumer groups whose names start with prefix from
// the cluster at brokers; an empty prefix or no brokers deletes nothing. It carries on
// past failures and returns them all joined (errors.Join), one error per failed step.
func DeleteTopics(ctx context.Context, brokers []string, prefix string) error {
	if len(brokers) == 0 || prefix == "" {
		return nil
	}
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: cleanupTimeout}
	first := kafka.TCP(brokers[0])
	var errs []error

	// A cluster that cannot list its groups has none this cleanup could delete.
	if groups, err := client.ListGroups(ctx, &kafka.ListGroupsRequest{Addr: first}); err == nil {
		var ids []string
		for _, g := range groups.Groups {
			if strings.HasPrefix(g.GroupID, prefix) {
				ids = append(ids, g.GroupID)
			}
		}
		if len(ids) > 0 {
			res, err := client.DeleteGroups(ctx, &kafka.DeleteGroupsRequest{Addr: first, GroupIDs: ids})
			if err != nil {
				errs = append(errs, fmt.Errorf("delete consumer groups %v: %w", ids, err))
			} else {
				for id, err := range res.Errors {
					if err != nil {
						errs = append(errs, fmt.Errorf("delete consumer group %s: %w", id, err))
					}
				}
			}
		}
	}

	meta, err := client.Metadata(ctx, &kafka.MetadataRequest{})
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("list topics: %w: %w", ErrUnreachable, err))...)
	}
	var topics []string
	for _, tp := range meta.Topics {
		if strings.HasPrefix(tp.Name, prefix) {
			topics = append(topics, tp.Name)
		}
	}
	if len(topics) == 0 {
		return errors.Join(errs...)
	}
	res, err := client.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: topics})
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("delete topics %v: %w", topics, err))...)
	}
	for name, err := range res.Errors {
		if err != nil {
			errs = append(errs, fmt.Errorf("delete topic %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// partitionTimeout bounds reading one partition of a topic.
const partitionTimeout = time.Minute

// ReadTopic calls fn with every message topic holds, partition by partition in offset
// order, each with its Partition set. Each partition must be read whole within a minute.
func ReadTopic(ctx context.Context, brokers []string, topic string, fn func(kafka.Message)) error {
	parts, err := kafkax.Partitions(ctx, brokers, []string{topic})
	if err != nil {
		return err
	}
	for p := 0; p < parts[topic]; p++ {
		if err := readPartition(ctx, brokers[0], topic, p, fn); err != nil {
			return err
		}
	}
	return nil
}

func readPartition(ctx context.Context, broker, topic string, p int, fn func(kafka.Message)) error {
	ctx, cancel := context.WithTimeout(ctx, partitionTimeout)
	defer cancel()
	conn, err := kafka.DialLeader(ctx, "tcp", broker, topic, p)
	if err != nil {
		return fmt.Errorf("dial %s/%d: %w", topic, p, err)
	}
	defer conn.Close()
	dl, _ := ctx.Deadline()
	_ = conn.SetDeadline(dl)
	first, last, err := conn.ReadOffsets()
	if err != nil {
		return fmt.Errorf("offsets of %s/%d: %w", topic, p, err)
	}
	// One seek per batch: offsets a batch skips (compacted, or transaction markers) do
	// not stall the read.
	for off := first; off < last; {
		if _, err := conn.Seek(off, kafka.SeekAbsolute); err != nil {
			return fmt.Errorf("seek %s/%d to %d: %w", topic, p, off, err)
		}
		batch := conn.ReadBatch(1, 16<<20)
		for {
			m, err := batch.ReadMessage()
			if err != nil {
				break
			}
			m.Partition = p
			fn(m)
			off = m.Offset + 1
		}
		if err := batch.Close(); err != nil {
			return fmt.Errorf("read %s/%d: %w", topic, p, err)
		}
	}
	return nil
}
