package reconcile

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cleave-dev/cleave/internal/testenv"
)

func TestDriftFiresTheWebhookAndMetricsAndAClearRunResolvesIt(t *testing.T) {
	testenv.EachFlavorDatabases(t, testDriftFiresTheWebhook)
}

func testDriftFiresTheWebhook(t *testing.T, env testenv.Env) {
	f := newFixture(t, env, fixtureTable{name: "w", ddl: "id INT NOT NULL PRIMARY KEY, v VARCHAR(10)", strategy: "hash", shardKey: "id"})
	f.exec(f.source, "INSERT INTO %s SELECT seq, 'v' FROM %s", f.q("w"), f.seq(500))
	f.copyRouted("w", "id")

	var mu sync.Mutex
	var got []WebhookMessage
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var m WebhookMessage
		if err := json.Unmarshal(body, &m); err != nil || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("webhook body %s: %v", body, err)
		}
		mu.Lock()
		got = append(got, m)
		mu.Unlock()
	}))
	defer srv.Close()
	f.cfg.Reconcile.WebhookURL = srv.URL
	reg := prometheus.NewRegistry()
	opts := Options{AlertStatePath: filepath.Join(f.dir, "alerts.json")}
	messages := func() []WebhookMessage {
		mu.Lock()
		defer mu.Unlock()
		return append([]WebhookMessage(nil), got...)
	}
	table := f.full("w")

	f.run(opts, WithRegisterer(reg))
	if n := len(messages()); n != 0 {
		t.Fatalf("a consistent run sent %d webhook messages", n)
	}
	if v := metricValue(t, reg, "cleave_reconcile_last_success_timestamp_seconds"); v < float64(time.Now().Add(-time.Hour).Unix()) {
		t.Errorf("last success timestamp %v", v)
	}

	o := f.owner("w", routeValue([]byte("7"), false))[0]
	f.exec(f.shards[o], "DELETE FROM %s WHERE id = 7", f.q("w"))
	shard := f.cfg.Shards[o].Name
	// A new checker on the same registry and alert state, as a scheduled or a second
	// one-shot run would have.
	f.run(opts, WithRegisterer(reg))
	msgs := messages()
	if len(msgs) != 1 || msgs[0].Status != "firing" || len(msgs[0].Alerts) != 1 {
		t.Fatalf("after drift: messages %+v, want one firing alert", msgs)
	}
	a := msgs[0].Alerts[0]
	if a.Labels["alertname"] != AlertName || a.Labels["table"] != table || a.Labels["shard"] != shard || a.Status != "firing" ||
		a.StartsAt.IsZero() || !a.EndsAt.IsZero() || a.Annotations["summary"] == "" {
		t.Errorf("firing alert %+v", a)
	}
	if v := metricValue(t, reg, "cleave_reconcile_drift_rows", "table", table, "shard", shard, "kind", "missing"); v != 1 {
		t.Errorf("drift_rows{kind=missing} = %v, want 1", v)
	}
	if v := metricValue(t, reg, "cleave_reconcile_rows_checked_total", "table", table); v != 1000 {
		t.Errorf("rows_checked_total = %v after two runs of 500 rows", v)
	}

	f.run(Options{Repair: true, AlertStatePath: opts.AlertStatePath}, WithRegisterer(reg))
	msgs = messages()
	if len(msgs) != 2 || msgs[1].Status != "resolved" || len(msgs[1].Alerts) != 1 || msgs[1].Alerts[0].Status != "resolved" ||
		!msgs[1].Alerts[0].StartsAt.Equal(a.StartsAt) || msgs[1].Alerts[0].EndsAt.IsZero() {
		t.Fatalf("after repair: messages %+v, want the alert resolved with its start kept", msgs)
	}
	if v := metricValue(t, reg, "cleave_reconcile_drift_rows", "table", table, "shard", shard, "kind", "missing"); v != 0 {
		t.Errorf("drift_rows{kind=missing} = %v after repair, want 0", v)
	}
	f.run(opts, WithRegisterer(reg))
	if n := len(messages()); n != 2 {
		t.Errorf("a clean run after the resolution sent another message (%d in all)", n)
	}
}

func TestCheckPausesWhileTheSourceIsBusy(t *testing.T) {
	testenv.EachFlavorDatabases(t, testCheckPausesWhileBusy)
}

func testCheckPausesWhileBusy(t *testing.T, env testenv.Env) {
	f := newFixture(t, env, fixtureTable{name: "b", ddl: "id INT NOT NULL PRIMARY KEY", strategy: "broadcast"})
	f.exec(f.source, "INSERT INTO %s SELECT seq FROM %s", f.q("b"), f.seq(100))
	f.copyRouted("b", "")
	// Four sleeping queries keep Threads_running above 2 until they end.
	var wg sync.WaitGroup
	var ended time.Time
	var mu sync.Mutex
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f.source.Exec("SELECT SLEEP(2)")
			mu.Lock()
			ended = time.Now()
			mu.Unlock()
		}()
	}
	busy := func() bool {
		var name string
		var n int
		f.source.QueryRow("SHOW GLOBAL STATUS LIKE 'Threads_running'").Scan(&name, &n)
		return n >= 5
	}
	testenv.Eventually(t, 10*time.Second, "the sleeping queries to run", busy)
	reg := prometheus.NewRegistry()
	rep := f.run(Options{MaxThreadsRunning: 2}, WithRegisterer(reg))
	finished := time.Now()
	wg.Wait()
	if rep.Status != StatusConsistent {
		t.Fatalf("status %s", rep.Status)
	}
	if v := metricValue(t, reg, "cleave_reconcile_throttled_total"); v < 1 {
		t.Errorf("throttled_total = %v: the check did not pause", v)
	}
	mu.Lock()
	defer mu.Unlock()
	if finished.Before(ended) {
		t.Errorf("the check finished at %s, before the load ended at %s", finished, ended)
	}
}

// metricValue is the value of the series name{labels} in reg (0 when absent).
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.Metric {
			have := map[string]string{}
			for _, lp := range m.Label {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range want {
				if have[k] != v {
					continue next
				}
			}
			return m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	return 0
}

// A table's drift_alert_above counts its drifted rows over every shard and kind: at or
// below it the table does not fire (and a firing alert resolves), above it every shard
// with drift fires; other tables keep alerting on any drifted row.
func TestDriftAlertsFireOnlyAboveTheTablesThreshold(t *testing.T) {
	a, err := newAlertState(filepath.Join(t.TempDir(), "alerts.json"))
	if err != nil {
		t.Fatal(err)
	}
	above := func(table string) int {
		if table == "shop.legacy" {
			return 3
		}
		return 0
	}
	run := func(legacy0, legacy1, users int) *WebhookMessage {
		rep := &Report{Tables: []*TableReport{
			{Table: "shop.legacy", Shards: []*ShardReport{
				{Shard: "s0", Drift: map[Kind]int{Missing: legacy0}},
				{Shard: "s1", Drift: map[Kind]int{Changed: legacy1}}}},
			{Table: "shop.users", Shards: []*ShardReport{{Shard: "s0", Drift: map[Kind]int{Extra: users}}}},
		}}
		return a.alertsFor(rep, time.Date(2026, 1, 3, 0, 0, 0, 0, time.UTC), above)
	}
	alerts := func(msg *WebhookMessage) []string {
		var out []string
		if msg != nil {
			for _, al := range msg.Alerts {
				out = append(out, al.Labels["table"]+" "+al.Labels["shard"]+" "+al.Status)
			}
		}
		return out
	}
	for _, step := range []struct {
		name                   string
		legacy0, legacy1, user int
		want                   []string
	}{
		{"three drifted rows of the legacy table, at its threshold: no alert", 2, 1, 0, nil},
		{"one drifted row of another table alerts at once", 2, 1, 1, []string{"shop.users s0 firing"}},
		{"four rows of the legacy table: both of its shards fire", 3, 1, 1, []string{"shop.legacy s0 firing", "shop.legacy s1 firing", "shop.users s0 firing"}},
		{"back to three: the legacy alerts resolve", 3, 0, 1, []string{"shop.users s0 firing", "shop.legacy s0 resolved", "shop.legacy s1 resolved"}},
	} {
		if got := alerts(run(step.legacy0, step.legacy1, step.user)); !slices.Equal(got, step.want) {
			t.Errorf("%s: alerts %v, want %v", step.name, got, step.want)
		}
	}
}
