// Package monitoring reads what cleave ships for its operators — the Prometheus alert
// rules (configs/prometheus/alerts.yml) and the Grafana dashboard
// (configs/grafana/cleave.json) — and takes their PromQL apart: every query, where it is,
// and the metric names it reads. Tests use it to prove that each query parses and reads
// only metrics that a running `cleave run` exports, and to derive a fast copy of the rules
// (short `for:`) that a real Prometheus can fire within a test. It never changes the
// shipped files and is not linked into the cleave binary.
package monitoring

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"
)

// Query is one PromQL expression of a shipped file.
type Query struct {
	// Where names the file and the rule, panel or variable, for messages.
	Where string
	// Expr is the expression as written, Grafana variables included.
	Expr string
}

// RuleFile is a Prometheus rule file.
type RuleFile struct {
	Groups []RuleGroup `yaml:"groups"`
}

// RuleGroup is one group of a rule file.
type RuleGroup struct {
	Name     string `yaml:"name"`
	Interval string `yaml:"interval,omitempty"`
	Rules    []Rule `yaml:"rules"`
}

// Rule is an alerting or recording rule.
type Rule struct {
	Alert       string            `yaml:"alert,omitempty"`
	Record      string            `yaml:"record,omitempty"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for,omitempty"`
	Labels      map[string]string `yaml:"labels,omitempty"`
	Annotations map[string]string `yaml:"annotations,omitempty"`
}

// LoadRules reads a rule file; unknown keys are errors, so a typo cannot hide a rule.
func LoadRules(path string) (*RuleFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var rf RuleFile
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&rf); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &rf, nil
}

// Queries returns the expression of every rule.
func (rf *RuleFile) Queries(file string) []Query {
	var qs []Query
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			name := r.Alert
			if name == "" {
				name = r.Record
			}
			qs = append(qs, Query{Where: fmt.Sprintf("%s: group %s, rule %s", file, g.Name, name), Expr: r.Expr})
		}
	}
	return qs
}

// WithFor returns a copy of the rules with every alert's `for` set to d: the same
// expressions, firing within a test's patience.
func (rf *RuleFile) WithFor(d time.Duration) *RuleFile {
	out := &RuleFile{}
	for _, g := range rf.Groups {
		ng := g
		ng.Rules = nil
		for _, r := range g.Rules {
			if r.Alert != "" {
				r.For = model.Duration(d).String()
			}
			ng.Rules = append(ng.Rules, r)
		}
		out.Groups = append(out.Groups, ng)
	}
	return out
}

// Marshal renders the rules as YAML.
func (rf *RuleFile) Marshal() ([]byte, error) { return yaml.Marshal(rf) }

// dashboard is the part of a Grafana dashboard that holds queries.
type dashboard struct {
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []variable `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID      int      `json:"id"`
	Type    string   `json:"type"`
	Title   string   `json:"title"`
	Targets []target `json:"targets"`
	Panels  []panel  `json:"panels"` // a collapsed row keeps its panels here
}

type target struct {
	RefID string `json:"refId"`
	Expr  string `json:"expr"`
}

type variable struct {
	Name  string          `json:"name"`
	Type  string          `json:"type"`
	Query json.RawMessage `json:"query"`
}

// DashboardQueries returns every PromQL expression of a Grafana dashboard: each panel
// target's expr, and the series selector of each query variable
// (label_values(selector, label)).
func DashboardQueries(path string) ([]Query, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	file := path[strings.LastIndex(path, "/")+1:]
	var qs []Query
	var walk func(ps []panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			for _, t := range p.Targets {
				qs = append(qs, Query{Where: fmt.Sprintf("%s: panel %q (id %d) target %s", file, p.Title, p.ID, t.RefID), Expr: t.Expr})
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, err := variableQuery(v.Query)
		if err != nil {
			return nil, fmt.Errorf("%s: variable %s: %w", file, v.Name, err)
		}
		sel, err := labelValuesSelector(q)
		if err != nil {
			return nil, fmt.Errorf("%s: variable %s: %w", file, v.Name, err)
		}
		if sel != "" {
			qs = append(qs, Query{Where: fmt.Sprintf("%s: variable %s", file, v.Name), Expr: sel})
		}
	}
	return qs, nil
}

// variableQuery accepts both forms Grafana writes: a string, or {"query": "..."}.
func variableQuery(raw json.RawMessage) (string, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var o struct {
		Query string `json:"query"`
	}
	if err := json.Unmarshal(raw, &o); err != nil {
		return "", fmt.Errorf("query is neither a string nor {\"query\": ...}: %w", err)
	}
	return o.Query, nil
}

var labelValuesRe = regexp.MustCompile(`^\s*label_values\((.*)\)\s*$`)

// labelValuesSelector returns the selector of label_values(selector, label), "" for
// label_values(label) (every series), and an error for any other variable query.
func labelValuesSelector(q string) (string, error) {
	m := labelValuesRe.FindStringSubmatch(q)
	if m == nil {
		return "", fmt.Errorf("query %q is not label_values(...)", q)
	}
	args := m[1]
	depth := 0
	for i := len(args) - 1; i >= 0; i-- {
		switch args[i] {
		case ')', '}', ']':
			depth++
		case '(', '{', '[':
			depth--
		case ',':
			if depth == 0 {
				return strings.TrimSpace(args[:i]), nil
			}
		}
	}
	return "", nil
}

// DefaultVars are values for the dashboard's variables that select everything.
var DefaultVars = map[string]string{
	"__rate_interval": "1m",
	"__interval":      "1m",
	"job":             ".*",
	"shard":           ".*",
	"table":           ".*",
}

var varRe = regexp.MustCompile(`\$\{(\w+)(?::\w+)?\}|\$(\w+)`)

// Expand replaces Grafana variables ($name, ${name}, ${name:format}) with vars; a variable
// without a value is an error, so a new variable cannot slip past the tests.
func Expand(expr string, vars map[string]string) (string, error) {
	var missing []string
	out := varRe.ReplaceAllStringFunc(expr, func(m string) string {
		sub := varRe.FindStringSubmatch(m)
		name := sub[1]
		if name == "" {
			name = sub[2]
		}
		v, ok := vars[name]
		if !ok {
			missing = append(missing, name)
			return m
		}
		return v
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("no value for variable(s) %s", strings.Join(missing, ", "))
	}
	return out, nil
}

// MetricNames parses expr (Grafana variables already expanded) and returns the metric
// names its selectors read, sorted. A selector without a metric name is an error: the
// shipped queries always name what they read.
func MetricNames(expr string) ([]string, error) {
	e, err := parser.ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	set := map[string]bool{}
	var nameless []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := vs.Name
		if name == "" {
			for _, m := range vs.LabelMatchers {
				if m.Name == model.MetricNameLabel && m.Type == labels.MatchEqual {
					name = m.Value
				}
			}
		}
		if name == "" {
			nameless = append(nameless, vs.String())
			return nil
		}
		set[name] = true
		return nil
	})
	if len(nameless) > 0 {
		return nil, fmt.Errorf("selector(s) without a metric name: %s", strings.Join(nameless, ", "))
	}
	names := make([]string, 0, len(set))
	for n := range set {
		names = append(names, n)
	}
	sort.Strings(names)
	return names, nil
}

// ScrapedNames returns the series names a /metrics body in the text exposition format
// holds: every family's name, plus _bucket, _sum and _count for histograms and _sum and
// _count for summaries, as Prometheus stores them.
func ScrapedNames(r io.Reader) (map[string]bool, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, err
	}
	names := map[string]bool{}
	for name, f := range fams {
		names[name] = true
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			names[name+"_bucket"] = true
			names[name+"_sum"] = true
			names[name+"_count"] = true
		case dto.MetricType_SUMMARY:
			names[name+"_sum"] = true
			names[name+"_count"] = true
		}
	}
	return names, nil
}

// PrometheusNames are series that Prometheus makes itself for every target, which no
// /metrics body holds.
var PrometheusNames = map[string]bool{
	"up":                                    true,
	"scrape_duration_seconds":               true,
	"scrape_samples_scraped":                true,
	"scrape_samples_post_metric_relabeling": true,
	"scrape_series_added":                   true,
}
