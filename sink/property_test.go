package sink

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"

	"golang.org/x/sync/semaphore"

	"github.com/cleave-dev/cleave/event"
	"github.com/cleave-dev/cleave/internal/testenv"
	"github.com/cleave-dev/cleave/kafkax"
	"github.com/cleave-dev/cleave/shardmeta"
)

// change is one generated row change of the property test.
type change struct {
	code    string
	del     bool
	name    string
	version event.Version
}

// guardState is the version guard's specification: a row is absent, or present with the
// content and version of the change that wrote it. Within one batch the changes of a row
// collapse to the one with the highest version; then an upsert writes when the row is
// absent or older, a delete removes the row only when it is older.
type guardState map[string]change

func (m guardState) applyBatch(batch []change) {
	newest := map[string]change{}
	for _, c := range batch {
		if prev, ok := newest[c.code]; !ok || c.version >= prev.version {
			newest[c.code] = c
		}
	}
	for code, c := range newest {
		cur, present := m[code]
		switch {
		case !c.del && (!present || c.version > cur.version):
			m[code] = c
		case c.del && present && cur.version < c.version:
			delete(m, code)
		}
	}
}

// TestVersionGuardProperty applies random upserts and deletes with random versions, in
// random order and random batches, and checks after every batch that the shard is exactly
// what the guard specifies, that a present row always holds the content of the change
// whose version it carries, that a row never goes back to an older version while it
// stays, and at the end that a row whose newest change is an upsert holds it whatever the
// order. Delivered in order per row, the shard ends as the last change of each row left it.
func TestVersionGuardProperty(t *testing.T) {
	testenv.EachFlavor(t, func(t *testing.T, e testenv.Env) {
		f := newFixture(t, fixtureOpts{env: e})
		ctx := context.Background()
		s, err := New(f.cfg, "s0", Options{Log: f.logger()})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.open(ctx); err != nil {
			t.Fatal(err)
		}
		defer s.close()
		tbl := s.tables[kafkax.TableTopic(f.prefix, f.db, "countries")] // broadcast: every row is s0's
		key := tp{tbl.topic, 0}
		mustExec(t, f.shards[0], "INSERT INTO `"+shardmeta.Database+"`.`"+shardmeta.Offsets+"` (consumer_group, topic, kafka_partition, next_offset) VALUES (?, ?, 0, 0)", s.group, tbl.topic)
		state := &partState{tp: key}
		a := &applier{s: s, states: map[tp]*partState{key: state}, kc: &kafkaCommitter{}, budget: semaphore.NewWeighted(1)}

		rng := rand.New(rand.NewPCG(11, 13))
		for trial := 0; trial < 24; trial++ {
			inOrder := trial%3 == 2
			t.Run(fmt.Sprintf("trial %d in order %v", trial, inOrder), func(t *testing.T) {
				mustExec(t, f.shards[0], "DELETE FROM "+tbl.quote)
				var changes []change
				used := map[event.Version]bool{}
				for r := 0; r < 12; r++ {
					code := fmt.Sprintf("%c%c", 'A'+r, 'A'+trial%26)
					for n := 1 + rng.IntN(6); n > 0; n-- {
						v := event.Version(1 + rng.Uint64N(1<<40))
						if used[v] {
							continue
						}
						used[v] = true
						changes = append(changes, change{code: code, del: rng.IntN(3) == 0, name: fmt.Sprintf("n%d", v), version: v})
					}
				}
				rng.Shuffle(len(changes), func(i, j int) { changes[i], changes[j] = changes[j], changes[i] })
				if inOrder {
					// Versions increase per row in delivery order (rows still interleave).
					byCode := map[string][]event.Version{}
					for _, c := range changes {
						byCode[c.code] = append(byCode[c.code], c.version)
					}
					for _, vs := range byCode {
						sort.Slice(vs, func(i, j int) bool { return vs[i] < vs[j] })
					}
					for i := range changes {
						c := &changes[i]
						c.version, byCode[c.code] = byCode[c.code][0], byCode[c.code][1:]
						c.name = fmt.Sprintf("n%d", c.version)
					}
				}

				want := guardState{}
				seen := map[string]event.Version{} // last observed version of a present row
				for rest := changes; len(rest) > 0; {
					n := min(len(rest), 1+rng.IntN(8))
					batch := rest[:n]
					rest = rest[n:]
					a.applyChanges(t, ctx, tbl, batch)
					want.applyBatch(batch)

					got := readCountries(t, f, tbl)
					for code, g := range got {
						if g.name != fmt.Sprintf("n%d", g.version) {
							t.Fatalf("row %s holds %q with version %d: content and version of different changes", code, g.name, g.version)
						}
						if prev, ok := seen[code]; ok && g.version < prev {
							t.Fatalf("row %s went back from version %d to %d", code, prev, g.version)
						}
					}
					seen = map[string]event.Version{}
					for code, g := range got {
						seen[code] = g.version
					}
					if fmt.Sprint(sortedState(got)) != fmt.Sprint(sortedState(want)) {
						t.Fatalf("after a batch of %v:\nshard %v\nwant  %v", batch, sortedState(got), sortedState(want))
					}
				}

				final := readCountries(t, f, tbl)
				newest := map[string]change{}
				last := map[string]change{}
				for _, c := range changes {
					if c.version > newest[c.code].version {
						newest[c.code] = c
					}
					last[c.code] = c
				}
				for code, c := range newest {
					g, present := final[code]
					if !c.del && (!present || g.version != c.version) {
						t.Errorf("row %s: newest change is an upsert at version %d, shard holds %v (present %v)", code, c.version, g, present)
					}
				}
				if inOrder {
					for code, c := range last {
						g, present := final[code]
						if c.del == present || (present && g.version != c.version) {
							t.Errorf("row %s delivered in order: last change %+v, shard holds %+v (present %v)", code, c, g, present)
						}
					}
				}
			})
		}
	})
}

// applyChanges applies changes as one batch of messages of partition 0, through the same
// path as consumed messages: decoded and planned as the planner does (planLoop), applied
// as the applier does.
func (a *applier) applyChanges(t *testing.T, ctx context.Context, tbl *table, changes []change) {
	t.Helper()
	var batch []*message
	next := a.states[tp{tbl.topic, 0}].next
	for i, c := range changes {
		row := event.Row{"code": c.code, "name": c.name}
		ev := &event.Event{Op: event.OpUpdate, After: row, Before: row, Version: c.version,
			Source: event.Source{DB: tbl.db, Table: tbl.tname, File: "mysql-bin.000001", Pos: uint64(c.version)}}
		if c.del {
			ev.Op, ev.After = event.OpDelete, nil
		}
		val, err := event.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		m := &message{}
		m.Topic, m.Partition, m.Offset, m.Key, m.Value = tbl.topic, 0, next+int64(i), []byte(`["`+c.code+`"]`), val
		batch = append(batch, m)
	}
	dec := new(event.Decoder)
	items := make([]item, len(batch))
	for i, m := range batch {
		items[i] = a.s.decode(m, dec)
	}
	p, err := a.s.planItems(ctx, items)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.do(ctx, &work{plan: p}); err != nil {
		t.Fatal(err)
	}
}

func readCountries(t *testing.T, f *fixture, tbl *table) guardState {
	t.Helper()
	rows, err := f.shards[0].Query("SELECT code, name, _cleave_version FROM " + tbl.quote)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := guardState{}
	for rows.Next() {
		var c change
		if err := rows.Scan(&c.code, &c.name, &c.version); err != nil {
			t.Fatal(err)
		}
		out[c.code] = c
	}
	return out
}

func sortedState(m guardState) []string {
	var out []string
	for code, c := range m {
		out = append(out, fmt.Sprintf("%s@%d", code, c.version))
	}
	sort.Strings(out)
	return out
}

// TestRoutingByKeyAgreesWithTheRow checks the shortcut that routes a change by its message
// key against routing by the row image, for a single-column integer key (users) and a
// composite key whose first column is the shard key (items).
func TestRoutingByKeyAgreesWithTheRow(t *testing.T) {
	testenv.EachFlavor(t, func(t *testing.T, e testenv.Env) {
		f := newFixture(t, fixtureOpts{env: e})
		g := newGen(f, 21)
		for shard := range f.cfg.Shards {
			s, err := New(f.cfg, f.cfg.Shards[shard].Name, Options{Log: f.logger()})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.open(context.Background()); err != nil {
				t.Fatal(err)
			}
			defer s.close()
			for _, table := range []string{"users", "items"} {
				tbl := s.tables[kafkax.TableTopic(f.prefix, f.db, table)]
				sh := tbl.shape()
				if sh.keyIdx < 0 {
					t.Fatalf("%s: shard key not found in the primary key", table)
				}
				for i := 0; i < 2000; i++ {
					row := g.newRow(table)
					key, err := event.Key(f.defs[f.table(table)], row)
					if err != nil {
						t.Fatal(err)
					}
					here, ok := s.routeByKey(tbl, key)
					if !ok {
						t.Fatalf("%s: key %s not routable", table, key)
					}
					v, err := sh.shardValue(row)
					if err != nil {
						t.Fatal(err)
					}
					shards, err := s.router.Route(tbl.name, v)
					if err != nil {
						t.Fatal(err)
					}
					if want := shards[0] == s.shardNo; here != want {
						t.Fatalf("%s on %s: key %s routes here=%v, the row here=%v", table, s.shard, key, here, want)
					}
				}
			}
		}
	})
}
