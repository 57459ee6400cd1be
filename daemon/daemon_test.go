package daemon

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/internal/loadgen"
	"github.com/cleave-dev/cleave/internal/testenv"
	"github.com/cleave-dev/cleave/reconcile"
)

func (r *running) status(t *testing.T) Status {
	t.Helper()
	code, body := r.get(t, "/status")
	if code != http.StatusOK {
		t.Fatalf("/status: %d %s", code, body)
	}
	var s Status
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		t.Fatalf("/status is not a Status: %v\n%s", err, body)
	}
	return s
}

// TestRunStreamsChecksAndDrains runs the whole daemon on the local services under a write
// load: every shard applies, the scheduled reconcile finds the shards consistent, the
// endpoints describe it, and cancelling (SIGTERM) drains every part without an error. It
// runs for each flavor, and across flavors each way (a MySQL monolith split onto MariaDB
// shards, and the reverse).
func TestRunStreamsChecksAndDrains(t *testing.T) {
	testenv.EachFlavor(t, testRunStreamsChecksAndDrains)
	testenv.CrossFlavors(t, testRunStreamsChecksAndDrains)
}

func testRunStreamsChecksAndDrains(t *testing.T, env testenv.Env) {
	dep := newDeployment(t, env, nil, func(c *config.Config) { c.Reconcile.Interval = 2 * time.Second })
	r := dep.start(t)

	testenv.Eventually(t, time.Minute, "/readyz 200 and capture streaming", func() bool {
		code, _ := r.get(t, "/readyz")
		return code == http.StatusOK && r.status(t).Capture.Streaming
	})

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := loadgen.Seed(ctx, dep.Source, dep.DB, 200, 1); err != nil {
		t.Fatal(err)
	}
	loadCtx, stopLoad := context.WithTimeout(ctx, 3*time.Second)
	stats, err := (&loadgen.Load{DB: dep.Source, Database: dep.DB, Rate: 400, Workers: 2, Seed: 7}).Run(loadCtx)
	stopLoad()
	if err != nil {
		t.Fatal(err)
	}
	loadEnd := time.Now()
	t.Logf("load wrote %d row changes in %d transactions", stats.Rows(), stats.Transactions)

	var s Status
	testenv.Eventually(t, 2*time.Minute, "a reconcile started after the load that finds the shards consistent", func() bool {
		s = r.status(t)
		l := s.Reconcile.Last
		if l != nil && l.StartedAt.After(loadEnd) && l.Status != string(reconcile.StatusConsistent) {
			t.Logf("reconcile after the load: %s, %d drift rows, error %q", l.Status, l.DriftRows, l.Error)
		}
		return l != nil && l.StartedAt.After(loadEnd) && l.Status == string(reconcile.StatusConsistent)
	})
	for _, sh := range s.Shards {
		if sh.Applied == 0 || sh.LagSeconds == nil {
			t.Errorf("shard %s: applied %d, lag %v: its sink did not apply", sh.Name, sh.Applied, sh.LagSeconds)
		}
	}
	if s.Capture.Events == 0 || s.Capture.Stored == "" {
		t.Errorf("capture: %+v", s.Capture)
	}
	if s.Reconcile.LastSuccessAt == nil || s.Reconcile.Interval != "2s" {
		t.Errorf("reconcile: %+v", s.Reconcile)
	}

	_, metrics := r.get(t, "/metrics")
	for _, want := range []string{
		`cleave_build_info{goversion="go`, "go_goroutines ", "process_start_time_seconds ",
		"cleave_reconcile_interval_seconds 2", "cleave_capture_events_total{", "cleave_sink_events_applied_total{",
		"cleave_reconcile_last_success_timestamp_seconds ",
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics has no %q", want)
		}
	}

	if err := r.shutdown(time.Minute); err != nil {
		t.Fatalf("cancelled cleave run returned %v, want nil after draining", err)
	}
	if _, err := net.DialTimeout("tcp", r.d.Addr().String(), time.Second); err == nil {
		t.Error("the HTTP listener still accepts connections after Run returned")
	}
}

// TestReadyzNamesAStoppedShardAndRecovers stops a private shard under a running daemon:
// /readyz answers 503 naming that shard and its address (and only it), never a password,
// and 200 again once the shard is back, while the daemon keeps running throughout.
func TestReadyzNamesAStoppedShardAndRecovers(t *testing.T) {
	testenv.EachFlavor(t, testReadyzNamesAStoppedShardAndRecovers)
}

func testReadyzNamesAStoppedShardAndRecovers(t *testing.T, env testenv.Env) {
	const password = "pw-Zq81-not-for-status"
	m := testenv.StartServer(t, env.ShardFlavor, testenv.ServerOptions{})
	m.RootExec("SET SESSION sql_log_bin = 0; CREATE USER 'ops'@'%' IDENTIFIED BY '" + password + "'; GRANT ALL PRIVILEGES ON *.* TO 'ops'@'%'")
	dep := newDeployment(t, env, []string{env.Shard0DSN, m.DSNFor("ops", password)}, func(c *config.Config) { c.Reconcile.Interval = 0 })
	r := dep.start(t)

	// Both sinks past their start-up (they applied capture's heartbeats): the outage hits
	// running sinks, not their first connection.
	testenv.Eventually(t, time.Minute, "/readyz 200 and both sinks applying", func() bool {
		code, _ := r.get(t, "/readyz")
		if code != http.StatusOK {
			return false
		}
		for _, sh := range r.status(t).Shards {
			if sh.LagSeconds == nil {
				return false
			}
		}
		return true
	})

	m.Stop()
	var body string
	testenv.Eventually(t, time.Minute, "/readyz 503 once shard1 is stopped", func() bool {
		var code int
		code, body = r.get(t, "/readyz")
		return code == http.StatusServiceUnavailable
	})
	t.Logf("/readyz with shard1 stopped:\n%s", body)
	if !strings.Contains(body, "shard shard1 "+m.Addr()) {
		t.Errorf("/readyz does not name shard1 at %s:\n%s", m.Addr(), body)
	}
	if strings.Count(strings.TrimSpace(body), "\n") != 0 {
		t.Errorf("/readyz names more than the stopped shard:\n%s", body)
	}
	_, status := r.get(t, "/status")
	for what, text := range map[string]string{"/readyz": body, "/status": status} {
		if strings.Contains(text, password) {
			t.Errorf("%s shows the shard's password", what)
		}
	}

	m.Start()
	testenv.Eventually(t, time.Minute, "/readyz 200 once shard1 is back", func() bool {
		code, _ := r.get(t, "/readyz")
		return code == http.StatusOK
	})
	select {
	case err := <-r.done:
		r.done <- err
		t.Fatalf("cleave run stopped during the shard outage: %v", err)
	default:
	}
}

// TestFirstFailureStopsEveryPart makes one part fail (the HTTP listener's port is taken)
// while capture and the sinks run: Run stops them all and returns that part's error.
func TestFirstFailureStopsEveryPart(t *testing.T) {
	dep := newDeployment(t, testenv.Services(t), nil, func(c *config.Config) { c.Reconcile.Interval = time.Minute })
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	dep.cfg.HTTP.Listen = taken.Addr().String()

	d, err := New(dep.cfg, Options{Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- d.Run(context.Background()) }()
	select {
	case err := <-done:
		if err == nil || !strings.HasPrefix(err.Error(), "http: ") || !strings.Contains(err.Error(), taken.Addr().String()) {
			t.Fatalf("Run returned %v, want the http part's error naming %s", err, taken.Addr())
		}
		t.Logf("Run returned: %v", err)
	case <-time.After(2 * time.Minute):
		t.Fatal("Run did not stop after its HTTP listener failed")
	}
}
