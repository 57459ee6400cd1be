package capture

import (
	"testing"
	"time"

	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/event"
	"github.com/cleave-dev/cleave/internal/testenv"
	"github.com/cleave-dev/cleave/kafkax"
	"github.com/cleave-dev/cleave/shardmeta"
)

// The cut-over waits until every sink has applied past the source's position read right
// after its journal write; on a fenced source only a heartbeat takes the sinks there.
// Capture sends one at the journal's commit, on every partition, instead of at the next
// scheduled heartbeat (an hour away here); without a journal write it sends none.
func TestJournalWriteSendsAHeartbeatOnEveryPartitionAtItsCommit(t *testing.T) {
	t.Parallel()
	testenv.EachFlavor(t, testJournalWriteSendsAHeartbeatOnEveryPartitionAtItsCommit)
}

func testJournalWriteSendsAHeartbeatOnEveryPartitionAtItsCommit(t *testing.T, e testenv.Env) {
	t.Parallel()
	// A private source: nothing but the test writes to it, so the position read right
	// after a commit is that commit's, as on a fenced source.
	m := testenv.StartServer(t, e.SourceFlavor, testenv.ServerOptions{})
	f := newFixtureOn(t, e, m.DSN())
	f.exec(shardmeta.SourceStatements...)
	f.exec("CREATE TABLE a (id INT PRIMARY KEY)", "CREATE TABLE b (id INT PRIMARY KEY)", "CREATE TABLE other (id INT PRIMARY KEY)")
	cfg := f.configure([]string{"a", "b"}, func(c *config.Config) { c.Capture.HeartbeatInterval = time.Hour })
	r := f.start(cfg)
	topics := []string{kafkax.TableTopic(f.prefix, f.db, "a"), kafkax.TableTopic(f.prefix, f.db, "b")}
	parts := cfg.Kafka.Partitions

	// A session sends its first heartbeat at its first boundary; after that the next
	// scheduled one is an hour away.
	f.exec("INSERT INTO a VALUES (1)")
	r.waitAcknowledged(t, f.sourcePosition())
	sent := metricValue(t, r.reg, "cleave_capture_heartbeats_total")

	t.Run("no heartbeat without a journal write", func(t *testing.T) {
		f.exec("INSERT INTO other VALUES (1)")
		quiet := version(t, f.sourcePosition())
		f.exec("INSERT INTO a VALUES (2)")
		r.waitAcknowledged(t, f.sourcePosition())
		rows := 0
		for _, topic := range topics {
			for _, rec := range readTopic(t, f.env.KafkaBrokers, topic) {
				if rec.ev.Op == event.OpHeartbeat && rec.ev.Version >= quiet {
					t.Fatalf("%s/%d@%d: heartbeat %v at or past %v without a journal write", topic, rec.partition, rec.offset, rec.ev.Version, quiet)
				}
				if rec.ev.Op == event.OpCreate && rec.key == "[2]" {
					rows++
				}
			}
		}
		if rows != 1 {
			t.Fatalf("the row written after the quiet transaction reached Kafka %d times, want 1", rows)
		}
		if n := metricValue(t, r.reg, "cleave_capture_heartbeats_total"); n != sent {
			t.Fatalf("heartbeats_total %v after the quiet transaction, was %v", n, sent)
		}
	})

	t.Run("a journal write alone", func(t *testing.T) {
		if _, err := f.src.Exec("INSERT INTO `"+shardmeta.Database+"`.`"+shardmeta.Cutover+"` (topic_prefix, state, detail) VALUES (?, 'fenced', '')", f.prefix); err != nil {
			t.Fatal(err)
		}
		want := version(t, f.sourcePosition())
		began := time.Now()
		waitHeartbeats(t, f.env.KafkaBrokers, topics, parts, want)
		t.Logf("heartbeats at or past %v on %d partitions %s after the position was read", want, len(topics)*parts, time.Since(began).Round(time.Millisecond))
		if n := metricValue(t, r.reg, "cleave_capture_heartbeats_total"); n != sent+float64(len(topics)*parts) {
			t.Fatalf("heartbeats_total %v, want %v: one heartbeat per partition", n, sent+float64(len(topics)*parts))
		}
	})

	t.Run("a journal write in a transaction with rows follows them", func(t *testing.T) {
		stmts := []string{
			"BEGIN",
			"INSERT INTO b VALUES (7)",
			"UPDATE `" + shardmeta.Database + "`.`" + shardmeta.Cutover + "` SET state = 'done' WHERE topic_prefix = '" + f.prefix + "'",
			"INSERT INTO a VALUES (7)",
			"COMMIT",
		}
		if e.SourceFlavor == testenv.MySQLFlavor {
			// One Transaction_payload event, whose inner table maps name the journal.
			stmts = append([]string{"SET SESSION binlog_transaction_compression = ON"}, stmts...)
		}
		f.execOneSession(stmts...)
		want := version(t, f.sourcePosition())
		recs := waitHeartbeats(t, f.env.KafkaBrokers, topics, parts, want)
		for _, topic := range topics {
			var row *record
			for i, rec := range recs[topic] {
				switch {
				case rec.ev.Op == event.OpCreate && rec.key == "[7]":
					row = &recs[topic][i]
				case rec.ev.Op == event.OpHeartbeat && rec.ev.Version >= want && row != nil && rec.partition == row.partition:
					if rec.ev.Version <= row.ev.Version {
						t.Fatalf("%s/%d@%d: heartbeat %v not above the transaction's row %v", topic, rec.partition, rec.offset, rec.ev.Version, row.ev.Version)
					}
					row = nil
				}
			}
			if row != nil {
				t.Fatalf("%s/%d: no heartbeat after the transaction's row", topic, row.partition)
			}
		}
	})
}

// version is the version a heartbeat at p carries.
func version(t testing.TB, p Position) event.Version {
	t.Helper()
	v, err := event.NewVersion(p.File, p.Pos, 0)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// waitHeartbeats waits (at most 30 s: far less than the heartbeat interval) until every
// partition of every topic holds a heartbeat with version at or past want, and returns
// what the topics hold then.
func waitHeartbeats(t *testing.T, brokers, topics []string, partitions int, want event.Version) map[string][]record {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		recs := map[string][]record{}
		missing := 0
		for _, topic := range topics {
			recs[topic] = readTopic(t, brokers, topic)
			seen := map[int]bool{}
			for _, rec := range recs[topic] {
				if rec.ev.Op == event.OpHeartbeat && rec.ev.Version >= want {
					if rec.key != "" {
						t.Fatalf("%s/%d@%d: heartbeat with key %q", topic, rec.partition, rec.offset, rec.key)
					}
					seen[rec.partition] = true
				}
			}
			missing += partitions - len(seen)
		}
		if missing == 0 {
			return recs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d partitions without a heartbeat at or past %v", missing, len(topics)*partitions, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
