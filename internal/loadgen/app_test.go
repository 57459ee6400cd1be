package loadgen

import (
	"testing"
	"time"
)

func TestCentsAndDecimalRoundTrip(t *testing.T) {
	for _, s := range []string{"0.00", "0.07", "12.50", "-3.05", "9999999999.99"} {
		c, err := cents(s)
		if err != nil {
			t.Fatalf("cents(%q): %v", s, err)
		}
		if got := decimal(c); got != s {
			t.Errorf("decimal(cents(%q)) = %q", s, got)
		}
	}
	for _, bad := range []string{"", "1.5", "x.00", "1.000"} {
		if _, err := cents(bad); err == nil {
			t.Errorf("cents(%q) took a value that is not DECIMAL(12,2)", bad)
		}
	}
}

func TestPauseOfCountsTheTransactionsThatOverlapTheWindow(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	samples := []Sample{
		{Start: at(0), Latency: ms(5)},      // ends before the window
		{Start: at(90), Latency: ms(400)},   // waited through it
		{Start: at(150), Latency: ms(300)},  // began inside it
		{Start: at(300), Latency: ms(2)},    // began after it
		{Start: at(95), Latency: ms(5)},     // ends at its start: overlaps
		{Start: at(1000), Latency: ms(900)}, // long after
	}
	in := PauseOf(samples, at(100), at(200))
	if in.N != 3 || in.P50 != ms(300) || in.P99 != ms(400) || in.Max != ms(400) {
		t.Errorf("in the window: %+v, want 3 transactions, p50 300ms, p99 and max 400ms", in)
	}
	all := PauseOf(samples, time.Time{}, time.Time{})
	if all.N != 6 || all.P50 != ms(5) || all.Max != ms(900) {
		t.Errorf("overall: %+v, want 6 transactions, p50 5ms, max 900ms", all)
	}
	if none := PauseOf(nil, at(0), at(1)); none.N != 0 {
		t.Errorf("no samples: %+v", none)
	}
}
