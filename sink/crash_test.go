package sink

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/cleave-dev/cleave/capture"
	"github.com/cleave-dev/cleave/internal/testenv"
)

// These tests run under a live write load through capture: a writer goroutine changes the
// source tables (gen.sqlLoad) and capture, in this process, streams the binlog to Kafka.
// At the end the shards are compared with the source by SELECT.

// startCapture runs capture for the fixture until the test ends (or stop).
func (f *fixture) startCapture(t *testing.T) (stop func()) {
	t.Helper()
	c, err := capture.New(f.cfg, capture.Options{Log: f.logger().Named("capture")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	// done is closed once Run has returned runErr: stop and the wait below both read it,
	// so neither can wait for a result the other took.
	done := make(chan struct{})
	var runErr error
	go func() {
		runErr = c.Run(ctx)
		if runErr != nil && ctx.Err() == nil {
			// Capture stopping by itself fails the waits on the shards at once.
			select {
			case f.failed <- fmt.Errorf("capture: %w", runErr):
			default:
			}
		}
		close(done)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			<-done
			if runErr != nil {
				t.Errorf("capture: %v", runErr)
			}
		})
	}
	t.Cleanup(stop)
	testenv.Eventually(t, time.Minute, "capture to stream the binlog", func() bool {
		select {
		case <-done:
			t.Fatalf("capture stopped: %v", runErr)
		default:
		}
		return c.Status().Streaming
	})
	return stop
}

// TestMain removes the cleave binary the crash tests build.
func TestMain(m *testing.M) {
	code := m.Run()
	testenv.RemoveBinaries()
	os.Exit(code)
}

// sinkProc is one `cleave sink` process.
type sinkProc struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

func (f *fixture) startSinkProc(t *testing.T, shard string, env ...string) *sinkProc {
	t.Helper()
	p := &sinkProc{log: filepath.Join(t.TempDir(), "sink.log"), done: make(chan struct{})}
	out, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(testenv.CleaveBinary(t, testenv.TestHooksTag), "sink", "--config", f.cfgPath, "--shard", shard, "--listen", "", "--log-level", "info")
	p.cmd.Env = append(os.Environ(), "CLEAVE_TEST_GROUP_SESSION_TIMEOUT=6s")
	p.cmd.Env = append(p.cmd.Env, env...)
	p.cmd.Stdout, p.cmd.Stderr = out, out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		out.Close()
		close(p.done)
	}()
	t.Cleanup(func() { p.kill() })
	return p
}

func (p *sinkProc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// wait waits for the process to exit and returns its exit code.
func (p *sinkProc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.kill()
		t.Fatalf("cleave sink did not exit within %s; log:\n%s", timeout, p.tail())
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	if p.err != nil {
		t.Fatalf("cleave sink: %v", p.err)
	}
	return 0
}

func (p *sinkProc) tail() string {
	b, _ := os.ReadFile(p.log)
	if i := len(b) - 4000; i > 0 {
		b = b[i:]
	}
	return string(b)
}

func TestSinkSurvivesKill9AtRandomMoments(t *testing.T) {
	t.Parallel() // bound by waits on servers and the group protocol, not by CPU
	testenv.EachFlavor(t, func(t *testing.T, e testenv.Env) {
		f := newFixture(t, fixtureOpts{env: e, batchSize: 100})
		g := newGen(f, 6)
		f.startCapture(t)
		stopLoad := g.sqlLoad(1000)
		stop1, _ := f.runSink("s1", Options{})
		rng := rand.New(rand.NewPCG(17, 19))
		for i := 0; i < 10; i++ {
			if i%2 == 0 {
				// Killed by its own hook inside a batch: rows and offsets written, not committed.
				n := 1 + rng.IntN(20)
				p := f.startSinkProc(t, "s0", "CLEAVE_TEST_CRASH_BEFORE_COMMIT="+strconv.Itoa(n))
				if code := p.wait(t, 2*time.Minute); code != 128+int(syscall.SIGKILL) {
					t.Fatalf("kill %d: the sink exited with %d, not killed by its hook in batch %d; log:\n%s", i, code, n, p.tail())
				}
				t.Logf("kill %d: killed itself between apply and commit of batch %d", i, n)
				continue
			}
			p := f.startSinkProc(t, "s0")
			d := time.Duration(500+rng.IntN(6000)) * time.Millisecond
			select {
			case <-p.done:
				t.Fatalf("kill %d: the sink exited by itself: %v; log:\n%s", i, p.err, p.tail())
			case <-time.After(d):
			}
			p.kill()
			t.Logf("kill %d: SIGKILL after %s", i, d)
		}
		made := stopLoad()
		t.Logf("the writer made %d changes on the source during the kills", made)

		p := f.startSinkProc(t, "s0")
		f.waitShardsMatchSource(3 * time.Minute)
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if code := p.wait(t, time.Minute); code != 0 {
			t.Fatalf("cleave sink exited %d on SIGTERM, want 0; log:\n%s", code, p.tail())
		}
		stopAll(t, stop1)
	})
}

func TestShardOutageStallsOnlyThatShard(t *testing.T) {
	t.Parallel() // bound by waits on servers and the group protocol, not by CPU
	testenv.EachFlavor(t, func(t *testing.T, e testenv.Env) {
		// A private shard of the flavor, which the test kills and starts again.
		m := testenv.StartServer(t, e.ShardFlavor, testenv.ServerOptions{DisableBinlog: true})
		f := newFixture(t, fixtureOpts{env: e, shardDSNs: []string{m.DSN(), e.Shard1DSN}})
		g := newGen(f, 8)
		f.startCapture(t)
		metrics, _ := NewMetrics(nil)
		opts := Options{Metrics: metrics, RetryBackoffMax: time.Second, BreakerTimeout: time.Second}
		stop0, done0 := f.runSink("s0", opts)
		stop1, _ := f.runSink("s1", opts)
		stopLoad := g.sqlLoad(1000)
		f.waitCaughtUpOrMore(0, 1000)

		m.Kill()
		outage := time.Now()
		before := sumOffsets(f.storedOffsets(1))
		testenv.Eventually(t, time.Minute, "s1 to keep applying while s0 is down", func() bool {
			return sumOffsets(f.storedOffsets(1)) > before+500
		})
		testenv.Eventually(t, time.Minute, "s0's circuit breaker to open", func() bool {
			select {
			case err := <-done0:
				t.Fatalf("s0's sink ended when its shard went down: %v", err)
			default:
			}
			return gaugeValue(metrics.breaker.WithLabelValues("s0")) == 2
		})
		// Keep it down a while: the sink must wait, not give up or spin.
		for time.Since(outage) < 20*time.Second {
			select {
			case err := <-done0:
				t.Fatalf("s0's sink ended during the outage: %v", err)
			case <-time.After(time.Second):
			}
		}
		m.Start()
		t.Logf("s0 was down %s; s1 applied meanwhile", time.Since(outage).Round(time.Second))

		made := stopLoad()
		t.Logf("the writer made %d changes on the source", made)
		f.waitShardsMatchSource(3 * time.Minute)
		if r := counterValue(metrics.retries.WithLabelValues("s0")); r == 0 {
			t.Error("no retries counted for s0")
		}
		stopAll(t, stop0, stop1)
	})
}

func TestKafkaRestartLosesNothing(t *testing.T) {
	t.Parallel() // bound by waits on servers and the group protocol, not by CPU
	k := testenv.StartKafka(t)
	f := newFixture(t, fixtureOpts{brokers: k.Brokers()})
	g := newGen(f, 9)
	f.startCapture(t)
	stop0, _ := f.runSink("s0", Options{})
	stop1, _ := f.runSink("s1", Options{})
	stopLoad := g.sqlLoad(1000)
	f.waitCaughtUpOrMore(0, 1000)

	before := []int64{sumOffsets(f.storedOffsets(0)), sumOffsets(f.storedOffsets(1))}
	k.Kill()
	down := time.Now()
	k.Start()
	t.Logf("Kafka was down %s", time.Since(down).Round(100*time.Millisecond))
	// Both shards apply again, under the same load, after the restart.
	f.waitCaughtUpOrMore(0, before[0]+1000)
	f.waitCaughtUpOrMore(1, before[1]+1000)
	made := stopLoad()
	t.Logf("the writer made %d changes on the source across the restart", made)
	f.waitShardsMatchSource(3 * time.Minute)
	stopAll(t, stop0, stop1)
}

// waitCaughtUpOrMore waits until shard has stored offsets summing to at least n.
func (f *fixture) waitCaughtUpOrMore(shard int, n int64) {
	f.t.Helper()
	testenv.Eventually(f.t, 2*time.Minute, fmt.Sprintf("%s to apply %d messages", f.cfg.Shards[shard].Name, n), func() bool {
		f.checkSinks()
		return sumOffsets(f.storedOffsets(shard)) >= n
	})
}

func sumOffsets(m map[tp]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

func gaugeValue(g prometheus.Gauge) float64 {
	var d dto.Metric
	_ = g.Write(&d)
	return d.GetGauge().GetValue()
}
