package preflight

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/segmentio/kafka-go"

	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/kafkax"
)

// CheckTopic is the name of the topic check creates and deletes under the topic prefix.
func CheckTopic(prefix string) string { return prefix + ".cleave-check" }

// checkKafka checks that a broker answers, that a topic can be created with the configured
// replication factor, and that the topics cleave uses, where they exist already, have at
// least the configured partitions.
func checkKafka(ctx context.Context, r *Report, cfg *config.Config) {
	ctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	brokers := cfg.Kafka.Brokers
	subject := "kafka " + strings.Join(brokers, ",")
	if err := kafkax.Ping(ctx, brokers); err != nil {
		r.fail("kafka.reachable", subject, err.Error(), "start Kafka, or correct kafka.brokers")
		return
	}
	r.ok("kafka.reachable", subject, "reachable")

	// The topic is deleted again: it proves nothing once created, and a run that finds it
	// missing proves creation afresh. A cluster that refuses deletes still passes, since
	// cleave never deletes topics itself.
	topic := CheckTopic(cfg.Kafka.TopicPrefix)
	subject = "kafka topic " + topic
	err := kafkax.EnsureTopics(ctx, brokers, []kafkax.Topic{{Name: topic, Partitions: 1, ReplicationFactor: cfg.Kafka.ReplicationFactor}})
	if err != nil {
		fix := "allow the client to create topics (ACL CREATE on the cluster or on the prefix " + cfg.Kafka.TopicPrefix + ")"
		if errors.Is(err, kafka.InvalidReplicationFactor) {
			fix = "lower kafka.replication_factor to at most the number of brokers"
		}
		r.fail("kafka.create_topic", subject, "cannot be created: "+err.Error(), fix)
	} else {
		detail := fmt.Sprintf("created with replication factor %d and deleted", cfg.Kafka.ReplicationFactor)
		if derr := deleteTopic(ctx, brokers, topic); derr != nil {
			detail = fmt.Sprintf("created with replication factor %d; not deleted (%v)", cfg.Kafka.ReplicationFactor, derr)
		}
		r.ok("kafka.create_topic", subject, "%s", detail)
	}

	checkExistingTopics(ctx, r, cfg)
}

func deleteTopic(ctx context.Context, brokers []string, topic string) error {
	res, err := kafkax.Client(brokers).DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{topic}})
	if err != nil {
		return err
	}
	return res.Errors[topic]
}

// tableTopics returns the change-event topics of cfg's tables, in configuration order.
func tableTopics(cfg *config.Config) []string {
	var names []string
	for _, t := range cfg.Tables {
		names = append(names, kafkax.TableTopic(cfg.Kafka.TopicPrefix, t.DB(), t.TableName()))
	}
	return names
}

// checkExistingTopics fails table topics that exist with fewer partitions than configured:
// the sinks and capture would disagree about a topic's shape, and Kafka cannot re-key a
// topic. (Dead-letter topics have one partition and are not checked.)
func checkExistingTopics(ctx context.Context, r *Report, cfg *config.Config) {
	const subject = "kafka topics"
	want := tableTopics(cfg)
	md, err := kafkax.Client(cfg.Kafka.Brokers).Metadata(ctx, &kafka.MetadataRequest{Topics: want})
	if err != nil {
		r.fail("kafka.topics", subject, "cannot read topic metadata: "+err.Error(), "check that the brokers answer metadata requests")
		return
	}
	var exist int
	var short []string
	for _, t := range md.Topics {
		if t.Error != nil {
			continue // does not exist yet: prepare creates it
		}
		exist++
		if len(t.Partitions) < cfg.Kafka.Partitions {
			short = append(short, fmt.Sprintf("%s has %d", t.Name, len(t.Partitions)))
		}
	}
	sort.Strings(short)
	if len(short) > 0 {
		r.fail("kafka.topics", subject, fmt.Sprintf("fewer partitions than kafka.partitions=%d: %s", cfg.Kafka.Partitions, strings.Join(short, ", ")),
			"set kafka.partitions to match, or use a new kafka.topic_prefix")
		return
	}
	if exist == 0 {
		r.ok("kafka.topics", subject, "none of the %d exists yet (cleave prepare creates them)", len(want))
		return
	}
	r.ok("kafka.topics", subject, "%d of %d exist, each with at least %d partitions", exist, len(want), cfg.Kafka.Partitions)
}
