package deploy

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/internal/testenv"
)

// everyField sets every field of the configuration to a value that is valid and differs
// from its default, so that a key written under the wrong name would come back as the
// default and fail the round trip.
func everyField() config.Config {
	return config.Config{
		Source: config.Source{DSN: "u:p@tcp(127.0.0.1:3307)/", Flavor: "mysql", ServerID: 4_000_000_001},
		Kafka:  config.Kafka{Brokers: []string{"127.0.0.1:9092", "127.0.0.1:9093"}, TopicPrefix: "t-round.trip", Partitions: 3, ReplicationFactor: 2},
		Shards: []config.Shard{
			{Name: "s0", DSN: "u:p@tcp(127.0.0.1:3308)/", Keyspace: "-80"},
			{Name: "s1", DSN: "u:p@tcp(127.0.0.1:3309)/", Keyspace: "80-"},
		},
		Tables: []config.Table{
			{Name: "shop.users", ShardKey: "id", Strategy: config.StrategyHash, VersionColumn: "lock_version", DriftAlertAbove: 5},
			{Name: "shop.events", ShardKey: "day", Strategy: config.StrategyRange,
				Ranges: []config.RangeBound{{Below: "2024-01-01", Shard: "s0"}, {Shard: "s1"}}},
			{Name: "shop.items", ShardKey: "Region", Strategy: config.StrategyList,
				Values: []config.ListValue{{Value: "EU", Shard: "s0"}, {Value: "042", Shard: "s1"}}, DefaultShard: "s1"},
			{Name: "shop.settings", Strategy: config.StrategyPin, Shard: "s1"},
		},
		DDL:       config.DDL{Policy: config.DDLPropagate},
		Capture:   config.Capture{HeartbeatInterval: 1500 * time.Millisecond, MaxInFlightBytes: 3 << 20, BatchSize: 7, CheckpointInterval: 2 * time.Minute},
		Sink:      config.Sink{BatchSize: 9, BatchWait: 20 * time.Millisecond, OnError: config.OnErrorDeadLetter, RetryMaxTime: 90 * time.Second},
		Backfill:  config.Backfill{ChunkSize: 11, MaxRowsPerSecond: 4000},
		Reconcile: config.Reconcile{Interval: time.Hour, ChunkTarget: time.Second, MaxRowsPerSecond: 12, RecheckRounds: 2, WebhookURL: "http://127.0.0.1:1/hook"},
		Cutover: config.Cutover{MaxWritePause: 3 * time.Second, MaxSinkLag: 7 * time.Second, FencedVerifyKeys: 13,
			HookURL: "http://127.0.0.1:1/switch", HookCommand: "true", HookTimeout: time.Minute},
		HTTP: config.HTTP{Listen: "127.0.0.1:0", Pprof: true},
		Log:  config.Log{Level: "debug", Format: "console", File: "/tmp/cleave.log", MaxSizeMB: 3, MaxBackups: 4, MaxAgeDays: 9},
	}
}

func TestAWrittenConfigurationLoadsBackAsTheStruct(t *testing.T) {
	want := everyField()
	if path := zeroField(reflect.ValueOf(want), "config"); path != "" {
		t.Fatalf("everyField leaves %s unset: give it a value that differs from its default", path)
	}
	got := writeAndLoad(t, &want)
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("loaded back\n%+v\nwant\n%+v", *got, want)
	}
}

func TestAClearedFieldStaysClearedInsteadOfTakingItsDefault(t *testing.T) {
	want := everyField()
	want.HTTP.Listen = ""       // default 127.0.0.1:9466
	want.Reconcile.Interval = 0 // default 10m
	want.Reconcile.WebhookURL = ""
	want.Backfill.MaxRowsPerSecond = 0
	want.HTTP.Pprof = false
	want.Log.File = ""
	want.Shards[0].Keyspace, want.Shards[1].Keyspace = "", ""
	got := writeAndLoad(t, &want)
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("loaded back\n%+v\nwant\n%+v", *got, want)
	}
}

func TestDefaultsAreWhatAFileWithOnlyTheRequiredKeysLoads(t *testing.T) {
	want := Defaults(t)
	want.Source.DSN, want.Source.ServerID = "u:p@tcp(127.0.0.1:3307)/", 7
	want.Kafka.Brokers = []string{"127.0.0.1:9092"}
	want.Shards = []config.Shard{{Name: "s0", DSN: "u:p@tcp(127.0.0.1:3308)/"}}
	want.Tables = []config.Table{{Name: "shop.users", Strategy: config.StrategyHash, ShardKey: "id"}}
	path := filepath.Join(t.TempDir(), "cleave.yaml")
	required := `source: {dsn: "u:p@tcp(127.0.0.1:3307)/", server_id: 7}
kafka: {brokers: ["127.0.0.1:9092"]}
shards: [{name: s0, dsn: "u:p@tcp(127.0.0.1:3308)/"}]
tables: [{name: shop.users, strategy: hash, shard_key: id}]
`
	if err := os.WriteFile(path, []byte(required), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("a file with only the required keys loads as\n%+v\nDefaults gives\n%+v", *got, want)
	}
	if _, written := Write(t, want); !reflect.DeepEqual(*written, want) {
		t.Errorf("written and loaded back\n%+v\nwant\n%+v", *written, want)
	}
}

func TestMarshalWritesTheKeysConfigReads(t *testing.T) {
	cfg := everyField()
	data, err := Marshal(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"topic_prefix:", "shard_key:", "version_column:", "default_shard:", "heartbeat_interval: 1.5s", "retry_max_time: 1m30s"} {
		if !strings.Contains(string(data), key) {
			t.Errorf("no %q in\n%s", key, data)
		}
	}
}

func writeAndLoad(t *testing.T, cfg *config.Config) *config.Config {
	t.Helper()
	_, got := Write(t, *cfg)
	return got
}

// zeroField returns the path of the first field of v that holds its zero value, or "".
// Fields that only some table strategies use count when one element of the list sets them.
func zeroField(v reflect.Value, path string) string {
	switch v.Kind() {
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if p := zeroField(v.Field(i), path+"."+v.Type().Field(i).Name); p != "" {
				return p
			}
		}
		return ""
	case reflect.Slice:
		if v.Len() == 0 {
			return path
		}
		if v.Index(0).Kind() != reflect.Struct {
			return ""
		}
		// A field is set when some element sets it.
		for i := 0; i < v.Index(0).NumField(); i++ {
			set := false
			for j := 0; j < v.Len() && !set; j++ {
				set = zeroField(v.Index(j).Field(i), "") == ""
			}
			if !set {
				return path + "[]." + v.Index(0).Type().Field(i).Name
			}
		}
		return ""
	}
	if v.IsZero() {
		return path
	}
	return ""
}

func TestADeploymentHasItsOwnDatabaseAndPreparedShards(t *testing.T) {
	testenv.EachFlavor(t, func(t *testing.T, e testenv.Env) {
		d := New(t, e, Options{})
		if _, err := d.Source.Exec("CREATE TABLE t (id INT NOT NULL PRIMARY KEY, v VARCHAR(8))"); err != nil {
			t.Fatal(err)
		}
		d.Config.Tables = []config.Table{{Name: d.Table("t"), Strategy: config.StrategyBroadcast}}
		cfg := d.Write()
		if !reflect.DeepEqual(*cfg, d.Config) {
			t.Errorf("the written configuration loads back as\n%+v\nwant\n%+v", *cfg, d.Config)
		}
		if cfg.Kafka.TopicPrefix != d.Prefix || cfg.Source.DSN != e.SourceDSN || len(cfg.Shards) != 2 || cfg.Shards[1].Name != "shard1" {
			t.Errorf("source %s, prefix %s, shards %+v: not the deployment's", cfg.Source.DSN, cfg.Kafka.TopicPrefix, cfg.Shards)
		}
		d.Prepare(cfg)
		for i, sh := range d.Shards {
			var n int
			if err := sh.QueryRow("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 't'", d.DB).Scan(&n); err != nil || n != 1 {
				t.Errorf("shard%d: %d tables %s.t (%v), want the one prepare makes", i, n, d.DB, err)
			}
		}
	})
}
