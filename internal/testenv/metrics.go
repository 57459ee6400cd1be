package testenv

import (
	"testing"

	dto "github.com/prometheus/client_model/go"
)

// Gatherer is what MetricSum reads: a Prometheus registry.
type Gatherer interface {
	Gather() ([]*dto.MetricFamily, error)
}

// MetricSum adds up the gauge and counter samples of the metric name in g whose labels
// include every pair of want (nil: all of them); 0 when there are none.
func MetricSum(t testing.TB, g Gatherer, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if !hasLabels(m, want) {
				continue
			}
			switch {
			case m.GetGauge() != nil:
				sum += m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	for k, v := range want {
		found := false
		for _, lp := range m.GetLabel() {
			if lp.GetName() == k && lp.GetValue() == v {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}
