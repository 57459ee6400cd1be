package prepare_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/internal/testenv"
	"github.com/cleave-dev/cleave/internal/testenv/deploy"
	"github.com/cleave-dev/cleave/kafkax"
	"github.com/cleave-dev/cleave/prepare"
	"github.com/cleave-dev/cleave/shardmeta"
)

const shopSchema = `
CREATE TABLE users (
  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  email VARCHAR(190) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  name VARCHAR(100) CHARACTER SET latin1 NULL COMMENT 'display\nname',
  UNIQUE KEY email (email)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci COMMENT='people';
CREATE TABLE orders (
  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  user_id BIGINT UNSIGNED NOT NULL,
  total DECIMAL(12,2) NOT NULL,
  placed_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  PRIMARY KEY (id),
  KEY by_user (user_id, placed_at),
  CONSTRAINT fk_orders_user FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE,
  CONSTRAINT positive CHECK (total >= 0)
) ENGINE=InnoDB;
CREATE TABLE order_items (
  order_id BIGINT UNSIGNED NOT NULL,
  line INT NOT NULL,
  user_id BIGINT UNSIGNED NOT NULL,
  sku VARCHAR(40) NOT NULL,
  version INT UNSIGNED NOT NULL DEFAULT 0,
  PRIMARY KEY (order_id, line),
  FOREIGN KEY (order_id) REFERENCES orders (id)
) ENGINE=InnoDB;
CREATE TABLE countries (code CHAR(2) NOT NULL PRIMARY KEY, name VARCHAR(64) NOT NULL) ENGINE=InnoDB;
INSERT INTO users (email) VALUES ('a@example.com'), ('b@example.com');
INSERT INTO orders (user_id, total) VALUES (1, 9.50), (2, 12.00);
CREATE TABLE audit (at DATETIME(6) NOT NULL, what TEXT)
`

// fixture is one isolated source database with the shop schema, its configuration, and
// the shared shards it is prepared on (a testenv/deploy deployment whose shard databases
// only prepare creates).
type fixture struct {
	dep *deploy.Deployment
	env testenv.Env
	db  string
	cfg *config.Config // as loaded from the written file
	// src and shards are plain driver sessions (no session settings of cleave's), on the
	// test's database at the source and on the shard servers.
	src    *sql.DB
	shards []*sql.DB
}

// shopTables configures the tables of shopSchema (names within the test's database).
var shopTables = []config.Table{
	{Name: "users", Strategy: config.StrategyHash, ShardKey: "id"},
	{Name: "orders", Strategy: config.StrategyHash, ShardKey: "user_id"},
	{Name: "order_items", Strategy: config.StrategyHash, ShardKey: "user_id", VersionColumn: "version"},
	{Name: "countries", Strategy: config.StrategyBroadcast},
}

// newFixture is the shop schema on env's source, with extraTables configured after its
// four tables.
func newFixture(t *testing.T, env testenv.Env, extraTables ...config.Table) *fixture {
	t.Helper()
	return newFixtureWith(t, env, shopSchema, append(slices.Clone(shopTables), extraTables...)...)
}

// newFixtureWith runs the statements of schemaSQL (separated by ";") in a database of its
// own on env's source and configures tables (names within that database).
func newFixtureWith(t *testing.T, env testenv.Env, schemaSQL string, tables ...config.Table) *fixture {
	t.Helper()
	dep := deploy.New(t, env, deploy.Options{})
	f := &fixture{dep: dep, env: env, db: dep.DB}
	f.src = testenv.OpenDB(t, testenv.DSNWithDB(t, env.SourceDSN, f.db))
	for _, stmt := range strings.Split(schemaSQL, ";") {
		if strings.TrimSpace(stmt) == "" {
			continue
		}
		if _, err := f.src.Exec(stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	for _, dsn := range env.ShardDSNs() {
		f.shards = append(f.shards, testenv.OpenDB(t, dsn))
	}
	dep.Config.Kafka.Partitions = 3
	for _, tc := range tables {
		tc.Name = dep.Table(tc.Name)
		dep.Config.Tables = append(dep.Config.Tables, tc)
	}
	f.cfg = dep.Write()
	return f
}

func (f *fixture) run(t *testing.T) ([]prepare.Step, error) {
	t.Helper()
	var steps []prepare.Step
	err := prepare.Run(context.Background(), f.cfg, func(s prepare.Step) { steps = append(steps, s) })
	return steps, err
}

func showCreate(t *testing.T, db *sql.DB, schemaName, table string) string {
	t.Helper()
	var name, create string
	if err := db.QueryRow("SHOW CREATE TABLE `"+schemaName+"`.`"+table+"`").Scan(&name, &create); err != nil {
		t.Fatalf("SHOW CREATE TABLE %s.%s: %v", schemaName, table, err)
	}
	return create
}

// snapshot is SHOW CREATE TABLE of every configured table on every shard.
func (f *fixture) snapshot(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for i, sh := range f.shards {
		for _, tc := range f.cfg.Tables {
			out[fmt.Sprintf("shard%d %s", i, tc.Name)] = showCreate(t, sh, tc.DB(), tc.TableName())
		}
	}
	return out
}

func TestPrepareTwiceGivesTheSameShards(t *testing.T) {
	testenv.EachFlavor(t, func(t *testing.T, e testenv.Env) {
		f := newFixture(t, e)
		first, err := f.run(t)
		if err != nil {
			t.Fatalf("first prepare: %v", err)
		}
		before := f.snapshot(t)
		second, err := f.run(t)
		if err != nil {
			t.Fatalf("second prepare: %v", err)
		}
		if after := f.snapshot(t); !maps(before, after) {
			t.Errorf("the second prepare changed the shards:\nbefore %v\nafter  %v", before, after)
		}

		// 2 shards x (bookkeeping, database, 4 tables) + 4 table topics + 2 dead-letter topics.
		if len(first) != 18 || len(second) != 18 {
			t.Fatalf("want 18 steps per run, got %d and %d:\n%s\n%s", len(first), len(second), render(first), render(second))
		}
		for _, s := range first {
			// _cleave may exist from other tests on the shared shards; everything else is new.
			if !s.Created && !strings.HasPrefix(s.Object, "bookkeeping") {
				t.Errorf("first run: want created, got %s", s)
			}
		}
		for _, s := range second {
			if s.Created {
				t.Errorf("second run: want already up to date, got %s", s)
			}
		}
		wantNote := fmt.Sprintf("shard1 table %s.orders: created; foreign key fk_orders_user left out", f.db)
		if !slices.ContainsFunc(first, func(s prepare.Step) bool { return strings.HasPrefix(s.String(), wantNote) }) {
			t.Errorf("no step says %q:\n%s", wantNote, render(first))
		}

		// Topics: one per table with kafka.partitions, one dead-letter topic of one partition per shard.
		names := make([]string, 0, 6)
		for _, tp := range f.cfg.Topics() {
			names = append(names, tp.Name)
		}
		parts, err := kafkax.Partitions(context.Background(), f.env.KafkaBrokers, names)
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range f.cfg.Tables {
			if n := parts[kafkax.TableTopic(f.cfg.Kafka.TopicPrefix, tc.DB(), tc.TableName())]; n != 3 {
				t.Errorf("topic of %s has %d partitions, want 3", tc.Name, n)
			}
		}
		for _, sh := range f.cfg.Shards {
			if n := parts[kafkax.DLQTopic(f.cfg.Kafka.TopicPrefix, sh.Name)]; n != 1 {
				t.Errorf("dead-letter topic of %s has %d partitions, want 1", sh.Name, n)
			}
		}
	})
}

func maps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func render(steps []prepare.Step) string {
	var b strings.Builder
	for _, s := range steps {
		b.WriteString(s.String() + "\n")
	}
	return b.String()
}

// versionColumnShown is how SHOW CREATE TABLE prints shardmeta.VersionColumnDDL.
var versionColumnShown = map[testenv.Flavor]string{
	testenv.MariaDBFlavor: "bigint(20) unsigned NOT NULL DEFAULT 0",
	testenv.MySQLFlavor:   "bigint unsigned NOT NULL DEFAULT '0'",
}

var (
	autoIncrement = regexp.MustCompile(` AUTO_INCREMENT=\d+`)
	foreignKey    = regexp.MustCompile("(?m)^  CONSTRAINT `[^`]+` FOREIGN KEY .*\n")
	trailingComma = regexp.MustCompile(",\n\\)")
)

// TestPrepareCopiesTheSourceDefinitions compares each shard table with the source's own
// SHOW CREATE TABLE: equal but for AUTO_INCREMENT=N, the foreign keys, and the version
// column after the last column of tables without a version_column.
func TestPrepareCopiesTheSourceDefinitions(t *testing.T) {
	testenv.EachFlavor(t, func(t *testing.T, e testenv.Env) {
		f := newFixture(t, e)
		if _, err := f.run(t); err != nil {
			t.Fatal(err)
		}
		for _, tc := range f.cfg.Tables {
			src := showCreate(t, f.src, tc.DB(), tc.TableName())
			want := autoIncrement.ReplaceAllString(src, "")
			want = foreignKey.ReplaceAllString(want, "")
			want = trailingComma.ReplaceAllString(want, "\n)")
			if tc.VersionColumn == "" {
				lines := strings.Split(want, "\n")
				last := 0
				for i, l := range lines {
					if strings.HasPrefix(l, "  `") {
						last = i
					}
				}
				lines = slices.Insert(lines, last+1, "  `"+shardmeta.VersionColumn+"` "+versionColumnShown[e.ShardFlavor]+",")
				want = strings.Join(lines, "\n")
			}
			for i, sh := range f.shards {
				if got := showCreate(t, sh, tc.DB(), tc.TableName()); got != want {
					t.Errorf("shard%d %s:\n%s\nwant (from the source):\n%s", i, tc.Name, got, want)
				}
			}
		}
		// The database keeps the source's defaults.
		for i, sh := range f.shards {
			var srcCS, shardCS string
			q := "SELECT CONCAT(DEFAULT_CHARACTER_SET_NAME, '/', DEFAULT_COLLATION_NAME) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?"
			if err := f.src.QueryRow(q, f.db).Scan(&srcCS); err != nil {
				t.Fatal(err)
			}
			if err := sh.QueryRow(q, f.db).Scan(&shardCS); err != nil {
				t.Fatal(err)
			}
			if srcCS != shardCS {
				t.Errorf("shard%d database %s defaults %s, source %s", i, f.db, shardCS, srcCS)
			}
		}
	})
}

func TestPrepareNamesAShardTableThatDiffers(t *testing.T) {
	testenv.EachFlavor(t, func(t *testing.T, e testenv.Env) {
		tests := []struct {
			name  string
			alter string
			want  string
		}{
			{"a narrower DECIMAL", "ALTER TABLE `DB`.orders MODIFY total DECIMAL(10,2) NOT NULL",
				"shard1: DB.orders column total: source decimal(12,2), shard decimal(10,2)"},
			{"a column that allows NULL", "ALTER TABLE `DB`.orders MODIFY placed_at DATETIME(6) NULL",
				"shard1: DB.orders column placed_at: source NOT NULL, shard NULL"},
			{"a column moved", "ALTER TABLE `DB`.orders MODIFY total DECIMAL(12,2) NOT NULL AFTER id",
				"shard1: DB.orders column order: source (id, user_id, total, placed_at), shard (id, total, user_id, placed_at)"},
			{"an extra column", "ALTER TABLE `DB`.countries ADD COLUMN region VARCHAR(10)",
				"shard1: DB.countries column region: shard varchar(10), not in the source"},
			{"the bookkeeping column gone", "ALTER TABLE `DB`.users DROP COLUMN _cleave_version",
				"shard1: DB.users column _cleave_version: missing on the shard"},
			{"another primary key", "ALTER TABLE `DB`.order_items DROP PRIMARY KEY, ADD PRIMARY KEY (order_id, line, user_id)",
				"shard1: DB.order_items primary key: source (order_id, line), shard (order_id, line, user_id)"},
			{"a foreign key added on the shard", "ALTER TABLE `DB`.orders ADD CONSTRAINT fk_shard FOREIGN KEY (user_id) REFERENCES `DB`.users (id)",
				"shard1: DB.orders foreign key fk_shard: on the shard"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				f := newFixture(t, e)
				if _, err := f.run(t); err != nil {
					t.Fatal(err)
				}
				if _, err := f.shards[1].Exec(strings.ReplaceAll(tt.alter, "DB", f.db)); err != nil {
					t.Fatal(err)
				}
				steps, err := f.run(t)
				want := strings.ReplaceAll(tt.want, "DB", f.db)
				var diff *prepare.DiffError
				if !errors.As(err, &diff) {
					t.Fatalf("want a DiffError, got %v", err)
				}
				if diff.Shard != "shard1" || !strings.Contains(err.Error(), want) {
					t.Errorf("error does not name %q:\n%v", want, err)
				}
				// The other shard and the other tables are still reported up to date, and
				// nothing on the differing shard was changed.
				if n := strings.Count(render(steps), "already up to date"); n != 17 {
					t.Errorf("want 17 steps up to date besides the differing table, got %d:\n%s", n, render(steps))
				}
			})
		}
	})
}

func TestPrepareRefusesASourceTableItCannotMove(t *testing.T) {
	testenv.EachFlavor(t, func(t *testing.T, e testenv.Env) {
		f := newFixture(t, e, config.Table{Name: "audit", Strategy: config.StrategyBroadcast})
		steps, err := f.run(t)
		if err == nil || !strings.Contains(err.Error(), "tables[4] "+f.db+".audit") || !strings.Contains(err.Error(), "no primary key") {
			t.Fatalf("want an error naming tables[4] and its missing primary key, got %v", err)
		}
		if len(steps) != 0 {
			t.Errorf("nothing may change when a source table cannot be moved, got:\n%s", render(steps))
		}
		for i, sh := range f.shards {
			var n int
			if err := sh.QueryRow("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", f.db).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 0 {
				t.Errorf("shard%d has database %s", i, f.db)
			}
		}
	})
}

// crossSchema is a source schema whose every column a shard of the other product can hold
// faithfully, written in the source's own collations: a login in code point order (MySQL's
// utf8mb4_0900_bin is MariaDB's utf8mb4_nopad_bin), collations both products share, latin1,
// JSON, expression defaults and a TEXT default (which MySQL takes only in parentheses),
// and a table whose default collation has no equal on the other product but that no
// column uses.
var crossSchema = map[testenv.Flavor]string{
	testenv.MySQLFlavor: `
CREATE TABLE accounts (
  id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  login VARCHAR(64) COLLATE utf8mb4_0900_bin NOT NULL,
  email VARCHAR(190) COLLATE utf8mb4_general_ci NOT NULL,
  name VARCHAR(100) COLLATE utf8mb4_unicode_520_ci NULL,
  legacy VARCHAR(20) CHARACTER SET latin1 NULL,
  prefs JSON NULL,
  created TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  updated TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
  token VARCHAR(36) COLLATE utf8mb4_bin NOT NULL DEFAULT (UUID()),
  memo TEXT COLLATE utf8mb4_bin DEFAULT ('none'),
  UNIQUE KEY login (login)
) DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_0900_ai_ci;
CREATE TABLE tags (code VARCHAR(16) NOT NULL PRIMARY KEY, label VARCHAR(40) NOT NULL) DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE TABLE counters (id INT NOT NULL PRIMARY KEY, n BIGINT NOT NULL, y YEAR NULL) DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_0900_ai_ci`,
	testenv.MariaDBFlavor: `
CREATE TABLE accounts (
  id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  login VARCHAR(64) COLLATE utf8mb4_nopad_bin NOT NULL,
  email VARCHAR(190) COLLATE utf8mb4_general_ci NOT NULL,
  name VARCHAR(100) COLLATE utf8mb4_unicode_520_ci NULL,
  legacy VARCHAR(20) CHARACTER SET latin1 NULL,
  prefs JSON NULL,
  created TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  updated TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
  token VARCHAR(36) COLLATE utf8mb4_bin NOT NULL DEFAULT uuid(),
  memo TEXT COLLATE utf8mb4_bin DEFAULT 'none',
  UNIQUE KEY login (login)
) DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
CREATE TABLE tags (code VARCHAR(16) NOT NULL PRIMARY KEY, label VARCHAR(40) NOT NULL) DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE TABLE counters (id INT NOT NULL PRIMARY KEY, n BIGINT NOT NULL, y YEAR NULL) DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_uca1400_ai_ci`,
}

var crossTables = []config.Table{
	{Name: "accounts", Strategy: config.StrategyHash, ShardKey: "id"},
	{Name: "tags", Strategy: config.StrategyBroadcast},
	{Name: "counters", Strategy: config.StrategyHash, ShardKey: "id"},
}

// columnsOf reads db.table's columns as "name type collation" lines.
func columnsOf(t *testing.T, db *sql.DB, schemaName, table string) []string {
	t.Helper()
	rows, err := db.Query("SELECT COLUMN_NAME, DATA_TYPE, COALESCE(COLLATION_NAME, '') FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION", schemaName, table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n, typ, coll string
		if err := rows.Scan(&n, &typ, &coll); err != nil {
			t.Fatal(err)
		}
		out = append(out, strings.TrimSpace(n+" "+typ+" "+coll))
	}
	return out
}

// TestPrepareAcrossProductsMakesFaithfulTablesOnce prepares shards of the other product:
// each column keeps how it compares (under the shard product's name for its collation),
// JSON becomes what the shard's product makes of it, a table default without an equal
// that no column uses is noted; a second prepare finds everything up to date and changes
// nothing.
func TestPrepareAcrossProductsMakesFaithfulTablesOnce(t *testing.T) {
	testenv.CrossFlavors(t, func(t *testing.T, e testenv.Env) {
		f := newFixtureWith(t, e, crossSchema[e.SourceFlavor], crossTables...)
		first, err := f.run(t)
		if err != nil {
			t.Fatalf("first prepare: %v", err)
		}
		t.Logf("first prepare:\n%s", render(first))
		before := f.snapshot(t)
		second, err := f.run(t)
		if err != nil {
			t.Fatalf("second prepare: %v", err)
		}
		for _, s := range second {
			if s.Created {
				t.Errorf("second run: want already up to date, got %s", s)
			}
		}
		if after := f.snapshot(t); !maps(before, after) {
			t.Errorf("the second prepare changed the shards:\nbefore %v\nafter  %v", before, after)
		}
		noted := func(object string) bool {
			return slices.ContainsFunc(first, func(s prepare.Step) bool {
				return s.Object == object && strings.Contains(s.Note, "has no equal on")
			})
		}
		// utf8mb4_0900_ai_ci and utf8mb4_uca1400_ai_ci have no equal on the other product.
		if !noted("table " + f.db + ".counters") {
			t.Errorf("no step notes the default collation of counters:\n%s", render(first))
		}

		login, prefs := "login varchar utf8mb4_nopad_bin", "prefs longtext utf8mb4_bin"
		if e.ShardFlavor == testenv.MySQLFlavor {
			login = "login varchar utf8mb4_0900_bin"
		}
		want := []string{"id bigint", login, "email varchar utf8mb4_general_ci", "name varchar utf8mb4_unicode_520_ci",
			"legacy varchar latin1_swedish_ci", prefs, "created timestamp", "updated timestamp", "token varchar utf8mb4_bin",
			"memo text utf8mb4_bin", "_cleave_version bigint"}
		for i, sh := range f.shards {
			if got := columnsOf(t, sh, f.db, "accounts"); !slices.Equal(got, want) {
				t.Errorf("shard%d accounts columns:\n%q\nwant\n%q", i, got, want)
			}
		}
	})
}

// TestPrepareAcrossProductsRefusesCollationsWithoutAnEqual: a column whose collation the
// shards' product has no equal of is refused by name, with the way out, before anything
// is created on any shard.
func TestPrepareAcrossProductsRefusesCollationsWithoutAnEqual(t *testing.T) {
	schemas := map[testenv.Flavor]string{
		testenv.MySQLFlavor:   `CREATE TABLE people (id INT NOT NULL PRIMARY KEY, name VARCHAR(64) NOT NULL, code VARCHAR(8) COLLATE utf8mb4_0900_as_cs NULL) DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_0900_ai_ci`,
		testenv.MariaDBFlavor: `CREATE TABLE people (id INT NOT NULL PRIMARY KEY, name VARCHAR(64) COLLATE utf8mb4_uca1400_ai_ci NOT NULL, code VARCHAR(8) COLLATE utf8mb4_general_nopad_ci NULL) DEFAULT CHARSET=utf8mb4`,
	}
	refused := map[testenv.Flavor][]string{
		testenv.MySQLFlavor:   {"DB.people.name varchar(64) COLLATE utf8mb4_0900_ai_ci", "DB.people.code varchar(8) COLLATE utf8mb4_0900_as_cs", "or use MySQL shards"},
		testenv.MariaDBFlavor: {"DB.people.name varchar(64) COLLATE utf8mb4_uca1400_ai_ci", "DB.people.code varchar(8) COLLATE utf8mb4_general_nopad_ci", "or use MariaDB shards"},
	}
	testenv.CrossFlavors(t, func(t *testing.T, e testenv.Env) {
		f := newFixtureWith(t, e, schemas[e.SourceFlavor], config.Table{Name: "people", Strategy: config.StrategyHash, ShardKey: "id"})
		steps, err := f.run(t)
		var ue *prepare.UnfaithfulError
		if !errors.As(err, &ue) {
			t.Fatalf("want an UnfaithfulError, got %v", err)
		}
		t.Logf("error: %v", err)
		for _, want := range append(refused[e.SourceFlavor], "shard0 (", "shard1 (", "nothing was changed") {
			if want = strings.ReplaceAll(want, "DB.", f.db+"."); !strings.Contains(err.Error(), want) {
				t.Errorf("error does not say %q", want)
			}
		}
		if len(steps) != 0 {
			t.Errorf("nothing may change, got:\n%s", render(steps))
		}
		for i, sh := range f.shards {
			var n int
			if err := sh.QueryRow("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", f.db).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 0 {
				t.Errorf("shard%d has database %s", i, f.db)
			}
		}
	})
}

// TestPrepareRefusesMariaDBOnlyTypesByName: MariaDB's INET6 and UUID have no MySQL type
// (nor a cleave kind): the column is named, and nothing changes.
func TestPrepareRefusesMariaDBOnlyTypesByName(t *testing.T) {
	e := testenv.ServicesFor(t, testenv.MariaDBFlavor, testenv.MySQLFlavor)
	f := newFixtureWith(t, e, "CREATE TABLE hosts (id INT NOT NULL PRIMARY KEY, addr INET6 NOT NULL, tag UUID NULL)",
		config.Table{Name: "hosts", Strategy: config.StrategyHash, ShardKey: "id"})
	steps, err := f.run(t)
	if err == nil || !strings.Contains(err.Error(), f.db+".hosts column addr") || !strings.Contains(err.Error(), `"inet6" is not supported`) ||
		!strings.Contains(err.Error(), "nothing was changed") {
		t.Fatalf("want an error naming the column addr and its type inet6, got %v", err)
	}
	if len(steps) != 0 {
		t.Errorf("nothing may change, got:\n%s", render(steps))
	}
}
