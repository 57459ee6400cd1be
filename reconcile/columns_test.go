package reconcile

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/cleave-dev/cleave/internal/testenv"
	"github.com/cleave-dev/cleave/route"
)

// owned returns, per shard index, the ids (1..n) of rows whose integer shard key is the id.
func (f *fixture) ownedByID(table string, n int) [][]int {
	out := make([][]int, len(f.shards))
	for id := 1; id <= n; id++ {
		o := f.owner(table, route.IntValue(int64(id)))[0]
		out[o] = append(out[o], id)
	}
	return out
}

// MySQL marks a DEFAULT CURRENT_TIMESTAMP column EXTRA = 'DEFAULT_GENERATED'. Such a column
// holds what was written to it, like any other: a shard copy that differs there is drift,
// and a repair writes it.
func TestDefaultGeneratedColumnChangedOnAShardIsDrift(t *testing.T) {
	testenv.EachFlavorDatabases(t, func(t *testing.T, env testenv.Env) {
		f := newFixture(t, env, fixtureTable{name: "dg", strategy: "hash", shardKey: "id",
			ddl: `id INT NOT NULL PRIMARY KEY, v VARCHAR(10), created DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
				updated TIMESTAMP(6) NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6)`})
		f.exec(f.source, "INSERT INTO %s (id, v, created, updated) SELECT seq, 'v', TIMESTAMP'2024-01-01 00:00:00' + INTERVAL seq SECOND, TIMESTAMP'2024-06-01 00:00:00' FROM %s", f.q("dg"), f.seq(50))
		f.copyRouted("dg", "id")
		if rep := f.run(Options{}); rep.Status != StatusConsistent {
			t.Fatalf("before the change: %v", describe(f, rep))
		}
		o := f.owner("dg", route.IntValue(7))[0]
		f.exec(f.shards[o], "UPDATE %s SET created = created + INTERVAL 1 SECOND, updated = updated WHERE id = 7", f.q("dg"))
		o2 := f.owner("dg", route.IntValue(8))[0]
		f.exec(f.shards[o2], "UPDATE %s SET updated = TIMESTAMP'2024-06-01 00:00:01' WHERE id = 8", f.q("dg"))
		want := describeWant(f, []wantDrift{{Changed, o, 7, "created"}, {Changed, o2, 8, "updated"}})
		rep := f.run(Options{Repair: true})
		if got := describeAll(rep); strings.Join(got, "|") != strings.Join(want, "|") {
			t.Fatalf("reported %v, want %v", got, want)
		}
		if rep.Repair.Repaired != 2 || rep.Repair.Remaining != 0 {
			t.Errorf("repair %+v, want both rows repaired", rep.Repair)
		}
		if again := f.run(Options{}); again.Status != StatusConsistent {
			t.Errorf("after the repair: %v", describe(f, again))
		}
	})
}

// Generated columns are compared although cleave never writes them. A STORED expression
// that depends on the session keeps what the writer's session gave: the application's
// time zone on the source, UTC on a shard written by a sink. A VIRTUAL column differs when
// the shard's expression does. Both are what the application would read from the shard.
func TestGeneratedColumnsThatDifferAreDriftThatRepairCannotFix(t *testing.T) {
	testenv.EachFlavorDatabases(t, func(t *testing.T, env testenv.Env) {
		f := newFixture(t, env,
			fixtureTable{name: "st", strategy: "hash", shardKey: "id",
				ddl: "id INT NOT NULL PRIMARY KEY, ts TIMESTAMP(6) NULL, s VARCHAR(40) AS (CAST(ts AS CHAR)) STORED"},
			fixtureTable{name: "vt", strategy: "hash", shardKey: "id",
				ddl: "id INT NOT NULL PRIMARY KEY, a INT NOT NULL, v INT AS (a + 1) VIRTUAL"})
		// Rows 1-4 written in UTC, as the sinks write; row 5 by an application at +02:00.
		f.exec(f.source, "INSERT INTO %s (id, ts) SELECT seq, TIMESTAMP'2024-01-01 10:00:00' + INTERVAL seq HOUR FROM %s", f.q("st"), f.seq(4))
		f.execIn(f.source, "+02:00", "INSERT INTO %s (id, ts) VALUES (5, '2024-01-01 10:00:00')", f.q("st"))
		f.copyRouted("st", "id")
		f.exec(f.source, "INSERT INTO %s (id, a) SELECT seq, seq FROM %s", f.q("vt"), f.seq(6))
		f.copyRouted("vt", "id")
		// One shard's table computes v differently.
		f.exec(f.shards[1], "ALTER TABLE %s MODIFY v INT AS (a + 2) VIRTUAL", f.q("vt"))

		var want []wantDrift
		want = append(want, wantDrift{Changed, f.owner("st", route.IntValue(5))[0], 5, "s"})
		for _, id := range f.ownedByID("vt", 6)[1] {
			want = append(want, wantDrift{Changed, 1, id, "v"})
		}
		rep := f.run(Options{Repair: true})
		got := describeAll(rep)
		if w := describeWant(f, want); strings.Join(got, "|") != strings.Join(w, "|") {
			t.Fatalf("reported\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(w, "\n  "))
		}
		if rep.Repair.Repaired != 0 || rep.Repair.Remaining != len(want) {
			t.Errorf("repair %+v: a repair cannot write generated columns, so every row must remain", rep.Repair)
		}
		notes := strings.Join(rep.Notes, "\n")
		for _, w := range []string{f.full("st") + ": 1 changed rows differ in generated column(s) s,", f.full("vt") + ": "} {
			if !strings.Contains(notes, w) {
				t.Errorf("no note %q in:\n%s", w, notes)
			}
		}
	})
}

// describeAll is describe including repaired rows.
func describeAll(rep *Report) []string {
	var out []string
	for _, tr := range rep.Tables {
		for _, d := range tr.Drift {
			out = append(out, fmt.Sprintf("%s %s %s %s", d.Kind, d.Shard, keyText(d.Key), strings.Join(d.Columns, ",")))
		}
	}
	sort.Strings(out)
	return out
}
