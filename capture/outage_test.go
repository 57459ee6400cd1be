package capture

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/internal/testenv"
	"github.com/cleave-dev/cleave/kafkax"
)

// TestKafkaOutagesNeverLeaveAGap runs capture against a private broker that dies twice
// under a write load: once for good (capture gives up with an error after retry_max_time
// without progress), once briefly (capture retries and goes on). Afterwards every change
// of the binlog is in Kafka. One broker serves a capture of a source of each flavor, so
// that each outage hits them all at once.
func TestKafkaOutagesNeverLeaveAGap(t *testing.T) {
	t.Parallel()
	var envs []testenv.Env
	for _, fl := range testenv.MatrixFlavors() {
		envs = append(envs, testenv.ServicesFor(t, fl, fl))
	}
	k := testenv.StartKafka(t)

	// side is one flavor's source, capture and write load.
	type side struct {
		e       testenv.Env
		f       *fixture
		cfg     *config.Config
		c       *Capture
		reg     *prometheus.Registry
		done    chan error
		cancel  context.CancelFunc
		start   Position
		loadErr error
	}
	startCapture := func(s *side, retryMax time.Duration) {
		s.reg = prometheus.NewRegistry()
		c, err := New(s.cfg, Options{Registerer: s.reg, RetryMaxTime: retryMax})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		finished := make(chan struct{})
		go func() {
			err := c.Run(ctx)
			close(finished)
			done <- err
		}()
		t.Cleanup(func() {
			cancel()
			select {
			case <-finished:
			case <-time.After(3 * time.Minute):
				t.Error("capture did not return within 3 minutes of its cancellation")
			}
		})
		s.c, s.done, s.cancel = c, done, cancel
	}
	var all []*side
	for _, e := range envs {
		s := &side{e: e, f: newFixture(t, e)}
		s.f.env.KafkaBrokers = k.Brokers()
		s.f.exec("CREATE TABLE a (id INT PRIMARY KEY, v INT, s VARCHAR(200))", "CREATE TABLE b (k VARCHAR(20), n INT, v INT, PRIMARY KEY (k, n))")
		s.cfg = s.f.configure([]string{"a", "b"}, nil)
		startCapture(s, 3*time.Second)
		all = append(all, s)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, s := range all {
		testenv.Eventually(t, time.Minute, string(s.e.SourceFlavor)+" capture streaming", func() bool { return s.c.Status().Streaming })
		s.start = s.c.Status().Stored
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, s.loadErr = writeLoad(t, s.f.src, s.e.SourceFlavor, 7, 5*time.Millisecond, stop)
		}()
	}
	for _, s := range all {
		testenv.Eventually(t, time.Minute, string(s.e.SourceFlavor)+" events acknowledged", func() bool { return s.start.Before(s.c.Status().Acknowledged) })
	}

	t.Run("a broker gone for good stops capture with an error", func(t *testing.T) {
		began := time.Now()
		k.Kill()
		for _, s := range all {
			select {
			case err := <-s.done:
				if err == nil || !strings.Contains(err.Error(), "no progress") {
					t.Fatalf("%s capture returned %v, want an error saying it made no progress", s.e.SourceFlavor, err)
				}
				t.Logf("%s capture gave up %s after the broker died", s.e.SourceFlavor, time.Since(began).Round(time.Second))
			case <-time.After(3 * time.Minute):
				t.Fatalf("%s capture kept retrying past retry_max_time", s.e.SourceFlavor)
			}
		}
	})

	k.Start()
	for _, s := range all {
		startCapture(s, 2*time.Minute)
		testenv.Eventually(t, time.Minute, string(s.e.SourceFlavor)+" capture streaming again", func() bool { return s.c.Status().Streaming })
	}

	t.Run("a short outage is retried", func(t *testing.T) {
		for _, s := range all {
			acked := s.c.Status().Acknowledged
			testenv.Eventually(t, time.Minute, string(s.e.SourceFlavor)+" progress before the outage", func() bool { return acked.Before(s.c.Status().Acknowledged) })
		}
		k.Kill()
		k.Start()
		for _, s := range all {
			acked := s.c.Status().Acknowledged
			testenv.Eventually(t, 5*time.Minute, string(s.e.SourceFlavor)+" progress after the outage", func() bool { return acked.Before(s.c.Status().Acknowledged) })
			select {
			case err := <-s.done:
				t.Fatalf("%s capture stopped: %v", s.e.SourceFlavor, err)
			default:
			}
			if n := metricValue(t, s.reg, "cleave_capture_stream_restarts_total") + metricValue(t, s.reg, "cleave_capture_produce_retries_total"); n == 0 {
				t.Fatalf("%s: no retry counted", s.e.SourceFlavor)
			}
		}
	})

	close(stop)
	wg.Wait()
	for _, s := range all {
		t.Run(string(s.e.SourceFlavor)+": every change of the binlog is in Kafka", func(t *testing.T) {
			if s.loadErr != nil {
				t.Fatalf("write load: %v", s.loadErr)
			}
			f := s.f
			end := f.sourcePosition()
			testenv.Eventually(t, 5*time.Minute, "acknowledged up to "+end.String(), func() bool { return !s.c.Status().Acknowledged.Before(end) })
			s.cancel()
			if err := <-s.done; err != nil && !errors.Is(err, context.Canceled) {
				t.Fatalf("capture stopped with %v", err)
			}
			want := binlogChanges(t, f.env.SourceFlavor, f.env.SourceDSN, s.start, end, f.db)
			got := map[change]bool{}
			for _, table := range []string{"a", "b"} {
				for _, rec := range rowEvents(readTopic(t, k.Brokers(), kafkax.TableTopic(f.prefix, f.db, table))) {
					got[change{rec.key, rec.ev.Version, rec.ev.Op}] = true
				}
			}
			missing := 0
			for c := range want {
				if !got[c] {
					missing++
				}
			}
			if missing > 0 {
				t.Fatalf("%d of %d changes missing after the outages", missing, len(want))
			}
			t.Logf("%d changes across two outages, none missing", len(want))
		})
	}
}
