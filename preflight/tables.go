package preflight

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/schema"
	"github.com/cleave-dev/cleave/shardmeta"
)

// unroutable says why a shard key of a kind cannot route rows. Routing hashes or compares
// the canonical text of a value; these kinds have several texts for one value, so one row
// could be routed to different shards by capture and by the checker.
var unroutable = map[schema.Kind]string{
	schema.KindFloat:  "FLOAT values have no exact text form (a value can render as 1.1 or 1.10000002), so one row could route to two shards",
	schema.KindDouble: "DOUBLE values have no exact text form (a value can render as 0.1 or 0.10000000000000001), so one row could route to two shards",
	schema.KindJSON:   "one JSON document has many spellings (key order, spaces, number forms), so one row could route to two shards",
}

// checkTables checks each configured table on the source: it exists, has a primary key
// and only supported column types, its shard key and version column fit.
func checkTables(ctx context.Context, r *Report, cfg *config.Config, src *server) {
	ctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	for i, tc := range cfg.Tables {
		key := fmt.Sprintf("tables[%d]", i)
		db, name := tc.DB(), tc.TableName()
		t, err := schema.Load(ctx, src.db, db, name)
		switch {
		case errors.Is(err, schema.ErrNoTable):
			r.fail("table", key+".name", fmt.Sprintf("table %s does not exist on the source (or the capture user may not see it)", tc.Name),
				fmt.Sprintf("create it, grant SELECT on it, or correct or remove %s", key))
			continue
		case errors.Is(err, schema.ErrNoPrimaryKey):
			r.fail("table", key+" "+tc.Name, "has no primary key: cleave keys every change event and checks every row by it, so it cannot move this table",
				fmt.Sprintf("add one (ALTER TABLE %s ADD PRIMARY KEY (...)) or remove %s", mysqlx.QuoteTable(db, name), key))
			// The columns were read: the shard key and version column can still be checked.
		case err != nil:
			r.fail("table", key+" "+tc.Name, err.Error(), fmt.Sprintf("change the column, or remove %s", key))
			continue
		default:
			if perr := probeSelect(ctx, src.db, db, name); perr != nil {
				r.fail("table", key+" "+tc.Name, "cannot be read: "+perr.Error(),
					"GRANT SELECT ON "+mysqlx.QuoteIdent(db)+".* TO the capture user")
			} else {
				r.ok("table", key+" "+tc.Name, "%d columns, primary key (%s)", len(t.Columns), strings.Join(t.PKNames(), ", "))
			}
		}
		checkShardKey(r, key, tc, t)
		checkVersionColumn(r, key, tc, t)
	}
}

func checkShardKey(r *Report, key string, tc config.Table, t *schema.Table) {
	if tc.ShardKey == "" {
		return
	}
	subject := key + ".shard_key"
	c := t.Column(tc.ShardKey)
	if c == nil {
		r.fail("table.shard_key", subject, fmt.Sprintf("column %q not found in %s", tc.ShardKey, tc.Name),
			fmt.Sprintf("name one of its columns (%s)", strings.Join(columnNames(t), ", ")))
		return
	}
	if why, bad := unroutable[c.Kind]; bad {
		r.fail("table.shard_key", subject, fmt.Sprintf("column %s of %s is %s: %s", c.Name, tc.Name, c.ColumnType, why),
			"route on an integer, DECIMAL, string, binary or date/time column")
		return
	}
	r.ok("table.shard_key", subject, "%s.%s %s", tc.Name, c.Name, c.ColumnType)
}

func checkVersionColumn(r *Report, key string, tc config.Table, t *schema.Table) {
	subject := key + ".version_column"
	if tc.VersionColumn == "" {
		// prepare adds the bookkeeping column to the shard table; a source column of that
		// name would collide with it.
		if c := t.Column(shardmeta.VersionColumn); c != nil {
			r.fail("table.version_column", key+" "+tc.Name, fmt.Sprintf("already has a column %s, the name of the version column cleave adds to shard tables", c.Name),
				fmt.Sprintf("set %s to it if it holds a version, or rename it", subject))
		}
		return
	}
	c := t.Column(tc.VersionColumn)
	switch {
	case c == nil:
		r.fail("table.version_column", subject, fmt.Sprintf("column %q not found in %s", tc.VersionColumn, tc.Name),
			fmt.Sprintf("name one of its integer columns, or remove %s to let cleave keep versions in %s", subject, shardmeta.VersionColumn))
	case c.Kind != schema.KindInt && c.Kind != schema.KindUint:
		r.fail("table.version_column", subject, fmt.Sprintf("column %s of %s is %s: a version must be an integer", c.Name, tc.Name, c.ColumnType),
			fmt.Sprintf("name an integer column, or remove %s to let cleave keep versions in %s", subject, shardmeta.VersionColumn))
	case c.Nullable:
		r.fail("table.version_column", subject, fmt.Sprintf("column %s of %s allows NULL: a row with a NULL version could never be updated on a shard", c.Name, tc.Name),
			fmt.Sprintf("ALTER TABLE %s MODIFY %s %s NOT NULL", mysqlx.QuoteTable(t.DB, t.Name), mysqlx.QuoteIdent(c.Name), c.ColumnType))
	default:
		r.ok("table.version_column", subject, "%s.%s %s", tc.Name, c.Name, c.ColumnType)
	}
}

func columnNames(t *schema.Table) []string {
	names := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		names[i] = c.Name
	}
	return names
}
