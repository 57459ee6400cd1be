package monitoring

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/daemon"
	"github.com/cleave-dev/cleave/internal/loadgen"
	"github.com/cleave-dev/cleave/internal/testenv"
	"github.com/cleave-dev/cleave/internal/testenv/deploy"
	"github.com/cleave-dev/cleave/mysqlx"
)

// pendingMetrics are metrics the shipped dashboard reads that no part of cleave exports
// yet. Their queries must return nothing today; once a part exports them this test fails
// until the entry is removed, so the list cannot go stale.
var pendingMetrics = map[string]string{}

// TestOperatorsView runs what an operator runs, all real: `cleave run` (the binary) on the
// local source and Kafka with two shards (the shared shard0 and a private shard1 it can
// stop), Prometheus scraping it every second with the shipped alert rules (their `for:`
// shortened), and Alertmanager routing to a webhook receiver in the test. Under a write
// load, with one event dead-lettered and a shard outage for errors and retries, every
// dashboard query must return data and read only metrics cleave exports; a row deleted
// behind cleave's back must reach the webhook as CleaveDriftDetected; SIGTERM must drain
// cleave run and exit 0.
// TestMain removes the cleave binary the end-to-end test builds.
func TestMain(m *testing.M) {
	code := m.Run()
	testenv.RemoveBinaries()
	os.Exit(code)
}

func TestOperatorsView(t *testing.T) {
	testenv.EachFlavor(t, testOperatorsView)
}

func testOperatorsView(t *testing.T, env testenv.Env) {
	prometheus := requireProgram(t, "prometheus", "prometheus")
	alertmanager := requireProgram(t, "prometheus-alertmanager", "prometheus-alertmanager")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	dir := t.TempDir()
	bin := testenv.CleaveBinary(t)

	// The shop on the source, shard1 private, cleave prepared.
	shard1 := testenv.StartServer(t, env.ShardFlavor, testenv.ServerOptions{})
	shardDSNs := []string{env.Shard0DSN, shard1.DSN()}
	dep := deploy.New(t, env, deploy.Options{ShardDSNs: shardDSNs})
	db, source := dep.DB, dep.Source
	if err := loadgen.CreateSchema(ctx, source, db); err != nil {
		t.Fatal(err)
	}
	shards := make([]*sql.DB, len(shardDSNs))
	for i, dsn := range shardDSNs {
		shards[i] = testenv.OpenDB(t, dsn)
	}
	cleavePort := freePort(t)
	c := &dep.Config
	c.Kafka.Partitions = 2
	c.Tables = deploy.ShopTables(dep.DB)
	c.Capture.HeartbeatInterval = 500 * time.Millisecond
	c.Sink.BatchWait, c.Sink.OnError = 20*time.Millisecond, config.OnErrorDeadLetter
	c.Reconcile.Interval, c.Reconcile.RecheckRounds = 3*time.Second, 2
	c.HTTP.Listen = fmt.Sprintf("127.0.0.1:%d", cleavePort)
	c.Log.Format = "json"
	dep.Write()
	cfgPath := dep.Path
	if out, err := exec.CommandContext(ctx, bin, "prepare", "--config", cfgPath).CombinedOutput(); err != nil {
		t.Fatalf("cleave prepare: %v\n%s", err, out)
	}
	// Both shards refuse one country name for good: the event carrying it is
	// dead-lettered (on another table than the drift injected below, so that the drift
	// alert can only come from that).
	for i, sh := range shards {
		if _, err := sh.ExecContext(ctx, "ALTER TABLE "+mysqlx.QuoteTable(db, "countries")+" ADD CONSTRAINT no_reject CHECK (name <> 'reject-me')"); err != nil {
			t.Fatalf("shard%d: %v", i, err)
		}
	}

	// cleave run.
	cleaveURL := fmt.Sprintf("http://127.0.0.1:%d", cleavePort)
	cleave := startProcess(t, filepath.Join(dir, "cleave.log"), bin, "run", "--config", cfgPath)
	waitFor(t, time.Minute, "cleave run ready and capture streaming", cleave, func() bool {
		if code, _ := httpGet(cleaveURL + "/readyz"); code != http.StatusOK {
			return false
		}
		var st daemon.Status
		_, body := httpGet(cleaveURL + "/status")
		return json.Unmarshal([]byte(body), &st) == nil && st.Capture.Streaming
	})

	// Alertmanager with a webhook receiver, then Prometheus.
	hook := newWebhook(t)
	amPort := freePort(t)
	writeFile(t, filepath.Join(dir, "alertmanager.yml"), fmt.Sprintf(`route:
  receiver: test
  group_by: [alertname, table, shard, kind]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: test
    webhook_configs:
      - url: %q
`, hook.url))
	am := startProcess(t, filepath.Join(dir, "alertmanager.log"), alertmanager,
		"--config.file="+filepath.Join(dir, "alertmanager.yml"), "--storage.path="+filepath.Join(dir, "am"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", amPort), "--cluster.listen-address=", "--log.level=warn")
	waitFor(t, time.Minute, "Alertmanager ready", am, func() bool {
		code, _ := httpGet(fmt.Sprintf("http://127.0.0.1:%d/-/ready", amPort))
		return code == http.StatusOK
	})

	rf, err := LoadRules(rulesPath)
	if err != nil {
		t.Fatal(err)
	}
	fast, err := rf.WithFor(time.Second).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "rules.yml"), string(fast))
	promPort := freePort(t)
	writeFile(t, filepath.Join(dir, "prometheus.yml"), fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [rules.yml]
alerting:
  alertmanagers:
    - static_configs:
        - targets: ["127.0.0.1:%d"]
scrape_configs:
  - job_name: cleave
    static_configs:
      - targets: ["127.0.0.1:%d"]
`, amPort, cleavePort))
	promURL := fmt.Sprintf("http://127.0.0.1:%d", promPort)
	prom := startProcess(t, filepath.Join(dir, "prometheus.log"), prometheus,
		"--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "prom"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", promPort), "--log.level=warn")
	waitFor(t, time.Minute, "Prometheus scraping cleave", prom, func() bool {
		res, err := promQuery(promURL, `up{job="cleave"} == 1`)
		return err == nil && len(res) > 0
	})

	// The write load, for the rest of the test.
	if _, err := loadgen.Seed(ctx, source, db, 300, 1); err != nil {
		t.Fatal(err)
	}
	loadCtx, stopLoad := context.WithCancel(ctx)
	var loadWG sync.WaitGroup
	load := &loadgen.Load{DB: source, Database: db, Rate: 300, Workers: 2, Seed: 3}
	loadWG.Add(1)
	go func() {
		defer loadWG.Done()
		if _, err := load.Run(loadCtx); err != nil {
			t.Errorf("write load: %v", err)
		}
	}()
	defer func() { stopLoad(); loadWG.Wait() }()
	// The load picks its users among those that existed when it started: once it has
	// written, a user inserted now is one it never touches.
	testenv.Eventually(t, time.Minute, "the write load under way", func() bool { return load.Stats().Transactions > 0 })
	// A country the shards reject, and a user the load never touches, to delete behind
	// cleave's back later.
	if _, err := source.ExecContext(ctx, "INSERT INTO "+mysqlx.QuoteTable(db, "countries")+" (code, name, vat_rate) VALUES ('ZZ', 'reject-me', 0)"); err != nil {
		t.Fatal(err)
	}
	res, err := source.ExecContext(ctx, "INSERT INTO "+mysqlx.QuoteTable(db, "users")+
		" (email, name, country, created_at) VALUES ('drift-me@example.com', 'drift-me', 'DE', UTC_TIMESTAMP(6))")
	if err != nil {
		t.Fatal(err)
	}
	driftID, _ := res.LastInsertId()

	// A short outage of shard1: sink retries and breaker states for the error panels.
	shard1.Stop()
	waitFor(t, time.Minute, "/readyz 503 while shard1 is down", cleave, func() bool {
		code, _ := httpGet(cleaveURL + "/readyz")
		return code == http.StatusServiceUnavailable
	})
	waitFor(t, time.Minute, "shard1's sink retrying", cleave, func() bool {
		res, err := promQuery(promURL, `cleave_sink_retries_total{shard="shard1"} > 0`)
		return err == nil && len(res) > 0
	})
	shard1.Start()

	t.Run("every dashboard query returns data", func(t *testing.T) {
		queries, err := DashboardQueries(dashboardPath)
		if err != nil {
			t.Fatal(err)
		}
		vars := map[string]string{"__rate_interval": "20s", "__interval": "5s", "job": "cleave", "shard": ".*", "table": ".*"}
		type pending struct {
			Query
			expr    string
			waitFor bool // data expected; false: a pending metric, no data expected
		}
		var todo []pending
		for _, q := range queries {
			expr, err := Expand(q.Expr, vars)
			if err != nil {
				t.Fatal(err)
			}
			names, err := MetricNames(expr)
			if err != nil {
				t.Fatal(err)
			}
			p := pending{Query: q, expr: expr, waitFor: true}
			for _, n := range names {
				if _, ok := pendingMetrics[n]; ok {
					p.waitFor = false
				}
			}
			todo = append(todo, p)
		}
		deadline := time.Now().Add(2 * time.Minute)
		for {
			var missing []string
			for _, p := range todo {
				if !p.waitFor {
					continue
				}
				res, err := promQuery(promURL, p.expr)
				if err != nil {
					t.Fatalf("%s: %s: %v", p.Where, p.expr, err)
				}
				if len(res) == 0 {
					missing = append(missing, p.Where+": "+p.expr)
				}
			}
			if len(missing) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d dashboard queries returned no data:\n  %s", len(missing), strings.Join(missing, "\n  "))
			}
			time.Sleep(time.Second)
		}
		for _, p := range todo {
			if p.waitFor {
				continue
			}
			res, err := promQuery(promURL, p.expr)
			if err != nil {
				t.Fatalf("%s: %v", p.Where, err)
			}
			if len(res) > 0 {
				t.Errorf("%s now returns data: remove its metrics from pendingMetrics", p.Where)
			}
		}
		t.Logf("%s dashboard queries return data; %s wait for metrics not exported yet", countTrue(todo, func(p pending) bool { return p.waitFor }), countTrue(todo, func(p pending) bool { return !p.waitFor }))
	})

	t.Run("every query reads only metrics cleave run exports", func(t *testing.T) {
		_, body := httpGet(cleaveURL + "/metrics")
		exported, err := ScrapedNames(strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for name, where := range referencedMetrics(t) {
			if _, ok := pendingMetrics[name]; ok {
				if exported[name] {
					t.Errorf("%s is exported now: remove it from pendingMetrics", name)
				}
				continue
			}
			if !exported[name] && !PrometheusNames[name] {
				t.Errorf("%s is not on cleave run's /metrics; read by:\n  %s", name, strings.Join(where, "\n  "))
			}
		}
		var unseen []string
		for name := range documentedMetrics(t) {
			if !exported[name] && pendingMetrics[name] == "" {
				unseen = append(unseen, name)
			}
		}
		sort.Strings(unseen)
		t.Logf("documented metrics not seen in this run (no event of their kind happened): %v", unseen)
	})

	t.Run("a drifted row reaches the webhook through Alertmanager", func(t *testing.T) {
		owner := -1
		waitFor(t, time.Minute, "user drift-me applied to its shard", cleave, func() bool {
			for i, sh := range shards {
				var n int
				if sh.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+mysqlx.QuoteTable(db, "users")+" WHERE id = ?", driftID).Scan(&n) == nil && n == 1 {
					owner = i
					return true
				}
			}
			return false
		})
		usersDrift := map[string]string{"alertname": "CleaveDriftDetected", "table": db + ".users"}
		if a := hook.find(usersDrift); a != nil {
			t.Fatalf("a drift alert on %s.users arrived before any drift was injected: %v", db, a)
		}
		// sql_log_bin=0 keeps the delete out of the shard's own binlog: it is drift, not a
		// change anyone replicates.
		conn, err := shards[owner].Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := conn.ExecContext(ctx, "SET SESSION sql_log_bin = 0"); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.ExecContext(ctx, "DELETE FROM "+mysqlx.QuoteTable(db, "users")+" WHERE id = ?", driftID); err != nil {
			t.Fatal(err)
		}
		injected := time.Now()
		want := map[string]string{"alertname": "CleaveDriftDetected", "table": db + ".users", "shard": fmt.Sprintf("shard%d", owner), "kind": "missing", "severity": "critical"}
		var got map[string]string
		defer func() {
			if t.Failed() {
				_, st := httpGet(cleaveURL + "/status")
				t.Logf("/status:\n%s", st)
				alerts, _ := promQuery(promURL, "ALERTS")
				t.Logf("ALERTS: %s", alerts)
				hook.mu.Lock()
				t.Logf("webhook received: %v", hook.alerts)
				hook.mu.Unlock()
			}
		}()
		waitFor(t, 2*time.Minute, "the drift alert at the webhook", cleave, func() bool {
			got = hook.find(want)
			return got != nil
		})
		t.Logf("drift alert delivered %s after the row was deleted: %v", time.Since(injected).Round(100*time.Millisecond), got)
	})

	t.Run("cleave status prints the running daemon and exits 1 on drift", func(t *testing.T) {
		out, err := exec.CommandContext(ctx, bin, "status", "--config", cfgPath).CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Errorf("cleave status: %v, want exit 1 (the last reconcile found drift)\n%s", err, out)
		}
		for _, want := range []string{"ready: yes", "CAPTURE", "shard0", "shard1", "DRIFT TABLE", db + ".users"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("cleave status output lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("SIGTERM drains cleave run and exits 0", func(t *testing.T) {
		stopLoad()
		loadWG.Wait()
		if err := cleave.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case <-cleave.done:
		case <-time.After(time.Minute):
			t.Fatalf("cleave run did not exit within a minute of SIGTERM\n%s", tail(cleave.log, 20))
		}
		if code := cleave.cmd.ProcessState.ExitCode(); code != 0 {
			t.Fatalf("cleave run exited %d after SIGTERM, want 0\n%s", code, tail(cleave.log, 20))
		}
	})
}

// process is a program the test started; it is killed at the end of the test.
type process struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func startProcess(t *testing.T, logPath, name string, args ...string) *process {
	t.Helper()
	out, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		out.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	p := &process{cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		out.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("last lines of %s:\n%s", filepath.Base(logPath), tail(logPath, 15))
		}
	})
	return p
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitFor polls cond until it holds, failing the test after timeout or as soon as proc,
// which cond depends on, has exited.
func waitFor(t *testing.T, timeout time.Duration, what string, proc *process, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if proc != nil && proc.exited() {
			t.Fatalf("waiting for %s: %s exited\n%s", what, filepath.Base(proc.cmd.Path), tail(proc.log, 20))
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

// httpGet returns the status code and body of url, 0 when it does not answer.
func httpGet(u string) (int, string) {
	resp, err := httpClient.Get(u)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// promQuery runs an instant query and returns its result's series (or the scalar).
func promQuery(base, expr string) ([]json.RawMessage, error) {
	code, body := httpGet(base + "/api/v1/query?query=" + url.QueryEscape(expr))
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		return nil, fmt.Errorf("HTTP %d: %s", code, body)
	}
	if r.Status != "success" {
		return nil, errors.New(r.Error)
	}
	if r.Data.ResultType == "scalar" || r.Data.ResultType == "string" {
		return []json.RawMessage{r.Data.Result}, nil
	}
	var series []json.RawMessage
	if err := json.Unmarshal(r.Data.Result, &series); err != nil {
		return nil, err
	}
	return series, nil
}

// webhook is an Alertmanager webhook receiver that keeps every firing alert it is sent.
type webhook struct {
	url    string
	mu     sync.Mutex
	alerts []map[string]string
}

func newWebhook(t *testing.T) *webhook {
	h := &webhook{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var msg struct {
			Alerts []struct {
				Status string            `json:"status"`
				Labels map[string]string `json:"labels"`
			} `json:"alerts"`
		}
		if err := json.NewDecoder(r.Body).Decode(&msg); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		for _, a := range msg.Alerts {
			if a.Status == "firing" {
				h.alerts = append(h.alerts, a.Labels)
			}
		}
		h.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	h.url = srv.URL + "/alerts"
	return h
}

// find returns the first firing alert received whose labels include want.
func (h *webhook) find(want map[string]string) map[string]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, a := range h.alerts {
		ok := true
		for k, v := range want {
			if a[k] != v {
				ok = false
				break
			}
		}
		if ok {
			return a
		}
	}
	return nil
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func countTrue[T any](xs []T, f func(T) bool) string {
	n := 0
	for _, x := range xs {
		if f(x) {
			n++
		}
	}
	return strconv.Itoa(n)
}
