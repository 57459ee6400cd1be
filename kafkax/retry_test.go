package kafkax

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

func TestRetryTemporaryRetriesOnlyTemporaryErrors(t *testing.T) {
	calls := 0
	err := RetryTemporary(context.Background(), time.Minute, func() error {
		calls++
		if calls < 3 {
			return kafka.NotLeaderForPartition
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("two temporary errors then success: err %v after %d calls, want nil after 3", err, calls)
	}

	calls = 0
	permanent := errors.New("topic authorization failed")
	err = RetryTemporary(context.Background(), time.Minute, func() error {
		calls++
		return permanent
	})
	if !errors.Is(err, permanent) || calls != 1 {
		t.Fatalf("permanent error: err %v after %d calls, want it after 1", err, calls)
	}

	calls = 0
	err = RetryTemporary(context.Background(), 0, func() error {
		calls++
		return kafka.NotLeaderForPartition
	})
	if !errors.Is(err, kafka.NotLeaderForPartition) || calls != 1 {
		t.Fatalf("temporary error past the limit: err %v after %d calls, want it after 1", err, calls)
	}
}
