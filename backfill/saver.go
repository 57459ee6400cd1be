package backfill

import (
	"context"
	"sync"
	"time"
)

// saver stores a table's progress off the copier's path: a synchronous write to Kafka per
// chunk would hold the next chunk's read back for a round trip. The copier hands it each
// acknowledged progress in order; the saver writes the newest one it holds, skipping those
// overtaken while it wrote. Progress only moves forward and is handed over only after
// Kafka acknowledged its chunk, so storing a later one is always safe, and a skipped one
// only means that a crash copies a few more chunks again.
type saver struct {
	store *Store
	retry func(ctx context.Context, what string, f func() error) error
	what  string

	mu      sync.Mutex
	latest  *Progress // handed over, not yet stored
	seq     int64     // records handed over
	latestN int64     // seq of latest
	stored  int64     // seq of the last record stored
	err     error     // the store failed for good
	kick    chan struct{}
	changed chan struct{} // closed and replaced whenever stored or err changes
	stop    context.CancelFunc
	done    chan struct{}
}

func newSaver(ctx context.Context, store *Store, retry func(context.Context, string, func() error) error, table string) *saver {
	// Not cancelled with the copy: close stores the last progress on a shutdown too.
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &saver{store: store, retry: retry, what: "store the backfill progress of " + table,
		kick: make(chan struct{}, 1), changed: make(chan struct{}), stop: cancel, done: make(chan struct{})}
	go s.run(ctx)
	return s
}

// set hands over p, the progress after an acknowledged chunk, and returns its sequence
// number for flush.
func (s *saver) set(p Progress) int64 {
	s.mu.Lock()
	s.seq++
	s.latest, s.latestN = &p, s.seq
	n := s.seq
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
	return n
}

// failure returns the error that stopped the saver, or nil.
func (s *saver) failure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *saver) run(ctx context.Context) {
	defer close(s.done)
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		}
		s.mu.Lock()
		p, n := s.latest, s.latestN
		s.latest = nil
		s.mu.Unlock()
		if p == nil {
			continue
		}
		err := s.retry(ctx, s.what, func() error { return s.store.SaveProgress(ctx, *p) })
		s.mu.Lock()
		if err == nil {
			s.stored = n
		} else if ctx.Err() == nil {
			s.err = err
		}
		close(s.changed)
		s.changed = make(chan struct{})
		s.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// flush waits until the record with sequence number seq (or a later one) is stored.
func (s *saver) flush(ctx context.Context, seq int64) error {
	for {
		s.mu.Lock()
		stored, err, changed := s.stored, s.err, s.changed
		s.mu.Unlock()
		if err != nil {
			return err
		}
		if stored >= seq {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.done:
			return ctx.Err()
		case <-changed:
		}
	}
}

// close stores what was handed over last (within a few seconds, also when ctx is
// cancelled: a shutdown keeps its progress) and stops the saver.
func (s *saver) close(ctx context.Context) {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	s.mu.Lock()
	seq := s.seq
	s.mu.Unlock()
	_ = s.flush(fctx, seq)
	s.stop()
	<-s.done
}
