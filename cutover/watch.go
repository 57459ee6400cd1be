package cutover

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// allStates are the values of cleave_cutover_state's label.
var allStates = []State{StateGate, StateVerify, StateFence, StateDrain, StateFencedVerify, StateSwitched, StateDone, StateAborted}

// Watcher is the cut-over's part of `cleave run`: at start it resolves a cut-over that
// stopped (so a restart of cleave run finishes a killed cut-over as `cleave cutover`
// would), then it follows the journal for /status and the metrics.
type Watcher struct {
	c        *Cutover
	log      *zap.Logger
	interval time.Duration
	state    *prometheus.GaugeVec
	pause    prometheus.Gauge

	mu       sync.Mutex
	last     *Record
	switched *Record
}

// NewWatcher returns the watcher of the configuration's cut-over, its metrics registered
// on reg (when not nil).
func NewWatcher(c *Cutover, reg prometheus.Registerer, log *zap.Logger) (*Watcher, error) {
	w := &Watcher{c: c, log: log, interval: 5 * time.Second,
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cleave_cutover_state",
			Help: "1 for the state of the latest cut-over (gate, verify, fence, drain, fenced_verify, switched, done, aborted), 0 for the others; all 0 before the first.",
		}, []string{"state"}),
		pause: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cleave_cutover_write_pause_seconds",
			Help: "How long the latest cut-over fenced writes to the moved tables on the source.",
		}),
	}
	for _, s := range allStates {
		w.state.WithLabelValues(string(s))
	}
	if reg != nil {
		for _, col := range []prometheus.Collector{w.state, w.pause} {
			if err := reg.Register(col); err != nil {
				return nil, err
			}
		}
	}
	return w, nil
}

// Latest is the newest cut-over record read, nil before the first.
func (w *Watcher) Latest() *Record {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last
}

// LatestSwitched is the newest attempt read that passed its point of no return
// (LatestSwitched), nil before the first.
func (w *Watcher) LatestSwitched() *Record {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.switched
}

// Run resolves a stopped cut-over, then follows the journal until ctx is done. Problems
// are logged, never fatal: the migration's data path must not stop for them.
func (w *Watcher) Run(ctx context.Context) error {
	defer w.c.Close()
	if rec, err := w.c.Resolve(ctx); err != nil && !errors.Is(err, errLockHeld) && ctx.Err() == nil {
		w.log.Warn("cannot resolve the cut-over journal on the source", zap.Error(err))
	} else if rec != nil {
		w.log.Warn("resolved a cut-over that had stopped", zap.Uint64("cutover", rec.ID), zap.String("state", string(rec.State)))
	}
	for {
		w.poll(ctx)
		t := time.NewTimer(w.interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

func (w *Watcher) poll(ctx context.Context) {
	if err := w.c.connect(ctx); err != nil {
		return
	}
	rec, err := latest(ctx, w.c.source, w.c.cfg.Kafka.TopicPrefix)
	sw := rec
	if err == nil && rec != nil && !rec.State.Switched() {
		// Only an attempt after the newest switched one (aborted, or running) hides it.
		sw, err = latestSwitched(ctx, w.c.source, w.c.cfg.Kafka.TopicPrefix)
	}
	if err != nil {
		if ctx.Err() == nil {
			w.log.Debug("read the cut-over journal", zap.Error(err))
		}
		return
	}
	w.mu.Lock()
	w.last, w.switched = rec, sw
	w.mu.Unlock()
	for _, s := range allStates {
		v := 0.0
		if rec != nil && rec.State == s {
			v = 1
		}
		w.state.WithLabelValues(string(s)).Set(v)
	}
	if rec != nil {
		w.pause.Set(float64(rec.Detail.WritePauseMs) / 1000)
	}
}
