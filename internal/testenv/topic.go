package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cleave-dev/cleave/kafkax"
)

// ReadTopic returns every message topic holds, partition by partition in offset order. It
// fails the test when the topic cannot be read whole within two minutes.
func ReadTopic(t testing.TB, brokers []string, topic string) []kafka.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	parts, err := kafkax.Partitions(ctx, brokers, []string{topic})
	if err != nil {
		t.Fatal(err)
	}
	var out []kafka.Message
	for p := 0; p < parts[topic]; p++ {
		conn, err := kafka.DialLeader(ctx, "tcp", brokers[0], topic, p)
		if err != nil {
			t.Fatalf("dial %s/%d: %v", topic, p, err)
		}
		_ = conn.SetDeadline(time.Now().Add(time.Minute))
		first, last, err := conn.ReadOffsets()
		if err != nil {
			t.Fatalf("offsets of %s/%d: %v", topic, p, err)
		}
		for off := first; off < last; {
			if _, err := conn.Seek(off, kafka.SeekAbsolute); err != nil {
				t.Fatalf("seek %s/%d to %d: %v", topic, p, off, err)
			}
			batch := conn.ReadBatch(1, 16<<20)
			for {
				m, err := batch.ReadMessage()
				if err != nil {
					break
				}
				m.Partition = p
				out = append(out, m)
				off = m.Offset + 1
			}
			if err := batch.Close(); err != nil {
				t.Fatalf("read %s/%d: %v", topic, p, err)
			}
		}
		conn.Close()
	}
	return out
}
