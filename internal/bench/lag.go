package bench

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/segmentio/kafka-go"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/cleave-dev/cleave/event"
	"github.com/cleave-dev/cleave/internal/loadgen"
	"github.com/cleave-dev/cleave/internal/testenv/core"
	"github.com/cleave-dev/cleave/kafkax"
	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/shardmeta"
)

// LagOptions configure the end-to-end lag measurement.
type LagOptions struct {
	Services  core.Env
	CleaveBin string
	// Rates are the offered row changes per second, one measurement each.
	Rates []int
	// Duration of each measurement.
	Duration time.Duration
	// ProbeRate is how many of the offered rows per second are probe rows, the rows whose
	// lag is measured; the loadgen writes the rest. Default 200.
	ProbeRate int
	// SeedUsers seeds the shop before cleave starts (about 7 rows per user). Default 2000.
	SeedUsers int
	// Split runs `cleave capture` and one `cleave sink` per shard as separate processes
	// instead of one `cleave run`, to tell their costs apart.
	Split bool
	// ConfigExtra is YAML appended to the generated configuration, for tuning
	// experiments ("capture:\n  batch_size: 100\n").
	ConfigExtra string
	WorkDir     string
	Logf        func(format string, args ...any)
}

// pollEvery is how often the shards are asked for new probe rows: the measured lag is at
// most this much above the true one.
const pollEvery = 20 * time.Millisecond

// Lag runs `cleave run` (capture, both shard sinks) on a seeded shop, offers each rate of
// o.Rates for o.Duration as the loadgen's application-like transactions plus probe rows,
// and measures each probe row's lag: the time it is first seen on its shard minus its
// source commit time. It ends with the peak RSS of the cleave run process.
func Lag(ctx context.Context, o LagOptions) ([]Figure, error) {
	if o.ProbeRate <= 0 {
		o.ProbeRate = 200
	}
	if o.SeedUsers <= 0 {
		o.SeedUsers = 2000
	}
	logf := o.Logf
	src, shards, err := openAll(ctx, o.Services)
	if err != nil {
		return nil, err
	}
	defer func() {
		src.Close()
		for _, s := range shards {
			s.Close()
		}
	}()
	db := "cleave_bench_lag_" + core.RandomHex(4)
	prefix := "cleave-bench-lag-" + core.RandomHex(4)
	defer cleanupLag(src, shards, db, prefix, o)

	if err := loadgen.CreateSchema(ctx, src, db); err != nil {
		return nil, err
	}
	seeded, err := loadgen.Seed(ctx, src, db, o.SeedUsers, 1)
	if err != nil {
		return nil, err
	}
	if _, err := src.ExecContext(ctx, "CREATE TABLE "+mysqlx.QuoteTable(db, "lag_probe")+
		" (id BIGINT NOT NULL PRIMARY KEY, ts DATETIME(6) NOT NULL, pad VARCHAR(64) NOT NULL) ENGINE=InnoDB"); err != nil {
		return nil, fmt.Errorf("create the probe table: %w", err)
	}
	logf("lag: seeded %s with %d rows", db, seeded)

	port, err := core.FreePort()
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(o.WorkDir, "lag-cleave.yaml")
	tables := []tableConfig{
		{Name: db + ".countries", Strategy: "broadcast"},
		{Name: db + ".users", Strategy: "hash", ShardKey: "id"},
		{Name: db + ".orders", Strategy: "hash", ShardKey: "user_id"},
		{Name: db + ".order_items", Strategy: "hash", ShardKey: "user_id"},
		{Name: db + ".lag_probe", Strategy: "hash", ShardKey: "id"},
	}
	// No scheduled reconcile: its reads would be measured as the sinks' lag.
	if err := writeConfig(cfgPath, o.Services, prefix, randomServerID(), "127.0.0.1:"+itoa(port), tables, "reconcile:\n  interval: 0s\n"+o.ConfigExtra); err != nil {
		return nil, err
	}
	probeTopic := kafkax.TableTopic(prefix, db, "lag_probe")
	prep := exec.CommandContext(ctx, o.CleaveBin, "prepare", "--config", cfgPath)
	prep.Env = cleanEnv()
	if out, err := prep.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("cleave prepare: %v\n%s", err, out)
	}
	run, err := startCleave(o, cfgPath)
	defer run.stop(time.Minute)
	if err != nil {
		return nil, err
	}
	if err := waitHTTP(ctx, run[0], fmt.Sprintf("http://127.0.0.1:%d/readyz", port), 2*time.Minute); err != nil {
		return nil, err
	}
	// Ready is reachability; rows count from the position capture starts streaming at.
	if err := waitStreaming(ctx, run, fmt.Sprintf("http://127.0.0.1:%d/status", port), 2*time.Minute); err != nil {
		return nil, err
	}

	tr := &probeTracker{table: mysqlx.QuoteTable(db, "lag_probe"), shards: shards, seen: map[int64]float64{}}
	pollCtx, stopPoll := context.WithCancel(ctx)
	pollDone := make(chan error, 1)
	go func() { pollDone <- tr.run(pollCtx) }()
	defer func() {
		stopPoll()
		<-pollDone
	}()
	pw := &probeWriter{db: src, table: tr.table}

	// Warm-up: cleave is current (and done with any copy of the seeded rows) once probes
	// written now arrive.
	if err := pw.write(ctx, 50, 2*time.Second); err != nil {
		return nil, err
	}
	if missing := tr.waitAll(ctx, pw.last, 3*time.Minute, run); missing > 0 {
		return nil, fmt.Errorf("warm-up: %d probe rows did not reach the shards within 3 minutes (logs: %s)", missing, run.logs())
	}
	logf("lag: %s current (warm-up probes arrived)", run.names())

	var figs []Figure
	var spans [][2]int64 // the probe ids of each rate
	for _, offered := range o.Rates {
		first := pw.last + 1
		f, err := lagAt(ctx, o, src, db, offered, tr, pw, run)
		if err != nil {
			return figs, err
		}
		figs = append(figs, f)
		spans = append(spans, [2]int64{first, pw.last})
	}
	// Capture's part of each probe's lag: when its event was sent to Kafka.
	inKafka, err := kafkaArrivals(ctx, o.Services.KafkaBrokers, probeTopic)
	if err != nil {
		logf("lag: reading the probe topic for capture's part of the lag: %v", err)
	}
	for i, sp := range spans {
		var ls []float64
		for id := sp[0]; id <= sp[1]; id++ {
			if l, ok := inKafka[id]; ok {
				ls = append(ls, l)
			}
		}
		if len(ls) == 0 || figs[i].Missing != "" {
			continue
		}
		sort.Float64s(ls)
		figs[i].Beside = append(figs[i].Beside,
			Value{Name: "of which source → Kafka p50", Value: percentile(ls, 50), Unit: "ms"},
			Value{Name: "p99", Value: percentile(ls, 99), Unit: "ms"})
		logf("lag: %s: source → Kafka p50 %.1f ms, p99 %.1f ms", figs[i].Key, percentile(ls, 50), percentile(ls, 99))
	}
	rssFig := Figure{Key: "run_peak_rss", Title: "peak RSS of `cleave run` (capture + 2 sinks + HTTP) through the lag measurements",
		How: "VmHWM of the `cleave run` process (/proc/<pid>/status) at the end of the last lag measurement: the highest resident set it reached while serving every offered rate."}
	if o.Split {
		rssFig.Title = "peak RSS of `cleave capture` and each `cleave sink` through the lag measurements"
		rssFig.How = "VmHWM of each process (/proc/<pid>/status) at the end of the last lag measurement."
	}
	for _, p := range run {
		rss, err := PeakRSS(p.Pid())
		if err != nil {
			rssFig.Cleave, rssFig.Missing = nil, err.Error()
			break
		}
		v := Value{Value: float64(rss) / (1 << 20), Unit: "MiB"}
		if o.Split {
			v.Name = p.Name
		}
		rssFig.Cleave = append(rssFig.Cleave, v)
		logf("lag: peak RSS of %s: %d MiB", p.Name, rss>>20)
	}
	figs = append(figs, rssFig)
	if err := run.stop(time.Minute); err != nil {
		logf("lag: %v", err)
	}
	return figs, nil
}

// lagAt offers offered row changes per second for o.Duration and measures the probes.
func lagAt(ctx context.Context, o LagOptions, src *sql.DB, db string, offered int, tr *probeTracker, pw *probeWriter, run processes) (Figure, error) {
	f := Figure{
		Key:   fmt.Sprintf("lag_%d", offered),
		Title: fmt.Sprintf("end-to-end lag at %s row changes/s offered, source commit → row visible on its shard", group(int64(offered))),
		How: fmt.Sprintf("`cleave run` (capture and both shard sinks, default batching, scheduled reconcile off) on a seeded shop; for %s the loadgen writes %s row changes/s of application-like transactions "+
			"(new orders with items, status and balance updates, deletes, orders moving to another user; 8 writers) and one writer adds %d probe rows/s "+
			"(`INSERT … ts = UTC_TIMESTAMP(6)`, autocommit). Two pollers read the shards every %s for new probe rows; a probe's lag is the shard's UTC_TIMESTAMP(6) when first seen minus its ts "+
			"(one clock; an upper bound by at most one poll interval). Percentiles over every probe of the run; "+
			"the source → Kafka part is each probe event's record timestamp in its topic (stamped by kafka-go as capture's produce request is encoded) minus its ts.",
			o.Duration, group(int64(offered-o.ProbeRate)), o.ProbeRate, pollEvery),
	}
	first := pw.last + 1
	loadCtx, cancel := context.WithTimeout(ctx, o.Duration)
	defer cancel()
	l := &loadgen.Load{DB: src, Database: db, Rate: offered - o.ProbeRate, Workers: 8, Seed: uint64(offered)}
	began := time.Now()
	g, gctx := errgroup.WithContext(loadCtx)
	g.Go(func() error {
		_, err := l.Run(gctx)
		return err
	})
	g.Go(func() error { return pw.write(gctx, o.ProbeRate, o.Duration) })
	err := g.Wait()
	elapsed := time.Since(began)
	if err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		return f, fmt.Errorf("write load at %d rows/s: %w", offered, err)
	}
	last := pw.last
	missing := tr.waitAll(ctx, last, 2*time.Minute, run)
	lags := tr.lags(first, last)
	if len(lags) == 0 {
		f.Missing = fmt.Sprintf("no probe row reached the shards (logs: %s)", run.logs())
		return f, nil
	}
	achieved := float64(l.Stats().Rows()+(last-first+1)) / elapsed.Seconds()
	f.Cleave = []Value{
		{Name: "p50", Value: percentile(lags, 50), Unit: "ms"},
		{Name: "p99", Value: percentile(lags, 99), Unit: "ms"},
		{Name: "max", Value: lags[len(lags)-1], Unit: "ms"},
	}
	f.Beside = []Value{
		{Name: "achieved", Value: achieved, Unit: "row changes/s"},
		{Name: "probes", Value: float64(len(lags)), Unit: "rows"},
	}
	if missing > 0 {
		f.Beside = append(f.Beside, Value{Name: fmt.Sprintf("%d probe rows never arrived within 2 minutes", missing)})
	}
	o.Logf("lag: %d/s offered (%.0f/s achieved): p50 %.1f ms, p99 %.1f ms, max %.1f ms over %d probes",
		offered, achieved, percentile(lags, 50), percentile(lags, 99), lags[len(lags)-1], len(lags))
	return f, nil
}

// kafkaArrivals reads every probe event in topic and returns, by probe id, the time in ms
// from its source commit (the row's ts) to the record's timestamp. capture leaves that
// timestamp to kafka-go, which stamps the records of a batch when it encodes the produce
// request: the moment the event left for Kafka. (kafka-go reads the record timestamps and
// ignores a batch's LogAppendTime, so the broker's own append time is out of reach.)
func kafkaArrivals(ctx context.Context, brokers []string, topic string) (map[int64]float64, error) {
	out := map[int64]float64{}
	err := core.ReadTopic(ctx, brokers, topic, func(m kafka.Message) {
		ev, err := event.Unmarshal(m.Value)
		if err != nil || ev.Op != event.OpCreate {
			return
		}
		idText, _ := ev.After["id"].(json.Number)
		tsText, _ := ev.After["ts"].(string)
		id, err1 := idText.Int64()
		ts, err2 := time.Parse("2006-01-02 15:04:05.999999", tsText)
		if err1 != nil || err2 != nil {
			return
		}
		out[id] = float64(m.Time.Sub(ts).Microseconds()) / 1000
	})
	return out, err
}

// startCleave starts `cleave run`, or with o.Split `cleave capture` (first, serving
// http.listen) and one `cleave sink` per shard. The processes started are returned even
// on an error, for the caller to stop.
func startCleave(o LagOptions, cfgPath string) (processes, error) {
	env := cleanEnv()
	log := func(name string) string {
		return filepath.Join(o.WorkDir, "lag-"+strings.ReplaceAll(name, " ", "-")+".log")
	}
	if !o.Split {
		p, err := core.Start(core.Command{Name: "cleave run", Argv: []string{o.CleaveBin, "run", "--config", cfgPath}, Env: env, Log: log("cleave run")})
		if err != nil {
			return nil, err
		}
		return processes{p}, nil
	}
	var ps processes
	p, err := core.Start(core.Command{Name: "cleave capture", Argv: []string{o.CleaveBin, "capture", "--config", cfgPath}, Env: env, Log: log("cleave capture")})
	if err != nil {
		return ps, err
	}
	ps = append(ps, p)
	for i := range o.Services.ShardDSNs() {
		name := fmt.Sprintf("cleave sink s%d", i)
		argv := []string{o.CleaveBin, "sink", "--shard", fmt.Sprintf("s%d", i), "--listen", "", "--config", cfgPath}
		p, err := core.Start(core.Command{Name: name, Argv: argv, Env: env, Log: log(name)})
		if err != nil {
			return ps, err
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// waitStreaming polls cleave's /status until capture streams from the binlog.
func waitStreaming(ctx context.Context, run processes, url string, timeout time.Duration) error {
	var last error
	err := core.Poll(ctx, 100*time.Millisecond, timeout, func() (bool, error) {
		var st struct {
			Capture struct {
				Streaming bool `json:"streaming"`
			} `json:"capture"`
		}
		last = restCall(ctx, http.MethodGet, url, nil, &st)
		if last == nil && st.Capture.Streaming {
			return true, nil
		}
		return false, run.check()
	})
	if errors.Is(err, core.ErrTimeout) {
		return fmt.Errorf("capture in %s was not streaming within %s (last: %v; log: %s)", run[0].Name, timeout, last, run[0].Log)
	}
	return err
}

// percentile is the nearest-rank percentile of sorted values.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// probeWriter inserts probe rows with consecutive ids, one autocommit statement each.
type probeWriter struct {
	db    *sql.DB
	table string
	last  int64 // id of the last probe written
}

// write inserts perSecond probes per second for d (or until ctx ends).
func (w *probeWriter) write(ctx context.Context, perSecond int, d time.Duration) error {
	lim := rate.NewLimiter(rate.Limit(perSecond), 1)
	deadline := time.Now().Add(d)
	stmt, err := w.db.PrepareContext(ctx, "INSERT INTO "+w.table+" (id, ts, pad) VALUES (?, UTC_TIMESTAMP(6), ?)")
	if err != nil {
		return fmt.Errorf("prepare the probe insert: %w", err)
	}
	defer stmt.Close()
	defer func() {
		// An insert cut short by the end of the measurement may have committed: the
		// source's count is the truth.
		_ = w.db.QueryRow("SELECT COALESCE(MAX(id), 0) FROM " + w.table).Scan(&w.last)
	}()
	for time.Now().Before(deadline) {
		if err := lim.Wait(ctx); err != nil {
			return nil // the measurement ended
		}
		id := w.last + 1
		if _, err := stmt.ExecContext(ctx, id, fmt.Sprintf("probe %d", id)); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("insert probe row %d: %w", id, err)
		}
		w.last = id
	}
	return nil
}

// probeTracker polls the shards for probe rows and keeps each one's lag when first seen.
type probeTracker struct {
	table  string
	shards []*sql.DB

	mu   sync.Mutex
	seen map[int64]float64 // id -> lag in ms
	low  int64             // every id up to low has been seen
}

func (t *probeTracker) run(ctx context.Context) error {
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		t.mu.Lock()
		low := t.low
		t.mu.Unlock()
		var wg sync.WaitGroup
		for _, s := range t.shards {
			wg.Add(1)
			go func() {
				defer wg.Done()
				t.poll(ctx, s, low)
			}()
		}
		wg.Wait()
	}
}

// poll reads the probes above low on one shard; the lag is computed by the shard at the
// query, against the same clock that stamped ts on the source.
func (t *probeTracker) poll(ctx context.Context, s *sql.DB, low int64) {
	rows, err := s.QueryContext(ctx, "SELECT id, TIMESTAMPDIFF(MICROSECOND, ts, UTC_TIMESTAMP(6)) FROM "+t.table+" WHERE id > ?", low)
	if err != nil {
		return // the table may not exist on the shard yet; the next poll tries again
	}
	defer rows.Close()
	for rows.Next() {
		var id, us int64
		if rows.Scan(&id, &us) != nil {
			return
		}
		t.mu.Lock()
		if _, ok := t.seen[id]; !ok {
			t.seen[id] = float64(us) / 1000
			for {
				if _, ok := t.seen[t.low+1]; !ok {
					break
				}
				t.low++
			}
		}
		t.mu.Unlock()
	}
}

// waitAll waits until every probe up to last has been seen, and returns how many had not
// when timeout passed.
func (t *probeTracker) waitAll(ctx context.Context, last int64, timeout time.Duration, run processes) int64 {
	deadline := time.Now().Add(timeout)
	for {
		t.mu.Lock()
		low := t.low
		missing := int64(0)
		if low < last {
			for id := low + 1; id <= last; id++ {
				if _, ok := t.seen[id]; !ok {
					missing++
				}
			}
		}
		t.mu.Unlock()
		if missing == 0 || time.Now().After(deadline) || ctx.Err() != nil || run.check() != nil {
			return missing
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// lags returns the sorted lags in ms of the probes from first to last that were seen.
func (t *probeTracker) lags(first, last int64) []float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []float64
	for id := first; id <= last; id++ {
		if l, ok := t.seen[id]; ok {
			out = append(out, l)
		}
	}
	sort.Float64s(out)
	return out
}

// cleanupLag drops the shop from the source and the shards, cleave's bookkeeping rows of
// the run, and its topics.
func cleanupLag(src *sql.DB, shards []*sql.DB, db, prefix string, o LagOptions) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var errs []error
	if err := core.DropDatabase(ctx, src, db); err != nil {
		errs = append(errs, fmt.Errorf("source: %w", err))
	}
	for i, s := range shards {
		if err := core.DropDatabase(ctx, s, db); err != nil {
			errs = append(errs, fmt.Errorf("shard s%d: %w", i, err))
		}
		// Bookkeeping rows of this run: its consumer groups' offsets and its schema changes.
		group := kafkax.SinkGroup(prefix, "")
		if _, err := s.ExecContext(ctx, "DELETE FROM `"+shardmeta.Database+"`.`"+shardmeta.Offsets+"` WHERE consumer_group LIKE ?", likePrefix(group)); err != nil && !isMissingTable(err) {
			errs = append(errs, fmt.Errorf("shard s%d offsets: %w", i, err))
		}
		if _, err := s.ExecContext(ctx, "DELETE FROM `"+shardmeta.Database+"`.`"+shardmeta.AppliedDDL+"` WHERE db = ?", db); err != nil && !isMissingTable(err) {
			errs = append(errs, fmt.Errorf("shard s%d applied schema changes: %w", i, err))
		}
	}
	if err := deleteTopics(o.Services.KafkaBrokers, prefix+"."); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		o.Logf("cleanup of the lag run: %v", err)
	}
}

// likePrefix is a LIKE pattern matching strings that start with s.
func likePrefix(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return r.Replace(s) + "%"
}

// isMissingTable reports ER_NO_SUCH_TABLE: no sink ever ran on that shard.
func isMissingTable(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == 1146
}
