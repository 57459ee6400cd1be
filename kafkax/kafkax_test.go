package kafkax_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cleave-dev/cleave/internal/testenv"
	"github.com/cleave-dev/cleave/kafkax"
)

// produce writes n keyed messages key-<first>… key-<first+n-1>, and a keyless one after
// every tenth, to topic, and returns the keys.
func produce(t *testing.T, brokers []string, topic string, first, n int) []string {
	t.Helper()
	w := kafkax.NewWriter(brokers, 500)
	defer w.Close()
	var keys []string
	var msgs []kafka.Message
	for i := first; i < first+n; i++ {
		k := fmt.Sprintf("key-%d", i)
		keys = append(keys, k)
		msgs = append(msgs, kafka.Message{Topic: topic, Key: []byte(k), Value: []byte("v")})
		if i%10 == 0 {
			msgs = append(msgs, kafka.Message{Topic: topic, Value: []byte("heartbeat")})
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	return keys
}

func newTopic(t *testing.T, brokers []string, partitions int) string {
	t.Helper()
	topic := testenv.TopicPrefix(t) + ".keys"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := kafkax.EnsureTopics(ctx, brokers, []kafkax.Topic{{Name: topic, Partitions: partitions, ReplicationFactor: 1}}); err != nil {
		t.Fatal(err)
	}
	return topic
}

func TestReadKeysReturnsExactlyTheKeysProducedBetweenTwoEndOffsets(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	topic := newTopic(t, brokers, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	produce(t, brokers, topic, 0, 2000)
	mid, err := kafkax.EndOffsets(ctx, brokers, []string{topic})
	if err != nil {
		t.Fatal(err)
	}
	want := produce(t, brokers, topic, 2000, 3000)
	end, err := kafkax.EndOffsets(ctx, brokers, []string{topic})
	if err != nil {
		t.Fatal(err)
	}
	// Written after the end: must not be read.
	produce(t, brokers, topic, 5000, 500)

	if len(mid[topic]) != 3 || len(end[topic]) != 3 {
		t.Fatalf("end offsets of a 3-partition topic: mid %v, end %v", mid[topic], end[topic])
	}
	var total int64
	for p := range end[topic] {
		if end[topic][p] < mid[topic][p] {
			t.Fatalf("partition %d: end offset %d below the earlier %d", p, end[topic][p], mid[topic][p])
		}
		total += end[topic][p] - mid[topic][p]
	}
	if total != 3000+300 {
		t.Fatalf("end offsets moved by %d in all, want 3300 (3000 keyed, 300 keyless)", total)
	}

	got := map[string]int{}
	partitionOf := map[string]int{}
	err = kafkax.ReadKeys(ctx, brokers, topic, mid[topic], end[topic], func(p int, key []byte) error {
		k := string(key)
		got[k]++
		if q, ok := partitionOf[k]; ok && q != p {
			t.Errorf("key %s read from partitions %d and %d", k, q, p)
		}
		partitionOf[k] = p
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range want {
		if got[k] != 1 {
			t.Errorf("key %s read %d times, want once", k, got[k])
		}
		delete(got, k)
	}
	for k, n := range got {
		t.Errorf("key %s read %d times, produced outside the range", k, n)
	}
}

func TestReadKeysOfAnEmptyRangeReadsNothing(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	topic := newTopic(t, brokers, 3)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	produce(t, brokers, topic, 0, 100)
	end, err := kafkax.EndOffsets(ctx, brokers, []string{topic})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = kafkax.ReadKeys(ctx, brokers, topic, end[topic], end[topic], func(p int, key []byte) error {
		t.Errorf("key %s read from an empty range", key)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("empty range took %s", d)
	}
}

func TestReadKeysBelowTheLogStartIsAnErrorNamingTheRange(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	topic := newTopic(t, brokers, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	produce(t, brokers, topic, 0, 100)
	end, err := kafkax.EndOffsets(ctx, brokers, []string{topic})
	if err != nil {
		t.Fatal(err)
	}
	// Retention, made to happen now: the log starts at offset 50.
	testenv.DeleteRecords(t, brokers, topic, 0, 50)
	err = kafkax.ReadKeys(ctx, brokers, topic, []int64{10}, end[topic], func(int, []byte) error { return nil })
	if err == nil {
		t.Fatal("read below the log start succeeded")
	}
	for _, want := range []string{topic, "partition 0", "offset 10", "offset 50"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
}

func TestReadKeysStopsAtTheFirstErrorOfItsCallback(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	topic := newTopic(t, brokers, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	produce(t, brokers, topic, 0, 100)
	end, err := kafkax.EndOffsets(ctx, brokers, []string{topic})
	if err != nil {
		t.Fatal(err)
	}
	stop := fmt.Errorf("enough")
	n := 0
	err = kafkax.ReadKeys(ctx, brokers, topic, []int64{0}, end[topic], func(int, []byte) error {
		if n++; n == 3 {
			return stop
		}
		return nil
	})
	if err != stop || n != 3 {
		t.Fatalf("ReadKeys = %v after %d keys, want the callback's error after 3", err, n)
	}
}
