package preflight

import (
	"context"
	"fmt"
	"math/rand/v2"

	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/shardmeta"
)

// CheckWriteTable is the scratch table check writes to on each shard, in the bookkeeping
// database. It stays, empty: dropping it again would race with another check running at
// the same time.
const CheckWriteTable = "check_write"

// checkShards checks that every shard is reachable, is a server of its own, and accepts
// writes. src may be nil when the source was not reachable.
func checkShards(ctx context.Context, r *Report, cfg *config.Config, src *server) {
	seen := map[string]string{}
	if src != nil {
		seen[src.id] = "the source"
	}
	for i, sc := range cfg.Shards {
		checkShard(ctx, r, cfg, i, sc, seen)
	}
}

func checkShard(ctx context.Context, r *Report, cfg *config.Config, i int, sc config.Shard, seen map[string]string) {
	ctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	key := fmt.Sprintf("shards[%d]", i)
	subject := fmt.Sprintf("%s %s %s", key, sc.Name, mysqlx.Addr(sc.DSN))
	s, err := openServer(ctx, "shard "+sc.Name, sc.DSN)
	if err != nil {
		r.fail("shard.reachable", subject, "not usable ("+err.Error()+")",
			unreachableFix(err, key+".dsn (or "+config.ShardDSNEnv(sc.Name)+")"))
		return
	}
	defer s.db.Close()
	// Shard tables have the source's names: a shard on the source's server would be the
	// source table itself, and two shards on one server would share their tables.
	if other, dup := seen[s.id]; dup {
		r.fail("shard.reachable", subject, fmt.Sprintf("is the same server as %s (host %s, port %s, datadir %s)", other, s.vars["hostname"], s.vars["port"], s.vars["datadir"]),
			"give every shard a server of its own, separate from the source")
		return
	}
	seen[s.id] = key + " " + sc.Name
	r.ok("shard.reachable", subject, "reachable, %s", s.fl.Product())
	checkShardGrants(ctx, r, cfg, key, subject, s)

	if err := probeWrite(ctx, s); err != nil {
		r.fail("shard.writable", subject, "does not accept writes: "+err.Error(),
			fmt.Sprintf("grant the shard user SELECT, INSERT, UPDATE and CREATE on %s.* (see the grant findings above), and turn read_only off", mysqlx.QuoteIdent(shardmeta.Database)))
		return
	}
	r.ok("shard.writable", subject, "writable (%s.%s: insert rolled back)", shardmeta.Database, CheckWriteTable)
}

// probeWrite creates the bookkeeping database and scratch table when missing, and inserts
// a row in a transaction that it rolls back: this proves the privileges prepare and the
// sink need, and that the server is not read-only, and leaves no row behind.
func probeWrite(ctx context.Context, s *server) error {
	table := mysqlx.QuoteTable(shardmeta.Database, CheckWriteTable)
	for _, stmt := range []string{
		"CREATE DATABASE IF NOT EXISTS " + mysqlx.QuoteIdent(shardmeta.Database),
		"CREATE TABLE IF NOT EXISTS " + table + " (id BIGINT UNSIGNED NOT NULL PRIMARY KEY, checked_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)) ENGINE=InnoDB",
	} {
		if _, err := s.db.ExecContext(ctx, stmt); err != nil {
			return err
		}
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // the rollback is the point
	if _, err := tx.ExecContext(ctx, "INSERT INTO "+table+" (id) VALUES (?)", rand.Uint64()); err != nil {
		return err
	}
	return tx.Rollback()
}
