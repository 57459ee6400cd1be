package daemon

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/internal/loadgen"
	"github.com/cleave-dev/cleave/internal/testenv"
	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/prepare"
)

// deployment is a cleave deployment of the sample shop on the local services: a database
// of its own on the source, the same database prepared on each shard, and a topic prefix
// of its own. Everything is removed at the end of the test.
type deployment struct {
	cfg    *config.Config
	path   string
	db     string
	source *sql.DB // the shop database on the source
	shards []*sql.DB
}

// newDeployment creates the shop schema on the source of env, writes a configuration for
// it (shards at shardDSNs, env's when nil) and runs cleave prepare. extraYAML is appended to
// the configuration.
func newDeployment(t *testing.T, env testenv.Env, shardDSNs []string, extraYAML string) *deployment {
	t.Helper()
	if shardDSNs == nil {
		shardDSNs = env.ShardDSNs()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dep := &deployment{db: testenv.NewDatabase(t, env.SourceDSN)}
	var err error
	if dep.source, err = mysqlx.Open(ctx, "source", testenv.DSNWithDB(t, env.SourceDSN, dep.db)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dep.source.Close() })
	if err := loadgen.CreateSchema(ctx, dep.source, dep.db); err != nil {
		t.Fatal(err)
	}
	if env.SourceFlavor == testenv.MySQLFlavor && env.ShardFlavor != testenv.MySQLFlavor {
		// MySQL's default collation has no equal on MariaDB (cleave prepare refuses it): a
		// monolith moving to MariaDB shards uses one both products share.
		for _, tbl := range loadgen.Tables {
			if _, err := dep.source.ExecContext(ctx, "ALTER TABLE "+mysqlx.QuoteTable(dep.db, tbl)+" CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"); err != nil {
				t.Fatal(err)
			}
		}
	}

	var b strings.Builder
	fmt.Fprintf(&b, "source:\n  dsn: %q\n  flavor: %s\n  server_id: %d\n", env.SourceDSN, env.SourceFlavor, 100000+rand.IntN(1<<30))
	fmt.Fprintf(&b, "kafka:\n  brokers: [%q]\n  topic_prefix: %q\n  partitions: 2\n", env.KafkaBrokers[0], testenv.TopicPrefix(t))
	b.WriteString("shards:\n")
	for i, dsn := range shardDSNs {
		fmt.Fprintf(&b, "  - name: shard%d\n    dsn: %q\n", i, dsn)
	}
	b.WriteString("tables:\n")
	fmt.Fprintf(&b, "  - {name: %s.users, shard_key: id, strategy: hash}\n", dep.db)
	fmt.Fprintf(&b, "  - {name: %s.orders, shard_key: user_id, strategy: hash}\n", dep.db)
	fmt.Fprintf(&b, "  - {name: %s.order_items, shard_key: user_id, strategy: hash}\n", dep.db)
	fmt.Fprintf(&b, "  - {name: %s.countries, strategy: broadcast}\n", dep.db)
	b.WriteString("capture:\n  heartbeat_interval: 500ms\n")
	b.WriteString("sink:\n  batch_wait: 20ms\n")
	b.WriteString("http:\n  listen: \"127.0.0.1:0\"\n")
	b.WriteString(extraYAML)
	dep.path = filepath.Join(t.TempDir(), "cleave.yaml")
	if err := os.WriteFile(dep.path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if dep.cfg, err = config.Load(dep.path); err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}

	for i, dsn := range shardDSNs {
		db, err := mysqlx.Open(ctx, fmt.Sprintf("shard%d", i), dsn)
		if err != nil {
			t.Fatal(err)
		}
		dep.shards = append(dep.shards, db)
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if _, err := db.ExecContext(ctx, "DROP DATABASE IF EXISTS "+mysqlx.QuoteIdent(dep.db)); err != nil {
				t.Logf("drop %s on shard%d: %v", dep.db, i, err)
			}
			db.Close()
		})
	}
	if err := prepare.Run(ctx, dep.cfg, func(prepare.Step) {}); err != nil {
		t.Fatalf("prepare: %v", err)
	}
	return dep
}

// running is a daemon started by start.
type running struct {
	d    *Daemon
	base string
	done chan error
	stop context.CancelFunc
}

// start runs a daemon for the deployment and waits until it listens. It is stopped (and
// must drain without an error) at the end of the test, before the deployment is removed.
func (dep *deployment) start(t *testing.T) *running {
	t.Helper()
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	d, err := New(dep.cfg, Options{Log: log, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{d: d, done: make(chan error, 1), stop: cancel}
	go func() { r.done <- d.Run(ctx) }()
	t.Cleanup(func() {
		if err := r.shutdown(2 * time.Minute); err != nil {
			t.Errorf("cleave run did not drain cleanly: %v", err)
		}
	})
	testenv.Eventually(t, 30*time.Second, "the HTTP listener", func() bool {
		select {
		case err := <-r.done:
			r.done <- err
			t.Fatalf("cleave run stopped at start: %v", err)
		default:
		}
		return d.Addr() != nil
	})
	r.base = "http://" + d.Addr().String()
	return r
}

// shutdown cancels the daemon as SIGTERM does and returns what Run returned.
func (r *running) shutdown(timeout time.Duration) error {
	r.stop()
	select {
	case err := <-r.done:
		r.done <- err // a second shutdown sees the same answer
		return err
	case <-time.After(timeout):
		return errors.New("Run did not return after its context was cancelled")
	}
}

// get fetches path and returns the status code and body.
func (r *running) get(t *testing.T, path string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}
