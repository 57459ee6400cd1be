package cutover_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/cleave-dev/cleave/backfill"
	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/cutover"
	"github.com/cleave-dev/cleave/daemon"
	"github.com/cleave-dev/cleave/internal/loadgen"
	"github.com/cleave-dev/cleave/internal/testenv"
	"github.com/cleave-dev/cleave/internal/testenv/deploy"
	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/route"
)

// world is a deployment of the sample shop, seeded, with `cleave run` running in-process
// and a switch webhook that records what it is told.
type world struct {
	*deploy.Deployment
	cfg  *config.Config
	hook *hookServer
	stop func() // stops the daemon (idempotent)
	// daemon is the running `cleave run`, nil before start.
	daemon *daemon.Daemon
}

// hookServer is the application's switch webhook.
type hookServer struct {
	*httptest.Server
	mu      sync.Mutex
	notices []cutover.SwitchNotice
	fail    bool
	// then, when set, is called with each notice before it is acknowledged, as the
	// application's switch handler.
	then func(cutover.SwitchNotice)
}

// onNotice makes f the application's switch handler.
func (h *hookServer) onNotice(f func(cutover.SwitchNotice)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.then = f
}

func (h *hookServer) received() []cutover.SwitchNotice {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]cutover.SwitchNotice(nil), h.notices...)
}

func newHookServer(t *testing.T) *hookServer {
	h := &hookServer{}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var n cutover.SwitchNotice
		if err := json.Unmarshal(body, &n); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.fail {
			http.Error(w, "not now", http.StatusServiceUnavailable)
			return
		}
		h.notices = append(h.notices, n)
		if h.then != nil {
			h.then(n)
		}
	}))
	t.Cleanup(h.Close)
	return h
}

// newWorld builds the world; tune changes the configuration before it is written. With
// run false no daemon is started.
func newWorld(t *testing.T, env testenv.Env, run bool, tune func(*config.Config)) *world {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	w := &world{Deployment: deploy.New(t, env, deploy.Options{}), hook: newHookServer(t), stop: func() {}}
	if err := loadgen.CreateSchema(ctx, w.Source, w.DB); err != nil {
		t.Fatal(err)
	}
	if _, err := loadgen.Seed(ctx, w.Source, w.DB, 300, 1); err != nil {
		t.Fatal(err)
	}
	c := &w.Config
	c.Kafka.Partitions = 2
	c.Tables = deploy.ShopTables(w.DB)
	c.Capture.HeartbeatInterval = 200 * time.Millisecond
	c.Sink.BatchWait = 10 * time.Millisecond
	c.Reconcile.Interval = 0
	c.HTTP.Listen = ""
	c.Cutover.HookURL = w.hook.URL
	c.Cutover.MaxWritePause = 5 * time.Second
	c.Cutover.HookTimeout = 20 * time.Second
	if tune != nil {
		tune(c)
	}
	w.cfg = w.Write()
	w.Prepare(w.cfg)
	t.Cleanup(func() { dropGuards(t, w) })
	if run {
		w.start(t)
		w.waitCopied(t)
	}
	return w
}

// start runs `cleave run` for the world until stop or the end of the test.
func (w *world) start(t *testing.T) {
	t.Helper()
	d, err := daemon.New(w.cfg, daemon.Options{Log: zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel)), Version: "test", Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	w.daemon = d
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var once sync.Once
	w.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("cleave run: %v", err)
				}
			case <-time.After(2 * time.Minute):
				t.Error("cleave run did not stop")
			}
		})
	}
	t.Cleanup(w.stop)
}

// waitCopied waits until the shards hold what the source holds (the backfill is done and
// the sinks caught up).
func (w *world) waitCopied(t *testing.T) {
	t.Helper()
	testenv.Eventually(t, 2*time.Minute, "the shards to hold the source's rows", func() bool {
		return w.diff(t) == ""
	})
	// The gate also wants the backfill's progress stored as done and every sink's offsets
	// on every partition, which follow the rows by a moment.
	store := backfill.NewStore(w.cfg.Kafka.Brokers, w.Prefix, w.cfg.Kafka.ReplicationFactor)
	defer store.Close()
	testenv.Eventually(t, time.Minute, "the backfill's progress stored as done", func() bool {
		if _, err := store.Poll(context.Background()); err != nil {
			return false
		}
		st := store.State()
		for _, tbl := range w.cfg.Tables {
			if p := st.Current(tbl.Name); p == nil || !p.Done {
				return false
			}
		}
		return true
	})
	want := len(w.cfg.Tables) * w.cfg.Kafka.Partitions
	testenv.Eventually(t, time.Minute, "every sink's offsets on every partition, each with something applied", func() bool {
		for _, db := range w.Shards {
			var n int
			if db.QueryRow("SELECT COUNT(*) FROM `_cleave`.`offsets` WHERE consumer_group LIKE ? AND applied_ts_ms > 0", w.Prefix+".sink.%").Scan(&n) != nil || n < want {
				return false
			}
		}
		return true
	})
}

// startApp runs the shop's application on the world at rate row changes/s until stop
// (which returns its error) or the end of ctx, its switch hook's handler following the
// notices (to the shards, and back on a rollback); it returns once the application has
// written to the source.
func (w *world) startApp(t *testing.T, ctx context.Context, rate int, seed uint64) (app *loadgen.App, stop func() error) {
	t.Helper()
	router, err := w.cfg.Router(nil)
	if err != nil {
		t.Fatal(err)
	}
	app = &loadgen.App{Source: w.Source, Shards: w.Shards, Database: w.DB, Router: router, Rate: rate, Workers: 4, Seed: seed}
	w.hook.onNotice(func(n cutover.SwitchNotice) {
		if n.Event == "rolled_back" {
			app.SwitchBack()
		} else {
			app.Switch()
		}
	})
	appCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- app.Run(appCtx) }()
	var once sync.Once
	var appErr error
	stop = func() error {
		once.Do(func() {
			cancel()
			appErr = <-done
		})
		return appErr
	}
	t.Cleanup(func() { _ = stop() })
	testenv.Eventually(t, time.Minute, "the application to write to the source", func() bool { return app.Stats().Transactions > 100 })
	return app, stop
}

// cutover returns a cut-over of the world.
func (w *world) cutover(t *testing.T, opts cutover.Options) *cutover.Cutover {
	t.Helper()
	c, err := cutover.New(w.cfg, zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// diff compares every table of the source with the union of the shards by an independent
// SELECT of every column: each row on exactly the shards that own it, with the source's
// values. It returns "" when they match, else the first differences.
func (w *world) diff(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out []string
	for _, tbl := range w.cfg.Tables {
		cols := sourceColumns(t, ctx, w.Source, w.DB, tbl.TableName())
		src := dump(t, ctx, w.Source, w.DB, tbl.TableName(), cols)
		var shards []string
		for _, db := range w.Shards {
			shards = append(shards, dump(t, ctx, db, w.DB, tbl.TableName(), cols)...)
		}
		want := src
		if tbl.Strategy == route.Broadcast {
			want = nil
			for range w.Shards {
				want = append(want, src...)
			}
		}
		sort.Strings(want)
		sort.Strings(shards)
		if d := firstDiff(want, shards); d != "" {
			out = append(out, tbl.Name+": "+d)
		}
	}
	return strings.Join(out, "; ")
}

func firstDiff(want, got []string) string {
	if len(want) != len(got) {
		return fmt.Sprintf("%d rows on the source side, %d on the shards", len(want), len(got))
	}
	for i := range want {
		if want[i] != got[i] {
			return fmt.Sprintf("source row %q, shard row %q", want[i], got[i])
		}
	}
	return ""
}

func sourceColumns(t *testing.T, ctx context.Context, db *sql.DB, database, table string) []string {
	t.Helper()
	cols := testenv.Columns(t, ctx, db, database, table)
	for i := range cols {
		cols[i] = mysqlx.QuoteIdent(cols[i])
	}
	return cols
}

// dump returns every row of the table as text, NULLs marked.
func dump(t *testing.T, ctx context.Context, db *sql.DB, database, table string, cols []string) []string {
	t.Helper()
	return testenv.Rows(t, ctx, db, "SELECT "+strings.Join(cols, ", ")+" FROM "+mysqlx.QuoteTable(database, table))
}

// guardTriggers counts cleave's guard triggers on the world's tables.
func guardTriggers(t *testing.T, w *world) int {
	t.Helper()
	var n int
	if err := w.Source.QueryRow("SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ? AND TRIGGER_NAME LIKE '\\_cleave\\_guard\\_%'", w.DB).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// guarded reports whether the source's guard lists one of the world's tables.
func guarded(t *testing.T, w *world) int {
	t.Helper()
	var n int
	err := w.Source.QueryRow("SELECT COUNT(*) FROM `_cleave`.`guard` WHERE db = ?", w.DB).Scan(&n)
	if mysqlx.Number(err) == mysqlx.ErNoSuchTable {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// dropGuards removes what a cut-over left on the shared source for the world's database.
func dropGuards(t *testing.T, w *world) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, _ = w.Source.ExecContext(ctx, "DELETE FROM `_cleave`.`guard` WHERE db = ?", w.DB)
	_, _ = w.Source.ExecContext(ctx, "DELETE FROM `_cleave`.`cutover` WHERE topic_prefix = ?", w.Prefix)
	for _, db := range w.Shards { // a rollback's
		_, _ = db.ExecContext(ctx, "DELETE FROM `_cleave`.`guard` WHERE db = ?", w.DB)
		_, _ = db.ExecContext(ctx, "DELETE FROM `_cleave`.`cutover` WHERE topic_prefix = ?", w.Prefix)
	}
}

// write makes one change to a moved table on the source and returns its error.
func write(ctx context.Context, db *sql.DB, database string) error {
	_, err := db.ExecContext(ctx, "UPDATE "+mysqlx.QuoteTable(database, "users")+" SET balance = balance + 1 WHERE id = 1")
	return err
}

// isGuardRefusal reports whether err is the guard's refusal of a write.
func isGuardRefusal(err error) bool {
	return err != nil && mysqlx.Number(err) == 1644 && strings.Contains(err.Error(), "moved to the shards")
}

var errStop = errors.New("stopped by the test")
