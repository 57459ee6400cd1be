package cutover

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/event"
	"github.com/cleave-dev/cleave/kafkax"
	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/reconcile"
)

// Options tune one cut-over beyond the configuration's cutover section.
type Options struct {
	// DryRun runs every check of the gate and one verification round, and changes
	// nothing: no journal row, no trigger, no fence.
	DryRun bool
	// MaxRounds bounds the verification rounds under live writes (default 10).
	MaxRounds int
	// AfterState, when set, is called after each state is journaled (a test seam for crash
	// tests); an error it returns stops the run as a failure at that point would.
	AfterState func(State) error
}

// Cutover runs, resolves and reports the cut-over of one deployment.
type Cutover struct {
	cfg    *config.Config
	opts   Options
	log    *zap.Logger
	source *sql.DB
	shards []*sql.DB
	check  *reconcile.Checker
	hook   *hook
	now    func() time.Time

	tables    []string          // moved tables, db.table
	topics    map[string]string // a moved table's topic
	topicList []string          // the moved tables' topics, in table order

	// verifyTopics are the topics whose keys verify reads, by table: the table's topic for
	// a cut-over, its reverse topics (one per shard) for a rollback.
	verifyTopics map[string][]string
	rollingBack  bool
	flavor       mysqlx.Flavor   // the source's, learnt by the gate
	shardFl      []mysqlx.Flavor // the shards', learnt by the gate
}

// New returns the cut-over of the configuration; it connects on first use.
func New(cfg *config.Config, log *zap.Logger, opts Options) (*Cutover, error) {
	if log == nil {
		log = zap.NewNop()
	}
	if opts.MaxRounds <= 0 {
		opts.MaxRounds = 10
	}
	c := &Cutover{cfg: cfg, opts: opts, log: log, now: time.Now, topics: map[string]string{}, verifyTopics: map[string][]string{},
		hook: &hook{url: cfg.Cutover.HookURL, command: cfg.Cutover.HookCommand, client: &http.Client{Timeout: 30 * time.Second}}}
	for i := range cfg.Tables {
		t := &cfg.Tables[i]
		c.tables = append(c.tables, t.Name)
		c.topics[t.Name] = kafkax.TableTopic(cfg.Kafka.TopicPrefix, t.DB(), t.TableName())
		c.topicList = append(c.topicList, c.topics[t.Name])
		c.verifyTopics[t.Name] = []string{c.topics[t.Name]}
	}
	return c, nil
}

// Close closes the connections.
func (c *Cutover) Close() error {
	var errs []error
	if c.check != nil {
		errs = append(errs, c.check.Close())
	}
	for _, db := range append([]*sql.DB{c.source}, c.shards...) {
		if db != nil {
			errs = append(errs, db.Close())
		}
	}
	return errors.Join(errs...)
}

func (c *Cutover) connect(ctx context.Context) error {
	if c.source != nil {
		return nil
	}
	src, err := mysqlx.Open(ctx, "source", c.cfg.Source.DSN)
	if err != nil {
		return err
	}
	c.source = src
	return nil
}

// connectAll also opens the shards and the checker, which only a run needs.
func (c *Cutover) connectAll(ctx context.Context) error {
	if err := c.connect(ctx); err != nil {
		return err
	}
	if c.check != nil {
		return nil
	}
	if err := c.openShards(ctx); err != nil {
		return err
	}
	chk, err := reconcile.New(c.cfg, reconcile.WithLogger(c.log.Named("reconcile")),
		reconcile.WithOptions(reconcile.Options{Tables: c.tables}), reconcile.WithConnections(c.source, c.shards))
	if err != nil {
		return err
	}
	c.check = chk
	return nil
}

// openShards opens the shards, which a run, an abort of a rollback and the end of a switch
// need.
func (c *Cutover) openShards(ctx context.Context) error {
	if c.shards != nil {
		return nil
	}
	var shards []*sql.DB
	for _, s := range c.cfg.Shards {
		db, err := mysqlx.Open(ctx, "shard "+s.Name, s.DSN)
		if err != nil {
			for _, o := range shards {
				o.Close()
			}
			return err
		}
		shards = append(shards, db)
	}
	c.shards = shards
	return nil
}

// control opens the control session and takes the prefix's lock on it.
func (c *Cutover) control(ctx context.Context) (*sql.Conn, error) {
	if err := c.connect(ctx); err != nil {
		return nil, err
	}
	conn, err := c.source.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("open the cut-over's control session on the source: %w", err)
	}
	if err := lock(ctx, conn, c.cfg.Kafka.TopicPrefix); err != nil {
		endSession(conn)
		return nil, err
	}
	return conn, nil
}

// endSession ends the control session on the server instead of returning it to the pool:
// its named lock, table locks and session settings must not outlive the cut-over in a
// pooled connection.
func endSession(conn *sql.Conn) {
	_ = conn.Raw(func(any) error { return driver.ErrBadConn })
	_ = conn.Close()
}

// Status returns the newest attempts of the deployment's cut-over, newest first, and
// whether one is running now (its lock is held).
func (c *Cutover) Status(ctx context.Context, n int) ([]*Record, bool, error) {
	if err := c.connect(ctx); err != nil {
		return nil, false, err
	}
	recs, err := history(ctx, c.source, c.cfg.Kafka.TopicPrefix, n)
	if err != nil {
		return nil, false, err
	}
	_, running, err := lockHolder(ctx, c.source, c.cfg.Kafka.TopicPrefix)
	return recs, running, err
}

// Resolve finishes what a cut-over that stopped (killed, lost its session) left: before the
// point of no return it is aborted, after it the hook is delivered. It returns the record
// resolved, nil when there was nothing to resolve. A running cut-over is left alone
// (errLockHeld).
func (c *Cutover) Resolve(ctx context.Context) (*Record, error) {
	ctl, err := c.control(ctx)
	if err != nil {
		return nil, err
	}
	defer endSession(ctl)
	return c.resolve(ctx, ctl)
}

func (c *Cutover) resolve(ctx context.Context, ctl *sql.Conn) (*Record, error) {
	rec, err := latest(ctx, ctl, c.cfg.Kafka.TopicPrefix)
	if err != nil || rec == nil || rec.State.Final() {
		return nil, err
	}
	if rec.State.Switched() {
		c.log.Warn("resuming a switch whose hook was not acknowledged", zap.String("kind", rec.Kind()), zap.Uint64("cutover", rec.ID))
		return rec, c.finish(ctx, ctl, rec)
	}
	c.log.Warn("aborting an attempt that stopped before its point of no return", zap.String("kind", rec.Kind()), zap.Uint64("cutover", rec.ID), zap.String("state", string(rec.State)))
	if rec.IsRollback() {
		return rec, c.abortWith(ctx, ctl, rec, fmt.Sprintf("the rollback process stopped in state %s (killed or lost its session); its fences ended with their sessions, so the shards went on taking writes; nothing switched back", rec.State))
	}
	return rec, c.abortWith(ctx, ctl, rec, fmt.Sprintf("the cut-over process stopped in state %s (killed or lost its session); its fence ended with its session, so the source went on taking writes; nothing switched", rec.State))
}

// Abort stops the deployment's cut-over before its point of no return: a running one is
// stopped by ending its control session (which ends its fence), a stopped one is resolved.
// Past the point of no return it refuses.
func (c *Cutover) Abort(ctx context.Context) (*Record, error) {
	if err := c.connect(ctx); err != nil {
		return nil, err
	}
	rec, err := latest(ctx, c.source, c.cfg.Kafka.TopicPrefix)
	if err != nil {
		return nil, err
	}
	if rec == nil || rec.State.Final() && !rec.State.Switched() {
		return rec, errors.New("no cut-over to abort")
	}
	if rec.State.Switched() && rec.IsRollback() {
		return rec, fmt.Errorf("rollback %d is past its point of no return (state %s): the moved tables live on the source again; to move them to the shards again, run `cleave cutover`", rec.ID, rec.State)
	}
	if rec.State.Switched() {
		return rec, fmt.Errorf("cut-over %d is past its point of no return (state %s): the moved tables live on the shards; to go back, use `cleave rollback`", rec.ID, rec.State)
	}
	holder, running, err := lockHolder(ctx, c.source, c.cfg.Kafka.TopicPrefix)
	if err != nil {
		return nil, err
	}
	if running {
		if _, err := c.source.ExecContext(ctx, fmt.Sprintf("KILL CONNECTION %d", holder)); err != nil && mysqlx.Number(err) != 1094 {
			return nil, fmt.Errorf("end the running cut-over's session %d on the source: %w (needs CONNECTION_ADMIN or SUPER, or the same user)", holder, err)
		}
	}
	// The killed session's lock goes when the server has ended it.
	deadline := c.now().Add(30 * time.Second)
	for {
		ctl, err := c.control(ctx)
		if err == nil {
			defer endSession(ctl)
			if _, err := c.resolve(ctx, ctl); err != nil {
				return nil, err
			}
			return latest(ctx, ctl, c.cfg.Kafka.TopicPrefix)
		}
		if !errors.Is(err, errLockHeld) || c.now().After(deadline) {
			return nil, err
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return nil, err
		}
	}
}

// Run performs the cut-over: gate, verification rounds, fence, drain, fenced verification,
// switch, hook. It returns the journaled record; an error with a record whose state is
// aborted means the gate or a step failed and nothing switched.
func (c *Cutover) Run(ctx context.Context) (*Record, error) {
	return c.attempt(ctx, func(prev *Record) (Detail, error) {
		if prev != nil && !prev.IsRollback() {
			return Detail{}, fmt.Errorf("already switched: cut-over %d moved the tables to the shards at %s", prev.ID, prev.UpdatedAt.Format(time.RFC3339))
		}
		return Detail{}, nil
	}, c.run)
}

// attempt is what a cut-over and a rollback share: it opens the connections and the
// control session (the prefix's lock), resolves an attempt that stopped, lets check refuse
// (or fill in the kind of) the new attempt given the newest one past its point of no
// return, journals it in state gate, and runs body. A body that fails before its point of
// no return is aborted, on a fresh context when ctx was cancelled (SIGTERM), so that no
// fence or trigger outlives the process.
func (c *Cutover) attempt(ctx context.Context, check func(prev *Record) (Detail, error), body func(context.Context, *sql.Conn, *Record) error) (*Record, error) {
	if err := c.connectAll(ctx); err != nil {
		return nil, err
	}
	ctl, err := c.control(ctx)
	if err != nil {
		return nil, err
	}
	defer endSession(ctl)
	if !c.opts.DryRun {
		if err := ensureJournal(ctx, ctl); err != nil {
			return nil, err
		}
		if r, err := c.resolve(ctx, ctl); err != nil {
			return r, err
		}
	}
	prev, err := latestSwitched(ctx, ctl, c.cfg.Kafka.TopicPrefix)
	if err != nil {
		return nil, err
	}
	d, err := check(prev)
	if err != nil {
		return prev, err
	}
	d.Tables = c.tables
	for _, s := range c.cfg.Shards {
		d.Shards = append(d.Shards, s.Name)
	}
	rec := &Record{Prefix: c.cfg.Kafka.TopicPrefix, State: StateGate, Detail: d, StartedAt: c.now()}
	if !c.opts.DryRun {
		if rec, err = begin(ctx, ctl, c.cfg.Kafka.TopicPrefix, d, c.now()); err != nil {
			return nil, err
		}
	}
	if err := c.after(StateGate); err != nil {
		return rec, err
	}
	if err := body(ctx, ctl, rec); err != nil {
		if c.opts.DryRun || rec.State.Switched() {
			return rec, err
		}
		if ctx.Err() != nil {
			actx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			ctx = actx
		}
		return c.abortAfter(ctx, ctl, rec, err)
	}
	return rec, nil
}

// step journals state s and calls the test seam.
func (c *Cutover) step(ctx context.Context, q querier, rec *Record, s State) error {
	if !c.opts.DryRun {
		if err := rec.save(ctx, q, s, c.now()); err != nil {
			return err
		}
	} else {
		rec.State = s
	}
	c.log.Info("cut-over step", zap.Uint64("cutover", rec.ID), zap.String("state", string(s)))
	return c.after(s)
}

// commitState journals state s on the fenced session (autocommit is off there).
func (c *Cutover) commitState(ctx context.Context, ctl *sql.Conn, rec *Record, s State) error {
	if err := rec.save(ctx, ctl, s, c.now()); err != nil {
		return err
	}
	if _, err := ctl.ExecContext(ctx, "COMMIT"); err != nil {
		return fmt.Errorf("fence: commit the journal's state %s: %w", s, err)
	}
	return nil
}

func (c *Cutover) after(s State) error {
	if c.opts.AfterState != nil {
		return c.opts.AfterState(s)
	}
	return nil
}

// gateError lists every failed check of the gate, each with its fix.
type gateError struct{ failed []string }

func (e *gateError) Error() string {
	return "the cut-over's gate failed:\n  - " + strings.Join(e.failed, "\n  - ")
}

func (c *Cutover) run(ctx context.Context, ctl *sql.Conn, rec *Record) error {
	// Gate: every check, each failure named with its fix.
	if err := c.gate(ctx); err != nil {
		return err
	}
	from, err := c.endOffsets(ctx)
	if err != nil {
		return err
	}
	rep, err := c.check.Run(ctx)
	if err != nil {
		return fmt.Errorf("gate: reconcile the moved tables: %w", err)
	}
	if rep.Status != reconcile.StatusConsistent {
		return &gateError{failed: []string{fmt.Sprintf("reconcile of the moved tables found status %s (%s): repair with `cleave reconcile --repair`, then run the cut-over again", rep.Status, summarize(rep))}}
	}

	// Verification rounds under live writes, until the rows changed in a round are few
	// enough to verify under the fence.
	if err := c.step(ctx, ctl, rec, StateVerify); err != nil {
		return err
	}
	// Rows the reconcile left in flight are proven by the first round.
	carry := map[string][][]byte{}
	for _, tr := range rep.Tables {
		if carry[tr.Table], err = inFlightKeys(tr); err != nil {
			return err
		}
	}
	from, carry, err = c.verifyRounds(ctx, ctl, rec, from, carry, c.endOffsets, "cut over")
	if err != nil || c.opts.DryRun {
		return err
	}

	// Fence: the guard triggers first (inert until the switch), then the lock.
	if err := c.step(ctx, ctl, rec, StateFence); err != nil {
		return err
	}
	pause := c.cfg.Cutover.MaxWritePause
	secs := int(math.Ceil(pause.Seconds()))
	if _, err := ctl.ExecContext(ctx, fmt.Sprintf("SET SESSION lock_wait_timeout = %d", secs)); err != nil {
		return fmt.Errorf("fence: set lock_wait_timeout on the source: %w", err)
	}
	if err := installGuard(ctx, ctl, c.tables, "the source", false); err != nil {
		return err
	}
	fenceStart := c.now()
	for _, stmt := range []string{
		fmt.Sprintf("SET SESSION wait_timeout = %d", secs),
		"SET SESSION autocommit = 0",
	} {
		if _, err := ctl.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("fence: %s on the source: %w", stmt, err)
		}
	}
	var locks []string
	for _, t := range c.tables {
		db, tbl, _ := strings.Cut(t, ".")
		locks = append(locks, mysqlx.QuoteTable(db, tbl)+" READ")
	}
	locks = append(locks, journalTable()+" WRITE", guardTable()+" WRITE")
	if _, err := ctl.ExecContext(ctx, "LOCK TABLES "+strings.Join(locks, ", ")); err != nil {
		if mysqlx.Number(err) == 1205 {
			return fmt.Errorf("fence: could not lock the moved tables within %ds: a long transaction holds one of them (find it in information_schema.innodb_trx); writes went on", secs)
		}
		return fmt.Errorf("fence: lock the moved tables on the source: %w (needs the LOCK TABLES privilege)", err)
	}
	defer c.unfence(ctl)
	// The marker: this journal write, committed under the fence, after every write to the
	// moved tables.
	if err := c.commitState(ctx, ctl, rec, StateDrain); err != nil {
		return err
	}
	file, pos, _, err := mysqlx.BinlogStatus(ctx, ctl, c.flavor.BinlogStatusStatement())
	if err != nil {
		return fmt.Errorf("fence: read the source's binlog position after the marker: %w", err)
	}
	v, err := event.NewVersion(file, pos, 0)
	if err != nil {
		return fmt.Errorf("fence: %w", err)
	}
	rec.Detail.Marker = &Position{File: file, Pos: pos, Version: uint64(v)}
	if err := c.after(StateDrain); err != nil {
		return err
	}

	// Drain: every shard's sink past the marker on every partition.
	ok, behind, err := c.check.WaitApplied(ctx, c.tables, v, time.Until(fenceStart.Add(pause)))
	if err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	if !ok {
		return fmt.Errorf("drain: the sinks did not apply the marker within cutover.max_write_pause (%s): %s; writes went on, nothing switched", pause, behind)
	}
	if err := c.commitState(ctx, ctl, rec, StateFencedVerify); err != nil {
		return err
	}
	if err := c.after(StateFencedVerify); err != nil {
		return err
	}

	if err := c.fencedVerify(ctx, rec, from, carry, c.endOffsets, fenceStart, "writes went on, nothing switched"); err != nil {
		return err
	}

	// Where reverse replication starts: each shard's binlog end, now that the sinks have
	// drained and before the application is told to write to the shards.
	if rec.Detail.Reverse, err = c.reverseStarts(ctx); err != nil {
		return err
	}

	// Switch: the guard rows and the journal's "switched" in one transaction, on the
	// fencing session. Its commit is the point of no return.
	for _, t := range c.tables {
		db, tbl, _ := strings.Cut(t, ".")
		if _, err := ctl.ExecContext(ctx, "REPLACE INTO "+guardTable()+" (db, tbl, cutover_id) VALUES (?, ?, ?)", db, tbl, rec.ID); err != nil {
			return fmt.Errorf("switch: guard %s: %w", t, err)
		}
	}
	rec.Detail.WritePauseMs = c.now().Sub(fenceStart).Milliseconds()
	if err := rec.save(ctx, ctl, StateSwitched, c.now()); err != nil {
		return err
	}
	if _, err := ctl.ExecContext(ctx, "COMMIT"); err != nil {
		return c.ambiguous(ctx, rec, err)
	}
	c.unfence(ctl)
	rec.Detail.WritePauseMs = c.now().Sub(fenceStart).Milliseconds()
	if err := rec.save(ctx, ctl, StateSwitched, c.now()); err != nil {
		c.log.Warn("record the write pause", zap.Error(err))
	}
	c.log.Info("cut-over switched", zap.Uint64("cutover", rec.ID), zap.Int64("write_pause_ms", rec.Detail.WritePauseMs))
	if err := c.after(StateSwitched); err != nil {
		return err
	}
	return c.finish(ctx, ctl, rec)
}

// reverseStarts reads every shard's binlog end, where reverse replication starts.
func (c *Cutover) reverseStarts(ctx context.Context) (map[string]*ReverseStart, error) {
	out := make(map[string]*ReverseStart, len(c.shards))
	for i, db := range c.shards {
		fl := c.shardFl[i]
		file, pos, gtid, err := fl.BinlogPosition(ctx, db)
		if err != nil {
			return nil, fmt.Errorf("switch: read shard %s's binlog position, where reverse replication starts: %w", c.cfg.Shards[i].Name, err)
		}
		out[c.cfg.Shards[i].Name] = &ReverseStart{File: file, Pos: pos, GTID: gtid, Flavor: fl.Name()}
	}
	return out, nil
}

// verifyRounds runs verification rounds under live writes, each over the rows whose
// changes arrived since the previous one (from the offsets from at first, plus the rows
// carry holds), until a round checked at most cutover.fenced_verify_keys rows; end reads
// the topics' end offsets, and what names the attempt in the error that it does not
// converge. A dry run stops after one round. It returns where the last round ended and
// the rows it carried.
func (c *Cutover) verifyRounds(ctx context.Context, ctl *sql.Conn, rec *Record, from map[string][]int64, carry map[string][][]byte,
	end func(context.Context) (map[string][]int64, error), what string) (map[string][]int64, map[string][][]byte, error) {
	for round := 1; ; round++ {
		to, err := end(ctx)
		if err != nil {
			return nil, nil, err
		}
		start := c.now()
		n, left, err := c.verify(ctx, from, to, carry, false)
		if err != nil {
			return nil, nil, err
		}
		rec.Detail.Rounds = append(rec.Detail.Rounds, Round{Rows: n, Seconds: c.now().Sub(start).Seconds()})
		from, carry = to, left
		if c.opts.DryRun {
			return from, carry, c.step(ctx, ctl, rec, StateVerify)
		}
		if err := rec.save(ctx, ctl, StateVerify, c.now()); err != nil {
			return nil, nil, err
		}
		if n <= c.cfg.Cutover.FencedVerifyKeys {
			return from, carry, nil
		}
		if round >= c.opts.MaxRounds {
			return nil, nil, fmt.Errorf("verification does not converge: %d rows changed during round %d of %d (cutover.fenced_verify_keys is %d): %s at a quieter time, or raise cutover.fenced_verify_keys with cutover.max_write_pause",
				n, round, c.opts.MaxRounds, c.cfg.Cutover.FencedVerifyKeys, what)
		}
	}
}

// fencedVerify verifies, under the fence, the rows changed since the last round (from,
// plus carry), and checks that the fence, up since fenceStart, is still within
// cutover.max_write_pause; outcome says what happened when it fails.
func (c *Cutover) fencedVerify(ctx context.Context, rec *Record, from map[string][]int64, carry map[string][][]byte,
	end func(context.Context) (map[string][]int64, error), fenceStart time.Time, outcome string) error {
	to, err := end(ctx)
	if err != nil {
		return err
	}
	start := c.now()
	n, _, err := c.verify(ctx, from, to, carry, true)
	if err != nil {
		return err
	}
	rec.Detail.Fenced = &Round{Rows: n, Seconds: c.now().Sub(start).Seconds()}
	pause := c.cfg.Cutover.MaxWritePause
	if el := c.now().Sub(fenceStart); el > pause {
		return fmt.Errorf("fence: drain and verification took %s, over cutover.max_write_pause (%s); %s", el.Round(time.Millisecond), pause, outcome)
	}
	return nil
}

// endOffsets reads the end offsets of the moved tables' topics.
func (c *Cutover) endOffsets(ctx context.Context) (map[string][]int64, error) {
	offs, err := kafkax.EndOffsets(ctx, c.cfg.Kafka.Brokers, c.topicList)
	if err != nil {
		return nil, fmt.Errorf("read the table topics' end offsets: %w", err)
	}
	return offs, nil
}

// unfence releases the fence (idempotent) and gives the session its usual settings back.
func (c *Cutover) unfence(ctl *sql.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, stmt := range []string{"ROLLBACK", "UNLOCK TABLES", "SET SESSION autocommit = 1", "SET SESSION wait_timeout = @@GLOBAL.wait_timeout"} {
		_, _ = ctl.ExecContext(ctx, stmt)
	}
}

// ambiguous settles a switch whose commit gave an error: it may have committed. The
// journal, read on a new session, says which.
func (c *Cutover) ambiguous(ctx context.Context, rec *Record, cause error) error {
	ctl, err := c.control(ctx)
	if err != nil {
		return fmt.Errorf("switch: the commit failed (%v) and its outcome cannot be read yet (%w): run `cleave cutover --status`", cause, err)
	}
	defer endSession(ctl)
	now, err := latest(ctx, ctl, rec.Prefix)
	if err != nil {
		return err
	}
	if now != nil && now.ID == rec.ID && now.State.Switched() {
		*rec = *now
		return c.finish(ctx, ctl, rec)
	}
	if now != nil && now.ID == rec.ID {
		rec.State = now.State
	}
	return c.abortWith(ctx, ctl, rec, fmt.Sprintf("switch: the commit failed: %v; nothing switched", cause))
}

// finish completes a switch past its point of no return and journals it done: it lifts
// the guard the switch made stale (after a cut-over, a rollback's on the shards, which
// must be gone before the application is told to write there; after a rollback, the
// source's triggers, whose guard rows are gone already) and delivers the hook.
func (c *Cutover) finish(ctx context.Context, ctl *sql.Conn, rec *Record) error {
	if rec.Detail.Hook == nil {
		rec.Detail.Hook = &HookOutcome{}
	}
	if rec.IsRollback() {
		if _, err := ctl.ExecContext(ctx, "SET SESSION lock_wait_timeout = 60"); err == nil {
			if err := removeGuard(ctx, ctl, rec.Detail.Tables, "the source"); err != nil {
				c.log.Warn("drop the source's guard triggers, inert since the rollback (drop them by hand: _cleave_guard_*)", zap.Error(err))
			}
		}
	} else if err := c.removeShardGuards(ctx, rec.Detail.Tables); err != nil {
		rec.Detail.Reason = "switched; the shards still carry an earlier rollback's guard: " + err.Error()
		if serr := rec.save(context.WithoutCancel(ctx), ctl, StateSwitched, c.now()); serr != nil {
			c.log.Warn("record the guard's failure", zap.Error(serr))
		}
		return fmt.Errorf("cut-over %d switched, but an earlier rollback's guard on the shards could not be removed: %w (run `cleave cutover` again to retry)", rec.ID, err)
	}
	event := "switched"
	if rec.IsRollback() {
		event = "rolled_back"
	}
	n := &SwitchNotice{Event: event, CutoverID: rec.ID, TopicPrefix: rec.Prefix, Tables: rec.Detail.Tables,
		Shards: rec.Detail.Shards, SourcePosition: rec.Detail.Marker, ShardPositions: rec.Detail.ShardMarkers, SwitchedAt: switchedAt(rec)}
	err := c.hook.deliver(ctx, n, c.cfg.Cutover.HookTimeout, &rec.Detail.Hook.Attempts)
	if err != nil {
		rec.Detail.Hook.Error = err.Error()
		rec.Detail.Reason = "switched; the application's hook has not acknowledged: " + err.Error()
		if serr := rec.save(context.WithoutCancel(ctx), ctl, StateSwitched, c.now()); serr != nil {
			c.log.Warn("record the hook's failure", zap.Error(serr))
		}
		if rec.IsRollback() {
			return fmt.Errorf("rollback %d switched back (the moved tables refuse writes on the shards), but the hook failed: %w", rec.ID, err)
		}
		return fmt.Errorf("cut-over %d switched (the moved tables refuse writes on the source), but the hook failed: %w", rec.ID, err)
	}
	rec.Detail.Hook.Acked, rec.Detail.Hook.AckedAt, rec.Detail.Hook.Error, rec.Detail.Reason = true, c.now().UTC(), "", ""
	if err := rec.save(ctx, ctl, StateDone, c.now()); err != nil {
		return err
	}
	return c.after(StateDone)
}

func switchedAt(rec *Record) time.Time {
	for _, s := range rec.Detail.Steps {
		if s.State == StateSwitched {
			return s.At.UTC()
		}
	}
	return rec.UpdatedAt
}

// abortAfter aborts rec after the run failed with cause.
func (c *Cutover) abortAfter(ctx context.Context, ctl *sql.Conn, rec *Record, cause error) (*Record, error) {
	c.unfence(ctl)
	if err := ctl.PingContext(ctx); err != nil {
		// The session is gone (its fence and lock with it): resolve on a new one.
		fresh, cerr := c.control(ctx)
		if cerr != nil {
			return rec, fmt.Errorf("%w; aborting it needs the cut-over lock: %v (run `cleave cutover --status`)", cause, cerr)
		}
		defer endSession(fresh)
		ctl = fresh
		now, err := latest(ctx, ctl, rec.Prefix)
		if err != nil {
			return rec, errors.Join(cause, err)
		}
		if now != nil && now.State.Switched() {
			*rec = *now
			return rec, c.finish(ctx, ctl, rec)
		}
	}
	if err := c.abortWith(ctx, ctl, rec, cause.Error()); err != nil {
		return rec, errors.Join(cause, err)
	}
	return rec, cause
}

// abortWith removes the attempt's guard (a cut-over's on the source, a rollback's on the
// shards) and journals rec aborted with reason.
func (c *Cutover) abortWith(ctx context.Context, ctl *sql.Conn, rec *Record, reason string) error {
	if rec.IsRollback() {
		if err := c.removeShardGuards(ctx, rec.Detail.Tables); err != nil {
			return fmt.Errorf("abort: %w", err)
		}
	} else {
		// Dropping the triggers waits for open transactions on the tables: bounded.
		if _, err := ctl.ExecContext(ctx, "SET SESSION lock_wait_timeout = 60"); err != nil {
			return fmt.Errorf("abort: set lock_wait_timeout on the source: %w", err)
		}
		if err := removeGuard(ctx, ctl, rec.Detail.Tables, "the source"); err != nil {
			return err
		}
	}
	rec.Detail.Reason = reason
	if err := rec.save(ctx, ctl, StateAborted, c.now()); err != nil {
		return err
	}
	c.log.Warn("aborted", zap.String("kind", rec.Kind()), zap.Uint64("cutover", rec.ID), zap.String("reason", reason))
	return nil
}

func summarize(rep *reconcile.Report) string {
	var parts []string
	for _, t := range rep.Tables {
		switch {
		case t.Error != "":
			parts = append(parts, t.Table+": "+t.Error)
		case len(t.Drift) > 0:
			parts = append(parts, fmt.Sprintf("%s: %d drifted rows", t.Table, len(t.Drift)))
		case len(t.InFlight) > 0:
			parts = append(parts, fmt.Sprintf("%s: %d rows in flight", t.Table, len(t.InFlight)))
		}
	}
	return strings.Join(parts, "; ")
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// IsGate reports whether err is the gate's: a check that failed before anything changed.
func IsGate(err error) bool {
	var g *gateError
	return errors.As(err, &g)
}
