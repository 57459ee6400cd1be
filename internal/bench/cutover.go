package bench

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/cutover"
	"github.com/cleave-dev/cleave/internal/loadgen"
	"github.com/cleave-dev/cleave/internal/testenv/core"
	"github.com/cleave-dev/cleave/kafkax"
	"github.com/cleave-dev/cleave/mysqlx"
)

// CutoverOptions configure the write-pause measurement of a cut-over.
type CutoverOptions struct {
	Services  core.Env
	CleaveBin string
	// Rates are the offered row changes per second, one fresh deployment and cut-over each.
	Rates []int
	// SeedUsers seeds the shop before cleave starts (about 7 rows per user). Default 2000.
	SeedUsers int
	// Before is how long the application writes before `cleave cutover` starts, After how
	// long it goes on writing (to the shards) once it has ended. Default 5 s each.
	Before, After time.Duration
	WorkDir       string
	Logf          func(format string, args ...any)
}

// Cutover measures, for each offered rate, the write pause of a real cut-over under an
// application that follows it (loadgen.App): `cleave run` on a fresh seeded shop, the
// application writing at the rate, `cleave cutover` as a process whose switch webhook is
// the application's Switch; then the application's model is checked against the shards.
// A rate whose cut-over fails gives a figure that says why.
func Cutover(ctx context.Context, o CutoverOptions) ([]Figure, error) {
	if o.SeedUsers <= 0 {
		o.SeedUsers = 2000
	}
	if o.Before <= 0 {
		o.Before = 5 * time.Second
	}
	if o.After <= 0 {
		o.After = 5 * time.Second
	}
	var figs, backs []Figure
	for _, offered := range o.Rates {
		back := rollbackFigure(o, offered)
		f, err := cutoverAt(ctx, o, offered, &back)
		if err != nil {
			if ctx.Err() != nil {
				return append(figs, backs...), err
			}
			f.Cleave, f.Missing = nil, err.Error()
			o.Logf("cutover: %d/s: %v", offered, err)
		}
		if back.Cleave == nil && back.Missing == "" {
			back.Missing = "not run: " + firstNonEmpty(f.Missing, "the cut-over failed")
		}
		figs, backs = append(figs, f), append(backs, back)
	}
	return append(figs, backs...), nil
}

// rollbackFigure is the figure of the rollback that follows the cut-over at offered.
func rollbackFigure(o CutoverOptions, offered int) Figure {
	return Figure{
		Key:   fmt.Sprintf("rollback_%d", offered),
		Title: fmt.Sprintf("write pause of a rollback at %s row changes/s offered, as journaled and as the application saw it", group(int64(offered))),
		How: fmt.Sprintf("The cut-over's run goes on: %s after the cut-over ended, with the application writing to the shards at %s row changes/s and reverse replication bringing "+
			"them back, `cleave rollback` runs as a process; the application's handler of the \"rolled_back\" notice (or a shard's guard refusal) sends it back to the source. "+
			"The pause is measured as the cut-over's, over the rollback's fence; %s later the application stops and the same model check of the shards (which the forward path "+
			"brought up to date again) must pass.", o.After, group(int64(offered)), o.After),
	}
}

func cutoverAt(ctx context.Context, o CutoverOptions, offered int, back *Figure) (Figure, error) {
	f := Figure{
		Key:   fmt.Sprintf("cutover_%d", offered),
		Title: fmt.Sprintf("write pause of a cut-over at %s row changes/s offered, as journaled and as the application saw it", group(int64(offered))),
		How: fmt.Sprintf("A fresh shop of %d users under `cleave run` (backfill done, sinks caught up); an application (loadgen.App, 8 writers: balance increments, new orders with items, "+
			"deletions of its own orders, one user per transaction) writes %s row changes/s to the source; %s later `cleave cutover` runs as a process with its hook_url on the application, "+
			"whose handler switches it to the owning shards (a write the guard refuses on the source is retried there). The journaled pause is the fence's; the application's is each "+
			"transaction's latency from its first attempt to its acknowledgement, over the transactions that overlapped the fence (journal: fence step to its release). "+
			"%s after the cut-over ended a rollback follows (its own figure), and %s after that the application stops: an independent SELECT of the shards must hold every change it had acknowledged exactly once on the owning shard (the model check).",
			o.SeedUsers, group(int64(offered)), o.Before, o.After, o.After),
	}
	src, shards, err := openAll(ctx, o.Services)
	if err != nil {
		return f, err
	}
	defer func() {
		src.Close()
		for _, s := range shards {
			s.Close()
		}
	}()
	db := "cleave_bench_cutover_" + core.RandomHex(4)
	prefix := "cleave-bench-cutover-" + core.RandomHex(4)
	defer cleanupCutover(src, shards, db, prefix, o)

	if err := loadgen.CreateSchema(ctx, src, db); err != nil {
		return f, err
	}
	if _, err := loadgen.Seed(ctx, src, db, o.SeedUsers, 1); err != nil {
		return f, err
	}
	app := &loadgen.App{Source: src, Shards: shards, Database: db, Rate: offered, Workers: 8, Seed: uint64(offered)}
	hookURL, stopHook, err := serveSwitchHook(app)
	if err != nil {
		return f, err
	}
	defer stopHook()

	port, err := core.FreePort()
	if err != nil {
		return f, err
	}
	cfgPath := filepath.Join(o.WorkDir, fmt.Sprintf("cutover-%d-cleave.yaml", offered))
	tables := []tableConfig{
		{Name: db + ".countries", Strategy: "broadcast"},
		{Name: db + ".users", Strategy: "hash", ShardKey: "id"},
		{Name: db + ".orders", Strategy: "hash", ShardKey: "user_id"},
		{Name: db + ".order_items", Strategy: "hash", ShardKey: "user_id"},
	}
	if err := writeConfig(cfgPath, o.Services, prefix, randomServerID(), "127.0.0.1:"+itoa(port), tables,
		fmt.Sprintf("reconcile:\n  interval: 0s\ncutover:\n  hook_url: %q\n", hookURL)); err != nil {
		return f, err
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return f, err
	}
	if app.Router, err = cfg.Router(nil); err != nil {
		return f, err
	}
	prep := exec.CommandContext(ctx, o.CleaveBin, "prepare", "--config", cfgPath)
	prep.Env = cleanEnv()
	if out, err := prep.CombinedOutput(); err != nil {
		return f, fmt.Errorf("cleave prepare: %v\n%s", err, out)
	}
	logPath := filepath.Join(o.WorkDir, fmt.Sprintf("cutover-%d-cleave-run.log", offered))
	p, err := core.Start(core.Command{Name: "cleave run", Argv: []string{o.CleaveBin, "run", "--config", cfgPath}, Env: cleanEnv(), Log: logPath})
	if err != nil {
		return f, err
	}
	run := processes{p}
	defer run.stop(time.Minute)
	if err := waitHTTP(ctx, p, fmt.Sprintf("http://127.0.0.1:%d/readyz", port), 2*time.Minute); err != nil {
		return f, err
	}
	if err := waitStreaming(ctx, run, fmt.Sprintf("http://127.0.0.1:%d/status", port), 2*time.Minute); err != nil {
		return f, err
	}
	if err := waitCopied(ctx, src, shards, db, run); err != nil {
		return f, err
	}
	o.Logf("cutover: %d/s: %s copied onto the shards; the application starts", offered, db)

	appCtx, stopApp := context.WithCancel(ctx)
	defer stopApp()
	appDone := make(chan error, 1)
	began := time.Now()
	go func() { appDone <- app.Run(appCtx) }()
	appErr := func() error {
		stopApp()
		return <-appDone
	}
	if err := waitOrFail(ctx, o.Before, appDone); err != nil {
		return f, fmt.Errorf("the application before the cut-over: %w", err)
	}

	cmd := exec.CommandContext(ctx, o.CleaveBin, "cutover", "--config", cfgPath, "--json")
	cmd.Env = cleanEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var rec cutover.Record
	if err := json.Unmarshal(stdout.Bytes(), &rec); err != nil {
		appErr()
		return f, fmt.Errorf("cleave cutover: %v: %s (stdout not a journal record: %v)", runErr, lastLine(stderr.Bytes()), err)
	}
	if runErr != nil || rec.State != cutover.StateDone {
		if err := appErr(); err != nil {
			o.Logf("cutover: %d/s: the application: %v", offered, err)
		}
		return f, fmt.Errorf("cleave cutover ended in state %s (%v): %s", rec.State, runErr, firstNonEmpty(rec.Detail.Reason, lastLine(stderr.Bytes())))
	}
	if err := waitOrFail(ctx, o.After, appDone); err != nil {
		return f, fmt.Errorf("the application after the cut-over: %w", err)
	}
	// The rollback, under the same application, now writing to the shards, once the
	// reverse sinks are current (their gate).
	var brec cutover.Record
	caughtUp, revErr := waitReverseCurrent(ctx, src, prefix, rec.ID, cfg, time.Minute)
	var bRunErr error
	var bout, berr bytes.Buffer
	if revErr == nil {
		bcmd := exec.CommandContext(ctx, o.CleaveBin, "rollback", "--config", cfgPath, "--json")
		bcmd.Env = cleanEnv()
		bcmd.Stdout, bcmd.Stderr = &bout, &berr
		bRunErr = bcmd.Run()
	}
	switch jerr := json.Unmarshal(bout.Bytes(), &brec); {
	case revErr != nil:
		back.Missing = revErr.Error()
	case jerr != nil:
		back.Missing = fmt.Sprintf("cleave rollback: %v: %s", bRunErr, lastLine(berr.Bytes()))
	case bRunErr != nil || brec.State != cutover.StateDone:
		back.Missing = fmt.Sprintf("cleave rollback ended in state %s (%v): %s", brec.State, bRunErr, firstNonEmpty(brec.Detail.Reason, lastLine(berr.Bytes())))
	default:
		if err := waitOrFail(ctx, o.After, appDone); err != nil {
			return f, fmt.Errorf("the application after the rollback: %w", err)
		}
	}
	if err := appErr(); err != nil {
		return f, fmt.Errorf("the application: %w", err)
	}
	elapsed := time.Since(began)
	if back.Missing == "" {
		// After the rollback the application wrote to the source: the forward path brings
		// those writes to the shards, which the model check reads.
		if err := waitCopied(ctx, src, shards, db, run); err != nil {
			return f, fmt.Errorf("the shards after the rollback: %w", err)
		}
	}
	check, err := app.Verify(ctx)
	if err != nil {
		return f, err
	}

	from, to := rec.FenceWindow()
	samples := app.Samples()
	fenced, all := loadgen.PauseOf(samples, from, to), loadgen.PauseOf(samples, time.Time{}, time.Time{})
	st := app.Stats()
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	f.Cleave = []Value{
		{Name: "journaled", Value: float64(rec.Detail.WritePauseMs), Unit: "ms"},
		{Name: "application p50", Value: ms(fenced.P50), Unit: "ms"},
		{Name: "p99", Value: ms(fenced.P99), Unit: "ms"},
		{Name: "max", Value: ms(fenced.Max), Unit: "ms"},
	}
	var rounds []string
	for _, r := range rec.Detail.Rounds {
		rounds = append(rounds, fmt.Sprintf("%s rows in %.1f s", group(int64(r.Rows)), r.Seconds))
	}
	verdict := fmt.Sprintf("model check passed (%d users, %d orders alive, %d deleted)", check.Users, check.Orders, check.Deleted)
	if !check.OK() {
		verdict = fmt.Sprintf("model check FAILED: %d problems, first: %s", len(check.Problems), check.Problems[0])
	}
	f.Beside = []Value{
		{Name: "achieved", Value: float64(st.Rows) / elapsed.Seconds(), Unit: "row changes/s"},
		{Name: "over", Value: float64(fenced.N), Unit: "transactions across the fence"},
		{Name: fmt.Sprintf("verification rounds: %s; fenced: %s rows in %.1f s", strings.Join(rounds, ", "), group(int64(fencedRows(&rec))), fencedSeconds(&rec))},
		{Name: verdict},
		{Name: "overall p99", Value: ms(all.P99), Unit: "ms"},
	}
	if st.Failed > 0 {
		f.Beside = append(f.Beside, Value{Name: fmt.Sprintf("%d attempts refused by a server error and retried (first: %s)", st.Failed, st.Failures[0])})
	}
	if back.Missing == "" {
		bfrom, bto := brec.FenceWindow()
		bp := loadgen.PauseOf(samples, bfrom, bto)
		back.Cleave = []Value{
			{Name: "journaled", Value: float64(brec.Detail.WritePauseMs), Unit: "ms"},
			{Name: "application p50", Value: ms(bp.P50), Unit: "ms"},
			{Name: "p99", Value: ms(bp.P99), Unit: "ms"},
			{Name: "max", Value: ms(bp.Max), Unit: "ms"},
		}
		back.Beside = []Value{
			{Name: "over", Value: float64(bp.N), Unit: "transactions across the fence"},
			{Name: "waited for the reverse sinks to be current", Value: caughtUp.Seconds(), Unit: "s"},
			{Name: fmt.Sprintf("fenced verification: %s rows in %.1f s", group(int64(fencedRows(&brec))), fencedSeconds(&brec))},
			{Name: verdict},
		}
		bat, bByRef, _ := app.SwitchedBack()
		o.Logf("rollback: %d/s offered: journaled pause %d ms; application across the fence %s; back by refusal %v, %s after the fence; rounds %v, fenced %+v",
			offered, brec.Detail.WritePauseMs, bp, bByRef, bat.Sub(bfrom).Round(time.Millisecond), brec.Detail.Rounds, brec.Detail.Fenced)
	}
	at, byRefusal, _ := app.Switched()
	how := "the hook"
	if byRefusal {
		how = "the guard's refusal"
	}
	o.Logf("cutover: %d/s offered (%.0f/s achieved): journaled pause %d ms; application across the fence %s; overall %s; switched by %s %s after the fence; rounds %v, fenced %+v; %d refused and retried on the shards; %s",
		offered, float64(st.Rows)/elapsed.Seconds(), rec.Detail.WritePauseMs, fenced, all, how, at.Sub(from).Round(time.Millisecond), rec.Detail.Rounds, rec.Detail.Fenced, st.Refused, verdict)
	for i, p := range check.Problems {
		if i == 20 {
			break
		}
		o.Logf("cutover: %d/s: model check: %s", offered, p)
	}
	return f, nil
}

// waitReverseCurrent waits until every shard's reverse sink keeps offsets on the source for
// every partition, each within cutover.max_sink_lag (the rollback's gate), and returns how
// long that took.
func waitReverseCurrent(ctx context.Context, src *sql.DB, prefix string, cutoverID uint64, cfg *config.Config, limit time.Duration) (time.Duration, error) {
	start := time.Now()
	want := len(cfg.Tables) * cfg.Kafka.Partitions
	var lags []string
	for time.Since(start) < limit {
		lags = lags[:0]
		for _, s := range cfg.Shards {
			var n int
			var lagMs sql.NullInt64
			err := src.QueryRowContext(ctx, "SELECT COUNT(*), CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 - MIN(applied_ts_ms) AS SIGNED) FROM `_cleave`.`offsets` WHERE consumer_group = ?",
				kafkax.ReverseGroup(prefix, cutoverID, s.Name)).Scan(&n, &lagMs)
			if err != nil && mysqlx.Number(err) != mysqlx.ErNoSuchTable {
				return 0, err
			}
			if n < want || !lagMs.Valid || lagMs.Int64 > cfg.Cutover.MaxSinkLag.Milliseconds()*4/5 {
				lags = append(lags, fmt.Sprintf("shard %s: %d of %d partitions, lag %d ms", s.Name, n, want, lagMs.Int64))
			}
		}
		if len(lags) == 0 {
			return time.Since(start), nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return 0, fmt.Errorf("the reverse sinks were not current %s after the cut-over (%s): not rolled back", limit, strings.Join(lags, "; "))
}

// serveSwitchHook serves the application's switch webhook on a loopback port.
func serveSwitchHook(app *loadgen.App) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var n cutover.SwitchNotice
		if err := json.NewDecoder(r.Body).Decode(&n); err != nil {
			http.Error(w, "want a switch notice", http.StatusBadRequest)
			return
		}
		switch n.Event {
		case "switched":
			app.Switch()
		case "rolled_back":
			app.SwitchBack()
		default:
			http.Error(w, "want a switched or rolled_back notice", http.StatusBadRequest)
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String() + "/switch", func() { _ = srv.Close() }, nil
}

// waitOrFail waits d, or returns the application's error when it stops first.
func waitOrFail(ctx context.Context, d time.Duration, done <-chan error) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case err := <-done:
		if err == nil {
			err = errors.New("stopped")
		}
		return err
	case <-time.After(d):
		return nil
	}
}

// waitCopied waits until the shards hold the source's rows: each shop table's count, once
// per shard for the broadcast countries.
func waitCopied(ctx context.Context, src *sql.DB, shards []*sql.DB, db string, run processes) error {
	count := func(s *sql.DB, tbl string) (int64, error) {
		var n int64
		err := s.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+mysqlx.QuoteTable(db, tbl)).Scan(&n)
		return n, err
	}
	var last string
	err := core.Poll(ctx, 500*time.Millisecond, 5*time.Minute, func() (bool, error) {
		for _, tbl := range loadgen.Tables {
			want, err := count(src, tbl)
			if err != nil {
				return false, err
			}
			var got int64
			for _, s := range shards {
				n, err := count(s, tbl)
				if err != nil {
					last = err.Error()
					return false, run.check()
				}
				got += n
			}
			if tbl == "countries" {
				want *= int64(len(shards))
			}
			if got != want {
				last = fmt.Sprintf("%s: %d rows on the shards, want %d", tbl, got, want)
				return false, run.check()
			}
		}
		return true, nil
	})
	if errors.Is(err, core.ErrTimeout) {
		return fmt.Errorf("the shards did not hold the source's rows within 5 minutes (last: %s; log: %s)", last, run.logs())
	}
	return err
}

func fencedRows(rec *cutover.Record) int {
	if rec.Detail.Fenced == nil {
		return 0
	}
	return rec.Detail.Fenced.Rows
}

func fencedSeconds(rec *cutover.Record) float64 {
	if rec.Detail.Fenced == nil {
		return 0
	}
	return rec.Detail.Fenced.Seconds
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

func lastLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

// cleanupCutover removes what cleanupLag does, and the run's rows in the source's cut-over
// journal and guard (its guard triggers go with its database).
func cleanupCutover(src *sql.DB, shards []*sql.DB, db, prefix string, o CutoverOptions) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, stmt := range []struct{ q, arg string }{
		{"DELETE FROM `_cleave`.`guard` WHERE db = ?", db},
		{"DELETE FROM `_cleave`.`cutover` WHERE topic_prefix = ?", prefix},
	} {
		if _, err := src.ExecContext(ctx, stmt.q, stmt.arg); err != nil && !isMissingTable(err) {
			o.Logf("cleanup of the cut-over run: %v", err)
		}
	}
	cleanupLag(src, shards, db, prefix, LagOptions{Services: o.Services, Logf: o.Logf})
}
