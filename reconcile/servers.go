package reconcile

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/cleave-dev/cleave/mysqlx"
)

// serverInfo is what the checker must know of a server it reads, beyond its data: its
// product (the SQL it speaks) and whether it can compute routing's MD5 in SQL.
type serverInfo struct {
	flavor mysqlx.Flavor
	// md5 reports whether MD5() can be called: always on MariaDB and MySQL before 9.6, on
	// MySQL 9.6 and later only with component_classic_hashing installed.
	md5 bool
}

// detectServers reads the flavor of the source and of every shard, and which shards can
// compute MD5(), once per run (a server may have been upgraded or got the component since
// the last scheduled run).
func (c *Checker) detectServers(ctx context.Context) error {
	probe := func(name string, db *sql.DB) (serverInfo, error) {
		f, err := mysqlx.DetectFlavor(ctx, db)
		if err != nil {
			return serverInfo{}, fmt.Errorf("%s: %w", name, err)
		}
		md5, err := mysqlx.HasMD5(ctx, db, f)
		if err != nil {
			return serverInfo{}, fmt.Errorf("%s: %w", name, err)
		}
		return serverInfo{flavor: f, md5: md5}, nil
	}
	src, err := probe("source", c.source)
	if err != nil {
		return err
	}
	shards := make([]serverInfo, len(c.shards))
	for i, db := range c.shards {
		if shards[i], err = probe("shard "+c.shardNames[i], db); err != nil {
			return err
		}
	}
	c.srcInfo, c.shardInfo = src, shards
	return nil
}
