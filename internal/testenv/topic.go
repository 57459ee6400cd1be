package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cleave-dev/cleave/internal/testenv/core"
)

// ReadTopic returns every message topic holds, partition by partition in offset order. It
// fails the test when the topic cannot be read whole within two minutes.
func ReadTopic(t testing.TB, brokers []string, topic string) []kafka.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out []kafka.Message
	if err := core.ReadTopic(ctx, brokers, topic, func(m kafka.Message) { out = append(out, m) }); err != nil {
		t.Fatal(err)
	}
	return out
}
