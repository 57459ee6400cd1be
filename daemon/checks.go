package daemon

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/kafkax"
	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/opshttp"
)

// dialTimeout bounds one readiness connection attempt, so a black-holed server costs
// /readyz seconds, not minutes.
const dialTimeout = 2 * time.Second

// readiness holds the small pools /readyz pings with. They are the daemon's own, apart
// from the parts' pools, so that a ping never waits behind a batch, and they are opened
// lazily: a server that is down when cleave starts is reported, not fatal.
type readiness struct {
	cfg    *config.Config
	source *sql.DB
	shards []*sql.DB
}

func newReadiness(cfg *config.Config) (*readiness, error) {
	r := &readiness{cfg: cfg}
	var err error
	if r.source, err = lazyPool("source", cfg.Source.DSN); err != nil {
		return nil, err
	}
	for _, s := range cfg.Shards {
		db, err := lazyPool("shard "+s.Name, s.DSN)
		if err != nil {
			r.close()
			return nil, err
		}
		r.shards = append(r.shards, db)
	}
	return r, nil
}

// lazyPool returns a pool of at most one connection that connects on first use.
func lazyPool(name, dsn string) (*sql.DB, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("%s: DSN %s is not valid", name, mysqlx.Redact(dsn))
	}
	cfg.Timeout = dialTimeout
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("%s at %s: %v", name, cfg.Addr, err)
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxIdleTime(time.Minute)
	return db, nil
}

// checks are the /readyz checks: the source, Kafka and every shard, each named so that a
// 503 says which one is missing and where.
func (r *readiness) checks() []opshttp.Check {
	cs := []opshttp.Check{
		{Name: "source " + mysqlx.Addr(r.cfg.Source.DSN), Fn: pinger(r.source)},
		{Name: fmt.Sprintf("kafka %v", r.cfg.Kafka.Brokers), Fn: func(ctx context.Context) error {
			return kafkax.Ping(ctx, r.cfg.Kafka.Brokers)
		}},
	}
	for i, s := range r.cfg.Shards {
		cs = append(cs, opshttp.Check{Name: "shard " + s.Name + " " + mysqlx.Addr(s.DSN), Fn: pinger(r.shards[i])})
	}
	return cs
}

func pinger(db *sql.DB) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 2*dialTimeout)
		defer cancel()
		return db.PingContext(ctx)
	}
}

func (r *readiness) close() {
	if r.source != nil {
		r.source.Close()
	}
	for _, db := range r.shards {
		db.Close()
	}
}
