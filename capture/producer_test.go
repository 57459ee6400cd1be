package capture

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
)

// heldWriter keeps every written batch until the test acknowledges or fails it, as a
// broker that answers when it likes.
type heldWriter struct {
	mu      sync.Mutex
	batches [][]kafka.Message
	written chan struct{}
	done    func([]kafka.Message, error)
}

func newHeldWriter() *heldWriter { return &heldWriter{written: make(chan struct{}, 100)} }

func (w *heldWriter) WriteMessages(_ context.Context, msgs ...kafka.Message) error {
	w.mu.Lock()
	w.batches = append(w.batches, append([]kafka.Message(nil), msgs...))
	w.mu.Unlock()
	w.written <- struct{}{}
	return nil
}

func (w *heldWriter) Close() error { return nil }

// answer acknowledges (err nil) or fails batch i.
func (w *heldWriter) answer(i int, err error) {
	w.mu.Lock()
	b := w.batches[i]
	w.mu.Unlock()
	w.done(b, err)
}

func newTestProducer(maxInFlight int64) (*producer, *heldWriter) {
	w := newHeldWriter()
	p := newProducer(w, maxInFlight, 1000, newMetrics(prometheus.NewRegistry(), func() float64 { return 0 }))
	w.done = p.completion
	return p, w
}

func msg(n int) kafka.Message {
	return kafka.Message{Topic: "t", Key: []byte("k"), Value: make([]byte, n)}
}

func TestSafePositionMovesOnlyOverAnAcknowledgedPrefix(t *testing.T) {
	ctx := context.Background()
	p, w := newTestProducer(1 << 30)
	positions := []Position{{File: "b.000001", Pos: 100}, {File: "b.000001", Pos: 200}, {File: "b.000001", Pos: 300}}
	for _, pos := range positions {
		if err := p.add(ctx, msg(10)); err != nil {
			t.Fatal(err)
		}
		if err := p.boundary(ctx, pos, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if len(w.batches) != 3 {
		t.Fatalf("%d batches written, want one per transaction", len(w.batches))
	}
	steps := []struct {
		ack  int
		want Position
		ok   bool
	}{
		{1, Position{}, false},  // the second transaction alone proves nothing
		{0, positions[1], true}, // now the first two are a prefix
		{2, positions[2], true},
	}
	for _, s := range steps {
		w.answer(s.ack, nil)
		got, ok := p.safePosition()
		if ok != s.ok || got != s.want {
			t.Fatalf("after acknowledging batch %d: safe = %v %v, want %v %v", s.ack, got, ok, s.want, s.ok)
		}
	}
}

func TestAFailedBatchHoldsTheSafePositionAndStopsTheReader(t *testing.T) {
	ctx := context.Background()
	p, w := newTestProducer(1 << 30)
	for i, pos := range []uint64{100, 200, 300} {
		if err := p.add(ctx, msg(10)); err != nil {
			t.Fatal(err)
		}
		if err := p.boundary(ctx, Position{File: "b.000001", Pos: pos}, time.Now()); err != nil {
			t.Fatalf("boundary %d: %v", i, err)
		}
	}
	w.answer(0, nil)
	w.answer(1, errors.New("broker says no"))
	w.answer(2, nil)
	if got, _ := p.safePosition(); got.Pos != 100 {
		t.Fatalf("safe = %v, want the boundary before the failed batch", got)
	}
	if err := p.add(ctx, msg(10)); err != nil {
		t.Fatal(err)
	}
	if err := p.flush(ctx); err == nil || p.failure() == nil {
		t.Fatal("flush after a failed batch succeeded")
	}
}

func TestFlushWaitsForAcknowledgementsBeyondTheInFlightBudget(t *testing.T) {
	ctx := context.Background()
	p, w := newTestProducer(1000) // room for one 600-byte message at a time
	if err := p.add(ctx, msg(600)); err != nil {
		t.Fatal(err)
	}
	if err := p.flush(ctx); err != nil {
		t.Fatal(err)
	}
	flushed := make(chan error, 1)
	go func() {
		if err := p.add(ctx, msg(600)); err != nil {
			flushed <- err
			return
		}
		flushed <- p.flush(ctx)
	}()
	<-w.written // the first batch
	select {
	case err := <-flushed:
		t.Fatalf("second flush returned (%v) while the budget was spent", err)
	case <-w.written:
		t.Fatal("second batch written while the budget was spent")
	case <-time.After(200 * time.Millisecond):
	}
	w.answer(0, nil)
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}

	// Shutdown ends the wait too. (A message of a quarter of the budget flushes in add.)
	cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if err := p.add(cctx, msg(600)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("flush with the budget spent and the context done = %v", err)
	}
}
