package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cleave-dev/cleave/route"
)

const validYAML = `
source:
  dsn: "cleave:pw@tcp(127.0.0.1:3307)/"
  server_id: 1001
kafka:
  brokers: ["127.0.0.1:9092"]
shards:
  - name: s0
    dsn: "cleave:pw@tcp(127.0.0.1:3308)/"
  - name: s1
    dsn: "cleave:pw@tcp(127.0.0.1:3309)/"
tables:
  - name: shop.users
    shard_key: id
    strategy: hash
  - name: shop.countries
    strategy: broadcast
`

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cleave.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestValidConfigGetsItsDefaults(t *testing.T) {
	c, err := Load(writeConfig(t, validYAML))
	if err != nil {
		t.Fatal(err)
	}
	if c.Source.Flavor != "mariadb" || c.Kafka.TopicPrefix != "cleave" || c.Kafka.Partitions != 8 ||
		c.DDL.Policy != DDLStop || c.Sink.OnError != OnErrorStop || c.Reconcile.ChunkTarget != 250*time.Millisecond ||
		c.Capture.HeartbeatInterval != time.Second || c.HTTP.Listen == "" || c.Log.Level != "info" {
		t.Fatalf("defaults not applied: %+v", c)
	}
	if c.Table("shop.users") == nil || c.Table("shop.users").DB() != "shop" || c.Table("shop.users").TableName() != "users" {
		t.Fatal("table lookup")
	}
}

func TestShippedConfigsAreValid(t *testing.T) {
	for _, name := range []string{"demo.yaml", "example.yaml"} {
		t.Run(name, func(t *testing.T) {
			if _, err := Load(filepath.Join("..", "configs", name)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestListValuesKeepTheirCase(t *testing.T) {
	body := strings.Replace(validYAML, "strategy: hash", "strategy: list\n    values:\n      - {value: EU, shard: s0}\n      - {value: eu, shard: s1}", 1)
	c, err := Load(writeConfig(t, body))
	if err != nil {
		t.Fatal(err)
	}
	v := c.Tables[0].Values
	if len(v) != 2 || v[0].Value != "EU" || v[1].Value != "eu" {
		t.Fatalf("values = %+v", v)
	}
}

func TestEnvironmentOverridesTheFile(t *testing.T) {
	t.Setenv("CLEAVE_KAFKA_TOPIC_PREFIX", "fromenv")
	t.Setenv("CLEAVE_SOURCE_SERVER_ID", "77")
	t.Setenv("CLEAVE_KAFKA_BROKERS", "a:1,b:2")
	t.Setenv("CLEAVE_SHARD_S1_DSN", "other:secret@tcp(10.0.0.9:3306)/")
	c, err := Load(writeConfig(t, validYAML))
	if err != nil {
		t.Fatal(err)
	}
	if c.Kafka.TopicPrefix != "fromenv" || c.Source.ServerID != 77 || len(c.Kafka.Brokers) != 2 || c.Kafka.Brokers[1] != "b:2" {
		t.Fatalf("env not applied: %+v", c.Kafka)
	}
	if c.Shards[1].DSN != "other:secret@tcp(10.0.0.9:3306)/" {
		t.Fatalf("shard env not applied: %s", c.Shards[1].DSN)
	}
}

func TestFlagOverridesWin(t *testing.T) {
	t.Setenv("CLEAVE_LOG_LEVEL", "warn")
	c, err := LoadWith(writeConfig(t, validYAML), map[string]any{"log.level": "debug"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Log.Level != "debug" {
		t.Fatalf("log.level = %s", c.Log.Level)
	}
}

// TestInvalidConfigsNameTheKey states, for each mistake an operator can make, the key path
// the error must name.
func TestInvalidConfigsNameTheKey(t *testing.T) {
	cases := []struct {
		name    string
		replace [2]string // old, new applied to validYAML
		append  string
		wantKey string
		wantMsg string
	}{
		{"unknown top-level key", [2]string{}, "sourse:\n  dsn: x\n", "sourse", "unknown key"},
		{"unknown nested key suggests the right one", [2]string{"  server_id: 1001", "  server_id: 1001\n  serverid: 3"}, "", "source.serverid", `did you mean "server_id"`},
		{"unknown key inside a list item", [2]string{"    shard_key: id\n    strategy: hash", "    shardkey: id\n    strategy: hash"}, "", "tables[0].shardkey", "unknown key"},
		{"missing source dsn", [2]string{`  dsn: "cleave:pw@tcp(127.0.0.1:3307)/"`, ""}, "", "source.dsn", "required"},
		{"bad source dsn", [2]string{`cleave:pw@tcp(127.0.0.1:3307)/`, `cleave:pw@127.0.0.1`}, "", "source.dsn", "not a valid DSN"},
		{"flavor typo", [2]string{"  server_id: 1001", "  server_id: 1001\n  flavor: maria"}, "", "source.flavor", "not mariadb or mysql"},
		{"missing server id", [2]string{"  server_id: 1001", ""}, "", "source.server_id", "required"},
		{"no brokers", [2]string{`  brokers: ["127.0.0.1:9092"]`, ""}, "", "kafka.brokers", "required"},
		{"broker without port", [2]string{`["127.0.0.1:9092"]`, `["localhost"]`}, "", "kafka.brokers[0]", "host:port"},
		{"zero partitions", [2]string{`  brokers: ["127.0.0.1:9092"]`, "  brokers: [\"127.0.0.1:9092\"]\n  partitions: 0"}, "", "kafka.partitions", "at least 1"},
		{"bad topic prefix", [2]string{`  brokers: ["127.0.0.1:9092"]`, "  brokers: [\"127.0.0.1:9092\"]\n  topic_prefix: \"a b\""}, "", "kafka.topic_prefix", "letters"},
		{"duplicate shard name", [2]string{"  - name: s1\n", "  - name: s0\n"}, "", "shards[1].name", "already the name of shards[0]"},
		{"shard without dsn", [2]string{"    dsn: \"cleave:pw@tcp(127.0.0.1:3309)/\"\n", ""}, "", "shards[1].dsn", "CLEAVE_SHARD_S1_DSN"},
		{"table name without db", [2]string{"name: shop.users", "name: users"}, "", "tables[0].name", "db.table"},
		{"duplicate table", [2]string{"name: shop.countries", "name: shop.users"}, "", "tables[1].name", "already configured as tables[0]"},
		{"unknown strategy", [2]string{"strategy: hash", "strategy: modulo"}, "", "tables[0].strategy", `"modulo" is not one of hash, range, list, broadcast, pin`},
		{"hash without shard key", [2]string{"    shard_key: id\n", ""}, "", "tables[0].shard_key", "required by strategy hash"},
		{"negative drift alert threshold", [2]string{"    shard_key: id\n", "    shard_key: id\n    drift_alert_above: -1\n"}, "", "tables[0].drift_alert_above", "must be 0 (alert on any drifted row) or more"},
		{"negative log age", [2]string{"  server_id: 1001", "  server_id: 1001"}, "log:\n  max_age_days: -2\n", "log.max_age_days", "must be 0 (no age limit) or more"},
		{"broadcast with a shard key", [2]string{"    strategy: broadcast", "    strategy: broadcast\n    shard_key: code"}, "", "tables[1].shard_key", "not used by strategy broadcast"},
		{"pin to unknown shard", [2]string{"    strategy: broadcast", "    strategy: pin\n    shard: s9"}, "", "tables[1].shard", `"s9" is not one of the shards ("s0", "s1")`},
		{"range without ranges", [2]string{"strategy: hash", "strategy: range"}, "", "tables[0].ranges", "required by strategy range"},
		{"range whose last bound is bounded", [2]string{"strategy: hash", "strategy: range\n    ranges:\n      - below: \"100\"\n        shard: s0"}, "", "tables[0].ranges[0].below", "last range must be unbounded"},
		{"range with a middle range unbounded", [2]string{"strategy: hash", "strategy: range\n    ranges:\n      - shard: s0\n      - shard: s1"}, "", "tables[0].ranges[0].below", "only the last range may be unbounded"},
		{"list value to unknown shard", [2]string{"strategy: hash", "strategy: list\n    values:\n      - value: eu\n        shard: s7"}, "", "tables[0].values[0].shard", `"s7" is not one of the shards ("s0", "s1")`},
		{"list value listed twice", [2]string{"strategy: hash", "strategy: list\n    values:\n      - {value: EU, shard: s0}\n      - {value: EU, shard: s1}"}, "", "tables[0].values[1].value", `"EU" is already listed as values[0]; list each value once`},
		{"pin without a shard", [2]string{"    strategy: broadcast", "    strategy: pin"}, "", "tables[1].shard", `required: the name of one of the shards ("s0", "s1")`},
		{"ranges under another strategy", [2]string{"strategy: hash", "strategy: hash\n    ranges:\n      - shard: s0"}, "", "tables[0].ranges", "belongs to strategy range only, and the strategy is hash"},
		{"default shard under another strategy", [2]string{"strategy: hash", "strategy: hash\n    default_shard: s0"}, "", "tables[0].default_shard", "belongs to strategy list only, and the strategy is hash"},
		{"shard under another strategy", [2]string{"    strategy: broadcast", "    strategy: broadcast\n    shard: s0"}, "", "tables[1].shard", "belongs to strategy pin only, and the strategy is broadcast"},
		{"list default to unknown shard", [2]string{"strategy: hash", "strategy: list\n    values:\n      - {value: eu, shard: s0}\n    default_shard: rest"}, "", "tables[0].default_shard", `"rest" is not one of the shards`},
		{"list without values", [2]string{"strategy: hash", "strategy: list"}, "", "tables[0].values", "required by strategy list"},
		{"ddl policy typo", [2]string{}, "ddl:\n  policy: ignore\n", "ddl.policy", "not stop or propagate"},
		{"on_error typo", [2]string{}, "sink:\n  on_error: skip\n", "sink.on_error", "not stop or dead_letter"},
		{"negative batch wait", [2]string{}, "sink:\n  batch_wait: -1s\n", "sink.batch_wait", "negative"},
		{"webhook without scheme", [2]string{}, "reconcile:\n  webhook_url: alerts.internal/hook\n", "reconcile.webhook_url", "http://"},
		{"http listen without port", [2]string{}, "http:\n  listen: localhost\n", "http.listen", "host:port"},
		{"log level typo", [2]string{}, "log:\n  level: verbose\n", "log.level", "not debug, info, warn or error"},
		{"misspelt section name", [2]string{"tables:", "tabels:"}, "", "tabels", "unknown key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := validYAML
			if tc.replace[0] != "" {
				if !strings.Contains(body, tc.replace[0]) {
					t.Fatalf("test setup: %q not in the valid config", tc.replace[0])
				}
				body = strings.Replace(body, tc.replace[0], tc.replace[1], 1)
			}
			body += tc.append
			_, err := Load(writeConfig(t, body))
			if err == nil {
				t.Fatal("Load accepted the config")
			}
			if !strings.Contains(err.Error(), tc.wantKey+": ") {
				t.Fatalf("error does not name key %q: %v", tc.wantKey, err)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("error does not say %q: %v", tc.wantMsg, err)
			}
		})
	}
}

// TestEachProblemIsReportedOnce: a mistake that breaks several rules at once (an unknown
// strategy, which also makes the shard key's use unknown) is one line naming one key.
func TestEachProblemIsReportedOnce(t *testing.T) {
	body := strings.Replace(validYAML, "strategy: hash", "strategy: modulo\n    ranges:\n      - shard: s9", 1)
	_, err := Load(writeConfig(t, body))
	if err == nil {
		t.Fatal("accepted")
	}
	if n := strings.Count(err.Error(), "tables[0]."); n != 1 {
		t.Fatalf("%d problems with tables[0], want 1 (the strategy): %v", n, err)
	}
	if !strings.Contains(err.Error(), `tables[0].strategy: "modulo" is not one of`) {
		t.Fatalf("err = %v", err)
	}
}

// TestRoutingProblemsAreRoutesErrors: a routing problem that config reports by its key is
// still route's *route.FieldError, for a caller that classifies errors.
func TestRoutingProblemsAreRoutesErrors(t *testing.T) {
	body := strings.Replace(validYAML, "strategy: broadcast", "strategy: pin\n    shard: s9", 1)
	_, err := Load(writeConfig(t, body))
	var fe *route.FieldError
	if !errors.As(err, &fe) || fe.Table != "shop.countries" || fe.Field != "shard" {
		t.Fatalf("errors.As(%v) = %+v, want route's error on shop.countries' shard", err, fe)
	}
}

func TestErrorsNeverShowPasswords(t *testing.T) {
	body := strings.Replace(validYAML, `cleave:pw@tcp(127.0.0.1:3307)/`, `cleave:hunter2@tcp(127.0.0.1:3307)/?badparam=%zz`, 1)
	_, err := Load(writeConfig(t, body))
	if err == nil {
		t.Fatal("accepted")
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("password in error: %v", err)
	}
}

func TestShardDSNEnvName(t *testing.T) {
	if got := ShardDSNEnv("eu-west.1"); got != "CLEAVE_SHARD_EU_WEST_1_DSN" {
		t.Fatal(got)
	}
}
