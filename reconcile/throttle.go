package reconcile

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"go.uber.org/zap"
)

// throttle holds the next chunk back until the rate limit allows its rows and the source is
// not busy: while Threads_running on the source is above Options.MaxThreadsRunning the
// checker waits, backing off from 100 ms to 5 s between looks, so that it never adds load to
// a server that is already struggling.
func (c *Checker) throttle(ctx context.Context, rows int) error {
	if c.limiter != nil {
		if err := c.limiter.WaitN(ctx, min(rows, c.limiter.Burst())); err != nil {
			return err
		}
	}
	if c.opts.MaxThreadsRunning <= 0 {
		return nil
	}
	backoff := 100 * time.Millisecond
	logged := false
	for {
		n, err := c.threadsRunning(ctx)
		if err != nil {
			return err
		}
		// This check itself runs one thread.
		if n-1 <= c.opts.MaxThreadsRunning {
			return nil
		}
		if !logged {
			c.log.Info("source is busy, pausing the check", zap.Int("threads_running", n), zap.Int("max", c.opts.MaxThreadsRunning))
			logged = true
		}
		c.m.throttled.Inc()
		if err := sleep(ctx, backoff); err != nil {
			return err
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (c *Checker) threadsRunning(ctx context.Context) (int, error) {
	var name, val string
	if err := c.source.QueryRowContext(ctx, "SHOW GLOBAL STATUS LIKE 'Threads_running'").Scan(&name, &val); err != nil {
		return 0, fmt.Errorf("read Threads_running on the source: %w", err)
	}
	n, err := strconv.Atoi(val)
	if err != nil {
		return 0, fmt.Errorf("Threads_running %q: %w", val, err)
	}
	return n, nil
}
