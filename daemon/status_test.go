package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/internal/testenv/deploy"
	"github.com/cleave-dev/cleave/reconcile"
)

// TestStatusNamesAddressesNeverPasswords builds a daemon (New connects to nothing) and
// checks that its /status document holds each server's address and no password.
func TestStatusNamesAddressesNeverPasswords(t *testing.T) {
	c := deploy.Defaults(t)
	c.Source.DSN, c.Source.ServerID = "capture:src-Secret-1@tcp(10.1.2.3:3306)/", 4001
	c.Kafka.Brokers = []string{"10.1.2.4:9092"}
	c.Shards = []config.Shard{
		{Name: "s0", DSN: "app:shard-Secret-2@tcp(10.1.2.5:3306)/"},
		{Name: "s1", DSN: "app:shard-Secret-3@tcp(10.1.2.6:3306)/"},
	}
	c.Tables = []config.Table{{Name: "shop.users", ShardKey: "id", Strategy: config.StrategyHash}}
	c.Reconcile.Interval = 90 * time.Second
	_, cfg := deploy.Write(t, c)
	d, err := New(cfg, Options{Version: "v-test"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(d.Status(context.Background()))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	for _, secret := range []string{"src-Secret-1", "shard-Secret-2", "shard-Secret-3", "@tcp("} {
		if strings.Contains(doc, secret) {
			t.Errorf("/status holds %q:\n%s", secret, doc)
		}
	}
	for _, want := range []string{`"addr":"10.1.2.3:3306"`, `"addr":"10.1.2.5:3306"`, `"addr":"10.1.2.6:3306"`,
		`"version":"v-test"`, `"interval":"1m30s"`, `"breaker":"closed"`} {
		if !strings.Contains(doc, want) {
			t.Errorf("/status lacks %s:\n%s", want, doc)
		}
	}
}

func TestSummarizeCountsDriftWithoutKeys(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	rep := &reconcile.Report{
		Status: reconcile.StatusDrift,
		Tables: []*reconcile.TableReport{
			{
				Table: "shop.users", RowsChecked: 100,
				Shards: []*reconcile.ShardReport{
					{Shard: "s0", Drift: map[reconcile.Kind]int{reconcile.Missing: 2, reconcile.Changed: 1}},
					{Shard: "s1", Drift: map[reconcile.Kind]int{}},
				},
				Drift: []reconcile.DriftRow{
					{Kind: reconcile.Missing, Shard: "s0", Key: []any{"4111-1111-1111-1111"}},
					{Kind: reconcile.Missing, Shard: "s0", Key: []any{2}},
					{Kind: reconcile.Changed, Shard: "s0", Key: []any{3}},
				},
				InFlight: []reconcile.InFlightRow{{Key: []any{9}}},
			},
			{Table: "shop.orders", Error: "source unreachable"},
		},
	}
	cases := []struct {
		name       string
		rep        *reconcile.Report
		err        error
		wantStatus string
		wantDrift  int
	}{
		{"drift is counted per table, shard and kind", rep, nil, "drift", 3},
		{"an error without a report is an error run", nil, errors.New("boom"), "error", 0},
		{"an error with a report keeps the counts", rep, errors.New("late"), "error", 3},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			run := summarize(c.rep, c.err, start, start.Add(time.Second))
			if run.Status != c.wantStatus || run.DriftRows != c.wantDrift {
				t.Fatalf("status %s drift %d, want %s %d", run.Status, run.DriftRows, c.wantStatus, c.wantDrift)
			}
			if c.rep == nil {
				return
			}
			want := []DriftCount{{"shop.users", "s0", "missing", 2}, {"shop.users", "s0", "changed", 1}}
			if len(run.Drift) != len(want) || run.Drift[0] != want[0] || run.Drift[1] != want[1] {
				t.Errorf("drift = %+v, want %+v", run.Drift, want)
			}
			if run.Tables[0].InFlight != 1 || run.Tables[1].Error != "source unreachable" {
				t.Errorf("tables = %+v", run.Tables)
			}
			b, _ := json.Marshal(run)
			if strings.Contains(string(b), "4111") {
				t.Errorf("the summary shows a row key: %s", b)
			}
		})
	}
}
