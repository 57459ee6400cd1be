package core

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrTimeout marks a Poll whose timeout passed before its condition held.
var ErrTimeout = errors.New("timed out")

// Poll calls cond every interval until it returns true, and returns nil then. It gives
// up with cond's error as soon as cond returns one (the wait is hopeless, say because the
// process that should answer has exited), with ctx's error when ctx ends, and with an
// error wrapping ErrTimeout once timeout has passed. cond runs at least once.
func Poll(ctx context.Context, interval, timeout time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w after %s", ErrTimeout, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}
