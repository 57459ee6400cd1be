package capture

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cleave-dev/cleave/internal/testenv"
	"github.com/cleave-dev/cleave/kafkax"
)

// TestKafkaOutagesNeverLeaveAGap runs capture against a private broker that dies twice
// under a write load: once for good (capture gives up with an error after retry_max_time
// without progress), once briefly (capture retries and goes on). Afterwards every change
// of the binlog is in Kafka.
func TestKafkaOutagesNeverLeaveAGap(t *testing.T) {
	t.Parallel()
	testenv.EachFlavor(t, testKafkaOutagesNeverLeaveAGap)
}

func testKafkaOutagesNeverLeaveAGap(t *testing.T, e testenv.Env) {
	t.Parallel()
	k := testenv.StartKafka(t)
	f := newFixture(t, e)
	f.env.KafkaBrokers = k.Brokers()
	f.exec("CREATE TABLE a (id INT PRIMARY KEY, v INT, s VARCHAR(200))", "CREATE TABLE b (k VARCHAR(20), n INT, v INT, PRIMARY KEY (k, n))")
	cfg := f.configure([]string{"a", "b"}, "")

	startCapture := func(retryMax time.Duration) (*Capture, *prometheus.Registry, chan error, context.CancelFunc) {
		reg := prometheus.NewRegistry()
		c, err := New(cfg, Options{Registerer: reg, RetryMaxTime: retryMax})
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
		return c, reg, done, cancel
	}

	c1, _, done1, _ := startCapture(3 * time.Second)
	testenv.Eventually(t, time.Minute, "capture streaming", func() bool { return c1.Status().Streaming })
	start := c1.Status().Stored

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var loadErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, loadErr = writeLoad(t, f.src, e.SourceFlavor, 7, 5*time.Millisecond, stop)
	}()
	testenv.Eventually(t, time.Minute, "events acknowledged", func() bool { return start.Before(c1.Status().Acknowledged) })

	t.Run("a broker gone for good stops capture with an error", func(t *testing.T) {
		began := time.Now()
		defer func() { t.Logf("capture gave up %s after the broker died", time.Since(began).Round(time.Second)) }()
		k.Kill()
		select {
		case err := <-done1:
			if err == nil || !strings.Contains(err.Error(), "no progress") {
				t.Fatalf("capture returned %v, want an error saying it made no progress", err)
			}
		case <-time.After(3 * time.Minute):
			t.Fatal("capture kept retrying past retry_max_time")
		}
	})

	k.Start()
	c2, reg2, done2, cancel2 := startCapture(2 * time.Minute)
	testenv.Eventually(t, time.Minute, "capture streaming again", func() bool { return c2.Status().Streaming })

	t.Run("a short outage is retried", func(t *testing.T) {
		acked := c2.Status().Acknowledged
		testenv.Eventually(t, time.Minute, "progress before the outage", func() bool { return acked.Before(c2.Status().Acknowledged) })
		k.Kill()
		k.Start()
		acked = c2.Status().Acknowledged
		testenv.Eventually(t, 5*time.Minute, "progress after the outage", func() bool { return acked.Before(c2.Status().Acknowledged) })
		select {
		case err := <-done2:
			t.Fatalf("capture stopped: %v", err)
		default:
		}
		if n := metricValue(t, reg2, "cleave_capture_stream_restarts_total") + metricValue(t, reg2, "cleave_capture_produce_retries_total"); n == 0 {
			t.Fatal("no retry counted")
		}
	})

	close(stop)
	wg.Wait()
	if loadErr != nil {
		t.Fatalf("write load: %v", loadErr)
	}
	end := f.sourcePosition()
	testenv.Eventually(t, 5*time.Minute, "acknowledged up to "+end.String(), func() bool { return !c2.Status().Acknowledged.Before(end) })
	cancel2()
	if err := <-done2; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("capture stopped with %v", err)
	}

	want := binlogChanges(t, f.env.SourceFlavor, f.env.SourceDSN, start, end, f.db)
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
}
