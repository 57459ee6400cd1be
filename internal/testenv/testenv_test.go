package testenv

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cleave-dev/cleave/internal/testenv/core"
)

// recorder is a testing.TB that records how a helper ended the test instead of ending it.
type recorder struct {
	testing.TB
	mu      sync.Mutex
	fatal   string
	skipped string
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) {
	r.mu.Lock()
	r.fatal = fmt.Sprintf(format, args...)
	r.mu.Unlock()
	runtime.Goexit()
}

func (r *recorder) Skip(args ...any) {
	r.mu.Lock()
	r.skipped = fmt.Sprint(args...)
	r.mu.Unlock()
	runtime.Goexit()
}

// run calls f with r on a goroutine of its own, as Fatalf and Skip end that goroutine.
func (r *recorder) run(f func(testing.TB)) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
}

func TestMissingServiceFailsInCIAndSkipsElsewhere(t *testing.T) {
	port, err := core.FreePort() // nothing listens there once freePort returns
	if err != nil {
		t.Fatal(err)
	}
	dead := fmt.Sprintf("cleave:cleave@tcp(127.0.0.1:%d)/", port)
	deadBroker := fmt.Sprintf("127.0.0.1:%d", port)

	for _, tc := range []struct {
		name     string
		ci       string
		wantFail bool
	}{
		{"CI=true fails", "true", true},
		{"CI unset skips", "", false},
		{"CI=false skips", "false", false},
	} {
		for _, svc := range []struct {
			name  string
			check func(testing.TB)
			want  string
		}{
			{"mysql", func(tb testing.TB) {
				checkMySQL(tb, Env{SourceDSN: dead, Shard0DSN: dead, Shard1DSN: dead})
			}, "MariaDB source at 127.0.0.1:" + fmt.Sprint(port)},
			{"kafka", func(tb testing.TB) { checkKafka(tb, []string{deadBroker}) }, "Kafka at " + deadBroker},
		} {
			t.Run(tc.name+"/"+svc.name, func(t *testing.T) {
				t.Setenv("CI", tc.ci)
				r := &recorder{TB: t}
				r.run(svc.check)
				got := r.skipped
				if tc.wantFail {
					got = r.fatal
					if r.skipped != "" {
						t.Fatalf("skipped (%q), want a failure", r.skipped)
					}
				} else if r.fatal != "" {
					t.Fatalf("failed (%q), want a skip", r.fatal)
				}
				for _, want := range []string{svc.want, "scripts/services.sh up"} {
					if !strings.Contains(got, want) {
						t.Errorf("message %q does not contain %q", got, want)
					}
				}
				if strings.Contains(got, "cleave:cleave") {
					t.Errorf("message %q shows the password", got)
				}
			})
		}
	}
}

func TestUniqueName(t *testing.T) {
	valid := regexp.MustCompile(`^[a-z0-9_]+$`)
	for _, tc := range []struct {
		name   string
		prefix string
		sep    byte
		max    int
		re     *regexp.Regexp
	}{
		{"database name fits MariaDB's 64 characters", "t_", '_', 64, valid},
		{"topic prefix uses dashes", "t-", '-', 80, regexp.MustCompile(`^[a-z0-9-]+$`)},
		{"long test name is truncated, random suffix kept" + strings.Repeat("x", 100), "t_", '_', 64, valid},
		{"tiny limit leaves only the suffix", "t_", '_', 12, valid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := UniqueName(t, tc.prefix, tc.sep, tc.max)
			b := UniqueName(t, tc.prefix, tc.sep, tc.max)
			if a == b {
				t.Errorf("two calls gave the same name %q", a)
			}
			if len(a) > tc.max {
				t.Errorf("%q is %d bytes, want at most %d", a, len(a), tc.max)
			}
			if !strings.HasPrefix(a, tc.prefix) || !tc.re.MatchString(a) {
				t.Errorf("%q: want prefix %q and only %s", a, tc.prefix, tc.re)
			}
		})
	}
}

func TestKafkaTemplate(t *testing.T) {
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(root, kafkaTemplate)
	vars := map[string]string{"PORT": "19092", "CONTROLLER_PORT": "19093", "LOG_DIR": "/kafka & co/data"}
	maps.Copy(vars, privateKafkaSizing)
	t.Run("a private broker fills every placeholder, notes dropped", func(t *testing.T) {
		cfg, err := renderTemplate(path, vars)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{
			"\nlisteners=PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093\n",
			"\nlog.dirs=/kafka & co/data\n",
			"\noffsets.topic.num.partitions=4\n",
		} {
			if !strings.Contains(cfg, want) {
				t.Errorf("config lacks %q:\n%s", want, cfg)
			}
		}
		if strings.Contains(cfg, "@") || strings.Contains(cfg, "##") {
			t.Errorf("a placeholder or a template note is left:\n%s", cfg)
		}
	})
	t.Run("a placeholder without a value is an error naming it", func(t *testing.T) {
		partial := maps.Clone(vars)
		delete(partial, "IO_THREADS")
		if _, err := renderTemplate(path, partial); err == nil || !strings.Contains(err.Error(), "@IO_THREADS@") {
			t.Fatalf("err = %v, want one naming @IO_THREADS@", err)
		}
	})
}

func TestNewDatabaseIsCreatedAndDroppedAtCleanup(t *testing.T) {
	env := MySQL(t)
	var name string
	t.Run("create", func(t *testing.T) {
		name = NewDatabase(t, env.SourceDSN)
		db := OpenDB(t, DSNWithDB(t, env.SourceDSN, name))
		if _, err := db.Exec("CREATE TABLE t (id INT PRIMARY KEY)"); err != nil {
			t.Fatalf("use new database: %v", err)
		}
	})
	db := OpenDB(t, env.SourceDSN)
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = ?", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("database %s still exists after its test's cleanup", name)
	}
}

func TestTopicPrefixTopicsAreDeletedAtCleanup(t *testing.T) {
	brokers := KafkaBrokers(t)
	var topic string
	t.Run("create", func(t *testing.T) {
		topic = TopicPrefix(t) + ".db.table"
		createTopic(t, brokers, topic)
	})
	Eventually(t, 30*time.Second, "topic "+topic+" deleted", func() bool {
		return !topicExists(t, brokers, topic)
	})
}

func TestPrivateServer(t *testing.T) {
	for _, f := range MatrixFlavors() {
		t.Run(string(f), func(t *testing.T) { testPrivateServer(t, f) })
	}
}

func testPrivateServer(t *testing.T, f Flavor) {
	t.Run("defaults are a correct cleave source", func(t *testing.T) {
		m := StartServer(t, f, ServerOptions{ServerID: 4242})
		want := map[string]string{
			"log_bin": "1", "binlog_format": "ROW", "binlog_row_image": "FULL",
			"binlog_row_metadata": "FULL", "server_id": "4242",
		}
		if f == MySQLFlavor {
			want["gtid_mode"] = "ON"
			want["enforce_gtid_consistency"] = "ON"
		} else {
			want["gtid_strict_mode"] = "1"
		}
		if m.Flavor() != f {
			t.Errorf("Flavor() = %s, want %s", m.Flavor(), f)
		}
		checkVariables(t, m.DSN(), want)
	})
	t.Run("options misconfigure the binlog", func(t *testing.T) {
		opts := ServerOptions{DisableBinlog: true, BinlogFormat: "STATEMENT", BinlogRowImage: "MINIMAL"}
		want := map[string]string{"log_bin": "0", "binlog_format": "STATEMENT", "binlog_row_image": "MINIMAL"}
		if f == MySQLFlavor {
			opts.ExtraArgs = []string{"--binlog-transaction-compression=ON"}
			want["binlog_transaction_compression"] = "1"
		} else {
			opts.ExtraArgs = []string{"--gtid-domain-id=7"}
			want["gtid_domain_id"] = "7"
		}
		m := StartServer(t, f, opts)
		checkVariables(t, m.DSN(), want)
	})
	t.Run("rows survive a graceful stop and a kill, on the same port", func(t *testing.T) {
		m := StartServer(t, f, ServerOptions{})
		addr := m.Addr()
		m.RootExec("CREATE DATABASE d; CREATE TABLE d.t (id INT PRIMARY KEY); INSERT INTO d.t VALUES (1)")
		m.Stop()
		if m.Running() {
			t.Fatal("still running after Stop")
		}
		if err := core.PingMySQL(context.Background(), m.DSN()); err == nil {
			t.Fatal("answers after Stop")
		}
		m.Start()
		m.RootExec("INSERT INTO d.t VALUES (2)")
		m.Kill()
		m.Start()
		if m.Addr() != addr {
			t.Errorf("address changed from %s to %s", addr, m.Addr())
		}
		var n int
		if err := OpenDB(t, m.DSN()).QueryRow("SELECT COUNT(*) FROM d.t").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 2 {
			t.Errorf("got %d rows after restarts, want 2", n)
		}
	})
	t.Run("a user without grants can be made for permission tests", func(t *testing.T) {
		m := StartServer(t, f, ServerOptions{})
		m.RootExec("CREATE USER 'weak'@'%' IDENTIFIED BY 'pw'")
		_, err := OpenDB(t, m.DSNFor("weak", "pw")).Exec("CREATE DATABASE nope")
		if err == nil {
			t.Fatal("user without grants could create a database")
		}
	})
}

func TestPrivateKafkaKeepsMessagesAcrossRestart(t *testing.T) {
	k := StartKafka(t)
	topic := "restart"
	createTopic(t, k.Brokers(), topic)
	w := &kafka.Writer{Addr: kafka.TCP(k.Brokers()...), Topic: topic, BatchTimeout: time.Millisecond, RequiredAcks: kafka.RequireAll}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := w.WriteMessages(ctx, kafka.Message{Key: []byte("k"), Value: []byte("before")}); err != nil {
		t.Fatalf("write: %v", err)
	}

	k.Stop()
	pingCtx, cancelPing := context.WithTimeout(context.Background(), time.Second)
	defer cancelPing()
	if err := core.PingBroker(pingCtx, k.Addr()); err == nil {
		t.Fatal("broker answers after Stop")
	}
	k.Start()

	var total int64
	Eventually(t, time.Minute, "message readable after restart", func() bool {
		total = 0
		for p := 0; p < 4; p++ {
			conn, err := kafka.DialLeader(ctx, "tcp", k.Addr(), topic, p)
			if err != nil {
				return false
			}
			last, err := conn.ReadLastOffset()
			conn.Close()
			if err != nil {
				return false
			}
			total += last
		}
		return total == 1
	})
}

func checkVariables(t *testing.T, dsn string, want map[string]string) {
	t.Helper()
	db := OpenDB(t, dsn)
	for name, v := range want {
		var got string
		if err := db.QueryRow("SELECT @@GLOBAL." + name).Scan(&got); err != nil {
			t.Fatalf("read @@%s: %v", name, err)
		}
		if got != v {
			t.Errorf("@@%s = %s, want %s", name, got, v)
		}
	}
}

func createTopic(t *testing.T, brokers []string, topic string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := &kafka.Client{Addr: kafka.TCP(brokers...)}
	res, err := c.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{
		{Topic: topic, NumPartitions: 4, ReplicationFactor: 1},
	}})
	if err == nil {
		err = res.Errors[topic]
	}
	if err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
	Eventually(t, 30*time.Second, "topic "+topic+" visible", func() bool { return topicExists(t, brokers, topic) })
}

func topicExists(t *testing.T, brokers []string, topic string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := &kafka.Client{Addr: kafka.TCP(brokers...)}
	meta, err := c.Metadata(ctx, &kafka.MetadataRequest{})
	if err != nil {
		t.Fatalf("metadata: %v", err)
	}
	for _, tp := range meta.Topics {
		if tp.Name == topic && tp.Error == nil {
			return true
		}
	}
	return false
}
