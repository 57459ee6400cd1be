package reverse

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/cleave-dev/cleave/capture"
	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/cutover"
	"github.com/cleave-dev/cleave/kafkax"
	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/shardmeta"
	"github.com/cleave-dev/cleave/sink"
)

// CaptureConfig is the configuration of the reverse capture of one shard: cfg with the
// shard as its source, read from start, under the shard's reverse prefix.
func CaptureConfig(cfg *config.Config, cutoverID uint64, shard string, start *cutover.ReverseStart) (*config.Config, error) {
	i := cfg.ShardIndex(shard)
	if i < 0 {
		return nil, fmt.Errorf("reverse: cut-over %d names shard %s, which the configuration no longer has: put it back in shards[] until the migration is finalized", cutoverID, shard)
	}
	c := *cfg
	c.Source.DSN = cfg.Shards[i].DSN
	c.Source.Flavor = start.Flavor
	c.Kafka.TopicPrefix = kafkax.ReversePrefix(cfg.Kafka.TopicPrefix, cutoverID, shard)
	return &c, nil
}

// SinkConfig is the configuration of the reverse sink of one shard's stream: cfg under the
// shard's reverse prefix, with the source as one more shard, kafkax.ReverseSink(shard) (cleave_sink_lag_seconds{shard="reverse-shard0"} is that shard's reverse lag). The
// configured shards stay, so that the tables' routing still names shards that exist; the
// reverse sink routes nothing (every row of the stream belongs to the source).
func SinkConfig(cfg *config.Config, cutoverID uint64, shard string) *config.Config {
	c := *cfg
	c.Kafka.TopicPrefix = kafkax.ReversePrefix(cfg.Kafka.TopicPrefix, cutoverID, shard)
	c.Shards = append(append([]config.Shard(nil), cfg.Shards...), config.Shard{Name: kafkax.ReverseSink(shard), DSN: cfg.Source.DSN})
	return &c
}

// Options tune the runner.
type Options struct {
	// Log receives the runner's logs and those of its captures and sinks; nil discards them.
	Log *zap.Logger
	// Registerer receives the runner's metrics; nil registers them nowhere.
	Registerer prometheus.Registerer
	// SinkMetrics are the sink metrics the reverse sinks update (the daemon's, so that
	// cleave_sink_* carry the reverse sinks too); nil gives them unregistered ones.
	SinkMetrics *sink.Metrics
	// Latest returns the newest attempt known that passed its point of no return, nil
	// before the first (the cut-over watcher's LatestSwitched): reverse replication runs
	// while it is a cut-over, not finalized.
	Latest func() *cutover.Record
	// Interval is how often Latest is asked. Default 2s.
	Interval time.Duration
}

// Runner is reverse replication's part of `cleave run`: it waits until the latest cut-over
// has switched, then runs every shard's reverse window until ctx is done.
type Runner struct {
	cfg  *config.Config
	opts Options
	log  *zap.Logger

	lag     *prometheus.GaugeVec
	current prometheus.Gauge

	mu     sync.Mutex
	status Status
	caps   map[string]*capture.Capture
}

// Status is where reverse replication is, for /status and `cleave status`.
type Status struct {
	// CutoverID is the cut-over whose switch the windows follow; 0 before one switched.
	CutoverID uint64 `json:"cutover_id"`
	// Shards are the windows, by shard name.
	Shards []ShardStatus `json:"shards,omitempty"`
}

// ShardStatus is one shard's window.
type ShardStatus struct {
	Shard       string                `json:"shard"`
	TopicPrefix string                `json:"topic_prefix"`
	Start       *cutover.ReverseStart `json:"start"`
	Capture     capture.Status        `json:"capture"`
}

// New returns the runner of cfg's reverse replication; it starts nothing until Run.
func New(cfg *config.Config, opts Options) (*Runner, error) {
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	if opts.Interval <= 0 {
		opts.Interval = 2 * time.Second
	}
	if opts.Latest == nil {
		return nil, errors.New("reverse: Options.Latest is required")
	}
	r := &Runner{cfg: cfg, opts: opts, log: opts.Log, caps: map[string]*capture.Capture{},
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cleave_reverse_capture_lag_seconds",
			Help: "How far the reverse capture of a shard is behind the shard's binlog (its source_lag_seconds); 0 while reverse replication does not run (cleave_reverse_cutover_id is 0).",
		}, []string{"shard"}),
		current: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cleave_reverse_cutover_id",
			Help: "The cut-over whose switch reverse replication follows; 0 while it does not run.",
		}),
	}
	for _, s := range cfg.Shards {
		r.lag.WithLabelValues(s.Name)
	}
	if opts.Registerer != nil {
		for _, c := range []prometheus.Collector{r.lag, r.current} {
			if err := opts.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("reverse: register metrics: %w", err)
			}
		}
	}
	return r, nil
}

// Status returns where the windows are.
func (r *Runner) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := Status{CutoverID: r.status.CutoverID}
	for _, s := range r.status.Shards {
		if c := r.caps[s.Shard]; c != nil {
			s.Capture = c.Status()
		}
		st.Shards = append(st.Shards, s)
	}
	return st
}

// Run waits for a switched cut-over, then runs its windows until ctx is done or one of
// their parts fails (the error stops cleave run: a rollback window that silently stopped
// would leave the source behind the shards). A newer cut-over that switches replaces the
// windows of the older one.
func (r *Runner) Run(ctx context.Context) error {
	for {
		rec, err := r.waitSwitched(ctx, 0)
		if err != nil || rec == nil {
			return err
		}
		for rec != nil {
			rec, err = r.runWindows(ctx, rec)
			if err != nil {
				return err
			}
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

// waitSwitched polls Latest until it shows a switched cut-over other than skip with its
// reverse starts; nil when ctx ends first.
func (r *Runner) waitSwitched(ctx context.Context, skip uint64) (*cutover.Record, error) {
	t := time.NewTicker(r.opts.Interval)
	defer t.Stop()
	for {
		if rec := r.opts.Latest(); rec != nil && rec.ID != skip && !rec.IsRollback() && rec.Detail.FinalizedAt == nil {
			if len(rec.Detail.Reverse) == 0 {
				r.log.Warn("the switched cut-over journaled no reverse start positions (made by an older cleave): reverse replication cannot start; the source does not follow the shards", zap.Uint64("cutover", rec.ID))
				skip = rec.ID
			} else {
				return rec, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, nil
		case <-t.C:
		}
	}
}

// runWindows runs the windows of rec until ctx ends (nil, nil), a part fails (the error),
// or a newer cut-over switches (that record, to run next).
func (r *Runner) runWindows(ctx context.Context, rec *cutover.Record) (*cutover.Record, error) {
	log := r.log.With(zap.Uint64("cutover", rec.ID))
	if err := r.ensureSource(ctx); err != nil {
		return nil, err
	}
	g, gctx := errgroup.WithContext(ctx)
	shards := make([]string, 0, len(rec.Detail.Reverse))
	for s := range rec.Detail.Reverse {
		shards = append(shards, s)
	}
	sort.Strings(shards)
	st := Status{CutoverID: rec.ID}
	caps := map[string]*capture.Capture{}
	for _, shard := range shards {
		start := rec.Detail.Reverse[shard]
		cc, err := CaptureConfig(r.cfg, rec.ID, shard, start)
		if err != nil {
			return nil, err
		}
		capt, err := capture.New(cc, capture.Options{
			Log:     log.Named("capture").With(zap.String("shard", shard)),
			StartAt: &capture.Position{File: start.File, Pos: start.Pos, GTID: start.GTID},
		})
		if err != nil {
			return nil, fmt.Errorf("reverse capture of shard %s: %w", shard, err)
		}
		sc := SinkConfig(r.cfg, rec.ID, shard)
		sk, err := sink.New(sc, kafkax.ReverseSink(shard), sink.Options{
			Log:     log.Named("sink"),
			Metrics: r.opts.SinkMetrics,
			Reverse: &sink.Reverse{Epoch: rec.ID},
		})
		if err != nil {
			return nil, fmt.Errorf("reverse sink of shard %s: %w", shard, err)
		}
		caps[shard] = capt
		st.Shards = append(st.Shards, ShardStatus{Shard: shard, TopicPrefix: cc.Kafka.TopicPrefix, Start: start})
		g.Go(func() error { return part(gctx, "reverse capture of shard "+shard, capt.Run) })
		g.Go(func() error { return part(gctx, "reverse sink of shard "+shard, sk.Run) })
	}
	r.mu.Lock()
	r.status, r.caps = st, caps
	r.mu.Unlock()
	r.current.Set(float64(rec.ID))
	log.Info("reverse replication started: shard changes flow back to the source", zap.Strings("shards", shards))

	// Follow the journal and the captures' lag while the windows run.
	var next *cutover.Record
	g.Go(func() error {
		t := time.NewTicker(r.opts.Interval)
		defer t.Stop()
		for {
			for shard, c := range caps {
				r.lag.WithLabelValues(shard).Set(c.Status().LagSeconds)
			}
			switch l := r.opts.Latest(); {
			case l == nil || l.ID < rec.ID:
				// Not read yet, or an older view: nothing changed.
			case l.ID == rec.ID && l.Detail.FinalizedAt != nil:
				return errFinalized
			case l.IsRollback():
				return errRolledBack
			case l.ID > rec.ID && len(l.Detail.Reverse) > 0:
				next = l
				return errReplaced
			}
			select {
			case <-gctx.Done():
				return nil
			case <-t.C:
			}
		}
	})
	err := g.Wait()
	r.mu.Lock()
	r.status, r.caps = Status{}, map[string]*capture.Capture{}
	r.mu.Unlock()
	r.current.Set(0)
	for _, shard := range shards {
		r.lag.WithLabelValues(shard).Set(0)
	}
	switch {
	case errors.Is(err, errReplaced):
		log.Info("a newer cut-over switched: its reverse replication replaces this one's", zap.Uint64("next", next.ID))
		return next, nil
	case errors.Is(err, errRolledBack):
		log.Info("rolled back: the source owns the moved tables again, reverse replication stopped")
		return nil, nil
	case errors.Is(err, errFinalized):
		log.Info("the migration is finalized: reverse replication stopped")
		return nil, nil
	case ctx.Err() != nil:
		return nil, nil
	}
	return nil, err
}

var (
	errReplaced   = errors.New("replaced by a newer cut-over")
	errFinalized  = errors.New("the migration is finalized")
	errRolledBack = errors.New("the cut-over was rolled back")
)

// part runs one capture or sink of a window, naming it in its error.
func part(ctx context.Context, name string, run func(context.Context) error) error {
	err := run(ctx)
	switch {
	case err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled):
		return nil
	case err != nil:
		return fmt.Errorf("%s: %w", name, err)
	case ctx.Err() == nil:
		return fmt.Errorf("%s stopped without an error while reverse replication runs", name)
	}
	return nil
}

// ensureSource creates the reverse sinks' bookkeeping on the source: their offsets and the
// rows' versions.
func (r *Runner) ensureSource(ctx context.Context) error {
	db, err := mysqlx.Open(ctx, "source", r.cfg.Source.DSN)
	if err != nil {
		return fmt.Errorf("reverse: %w", err)
	}
	defer db.Close()
	if err := shardmeta.EnsureReverse(ctx, db); err != nil {
		return fmt.Errorf("reverse: %w (the source user needs CREATE, INSERT, UPDATE, DELETE on `_cleave`.*)", err)
	}
	return nil
}
