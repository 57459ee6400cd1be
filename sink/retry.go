package sink

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
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

// stmtCache keeps the prepared full-size statements (the shape almost every statement of a
// backlog has), so the shard parses each once per connection.
type stmtCache struct {
	db    *sql.DB
	mu    sync.Mutex
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

func newStmtCache(db *sql.DB) *stmtCache {
	return &stmtCache{db: db, stmts: map[string]*cachedStmt{}}
}

func (c *stmtCache) exec(ctx context.Context, tx *sql.Tx, key string, cache bool, text func() string, args []any) (sql.Result, error) {
	if !cache {
		return tx.ExecContext(ctx, text(), args...)
	}
	st, err := c.prepared(ctx, key, text)
	if err != nil {
		return nil, err
	}
	return tx.StmtContext(ctx, st).ExecContext(ctx, args...)
}

func (c *stmtCache) prepared(ctx context.Context, key string, text func() string) (*sql.Stmt, error) {
	c.mu.Lock()
	c.clock++
	if cs := c.stmts[key]; cs != nil {
		cs.used = c.clock
		c.mu.Unlock()
		return cs.st, nil
	}
	c.mu.Unlock()
	st, err := c.db.PrepareContext(ctx, text())
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.stmts) >= maxCachedStmts {
		// Evict the least recently used.
		var oldest string
		for k, cs := range c.stmts {
			if oldest == "" || cs.used < c.stmts[oldest].used {
				oldest = k
			}
		}
		c.stmts[oldest].st.Close()
		delete(c.stmts, oldest)
	}
	c.stmts[key] = &cachedStmt{st: st, used: c.clock}
	return st, nil
}

func (c *stmtCache) query(ctx context.Context, tx *sql.Tx, key string, text func() string, args []any) (*sql.Rows, error) {
	st, err := c.prepared(ctx, key, text)
	if err != nil {
		return nil, err
	}
	return tx.StmtContext(ctx, st).QueryContext(ctx, args...)
}

// forget closes the statements of a table whose definition changed.
func (c *stmtCache) forget(table string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, cs := range c.stmts {
		if strings.Contains(k, "\x00"+table+"\x00") {
			cs.st.Close()
			delete(c.stmts, k)
		}
	}
}

func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, cs := range c.stmts {
		cs.st.Close()
		delete(c.stmts, k)
	}
}
