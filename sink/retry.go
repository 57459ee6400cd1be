package sink

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/sony/gobreaker/v2"
	"go.uber.org/zap"

	"github.com/cleave-dev/cleave/mysqlx"
)

// attemptTimeout bounds one attempt at the shard, so that a hung connection is given up
// and retried rather than waited on forever.
const attemptTimeout = time.Minute

// withRetry runs fn through the shard's circuit breaker, retrying retryable failures with
// exponential backoff and jitter for at most sink.retry_max_time. An attempt in progress
// when ctx ends runs to its end (the batch in hand is finished), but no new attempt
// starts: withRetry then returns ctx's error.
func (s *Sink) withRetry(ctx context.Context, what string, fn func(ctx context.Context) error) error {
	deadline := time.Now().Add(s.cfg.Sink.RetryMaxTime)
	backoff := s.opts.RetryBackoff
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), attemptTimeout)
		_, err := s.breaker.Execute(func() (struct{}, error) { return struct{}{}, fn(actx) })
		cancel()
		if err == nil {
			return nil
		}
		if !retryable(err) {
			var stop errStop
			if errors.As(err, &stop) || errors.Is(err, errFenced) {
				return err
			}
			return fmt.Errorf("sink %s: %s: %w", s.shard, what, err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		if time.Now().Add(wait).After(deadline) {
			return fmt.Errorf("sink %s: %s: still failing after %d attempts over %s (sink.retry_max_time): %w", s.shard, what, attempt, s.cfg.Sink.RetryMaxTime, err)
		}
		s.m.retries.WithLabelValues(s.shard).Inc()
		lvl := s.log.Info
		if attempt >= 3 {
			lvl = s.log.Warn
		}
		lvl("shard not available; retrying", zap.String("what", what), zap.Int("attempt", attempt), zap.Duration("wait", wait), zap.Error(err))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		backoff = min(2*backoff, s.opts.RetryBackoffMax)
	}
}

func retryable(err error) bool {
	var ke *errKafka
	return mysqlx.Retryable(err) || errors.As(err, &ke) ||
		errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) ||
		errors.Is(err, context.DeadlineExceeded)
}

// stmtCache keeps the prepared full-size statements of one connection (the shape almost
// every statement of a backlog has), so the shard parses each once, least recently used
// first out.
type stmtCache struct {
	conn  *sql.Conn
	stmts map[string]*cachedStmt
	clock int64
}

type cachedStmt struct {
	st   *sql.Stmt
	used int64
}

// maxCachedStmts bounds the statements one sink keeps prepared on the shard (the server
// allows max_prepared_stmt_count, 16382 by default, over all sessions).
const maxCachedStmts = 256

func newStmtCache(conn *sql.Conn) *stmtCache {
	return &stmtCache{conn: conn, stmts: map[string]*cachedStmt{}}
}

// exec runs the statement text() with args, prepared once under key when cache is set.
func (c *stmtCache) exec(ctx context.Context, key string, cache bool, text func() string, args []any) (sql.Result, error) {
	if !cache {
		return c.conn.ExecContext(ctx, text(), args...)
	}
	st, err := c.prepared(ctx, key, text)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

// scanRow runs the query text, prepared once under key, and scans its one row into dest
// (sql.ErrNoRows when there is none).
func (c *stmtCache) scanRow(ctx context.Context, key, text string, args []any, dest ...any) error {
	st, err := c.prepared(ctx, key, func() string { return text })
	if err != nil {
		return err
	}
	return st.QueryRowContext(ctx, args...).Scan(dest...)
}

func (c *stmtCache) prepared(ctx context.Context, key string, text func() string) (*sql.Stmt, error) {
	c.clock++
	cs := c.stmts[key]
	if cs == nil {
		st, err := c.conn.PrepareContext(ctx, text())
		if err != nil {
			return nil, err
		}
		if len(c.stmts) >= maxCachedStmts {
			var oldest string
			for k, o := range c.stmts {
				if oldest == "" || o.used < c.stmts[oldest].used {
					oldest = k
				}
			}
			c.stmts[oldest].st.Close()
			delete(c.stmts, oldest)
		}
		cs = &cachedStmt{st: st}
		c.stmts[key] = cs
	}
	cs.used = c.clock
	return cs.st, nil
}

func (c *stmtCache) close() {
	for k, cs := range c.stmts {
		cs.st.Close()
		delete(c.stmts, k)
	}
}
