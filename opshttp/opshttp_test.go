package opshttp

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestEndpoints(t *testing.T) {
	reg := prometheus.NewRegistry()
	BuildInfo(reg, "1.2.3", "go1.26")
	shardDown := errors.New("dial tcp 127.0.0.1:3309: connection refused")
	var failing error
	s := &Server{
		Gatherer: reg,
		Checks: []Check{
			{Name: "source", Fn: func(context.Context) error { return nil }},
			{Name: "shard shard1", Fn: func(context.Context) error { return failing }},
		},
		Status: func(context.Context) any {
			return map[string]any{"capture": map[string]any{"file": "mysql-bin.000001"}}
		},
	}
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	get := func(path string) (int, string) {
		t.Helper()
		res, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}

	t.Run("healthz answers while alive", func(t *testing.T) {
		if code, _ := get("/healthz"); code != 200 {
			t.Fatalf("healthz = %d", code)
		}
	})
	t.Run("metrics exports build info", func(t *testing.T) {
		_, body := get("/metrics")
		if !strings.Contains(body, `cleave_build_info{goversion="go1.26",version="1.2.3"} 1`) {
			t.Fatalf("metrics:\n%s", body)
		}
	})
	t.Run("readyz is 200 when every check passes", func(t *testing.T) {
		failing = nil
		if code, body := get("/readyz"); code != 200 {
			t.Fatalf("readyz = %d %s", code, body)
		}
	})
	t.Run("readyz is 503 naming the failing dependency", func(t *testing.T) {
		failing = shardDown
		code, body := get("/readyz")
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "shard shard1: dial tcp") || strings.Contains(body, "source") {
			t.Fatalf("readyz = %d %q", code, body)
		}
	})
	t.Run("status is the parts' JSON", func(t *testing.T) {
		_, body := get("/status")
		var doc map[string]map[string]string
		if err := json.Unmarshal([]byte(body), &doc); err != nil || doc["capture"]["file"] != "mysql-bin.000001" {
			t.Fatalf("status = %s (%v)", body, err)
		}
	})
}

func TestProfilerOnlyWhenEnabled(t *testing.T) {
	for _, on := range []bool{false, true} {
		t.Run(map[bool]string{false: "off by default: 404", true: "on: index and heap profile"}[on], func(t *testing.T) {
			ts := httptest.NewServer((&Server{Gatherer: prometheus.NewRegistry(), Pprof: on}).Handler())
			defer ts.Close()
			for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap?debug=1"} {
				res, err := http.Get(ts.URL + path)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(res.Body)
				res.Body.Close()
				want := http.StatusNotFound
				if on {
					want = http.StatusOK
				}
				if res.StatusCode != want {
					t.Fatalf("GET %s = %d, want %d", path, res.StatusCode, want)
				}
				if on && path == "/debug/pprof/heap?debug=1" && !strings.Contains(string(b), "heap profile") {
					t.Fatalf("GET %s: not a heap profile:\n%.300s", path, b)
				}
			}
		})
	}
}
