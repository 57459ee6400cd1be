package daemon

import (
	"context"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/internal/loadgen"
	"github.com/cleave-dev/cleave/internal/testenv"
	"github.com/cleave-dev/cleave/internal/testenv/deploy"
	"github.com/cleave-dev/cleave/mysqlx"
)

// deployment is a cleave deployment of the sample shop on the local services: a database
// of its own on the source, the same database prepared on each shard, and a topic prefix
// of its own. Everything is removed at the end of the test.
type deployment struct {
	*deploy.Deployment
	cfg *config.Config // as loaded from the written file
}

// newDeployment creates the shop schema on the source of env, writes a configuration for
// it (shards at shardDSNs, env's when nil), changed by tune, and runs cleave prepare.
func newDeployment(t *testing.T, env testenv.Env, shardDSNs []string, tune func(*config.Config)) *deployment {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dep := &deployment{Deployment: deploy.New(t, env, deploy.Options{ShardDSNs: shardDSNs})}
	if err := loadgen.CreateSchema(ctx, dep.Source, dep.DB); err != nil {
		t.Fatal(err)
	}
	if env.SourceFlavor == testenv.MySQLFlavor && env.ShardFlavor != testenv.MySQLFlavor {
		// MySQL's default collation has no equal on MariaDB (cleave prepare refuses it): a
		// monolith moving to MariaDB shards uses one both products share.
		for _, tbl := range loadgen.Tables {
			if _, err := dep.Source.ExecContext(ctx, "ALTER TABLE "+mysqlx.QuoteTable(dep.DB, tbl)+" CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"); err != nil {
				t.Fatal(err)
			}
		}
	}

	c := &dep.Config
	c.Kafka.Partitions = 2
	c.Tables = deploy.ShopTables(dep.DB)
	c.Capture.HeartbeatInterval = 500 * time.Millisecond
	c.Sink.BatchWait = 20 * time.Millisecond
	c.HTTP.Listen = "127.0.0.1:0"
	if tune != nil {
		tune(c)
	}
	dep.cfg = dep.Write()
	dep.Prepare(dep.cfg)
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
