package kafkax

import (
	"context"
	"errors"
	"time"

	"github.com/segmentio/kafka-go"
)

// RetryTemporary calls fn until it returns nil, an error Kafka does not call temporary, or
// limit has passed, backing off from 100 ms to 2 s between calls. Temporary errors are what
// a broker answers while a partition's leader is still being elected, as right after its
// topic was created ("Not Leader For Partition"): they end on their own within seconds.
// The last error is returned when the limit or ctx ends the retries.
func RetryTemporary(ctx context.Context, limit time.Duration, fn func() error) error {
	deadline := time.Now().Add(limit)
	for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 2*time.Second) {
		err := fn()
		if err == nil {
			return nil
		}
		var ke kafka.Error
		if !errors.As(err, &ke) || !ke.Temporary() || time.Now().Add(backoff).After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(backoff):
		}
	}
}
