package reconcile

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/route"
)

// Options tune one checker beyond the configuration's reconcile section.
type Options struct {
	// Tables restricts the check to these db.table names; empty checks every configured
	// table.
	Tables []string
	// ChunkSize fixes the rows per chunk; 0 adapts the size to reconcile.chunk_target.
	ChunkSize int
	// StatePath is the file where progress is saved after every chunk, so that a killed
	// run can be resumed; "" keeps no state.
	StatePath string
	// Resume continues from StatePath when it holds an unfinished run of the same tables.
	Resume bool
	// MaxThreadsRunning pauses the check while the source's Threads_running is above it;
	// 0 means the default, 50; a negative value never pauses.
	MaxThreadsRunning int
	// RepairSQL generates the statements that would fix the drift (Report.Repair).
	RepairSQL bool
	// Repair applies them, then re-checks the repaired rows.
	Repair bool
	// MaxDriftRows bounds the drifted rows listed per table (default 10000); beyond it the
	// table report is marked truncated.
	MaxDriftRows int
	// RecheckWait is how long the first re-check round waits for the sinks to apply past the
	// source position; it doubles every round (default 2s).
	RecheckWait time.Duration
	// AlertStatePath remembers which drift alerts fire between one-shot runs, so that a
	// clean run can resolve them; "" keeps that only in memory.
	AlertStatePath string
}

// DefaultMaxThreadsRunning is the source load above which a check pauses.
const DefaultMaxThreadsRunning = 50

// Progress reports how far a run has come; RowsTotal is an estimate from table statistics.
type Progress struct {
	Table     string
	RowsDone  int64
	RowsTotal int64
}

// Option configures a Checker.
type Option func(*Checker)

// WithOptions sets the run options.
func WithOptions(o Options) Option { return func(c *Checker) { c.opts = o } }

// WithLogger sets the logger (default: none).
func WithLogger(l *zap.Logger) Option { return func(c *Checker) { c.log = l } }

// WithRegisterer registers the checker's metrics (prefix cleave_reconcile_) there.
func WithRegisterer(r prometheus.Registerer) Option { return func(c *Checker) { c.reg = r } }

// WithProgress calls f after every chunk.
func WithProgress(f func(Progress)) Option { return func(c *Checker) { c.progress = f } }

// WithHTTPClient sets the client of the alert webhook.
func WithHTTPClient(h *http.Client) Option { return func(c *Checker) { c.http = h } }

// WithConnections makes the checker use these pools (the shards in configuration order)
// instead of opening its own; they must have mysqlx.Open's session settings.
func WithConnections(source *sql.DB, shards []*sql.DB) Option {
	return func(c *Checker) { c.source, c.shards = source, shards }
}

// Checker compares the source with the shards. One Checker may Run many times (a schedule);
// runs must not overlap.
type Checker struct {
	cfg      *config.Config
	opts     Options
	log      *zap.Logger
	reg      prometheus.Registerer
	m        *metrics
	progress func(Progress)
	http     *http.Client

	source     *sql.DB
	shards     []*sql.DB
	ownPools   bool
	shardNames []string
	router     *route.Router
	srcInfo    serverInfo
	shardInfo  []serverInfo
	limiter    *rate.Limiter
	alerts     *alertState
	now        func() time.Time
	// keyed is what CheckKeys loaded.
	keyed keyed
}

// New returns a checker for the configuration. It connects to nothing until Run.
func New(cfg *config.Config, opts ...Option) (*Checker, error) {
	if cfg == nil {
		return nil, errors.New("reconcile: no configuration")
	}
	c := &Checker{cfg: cfg, log: zap.NewNop(), http: &http.Client{Timeout: 10 * time.Second}, now: time.Now}
	for _, o := range opts {
		o(c)
	}
	if c.opts.MaxDriftRows <= 0 {
		c.opts.MaxDriftRows = 10000
	}
	if c.opts.MaxThreadsRunning == 0 {
		c.opts.MaxThreadsRunning = DefaultMaxThreadsRunning
	}
	if c.opts.RecheckWait <= 0 {
		c.opts.RecheckWait = 2 * time.Second
	}
	for _, name := range c.opts.Tables {
		if cfg.Table(name) == nil {
			return nil, fmt.Errorf("reconcile: table %q is not configured (tables[].name)", name)
		}
	}
	for _, s := range cfg.Shards {
		c.shardNames = append(c.shardNames, s.Name)
	}
	m, err := newMetrics(c.reg)
	if err != nil {
		return nil, err
	}
	c.m = m
	if rps := cfg.Reconcile.MaxRowsPerSecond; rps > 0 {
		c.limiter = rate.NewLimiter(rate.Limit(rps), rps)
	}
	if c.alerts, err = newAlertState(c.opts.AlertStatePath); err != nil {
		return nil, fmt.Errorf("reconcile: %w", err)
	}
	return c, nil
}

// Close closes the pools the checker opened itself.
func (c *Checker) Close() error {
	if !c.ownPools {
		return nil
	}
	var errs []error
	if c.source != nil {
		errs = append(errs, c.source.Close())
	}
	for _, s := range c.shards {
		if s != nil {
			errs = append(errs, s.Close())
		}
	}
	c.source, c.shards, c.ownPools = nil, nil, false
	return errors.Join(errs...)
}

// connect opens the pools unless the checker has them, and checks that there is one per
// configured shard.
func (c *Checker) connect(ctx context.Context) error {
	if c.source != nil {
		if len(c.shards) != len(c.cfg.Shards) {
			return fmt.Errorf("%d shard connections for %d configured shards", len(c.shards), len(c.cfg.Shards))
		}
		return nil
	}
	src, err := mysqlx.Open(ctx, "source", c.cfg.Source.DSN)
	if err != nil {
		return err
	}
	c.source, c.ownPools = src, true
	for _, s := range c.cfg.Shards {
		db, err := mysqlx.Open(ctx, "shard "+s.Name, s.DSN)
		if err != nil {
			c.Close()
			return err
		}
		c.shards = append(c.shards, db)
	}
	return nil
}

// tables returns the configured tables to check, in configuration order.
func (c *Checker) tables() []*config.Table {
	var out []*config.Table
	for i := range c.cfg.Tables {
		t := &c.cfg.Tables[i]
		if len(c.opts.Tables) == 0 || contains(c.opts.Tables, t.Name) {
			out = append(out, t)
		}
	}
	return out
}

func contains[T comparable](list []T, v T) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// Run checks every table once and returns the report. The error is non-nil only when the
// run as a whole could not be done (no connection, cancelled); a table that cannot be
// checked is reported in its TableReport and the run goes on.
func (c *Checker) Run(ctx context.Context) (*Report, error) {
	started := c.now()
	rep := &Report{SchemaVersion: SchemaVersion, StartedAt: started.UTC()}
	tables := c.tables()
	infos, loadErrs, err := c.load(ctx, tables)
	if err != nil {
		return nil, err
	}

	st, resumed, err := c.loadState(tables)
	if err != nil {
		return nil, fmt.Errorf("reconcile: %w", err)
	}
	rep.Resumed = resumed

	var total int64
	for _, ti := range infos {
		if ti != nil {
			total += c.estimateRows(ctx, ti)
		}
	}
	var doneRows int64

	for i, t := range tables {
		tr := c.newTableReport(t)
		rep.Tables = append(rep.Tables, tr)
		ts := st.table(t.Name, len(c.shardNames))
		if loadErrs[i] != nil {
			tr.Error = loadErrs[i].Error()
			c.log.Error("cannot check table", zap.String("table", t.Name), zap.Error(loadErrs[i]))
			continue
		}
		ti := infos[i]
		tableStart := c.now()
		err := c.checkTable(ctx, ti, tr, ts, st, func(rows int64) {
			if c.progress != nil {
				c.progress(Progress{Table: t.Name, RowsDone: doneRows + rows, RowsTotal: max(total, doneRows+rows)})
			}
		})
		tr.DurationSeconds = c.now().Sub(tableStart).Seconds()
		doneRows += tr.RowsChecked
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			tr.Error = err.Error()
			c.log.Error("check of table failed", zap.String("table", t.Name), zap.Error(err))
		}
		sortDrift(tr.Drift)
		noteGenerated(rep, ti, tr)
	}
	for _, tr := range rep.Tables {
		c.noteInFlight(rep, tr)
	}

	if c.opts.RepairSQL || c.opts.Repair {
		if err := c.repair(ctx, rep, infos); err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			rep.Notes = append(rep.Notes, "repair failed: "+err.Error())
		}
	}
	rep.finish(c.now().UTC())
	c.observe(rep)
	c.alert(ctx, rep)
	if c.opts.StatePath != "" {
		if err := os.Remove(c.opts.StatePath); err != nil && !os.IsNotExist(err) {
			c.log.Warn("remove state file", zap.String("path", c.opts.StatePath), zap.Error(err))
		}
	}
	return rep, nil
}

// load connects, reads what the servers are, and loads the definitions and routing of
// tables; it is what every check starts with. infos[i] is nil when tables[i] cannot be
// checked, and loadErrs[i] says why; err is set when nothing can be checked.
func (c *Checker) load(ctx context.Context, tables []*config.Table) (infos []*tableInfo, loadErrs []error, err error) {
	if err := c.connect(ctx); err != nil {
		return nil, nil, fmt.Errorf("reconcile: %w", err)
	}
	if err := c.detectServers(ctx); err != nil {
		return nil, nil, fmt.Errorf("reconcile: %w", err)
	}

	// Load every definition first: routing needs the shard key kinds of all tables.
	infos = make([]*tableInfo, len(tables))
	loadErrs = make([]error, len(tables))
	kinds := map[string]route.KeyKind{}
	for i, t := range tables {
		infos[i], loadErrs[i] = loadTable(ctx, t, c.source, c.shards, c.shardNames, c.mixed())
		if infos[i] != nil {
			kinds[t.Name] = keyKind(infos[i].shardKey)
		}
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
	}
	router, err := c.cfg.Router(kinds)
	if err != nil {
		return nil, nil, fmt.Errorf("reconcile: %w", err)
	}
	c.router = router
	for i, ti := range infos {
		if ti == nil {
			continue
		}
		if err := ti.prepareRouting(router, c.shardInfo); err != nil {
			infos[i], loadErrs[i] = nil, err
		}
	}
	return infos, loadErrs, nil
}

// newTableReport is the empty report of a table, with an entry per shard.
func (c *Checker) newTableReport(t *config.Table) *TableReport {
	tr := &TableReport{Table: t.Name, Strategy: string(t.Strategy), Drift: []DriftRow{}, InFlight: []InFlightRow{}}
	for _, name := range c.shardNames {
		tr.Shards = append(tr.Shards, &ShardReport{Shard: name, Drift: map[Kind]int{}})
	}
	return tr
}

// noteInFlight adds a report note when rows stayed in flight because sinks lagged.
func (c *Checker) noteInFlight(rep *Report, tr *TableReport) {
	if len(tr.InFlight) == 0 {
		return
	}
	rep.Notes = append(rep.Notes, fmt.Sprintf("%s: %d rows still differed after %d re-check rounds but were changing or their sinks had not caught up; they are in flight, not drift: check sink lag and run again",
		tr.Table, len(tr.InFlight), c.cfg.Reconcile.RecheckRounds))
}

// mixed reports whether the source and the shards are not all of one product.
func (c *Checker) mixed() bool {
	for _, s := range c.shardInfo {
		if s.flavor.Name() != c.srcInfo.flavor.Name() {
			return true
		}
	}
	return false
}

// noteGenerated adds a report note when changed rows differ in generated columns: the
// sinks never write those (the shard computes them), so a repair cannot fix them either.
func noteGenerated(rep *Report, ti *tableInfo, tr *TableReport) {
	generated := map[string]bool{}
	for _, c := range ti.hashed {
		if c.Generated {
			generated[c.Name] = true
		}
	}
	var cols []string
	rows := 0
	for _, d := range tr.Drift {
		hit := false
		for _, col := range d.Columns {
			if generated[col] {
				hit = true
				if !contains(cols, col) {
					cols = append(cols, col)
				}
			}
		}
		if hit {
			rows++
		}
	}
	if rows == 0 {
		return
	}
	sort.Strings(cols)
	rep.Notes = append(rep.Notes, fmt.Sprintf("%s: %d changed rows differ in generated column(s) %s, which the shard computes itself and a repair cannot write: "+
		"make the shard's definition of them match the source's (SHOW CREATE TABLE on both); a STORED expression that depends on the session "+
		"(CAST of a TIMESTAMP depends on time_zone) keeps what the writer's session gave, the application's on the source and UTC on the shards",
		tr.Table, rows, strings.Join(cols, ", ")))
}

// estimateRows is the table's row count from statistics, for the progress bar.
func (c *Checker) estimateRows(ctx context.Context, ti *tableInfo) int64 {
	var n sql.NullInt64
	_ = c.source.QueryRowContext(ctx, "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?", ti.db, ti.tbl).Scan(&n)
	return n.Int64
}

// prepareRouting computes the per-shard membership conditions of the table, and which
// shards must leave them to Go: the hash strategy's condition calls MD5().
func (ti *tableInfo) prepareRouting(router *route.Router, shards []serverInfo) error {
	spec := ti.cfg.RouteSpec(keyKind(ti.shardKey))
	rs := router.Shards()
	ti.member = make([]string, len(rs))
	ti.memberGo = make([]bool, len(rs))
	for i := range rs {
		m, err := spec.MemberSQL(keyColumn(ti.shardKey), rs, i)
		if err != nil {
			return fmt.Errorf("routing of %s: %w", ti.name, err)
		}
		ti.member[i] = m
		ti.memberGo[i] = spec.MembershipUsesMD5() && !shards[i].md5
	}
	return nil
}
