package sink

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/segmentio/kafka-go"

	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/event"
	"github.com/cleave-dev/cleave/internal/testenv"
	"github.com/cleave-dev/cleave/kafkax"
	"github.com/cleave-dev/cleave/mysqlx"
	"github.com/cleave-dev/cleave/route"
	"github.com/cleave-dev/cleave/schema"
	"github.com/cleave-dev/cleave/shardmeta"
)

func TestSinksApplyEveryStrategyIncludingShardKeyMoves(t *testing.T) {
	testenv.EachFlavor(t, func(t *testing.T, e testenv.Env) {
		f := newFixture(t, fixtureOpts{env: e})
		g := newGen(f, 1)
		g.produce(3000)
		reg := prometheus.NewRegistry()
		m, err := NewMetrics(reg)
		if err != nil {
			t.Fatal(err)
		}
		stop0, _ := f.runSink("s0", Options{Metrics: m})
		stop1, _ := f.runSink("s1", Options{Metrics: m})
		// More events while the sinks run.
		g.produce(2000)
		f.waitCaughtUp(2 * time.Minute)

		t.Run("metrics", func(t *testing.T) {
			for _, shard := range []string{"s0", "s1"} {
				testenv.Eventually(t, 30*time.Second, shard+"'s consumer lag to reach 0", func() bool {
					return gaugeValue(m.consumerLag.WithLabelValues(shard)) == 0
				})
			}
			lags := gathered(t, reg, "cleave_sink_lag_seconds")
			if len(lags) != 2 || lags["s0"] < 0 || lags["s1"] < 0 {
				t.Errorf("cleave_sink_lag_seconds = %v, want a non-negative value for s0 and s1", lags)
			}
			applied := gathered(t, reg, "cleave_sink_events_applied_total")
			if applied["s0"] == 0 || applied["s1"] == 0 {
				t.Errorf("cleave_sink_events_applied_total by shard = %v, want both above 0", applied)
			}
			// Counters of what has not happened are there at zero, so rates and alerts over
			// them have a series from the start.
			for _, name := range []string{"cleave_sink_retries_total", "cleave_sink_dead_letters_total", "cleave_sink_events_stale_total"} {
				got := gathered(t, reg, name)
				for _, shard := range []string{"s0", "s1"} {
					if _, ok := got[shard]; !ok {
						t.Errorf("%s has no series for shard %s: %v", name, shard, got)
					}
				}
			}
		})
		if err := stop0(); err != nil {
			t.Fatalf("s0: %v", err)
		}
		if err := stop1(); err != nil {
			t.Fatalf("s1: %v", err)
		}
		g.loadSource()
		f.assertShardsMatchSource()
	})
}

// stopAll stops sinks and fails the test if one of them ended with an error.
func stopAll(t testing.TB, stops ...func() error) {
	t.Helper()
	for _, stop := range stops {
		if err := stop(); err != nil {
			t.Fatalf("sink: %v", err)
		}
	}
}

func TestReplayingAnySuffixLeavesTheShardsAsOneCleanPass(t *testing.T) {
	testenv.EachFlavor(t, func(t *testing.T, e testenv.Env) {
		f := newFixture(t, fixtureOpts{env: e})
		g := newGen(f, 2)
		g.produce(6000)

		m, _ := NewMetrics(nil)
		pass := func() {
			t.Helper()
			stop0, _ := f.runSink("s0", Options{Metrics: m})
			stop1, _ := f.runSink("s1", Options{Metrics: m})
			f.waitCaughtUp(2 * time.Minute)
			stopAll(t, stop0, stop1)
		}
		pass()
		g.loadSource()
		f.assertShardsMatchSource()
		clean := f.snapshot()

		rng := rand.New(rand.NewPCG(7, 7))
		for round := 0; round < 3; round++ {
			t.Run(fmt.Sprintf("random suffix %d", round), func(t *testing.T) {
				for i := range f.cfg.Shards {
					stored := f.storedOffsets(i)
					for k, next := range stored {
						stored[k] = rng.Int64N(next + 1)
					}
					f.setStoredOffsets(i, stored)
				}
				pass()
				f.snapshot().equal(t, clean, "after replaying a suffix")
			})
		}
		t.Run("the whole stream twice", func(t *testing.T) {
			for twice := 0; twice < 2; twice++ {
				for i := range f.cfg.Shards {
					stored := f.storedOffsets(i)
					for k := range stored {
						stored[k] = 0
					}
					f.setStoredOffsets(i, stored)
				}
				pass()
				f.snapshot().equal(t, clean, fmt.Sprintf("after replaying the whole stream (%d)", twice+1))
			}
			for _, shard := range []string{"s0", "s1"} {
				if n := counterValue(m.stale.WithLabelValues(shard, f.table("users"))); n == 0 {
					t.Errorf("cleave_sink_events_stale_total{shard=%s,table=users} = 0 after replays", shard)
				}
			}
		})
	})
}

// gathered sums a metric family of reg by its shard label.
func gathered(t *testing.T, reg *prometheus.Registry, name string) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			shard := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "shard" {
					shard = l.GetValue()
				}
			}
			out[shard] += m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	return out
}

func TestTwoSinksOfOneShardSplitItsPartitions(t *testing.T) {
	testenv.EachFlavor(t, func(t *testing.T, e testenv.Env) {
		f := newFixture(t, fixtureOpts{env: e})
		g := newGen(f, 3)
		ma, _ := NewMetrics(nil)
		mb, _ := NewMetrics(nil)
		a, stopA, doneA := f.startSink("s0", Options{Metrics: ma})
		b, stopB, doneB := f.startSink("s0", Options{Metrics: mb})
		stop1, _ := f.runSink("s1", Options{})
		partitions := 0
		for _, tc := range f.cfg.Tables {
			if tc.CanOwn("s0") {
				partitions += f.cfg.Kafka.Partitions
			}
		}
		testenv.Eventually(t, time.Minute, "both s0 sinks to hold partitions", func() bool {
			na, nb := len(a.Status().Partitions), len(b.Status().Partitions)
			return na > 0 && nb > 0 && na+nb == partitions
		})
		g.produce(4000)
		f.waitCaughtUp(2 * time.Minute)
		appliedA, appliedB := sumApplied(ma), sumApplied(mb)
		if appliedA == 0 || appliedB == 0 {
			t.Fatalf("applied %v and %v events: want both sinks of s0 to apply some", appliedA, appliedB)
		}
		t.Logf("s0 sinks applied %v and %v events", appliedA, appliedB)

		// One leaves; the other takes its partitions over and the result is still exact.
		if err := stopB(); err != nil {
			t.Fatal(err)
		}
		g.produce(2000)
		f.waitCaughtUp(2 * time.Minute)
		stopAll(t, stopA, stop1)
		for _, done := range []<-chan error{doneA, doneB} {
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			default:
			}
		}
		g.loadSource()
		f.assertShardsMatchSource()
	})
}

func sumApplied(m *Metrics) float64 {
	ch := make(chan prometheus.Metric, 100)
	go func() { m.applied.Collect(ch); close(ch) }()
	var sum float64
	for metric := range ch {
		var d dto.Metric
		_ = metric.Write(&d)
		sum += d.GetCounter().GetValue()
	}
	return sum
}

// poison adds events the shards refuse for good, one per shard: a datetime that does
// not exist (s0) and a name too long for its column (s1), plus a value that is not an
// event at all (for the shard its key routes to). It returns their message keys by shard.
func (g *gen) poison(t *testing.T) map[string][]string {
	t.Helper()
	r, err := g.f.cfg.Router(nil)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string][]string{}
	for shard, bad := range map[int]func(event.Row){
		0: func(row event.Row) { row["created"] = "2024-13-45 99:99:99" },
		1: func(row event.Row) { row["name"] = strings.Repeat("x", 65) },
	} {
		for {
			row := g.newRow("users")
			id, _ := row["id"].(json.Number).Int64()
			to, err := r.Route(g.f.table("users"), route.IntValue(id))
			if err != nil {
				t.Fatal(err)
			}
			if to[0] != shard {
				continue
			}
			bad(row)
			g.emit("users", event.OpCreate, nil, row)
			// The shard never has it: neither does the reference.
			g.unput(g.f.table("users"), g.key("users", row))
			keys[g.f.cfg.Shards[shard].Name] = append(keys[g.f.cfg.Shards[shard].Name], g.key("users", row))
			break
		}
	}
	// Not an event at all. Its key routes it (the shard key is the primary key), so the
	// shard that owns id 999999999 is the one that refuses it.
	g.msgs = append(g.msgs, kafka.Message{Topic: kafkax.TableTopic(g.f.prefix, g.f.db, "users"), Key: []byte(`[999999999]`), Value: []byte(`{"op":"c","after":`)})
	to, err := r.Route(g.f.table("users"), route.IntValue(999999999))
	if err != nil {
		t.Fatal(err)
	}
	owner := g.f.cfg.Shards[to[0]].Name
	keys[owner] = append(keys[owner], `[999999999]`)
	return keys
}

func TestPoisonEventGoesToTheDeadLetterTopicAndTheRestApplies(t *testing.T) {
	testenv.EachFlavor(t, func(t *testing.T, e testenv.Env) {
		f := newFixture(t, fixtureOpts{env: e, onError: config.OnErrorDeadLetter})
		g := newGen(f, 4)
		g.produce(1500)
		poison := g.poison(t)
		g.produce(1500)
		m, _ := NewMetrics(nil)
		stop0, _ := f.runSink("s0", Options{Metrics: m})
		stop1, _ := f.runSink("s1", Options{Metrics: m})
		f.waitCaughtUp(2 * time.Minute)
		stopAll(t, stop0, stop1)
		g.loadSource()
		f.assertShardsMatchSource()

		for _, shard := range []string{"s0", "s1"} {
			t.Run(shard, func(t *testing.T) {
				msgs := readAll(t, f.brokers, kafkax.DLQTopic(f.prefix, shard), len(poison[shard]))
				var got []string
				for _, msg := range msgs {
					h := map[string]string{}
					for _, x := range msg.Headers {
						h[x.Key] = string(x.Value)
					}
					got = append(got, string(msg.Key))
					if h["cleave.error"] == "" || h["cleave.topic"] != kafkax.TableTopic(f.prefix, f.db, "users") || h["cleave.offset"] == "" || h["cleave.shard"] != shard {
						t.Errorf("dead letter %s lacks its origin or error: %v", msg.Key, h)
					}
					t.Logf("dead letter %s: %s", msg.Key, h["cleave.error"])
				}
				sort.Strings(got)
				want := append([]string(nil), poison[shard]...)
				sort.Strings(want)
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Fatalf("dead letters %v, want %v", got, want)
				}
				n := counterValue(m.deadLetters.WithLabelValues(shard, f.table("users")))
				if n != float64(len(want)) {
					t.Errorf("cleave_sink_dead_letters_total{shard=%s} = %v, want %d", shard, n, len(want))
				}
			})
		}
	})
}

func TestPoisonEventStopsTheSinkNamingIt(t *testing.T) {
	testenv.EachFlavor(t, func(t *testing.T, e testenv.Env) {
		f := newFixture(t, fixtureOpts{env: e, onError: config.OnErrorStop})
		g := newGen(f, 5)
		g.produce(500)
		poison := g.poison(t)
		g.produce(500)
		for _, shard := range []string{"s0", "s1"} {
			t.Run(shard, func(t *testing.T) {
				stop, done := f.runSink(shard, Options{})
				var err error
				select {
				case err = <-done:
				case <-time.After(2 * time.Minute):
					t.Fatal("the sink did not stop on a poison event")
				}
				_ = stop()
				if err == nil {
					t.Fatal("Run returned nil")
				}
				msg := err.Error()
				t.Logf("error: %s", msg)
				named := false
				for _, k := range poison[shard] {
					named = named || strings.Contains(msg, "key "+k)
				}
				for _, want := range []string{kafkax.TableTopic(f.prefix, f.db, "users") + "/", "offset ", "sink.on_error is stop"} {
					if !strings.Contains(msg, want) {
						t.Errorf("error does not name %q", want)
					}
				}
				if !named {
					t.Errorf("error names none of the poison keys %v", poison[shard])
				}
			})
		}
	})
}

// readAll reads want messages from partition 0 of topic.
func readAll(t *testing.T, brokers []string, topic string, want int) []kafka.Message {
	t.Helper()
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: 0, MaxWait: 200 * time.Millisecond})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []kafka.Message
	for len(out) < want {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("read %s: got %d of %d messages: %v", topic, len(out), want, err)
		}
		out = append(out, m)
	}
	return out
}

func counterValue(c prometheus.Counter) float64 {
	var d dto.Metric
	_ = c.Write(&d)
	return d.GetCounter().GetValue()
}

// ddl makes a schema change of table on the source and emits its event to every partition
// of the table's topic, as capture does under ddl.policy propagate.
func (g *gen) ddl(table, stmt string) {
	t := g.f.t
	t.Helper()
	g.flush()
	mustExec(t, g.f.src, "ALTER TABLE "+mysqlx.QuoteTable(g.f.db, table)+" "+stmt)
	def, err := schema.Load(context.Background(), g.f.src, g.f.db, table)
	if err != nil {
		t.Fatal(err)
	}
	g.f.defs[g.f.table(table)] = def
	g.pos += 37
	v, _ := event.NewVersion("mysql-bin.000001", g.pos, 0)
	for p := 0; p < g.f.cfg.Kafka.Partitions; p++ {
		val, _ := event.Marshal(&event.Event{Op: event.OpDDL, DDL: "ALTER TABLE " + mysqlx.QuoteIdent(table) + " " + stmt, Version: v,
			Source: event.Source{DB: g.f.db, Table: table, File: "mysql-bin.000001", Pos: g.pos, TsMs: time.Now().UnixMilli()}})
		g.msgs = append(g.msgs, kafka.Message{Topic: kafkax.TableTopic(g.f.prefix, g.f.db, table), Partition: p, Value: val})
	}
	g.flush()
}

func TestSchemaChangesApplyOncePerShardAcrossPartitions(t *testing.T) {
	testenv.EachFlavor(t, func(t *testing.T, e testenv.Env) {
		f := newFixture(t, fixtureOpts{env: e})
		g := newGen(f, 10)
		g.produce(1500)
		// A backlog with events before and after each change: partitions are consumed side by
		// side, so some reach a change while others are still behind it, with events of the
		// old schema.
		g.ddl("users", "ADD COLUMN nick VARCHAR(16) NULL")
		g.extra = map[string]func() any{"nick": func() any { return g.maybeNull(g.word(10)) }}
		g.produce(1500)
		g.ddl("users", "DROP COLUMN bio")
		g.drop = map[string]bool{"bio": true}
		g.produce(1500)
		stop0, _ := f.runSink("s0", Options{})
		stop1, _ := f.runSink("s1", Options{})
		g.produce(500)
		f.waitCaughtUp(2 * time.Minute)
		stopAll(t, stop0, stop1)
		g.loadSource()
		f.assertShardsMatchSource()
		for i, db := range f.shards {
			var n int
			if err := db.QueryRow("SELECT COUNT(*) FROM `"+shardmeta.Database+"`.`"+shardmeta.AppliedDDL+"` WHERE db = ? AND tbl = 'users'", f.db).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 2 {
				t.Errorf("shard %d recorded %d schema changes of users, want 2", i, n)
			}
		}
	})
}
