package bench

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Report is one run of the benchmarks: every figure measured on one machine in one go.
type Report struct {
	Date     time.Time `json:"date"`
	Machine  Machine   `json:"machine"`
	Versions []Version `json:"versions"`
	Figures  []Figure  `json:"figures"`
	// Load is the machine's load average at the start and the end of the run: other
	// work on the machine shows in every figure.
	Load string `json:"load,omitempty"`
	// Seconds is how long the whole run took.
	Seconds float64 `json:"seconds,omitempty"`
}

// figureOrder is the order of the table's rows; figures of other keys follow in the order
// they were given.
var figureOrder = []string{
	"capture_catchup", "capture_catchup_mysql", "peer_catchup", "peer", "sink_apply", "lag_2000", "lag_5000", "lag", "cutover_1000", "cutover_5000", "cutover", "rollback_1000", "rollback_5000",
	"backfill", "backfill_package", "reconcile", "reconcile_mysql", "run_peak_rss", "peer_peak_rss",
}

// SortFigures puts the figures in the table's order.
func (r *Report) SortFigures() {
	rank := func(key string) int {
		for i, k := range figureOrder {
			if k == key {
				return i
			}
		}
		return len(figureOrder)
	}
	sort.SliceStable(r.Figures, func(i, j int) bool { return rank(r.Figures[i].Key) < rank(r.Figures[j].Key) })
}

// Version names one piece of software the run used.
type Version struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// Figure is one row of the table: what cleave did, and what the reference it is compared
// with did in the same run on the same data.
type Figure struct {
	// Key identifies the figure across runs (capture_catchup, lag_2000, ...).
	Key   string `json:"key"`
	Title string `json:"title"`
	// Cleave holds cleave's values; Beside the references' values.
	Cleave []Value `json:"cleave,omitempty"`
	Beside []Value `json:"beside,omitempty"`
	// How says how the figure was measured, in one or two sentences.
	How string `json:"how"`
	// Missing says why the figure could not be measured in this run; the values are then
	// empty.
	Missing string `json:"missing,omitempty"`
}

// Value is one measured number with its unit.
type Value struct {
	// Name says whose value it is when a cell holds more than one ("p50", "bare decode").
	Name  string  `json:"name,omitempty"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
}

func (v Value) String() string {
	if v.Unit == "" {
		return v.Name
	}
	s := formatNumber(v.Value, v.Unit)
	if v.Name != "" {
		return v.Name + " " + s
	}
	return s
}

// formatNumber renders rates as whole numbers with thousands separators, times in
// milliseconds with one decimal below 100, and sizes in MiB.
func formatNumber(x float64, unit string) string {
	switch {
	case math.IsNaN(x) || math.IsInf(x, 0):
		return "n/a"
	case unit == "ms" && x < 100:
		return strconv.FormatFloat(x, 'f', 1, 64) + " ms"
	case strings.HasPrefix(unit, "%"):
		return strconv.FormatFloat(x, 'f', 0, 64) + unit
	case unit == "s":
		return strconv.FormatFloat(x, 'f', 1, 64) + " s"
	}
	return group(int64(math.Round(x))) + " " + unit
}

// group writes n with a comma between each group of three digits.
func group(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func joinValues(vs []Value) string {
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = v.String()
	}
	return strings.Join(parts, "; ")
}

// Markdown renders the report as the table the README copies, with the date, the machine
// and the versions above it and how each figure was measured below it.
func (r *Report) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Measured %s on %s", r.Date.UTC().Format("2006-01-02 15:04 MST"), r.Machine)
	if r.Load != "" {
		fmt.Fprintf(&b, "; load average (1, 5, 15 min) %s", r.Load)
	}
	b.WriteString(".\n\n")
	if len(r.Versions) > 0 {
		parts := make([]string, len(r.Versions))
		for i, v := range r.Versions {
			parts[i] = v.Name + " " + v.Version
		}
		fmt.Fprintf(&b, "Versions: %s.\n\n", strings.Join(parts, ", "))
	}
	b.WriteString("| # | figure | cleave | beside it, same run, same data |\n|---|---|---|---|\n")
	for i, f := range r.Figures {
		cl, bs := joinValues(f.Cleave), joinValues(f.Beside)
		if f.Missing != "" {
			cl, bs = "n/a ("+f.Missing+")", ""
		}
		fmt.Fprintf(&b, "| %d | %s | %s | %s |\n", i+1, cell(f.Title), cell(cl), cell(bs))
	}
	b.WriteString("\nHow each figure is measured:\n\n")
	for i, f := range r.Figures {
		fmt.Fprintf(&b, "%d. %s\n", i+1, f.How)
	}
	if r.Seconds > 0 {
		fmt.Fprintf(&b, "\nThe whole run took %.0f s.\n", r.Seconds)
	}
	return b.String()
}

// cell keeps a table cell on one line and its pipes literal.
func cell(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	return strings.ReplaceAll(s, "|", `\|`)
}

// WriteFigures writes figures as JSON to path, for `cleave-bench report` to collect.
func WriteFigures(path string, figs []Figure) error {
	data, err := json.MarshalIndent(figs, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

// ReadFigures reads what WriteFigures wrote.
func ReadFigures(path string) ([]Figure, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var figs []Figure
	if err := json.Unmarshal(data, &figs); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return figs, nil
}

// WriteReport writes the whole report as JSON to path.
func WriteReport(path string, r *Report) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}
