package bench

import (
	"context"
	"crypto/rand"
	"database/sql"
	"fmt"
	"math/big"
	"os"
	"strings"

	"github.com/cleave-dev/cleave/internal/testenv/core"
	"github.com/cleave-dev/cleave/mysqlx"
)

// ServicesFromEnv reads the addresses that `scripts/services.sh env` exports. Unlike a
// test, a benchmark does not fall back on the default addresses: each variable must be
// set, so that a run never measures services it was not pointed at.
func ServicesFromEnv() (core.Env, error) {
	for _, key := range []string{core.EnvSourceDSN, core.EnvShard0DSN, core.EnvShard1DSN, core.EnvKafkaBrokers} {
		if os.Getenv(key) == "" {
			return core.Env{}, fmt.Errorf(`%s, %s, %s and %s must be set: run eval "$(scripts/services.sh env)" after scripts/services.sh up`,
				core.EnvSourceDSN, core.EnvShard0DSN, core.EnvShard1DSN, core.EnvKafkaBrokers)
		}
	}
	return core.FromEnv(), nil
}

// binlogPos is a transaction boundary in the source's binlog.
type binlogPos struct {
	File string
	Pos  uint64
	GTID string
}

func (p binlogPos) String() string { return fmt.Sprintf("%s:%d (gtid %s)", p.File, p.Pos, p.GTID) }

// currentPos returns the source's binlog end, which SHOW MASTER STATUS reports at a
// transaction boundary, with the MariaDB GTID state there.
func currentPos(ctx context.Context, db *sql.DB) (binlogPos, error) {
	var p binlogPos
	file, pos, _, err := mysqlx.BinlogStatus(ctx, db, "SHOW MASTER STATUS")
	if err != nil {
		return p, err
	}
	p.File, p.Pos = file, pos
	if err := db.QueryRowContext(ctx, "SELECT BINLOG_GTID_POS(?, ?)", p.File, p.Pos).Scan(&p.GTID); err != nil {
		return p, fmt.Errorf("GTID state at %s:%d: %w", p.File, p.Pos, err)
	}
	return p, nil
}

// randomServerID is a replica server_id unlikely to collide with any other reader's.
func randomServerID() uint32 {
	n, _ := rand.Int(rand.Reader, big.NewInt(1<<31))
	return uint32(n.Int64()) + 100000
}

// tableConfig is one table of a generated cleave configuration.
type tableConfig struct {
	Name, Strategy, ShardKey string
}

// writeConfig writes a cleave configuration for the local services to path.
func writeConfig(path string, s core.Env, prefix string, serverID uint32, listen string, tables []tableConfig, extra string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "source:\n  dsn: %q\n  flavor: mariadb\n  server_id: %d\n", s.SourceDSN, serverID)
	quoted := make([]string, len(s.KafkaBrokers))
	for i, br := range s.KafkaBrokers {
		quoted[i] = fmt.Sprintf("%q", br)
	}
	fmt.Fprintf(&b, "kafka:\n  brokers: [%s]\n  topic_prefix: %q\n  partitions: 8\n  replication_factor: 1\n", strings.Join(quoted, ", "), prefix)
	b.WriteString("shards:\n")
	for i, dsn := range s.ShardDSNs() {
		fmt.Fprintf(&b, "  - name: s%d\n    dsn: %q\n", i, dsn)
	}
	b.WriteString("tables:\n")
	for _, t := range tables {
		fmt.Fprintf(&b, "  - name: %s\n    strategy: %s\n", t.Name, t.Strategy)
		if t.ShardKey != "" {
			fmt.Fprintf(&b, "    shard_key: %s\n", t.ShardKey)
		}
	}
	fmt.Fprintf(&b, "http:\n  listen: %q\nlog:\n  format: json\n  level: info\n", listen)
	b.WriteString(extra)
	return os.WriteFile(path, []byte(b.String()), 0o600)
}

// openAll opens the source and every shard.
func openAll(ctx context.Context, s core.Env) (*sql.DB, []*sql.DB, error) {
	src, err := mysqlx.Open(ctx, "source", s.SourceDSN)
	if err != nil {
		return nil, nil, err
	}
	var shards []*sql.DB
	for i, dsn := range s.ShardDSNs() {
		db, err := mysqlx.Open(ctx, fmt.Sprintf("shard s%d", i), dsn)
		if err != nil {
			src.Close()
			for _, d := range shards {
				d.Close()
			}
			return nil, nil, err
		}
		shards = append(shards, db)
	}
	return src, shards, nil
}
