package finalize

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/cutover"
	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/reconcile"
)

// DefaultSinkIdle is how long the deployment's offsets rows on a shard must have been left
// alone before finalize believes that no sink runs.
const DefaultSinkIdle = 30 * time.Second

// Options tune one finalize run.
type Options struct {
	// Apply makes the changes. Without it the run is a dry run: every check runs and every
	// statement is reported, nothing changes.
	Apply bool
	// DeleteTopics also deletes the deployment's Kafka topics: the table topics, the
	// shards' dead-letter topics, the backfill's topic and capture's checkpoint topic.
	DeleteTopics bool
	// SinkIdle is how long the deployment's offsets rows must not have changed (default
	// DefaultSinkIdle): a running sink updates them at least every heartbeat.
	SinkIdle time.Duration
	// Reconcile tunes the check finalize runs before it changes anything; its Tables are
	// ignored (every configured table is checked) and so are its repair options.
	Reconcile reconcile.Options
}

// Finalizer finalizes one deployment.
type Finalizer struct {
	cfg    *config.Config
	opts   Options
	log    *zap.Logger
	source *sql.DB
	shards []*sql.DB
	// rec is the latest cut-over, read by the gate.
	rec *cutover.Record
}

// New returns the finalizer of the configuration; it connects on Run.
func New(cfg *config.Config, log *zap.Logger, opts Options) *Finalizer {
	if log == nil {
		log = zap.NewNop()
	}
	if opts.SinkIdle <= 0 {
		opts.SinkIdle = DefaultSinkIdle
	}
	return &Finalizer{cfg: cfg, opts: opts, log: log}
}

// Close closes the connections.
func (f *Finalizer) Close() error {
	var errs []error
	for _, db := range append([]*sql.DB{f.source}, f.shards...) {
		if db != nil {
			errs = append(errs, db.Close())
		}
	}
	f.source, f.shards = nil, nil
	return errors.Join(errs...)
}

func (f *Finalizer) connect(ctx context.Context) error {
	if f.source != nil {
		return nil
	}
	src, err := mysqlx.Open(ctx, "source", f.cfg.Source.DSN)
	if err != nil {
		return err
	}
	f.source = src
	for _, s := range f.cfg.Shards {
		db, err := mysqlx.Open(ctx, "shard "+s.Name, s.DSN)
		if err != nil {
			return err
		}
		f.shards = append(f.shards, db)
	}
	return nil
}

// Report is what a run checked, planned and did.
type Report struct {
	// Applied is false for a dry run.
	Applied bool `json:"applied"`
	// Checks are the gate's checks in the order they ran.
	Checks []Check `json:"checks"`
	// Actions are the planned changes, each Done once applied.
	Actions []*Action `json:"actions"`
	// Notes say what finalize leaves on purpose and what the operator may do about it.
	Notes []string `json:"notes,omitempty"`
	// NothingToDo is true when an earlier run removed everything already.
	NothingToDo bool `json:"nothing_to_do,omitempty"`
}

// Check is one condition of the gate.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
	// Fix says what to do when the check failed.
	Fix string `json:"fix,omitempty"`
}

// Action is one change: an SQL statement on a shard, or a Kafka topic deletion.
type Action struct {
	// Where is "shard <name>" or "kafka".
	Where string `json:"where"`
	// Statement is the SQL, or "delete topic <name>".
	Statement string `json:"statement"`
	Done      bool   `json:"done"`
	// Note says how it went when that is worth knowing (the algorithm fell back, say).
	Note string `json:"note,omitempty"`

	run func(ctx context.Context, a *Action) error
}

// RefusedError lists the failed checks of the gate, each with its fix.
type RefusedError struct{ Failed []Check }

func (e *RefusedError) Error() string {
	lines := make([]string, len(e.Failed))
	for i, c := range e.Failed {
		lines[i] = c.Name + ": " + c.Detail
		if c.Fix != "" {
			lines[i] += ": " + c.Fix
		}
	}
	return "finalize refused, nothing changed:\n  - " + strings.Join(lines, "\n  - ")
}

// IsRefused reports whether err is the gate's refusal.
func IsRefused(err error) bool {
	var r *RefusedError
	return errors.As(err, &r)
}

func (r *Report) check(c Check) { r.Checks = append(r.Checks, c) }

func (r *Report) refused() error {
	var failed []Check
	for _, c := range r.Checks {
		if !c.OK {
			failed = append(failed, c)
		}
	}
	if len(failed) == 0 {
		return nil
	}
	return &RefusedError{Failed: failed}
}

// Run checks, plans and (with Options.Apply) removes the bookkeeping. It returns the
// report; a *RefusedError (IsRefused) when the gate failed and nothing changed.
func (f *Finalizer) Run(ctx context.Context) (*Report, error) {
	rep := &Report{Applied: f.opts.Apply}
	if err := f.connect(ctx); err != nil {
		return rep, err
	}
	if err := f.checkCutover(ctx, rep); err != nil {
		return rep, err
	}
	if err := rep.refused(); err != nil {
		return rep, err
	}
	if err := f.plan(ctx, rep); err != nil {
		return rep, err
	}
	if len(rep.Actions) == 0 {
		rep.NothingToDo = true
		return rep, nil
	}
	if err := f.checkSinks(ctx, rep); err != nil {
		return rep, err
	}
	if rep.refused() == nil {
		if err := f.checkReconcile(ctx, rep); err != nil {
			return rep, err
		}
	} else {
		rep.check(Check{Name: "reconcile", OK: true, Detail: "not run: the checks above failed"})
	}
	if err := rep.refused(); err != nil {
		return rep, err
	}
	if !f.opts.Apply {
		return rep, nil
	}
	for _, a := range rep.Actions {
		if err := a.run(ctx, a); err != nil {
			return rep, fmt.Errorf("%s: %s: %w (finalize is safe to run again)", a.Where, a.Statement, err)
		}
		a.Done = true
		f.log.Info("finalize step done", zap.String("where", a.Where), zap.String("statement", a.Statement), zap.String("note", a.Note))
	}
	return rep, nil
}
