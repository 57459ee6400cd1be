package reconcile

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/cleave-dev/cleave/event"
	"github.com/cleave-dev/cleave/internal/testenv"
	"github.com/cleave-dev/cleave/route"
)

// itemsDDL has a column of most kinds. at is DEFAULT CURRENT_TIMESTAMP, which MySQL marks
// DEFAULT_GENERATED in information_schema: a written column like any other.
const itemsDDL = `id BIGINT NOT NULL, user_id BIGINT UNSIGNED NOT NULL, name VARCHAR(64) NULL,
	note VARCHAR(64) NULL, ts DATETIME(6) NULL, amount DECIMAL(12,4) NULL, big BIGINT UNSIGNED NULL,
	data BLOB NULL, score DOUBLE NULL, at TIMESTAMP(6) NULL DEFAULT CURRENT_TIMESTAMP(6), f FLOAT NULL,
	j JSON NULL, PRIMARY KEY (id)`

// itemsFixture is a hash-routed table of 3000 rows of many column types, copied to the two
// shards as the sinks would have left them.
func itemsFixture(t *testing.T, env testenv.Env) *fixture {
	f := newFixture(t, env, fixtureTable{name: "items", ddl: itemsDDL, strategy: "hash", shardKey: "user_id"})
	f.exec(f.source, `INSERT INTO %s SELECT seq, seq * 7919 %% 1009, CONCAT('name-', seq), IF(seq %% 5 = 0, NULL, 'n'),
		TIMESTAMP'2024-01-01 00:00:00' + INTERVAL seq SECOND, seq / 7, seq * 1000, UNHEX(LEFT(SHA2(seq, 256), 32)), seq / 3,
		TIMESTAMP'2024-03-31 00:30:00' + INTERVAL seq MINUTE, seq / 9, JSON_OBJECT('id', seq, 'tags', JSON_ARRAY('a', seq %% 7))
		FROM %s`, f.q("items"), f.seq(3000))
	// Values the injections below need on the source.
	f.exec(f.source, "UPDATE %s SET name = 'abc' WHERE id = 40", f.q("items"))
	f.exec(f.source, "UPDATE %s SET big = 18446744073709551615 WHERE id = 100", f.q("items"))
	f.exec(f.source, "UPDATE %s SET score = 0.30000000000000004 WHERE id = 120", f.q("items"))
	f.copyRouted("items", "user_id")
	return f
}

// itemOwner is the shard index that owns the source row id.
func (f *fixture) itemOwner(id int) int {
	f.t.Helper()
	var uid uint64
	if err := f.source.QueryRow("SELECT user_id FROM "+f.q("items")+" WHERE id = ?", id).Scan(&uid); err != nil {
		f.t.Fatal(err)
	}
	return f.owner("items", route.UintValue(uid))[0]
}

type wantDrift struct {
	kind    Kind
	shard   int
	id      int
	columns string
}

// injectDrift damages the shards directly, one row per kind of difference, and returns
// what the checker must report.
func injectDrift(f *fixture) []wantDrift {
	items := f.q("items")
	var want []wantDrift
	changed := func(id int, col, set string) {
		o := f.itemOwner(id)
		f.exec(f.shards[o], "UPDATE %s SET %s WHERE id = %d", items, set, id)
		want = append(want, wantDrift{Changed, o, id, col})
	}
	// A row deleted.
	o := f.itemOwner(10)
	f.exec(f.shards[o], "DELETE FROM %s WHERE id = 10", items)
	want = append(want, wantDrift{Missing, o, 10, ""})
	// An extra row, beyond the source's last key.
	f.exec(f.shards[0], "INSERT INTO %s (id, user_id, name) VALUES (5000, 1, 'ghost')", items)
	want = append(want, wantDrift{Extra, 0, 5000, ""})
	// An extra row inside the key range (negative keys sort first).
	f.exec(f.shards[1], "INSERT INTO %s (id, user_id, name) VALUES (-7, 1, 'ghost')", items)
	want = append(want, wantDrift{Extra, 1, -7, ""})
	changed(20, "name", "name = 'changed'")
	changed(30, "note", "note = ''")     // NULL on the source
	changed(40, "name", "name = 'abc '") // trailing space
	changed(50, "ts", "ts = ts + INTERVAL 1 MICROSECOND")
	changed(60, "amount", "amount = amount + 0.0001")
	changed(100, "big", "big = 18446744073709551614")
	changed(110, "data", "data = CONCAT(LEFT(data, 3), CHAR(ASCII(SUBSTRING(data, 4, 1)) ^ 1), SUBSTRING(data, 5))")
	changed(120, "score", "score = 0.3")
	// The same wall clock written in another session time zone: another instant.
	o = f.itemOwner(130)
	f.execIn(f.shards[o], "+02:00", "UPDATE %s SET at = '2024-03-31 02:40:00' WHERE id = 130", items)
	want = append(want, wantDrift{Changed, o, 130, "at"})
	changed(140, "f", "f = f * 1.000001")
	changed(150, "j", "j = JSON_SET(j, '$.id', 0)")
	// Two rows edited identically (a BIT_XOR of CRC32 would cancel them out).
	changed(90, "name", "name = CONCAT('NAME', SUBSTRING(name, 5))")
	changed(91, "name", "name = CONCAT('NAME', SUBSTRING(name, 5))")
	// A row on the wrong shard: gone from its owner, present on the other.
	o = f.itemOwner(70)
	copyRow(f, 70, o, 1-o)
	f.exec(f.shards[o], "DELETE FROM %s WHERE id = 70", items)
	want = append(want, wantDrift{WrongShard, 1 - o, 70, ""})
	// A row on two shards.
	o = f.itemOwner(80)
	copyRow(f, 80, o, 1-o)
	want = append(want, wantDrift{Duplicate, 1 - o, 80, ""})
	return want
}

// copyRow copies a row between shards (different servers: through Go).
func copyRow(f *fixture, id, from, to int) {
	f.t.Helper()
	cols := f.columns("items")
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := f.shards[from].QueryRow("SELECT "+strings.Join(quoteAll(cols), ",")+" FROM "+f.q("items")+" WHERE id = ?", id).Scan(ptrs...); err != nil {
		f.t.Fatal(err)
	}
	ph := strings.TrimSuffix(strings.Repeat("?,", len(cols)), ",")
	if _, err := f.shards[to].Exec("INSERT INTO "+f.q("items")+" ("+strings.Join(quoteAll(cols), ",")+", _cleave_version) VALUES ("+ph+", 1)", vals...); err != nil {
		f.t.Fatal(err)
	}
}

func describe(f *fixture, rep *Report) []string {
	var out []string
	for _, tr := range rep.Tables {
		for _, d := range tr.Drift {
			if d.Repaired {
				continue
			}
			key, _ := json.Marshal(d.Key)
			out = append(out, fmt.Sprintf("%s %s %s %s", d.Kind, d.Shard, key, strings.Join(d.Columns, ",")))
		}
	}
	sort.Strings(out)
	return out
}

func describeWant(f *fixture, want []wantDrift) []string {
	var out []string
	for _, w := range want {
		out = append(out, fmt.Sprintf("%s s%d [%d] %s", w.kind, w.shard, w.id, w.columns))
	}
	sort.Strings(out)
	return out
}

// TestDriftInjectedIntoShardsIsFoundClassifiedAndRepaired runs on every split of flavors:
// each flavor alone, and a source of one flavor with shards of the other, where the row
// hash must come out the same on both products.
func TestDriftInjectedIntoShardsIsFoundClassifiedAndRepaired(t *testing.T) {
	eachSplit(t, testDriftInjectedIntoShards)
}

func testDriftInjectedIntoShards(t *testing.T, env testenv.Env) {
	f := itemsFixture(t, env)
	if rep := f.run(Options{}); rep.Status != StatusConsistent {
		t.Fatalf("before any injection: status %s, drift %v", rep.Status, describe(f, rep))
	}
	want := injectDrift(f)
	wantText := describeWant(f, want)

	for _, tc := range []struct {
		name  string
		chunk int
	}{
		{"one chunk bisected down to the rows", 3000},
		{"many small chunks", 97},
		{"adaptive chunks", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := f.run(Options{ChunkSize: tc.chunk})
			got := describe(f, rep)
			if strings.Join(got, "\n") != strings.Join(wantText, "\n") {
				t.Fatalf("drift reported:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(wantText, "\n  "))
			}
			if rep.Status != StatusDrift || ExitCode(rep, nil) != ExitDrift {
				t.Errorf("status %s exit %d, want drift and 1", rep.Status, ExitCode(rep, nil))
			}
			if tr := rep.Tables[0]; tr.RowsChecked != 3000 || len(tr.InFlight) != 0 {
				t.Errorf("rows checked %d (want 3000), in flight %d (want 0)", tr.RowsChecked, len(tr.InFlight))
			}
		})
	}

	t.Run("repair-sql is a dry run naming every fix", func(t *testing.T) {
		rep := f.run(Options{RepairSQL: true})
		if rep.Repair == nil || rep.Repair.Applied {
			t.Fatalf("repair report %+v, want statements not applied", rep.Repair)
		}
		all := strings.Join(append(rep.Repair.Statements["s0"], rep.Repair.Statements["s1"]...), "\n")
		if n := strings.Count(all, "DELETE FROM"); n != 4 {
			t.Errorf("%d DELETE statements, want 4 (2 extra, wrong shard, duplicate):\n%s", n, all)
		}
		if n := strings.Count(all, "INSERT INTO"); n != 15 {
			t.Errorf("%d INSERT statements, want 15 (missing, 13 changed, wrong shard's owner):\n%s", n, all)
		}
		if again := f.run(Options{}); len(describe(f, again)) != len(want) {
			t.Errorf("the dry run changed the shards: %v", describe(f, again))
		}
	})

	t.Run("repair fixes every row and the re-check confirms it", func(t *testing.T) {
		rep := f.run(Options{Repair: true})
		if rep.Repair == nil || !rep.Repair.Applied || rep.Repair.Repaired != len(want) || rep.Repair.Remaining != 0 {
			t.Fatalf("repair %+v, want all %d rows repaired", rep.Repair, len(want))
		}
		if rep.Status != StatusConsistent || ExitCode(rep, nil) != ExitConsistent {
			t.Errorf("after repair: status %s exit %d", rep.Status, ExitCode(rep, nil))
		}
		if again := f.run(Options{}); again.Status != StatusConsistent {
			t.Fatalf("a fresh check after repair: %v", describe(f, again))
		}
	})

	t.Run("a repaired row still loses to a later real change", func(t *testing.T) {
		// The repair wrote a version from the source position at repair time; an event
		// from a later position carries a higher version and must win the guard.
		o := f.itemOwner(20)
		var v uint64
		if err := f.shards[o].QueryRow("SELECT _cleave_version FROM " + f.q("items") + " WHERE id = 20").Scan(&v); err != nil {
			t.Fatal(err)
		}
		file, pos, _, err := binlogStatus(context.Background(), f.source, f.sourceFlavor())
		if err != nil {
			t.Fatal(err)
		}
		later, err := event.NewVersion(file, pos+1000, 0)
		if err != nil {
			t.Fatal(err)
		}
		if uint64(later) <= v {
			t.Fatalf("repair version %d is not below a later position's %d", v, later)
		}
	})
}
