package bench

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/cleave-dev/cleave/capture"
	"github.com/cleave-dev/cleave/internal/testenv/core"
	"github.com/cleave-dev/cleave/kafkax"
	"github.com/cleave-dev/cleave/mysqlx"
)

// PeerOptions configure the catch-up comparison of cleave's capture with Debezium.
type PeerOptions struct {
	Services core.Env
	// CleaveBin is the cleave binary.
	CleaveBin string
	// Java runs Kafka Connect; DebeziumJars is the folder of scripts/debezium/pom.xml's jars.
	Java, DebeziumJars string
	// DebeziumVersion and ConnectVersion are shown in the table.
	DebeziumVersion, ConnectVersion string
	// Rows is the size of the backlog in row changes.
	Rows int
	// WorkDir receives configs and logs.
	WorkDir string
	Logf    func(format string, args ...any)
}

// catchUp is how one reader caught up with the backlog.
type catchUp struct {
	// Took is from start until the topic held every event; First until it held one.
	Took, First time.Duration
	// Messages is what the topic held at the end, heartbeats excluded.
	Messages int64
	PeakRSS  int64
}

func (c catchUp) rate(n int) float64 { return float64(n) / c.Took.Seconds() }

// steadyRate is the rate from the first event to the last, start-up excluded.
// It is NaN when every event arrived within one poll.
func (c catchUp) steadyRate(n int) float64 {
	if c.Took-c.First < 200*time.Millisecond {
		return math.NaN()
	}
	return float64(n) / (c.Took - c.First).Seconds()
}

// Peer writes one backlog of o.Rows row changes to a fresh database on the source, then
// lets cleave capture and Debezium's MariaDB connector each read it from the binlog
// position before it into Kafka, one after the other, and times each until its table
// topic holds every event.
func Peer(ctx context.Context, o PeerOptions) ([]Figure, error) {
	logf := o.Logf
	src, err := mysqlx.Open(ctx, "source", o.Services.SourceDSN)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	db := "cleave_bench_peer_" + core.RandomHex(4)
	defer func() {
		if err := core.DropDatabase(context.Background(), src, db); err != nil {
			logf("cleanup: drop database %s on the source: %v", db, err)
		}
	}()
	bl, err := writeBacklog(ctx, src, db, o.Rows, logf)
	if err != nil {
		return nil, err
	}

	title := fmt.Sprintf("catch-up of one %s row-change backlog from the binlog into Kafka, each reader a separate process, start to last event", humanCount(o.Rows))
	how := fmt.Sprintf("One backlog (%s row changes on a 9-column table: 70%% inserts, 20%% updates, 10%% deletes, written by multi-row statements) "+
		"is read from the binlog position before it into the same Kafka (8 partitions each), first by `cleave capture` (a checkpoint stored at that position under a fresh topic prefix), "+
		"then by Debezium's MariaDB connector %s in Kafka Connect %s standalone (offsets file set to the same position through Connect's offsets REST API, snapshot.mode=recovery to take the table's schema, "+
		"JSON without schemas, no tombstones, producer batching like cleave's: linger 5 ms, 1 MiB batches, snappy). Each is timed from its start (Debezium: the connector's resume) "+
		"until its table topic's offsets add up to every event (cleave's heartbeats not counted); the value after it is the rate from its first event on. Other tests may write to the same source meanwhile.",
		humanCount(o.Rows), o.DebeziumVersion, o.ConnectVersion)
	fig := Figure{Key: "peer_catchup", Title: title, How: how}
	rss := Figure{Key: "peer_peak_rss", Title: "peak RSS during that catch-up",
		How: "VmHWM of each reader's process (/proc/<pid>/status) when its topic held every event: the `cleave capture` process, and the Kafka Connect JVM (-Xms256m -Xmx2g, G1, as connect-standalone.sh starts it) running the Debezium connector."}

	cl, err := cleaveCatchUp(ctx, o, bl)
	if err != nil {
		fig.Missing = "cleave capture: " + err.Error()
		rss.Missing = fig.Missing
		return []Figure{fig, rss}, nil
	}
	fig.Cleave = rates("", cl, o.Rows)
	rss.Cleave = []Value{{Name: "cleave capture", Value: float64(cl.PeakRSS) / (1 << 20), Unit: "MiB"}}
	if cl.Messages != int64(o.Rows) {
		fig.Cleave = append(fig.Cleave, Value{Name: fmt.Sprintf("(topic held %d messages for %d row changes)", cl.Messages, o.Rows)})
	}
	logf("peer: cleave capture caught up in %s (%.0f events/s; first event after %s), peak RSS %d MiB", cl.Took.Round(time.Millisecond), cl.rate(o.Rows), cl.First.Round(time.Millisecond), cl.PeakRSS>>20)

	dz, err := debeziumCatchUp(ctx, o, bl)
	if err != nil {
		fig.Beside = []Value{{Name: "Debezium not measured: " + err.Error()}}
		return []Figure{fig, rss}, nil
	}
	name := "Debezium " + o.DebeziumVersion
	fig.Beside = rates(name, dz, o.Rows)
	if dz.Messages != int64(o.Rows) {
		fig.Beside = append(fig.Beside, Value{Name: fmt.Sprintf("(topic held %d messages for %d row changes)", dz.Messages, o.Rows)})
	}
	rss.Beside = []Value{{Name: "Kafka Connect + Debezium", Value: float64(dz.PeakRSS) / (1 << 20), Unit: "MiB"}}
	logf("peer: Debezium caught up in %s (%.0f events/s; first event after %s), peak RSS %d MiB", dz.Took.Round(time.Millisecond), dz.rate(o.Rows), dz.First.Round(time.Millisecond), dz.PeakRSS>>20)
	return []Figure{fig, rss}, nil
}

// rates are the values of a catch-up: the whole, and from the first event on when the
// events did not all arrive at once.
func rates(name string, c catchUp, n int) []Value {
	vs := []Value{{Name: name, Value: c.rate(n), Unit: "events/s"}}
	if r := c.steadyRate(n); !math.IsNaN(r) {
		vs = append(vs, Value{Name: "from its first event", Value: r, Unit: "events/s"})
	}
	return vs
}

// backlog is a range of the source's binlog holding rows row changes of db.orders.
type backlog struct {
	db         string
	start, end binlogPos
	serverID   uint32
	rows       int
}

// writeBacklog creates db.orders and writes total row changes to it, as the capture
// benchmark does: 70% inserts, 20% updates (one row change each), 10% deletes, in
// statements of 10,000 rows.
func writeBacklog(ctx context.Context, src *sql.DB, db string, total int, logf func(string, ...any)) (backlog, error) {
	bl := backlog{db: db, rows: total}
	q := mysqlx.QuoteIdent(db)
	for _, stmt := range []string{
		"CREATE DATABASE " + q,
		`CREATE TABLE ` + q + `.orders (
			id BIGINT PRIMARY KEY, user_id INT NOT NULL, status TINYINT NOT NULL, sku VARCHAR(40) NOT NULL,
			amount DECIMAL(12,2) NOT NULL, created DATETIME(6) NOT NULL, score DOUBLE, note VARCHAR(100), flags INT UNSIGNED)`,
	} {
		if _, err := src.ExecContext(ctx, stmt); err != nil {
			return bl, fmt.Errorf("create the backlog table: %w", err)
		}
	}
	if err := src.QueryRowContext(ctx, "SELECT @@server_id").Scan(&bl.serverID); err != nil {
		return bl, err
	}
	var err error
	if bl.start, err = currentPos(ctx, src); err != nil {
		return bl, err
	}
	began := time.Now()
	inserts, updates := total*7/10, total*2/10
	deletes := total - inserts - updates
	const chunk = 10000
	exec := func(stmt string) error {
		if _, err := src.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("write the backlog: %w", err)
		}
		return nil
	}
	for lo := 0; lo < inserts; lo += chunk {
		hi := min(lo+chunk, inserts)
		if err := exec(fmt.Sprintf(`INSERT INTO %s.orders SELECT seq, seq %% 10007, seq %% 5, CONCAT('SKU-', seq %% 977),
			(seq %% 100000) / 100, '2024-01-01 00:00:00' + INTERVAL seq SECOND, seq / 7, CONCAT('note for order ', seq), seq
			FROM %s.seq_%d_to_%d`, q, q, lo+1, hi)); err != nil {
			return bl, err
		}
	}
	for lo := 0; lo < updates; lo += chunk {
		if err := exec(fmt.Sprintf("UPDATE %s.orders SET status = status + 1, amount = amount + 1 WHERE id BETWEEN %d AND %d", q, lo+1, min(lo+chunk, updates))); err != nil {
			return bl, err
		}
	}
	if err := exec(fmt.Sprintf("DELETE FROM %s.orders WHERE id > %d", q, inserts-deletes)); err != nil {
		return bl, err
	}
	if bl.end, err = currentPos(ctx, src); err != nil {
		return bl, err
	}
	logf("peer: backlog of %d row changes written in %s, binlog %s to %s", total, time.Since(began).Round(time.Millisecond), bl.start, bl.end)
	return bl, nil
}

// pollUntil calls count every 100 ms until it reaches want, measuring from began.
func pollUntil(ctx context.Context, logf func(string, ...any), who string, began time.Time, want int64, timeout time.Duration, alive func() error, count func(context.Context) (int64, error)) (catchUp, error) {
	var c catchUp
	deadline := began.Add(timeout)
	nextLog := began.Add(5 * time.Second)
	for {
		n, err := count(ctx)
		now := time.Now()
		if now.After(nextLog) || os.Getenv("BENCH_DEBUG") != "" {
			logf("peer: %s: %d of %d events after %s (%v)", who, n, want, now.Sub(began).Round(time.Millisecond), err)
			nextLog = now.Add(5 * time.Second)
		}
		if err == nil {
			if n > 0 && c.First == 0 {
				c.First = now.Sub(began)
			}
			if n >= want {
				c.Took, c.Messages = now.Sub(began), n
				return c, nil
			}
		}
		if err := alive(); err != nil {
			return c, err
		}
		if now.After(deadline) {
			return c, fmt.Errorf("only %d of %d events after %s (last error: %v)", n, want, timeout, err)
		}
		select {
		case <-ctx.Done():
			return c, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// cleaveCatchUp runs `cleave capture` from a checkpoint at the backlog's start.
func cleaveCatchUp(ctx context.Context, o PeerOptions, bl backlog) (catchUp, error) {
	prefix := "cleave-bench-peer-" + core.RandomHex(4)
	defer func() {
		if err := deleteTopics(o.Services.KafkaBrokers, prefix+"."); err != nil {
			o.Logf("cleanup: %v", err)
		}
	}()
	store := capture.NewCheckpointStore(o.Services.KafkaBrokers, prefix, 1)
	defer store.Close()
	if err := store.Ensure(ctx); err != nil {
		return catchUp{}, err
	}
	cp := capture.Checkpoint{Position: capture.Position{File: bl.start.File, Pos: bl.start.Pos, GTID: bl.start.GTID}, SourceServerID: bl.serverID, Flavor: mysqlx.MariaDB}
	if err := store.Store(ctx, cp); err != nil {
		return catchUp{}, err
	}
	// The table topic exists before capture starts, as `cleave prepare` leaves it: a topic
	// created a moment before the first produce costs kafka-go's writer seconds of
	// metadata retries, which is start-up, not catch-up.
	topic := kafkax.TableTopic(prefix, bl.db, "orders")
	if err := kafkax.EnsureTopics(ctx, o.Services.KafkaBrokers, []kafkax.Topic{{Name: topic, Partitions: 8, ReplicationFactor: 1}}); err != nil {
		return catchUp{}, err
	}
	port, err := core.FreePort()
	if err != nil {
		return catchUp{}, err
	}
	cfgPath := filepath.Join(o.WorkDir, "peer-cleave.yaml")
	if err := writeConfig(cfgPath, o.Services, prefix, randomServerID(), "127.0.0.1:"+itoa(port),
		[]tableConfig{{Name: bl.db + ".orders", Strategy: "hash", ShardKey: "id"}}, ""); err != nil {
		return catchUp{}, err
	}
	began := time.Now()
	p, err := core.Start(core.Command{Name: "cleave capture", Argv: []string{o.CleaveBin, "capture", "--config", cfgPath},
		Env: cleanEnv(), Log: filepath.Join(o.WorkDir, "peer-cleave-capture.log")})
	if err != nil {
		return catchUp{}, err
	}
	defer p.Stop(time.Minute)
	counter := newTopicCounter(o.Services.KafkaBrokers, topic)
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", port)
	// Heartbeats share the table topic; capture counts them in its metrics.
	count := func(ctx context.Context) (int64, error) {
		n, err := counter.count(ctx)
		if err != nil || n < int64(bl.rows) {
			return n, err
		}
		hb, err := promValue(ctx, metricsURL, "cleave_capture_heartbeats_total")
		if err != nil {
			return 0, err
		}
		return n - int64(hb), nil
	}
	res, err := pollUntil(ctx, o.Logf, "cleave capture", began, int64(bl.rows), 10*time.Minute, p.Alive, count)
	if err != nil {
		return res, fmt.Errorf("%w (log: %s)", err, p.Log)
	}
	if res.PeakRSS, err = PeakRSS(p.Pid()); err != nil {
		return res, err
	}
	// A backfill copying the table into the same topic would make the count meaningless.
	if copied, err := promValue(ctx, metricsURL, "cleave_backfill_rows_copied_total"); err == nil && copied > 0 {
		return res, fmt.Errorf("cleave capture also backfilled %.0f rows of the table into its topic: the catch-up count is not comparable", copied)
	}
	if err := p.Stop(time.Minute); err != nil {
		return res, fmt.Errorf("cleave capture did not stop cleanly on SIGTERM: %w", err)
	}
	return res, nil
}

// promValue reads a metric from a Prometheus text endpoint: the sum of its series; 0 while
// it is not exported.
func promValue(ctx context.Context, url, name string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var sum float64
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		fields := strings.Fields(rest[strings.LastIndexByte(rest, '}')+1:])
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %q: %w", name, line, err)
		}
		sum += v
	}
	return sum, sc.Err()
}

// debeziumCatchUp runs Kafka Connect standalone with Debezium's MariaDB connector, created
// stopped, its offsets set to the backlog's start, then resumed.
func debeziumCatchUp(ctx context.Context, o PeerOptions, bl backlog) (catchUp, error) {
	prefix := "dbz-bench-" + core.RandomHex(4)
	defer func() {
		if err := deleteTopics(o.Services.KafkaBrokers, prefix+"."); err != nil {
			o.Logf("cleanup: %v", err)
		}
	}()
	dir := filepath.Join(o.WorkDir, "debezium")
	_ = os.RemoveAll(dir) // a previous run's offsets and log
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return catchUp{}, err
	}
	port, err := core.FreePort()
	if err != nil {
		return catchUp{}, err
	}
	worker := strings.Join([]string{
		"bootstrap.servers=" + strings.Join(o.Services.KafkaBrokers, ","),
		"key.converter=org.apache.kafka.connect.json.JsonConverter",
		"value.converter=org.apache.kafka.connect.json.JsonConverter",
		"key.converter.schemas.enable=false",
		"value.converter.schemas.enable=false",
		"offset.storage.file.filename=" + filepath.Join(dir, "offsets.dat"),
		"offset.flush.interval.ms=5000",
		"listeners=http://127.0.0.1:" + itoa(port),
		"producer.linger.ms=5",
		"producer.batch.size=1048576",
		"producer.compression.type=snappy",
		"",
	}, "\n")
	log4j := strings.Join([]string{
		"status = warn",
		"appender.f.type = File",
		"appender.f.name = F",
		"appender.f.fileName = " + filepath.Join(dir, "connect.log"),
		"appender.f.layout.type = PatternLayout",
		"appender.f.layout.pattern = [%d] %p %m (%c)%n",
		"rootLogger.level = INFO",
		"rootLogger.appenderRef.f.ref = F",
		"",
	}, "\n")
	workerPath, log4jPath := filepath.Join(dir, "worker.properties"), filepath.Join(dir, "log4j2.properties")
	if err := os.WriteFile(workerPath, []byte(worker), 0o644); err != nil {
		return catchUp{}, err
	}
	if err := os.WriteFile(log4jPath, []byte(log4j), 0o644); err != nil {
		return catchUp{}, err
	}
	// The JVM options connect-standalone.sh and kafka-run-class.sh use by default.
	argv := []string{o.Java,
		"-Xms256m", "-Xmx2g", "-server", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:InitiatingHeapOccupancyPercent=35",
		"-XX:+ExplicitGCInvokesConcurrent", "-Djava.awt.headless=true",
		"-Dlog4j2.configurationFile=" + log4jPath, "-cp", filepath.Join(o.DebeziumJars, "*"),
		"org.apache.kafka.connect.cli.ConnectStandalone", workerPath}
	p, err := core.Start(core.Command{Name: "Kafka Connect", Argv: argv, Env: cleanEnv(), Log: filepath.Join(dir, "stdout.log")})
	if err != nil {
		return catchUp{}, err
	}
	defer p.Stop(time.Minute)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	if err := waitHTTP(ctx, p, base+"/", 2*time.Minute); err != nil {
		return catchUp{}, err
	}

	dsn, err := mysql.ParseDSN(o.Services.SourceDSN)
	if err != nil {
		return catchUp{}, err
	}
	host, sport, _ := strings.Cut(dsn.Addr, ":")
	name := "bench"
	conn := map[string]any{
		"name":          name,
		"initial_state": "STOPPED",
		"config": map[string]string{
			"connector.class":   "io.debezium.connector.mariadb.MariaDbConnector",
			"tasks.max":         "1",
			"database.hostname": host, "database.port": sport,
			"database.user": dsn.User, "database.password": dsn.Passwd,
			"database.server.id":    strconv.FormatUint(uint64(randomServerID()), 10),
			"topic.prefix":          prefix,
			"database.include.list": bl.db,
			"table.include.list":    bl.db + ".orders",
			"schema.history.internal.kafka.bootstrap.servers":           strings.Join(o.Services.KafkaBrokers, ","),
			"schema.history.internal.kafka.topic":                       prefix + ".schema-history",
			"schema.history.internal.store.only.captured.tables.ddl":    "true",
			"schema.history.internal.store.only.captured.databases.ddl": "true",
			// Offsets exist, the history topic does not: recovery takes the captured table's
			// schema now (unchanged since the backlog began) and streams from the offsets.
			"snapshot.mode":                             "recovery",
			"snapshot.locking.mode":                     "none",
			"tombstones.on.delete":                      "false",
			"include.schema.changes":                    "false",
			"decimal.handling.mode":                     "string",
			"max.batch.size":                            "4096",
			"max.queue.size":                            "16384",
			"topic.creation.default.replication.factor": "1",
			"topic.creation.default.partitions":         "8",
		},
	}
	// The topic exists before the connector starts, as for cleave.
	topic := prefix + "." + bl.db + ".orders"
	if err := kafkax.EnsureTopics(ctx, o.Services.KafkaBrokers, []kafkax.Topic{{Name: topic, Partitions: 8, ReplicationFactor: 1}}); err != nil {
		return catchUp{}, err
	}
	if err := restCall(ctx, http.MethodPost, base+"/connectors", conn, nil); err != nil {
		return catchUp{}, fmt.Errorf("create the connector: %w", err)
	}
	offsets := map[string]any{"offsets": []any{map[string]any{
		"partition": map[string]string{"server": prefix},
		"offset":    map[string]any{"file": bl.start.File, "pos": bl.start.Pos, "gtids": bl.start.GTID},
	}}}
	if err := restCall(ctx, http.MethodPatch, base+"/connectors/"+name+"/offsets", offsets, nil); err != nil {
		return catchUp{}, fmt.Errorf("set the connector's offsets: %w", err)
	}
	began := time.Now()
	if err := restCall(ctx, http.MethodPut, base+"/connectors/"+name+"/resume", nil, nil); err != nil {
		return catchUp{}, fmt.Errorf("resume the connector: %w", err)
	}
	counter := newTopicCounter(o.Services.KafkaBrokers, topic)
	lastStatus := time.Now()
	alive := func() error {
		if err := p.Alive(); err != nil {
			return err
		}
		if time.Since(lastStatus) < 2*time.Second {
			return nil
		}
		lastStatus = time.Now()
		var st struct {
			Tasks []struct {
				State string `json:"state"`
				Trace string `json:"trace"`
			} `json:"tasks"`
		}
		if err := restCall(ctx, http.MethodGet, base+"/connectors/"+name+"/status", nil, &st); err != nil {
			return nil // a slow REST answer is no failure of the task
		}
		for _, t := range st.Tasks {
			if t.State == "FAILED" {
				first, _, _ := strings.Cut(t.Trace, "\n")
				return fmt.Errorf("the Debezium task failed: %s (log: %s)", first, filepath.Join(dir, "connect.log"))
			}
		}
		return nil
	}
	res, err := pollUntil(ctx, o.Logf, "Debezium", began, int64(bl.rows), 10*time.Minute, alive, counter.count)
	if err != nil {
		return res, err
	}
	if res.PeakRSS, err = PeakRSS(p.Pid()); err != nil {
		return res, err
	}
	_ = restCall(ctx, http.MethodDelete, base+"/connectors/"+name, nil, nil)
	// The JVM exits 143 on SIGTERM, however cleanly it shut down.
	if err := p.Stop(time.Minute); err != nil && !exitedWith(err, 143) {
		o.Logf("peer: Kafka Connect: %v", err)
	}
	return res, nil
}

// restCall sends body as JSON to Kafka Connect's REST API and decodes the answer into out.
func restCall(ctx context.Context, method, url string, body, out any) error {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	client := &http.Client{Timeout: 60 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %s: %s", method, url, resp.Status, bytes.TrimSpace(data))
	}
	if out != nil && len(data) > 0 {
		return json.Unmarshal(data, out)
	}
	return nil
}

// humanCount writes 1000000 as 1M and 250000 as 250k.
func humanCount(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return strconv.Itoa(n/1_000_000) + "M"
	case n >= 1000 && n%1000 == 0:
		return strconv.Itoa(n/1000) + "k"
	}
	return group(int64(n))
}
