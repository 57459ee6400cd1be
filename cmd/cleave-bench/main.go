// Command cleave-bench takes the measurements of scripts/bench.sh that no package
// benchmark takes, and renders the table:
//
//	cleave-bench lag    --cleave bin/cleave --out lag.json           end-to-end lag of cleave run
//	cleave-bench peer   --cleave bin/cleave --jars DIR --out peer.json  capture beside Debezium
//	cleave-bench backfill --cleave bin/cleave --out backfill.json    backfill of existing rows
//	cleave-bench cutover --cleave bin/cleave --out cutover.json      write pause of a cut-over
//	cleave-bench gotest --kind capture --in out.txt --out capture.json  a go test -bench output
//	cleave-bench missing --key backfill --title ... --reason ... --out f.json
//	cleave-bench report --md latest.md --json latest.json FIGURES.json...
//
// lag and peer use the local services (scripts/services.sh env) and clean up after
// themselves.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cleave-dev/cleave/internal/bench"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "lag":
		err = lag(ctx, os.Args[2:])
	case "peer":
		err = peer(ctx, os.Args[2:])
	case "backfill":
		err = backfill(ctx, os.Args[2:])
	case "cutover":
		err = cutoverPause(ctx, os.Args[2:])
	case "gotest":
		err = gotest(os.Args[2:])
	case "missing":
		err = missing(os.Args[2:])
	case "report":
		err = report(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "cleave-bench:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: cleave-bench lag|peer|backfill|cutover|gotest|missing|report [flags] (see -h of each)")
	os.Exit(2)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s bench: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func lag(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("lag", flag.ExitOnError)
	cleave := fs.String("cleave", "bin/cleave", "the cleave binary")
	rates := fs.String("rates", "2000,5000", "offered row changes per second, comma-separated; one measurement each")
	duration := fs.Duration("duration", 30*time.Second, "length of each measurement")
	probes := fs.Int("probe-rate", 200, "probe rows per second within the offered rate")
	split := fs.Bool("split", false, "run cleave capture and one cleave sink per shard as separate processes instead of cleave run")
	extra := fs.String("config-extra", "", "YAML appended to the generated cleave configuration (tuning experiments)")
	work := fs.String("work", os.TempDir(), "folder for configs and logs")
	out := fs.String("out", "", "write the figures as JSON here (required)")
	_ = fs.Parse(args)
	if *out == "" {
		return errors.New("lag: --out is required")
	}
	rs, ok := parseRates(*rates, *probes)
	if !ok {
		return fmt.Errorf("lag: --rates %q: want rates above --probe-rate %d", *rates, *probes)
	}
	svc, err := bench.ServicesFromEnv()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*work, 0o755); err != nil {
		return err
	}
	figs, err := bench.Lag(ctx, bench.LagOptions{Services: svc, CleaveBin: *cleave, Rates: rs, Duration: *duration, ProbeRate: *probes, Split: *split, ConfigExtra: *extra, WorkDir: *work, Logf: logf})
	if err != nil {
		return err
	}
	return bench.WriteFigures(*out, figs)
}

func peer(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("peer", flag.ExitOnError)
	cleave := fs.String("cleave", "bin/cleave", "the cleave binary")
	java := fs.String("java", "java", "the java that runs Kafka Connect")
	jars := fs.String("jars", "", "folder of the Kafka Connect and Debezium jars (required)")
	dbzVersion := fs.String("debezium-version", "", "Debezium version, for the table")
	connectVersion := fs.String("connect-version", "", "Kafka Connect version, for the table")
	rows := fs.Int("rows", 1_000_000, "row changes in the backlog")
	work := fs.String("work", os.TempDir(), "folder for configs and logs")
	out := fs.String("out", "", "write the figures as JSON here (required)")
	_ = fs.Parse(args)
	if *out == "" || *jars == "" {
		return errors.New("peer: --out and --jars are required")
	}
	svc, err := bench.ServicesFromEnv()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*work, 0o755); err != nil {
		return err
	}
	figs, err := bench.Peer(ctx, bench.PeerOptions{Services: svc, CleaveBin: *cleave, Java: *java, DebeziumJars: *jars,
		DebeziumVersion: *dbzVersion, ConnectVersion: *connectVersion, Rows: *rows, WorkDir: *work, Logf: logf})
	if err != nil {
		return err
	}
	return bench.WriteFigures(*out, figs)
}

func backfill(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("backfill", flag.ExitOnError)
	cleave := fs.String("cleave", "bin/cleave", "the cleave binary")
	rows := fs.Int("rows", 1_000_000, "rows in the table that exists before cleave starts")
	work := fs.String("work", os.TempDir(), "folder for configs and logs")
	out := fs.String("out", "", "write the figure as JSON here (required)")
	_ = fs.Parse(args)
	if *out == "" {
		return errors.New("backfill: --out is required")
	}
	svc, err := bench.ServicesFromEnv()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*work, 0o755); err != nil {
		return err
	}
	figs, err := bench.Backfill(ctx, bench.BackfillOptions{Services: svc, CleaveBin: *cleave, Rows: *rows, WorkDir: *work, Logf: logf})
	if err != nil {
		return err
	}
	return bench.WriteFigures(*out, figs)
}

func cutoverPause(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("cutover", flag.ExitOnError)
	cleave := fs.String("cleave", "bin/cleave", "the cleave binary")
	rates := fs.String("rates", "1000,5000", "offered row changes per second, comma-separated; one fresh deployment and cut-over each")
	before := fs.Duration("before", 5*time.Second, "how long the application writes before the cut-over starts")
	after := fs.Duration("after", 5*time.Second, "how long it writes to the shards after the cut-over")
	work := fs.String("work", os.TempDir(), "folder for configs and logs")
	out := fs.String("out", "", "write the figures as JSON here (required)")
	_ = fs.Parse(args)
	if *out == "" {
		return errors.New("cutover: --out is required")
	}
	rs, ok := parseRates(*rates, 0)
	if !ok {
		return fmt.Errorf("cutover: --rates %q: want positive rates", *rates)
	}
	svc, err := bench.ServicesFromEnv()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*work, 0o755); err != nil {
		return err
	}
	figs, err := bench.Cutover(ctx, bench.CutoverOptions{Services: svc, CleaveBin: *cleave, Rates: rs, Before: *before, After: *after, WorkDir: *work, Logf: logf})
	if err != nil {
		return err
	}
	return bench.WriteFigures(*out, figs)
}

func gotest(args []string) error {
	fs := flag.NewFlagSet("gotest", flag.ExitOnError)
	kind := fs.String("kind", "", "which benchmark: capture, sink, reconcile or backfill_package")
	in := fs.String("in", "", "the go test -bench output")
	out := fs.String("out", "", "write the figure as JSON here")
	_ = fs.Parse(args)
	f, err := os.Open(*in)
	if err != nil {
		return err
	}
	defer f.Close()
	fig, err := bench.FigureFromGoBench(*kind, f)
	if err != nil {
		return err
	}
	if fig.Missing != "" {
		fig.Missing += " (output: " + *in + ")"
	}
	return bench.WriteFigures(*out, []bench.Figure{fig})
}

func missing(args []string) error {
	fs := flag.NewFlagSet("missing", flag.ExitOnError)
	var fig bench.Figure
	fs.StringVar(&fig.Key, "key", "", "the figure's key")
	fs.StringVar(&fig.Title, "title", "", "the figure's title")
	fs.StringVar(&fig.How, "how", "", "how it would be measured")
	fs.StringVar(&fig.Missing, "reason", "", "why it was not measured")
	out := fs.String("out", "", "write the figure as JSON here")
	_ = fs.Parse(args)
	return bench.WriteFigures(*out, []bench.Figure{fig})
}

// versionFlags collects repeated --version name=value flags.
type versionFlags []bench.Version

func (v *versionFlags) String() string { return fmt.Sprint(*v) }

func (v *versionFlags) Set(s string) error {
	name, ver, ok := strings.Cut(s, "=")
	if !ok {
		return fmt.Errorf("want name=version, got %q", s)
	}
	*v = append(*v, bench.Version{Name: name, Version: ver})
	return nil
}

func report(args []string) error {
	fs := flag.NewFlagSet("report", flag.ExitOnError)
	var versions versionFlags
	fs.Var(&versions, "version", "name=version of a piece of software the run used (repeatable)")
	md := fs.String("md", "", "write the Markdown table here")
	js := fs.String("json", "", "write the JSON report here")
	seconds := fs.Float64("seconds", 0, "how long the whole run took")
	load := fs.String("load", "", "the machine's load average during the run, as text")
	_ = fs.Parse(args)
	r := bench.Report{Date: time.Now().UTC(), Machine: bench.ThisMachine(), Versions: versions, Load: *load, Seconds: *seconds}
	for _, path := range fs.Args() {
		figs, err := bench.ReadFigures(path)
		if err != nil {
			return err
		}
		r.Figures = append(r.Figures, figs...)
	}
	r.SortFigures()
	text := r.Markdown()
	fmt.Print(text)
	if *md != "" {
		if err := os.WriteFile(*md, []byte(text), 0o644); err != nil {
			return err
		}
	}
	if *js != "" {
		return bench.WriteReport(*js, &r)
	}
	return nil
}

// parseRates reads a comma-separated list of rates, each above floor.
func parseRates(list string, floor int) ([]int, bool) {
	var rs []int
	for _, s := range strings.Split(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= floor {
			return nil, false
		}
		rs = append(rs, n)
	}
	return rs, true
}
