package bench

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/cleave-dev/cleave/internal/testenv/core"
	"github.com/cleave-dev/cleave/mysqlx"
)

// BackfillOptions configure the end-to-end backfill measurement.
type BackfillOptions struct {
	Services  core.Env
	CleaveBin string
	// Rows is the size of the table that exists before cleave starts.
	Rows int
	// NotBuiltAfter is how long cleave run may copy nothing before the backfill is taken
	// for not built. Default 30 s.
	NotBuiltAfter time.Duration
	WorkDir       string
	Logf          func(format string, args ...any)
}

// Backfill fills a table of o.Rows rows on the source (outside the binlog, so only a copy
// can bring them over), starts `cleave run` on it, and times it until the two shards hold
// every row between them.
func Backfill(ctx context.Context, o BackfillOptions) ([]Figure, error) {
	if o.NotBuiltAfter <= 0 {
		o.NotBuiltAfter = 30 * time.Second
	}
	f := Figure{
		Key:   "backfill",
		Title: fmt.Sprintf("backfill of a %s-row, 9-column table that exists before cleave starts, end to end onto 2 shards", humanCount(o.Rows)),
		How: fmt.Sprintf("A table of %s rows is filled on the source with the binlog off for the session (only a copy can bring the rows over); `cleave prepare`, then `cleave run` "+
			"(default backfill settings, no write load) is timed from its start until the row counts of both shards add up to the source's, read every second.", humanCount(o.Rows)),
	}
	src, shards, err := openAll(ctx, o.Services)
	if err != nil {
		return nil, err
	}
	defer func() {
		src.Close()
		for _, s := range shards {
			s.Close()
		}
	}()
	db := "cleave_bench_backfill_" + core.RandomHex(4)
	prefix := "cleave-bench-backfill-" + core.RandomHex(4)
	defer cleanupLag(src, shards, db, prefix, LagOptions{Services: o.Services, Logf: o.Logf})

	began := time.Now()
	if err := fillUnlogged(ctx, src, db, o.Rows); err != nil {
		return nil, err
	}
	o.Logf("backfill: %d rows in %s.bench written in %s", o.Rows, db, time.Since(began).Round(time.Millisecond))

	port, err := core.FreePort()
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(o.WorkDir, "backfill-cleave.yaml")
	if err := writeConfig(cfgPath, o.Services, prefix, randomServerID(), "127.0.0.1:"+itoa(port),
		[]tableConfig{{Name: db + ".bench", Strategy: "hash", ShardKey: "user_id"}}, "reconcile:\n  interval: 0s\n"); err != nil {
		return nil, err
	}
	prep := exec.CommandContext(ctx, o.CleaveBin, "prepare", "--config", cfgPath)
	prep.Env = cleanEnv()
	if out, err := prep.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("cleave prepare: %v\n%s", err, out)
	}
	start := time.Now()
	run, err := core.Start(core.Command{Name: "cleave run", Argv: []string{o.CleaveBin, "run", "--config", cfgPath},
		Env: cleanEnv(), Log: filepath.Join(o.WorkDir, "backfill-cleave-run.log")})
	if err != nil {
		return nil, err
	}
	defer run.Stop(time.Minute)
	if err := waitStreaming(ctx, processes{run}, fmt.Sprintf("http://127.0.0.1:%d/status", port), 2*time.Minute); err != nil {
		return nil, err
	}
	count := "SELECT COUNT(*) FROM " + mysqlx.QuoteTable(db, "bench")
	deadline := start.Add(10 * time.Minute)
	for {
		var total int64
		for i, s := range shards {
			var n int64
			if err := s.QueryRowContext(ctx, count).Scan(&n); err != nil {
				return nil, fmt.Errorf("count the rows on shard s%d: %w", i, err)
			}
			total += n
		}
		now := time.Now()
		if total >= int64(o.Rows) {
			took := now.Sub(start)
			f.Cleave = []Value{{Value: float64(o.Rows) / took.Seconds(), Unit: "rows/s"}}
			f.Beside = []Value{{Name: "took", Value: took.Seconds(), Unit: "s"}}
			if rss, err := PeakRSS(run.Pid()); err == nil {
				f.Beside = append(f.Beside, Value{Name: "peak RSS of cleave run", Value: float64(rss) / (1 << 20), Unit: "MiB"})
			}
			o.Logf("backfill: %d rows on the shards after %s (%.0f rows/s)", total, took.Round(time.Millisecond), float64(o.Rows)/took.Seconds())
			break
		}
		if total == 0 && now.Sub(start) > o.NotBuiltAfter {
			var st struct {
				Backfill []any `json:"backfill"`
			}
			_ = restCall(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/status", port), nil, &st)
			if len(st.Backfill) == 0 {
				f.Missing = fmt.Sprintf("backfill not built: cleave run copied no existing row in %s and reports no backfill", o.NotBuiltAfter)
				f.How = "Not measured in this run: " + f.Missing + ". " + f.How
				return []Figure{f}, nil
			}
		}
		if err := run.Alive(); err != nil {
			return nil, err
		}
		if now.After(deadline) {
			return nil, fmt.Errorf("backfill: only %d of %d rows on the shards after 10 minutes (log: %s)", total, o.Rows, run.Log)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
	if err := run.Stop(time.Minute); err != nil {
		o.Logf("backfill: %v", err)
	}
	return []Figure{f}, nil
}

// fillUnlogged creates db.bench and fills it with rows rows in statements of 100,000, on
// one session with the binlog off: the rows exist, but no reader of the binlog sees them.
func fillUnlogged(ctx context.Context, src *sql.DB, db string, rows int) error {
	conn, err := src.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	q := mysqlx.QuoteIdent(db)
	stmts := []string{
		"SET SESSION sql_log_bin = 0",
		"CREATE DATABASE " + q,
		"CREATE TABLE " + q + `.bench (id BIGINT NOT NULL PRIMARY KEY, user_id BIGINT NOT NULL, name VARCHAR(64), email VARCHAR(128),
			amount DECIMAL(12,2), score DOUBLE, created DATETIME(6), status TINYINT, note TEXT)`,
	}
	const chunk = 100_000
	for lo := 0; lo < rows; lo += chunk {
		stmts = append(stmts, fmt.Sprintf(`INSERT INTO %s.bench SELECT seq, seq * 7 %% 100003, CONCAT('name-', seq), CONCAT('user', seq, '@example.com'), seq / 100,
			seq * 1.5, TIMESTAMP'2024-01-01 00:00:00' + INTERVAL seq SECOND, seq %% 5, IF(seq %% 3 = 0, NULL, REPEAT('x', seq %% 50))
			FROM %s.seq_%d_to_%d`, q, q, lo+1, min(lo+chunk, rows)))
	}
	for _, stmt := range stmts {
		if _, err := conn.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("fill the backfill table: %w", err)
		}
	}
	return nil
}
