// Package deploy is the one set-up of the integration tests: a cleave deployment of the
// test's own on the shared local services. It gives a test a database of its own (the
// same name on the source and on every shard), a topic prefix of its own, cleave's
// configuration for them as a config.Config, that configuration written as a YAML file
// from the struct, and cleave prepare run on the shards.
//
// It lives beside testenv rather than in it because it imports config and prepare, and
// tests inside mysqlx and route (which config imports) use testenv: testenv itself must not
// import them. Only test code imports this package.
package deploy

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/internal/testenv"
	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/prepare"
	"github.com/cleave-dev/cleave/shardmeta"
)

// setupTimeout bounds each step of the set-up (opening sessions, prepare).
const setupTimeout = 2 * time.Minute

// Options change what New sets up. The zero value is a deployment on the Env's source and
// its two shards, named shard0 and shard1, whose databases prepare creates.
type Options struct {
	// ShardDSNs are the shards' servers in shard order (a private server from
	// testenv.StartMariaDB, or fewer shards); nil means the Env's two shards.
	ShardDSNs []string
	// ShardNames name the shards in shard order; nil means shard0, shard1, ….
	ShardNames []string
	// CreateShardDatabases creates the database on every shard at once, for tests that
	// make the shard tables themselves instead of running prepare.
	CreateShardDatabases bool
}

// Deployment is one test's cleave deployment. Everything it creates (the databases, the
// topics and consumer groups of its prefix, its rows in the shards' bookkeeping tables)
// is removed at the end of the test.
type Deployment struct {
	t testing.TB
	// Env is where the services are.
	Env testenv.Env
	// DB is the test's database: the same name on the source and on every shard.
	DB string
	// Prefix is the test's topic prefix, Config.Kafka.TopicPrefix unless the test changes it.
	Prefix string
	// Config is the deployment's configuration: config.Load's defaults, with the source,
	// the Kafka brokers and prefix, and the shards of this deployment; no tables. A test
	// adds its tables and tunes what it needs, then calls Write.
	Config config.Config
	// Source is a session on DB at the source, as cleave opens one (mysqlx.Open).
	Source *sql.DB
	// Shards are sessions on the shards' servers, with no default database (DB exists on
	// a shard once prepare has run, or at once with Options.CreateShardDatabases).
	Shards []*sql.DB
	// Path is the file the last Write wrote.
	Path string
}

// New creates the deployment's database on env's source (and on its shards when
// opts.CreateShardDatabases), picks its topic prefix and a replica server_id no other
// test uses, and fills Config.
func New(t testing.TB, env testenv.Env, opts Options) *Deployment {
	t.Helper()
	shardDSNs := opts.ShardDSNs
	if shardDSNs == nil {
		shardDSNs = env.ShardDSNs()
	}
	d := &Deployment{t: t, Env: env, DB: testenv.NewDatabase(t, env.SourceDSN), Prefix: testenv.TopicPrefix(t)}
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	d.Source = open(ctx, t, "source", testenv.DSNWithDB(t, env.SourceDSN, d.DB))

	shards := make([]config.Shard, len(shardDSNs))
	for i, dsn := range shardDSNs {
		name := fmt.Sprintf("shard%d", i)
		if i < len(opts.ShardNames) {
			name = opts.ShardNames[i]
		}
		shards[i] = config.Shard{Name: name, DSN: dsn}
		db := open(ctx, t, name, dsn)
		d.Shards = append(d.Shards, db)
		if opts.CreateShardDatabases {
			if _, err := db.ExecContext(ctx, "CREATE DATABASE "+mysqlx.QuoteIdent(d.DB)); err != nil {
				t.Fatalf("deploy: create database %s on %s: %v", d.DB, name, err)
			}
		}
		// Registered after open's Close, so it runs before it.
		t.Cleanup(func() { d.removeFromShard(db, name) })
	}

	d.Config = Defaults(t)
	d.Config.Source.DSN = env.SourceDSN
	d.Config.Source.Flavor = string(env.SourceFlavor)
	d.Config.Source.ServerID = ServerID()
	d.Config.Kafka.Brokers = env.KafkaBrokers
	d.Config.Kafka.TopicPrefix = d.Prefix
	d.Config.Shards = shards
	return d
}

// Defaults returns config.Load's defaults: the configuration of a file that names only the
// keys config requires, with those keys (source.dsn, source.server_id, kafka.brokers,
// shards, tables) left empty for the test to fill.
func Defaults(t testing.TB) config.Config {
	t.Helper()
	// config fills its defaults in around the keys it requires, so stand-ins are given
	// for those and taken out again.
	cfg, err := config.LoadWith("", map[string]any{
		"source.dsn":       "stand-in@tcp(127.0.0.1:1)/",
		"source.server_id": 1,
		"kafka.brokers":    []string{"127.0.0.1:1"},
		"shards":           []map[string]any{{"name": "stand-in", "dsn": "stand-in@tcp(127.0.0.1:1)/"}},
		"tables":           []map[string]any{{"name": "stand.in", "strategy": config.StrategyBroadcast}},
	})
	if err != nil {
		t.Fatalf("deploy: config's defaults: %v", err)
	}
	cfg.Source.DSN, cfg.Source.ServerID = "", 0
	cfg.Kafka.Brokers, cfg.Shards, cfg.Tables = nil, nil, nil
	return *cfg
}

// ServerID returns a replica server_id that no other test (of any package) uses.
func ServerID() uint32 { return 1<<24 + rand.Uint32N(1<<30) }

// Table returns the configured name (db.table) of a table of the deployment's database.
func (d *Deployment) Table(name string) string { return d.DB + "." + name }

// Write writes Config to a new file in the test's temporary directory (Path), loads it
// back as cleave would and returns what it loaded.
func (d *Deployment) Write() *config.Config {
	d.t.Helper()
	path, cfg := Write(d.t, d.Config)
	d.Path = path
	return cfg
}

// Write writes cfg to a new file in the test's temporary directory, loads it back with
// config.Load and returns the file and what it loaded. To write a variant of a
// deployment's Config, change a copy (and clone the slices whose elements change).
func Write(t testing.TB, cfg config.Config) (string, *config.Config) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cleave.yaml")
	WriteConfig(t, path, &cfg)
	loaded, err := config.Load(path)
	if err != nil {
		data, _ := os.ReadFile(path)
		t.Fatalf("deploy: load the written configuration: %v\n%s", err, data)
	}
	return path, loaded
}

// Prepare runs cleave prepare for cfg (what Write returned) on the shards.
func (d *Deployment) Prepare(cfg *config.Config) {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	if err := prepare.Run(ctx, cfg, func(prepare.Step) {}); err != nil {
		d.t.Fatalf("prepare: %v", err)
	}
}

// WriteConfig writes cfg to path as YAML, every key under the name config.Load reads it
// by (its mapstructure tag), so that loading the file gives cfg back.
func WriteConfig(t testing.TB, path string, cfg *config.Config) {
	t.Helper()
	data, err := Marshal(cfg)
	if err != nil {
		t.Fatalf("deploy: %v", err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// Marshal renders cfg as the YAML that config.Load reads back into cfg. Every scalar of
// the sections is written, the zero ones too, so that a field a test cleared stays cleared
// instead of taking its default. Inside a list (shards, tables) nothing has a default, so
// zero fields and empty lists are left out there, as they are in a file written by hand.
func Marshal(cfg *config.Config) ([]byte, error) {
	n, err := yamlNode(reflect.ValueOf(*cfg), "", false)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(n); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

var durationType = reflect.TypeOf(time.Duration(0))

// yamlNode renders v, at path in the configuration; inList says it is (in) an element of
// a list.
func yamlNode(v reflect.Value, path string, inList bool) (*yaml.Node, error) {
	switch {
	case v.Type() == durationType:
		return &yaml.Node{Kind: yaml.ScalarNode, Value: time.Duration(v.Int()).String()}, nil
	case v.Kind() == reflect.Struct:
		n := &yaml.Node{Kind: yaml.MappingNode}
		for i := 0; i < v.NumField(); i++ {
			f := v.Type().Field(i)
			key := f.Tag.Get("mapstructure")
			if key == "" {
				return nil, fmt.Errorf("%s%s has no mapstructure tag: config.Load cannot read it", path, f.Name)
			}
			fv := v.Field(i)
			if (fv.Kind() == reflect.Slice && fv.Len() == 0) || (inList && fv.IsZero()) {
				continue
			}
			child, err := yamlNode(fv, path+key+".", inList)
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: key}, child)
		}
		return n, nil
	case v.Kind() == reflect.Slice:
		n := &yaml.Node{Kind: yaml.SequenceNode}
		for i := 0; i < v.Len(); i++ {
			child, err := yamlNode(v.Index(i), fmt.Sprintf("%s[%d].", path, i), true)
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, child)
		}
		return n, nil
	}
	n := &yaml.Node{}
	if err := n.Encode(v.Interface()); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return n, nil
}

func open(ctx context.Context, t testing.TB, name, dsn string) *sql.DB {
	t.Helper()
	db, err := mysqlx.Open(ctx, name, dsn)
	if err != nil {
		t.Fatalf("deploy: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// removeFromShard drops the deployment's database from a shard, with the rows its sinks
// left in the shard's bookkeeping tables (absent when prepare never ran: then there is
// nothing to delete).
func (d *Deployment) removeFromShard(db *sql.DB, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, "DROP DATABASE IF EXISTS "+mysqlx.QuoteIdent(d.DB)); err != nil {
		d.t.Logf("deploy: drop %s on %s: %v", d.DB, name, err)
	}
	_, _ = db.ExecContext(ctx, "DELETE FROM "+mysqlx.QuoteTable(shardmeta.Database, shardmeta.Offsets)+" WHERE consumer_group LIKE ?", d.Prefix+".%")
	_, _ = db.ExecContext(ctx, "DELETE FROM "+mysqlx.QuoteTable(shardmeta.Database, shardmeta.AppliedDDL)+" WHERE db = ?", d.DB)
}

// ShopTables configures the tables of the sample shop (users, orders, order_items and
// countries, as internal/loadgen and the demo make them) in database db, routed as
// configs/demo.yaml routes them: users by id, orders and order_items with
// their user, countries on every shard.
func ShopTables(db string) []config.Table {
	return []config.Table{
		{Name: db + ".users", ShardKey: "id", Strategy: config.StrategyHash},
		{Name: db + ".orders", ShardKey: "user_id", Strategy: config.StrategyHash},
		{Name: db + ".order_items", ShardKey: "user_id", Strategy: config.StrategyHash},
		{Name: db + ".countries", Strategy: config.StrategyBroadcast},
	}
}
