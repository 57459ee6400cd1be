package finalize_test

import (
	"context"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/cleave-dev/cleave/backfill"
	"github.com/cleave-dev/cleave/capture"
	"github.com/cleave-dev/cleave/cutover"
	"github.com/cleave-dev/cleave/finalize"
	"github.com/cleave-dev/cleave/internal/testenv"
	"github.com/cleave-dev/cleave/internal/testenv/deploy"
	"github.com/cleave-dev/cleave/kafkax"
	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/preflight"
	"github.com/cleave-dev/cleave/shardmeta"
)

// TestFinalize walks one deployment through finalize's refusals to a finalized state, on
// shard servers of its own, so that the _cleave database is the deployment's alone.
func TestFinalize(t *testing.T) {
	testenv.EachFlavor(t, func(t *testing.T, env testenv.Env) {
		s0 := testenv.StartServer(t, env.ShardFlavor, testenv.ServerOptions{})
		s1 := testenv.StartServer(t, env.ShardFlavor, testenv.ServerOptions{})
		w := newWorld(t, env, deploy.Options{ShardDSNs: []string{s0.DSN(), s1.DSN()}}, true)
		w.start(t)
		w.waitCopied(t)

		t.Run("refuses without a cut-over, naming it", func(t *testing.T) {
			rep, err := w.run(t, finalize.Options{Apply: true})
			if !finalize.IsRefused(err) {
				t.Fatalf("err = %v, want a refusal", err)
			}
			names, text := failed(rep)
			if !reflect.DeepEqual(names, []string{"cutover"}) || !strings.Contains(text, "cut-over of topic prefix") || !strings.Contains(err.Error(), "cleave cutover") {
				t.Fatalf("failed checks %v (%s), error %v; want the missing cut-over named with its fix", names, text, err)
			}
		})
		t.Run("refuses while the latest cut-over is not done", func(t *testing.T) {
			w.journal(t, "switched")
			rep, err := w.run(t, finalize.Options{Apply: true})
			names, text := failed(rep)
			if !finalize.IsRefused(err) || !reflect.DeepEqual(names, []string{"cutover"}) || !strings.Contains(text, "state switched") {
				t.Fatalf("err %v, failed checks %v (%s); want the switched cut-over named", err, names, text)
			}
		})
		w.journal(t, cutover.StateDone)

		t.Run("refuses while the sinks run", func(t *testing.T) {
			rep, err := w.run(t, finalize.Options{Apply: true})
			names, text := failed(rep)
			if !finalize.IsRefused(err) || !reflect.DeepEqual(names, []string{"sinks.offsets", "sinks.groups"}) ||
				!strings.Contains(text, "stored offsets") || !strings.Contains(text, "members") {
				t.Fatalf("err %v, failed checks %v (%s); want both sink checks failed", err, names, text)
			}
		})
		w.stop()

		time.Sleep(1100 * time.Millisecond) // the tests' SinkIdle

		t.Run("refuses while a sink's offsets were updated just now", func(t *testing.T) {
			w.exec(t, w.Shards[1], "UPDATE `_cleave`.`offsets` SET applied_ts_ms = applied_ts_ms + 1 WHERE consumer_group = ? LIMIT 1",
				kafkax.SinkGroup(w.Prefix, w.cfg.Shards[1].Name))
			rep, err := w.run(t, finalize.Options{Apply: true})
			names, text := failed(rep)
			if !finalize.IsRefused(err) || !reflect.DeepEqual(names, []string{"sinks.offsets"}) ||
				!strings.Contains(text, "shard shard1") || strings.Contains(text, "shard shard0") {
				t.Fatalf("err %v, failed checks %v (%s); want shard1's recent offsets named, and only them", err, names, text)
			}
		})
		time.Sleep(1100 * time.Millisecond)

		t.Run("refuses when a shard row differs", func(t *testing.T) {
			var name string
			if err := w.Shards[0].QueryRow("SELECT name FROM " + mysqlx.QuoteTable(w.DB, "countries") + " WHERE code = 'AT'").Scan(&name); err != nil {
				t.Fatal(err)
			}
			w.exec(t, w.Shards[0], "UPDATE "+mysqlx.QuoteTable(w.DB, "countries")+" SET name = 'Ostmark' WHERE code = 'AT'")
			rep, err := w.run(t, finalize.Options{Apply: true})
			w.exec(t, w.Shards[0], "UPDATE "+mysqlx.QuoteTable(w.DB, "countries")+" SET name = ? WHERE code = 'AT'", name)
			names, text := failed(rep)
			if !finalize.IsRefused(err) || !reflect.DeepEqual(names, []string{"reconcile"}) || !strings.Contains(text, w.DB+".countries") {
				t.Fatalf("err %v, failed checks %v (%s); want the reconcile of countries failed", err, names, text)
			}
			for _, db := range w.Shards {
				if !slices.Contains(w.columns(t, db, "countries"), shardmeta.VersionColumn) {
					t.Fatal("a refused finalize dropped a version column")
				}
			}
		})

		other := w.Prefix + "-other." + w.DB + ".users"
		if err := kafkax.EnsureTopics(context.Background(), env.KafkaBrokers, []kafkax.Topic{{Name: other, Partitions: 1, ReplicationFactor: 1}}); err != nil {
			t.Fatal(err)
		}
		// What `cleave check` leaves: its empty scratch table, which is no deployment's.
		w.exec(t, w.Shards[0], "CREATE TABLE IF NOT EXISTS "+mysqlx.QuoteTable(shardmeta.Database, preflight.CheckWriteTable)+" (id BIGINT UNSIGNED NOT NULL PRIMARY KEY)")
		before := w.shardData(t)
		ours := deploymentTopics(w)

		t.Run("a dry run prints every statement and changes nothing", func(t *testing.T) {
			rep, err := w.run(t, finalize.Options{DeleteTopics: true})
			if err != nil {
				t.Fatal(err)
			}
			var drops, dbs, topics int
			for _, a := range rep.Actions {
				switch {
				case a.Done:
					t.Errorf("dry run did %s: %s", a.Where, a.Statement)
				case strings.Contains(a.Statement, "DROP COLUMN `_cleave_version`"):
					drops++
					if strings.Contains(a.Statement, "accounts") {
						t.Errorf("dry run would drop accounts' version column: %s", a.Statement)
					}
				case a.Statement == "DROP DATABASE IF EXISTS `_cleave`":
					dbs++
				case strings.HasPrefix(a.Statement, "delete topic "):
					topics++
					if name := strings.TrimPrefix(a.Statement, "delete topic "); !slices.Contains(ours, name) {
						t.Errorf("dry run would delete topic %s, not the deployment's", name)
					}
				}
			}
			if drops != 4*len(w.Shards) || dbs != len(w.Shards) || topics == 0 {
				t.Errorf("dry run plans %d column drops, %d database drops, %d topic deletions; want %d, %d, some", drops, dbs, topics, 4*len(w.Shards), len(w.Shards))
			}
			for _, db := range w.Shards {
				if !slices.Contains(w.columns(t, db, "users"), shardmeta.VersionColumn) || !hasBookkeeping(t, db) {
					t.Fatal("the dry run changed a shard")
				}
			}
		})

		t.Run("finalizes: version columns, bookkeeping and topics go, rows stay", func(t *testing.T) {
			rep, err := w.run(t, finalize.Options{Apply: true, DeleteTopics: true})
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range rep.Actions {
				if !a.Done {
					t.Errorf("not done: %s: %s", a.Where, a.Statement)
				}
			}
			for i, db := range w.Shards {
				for _, tbl := range w.cfg.Tables {
					cols := w.columns(t, db, tbl.TableName())
					if slices.Contains(cols, shardmeta.VersionColumn) {
						t.Errorf("shard %d: %s still has %s", i, tbl.Name, shardmeta.VersionColumn)
					}
					if tbl.VersionColumn != "" && !slices.Contains(cols, tbl.VersionColumn) {
						t.Errorf("shard %d: %s lost its own version column %s", i, tbl.Name, tbl.VersionColumn)
					}
				}
				if hasBookkeeping(t, db) {
					t.Errorf("shard %d still has the %s database", i, shardmeta.Database)
				}
			}
			if after := w.shardData(t); !reflect.DeepEqual(before, after) {
				t.Error("the shards' rows changed")
			}
			left := listTopics(t, env.KafkaBrokers)
			for _, name := range ours {
				if slices.Contains(left, name) {
					t.Errorf("topic %s survived", name)
				}
			}
			if !slices.Contains(left, other) {
				t.Errorf("another prefix's topic %s was deleted", other)
			}
			if rec, err := cutover.Latest(context.Background(), w.Source, w.Prefix); err != nil || rec == nil || rec.State != cutover.StateDone {
				t.Errorf("the source's journal lost the cut-over: %+v, %v", rec, err)
			}
			if !hasNote(rep, "frozen copy") {
				t.Error("the report does not say that the source's moved tables are a frozen copy")
			}
		})

		t.Run("a second run has nothing left to do", func(t *testing.T) {
			rep, err := w.run(t, finalize.Options{Apply: true, DeleteTopics: true})
			if err != nil || !rep.NothingToDo || len(rep.Actions) != 0 {
				t.Fatalf("second run: err %v, nothing to do %v, %d actions", err, rep.NothingToDo, len(rep.Actions))
			}
		})
	})
}

// TestFinalizeLeavesAnotherDeploymentsBookkeeping finalizes a deployment whose shard
// servers hold another deployment's offsets: only its own rows go, the _cleave database
// stays, and the report says why.
func TestFinalizeLeavesAnotherDeploymentsBookkeeping(t *testing.T) {
	testenv.EachFlavor(t, func(t *testing.T, env testenv.Env) {
		w := newWorld(t, env, deploy.Options{}, false)
		w.journal(t, cutover.StateDone)
		offsets := mysqlx.QuoteTable(shardmeta.Database, shardmeta.Offsets)
		otherGroup := w.Prefix + "-other.sink.shard0"
		for i, db := range w.Shards {
			// A stopped sink's rows, an hour old.
			w.exec(t, db, "INSERT INTO "+offsets+" (consumer_group, topic, kafka_partition, next_offset, updated_at) VALUES (?, ?, 0, 1, NOW(6) - INTERVAL 1 HOUR)",
				kafkax.SinkGroup(w.Prefix, w.cfg.Shards[i].Name), kafkax.TableTopic(w.Prefix, w.DB, "users"))
			w.exec(t, db, "INSERT INTO "+offsets+" (consumer_group, topic, kafka_partition, next_offset) VALUES (?, 'other', 0, 1)", otherGroup)
			t.Cleanup(func() { _, _ = db.Exec("DELETE FROM "+offsets+" WHERE consumer_group = ?", otherGroup) })
		}
		rep, err := w.run(t, finalize.Options{Apply: true})
		if err != nil {
			t.Fatal(err)
		}
		for i, db := range w.Shards {
			var own, foreign int
			if err := db.QueryRow("SELECT COALESCE(SUM(consumer_group = ?), 0), COALESCE(SUM(consumer_group = ?), 0) FROM "+offsets,
				kafkax.SinkGroup(w.Prefix, w.cfg.Shards[i].Name), otherGroup).Scan(&own, &foreign); err != nil {
				t.Fatal(err)
			}
			if own != 0 || foreign != 1 {
				t.Errorf("shard %d: %d rows of the deployment and %d of the other are left; want 0 and 1", i, own, foreign)
			}
			if slices.Contains(w.columns(t, db, "users"), shardmeta.VersionColumn) {
				t.Errorf("shard %d: users still has %s", i, shardmeta.VersionColumn)
			}
		}
		if !hasNote(rep, "the _cleave database stays") {
			t.Error("the report does not say why _cleave stays")
		}
		if !hasNote(rep, "topics stay") {
			t.Error("the report does not say that the topics stay without --delete-topics")
		}
	})
}

func hasNote(rep *finalize.Report, s string) bool {
	for _, n := range rep.Notes {
		if strings.Contains(n, s) {
			return true
		}
	}
	return false
}

// deploymentTopics names every topic of the world's deployment, as finalize must know them.
func deploymentTopics(w *world) []string {
	var out []string
	for _, tbl := range w.cfg.Tables {
		out = append(out, kafkax.TableTopic(w.Prefix, tbl.DB(), tbl.TableName()))
	}
	for _, s := range w.cfg.Shards {
		out = append(out, kafkax.DLQTopic(w.Prefix, s.Name))
	}
	return append(out, backfill.Topic(w.Prefix), capture.CheckpointTopic(w.Prefix))
}

func listTopics(t *testing.T, brokers []string) []string {
	t.Helper()
	md, err := kafkax.Client(brokers).Metadata(context.Background(), &kafka.MetadataRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, tp := range md.Topics {
		out = append(out, tp.Name)
	}
	sort.Strings(out)
	return out
}
