package main

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cleave-dev/cleave/daemon"
)

// fakeDaemon serves a /status document and a /readyz answer as cleave run does.
func fakeDaemon(t *testing.T, st daemon.Status, readyz int, readyBody string) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(st)
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(readyz)
		_, _ = w.Write([]byte(readyBody))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

func sampleStatus(drift int) daemon.Status {
	lag := 0.42
	eta := 95.0
	now := time.Now().UTC()
	done := now.Add(-2 * time.Minute)
	next := now.Add(40 * time.Second)
	st := daemon.Status{
		Version: "1.2.3", StartedAt: now.Add(-time.Hour), UptimeSeconds: 3600,
		Source: daemon.Endpoint{Addr: "10.0.0.1:3306", Flavor: "mariadb"},
		Kafka:  daemon.KafkaStatus{Brokers: []string{"k1:9092"}, TopicPrefix: "cleave"},
		Capture: daemon.CaptureStatus{Streaming: true, Read: "bin.000003:1234", Acknowledged: "bin.000003:1200",
			Stored: "bin.000003:1100", LagSeconds: 0.3, Events: 5000},
		Shards: []daemon.ShardStatus{
			{Name: "s0", Addr: "10.0.0.2:3306", LagSeconds: &lag, ConsumerLag: 12, Breaker: "closed", Applied: 2500},
			{Name: "s1", Addr: "10.0.0.3:3306", ConsumerLag: 900, Breaker: "open", Applied: 10, Retries: 7, DeadLetters: 1},
		},
		Backfill: []daemon.TableBackfill{{Table: "shop.users", Progress: 0.25, RowsCopied: 250, ETASeconds: &eta}},
		Reconcile: daemon.ReconcileStatus{Interval: "1m0s", NextAt: &next, LastSuccessAt: &done,
			Last: &daemon.ReconcileRun{Status: "consistent", StartedAt: done.Add(-3 * time.Second), FinishedAt: done,
				Tables: []daemon.ReconcileTable{{Table: "shop.users", RowsChecked: 1000}}}},
	}
	if drift > 0 {
		st.Reconcile.Last.Status, st.Reconcile.Last.DriftRows = "drift", drift
		st.Reconcile.Last.Tables[0].DriftRows = drift
		st.Reconcile.Last.Drift = []daemon.DriftCount{{Table: "shop.users", Shard: "s1", Kind: "missing", Rows: drift}}
	}
	return st
}

func TestStatusCommand(t *testing.T) {
	cases := []struct {
		name      string
		status    daemon.Status
		readyz    int
		readyBody string
		args      []string
		wantCode  int
		want      []string
	}{
		{
			name: "a ready daemon without drift prints its tables and exits 0", status: sampleStatus(0), readyz: 200, readyBody: "ready\n",
			wantCode: exitOK,
			want: []string{"cleave 1.2.3 at http://", "up 1h0m", "source 10.0.0.1:3306 (mariadb), kafka k1:9092, topic prefix cleave",
				"ready: yes", "CAPTURE", "streaming, lag 300ms, 5000 events", "stored        bin.000003:1100",
				"s0     10.0.0.2:3306  400ms  12", "s1     10.0.0.3:3306  -      900", "open", "shop.users  25.0%     250          1m35s",
				"every 1m0s, next in 4", "last success  2m0s ago", "consistent, 0 drifted rows"},
		},
		{
			name: "a daemon that is not ready names why and exits 1", status: sampleStatus(0), readyz: 503,
			readyBody: "not ready: shard s1 10.0.0.3:3306: connection refused\n", wantCode: exitFinding,
			want: []string{"ready: NO", "  shard s1 10.0.0.3:3306: connection refused"},
		},
		{
			name: "drift in the last reconcile is listed and exits 1", status: sampleStatus(3), readyz: 200, readyBody: "ready\n",
			wantCode: exitFinding,
			want:     []string{"drift, 3 drifted rows", "DRIFT TABLE  SHARD  KIND     ROWS", "shop.users   s1     missing  3"},
		},
		{
			name: "--json prints the document as served", status: sampleStatus(0), readyz: 200, readyBody: "ready\n",
			args: []string{"--json"}, wantCode: exitOK,
			want: []string{`"version":"1.2.3"`, `"consumer_lag_messages":900`},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			url := fakeDaemon(t, c.status, c.readyz, c.readyBody)
			out, errOut, code := runCleave(t, append([]string{"status", "--url", url}, c.args...)...)
			if code != c.wantCode {
				t.Errorf("exit %d, want %d; stderr: %s", code, c.wantCode, errOut)
			}
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

func TestStatusCommandNamesAnUnreachableDaemon(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	_, errOut, code := runCleave(t, "status", "--url", "http://"+addr)
	if code != exitCannot || !strings.Contains(errOut, "cleave run does not answer at http://"+addr+"/status") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}

func TestStatusURLReachesAWildcardListener(t *testing.T) {
	cases := map[string]string{
		"0.0.0.0:9466":   "http://127.0.0.1:9466",
		":9466":          "http://127.0.0.1:9466",
		"[::]:9466":      "http://127.0.0.1:9466",
		"10.0.0.5:9466":  "http://10.0.0.5:9466",
		"localhost:9466": "http://localhost:9466",
	}
	for listen, want := range cases {
		if got := statusURL(listen); got != want {
			t.Errorf("statusURL(%q) = %q, want %q", listen, got, want)
		}
	}
}
