package config

import "github.com/cleave-dev/cleave/kafkax"

// Topics returns the topics cleave needs for c: one per table with kafka.partitions, and
// one dead-letter topic per shard. A dead-letter topic has one partition (dead letters
// are few and read in order by an operator) and keeps its messages forever: an event the
// shard rejected must stay recorded until someone deals with it, not expire after Kafka's
// default week.
func (c *Config) Topics() []kafkax.Topic {
	var out []kafkax.Topic
	for _, t := range c.Tables {
		out = append(out, kafkax.Topic{Name: kafkax.TableTopic(c.Kafka.TopicPrefix, t.DB(), t.TableName()),
			Partitions: c.Kafka.Partitions, ReplicationFactor: c.Kafka.ReplicationFactor})
	}
	for _, s := range c.Shards {
		out = append(out, kafkax.Topic{Name: kafkax.DLQTopic(c.Kafka.TopicPrefix, s.Name),
			Partitions: 1, ReplicationFactor: c.Kafka.ReplicationFactor,
			Configs: map[string]string{"retention.ms": "-1"}})
	}
	return out
}
