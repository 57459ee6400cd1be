package monitoring

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cleave-dev/cleave/internal/testenv"
)

var (
	rulesPath     = filepath.Join("..", "..", "configs", "prometheus", "alerts.yml")
	rulesTestPath = filepath.Join("..", "..", "configs", "prometheus", "alerts_test.yml")
	dashboardPath = filepath.Join("..", "..", "configs", "grafana", "cleave.json")
)

// shippedQueries returns every query of the shipped rules and dashboard.
func shippedQueries(t *testing.T) []Query {
	t.Helper()
	rf, err := LoadRules(rulesPath)
	if err != nil {
		t.Fatal(err)
	}
	qs := rf.Queries("alerts.yml")
	dq, err := DashboardQueries(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(qs) == 0 || len(dq) == 0 {
		t.Fatalf("found %d rule and %d dashboard queries: the files moved or changed shape", len(qs), len(dq))
	}
	return append(qs, dq...)
}

// documentedMetrics reads testdata/metrics.txt: the metrics cleave exports.
func documentedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "metrics.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	names := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		names[fields[0]] = true
		if len(fields) > 1 && fields[1] == "histogram" {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				names[fields[0]+s] = true
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return names
}

// referencedMetrics parses every shipped query and returns the metric names each reads,
// failing the test for a query that does not parse.
func referencedMetrics(t *testing.T) map[string][]string {
	t.Helper()
	byName := map[string][]string{}
	for _, q := range shippedQueries(t) {
		expr, err := Expand(q.Expr, DefaultVars)
		if err != nil {
			t.Errorf("%s: %v", q.Where, err)
			continue
		}
		names, err := MetricNames(expr)
		if err != nil {
			t.Errorf("%s: %s: %v", q.Where, q.Expr, err)
			continue
		}
		if len(names) == 0 {
			t.Errorf("%s: %s reads no metric", q.Where, q.Expr)
		}
		for _, n := range names {
			byName[n] = append(byName[n], q.Where)
		}
	}
	return byName
}

func TestShippedQueriesParseAndReadOnlyExportedMetrics(t *testing.T) {
	known := documentedMetrics(t)
	for name, where := range referencedMetrics(t) {
		if !known[name] && !PrometheusNames[name] {
			t.Errorf("metric %s is not in testdata/metrics.txt (what cleave exports); read by:\n  %s",
				name, strings.Join(where, "\n  "))
		}
	}
}

// TestShippedQueriesAcceptedByPromtool hands every dashboard query, as a recording rule,
// and the alert rules to the promtool of the Prometheus that the end-to-end test runs: the
// Go parser above is newer, and an older Prometheus must accept the queries too.
func TestShippedQueriesAcceptedByPromtool(t *testing.T) {
	promtool := requireProgram(t, "promtool", "prometheus")
	dq, err := DashboardQueries(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	rf := &RuleFile{Groups: []RuleGroup{{Name: "dashboard"}}}
	for i, q := range dq {
		expr, err := Expand(q.Expr, DefaultVars)
		if err != nil {
			t.Fatalf("%s: %v", q.Where, err)
		}
		rf.Groups[0].Rules = append(rf.Groups[0].Rules, Rule{Record: fmt.Sprintf("dashboard:query_%d", i), Expr: expr})
	}
	body, err := rf.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	dashRules := filepath.Join(t.TempDir(), "dashboard_rules.yml")
	if err := os.WriteFile(dashRules, body, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(promtool, "check", "rules", rulesPath, dashRules).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
}

// TestAlertRuleUnitTests runs the promtool unit tests of the alert rules, so `go test`
// alone catches a broken rule too (make test also runs them through make rules-test).
func TestAlertRuleUnitTests(t *testing.T) {
	promtool := requireProgram(t, "promtool", "prometheus")
	out, err := exec.Command(promtool, "test", "rules", rulesTestPath).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
}

func TestEveryAlertHasSeverityAndDescription(t *testing.T) {
	rf, err := LoadRules(rulesPath)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"CleaveDown", "CleaveCaptureLagHigh", "CleaveSinkLagHigh", "CleaveSinkStopped",
		"CleaveDeadLetters", "CleaveDriftDetected", "CleaveReconcileStale"}
	seen := map[string]bool{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			seen[r.Alert] = true
			if s := r.Labels["severity"]; s != "critical" && s != "warning" {
				t.Errorf("%s: severity %q, want critical or warning", r.Alert, s)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: needs a summary and a description", r.Alert)
			}
		}
	}
	for _, a := range want {
		if !seen[a] {
			t.Errorf("alert %s is missing from alerts.yml", a)
		}
	}
}

func TestWithForChangesOnlyFor(t *testing.T) {
	rf, err := LoadRules(rulesPath)
	if err != nil {
		t.Fatal(err)
	}
	fast := rf.WithFor(2 * time.Second)
	for gi, g := range fast.Groups {
		for ri, r := range g.Rules {
			orig := rf.Groups[gi].Rules[ri]
			if r.Expr != orig.Expr || r.Alert != orig.Alert || len(r.Annotations) != len(orig.Annotations) {
				t.Errorf("rule %s changed beyond its for", orig.Alert)
			}
			if r.Alert != "" && r.For != "2s" {
				t.Errorf("rule %s: for = %q, want 2s", r.Alert, r.For)
			}
		}
	}
	if orig := rf.Groups[0].Rules[0].For; orig == "2s" {
		t.Error("WithFor changed the original rules")
	}
}

func TestExpand(t *testing.T) {
	vars := map[string]string{"job": "cleave", "__rate_interval": "30s"}
	cases := []struct {
		name, in, want, wantErr string
	}{
		{"dollar name", `rate(x{job=~"$job"}[$__rate_interval])`, `rate(x{job=~"cleave"}[30s])`, ""},
		{"braced name and format", `x{job=~"${job}", j="${job:regex}"}`, `x{job=~"cleave", j="cleave"}`, ""},
		{"unknown variable is named", `x{shard=~"$shard"}`, "", "shard"},
		{"no variable", `up`, `up`, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Expand(c.in, vars)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want one naming %q", err, c.wantErr)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("got %q, %v; want %q", got, err, c.want)
			}
		})
	}
}

func TestMetricNames(t *testing.T) {
	cases := []struct {
		name    string
		expr    string
		want    string
		wantErr string
	}{
		{"aggregation over a rate", `sum by (shard) (rate(a_total{shard="x"}[5m]))`, "a_total", ""},
		{"binary operation reads both sides", `time() - b > 3 * c or absent(d)`, "b,c,d", ""},
		{"name given as a matcher", `{__name__="e", job="j"}`, "e", ""},
		{"subquery and offset", `max_over_time(f[10m:1m] offset 5m)`, "f", ""},
		{"selector without a name is refused", `{job="j"}`, "", "without a metric name"},
		{"syntax error is reported", `sum(rate(x[5m])`, "", "unclosed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := MetricNames(c.expr)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, c.wantErr)
				}
				return
			}
			if err != nil || strings.Join(got, ",") != c.want {
				t.Fatalf("got %v, %v; want %s", got, err, c.want)
			}
		})
	}
}

func TestLabelValuesSelector(t *testing.T) {
	cases := []struct{ in, want, wantErr string }{
		{`label_values(up{job=~"a,b"}, instance)`, `up{job=~"a,b"}`, ""},
		{`label_values(cleave_build_info, job)`, `cleave_build_info`, ""},
		{`label_values(job)`, ``, ""},
		{`query_result(up)`, ``, "not label_values"},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			got, err := labelValuesSelector(c.in)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("got %q, %v; want %q", got, err, c.want)
			}
		})
	}
}

// requireProgram returns the path of a program from a Debian package, failing in CI
// (make test installs it) and skipping elsewhere when it is missing.
func requireProgram(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		msg := fmt.Sprintf("%s is not installed (Debian package %s; make test-tools installs it)", name, pkg)
		if testenv.InCI() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return p
}
