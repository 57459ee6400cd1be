package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cleave-dev/cleave/internal/testenv/core"
	"github.com/cleave-dev/cleave/kafkax"
)

// topicCounter counts the messages in a topic from its partitions' offsets: one metadata
// request (until the topic exists) and then one ListOffsets request per call.
type topicCounter struct {
	client *kafka.Client
	topic  string
	parts  []int
}

func newTopicCounter(brokers []string, topic string) *topicCounter {
	return &topicCounter{client: kafkax.Client(brokers), topic: topic}
}

// count returns the messages in the topic; 0 while it does not exist.
func (c *topicCounter) count(ctx context.Context) (int64, error) {
	if c.parts == nil {
		md, err := c.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{c.topic}})
		if err != nil {
			return 0, err
		}
		for _, t := range md.Topics {
			if t.Name != c.topic {
				continue
			}
			if t.Error != nil {
				if errors.Is(t.Error, kafka.UnknownTopicOrPartition) || errors.Is(t.Error, kafka.LeaderNotAvailable) {
					return 0, nil
				}
				return 0, t.Error
			}
			for _, p := range t.Partitions {
				c.parts = append(c.parts, p.ID)
			}
		}
		if len(c.parts) == 0 {
			c.parts = nil
			return 0, nil
		}
	}
	req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}}
	for _, p := range c.parts {
		req.Topics[c.topic] = append(req.Topics[c.topic], kafka.FirstOffsetOf(p), kafka.LastOffsetOf(p))
	}
	res, err := c.client.ListOffsets(ctx, req)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, po := range res.Topics[c.topic] {
		if po.Error != nil {
			return 0, fmt.Errorf("offsets of %s[%d]: %w", c.topic, po.Partition, po.Error)
		}
		n += po.LastOffset - po.FirstOffset
	}
	return n, nil
}

// deleteTopics deletes the topics and consumer groups whose names start with prefix. It is
// cleanup, so it has a deadline of its own, independent of the run's context; it returns
// what failed, and the caller reports it.
func deleteTopics(brokers []string, prefix string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return core.DeleteTopics(ctx, brokers, prefix)
}
