package core

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/segmentio/kafka-go"
)

// PingTimeout bounds each reachability check, so a missing service costs seconds.
const PingTimeout = 5 * time.Second

// PingMySQL connects to the server of dsn and pings it, within PingTimeout.
func PingMySQL(ctx context.Context, dsn string) error {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return fmt.Errorf("parse DSN: %w", err)
	}
	cfg.Timeout = PingTimeout
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(ctx, PingTimeout)
	defer cancel()
	return db.PingContext(ctx)
}

// PingKafka asks each broker in turn for the cluster's brokers, each within PingTimeout,
// and returns nil at the first that answers.
func PingKafka(ctx context.Context, brokers []string) error {
	if len(brokers) == 0 {
		return fmt.Errorf("no brokers configured (%s is empty)", EnvKafkaBrokers)
	}
	var lastErr error
	for _, b := range brokers {
		pctx, cancel := context.WithTimeout(ctx, PingTimeout)
		lastErr = PingBroker(pctx, b)
		cancel()
		if lastErr == nil {
			return nil
		}
	}
	return lastErr
}

// PingBroker asks the broker at addr for the cluster's brokers (a metadata request),
// within ctx's deadline.
func PingBroker(ctx context.Context, addr string) error {
	conn, err := kafka.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	_, err = conn.Brokers()
	return err
}

// DSNAddr is the host:port of a DSN, for messages (never the password).
func DSNAddr(dsn string) string {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return "(unparsable DSN)"
	}
	return cfg.Addr
}
